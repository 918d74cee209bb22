//! `chorusd`: the Chorus node. See `chorusd --help`.

use std::process::ExitCode;

use chorus_node::config::{Cli, Command};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Key(command) => chorus_node::commands::key(command),
        Command::Genesis(command) => chorus_node::commands::genesis(command),
        Command::Run(args) => chorus_node::node::run(args),
        Command::Dev(args) => chorus_node::node::dev(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("chorusd: {error:#}");
            ExitCode::FAILURE
        }
    }
}

//! `chorus-sim --engine pow|pos|dpos --nodes 5 --seeds 0..200 [--faults loss,partition,crash,skew,late,byzantine,membership] [--steps N]`
//!
//! Prints one line per failing seed and a last line `seeds: <n>, violations: <v>, digest: <hex>`;
//! exits non-zero on any violation.

use std::process::ExitCode;

use chorus_sim::{Faults, SimConfig, combined_digest, run_seeds};

const USAGE: &str = "usage: chorus-sim --engine pow|pos|dpos|raft --nodes N --seeds A..B [--faults loss,partition,crash,skew,late,byzantine,membership] [--steps N] [--threads N] [--verbose]";

struct Args {
    config: SimConfig,
    seeds: std::ops::Range<u64>,
    threads: usize,
    verbose: bool,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut config = SimConfig { engine: "pow".into(), nodes: 5, seed: 0, faults: Faults::default(), steps: 2_000 };
    let mut seeds = 0..100;
    let mut threads = std::thread::available_parallelism().map_or(1, usize::from);
    let mut verbose = false;
    let mut iter = args.iter();
    while let Some(flag) = iter.next() {
        let mut value = || iter.next().ok_or_else(|| format!("{flag} needs a value"));
        let number =
            |text: &str, what: &str| text.parse::<u64>().map_err(|_| format!("{what} must be a number, got `{text}`"));
        match flag.as_str() {
            "--engine" => config.engine = value()?.clone(),
            "--nodes" => {
                config.nodes = number(value()?, "--nodes")? as usize;
                if !(1..=64).contains(&config.nodes) {
                    return Err("--nodes must be between 1 and 64".into());
                }
            }
            "--seeds" => {
                let text = value()?;
                let (start, end) = text.split_once("..").ok_or_else(|| format!("--seeds takes A..B, got `{text}`"))?;
                seeds = number(start, "--seeds start")?..number(end, "--seeds end")?;
            }
            "--faults" => config.faults = Faults::parse(value()?).map_err(|error| error.to_string())?,
            "--steps" => config.steps = number(value()?, "--steps")?,
            "--threads" => threads = number(value()?, "--threads")?.max(1) as usize,
            "--verbose" => verbose = true,
            "--help" | "-h" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    Ok(Args { config, seeds, threads, verbose })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse(&args) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let reports = match run_seeds(&args.config, args.seeds, args.threads) {
        Ok(reports) => reports,
        Err(message) => {
            eprintln!("chorus-sim: {message}");
            return ExitCode::from(2);
        }
    };
    let mut violations = 0;
    for report in &reports {
        if args.verbose {
            println!(
                "seed {}: {} events, height {}, final {}, equivocators slashed {}, range requests {}, schedule changes {}, membership changes {} (refusals {:?}), digest {}",
                report.seed,
                report.events,
                report.head_height,
                report.final_height,
                report.equivocators,
                report.range_requests,
                report.schedule_changes,
                report.membership_changes,
                report.membership_refusals,
                report.digest
            );
        }
        if !report.violations.is_empty() {
            violations += report.violations.len();
            println!("seed {} failed: {}", report.seed, report.violations.join("; "));
        }
    }
    let changes: usize = reports.iter().map(|report| report.schedule_changes).sum();
    if changes > 0 {
        println!("schedule changes, at the same block on every node: {changes}");
    }
    println!("seeds: {}, violations: {}, digest: {}", reports.len(), violations, combined_digest(&reports));
    if violations == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

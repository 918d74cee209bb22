//! The multi-process test harness: real `chorusd` processes on temporary directories and
//! system-chosen loopback ports, typed RPC clients, the perturbations of `testnet/run.sh`
//! (kill, restart, pause, resume, partition, heal) and named checks that poll with a bound
//! instead of sleeping.
//!
//! - [`process`]: one `chorusd` ([`Chorusd`]), whatever its arguments; what the node's own
//!   end-to-end tests start.
//! - [`rpc`]: [`Rpc`], a blocking typed client for README's JSON-RPC methods.
//! - [`testnet`]: [`Testnet`], N nodes on one genesis made by `chorusd key`/`genesis`, with
//!   funded accounts, a `chorus` wallet over them, and the checks.
//! - [`load`]: [`Load`], signed transfers at a steady rate from a background thread.
//! - [`poll`]: [`eventually`] (and [`eventually_async`]), the bounded wait every check and
//!   test polls with.
//!
//! On a failed test (a panic while a [`Testnet`] is alive) each node's log tail is printed and
//! the directory is kept for inspection.
#![forbid(unsafe_code)]

pub mod load;
pub mod poll;
pub mod process;
pub mod rpc;
pub mod testnet;

use std::path::{Path, PathBuf};

pub use load::{Load, LoadReport};
pub use poll::{eventually, eventually_async};
pub use process::{Chorusd, Launch};
pub use rpc::{CallError, Rpc};
pub use testnet::{Finals, Testnet, TestnetBuilder, Wallet};

/// The `chorusd` and `chorus` binaries a test runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binaries {
    pub chorusd: PathBuf,
    pub chorus: PathBuf,
}

impl Binaries {
    /// Both binaries in `dir`.
    pub fn in_dir(dir: &Path) -> Binaries {
        Binaries { chorusd: dir.join("chorusd"), chorus: dir.join("chorus") }
    }

    /// `$CHORUS_BIN_DIR` if set, else the build directory of the running test executable
    /// (`target/<profile>`, where a workspace build such as `.ci/test` puts every binary).
    /// Panics, saying how to build them, when either is missing.
    pub fn locate() -> Binaries {
        let dir = match std::env::var_os("CHORUS_BIN_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => {
                let exe = std::env::current_exe().expect("the test executable's path");
                // target/<profile>/deps/<test> -> target/<profile>
                exe.parent().and_then(Path::parent).expect("the test executable is in target/<profile>/deps").to_owned()
            }
        };
        let binaries = Binaries::in_dir(&dir);
        for bin in [&binaries.chorusd, &binaries.chorus] {
            assert!(
                bin.is_file(),
                "{} is missing: run the tests of the whole workspace (.ci/test), or build the binaries \
                 (cargo build --workspace) or point CHORUS_BIN_DIR at them",
                bin.display()
            );
        }
        binaries
    }
}

//! Chorus node: the core that `chorusd` runs and the deterministic simulator runs too.
//!
//! - [`driver`]: the loop that feeds the consensus engine and executes its actions against the
//!   store, the mempool and an [`driver::Io`] handle (network, timers, miner).
//! - [`mempool`]: validated pending transactions, bounded, ordered by fee then nonce.
//! - [`miner`]: the PoW miner threads `chorusd` gives the driver through `Io`.
//!
//! Invariant: the driver and the mempool open no socket, read no clock and spawn no thread; time
//! and I/O come in through the driver's arguments, so the simulator can replace them. Only
//! `miner` runs threads, and the simulator does not use it.

pub mod driver;
pub mod mempool;
pub mod miner;

pub use driver::{Driver, DriverError, Io, NetMessage, Outbox, Timer, Verdict};
pub use mempool::{Mempool, MempoolError};

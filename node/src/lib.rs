//! Chorus node: the core that `chorusd` runs and the deterministic simulator runs too.
//!
//! - [`driver`]: the loop that feeds the consensus engine and executes its actions against the
//!   store, the mempool and an [`driver::Io`] handle (network, timers, miner).
//! - [`mempool`]: validated pending transactions, bounded, ordered by fee then nonce.
//!
//! Invariant: nothing here opens a socket, reads a clock or spawns a thread; time and I/O come
//! in through the driver's arguments, so the simulator can replace them.

pub mod driver;
pub mod mempool;

pub use driver::{Driver, DriverError, Io, NetMessage, Timer, Verdict};
pub use mempool::{Mempool, MempoolError};

//! Chorus node: `chorusd`, and the core it shares with the deterministic simulator.
//!
//! The core, which the simulator runs too:
//! - [`driver`]: the loop that feeds the consensus engine and executes its actions against the
//!   store, the mempool and an [`driver::Io`] handle (network, timers, miner).
//! - [`mempool`]: validated pending transactions, bounded, ordered by fee then nonce.
//!
//! `chorusd` only:
//! - [`daemon`]: the task that owns the driver and carries out its I/O on the network service,
//!   real timers and [`miner`]'s threads; [`node`]: start-up and shutdown; [`rpc`]: JSON-RPC;
//!   [`config`]: the command line and its layering; [`commands`]: key and genesis tooling;
//!   [`dev`]: the dev chain; [`sync`]: the range-sync plan (which heights to ask of which peer).
//!
//! Invariant: the driver and the mempool open no socket, read no clock and spawn no thread; time
//! and I/O come in through the driver's arguments, so the simulator can replace them.

pub mod commands;
pub mod config;
pub mod daemon;
pub mod dev;
pub mod driver;
pub mod mempool;
pub mod miner;
pub mod node;
pub mod rpc;
pub mod sync;

pub use driver::{Driver, DriverError, Io, NetMessage, Outbox, Timer, Verdict};
pub use mempool::{Mempool, MempoolError};

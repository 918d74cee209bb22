//! Chorus node: `chorusd`, the daemon around the core it shares with the simulator.
//!
//! The core (crate `chorus-node-core`: the driver, the mempool, range sync and the mapping
//! onto gossip and sync requests) decides; this crate carries it out on real I/O:
//! - [`daemon`]: the task that owns the core's [`chorus_node_core::Node`] and carries out its
//!   effects on the network service, real timers and [`miner`]'s threads;
//! - [`node`]: start-up and shutdown; [`rpc`]: JSON-RPC, and who may call it; [`config`]: the
//!   command line and its layering; [`commands`]: key and genesis tooling; [`dev`]: the dev
//!   chain; [`metrics`]: the metrics endpoint's formats; [`explorer`]: the block explorer page;
//! - [`tx_check`]: gossiped transactions' signatures, checked in batches off the core task;
//! - [`files`]: the files beside the store, written whole or not at all;
//! - [`clock`]: the node's one wall clock.

pub mod clock;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod dev;
pub mod explorer;
pub mod files;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
pub mod metrics;
pub mod miner;
pub mod node;
pub mod rpc;
pub mod tx_check;

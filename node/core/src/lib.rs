//! Chorus node core: what `chorusd` and the deterministic simulator both run.
//!
//! - [`driver`]: the loop that feeds the consensus engine and executes its actions against the
//!   store, the mempool and an [`driver::Io`] handle (messages, timers, miner).
//! - [`mempool`]: validated pending transactions, bounded, ordered by fee then nonce.
//! - [`orphans`]: blocks waiting for their parent, bounded in count, bytes, per peer and time.
//! - `allowance`: per-peer allowances that refill with time (side-branch bytes).
//! - [`sync`]: range sync's plan (which heights to ask of which peer, the reorder buffer).
//! - [`node`]: the [`Node`], the driver and range sync behind gossip topics and the sync
//!   protocol: inputs with their time in, [`node::Effect`]s out.
//!
//! Invariant: nothing here opens a socket, reads a clock, spawns a task, or iterates a hash
//! map; time and I/O come in through arguments and go out as effects, so the simulator replays
//! a run from its seed. The one thread it starts (range sync's signature checks of the blocks
//! ahead of their imports, joined before the input returns) computes a pure function of each
//! block, so which core it runs on changes nothing. The determinism lints below and `clippy.toml` hold it.

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::float_arithmetic,
        clippy::panic
    )
)]

mod allowance;
pub mod driver;
pub mod mempool;
pub mod node;
pub mod orphans;
pub mod recent;
pub mod sync;

pub use driver::{Driver, DriverError, Express, Io, NetMessage, Outbox, Penalty, Submitted, Timer, Verdict};
pub use mempool::{Mempool, MempoolError};
pub use node::{CheckedTxs, Effect, Node, RequestFailed, check_gossip_txs};
pub use recent::RecentHashes;

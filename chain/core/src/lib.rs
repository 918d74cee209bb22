//! Chorus chain: the consensus-critical data model and the state machine, without I/O.
//!
//! - [`primitives`], [`crypto`]: hashes, heights, amounts, addresses, keys and the one ed25519
//!   validity rule.
//! - [`codec`]: the one canonical encoding (bincode 2.0.1, fixed-width, strict decoding).
//! - [`header`], [`tx`], [`block`]: headers and seals, transactions of every kind, blocks, roots
//!   and stateless checks (`block` builds on `tx`, both on `header`: no cycle).
//! - [`genesis`]: the genesis file, its engine schedule and its validation.
//! - [`pos`]: proof of stake's chain rules: slots, epochs, validator sets, the proposer draw.
//! - [`state`]: accounts, the block executor and the authenticated state tree with proofs.
//! - [`limits`]: every bound, in one place.
//!
//! Invariant: nothing here touches the network, the disk, a clock or an async runtime, and
//! everything that decides a block is deterministic (no `HashMap` iteration, no floats). The
//! RocksDB store lives in `chorus-store`, so the wallet can depend on this crate alone.
//!
//! Outside tests the whole crate denies `unwrap`, indexing and slicing, arithmetic that can
//! overflow or panic, `panic!` and floats: values that come from peers and files are handled
//! with checked arithmetic, `get` and typed errors, and an `expect` names the invariant that
//! makes it unreachable.

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

pub mod block;
pub mod codec;
pub mod crypto;
pub mod dpos;
pub mod ffg;
#[cfg(any(test, feature = "testing"))]
pub mod fuzz;
pub mod genesis;
pub mod header;
pub mod limits;
pub mod mempool_file;
pub mod pos;
pub mod primitives;
pub mod slots;
pub mod state;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tx;
pub mod wire;

pub use block::{Block, Body};
pub use crypto::{Address, SecretKey, Signature};
pub use genesis::Genesis;
pub use header::{Header, Seal};
pub use primitives::{Amount, BlockCount, ChainId, Hash, Height, Timestamp};
pub use tx::{Evidence, SignedTransaction, Transaction, TxKind, Vote};

//! The wire types of `chorusd`'s JSON-RPC, defined once: the method names ([`Method`]), the
//! error codes ([`ErrorCode`], README's table), and each method's parameters and result
//! ([`Request`] ties a parameter type to its method and its result type; [`Subscription`]
//! ties a subscription to its notification). The node serializes these types, and the wallet
//! and the test harness deserialize them, so a renamed or retyped field fails to build or
//! fails a test (`tests/wire.rs` pins the JSON of each), never reads as a default.
//!
//! Encodings: amounts are decimal strings, hashes and byte strings lowercase hex (no `0x`),
//! addresses `chorus1...`, heights, nonces and timestamps (milliseconds) JSON numbers.
//! Parameters are positional: a parameter type serializes to the JSON array the server reads.
//! Answers must hold every field their type names (a nullable one as `null`); fields a type
//! does not name are ignored, so a newer node may add one without breaking an older wallet.
//!
//! Serde only: no async, no jsonrpsee, no RocksDB, no libp2p (the wallet depends on it). The
//! node's method table (summaries, `rpc.discover`) and the conversions from its internal
//! types stay in `chorus-node`.

mod error;
mod fields;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
mod method;
mod types;

pub use error::ErrorCode;
pub use method::{Method, Request, Subscription};
pub use types::*;

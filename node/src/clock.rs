//! The node's one wall clock. The core and the engines get the time of each input from here,
//! never read a clock themselves, so the simulator can give them its own.

use chorus_chain::primitives::Timestamp;

/// The wall clock in milliseconds since the Unix epoch.
#[allow(clippy::disallowed_types, reason = "this is the node's clock: the core gets the time of each input from here")]
pub fn now() -> Timestamp {
    use std::time::{SystemTime, UNIX_EPOCH};
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis());
    Timestamp::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
}

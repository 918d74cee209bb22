//! Time cut into slots, for the engines that produce a block per slot (PoS, DPoS).
//!
//! Slot `s` starts at `genesis_time + s * slot_ms`; a block's timestamp is its slot's start, so
//! its slot is read from its timestamp. Slot 0 is genesis's: no block but genesis is in it.

use crate::genesis::Genesis;
use crate::primitives::Timestamp;

/// Why a timestamp is not a slot's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    #[error("timestamp {got} ms is not after genesis ({genesis} ms)")]
    BeforeGenesis { got: u64, genesis: u64 },
    #[error("timestamp {got} ms is not the start of a {slot_ms} ms slot after genesis ({genesis} ms)")]
    NotSlotStart { got: u64, genesis: u64, slot_ms: u64 },
}

/// The slot whose start is `timestamp`.
pub fn slot_of(genesis: &Genesis, slot_ms: u64, timestamp: Timestamp) -> Result<u64, SlotError> {
    let (got, start) = (timestamp.as_millis(), genesis.genesis_time.as_millis());
    let since =
        got.checked_sub(start).filter(|since| *since > 0).ok_or(SlotError::BeforeGenesis { got, genesis: start })?;
    match (since.checked_rem(slot_ms), since.checked_div(slot_ms)) {
        (Some(0), Some(slot)) => Ok(slot),
        _ => Err(SlotError::NotSlotStart { got, genesis: start, slot_ms }),
    }
}

/// The slot under way at `now` (0 before genesis).
pub fn slot_at(genesis: &Genesis, slot_ms: u64, now: Timestamp) -> u64 {
    now.as_millis().saturating_sub(genesis.genesis_time.as_millis()).checked_div(slot_ms).unwrap_or(0)
}

/// When `slot` starts.
pub fn slot_start(genesis: &Genesis, slot_ms: u64, slot: u64) -> Timestamp {
    Timestamp::from_millis(genesis.genesis_time.as_millis().saturating_add(slot.saturating_mul(slot_ms)))
}

//! Proof-of-work arithmetic: targets, work, the retarget rule and median time past. Integers
//! only; a target is a 256-bit big-endian number and a header meets it when its hash, read the
//! same way, is at most the target.

use chorus_chain::genesis::PowConfig;
use chorus_chain::header::{Header, Seal};
use chorus_chain::limits;
use chorus_chain::primitives::{Hash, Timestamp};

// The macros expand to operator impls that panic on overflow; this module only calls the
// checked forms.
#[allow(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::manual_div_ceil,
    missing_debug_implementations
)]
mod wide {
    uint::construct_uint! {
        /// A 256-bit unsigned integer (targets, chain work).
        pub struct U256(4);
    }
    uint::construct_uint! {
        pub(super) struct U512(8);
    }

    pub(super) fn widen(value: U256) -> U512 {
        let mut limbs = [0u64; 8];
        limbs[..4].copy_from_slice(&value.0);
        U512(limbs)
    }

    /// `value`, or `U256::MAX` if it does not fit.
    pub(super) fn narrow_saturating(value: U512) -> U256 {
        if value.0[4..].iter().any(|&limb| limb != 0) {
            return U256::MAX;
        }
        let mut limbs = [0u64; 4];
        limbs.copy_from_slice(&value.0[..4]);
        U256(limbs)
    }
}

pub use wide::U256;
use wide::{U512, narrow_saturating, widen};

/// Blocks whose timestamps form the median a new block must exceed.
pub const MEDIAN_TIME_BLOCKS: usize = 11;

pub fn target_value(target: &Hash) -> U256 {
    U256::from_big_endian(&target.0)
}

fn to_hash(value: U256) -> Hash {
    Hash(value.to_big_endian())
}

/// Whether `hash` meets `target` (big-endian comparison of the bytes).
pub fn meets_target(hash: &Hash, target: &Hash) -> bool {
    hash.0 <= target.0
}

/// The expected number of hashes to find a header meeting `target`: 2^256 / (target + 1).
pub fn work(target: &Hash) -> U256 {
    let target = target_value(target);
    match target.checked_add(U256::one()) {
        // 2^256 / (t + 1) = (2^256 - 1 - t) / (t + 1) + 1, computed without a 257th bit.
        Some(divisor) => {
            let quotient = (U256::MAX.saturating_sub(target)).checked_div(divisor).unwrap_or_default();
            quotient.saturating_add(U256::one())
        }
        None => U256::one(),
    }
}

/// The header's target: from its PoW seal, or the genesis setting for headers without one
/// (the genesis block).
pub fn header_target(header: &Header, config: &PowConfig) -> Hash {
    match header.seal {
        Seal::Pow { target, .. } => target,
        Seal::None | Seal::Signed { .. } => config.initial_target,
    }
}

/// The target a child of the last header of `window` must carry.
///
/// `window` is the parent and up to `retarget_window_blocks` of its ancestors, oldest first.
/// With `n` intervals (n + 1 headers), the new target is the mean target of the last `n`
/// headers scaled by the time they took over the time they should have taken (`n` block
/// times), the factor clamped to `1/F ..= F` for `F` = [`limits::RETARGET_STEP_FACTOR_MAX`]. The
/// window moves every block, so the difficulty follows the hash rate within a window. Fewer
/// than two intervals keep the genesis target, and no target is easier than the genesis one
/// (Bitcoin's proof-of-work limit): without that floor, a side chain with spread-out timestamps
/// would reach the easiest target and cost nothing to extend.
pub fn next_target(config: &PowConfig, window: &[Header]) -> Hash {
    let (Some(first), Some(last)) = (window.first(), window.last()) else {
        return config.initial_target;
    };
    let intervals = u64::try_from(window.len().saturating_sub(1)).unwrap_or(u64::MAX);
    if intervals < 2 {
        return config.initial_target;
    }
    let mut sum = U512::zero();
    for header in window.iter().skip(1) {
        sum = sum.saturating_add(widen(target_value(&header_target(header, config))));
    }
    let mean = sum.checked_div(U512::from(intervals)).unwrap_or_default();

    let expected_ms = intervals.saturating_mul(config.target_block_time_ms).max(1);
    let actual_ms = last.timestamp.as_millis().saturating_sub(first.timestamp.as_millis()).clamp(
        (expected_ms / limits::RETARGET_STEP_FACTOR_MAX).max(1),
        expected_ms.saturating_mul(limits::RETARGET_STEP_FACTOR_MAX),
    );
    let scaled = mean.saturating_mul(U512::from(actual_ms)).checked_div(U512::from(expected_ms)).unwrap_or_default();
    let capped = narrow_saturating(scaled).min(target_value(&config.initial_target));
    to_hash(capped.max(U256::one()))
}

/// The median of the timestamps of the last [`MEDIAN_TIME_BLOCKS`] headers (`window`, any
/// order); a new block's timestamp must be greater.
pub fn median_time_past(window: &[Header]) -> Timestamp {
    let mut times: Vec<u64> = window.iter().map(|header| header.timestamp.as_millis()).collect();
    times.sort_unstable();
    Timestamp::from_millis(times.get(times.len() / 2).copied().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_of(value: U256) -> Hash {
        to_hash(value)
    }

    #[test]
    fn work_is_two_to_the_256_over_target_plus_one() {
        assert_eq!(work(&Hash([0xff; 32])), U256::one());
        // target 2^255 - 1: work 2
        let mut half = [0xff; 32];
        half[0] = 0x7f;
        assert_eq!(work(&Hash(half)), U256::from(2));
        // target 2^240 - 1: work 2^16
        let mut small = [0xff; 32];
        small[0] = 0;
        small[1] = 0;
        assert_eq!(work(&Hash(small)), U256::from(65_536));
        assert_eq!(work(&Hash::ZERO), U256::MAX.saturating_add(U256::one()), "target 0 saturates");
    }

    #[test]
    fn meets_target_compares_big_endian() {
        let target = hash_of(U256::from(1000));
        assert!(meets_target(&hash_of(U256::from(1000)), &target));
        assert!(meets_target(&hash_of(U256::from(999)), &target));
        assert!(!meets_target(&hash_of(U256::from(1001)), &target));
        assert!(!meets_target(&hash_of(U256::from(1) << 200), &target));
    }

    fn config() -> PowConfig {
        PowConfig {
            target_block_time_ms: 1_000,
            initial_target: hash_of(U256::from(1) << 240),
            retarget_window_blocks: 10,
        }
    }

    fn headers(timestamps: &[u64], target: Hash) -> Vec<Header> {
        let genesis = chorus_chain::state::genesis_block(&chorus_chain::testing::genesis(1, 1), Hash::ZERO);
        timestamps
            .iter()
            .map(|&ms| Header {
                timestamp: Timestamp::from_millis(ms),
                seal: Seal::Pow { target, nonce: 0 },
                ..genesis.header.clone()
            })
            .collect()
    }

    #[test]
    fn retarget_holds_on_time_and_scales_with_the_timespan() {
        let config = config();
        // Blocks sixteen times harder than genesis, so easing stays below the floor.
        let base = hash_of(target_value(&config.initial_target) / 16);
        // 10 intervals over 10 target times keep the target.
        let on_time: Vec<u64> = (0..11).map(|index| index * 1_000).collect();
        assert_eq!(next_target(&config, &headers(&on_time, base)), base);
        // Twice as slow: target doubles (easier).
        let slow: Vec<u64> = (0..11).map(|index| index * 2_000).collect();
        assert_eq!(target_value(&next_target(&config, &headers(&slow, base))), target_value(&base) * 2);
        // Absurd timespans are clamped to a factor of 4 either way.
        let stalled: Vec<u64> = (0..11).map(|index| index * 1_000_000).collect();
        assert_eq!(target_value(&next_target(&config, &headers(&stalled, base))), target_value(&base) * 4);
        let instant = vec![5; 11];
        assert_eq!(target_value(&next_target(&config, &headers(&instant, base))), target_value(&base) / 4);
        // Too little history keeps the genesis target.
        assert_eq!(next_target(&config, &headers(&[0, 500], hash_of(U256::one()))), config.initial_target);
    }

    #[test]
    fn retarget_never_goes_easier_than_the_genesis_target() {
        let mut config = config();
        let slow: Vec<u64> = (0..11).map(|index| index * 100_000).collect();
        // Blocks at the genesis target, far too slow: the target stays at the floor.
        let base = config.initial_target;
        assert_eq!(next_target(&config, &headers(&slow, base)), base);
        // Blocks claiming the easiest target cannot drag the next one above the floor either.
        assert_eq!(next_target(&config, &headers(&slow, Hash([0xff; 32]))), base);
        // A genesis at the easiest target saturates there.
        config.initial_target = Hash([0xff; 32]);
        assert_eq!(next_target(&config, &headers(&slow, Hash([0xff; 32]))), Hash([0xff; 32]));
    }

    #[test]
    fn median_time_past_is_the_middle_timestamp() {
        let window = headers(&[5, 1, 9, 3, 7], Hash::ZERO);
        assert_eq!(median_time_past(&window), Timestamp::from_millis(5));
        assert_eq!(median_time_past(&[]), Timestamp::from_millis(0));
    }
}

//! Proof of stake's chain rules: slots, epochs, the validator set of an epoch and the proposer
//! of a slot. Integers only, every input from the chain.
//!
//! Shared by the state machine, which enforces them on every block it applies (so a block from
//! the wrong proposer is invalid on any branch, also when a reorg applies it), and by the PoS
//! engine, which proposes, checks early and counts votes with them.
//!
//! - Slot `s` starts at `genesis_time + s * slot_ms`; a block's timestamp is its slot's start,
//!   so the slot is read from the timestamp (slot 0 is genesis). Epoch `e` is the slots
//!   `e * epoch_slots .. (e + 1) * epoch_slots`.
//! - The set of epoch 0 is the genesis validators with their genesis stakes. The set of a later
//!   epoch is computed at its first block from the state that block builds on: every account in
//!   the index of stakers with at least `min_stake`, plus the genesis validators with any stake,
//!   minus slashed accounts; the `validators_max` largest stakes (ties: lower address). Stake
//!   changes and slashing therefore take effect at the next epoch.
//! - The seed of epoch `e` hashes the previous seed, `e` and the hash its first block builds
//!   on. The proposer of slot `s` is drawn by stake: a number below the total stake from the
//!   seed and `s`, then the validator whose cumulative stake range (by address order) holds it.
//!   The last proposer of an epoch can grind the next seed by choosing its block; with stake in
//!   the draw this only reorders honest-weighted slots, and is noted in ARCHITECTURE.md.

use serde::{Deserialize, Serialize};

use crate::codec::{Canonical, Decode, Encode};
use crate::crypto::Address;
use crate::genesis::{Genesis, PosConfig};
use crate::limits;
use crate::primitives::{Amount, Hash, Timestamp};
use crate::slots;

/// An epoch's validators with their stakes, sorted by address, and its seed.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct ValidatorSet {
    pub epoch: u64,
    pub seed: Hash,
    pub validators: Vec<(Address, Amount)>,
    /// The sum of the stakes.
    pub total: Amount,
}

impl Canonical for ValidatorSet {
    const BYTES_MAX: u32 = limits::VALIDATOR_SET_BYTES_MAX;
}

impl ValidatorSet {
    /// The stake `address` has in this set.
    pub fn stake_of(&self, address: &Address) -> Option<Amount> {
        self.index_of(address).and_then(|index| self.validators.get(index)).map(|(_, stake)| *stake)
    }

    /// `address`'s position (by address order).
    pub fn index_of(&self, address: &Address) -> Option<usize> {
        self.validators.binary_search_by(|(listed, _)| listed.cmp(address)).ok()
    }

    /// Whether `stake` is more than two thirds of the total: 3 * stake > 2 * total, that is
    /// stake > 2 * (total - stake), without overflow.
    pub fn is_supermajority(&self, stake: Amount) -> bool {
        match self.total.get().checked_sub(stake.get()) {
            None => true,
            Some(rest) => rest.checked_mul(2).is_some_and(|twice_rest| stake.get() > twice_rest),
        }
    }

    /// The proposer of `slot`: drawn by stake from the seed. `None` for an empty set.
    pub fn proposer(&self, slot: u64) -> Option<Address> {
        let total = self.total.get();
        if total == 0 {
            return None;
        }
        let draw = Hash::tagged(b"chorus/pos-slot/v1", &crate::codec::encode(&(self.seed, slot)));
        let mut word = [0u8; 16];
        word.copy_from_slice(draw.0.get(..16).unwrap_or(&[0; 16]));
        let mut point = u128::from_be_bytes(word).checked_rem(total).unwrap_or(0);
        for (address, stake) in &self.validators {
            if point < stake.get() {
                return Some(*address);
            }
            point = point.saturating_sub(stake.get());
        }
        None
    }
}

pub use crate::slots::SlotError;

/// The slot whose start is `timestamp` ([`crate::slots::slot_of`] with PoS's slot length).
pub fn slot_of(genesis: &Genesis, config: &PosConfig, timestamp: Timestamp) -> Result<u64, SlotError> {
    slots::slot_of(genesis, config.slot_ms, timestamp)
}

/// The slot under way at `now` (0 before genesis).
pub fn slot_at(genesis: &Genesis, config: &PosConfig, now: Timestamp) -> u64 {
    slots::slot_at(genesis, config.slot_ms, now)
}

/// When `slot` starts.
pub fn slot_start(genesis: &Genesis, config: &PosConfig, slot: u64) -> Timestamp {
    slots::slot_start(genesis, config.slot_ms, slot)
}

pub fn epoch_of(config: &PosConfig, slot: u64) -> u64 {
    slot.checked_div(config.epoch_slots).unwrap_or(0)
}

/// The set of epoch 0: the genesis validators with their genesis stakes.
pub fn genesis_set(genesis: &Genesis, config: &PosConfig) -> ValidatorSet {
    let candidates = config.validators.iter().filter_map(|member| {
        let stake = genesis.accounts.iter().find(|account| account.address == member.address)?.stake;
        Some((member.address, stake))
    });
    let seed = Hash::tagged(b"chorus/pos-seed/v1", &crate::codec::encode(&(&genesis.chain_id, genesis.genesis_time)));
    select(0, seed, config, candidates)
}

/// The seed of `epoch`, whose first block builds on `parent`.
pub fn next_seed(previous: &Hash, epoch: u64, parent: &Hash) -> Hash {
    Hash::tagged(b"chorus/pos-seed/v1", &crate::codec::encode(&(previous, epoch, parent)))
}

/// The `validators_max` largest of `candidates` (ties: lower address), as an epoch's set.
pub fn select(
    epoch: u64,
    seed: Hash,
    config: &PosConfig,
    candidates: impl Iterator<Item = (Address, Amount)>,
) -> ValidatorSet {
    let mut ranked: Vec<(Address, Amount)> = candidates.filter(|(_, stake)| !stake.is_zero()).collect();
    ranked.sort_by(|(a, stake_a), (b, stake_b)| stake_b.cmp(stake_a).then(a.cmp(b)));
    ranked.dedup_by_key(|(address, _)| *address);
    ranked.truncate(config.validators_max as usize);
    ranked.sort_by_key(|(address, _)| *address);
    let total = ranked.iter().fold(Amount::ZERO, |sum, (_, stake)| sum.checked_add(*stake).unwrap_or(Amount::MAX));
    ValidatorSet { epoch, seed, validators: ranked, total }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    fn config(genesis: &Genesis) -> &PosConfig {
        match genesis.engine_at(crate::primitives::Height::GENESIS) {
            crate::genesis::EngineConfig::Pos(config) => config,
            other => panic!("a PoS genesis, got {}", other.name()),
        }
    }

    #[test]
    fn proposers_are_drawn_in_proportion_to_stake() {
        let genesis = testing::pos_genesis(4, 1_000, &[100, 200, 300, 400], 32);
        let set = genesis_set(&genesis, config(&genesis));
        assert_eq!(set.total, Amount::new(1_000));
        const SLOTS: u64 = 100_000;
        let mut counts = [0u64; 4];
        for slot in 1..=SLOTS {
            let proposer = set.proposer(slot).expect("a non-empty set always has a proposer");
            counts[testing::index_of(&proposer, 4).expect("a validator") as usize] += 1;
        }
        // Each share within 1 percentage point of its stake share (5 standard deviations at
        // 100,000 draws); the draw is seeded, so this is a fixed outcome, not a flaky one.
        for (index, count) in counts.iter().enumerate() {
            let expected = (index as u64 + 1) * SLOTS / 10;
            assert!(
                count.abs_diff(expected) <= SLOTS / 100,
                "validator {index}: {count} slots, expected about {expected}"
            );
        }
        // Another seed gives another schedule.
        let other = ValidatorSet { seed: next_seed(&set.seed, 1, &Hash::ZERO), ..set.clone() };
        assert!((1..100).any(|slot| other.proposer(slot) != set.proposer(slot)));
    }

    #[test]
    fn supermajority_is_more_than_two_thirds() {
        let set = |total: u128| ValidatorSet {
            epoch: 0,
            seed: Hash::ZERO,
            validators: Vec::new(),
            total: Amount::new(total),
        };
        assert!(!set(3).is_supermajority(Amount::new(2)), "exactly 2/3 is not enough");
        assert!(set(3).is_supermajority(Amount::new(3)));
        assert!(set(100).is_supermajority(Amount::new(67)));
        assert!(!set(100).is_supermajority(Amount::new(66)));
        assert!(set(u128::MAX).is_supermajority(Amount::new(u128::MAX / 3 * 2 + 2)));
        assert!(!set(u128::MAX).is_supermajority(Amount::new(u128::MAX / 3)));
    }

    #[test]
    fn slots_come_from_timestamps_and_sets_keep_the_largest_stakes() {
        let genesis = testing::pos_genesis(4, 1_000, &[100, 200], 4);
        let config = config(&genesis);
        let start = genesis.genesis_time.as_millis();
        assert_eq!(slot_of(&genesis, config, Timestamp::from_millis(start + 3_000)), Ok(3));
        assert!(matches!(
            slot_of(&genesis, config, Timestamp::from_millis(start)),
            Err(SlotError::BeforeGenesis { .. })
        ));
        assert!(matches!(
            slot_of(&genesis, config, Timestamp::from_millis(start + 1_500)),
            Err(SlotError::NotSlotStart { .. })
        ));
        assert_eq!(slot_at(&genesis, config, Timestamp::from_millis(start + 1_500)), 1);
        assert_eq!(slot_start(&genesis, config, 3), Timestamp::from_millis(start + 3_000));
        assert_eq!((epoch_of(config, 3), epoch_of(config, 4)), (0, 1));

        let small = PosConfig { validators_max: 2, ..config.clone() };
        let (a, b, c) = (testing::key(0).address(), testing::key(1).address(), testing::key(2).address());
        let candidates = [(a, Amount::new(5)), (b, Amount::new(9)), (c, Amount::new(5)), (b, Amount::new(9))];
        let set = select(1, Hash::ZERO, &small, candidates.into_iter());
        let mut expected = vec![(b, Amount::new(9)), (a.min(c), Amount::new(5))];
        expected.sort_by_key(|(address, _)| *address);
        assert_eq!(set.validators, expected, "largest stakes, ties to the lower address, no duplicates");
        assert_eq!(set.total, Amount::new(14));
    }
}

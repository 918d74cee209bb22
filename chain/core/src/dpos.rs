//! Delegated proof of stake's chain rules: the ranking of delegates, schedules, the producer of
//! a slot and the last irreversible block. Integers only, every input from the chain.
//!
//! Shared by the state machine, which enforces them on every block it applies and keeps the
//! [`DposState`] in the state tree (so it is part of the state root and every node holds the
//! same schedule at the same block), and by the DPoS engine, which produces, checks blocks
//! early and claims irreversibility with them.
//!
//! - **Ranking.** Registered delegates by approval weight (the sum of the stakes of the accounts
//!   approving them), ties to the lower address, slashed delegates out. The top `producers`
//!   (all of them when fewer are registered) form a schedule, in address order.
//! - **Slots.** Slot `s` (see [`crate::slots`]) belongs to `producers[(s - start_slot) % n]`; a
//!   round is `n` slots from the schedule's `start_slot`. A missed slot is skipped.
//! - **Irreversibility.** Scheduled producers sign FFG votes (as PoS validators do), each with
//!   the same weight; the blocks of this chain carry them, and the state keeps the tally
//!   ([`crate::ffg::Tracker`]). The last irreversible block is its finalized checkpoint. (EOSIO's
//!   count of producers that built on a block is not safe when honest producers switch forks:
//!   their blocks count on both branches; the simulator found conflicting irreversible blocks.)
//! - **Schedule changes.** After each block, if no change is pending and the ranking in that
//!   block's state differs from the active schedule, it becomes pending, proposed at that
//!   block's height. Once that height is irreversible, the first block in a slot at or after the
//!   next round boundary (after its parent's slot) is produced under the new schedule, which
//!   starts at that boundary; votes for blocks before it still count against the previous one.
//!   Every node therefore switches at the same block.
//!
//! When fewer than `2n/3 + 1` scheduled producers vote, blocks continue in their slots but the
//! last irreversible block stalls, and so does any schedule change (it needs the proposing block
//! irreversible): the chain gets out of it when enough scheduled producers come back (a
//! restarted producer resumes its turns and votes). Producers gone for good cannot be voted out
//! on chain, for the same reason; that takes a new genesis.

use serde::{Deserialize, Serialize};

use crate::codec::{Canonical, Decode, Encode};
use crate::crypto::Address;
use crate::ffg::{Target, Tracker};
use crate::limits;
use crate::pos::ValidatorSet;
use crate::primitives::{Amount, Hash, Height};
use crate::tx::{Checkpoint, Vote};

/// The producers of consecutive slots from `start_slot`, one turn each per round.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Schedule {
    /// 0 for the genesis schedule, then one more per change.
    pub version: u64,
    pub start_slot: u64,
    /// In address order.
    pub producers: Vec<Address>,
}

impl Schedule {
    /// The producer of `slot` (`None` before the schedule starts, or for an empty schedule).
    pub fn producer(&self, slot: u64) -> Option<Address> {
        let turn = slot.checked_sub(self.start_slot)?;
        let n = u64::try_from(self.producers.len()).ok()?;
        let index = usize::try_from(turn.checked_rem(n)?).ok()?;
        self.producers.get(index).copied()
    }

    /// The first round boundary after `slot`.
    pub fn round_start_after(&self, slot: u64) -> u64 {
        let n = (self.producers.len() as u64).max(1);
        let rounds = slot.saturating_sub(self.start_slot).checked_div(n).unwrap_or(0).saturating_add(1);
        self.start_slot.saturating_add(rounds.saturating_mul(n))
    }

    /// The schedule as a set of equal weights, for the FFG tally (more than 2/3 of them is
    /// `2n/3 + 1` producers).
    pub fn as_set(&self) -> ValidatorSet {
        let validators: Vec<(Address, Amount)> =
            self.producers.iter().map(|address| (*address, Amount::new(1))).collect();
        let total = Amount::new(validators.len() as u128);
        ValidatorSet { epoch: self.version, seed: Hash::ZERO, validators, total }
    }

    pub fn index_of(&self, address: &Address) -> Option<usize> {
        self.producers.binary_search(address).ok()
    }
}

/// A schedule waiting for the block that proposed it to become irreversible.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct PendingSchedule {
    pub producers: Vec<Address>,
    pub proposed_at: Height,
}

/// What the state holds for DPoS after each block.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct DposState {
    pub active: Schedule,
    /// The schedule before `active`: votes for blocks it produced count against it.
    pub previous: Option<Schedule>,
    pub pending: Option<PendingSchedule>,
    /// The last `VOTE_TARGET_AGE_MAX` blocks of this chain below the latest (oldest first):
    /// the blocks a vote in the next block may target.
    pub recent: Vec<Checkpoint>,
    /// Finality from the producers' votes in this chain's blocks.
    pub ffg: Tracker,
}

impl Canonical for DposState {
    const BYTES_MAX: u32 = limits::DPOS_STATE_BYTES_MAX;
}

/// Why a block breaks DPoS's chain rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DposError {
    #[error("slot {slot} belongs to {expected:?} (schedule version {version}), not {got}")]
    NotProducer { slot: u64, version: u64, expected: Option<Address>, got: Address },
}

impl DposState {
    /// The state before the first DPoS block: `producers` (a [`rank`]ing) scheduled, genesis
    /// justified and final. Genesis is named by height and slot 0 and a zero hash (its hash
    /// depends on the state this is part of); votes take their source from here, so all agree.
    pub fn initial(producers: Vec<Address>) -> DposState {
        DposState {
            active: Schedule { version: 0, start_slot: 0, producers },
            previous: None,
            pending: None,
            recent: Vec::new(),
            ffg: Tracker::genesis(Hash::ZERO),
        }
    }

    /// The last irreversible block's height.
    pub fn irreversible(&self) -> Height {
        self.ffg.finalized.height
    }

    /// The schedule a block in `slot` on a parent in `parent_slot` is produced under: the
    /// pending one once its proposing block is irreversible and `slot` is past the next round
    /// boundary, else the active one. `true` with a new schedule.
    pub fn schedule_for(&self, parent_slot: u64, slot: u64) -> (Schedule, bool) {
        if let Some(pending) = &self.pending
            && pending.proposed_at <= self.irreversible()
        {
            let boundary = self.active.round_start_after(parent_slot);
            if slot >= boundary {
                let next = Schedule {
                    version: self.active.version.saturating_add(1),
                    start_slot: boundary,
                    producers: pending.producers.clone(),
                };
                return (next, true);
            }
        }
        (self.active.clone(), false)
    }

    /// The state after `producer`'s block at `height` in `slot` on `parent`, carrying `votes`:
    /// the schedule switched if due, the producer checked, the parent made votable, the votes
    /// tallied. A new pending schedule is the caller's ([`DposState::propose`]), from the
    /// block's state.
    pub fn after_block(
        &self,
        parent: Checkpoint,
        slot: u64,
        producer: &Address,
        height: Height,
        votes: &[Vote],
    ) -> Result<DposState, DposError> {
        let (schedule, switched) = self.schedule_for(parent.slot, slot);
        let expected = schedule.producer(slot);
        if expected != Some(*producer) {
            return Err(DposError::NotProducer { slot, version: schedule.version, expected, got: *producer });
        }
        let mut next = self.clone();
        if switched {
            next.previous = Some(std::mem::replace(&mut next.active, schedule));
            next.pending = None;
        }
        if parent.height > Height::GENESIS {
            next.recent.push(parent);
            let excess = next.recent.len().saturating_sub(limits::VOTE_TARGET_AGE_MAX as usize);
            next.recent.drain(..excess);
        }
        let active = next.active.as_set();
        let previous = next.previous.as_ref().map(|previous| (previous.as_set(), previous.start_slot));
        let start = next.active.start_slot;
        let recent = &next.recent;
        let ffg = self.ffg.next(height, votes, |target| {
            if recent.binary_search_by(|block| block.height.cmp(&target.height)).ok().and_then(|i| recent.get(i))
                != Some(target)
            {
                return Target::NotAncestor;
            }
            match &previous {
                _ if target.slot >= start => Target::Known(&active),
                // A target before the previous schedule (two changes within the window) is not
                // counted rather than counted against the wrong set.
                Some((previous_set, previous_start)) if target.slot >= *previous_start => Target::Known(previous_set),
                _ => Target::UnknownSet,
            }
        });
        next.ffg = ffg;
        Ok(next)
    }

    /// Makes `ranking` (from the state after the block at `height`) pending if nothing is and it
    /// differs from the active schedule. An empty ranking changes nothing.
    pub fn propose(&mut self, ranking: Vec<Address>, height: Height) {
        if self.pending.is_none() && !ranking.is_empty() && ranking != self.active.producers {
            self.pending = Some(PendingSchedule { producers: ranking, proposed_at: height });
        }
    }
}

/// The top `producers` of `candidates` by weight (ties: lower address), in address order.
pub fn rank(candidates: impl Iterator<Item = (Address, Amount)>, producers: u32) -> Vec<Address> {
    let mut ranked: Vec<(Address, Amount)> = candidates.collect();
    ranked.sort_by(|(a, weight_a), (b, weight_b)| weight_b.cmp(weight_a).then(a.cmp(b)));
    ranked.dedup_by_key(|(address, _)| *address);
    ranked.truncate(producers as usize);
    let mut chosen: Vec<Address> = ranked.into_iter().map(|(address, _)| address).collect();
    chosen.sort_unstable();
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::primitives::ChainId;
    use crate::testing;

    fn addresses(n: u32) -> Vec<Address> {
        let mut all: Vec<Address> = (0..n).map(|i| testing::key(i).address()).collect();
        all.sort_unstable();
        all
    }

    fn key_of(address: &Address) -> crate::crypto::SecretKey {
        testing::key(testing::index_of(address, 16).expect("a test key"))
    }

    /// A chain under `state`'s schedule with every slot filled, heights equal to slots.
    struct Chain {
        state: DposState,
        head: Checkpoint,
        chain_id: ChainId,
    }

    impl Chain {
        fn new(producers: u32) -> Chain {
            Chain {
                state: DposState::initial(addresses(producers)),
                head: Checkpoint { height: Height::GENESIS, slot: 0, hash: Hash::ZERO },
                chain_id: ChainId::new("test").unwrap(),
            }
        }

        /// The next block, carrying votes by `voters` (indexes into the schedule) from the
        /// justified checkpoint to the head.
        fn push(&mut self, voters: &[usize]) {
            let votes: Vec<Vote> = voters
                .iter()
                .map(|index| {
                    let key = key_of(&self.state.active.producers[*index]);
                    Vote::signed(&self.chain_id, &key, self.state.ffg.justified, self.head)
                })
                .collect();
            let slot = self.head.slot + 1;
            let (schedule, _) = self.state.schedule_for(self.head.slot, slot);
            let producer = schedule.producer(slot).unwrap();
            let height = Height::new(slot);
            self.state = self.state.after_block(self.head, slot, &producer, height, &votes).unwrap();
            self.head = Checkpoint { height, slot, hash: Hash([slot as u8; 32]) };
        }
    }

    #[test]
    fn ranking_is_by_weight_then_address() {
        let [a, b, c, d] = <[Address; 4]>::try_from(addresses(4)).unwrap();
        let weights = [(d, Amount::new(5)), (c, Amount::new(9)), (b, Amount::new(5)), (a, Amount::new(1))];
        assert_eq!(rank(weights.into_iter(), 2), vec![b, c], "9, then the lower address of the two fives");
        assert_eq!(rank(weights.into_iter(), 21), vec![a, b, c, d], "fewer delegates than producers: all");
        assert_eq!(rank(std::iter::empty(), 21), Vec::<Address>::new());
    }

    #[test]
    fn slots_go_round_robin_and_a_wrong_producer_is_refused() {
        let producers = addresses(3);
        let schedule = Schedule { version: 0, start_slot: 5, producers: producers.clone() };
        assert_eq!(schedule.producer(4), None);
        let turns: Vec<Address> = (5..11).map(|slot| schedule.producer(slot).unwrap()).collect();
        assert_eq!(turns, [&producers[..], &producers[..]].concat());
        assert_eq!((schedule.round_start_after(5), schedule.round_start_after(7)), (8, 8));
        assert_eq!((schedule.round_start_after(8), schedule.round_start_after(2)), (11, 8));
        let state = DposState { active: schedule, ..DposState::initial(producers.clone()) };
        let parent = Checkpoint { height: Height::new(1), slot: 5, hash: Hash([5; 32]) };
        let got = state.after_block(parent, 6, &producers[0], Height::new(2), &[]);
        assert_eq!(
            got,
            Err(DposError::NotProducer { slot: 6, version: 0, expected: Some(producers[1]), got: producers[0] })
        );
    }

    #[test]
    fn votes_of_two_thirds_plus_one_producers_make_blocks_irreversible() {
        let mut chain = Chain::new(4);
        chain.push(&[]);
        // Two of four is not enough; the third vote for block 1 (in block 3) justifies it.
        chain.push(&[0, 1]);
        assert_eq!(chain.state.ffg.justified.height, Height::GENESIS);
        chain.push(&[]);
        let mut chain2 = Chain { state: chain.state.clone(), head: chain.head, chain_id: chain.chain_id.clone() };
        chain.push(&[0, 1, 2]);
        assert_eq!(chain.state.ffg.justified.height, Height::new(3), "votes for the head, block 3");
        assert_eq!(chain.state.irreversible(), Height::GENESIS);
        // Its child in the next slot justified from it: block 3 is irreversible.
        chain.push(&[1, 2, 3]);
        assert_eq!((chain.state.ffg.justified.height, chain.state.irreversible()), (Height::new(4), Height::new(3)));
        // Votes by strangers or for blocks not on the chain count for nothing.
        let stranger = testing::key(9);
        let stray = Vote::signed(&chain2.chain_id, &stranger, chain2.state.ffg.justified, chain2.head);
        let elsewhere = Checkpoint { hash: Hash([77; 32]), ..chain2.head };
        let mut votes = vec![stray];
        for index in 0..4 {
            let key = key_of(&chain2.state.active.producers[index]);
            votes.push(Vote::signed(&chain2.chain_id, &key, chain2.state.ffg.justified, elsewhere));
        }
        let slot = chain2.head.slot + 1;
        let producer = chain2.state.active.producer(slot).unwrap();
        chain2.state = chain2.state.after_block(chain2.head, slot, &producer, Height::new(slot), &votes).unwrap();
        assert_eq!(chain2.state.ffg.justified.height, Height::GENESIS);
    }

    #[test]
    fn a_new_schedule_starts_at_the_round_boundary_after_its_block_is_irreversible() {
        let mut chain = Chain::new(4);
        let active = chain.state.active.producers.clone();
        let outsider = addresses(5).into_iter().find(|address| !active.contains(address)).unwrap();
        let mut new = active[1..].to_vec();
        new.push(outsider);
        new.sort_unstable();
        chain.push(&[]);
        chain.state.propose(new.clone(), Height::new(1));
        chain.state.propose(active.clone(), Height::new(1));
        assert_eq!(chain.state.pending.as_ref().unwrap().producers, new, "one pending change at a time");
        let mut switched_at = None;
        for _ in 0..16 {
            let version = chain.state.active.version;
            chain.push(&[0, 1, 2, 3]);
            if version == 0 && chain.state.active.version == 1 {
                switched_at = Some(chain.head.slot);
                assert!(chain.state.irreversible() >= Height::new(1) || chain.head.slot == 8);
            }
        }
        // Block 1 is irreversible at block 3 (votes for 1 in 2, for 2 in 3); the old schedule's
        // next round starts at slot 4.
        assert_eq!(switched_at, Some(4));
        assert_eq!(chain.state.active, Schedule { version: 1, start_slot: 4, producers: new });
        assert!(chain.state.pending.is_none());
        assert!(chain.state.irreversible() > Height::new(8), "irreversibility goes on under the new schedule");
    }
}

//! Finality as a function of the chain: Casper FFG with block slots as epochs, from votes
//! carried in blocks. Pure: the PoS engine keeps a tracker per block (`consensus::pos`), and an
//! engine whose finality is part of the state can keep it in the state the same way.
//!
//! Each block has a [`Tracker`]: the highest justified checkpoint of its chain, the highest
//! final one, and the tallies of votes (carried in the chain's blocks) whose source is that
//! justified checkpoint. A block's tracker is its parent's plus the votes in its body, so any
//! node computes the same finality from the same chain, including a node that syncs it later.
//!
//! Rules, for a block at height `h` whose parent's tracker has justified `J`:
//! - a vote counts if its source is `J`, its target is a strict ancestor of the block (height,
//!   slot and hash as the chain has them) in a slot after `J`'s and at most
//!   `VOTE_TARGET_AGE_MAX` heights below `h`, and its voter is in the set of its target's epoch
//!   (stake from that set; one count per voter and target);
//! - a target whose votes carry more than 2/3 of its set's stake becomes justified; if one of the
//!   targets justified by the block is `J`'s child in the next slot (height `J + 1`, slot
//!   `slot(J) + 1`), `J` becomes final; the highest target justified becomes the new `J` and the
//!   tallies start over (their source is no longer `J`).
//!
//! Slots, not heights, are the epochs because they only rise with time: a validator whose
//! branch lost votes again at the winner's next block, instead of waiting until the winner is
//! as high as its last target.
//!
//! Safety. Suppose final blocks `A` (slot `a`) and `B` conflict, `a <= b`. `A` is final, so more
//! than 2/3 voted `A -> A'` with `A'` in slot `a + 1`. Take the justified checkpoint `T` with the
//! lowest slot above `a` on `B`'s side that does not descend from `A` (`B` itself when `b > a`;
//! when `b = a`, the votes justifying `A` and `B` already share a target slot). `T` was justified
//! by more than 2/3 with sources `S` in earlier slots: if `S` is before `a`, those votes surround
//! `A -> A'` (or share its target slot, if `T` is in slot `a + 1`); at `a` or `a + 1`, they
//! share a target slot with the votes for `A` or `A'`; after, `S` contradicts `T`'s minimality.
//! Two supermajorities of one set overlap in more than 1/3 of its stake, all of which signed a
//! slashable pair (validators never do: `consensus::signer::Guard`). With sets changing by epoch
//! the overlap shrinks by the stake that changed between them. (`A'` must be in slot `a + 1`:
//! a justified child two slots later would let a conflicting target in the slot between escape
//! both conditions.)
//!
//! A tracker is `exact` when every vote it met could be judged: a vote for a side-branch block
//! in another epoch than the branch's fork point has no known set until the branch is applied,
//! and is counted against the fork point's set, as an estimate. Finality is only claimed from
//! exact trackers; the engine recomputes the trackers of blocks a reorg applies.

use crate::codec::{Canonical, Decode, Encode};
use crate::limits;
use crate::pos::ValidatorSet;
use crate::primitives::{Amount, Hash, Height};
use crate::tx::{Checkpoint, Vote};

/// The votes counted for one target: their stake and a bitmap of voters by their position in
/// the target's set.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Tally {
    pub target: Checkpoint,
    pub stake: Amount,
    pub voters: Vec<u8>,
}

impl Tally {
    fn has(&self, index: usize) -> bool {
        self.voters.get(index / 8).is_some_and(|byte| byte & (1 << (index % 8)) != 0)
    }

    fn mark(&mut self, index: usize) {
        let byte_index = index / 8;
        if self.voters.len() <= byte_index {
            self.voters.resize(byte_index.saturating_add(1), 0);
        }
        if let Some(byte) = self.voters.get_mut(index / 8) {
            *byte |= 1 << (index % 8);
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Tracker {
    pub justified: Checkpoint,
    pub finalized: Checkpoint,
    /// Tallies of votes with source `justified`, by target.
    pub tallies: Vec<Tally>,
    pub exact: bool,
    /// The slot of the highest source of a vote the chain's blocks carry for one of its
    /// blocks: a voter saw it justified. Only a hint, for choosing which branch to try while the
    /// tracker is an estimate (see [`Tracker::fork_choice_slot`]).
    pub source_hint: u64,
}

impl Canonical for Tracker {
    const BYTES_MAX: u32 = limits::FFG_TRACKER_BYTES_MAX;
}

/// What the tracker needs to know about a vote's target, from the chain.
#[derive(Debug)]
pub enum Target<'a> {
    /// An ancestor of the block, with its epoch's set.
    Known(&'a ValidatorSet),
    /// An ancestor whose set cannot be read yet (a side branch in a later epoch than its fork
    /// point), counted against the set given, the nearest the node has: the tracker becomes an
    /// estimate (not exact), good for choosing a branch to try, never for finality.
    Estimated(&'a ValidatorSet),
    /// An ancestor whose set cannot be read at all.
    UnknownSet,
    /// Not an ancestor of the block (or too old to check): the vote does not count here.
    NotAncestor,
}

impl Tracker {
    /// Genesis is justified and final.
    pub fn genesis(hash: Hash) -> Tracker {
        let genesis = Checkpoint { height: Height::GENESIS, slot: 0, hash };
        Tracker { justified: genesis, finalized: genesis, tallies: Vec::new(), exact: true, source_hint: 0 }
    }

    /// The justified slot the fork choice compares: exact, or for an estimate the higher of the
    /// estimate and the highest source the branch's votes name (a branch whose estimate fell
    /// behind still gets tried; applying it makes it exact, and a loser is left).
    pub fn fork_choice_slot(&self) -> u64 {
        if self.exact { self.justified.slot } else { self.justified.slot.max(self.source_hint) }
    }

    /// Whether the votes counted for `target` include `voter_index`'s (its position in the
    /// target's set).
    pub fn counted(&self, target: &Checkpoint, voter_index: usize) -> bool {
        self.tallies.iter().any(|tally| tally.target == *target && tally.has(voter_index))
    }

    /// The tracker of a block at `height` whose parent's tracker is `self`, carrying `votes`;
    /// `target` says what the chain knows of each vote's target.
    pub fn next<'a>(&self, height: Height, votes: &[Vote], target: impl Fn(&Checkpoint) -> Target<'a>) -> Tracker {
        let oldest = height.get().saturating_sub(limits::VOTE_TARGET_AGE_MAX);
        let mut next = self.clone();
        next.tallies.retain(|tally| tally.target.height.get() >= oldest);
        // Totals of the sets of targets justified in this block.
        let mut justified: Vec<Checkpoint> = Vec::new();
        for vote in votes {
            let target_height = vote.target.height;
            if vote.source.slot < vote.target.slot
                && target_height < height
                && !matches!(target(&vote.target), Target::NotAncestor)
            {
                next.source_hint = next.source_hint.max(vote.source.slot);
            }
            if vote.source != self.justified
                || vote.target.slot <= self.justified.slot
                || target_height >= height
                || target_height.get() < oldest
            {
                continue;
            }
            let set = match target(&vote.target) {
                Target::Known(set) => set,
                Target::Estimated(set) => {
                    next.exact = false;
                    set
                }
                Target::UnknownSet => {
                    next.exact = false;
                    continue;
                }
                Target::NotAncestor => continue,
            };
            let (Some(index), Some(stake)) = (set.index_of(&vote.voter), set.stake_of(&vote.voter)) else { continue };
            let position = match next.tallies.binary_search_by(|tally| tally.target.cmp(&vote.target)) {
                Ok(position) => position,
                Err(position) => {
                    let fresh = Tally { target: vote.target, stake: Amount::ZERO, voters: Vec::new() };
                    next.tallies.insert(position, fresh);
                    position
                }
            };
            let Some(tally) = next.tallies.get_mut(position) else { continue };
            if tally.has(index) {
                continue;
            }
            tally.mark(index);
            tally.stake = tally.stake.checked_add(stake).unwrap_or(Amount::MAX);
            if set.is_supermajority(tally.stake) && !justified.contains(&vote.target) {
                justified.push(vote.target);
            }
        }
        if justified.is_empty() {
            return next;
        }
        let child_next_slot = |target: &&Checkpoint| {
            target.height.get() == self.justified.height.get().saturating_add(1)
                && target.slot == self.justified.slot.saturating_add(1)
        };
        if justified.iter().any(|target| child_next_slot(&target)) {
            next.finalized = self.justified;
        }
        if let Some(highest) = justified.iter().max_by_key(|target| target.slot) {
            next.justified = *highest;
        }
        next.tallies.clear();
        next
    }
}

#[cfg(test)]
mod tests {
    use crate::crypto::Address;
    use crate::primitives::ChainId;
    use crate::testing;

    use super::*;

    /// The block at `height` of a chain without missed slots.
    fn checkpoint(height: u64) -> Checkpoint {
        Checkpoint { height: Height::new(height), slot: height, hash: Hash([height as u8; 32]) }
    }

    fn set(stakes: &[u128]) -> ValidatorSet {
        let mut validators: Vec<(Address, Amount)> = stakes
            .iter()
            .enumerate()
            .map(|(index, stake)| (testing::key(index as u32).address(), Amount::new(*stake)))
            .collect();
        validators.sort_by_key(|(address, _)| *address);
        let total = Amount::new(stakes.iter().sum());
        ValidatorSet { epoch: 0, seed: Hash::ZERO, validators, total }
    }

    fn votes(voters: &[u32], source: u64, target: u64) -> Vec<Vote> {
        let chain_id = ChainId::new("test").unwrap();
        voters
            .iter()
            .map(|voter| Vote::signed(&chain_id, &testing::key(*voter), checkpoint(source), checkpoint(target)))
            .collect()
    }

    #[test]
    fn two_consecutive_justified_heights_finalize_the_first() {
        let validators = set(&[10, 10, 10, 10]);
        let known = |_: &Checkpoint| Target::Known(&validators);
        let genesis = Tracker::genesis(checkpoint(0).hash);
        // 2 of 4 is not more than 2/3; the third vote in the next block justifies height 1.
        let block2 = genesis.next(Height::new(2), &votes(&[0, 1], 0, 1), known);
        assert_eq!(block2.justified, checkpoint(0));
        let block3 = block2.next(Height::new(3), &votes(&[1, 2], 0, 1), known);
        assert_eq!(block3.justified, checkpoint(1), "voter 1 counted once, 3 of 4 justify");
        assert_eq!(block3.finalized, checkpoint(0), "1 is the child of genesis, which was already final");
        assert!(block3.tallies.is_empty());
        // Votes from the old source no longer count; 1 -> 2 justifies 2 and finalizes 1.
        let block4 = block3.next(Height::new(4), &votes(&[0, 1, 2], 0, 3), known);
        assert_eq!(block4.justified, checkpoint(1));
        let block5 = block4.next(Height::new(5), &votes(&[0, 1, 3], 1, 2), known);
        assert_eq!((block5.justified, block5.finalized), (checkpoint(2), checkpoint(1)));
        // A justified height that skips one justifies without finalizing.
        let block7 = block5.next(Height::new(7), &votes(&[0, 1, 2, 3], 2, 4), known);
        assert_eq!((block7.justified, block7.finalized), (checkpoint(4), checkpoint(1)));
    }

    #[test]
    fn votes_that_cannot_count_do_not() {
        let validators = set(&[10, 10, 10]);
        let known = |_: &Checkpoint| Target::Known(&validators);
        let genesis = Tracker::genesis(checkpoint(0).hash);
        // Targets at or above the block, off the chain, by strangers, or too old.
        assert_eq!(genesis.next(Height::new(2), &votes(&[0, 1, 2], 0, 2), known).justified.height, Height::GENESIS);
        let off_chain = genesis.next(Height::new(2), &votes(&[0, 1, 2], 0, 1), |_| Target::NotAncestor);
        assert_eq!(off_chain.justified.height, Height::GENESIS);
        let strangers = genesis.next(Height::new(2), &votes(&[5, 6, 7], 0, 1), known);
        assert!(strangers.tallies.is_empty());
        let old = genesis.next(Height::new(limits::VOTE_TARGET_AGE_MAX + 2), &votes(&[0, 1, 2], 0, 1), known);
        assert_eq!(old.justified.height, Height::GENESIS);
        // A vote whose set is unknown makes the tracker inexact.
        let unknown = genesis.next(Height::new(2), &votes(&[0], 0, 1), |_| Target::UnknownSet);
        assert!(!unknown.exact);
        assert!(!unknown.next(Height::new(3), &[], known).exact, "inexact stays inexact");
        // Votes from a source this tracker never saw justified do not count, but hint that the
        // branch's justified checkpoint is at least that high: an estimate competes with it.
        let hinted = unknown.next(Height::new(9), &votes(&[0, 1, 2], 5, 7), known);
        assert_eq!((hinted.justified.height, hinted.source_hint), (Height::GENESIS, 5));
        assert_eq!(hinted.fork_choice_slot(), 5);
        let exact = genesis.next(Height::new(9), &votes(&[0, 1, 2], 5, 7), known);
        assert_eq!(exact.fork_choice_slot(), 0, "an exact tracker competes with what it counted");
    }

    #[test]
    fn a_justified_child_finalizes_only_from_the_next_slot() {
        let validators = set(&[10, 10, 10]);
        let known = |_: &Checkpoint| Target::Known(&validators);
        let chain_id = ChainId::new("test").unwrap();
        let link = |source: Checkpoint, target: Checkpoint| -> Vec<Vote> {
            (0..3).map(|voter| Vote::signed(&chain_id, &testing::key(voter), source, target)).collect()
        };
        let genesis = Tracker::genesis(checkpoint(0).hash);
        let block1 = checkpoint(1);
        let justified = genesis.next(Height::new(2), &link(checkpoint(0), block1), known);
        assert_eq!(justified.justified, block1);
        // Block 2 came two slots after block 1 (slot 2 was missed): justifying it does not
        // finalize block 1, since a conflicting block in slot 2 could have been justified too.
        let late_child = Checkpoint { height: Height::new(2), slot: 3, hash: Hash([2; 32]) };
        let after = justified.next(Height::new(3), &link(block1, late_child), known);
        assert_eq!((after.justified, after.finalized), (late_child, checkpoint(0)));
        // In the next slot it does.
        let child = checkpoint(2);
        let after = justified.next(Height::new(3), &link(block1, child), known);
        assert_eq!((after.justified, after.finalized), (child, block1));
    }
}

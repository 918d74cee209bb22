//! What engines with finality votes share (PoS; DPoS's producers next): checking gossiped
//! votes, the bounded pool proposers include votes from, casting this node's vote through the
//! guard, and the watch for conflicting votes.
//!
//! The engine says which set counts the votes for a block ([`VoteSets`]) and hands in the
//! tracker of the head; everything else is the same rule for every engine (see
//! `chorus_chain::ffg`).

use std::collections::{BTreeMap, VecDeque};

use chorus_chain::crypto::{self, Address};
use chorus_chain::ffg::Tracker;
use chorus_chain::header::Header;
use chorus_chain::limits;
use chorus_chain::pos::ValidatorSet;
use chorus_chain::primitives::{Hash, Height};
use chorus_chain::tx::{Checkpoint, Evidence, Vote};

use crate::slotted::Slotted;
use crate::{Action, ChainRead, EngineError, EngineMessage, Outbound};

/// Votes per voter kept to catch a conflicting one.
const VOTES_WATCHED_PER_VOTER: usize = 8;

/// Why a gossiped vote was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VoteError {
    #[error("vote by {voter} has a bad signature")]
    Signature { voter: Address },
    #[error(
        "vote by {voter} names block {hash} at height {} in slot {}, which is at height {} in slot {}",
        claimed.0, claimed.1, actual.0, actual.1
    )]
    Target { voter: Address, hash: Hash, claimed: (Height, u64), actual: (Height, u64) },
    #[error("vote by {voter} for block {hash}: the voter is not in that block's set")]
    NotInSet { voter: Address, hash: Hash },
    #[error("vote by {voter} is already known, or for a block this node cannot judge yet")]
    NotNew { voter: Address },
    #[error(
        "vote by {voter} for height {target} is too old to count on top of the head at {head} \
         (more than {} below)",
        limits::VOTE_TARGET_AGE_MAX
    )]
    Stale { voter: Address, target: Height, head: Height },
}

impl VoteError {
    /// A vote already seen, for an unknown block or too old may be honest news (a late relay).
    /// Everything else is the sender's fault.
    pub fn is_peer_fault(&self) -> bool {
        !matches!(self, VoteError::NotNew { .. } | VoteError::Stale { .. })
    }
}

/// The engine's answer to which set counts votes.
pub trait VoteSets {
    /// The set counting votes for the block at `height` on the current chain (from the state
    /// there).
    fn set_at(&self, chain: &dyn ChainRead, height: Height) -> Result<Option<ValidatorSet>, EngineError>;

    /// The set of the head (who may vote now).
    fn head_set(&self, chain: &dyn ChainRead) -> Result<Option<ValidatorSet>, EngineError>;
}

/// Whether a vote for a target at `target` is too old to count in a block on top of a head at
/// `head` (the rule of `chorus_chain::ffg`).
fn is_old(target: Height, head: Height) -> bool {
    target.get().saturating_add(limits::VOTE_TARGET_AGE_MAX) <= head.get()
}

/// The pool of votes for inclusion and the watch for conflicting ones.
#[derive(Debug, Default)]
pub struct Voting {
    /// Votes for inclusion, by target and voter.
    pool: BTreeMap<(Checkpoint, Address), Vote>,
    /// Votes seen, by voter (the latest few).
    seen: BTreeMap<Address, VecDeque<Vote>>,
}

impl Voting {
    fn add(&mut self, vote: Vote) {
        if self.pool.len() >= limits::VOTE_POOL_MAX as usize {
            self.pool.pop_first();
        }
        self.pool.insert((vote.target, vote.voter), vote);
    }

    /// Drops pooled votes too old to count on top of a head at `head_height`.
    pub fn forget_old(&mut self, head_height: Height) {
        self.pool.retain(|(target, _), _| !is_old(target.height, head_height));
    }

    /// A gossiped vote: checked (signature, target, voter in the target's set) and pooled. A
    /// vote for a block not here yet (gossip raced it), or off the current chain, is kept for
    /// when it is (proposers check it again), but refused as not new (not relayed); only a
    /// member of the head's set, near the head, gets that room in the pool.
    ///
    /// A replay costs no signature check: one pooled already is not new, and one too old to
    /// count (pooled votes are dropped at that age, [`Voting::forget_old`]) is stale.
    pub fn on_vote(
        &mut self,
        chain: &dyn ChainRead,
        slotted: &mut Slotted,
        sets: &dyn VoteSets,
        vote: Vote,
        actions: &mut Vec<Action>,
    ) -> Result<(), EngineError> {
        let voter = vote.voter;
        if self.pool.contains_key(&(vote.target, voter)) {
            return Err(VoteError::NotNew { voter }.into());
        }
        let (_, head) = chain.head();
        if is_old(vote.target.height, head.height) {
            return Err(VoteError::Stale { voter, target: vote.target.height, head: head.height }.into());
        }
        let genesis = chain.genesis();
        if crypto::verify(&voter, vote.own_signing_hash(&genesis.chain_id).as_bytes(), &vote.signature).is_err() {
            return Err(VoteError::Signature { voter }.into());
        }
        self.watch(slotted, &vote, actions);
        let Some(target) = chain.header(&vote.target.hash)? else {
            self.keep_for_later(chain, sets, vote)?;
            return Err(VoteError::NotNew { voter }.into());
        };
        let slot = slotted.slot_of(genesis, &target);
        if (target.height, slot) != (vote.target.height, vote.target.slot) {
            let (claimed, actual) = ((vote.target.height, vote.target.slot), (target.height, slot));
            return Err(VoteError::Target { voter, hash: vote.target.hash, claimed, actual }.into());
        }
        if chain.canonical_hash(target.height)? != Some(vote.target.hash) {
            self.keep_for_later(chain, sets, vote)?;
            return Err(VoteError::NotNew { voter }.into());
        }
        if sets.set_at(chain, target.height)?.is_none_or(|set| set.index_of(&voter).is_none()) {
            return Err(VoteError::NotInSet { voter, hash: vote.target.hash }.into());
        }
        self.add(vote);
        slotted.counters.votes_received = slotted.counters.votes_received.saturating_add(1);
        Ok(())
    }

    fn keep_for_later(&mut self, chain: &dyn ChainRead, sets: &dyn VoteSets, vote: Vote) -> Result<(), EngineError> {
        let (_, head) = chain.head();
        let near = vote.target.height.get() <= head.height.get().saturating_add(limits::VOTE_TARGET_AGE_MAX);
        if near && sets.head_set(chain)?.is_some_and(|set| set.index_of(&vote.voter).is_some()) {
            self.add(vote);
        }
        Ok(())
    }

    /// Pooled votes that would count on top of `head` (whose tracker is `tracker`): from its
    /// justified checkpoint to a canonical block after it, by a member of the target's set not
    /// yet counted.
    pub fn to_include(
        &self,
        chain: &dyn ChainRead,
        slotted: &Slotted,
        sets: &dyn VoteSets,
        tracker: &Tracker,
        head: &Header,
    ) -> Result<Vec<Vote>, EngineError> {
        let mut set_cache: BTreeMap<Height, Option<ValidatorSet>> = BTreeMap::new();
        let mut votes = Vec::new();
        for ((target, voter), vote) in &self.pool {
            if votes.len() >= limits::BLOCK_VOTES_MAX as usize {
                break;
            }
            if vote.source != tracker.justified
                || target.slot <= tracker.justified.slot
                || target.height > head.height
                || is_old(target.height, head.height)
                || chain.canonical_hash(target.height)? != Some(target.hash)
                || chain.header(&target.hash)?.map(|header| slotted.slot_of(chain.genesis(), &header))
                    != Some(target.slot)
            {
                continue;
            }
            let set = match set_cache.entry(target.height) {
                std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::btree_map::Entry::Vacant(entry) => entry.insert(sets.set_at(chain, target.height)?),
            };
            let Some(index) = set.as_ref().and_then(|set| set.index_of(voter)) else { continue };
            if !tracker.counted(target, index) {
                votes.push(vote.clone());
            }
        }
        Ok(votes)
    }

    /// Votes from `justified` to the head through the guard, pools and gossips the vote, if this
    /// node is in the head's set and the head is after `justified`. A guard refusal (it signed
    /// something this would conflict with) means no vote for this head.
    pub fn cast(
        &mut self,
        chain: &dyn ChainRead,
        slotted: &mut Slotted,
        sets: &dyn VoteSets,
        justified: Checkpoint,
        actions: &mut Vec<Action>,
    ) -> Result<(), EngineError> {
        let Some(me) = slotted.me() else { return Ok(()) };
        if sets.head_set(chain)?.is_none_or(|set| set.index_of(&me).is_none()) {
            return Ok(());
        }
        let (head_hash, head) = chain.head();
        let target = Checkpoint { height: head.height, slot: slotted.slot_of(chain.genesis(), &head), hash: head_hash };
        if target.slot <= justified.slot {
            return Ok(());
        }
        let chain_id = chain.genesis().chain_id.clone();
        let Some(guard) = slotted.guard_mut() else { return Ok(()) };
        let Ok(vote) = guard.sign_vote(&chain_id, justified, target, actions) else { return Ok(()) };
        self.add(vote.clone());
        actions.push(Action::Broadcast(Outbound::Message(EngineMessage::Vote(vote))));
        Ok(())
    }

    /// Remembers a signed vote; one conflicting with a remembered vote by the same voter is
    /// evidence.
    pub fn watch(&mut self, slotted: &mut Slotted, vote: &Vote, actions: &mut Vec<Action>) {
        let conflict =
            self.seen.get(&vote.voter).and_then(|seen| seen.iter().find(|other| other.conflicts_with(vote)).cloned());
        if let Some(other) = conflict {
            slotted.report(Evidence::DoubleVote { first: other, second: vote.clone() }, actions);
            return;
        }
        if !self.seen.contains_key(&vote.voter) && self.seen.len() >= limits::EQUIVOCATION_WATCH_MAX as usize {
            self.seen.pop_first();
        }
        let seen = self.seen.entry(vote.voter).or_default();
        if !seen.contains(vote) {
            if seen.len() >= VOTES_WATCHED_PER_VOTER {
                seen.pop_front();
            }
            seen.push_back(vote.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use chorus_chain::crypto::Signature;
    use chorus_chain::genesis::Genesis;
    use chorus_chain::state::{ReadError, StateRead};
    use chorus_chain::testing;

    use super::*;
    use crate::ChainReadError;

    /// A chain of which on_vote may read only the genesis and the head: a vote refused before
    /// its signature is checked reads nothing else.
    struct HeadOnly {
        genesis: Genesis,
        head: Header,
    }

    impl StateRead for HeadOnly {
        fn get_raw(&self, _key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
            unreachable!("a vote refused before its signature reads no state")
        }
    }

    impl ChainRead for HeadOnly {
        fn genesis(&self) -> &Genesis {
            &self.genesis
        }
        fn head(&self) -> (Hash, Header) {
            (self.head.hash(), self.head.clone())
        }
        fn header(&self, _hash: &Hash) -> Result<Option<Header>, ChainReadError> {
            unreachable!("a vote refused before its signature reads no header")
        }
        fn block(&self, _hash: &Hash) -> Result<Option<chorus_chain::block::Block>, ChainReadError> {
            unreachable!("votes read no block")
        }
        fn get_raw_at(&self, _height: Height, _key: &[u8]) -> Result<Option<Vec<u8>>, ChainReadError> {
            unreachable!("a vote refused before its signature reads no state")
        }
        fn canonical_hash(&self, _height: Height) -> Result<Option<Hash>, ChainReadError> {
            unreachable!("a vote refused before its signature reads no chain")
        }
        fn record(&self, _key: &[u8]) -> Result<Option<Vec<u8>>, ChainReadError> {
            unreachable!("votes read no record")
        }
        fn finalized(&self) -> Option<(Height, Hash)> {
            None
        }
    }

    struct NoSets;

    impl VoteSets for NoSets {
        fn set_at(&self, _chain: &dyn ChainRead, _height: Height) -> Result<Option<ValidatorSet>, EngineError> {
            unreachable!("a vote refused before its signature asks for no set")
        }
        fn head_set(&self, _chain: &dyn ChainRead) -> Result<Option<ValidatorSet>, EngineError> {
            unreachable!("a vote refused before its signature asks for no set")
        }
    }

    /// A replayed vote too old to count is refused before its signature is checked (a forged
    /// signature shows it), without blame; one a block above the limit is checked.
    #[test]
    fn a_vote_too_old_to_count_is_refused_as_stale_before_its_signature_is_checked() {
        let genesis = testing::pos_genesis(2, 1_000, &[100, 100], 8);
        let mut head = chorus_chain::state::genesis_block(&genesis, Hash::ZERO).header;
        head.height = Height::new(100);
        let chain = HeadOnly { genesis, head };
        let mut slotted = Slotted::new("pos", 1_000, None);
        let mut voting = Voting::default();
        let checkpoint =
            |height: u64| Checkpoint { height: Height::new(height), slot: height, hash: Hash::digest(b"t") };
        let forged = |target: u64| Vote {
            voter: testing::key(0).address(),
            source: checkpoint(0),
            target: checkpoint(target),
            signature: Signature([7; 64]),
        };
        let refusal = |voting: &mut Voting, slotted: &mut Slotted, vote: Vote| {
            let mut actions = Vec::new();
            let error = voting.on_vote(&chain, slotted, &NoSets, vote, &mut actions).expect_err("refused");
            assert!(actions.is_empty(), "{actions:?}");
            match error {
                EngineError::Vote(error) => *error,
                other => panic!("not a vote error: {other}"),
            }
        };

        let oldest_counted = 100 + 1 - limits::VOTE_TARGET_AGE_MAX;
        for target in [0, 1, oldest_counted - 1] {
            let error = refusal(&mut voting, &mut slotted, forged(target));
            assert_eq!(
                error,
                VoteError::Stale {
                    voter: testing::key(0).address(),
                    target: Height::new(target),
                    head: Height::new(100)
                }
            );
            assert!(!error.is_peer_fault(), "a late relay is no fault");
        }
        let error = refusal(&mut voting, &mut slotted, forged(oldest_counted));
        assert_eq!(error, VoteError::Signature { voter: testing::key(0).address() }, "young enough to be checked");
        assert!(error.is_peer_fault());
    }
}

//! Proof of stake: proposers drawn by stake per slot, FFG finality from votes carried in blocks.
//!
//! The chain rules (a block's slot follows its parent's and its timestamp is the slot's start;
//! its proposer is the one `chorus_chain::pos` draws for the slot from the set of the slot's
//! epoch) are the state machine's, so they hold on every branch the store applies. This engine
//! adds what needs a clock, a key or a view of several branches:
//!
//! - **Slots.** A timer fires at each slot's start; if this node's validator is the slot's
//!   proposer on the head, it proposes, carrying the votes its pool can add to the head's
//!   tallies, and seals the built block through the [`Guard`]. A missed slot is skipped.
//! - **Blocks.** A peer's block is checked before it is stored: sealed for the slot its
//!   timestamp starts, after its parent's slot, from the slot's proposer when the parent's
//!   state is at hand (a side branch's proposers are checked as a reorg applies it), and not
//!   from a slot that has not begun (beyond `limits::BLOCK_FUTURE_DRIFT_MS_MAX`: held until it
//!   has, without blame).
//! - **Finality.** Each block gets a [`Tracker`] (see `chorus_chain::ffg`); a block whose exact tracker
//!   finalizes a block claims it in `AddBlock`, so the store moves finality with it. Fork
//!   choice: the chain with the highest justified checkpoint, then the highest block, then the
//!   lower hash; never below the final block (the store refuses that). Latency: a block's
//!   votes ride in the next block and the votes that finalize it (linking it to its justified
//!   child) in the one after, so with every slot filled a block is final two slots after its
//!   own, as the block proving it arrives; going below needs a second vote round per slot.
//! - **Votes.** When the head changes and this node's validator is in the head's set, it votes
//!   from the head's justified checkpoint to the head (through the guard) and gossips the vote.
//!   Gossiped votes go to a bounded pool for proposers to include.
//! - **Evidence.** Two headers signed for one slot by one proposer, or two conflicting votes by
//!   one voter, seen in blocks or gossip, are submitted as `Evidence` once.

use std::collections::BTreeMap;
use std::sync::Arc;

use chorus_chain::block::Block;
use chorus_chain::codec;
use chorus_chain::crypto::Address;
use chorus_chain::genesis::{Genesis, PosConfig};
use chorus_chain::header::Header;
use chorus_chain::limits;
use chorus_chain::pos::{self, ValidatorSet};
use chorus_chain::primitives::{Hash, Height, Timestamp};
use chorus_chain::state;
use chorus_chain::tx::{Checkpoint, Vote};

use crate::signer::Signer;
pub use crate::slotted::SLOT_TIMER;
use crate::slotted::Slotted;
use crate::votes::{VoteSets, Voting};
use crate::{
    Action, ActiveMember, ActiveSet, ChainRead, ChainReadError, Durability, Engine, EngineCounters, EngineError,
    EngineMessage, Event, Origin, Outbound, StateAt,
};
use chorus_chain::ffg::{Target, Tracker};

/// Why a PoS block or vote was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PosError {
    #[error("block {hash} is for slot {slot}, whose proposer is {expected:?}, not {got}")]
    NotProposer { hash: Hash, slot: u64, expected: Option<Address>, got: Address },
}

impl PosError {
    /// Always the sender's fault.
    pub fn is_peer_fault(&self) -> bool {
        true
    }
}

/// PoS counts votes with the set of the target's epoch, from the state at the target.
struct PosSets;

impl VoteSets for PosSets {
    fn set_at(&self, chain: &dyn ChainRead, height: Height) -> Result<Option<ValidatorSet>, EngineError> {
        Ok(state::read_validators(&StateAt { chain, height }).map_err(ChainReadError::from)?)
    }

    fn head_set(&self, chain: &dyn ChainRead) -> Result<Option<ValidatorSet>, EngineError> {
        Ok(state::read_validators(chain).map_err(ChainReadError::from)?)
    }
}

const TRACKER_RECORD_PREFIX: &[u8] = b"pos/tracker/";

fn tracker_key(hash: &Hash) -> Vec<u8> {
    [TRACKER_RECORD_PREFIX, hash.as_bytes().as_slice()].concat()
}

#[derive(Debug)]
pub struct PosEngine {
    config: PosConfig,
    /// Slots, held blocks, the guard, double proposals.
    slotted: Slotted,
    /// Recent blocks' trackers (the store's records hold every block's), by (height, hash) so
    /// the oldest go first.
    trackers: BTreeMap<(Height, Hash), Arc<Tracker>>,
    /// Gossiped votes for inclusion; conflicting votes seen.
    voting: Voting,
}

/// Upcoming slots `active_set` lists the proposers of.
const SCHEDULE_SHOWN: u64 = 8;

impl PosEngine {
    pub fn new(config: PosConfig, signer: Option<Signer>) -> PosEngine {
        PosEngine {
            slotted: Slotted::new("pos", config.slot_ms, signer),
            config,
            trackers: BTreeMap::new(),
            voting: Voting::default(),
        }
    }

    fn slot_of(&self, genesis: &Genesis, header: &Header) -> u64 {
        self.slotted.slot_of(genesis, header)
    }

    /// The tracker of a stored block: cached, recorded, or (for genesis) the start.
    pub fn tracker(&mut self, chain: &dyn ChainRead, hash: &Hash) -> Result<Arc<Tracker>, EngineError> {
        let header = chain.header(hash)?.ok_or(ChainReadError::Missing { hash: *hash, role: "a tracked block" })?;
        if let Some(tracker) = self.trackers.get(&(header.height, *hash)) {
            return Ok(Arc::clone(tracker));
        }
        let tracker = if header.height == Height::GENESIS {
            Tracker::genesis(*hash)
        } else {
            match chain.record(&tracker_key(hash))? {
                Some(bytes) => codec::decode(&bytes).map_err(|error| ChainReadError::Unreadable {
                    what: format!("tracker record of {hash}: {error}"),
                })?,
                // A block stored before its tracker was written (a crash between the two):
                // computed again from its parent's.
                None => {
                    let block =
                        chain.block(hash)?.ok_or(ChainReadError::Missing { hash: *hash, role: "a tracked block" })?;
                    let parent = self.tracker(chain, &header.parent)?;
                    self.next_tracker(chain, &parent, &block)?
                }
            }
        };
        Ok(self.cache(header.height, *hash, tracker))
    }

    fn cache(&mut self, height: Height, hash: Hash, tracker: Tracker) -> Arc<Tracker> {
        let tracker = Arc::new(tracker);
        self.trackers.insert((height, hash), Arc::clone(&tracker));
        while self.trackers.len() > limits::TRACKERS_CACHED_MAX as usize {
            self.trackers.pop_first();
        }
        tracker
    }

    /// The tracker of `block` given its parent's: its votes judged against what the chain knows
    /// of their targets.
    fn next_tracker(&self, chain: &dyn ChainRead, parent: &Tracker, block: &Block) -> Result<Tracker, EngineError> {
        if block.body.votes.is_empty() {
            return Ok(parent.next(block.header.height, &[], |_| Target::NotAncestor));
        }
        let view = BranchView::of(self, chain, &block.header)?;
        // What each distinct target is: not an ancestor, or an ancestor whose set is read from
        // the state at some height (exactly its epoch's or as an estimate), or not at hand.
        let mut targets: BTreeMap<Checkpoint, SetAt> = BTreeMap::new();
        let mut sets: BTreeMap<Height, Option<ValidatorSet>> = BTreeMap::new();
        for vote in &block.body.votes {
            if targets.contains_key(&vote.target) {
                continue;
            }
            let Some(set_at) = view.ancestor(self, chain, &vote.target)? else {
                continue;
            };
            if let SetAt::State { at, .. } = set_at
                && let std::collections::btree_map::Entry::Vacant(entry) = sets.entry(at)
            {
                entry.insert(state::read_validators(&StateAt { chain, height: at }).map_err(ChainReadError::from)?);
            }
            targets.insert(vote.target, set_at);
        }
        Ok(parent.next(block.header.height, &block.body.votes, |target| match targets.get(target) {
            None => Target::NotAncestor,
            Some(SetAt::Unknown) => Target::UnknownSet,
            Some(SetAt::State { at, exact }) => match (sets.get(at), exact) {
                (Some(Some(set)), true) => Target::Known(set),
                (Some(Some(set)), false) => Target::Estimated(set),
                _ => Target::UnknownSet,
            },
        }))
    }

    /// Whether the chain ending at `a` beats the one ending at `b`: the higher justified
    /// checkpoint, then the higher block, then the lower hash. A side branch past an epoch
    /// boundary has an estimated justified checkpoint: it is tried on the estimate, applying it
    /// makes its tracker exact, and the engine goes back if it then loses
    /// ([`PosEngine::on_head_changed`]).
    fn better(a: (&Tracker, Height, Hash), b: (&Tracker, Height, Hash)) -> bool {
        let key = |(tracker, height, hash): (&Tracker, Height, Hash)| {
            (tracker.fork_choice_slot(), height, std::cmp::Reverse(hash))
        };
        key(a) > key(b)
    }

    fn on_block(
        &mut self,
        chain: &dyn ChainRead,
        now: Timestamp,
        from: Origin,
        block: Arc<Block>,
        actions: &mut Vec<Action>,
    ) -> Result<(), EngineError> {
        let hash = block.hash();
        if chain.header(&hash)?.is_some() {
            return Ok(());
        }
        let (slot, parent) = self.slotted.check_block(chain, now, &from, &block)?;
        let genesis = chain.genesis();
        let header = &block.header;
        // The proposer, where the parent's state is at hand (the state machine checks the rest).
        if chain.canonical_hash(parent.height)? == Some(header.parent) {
            let state = StateAt { chain, height: parent.height };
            let set = state::pos_set_for(&state, genesis, &self.config, &parent, slot).map_err(ChainReadError::from)?;
            let expected = set.proposer(slot);
            if expected != Some(header.proposer) {
                return Err(PosError::NotProposer { hash, slot, expected, got: header.proposer }.into());
            }
        }
        self.slotted.watch_header(header, actions);
        for vote in &block.body.votes {
            self.voting.watch(&mut self.slotted, vote, actions);
        }
        let parent_tracker = self.tracker(chain, &header.parent)?;
        let tracker = self.next_tracker(chain, &parent_tracker, &block)?;
        let (head_hash, head) = chain.head();
        let head_tracker = self.tracker(chain, &head_hash)?;
        let make_head = Self::better((&tracker, header.height, hash), (&head_tracker, head.height, head_hash));
        let finalizes = (tracker.exact && tracker.finalized.height > Height::GENESIS)
            .then_some((tracker.finalized.height, tracker.finalized.hash));
        actions.push(Action::Persist {
            key: tracker_key(&hash),
            value: codec::encode(&tracker),
            durability: Durability::Logged,
        });
        self.cache(header.height, hash, tracker);
        actions.push(Action::AddBlock { block: Arc::clone(&block), make_head, finalizes });
        if from == Origin::Local {
            actions.push(Action::Broadcast(Outbound::Block(block)));
        }
        Ok(())
    }

    /// At a slot's start: blocks held for this slot are taken up; propose if this validator is
    /// the slot's proposer on the head.
    fn on_slot(&mut self, chain: &dyn ChainRead, now: Timestamp, actions: &mut Vec<Action>) -> Result<(), EngineError> {
        let genesis = chain.genesis();
        let head = chain.head().1;
        let producer_of = |slot| {
            let set = state::pos_set_for(chain, genesis, &self.config, &head, slot).map_err(ChainReadError::from)?;
            Ok(set.proposer(slot))
        };
        let (slot, due) = self.slotted.tick(chain, now, producer_of, actions)?;
        for (from, block) in due {
            // A held block that turns out bad costs nothing here: its sender was not blamed
            // when it arrived early, and is not now.
            let _ = self.on_block(chain, now, from, block, actions);
        }
        self.propose(chain, now, slot, actions)
    }

    fn propose(
        &mut self,
        chain: &dyn ChainRead,
        _now: Timestamp,
        slot: u64,
        actions: &mut Vec<Action>,
    ) -> Result<(), EngineError> {
        let Some(me) = self.slotted.me() else { return Ok(()) };
        let genesis = chain.genesis();
        let (head_hash, head) = chain.head();
        if slot <= self.slot_of(genesis, &head) {
            return Ok(());
        }
        let set = state::pos_set_for(chain, genesis, &self.config, &head, slot).map_err(ChainReadError::from)?;
        if set.proposer(slot) != Some(me) {
            return Ok(());
        }
        let votes = self.votes_to_include(chain, &head_hash, &head)?;
        actions.push(Action::Propose {
            parent: head_hash,
            timestamp: self.slotted.slot_start(genesis, slot),
            proposer: me,
            votes,
        });
        Ok(())
    }

    fn votes_to_include(
        &mut self,
        chain: &dyn ChainRead,
        head_hash: &Hash,
        head: &Header,
    ) -> Result<Vec<Vote>, EngineError> {
        let tracker = self.tracker(chain, head_hash)?;
        self.voting.to_include(chain, &self.slotted, &PosSets, &tracker, head)
    }

    fn on_built(
        &mut self,
        chain: &dyn ChainRead,
        now: Timestamp,
        block: Arc<Block>,
        actions: &mut Vec<Action>,
    ) -> Result<(), EngineError> {
        match self.slotted.seal(chain, &block, actions)? {
            Some(sealed) => self.on_block(chain, now, Origin::Local, sealed, actions),
            None => Ok(()),
        }
    }

    /// The head changed: trackers of blocks a reorg applied are made exact; if the new chain
    /// then loses to the one it replaced, the head goes back; otherwise this validator votes for
    /// the new head.
    fn on_head_changed(
        &mut self,
        chain: &dyn ChainRead,
        rolled_back: &[Hash],
        applied: &[Hash],
        actions: &mut Vec<Action>,
    ) -> Result<(), EngineError> {
        for hash in applied {
            let tracker = self.tracker(chain, hash)?;
            if tracker.exact {
                continue;
            }
            let block = chain.block(hash)?.ok_or(ChainReadError::Missing { hash: *hash, role: "an applied block" })?;
            let parent = self.tracker(chain, &block.header.parent)?;
            let exact = self.next_tracker(chain, &parent, &block)?;
            actions.push(Action::Persist {
                key: tracker_key(hash),
                value: codec::encode(&exact),
                durability: Durability::Logged,
            });
            self.cache(block.header.height, *hash, exact);
        }
        let (head_hash, head) = chain.head();
        if let Some(old_hash) = rolled_back.first() {
            let old =
                chain.header(old_hash)?.ok_or(ChainReadError::Missing { hash: *old_hash, role: "the old head" })?;
            let (old_tracker, new_tracker) = (self.tracker(chain, old_hash)?, self.tracker(chain, &head_hash)?);
            if old_tracker.exact
                && new_tracker.exact
                && Self::better((&old_tracker, old.height, *old_hash), (&new_tracker, head.height, head_hash))
            {
                actions.push(Action::SetHead { hash: *old_hash });
                return Ok(());
            }
        }
        self.voting.forget_old(head.height);
        self.vote(chain, head_hash, actions)
    }

    fn vote(&mut self, chain: &dyn ChainRead, head_hash: Hash, actions: &mut Vec<Action>) -> Result<(), EngineError> {
        let justified = self.tracker(chain, &head_hash)?.justified;
        self.voting.cast(chain, &mut self.slotted, &PosSets, justified, actions)
    }
}

/// What a block's chain looks like below it, for judging its votes' targets: its side-branch
/// ancestors (hash and slot by height) down to where it joins the current chain, or down to
/// the oldest height a vote may target.
struct BranchView {
    /// Ancestors off the current chain, by height.
    side: BTreeMap<Height, (Hash, u64)>,
    /// Where the branch joins the current chain (height and slot); `None` when it joins below
    /// the oldest height a vote may target, so no state on this node holds its sets.
    fork: Option<(Height, u64)>,
}

/// Where a vote's target's set is read: from the state at `at`, exactly its epoch's or as an
/// estimate; or nowhere this node has (a branch that joins the chain too deep).
#[derive(Clone, Copy)]
enum SetAt {
    State { at: Height, exact: bool },
    Unknown,
}

impl BranchView {
    fn of(engine: &PosEngine, chain: &dyn ChainRead, header: &Header) -> Result<BranchView, EngineError> {
        let genesis = chain.genesis();
        let oldest = header.height.get().saturating_sub(limits::VOTE_TARGET_AGE_MAX);
        let mut side = BTreeMap::new();
        let mut cursor = header.parent;
        loop {
            let ancestor =
                chain.header(&cursor)?.ok_or(ChainReadError::Missing { hash: cursor, role: "an ancestor" })?;
            let slot = engine.slot_of(genesis, &ancestor);
            if chain.canonical_hash(ancestor.height)? == Some(cursor) {
                return Ok(BranchView { side, fork: Some((ancestor.height, slot)) });
            }
            if ancestor.height.get() <= oldest {
                return Ok(BranchView { side, fork: None });
            }
            side.insert(ancestor.height, (cursor, slot));
            cursor = ancestor.parent;
        }
    }

    /// `None` if `target` is not an ancestor of the block (or below the view); otherwise where
    /// the set to count its votes with is read: the target's own state on the current chain;
    /// the fork point's for a side-branch target (exact in the fork point's epoch, an estimate
    /// in a later one), unknown if the fork point is below the view.
    fn ancestor(
        &self,
        engine: &PosEngine,
        chain: &dyn ChainRead,
        target: &Checkpoint,
    ) -> Result<Option<SetAt>, EngineError> {
        let config = &engine.config;
        if let Some((hash, slot)) = self.side.get(&target.height) {
            if (*hash, *slot) != (target.hash, target.slot) {
                return Ok(None);
            }
            return Ok(Some(match self.fork {
                Some((at, fork_slot)) => {
                    SetAt::State { at, exact: pos::epoch_of(config, *slot) == pos::epoch_of(config, fork_slot) }
                }
                None => SetAt::Unknown,
            }));
        }
        let Some((fork_height, _)) = self.fork else { return Ok(None) };
        if target.height > fork_height || chain.canonical_hash(target.height)? != Some(target.hash) {
            return Ok(None);
        }
        let header = chain
            .header(&target.hash)?
            .ok_or(ChainReadError::Missing { hash: target.hash, role: "a vote's target" })?;
        if engine.slot_of(chain.genesis(), &header) != target.slot {
            return Ok(None);
        }
        Ok(Some(SetAt::State { at: target.height, exact: true }))
    }
}

impl Engine for PosEngine {
    fn name(&self) -> &'static str {
        "pos"
    }

    fn step(
        &mut self,
        chain: &dyn ChainRead,
        now: Timestamp,
        event: Event,
        actions: &mut Vec<Action>,
    ) -> Result<(), EngineError> {
        match event {
            Event::Start => {
                self.slotted.start(chain)?;
                let (head_hash, _) = chain.head();
                self.tracker(chain, &head_hash)?;
                self.vote(chain, head_hash, actions)?;
                self.on_slot(chain, now, actions)
            }
            Event::Timer(SLOT_TIMER) => self.on_slot(chain, now, actions),
            Event::Timer(_) => Err(EngineError::Unexpected { engine: "pos", what: "a timer it did not set" }),
            Event::Block { from, block } => self.on_block(chain, now, from, block, actions),
            Event::Built(block) => self.on_built(chain, now, block, actions),
            Event::Message { message: EngineMessage::Vote(vote), .. } => {
                self.voting.on_vote(chain, &mut self.slotted, &PosSets, vote, actions)
            }
            Event::HeadChanged { rolled_back, applied, .. } => {
                self.on_head_changed(chain, &rolled_back, &applied, actions)
            }
            Event::Header { .. } | Event::BlockRejected { .. } | Event::TxsPending => Ok(()),
            Event::Mined(_) => Err(EngineError::Unexpected { engine: "pos", what: "a mined block" }),
            Event::Message { message: EngineMessage::Raft(_) | EngineMessage::RaftRoster(_), .. } => {
                Err(EngineError::Unexpected { engine: "pos", what: "a Raft message" })
            }
        }
    }

    fn counters(&self) -> EngineCounters {
        self.slotted.counters.clone()
    }

    fn active_set(&self, chain: &dyn ChainRead, now: Timestamp) -> Result<Option<ActiveSet>, EngineError> {
        let genesis = chain.genesis();
        let unreadable = ChainReadError::from;
        let (_, head) = chain.head();
        let set = state::read_validators(chain)
            .map_err(unreadable)?
            .unwrap_or_else(|| pos::genesis_set(genesis, &self.config));
        let mut members = Vec::with_capacity(set.validators.len());
        for (address, stake) in &set.validators {
            members.push(ActiveMember {
                address: *address,
                stake: *stake,
                slashed: state::is_slashed(chain, address).map_err(unreadable)?,
            });
        }
        let slot = self.slotted.slot_at(genesis, now);
        let proposer_of = |slot| -> Result<Option<Address>, EngineError> {
            Ok(state::pos_set_for(chain, genesis, &self.config, &head, slot).map_err(unreadable)?.proposer(slot))
        };
        let producer = if slot > self.slot_of(genesis, &head) { proposer_of(slot)? } else { Some(head.proposer) };
        let first = slot.max(self.slot_of(genesis, &head)).saturating_add(1);
        let mut schedule = Vec::with_capacity(SCHEDULE_SHOWN as usize);
        for next in first..first.saturating_add(SCHEDULE_SHOWN) {
            if let Some(proposer) = proposer_of(next)? {
                schedule.push((next, proposer));
            }
        }
        Ok(Some(ActiveSet {
            epoch: Some(set.epoch),
            slot: Some(slot),
            members,
            producer,
            schedule,
            election: None,
            raft: None,
        }))
    }

    fn check_header_alone(&self, header: &Header) -> Result<(), EngineError> {
        Slotted::check_header_alone(header)
    }
}

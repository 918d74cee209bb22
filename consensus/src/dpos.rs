//! Delegated proof of stake: elected delegates produce blocks in round-robin slots, and a block
//! is irreversible once FFG votes of `2n/3 + 1` scheduled producers finalize it.
//!
//! The chain rules (the ranking, schedules and their changes, the producer of a slot, the FFG
//! tally of producers' votes) are `chorus_chain::dpos`'s: the state machine enforces them on
//! every block it applies and keeps the tally in the state, so they hold on every branch. This
//! engine adds what needs a clock, a key or a view of several branches:
//!
//! - **Slots** ([`crate::slotted`], shared with PoS): at each slot's start, if this node's
//!   delegate produces the slot on the head, it builds a block, carrying the pooled votes that
//!   count on the head, and seals it through the guard. A missed slot is skipped. Producers take
//!   fixed turns, so their clocks must agree within a fraction of a slot: one further off loses
//!   its turns.
//! - **Votes** ([`crate::votes`], shared with PoS): each producer votes for every new head, from
//!   the justified checkpoint in the head's state; gossiped votes are checked and pooled.
//! - **Blocks.** Checked before they are stored: the shared slot rules, then the producer where
//!   the parent's state is at hand (a side branch's producers are checked as a reorg applies
//!   it). Each block claims the last irreversible block its state will hold (computed from the
//!   parent's DPoS state exactly as the state machine will), so the store moves finality with
//!   the block that proves it. With every slot filled, a block is irreversible two blocks later.
//! - **Fork choice.** The highest justified slot, then the longer chain (the current head on a
//!   tie), so an honest producer's vote source never falls; never below the irreversible block
//!   (the store refuses that). A side block's state is estimated by replaying its branch from
//!   the fork point; the engine does not yet go back if an applied branch then turns out to have
//!   a lower justified slot (PoS records trackers for that).
//! - **Evidence.** Two headers signed for one slot, or two conflicting votes, by one producer are
//!   submitted as `Evidence` once; the producer's stake is slashed and it leaves the ranking.

use std::sync::Arc;

use chorus_chain::block::Block;
use chorus_chain::dpos::DposState;
use chorus_chain::genesis::DposConfig;
use chorus_chain::header::Header;
use chorus_chain::limits;
use chorus_chain::pos::ValidatorSet;
use chorus_chain::primitives::{Amount, Height, Timestamp};
use chorus_chain::state;
use chorus_chain::tx::Checkpoint;

use crate::signer::Signer;
use crate::slotted::{SLOT_TIMER, Slotted};
use crate::votes::{VoteSets, Voting};
use crate::{
    Action, ActiveMember, ActiveSet, ChainRead, ChainReadError, Election, Engine, EngineCounters, EngineError,
    EngineMessage, Event, Origin, Outbound, RankedDelegate, StateAt,
};

/// Upcoming slots `active_set` lists the producers of.
const SCHEDULE_SHOWN: u64 = 8;

#[derive(Debug)]
pub struct DposEngine {
    config: DposConfig,
    slotted: Slotted,
    /// Producers' votes for inclusion; conflicting votes seen.
    voting: Voting,
}

/// The DPoS state in `state` (before the first DPoS block: the ranking at hand).
fn state_in(config: &DposConfig, state: &dyn state::StateRead) -> Result<DposState, EngineError> {
    let unreadable = ChainReadError::from;
    Ok(match state::read_dpos(state).map_err(unreadable)? {
        Some(dpos) => dpos,
        None => DposState::initial(state::dpos_ranking(state, config).map_err(unreadable)?),
    })
}

/// Votes for a block count against the schedule it was produced under: the active one in its
/// state, each producer with the same weight.
struct Producers<'a>(&'a DposConfig);

impl VoteSets for Producers<'_> {
    fn set_at(&self, chain: &dyn ChainRead, height: Height) -> Result<Option<ValidatorSet>, EngineError> {
        Ok(Some(state_in(self.0, &StateAt { chain, height })?.active.as_set()))
    }

    fn head_set(&self, chain: &dyn ChainRead) -> Result<Option<ValidatorSet>, EngineError> {
        Ok(Some(state_in(self.0, chain)?.active.as_set()))
    }
}

impl DposEngine {
    pub fn new(config: DposConfig, signer: Option<Signer>) -> DposEngine {
        DposEngine { slotted: Slotted::new("dpos", config.slot_ms, signer), config, voting: Voting::default() }
    }

    fn state_at(&self, state: &dyn state::StateRead) -> Result<DposState, EngineError> {
        state_in(&self.config, state)
    }

    /// The DPoS state after a side `block` (on `parent`, in `slot`), replayed from where its
    /// branch joins the current chain; `None` if the branch is deeper than a vote's reach or a
    /// replayed block breaks the rules as replayed (a schedule change it does not see).
    fn branch_state(
        &self,
        chain: &dyn ChainRead,
        parent: &Header,
        slot: u64,
        block: &Block,
    ) -> Result<Option<DposState>, EngineError> {
        let genesis = chain.genesis();
        let mut branch = Vec::new();
        let mut cursor = parent.clone();
        while chain.canonical_hash(cursor.height)? != Some(cursor.hash()) {
            if branch.len() >= limits::VOTE_TARGET_AGE_MAX as usize {
                return Ok(None);
            }
            let hash = cursor.hash();
            let side = chain.block(&hash)?.ok_or(ChainReadError::Missing { hash, role: "a side branch block" })?;
            let above = chain
                .header(&cursor.parent)?
                .ok_or(ChainReadError::Missing { hash: cursor.parent, role: "a side branch block" })?;
            branch.push(side);
            cursor = above;
        }
        let mut state = self.state_at(&StateAt { chain, height: cursor.height })?;
        let mut below =
            Checkpoint { height: cursor.height, slot: self.slotted.slot_of(genesis, &cursor), hash: cursor.hash() };
        for side in branch.iter().rev() {
            let side_slot = self.slotted.slot_of(genesis, &side.header);
            let header = &side.header;
            let Ok(next) = state.after_block(below, side_slot, &header.proposer, header.height, &side.body.votes)
            else {
                return Ok(None);
            };
            state = next;
            below = Checkpoint { height: header.height, slot: side_slot, hash: header.hash() };
        }
        let header = &block.header;
        Ok(state.after_block(below, slot, &header.proposer, header.height, &block.body.votes).ok())
    }

    /// Votes for the head, from the justified checkpoint in its state.
    fn vote(&mut self, chain: &dyn ChainRead, actions: &mut Vec<Action>) -> Result<(), EngineError> {
        let justified = self.state_at(chain)?.ffg.justified;
        self.voting.cast(chain, &mut self.slotted, &Producers(&self.config), justified, actions)
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
        // The producer and the irreversible block this one proves, where the parent's state is
        // at hand; a side block's claim waits for a later block on its branch.
        let mut finalizes = None;
        let (_, head) = chain.head();
        let head_justified = self.state_at(chain)?.ffg.justified.slot;
        // Fork choice: the higher justified slot, then the longer chain (the current head on a
        // tie), so an honest producer's vote source never falls. A side block's state is
        // estimated by replaying its branch's DPoS rules from the fork point (without the
        // schedule changes its transactions may propose); one that cannot be is tried when
        // longer.
        let mut make_head = header.height > head.height;
        if chain.canonical_hash(parent.height)? != Some(header.parent) {
            if let Some(estimate) = self.branch_state(chain, &parent, slot, &block)? {
                make_head = (estimate.ffg.justified.slot, header.height) > (head_justified, head.height);
            }
        } else {
            let before = self.state_at(&StateAt { chain, height: parent.height })?;
            let parent_slot = self.slotted.slot_of(genesis, &parent);
            let parent = Checkpoint { height: parent.height, slot: parent_slot, hash: header.parent };
            let after = before
                .after_block(parent, slot, &header.proposer, header.height, &block.body.votes)
                .map_err(|error| EngineError::Dpos { hash, error: Box::new(error) })?;
            let last = after.ffg.finalized;
            finalizes = (last.height > Height::GENESIS).then_some((last.height, last.hash));
            make_head = (after.ffg.justified.slot, header.height) > (head_justified, head.height);
        }
        for vote in &block.body.votes {
            self.voting.watch(&mut self.slotted, vote, actions);
        }
        self.slotted.watch_header(header, actions);
        actions.push(Action::AddBlock { block: Arc::clone(&block), make_head, finalizes });
        if from == Origin::Local {
            actions.push(Action::Broadcast(Outbound::Block(block)));
        }
        Ok(())
    }

    /// At a slot's start: blocks held for this slot are taken up; produce if this node's
    /// delegate has the slot on the head.
    fn on_slot(&mut self, chain: &dyn ChainRead, now: Timestamp, actions: &mut Vec<Action>) -> Result<(), EngineError> {
        let genesis = chain.genesis();
        // The chain does not change within a step (held blocks taken up below are added by
        // actions run after it): one read of the head and its state serves the whole slot.
        let (head_hash, head) = chain.head();
        let head_slot = self.slotted.slot_of(genesis, &head);
        let dpos = self.state_at(chain)?;
        let producer_of = |slot| Ok(dpos.schedule_for(head_slot, slot).0.producer(slot));
        let (slot, due) = self.slotted.tick(chain, now, producer_of, actions)?;
        for (from, block) in due {
            // A held block that turns out bad costs nothing here: its sender was not blamed
            // when it arrived early, and is not now.
            let _ = self.on_block(chain, now, from, block, actions);
        }
        let Some(me) = self.slotted.me() else { return Ok(()) };
        if slot <= head_slot {
            return Ok(());
        }
        let (schedule, _) = dpos.schedule_for(head_slot, slot);
        if schedule.producer(slot) == Some(me) {
            let votes = self.voting.to_include(chain, &self.slotted, &Producers(&self.config), &dpos.ffg, &head)?;
            actions.push(Action::Propose {
                parent: head_hash,
                timestamp: self.slotted.slot_start(genesis, slot),
                proposer: me,
                votes,
            });
        }
        Ok(())
    }
}

impl Engine for DposEngine {
    fn name(&self) -> &'static str {
        "dpos"
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
                self.vote(chain, actions)?;
                self.on_slot(chain, now, actions)
            }
            Event::Timer(SLOT_TIMER) => self.on_slot(chain, now, actions),
            Event::Timer(_) => Err(EngineError::Unexpected { engine: "dpos", what: "a timer it did not set" }),
            Event::Block { from, block } => self.on_block(chain, now, from, block, actions),
            Event::Built(block) => match self.slotted.seal(chain, &block, actions)? {
                Some(sealed) => self.on_block(chain, now, Origin::Local, sealed, actions),
                None => Ok(()),
            },
            Event::Message { message: EngineMessage::Vote(vote), .. } => {
                self.voting.on_vote(chain, &mut self.slotted, &Producers(&self.config), vote, actions)
            }
            Event::HeadChanged { .. } => {
                let (_, head) = chain.head();
                self.voting.forget_old(head.height);
                self.vote(chain, actions)
            }
            Event::Header { .. } | Event::BlockRejected { .. } | Event::TxsPending => Ok(()),
            Event::Mined(_) => Err(EngineError::Unexpected { engine: "dpos", what: "a mined block" }),
            Event::Message { message: EngineMessage::Raft(_) | EngineMessage::RaftRoster(_), .. } => {
                Err(EngineError::Unexpected { engine: "dpos", what: "a Raft message" })
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
        let dpos = self.state_at(chain)?;
        let weights = state::read_delegates(chain).map_err(unreadable)?;
        let mut members = Vec::with_capacity(dpos.active.producers.len());
        for address in &dpos.active.producers {
            let weight = weights.0.iter().find(|(listed, _)| listed == address).map(|(_, weight)| *weight);
            members.push(ActiveMember {
                address: *address,
                stake: weight.unwrap_or(Amount::ZERO),
                slashed: state::is_slashed(chain, address).map_err(unreadable)?,
            });
        }
        let slot = self.slotted.slot_at(genesis, now);
        let head_slot = self.slotted.slot_of(genesis, &head);
        let producer_of = |slot| dpos.schedule_for(head_slot, slot).0.producer(slot);
        let producer = if slot > head_slot { producer_of(slot) } else { Some(head.proposer) };
        let first = slot.max(head_slot).saturating_add(1);
        let schedule = (first..first.saturating_add(SCHEDULE_SHOWN))
            .filter_map(|next| producer_of(next).map(|producer| (next, producer)))
            .collect();
        let mut ranking = Vec::with_capacity(weights.0.len());
        for (address, weight) in &weights.0 {
            let slashed = state::is_slashed(chain, address).map_err(unreadable)?;
            ranking.push(RankedDelegate { address: *address, weight: *weight, slashed });
        }
        ranking.sort_by(|a, b| a.slashed.cmp(&b.slashed).then(b.weight.cmp(&a.weight)).then(a.address.cmp(&b.address)));
        let election = Election {
            version: dpos.active.version,
            start_slot: dpos.active.start_slot,
            producers: self.config.producers,
            pending: dpos.pending.clone(),
            ranking,
        };
        Ok(Some(ActiveSet {
            epoch: None,
            slot: Some(slot),
            members,
            producer,
            schedule,
            election: Some(election),
            raft: None,
        }))
    }

    fn check_header_alone(&self, header: &Header) -> Result<(), EngineError> {
        Slotted::check_header_alone(header)
    }
}

//! What the engines that sign one block per slot (PoS, DPoS) share.
//!
//! - **Slots.** A timer fires at each slot's start ([`SLOT_TIMER`]); [`Slotted::tick`] counts
//!   the slots that passed without a block on the head's chain, sets the next timer and hands
//!   back the held blocks whose slot has begun.
//! - **Blocks.** [`Slotted::check_block`] checks what any slot engine requires of a block
//!   before its own rules: sealed with a proposer's signature for the slot its timestamp
//!   starts, one height above a stored parent, in a slot after its parent's, and not from a
//!   slot that has not begun (beyond `limits::BLOCK_FUTURE_DRIFT_MS_MAX`: held, up to
//!   `limits::EARLY_BLOCKS_MAX`, until it has, without blame).
//! - **Signing.** The node's key signs only through the [`Guard`] ([`Slotted::seal`]).
//! - **Evidence.** Two headers signed for one slot by one proposer, seen in blocks or gossip,
//!   are submitted as `Evidence` once ([`Slotted::watch_header`], [`Slotted::report`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chorus_chain::block::Block;
use chorus_chain::crypto::Address;
use chorus_chain::genesis::Genesis;
use chorus_chain::header::Header;
use chorus_chain::limits;
use chorus_chain::primitives::{Hash, Height, Timestamp};
use chorus_chain::slots;
use chorus_chain::tx::Evidence;

use crate::signer::{Guard, Signer};
use crate::{Action, ChainRead, EngineCounters, EngineError, Origin, TimerId};

/// The timer at each slot's start.
pub const SLOT_TIMER: TimerId = TimerId(1);

/// Why a block fails the rules every slot engine shares.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotBlockError {
    #[error("block {hash} is not sealed with a proposer's signature for a slot")]
    Unsealed { hash: Hash },
    #[error("block {hash} is sealed for slot {sealed}, but its timestamp is not that slot's start")]
    SlotTime { hash: Hash, sealed: u64 },
    #[error("block {hash} is for slot {slot}, not after its parent's slot {parent_slot}")]
    SlotNotAfterParent { hash: Hash, slot: u64, parent_slot: u64 },
    #[error(
        "block {hash} is for slot {slot}, which starts at {starts_ms} ms, more than {} ms after this node's clock ({now_ms} ms)",
        limits::BLOCK_FUTURE_DRIFT_MS_MAX
    )]
    SlotNotBegun { hash: Hash, slot: u64, starts_ms: u64, now_ms: u64 },
    #[error("block {hash} is at height {got}, but its parent is at height {parent}")]
    WrongHeight { hash: Hash, got: Height, parent: Height },
}

impl SlotBlockError {
    /// A block from a slot that has not begun may become acceptable; the rest is the sender's
    /// fault.
    pub fn is_peer_fault(&self) -> bool {
        !matches!(self, SlotBlockError::SlotNotBegun { .. })
    }
}

/// A block held until its slot begins, with who sent it.
pub type HeldBlock = (Origin, Arc<Block>);

/// The shared state of a slot engine.
#[derive(Debug)]
pub struct Slotted {
    /// The engine's name, for errors.
    engine: &'static str,
    slot_ms: u64,
    /// The node's key, until `start` loads the guard with what it signed before.
    signer: Option<Signer>,
    guard: Option<Guard>,
    /// Blocks whose slot has not begun, by slot.
    early: BTreeMap<(u64, Hash), HeldBlock>,
    /// Signed headers seen, by (slot, proposer).
    headers_seen: BTreeMap<(u64, Address), Header>,
    /// Offences this node has submitted.
    reported: BTreeSet<Hash>,
    pub counters: EngineCounters,
}

impl Slotted {
    pub fn new(engine: &'static str, slot_ms: u64, signer: Option<Signer>) -> Slotted {
        Slotted {
            engine,
            slot_ms,
            signer,
            guard: None,
            early: BTreeMap::new(),
            headers_seen: BTreeMap::new(),
            reported: BTreeSet::new(),
            counters: EngineCounters::default(),
        }
    }

    /// Loads what the validator signed before (at `Event::Start`).
    pub fn start(&mut self, chain: &dyn ChainRead) -> Result<(), EngineError> {
        if let Some(signer) = self.signer.take() {
            self.guard = Some(Guard::load(signer, chain)?);
        }
        Ok(())
    }

    /// This node's validator address, once started with a key.
    pub fn me(&self) -> Option<Address> {
        self.guard.as_ref().map(Guard::address)
    }

    pub fn guard_mut(&mut self) -> Option<&mut Guard> {
        self.guard.as_mut()
    }

    /// The slot of a stored header (genesis: 0).
    pub fn slot_of(&self, genesis: &Genesis, header: &Header) -> u64 {
        if header.height == Height::GENESIS {
            return 0;
        }
        slots::slot_of(genesis, self.slot_ms, header.timestamp).unwrap_or(0)
    }

    /// The slot under way at `now`.
    pub fn slot_at(&self, genesis: &Genesis, now: Timestamp) -> u64 {
        slots::slot_at(genesis, self.slot_ms, now)
    }

    pub fn slot_start(&self, genesis: &Genesis, slot: u64) -> Timestamp {
        slots::slot_start(genesis, self.slot_ms, slot)
    }

    /// The shared checks of a block not stored yet (see the module docs). Returns its slot and
    /// its parent's header; a block from a slot not begun is held.
    pub fn check_block(
        &mut self,
        chain: &dyn ChainRead,
        now: Timestamp,
        from: &Origin,
        block: &Arc<Block>,
    ) -> Result<(u64, Header), EngineError> {
        let hash = block.hash();
        let genesis = chain.genesis();
        let header = &block.header;
        let (Some(slot), Some(_)) = (header.slot(), header.seal_signature()) else {
            return Err(SlotBlockError::Unsealed { hash }.into());
        };
        if slots::slot_of(genesis, self.slot_ms, header.timestamp) != Ok(slot) {
            return Err(SlotBlockError::SlotTime { hash, sealed: slot }.into());
        }
        let starts = self.slot_start(genesis, slot);
        if starts.as_millis() > now.as_millis().saturating_add(limits::BLOCK_FUTURE_DRIFT_MS_MAX) {
            if self.early.len() < limits::EARLY_BLOCKS_MAX as usize {
                self.early.insert((slot, hash), (from.clone(), Arc::clone(block)));
            }
            return Err(SlotBlockError::SlotNotBegun {
                hash,
                slot,
                starts_ms: starts.as_millis(),
                now_ms: now.as_millis(),
            }
            .into());
        }
        let parent = chain.header(&header.parent)?.ok_or(EngineError::UnknownParent { hash, parent: header.parent })?;
        if parent.height.next() != Some(header.height) {
            return Err(SlotBlockError::WrongHeight { hash, got: header.height, parent: parent.height }.into());
        }
        let parent_slot = self.slot_of(genesis, &parent);
        if slot <= parent_slot {
            return Err(SlotBlockError::SlotNotAfterParent { hash, slot, parent_slot }.into());
        }
        Ok((slot, parent))
    }

    /// One more slot `producer` missed; when the count is full, the producer with the fewest
    /// misses (the higher address among equals) makes room.
    fn count_missed(&mut self, producer: Address) {
        let counts = &mut self.counters.missed_by_producer;
        if !counts.contains_key(&producer)
            && counts.len() >= limits::MISSED_SLOT_PRODUCERS_MAX as usize
            && let Some((_, std::cmp::Reverse(fewest))) =
                counts.iter().map(|(address, count)| (*count, std::cmp::Reverse(*address))).min()
        {
            counts.remove(&fewest);
        }
        let count = counts.entry(producer).or_insert(0);
        *count = count.saturating_add(1);
    }

    /// At a slot's start: counts the slots after the head's that ended without a block on its
    /// chain (from the second tick on: a restart does not count its downtime), each against
    /// the producer `producer_of` names for it on the head, sets the next slot's timer, and
    /// returns the slot with the held blocks now due (whose parent is stored).
    pub fn tick(
        &mut self,
        chain: &dyn ChainRead,
        now: Timestamp,
        mut producer_of: impl FnMut(u64) -> Result<Option<Address>, EngineError>,
        actions: &mut Vec<Action>,
    ) -> Result<(u64, Vec<HeldBlock>), EngineError> {
        let genesis = chain.genesis();
        let slot = self.slot_at(genesis, now);
        let (_, head) = chain.head();
        if let Some(last) = self.counters.slot.filter(|last| *last > 0) {
            let judged_through = self.slot_of(genesis, &head).max(last.saturating_sub(1));
            let missed = slot.saturating_sub(1).saturating_sub(judged_through);
            self.counters.missed_slots = self.counters.missed_slots.saturating_add(missed);
            let attributed = slot.saturating_sub(missed.min(limits::MISSED_SLOTS_ATTRIBUTED_MAX));
            for missed_slot in attributed..slot {
                if let Some(producer) = producer_of(missed_slot)? {
                    self.count_missed(producer);
                }
            }
        }
        self.counters.slot = Some(self.counters.slot.map_or(slot, |last| last.max(slot)));
        actions.push(Action::SetTimer { timer: SLOT_TIMER, at: self.slot_start(genesis, slot.saturating_add(1)) });
        let due: Vec<(u64, Hash)> = self
            .early
            .keys()
            .filter(|(early_slot, _)| {
                self.slot_start(genesis, *early_slot).as_millis()
                    <= now.as_millis().saturating_add(limits::BLOCK_FUTURE_DRIFT_MS_MAX)
            })
            .copied()
            .collect();
        let mut blocks = Vec::with_capacity(due.len());
        for key in due {
            if let Some((from, block)) = self.early.remove(&key)
                && chain.header(&block.header.parent)?.is_some()
            {
                blocks.push((from, block));
            }
        }
        Ok((slot, blocks))
    }

    /// Seals a block this node built for the slot its timestamp starts, through the guard
    /// (whose synced record goes to `actions` first). `None` if the guard refuses: it signed
    /// another block for that slot or a later one (before a restart); the slot is skipped.
    pub fn seal(
        &mut self,
        chain: &dyn ChainRead,
        block: &Block,
        actions: &mut Vec<Action>,
    ) -> Result<Option<Arc<Block>>, EngineError> {
        let engine = self.engine;
        let Some(guard) = self.guard.as_mut() else {
            return Err(EngineError::Unexpected { engine, what: "a built block without a validator key" });
        };
        let genesis = chain.genesis();
        let slot = slots::slot_of(genesis, self.slot_ms, block.header.timestamp)
            .map_err(|_| EngineError::Unexpected { engine, what: "a built block off a slot's start" })?;
        Ok(guard
            .sign_header(&genesis.chain_id, block.header.clone(), slot, actions)
            .ok()
            .map(|header| Arc::new(Block { header, body: block.body.clone() })))
    }

    /// What a header held without its parent must show: a proposer's signature for a slot (the
    /// signature itself is checked with the block).
    pub fn check_header_alone(header: &Header) -> Result<(), EngineError> {
        if header.slot().is_none() || header.seal_signature().is_none() {
            return Err(SlotBlockError::Unsealed { hash: header.hash() }.into());
        }
        Ok(())
    }

    /// Remembers a signed header; a second one for the same slot and proposer is evidence.
    pub fn watch_header(&mut self, header: &Header, actions: &mut Vec<Action>) {
        let Some(slot) = header.slot() else { return };
        let key = (slot, header.proposer);
        match self.headers_seen.get(&key) {
            Some(seen) if seen.hash() != header.hash() => {
                let evidence = Evidence::DoubleProposal { first: seen.clone(), second: header.clone() };
                self.report(evidence, actions);
            }
            Some(_) => {}
            None => {
                if self.headers_seen.len() >= limits::EQUIVOCATION_WATCH_MAX as usize {
                    self.headers_seen.pop_first();
                }
                self.headers_seen.insert(key, header.clone());
            }
        }
    }

    /// Submits `evidence` unless this node already did.
    pub fn report(&mut self, evidence: Evidence, actions: &mut Vec<Action>) {
        if self.reported.insert(evidence.offence_id()) {
            if self.reported.len() > limits::EQUIVOCATION_WATCH_MAX as usize {
                self.reported.pop_first();
            }
            actions.push(Action::SubmitEvidence(Box::new(evidence)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(i: u32) -> Address {
        let mut bytes = [0; 32];
        bytes[..4].copy_from_slice(&i.to_be_bytes());
        Address(bytes)
    }

    #[test]
    fn missed_slots_are_counted_per_producer_and_the_fewest_make_room_when_full() {
        let mut slotted = Slotted::new("test", 1_000, None);
        let max = limits::MISSED_SLOT_PRODUCERS_MAX;
        for i in 0..max {
            slotted.count_missed(address(i));
        }
        slotted.count_missed(address(0));
        slotted.count_missed(address(0));
        let counts = &slotted.counters.missed_by_producer;
        assert_eq!(counts.len(), max as usize);
        assert_eq!(counts[&address(0)], 3);
        // A new producer takes the place of the one with the fewest misses and the highest
        // address among them.
        slotted.count_missed(address(max));
        let counts = &slotted.counters.missed_by_producer;
        assert_eq!(counts.len(), max as usize);
        assert_eq!(counts.get(&address(max)), Some(&1));
        assert!(!counts.contains_key(&address(max - 1)));
        assert_eq!(counts[&address(0)], 3);
    }
}

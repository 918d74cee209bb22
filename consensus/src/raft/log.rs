//! The Raft log and hard state: in memory for the `RawNode` (as its [`Storage`]), and in engine
//! records on disk, written by the engine's actions.
//!
//! Records: [`STATE_KEY`] holds the hard state (term, vote, commit), the membership and roster
//! after the last applied entry (and that entry's index, if it changed them), the snapshot the
//! log starts after, the last index and the applied index; one record per entry after the
//! snapshot holds its term, type, data and context. Every change to the log is written in one
//! atomic batch with the state record that names its last index, so a crash leaves the log the
//! node had before the batch or after it, never a mix of two terms' entries.
//!
//! The log is kept short: applied entries beyond `limits::RAFT_LOG_RETAINED_ENTRIES` are
//! compacted into the snapshot (the index, its term, the membership and roster, and the block
//! the chain had reached there). Compaction always reaches past the last applied membership
//! change, so the snapshot's membership is the one in force at its index. A member further behind gets that snapshot and fetches the blocks below it
//! over the sync protocol.

// The protobuf values are built field by field from the typed ones, one line per field.
#![allow(clippy::field_reassign_with_default)]

use std::collections::VecDeque;

use chorus_chain::codec::{self, Canonical, Decode, Encode};
use chorus_chain::genesis::RaftConfig;
use chorus_chain::limits;
use chorus_chain::primitives::{Hash, Height};
use raft::eraftpb::{Entry, EntryType, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

use super::membership::Roster;
use super::wire::{Membership, Payload, SnapshotMeta};
use crate::{ChainRead, ChainReadError};

/// The record of the hard state, membership, snapshot and log bounds.
pub const STATE_KEY: &[u8] = b"raft/state/v1";
const ENTRY_PREFIX: &[u8] = b"raft/entry/v1/";

fn entry_key(index: u64) -> Vec<u8> {
    let mut key = ENTRY_PREFIX.to_vec();
    key.extend_from_slice(&index.to_be_bytes());
    key
}

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
#[bincode(crate = "chorus_chain::codec::backend")]
struct StateRecord {
    term: u64,
    vote: u64,
    commit: u64,
    snapshot: SnapshotMeta,
    /// The membership and roster in force after the last applied entry.
    membership: Membership,
    roster: Roster,
    /// The last applied entry that changed them (the snapshot's index if none since).
    conf_index: u64,
    last_index: u64,
    applied: u64,
}

impl Canonical for StateRecord {
    /// Six numbers, a block reference, two memberships of at most `RAFT_MEMBERS_MAX` ids in
    /// four lists each, and two rosters.
    const BYTES_MAX: u32 = 256 + 2 * 4 * 8 * limits::RAFT_MEMBERS_MAX + 2 * limits::RAFT_ROSTER_BYTES_MAX;
}

/// An entry's type, as `raft` has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
#[bincode(crate = "chorus_chain::codec::backend")]
enum EntryKind {
    Normal,
    ConfChange,
}

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
#[bincode(crate = "chorus_chain::codec::backend")]
struct EntryRecord {
    term: u64,
    kind: EntryKind,
    /// Normal: the canonical encoding of the entry's [`Payload`] (empty for `Empty`); a
    /// membership change: the protobuf change `raft` reads.
    data: Vec<u8>,
    /// A membership change: the canonical encoding of its `MembershipEntry`.
    context: Vec<u8>,
}

impl Canonical for EntryRecord {
    const BYTES_MAX: u32 = limits::ENGINE_RECORD_BYTES_MAX;
}

/// Records to write (`Some`) and delete (`None`) in one batch.
pub type Batch = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// The log a `RawNode` reads; its changes come with the records that make them durable.
#[derive(Debug)]
pub struct LogStore {
    hard_state: HardState,
    snapshot: SnapshotMeta,
    membership: Membership,
    roster: Roster,
    conf_index: u64,
    /// The entries after the snapshot, in index order.
    entries: VecDeque<Entry>,
    applied: u64,
    /// The state record as last written (or read): an unchanged one is not written again.
    written: Vec<u8>,
}

fn damaged(what: String) -> ChainReadError {
    ChainReadError::Unreadable { what }
}

impl LogStore {
    /// The log as the records left it; on a first start, empty, after a snapshot at index 0 of
    /// the genesis block with the genesis members as voters.
    pub fn load(chain: &dyn ChainRead, config: &RaftConfig, genesis: Hash) -> Result<LogStore, ChainReadError> {
        let Some(bytes) = chain.record(STATE_KEY)? else {
            let membership =
                Membership { voters: config.members.iter().map(|member| member.id).collect(), ..Default::default() };
            let roster = Roster::from_genesis(&config.members);
            let snapshot = SnapshotMeta {
                index: 0,
                term: 0,
                membership: membership.clone(),
                roster: roster.clone(),
                block: (Height::GENESIS, genesis),
            };
            return Ok(LogStore {
                hard_state: HardState::default(),
                snapshot,
                membership,
                roster,
                conf_index: 0,
                entries: VecDeque::new(),
                applied: 0,
                written: Vec::new(),
            });
        };
        let state: StateRecord =
            codec::decode(&bytes).map_err(|error| damaged(format!("Raft state record: {error}")))?;
        if state.last_index < state.snapshot.index
            || state.last_index.saturating_sub(state.snapshot.index) > limits::RAFT_LOG_ENTRIES_MAX
        {
            return Err(damaged(format!(
                "Raft state record: log from {} to {} is out of bounds",
                state.snapshot.index, state.last_index
            )));
        }
        let mut entries = VecDeque::new();
        let mut index = state.snapshot.index;
        while index < state.last_index {
            index = index.saturating_add(1);
            let bytes =
                chain.record(&entry_key(index))?.ok_or_else(|| damaged(format!("Raft entry {index} is missing")))?;
            let record: EntryRecord =
                codec::decode(&bytes).map_err(|error| damaged(format!("Raft entry {index}: {error}")))?;
            let mut entry = Entry::default();
            entry.entry_type = match record.kind {
                EntryKind::Normal => EntryType::EntryNormal,
                EntryKind::ConfChange => EntryType::EntryConfChangeV2,
            };
            entry.term = record.term;
            entry.index = index;
            entry.data = record.data.into();
            entry.context = record.context.into();
            entries.push_back(entry);
        }
        let mut hard_state = HardState::default();
        hard_state.term = state.term;
        hard_state.vote = state.vote;
        hard_state.commit = state.commit;
        Ok(LogStore {
            hard_state,
            snapshot: state.snapshot,
            membership: state.membership,
            roster: state.roster,
            conf_index: state.conf_index,
            entries,
            applied: state.applied,
            written: bytes,
        })
    }

    pub fn first(&self) -> u64 {
        self.snapshot.index.saturating_add(1)
    }

    pub fn last(&self) -> u64 {
        self.snapshot.index.saturating_add(self.entries.len() as u64)
    }

    pub fn applied(&self) -> u64 {
        self.applied
    }

    pub fn commit(&self) -> u64 {
        self.hard_state.commit
    }

    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    /// The index of the last applied membership change (or of the snapshot, if none since).
    pub fn conf_index(&self) -> u64 {
        self.conf_index
    }

    /// A membership change applied at `index`: the configuration `raft` made of it and the
    /// roster after it.
    pub fn set_membership(&mut self, index: u64, membership: Membership, roster: Roster) {
        self.membership = membership;
        self.roster = roster;
        self.conf_index = index;
    }

    /// The entries after the applied index (uncommitted, or committed and not applied yet).
    pub fn unapplied(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|entry| entry.index > self.applied)
    }

    pub fn snapshot_meta(&self) -> &SnapshotMeta {
        &self.snapshot
    }

    /// Appends entries from a `Ready`, replacing any from the first one's index on (a new
    /// leader's log wins over uncommitted entries).
    pub fn append(&mut self, entries: &[Entry], batch: &mut Batch) {
        // `raft` never hands over entries the snapshot covers; skipping them keeps the log
        // aligned with its indices whatever it does.
        let start = entries.iter().position(|entry| entry.index >= self.first()).unwrap_or(entries.len());
        let entries = entries.get(start..).unwrap_or_default();
        let Some(first) = entries.first() else { return };
        let keep = first.index.saturating_sub(self.first()) as usize;
        for index in self.first().saturating_add(keep as u64).max(first.index)..=self.last() {
            batch.push((entry_key(index), None));
        }
        self.entries.truncate(keep);
        for entry in entries {
            let kind = match entry.entry_type {
                EntryType::EntryConfChangeV2 | EntryType::EntryConfChange => EntryKind::ConfChange,
                EntryType::EntryNormal => EntryKind::Normal,
            };
            let record =
                EntryRecord { term: entry.term, kind, data: entry.data.to_vec(), context: entry.context.to_vec() };
            batch.push((entry_key(entry.index), Some(codec::encode(&record))));
            self.entries.push_back(entry.clone());
        }
    }

    pub fn set_hard_state(&mut self, hard_state: &HardState) {
        self.hard_state = hard_state.clone();
    }

    pub fn set_commit(&mut self, commit: u64) {
        self.hard_state.commit = commit;
    }

    pub fn set_applied(&mut self, applied: u64) {
        self.applied = applied;
    }

    /// Replaces the log with a leader's snapshot.
    pub fn apply_snapshot(&mut self, snapshot: SnapshotMeta, batch: &mut Batch) {
        for index in self.first()..=self.last() {
            batch.push((entry_key(index), None));
        }
        self.entries.clear();
        self.hard_state.commit = self.hard_state.commit.max(snapshot.index);
        self.hard_state.term = self.hard_state.term.max(snapshot.term);
        self.applied = snapshot.index;
        self.membership = snapshot.membership.clone();
        self.roster = snapshot.roster.clone();
        self.conf_index = snapshot.index;
        self.snapshot = snapshot;
    }

    /// Compacts the applied entries up to `index` (or up to the last applied membership change,
    /// if later) into the snapshot, whose chain reaches the last block among them (or stays
    /// where the snapshot had it).
    pub fn compact(&mut self, index: u64, batch: &mut Batch) -> Result<(), ChainReadError> {
        let index = index.max(self.conf_index);
        if index < self.first() || index > self.applied {
            return Ok(());
        }
        let Ok(term) = Storage::term(self, index) else { return Ok(()) };
        let mut block = self.snapshot.block;
        let mut removed = Vec::new();
        while self.entries.front().is_some_and(|entry| entry.index <= index) {
            let Some(entry) = self.entries.pop_front() else { break };
            batch.push((entry_key(entry.index), None));
            removed.push(entry);
        }
        let normal = |entry: &&Entry| entry.entry_type == EntryType::EntryNormal && !entry.data.is_empty();
        if let Some(last_block) = removed.iter().rev().find(normal) {
            match Payload::from_data(&last_block.data) {
                Ok(Payload::Block(found)) => block = (found.header.height, found.hash()),
                Ok(Payload::Empty | Payload::Membership(_)) => {}
                Err(error) => return Err(damaged(format!("Raft entry {}: {error}", last_block.index))),
            }
        }
        self.snapshot =
            SnapshotMeta { index, term, membership: self.membership.clone(), roster: self.roster.clone(), block };
        Ok(())
    }

    /// The state record, to write after (in the same batch as) the changes it describes; nothing
    /// if it is unchanged since last written.
    pub fn state_record(&mut self, batch: &mut Batch) {
        let record = StateRecord {
            term: self.hard_state.term,
            vote: self.hard_state.vote,
            commit: self.hard_state.commit,
            snapshot: self.snapshot.clone(),
            membership: self.membership.clone(),
            roster: self.roster.clone(),
            conf_index: self.conf_index,
            last_index: self.last(),
            applied: self.applied,
        };
        let encoded = codec::encode(&record);
        if encoded != self.written {
            self.written.clone_from(&encoded);
            batch.push((STATE_KEY.to_vec(), Some(encoded)));
        }
    }

    fn entry(&self, index: u64) -> Option<&Entry> {
        self.entries.get(index.checked_sub(self.first())? as usize)
    }
}

impl Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.hard_state.clone(), self.membership.to_pb()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last().saturating_add(1) {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let mut entries: Vec<Entry> = (low..high).filter_map(|index| self.entry(index).cloned()).collect();
        raft::util::limit_size(&mut entries, max_size.into());
        Ok(entries)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        if index == self.snapshot.index {
            return Ok(self.snapshot.term);
        }
        if index < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        self.entry(index).map(|entry| entry.term).ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        if self.snapshot.index < request_index {
            return Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable));
        }
        Ok(self.snapshot.to_pb())
    }
}

#[cfg(test)]
mod tests {
    use chorus_chain::genesis::{EngineConfig, PeerIdText, RaftMember};
    use chorus_chain::testing;

    use super::*;
    use crate::raft::membership::{ChangeKind, MembershipEntry};
    use crate::raft::wire::LogEntry;
    use crate::records::Records;

    fn member(id: u64) -> RaftMember {
        let address = testing::key(id as u32).address();
        RaftMember { id, address, peer_id: PeerIdText::of(&address) }
    }

    fn config() -> RaftConfig {
        RaftConfig { tick_ms: 100, election_ticks: 10, heartbeat_ticks: 2, members: vec![member(1), member(2)] }
    }

    fn entry(index: u64, payload: Payload) -> Entry {
        LogEntry { term: 1, index, payload }.to_pb()
    }

    /// A membership change applied at index 3 of 6: compaction asked to stop at 1 goes on to 3,
    /// so the snapshot's membership is the one in force at its index, and the snapshot, the
    /// roster and the entries after it (the change's type and context with them) survive a
    /// reload from the records.
    #[test]
    fn compaction_reaches_past_the_last_membership_change_and_the_log_reloads_whole() {
        let mut records = Records::new(testing::genesis(1, 1));
        if let Some(first) = records.genesis.engines.first_mut() {
            first.engine = EngineConfig::Raft(config());
        }
        let mut log = LogStore::load(&records, &config(), Hash::ZERO).expect("a first start");
        assert_eq!((log.roster().members.len(), log.conf_index(), log.last()), (2, 0, 0));

        let added = MembershipEntry { kind: ChangeKind::AddLearner, member: member(3) };
        let entries: Vec<Entry> = (1..=6)
            .map(|index| entry(index, if index == 3 { Payload::Membership(added.clone()) } else { Payload::Empty }))
            .collect();
        let mut batch = Batch::new();
        log.append(&entries, &mut batch);
        let mut roster = log.roster().clone();
        roster.apply(&added);
        let membership = Membership { voters: vec![1, 2], learners: vec![3], ..Default::default() };
        log.set_membership(3, membership.clone(), roster.clone());
        log.set_commit(6);
        log.set_applied(6);
        log.compact(1, &mut batch).expect("compacts");
        log.state_record(&mut batch);
        records.write(batch);

        assert_eq!((log.snapshot_meta().index, log.first()), (3, 4));
        assert_eq!(log.snapshot_meta().membership, membership);
        assert_eq!(log.snapshot_meta().roster, roster);

        let reloaded = LogStore::load(&records, &config(), Hash::ZERO).expect("reloads");
        assert_eq!(reloaded.snapshot_meta(), log.snapshot_meta());
        assert_eq!((reloaded.roster(), reloaded.conf_index(), reloaded.applied()), (&roster, 3, 6));
        assert_eq!(reloaded.entries, log.entries);
        assert!(!records.records.contains_key(&entry_key(3)), "compacted away");
        assert!(records.records.contains_key(&entry_key(4)), "kept");
    }
}

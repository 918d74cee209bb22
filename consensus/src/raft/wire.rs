//! Raft messages as Chorus carries them: typed bincode, never protobuf from the network.
//!
//! tikv's `raft` speaks protobuf (`eraftpb`). A peer's bytes are decoded here into
//! [`RaftMessage`], whose entries hold a typed [`Payload`] (a whole block) and whose snapshot
//! holds a typed membership and block; the protobuf message the `RawNode` steps is rebuilt
//! locally from those fields. The protobuf parser therefore never sees a peer's bytes (see the
//! advisory note in the `raft` module docs), and entry data inside the local log is always the
//! canonical encoding of a [`Payload`] this node decoded or built.
//!
//! Only the message types that travel between members have a [`MessageKind`]; a local one
//! (`MsgHup`, `MsgBeat`, ...) is never sent, and proposals are never forwarded (a follower does
//! not propose).

// The protobuf values are built field by field from the typed ones, one line per field.
#![allow(clippy::field_reassign_with_default)]

use chorus_chain::block::Block;
use chorus_chain::codec::{self, Canonical, CodecError, Decode, Encode};
use chorus_chain::limits;
use chorus_chain::primitives::{Hash, Height};
use raft::eraftpb;

/// The Raft message types members send each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
#[bincode(crate = "chorus_chain::codec::backend")]
pub enum MessageKind {
    Append,
    AppendResponse,
    RequestVote,
    RequestVoteResponse,
    RequestPreVote,
    RequestPreVoteResponse,
    Snapshot,
    Heartbeat,
    HeartbeatResponse,
    TransferLeader,
    TimeoutNow,
}

impl MessageKind {
    fn to_pb(self) -> eraftpb::MessageType {
        use eraftpb::MessageType as T;
        match self {
            MessageKind::Append => T::MsgAppend,
            MessageKind::AppendResponse => T::MsgAppendResponse,
            MessageKind::RequestVote => T::MsgRequestVote,
            MessageKind::RequestVoteResponse => T::MsgRequestVoteResponse,
            MessageKind::RequestPreVote => T::MsgRequestPreVote,
            MessageKind::RequestPreVoteResponse => T::MsgRequestPreVoteResponse,
            MessageKind::Snapshot => T::MsgSnapshot,
            MessageKind::Heartbeat => T::MsgHeartbeat,
            MessageKind::HeartbeatResponse => T::MsgHeartbeatResponse,
            MessageKind::TransferLeader => T::MsgTransferLeader,
            MessageKind::TimeoutNow => T::MsgTimeoutNow,
        }
    }

    fn from_pb(kind: eraftpb::MessageType) -> Option<MessageKind> {
        use eraftpb::MessageType as T;
        Some(match kind {
            T::MsgAppend => MessageKind::Append,
            T::MsgAppendResponse => MessageKind::AppendResponse,
            T::MsgRequestVote => MessageKind::RequestVote,
            T::MsgRequestVoteResponse => MessageKind::RequestVoteResponse,
            T::MsgRequestPreVote => MessageKind::RequestPreVote,
            T::MsgRequestPreVoteResponse => MessageKind::RequestPreVoteResponse,
            T::MsgSnapshot => MessageKind::Snapshot,
            T::MsgHeartbeat => MessageKind::Heartbeat,
            T::MsgHeartbeatResponse => MessageKind::HeartbeatResponse,
            T::MsgTransferLeader => MessageKind::TransferLeader,
            T::MsgTimeoutNow => MessageKind::TimeoutNow,
            T::MsgHup
            | T::MsgBeat
            | T::MsgPropose
            | T::MsgUnreachable
            | T::MsgSnapStatus
            | T::MsgCheckQuorum
            | T::MsgReadIndex
            | T::MsgReadIndexResp => return None,
        })
    }
}

/// What a log entry holds. The leader's empty entry of a new term (which commits the entries of
/// earlier terms) is `Empty`, stored as empty data, as `raft` makes it.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
#[bincode(crate = "chorus_chain::codec::backend")]
pub enum Payload {
    Empty,
    Block(Box<Block>),
}

impl Canonical for Payload {
    const BYTES_MAX: u32 = limits::RAFT_APPEND_BYTES_MAX + 1024;
}

impl Payload {
    /// The entry data `raft` keeps: empty for `Empty`, the canonical encoding otherwise.
    pub fn to_data(&self) -> Vec<u8> {
        match self {
            Payload::Empty => Vec::new(),
            other => codec::encode(other),
        }
    }

    /// The payload of local entry data (this node's own encoding, or a record it wrote).
    pub fn from_data(data: &[u8]) -> Result<Payload, CodecError> {
        if data.is_empty() {
            return Ok(Payload::Empty);
        }
        match codec::decode(data)? {
            // `Empty` is never encoded: the same payload has one encoding.
            Payload::Empty => Err(CodecError::NonCanonical { what: "a Raft entry's payload" }),
            block => Ok(block),
        }
    }
}

/// A normal log entry (membership entries arrive with run-time membership changes).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
#[bincode(crate = "chorus_chain::codec::backend")]
pub struct LogEntry {
    pub term: u64,
    pub index: u64,
    pub payload: Payload,
}

impl Canonical for LogEntry {
    const BYTES_MAX: u32 = limits::RAFT_APPEND_BYTES_MAX + 1024;
}

impl LogEntry {
    /// From a local entry (of a type this release writes).
    pub fn from_pb(entry: &eraftpb::Entry) -> Result<LogEntry, WireError> {
        if entry.entry_type != eraftpb::EntryType::EntryNormal {
            return Err(WireError::EntryType(entry.entry_type));
        }
        Ok(LogEntry { term: entry.term, index: entry.index, payload: Payload::from_data(&entry.data)? })
    }

    pub fn to_pb(&self) -> eraftpb::Entry {
        let mut entry = eraftpb::Entry::default();
        entry.entry_type = eraftpb::EntryType::EntryNormal;
        entry.term = self.term;
        entry.index = self.index;
        entry.data = self.payload.to_data().into();
        entry
    }
}

/// A Raft configuration: who votes and who only learns (with the joint-consensus halves).
#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode)]
#[bincode(crate = "chorus_chain::codec::backend")]
pub struct Membership {
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub voters_outgoing: Vec<u64>,
    pub learners_next: Vec<u64>,
    pub auto_leave: bool,
}

impl Membership {
    pub fn from_pb(conf: &eraftpb::ConfState) -> Membership {
        Membership {
            voters: conf.voters.clone(),
            learners: conf.learners.clone(),
            voters_outgoing: conf.voters_outgoing.clone(),
            learners_next: conf.learners_next.clone(),
            auto_leave: conf.auto_leave,
        }
    }

    pub fn to_pb(&self) -> eraftpb::ConfState {
        let mut conf = eraftpb::ConfState::default();
        conf.voters = self.voters.clone();
        conf.learners = self.learners.clone();
        conf.voters_outgoing = self.voters_outgoing.clone();
        conf.learners_next = self.learners_next.clone();
        conf.auto_leave = self.auto_leave;
        conf
    }
}

/// A snapshot: the log up to `index` is the chain up to `block`, under `membership`. The
/// blocks themselves come over the sync protocol.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
#[bincode(crate = "chorus_chain::codec::backend")]
pub struct SnapshotMeta {
    pub index: u64,
    pub term: u64,
    pub membership: Membership,
    pub block: (Height, Hash),
}

impl SnapshotMeta {
    pub fn from_pb(snapshot: &eraftpb::Snapshot) -> Result<SnapshotMeta, CodecError> {
        let metadata = snapshot.get_metadata();
        Ok(SnapshotMeta {
            index: metadata.index,
            term: metadata.term,
            membership: Membership::from_pb(metadata.get_conf_state()),
            block: codec::decode::<SnapshotBlock>(&snapshot.data)?.0,
        })
    }

    pub fn to_pb(&self) -> eraftpb::Snapshot {
        let mut metadata = eraftpb::SnapshotMetadata::default();
        metadata.index = self.index;
        metadata.term = self.term;
        metadata.set_conf_state(self.membership.to_pb());
        let mut snapshot = eraftpb::Snapshot::default();
        snapshot.set_metadata(metadata);
        snapshot.data = codec::encode(&SnapshotBlock(self.block)).into();
        snapshot
    }
}

/// A snapshot's data inside `raft`: the block its index reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
#[bincode(crate = "chorus_chain::codec::backend")]
struct SnapshotBlock((Height, Hash));

impl Canonical for SnapshotBlock {
    const BYTES_MAX: u32 = 64;
}

/// One Raft message from one member to another.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
#[bincode(crate = "chorus_chain::codec::backend")]
pub struct RaftMessage {
    pub kind: MessageKind,
    pub to: u64,
    pub from: u64,
    pub term: u64,
    pub log_term: u64,
    pub index: u64,
    pub entries: Vec<LogEntry>,
    pub commit: u64,
    pub commit_term: u64,
    pub snapshot: Option<SnapshotMeta>,
    pub request_snapshot: u64,
    pub reject: bool,
    pub reject_hint: u64,
    pub context: Vec<u8>,
    pub priority: i64,
}

/// Why a message cannot go on the wire or into the `RawNode`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("Raft message type {0:?} is local to a node")]
    LocalType(eraftpb::MessageType),
    #[error("Raft entry type {0:?} is not written by this release")]
    EntryType(eraftpb::EntryType),
    #[error("a Raft message context of {size_bytes} bytes, limit {}", limits::RAFT_CONTEXT_BYTES_MAX)]
    Context { size_bytes: usize },
    #[error(transparent)]
    Codec(#[from] CodecError),
}

impl RaftMessage {
    /// The wire form of a message the `RawNode` produced.
    pub fn from_pb(message: &eraftpb::Message) -> Result<RaftMessage, WireError> {
        let kind = MessageKind::from_pb(message.msg_type).ok_or(WireError::LocalType(message.msg_type))?;
        let entries = message.entries.iter().map(LogEntry::from_pb).collect::<Result<Vec<_>, _>>()?;
        let snapshot = if message.has_snapshot() { Some(SnapshotMeta::from_pb(message.get_snapshot())?) } else { None };
        Ok(RaftMessage {
            kind,
            to: message.to,
            from: message.from,
            term: message.term,
            log_term: message.log_term,
            index: message.index,
            entries,
            commit: message.commit,
            commit_term: message.commit_term,
            snapshot,
            request_snapshot: message.request_snapshot,
            reject: message.reject,
            reject_hint: message.reject_hint,
            context: message.context.to_vec(),
            priority: message.priority,
        })
    }

    /// The protobuf message to step, rebuilt from the typed fields.
    pub fn to_pb(&self) -> Result<eraftpb::Message, WireError> {
        if self.context.len() > limits::RAFT_CONTEXT_BYTES_MAX as usize {
            return Err(WireError::Context { size_bytes: self.context.len() });
        }
        let mut message = eraftpb::Message::default();
        message.msg_type = self.kind.to_pb();
        message.to = self.to;
        message.from = self.from;
        message.term = self.term;
        message.log_term = self.log_term;
        message.index = self.index;
        message.entries = self.entries.iter().map(LogEntry::to_pb).collect::<Vec<_>>().into();
        message.commit = self.commit;
        message.commit_term = self.commit_term;
        if let Some(snapshot) = &self.snapshot {
            message.set_snapshot(snapshot.to_pb());
        }
        message.request_snapshot = self.request_snapshot;
        message.reject = self.reject;
        message.reject_hint = self.reject_hint;
        message.context = self.context.clone().into();
        message.priority = self.priority;
        Ok(message)
    }
}

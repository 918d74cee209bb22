//! Raft messages as Chorus carries them: typed bincode, never protobuf from the network.
//!
//! tikv's `raft` speaks protobuf (`eraftpb`). A peer's bytes are decoded here into
//! [`RaftMessage`], whose entries hold a typed [`Payload`] (a whole block or a membership
//! change) and whose snapshot holds a typed membership, roster and block; the protobuf message
//! the `RawNode` steps is rebuilt locally from those fields. The protobuf parser therefore never
//! sees a peer's bytes (see the advisory note in the `raft` module docs). In the local log a
//! normal entry's data is the canonical encoding of its [`Payload`]; a membership entry is
//! `raft`'s `EntryConfChangeV2`, whose data is the protobuf encoding this node wrote of the
//! change (which only the proposing leader's `raft` parses) and whose context is the canonical
//! encoding of the [`MembershipEntry`] (which the engine applies).
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
use protobuf::Message as _;
use raft::eraftpb;

use super::membership::{MembershipEntry, Roster};

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
    Membership(MembershipEntry),
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

    /// The payload of a normal entry's data (this node's own encoding, or a record it wrote).
    pub fn from_data(data: &[u8]) -> Result<Payload, CodecError> {
        if data.is_empty() {
            return Ok(Payload::Empty);
        }
        match codec::decode(data)? {
            block @ Payload::Block(_) => Ok(block),
            // `Empty` is never encoded (the same payload has one encoding), and a membership
            // change is a membership entry, never a normal one.
            Payload::Empty | Payload::Membership(_) => {
                Err(CodecError::NonCanonical { what: "a Raft normal entry's payload" })
            }
        }
    }
}

/// A log entry: a block, a new term's empty entry, or a membership change.
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
        let payload = match entry.entry_type {
            eraftpb::EntryType::EntryNormal => Payload::from_data(&entry.data)?,
            // An empty context is `raft`'s own "leave the joint configuration" entry, which a
            // single change never needs.
            eraftpb::EntryType::EntryConfChangeV2 if !entry.context.is_empty() => {
                Payload::Membership(codec::decode(&entry.context)?)
            }
            other => return Err(WireError::EntryType(other)),
        };
        Ok(LogEntry { term: entry.term, index: entry.index, payload })
    }

    pub fn to_pb(&self) -> eraftpb::Entry {
        let mut entry = eraftpb::Entry::default();
        entry.term = self.term;
        entry.index = self.index;
        match &self.payload {
            Payload::Membership(change) => {
                entry.entry_type = eraftpb::EntryType::EntryConfChangeV2;
                entry.data = change.to_conf_change().write_to_bytes().unwrap_or_default().into();
                entry.context = codec::encode(change).into();
            }
            payload => {
                entry.entry_type = eraftpb::EntryType::EntryNormal;
                entry.data = payload.to_data().into();
            }
        }
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

/// A snapshot: the log up to `index` is the chain up to `block`, under `membership`, whose
/// members (and former members) `roster` names. The blocks themselves come over the sync
/// protocol.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
#[bincode(crate = "chorus_chain::codec::backend")]
pub struct SnapshotMeta {
    pub index: u64,
    pub term: u64,
    pub membership: Membership,
    pub roster: Roster,
    pub block: (Height, Hash),
}

impl SnapshotMeta {
    pub fn from_pb(snapshot: &eraftpb::Snapshot) -> Result<SnapshotMeta, CodecError> {
        let metadata = snapshot.get_metadata();
        let data: SnapshotData = codec::decode(&snapshot.data)?;
        Ok(SnapshotMeta {
            index: metadata.index,
            term: metadata.term,
            membership: Membership::from_pb(metadata.get_conf_state()),
            roster: data.roster,
            block: data.block,
        })
    }

    pub fn to_pb(&self) -> eraftpb::Snapshot {
        let mut metadata = eraftpb::SnapshotMetadata::default();
        metadata.index = self.index;
        metadata.term = self.term;
        metadata.set_conf_state(self.membership.to_pb());
        let mut snapshot = eraftpb::Snapshot::default();
        snapshot.set_metadata(metadata);
        let data = SnapshotData { roster: self.roster.clone(), block: self.block };
        snapshot.data = codec::encode(&data).into();
        snapshot
    }
}

/// A snapshot's data inside `raft` (this node's own encoding): the roster and the block its
/// index reaches.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
#[bincode(crate = "chorus_chain::codec::backend")]
struct SnapshotData {
    roster: Roster,
    block: (Height, Hash),
}

impl Canonical for SnapshotData {
    const BYTES_MAX: u32 = limits::RAFT_ROSTER_BYTES_MAX + 64;
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
    #[error("a Raft membership change or roster names a member whose peer id is not its address's key")]
    Member,
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
        let changes_well_formed = self.entries.iter().all(|entry| match &entry.payload {
            Payload::Membership(change) => change.is_well_formed(),
            Payload::Empty | Payload::Block(_) => true,
        });
        if !changes_well_formed || self.snapshot.as_ref().is_some_and(|snapshot| !snapshot.roster.is_well_formed()) {
            return Err(WireError::Member);
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

#[cfg(test)]
pub(crate) mod tests {
    use chorus_chain::genesis::{PeerIdText, RaftMember};
    use chorus_chain::testing;

    use super::*;
    use crate::raft::membership::{ChangeKind, MembershipEntry};

    fn learner(seed: u32) -> MembershipEntry {
        let address = testing::key(seed).address();
        MembershipEntry {
            kind: ChangeKind::AddLearner,
            member: RaftMember { id: 7, address, peer_id: PeerIdText::of(&address) },
        }
    }

    /// An append from member 1 to member 2 carrying `entries` (the fuzz seeds use it too).
    pub(crate) fn message(entries: Vec<LogEntry>) -> RaftMessage {
        RaftMessage {
            kind: MessageKind::Append,
            to: 2,
            from: 1,
            term: 3,
            log_term: 3,
            index: 10,
            entries,
            commit: 9,
            commit_term: 3,
            snapshot: None,
            request_snapshot: 0,
            reject: false,
            reject_hint: 0,
            context: Vec::new(),
            priority: 0,
        }
    }

    /// A membership entry is `raft`'s conf change (its protobuf data, the typed change in the
    /// context) and comes back from it as it went in; the same bytes on the wire each way.
    #[test]
    fn a_membership_entry_round_trips_through_raft_and_the_wire() {
        let entry = LogEntry { term: 3, index: 11, payload: Payload::Membership(learner(1)) };
        let pb = entry.to_pb();
        assert_eq!(pb.entry_type, eraftpb::EntryType::EntryConfChangeV2);
        assert!(!pb.data.is_empty(), "the protobuf change raft parses at proposal");
        assert_eq!(codec::decode::<MembershipEntry>(&pb.context).expect("typed context"), learner(1));
        assert_eq!(LogEntry::from_pb(&pb).expect("local entry"), entry);

        let sent = message(vec![entry]);
        let bytes = codec::encode(&crate::EngineMessage::Raft(Box::new(sent.clone())));
        let crate::EngineMessage::Raft(received) = codec::decode(&bytes).expect("decodes") else {
            panic!("a Raft message decodes as one")
        };
        assert_eq!(*received, sent);
        assert_eq!(RaftMessage::from_pb(&received.to_pb().expect("steps")).expect("wire form"), sent);
    }

    /// A change naming a member whose peer id is not its address's key never reaches `raft`,
    /// nor does `raft`'s own empty (leave-joint) change or a change disguised as a normal entry.
    #[test]
    fn malformed_membership_entries_are_refused() {
        let mut forged = learner(1);
        forged.member.peer_id = PeerIdText::of(&testing::key(2).address());
        let sent = message(vec![LogEntry { term: 3, index: 11, payload: Payload::Membership(forged) }]);
        assert!(matches!(sent.to_pb(), Err(WireError::Member)));

        let mut leave_joint = eraftpb::Entry::default();
        leave_joint.entry_type = eraftpb::EntryType::EntryConfChangeV2;
        assert!(matches!(LogEntry::from_pb(&leave_joint), Err(WireError::EntryType(_))));

        let disguised = codec::encode(&Payload::Membership(learner(1)));
        assert!(matches!(Payload::from_data(&disguised), Err(CodecError::NonCanonical { .. })));
    }
}

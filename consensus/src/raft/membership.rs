//! Who the members are, and how an operator changes that: one change at a time, answered at
//! once.
//!
//! The [`Roster`] names every member by id with its address and peer id: the voters and
//! learners of the configuration in force, and the members removed before (whose ids, and
//! keys, are never used again; their blocks stay valid history). It changes only when a
//! committed [`MembershipEntry`] is applied, the same on every member, and travels in the log's
//! snapshots so that a member that catches up from one knows everyone.
//!
//! A member that missed changes (cut off, or down) would not admit the members added since, and
//! if one of them leads, could never catch up; so members that applied a change tell the others
//! who the members are now and then ([`RosterNotice`]), and a member behind admits and hears the
//! newer ones until its log brings the changes.
//!
//! An operator asks the leader for a [`MembershipRequest`]; the engine answers at once, either
//! with the log index the change was proposed at ([`ChangeProposed`], followed through
//! `consensus_validators`' pending change) or with a [`MembershipRefusal`] that says why and
//! what to do instead. No request waits for the network.

use std::collections::BTreeMap;

use chorus_chain::codec::{Canonical, Decode, Encode};
use chorus_chain::crypto::Address;
use chorus_chain::genesis::{PeerIdText, RaftMember};
use chorus_chain::limits;
use raft::eraftpb;

/// What a membership entry does to the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
#[bincode(crate = "chorus_chain::codec::backend")]
pub enum ChangeKind {
    /// A new member that receives the log and does not vote.
    AddLearner,
    /// A learner becomes a voter.
    Promote,
    /// A voter or learner leaves for good.
    Remove,
}

/// A membership change as the log carries it: the kind and the member it is about.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
#[bincode(crate = "chorus_chain::codec::backend")]
pub struct MembershipEntry {
    pub kind: ChangeKind,
    pub member: RaftMember,
}

impl Canonical for MembershipEntry {
    const BYTES_MAX: u32 = 256;
}

impl MembershipEntry {
    /// The change `raft` applies: one node, no joint consensus (a single change moves the
    /// quorum by at most one member, which a simple change handles safely).
    pub fn to_conf_change(&self) -> eraftpb::ConfChangeV2 {
        let kind = match self.kind {
            ChangeKind::AddLearner => eraftpb::ConfChangeType::AddLearnerNode,
            ChangeKind::Promote => eraftpb::ConfChangeType::AddNode,
            ChangeKind::Remove => eraftpb::ConfChangeType::RemoveNode,
        };
        let mut change = eraftpb::ConfChangeV2::default();
        change.set_changes(
            vec![raft::prelude::ConfChangeSingle { change_type: kind, node_id: self.member.id, ..Default::default() }]
                .into(),
        );
        change
    }

    /// Whether the member's peer id is its address's key (as genesis requires of every member).
    pub fn is_well_formed(&self) -> bool {
        self.member.id != raft::INVALID_ID && self.member.peer_id == PeerIdText::of(&self.member.address)
    }
}

/// Every member by id: the configuration's voters and learners, and the members removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode)]
#[bincode(crate = "chorus_chain::codec::backend")]
pub struct Roster {
    /// Voters and learners, by id.
    pub members: BTreeMap<u64, RaftMember>,
    /// Removed members, by id: never members again, their blocks still history.
    pub former: BTreeMap<u64, RaftMember>,
}

impl Roster {
    pub fn from_genesis(members: &[RaftMember]) -> Roster {
        Roster { members: members.iter().map(|member| (member.id, member.clone())).collect(), former: BTreeMap::new() }
    }

    /// The member with this address, present or former.
    pub fn by_address(&self, address: &Address) -> Option<&RaftMember> {
        self.members.values().chain(self.former.values()).find(|member| member.address == *address)
    }

    /// The lowest id never used: above every member's, present or former.
    pub fn next_id(&self) -> u64 {
        let highest = self.members.keys().chain(self.former.keys()).max().copied().unwrap_or(0);
        highest.saturating_add(1)
    }

    /// Applies a committed change (the configuration's side is `raft`'s).
    pub fn apply(&mut self, entry: &MembershipEntry) {
        let member = entry.member.clone();
        match entry.kind {
            ChangeKind::AddLearner | ChangeKind::Promote => {
                self.members.insert(member.id, member);
            }
            ChangeKind::Remove => {
                self.members.remove(&member.id);
                self.former.insert(member.id, member);
            }
        }
    }

    /// The peers a member admits: every present member's.
    pub fn peers(&self) -> impl Iterator<Item = &PeerIdText> {
        self.members.values().map(|member| &member.peer_id)
    }

    /// Whether the roster keeps to its bounds and every member's peer id is its address's key.
    pub fn is_well_formed(&self) -> bool {
        let all = || self.members.iter().chain(self.former.iter());
        self.members.len() <= limits::RAFT_MEMBERS_MAX as usize
            && self.former.len() <= limits::RAFT_FORMER_MEMBERS_MAX as usize
            && all().all(|(id, member)| {
                *id == member.id && *id != raft::INVALID_ID && member.peer_id == PeerIdText::of(&member.address)
            })
            && self.members.keys().all(|id| !self.former.contains_key(id))
    }
}

/// A member's present members after the membership change it applied last (at `conf_index`),
/// sent now and then to the other members: one that missed changes (cut off, or down) learns
/// the members added since and admits them, so a new leader among them can reach it and bring
/// its log up to date.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
#[bincode(crate = "chorus_chain::codec::backend")]
pub struct RosterNotice {
    pub conf_index: u64,
    pub members: Vec<RaftMember>,
}

/// A membership change an operator asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipRequest {
    /// Add the node whose key has this address as a learner, under `id` or the next unused one.
    AddLearner { address: Address, id: Option<u64> },
    /// Make a learner that has caught up a voter.
    Promote { id: u64 },
    /// Remove a voter or learner.
    Remove { id: u64 },
}

/// A change the leader proposed: it is in force once the entry at `index` commits and is
/// applied (`consensus_validators` shows it pending until then).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeProposed {
    pub entry: MembershipEntry,
    pub index: u64,
    pub term: u64,
}

/// Why a membership request was refused. Each says what to do instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MembershipRefusal {
    #[error("the {engine} engine has no run-time membership")]
    Unsupported { engine: &'static str },
    #[error("this node is not a Raft member")]
    NotAMember,
    #[error("this node is not the leader; ask the leader, member {id} ({address})")]
    NotLeader { id: u64, address: Address },
    #[error("this node is not the leader and knows no leader now (an election is under way); ask again shortly")]
    NoLeader,
    #[error("the membership change at log index {index} (member {id}) is not applied yet; one change at a time")]
    ChangePending { index: u64, kind: ChangeKind, id: u64 },
    #[error("member id 0 is reserved")]
    ReservedId,
    #[error("member id {id} was removed; removed ids are never reused (the next unused id is {next})")]
    RemovedIdReused { id: u64, next: u64 },
    #[error("member id {id} is in use by {address}")]
    IdInUse { id: u64, address: Address },
    #[error(
        "address {address} already belongs to member {id}{}; a node joins under a new key",
        if *removed { " (removed)" } else { "" }
    )]
    AddressKnown { address: Address, id: u64, removed: bool },
    #[error("no member has id {id}")]
    UnknownMember { id: u64 },
    #[error("member {id} is already a voter")]
    AlreadyVoter { id: u64 },
    #[error(
        "learner {id} has not caught up: it holds the log to index {matched}, the commit index is {commit}{}",
        if *active { "" } else { ", and it has not answered the leader recently" }
    )]
    NotCaughtUp { id: u64, matched: u64, commit: u64, active: bool },
    #[error(
        "after the change {active} of {voters} voters would be reachable, fewer than the quorum of {quorum}: \
         the members could not commit"
    )]
    BelowQuorum { voters: usize, active: usize, quorum: usize },
    #[error("the leader cannot remove itself; leadership is moving to member {to}: ask it")]
    LeaderLeaving { to: u64 },
    #[error("the leader cannot remove itself and no other voter has caught up to take over")]
    LeaderAlone,
    #[error("{count} members, limit {}", limits::RAFT_MEMBERS_MAX)]
    TooManyMembers { count: usize },
    #[error("{count} removed members, limit {}; no more can be added", limits::RAFT_FORMER_MEMBERS_MAX)]
    TooManyFormerMembers { count: usize },
    #[error("the change could not be proposed: {reason}")]
    Dropped { reason: String },
}

impl MembershipRefusal {
    /// A stable name for the refusal, for clients and scripts.
    pub fn code(&self) -> &'static str {
        match self {
            MembershipRefusal::Unsupported { .. } => "unsupported",
            MembershipRefusal::NotAMember => "not_a_member",
            MembershipRefusal::NotLeader { .. } => "not_leader",
            MembershipRefusal::NoLeader => "no_leader",
            MembershipRefusal::ChangePending { .. } => "change_pending",
            MembershipRefusal::RemovedIdReused { .. } => "removed_id_reused",
            MembershipRefusal::ReservedId => "reserved_id",
            MembershipRefusal::IdInUse { .. } => "id_in_use",
            MembershipRefusal::AddressKnown { .. } => "address_known",
            MembershipRefusal::UnknownMember { .. } => "unknown_peer",
            MembershipRefusal::AlreadyVoter { .. } => "already_voter",
            MembershipRefusal::NotCaughtUp { .. } => "not_caught_up",
            MembershipRefusal::BelowQuorum { .. } => "below_quorum",
            MembershipRefusal::LeaderLeaving { .. } => "leader_leaving",
            MembershipRefusal::LeaderAlone => "leader_alone",
            MembershipRefusal::TooManyMembers { .. } => "too_many_members",
            MembershipRefusal::TooManyFormerMembers { .. } => "too_many_former_members",
            MembershipRefusal::Dropped { .. } => "dropped",
        }
    }
}

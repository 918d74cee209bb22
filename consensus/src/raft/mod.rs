//! Raft for permissioned networks: the members' replicated log is the chain.
//!
//! The engine wraps tikv's `raft` `RawNode` (tick, step, propose, ready, advance) inside the
//! pure [`Engine::step`]:
//!
//! - **Blocks are the log.** The leader asks the driver to build a block from its mempool when
//!   transactions are pending ([`Event::TxsPending`]) or a block just applied, signs it for its
//!   term through the [`Guard`] (never two headers for one term and height), and proposes it as
//!   an entry holding the whole block. One block is in flight at a time, built on the applied
//!   head: once a majority has the entry it commits, every member adds the block to its chain
//!   as final (head and final block are the same), and the leader builds the next. An empty
//!   block is never made: a new leader commits its term with `raft`'s empty entry.
//! - **Persistence before sending.** Each `Ready`'s entries, snapshot and hard state go out as
//!   one [`Action::PersistBatch`] (fsynced when `raft` says it must be) before the messages that
//!   depend on them ([`log`]); the applied index is kept with them, so a restart re-applies
//!   only what the chain may lack (adding a block the chain has is skipped).
//! - **Messages** go to one member each ([`Action::Send`], a direct message), as typed bincode
//!   ([`wire`]); the sender must be the member whose peer id the message names.
//! - **Catching up.** A member whose log the leader has compacted gets a snapshot (an index and
//!   the block the chain reached there); the blocks come over the sync protocol like any
//!   block: a block from a member that extends the head and is signed by a member is final,
//!   since members serve only applied (committed) blocks and Raft assumes members crash but
//!   do not lie. Committed blocks above the head wait, bounded, until the blocks below arrive.
//! - **Elections** are deterministic: `raft` draws each timeout from `rand::thread_rng`, so
//!   after every call into it the engine sets the timeout again from the member id and term (a
//!   spread over [election, 2 * election) ticks, so members do not split votes forever).
//!   Pre-vote and check-quorum are on: a member cut off from a majority neither disrupts the
//!   others' term when it returns nor keeps believing it leads.
//! - **Members only.** The engine is permissioned: at start, and after every applied
//!   membership change or snapshot, it names the present members' peer ids
//!   ([`Action::AllowPeers`]) and the node admits no other peer, in either direction.
//! - **Membership at run time** ([`membership`]): an operator asks the leader
//!   ([`Engine::change_membership`]) to add a learner, promote a learner that has caught up, or
//!   remove a member; the answer comes at once, proposed (the log index to follow) or refused
//!   with the reason. One change at a time, each a single `raft` conf change (no joint
//!   consensus needed), refused when it would leave fewer reachable voters than the new
//!   quorum. The roster (ids, addresses, peer ids, and the removed members, whose ids and keys
//!   are never reused) changes when the entry is applied and travels in snapshots. A node
//!   added as a learner starts with only the genesis: the first message a member sends it
//!   under its new id starts its Raft node, and the log (or a snapshot) brings it the rest.
//!
//! Dependency note: `raft` 0.7 pulls `protobuf` 2 (RUSTSEC-2024-0437, a stack overflow when
//! parsing crafted nested messages). Peers' bytes never reach its parser: they are decoded as
//! Chorus's own bincode [`wire::RaftMessage`] and the protobuf values are built field by field.
//! The engine only encodes with protobuf (the conf changes it proposes); the one parse in `raft`
//! is of the leader's own proposal, bytes this node wrote.

pub mod log;
pub mod membership;
pub mod wire;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use chorus_chain::block::Block;
use chorus_chain::codec;
use chorus_chain::crypto::Address;
use chorus_chain::genesis::{PeerIdText, RaftConfig, RaftMember};
use chorus_chain::header::Header;
use chorus_chain::limits;
use chorus_chain::primitives::{Hash, Height, Timestamp};
use raft::eraftpb;
use raft::{RawNode, StateRole};

use self::log::{Batch, LogStore};
use self::membership::{
    ChangeKind, ChangeProposed, MembershipEntry, MembershipRefusal, MembershipRequest, Roster, RosterNotice,
};
use self::wire::{LogEntry, Membership, Payload, RaftMessage, SnapshotMeta, WireError};
use crate::signer::{Guard, Signer};
use crate::{
    Action, ActiveMember, ActiveSet, ChainRead, Durability, Engine, EngineCounters, EngineError, EngineMessage, Event,
    Origin, Outbound, PeerId, TimerId,
};

/// The timer at each Raft tick.
pub const TICK_TIMER: TimerId = TimerId(1);

/// `Ready` rounds one input may cause; `raft` settles in two (a round's persistence can release
/// a light ready), so this only bounds a bug.
const READY_ROUNDS_MAX: u32 = 8;

/// Why the Raft engine refused an input or could not go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RaftError {
    #[error("peer {peer}, member {member}, sent a Raft message as member {id}")]
    Impostor { id: u64, peer: PeerId, member: u64 },
    #[error("a Raft message for member {to} reached member {me}")]
    Misrouted { to: u64, me: u64 },
    #[error("a Raft message that cannot be stepped: {0}")]
    Wire(#[from] WireError),
    #[error("block {hash} is not signed for a term")]
    Unsealed { hash: Hash },
    #[error("block {hash} was proposed by {proposer}, who is not a member")]
    NotAMember { hash: Hash, proposer: Address },
    #[error("committed block {hash} was refused by the store: {reason}")]
    CommittedBlockRejected { hash: Hash, reason: String },
    #[error("committed block {committed} at height {height} differs from the chain's {chain}")]
    Diverged { height: Height, committed: Hash, chain: Hash },
    #[error("the Raft node failed: {0}")]
    Node(String),
}

impl RaftError {
    pub fn is_peer_fault(&self) -> bool {
        match self {
            RaftError::Impostor { .. }
            | RaftError::Misrouted { .. }
            | RaftError::Wire(_)
            | RaftError::Unsealed { .. } => true,
            // A proposer this roster does not list yet: a member added by a change not applied
            // here yet (or not a member at all; either way the block waits for the log).
            RaftError::NotAMember { .. }
            | RaftError::CommittedBlockRejected { .. }
            | RaftError::Diverged { .. }
            | RaftError::Node(_) => false,
        }
    }
}

/// What a leader's node knows of member `id`'s log and liveness. Its own entry in `raft`'s
/// tracker is not kept current: the leader is active and matches its whole log.
fn progress_of(node: &RawNode<LogStore>, id: u64) -> Option<MemberProgress> {
    if id == node.raft.id {
        return Some(MemberProgress { matched: node.raft.raft_log.last_index(), recently_active: true });
    }
    let progress = node.raft.prs().get(id)?;
    Some(MemberProgress { matched: progress.matched, recently_active: progress.recent_active })
}

fn node_error(error: raft::Error) -> EngineError {
    RaftError::Node(error.to_string()).into()
}

/// The leader's block: asked of the driver, or proposed and not yet applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proposal {
    Idle,
    /// The last block built on the head had no transactions: none is asked for until some are
    /// pending or the head moves.
    NothingPending,
    Building,
    InFlight {
        hash: Hash,
        since: Timestamp,
    },
    /// The guard refused to seal a block for this term (it sealed another at that height): no
    /// block until the term changes.
    Blocked {
        term: u64,
    },
}

/// What the Raft engine counts, for metrics and operators.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftCounters {
    pub term: u64,
    /// The leader this member knows (0: none).
    pub leader: u64,
    pub is_leader: bool,
    /// Times the known leader changed to another member, since start.
    pub leader_changes: u64,
    /// Blocks this leader built that `raft` dropped (leadership moving, too much uncommitted).
    pub proposals_dropped: u64,
    /// Blocks this leader proposed that were applied, and their summed commit latency (from
    /// proposal to being applied here).
    pub blocks_committed: u64,
    pub commit_latency_ms_total: u64,
}

/// Raft's membership and leadership as one member sees them (`consensus_validators`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftView {
    pub term: u64,
    /// This node's member id; `None` when its key is no member's.
    pub me: Option<u64>,
    /// The leader this node knows; `None` during an election or when cut off from a quorum.
    pub leader: Option<u64>,
    /// The highest log index a quorum has (0 on a node that is not a member).
    pub commit: u64,
    /// Voters, then learners, each by id.
    pub members: Vec<RaftMemberView>,
    /// A membership change in the log and not applied yet (at most one), with its index.
    pub pending: Option<(MembershipEntry, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftMemberView {
    pub member: RaftMember,
    /// A voter counts toward quorums; a learner only receives the log.
    pub voter: bool,
    /// On the leader: how far the member's log matches the leader's, and whether it answered
    /// within the last election timeout (what promotion and the quorum check go by).
    pub progress: Option<MemberProgress>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberProgress {
    pub matched: u64,
    pub recently_active: bool,
}

pub struct RaftEngine {
    config: RaftConfig,
    /// The node's key, until `start` loads the guard with what it signed before.
    signer: Option<Signer>,
    guard: Option<Guard>,
    /// Every member, present and former, as of the last applied entry (or the genesis's, on a
    /// node that has no log).
    roster: Roster,
    /// The configuration in force after the last applied entry.
    membership: Membership,
    /// Members a member's [`RosterNotice`] named that this roster lacks (changes this node has
    /// not applied yet): admitted and heard until the roster catches up.
    hints: BTreeMap<u64, RaftMember>,
    /// Ticks since start, for the roster notices' period.
    ticks: u64,
    /// This node's member id and its Raft node, when its key is a member's; a node that is not
    /// (yet) one follows the chain over the sync protocol, and starts its node when a member
    /// first addresses it under a new id (it was added).
    node: Option<RawNode<LogStore>>,
    proposal: Proposal,
    /// Committed blocks above the chain's tip, waiting for the blocks below (after a snapshot).
    waiting: BTreeMap<Height, Arc<Block>>,
    /// The chain's head once this step's actions run: the head at the step's start, moved by
    /// each block this step adds.
    tip: (Height, Hash),
    /// The last blocks added from the log (a rejection of one is not a peer's fault).
    from_log: VecDeque<Hash>,
    /// A block this leader sealed that `raft` dropped (a leadership transfer under way, too
    /// much uncommitted): proposed again as it is while the term and head stay, since the
    /// guard seals one header per term and height.
    resend: Option<Arc<Block>>,
    pub counters: RaftCounters,
}

impl std::fmt::Debug for RaftEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftEngine")
            .field("id", &self.id())
            .field("members", &self.roster.members.len())
            .field("proposal", &self.proposal)
            .field("waiting", &self.waiting.len())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl RaftEngine {
    pub fn new(config: RaftConfig, signer: Option<Signer>) -> RaftEngine {
        let roster = Roster::from_genesis(&config.members);
        let membership =
            Membership { voters: config.members.iter().map(|member| member.id).collect(), ..Default::default() };
        RaftEngine {
            config,
            signer,
            guard: None,
            roster,
            membership,
            hints: BTreeMap::new(),
            ticks: 0,
            node: None,
            proposal: Proposal::Idle,
            waiting: BTreeMap::new(),
            tip: (Height::GENESIS, Hash::ZERO),
            from_log: VecDeque::new(),
            resend: None,
            counters: RaftCounters::default(),
        }
    }

    /// This node's member id, once started with a member's key.
    pub fn id(&self) -> Option<u64> {
        self.node.as_ref().map(|node| node.raft.id)
    }

    fn peer_of(&self, id: u64) -> Option<PeerId> {
        let member = self.roster.members.get(&id).or_else(|| self.hints.get(&id))?;
        Some(PeerId::new(member.peer_id.as_str()))
    }

    /// Admits the present members' peers (and those of members a notice named that this roster
    /// has not applied yet), and only them.
    fn allow_members(&self, actions: &mut Vec<Action>) {
        let hinted = self.hints.values().map(|member| &member.peer_id);
        actions.push(Action::AllowPeers(
            self.roster.peers().chain(hinted).map(|peer| PeerId::new(peer.as_str())).collect(),
        ));
    }

    /// The roster changed: hints it now covers are dropped.
    fn roster_changed(&mut self, actions: &mut Vec<Action>) {
        let roster = &self.roster;
        self.hints.retain(|id, _| !roster.members.contains_key(id) && !roster.former.contains_key(id));
        self.allow_members(actions);
    }

    /// Every `2 * election` ticks, once some membership change was applied, tells the other
    /// members who the members are ([`RosterNotice`]).
    fn send_roster(&mut self, actions: &mut Vec<Action>) {
        self.ticks = self.ticks.wrapping_add(1);
        let period = u64::from(self.config.election_ticks).saturating_mul(2).max(1);
        let Some(node) = self.node.as_ref() else { return };
        let conf_index = node.store().conf_index();
        if conf_index == 0 || !self.ticks.is_multiple_of(period) {
            return;
        }
        let notice = RosterNotice { conf_index, members: self.roster.members.values().cloned().collect() };
        for member in self.roster.members.values().filter(|member| member.id != node.raft.id) {
            let to = PeerId::new(member.peer_id.as_str());
            let message = EngineMessage::RaftRoster(Box::new(notice.clone()));
            actions.push(Action::Send { to, message: Outbound::Message(message) });
        }
    }

    /// A member's roster notice: members it names that this roster lacks (and never had) are
    /// admitted and heard until the log brings the changes that added them.
    fn on_roster(&mut self, from: &PeerId, notice: RosterNotice, actions: &mut Vec<Action>) {
        let known = |member: &RaftMember| member.peer_id.as_str() == from.as_str();
        if !self.roster.members.values().chain(self.hints.values()).any(known) {
            return;
        }
        let applied = self.node.as_ref().map_or(0, |node| node.store().conf_index());
        if notice.conf_index <= applied {
            return;
        }
        let before = self.hints.len();
        for member in notice.members {
            let new = !self.roster.members.contains_key(&member.id)
                && !self.roster.former.contains_key(&member.id)
                && self.roster.by_address(&member.address).is_none();
            let well_formed = member.id != raft::INVALID_ID && member.peer_id == PeerIdText::of(&member.address);
            if new && well_formed && self.hints.len() < limits::RAFT_MEMBERS_MAX as usize {
                self.hints.insert(member.id, member);
            }
        }
        if self.hints.len() != before {
            self.allow_members(actions);
        }
    }

    fn load_log(&self, chain: &dyn ChainRead) -> Result<LogStore, EngineError> {
        let genesis_hash = chain.canonical_hash(Height::GENESIS)?.unwrap_or(Hash::ZERO);
        Ok(LogStore::load(chain, &self.config, genesis_hash)?)
    }

    fn start(&mut self, chain: &dyn ChainRead, now: Timestamp, actions: &mut Vec<Action>) -> Result<(), EngineError> {
        if let Some(signer) = self.signer.take() {
            self.guard = Some(Guard::load(signer, chain)?);
        }
        let log = self.load_log(chain)?;
        self.roster = log.roster().clone();
        self.membership = log.membership().clone();
        self.allow_members(actions);
        let Some(address) = self.guard.as_ref().map(Guard::address) else { return Ok(()) };
        match self.roster.members.values().find(|member| member.address == address) {
            Some(member) => {
                let id = member.id;
                self.start_node(chain, now, id, log, actions)
            }
            // Removed, or not (yet) a member: a leader's first message under a new id starts
            // the node (`on_message`).
            None => Ok(()),
        }
    }

    /// Runs this node as member `id` on `log`.
    fn start_node(
        &mut self,
        chain: &dyn ChainRead,
        now: Timestamp,
        id: u64,
        log: LogStore,
        actions: &mut Vec<Action>,
    ) -> Result<(), EngineError> {
        let applied = log.applied();
        let alone = log.membership().voters == [id];
        let config = raft::Config {
            id,
            election_tick: self.config.election_ticks as usize,
            heartbeat_tick: self.config.heartbeat_ticks as usize,
            applied,
            max_size_per_msg: u64::from(limits::RAFT_APPEND_BYTES_MAX),
            max_inflight_msgs: limits::RAFT_INFLIGHT_APPENDS_MAX as usize,
            max_uncommitted_size: limits::RAFT_UNCOMMITTED_BYTES_MAX,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let mut node = RawNode::new(&config, log, &logger).map_err(node_error)?;
        if alone {
            // A one-member chain (`chorusd dev`) leads at once rather than after a timeout.
            node.campaign().map_err(node_error)?;
        }
        self.node = Some(node);
        self.set_tick_timer(now, actions);
        self.handle_ready(chain, now, actions)
    }

    fn set_tick_timer(&self, now: Timestamp, actions: &mut Vec<Action>) {
        let at = Timestamp::from_millis(now.as_millis().saturating_add(self.config.tick_ms));
        actions.push(Action::SetTimer { timer: TICK_TIMER, at });
    }

    /// Sets the election timeout `raft` drew at random to one derived from the member id and
    /// term, in [election, 2 * election) ticks: the same inputs give the same elections.
    fn fix_election_timeout(node: &mut RawNode<LogStore>) {
        let election = node.raft.election_timeout();
        let seed = codec::encode(&(b"chorus/raft/election", node.raft.id, node.raft.term));
        let digest = Hash::digest(&seed);
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(digest.as_bytes().get(..8).unwrap_or(&[0; 8]));
        let spread = u64::from_be_bytes(bytes).checked_rem(election as u64).unwrap_or(0) as usize;
        node.raft.set_randomized_election_timeout(election.saturating_add(spread));
    }

    /// Sends what `raft` asked to send, each to its member.
    fn send(&mut self, messages: Vec<eraftpb::Message>, actions: &mut Vec<Action>) {
        for message in messages {
            let Some(to) = self.peer_of(message.to) else { continue };
            // A message `raft` makes always has a wire form; one that did not would be a local
            // type, which never leaves a node.
            let Ok(wire) = RaftMessage::from_pb(&message) else { continue };
            actions.push(Action::Send { to, message: Outbound::Message(EngineMessage::Raft(Box::new(wire))) });
        }
    }

    /// Takes everything `raft` has ready: messages, persistence, committed entries.
    fn handle_ready(
        &mut self,
        chain: &dyn ChainRead,
        now: Timestamp,
        actions: &mut Vec<Action>,
    ) -> Result<(), EngineError> {
        for _ in 0..READY_ROUNDS_MAX {
            let Some(node) = self.node.as_mut() else { return Ok(()) };
            Self::fix_election_timeout(node);
            if !node.has_ready() {
                break;
            }
            let mut ready = node.ready();
            if let Some(soft) = ready.ss() {
                let (leader, role) = (soft.leader_id, soft.raft_state);
                self.on_soft_state(leader, role);
            }
            let messages = ready.take_messages();
            self.send(messages, actions);
            let mut batch = Batch::new();
            let Some(node) = self.node.as_mut() else { return Ok(()) };
            if !ready.snapshot().is_empty() {
                let snapshot =
                    SnapshotMeta::from_pb(ready.snapshot()).map_err(WireError::from).map_err(RaftError::from)?;
                self.waiting.retain(|height, _| *height > snapshot.block.0);
                self.roster = snapshot.roster.clone();
                self.membership = snapshot.membership.clone();
                node.mut_store().apply_snapshot(snapshot, &mut batch);
                self.roster_changed(actions);
            }
            let committed = ready.take_committed_entries();
            self.apply(chain, now, &committed, actions)?;
            let Some(node) = self.node.as_mut() else { return Ok(()) };
            node.mut_store().append(ready.entries(), &mut batch);
            if let Some(hard_state) = ready.hs() {
                node.mut_store().set_hard_state(hard_state);
            }
            node.mut_store().state_record(&mut batch);
            if !batch.is_empty() {
                let durability = if ready.must_sync() { Durability::Synced } else { Durability::Logged };
                actions.push(Action::PersistBatch { records: batch, durability });
            }
            let persisted = ready.take_persisted_messages();
            self.send(persisted, actions);
            let Some(node) = self.node.as_mut() else { return Ok(()) };
            let mut light = node.advance_append(ready);
            if let Some(commit) = light.commit_index() {
                node.mut_store().set_commit(commit);
            }
            let messages = light.take_messages();
            let committed = light.take_committed_entries();
            self.send(messages, actions);
            self.apply(chain, now, &committed, actions)?;
            self.finish_apply(actions)?;
        }
        Ok(())
    }

    /// Tells `raft` what was applied; compacts the log past what members may still need.
    fn finish_apply(&mut self, actions: &mut Vec<Action>) -> Result<(), EngineError> {
        let Some(node) = self.node.as_mut() else { return Ok(()) };
        let applied = node.store().applied();
        let log = &node.raft.raft_log;
        if applied > log.applied && applied <= log.committed.min(log.persisted) {
            node.advance_apply_to(applied);
        }
        let mut batch = Batch::new();
        let store = node.mut_store();
        let retained = limits::RAFT_LOG_RETAINED_ENTRIES;
        if applied.saturating_sub(store.snapshot_meta().index) > retained.saturating_mul(2) {
            store.compact(applied.saturating_sub(retained), &mut batch)?;
        }
        store.state_record(&mut batch);
        if !batch.is_empty() {
            actions.push(Action::PersistBatch { records: batch, durability: Durability::Logged });
        }
        Ok(())
    }

    fn on_soft_state(&mut self, leader: u64, role: StateRole) {
        if leader != self.counters.leader && leader != raft::INVALID_ID {
            self.counters.leader_changes = self.counters.leader_changes.saturating_add(1);
        }
        self.counters.leader = leader;
        if role != StateRole::Leader {
            // A proposal in flight may still commit under the next leader; this node no longer
            // waits for it.
            self.proposal = Proposal::Idle;
        }
    }

    /// Applies committed entries: each block joins the chain as final.
    fn apply(
        &mut self,
        chain: &dyn ChainRead,
        now: Timestamp,
        entries: &[eraftpb::Entry],
        actions: &mut Vec<Action>,
    ) -> Result<(), EngineError> {
        for entry in entries {
            match entry.entry_type {
                eraftpb::EntryType::EntryNormal if !entry.data.is_empty() => {
                    let payload = Payload::from_data(&entry.data).map_err(WireError::from).map_err(RaftError::from)?;
                    if let Payload::Block(block) = payload {
                        self.apply_block(chain, now, Arc::new(*block), actions)?;
                    }
                }
                eraftpb::EntryType::EntryConfChangeV2 => self.apply_membership(entry, actions)?,
                _ => {}
            }
            if let Some(node) = self.node.as_mut() {
                node.mut_store().set_applied(entry.index);
            }
        }
        Ok(())
    }

    fn apply_block(
        &mut self,
        chain: &dyn ChainRead,
        now: Timestamp,
        block: Arc<Block>,
        actions: &mut Vec<Action>,
    ) -> Result<(), EngineError> {
        let hash = block.hash();
        let height = block.header.height;
        if height <= self.tip.0 {
            return match chain.canonical_hash(height)? {
                Some(stored) if stored != hash => {
                    Err(RaftError::Diverged { height, committed: hash, chain: stored }.into())
                }
                // Already on the chain (it came over sync first), or added earlier in this step.
                _ => Ok(()),
            };
        }
        if self.from_log.len() >= limits::RAFT_WAITING_BLOCKS_MAX as usize {
            self.from_log.pop_front();
        }
        self.from_log.push_back(hash);
        if block.header.parent == self.tip.1 {
            self.add(block, actions);
            self.note_commit(hash, now);
            return Ok(());
        }
        // Above the tip: the blocks between come over the sync protocol.
        if self.waiting.len() < limits::RAFT_WAITING_BLOCKS_MAX as usize {
            let from = self.counters.leader;
            actions.push(Action::FetchBlock { hash: block.header.parent, from: self.peer_of(from) });
            self.waiting.insert(height, block);
        }
        Ok(())
    }

    /// Applies a committed membership change: `raft`'s configuration, the roster, and the
    /// peers the node admits.
    fn apply_membership(&mut self, entry: &eraftpb::Entry, actions: &mut Vec<Action>) -> Result<(), EngineError> {
        let Payload::Membership(change) = LogEntry::from_pb(entry).map_err(RaftError::from)?.payload else {
            return Err(RaftError::Wire(WireError::EntryType(entry.entry_type)).into());
        };
        let Some(node) = self.node.as_mut() else { return Ok(()) };
        let conf = node.apply_conf_change(&change.to_conf_change()).map_err(node_error)?;
        self.roster.apply(&change);
        self.membership = Membership::from_pb(&conf);
        node.mut_store().set_membership(entry.index, self.membership.clone(), self.roster.clone());
        self.roster_changed(actions);
        Ok(())
    }

    /// The membership change in the log and not applied yet, if any, with its index.
    fn pending_change(&self) -> Option<(MembershipEntry, u64)> {
        let node = self.node.as_ref()?;
        node.store().unapplied().filter(|entry| entry.entry_type == eraftpb::EntryType::EntryConfChangeV2).find_map(
            |entry| match LogEntry::from_pb(entry).ok()?.payload {
                Payload::Membership(change) => Some((change, entry.index)),
                Payload::Empty | Payload::Block(_) => None,
            },
        )
    }

    /// Checks an operator's request against the configuration and the members' progress and,
    /// if nothing refuses it, proposes it.
    fn change_membership_now(
        &mut self,
        chain: &dyn ChainRead,
        now: Timestamp,
        request: MembershipRequest,
        actions: &mut Vec<Action>,
    ) -> Result<Result<ChangeProposed, MembershipRefusal>, EngineError> {
        let entry = match self.check_request(request) {
            Ok(entry) => entry,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let Some(node) = self.node.as_mut() else { return Ok(Err(MembershipRefusal::NotAMember)) };
        let proposed = node.propose_conf_change(codec::encode(&entry), entry.to_conf_change());
        let (index, term) = (node.raft.raft_log.last_index(), node.raft.term);
        let answer = match proposed {
            // `raft` keeps a change it accepts at the log's end; one it ignores it turns into
            // an empty entry, without an error.
            Ok(()) if node.raft.pending_conf_index == index => Ok(ChangeProposed { entry, index, term }),
            Ok(()) => Err(MembershipRefusal::Dropped { reason: "raft ignored it".to_owned() }),
            Err(error) => Err(MembershipRefusal::Dropped { reason: error.to_string() }),
        };
        self.handle_ready(chain, now, actions)?;
        Ok(answer)
    }

    /// The entry an operator's request makes, or why it is refused.
    fn check_request(&mut self, request: MembershipRequest) -> Result<MembershipEntry, MembershipRefusal> {
        let pending = self.pending_change();
        let Some(node) = self.node.as_mut() else { return Err(MembershipRefusal::NotAMember) };
        let raft = &node.raft;
        if raft.state != StateRole::Leader {
            return Err(match self.roster.members.get(&raft.leader_id) {
                Some(leader) => MembershipRefusal::NotLeader { id: leader.id, address: leader.address },
                None => MembershipRefusal::NoLeader,
            });
        }
        if let Some((change, index)) = pending {
            return Err(MembershipRefusal::ChangePending { index, kind: change.kind, id: change.member.id });
        }
        let voters = &self.membership.voters;
        let me = raft.id;
        let progress = |id: u64| progress_of(node, id).unwrap_or(MemberProgress { matched: 0, recently_active: false });
        let active = |id: &u64| progress(*id).recently_active;
        let active_voters = voters.iter().filter(|id| active(id)).count();
        let quorum = |voters: usize| (voters / 2).saturating_add(1);
        let entry = match request {
            MembershipRequest::AddLearner { address, id } => {
                if let Some(member) = self.roster.by_address(&address) {
                    let removed = self.roster.former.contains_key(&member.id);
                    return Err(MembershipRefusal::AddressKnown { address, id: member.id, removed });
                }
                let next = self.roster.next_id();
                let id = id.unwrap_or(next);
                if id == raft::INVALID_ID {
                    return Err(MembershipRefusal::ReservedId);
                }
                if self.roster.former.contains_key(&id) {
                    return Err(MembershipRefusal::RemovedIdReused { id, next });
                }
                if let Some(member) = self.roster.members.get(&id) {
                    return Err(MembershipRefusal::IdInUse { id, address: member.address });
                }
                if self.roster.members.len() >= limits::RAFT_MEMBERS_MAX as usize {
                    return Err(MembershipRefusal::TooManyMembers { count: self.roster.members.len() });
                }
                let member = RaftMember { id, address, peer_id: PeerIdText::of(&address) };
                MembershipEntry { kind: ChangeKind::AddLearner, member }
            }
            MembershipRequest::Promote { id } => {
                let member = self.roster.members.get(&id).ok_or(MembershipRefusal::UnknownMember { id })?;
                if voters.contains(&id) {
                    return Err(MembershipRefusal::AlreadyVoter { id });
                }
                // Caught up: it has answered the leader within the last election timeout and
                // holds the log up to the commit index, so as a voter it can take part in the
                // next commit at once.
                let MemberProgress { matched, recently_active: recent } = progress(id);
                let commit = raft.raft_log.committed;
                if !recent || matched < commit {
                    return Err(MembershipRefusal::NotCaughtUp { id, matched, commit, active: recent });
                }
                let (after, reachable) = (voters.len().saturating_add(1), active_voters.saturating_add(1));
                if reachable < quorum(after) {
                    return Err(MembershipRefusal::BelowQuorum {
                        voters: after,
                        active: reachable,
                        quorum: quorum(after),
                    });
                }
                MembershipEntry { kind: ChangeKind::Promote, member: member.clone() }
            }
            MembershipRequest::Remove { id } => {
                let member = self.roster.members.get(&id).ok_or(MembershipRefusal::UnknownMember { id })?.clone();
                if id == me {
                    // Leadership moves first, to the voter furthest along that is reachable.
                    let successor = voters
                        .iter()
                        .filter(|voter| **voter != me && active(voter))
                        .max_by_key(|voter| (progress(**voter).matched, **voter))
                        .copied();
                    return Err(match successor {
                        Some(to) => {
                            node.transfer_leader(to);
                            MembershipRefusal::LeaderLeaving { to }
                        }
                        None => MembershipRefusal::LeaderAlone,
                    });
                }
                if voters.contains(&id) {
                    let after = voters.len().saturating_sub(1);
                    let reachable = active_voters.saturating_sub(usize::from(active(&id)));
                    if reachable < quorum(after) {
                        return Err(MembershipRefusal::BelowQuorum {
                            voters: after,
                            active: reachable,
                            quorum: quorum(after),
                        });
                    }
                }
                if self.roster.former.len() >= limits::RAFT_FORMER_MEMBERS_MAX as usize {
                    return Err(MembershipRefusal::TooManyFormerMembers { count: self.roster.former.len() });
                }
                MembershipEntry { kind: ChangeKind::Remove, member }
            }
        };
        Ok(entry)
    }

    fn note_commit(&mut self, hash: Hash, now: Timestamp) {
        if let Proposal::InFlight { hash: proposed, since } = self.proposal
            && proposed == hash
        {
            let latency = now.as_millis().saturating_sub(since.as_millis());
            self.counters.blocks_committed = self.counters.blocks_committed.saturating_add(1);
            self.counters.commit_latency_ms_total = self.counters.commit_latency_ms_total.saturating_add(latency);
            self.proposal = Proposal::Idle;
        }
    }

    /// Adds a committed block on the tip, final at once.
    fn add(&mut self, block: Arc<Block>, actions: &mut Vec<Action>) {
        let hash = block.hash();
        let height = block.header.height;
        actions.push(Action::AddBlock { block, make_head: true, finalizes: Some((height, hash)) });
        self.tip = (height, hash);
        // Waiting blocks that now follow the tip.
        while let Some(entry) = self.waiting.first_entry() {
            if *entry.key() <= self.tip.0 {
                entry.remove();
                continue;
            }
            if entry.get().header.parent != self.tip.1 {
                break;
            }
            let next = entry.remove();
            let next_hash = next.hash();
            let next_height = next.header.height;
            actions.push(Action::AddBlock { block: next, make_head: true, finalizes: Some((next_height, next_hash)) });
            self.tip = (next_height, next_hash);
        }
    }

    /// The checks a header passes on its own: sealed for a term by a member.
    fn check_header(&self, header: &Header) -> Result<(), RaftError> {
        let hash = header.hash();
        if header.slot().is_none() || header.seal_signature().is_none() {
            return Err(RaftError::Unsealed { hash });
        }
        if self.roster.by_address(&header.proposer).is_none() {
            return Err(RaftError::NotAMember { hash, proposer: header.proposer });
        }
        Ok(())
    }

    /// A block from a peer (the sync protocol): members serve only applied blocks, so one that
    /// extends the head is final. Others are left to the driver's sync.
    fn on_synced_block(
        &mut self,
        chain: &dyn ChainRead,
        block: Arc<Block>,
        actions: &mut Vec<Action>,
    ) -> Result<(), EngineError> {
        let hash = block.hash();
        if chain.header(&hash)?.is_some() {
            return Ok(());
        }
        self.check_header(&block.header)?;
        if block.header.parent == self.tip.1 {
            self.add(block, actions);
        }
        Ok(())
    }

    fn on_message(
        &mut self,
        chain: &dyn ChainRead,
        now: Timestamp,
        from: PeerId,
        message: RaftMessage,
        actions: &mut Vec<Action>,
    ) -> Result<(), EngineError> {
        // The network admits only members' peers; one this roster does not list is a member
        // just removed, or added by a change this node has not applied yet and no notice named:
        // its messages wait for the roster (the sender resends), without blame.
        let sender = |member: &&RaftMember| member.peer_id.as_str() == from.as_str();
        let Some(member) = self.roster.members.values().chain(self.hints.values()).find(sender) else {
            return Ok(());
        };
        if member.id != message.from {
            return Err(RaftError::Impostor { id: message.from, peer: from, member: member.id }.into());
        }
        if self.node.is_none() && !self.join(chain, now, message.to, actions)? {
            return Ok(());
        }
        let Some(me) = self.id() else { return Ok(()) };
        if message.to != me {
            return Err(RaftError::Misrouted { to: message.to, me }.into());
        }
        let message = message.to_pb().map_err(RaftError::from)?;
        let Some(node) = self.node.as_mut() else { return Ok(()) };
        match node.step(message) {
            // A message from a member `raft` no longer tracks (removed) changes nothing.
            Ok(()) | Err(raft::Error::StepPeerNotFound) => {}
            Err(error) => return Err(node_error(error)),
        }
        self.handle_ready(chain, now, actions)
    }

    /// A member addressed this node, which runs no Raft node, as member `to`: the members added
    /// it under that id (they found its peer id in their roster, which is its key's), so it
    /// starts as that member. Whether it did; an id the roster gives another node, a removed
    /// id or a node without a key changes nothing.
    fn join(
        &mut self,
        chain: &dyn ChainRead,
        now: Timestamp,
        to: u64,
        actions: &mut Vec<Action>,
    ) -> Result<bool, EngineError> {
        let Some(address) = self.guard.as_ref().map(Guard::address) else { return Ok(false) };
        let known = self.roster.members.contains_key(&to) || self.roster.former.contains_key(&to);
        if to == raft::INVALID_ID || known || self.roster.by_address(&address).is_some() {
            return Ok(false);
        }
        let log = self.load_log(chain)?;
        self.start_node(chain, now, to, log, actions)?;
        Ok(true)
    }

    /// As leader with nothing in flight and everything applied, asks the driver for a block.
    fn maybe_propose(
        &mut self,
        chain: &dyn ChainRead,
        now: Timestamp,
        actions: &mut Vec<Action>,
    ) -> Result<(), EngineError> {
        let (Some(node), Some(guard)) = (self.node.as_ref(), self.guard.as_ref()) else { return Ok(()) };
        let raft = &node.raft;
        let term = raft.term;
        if matches!(self.proposal, Proposal::Blocked { term: blocked } if blocked != term) {
            self.proposal = Proposal::Idle;
        }
        let settled = raft.state == StateRole::Leader
            && raft.lead_transferee.is_none()
            && raft.apply_to_current_term()
            && raft.raft_log.applied == raft.raft_log.last_index()
            && self.waiting.is_empty();
        let (head_hash, head) = chain.head();
        if self.proposal != Proposal::Idle || !settled || head_hash != self.tip.1 {
            return Ok(());
        }
        if let Some(block) = self.resend.take()
            && block.header.parent == head_hash
            && block.header.slot() == Some(term)
        {
            return self.propose_sealed(chain, now, block, actions);
        }
        let timestamp = Timestamp::from_millis(now.as_millis().max(head.timestamp.as_millis().saturating_add(1)));
        actions.push(Action::Propose { parent: head_hash, timestamp, proposer: guard.address(), votes: Vec::new() });
        self.proposal = Proposal::Building;
        Ok(())
    }

    /// Proposes a block sealed for this term; one `raft` drops is kept to propose again.
    fn propose_sealed(
        &mut self,
        chain: &dyn ChainRead,
        now: Timestamp,
        sealed: Arc<Block>,
        actions: &mut Vec<Action>,
    ) -> Result<(), EngineError> {
        let Some(node) = self.node.as_mut() else { return Ok(()) };
        let hash = sealed.hash();
        match node.propose(Vec::new(), Payload::Block(Box::new(Block::clone(&sealed))).to_data()) {
            Ok(()) => self.proposal = Proposal::InFlight { hash, since: now },
            Err(raft::Error::ProposalDropped) => {
                self.counters.proposals_dropped = self.counters.proposals_dropped.saturating_add(1);
                self.resend = Some(sealed);
            }
            Err(error) => return Err(node_error(error)),
        }
        self.handle_ready(chain, now, actions)
    }

    /// The driver built the block asked for: sealed for the term and proposed, unless empty.
    fn on_built(
        &mut self,
        chain: &dyn ChainRead,
        now: Timestamp,
        block: Arc<Block>,
        actions: &mut Vec<Action>,
    ) -> Result<(), EngineError> {
        if self.proposal != Proposal::Building {
            return Ok(());
        }
        if block.body.txs.is_empty() {
            self.proposal = Proposal::NothingPending;
            return Ok(());
        }
        self.proposal = Proposal::Idle;
        if block.header.parent != self.tip.1 {
            return Ok(());
        }
        let chain_id = chain.genesis().chain_id.clone();
        let (Some(node), Some(guard)) = (self.node.as_mut(), self.guard.as_mut()) else { return Ok(()) };
        if node.raft.state != StateRole::Leader {
            return Ok(());
        }
        let term = node.raft.term;
        let Ok(header) = guard.sign_turn_header(&chain_id, block.header.clone(), term, actions) else {
            self.proposal = Proposal::Blocked { term };
            return Ok(());
        };
        self.propose_sealed(chain, now, Arc::new(Block { header, body: block.body.clone() }), actions)
    }
}

impl Engine for RaftEngine {
    fn name(&self) -> &'static str {
        "raft"
    }

    fn step(
        &mut self,
        chain: &dyn ChainRead,
        now: Timestamp,
        event: Event,
        actions: &mut Vec<Action>,
    ) -> Result<(), EngineError> {
        let (head_hash, head) = chain.head();
        self.tip = (head.height, head_hash);
        let result = match event {
            Event::Start => self.start(chain, now, actions),
            Event::Timer(TICK_TIMER) => {
                if let Some(node) = self.node.as_mut() {
                    node.tick();
                    self.set_tick_timer(now, actions);
                }
                self.send_roster(actions);
                self.handle_ready(chain, now, actions)
            }
            Event::Message { from, message: EngineMessage::RaftRoster(notice) } => {
                self.on_roster(&from, *notice, actions);
                Ok(())
            }
            Event::Timer(_) => Err(EngineError::Unexpected { engine: "raft", what: "a timer it did not set" }),
            Event::Message { from, message: EngineMessage::Raft(message) } => {
                self.on_message(chain, now, from, *message, actions)
            }
            Event::Message { message: EngineMessage::Vote(_), .. } => {
                Err(EngineError::Unexpected { engine: "raft", what: "a finality vote" })
            }
            Event::Block { from: Origin::Peer(_), block } => self.on_synced_block(chain, block, actions),
            Event::Block { from: Origin::Local, .. } => Ok(()),
            Event::Built(block) => self.on_built(chain, now, block, actions),
            Event::HeadChanged { .. } | Event::TxsPending => {
                if self.proposal == Proposal::NothingPending {
                    self.proposal = Proposal::Idle;
                }
                Ok(())
            }
            Event::BlockRejected { hash, reason } => {
                // A block a peer sent over sync costs that peer (the driver sees to it); one from
                // the log is committed, and the chain cannot pass it.
                if !self.from_log.contains(&hash) {
                    return Ok(());
                }
                Err(RaftError::CommittedBlockRejected { hash, reason: reason.to_string() }.into())
            }
            Event::Header { .. } => Ok(()),
            Event::Mined(_) => Err(EngineError::Unexpected { engine: "raft", what: "a mined block" }),
        };
        let proposed = self.maybe_propose(chain, now, actions);
        result.and(proposed)
    }

    fn permissioned(&self) -> bool {
        true
    }

    fn change_membership(
        &mut self,
        chain: &dyn ChainRead,
        now: Timestamp,
        request: MembershipRequest,
        actions: &mut Vec<Action>,
    ) -> Result<Result<ChangeProposed, MembershipRefusal>, EngineError> {
        let (head_hash, head) = chain.head();
        self.tip = (head.height, head_hash);
        let answer = self.change_membership_now(chain, now, request, actions)?;
        self.maybe_propose(chain, now, actions)?;
        Ok(answer)
    }

    fn counters(&self) -> EngineCounters {
        let mut counters = self.counters.clone();
        if let Some(node) = &self.node {
            counters.term = node.raft.term;
            counters.leader = node.raft.leader_id;
            counters.is_leader = node.raft.state == StateRole::Leader;
        }
        EngineCounters { raft: Some(counters), ..EngineCounters::default() }
    }

    fn active_set(&self, _chain: &dyn ChainRead, _now: Timestamp) -> Result<Option<ActiveSet>, EngineError> {
        let leading = self.node.as_ref().filter(|node| node.raft.state == StateRole::Leader);
        let progress = |id: u64| progress_of(leading?, id);
        let view = |ids: &[u64], voter: bool| {
            let mut ids = ids.to_vec();
            ids.sort_unstable();
            ids.into_iter()
                .filter_map(|id| self.roster.members.get(&id))
                .map(|member| RaftMemberView { member: member.clone(), voter, progress: progress(member.id) })
                .collect::<Vec<_>>()
        };
        let mut members = view(&self.membership.voters, true);
        members.extend(view(&self.membership.learners, false));
        let leader = self.node.as_ref().map(|node| node.raft.leader_id).filter(|id| *id != raft::INVALID_ID);
        let raft = RaftView {
            term: self.node.as_ref().map_or(0, |node| node.raft.term),
            me: self.id(),
            leader,
            commit: self.node.as_ref().map_or(0, |node| node.raft.raft_log.committed),
            members: members.clone(),
            pending: self.pending_change(),
        };
        Ok(Some(ActiveSet {
            epoch: None,
            slot: None,
            members: members
                .iter()
                .map(|view| ActiveMember { address: view.member.address, stake: Default::default(), slashed: false })
                .collect(),
            producer: leader.and_then(|id| self.roster.members.get(&id)).map(|member| member.address),
            schedule: Vec::new(),
            election: None,
            raft: Some(raft),
        }))
    }

    fn check_header_alone(&self, header: &Header) -> Result<(), EngineError> {
        Ok(self.check_header(header)?)
    }
}

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
//!
//! Dependency note: `raft` 0.7 pulls `protobuf` 2 (RUSTSEC-2024-0437, a stack overflow when
//! parsing crafted nested messages). Peers' bytes never reach its parser: they are decoded as
//! Chorus's own bincode [`wire::RaftMessage`] and the protobuf values are built field by field;
//! nothing here calls a protobuf parse function.
//!
//! - **Members only.** The engine is permissioned: at start it names the members' peer ids
//!   ([`Action::AllowPeers`]) and the node admits no other peer, in either direction.
//!
//! Not yet: membership changes at run time (learners, promotion, removal).

pub mod log;
pub mod wire;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use chorus_chain::block::Block;
use chorus_chain::codec;
use chorus_chain::crypto::Address;
use chorus_chain::genesis::{RaftConfig, RaftMember};
use chorus_chain::header::Header;
use chorus_chain::limits;
use chorus_chain::primitives::{Hash, Height, Timestamp};
use raft::eraftpb;
use raft::{RawNode, StateRole};

use self::log::{Batch, LogStore};
use self::wire::{Payload, RaftMessage, SnapshotMeta, WireError};
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
    #[error("peer {peer} sent a Raft message as member {id}, which is not a member")]
    UnknownMember { id: u64, peer: PeerId },
    #[error("peer {peer} sent a Raft message as member {id}, whose peer id is {expected}")]
    Impostor { id: u64, peer: PeerId, expected: String },
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
            RaftError::UnknownMember { .. }
            | RaftError::Impostor { .. }
            | RaftError::Misrouted { .. }
            | RaftError::Wire(_)
            | RaftError::Unsealed { .. }
            | RaftError::NotAMember { .. } => true,
            RaftError::CommittedBlockRejected { .. } | RaftError::Diverged { .. } | RaftError::Node(_) => false,
        }
    }
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftMemberView {
    pub member: RaftMember,
    /// A voter counts toward quorums; a learner only receives the log.
    pub voter: bool,
}

pub struct RaftEngine {
    config: RaftConfig,
    /// The node's key, until `start` loads the guard with what it signed before.
    signer: Option<Signer>,
    guard: Option<Guard>,
    members: BTreeMap<u64, RaftMember>,
    /// This node's member id and its Raft node, when its key is a member's; a node that is not
    /// a member follows the chain over the sync protocol.
    node: Option<RawNode<LogStore>>,
    proposal: Proposal,
    /// Committed blocks above the chain's tip, waiting for the blocks below (after a snapshot).
    waiting: BTreeMap<Height, Arc<Block>>,
    /// The chain's head once this step's actions run: the head at the step's start, moved by
    /// each block this step adds.
    tip: (Height, Hash),
    /// The last blocks added from the log (a rejection of one is not a peer's fault).
    from_log: VecDeque<Hash>,
    pub counters: RaftCounters,
}

impl std::fmt::Debug for RaftEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftEngine")
            .field("id", &self.id())
            .field("members", &self.members.len())
            .field("proposal", &self.proposal)
            .field("waiting", &self.waiting.len())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl RaftEngine {
    pub fn new(config: RaftConfig, signer: Option<Signer>) -> RaftEngine {
        let members = config.members.iter().map(|member| (member.id, member.clone())).collect();
        RaftEngine {
            config,
            signer,
            guard: None,
            members,
            node: None,
            proposal: Proposal::Idle,
            waiting: BTreeMap::new(),
            tip: (Height::GENESIS, Hash::ZERO),
            from_log: VecDeque::new(),
            counters: RaftCounters::default(),
        }
    }

    /// This node's member id, once started with a member's key.
    pub fn id(&self) -> Option<u64> {
        self.node.as_ref().map(|node| node.raft.id)
    }

    fn peer_of(&self, id: u64) -> Option<PeerId> {
        self.members.get(&id).map(|member| PeerId::new(member.peer_id.as_str()))
    }

    fn start(&mut self, chain: &dyn ChainRead, now: Timestamp, actions: &mut Vec<Action>) -> Result<(), EngineError> {
        actions.push(Action::AllowPeers(self.members.keys().filter_map(|id| self.peer_of(*id)).collect()));
        if let Some(signer) = self.signer.take() {
            self.guard = Some(Guard::load(signer, chain)?);
        }
        let Some(address) = self.guard.as_ref().map(Guard::address) else { return Ok(()) };
        let Some(id) = self.members.values().find(|member| member.address == address).map(|member| member.id) else {
            return Ok(());
        };
        let genesis_hash = chain.canonical_hash(Height::GENESIS)?.unwrap_or(Hash::ZERO);
        let log = LogStore::load(chain, &self.config, genesis_hash)?;
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
                node.mut_store().apply_snapshot(snapshot, &mut batch);
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
            if entry.entry_type == eraftpb::EntryType::EntryNormal && !entry.data.is_empty() {
                let payload = Payload::from_data(&entry.data).map_err(WireError::from).map_err(RaftError::from)?;
                if let Payload::Block(block) = payload {
                    self.apply_block(chain, now, Arc::new(*block), actions)?;
                }
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
        if !self.members.values().any(|member| member.address == header.proposer) {
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
        let Some(me) = self.id() else { return Ok(()) };
        let Some(member) = self.members.get(&message.from) else {
            return Err(RaftError::UnknownMember { id: message.from, peer: from }.into());
        };
        if member.peer_id.as_str() != from.as_str() {
            let expected = member.peer_id.as_str().to_owned();
            return Err(RaftError::Impostor { id: message.from, peer: from, expected }.into());
        }
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

    /// As leader with nothing in flight and everything applied, asks the driver for a block.
    fn maybe_propose(&mut self, chain: &dyn ChainRead, now: Timestamp, actions: &mut Vec<Action>) {
        let (Some(node), Some(guard)) = (self.node.as_ref(), self.guard.as_ref()) else { return };
        let raft = &node.raft;
        let settled = raft.state == StateRole::Leader
            && raft.apply_to_current_term()
            && raft.raft_log.applied == raft.raft_log.last_index()
            && self.waiting.is_empty();
        let (head_hash, head) = chain.head();
        if self.proposal != Proposal::Idle || !settled || head_hash != self.tip.1 {
            return;
        }
        let timestamp = Timestamp::from_millis(now.as_millis().max(head.timestamp.as_millis().saturating_add(1)));
        actions.push(Action::Propose { parent: head_hash, timestamp, proposer: guard.address(), votes: Vec::new() });
        self.proposal = Proposal::Building;
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
            return Ok(());
        };
        let sealed = Block { header, body: block.body.clone() };
        let hash = sealed.hash();
        match node.propose(Vec::new(), Payload::Block(Box::new(sealed)).to_data()) {
            Ok(()) => self.proposal = Proposal::InFlight { hash, since: now },
            Err(raft::Error::ProposalDropped) => {
                self.counters.proposals_dropped = self.counters.proposals_dropped.saturating_add(1);
            }
            Err(error) => return Err(node_error(error)),
        }
        self.handle_ready(chain, now, actions)
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
                self.handle_ready(chain, now, actions)
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
        self.maybe_propose(chain, now, actions);
        result
    }

    fn permissioned(&self) -> bool {
        true
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
        // A member reads its log's configuration; a node that is not one knows the genesis's.
        let (voters, learners) = match &self.node {
            Some(node) => {
                let conf = node.raft.prs().conf().to_conf_state();
                (conf.voters, conf.learners)
            }
            None => (self.members.keys().copied().collect(), Vec::new()),
        };
        let view = |ids: &[u64], voter: bool| {
            let mut ids = ids.to_vec();
            ids.sort_unstable();
            ids.into_iter()
                .filter_map(|id| self.members.get(&id))
                .map(|member| RaftMemberView { member: member.clone(), voter })
                .collect::<Vec<_>>()
        };
        let mut members = view(&voters, true);
        members.extend(view(&learners, false));
        let leader = self.node.as_ref().map(|node| node.raft.leader_id).filter(|id| *id != raft::INVALID_ID);
        let raft = RaftView {
            term: self.node.as_ref().map_or(0, |node| node.raft.term),
            me: self.id(),
            leader,
            commit: self.node.as_ref().map_or(0, |node| node.raft.raft_log.committed),
            members: members.clone(),
        };
        Ok(Some(ActiveSet {
            epoch: None,
            slot: None,
            members: members
                .iter()
                .map(|view| ActiveMember { address: view.member.address, stake: Default::default(), slashed: false })
                .collect(),
            producer: leader.and_then(|id| self.members.get(&id)).map(|member| member.address),
            schedule: Vec::new(),
            election: None,
            raft: Some(raft),
        }))
    }

    fn check_header_alone(&self, header: &Header) -> Result<(), EngineError> {
        Ok(self.check_header(header)?)
    }
}

//! Chorus consensus: the engine interface and the engines.
//!
//! An [`Engine`] is a pure state machine. The node's driver feeds it [`Event`]s (a block, header
//! or consensus message arrived, a timer fired, the miner found a nonce, a block it asked for was
//! built, the store moved its head) together with the node's current time, and executes the
//! [`Action`]s it appends (send, set a timer, build a block, mine, persist a record, add a block,
//! move the head, finalize), in order, persisting before sending. The engine reads the chain
//! through [`ChainRead`] and never writes it: every write is an action.
//!
//! Invariants: no I/O, clock, async, threads or floats in this crate; collections are ordered
//! maps; anything random is derived from chain data. The same inputs give the same actions, which
//! is what lets the deterministic simulator replay a run from its seed.
//!
//! Engines: [`pow`] (proof of work), [`pos`] (stake-weighted slots with FFG finality votes),
//! [`dpos`] (elected delegates in round-robin slots) and [`raft`] (a permissioned cluster whose
//! log is the chain). [`new_engine`] makes the one the genesis names.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::float_arithmetic,
        clippy::panic
    )
)]

use std::fmt;
use std::sync::Arc;

use chorus_chain::block::Block;
use chorus_chain::codec::{Canonical, Decode, Encode};
use chorus_chain::crypto::Address;
use chorus_chain::genesis::{EngineConfig, Genesis};
use chorus_chain::header::Header;
use chorus_chain::limits;
use chorus_chain::primitives::{Hash, Height, Timestamp};
use chorus_chain::state::{BlockError, StateRead};
use chorus_chain::tx::{Evidence, Vote};
pub use chorus_chain::wire::Misbehaviour;

pub mod dpos;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
pub mod pos;
pub mod pow;
pub mod raft;
#[cfg(test)]
mod records;
pub mod signer;
pub mod slotted;
pub mod votes;

pub use signer::{Guard, Refusal, Signer};

/// A peer as the network layer names it: the libp2p peer id's text in `chorusd`, a node name in
/// the simulator. Engines only compare and echo it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(Arc<str>);

impl PeerId {
    pub fn new(text: &str) -> PeerId {
        PeerId(Arc::from(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", self.0)
    }
}

/// Where a block came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// This node (a block it produced).
    Local,
    Peer(PeerId),
}

/// A consensus message other than a block. PoW has none; PoS and DPoS gossip votes; Raft sends
/// its messages to one member at a time (a Raft append carries whole blocks, so the bound is a
/// direct message's; gossip holds its topic to `limits::ENGINE_MESSAGE_BYTES_MAX`).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
#[bincode(crate = "chorus_chain::codec::backend")]
pub enum EngineMessage {
    Vote(Vote),
    Raft(Box<raft::wire::RaftMessage>),
    RaftRoster(Box<raft::membership::RosterNotice>),
}

impl Canonical for EngineMessage {
    const BYTES_MAX: u32 = limits::DIRECT_MESSAGE_BYTES_MAX;
}

impl EngineMessage {
    /// How honest nodes send this message. One that arrives the other way was sent by no
    /// honest node: a vote sent directly would skip gossip's de-duplication (each replay
    /// costing the node a signature check), and a Raft message by gossip would come from its
    /// relayer, not its author.
    pub fn route(&self) -> Route {
        match self {
            EngineMessage::Vote(_) => Route::Gossip,
            EngineMessage::Raft(_) | EngineMessage::RaftRoster(_) => Route::Direct,
        }
    }
}

/// How an engine message travels: [`EngineMessage::route`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// To every node, on the consensus topic ([`Action::Broadcast`]).
    Gossip,
    /// To one peer, on the direct protocol ([`Action::Send`]).
    Direct,
}

/// What an engine sends to peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outbound {
    Block(Arc<Block>),
    Header(Box<Header>),
    Message(EngineMessage),
}

/// A timer an engine set; the meaning of the number is the engine's. Setting a timer again
/// replaces the pending one with the same id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimerId(pub u32);

/// What happens to a node; each is stepped with the node's current time.
#[derive(Clone, Debug)]
pub enum Event {
    /// The node started (or restarted) on its store; the store's head is where it stopped.
    Start,
    /// A timer set with [`Action::SetTimer`] fired.
    Timer(TimerId),
    /// A block whose parent is stored arrived (gossip or sync). The driver holds blocks with an
    /// unknown parent until the parent is stored.
    Block { from: Origin, block: Arc<Block> },
    /// A header was announced; the engine may ask for its block.
    Header { from: PeerId, header: Header },
    /// A consensus message arrived.
    Message { from: PeerId, message: EngineMessage },
    /// The block asked for with [`Action::Propose`] was built: transactions executed, roots
    /// filled in, seal empty.
    Built(Arc<Block>),
    /// The miner found a nonce: the template of [`Action::StartMining`] with its seal complete.
    Mined(Arc<Block>),
    /// The store moved its head (after [`Action::AddBlock`] or [`Action::SetHead`]).
    HeadChanged { head: Hash, height: Height, rolled_back: Vec<Hash>, applied: Vec<Hash> },
    /// The store found a block invalid when executing it; the head did not move (a failed
    /// reorg is undone by the store).
    BlockRejected { hash: Hash, reason: BlockRejection },
    /// Transactions became ready in the mempool (admitted with no nonce gap before them): an
    /// engine that builds blocks on demand (Raft) may propose one.
    TxsPending,
}

/// What an engine asks the node to do. The driver executes actions in order; an action's
/// result comes back as a later event.
#[derive(Clone, Debug)]
pub enum Action {
    /// Send to every peer.
    Broadcast(Outbound),
    /// Send to one peer.
    Send {
        to: PeerId,
        message: Outbound,
    },
    /// Get a block by hash from the network (from `from` if given).
    FetchBlock {
        hash: Hash,
        from: Option<PeerId>,
    },
    /// Fire [`Event::Timer`] once the node's clock reads `at`.
    SetTimer {
        timer: TimerId,
        at: Timestamp,
    },
    /// Build a block on `parent` from the mempool, carrying `votes`; it comes back as
    /// [`Event::Built`].
    Propose {
        parent: Hash,
        timestamp: Timestamp,
        proposer: Address,
        votes: Vec<Vote>,
    },
    /// Search nonces for `template` on the miner threads (replacing any current search); a find
    /// comes back as [`Event::Mined`].
    StartMining {
        template: Arc<Block>,
    },
    StopMining,
    /// Write an engine record, before any later action runs, as durably as `durability` says.
    Persist {
        key: Vec<u8>,
        value: Vec<u8>,
        durability: Durability,
    },
    /// Write (`Some`) and delete (`None`) engine records in one atomic batch, before any later
    /// action runs: records that must agree (a log and the state naming its last entry).
    PersistBatch {
        records: Vec<(Vec<u8>, Option<Vec<u8>>)>,
        durability: Durability,
    },
    /// Keep a block whose header passed the engine's rules; with `make_head`, also make it the
    /// head (import on the head, or a reorg onto its branch).
    ///
    /// `finalizes` names the block (this one or an ancestor) that this block proves final: its
    /// votes, or the chain up to it, carry the proof. The store writes the claim with the block
    /// and moves the finalized block to it in the same write batch that puts this block on the
    /// current chain (now, or when a reorg applies it later). Finality only moves forward; a
    /// claim at or below the current final block changes nothing.
    AddBlock {
        block: Arc<Block>,
        make_head: bool,
        finalizes: Option<(Height, Hash)>,
    },
    /// Make a stored block the head.
    SetHead {
        hash: Hash,
    },
    /// Put proof of equivocation into the mempool as an `Evidence` transaction signed by the
    /// node's key, and gossip it.
    SubmitEvidence(Box<Evidence>),
    /// Permissioned engines ([`Engine::permissioned`]): from now on only these peers may
    /// connect; the list replaces the last one and connections to peers not on it close.
    AllowPeers(Vec<PeerId>),
    /// A peer misbehaved; it costs the peer the reputation the network gives `misbehaviour`.
    /// `reason` says what was wrong, for the node's logs.
    Penalize {
        peer: PeerId,
        misbehaviour: Misbehaviour,
        reason: String,
    },
}

/// How durable an [`Action::Persist`] must be before the next action runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// As durable as blocks: in the write-ahead log, so a killed process keeps it; a power loss
    /// may lose the last records with the last blocks (for what can be recomputed, like chain
    /// work).
    Logged,
    /// Fsynced before the next action: survives a power loss (for what must never be
    /// forgotten, like what a validator signed).
    Synced,
}

/// Why the store refused a block an engine added ([`Event::BlockRejected`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockRejection {
    /// Executing it (or a block of its branch) broke a rule, now or when it was seen before.
    #[error("{0}")]
    Invalid(Arc<BlockError>),
    /// Making it the head would roll back more blocks than the store undoes.
    #[error("a reorg to it would roll back {depth} blocks, limit {}", limits::REORG_DEPTH_MAX)]
    ReorgTooDeep { depth: u64 },
    /// It is not a descendant of the final block at `final_height`: it can never join the
    /// chain. An honest peer that missed the finality can still send one, so it is not blamed.
    #[error("it forks at height {fork_height}, below the final block {final_hash} at {final_height}")]
    ConflictsWithFinal { fork_height: Height, final_height: Height, final_hash: Hash },
}

impl BlockRejection {
    /// Whether the rejection proves the block's sender wrong.
    pub fn is_peer_fault(&self) -> bool {
        match self {
            BlockRejection::Invalid(_) => true,
            BlockRejection::ReorgTooDeep { .. } | BlockRejection::ConflictsWithFinal { .. } => false,
        }
    }
}

/// A chain read failed: the store is damaged or unreadable. Never the input's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainReadError {
    /// The store could not answer; its error, rendered (engines do not depend on the store).
    #[error("chain read failed: {what}")]
    Unreadable { what: String },
    /// A block the chain's structure says is stored is not.
    #[error("chain read failed: block {hash} ({role}) is not stored")]
    Missing { hash: Hash, role: &'static str },
}

impl From<chorus_chain::state::ReadError> for ChainReadError {
    /// A state read through the chain failed: the store is damaged or unreadable.
    fn from(error: chorus_chain::state::ReadError) -> Self {
        ChainReadError::Unreadable { what: error.to_string() }
    }
}

/// The chain as an engine sees it: read-only. `StateRead` reads the head state.
pub trait ChainRead: StateRead {
    fn genesis(&self) -> &Genesis;
    /// The head block's hash and header.
    fn head(&self) -> (Hash, Header);
    /// Any stored block's header, on the chain or a side branch.
    fn header(&self, hash: &Hash) -> Result<Option<Header>, ChainReadError>;
    /// Any stored block, body included (the votes it carries).
    fn block(&self, hash: &Hash) -> Result<Option<Block>, ChainReadError>;
    /// The encoded state value under `key` after the current chain's block at `height` (at
    /// most the head's): what [`StateAt`] reads, e.g. the stakes at an epoch's first block.
    fn get_raw_at(&self, height: Height, key: &[u8]) -> Result<Option<Vec<u8>>, ChainReadError>;
    /// The hash of the current chain's block at `height`.
    fn canonical_hash(&self, height: Height) -> Result<Option<Hash>, ChainReadError>;
    /// A record written with [`Action::Persist`].
    fn record(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ChainReadError>;
    /// The last final block (height, hash), as stored: it survives restarts and only moves
    /// forward. `None` until an engine first finalizes a block.
    fn finalized(&self) -> Option<(Height, Hash)>;
}

/// The state after the current chain's block at `height`, read through [`ChainRead`]: the
/// state machine's readers (`chorus_chain::state::read_stakers`, `read_account`) work on it.
pub struct StateAt<'a> {
    pub chain: &'a dyn ChainRead,
    pub height: Height,
}

impl fmt::Debug for StateAt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StateAt({})", self.height)
    }
}

impl StateRead for StateAt<'_> {
    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, chorus_chain::state::ReadError> {
        self.chain
            .get_raw_at(self.height, key)
            .map_err(|error| chorus_chain::state::ReadError::Storage(error.to_string()))
    }
}

/// Why an engine refused an input or could not proceed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Pow(#[from] pow::PowError),
    #[error(transparent)]
    Pos(Box<pos::PosError>),
    #[error(transparent)]
    Slot(#[from] slotted::SlotBlockError),
    #[error(transparent)]
    Vote(Box<votes::VoteError>),
    #[error("block {hash}: {error}")]
    Dpos { hash: Hash, error: Box<chorus_chain::dpos::DposError> },
    #[error(transparent)]
    Raft(#[from] raft::RaftError),
    #[error("block {hash} has parent {parent}, which is not stored")]
    UnknownParent { hash: Hash, parent: Hash },
    #[error("the {engine} engine does not take {what}")]
    Unexpected { engine: &'static str, what: &'static str },
    #[error(transparent)]
    Chain(#[from] ChainReadError),
}

impl From<pos::PosError> for EngineError {
    fn from(error: pos::PosError) -> EngineError {
        EngineError::Pos(Box::new(error))
    }
}

impl From<votes::VoteError> for EngineError {
    fn from(error: votes::VoteError) -> EngineError {
        EngineError::Vote(Box::new(error))
    }
}

impl EngineError {
    /// Whether the input proves its sender wrong (it costs the peer reputation), as opposed to
    /// arriving too early or this node being unable to judge it.
    pub fn is_peer_fault(&self) -> bool {
        match self {
            EngineError::Pow(error) => error.is_peer_fault(),
            EngineError::Pos(error) => error.is_peer_fault(),
            EngineError::Slot(error) => error.is_peer_fault(),
            EngineError::Vote(error) => error.is_peer_fault(),
            EngineError::Dpos { .. } => true,
            EngineError::Raft(error) => error.is_peer_fault(),
            EngineError::Unexpected { .. } => true,
            EngineError::UnknownParent { .. } | EngineError::Chain(_) => false,
        }
    }
}

/// A consensus engine. See the crate docs for the contract.
pub trait Engine: Send + fmt::Debug {
    /// The engine's genesis name (`pow`, `pos`, `dpos`, `raft`).
    fn name(&self) -> &'static str;

    /// Handles one event at the node's time `now`, appending what the node must do to
    /// `actions`. An error refuses the input; actions appended before it still run.
    fn step(
        &mut self,
        chain: &dyn ChainRead,
        now: Timestamp,
        event: Event,
        actions: &mut Vec<Action>,
    ) -> Result<(), EngineError>;

    /// The checks a header passes without its parent or any state (PoW: its hash meets a
    /// target no easier than the genesis limit). The node runs them before it holds a block
    /// whose parent it lacks, so what it holds cost its sender something; a failure is the
    /// sender's fault.
    fn check_header_alone(&self, header: &Header) -> Result<(), EngineError>;

    /// Whether only the peers the engine names ([`Action::AllowPeers`]) may connect (Raft).
    /// The node of such an engine admits no peer until the engine first names them, at
    /// [`Event::Start`].
    fn permissioned(&self) -> bool {
        false
    }

    /// An operator's membership change (Raft), answered at once: proposed, or refused with the
    /// reason. Engines without run-time membership refuse every request.
    fn change_membership(
        &mut self,
        chain: &dyn ChainRead,
        now: Timestamp,
        request: raft::membership::MembershipRequest,
        actions: &mut Vec<Action>,
    ) -> Result<Result<raft::membership::ChangeProposed, raft::membership::MembershipRefusal>, EngineError> {
        let _ = (chain, now, request, actions);
        Ok(Err(raft::membership::MembershipRefusal::Unsupported { engine: self.name() }))
    }

    /// What the engine counts, for metrics.
    fn counters(&self) -> EngineCounters {
        EngineCounters::default()
    }

    /// Who may produce blocks now, for operators (`consensus_validators`); `None` for an open
    /// engine (PoW: anyone may mine).
    fn active_set(&self, chain: &dyn ChainRead, now: Timestamp) -> Result<Option<ActiveSet>, EngineError> {
        let _ = (chain, now);
        Ok(None)
    }

    /// The weight its fork choice gives the chain ending at the stored block `hash`, as a
    /// big-endian 256-bit number (PoW: the chain's cumulative work); `None` for engines that
    /// do not choose between chains by a weight.
    fn chain_work(&mut self, chain: &dyn ChainRead, hash: &Hash) -> Result<Option<[u8; 32]>, EngineError> {
        let _ = (chain, hash);
        Ok(None)
    }
}

/// What an engine counts for the node's metrics (zero where it does not apply).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineCounters {
    /// The last slot the engine's timer reached; `None` for engines without slots.
    pub slot: Option<u64>,
    /// Slots that passed with no block on the head's chain, since start.
    pub missed_slots: u64,
    /// Those slots by the producer the head's chain gave them to (at most
    /// `limits::MISSED_SLOT_PRODUCERS_MAX` producers, `limits::MISSED_SLOTS_ATTRIBUTED_MAX`
    /// slots a tick).
    pub missed_by_producer: std::collections::BTreeMap<Address, u64>,
    /// Consensus votes received from peers and accepted, since start.
    pub votes_received: u64,
    /// Raft: term, leader and commits.
    pub raft: Option<raft::RaftCounters>,
}

/// An engine's active set as operators see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveSet {
    /// The epoch the set belongs to (PoS).
    pub epoch: Option<u64>,
    /// The slot under way at the node's clock (slot engines).
    pub slot: Option<u64>,
    /// PoS: the validators and their stakes; DPoS: the scheduled producers and their approval
    /// weights.
    pub members: Vec<ActiveMember>,
    /// The proposer of `slot` on the head (slot engines; `None` when it has none).
    pub producer: Option<Address>,
    /// The proposers of the next slots on the head, in order (slot engines).
    pub schedule: Vec<(u64, Address)>,
    /// DPoS: the election behind the schedule.
    pub election: Option<Election>,
    /// Raft: the members, the term and the leader, as this node knows them.
    pub raft: Option<raft::RaftView>,
}

/// DPoS: the schedule in force, the one waiting to be, and the ranking that makes the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Election {
    /// The active schedule's version (0 for the genesis one) and first slot.
    pub version: u64,
    pub start_slot: u64,
    /// How many delegates produce (the genesis `producers`).
    pub producers: u32,
    /// The next schedule: it takes effect at the first round boundary after the block that
    /// proposed it is irreversible.
    pub pending: Option<chorus_chain::dpos::PendingSchedule>,
    /// The registered delegates on the head (the state's index, bounded by
    /// `limits::DELEGATES_INDEXED_MAX`) by rank: weight, then address; slashed ones last.
    pub ranking: Vec<RankedDelegate>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RankedDelegate {
    pub address: Address,
    /// The sum of the bonded stakes approving it.
    pub weight: chorus_chain::primitives::Amount,
    /// Slashed for an offence: out of every schedule from the next on.
    pub slashed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveMember {
    pub address: Address,
    pub stake: chorus_chain::primitives::Amount,
    /// Slashed for an offence: it leaves the set at the next epoch.
    pub slashed: bool,
}

/// What a node brings to its engine beyond the genesis.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// PoW: mine, paying rewards to this address. `None`: validate and follow only.
    pub coinbase: Option<Address>,
    /// The node's key (its address and network identity), for engines whose validators sign
    /// blocks and votes; such an engine takes part as a validator when the key's address is in
    /// the set, and follows otherwise. PoW ignores it.
    pub signer: Option<Signer>,
}

/// Why no engine could be made for a genesis.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineSetupError {
    #[error("the genesis switches engines at height {height}; engine switching is not implemented yet")]
    SwitchNotImplemented { height: Height },
}

/// The engine the genesis names. Only the first schedule entry is supported for now.
pub fn new_engine(genesis: &Genesis, options: EngineOptions) -> Result<Box<dyn Engine>, EngineSetupError> {
    if let Some(entry) = genesis.engines.get(1) {
        return Err(EngineSetupError::SwitchNotImplemented { height: entry.from_height });
    }
    match genesis.engine_at(Height::GENESIS) {
        EngineConfig::Pow(config) => Ok(Box::new(pow::PowEngine::new(config.clone(), options.coinbase))),
        EngineConfig::Pos(config) => Ok(Box::new(pos::PosEngine::new(config.clone(), options.signer))),
        EngineConfig::Dpos(config) => Ok(Box::new(dpos::DposEngine::new(config.clone(), options.signer))),
        EngineConfig::Raft(config) => Ok(Box::new(raft::RaftEngine::new(config.clone(), options.signer))),
    }
}

/// The weight [`Engine::chain_work`] gives the chain ending at the stored block `hash` (with
/// `header`), read without the engine for readers beside the node's thread (the RPC server):
/// PoW's cumulative work from the engine's records (`record`, the store's engine records),
/// summed down the ancestors (`header_of`) where a record is missing; `None` for engines
/// without a weight.
pub fn recorded_chain_work<E>(
    genesis: &Genesis,
    hash: &Hash,
    header: &Header,
    record: impl Fn(&[u8]) -> Result<Option<Vec<u8>>, E>,
    header_of: impl Fn(&Hash) -> Result<Option<Header>, E>,
) -> Result<Option<[u8; 32]>, E> {
    match genesis.engine_at(header.height) {
        EngineConfig::Pow(config) => pow::recorded_work(config, hash, header, record, header_of),
        EngineConfig::Pos(_) | EngineConfig::Dpos(_) | EngineConfig::Raft(_) => Ok(None),
    }
}

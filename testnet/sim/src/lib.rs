//! The deterministic simulator: N nodes (the real driver, engine, state machine and RocksDB
//! store in temporary directories) on a simulated network and clock, driven by one seed.
//!
//! Each node is the core `chorusd` runs (`chorus_node_core::Node`: driver, range sync, the
//! mapping onto gossip and sync requests); the simulator carries its effects as `chorusd`'s
//! network service would: gossip as bytes on topics, sync requests served by the peer's
//! `Node::serve` and answered (or timed out after [`REQUEST_TIMEOUT_MS`] when lost or the peer
//! is down), connections opened when a node boots and closed when it crashes.
//!
//! A run is a discrete-event loop over `(time, sequence)`-ordered events: deliveries (latency
//! 5..=50 ms, so messages reorder), timers, miners finding nonces (a real nonce search whose
//! length, over a simulated hash rate, gives the time), client transactions, and faults: loss
//! (and duplicated gossip), partitions and healing, crashes and restarts (a node loses
//! everything but its store), clock skew, and a late node (the last one starts once the chain
//! is more than two sync ranges long, and must catch up by range sync), and (PoS) byzantine
//! validators under a third of the stake that double-propose, double-vote and withhold votes.
//! Clients send transfers, stakes (one account once above the PoS minimum: a validator without a
//! node), unstakes and delegate votes. After `steps` events the faults stop (PoS clocks are stepped
//! to within a fraction of a slot of each other) and the nodes run for
//! [`QUIET_MINING_MS`] more. Under PoW only node 0 then mines, until it finds a block with more
//! work than any found before (tips of equal work stay split until a block extends one of them, so
//! a block that ties one still in flight does not end mining), and all nodes must agree on one
//! head within [`SETTLE_MS`] of that block. Under PoS, which never stops producing blocks, every
//! node's finality must pass where it stood within [`FINALITY_RESUMES_MS`], and every
//! equivocation an honest node received whole must have its author slashed on every node.
//!
//! Checked after every event: equal blocks give equal state roots on every node (and the root
//! the header carries); a node's head has the most work among the blocks it has stored (PoW);
//! final blocks agree across nodes and are never reverted, and every block some node holds final
//! is on the chain of every node final at or above its height (engines with finality); no
//! honest validator is slashed (PoS); honest nodes never penalize or reject each other (a
//! byzantine node's equivocations are rightly refused); the driver never fails. At the end, every node's accounts equal
//! those of an independent in-memory replay of its chain. Every event is hashed into a digest,
//! so the same seed gives the same digest.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chorus_chain::block::Block;
use chorus_chain::codec;
use chorus_chain::crypto::Address;
use chorus_chain::genesis::{
    DposConfig, EngineConfig, Genesis, GenesisAccount, Member, PeerIdText, PosConfig, RaftConfig, RaftMember,
};
use chorus_chain::header::Seal;
use chorus_chain::limits;
use chorus_chain::primitives::{Amount, Hash, Height, Timestamp};
use chorus_chain::state;
use chorus_chain::state::memory::MemoryState;
use chorus_chain::testing::{self, Rng};
use chorus_chain::tx::{Checkpoint, TxKind, Vote};
use chorus_chain::wire::{SyncRequest, SyncResponse, Topic, Verdict};
use chorus_consensus::pow::difficulty::{self, U256};
use chorus_consensus::pow::mining::{Grinder, with_nonce};
use chorus_consensus::raft::membership::{MembershipRefusal, MembershipRequest};
use chorus_consensus::{EngineMessage, EngineOptions, PeerId, Signer};
use chorus_node_core::{Driver, Effect, Node, RequestFailed, Timer};
use chorus_store::Store;
use sha2::{Digest, Sha256};

/// Mining continues this long after the faults stop.
pub const QUIET_MINING_MS: u64 = 10_000;
/// How long node 0, mining alone, may take to find the block that ends mining.
pub const SOLE_MINER_MS_MAX: u64 = 120_000;
/// After mining stops, all nodes must share one head within this time (a few status rounds).
pub const SETTLE_MS: u64 = 3 * limits::STATUS_INTERVAL_MS + 4_000;
/// A sync request whose request or answer is lost, or whose peer is down, fails after this
/// long (chorusd's transport gives up after 20 s; a shorter bound keeps runs short and makes
/// failed requests common).
pub const REQUEST_TIMEOUT_MS: u64 = 5_000;

const LATENCY_MS_MIN: u64 = 5;
const LATENCY_MS_MAX: u64 = 50;
const LOSS_PERMILLE: u32 = 100;
const DUPLICATE_PERMILLE: u32 = 30;
const SKEW_MS_MAX: u64 = 2_000;
/// How far apart the clocks of slot engines' nodes may be for the chain to stay live: a
/// proposer further off is as good as absent (its block comes in another proposer's slot, or
/// after the next one built without it), and PoS finality needs blocks in consecutive slots.
/// DPoS producers take fixed turns, so the skew fault stays within this throughout; PoS keeps
/// the full [`SKEW_MS_MAX`] while the faults are on (safety holds at any skew) and its clocks
/// are stepped within this when they stop (liveness is only asked of synchronized clocks, as
/// every slot-based chain asks of its operators).
const SLOT_SKEW_MS_MAX: u64 = POS_SLOT_MS * 2 / 5;
/// With the `late` fault, the last node starts once a chain is this high: more than two sync
/// ranges, so it catches up by range sync (ranges from several peers, in order).
const LATE_JOIN_HEIGHT: u64 = 2 * limits::SYNC_BLOCKS_PER_RESPONSE_MAX as u64 + 8;
const HASHES_PER_SECOND: u64 = 100;
/// PoS: each node's stake, the slot and the epoch.
const POS_STAKE: u128 = 1_000_000;
const POS_SLOT_MS: u64 = 1_000;
const POS_EPOCH_SLOTS: u64 = 8;
/// Raft: with every node up and no faults, every member names the same leader within this long
/// after the faults stop: three of the longest election timeouts (2 s at 100 ms ticks and 10
/// election ticks), for a pre-vote, a vote, and one split vote between them.
pub const RAFT_LEADER_ELECTED_MS: u64 = 6_000;
/// With every node up and no faults, finality passes where it stood within this long (a few
/// epochs of slots).
pub const FINALITY_RESUMES_MS: u64 = 30_000;
const FUNDED_ACCOUNTS: u32 = 8;
const TX_INTERVAL_MS_MAX: u64 = 800;
/// A nonce search longer than this is abandoned (the template is refreshed within a second).
const GRIND_TRIES_MAX: u64 = 1_000_000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    pub loss: bool,
    pub partition: bool,
    pub crash: bool,
    pub skew: bool,
    /// The last node starts late (not part of [`Faults::ALL`]: runs last longer).
    pub late: bool,
    /// Engines with stake: the last validators, under a third of the stake, double-propose,
    /// double-vote and withhold votes while faults are on.
    pub byzantine: bool,
    /// Raft: the last node is not a genesis member; an operator adds it as a learner, promotes
    /// it, then removes a genesis member, through whichever node leads, during the faults.
    pub membership: bool,
}

impl Faults {
    pub const ALL: Faults = Faults {
        loss: true,
        partition: true,
        crash: true,
        skew: true,
        late: false,
        byzantine: false,
        membership: false,
    };

    /// Parses `loss,partition,crash,skew,late` (any subset; empty for none).
    pub fn parse(text: &str) -> Result<Faults, SimError> {
        let mut faults = Faults::default();
        for name in text.split(',').map(str::trim).filter(|name| !name.is_empty()) {
            match name {
                "loss" => faults.loss = true,
                "partition" => faults.partition = true,
                "crash" => faults.crash = true,
                "skew" => faults.skew = true,
                "late" => faults.late = true,
                "byzantine" => faults.byzantine = true,
                "membership" => faults.membership = true,
                other => return Err(SimError::UnknownFault { name: other.to_owned() }),
            }
        }
        Ok(faults)
    }
}

/// Why a simulation cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("unknown fault `{name}`; known: loss, partition, crash, skew, late, byzantine, membership")]
    UnknownFault { name: String },
    #[error("the byzantine fault needs an engine with validators; {engine} has none")]
    NoValidators { engine: String },
    #[error("the membership fault is Raft's; {engine} has no run-time membership")]
    NoMembership { engine: String },
    #[error("unknown engine `{name}`; known: pow, pos, dpos, raft")]
    UnknownEngine { name: String },
    #[error("temporary directory: {0}")]
    TemporaryDirectory(#[from] std::io::Error),
}

/// Why a node's chain does not replay to its stored state (a violation).
#[derive(Debug, thiserror::Error)]
enum ReplayError {
    #[error("genesis state: {0}")]
    Genesis(#[from] state::tree::TreeError),
    #[error(transparent)]
    Store(#[from] chorus_store::StoreError),
    #[error(transparent)]
    Read(#[from] state::ReadError),
    #[error("no canonical block at {height}")]
    Missing { height: Height },
    #[error("replay of #{height}: {error}")]
    Apply { height: Height, error: state::BlockError },
    #[error("account {address} is {stored:?} in the store, {replayed:?} in a replay of its chain")]
    Differs { address: Address, stored: Box<state::Account>, replayed: Box<state::Account> },
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub engine: String,
    pub nodes: usize,
    pub seed: u64,
    pub faults: Faults,
    /// Events processed with faults on.
    pub steps: u64,
}

/// The outcome of one seed.
#[derive(Debug, Clone)]
pub struct SimReport {
    pub seed: u64,
    pub violations: Vec<String>,
    pub digest: Hash,
    pub events: u64,
    pub head_height: u64,
    /// The highest block any node holds final (0 without finality).
    pub final_height: u64,
    /// Byzantine validators whose equivocation reached an honest node (each was checked to be
    /// slashed by the end).
    pub equivocators: usize,
    /// Range-sync requests served (nodes that fell more than a range behind).
    pub range_requests: u64,
    /// DPoS: schedule changes at or below the final height every node reached (each checked to
    /// be at the same block on every node).
    pub schedule_changes: usize,
    /// Raft with the membership fault: the operator's changes applied (all of them, or the
    /// run has a violation), and the refusals met on the way, by reason.
    pub membership_changes: usize,
    pub membership_refusals: BTreeMap<&'static str, u32>,
}

#[derive(Debug)]
enum SimEvent {
    /// A gossip message reaches node `to`.
    Gossip {
        to: usize,
        from: usize,
        topic: Topic,
        data: Arc<Vec<u8>>,
    },
    /// A direct engine message reaches node `to`.
    Direct {
        to: usize,
        from: usize,
        data: Vec<u8>,
    },
    /// A sync request reaches node `to`, which answers it.
    Request {
        to: usize,
        from: usize,
        request: SyncRequest,
    },
    /// The answer to node `to`'s request (or its failure) comes back.
    Answer {
        to: usize,
        from: usize,
        request: SyncRequest,
        answer: Result<SyncResponse, RequestFailed>,
    },
    Timer {
        node: usize,
        timer: Timer,
        generation: u64,
    },
    Mined {
        node: usize,
        block: Arc<Block>,
        generation: u64,
    },
    SubmitTx,
    Crash {
        node: usize,
    },
    Restart {
        node: usize,
    },
    Partition,
    Heal,
    /// The operator's next membership request, or a check that the last one was applied.
    Membership,
}

/// Raft membership changes an operator makes during a run, one after the other: each asked of
/// the node last named leader (or any running node), again after a refusal that says to wait,
/// until some node's view shows it applied.
#[derive(Debug)]
struct MembershipPlan {
    steps: Vec<MembershipRequest>,
    /// The step under way.
    next: usize,
    /// The node to ask.
    ask: usize,
    /// Refusals by reason code, and proposals, for `--verbose`.
    refusals: BTreeMap<&'static str, u32>,
    proposals: u32,
}

struct SimNode {
    /// Equivocates and withholds votes while faults are on.
    byzantine: bool,
    peer: PeerId,
    dir: tempfile::TempDir,
    node: Option<Node>,
    coinbase: Address,
    skew_ms: i64,
    timer_generation: BTreeMap<Timer, u64>,
    mining_generation: u64,
    /// Most work among the blocks this node has stored.
    best_seen_work: U256,
    /// Blocks this node was given that it may store later (orphans).
    unconfirmed: BTreeSet<Hash>,
    last_finalized: Option<(Height, Hash)>,
    /// The peers a permissioned engine admits (`None`: any); as in `chorusd`, a connection
    /// either side refuses carries nothing.
    allowlist: Option<BTreeSet<PeerId>>,
}

/// Which nodes mine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mining {
    All,
    /// Only this node, until it finds a block with more work than any released before.
    Sole(usize),
    Off,
}

impl Mining {
    fn allows(self, node: usize) -> bool {
        match self {
            Mining::All => true,
            Mining::Sole(sole) => sole == node,
            Mining::Off => false,
        }
    }

    /// After `node` releases a block of cumulative `work`, with `released` the most work any
    /// block released before it carried: the sole miner stops once its block beats them all
    /// (every node then converges on it); a block that only ties leaves the tips split, so
    /// mining goes on until a later block breaks the tie.
    fn after_release(self, node: usize, work: U256, released: U256) -> Mining {
        if self == Mining::Sole(node) && work > released { Mining::Off } else { self }
    }
}

pub struct Sim {
    config: SimConfig,
    genesis: Genesis,
    rng: Rng,
    now_ms: u64,
    sequence: u64,
    queue: BTreeMap<(u64, u64), SimEvent>,
    nodes: Vec<SimNode>,
    /// Node index -> partition group (equal groups talk).
    groups: Vec<u8>,
    faults_on: bool,
    mining: Mining,
    /// Every block mined: its cumulative work.
    work: BTreeMap<Hash, U256>,
    /// The most cumulative work among the blocks miners released.
    released_work: U256,
    /// The state root each block gave the first node that applied it.
    roots: BTreeMap<Hash, Hash>,
    finals: BTreeMap<Height, Hash>,
    violations: Vec<String>,
    digest: Sha256,
    events: u64,
    range_requests: u64,
    /// DPoS schedule changes the final checks saw on every node's final chain.
    schedule_changes: usize,
    /// The node that has not started yet (the `late` fault).
    late: Option<usize>,
    /// Byzantine equivocations sent: the digest of each half's gossip data, its offender, the
    /// pair and which half it is.
    equivocations: BTreeMap<Hash, (Address, u32, u8)>,
    pairs: u32,
    /// Halves of each pair delivered to each honest node (bit 0 and 1).
    halves_seen: BTreeMap<(u32, usize), u8>,
    /// Offenders one of whose equivocations some honest node received whole.
    reached: BTreeSet<Address>,
    /// Raft: the node that led each term.
    leaders: BTreeMap<u64, usize>,
    /// Raft with the membership fault: the operator's changes.
    membership: Option<MembershipPlan>,
    /// Nodes whose removal from the members was applied: out of the liveness and agreement
    /// checks from then on.
    removed: BTreeSet<usize>,
    /// Raft, while partitioned: the highest height final anywhere when the partition began.
    /// A node in a group too small to be a majority commits nothing new: it may learn at most
    /// the one block that was in flight then.
    partition_final: Option<u64>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim").field("seed", &self.config.seed).field("now_ms", &self.now_ms).finish_non_exhaustive()
    }
}

/// Whether the engine has validators with stake (the byzantine fault and the stake checks
/// apply).
fn has_stake(genesis: &Genesis) -> bool {
    matches!(genesis.engine_at(Height::GENESIS), EngineConfig::Pos(_) | EngineConfig::Dpos(_))
}

/// Funds every node's account with `POS_STAKE` bonded (approving its own delegate if
/// `self_vote`); the nodes as genesis members.
fn stake_nodes(genesis: &mut Genesis, nodes: usize, self_vote: bool) -> Vec<Member> {
    (0..nodes)
        .map(|index| {
            let address = node_key(index).address();
            genesis.accounts.push(GenesisAccount {
                address,
                balance: Amount::new(1_000_000_000),
                stake: Amount::new(POS_STAKE),
                votes: if self_vote { vec![address] } else { Vec::new() },
            });
            Member { address, peer_id: PeerIdText::of(&address) }
        })
        .collect()
}

/// The simulation genesis: PoW with an initial target near the equilibrium for `nodes` miners.
pub fn sim_genesis(engine: &str, nodes: usize) -> Result<Genesis, SimError> {
    let mut genesis = testing::genesis(FUNDED_ACCOUNTS, 1_000_000_000);
    match engine {
        "pow" => {
            let hashes_per_block = U256::from(HASHES_PER_SECOND * nodes as u64);
            let target = U256::MAX / hashes_per_block;
            if let EngineConfig::Pow(config) = &mut genesis.engines[0].engine {
                config.initial_target = Hash(target.to_big_endian());
                config.target_block_time_ms = 1_000;
                config.retarget_window_blocks = 10;
            }
            Ok(genesis)
        }
        "pos" => {
            // Every node is a validator with equal stake, its key the node key.
            let validators = stake_nodes(&mut genesis, nodes, false);
            // Evidence stays admissible long enough to outlast any partition of a run.
            genesis.params.unbonding_period = chorus_chain::primitives::BlockCount(1_000);
            genesis.engines[0].engine = EngineConfig::Pos(PosConfig {
                slot_ms: POS_SLOT_MS,
                epoch_slots: POS_EPOCH_SLOTS,
                min_stake: Amount::new(POS_STAKE / 2),
                validators_max: 100,
                validators,
            });
            Ok(genesis)
        }
        "dpos" => {
            // Every node is a genesis delegate approving itself with its stake; one fewer are
            // scheduled than there are nodes, so the small approvals the simulator's accounts
            // send keep reordering the ranking and the schedule changes during runs.
            let delegates = stake_nodes(&mut genesis, nodes, true);
            genesis.params.unbonding_period = chorus_chain::primitives::BlockCount(1_000);
            let producers = u32::try_from(nodes.saturating_sub(1).max(1)).unwrap_or(1);
            genesis.engines[0].engine = EngineConfig::Dpos(DposConfig { slot_ms: POS_SLOT_MS, producers, delegates });
            Ok(genesis)
        }
        "raft" => {
            // Every node is a member, its id its index plus one; a 100 ms tick, elections after
            // 1 to 2 s without a leader, heartbeats every 200 ms.
            let members = (0..nodes)
                .map(|index| {
                    let address = node_key(index).address();
                    RaftMember { id: index as u64 + 1, address, peer_id: PeerIdText::of(&address) }
                })
                .collect();
            genesis.engines[0].engine =
                EngineConfig::Raft(RaftConfig { tick_ms: 100, election_ticks: 10, heartbeat_ticks: 2, members });
            Ok(genesis)
        }
        other => Err(SimError::UnknownEngine { name: other.to_owned() }),
    }
}

impl Sim {
    pub fn new(config: SimConfig) -> Result<Sim, SimError> {
        let mut genesis = sim_genesis(&config.engine, config.nodes)?;
        if config.faults.byzantine && !has_stake(&genesis) {
            return Err(SimError::NoValidators { engine: config.engine.clone() });
        }
        let mut rng = Rng(config.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let membership = match (&mut genesis.engines[0].engine, config.faults.membership) {
            (_, false) => None,
            (EngineConfig::Raft(raft), true) => {
                // The last node joins at run time; a genesis member other than it leaves.
                raft.members.pop();
                let joining = config.nodes.saturating_sub(1);
                let address = node_key(joining).address();
                let id = joining as u64 + 1;
                let leaving = u64::from(rng.below(u32::try_from(joining.max(1)).unwrap_or(1))) + 1;
                let steps = vec![
                    MembershipRequest::AddLearner { address, id: None },
                    MembershipRequest::Promote { id },
                    MembershipRequest::Remove { id: leaving },
                ];
                Some(MembershipPlan { steps, next: 0, ask: 0, refusals: BTreeMap::new(), proposals: 0 })
            }
            (_, true) => return Err(SimError::NoMembership { engine: config.engine.clone() }),
        };
        let mut nodes = Vec::with_capacity(config.nodes);
        let skew_max = match genesis.engine_at(Height::GENESIS) {
            EngineConfig::Dpos(_) => SLOT_SKEW_MS_MAX,
            _ => SKEW_MS_MAX,
        };
        for index in 0..config.nodes {
            let skew_ms =
                if config.faults.skew { i64::from(rng.below(2 * skew_max as u32 + 1)) - skew_max as i64 } else { 0 };
            // Under a third of the stake: with equal stakes, the last (n - 1) / 3 nodes.
            let byzantine = config.faults.byzantine && index >= config.nodes - (config.nodes - 1) / 3;
            nodes.push(SimNode {
                byzantine,
                peer: sim_peer(&genesis, index),
                dir: tempfile::tempdir()?,
                node: None,
                coinbase: node_key(index).address(),
                skew_ms,
                timer_generation: BTreeMap::new(),
                mining_generation: 0,
                best_seen_work: U256::zero(),
                unconfirmed: BTreeSet::new(),
                last_finalized: None,
                allowlist: None,
            });
        }
        let mut sim = Sim {
            groups: vec![0; config.nodes],
            config,
            genesis,
            rng,
            now_ms: 0,
            sequence: 0,
            queue: BTreeMap::new(),
            nodes,
            faults_on: true,
            mining: Mining::All,
            work: BTreeMap::new(),
            released_work: U256::zero(),
            roots: BTreeMap::new(),
            finals: BTreeMap::new(),
            violations: Vec::new(),
            digest: Sha256::new(),
            events: 0,
            range_requests: 0,
            schedule_changes: 0,
            late: None,
            equivocations: BTreeMap::new(),
            pairs: 0,
            halves_seen: BTreeMap::new(),
            reached: BTreeSet::new(),
            leaders: BTreeMap::new(),
            membership,
            removed: BTreeSet::new(),
            partition_final: None,
        };
        if sim.config.faults.late {
            sim.late = sim.nodes.len().checked_sub(1);
        }
        for index in 0..sim.nodes.len() {
            if sim.late != Some(index) {
                sim.boot(index);
            }
        }
        sim.schedule(0, SimEvent::SubmitTx);
        if sim.membership.is_some() {
            let at = 1_500 + u64::from(sim.rng.below(3_000));
            sim.schedule(at, SimEvent::Membership);
        }
        if sim.config.faults.partition {
            let at = 2_000 + u64::from(sim.rng.below(5_000));
            sim.schedule(at, SimEvent::Partition);
        }
        if sim.config.faults.crash {
            let at = 1_000 + u64::from(sim.rng.below(5_000));
            let node = sim.rng.below(sim.nodes.len() as u32) as usize;
            sim.schedule(at, SimEvent::Crash { node });
        }
        Ok(sim)
    }

    fn schedule(&mut self, delay_ms: u64, event: SimEvent) {
        self.sequence += 1;
        self.queue.insert((self.now_ms + delay_ms, self.sequence), event);
    }

    fn local_now(&self, node: usize) -> Timestamp {
        let genesis_ms = self.genesis.genesis_time.as_millis();
        let local = (genesis_ms + self.now_ms) as i64 + self.nodes[node].skew_ms;
        Timestamp::from_millis(local.max(0) as u64)
    }

    fn record(&mut self, parts: &[&[u8]]) {
        for part in parts {
            self.digest.update((part.len() as u64).to_le_bytes());
            self.digest.update(part);
        }
    }

    fn violation(&mut self, what: String) {
        if self.violations.len() < 20 {
            self.violations.push(format!("t={}ms: {what}", self.now_ms));
        }
    }

    /// Opens the node's store and starts its driver (first start and every restart).
    fn boot(&mut self, index: usize) {
        let store = match Store::open(self.nodes[index].dir.path(), &self.genesis) {
            Ok(store) => store,
            Err(error) => return self.violation(format!("node {index} cannot open its store: {error}")),
        };
        // A node's key: its coinbase (PoW) and its validator key (engines with validators).
        let key = node_key(index);
        let options =
            EngineOptions { coinbase: Some(self.nodes[index].coinbase), signer: Some(Signer::new(key.clone())) };
        let engine = match chorus_consensus::new_engine(&self.genesis, options) {
            Ok(engine) => engine,
            Err(error) => return self.violation(format!("node {index}: {error}")),
        };
        let mut node = Node::new(Driver::new(store, engine).with_node_key(key));
        let now = self.local_now(index);
        if let Err(error) = node.start(now) {
            self.violation(format!("node {index} failed to start: {error}"));
        }
        self.nodes[index].node = Some(node);
        self.nodes[index].mining_generation += 1;
        self.handle_effects(index);
        // Connections open both ways with every running node.
        for other in 0..self.nodes.len() {
            if other == index || self.nodes[other].node.is_none() {
                continue;
            }
            let (peer, other_peer) = (self.nodes[index].peer.clone(), self.nodes[other].peer.clone());
            let now = self.local_now(index);
            if let Some(node) = self.nodes[index].node.as_mut() {
                node.on_peer_connected(now, other_peer);
            }
            self.handle_effects(index);
            let now = self.local_now(other);
            if let Some(node) = self.nodes[other].node.as_mut() {
                node.on_peer_connected(now, peer);
            }
            self.handle_effects(other);
        }
    }

    /// Carries out what node `index` asked for.
    fn handle_effects(&mut self, index: usize) {
        let Some(node) = self.nodes[index].node.as_mut() else { return };
        for effect in node.take_effects() {
            match effect {
                Effect::Publish { topic, data } => {
                    let mut messages = vec![data];
                    if self.nodes[index].byzantine && self.faults_on {
                        messages = self.misbehave(index, topic, messages.remove(0));
                    }
                    for data in messages {
                        let data = Arc::new(data);
                        for to in 0..self.nodes.len() {
                            if to != index {
                                self.send_gossip(index, to, topic, &data);
                            }
                        }
                    }
                }
                Effect::Direct { peer, data } => match self.nodes.iter().position(|node| node.peer == peer) {
                    Some(to) if !self.lost(index, to) => {
                        let latency = self.latency();
                        self.schedule(latency, SimEvent::Direct { to, from: index, data });
                    }
                    Some(_) => {}
                    None => self.violation(format!("node {index} sent a direct message to unknown peer {peer}")),
                },
                Effect::Request { peer, request } => match self.nodes.iter().position(|node| node.peer == peer) {
                    Some(to) => self.send_request(index, to, request),
                    None => self.violation(format!("node {index} sent a request to unknown peer {peer}")),
                },
                Effect::SetTimer { timer, at } => {
                    let generation = {
                        let slot = self.nodes[index].timer_generation.entry(timer).or_insert(0);
                        *slot += 1;
                        *slot
                    };
                    let delay = at.as_millis().saturating_sub(self.local_now(index).as_millis());
                    self.schedule(delay, SimEvent::Timer { node: index, timer, generation });
                }
                Effect::AllowPeers(peers) => self.nodes[index].allowlist = Some(peers.into_iter().collect()),
                Effect::StartMining(template) => {
                    self.nodes[index].mining_generation += 1;
                    self.mine(index, &template);
                }
                Effect::StopMining => self.nodes[index].mining_generation += 1,
                Effect::Report { peer, penalty } => {
                    let blamed_byzantine = self.nodes.iter().any(|node| node.peer == peer && node.byzantine);
                    if !blamed_byzantine && !self.nodes[index].byzantine {
                        self.violation(format!(
                            "honest node {index} penalized {peer} ({}): {}",
                            penalty.misbehaviour, penalty.reason
                        ));
                    }
                }
            }
        }
    }

    /// A real nonce search; its length over the node's hash rate is when the block is found.
    fn mine(&mut self, index: usize, template: &Arc<Block>) {
        if !self.mining.allows(index) {
            return;
        }
        let Ok(mut grinder) = Grinder::new(&template.header) else {
            return self.violation(format!("node {index} mines a template without a PoW seal"));
        };
        let start = self.rng.next_u64();
        let (found, tried) = grinder.search(start, GRIND_TRIES_MAX, &|| false);
        let Some(nonce) = found else { return };
        let block = Arc::new(Block { header: with_nonce(&template.header, nonce), body: template.body.clone() });
        let parent_work = self.work.get(&block.header.parent).copied().unwrap_or_default();
        let target = match block.header.seal {
            Seal::Pow { target, .. } => target,
            _ => Hash::ZERO,
        };
        self.work.insert(block.hash(), parent_work.saturating_add(difficulty::work(&target)));
        let delay = tried * 1_000 / HASHES_PER_SECOND;
        let generation = self.nodes[index].mining_generation;
        self.schedule(delay, SimEvent::Mined { node: index, block, generation });
    }

    /// Whether a message from `from` to `to` is lost now (a partition, or random loss).
    fn lost(&mut self, from: usize, to: usize) -> bool {
        let refuses = |by: usize, peer: usize| {
            self.nodes[by].allowlist.as_ref().is_some_and(|allowed| !allowed.contains(&self.nodes[peer].peer))
        };
        if refuses(from, to) || refuses(to, from) {
            return true;
        }
        if self.faults_on && self.groups[from] != self.groups[to] {
            return true;
        }
        self.faults_on && self.config.faults.loss && self.rng.below(1_000) < LOSS_PERMILLE
    }

    fn latency(&mut self) -> u64 {
        LATENCY_MS_MIN + u64::from(self.rng.below((LATENCY_MS_MAX - LATENCY_MS_MIN + 1) as u32))
    }

    /// Gossip may be lost or, with loss on, arrive twice (the node must not care).
    fn send_gossip(&mut self, from: usize, to: usize, topic: Topic, data: &Arc<Vec<u8>>) {
        if self.lost(from, to) {
            return;
        }
        let lossy = self.faults_on && self.config.faults.loss;
        let copies = if lossy && self.rng.below(1_000) < DUPLICATE_PERMILLE { 2 } else { 1 };
        for _ in 0..copies {
            let latency = self.latency();
            self.schedule(latency, SimEvent::Gossip { to, from, topic, data: Arc::clone(data) });
        }
    }

    /// A request that is lost, or whose answer will be, fails at the requester after
    /// [`REQUEST_TIMEOUT_MS`], as a transport's timeout does.
    fn send_request(&mut self, from: usize, to: usize, request: SyncRequest) {
        if self.lost(from, to) {
            let answer = Err(RequestFailed::Timeout);
            return self.schedule(REQUEST_TIMEOUT_MS, SimEvent::Answer { to: from, from: to, request, answer });
        }
        let latency = self.latency();
        self.schedule(latency, SimEvent::Request { to, from, request });
    }

    fn send_answer(&mut self, from: usize, to: usize, request: SyncRequest, answer: SyncResponse) {
        if self.lost(from, to) {
            let answer = Err(RequestFailed::Timeout);
            return self.schedule(REQUEST_TIMEOUT_MS, SimEvent::Answer { to, from, request, answer });
        }
        let latency = self.latency();
        self.schedule(latency, SimEvent::Answer { to, from, request, answer: Ok(answer) });
    }

    /// What a byzantine node sends instead of `data` on `topic`: its own blocks sometimes with
    /// a sibling signed for the same slot; its votes sometimes withheld, sometimes with a
    /// conflicting vote for the same target slot.
    fn misbehave(&mut self, index: usize, topic: Topic, data: Vec<u8>) -> Vec<Vec<u8>> {
        let key = node_key(index);
        let chain_id = self.genesis.chain_id.clone();
        let roll = self.rng.below(10);
        match topic {
            Topic::Blocks => {
                let Ok(block) = codec::decode::<Block>(&data) else { return vec![data] };
                let Some(slot) = block.header.slot() else { return vec![data] };
                if block.header.proposer != key.address() || roll >= 5 {
                    return vec![data];
                }
                // Same slot, another state root: a second header signed for the slot.
                let mut header = block.header.clone();
                header.state_root = Hash::digest(header.state_root.as_bytes());
                let sibling = Block { header: header.sign(&chain_id, slot, &key), body: block.body.clone() };
                let second = codec::encode(&sibling);
                self.equivocation(key.address(), &data, &second);
                vec![data, second]
            }
            Topic::Consensus => {
                let Ok(EngineMessage::Vote(vote)) = codec::decode::<EngineMessage>(&data) else { return vec![data] };
                match roll {
                    0..=2 => Vec::new(),
                    3..=5 => {
                        let target = Checkpoint { hash: Hash::digest(vote.target.hash.as_bytes()), ..vote.target };
                        let conflicting = Vote::signed(&chain_id, &key, vote.source, target);
                        let second = codec::encode(&EngineMessage::Vote(conflicting));
                        self.equivocation(key.address(), &data, &second);
                        vec![data, second]
                    }
                    _ => vec![data],
                }
            }
            Topic::Transactions => vec![data],
        }
    }

    fn equivocation(&mut self, offender: Address, first: &[u8], second: &[u8]) {
        self.pairs += 1;
        self.equivocations.insert(Hash::digest(first), (offender, self.pairs, 0));
        self.equivocations.insert(Hash::digest(second), (offender, self.pairs, 1));
    }

    /// Notes an honest node receiving half of an equivocation.
    fn note_delivery(&mut self, to: usize, data: &[u8]) {
        if self.nodes[to].byzantine || self.equivocations.is_empty() {
            return;
        }
        let Some((offender, pair, half)) = self.equivocations.get(&Hash::digest(data)).copied() else { return };
        let seen = self.halves_seen.entry((pair, to)).or_insert(0);
        *seen |= 1 << half;
        if *seen == 0b11 {
            self.reached.insert(offender);
        }
    }

    /// Runs the whole seed and reports.
    pub fn run(mut self) -> SimReport {
        let mut fault_steps = 0;
        while fault_steps < self.config.steps && self.violations.is_empty() {
            if !self.step() {
                break;
            }
            fault_steps += 1;
        }
        self.stop_faults();
        let stopped = self.now_ms;
        let quiet_until = self.now_ms + QUIET_MINING_MS;
        let mut leader_agreed = self.agreed_leader().is_some();
        while self.now_ms < quiet_until && self.violations.is_empty() && self.step() {
            if !leader_agreed && self.config.engine == "raft" {
                leader_agreed = self.agreed_leader().is_some();
                if !leader_agreed && self.now_ms > stopped + RAFT_LEADER_ELECTED_MS {
                    let views: Vec<String> =
                        (0..self.nodes.len()).map(|index| format!("node {index}{}", self.raft_view(index))).collect();
                    self.violation(format!(
                        "no leader named by every member {RAFT_LEADER_ELECTED_MS} ms after the faults stopped: {}",
                        views.join(", ")
                    ));
                }
            }
        }
        if self.config.engine == "pow" {
            self.mining = Mining::Sole(0);
            for node in self.nodes.iter_mut().skip(1) {
                node.mining_generation += 1;
            }
            let sole_until = self.now_ms + SOLE_MINER_MS_MAX;
            while self.mining != Mining::Off && self.now_ms < sole_until && self.violations.is_empty() && self.step() {}
            if self.mining != Mining::Off {
                self.violation(format!(
                    "node 0, mining alone, found no block ahead of every other in {SOLE_MINER_MS_MAX} ms"
                ));
            }
            let settle_until = self.now_ms + SETTLE_MS;
            while self.now_ms < settle_until && self.violations.is_empty() && self.step() {}
            self.final_checks();
        } else {
            self.finality_checks();
        }
        let head_height = self.highest_head();
        let final_height = self.finals.keys().next_back().map_or(0, |height| height.get());
        SimReport {
            seed: self.config.seed,
            violations: self.violations,
            digest: Hash(self.digest.finalize().into()),
            events: self.events,
            head_height,
            final_height,
            equivocators: self.reached.len(),
            range_requests: self.range_requests,
            schedule_changes: self.schedule_changes,
            membership_changes: self.membership.as_ref().map_or(0, |plan| plan.next),
            membership_refusals: self.membership.map(|plan| plan.refusals).unwrap_or_default(),
        }
    }

    fn stop_faults(&mut self) {
        self.faults_on = false;
        self.late = None;
        self.groups.iter_mut().for_each(|group| *group = 0);
        self.partition_final = None;
        if matches!(self.genesis.engine_at(Height::GENESIS), EngineConfig::Pos(_)) {
            let bound = SLOT_SKEW_MS_MAX as i64;
            self.nodes.iter_mut().for_each(|node| node.skew_ms = node.skew_ms.clamp(-bound, bound));
        }
        for index in 0..self.nodes.len() {
            if self.nodes[index].node.is_none() {
                self.boot(index);
            }
        }
        // Drop scheduled faults.
        self.queue.retain(|_, event| !matches!(event, SimEvent::Crash { .. } | SimEvent::Partition | SimEvent::Heal));
    }

    /// Processes the next event; false when none is left.
    fn step(&mut self) -> bool {
        let Some(((time, _), event)) = self.queue.pop_first() else { return false };
        self.now_ms = time;
        self.events += 1;
        let time_bytes = time.to_le_bytes();
        match event {
            SimEvent::Direct { to, from, data } => {
                self.record(&[b"direct", &time_bytes, &[to as u8, from as u8], &data]);
                let now = self.local_now(to);
                let from_peer = self.nodes[from].peer.clone();
                let Some(node) = self.nodes[to].node.as_mut() else { return true };
                if let Err(error) = node.on_direct(now, &from_peer, &data) {
                    self.violation(format!("node {to} failed on a direct message from node {from}: {error}"));
                }
                self.handle_effects(to);
                self.check_node(to);
            }
            SimEvent::Gossip { to, from, topic, data } => {
                if self.nodes[to].node.is_none() {
                    return true;
                }
                self.record(&[b"gossip", &time_bytes, &[to as u8, from as u8], topic.as_str().as_bytes(), &data]);
                self.note_delivery(to, &data);
                if topic == Topic::Blocks
                    && let Ok(block) = codec::decode::<Block>(&data)
                {
                    self.nodes[to].unconfirmed.insert(block.hash());
                }
                let now = self.local_now(to);
                let from_peer = self.nodes[from].peer.clone();
                let Some(node) = self.nodes[to].node.as_mut() else { return true };
                match node.on_gossip(now, &from_peer, topic, &data) {
                    Ok(Verdict::Accept | Verdict::Ignore) => {}
                    // A byzantine sender's equivocations are rightly refused; an honest one's never.
                    Ok(Verdict::Reject(_)) if self.nodes[from].byzantine || self.nodes[to].byzantine => {}
                    Ok(Verdict::Reject(misbehaviour)) => {
                        self.violation(format!("honest node {to} rejected gossip from node {from}: {misbehaviour}"));
                    }
                    Err(error) => self.violation(format!("node {to} failed on gossip from node {from}: {error}")),
                }
                self.handle_effects(to);
                self.check_node(to);
            }
            SimEvent::Request { to, from, request } => {
                let Some(served) = self.nodes[to].node.as_ref().map(|node| node.serve(&request)) else {
                    // The peer is down: the requester's transport times out.
                    let answer = Err(RequestFailed::Timeout);
                    self.schedule(REQUEST_TIMEOUT_MS, SimEvent::Answer { to: from, from: to, request, answer });
                    return true;
                };
                self.record(&[b"request", &time_bytes, &[to as u8, from as u8], request.kind().as_bytes()]);
                if matches!(request, SyncRequest::Blocks { .. }) {
                    self.range_requests += 1;
                }
                match served {
                    Ok(response) => self.send_answer(to, from, request, response),
                    Err(error) => self.violation(format!("node {to} cannot serve {}: {error}", request.kind())),
                }
            }
            SimEvent::Answer { to, from, request, answer } => {
                if self.nodes[to].node.is_none() {
                    return true;
                }
                let summary: &[u8] = match &answer {
                    Ok(SyncResponse::Blocks(blocks)) => {
                        for block in blocks {
                            self.nodes[to].unconfirmed.insert(block.hash());
                        }
                        b"blocks"
                    }
                    Ok(SyncResponse::Block(Some(block))) => {
                        self.nodes[to].unconfirmed.insert(block.hash());
                        b"block"
                    }
                    Ok(_) => b"other",
                    Err(_) => b"failed",
                };
                self.record(&[b"answer", &time_bytes, &[to as u8, from as u8], request.kind().as_bytes(), summary]);
                let now = self.local_now(to);
                let from_peer = self.nodes[from].peer.clone();
                let Some(node) = self.nodes[to].node.as_mut() else { return true };
                if let Err(error) = node.on_answer(now, &from_peer, &request, answer) {
                    self.violation(format!("node {to} failed on an answer from node {from}: {error}"));
                }
                self.handle_effects(to);
                self.check_node(to);
            }
            SimEvent::Timer { node, timer, generation } => {
                if self.nodes[node].timer_generation.get(&timer) != Some(&generation) {
                    return true;
                }
                let now = self.local_now(node);
                if self.nodes[node].node.is_none() {
                    return true;
                }
                self.record(&[b"timer", &time_bytes, &[node as u8], format!("{timer:?}").as_bytes()]);
                let Some(running) = self.nodes[node].node.as_mut() else { return true };
                if let Err(error) = running.on_timer(now, timer) {
                    self.violation(format!("node {node} failed on timer {timer:?}: {error}"));
                }
                self.handle_effects(node);
                self.check_node(node);
            }
            SimEvent::Mined { node, block, generation } => {
                if generation != self.nodes[node].mining_generation || !self.mining.allows(node) {
                    return true;
                }
                let work = self.work.get(&block.hash()).copied().unwrap_or_default();
                self.mining = self.mining.after_release(node, work, self.released_work);
                self.released_work = self.released_work.max(work);
                let now = self.local_now(node);
                if self.nodes[node].node.is_none() {
                    return true;
                }
                self.record(&[b"mined", &time_bytes, &[node as u8], block.hash().as_bytes()]);
                self.nodes[node].unconfirmed.insert(block.hash());
                let Some(running) = self.nodes[node].node.as_mut() else { return true };
                if let Err(error) = running.on_mined(now, block) {
                    self.violation(format!("node {node} failed on its mined block: {error}"));
                }
                self.handle_effects(node);
                self.check_node(node);
            }
            SimEvent::SubmitTx => {
                self.submit_tx(&time_bytes);
                let delay = 1 + u64::from(self.rng.below(TX_INTERVAL_MS_MAX as u32));
                self.schedule(delay, SimEvent::SubmitTx);
            }
            SimEvent::Crash { node } => {
                self.record(&[b"crash", &time_bytes, &[node as u8]]);
                self.nodes[node].node = None;
                self.nodes[node].mining_generation += 1;
                // The others see the connection close.
                let peer = self.nodes[node].peer.clone();
                for other in 0..self.nodes.len() {
                    let now = self.local_now(other);
                    if let Some(running) = self.nodes[other].node.as_mut() {
                        running.on_peer_gone(now, &peer);
                        self.handle_effects(other);
                    }
                }
                let down = 1_000 + u64::from(self.rng.below(5_000));
                self.schedule(down, SimEvent::Restart { node });
            }
            SimEvent::Restart { node } => {
                self.record(&[b"restart", &time_bytes, &[node as u8]]);
                if self.nodes[node].node.is_none() && self.late != Some(node) {
                    self.boot(node);
                }
                if self.faults_on {
                    let at = 2_000 + u64::from(self.rng.below(8_000));
                    let next = self.rng.below(self.nodes.len() as u32) as usize;
                    self.schedule(at, SimEvent::Crash { node: next });
                }
            }
            SimEvent::Partition => {
                for group in self.groups.iter_mut() {
                    *group = (self.rng.below(2)) as u8;
                }
                let groups = self.groups.clone();
                self.record(&[b"partition", &time_bytes, &groups]);
                self.partition_final = Some(self.finals.keys().next_back().map_or(0, |height| height.get()));
                let length = 2_000 + u64::from(self.rng.below(8_000));
                self.schedule(length, SimEvent::Heal);
            }
            SimEvent::Heal => {
                self.record(&[b"heal", &time_bytes]);
                self.groups.iter_mut().for_each(|group| *group = 0);
                self.partition_final = None;
                if self.faults_on {
                    let at = 2_000 + u64::from(self.rng.below(8_000));
                    self.schedule(at, SimEvent::Partition);
                }
            }
            SimEvent::Membership => {
                self.record(&[b"membership", &time_bytes]);
                if let Some(delay) = self.membership_step() {
                    self.schedule(delay, SimEvent::Membership);
                }
            }
        }
        self.join_late_node(&time_bytes);
        true
    }

    /// The highest head among the running nodes.
    fn highest_head(&self) -> u64 {
        self.nodes
            .iter()
            .filter_map(|node| node.node.as_ref())
            .map(|node| node.driver().store().head().height.get())
            .max()
            .unwrap_or(0)
    }

    /// Starts the late node once some node's chain is [`LATE_JOIN_HEIGHT`] high.
    fn join_late_node(&mut self, time_bytes: &[u8]) {
        let Some(late) = self.late else { return };
        if self.highest_head() >= LATE_JOIN_HEIGHT {
            self.late = None;
            self.record(&[b"late", time_bytes, &[late as u8]]);
            self.boot(late);
        }
    }

    /// A transaction from a random funded account through a random running node: mostly
    /// transfers; also stakes (account 0 above the PoS minimum while it is below, joining the
    /// set without a node: its slots are missed), unstakes and delegate votes.
    fn submit_tx(&mut self, time_bytes: &[u8]) {
        let node = self.rng.below(self.nodes.len() as u32) as usize;
        let from = self.rng.below(FUNDED_ACCOUNTS);
        let to = self.rng.below(FUNDED_ACCOUNTS + 2);
        let amount = 1 + u128::from(self.rng.below(1_000));
        let choice = self.rng.below(20);
        let dpos = matches!(self.genesis.engine_at(Height::GENESIS), EngineConfig::Dpos(_));
        // DPoS approvals go to one or two nodes' delegates (and account 0's own, when it votes),
        // often enough that the ranking, tied at genesis, keeps changing the schedule.
        let votes = dpos && matches!(choice, 3 | 5 | 6);
        let approved: Option<Vec<Address>> = votes.then(|| {
            let count = 1 + self.rng.below(2);
            (0..count).map(|_| node_key(self.rng.below(self.nodes.len() as u32) as usize).address()).collect()
        });
        let now = self.local_now(node);
        let Some(running) = self.nodes[node].node.as_mut() else { return };
        let key = testing::key(from);
        let account = running.driver().store().account(&key.address()).ok();
        // Account 0 joins the set once, with a fifth of the total stake at most: a validator
        // without a node that held a third would stall finality for good, as it should.
        let joins = from == 0 && account.as_ref().is_some_and(|account| account.stake.get() < POS_STAKE / 2);
        let kind = match choice {
            0 if joins => TxKind::Stake { amount: Amount::new(POS_STAKE * 6 / 10) },
            0 | 1 => TxKind::Stake { amount: Amount::new(amount) },
            2 => TxKind::Unstake { amount: Amount::new(amount) },
            3 | 5 | 6 if let Some(mut delegates) = approved => {
                if from == 0 {
                    delegates.push(key.address());
                }
                delegates.sort_unstable();
                delegates.dedup();
                TxKind::Vote { delegates }
            }
            3 => TxKind::Vote { delegates: Vec::new() },
            4 if dpos && from == 0 => TxKind::RegisterDelegate,
            _ => TxKind::Transfer { to: testing::key(to).address(), amount: Amount::new(amount) },
        };
        let next = account.map(|account| account.nonce).unwrap_or(0);
        let nonce = next + u64::from(self.rng.below(3));
        let tx = testing::signed(&self.genesis, &key, nonce, kind);
        let outcome = match running.submit_tx(now, tx) {
            Ok(Ok(hash)) => hash.0.to_vec(),
            Ok(Err(error)) => error.to_string().into_bytes(),
            Err(error) => {
                self.violation(format!("node {node} failed on a submitted transaction: {error}"));
                error.to_string().into_bytes()
            }
        };
        self.record(&[b"tx", time_bytes, &[node as u8], &outcome]);
        self.handle_effects(node);
    }

    /// Engines with stake: no honest validator is ever slashed, and every block any node holds
    /// final at or below node `index`'s own final height is on `index`'s chain (so final blocks
    /// agree at every height, not only where two nodes' final pointers landed).
    fn stake_violation(&self, index: usize) -> Option<String> {
        if !has_stake(&self.genesis) {
            return None;
        }
        let store = self.nodes[index].node.as_ref()?.driver().store();
        let view = store.view();
        for (other, sim_node) in self.nodes.iter().enumerate() {
            if !sim_node.byzantine && state::is_slashed(&view, &sim_node.coinbase).unwrap_or(false) {
                return Some(format!("node {index}: honest validator {other} ({}) is slashed", sim_node.coinbase));
            }
        }
        let own_final = store.finalized().map_or(Height::GENESIS, |(height, _)| height);
        if let Some((height, hash)) = self.finals.range(..=own_final).next_back()
            && store.canonical_hash(*height).ok().flatten() != Some(*hash)
        {
            return Some(format!(
                "node {index}, final up to {own_final}, does not hold the final block {hash} at {height}"
            ));
        }
        None
    }

    /// The invariants that hold after every event on `index`.
    /// The operator's next move: check whether the step under way is applied (in the asked
    /// node's view, or any running node's if it is down), else ask for it. The delay until the
    /// next move; `None` once every step is applied.
    fn membership_step(&mut self) -> Option<u64> {
        let plan = self.membership.as_ref()?;
        let step = plan.steps.get(plan.next)?.clone();
        let running: Vec<usize> = (0..self.nodes.len()).filter(|index| self.nodes[*index].node.is_some()).collect();
        let ask = if running.contains(&plan.ask) {
            plan.ask
        } else {
            *running.get(self.rng.below(running.len().max(1) as u32) as usize)?
        };
        let now = self.local_now(ask);
        let view = self.nodes[ask]
            .node
            .as_ref()
            .and_then(|node| node.driver().active_set(now).ok().flatten())
            .and_then(|set| set.raft);
        let index_of = |id: u64| usize::try_from(id).ok().and_then(|id| id.checked_sub(1));
        if let Some(view) = &view {
            let member = |id: u64| view.members.iter().find(|member| member.member.id == id);
            let applied = match &step {
                MembershipRequest::AddLearner { address, .. } => {
                    view.members.iter().any(|member| member.member.address == *address)
                }
                MembershipRequest::Promote { id } => member(*id).is_some_and(|member| member.voter),
                MembershipRequest::Remove { id } => member(*id).is_none(),
            };
            if applied && view.pending.is_none() {
                if let MembershipRequest::Remove { id } = step
                    && let Some(index) = index_of(id)
                {
                    self.removed.insert(index);
                }
                let plan = self.membership.as_mut()?;
                plan.next += 1;
                return (plan.next < plan.steps.len()).then_some(100);
            }
        }
        let node = self.nodes[ask].node.as_mut()?;
        let answer = node.change_membership(now, step.clone());
        self.handle_effects(ask);
        let plan = self.membership.as_mut()?;
        plan.ask = ask;
        match answer {
            Err(error) => {
                self.violation(format!("node {ask} failed on a membership request: {error}"));
                None
            }
            Ok(Ok(_)) => {
                plan.proposals += 1;
                Some(500)
            }
            Ok(Err(refusal)) => {
                *plan.refusals.entry(refusal.code()).or_default() += 1;
                match refusal {
                    MembershipRefusal::NotLeader { id, .. } | MembershipRefusal::LeaderLeaving { to: id } => {
                        if let Some(index) = index_of(id) {
                            plan.ask = index;
                        }
                        Some(100)
                    }
                    MembershipRefusal::NoLeader
                    | MembershipRefusal::NotAMember
                    | MembershipRefusal::ChangePending { .. }
                    | MembershipRefusal::NotCaughtUp { .. }
                    | MembershipRefusal::BelowQuorum { .. }
                    | MembershipRefusal::LeaderAlone
                    | MembershipRefusal::Dropped { .. } => {
                        // A node that knows no leader (or is none) may be cut off: ask another.
                        if matches!(refusal, MembershipRefusal::NotAMember | MembershipRefusal::NoLeader) {
                            plan.ask = self.rng.below(self.nodes.len() as u32) as usize;
                        }
                        Some(500)
                    }
                    // Applied through an earlier proposal that a view had not shown yet.
                    MembershipRefusal::AddressKnown { .. }
                    | MembershipRefusal::AlreadyVoter { .. }
                    | MembershipRefusal::UnknownMember { .. } => Some(100),
                    other => {
                        self.violation(format!("node {ask} refused {step:?}: {other}"));
                        None
                    }
                }
            }
        }
    }

    /// Raft: the leader every running member (removed ones aside) names, if they agree on one
    /// that is itself running.
    fn agreed_leader(&self) -> Option<u64> {
        let mut named = BTreeSet::new();
        for index in (0..self.nodes.len()).filter(|index| !self.removed.contains(index)) {
            let node = self.nodes[index].node.as_ref()?;
            let view = node.driver().active_set(self.local_now(index)).ok().flatten()?.raft?;
            if view.me.is_none() {
                continue;
            }
            named.insert(view.leader?);
        }
        let leader = named.pop_first().filter(|_| named.is_empty())?;
        let index = usize::try_from(leader).ok()?.checked_sub(1)?;
        self.nodes.get(index)?.node.as_ref().map(|_| leader)
    }

    /// Raft: node `index`'s view (member id, term, leader, commit, voters and learners), for
    /// violation messages; empty for other engines or a node that is down.
    fn raft_view(&self, index: usize) -> String {
        let Some(node) = self.nodes[index].node.as_ref() else { return ", down".to_owned() };
        let Some(view) = node.driver().active_set(self.local_now(index)).ok().flatten().and_then(|set| set.raft) else {
            return String::new();
        };
        let members: Vec<(u64, bool)> = view.members.iter().map(|member| (member.member.id, member.voter)).collect();
        format!(
            ", raft member {:?} term {} leader {:?} commit {} members {members:?} pending {:?}",
            view.me,
            view.term,
            view.leader,
            view.commit,
            view.pending.map(|(entry, index)| (entry.kind, entry.member.id, index))
        )
    }

    fn check_node(&mut self, index: usize) {
        if let Some(what) = self.stake_violation(index) {
            return self.violation(what);
        }
        let Some(node) = self.nodes[index].node.as_ref() else { return };
        let driver = node.driver();
        let store = driver.store();
        let head = store.head().clone();
        let head_hash = store.head_hash();
        let root = match store.state_root_at(head.height) {
            Ok(root) => root,
            Err(error) => return self.violation(format!("node {index}: state root unreadable: {error}")),
        };
        if root != head.state_root {
            return self.violation(format!(
                "node {index}: head {head_hash} has state root {root}, header says {}",
                head.state_root
            ));
        }
        match self.roots.get(&head_hash) {
            Some(first) if *first != root => {
                return self
                    .violation(format!("node {index}: block {head_hash} gave root {root}, another node got {first}"));
            }
            Some(_) => {}
            None => {
                self.roots.insert(head_hash, root);
            }
        }

        // Most-work rule: the head has at least the work of every block the node stored.
        let confirmed: Vec<Hash> = self.nodes[index]
            .unconfirmed
            .iter()
            .filter(|hash| store.contains_block(hash).unwrap_or(false))
            .copied()
            .collect();
        let head_work = if head.height == Height::GENESIS {
            U256::zero()
        } else {
            self.work.get(&head_hash).copied().unwrap_or_default()
        };
        let engine_finalized = driver.finalized();
        let raft = driver.engine().counters().raft;
        let genesis_hash = store.genesis_hash();
        let node = &mut self.nodes[index];
        for hash in confirmed {
            node.unconfirmed.remove(&hash);
            if let Some(work) = self.work.get(&hash) {
                node.best_seen_work = node.best_seen_work.max(*work);
            }
        }
        if head_work < node.best_seen_work {
            let best = node.best_seen_work;
            return self.violation(format!(
                "node {index}: head {head_hash} has work {head_work}, it stored a block with work {best}"
            ));
        }

        // Raft: one leader per term; a block joins a member's chain only once committed, so the
        // head is the final block.
        if let Some(raft) = raft {
            if raft.is_leader {
                match self.leaders.get(&raft.term) {
                    Some(other) if *other != index => {
                        return self.violation(format!("nodes {other} and {index} both led term {}", raft.term));
                    }
                    Some(_) => {}
                    None => {
                        self.leaders.insert(raft.term, index);
                    }
                }
            }
            let finalized = engine_finalized.unwrap_or((Height::GENESIS, genesis_hash));
            if finalized != (head.height, head_hash) {
                return self.violation(format!(
                    "node {index}: Raft head {head_hash} at {} is not its final block {} at {}",
                    head.height, finalized.1, finalized.0
                ));
            }
            // A minority (at most half of the nodes, so never a majority of the voters, who are
            // among them) commits nothing while cut off.
            let group = self.groups[index];
            let group_size = self.groups.iter().filter(|other| **other == group).count();
            if let Some(before) = self.partition_final
                && group_size <= self.nodes.len() / 2
                && finalized.0.get() > before.saturating_add(1)
            {
                return self.violation(format!(
                    "node {index}, cut off with {group_size} of {} nodes, finalized height {} (the highest final \
                     when the partition began was {before})",
                    self.nodes.len(),
                    finalized.0
                ));
            }
        }

        // Finality: agreed across nodes, never reverted.
        let Some((height, hash)) = engine_finalized else { return };
        if let Some((last_height, _)) = self.nodes[index].last_finalized
            && height < last_height
        {
            return self.violation(format!("node {index}: finalized height went back from {last_height} to {height}"));
        }
        self.nodes[index].last_finalized = Some((height, hash));
        match self.finals.get(&height) {
            Some(other) if *other != hash => {
                self.violation(format!("node {index} finalized {hash} at {height}, another node {other}"));
            }
            Some(_) => {}
            None => {
                self.finals.insert(height, hash);
            }
        }
    }

    fn final_checks(&mut self) {
        let heads: Vec<Option<Hash>> =
            self.nodes.iter().map(|node| node.node.as_ref().map(|node| node.driver().store().head_hash())).collect();
        let distinct: BTreeSet<_> = heads.iter().flatten().collect();
        if distinct.len() != 1 || heads.iter().any(Option::is_none) {
            let listed: Vec<String> = heads
                .iter()
                .enumerate()
                .map(|(index, head)| match (head, &self.nodes[index].node) {
                    (Some(hash), Some(node)) => {
                        format!("node {index}: {} #{}", hash, node.driver().store().head().height)
                    }
                    _ => format!("node {index}: down"),
                })
                .collect();
            self.violation(format!("no convergence {SETTLE_MS} ms after the last block: {}", listed.join(", ")));
        }
        for (index, head) in heads.iter().enumerate() {
            if let Some(head) = head {
                self.record(&[b"head", &[index as u8], head.as_bytes()]);
            }
            if let Err(error) = self.replay_matches(index) {
                self.violation(format!("node {index}: {error}"));
            }
        }
    }

    /// The ending of an engine with finality, which never stops producing blocks: with every
    /// node up and no faults, finality advances past where it stood within
    /// `FINALITY_RESUMES_MS`, and all nodes then agree on one final block.
    fn finality_checks(&mut self) {
        let stood = self.finals.keys().next_back().copied().unwrap_or(Height::GENESIS);
        let deadline = self.now_ms + FINALITY_RESUMES_MS;
        // A node removed from the Raft members no longer follows the chain.
        let lowest_final = |sim: &Sim| {
            (0..sim.nodes.len())
                .filter(|index| !sim.removed.contains(index))
                .map(|index| {
                    let node = sim.nodes[index].node.as_ref();
                    node.and_then(|node| node.driver().finalized()).map_or(0, |(h, _)| h.get())
                })
                .min()
                .unwrap_or(0)
        };
        let plan_done = |sim: &Sim| sim.membership.as_ref().is_none_or(|plan| plan.next >= plan.steps.len());
        while self.now_ms < deadline
            && self.violations.is_empty()
            && (lowest_final(self) <= stood.get() || !plan_done(self))
            && self.step()
        {}
        if let Some(plan) = self.membership.as_ref().filter(|plan| plan.next < plan.steps.len()) {
            let views: Vec<String> =
                (0..self.nodes.len()).map(|index| format!("node {index}{}", self.raft_view(index))).collect();
            let what = format!(
                "the membership change {:?} was not applied within {FINALITY_RESUMES_MS} ms after the faults stopped \
                 ({} proposals, refusals {:?}): {}",
                plan.steps[plan.next],
                plan.proposals,
                plan.refusals,
                views.join(", ")
            );
            return self.violation(what);
        }
        let lowest = lowest_final(self);
        if lowest <= stood.get() {
            // Which heads each node stores, to tell a node that never got a branch from one that
            // got it and did not take it.
            let heads: Vec<Option<Hash>> = (0..self.nodes.len())
                .map(|index| self.nodes[index].node.as_ref().map(|node| node.driver().store().head_hash()))
                .collect();
            let listed: Vec<String> = (0..self.nodes.len())
                .map(|index| {
                    let driver = self.nodes[index].node.as_ref().map(|node| node.driver());
                    let final_height = driver.and_then(|driver| driver.finalized()).map_or(0, |(h, _)| h.get());
                    let head = driver.map_or(0, |driver| driver.store().head().height.get());
                    let stored: Vec<usize> = (0..heads.len())
                        .filter(|other| {
                            heads[*other]
                                .zip(driver)
                                .is_some_and(|(hash, driver)| driver.store().contains_block(&hash).unwrap_or(false))
                        })
                        .collect();
                    let raft = self.raft_view(index);
                    format!("node {index}: final {final_height}, head {head}, stores the heads of {stored:?}{raft}")
                })
                .collect();
            return self.violation(format!(
                "finality did not advance past height {stood} within {FINALITY_RESUMES_MS} ms after the faults stopped: {}",
                listed.join(", ")
            ));
        }
        let height = Height::new(lowest);
        let finals: BTreeSet<Option<Hash>> = (0..self.nodes.len())
            .filter(|index| !self.removed.contains(index))
            .map(|index| {
                let node = self.nodes[index].node.as_ref();
                node.and_then(|node| node.driver().store().canonical_hash(height).ok().flatten())
            })
            .collect();
        if finals.len() != 1 {
            self.violation(format!("nodes disagree on the block at final height {height}: {finals:?}"));
        }
        // Every equivocation some honest node received whole got its author slashed, on every
        // node's chain.
        for offender in self.reached.clone() {
            for index in 0..self.nodes.len() {
                let Some(node) = self.nodes[index].node.as_ref() else { continue };
                if !state::is_slashed(&node.driver().store().view(), &offender).unwrap_or(false) {
                    self.violation(format!(
                        "node {index}: {offender} equivocated to honest nodes but is not slashed by the end"
                    ));
                }
            }
        }
        // Every node switched schedules at the same blocks, up to the height all hold final.
        let mut switches: Option<Vec<(u64, Height)>> = None;
        for index in 0..self.nodes.len() {
            if let Some(hash) = finals.iter().next().copied().flatten() {
                self.record(&[b"final", &[index as u8], hash.as_bytes()]);
            }
            match self.replay_matches(index) {
                Ok(node_switches) => {
                    let node_switches: Vec<(u64, Height)> =
                        node_switches.into_iter().filter(|(_, at)| *at <= height).collect();
                    match &switches {
                        Some(first) if *first != node_switches => {
                            return self.violation(format!(
                                "node {index} switched schedules (version, height) at {node_switches:?}, another node at {first:?}"
                            ));
                        }
                        Some(_) => {}
                        None => switches = Some(node_switches),
                    }
                }
                Err(error) => self.violation(format!("node {index}: {error}")),
            }
        }
        let switches = switches.unwrap_or_default();
        for (version, at) in &switches {
            self.record(&[b"schedule", &version.to_be_bytes(), &at.get().to_be_bytes()]);
        }
        self.schedule_changes = switches.len();
    }

    /// Replays the node's chain from genesis in memory and compares every account. Returns
    /// where DPoS schedules took effect on it: (version, first height under it).
    fn replay_matches(&self, index: usize) -> Result<Vec<(u64, Height)>, ReplayError> {
        let Some(node) = self.nodes[index].node.as_ref() else { return Ok(Vec::new()) };
        let store = node.driver().store();
        let (mut memory, genesis_block) = MemoryState::from_genesis(&self.genesis)?;
        let mut parent = genesis_block.header;
        let mut switches = Vec::new();
        for height in 1..=store.head().height.get() {
            let height = Height::new(height);
            let block = store.canonical_block(height)?.ok_or(ReplayError::Missing { height })?;
            let outcome = state::apply_block(&memory, &self.genesis, &parent, &block)
                .map_err(|error| ReplayError::Apply { height, error })?;
            memory.commit_outcome(&outcome);
            parent = block.header;
            if let Some(dpos) = state::read_dpos(&memory)?
                && dpos.active.version > switches.last().map_or(0, |(version, _)| *version)
            {
                switches.push((dpos.active.version, height));
            }
        }
        let mut addresses: Vec<Address> = (0..FUNDED_ACCOUNTS + 2).map(|index| testing::key(index).address()).collect();
        addresses.extend(self.nodes.iter().map(|node| node.coinbase));
        for address in addresses {
            let stored = store.account(&address)?;
            let replayed = state::read_account(&memory, &address)?;
            if stored != replayed {
                return Err(ReplayError::Differs { address, stored: Box::new(stored), replayed: Box::new(replayed) });
            }
        }
        Ok(switches)
    }
}

/// The key of simulated node `index`: its address, coinbase and validator key.
/// A node's peer id: its name, or under Raft (whose members are known by peer id) the peer id
/// of its key, as `chorusd` has.
fn sim_peer(genesis: &Genesis, index: usize) -> PeerId {
    match genesis.engine_at(Height::GENESIS) {
        EngineConfig::Raft(_) => PeerId::new(PeerIdText::of(&node_key(index).address()).as_str()),
        _ => PeerId::new(&format!("node-{index}")),
    }
}

fn node_key(index: usize) -> chorus_chain::crypto::SecretKey {
    testing::key(100 + index as u32)
}

/// Runs `seeds` on `threads` threads; reports come back in seed order.
pub fn run_seeds(base: &SimConfig, seeds: std::ops::Range<u64>, threads: usize) -> Result<Vec<SimReport>, SimError> {
    sim_genesis(&base.engine, base.nodes)?;
    let seeds: Vec<u64> = seeds.collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(BTreeMap::new());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&seed) = seeds.get(index) else { break };
                    let config = SimConfig { seed, ..base.clone() };
                    let report = match Sim::new(config) {
                        Ok(sim) => sim.run(),
                        Err(error) => {
                            let violations = vec![error.to_string()];
                            SimReport {
                                seed,
                                violations,
                                digest: Hash::ZERO,
                                events: 0,
                                head_height: 0,
                                final_height: 0,
                                equivocators: 0,
                                range_requests: 0,
                                schedule_changes: 0,
                                membership_changes: 0,
                                membership_refusals: BTreeMap::new(),
                            }
                        }
                    };
                    results.lock().expect("a worker panicked").insert(seed, report);
                }
            });
        }
    });
    Ok(results.into_inner().expect("a worker panicked").into_values().collect())
}

/// One digest over all seeds' digests, in seed order.
pub fn combined_digest(reports: &[SimReport]) -> Hash {
    let mut hasher = Sha256::new();
    for report in reports {
        hasher.update(report.seed.to_le_bytes());
        hasher.update(report.digest.as_bytes());
    }
    Hash(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sole_miner_stops_only_when_its_block_beats_every_released_one() {
        let (two, three) = (U256::from(2u64), U256::from(3u64));
        // A tie with a block already released (one still in flight) leaves the tips split.
        assert_eq!(Mining::Sole(0).after_release(0, two, two), Mining::Sole(0));
        // Less work than a released block: the others keep the better tip.
        assert_eq!(Mining::Sole(0).after_release(0, two, three), Mining::Sole(0));
        // More work than every released block: every node converges on it.
        assert_eq!(Mining::Sole(0).after_release(0, three, two), Mining::Off);
        // Another node's block, released before it was told to stop, ends nothing.
        assert_eq!(Mining::Sole(0).after_release(1, three, two), Mining::Sole(0));
        // Outside the sole-miner phase, releases change nothing.
        assert_eq!(Mining::All.after_release(0, three, two), Mining::All);
        assert_eq!(Mining::Off.after_release(0, three, two), Mining::Off);
    }
}

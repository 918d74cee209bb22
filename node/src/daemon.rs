//! The running node: the core's [`Node`] on one task, wired to the network service, real
//! timers, the miner threads and the RPC server.
//!
//! One task owns the [`Node`] (and through it the driver, the store, the engine and the
//! mempool). Every input (a peer's gossip or request, a timer, a mined block, an answer to our
//! sync request, an RPC call that submits or asks the node's status) is handled there in turn,
//! with the wall clock's time (the RPC's chain reads do not come here: `rpc::reads`); the
//! [`Effect`]s the node asks for are carried out after each input: gossip to publish, sync
//! requests to send (each awaited on its own task, its answer coming back as an input), timers,
//! the miner, reports. What maps onto which topic or request is the core's business
//! (`chorus_node_core::node`); this module only translates peer ids and carries bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chorus_chain::block::Block;
use chorus_chain::header::Seal;
use chorus_chain::limits;
use chorus_chain::primitives::{Hash, Height, Timestamp};
use chorus_chain::tx::{SignedTransaction, VerifiedTx};
use chorus_consensus::PeerId;
use chorus_consensus::pow::difficulty::U256;
use chorus_consensus::raft::membership::{ChangeProposed, MembershipRefusal, MembershipRequest};
use chorus_node_core::mempool::{self, MempoolError};
use chorus_node_core::sync::Progress;
use chorus_node_core::{Driver, DriverError, Effect, Express, Node, RequestFailed, Timer};
use chorus_p2p::{self as p2p, NetworkHandle, SyncRequest, SyncResponse, Verdict};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::clock::now;
use crate::miner::ThreadMiner;
use crate::tx_check::TxChecker;

/// Inputs from outside the network service's event stream.
#[derive(Debug)]
pub enum Input {
    /// The answer to a sync request this node sent, or why there is none.
    Answer { peer: p2p::PeerId, request: SyncRequest, answer: Result<SyncResponse, RequestFailed> },
    /// A call from the RPC server.
    Call(Call),
    /// Gossiped transactions checked off the core task ([`crate::tx_check`]).
    CheckedTxs(crate::tx_check::Checked),
}

/// What the RPC server asks the node. Each carries where to answer. Reads of the chain do not
/// come here: the server answers them from the store's snapshots ([`crate::rpc::reads`]).
#[derive(Debug)]
pub enum Call {
    /// A transaction the RPC server has verified.
    Submit(Box<VerifiedTx>, oneshot::Sender<Result<Hash, MempoolError>>),
    Status(oneshot::Sender<StatusInfo>),
    /// The engine's name and active set (`None`: open, PoW; or unreadable, which is logged).
    Validators(oneshot::Sender<(&'static str, Option<chorus_consensus::ActiveSet>)>),
    /// An operator's membership change (Raft): proposed, or refused with the reason.
    Membership(MembershipRequest, oneshot::Sender<Result<ChangeProposed, MembershipRefusal>>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadInfo {
    pub hash: Hash,
    pub height: Height,
    pub timestamp: Timestamp,
    pub state_root: Hash,
    pub chain_work: ChainWork,
}

/// The engine's weight of the chain up to a block (PoW: cumulative work, big-endian); `None`
/// for engines without one, or if it could not be read.
pub type ChainWork = Option<[u8; 32]>;

#[derive(Debug, Clone)]
pub struct StatusInfo {
    pub engine: &'static str,
    pub chain_id: chorus_chain::primitives::ChainId,
    pub min_tx_fee: chorus_chain::primitives::Amount,
    pub head: HeadInfo,
    pub finalized: Option<(Height, Hash)>,
    pub mempool_txs: usize,
    pub mempool_bytes: u64,
    /// Range-sync progress while the node is more than one range behind its best peer.
    pub sync: Option<Progress>,
    /// The slot under way (slot engines).
    pub slot: Option<u64>,
    /// Why the node stopped writing, once it has ([`Core::halt`]).
    pub halted: Option<String>,
}

/// The node's own metrics (`chorus_*`); the network's are registered by `chorus-p2p`.
#[derive(Debug)]
pub struct NodeMetrics {
    head_height: prometheus_client::metrics::gauge::Gauge,
    finalized_height: prometheus_client::metrics::gauge::Gauge,
    mempool_transactions: prometheus_client::metrics::gauge::Gauge,
    mempool_bytes: prometheus_client::metrics::gauge::Gauge,
    head_changes: prometheus_client::metrics::counter::Counter,
    blocks_imported: prometheus_client::metrics::counter::Counter,
    import_seconds: prometheus_client::metrics::histogram::Histogram,
    sync_target: prometheus_client::metrics::gauge::Gauge,
    finality_lag: prometheus_client::metrics::gauge::Gauge,
    slot: prometheus_client::metrics::gauge::Gauge,
    missed_slots: prometheus_client::metrics::gauge::Gauge,
    missed_by_producer: prometheus_client::metrics::family::Family<
        [(&'static str, String); 1],
        prometheus_client::metrics::gauge::Gauge,
    >,
    /// What `missed_by_producer` shows.
    missed_counted: BTreeMap<chorus_chain::Address, u64>,
    votes_received: prometheus_client::metrics::counter::Counter,
    /// What `votes_received` shows: the engine's count when last taken in.
    votes_counted: u64,
    pow_difficulty: prometheus_client::metrics::gauge::Gauge,
    pow_hashes: prometheus_client::metrics::counter::Counter,
    /// What `pow_hashes` shows: the miner's count when last taken in.
    hashes_counted: u64,
    raft_term: prometheus_client::metrics::gauge::Gauge,
    raft_leader: prometheus_client::metrics::gauge::Gauge,
    raft_leader_changes: prometheus_client::metrics::counter::Counter,
    raft_proposals_dropped: prometheus_client::metrics::counter::Counter,
    raft_commit_seconds: prometheus_client::metrics::histogram::Histogram,
    /// The engine's Raft counts the metrics above last took in.
    raft_seen: chorus_consensus::raft::RaftCounters,
    halted: prometheus_client::metrics::gauge::Gauge,
    gossip_txs_unchecked: prometheus_client::metrics::counter::Counter,
}

impl Default for NodeMetrics {
    fn default() -> Self {
        NodeMetrics {
            head_height: Default::default(),
            finalized_height: Default::default(),
            mempool_transactions: Default::default(),
            mempool_bytes: Default::default(),
            head_changes: Default::default(),
            blocks_imported: Default::default(),
            import_seconds: prometheus_client::metrics::histogram::Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.000_5, 2.0, 14),
            ),
            sync_target: Default::default(),
            finality_lag: Default::default(),
            slot: Default::default(),
            missed_slots: Default::default(),
            missed_by_producer: Default::default(),
            missed_counted: BTreeMap::new(),
            votes_received: Default::default(),
            votes_counted: 0,
            pow_difficulty: Default::default(),
            pow_hashes: Default::default(),
            hashes_counted: 0,
            raft_term: Default::default(),
            raft_leader: Default::default(),
            raft_leader_changes: Default::default(),
            raft_proposals_dropped: Default::default(),
            // 5 ms (a loopback round trip and a synced write) to about 40 s.
            raft_commit_seconds: prometheus_client::metrics::histogram::Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.005, 2.0, 14),
            ),
            raft_seen: Default::default(),
            halted: Default::default(),
            gossip_txs_unchecked: Default::default(),
        }
    }
}

impl NodeMetrics {
    pub fn register(registry: &mut prometheus_client::registry::Registry) -> NodeMetrics {
        let metrics = NodeMetrics::default();
        registry.register("head_height", "Height of the head block", metrics.head_height.clone());
        registry.register(
            "halted",
            "1 once the node stopped writing (a full disk or a store error; node_status says why), else 0",
            metrics.halted.clone(),
        );
        registry.register(
            "finalized_height",
            "Height of the last final block (0 without finality)",
            metrics.finalized_height.clone(),
        );
        registry.register("mempool_transactions", "Transactions in the mempool", metrics.mempool_transactions.clone());
        registry.register(
            "gossip_tx_messages_unchecked",
            "Gossip messages of transactions dropped unchecked: the queue for their signature checks was full",
            metrics.gossip_txs_unchecked.clone(),
        );
        registry.register(
            "mempool_bytes",
            "Encoded bytes of the mempool's transactions",
            metrics.mempool_bytes.clone(),
        );
        registry.register("head_changes", "Times the head moved (new blocks and reorgs)", metrics.head_changes.clone());
        registry.register(
            "blocks_imported",
            "Blocks verified and stored (from peers, range sync, Raft commits and this node's own)",
            metrics.blocks_imported.clone(),
        );
        registry.register("block_import_seconds", "Time to judge and store one block", metrics.import_seconds.clone());
        registry.register(
            "sync_target_height",
            "Best head height peers report while range-syncing (0 otherwise)",
            metrics.sync_target.clone(),
        );
        registry.register(
            "finality_lag_blocks",
            "Blocks between the head and the last final block (0 without finality)",
            metrics.finality_lag.clone(),
        );
        registry.register("slot", "The slot under way (slot engines; 0 otherwise)", metrics.slot.clone());
        registry.register(
            "missed_slots",
            "Slots that passed without a block on the head's chain since start (slot engines)",
            metrics.missed_slots.clone(),
        );
        registry.register(
            "producer_missed_slots",
            "Slots counted in missed_slots, by the producer the head's chain gave them to (slot engines)",
            metrics.missed_by_producer.clone(),
        );
        registry.register(
            "votes_received",
            "Consensus votes received from peers and accepted",
            metrics.votes_received.clone(),
        );
        registry.register(
            "pow_difficulty",
            "Expected hashes to mine a block at the head's target (pow; 0 otherwise)",
            metrics.pow_difficulty.clone(),
        );
        registry.register("pow_hashes", "Nonces this node's miner tried (pow)", metrics.pow_hashes.clone());
        registry.register(
            "raft_term",
            "The Raft term this member is in (raft; 0 otherwise)",
            metrics.raft_term.clone(),
        );
        registry.register(
            "raft_leader",
            "The member id of the Raft leader this member knows (raft; 0 when it knows none)",
            metrics.raft_leader.clone(),
        );
        registry.register(
            "raft_leader_changes",
            "Times the Raft leader this member knows changed to another member, since start",
            metrics.raft_leader_changes.clone(),
        );
        registry.register(
            "raft_proposals_dropped",
            "Blocks this Raft leader built that were dropped before commit (leadership moved, too much uncommitted)",
            metrics.raft_proposals_dropped.clone(),
        );
        registry.register(
            "raft_commit_seconds",
            "From this Raft leader proposing a block to applying it (committed by a majority)",
            metrics.raft_commit_seconds.clone(),
        );
        metrics
    }
}

impl NodeMetrics {
    /// Takes in the Raft engine's counts: gauges as they are, counters and commit latencies by
    /// what changed since the last call (each block committed since is observed at the mean of
    /// their latencies; a leader has one block in flight, so that is almost always one).
    fn record_raft(&mut self, raft: chorus_consensus::raft::RaftCounters) {
        let to_i64 = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        self.raft_term.set(to_i64(raft.term));
        self.raft_leader.set(to_i64(raft.leader));
        let seen = &self.raft_seen;
        self.raft_leader_changes.inc_by(raft.leader_changes.saturating_sub(seen.leader_changes));
        self.raft_proposals_dropped.inc_by(raft.proposals_dropped.saturating_sub(seen.proposals_dropped));
        let committed = raft.blocks_committed.saturating_sub(seen.blocks_committed);
        let latency_ms = raft.commit_latency_ms_total.saturating_sub(seen.commit_latency_ms_total);
        if let Some(mean_ms) = latency_ms.checked_div(committed) {
            for _ in 0..committed {
                self.raft_commit_seconds.observe(Duration::from_millis(mean_ms).as_secs_f64());
            }
        }
        self.raft_seen = raft;
    }
}

/// Moves `counter` on by what a running `total` gained since `counted`, its value last time.
fn count_up(counter: &prometheus_client::metrics::counter::Counter, counted: &mut u64, total: u64) {
    counter.inc_by(total.saturating_sub(*counted));
    *counted = total;
}

/// What woke the core's loop.
enum Wake {
    Event(p2p::Event),
    Input(Input),
    Mined(Arc<Block>),
    Timers,
    DiskCheck,
}

/// How often range-sync progress is logged.
const SYNC_LOG_INTERVAL_MS: u64 = 5_000;

pub struct Core {
    node: Node,
    net: NetworkHandle,
    timers: BTreeMap<Timer, Timestamp>,
    miner: Option<ThreadMiner>,
    inputs: mpsc::Sender<Input>,
    /// Checks gossiped transactions off this task.
    tx_checker: TxChecker,
    heads: broadcast::Sender<HeadInfo>,
    finals: broadcast::Sender<(Height, Hash)>,
    last_final: Option<(Height, Hash)>,
    last_head: Hash,
    /// Blocks the node had stored from peers and the miner at the last flush.
    imported: u64,
    metrics: NodeMetrics,
    /// When range-sync progress was last logged (ms).
    sync_logged: u64,
    /// Where the pending transactions are kept when the run ends.
    mempool_file: Option<PathBuf>,
    /// The directory whose filesystem's free space is watched ([`Core::watch_disk`]).
    data_dir: Option<PathBuf>,
    /// Why the node stopped writing; `None` while it runs.
    halted: Option<String>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("head", &self.node.driver().store().head_hash())
            .field("peers", &self.node.connected().len())
            .finish_non_exhaustive()
    }
}

/// How often a running node looks at its data directory's free space.
const DISK_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// Bytes an unprivileged writer may still use on `dir`'s filesystem.
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statvfs(dir)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Why `dir`'s filesystem has too little room for the node (`limits::DISK_FREE_BYTES_MIN`);
/// `None` when it has enough.
pub fn disk_low(dir: &Path) -> std::io::Result<Option<String>> {
    let free = free_bytes(dir)?;
    Ok((free < limits::DISK_FREE_BYTES_MIN).then(|| {
        format!(
            "the disk is almost full: {} MiB free on {}'s filesystem, at least {} MiB needed",
            free / (1024 * 1024),
            dir.display(),
            limits::DISK_FREE_BYTES_MIN / (1024 * 1024)
        )
    }))
}

/// The transactions a mempool file holds; None if there is no file.
fn read_mempool_file(path: &Path) -> anyhow::Result<Option<Vec<SignedTransaction>>> {
    let size_bytes = match std::fs::metadata(path) {
        Ok(metadata) => metadata.len(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    if size_bytes > limits::MEMPOOL_FILE_BYTES_MAX {
        anyhow::bail!("{size_bytes} bytes, limit {}", limits::MEMPOOL_FILE_BYTES_MAX);
    }
    Ok(Some(mempool::decode_file(&std::fs::read(path)?)?))
}

/// Writes a mempool file whole or not at all.
fn write_mempool_file(path: &Path, txs: &[SignedTransaction]) -> std::io::Result<()> {
    crate::files::replace(path, &mempool::encode_file(txs))
}

/// Hands an engine's message for one peer to the network service without waiting. One not
/// sent is the engine's to resend (it talks on timers); the service counts what became of each.
fn send_direct(net: &NetworkHandle, peer: &PeerId, data: Vec<u8>) {
    match p2p::parse_peer_id(peer.as_str()) {
        Ok(peer) => {
            if let Err(error) = net.send_direct(peer, data) {
                tracing::debug!(%peer, %error, "direct message not sent");
            }
        }
        Err(error) => tracing::warn!(%peer, %error, "a direct message for a peer id that does not parse"),
    }
}

/// The core's name for a libp2p peer.
fn core_peer(peer: &p2p::PeerId) -> PeerId {
    PeerId::new(&peer.to_string())
}

impl Core {
    pub fn new(
        driver: Driver,
        net: NetworkHandle,
        miner: Option<ThreadMiner>,
        inputs: mpsc::Sender<Input>,
        heads: broadcast::Sender<HeadInfo>,
        finals: broadcast::Sender<(Height, Hash)>,
        metrics: NodeMetrics,
    ) -> Core {
        // A restarted node reports its stored final block at once; only newer ones are notices.
        let last_final = driver.finalized();
        metrics
            .finalized_height
            .set(i64::try_from(last_final.map_or(0, |(height, _)| height.get())).unwrap_or(i64::MAX));
        let tx_checker = TxChecker::start(
            driver.store().genesis().chain_id.clone(),
            inputs.clone(),
            metrics.gossip_txs_unchecked.clone(),
        );
        let mut node = Node::new(driver);
        let lane = net.clone();
        node.set_express(Express::new(move |peer, data| send_direct(&lane, peer, data)));
        Core {
            node,
            net,
            timers: BTreeMap::new(),
            miner,
            inputs,
            tx_checker,
            heads,
            finals,
            last_final,
            last_head: Hash::ZERO,
            imported: 0,
            metrics,
            sync_logged: 0,
            mempool_file: None,
            data_dir: None,
            halted: None,
        }
    }

    /// Checks the free space of `dir`'s filesystem every [`DISK_CHECK_INTERVAL`] and halts
    /// the node below `limits::DISK_FREE_BYTES_MIN`, before a write can fail half done.
    pub fn watch_disk(mut self, dir: PathBuf) -> Core {
        self.data_dir = Some(dir);
        self
    }

    /// Stops writing for good, as Bitcoin Core stops on a low disk: no more imports, blocks,
    /// votes, transactions or sync, the miner stopped, and the reason in the log, in
    /// `node_status` and in `chorus_halted`. Reads go on being answered; what the store held is
    /// intact (a failed write changes nothing). A restart, once the cause is gone, continues.
    fn halt(&mut self, reason: String) {
        tracing::error!(
            %reason,
            "the node stopped importing, producing and accepting transactions; it still answers reads; restart it once the cause is gone"
        );
        if let Some(miner) = &mut self.miner {
            miner.stop();
        }
        self.timers.clear();
        self.metrics.halted.set(1);
        self.halted = Some(reason);
    }

    /// Halts on a driver failure (a store write that failed, most often for lack of space).
    fn halt_on(&mut self, result: Result<(), DriverError>) {
        if let Err(error) = result {
            self.halt(format!("{error}"));
        }
    }

    fn check_disk(&mut self) {
        let Some(dir) = &self.data_dir else { return };
        match disk_low(dir) {
            Ok(Some(reason)) => self.halt(reason),
            Ok(None) => {}
            Err(error) => tracing::warn!(dir = %dir.display(), %error, "free disk space could not be read"),
        }
    }

    /// Offers again the transactions a clean stop kept in `path` (a file it cannot read is
    /// reported and removed), and keeps the pending ones there when this run ends. A killed
    /// node loses its pending transactions.
    pub fn keep_mempool_in(mut self, path: PathBuf) -> Core {
        match read_mempool_file(&path) {
            Ok(None) => {}
            Ok(Some(txs)) => {
                let offered = txs.len();
                let now = now();
                let restored = txs
                    .into_iter()
                    .map(|tx| self.node.submit_tx(now, tx))
                    .filter(|outcome| matches!(outcome, Ok(Ok(_))))
                    .count();
                tracing::info!(restored, offered, file = %path.display(), "pending transactions restored");
            }
            Err(error) => tracing::warn!(file = %path.display(), %error, "pending transactions not restored"),
        }
        // Whatever it held is in the mempool now; a crash before the next clean stop must not
        // offer it again.
        if let Err(error) = std::fs::remove_file(&path)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(file = %path.display(), %error, "cannot remove the mempool file");
        }
        self.mempool_file = Some(path);
        self
    }

    pub fn head(&mut self) -> HeadInfo {
        let store = self.node.driver().store();
        let (hash, head) = (store.head_hash(), store.head().clone());
        HeadInfo {
            hash,
            height: head.height,
            timestamp: head.timestamp,
            state_root: head.state_root,
            chain_work: self.chain_work(&hash),
        }
    }

    fn chain_work(&mut self, hash: &Hash) -> ChainWork {
        self.node.driver_mut().chain_work(hash).unwrap_or_else(|error| {
            tracing::warn!(%hash, %error, "cannot read the chain's work");
            None
        })
    }

    /// Runs until `stop` fires or an input source closes. A driver error (a store write that
    /// failed) does not end it: the node halts ([`Core::halt`]) and goes on answering reads.
    pub async fn run(
        mut self,
        mut events: p2p::Events,
        mut inputs: mpsc::Receiver<Input>,
        mut mined: mpsc::Receiver<Arc<Block>>,
        mut stop: oneshot::Receiver<()>,
    ) {
        let started = self.node.start(now());
        self.halt_on(started);
        if self.halted.is_none() {
            self.flush().await;
        }
        let mut disk_checks = tokio::time::interval(DISK_CHECK_INTERVAL);
        loop {
            let next_timer = self.timers.values().min().copied();
            let sleep = next_timer.map_or(Duration::from_secs(3600), |at| {
                Duration::from_millis(at.as_millis().saturating_sub(now().as_millis()))
            });
            let running = self.halted.is_none();
            let wake = tokio::select! {
                _ = &mut stop => break,
                event = events.recv() => match event {
                    Some(event) => Wake::Event(event),
                    None => break,
                },
                input = inputs.recv() => match input {
                    Some(input) => Wake::Input(input),
                    None => break,
                },
                Some(block) = mined.recv(), if running => Wake::Mined(block),
                _ = tokio::time::sleep(sleep), if running => Wake::Timers,
                _ = disk_checks.tick(), if running => Wake::DiskCheck,
            };
            // Every way a block gets stored (a peer's, a synced range, a Raft commit, this
            // node's own) is timed here, from the input to its blocks stored.
            let (started, imported) = (tokio::time::Instant::now(), self.node.imported());
            match wake {
                Wake::Event(event) if running => {
                    let handled = self.on_net_event(event).await;
                    self.halt_on(handled);
                }
                Wake::Event(_) => {}
                Wake::Input(input) if running => {
                    let handled = self.on_input(input).await;
                    self.halt_on(handled);
                }
                Wake::Input(input) => self.on_input_halted(input),
                Wake::Mined(block) => {
                    let handled = self.node.on_mined(now(), block);
                    self.halt_on(handled);
                }
                Wake::Timers => {
                    let fired = self.fire_timers();
                    self.halt_on(fired);
                }
                Wake::DiskCheck => self.check_disk(),
            }
            self.observe_imports(imported, started);
            if self.halted.is_none() {
                self.flush().await;
            }
        }
        if let Some(miner) = &mut self.miner {
            miner.stop();
        }
        if let Some(path) = &self.mempool_file {
            let pending = self.node.driver().mempool().pending();
            match write_mempool_file(path, &pending) {
                Ok(()) => tracing::info!(kept = pending.len(), file = %path.display(), "pending transactions kept"),
                Err(error) => tracing::warn!(file = %path.display(), %error, "pending transactions not kept"),
            }
        }
    }

    fn fire_timers(&mut self) -> Result<(), DriverError> {
        let now = now();
        let due: Vec<Timer> = self.timers.iter().filter(|(_, at)| **at <= now).map(|(timer, _)| *timer).collect();
        for timer in due {
            self.timers.remove(&timer);
            self.node.on_timer(now, timer)?;
        }
        Ok(())
    }

    /// A halted node answers reads; it imports no sync answer, and a transaction or a
    /// membership change gets no answer (the RPC reports the node unavailable).
    fn on_input_halted(&mut self, input: Input) {
        match input {
            Input::Answer { .. } | Input::CheckedTxs(_) | Input::Call(Call::Submit(..) | Call::Membership(..)) => {}
            Input::Call(call) => {
                if let Err(error) = self.on_call(call) {
                    tracing::warn!(%error, "a read failed on a halted node");
                }
            }
        }
    }

    async fn on_input(&mut self, input: Input) -> Result<(), DriverError> {
        match input {
            Input::Answer { peer, request, answer } => {
                self.node.on_answer(now(), &core_peer(&peer), &request, answer)?;
            }
            Input::Call(call) => self.on_call(call)?,
            Input::CheckedTxs(checked) => self.on_checked_txs(checked).await?,
        }
        Ok(())
    }

    /// Times the blocks one input imported (an answer may carry many: each gets the mean).
    fn observe_imports(&self, imported_before: u64, started: tokio::time::Instant) {
        let count = self.node.imported().saturating_sub(imported_before);
        if count == 0 {
            return;
        }
        let each = started.elapsed().checked_div(u32::try_from(count).unwrap_or(u32::MAX)).unwrap_or_default();
        let each = each.as_secs_f64();
        for _ in 0..count {
            self.metrics.import_seconds.observe(each);
        }
    }

    fn on_call(&mut self, call: Call) -> Result<(), DriverError> {
        match call {
            Call::Submit(tx, reply) => {
                let submitted = self.node.submit_verified_tx(now(), *tx)?;
                let _ = reply.send(submitted);
            }
            Call::Status(reply) => {
                let head = self.head();
                let driver = self.node.driver();
                let store = driver.store();
                let _ = reply.send(StatusInfo {
                    engine: driver.engine().name(),
                    chain_id: store.genesis().chain_id.clone(),
                    min_tx_fee: store.genesis().params.min_tx_fee,
                    head,
                    finalized: driver.finalized(),
                    mempool_txs: driver.mempool().len(),
                    mempool_bytes: driver.mempool().size_bytes(),
                    sync: self.node.sync_progress(now()),
                    slot: driver.engine().counters().slot,
                    halted: self.halted.clone(),
                });
            }
            Call::Validators(reply) => {
                let driver = self.node.driver();
                let set = driver.active_set(now()).unwrap_or_else(|error| {
                    tracing::warn!(%error, "the active set could not be read");
                    None
                });
                let _ = reply.send((driver.engine().name(), set));
            }
            Call::Membership(request, reply) => {
                let answer = self.node.change_membership(now(), request)?;
                match &answer {
                    Ok(proposed) => tracing::info!(
                        kind = ?proposed.entry.kind,
                        member = proposed.entry.member.id,
                        address = %proposed.entry.member.address,
                        index = proposed.index,
                        "membership change proposed"
                    ),
                    Err(refusal) => tracing::info!(reason = refusal.code(), %refusal, "membership change refused"),
                }
                let _ = reply.send(answer);
            }
        }
        Ok(())
    }

    /// Gossip messages of transactions checked off this task: admitted, each message validated
    /// for gossip as its transactions fared.
    async fn on_checked_txs(&mut self, checked: crate::tx_check::Checked) -> Result<(), DriverError> {
        for (id, from, checked) in checked {
            let verdict = self.node.on_checked_txs(now(), &core_peer(&from), checked)?;
            let _ = self.net.validate(id, from, verdict).await;
        }
        Ok(())
    }

    async fn on_net_event(&mut self, event: p2p::Event) -> Result<(), DriverError> {
        match event {
            p2p::Event::Gossip { topic: p2p::Topic::Transactions, id, from, data } => {
                if !self.tx_checker.check((id.clone(), from, data)) {
                    let _ = self.net.validate(id, from, Verdict::Ignore).await;
                }
            }
            p2p::Event::Gossip { topic, id, from, data } => {
                let verdict = self.node.on_gossip(now(), &core_peer(&from), topic, &data)?;
                let _ = self.net.validate(id, from, verdict).await;
            }
            p2p::Event::Request { id, request, .. } => {
                let response = self.node.serve(&request)?;
                let _ = self.net.respond(id, response).await;
            }
            p2p::Event::Direct { from, data } => self.node.on_direct(now(), &core_peer(&from), &data)?,
            p2p::Event::PeerConnected { peer, .. } => self.node.on_peer_connected(now(), core_peer(&peer)),
            p2p::Event::PeerDisconnected { peer } | p2p::Event::PeerBanned { peer, .. } => {
                self.node.on_peer_gone(now(), &core_peer(&peer));
            }
        }
        Ok(())
    }

    /// Sends a sync request on its own task; the answer comes back as [`Input::Answer`].
    fn request(&self, peer: p2p::PeerId, request: SyncRequest) {
        let net = self.net.clone();
        let inputs = self.inputs.clone();
        tokio::spawn(async move {
            let answer = net.request(peer, request.clone()).await.map_err(|error| {
                tracing::debug!(%peer, %error, "sync request failed");
                match error {
                    p2p::RequestError::Timeout(_) => RequestFailed::Timeout,
                    _ => RequestFailed::Failed,
                }
            });
            let _ = inputs.send(Input::Answer { peer, request, answer }).await;
        });
    }

    /// Carries out what the node asked for since the last flush, then updates the metrics and
    /// the subscriptions.
    async fn flush(&mut self) {
        for effect in self.node.take_effects() {
            match effect {
                Effect::Publish { topic, data } => match self.net.publish(topic, data).await {
                    Ok(()) | Err(p2p::PublishError::NoPeers(_) | p2p::PublishError::Duplicate) => {}
                    Err(error) => tracing::warn!(%topic, %error, "publish failed"),
                },
                Effect::Request { peer, request } => match p2p::parse_peer_id(peer.as_str()) {
                    Ok(peer) => self.request(peer, request),
                    Err(error) => tracing::warn!(%peer, %error, "a request for a peer id that does not parse"),
                },
                Effect::Direct { peer, data } => send_direct(&self.net, &peer, data),
                Effect::Report { peer, penalty } => {
                    tracing::debug!(%peer, misbehaviour = %penalty.misbehaviour, reason = %penalty.reason, "penalizing peer");
                    if let Ok(peer) = p2p::parse_peer_id(peer.as_str()) {
                        let _ = self.net.report(peer, penalty.misbehaviour).await;
                    }
                }
                Effect::SetTimer { timer, at } => {
                    self.timers.insert(timer, at);
                }
                Effect::StartMining(template) => {
                    if let Some(miner) = &mut self.miner {
                        miner.start(template);
                    }
                }
                Effect::StopMining => {
                    if let Some(miner) = &mut self.miner {
                        miner.stop();
                    }
                }
                Effect::AllowPeers(peers) => {
                    // The engine's members come from the genesis (checked there) or a committed
                    // membership change: an id that does not parse is left out, so never admitted.
                    let parsed = peers
                        .iter()
                        .filter_map(|peer| match p2p::parse_peer_id(peer.as_str()) {
                            Ok(peer) => Some(peer),
                            Err(error) => {
                                tracing::warn!(%peer, %error, "an allowed peer id that does not parse");
                                None
                            }
                        })
                        .collect();
                    if let Err(error) = self.net.set_allowlist(parsed).await {
                        tracing::warn!(%error, "the allowlist was not replaced");
                    }
                }
            }
        }
        self.log_sync();
        let driver = self.node.driver();
        let (head_hash, head_height) = (driver.store().head_hash(), driver.store().head().height);
        let to_i64 = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        self.metrics.head_height.set(to_i64(head_height.get()));
        self.metrics.finalized_height.set(to_i64(driver.finalized().map_or(0, |(height, _)| height.get())));
        if let Some((final_height, _)) = driver.finalized() {
            self.metrics.finality_lag.set(to_i64(head_height.get().saturating_sub(final_height.get())));
        }
        let counters = driver.engine().counters();
        self.metrics.slot.set(to_i64(counters.slot.unwrap_or(0)));
        self.metrics.missed_slots.set(to_i64(counters.missed_slots));
        // Rewritten only when a count changed (a slot engine misses a slot at most once per
        // slot), not on every input: each label is an address's bech32m text. A producer the
        // engine stopped counting (evicted) leaves the family too.
        if counters.missed_by_producer != self.metrics.missed_counted {
            self.metrics.missed_by_producer.clear();
            for (producer, missed) in &counters.missed_by_producer {
                let labels = [("producer", producer.to_string())];
                self.metrics.missed_by_producer.get_or_create(&labels).set(to_i64(*missed));
            }
            self.metrics.missed_counted = counters.missed_by_producer;
        }
        count_up(&self.metrics.votes_received, &mut self.metrics.votes_counted, counters.votes_received);
        if let Some(miner) = &self.miner {
            count_up(&self.metrics.pow_hashes, &mut self.metrics.hashes_counted, miner.hashes());
        }
        if let Some(raft) = counters.raft {
            self.metrics.record_raft(raft);
        }
        self.metrics.mempool_transactions.set(to_i64(driver.mempool().len() as u64));
        self.metrics.mempool_bytes.set(to_i64(driver.mempool().size_bytes()));
        let finalized = driver.finalized();
        count_up(&self.metrics.blocks_imported, &mut self.imported, self.node.imported());
        let sync = self.node.sync_progress(now());
        self.metrics.sync_target.set(to_i64(sync.map_or(0, |progress| progress.target.get())));
        if finalized != self.last_final {
            self.last_final = finalized;
            if let Some(finalized) = finalized {
                let _ = self.finals.send(finalized);
            }
        }
        // The notice (with the chain's work) is built only when the head moved, not per input.
        if head_hash != self.last_head {
            self.metrics.head_changes.inc();
            self.last_head = head_hash;
            if let Seal::Pow { target, .. } = &self.node.driver().store().head().seal {
                let work = chorus_consensus::pow::difficulty::work(target);
                let difficulty = if work > U256::from(i64::MAX) { i64::MAX } else { to_i64(work.low_u64()) };
                self.metrics.pow_difficulty.set(difficulty);
            }
            // No subscriber is not an error.
            let head = self.head();
            let _ = self.heads.send(head);
        }
    }

    /// Logs range-sync progress every 5 s while syncing.
    fn log_sync(&mut self) {
        let now_ms = now().as_millis();
        if let Some(progress) = self.node.sync_progress(now())
            && now_ms.saturating_sub(self.sync_logged) >= SYNC_LOG_INTERVAL_MS
        {
            self.sync_logged = now_ms;
            tracing::info!(
                head = %progress.head,
                target = %progress.target,
                blocks_per_sec =
                    format!("{}.{:03}", progress.blocks_per_sec_milli / 1_000, progress.blocks_per_sec_milli % 1_000),
                eta_secs = progress.eta_secs,
                "syncing"
            );
        }
    }
}

//! The running node: the driver on one task, wired to the network service, real timers, the
//! miner threads and the RPC server.
//!
//! One task owns the [`Driver`] (and through it the store, the engine and the mempool). Every
//! input (a peer's gossip or request, a timer, a mined block, an answer to our sync request, an
//! RPC call) is handled there in turn; what the driver asks for is collected in an [`Outbox`]
//! and carried out after each input: gossip to publish, sync requests to send (each awaited on
//! its own task, its answer coming back as an input), timers, the miner, penalties.
//!
//! The driver's messages map onto the network service so: blocks, transactions and engine
//! messages are gossip on their topics; `GetBlocks { locator }` and `GetBlock` become sync
//! requests (`BlocksAfter`, `Block`) to that peer, whose answers are fed back as the blocks
//! they carry; the periodic `Status` becomes a `Status` request to each connected peer (gossip
//! would de-duplicate identical heads).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chorus_chain::block::Block;
use chorus_chain::codec::{self, Canonical};
use chorus_chain::limits;
use chorus_chain::primitives::{Hash, Height, Timestamp};
use chorus_chain::tx::{SignedTransaction, VerifiedTx};
use chorus_consensus::{EngineMessage, PeerId};
use chorus_p2p::{self as p2p, Misbehaviour, NetworkHandle, SyncRequest, SyncResponse, Topic};
use chorus_store::StoreError;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::driver::{Driver, DriverError, NetMessage, Outbox, Timer, Verdict};
use crate::mempool::{self, MempoolError};
use crate::miner::ThreadMiner;
use crate::sync::RangeSync;

/// Inputs from outside the network service's event stream.
#[derive(Debug)]
pub enum Input {
    /// The answer to a sync request this node sent.
    Fetched { peer: p2p::PeerId, response: SyncResponse },
    /// The answer to a range request of range sync.
    Range { peer: p2p::PeerId, from: Height, result: Result<SyncResponse, p2p::RequestError> },
    /// A call from the RPC server.
    Call(Call),
}

/// What the RPC server asks the node. Each carries where to answer.
#[derive(Debug)]
pub enum Call {
    Head(oneshot::Sender<HeadInfo>),
    Block(BlockRef, oneshot::Sender<Result<Option<(Block, ChainWork)>, StoreError>>),
    /// A transaction the RPC server has verified.
    Submit(Box<VerifiedTx>, oneshot::Sender<Result<Hash, MempoolError>>),
    Tx(Hash, oneshot::Sender<Result<TxStatus, StoreError>>),
    Account(chorus_chain::Address, Option<Height>, oneshot::Sender<Result<AccountInfo, StoreError>>),
    Status(oneshot::Sender<StatusInfo>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockRef {
    Height(Height),
    Hash(Hash),
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxStatus {
    Unknown,
    Pending,
    Included { height: Height, block: Hash, index: u32, finalized: bool },
}

#[derive(Debug, Clone)]
pub struct AccountInfo {
    pub account: chorus_chain::state::Account,
    /// The nonce the sender's next transaction should carry, counting its pending ones.
    pub next_nonce: u64,
    pub height: Height,
    pub state_root: Hash,
    /// The proof asked for: at this height, against this state root.
    pub proof: Option<(Height, Hash, chorus_chain::state::tree::StateProof)>,
}

#[derive(Debug, Clone)]
pub struct StatusInfo {
    pub engine: &'static str,
    pub chain_id: String,
    pub min_tx_fee: chorus_chain::primitives::Amount,
    pub head: HeadInfo,
    pub finalized: Option<(Height, Hash)>,
    pub mempool_txs: usize,
    pub mempool_bytes: u64,
    /// Range-sync progress while the node is more than one range behind its best peer.
    pub sync: Option<crate::sync::Progress>,
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
        }
    }
}

impl NodeMetrics {
    pub fn register(registry: &mut prometheus_client::registry::Registry) -> NodeMetrics {
        let metrics = NodeMetrics::default();
        registry.register("head_height", "Height of the head block", metrics.head_height.clone());
        registry.register(
            "finalized_height",
            "Height of the last final block (0 without finality)",
            metrics.finalized_height.clone(),
        );
        registry.register("mempool_transactions", "Transactions in the mempool", metrics.mempool_transactions.clone());
        registry.register(
            "mempool_bytes",
            "Encoded bytes of the mempool's transactions",
            metrics.mempool_bytes.clone(),
        );
        registry.register("head_changes", "Times the head moved (new blocks and reorgs)", metrics.head_changes.clone());
        registry.register(
            "blocks_imported",
            "Blocks verified and stored (from peers and mined)",
            metrics.blocks_imported.clone(),
        );
        registry.register("block_import_seconds", "Time to judge and store one block", metrics.import_seconds.clone());
        registry.register(
            "sync_target_height",
            "Best head height peers report while range-syncing (0 otherwise)",
            metrics.sync_target.clone(),
        );
        metrics
    }
}

/// How often range-sync progress is logged.
const SYNC_LOG_INTERVAL_MS: u64 = 5_000;

pub struct Core {
    driver: Driver,
    net: NetworkHandle,
    outbox: Outbox,
    timers: BTreeMap<Timer, Timestamp>,
    miner: Option<ThreadMiner>,
    inputs: mpsc::Sender<Input>,
    heads: broadcast::Sender<HeadInfo>,
    finals: broadcast::Sender<(Height, Hash)>,
    last_final: Option<(Height, Hash)>,
    connected: std::collections::BTreeSet<p2p::PeerId>,
    last_head: Hash,
    metrics: NodeMetrics,
    sync: RangeSync,
    /// When range-sync progress was last logged (ms).
    sync_logged: u64,
    /// Where the pending transactions are kept when the run ends.
    mempool_file: Option<PathBuf>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("head", &self.driver.store().head_hash())
            .field("peers", &self.connected.len())
            .finish_non_exhaustive()
    }
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

/// Writes a mempool file whole or not at all: a temporary file, synced, then renamed.
fn write_mempool_file(path: &Path, txs: &[SignedTransaction]) -> std::io::Result<()> {
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temporary)?;
    std::io::Write::write_all(&mut file, &mempool::encode_file(txs))?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

/// The wall clock in milliseconds since the Unix epoch (the node's; engines get it as `now`).
#[allow(
    clippy::disallowed_types,
    reason = "the daemon is the node's clock: the driver gets the time of each input from here"
)]
pub fn now() -> Timestamp {
    use std::time::{SystemTime, UNIX_EPOCH};
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis());
    Timestamp::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
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
        Core {
            driver,
            net,
            outbox: Outbox::default(),
            timers: BTreeMap::new(),
            miner,
            inputs,
            heads,
            finals,
            last_final: None,
            connected: Default::default(),
            last_head: Hash::ZERO,
            metrics,
            sync: RangeSync::default(),
            sync_logged: 0,
            mempool_file: None,
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
                let restored =
                    txs.into_iter().map(|tx| self.driver.submit_tx(tx, &mut self.outbox)).filter(Result::is_ok).count();
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
        let store = self.driver.store();
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
        self.driver.chain_work(hash).unwrap_or_else(|error| {
            tracing::warn!(%hash, %error, "cannot read the chain's work");
            None
        })
    }

    /// Runs until `stop` fires or an input source closes. Returns the driver's error if the
    /// node cannot continue (a damaged store).
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<p2p::Event>,
        mut inputs: mpsc::Receiver<Input>,
        mut mined: mpsc::Receiver<Arc<Block>>,
        mut stop: oneshot::Receiver<()>,
    ) -> Result<(), DriverError> {
        self.driver.start(now(), &mut self.outbox)?;
        self.flush().await;
        loop {
            let next_timer = self.timers.values().min().copied();
            let sleep = next_timer.map_or(Duration::from_secs(3600), |at| {
                Duration::from_millis(at.as_millis().saturating_sub(now().as_millis()))
            });
            tokio::select! {
                _ = &mut stop => break,
                event = events.recv() => match event {
                    Some(event) => self.on_net_event(event).await?,
                    None => break,
                },
                input = inputs.recv() => match input {
                    Some(input) => self.on_input(input)?,
                    None => break,
                },
                Some(block) = mined.recv() => {
                    let hash = block.hash();
                    self.driver.on_mined(now(), block, &mut self.outbox)?;
                    // A find for a template a better head replaced meanwhile is dropped.
                    if self.driver.store().contains_block(&hash)? {
                        self.metrics.blocks_imported.inc();
                    }
                }
                _ = tokio::time::sleep(sleep) => self.fire_timers()?,
            }
            self.flush().await;
        }
        if let Some(miner) = &mut self.miner {
            miner.stop();
        }
        if let Some(path) = &self.mempool_file {
            let pending = self.driver.mempool().pending();
            match write_mempool_file(path, &pending) {
                Ok(()) => tracing::info!(kept = pending.len(), file = %path.display(), "pending transactions kept"),
                Err(error) => tracing::warn!(file = %path.display(), %error, "pending transactions not kept"),
            }
        }
        Ok(())
    }

    fn fire_timers(&mut self) -> Result<(), DriverError> {
        let now = now();
        let due: Vec<Timer> = self.timers.iter().filter(|(_, at)| **at <= now).map(|(timer, _)| *timer).collect();
        for timer in due {
            self.timers.remove(&timer);
            self.driver.on_timer(now, timer, &mut self.outbox)?;
        }
        Ok(())
    }

    fn on_input(&mut self, input: Input) -> Result<(), DriverError> {
        match input {
            Input::Fetched { peer, response } => {
                let from = PeerId::new(&peer.to_string());
                let messages: Vec<NetMessage> = match response {
                    SyncResponse::Blocks(blocks) => {
                        blocks.into_iter().map(|block| NetMessage::Block(Arc::new(block))).collect()
                    }
                    SyncResponse::Block(Some(block)) => vec![NetMessage::Block(Arc::new(*block))],
                    SyncResponse::Status { head, height } => {
                        self.sync.on_peer_head(peer, height);
                        // Far behind, range sync fetches; near, the driver's locator request does
                        // (it also finds fork points).
                        if self.sync.is_syncing(self.driver.store().head().height) {
                            Vec::new()
                        } else {
                            vec![NetMessage::Status { head, height }]
                        }
                    }
                    _ => Vec::new(),
                };
                for message in messages {
                    self.on_peer_message(&from, message)?;
                }
            }
            Input::Range { peer, from, result } => {
                match result {
                    Ok(SyncResponse::Blocks(blocks)) => self.sync.on_blocks(peer, from, blocks),
                    Ok(_) | Err(_) => self.sync.on_failure(peer, from),
                }
                for (peer, block) in self.sync.take_ready(self.driver.store().head().height) {
                    let from = PeerId::new(&peer.to_string());
                    self.on_peer_message(&from, NetMessage::Block(Arc::new(block)))?;
                }
            }
            Input::Call(call) => self.on_call(call)?,
        }
        Ok(())
    }

    fn on_call(&mut self, call: Call) -> Result<(), DriverError> {
        match call {
            Call::Head(reply) => {
                let _ = reply.send(self.head());
            }
            Call::Block(reference, reply) => {
                let store = self.driver.store();
                let block = match reference {
                    BlockRef::Height(height) => store.canonical_block(height),
                    BlockRef::Hash(hash) => store.block(&hash),
                };
                let answer = block.map(|block| {
                    block.map(|block| {
                        let work = self.chain_work(&block.hash());
                        (block, work)
                    })
                });
                let _ = reply.send(answer);
            }
            Call::Submit(tx, reply) => {
                let _ = reply.send(self.driver.submit_verified_tx(*tx, &mut self.outbox));
            }
            Call::Tx(hash, reply) => {
                let _ = reply.send(self.tx_status(&hash));
            }
            Call::Account(address, proof_at, reply) => {
                let _ = reply.send(self.account(&address, proof_at));
            }
            Call::Status(reply) => {
                let store = self.driver.store();
                let _ = reply.send(StatusInfo {
                    engine: self.driver.engine().name(),
                    chain_id: store.genesis().chain_id.to_string(),
                    min_tx_fee: store.genesis().params.min_tx_fee,
                    head: self.head(),
                    finalized: self.driver.finalized(),
                    mempool_txs: self.driver.mempool().len(),
                    mempool_bytes: self.driver.mempool().size_bytes(),
                    sync: self.sync_progress(),
                });
            }
        }
        Ok(())
    }

    fn tx_status(&self, hash: &Hash) -> Result<TxStatus, StoreError> {
        if self.driver.mempool().contains(hash) {
            return Ok(TxStatus::Pending);
        }
        let Some(location) = self.driver.store().tx_location(hash)? else { return Ok(TxStatus::Unknown) };
        let finalized = self.driver.finalized().is_some_and(|(height, _)| height >= location.height);
        Ok(TxStatus::Included { height: location.height, block: location.block_hash, index: location.index, finalized })
    }

    fn account(&self, address: &chorus_chain::Address, proof_at: Option<Height>) -> Result<AccountInfo, StoreError> {
        let store = self.driver.store();
        let head = store.head().height;
        let proof = match proof_at {
            Some(height) => {
                let proof = store.prove(&chorus_chain::state::StateKey::Account(*address), height)?;
                Some((height, store.state_root_at(height)?, proof))
            }
            None => None,
        };
        let account = store.account(address)?;
        let next_nonce = self.driver.mempool().next_nonce(address, account.nonce);
        Ok(AccountInfo { account, next_nonce, height: head, state_root: store.head().state_root, proof })
    }

    async fn on_net_event(&mut self, event: p2p::Event) -> Result<(), DriverError> {
        match event {
            p2p::Event::Gossip { topic, id, from, data } => {
                let verdict = self.on_gossip(topic, from, &data)?;
                let _ = self.net.validate(id, from, verdict).await;
            }
            p2p::Event::Request { id, request, .. } => {
                let response = self.serve(&request)?;
                let _ = self.net.respond(id, response).await;
            }
            p2p::Event::PeerConnected { peer, .. } => {
                self.connected.insert(peer);
                self.fetch(peer, SyncRequest::Status);
            }
            p2p::Event::PeerDisconnected { peer } | p2p::Event::PeerBanned { peer, .. } => {
                self.connected.remove(&peer);
                self.sync.on_peer_gone(&peer);
            }
        }
        Ok(())
    }

    /// Hands a peer's message to the driver; a block that ends up stored is counted and timed.
    fn on_peer_message(&mut self, from: &PeerId, message: NetMessage) -> Result<Verdict, DriverError> {
        let NetMessage::Block(block) = &message else {
            return self.driver.on_message(now(), from, message, &mut self.outbox);
        };
        let hash = block.hash();
        let known = self.driver.store().contains_block(&hash)?;
        let started = tokio::time::Instant::now();
        let verdict = self.driver.on_message(now(), from, message, &mut self.outbox)?;
        if !known && self.driver.store().contains_block(&hash)? {
            self.metrics.blocks_imported.inc();
            self.metrics.import_seconds.observe(started.elapsed().as_secs_f64());
        }
        Ok(verdict)
    }

    /// Decodes a gossip payload by its topic and hands it to the driver. Penalties the driver
    /// asks for against the sender become the verdict's reason instead of a second report.
    fn on_gossip(&mut self, topic: Topic, from: p2p::PeerId, data: &[u8]) -> Result<p2p::Verdict, DriverError> {
        let message = match topic {
            Topic::Blocks => decode(data).map(|block| NetMessage::Block(Arc::new(block))),
            Topic::Transactions => decode(data).map(|tx| NetMessage::Tx(Box::new(tx))),
            Topic::Consensus => decode::<EngineMessage>(data).map(NetMessage::Engine),
        };
        let Some(message) = message else { return Ok(p2p::Verdict::Reject(Misbehaviour::Undecodable)) };
        if let NetMessage::Block(block) = &message {
            self.sync.on_peer_head(from, block.header.height);
        }
        let sender = PeerId::new(&from.to_string());
        let verdict = self.on_peer_message(&sender, message)?;
        Ok(match verdict {
            Verdict::Accept => p2p::Verdict::Accept,
            Verdict::Ignore => p2p::Verdict::Ignore,
            Verdict::Reject => {
                self.outbox.penalties.retain(|(peer, _)| *peer != sender);
                p2p::Verdict::Reject(Misbehaviour::Invalid)
            }
        })
    }

    /// Answers a peer's sync request from the store.
    fn serve(&self, request: &SyncRequest) -> Result<SyncResponse, StoreError> {
        let store = self.driver.store();
        let range = |from: Height, count: u32| -> Result<Vec<Block>, StoreError> {
            let mut blocks = Vec::new();
            let mut height = from;
            for _ in 0..count {
                let Some(block) = store.canonical_block(height)? else { break };
                blocks.push(block);
                let Some(next) = height.next() else { break };
                height = next;
            }
            Ok(blocks)
        };
        Ok(match request {
            SyncRequest::Headers { from, count } => {
                SyncResponse::Headers(range(*from, *count)?.into_iter().map(|block| block.header).collect())
            }
            SyncRequest::Blocks { from, count } => SyncResponse::Blocks(range(*from, *count)?),
            SyncRequest::Block(hash) => SyncResponse::Block(store.block(hash)?.map(Box::new)),
            SyncRequest::BlocksAfter { locator } => SyncResponse::Blocks(self.driver.blocks_after(locator)?),
            SyncRequest::Status => SyncResponse::Status { head: store.head_hash(), height: store.head().height },
        })
    }

    /// Sends a sync request on its own task; the answer comes back as [`Input::Fetched`].
    fn fetch(&self, peer: p2p::PeerId, request: SyncRequest) {
        let net = self.net.clone();
        let inputs = self.inputs.clone();
        tokio::spawn(async move {
            match net.request(peer, request).await {
                Ok(response) => {
                    let _ = inputs.send(Input::Fetched { peer, response }).await;
                }
                Err(error) => tracing::debug!(%peer, %error, "sync request failed"),
            }
        });
    }

    /// Sends the range requests range sync wants now, and logs its progress every 5 s.
    fn drive_sync(&mut self) {
        let head = self.driver.store().head().height;
        let now_ms = now().as_millis();
        for (peer, from, count) in self.sync.next_requests(head, now_ms) {
            let net = self.net.clone();
            let inputs = self.inputs.clone();
            tokio::spawn(async move {
                let result = net.request(peer, SyncRequest::Blocks { from, count }).await;
                let _ = inputs.send(Input::Range { peer, from, result }).await;
            });
        }
        if let Some(progress) = self.sync_progress()
            && now_ms.saturating_sub(self.sync_logged) >= SYNC_LOG_INTERVAL_MS
        {
            self.sync_logged = now_ms;
            tracing::info!(
                head = progress.head,
                target = progress.target,
                blocks_per_sec =
                    format!("{}.{:03}", progress.blocks_per_sec_milli / 1_000, progress.blocks_per_sec_milli % 1_000),
                eta_secs = progress.eta_secs,
                "syncing"
            );
        }
    }

    fn sync_progress(&self) -> Option<crate::sync::Progress> {
        let head = self.driver.store().head().height;
        if !self.sync.is_syncing(head) {
            return None;
        }
        self.sync.progress(head, now().as_millis())
    }

    /// Carries out what the driver asked for since the last flush.
    async fn flush(&mut self) {
        let outbox = std::mem::take(&mut self.outbox);
        for message in outbox.broadcasts {
            let (topic, bytes) = match message {
                NetMessage::Block(block) => (Topic::Blocks, codec::encode(block.as_ref())),
                NetMessage::Tx(tx) => (Topic::Transactions, codec::encode(tx.as_ref())),
                NetMessage::Engine(message) => (Topic::Consensus, codec::encode(&message)),
                NetMessage::Status { .. } => {
                    for peer in self.connected.clone() {
                        self.fetch(peer, SyncRequest::Status);
                    }
                    continue;
                }
                other => {
                    tracing::debug!(?other, "no gossip topic for this message");
                    continue;
                }
            };
            match self.net.publish(topic, bytes).await {
                Ok(()) | Err(p2p::PublishError::NoPeers(_) | p2p::PublishError::Duplicate) => {}
                Err(error) => tracing::warn!(%topic, %error, "publish failed"),
            }
        }
        for (to, message) in outbox.sends {
            let Ok(peer) = p2p::parse_peer_id(to.as_str()) else { continue };
            match message {
                NetMessage::GetBlocks { locator } => self.fetch(peer, SyncRequest::BlocksAfter { locator }),
                NetMessage::GetBlock { hash } => self.fetch(peer, SyncRequest::Block(hash)),
                other => tracing::debug!(?other, %peer, "no direct message path for this message"),
            }
        }
        for (timer, at) in outbox.timers {
            self.timers.insert(timer, at);
        }
        if let Some(miner) = &mut self.miner {
            for template in outbox.mining {
                match template {
                    Some(template) => miner.start(template),
                    None => miner.stop(),
                }
            }
        }
        for (peer, reason) in outbox.penalties {
            tracing::debug!(%peer, %reason, "penalizing peer");
            if let Ok(peer) = p2p::parse_peer_id(peer.as_str()) {
                let _ = self.net.report(peer, Misbehaviour::Invalid).await;
            }
        }
        self.drive_sync();
        let (head_hash, head_height) = (self.driver.store().head_hash(), self.driver.store().head().height);
        let to_i64 = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        self.metrics.head_height.set(to_i64(head_height.get()));
        self.metrics.finalized_height.set(to_i64(self.driver.finalized().map_or(0, |(height, _)| height.get())));
        self.metrics.mempool_transactions.set(to_i64(self.driver.mempool().len() as u64));
        self.metrics.mempool_bytes.set(to_i64(self.driver.mempool().size_bytes()));
        self.metrics.sync_target.set(to_i64(self.sync_progress().map_or(0, |progress| progress.target)));
        let finalized = self.driver.finalized();
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
            // No subscriber is not an error.
            let head = self.head();
            let _ = self.heads.send(head);
        }
    }
}

fn decode<T: Canonical>(bytes: &[u8]) -> Option<T> {
    codec::decode(bytes).ok()
}

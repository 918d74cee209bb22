//! The driver: the node's single core loop around its consensus engine.
//!
//! Inputs (start, a timer, a mined block, a peer's message, a client's transaction) become
//! engine events; the engine's actions are executed here against the store, the mempool and
//! the [`Io`] handle, in order, and their results (a built block, a head change, a rejected
//! block) go back to the engine as events until none is left. Persisting comes before sending:
//! an action's writes are done before any later action runs.
//!
//! The driver is synchronous and owns no clock, thread or socket: `chorusd` gives it real ones
//! through [`Io`] and the time of each input; the simulator gives it simulated ones. The same
//! code therefore runs in both.
//!
//! Blocks whose parent is not stored are held ([`Orphans`], once their header passes the engine's
//! checks on its own) while their ancestors are fetched from the sender with a locator
//! (`NetMessage::GetBlocks`); a peer answers with the blocks following the first locator hash on
//! its chain.
//!
//! Side-branch blocks (stored without becoming the head) are what a peer can make every node
//! keep on disk, so they are bounded: the engine stores only a branch that could still win
//! (PoW: within the reorg limit's work), the store checks their signatures first, each peer has
//! an allowance of side-branch bytes ([`Allowance`], `limits::SIDE_BLOCK_BYTES_PER_PEER_BURST`),
//! and they are not relayed: only a block that joins the current chain is.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use chorus_chain::block::{Block, StatelessChecked};
use chorus_chain::codec;
use chorus_chain::crypto::SecretKey;
use chorus_chain::genesis::Genesis;
use chorus_chain::header::Header;
use chorus_chain::limits;
use chorus_chain::primitives::{Hash, Height, Timestamp};
use chorus_chain::state::{self, BlockError, BlockTemplate, ReadError, StateRead};
use chorus_chain::tx::{Evidence, SignedTransaction, Transaction, TxKind, VerifiedTx, Vote};
use chorus_consensus::raft::membership::{ChangeProposed, MembershipRefusal, MembershipRequest};
use chorus_consensus::{
    Action, ActiveSet, BlockRejection, ChainRead, ChainReadError, Durability, Engine, EngineError, EngineMessage,
    Event, Misbehaviour, Origin, Outbound, PeerId, TimerId,
};
use chorus_store::{HeadChange, Store, StoreError};

use crate::allowance::Allowance;
use crate::mempool::{Admitted, Mempool, MempoolError};
use crate::orphans::Orphans;

/// A client's transaction submitted: its hash, or why the mempool refused it.
pub type Submitted = Result<Hash, MempoolError>;

/// What nodes send each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetMessage {
    Block(Arc<Block>),
    Header(Box<Header>),
    Engine(EngineMessage),
    Tx(Box<SignedTransaction>),
    /// A peer's transaction whose signatures were checked off the node's task
    /// ([`crate::check_gossip_txs`]).
    VerifiedTx(Box<VerifiedTx>),
    /// "Send me the blocks after the first of these hashes you have on your chain."
    GetBlocks {
        locator: Vec<Hash>,
    },
    GetBlock {
        hash: Hash,
    },
    /// "My head is this": lets a peer that missed blocks notice and sync.
    Status {
        head: Hash,
        height: Height,
    },
}

/// A peer's transaction as it reaches the driver.
enum PeerTx {
    Unchecked(SignedTransaction),
    Verified(VerifiedTx),
}

/// Timers the node runs: the engine's and the driver's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    Engine(TimerId),
    /// Announce the head to peers.
    Status,
    /// Relay the transactions waiting to share a gossip message (the node's own timer:
    /// `Node` handles it, the driver never sees it).
    TxRelay,
}

/// Why a peer is penalized: the kind of misbehaviour the network's reputation counts, and
/// what exactly was wrong (for the node's logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Penalty {
    pub misbehaviour: Misbehaviour,
    pub reason: String,
}

impl Penalty {
    /// Well-formed input that breaks a rule.
    pub fn invalid(reason: &impl std::fmt::Display) -> Penalty {
        Penalty { misbehaviour: Misbehaviour::Invalid, reason: reason.to_string() }
    }
}

/// The node's outside: network, timers and miner. Implemented by `chorusd` with real I/O and by
/// the simulator with simulated I/O.
pub trait Io {
    fn broadcast(&mut self, message: NetMessage);
    fn send(&mut self, to: &PeerId, message: NetMessage);
    /// Calls back with the timer once the node's clock reads `at` (replacing a pending one).
    fn set_timer(&mut self, timer: Timer, at: Timestamp);
    /// Searches nonces for `template`, replacing any running search; a find comes back
    /// through [`Driver::on_mined`].
    fn start_mining(&mut self, template: Arc<Block>);
    fn stop_mining(&mut self);
    /// A peer misbehaved.
    fn penalize(&mut self, peer: &PeerId, penalty: Penalty);
    /// Only these peers may connect from now on (a permissioned engine's members).
    fn allow_peers(&mut self, peers: Vec<PeerId>);
}

/// An [`Io`] that keeps what the driver asked for, in order, for the caller to carry out
/// afterwards: the simulator does so, tests inspect it. With an [`Express`] lane, engine
/// messages to one peer leave at once instead.
#[derive(Debug, Default)]
pub struct Outbox {
    pub broadcasts: Vec<NetMessage>,
    pub sends: Vec<(PeerId, NetMessage)>,
    pub timers: Vec<(Timer, Timestamp)>,
    /// `Some(template)`: start mining it; `None`: stop.
    pub mining: Vec<Option<Arc<Block>>>,
    pub penalties: Vec<(PeerId, Penalty)>,
    /// The last allowlist asked for, if any.
    pub allowlist: Option<Vec<PeerId>>,
    pub express: Option<Express>,
}

/// Where a host takes an engine message for one peer (its canonical bytes) the moment the
/// driver sends it, rather than after the input: the driver carries out an engine's actions
/// in order, so a message goes out before the disk writes the engine put after it (a Raft
/// leader's appends before its own log write, its commit before it applies the block) and
/// never before the writes put ahead of it (a follower's answer after its log write).
pub struct Express(Box<SendNow>);

type SendNow = dyn FnMut(&PeerId, Vec<u8>) + Send;

impl Express {
    pub fn new(send: impl FnMut(&PeerId, Vec<u8>) + Send + 'static) -> Express {
        Express(Box::new(send))
    }
}

impl std::fmt::Debug for Express {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Express")
    }
}

impl Outbox {
    /// The template being mined after everything asked so far.
    pub fn current_template(&self) -> Option<Arc<Block>> {
        self.mining.last().cloned().flatten()
    }
}

impl Io for Outbox {
    fn broadcast(&mut self, message: NetMessage) {
        self.broadcasts.push(message);
    }
    fn send(&mut self, to: &PeerId, message: NetMessage) {
        match (&mut self.express, message) {
            (Some(express), NetMessage::Engine(message)) => (express.0)(to, codec::encode(&message)),
            (_, message) => self.sends.push((to.clone(), message)),
        }
    }
    fn set_timer(&mut self, timer: Timer, at: Timestamp) {
        self.timers.push((timer, at));
    }
    fn start_mining(&mut self, template: Arc<Block>) {
        self.mining.push(Some(template));
    }
    fn stop_mining(&mut self) {
        self.mining.push(None);
    }
    fn penalize(&mut self, peer: &PeerId, penalty: Penalty) {
        self.penalties.push((peer.clone(), penalty));
    }
    fn allow_peers(&mut self, peers: Vec<PeerId>) {
        self.allowlist = Some(peers);
    }
}

/// What the network layer should do with a received gossip message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Valid and new: forward it.
    Accept,
    /// Invalid: drop it, do not forward (the sender was penalized).
    Reject,
    /// Not judged now (duplicate, unknown parent, early): drop it without blame.
    Ignore,
    /// Kept but not forwarded yet: a transaction waiting for an earlier nonce, relayed once
    /// that arrives.
    Defer,
}

/// A failure the node cannot continue from: its store is damaged or unreadable, or the engine
/// loops. Bad input never causes one.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("engine failed: {0}")]
    Engine(EngineError),
    #[error("one input caused more than {} engine events", limits::DRIVER_EVENTS_PER_INPUT_MAX)]
    EventLoop,
}

/// The chain as the engine reads it: the store.
struct ChainView<'a> {
    store: &'a Store,
}

fn read_error(error: StoreError) -> ChainReadError {
    ChainReadError::Unreadable { what: error.to_string() }
}

impl StateRead for ChainView<'_> {
    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        self.store.view().get_raw(key)
    }
}

impl ChainRead for ChainView<'_> {
    fn genesis(&self) -> &Genesis {
        self.store.genesis()
    }
    fn head(&self) -> (Hash, Header) {
        (self.store.head_hash(), self.store.head().clone())
    }
    fn header(&self, hash: &Hash) -> Result<Option<Header>, ChainReadError> {
        self.store.header(hash).map_err(read_error)
    }
    fn canonical_hash(&self, height: Height) -> Result<Option<Hash>, ChainReadError> {
        self.store.canonical_hash(height).map_err(read_error)
    }
    fn block(&self, hash: &Hash) -> Result<Option<Block>, ChainReadError> {
        self.store.block(hash).map_err(read_error)
    }
    fn get_raw_at(&self, height: Height, key: &[u8]) -> Result<Option<Vec<u8>>, ChainReadError> {
        self.store.get_raw_at(height, key).map_err(read_error)
    }
    fn record(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ChainReadError> {
        self.store.engine_record(key).map_err(read_error)
    }
    fn finalized(&self) -> Option<(Height, Hash)> {
        self.store.finalized()
    }
}

#[derive(Debug)]
pub struct Driver {
    store: Store,
    engine: Box<dyn Engine>,
    mempool: Mempool,
    /// Blocks waiting for their parent.
    orphans: Orphans,
    /// Side-branch bytes each peer may still make the node store.
    side_blocks: Allowance,
    /// Transactions each peer may still send that the mempool cannot admit, without blame.
    ignored_txs: Allowance,
    /// When each peer was last asked for blocks: one request per peer per
    /// `SYNC_REQUEST_INTERVAL_MS`, so a burst of orphans does not become a burst of requests.
    sync_requests: BTreeMap<PeerId, Timestamp>,
    /// The node's key, which signs the evidence transactions the engine submits.
    key: Option<SecretKey>,
    /// The stateless checks of a block made beforehand ([`Driver::set_prechecked`]), taken by
    /// the first import after they are set, and only if it is of that block.
    prechecked: Option<StatelessChecked>,
    /// Blocks this driver stored that the store did not have (for metrics).
    blocks_stored: u64,
}

impl Driver {
    pub fn new(store: Store, engine: Box<dyn Engine>) -> Driver {
        let head = store.head().height;
        Driver {
            store,
            engine,
            mempool: Mempool::at(head),
            orphans: Orphans::default(),
            side_blocks: Allowance::new(
                limits::SIDE_BLOCK_BYTES_PER_PEER_BURST,
                limits::SIDE_BLOCK_BYTES_PER_PEER_PER_SEC,
                limits::ALLOWANCE_PEERS_TRACKED_MAX,
            ),
            ignored_txs: Allowance::new(
                limits::IGNORED_TXS_PER_PEER_BURST,
                limits::IGNORED_TXS_PER_PEER_PER_SEC,
                limits::ALLOWANCE_PEERS_TRACKED_MAX,
            ),
            sync_requests: BTreeMap::new(),
            prechecked: None,
            key: None,
            blocks_stored: 0,
        }
    }

    /// The driver with the node's key, so it can submit the evidence its engine finds.
    pub fn with_node_key(mut self, key: SecretKey) -> Driver {
        self.key = Some(key);
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Blocks stored since start that the store did not have: from peers, range sync, the
    /// engine's commits (Raft) and this node's own (mined or proposed).
    pub fn blocks_stored(&self) -> u64 {
        self.blocks_stored
    }

    pub fn engine(&self) -> &dyn Engine {
        self.engine.as_ref()
    }

    /// The engine's active set at the node's time `now` (`None`: an open engine, PoW).
    pub fn active_set(&self, now: Timestamp) -> Result<Option<ActiveSet>, DriverError> {
        self.engine.active_set(&ChainView { store: &self.store }, now).map_err(DriverError::Engine)
    }

    /// The engine's weight of the chain ending at stored block `hash` (PoW: cumulative work).
    pub fn chain_work(&mut self, hash: &Hash) -> Result<Option<[u8; 32]>, DriverError> {
        self.engine.chain_work(&ChainView { store: &self.store }, hash).map_err(DriverError::Engine)
    }

    pub fn mempool(&self) -> &Mempool {
        &self.mempool
    }

    /// The blocks waiting for their parent.
    pub fn orphans(&self) -> &Orphans {
        &self.orphans
    }

    /// The node starts on its store.
    pub fn start(&mut self, now: Timestamp, io: &mut dyn Io) -> Result<(), DriverError> {
        io.set_timer(Timer::Status, Timestamp::from_millis(now.as_millis().saturating_add(limits::STATUS_INTERVAL_MS)));
        self.run(now, Event::Start, io).map(drop)
    }

    pub fn on_timer(&mut self, now: Timestamp, timer: Timer, io: &mut dyn Io) -> Result<(), DriverError> {
        match timer {
            Timer::Engine(timer) => self.run(now, Event::Timer(timer), io).map(drop),
            Timer::Status => {
                io.broadcast(NetMessage::Status { head: self.store.head_hash(), height: self.store.head().height });
                io.set_timer(
                    Timer::Status,
                    Timestamp::from_millis(now.as_millis().saturating_add(limits::STATUS_INTERVAL_MS)),
                );
                Ok(())
            }
            Timer::TxRelay => Ok(()),
        }
    }

    pub fn on_mined(&mut self, now: Timestamp, block: Arc<Block>, io: &mut dyn Io) -> Result<(), DriverError> {
        self.run(now, Event::Mined(block), io).map(drop)
    }

    /// An operator's membership change (Raft), answered at once; what the engine does for it
    /// (persisting and sending the proposal) runs before the answer returns. The outer error is
    /// the node's failure, the inner one the operator's answer.
    pub fn change_membership(
        &mut self,
        now: Timestamp,
        request: MembershipRequest,
        io: &mut dyn Io,
    ) -> Result<Result<ChangeProposed, MembershipRefusal>, DriverError> {
        let mut actions = Vec::new();
        let answer = self.engine.change_membership(&ChainView { store: &self.store }, now, request, &mut actions);
        let mut followups = Followups::default();
        for action in actions {
            self.execute(action, io, &mut followups)?;
        }
        for tx in followups.relay {
            io.broadcast(NetMessage::Tx(Box::new(tx)));
        }
        for event in followups.results.into_iter().chain(followups.released) {
            self.run(now, event, io)?;
        }
        match answer {
            Ok(answer) => Ok(answer),
            Err(error @ EngineError::Chain(_)) => Err(DriverError::Engine(error)),
            Err(error) => Ok(Err(MembershipRefusal::Dropped { reason: error.to_string() })),
        }
    }

    /// A client submits a transaction: admitted to the mempool and, once ready (no nonce gap
    /// before it), gossiped; the engine hears of it ([`Event::TxsPending`]). The outer error is
    /// the node's failure, the inner one the client's answer.
    pub fn submit_tx(
        &mut self,
        now: Timestamp,
        tx: SignedTransaction,
        io: &mut dyn Io,
    ) -> Result<Submitted, DriverError> {
        match self.mempool.insert(tx, &self.store.view(), self.store.genesis()) {
            Ok(admitted) => self.admitted(now, admitted, io).map(Ok),
            Err(error) => Ok(Err(error)),
        }
    }

    /// [`Driver::submit_tx`] for a transaction whose signatures a caller checked on its own
    /// thread (the RPC server), so the one driver thread does not.
    pub fn submit_verified_tx(
        &mut self,
        now: Timestamp,
        tx: VerifiedTx,
        io: &mut dyn Io,
    ) -> Result<Submitted, DriverError> {
        match self.mempool.insert_verified(tx, &self.store.view(), self.store.genesis()) {
            Ok(admitted) => self.admitted(now, admitted, io).map(Ok),
            Err(error) => Ok(Err(error)),
        }
    }

    /// Relays what an admission made ready and tells the engine.
    fn admitted(&mut self, now: Timestamp, admitted: Admitted, io: &mut dyn Io) -> Result<Hash, DriverError> {
        let ready = !admitted.ready.is_empty();
        let hash = relay_ready(admitted, io);
        if ready {
            self.run(now, Event::TxsPending, io)?;
        }
        Ok(hash)
    }

    /// Sets (or with `None` clears) the stateless checks of the block the next peer message
    /// brings: range sync checks a block on other threads while the one before it is imported,
    /// and clears them after the message. The block's import skips them; the first import
    /// after they are set takes them, and drops them unused if it is of another block.
    pub fn set_prechecked(&mut self, checked: Option<StatelessChecked>) {
        self.prechecked = checked;
    }

    /// A message from a peer.
    pub fn on_message(
        &mut self,
        now: Timestamp,
        from: &PeerId,
        message: NetMessage,
        io: &mut dyn Io,
    ) -> Result<Verdict, DriverError> {
        match message {
            NetMessage::Block(block) => self.on_block(now, from, block, io),
            NetMessage::Header(header) => {
                self.run(now, Event::Header { from: from.clone(), header: *header }, io).map(|_| Verdict::Ignore)
            }
            NetMessage::Engine(message) => self.run(now, Event::Message { from: from.clone(), message }, io),
            NetMessage::Tx(tx) => self.on_tx(now, from, PeerTx::Unchecked(*tx), io),
            NetMessage::VerifiedTx(tx) => self.on_tx(now, from, PeerTx::Verified(*tx), io),
            NetMessage::GetBlocks { locator } => {
                self.serve_blocks(from, &locator, io)?;
                Ok(Verdict::Ignore)
            }
            NetMessage::GetBlock { hash } => {
                if let Some(block) = self.store.block(&hash)? {
                    io.send(from, NetMessage::Block(Arc::new(block)));
                }
                Ok(Verdict::Ignore)
            }
            NetMessage::Status { head, .. } => {
                if !self.store.contains_block(&head)? {
                    self.request_blocks(now, from, io)?;
                }
                Ok(Verdict::Ignore)
            }
        }
    }

    /// A peer's transaction, unchecked or with its signatures checked already. Relayed if
    /// ready, with those its nonce released (`Accept`; a gapped one is `Defer`). Ones that
    /// cannot be admitted are ignored, up to the peer's allowance; beyond it each costs the
    /// peer.
    fn on_tx(&mut self, now: Timestamp, from: &PeerId, tx: PeerTx, io: &mut dyn Io) -> Result<Verdict, DriverError> {
        let (view, genesis) = (self.store.view(), self.store.genesis());
        let (hash, inserted) = match tx {
            PeerTx::Unchecked(tx) => (tx.hash(), self.mempool.insert(tx, &view, genesis)),
            PeerTx::Verified(tx) => (tx.tx().hash(), self.mempool.insert_verified(tx, &view, genesis)),
        };
        match inserted {
            Ok(admitted) => {
                let ready = admitted.is_ready();
                self.admitted(now, admitted, io)?;
                Ok(if ready { Verdict::Accept } else { Verdict::Defer })
            }
            Err(MempoolError::Invalid(error)) => {
                io.penalize(from, Penalty::invalid(&error));
                Ok(Verdict::Reject)
            }
            Err(MempoolError::Read(error)) => Err(error.into()),
            Err(MempoolError::Duplicate { .. }) => Ok(Verdict::Ignore),
            // Already in a block here: the peer relayed it before the block reached it (blocks
            // commit within milliseconds under Raft). Not its fault.
            Err(MempoolError::NonceUsed { .. }) if self.store.tx_location(&hash)?.is_some() => Ok(Verdict::Ignore),
            Err(error) => {
                if self.ignored_txs.left(from, now) == 0 {
                    io.penalize(from, Penalty { misbehaviour: Misbehaviour::Unwanted, reason: error.to_string() });
                    return Ok(Verdict::Reject);
                }
                self.ignored_txs.charge(from, now, 1);
                Ok(Verdict::Ignore)
            }
        }
    }

    fn on_block(
        &mut self,
        now: Timestamp,
        from: &PeerId,
        block: Arc<Block>,
        io: &mut dyn Io,
    ) -> Result<Verdict, DriverError> {
        let hash = block.hash();
        if self.store.contains_block(&hash)? {
            return Ok(Verdict::Ignore);
        }
        if !self.store.contains_block(&block.header.parent)? {
            // Held only if it cost its sender what the engine asks of any header.
            if let Err(error) = self.engine.check_header_alone(&block.header) {
                if !error.is_peer_fault() {
                    return Ok(Verdict::Ignore);
                }
                io.penalize(from, Penalty::invalid(&error));
                return Ok(Verdict::Reject);
            }
            let size_bytes = codec::encode(block.as_ref()).len() as u64;
            self.orphans.hold(now, block, from.clone(), size_bytes);
            self.request_blocks(now, from, io)?;
            return Ok(Verdict::Ignore);
        }
        let verdict =
            self.run(now, Event::Block { from: Origin::Peer(from.clone()), block: Arc::clone(&block) }, io)?;
        // Relayed only if it joined the current chain: a side block that cannot be seen to win
        // is not worth every node's bandwidth.
        if verdict == Verdict::Accept && self.store.canonical_hash(block.header.height)? != Some(hash) {
            return Ok(Verdict::Ignore);
        }
        Ok(verdict)
    }

    /// Asks `peer` for the blocks after our chain, unless it was asked recently.
    fn request_blocks(&mut self, now: Timestamp, peer: &PeerId, io: &mut dyn Io) -> Result<(), StoreError> {
        if let Some(last) = self.sync_requests.get(peer)
            && now.as_millis() < last.as_millis().saturating_add(limits::SYNC_REQUEST_INTERVAL_MS)
        {
            return Ok(());
        }
        if self.sync_requests.len() >= limits::SYNC_PEERS_TRACKED_MAX as usize {
            self.sync_requests.clear();
        }
        self.sync_requests.insert(peer.clone(), now);
        io.send(peer, NetMessage::GetBlocks { locator: self.locator()? });
        Ok(())
    }

    /// Hashes of the current chain, exponentially spaced back from the head, ending at genesis.
    fn locator(&self) -> Result<Vec<Hash>, StoreError> {
        let mut locator = Vec::new();
        let mut height = self.store.head().height.get();
        let mut step: u64 = 1;
        loop {
            if let Some(hash) = self.store.canonical_hash(Height::new(height))? {
                locator.push(hash);
            }
            if height == 0 || locator.len().saturating_add(1) >= limits::SYNC_LOCATOR_HASHES_MAX as usize {
                break;
            }
            height = height.saturating_sub(step);
            if locator.len() >= 8 {
                step = step.saturating_mul(2);
            }
        }
        if height != 0 {
            locator.push(self.store.genesis_hash());
        }
        Ok(locator)
    }

    fn serve_blocks(&self, to: &PeerId, locator: &[Hash], io: &mut dyn Io) -> Result<(), StoreError> {
        for block in self.blocks_after(locator)? {
            io.send(to, NetMessage::Block(Arc::new(block)));
        }
        Ok(())
    }

    /// The canonical blocks after the first `locator` hash on this node's chain, at most
    /// `SYNC_BLOCKS_PER_RESPONSE_MAX`; none if no locator hash is canonical here.
    pub fn blocks_after(&self, locator: &[Hash]) -> Result<Vec<Block>, StoreError> {
        let mut start = None;
        for hash in locator.iter().take(limits::SYNC_LOCATOR_HASHES_MAX as usize) {
            if let Some(header) = self.store.header(hash)?
                && self.store.canonical_hash(header.height)? == Some(*hash)
            {
                start = Some(header.height);
                break;
            }
        }
        let mut blocks = Vec::new();
        let Some(mut height) = start else { return Ok(blocks) };
        for _ in 0..limits::SYNC_BLOCKS_PER_RESPONSE_MAX {
            let Some(next) = height.next() else { break };
            let Some(block) = self.store.canonical_block(next)? else { break };
            blocks.push(block);
            height = next;
        }
        Ok(blocks)
    }

    /// Steps the engine with `first` and everything its actions cause. Returns the verdict on
    /// the first event's input.
    fn run(&mut self, now: Timestamp, first: Event, io: &mut dyn Io) -> Result<Verdict, DriverError> {
        let sender = event_peer(&first);
        // Who sent each block handled in this run (the input's, and orphans it released), so a
        // block the store rejects costs the right peer.
        let mut origins: BTreeMap<Hash, PeerId> = BTreeMap::new();
        let mut queue = VecDeque::from([first]);
        let mut verdict = Verdict::Accept;
        let mut steps: u32 = 0;
        while let Some(event) = queue.pop_front() {
            steps = steps.saturating_add(1);
            if steps > limits::DRIVER_EVENTS_PER_INPUT_MAX {
                return Err(DriverError::EventLoop);
            }
            let culprit = match &event {
                Event::BlockRejected { hash, reason } => {
                    // An unknown hash is an ancestor on the input's branch: the input's sender.
                    let peer = origins.get(hash).cloned().or_else(|| sender.clone());
                    if let Some(peer) = &peer
                        && reason.is_peer_fault()
                    {
                        io.penalize(peer, Penalty::invalid(reason));
                    }
                    peer
                }
                Event::Block { from: Origin::Peer(peer), block } => {
                    origins.insert(block.hash(), peer.clone());
                    Some(peer.clone())
                }
                other => event_peer(other),
            };
            let rejected_block = matches!(&event, Event::BlockRejected { reason, .. } if reason.is_peer_fault());
            // A peer's block off the head's tip may end up stored as a side block: only within
            // the peer's allowance, charged once it is stored off the current chain.
            let side_block = match &event {
                Event::Block { from: Origin::Peer(peer), block } if block.header.parent != self.store.head_hash() => {
                    let size_bytes = codec::encode(block.as_ref()).len() as u64;
                    if self.side_blocks.left(peer, now) < size_bytes {
                        tracing::debug!(%peer, block = %block.hash(), "side-branch allowance used up: block ignored");
                        if steps == 1 {
                            verdict = Verdict::Ignore;
                        }
                        continue;
                    }
                    let known = self.store.contains_block(&block.hash())?;
                    (!known).then(|| (peer.clone(), Arc::clone(block), size_bytes))
                }
                _ => None,
            };
            let mut actions = Vec::new();
            let result = self.engine.step(&ChainView { store: &self.store }, now, event, &mut actions);
            let mut followups = Followups::default();
            for action in actions {
                self.execute(action, io, &mut followups)?;
            }
            if let Some((peer, block, size_bytes)) = side_block {
                let hash = block.hash();
                if self.store.contains_block(&hash)? && self.store.canonical_hash(block.header.height)? != Some(hash) {
                    self.side_blocks.charge(&peer, now, size_bytes);
                }
            }
            for tx in followups.relay {
                io.broadcast(NetMessage::Tx(Box::new(tx)));
            }
            // The engine learns what its actions did before it sees anything else, so its view
            // of the head never lags the store's; released orphans wait their turn.
            for result in followups.results.into_iter().rev() {
                queue.push_front(result);
            }
            queue.extend(followups.released);
            let blamed = match result {
                Ok(()) => rejected_block,
                Err(error @ EngineError::Chain(_)) => return Err(DriverError::Engine(error)),
                Err(error) if error.is_peer_fault() => {
                    if let Some(peer) = &culprit {
                        io.penalize(peer, Penalty::invalid(&error));
                    }
                    true
                }
                Err(_) => {
                    if steps == 1 {
                        verdict = Verdict::Ignore;
                    }
                    false
                }
            };
            if blamed && culprit.is_some() && culprit == sender {
                verdict = Verdict::Reject;
            }
        }
        Ok(verdict)
    }

    fn execute(&mut self, action: Action, io: &mut dyn Io, followups: &mut Followups) -> Result<(), DriverError> {
        match action {
            Action::Broadcast(outbound) => io.broadcast(net_message(outbound)),
            Action::Send { to, message } => io.send(&to, net_message(message)),
            Action::FetchBlock { hash, from } => match from {
                Some(peer) => io.send(&peer, NetMessage::GetBlock { hash }),
                None => io.broadcast(NetMessage::GetBlock { hash }),
            },
            Action::SetTimer { timer, at } => io.set_timer(Timer::Engine(timer), at),
            Action::Propose { parent, timestamp, proposer, votes } => {
                // A proposal for a head that has moved on is stale: a newer one follows.
                if parent == self.store.head_hash() {
                    let block = self.build(timestamp, proposer, votes)?;
                    followups.results.push(Event::Built(Arc::new(block)));
                }
            }
            Action::StartMining { template } => io.start_mining(template),
            Action::StopMining => io.stop_mining(),
            Action::Persist { key, value, durability } => {
                self.store.put_engine_record(&key, &value, durability == Durability::Synced)?;
            }
            Action::PersistBatch { records, durability } => {
                self.store.put_engine_records(&records, durability == Durability::Synced)?;
            }
            Action::AddBlock { block, make_head, finalizes } => {
                self.add_block(block, make_head, finalizes, followups)?
            }
            Action::SetHead { hash } => self.set_head(hash, followups)?,
            Action::SubmitEvidence(evidence) => self.submit_evidence(*evidence, io)?,
            Action::Penalize { peer, misbehaviour, reason } => io.penalize(&peer, Penalty { misbehaviour, reason }),
            Action::AllowPeers(peers) => io.allow_peers(peers),
        }
        Ok(())
    }

    /// Puts evidence into the mempool as a transaction from the node's key (at the minimum fee,
    /// after the node's pending transactions) and gossips it. A node without a key, or whose
    /// account cannot pay the fee, only logs it: someone else will report it.
    fn submit_evidence(&mut self, evidence: Evidence, io: &mut dyn Io) -> Result<(), DriverError> {
        let offender = evidence.offender();
        let Some(key) = &self.key else {
            tracing::info!(%offender, "equivocation seen; this node has no key to report it");
            return Ok(());
        };
        let sender = key.address();
        let committed = state::read_account(&self.store.view(), &sender)?.nonce;
        let genesis = self.store.genesis();
        let tx = Transaction {
            chain_id: genesis.chain_id.clone(),
            sender,
            nonce: self.mempool.next_nonce(&sender, committed),
            fee: genesis.params.min_tx_fee,
            kind: TxKind::Evidence(Box::new(evidence)),
        }
        .sign(key);
        match self.mempool.insert(tx, &self.store.view(), self.store.genesis()) {
            Ok(admitted) => {
                tracing::warn!(%offender, "equivocation seen: evidence submitted");
                relay_ready(admitted, io);
            }
            Err(MempoolError::Read(error)) => return Err(error.into()),
            Err(error) => tracing::warn!(%offender, %error, "equivocation seen; the evidence was not admitted"),
        }
        Ok(())
    }

    /// Builds a block on the head from the mempool, in one pass: a transaction the state
    /// rejects is left out and dropped from the mempool.
    fn build(
        &mut self,
        timestamp: Timestamp,
        proposer: chorus_chain::Address,
        votes: Vec<Vote>,
    ) -> Result<Block, DriverError> {
        let txs = self.mempool.select(&self.store.view())?;
        let template = BlockTemplate { txs, votes, proposer, timestamp };
        match state::propose_block(&self.store.view(), self.store.genesis(), self.store.head(), template) {
            Ok(proposal) => {
                for (tx, rejection) in &proposal.rejected {
                    tracing::debug!(tx = %tx.hash(), %rejection, "dropped from the mempool: the head state rejects it");
                    self.mempool.remove_tx(tx);
                }
                Ok(proposal.block)
            }
            Err(BlockError::Read(error)) => Err(error.into()),
            Err(error) => Err(StoreError::Damaged { what: format!("building on the head failed: {error}") }.into()),
        }
    }

    fn add_block(
        &mut self,
        block: Arc<Block>,
        make_head: bool,
        finalizes: Option<(Height, Hash)>,
        followups: &mut Followups,
    ) -> Result<(), DriverError> {
        let hash = block.hash();
        let prechecked = self.prechecked.take().filter(|checked| checked.block_hash() == hash);
        let known = self.store.contains_block(&hash)?;
        if make_head && block.header.parent == self.store.head_hash() {
            let imported = match prechecked {
                Some(checked) => self.store.import_block_prechecked(&block, finalizes, checked),
                // The mempool's transactions had their signatures checked when admitted.
                None => {
                    let mempool = &self.mempool;
                    self.store.import_block_with(&block, finalizes, &|hash| mempool.contains(hash))
                }
            };
            match imported {
                Ok(()) => self.head_moved(vec![], vec![hash], followups)?,
                Err(StoreError::Invalid { error, .. } | StoreError::KnownInvalid { error, .. }) => {
                    followups.results.push(Event::BlockRejected { hash, reason: BlockRejection::Invalid(error) });
                    return Ok(());
                }
                Err(error) => return Err(error.into()),
            }
        } else {
            match self.store.store_block_finalizing(&block, finalizes) {
                Ok(()) => {}
                Err(StoreError::Invalid { error, .. } | StoreError::KnownInvalid { error, .. }) => {
                    followups.results.push(Event::BlockRejected { hash, reason: BlockRejection::Invalid(error) });
                    return Ok(());
                }
                Err(StoreError::ConflictsWithFinal { fork_height, final_height, final_hash, .. }) => {
                    let reason = BlockRejection::ConflictsWithFinal { fork_height, final_height, final_hash };
                    followups.results.push(Event::BlockRejected { hash, reason });
                    return Ok(());
                }
                Err(error) => return Err(error.into()),
            }
            if make_head {
                self.set_head(hash, followups)?;
            }
        }
        if !known {
            self.blocks_stored = self.blocks_stored.saturating_add(1);
        }
        // Orphans waiting on this block can now be judged.
        for (child, from) in self.orphans.take_children(&hash) {
            followups.released.push(Event::Block { from: Origin::Peer(from), block: child });
        }
        Ok(())
    }

    fn set_head(&mut self, hash: Hash, followups: &mut Followups) -> Result<(), DriverError> {
        match self.store.reorg_to(hash) {
            Ok(change) => self.head_moved(change.rolled_back, change.applied, followups),
            Err(StoreError::ReorgFailed { failed, error, moved, .. }) => {
                if *moved != HeadChange::default() {
                    self.head_moved(moved.rolled_back, moved.applied, followups)?;
                }
                followups.results.push(Event::BlockRejected { hash: failed, reason: BlockRejection::Invalid(error) });
                Ok(())
            }
            Err(StoreError::ReorgTooDeep { depth, .. }) => {
                followups.results.push(Event::BlockRejected { hash, reason: BlockRejection::ReorgTooDeep { depth } });
                Ok(())
            }
            Err(StoreError::ConflictsWithFinal { fork_height, final_height, final_hash, .. }) => {
                let reason = BlockRejection::ConflictsWithFinal { fork_height, final_height, final_hash };
                followups.results.push(Event::BlockRejected { hash, reason });
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    fn head_moved(
        &mut self,
        rolled_back: Vec<Hash>,
        applied: Vec<Hash>,
        followups: &mut Followups,
    ) -> Result<(), DriverError> {
        // Oldest block first (`rolled_back` starts at the old head), so each sender's
        // transactions come back in nonce order.
        let mut returned = Vec::new();
        for hash in rolled_back.iter().rev() {
            if let Some(block) = self.store.block(hash)? {
                returned.extend(block.body.txs);
            }
        }
        if let Some((height, hash)) = self.store.finalized() {
            // The store refuses it; this says so where the head moves.
            assert_eq!(
                self.store.canonical_hash(height)?,
                Some(hash),
                "invariant: the head moved below the final block {hash} at {height}"
            );
        }
        let head = self.store.head().height;
        let taken = self.mempool.on_head_change(&self.store.view(), self.store.genesis(), head, returned)?;
        followups.relay.extend(taken);
        followups.results.push(Event::HeadChanged {
            head: self.store.head_hash(),
            height: self.store.head().height,
            rolled_back,
            applied,
        });
        Ok(())
    }

    /// The last final block, as the store keeps it (across restarts).
    pub fn finalized(&self) -> Option<(Height, Hash)> {
        self.store.finalized()
    }
}

/// What executing one step's actions produced for the engine.
#[derive(Default)]
struct Followups {
    /// Results of the actions (built block, head change, rejection), in order.
    results: Vec<Event>,
    /// Orphans whose parent is now stored.
    released: Vec<Event>,
    /// Transactions a reorg returned to the mempool, to relay: the winning chain's producers
    /// may never have seen them.
    relay: Vec<SignedTransaction>,
}

/// Gossips the transactions an admission made ready, and returns the admitted one's hash.
fn relay_ready(admitted: Admitted, io: &mut dyn Io) -> Hash {
    for tx in admitted.ready {
        io.broadcast(NetMessage::Tx(Box::new(tx)));
    }
    admitted.hash
}

/// The peer an event came from, if it came from one.
fn event_peer(event: &Event) -> Option<PeerId> {
    match event {
        Event::Block { from: Origin::Peer(peer), .. } => Some(peer.clone()),
        Event::Header { from, .. } | Event::Message { from, .. } => Some(from.clone()),
        _ => None,
    }
}

fn net_message(outbound: Outbound) -> NetMessage {
    match outbound {
        Outbound::Block(block) => NetMessage::Block(block),
        Outbound::Header(header) => NetMessage::Header(header),
        Outbound::Message(message) => NetMessage::Engine(message),
    }
}

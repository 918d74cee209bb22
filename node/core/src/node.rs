//! The node as its peers see it: the [`Driver`] and [`RangeSync`] behind gossip topics and the
//! sync protocol.
//!
//! The host (`chorusd` over libp2p, or the simulator over its simulated network) hands every
//! input to a [`Node`] with the time it arrived, then carries out the [`Effect`]s the node asks
//! for, in order. The mapping from the driver's messages onto the network lives here, so both
//! hosts run it:
//! - blocks, transactions and engine messages are gossip on their [`Topic`], as canonical
//!   encodings; what arrives on a topic is decoded here (undecodable bytes are the sender's
//!   fault) and judged by the driver, and the [`Verdict`] says whether to forward it;
//! - an engine message the driver sends to one peer is a direct message ([`Effect::Direct`],
//!   or at once through the host's [`Express`] lane: [`Node::set_express`]);
//!   what arrives that way is decoded and judged the same, and never forwarded;
//! - an engine message that arrives by the other route than its own (`EngineMessage::route`:
//!   a vote sent directly, a Raft message gossiped) is the sender's fault;
//! - the driver's `GetBlocks { locator }` and `GetBlock` become sync requests
//!   (`BlocksAfter`, `Block`) to that peer; the blocks of the answer go to the driver as if the
//!   peer had sent them;
//! - the periodic `Status` becomes a `Status` request to each connected peer (gossip would
//!   de-duplicate equal heads); a peer's head feeds range sync, and near the head the driver's
//!   locator request takes over (it also finds fork points);
//! - range sync's requests are `Blocks { from, count }`; their answers wait in its reorder
//!   buffer and reach the driver in height order;
//! - peers' sync requests are answered from the store ([`Node::serve`]).
//!
//! Invariant: like the driver, a node opens no socket, reads no clock and spawns no task; the
//! thread [`Node`] starts to check synced blocks ahead computes a pure function and is joined
//! within the input (see the crate's docs).

use std::collections::BTreeSet;
use std::sync::Arc;

use chorus_chain::block::{Block, Verified, check_block_stateless, import_with_checks_ahead};
use chorus_chain::codec::{self, Canonical};
use chorus_chain::limits;
use chorus_chain::primitives::{ChainId, Height, Timestamp};
use chorus_chain::tx::{self, SignedTransaction, TxError, VerifiedTx};
use chorus_chain::wire::{Misbehaviour, SyncRequest, SyncResponse, Topic, TxBatch, Verdict};
use chorus_consensus::raft::membership::{ChangeProposed, MembershipRefusal, MembershipRequest};
use chorus_consensus::{EngineMessage, PeerId, Route};
use chorus_store::StoreError;

use crate::driver::{self, Driver, DriverError, Express, NetMessage, Outbox, Penalty, Submitted, Timer};
use crate::recent::RecentHashes;
use crate::sync::{Progress, RangeSync};

/// What a node asks its host to do, in the order it must be done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Gossip `data` (a canonical encoding) on `topic`.
    Publish {
        topic: Topic,
        data: Vec<u8>,
    },
    /// Send `request` to `peer`; hand the answer, or the failure, to [`Node::on_answer`] with
    /// the same request.
    Request {
        peer: PeerId,
        request: SyncRequest,
    },
    /// Send `data` (an engine message's canonical encoding) to `peer` alone, on the direct
    /// protocol; hand what peers send this way to [`Node::on_direct`].
    Direct {
        peer: PeerId,
        data: Vec<u8>,
    },
    /// `peer` misbehaved: it costs reputation.
    Report {
        peer: PeerId,
        penalty: Penalty,
    },
    /// Call [`Node::on_timer`] once the node's clock reads `at`, replacing a pending `timer`.
    SetTimer {
        timer: Timer,
        at: Timestamp,
    },
    /// Search nonces for this template, replacing any running search; a find comes back
    /// through [`Node::on_mined`].
    StartMining(Arc<Block>),
    StopMining,
    /// Only these peers may connect from now on (a permissioned engine's members); close
    /// connections to any other. Comes before the effects of the same input.
    AllowPeers(Vec<PeerId>),
}

/// Why a sync request got no answer (the host's transport error, reduced to what the node
/// acts on: either way the request is given to another peer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestFailed {
    #[error("the peer did not answer in time")]
    Timeout,
    #[error("the request could not be sent or answered")]
    Failed,
}

#[derive(Debug)]
pub struct Node {
    driver: Driver,
    sync: RangeSync,
    connected: BTreeSet<PeerId>,
    /// What the driver asked for during the current input.
    outbox: Outbox,
    /// What the host has not taken yet.
    effects: Vec<Effect>,
    /// Transactions to relay, encoded, waiting (up to `limits::TX_RELAY_DELAY_MS`) to share
    /// gossip messages; their size; whether the relay timer is set.
    relay: Vec<Vec<u8>>,
    relay_bytes: u64,
    relay_due: bool,
    /// Transactions relayed lately, not relayed again (`limits::TX_RELAYED_REMEMBERED_MS`,
    /// `limits::TX_RELAYED_REMEMBERED_MAX`).
    relayed: RecentHashes,
}

impl Node {
    pub fn new(driver: Driver) -> Node {
        Node {
            driver,
            sync: RangeSync::default(),
            connected: BTreeSet::new(),
            outbox: Outbox::default(),
            effects: Vec::new(),
            relay: Vec::new(),
            relay_bytes: 0,
            relay_due: false,
            relayed: RecentHashes::new(limits::TX_RELAYED_REMEMBERED_MAX),
        }
    }

    pub fn driver(&self) -> &Driver {
        &self.driver
    }

    /// Engine messages for one peer leave through `express` the moment the driver sends them
    /// ([`Express`]) instead of as [`Effect::Direct`] after the input.
    pub fn set_express(&mut self, express: Express) {
        self.outbox.express = Some(express);
    }

    /// Access for a host's own reads (e.g. the chain's work); inputs go through the node.
    pub fn driver_mut(&mut self) -> &mut Driver {
        &mut self.driver
    }

    /// What the node asked for since the last call, in order.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// Blocks stored since start (for metrics): [`Driver::blocks_stored`].
    pub fn imported(&self) -> u64 {
        self.driver.blocks_stored()
    }

    pub fn connected(&self) -> &BTreeSet<PeerId> {
        &self.connected
    }

    /// Range-sync progress while the node is more than one range behind its best peer.
    pub fn sync_progress(&self, now: Timestamp) -> Option<Progress> {
        let head = self.driver.store().head().height;
        if !self.sync.is_syncing(head) {
            return None;
        }
        self.sync.progress(head, now.as_millis())
    }

    pub fn start(&mut self, now: Timestamp) -> Result<(), DriverError> {
        let result = self.driver.start(now, &mut self.outbox);
        self.finish_input(now);
        result
    }

    pub fn on_timer(&mut self, now: Timestamp, timer: Timer) -> Result<(), DriverError> {
        if timer == Timer::TxRelay {
            self.relay_due = false;
            self.publish_relay();
            self.finish_input(now);
            return Ok(());
        }
        let result = self.driver.on_timer(now, timer, &mut self.outbox);
        self.finish_input(now);
        result
    }

    /// The miner found a nonce. A find for a template a better head replaced is dropped.
    pub fn on_mined(&mut self, now: Timestamp, block: Arc<Block>) -> Result<(), DriverError> {
        let result = self.driver.on_mined(now, block, &mut self.outbox);
        self.finish_input(now);
        result
    }

    /// A client's transaction: admitted to the mempool and gossiped. The outer error is the
    /// node's failure, the inner one the client's answer.
    pub fn submit_tx(&mut self, now: Timestamp, tx: SignedTransaction) -> Result<Submitted, DriverError> {
        let result = self.driver.submit_tx(now, tx, &mut self.outbox);
        self.finish_input(now);
        result
    }

    /// [`Node::submit_tx`] for a transaction whose signatures the caller checked.
    pub fn submit_verified_tx(&mut self, now: Timestamp, tx: VerifiedTx) -> Result<Submitted, DriverError> {
        let result = self.driver.submit_verified_tx(now, tx, &mut self.outbox);
        self.finish_input(now);
        result
    }

    /// An operator's membership change (Raft): [`Driver::change_membership`].
    pub fn change_membership(
        &mut self,
        now: Timestamp,
        request: MembershipRequest,
    ) -> Result<Result<ChangeProposed, MembershipRefusal>, DriverError> {
        let result = self.driver.change_membership(now, request, &mut self.outbox);
        self.finish_input(now);
        result
    }

    /// A connection to `peer` opened: ask for its head.
    pub fn on_peer_connected(&mut self, now: Timestamp, peer: PeerId) {
        self.effects.push(Effect::Request { peer: peer.clone(), request: SyncRequest::Status });
        self.connected.insert(peer);
        self.finish_input(now);
    }

    /// The connection to `peer` closed (or it was banned): its ranges go to others.
    pub fn on_peer_gone(&mut self, now: Timestamp, peer: &PeerId) {
        self.connected.remove(peer);
        self.sync.on_peer_gone(peer);
        self.finish_input(now);
    }

    /// A gossip message on `topic` from `from`: decoded, judged by the driver. Penalties the
    /// driver asks for against the sender become the verdict's reason instead of a second
    /// report.
    pub fn on_gossip(
        &mut self,
        now: Timestamp,
        from: &PeerId,
        topic: Topic,
        data: &[u8],
    ) -> Result<Verdict, DriverError> {
        let message = match topic {
            Topic::Blocks => decode(data).map(|block| NetMessage::Block(Arc::new(block))),
            Topic::Transactions => {
                let chain_id = &self.driver.store().genesis().chain_id;
                let mempool = self.driver.mempool();
                let checked = check_gossip_txs(&[data], chain_id, &|hash| mempool.contains(hash))
                    .pop()
                    .unwrap_or(CheckedTxs::Undecodable);
                return self.on_checked_txs(now, from, checked);
            }
            Topic::Consensus => decode::<EngineMessage>(data).map(NetMessage::Engine),
        };
        let Some(message) = message else {
            self.finish_input(now);
            return Ok(Verdict::Reject(Misbehaviour::Undecodable));
        };
        if let NetMessage::Engine(engine_message) = &message
            && engine_message.route() != Route::Gossip
        {
            tracing::debug!(peer = %from, "penalizing peer: an engine message that goes direct came by gossip");
            self.finish_input(now);
            return Ok(Verdict::Reject(Misbehaviour::Invalid));
        }
        self.judge_gossip(now, from, message)
    }

    /// A gossip message of transactions [`check_gossip_txs`] checked (off the task that owns
    /// the node, in `chorusd`): each valid one admitted. The message is never forwarded as it
    /// came (`Ignore`): the node relays what it admitted in its own messages. It is rejected
    /// when it does not decode, holds a transaction invalid on its own (a peer relays only what
    /// it admitted), or the driver rejects one of its transactions.
    pub fn on_checked_txs(
        &mut self,
        now: Timestamp,
        from: &PeerId,
        checked: CheckedTxs,
    ) -> Result<Verdict, DriverError> {
        let CheckedTxs::Decoded(results) = checked else {
            self.finish_input(now);
            return Ok(Verdict::Reject(Misbehaviour::Undecodable));
        };
        let mut rejected = false;
        let mut invalid = None;
        for result in results {
            match result {
                Ok(tx) => match self.on_peer_message(now, from, NetMessage::VerifiedTx(Box::new(tx))) {
                    Ok(verdict) => rejected |= verdict == driver::Verdict::Reject,
                    Err(error) => {
                        self.finish_input(now);
                        return Err(error);
                    }
                },
                Err(error) => {
                    invalid.get_or_insert(error);
                }
            }
        }
        let verdict = match (invalid, rejected) {
            (Some(error), _) => {
                tracing::debug!(peer = %from, %error, "gossiped transaction invalid");
                self.take_penalty(from);
                Verdict::Reject(Misbehaviour::Invalid)
            }
            (None, true) => Verdict::Reject(self.take_penalty(from).unwrap_or(Misbehaviour::Invalid)),
            (None, false) => Verdict::Ignore,
        };
        self.finish_input(now);
        Ok(verdict)
    }

    /// Takes the penalties the driver asked for against `from` during this input: the verdict
    /// reports the first one's kind instead of a second report.
    fn take_penalty(&mut self, from: &PeerId) -> Option<Misbehaviour> {
        let mut kind = None;
        self.outbox.penalties.retain(|(peer, penalty)| {
            if peer != from {
                return true;
            }
            // The verdict carries the kind only: the reason is logged here, as the host logs a
            // report's.
            tracing::debug!(%peer, misbehaviour = %penalty.misbehaviour, reason = %penalty.reason, "penalizing peer");
            kind.get_or_insert(penalty.misbehaviour);
            false
        });
        kind
    }

    /// The driver's verdict on a decoded gossip message, as gossip takes it.
    fn judge_gossip(&mut self, now: Timestamp, from: &PeerId, message: NetMessage) -> Result<Verdict, DriverError> {
        // A block's height counts as the sender's head only once the block is stored (valid):
        // a claim alone never steers range sync.
        let block = match &message {
            NetMessage::Block(block) => Some((block.hash(), block.header.height)),
            _ => None,
        };
        let verdict = self.on_peer_message(now, from, message);
        if let Some((hash, height)) = block
            && verdict.is_ok()
            && self.driver.store().contains_block(&hash)?
        {
            self.sync.on_peer_head(from.clone(), height);
        }
        let verdict = match verdict {
            Ok(driver::Verdict::Accept) => Ok(Verdict::Accept),
            Ok(driver::Verdict::Ignore) => Ok(Verdict::Ignore),
            // Only transactions are deferred, and they never reach here.
            Ok(driver::Verdict::Defer) => Ok(Verdict::Ignore),
            Ok(driver::Verdict::Reject) => {
                Ok(Verdict::Reject(self.take_penalty(from).unwrap_or(Misbehaviour::Invalid)))
            }
            Err(error) => Err(error),
        };
        self.finish_input(now);
        verdict
    }

    /// The answer to a request this node sent (an [`Effect::Request`]).
    pub fn on_answer(
        &mut self,
        now: Timestamp,
        peer: &PeerId,
        request: &SyncRequest,
        answer: Result<SyncResponse, RequestFailed>,
    ) -> Result<(), DriverError> {
        let result = self.handle_answer(now, peer, request, answer);
        self.finish_input(now);
        result
    }

    fn handle_answer(
        &mut self,
        now: Timestamp,
        peer: &PeerId,
        request: &SyncRequest,
        answer: Result<SyncResponse, RequestFailed>,
    ) -> Result<(), DriverError> {
        if let SyncRequest::Blocks { from, .. } = request {
            match answer {
                Ok(SyncResponse::Blocks(blocks)) => self.sync.on_blocks(peer.clone(), *from, blocks),
                Ok(_) | Err(_) => self.sync.on_failure(peer, *from),
            }
            let ready = self.sync.take_ready(self.driver.store().head().height);
            return self.import_range(now, ready);
        }
        let Ok(response) = answer else { return Ok(()) };
        let messages: Vec<NetMessage> = match response {
            SyncResponse::Blocks(blocks) => {
                blocks.into_iter().map(|block| NetMessage::Block(Arc::new(block))).collect()
            }
            SyncResponse::Block(Some(block)) => vec![NetMessage::Block(Arc::new(*block))],
            SyncResponse::Status { head, height } => {
                self.sync.on_peer_head(peer.clone(), height);
                // A peer more than a range ahead is fetched from by range sync; a nearer one by
                // the driver's locator request. Decided per peer, so one peer's claim cannot
                // keep the others' heads from the driver.
                if self.sync.fetches_from(peer, self.driver.store().head().height) {
                    Vec::new()
                } else {
                    vec![NetMessage::Status { head, height }]
                }
            }
            SyncResponse::Block(None) | SyncResponse::Headers(_) | SyncResponse::Refused(_) => Vec::new(),
        };
        for message in messages {
            self.on_peer_message(now, peer, message)?;
        }
        Ok(())
    }

    /// Range-synced blocks, in height order, each handed to the driver as its sender's
    /// message. Their stateless checks (their signatures) run on another core, ahead of the
    /// driver's imports, as `Store::import_blocks` does ([`import_with_checks_ahead`]); a block
    /// whose checks fail is checked again by its import, which says why. Only a block whose
    /// header passes the engine's checks alone (PoW: its seal) is checked ahead, so a forged
    /// range costs its sender what it costs the node.
    fn import_range(&mut self, now: Timestamp, ready: Vec<(PeerId, Block)>) -> Result<(), DriverError> {
        let chain_id = self.driver.store().genesis().chain_id.clone();
        let engine = self.driver.engine();
        let ready: Vec<(PeerId, Arc<Block>, bool)> = ready
            .into_iter()
            .map(|(peer, block)| {
                let worth_checking = engine.check_header_alone(&block.header).is_ok();
                (peer, Arc::new(block), worth_checking)
            })
            .collect();
        import_with_checks_ahead(
            &ready,
            |(_, block, worth_checking)| worth_checking.then(|| check_block_stateless(block, &chain_id)),
            |(sender, block, _), checked| {
                self.driver.set_prechecked(checked.and_then(Result::ok));
                let handled = self.on_peer_message(now, sender, NetMessage::Block(Arc::clone(block)));
                self.driver.set_prechecked(None);
                handled.map(|_| ())
            },
        )
    }

    /// Answers a peer's sync request from the store.
    pub fn serve(&self, request: &SyncRequest) -> Result<SyncResponse, StoreError> {
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

    /// Hands a peer's message to the driver.
    fn on_peer_message(
        &mut self,
        now: Timestamp,
        from: &PeerId,
        message: NetMessage,
    ) -> Result<driver::Verdict, DriverError> {
        self.driver.on_message(now, from, message, &mut self.outbox)
    }

    /// A direct message from `from` (the peer the transport authenticated): an engine message
    /// for this node alone. Undecodable bytes, a message that travels by gossip (a vote), or a
    /// message the engine finds invalid are the sender's fault ([`Effect::Report`]).
    pub fn on_direct(&mut self, now: Timestamp, from: &PeerId, data: &[u8]) -> Result<(), DriverError> {
        let refused = |misbehaviour, reason: &str| (from.clone(), Penalty { misbehaviour, reason: reason.to_owned() });
        match decode::<EngineMessage>(data) {
            Some(message) if message.route() == Route::Direct => {
                self.on_peer_message(now, from, NetMessage::Engine(message))?;
            }
            Some(_) => self
                .outbox
                .penalties
                .push(refused(Misbehaviour::Invalid, "a direct message that travels by gossip (a finality vote)")),
            None => self.outbox.penalties.push(refused(Misbehaviour::Undecodable, "undecodable direct message")),
        }
        self.finish_input(now);
        Ok(())
    }

    /// Turns what the driver asked for during an input into effects, then adds the range
    /// requests range sync wants now.
    fn finish_input(&mut self, now: Timestamp) {
        let mut outbox = std::mem::take(&mut self.outbox);
        self.outbox.express = outbox.express.take();
        if let Some(peers) = outbox.allowlist {
            self.effects.push(Effect::AllowPeers(peers));
        }
        for message in outbox.broadcasts {
            let (topic, data) = match message {
                NetMessage::Block(block) => (Topic::Blocks, codec::encode(block.as_ref())),
                NetMessage::Tx(tx) => {
                    self.queue_relay(now, *tx);
                    continue;
                }
                NetMessage::VerifiedTx(tx) => {
                    self.queue_relay(now, tx.into_inner());
                    continue;
                }
                NetMessage::Engine(message) => (Topic::Consensus, codec::encode(&message)),
                NetMessage::Status { .. } => {
                    for peer in &self.connected {
                        self.effects.push(Effect::Request { peer: peer.clone(), request: SyncRequest::Status });
                    }
                    continue;
                }
                other @ (NetMessage::Header(_) | NetMessage::GetBlocks { .. } | NetMessage::GetBlock { .. }) => {
                    tracing::debug!(?other, "no gossip topic for this message");
                    continue;
                }
            };
            self.effects.push(Effect::Publish { topic, data });
        }
        for (peer, message) in outbox.sends {
            let request = match message {
                NetMessage::GetBlocks { locator } => SyncRequest::BlocksAfter { locator },
                NetMessage::GetBlock { hash } => SyncRequest::Block(hash),
                NetMessage::Engine(message) => {
                    self.effects.push(Effect::Direct { peer, data: codec::encode(&message) });
                    continue;
                }
                other => {
                    tracing::debug!(?other, %peer, "no direct message path for this message");
                    continue;
                }
            };
            self.effects.push(Effect::Request { peer, request });
        }
        for (timer, at) in outbox.timers {
            self.effects.push(Effect::SetTimer { timer, at });
        }
        for template in outbox.mining {
            self.effects.push(match template {
                Some(template) => Effect::StartMining(template),
                None => Effect::StopMining,
            });
        }
        if self.relay.len() >= limits::GOSSIP_TX_BATCH_TXS_MAX as usize
            || self.relay_bytes >= u64::from(limits::GOSSIP_TX_BATCH_BYTES_MAX)
        {
            self.publish_relay();
        } else if !self.relay.is_empty() && !self.relay_due {
            self.relay_due = true;
            let at = Timestamp::from_millis(now.as_millis().saturating_add(limits::TX_RELAY_DELAY_MS));
            self.effects.push(Effect::SetTimer { timer: Timer::TxRelay, at });
        }
        for (peer, penalty) in outbox.penalties {
            self.effects.push(Effect::Report { peer, penalty });
        }
        let head = self.driver.store().head().height;
        for (peer, from, count) in self.sync.next_requests(head, now.as_millis()) {
            self.effects.push(Effect::Request { peer, request: SyncRequest::Blocks { from, count } });
        }
    }
}

fn decode<T: Canonical>(bytes: &[u8]) -> Option<T> {
    codec::decode(bytes).ok()
}

impl Node {
    /// Queues `tx` to relay, unless it was relayed lately.
    fn queue_relay(&mut self, now: Timestamp, tx: SignedTransaction) {
        self.relayed.forget_before(now.as_millis().saturating_sub(limits::TX_RELAYED_REMEMBERED_MS));
        if !self.relayed.insert(now.as_millis(), tx.hash()) {
            return;
        }
        let encoded = codec::encode(&tx);
        self.relay_bytes = self.relay_bytes.saturating_add(encoded.len() as u64);
        self.relay.push(encoded);
    }

    /// Everything waiting to be relayed, in as few messages as the limits allow. A full
    /// message goes at once; the relay timer, if set, then finds the rest.
    fn publish_relay(&mut self) {
        self.relay_bytes = 0;
        for data in TxBatch::pack_encoded(std::mem::take(&mut self.relay)) {
            self.effects.push(Effect::Publish { topic: Topic::Transactions, data });
        }
    }
}

/// What [`check_gossip_txs`] made of one gossip message of transactions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckedTxs {
    /// Not a [`TxBatch`] within its limits.
    Undecodable,
    /// Each transaction, in order: checked, or invalid on its own (its chain, its signatures).
    Decoded(Vec<Result<VerifiedTx, TxError>>),
}

/// The checks of gossip messages of transactions that need no chain, for many messages at
/// once and in order: decoding, then each transaction's own rules with all their signatures in
/// one batch over all cores ([`tx::verify_many`]), but the signatures of those `verified` names
/// (the same transaction relayed by another peer). `chorusd` runs them off the task that owns
/// the node and hands each message's result to [`Node::on_checked_txs`].
pub fn check_gossip_txs(messages: &[&[u8]], chain_id: &ChainId, verified: Verified<'_>) -> Vec<CheckedTxs> {
    let decoded: Vec<Option<TxBatch>> = messages.iter().map(|bytes| TxBatch::decode(bytes)).collect();
    let counts: Vec<Option<usize>> = decoded.iter().map(|batch| batch.as_ref().map(|batch| batch.txs.len())).collect();
    let all = decoded.into_iter().flatten().flat_map(|batch| batch.txs).collect();
    let mut checked = tx::verify_many(all, chain_id, verified).into_iter();
    counts
        .into_iter()
        .map(|count| match count {
            None => CheckedTxs::Undecodable,
            Some(count) => CheckedTxs::Decoded(checked.by_ref().take(count).collect()),
        })
        .collect()
}

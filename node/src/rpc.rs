//! JSON-RPC 2.0 over HTTP and WebSocket on one port (jsonrpsee).
//!
//! [`METHODS`] is the one list of methods: the server registers exactly these (checked when the
//! module is built, so every start would fail otherwise) and `rpc.discover` returns the OpenRPC
//! document built from it. [`ErrorCode`] holds every
//! error code the node returns, each with a message that says what was wrong.

use std::net::SocketAddr;

use chorus_chain::block::Block;
use chorus_chain::codec;
use chorus_chain::primitives::{ChainId, Hash, Height};
use chorus_chain::tx::SignedTransaction;
use chorus_chain::{Address, limits};
use chorus_p2p::NetworkHandle;
use std::future::Future;
use std::sync::{Arc, Mutex};

use jsonrpsee::core::middleware::{Batch, Notification, RpcServiceBuilder, RpcServiceT};
use jsonrpsee::server::{MethodResponse, RpcModule, Server, ServerConfig, ServerHandle, SubscriptionMessage};
use jsonrpsee::types::{ErrorObjectOwned, Params, Request};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::daemon::{BlockRef, Call, ChainWork, HeadInfo, Input, TxStatus};
use chorus_node_core::MempoolError;

/// Error codes beyond JSON-RPC's own (-32700 parse error, -32600 invalid request, -32601
/// method not found, -32602 invalid params, -32603 internal). Stable: clients match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum ErrorCode {
    /// The transaction hex is not hex, or its bytes are not a canonical transaction.
    TxUndecodable = 1001,
    /// Fails a stateless check: signature, chain id, size, fields.
    TxInvalid = 1002,
    /// The sender's nonce is already used.
    TxNonceUsed = 1003,
    /// The nonce is further ahead than the mempool holds.
    TxNonceTooFarAhead = 1004,
    /// The fee is below the chain's minimum.
    TxFeeTooLow = 1005,
    /// The same transaction is already pending.
    TxDuplicate = 1006,
    /// A pending transaction has this nonce and the new fee is not enough higher.
    TxReplacementFeeTooLow = 1007,
    /// The sender has as many pending transactions as one sender may.
    TxSenderFull = 1008,
    /// The mempool is full and the fee does not beat the lowest pending one.
    MempoolFull = 1009,
    /// The sender's balance does not cover this transaction after its pending ones.
    TxInsufficientBalance = 1010,
    /// An address that is not `chorus1...` with a valid checksum.
    InvalidAddress = 2001,
    /// A hash that is not 64 hex digits.
    InvalidHash = 2002,
    /// A proof was asked for a height the node does not have.
    ProofUnavailable = 2003,
    /// This connection sent calls faster than `limits::RPC_CALLS_PER_SEC_MAX` allows.
    RateLimited = 3001,
    /// An admin method on an RPC server that does not listen on loopback.
    AdminNotAllowed = 4001,
    /// A peer id that does not parse.
    InvalidPeerId = 4002,
    /// The node is shutting down or its store failed.
    NodeUnavailable = 5001,
}

impl ErrorCode {
    pub fn error(self, message: impl Into<String>) -> ErrorObjectOwned {
        ErrorObjectOwned::owned(self as i32, message.into(), None::<()>)
    }
}

/// One method: its name, what it does, its parameters (name, JSON schema type, required) and
/// its result's schema type.
#[derive(Debug)]
pub struct MethodDef {
    pub name: &'static str,
    pub summary: &'static str,
    pub params: &'static [(&'static str, &'static str, bool)],
    pub result: &'static str,
}

pub const METHODS: &[MethodDef] = &[
    MethodDef {
        name: "chain_getHead",
        summary: "The head block: hash, height, timestamp, state root, and chainWork (PoW: the chain's cumulative work, 64 hex digits; null for engines without one).",
        params: &[],
        result: "object",
    },
    MethodDef {
        name: "chain_getBlock",
        summary: "A block by height (canonical) or hash, with its header fields, transactions and chainWork; null if unknown.",
        params: &[("id", "integer|string", true)],
        result: "object|null",
    },
    MethodDef {
        name: "chain_getFinalized",
        summary: "The last final block's height and hash; null when the engine has no finality (PoW).",
        params: &[],
        result: "object|null",
    },
    MethodDef {
        name: "state_getAccount",
        summary: "An account at the head (nonce, and nextNonce counting pending transactions); with proofHeight, a Merkle proof against that block's state root.",
        params: &[("address", "string", true), ("proofHeight", "integer", false)],
        result: "object",
    },
    MethodDef {
        name: "tx_submit",
        summary: "Submits a signed transaction (hex of its canonical encoding); returns its hash.",
        params: &[("tx", "string", true)],
        result: "string",
    },
    MethodDef {
        name: "tx_get",
        summary: "A transaction's status: unknown, pending, included (with height) or final.",
        params: &[("hash", "string", true)],
        result: "object",
    },
    MethodDef {
        name: "node_status",
        summary: "Engine, chain id, minimum fee, peer id, peers, head, finalized, syncing (with progress), mempool.",
        params: &[],
        result: "object",
    },
    MethodDef {
        name: "node_peers",
        summary: "Connected peers with their scores, and banned peers with the time left.",
        params: &[],
        result: "object",
    },
    MethodDef {
        name: "chain_subscribeHeads",
        summary: "Notifies every new head (chain_head), in order.",
        params: &[],
        result: "string",
    },
    MethodDef {
        name: "chain_unsubscribeHeads",
        summary: "Ends a chain_subscribeHeads subscription.",
        params: &[("subscription", "string", true)],
        result: "boolean",
    },
    MethodDef {
        name: "chain_subscribeFinalized",
        summary: "Notifies every newly final block (chain_finalized); silent under an engine without finality (PoW).",
        params: &[],
        result: "string",
    },
    MethodDef {
        name: "chain_unsubscribeFinalized",
        summary: "Ends a chain_subscribeFinalized subscription.",
        params: &[("subscription", "string", true)],
        result: "boolean",
    },
    MethodDef {
        name: "consensus_validators",
        summary: "The active set: validators and stakes, delegates and votes, or Raft members and leader; empty under PoW, where anyone may mine.",
        params: &[],
        result: "object",
    },
    MethodDef {
        name: "admin_banPeer",
        summary: "Disconnects a peer and refuses it for secs seconds (default a day). Served only when the RPC listens on loopback.",
        params: &[("peerId", "string", true), ("secs", "integer", false)],
        result: "null",
    },
    MethodDef {
        name: "admin_unbanPeer",
        summary: "Lifts a ban. Served only when the RPC listens on loopback.",
        params: &[("peerId", "string", true)],
        result: "null",
    },
    MethodDef { name: "rpc.discover", summary: "This API as an OpenRPC document.", params: &[], result: "object" },
];

/// The OpenRPC document of [`METHODS`].
pub fn openrpc() -> Value {
    let methods: Vec<Value> = METHODS
        .iter()
        .map(|method| {
            let params: Vec<Value> = method
                .params
                .iter()
                .map(|(name, kind, required)| json!({ "name": name, "required": required, "schema": schema(kind) }))
                .collect();
            json!({
                "name": method.name,
                "summary": method.summary,
                "params": params,
                "result": { "name": "result", "schema": schema(method.result) },
            })
        })
        .collect();
    json!({
        "openrpc": "1.2.6",
        "info": { "title": "Chorus node JSON-RPC", "version": env!("CARGO_PKG_VERSION") },
        "methods": methods,
    })
}

fn schema(kind: &str) -> Value {
    let types: Vec<&str> = kind.split('|').collect();
    if let [one] = types.as_slice() { json!({ "type": one }) } else { json!({ "type": types }) }
}

struct Context {
    /// Transactions are checked against it on the calling task, before the node's queue.
    chain_id: ChainId,
    inputs: mpsc::Sender<Input>,
    net: NetworkHandle,
    /// Admin methods run only when the server listens on loopback.
    admin: bool,
    heads: broadcast::Sender<HeadInfo>,
    finals: broadcast::Sender<(Height, Hash)>,
}

impl Context {
    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Call) -> Result<T, ErrorObjectOwned> {
        let (reply, answer) = oneshot::channel();
        let unavailable = || ErrorCode::NodeUnavailable.error("the node is shutting down");
        self.inputs.send(Input::Call(make(reply))).await.map_err(|_| unavailable())?;
        answer.await.map_err(|_| unavailable())
    }
}

/// Starts the server; returns where it listens and its handle (stop it to shut down).
pub async fn start(
    addr: SocketAddr,
    chain_id: ChainId,
    inputs: mpsc::Sender<Input>,
    net: NetworkHandle,
    heads: broadcast::Sender<HeadInfo>,
    finals: broadcast::Sender<(Height, Hash)>,
    registry: &mut Registry,
) -> anyhow::Result<(SocketAddr, ServerHandle)> {
    let config = ServerConfig::builder()
        .max_request_body_size(limits::RPC_REQUEST_BYTES_MAX)
        .max_response_body_size(limits::RPC_RESPONSE_BYTES_MAX)
        .max_connections(limits::RPC_CONNECTIONS_MAX)
        .max_subscriptions_per_connection(limits::RPC_SUBSCRIPTIONS_PER_CONNECTION_MAX)
        .build();
    let metrics = RpcMetrics::register(registry);
    let guard = RpcServiceBuilder::new().layer_fn(move |service| Guard::new(service, metrics.clone()));
    let server = Server::builder().set_config(config).set_rpc_middleware(guard).build(addr).await?;
    let bound = server.local_addr()?;
    let module = module(Context { chain_id, inputs, net, admin: bound.ip().is_loopback(), heads, finals })?;
    Ok((bound, server.start(module)))
}

fn module(context: Context) -> Result<RpcModule<Context>, jsonrpsee::core::RegisterMethodError> {
    let mut module = RpcModule::new(context);
    module.register_async_method("chain_getHead", |_, context, _| async move {
        let head = context.call(Call::Head).await?;
        Ok::<_, ErrorObjectOwned>(head_json(&head))
    })?;
    module.register_async_method("chain_getBlock", |params, context, _| async move {
        let reference = block_ref(&params)?;
        let block = context.call(|reply| Call::Block(reference, reply)).await?.map_err(store_error)?;
        Ok::<_, ErrorObjectOwned>(block.as_ref().map(|(block, work)| block_json(block, work)))
    })?;
    module.register_async_method("chain_getFinalized", |_, context, _| async move {
        let status = context.call(Call::Status).await?;
        Ok::<_, ErrorObjectOwned>(
            status.finalized.map(|(height, hash)| json!({ "height": height.get(), "hash": hash })),
        )
    })?;
    module.register_async_method("state_getAccount", |params, context, _| async move {
        let mut sequence = params.sequence();
        let address: String = sequence.next()?;
        let address = Address::parse(&address).map_err(|error| ErrorCode::InvalidAddress.error(format!("address {address:?}: {error}")))?;
        let proof_height: Option<u64> = sequence.optional_next()?;
        let info = context
            .call(|reply| Call::Account(address, proof_height.map(Height::new), reply))
            .await?
            .map_err(|error| match proof_height {
                Some(height) => ErrorCode::ProofUnavailable.error(format!("no proof at height {height}: {error}")),
                None => store_error(error),
            })?;
        let account = &info.account;
        Ok::<_, ErrorObjectOwned>(json!({
            "address": address,
            "balance": account.balance,
            "nonce": account.nonce,
            "nextNonce": info.next_nonce,
            "stake": account.stake,
            "unbonding": account.unbonding.iter().map(|entry| json!({ "amount": entry.amount, "releaseHeight": entry.release_at.get() })).collect::<Vec<_>>(),
            "votes": account.votes,
            "height": info.height.get(),
            "stateRoot": info.state_root,
            "proof": info.proof.map(|(height, root, proof)| json!({
                "height": height.get(),
                "stateRoot": root,
                "value": proof.value.as_ref().map(hex::encode),
                "proof": hex::encode(proof.proof_bytes()),
            })),
        }))
    })?;
    module.register_async_method("tx_submit", |params, context, _| async move {
        let text: String = params.one()?;
        let bytes = hex::decode(text.trim_start_matches("0x"))
            .map_err(|error| ErrorCode::TxUndecodable.error(format!("transaction is not hex: {error}")))?;
        let tx: SignedTransaction = codec::decode(&bytes)
            .map_err(|error| ErrorCode::TxUndecodable.error(format!("transaction does not decode: {error}")))?;
        // Signatures are checked here, on the RPC server's tasks (all cores), not by the one
        // task that owns the chain.
        let tx = tx.verified(&context.chain_id).map_err(|error| mempool_error(MempoolError::Invalid(error)))?;
        let hash = context.call(|reply| Call::Submit(Box::new(tx), reply)).await?.map_err(mempool_error)?;
        Ok::<_, ErrorObjectOwned>(hash.to_hex())
    })?;
    module.register_async_method("tx_get", |params, context, _| async move {
        let hash = hash_param(&params)?;
        let status = context.call(|reply| Call::Tx(hash, reply)).await?.map_err(store_error)?;
        Ok::<_, ErrorObjectOwned>(match status {
            TxStatus::Unknown => json!({ "hash": hash, "status": "unknown" }),
            TxStatus::Pending => json!({ "hash": hash, "status": "pending" }),
            TxStatus::Included { height, block, index, finalized } => json!({
                "hash": hash,
                "status": if finalized { "final" } else { "included" },
                "height": height.get(),
                "block": block,
                "index": index,
            }),
        })
    })?;
    module.register_async_method("node_status", |_, context, _| async move {
        let status = context.call(Call::Status).await?;
        let peers = context.net.peers().await.map_err(|error| ErrorCode::NodeUnavailable.error(error.to_string()))?;
        Ok::<_, ErrorObjectOwned>(json!({
            "engine": status.engine,
            "chainId": status.chain_id,
            "minTxFee": status.min_tx_fee,
            "peerId": context.net.local_peer_id().to_string(),
            "peers": peers.connected.len(),
            "head": head_json(&status.head),
            "finalized": status.finalized.map(|(height, hash)| json!({ "height": height.get(), "hash": hash })),
            "syncing": status.sync.is_some(),
            "sync": status.sync.map(|progress| json!({
                "head": progress.head,
                "target": progress.target,
                "blocksPerSecMilli": progress.blocks_per_sec_milli,
                "etaSecs": progress.eta_secs,
            })),
            "mempool": { "transactions": status.mempool_txs, "bytes": status.mempool_bytes },
        }))
    })?;
    module.register_async_method("node_peers", |_, context, _| async move {
        let peers = context.net.peers().await.map_err(|error| ErrorCode::NodeUnavailable.error(error.to_string()))?;
        Ok::<_, ErrorObjectOwned>(json!({
            "connected": peers.connected.iter().map(|peer| json!({
                "peerId": peer.peer.to_string(),
                "addresses": peer.addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "inbound": peer.inbound,
                "score": peer.score,
                "agent": peer.agent,
                "connectedSecs": peer.connected_for.as_secs(),
            })).collect::<Vec<_>>(),
            "banned": peers.banned.iter().map(|ban| json!({
                "peerId": ban.peer.to_string(),
                "remainingSecs": ban.remaining.as_secs(),
                "reason": ban.reason.to_string(),
            })).collect::<Vec<_>>(),
        }))
    })?;
    module.register_subscription(
        "chain_subscribeHeads",
        "chain_head",
        "chain_unsubscribeHeads",
        |_, pending, context, _| async move { forward(pending, context.heads.subscribe(), "chain_head", head_json).await },
    )?;
    module.register_subscription(
        "chain_subscribeFinalized",
        "chain_finalized",
        "chain_unsubscribeFinalized",
        |_, pending, context, _| async move {
            let render = |(height, hash): &(Height, Hash)| json!({ "height": height.get(), "hash": hash });
            forward(pending, context.finals.subscribe(), "chain_finalized", render).await
        },
    )?;
    module.register_async_method("consensus_validators", |_, context, _| async move {
        let status = context.call(Call::Status).await?;
        Ok::<_, ErrorObjectOwned>(match status.engine {
            "pow" => json!({ "engine": "pow", "open": true, "validators": [] }),
            other => json!({ "engine": other, "open": false, "validators": [] }),
        })
    })?;
    module.register_async_method("admin_banPeer", |params, context, _| async move {
        let mut sequence = params.sequence();
        let peer = admin_peer(&context, sequence.next()?)?;
        let secs: Option<u64> = sequence.optional_next()?;
        let duration = std::time::Duration::from_secs(secs.unwrap_or(ADMIN_BAN_SECS_DEFAULT));
        context.net.ban(peer, duration).await.map_err(|error| ErrorCode::NodeUnavailable.error(error.to_string()))?;
        Ok::<_, ErrorObjectOwned>(Value::Null)
    })?;
    module.register_async_method("admin_unbanPeer", |params, context, _| async move {
        let peer = admin_peer(&context, params.one()?)?;
        context.net.unban(peer).await.map_err(|error| ErrorCode::NodeUnavailable.error(error.to_string()))?;
        Ok::<_, ErrorObjectOwned>(Value::Null)
    })?;
    module.register_method("rpc.discover", |_, _, _| openrpc())?;
    // rpc.discover must describe exactly what is served.
    let served: Vec<&str> = module.method_names().collect();
    let documented: Vec<&str> = METHODS.iter().map(|method| method.name).collect();
    for name in &served {
        assert!(documented.contains(name), "invariant: method {name} is served but not in METHODS");
    }
    for name in &documented {
        assert!(served.contains(name), "invariant: method {name} is in METHODS but not served");
    }
    Ok(module)
}

/// JSON-RPC calls by method (`unknown` for names not in [`METHODS`]) and outcome.
#[derive(Debug, Clone, Default)]
struct RpcMetrics {
    calls: Family<[(&'static str, &'static str); 2], Counter>,
}

impl RpcMetrics {
    fn register(registry: &mut Registry) -> RpcMetrics {
        let metrics = RpcMetrics::default();
        registry.register(
            "rpc_calls",
            "JSON-RPC calls by method and outcome (ok, error, rate_limited)",
            metrics.calls.clone(),
        );
        metrics
    }

    fn count(&self, method: &str, outcome: &'static str) {
        let method = METHODS.iter().find(|known| known.name == method).map_or("unknown", |known| known.name);
        self.calls.get_or_create(&[("method", method), ("outcome", outcome)]).inc();
    }
}

/// A token bucket in thousandths of a call.
#[derive(Debug)]
struct Bucket {
    milli_tokens: u64,
    refilled: tokio::time::Instant,
}

impl Bucket {
    fn new() -> Bucket {
        Bucket { milli_tokens: u64::from(limits::RPC_CALL_BURST_MAX) * 1_000, refilled: tokio::time::Instant::now() }
    }

    /// Takes `calls` tokens if there are enough.
    fn take(&mut self, calls: u64) -> bool {
        let now = tokio::time::Instant::now();
        let elapsed_ms = u64::try_from(now.duration_since(self.refilled).as_millis()).unwrap_or(u64::MAX);
        self.refilled = now;
        let refill = elapsed_ms.saturating_mul(u64::from(limits::RPC_CALLS_PER_SEC_MAX));
        self.milli_tokens = self.milli_tokens.saturating_add(refill).min(u64::from(limits::RPC_CALL_BURST_MAX) * 1_000);
        let cost = calls.saturating_mul(1_000);
        if self.milli_tokens < cost {
            return false;
        }
        self.milli_tokens -= cost;
        true
    }
}

/// The per-connection middleware: rate limit and call counting. jsonrpsee builds one per
/// connection, so each connection has its own bucket.
#[derive(Debug, Clone)]
struct Guard<S> {
    service: S,
    bucket: Arc<Mutex<Bucket>>,
    metrics: RpcMetrics,
}

impl<S> Guard<S> {
    fn new(service: S, metrics: RpcMetrics) -> Guard<S> {
        Guard { service, bucket: Arc::new(Mutex::new(Bucket::new())), metrics }
    }

    fn allow(&self, calls: u64) -> bool {
        self.bucket.lock().map(|mut bucket| bucket.take(calls)).unwrap_or(false)
    }
}

impl<S> RpcServiceT for Guard<S>
where
    S: RpcServiceT<
            MethodResponse = MethodResponse,
            BatchResponse = MethodResponse,
            NotificationResponse = MethodResponse,
        > + Send
        + Sync
        + Clone
        + 'static,
{
    type MethodResponse = MethodResponse;
    type NotificationResponse = MethodResponse;
    type BatchResponse = MethodResponse;

    fn call<'a>(&self, request: Request<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        let allowed = self.allow(1);
        let (service, metrics) = (self.service.clone(), self.metrics.clone());
        async move {
            let method = request.method_name().to_owned();
            if !allowed {
                metrics.count(&method, "rate_limited");
                return MethodResponse::error(request.id(), rate_limited());
            }
            let response = service.call(request).await;
            metrics.count(&method, if response.is_success() { "ok" } else { "error" });
            response
        }
    }

    fn batch<'a>(&self, batch: Batch<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        // A batch costs one token per entry; over the limit, the whole batch is refused.
        let allowed = self.allow(batch.len() as u64);
        let service = self.service.clone();
        async move {
            if !allowed {
                return MethodResponse::error(jsonrpsee::types::Id::Null, rate_limited());
            }
            service.batch(batch).await
        }
    }

    fn notification<'a>(&self, notification: Notification<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        self.service.notification(notification)
    }
}

/// Sends each notice to the subscriber as a `method` notification, in order, until either side
/// closes. A subscriber that falls more than `limits::RPC_NOTICES_QUEUED_MAX` behind skips to
/// the oldest notice still kept.
async fn forward<T: Clone>(
    pending: jsonrpsee::PendingSubscriptionSink,
    mut notices: broadcast::Receiver<T>,
    method: &'static str,
    render: impl Fn(&T) -> Value,
) -> jsonrpsee::core::SubscriptionResult {
    let sink = pending.accept().await?;
    loop {
        let notice = match notices.recv().await {
            Ok(notice) => notice,
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return Ok(()),
        };
        let message = SubscriptionMessage::new(method, sink.subscription_id(), &render(&notice))?;
        if sink.send(message).await.is_err() {
            return Ok(());
        }
    }
}

/// How long `admin_banPeer` bans without `secs`: long enough for any test partition.
const ADMIN_BAN_SECS_DEFAULT: u64 = 24 * 60 * 60;

/// The peer an admin call names, if admin calls are allowed here.
fn admin_peer(context: &Context, text: String) -> Result<chorus_p2p::PeerId, ErrorObjectOwned> {
    if !context.admin {
        return Err(ErrorCode::AdminNotAllowed.error("admin methods are served only when the RPC listens on loopback"));
    }
    chorus_p2p::parse_peer_id(&text).map_err(|error| ErrorCode::InvalidPeerId.error(error.to_string()))
}

fn rate_limited() -> ErrorObjectOwned {
    let limit = limits::RPC_CALLS_PER_SEC_MAX;
    ErrorCode::RateLimited.error(format!("too many calls on this connection: at most {limit} per second"))
}

fn head_json(head: &HeadInfo) -> Value {
    json!({
        "hash": head.hash,
        "height": head.height.get(),
        "timestamp": head.timestamp.as_millis(),
        "stateRoot": head.state_root,
        "chainWork": head.chain_work.map(hex::encode),
    })
}

fn block_json(block: &Block, chain_work: &ChainWork) -> Value {
    let header = &block.header;
    json!({
        "hash": block.hash(),
        "chainWork": chain_work.map(hex::encode),
        "parent": header.parent,
        "height": header.height.get(),
        "timestamp": header.timestamp.as_millis(),
        "txsRoot": header.txs_root,
        "stateRoot": header.state_root,
        "proposer": header.proposer,
        "transactions": block.body.txs.iter().map(|tx| json!({
            "hash": tx.hash(),
            "sender": tx.tx.sender,
            "nonce": tx.tx.nonce,
            "fee": tx.tx.fee,
            "kind": tx.tx.kind,
        })).collect::<Vec<_>>(),
    })
}

fn block_ref(params: &Params<'_>) -> Result<BlockRef, ErrorObjectOwned> {
    let value: Value = params.one()?;
    match value {
        Value::Number(number) => number.as_u64().map(|height| BlockRef::Height(Height::new(height))).ok_or_else(|| {
            ErrorObjectOwned::owned(-32602, format!("height must be a non-negative integer, got {number}"), None::<()>)
        }),
        Value::String(text) => Hash::from_hex(&text)
            .map(BlockRef::Hash)
            .map_err(|error| ErrorCode::InvalidHash.error(format!("block hash {text:?}: {error}"))),
        other => {
            Err(ErrorObjectOwned::owned(-32602, format!("expected a height or a block hash, got {other}"), None::<()>))
        }
    }
}

fn hash_param(params: &Params<'_>) -> Result<Hash, ErrorObjectOwned> {
    let text: String = params.one()?;
    Hash::from_hex(&text).map_err(|error| ErrorCode::InvalidHash.error(format!("hash {text:?}: {error}")))
}

fn store_error(error: chorus_store::StoreError) -> ErrorObjectOwned {
    tracing::error!(%error, "store read failed");
    ErrorCode::NodeUnavailable.error(format!("store read failed: {error}"))
}

fn mempool_error(error: MempoolError) -> ErrorObjectOwned {
    let code = match &error {
        MempoolError::Invalid(_) => ErrorCode::TxInvalid,
        MempoolError::FeeTooLow { .. } => ErrorCode::TxFeeTooLow,
        MempoolError::NonceUsed { .. } => ErrorCode::TxNonceUsed,
        MempoolError::NonceTooFarAhead { .. } => ErrorCode::TxNonceTooFarAhead,
        MempoolError::Duplicate { .. } => ErrorCode::TxDuplicate,
        MempoolError::ReplacementFeeTooLow { .. } => ErrorCode::TxReplacementFeeTooLow,
        MempoolError::SenderFull { .. } => ErrorCode::TxSenderFull,
        MempoolError::Full { .. } => ErrorCode::MempoolFull,
        MempoolError::InsufficientBalance { .. } => ErrorCode::TxInsufficientBalance,
        MempoolError::Read(_) => ErrorCode::NodeUnavailable,
    };
    code.error(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openrpc_document_lists_every_method_with_its_params() {
        let document = openrpc();
        let names: Vec<&str> = document["methods"]
            .as_array()
            .expect("methods")
            .iter()
            .map(|method| method["name"].as_str().expect("name"))
            .collect();
        assert_eq!(names, METHODS.iter().map(|method| method.name).collect::<Vec<_>>());
        let account = &document["methods"][3];
        assert_eq!(account["params"][1]["name"], "proofHeight");
        assert_eq!(account["params"][1]["required"], false);
    }
}

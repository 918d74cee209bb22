//! JSON-RPC 2.0 over HTTP and WebSocket on one port (jsonrpsee).
//!
//! The wire types, method names and error codes are `chorus-rpc-types`'s (the one definition
//! the wallet and the harness read too); this module serves them. Each method is registered
//! with its `Request` type, so a handler can only answer that method's result type, and the
//! node's own types are converted here (`wire_*`). [`METHODS`] adds what only the server
//! needs: the registered methods' summaries and parameters (checked against what is served
//! when the module is built, so every start would fail otherwise), from which `rpc.discover`
//! builds its OpenRPC document.
//!
//! The server runs jsonrpsee's service on its own accept loop, so that each request carries its
//! client's address, and [`access`] checks each request's `Host`, `Origin` and admin token
//! before jsonrpsee reads it; the rate limit then counts calls per client address.

pub mod access;
pub mod reads;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use chorus_chain::codec;
use chorus_chain::genesis::PeerIdText;
use chorus_chain::primitives::{ChainId, Hash, Height};
use chorus_chain::tx::SignedTransaction;
use chorus_chain::{Address, limits};
use chorus_consensus::raft::membership::{ChangeKind, MembershipEntry, MembershipRefusal, MembershipRequest};
use chorus_p2p::NetworkHandle;
use chorus_rpc_types::{self as wire, ErrorCode, Method};
use jsonrpsee::core::middleware::{Batch, Notification, RpcServiceBuilder, RpcServiceT};
use jsonrpsee::server::{
    HttpRequest, MethodResponse, Methods, RpcModule, Server, ServerConfig, ServerHandle, StopHandle,
    SubscriptionMessage,
};
use jsonrpsee::types::{ErrorObjectOwned, Params, Request};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, oneshot};
use tower::Service;

pub use self::access::RateLimit;
use self::access::{Access, Caller, Limiter};
use self::reads::{AccountInfo, BlockRef, Reads, TxStatus};
use crate::daemon::{Call, HeadInfo, Input};
use chorus_node_core::MempoolError;

/// A JSON-RPC error with one of README's codes and a message that says what was wrong.
fn rpc_error(code: ErrorCode, message: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code.code(), message.into(), None::<()>)
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
        name: Method::ChainGetHead.name(),
        summary: "The head block: hash, height, timestamp, state root, and chainWork (PoW: the chain's cumulative work, 64 hex digits; null for engines without one).",
        params: &[],
        result: "object",
    },
    MethodDef {
        name: Method::ChainGetBlock.name(),
        summary: "A block by height (canonical) or hash, with its header fields, transactions and chainWork; null if unknown.",
        params: &[("id", "integer|string", true)],
        result: "object|null",
    },
    MethodDef {
        name: Method::ChainGetFinalized.name(),
        summary: "The last final block's height and hash; null when the engine has no finality (PoW).",
        params: &[],
        result: "object|null",
    },
    MethodDef {
        name: Method::StateGetAccount.name(),
        summary: "An account at the head (nonce, and nextNonce counting pending transactions); with proofHeight, a Merkle proof against that block's state root.",
        params: &[("address", "string", true), ("proofHeight", "integer", false)],
        result: "object",
    },
    MethodDef {
        name: Method::TxSubmit.name(),
        summary: "Submits a signed transaction (hex of its canonical encoding); returns its hash.",
        params: &[("tx", "string", true)],
        result: "string",
    },
    MethodDef {
        name: Method::TxGet.name(),
        summary: "A transaction's status: unknown, pending, included (with height) or final.",
        params: &[("hash", "string", true)],
        result: "object",
    },
    MethodDef {
        name: Method::NodeStatus.name(),
        summary: "Engine, chain id, minimum fee, peer id, peers, head, finalized, syncing (with progress), mempool.",
        params: &[],
        result: "object",
    },
    MethodDef {
        name: Method::NodePeers.name(),
        summary: "Connected peers with their scores, and banned peers with the time left.",
        params: &[],
        result: "object",
    },
    MethodDef {
        name: Method::ChainSubscribeHeads.name(),
        summary: "Notifies every new head (chain_head), in order.",
        params: &[],
        result: "string",
    },
    MethodDef {
        name: Method::ChainUnsubscribeHeads.name(),
        summary: "Ends a chain_subscribeHeads subscription.",
        params: &[("subscription", "string", true)],
        result: "boolean",
    },
    MethodDef {
        name: Method::ChainSubscribeFinalized.name(),
        summary: "Notifies every newly final block (chain_finalized); silent under an engine without finality (PoW).",
        params: &[],
        result: "string",
    },
    MethodDef {
        name: Method::ChainUnsubscribeFinalized.name(),
        summary: "Ends a chain_subscribeFinalized subscription.",
        params: &[("subscription", "string", true)],
        result: "boolean",
    },
    MethodDef {
        name: Method::ConsensusValidators.name(),
        summary: "The active set: validators and stakes, delegates and votes, or Raft members and leader; empty under PoW, where anyone may mine.",
        params: &[],
        result: "object",
    },
    MethodDef {
        name: Method::AdminBanPeer.name(),
        summary: "Disconnects a peer and refuses it for secs seconds (default a day). Served only when the RPC listens on loopback, to callers with the admin token (Authorization: Bearer, from DATA_DIR/rpc-admin.token).",
        params: &[("peerId", "string", true), ("secs", "integer", false)],
        result: "null",
    },
    MethodDef {
        name: Method::AdminUnbanPeer.name(),
        summary: "Lifts a ban. Served only when the RPC listens on loopback, to callers with the admin token (Authorization: Bearer, from DATA_DIR/rpc-admin.token).",
        params: &[("peerId", "string", true)],
        result: "null",
    },
    MethodDef {
        name: Method::AdminRaftAddLearner.name(),
        summary: "Raft, at the leader: adds the node whose key has this address as a learner (id: default the next never used); answers the proposed change at once, or error 4010 with data.reason. Served only when the RPC listens on loopback, to callers with the admin token (Authorization: Bearer, from DATA_DIR/rpc-admin.token).",
        params: &[("address", "string", true), ("id", "integer", false)],
        result: "object",
    },
    MethodDef {
        name: Method::AdminRaftPromote.name(),
        summary: "Raft, at the leader: makes a learner that has caught up (answered the leader lately, holds the log to the commit index) a voter; answers at once, or error 4010. Served only when the RPC listens on loopback, to callers with the admin token (Authorization: Bearer, from DATA_DIR/rpc-admin.token).",
        params: &[("id", "integer", true)],
        result: "object",
    },
    MethodDef {
        name: Method::AdminRaftRemove.name(),
        summary: "Raft, at the leader: removes a voter or learner for good (its id is never reused); answers at once, or error 4010. Served only when the RPC listens on loopback, to callers with the admin token (Authorization: Bearer, from DATA_DIR/rpc-admin.token).",
        params: &[("id", "integer", true)],
        result: "object",
    },
    MethodDef {
        name: Method::RpcDiscover.name(),
        summary: "This API as an OpenRPC document.",
        params: &[],
        result: "object",
    },
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
    /// Reads of the chain, answered beside the node's queue.
    reads: Reads,
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
        let unavailable =
            || rpc_error(ErrorCode::NodeUnavailable, "the node is shutting down or halted (node_status says why)");
        self.inputs.send(Input::Call(make(reply))).await.map_err(|_| unavailable())?;
        answer.await.map_err(|_| unavailable())
    }
}

/// Starts the server; returns where it listens and its handle (stop it to shut down).
#[allow(clippy::too_many_arguments, reason = "the node's channels, each a distinct part")]
pub async fn start(
    addr: SocketAddr,
    access: Access,
    rate: RateLimit,
    chain_id: ChainId,
    reads: Reads,
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
    let limiter = Arc::new(Limiter::new(rate));
    let guard = RpcServiceBuilder::new().layer_fn(move |service| Guard {
        service,
        limiter: Arc::clone(&limiter),
        metrics: metrics.clone(),
    });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let methods: Methods =
        module(Context { chain_id, reads, inputs, net, admin: bound.ip().is_loopback(), heads, finals })?.into();
    let builder = Server::builder().set_config(config).set_rpc_middleware(guard).to_service_builder();
    let (stop, handle) = jsonrpsee::server::stop_channel();
    tokio::spawn(accept(listener, Arc::new(access), stop, move |stop| builder.clone().build(methods.clone(), stop)));
    Ok((bound, handle))
}

/// Pause after a failed accept (out of descriptors, say), so the loop does not spin.
const ACCEPT_RETRY: std::time::Duration = std::time::Duration::from_millis(50);

/// Accepts connections until `stop`, serving each with jsonrpsee's service behind `access`:
/// a refused request gets HTTP 403; an admitted one goes on with its [`Caller`].
async fn accept<S, Build>(listener: tokio::net::TcpListener, access: Arc<Access>, stop: StopHandle, build: Build)
where
    Build: Fn(StopHandle) -> S,
    S: Service<HttpRequest<hyper::body::Incoming>, Response = jsonrpsee::server::HttpResponse> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<jsonrpsee::core::BoxError>,
{
    let stopped = stop.clone().shutdown();
    tokio::pin!(stopped);
    loop {
        let (socket, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::debug!(%error, "RPC accept failed");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
            () = &mut stopped => return,
        };
        let _ = socket.set_nodelay(true);
        let (service, access) = (build(stop.clone()), Arc::clone(&access));
        let gate = tower::service_fn(move |mut request: HttpRequest<hyper::body::Incoming>| {
            let mut service = service.clone();
            let admitted = access.admit(remote.ip(), request.uri().authority().map(|a| a.as_str()), request.headers());
            // Admitted, an Origin is an allowed page's: it gets the CORS answers.
            let origin = request.headers().get(hyper::header::ORIGIN).cloned();
            async move {
                match (admitted, origin) {
                    (Ok(_), Some(origin)) if request.method() == hyper::Method::OPTIONS => {
                        Ok(access::preflight(&origin))
                    }
                    (Ok(caller), origin) => {
                        request.extensions_mut().insert(caller);
                        let mut response =
                            service.call(request).await.map_err(Into::<jsonrpsee::core::BoxError>::into)?;
                        if let Some(origin) = origin {
                            access::allow_origin(&mut response, origin);
                        }
                        Ok(response)
                    }
                    (Err(refusal), _) => {
                        tracing::debug!(%remote, %refusal, "RPC request refused");
                        Ok::<_, jsonrpsee::core::BoxError>(refusal.response())
                    }
                }
            }
        });
        tokio::spawn(jsonrpsee::server::serve_with_graceful_shutdown(socket, gate, stop.clone().shutdown()));
    }
}

fn module(context: Context) -> Result<RpcModule<Context>, jsonrpsee::core::RegisterMethodError> {
    let mut module = RpcModule::new(context);
    serve::<wire::GetHead, _, _>(&mut module, |_, context| async move {
        Ok(wire_head(&context.reads.head().await.map_err(store_error)?))
    })?;
    serve::<wire::GetBlock, _, _>(&mut module, |params, context| async move {
        let reference = block_ref(&params)?;
        let block = context.reads.block(reference).await.map_err(store_error)?;
        Ok(block.map(|(block, work)| wire::Block::new(&block, work.map(wire::ChainWork))))
    })?;
    serve::<wire::GetFinalized, _, _>(&mut module, |_, context| async move {
        Ok(context.reads.finalized().await.map_err(store_error)?.map(wire_block_ref))
    })?;
    serve::<wire::GetAccount, _, _>(&mut module, |params, context| async move {
        let mut sequence = params.sequence();
        let address: String = sequence.next()?;
        let address = Address::parse(&address)
            .map_err(|error| rpc_error(ErrorCode::InvalidAddress, format!("address {address:?}: {error}")))?;
        let proof_height: Option<u64> = sequence.optional_next()?;
        let info = context.reads.account(address, proof_height.map(Height::new)).await.map_err(|error| {
            match (proof_height, error) {
                (Some(height), error @ chorus_store::StoreError::Tree(_)) => {
                    rpc_error(ErrorCode::ProofUnavailable, format!("no proof at height {height}: {error}"))
                }
                (_, error) => store_error(error),
            }
        })?;
        Ok(wire_account(address, info))
    })?;
    serve::<wire::SubmitTx, _, _>(&mut module, |params, context| async move {
        let text: String = params.one()?;
        let bytes = hex::decode(text.trim_start_matches("0x"))
            .map_err(|error| rpc_error(ErrorCode::TxUndecodable, format!("transaction is not hex: {error}")))?;
        let tx: SignedTransaction = codec::decode(&bytes)
            .map_err(|error| rpc_error(ErrorCode::TxUndecodable, format!("transaction does not decode: {error}")))?;
        // Signatures are checked here, on the RPC server's tasks (all cores), not by the one
        // task that owns the chain.
        let tx = tx.verified(&context.chain_id).map_err(|error| mempool_error(MempoolError::Invalid(error)))?;
        context.call(|reply| Call::Submit(Box::new(tx), reply)).await?.map_err(mempool_error)
    })?;
    serve::<wire::GetTx, _, _>(&mut module, |params, context| async move {
        let hash = hash_param(&params)?;
        let status = context.reads.tx_status(hash).await.map_err(store_error)?;
        Ok(wire::TxInfo { hash, status: wire_tx_status(status) })
    })?;
    serve::<wire::GetStatus, _, _>(&mut module, |_, context| async move {
        let status = context.call(Call::Status).await?;
        let peers =
            context.net.peers().await.map_err(|error| rpc_error(ErrorCode::NodeUnavailable, error.to_string()))?;
        Ok(wire::NodeStatus {
            engine: status.engine.to_owned(),
            chain_id: status.chain_id,
            min_tx_fee: status.min_tx_fee,
            peer_id: wire_peer_id(&context.net.local_peer_id()),
            n_peers: peers.connected.len() as u64,
            head: wire_head(&status.head),
            finalized: status.finalized.map(wire_block_ref),
            slot: status.slot,
            syncing: status.sync.is_some(),
            sync: status.sync.map(|progress| wire::SyncProgress {
                head: progress.head,
                target: progress.target,
                blocks_per_sec_milli: progress.blocks_per_sec_milli,
                eta_secs: progress.eta_secs,
            }),
            mempool: wire::MempoolStatus {
                n_transactions: status.mempool_txs as u64,
                size_bytes: status.mempool_bytes,
            },
            halted: status.halted,
        })
    })?;
    serve::<wire::GetPeers, _, _>(&mut module, |_, context| async move {
        let peers =
            context.net.peers().await.map_err(|error| rpc_error(ErrorCode::NodeUnavailable, error.to_string()))?;
        Ok(wire_peers(&peers))
    })?;
    subscribe::<wire::HeadsSubscription, _>(&mut module, |context| context.heads.subscribe(), wire_head)?;
    subscribe::<wire::FinalizedSubscription, _>(
        &mut module,
        |context| context.finals.subscribe(),
        |finalized| wire_block_ref(*finalized),
    )?;
    serve::<wire::GetValidators, _, _>(&mut module, |_, context| async move {
        let (engine, set) = context.call(Call::Validators).await?;
        let engine = engine.to_owned();
        let Some(set) = set else {
            // An open engine (PoW): anyone may produce blocks.
            return Ok(wire::Validators {
                engine,
                open: true,
                epoch: None,
                slot: None,
                validators: Vec::new(),
                producer: None,
                schedule: Vec::new(),
                election: None,
                raft: None,
            });
        };
        let total = set.members.iter().map(|member| member.stake.get()).fold(0u128, u128::saturating_add);
        let validators = set
            .members
            .iter()
            .map(|member| wire::Validator {
                address: member.address,
                peer_id: PeerIdText::of(&member.address),
                stake: member.stake,
                share_bps: share_bps(member.stake.get(), total),
                slashed: member.slashed,
            })
            .collect();
        let schedule = set
            .schedule
            .iter()
            .map(|(slot, proposer)| wire::ScheduledSlot { slot: *slot, proposer: *proposer })
            .collect();
        let election = set.election.as_ref().map(|election| wire_election(election, &set.members));
        let raft = set.raft.as_ref().map(wire_raft);
        Ok(wire::Validators {
            engine,
            open: false,
            epoch: set.epoch,
            slot: set.slot,
            validators,
            producer: set.producer,
            schedule,
            election,
            raft,
        })
    })?;
    serve_admin::<wire::BanPeer, _, _>(&mut module, |params, context| async move {
        let mut sequence = params.sequence();
        let peer = peer_param(sequence.next()?)?;
        let secs: Option<u64> = sequence.optional_next()?;
        let duration = std::time::Duration::from_secs(secs.unwrap_or(ADMIN_BAN_SECS_DEFAULT));
        context.net.ban(peer, duration).await.map_err(|error| rpc_error(ErrorCode::NodeUnavailable, error.to_string()))
    })?;
    serve_admin::<wire::UnbanPeer, _, _>(&mut module, |params, context| async move {
        let peer = peer_param(params.one()?)?;
        context.net.unban(peer).await.map_err(|error| rpc_error(ErrorCode::NodeUnavailable, error.to_string()))
    })?;
    serve_admin::<wire::RaftAddLearner, _, _>(&mut module, |params, context| async move {
        let mut sequence = params.sequence();
        let address: String = sequence.next()?;
        let address = Address::parse(&address)
            .map_err(|error| rpc_error(ErrorCode::InvalidAddress, format!("address {address:?}: {error}")))?;
        let id: Option<u64> = sequence.optional_next()?;
        change_membership(&context, MembershipRequest::AddLearner { address, id }).await
    })?;
    serve_admin::<wire::RaftPromote, _, _>(&mut module, |params, context| async move {
        change_membership(&context, MembershipRequest::Promote { id: params.one()? }).await
    })?;
    serve_admin::<wire::RaftRemove, _, _>(&mut module, |params, context| async move {
        change_membership(&context, MembershipRequest::Remove { id: params.one()? }).await
    })?;
    let discover = method_def(Method::RpcDiscover.name());
    module.register_method(Method::RpcDiscover.name(), move |params, _, _| {
        params_fit(discover, &params).map(|()| openrpc())
    })?;
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

/// Registers `R`'s method. The handler answers `R::Response`, the type clients read, so the
/// server cannot answer a method with another shape.
fn serve<R, Handler, Answer>(
    module: &mut RpcModule<Context>,
    handler: Handler,
) -> Result<(), jsonrpsee::core::RegisterMethodError>
where
    R: wire::Request,
    R::Response: Clone + 'static,
    Handler: Fn(Params<'static>, Arc<Context>) -> Answer + Clone + Send + Sync + 'static,
    Answer: Future<Output = Result<R::Response, ErrorObjectOwned>> + Send,
{
    assert!(!R::METHOD.is_admin(), "invariant: admin methods are registered with serve_admin");
    let def = method_def(R::METHOD.name());
    module.register_async_method(R::METHOD.name(), move |params, context, _| {
        let fits = params_fit(def, &params);
        let answer = handler(params, context);
        async move {
            fits?;
            answer.await
        }
    })?;
    Ok(())
}

/// `name`'s entry in [`METHODS`], found once when the method is registered.
fn method_def(name: &str) -> Option<&'static MethodDef> {
    METHODS.iter().find(|def| def.name == name)
}

/// Refuses parameters the method's table entry does not take, as Bitcoin Core does: named
/// parameters, or fewer than it requires or more than it has. Without this a method without
/// parameters answered whatever it was sent, and extra ones were dropped unread.
fn params_fit(def: Option<&'static MethodDef>, params: &Params<'_>) -> Result<(), ErrorObjectOwned> {
    let Some(def) = def else { return Ok(()) };
    let method = def.name;
    let required = def.params.iter().filter(|(_, _, required)| *required).count();
    let n_params = match params.as_str().map(str::trim) {
        None | Some("null") => 0,
        Some(text) => serde_json::from_str::<Vec<serde::de::IgnoredAny>>(text)
            .map_err(|_| rpc_error(ErrorCode::InvalidParams, format!("{method} takes its parameters as an array")))?
            .len(),
    };
    if n_params < required || n_params > def.params.len() {
        let takes = match (required, def.params.len()) {
            (0, 0) => "no parameters".to_owned(),
            (low, high) if low == high => format!("{low} parameter(s)"),
            (low, high) => format!("{low} to {high} parameters"),
        };
        return Err(rpc_error(ErrorCode::InvalidParams, format!("{method} takes {takes}, got {n_params}")));
    }
    Ok(())
}

/// Registers admin method `R`: served only when the server listens on loopback, and only to
/// callers that showed the admin token.
fn serve_admin<R, Handler, Answer>(
    module: &mut RpcModule<Context>,
    handler: Handler,
) -> Result<(), jsonrpsee::core::RegisterMethodError>
where
    R: wire::Request,
    R::Response: Clone + 'static,
    Handler: Fn(Params<'static>, Arc<Context>) -> Answer + Clone + Send + Sync + 'static,
    Answer: Future<Output = Result<R::Response, ErrorObjectOwned>> + Send,
{
    assert!(R::METHOD.is_admin(), "invariant: only admin methods are registered as admin methods");
    let def = method_def(R::METHOD.name());
    module.register_async_method(R::METHOD.name(), move |params, context, extensions| {
        let allowed = admin_allowed(&context, extensions.get::<Caller>());
        let fits = params_fit(def, &params);
        let answer = handler(params, context);
        async move {
            allowed?;
            fits?;
            answer.await
        }
    })?;
    Ok(())
}

/// Registers subscription `S`: each notice of the channel `notices` opens, rendered as
/// `S::Item`.
fn subscribe<S, T>(
    module: &mut RpcModule<Context>,
    notices: fn(&Context) -> broadcast::Receiver<T>,
    render: fn(&T) -> S::Item,
) -> Result<(), jsonrpsee::core::RegisterMethodError>
where
    S: wire::Subscription,
    S::Item: Send + 'static,
    T: Clone + Send + 'static,
{
    module.register_subscription(
        S::SUBSCRIBE.name(),
        S::NOTIFICATION,
        S::UNSUBSCRIBE.name(),
        move |_, pending, context, _| forward(pending, notices(&context), S::NOTIFICATION, render),
    )?;
    Ok(())
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
        let method = Method::from_name(method).map_or("unknown", Method::name);
        self.calls.get_or_create(&[("method", method), ("outcome", outcome)]).inc();
    }
}

/// The middleware on every call: rate limit (per client address, in [`Limiter`]) and call
/// counting.
#[derive(Debug, Clone)]
struct Guard<S> {
    service: S,
    limiter: Arc<Limiter>,
    metrics: RpcMetrics,
}

impl<S> Guard<S> {
    /// Whether the caller whose request carries `extensions` may make `calls` calls now.
    fn allow(&self, extensions: &jsonrpsee::Extensions, calls: u64) -> bool {
        // Every request passes the accept loop, which records its caller; without one there is
        // no address to count against, and the call is refused.
        extensions.get::<Caller>().is_some_and(|caller| self.limiter.take(caller.ip, calls))
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
        let allowed = self.allow(request.extensions(), 1);
        let (service, metrics, rate) = (self.service.clone(), self.metrics.clone(), self.limiter.rate());
        async move {
            let method = request.method_name().to_owned();
            if !allowed {
                metrics.count(&method, "rate_limited");
                return MethodResponse::error(request.id(), rate_limited(rate));
            }
            let response = service.call(request).await;
            metrics.count(&method, if response.is_success() { "ok" } else { "error" });
            response
        }
    }

    fn batch<'a>(&self, mut batch: Batch<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        // A batch costs one token per entry; over the limit, the whole batch is refused. One of
        // only malformed entries (nothing to run, so no caller recorded) is answered as it is.
        let malformed = batch.iter().all(|entry| entry.is_err());
        let calls = batch.len() as u64;
        let allowed = malformed || self.allow(batch.extensions(), calls);
        let (service, rate) = (self.service.clone(), self.limiter.rate());
        async move {
            if !allowed {
                return MethodResponse::error(jsonrpsee::types::Id::Null, rate_limited(rate));
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
async fn forward<T: Clone, Item: serde::Serialize>(
    pending: jsonrpsee::PendingSubscriptionSink,
    mut notices: broadcast::Receiver<T>,
    method: &'static str,
    render: impl Fn(&T) -> Item,
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

/// Whether an admin call may run: on loopback, from a caller with the admin token.
fn admin_allowed(context: &Context, caller: Option<&Caller>) -> Result<(), ErrorObjectOwned> {
    if !context.admin {
        return Err(rpc_error(
            ErrorCode::AdminNotAllowed,
            "admin methods are served only when the RPC listens on loopback",
        ));
    }
    if !caller.is_some_and(|caller| caller.admin) {
        return Err(rpc_error(
            ErrorCode::AdminUnauthorized,
            format!(
                "admin methods need `Authorization: Bearer TOKEN`, TOKEN being the content of DATA_DIR/{} \
                 (new at each start); none or another was given",
                access::ADMIN_TOKEN_FILE
            ),
        ));
    }
    Ok(())
}

fn peer_param(text: String) -> Result<chorus_p2p::PeerId, ErrorObjectOwned> {
    chorus_p2p::parse_peer_id(&text).map_err(|error| rpc_error(ErrorCode::InvalidPeerId, error.to_string()))
}

fn rate_limited(rate: RateLimit) -> ErrorObjectOwned {
    let RateLimit { per_sec, burst } = rate;
    rpc_error(
        ErrorCode::RateLimited,
        format!("too many calls from this address: at most {per_sec} per second (bursts up to {burst})"),
    )
}

fn wire_head(head: &HeadInfo) -> wire::Head {
    wire::Head {
        hash: head.hash,
        height: head.height,
        timestamp: head.timestamp,
        state_root: head.state_root,
        chain_work: head.chain_work.map(wire::ChainWork),
    }
}

fn wire_block_ref((height, hash): (Height, Hash)) -> wire::BlockRef {
    wire::BlockRef { height, hash }
}

fn wire_account(address: Address, info: AccountInfo) -> wire::Account {
    let AccountInfo { account, next_nonce, height, state_root, proof } = info;
    wire::Account {
        address,
        balance: account.balance,
        nonce: account.nonce,
        next_nonce,
        stake: account.stake,
        unbonding: account.unbonding.into_iter().map(wire::Unbonding::from).collect(),
        votes: account.votes,
        height,
        state_root,
        proof: proof.map(|(height, state_root, proof)| wire::AccountProof {
            height,
            state_root,
            proof_bytes: proof.proof_bytes(),
            value: proof.value,
        }),
    }
}

fn wire_tx_status(status: TxStatus) -> wire::TxStatus {
    match status {
        TxStatus::Unknown => wire::TxStatus::Unknown,
        TxStatus::Pending => wire::TxStatus::Pending,
        TxStatus::Included { height, block, index, finalized: false } => {
            wire::TxStatus::Included { height, block, index }
        }
        TxStatus::Included { height, block, index, finalized: true } => wire::TxStatus::Final { height, block, index },
    }
}

fn wire_peers(peers: &chorus_p2p::Peers) -> wire::Peers {
    wire::Peers {
        connected: peers
            .connected
            .iter()
            .map(|peer| wire::ConnectedPeer {
                peer_id: wire_peer_id(&peer.peer),
                addresses: peer.addresses.iter().map(ToString::to_string).collect(),
                inbound: peer.inbound,
                score: peer.score,
                agent: peer.agent.clone(),
                connected_secs: peer.connected_for.as_secs(),
            })
            .collect(),
        banned: peers
            .banned
            .iter()
            .map(|ban| wire::BannedPeer {
                peer_id: wire_peer_id(&ban.peer),
                remaining_secs: ban.remaining.as_secs(),
                reason: ban.reason.to_string(),
            })
            .collect(),
    }
}

fn wire_peer_id(peer: &chorus_p2p::PeerId) -> PeerIdText {
    PeerIdText::new(&peer.to_string())
        .expect("invariant: libp2p's base58btc peer ids fit limits::PEER_ID_CHARS_MIN..=PEER_ID_CHARS_MAX")
}

fn block_ref(params: &Params<'_>) -> Result<BlockRef, ErrorObjectOwned> {
    let value: Value = params.one()?;
    match value {
        Value::Number(number) => number.as_u64().map(|height| BlockRef::Height(Height::new(height))).ok_or_else(|| {
            rpc_error(ErrorCode::InvalidParams, format!("height must be a non-negative integer, got {number}"))
        }),
        Value::String(text) => Hash::from_hex(&text)
            .map(BlockRef::Hash)
            .map_err(|error| rpc_error(ErrorCode::InvalidHash, format!("block hash {text:?}: {error}"))),
        other => Err(rpc_error(ErrorCode::InvalidParams, format!("expected a height or a block hash, got {other}"))),
    }
}

fn hash_param(params: &Params<'_>) -> Result<Hash, ErrorObjectOwned> {
    let text: String = params.one()?;
    Hash::from_hex(&text).map_err(|error| rpc_error(ErrorCode::InvalidHash, format!("hash {text:?}: {error}")))
}

fn store_error(error: chorus_store::StoreError) -> ErrorObjectOwned {
    if matches!(error, chorus_store::StoreError::Closed) {
        return rpc_error(ErrorCode::NodeUnavailable, "the node is shutting down");
    }
    tracing::error!(%error, "store read failed");
    rpc_error(ErrorCode::NodeUnavailable, format!("store read failed: {error}"))
}

fn mempool_error(error: MempoolError) -> ErrorObjectOwned {
    let code = match &error {
        MempoolError::Invalid(_) => ErrorCode::TxInvalid,
        MempoolError::FeeTooLow { .. } => ErrorCode::TxFeeTooLow,
        MempoolError::NonceUsed { .. } => ErrorCode::TxNonceUsed,
        MempoolError::NonceTooFarAhead { .. } => ErrorCode::TxNonceTooFarAhead,
        MempoolError::Duplicate { .. } => ErrorCode::TxDuplicate,
        MempoolError::ReplacementFeeTooLow { .. } => ErrorCode::TxReplacementFeeTooLow,
        MempoolError::SenderFull { .. } | MempoolError::GapFull { .. } => ErrorCode::TxSenderFull,
        MempoolError::Full { .. } => ErrorCode::MempoolFull,
        MempoolError::InsufficientBalance { .. } => ErrorCode::TxInsufficientBalance,
        MempoolError::Read(_) => ErrorCode::NodeUnavailable,
    };
    rpc_error(code, error.to_string())
}

/// `stake` as a share of `total` in basis points, rounded down (0 for an empty total), in 256
/// bits so no stake overflows.
/// Asks the node for a membership change; a refusal is error 4010 with its reason's code (and
/// the leader, where there is one to ask).
async fn change_membership(
    context: &Context,
    request: MembershipRequest,
) -> Result<wire::MembershipChange, ErrorObjectOwned> {
    match context.call(|reply| Call::Membership(request, reply)).await? {
        Ok(proposed) => Ok(wire_change(&proposed.entry, proposed.index)),
        Err(refusal) => {
            let leader = match &refusal {
                MembershipRefusal::NotLeader { id, .. } | MembershipRefusal::LeaderLeaving { to: id } => Some(*id),
                _ => None,
            };
            let data = wire::MembershipRefusalData { reason: refusal.code().to_owned(), leader };
            Err(ErrorObjectOwned::owned(ErrorCode::MembershipRefused.code(), refusal.to_string(), Some(data)))
        }
    }
}

fn wire_change(entry: &MembershipEntry, index: u64) -> wire::MembershipChange {
    wire::MembershipChange {
        kind: match entry.kind {
            ChangeKind::AddLearner => wire::MembershipChangeKind::AddLearner,
            ChangeKind::Promote => wire::MembershipChangeKind::Promote,
            ChangeKind::Remove => wire::MembershipChangeKind::Remove,
        },
        id: entry.member.id,
        address: entry.member.address,
        peer_id: entry.member.peer_id.clone(),
        index,
    }
}

fn wire_raft(view: &chorus_consensus::raft::RaftView) -> wire::RaftMembers {
    wire::RaftMembers {
        term: view.term,
        member_id: view.me,
        leader: view.leader,
        commit_index: view.commit,
        members: view
            .members
            .iter()
            .map(|member| wire::RaftMember {
                id: member.member.id,
                address: member.member.address,
                peer_id: member.member.peer_id.clone(),
                role: if member.voter { wire::RaftRole::Voter } else { wire::RaftRole::Learner },
                match_index: member.progress.map(|progress| progress.matched),
                recently_active: member.progress.map(|progress| progress.recently_active),
            })
            .collect(),
        pending_change: view.pending.as_ref().map(|(entry, index)| wire_change(entry, *index)),
    }
}

/// DPoS's election as the wire shows it: ranks numbered from 1, the top `producers` unslashed
/// marked elected, the members of the active schedule marked scheduled.
fn wire_election(
    election: &chorus_consensus::Election,
    scheduled: &[chorus_consensus::ActiveMember],
) -> wire::Election {
    let ranking = election
        .ranking
        .iter()
        .zip(1u32..)
        .map(|(delegate, rank)| wire::RankedDelegate {
            rank,
            address: delegate.address,
            peer_id: PeerIdText::of(&delegate.address),
            weight: delegate.weight,
            elected: !delegate.slashed && rank <= election.producers,
            scheduled: scheduled.iter().any(|member| member.address == delegate.address),
            slashed: delegate.slashed,
        })
        .collect();
    wire::Election {
        schedule_version: election.version,
        schedule_start_slot: election.start_slot,
        producers: election.producers,
        pending: election.pending.as_ref().map(|pending| wire::PendingSchedule {
            proposed_at: pending.proposed_at,
            producers: pending.producers.clone(),
        }),
        ranking,
    }
}

fn share_bps(stake: u128, total: u128) -> u32 {
    use chorus_consensus::pow::difficulty::U256;
    if total == 0 {
        return 0;
    }
    let scaled = U256::from(stake) * U256::from(10_000u32) / U256::from(total);
    u32::try_from(scaled.min(U256::from(10_000u32)).low_u64()).unwrap_or(10_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_basis_points_rounded_down_even_for_huge_stakes() {
        assert_eq!(share_bps(1, 3), 3_333);
        assert_eq!(share_bps(1, 4), 2_500);
        assert_eq!(share_bps(0, 0), 0);
        assert_eq!(share_bps(u128::MAX / 2, u128::MAX), 4_999);
        assert_eq!(share_bps(u128::MAX, u128::MAX), 10_000);
    }

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

    #[test]
    fn the_method_table_describes_every_method_of_the_wire_types_in_their_order() {
        let described: Vec<&str> = METHODS.iter().map(|method| method.name).collect();
        assert_eq!(described, Method::ALL.map(Method::name));
    }
}

//! `chorusd run` and `chorusd dev`: start-up, the services, and shutdown.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chorus_chain::Genesis;
use chorus_chain::block::Block;
use chorus_chain::genesis::EngineConfig;
use chorus_chain::primitives::Height;
use chorus_consensus::{EngineOptions, Signer, new_engine};
use chorus_p2p::NodeKey;
use chorus_store::Store;
use prometheus_client::registry::Registry;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::config::{DevArgs, LogFormat, NodeSettings, RunArgs};
use crate::daemon::{Core, Input, NodeMetrics};
use crate::miner::ThreadMiner;
use crate::rpc::access::{Access, AdminToken};
use crate::rpc::reads::Reads;
use crate::{commands, dev, rpc};
use chorus_chain::limits;
use chorus_node_core::Driver;

/// Prints a start-up line on stdout. A closed stdout (a supervisor that stopped reading) is
/// not a reason to stop the node, so write errors are ignored instead of panicking.
macro_rules! announce {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// How long a clean shutdown may take before the process exits anyway (a kill is safe too).
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let settings = args.resolve()?;
    init_logs(settings.node.log_format);
    let genesis = commands::read_genesis(&settings.genesis)
        .map_err(|error| anyhow::anyhow!("genesis {}: {error}", settings.genesis.display()))?;
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("cannot create data dir {}", settings.data_dir.display()))?;
    announce!("chorusd: chain {} in {}", genesis.chain_id, settings.data_dir.display());
    runtime()?.block_on(serve(genesis, &settings.data_dir, settings.node))
}

pub fn dev(args: DevArgs) -> anyhow::Result<()> {
    let (data_dir, mut node) = args.resolve()?;
    init_logs(node.log_format);
    let (data_dir, temporary) = match data_dir {
        Some(dir) => (dir, None),
        None => {
            let temporary = tempfile::Builder::new()
                .prefix("chorus-dev-")
                .tempdir()
                .context("cannot create a temporary directory")?;
            (temporary.path().to_owned(), Some(temporary))
        }
    };
    std::fs::create_dir_all(&data_dir).with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
    // The dev genesis is made once per data dir and kept there, so a kept dev chain reopens.
    let genesis_path = data_dir.join("dev-genesis.json");
    let genesis = if genesis_path.exists() {
        commands::read_genesis(&genesis_path).map_err(|error| anyhow::anyhow!("{}: {error}", genesis_path.display()))?
    } else {
        // The dev node is the validator of engines with validators: its key comes first.
        let (_, validator) = commands::describe_key(&node_key(&node, &data_dir)?);
        let genesis = dev::dev_genesis(&args.engine, crate::clock::now(), args.block_time_ms, validator)
            .map_err(|error| anyhow::anyhow!(error))?;
        crate::files::replace(&genesis_path, genesis.to_json_pretty().as_bytes())
            .with_context(|| format!("cannot write {}", genesis_path.display()))?;
        genesis
    };
    if node.coinbase.is_none() {
        node.coinbase = Some(dev::dev_key(0).address());
    }
    match &temporary {
        Some(_) => announce!("chorusd dev: state is temporary, deleted on exit ({})", data_dir.display()),
        None => announce!("chorusd dev: state is kept in {}", data_dir.display()),
    }
    announce!("chorusd dev: {} funded dev accounts; their keys are in README (\"Dev accounts\")", dev::DEV_ACCOUNTS);
    let result = runtime()?.block_on(serve(genesis, &data_dir, node));
    drop(temporary);
    result
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The node key: the given file or `DATA_DIR/node.key`, created with a new key if missing
/// (and said so, since a validator's key file that is not found makes it a new identity).
fn node_key(settings: &NodeSettings, data_dir: &Path) -> anyhow::Result<commands::NodeSeed> {
    let path = settings.key.clone().unwrap_or_else(|| data_dir.join("node.key"));
    if path.exists() {
        return Ok(commands::read_key(&path)?);
    }
    let seed = commands::write_new_key(&path)?;
    let (peer_id, address) = commands::describe_key(&seed);
    announce!("chorusd: no key in {}: created a new one (peer id {peer_id}, address {address})", path.display());
    Ok(seed)
}

async fn serve(genesis: Genesis, data_dir: &Path, settings: NodeSettings) -> anyhow::Result<()> {
    let low = crate::daemon::disk_low(data_dir)
        .with_context(|| format!("cannot read the free space of {}", data_dir.display()))?;
    if let Some(reason) = low {
        anyhow::bail!("{reason}; free some space and start chorusd again");
    }
    let seed = node_key(&settings, data_dir)?;
    let (peer_id, key_address) = commands::describe_key(&seed);
    let store = Store::open(&data_dir.join("db"), &genesis)
        .with_context(|| format!("cannot open the chain in {}", data_dir.display()))?;
    // Only proof of work mines; other engines' blocks come from their validators' slots.
    let mines = matches!(genesis.engine_at(Height::GENESIS), EngineConfig::Pow(_));
    let coinbase = (settings.mine && mines).then(|| settings.coinbase.unwrap_or(key_address));
    // The node's key signs its blocks and votes under engines with validators, and the
    // evidence of equivocation it reports.
    let node_key = chorus_chain::crypto::SecretKey::from_seed(*seed);
    let engine = new_engine(&genesis, EngineOptions { coinbase, signer: Some(Signer::new(node_key.clone())) })?;
    tracing::info!(engine = engine.name(), head = store.head().height.get(), %peer_id, "chain opened");
    let driver = Driver::new(store, engine).with_node_key(node_key);
    let reads = Reads::new(driver.store().reader(), driver.mempool().index(), genesis.clone());

    let mut registry = Registry::default();
    let mut p2p_config = chorus_p2p::Config::new(NodeKey::from_secret(*seed), genesis.chain_id.to_string());
    drop(seed);
    p2p_config.listen = settings.listen.clone();
    p2p_config.bootnodes = settings.bootnodes.clone();
    // A permissioned engine names the peers it admits when it starts; until then, none.
    if driver.engine().permissioned() {
        p2p_config.allowlist = Some(Vec::new());
    }
    let (net, events) = chorus_p2p::start(p2p_config, &mut registry).await.context("cannot start the network")?;
    for address in net.listen_addrs() {
        announce!("p2p listening on {address}");
    }
    let metrics = NodeMetrics::register(registry.sub_registry_with_prefix("chorus"));

    let (inputs_tx, inputs) = mpsc::channel(limits::NODE_INPUT_QUEUE_MAX as usize);
    let (heads, _) = broadcast::channel(limits::RPC_NOTICES_QUEUED_MAX as usize);
    let (finals, _) = broadcast::channel(limits::RPC_NOTICES_QUEUED_MAX as usize);
    let (mined_tx, mined) = mpsc::channel(limits::MINED_BLOCKS_QUEUED_MAX as usize);
    let miner = match coinbase {
        Some(coinbase) => {
            announce!("mining on {} thread(s), rewards to {coinbase}", settings.miner_threads);
            let (found, finds) = std::sync::mpsc::sync_channel(limits::MINED_BLOCKS_QUEUED_MAX as usize);
            std::thread::Builder::new().name("mined".to_owned()).spawn(move || {
                while let Ok(block) = finds.recv() {
                    if mined_tx.blocking_send(block).is_err() {
                        return;
                    }
                }
            })?;
            Some(ThreadMiner::new(settings.miner_threads, found, crate::clock::now().as_millis()))
        }
        None => None,
    };

    // The pending transactions a clean stop kept are back in the pool before the RPC server
    // starts: its reads do not wait for the core, so a client could otherwise see them unknown.
    let core = Core::new(driver, net.clone(), miner, inputs_tx.clone(), heads.clone(), finals.clone(), metrics)
        .keep_mempool_in(data_dir.join("mempool.bin"))
        .watch_disk(data_dir.to_path_buf());
    // The admin token is written before the server starts, so a client that sees the RPC
    // address can read it.
    let token = AdminToken::generate();
    let token_path = data_dir.join(rpc::access::ADMIN_TOKEN_FILE);
    token.write(&token_path).with_context(|| format!("cannot write the RPC admin token {}", token_path.display()))?;
    announce!("RPC admin token in {}", token_path.display());
    // The explorer page's address is bound first: the RPC admits the page's origin.
    let explorer = match settings.explorer {
        Some(addr) => Some(crate::explorer::bind(addr).await.context("cannot start the explorer page")?),
        None => None,
    };
    let mut origins = settings.rpc_allow_origins.clone();
    if let Some(listener) = &explorer {
        origins.extend(crate::explorer::page_origins(listener.local_addr()?));
    }
    let access = Access { hosts: settings.rpc_allow_hosts.clone(), origins, token };
    let (rpc_addr, rpc) = rpc::start(
        settings.rpc,
        access,
        settings.rpc_rate,
        genesis.chain_id.clone(),
        reads,
        inputs_tx,
        net.clone(),
        heads,
        finals,
        registry.sub_registry_with_prefix("chorus"),
    )
    .await
    .context("cannot start the RPC server")?;
    announce!("RPC listening on http://{rpc_addr} and ws://{rpc_addr}");
    if let Some(listener) = explorer {
        let page = listener.local_addr()?;
        crate::explorer::serve(listener, rpc_addr);
        announce!("explorer at http://{page}/");
    }
    let metrics_addr =
        serve_metrics(settings.metrics, Arc::new(registry)).await.context("cannot start the metrics server")?;
    announce!("metrics at http://{metrics_addr}/metrics");

    let (stop_tx, stop) = oneshot::channel();
    let mut core = run_core(core, events, inputs, mined, stop)?;
    let result = tokio::select! {
        result = &mut core => Some(result),
        () = shutdown_signal() => None,
    };
    let result = match result {
        Some(result) => result.context("the node task failed"),
        None => {
            announce!("chorusd: shutting down");
            let _ = stop_tx.send(());
            match tokio::time::timeout(SHUTDOWN_TIMEOUT, core).await {
                Ok(result) => result.context("the node task failed"),
                Err(_) => Err(anyhow::anyhow!(
                    "shutdown took longer than {SHUTDOWN_TIMEOUT:?}; stopping anyway (the store is safe)"
                )),
            }
        }
    };
    let _ = rpc.stop();
    // A token of a stopped node opens nothing; removing it tells clients the node is gone.
    let _ = std::fs::remove_file(&token_path);
    net.shutdown().await;
    result
}

/// Runs the core on a thread of its own: its disk writes (a synced log write, a block import)
/// block that thread, never the runtime's workers that carry the network and RPC. On a
/// shared worker, a message another task woke stood behind a write for up to a millisecond.
fn run_core(
    core: Core,
    events: chorus_p2p::Events,
    inputs: mpsc::Receiver<Input>,
    mined: mpsc::Receiver<Arc<Block>>,
    stop: oneshot::Receiver<()>,
) -> anyhow::Result<oneshot::Receiver<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the core's runtime")?;
    let (done, result) = oneshot::channel();
    std::thread::Builder::new().name("core".to_owned()).spawn(move || {
        runtime.block_on(core.run(events, inputs, mined, stop));
        let _ = done.send(());
    })?;
    Ok(result)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// Serves the registry on `GET /metrics`: OpenMetrics to a scraper that asks for it, the
/// Prometheus text format to anyone else ([`crate::metrics`]).
async fn serve_metrics(addr: SocketAddr, registry: Arc<Registry>) -> anyhow::Result<SocketAddr> {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::service::service_fn;
    use hyper::{Response, StatusCode};

    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let registry = Arc::clone(&registry);
            tokio::spawn(async move {
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let registry = Arc::clone(&registry);
                    async move {
                        let accept = request.headers().get(hyper::header::ACCEPT).and_then(|value| value.to_str().ok());
                        let openmetrics = crate::metrics::wants_openmetrics(accept);
                        let mut text = String::new();
                        let (status, content_type, body) = if request.uri().path() != "/metrics" {
                            let body = "not found: metrics are at /metrics\n".to_owned();
                            (StatusCode::NOT_FOUND, "text/plain; charset=utf-8", body)
                        } else if prometheus_client::encoding::text::encode(&mut text, &registry).is_err() {
                            let body = "metrics could not be encoded\n".to_owned();
                            (StatusCode::INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8", body)
                        } else if openmetrics {
                            (StatusCode::OK, crate::metrics::OPENMETRICS_CONTENT_TYPE, text)
                        } else {
                            (
                                StatusCode::OK,
                                crate::metrics::TEXT_CONTENT_TYPE,
                                crate::metrics::to_prometheus_text(&text),
                            )
                        };
                        Response::builder()
                            .status(status)
                            .header("content-type", content_type)
                            .body(Full::new(Bytes::from(body)))
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    Ok(bound)
}

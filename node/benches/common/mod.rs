//! What the testnet benchmarks share: each node's head and finality notices, timed as they
//! arrive over `chain_subscribeHeads` and `chain_subscribeFinalized`.
#![allow(dead_code, reason = "each benchmark uses part of it")]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonrpsee::core::client::{Subscription, SubscriptionClientT};
use jsonrpsee::rpc_params;
use serde_json::Value;

/// A notice and its arrival, in ms since the Unix epoch.
#[derive(Debug, Clone)]
pub struct Notice {
    pub at_ms: u64,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub enum Kind {
    /// A new head; `timestamp_ms` is its slot's start under a slot engine.
    Head {
        height: u64,
        hash: String,
        timestamp_ms: u64,
    },
    Final {
        height: u64,
    },
}

pub fn now_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis()).expect("ms fit u64")
}

/// `CHORUS_<NAME>_BENCH_SECS`, else `default` seconds: how long the testnet runs.
pub fn run_secs(name: &str, default: u64) -> Duration {
    let variable = format!("CHORUS_{name}_BENCH_SECS");
    Duration::from_secs(std::env::var(variable).ok().and_then(|secs| secs.parse().ok()).unwrap_or(default))
}

/// Every node's notices (`urls` are their WebSocket RPC addresses) for `run`, in arrival order,
/// leaving out those of the first `warmup`.
pub fn watch(urls: &[String], run: Duration, warmup: Duration) -> Vec<Vec<Notice>> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let tasks: Vec<_> = urls.iter().cloned().map(|url| tokio::spawn(watch_node(url, run, warmup))).collect();
        let mut notices = Vec::new();
        for task in tasks {
            notices.push(task.await.expect("a watcher"));
        }
        notices
    })
}

async fn watch_node(url: String, run: Duration, warmup: Duration) -> Vec<Notice> {
    let client = jsonrpsee::ws_client::WsClientBuilder::default().build(url).await.expect("ws connects");
    let subscribe = |method: &'static str, unsubscribe: &'static str| {
        let client = &client;
        async move {
            let subscription: Subscription<Value> =
                client.subscribe(method, rpc_params![], unsubscribe).await.expect("subscribes");
            subscription
        }
    };
    let mut heads = subscribe("chain_subscribeHeads", "chain_unsubscribeHeads").await;
    let mut finals = subscribe("chain_subscribeFinalized", "chain_unsubscribeFinalized").await;
    let start = Instant::now();
    let mut seen = Vec::new();
    loop {
        let left = run.saturating_sub(start.elapsed());
        // A final notice goes out before the head notice of the same change: take it first.
        let notice = tokio::select! {
            biased;
            finalized = finals.next() => finalized.map(|finalized| {
                Kind::Final { height: finalized.expect("a final notice")["height"].as_u64().expect("height") }
            }),
            head = heads.next() => head.map(|head| {
                let head = head.expect("a head notice");
                Kind::Head {
                    height: head["height"].as_u64().expect("height"),
                    hash: head["hash"].as_str().expect("hash").to_owned(),
                    timestamp_ms: head["timestamp"].as_u64().expect("timestamp"),
                }
            }),
            () = tokio::time::sleep(left) => None,
        };
        let Some(kind) = notice else { break };
        if start.elapsed() >= warmup {
            seen.push(Notice { at_ms: now_ms(), kind });
        }
    }
    seen
}

/// The `p`th percentile of sorted values.
pub fn percentile(sorted: &[u64], p: usize) -> u64 {
    sorted[(sorted.len() - 1) * p / 100]
}

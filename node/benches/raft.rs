//! Raft on 3 members (real release `chorusd` processes on loopback): how long a transfer takes
//! from submission to final, over the floor the protocol allows on this machine, and how many
//! transfers a second become final under load.
//!
//! - Floor: a commit needs a follower's copy on disk (a synced write; the leader writes its own
//!   meanwhile) and one round trip between them; both are measured here first (a synced
//!   RocksDB batch of one small record, a 64-byte TCP ping-pong on loopback). The transfer's
//!   path adds the RPC call, admission, building the block, telling the followers it
//!   committed, and applying it on each.
//! - Latency: transfers sent one at a time to the leader, each waited for until every member
//!   announces its block final (`chain_subscribeFinalized` over WebSocket, so that watching
//!   adds no polling); p50 and p99, and p50 over the floor (`ratio`; the target is 3
//!   at most).
//! - Throughput: the harness's load (four senders through the leader) for
//!   `CHORUS_RAFT_BENCH_SECS` (default 20), then the time until the last accepted transfer is
//!   final; final transfers a second over the single-core verification rate of the same
//!   transfers (every member checks each once).
//!
//! `cargo bench --workspace --bench raft` (`CHORUS_RAFT_BENCH_MEMBERS`, default 3: with 1, the
//! same path without replication, to tell the network's share from the node's).
#![allow(
    clippy::disallowed_types,
    clippy::float_arithmetic,
    reason = "a benchmark measures and divides wall-clock time"
)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use chorus_chain::primitives::{Amount, ChainId};
use chorus_chain::tx::{Transaction, TxKind};
use chorus_chain::{SecretKey, testing};
use chorus_store::Store;
use chorus_testnet::rpc::TxStatus;
use chorus_testnet::testnet::CHAIN_ID;
use chorus_testnet::{Binaries, Testnet};

const LATENCY_SAMPLES: usize = 200;

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort_unstable();
    values[values.len() / 2]
}

/// A synced RocksDB write batch of one 100-byte record, as a member writes its log entry.
fn synced_write() -> Duration {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(dir.path(), &testing::genesis(1, 1)).expect("a store");
    let samples = (0..200u32)
        .map(|index| {
            let record = (index.to_be_bytes().to_vec(), Some(vec![7u8; 100]));
            let start = Instant::now();
            store.put_engine_records(&[record], true).expect("written");
            start.elapsed()
        })
        .collect();
    median(samples)
}

/// A 64-byte TCP round trip on loopback.
fn loopback_round_trip() -> Duration {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
    let addr = listener.local_addr().expect("an address");
    let echo = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accepts");
        stream.set_nodelay(true).expect("nodelay");
        let mut buffer = [0u8; 64];
        while stream.read_exact(&mut buffer).is_ok() {
            if stream.write_all(&buffer).is_err() {
                break;
            }
        }
    });
    let mut stream = TcpStream::connect(addr).expect("connects");
    stream.set_nodelay(true).expect("nodelay");
    let mut buffer = [0u8; 64];
    let samples = (0..1_000)
        .map(|_| {
            let start = Instant::now();
            stream.write_all(&buffer).expect("writes");
            stream.read_exact(&mut buffer).expect("reads");
            start.elapsed()
        })
        .collect();
    drop(stream);
    echo.join().expect("the echo thread");
    median(samples)
}

/// The member every member names leader.
fn leader(testnet: &Testnet, members: usize) -> usize {
    testnet.wait_for("one leader", |testnet| {
        let leaders: Vec<u64> = (1..=members)
            .filter_map(|k| {
                let set = testnet.rpc(k).call("consensus_validators", serde_json::json!([])).ok()?;
                set["raft"]["leader"].as_u64()
            })
            .collect();
        match leaders.as_slice() {
            [first, rest @ ..] if leaders.len() == members && rest.iter().all(|id| id == first) => {
                Ok(usize::try_from(*first).map_err(|error| error.to_string())?)
            }
            _ => Err(format!("leaders named: {leaders:?}")),
        }
    })
}

/// Every member's finality notices, as (member, height), from a WebSocket subscription each.
fn watch_finality(
    runtime: &tokio::runtime::Runtime,
    testnet: &Testnet,
    members: usize,
) -> std::sync::mpsc::Receiver<(usize, u64)> {
    use jsonrpsee::core::client::SubscriptionClientT;

    let (notices, finals) = std::sync::mpsc::channel();
    for member in 1..=members {
        let url = format!("ws://{}", testnet.rpc(member).addr());
        let notices = notices.clone();
        let mut subscription = runtime.block_on(async move {
            let client = jsonrpsee::ws_client::WsClientBuilder::default().build(url).await.expect("a WebSocket");
            let subscription = client
                .subscribe::<serde_json::Value, _>(
                    "chain_subscribeFinalized",
                    jsonrpsee::rpc_params![],
                    "chain_unsubscribeFinalized",
                )
                .await
                .expect("subscribed");
            (client, subscription)
        });
        runtime.spawn(async move {
            let _client = &subscription.0;
            while let Some(Ok(notice)) = subscription.1.next().await {
                let height = notice["height"].as_u64().expect("a height");
                if notices.send((member, height)).is_err() {
                    return;
                }
            }
        });
    }
    finals
}

fn main() {
    let write = synced_write();
    let round_trip = loopback_round_trip();
    let floor = write + round_trip;

    let bins = Binaries::in_dir(Path::new(env!("CARGO_BIN_EXE_chorusd")).parent().expect("a directory"));
    let members: usize =
        std::env::var("CHORUS_RAFT_BENCH_MEMBERS").ok().and_then(|members| members.parse().ok()).unwrap_or(3);
    let testnet = Testnet::builder("raft", members).binaries(bins).start().expect("the testnet starts");
    let leader = leader(&testnet, members);
    let rpc = testnet.rpc(leader);
    let chain_id = ChainId::new(CHAIN_ID).expect("a chain id");

    // Latency: one transfer at a time from the funded account 1; each makes one block.
    let sender: &SecretKey = testnet.account(1);
    let sink = testnet.load_sink();
    let watch = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let finals = watch_finality(&watch, &testnet, members);
    let mut height = rpc.head().expect("the head").height.get();
    let mut latencies = Vec::with_capacity(LATENCY_SAMPLES);
    for nonce in 0..LATENCY_SAMPLES as u64 {
        let tx = Transaction {
            chain_id: chain_id.clone(),
            sender: sender.address(),
            nonce,
            fee: Amount::new(1),
            kind: TxKind::Transfer { to: sink, amount: Amount::new(1) },
        }
        .sign(sender);
        let start = Instant::now();
        let hash = rpc.submit(&tx).expect("accepted");
        height += 1;
        let mut pending: Vec<usize> = (1..=members).collect();
        while !pending.is_empty() {
            let (member, final_height) = finals.recv_timeout(Duration::from_secs(30)).expect("a final block in 30 s");
            if final_height >= height {
                pending.retain(|k| *k != member);
            }
        }
        latencies.push(start.elapsed());
        match rpc.tx(&hash).expect("status") {
            TxStatus::Final { height: at, .. } if at.get() == height => {}
            other => panic!("transfer {hash} expected final at height {height}: {other:?}"),
        }
    }
    latencies.sort_unstable();
    let p50 = latencies[latencies.len() / 2];
    let p99 = latencies[latencies.len() * 99 / 100];

    // Throughput: the load through the leader, then until its last transfer is final.
    let run = common::run_secs("RAFT", 20);
    let start = Instant::now();
    let load = testnet.start_load(&[(2, leader), (3, leader), (4, leader)], 3_000);
    std::thread::sleep(run);
    let report = load.stop();
    let last = *report.accepted.last().expect("the load sent transfers");
    testnet.wait_for("the load's last transfer final", |testnet| match testnet.rpc(leader).tx(&last) {
        Ok(TxStatus::Final { .. }) => Ok(()),
        other => Err(format!("{other:?}")),
    });
    let elapsed = start.elapsed().as_secs_f64();
    let final_rate = report.accepted.len() as f64 / elapsed;

    // The denominator: one core checking the same kind of transfer.
    let key = testing::key(1);
    let txs: Vec<_> = (0..20_000u64)
        .map(|nonce| {
            Transaction {
                chain_id: chain_id.clone(),
                sender: key.address(),
                nonce,
                fee: Amount::new(1),
                kind: TxKind::Transfer { to: sink, amount: Amount::new(1) },
            }
            .sign(&key)
        })
        .collect();
    let verify_start = Instant::now();
    for tx in &txs {
        tx.verify(&chain_id).expect("valid");
    }
    let verify_rate = txs.len() as f64 / verify_start.elapsed().as_secs_f64();

    println!(
        "raft commit latency (submit to final on all {members} members): p50 {:.2} ms, p99 {:.2} ms; \
         floor {:.2} ms (a synced write of {:.2} ms + loopback round trip {:.3} ms), ratio {:.1}; \
         load: {} transfers final in {elapsed:.1} s, {final_rate:.0} tx/s, raw verify {verify_rate:.0}/s (1 core), \
         ratio {:.3} ({} refused)",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        floor.as_secs_f64() * 1e3,
        write.as_secs_f64() * 1e3,
        round_trip.as_secs_f64() * 1e3,
        p50.as_secs_f64() / floor.as_secs_f64(),
        report.accepted.len(),
        final_rate / verify_rate,
        report.refused.len(),
    );
}

//! Gossip throughput and sync round trips between two services on loopback, beside the rate at
//! which one core verifies transfer signatures (what bounds block import), measured in the same
//! run: gossip must outrun import.
//!
//! `cargo bench --workspace --bench gossip`
#![allow(clippy::float_arithmetic, reason = "a benchmark measures and divides wall-clock time")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chorus_chain::{Hash, SignedTransaction, TxKind, codec, testing};
use chorus_p2p::{Config, Event, NetworkHandle, NodeKey, SyncRequest, SyncResponse, Topic, Verdict};
use prometheus_client::registry::Registry;
use tokio::sync::Notify;

const RTT_TRIALS: usize = 2_000;

#[derive(Default)]
struct Received {
    messages: AtomicU64,
    bytes: AtomicU64,
    notify: Notify,
}

async fn service(bootnode: Option<chorus_p2p::Multiaddr>) -> (NetworkHandle, chorus_p2p::Events) {
    let mut config = Config::new(NodeKey::generate(), "bench");
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr")];
    config.discovery = false;
    config.bootnodes = bootnode.into_iter().collect();
    // The round trips below go back to back, beyond what a node grants one peer.
    config.request_rate = chorus_p2p::RequestRate { interval: Duration::from_micros(1), burst: 10_000 };
    chorus_p2p::start(config, &mut Registry::default()).await.expect("service")
}

/// Publishes `count` distinct messages of `size` bytes, keeping at most `window` unconfirmed,
/// and returns the elapsed time once the other side has all of them.
async fn gossip(sender: &NetworkHandle, received: &Received, size: usize, count: u64, window: u64) -> Duration {
    let base = received.messages.load(Ordering::SeqCst);
    let mut payload = vec![0u8; size];
    let start = Instant::now();
    for index in 0..count {
        while index - (received.messages.load(Ordering::SeqCst) - base) >= window {
            received.notify.notified().await;
        }
        payload[..8].copy_from_slice(&index.to_le_bytes());
        // Ids are content hashes: every message of every run must differ.
        payload[8..16].copy_from_slice(&base.to_le_bytes());
        while let Err(error) = sender.publish(Topic::Blocks, payload.clone()).await {
            // Subscriptions travel after the connection; a full queue drains.
            assert!(
                matches!(error, chorus_p2p::PublishError::NoPeers(_) | chorus_p2p::PublishError::QueuesFull),
                "{error}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    while received.messages.load(Ordering::SeqCst) - base < count {
        received.notify.notified().await;
    }
    start.elapsed()
}

/// Transfers checked per second on one core (stateless checks and the signature).
fn verifications_per_second(tx: &SignedTransaction, chain_id: &chorus_chain::ChainId) -> f64 {
    let rounds = 20_000;
    let start = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(tx).verify(chain_id).expect("valid");
    }
    rounds as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let (a, mut a_events) = service(None).await;
        let (b, mut b_events) = service(Some(a.listen_addrs()[0].clone())).await;

        // Node A serves one block for round trips; node B accepts and counts gossip.
        let genesis = testing::genesis(1, 1);
        let block = chorus_chain::state::genesis_block(&genesis, Hash::ZERO);
        let block_hash = block.hash();
        let a_handle = a.clone();
        let (echoes_tx, mut echoes) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            while let Some(event) = a_events.recv().await {
                match event {
                    Event::Request { id, .. } => {
                        let _ = a_handle.respond(id, SyncResponse::Block(Some(Box::new(block.clone())))).await;
                    }
                    Event::Direct { data, .. } => {
                        let _ = echoes_tx.send(data).await;
                    }
                    _ => {}
                }
            }
        });
        let received = Arc::new(Received::default());
        let counter = received.clone();
        let b_handle = b.clone();
        tokio::spawn(async move {
            while let Some(event) = b_events.recv().await {
                match event {
                    Event::Gossip { id, from, data, .. } => {
                        let _ = b_handle.validate(id, from, Verdict::Accept).await;
                        counter.bytes.fetch_add(data.len() as u64, Ordering::SeqCst);
                        counter.messages.fetch_add(1, Ordering::SeqCst);
                        counter.notify.notify_one();
                    }
                    // Direct messages come straight back.
                    Event::Direct { from, data } => {
                        let _ = b_handle.send_direct(from, data);
                    }
                    _ => {}
                }
            }
        });

        // Warm up: subscriptions exchanged, mesh formed.
        gossip(&a, &received, 1024, 100, 10).await;

        let mut gossip_mbps_1mib = 0.0;
        for (size, count, window) in [(1024usize, 20_000u64, 256u64), (1 << 20, 300, 8)] {
            let elapsed = gossip(&a, &received, size, count, window).await;
            let messages_per_second = count as f64 / elapsed.as_secs_f64();
            let mbps = messages_per_second * size as f64 / 1e6;
            println!("gossip {size} B: {messages_per_second:.0} messages/s, {mbps:.1} MB/s ({count} messages, window {window})");
            gossip_mbps_1mib = mbps;
        }

        let peer = a.local_peer_id();
        let mut rtts = Vec::with_capacity(RTT_TRIALS);
        for _ in 0..RTT_TRIALS {
            let start = Instant::now();
            let response = b.request(peer, SyncRequest::Block(block_hash)).await.expect("answer");
            rtts.push(start.elapsed());
            assert!(matches!(response, SyncResponse::Block(Some(_))));
        }
        rtts.sort();
        let median = rtts[RTT_TRIALS / 2];
        let p99 = rtts[RTT_TRIALS * 99 / 100];
        println!("sync round trip (block by hash): median {median:?}, p99 {p99:?} over {RTT_TRIALS} requests");

        // Direct messages: one to B, which sends it back (two one-way messages, as a Raft
        // append and its answer).
        let b_peer = b.local_peer_id();
        let mut rtts = Vec::with_capacity(RTT_TRIALS);
        for trial in 0..RTT_TRIALS {
            let payload = (trial as u64).to_le_bytes().to_vec();
            let start = Instant::now();
            a.send_direct(b_peer, payload.clone()).expect("queued").outcome().await.expect("sent");
            let echo = echoes.recv().await.expect("echoed");
            rtts.push(start.elapsed());
            assert_eq!(echo, payload);
        }
        rtts.sort();
        let median = rtts[RTT_TRIALS / 2];
        let p99 = rtts[RTT_TRIALS * 99 / 100];
        println!("direct message there and back: median {median:?}, p99 {p99:?} over {RTT_TRIALS} exchanges");

        // What import can take: one signature check per transfer dominates it.
        let key = testing::key(0);
        let tx = testing::signed(&genesis, &key, 0, TxKind::Transfer { to: testing::key(1).address(), amount: chorus_chain::Amount::new(1) });
        let tx_bytes = codec::encode(&tx).len();
        let verifies = verifications_per_second(&tx, &genesis.chain_id);
        let import_mbps = verifies * tx_bytes as f64 / 1e6;
        println!(
            "ed25519 verify: {verifies:.0}/s on one core = {import_mbps:.1} MB/s of {tx_bytes}-byte transfers; \
             1 MiB gossip over that: ratio {:.1}",
            gossip_mbps_1mib / import_mbps
        );
        a.shutdown().await;
        b.shutdown().await;
    });
}

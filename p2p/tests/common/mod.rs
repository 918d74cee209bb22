//! Real services on loopback, each with a small "node" task that answers the service the way
//! chorusd will: it validates gossip by a fixed rule and serves sync requests from a chain.

#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chorus_chain::{Block, Hash, Height, testing};
use chorus_p2p::{
    BanReason, Config, Event, Misbehaviour, NetworkHandle, NodeKey, PeerId, SyncRequest, SyncResponse, Topic, Verdict,
};
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;

/// Upper bound for anything a test waits for; polling ends as soon as it holds.
pub const WAIT: Duration = Duration::from_secs(60);

pub const CHAIN: &str = "p2p-test";

/// Payload prefixes the test node judges by.
pub const INVALID: &[u8] = b"invalid:";
pub const GARBAGE: &[u8] = b"garbage:";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Gossip { topic: Topic, from: PeerId, data: Vec<u8> },
    Direct { from: PeerId, data: Vec<u8> },
    Connected(PeerId),
    Disconnected(PeerId),
    Banned(PeerId, BanReason),
}

pub struct TestNode {
    pub handle: NetworkHandle,
    pub seen: mpsc::Receiver<Seen>,
    pub registry: Registry,
}

pub fn config() -> Config {
    let mut config = Config::new(NodeKey::generate(), CHAIN);
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr")];
    config.tick = Duration::from_millis(100);
    config
}

/// `length` fabricated blocks at heights 0.. (the service does not validate blocks).
pub fn chain(length: u64) -> Arc<Vec<Block>> {
    let genesis = chorus_chain::state::genesis_block(&testing::genesis(1, 1), Hash::ZERO);
    Arc::new(
        (0..length)
            .map(|height| {
                let mut block = genesis.clone();
                block.header.height = Height::new(height);
                block
            })
            .collect(),
    )
}

/// A node that answers sync requests from `chain`.
pub async fn start(config: Config, chain: Arc<Vec<Block>>) -> TestNode {
    start_serving(config, Some(chain)).await
}

/// A node that never answers sync requests.
pub async fn start_silent(config: Config) -> TestNode {
    start_serving(config, None).await
}

async fn start_serving(config: Config, chain: Option<Arc<Vec<Block>>>) -> TestNode {
    let mut registry = Registry::default();
    let (handle, events) = chorus_p2p::start(config, &mut registry).await.expect("service starts");
    let (seen_tx, seen) = mpsc::channel(100_000);
    tokio::spawn(serve(handle.clone(), events, chain, seen_tx));
    TestNode { handle, seen, registry }
}

async fn serve(
    handle: NetworkHandle,
    mut events: chorus_p2p::Events,
    chain: Option<Arc<Vec<Block>>>,
    seen: mpsc::Sender<Seen>,
) {
    while let Some(event) = events.recv().await {
        let observed = match event {
            Event::Gossip { topic, id, from, data } => {
                let verdict = if data.starts_with(INVALID) {
                    Verdict::Reject(Misbehaviour::Invalid)
                } else if data.starts_with(GARBAGE) {
                    Verdict::Reject(Misbehaviour::Undecodable)
                } else {
                    Verdict::Accept
                };
                let _ = handle.validate(id, from, verdict).await;
                Seen::Gossip { topic, from, data }
            }
            Event::Request { id, request, .. } => {
                if let Some(chain) = &chain {
                    let _ = handle.respond(id, answer(chain, &request)).await;
                }
                continue;
            }
            Event::Direct { from, data } => Seen::Direct { from, data },
            Event::PeerConnected { peer, .. } => Seen::Connected(peer),
            Event::PeerDisconnected { peer } => Seen::Disconnected(peer),
            Event::PeerBanned { peer, reason, .. } => Seen::Banned(peer, reason),
        };
        if seen.send(observed).await.is_err() {
            return;
        }
    }
}

fn answer(chain: &[Block], request: &SyncRequest) -> SyncResponse {
    let range = |from: Height, count: u32| {
        let start = usize::try_from(from.get()).unwrap_or(usize::MAX).min(chain.len());
        let end = start.saturating_add(count as usize).min(chain.len());
        &chain[start..end]
    };
    match request {
        SyncRequest::Headers { from, count } => {
            SyncResponse::Headers(range(*from, *count).iter().map(|block| block.header.clone()).collect())
        }
        SyncRequest::Blocks { from, count } => SyncResponse::Blocks(range(*from, *count).to_vec()),
        SyncRequest::BlocksAfter { locator } => {
            let start = locator.iter().find_map(|hash| chain.iter().position(|block| block.hash() == *hash));
            SyncResponse::Blocks(start.map_or(Vec::new(), |start| range(Height::new(start as u64 + 1), 64).to_vec()))
        }
        SyncRequest::Status => {
            let head = chain.last().expect("a chain has a genesis");
            SyncResponse::Status { head: head.hash(), height: head.header.height }
        }
        SyncRequest::Block(hash) => {
            SyncResponse::Block(chain.iter().find(|block| block.hash() == *hash).cloned().map(Box::new))
        }
    }
}

/// Polls `check` until it returns `Some`, for at most [`WAIT`], with the harness's bounded
/// wait ([`chorus_testnet::eventually_async`]).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    chorus_testnet::eventually_async(what, WAIT, || {
        let check = check();
        async move { check.await.ok_or("the check did not hold") }
    })
    .await
}

pub async fn connected(handle: &NetworkHandle) -> Vec<PeerId> {
    handle.peers().await.expect("peers").connected.into_iter().map(|info| info.peer).collect()
}

/// Waits until `node` sees a gossip message with `data`; returns everything it saw before.
pub async fn until_gossip(node: &mut TestNode, data: &[u8]) -> Vec<Seen> {
    let mut before = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let seen = tokio::time::timeout_at(deadline, node.seen.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for gossip {:?}", String::from_utf8_lossy(data)))
            .expect("node task alive");
        if matches!(&seen, Seen::Gossip { data: got, .. } if got == data) {
            return before;
        }
        before.push(seen);
    }
}

/// Waits until `node` sees an event matching `wanted`.
pub async fn until_seen(node: &mut TestNode, what: &str, wanted: impl Fn(&Seen) -> bool) -> Seen {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let seen = tokio::time::timeout_at(deadline, node.seen.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .expect("node task alive");
        if wanted(&seen) {
            return seen;
        }
    }
}

/// Publishes, retrying while the topic has no subscribed peer yet (subscriptions travel after
/// the connection is up).
pub async fn publish(handle: &NetworkHandle, topic: Topic, data: &[u8]) {
    eventually("a subscribed peer to publish to", || async {
        match handle.publish(topic, data.to_vec()).await {
            Ok(()) => Some(()),
            Err(chorus_p2p::PublishError::NoPeers(_)) => None,
            Err(error) => panic!("publish failed: {error}"),
        }
    })
    .await;
}

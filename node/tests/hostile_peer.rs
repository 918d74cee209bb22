//! A hostile peer against real `chorusd` processes (issue 21): a PoS dev validator A and an
//! honest follower B, and in turn, for each kind of bad input, a fresh libp2p peer of our own
//! protocols (the `chorus-p2p` service, in this process, with a key of its own) that dials A and
//! sends it nothing but that input until A bans it. After each: A and B still make and follow
//! blocks, still peer with each other and ban neither, and neither stored what was sent.
#![allow(clippy::disallowed_types, reason = "tests bound their waits with the wall clock")]

use std::time::{Duration, Instant};

use chorus_chain::block::Block;
use chorus_chain::codec;
use chorus_chain::header::Seal;
use chorus_chain::primitives::{ChainId, Hash};
use chorus_chain::tx::{Checkpoint, Vote};
use chorus_chain::{SecretKey, limits};
use chorus_consensus::EngineMessage;
use chorus_node::dev::DEV_CHAIN_ID;
use chorus_p2p::{Event, GossipLimits, NetworkHandle, NodeKey, SyncRequest, Topic, Verdict};
use chorus_testnet::process::loopback_ports;
use chorus_testnet::{Chorusd, Launch};

/// Upper bound for anything the test waits for; polling ends as soon as it holds.
const WAIT: Duration = Duration::from_secs(90);

/// The two honest nodes: A, the dev validator; B, a follower on A's dev genesis.
struct Honest {
    a: Chorusd,
    b: Chorusd,
    _dir: tempfile::TempDir,
}

impl Honest {
    fn start() -> Honest {
        let dir = tempfile::tempdir().expect("tempdir");
        let chorusd = env!("CARGO_BIN_EXE_chorusd");
        let a_dir = dir.path().join("a");
        let a_data = a_dir.to_str().expect("utf-8");
        let a =
            Chorusd::start(&Launch::dev(chorusd, dir.path().join("a.log"), &["--engine", "pos", "--data-dir", a_data]))
                .unwrap_or_else(|error| panic!("A: {error}"));
        let genesis = a_dir.join("dev-genesis.json");
        let b_data = dir.path().join("b");
        let b = Chorusd::start(
            &Launch::new(chorusd, dir.path().join("b.log"))
                .args(["run", "--genesis", genesis.to_str().expect("utf-8")])
                .args(["--data-dir", b_data.to_str().expect("utf-8"), "--bootnode", a.p2p()])
                .args(loopback_ports()),
        )
        .unwrap_or_else(|error| panic!("B: {error}"));
        let honest = Honest { a, b, _dir: dir };
        eventually("B following A", || (height(&honest.b) >= 2 && peer_ids(&honest.a).0.len() == 1).then_some(()));
        honest
    }

    /// Both serve, make and follow blocks, peer with each other, and ban neither.
    fn still_well(&self, case: &str) {
        let start = height(&self.a);
        eventually(&format!("{case}: both nodes moving on"), || {
            (height(&self.a) >= start + 2 && height(&self.b) >= start + 2).then_some(())
        });
        let (a_connected, a_banned) = peer_ids(&self.a);
        let (b_connected, b_banned) = peer_ids(&self.b);
        let (a_id, b_id) = (peer_id(&self.a), peer_id(&self.b));
        assert!(a_connected.contains(&b_id) && b_connected.contains(&a_id), "{case}: A and B still peers");
        assert!(!a_banned.contains(&b_id) && !b_banned.contains(&a_id), "{case}: an honest peer was banned");
        assert!(self.a.exited().is_none() && self.b.exited().is_none(), "{case}: a node stopped");
    }

    /// Neither node has the block `hash`.
    fn stored_nowhere(&self, case: &str, hash: &Hash) {
        for (name, node) in [("A", &self.a), ("B", &self.b)] {
            assert!(node.rpc().block(hash).expect("chain_getBlock").is_none(), "{case}: {name} stored {hash}");
        }
    }
}

fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn height(node: &Chorusd) -> u64 {
    node.rpc().head().expect("chain_getHead").height.get()
}

fn peer_id(node: &Chorusd) -> String {
    node.rpc().status().expect("node_status").peer_id.to_string()
}

/// A node's connected and banned peers, by peer id.
fn peer_ids(node: &Chorusd) -> (Vec<String>, Vec<String>) {
    let peers = node.rpc().peers().expect("node_peers");
    (
        peers.connected.iter().map(|peer| peer.peer_id.to_string()).collect(),
        peers.banned.iter().map(|peer| peer.peer_id.to_string()).collect(),
    )
}

/// A peer of our protocols on the dev chain, with the key `seed`, connected to `target` only.
struct Hostile {
    key: SecretKey,
    handle: NetworkHandle,
    events: chorus_p2p::Events,
}

impl Hostile {
    async fn dial(seed: u8, target: &str, gossip: GossipLimits) -> Hostile {
        let key = SecretKey::from_seed([seed; 32]);
        let mut config = chorus_p2p::Config::new(NodeKey::from_secret([seed; 32]), DEV_CHAIN_ID.to_owned());
        config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr")];
        config.bootnodes = vec![target.parse().expect("A's address")];
        // It talks to A alone: B learns nothing of it from it.
        config.discovery = false;
        config.gossip = gossip;
        let mut registry = prometheus_client::registry::Registry::default();
        let (handle, events) = chorus_p2p::start(config, &mut registry).await.expect("the hostile peer starts");
        Hostile { key, handle, events }
    }

    fn peer_id(&self) -> String {
        self.handle.local_peer_id().to_string()
    }

    /// The next message A gossips on `topic`, decoded; everything it receives meanwhile is
    /// ignored (never forwarded).
    async fn next_gossip<T: codec::Canonical>(&mut self, topic: Topic) -> T {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv()).await;
            match event {
                Ok(Some(Event::Gossip { topic: got, id, from, data })) => {
                    let _ = self.handle.validate(id, from, Verdict::Ignore).await;
                    if got == topic
                        && let Ok(value) = codec::decode::<T>(&data)
                    {
                        return value;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => panic!("no gossip on {topic:?} within {WAIT:?}"),
            }
        }
    }

    /// Publishes `make(i)` for i = 0, 1, ... (each message distinct, so gossip never drops one
    /// as a duplicate) until A lists this peer as banned; returns how many were published.
    async fn until_banned(
        &mut self,
        a: &Chorusd,
        topic: Topic,
        mut make: impl FnMut(u32, &SecretKey) -> Vec<u8>,
    ) -> u32 {
        let me = self.peer_id();
        let deadline = Instant::now() + WAIT;
        for sent in 0u32.. {
            assert!(Instant::now() < deadline, "not banned after {sent} messages on {topic:?}");
            // No peer subscribed yet (just connected) is no send: try again.
            let _ = self.handle.publish(topic, make(sent, &self.key)).await;
            // Drain what A sends meanwhile, ignoring it.
            while let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(50), self.events.recv()).await {
                if let Event::Gossip { id, from, .. } = event {
                    let _ = self.handle.validate(id, from, Verdict::Ignore).await;
                }
            }
            if peer_ids(a).1.contains(&me) {
                return sent + 1;
            }
        }
        unreachable!("the loop returns or fails")
    }
}

/// A block A gossiped, with its slot and signature.
fn signed_slot(block: &Block) -> u64 {
    match block.header.seal {
        Seal::Signed { slot, .. } => slot,
        ref other => panic!("a PoS block is signed: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_peer_is_banned_for_each_kind_of_bad_input_and_the_honest_nodes_carry_on() {
    let honest = tokio::task::block_in_place(Honest::start);
    let chain_id = ChainId::new(DEV_CHAIN_ID).expect("chain id");
    let target = honest.a.p2p().to_owned();
    let mut seed = 100u8;
    let mut fresh = |gossip: GossipLimits| {
        seed += 1;
        Hostile::dial(seed, &target, gossip)
    };

    // Bytes that decode as nothing, on every topic.
    for topic in [Topic::Blocks, Topic::Transactions, Topic::Consensus] {
        let mut hostile = fresh(GossipLimits::default()).await;
        let sent = hostile
            .until_banned(&honest.a, topic, |i, _| [b"not a message ".as_slice(), &i.to_le_bytes()].concat())
            .await;
        eprintln!("undecodable on {topic:?}: banned after {sent} messages");
        tokio::task::block_in_place(|| honest.still_well(&format!("undecodable on {topic:?}")));
    }

    // A block message over the topic's limit (the peer allows itself more than A does).
    let mut hostile =
        fresh(GossipLimits { block_bytes_max: 2 * limits::BLOCK_BYTES_MAX, ..GossipLimits::default() }).await;
    let sent = hostile
        .until_banned(&honest.a, Topic::Blocks, |i, _| {
            let mut bytes = vec![0u8; limits::BLOCK_BYTES_MAX as usize + 1];
            bytes[..4].copy_from_slice(&i.to_le_bytes());
            bytes
        })
        .await;
    eprintln!("oversize blocks: banned after {sent}");
    tokio::task::block_in_place(|| honest.still_well("oversize"));

    // A's own latest block with its signature damaged: a new block (the seal is hashed) whose
    // signature does not verify.
    let mut hostile = fresh(GossipLimits::default()).await;
    let real: Block = hostile.next_gossip(Topic::Blocks).await;
    let mut forged = Vec::new();
    let sent = hostile
        .until_banned(&honest.a, Topic::Blocks, |i, _| {
            let mut block = real.clone();
            let mut signature = [0u8; 64];
            signature[..4].copy_from_slice(&i.to_le_bytes());
            block.header.seal =
                Seal::Signed { slot: signed_slot(&real), signature: chorus_chain::crypto::Signature(signature) };
            forged.push(block.hash());
            codec::encode(&block)
        })
        .await;
    eprintln!("bad signatures: banned after {sent}");
    tokio::task::block_in_place(|| {
        honest.still_well("bad signature");
        for hash in &forged {
            honest.stored_nowhere("bad signature", hash);
        }
    });

    // A's block claimed and signed by the hostile peer, which is no validator: the wrong
    // proposer for the slot.
    let mut hostile = fresh(GossipLimits::default()).await;
    let real: Block = hostile.next_gossip(Topic::Blocks).await;
    let mut forged = Vec::new();
    let sent = hostile
        .until_banned(&honest.a, Topic::Blocks, |i, key| {
            let mut block = real.clone();
            block.header.proposer = key.address();
            block.header.timestamp =
                chorus_chain::primitives::Timestamp::from_millis(block.header.timestamp.as_millis() + u64::from(i));
            let signing = block.header.signing_hash(&chain_id);
            block.header.seal = Seal::Signed { slot: signed_slot(&real), signature: key.sign(signing.as_bytes()) };
            forged.push(block.hash());
            codec::encode(&block)
        })
        .await;
    eprintln!("wrong proposer: banned after {sent}");
    tokio::task::block_in_place(|| {
        honest.still_well("wrong proposer");
        for hash in &forged {
            honest.stored_nowhere("wrong proposer", hash);
        }
    });

    // Finality votes, each signed by a key that is no validator's, linking two real blocks.
    let mut hostile = fresh(GossipLimits::default()).await;
    let first: Block = hostile.next_gossip(Topic::Blocks).await;
    let second: Block = hostile.next_gossip(Topic::Blocks).await;
    let checkpoint =
        |block: &Block| Checkpoint { height: block.header.height, slot: signed_slot(block), hash: block.hash() };
    let final_before = tokio::task::block_in_place(|| honest.a.rpc().finalized().expect("finalized"));
    let sent = hostile
        .until_banned(&honest.a, Topic::Consensus, |i, _| {
            // A voter of its own per message (distinct messages, each signed right).
            let mut seed = [7u8; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            let voter = SecretKey::from_seed(seed);
            codec::encode(&EngineMessage::Vote(Vote::signed(
                &chain_id,
                &voter,
                checkpoint(&first),
                checkpoint(&second),
            )))
        })
        .await;
    eprintln!("votes from a non-validator: banned after {sent}");
    tokio::task::block_in_place(|| {
        honest.still_well("non-validator votes");
        let final_after = honest.a.rpc().finalized().expect("finalized");
        assert!(final_after.map(|f| f.height) >= final_before.map(|f| f.height), "finality went on");
    });

    // A flood of sync requests: refused beyond the peer's rate, then a ban.
    let hostile = fresh(GossipLimits::default()).await;
    let a_id = chorus_p2p::parse_peer_id(&peer_id(&honest.a)).expect("A's peer id");
    let me = hostile.peer_id();
    let mut asked = 0u32;
    let deadline = Instant::now() + WAIT;
    while !tokio::task::block_in_place(|| peer_ids(&honest.a).1.contains(&me)) {
        assert!(Instant::now() < deadline, "not banned after {asked} sync requests");
        let requests: Vec<_> = (0..16).map(|_| hostile.handle.request(a_id, SyncRequest::Status)).collect();
        futures::future::join_all(requests).await;
        asked += 16;
    }
    eprintln!("sync flood: banned after {asked} requests");
    tokio::task::block_in_place(|| honest.still_well("sync flood"));

    // The honest nodes' logs never name a crash.
    for (name, node) in [("A", &honest.a), ("B", &honest.b)] {
        let log = node.log();
        assert!(!log.contains("panicked"), "{name} panicked: {log}");
    }
}

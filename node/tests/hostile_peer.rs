//! A hostile peer against real `chorusd` processes (issue 21): a libp2p peer of our own
//! protocols (the `chorus-p2p` service, in this process, with a key of its own) that sends, in
//! turn, one kind of bad input until the node bans it, each time from a fresh key.
//!
//! - Against a PoS dev validator A with an honest follower B: undecodable messages on every
//!   topic, an oversize block message, blocks with a damaged signature, blocks claimed by a key
//!   that is not the slot's proposer, finality votes from keys outside the set, sync answers
//!   that do not match their requests (after claiming a head far ahead), A's own vote
//!   replayed to it directly (votes travel by gossip), and a flood of sync requests. After each, A and B still make and follow blocks, peer with each other, ban
//!   neither, and store none of the forged blocks.
//! - Against a PoW follower (its miner paused, so its head holds still): mined blocks right in
//!   all the header shows but with a wrong state root; the penalties name the state root.
//! - Against a Raft member: a peer that is no member is never kept connected, and nothing it
//!   publishes finds a subscriber.
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
use chorus_p2p::{Event, GossipLimits, NetworkHandle, NodeKey, SyncRequest, SyncResponse, Topic, Verdict};
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

    /// After a case whose peer was banned after `sent` messages: both nodes are well, and
    /// neither has any of the `forged` blocks.
    fn after(&self, case: &str, sent: u32, forged: &[Hash]) {
        eprintln!("{case}: banned after {sent}");
        tokio::task::block_in_place(|| {
            self.still_well(case);
            for hash in forged {
                for (name, node) in [("A", &self.a), ("B", &self.b)] {
                    assert!(node.rpc().block(hash).expect("chain_getBlock").is_none(), "{case}: {name} stored {hash}");
                }
            }
        });
    }
}

fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    chorus_testnet::eventually(what, WAIT, || check().ok_or("not yet"))
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
        honest.after(&format!("undecodable on {topic:?}"), sent, &[]);
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
    honest.after("oversize blocks", sent, &[]);

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
    honest.after("bad signatures", sent, &forged);

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
    honest.after("wrong proposer", sent, &forged);

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
    honest.after("votes from non-validators", sent, &[]);
    let final_after = tokio::task::block_in_place(|| honest.a.rpc().finalized().expect("finalized"));
    assert!(final_after.map(|f| f.height) >= final_before.map(|f| f.height), "finality went on");

    // A's own finality vote, duplicated and replayed to it directly. Votes travel by gossip,
    // whose seen-cache drops a replay at every hop (the hostile peer's own publish of it fails);
    // sent directly, it is refused before any signature check, and each costs the sender.
    let a_id = chorus_p2p::parse_peer_id(&peer_id(&honest.a)).expect("A's peer id");
    let mut hostile = fresh(GossipLimits::default()).await;
    let vote: EngineMessage = hostile.next_gossip(Topic::Consensus).await;
    assert!(matches!(vote, EngineMessage::Vote(_)), "A gossips its votes: {vote:?}");
    let vote = codec::encode(&vote);
    assert!(hostile.handle.publish(Topic::Consensus, vote.clone()).await.is_err(), "gossip drops a replay");
    let me = hostile.peer_id();
    let mut replayed = 0u32;
    let deadline = Instant::now() + WAIT;
    while !tokio::task::block_in_place(|| peer_ids(&honest.a).1.contains(&me)) {
        assert!(Instant::now() < deadline, "not banned after {replayed} replayed votes");
        if let Ok(receipt) = hostile.handle.send_direct(a_id, vote.clone())
            && receipt.outcome().await.is_ok()
        {
            replayed += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    honest.after("a vote replayed directly", replayed, &[]);

    // Sync answers that do not match their requests: it claims a head far ahead, and answers
    // A's requests for blocks with blocks from elsewhere in the chain, or with headers.
    let mut hostile = fresh(GossipLimits::default()).await;
    let real: Block = hostile.next_gossip(Topic::Blocks).await;
    let head_before = tokio::task::block_in_place(|| height(&honest.a));
    let me = hostile.peer_id();
    let mut answered = 0u32;
    let deadline = Instant::now() + WAIT;
    while !tokio::task::block_in_place(|| peer_ids(&honest.a).1.contains(&me)) {
        assert!(Instant::now() < deadline, "not banned after {answered} mismatched answers");
        let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(200), hostile.events.recv()).await else {
            continue;
        };
        match event {
            Event::Request { id, request, .. } => {
                let response = match request {
                    SyncRequest::Status => SyncResponse::Status {
                        head: Hash([0x42; 32]),
                        height: chorus_chain::primitives::Height::new(head_before + 1_000),
                    },
                    SyncRequest::Blocks { .. } | SyncRequest::BlocksAfter { .. } if answered.is_multiple_of(2) => {
                        answered += 1;
                        // Not the heights asked for (nor consecutive from them).
                        SyncResponse::Blocks(vec![real.clone(), real.clone()])
                    }
                    _ => {
                        answered += 1;
                        SyncResponse::Headers(Vec::new())
                    }
                };
                let _ = hostile.handle.respond(id, response).await;
            }
            Event::Gossip { id, from, .. } => {
                let _ = hostile.handle.validate(id, from, Verdict::Ignore).await;
            }
            _ => {}
        }
    }
    honest.after("mismatched sync answers", answered, &[]);
    assert!(tokio::task::block_in_place(|| height(&honest.a)) < head_before + 1_000, "A took the claimed head");

    // A flood of sync requests: refused beyond the peer's rate, then a ban.
    let hostile = fresh(GossipLimits::default()).await;
    let me = hostile.peer_id();
    let mut asked = 0u32;
    let deadline = Instant::now() + WAIT;
    while !tokio::task::block_in_place(|| peer_ids(&honest.a).1.contains(&me)) {
        assert!(Instant::now() < deadline, "not banned after {asked} sync requests");
        let requests: Vec<_> = (0..16).map(|_| hostile.handle.request(a_id, SyncRequest::Status)).collect();
        futures::future::join_all(requests).await;
        asked += 16;
    }
    honest.after("sync flood (requests)", asked, &[]);

    // The honest nodes' logs never name a crash.
    for (name, node) in [("A", &honest.a), ("B", &honest.b)] {
        let log = node.log();
        assert!(!log.contains("panicked"), "{name} panicked: {log}");
    }
}

/// The wall clock in the chain's milliseconds (a header's timestamp).
fn now_ms() -> u64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970");
    u64::try_from(since_epoch.as_millis()).expect("fits")
}

/// A PoW block on `window`'s last header that is right in everything the header alone shows
/// (parent, height, time, target, proof of work, the empty body's roots) but claims the state
/// root `state_root`: only executing it tells it is wrong.
fn mined_child(
    window: &[chorus_chain::header::Header],
    config: &chorus_chain::genesis::PowConfig,
    coinbase: chorus_chain::Address,
    state_root: Hash,
) -> Block {
    use chorus_consensus::pow::difficulty::next_target;
    use chorus_consensus::pow::mining::{Grinder, with_nonce};
    let parent = window.last().expect("a parent");
    let body = chorus_chain::block::Body { txs: Vec::new(), votes: Vec::new() };
    let header = chorus_chain::header::Header {
        parent: parent.hash(),
        height: parent.height.next().expect("a next height"),
        timestamp: chorus_chain::primitives::Timestamp::from_millis(now_ms().max(parent.timestamp.as_millis() + 1)),
        txs_root: body.txs_root(),
        votes_root: body.votes_root(),
        state_root,
        proposer: coinbase,
        seal: Seal::Pow { target: next_target(config, window), nonce: 0 },
    };
    let mut grinder = Grinder::new(&header).expect("a PoW seal");
    let (nonce, _) = grinder.search(0, u64::MAX, &|| false);
    Block { header: with_nonce(&header, nonce.expect("a nonce at the dev difficulty")), body }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pow_block_with_a_wrong_state_root_gets_its_sender_banned_and_is_stored_nowhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let chorusd = env!("CARGO_BIN_EXE_chorusd");
    let (a, b) = tokio::task::block_in_place(|| {
        let a_dir = dir.path().join("a");
        let a = Chorusd::start(&Launch::dev(
            chorusd,
            dir.path().join("a.log"),
            &["--data-dir", a_dir.to_str().expect("utf-8")],
        ))
        .unwrap_or_else(|error| panic!("A: {error}"));
        let genesis = a_dir.join("dev-genesis.json");
        let b_data = dir.path().join("b");
        let b = Chorusd::start(
            &Launch::new(chorusd, dir.path().join("b.log"))
                .args(["run", "--genesis", genesis.to_str().expect("utf-8")])
                .args(["--data-dir", b_data.to_str().expect("utf-8"), "--bootnode", a.p2p()])
                .args(loopback_ports())
                // Penalties are logged, with their reason, at debug.
                .env("RUST_LOG", "info,libp2p=warn,chorus_node::daemon=debug,chorus_node_core::node=debug"),
        )
        .unwrap_or_else(|error| panic!("B: {error}"));
        // B follows A's chain past the retarget window, then A (the miner) is paused, so B's
        // head holds still and the forged block extends it rather than racing A's next one.
        eventually("B past the retarget window", || (height(&b) >= 12 && height(&b) == height(&a)).then_some(()));
        a.pause();
        (a, b)
    });
    let genesis = chorus_chain::genesis::Genesis::from_json(
        &std::fs::read(dir.path().join("a/dev-genesis.json")).expect("genesis"),
    )
    .expect("A's genesis");
    let config = match &genesis.engines[0].engine {
        chorus_chain::genesis::EngineConfig::Pow(config) => config.clone(),
        other => panic!("a PoW dev chain: {other:?}"),
    };

    let mut hostile = Hostile::dial(77, b.p2p(), GossipLimits::default()).await;
    let b_id = chorus_p2p::parse_peer_id(&peer_id(&b)).expect("B's peer id");
    let head = tokio::task::block_in_place(|| height(&b));
    let from = head.saturating_sub(config.retarget_window_blocks);
    let count = u32::try_from(head - from + 1).expect("a small window");
    let window = eventually_async_headers(&hostile, b_id, from, count).await;
    assert_eq!(window.last().map(|header| header.height.get()), Some(head), "the window ends at B's head");
    let coinbase = hostile.key.address();
    let mut forged = Vec::new();
    let sent = hostile
        .until_banned(&b, Topic::Blocks, |i, _| {
            let mut root = [0xee; 32];
            root[..4].copy_from_slice(&i.to_le_bytes());
            let block = mined_child(&window, &config, coinbase, Hash(root));
            forged.push(block.hash());
            codec::encode(&block)
        })
        .await;
    eprintln!("wrong state root: banned after {sent}");
    tokio::task::block_in_place(|| {
        for hash in &forged {
            assert!(b.rpc().block(hash).expect("chain_getBlock").is_none(), "B stored {hash}");
        }
        assert_eq!(height(&b), head, "B's head did not move to a forged block");
        // B penalized the sender for the state root, not for anything the header shows.
        let log = b.log();
        let reasons: Vec<&str> = log.lines().filter(|line| line.contains("penalizing peer")).collect();
        assert!(!reasons.is_empty() && reasons.iter().all(|line| line.contains("claims state root")), "{reasons:#?}");
        a.resume();
        for hash in &forged {
            assert!(a.rpc().block(hash).expect("chain_getBlock").is_none(), "A stored {hash}");
        }
        eventually("B following A again", || (height(&b) > head + 2).then_some(()));
        assert!(!peer_ids(&b).1.contains(&peer_id(&a)), "B banned A");
    });
}

/// Headers `from`, `count` of them, asked of `peer` (answered once the connection is up).
async fn eventually_async_headers(
    hostile: &Hostile,
    peer: chorus_p2p::PeerId,
    from: u64,
    count: u32,
) -> Vec<chorus_chain::header::Header> {
    let deadline = Instant::now() + WAIT;
    loop {
        let request = SyncRequest::Headers { from: chorus_chain::primitives::Height::new(from), count };
        if let Ok(SyncResponse::Headers(headers)) = hostile.handle.request(peer, request).await
            && headers.len() == count as usize
        {
            return headers;
        }
        assert!(Instant::now() < deadline, "no headers from {peer} within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raft_member_refuses_a_peer_that_is_no_member() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = tokio::task::block_in_place(|| {
        Chorusd::start(&Launch::dev(
            env!("CARGO_BIN_EXE_chorusd"),
            dir.path().join("raft.log"),
            &["--tmp", "--engine", "raft"],
        ))
        .unwrap_or_else(|error| panic!("{error}"))
    });
    let mut hostile = Hostile::dial(88, node.p2p(), GossipLimits::default()).await;
    let me = hostile.peer_id();
    // Whatever it gets through before the refusal, it is never a peer for long, and nothing it
    // publishes finds a subscriber.
    let mut published = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if hostile.handle.publish(Topic::Blocks, vec![1, 2, 3, published]).await.is_ok() {
            published += 1;
        }
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(50), hostile.events.recv()).await {}
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(published, 0, "a non-member's message found a subscriber");
    tokio::task::block_in_place(|| {
        assert!(!peer_ids(&node).0.contains(&me), "the member keeps a non-member connected");
        assert!(node.exited().is_none());
        assert!(node.rpc().status().expect("node_status").peer_id.to_string() != me);
    });
}

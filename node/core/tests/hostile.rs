//! What a hostile peer can make a node do, on a real RocksDB store with the PoW engine: side
//! branches, orphans and height claims (issue 15, items 1, 3 and 5). Each test replays an
//! attack the node once fell for.

mod common;

use common::{TestNode, seal};

use std::sync::Arc;

use chorus_chain::block::Block;
use chorus_chain::codec;
use chorus_chain::genesis::{EngineConfig, Genesis};
use chorus_chain::header::Seal;
use chorus_chain::limits;
use chorus_chain::primitives::{Hash, Height, Timestamp};
use chorus_chain::testing;
use chorus_chain::tx::{SignedTransaction, TxKind};
use chorus_chain::wire::{Misbehaviour, SyncRequest, SyncResponse};
use chorus_consensus::{EngineOptions, PeerId, new_engine};
use chorus_node_core::{Driver, Effect, NetMessage, Node, Verdict};
use chorus_store::Store;

/// `count` validly signed votes of about 1 KiB each (a full list of delegates): what makes a
/// side block large. Their state rules do not matter to a side block.
fn bulky_txs(genesis: &Genesis, count: u32) -> Vec<SignedTransaction> {
    let delegates =
        (0..limits::VOTE_DELEGATES_MAX).map(|index| testing::key(1_000 + index).address()).collect::<Vec<_>>();
    (0..count)
        .map(|nonce| {
            testing::signed(genesis, &testing::key(0), u64::from(nonce), TxKind::Vote { delegates: delegates.clone() })
        })
        .collect()
}

#[test]
fn side_blocks_need_valid_signatures_are_not_relayed_and_are_bounded_per_peer() {
    let genesis = testing::genesis(2, 1_000_000);
    let mut miner = TestNode::new(&genesis, Some(10));
    let mut node = TestNode::new(&genesis, None);
    let first = miner.mine();
    assert_eq!(node.receive("miner", &first), Verdict::Accept, "a block joining the chain is relayed");
    let second = miner.mine();
    assert_eq!(node.receive("miner", &second), Verdict::Accept);
    node.now = miner.now;

    // Siblings of the head's parent's child, with bulky bodies: each a valid PoW side block.
    let txs = bulky_txs(&genesis, 1_700);
    let sibling = |proposer: u32, txs: Vec<SignedTransaction>| {
        let mut block = Block::clone(&first);
        block.header.proposer = testing::key(proposer).address();
        block.body.txs = txs;
        seal(block)
    };
    let size = codec::encode(sibling(100, txs.clone()).as_ref()).len() as u64;
    assert!(size > limits::BLOCK_BYTES_MAX as u64 * 8 / 10 && size <= limits::BLOCK_BYTES_MAX as u64, "{size}");

    // One bad signature: refused and blamed before anything is stored.
    let mut forged = txs.clone();
    forged[7].tx.fee = forged[7].tx.fee.checked_add(chorus_chain::Amount::new(1)).unwrap();
    let forged = sibling(99, forged);
    let penalties = node.io.penalties.len();
    assert_eq!(node.receive("attacker", &forged), Verdict::Reject);
    assert!(!node.stored(&forged), "a side block with a bad signature never reaches the disk");
    assert_eq!(node.io.penalties[penalties].1.misbehaviour, Misbehaviour::Invalid);

    // Valid side blocks are stored but not relayed, up to the peer's allowance of bytes.
    let allowed = limits::SIDE_BLOCK_BYTES_PER_PEER_BURST / size;
    for index in 0..allowed {
        let block = sibling(100 + index as u32, txs.clone());
        assert_eq!(node.receive("attacker", &block), Verdict::Ignore, "side block {index} is not relayed");
        assert!(node.stored(&block), "side block {index} is stored");
    }
    let over = sibling(500, txs.clone());
    assert_eq!(node.receive("attacker", &over), Verdict::Ignore);
    assert!(!node.stored(&over), "beyond the allowance, the peer's side blocks are not stored");
    // Another peer has its own allowance; the attacker's refills with time.
    assert_eq!(node.receive("honest", &over), Verdict::Ignore);
    assert!(node.stored(&over));
    node.now += 1_000 * limits::SIDE_BLOCK_BYTES_PER_PEER_BURST / limits::SIDE_BLOCK_BYTES_PER_PEER_PER_SEC;
    let later = sibling(501, txs);
    node.receive("attacker", &later);
    assert!(node.stored(&later));
    assert_eq!(node.driver.store().head_hash(), second.hash(), "the head never moved");
}

/// A PoW genesis whose easiest target is one hash in 16.
fn limited_genesis() -> Genesis {
    let mut genesis = testing::genesis(2, 1_000_000);
    let EngineConfig::Pow(config) = &mut genesis.engines[0].engine else { unreachable!("a PoW test genesis") };
    let mut target = [0xff; 32];
    target[0] = 0x0f;
    config.initial_target = Hash(target);
    genesis
}

#[test]
fn orphans_must_carry_real_work_and_a_flood_displaces_only_its_sender() {
    let genesis = limited_genesis();
    let mut miner = TestNode::new(&genesis, Some(10));
    let mut node = TestNode::new(&genesis, None);
    let first = miner.mine();
    let second = miner.mine();
    node.now = miner.now;

    // An orphan claiming the easiest target cost nothing: refused and blamed, not held.
    let mut free = Block::clone(&second);
    free.header.parent = Hash([7; 32]);
    free.header.seal = Seal::Pow { target: Hash([0xff; 32]), nonce: 0 };
    let free = seal(free);
    assert_eq!(node.receive("attacker", &free), Verdict::Reject);
    assert!(node.driver.orphans().is_empty());
    assert!(node.io.penalties.last().is_some_and(|(peer, _)| peer.as_str() == "attacker"));

    // The honest child waits for its parent while an attacker floods orphans with real work.
    assert_eq!(node.receive("honest", &second), Verdict::Ignore);
    for index in 0..200u8 {
        let mut orphan = Block::clone(&second);
        orphan.header.parent = Hash([index; 32]);
        node.receive("attacker", &seal(orphan));
    }
    assert_eq!(node.driver.orphans().len(), 1 + limits::ORPHANS_PER_PEER_MAX as usize);
    assert!(node.driver.orphans().contains(&second.hash()), "the flood did not push out the honest orphan");
    // The parent arrives: the honest orphan joins the chain.
    assert_eq!(node.receive("honest", &first), Verdict::Accept);
    assert_eq!(node.driver.store().head_hash(), second.hash());

    // Orphans expire.
    node.now += limits::ORPHAN_EXPIRY_MS;
    let mut late = Block::clone(&second);
    late.header.parent = Hash([0xee; 32]);
    node.receive("attacker", &seal(late));
    assert_eq!(node.driver.orphans().len(), 1, "only the newest is left");
}

#[test]
fn a_claimed_height_nobody_backs_does_not_keep_peers_heads_from_the_node() {
    let genesis = testing::genesis(2, 1_000_000);
    let mut miner = TestNode::new(&genesis, Some(10));
    let blocks: Vec<Arc<Block>> = (0..3).map(|_| miner.mine()).collect();
    let head = blocks.last().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &genesis).unwrap();
    let mut node = Node::new(Driver::new(store, new_engine(&genesis, EngineOptions::default()).unwrap()));
    let now = Timestamp::from_millis(miner.now);
    node.start(now).unwrap();
    let (liar, honest) = (PeerId::new("liar"), PeerId::new("honest"));
    node.on_peer_connected(now, liar.clone());
    node.on_peer_connected(now, honest.clone());
    node.take_effects();

    // The liar claims the last height there is; then the honest peer, three blocks ahead.
    let status = SyncRequest::Status;
    let claim = SyncResponse::Status { head: Hash([1; 32]), height: Height::new(u64::MAX) };
    node.on_answer(now, &liar, &status, Ok(claim)).unwrap();
    let effects = node.take_effects();
    assert!(
        effects.iter().all(|effect| !matches!(effect, Effect::Request { peer, .. } if *peer == honest)),
        "range sync asks only the liar: {effects:?}"
    );
    let real = SyncResponse::Status { head: head.hash(), height: head.header.height };
    node.on_answer(now, &honest, &status, Ok(real)).unwrap();
    let asked_honest = node.take_effects().into_iter().any(
        |effect| matches!(effect, Effect::Request { peer, request: SyncRequest::BlocksAfter { .. } } if peer == honest),
    );
    assert!(asked_honest, "the honest peer's head still reaches the driver, which asks it for blocks");

    // A gossiped block's height counts only once the block is stored: a made-up one does not
    // start range sync.
    let mut fake = Block::clone(head);
    fake.header.height = Height::new(u64::MAX);
    let fake = Arc::new(fake);
    node.on_gossip(now, &PeerId::new("gossiper"), chorus_chain::wire::Topic::Blocks, &codec::encode(fake.as_ref()))
        .unwrap();
    node.on_peer_gone(now, &liar);
    assert!(node.sync_progress(now).is_none(), "nothing backs a height above the honest peer's");
}

#[test]
fn transactions_the_node_cannot_admit_cost_a_peer_beyond_its_allowance() {
    let genesis = testing::genesis(1, 1_000_000);
    let mut node = TestNode::new(&genesis, None);
    // Validly signed, from an account that holds nothing.
    let empty = testing::key(77);
    let send = |node: &mut TestNode, nonce: u64| {
        let tx = testing::signed(
            &genesis,
            &empty,
            nonce,
            TxKind::Transfer { to: testing::key(0).address(), amount: chorus_chain::Amount::new(1) },
        );
        let now = node.now();
        node.driver.on_message(now, &PeerId::new("spammer"), NetMessage::Tx(Box::new(tx)), &mut node.io).unwrap()
    };
    for nonce in 0..limits::IGNORED_TXS_PER_PEER_BURST {
        assert_eq!(send(&mut node, nonce % 32), Verdict::Ignore, "within the allowance: ignored without blame");
    }
    assert!(node.io.penalties.is_empty());
    assert_eq!(send(&mut node, 0), Verdict::Reject);
    let (peer, penalty) = node.io.penalties.last().expect("penalized");
    assert_eq!((peer.as_str(), penalty.misbehaviour), ("spammer", Misbehaviour::Unwanted));
    assert!(penalty.reason.contains("insufficient balance"), "{}", penalty.reason);
    // The allowance refills with time.
    node.now += 1_000;
    assert_eq!(send(&mut node, 1), Verdict::Ignore);
}

/// A peer that relays a transaction after its block reached this node (Raft commits blocks
/// within milliseconds of the gossip) is not blamed, however often: the transaction is in the
/// chain, not unwanted.
#[test]
fn a_transaction_already_in_a_block_is_ignored_without_blame() {
    let genesis = testing::genesis(2, 1_000_000);
    let mut node = TestNode::new(&genesis, Some(0));
    let key = testing::key(1);
    let tx = testing::signed(
        &genesis,
        &key,
        0,
        TxKind::Transfer { to: testing::key(0).address(), amount: chorus_chain::Amount::new(1) },
    );
    let now = node.now();
    node.driver.submit_tx(now, tx.clone(), &mut node.io).unwrap().unwrap();
    let block = node.mine();
    assert!(block.body.txs.iter().any(|included| included.hash() == tx.hash()), "mined into the block");
    for _ in 0..2 * limits::IGNORED_TXS_PER_PEER_BURST {
        let now = node.now();
        let verdict = node
            .driver
            .on_message(now, &PeerId::new("late"), NetMessage::Tx(Box::new(tx.clone())), &mut node.io)
            .unwrap();
        assert_eq!(verdict, Verdict::Ignore);
    }
    assert!(node.io.penalties.is_empty(), "{:?}", node.io.penalties);

    // A stale nonce on a transaction that is in no block still counts against the allowance.
    let other = testing::signed(
        &genesis,
        &key,
        0,
        TxKind::Transfer { to: testing::key(0).address(), amount: chorus_chain::Amount::new(2) },
    );
    for _ in 0..limits::IGNORED_TXS_PER_PEER_BURST {
        let now = node.now();
        node.driver
            .on_message(now, &PeerId::new("stale"), NetMessage::Tx(Box::new(other.clone())), &mut node.io)
            .unwrap();
    }
    let now = node.now();
    let verdict =
        node.driver.on_message(now, &PeerId::new("stale"), NetMessage::Tx(Box::new(other)), &mut node.io).unwrap();
    assert_eq!(verdict, Verdict::Reject);
}

#[test]
fn a_gapped_transaction_is_not_forwarded_until_its_gap_fills() {
    let genesis = testing::genesis(1, 1_000_000);
    let mut node = TestNode::new(&genesis, None);
    let tx = |nonce: u64| {
        testing::signed(
            &genesis,
            &testing::key(0),
            nonce,
            TxKind::Transfer { to: testing::key(1).address(), amount: chorus_chain::Amount::new(5) },
        )
    };
    let receive = |node: &mut TestNode, nonce: u64| {
        let now = node.now();
        node.driver.on_message(now, &PeerId::new("peer"), NetMessage::Tx(Box::new(tx(nonce))), &mut node.io).unwrap()
    };
    assert_eq!(receive(&mut node, 1), Verdict::Defer, "gapped: held, not relayed yet");
    assert!(node.io.broadcasts.is_empty());
    assert_eq!(receive(&mut node, 0), Verdict::Accept, "ready: relayed");
    let relayed: Vec<u64> = node
        .io
        .broadcasts
        .iter()
        .filter_map(|message| match message {
            NetMessage::Tx(tx) => Some(tx.tx.nonce),
            _ => None,
        })
        .collect();
    assert_eq!(relayed, vec![0, 1], "the ready transaction and the one its nonce released are relayed");
}

//! The driver with the PoW engine on a real RocksDB store: mining, bad blocks from peers, and
//! reorgs of depth 1, 10 and 100 against a node that only saw the winning chain.

mod common;

use common::{TestNode, seal};

use std::sync::Arc;

use chorus_chain::block::Block;
use chorus_chain::header::Seal;
use chorus_chain::primitives::{Amount, Hash, Height};
use chorus_chain::testing;
use chorus_chain::tx::TxKind;
use chorus_consensus::Misbehaviour;
use chorus_node_core::{NetMessage, Verdict};

#[test]
fn mines_and_includes_submitted_transactions() {
    let genesis = testing::genesis(4, 1_000_000);
    let mut node = TestNode::new(&genesis, Some(10));
    node.transfer(0, 1, 500, &genesis);
    assert!(matches!(node.io.broadcasts.last(), Some(NetMessage::Tx(_))), "a submitted transaction is gossiped");
    node.mine(); // the refreshed template is built from the mempool
    let head = node.driver.store().canonical_block(Height::new(1)).unwrap().unwrap();
    assert_eq!(head.body.txs.len(), 1);
    assert!(node.driver.mempool().is_empty(), "an included transaction leaves the mempool");
    assert_eq!(node.driver.store().account(&testing::key(1).address()).unwrap().balance, Amount::new(1_000_500));
    assert!(
        node.io
            .broadcasts
            .iter()
            .any(|message| matches!(message, NetMessage::Block(block) if block.hash() == head.hash()))
    );
}

#[test]
fn bad_blocks_from_a_peer_are_refused_penalized_and_not_stored() {
    let genesis = testing::genesis(4, 1_000_000);
    let mut miner = TestNode::new(&genesis, Some(10));
    miner.transfer(0, 1, 500, &genesis);
    let good = miner.mine();
    let mut node = TestNode::new(&genesis, Some(11));
    node.now = miner.now;

    let check = |node: &mut TestNode, block: Arc<Block>, expected: &str| {
        let penalties = node.io.penalties.len();
        assert_eq!(node.receive("peer", &block), Verdict::Reject, "{expected}");
        let (_, penalty) = node.io.penalties.get(penalties).expect("the peer is penalized");
        let reason = &penalty.reason;
        assert!(reason.contains(expected), "reason `{reason}` should say `{expected}`");
        assert_eq!(penalty.misbehaviour, Misbehaviour::Invalid, "{expected}");
        assert!(!node.driver.store().contains_block(&block.hash()).unwrap(), "{expected}: nothing stored");
        assert_eq!(node.driver.store().head().height, Height::GENESIS);
    };

    // An invalid transaction: a nonce the sender has not reached.
    let mut bad_tx = Block::clone(&good);
    let tx = testing::signed(
        &genesis,
        &testing::key(0),
        5,
        TxKind::Transfer { to: testing::key(1).address(), amount: Amount::new(1) },
    );
    bad_tx.body.txs = vec![tx];
    check(&mut node, seal(bad_tx), "nonce 5 is wrong, next for this sender is 0");

    // A wrong target.
    let mut wrong_target = Block::clone(&good);
    wrong_target.header.seal = Seal::Pow { target: Hash([0x7f; 32]), nonce: 0 };
    check(&mut node, seal(wrong_target), "the retarget rule gives");

    // A wrong seal.
    let mut unsealed = Block::clone(&good);
    unsealed.header.seal = Seal::None;
    check(&mut node, Arc::new(unsealed), "not sealed with proof of work");

    // A timestamp not after the median time past.
    let mut old = Block::clone(&good);
    old.header.timestamp = genesis.genesis_time;
    check(&mut node, seal(old), "not after the median");

    // A bad parent: held as an orphan (not stored, not penalized) while its ancestry is asked for.
    let mut orphan = Block::clone(&good);
    orphan.header.parent = Hash([9; 32]);
    let orphan = seal(orphan);
    assert_eq!(node.receive("peer", &orphan), Verdict::Ignore);
    assert!(!node.driver.store().contains_block(&orphan.hash()).unwrap());
    assert!(matches!(node.io.sends.last(), Some((_, NetMessage::GetBlocks { .. }))));

    // The good block is accepted and relayed.
    assert_eq!(node.receive("peer", &good), Verdict::Accept);
    assert_eq!(node.driver.store().head_hash(), good.hash());
    assert_eq!(node.io.penalties.len(), 4);
}

/// Node A mines `depth` blocks; B mines `depth + 1` with different transactions. A, given B's
/// blocks, reorgs and ends with exactly B's state.
fn reorg_case(depth: usize) {
    let genesis = testing::genesis(4, 1_000_000);
    let mut a = TestNode::new(&genesis, Some(10));
    let mut b = TestNode::new(&genesis, Some(11));
    for _ in 0..depth {
        a.transfer(0, 1, 7, &genesis);
        a.mine();
    }
    let mut winning = Vec::new();
    for _ in 0..=depth {
        b.transfer(2, 3, 11, &genesis);
        winning.push(b.mine());
    }
    a.now = b.now;
    let broadcasts_before = a.io.broadcasts.len();
    for block in &winning {
        a.receive("peer", block);
    }
    assert!(a.io.penalties.is_empty(), "{:?}", a.io.penalties);
    let (sa, sb) = (a.driver.store(), b.driver.store());
    assert_eq!(sa.head_hash(), sb.head_hash(), "depth {depth}: A follows the most work");
    let height = sb.head().height;
    assert_eq!(sa.state_root_at(height).unwrap(), sb.state_root_at(height).unwrap());
    for index in (0..4).chain([10, 11]) {
        let address = testing::key(index).address();
        assert_eq!(sa.account(&address).unwrap(), sb.account(&address).unwrap(), "depth {depth}: account {index}");
    }
    // A's own transactions were rolled back and wait in its mempool again, all of them (the
    // per-sender bound is for submissions), in nonce order, and are relayed.
    assert_eq!(a.driver.mempool().len(), depth, "depth {depth}");
    let sender = testing::key(0).address();
    assert_eq!(a.driver.mempool().next_nonce(&sender, 0), depth as u64, "depth {depth}: no gap");
    let relayed =
        a.io.broadcasts[broadcasts_before..].iter().filter(|message| matches!(message, NetMessage::Tx(_))).count();
    assert_eq!(relayed, depth, "depth {depth}: the returned transactions are relayed");
}

#[test]
fn reorg_depth_1() {
    reorg_case(1);
}

#[test]
fn reorg_depth_10() {
    reorg_case(10);
}

#[test]
fn reorg_depth_100() {
    reorg_case(100);
}

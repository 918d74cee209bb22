//! The driver with the PoW engine on a real RocksDB store: mining, bad blocks from peers, and
//! reorgs of depth 1, 10 and 100 against a node that only saw the winning chain.

use std::sync::Arc;

use chorus_chain::block::Block;
use chorus_chain::genesis::Genesis;
use chorus_chain::header::Seal;
use chorus_chain::primitives::{Amount, Hash, Height, Timestamp};
use chorus_chain::testing;
use chorus_chain::tx::TxKind;
use chorus_consensus::pow::mining::{Grinder, with_nonce};
use chorus_consensus::{EngineOptions, Misbehaviour, PeerId, new_engine};
use chorus_node_core::{Driver, NetMessage, Outbox, Timer, Verdict};
use chorus_store::Store;

struct Node {
    driver: Driver,
    io: Outbox,
    now: u64,
    _dir: tempfile::TempDir,
}

impl Node {
    fn new(genesis: &Genesis, miner: u32) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), genesis).unwrap();
        let engine = new_engine(genesis, EngineOptions { coinbase: Some(testing::key(miner).address()) }).unwrap();
        let mut node = Node {
            driver: Driver::new(store, engine),
            io: Outbox::default(),
            now: genesis.genesis_time.as_millis(),
            _dir: dir,
        };
        node.driver.start(Timestamp::from_millis(node.now), &mut node.io).unwrap();
        node
    }

    /// Advances the clock a block time, refreshes the template, mines it; returns the block.
    fn mine(&mut self) -> Arc<Block> {
        self.now += 1_000;
        let now = Timestamp::from_millis(self.now);
        self.driver.on_timer(now, Timer::Engine(chorus_consensus::pow::REFRESH_TIMER), &mut self.io).unwrap();
        let template = self.io.current_template().expect("a mining node has a template");
        let (nonce, _) = Grinder::new(&template.header).unwrap().search(0, u64::MAX, &|| false);
        let block =
            Arc::new(Block { header: with_nonce(&template.header, nonce.unwrap()), body: template.body.clone() });
        self.driver.on_mined(now, Arc::clone(&block), &mut self.io).unwrap();
        assert_eq!(self.driver.store().head_hash(), block.hash(), "a mined block on the head becomes the head");
        block
    }

    fn receive(&mut self, block: &Arc<Block>) -> Verdict {
        let now = Timestamp::from_millis(self.now.max(block.header.timestamp.as_millis()));
        self.driver.on_message(now, &PeerId::new("peer"), NetMessage::Block(Arc::clone(block)), &mut self.io).unwrap()
    }

    fn transfer(&mut self, from: u32, to: u32, amount: u128, genesis: &Genesis) {
        let key = testing::key(from);
        let nonce = self.driver.store().account(&key.address()).unwrap().nonce;
        let tx = testing::signed(
            genesis,
            &key,
            nonce,
            TxKind::Transfer { to: testing::key(to).address(), amount: Amount::new(amount) },
        );
        self.driver.submit_tx(tx, &mut self.io).unwrap();
    }
}

#[test]
fn mines_and_includes_submitted_transactions() {
    let genesis = testing::genesis(4, 1_000_000);
    let mut node = Node::new(&genesis, 10);
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

/// Reseals `block` (after a change) for its target.
fn remine(mut block: Block) -> Arc<Block> {
    block.header.txs_root = block.body.txs_root();
    let (nonce, _) = Grinder::new(&block.header).unwrap().search(0, u64::MAX, &|| false);
    block.header = with_nonce(&block.header, nonce.unwrap());
    Arc::new(block)
}

#[test]
fn bad_blocks_from_a_peer_are_refused_penalized_and_not_stored() {
    let genesis = testing::genesis(4, 1_000_000);
    let mut miner = Node::new(&genesis, 10);
    miner.transfer(0, 1, 500, &genesis);
    let good = miner.mine();
    let mut node = Node::new(&genesis, 11);
    node.now = miner.now;

    let check = |node: &mut Node, block: Arc<Block>, expected: &str| {
        let penalties = node.io.penalties.len();
        assert_eq!(node.receive(&block), Verdict::Reject, "{expected}");
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
    check(&mut node, remine(bad_tx), "nonce 5 is wrong, next for this sender is 0");

    // A wrong target.
    let mut wrong_target = Block::clone(&good);
    wrong_target.header.seal = Seal::Pow { target: Hash([0x7f; 32]), nonce: 0 };
    check(&mut node, remine(wrong_target), "the retarget rule gives");

    // A wrong seal.
    let mut unsealed = Block::clone(&good);
    unsealed.header.seal = Seal::None;
    check(&mut node, Arc::new(unsealed), "not sealed with proof of work");

    // A timestamp not after the median time past.
    let mut old = Block::clone(&good);
    old.header.timestamp = genesis.genesis_time;
    check(&mut node, remine(old), "not after the median");

    // A bad parent: held as an orphan (not stored, not penalized) while its ancestry is asked for.
    let mut orphan = Block::clone(&good);
    orphan.header.parent = Hash([9; 32]);
    let orphan = remine(orphan);
    assert_eq!(node.receive(&orphan), Verdict::Ignore);
    assert!(!node.driver.store().contains_block(&orphan.hash()).unwrap());
    assert!(matches!(node.io.sends.last(), Some((_, NetMessage::GetBlocks { .. }))));

    // The good block is accepted and relayed.
    assert_eq!(node.receive(&good), Verdict::Accept);
    assert_eq!(node.driver.store().head_hash(), good.hash());
    assert_eq!(node.io.penalties.len(), 4);
}

/// Node A mines `depth` blocks; B mines `depth + 1` with different transactions. A, given B's
/// blocks, reorgs and ends with exactly B's state.
fn reorg_case(depth: usize) {
    let genesis = testing::genesis(4, 1_000_000);
    let mut a = Node::new(&genesis, 10);
    let mut b = Node::new(&genesis, 11);
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
        a.receive(block);
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

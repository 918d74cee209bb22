//! The driver with the PoW engine on a real RocksDB store, driven by hand: what the driver
//! and hostile-peer tests share.

#![allow(dead_code)]

use std::sync::Arc;

use chorus_chain::block::Block;
use chorus_chain::genesis::Genesis;
use chorus_chain::primitives::{Amount, Timestamp};
use chorus_chain::testing;
use chorus_chain::tx::TxKind;
use chorus_consensus::pow::mining::{Grinder, with_nonce};
use chorus_consensus::{EngineOptions, PeerId, new_engine};
use chorus_node_core::{Driver, NetMessage, Outbox, Timer, Verdict};
use chorus_store::Store;

pub struct TestNode {
    pub driver: Driver,
    pub io: Outbox,
    pub now: u64,
    _dir: tempfile::TempDir,
}

impl TestNode {
    pub fn new(genesis: &Genesis, miner: Option<u32>) -> TestNode {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), genesis).unwrap();
        let coinbase = miner.map(|index| testing::key(index).address());
        let engine = new_engine(genesis, EngineOptions { coinbase, signer: None }).unwrap();
        let mut peer = TestNode {
            driver: Driver::new(store, engine),
            io: Outbox::default(),
            now: genesis.genesis_time.as_millis(),
            _dir: dir,
        };
        peer.driver.start(Timestamp::from_millis(peer.now), &mut peer.io).unwrap();
        peer
    }

    pub fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.now)
    }

    /// Advances the clock a block time, refreshes the template, mines it; returns the block.
    pub fn mine(&mut self) -> Arc<Block> {
        self.now += 1_000;
        let now = self.now();
        self.driver.on_timer(now, Timer::Engine(chorus_consensus::pow::REFRESH_TIMER), &mut self.io).unwrap();
        let template = self.io.current_template().expect("a mining node has a template");
        let block = seal(Block::clone(&template));
        self.driver.on_mined(now, Arc::clone(&block), &mut self.io).unwrap();
        assert_eq!(self.driver.store().head_hash(), block.hash());
        block
    }

    /// `block` from the peer called `from`, at the node's clock or the block's time if later.
    pub fn receive(&mut self, from: &str, block: &Arc<Block>) -> Verdict {
        let now = Timestamp::from_millis(self.now.max(block.header.timestamp.as_millis()));
        self.driver.on_message(now, &PeerId::new(from), NetMessage::Block(Arc::clone(block)), &mut self.io).unwrap()
    }

    /// Submits a transfer from test account `from` to `to` with the next nonce.
    pub fn transfer(&mut self, from: u32, to: u32, amount: u128, genesis: &Genesis) {
        let key = testing::key(from);
        let nonce = self.driver.store().account(&key.address()).unwrap().nonce;
        let kind = TxKind::Transfer { to: testing::key(to).address(), amount: Amount::new(amount) };
        let now = self.now();
        self.driver.submit_tx(now, testing::signed(genesis, &key, nonce, kind), &mut self.io).unwrap().unwrap();
    }

    pub fn stored(&self, block: &Block) -> bool {
        self.driver.store().contains_block(&block.hash()).unwrap()
    }
}

/// Seals `block` for its target as it is, after a change (its roots are set from its body).
pub fn seal(mut block: Block) -> Arc<Block> {
    block.header.txs_root = block.body.txs_root();
    block.header.votes_root = block.body.votes_root();
    let (nonce, _) = Grinder::new(&block.header).unwrap().search(0, u64::MAX, &|| false);
    block.header = with_nonce(&block.header, nonce.unwrap());
    Arc::new(block)
}

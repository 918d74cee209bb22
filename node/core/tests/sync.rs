//! Range sync on a real RocksDB store with the PoW engine: a node far behind fetches ranges
//! and imports them in order, each block's signatures checked while the one before it imports.

mod common;

use common::{TestNode, seal};

use std::sync::Arc;

use chorus_chain::block::Block;
use chorus_chain::limits;
use chorus_chain::primitives::Timestamp;
use chorus_chain::testing;
use chorus_chain::wire::{Misbehaviour, SyncRequest, SyncResponse};
use chorus_consensus::{EngineOptions, PeerId, new_engine};
use chorus_node_core::{Driver, Effect, Node};
use chorus_store::Store;

/// The range requests the node made of `peer`, as (from, count).
fn range_requests(effects: &[Effect], peer: &PeerId) -> Vec<SyncRequest> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Request { peer: to, request: request @ SyncRequest::Blocks { .. } } if to == peer => {
                Some(request.clone())
            }
            _ => None,
        })
        .collect()
}

#[test]
fn ranges_import_in_order_and_a_forged_block_stops_them_with_its_sender_blamed() {
    let genesis = testing::genesis(4, 1_000_000_000);
    let mut miner = TestNode::new(&genesis, Some(10));
    let range = limits::SYNC_BLOCKS_PER_RESPONSE_MAX as usize;
    // Two ranges and a half, every block with a transfer (so each has signatures to check).
    let mut blocks: Vec<Arc<Block>> = Vec::new();
    for index in 0..(2 * range + range / 2) {
        miner.transfer((index % 4) as u32, ((index + 1) % 4) as u32, 1, &genesis);
        blocks.push(miner.mine());
        assert_eq!(blocks.last().unwrap().body.txs.len(), 1);
    }
    // The peer's copy of one block of the second range carries a forged signature (and a
    // valid seal): the blocks after it no longer connect.
    let forged_at = range + 10;
    let mut forged = Block::clone(&blocks[forged_at]);
    forged.body.txs[0].signature.0[5] ^= 1;
    let forged = seal(forged);
    let served = |from: u64, count: u32| -> Vec<Block> {
        blocks
            .iter()
            .enumerate()
            .filter(|(_, block)| block.header.height.get() >= from)
            .take(count as usize)
            .map(|(index, block)| if index == forged_at { Block::clone(&forged) } else { Block::clone(block) })
            .collect()
    };

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &genesis).unwrap();
    let mut node = Node::new(Driver::new(store, new_engine(&genesis, EngineOptions::default()).unwrap()));
    let now = Timestamp::from_millis(miner.now);
    node.start(now).unwrap();
    let peer = PeerId::new("peer");
    node.on_peer_connected(now, peer.clone());
    node.take_effects();
    let head = blocks.last().unwrap();
    let status = SyncResponse::Status { head: head.hash(), height: head.header.height };
    node.on_answer(now, &peer, &SyncRequest::Status, Ok(status)).unwrap();

    // Answer every range request in turn until the node asks for no more.
    let mut pending = range_requests(&node.take_effects(), &peer);
    assert!(!pending.is_empty(), "a node ranges behind asks for ranges");
    let mut blamed = Vec::new();
    let mut answered = 0;
    while let Some(request) = pending.pop() {
        let SyncRequest::Blocks { from, count } = request else { unreachable!() };
        node.on_answer(now, &peer, &request, Ok(SyncResponse::Blocks(served(from.get(), count)))).unwrap();
        answered += 1;
        assert!(answered < 64, "range sync keeps asking");
        let effects = node.take_effects();
        blamed.extend(effects.iter().filter_map(|effect| match effect {
            Effect::Report { peer: reported, penalty } if *reported == peer => Some(penalty.misbehaviour),
            _ => None,
        }));
        if node.driver().store().head().height.get() >= forged_at as u64 {
            break;
        }
        pending.extend(range_requests(&effects, &peer));
    }
    let store = node.driver().store();
    assert_eq!(store.head_hash(), blocks[forged_at - 1].hash(), "every block before the forged one is imported");
    for block in &blocks[..forged_at] {
        assert_eq!(store.canonical_hash(block.header.height).unwrap(), Some(block.hash()));
        let tx = block.body.txs[0].hash();
        assert_eq!(store.tx_location(&tx).unwrap().map(|at| at.block_hash), Some(block.hash()));
    }
    assert!(!store.contains_block(&forged.hash()).unwrap(), "the forged block is not stored");
    assert!(blamed.contains(&Misbehaviour::Invalid), "the sender of the forged block is blamed for it: {blamed:?}");
}

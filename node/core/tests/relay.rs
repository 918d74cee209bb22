//! Transactions travel in batches: a node relays what it admits in gossip messages of many
//! transactions after `limits::TX_RELAY_DELAY_MS`, judges a peer's message transaction by
//! transaction, and never relays one twice in a while (a node's `Node`, on a real store).

use chorus_chain::codec;
use chorus_chain::genesis::Genesis;
use chorus_chain::limits;
use chorus_chain::primitives::{Amount, Timestamp};
use chorus_chain::testing;
use chorus_chain::tx::{SignedTransaction, TxKind};
use chorus_chain::wire::{Misbehaviour, Topic, TxBatch, Verdict};
use chorus_consensus::{EngineOptions, PeerId, new_engine};
use chorus_node_core::{Driver, Effect, Node, Timer};
use chorus_store::Store;

fn start_node(genesis: &Genesis) -> (Node, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), genesis).unwrap();
    let engine = new_engine(genesis, EngineOptions { coinbase: None, signer: None }).unwrap();
    let mut node = Node::new(Driver::new(store, engine));
    node.start(genesis.genesis_time).unwrap();
    node.take_effects();
    (node, dir)
}

/// `count` transfers from each of `senders` test accounts, nonces from 0.
fn transfers(genesis: &Genesis, senders: u32, count: u64) -> Vec<SignedTransaction> {
    let kind = TxKind::Transfer { to: testing::key(99).address(), amount: Amount::new(1) };
    (0..senders)
        .flat_map(|from| (0..count).map(move |nonce| (from, nonce)))
        .map(|(from, nonce)| testing::signed(genesis, &testing::key(from), nonce, kind.clone()))
        .collect()
}

/// The transactions the effects publish, message by message.
fn published(effects: &[Effect]) -> Vec<Vec<SignedTransaction>> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Publish { topic: Topic::Transactions, data } => Some(TxBatch::decode(data).unwrap().txs),
            _ => None,
        })
        .collect()
}

fn relay_timer(effects: &[Effect]) -> Option<Timestamp> {
    effects.iter().find_map(|effect| match effect {
        Effect::SetTimer { timer: Timer::TxRelay, at } => Some(*at),
        _ => None,
    })
}

#[test]
fn admitted_transactions_wait_to_share_a_message_and_a_full_message_goes_at_once() {
    let genesis = testing::genesis(40, 1_000_000);
    let (mut node, _dir) = start_node(&genesis);
    let now = genesis.genesis_time;
    let txs = transfers(&genesis, 5, 60);
    let mut effects = Vec::new();
    for tx in txs.iter().cloned() {
        node.submit_tx(now, tx).unwrap().unwrap();
        effects.extend(node.take_effects());
    }
    assert!(published(&effects).is_empty(), "nothing goes before the relay delay");
    let at = relay_timer(&effects).expect("the relay timer is set");
    assert_eq!(at.as_millis(), now.as_millis() + limits::TX_RELAY_DELAY_MS);
    assert_eq!(effects.iter().filter(|effect| matches!(effect, Effect::SetTimer { .. })).count(), 1, "once");
    node.on_timer(at, Timer::TxRelay).unwrap();
    assert_eq!(published(&node.take_effects()), vec![txs.clone()], "one message, in the order admitted");

    // A peer's message of more than a message holds: the node relays full messages at once.
    let many = transfers(&genesis, 40, 40);
    let (mut other, _other_dir) = start_node(&genesis);
    let mut relayed = Vec::new();
    for data in TxBatch::pack(many.clone()) {
        assert_eq!(other.on_gossip(now, &PeerId::new("peer"), Topic::Transactions, &data).unwrap(), Verdict::Ignore);
        relayed.extend(published(&other.take_effects()).into_iter().flatten());
    }
    assert_eq!(relayed.len(), limits::GOSSIP_TX_BATCH_TXS_MAX as usize, "a full message, before the timer");
    other.on_timer(Timestamp::from_millis(now.as_millis() + limits::TX_RELAY_DELAY_MS), Timer::TxRelay).unwrap();
    relayed.extend(published(&other.take_effects()).into_iter().flatten());
    assert_eq!(relayed, many, "every admitted transaction relayed once, in order");
}

#[test]
fn a_peers_message_is_judged_by_its_transactions_and_nothing_is_relayed_twice() {
    let genesis = testing::genesis(4, 1_000_000);
    let (mut node, _dir) = start_node(&genesis);
    let now = genesis.genesis_time;
    let later = Timestamp::from_millis(now.as_millis() + limits::TX_RELAY_DELAY_MS);
    let peer = PeerId::new("peer");
    let txs = transfers(&genesis, 2, 10);
    let message = codec::encode(&TxBatch { txs: txs.clone() });

    assert_eq!(node.on_gossip(now, &peer, Topic::Transactions, &message).unwrap(), Verdict::Ignore);
    node.on_timer(later, Timer::TxRelay).unwrap();
    assert_eq!(published(&node.take_effects()), vec![txs.clone()]);
    // The same transactions again (another peer relayed them): nothing new, nothing relayed.
    assert_eq!(node.on_gossip(later, &peer, Topic::Transactions, &message).unwrap(), Verdict::Ignore);
    let effects = node.take_effects();
    assert!(published(&effects).is_empty() && relay_timer(&effects).is_none(), "{effects:?}");

    // One forged signature: the message is the sender's fault; its valid transactions still count.
    let mut forged = transfers(&genesis, 3, 2)[4..].to_vec();
    forged[1].tx.fee = Amount::new(7);
    let message = codec::encode(&TxBatch { txs: forged.clone() });
    let verdict = node.on_gossip(later, &peer, Topic::Transactions, &message).unwrap();
    assert_eq!(verdict, Verdict::Reject(Misbehaviour::Invalid));
    assert!(node.driver().mempool().contains(&forged[0].hash()));
    assert!(!node.driver().mempool().contains(&forged[1].hash()));

    for bad in [Vec::new(), codec::encode(&TxBatch { txs: Vec::new() }), message[..message.len() - 1].to_vec()] {
        let verdict = node.on_gossip(later, &peer, Topic::Transactions, &bad).unwrap();
        assert_eq!(verdict, Verdict::Reject(Misbehaviour::Undecodable));
    }
}

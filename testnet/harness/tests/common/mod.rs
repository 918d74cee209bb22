#![allow(dead_code, reason = "each test file uses part of it")]

//! What every engine with finality goes through on four equal validators (PoS validators or
//! DPoS producers): the scenario the engines' test files share.

use chorus_testnet::{Finals, Testnet};

/// On a fresh four-node testnet of an engine with finality, every node a validator of equal
/// weight:
/// - a transfer through each of two nodes is final on every node;
/// - with one validator killed, heads and finality go on, and its empty slots are counted
///   against it in the `chorus_producer_missed_slots` metric;
/// - with a second one killed (half the weight gone), heads go on and finality stalls (at most
///   the votes already cast finish one more step);
/// - restarted alone (every other node refuses them), the killed validators report the final
///   block they had, from their store, before they can have seen anything new;
/// - together again, finality resumes past the stall and the heads agree;
/// - and no node's final height ever goes down.
pub fn finality_survives_one_loss_and_stalls_without_two_thirds(mut testnet: Testnet) {
    let mut finals = Finals::default();
    let sink = testnet.account(4).address();
    for (k, from, amount) in [(1, 1, 100), (2, 2, 200)] {
        let hash = testnet.transfer(k, from, &sink, amount);
        let block = testnet.included_everywhere(&hash);
        testnet.finalized_at_least(block.height.get());
        testnet.final_everywhere(&hash);
    }

    let before = finals.highest(&testnet);
    testnet.kill(4);
    let head = testnet.rpc(1).head().expect("head").height.get();
    // Its empty slots are counted against it.
    let missed_by_4 = format!("chorus_producer_missed_slots{{producer=\"{}\"}}", testnet.address(4));
    testnet.wait_for("heads and finality go on without one validator", |testnet| {
        let lowest = finals.sample(testnet).into_values().min().unwrap_or(0);
        let heads = heads(testnet);
        let missed = testnet.node(1).metric(&missed_by_4).unwrap_or(0.0);
        if lowest >= before + 3 && heads.iter().all(|height| *height >= head + 4) && missed >= 2.0 {
            Ok(())
        } else {
            Err(format!("final {lowest} (was {before}), heads {heads:?}, node 4 missed {missed} slots"))
        }
    });

    testnet.kill(3);
    let stalled = finals.highest(&testnet);
    let head = testnet.rpc(1).head().expect("head").height.get();
    testnet.wait_for("heads advance without half the validators", |testnet| {
        let now = finals.sample(testnet);
        if let Some((k, height)) = now.iter().find(|(_, height)| **height > stalled + 2) {
            panic!("node {k} finalized {height} with half the validators down (final was {stalled})");
        }
        let heads = heads(testnet);
        if heads.iter().all(|height| *height >= head + 6) { Ok(()) } else { Err(format!("heads {heads:?}")) }
    });
    let stalled = finals.highest(&testnet);

    testnet.partition(&[&[1, 2], &[3], &[4]]);
    for k in [3, 4] {
        let had = finals.last(k);
        testnet.restart(k);
        let reported = testnet.rpc(k).finalized().expect("finalized").map_or(0, |block| block.height.get());
        assert!(reported >= had && reported > 0, "node {k} restarted alone reporting final {reported}, had {had}");
    }
    testnet.heal();
    testnet.finalized_at_least(stalled + 3);
    finals.sample(&testnet);
    testnet.all_heads_within(2);
}

/// The live nodes' head heights (0 for a node that does not answer).
pub fn heads(testnet: &Testnet) -> Vec<u64> {
    testnet.live().iter().map(|k| testnet.rpc(*k).head().map_or(0, |head| head.height.get())).collect()
}

/// `chorus validators --json` through node `k`.
pub fn validators(testnet: &Testnet, k: usize) -> serde_json::Value {
    testnet.chorus(k, &["validators"]).unwrap_or_else(|error| panic!("validators through node {k}: {error:?}"))
}

/// Whether `address` is in the active set `set` (as `chorus validators --json` prints it).
pub fn listed(set: &serde_json::Value, address: &str) -> bool {
    set["validators"].as_array().expect("validators").iter().any(|validator| validator["address"] == address)
}

/// The leader every live member names, once they agree on a live one.
pub fn leader(testnet: &Testnet) -> usize {
    testnet.wait_for("one live leader named by every live member", |testnet| {
        let mut named = Vec::new();
        for k in testnet.live() {
            let set = validators(testnet, k);
            let leader = set["raft"]["leader"].as_u64().ok_or_else(|| format!("node {k} knows no leader"))?;
            named.push(usize::try_from(leader).map_err(|error| error.to_string())?);
        }
        named.dedup();
        match named.as_slice() {
            [leader] if testnet.live().contains(leader) => Ok(*leader),
            _ => Err(format!("members name leaders {named:?}")),
        }
    })
}

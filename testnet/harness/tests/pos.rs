//! PoS testnets of real `chorusd` processes: every node a validator with equal stake.
//! Transfers become final on every node; with half the stake killed, blocks keep coming and
//! finality stalls; restarted alone, the killed validators report their final block from their
//! store, and together again finality resumes; no node's final height ever goes down.

use std::collections::BTreeMap;

use chorus_chain::primitives::Hash;
use chorus_testnet::Testnet;
use chorus_testnet::rpc::TxStatus;

fn transfer(testnet: &Testnet, k: usize, from: usize, amount: u128) -> Hash {
    let to = testnet.account(4).address().to_string();
    let printed = testnet
        .chorus(k, &["transfer", "--from", &format!("funded{from}"), "--to", &to, "--amount", &amount.to_string()])
        .unwrap_or_else(|error| panic!("transfer through node {k}: {error:?}"));
    Hash::from_hex(printed["hash"].as_str().expect("a hash")).expect("hex")
}

/// Every live node's final height (0 for none), checked against the lowest seen before for
/// that node: a final height never goes down.
fn sample_finals(testnet: &Testnet, seen: &mut BTreeMap<usize, u64>) -> BTreeMap<usize, u64> {
    let mut now = BTreeMap::new();
    for k in testnet.live() {
        let height = testnet.rpc(k).finalized().expect("finalized").map_or(0, |block| block.height.get());
        let before = seen.get(&k).copied().unwrap_or(0);
        assert!(height >= before, "node {k}: final height went down from {before} to {height}");
        seen.insert(k, height);
        now.insert(k, height);
    }
    now
}

#[test]
fn transfers_become_final_and_finality_stalls_without_two_thirds_then_resumes() {
    let mut testnet = Testnet::builder("pos", 4).start().expect("four validators");
    let mut seen = BTreeMap::new();

    // A transfer through each of two nodes is final on every node.
    let sent = [transfer(&testnet, 1, 1, 100), transfer(&testnet, 2, 2, 200)];
    for hash in &sent {
        let block = testnet.included_everywhere(hash);
        testnet.finalized_at_least(block.height.get());
        testnet.wait_for(&format!("transaction {hash} final everywhere"), |testnet| {
            for k in testnet.live() {
                match testnet.rpc(k).tx(hash).map_err(|error| error.to_string())? {
                    TxStatus::Final { .. } => {}
                    other => return Err(format!("node {k}: {other:?}")),
                }
            }
            Ok(())
        });
    }
    sample_finals(&testnet, &mut seen);

    // Half the stake gone: heads keep advancing, finality stops (at most the votes already
    // cast finish one more step).
    testnet.kill(3);
    testnet.kill(4);
    let stalled = *sample_finals(&testnet, &mut seen).values().max().expect("live nodes");
    let head = testnet.rpc(1).head().expect("head").height.get();
    testnet.wait_for("heads advance without half the stake", |testnet| {
        let finals = sample_finals(testnet, &mut seen);
        let heads: Vec<u64> =
            testnet.live().iter().map(|k| testnet.rpc(*k).head().map_or(0, |h| h.height.get())).collect();
        if let Some((k, height)) = finals.iter().find(|(_, height)| **height > stalled + 2) {
            panic!("node {k} finalized {height} with half the stake down (final was {stalled})");
        }
        if heads.iter().all(|height| *height >= head + 6) { Ok(()) } else { Err(format!("heads {heads:?}")) }
    });
    let stalled = *sample_finals(&testnet, &mut seen).values().max().expect("live nodes");

    // Back, each alone at first (every other node refuses it): a restarted validator reports
    // the final block it had, from its store, before it can have seen anything new.
    let before: BTreeMap<usize, u64> = [3, 4].iter().map(|k| (*k, seen[k])).collect();
    testnet.partition(&[&[1, 2], &[3], &[4]]);
    for k in [3, 4] {
        testnet.restart(k);
        let reported = testnet.rpc(k).finalized().expect("finalized").map_or(0, |block| block.height.get());
        assert!(
            reported >= before[&k] && reported > 0,
            "node {k} restarted alone reporting final {reported}, had {}",
            before[&k]
        );
    }
    // Together again: finality resumes past the stall.
    testnet.heal();
    testnet.finalized_at_least(stalled + 3);
    sample_finals(&testnet, &mut seen);
    testnet.all_heads_within(2);
}

/// `chorus validators --json` through node `k`.
fn validators(testnet: &Testnet, k: usize) -> serde_json::Value {
    testnet.chorus(k, &["validators"]).unwrap_or_else(|error| panic!("validators through node {k}: {error:?}"))
}

fn listed(set: &serde_json::Value, address: &str) -> bool {
    set["validators"].as_array().expect("validators").iter().any(|validator| validator["address"] == address)
}

#[test]
fn staking_joins_the_set_and_unstaking_leaves_it_at_the_next_epoch() {
    let testnet = Testnet::builder("pos", 4).start().expect("four validators");
    let set = validators(&testnet, 1);
    assert_eq!(set["open"], false);
    let members = set["validators"].as_array().expect("validators");
    assert_eq!(members.len(), 4, "{set}");
    assert!(members.iter().all(|validator| validator["shareBps"] == 2_500 && validator["slashed"] == false), "{set}");
    assert!(!set["schedule"].as_array().expect("schedule").is_empty(), "{set}");
    assert!(testnet.rpc(2).status().expect("status").slot.is_some());

    // funded1 bonds more than the minimum stake: a validator from the next epoch on.
    let staker = testnet.account(1).address().to_string();
    testnet.chorus(1, &["stake", "5000", "--from", "funded1", "--wait"]).expect("stake");
    let joined_epoch = testnet.wait_for("funded1 in the set", |testnet| {
        let set = validators(testnet, 2);
        if listed(&set, &staker) {
            Ok(set["epoch"].as_u64().expect("epoch"))
        } else {
            Err(format!("epoch {}", set["epoch"]))
        }
    });
    // Unbonding it all takes it out at the following epoch boundary.
    testnet.chorus(3, &["unstake", "5000", "--from", "funded1", "--wait"]).expect("unstake");
    testnet.wait_for("funded1 out of the set", |testnet| {
        let set = validators(testnet, 4);
        let epoch = set["epoch"].as_u64().expect("epoch");
        if !listed(&set, &staker) && epoch > joined_epoch { Ok(()) } else { Err(format!("epoch {epoch}: {set}")) }
    });
    assert_eq!(validators(&testnet, 1)["validators"].as_array().expect("validators").len(), 4);
}

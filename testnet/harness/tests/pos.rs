//! PoS testnets of real `chorusd` processes: every node a validator with equal stake.
//! Transfers become final on every node; with half the stake killed, blocks keep coming and
//! finality stalls; restarted, the killed validators report their final block at once and
//! finality resumes; no node's final height ever goes down.

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

    // Back: each restarted validator reports its final block before anything new arrives,
    // and finality resumes past the stall.
    let before: BTreeMap<usize, u64> = [3, 4].iter().map(|k| (*k, seen[k])).collect();
    for k in [3, 4] {
        testnet.restart(k);
        let reported = testnet.rpc(k).finalized().expect("finalized").map_or(0, |block| block.height.get());
        assert!(
            reported >= before[&k] && reported > 0,
            "node {k} restarted reporting final {reported}, had {}",
            before[&k]
        );
    }
    testnet.finalized_at_least(stalled + 3);
    sample_finals(&testnet, &mut seen);
    testnet.all_heads_within(2);
}

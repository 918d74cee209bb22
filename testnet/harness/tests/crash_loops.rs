//! Issue 21's crash loops, on every engine: one node SIGKILLed again and again at random
//! moments (a seeded delay of up to 1.5 s after it came back: during start-up, sync, block
//! production or import) while a load of transfers runs through the other nodes and reaches
//! it by gossip. After every restart it reopens and continues, its final block is never below
//! what it reported before, and every transfer it once reported settled (final; under PoW six
//! blocks deep) it still reports so. At the end every transfer the load got accepted is in
//! the same block on every node, and final there under an engine with finality.
//!
//! CI kills each victim [`KILLS_IN_CI`] times; `CHORUS_CRASH_LOOP_KILLS=100` runs the long
//! loop.

mod common;

use std::time::Duration;

use chorus_chain::primitives::Hash;
use chorus_testnet::rpc::TxStatus;
use chorus_testnet::{Finals, Testnet};

const KILLS_IN_CI: usize = 6;
/// Under PoW a transfer counts as settled this many blocks deep.
const POW_SETTLED_DEPTH: u64 = 6;

fn kills() -> usize {
    std::env::var("CHORUS_CRASH_LOOP_KILLS").ok().and_then(|kills| kills.parse().ok()).unwrap_or(KILLS_IN_CI)
}

/// Whether node `k` reports `hash` settled: final, or (no finality) `POW_SETTLED_DEPTH` deep.
fn settled(testnet: &Testnet, k: usize, hash: &Hash) -> Result<bool, String> {
    let rpc = testnet.rpc(k);
    match rpc.tx(hash).map_err(|error| format!("node {k}: {error}"))? {
        TxStatus::Final { .. } => Ok(true),
        TxStatus::Included { height, .. } if rpc.finalized().map_err(|error| error.to_string())?.is_none() => {
            let head = rpc.head().map_err(|error| error.to_string())?.height.get();
            Ok(head >= height.get() + POW_SETTLED_DEPTH)
        }
        _ => Ok(false),
    }
}

/// Kills the node `victim` picks, [`kills`] times, with the checks of the module docs; the load
/// goes through `routes` (funded account, node), which `victim` must never pick. Transfers from
/// funded account 3 through `witness` are followed until settled.
fn crash_loop(
    mut testnet: Testnet,
    routes: &[(usize, usize)],
    witness: usize,
    victim: impl Fn(&Testnet, usize) -> usize,
) {
    let load = testnet.start_load(routes, 40);
    // A fixed seed: the same delays on every run (an LCG; nothing here needs more).
    let mut state: u64 = 21;
    let mut delay_ms = move || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % 1_500
    };
    let mut finals = Finals::default();
    let mut settled_before: Vec<Hash> = Vec::new();
    let sink = testnet.load_sink();
    for round in 0..kills() {
        let k = victim(&testnet, round);
        assert!(routes.iter().all(|(_, node)| *node != k) && k != witness, "the victim carries no load");
        let transfer = testnet.transfer(witness, 3, &sink, 1);
        std::thread::sleep(Duration::from_millis(delay_ms()));
        finals.sample(&testnet);
        testnet.kill(k);
        testnet.restart(k);
        // Reopened: its final block is where it was or later (Finals panics otherwise), and
        // what it reported settled before still is.
        finals.sample(&testnet);
        for hash in &settled_before {
            assert!(settled(&testnet, k, hash).expect("tx_get"), "round {round}: node {k} lost settled {hash}");
        }
        // It continues: the round's transfer settles on it.
        testnet.wait_for(&format!("round {round}: {transfer} settled on node {k}"), |testnet| {
            if settled(testnet, k, &transfer)? { Ok(()) } else { Err("not yet".to_owned()) }
        });
        settled_before.push(transfer);
    }
    let report = load.stop();
    assert!(report.accepted.len() >= 40, "only {} transfers went out", report.accepted.len());
    for hash in &report.accepted {
        testnet.included_everywhere(hash);
    }
    if testnet.rpc(1).finalized().expect("finalized").is_some() {
        for hash in report.accepted.iter().chain(&settled_before) {
            testnet.final_everywhere(hash);
        }
    }
    finals.sample(&testnet);
}

#[test]
fn a_pow_miner_killed_in_a_loop_reopens_and_keeps_what_was_settled() {
    let testnet = Testnet::builder("pow", 3).miners(3).start().expect("three miners");
    crash_loop(testnet, &[(1, 1), (2, 2)], 1, |_, _| 3);
}

#[test]
fn a_pos_validator_killed_in_a_loop_reopens_and_never_loses_a_final_block() {
    let testnet = Testnet::builder("pos", 4).start().expect("four validators");
    crash_loop(testnet, &[(1, 1), (2, 2)], 1, |_, _| 4);
}

#[test]
fn a_dpos_producer_killed_in_a_loop_reopens_and_never_loses_an_irreversible_block() {
    let testnet = Testnet::builder("dpos", 4).producers(4).start().expect("four producers");
    crash_loop(testnet, &[(1, 1), (2, 2)], 1, |_, _| 4);
}

/// Raft: the leader in even rounds (a follower of node 1..3 if node 4, which carries the load,
/// leads), a follower in odd ones.
#[test]
fn raft_leaders_and_followers_killed_in_a_loop_reopen_and_never_lose_a_committed_block() {
    let testnet = Testnet::builder("raft", 4).start().expect("four members");
    crash_loop(testnet, &[(1, 4), (2, 4)], 4, |testnet, round| {
        let leader = common::leader(testnet);
        match (round % 2, leader) {
            (0, 1..=3) => leader,
            _ => (1..=3).find(|k| *k != leader).expect("a follower among 1..3"),
        }
    });
}

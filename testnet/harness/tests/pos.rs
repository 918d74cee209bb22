//! PoS testnets of real `chorusd` processes: every node a validator with equal stake.
//! Finality through losses ([`common`]), and validators joining and leaving by staking.

mod common;

use chorus_testnet::Testnet;
use common::{listed, validators};

#[test]
fn transfers_become_final_and_finality_stalls_without_two_thirds_then_resumes() {
    let testnet = Testnet::builder("pos", 4).start().expect("four validators");
    common::finality_survives_one_loss_and_stalls_without_two_thirds(testnet);
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

/// `chorus load` through two of four validators: it funds its accounts, sends 20 transfers a
/// second for 4 s, and every transfer a node accepted is reported included and final, with
/// latencies; the counts add up.
#[test]
fn the_load_tool_sees_every_accepted_transfer_included_and_final() {
    let testnet = Testnet::builder("pos", 4).start().expect("four validators");
    let other = testnet.rpc(2).url();
    let args = ["load", "--from", "funded1", "--rate", "20", "--duration", "4", "--accounts", "4", "--node", &other];
    let report = testnet.chorus(1, &args).expect("the load runs and settles");
    let count = |field: &str| report[field].as_u64().unwrap_or_else(|| panic!("{field} in {report}"));
    assert_eq!(count("submitted"), 80, "20/s for 4 s: {report}");
    assert_eq!(count("accepted") + count("refused"), count("submitted"), "{report}");
    assert_eq!(count("refused"), 0, "honest transfers, one at a time per account: {report}");
    assert_eq!(count("included"), count("accepted"), "{report}");
    assert_eq!(count("final"), count("accepted"), "nothing final that was not accepted, all accepted final: {report}");
    assert_eq!(report["nodes"], 2);
    for latency in ["inclusionLatencyMs", "finalLatencyMs"] {
        let p50 = report[latency]["p50"].as_u64().unwrap_or_else(|| panic!("{latency} in {report}"));
        assert!(p50 <= report[latency]["max"].as_u64().expect("max"), "{report}");
    }
    assert!(
        report["finalLatencyMs"]["p50"].as_u64() >= report["inclusionLatencyMs"]["p50"].as_u64(),
        "final after included: {report}"
    );
}

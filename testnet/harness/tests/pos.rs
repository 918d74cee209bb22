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

//! DPoS testnets of real `chorusd` processes: every node a genesis delegate approving itself
//! with equal stake, so each is a producer. Irreversibility through losses ([`common`]), and
//! two new nodes elected by votes cast with `chorus`, producing once the change is
//! irreversible, the same on every node.

mod common;

use std::collections::BTreeSet;

use chorus_chain::Address;
use chorus_chain::primitives::Height;
use chorus_testnet::Testnet;
use chorus_testnet::testnet::VALIDATOR_STAKE;
use common::validators;

#[test]
fn transfers_become_irreversible_and_irreversibility_stalls_without_two_thirds_then_resumes() {
    let testnet = Testnet::builder("dpos", 4).start().expect("four producers");
    common::finality_survives_one_loss_and_stalls_without_two_thirds(testnet);
}

/// The addresses in node `k`'s active schedule.
fn schedule(testnet: &Testnet, k: usize) -> BTreeSet<Address> {
    let set = validators(testnet, k);
    set["validators"]
        .as_array()
        .expect("validators")
        .iter()
        .map(|member| Address::parse(member["address"].as_str().expect("an address")).expect("an address"))
        .collect()
}

#[test]
fn two_delegates_voted_in_replace_the_two_weakest_once_the_change_is_irreversible() {
    let mut testnet = Testnet::builder("dpos", 4).producers(4).start().expect("four producers");
    let genesis: BTreeSet<Address> = (1..=4).map(|k| testnet.address(k)).collect();
    assert_eq!(schedule(&testnet, 1), genesis);

    // Two new nodes follow the chain; funded by a transfer, they register with their node keys.
    let new = [testnet.add_node(false), testnet.add_node(false)];
    testnet.all_connected();
    for k in new {
        let hash = testnet.transfer(1, 1, &testnet.address(k), 1_000_000);
        testnet.included_everywhere(&hash);
        let name = testnet.import_node_key(k);
        testnet.chorus(k, &["delegate", "register", "--from", &name, "--wait"]).expect("register");
    }
    // A staker approves both with ten times a genesis delegate's weight: they rank first, and
    // the two genesis delegates with the higher addresses (ties go to the lower, in byte order,
    // which is not the order of their text) drop out.
    let stake = (10 * VALIDATOR_STAKE).to_string();
    testnet.chorus(2, &["stake", &stake, "--from", "funded2", "--wait"]).expect("stake");
    let voted = testnet.chorus(3, &["vote", "node5", "node6", "--from", "funded2", "--wait"]).expect("vote");
    let vote_height = voted["height"].as_u64().unwrap_or_else(|| panic!("a block height in {voted}"));

    let kept = genesis.iter().take(2).copied();
    let expected: BTreeSet<Address> = new.iter().map(|k| testnet.address(*k)).chain(kept).collect();
    testnet.wait_for("the new schedule on every node", |testnet| {
        for k in testnet.live() {
            let now = schedule(testnet, k);
            if now != expected {
                return Err(format!("node {k}: {now:?}"));
            }
        }
        Ok(())
    });

    // The ranking behind it, with the weights, the same through every node.
    let set = validators(&testnet, 6);
    let election = &set["election"];
    assert_eq!(election["pending"], serde_json::Value::Null, "{set}");
    assert!(election["scheduleVersion"].as_u64() >= Some(1), "{set}");
    let ranking = election["ranking"].as_array().expect("ranking");
    assert_eq!(ranking.len(), 6, "{set}");
    for (delegate, rank) in ranking.iter().zip(1..) {
        let address = Address::parse(delegate["address"].as_str().expect("address")).expect("address");
        let weight = if new.iter().any(|k| testnet.address(*k) == address) { 10 } else { 1 } * VALIDATOR_STAKE;
        assert_eq!(delegate["rank"], rank, "{set}");
        assert_eq!(delegate["weight"], weight.to_string(), "{set}");
        assert_eq!(delegate["elected"], expected.contains(&address), "{set}");
        assert_eq!(delegate["scheduled"], expected.contains(&address), "{set}");
    }
    for k in testnet.live() {
        assert_eq!(validators(&testnet, k)["election"]["ranking"], election["ranking"], "node {k}");
    }
    let table = testnet.wallet().run(Some(testnet.rpc(1)), &["validators"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("ranking (6 registered delegates):"), "{table}");

    // Both produce, on one chain: the first block of each new producer is above the vote's
    // irreversible block, and every node holds it once it is irreversible.
    let first_blocks = testnet.wait_for("a block from each new producer", |testnet| {
        let head = testnet.rpc(1).head().map_err(|error| error.to_string())?.height.get();
        let mut first = Vec::new();
        for k in new {
            let address = testnet.address(k);
            let found = (vote_height..=head).find(|height| {
                testnet
                    .rpc(1)
                    .block_at(Height::new(*height))
                    .ok()
                    .flatten()
                    .is_some_and(|block| block.proposer == address)
            });
            first.push(found.ok_or_else(|| format!("node {k} produced nothing up to {head}"))?);
        }
        Ok(first)
    });
    for height in &first_blocks {
        assert!(*height > vote_height, "a new producer's block at {height}, the vote was at {vote_height}");
        testnet.finalized_at_least(*height);
    }
    // From the switch on, only the new schedule produces.
    let switched = first_blocks.into_iter().min().expect("two heights");
    let head = testnet.all_heads_within(2).into_iter().map(|head| head.height.get()).min().expect("heads");
    for height in switched..=head {
        let block = testnet.rpc(2).block_at(Height::new(height)).expect("block").expect("held");
        assert!(expected.contains(&block.proposer), "block {height} by {}, out of the schedule", block.proposer);
    }
}

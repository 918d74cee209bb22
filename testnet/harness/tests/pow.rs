//! PoW testnets of real `chorusd` processes through the harness: transfers sent with `chorus`
//! to different nodes, a node killed and restarted (also under a steady transaction load), a
//! paused node, a late node syncing from zero, and a partition healed.

use chorus_chain::Address;
use chorus_chain::primitives::{Amount, Hash};
use chorus_testnet::rpc::Head;
use chorus_testnet::testnet::FUNDED_BALANCE;
use chorus_testnet::{LoadReport, Testnet};

/// `chorus transfer` from `funded<from>` to `to` for `amount` with a fee of 3, sent to node `k`.
fn transfer(testnet: &Testnet, k: usize, from: usize, to: &Address, amount: u128) -> Hash {
    let printed = testnet
        .chorus(
            k,
            &[
                "transfer",
                "--from",
                &format!("funded{from}"),
                "--to",
                &to.to_string(),
                "--amount",
                &amount.to_string(),
                "--fee",
                "3",
            ],
        )
        .unwrap_or_else(|error| panic!("transfer through node {k}: {error:?}"));
    Hash::from_hex(printed["hash"].as_str().expect("a hash")).expect("hex")
}

fn balance(testnet: &Testnet, k: usize, address: &Address) -> Amount {
    testnet.rpc(k).account(address).expect("account").balance
}

/// Asserts that the load met no refusal but backpressure (nonce too far ahead, sender full:
/// pending transfers piling up while blocks lag) and, from a node in `restarted`, shutting down
/// (5001) or no answer while it was down.
fn assert_only_expected_refusals(report: &LoadReport, restarted: &[usize]) {
    let unexpected: Vec<_> = report
        .refused
        .iter()
        .filter(|(k, error)| match error.code() {
            Some(1004 | 1008) => false,
            Some(5001) | None => !restarted.contains(k),
            Some(_) => true,
        })
        .collect();
    assert!(unexpected.is_empty(), "refused: {unexpected:?}");
}

/// Asserts that no accepted transfer of the load was lost: each is in the same block on every
/// live node, the accounts it touched (senders, sink, every node's rewards) match across nodes,
/// and the sink holds one unit per accepted transfer, no more, no less.
fn assert_load_settled(testnet: &Testnet, report: &LoadReport) {
    for hash in &report.accepted {
        testnet.included_everywhere(hash);
    }
    let sink = testnet.load_sink();
    let mut accounts = vec![sink, testnet.account(1).address(), testnet.account(2).address()];
    accounts.extend((1..=testnet.len()).map(|k| testnet.address(k)));
    testnet.accounts_match(&accounts);
    balance_everywhere(testnet, &sink, Amount::new(report.accepted.len() as u128));
}

/// Waits until every live node's head holds `expected` at `address` (a tip reorg may briefly
/// take a block's transfers back to the mempool).
fn balance_everywhere(testnet: &Testnet, address: &Address, expected: Amount) {
    testnet.wait_for(&format!("{address} holding {expected} everywhere"), |testnet| {
        for k in testnet.live() {
            let got = testnet.rpc(k).account(address).map_err(|error| error.to_string())?.balance;
            if got != expected {
                return Err(format!("node {k}: {got}"));
            }
        }
        Ok(())
    });
}

#[test]
fn transfers_sent_to_different_nodes_are_included_and_seen_by_all() {
    let testnet = Testnet::builder("pow", 3).miners(2).start().expect("three nodes");
    let to = testnet.account(4).address();
    let sent: Vec<Hash> = (1..=3).map(|k| transfer(&testnet, k, k, &to, 100 * k as u128)).collect();
    for hash in &sent {
        testnet.included_everywhere(hash);
    }
    testnet.all_heads_within(3);
    // Every node holds the same balances, to the unit.
    testnet.wait_for("exact balances on every node", |testnet| {
        for k in testnet.live() {
            for i in 1..=3 {
                let expected = Amount::new(FUNDED_BALANCE - 100 * i as u128 - 3);
                let got = balance(testnet, k, &testnet.account(i).address());
                if got != expected {
                    return Err(format!("node {k}: funded{i} holds {got}, expected {expected}"));
                }
            }
            let got = balance(testnet, k, &to);
            if got != Amount::new(FUNDED_BALANCE + 600) {
                return Err(format!("node {k}: funded4 holds {got}"));
            }
        }
        Ok(())
    });
}

#[test]
fn a_killed_node_catches_up_after_restart_and_a_late_node_syncs_from_zero() {
    let mut testnet = Testnet::pow(3);
    testnet.heads_at_least(5);

    testnet.kill(2);
    let to = testnet.account(4).address();
    let hash = transfer(&testnet, 3, 1, &to, 42);
    let block = testnet.included_everywhere(&hash);
    testnet.heads_at_least(block.height.get() + 3);
    testnet.restart(2);
    testnet.all_heads_within(1);
    assert_eq!(testnet.included_everywhere(&hash), block, "the restarted node learned the transfer by sync");

    // A paused node (SIGSTOP) misses blocks; resumed, it catches up.
    testnet.pause(3);
    let height = testnet.rpc(1).head().expect("head").height.get();
    testnet.heads_at_least(height + 3);
    testnet.resume(3);
    testnet.all_heads_within(1);

    // A fourth node, started now, imports the whole chain from its peers.
    let late = testnet.add_node(false);
    testnet.all_connected();
    let heads = testnet.all_heads_within(1);
    let imported = testnet.node(late).metric("chorus_blocks_imported_total").expect("metric");
    assert!(imported >= (heads[0].height.get() - 1) as f64, "node {late} imported {imported} blocks: {heads:?}");
    assert_eq!(testnet.included_everywhere(&hash), block);
    assert_eq!(balance(&testnet, late, &to), Amount::new(FUNDED_BALANCE + 42));
}

#[test]
fn a_partition_heals_onto_one_chain_and_every_account_matches() {
    let mut testnet = Testnet::builder("pow", 3).miners(3).start().expect("three miners");
    testnet.heads_at_least(3);
    testnet.partition(&[&[1], &[2, 3]]);
    let split = (1..=3).map(|k| testnet.rpc(k).head().expect("head").height.get()).max().expect("three nodes");

    // Each side takes a transfer and mines on by itself.
    let to = testnet.account(4).address();
    let alone = transfer(&testnet, 1, 1, &to, 10);
    let pair = transfer(&testnet, 2, 2, &to, 20);
    testnet.wait_for("both sides include their transfer and mine on", |testnet| {
        for (k, hash) in [(1, &alone), (2, &pair)] {
            let rpc = testnet.rpc(k);
            let head = rpc.head().map_err(|error| error.to_string())?;
            let included = rpc.tx(hash).map_err(|error| error.to_string())?.block();
            if head.height.get() < split + 3 || included.is_none() {
                return Err(format!("node {k} at {}, transfer {included:?}", head.height));
            }
        }
        Ok(())
    });
    let before: Vec<_> = (1..=3).map(|k| testnet.rpc(k).head().expect("head")).collect();
    assert_ne!(before[0].hash, before[1].hash, "the sides grew apart: {before:?}");

    testnet.heal();
    testnet.all_heads_within(1);
    // Most work wins: every node comes to hold at least the work of the heaviest side (a node
    // one block behind may not have it yet).
    let heaviest = before.iter().filter_map(|head| head.chain_work).max().expect("PoW reports chainWork");
    testnet.wait_for("every node at the heaviest side's work", |testnet| {
        for k in testnet.live() {
            let head = testnet.rpc(k).head().map_err(|error| error.to_string())?;
            if head.chain_work.expect("chainWork") < heaviest {
                return Err(format!("node {k} at {head:?}"));
            }
        }
        Ok(())
    });
    // One side's chain won: the common chain still holds a head one side had before the heal.
    testnet.wait_for("a pre-heal head on every node's chain", |testnet| {
        let on_chain = |head: &Head, k: usize| {
            testnet.rpc(k).block_at(head.height).ok().flatten().is_some_and(|block| block.hash == head.hash)
        };
        match before.iter().any(|head| testnet.live().into_iter().all(|k| on_chain(head, k))) {
            true => Ok(()),
            false => Err(format!("neither of {before:?}")),
        }
    });
    // The losing side's transfer went back to its mempool and is on the common chain too.
    testnet.included_everywhere(&alone);
    testnet.included_everywhere(&pair);
    let mut accounts: Vec<Address> = (1..=4).map(|i| testnet.account(i).address()).collect();
    accounts.extend((1..=3).map(|k| testnet.address(k)));
    testnet.accounts_match(&accounts);
}

#[test]
fn pow_never_finalizes_a_dead_node_fails_checks_and_unbuilt_engines_are_refused() {
    let refused = Testnet::builder("pbft", 3).start().expect_err("no such engine");
    assert!(refused.contains("pbft"), "{refused}");

    let mut testnet = Testnet::pow(1);
    testnet.heads_at_least(2);
    testnet.set_wait(std::time::Duration::from_secs(2));
    let check = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| testnet.finalized_at_least(1)));
    let message = *check.expect_err("PoW has no finality").downcast::<String>().expect("a message");
    assert!(message.contains("finalized at least 1") && message.contains("None"), "{message}");

    // A node that dies behind the harness's back fails the next check at once, saying so.
    testnet.set_wait(std::time::Duration::from_secs(90));
    let pid = testnet.node(1).pid().to_string();
    assert!(std::process::Command::new("kill").args(["-KILL", &pid]).status().expect("kill").success());
    let check = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| testnet.heads_at_least(u64::MAX)));
    let message = *check.expect_err("node 1 is dead").downcast::<String>().expect("a message");
    assert!(message.contains("node 1 exited unexpectedly"), "{message}");
}

#[test]
fn under_load_a_killed_node_rejoins_and_every_accepted_transfer_is_everywhere() {
    let mut testnet = Testnet::builder("pow", 3).miners(2).start().expect("three nodes");
    // Two senders, through nodes 1 and 2; node 3 is the one perturbed.
    let load = testnet.start_load(&[(1, 1), (2, 2)], 100);
    let height = |testnet: &Testnet| testnet.rpc(1).head().expect("head").height.get();
    testnet.heads_at_least(height(&testnet) + 5);
    testnet.kill(3);
    testnet.heads_at_least(height(&testnet) + 5);
    testnet.restart(3);
    testnet.heads_at_least(height(&testnet) + 5);
    let report = load.stop();
    assert_only_expected_refusals(&report, &[]);
    assert!(report.accepted.len() >= 50, "only {} transfers went out", report.accepted.len());
    assert_load_settled(&testnet, &report);
}

#[test]
fn under_load_a_partition_heals_and_no_accepted_transfer_is_lost() {
    let mut testnet = Testnet::builder("pow", 3).miners(3).start().expect("three miners");
    // funded1 sends through node 1, alone in the partition; funded2 through node 2, with node 3.
    let load = testnet.start_load(&[(1, 1), (2, 2)], 100);
    let height = |testnet: &Testnet, k: usize| testnet.rpc(k).head().expect("head").height.get();
    testnet.heads_at_least(height(&testnet, 1) + 3);
    testnet.partition(&[&[1], &[2, 3]]);
    let (one, two) = (height(&testnet, 1), height(&testnet, 2));
    testnet.wait_for("both sides mine on", |testnet| {
        let (now_one, now_two) = (height(testnet, 1), height(testnet, 2));
        if now_one >= one + 5 && now_two >= two + 5 { Ok(()) } else { Err(format!("at {now_one} and {now_two}")) }
    });
    testnet.heal();
    testnet.heads_at_least(height(&testnet, 2) + 3);
    let report = load.stop();
    assert_only_expected_refusals(&report, &[]);
    assert!(report.accepted.len() >= 50, "only {} transfers went out", report.accepted.len());
    // The losing side's blocks were rolled back; their transfers went back to the mempool and
    // are on the common chain now, each once.
    assert_load_settled(&testnet, &report);
    testnet.all_heads_within(1);
}

#[test]
fn under_load_a_late_node_and_a_restart_of_every_node_lose_no_transfer() {
    let mut testnet = Testnet::builder("pow", 3).miners(2).start().expect("three nodes");
    let load = testnet.start_load(&[(1, 1), (2, 2)], 100);
    let height = |testnet: &Testnet| testnet.rpc(1).head().expect("head").height.get();
    testnet.heads_at_least(height(&testnet) + 5);
    let late = testnet.add_node(true);
    testnet.all_heads_within(2);
    testnet.heads_at_least(height(&testnet) + 5);
    let report = load.stop();
    assert_only_expected_refusals(&report, &[]);

    // Every node stops cleanly (SIGTERM) with transfers still pending, and starts again: the
    // pending ones were kept and are offered again.
    for k in 1..=late {
        testnet.stop(k);
    }
    for k in 1..=late {
        testnet.restart(k);
    }
    testnet.all_connected();
    assert_load_settled(&testnet, &report);
}

#[test]
fn under_load_a_node_killed_five_times_and_a_restarted_sender_node_lose_no_transfer() {
    let mut testnet = Testnet::builder("pow", 3).miners(3).start().expect("three miners");
    let load = testnet.start_load(&[(1, 1), (2, 2)], 100);
    let height = |testnet: &Testnet| testnet.rpc(1).head().expect("head").height.get();
    // A crash loop: node 3 (a miner) SIGKILLed five times, a few blocks apart.
    for _ in 0..5 {
        testnet.heads_at_least(height(&testnet) + 2);
        testnet.kill(3);
        testnet.heads_at_least(height(&testnet) + 2);
        testnet.restart(3);
    }
    // Node 2, which funded2's transfers go through, stopped cleanly and started again.
    testnet.restart(2);
    testnet.heads_at_least(height(&testnet) + 3);
    let report = load.stop();
    assert_only_expected_refusals(&report, &[2]);
    assert!(report.accepted.len() >= 100, "only {} transfers went out", report.accepted.len());
    testnet.all_connected();
    assert_load_settled(&testnet, &report);
    testnet.all_heads_within(2);
}

//! Raft testnets of real `chorusd` processes, every node a genesis member (ids follow the node
//! numbers): transfers through a follower are final on every member as soon as they are on its
//! chain, a node that is not a member is never admitted, a killed leader is replaced and catches
//! up when it returns, and a minority commits nothing.

mod common;

use chorus_testnet::Testnet;
use common::validators;

/// The leader every live member names, once they agree on a live one.
fn leader(testnet: &Testnet) -> usize {
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

/// Waits until node `k`'s head is its final block (Raft adds a block only once committed).
fn head_is_final(testnet: &Testnet, k: usize) {
    testnet.wait_for(&format!("node {k}'s head final"), |testnet| {
        let head = testnet.rpc(k).head().map_err(|error| error.to_string())?;
        let finalized = testnet.rpc(k).finalized().map_err(|error| error.to_string())?;
        match finalized {
            Some(block) if block.hash == head.hash => Ok(()),
            other => Err(format!("head {} at {}, final {other:?}", head.hash, head.height)),
        }
    });
}

#[test]
fn a_transfer_through_a_follower_is_final_on_every_member_and_a_stranger_is_never_admitted() {
    let mut testnet = Testnet::builder("raft", 3).start().expect("three members");
    let leader = leader(&testnet);
    let set = validators(&testnet, leader);
    let members = set["raft"]["members"].as_array().expect("members");
    assert_eq!(members.len(), 3, "{set}");
    for (k, member) in (1..).zip(members) {
        assert_eq!(member["id"], k, "{set}");
        assert_eq!(member["role"], "voter", "{set}");
        assert_eq!(member["address"], testnet.address(k as usize).to_string(), "{set}");
    }
    assert_eq!(set["raft"]["memberId"], leader, "{set}");
    assert_eq!(set["producer"], testnet.address(leader).to_string(), "the producer is the leader: {set}");

    let follower = if leader == 1 { 2 } else { 1 };
    let sink = testnet.account(4).address();
    let hash = testnet.transfer(follower, 1, &sink, 100);
    testnet.final_everywhere(&hash);
    for k in 1..=3 {
        head_is_final(&testnet, k);
    }

    // A node of the same genesis whose key is no member's dials the members; each refuses it.
    let stranger = testnet.add_node(false);
    let hash = testnet.transfer(follower, 2, &sink, 200);
    testnet.wait_for("the second transfer final on the members", |testnet| {
        for k in 1..=3 {
            match testnet.rpc(k).tx(&hash).map_err(|error| error.to_string())? {
                chorus_testnet::rpc::TxStatus::Final { .. } => {}
                other => return Err(format!("node {k}: {other:?}")),
            }
        }
        Ok(())
    });
    let refused = testnet.rpc(stranger).peers().expect("the stranger's peers");
    assert!(refused.connected.is_empty(), "the stranger got in: {refused:?}");
    assert_eq!(testnet.rpc(stranger).head().expect("head").height.get(), 0, "the stranger received blocks");
    for k in 1..=3 {
        let peers = testnet.rpc(k).peers().expect("peers");
        assert!(peers.connected.iter().all(|peer| peer.peer_id != *testnet.peer_id(stranger)), "node {k}: {peers:?}");
    }
    let set = validators(&testnet, stranger);
    assert!(set["raft"]["memberId"].is_null(), "{set}");
}

#[test]
fn a_killed_leader_is_replaced_and_catches_up_and_a_minority_commits_nothing() {
    let mut testnet = Testnet::builder("raft", 3).start().expect("three members");
    let sink = testnet.account(4).address();
    let first = leader(&testnet);
    testnet.kill(first);
    let second = leader(&testnet);
    assert_ne!(second, first);
    let hash = testnet.transfer(second, 1, &sink, 100);
    testnet.final_everywhere(&hash);

    // Back, the old leader follows and gets what was committed without it.
    testnet.restart(first);
    testnet.all_connected();
    testnet.final_everywhere(&hash);
    assert_eq!(leader(&testnet), second, "a returning member does not disrupt the leader (pre-vote)");

    // The leader alone on one side: it steps down and commits nothing; the two others elect a
    // leader of their own and commit.
    let others: Vec<usize> = (1..=3).filter(|k| *k != second).collect();
    testnet.partition(&[&[second], &others]);
    let stalled = testnet.rpc(second).head().expect("head");
    // Taken into the cut-off node's mempool: something it could commit if a minority could.
    testnet.transfer(second, 2, &sink, 200);
    let hash = testnet.transfer(others[0], 3, &sink, 300);
    testnet.wait_for("the majority's transfer final on the majority", |testnet| {
        for &k in &others {
            match testnet.rpc(k).tx(&hash).map_err(|error| error.to_string())? {
                chorus_testnet::rpc::TxStatus::Final { .. } => {}
                other => return Err(format!("node {k}: {other:?}")),
            }
        }
        Ok(())
    });
    testnet.wait_for("the cut-off leader to step down (check-quorum)", |testnet| {
        let set = validators(testnet, second);
        if set["raft"]["leader"] == second { Err(format!("it still leads: {set}")) } else { Ok(()) }
    });
    assert_eq!(testnet.rpc(second).head().expect("head"), stalled, "the minority added a block");

    testnet.heal();
    testnet.final_everywhere(&hash);
    for k in 1..=3 {
        head_is_final(&testnet, k);
    }
    testnet.all_heads_within(0);
}

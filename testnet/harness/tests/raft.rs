//! Raft testnets of real `chorusd` processes, every node a genesis member (ids follow the node
//! numbers): transfers through a follower are final on every member as soon as they are on its
//! chain, a node that is not a member is never admitted, a killed leader is replaced and catches
//! up when it returns, and a minority commits nothing; the explorer page shows the members and
//! the peers its node's RPC reports.

mod common;

use std::path::Path;
use std::process::Command;

use chorus_testnet::Testnet;
use chorus_testnet::rpc::TxStatus;
use common::{leader, validators};
use serde_json::{Value, json};

/// Waits until `nodes` all report `hash` final (a subset: the others are cut off or not members).
fn final_on(testnet: &Testnet, nodes: &[usize], hash: &chorus_chain::primitives::Hash, what: &str) {
    testnet.wait_for(what, |testnet| {
        for &k in nodes {
            match testnet.rpc(k).tx(hash).map_err(|error| error.to_string())? {
                TxStatus::Final { .. } => {}
                other => return Err(format!("node {k}: {other:?}")),
            }
        }
        Ok(())
    });
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
    final_on(&testnet, &[1, 2, 3], &hash, "the second transfer final on the members");
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
    final_on(&testnet, &others, &hash, "the majority's transfer final on the majority");
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

/// A follower's explorer page, in a real browser (Debian's Chromium driven by playwright-core,
/// both installed by `.ci/setup --tests`, as for the dev node's explorer test in
/// node/tests/chorusd.rs): its Validators card lists the members as the RPC gives them, with the
/// leader and the node itself marked on their rows, its Peers card the two other members, and a
/// click on a member's address opens that account. The screenshot is kept in the target directory
/// (`tmp/explorer-raft.png`).
#[test]
fn a_followers_explorer_page_shows_the_members_and_its_peers_in_a_browser() {
    let testnet = Testnet::builder("raft", 3).start().expect("three members");
    let leader = leader(&testnet);
    let follower = if leader == 1 { 2 } else { 1 };
    let peers = testnet.wait_for("the follower connected to both other members", |testnet| {
        let peers = testnet.rpc(follower).peers().map_err(|error| error.to_string())?;
        let agents_known = peers.connected.iter().all(|peer| peer.agent.is_some());
        if peers.connected.len() == 2 && agents_known { Ok(peers) } else { Err(format!("{peers:?}")) }
    });

    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../node/tests/js");
    assert!(
        js.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run .ci/setup --tests"
    );
    let page = testnet.node(follower).explorer_addr().expect("the harness serves the explorer");
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("explorer-raft.png");
    let _ = std::fs::remove_file(&screenshot);
    let output = Command::new("node")
        .arg(js.join("explorer-home.mjs"))
        .args([format!("http://{page}/"), "3".to_owned(), "2".to_owned(), screenshot.display().to_string()])
        .output()
        .expect("node runs (Node.js, which .ci/setup --tests checks for)");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "the browser script: {said}{}", String::from_utf8_lossy(&output.stderr));
    let seen: Value = serde_json::from_str(said.trim()).unwrap_or_else(|error| panic!("{error}: {said}"));
    assert_eq!(seen["failures"], json!([]), "the page ran without errors: {seen}");
    assert_eq!(seen["outside"], json!([]), "the page fetched nothing beyond the node: {seen}");

    let set = validators(&testnet, follower);
    let summary = format!("Raft, term {}; leader: member {leader}.", set["raft"]["term"]);
    assert_eq!(seen["summary"], summary, "{seen}");
    let members: Vec<Value> = (1..=3)
        .map(|k| {
            let role = if k == leader { "leader" } else { "voter" };
            let this = if k == follower { "this node" } else { "" };
            json!([k.to_string(), testnet.address(k).to_string(), role, this])
        })
        .collect();
    assert_eq!(seen["members"], json!(members), "{seen}");

    // The peers as the RPC gave them (the page shows a peer id's ends, and addresses without
    // their `/p2p/ID` ending); no other row.
    let text = |cell: &Value| cell.as_str().unwrap_or_default().to_owned();
    let mut shown: Vec<[String; 4]> = seen["peers"]
        .as_array()
        .expect("peer rows")
        .iter()
        .map(|row| [text(&row[0]), text(&row[1]), text(&row[2]), text(&row[4])])
        .collect();
    let mut expected: Vec<[String; 4]> = peers
        .connected
        .iter()
        .map(|peer| {
            let id = peer.peer_id.as_str();
            let short = format!("{}…{}", &id[..10], &id[id.len() - 8..]);
            let own = format!("/p2p/{id}");
            let addresses: Vec<String> = peer.addresses.iter().map(|address| address.replace(&own, "")).collect();
            let direction = if peer.inbound { "in" } else { "out" };
            [short, addresses.join(", "), direction.to_owned(), peer.agent.clone().unwrap_or_default()]
        })
        .collect();
    shown.sort();
    expected.sort();
    assert_eq!(shown, expected, "{seen}");
    let others: Vec<String> =
        (1..=3).filter(|&k| k != follower).map(|k| testnet.peer_id(k).as_str().to_owned()).collect();
    assert!(peers.connected.iter().all(|peer| others.contains(&peer.peer_id.as_str().to_owned())), "{peers:?}");

    let first = testnet.address(1).to_string();
    let balance =
        testnet.rpc(follower).call("state_getAccount", json!([first])).expect("the account")["balance"].clone();
    assert_eq!(seen["account"], json!({ "hash": format!("#/account/{first}"), "balance": balance }), "{seen}");
    let png = std::fs::read(&screenshot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
}

/// `chorus raft ARGS` through node `k` with its admin token: the proposed change, or the
/// refusal's reason code and the leader it names.
fn raft(testnet: &Testnet, k: usize, args: &[&str]) -> Result<Value, (String, Option<u64>)> {
    let token = testnet.admin_token_file(k);
    let mut all = vec!["raft"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--admin-token-file", token.to_str().expect("utf-8")]);
    testnet.chorus(k, &all).map_err(|failure| {
        let data = &failure.error["error"]["data"];
        let reason = data["reason"].as_str().unwrap_or_else(|| panic!("a refusal with a reason: {failure:?}"));
        (reason.to_owned(), data["leader"].as_u64())
    })
}

/// Node `k`'s view of the members: `(id, role)` by id, and the pending change's index.
fn roles(testnet: &Testnet, k: usize) -> (Vec<(u64, String)>, Option<u64>) {
    let set = validators(testnet, k);
    let members = set["raft"]["members"].as_array().expect("members");
    let mut roles: Vec<(u64, String)> = members
        .iter()
        .map(|member| (member["id"].as_u64().expect("id"), member["role"].as_str().expect("role").to_owned()))
        .collect();
    roles.sort();
    (roles, set["raft"]["pendingChange"]["index"].as_u64())
}

/// Waits until every live node shows exactly these members with these roles and no pending
/// change.
fn members_are(testnet: &Testnet, expected: &[(u64, &str)]) {
    let expected: Vec<(u64, String)> = expected.iter().map(|(id, role)| (*id, (*role).to_owned())).collect();
    testnet.wait_for(&format!("members {expected:?} everywhere"), |testnet| {
        for k in testnet.live() {
            let (roles, pending) = roles(testnet, k);
            if roles != expected || pending.is_some() {
                return Err(format!("node {k}: {roles:?}, pending {pending:?}"));
            }
        }
        Ok(())
    });
}

#[test]
fn members_change_one_at_a_time_through_the_leader_and_every_refusal_says_why() {
    let mut testnet = Testnet::builder("raft", 3).start().expect("three members");
    let leader = leader(&testnet);
    let follower = if leader == 1 { 2 } else { 1 };

    // Only the leader changes the membership; a follower names it.
    let new = testnet.prepare_node();
    let address = testnet.address(new).to_string();
    let refused = raft(&testnet, follower, &["add-learner", &address]);
    assert_eq!(refused, Err(("not_leader".to_owned(), Some(leader as u64))));
    assert_eq!(raft(&testnet, leader, &["promote", "2"]).map_err(|refusal| refusal.0), Err("already_voter".to_owned()));
    assert_eq!(raft(&testnet, leader, &["remove", "9"]).map_err(|refusal| refusal.0), Err("unknown_peer".to_owned()));
    let taken = raft(&testnet, leader, &["add-learner", &address, "--id", "2"]);
    assert_eq!(taken.map_err(|refusal| refusal.0), Err("id_in_use".to_owned()));

    // A learner is added under the next id at once; one change at a time.
    let added = raft(&testnet, leader, &["add-learner", &address]).expect("accepted");
    assert_eq!((added["kind"].as_str(), added["id"].as_u64()), (Some("addLearner"), Some(4)), "{added}");
    let early = raft(&testnet, leader, &["promote", "4"]).map_err(|refusal| refusal.0);
    assert!(early == Err("change_pending".to_owned()) || early == Err("not_caught_up".to_owned()), "{early:?}");
    members_are(&testnet, &[(1, "voter"), (2, "voter"), (3, "voter"), (4, "learner")]);
    // Not running yet, it has not caught up.
    let behind = raft(&testnet, leader, &["promote", "4"]).map_err(|refusal| refusal.0);
    assert_eq!(behind, Err("not_caught_up".to_owned()));

    // Started (with the genesis only), it is admitted, gets the log, and can be promoted.
    testnet.restart(new);
    testnet.wait_for("the learner caught up and promoted", |testnet| match raft(testnet, leader, &["promote", "4"]) {
        Ok(change) => Ok(change),
        Err((reason, _)) => Err(reason),
    });
    members_are(&testnet, &[(1, "voter"), (2, "voter"), (3, "voter"), (4, "voter")]);
    let sink = testnet.account(4).address();
    let hash = testnet.transfer(new, 1, &sink, 100);
    testnet.final_everywhere(&hash);

    // The leader does not remove itself: it hands leadership to a voter, which removes it.
    let (reason, successor) = raft(&testnet, leader, &["remove", &leader.to_string()]).expect_err("refused");
    assert_eq!(reason, "leader_leaving");
    let successor = usize::try_from(successor.expect("the member taking over")).expect("an id");
    assert_ne!(successor, leader);
    let removed = testnet.wait_for("the new leader removing the old one", |testnet| {
        raft(testnet, successor, &["remove", &leader.to_string()]).map_err(|(reason, _)| reason)
    });
    assert_eq!(removed["kind"], "remove", "{removed}");
    let remaining: Vec<usize> = (1..=4).filter(|k| *k != leader).collect();
    testnet.wait_for("the removed member out of every member's view and connections", |testnet| {
        for &k in &remaining {
            let (roles, pending) = roles(testnet, k);
            if roles.iter().any(|(id, _)| *id == leader as u64) || pending.is_some() {
                return Err(format!("node {k}: {roles:?}"));
            }
            let peers = testnet.rpc(k).peers().map_err(|error| error.to_string())?;
            if peers.connected.iter().any(|peer| peer.peer_id == *testnet.peer_id(leader)) {
                return Err(format!("node {k} still connected to the removed node"));
            }
        }
        Ok(())
    });
    testnet.stop(leader);

    // Removed ids and keys are never used again.
    let stranger = testnet.prepare_node();
    let stranger_address = testnet.address(stranger).to_string();
    let id = leader.to_string();
    let reused = raft(&testnet, successor, &["add-learner", &stranger_address, "--id", &id]);
    assert_eq!(reused.map_err(|refusal| refusal.0), Err("removed_id_reused".to_owned()));
    let old_key = testnet.address(leader).to_string();
    let rejoin = raft(&testnet, successor, &["add-learner", &old_key]).map_err(|refusal| refusal.0);
    assert_eq!(rejoin, Err("address_known".to_owned()));

    let hash = testnet.transfer(successor, 2, &sink, 200);
    testnet.final_everywhere(&hash);
    testnet.all_heads_within(0);

    // The removed node, started again, is refused by every member: it gets no block.
    let height = testnet.rpc(successor).head().expect("head").height;
    testnet.restart(leader);
    let hash = testnet.transfer(successor, 3, &sink, 300);
    final_on(&testnet, &remaining, &hash, "the transfer final on the members");
    let peers = testnet.rpc(leader).peers().expect("peers");
    assert!(peers.connected.is_empty(), "the removed node got in: {peers:?}");
    assert!(testnet.rpc(leader).head().expect("head").height <= height, "the removed node got a new block");

    // One voter of three down: once the leader sees it silent (its view shows it), removing
    // another voter is refused, since the one left with the leader could not make a quorum.
    let others: Vec<usize> = remaining.iter().copied().filter(|k| *k != successor).collect();
    testnet.kill(others[0]);
    testnet.wait_for("the leader seeing the killed voter silent", |testnet| {
        let set = validators(testnet, successor);
        let killed = set["raft"]["members"].as_array().and_then(|members| {
            members.iter().find(|member| member["address"] == testnet.address(others[0]).to_string())
        });
        match killed.map(|member| member["recentlyActive"].clone()) {
            Some(Value::Bool(false)) => Ok(()),
            other => Err(format!("{other:?}: {set}")),
        }
    });
    let refused = raft(&testnet, successor, &["remove", &others[1].to_string()]).map_err(|refusal| refusal.0);
    assert_eq!(refused, Err("below_quorum".to_owned()));

    // With no quorum left, a call still answers at once: the last member, cut off from the
    // others, stops leading and says there is no leader.
    testnet.kill(others[1]);
    let another = testnet.prepare_node();
    let address = testnet.address(another).to_string();
    testnet.wait_for("the lone member refusing for want of a leader", |testnet| {
        match raft(testnet, successor, &["add-learner", &address]) {
            Err((reason, _)) if reason == "no_leader" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
}

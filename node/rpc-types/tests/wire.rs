//! Golden JSON of every wire type: each value serializes to exactly the text below and reads
//! back to the same value. The texts are the forms `chorusd` answered with before these types
//! existed (field names, numbers vs strings, hex forms); changing one is a protocol change.

use chorus_chain::Address;
use chorus_chain::genesis::PeerIdText;
use chorus_chain::primitives::{Amount, ChainId, Hash, Height, Timestamp};
use chorus_chain::tx::{Checkpoint, TxKind};
use chorus_rpc_types::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// README's dev accounts 0 and 1.
const ADDRESS_0: &str = "chorus1h5m7q83ycvygxf3f3ccseupa9jmcvjssspmlv00ftykg3vadq8rsy7pr9x";
const ADDRESS_1: &str = "chorus1a96gzu903frf2pkr2lfjaqchzwhz44hc24pd62xnnt230068y9rslmgs63";
const PEER_ID: &str = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";

fn address(text: &str) -> Address {
    Address::parse(text).expect("README's address")
}

fn hash(byte: u8) -> Hash {
    Hash([byte; 32])
}

fn hex64(byte: u8) -> String {
    hex::encode([byte; 32])
}

/// `value` serializes to `golden`, and `golden` reads back as `value`.
fn pinned<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T, golden: &str) {
    assert_eq!(serde_json::to_string(value).expect("serializes"), golden);
    assert_eq!(&serde_json::from_str::<T>(golden).expect("reads back"), value);
}

fn head() -> (Head, String) {
    let head = Head {
        hash: hash(1),
        height: Height::new(42),
        timestamp: Timestamp::from_millis(1_700_000_000_123),
        state_root: hash(2),
        chain_work: Some(ChainWork([3; 32])),
    };
    let json = format!(
        r#"{{"hash":"{}","height":42,"timestamp":1700000000123,"stateRoot":"{}","chainWork":"{}"}}"#,
        hex64(1),
        hex64(2),
        hex64(3)
    );
    (head, json)
}

#[test]
fn head_and_finalized() {
    let (head, json) = head();
    pinned(&head, &json);
    pinned(&Head { chain_work: None, ..head.clone() }, &json.replace(&format!(r#""{}"}}"#, hex64(3)), "null}"));
    let finalized = Some(BlockRef { height: Height::new(7), hash: hash(9) });
    pinned(&finalized, &format!(r#"{{"height":7,"hash":"{}"}}"#, hex64(9)));
    pinned(&None::<BlockRef>, "null");
}

#[test]
fn block() {
    let block = Block {
        hash: hash(1),
        chain_work: None,
        parent: hash(2),
        height: Height::new(5),
        timestamp: Timestamp::from_millis(1_000),
        txs_root: hash(3),
        state_root: hash(4),
        proposer: address(ADDRESS_0),
        transactions: vec![
            BlockTx {
                hash: hash(5),
                sender: address(ADDRESS_1),
                nonce: 3,
                fee: Amount::new(5),
                kind: TxKind::Transfer { to: address(ADDRESS_0), amount: Amount::new(1_000) },
            },
            BlockTx {
                hash: hash(6),
                sender: address(ADDRESS_1),
                nonce: 4,
                fee: Amount::new(5),
                kind: TxKind::RegisterDelegate,
            },
        ],
        votes: vec![BlockVote {
            voter: address(ADDRESS_0),
            source: Checkpoint { height: Height::new(2), slot: 3, hash: hash(7) },
            target: Checkpoint { height: Height::new(4), slot: 6, hash: hash(8) },
        }],
    };
    let json = format!(
        concat!(
            r#"{{"hash":"{h1}","chainWork":null,"parent":"{h2}","height":5,"timestamp":1000,"txsRoot":"{h3}","#,
            r#""stateRoot":"{h4}","proposer":"{a0}","transactions":["#,
            r#"{{"hash":"{h5}","sender":"{a1}","nonce":3,"fee":"5","kind":{{"transfer":{{"to":"{a0}","amount":"1000"}}}}}},"#,
            r#"{{"hash":"{h6}","sender":"{a1}","nonce":4,"fee":"5","kind":"register_delegate"}}],"#,
            r#""votes":[{{"voter":"{a0}","source":{{"height":2,"slot":3,"hash":"{h7}"}},"#,
            r#""target":{{"height":4,"slot":6,"hash":"{h8}"}}}}]}}"#
        ),
        h1 = hex64(1),
        h2 = hex64(2),
        h3 = hex64(3),
        h4 = hex64(4),
        h5 = hex64(5),
        h6 = hex64(6),
        h7 = hex64(7),
        h8 = hex64(8),
        a0 = ADDRESS_0,
        a1 = ADDRESS_1,
    );
    pinned(&Some(block), &json);
    pinned(&None::<Block>, "null");
}

#[test]
fn account_with_and_without_proof() {
    let account = Account {
        address: address(ADDRESS_0),
        balance: Amount::new(u128::MAX),
        nonce: 2,
        next_nonce: 4,
        stake: Amount::new(600),
        unbonding: vec![Unbonding { amount: Amount::new(400), release_height: Height::new(30) }],
        votes: vec![address(ADDRESS_1)],
        height: Height::new(12),
        state_root: hash(7),
        proof: None,
    };
    let json = format!(
        concat!(
            r#"{{"address":"{a0}","balance":"340282366920938463463374607431768211455","nonce":2,"nextNonce":4,"#,
            r#""stake":"600","unbonding":[{{"amount":"400","releaseHeight":30}}],"votes":["{a1}"],"height":12,"#,
            r#""stateRoot":"{h7}","proof":null}}"#
        ),
        a0 = ADDRESS_0,
        a1 = ADDRESS_1,
        h7 = hex64(7),
    );
    pinned(&account, &json);

    let proof = AccountProof {
        height: Height::new(10),
        state_root: hash(8),
        value: Some(vec![0xab, 0x01]),
        proof_bytes: vec![0, 1, 0xff],
    };
    let proven = Account { proof: Some(proof.clone()), ..account.clone() };
    let proof_json = format!(r#"{{"height":10,"stateRoot":"{}","value":"ab01","proof":"0001ff"}}"#, hex64(8));
    pinned(&proven, &json.replace(r#""proof":null"#, &format!(r#""proof":{proof_json}"#)));
    // Proven absent: the value is null.
    pinned(
        &AccountProof { value: None, ..proof },
        &format!(r#"{{"height":10,"stateRoot":"{}","value":null,"proof":"0001ff"}}"#, hex64(8)),
    );
}

#[test]
fn tx_statuses() {
    let cases = [
        (TxStatus::Unknown, r#""status":"unknown""#.to_owned()),
        (TxStatus::Pending, r#""status":"pending""#.to_owned()),
        (
            TxStatus::Included { height: Height::new(3), block: hash(2), index: 1 },
            format!(r#""status":"included","height":3,"block":"{}","index":1"#, hex64(2)),
        ),
        (
            TxStatus::Final { height: Height::new(3), block: hash(2), index: 0 },
            format!(r#""status":"final","height":3,"block":"{}","index":0"#, hex64(2)),
        ),
    ];
    for (status, fields) in cases {
        pinned(&TxInfo { hash: hash(1), status }, &format!(r#"{{"hash":"{}",{fields}}}"#, hex64(1)));
    }
}

#[test]
fn node_status_peers_and_validators() {
    let (head, head_json) = head();
    let status = NodeStatus {
        engine: "pow".to_owned(),
        chain_id: ChainId::new("chorus-dev").expect("chain id"),
        min_tx_fee: Amount::new(1),
        peer_id: PeerIdText::new(PEER_ID).expect("peer id"),
        n_peers: 2,
        head,
        finalized: None,
        slot: None,
        syncing: true,
        sync: Some(SyncProgress {
            head: Height::new(100),
            target: Height::new(600),
            blocks_per_sec_milli: 2_500,
            eta_secs: None,
        }),
        mempool: MempoolStatus { n_transactions: 3, size_bytes: 512 },
        halted: None,
    };
    let json = format!(
        concat!(
            r#"{{"engine":"pow","chainId":"chorus-dev","minTxFee":"1","peerId":"{peer}","peers":2,"head":{head},"#,
            r#""finalized":null,"slot":null,"syncing":true,"#,
            r#""sync":{{"head":100,"target":600,"blocksPerSecMilli":2500,"etaSecs":null}},"#,
            r#""mempool":{{"transactions":3,"bytes":512}},"halted":null}}"#
        ),
        peer = PEER_ID,
        head = head_json,
    );
    pinned(&status, &json);

    let peers = Peers {
        connected: vec![ConnectedPeer {
            peer_id: PeerIdText::new(PEER_ID).expect("peer id"),
            addresses: vec!["/ip4/127.0.0.1/tcp/30333".to_owned()],
            inbound: false,
            score: -5,
            agent: Some("chorusd/0.1.0".to_owned()),
            connected_secs: 61,
        }],
        banned: vec![BannedPeer {
            peer_id: PeerIdText::new(PEER_ID).expect("peer id"),
            remaining_secs: 3_600,
            reason: "invalid block".to_owned(),
        }],
    };
    let json = format!(
        concat!(
            r#"{{"connected":[{{"peerId":"{peer}","addresses":["/ip4/127.0.0.1/tcp/30333"],"inbound":false,"#,
            r#""score":-5,"agent":"chorusd/0.1.0","connectedSecs":61}}],"#,
            r#""banned":[{{"peerId":"{peer}","remainingSecs":3600,"reason":"invalid block"}}]}}"#
        ),
        peer = PEER_ID,
    );
    pinned(&peers, &json);

    pinned(
        &Validators {
            engine: "pow".to_owned(),
            open: true,
            epoch: None,
            slot: None,
            validators: Vec::new(),
            producer: None,
            schedule: Vec::new(),
            election: None,
            raft: None,
        },
        r#"{"engine":"pow","open":true,"epoch":null,"slot":null,"validators":[],"producer":null,"schedule":[],"election":null,"raft":null}"#,
    );
    let address = Address::parse(ADDRESS_0).expect("address");
    let pos = Validators {
        engine: "pos".to_owned(),
        open: false,
        epoch: Some(3),
        slot: Some(52),
        validators: vec![Validator {
            address,
            peer_id: PeerIdText::new(PEER_ID).expect("peer id"),
            stake: Amount::new(1_000),
            share_bps: 2_500,
            slashed: false,
        }],
        producer: Some(address),
        schedule: vec![ScheduledSlot { slot: 53, proposer: address }],
        election: None,
        raft: None,
    };
    let json = format!(
        concat!(
            r#"{{"engine":"pos","open":false,"epoch":3,"slot":52,"validators":[{{"address":"{address}","#,
            r#""peerId":"{peer}","stake":"1000","shareBps":2500,"slashed":false}}],"producer":"{address}","#,
            r#""schedule":[{{"slot":53,"proposer":"{address}"}}],"election":null,"raft":null}}"#
        ),
        address = ADDRESS_0,
        peer = PEER_ID,
    );
    pinned(&pos, &json);

    let other = Address::parse(ADDRESS_1).expect("address");
    let dpos = Validators {
        engine: "dpos".to_owned(),
        epoch: None,
        election: Some(Election {
            schedule_version: 2,
            schedule_start_slot: 40,
            producers: 21,
            pending: Some(PendingSchedule { proposed_at: Height::new(50), producers: vec![address, other] }),
            ranking: vec![RankedDelegate {
                rank: 1,
                address: other,
                peer_id: PeerIdText::of(&other),
                weight: Amount::new(7),
                elected: true,
                scheduled: false,
                slashed: false,
            }],
        }),
        ..pos
    };
    let json = format!(
        concat!(
            r#"{{"engine":"dpos","open":false,"epoch":null,"slot":52,"validators":[{{"address":"{address}","#,
            r#""peerId":"{peer}","stake":"1000","shareBps":2500,"slashed":false}}],"producer":"{address}","#,
            r#""schedule":[{{"slot":53,"proposer":"{address}"}}],"election":{{"scheduleVersion":2,"#,
            r#""scheduleStartSlot":40,"producers":21,"pending":{{"proposedAt":50,"producers":["{address}","{other}"]}},"#,
            r#""ranking":[{{"rank":1,"address":"{other}","peerId":"{other_peer}","weight":"7","elected":true,"#,
            r#""scheduled":false,"slashed":false}}]}},"raft":null}}"#
        ),
        address = ADDRESS_0,
        other = ADDRESS_1,
        peer = PEER_ID,
        other_peer = PeerIdText::of(&other).as_str(),
    );
    pinned(&dpos, &json);

    let member = |id, address: Address, role| RaftMember {
        id,
        address,
        peer_id: PeerIdText::of(&address),
        role,
        match_index: Some(38 + id),
        recently_active: Some(id == 1),
    };
    let raft = Validators {
        engine: "raft".to_owned(),
        open: false,
        epoch: None,
        slot: None,
        validators: Vec::new(),
        producer: Some(other),
        schedule: Vec::new(),
        election: None,
        raft: Some(RaftMembers {
            term: 7,
            member_id: Some(1),
            leader: Some(2),
            commit_index: 40,
            members: vec![member(1, address, RaftRole::Voter), member(2, other, RaftRole::Learner)],
            pending_change: Some(MembershipChange {
                kind: MembershipChangeKind::Promote,
                id: 2,
                address: other,
                peer_id: PeerIdText::of(&other),
                index: 41,
            }),
        }),
    };
    let json = format!(
        concat!(
            r#"{{"engine":"raft","open":false,"epoch":null,"slot":null,"validators":[],"producer":"{other}","#,
            r#""schedule":[],"election":null,"raft":{{"term":7,"memberId":1,"leader":2,"commitIndex":40,"#,
            r#""members":[{{"id":1,"address":"{address}","peerId":"{peer}","role":"voter","matchIndex":39,"#,
            r#""recentlyActive":true}},{{"id":2,"address":"{other}","peerId":"{other_peer}","role":"learner","#,
            r#""matchIndex":40,"recentlyActive":false}}],"#,
            r#""pendingChange":{{"kind":"promote","id":2,"address":"{other}","peerId":"{other_peer}","index":41}}}}}}"#
        ),
        address = ADDRESS_0,
        other = ADDRESS_1,
        peer = PeerIdText::of(&address).as_str(),
        other_peer = PeerIdText::of(&other).as_str(),
    );
    pinned(&raft, &json);

    pinned(
        &MembershipRefusalData { reason: "not_leader".to_owned(), leader: Some(3) },
        r#"{"reason":"not_leader","leader":3}"#,
    );
}

#[test]
fn parameters_are_positional_arrays() {
    let params = |value: &dyn erased::Params| value.json();
    assert_eq!(params(&GetHead), "[]");
    assert_eq!(params(&GetFinalized), "[]");
    assert_eq!(params(&GetStatus), "[]");
    assert_eq!(params(&GetPeers), "[]");
    assert_eq!(params(&GetValidators), "[]");
    assert_eq!(params(&GetBlock { id: BlockId::Height(Height::new(7)) }), "[7]");
    assert_eq!(params(&GetBlock { id: BlockId::Hash(hash(1)) }), format!(r#"["{}"]"#, hex64(1)));
    let account = GetAccount { address: address(ADDRESS_0), proof_height: None };
    assert_eq!(params(&account), format!(r#"["{ADDRESS_0}"]"#));
    let proven = GetAccount { proof_height: Some(Height::new(9)), ..account };
    assert_eq!(params(&proven), format!(r#"["{ADDRESS_0}",9]"#));
    assert_eq!(params(&GetTx { hash: hash(2) }), format!(r#"["{}"]"#, hex64(2)));
    let peer_id = PeerIdText::new(PEER_ID).expect("peer id");
    assert_eq!(params(&BanPeer { peer_id: peer_id.clone(), secs: None }), format!(r#"["{PEER_ID}"]"#));
    assert_eq!(params(&BanPeer { peer_id: peer_id.clone(), secs: Some(60) }), format!(r#"["{PEER_ID}",60]"#));
    assert_eq!(params(&UnbanPeer { peer_id }), format!(r#"["{PEER_ID}"]"#));
    let learner = RaftAddLearner { address: address(ADDRESS_1), id: None };
    assert_eq!(params(&learner), format!(r#"["{ADDRESS_1}"]"#));
    assert_eq!(params(&RaftAddLearner { id: Some(9), ..learner }), format!(r#"["{ADDRESS_1}",9]"#));
    assert_eq!(params(&RaftPromote { id: 4 }), "[4]");
    assert_eq!(params(&RaftRemove { id: 5 }), "[5]");
}

#[test]
fn a_submitted_transaction_is_the_hex_of_its_canonical_encoding() {
    let key = chorus_chain::SecretKey::from_seed([7; 32]);
    let tx = chorus_chain::Transaction {
        chain_id: ChainId::new("chorus-dev").expect("chain id"),
        sender: key.address(),
        nonce: 0,
        fee: Amount::new(5),
        kind: TxKind::Stake { amount: Amount::new(10) },
    }
    .sign(&key);
    let json = serde_json::to_string(&SubmitTx { tx: tx.clone() }).expect("serializes");
    assert_eq!(json, format!(r#"["{}"]"#, hex::encode(chorus_chain::codec::encode(&tx))));
}

#[test]
fn a_missing_field_is_an_error_even_a_nullable_one() {
    let (_, json) = head();
    let mut value: serde_json::Value = serde_json::from_str(&json).expect("json");
    value.as_object_mut().expect("object").remove("chainWork");
    let error = serde_json::from_value::<Head>(value).expect_err("chainWork is required");
    assert!(error.to_string().contains("missing field `chainWork`"), "{error}");

    // A renamed balance is not a balance of 0.
    let account = r#"{"address":"ADDRESS","balanse":"5","nonce":0,"nextNonce":0,"stake":"0","unbonding":[],"votes":[],"height":1,"stateRoot":"ROOT","proof":null}"#
        .replace("ADDRESS", ADDRESS_0)
        .replace("ROOT", &hex64(1));
    let error = serde_json::from_str::<Account>(&account).expect_err("no balance");
    assert!(error.to_string().contains("missing field `balance`"), "{error}");
}

#[test]
fn malformed_values_are_errors_and_unknown_fields_are_ignored() {
    let (head, json) = head();
    for (from, to) in [
        (r#""height":42"#, r#""height":"42""#),
        (r#""height":42"#, r#""height":-1"#),
        (format!(r#""chainWork":"{}""#, hex64(3)).as_str(), r#""chainWork":"0303""#),
        (format!(r#""hash":"{}""#, hex64(1)).as_str(), r#""hash":"zz""#),
    ] {
        let bad = json.replace(from, to);
        assert_ne!(bad, json, "{from} is in the golden text");
        assert!(serde_json::from_str::<Head>(&bad).is_err(), "{bad} accepted");
    }
    let newer = json.replace('}', r#","difficulty":"9"}"#);
    assert_eq!(serde_json::from_str::<Head>(&newer).expect("a newer node's head"), head);
    assert!(serde_json::from_str::<TxInfo>(&format!(r#"{{"hash":"{}","status":"lost"}}"#, hex64(1))).is_err());
    let included_without_block = format!(r#"{{"hash":"{}","status":"included","height":3}}"#, hex64(1));
    assert!(serde_json::from_str::<TxInfo>(&included_without_block).is_err());
}

#[test]
fn block_ids_as_users_type_them() {
    assert_eq!(BlockId::parse("12"), Ok(BlockId::Height(Height::new(12))));
    assert_eq!(BlockId::parse(&hex64(0x11)), Ok(BlockId::Hash(hash(0x11))));
    assert_eq!(BlockId::parse(&format!("0x{}", hex64(0xab))), Ok(BlockId::Hash(hash(0xab))));
    assert!(BlockId::parse("beef").is_err());
    assert!(BlockId::parse("-1").is_err());
}

/// Serializes any parameter type, so one helper checks them all.
mod erased {
    pub trait Params {
        fn json(&self) -> String;
    }

    impl<T: chorus_rpc_types::Request> Params for T {
        fn json(&self) -> String {
            serde_json::to_string(self).expect("serializes")
        }
    }
}

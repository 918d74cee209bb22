//! The RPC server answers reads of the chain beside the node's queue: here no core runs at
//! all (its input queue is never read, as when a long import holds it), and every read still
//! gets the store's and the pool's answer while nothing reaches the queue. The chain and the
//! pool are a PoW driver's on a real store, fed by hand.

use chorus_chain::codec;
use chorus_chain::header::Seal;
use chorus_chain::primitives::{Amount, Hash, Timestamp};
use chorus_chain::state::memory::MemoryState;
use chorus_chain::state::{self, Account, BlockTemplate, StateKey, tree};
use chorus_chain::testing;
use chorus_chain::tx::TxKind;
use chorus_consensus::pow::mining::{Grinder, with_nonce};
use chorus_consensus::{EngineOptions, PeerId, new_engine};
use chorus_node::rpc::access::{Access, AdminToken, RateLimit};
use chorus_node::rpc::reads::Reads;
use chorus_node_core::{Driver, NetMessage, Outbox, Verdict};
use chorus_rpc_types as wire;
use chorus_store::Store;
use jsonrpsee::core::client::ClientT;
use jsonrpsee::http_client::HttpClientBuilder;
use jsonrpsee::rpc_params;
use tokio::sync::{broadcast, mpsc};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_reads_are_answered_while_the_node_queue_is_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let genesis = testing::genesis(4, 1_000_000);
    let (mut mem, genesis_block) = MemoryState::from_genesis(&genesis).unwrap();
    let store = Store::open(&dir.path().join("db"), &genesis).unwrap();
    let mut driver = Driver::new(store, new_engine(&genesis, EngineOptions::default()).unwrap());
    let mut io = Outbox::default();
    let (sender, to) = (testing::key(0), testing::key(1).address());
    let transfer = |nonce| testing::signed(&genesis, &sender, nonce, TxKind::Transfer { to, amount: Amount::new(5) });
    let mut parent = genesis_block.header.clone();
    let mut blocks = Vec::new();
    for nonce in 0..2 {
        let template = BlockTemplate {
            txs: vec![transfer(nonce)],
            votes: vec![],
            proposer: testing::key(2).address(),
            timestamp: Timestamp::from_millis(parent.timestamp.as_millis() + 1_000),
        };
        let mut block = state::build_block(&mem, &genesis, &parent, template).unwrap();
        // Blocks a second apart keep the genesis target (the easiest: any hash meets it).
        block.header.seal = Seal::Pow { target: Hash([0xff; 32]), nonce: 0 };
        let (nonce, _) = Grinder::new(&block.header).unwrap().search(0, u64::MAX, &|| false);
        block.header = with_nonce(&block.header, nonce.unwrap());
        mem.commit_outcome(&state::apply_block(&mem, &genesis, &parent, &block).unwrap());
        let now = block.header.timestamp;
        let message = NetMessage::Block(std::sync::Arc::new(block.clone()));
        assert_eq!(driver.on_message(now, &PeerId::new("peer"), message, &mut io).unwrap(), Verdict::Accept);
        parent = block.header.clone();
        blocks.push(block);
    }
    // Nonce 2 waits in the pool.
    let pending = transfer(2);
    driver.submit_tx(parent.timestamp, pending.clone(), &mut io).unwrap().unwrap();
    let work = driver.chain_work(&blocks[1].hash()).unwrap();

    let mut registry = prometheus_client::registry::Registry::default();
    let mut p2p = chorus_p2p::Config::new(chorus_p2p::NodeKey::generate(), genesis.chain_id.to_string());
    p2p.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    let (net, _events) = chorus_p2p::start(p2p, &mut registry).await.unwrap();
    // The queue the core would read: held, never served.
    let (inputs, mut queue) = mpsc::channel(16);
    let access = Access { hosts: vec![], origins: vec![], token: AdminToken::generate() };
    let (addr, server) = chorus_node::rpc::start(
        "127.0.0.1:0".parse().unwrap(),
        access,
        RateLimit::default(),
        genesis.chain_id.clone(),
        Reads::new(driver.store().reader(), driver.mempool().index(), genesis.clone()),
        inputs,
        net.clone(),
        broadcast::channel(4).0,
        broadcast::channel(4).0,
        &mut registry,
    )
    .await
    .unwrap();
    let client = HttpClientBuilder::default().build(format!("http://{addr}")).unwrap();

    let head: wire::Head = client.request("chain_getHead", rpc_params![]).await.unwrap();
    assert_eq!((head.hash, head.height, head.state_root), (blocks[1].hash(), parent.height, parent.state_root));
    assert!(work.is_some());
    assert_eq!(head.chain_work.map(|work| work.0), work, "the engine's figure, read from its records");
    let block: Option<wire::Block> = client.request("chain_getBlock", rpc_params![1]).await.unwrap();
    let block = block.expect("block 1 is on the chain");
    assert_eq!((block.hash, block.transactions.len()), (blocks[0].hash(), 1));
    let by_hash: Option<wire::Block> =
        client.request("chain_getBlock", rpc_params![blocks[1].hash().to_string()]).await.unwrap();
    assert_eq!(by_hash.map(|block| block.height), Some(blocks[1].height()));
    let beyond: Option<wire::Block> = client.request("chain_getBlock", rpc_params![3]).await.unwrap();
    assert!(beyond.is_none());
    let finalized: Option<wire::BlockRef> = client.request("chain_getFinalized", rpc_params![]).await.unwrap();
    assert!(finalized.is_none(), "PoW finalizes nothing");

    let account: wire::Account =
        client.request("state_getAccount", rpc_params![sender.address().to_string(), 1]).await.unwrap();
    assert_eq!((account.nonce, account.next_nonce), (2, 3), "the pending transaction counts");
    let proof = account.proof.expect("asked for");
    let at_one: Account = codec::decode(proof.value.as_deref().unwrap()).unwrap();
    assert_eq!(at_one.nonce, 1, "the proof is of height 1");
    let proof = tree::StateProof::from_parts(proof.value, &proof.proof_bytes).unwrap();
    tree::verify_proof(blocks[0].header.state_root, &StateKey::Account(sender.address()), &proof).unwrap();
    let error = client
        .request::<wire::Account, _>("state_getAccount", rpc_params![sender.address().to_string(), 9])
        .await
        .unwrap_err();
    assert!(error.to_string().contains(&wire::ErrorCode::ProofUnavailable.code().to_string()), "{error}");

    let tx = |hash: Hash| {
        let client = &client;
        async move { client.request::<wire::TxInfo, _>("tx_get", rpc_params![hash.to_string()]).await.unwrap().status }
    };
    for (nonce, block) in blocks.iter().enumerate() {
        let status = tx(transfer(nonce as u64).hash()).await;
        assert!(
            matches!(status, wire::TxStatus::Included { block: at, index: 0, .. } if at == block.hash()),
            "{status:?}"
        );
    }
    assert!(matches!(tx(pending.hash()).await, wire::TxStatus::Pending));
    assert!(matches!(tx(transfer(3).hash()).await, wire::TxStatus::Unknown));

    assert!(queue.try_recv().is_err(), "no read went through the node's queue");
    // Once the store is gone (the node stopping), reads say the node is unavailable.
    drop(driver);
    let error = client.request::<wire::Head, _>("chain_getHead", rpc_params![]).await.unwrap_err();
    assert!(error.to_string().contains(&wire::ErrorCode::NodeUnavailable.code().to_string()), "{error}");
    let _ = server.stop();
    net.shutdown().await;
}

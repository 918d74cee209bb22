//! `tx_submit` throughput of a real `chorusd` from local clients, over the raw single-verify
//! rate measured in the same run; the node's RSS idle and after 100,000 submissions.
//!
//! `cargo bench -p chorus-node --bench rpc`
#![allow(
    clippy::disallowed_types,
    clippy::float_arithmetic,
    reason = "a benchmark measures and divides wall-clock time"
)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chorus_chain::primitives::Amount;
use chorus_chain::tx::{SignedTransaction, Transaction, TxKind};
use chorus_chain::{codec, limits, testing};
use jsonrpsee::core::client::ClientT;
use jsonrpsee::rpc_params;

const SUBMISSIONS: usize = 100_000;
const CONNECTIONS: usize = 32;
const SENDERS: u32 = 1_600;

fn main() {
    let genesis = testing::genesis(SENDERS, 1 << 60);
    let to = testing::key(SENDERS + 1).address();
    let per_sender = limits::MEMPOOL_TXS_PER_SENDER_MAX as usize;
    let txs: Vec<SignedTransaction> = (0..SUBMISSIONS)
        .map(|index| {
            let sender = testing::key((index / per_sender) as u32 % SENDERS);
            Transaction {
                chain_id: genesis.chain_id.clone(),
                sender: sender.address(),
                nonce: (index % per_sender) as u64,
                fee: Amount::new(1),
                kind: TxKind::Transfer { to, amount: Amount::new(1) },
            }
            .sign(&sender)
        })
        .collect();

    // The denominator: one core checking transactions as the mempool does.
    let start = Instant::now();
    for tx in &txs[..20_000] {
        tx.verify(&genesis.chain_id).expect("valid");
    }
    let verify_rate = 20_000.0 / start.elapsed().as_secs_f64();

    let dir = tempfile::tempdir().expect("tempdir");
    let genesis_path = dir.path().join("genesis.json");
    std::fs::write(&genesis_path, genesis.to_json_pretty()).expect("genesis");
    let mut child = Command::new(env!("CARGO_BIN_EXE_chorusd"))
        .args([
            "run",
            "--genesis",
            genesis_path.to_str().expect("utf-8"),
            "--data-dir",
            dir.path().join("data").to_str().expect("utf-8"),
        ])
        .args([
            "--rpc",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
            "--explorer",
            "off",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ])
        // Every client here is 127.0.0.1, one address: lift its rate limit so the figure is the
        // node's, not the limiter's.
        .args(["--rpc-rate-limit", "1000000000"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chorusd");
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let rpc = loop {
        let line = lines.next().expect("chorusd exited").expect("line");
        if let Some(rest) = line.strip_prefix("RPC listening on http://") {
            break rest.split_whitespace().next().expect("address").to_owned();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    std::thread::sleep(Duration::from_secs(2));
    let idle_kib = chorus_testnet::process::resident_kib(pid);

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let encoded: Vec<String> = txs.iter().map(|tx| hex::encode(codec::encode(tx))).collect();
    let (elapsed, accepted) = runtime.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = encoded
            .chunks(SUBMISSIONS.div_ceil(CONNECTIONS))
            .map(|chunk| {
                let chunk = chunk.to_vec();
                let url = format!("http://{rpc}");
                tokio::spawn(async move {
                    let client = jsonrpsee::http_client::HttpClientBuilder::default().build(url).expect("client");
                    let mut accepted = 0usize;
                    for tx in chunk {
                        if client.request::<String, _>("tx_submit", rpc_params![tx]).await.is_ok() {
                            accepted += 1;
                        }
                    }
                    accepted
                })
            })
            .collect();
        let mut accepted = 0;
        for task in tasks {
            accepted += task.await.expect("task");
        }
        (start.elapsed(), accepted)
    });
    std::thread::sleep(Duration::from_secs(1));
    let loaded_kib = chorus_testnet::process::resident_kib(pid);
    let _ = child.kill();
    let _ = child.wait();

    let rate = SUBMISSIONS as f64 / elapsed.as_secs_f64();
    println!(
        "tx_submit: {rate:.0} calls/s ({SUBMISSIONS} calls over {CONNECTIONS} connections, {accepted} admitted), \
         raw verify: {verify_rate:.0}/s (1 core), ratio {:.2}",
        rate / verify_rate
    );
    println!(
        "RSS: idle {:.1} MiB, after {SUBMISSIONS} submissions {:.1} MiB (+{:.1} MiB; mempool limits {} txs, {} MiB)",
        idle_kib as f64 / 1024.0,
        loaded_kib as f64 / 1024.0,
        loaded_kib.saturating_sub(idle_kib) as f64 / 1024.0,
        limits::MEMPOOL_TXS_MAX,
        limits::MEMPOOL_BYTES_MAX / (1024 * 1024)
    );
}

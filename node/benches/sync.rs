//! Sync: a fresh `chorusd` range-syncing a PoW chain from two peers (real processes on
//! loopback), against the same machine's local import of the same blocks in one pipelined
//! call (`Store::import_blocks`) in the same run. Prints both rates in blocks per second and
//! their ratio (the target: at least 0.8).
//!
//! `cargo bench --workspace --bench sync` (`CHORUS_SYNC_BENCH_BLOCKS`, default 2,000 blocks;
//! `CHORUS_SYNC_BENCH_TXS`, default 1,000 signed transfers a block). The peers' store is the
//! one the local import wrote, copied for the second peer.
#![allow(
    clippy::disallowed_types,
    clippy::float_arithmetic,
    reason = "a benchmark measures and divides wall-clock time"
)]

use std::path::Path;
use std::time::{Duration, Instant};

use chorus_chain::header::Seal;
use chorus_chain::primitives::Hash;
use chorus_chain::testing;
use chorus_consensus::pow::mining::{Grinder, with_nonce};
use chorus_store::Store;
use chorus_testnet::process::loopback_ports;
use chorus_testnet::{Chorusd, Launch};

const N_ACCOUNTS: u32 = 10_000;
/// The syncing node has this long to reach the peers' head.
const SYNC_WAIT: Duration = Duration::from_secs(1_800);

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

fn start(args: &[&str], dir: &Path, name: &str) -> Chorusd {
    let launch = Launch::new(env!("CARGO_BIN_EXE_chorusd"), dir.join(format!("{name}.log")))
        .args(args.iter().copied())
        .args(loopback_ports());
    Chorusd::start(&launch).unwrap_or_else(|error| panic!("{name}: {error}"))
}

fn main() {
    let n_blocks = env_or("CHORUS_SYNC_BENCH_BLOCKS", 2_000);
    let n_txs = env_or("CHORUS_SYNC_BENCH_TXS", 1_000);
    let genesis = testing::genesis(N_ACCOUNTS, 1_000_000_000);
    eprintln!("sync: building {n_blocks} blocks of {n_txs} transfers among {N_ACCOUNTS} accounts...");
    let blocks = testing::transfer_blocks(&genesis, N_ACCOUNTS, n_blocks, n_txs, |block| {
        // Blocks a second apart keep the genesis target (the easiest: any hash meets it).
        block.header.seal = Seal::Pow { target: Hash([0xff; 32]), nonce: 0 };
        let (nonce, _) = Grinder::new(&block.header).expect("a PoW header").search(0, u64::MAX, &|| false);
        block.header = with_nonce(&block.header, nonce.expect("the genesis target takes any hash"));
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let (first, second) = (dir.path().join("peer1"), dir.path().join("peer2"));
    let mut store = Store::open(&first.join("db"), &genesis).expect("open");
    let started = Instant::now();
    store.import_blocks(&blocks).expect("import");
    let local = started.elapsed();
    drop(store);
    let copied = std::process::Command::new("cp").arg("-a").arg(&first).arg(&second).status().expect("cp runs");
    assert!(copied.success(), "the peer's store is copied");
    let genesis_file = dir.path().join("genesis.json");
    std::fs::write(&genesis_file, genesis.to_json_pretty()).expect("write the genesis");
    let genesis_arg = genesis_file.to_str().expect("utf-8");

    let peers: Vec<Chorusd> = [&first, &second]
        .iter()
        .enumerate()
        .map(|(index, data)| {
            let args = ["run", "--genesis", genesis_arg, "--data-dir", data.to_str().expect("utf-8")];
            start(&args, dir.path(), &format!("peer{}", index + 1))
        })
        .collect();
    let fresh = dir.path().join("fresh");
    let mut args = vec!["run", "--genesis", genesis_arg, "--data-dir", fresh.to_str().expect("utf-8")];
    for peer in &peers {
        args.extend(["--bootnode", peer.p2p()]);
    }
    let started = Instant::now();
    let node = start(&args, dir.path(), "fresh");
    let target = n_blocks as u64;
    loop {
        let height = node.rpc().head().map(|head| head.height.get()).unwrap_or(0);
        if height >= target {
            break;
        }
        assert!(started.elapsed() < SYNC_WAIT, "synced only to {height} of {target}; log:\n{}", node.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let synced = started.elapsed();

    let local_rate = n_blocks as f64 / local.as_secs_f64();
    let sync_rate = n_blocks as f64 / synced.as_secs_f64();
    println!(
        "sync: {n_blocks} blocks of {n_txs} transfers from 2 peers in {:.1} s: {sync_rate:.1} blocks/s \
         ({:.0} tx/s); local import_blocks {:.1} s: {local_rate:.1} blocks/s; ratio {:.2} (target >= 0.8)",
        synced.as_secs_f64(),
        sync_rate * n_txs as f64,
        local.as_secs_f64(),
        sync_rate / local_rate,
    );
}

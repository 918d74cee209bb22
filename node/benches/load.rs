//! End to end: a 4-validator PoS testnet (real `chorusd` processes on loopback, 1 s slots)
//! under `chorus load` for a minute, sending through all four nodes. Prints the final
//! transfers per second and the ratio: final tx/s x 4 (every validator checks every
//! transfer once) over the 2-core batch verification rate measured in the same run; the
//! latency from submit to final in slots; and a validator's resident memory idle and after the
//! load.
//!
//! `cargo bench --workspace --bench load` (`CHORUS_LOAD_BENCH_SECS`, default 60, how long the
//! load sends; `CHORUS_LOAD_BENCH_RATE`, default 8,000, transfers per second asked of it, more
//! than the testnet takes). The
//! wallet binary must sit beside this package's `chorusd`: `cargo build --profile bench --locked
//! -p chorus-cli` puts it there (the wallet links no RocksDB, so `-p` rebuilds none).
#![allow(
    clippy::disallowed_types,
    clippy::float_arithmetic,
    reason = "a benchmark measures and divides wall-clock time"
)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use chorus_chain::crypto::{self, SignedItem};
use chorus_chain::primitives::{Amount, ChainId};
use chorus_chain::tx::{Transaction, TxKind};
use chorus_chain::{SignedTransaction, testing};
use chorus_testnet::{Binaries, Testnet};

const VALIDATORS: usize = 4;
const SLOT_MS: u64 = 1_000;
/// The batch rate figure runs this long at least.
const RATE_RUN: Duration = Duration::from_secs(3);
/// Signatures per batch when measuring the 2-core rate (one chunk per core).
const BATCH: usize = 1_024;

fn main() {
    let batch_rate = batch_verify_rate();
    let secs = common::run_secs("LOAD", 60).as_secs();
    let rate: u32 = std::env::var("CHORUS_LOAD_BENCH_RATE").ok().and_then(|rate| rate.parse().ok()).unwrap_or(8_000);
    let dir = Path::new(env!("CARGO_BIN_EXE_chorusd")).parent().expect("a directory");
    assert!(
        dir.join("chorus").is_file(),
        "the wallet is not beside chorusd in {}: run `cargo build --profile bench --locked -p chorus-cli` first",
        dir.display()
    );
    let testnet = Testnet::builder("pos", VALIDATORS)
        .block_time_ms(SLOT_MS)
        .binaries(Binaries::in_dir(dir))
        .start()
        .expect("the testnet starts");
    testnet.finalized_at_least(3);
    let idle_kib = testnet.node(1).resident_kib();

    let others: Vec<String> = (2..=VALIDATORS).map(|k| testnet.rpc(k).url()).collect();
    let (rate_text, secs_text) = (rate.to_string(), secs.to_string());
    let mut args = vec!["load", "--from", "funded1", "--rate", &rate_text, "--duration", &secs_text];
    // 48 accounts per node, at 8,000/s about 42 transfers per second each: under the 64 a node
    // holds pending per sender while transfers are final within a few slots.
    args.extend(["--accounts", "192", "--settle", "120"]);
    for url in &others {
        args.extend(["--node", url.as_str()]);
    }
    let started = Instant::now();
    let report = testnet.chorus(1, &args).unwrap_or_else(|error| panic!("the load: {error:?}"));
    let loaded_kib = testnet.node(1).resident_kib();
    let count = |field: &str| report[field].as_u64().unwrap_or_else(|| panic!("{field} in {report}"));
    let final_per_sec = report["finalPerSec"].as_f64().expect("finalPerSec");
    let in_slots = |field: &str, p: &str| report[field][p].as_u64().unwrap_or(0) as f64 / SLOT_MS as f64;
    println!(
        "load: asked {rate}/s for {secs} s through {VALIDATORS} validators ({:.0} s in all): sent {}/s, \
         {} accepted, {} refused, {} included, {} final",
        started.elapsed().as_secs_f64(),
        report["sentPerSec"],
        count("accepted"),
        count("refused"),
        count("included"),
        count("final"),
    );
    if count("refused") > 0 {
        println!("load: refusals {}", report["refusals"]);
    }
    println!(
        "end to end: {final_per_sec:.0} final tx/s; ratio final x {VALIDATORS} / 2-core batch verify \
         ({batch_rate:.0}/s) = {:.3} (target >= 0.5); submit to final p50 {:.2} slots, p99 {:.2} slots \
         (slot {SLOT_MS} ms); to inclusion p50 {:.2} slots",
        final_per_sec * VALIDATORS as f64 / batch_rate,
        in_slots("finalLatencyMs", "p50"),
        in_slots("finalLatencyMs", "p99"),
        in_slots("inclusionLatencyMs", "p50"),
    );
    println!(
        "memory: validator 1 resident {} MiB idle (target < 64), {} MiB after the load",
        idle_kib / 1024,
        loaded_kib / 1024
    );
}

/// Transfers checked per second by `verify_batch_parallel` on every core, in batches of
/// [`BATCH`]: the denominator of the end-to-end ratio.
fn batch_verify_rate() -> f64 {
    let genesis = testing::genesis(1, 1);
    let chain_id: ChainId = genesis.chain_id.clone();
    let key = testing::key(0);
    let txs: Vec<SignedTransaction> = (0..BATCH as u64)
        .map(|nonce| {
            let kind = TxKind::Transfer { to: testing::key(1).address(), amount: Amount::new(1) };
            Transaction { chain_id: chain_id.clone(), sender: key.address(), nonce, fee: Amount::new(1), kind }
                .sign(&key)
        })
        .collect();
    let digests: Vec<_> = txs.iter().map(|tx| tx.tx.signing_hash()).collect();
    let items: Vec<SignedItem<'_>> = txs
        .iter()
        .zip(&digests)
        .map(|(tx, digest)| SignedItem { signer: &tx.tx.sender, message: digest.as_bytes(), signature: &tx.signature })
        .collect();
    crypto::verify_batch_parallel(&items).expect("valid");
    let start = Instant::now();
    let mut rounds = 0u32;
    while rounds == 0 || start.elapsed() < RATE_RUN {
        crypto::verify_batch_parallel(&items).expect("valid");
        rounds += 1;
    }
    BATCH as f64 * f64::from(rounds) / start.elapsed().as_secs_f64()
}

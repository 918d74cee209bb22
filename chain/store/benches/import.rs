//! Block import end to end: decode, verify signatures, execute, state root, RocksDB commit.
//!
//! Imports blocks of 5,000 signed transfers between 10,000 funded accounts into a fresh store
//! on disk, one block at a time and pipelined (`Store::import_blocks`, the sync path), then
//! measures raw single-signature ed25519 verification on one core in the same run and prints
//! the pipelined rate over it. Not a timed test: it prints figures.
//!
//! `cargo bench --workspace --bench import` (set `CHORUS_BENCH_BLOCKS` to change the number of
//! blocks, 8 by default, and `CHORUS_BENCH_TXS` the transfers in each, 5,000 by default).

#![allow(clippy::float_arithmetic, clippy::disallowed_types, reason = "a benchmark measures wall-clock time")]

use std::time::{Duration, Instant};

use chorus_chain::block::{self, Block};
use chorus_chain::codec;
use chorus_chain::state::{self, tree};
use chorus_chain::testing;
use chorus_store::Store;
use ed25519_dalek::{Signer, Verifier};

const N_ACCOUNTS: u32 = 10_000;

fn per_second(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

fn main() {
    let env_or = |name: &str, default: usize| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let n_blocks = env_or("CHORUS_BENCH_BLOCKS", 8);
    let txs_per_block = env_or("CHORUS_BENCH_TXS", 5_000);
    let genesis = testing::genesis(N_ACCOUNTS, 1_000_000_000);
    eprintln!("import: building {n_blocks} blocks of {txs_per_block} transfers among {N_ACCOUNTS} accounts...");
    let encoded: Vec<Vec<u8>> = testing::transfer_blocks(&genesis, N_ACCOUNTS, n_blocks, txs_per_block, |_| {})
        .iter()
        .map(codec::encode)
        .collect();
    let n_txs = n_blocks * txs_per_block;
    let block_bytes = encoded.iter().map(Vec::len).sum::<usize>() / n_blocks;

    // End to end, as a node imports: bytes in, committed block out.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(dir.path(), &genesis).expect("open");
    let started = Instant::now();
    for bytes in &encoded {
        let block: Block = codec::decode(bytes).expect("decode");
        store.import_block(&block).expect("import");
    }
    let import_elapsed = started.elapsed();

    // As a node imports blocks whose transactions it admitted earlier (from gossip or a
    // client), their signatures checked then: the block's seal and state work remain.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(dir.path(), &genesis).expect("open");
    let admitted: std::collections::BTreeSet<chorus_chain::Hash> = encoded
        .iter()
        .flat_map(|bytes| {
            codec::decode::<Block>(bytes).expect("decode").body.txs.iter().map(|tx| tx.hash()).collect::<Vec<_>>()
        })
        .collect();
    let started = Instant::now();
    for bytes in &encoded {
        let block: Block = codec::decode(bytes).expect("decode");
        store.import_block_with(&block, None, &|hash| admitted.contains(hash)).expect("import");
    }
    let admitted_elapsed = started.elapsed();

    // The sync path: each next block's signatures are checked while this one executes and
    // commits.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(dir.path(), &genesis).expect("open");
    let started = Instant::now();
    let blocks: Vec<Block> = encoded.iter().map(|bytes| codec::decode(bytes).expect("decode")).collect();
    store.import_blocks(&blocks).expect("import");
    let pipelined_elapsed = started.elapsed();
    let import_rate = per_second(n_txs, pipelined_elapsed);

    // The same work phase by phase on a second store, each phase alone (no overlap).
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(dir.path(), &genesis).expect("open");
    let mut phases = [Duration::ZERO; 5];
    for bytes in &encoded {
        let mut clock = Instant::now();
        let mut lap = |phase: usize, clock: &mut Instant| {
            phases[phase] += clock.elapsed();
            *clock = Instant::now();
        };
        let block: Block = codec::decode(bytes).expect("decode");
        lap(0, &mut clock);
        block::check_block_stateless(&block, &genesis.chain_id).expect("verify");
        lap(1, &mut clock);
        let changes = state::execute(&store.view(), &genesis, &store.head().clone(), &block).expect("execute");
        lap(2, &mut clock);
        let (_, _) = tree::apply_changes(&store.view(), &changes, block.height()).expect("tree");
        lap(3, &mut clock);
        store.import_block(&block).expect("import");
        lap(4, &mut clock);
    }

    // Raw single-signature verification on one core: ed25519-dalek's verify, no batching.
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let verifying = key.verifying_key();
    let messages: Vec<[u8; 32]> =
        (0..256u32).map(|i| *chorus_chain::Hash::digest(&i.to_le_bytes()).as_bytes()).collect();
    let signatures: Vec<_> = messages.iter().map(|m| key.sign(m)).collect();
    let n_verify = 20_000;
    let started = Instant::now();
    for i in 0..n_verify {
        verifying.verify(&messages[i % 256], &signatures[i % 256]).expect("valid");
    }
    let raw_rate = per_second(n_verify, started.elapsed());

    let ms = |d: Duration| d.as_secs_f64() * 1e3 / n_blocks as f64;
    println!(
        "import: {n_blocks} blocks x {txs_per_block} transfers, {block_bytes} bytes per block, {N_ACCOUNTS} accounts"
    );
    println!(
        "import: per block end to end {:.1} ms; phases alone: decode {:.1} ms, verify {:.1} ms, execute {:.1} ms, tree {:.1} ms, full import incl. commit {:.1} ms",
        ms(import_elapsed),
        ms(phases[0]),
        ms(phases[1]),
        ms(phases[2]),
        ms(phases[3]),
        ms(phases[4]),
    );
    println!(
        "import: one block at a time {:.0} tx/s; pipelined (import_blocks, the sync path) {:.0} tx/s",
        per_second(n_txs, import_elapsed),
        import_rate
    );
    println!(
        "import: transactions admitted before (signatures checked then, not again) {:.0} tx/s, {:.1} ms per block",
        per_second(n_txs, admitted_elapsed),
        ms(admitted_elapsed),
    );
    println!(
        "import: {:.0} tx/s, raw verify: {:.0} sig/s (1 core), ratio {:.2}",
        import_rate,
        raw_rate,
        import_rate / raw_rate
    );
}

//! Mining speed: the nonce search's hash rate per thread over raw SHA-256 of a header-sized
//! input, and how long a better head takes to stop every miner thread.
//!
//! `cargo bench -p chorus-node --bench mining`
#![allow(
    clippy::disallowed_types,
    clippy::float_arithmetic,
    reason = "a benchmark measures and divides wall-clock time"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chorus_chain::block::Block;
use chorus_chain::codec;
use chorus_chain::header::{Header, Seal};
use chorus_chain::primitives::Hash;
use chorus_consensus::pow::mining::Grinder;
use chorus_node::miner::ThreadMiner;
use sha2::{Digest, Sha256};

const HASHES: u64 = 2_000_000;
const STOP_TRIALS: usize = 100;

fn header() -> Header {
    let genesis = chorus_chain::state::genesis_block(&chorus_chain::testing::genesis(1, 1), Hash::ZERO);
    Header { seal: Seal::Pow { target: Hash::ZERO, nonce: 0 }, ..genesis.header }
}

fn main() {
    let header = header();
    let mut encoded = codec::encode(&header);
    let header_bytes = encoded.len();

    let start = Instant::now();
    for nonce in 0..HASHES {
        encoded[header_bytes - 8..].copy_from_slice(&nonce.to_le_bytes());
        black_box(Sha256::digest(black_box(&encoded)));
    }
    let raw_per_second = HASHES as f64 / start.elapsed().as_secs_f64();

    let mut grinder = Grinder::new(&header).expect("a PoW header");
    let start = Instant::now();
    let (found, tried) = grinder.search(0, HASHES, &|| false);
    assert!(found.is_none() && tried == HASHES, "target zero is never met");
    let mining_per_second = HASHES as f64 / start.elapsed().as_secs_f64();

    let (sender, _receiver) = mpsc::sync_channel(1);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get() as u32);
    let mut miner = ThreadMiner::new(threads, sender, 0);
    let template = Arc::new(Block { header, body: Default::default() });
    let mut stops: Vec<Duration> = (0..STOP_TRIALS)
        .map(|_| {
            miner.start(Arc::clone(&template));
            std::thread::sleep(Duration::from_millis(5));
            let start = Instant::now();
            miner.stop();
            start.elapsed()
        })
        .collect();
    stops.sort();

    println!("header: {header_bytes} bytes");
    println!("raw sha256: {raw_per_second:.0} hashes/s (1 thread)");
    println!("mining: {mining_per_second:.0} hashes/s per thread, ratio {:.2}", mining_per_second / raw_per_second);
    println!(
        "stop {threads} miner threads: median {:?}, p99 {:?} over {STOP_TRIALS} trials",
        stops[STOP_TRIALS / 2],
        stops[STOP_TRIALS * 99 / 100]
    );
}

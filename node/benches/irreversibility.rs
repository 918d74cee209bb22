//! DPoS irreversibility and production timing on 4 producers (real `chorusd` processes on
//! loopback, 1 s slots, every node a genesis delegate).
//!
//! - Lag: at every head notice on every node, the blocks between that head and the node's
//!   last irreversible block. The rule's floor is 2: a block's producers' votes ride in the next
//!   block, and the votes that make it irreversible (linking it to its justified child) in the
//!   one after. The bound is the count of producers needed (2n/3 + 1 = 3) plus one.
//! - Jitter: for every block, the time from its slot's start to its arrival as the head of each
//!   node other than its producer (the producer's own import is not a network figure).
//!
//! `cargo bench --workspace --bench irreversibility` (`CHORUS_IRREVERSIBILITY_BENCH_SECS`,
//! default 60, sets how long the testnet runs).
#![allow(
    clippy::disallowed_types,
    clippy::float_arithmetic,
    reason = "a benchmark measures and divides wall-clock time"
)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use chorus_chain::primitives::Hash;
use chorus_testnet::{Binaries, Testnet};

const PRODUCERS: usize = 4;
const SLOT_MS: u64 = 1_000;
/// Notices in the first seconds (connections forming) are not counted.
const WARMUP: Duration = Duration::from_secs(10);

fn main() {
    let run = common::run_secs("IRREVERSIBILITY", 60);
    let bins = Binaries::in_dir(Path::new(env!("CARGO_BIN_EXE_chorusd")).parent().expect("a directory"));
    let testnet =
        Testnet::builder("dpos", PRODUCERS).block_time_ms(SLOT_MS).binaries(bins).start().expect("the testnet starts");
    let urls: Vec<String> = (1..=PRODUCERS).map(|k| format!("ws://{}", testnet.rpc(k).addr())).collect();
    let notices = common::watch(&urls, run, WARMUP);

    let mut lags = Vec::new();
    let mut jitters = Vec::new();
    let mut producers: BTreeMap<String, usize> = BTreeMap::new();
    for (i, node) in notices.iter().enumerate() {
        let k = i + 1;
        let mut irreversible = None;
        for notice in node {
            match &notice.kind {
                common::Kind::Final { height } => irreversible = Some(*height),
                common::Kind::Head { height, hash, timestamp_ms } => {
                    if let Some(irreversible) = irreversible {
                        lags.push(height.saturating_sub(irreversible));
                    }
                    let producer = *producers.entry(hash.clone()).or_insert_with(|| {
                        let hash = Hash::from_hex(hash).expect("a hash");
                        let block = testnet.rpc(1).block(&hash).expect("rpc").expect("a head block is stored");
                        (1..=PRODUCERS).find(|j| testnet.address(*j) == block.proposer).unwrap_or(0)
                    });
                    if producer != k {
                        jitters.push(notice.at_ms.saturating_sub(*timestamp_ms));
                    }
                }
            }
        }
    }
    assert!(!lags.is_empty() && !jitters.is_empty(), "no block was irreversible and imported within {run:?}");
    lags.sort_unstable();
    jitters.sort_unstable();
    let percentile = common::percentile;
    let bound = 2 * PRODUCERS / 3 + 1 + 1;
    println!(
        "irreversibility lag: p50 {} blocks, p99 {} blocks ({} head changes on {PRODUCERS} producers, slot {SLOT_MS} ms; \
         rule floor 2, target at most {bound}); production jitter (slot start to head on the other nodes): \
         p50 {} ms, p99 {} ms ({:.3} slots) over {} imports",
        percentile(&lags, 50),
        percentile(&lags, 99),
        lags.len(),
        percentile(&jitters, 50),
        percentile(&jitters, 99),
        percentile(&jitters, 99) as f64 / SLOT_MS as f64,
        jitters.len(),
    );
}

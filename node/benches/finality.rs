//! PoS finality: how long after its slot starts a block is final on 4 validators (real
//! `chorusd` processes on loopback, 1 s slots), and how fast votes are checked beside the raw
//! ed25519 rates of the same run.
//!
//! Latency: every node's `chain_subscribeFinalized` notices are timed as they arrive; each
//! block that a notice makes final (the notice's block and the ancestors final since the last
//! one) counts once per node, from its slot's start (its timestamp). The rule's floor is two
//! slots: a block's votes ride in the next block, and the votes that finalize it (linking it to
//! its justified child) in the one after.
//!
//! Votes: one by one as gossip delivers them (digest and signature, as the engine checks
//! them), and in a block of `VALIDATORS_MAX` votes as import checks them (the block's stateless
//! check: roots, then every signature in one parallel batch), over the raw single-signature and
//! parallel-batch rates on the same messages.
//!
//! `cargo bench --workspace --bench finality` (`CHORUS_FINALITY_BENCH_SECS`, default 60, sets
//! how long the testnet runs).
#![allow(
    clippy::disallowed_types,
    clippy::float_arithmetic,
    reason = "a benchmark measures and divides wall-clock time"
)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use chorus_chain::block::check_block_stateless;
use chorus_chain::crypto::{self, SignedItem};
use chorus_chain::primitives::{ChainId, Hash, Height, Timestamp};
use chorus_chain::tx::{Checkpoint, Vote};
use chorus_chain::{Block, Body, Header, Seal, Signature, limits, testing};
use chorus_testnet::{Binaries, Testnet};

const VALIDATORS: usize = 4;
const SLOT_MS: u64 = 1_000;
/// Finality notices in the first seconds (connections forming, the first epoch) are not counted.
const WARMUP: Duration = Duration::from_secs(10);
/// Each vote-rate figure runs this long at least.
const RATE_RUN: Duration = Duration::from_secs(2);

fn main() {
    votes();
    finality();
}

/// Calls `round` (which checks `per_round` signatures) until `RATE_RUN` has passed: per second.
fn rate(per_round: usize, mut round: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut rounds = 0u32;
    while rounds == 0 || start.elapsed() < RATE_RUN {
        round();
        rounds += 1;
    }
    per_round as f64 * f64::from(rounds) / start.elapsed().as_secs_f64()
}

fn votes() {
    let chain_id = ChainId::new("chorus-bench").expect("chain id");
    let n = limits::VALIDATORS_MAX as usize;
    let source = Checkpoint { height: Height::new(10), slot: 10, hash: Hash::digest(b"source") };
    let target = Checkpoint { height: Height::new(11), slot: 11, hash: Hash::digest(b"target") };
    let votes: Vec<Vote> = (0..n as u32).map(|i| Vote::signed(&chain_id, &testing::key(i), source, target)).collect();
    let digests: Vec<Hash> = votes.iter().map(|vote| vote.own_signing_hash(&chain_id)).collect();
    let items: Vec<SignedItem<'_>> = votes
        .iter()
        .zip(&digests)
        .map(|(vote, digest)| SignedItem {
            signer: &vote.voter,
            message: digest.as_bytes(),
            signature: &vote.signature,
        })
        .collect();

    let raw_single = rate(n, || {
        for item in &items {
            crypto::verify(item.signer, item.message, item.signature).expect("valid");
        }
    });
    let raw_batch = rate(n, || crypto::verify_batch_parallel(&items).expect("valid"));
    let gossip = rate(n, || {
        for vote in &votes {
            crypto::verify(&vote.voter, vote.own_signing_hash(&chain_id).as_bytes(), &vote.signature).expect("valid");
        }
    });

    let proposer = testing::key(0);
    let body = Body { txs: Vec::new(), votes };
    let header = Header {
        parent: target.hash,
        height: Height::new(12),
        timestamp: Timestamp::from_millis(12 * SLOT_MS),
        txs_root: body.txs_root(),
        votes_root: body.votes_root(),
        state_root: Hash::digest(b"state"),
        proposer: proposer.address(),
        seal: Seal::Signed { slot: 12, signature: Signature([0; 64]) },
    }
    .sign(&chain_id, 12, &proposer);
    let block = Block { header, body };
    let in_block = rate(n, || {
        check_block_stateless(&block, &chain_id).expect("valid");
    });
    println!(
        "votes: gossip {gossip:.0}/s one by one (raw single verify {raw_single:.0}/s, ratio {:.2}); \
         in a block of {n} {in_block:.0}/s (raw parallel batch {raw_batch:.0}/s, ratio {:.2}; over raw single {:.2})",
        gossip / raw_single,
        in_block / raw_batch,
        in_block / raw_single,
    );
}

fn finality() {
    let run = common::run_secs("FINALITY", 60);
    // This package's `chorusd`, built for the bench; the wallet is not used.
    let bins = Binaries::in_dir(Path::new(env!("CARGO_BIN_EXE_chorusd")).parent().expect("a directory"));
    let testnet =
        Testnet::builder("pos", VALIDATORS).block_time_ms(SLOT_MS).binaries(bins).start().expect("the testnet starts");
    let urls: Vec<String> = (1..=VALIDATORS).map(|k| format!("ws://{}", testnet.rpc(k).addr())).collect();
    // Per node: (final height, arrival in ms since the epoch), in arrival order.
    let notices: Vec<Vec<(u64, u64)>> = common::watch(&urls, run, WARMUP)
        .into_iter()
        .map(|node| {
            node.into_iter()
                .filter_map(|notice| match notice.kind {
                    common::Kind::Final { height } => Some((height, notice.at_ms)),
                    common::Kind::Head { .. } => None,
                })
                .collect()
        })
        .collect();

    let rpc = testnet.rpc(1);
    let mut slot_start = std::collections::BTreeMap::new();
    let mut latencies: Vec<u64> = Vec::new();
    let mut whole_slots: Vec<u64> = Vec::new();
    for node in &notices {
        // The first notice after the warmup only marks where counting starts.
        for pair in node.windows(2) {
            let [(before, _), (height, at)] = [pair[0], pair[1]];
            for h in before + 1..=height {
                let start = *slot_start.entry(h).or_insert_with(|| {
                    let block = rpc.block_at(Height::new(h)).expect("rpc").expect("a final block is stored");
                    block.timestamp.as_millis()
                });
                let latency = at.saturating_sub(start);
                latencies.push(latency);
                whole_slots.push(latency / SLOT_MS);
            }
        }
    }
    assert!(!latencies.is_empty(), "no block became final within {run:?}");
    latencies.sort_unstable();
    whole_slots.sort_unstable();
    let percentile = common::percentile;
    let in_slots = |ms: u64| ms as f64 / SLOT_MS as f64;
    println!(
        "finality: p50 {:.3} slots, p99 {:.3} slots from the slot's start ({} final blocks seen by {VALIDATORS} \
         validators, slot {SLOT_MS} ms); whole slots passed: p50 {}, p99 {}; rule floor 2 slots",
        in_slots(percentile(&latencies, 50)),
        in_slots(percentile(&latencies, 99)),
        latencies.len(),
        percentile(&whole_slots, 50),
        percentile(&whole_slots, 99),
    );
}

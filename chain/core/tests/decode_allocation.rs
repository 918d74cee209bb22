//! What decoding hostile bytes makes a node allocate: in proportion to the input, whatever its
//! length prefixes claim (`chain::codec`'s budget, `limits::DECODE_ALLOCATION_PER_INPUT_BYTE`).
//!
//! `allocation-counter` replaces the global allocator of the binary that links it and counts
//! each thread's allocations, so these tests have a binary of their own and measure exactly
//! the decode they run, deterministically.

use chorus_chain::codec::{self, Canonical, CodecError};
use chorus_chain::primitives::{Amount, Hash, Height, Timestamp};
use chorus_chain::state::{Account, Unbonding};
use chorus_chain::testing::{self, key};
use chorus_chain::tx::Checkpoint;
use chorus_chain::wire::{SyncRequest, SyncResponse};
use chorus_chain::{Block, Body, Evidence, Header, Seal, SignedTransaction, TxKind, Vote};

/// The peak of what `decode::<T>(bytes)` holds at once, in bytes, and its result.
fn peak_bytes<T: Canonical>(bytes: &[u8]) -> (u64, Result<T, CodecError>) {
    let mut result = None;
    let info = allocation_counter::measure(|| result = Some(codec::decode::<T>(bytes)));
    (info.bytes_max, result.expect("measure runs the closure"))
}

/// What a decode of `input_bytes` may hold: its budget (8 bytes per input byte, rounded up to a
/// power of two, at least 4 KiB) and 4 KiB for an error's message.
fn allowed_bytes(input_bytes: usize) -> u64 {
    (16 * input_bytes).max(4096) as u64 + 4096
}

#[test]
fn the_demonstrated_9_byte_tx_submit_allocates_kilobytes_not_60_mib() {
    // The chain id's 8-byte length claims 0x03c00000 bytes (60 MiB) of a 9-byte input.
    let bytes = hex::decode("0000c0030000000000").expect("hex");
    let (peak, result) = peak_bytes::<SignedTransaction>(&bytes);
    assert!(peak <= 8 * 1024, "decoding 9 bytes held {peak} bytes at its peak");
    assert_eq!(result, Err(CodecError::ClaimsBeyondInput { what: "SignedTransaction", size_bytes: 9 }));
}

fn header(seal: Seal) -> Header {
    Header {
        parent: Hash([0x11; 32]),
        height: Height::new(9),
        timestamp: Timestamp::from_millis(1_767_225_601_000),
        txs_root: Hash([0x22; 32]),
        votes_root: Hash([0x33; 32]),
        state_root: Hash([0x44; 32]),
        proposer: key(1).address(),
        seal,
    }
}

/// Every 8-byte window of `value`'s encoding replaced by each of a few large lengths (so every
/// length prefix, wherever the layout puts it, is tried with each): no decode holds more than
/// its input's budget, and the length prefixes are refused as such. The lengths are those that made the old
/// 64 MiB budget allocate tens of MiB: for bytes, 32-byte items and ~200-byte items.
fn crafted_lengths_are_bounded<T: Canonical>(name: &str, value: &T) {
    let encoded = codec::encode(value);
    assert!(codec::decode::<T>(&encoded).is_ok(), "{name}: the honest encoding decodes");
    let allowed = allowed_bytes(encoded.len());
    let mut n_claims_refused = 0;
    for claimed in [0x03c0_0000u64, 0x0010_0000, 0x0004_0000] {
        for at in 0..=encoded.len().saturating_sub(8) {
            let mut crafted = encoded.clone();
            crafted[at..at + 8].copy_from_slice(&claimed.to_le_bytes());
            if crafted == encoded {
                continue;
            }
            let (peak, result) = peak_bytes::<T>(&crafted);
            // A window inside a hash or an amount may still decode: only the bound matters there.
            n_claims_refused += usize::from(matches!(result, Err(CodecError::ClaimsBeyondInput { .. })));
            assert!(
                peak <= allowed,
                "{name}: length {claimed:#x} at byte {at} of {} held {peak} bytes (allowed {allowed})",
                encoded.len()
            );
        }
    }
    assert!(n_claims_refused > 0, "{name}: no length prefix was found");
}

#[test]
fn crafted_length_prefixes_of_every_decoded_type_allocate_in_proportion_to_the_input() {
    let genesis = testing::genesis(4, 1_000);
    let chain_id = &genesis.chain_id;
    let source = Checkpoint { height: Height::new(6), slot: 9, hash: Hash([0x66; 32]) };
    let vote = |block| {
        Vote::signed(
            chain_id,
            &key(2),
            source,
            Checkpoint { height: Height::new(7), slot: 11, hash: Hash([block; 32]) },
        )
    };
    let kinds = [
        TxKind::Transfer { to: key(1).address(), amount: Amount::new(5) },
        TxKind::Vote { delegates: vec![key(1).address(), key(2).address()] },
        TxKind::Evidence(Box::new(Evidence::DoubleVote { first: vote(0xaa), second: vote(0xbb) })),
        TxKind::Evidence(Box::new(Evidence::DoubleProposal {
            first: header(Seal::None).sign(chain_id, 9, &key(1)),
            second: header(Seal::Pow { target: Hash::ZERO, nonce: 1 }).sign(chain_id, 9, &key(1)),
        })),
    ];
    let txs: Vec<SignedTransaction> = kinds
        .into_iter()
        .enumerate()
        .map(|(nonce, kind)| testing::signed(&genesis, &key(0), nonce as u64, kind))
        .collect();
    for tx in &txs {
        crafted_lengths_are_bounded("SignedTransaction", tx);
    }
    let block = Block { header: header(Seal::None), body: Body { txs: txs[..2].to_vec(), votes: vec![vote(0xcc)] } };
    crafted_lengths_are_bounded("Block", &block);
    // A header alone has no length prefix (fixed size); votes neither.
    crafted_lengths_are_bounded(
        "SyncRequest",
        &SyncRequest::BlocksAfter { locator: vec![Hash([1; 32]), Hash([2; 32])] },
    );
    crafted_lengths_are_bounded("SyncResponse::Headers", &SyncResponse::Headers(vec![header(Seal::None); 2]));
    crafted_lengths_are_bounded("SyncResponse::Blocks", &SyncResponse::Blocks(vec![block.clone(); 2]));
    crafted_lengths_are_bounded("SyncResponse::Block", &SyncResponse::Block(Some(Box::new(block))));
    let account = Account {
        balance: Amount::new(1),
        nonce: 2,
        stake: Amount::new(3),
        unbonding: vec![Unbonding { amount: Amount::new(4), release_at: Height::new(5) }],
        votes: vec![key(1).address()],
    };
    crafted_lengths_are_bounded("Account", &account);
}

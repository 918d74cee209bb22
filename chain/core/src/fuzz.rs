//! The properties the fuzz targets check, one function per input a peer, a client or a file
//! can hand this crate, and the replay of their corpora as ordinary tests.
//!
//! A target in `chain/core/fuzz/fuzz_targets` is one line: it hands libFuzzer's bytes to the
//! function of the same name here. The same functions replay each target's committed corpus
//! (`chain/core/fuzz/corpus/TARGET`) in `tests/fuzz_corpora.rs` on the stable toolchain, so CI
//! checks every input the fuzzer kept without nightly. A property that fails panics with what
//! it saw: that is how a fuzzer learns of it.
//!
//! Every decoder's property: the bytes are refused with a typed error or decode to a value that
//! encodes back to exactly those bytes (one encoding per value, so a hash or a signature over
//! the bytes is one over the value), and what decodes survives the checks a node runs on it next.

#![allow(clippy::panic, reason = "a failed property panics: that is what the fuzzer and the replay detect")]

use std::fmt::Debug;
use std::path::Path;

use crate::block::{self, Block};
use crate::codec::{self, Canonical};
use crate::crypto::{self, Address, SecretKey, Signature, SignedItem};
use crate::genesis::Genesis;
use crate::header::Header;
use crate::primitives::{ChainId, Hash, Height};
use crate::state::memory::MemoryState;
use crate::tx::{self, SignedTransaction};
use crate::wire::{SyncRequest, SyncResponse, TxBatch};

/// The chain id the targets check signatures under (the test genesis's).
const CHAIN_ID: &str = "chorus-test";

/// Decodes `data` as a `T`; whatever decodes encodes back to the same bytes.
pub fn canonical<T: Canonical + Debug>(data: &[u8]) -> Option<T> {
    let value = codec::decode::<T>(data).ok()?;
    let encoded = codec::encode(&value);
    if encoded != data {
        panic!("{value:?} decoded from {} bytes and encodes to {} other bytes", data.len(), encoded.len());
    }
    Some(value)
}

fn chain_id() -> ChainId {
    ChainId::new(CHAIN_ID).expect("invariant: a valid chain id literal")
}

/// A signed transaction (`tx_submit`, `mempool.bin` entries, and inside blocks and gossip).
pub fn signed_transaction(data: &[u8]) {
    if let Some(tx) = canonical::<SignedTransaction>(data) {
        // Stateless checks, signature included, refuse or pass; they never panic.
        let _ = tx.check_stateless(&chain_id());
        let _ = tx.hash();
    }
}

/// A mempool file (`mempool.bin`, read at start-up): whatever decodes encodes to the same
/// bytes.
pub fn mempool_file(data: &[u8]) {
    if let Ok(txs) = crate::mempool_file::decode(data) {
        let again = crate::mempool_file::encode(&txs);
        if again != data {
            panic!(
                "{} transactions decoded from {} bytes encode to {} other bytes",
                txs.len(),
                data.len(),
                again.len()
            );
        }
    }
}

/// A message on the gossip topic `transactions`: packing its transactions again gives the
/// same bytes, and checking them in one batch agrees with checking them one by one.
pub fn tx_batch(data: &[u8]) {
    let Some(batch) = canonical::<TxBatch>(data) else { return };
    let strict = TxBatch::decode(data);
    if strict.is_some() != (!batch.txs.is_empty() && batch.txs.len() <= crate::limits::GOSSIP_TX_BATCH_TXS_MAX as usize)
    {
        panic!("strict decoding of {} transactions: {strict:?}", batch.txs.len());
    }
    let Some(batch) = strict else { return };
    let packed = TxBatch::pack(batch.txs.clone());
    if packed != [data] {
        panic!("{} transactions packed into {} other messages", batch.txs.len(), packed.len());
    }
    let chain_id = chain_id();
    let together = tx::verify_many(batch.txs.clone(), &chain_id, &block::none_verified);
    for (index, (tx, together)) in batch.txs.into_iter().zip(together).enumerate() {
        let alone = tx.verified(&chain_id);
        if together != alone {
            panic!("transaction {index}: checked in a batch {together:?}, alone {alone:?}");
        }
    }
}

/// A block (gossip topic `blocks`, range-sync answers): its stateless checks, signatures
/// included, agree whether its transactions count as checked before or not.
pub fn block(data: &[u8]) {
    let Some(block) = canonical::<Block>(data) else { return };
    let chain_id = chain_id();
    let unchecked = block::check_block_stateless(&block, &chain_id).map(|_| ());
    let all_checked = block::check_block_stateless_with(&block, &chain_id, &|_| true).map(|_| ());
    if unchecked.is_ok() && all_checked.is_err() {
        panic!("a block that passes every check fails with its transactions taken as checked: {all_checked:?}");
    }
    let _ = block.hash();
}

/// A header (inside blocks and sync answers).
pub fn header(data: &[u8]) {
    if let Some(header) = canonical::<Header>(data) {
        let _ = header.hash();
    }
}

/// A range-sync request, and its checks.
pub fn sync_request(data: &[u8]) {
    if let Some(request) = canonical::<SyncRequest>(data) {
        let _ = request.check();
        let _ = request.items_max();
    }
}

/// A range-sync answer: whether it answers a request of each kind never panics, and fitting it
/// under the frame limit gives an encoding that decodes to what it says.
pub fn sync_response(data: &[u8]) {
    let Some(response) = canonical::<SyncResponse>(data) else { return };
    let from = Height::new(data.len() as u64 % 4);
    let requests = [
        SyncRequest::Headers { from, count: 8 },
        SyncRequest::Blocks { from, count: 8 },
        SyncRequest::Block(Hash::digest(data)),
        SyncRequest::BlocksAfter { locator: Vec::new() },
        SyncRequest::Status,
    ];
    for request in &requests {
        let _ = response.answers(request);
    }
    let (fitted, bytes) = response.fit();
    match codec::decode::<SyncResponse>(&bytes) {
        Ok(decoded) if decoded == fitted => {}
        other => panic!("a fitted answer does not decode to itself: {other:?}"),
    }
}

/// A genesis file: what parses and validates prints back to JSON that parses to the same
/// genesis, and builds its genesis state.
pub fn genesis_json(data: &[u8]) {
    let Ok(genesis) = Genesis::from_json(data) else { return };
    let printed = genesis.to_json_pretty();
    match Genesis::from_json(printed.as_bytes()) {
        Ok(again) if again == genesis => {}
        other => panic!("a valid genesis printed as\n{printed}\nreads back as {other:?}"),
    }
    let _ = MemoryState::from_genesis(&genesis);
}

/// Single and batch ed25519 verification agree on every input: the batch passes exactly when
/// every item does alone, and otherwise names the first item that fails alone, with its error.
///
/// Items are read off the input in turn, each `kind` byte first:
/// - even: a raw key (32 bytes) and signature (64 bytes), as a peer may send them;
/// - odd: a key seed (32 bytes), then a position and an XOR mask: the item is signed honestly
///   and, for a non-zero mask, the byte at that position of key || signature is flipped.
///
/// then a message length byte and the message. At most 64 items.
pub fn ed25519_batch(data: &[u8]) {
    let items = read_signed_items(data);
    let borrowed: Vec<SignedItem<'_>> =
        items.iter().map(|(signer, message, signature)| SignedItem { signer, message, signature }).collect();
    let single: Vec<Result<(), crypto::SignatureError>> =
        items.iter().map(|(signer, message, signature)| crypto::verify(signer, message, signature)).collect();
    let expected = single
        .iter()
        .enumerate()
        .find_map(|(index, result)| result.err().map(|error| crypto::BatchError { index, error }))
        .map_or(Ok(()), Err);
    let batch = crypto::verify_batch(&borrowed);
    if batch != expected {
        panic!("single verification says {expected:?}, the batch {batch:?} ({single:?})");
    }
    let parallel = crypto::verify_batch_parallel(&borrowed);
    if parallel != expected {
        panic!("single verification says {expected:?}, the parallel batch {parallel:?}");
    }
}

const SIGNED_ITEMS_MAX: usize = 64;

fn read_signed_items(data: &[u8]) -> Vec<(Address, Vec<u8>, Signature)> {
    let mut items = Vec::new();
    let mut rest = data;
    while items.len() < SIGNED_ITEMS_MAX
        && let Some(item) = read_signed_item(&mut rest)
    {
        items.push(item);
    }
    items
}

fn read_signed_item(rest: &mut &[u8]) -> Option<(Address, Vec<u8>, Signature)> {
    let [kind] = take::<1>(rest)?;
    let raw = if kind % 2 == 0 { Some(take::<96>(rest)?) } else { None };
    let honest = if raw.is_none() { Some((take::<32>(rest)?, take::<2>(rest)?)) } else { None };
    let [length] = take::<1>(rest)?;
    let (message, after) = rest.split_at_checked(usize::from(length))?;
    *rest = after;
    let key_and_signature = match (raw, honest) {
        (Some(raw), _) => raw.to_vec(),
        (None, Some((seed, [position, mask]))) => {
            let key = SecretKey::from_seed(seed);
            let mut signed = [key.address().0.as_slice(), key.sign(message).0.as_slice()].concat();
            if let Some(byte) = signed.get_mut(usize::from(position) % 96) {
                *byte ^= mask;
            }
            signed
        }
        (None, None) => return None,
    };
    let (key, signature) = key_and_signature.split_at_checked(32)?;
    Some((Address(key.try_into().ok()?), message.to_vec(), Signature(signature.try_into().ok()?)))
}

/// The first `N` bytes, taken off the front of `rest`.
fn take<const N: usize>(rest: &mut &[u8]) -> Option<[u8; N]> {
    let (head, tail) = rest.split_first_chunk::<N>()?;
    *rest = tail;
    Some(*head)
}

/// Checks an honest seed input with `check`, and with `CHORUS_FUZZ_SEED` set writes it into the
/// corpus directory `dir` as `seed-NAME`, for a fuzzer to start from.
pub fn seed(dir: &Path, name: &str, bytes: &[u8], check: impl Fn(&[u8])) {
    check(bytes);
    if std::env::var_os("CHORUS_FUZZ_SEED").is_some() {
        std::fs::create_dir_all(dir).unwrap_or_else(|error| panic!("corpus {}: {error}", dir.display()));
        let path = dir.join(format!("seed-{name}"));
        std::fs::write(&path, bytes).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    }
}

/// Runs `check` on every file of a fuzz target's corpus directory and returns how many there
/// were; a directory that is missing or empty fails the replay (a corpus is committed for every
/// target).
pub fn replay_corpus(dir: &Path, check: impl Fn(&[u8])) -> usize {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("corpus {}: {error}", dir.display()))
        .map(|entry| entry.expect("a corpus directory entry").path())
        .collect();
    paths.sort();
    for path in &paths {
        let bytes = std::fs::read(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        check(&bytes);
    }
    if paths.is_empty() {
        panic!("corpus {} is empty", dir.display());
    }
    paths.len()
}

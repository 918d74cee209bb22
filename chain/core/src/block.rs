//! Blocks: a header and a body, the transactions and votes roots, and stateless block checks.
//!
//! The header and its seal live in [`crate::header`], which depends on nothing here, so that
//! transactions (evidence carries headers) and blocks (a body carries transactions) do not
//! depend on each other.

use serde::{Deserialize, Serialize};

use crate::codec::{self, Canonical, Decode, Encode};
use crate::crypto::{self, BatchError};
use crate::header::Header;
use crate::limits;
use crate::primitives::{ChainId, Hash, Height};
use crate::tx::{SignatureCheck, SignedTransaction, TxError, Vote};

#[derive(Clone, Debug, PartialEq, Eq, Default, Encode, Decode, Serialize, Deserialize)]
pub struct Body {
    pub txs: Vec<SignedTransaction>,
    pub votes: Vec<Vote>,
}

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Block {
    pub header: Header,
    pub body: Body,
}

impl Canonical for Block {
    const BYTES_MAX: u32 = limits::BLOCK_BYTES_MAX;
}

impl Block {
    pub fn hash(&self) -> Hash {
        self.header.hash()
    }

    pub fn height(&self) -> Height {
        self.header.height
    }
}

/// Why a block is invalid before any state is consulted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockShapeError {
    #[error("block holds {got} transactions, limit {}", limits::BLOCK_TXS_MAX)]
    TooManyTxs { got: usize },
    #[error("block holds {got} votes, limit {}", limits::BLOCK_VOTES_MAX)]
    TooManyVotes { got: usize },
    #[error("block is {size_bytes} bytes, limit {}", limits::BLOCK_BYTES_MAX)]
    TooLarge { size_bytes: usize },
    #[error("transactions root is {got}, body gives {expected}")]
    TxsRoot { expected: Hash, got: Hash },
    #[error("votes root is {got}, body gives {expected}")]
    VotesRoot { expected: Hash, got: Hash },
    #[error("transaction {index} ({hash}) is invalid: {error}")]
    Tx { index: usize, hash: Hash, error: TxError },
    #[error("block holds transaction {hash} twice")]
    DuplicateTx { hash: Hash },
    #[error("vote {index} signature is invalid: {error}")]
    VoteSignature { index: usize, error: crypto::SignatureError },
    #[error("seal signature is invalid: {0}")]
    SealSignature(crypto::SignatureError),
}

/// Binary Merkle root over `leaves` with domain-separated leaf and inner hashes. An odd node
/// is carried up unchanged (never duplicated, so two different lists never share a root).
pub fn merkle_root(leaves: &[Hash]) -> Hash {
    if leaves.is_empty() {
        return Hash::tagged(b"chorus/merkle/empty", &[]);
    }
    let mut level: Vec<Hash> = leaves.iter().map(|leaf| Hash::tagged(b"chorus/merkle/leaf", leaf.as_bytes())).collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [left, right] => {
                    let mut both = [0u8; 64];
                    let (left_half, right_half) = both.split_at_mut(32);
                    left_half.copy_from_slice(left.as_bytes());
                    right_half.copy_from_slice(right.as_bytes());
                    Hash::tagged(b"chorus/merkle/inner", &both)
                }
                [single] => *single,
                _ => unreachable!("invariant: chunks(2) yields one or two items"),
            })
            .collect();
    }
    *level.first().expect("invariant: pairing a non-empty level leaves at least one hash")
}

impl Body {
    /// Transaction hashes, in body order.
    pub fn tx_hashes(&self) -> Vec<Hash> {
        self.txs.iter().map(SignedTransaction::hash).collect()
    }

    pub fn txs_root(&self) -> Hash {
        merkle_root(&self.tx_hashes())
    }

    pub fn votes_root(&self) -> Hash {
        let hashes: Vec<Hash> = self.votes.iter().map(|vote| Hash::digest(&codec::encode(vote))).collect();
        merkle_root(&hashes)
    }
}

/// The cheap part of the stateless checks: counts within limits, the body matches the header's
/// roots, no transaction twice. Returns the transaction hashes. Enough to store a block
/// without executing it (a side branch): its body is then the one its hash commits to.
pub fn check_body_matches_header(block: &Block) -> Result<Vec<Hash>, BlockShapeError> {
    let body = &block.body;
    if body.txs.len() > limits::BLOCK_TXS_MAX as usize {
        return Err(BlockShapeError::TooManyTxs { got: body.txs.len() });
    }
    if body.votes.len() > limits::BLOCK_VOTES_MAX as usize {
        return Err(BlockShapeError::TooManyVotes { got: body.votes.len() });
    }
    let tx_hashes = body.tx_hashes();
    let txs_root = merkle_root(&tx_hashes);
    if txs_root != block.header.txs_root {
        return Err(BlockShapeError::TxsRoot { expected: txs_root, got: block.header.txs_root });
    }
    let votes_root = body.votes_root();
    if votes_root != block.header.votes_root {
        return Err(BlockShapeError::VotesRoot { expected: votes_root, got: block.header.votes_root });
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(twice) = tx_hashes.iter().find(|hash| !seen.insert(**hash)) {
        return Err(BlockShapeError::DuplicateTx { hash: *twice });
    }
    Ok(tx_hashes)
}

/// Evidence that [`check_block_stateless`] passed for one block: only that function makes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatelessChecked {
    block_hash: Hash,
    tx_hashes: Vec<Hash>,
}

impl StatelessChecked {
    pub fn block_hash(&self) -> Hash {
        self.block_hash
    }

    /// The block's transaction hashes, in body order.
    pub fn into_tx_hashes(self) -> Vec<Hash> {
        self.tx_hashes
    }
}

/// Transactions whose signatures this node already checked under the one rule, by hash (a
/// transaction's hash covers its signed encoding, so the same hash is the same bytes): a
/// node's mempool holds only such transactions.
pub type Verified<'a> = &'a (dyn Fn(&Hash) -> bool + Sync);

/// None checked before.
pub fn none_verified(_: &Hash) -> bool {
    false
}

/// Stateless checks of a block: sizes, roots, each transaction's own rules, and every
/// signature in the body (in parallel batches) and in the seal.
pub fn check_block_stateless(block: &Block, chain_id: &ChainId) -> Result<StatelessChecked, BlockShapeError> {
    check_block_stateless_with(block, chain_id, &none_verified)
}

/// [`check_block_stateless`], skipping the signatures of the transactions `verified` names
/// (each signature is checked once per node: when its transaction was admitted).
pub fn check_block_stateless_with(
    block: &Block,
    chain_id: &ChainId,
    verified: Verified<'_>,
) -> Result<StatelessChecked, BlockShapeError> {
    let tx_hashes = check_body_matches_header(block)?;
    let body = &block.body;
    // Both counts are bounded by the limits check_body_matches_header applied.
    let n_checks = body.txs.len().saturating_add(body.votes.len());
    let mut checks = Vec::with_capacity(n_checks);
    let mut owner = Vec::with_capacity(n_checks);
    for ((index, tx), hash) in body.txs.iter().enumerate().zip(&tx_hashes) {
        tx.check_stateless(chain_id).map_err(|error| BlockShapeError::Tx { index, hash: *hash, error })?;
        if verified(hash) {
            continue;
        }
        let before = checks.len();
        tx.signature_checks(&mut checks);
        let added = checks.len().checked_sub(before).expect("invariant: signature_checks only appends");
        owner.extend(std::iter::repeat_n(Owner::Tx { index, hash: *hash }, added));
    }
    for (index, vote) in body.votes.iter().enumerate() {
        checks.push(SignatureCheck {
            signer: vote.voter,
            digest: vote.own_signing_hash(chain_id),
            signature: vote.signature,
        });
        owner.push(Owner::Vote(index));
    }
    if let Some(signature) = block.header.seal_signature() {
        checks.push(SignatureCheck {
            signer: block.header.proposer,
            digest: block.header.signing_hash(chain_id),
            signature,
        });
        owner.push(Owner::Seal);
    }
    let items: Vec<crypto::SignedItem<'_>> = checks.iter().map(SignatureCheck::item).collect();
    if let Err(BatchError { index, error }) = crypto::verify_batch_parallel(&items) {
        let owner = owner.get(index).expect("invariant: the batch names one of its items, and each has an owner");
        return Err(match *owner {
            Owner::Tx { index, hash } => BlockShapeError::Tx { index, hash, error: TxError::Signature(error) },
            Owner::Vote(vote_index) => BlockShapeError::VoteSignature { index: vote_index, error },
            Owner::Seal => BlockShapeError::SealSignature(error),
        });
    }
    Ok(StatelessChecked { block_hash: block.hash(), tx_hashes })
}

/// Hands each of `items` to `import` in order, with what `check` made of it (a block's
/// stateless checks). The checks run ahead of the imports on one thread of their own (at most
/// `limits::IMPORT_CHECKED_AHEAD_MAX` results wait): the import, the critical path, keeps the
/// other core, and the checks never wait for a join with it. (The `import` bench could not tell
/// this from checking each next block on both cores, joined per block, on a noisy machine.)
/// A single item, with nothing to overlap, is checked on the calling thread. Stops at the first
/// failed import; the checking thread stops with it and is joined before return.
pub fn import_with_checks_ahead<T: Sync, C: Send, E>(
    items: &[T],
    check: impl Fn(&T) -> C + Sync,
    mut import: impl FnMut(&T, C) -> Result<(), E>,
) -> Result<(), E> {
    let one_core = match items {
        [] | [_] => None,
        _ => rayon::ThreadPoolBuilder::new().num_threads(1).build().ok(),
    };
    let Some(one_core) = one_core else {
        // Nothing to overlap (or no thread to be had): each checked here, then imported.
        return items.iter().try_for_each(|item| import(item, check(item)));
    };
    one_core.in_place_scope(|scope| {
        let (checked_tx, checked_rx) = std::sync::mpsc::sync_channel(limits::IMPORT_CHECKED_AHEAD_MAX as usize);
        let check = &check;
        scope.spawn(move |_| {
            for item in items {
                // The imports stopped (one failed): nothing more to check.
                if checked_tx.send(check(item)).is_err() {
                    return;
                }
            }
        });
        items.iter().zip(checked_rx).try_for_each(|(item, checked)| import(item, checked))
    })
}

/// What a signature check belongs to, to name it in the error.
#[derive(Clone, Copy)]
enum Owner {
    Tx { index: usize, hash: Hash },
    Vote(usize),
    Seal,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merkle_root_shapes() {
        let leaves: Vec<Hash> = (0..5u8).map(|i| Hash::digest(&[i])).collect();
        let roots: Vec<Hash> = (0..=5).map(|n| merkle_root(&leaves[..n])).collect();
        let distinct: std::collections::BTreeSet<_> = roots.iter().collect();
        assert_eq!(distinct.len(), 6, "every prefix has its own root");
        // A leaf list never collides with the list of its inner nodes.
        let pair_root = merkle_root(&leaves[..2]);
        assert_ne!(merkle_root(&[pair_root]), pair_root);
        // Order matters.
        let mut swapped = leaves.clone();
        swapped.swap(0, 1);
        assert_ne!(merkle_root(&swapped), merkle_root(&leaves));
    }
}

//! The authenticated state tree: a Jellyfish Merkle tree (the `jmt` crate) over SHA-256.
//!
//! Tree keys are SHA-256 of encoded [`StateKey`]s; values are the encoded state values. The
//! tree version is the block height, so the root at height `h` is the state root of the block
//! at `h` on the current chain. The store keeps only the current chain's versions: a reorg
//! deletes the nodes of the versions it rolls back before writing the new branch's.
//!
//! Proofs ([`StateProof`]) verify with [`verify_proof`] from a root alone, so the wallet can
//! check an account without RocksDB.

use jmt::proof::SparseMerkleProof;
use jmt::storage::{TreeReader, TreeUpdateBatch};
use jmt::{KeyHash, SimpleHasher};
use sha2::{Digest, Sha256};

use super::{StateChange, StateKey};
use crate::primitives::{Hash, Height};

/// SHA-256 as the tree's hasher (sha2 0.11, the workspace's one digest stack).
#[derive(Clone, Debug, Default)]
pub struct StateHasher(Sha256);

impl SimpleHasher for StateHasher {
    fn new() -> Self {
        StateHasher(Sha256::new())
    }

    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    fn finalize(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

type Tree<'a, R> = jmt::JellyfishMerkleTree<'a, R, StateHasher>;

/// The tree could not be read (a missing node means a damaged or pruned store).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    #[error("state tree read failed: {0}")]
    Storage(String),
    #[error("no state tree at height {height}")]
    MissingRoot { height: Height },
}

/// jmt reports `anyhow::Error`; it is converted here and goes no further.
fn storage(error: anyhow::Error) -> TreeError {
    TreeError::Storage(format!("{error:#}"))
}

/// The tree key of an encoded state key.
pub fn key_hash(encoded_key: &[u8]) -> KeyHash {
    KeyHash(StateHasher::hash(encoded_key))
}

/// Applies a block's changes as tree version `height` on top of version `height - 1`, returning
/// the new root and the nodes and values to write.
pub fn apply_changes<R: TreeReader>(
    reader: &R,
    changes: &[StateChange],
    height: Height,
) -> Result<(Hash, TreeUpdateBatch), TreeError> {
    assert!(!changes.is_empty(), "every block writes StateKey::Meta");
    let values: Vec<(KeyHash, Vec<u8>)> =
        changes.iter().map(|change| (key_hash(&change.key), change.new.clone())).collect();
    let (roots, batch) = Tree::new(reader).batch_put_value_sets(vec![values], None, height.get()).map_err(storage)?;
    let root = roots.first().expect("invariant: one value set in, one root out");
    Ok((Hash(root.0), batch))
}

/// The state root at `height`.
pub fn root_at<R: TreeReader>(reader: &R, height: Height) -> Result<Hash, TreeError> {
    match Tree::new(reader).get_root_hash_option(height.get()).map_err(storage)? {
        Some(root) => Ok(Hash(root.0)),
        None => Err(TreeError::MissingRoot { height }),
    }
}

/// A value (or its absence) and the Merkle proof tying it to a state root.
#[derive(Debug, Clone, PartialEq)]
pub struct StateProof {
    pub value: Option<Vec<u8>>,
    pub proof: SparseMerkleProof<StateHasher>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("proof does not match state root {root}: {reason}")]
    Mismatch { root: Hash, reason: String },
    #[error("proof bytes are malformed: {0}")]
    Malformed(String),
}

impl StateProof {
    /// The proof's bytes for transport (borsh, as the tree crate defines them).
    pub fn proof_bytes(&self) -> Vec<u8> {
        borsh::to_vec(&self.proof).expect("invariant: serializing into a Vec cannot fail")
    }

    pub fn from_parts(value: Option<Vec<u8>>, proof_bytes: &[u8]) -> Result<StateProof, ProofError> {
        let proof = borsh::from_slice(proof_bytes).map_err(|error| ProofError::Malformed(error.to_string()))?;
        Ok(StateProof { value, proof })
    }
}

/// Proves the value of `key` at `height`: inclusion if present, exclusion if not.
pub fn prove<R: TreeReader>(reader: &R, key: &StateKey, height: Height) -> Result<StateProof, TreeError> {
    let (value, proof) = Tree::new(reader).get_with_proof(key_hash(&key.encode()), height.get()).map_err(storage)?;
    Ok(StateProof { value, proof })
}

/// Checks that under `root`, `key` holds exactly `proof.value` (or nothing).
pub fn verify_proof(root: Hash, key: &StateKey, proof: &StateProof) -> Result<(), ProofError> {
    proof
        .proof
        .verify(jmt::RootHash(root.0), key_hash(&key.encode()), proof.value.as_deref())
        .map_err(|error| ProofError::Mismatch { root, reason: error.to_string() })
}

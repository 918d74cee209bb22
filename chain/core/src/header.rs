//! Block headers and their engine-specific seals: the block hash and what a proposer signs.
//!
//! Depends on primitives, keys and the codec only: both [`crate::block`] (a block has a header)
//! and [`crate::tx`] (evidence of a double proposal carries two headers) build on it.

use serde::{Deserialize, Serialize};

use crate::codec::{self, Canonical, Decode, Encode};
use crate::crypto::{self, Address, Signature};
use crate::limits;
use crate::primitives::{ChainId, Hash, Height, Timestamp};

const HEADER_SIGNING_TAG: &[u8] = b"chorus/header/v1";

/// The engine-specific proof that a block may be appended.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Seal {
    /// Genesis, and blocks of engines whose header carries no proof of its own.
    None,
    /// Proof of work: the header hash, read as a big-endian number, is at most `target`.
    Pow { target: Hash, nonce: u64 },
    /// The proposer's signature over [`Header::signing_hash`] (PoS, DPoS, Raft leader), for
    /// `slot`: the engine's unit of turn (a PoS or DPoS slot, a Raft term). A proposer signs at
    /// most one header per slot; two are evidence of a double proposal.
    Signed { slot: u64, signature: Signature },
}

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Header {
    pub parent: Hash,
    pub height: Height,
    pub timestamp: Timestamp,
    /// Merkle root of the body's transaction hashes.
    pub txs_root: Hash,
    /// Merkle root of the body's finality votes.
    pub votes_root: Hash,
    /// Root of the state tree after this block.
    pub state_root: Hash,
    /// Receives fees and the block reward (the coinbase, under PoW).
    pub proposer: Address,
    pub seal: Seal,
}

impl Canonical for Header {
    const BYTES_MAX: u32 = limits::HEADER_BYTES_MAX;
}

impl Header {
    /// The block hash: SHA-256 of the header's canonical encoding.
    pub fn hash(&self) -> Hash {
        Hash::digest(&codec::encode(self))
    }

    /// What a proposer signs: the header without its seal and the seal's slot (0 for an
    /// unsigned seal), bound to the chain id.
    pub fn signing_hash(&self, chain_id: &ChainId) -> Hash {
        let unsealed = Header { seal: Seal::None, ..self.clone() };
        let slot = self.slot().unwrap_or(0);
        crypto::signing_hash(HEADER_SIGNING_TAG, &codec::encode(&(chain_id, unsealed, slot)))
    }

    /// Seals the header for `slot` with the proposer's signature; `key` must be the proposer's.
    pub fn sign(mut self, chain_id: &ChainId, slot: u64, key: &crypto::SecretKey) -> Header {
        assert_eq!(key.address(), self.proposer, "a header is signed by its proposer");
        self.seal = Seal::Signed { slot, signature: Signature([0; 64]) };
        let signature = key.sign(self.signing_hash(chain_id).as_bytes());
        self.seal = Seal::Signed { slot, signature };
        self
    }

    pub fn seal_signature(&self) -> Option<Signature> {
        match self.seal {
            Seal::Signed { signature, .. } => Some(signature),
            Seal::None | Seal::Pow { .. } => None,
        }
    }

    /// The slot a signed header was proposed for.
    pub fn slot(&self) -> Option<u64> {
        match self.seal {
            Seal::Signed { slot, .. } => Some(slot),
            Seal::None | Seal::Pow { .. } => None,
        }
    }
}

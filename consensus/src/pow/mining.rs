//! The nonce search: pure computation, run by the node's miner threads and by the simulator.
//!
//! The nonce is the last field of a PoW header's encoding, so every SHA-256 block before the one
//! holding it is the same for all nonces: [`Grinder`] absorbs them once (the midstate) and hashes
//! only the tail per nonce.

use chorus_chain::codec;
use chorus_chain::header::{Header, Seal};
use chorus_chain::primitives::Hash;
use sha2::{Digest, Sha256};

use super::difficulty::meets_target;

const SHA256_BLOCK_BYTES: usize = 64;
const NONCE_BYTES: usize = 8;

/// Searches nonces for one PoW header.
#[derive(Clone)]
pub struct Grinder {
    midstate: Sha256,
    tail: Vec<u8>,
    nonce_at: usize,
    target: Hash,
}

impl std::fmt::Debug for Grinder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grinder").field("target", &self.target).finish_non_exhaustive()
    }
}

/// A header whose seal is not `Seal::Pow` cannot be mined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a header can be mined only with a PoW seal")]
pub struct NotPowSeal;

impl Grinder {
    pub fn new(header: &Header) -> Result<Grinder, NotPowSeal> {
        let Seal::Pow { target, .. } = header.seal else {
            return Err(NotPowSeal);
        };
        let encoded = codec::encode(header);
        let nonce_start = encoded.len().checked_sub(NONCE_BYTES).ok_or(NotPowSeal)?;
        let prefix_len = nonce_start.saturating_sub(nonce_start % SHA256_BLOCK_BYTES);
        let (prefix, tail) = encoded.split_at(prefix_len);
        let mut midstate = Sha256::new();
        midstate.update(prefix);
        let nonce_at = nonce_start.checked_sub(prefix_len).ok_or(NotPowSeal)?;
        Ok(Grinder { midstate, tail: tail.to_vec(), nonce_at, target })
    }

    pub fn target(&self) -> &Hash {
        &self.target
    }

    /// The header hash with `nonce` in the seal.
    pub fn hash(&mut self, nonce: u64) -> Hash {
        if let Some(slot) = self.tail.get_mut(self.nonce_at..) {
            slot.copy_from_slice(&nonce.to_le_bytes());
        }
        let mut hasher = self.midstate.clone();
        hasher.update(&self.tail);
        Hash(hasher.finalize().into())
    }

    /// Tries `count` nonces from `start` (wrapping); returns the first that meets the target and
    /// how many were tried. `stop` is polled between batches of [`STOP_POLL_NONCES`].
    pub fn search(&mut self, start: u64, count: u64, stop: &dyn Fn() -> bool) -> (Option<u64>, u64) {
        let mut tried: u64 = 0;
        while tried < count {
            if tried.is_multiple_of(STOP_POLL_NONCES) && stop() {
                break;
            }
            let nonce = start.wrapping_add(tried);
            tried = tried.saturating_add(1);
            if meets_target(&self.hash(nonce), &self.target) {
                return (Some(nonce), tried);
            }
        }
        (None, tried)
    }
}

/// Nonces tried between two looks at the stop flag: about 100 us of hashing.
pub const STOP_POLL_NONCES: u64 = 1_024;

/// `header` with `nonce` in its PoW seal.
pub fn with_nonce(header: &Header, nonce: u64) -> Header {
    let mut sealed = header.clone();
    if let Seal::Pow { nonce: slot, .. } = &mut sealed.seal {
        *slot = nonce;
    }
    sealed
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_chain::primitives::Height;

    #[test]
    fn midstate_hash_equals_the_header_hash() {
        let genesis = chorus_chain::state::genesis_block(&chorus_chain::testing::genesis(1, 1), Hash::ZERO);
        let header =
            Header { height: Height::new(7), seal: Seal::Pow { target: Hash([0x0f; 32]), nonce: 0 }, ..genesis.header };
        let mut grinder = Grinder::new(&header).unwrap();
        for nonce in [0, 1, 255, 1 << 40, u64::MAX] {
            assert_eq!(grinder.hash(nonce), with_nonce(&header, nonce).hash(), "nonce {nonce}");
        }
        let (found, tried) = grinder.search(0, 10_000, &|| false);
        let nonce = found.expect("1 in 16 hashes meets 0x0f..");
        assert!(meets_target(&with_nonce(&header, nonce).hash(), &Hash([0x0f; 32])));
        assert_eq!(tried, nonce + 1);
        assert_eq!(grinder.search(0, 10_000, &|| true), (None, 0), "a set stop flag stops before hashing");
        assert_eq!(Grinder::new(&Header { seal: Seal::None, ..header }).err(), Some(NotPowSeal));
    }
}

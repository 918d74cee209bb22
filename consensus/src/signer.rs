//! A validator's key behind slashing protection.
//!
//! A node's one ed25519 key is its address, its libp2p identity and, for engines with
//! validators, its signing key; the node hands it to the engine as a [`Signer`] through
//! [`crate::EngineOptions`]. The engine signs only through a [`Guard`], which refuses any header
//! or vote that could conflict with one it signed before, and records what it signs with an
//! [`Action::Persist`] of [`Durability::Synced`] appended before the signed message is returned:
//! the driver runs actions in order, so the record is on disk (fsynced) before anything signed
//! can leave the node (a Raft leader's record is the one exception, for a reason its method
//! gives). A validator therefore never signs two conflicting messages, across a SIGKILL, a
//! restart or a power loss.
//!
//! The rules (Ethereum's minimal slashing protection, EIP-3076, with slots as epochs):
//! - a header is signed only for a slot above the last one signed (or the same header again);
//!   a Raft leader, which signs a block per height within its term, only for a (term, height)
//!   above the last one signed ([`Guard::sign_turn_header`], whose record need not be synced
//!   first: Raft's own durable term already rules out a second leadership in a term);
//! - a vote only if its target slot is above the last vote's and its source slot is at least
//!   the last vote's (or the same vote again). That excludes both conflicts
//!   [`Vote::conflicts_with`] names: two votes for one target slot, and surrounding spans.

use std::fmt;

use chorus_chain::codec::{self, Canonical, Decode, Encode};
use chorus_chain::crypto::{Address, SecretKey};
use chorus_chain::header::Header;
use chorus_chain::limits;
use chorus_chain::primitives::{ChainId, Hash, Height};
use chorus_chain::tx::{Checkpoint, Vote};

use crate::{Action, ChainRead, ChainReadError, Durability};

/// The engine record holding what this validator signed last.
pub const GUARD_RECORD_KEY: &[u8] = b"guard/v1";

/// The engine record holding the last header a Raft leader signed: (term, height, hash).
pub const TURN_RECORD_KEY: &[u8] = b"guard/turn/v1";

/// The node's validator key. `Debug` shows the address only.
#[derive(Clone)]
pub struct Signer {
    key: SecretKey,
}

impl Signer {
    pub fn new(key: SecretKey) -> Signer {
        Signer { key }
    }

    pub fn address(&self) -> Address {
        self.key.address()
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signer({})", self.address())
    }
}

/// The last header and vote a validator signed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode)]
#[bincode(crate = "chorus_chain::codec::backend")]
struct Signed {
    /// Slot and hash of the last header signed.
    header: Option<(u64, Hash)>,
    /// Source and target of the last vote signed.
    vote: Option<(Checkpoint, Checkpoint)>,
}

impl Canonical for Signed {
    const BYTES_MAX: u32 = limits::GUARD_RECORD_BYTES_MAX;
}

/// Why the guard refused to sign: signing would let the validator be slashed. Never the input's
/// fault; the engine skips the signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("already signed header {signed} for slot {signed_slot}; refusing a header for slot {slot}")]
    HeaderSlot { slot: u64, signed_slot: u64, signed: Hash },
    #[error(
        "already voted from slot {signed_from} to {signed_to}; refusing to vote from {from} to {to} (a target \
         must rise and a source must not fall)"
    )]
    Vote { from: u64, to: u64, signed_from: u64, signed_to: u64 },
    #[error(
        "already signed header {signed} for term {signed_term} at height {signed_height}; refusing one for term \
         {term} at height {height}"
    )]
    Turn { term: u64, height: Height, signed_term: u64, signed_height: Height, signed: Hash },
}

/// A [`Signer`] with the record of what it signed: the only way an engine signs.
#[derive(Debug)]
pub struct Guard {
    signer: Signer,
    signed: Signed,
    /// The last header signed by turn (Raft).
    turn: Option<TurnSigned>,
}

/// The last header a Raft leader signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
#[bincode(crate = "chorus_chain::codec::backend")]
struct TurnSigned {
    term: u64,
    height: Height,
    hash: Hash,
}

impl Canonical for TurnSigned {
    const BYTES_MAX: u32 = limits::GUARD_RECORD_BYTES_MAX;
}

impl Guard {
    /// The guard with what the validator signed before, read from the store.
    pub fn load(signer: Signer, chain: &dyn ChainRead) -> Result<Guard, ChainReadError> {
        let signed = match chain.record(GUARD_RECORD_KEY)? {
            None => Signed::default(),
            Some(bytes) => codec::decode(&bytes)
                .map_err(|error| ChainReadError::Unreadable { what: format!("slashing protection record: {error}") })?,
        };
        let turn = match chain.record(TURN_RECORD_KEY)? {
            None => None,
            Some(bytes) => Some(
                codec::decode(&bytes)
                    .map_err(|error| ChainReadError::Unreadable { what: format!("turn signing record: {error}") })?,
            ),
        };
        Ok(Guard { signer, signed, turn })
    }

    pub fn address(&self) -> Address {
        self.signer.address()
    }

    /// Seals `header` (whose proposer must be this validator) for `slot`, after appending the
    /// synced record of it to `actions`.
    pub fn sign_header(
        &mut self,
        chain_id: &ChainId,
        header: Header,
        slot: u64,
        actions: &mut Vec<Action>,
    ) -> Result<Header, Refusal> {
        let sealed = header.sign(chain_id, slot, &self.signer.key);
        let hash = sealed.hash();
        if let Some((signed_slot, signed)) = self.signed.header {
            if slot < signed_slot || (slot == signed_slot && hash != signed) {
                return Err(Refusal::HeaderSlot { slot, signed_slot, signed });
            }
            if slot == signed_slot {
                return Ok(sealed);
            }
        }
        self.signed.header = Some((slot, hash));
        self.record(actions);
        Ok(sealed)
    }

    /// Signs the vote `source -> target`, after appending the synced record of it to `actions`.
    pub fn sign_vote(
        &mut self,
        chain_id: &ChainId,
        source: Checkpoint,
        target: Checkpoint,
        actions: &mut Vec<Action>,
    ) -> Result<Vote, Refusal> {
        if let Some((signed_source, signed_target)) = self.signed.vote {
            let same = (signed_source, signed_target) == (source, target);
            let safe = target.slot > signed_target.slot && source.slot >= signed_source.slot;
            if same {
                return Ok(Vote::signed(chain_id, &self.signer.key, source, target));
            }
            if !safe {
                return Err(Refusal::Vote {
                    from: source.slot,
                    to: target.slot,
                    signed_from: signed_source.slot,
                    signed_to: signed_target.slot,
                });
            }
        }
        self.signed.vote = Some((source, target));
        self.record(actions);
        Ok(Vote::signed(chain_id, &self.signer.key, source, target))
    }

    /// Seals `header` (whose proposer must be this member) for `term`: refused unless (term,
    /// height) is above the last header signed this way, or it is that header again.
    ///
    /// The record of it is appended to `actions` as [`Durability::Logged`], not synced: the
    /// block may leave (a Raft leader's appends go out at once) before the fsync of the log
    /// write that follows it in the same input makes the record durable too. The gap is safe
    /// because a term is led once: `raft` makes a candidate's term and its own vote durable
    /// (a synced hard state) before any answer can make it leader, and a restarted member
    /// campaigns only for a higher term. So a header for a term can only conflict with one
    /// signed in the same process, which the record in memory refuses; the logged record
    /// carries the check across a kill.
    pub fn sign_turn_header(
        &mut self,
        chain_id: &ChainId,
        header: Header,
        term: u64,
        actions: &mut Vec<Action>,
    ) -> Result<Header, Refusal> {
        let height = header.height;
        let sealed = header.sign(chain_id, term, &self.signer.key);
        let hash = sealed.hash();
        if let Some(last) = self.turn {
            if (term, height, hash) == (last.term, last.height, last.hash) {
                return Ok(sealed);
            }
            if (term, height) <= (last.term, last.height) {
                return Err(Refusal::Turn {
                    term,
                    height,
                    signed_term: last.term,
                    signed_height: last.height,
                    signed: last.hash,
                });
            }
        }
        let signed = TurnSigned { term, height, hash };
        self.turn = Some(signed);
        actions.push(Action::Persist {
            key: TURN_RECORD_KEY.to_vec(),
            value: codec::encode(&signed),
            durability: Durability::Logged,
        });
        Ok(sealed)
    }

    fn record(&self, actions: &mut Vec<Action>) {
        actions.push(Action::Persist {
            key: GUARD_RECORD_KEY.to_vec(),
            value: codec::encode(&self.signed),
            durability: Durability::Synced,
        });
    }
}

#[cfg(test)]
mod tests {
    use chorus_chain::primitives::{Height, Timestamp};
    use chorus_chain::testing;

    use super::*;
    use crate::records::Records;

    /// A checkpoint at `slot`, on a chain without missed slots (height = slot).
    fn checkpoint(slot: u64, byte: u8) -> Checkpoint {
        Checkpoint { height: Height::new(slot), slot, hash: Hash([byte; 32]) }
    }

    fn header(height: u64, byte: u8) -> Header {
        Header {
            parent: Hash([byte; 32]),
            height: Height::new(height),
            timestamp: Timestamp::from_millis(1_000),
            txs_root: Hash::ZERO,
            votes_root: Hash::ZERO,
            state_root: Hash::ZERO,
            proposer: testing::key(0).address(),
            seal: chorus_chain::header::Seal::None,
        }
    }

    fn restart(chain: &Records) -> Guard {
        Guard::load(Signer::new(testing::key(0)), chain).expect("record readable")
    }

    #[test]
    fn no_conflicting_vote_is_signed_even_after_a_restart() {
        let mut chain = Records::new(testing::genesis(1, 1));
        let chain_id = chain.genesis.chain_id.clone();
        let mut actions = Vec::new();
        let mut guard = restart(&chain);
        let first = guard.sign_vote(&chain_id, checkpoint(0, 0), checkpoint(2, 2), &mut actions).expect("first vote");
        assert_eq!(actions.len(), 1, "the record comes before the vote is returned");
        chain.keep(&mut actions, Durability::Synced);

        let mut guard = restart(&chain);
        let refused = [
            (checkpoint(0, 0), checkpoint(2, 9)), // another block at the same target slot
            (checkpoint(1, 1), checkpoint(2, 2)), // the same target from another source
            (checkpoint(0, 0), checkpoint(1, 1)), // a lower target
        ];
        for (source, target) in refused {
            let got = guard.sign_vote(&chain_id, source, target, &mut actions);
            assert!(matches!(got, Err(Refusal::Vote { .. })), "{source:?} -> {target:?}: {got:?}");
            let conflicting = Vote::signed(&chain_id, &testing::key(0), source, target);
            assert!(conflicting.conflicts_with(&first) || target.slot < first.target.slot);
        }
        assert!(actions.is_empty(), "a refusal records nothing");
        // The same vote again is the same signature, with nothing new to record.
        assert_eq!(guard.sign_vote(&chain_id, checkpoint(0, 0), checkpoint(2, 2), &mut actions), Ok(first.clone()));
        assert!(actions.is_empty());
        // A vote surrounding the first is refused (its source is lower); the next link is fine.
        let next = guard.sign_vote(&chain_id, checkpoint(2, 2), checkpoint(3, 3), &mut actions).expect("next link");
        assert!(!next.conflicts_with(&first));
        chain.keep(&mut actions, Durability::Synced);
        let mut guard = restart(&chain);
        let surround = guard.sign_vote(&chain_id, checkpoint(1, 1), checkpoint(5, 5), &mut actions);
        assert!(matches!(surround, Err(Refusal::Vote { .. })), "{surround:?}");
        // After a reorg to a shorter branch, its next block is lower but in a later slot: the
        // vote for it conflicts with nothing signed, and is signed.
        let shorter = Checkpoint { height: Height::new(2), slot: 4, hash: Hash([4; 32]) };
        let after_reorg = guard.sign_vote(&chain_id, checkpoint(2, 2), shorter, &mut actions).expect("a later slot");
        assert!(!after_reorg.conflicts_with(&next) && !after_reorg.conflicts_with(&first));
    }

    #[test]
    fn no_second_header_is_signed_for_a_slot_even_after_a_restart() {
        let mut chain = Records::new(testing::genesis(1, 1));
        let chain_id = chain.genesis.chain_id.clone();
        let mut actions = Vec::new();
        let mut guard = restart(&chain);
        let sealed = guard.sign_header(&chain_id, header(5, 1), 7, &mut actions).expect("first header");
        chain.keep(&mut actions, Durability::Synced);

        let mut guard = restart(&chain);
        let other = guard.sign_header(&chain_id, header(5, 2), 7, &mut actions);
        assert_eq!(other, Err(Refusal::HeaderSlot { slot: 7, signed_slot: 7, signed: sealed.hash() }));
        let earlier = guard.sign_header(&chain_id, header(4, 2), 6, &mut actions);
        assert!(matches!(earlier, Err(Refusal::HeaderSlot { slot: 6, .. })));
        assert_eq!(guard.sign_header(&chain_id, header(5, 1), 7, &mut actions), Ok(sealed));
        assert!(actions.is_empty());
        // The same height in a later slot is an honest proposer's next block.
        assert!(guard.sign_header(&chain_id, header(5, 2), 8, &mut actions).is_ok());
        assert_eq!(actions.len(), 1);
    }

    #[test]
    fn no_second_header_is_signed_for_a_term_and_height_even_after_a_kill() {
        let mut chain = Records::new(testing::genesis(1, 1));
        let chain_id = chain.genesis.chain_id.clone();
        let mut actions = Vec::new();
        let mut guard = restart(&chain);
        let sealed = guard.sign_turn_header(&chain_id, header(5, 1), 3, &mut actions).expect("first header");
        assert!(matches!(actions.as_slice(), [Action::Persist { durability: Durability::Logged, .. }]), "{actions:?}");
        chain.keep(&mut actions, Durability::Logged);

        let mut guard = restart(&chain);
        let other = guard.sign_turn_header(&chain_id, header(5, 2), 3, &mut actions);
        let refusal = Refusal::Turn {
            term: 3,
            height: Height::new(5),
            signed_term: 3,
            signed_height: Height::new(5),
            signed: sealed.hash(),
        };
        assert_eq!(other, Err(refusal));
        for (height, term) in [(4, 3), (6, 2)] {
            let got = guard.sign_turn_header(&chain_id, header(height, 2), term, &mut actions);
            assert!(matches!(got, Err(Refusal::Turn { .. })), "height {height} in term {term}: {got:?}");
        }
        assert_eq!(guard.sign_turn_header(&chain_id, header(5, 1), 3, &mut actions), Ok(sealed));
        assert!(actions.is_empty(), "a refusal or a repeat records nothing");
        // The next height in the term, then the same height again in a later term (the next
        // leader's block where the first never committed).
        assert!(guard.sign_turn_header(&chain_id, header(6, 2), 3, &mut actions).is_ok());
        assert!(guard.sign_turn_header(&chain_id, header(6, 3), 4, &mut actions).is_ok());
        assert_eq!(actions.len(), 2);
    }
}

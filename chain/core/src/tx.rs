//! Transactions: every kind SPEC names, their signing rule and their stateless checks.
//!
//! A transaction is valid in isolation (see [`SignedTransaction::check_stateless`]) before the
//! state machine looks at it; signatures are checked by the caller, in batches, from
//! [`SignedTransaction::signature_checks`].

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::codec::{self, Canonical, Decode, Encode};
use crate::crypto::{self, Address, Signature};
use crate::header::Header;
use crate::limits;
use crate::primitives::{Amount, ChainId, Hash, Height};

/// Signing-hash tags: one per kind of signed object, so a signature on one can never pass as
/// a signature on another.
pub(crate) const TX_SIGNING_TAG: &[u8] = b"chorus/tx/v1";
pub(crate) const VOTE_SIGNING_TAG: &[u8] = b"chorus/vote/v1";

/// What the sender signs.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Transaction {
    pub chain_id: ChainId,
    pub sender: Address,
    /// Must equal the sender's account nonce (the number of transactions it has sent).
    pub nonce: u64,
    pub fee: Amount,
    pub kind: TxKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxKind {
    Transfer {
        to: Address,
        amount: Amount,
    },
    /// Moves `amount` from balance to stake; the stake weighs the sender's votes.
    Stake {
        amount: Amount,
    },
    /// Moves `amount` from stake to an unbonding entry that returns to the balance after the
    /// genesis unbonding period.
    Unstake {
        amount: Amount,
    },
    RegisterDelegate,
    /// Approval voting: replaces the sender's previous vote; an empty list withdraws it.
    Vote {
        delegates: Vec<Address>,
    },
    /// Boxed: evidence is rare and large; every other kind stays small in memory.
    Evidence(Box<Evidence>),
}

impl TxKind {
    pub fn name(&self) -> &'static str {
        match self {
            TxKind::Transfer { .. } => "transfer",
            TxKind::Stake { .. } => "stake",
            TxKind::Unstake { .. } => "unstake",
            TxKind::RegisterDelegate => "register_delegate",
            TxKind::Vote { .. } => "vote",
            TxKind::Evidence(_) => "evidence",
        }
    }
}

/// A block a finality vote names: its height, its slot (FFG's epoch) and its hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode, Serialize, Deserialize)]
pub struct Checkpoint {
    pub height: Height,
    /// The block's slot (0 for genesis). Slots, unlike heights, only rise with time, so a
    /// validator whose branch lost can vote on the winner's next block at once.
    pub slot: u64,
    pub hash: Hash,
}

/// A finality vote, signed by a validator: a link from `source`, a block the voter saw
/// justified, to `target`, a descendant of it (Casper FFG's vote, with block slots as its
/// epochs). Two votes by one voter conflict when they have the same target slot, or when one's
/// span of slots surrounds the other's; either pair is slashable [`Evidence`].
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Vote {
    pub voter: Address,
    pub source: Checkpoint,
    pub target: Checkpoint,
    pub signature: Signature,
}

impl Vote {
    /// The digest the voter signs; it binds the chain id.
    pub fn signing_hash(chain_id: &ChainId, voter: &Address, source: &Checkpoint, target: &Checkpoint) -> Hash {
        crypto::signing_hash(VOTE_SIGNING_TAG, &codec::encode(&(chain_id, voter, source, target)))
    }

    pub fn signed(chain_id: &ChainId, key: &crypto::SecretKey, source: Checkpoint, target: Checkpoint) -> Vote {
        let voter = key.address();
        let signature = key.sign(Self::signing_hash(chain_id, &voter, &source, &target).as_bytes());
        Vote { voter, source, target, signature }
    }

    pub fn own_signing_hash(&self, chain_id: &ChainId) -> Hash {
        Self::signing_hash(chain_id, &self.voter, &self.source, &self.target)
    }

    /// Whether `self` and `other`, by one voter, could help finalize conflicting blocks: two
    /// different votes for one target slot, or one vote's span of slots strictly surrounding
    /// the other's.
    pub fn conflicts_with(&self, other: &Vote) -> bool {
        let surrounds =
            |outer: &Vote, inner: &Vote| outer.source.slot < inner.source.slot && inner.target.slot < outer.target.slot;
        self.voter == other.voter
            && ((self.target.slot == other.target.slot && (self.target != other.target || self.source != other.source))
                || surrounds(self, other)
                || surrounds(other, self))
    }
}

/// Proof that a validator signed two conflicting messages.
#[allow(clippy::large_enum_variant, reason = "held boxed in TxKind::Evidence")]
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Evidence {
    /// Two different headers signed by one proposer for one slot (never merely one height: an
    /// honest proposer's orphaned block can share a height with its next one).
    DoubleProposal { first: Header, second: Header },
    /// Two conflicting finality votes by one voter ([`Vote::conflicts_with`]).
    DoubleVote { first: Vote, second: Vote },
}

impl Evidence {
    pub fn offender(&self) -> Address {
        match self {
            Evidence::DoubleProposal { first, .. } => first.proposer,
            Evidence::DoubleVote { first, .. } => first.voter,
        }
    }

    /// The chain height the offence is dated at, for the state machine's evidence window: the
    /// lower of the two headers' heights, or the lower of the two votes' target heights.
    pub fn height(&self) -> Height {
        match self {
            Evidence::DoubleProposal { first, second } => first.height.min(second.height),
            Evidence::DoubleVote { first, second } => first.target.height.min(second.target.height),
        }
    }

    /// Identifies the offence, so the same offence is slashed once however it is reported (in
    /// either order): a double proposal by its slot, a vote pair by both votes' spans.
    pub fn offence_id(&self) -> Hash {
        let encoded = match self {
            Evidence::DoubleProposal { first, .. } => {
                codec::encode(&(self.offender(), 0u8, first.slot().unwrap_or(0), 0u64, 0u64, 0u64))
            }
            Evidence::DoubleVote { first, second } => {
                let span = |vote: &Vote| (vote.source.slot, vote.target.slot);
                let (low, high) = if span(first) <= span(second) { (first, second) } else { (second, first) };
                codec::encode(&(
                    self.offender(),
                    1u8,
                    low.source.slot,
                    low.target.slot,
                    high.source.slot,
                    high.target.slot,
                ))
            }
        };
        Hash::tagged(b"chorus/offence/v3", &encoded)
    }

    /// Structural conflict check (signatures are checked with the transaction's).
    fn check_conflict(&self) -> Result<(), TxError> {
        let conflicting = match self {
            Evidence::DoubleProposal { first, second } => {
                first.proposer == second.proposer
                    && first.slot().is_some()
                    && first.slot() == second.slot()
                    && first.hash() != second.hash()
            }
            Evidence::DoubleVote { first, second } => first.conflicts_with(second),
        };
        if conflicting { Ok(()) } else { Err(TxError::EvidenceNotConflicting) }
    }

    fn signature_checks(&self, chain_id: &ChainId, out: &mut Vec<SignatureCheck>) {
        match self {
            Evidence::DoubleProposal { first, second } => {
                for header in [first, second] {
                    if let Some(signature) = header.seal_signature() {
                        out.push(SignatureCheck {
                            signer: header.proposer,
                            digest: header.signing_hash(chain_id),
                            signature,
                        });
                    }
                }
            }
            Evidence::DoubleVote { first, second } => {
                for vote in [first, second] {
                    out.push(SignatureCheck {
                        signer: vote.voter,
                        digest: vote.own_signing_hash(chain_id),
                        signature: vote.signature,
                    });
                }
            }
        }
    }
}

/// A transaction with its sender's signature.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct SignedTransaction {
    pub tx: Transaction,
    pub signature: Signature,
}

impl Canonical for SignedTransaction {
    const BYTES_MAX: u32 = limits::TX_BYTES_MAX;
}

/// One signature a transaction or block needs checked: over a 32-byte digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignatureCheck {
    pub signer: Address,
    pub digest: Hash,
    pub signature: Signature,
}

impl SignatureCheck {
    pub fn item(&self) -> crypto::SignedItem<'_> {
        crypto::SignedItem { signer: &self.signer, message: self.digest.as_bytes(), signature: &self.signature }
    }
}

/// Why a transaction is invalid on its own, whatever the state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("transaction is for chain {got}, this chain is {expected}")]
    WrongChain { expected: ChainId, got: ChainId },
    #[error("{kind} amount must be positive")]
    ZeroAmount { kind: &'static str },
    #[error("vote names {got} delegates, limit {}", limits::VOTE_DELEGATES_MAX)]
    TooManyDelegates { got: usize },
    #[error("vote names delegate {delegate} twice")]
    DuplicateDelegate { delegate: Address },
    #[error("evidence does not show two conflicting signed messages by one signer")]
    EvidenceNotConflicting,
    #[error("transaction is {size_bytes} bytes, limit {}", limits::TX_BYTES_MAX)]
    TooLarge { size_bytes: usize },
    #[error("bad signature: {0}")]
    Signature(#[from] crypto::SignatureError),
}

impl Transaction {
    pub fn signing_hash(&self) -> Hash {
        crypto::signing_hash(TX_SIGNING_TAG, &codec::encode(self))
    }

    pub fn sign(self, key: &crypto::SecretKey) -> SignedTransaction {
        let signature = key.sign(self.signing_hash().as_bytes());
        SignedTransaction { tx: self, signature }
    }
}

impl SignedTransaction {
    /// The transaction id: SHA-256 of the signed encoding.
    pub fn hash(&self) -> Hash {
        Hash::digest(&codec::encode(self))
    }

    /// Checks everything that does not depend on state or signatures.
    pub fn check_stateless(&self, chain_id: &ChainId) -> Result<(), TxError> {
        let tx = &self.tx;
        if &tx.chain_id != chain_id {
            return Err(TxError::WrongChain { expected: chain_id.clone(), got: tx.chain_id.clone() });
        }
        match &tx.kind {
            TxKind::Transfer { amount, .. } | TxKind::Stake { amount } | TxKind::Unstake { amount } => {
                if amount.is_zero() {
                    return Err(TxError::ZeroAmount { kind: tx.kind.name() });
                }
            }
            TxKind::RegisterDelegate => {}
            TxKind::Vote { delegates } => {
                if delegates.len() > limits::VOTE_DELEGATES_MAX as usize {
                    return Err(TxError::TooManyDelegates { got: delegates.len() });
                }
                let mut seen = BTreeSet::new();
                if let Some(twice) = delegates.iter().find(|delegate| !seen.insert(**delegate)) {
                    return Err(TxError::DuplicateDelegate { delegate: *twice });
                }
            }
            TxKind::Evidence(evidence) => evidence.check_conflict()?,
        }
        Ok(())
    }

    /// Appends every signature this transaction needs checked: the sender's, and for evidence
    /// the offender's two.
    pub fn signature_checks(&self, out: &mut Vec<SignatureCheck>) {
        out.push(SignatureCheck { signer: self.tx.sender, digest: self.tx.signing_hash(), signature: self.signature });
        if let TxKind::Evidence(evidence) = &self.tx.kind {
            evidence.signature_checks(&self.tx.chain_id, out);
        }
    }

    /// Stateless checks plus all signatures, one by one: for single transactions (mempool,
    /// RPC). Blocks batch their signatures instead.
    pub fn verify(&self, chain_id: &ChainId) -> Result<(), TxError> {
        self.check_stateless(chain_id)?;
        let mut checks = Vec::with_capacity(3);
        self.signature_checks(&mut checks);
        for check in &checks {
            crypto::verify(&check.signer, check.digest.as_bytes(), &check.signature)?;
        }
        Ok(())
    }

    /// [`SignedTransaction::verify`], keeping the proof that it passed: so the checks can run on
    /// any thread and whoever admits the transaction later need not repeat them.
    pub fn verified(self, chain_id: &ChainId) -> Result<VerifiedTx, TxError> {
        self.verify(chain_id)?;
        Ok(VerifiedTx { tx: self })
    }
}

/// [`SignedTransaction::verified`] for many transactions at once, in order: each one's
/// stateless rules, then every signature in one batch over all cores (about twice the rate of
/// checking them one by one), but those of the transactions `verified` names (checked before:
/// the same hash is the same signed bytes). When the batch fails, the transactions that passed
/// the stateless rules are checked one by one, so each invalid one gets its own error and the
/// rest pass.
pub fn verify_many(
    txs: Vec<SignedTransaction>,
    chain_id: &ChainId,
    verified: crate::block::Verified<'_>,
) -> Vec<Result<VerifiedTx, TxError>> {
    let stateless: Vec<Result<SignedTransaction, TxError>> =
        txs.into_iter().map(|tx| tx.check_stateless(chain_id).map(|()| tx)).collect();
    let mut checks = Vec::with_capacity(stateless.len());
    for tx in stateless.iter().flatten() {
        if !verified(&tx.hash()) {
            tx.signature_checks(&mut checks);
        }
    }
    let items: Vec<crypto::SignedItem<'_>> = checks.iter().map(SignatureCheck::item).collect();
    let all_valid = crypto::verify_batch_parallel(&items).is_ok();
    stateless
        .into_iter()
        .map(|checked| match checked {
            Ok(tx) if all_valid => Ok(VerifiedTx { tx }),
            Ok(tx) => tx.verified(chain_id),
            Err(error) => Err(error),
        })
        .collect()
}

/// A transaction that passed [`SignedTransaction::verify`] for the chain its `chain_id` names
/// (the check refuses any other); made only by [`SignedTransaction::verified`] and [`verify_many`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedTx {
    tx: SignedTransaction,
}

impl VerifiedTx {
    pub fn tx(&self) -> &SignedTransaction {
        &self.tx
    }

    pub fn into_inner(self) -> SignedTransaction {
        self.tx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    fn transfer(chain_id: &ChainId, from: u32, nonce: u64) -> SignedTransaction {
        let kind = TxKind::Transfer { to: testing::key(99).address(), amount: Amount::new(1) };
        Transaction {
            chain_id: chain_id.clone(),
            sender: testing::key(from).address(),
            nonce,
            fee: Amount::new(1),
            kind,
        }
        .sign(&testing::key(from))
    }

    #[test]
    fn many_transactions_verify_together_and_each_invalid_one_gets_its_own_error() {
        let chain_id = ChainId::new("test").unwrap();
        // Enough for the parallel batch.
        let valid: Vec<SignedTransaction> = (0..80).map(|nonce| transfer(&chain_id, 1, nonce)).collect();
        let none = &crate::block::none_verified;
        let checked = verify_many(valid.clone(), &chain_id, none);
        assert!(checked.iter().zip(&valid).all(|(result, tx)| result.as_ref().is_ok_and(|ok| ok.tx() == tx)));

        let mut mixed = valid.clone();
        mixed[7].signature = transfer(&chain_id, 2, 7).signature;
        mixed[50].tx.chain_id = ChainId::new("other").unwrap();
        let checked = verify_many(mixed.clone(), &chain_id, none);
        for (index, result) in checked.iter().enumerate() {
            match index {
                7 => assert!(matches!(result, Err(TxError::Signature(_))), "{result:?}"),
                50 => assert!(matches!(result, Err(TxError::WrongChain { .. })), "{result:?}"),
                _ => assert!(result.is_ok(), "transaction {index}: {result:?}"),
            }
        }
        assert!(verify_many(Vec::new(), &chain_id, none).is_empty());
        // Signatures checked before are not checked again; the transaction's own rules are.
        let known: BTreeSet<Hash> = mixed.iter().map(SignedTransaction::hash).collect();
        let checked = verify_many(mixed, &chain_id, &|hash| known.contains(hash));
        assert!(checked[7].is_ok(), "named as checked before");
        assert!(matches!(checked[50], Err(TxError::WrongChain { .. })));
    }
}

//! The mempool: transactions validated against the head state, waiting for a block.
//!
//! Admission checks the signature and the stateless rules, the fee floor, and the nonce against
//! the sender's account (not used yet, at most `MEMPOOL_NONCE_GAP_MAX` ahead). A pending
//! (sender, nonce) is replaced only by a fee at least `MEMPOOL_REPLACE_FEE_BUMP_PERMILLE`
//! higher. When full, the lowest-fee transaction (the last nonce of its sender, so no gap
//! opens) is evicted if the newcomer pays more. Selection for a block takes each sender's
//! transactions in nonce order from the account's nonce, and across senders the highest fee
//! first. After the head moves, included transactions leave and those of rolled-back blocks
//! come back ([`Mempool::on_head_change`]). Every bound is in `chorus_chain::limits`.
//!
//! A node that stops cleanly keeps its pending transactions in a file ([`encode_file`],
//! [`decode_file`]) and offers them again at start-up, as Bitcoin Core's `mempool.dat` does.

use std::collections::{BTreeMap, BTreeSet};

use chorus_chain::codec;
use chorus_chain::crypto::Address;
use chorus_chain::genesis::Genesis;
use chorus_chain::limits;
use chorus_chain::primitives::{Amount, Hash};
use chorus_chain::state::{self, ReadError, StateRead};
use chorus_chain::tx::{SignedTransaction, TxError, TxKind, VerifiedTx};

/// Where a transaction comes from: what admission must still check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// From a peer or a caller: everything.
    Unchecked,
    /// Signatures checked by the caller for this chain ([`VerifiedTx`]).
    Verified,
    /// From a block a reorg rolled back: signatures checked at import, and not held to the
    /// per-sender count or nonce gap.
    Returned,
}

/// The first bytes of a mempool file (format version 1).
const FILE_MAGIC: &[u8; 8] = b"chorusm1";

/// Why a mempool file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("not a mempool file (no {:?} header)", std::str::from_utf8(FILE_MAGIC).unwrap_or("?"))]
    Magic,
    #[error("{size_bytes} bytes, limit {}", limits::MEMPOOL_FILE_BYTES_MAX)]
    TooLarge { size_bytes: u64 },
    #[error("cut short at byte {at}")]
    Truncated { at: usize },
    #[error("transaction {index}: {error}")]
    Transaction { index: usize, error: codec::CodecError },
}

/// A mempool file: the magic, then each transaction's canonical encoding after its length
/// (u32, little-endian).
pub fn encode_file(txs: &[SignedTransaction]) -> Vec<u8> {
    let mut out = FILE_MAGIC.to_vec();
    for tx in txs {
        let bytes = codec::encode(tx);
        out.extend_from_slice(&u32::try_from(bytes.len()).expect("invariant: a transaction is small").to_le_bytes());
        out.extend_from_slice(&bytes);
    }
    out
}

/// Reads a mempool file strictly: the size limit, the header, every length and every
/// transaction's canonical decoding.
pub fn decode_file(bytes: &[u8]) -> Result<Vec<SignedTransaction>, FileError> {
    if bytes.len() as u64 > limits::MEMPOOL_FILE_BYTES_MAX {
        return Err(FileError::TooLarge { size_bytes: bytes.len() as u64 });
    }
    let mut rest = bytes.strip_prefix(FILE_MAGIC.as_slice()).ok_or(FileError::Magic)?;
    let mut txs = Vec::new();
    while !rest.is_empty() {
        let at = bytes.len().saturating_sub(rest.len());
        let (length, after) = rest.split_first_chunk::<4>().ok_or(FileError::Truncated { at })?;
        let length = u32::from_le_bytes(*length) as usize;
        let (tx, after) = after.split_at_checked(length).ok_or(FileError::Truncated { at })?;
        let tx = codec::decode(tx).map_err(|error| FileError::Transaction { index: txs.len(), error })?;
        txs.push(tx);
        rest = after;
    }
    Ok(txs)
}

/// What a transaction takes from its sender's balance: the fee, and what a transfer sends or a
/// stake locks. `None` on overflow.
fn cost(tx: &SignedTransaction) -> Option<Amount> {
    match &tx.tx.kind {
        TxKind::Transfer { amount, .. } | TxKind::Stake { amount } => tx.tx.fee.checked_add(*amount).ok(),
        _ => Some(tx.tx.fee),
    }
}

/// Why a transaction was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MempoolError {
    #[error(transparent)]
    Invalid(#[from] TxError),
    #[error("fee {got} is below the minimum {min}")]
    FeeTooLow { min: Amount, got: Amount },
    #[error("nonce {got} already used, next is {next}")]
    NonceUsed { got: u64, next: u64 },
    #[error("nonce {got} is too far ahead: next is {next}, at most {} ahead are held", limits::MEMPOOL_NONCE_GAP_MAX)]
    NonceTooFarAhead { got: u64, next: u64 },
    #[error("transaction {hash} is already pending")]
    Duplicate { hash: Hash },
    #[error("nonce {nonce} is pending with fee {pending_fee}; a replacement needs a fee of at least {needed}")]
    ReplacementFeeTooLow { nonce: u64, pending_fee: Amount, needed: Amount },
    #[error("sender {sender} already has {} pending transactions", limits::MEMPOOL_TXS_PER_SENDER_MAX)]
    SenderFull { sender: Address },
    #[error("mempool is full and fee {fee} does not beat the lowest pending fee {lowest}")]
    Full { fee: Amount, lowest: Amount },
    #[error(
        "insufficient balance: needs {needed} for this transaction and the sender's pending ones before it, has {available}"
    )]
    InsufficientBalance { needed: Amount, available: Amount },
    #[error("state read failed: {0}")]
    Read(#[from] ReadError),
}

#[derive(Debug, Clone)]
struct Pending {
    tx: SignedTransaction,
    hash: Hash,
    size_bytes: u64,
}

#[derive(Debug, Default)]
pub struct Mempool {
    by_sender: BTreeMap<Address, BTreeMap<u64, Pending>>,
    hashes: BTreeSet<Hash>,
    /// (fee, sender, nonce) of every pending transaction: eviction picks the lowest.
    by_fee: BTreeSet<(Amount, Address, u64)>,
    size_bytes: u64,
}

impl Mempool {
    pub fn new() -> Mempool {
        Mempool::default()
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// Every pending transaction, each sender's in nonce order: the order to offer them again.
    pub fn pending(&self) -> Vec<SignedTransaction> {
        self.by_sender.values().flat_map(|pending| pending.values().map(|entry| entry.tx.clone())).collect()
    }

    pub fn contains(&self, hash: &Hash) -> bool {
        self.hashes.contains(hash)
    }

    /// Validates `tx` (signatures included) against the head state `state` and admits it.
    pub fn insert<S: StateRead + ?Sized>(
        &mut self,
        tx: SignedTransaction,
        state: &S,
        genesis: &Genesis,
    ) -> Result<Hash, MempoolError> {
        self.admit(tx, Source::Unchecked, state, genesis)
    }

    /// [`Mempool::insert`] for a transaction whose signatures were checked already. Checked
    /// for another chain, it is checked again here (and refused for its chain id).
    pub fn insert_verified<S: StateRead + ?Sized>(
        &mut self,
        tx: VerifiedTx,
        state: &S,
        genesis: &Genesis,
    ) -> Result<Hash, MempoolError> {
        let source = if tx.tx().tx.chain_id == genesis.chain_id { Source::Verified } else { Source::Unchecked };
        self.admit(tx.into_inner(), source, state, genesis)
    }

    fn admit<S: StateRead + ?Sized>(
        &mut self,
        tx: SignedTransaction,
        source: Source,
        state: &S,
        genesis: &Genesis,
    ) -> Result<Hash, MempoolError> {
        let hash = tx.hash();
        if self.hashes.contains(&hash) {
            return Err(MempoolError::Duplicate { hash });
        }
        let min = genesis.params.min_tx_fee;
        if tx.tx.fee < min {
            return Err(MempoolError::FeeTooLow { min, got: tx.tx.fee });
        }
        let sender = tx.tx.sender;
        let nonce = tx.tx.nonce;
        let account = state::read_account(state, &sender)?;
        let next = account.nonce;
        if nonce < next {
            return Err(MempoolError::NonceUsed { got: nonce, next });
        }
        let returned = source == Source::Returned;
        if nonce.saturating_sub(next) >= limits::MEMPOOL_NONCE_GAP_MAX && !returned {
            return Err(MempoolError::NonceTooFarAhead { got: nonce, next });
        }
        // After the cheap checks, so a stale or duplicate transaction costs no signature check.
        if source == Source::Unchecked {
            tx.verify(&genesis.chain_id)?;
        }
        // The sender must be able to pay for this transaction after the ones before it.
        let before = self
            .by_sender
            .get(&sender)
            .into_iter()
            .flat_map(|pending| pending.range(..nonce))
            .map(|(_, pending)| cost(&pending.tx));
        let needed = before.chain([cost(&tx)]).try_fold(Amount::ZERO, |sum, cost| sum.checked_add(cost?).ok());
        match needed {
            Some(needed) if needed <= account.balance => {}
            needed => {
                let needed = needed.unwrap_or(Amount::new(u128::MAX));
                return Err(MempoolError::InsufficientBalance { needed, available: account.balance });
            }
        }

        let replaced = self.by_sender.get(&sender).and_then(|pending| pending.get(&nonce)).cloned();
        if let Some(old) = &replaced {
            let needed = old
                .tx
                .tx
                .fee
                .checked_add(old.tx.tx.fee.permille(limits::MEMPOOL_REPLACE_FEE_BUMP_PERMILLE))
                .unwrap_or(Amount::new(u128::MAX));
            if tx.tx.fee < needed {
                return Err(MempoolError::ReplacementFeeTooLow { nonce, pending_fee: old.tx.tx.fee, needed });
            }
        } else {
            let sender_count = self.by_sender.get(&sender).map_or(0, BTreeMap::len);
            if sender_count >= limits::MEMPOOL_TXS_PER_SENDER_MAX as usize && !returned {
                return Err(MempoolError::SenderFull { sender });
            }
        }
        let size_bytes = codec::encode(&tx).len() as u64;
        if replaced.is_some() {
            self.remove(&sender, nonce);
        }
        while self.hashes.len() >= limits::MEMPOOL_TXS_MAX as usize
            || self.size_bytes.saturating_add(size_bytes) > limits::MEMPOOL_BYTES_MAX
        {
            let Some(&(lowest, victim, _)) = self.by_fee.first() else { break };
            if lowest >= tx.tx.fee {
                return Err(MempoolError::Full { fee: tx.tx.fee, lowest });
            }
            // Evict the victim sender's last nonce, so no gap opens in its sequence.
            let last = self.by_sender.get(&victim).and_then(|pending| pending.keys().next_back().copied());
            match last {
                Some(last) => self.remove(&victim, last),
                None => break,
            }
        }
        self.by_fee.insert((tx.tx.fee, sender, nonce));
        self.hashes.insert(hash);
        self.size_bytes = self.size_bytes.saturating_add(size_bytes);
        self.by_sender.entry(sender).or_default().insert(nonce, Pending { tx, hash, size_bytes });
        Ok(hash)
    }

    fn remove(&mut self, sender: &Address, nonce: u64) {
        let Some(pending) = self.by_sender.get_mut(sender) else { return };
        if let Some(entry) = pending.remove(&nonce) {
            self.by_fee.remove(&(entry.tx.tx.fee, *sender, nonce));
            self.hashes.remove(&entry.hash);
            self.size_bytes = self.size_bytes.saturating_sub(entry.size_bytes);
        }
        if pending.is_empty() {
            self.by_sender.remove(sender);
        }
    }

    /// The nonce a new transaction from `sender` should carry: after `committed` (the account's
    /// nonce at the head), past the sender's pending transactions that follow it without a gap.
    pub fn next_nonce(&self, sender: &Address, committed: u64) -> u64 {
        let mut next = committed;
        if let Some(pending) = self.by_sender.get(sender) {
            for nonce in pending.range(committed..).map(|(nonce, _)| *nonce) {
                if nonce != next {
                    break;
                }
                next = next.saturating_add(1);
            }
        }
        next
    }

    /// Removes one transaction (e.g. one a block build found invalid).
    pub fn remove_tx(&mut self, tx: &SignedTransaction) {
        self.remove(&tx.tx.sender, tx.tx.nonce);
    }

    /// Transactions for a block on the head state `state`: each sender's consecutive nonces from
    /// its account's nonce, senders interleaved by fee (highest first, then by address), up to
    /// `limits::BLOCK_TXS_MAX` and about `limits::BLOCK_BYTES_MAX` in size.
    pub fn select<S: StateRead + ?Sized>(&self, state: &S) -> Result<Vec<SignedTransaction>, ReadError> {
        // Per sender: the runnable sequence, as an iterator over its pending nonces.
        let mut queues: BTreeMap<Address, Vec<&Pending>> = BTreeMap::new();
        for (sender, pending) in &self.by_sender {
            let mut next = state::read_account(state, sender)?.nonce;
            let run: Vec<&Pending> = pending
                .range(next..)
                .take_while(|(nonce, _)| {
                    let consecutive = **nonce == next;
                    next = next.saturating_add(1);
                    consecutive
                })
                .map(|(_, entry)| entry)
                .collect();
            if !run.is_empty() {
                queues.insert(*sender, run);
            }
        }
        // Heads of the queues, best fee first; ties by sender address (deterministic).
        let mut heads: BTreeSet<(std::cmp::Reverse<Amount>, Address, usize)> = queues
            .iter()
            .filter_map(|(sender, run)| run.first().map(|first| (std::cmp::Reverse(first.tx.tx.fee), *sender, 0)))
            .collect();
        let mut selected = Vec::new();
        let mut size_bytes: u64 = 0;
        // Room for the header and the votes in the block.
        const BUDGET_BYTES: u64 = limits::BLOCK_BYTES_MAX as u64 - limits::BLOCK_BYTES_MAX as u64 / 8;
        while let Some((_, sender, index)) = heads.pop_first() {
            if selected.len() >= limits::BLOCK_TXS_MAX as usize {
                break;
            }
            let Some(run) = queues.get(&sender) else { continue };
            let Some(entry) = run.get(index) else { continue };
            let with_entry = size_bytes.saturating_add(entry.size_bytes);
            if with_entry > BUDGET_BYTES {
                continue; // this sender's later nonces cannot go in either
            }
            size_bytes = with_entry;
            selected.push(entry.tx.clone());
            let next_index = index.saturating_add(1);
            if let Some(next) = run.get(next_index) {
                heads.insert((std::cmp::Reverse(next.tx.tx.fee), sender, next_index));
            }
        }
        Ok(selected)
    }

    /// After the head moved: drops what the new state has used (included transactions and
    /// anything else with a spent nonce), then takes back the transactions of rolled-back blocks,
    /// given oldest first. Their signatures were checked when their blocks were imported, and
    /// the per-sender count and nonce gap limits do not apply to them (a sender may have had
    /// more than those in the blocks a reorg undid); every other rule does, and those no longer
    /// valid are dropped. Returns the ones taken back, for the node to relay: the winning
    /// chain's producers may never have seen them.
    pub fn on_head_change<S: StateRead + ?Sized>(
        &mut self,
        state: &S,
        genesis: &Genesis,
        returned: Vec<SignedTransaction>,
    ) -> Result<Vec<SignedTransaction>, ReadError> {
        let senders: Vec<Address> = self.by_sender.keys().copied().collect();
        for sender in senders {
            let account = state::read_account(state, &sender)?;
            let next = account.nonce;
            let spent: Vec<u64> = self
                .by_sender
                .get(&sender)
                .map(|pending| pending.range(..next).map(|(nonce, _)| *nonce).collect())
                .unwrap_or_default();
            for nonce in spent {
                self.remove(&sender, nonce);
            }
        }
        let mut taken = Vec::new();
        for tx in returned {
            match self.admit(tx.clone(), Source::Returned, state, genesis) {
                Ok(_) => taken.push(tx),
                Err(MempoolError::Read(error)) => return Err(error),
                Err(_) => {}
            }
        }
        Ok(taken)
    }
}

#[cfg(test)]
mod tests {
    use chorus_chain::state::memory::MemoryState;
    use chorus_chain::testing;
    use chorus_chain::tx::TxKind;

    use super::*;

    fn transfer(genesis: &Genesis, from: u32, nonce: u64, fee: u128) -> SignedTransaction {
        let mut tx = testing::signed(
            genesis,
            &testing::key(from),
            nonce,
            TxKind::Transfer { to: testing::key(9).address(), amount: Amount::new(1) },
        )
        .tx;
        tx.fee = Amount::new(fee);
        tx.sign(&testing::key(from))
    }

    #[test]
    fn admission_rules_say_what_was_wrong() {
        let genesis = testing::genesis(3, 1_000);
        let (state, _) = MemoryState::from_genesis(&genesis).unwrap();
        let mut pool = Mempool::new();
        pool.insert(transfer(&genesis, 0, 0, 10), &state, &genesis).unwrap();
        assert!(matches!(
            pool.insert(transfer(&genesis, 0, 0, 10), &state, &genesis),
            Err(MempoolError::Duplicate { .. })
        ));
        // Same nonce: 10% more is needed to replace.
        let error = pool.insert(transfer(&genesis, 0, 0, 9), &state, &genesis).unwrap_err();
        assert_eq!(error.to_string(), "nonce 0 is pending with fee 10; a replacement needs a fee of at least 11");
        pool.insert(transfer(&genesis, 0, 0, 11), &state, &genesis).unwrap();
        assert_eq!(pool.len(), 1, "the replacement took the place of the old transaction");

        let error = pool.insert(transfer(&genesis, 1, 0, 0), &state, &genesis).unwrap_err();
        assert!(matches!(error, MempoolError::FeeTooLow { .. }), "{error}");
        let error = pool.insert(transfer(&genesis, 1, limits::MEMPOOL_NONCE_GAP_MAX, 5), &state, &genesis).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "nonce {} is too far ahead: next is 0, at most {} ahead are held",
                limits::MEMPOOL_NONCE_GAP_MAX,
                limits::MEMPOOL_NONCE_GAP_MAX
            )
        );
        let mut forged = transfer(&genesis, 1, 0, 5);
        forged.tx.fee = Amount::new(6);
        assert!(matches!(pool.insert(forged, &state, &genesis), Err(MempoolError::Invalid(_))));
        assert_eq!(pool.len(), 1);

        // Balance 1,000: two transactions costing 401 each fit, a third does not.
        pool.insert(transfer(&genesis, 2, 0, 400), &state, &genesis).unwrap();
        pool.insert(transfer(&genesis, 2, 1, 400), &state, &genesis).unwrap();
        assert_eq!(pool.next_nonce(&testing::key(2).address(), 0), 2, "past the pending ones");
        assert_eq!(pool.next_nonce(&testing::key(1).address(), 0), 0);
        let error = pool.insert(transfer(&genesis, 2, 2, 400), &state, &genesis).unwrap_err();
        assert_eq!(
            error.to_string(),
            "insufficient balance: needs 1203 for this transaction and the sender's pending ones before it, has 1000"
        );
    }

    #[test]
    fn a_verified_transaction_is_admitted_by_the_same_rules_and_only_for_its_chain() {
        let genesis = testing::genesis(3, 1_000);
        let (state, _) = MemoryState::from_genesis(&genesis).unwrap();
        let mut pool = Mempool::new();
        let tx = transfer(&genesis, 0, 0, 10);
        let hash = pool.insert_verified(tx.clone().verified(&genesis.chain_id).unwrap(), &state, &genesis).unwrap();
        assert_eq!(hash, tx.hash());
        // The state rules still apply.
        let again = tx.clone().verified(&genesis.chain_id).unwrap();
        assert!(matches!(pool.insert_verified(again, &state, &genesis), Err(MempoolError::Duplicate { .. })));
        // Checked for another chain: the mempool checks for itself, and the chain id is wrong.
        let mut other = genesis.clone();
        other.chain_id = chorus_chain::primitives::ChainId::new("another-chain").unwrap();
        let elsewhere = transfer(&other, 1, 0, 10).verified(&other.chain_id).unwrap();
        let error = pool.insert_verified(elsewhere, &state, &genesis).unwrap_err();
        assert!(matches!(error, MempoolError::Invalid(TxError::WrongChain { .. })), "{error}");
        // A forged transaction cannot be made verified at all.
        let mut forged = transfer(&genesis, 1, 0, 5);
        forged.tx.fee = Amount::new(6);
        assert!(forged.verified(&genesis.chain_id).is_err());
        assert_eq!(pool.len(), 1);
    }

    #[test]
    fn a_reorg_takes_back_more_than_one_sender_may_submit_and_drops_what_no_longer_fits() {
        let genesis = testing::genesis(3, 1_000);
        let (state, _) = MemoryState::from_genesis(&genesis).unwrap();
        let mut pool = Mempool::new();
        // Rolled-back blocks held 100 transfers of one sender (more than the per-sender limit and
        // the nonce gap), oldest first; one of another sender costs more than it has.
        let count = limits::MEMPOOL_TXS_PER_SENDER_MAX as u64 + 36;
        let mut returned: Vec<SignedTransaction> = (0..count).map(|nonce| transfer(&genesis, 0, nonce, 5)).collect();
        returned.push(transfer(&genesis, 1, 0, 5_000));
        let taken = pool.on_head_change(&state, &genesis, returned.clone()).unwrap();
        assert_eq!(taken, returned[..count as usize], "all of sender 0's, none of the unpayable one");
        assert_eq!(pool.len(), count as usize);
        assert_eq!(pool.next_nonce(&testing::key(0).address(), 0), count);
        // New submissions are still held to the limits.
        let error = pool.insert(transfer(&genesis, 0, count, 5), &state, &genesis).unwrap_err();
        assert!(matches!(error, MempoolError::NonceTooFarAhead { .. }), "{error}");
        // Taken back again (a second reorg): duplicates are not taken twice.
        assert!(pool.on_head_change(&state, &genesis, returned).unwrap().is_empty());
    }

    #[test]
    fn the_mempool_file_keeps_every_pending_transaction_and_refuses_damage_with_a_reason() {
        let genesis = testing::genesis(3, 1_000);
        let (state, _) = MemoryState::from_genesis(&genesis).unwrap();
        let mut pool = Mempool::new();
        for (from, nonce) in [(1, 0), (0, 1), (0, 0), (2, 5)] {
            pool.insert(transfer(&genesis, from, nonce, 10), &state, &genesis).unwrap();
        }
        let pending = pool.pending();
        assert_eq!(pending.len(), 4);
        let file = encode_file(&pending);
        assert_eq!(decode_file(&file).unwrap(), pending);
        // Offered again in that order, all are admitted (nonce 1 after nonce 0).
        let mut again = Mempool::new();
        for tx in decode_file(&file).unwrap() {
            again.insert(tx, &state, &genesis).unwrap();
        }
        assert_eq!(again.pending(), pending);

        assert_eq!(decode_file(b"").unwrap_err(), FileError::Magic);
        assert_eq!(decode_file(b"chorusm2").unwrap_err(), FileError::Magic);
        assert_eq!(decode_file(FILE_MAGIC).unwrap(), Vec::<SignedTransaction>::new());
        let last_at = file.len() - 4 - codec::encode(&pending[3]).len();
        assert_eq!(decode_file(&file[..file.len() - 1]).unwrap_err(), FileError::Truncated { at: last_at });
        let mut longer = file.clone();
        longer.extend_from_slice(&[1, 0]);
        assert_eq!(decode_file(&longer).unwrap_err(), FileError::Truncated { at: file.len() });
        let mut garbage = file.clone();
        garbage.extend_from_slice(&[3, 0, 0, 0, 0xff, 0xff, 0xff]);
        assert!(matches!(decode_file(&garbage).unwrap_err(), FileError::Transaction { index: 4, .. }));
        let huge = vec![0; limits::MEMPOOL_FILE_BYTES_MAX as usize + 1];
        assert!(matches!(decode_file(&huge).unwrap_err(), FileError::TooLarge { .. }));
    }

    #[test]
    fn selection_orders_by_fee_and_keeps_nonce_order() {
        let genesis = testing::genesis(3, 1_000);
        let (state, _) = MemoryState::from_genesis(&genesis).unwrap();
        let mut pool = Mempool::new();
        // Sender 0: nonces 0, 1 (fees 5, 50); sender 1: nonce 0 fee 20; sender 2: nonce 1 only (a gap).
        for (from, nonce, fee) in [(0, 1, 50), (0, 0, 5), (1, 0, 20), (2, 1, 99)] {
            pool.insert(transfer(&genesis, from, nonce, fee), &state, &genesis).unwrap();
        }
        let picked: Vec<(u64, u128)> =
            pool.select(&state).unwrap().iter().map(|tx| (tx.tx.nonce, tx.tx.fee.get())).collect();
        assert_eq!(picked, vec![(0, 20), (0, 5), (1, 50)], "gapped sender 2 waits");
    }

    #[test]
    fn head_changes_drop_used_nonces_and_return_rolled_back_transactions() {
        let genesis = testing::genesis(3, 1_000);
        let (mut state, genesis_block) = MemoryState::from_genesis(&genesis).unwrap();
        let mut pool = Mempool::new();
        let first = transfer(&genesis, 0, 0, 5);
        let second = transfer(&genesis, 0, 1, 5);
        pool.insert(first.clone(), &state, &genesis).unwrap();
        pool.insert(second.clone(), &state, &genesis).unwrap();
        let template = state::BlockTemplate {
            txs: vec![first.clone()],
            votes: vec![],
            proposer: testing::key(5).address(),
            timestamp: chorus_chain::Timestamp::from_millis(genesis_block.header.timestamp.as_millis() + 1),
        };
        let block = state::build_block(&state, &genesis, &genesis_block.header, template).unwrap();
        let fresh = state.clone();
        let outcome = state::apply_block(&state, &genesis, &genesis_block.header, &block).unwrap();
        state.commit_outcome(&outcome);
        pool.on_head_change(&state, &genesis, vec![]).unwrap();
        assert!(!pool.contains(&first.hash()) && pool.contains(&second.hash()));
        // The block is rolled back: its transaction comes back.
        pool.on_head_change(&fresh, &genesis, vec![first.clone()]).unwrap();
        assert!(pool.contains(&first.hash()) && pool.contains(&second.hash()));
        assert_eq!(pool.len(), 2);
    }
}

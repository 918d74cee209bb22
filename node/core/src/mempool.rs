//! The mempool: transactions validated against the head state, waiting for a block.
//!
//! Admission checks the cheap rules first and the signature last: not already held, the fee
//! floor, the nonce against the sender's account (not used yet, at most `MEMPOOL_NONCE_GAP_MAX`
//! ahead), and that the sender's balance pays for everything it has pending plus this one,
//! whatever order they arrived in. A pending (sender, nonce) is replaced only by a fee at least
//! `MEMPOOL_REPLACE_FEE_BUMP_PERMILLE` higher.
//!
//! Each sender's transactions are split in two: the *ready* run, consecutive nonces from the
//! account's, which blocks take and the node relays; and the *gapped* ones after a missing
//! nonce, which cost nothing to send, so they are held apart (`MEMPOOL_GAPPED_TXS_MAX`, and
//! `MEMPOOL_GAPPED_PER_SENDER_MAX` per sender), never relayed, and dropped after
//! `MEMPOOL_GAPPED_EXPIRY_BLOCKS` (counted again after a restart). When the missing nonce
//! arrives, those it releases join the run and are relayed ([`Admitted::ready`]).
//!
//! When full, the lowest-fee transaction (the last nonce of its sender, so no gap opens) is
//! evicted if the newcomer pays more. Selection for a block takes each sender's ready run in
//! nonce order, and across senders the highest fee first. After the head moves, spent and
//! unpayable transactions leave, the runs are split again, and those of rolled-back blocks
//! come back ([`Mempool::on_head_change`]). Every bound is in `chorus_chain::limits`.
//!
//! A node that stops cleanly keeps its transactions in a file ([`encode_file`],
//! [`decode_file`], from [`chorus_chain::mempool_file`]) and offers them again at start-up, as
//! Bitcoin Core's `mempool.dat` does.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chorus_chain::codec;
use chorus_chain::crypto::Address;
use chorus_chain::genesis::Genesis;
use chorus_chain::limits;
pub use chorus_chain::mempool_file::{FileError, decode as decode_file, encode as encode_file};
use chorus_chain::primitives::{Amount, Hash, Height};
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
    #[error(
        "sender {sender} already has {} transactions waiting after a nonce gap; send the missing nonce first",
        limits::MEMPOOL_GAPPED_PER_SENDER_MAX
    )]
    GapFull { sender: Address },
    #[error("mempool is full and fee {fee} does not beat the lowest pending fee {lowest}")]
    Full { fee: Amount, lowest: Amount },
    #[error(
        "insufficient balance: needs {needed} for this transaction and the sender's other pending ones, has {available}"
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
    /// The head's height when it arrived: a gapped transaction expires from it.
    arrived: Height,
}

/// What admitting a transaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    pub hash: Hash,
    /// Transactions that became ready to go in a block, to relay, in nonce order: the admitted
    /// one unless it waits after a gap, and those waiting on its nonce. Gapped transactions are
    /// never relayed.
    pub ready: Vec<SignedTransaction>,
}

impl Admitted {
    /// Whether the admitted transaction itself is ready (and so worth forwarding).
    pub fn is_ready(&self) -> bool {
        self.ready.iter().any(|tx| tx.hash() == self.hash)
    }
}

/// What readers beside the node's thread (the RPC server) see of the pool: which transactions
/// it holds and where each sender's ready run ends. The pool publishes its changes at the end
/// of each call that makes them, under one lock, so a reader sees the pool between calls,
/// never midway (a transaction taken out and put back in the course of a head change is never
/// missing from it); a reader holds the lock for one lookup.
#[derive(Debug, Clone, Default)]
pub struct PoolIndex {
    shared: Arc<Mutex<Indexed>>,
}

#[derive(Debug, Default)]
struct Indexed {
    hashes: BTreeSet<Hash>,
    /// Per sender with a ready run: the nonce after its last.
    ready_ends: BTreeMap<Address, u64>,
}

impl PoolIndex {
    fn lock(&self) -> MutexGuard<'_, Indexed> {
        // Nothing panics while holding it; a poisoned lock still holds a whole index.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the pool holds the transaction.
    pub fn contains(&self, hash: &Hash) -> bool {
        self.lock().hashes.contains(hash)
    }

    /// The nonce a new transaction from `sender` should carry, `committed` being its account's
    /// nonce at a head read apart from the pool: past the sender's ready run. A head read
    /// before the pool's takes the run's end; one read after a block the pool has not caught up
    /// with takes the account's nonce if it is further.
    pub fn next_nonce(&self, sender: &Address, committed: u64) -> u64 {
        self.lock().ready_ends.get(sender).map_or(committed, |end| committed.max(*end))
    }
}

#[derive(Debug, Default)]
pub struct Mempool {
    /// Per sender, by nonce: the run that follows the account's nonce at the head without a gap.
    ready: BTreeMap<Address, BTreeMap<u64, Pending>>,
    /// Per sender, by nonce: transactions after a gap, waiting for it to fill.
    gapped: BTreeMap<Address, BTreeMap<u64, Pending>>,
    gapped_count: usize,
    hashes: BTreeSet<Hash>,
    /// What readers on other threads see ([`Mempool::publish`]).
    index: PoolIndex,
    /// Hashes and senders changed since the last publication.
    changed_hashes: Vec<Hash>,
    changed_senders: BTreeSet<Address>,
    /// (fee, sender, nonce) of every transaction held: eviction picks the lowest.
    by_fee: BTreeSet<(Amount, Address, u64)>,
    size_bytes: u64,
    /// The head's height as of the last head change.
    height: Height,
}

impl Mempool {
    pub fn new() -> Mempool {
        Mempool::default()
    }

    /// An empty mempool for a node whose head is at `height`.
    pub fn at(height: Height) -> Mempool {
        Mempool { height, ..Mempool::default() }
    }

    /// Every transaction held, gapped ones included.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// The index readers on other threads consult ([`PoolIndex`]).
    pub fn index(&self) -> PoolIndex {
        self.index.clone()
    }

    /// Transactions waiting after a nonce gap.
    pub fn gapped_len(&self) -> usize {
        self.gapped_count
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// Every transaction held, each sender's in nonce order: what a stopping node keeps to
    /// offer again. Offered again, a gapped one starts its expiry anew, still within its bounds.
    pub fn pending(&self) -> Vec<SignedTransaction> {
        let senders: BTreeSet<&Address> = self.ready.keys().chain(self.gapped.keys()).collect();
        senders.into_iter().flat_map(|sender| self.of_sender(sender).map(|entry| entry.tx.clone())).collect()
    }

    /// Whether the transaction is held. Every one held had its signatures checked under the one
    /// rule on the way in (the block import skips them on that word).
    pub fn contains(&self, hash: &Hash) -> bool {
        self.hashes.contains(hash)
    }

    /// Validates `tx` (signatures included) against the head state `state` and admits it.
    pub fn insert<S: StateRead + ?Sized>(
        &mut self,
        tx: SignedTransaction,
        state: &S,
        genesis: &Genesis,
    ) -> Result<Admitted, MempoolError> {
        let admitted = self.admit(tx, Source::Unchecked, state, genesis);
        self.publish();
        admitted
    }

    /// [`Mempool::insert`] for a transaction whose signatures were checked already. Checked
    /// for another chain, it is checked again here (and refused for its chain id).
    pub fn insert_verified<S: StateRead + ?Sized>(
        &mut self,
        tx: VerifiedTx,
        state: &S,
        genesis: &Genesis,
    ) -> Result<Admitted, MempoolError> {
        let source = if tx.tx().tx.chain_id == genesis.chain_id { Source::Verified } else { Source::Unchecked };
        let admitted = self.admit(tx.into_inner(), source, state, genesis);
        self.publish();
        admitted
    }

    /// Hands the changes since the last publication to the readers' index, all at once.
    fn publish(&mut self) {
        let mut index = self.index.lock();
        for hash in self.changed_hashes.drain(..) {
            if self.hashes.contains(&hash) {
                index.hashes.insert(hash);
            } else {
                index.hashes.remove(&hash);
            }
        }
        for sender in std::mem::take(&mut self.changed_senders) {
            let end =
                self.ready.get(&sender).and_then(BTreeMap::last_key_value).map(|(last, _)| last.saturating_add(1));
            match end {
                Some(end) => index.ready_ends.insert(sender, end),
                None => index.ready_ends.remove(&sender),
            };
        }
    }

    /// The sender's transaction with `nonce`, ready or gapped.
    fn get(&self, sender: &Address, nonce: u64) -> Option<&Pending> {
        [&self.ready, &self.gapped].into_iter().find_map(|map| map.get(sender).and_then(|pending| pending.get(&nonce)))
    }

    /// Every transaction of `sender`, ready then gapped (so in nonce order).
    fn of_sender<'a>(&'a self, sender: &Address) -> impl Iterator<Item = &'a Pending> + 'a {
        let ready = self.ready.get(sender).into_iter().flat_map(BTreeMap::values);
        let gapped = self.gapped.get(sender).into_iter().flat_map(BTreeMap::values);
        ready.chain(gapped)
    }

    /// The rules, cheapest first (a signature check costs about 30 us; everything before it
    /// is a lookup): duplicate, fee floor, nonce window, the sender's whole pending run against
    /// its balance, the per-sender and gap bounds, the signature; then room is made.
    fn admit<S: StateRead + ?Sized>(
        &mut self,
        tx: SignedTransaction,
        source: Source,
        state: &S,
        genesis: &Genesis,
    ) -> Result<Admitted, MempoolError> {
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
        // The sender must be able to pay for all it has pending, whatever order it arrived in.
        let others =
            self.of_sender(&sender).filter(|pending| pending.tx.tx.nonce != nonce).map(|pending| cost(&pending.tx));
        let needed = others.chain([cost(&tx)]).try_fold(Amount::ZERO, |sum, cost| sum.checked_add(cost?).ok());
        match needed {
            Some(needed) if needed <= account.balance => {}
            needed => {
                let needed = needed.unwrap_or(Amount::MAX);
                return Err(MempoolError::InsufficientBalance { needed, available: account.balance });
            }
        }
        let gapped = nonce > self.next_nonce(&sender, next);
        let replaced = self.get(&sender, nonce).cloned();
        if let Some(old) = &replaced {
            // At least one unit more, however small the fee: with an equal fee two conflicting
            // transactions would replace each other at every node, and be relayed each time.
            let bump = old.tx.tx.fee.permille(limits::MEMPOOL_REPLACE_FEE_BUMP_PERMILLE).max(Amount::new(1));
            let needed = old.tx.tx.fee.checked_add(bump).unwrap_or(Amount::MAX);
            if tx.tx.fee < needed {
                return Err(MempoolError::ReplacementFeeTooLow { nonce, pending_fee: old.tx.tx.fee, needed });
            }
        } else if !returned {
            if self.of_sender(&sender).count() >= limits::MEMPOOL_TXS_PER_SENDER_MAX as usize {
                return Err(MempoolError::SenderFull { sender });
            }
            let gapped_held = self.gapped.get(&sender).map_or(0, BTreeMap::len);
            if gapped && gapped_held >= limits::MEMPOOL_GAPPED_PER_SENDER_MAX as usize {
                return Err(MempoolError::GapFull { sender });
            }
        }
        // After the cheap checks, so a stale, unpayable or duplicate transaction costs no
        // signature check.
        if source == Source::Unchecked {
            tx.verify(&genesis.chain_id)?;
        }

        let size_bytes = codec::encode(&tx).len() as u64;
        if replaced.is_some() {
            self.take(&sender, nonce);
        }
        while self.len() >= limits::MEMPOOL_TXS_MAX as usize
            || self.size_bytes.saturating_add(size_bytes) > limits::MEMPOOL_BYTES_MAX
        {
            let Some(&(lowest, victim, _)) = self.by_fee.first() else { break };
            // Never the sender's own: evicting its last nonce would open a gap before this one.
            if lowest >= tx.tx.fee || victim == sender {
                return Err(MempoolError::Full { fee: tx.tx.fee, lowest });
            }
            // Evict the victim sender's last nonce, so no gap opens in its sequence.
            let last = self.of_sender(&victim).last().map(|pending| pending.tx.tx.nonce);
            match last {
                Some(last) => drop(self.take(&victim, last)),
                None => break,
            }
        }
        if gapped && self.gapped_count >= limits::MEMPOOL_GAPPED_TXS_MAX as usize {
            self.evict_oldest_gapped();
        }
        let entry = Pending { tx, hash, size_bytes, arrived: self.height };
        let mut ready = Vec::new();
        if gapped {
            self.put(entry, true);
        } else {
            ready.push(entry.tx.clone());
            self.put(entry, false);
            ready.extend(self.promote(&sender, next));
        }
        Ok(Admitted { hash, ready })
    }

    /// Adds an entry to the indexes and to the ready or gapped map.
    fn put(&mut self, entry: Pending, gapped: bool) {
        let sender = entry.tx.tx.sender;
        let nonce = entry.tx.tx.nonce;
        self.by_fee.insert((entry.tx.tx.fee, sender, nonce));
        let hash = entry.hash;
        self.size_bytes = self.size_bytes.saturating_add(entry.size_bytes);
        let map = if gapped {
            self.gapped_count = self.gapped_count.saturating_add(1);
            &mut self.gapped
        } else {
            &mut self.ready
        };
        map.entry(sender).or_default().insert(nonce, entry);
        self.hashes.insert(hash);
        self.changed_hashes.push(hash);
        self.changed_senders.insert(sender);
    }

    /// Takes the sender's transaction with `nonce` out of the pool, ready or gapped.
    fn take(&mut self, sender: &Address, nonce: u64) -> Option<Pending> {
        let mut taken = None;
        for gapped in [false, true] {
            let map = if gapped { &mut self.gapped } else { &mut self.ready };
            let Some(pending) = map.get_mut(sender) else { continue };
            if let Some(entry) = pending.remove(&nonce) {
                if pending.is_empty() {
                    map.remove(sender);
                }
                if gapped {
                    self.gapped_count = self.gapped_count.saturating_sub(1);
                }
                taken = Some(entry);
                break;
            }
        }
        let entry = taken?;
        self.by_fee.remove(&(entry.tx.tx.fee, *sender, nonce));
        self.hashes.remove(&entry.hash);
        self.changed_hashes.push(entry.hash);
        self.changed_senders.insert(*sender);
        self.size_bytes = self.size_bytes.saturating_sub(entry.size_bytes);
        Some(entry)
    }

    /// Moves the sender's gapped transactions that now continue its ready run (from the
    /// account's nonce `next`) into it; returns them.
    fn promote(&mut self, sender: &Address, next: u64) -> Vec<SignedTransaction> {
        let mut promoted = Vec::new();
        loop {
            let end = self.next_nonce(sender, next);
            let Some(entry) = self.gapped.get(sender).and_then(|pending| pending.get(&end)).cloned() else { break };
            self.take(sender, end);
            promoted.push(entry.tx.clone());
            self.put(entry, false);
        }
        promoted
    }

    fn evict_oldest_gapped(&mut self) {
        let oldest = self
            .gapped
            .iter()
            .flat_map(|(sender, pending)| {
                pending.values().map(move |entry| (entry.arrived, *sender, entry.tx.tx.nonce))
            })
            .min();
        if let Some((_, sender, nonce)) = oldest {
            self.take(&sender, nonce);
        }
    }

    /// The nonce a new transaction from `sender` should carry: after `committed` (the account's
    /// nonce at the head), past the sender's ready transactions.
    pub fn next_nonce(&self, sender: &Address, committed: u64) -> u64 {
        let mut next = committed;
        if let Some(pending) = self.ready.get(sender) {
            for nonce in pending.range(committed..).map(|(nonce, _)| *nonce) {
                if nonce != next {
                    break;
                }
                next = next.saturating_add(1);
            }
        }
        next
    }

    /// Removes one transaction (e.g. one the head state rejects); the sender's later ready ones
    /// now wait after a gap.
    pub fn remove_tx(&mut self, tx: &SignedTransaction) {
        let sender = tx.tx.sender;
        if self.take(&sender, tx.tx.nonce).is_some() {
            let later: Vec<u64> = self
                .ready
                .get(&sender)
                .map(|pending| pending.range(tx.tx.nonce..).map(|(nonce, _)| *nonce).collect())
                .unwrap_or_default();
            for nonce in later {
                if let Some(entry) = self.take(&sender, nonce) {
                    self.put(entry, true);
                }
            }
        }
        self.publish();
    }

    /// Transactions for a block on the head state `state`: each sender's consecutive nonces from
    /// its account's nonce, senders interleaved by fee (highest first, then by address), up to
    /// `limits::BLOCK_TXS_MAX` and about `limits::BLOCK_BYTES_MAX` in size.
    pub fn select<S: StateRead + ?Sized>(&self, state: &S) -> Result<Vec<SignedTransaction>, ReadError> {
        // Per sender: the runnable sequence, as an iterator over its pending nonces.
        let mut queues: BTreeMap<Address, Vec<&Pending>> = BTreeMap::new();
        for (sender, pending) in &self.ready {
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

    /// After the head moved to `head`: per sender, drops what the new state has used (spent
    /// nonces), gapped transactions older than `MEMPOOL_GAPPED_EXPIRY_BLOCKS`, and whatever its
    /// balance no longer covers (from the first such nonce on), then splits the rest into the
    /// ready run and the gapped. Then takes back the transactions of rolled-back blocks, given
    /// oldest first: their signatures were checked when their blocks were imported, and the
    /// per-sender and gap limits do not apply to them (a sender may have had more than those in
    /// the blocks a reorg undid); every other rule does, and those no longer valid are dropped.
    /// Returns the transactions that became ready (taken back, or no longer behind a gap), for
    /// the node to relay: the winning chain's producers may never have seen them.
    pub fn on_head_change<S: StateRead + ?Sized>(
        &mut self,
        state: &S,
        genesis: &Genesis,
        head: Height,
        returned: Vec<SignedTransaction>,
    ) -> Result<Vec<SignedTransaction>, ReadError> {
        let taken = self.follow_head(state, genesis, head, returned);
        self.publish();
        taken
    }

    /// [`Mempool::on_head_change`] but for the publication.
    fn follow_head<S: StateRead + ?Sized>(
        &mut self,
        state: &S,
        genesis: &Genesis,
        head: Height,
        returned: Vec<SignedTransaction>,
    ) -> Result<Vec<SignedTransaction>, ReadError> {
        self.height = head;
        let senders: BTreeSet<Address> = self.ready.keys().chain(self.gapped.keys()).copied().collect();
        let mut taken = Vec::new();
        for sender in senders {
            let account = state::read_account(state, &sender)?;
            // Each transaction's nonce and whether it waited after a gap, in nonce order.
            let nonces: Vec<(u64, bool)> = [(&self.ready, false), (&self.gapped, true)]
                .into_iter()
                .flat_map(|(map, gapped)| {
                    map.get(&sender)
                        .into_iter()
                        .flat_map(move |pending| pending.keys().map(move |nonce| (*nonce, gapped)))
                })
                .collect();
            let mut expected = account.nonce;
            let mut spent = Amount::ZERO;
            let mut unpayable = false;
            for (nonce, was_gapped) in nonces {
                let Some(entry) = self.take(&sender, nonce) else { continue };
                if nonce < account.nonce {
                    continue;
                }
                let expired = head.get() >= entry.arrived.get().saturating_add(limits::MEMPOOL_GAPPED_EXPIRY_BLOCKS);
                if nonce != expected && expired {
                    continue;
                }
                match cost(&entry.tx).and_then(|cost| spent.checked_add(cost).ok()) {
                    Some(total) if total <= account.balance && !unpayable => spent = total,
                    _ => {
                        unpayable = true;
                        continue;
                    }
                }
                let ready = nonce == expected;
                if ready {
                    expected = expected.saturating_add(1);
                    if was_gapped {
                        taken.push(entry.tx.clone());
                    }
                }
                self.put(entry, !ready);
            }
        }
        for tx in returned {
            match self.admit(tx, Source::Returned, state, genesis) {
                Ok(admitted) => taken.extend(admitted.ready),
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
        // However small the fee, one unit more: two conflicting transactions of fee 1 would
        // otherwise replace each other at every node, forever.
        let mut small = transfer(&genesis, 0, 1, 1);
        pool.insert(small.clone(), &state, &genesis).unwrap();
        small.tx.kind = TxKind::Transfer { to: testing::key(8).address(), amount: Amount::new(1) };
        let error = pool.insert(small.tx.clone().sign(&testing::key(0)), &state, &genesis).unwrap_err();
        assert_eq!(error.to_string(), "nonce 1 is pending with fee 1; a replacement needs a fee of at least 2");

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
        assert_eq!(pool.len(), 2);

        // Balance 1,000: two transactions costing 401 each fit, a third does not.
        pool.insert(transfer(&genesis, 2, 0, 400), &state, &genesis).unwrap();
        pool.insert(transfer(&genesis, 2, 1, 400), &state, &genesis).unwrap();
        assert_eq!(pool.next_nonce(&testing::key(2).address(), 0), 2, "past the pending ones");
        assert_eq!(pool.next_nonce(&testing::key(1).address(), 0), 0);
        let error = pool.insert(transfer(&genesis, 2, 2, 400), &state, &genesis).unwrap_err();
        assert_eq!(
            error.to_string(),
            "insufficient balance: needs 1203 for this transaction and the sender's other pending ones, has 1000"
        );
    }

    #[test]
    fn a_verified_transaction_is_admitted_by_the_same_rules_and_only_for_its_chain() {
        let genesis = testing::genesis(3, 1_000);
        let (state, _) = MemoryState::from_genesis(&genesis).unwrap();
        let mut pool = Mempool::new();
        let tx = transfer(&genesis, 0, 0, 10);
        let hash = pool.insert_verified(tx.clone().verified(&genesis.chain_id).unwrap(), &state, &genesis).unwrap();
        assert_eq!(hash.hash, tx.hash());
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
        let taken = pool.on_head_change(&state, &genesis, Height::GENESIS, returned.clone()).unwrap();
        assert_eq!(taken, returned[..count as usize], "all of sender 0's, none of the unpayable one");
        assert_eq!(pool.len(), count as usize);
        assert_eq!(pool.next_nonce(&testing::key(0).address(), 0), count);
        // New submissions are still held to the limits.
        let error = pool.insert(transfer(&genesis, 0, count, 5), &state, &genesis).unwrap_err();
        assert!(matches!(error, MempoolError::NonceTooFarAhead { .. }), "{error}");
        // Taken back again (a second reorg): duplicates are not taken twice.
        assert!(pool.on_head_change(&state, &genesis, Height::GENESIS, returned).unwrap().is_empty());
    }

    #[test]
    fn the_mempool_file_keeps_every_pending_transaction_and_refuses_damage_with_a_reason() {
        let genesis = testing::genesis(3, 1_000);
        let (state, _) = MemoryState::from_genesis(&genesis).unwrap();
        let mut pool = Mempool::new();
        for (from, nonce) in [(1, 0), (0, 1), (0, 0), (2, 0)] {
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
        assert_eq!(decode_file(chorus_chain::mempool_file::FILE_MAGIC).unwrap(), Vec::<SignedTransaction>::new());
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
        let index = pool.index();
        let sender = testing::key(0).address();
        pool.on_head_change(&state, &genesis, Height::new(1), vec![]).unwrap();
        assert!(!pool.contains(&first.hash()) && pool.contains(&second.hash()));
        assert!(!index.contains(&first.hash()) && index.contains(&second.hash()));
        // A reader of the new head (nonce 1) and one of the old (nonce 0) both go past the run.
        assert_eq!((index.next_nonce(&sender, 1), index.next_nonce(&sender, 0)), (2, 2));
        // The block is rolled back: its transaction comes back.
        pool.on_head_change(&fresh, &genesis, Height::GENESIS, vec![first.clone()]).unwrap();
        assert!(pool.contains(&first.hash()) && pool.contains(&second.hash()));
        assert!(index.contains(&first.hash()) && index.contains(&second.hash()));
        assert_eq!(pool.len(), 2);
        assert_eq!(index.next_nonce(&sender, 0), pool.next_nonce(&sender, 0));
    }

    #[test]
    fn the_shared_index_follows_the_pool_through_gaps_releases_and_removals() {
        let genesis = testing::genesis(2, 1_000_000);
        let (state, _) = MemoryState::from_genesis(&genesis).unwrap();
        let mut pool = Mempool::new();
        let index = pool.index();
        let (sender, other) = (testing::key(0).address(), testing::key(1).address());
        let txs: Vec<SignedTransaction> = (0..5).map(|nonce| transfer_of(&genesis, 0, nonce, 1)).collect();
        let agree = |pool: &Mempool| {
            for tx in &txs {
                assert_eq!(index.contains(&tx.hash()), pool.contains(&tx.hash()), "nonce {}", tx.tx.nonce);
            }
            assert_eq!(index.next_nonce(&sender, 0), pool.next_nonce(&sender, 0));
            assert_eq!(index.next_nonce(&other, 3), 3, "a sender with nothing pending");
        };
        // 3 and 4 wait after a gap: the run is empty.
        for tx in &txs[3..] {
            pool.insert(tx.clone(), &state, &genesis).unwrap();
        }
        agree(&pool);
        assert_eq!(index.next_nonce(&sender, 0), 0);
        pool.insert(txs[0].clone(), &state, &genesis).unwrap();
        agree(&pool);
        assert_eq!(index.next_nonce(&sender, 0), 1);
        // Nonce 1 then 2 fill the gap: 3 and 4 join the run.
        pool.insert(txs[1].clone(), &state, &genesis).unwrap();
        pool.insert(txs[2].clone(), &state, &genesis).unwrap();
        agree(&pool);
        assert_eq!(index.next_nonce(&sender, 0), 5);
        // Taking nonce 2 out leaves 3 and 4 gapped again.
        pool.remove_tx(&txs[2]);
        agree(&pool);
        assert_eq!(index.next_nonce(&sender, 0), 2);
    }

    fn transfer_of(genesis: &Genesis, from: u32, nonce: u64, amount: u128) -> SignedTransaction {
        testing::signed(
            genesis,
            &testing::key(from),
            nonce,
            TxKind::Transfer { to: testing::key(9).address(), amount: Amount::new(amount) },
        )
    }

    #[test]
    fn the_whole_pending_run_must_be_payable_whatever_the_arrival_order() {
        // Issue 15's replay: three transfers of 900e9 from a 1e12 balance, sent in nonce order
        // 2, 1, 0. Only the first to arrive is admitted; the others would overspend.
        let genesis = testing::genesis(1, 1_000_000_000_000);
        let (state, _) = MemoryState::from_genesis(&genesis).unwrap();
        let mut pool = Mempool::new();
        let admitted = pool.insert(transfer_of(&genesis, 0, 2, 900_000_000_000), &state, &genesis).unwrap();
        assert!(admitted.ready.is_empty(), "nonce 2 waits after a gap and is not relayed");
        for nonce in [1, 0] {
            let error = pool.insert(transfer_of(&genesis, 0, nonce, 900_000_000_000), &state, &genesis).unwrap_err();
            assert!(matches!(error, MempoolError::InsufficientBalance { .. }), "nonce {nonce}: {error}");
        }
        assert_eq!((pool.len(), pool.gapped_len()), (1, 1));
        // Affordable ones fill the gap: the gapped one is released with them, in nonce order.
        pool.insert(transfer_of(&genesis, 0, 0, 1), &state, &genesis).unwrap();
        let admitted = pool.insert(transfer_of(&genesis, 0, 1, 1), &state, &genesis).unwrap();
        let nonces: Vec<u64> = admitted.ready.iter().map(|tx| tx.tx.nonce).collect();
        assert_eq!(nonces, vec![1, 2]);
        assert_eq!((pool.len(), pool.gapped_len()), (3, 0));
        assert_eq!(pool.select(&state).unwrap().len(), 3);

        // The cheap rules come first: an unpayable transaction costs no signature check, so a
        // forged one from an empty account is refused for its balance.
        let mut forged = transfer_of(&genesis, 5, 0, 1);
        forged.tx.fee = Amount::new(2);
        let error = pool.insert(forged, &state, &genesis).unwrap_err();
        assert!(matches!(error, MempoolError::InsufficientBalance { .. }), "{error}");
    }

    #[test]
    fn gapped_transactions_are_bounded_kept_apart_and_expire() {
        let genesis = testing::genesis(2, 1_000_000);
        let (state, _) = MemoryState::from_genesis(&genesis).unwrap();
        let mut pool = Mempool::new();
        // Issue 15's replay: nonces 3 to 8 above a gap.
        for nonce in 3..9 {
            assert!(pool.insert(transfer_of(&genesis, 0, nonce, 1), &state, &genesis).unwrap().ready.is_empty());
        }
        assert_eq!(pool.gapped_len(), 6);
        assert_eq!(pool.pending().len(), 6, "kept across a clean stop, to be offered again");
        assert!(pool.select(&state).unwrap().is_empty());
        // Bounded per sender.
        let limit = u64::from(limits::MEMPOOL_GAPPED_PER_SENDER_MAX);
        for nonce in 9..(3 + limit) {
            pool.insert(transfer_of(&genesis, 0, nonce, 1), &state, &genesis).unwrap();
        }
        let error = pool.insert(transfer_of(&genesis, 0, 3 + limit, 1), &state, &genesis).unwrap_err();
        assert!(matches!(error, MempoolError::GapFull { .. }), "{error}");
        // Another sender's ready transaction is unaffected, and survives the expiry.
        pool.insert(transfer_of(&genesis, 1, 0, 1), &state, &genesis).unwrap();
        let expiry = Height::new(limits::MEMPOOL_GAPPED_EXPIRY_BLOCKS - 1);
        pool.on_head_change(&state, &genesis, expiry, Vec::new()).unwrap();
        assert_eq!(pool.gapped_len(), limit as usize, "not expired yet");
        let expiry = Height::new(limits::MEMPOOL_GAPPED_EXPIRY_BLOCKS);
        pool.on_head_change(&state, &genesis, expiry, Vec::new()).unwrap();
        assert_eq!((pool.len(), pool.gapped_len()), (1, 0), "the gapped ones expired");
    }

    #[test]
    fn a_transaction_removed_from_a_run_leaves_the_rest_gapped() {
        let genesis = testing::genesis(1, 1_000_000);
        let (state, _) = MemoryState::from_genesis(&genesis).unwrap();
        let mut pool = Mempool::new();
        let txs: Vec<SignedTransaction> = (0..4).map(|nonce| transfer_of(&genesis, 0, nonce, 1)).collect();
        for tx in &txs {
            pool.insert(tx.clone(), &state, &genesis).unwrap();
        }
        pool.remove_tx(&txs[1]);
        assert_eq!((pool.len(), pool.gapped_len()), (3, 2));
        assert_eq!(pool.select(&state).unwrap(), vec![txs[0].clone()]);
        assert_eq!(pool.next_nonce(&txs[0].tx.sender, 0), 1);
        // The sender sends nonce 1 again: the run is whole and relayed.
        let admitted = pool.insert(txs[1].clone(), &state, &genesis).unwrap();
        assert_eq!(admitted.ready, txs[1..].to_vec());
    }
}

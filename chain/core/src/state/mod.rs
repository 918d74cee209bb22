//! The account state machine: what a block does to the state, and the state tree's root.
//!
//! State is a key-value map ([`StateKey`] to encoded values) authenticated by a Jellyfish
//! Merkle tree ([`tree`]) whose version is the block height. [`apply_block`] is the one path
//! from a parent state and a block to the block's changes and state root; the RocksDB store and
//! the simulator's memory store both call it, so they cannot disagree.
//!
//! Invariants:
//! - A block with one invalid transaction is invalid as a whole; nothing of it is kept.
//! - Every block writes [`StateKey::Meta`], so every version of the tree has a root.
//! - Delegate vote weights always equal the sum of the current stakes of their voters.
//! - [`StateKey::Stakers`] lists every account with stake, with its stake, sorted by address,
//!   up to `limits::STAKERS_INDEXED_MAX` (beyond it, the largest stakes): engines with
//!   validators read the set from it, so it is part of the state root. [`StateKey::Delegates`]
//!   does the same for registered delegates and their approval weights (DPoS ranks them).
//! - Deterministic: ordered maps only, checked integer arithmetic only (enforced by the
//!   crate-wide lints in `lib.rs`).

pub mod memory;
pub mod tree;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::block::{self, Block, BlockShapeError};
use crate::codec::{self, Canonical, CodecError, Decode, Encode};
use crate::crypto::Address;
use crate::dpos::{self, DposState};
use crate::genesis::Genesis;
use crate::genesis::{DposConfig, EngineConfig, PosConfig};
use crate::header::{Header, Seal};
use crate::limits;
use crate::pos::{self, SlotError, ValidatorSet};
use crate::primitives::{Amount, ArithError, Hash, Height, Timestamp};
use crate::slots;
use crate::tx::{Checkpoint, Evidence, SignedTransaction, TxKind, Vote};

/// A key of the state map. Its encoding is the key in storage; its SHA-256 the key in the tree.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Encode, Decode)]
pub enum StateKey {
    Account(Address),
    Delegate(Address),
    /// Accounts with an unbonding entry releasing at this height.
    Unbonding(Height),
    /// A slashed offence, by [`Evidence::offence_id`].
    Offence(Hash),
    /// The chain's configuration from genesis (chain id, time, engines, parameters).
    Config,
    /// Written by every block.
    Meta,
    /// The index of stakers ([`Stakers`]).
    Stakers,
    /// PoS: the current epoch's [`ValidatorSet`], rewritten by each epoch's first block.
    Validators,
    /// An account slashed for an offence, and when: it leaves the PoS set at the next epoch,
    /// and the DPoS ranking.
    Slashed(Address),
    /// The index of delegates ([`Delegates`]).
    Delegates,
    /// DPoS: schedules and irreversibility ([`DposState`]), rewritten by every DPoS block.
    Dpos,
}

impl Canonical for StateKey {
    const BYTES_MAX: u32 = limits::STATE_KEY_BYTES_MAX;
}

impl StateKey {
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Account {
    pub balance: Amount,
    /// Transactions sent so far; the next one must carry this nonce.
    pub nonce: u64,
    pub stake: Amount,
    /// Unstaked funds waiting for their release height.
    pub unbonding: Vec<Unbonding>,
    /// Delegates this account approves; each receives the account's full stake as weight.
    pub votes: Vec<Address>,
}

impl Canonical for Account {
    const BYTES_MAX: u32 = limits::ACCOUNT_BYTES_MAX;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Unbonding {
    pub amount: Amount,
    pub release_at: Height,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Delegate {
    pub registered_at: Height,
    /// Sum of the stakes of the accounts voting for this delegate.
    pub votes_received: Amount,
}

impl Canonical for Delegate {
    const BYTES_MAX: u32 = limits::DELEGATE_BYTES_MAX;
}

/// The accounts with stake and their stakes, sorted by address; at most
/// `limits::STAKERS_INDEXED_MAX`. When full, an account whose stake changes enters only if it
/// out-stakes the smallest listed one (ties: the lower address ranks higher), which leaves.
#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct Stakers(pub Vec<(Address, Amount)>);

impl Canonical for Stakers {
    const BYTES_MAX: u32 = limits::STAKERS_BYTES_MAX;
}

impl Stakers {
    /// Records `address`'s new stake.
    fn set(&mut self, address: Address, stake: Amount) {
        set_bounded(&mut self.0, limits::STAKERS_INDEXED_MAX, address, stake, true);
    }
}

/// Registered delegates and their approval weights, sorted by address; at most
/// `limits::DELEGATES_INDEXED_MAX`. When full, a delegate whose weight changes enters only if
/// it outweighs the lightest listed one (ties: the lower address ranks higher), which leaves.
#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct Delegates(pub Vec<(Address, Amount)>);

impl Canonical for Delegates {
    const BYTES_MAX: u32 = limits::DELEGATES_BYTES_MAX;
}

/// Sets `address`'s amount in an index sorted by address and bounded by `max` (an amount of zero
/// removes it if `zero_leaves`); when full, the smallest amount (the higher address among
/// equals) gives way to a larger one.
fn set_bounded(entries: &mut Vec<(Address, Amount)>, max: u32, address: Address, amount: Amount, zero_leaves: bool) {
    let leaves = zero_leaves && amount.is_zero();
    match entries.binary_search_by(|(listed, _)| listed.cmp(&address)) {
        Ok(index) if leaves => {
            entries.remove(index);
        }
        Ok(index) => {
            if let Some(entry) = entries.get_mut(index) {
                entry.1 = amount;
            }
        }
        Err(_) if leaves => {}
        Err(index) if entries.len() < max as usize => entries.insert(index, (address, amount)),
        Err(_) => {
            let rank = |(address, amount): &(Address, Amount)| (*amount, std::cmp::Reverse(*address));
            let Some(smallest) = entries.iter().min_by_key(|entry| rank(entry)).copied() else { return };
            if rank(&(address, amount)) > rank(&smallest) {
                entries.retain(|(listed, _)| *listed != smallest.0);
                let index = entries.partition_point(|(listed, _)| *listed < address);
                entries.insert(index, (address, amount));
            }
        }
    }
}

/// The index of delegates ([`Delegates`]).
pub fn read_delegates<R: StateRead + ?Sized>(state: &R) -> Result<Delegates, ReadError> {
    Ok(read_typed(state, &StateKey::Delegates)?.unwrap_or_default())
}

/// DPoS: the state after the last block applied (`None` before the first, or without DPoS).
pub fn read_dpos<R: StateRead + ?Sized>(state: &R) -> Result<Option<DposState>, ReadError> {
    read_typed(state, &StateKey::Dpos)
}

/// DPoS: the ranking of the delegates in `state`, slashed ones left out: the schedule it would
/// make ([`dpos::rank`]).
pub fn dpos_ranking<R: StateRead + ?Sized>(state: &R, config: &DposConfig) -> Result<Vec<Address>, ReadError> {
    ranking(&read_delegates(state)?, config, |address| is_slashed(state, address))
}

fn ranking(
    delegates: &Delegates,
    config: &DposConfig,
    mut slashed: impl FnMut(&Address) -> Result<bool, ReadError>,
) -> Result<Vec<Address>, ReadError> {
    let mut eligible = Vec::with_capacity(delegates.0.len());
    for (address, weight) in &delegates.0 {
        if !slashed(address)? {
            eligible.push((*address, *weight));
        }
    }
    Ok(dpos::rank(eligible.into_iter(), config.producers))
}

/// PoS: the set of the epoch of the last block applied (`None` before the first, or without PoS).
pub fn read_validators<R: StateRead + ?Sized>(state: &R) -> Result<Option<ValidatorSet>, ReadError> {
    read_typed(state, &StateKey::Validators)
}

/// PoS: the set a block for `slot` on `parent` (whose state is `state`) is checked against: the
/// parent's epoch's, or, when `slot` starts a later epoch, the one computed from `state` (see
/// [`pos`]: stakers above the minimum and genesis validators with stake, slashed accounts out).
pub fn pos_set_for<R: StateRead + ?Sized>(
    state: &R,
    genesis: &Genesis,
    config: &PosConfig,
    parent: &Header,
    slot: u64,
) -> Result<ValidatorSet, ReadError> {
    let current = read_validators(state)?.unwrap_or_else(|| pos::genesis_set(genesis, config));
    let epoch = pos::epoch_of(config, slot);
    if current.epoch >= epoch {
        return Ok(current);
    }
    let stakers = read_stakers(state)?;
    let mut candidates: Vec<(Address, Amount)> =
        stakers.0.into_iter().filter(|(_, stake)| *stake >= config.min_stake).collect();
    for member in &config.validators {
        candidates.push((member.address, read_account(state, &member.address)?.stake));
    }
    let mut eligible = Vec::with_capacity(candidates.len());
    for (address, stake) in candidates {
        if read_typed::<OffenceRecord, R>(state, &StateKey::Slashed(address))?.is_none() {
            eligible.push((address, stake));
        }
    }
    let seed = pos::next_seed(&current.seed, epoch, &parent.hash());
    Ok(pos::select(epoch, seed, config, eligible.into_iter()))
}

/// Whether `address` was slashed for an offence (it leaves the PoS set at the next epoch).
pub fn is_slashed<R: StateRead + ?Sized>(state: &R, address: &Address) -> Result<bool, ReadError> {
    Ok(read_typed::<OffenceRecord, R>(state, &StateKey::Slashed(*address))?.is_some())
}

/// The index of stakers ([`Stakers`]).
pub fn read_stakers<R: StateRead + ?Sized>(state: &R) -> Result<Stakers, ReadError> {
    Ok(read_typed(state, &StateKey::Stakers)?.unwrap_or_default())
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode)]
struct UnbondingQueue(Vec<Address>);

impl Canonical for UnbondingQueue {
    const BYTES_MAX: u32 = limits::BLOCK_BYTES_MAX;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
struct OffenceRecord {
    slashed_at: Height,
}

impl Canonical for OffenceRecord {
    const BYTES_MAX: u32 = limits::OFFENCE_RECORD_BYTES_MAX;
}

/// The state's record of its own position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Meta {
    pub height: Height,
}

impl Canonical for Meta {
    const BYTES_MAX: u32 = limits::STATE_META_BYTES_MAX;
}

/// The storage could not produce a value (I/O failure or a damaged store).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("state storage failed: {0}")]
    Storage(String),
    #[error("stored state value for {key} is damaged: {error}")]
    Damaged { key: String, error: CodecError },
}

/// Read access to the state a block builds on.
pub trait StateRead {
    /// The encoded value under `key` (an encoded [`StateKey`]), if any.
    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError>;
}

fn read_typed<T: Canonical, R: StateRead + ?Sized>(state: &R, key: &StateKey) -> Result<Option<T>, ReadError> {
    decode_value(key, state.get_raw(&key.encode())?.as_deref())
}

/// Decodes a stored value; undecodable bytes mean a damaged store.
fn decode_value<T: Canonical>(key: &StateKey, raw: Option<&[u8]>) -> Result<Option<T>, ReadError> {
    raw.map(|bytes| codec::decode(bytes).map_err(|error| ReadError::Damaged { key: format!("{key:?}"), error }))
        .transpose()
}

/// Reads one account (the default, empty account if it was never touched).
pub fn read_account<R: StateRead + ?Sized>(state: &R, address: &Address) -> Result<Account, ReadError> {
    Ok(read_typed(state, &StateKey::Account(*address))?.unwrap_or_default())
}

pub fn read_delegate<R: StateRead + ?Sized>(state: &R, address: &Address) -> Result<Option<Delegate>, ReadError> {
    read_typed(state, &StateKey::Delegate(*address))
}

/// One changed entry: its key and its value after the block (a rollback finds the value before
/// in the tree, one version down).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateChange {
    pub key: Vec<u8>,
    pub new: Vec<u8>,
}

/// Why a transaction cannot apply to the current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxRejection {
    #[error("nonce {got} is wrong, next for this sender is {expected}")]
    BadNonce { expected: u64, got: u64 },
    #[error("fee {got} is below the minimum {min}")]
    FeeTooLow { min: Amount, got: Amount },
    #[error("insufficient balance: needs {needed}, has {available}")]
    InsufficientBalance { needed: Amount, available: Amount },
    #[error("cannot unstake {requested}: only {staked} staked")]
    InsufficientStake { requested: Amount, staked: Amount },
    #[error("account already has {} unbonding entries", limits::UNBONDING_ENTRIES_MAX)]
    TooManyUnbonding,
    #[error("{address} is already a delegate")]
    AlreadyDelegate { address: Address },
    #[error("{address} is not a registered delegate")]
    NotDelegate { address: Address },
    #[error("offence {offence} was already slashed")]
    DuplicateOffence { offence: Hash },
    #[error("evidence for height {height} is outside the window {oldest}..={newest}")]
    EvidenceOutOfWindow { height: Height, oldest: Height, newest: Height },
    #[error("offender {offender} has nothing at stake to slash")]
    NothingToSlash { offender: Address },
    #[error("amount arithmetic overflowed")]
    Overflow,
    #[error("nonce space of the sender is exhausted")]
    NonceExhausted,
}

impl From<ArithError> for TxRejection {
    fn from(_: ArithError) -> Self {
        TxRejection::Overflow
    }
}

impl From<ArithError> for ApplyError {
    fn from(_: ArithError) -> Self {
        ApplyError::Rejected(TxRejection::Overflow)
    }
}

/// Why a block cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("block {height} has parent {got}, expected {expected}")]
    WrongParent { height: Height, got: Hash, expected: Hash },
    #[error("block has height {got}, expected {expected}")]
    WrongHeight { expected: Height, got: Height },
    #[error(transparent)]
    Shape(#[from] BlockShapeError),
    #[error("transaction {index} ({hash}) rejected: {rejection}")]
    Tx { index: usize, hash: Hash, rejection: TxRejection },
    #[error("token supply arithmetic overflowed")]
    SupplyOverflow,
    #[error("block {height} claims state root {got}, execution gives {expected}")]
    StateRoot { height: Height, expected: Hash, got: Hash },
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Tree(#[from] tree::TreeError),
    /// PoS: the timestamp is not a slot's start.
    #[error("block {height}: {error}")]
    Slot { height: Height, error: SlotError },
    #[error("block {height} is for slot {slot}, not after its parent's slot {parent_slot}")]
    SlotNotAfterParent { height: Height, slot: u64, parent_slot: u64 },
    #[error("block {height} is for slot {slot}, whose proposer is {expected:?}, not {got}")]
    NotProposer { height: Height, slot: u64, expected: Option<Address>, got: Address },
    #[error("block {height}'s timestamp is slot {slot}'s start, its seal says slot {sealed:?}")]
    SealSlot { height: Height, slot: u64, sealed: Option<u64> },
}

/// Applies transactions to a parent state, holding every touched entry in memory.
///
/// Reads go to the overlay first, then to `base`. Nothing is written anywhere until the
/// caller takes [`Executor::into_changes`].
#[derive(Debug)]
pub struct Executor<'a, R: StateRead + ?Sized> {
    base: &'a R,
    genesis: &'a Genesis,
    height: Height,
    accounts: BTreeMap<Address, Account>,
    delegates: BTreeMap<Address, Option<Delegate>>,
    unbonding: BTreeMap<Height, UnbondingQueue>,
    offences: BTreeMap<Hash, Option<OffenceRecord>>,
    slashed: BTreeMap<Address, Option<OffenceRecord>>,
    /// PoS: the set an epoch's first block wrote.
    new_set: Option<ValidatorSet>,
    /// DPoS: the state after this block (before its new pending schedule, which comes from the
    /// block's state in `into_changes`).
    dpos: Option<(DposConfig, DposState)>,
    /// The encoded value of every loaded key before this block, for undo and change detection.
    originals: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    fees: Amount,
    /// While [`Executor::try_apply_tx`] runs: every entry the transaction touched, as it was
    /// before, to put back if the transaction is rejected.
    journal: Option<Journal>,
}

#[derive(Debug, Default)]
struct Journal {
    accounts: BTreeMap<Address, Account>,
    delegates: BTreeMap<Address, Option<Delegate>>,
    unbonding: BTreeMap<Height, UnbondingQueue>,
    offences: BTreeMap<Hash, Option<OffenceRecord>>,
    slashed: BTreeMap<Address, Option<OffenceRecord>>,
    fees: Amount,
}

impl<'a, R: StateRead + ?Sized> Executor<'a, R> {
    /// An executor for the block at `height` on top of `base`.
    pub fn new(base: &'a R, genesis: &'a Genesis, height: Height) -> Self {
        Executor {
            base,
            genesis,
            height,
            accounts: BTreeMap::new(),
            delegates: BTreeMap::new(),
            unbonding: BTreeMap::new(),
            offences: BTreeMap::new(),
            slashed: BTreeMap::new(),
            new_set: None,
            dpos: None,
            originals: BTreeMap::new(),
            fees: Amount::ZERO,
            journal: None,
        }
    }

    /// Reads `key` from the base state, remembering its bytes.
    fn load<T: Canonical>(&mut self, key: StateKey) -> Result<Option<T>, ReadError> {
        let encoded_key = key.encode();
        let raw = self.base.get_raw(&encoded_key)?;
        let value = decode_value(&key, raw.as_deref())?;
        self.originals.insert(encoded_key, raw);
        Ok(value)
    }

    fn account(&mut self, address: &Address) -> Result<&mut Account, ReadError> {
        if !self.accounts.contains_key(address) {
            let account = self.load(StateKey::Account(*address))?.unwrap_or_default();
            self.accounts.insert(*address, account);
        }
        let entry = self.accounts.get_mut(address).expect("invariant: inserted above");
        if let Some(journal) = &mut self.journal {
            journal.accounts.entry(*address).or_insert_with(|| entry.clone());
        }
        Ok(entry)
    }

    fn delegate(&mut self, address: &Address) -> Result<&mut Option<Delegate>, ReadError> {
        if !self.delegates.contains_key(address) {
            let delegate = self.load(StateKey::Delegate(*address))?;
            self.delegates.insert(*address, delegate);
        }
        let entry = self.delegates.get_mut(address).expect("invariant: inserted above");
        if let Some(journal) = &mut self.journal {
            journal.delegates.entry(*address).or_insert_with(|| entry.clone());
        }
        Ok(entry)
    }

    fn unbonding_queue(&mut self, height: Height) -> Result<&mut UnbondingQueue, ReadError> {
        if !self.unbonding.contains_key(&height) {
            let queue = self.load(StateKey::Unbonding(height))?.unwrap_or_default();
            self.unbonding.insert(height, queue);
        }
        let entry = self.unbonding.get_mut(&height).expect("invariant: inserted above");
        if let Some(journal) = &mut self.journal {
            journal.unbonding.entry(height).or_insert_with(|| entry.clone());
        }
        Ok(entry)
    }

    /// Begin-block work for a block on `parent` with `timestamp` and `proposer`: under PoS,
    /// the slot and proposer rules (and, at an epoch's first block, the new set); under DPoS,
    /// the slot, the schedule and its producer; then the release of unbonding entries that
    /// mature at this height.
    pub fn begin_block(
        &mut self,
        parent: &Header,
        timestamp: Timestamp,
        proposer: &Address,
        votes: &[Vote],
    ) -> Result<(), BlockError> {
        let height = self.height;
        match self.genesis.engine_at(height) {
            EngineConfig::Pos(config) => self.check_slot(config, parent, timestamp, proposer)?,
            EngineConfig::Dpos(config) => self.check_dpos_slot(config, parent, timestamp, proposer, votes)?,
            EngineConfig::Pow(_) | EngineConfig::Raft(_) => {}
        }
        let due = std::mem::take(&mut self.unbonding_queue(height)?.0);
        for address in due {
            let account = self.account(&address)?;
            let (released, kept): (Vec<Unbonding>, Vec<Unbonding>) =
                account.unbonding.iter().partition(|entry| entry.release_at <= height);
            account.unbonding = kept;
            for entry in released {
                account.balance = account.balance.checked_add(entry.amount).map_err(|_| BlockError::SupplyOverflow)?;
            }
        }
        Ok(())
    }

    /// PoS: the block's slot follows its parent's and the slot's drawn proposer is `proposer`.
    fn check_slot(
        &mut self,
        config: &PosConfig,
        parent: &Header,
        timestamp: Timestamp,
        proposer: &Address,
    ) -> Result<(), BlockError> {
        let height = self.height;
        let (slot, _) = slots_of(self.genesis, config.slot_ms, parent, timestamp, height)?;
        // Registers the set's key as read, so an epoch's first block records the old set for undo.
        let _: Option<ValidatorSet> = self.load(StateKey::Validators)?;
        let set = pos_set_for(self.base, self.genesis, config, parent, slot)?;
        if read_validators(self.base)?.is_none_or(|current| current.epoch != set.epoch) {
            self.new_set = Some(set.clone());
        }
        let expected = set.proposer(slot);
        if expected != Some(*proposer) {
            return Err(BlockError::NotProposer { height, slot, expected, got: *proposer });
        }
        Ok(())
    }

    /// DPoS: the block's slot follows its parent's and belongs to `proposer` in the schedule the
    /// block is produced under ([`dpos`]); the state after it is kept for `into_changes`.
    fn check_dpos_slot(
        &mut self,
        config: &DposConfig,
        parent: &Header,
        timestamp: Timestamp,
        proposer: &Address,
        votes: &[Vote],
    ) -> Result<(), BlockError> {
        let height = self.height;
        let (slot, parent_slot) = slots_of(self.genesis, config.slot_ms, parent, timestamp, height)?;
        let parent = Checkpoint { height: parent.height, slot: parent_slot, hash: parent.hash() };
        // Registers the key as read, so the block's rewrite of it can be undone.
        let before: Option<DposState> = self.load(StateKey::Dpos)?;
        // The first DPoS block after another engine: the ranking at hand starts it.
        let before = match before {
            Some(before) => before,
            None => DposState::initial(dpos_ranking(self.base, config)?),
        };
        let after = before.after_block(parent, slot, proposer, height, votes).map_err(|error| match error {
            dpos::DposError::NotProducer { slot, expected, got, .. } => {
                BlockError::NotProposer { height, slot, expected, got }
            }
        })?;
        self.dpos = Some((config.clone(), after));
        Ok(())
    }

    /// [`Executor::apply_tx`], but a rejected transaction leaves the overlay as it was, so the
    /// caller may go on without it (a proposer leaving out what no longer applies). Costs a copy
    /// of each entry the transaction touches.
    pub fn try_apply_tx(&mut self, signed: &SignedTransaction) -> Result<(), ApplyError> {
        self.journal = Some(Journal { fees: self.fees, ..Journal::default() });
        let result = self.apply_tx(signed);
        let journal = self.journal.take().expect("invariant: set above, and apply_tx does not take it");
        if result.is_err() {
            self.accounts.extend(journal.accounts);
            self.delegates.extend(journal.delegates);
            self.unbonding.extend(journal.unbonding);
            self.offences.extend(journal.offences);
            self.slashed.extend(journal.slashed);
            self.fees = journal.fees;
        }
        result
    }

    /// Applies one transaction whose signatures and stateless rules were already checked.
    /// On rejection, the overlay may hold partial changes: the block is then discarded whole.
    pub fn apply_tx(&mut self, signed: &SignedTransaction) -> Result<(), ApplyError> {
        let tx = &signed.tx;
        let params = &self.genesis.params;
        if tx.fee < params.min_tx_fee {
            return Err(TxRejection::FeeTooLow { min: params.min_tx_fee, got: tx.fee }.into());
        }
        let sender = self.account(&tx.sender)?;
        if tx.nonce != sender.nonce {
            return Err(TxRejection::BadNonce { expected: sender.nonce, got: tx.nonce }.into());
        }
        let spend = match &tx.kind {
            TxKind::Transfer { amount, .. } | TxKind::Stake { amount } => tx.fee.checked_add(*amount)?,
            _ => tx.fee,
        };
        if sender.balance < spend {
            return Err(TxRejection::InsufficientBalance { needed: spend, available: sender.balance }.into());
        }
        sender.balance = sender.balance.checked_sub(spend)?;
        sender.nonce = sender.nonce.checked_add(1).ok_or(TxRejection::NonceExhausted)?;
        self.fees = self.fees.checked_add(tx.fee)?;
        match &tx.kind {
            TxKind::Transfer { to, amount } => {
                let recipient = self.account(to)?;
                recipient.balance = recipient.balance.checked_add(*amount)?;
            }
            TxKind::Stake { amount } => self.change_stake(&tx.sender, StakeChange::Add(*amount))?,
            TxKind::Unstake { amount } => self.unstake(&tx.sender, *amount)?,
            TxKind::RegisterDelegate => {
                let height = self.height;
                let entry = self.delegate(&tx.sender)?;
                if entry.is_some() {
                    return Err(TxRejection::AlreadyDelegate { address: tx.sender }.into());
                }
                *entry = Some(Delegate { registered_at: height, votes_received: Amount::ZERO });
            }
            TxKind::Vote { delegates } => self.vote(&tx.sender, delegates)?,
            TxKind::Evidence(evidence) => self.slash(evidence)?,
        }
        Ok(())
    }

    fn unstake(&mut self, address: &Address, amount: Amount) -> Result<(), ApplyError> {
        let release_at = self.height.checked_add(self.genesis.params.unbonding_period).map_err(TxRejection::from)?;
        let account = self.account(address)?;
        if account.stake < amount {
            return Err(TxRejection::InsufficientStake { requested: amount, staked: account.stake }.into());
        }
        if account.unbonding.len() >= limits::UNBONDING_ENTRIES_MAX as usize {
            return Err(TxRejection::TooManyUnbonding.into());
        }
        account.unbonding.push(Unbonding { amount, release_at });
        self.change_stake(address, StakeChange::Sub(amount))?;
        let queue = self.unbonding_queue(release_at)?;
        if !queue.0.contains(address) {
            queue.0.push(*address);
        }
        Ok(())
    }

    /// Changes an account's stake and, by the same amount, the weight of every delegate it
    /// votes for.
    fn change_stake(&mut self, address: &Address, change: StakeChange) -> Result<(), ApplyError> {
        let account = self.account(address)?;
        account.stake = change.apply(account.stake)?;
        let votes = account.votes.clone();
        for delegate in votes {
            if let Some(entry) = self.delegate(&delegate)? {
                entry.votes_received = change.apply(entry.votes_received)?;
            }
        }
        Ok(())
    }

    fn vote(&mut self, voter: &Address, delegates: &[Address]) -> Result<(), ApplyError> {
        for delegate in delegates {
            if self.delegate(delegate)?.is_none() {
                return Err(TxRejection::NotDelegate { address: *delegate }.into());
            }
        }
        let account = self.account(voter)?;
        let stake = account.stake;
        let old_votes = std::mem::replace(&mut account.votes, delegates.to_vec());
        for delegate in old_votes {
            if let Some(entry) = self.delegate(&delegate)? {
                entry.votes_received = entry.votes_received.checked_sub(stake).map_err(TxRejection::from)?;
            }
        }
        for delegate in delegates {
            if let Some(entry) = self.delegate(delegate)? {
                entry.votes_received = entry.votes_received.checked_add(stake).map_err(TxRejection::from)?;
            }
        }
        Ok(())
    }

    /// Slashes the offender's stake and unbonding funds by the genesis `slash_permille`; the
    /// slashed funds are burned. Each offence is slashed at most once.
    fn slash(&mut self, evidence: &Evidence) -> Result<(), ApplyError> {
        let newest = self.height;
        let oldest = Height::new(newest.get().saturating_sub(self.genesis.params.unbonding_period.0));
        let height = evidence.height();
        if height < oldest || height > newest {
            return Err(TxRejection::EvidenceOutOfWindow { height, oldest, newest }.into());
        }
        let offence = evidence.offence_id();
        let height_now = self.height;
        if !self.offences.contains_key(&offence) {
            let record = self.load(StateKey::Offence(offence))?;
            self.offences.insert(offence, record);
        }
        let record = self.offences.get_mut(&offence).expect("invariant: inserted above");
        if let Some(journal) = &mut self.journal {
            journal.offences.entry(offence).or_insert_with(|| *record);
        }
        if record.is_some() {
            return Err(TxRejection::DuplicateOffence { offence }.into());
        }
        *record = Some(OffenceRecord { slashed_at: height_now });
        let offender = evidence.offender();
        if !self.slashed.contains_key(&offender) {
            let record = self.load(StateKey::Slashed(offender))?;
            self.slashed.insert(offender, record);
        }
        let marker = self.slashed.get_mut(&offender).expect("invariant: inserted above");
        if let Some(journal) = &mut self.journal {
            journal.slashed.entry(offender).or_insert_with(|| *marker);
        }
        marker.get_or_insert(OffenceRecord { slashed_at: height_now });

        let permille = self.genesis.params.slash_permille;
        let account = self.account(&offender)?;
        if account.stake.is_zero() && account.unbonding.iter().all(|entry| entry.amount.is_zero()) {
            return Err(TxRejection::NothingToSlash { offender }.into());
        }
        for entry in &mut account.unbonding {
            entry.amount = entry.amount.checked_sub(entry.amount.permille(permille)).map_err(TxRejection::from)?;
        }
        let slashed = account.stake.permille(permille);
        self.change_stake(&offender, StakeChange::Sub(slashed))
    }

    /// End-block work: fees and the block reward go to the proposer; the height is recorded.
    pub fn end_block(&mut self, proposer: &Address) -> Result<(), BlockError> {
        let reward = self.fees.checked_add(self.genesis.params.block_reward).map_err(|_| BlockError::SupplyOverflow)?;
        let account = self.account(proposer)?;
        account.balance = account.balance.checked_add(reward).map_err(|_| BlockError::SupplyOverflow)?;
        Ok(())
    }

    /// The block's changes, sorted by key: the entries whose value it changed or created.
    pub fn into_changes(mut self) -> Result<Vec<StateChange>, ReadError> {
        let mut written: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        // Stakes that changed, for the index of stakers.
        let mut restaked = Vec::new();
        for (address, account) in &self.accounts {
            let key = StateKey::Account(*address);
            let original: Option<Account> =
                decode_value(&key, self.originals.get(&key.encode()).and_then(Option::as_deref))?;
            if original.unwrap_or_default().stake != account.stake {
                restaked.push((*address, account.stake));
            }
        }
        if !restaked.is_empty() {
            let mut stakers: Stakers = self.load(StateKey::Stakers)?.unwrap_or_default();
            for (address, stake) in restaked {
                stakers.set(address, stake);
            }
            written.insert(StateKey::Stakers.encode(), codec::encode(&stakers));
        }
        // Delegates registered or reweighed, for the index of delegates.
        let mut reweighed = Vec::new();
        for (address, delegate) in &self.delegates {
            let Some(delegate) = delegate else { continue };
            let key = StateKey::Delegate(*address);
            let original: Option<Delegate> =
                decode_value(&key, self.originals.get(&key.encode()).and_then(Option::as_deref))?;
            if original.is_none_or(|original| original.votes_received != delegate.votes_received) {
                reweighed.push((*address, delegate.votes_received));
            }
        }
        let mut delegates: Option<Delegates> = None;
        if !reweighed.is_empty() {
            let mut index: Delegates = self.load(StateKey::Delegates)?.unwrap_or_default();
            for (address, weight) in reweighed {
                set_bounded(&mut index.0, limits::DELEGATES_INDEXED_MAX, address, weight, false);
            }
            written.insert(StateKey::Delegates.encode(), codec::encode(&index));
            delegates = Some(index);
        }
        if let Some((config, mut dpos)) = self.dpos.take() {
            if dpos.pending.is_none() {
                let index = match delegates {
                    Some(index) => index,
                    None => read_delegates(self.base)?,
                };
                let slashed_now: BTreeSet<Address> =
                    self.slashed.iter().filter(|(_, record)| record.is_some()).map(|(address, _)| *address).collect();
                let base = self.base;
                let ranking =
                    ranking(
                        &index,
                        &config,
                        |address| Ok(slashed_now.contains(address) || is_slashed(base, address)?),
                    )?;
                dpos.propose(ranking, self.height);
            }
            written.insert(StateKey::Dpos.encode(), codec::encode(&dpos));
        }
        for (address, account) in &self.accounts {
            written.insert(StateKey::Account(*address).encode(), codec::encode(account));
        }
        for (address, delegate) in &self.delegates {
            if let Some(delegate) = delegate {
                written.insert(StateKey::Delegate(*address).encode(), codec::encode(delegate));
            }
        }
        for (height, queue) in &self.unbonding {
            let key = StateKey::Unbonding(*height).encode();
            // begin_block looks up every height's queue; most never existed and stay absent.
            if queue.0.is_empty() && matches!(self.originals.get(&key), Some(None)) {
                continue;
            }
            written.insert(key, codec::encode(queue));
        }
        for (offence, record) in &self.offences {
            if let Some(record) = record {
                written.insert(StateKey::Offence(*offence).encode(), codec::encode(record));
            }
        }
        for (address, record) in &self.slashed {
            if let Some(record) = record {
                written.insert(StateKey::Slashed(*address).encode(), codec::encode(record));
            }
        }
        if let Some(set) = &self.new_set {
            written.insert(StateKey::Validators.encode(), codec::encode(set));
        }
        written.insert(StateKey::Meta.encode(), codec::encode(&Meta { height: self.height }));
        let mut changes = Vec::with_capacity(written.len());
        for (key, new) in written {
            let old = match self.originals.remove(&key) {
                Some(original) => original,
                None => self.base.get_raw(&key)?,
            };
            if old.as_deref() != Some(new.as_slice()) {
                changes.push(StateChange { key, new });
            }
        }
        Ok(changes)
    }
}

#[derive(Clone, Copy)]
enum StakeChange {
    Add(Amount),
    Sub(Amount),
}

impl StakeChange {
    fn apply(self, amount: Amount) -> Result<Amount, TxRejection> {
        Ok(match self {
            StakeChange::Add(delta) => amount.checked_add(delta)?,
            StakeChange::Sub(delta) => amount.checked_sub(delta)?,
        })
    }
}

/// A transaction could not be applied: a rule said no, or the state could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Rejected(#[from] TxRejection),
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// Everything importing a block produces; the store writes it in one batch.
#[derive(Debug)]
pub struct BlockOutcome {
    pub changes: Vec<StateChange>,
    pub tree_batch: jmt::storage::TreeUpdateBatch,
    pub state_root: Hash,
    pub tx_hashes: Vec<Hash>,
}

/// The one path from a parent state and a block to the block's effects.
///
/// Checks the parent link and height, the body's shape and every signature (in parallel with
/// execution past a few signatures: a failed check discards the execution), executes every
/// transaction, computes the new state root and compares it with the header's. Engine rules
/// (seal, timestamp, proposer eligibility) are the consensus engine's and are checked before
/// this.
pub fn apply_block<S>(state: &S, genesis: &Genesis, parent: &Header, block: &Block) -> Result<BlockOutcome, BlockError>
where
    S: StateRead + jmt::storage::TreeReader + Sync,
{
    apply_block_with(state, genesis, parent, block, &block::none_verified)
}

/// [`apply_block`], skipping the signatures of the transactions `verified` names
/// ([`block::check_block_stateless_with`]).
pub fn apply_block_with<S>(
    state: &S,
    genesis: &Genesis,
    parent: &Header,
    block: &Block,
    verified: block::Verified<'_>,
) -> Result<BlockOutcome, BlockError>
where
    S: StateRead + jmt::storage::TreeReader + Sync,
{
    check_link(parent, &block.header)?;
    check_seal_slot(genesis, &block.header)?;
    let check = || block::check_block_stateless_with(block, &genesis.chain_id, verified);
    let run = || execute(state, genesis, parent, block);
    let signatures = block.body.txs.len().saturating_add(block.body.votes.len());
    let (checked, executed) =
        if signatures < limits::PARALLEL_SIGNATURES_MIN as usize { (check(), run()) } else { rayon::join(check, run) };
    let checked = checked?;
    finish(state, &block.header, executed?, checked.into_tx_hashes())
}

/// [`apply_block`] for a block whose stateless checks already passed (the sync path checks
/// the next block's signatures while this one executes).
pub fn apply_checked_block<S>(
    state: &S,
    genesis: &Genesis,
    parent: &Header,
    block: &Block,
    checked: block::StatelessChecked,
) -> Result<BlockOutcome, BlockError>
where
    S: StateRead + jmt::storage::TreeReader,
{
    assert_eq!(checked.block_hash(), block.hash(), "stateless checks belong to the block applied");
    check_link(parent, &block.header)?;
    check_seal_slot(genesis, &block.header)?;
    let changes = execute(state, genesis, parent, block)?;
    finish(state, &block.header, changes, checked.into_tx_hashes())
}

/// The slots of a block with `timestamp` at `height` and of its parent (genesis: 0), checking
/// that the first follows the second.
fn slots_of(
    genesis: &Genesis,
    slot_ms: u64,
    parent: &Header,
    timestamp: Timestamp,
    height: Height,
) -> Result<(u64, u64), BlockError> {
    let slot = slots::slot_of(genesis, slot_ms, timestamp).map_err(|error| BlockError::Slot { height, error })?;
    let parent_slot = if parent.height == Height::GENESIS {
        0
    } else {
        slots::slot_of(genesis, slot_ms, parent.timestamp).map_err(|error| BlockError::Slot { height, error })?
    };
    if slot <= parent_slot {
        return Err(BlockError::SlotNotAfterParent { height, slot, parent_slot });
    }
    Ok((slot, parent_slot))
}

fn check_link(parent: &Header, header: &Header) -> Result<(), BlockError> {
    let expected_height =
        parent.height.next().ok_or(BlockError::WrongHeight { expected: parent.height, got: header.height })?;
    if header.height != expected_height {
        return Err(BlockError::WrongHeight { expected: expected_height, got: header.height });
    }
    let parent_hash = parent.hash();
    if header.parent != parent_hash {
        return Err(BlockError::WrongParent { height: header.height, got: header.parent, expected: parent_hash });
    }
    Ok(())
}

/// PoS and DPoS: the seal is signed for the slot the timestamp starts (the signature itself is
/// a stateless check; the proposer is checked as the block executes).
fn check_seal_slot(genesis: &Genesis, header: &Header) -> Result<(), BlockError> {
    let slot_ms = match genesis.engine_at(header.height) {
        EngineConfig::Pos(config) => config.slot_ms,
        EngineConfig::Dpos(config) => config.slot_ms,
        EngineConfig::Pow(_) | EngineConfig::Raft(_) => return Ok(()),
    };
    let height = header.height;
    let slot =
        slots::slot_of(genesis, slot_ms, header.timestamp).map_err(|error| BlockError::Slot { height, error })?;
    if header.slot() != Some(slot) || header.seal_signature().is_none() {
        return Err(BlockError::SealSlot { height, slot, sealed: header.slot() });
    }
    Ok(())
}

/// Computes the state root of `changes` and holds it against the header's.
fn finish<S: jmt::storage::TreeReader>(
    state: &S,
    header: &Header,
    changes: Vec<StateChange>,
    tx_hashes: Vec<Hash>,
) -> Result<BlockOutcome, BlockError> {
    let (state_root, tree_batch) = tree::apply_changes(state, &changes, header.height)?;
    if state_root != header.state_root {
        return Err(BlockError::StateRoot { height: header.height, expected: state_root, got: header.state_root });
    }
    Ok(BlockOutcome { changes, tree_batch, state_root, tx_hashes })
}

/// Executes a block's transactions (assumed stateless-valid) and returns its changes.
pub fn execute<S: StateRead + ?Sized>(
    state: &S,
    genesis: &Genesis,
    parent: &Header,
    block: &Block,
) -> Result<Vec<StateChange>, BlockError> {
    let mut executor = Executor::new(state, genesis, block.header.height);
    executor.begin_block(parent, block.header.timestamp, &block.header.proposer, &block.body.votes)?;
    for (index, tx) in block.body.txs.iter().enumerate() {
        executor.apply_tx(tx).map_err(|error| match error {
            ApplyError::Rejected(rejection) => BlockError::Tx { index, hash: tx.hash(), rejection },
            ApplyError::Read(read) => BlockError::Read(read),
        })?;
    }
    executor.end_block(&block.header.proposer)?;
    Ok(executor.into_changes()?)
}

/// The genesis state as changes on an empty state, and the genesis block.
pub fn genesis_changes(genesis: &Genesis) -> Vec<StateChange> {
    let mut written: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    // Approval weights: each account's genesis stake to each delegate it approves.
    let mut weights: BTreeMap<Address, Amount> = genesis.delegates().into_iter().map(|a| (a, Amount::ZERO)).collect();
    for entry in &genesis.accounts {
        let account =
            Account { balance: entry.balance, stake: entry.stake, votes: entry.votes.clone(), ..Account::default() };
        written.insert(StateKey::Account(entry.address).encode(), codec::encode(&account));
        for delegate in &entry.votes {
            if let Some(weight) = weights.get_mut(delegate) {
                *weight = weight.checked_add(entry.stake).unwrap_or(Amount::MAX);
            }
        }
    }
    let mut index = Delegates::default();
    for (address, votes_received) in &weights {
        let (address, votes_received) = (*address, *votes_received);
        let delegate = Delegate { registered_at: Height::GENESIS, votes_received };
        written.insert(StateKey::Delegate(address).encode(), codec::encode(&delegate));
        set_bounded(&mut index.0, limits::DELEGATES_INDEXED_MAX, address, votes_received, false);
    }
    if !index.0.is_empty() {
        written.insert(StateKey::Delegates.encode(), codec::encode(&index));
    }
    let mut stakers = Stakers::default();
    for entry in &genesis.accounts {
        stakers.set(entry.address, entry.stake);
    }
    if !stakers.0.is_empty() {
        written.insert(StateKey::Stakers.encode(), codec::encode(&stakers));
    }
    match genesis.engine_at(Height::GENESIS) {
        EngineConfig::Pos(config) => {
            written.insert(StateKey::Validators.encode(), codec::encode(&pos::genesis_set(genesis, config)));
        }
        EngineConfig::Dpos(config) => {
            let candidates = config
                .delegates
                .iter()
                .map(|member| (member.address, weights.get(&member.address).copied().unwrap_or(Amount::ZERO)));
            let initial = DposState::initial(dpos::rank(candidates, config.producers));
            written.insert(StateKey::Dpos.encode(), codec::encode(&initial));
        }
        EngineConfig::Pow(_) | EngineConfig::Raft(_) => {}
    }
    let config = (&genesis.chain_id, genesis.genesis_time, &genesis.engines, &genesis.params);
    written.insert(StateKey::Config.encode(), codec::encode(&config));
    written.insert(StateKey::Meta.encode(), codec::encode(&Meta { height: Height::GENESIS }));
    written.into_iter().map(|(key, new)| StateChange { key, new }).collect()
}

/// The genesis block for a state root computed from [`genesis_changes`].
pub fn genesis_block(genesis: &Genesis, state_root: Hash) -> Block {
    let body = block::Body::default();
    Block {
        header: Header {
            parent: Hash::ZERO,
            height: Height::GENESIS,
            timestamp: genesis.genesis_time,
            txs_root: body.txs_root(),
            votes_root: body.votes_root(),
            state_root,
            proposer: Address([0; 32]),
            seal: Seal::None,
        },
        body,
    }
}

/// Builds the block that applies `txs` on top of `parent`: executes them and fills in the
/// roots. The seal is left as given (`Seal::None` for the engine to fill in, e.g. by mining).
/// Any rejected transaction fails the build; [`propose_block`] leaves such ones out instead.
pub fn build_block<S>(
    state: &S,
    genesis: &Genesis,
    parent: &Header,
    template: BlockTemplate,
) -> Result<Block, BlockError>
where
    S: StateRead + jmt::storage::TreeReader,
{
    let mut block = unrooted_block(parent, template)?;
    let changes = execute(state, genesis, parent, &block)?;
    block.header.state_root = tree::apply_changes(state, &changes, block.header.height)?.0;
    Ok(block)
}

/// A block a proposer built, and the template's transactions the state rejected.
#[derive(Debug)]
pub struct Proposal {
    pub block: Block,
    /// Rejected transactions, in template order, with the reason. A sender's later
    /// transactions after a rejected one are left out too, but are not listed: they may apply
    /// in a later block.
    pub rejected: Vec<(SignedTransaction, TxRejection)>,
}

/// [`build_block`] for a proposer: a transaction the state rejects is left out (and reported)
/// instead of failing the build, in one pass over the template.
pub fn propose_block<S>(
    state: &S,
    genesis: &Genesis,
    parent: &Header,
    mut template: BlockTemplate,
) -> Result<Proposal, BlockError>
where
    S: StateRead + jmt::storage::TreeReader,
{
    let height = parent.height.next().ok_or(BlockError::WrongHeight { expected: parent.height, got: parent.height })?;
    let mut executor = Executor::new(state, genesis, height);
    executor.begin_block(parent, template.timestamp, &template.proposer, &template.votes)?;
    let mut included = Vec::with_capacity(template.txs.len());
    let mut rejected = Vec::new();
    let mut skipped: BTreeSet<Address> = BTreeSet::new();
    for tx in std::mem::take(&mut template.txs) {
        if skipped.contains(&tx.tx.sender) {
            continue;
        }
        match executor.try_apply_tx(&tx) {
            Ok(()) => included.push(tx),
            Err(ApplyError::Rejected(rejection)) => {
                skipped.insert(tx.tx.sender);
                rejected.push((tx, rejection));
            }
            Err(ApplyError::Read(error)) => return Err(error.into()),
        }
    }
    executor.end_block(&template.proposer)?;
    let changes = executor.into_changes()?;
    template.txs = included;
    let mut block = unrooted_block(parent, template)?;
    block.header.state_root = tree::apply_changes(state, &changes, height)?.0;
    Ok(Proposal { block, rejected })
}

/// The block of `template` on `parent`, every field but the state root filled in.
fn unrooted_block(parent: &Header, template: BlockTemplate) -> Result<Block, BlockError> {
    let height = parent.height.next().ok_or(BlockError::WrongHeight { expected: parent.height, got: parent.height })?;
    let body = block::Body { txs: template.txs, votes: template.votes };
    Ok(Block {
        header: Header {
            parent: parent.hash(),
            height,
            timestamp: template.timestamp,
            txs_root: body.txs_root(),
            votes_root: body.votes_root(),
            state_root: Hash::ZERO,
            proposer: template.proposer,
            seal: Seal::None,
        },
        body,
    })
}

/// What a proposer puts in a block.
#[derive(Debug, Clone)]
pub struct BlockTemplate {
    pub txs: Vec<SignedTransaction>,
    pub votes: Vec<Vote>,
    pub proposer: Address,
    pub timestamp: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_index_of_stakers_keeps_the_largest_stakes() {
        let address = |index: u32| {
            let mut bytes = [0u8; 32];
            bytes[..4].copy_from_slice(&index.to_be_bytes());
            Address(bytes)
        };
        let max = limits::STAKERS_INDEXED_MAX;
        let mut stakers = Stakers::default();
        for index in 0..max {
            stakers.set(address(index), Amount::new(u128::from(index % 7) + 10));
        }
        assert_eq!(stakers.0.len(), max as usize);
        // Too small to enter, or a tie with the smallest at a higher address: not listed.
        stakers.set(address(max), Amount::new(5));
        stakers.set(address(max + 1), Amount::new(10));
        assert!(!stakers.0.iter().any(|(listed, _)| *listed == address(max) || *listed == address(max + 1)));
        // A larger stake enters; the smallest with the highest address leaves.
        let smallest_highest = (0..max).rev().find(|index| index % 7 == 0).map(address);
        stakers.set(address(max + 2), Amount::new(11));
        assert_eq!(stakers.0.len(), max as usize);
        assert!(stakers.0.iter().any(|(listed, _)| *listed == address(max + 2)));
        assert!(!stakers.0.iter().any(|(listed, _)| Some(*listed) == smallest_highest));
        assert!(stakers.0.windows(2).all(|pair| pair[0].0 < pair[1].0));
        // Stake to zero leaves; the encoded index at its largest fits its limit.
        stakers.set(address(3), Amount::ZERO);
        assert_eq!(stakers.0.len(), max as usize - 1);
        let full = Stakers((0..max).map(|index| (address(index), Amount::MAX)).collect());
        assert!(codec::encode(&full).len() <= limits::STAKERS_BYTES_MAX as usize);
    }

    /// The sizes `limits` gives for stored values are the sizes their encodings have.
    #[test]
    fn stored_values_at_their_largest_fit_their_limits() {
        let address = Address([7; 32]);
        let account = Account {
            balance: Amount::MAX,
            nonce: u64::MAX,
            stake: Amount::MAX,
            unbonding: vec![
                Unbonding { amount: Amount::MAX, release_at: Height::new(u64::MAX) };
                limits::UNBONDING_ENTRIES_MAX as usize
            ],
            votes: vec![address; limits::VOTE_DELEGATES_MAX as usize],
        };
        let account_bytes = codec::encode(&account).len();
        assert_eq!(account_bytes, 16 + 8 + 16 + (8 + 24 * 32) + (8 + 32 * 30));
        assert!(account_bytes <= limits::ACCOUNT_BYTES_MAX as usize);
        assert_eq!(codec::decode::<Account>(&codec::encode(&account)), Ok(account));

        for key in [
            StateKey::Account(address),
            StateKey::Delegate(address),
            StateKey::Unbonding(Height::new(u64::MAX)),
            StateKey::Offence(Hash([7; 32])),
            StateKey::Config,
            StateKey::Meta,
        ] {
            assert!(key.encode().len() <= limits::STATE_KEY_BYTES_MAX as usize, "{key:?}");
        }
        let delegate = Delegate { registered_at: Height::new(u64::MAX), votes_received: Amount::MAX };
        assert_eq!(codec::encode(&delegate).len(), 24);
        let offence = OffenceRecord { slashed_at: Height::new(u64::MAX) };
        assert_eq!(codec::encode(&offence).len(), limits::OFFENCE_RECORD_BYTES_MAX as usize);
        let meta = Meta { height: Height::new(u64::MAX) };
        assert_eq!(codec::encode(&meta).len(), limits::STATE_META_BYTES_MAX as usize);
    }
}

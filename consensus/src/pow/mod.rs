//! Proof of work: a header is valid when its hash meets its target, the target is the one the
//! retarget rule gives for its parent, and its timestamp is after the median of the last
//! [`MEDIAN_TIME_BLOCKS`](difficulty::MEDIAN_TIME_BLOCKS) blocks and not more than
//! `limits::BLOCK_FUTURE_DRIFT_MS_MAX` ahead of the node's clock. Fork choice is the most
//! cumulative work; ties keep the block seen first.
//!
//! The engine records each block's cumulative work ([`Action::Persist`]) before adding the
//! block, so a restarted node knows its head's work without a replay. A mining node proposes a
//! template on its head ([`Action::Propose`]), seals the built block with the target, and has the
//! miner search nonces ([`Action::StartMining`]); a better head stops the search at once
//! ([`Action::StopMining`]) and starts a new template. Templates are refreshed every block time
//! (at most every `limits::MINING_REFRESH_INTERVAL_MS_MIN`) so new transactions and a fresh
//! timestamp get in.

pub mod difficulty;
pub mod mining;

use std::collections::BTreeMap;
use std::sync::Arc;

use chorus_chain::block::Block;
use chorus_chain::crypto::Address;
use chorus_chain::genesis::PowConfig;
use chorus_chain::header::{Header, Seal};
use chorus_chain::limits;
use chorus_chain::primitives::{Hash, Height, Timestamp};

use crate::{
    Action, ChainRead, ChainReadError, Durability, Engine, EngineError, Event, Origin, Outbound, PeerId, TimerId,
};
use difficulty::{MEDIAN_TIME_BLOCKS, U256};

/// Why a PoW block was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PowError {
    #[error("block {hash} is not sealed with proof of work")]
    NotPowSeal { hash: Hash },
    #[error("block {hash} does not meet its target {target}")]
    InsufficientWork { hash: Hash, target: Hash },
    #[error("block {hash} carries target {got}; the retarget rule gives {expected}")]
    WrongTarget { hash: Hash, got: Hash, expected: Hash },
    #[error("block {hash} is at height {got}, but its parent is at height {parent}")]
    WrongHeight { hash: Hash, got: Height, parent: Height },
    #[error("block {hash} has timestamp {timestamp_ms} ms, not after the median {median_ms} ms of its last blocks")]
    TimestampTooOld { hash: Hash, timestamp_ms: u64, median_ms: u64 },
    #[error(
        "block {hash} has timestamp {timestamp_ms} ms, more than {} ms ahead of this node's clock ({now_ms} ms)",
        limits::BLOCK_FUTURE_DRIFT_MS_MAX
    )]
    TimestampInFuture { hash: Hash, timestamp_ms: u64, now_ms: u64 },
    #[error("block {hash} claims target {target}, easier than the genesis limit {limit}")]
    TargetAboveLimit { hash: Hash, target: Hash, limit: Hash },
    #[error(
        "block {hash} forks off below the reorg limit: its chain has less work than this node's chain had {} blocks below the head (height {horizon})",
        limits::REORG_DEPTH_MAX
    )]
    BranchCannotWin { hash: Hash, horizon: Height },
}

impl PowError {
    /// A block from the future may become valid later, and a stale branch may have been valid
    /// news to an honest sender; everything else is the sender's fault.
    pub fn is_peer_fault(&self) -> bool {
        !matches!(self, PowError::TimestampInFuture { .. } | PowError::BranchCannotWin { .. })
    }
}

/// The timer that refreshes the mining template.
pub const REFRESH_TIMER: TimerId = TimerId(0);

const WORK_RECORD_PREFIX: &[u8] = b"pow/work/";

fn work_key(hash: &Hash) -> Vec<u8> {
    [WORK_RECORD_PREFIX, hash.as_bytes().as_slice()].concat()
}

/// A block's cumulative work read without the engine: its record, or (for a block without
/// one, e.g. in a store filled by `Store::import_blocks`) the sum down its ancestors to the
/// first that has one or the genesis, as [`PowEngine::work_of`] sums it. `None` if an ancestor
/// is missing. [`crate::recorded_chain_work`] for PoW.
pub(crate) fn recorded_work<E>(
    config: &PowConfig,
    hash: &Hash,
    header: &Header,
    record: impl Fn(&[u8]) -> Result<Option<Vec<u8>>, E>,
    header_of: impl Fn(&Hash) -> Result<Option<Header>, E>,
) -> Result<Option<[u8; 32]>, E> {
    let mut sum = U256::zero();
    let (mut cursor, mut current) = (*hash, header.clone());
    while current.height != Height::GENESIS {
        if let Some(work) = record(&work_key(&cursor))?.filter(|bytes| bytes.len() == 32) {
            sum = sum.saturating_add(U256::from_big_endian(&work));
            break;
        }
        sum = sum.saturating_add(difficulty::work(&difficulty::header_target(&current, config)));
        cursor = current.parent;
        current = match header_of(&cursor)? {
            Some(parent) => parent,
            None => return Ok(None),
        };
    }
    Ok(Some(sum.to_big_endian()))
}

#[derive(Debug)]
pub struct PowEngine {
    config: PowConfig,
    /// Mine paying to this address; `None` follows the chain without mining.
    coinbase: Option<Address>,
    /// Cumulative work of recent blocks (bounded; the records hold all of it).
    work_cache: BTreeMap<Hash, U256>,
}

impl PowEngine {
    pub fn new(config: PowConfig, coinbase: Option<Address>) -> PowEngine {
        PowEngine { config, coinbase, work_cache: BTreeMap::new() }
    }

    /// The cumulative work of a stored block: from the cache, the engine's records, or (if a
    /// record is missing) summed from its ancestors.
    pub fn work_of(&mut self, chain: &dyn ChainRead, hash: &Hash) -> Result<U256, EngineError> {
        let mut pending: Vec<(Hash, Hash)> = Vec::new();
        let mut cursor = *hash;
        let mut base = loop {
            if let Some(work) = self.known_work(chain, &cursor)? {
                break work;
            }
            let header = chain
                .header(&cursor)?
                .ok_or(ChainReadError::Missing { hash: cursor, role: "a block whose work is asked" })?;
            if header.height == Height::GENESIS {
                break U256::zero();
            }
            pending.push((cursor, difficulty::header_target(&header, &self.config)));
            cursor = header.parent;
        };
        for (block_hash, target) in pending.into_iter().rev() {
            base = base.saturating_add(difficulty::work(&target));
            self.cache_work(block_hash, base);
        }
        Ok(base)
    }

    fn known_work(&self, chain: &dyn ChainRead, hash: &Hash) -> Result<Option<U256>, ChainReadError> {
        if let Some(work) = self.work_cache.get(hash) {
            return Ok(Some(*work));
        }
        Ok(chain.record(&work_key(hash))?.filter(|bytes| bytes.len() == 32).map(|bytes| U256::from_big_endian(&bytes)))
    }

    fn cache_work(&mut self, hash: Hash, work: U256) {
        if self.work_cache.len() >= limits::WORK_CACHE_ENTRIES_MAX as usize {
            self.work_cache.clear();
        }
        self.work_cache.insert(hash, work);
    }

    /// `parent` and up to `count - 1` of its ancestors, oldest first.
    fn window(&self, chain: &dyn ChainRead, parent: &Header, count: usize) -> Result<Vec<Header>, ChainReadError> {
        let mut window = vec![parent.clone()];
        let mut cursor = parent.clone();
        while window.len() < count && cursor.height > Height::GENESIS {
            cursor = chain
                .header(&cursor.parent)?
                .ok_or(ChainReadError::Missing { hash: cursor.parent, role: "the ancestor of a stored block" })?;
            window.push(cursor.clone());
        }
        window.reverse();
        Ok(window)
    }

    fn retarget_len(&self) -> usize {
        usize::try_from(self.config.retarget_window_blocks).unwrap_or(usize::MAX).saturating_add(1)
    }

    /// The target and median time past for a child of `parent`.
    fn child_rules(&self, chain: &dyn ChainRead, parent: &Header) -> Result<(Hash, Timestamp), ChainReadError> {
        let retarget_len = self.retarget_len();
        let window = self.window(chain, parent, retarget_len.max(MEDIAN_TIME_BLOCKS))?;
        let tail = |len: usize| window.get(window.len().saturating_sub(len)..).unwrap_or(&[]);
        let target = difficulty::next_target(&self.config, tail(retarget_len));
        Ok((target, difficulty::median_time_past(tail(MEDIAN_TIME_BLOCKS))))
    }

    /// Checks a header against the PoW rules and returns its cumulative work.
    pub fn check_header(
        &mut self,
        chain: &dyn ChainRead,
        now: Timestamp,
        header: &Header,
    ) -> Result<U256, EngineError> {
        let (hash, target) = check_seal(header)?;
        let parent = chain.header(&header.parent)?.ok_or(EngineError::UnknownParent { hash, parent: header.parent })?;
        if parent.height.next() != Some(header.height) {
            return Err(PowError::WrongHeight { hash, got: header.height, parent: parent.height }.into());
        }
        let (expected, median) = self.child_rules(chain, &parent)?;
        if target != expected {
            return Err(PowError::WrongTarget { hash, got: target, expected }.into());
        }
        let timestamp_ms = header.timestamp.as_millis();
        if header.timestamp <= median {
            return Err(PowError::TimestampTooOld { hash, timestamp_ms, median_ms: median.as_millis() }.into());
        }
        if timestamp_ms > now.as_millis().saturating_add(limits::BLOCK_FUTURE_DRIFT_MS_MAX) {
            return Err(PowError::TimestampInFuture { hash, timestamp_ms, now_ms: now.as_millis() }.into());
        }
        Ok(self.work_of(chain, &header.parent)?.saturating_add(difficulty::work(&target)))
    }

    /// The cumulative work of the store's head. Read from the chain at every decision, never
    /// cached: the head is what the store says it is.
    fn head_work(&mut self, chain: &dyn ChainRead) -> Result<U256, EngineError> {
        let (head, _) = chain.head();
        self.work_of(chain, &head)
    }

    fn on_block(
        &mut self,
        chain: &dyn ChainRead,
        now: Timestamp,
        from: Origin,
        block: Arc<Block>,
        actions: &mut Vec<Action>,
    ) -> Result<(), EngineError> {
        let hash = block.hash();
        if chain.header(&hash)?.is_some() {
            return Ok(());
        }
        let work = self.check_header(chain, now, &block.header)?;
        let make_head = work > self.head_work(chain)?;
        if !make_head {
            self.check_could_win(chain, hash, work)?;
        }
        actions.push(Action::Persist {
            key: work_key(&hash),
            value: work.to_big_endian().to_vec(),
            durability: Durability::Logged,
        });
        self.cache_work(hash, work);
        actions.push(Action::AddBlock { block: Arc::clone(&block), make_head, finalizes: None });
        if from == Origin::Local {
            actions.push(Action::Broadcast(Outbound::Block(block)));
        }
        Ok(())
    }

    /// A side-branch block is stored only if its branch could still become the head: it must
    /// have at least the work the current chain had at the reorg limit, below which no reorg
    /// goes. Anything lighter forks off deeper and would only fill the disk.
    fn check_could_win(&mut self, chain: &dyn ChainRead, hash: Hash, work: U256) -> Result<(), EngineError> {
        let (head_hash, head) = chain.head();
        let Some(horizon) = head.height.get().checked_sub(u64::from(limits::REORG_DEPTH_MAX)) else {
            return Ok(()); // the whole chain is within the limit
        };
        let horizon = Height::new(horizon);
        let horizon_hash = chain.canonical_hash(horizon)?.ok_or(ChainReadError::Missing {
            hash: head_hash,
            role: "the head's canonical ancestor at the reorg limit",
        })?;
        if work < self.work_of(chain, &horizon_hash)? {
            return Err(PowError::BranchCannotWin { hash, horizon }.into());
        }
        Ok(())
    }

    fn on_header(
        &mut self,
        chain: &dyn ChainRead,
        from: PeerId,
        header: Header,
        actions: &mut Vec<Action>,
    ) -> Result<(), EngineError> {
        let hash = header.hash();
        if chain.header(&hash)?.is_some() {
            return Ok(());
        }
        check_seal_within_limit(&header, &self.config)?;
        actions.push(Action::FetchBlock { hash, from: Some(from) });
        Ok(())
    }

    /// Asks for a template on the head, if mining.
    fn propose(&self, chain: &dyn ChainRead, now: Timestamp, actions: &mut Vec<Action>) -> Result<(), EngineError> {
        let Some(coinbase) = self.coinbase else {
            return Ok(());
        };
        let (head, header) = chain.head();
        let (_, median) = self.child_rules(chain, &header)?;
        let timestamp = now.max(Timestamp::from_millis(median.as_millis().saturating_add(1)));
        actions.push(Action::Propose { parent: head, timestamp, proposer: coinbase, votes: Vec::new() });
        Ok(())
    }

    fn on_built(
        &mut self,
        chain: &dyn ChainRead,
        block: Arc<Block>,
        actions: &mut Vec<Action>,
    ) -> Result<(), EngineError> {
        if self.coinbase.is_none() || block.header.parent != chain.head().0 {
            return Ok(()); // stale: a newer template is on its way
        }
        let parent = chain
            .header(&block.header.parent)?
            .ok_or(ChainReadError::Missing { hash: block.header.parent, role: "the parent of a mined block" })?;
        let (target, _) = self.child_rules(chain, &parent)?;
        let mut template = Block::clone(&block);
        template.header.seal = Seal::Pow { target, nonce: 0 };
        actions.push(Action::StartMining { template: Arc::new(template) });
        Ok(())
    }

    /// A fresh template now and the next refresh in a block time (mining nodes only).
    fn refresh(&self, chain: &dyn ChainRead, now: Timestamp, actions: &mut Vec<Action>) -> Result<(), EngineError> {
        if self.coinbase.is_some() {
            let interval_ms = self.config.target_block_time_ms.max(limits::MINING_REFRESH_INTERVAL_MS_MIN);
            let at = Timestamp::from_millis(now.as_millis().saturating_add(interval_ms));
            actions.push(Action::SetTimer { timer: REFRESH_TIMER, at });
        }
        self.propose(chain, now, actions)
    }
}

/// The checks a header passes on its own: a PoW seal whose target its hash meets. Returns the
/// hash and the target.
fn check_seal(header: &Header) -> Result<(Hash, Hash), PowError> {
    let hash = header.hash();
    let Seal::Pow { target, .. } = header.seal else {
        return Err(PowError::NotPowSeal { hash });
    };
    if !difficulty::meets_target(&hash, &target) {
        return Err(PowError::InsufficientWork { hash, target });
    }
    Ok((hash, target))
}

/// [`check_seal`] and the genesis limit: a header without its parent is worth holding only if
/// it cost at least the work of the easiest target the chain allows.
fn check_seal_within_limit(header: &Header, config: &PowConfig) -> Result<(), PowError> {
    let (hash, target) = check_seal(header)?;
    let limit = config.initial_target;
    if difficulty::target_value(&target) > difficulty::target_value(&limit) {
        return Err(PowError::TargetAboveLimit { hash, target, limit });
    }
    Ok(())
}

impl Engine for PowEngine {
    fn name(&self) -> &'static str {
        "pow"
    }

    fn step(
        &mut self,
        chain: &dyn ChainRead,
        now: Timestamp,
        event: Event,
        actions: &mut Vec<Action>,
    ) -> Result<(), EngineError> {
        match event {
            Event::Start => {
                self.head_work(chain)?; // the head's work is known (or rebuilt) before anything else
                self.refresh(chain, now, actions)
            }
            Event::Timer(REFRESH_TIMER) => self.refresh(chain, now, actions),
            Event::Timer(_) => Err(EngineError::Unexpected { engine: "pow", what: "a timer it did not set" }),
            Event::Block { from, block } => self.on_block(chain, now, from, block, actions),
            Event::Mined(block) => self.on_block(chain, now, Origin::Local, block, actions),
            Event::Header { from, header } => self.on_header(chain, from, header, actions),
            Event::Message { .. } => Err(EngineError::Unexpected { engine: "pow", what: "consensus messages" }),
            Event::Built(block) => self.on_built(chain, block, actions),
            // The template is refreshed on its timer with what the mempool holds then.
            Event::TxsPending => Ok(()),
            Event::HeadChanged { .. } => {
                if self.coinbase.is_some() {
                    actions.push(Action::StopMining);
                }
                self.propose(chain, now, actions)
            }
            Event::BlockRejected { .. } => Ok(()),
        }
    }

    fn check_header_alone(&self, header: &Header) -> Result<(), EngineError> {
        Ok(check_seal_within_limit(header, &self.config)?)
    }

    fn chain_work(&mut self, chain: &dyn ChainRead, hash: &Hash) -> Result<Option<[u8; 32]>, EngineError> {
        Ok(Some(self.work_of(chain, hash)?.to_big_endian()))
    }
}

#[cfg(test)]
mod tests;

//! The RPC server's reads of the chain, answered beside the node's thread: from a snapshot of
//! what the store committed ([`chorus_store::Reader`]) and from the pool's shared index
//! ([`PoolIndex`]), never through the queue the node's imports go through, so a long import
//! stalls no client and a halted node still answers.
//!
//! Each read runs on the runtime's blocking pool (a block may take milliseconds to decode).
//! A snapshot sees whole commits: a head, its state and its indexes agree. The pool is read
//! beside it, so a transaction moving between the pool and a block reads as either; one that a
//! reorg rolled back can read as unknown for the moment between the store's rollback and the
//! pool's taking it back.

use std::sync::Arc;

use chorus_chain::Address;
use chorus_chain::block::Block;
use chorus_chain::genesis::Genesis;
use chorus_chain::header::Header;
use chorus_chain::primitives::{Hash, Height};
use chorus_chain::state::tree::StateProof;
use chorus_chain::state::{Account, StateKey};
use chorus_node_core::mempool::PoolIndex;
use chorus_store::{Committed, Reader, StoreError};

use crate::daemon::{ChainWork, HeadInfo};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockRef {
    Height(Height),
    Hash(Hash),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxStatus {
    Unknown,
    Pending,
    Included { height: Height, block: Hash, index: u32, finalized: bool },
}

#[derive(Debug, Clone)]
pub struct AccountInfo {
    pub account: Account,
    /// The nonce the sender's next transaction should carry, counting its pending ones.
    pub next_nonce: u64,
    pub height: Height,
    pub state_root: Hash,
    /// The proof asked for: at this height, against this state root.
    pub proof: Option<(Height, Hash, StateProof)>,
}

/// What the reads need: the store's reader, the pool's index and the genesis (which engine's
/// records hold a chain's work).
#[derive(Debug, Clone)]
pub struct Reads {
    store: Reader,
    pool: PoolIndex,
    genesis: Arc<Genesis>,
}

impl Reads {
    pub fn new(store: Reader, pool: PoolIndex, genesis: Genesis) -> Reads {
        Reads { store, pool, genesis: Arc::new(genesis) }
    }

    /// Runs `read` on a snapshot, on the blocking pool.
    async fn snapshot<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Committed<'_>, &Reads) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reads = self.clone();
        tokio::task::spawn_blocking(move || reads.store.read(|committed| read(committed, &reads)))
            .await
            .unwrap_or_else(|error| Err(StoreError::Db(format!("the read stopped: {error}"))))
    }

    fn chain_work(&self, committed: &Committed<'_>, hash: &Hash, header: &Header) -> Result<ChainWork, StoreError> {
        chorus_consensus::recorded_chain_work(
            &self.genesis,
            hash,
            header,
            |key| committed.engine_record(key),
            |hash| committed.header(hash),
        )
    }

    fn head_info(&self, committed: &Committed<'_>) -> Result<HeadInfo, StoreError> {
        let (hash, header) = committed.head()?;
        let chain_work = self.chain_work(committed, &hash, &header)?;
        Ok(HeadInfo {
            hash,
            height: header.height,
            timestamp: header.timestamp,
            state_root: header.state_root,
            chain_work,
        })
    }

    pub async fn head(&self) -> Result<HeadInfo, StoreError> {
        self.snapshot(|committed, reads| reads.head_info(committed)).await
    }

    pub async fn finalized(&self) -> Result<Option<(Height, Hash)>, StoreError> {
        self.snapshot(|committed, _| committed.finalized()).await
    }

    /// A block of the current chain by height, or any stored block by hash, with its chain
    /// work.
    pub async fn block(&self, reference: BlockRef) -> Result<Option<(Block, ChainWork)>, StoreError> {
        self.snapshot(move |committed, reads| {
            let block = match reference {
                BlockRef::Height(height) => committed.canonical_block(height)?,
                BlockRef::Hash(hash) => committed.block(&hash)?,
            };
            let Some(block) = block else { return Ok(None) };
            let work = reads.chain_work(committed, &block.hash(), &block.header)?;
            Ok(Some((block, work)))
        })
        .await
    }

    /// Pending (the pool holds it), included (final or not), or unknown. The pool is asked
    /// again after the chain, so a transaction the pool took back from a rolled-back block
    /// meanwhile reads as pending.
    pub async fn tx_status(&self, hash: Hash) -> Result<TxStatus, StoreError> {
        if self.pool.contains(&hash) {
            return Ok(TxStatus::Pending);
        }
        self.snapshot(move |committed, reads| {
            let Some(location) = committed.tx_location(&hash)? else {
                return Ok(if reads.pool.contains(&hash) { TxStatus::Pending } else { TxStatus::Unknown });
            };
            let finalized = committed.finalized()?.is_some_and(|(height, _)| height >= location.height);
            Ok(TxStatus::Included {
                height: location.height,
                block: location.block_hash,
                index: location.index,
                finalized,
            })
        })
        .await
    }

    /// The account at the head, its next nonce past its pending transactions, and a proof at
    /// `proof_at` if asked.
    pub async fn account(&self, address: Address, proof_at: Option<Height>) -> Result<AccountInfo, StoreError> {
        self.snapshot(move |committed, reads| {
            let (_, head) = committed.head()?;
            let proof = match proof_at {
                Some(height) => {
                    let proof = committed.prove(&StateKey::Account(address), height, &head)?;
                    Some((height, committed.state_root_at(height)?, proof))
                }
                None => None,
            };
            let account = committed.account(&address)?;
            let next_nonce = reads.pool.next_nonce(&address, account.nonce);
            Ok(AccountInfo { account, next_nonce, height: head.height, state_root: head.state_root, proof })
        })
        .await
    }
}

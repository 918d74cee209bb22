//! The chain store: blocks, state, the state tree and indexes in RocksDB.
//!
//! One block is one atomic `WriteBatch`: its body, its state changes, its tree nodes and
//! versioned values, its undo record, its indexes and the head pointer. A process killed at any
//! moment therefore reopens at a block boundary. Side-branch blocks are kept; [`Store::reorg_to`]
//! moves the head to another branch by rolling blocks back with their undo records and
//! applying the new branch's blocks, one batch per block, so the state after a reorg is exactly
//! that of a node that only saw the winning branch.
//!
//! The store applies blocks only through `chorus_chain::state::apply_block`; it adds no rule of
//! its own. It refuses to open a data directory made for a different genesis and reports a
//! damaged store as [`StoreError::Damaged`], never a panic. An invalid block writes nothing;
//! it is remembered in memory (bounded) so it is not executed twice. [`Store::store_block`]
//! keeps side blocks unexecuted: callers check the engine's seal rules before storing one.
//!
//! Finality is the store's to keep: a block added with a claim (`*_finalizing`: the engine says
//! this block proves that block final) has the claim written with it, and the final block moves
//! in the same batch that puts the claiming block on the current chain, now or in a later reorg.
//! It only moves forward, is read back at open, and no rollback, reorg or side block below it is
//! accepted ([`StoreError::ConflictsWithFinal`], not the sender's fault). The head moves by
//! exactly what a change applied and rolled back, which the store asserts.
//!
//! Writes go to RocksDB's write-ahead log without an fsync per block unless
//! [`StoreOptions::sync_writes`] is set: a killed process loses nothing, and a power loss loses
//! at most the last blocks, never consistency (RocksDB replays whole batches only).

mod cache;
mod read;
mod schema;

use std::path::Path;
use std::sync::Arc;

use chorus_chain::block::{self, Block};
use chorus_chain::codec;
use chorus_chain::crypto::Address;
use chorus_chain::genesis::Genesis;
use chorus_chain::header::Header;
use chorus_chain::limits;
use chorus_chain::primitives::{BlockCount, Hash, Height};
use chorus_chain::state::tree::{self, StateProof, TreeError};
use chorus_chain::state::{
    self, Account, BlockError, BlockOutcome, Delegate, ReadError, StateChange, StateKey, StateRead,
};
use jmt::storage::{LeafNode, Node, NodeKey, TreeReader, TreeUpdateBatch};
use jmt::{KeyHash, OwnedValue, Version};
use rocksdb::{DB, WriteBatch, WriteOptions};

use cache::TwoGenerationCache;
use read::Tables;
pub use read::{Committed, Reader};
use schema::{Cf, FinalRef, MetaKey, TxLocation, UndoRecord};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(String),
    #[error("store is damaged: {what}")]
    Damaged { what: String },
    #[error("this data directory holds the chain of genesis {stored}, but the given genesis file is {given}")]
    GenesisMismatch { stored: Hash, given: Hash },
    #[error("store schema version {found} is not supported, expected {expected}")]
    Schema { found: u32, expected: u32 },
    #[error("block {hash} is not in the store")]
    UnknownBlock { hash: Hash },
    #[error("block {hash} was already found invalid: {error}")]
    KnownInvalid { hash: Hash, error: Arc<BlockError> },
    #[error("block {hash} builds on {parent}, not on the head {head}")]
    NotOnHead { hash: Hash, parent: Hash, head: Hash },
    #[error("block {hash} has unknown parent {parent}")]
    UnknownParent { hash: Hash, parent: Hash },
    #[error("block {hash} has height {got}, its parent is at {parent_height}")]
    BadHeight { hash: Hash, got: Height, parent_height: Height },
    #[error("reorg to {target} would roll back {depth} blocks, limit {}", limits::REORG_DEPTH_MAX)]
    ReorgTooDeep { target: Hash, depth: u64 },
    #[error("block {hash} is invalid: {error}")]
    Invalid { hash: Hash, error: Arc<BlockError> },
    /// `moved` is what the failed reorg left changed: nothing when the old chain was put back;
    /// the branch up to the invalid block when a block of it proved a block above the fork
    /// point final, so that the old chain can never come back.
    #[error("reorg to {target} failed at invalid block {failed} ({error}); the head is at {head}")]
    ReorgFailed { target: Hash, failed: Hash, error: Arc<BlockError>, head: Hash, moved: Box<HeadChange> },
    /// The block (a side block, a reorg's target, or the head to roll back) does not descend
    /// from the final block: accepting it would revert a final block.
    #[error(
        "block {hash} forks from the chain at height {fork_height}, below the final block {final_hash} at {final_height}"
    )]
    ConflictsWithFinal { hash: Hash, fork_height: Height, final_height: Height, final_hash: Hash },
    /// A block's finality claim names a block that is neither it nor one of its ancestors (the
    /// engine's bug: nothing was written).
    #[error("block {hash} claims to prove {claimed} at height {claimed_height} final, which is not on its chain")]
    ClaimNotOnChain { hash: Hash, claimed: Hash, claimed_height: Height },
    #[error("engine record is {size_bytes} bytes, limit {}", limits::ENGINE_RECORD_BYTES_MAX)]
    RecordTooLarge { size_bytes: usize },
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// A [`Reader`]'s store was dropped (the node is shutting down).
    #[error("the store is closed")]
    Closed,
}

impl From<rocksdb::Error> for StoreError {
    fn from(error: rocksdb::Error) -> Self {
        StoreError::Db(error.into_string())
    }
}

impl From<ReadError> for StoreError {
    fn from(error: ReadError) -> Self {
        StoreError::Damaged { what: error.to_string() }
    }
}

fn damaged(what: impl Into<String>) -> StoreError {
    StoreError::Damaged { what: what.into() }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct StoreOptions {
    /// fsync the write-ahead log on every block (survives power loss, costs a sync per block).
    pub sync_writes: bool,
}

/// What moving the head did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeadChange {
    /// Blocks taken off the chain, newest first.
    pub rolled_back: Vec<Hash>,
    /// Blocks put on the chain, oldest first.
    pub applied: Vec<Hash>,
}

pub struct Store {
    /// Shared only with [`Reader`]s, which hold it weakly.
    db: Arc<DB>,
    /// Held for writing across a change made of several write batches (a reorg), so that a
    /// [`Reader`]'s snapshot is never taken midway.
    gate: Arc<std::sync::RwLock<()>>,
    genesis: Genesis,
    genesis_hash: Hash,
    head: Header,
    head_hash: Hash,
    /// The last final block; only moves forward.
    finalized: Option<FinalRef>,
    state_cache: TwoGenerationCache<Vec<u8>, Option<Vec<u8>>>,
    node_cache: TwoGenerationCache<NodeKey, Node>,
    /// Headers of blocks written by this process (consensus engines read recent ancestors).
    header_cache: TwoGenerationCache<Hash, Header>,
    /// Blocks found invalid, with the reason.
    invalid: TwoGenerationCache<Hash, Arc<BlockError>>,
    write_options: WriteOptions,
    sync_writes: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("genesis_hash", &self.genesis_hash).field("head", &self.head.height).finish()
    }
}

impl Store {
    /// Opens (creating if needed) the store in `path` for `genesis`.
    pub fn open(path: &Path, genesis: &Genesis) -> Result<Store, StoreError> {
        Store::open_with(path, genesis, StoreOptions::default())
    }

    pub fn open_with(path: &Path, genesis: &Genesis, options: StoreOptions) -> Result<Store, StoreError> {
        let db = Arc::new(schema::open_db(path)?);
        let mut write_options = WriteOptions::default();
        write_options.set_sync(options.sync_writes);
        let mut store = Store {
            db,
            gate: Arc::default(),
            genesis: genesis.clone(),
            genesis_hash: Hash::ZERO,
            head: state::genesis_block(genesis, Hash::ZERO).header,
            head_hash: Hash::ZERO,
            finalized: None,
            state_cache: TwoGenerationCache::new(limits::STATE_CACHE_ENTRIES_MAX),
            node_cache: TwoGenerationCache::new(limits::TREE_NODE_CACHE_ENTRIES_MAX),
            header_cache: TwoGenerationCache::new(limits::HEADER_CACHE_ENTRIES_MAX),
            invalid: TwoGenerationCache::new(limits::INVALID_BLOCKS_REMEMBERED_MAX),
            write_options,
            sync_writes: options.sync_writes,
        };
        let given = genesis.file_hash();
        match store.get_meta(MetaKey::GenesisFileHash)? {
            None => store.write_genesis(given)?,
            Some(bytes) => {
                let stored = Hash(bytes.try_into().map_err(|_| damaged("genesis file hash is not 32 bytes"))?);
                if stored != given {
                    return Err(StoreError::GenesisMismatch { stored, given });
                }
                let schema = store.get_meta(MetaKey::Schema)?.ok_or_else(|| damaged("no schema version"))?;
                let found =
                    u32::from_le_bytes(schema.try_into().map_err(|_| damaged("schema version is not 4 bytes"))?);
                if found != schema::SCHEMA_VERSION {
                    return Err(StoreError::Schema { found, expected: schema::SCHEMA_VERSION });
                }
            }
        }
        store.genesis_hash = store.meta_hash(MetaKey::GenesisHash)?;
        store.head_hash = store.meta_hash(MetaKey::Head)?;
        store.head = store.required_block(&store.head_hash, || "head block is missing".to_owned())?.header;
        store.finalized = store.tables().finalized()?;
        if let Some(finalized) = store.finalized
            && store.canonical_hash(finalized.height)? != Some(finalized.hash)
        {
            return Err(damaged(format!(
                "the final block {} at {} is not on the current chain",
                finalized.hash, finalized.height
            )));
        }
        Ok(store)
    }

    fn write_genesis(&mut self, genesis_file_hash: Hash) -> Result<(), StoreError> {
        let changes = state::genesis_changes(&self.genesis);
        let (root, tree_batch) = tree::apply_changes(&self.view(), &changes, Height::GENESIS)?;
        let block = state::genesis_block(&self.genesis, root);
        let hash = block.hash();
        let mut batch = WriteBatch::default();
        self.put_block_effects(&mut batch, &block, &changes, &tree_batch, &[]);
        self.put(&mut batch, Cf::Blocks, hash.as_bytes(), &codec::encode(&block));
        self.put(&mut batch, Cf::Meta, MetaKey::Schema.key(), &schema::SCHEMA_VERSION.to_le_bytes());
        self.put(&mut batch, Cf::Meta, MetaKey::GenesisFileHash.key(), genesis_file_hash.as_bytes());
        self.put(&mut batch, Cf::Meta, MetaKey::GenesisHash.key(), hash.as_bytes());
        self.put(&mut batch, Cf::Meta, MetaKey::Head.key(), hash.as_bytes());
        self.db.write_opt(batch, &self.write_options)?;
        Ok(())
    }

    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    pub fn genesis_hash(&self) -> Hash {
        self.genesis_hash
    }

    pub fn head(&self) -> &Header {
        &self.head
    }

    pub fn head_hash(&self) -> Hash {
        self.head_hash
    }

    /// The last final block (height, hash): on the current chain, kept across restarts.
    pub fn finalized(&self) -> Option<(Height, Hash)> {
        self.finalized.map(|finalized| (finalized.height, finalized.hash))
    }

    /// The header of any stored block.
    pub fn header(&self, hash: &Hash) -> Result<Option<Header>, StoreError> {
        if let Some(header) = self.header_cache.get(hash) {
            return Ok(Some(header.clone()));
        }
        self.tables().header(hash)
    }

    /// A record the consensus engine wrote with [`Store::put_engine_record`].
    pub fn engine_record(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.tables().engine_record(key)
    }

    /// Writes a consensus engine's record, durable as blocks are (see the crate docs) or, with
    /// `synced`, fsynced before this returns whatever the store's options. Engines keep here
    /// what they must not forget across a restart, such as a block's chain work or what their
    /// validator signed.
    pub fn put_engine_record(&mut self, key: &[u8], value: &[u8], synced: bool) -> Result<(), StoreError> {
        if key.len().saturating_add(value.len()) > limits::ENGINE_RECORD_BYTES_MAX as usize {
            return Err(StoreError::RecordTooLarge { size_bytes: key.len().saturating_add(value.len()) });
        }
        let mut options = WriteOptions::default();
        options.set_sync(synced || self.sync_writes);
        self.db.put_cf_opt(self.cf(Cf::Engine), key, value, &options)?;
        Ok(())
    }

    /// Writes and deletes (`None`) consensus engine records in one atomic batch, durable as
    /// [`Store::put_engine_record`] says. Engines whose records must agree with each other (a
    /// Raft log and the hard state naming its last entry) write them together, so a crash
    /// leaves all or none.
    pub fn put_engine_records(
        &mut self,
        records: &[(Vec<u8>, Option<Vec<u8>>)],
        synced: bool,
    ) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        for (key, value) in records {
            match value {
                Some(value) => {
                    if key.len().saturating_add(value.len()) > limits::ENGINE_RECORD_BYTES_MAX as usize {
                        return Err(StoreError::RecordTooLarge { size_bytes: key.len().saturating_add(value.len()) });
                    }
                    batch.put_cf(self.cf(Cf::Engine), key, value);
                }
                None => batch.delete_cf(self.cf(Cf::Engine), key),
            }
        }
        let mut options = WriteOptions::default();
        options.set_sync(synced || self.sync_writes);
        self.db.write_opt(batch, &options)?;
        Ok(())
    }

    /// Any stored block, on the chain or on a side branch.
    pub fn block(&self, hash: &Hash) -> Result<Option<Block>, StoreError> {
        self.tables().block(hash)
    }

    pub fn contains_block(&self, hash: &Hash) -> Result<bool, StoreError> {
        self.tables().contains_block(hash)
    }

    /// The hash of the block at `height` on the current chain.
    pub fn canonical_hash(&self, height: Height) -> Result<Option<Hash>, StoreError> {
        self.tables().canonical_hash(height)
    }

    pub fn canonical_block(&self, height: Height) -> Result<Option<Block>, StoreError> {
        match self.canonical_hash(height)? {
            None => Ok(None),
            Some(hash) => self.block(&hash),
        }
    }

    /// Where a transaction of the current chain was included.
    pub fn tx_location(&self, tx_hash: &Hash) -> Result<Option<TxLocation>, StoreError> {
        self.tables().tx_location(tx_hash)
    }

    /// An account at the head.
    pub fn account(&self, address: &Address) -> Result<Account, StoreError> {
        Ok(state::read_account(&self.view(), address)?)
    }

    pub fn delegate(&self, address: &Address) -> Result<Option<Delegate>, StoreError> {
        Ok(state::read_delegate(&self.view(), address)?)
    }

    /// The value of `key` at `height` of the current chain with its proof against that
    /// block's state root.
    pub fn prove(&self, key: &StateKey, height: Height) -> Result<StateProof, StoreError> {
        if height > self.head.height {
            return Err(StoreError::Tree(TreeError::MissingRoot { height }));
        }
        Ok(tree::prove(&self.view(), key, height)?)
    }

    /// The encoded value of the state key `key` as it was after the current chain's block at
    /// `height` (read from the versioned tree values; heights above the head have no state).
    pub fn get_raw_at(&self, height: Height, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if height > self.head.height {
            return Err(StoreError::Tree(TreeError::MissingRoot { height }));
        }
        self.view()
            .get_value_option(height.get(), tree::key_hash(key))
            .map_err(|error| damaged(format!("state value at height {height}: {error}")))
    }

    pub fn state_root_at(&self, height: Height) -> Result<Hash, StoreError> {
        Ok(tree::root_at(&self.view(), height)?)
    }

    /// Reads of what this store commits, from other threads ([`Reader`]).
    pub fn reader(&self) -> Reader {
        Reader::new(&self.db, &self.gate)
    }

    /// The head state and tree as the state machine reads them (for proposers and benches).
    pub fn view(&self) -> View<'_> {
        View { store: self }
    }

    /// Imports a block that builds on the head: validates and executes it and commits it with
    /// its state as one batch. An invalid block changes nothing but the record that it is
    /// invalid.
    pub fn import_block(&mut self, block: &Block) -> Result<(), StoreError> {
        self.import_block_finalizing(block, None)
    }

    /// [`Store::import_block`] for a block that proves the block `finalizes` names (itself or an
    /// ancestor) final: the claim is written with it and, if it is above the current final
    /// block, becomes the final block in the same batch.
    pub fn import_block_finalizing(
        &mut self,
        block: &Block,
        finalizes: Option<(Height, Hash)>,
    ) -> Result<(), StoreError> {
        self.import_block_with(block, finalizes, &block::none_verified)
    }

    /// [`Store::import_block_finalizing`], skipping the signatures of the transactions
    /// `verified` names (the node's mempool: each signature is checked once per node).
    pub fn import_block_with(
        &mut self,
        block: &Block,
        finalizes: Option<(Height, Hash)>,
        verified: block::Verified<'_>,
    ) -> Result<(), StoreError> {
        let hash = block.hash();
        if block.header.parent != self.head_hash {
            return Err(StoreError::NotOnHead { hash, parent: block.header.parent, head: self.head_hash });
        }
        self.refuse_known_invalid(&hash)?;
        let outcome = match state::apply_block_with(&self.view(), &self.genesis, &self.head, block, verified) {
            Ok(outcome) => outcome,
            Err(error) => return Err(self.record_invalid(hash, error)),
        };
        let claim = finalizes.map(|(height, hash)| FinalRef { height, hash });
        self.commit_block(block, &outcome, claim)
    }

    /// Imports consecutive blocks building on the head (the sync path): each block's
    /// signatures are checked on another core, ahead of its import
    /// ([`block::import_with_checks_ahead`]). Stops at the first failure; the blocks before it
    /// stay imported.
    pub fn import_blocks(&mut self, blocks: &[Block]) -> Result<(), StoreError> {
        let chain_id = self.genesis.chain_id.clone();
        block::import_with_checks_ahead(
            blocks,
            |block| block::check_block_stateless(block, &chain_id),
            |block, checked| self.import_checked(block, checked, None),
        )
    }

    /// [`Store::import_block_finalizing`] for a block whose stateless checks (its signatures
    /// among them) were made beforehand: range sync checks a block while the one before it is
    /// imported. Checks made on another block are not taken: this block is checked in full.
    pub fn import_block_prechecked(
        &mut self,
        block: &Block,
        finalizes: Option<(Height, Hash)>,
        checked: block::StatelessChecked,
    ) -> Result<(), StoreError> {
        if checked.block_hash() != block.hash() {
            return self.import_block_finalizing(block, finalizes);
        }
        self.import_checked(block, Ok(checked), finalizes)
    }

    fn import_checked(
        &mut self,
        block: &Block,
        checked: Result<block::StatelessChecked, block::BlockShapeError>,
        finalizes: Option<(Height, Hash)>,
    ) -> Result<(), StoreError> {
        let hash = block.hash();
        if block.header.parent != self.head_hash {
            return Err(StoreError::NotOnHead { hash, parent: block.header.parent, head: self.head_hash });
        }
        self.refuse_known_invalid(&hash)?;
        let outcome = checked
            .map_err(BlockError::from)
            .and_then(|checked| state::apply_checked_block(&self.view(), &self.genesis, &self.head, block, checked));
        match outcome {
            Ok(outcome) => {
                self.commit_block(block, &outcome, finalizes.map(|(height, hash)| FinalRef { height, hash }))
            }
            Err(error) => Err(self.record_invalid(hash, error)),
        }
    }

    fn refuse_known_invalid(&self, hash: &Hash) -> Result<(), StoreError> {
        match self.invalid.get(hash) {
            Some(error) => Err(StoreError::KnownInvalid { hash: *hash, error: Arc::clone(error) }),
            None => Ok(()),
        }
    }

    /// Remembers a consensus-invalid block (in memory, bounded: bad input never reaches the
    /// disk) so it is not executed again; storage failures are not the block's fault and are
    /// passed on unrecorded.
    fn record_invalid(&mut self, hash: Hash, error: BlockError) -> StoreError {
        if matches!(error, BlockError::Read(_) | BlockError::Tree(_)) {
            return StoreError::Damaged { what: error.to_string() };
        }
        let error = Arc::new(error);
        self.invalid.insert(hash, Arc::clone(&error));
        StoreError::Invalid { hash, error }
    }

    /// Writes an applied block and makes it the head, with its finality claim (moving the final
    /// block if the claim is above it). Callers have checked that it builds on the head
    /// (`NotOnHead`) and `apply_block` that its height is the next one.
    fn commit_block(
        &mut self,
        block: &Block,
        outcome: &BlockOutcome,
        claim: Option<FinalRef>,
    ) -> Result<(), StoreError> {
        let hash = block.hash();
        if let Some(claim) = claim {
            self.check_claim(hash, &block.header, claim)?;
        }
        let finalized = claim.filter(|claim| self.finalized.is_none_or(|current| claim.height > current.height));
        // Paired with rollback_head's: the head moves up by exactly this block, before any write.
        assert_eq!(block.header.parent, self.head_hash, "a committed block {hash} builds on the head");
        assert_eq!(
            self.head.height.next(),
            Some(block.header.height),
            "a committed block {hash} is one above the head"
        );
        let encoded_block = (!self.contains_block(&hash)?).then(|| codec::encode(block));
        // Sized once: growing a batch of megabytes by doubling copies it and faults in fresh pages
        // on every step. An estimate past the real size costs only address space.
        let mut batch = WriteBatch::with_capacity_bytes(batch_bytes_estimate(outcome, encoded_block.as_deref()));
        self.put_block_effects(&mut batch, block, &outcome.changes, &outcome.tree_batch, &outcome.tx_hashes);
        let undo = UndoRecord { keys: outcome.changes.iter().map(|change| change.key.clone()).collect() };
        self.put(&mut batch, Cf::Undo, hash.as_bytes(), &codec::encode(&undo));
        if let Some(encoded_block) = &encoded_block {
            self.put(&mut batch, Cf::Blocks, hash.as_bytes(), encoded_block);
        }
        self.put(&mut batch, Cf::Meta, MetaKey::Head.key(), hash.as_bytes());
        if let Some(claim) = claim {
            self.put(&mut batch, Cf::Finality, hash.as_bytes(), &codec::encode(&claim));
        }
        if let Some(finalized) = finalized {
            self.put(&mut batch, Cf::Meta, MetaKey::Finalized.key(), &codec::encode(&finalized));
        }
        self.db.write_opt(batch, &self.write_options)?;

        if finalized.is_some() {
            self.finalized = finalized;
        }
        for change in &outcome.changes {
            self.state_cache.insert(change.key.clone(), Some(change.new.clone()));
        }
        for (key, node) in outcome.tree_batch.node_batch.nodes() {
            self.node_cache.insert(key.clone(), node.clone());
        }
        self.header_cache.insert(hash, block.header.clone());
        self.head = block.header.clone();
        self.head_hash = hash;
        Ok(())
    }

    /// Adds a block's state, tree and index entries to `batch`.
    fn put_block_effects(
        &self,
        batch: &mut WriteBatch,
        block: &Block,
        changes: &[StateChange],
        tree_batch: &TreeUpdateBatch,
        tx_hashes: &[Hash],
    ) {
        let height = block.header.height;
        let hash = block.hash();
        for change in changes {
            self.put(batch, Cf::State, &change.key, &change.new);
        }
        for (key, node) in tree_batch.node_batch.nodes() {
            debug_assert_eq!(key.version(), height.get(), "a block writes tree nodes of its own version");
            self.put(batch, Cf::TreeNodes, &schema::encode_node_key(key), &schema::encode_node(node));
        }
        for ((version, key_hash), value) in tree_batch.node_batch.values() {
            self.put(
                batch,
                Cf::TreeValues,
                &schema::tree_value_key(key_hash, *version),
                &schema::encode_tree_value(value.as_deref()),
            );
        }
        self.put(batch, Cf::Canonical, &height.get().to_be_bytes(), hash.as_bytes());
        // In key order, as every other table's entries come: RocksDB inserts a batch's entries into
        // its sorted memtable one by one, and an entry after the previous one is found from there.
        let mut by_hash: Vec<(usize, &Hash)> = tx_hashes.iter().enumerate().collect();
        by_hash.sort_unstable_by_key(|(_, tx_hash)| *tx_hash);
        for (index, tx_hash) in by_hash {
            let location = TxLocation { height, block_hash: hash, index: u32::try_from(index).unwrap_or(u32::MAX) };
            self.put(batch, Cf::TxIndex, tx_hash.as_bytes(), &codec::encode(&location));
        }
    }

    /// Stores a block without connecting it (a side branch): its parent must be stored, and its
    /// body must match its header and carry valid signatures (checked before anything is
    /// written, so a side branch costs its sender real signatures, like a connected block).
    /// State is checked when it is connected.
    pub fn store_block(&mut self, block: &Block) -> Result<(), StoreError> {
        self.store_block_finalizing(block, None)
    }

    /// [`Store::store_block`] with a finality claim (see [`Store::import_block_finalizing`]),
    /// written with the block and acted on if a reorg puts it on the current chain. A side
    /// block that does not descend from the final block is refused.
    pub fn store_block_finalizing(
        &mut self,
        block: &Block,
        finalizes: Option<(Height, Hash)>,
    ) -> Result<(), StoreError> {
        let hash = block.hash();
        self.refuse_known_invalid(&hash)?;
        if self.contains_block(&hash)? {
            return Ok(());
        }
        // A body that does not match its header, or a bad signature, is bad input and never
        // reaches the disk.
        if let Err(error) = block::check_block_stateless(block, &self.genesis.chain_id) {
            return Err(self.record_invalid(hash, error.into()));
        }
        let parent =
            self.block(&block.header.parent)?.ok_or(StoreError::UnknownParent { hash, parent: block.header.parent })?;
        if parent.header.height.next() != Some(block.header.height) {
            return Err(StoreError::BadHeight { hash, got: block.header.height, parent_height: parent.header.height });
        }
        if let Some(finalized) = self.finalized {
            let fork_height = self.fork_height(&block.header)?;
            if fork_height < finalized.height {
                return Err(StoreError::ConflictsWithFinal {
                    hash,
                    fork_height,
                    final_height: finalized.height,
                    final_hash: finalized.hash,
                });
            }
        }
        let claim = finalizes.map(|(height, hash)| FinalRef { height, hash });
        let mut batch = WriteBatch::default();
        if let Some(claim) = claim {
            self.check_claim(hash, &block.header, claim)?;
            self.put(&mut batch, Cf::Finality, hash.as_bytes(), &codec::encode(&claim));
        }
        self.put(&mut batch, Cf::Blocks, hash.as_bytes(), &codec::encode(block));
        self.db.write_opt(batch, &self.write_options)?;
        self.header_cache.insert(hash, block.header.clone());
        Ok(())
    }

    /// The height at which the chain ending at a block whose parent is stored leaves the
    /// current chain: its highest ancestor on the current chain (walks its side branch).
    fn fork_height(&self, header: &Header) -> Result<Height, StoreError> {
        let mut cursor = header.parent;
        loop {
            let parent = self.header(&cursor)?.ok_or_else(|| damaged(format!("ancestor {cursor} is missing")))?;
            if self.canonical_hash(parent.height)? == Some(cursor) {
                return Ok(parent.height);
            }
            cursor = parent.parent;
        }
    }

    /// Refuses a finality claim that is neither the block `hash` (with `header`, parent stored)
    /// nor one of its ancestors.
    fn check_claim(&self, hash: Hash, header: &Header, claim: FinalRef) -> Result<(), StoreError> {
        let not_on_chain = || StoreError::ClaimNotOnChain { hash, claimed: claim.hash, claimed_height: claim.height };
        if claim.height >= header.height {
            return if claim.height == header.height && claim.hash == hash { Ok(()) } else { Err(not_on_chain()) };
        }
        let mut cursor = header.parent;
        loop {
            let ancestor = self.header(&cursor)?.ok_or_else(|| damaged(format!("ancestor {cursor} is missing")))?;
            let on_chain = if ancestor.height == claim.height {
                cursor == claim.hash
            } else if self.canonical_hash(ancestor.height)? == Some(cursor) {
                self.canonical_hash(claim.height)? == Some(claim.hash)
            } else {
                cursor = ancestor.parent;
                continue;
            };
            return if on_chain { Ok(()) } else { Err(not_on_chain()) };
        }
    }

    /// The finality claim stored with a block, if it has one.
    fn stored_claim(&self, hash: &Hash) -> Result<Option<FinalRef>, StoreError> {
        match self.db.get_pinned_cf(self.cf(Cf::Finality), hash.as_bytes())? {
            None => Ok(None),
            Some(bytes) => {
                codec::decode(&bytes).map(Some).map_err(|error| damaged(format!("finality claim of {hash}: {error}")))
            }
        }
    }

    /// Makes the stored block `target` the head: rolls back to the common ancestor, then
    /// applies the target's branch. If a block of that branch is invalid, it is recorded as
    /// such and the previous chain is restored, unless the blocks applied before it made a block
    /// of the branch final: then the head stays at the last valid block.
    pub fn reorg_to(&mut self, target: Hash) -> Result<HeadChange, StoreError> {
        // A reorg is one write batch per block: readers take no snapshot until it is done.
        let gate = Arc::clone(&self.gate);
        let _whole = gate.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Hashes only: a deep reorg must not hold thousands of blocks in memory.
        let (ancestor, ancestor_height, branch) = self.branch_to(target)?;
        let (old_head_hash, old_height) = (self.head_hash, self.head.height);
        let old_branch = self.canonical_range(ancestor_height, old_height)?;
        // The canonical index and the head must agree; if not, the store is damaged.
        if old_branch.last().copied().unwrap_or(ancestor) != old_head_hash {
            return Err(damaged(format!("the canonical index at height {old_height} is not the head {old_head_hash}")));
        }
        let mut change = HeadChange::default();
        while self.head.height > ancestor_height {
            change.rolled_back.push(self.head_hash);
            self.rollback_head()?;
        }
        if self.head_hash != ancestor {
            return Err(damaged(format!(
                "rolling back to height {ancestor_height} reached {}, the canonical index has {ancestor}",
                self.head_hash
            )));
        }
        for (index, hash) in branch.iter().enumerate() {
            let block = self.required_block(hash, || format!("branch block {hash} vanished"))?;
            let claim = self.stored_claim(hash)?.map(|claim| (claim.height, claim.hash));
            let error = match self.import_block_finalizing(&block, claim) {
                Ok(()) => {
                    change.applied.push(*hash);
                    continue;
                }
                Err(StoreError::Invalid { error, .. } | StoreError::KnownInvalid { error, .. }) => error,
                Err(other) => return Err(other),
            };
            let branch_final = self.finalized.is_some_and(|finalized| finalized.height > ancestor_height);
            if branch_final {
                assert_reorg_heights(old_height, ancestor_height, &change, self.head.height);
            } else {
                self.restore_branch(ancestor_height, &old_branch)?;
                assert_eq!(self.head_hash, old_head_hash, "a failed reorg puts the old chain back");
                change = HeadChange::default();
            }
            // The invalid block and its descendants can never be connected: bad input leaves
            // nothing on disk.
            self.discard_side_blocks(branch.get(index..).unwrap_or_default())?;
            return Err(StoreError::ReorgFailed {
                target,
                failed: *hash,
                error,
                head: self.head_hash,
                moved: Box::new(change),
            });
        }
        assert_eq!(self.head_hash, target, "a reorg that did not fail ends at its target");
        assert_reorg_heights(old_height, ancestor_height, &change, self.head.height);
        Ok(change)
    }

    /// Deletes blocks that are not on the current chain.
    fn discard_side_blocks(&mut self, hashes: &[Hash]) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        for hash in hashes {
            if let Some(header) = self.header(hash)?
                && self.canonical_hash(header.height)? == Some(*hash)
            {
                return Err(damaged(format!("block {hash} to discard is on the current chain")));
            }
            batch.delete_cf(self.cf(Cf::Blocks), hash.as_bytes());
            batch.delete_cf(self.cf(Cf::Finality), hash.as_bytes());
            self.header_cache.remove(hash);
        }
        self.db.write_opt(batch, &self.write_options)?;
        Ok(())
    }

    /// The common ancestor of the head and `target` (the fork point: on the current chain, and
    /// `target` or one of its ancestors), its height, and the hashes from it (exclusive) to
    /// `target` (inclusive), oldest first.
    fn branch_to(&self, target: Hash) -> Result<(Hash, Height, Vec<Hash>), StoreError> {
        let mut branch = Vec::new();
        let mut cursor = target;
        loop {
            let block = self.block(&cursor)?.ok_or(StoreError::UnknownBlock { hash: cursor })?;
            if self.canonical_hash(block.header.height)? == Some(cursor) {
                let ancestor_height = block.header.height;
                let depth = self.head.height.get().saturating_sub(ancestor_height.get());
                if depth > u64::from(limits::REORG_DEPTH_MAX) {
                    return Err(StoreError::ReorgTooDeep { target, depth });
                }
                if let Some(finalized) = self.finalized
                    && ancestor_height < finalized.height
                {
                    return Err(StoreError::ConflictsWithFinal {
                        hash: target,
                        fork_height: ancestor_height,
                        final_height: finalized.height,
                        final_hash: finalized.hash,
                    });
                }
                branch.reverse();
                return Ok((cursor, ancestor_height, branch));
            }
            if branch.len() > limits::REORG_DEPTH_MAX as usize {
                return Err(StoreError::ReorgTooDeep { target, depth: branch.len() as u64 });
            }
            branch.push(cursor);
            cursor = block.header.parent;
        }
    }

    /// The current chain's hashes above `ancestor` up to `top`, oldest first.
    fn canonical_range(&self, ancestor: Height, top: Height) -> Result<Vec<Hash>, StoreError> {
        let mut hashes = Vec::new();
        let mut height = ancestor;
        while height < top {
            height = height.next().expect("invariant: height < top <= u64::MAX");
            hashes.push(self.canonical_hash(height)?.ok_or_else(|| damaged(format!("no block at height {height}")))?);
        }
        Ok(hashes)
    }

    /// Puts back a branch that was valid before a failed reorg.
    fn restore_branch(&mut self, ancestor: Height, branch: &[Hash]) -> Result<(), StoreError> {
        while self.head.height > ancestor {
            self.rollback_head()?;
        }
        for hash in branch {
            let block = self.required_block(hash, || format!("old branch block {hash} vanished"))?;
            self.import_block(&block)
                .map_err(|error| damaged(format!("re-applying a block that was valid: {error}")))?;
        }
        Ok(())
    }

    /// Takes the head block off the chain in one batch: its state changes are undone, its tree
    /// version and index entries deleted, and its parent becomes the head. The block stays
    /// stored as a side block.
    pub fn rollback_head(&mut self) -> Result<(), StoreError> {
        let height = self.head.height;
        if height == Height::GENESIS {
            return Err(damaged("cannot roll back genesis"));
        }
        let hash = self.head_hash;
        if let Some(finalized) = self.finalized
            && height <= finalized.height
        {
            return Err(StoreError::ConflictsWithFinal {
                hash,
                fork_height: height.prev().unwrap_or(Height::GENESIS),
                final_height: finalized.height,
                final_hash: finalized.hash,
            });
        }
        let undo_bytes = self
            .db
            .get_pinned_cf(self.cf(Cf::Undo), hash.as_bytes())?
            .ok_or_else(|| damaged(format!("no undo record for {hash}")))?;
        let undo: UndoRecord =
            codec::decode(&undo_bytes).map_err(|error| damaged(format!("undo record of {hash}: {error}")))?;
        let block = self.required_block(&hash, || format!("head block {hash} is missing"))?;
        let parent = self.required_block(&block.header.parent, || format!("parent of {hash} is missing"))?;
        if parent.header.height.next() != Some(height) {
            return Err(damaged(format!(
                "parent {} of block {hash} at height {height} is at height {}",
                block.header.parent, parent.header.height
            )));
        }

        let mut batch = WriteBatch::default();
        let version = height.get();
        let parent_version = parent.header.height.get();
        let mut restored = Vec::with_capacity(undo.keys.len());
        for key in undo.keys {
            let key_hash = tree::key_hash(&key);
            let old = self.tables().tree_value(parent_version, key_hash).map_err(|error| {
                damaged(format!("the value before block {hash} of state key {}: {error:#}", hex::encode(&key)))
            })?;
            match &old {
                Some(old) => self.put(&mut batch, Cf::State, &key, old),
                None => batch.delete_cf(self.cf(Cf::State), &key),
            }
            batch.delete_cf(self.cf(Cf::TreeValues), schema::tree_value_key(&key_hash, version));
            restored.push((key, old));
        }
        let node_keys = self.tables().tree_node_keys(version)?;
        for node_key in &node_keys {
            batch.delete_cf(self.cf(Cf::TreeNodes), node_key);
        }
        for tx in &block.body.txs {
            batch.delete_cf(self.cf(Cf::TxIndex), tx.hash().as_bytes());
        }
        batch.delete_cf(self.cf(Cf::Canonical), version.to_be_bytes());
        batch.delete_cf(self.cf(Cf::Undo), hash.as_bytes());
        // Its finality claim stays with the (now side) block, for a reorg that re-applies it.
        self.put(&mut batch, Cf::Meta, MetaKey::Head.key(), block.header.parent.as_bytes());
        self.db.write_opt(batch, &self.write_options)?;

        for (key, old) in restored {
            self.state_cache.insert(key, old);
        }
        for node_key in &node_keys {
            if let Ok(key) = schema::decode_node_key(node_key) {
                self.node_cache.remove(&key);
            }
        }
        self.head = parent.header;
        self.head_hash = block.header.parent;
        // Paired with commit_block's: the head moved down by exactly the rolled-back block.
        assert_eq!(self.head.hash(), self.head_hash, "rollback moved the head to the rolled-back block's parent");
        assert_eq!(self.head.height.next(), Some(height), "rollback moved the head down by one block");
        Ok(())
    }

    /// A block the store's own records name: missing, or stored under a hash that is not its
    /// own, the store is damaged (`missing` describes the first case).
    fn required_block(&self, hash: &Hash, missing: impl FnOnce() -> String) -> Result<Block, StoreError> {
        let block = self.block(hash)?.ok_or_else(|| damaged(missing()))?;
        let stored = block.hash();
        if stored != *hash {
            return Err(damaged(format!("the block stored under {hash} is block {stored}")));
        }
        Ok(block)
    }

    /// The latest writes' tables.
    fn tables(&self) -> Tables<'_> {
        Tables { db: &self.db, snapshot: None }
    }

    fn cf(&self, cf: Cf) -> &rocksdb::ColumnFamily {
        self.tables().cf(cf)
    }

    fn put(&self, batch: &mut WriteBatch, cf: Cf, key: &[u8], value: &[u8]) {
        batch.put_cf(self.cf(cf), key, value);
    }

    fn get_meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, StoreError> {
        self.tables().meta(key)
    }

    fn meta_hash(&self, key: MetaKey) -> Result<Hash, StoreError> {
        self.tables().meta_hash(key)
    }
}

/// An upper estimate of the bytes of a block's write batch: its encoding, and for each state
/// change its key and value written four times (state, tree value, undo, a leaf) with room for
/// the internal tree nodes above it.
fn batch_bytes_estimate(outcome: &BlockOutcome, encoded_block: Option<&[u8]>) -> usize {
    /// An internal node of 16 children, each a hash, a version and a leaf count, with its key.
    const NODE_BYTES_MAX: usize = 1024;
    /// A transaction index entry: hash, location and the batch's own framing.
    const TX_INDEX_BYTES: usize = 128;
    let changes: usize =
        outcome.changes.iter().map(|change| 4 * (change.key.len() + change.new.len()) + NODE_BYTES_MAX).sum();
    changes
        .saturating_add(outcome.tx_hashes.len() * TX_INDEX_BYTES)
        .saturating_add(encoded_block.map_or(0, <[u8]>::len))
}

/// Asserts that a reorg moved the head by exactly its blocks, through one fork point: down from
/// `old_height` to `fork_height` one block per rollback, then up to `new_height` one block per
/// block applied (so old height - rolled back + applied = new height).
fn assert_reorg_heights(old_height: Height, fork_height: Height, change: &HeadChange, new_height: Height) {
    let rolled_back = BlockCount(u64::try_from(change.rolled_back.len()).expect("invariant: a usize fits a u64"));
    let applied = BlockCount(u64::try_from(change.applied.len()).expect("invariant: a usize fits a u64"));
    assert_eq!(
        old_height.since(fork_height),
        Some(rolled_back),
        "a reorg from height {old_height} rolls back to the fork point at {fork_height}"
    );
    assert_eq!(
        new_height.since(fork_height),
        Some(applied),
        "a reorg to height {new_height} applies blocks from the fork point at {fork_height}"
    );
}

/// The store as the state machine sees it: the head state and the tree, through the caches.
#[derive(Debug)]
pub struct View<'a> {
    store: &'a Store,
}

impl StateRead for View<'_> {
    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        if let Some(value) = self.store.state_cache.get(key) {
            return Ok(value.clone());
        }
        self.store.tables().state_value(key)
    }
}

impl TreeReader for View<'_> {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        if let Some(node) = self.store.node_cache.get(node_key) {
            return Ok(Some(node.clone()));
        }
        self.store.tables().tree_node(node_key)
    }

    fn get_value_option(&self, max_version: Version, key_hash: KeyHash) -> anyhow::Result<Option<OwnedValue>> {
        self.store.tables().tree_value(max_version, key_hash)
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        anyhow::bail!("tree restore is not supported by the store")
    }
}

#[cfg(test)]
mod tests;

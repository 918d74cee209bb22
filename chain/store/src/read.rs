//! Reads of what the store committed: [`Tables`], shared by the store's owner (the latest
//! writes) and by [`Reader`]s on other threads (a snapshot each).
//!
//! A [`Reader`] lets an RPC server answer reads while the store's owner imports: each
//! [`Reader::read`] sees the store as one committed write batch left it (a block with its
//! state, tree, indexes and the head pointer), never half of one, whatever the owner writes
//! meanwhile; and never a state inside a reorg (one batch per block), which holds the store's
//! gate until its last batch. It holds no strong reference to the database: once the
//! [`Store`](crate::Store) is dropped, the database closes and a read gets
//! [`StoreError::Closed`].

use std::sync::{Arc, PoisonError, RwLock, Weak};

use chorus_chain::block::Block;
use chorus_chain::codec;
use chorus_chain::crypto::Address;
use chorus_chain::header::Header;
use chorus_chain::primitives::{Hash, Height};
use chorus_chain::state::tree::{self, StateProof, TreeError};
use chorus_chain::state::{self, Account, ReadError, StateKey, StateRead};
use jmt::storage::{LeafNode, Node, NodeKey, TreeReader};
use jmt::{KeyHash, OwnedValue, Version};
use rocksdb::{DB, DBPinnableSlice};

use crate::schema::{self, Cf, FinalRef, MetaKey, TxLocation};
use crate::{StoreError, damaged};

/// The tables as one reader sees them: the latest writes, or a snapshot.
#[derive(Clone, Copy)]
pub(crate) struct Tables<'a> {
    pub(crate) db: &'a DB,
    pub(crate) snapshot: Option<&'a rocksdb::Snapshot<'a>>,
}

impl<'a> Tables<'a> {
    pub(crate) fn cf(&self, cf: Cf) -> &'a rocksdb::ColumnFamily {
        self.db.cf_handle(cf.name()).expect("invariant: every column family is created by schema::open_db")
    }

    fn get(&self, cf: Cf, key: impl AsRef<[u8]>) -> Result<Option<DBPinnableSlice<'a>>, rocksdb::Error> {
        match self.snapshot {
            None => self.db.get_pinned_cf(self.cf(cf), key),
            Some(snapshot) => snapshot.get_pinned_cf(self.cf(cf), key),
        }
    }

    pub(crate) fn meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get(Cf::Meta, key.key())?.map(|bytes| bytes.to_vec()))
    }

    pub(crate) fn meta_hash(&self, key: MetaKey) -> Result<Hash, StoreError> {
        let bytes = self.meta(key)?.ok_or_else(|| damaged(format!("meta entry {key:?} is missing")))?;
        Ok(Hash(bytes.try_into().map_err(|_| damaged(format!("meta entry {key:?} is not 32 bytes")))?))
    }

    /// The store's final block record.
    pub(crate) fn finalized(&self) -> Result<Option<FinalRef>, StoreError> {
        match self.get(Cf::Meta, MetaKey::Finalized.key())? {
            None => Ok(None),
            Some(bytes) => {
                codec::decode(&bytes).map(Some).map_err(|error| damaged(format!("final block record: {error}")))
            }
        }
    }

    pub(crate) fn engine_record(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get(Cf::Engine, key)?.map(|bytes| bytes.to_vec()))
    }

    pub(crate) fn block(&self, hash: &Hash) -> Result<Option<Block>, StoreError> {
        match self.get(Cf::Blocks, hash.as_bytes())? {
            None => Ok(None),
            Some(bytes) => codec::decode(&bytes).map(Some).map_err(|error| damaged(format!("block {hash}: {error}"))),
        }
    }

    /// A stored block's header, decoded from the front of the block without its body.
    pub(crate) fn header(&self, hash: &Hash) -> Result<Option<Header>, StoreError> {
        match self.get(Cf::Blocks, hash.as_bytes())? {
            None => Ok(None),
            Some(bytes) => codec::decode_front(&bytes)
                .map(|(header, _)| Some(header))
                .map_err(|error| damaged(format!("block {hash}'s header: {error}"))),
        }
    }

    pub(crate) fn contains_block(&self, hash: &Hash) -> Result<bool, StoreError> {
        Ok(self.get(Cf::Blocks, hash.as_bytes())?.is_some())
    }

    pub(crate) fn canonical_hash(&self, height: Height) -> Result<Option<Hash>, StoreError> {
        match self.get(Cf::Canonical, height.get().to_be_bytes())? {
            None => Ok(None),
            Some(bytes) => Ok(Some(Hash(bytes.as_ref().try_into().map_err(|_| damaged("canonical index entry"))?))),
        }
    }

    pub(crate) fn tx_location(&self, tx_hash: &Hash) -> Result<Option<TxLocation>, StoreError> {
        match self.get(Cf::TxIndex, tx_hash.as_bytes())? {
            None => Ok(None),
            Some(bytes) => codec::decode(&bytes).map(Some).map_err(|error| damaged(format!("tx index: {error}"))),
        }
    }

    /// A value of the head state.
    pub(crate) fn state_value(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        let value = self.get(Cf::State, key).map_err(|error| ReadError::Storage(error.into_string()))?;
        Ok(value.map(|bytes| bytes.to_vec()))
    }

    pub(crate) fn tree_node(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        let Some(bytes) = self.get(Cf::TreeNodes, schema::encode_node_key(node_key))? else { return Ok(None) };
        Ok(Some(schema::decode_node(&bytes)?))
    }

    fn iterator(&self, cf: Cf) -> rocksdb::DBRawIterator<'a> {
        match self.snapshot {
            None => self.db.raw_iterator_cf(self.cf(cf)),
            Some(snapshot) => snapshot.raw_iterator_cf(self.cf(cf)),
        }
    }

    /// The encoded keys of every tree node of `version` (the nodes its block wrote).
    pub(crate) fn tree_node_keys(&self, version: Version) -> Result<Vec<Vec<u8>>, StoreError> {
        let prefix = schema::node_key_prefix(version);
        let mut iterator = self.iterator(Cf::TreeNodes);
        iterator.seek(prefix);
        let mut keys = Vec::new();
        while let Some(key) = iterator.key()
            && key.starts_with(&prefix)
        {
            keys.push(key.to_vec());
            iterator.next();
        }
        iterator.status()?;
        Ok(keys)
    }

    /// The value under `key_hash` at the latest version up to `max_version`.
    pub(crate) fn tree_value(&self, max_version: Version, key_hash: KeyHash) -> anyhow::Result<Option<OwnedValue>> {
        let mut iterator = self.iterator(Cf::TreeValues);
        iterator.seek_for_prev(schema::tree_value_key(&key_hash, max_version));
        match (iterator.key(), iterator.value()) {
            (Some(key), Some(value)) if key.starts_with(&key_hash.0) => Ok(schema::decode_tree_value(value)?),
            _ => {
                iterator.status()?;
                Ok(None)
            }
        }
    }
}

/// Reads the committed chain from any thread, beside the store's owner ([`Store::reader`]).
///
/// [`Store::reader`]: crate::Store::reader
#[derive(Clone, Debug)]
pub struct Reader {
    db: Weak<DB>,
    gate: Arc<RwLock<()>>,
}

impl Reader {
    pub(crate) fn new(db: &Arc<DB>, gate: &Arc<RwLock<()>>) -> Reader {
        Reader { db: Arc::downgrade(db), gate: Arc::clone(gate) }
    }

    /// Runs `read` on a snapshot of what the store has committed.
    pub fn read<T>(&self, read: impl FnOnce(&Committed<'_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let db = self.db.upgrade().ok_or(StoreError::Closed)?;
        let snapshot = {
            let _between_changes = self.gate.read().unwrap_or_else(PoisonError::into_inner);
            db.snapshot()
        };
        read(&Committed { tables: Tables { db: &db, snapshot: Some(&snapshot) } })
    }
}

/// The chain as one committed write left it: the head, the final block, blocks, the head
/// state, proofs at any height of the current chain.
pub struct Committed<'a> {
    tables: Tables<'a>,
}

impl std::fmt::Debug for Committed<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Committed")
    }
}

impl Committed<'_> {
    /// The head block's hash and header.
    pub fn head(&self) -> Result<(Hash, Header), StoreError> {
        let hash = self.tables.meta_hash(MetaKey::Head)?;
        let header = self.tables.header(&hash)?.ok_or_else(|| damaged("head block is missing"))?;
        Ok((hash, header))
    }

    /// The last final block (height, hash).
    pub fn finalized(&self) -> Result<Option<(Height, Hash)>, StoreError> {
        Ok(self.tables.finalized()?.map(|finalized| (finalized.height, finalized.hash)))
    }

    /// Any stored block, on the chain or on a side branch.
    pub fn block(&self, hash: &Hash) -> Result<Option<Block>, StoreError> {
        self.tables.block(hash)
    }

    /// Any stored block's header.
    pub fn header(&self, hash: &Hash) -> Result<Option<Header>, StoreError> {
        self.tables.header(hash)
    }

    /// The block at `height` of the current chain.
    pub fn canonical_block(&self, height: Height) -> Result<Option<Block>, StoreError> {
        match self.tables.canonical_hash(height)? {
            None => Ok(None),
            Some(hash) => self.tables.block(&hash),
        }
    }

    /// Where a transaction of the current chain was included.
    pub fn tx_location(&self, tx_hash: &Hash) -> Result<Option<TxLocation>, StoreError> {
        self.tables.tx_location(tx_hash)
    }

    /// A record the consensus engine wrote.
    pub fn engine_record(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.tables.engine_record(key)
    }

    /// An account at the head.
    pub fn account(&self, address: &Address) -> Result<Account, StoreError> {
        Ok(state::read_account(self, address)?)
    }

    /// The value of `key` at `height` of the current chain, with its proof against that
    /// block's state root.
    pub fn prove(&self, key: &StateKey, height: Height, head: &Header) -> Result<StateProof, StoreError> {
        if height > head.height {
            return Err(StoreError::Tree(TreeError::MissingRoot { height }));
        }
        Ok(tree::prove(self, key, height)?)
    }

    pub fn state_root_at(&self, height: Height) -> Result<Hash, StoreError> {
        Ok(tree::root_at(self, height)?)
    }
}

impl StateRead for Committed<'_> {
    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        self.tables.state_value(key)
    }
}

impl TreeReader for Committed<'_> {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        self.tables.tree_node(node_key)
    }

    fn get_value_option(&self, max_version: Version, key_hash: KeyHash) -> anyhow::Result<Option<OwnedValue>> {
        self.tables.tree_value(max_version, key_hash)
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        anyhow::bail!("tree restore is not supported by the store")
    }
}

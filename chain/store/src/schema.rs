//! The on-disk layout: column families, key encodings and the store's own records.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `meta` | [`MetaKey`] | schema version, genesis file hash, genesis block hash, head hash, final block |
//! | `blocks` | block hash | encoded block (current chain and side branches) |
//! | `canonical` | height, big-endian | block hash on the current chain |
//! | `tx_index` | tx hash | [`TxLocation`] on the current chain |
//! | `state` | encoded `StateKey` | encoded value at the head |
//! | `tree_nodes` | borsh `NodeKey` (version first) | borsh tree node |
//! | `tree_values` | key hash ++ version, big-endian | tagged value (versioned, for proofs) |
//! | `undo` | block hash | [`UndoRecord`] of a block on the current chain |
//! | `engine` | engine-chosen key | the consensus engine's own records (e.g. chain work, votes cast) |
//! | `finality` | block hash | [`FinalRef`]: the block this block proves final, written with it |

use std::path::Path;

use chorus_chain::codec::{Canonical, Decode, Encode};
use chorus_chain::limits;
use chorus_chain::primitives::{Hash, Height};
use jmt::storage::{Node, NodeKey};
use jmt::{KeyHash, Version};
use rocksdb::{ColumnFamilyDescriptor, DB, Options};

use crate::StoreError;

/// Bumped on any change to this layout; a store of another version is refused.
pub(crate) const SCHEMA_VERSION: u32 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cf {
    Meta,
    Blocks,
    Canonical,
    TxIndex,
    State,
    TreeNodes,
    TreeValues,
    Undo,
    Engine,
    Finality,
}

impl Cf {
    const ALL: [Cf; 10] = [
        Cf::Meta,
        Cf::Blocks,
        Cf::Canonical,
        Cf::TxIndex,
        Cf::State,
        Cf::TreeNodes,
        Cf::TreeValues,
        Cf::Undo,
        Cf::Engine,
        Cf::Finality,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Cf::Meta => "meta",
            Cf::Blocks => "blocks",
            Cf::Canonical => "canonical",
            Cf::TxIndex => "tx_index",
            Cf::State => "state",
            Cf::TreeNodes => "tree_nodes",
            Cf::TreeValues => "tree_values",
            Cf::Undo => "undo",
            Cf::Engine => "engine",
            Cf::Finality => "finality",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetaKey {
    Schema,
    GenesisFileHash,
    GenesisHash,
    Head,
    Finalized,
}

impl MetaKey {
    pub(crate) fn key(self) -> &'static [u8] {
        match self {
            MetaKey::Schema => b"schema_version",
            MetaKey::GenesisFileHash => b"genesis_file_hash",
            MetaKey::GenesisHash => b"genesis_hash",
            MetaKey::Head => b"head",
            MetaKey::Finalized => b"finalized",
        }
    }
}

/// Where a transaction sits on the current chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
#[bincode(crate = "chorus_chain::codec::backend")]
pub struct TxLocation {
    pub height: Height,
    pub block_hash: Hash,
    pub index: u32,
}

impl Canonical for TxLocation {
    const BYTES_MAX: u32 = limits::TX_LOCATION_BYTES_MAX;
}

/// A final block: the store's final block (`meta`), or the one a block proves final
/// (`finality`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
#[bincode(crate = "chorus_chain::codec::backend")]
pub(crate) struct FinalRef {
    pub(crate) height: Height,
    pub(crate) hash: Hash,
}

impl Canonical for FinalRef {
    const BYTES_MAX: u32 = limits::FINAL_REF_BYTES_MAX;
}

/// What rolling a block back needs beyond the tables: the encoded state keys it changed. Their
/// old values are the tree's values one version down (`tree_values` keeps every version of the
/// current chain), and the tree nodes it wrote are those of its version (`tree_nodes` keys
/// start with it), so neither is written twice.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[bincode(crate = "chorus_chain::codec::backend")]
pub(crate) struct UndoRecord {
    pub(crate) keys: Vec<Vec<u8>>,
}

impl Canonical for UndoRecord {
    const BYTES_MAX: u32 = limits::STORE_RECORD_BYTES_MAX;
}

pub(crate) fn open_db(path: &Path) -> Result<DB, StoreError> {
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    options.set_max_open_files(
        i32::try_from(limits::STORE_OPEN_FILES_MAX).expect("invariant: limits asserts it fits an i32"),
    );
    options.set_compression_type(rocksdb::DBCompressionType::Lz4);
    options.set_write_buffer_size(limits::STORE_WRITE_BUFFER_BYTES_MAX as usize);
    options.increase_parallelism(2);
    let descriptors = Cf::ALL.iter().map(|cf| ColumnFamilyDescriptor::new(cf.name(), options.clone()));
    DB::open_cf_descriptors(&options, path, descriptors).map_err(|error| {
        StoreError::Db(format!("cannot open the store at {}: {}", path.display(), error.into_string()))
    })
}

/// The start every `tree_nodes` key of tree version `version` shares (borsh puts the version
/// first, little-endian).
pub(crate) fn node_key_prefix(version: Version) -> [u8; 8] {
    version.to_le_bytes()
}

pub(crate) fn encode_node_key(key: &NodeKey) -> Vec<u8> {
    borsh::to_vec(key).expect("invariant: serializing into a Vec cannot fail")
}

pub(crate) fn decode_node_key(bytes: &[u8]) -> Result<NodeKey, std::io::Error> {
    borsh::from_slice(bytes)
}

pub(crate) fn encode_node(node: &Node) -> Vec<u8> {
    borsh::to_vec(node).expect("invariant: serializing into a Vec cannot fail")
}

pub(crate) fn decode_node(bytes: &[u8]) -> Result<Node, std::io::Error> {
    borsh::from_slice(bytes)
}

pub(crate) fn tree_value_key(key_hash: &KeyHash, version: Version) -> Vec<u8> {
    let mut key = Vec::with_capacity(40);
    key.extend_from_slice(&key_hash.0);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

pub(crate) fn encode_tree_value(value: Option<&[u8]>) -> Vec<u8> {
    match value {
        None => vec![0],
        Some(bytes) => {
            let mut encoded = Vec::with_capacity(bytes.len() + 1);
            encoded.push(1);
            encoded.extend_from_slice(bytes);
            encoded
        }
    }
}

pub(crate) fn decode_tree_value(bytes: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
    match bytes.split_first() {
        Some((0, [])) => Ok(None),
        Some((1, rest)) => Ok(Some(rest.to_vec())),
        _ => Err(StoreError::Damaged { what: "tree value has a bad tag".into() }),
    }
}

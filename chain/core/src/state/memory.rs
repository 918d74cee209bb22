//! An in-memory state with its tree: for tests and the deterministic simulator only.
//!
//! It runs the same [`apply_block`](super::apply_block) as the RocksDB store and keeps the
//! current chain's state, tree nodes and versioned values in ordered maps.

use std::collections::BTreeMap;

use jmt::storage::{LeafNode, Node, NodeKey, TreeReader};
use jmt::{KeyHash, OwnedValue, Version};

use super::tree::{self, TreeError};
use super::{BlockOutcome, ReadError, StateChange, StateRead};
use crate::block::Block;
use crate::genesis::Genesis;
use crate::primitives::Height;

#[derive(Debug, Default, Clone)]
pub struct MemoryState {
    flat: BTreeMap<Vec<u8>, Vec<u8>>,
    nodes: BTreeMap<NodeKey, Node>,
    values: BTreeMap<(KeyHash, Version), Option<OwnedValue>>,
}

impl MemoryState {
    /// The genesis state and block.
    pub fn from_genesis(genesis: &Genesis) -> Result<(MemoryState, Block), TreeError> {
        let mut state = MemoryState::default();
        let changes = super::genesis_changes(genesis);
        let (root, batch) = tree::apply_changes(&state, &changes, Height::GENESIS)?;
        state.commit(&changes, &batch);
        Ok((state, super::genesis_block(genesis, root)))
    }

    /// Writes a block's outcome.
    pub fn commit_outcome(&mut self, outcome: &BlockOutcome) {
        self.commit(&outcome.changes, &outcome.tree_batch);
    }

    fn commit(&mut self, changes: &[StateChange], batch: &jmt::storage::TreeUpdateBatch) {
        for change in changes {
            self.flat.insert(change.key.clone(), change.new.clone());
        }
        for (key, node) in batch.node_batch.nodes() {
            self.nodes.insert(key.clone(), node.clone());
        }
        for ((version, key_hash), value) in batch.node_batch.values() {
            self.values.insert((*key_hash, *version), value.clone());
        }
    }
}

impl StateRead for MemoryState {
    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        Ok(self.flat.get(key).cloned())
    }
}

impl TreeReader for MemoryState {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        Ok(self.nodes.get(node_key).cloned())
    }

    fn get_value_option(&self, max_version: Version, key_hash: KeyHash) -> anyhow::Result<Option<OwnedValue>> {
        Ok(self.values.range((key_hash, 0)..=(key_hash, max_version)).next_back().and_then(|(_, value)| value.clone()))
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        anyhow::bail!("tree restore is not supported by the memory state")
    }
}

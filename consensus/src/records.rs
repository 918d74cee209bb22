//! Test support: a chain that holds only engine records, as the driver keeps them. What a
//! restarted engine reads back of its guard or its Raft log.

use std::collections::BTreeMap;

use chorus_chain::block::Block;
use chorus_chain::genesis::Genesis;
use chorus_chain::header::Header;
use chorus_chain::primitives::{Hash, Height};
use chorus_chain::state::{ReadError, StateRead};

use crate::{Action, ChainRead, ChainReadError, Durability};

pub struct Records {
    pub genesis: Genesis,
    pub records: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Records {
    pub fn new(genesis: Genesis) -> Records {
        Records { genesis, records: BTreeMap::new() }
    }

    /// Keeps what the actions persisted with at least `durability`, as the driver would across
    /// a kill (`Logged`) or a power loss (`Synced`).
    pub fn keep(&mut self, actions: &mut Vec<Action>, durability: Durability) {
        for action in actions.drain(..) {
            match action {
                Action::Persist { key, value, durability: written } => {
                    if written == Durability::Synced || durability == Durability::Logged {
                        self.records.insert(key, value);
                    }
                }
                other => panic!("only records are kept, got {other:?}"),
            }
        }
    }

    /// Writes (`Some`) and deletes (`None`) a batch of records.
    pub fn write(&mut self, batch: Vec<(Vec<u8>, Option<Vec<u8>>)>) {
        for (key, value) in batch {
            match value {
                Some(value) => self.records.insert(key, value),
                None => self.records.remove(&key),
            };
        }
    }
}

impl StateRead for Records {
    fn get_raw(&self, _key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        Ok(None)
    }
}

impl ChainRead for Records {
    fn genesis(&self) -> &Genesis {
        &self.genesis
    }
    fn head(&self) -> (Hash, Header) {
        unreachable!("only records are read")
    }
    fn header(&self, _hash: &Hash) -> Result<Option<Header>, ChainReadError> {
        unreachable!("only records are read")
    }
    fn canonical_hash(&self, _height: Height) -> Result<Option<Hash>, ChainReadError> {
        unreachable!("only records are read")
    }
    fn record(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ChainReadError> {
        Ok(self.records.get(key).cloned())
    }
    fn finalized(&self) -> Option<(Height, Hash)> {
        None
    }
    fn block(&self, _hash: &Hash) -> Result<Option<Block>, ChainReadError> {
        unreachable!("only records are read")
    }
    fn get_raw_at(&self, _height: Height, _key: &[u8]) -> Result<Option<Vec<u8>>, ChainReadError> {
        unreachable!("only records are read")
    }
}

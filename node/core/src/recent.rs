//! A bounded memory of hashes seen lately, oldest forgotten first: what a node relayed, whose
//! signatures it checked.

use std::collections::{BTreeSet, VecDeque};

use chorus_chain::primitives::Hash;

#[derive(Debug)]
pub struct RecentHashes {
    max: usize,
    /// Each hash with the time (ms, the caller's clock) it was remembered at, oldest first.
    order: VecDeque<(u64, Hash)>,
    hashes: BTreeSet<Hash>,
}

impl RecentHashes {
    /// Remembers at most `max` hashes.
    pub fn new(max: u32) -> RecentHashes {
        RecentHashes { max: max as usize, order: VecDeque::new(), hashes: BTreeSet::new() }
    }

    pub fn contains(&self, hash: &Hash) -> bool {
        self.hashes.contains(hash)
    }

    /// Remembers `hash` at `at_ms`, forgetting the oldest beyond the bound; `false` if it was
    /// remembered already.
    pub fn insert(&mut self, at_ms: u64, hash: Hash) -> bool {
        if !self.hashes.insert(hash) {
            return false;
        }
        self.order.push_back((at_ms, hash));
        while self.order.len() > self.max
            && let Some((_, oldest)) = self.order.pop_front()
        {
            self.hashes.remove(&oldest);
        }
        true
    }

    /// Forgets the hashes remembered before `at_ms`.
    pub fn forget_before(&mut self, at_ms: u64) {
        while let Some((at, hash)) = self.order.front().copied()
            && at < at_ms
        {
            self.order.pop_front();
            self.hashes.remove(&hash);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_are_forgotten_first_by_count_and_by_time() {
        let mut recent = RecentHashes::new(3);
        assert!(recent.insert(1, Hash([1; 32])) && recent.insert(2, Hash([2; 32])) && recent.insert(3, Hash([3; 32])));
        assert!(!recent.insert(4, Hash([1; 32])), "remembered already");
        assert!(recent.insert(5, Hash([4; 32])));
        assert!(!recent.contains(&Hash([1; 32])) && recent.contains(&Hash([4; 32])), "over the bound");
        recent.forget_before(3);
        assert!(!recent.contains(&Hash([2; 32])) && recent.contains(&Hash([3; 32])));
    }
}

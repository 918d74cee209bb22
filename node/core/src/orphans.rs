//! Blocks whose parent is not stored yet, held while their ancestors are fetched.
//!
//! What a peer can make a node hold here is bounded three ways (`chorus_chain::limits`): in
//! count (`ORPHAN_BLOCKS_MAX`), in bytes (`ORPHAN_BYTES_MAX`) and per peer
//! (`ORPHANS_PER_PEER_MAX`); and in time, since an orphan expires after `ORPHAN_EXPIRY_MS`. When
//! room is needed, the peer holding the most loses its oldest block, so a flood from a few
//! peers displaces their own blocks, not the others'. The driver checks each header's seal
//! before holding it, so every held block cost its sender the chain's minimum work.
//!
//! Pure bookkeeping on the node's time; nothing survives a restart (sync fetches again).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use chorus_chain::block::Block;
use chorus_chain::limits;
use chorus_chain::primitives::{Hash, Timestamp};
use chorus_consensus::PeerId;

#[derive(Debug)]
struct Orphan {
    block: Arc<Block>,
    hash: Hash,
    from: PeerId,
    arrived: Timestamp,
    size_bytes: u64,
}

#[derive(Debug, Default)]
pub struct Orphans {
    /// Oldest first.
    held: VecDeque<Orphan>,
    size_bytes: u64,
}

impl Orphans {
    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    pub fn contains(&self, hash: &Hash) -> bool {
        self.held.iter().any(|orphan| orphan.hash == *hash)
    }

    /// Holds `block` (of `size_bytes` encoded) from `from`, making room as the module docs say.
    pub fn hold(&mut self, now: Timestamp, block: Arc<Block>, from: PeerId, size_bytes: u64) {
        self.expire(now);
        let hash = block.hash();
        if self.contains(&hash) || size_bytes > limits::ORPHAN_BYTES_MAX {
            return;
        }
        if self.count_from(&from) >= limits::ORPHANS_PER_PEER_MAX as usize {
            self.drop_oldest_of(&from);
        }
        while !self.held.is_empty()
            && (self.held.len() >= limits::ORPHAN_BLOCKS_MAX as usize
                || self.size_bytes.saturating_add(size_bytes) > limits::ORPHAN_BYTES_MAX)
        {
            let Some(greediest) = self.greediest_peer() else { break };
            self.drop_oldest_of(&greediest);
        }
        self.size_bytes = self.size_bytes.saturating_add(size_bytes);
        self.held.push_back(Orphan { block, hash, from, arrived: now, size_bytes });
    }

    /// Takes out the orphans whose parent is `parent`, oldest first, with who sent them.
    pub fn take_children(&mut self, parent: &Hash) -> Vec<(Arc<Block>, PeerId)> {
        let (children, kept): (VecDeque<Orphan>, VecDeque<Orphan>) =
            std::mem::take(&mut self.held).into_iter().partition(|orphan| orphan.block.header.parent == *parent);
        self.held = kept;
        for child in &children {
            self.size_bytes = self.size_bytes.saturating_sub(child.size_bytes);
        }
        children.into_iter().map(|orphan| (orphan.block, orphan.from)).collect()
    }

    /// Drops the orphans held longer than `ORPHAN_EXPIRY_MS`.
    pub fn expire(&mut self, now: Timestamp) {
        while let Some(oldest) = self.held.front() {
            if now.as_millis() < oldest.arrived.as_millis().saturating_add(limits::ORPHAN_EXPIRY_MS) {
                break;
            }
            if let Some(dropped) = self.held.pop_front() {
                self.size_bytes = self.size_bytes.saturating_sub(dropped.size_bytes);
            }
        }
    }

    fn count_from(&self, peer: &PeerId) -> usize {
        self.held.iter().filter(|orphan| orphan.from == *peer).count()
    }

    /// The peer holding the most orphans (ties: the smallest peer id, for determinism).
    fn greediest_peer(&self) -> Option<PeerId> {
        let mut counts: BTreeMap<&PeerId, usize> = BTreeMap::new();
        for orphan in &self.held {
            let count = counts.entry(&orphan.from).or_default();
            *count = count.saturating_add(1);
        }
        let most = counts.values().copied().max()?;
        counts.into_iter().find(|(_, count)| *count == most).map(|(peer, _)| peer.clone())
    }

    fn drop_oldest_of(&mut self, peer: &PeerId) {
        if let Some(index) = self.held.iter().position(|orphan| orphan.from == *peer)
            && let Some(dropped) = self.held.remove(index)
        {
            self.size_bytes = self.size_bytes.saturating_sub(dropped.size_bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use chorus_chain::primitives::Height;
    use chorus_chain::testing;

    use super::*;

    /// A distinct block per `id`, with parent `parent`.
    fn block(id: u64, parent: u8) -> Arc<Block> {
        let mut block = chorus_chain::state::genesis_block(&testing::genesis(1, 1), Hash::ZERO);
        block.header.height = Height::new(id);
        block.header.parent = Hash([parent; 32]);
        Arc::new(block)
    }

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[test]
    fn a_flooding_peer_displaces_its_own_orphans_not_the_others() {
        let (honest, flooder) = (PeerId::new("honest"), PeerId::new("flooder"));
        let mut orphans = Orphans::default();
        orphans.hold(at(0), block(1, 1), honest.clone(), 100);
        for id in 0..1_000 {
            orphans.hold(at(1), block(100 + id, 2), flooder.clone(), 100);
        }
        assert_eq!(orphans.len(), 1 + limits::ORPHANS_PER_PEER_MAX as usize);
        assert!(orphans.contains(&block(1, 1).hash()), "the honest peer's orphan stays");
        assert!(orphans.contains(&block(1_099, 2).hash()), "the flooder keeps only its newest");
        assert!(!orphans.contains(&block(100, 2).hash()));
        // Its children come out when the parent arrives.
        let children = orphans.take_children(&Hash([1; 32]));
        assert_eq!(children.len(), 1);
        assert_eq!(children[0].1, honest);
        assert_eq!(orphans.size_bytes(), 100 * u64::from(limits::ORPHANS_PER_PEER_MAX));
    }

    #[test]
    fn bytes_bound_the_pool_and_the_greediest_peer_pays() {
        let mut orphans = Orphans::default();
        let big = limits::ORPHAN_BYTES_MAX / 4;
        let (a, b) = (PeerId::new("a"), PeerId::new("b"));
        orphans.hold(at(0), block(1, 1), a.clone(), big);
        for id in 0..3 {
            orphans.hold(at(0), block(10 + id, 2), b.clone(), big);
        }
        assert_eq!(orphans.size_bytes(), limits::ORPHAN_BYTES_MAX);
        // Full: b holds the most and loses its oldest.
        orphans.hold(at(0), block(2, 1), a.clone(), big);
        assert_eq!(orphans.size_bytes(), limits::ORPHAN_BYTES_MAX);
        assert!(orphans.contains(&block(1, 1).hash()) && orphans.contains(&block(2, 1).hash()));
        assert!(!orphans.contains(&block(10, 2).hash()));
        // Larger than the whole pool: not held.
        orphans.hold(at(0), block(3, 1), a, limits::ORPHAN_BYTES_MAX + 1);
        assert_eq!(orphans.len(), 4);
    }

    #[test]
    fn orphans_expire() {
        let peer = PeerId::new("a");
        let mut orphans = Orphans::default();
        orphans.hold(at(0), block(1, 1), peer.clone(), 10);
        orphans.hold(at(30_000), block(2, 1), peer, 10);
        orphans.expire(at(limits::ORPHAN_EXPIRY_MS));
        assert_eq!(orphans.len(), 1, "the first expired, the second has 30 s left");
        orphans.expire(at(30_000 + limits::ORPHAN_EXPIRY_MS));
        assert!(orphans.is_empty() && orphans.size_bytes() == 0);
    }
}

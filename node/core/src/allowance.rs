//! A per-peer allowance that refills with time (a token bucket per peer), on the node's clock:
//! how much of something a peer may make the node do or keep before it is ignored for a while.
//!
//! The map of peers is bounded; when full, the peer with the most allowance left is forgotten,
//! since forgetting it changes least (it would start full again).

use std::collections::BTreeMap;

use chorus_chain::primitives::Timestamp;
use chorus_consensus::PeerId;

#[derive(Debug)]
pub struct Allowance {
    burst: u64,
    per_sec: u64,
    peers_max: usize,
    /// Each tracked peer's allowance left, as of the time beside it.
    peers: BTreeMap<PeerId, (u64, Timestamp)>,
}

impl Allowance {
    /// Up to `burst` at once, refilled at `per_sec`, tracked for at most `peers_max` peers.
    pub fn new(burst: u64, per_sec: u64, peers_max: u32) -> Allowance {
        Allowance { burst, per_sec, peers_max: peers_max as usize, peers: BTreeMap::new() }
    }

    /// What `peer` may still use at `now`.
    pub fn left(&self, peer: &PeerId, now: Timestamp) -> u64 {
        match self.peers.get(peer) {
            None => self.burst,
            Some(&(left, at)) => {
                let elapsed_ms = now.as_millis().saturating_sub(at.as_millis());
                let refill = elapsed_ms.saturating_mul(self.per_sec) / 1_000;
                left.saturating_add(refill).min(self.burst)
            }
        }
    }

    /// `peer` used `amount` at `now` (down to nothing, never below).
    pub fn charge(&mut self, peer: &PeerId, now: Timestamp, amount: u64) {
        let left = self.left(peer, now).saturating_sub(amount);
        if !self.peers.contains_key(peer) && self.peers.len() >= self.peers_max {
            let fullest = self
                .peers
                .keys()
                .max_by_key(|tracked| (self.left(tracked, now), std::cmp::Reverse((*tracked).clone())))
                .cloned();
            if let Some(fullest) = fullest {
                self.peers.remove(&fullest);
            }
        }
        self.peers.insert(peer.clone(), (left, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_allowance_is_used_up_and_refills_with_time() {
        let (a, b) = (PeerId::new("a"), PeerId::new("b"));
        let mut allowance = Allowance::new(1_000, 100, 2);
        let at = Timestamp::from_millis;
        assert_eq!(allowance.left(&a, at(0)), 1_000);
        allowance.charge(&a, at(0), 900);
        allowance.charge(&a, at(0), 900);
        assert_eq!(allowance.left(&a, at(0)), 0, "never below nothing");
        assert_eq!(allowance.left(&a, at(2_500)), 250);
        assert_eq!(allowance.left(&a, at(60_000)), 1_000, "refills up to the burst");
        assert_eq!(allowance.left(&b, at(0)), 1_000, "peers are apart");
        // Full map: the peer with the most left is forgotten, the spent one is kept.
        allowance.charge(&b, at(0), 10);
        allowance.charge(&PeerId::new("c"), at(0), 10);
        assert_eq!(allowance.left(&a, at(0)), 0);
    }
}

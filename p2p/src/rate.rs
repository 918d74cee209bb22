//! Per-peer token buckets for the sync requests peers send us: a peer may spend its burst at
//! once and then one request per interval ([`RequestRate`]). The service asks before a request
//! reaches the node, so a flooding peer costs the node nothing beyond its rate.

use std::collections::HashMap;
use std::time::Instant;

use chorus_chain::limits;
use libp2p::PeerId;

use crate::config::RequestRate;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u32,
    /// When `tokens` was last brought up to date.
    at: Instant,
}

/// The buckets, at most `limits::SYNC_RATE_PEERS_MAX`.
#[derive(Debug)]
pub(crate) struct RequestBuckets {
    rate: RequestRate,
    buckets: HashMap<PeerId, Bucket>,
}

impl RequestBuckets {
    pub fn new(rate: RequestRate) -> RequestBuckets {
        RequestBuckets { rate, buckets: HashMap::new() }
    }

    /// Spends one of `peer`'s tokens; false when it has none left.
    pub fn take(&mut self, peer: PeerId, now: Instant) -> bool {
        if !self.buckets.contains_key(&peer) && self.buckets.len() >= limits::SYNC_RATE_PEERS_MAX as usize {
            self.forget_fullest(now);
        }
        let full = Bucket { tokens: self.rate.burst, at: now };
        let bucket = *self.buckets.get(&peer).unwrap_or(&full);
        let mut bucket = self.refilled(bucket, now);
        let taken = bucket.tokens > 0;
        bucket.tokens = bucket.tokens.saturating_sub(1);
        self.buckets.insert(peer, bucket);
        taken
    }

    fn refilled(&self, bucket: Bucket, now: Instant) -> Bucket {
        let interval = self.rate.interval.as_nanos().max(1);
        let gained = now.saturating_duration_since(bucket.at).as_nanos() / interval;
        let room = self.rate.burst.saturating_sub(bucket.tokens);
        match u32::try_from(gained) {
            Ok(gained) if gained < room => {
                Bucket { tokens: bucket.tokens + gained, at: bucket.at + self.rate.interval * gained }
            }
            _ => Bucket { tokens: self.rate.burst, at: now },
        }
    }

    /// Forgets the bucket with the most tokens: a full one is the same as none.
    fn forget_fullest(&mut self, now: Instant) {
        let fullest = self.buckets.iter().max_by_key(|(_, bucket)| self.refilled(**bucket, now).tokens);
        if let Some(peer) = fullest.map(|(peer, _)| *peer) {
            self.buckets.remove(&peer);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_then_one_request_per_interval() {
        let rate = RequestRate { interval: Duration::from_millis(100), burst: 3 };
        let mut buckets = RequestBuckets::new(rate);
        let (peer, other, now) = (PeerId::random(), PeerId::random(), Instant::now());
        assert!((0..3).all(|_| buckets.take(peer, now)), "the burst");
        assert!(!buckets.take(peer, now));
        assert!(buckets.take(other, now), "buckets are per peer");
        assert!(!buckets.take(peer, now + Duration::from_millis(99)));
        assert!(buckets.take(peer, now + Duration::from_millis(100)), "one more per interval");
        assert!(!buckets.take(peer, now + Duration::from_millis(150)));
        // Partial intervals are kept: the next token comes at 200 ms, not 250.
        assert!(buckets.take(peer, now + Duration::from_millis(200)));
        // A long pause refills to the burst, no further.
        let later = now + Duration::from_secs(3_600);
        assert!((0..3).all(|_| buckets.take(peer, later)));
        assert!(!buckets.take(peer, later));
    }

    #[test]
    fn buckets_stay_bounded_and_the_flooders_are_kept() {
        let rate = RequestRate { interval: Duration::from_secs(3_600), burst: 2 };
        let mut buckets = RequestBuckets::new(rate);
        let (flooder, now) = (PeerId::random(), Instant::now());
        assert!(buckets.take(flooder, now) && buckets.take(flooder, now));
        for _ in 0..limits::SYNC_RATE_PEERS_MAX + 10 {
            buckets.take(PeerId::random(), now);
        }
        assert_eq!(buckets.buckets.len(), limits::SYNC_RATE_PEERS_MAX as usize);
        assert!(!buckets.take(flooder, now), "an empty bucket is not the one forgotten");
    }
}

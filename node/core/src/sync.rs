//! Range sync: how a node that is behind downloads the chain from several peers at once.
//!
//! Peers report their heads (`Status`). While the best reported head is more than one range
//! ahead of ours, the chain above our head is cut into ranges of
//! `limits::SYNC_BLOCKS_PER_RESPONSE_MAX` heights, each asked of a different peer that has it.
//! Answers may arrive in any order; they wait in a reorder buffer and are handed to the driver in
//! height order, which verifies and imports them like any block. A short answer leaves the rest
//! of its range to ask again; an empty or failed one gives the range to another peer. At most
//! `limits::SYNC_RANGES_AHEAD_MAX` ranges are in flight or waiting, so the buffer holds at most
//! that many responses. Nothing here survives a restart, and nothing needs to: the plan is
//! derived from the store's head and the peers' heads.
//!
//! Pure bookkeeping (heights, peers, milliseconds passed in); the daemon sends and feeds.

use std::collections::{BTreeMap, BTreeSet};

use chorus_chain::block::Block;
use chorus_chain::limits;
use chorus_chain::primitives::{Height, Timestamp};
use chorus_consensus::PeerId;

use crate::allowance::Allowance;

/// Download progress, for logs and `node_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub head: Height,
    pub target: Height,
    /// Blocks imported per second since syncing started, in thousandths.
    pub blocks_per_sec_milli: u64,
    /// Seconds left at that rate; `None` before the first import.
    pub eta_secs: Option<u64>,
}

#[derive(Debug)]
pub struct RangeSync {
    /// Each peer's best reported head height.
    peers: BTreeMap<PeerId, Height>,
    /// Ranges requested and not answered: start height -> (peer, count).
    in_flight: BTreeMap<u64, (PeerId, u32)>,
    /// Ranges to ask for next, by start height, with their counts.
    wanted: BTreeMap<u64, u32>,
    /// Answers waiting for the head to reach them, by start height, with who sent them.
    ready: BTreeMap<u64, (PeerId, Vec<Block>)>,
    /// Everything below this height is planned (wanted, in flight, ready or imported).
    planned_to: u64,
    /// (time in ms, head height) when this round of syncing began.
    started: Option<(u64, u64)>,
    /// Range requests each peer may still be sent: peers serve a bounded rate
    /// (`limits::SYNC_REQUESTS_PER_PEER_PER_SEC`), and this node stays under it.
    pace: Allowance,
}

impl Default for RangeSync {
    fn default() -> RangeSync {
        RangeSync {
            peers: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            wanted: BTreeMap::new(),
            ready: BTreeMap::new(),
            planned_to: 0,
            started: None,
            pace: Allowance::new(
                u64::from(limits::SYNC_RANGE_REQUEST_BURST_MAX),
                u64::from(limits::SYNC_RANGE_REQUESTS_PER_PEER_PER_SEC),
                limits::SYNC_RATE_PEERS_MAX,
            ),
        }
    }
}

impl RangeSync {
    /// A peer's head, from its status or a block it sent.
    pub fn on_peer_head(&mut self, peer: PeerId, height: Height) {
        let known = self.peers.entry(peer).or_insert(Height::GENESIS);
        *known = (*known).max(height);
    }

    pub fn on_peer_gone(&mut self, peer: &PeerId) {
        self.peers.remove(peer);
        let lost: Vec<u64> =
            self.in_flight.iter().filter(|(_, (owner, _))| owner == peer).map(|(from, _)| *from).collect();
        for from in lost {
            if let Some((_, count)) = self.in_flight.remove(&from) {
                self.wanted.insert(from, count);
            }
        }
    }

    /// The best height a peer reported.
    pub fn target(&self) -> Option<Height> {
        self.peers.values().max().copied()
    }

    /// Whether the node is more than one range behind its best peer.
    pub fn is_syncing(&self, head: Height) -> bool {
        self.target().is_some_and(|target| beyond_a_range(head, target))
            || !self.in_flight.is_empty()
            || !self.ready.is_empty()
    }

    /// Whether range sync fetches from `peer`: its claim is more than one range above `head`.
    /// Nearer peers are left to the driver's locator requests.
    pub fn fetches_from(&self, peer: &PeerId, head: Height) -> bool {
        self.peers.get(peer).is_some_and(|claim| beyond_a_range(head, *claim))
    }

    /// The requests to send now: `(peer, from, count)`, each range to a peer that has it,
    /// spreading ranges over peers.
    pub fn next_requests(&mut self, head: Height, now_ms: u64) -> Vec<(PeerId, Height, u32)> {
        if !self.is_syncing(head) {
            self.reset();
            return Vec::new();
        }
        self.started.get_or_insert((now_ms, head.get()));
        let target = self.target().map_or(0, Height::get);
        // Drop plans below the head: imported meanwhile (by gossip, or another path).
        let floor = head.get().saturating_add(1);
        self.wanted.retain(|from, count| from.saturating_add(u64::from(*count)) > floor);
        self.ready.retain(|from, (_, blocks)| from.saturating_add(blocks.len() as u64) > floor);
        self.planned_to = self.planned_to.max(floor);
        let per_range = u64::from(limits::SYNC_BLOCKS_PER_RESPONSE_MAX);
        let mut requests = Vec::new();
        loop {
            let outstanding = self.in_flight.len().saturating_add(self.ready.len());
            if outstanding >= limits::SYNC_RANGES_AHEAD_MAX as usize {
                break;
            }
            if self.wanted.is_empty() && self.planned_to <= target {
                // At most `per_range`, so it fits a u32.
                let count = per_range.min(target.saturating_sub(self.planned_to).saturating_add(1));
                self.wanted.insert(self.planned_to, u32::try_from(count).unwrap_or(u32::MAX));
                self.planned_to = self.planned_to.saturating_add(count);
            }
            let Some((&from, &count)) = self.wanted.iter().next() else { break };
            // The least busy peer whose head covers the range's end.
            let end = Height::new(from.saturating_add(u64::from(count)).saturating_sub(1));
            let busy = |peer: &PeerId| self.in_flight.values().filter(|(owner, _)| owner == peer).count();
            let now = Timestamp::from_millis(now_ms);
            let Some(peer) = self
                .peers
                .iter()
                .filter(|(peer, height)| **height >= end && self.pace.left(peer, now) > 0)
                .map(|(peer, _)| peer)
                .min_by_key(|peer| busy(peer))
            else {
                break;
            };
            if busy(peer) >= limits::SYNC_RANGES_PER_PEER_MAX as usize {
                break;
            }
            let peer = peer.clone();
            self.pace.charge(&peer, now, 1);
            self.wanted.remove(&from);
            self.in_flight.insert(from, (peer.clone(), count));
            requests.push((peer, Height::new(from), count));
        }
        requests
    }

    /// Takes the range starting at `from` out of flight if `peer` holds it. An answer from
    /// anyone else is stale: the range went to another peer since (its first owner left, or
    /// sync started over), and only the current owner's answer counts.
    fn land(&mut self, peer: &PeerId, from: u64) -> Option<u32> {
        let (owner, count) = self.in_flight.get(&from)?;
        if owner != peer {
            return None;
        }
        let count = *count;
        self.in_flight.remove(&from);
        Some(count)
    }

    /// A range's answer. A short answer leaves the rest wanted; an empty one means the peer
    /// does not have the range after all.
    pub fn on_blocks(&mut self, peer: PeerId, from: Height, blocks: Vec<Block>) {
        let from = from.get();
        let Some(count) = self.land(&peer, from) else { return };
        let got = u32::try_from(blocks.len()).unwrap_or(u32::MAX);
        if got == 0 {
            self.cut_claim(&peer, from);
            self.wanted.insert(from, count);
            return;
        }
        if got < count {
            self.wanted.insert(from.saturating_add(u64::from(got)), count.saturating_sub(got));
        }
        self.ready.insert(from, (peer, blocks));
    }

    /// A range's request failed or timed out: someone else gets it, and the peer's claim falls
    /// to below the range (its next status may raise it again), so a peer that claims a height
    /// it cannot serve does not keep the node syncing towards it.
    pub fn on_failure(&mut self, peer: &PeerId, from: Height) {
        if let Some(count) = self.land(peer, from.get()) {
            self.wanted.insert(from.get(), count);
            self.cut_claim(peer, from.get());
        }
    }

    /// `peer` could not serve the range starting at `from`: it is known to have at most the
    /// heights below it.
    fn cut_claim(&mut self, peer: &PeerId, from: u64) {
        if let Some(claim) = self.peers.get_mut(peer) {
            *claim = (*claim).min(Height::new(from.saturating_sub(1)));
        }
    }

    /// The downloaded blocks that continue the chain from `head`, in height order, each with
    /// the peer that sent it (blamed if it is invalid).
    pub fn take_ready(&mut self, head: Height) -> Vec<(PeerId, Block)> {
        let mut next = head.get().saturating_add(1);
        let mut blocks = Vec::new();
        while let Some((peer, range)) = self.ready.remove(&next) {
            next = next.saturating_add(range.len() as u64);
            blocks.extend(range.into_iter().map(|block| (peer.clone(), block)));
        }
        blocks
    }

    pub fn progress(&self, head: Height, now_ms: u64) -> Option<Progress> {
        let target = self.target()?;
        let (started_ms, started_head) = self.started?;
        let imported = head.get().saturating_sub(started_head);
        let elapsed_ms = now_ms.saturating_sub(started_ms).max(1);
        let blocks_per_sec_milli = imported.saturating_mul(1_000_000).checked_div(elapsed_ms).unwrap_or(0);
        let left = target.get().saturating_sub(head.get());
        let eta_secs = left.saturating_mul(1_000).checked_div(blocks_per_sec_milli);
        Some(Progress { head, target, blocks_per_sec_milli, eta_secs })
    }

    fn reset(&mut self) {
        self.in_flight.clear();
        self.wanted.clear();
        self.ready.clear();
        self.planned_to = 0;
        self.started = None;
    }

    /// Peers with a range in flight (for tests and logs).
    pub fn busy_peers(&self) -> BTreeSet<PeerId> {
        self.in_flight.values().map(|(peer, _)| peer.clone()).collect()
    }
}

fn beyond_a_range(head: Height, height: Height) -> bool {
    height.get() > head.get().saturating_add(u64::from(limits::SYNC_BLOCKS_PER_RESPONSE_MAX))
}

#[cfg(test)]
mod tests {
    use chorus_chain::primitives::Hash;
    use chorus_chain::testing;

    use super::*;

    fn blocks(from: u64, count: u64) -> Vec<Block> {
        let genesis = chorus_chain::state::genesis_block(&testing::genesis(1, 1), Hash::ZERO);
        (from..from + count)
            .map(|height| {
                let mut block = genesis.clone();
                block.header.height = Height::new(height);
                block
            })
            .collect()
    }

    #[test]
    fn ranges_spread_over_peers_and_come_out_in_order() {
        let (a, b) = (PeerId::new("a"), PeerId::new("b"));
        let mut sync = RangeSync::default();
        sync.on_peer_head(a.clone(), Height::new(1_000));
        sync.on_peer_head(b.clone(), Height::new(1_000));
        let head = Height::new(10);
        assert!(sync.is_syncing(head));
        let requests = sync.next_requests(head, 0);
        assert_eq!(requests.len(), 2 * limits::SYNC_RANGES_PER_PEER_MAX as usize, "each peer gets its share");
        assert_eq!(requests[0].1, Height::new(11));
        assert_eq!(requests[1].1, Height::new(11 + 64));
        assert_eq!(sync.busy_peers(), BTreeSet::from([a.clone(), b.clone()]), "both peers get work");
        assert!(sync.next_requests(head, 0).is_empty(), "both peers are busy");
        // A third peer that reports its head later gets the next ranges at once.
        let c = PeerId::new("c");
        sync.on_peer_head(c.clone(), Height::new(1_000));
        let later = sync.next_requests(head, 0);
        assert_eq!(later.len(), limits::SYNC_RANGES_PER_PEER_MAX as usize);
        assert!(later.iter().all(|(peer, _, _)| *peer == c));

        // The second range arrives first: nothing to import until the first does.
        let (first, second) = (requests[0].clone(), requests[1].clone());
        sync.on_blocks(second.0, second.1, blocks(75, 64));
        assert!(sync.take_ready(head).is_empty());
        // The first comes short (byte limit): 40 of 64, the rest is asked again.
        sync.on_blocks(first.0, first.1, blocks(11, 40));
        let ready = sync.take_ready(head);
        assert_eq!(ready.len(), 40);
        let head = Height::new(50);
        let again = sync.next_requests(head, 1_000);
        assert_eq!(again[0].1, Height::new(51));
        assert_eq!(again[0].2, 24);
        sync.on_blocks(again[0].0.clone(), again[0].1, blocks(51, 24));
        let ready = sync.take_ready(head);
        assert_eq!(ready.first().map(|(_, block)| block.header.height), Some(Height::new(51)));
        assert_eq!(ready.last().map(|(_, block)| block.header.height), Some(Height::new(138)), "24 + the waiting 64");
        let progress = sync.progress(Height::new(138), 2_000).expect("progress");
        assert_eq!(progress.blocks_per_sec_milli, 64_000, "128 blocks in 2 s");
        assert_eq!(progress.eta_secs, Some((1_000 - 138) / 64));
    }

    #[test]
    fn failures_and_departures_hand_ranges_to_other_peers() {
        let (a, b) = (PeerId::new("a"), PeerId::new("b"));
        let mut sync = RangeSync::default();
        sync.on_peer_head(a.clone(), Height::new(500));
        let head = Height::new(0);
        let requests = sync.next_requests(head, 0);
        assert!(requests.iter().all(|(peer, _, _)| *peer == a));
        sync.on_peer_head(b.clone(), Height::new(500));
        sync.on_failure(&a, requests[0].1);
        sync.on_peer_gone(&a);
        let retried = sync.next_requests(head, 0);
        assert!(!retried.is_empty());
        assert!(retried.iter().all(|(peer, _, _)| *peer == b));
        assert_eq!(retried[0].1, Height::new(1));

        // An empty answer: the peer lacks the range; it is not asked for it again.
        sync.on_blocks(b.clone(), Height::new(1), Vec::new());
        assert!(!sync.next_requests(head, 0).iter().any(|(peer, from, _)| *peer == b && *from == Height::new(1)));
    }

    #[test]
    fn a_departed_peers_late_answers_leave_its_ranges_new_owner_alone() {
        let (a, b) = (PeerId::new("a"), PeerId::new("b"));
        let mut sync = RangeSync::default();
        sync.on_peer_head(a.clone(), Height::new(500));
        let head = Height::new(0);
        let first = sync.next_requests(head, 0);
        assert!(first.iter().all(|(peer, _, _)| *peer == a));
        // `a` leaves; its ranges go to `b`; then `a`'s requests fail or answer after all.
        sync.on_peer_gone(&a);
        sync.on_peer_head(b.clone(), Height::new(500));
        let moved = sync.next_requests(head, 0);
        assert!(moved.iter().all(|(peer, _, _)| *peer == b));
        assert_eq!(moved[0].1, first[0].1);
        sync.on_failure(&a, first[0].1);
        sync.on_blocks(a.clone(), first[1].1, blocks(first[1].1.get(), 64));
        assert_eq!(sync.busy_peers(), BTreeSet::from([b.clone()]), "b still holds every moved range");
        assert!(sync.next_requests(head, 0).is_empty(), "nothing was handed out again");
        // `b`'s own answer still lands.
        sync.on_blocks(b.clone(), moved[0].1, blocks(moved[0].1.get(), 64));
        assert_eq!(sync.take_ready(head).len(), 64);
    }

    #[test]
    fn a_peer_claiming_the_last_height_it_cannot_serve_stops_nothing() {
        let (liar, honest) = (PeerId::new("liar"), PeerId::new("honest"));
        let mut sync = RangeSync::default();
        sync.on_peer_head(liar.clone(), Height::new(u64::MAX));
        sync.on_peer_head(honest.clone(), Height::new(12));
        let head = Height::new(10);
        assert!(sync.fetches_from(&liar, head) && !sync.fetches_from(&honest, head));
        let requests = sync.next_requests(head, 0);
        assert_eq!(requests.len(), limits::SYNC_RANGES_PER_PEER_MAX as usize);
        assert!(requests.iter().all(|(peer, _, _)| *peer == liar), "only the liar claims those heights");
        let progress = sync.progress(head, 1_000).expect("syncing");
        assert_eq!((progress.target, progress.eta_secs), (Height::new(u64::MAX), None));
        // Its requests time out: its claim falls to what it may have, and syncing stops.
        for (peer, from, _) in &requests {
            sync.on_failure(peer, *from);
        }
        assert!(!sync.is_syncing(head), "the claim fell to the node's own head");
        assert!(sync.next_requests(head, 2_000).is_empty());
        // Claimed again with its next status: one round of requests again, never a panic.
        sync.on_peer_head(liar.clone(), Height::new(u64::MAX));
        let again = sync.next_requests(head, 4_000);
        assert!(!again.is_empty());
        sync.on_blocks(liar.clone(), again[0].1, Vec::new());
        sync.on_failure(&liar, again[1].1);
        assert!(!sync.is_syncing(head));
    }

    #[test]
    fn a_fast_syncer_stays_under_the_rate_its_peer_serves() {
        let peer = PeerId::new("a");
        let mut sync = RangeSync::default();
        sync.on_peer_head(peer.clone(), Height::new(u64::MAX / 2));
        let mut head = Height::new(0);
        let mut sent: u64 = 0;
        // Every answer arrives and imports at once; the node asks again every millisecond.
        let seconds = 10;
        for now_ms in 0..seconds * 1_000 {
            for (_, from, count) in sync.next_requests(head, now_ms) {
                sent += 1;
                sync.on_blocks(peer.clone(), from, blocks(from.get(), u64::from(count)));
                let ready = sync.take_ready(head);
                head = ready.last().map_or(head, |(_, block)| block.header.height);
            }
        }
        let allowed = u64::from(limits::SYNC_RANGE_REQUEST_BURST_MAX)
            + u64::from(limits::SYNC_RANGE_REQUESTS_PER_PEER_PER_SEC) * seconds;
        assert!(sent <= allowed, "{sent} range requests in {seconds} s, allowed {allowed}");
        let served =
            u64::from(limits::SYNC_REQUEST_BURST_MAX) + u64::from(limits::SYNC_REQUESTS_PER_PEER_PER_SEC) * seconds;
        assert!(sent < served, "under what the peer serves");
        assert!(sent >= allowed - 1, "and close to the pace: {sent}");
    }

    #[test]
    fn a_node_within_one_range_of_its_peers_does_not_range_sync() {
        let mut sync = RangeSync::default();
        sync.on_peer_head(PeerId::new("a"), Height::new(70));
        assert!(!sync.is_syncing(Height::new(10)));
        assert!(sync.next_requests(Height::new(10), 0).is_empty());
        assert!(sync.is_syncing(Height::new(5)));
    }
}

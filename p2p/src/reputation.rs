//! Peer reputation and bans: what the node reports about a peer, what it costs, and when the
//! peer is shut out.
//!
//! A peer starts at 0. Each report subtracts its [`Misbehaviour::penalty`]; the score recovers
//! toward 0 by one point per [`ReputationConfig::recovery_interval`]. A peer whose score falls to
//! [`ReputationConfig::ban_threshold`] or below is banned for [`ReputationConfig::ban_duration`]
//! and starts from 0 when the ban ends. Pure bookkeeping: time comes in as an argument, the
//! service applies the answers (closing connections, refusing dials).

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use chorus_chain::limits;
use libp2p::PeerId;

use crate::Misbehaviour;

/// Why a peer is banned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BanReason {
    /// Its score fell to the threshold; the last report is given.
    Score(Misbehaviour),
    /// The operator (or the node) banned it explicitly.
    Manual,
}

impl fmt::Display for BanReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BanReason::Score(last) => write!(f, "reputation below threshold (last: {last})"),
            BanReason::Manual => f.write_str("banned by the node"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ReputationConfig {
    /// A score at or below this bans the peer. Negative.
    pub ban_threshold: i32,
    pub ban_duration: Duration,
    /// One point of recovery per interval.
    pub recovery_interval: Duration,
}

impl Default for ReputationConfig {
    fn default() -> Self {
        ReputationConfig {
            ban_threshold: -100,
            ban_duration: Duration::from_secs(60 * 60),
            recovery_interval: Duration::from_secs(6),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Score {
    points: i32,
    /// When `points` was last brought up to date.
    at: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ban {
    pub until: Instant,
    pub reason: BanReason,
}

/// Scores and bans, each bounded by `limits`.
#[derive(Debug)]
pub struct Reputation {
    config: ReputationConfig,
    scores: BTreeMap<PeerId, Score>,
    bans: BTreeMap<PeerId, Ban>,
}

impl Reputation {
    pub fn new(config: ReputationConfig) -> Reputation {
        Reputation { config, scores: BTreeMap::new(), bans: BTreeMap::new() }
    }

    /// The peer's score now (0 for a peer never reported).
    pub fn score(&self, peer: &PeerId, now: Instant) -> i32 {
        self.scores.get(peer).map_or(0, |score| self.recovered(*score, now))
    }

    /// Applies a report. Returns the new ban when this report crosses the threshold.
    pub fn report(&mut self, peer: PeerId, misbehaviour: Misbehaviour, now: Instant) -> Option<Ban> {
        if self.bans.contains_key(&peer) {
            return None;
        }
        let points = self.score(&peer, now).saturating_sub(misbehaviour.penalty());
        if points <= self.config.ban_threshold {
            self.scores.remove(&peer);
            return Some(self.ban(peer, self.config.ban_duration, BanReason::Score(misbehaviour), now));
        }
        if !self.scores.contains_key(&peer) && self.scores.len() >= limits::REPUTATION_PEERS_MAX as usize {
            self.forget_best_score(now);
        }
        self.scores.insert(peer, Score { points, at: now });
        None
    }

    /// Bans `peer` for `duration` (replacing any ban it had).
    pub fn ban(&mut self, peer: PeerId, duration: Duration, reason: BanReason, now: Instant) -> Ban {
        if !self.bans.contains_key(&peer)
            && self.bans.len() >= limits::BANNED_PEERS_MAX as usize
            && let Some(first) = self.bans.iter().min_by_key(|(_, ban)| ban.until).map(|(peer, _)| *peer)
        {
            self.bans.remove(&first);
        }
        let ban = Ban { until: now + duration, reason };
        self.bans.insert(peer, ban);
        ban
    }

    /// Lifts a ban; the peer starts again from 0. Returns whether it was banned.
    pub fn unban(&mut self, peer: &PeerId) -> bool {
        self.scores.remove(peer);
        self.bans.remove(peer).is_some()
    }

    pub fn ban_of(&self, peer: &PeerId) -> Option<Ban> {
        self.bans.get(peer).copied()
    }

    pub fn is_banned(&self, peer: &PeerId) -> bool {
        self.bans.contains_key(peer)
    }

    pub fn bans(&self) -> impl Iterator<Item = (&PeerId, &Ban)> {
        self.bans.iter()
    }

    /// Removes the bans that have ended and the scores that have fully recovered; returns the
    /// peers whose bans ended.
    pub fn expire(&mut self, now: Instant) -> Vec<PeerId> {
        let ended: Vec<PeerId> = self.bans.iter().filter(|(_, ban)| ban.until <= now).map(|(peer, _)| *peer).collect();
        for peer in &ended {
            self.bans.remove(peer);
        }
        let config = &self.config;
        self.scores.retain(|_, score| recovered(config, *score, now) < 0);
        ended
    }

    fn recovered(&self, score: Score, now: Instant) -> i32 {
        recovered(&self.config, score, now)
    }

    fn forget_best_score(&mut self, now: Instant) {
        let best = self.scores.iter().max_by_key(|(_, score)| self.recovered(**score, now)).map(|(peer, _)| *peer);
        if let Some(peer) = best {
            self.scores.remove(&peer);
        }
    }
}

fn recovered(config: &ReputationConfig, score: Score, now: Instant) -> i32 {
    let elapsed = now.saturating_duration_since(score.at);
    let interval = config.recovery_interval.as_millis().max(1);
    let points = elapsed.as_millis() / interval;
    let points = i32::try_from(points).unwrap_or(i32::MAX);
    score.points.saturating_add(points).min(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerId {
        PeerId::random()
    }

    #[test]
    fn two_invalid_messages_ban_and_the_ban_expires() {
        let mut reputation = Reputation::new(ReputationConfig::default());
        let (bad, now) = (peer(), Instant::now());
        assert_eq!(reputation.report(bad, Misbehaviour::Invalid, now), None);
        assert_eq!(reputation.score(&bad, now), -50);
        let ban = reputation.report(bad, Misbehaviour::Invalid, now).expect("second strike bans");
        assert_eq!(ban.reason, BanReason::Score(Misbehaviour::Invalid));
        assert!(reputation.is_banned(&bad));
        // Reports while banned change nothing.
        assert_eq!(reputation.report(bad, Misbehaviour::Undecodable, now), None);
        assert!(reputation.expire(now + Duration::from_secs(59 * 60)).is_empty());
        assert_eq!(reputation.expire(now + Duration::from_secs(60 * 60)), vec![bad]);
        assert!(!reputation.is_banned(&bad));
        assert_eq!(reputation.score(&bad, now + Duration::from_secs(60 * 60)), 0);
    }

    #[test]
    fn score_recovers_one_point_per_interval_and_never_above_zero() {
        let mut reputation = Reputation::new(ReputationConfig::default());
        let (slow, now) = (peer(), Instant::now());
        reputation.report(slow, Misbehaviour::Unanswered, now);
        assert_eq!(reputation.score(&slow, now + Duration::from_secs(30)), -5);
        assert_eq!(reputation.score(&slow, now + Duration::from_secs(600)), 0);
        // Spaced-out timeouts never ban an honest but slow peer.
        let mut at = now;
        for _ in 0..100 {
            at += Duration::from_secs(60);
            assert_eq!(reputation.report(slow, Misbehaviour::Unanswered, at), None);
        }
        reputation.expire(at + Duration::from_secs(60));
        assert_eq!(reputation.score(&slow, at + Duration::from_secs(60)), 0);
    }

    #[test]
    fn manual_ban_and_unban() {
        let mut reputation = Reputation::new(ReputationConfig::default());
        let (target, now) = (peer(), Instant::now());
        reputation.report(target, Misbehaviour::Invalid, now);
        reputation.ban(target, Duration::from_secs(5), BanReason::Manual, now);
        assert_eq!(reputation.ban_of(&target).map(|ban| ban.reason), Some(BanReason::Manual));
        assert!(reputation.unban(&target));
        assert!(!reputation.unban(&target));
        assert_eq!(reputation.score(&target, now), 0, "an unbanned peer starts from 0");
    }

    #[test]
    fn tables_stay_bounded() {
        let mut reputation = Reputation::new(ReputationConfig::default());
        let now = Instant::now();
        for _ in 0..limits::REPUTATION_PEERS_MAX + 10 {
            reputation.report(peer(), Misbehaviour::Unanswered, now);
        }
        assert_eq!(reputation.scores.len(), limits::REPUTATION_PEERS_MAX as usize);
        let first = peer();
        reputation.ban(first, Duration::from_secs(1), BanReason::Manual, now);
        for _ in 0..limits::BANNED_PEERS_MAX {
            reputation.ban(peer(), Duration::from_secs(10), BanReason::Manual, now);
        }
        assert_eq!(reputation.bans.len(), limits::BANNED_PEERS_MAX as usize);
        assert!(!reputation.is_banned(&first), "the ban closest to its end goes first");
    }
}

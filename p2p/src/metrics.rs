//! The service's metrics, registered in the node's prometheus-client registry: ours under
//! `chorus_p2p_*`, libp2p's own (connections, gossipsub, identify, kad, ping) under `libp2p_*`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels2 = [(&'static str, &'static str); 2];
type Labels1 = [(&'static str, &'static str); 1];

pub(crate) struct Metrics {
    /// Gossip by topic and outcome: received, accepted, rejected, ignored, oversize, dropped.
    pub gossip: Family<Labels2, Counter>,
    /// Our publications by topic and outcome: sent, duplicate, no_peers, held (a transaction
    /// that found no peer, published again when one subscribes), released (a peer's message we
    /// deferred, forwarded now), expired (deferred too long to forward), failed.
    pub published: Family<Labels2, Counter>,
    /// Misbehaviour reports by kind.
    pub reports: Family<Labels1, Counter>,
    pub bans: Counter,
    /// Inbound connections the address gate refused, by reason: per_address, per_subnet,
    /// banned_address.
    pub connections_refused: Family<Labels1, Counter>,
    pub banned: Gauge,
    pub peers: Gauge,
    /// Inbound sync requests by kind and outcome: delivered, refused, busy, rate_limited, failed.
    pub requests_inbound: Family<Labels2, Counter>,
    /// Outbound sync requests by kind and outcome: ok, bad_response, timeout, failed.
    pub requests_outbound: Family<Labels2, Counter>,
    pub request_seconds: Histogram,
    /// Direct messages by direction and outcome: inbound delivered, dropped, oversize,
    /// rate_limited; outbound written (to the peer's stream), lost (with a stream or connection
    /// that failed), queue_full, not_connected, and, refused before the service saw them, busy
    /// (its command queue full) and too_large.
    pub direct: Family<Labels2, Counter>,
    /// Events the node's queue had no room for.
    pub events_dropped: Counter,
    pub libp2p: libp2p::metrics::Metrics,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Metrics {
        let metrics = Metrics {
            gossip: Family::default(),
            published: Family::default(),
            reports: Family::default(),
            bans: Counter::default(),
            connections_refused: Family::default(),
            banned: Gauge::default(),
            peers: Gauge::default(),
            requests_inbound: Family::default(),
            requests_outbound: Family::default(),
            request_seconds: Histogram::new(exponential_buckets(0.000_5, 2.0, 16)),
            direct: Family::default(),
            events_dropped: Counter::default(),
            // It names its own families `libp2p_*`.
            libp2p: libp2p::metrics::Metrics::new(registry),
        };
        let ours = registry.sub_registry_with_prefix("chorus_p2p");
        ours.register("gossip_messages", "Gossip messages received, by topic and outcome", metrics.gossip.clone());
        ours.register(
            "published_messages",
            "Gossip messages this node published, by topic and outcome",
            metrics.published.clone(),
        );
        ours.register("reports", "Misbehaviour reports against peers, by kind", metrics.reports.clone());
        ours.register("bans", "Peers banned since start", metrics.bans.clone());
        ours.register(
            "connections_refused",
            "Inbound connections refused by address (per-address and per-subnet limits, bans)",
            metrics.connections_refused.clone(),
        );
        ours.register("banned_peers", "Peers banned now", metrics.banned.clone());
        ours.register("peers", "Connected peers", metrics.peers.clone());
        ours.register(
            "sync_requests_inbound",
            "Sync requests from peers, by kind and outcome",
            metrics.requests_inbound.clone(),
        );
        ours.register(
            "sync_requests_outbound",
            "Sync requests to peers, by kind and outcome",
            metrics.requests_outbound.clone(),
        );
        ours.register("sync_request_seconds", "Round trip of answered sync requests", metrics.request_seconds.clone());
        ours.register("direct_messages", "Direct engine messages, by direction and outcome", metrics.direct.clone());
        ours.register(
            "events_dropped",
            "Events dropped because the node's queue was full",
            metrics.events_dropped.clone(),
        );
        metrics
    }
}

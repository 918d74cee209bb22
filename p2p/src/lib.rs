//! Chorus p2p: the libp2p network service. The only crate that uses libp2p; it moves bytes
//! between nodes and knows nothing of consensus.
//!
//! [`start`] builds a swarm (TCP + noise + yamux, identify, ping, Kademlia in server mode,
//! gossipsub, the sync protocol, direct engine messages, connection limits, inbound limits per
//! address and subnet, a memory guard, bans of peers and their addresses and an optional
//! allowlist), spawns it on the current tokio runtime and returns a [`NetworkHandle`] and a bounded stream of [`Event`]s.
//! The node then:
//!
//! - answers every [`Event::Gossip`] with [`NetworkHandle::validate`]: only accepted messages
//!   are forwarded to other peers, rejected ones cost the sender reputation;
//! - answers every [`Event::Request`] with [`NetworkHandle::respond`] (a peer's requests beyond
//!   its rate are refused here, before the node sees them, and cost it reputation);
//! - takes every [`Event::Direct`] (a message one peer sent this node alone, for engines that
//!   address members, such as Raft) and sends its own with [`NetworkHandle::send_direct`];
//! - publishes with [`NetworkHandle::publish`], asks peers with [`NetworkHandle::request`],
//!   reports misbehaviour it finds with [`NetworkHandle::report`], and manages bans
//!   ([`NetworkHandle::ban`]) and, in permissioned mode, the allowlist
//!   ([`NetworkHandle::set_allowlist`], [`NetworkHandle::allow`]).
//!
//! Topics are `/chorus/<chain id>/{blocks,txs,consensus}/1`; message ids are the SHA-256 of the
//! payload, so the same block or transaction from two peers is one message. Payloads over
//! their topic's limit are rejected here, before the node sees them. Sync messages are the
//! chain codec's encodings behind a length prefix checked before reading ([`sync`]).
//!
//! Peers of other chains are told apart by identify: a Chorus node announces `/chorus/<chain
//! id>/1` and drops a peer that announces another chain's. A peer of another libp2p
//! implementation cannot set that field (js-libp2p sends `ipfs/0.1.0`), so it is kept while it
//! takes part: it must subscribe to one of the chain's topics within
//! `limits::P2P_FOREIGN_PEER_SUBSCRIBE_SECS_MAX`, or it is disconnected (no offence).
//!
//! Against eclipsing, inbound peers cannot take the outbound slots: bootnodes (with backoff)
//! and discovered peers are dialed while the node's own dials are below their target, however
//! many peers dialed in.
//!
//! Every queue is bounded (`chorus_chain::limits`, p2p section): commands wait for room, except
//! a direct message, which never waits (refused `Busy` when the queue is full); events that find the node's queue full, in count or in gossip bytes, are dropped (gossip is
//! ignored, requests are answered `Busy`) and counted.

#![forbid(unsafe_code)]

mod config;
pub mod direct;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
mod gate;
mod metrics;
mod rate;
pub mod reputation;
mod service;
pub mod sync;

use std::time::Duration;

pub use chorus_chain::wire::{Misbehaviour, Refusal, SyncRequest, SyncResponse, Topic, Verdict};
pub use config::{Config, ConnectionConfig, GossipLimits, NodeKey, RequestRate, parse_peer_id, peer_id_of};
pub use gate::{AddressRefusal, Subnet};
pub use libp2p::gossipsub::MessageId;
pub use libp2p::{Multiaddr, PeerId};
pub use reputation::{BanReason, ReputationConfig};
pub use service::{Events, start};
use tokio::sync::{mpsc, oneshot};

/// Identifies an inbound sync request until it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId(libp2p::request_response::InboundRequestId);

/// What the service tells the node. Delivered in order through a bounded channel.
#[derive(Debug)]
pub enum Event {
    /// A gossip message to validate; answer with [`NetworkHandle::validate`].
    Gossip {
        topic: Topic,
        id: MessageId,
        from: PeerId,
        data: Vec<u8>,
    },
    /// A sync request (already checked against the limits); answer with
    /// [`NetworkHandle::respond`].
    Request {
        peer: PeerId,
        id: RequestId,
        request: SyncRequest,
    },
    /// A direct message from `from` (the connection's authenticated peer id), within
    /// `limits::DIRECT_MESSAGE_BYTES_MAX` and the peer's rate; already acknowledged.
    Direct {
        from: PeerId,
        data: Vec<u8>,
    },
    PeerConnected {
        peer: PeerId,
        inbound: bool,
    },
    PeerDisconnected {
        peer: PeerId,
    },
    PeerBanned {
        peer: PeerId,
        duration: Duration,
        reason: BanReason,
    },
}

impl Event {
    /// The bytes the event holds that count against the queue's byte bound: gossip payloads
    /// and direct messages (a sync request is small and bounded by `SYNC_REQUEST_BYTES_MAX`;
    /// the rest carry none).
    pub fn queued_bytes(&self) -> u64 {
        match self {
            Event::Gossip { data, .. } | Event::Direct { data, .. } => data.len() as u64,
            _ => 0,
        }
    }
}

/// A connected peer, as `node_peers` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub peer: PeerId,
    pub addresses: Vec<Multiaddr>,
    /// Whether the first connection was opened by the peer.
    pub inbound: bool,
    pub score: i32,
    /// From identify, once received.
    pub agent: Option<String>,
    pub connected_for: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BannedPeer {
    pub peer: PeerId,
    pub remaining: Duration,
    pub reason: BanReason,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peers {
    pub connected: Vec<PeerInfo>,
    pub banned: Vec<BannedPeer>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("could not build the transport: {0}")]
    Transport(String),
    #[error("cannot listen on {address}: {reason}")]
    Listen { address: Multiaddr, reason: String },
    #[error("cannot dial {address}: {reason}")]
    Dial { address: Multiaddr, reason: String },
    #[error("invalid peer id {text:?}: {reason}")]
    PeerId { text: String, reason: String },
    #[error("the node is not in permissioned mode: there is no allowlist to change")]
    NotPermissioned,
    #[error("the network service has stopped")]
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("{topic} message is {size_bytes} bytes, limit {limit_bytes}")]
    TooLarge { topic: Topic, size_bytes: usize, limit_bytes: u32 },
    #[error("this message was already published or received")]
    Duplicate,
    #[error("no connected peer subscribes to {0}")]
    NoPeers(Topic),
    #[error("every peer's send queue is full")]
    QueuesFull,
    #[error("the network service has stopped")]
    Stopped,
}

/// Why a direct message was not sent. Delivery itself is not confirmed to the caller: an
/// engine that talks directly resends on its own timers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectError {
    #[error("direct message is {size_bytes} bytes, limit {limit_bytes}")]
    TooLarge { size_bytes: usize, limit_bytes: u32 },
    #[error("peer {0} is not connected")]
    NotConnected(PeerId),
    #[error("{queued} direct messages to {peer} are waiting to be written, limit {max}")]
    QueueFull { peer: PeerId, queued: u32, max: u32 },
    #[error("the network service's command queue is full ({} commands)", chorus_chain::limits::P2P_COMMAND_QUEUE_MAX)]
    Busy,
    #[error("the network service has stopped")]
    Stopped,
}

/// What the service did with a direct message: [`NetworkHandle::send_direct`].
#[derive(Debug)]
pub struct DirectReceipt(oneshot::Receiver<Result<(), DirectError>>);

impl DirectReceipt {
    pub async fn outcome(self) -> Result<(), DirectError> {
        self.0.await.map_err(|_| DirectError::Stopped)?
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("request refused locally: {0}")]
    Invalid(Refusal),
    #[error("the peer refused the request: {0}")]
    Refused(Refusal),
    #[error("peer {0} is not connected")]
    NotConnected(PeerId),
    #[error("{in_flight} requests to this peer are in flight, limit {max}")]
    TooManyInFlight { in_flight: u32, max: u32 },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the peer's answer does not match the request")]
    BadResponse,
    #[error("the peer's answer could not be decoded: {0}")]
    Undecodable(String),
    #[error("the peer does not speak this chain's sync protocol")]
    Unsupported,
    #[error("the connection closed before the answer")]
    ConnectionClosed,
    #[error("the network service has stopped")]
    Stopped,
}

pub(crate) enum Command {
    Publish { topic: Topic, data: Vec<u8>, reply: oneshot::Sender<Result<(), PublishError>> },
    Validate { id: MessageId, from: PeerId, verdict: Verdict },
    Request { peer: PeerId, request: SyncRequest, reply: oneshot::Sender<Result<SyncResponse, RequestError>> },
    Respond { id: RequestId, response: SyncResponse },
    SendDirect { peer: PeerId, data: Vec<u8>, reply: oneshot::Sender<Result<(), DirectError>> },
    Report { peer: PeerId, misbehaviour: Misbehaviour },
    Ban { peer: PeerId, duration: Duration },
    Unban { peer: PeerId },
    Allow { peer: PeerId, allow: bool, reply: oneshot::Sender<Result<(), Error>> },
    SetAllowlist { peers: Vec<PeerId>, reply: oneshot::Sender<Result<(), Error>> },
    Dial { address: Multiaddr, reply: oneshot::Sender<Result<(), Error>> },
    Peers { reply: oneshot::Sender<Peers> },
    Shutdown { reply: oneshot::Sender<()> },
}

/// The node's side of the service. Cheap to clone; the service stops on
/// [`NetworkHandle::shutdown`] or when every handle is dropped.
#[derive(Debug, Clone)]
pub struct NetworkHandle {
    commands: mpsc::Sender<Command>,
    peer_id: PeerId,
    listen_addrs: Vec<Multiaddr>,
    gossip_limits: GossipLimits,
    /// `chorus_p2p_direct_messages`, for the sends refused here, before the service sees them.
    direct_metrics: prometheus_client::metrics::family::Family<
        [(&'static str, &'static str); 2],
        prometheus_client::metrics::counter::Counter,
    >,
}

impl NetworkHandle {
    pub fn local_peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The addresses the service listens on (ports resolved), each ending in `/p2p/<id>` so
    /// that another node can use it as a bootnode.
    pub fn listen_addrs(&self) -> &[Multiaddr] {
        &self.listen_addrs
    }

    /// Publishes `data` on `topic` to the peers subscribed to it. A transaction that finds none
    /// (`NoPeers`) is held and published when a peer subscribes (`limits::P2P_HELD_TXS_MAX`).
    pub async fn publish(&self, topic: Topic, data: Vec<u8>) -> Result<(), PublishError> {
        let limit_bytes = self.gossip_limits.bytes_max(topic);
        if data.len() > limit_bytes as usize {
            return Err(PublishError::TooLarge { topic, size_bytes: data.len(), limit_bytes });
        }
        let (reply, answer) = oneshot::channel();
        self.send(Command::Publish { topic, data, reply }).await.map_err(|_| PublishError::Stopped)?;
        answer.await.map_err(|_| PublishError::Stopped)?
    }

    /// The node's verdict on a gossip message it was given.
    pub async fn validate(&self, id: MessageId, from: PeerId, verdict: Verdict) -> Result<(), Error> {
        self.send(Command::Validate { id, from, verdict }).await
    }

    /// Sends a sync request and waits for the answer (bounded by the request timeout). A
    /// request over the limits is refused here, before anything is sent.
    pub async fn request(&self, peer: PeerId, request: SyncRequest) -> Result<SyncResponse, RequestError> {
        request.check().map_err(RequestError::Invalid)?;
        let (reply, answer) = oneshot::channel();
        self.send(Command::Request { peer, request, reply }).await.map_err(|_| RequestError::Stopped)?;
        answer.await.map_err(|_| RequestError::Stopped)?
    }

    /// Hands `data` to the service for `peer` alone, over the direct protocol ([`direct`]),
    /// without waiting: refused here when it is over the limit or the service's command queue
    /// is full. The receipt says what the service did with it (queued on the peer's stream, or
    /// refused because the peer is not connected or `limits::DIRECT_QUEUED_PER_PEER_MAX`
    /// messages to it wait); an engine that resends on its own timers may drop it. Not waiting
    /// lets a node send an engine's message before the disk write that follows it.
    pub fn send_direct(&self, peer: PeerId, data: Vec<u8>) -> Result<DirectReceipt, DirectError> {
        let limit_bytes = chorus_chain::limits::DIRECT_MESSAGE_BYTES_MAX;
        let refused =
            |outcome| self.direct_metrics.get_or_create(&[("direction", "outbound"), ("outcome", outcome)]).inc();
        if data.len() > limit_bytes as usize {
            refused("too_large");
            return Err(DirectError::TooLarge { size_bytes: data.len(), limit_bytes });
        }
        let (reply, answer) = oneshot::channel();
        self.commands.try_send(Command::SendDirect { peer, data, reply }).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => {
                refused("busy");
                DirectError::Busy
            }
            mpsc::error::TrySendError::Closed(_) => DirectError::Stopped,
        })?;
        Ok(DirectReceipt(answer))
    }

    /// Answers an inbound request. Range answers longer than the response byte limit are cut
    /// to fit.
    pub async fn respond(&self, id: RequestId, response: SyncResponse) -> Result<(), Error> {
        self.send(Command::Respond { id, response }).await
    }

    /// Reports misbehaviour the node found (e.g. an invalid block from a sync response).
    pub async fn report(&self, peer: PeerId, misbehaviour: Misbehaviour) -> Result<(), Error> {
        self.send(Command::Report { peer, misbehaviour }).await
    }

    /// Disconnects `peer` and refuses it for `duration`.
    pub async fn ban(&self, peer: PeerId, duration: Duration) -> Result<(), Error> {
        self.send(Command::Ban { peer, duration }).await
    }

    pub async fn unban(&self, peer: PeerId) -> Result<(), Error> {
        self.send(Command::Unban { peer }).await
    }

    /// Permissioned mode: lets `peer` connect.
    pub async fn allow(&self, peer: PeerId) -> Result<(), Error> {
        self.allow_or_not(peer, true).await
    }

    /// Permissioned mode: removes `peer` from the allowlist and closes its connections.
    pub async fn disallow(&self, peer: PeerId) -> Result<(), Error> {
        self.allow_or_not(peer, false).await
    }

    async fn allow_or_not(&self, peer: PeerId, allow: bool) -> Result<(), Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Allow { peer, allow, reply }).await?;
        answer.await.map_err(|_| Error::Stopped)?
    }

    /// Permissioned mode: from now on only `peers` may connect. Connections to peers no longer
    /// listed close; bootnodes that became allowed are dialed at once.
    pub async fn set_allowlist(&self, peers: Vec<PeerId>) -> Result<(), Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::SetAllowlist { peers, reply }).await?;
        answer.await.map_err(|_| Error::Stopped)?
    }

    /// Dials an address (ending in `/p2p/<id>` to check whom it reaches).
    pub async fn dial(&self, address: Multiaddr) -> Result<(), Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Dial { address, reply }).await?;
        answer.await.map_err(|_| Error::Stopped)?
    }

    /// Connected and banned peers.
    pub async fn peers(&self) -> Result<Peers, Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Peers { reply }).await?;
        answer.await.map_err(|_| Error::Stopped)
    }

    /// Stops the service and closes every connection; returns when it has stopped.
    pub async fn shutdown(&self) {
        let (reply, answer) = oneshot::channel();
        if self.send(Command::Shutdown { reply }).await.is_ok() {
            let _ = answer.await;
        }
    }

    async fn send(&self, command: Command) -> Result<(), Error> {
        self.commands.send(command).await.map_err(|_| Error::Stopped)
    }
}

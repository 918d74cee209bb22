//! What the node tells the service at start: identity, addresses, mode and bounds.

use std::fmt;
use std::time::Duration;

use chorus_chain::limits;
use libp2p::identity::{Keypair, ed25519};
use libp2p::{Multiaddr, PeerId};

use crate::Topic;
use crate::reputation::ReputationConfig;

/// The node's network identity: an ed25519 key whose public half is the peer id. Its
/// `Debug` form shows the peer id only.
#[derive(Clone)]
pub struct NodeKey(Keypair);

impl NodeKey {
    pub fn generate() -> NodeKey {
        NodeKey(Keypair::generate_ed25519())
    }

    /// The key from its 32-byte ed25519 secret (seed). The bytes are zeroized by libp2p.
    pub fn from_secret(mut secret: [u8; 32]) -> NodeKey {
        let secret =
            ed25519::SecretKey::try_from_bytes(&mut secret).expect("invariant: any 32 bytes are an ed25519 secret");
        NodeKey(Keypair::from(ed25519::Keypair::from(secret)))
    }

    pub fn peer_id(&self) -> PeerId {
        self.0.public().to_peer_id()
    }

    pub(crate) fn keypair(&self) -> &Keypair {
        &self.0
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeKey({})", self.peer_id())
    }
}

/// Size limits per gossip topic. The defaults are the chain's; a test may raise them to play a
/// peer that sends what honest peers refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GossipLimits {
    pub block_bytes_max: u32,
    pub tx_bytes_max: u32,
    pub consensus_bytes_max: u32,
}

impl GossipLimits {
    /// Largest payload accepted on `topic`.
    pub const fn bytes_max(&self, topic: Topic) -> u32 {
        match topic {
            Topic::Blocks => self.block_bytes_max,
            Topic::Transactions => self.tx_bytes_max,
            Topic::Consensus => self.consensus_bytes_max,
        }
    }
}

impl Default for GossipLimits {
    fn default() -> Self {
        GossipLimits {
            block_bytes_max: limits::BLOCK_BYTES_MAX,
            tx_bytes_max: limits::GOSSIP_TX_BATCH_BYTES_MAX,
            consensus_bytes_max: limits::ENGINE_MESSAGE_BYTES_MAX,
        }
    }
}

/// Connection bounds; the defaults come from `limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionConfig {
    pub peers_max: u32,
    pub peers_inbound_max: u32,
    pub per_peer_max: u32,
    pub pending_inbound_max: u32,
    /// New connections are refused while the process uses more memory than this.
    pub process_memory_bytes_max: u64,
    /// Bootnodes and discovered peers are dialed while fewer than this many peers are
    /// connected by the node's own dials; inbound peers do not count.
    pub peers_outbound_target: u32,
    /// Inbound connections (pending or established) from one IP address.
    pub inbound_per_ip_max: u32,
    /// Inbound connections from one subnet: /24 for IPv4, /64 for IPv6.
    pub inbound_per_subnet_max: u32,
    /// Loopback addresses (127.0.0.0/8, ::1) are exempt from the two limits above and from
    /// address bans. Every node of a local testnet connects from 127.0.0.1, and only processes
    /// on this machine can; an attacker elsewhere cannot use these addresses. Tests turn the
    /// exemption off to exercise the rules over loopback.
    pub loopback_exempt: bool,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            peers_max: limits::PEERS_MAX,
            peers_inbound_max: limits::PEERS_INBOUND_MAX,
            per_peer_max: limits::CONNECTIONS_PER_PEER_MAX,
            pending_inbound_max: limits::CONNECTIONS_PENDING_INBOUND_MAX,
            process_memory_bytes_max: limits::P2P_PROCESS_MEMORY_BYTES_MAX,
            peers_outbound_target: limits::PEERS_OUTBOUND_TARGET,
            inbound_per_ip_max: limits::INBOUND_PER_IP_MAX,
            inbound_per_subnet_max: limits::INBOUND_PER_SUBNET_MAX,
            loopback_exempt: true,
        }
    }
}

/// How fast one peer's sync requests are served: a token bucket of `burst` requests that
/// refills one request per `interval`. Requests beyond it are refused before the node sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestRate {
    pub interval: Duration,
    pub burst: u32,
}

impl Default for RequestRate {
    fn default() -> Self {
        RequestRate {
            interval: Duration::from_secs(1) / limits::SYNC_REQUESTS_PER_PEER_PER_SEC,
            burst: limits::SYNC_REQUEST_BURST_MAX,
        }
    }
}

impl RequestRate {
    /// The rate of direct messages a peer may send (`limits::DIRECT_MESSAGES_PER_PEER_PER_SEC`).
    pub fn direct() -> RequestRate {
        RequestRate {
            interval: Duration::from_secs(1) / limits::DIRECT_MESSAGES_PER_PEER_PER_SEC,
            burst: limits::DIRECT_MESSAGE_BURST_MAX,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub key: NodeKey,
    /// Names the topics and protocols: nodes of different chains never exchange a message.
    pub chain_id: String,
    /// Addresses to listen on, e.g. `/ip4/127.0.0.1/tcp/0` (port 0 picks a free port).
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start and, with backoff, whenever the node has free outbound slots and
    /// is not connected to them; each ends in `/p2p/<peer id>`.
    pub bootnodes: Vec<Multiaddr>,
    /// Kademlia discovery (in server mode). Off, the node talks only to the peers it dials and
    /// the peers that dial it.
    pub discovery: bool,
    /// Permissioned mode (Raft): only these peers may connect, in either direction. `None`
    /// admits any peer that is not banned.
    pub allowlist: Option<Vec<PeerId>>,
    pub gossip: GossipLimits,
    pub connections: ConnectionConfig,
    pub reputation: ReputationConfig,
    /// Per peer, for the sync requests it sends us.
    pub request_rate: RequestRate,
    /// Per peer, for the direct messages it sends us ([`RequestRate::direct`]); beyond it they
    /// are dropped and cost the peer reputation.
    pub direct_rate: RequestRate,
    /// A sync request unanswered for this long fails and costs the peer reputation.
    pub request_timeout: Duration,
    /// A connection with no open stream is closed after this long. Gossipsub keeps a
    /// connection with a subscribed peer open, so this only ends connections nothing uses.
    pub idle_timeout: Duration,
    /// How often the service checks bans, discovery and bootnodes.
    pub tick: Duration,
    /// Sent in identify, e.g. `chorusd/0.1.0`.
    pub agent_version: String,
    /// How long a peer of another implementation may stay without subscribing to one of the
    /// chain's topics (`limits::P2P_FOREIGN_PEER_SUBSCRIBE_SECS_MAX`).
    pub foreign_peer_grace: Duration,
}

impl Config {
    /// A configuration with the defaults for everything but identity and chain.
    pub fn new(key: NodeKey, chain_id: impl Into<String>) -> Config {
        Config {
            key,
            chain_id: chain_id.into(),
            listen: vec!["/ip4/0.0.0.0/tcp/30333".parse().expect("invariant: a valid multiaddr")],
            bootnodes: Vec::new(),
            discovery: true,
            allowlist: None,
            gossip: GossipLimits::default(),
            connections: ConnectionConfig::default(),
            reputation: ReputationConfig::default(),
            request_rate: RequestRate::default(),
            direct_rate: RequestRate::direct(),
            request_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60 * 60),
            tick: Duration::from_secs(1),
            agent_version: concat!("chorusd/", env!("CARGO_PKG_VERSION")).to_owned(),
            foreign_peer_grace: Duration::from_secs(limits::P2P_FOREIGN_PEER_SUBSCRIBE_SECS_MAX),
        }
    }
}

/// Parses a peer id's text form (base58btc), as genesis files and flags carry it.
pub fn parse_peer_id(text: &str) -> Result<PeerId, crate::Error> {
    text.parse().map_err(|error: libp2p::identity::ParseError| crate::Error::PeerId {
        text: text.to_owned(),
        reason: error.to_string(),
    })
}

/// The peer id at the end of a multiaddr (`.../p2p/<id>`), as bootnode addresses carry it.
pub fn peer_id_of(address: &Multiaddr) -> Option<PeerId> {
    address.iter().find_map(|protocol| match protocol {
        libp2p::multiaddr::Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use chorus_chain::crypto::SecretKey;
    use chorus_chain::genesis::PeerIdText;

    use super::NodeKey;

    /// The genesis check that a member's peer id is its address's key computes the peer id
    /// without libp2p; it must be libp2p's.
    #[test]
    fn the_chains_peer_id_of_an_address_is_libp2ps() {
        for index in 0u64..200 {
            let mut seed = [0x5a; 32];
            seed[..8].copy_from_slice(&index.to_le_bytes());
            let ours = PeerIdText::of(&SecretKey::from_seed(seed).address());
            let libp2p = NodeKey::from_secret(seed).peer_id().to_string();
            assert_eq!(ours.as_str(), libp2p, "seed {index}");
        }
    }
}

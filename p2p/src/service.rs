//! The swarm and its event loop: one task owns the swarm and all bookkeeping; the node talks
//! to it through commands and hears from it through events.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chorus_chain::limits;
use futures::StreamExt;
use libp2p::allow_block_list::{self, AllowedPeers, BlockedPeers};
use libp2p::core::ConnectedPoint;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageAuthenticity, TopicHash, ValidationMode};
use libp2p::metrics::Recorder;
use libp2p::request_response::{self, OutboundFailure, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, ListenError, NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, SwarmBuilder, connection_limits, identify, kad, memory_connection_limits,
    noise, ping, tcp, yamux,
};
use prometheus_client::registry::Registry;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::config::{Config, peer_id_of};
use crate::direct::{self, DirectEvent};
use crate::gate::{AddressGate, AddressRefusal, ip_of};
use crate::metrics::Metrics;
use crate::rate::RequestBuckets;
use crate::reputation::{BanReason, Reputation};
use crate::sync::{self, SyncCodec, WireRequest};
use crate::{
    BannedPeer, Command, DirectError, Error, Event, Misbehaviour, NetworkHandle, PeerInfo, Peers, PublishError,
    Refusal, RequestError, RequestId, SyncRequest, SyncResponse, Topic, Verdict,
};

/// How often discovery looks for more peers while the node has fewer than its target.
const DISCOVERY_INTERVAL: Duration = Duration::from_secs(10);
/// The first wait before a bootnode not connected is dialed again (while outbound slots are
/// free); each failed dial doubles it, up to the maximum, and a connection resets it.
const BOOTNODE_REDIAL_INTERVAL: Duration = Duration::from_secs(5);
const BOOTNODE_REDIAL_INTERVAL_MAX: Duration = Duration::from_secs(60);
/// How long `start` waits for the listeners to report their addresses.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Gossipsub's memory, set explicitly: a message is kept whole (for peers that ask for it) for
/// `GOSSIP_HISTORY_BEATS` heartbeats, and its id is remembered (a publish of the same bytes
/// refused) for `GOSSIP_DUPLICATE_TIME`.
const GOSSIP_HEARTBEAT: Duration = Duration::from_secs(1);
const GOSSIP_HISTORY_BEATS: u32 = 5;
const GOSSIP_DUPLICATE_TIME: Duration = Duration::from_secs(60);

/// A gossip message's id: the SHA-256 of its payload, so the same block or transaction from
/// two peers (or published again) is one message.
fn message_id(data: &[u8]) -> gossipsub::MessageId {
    gossipsub::MessageId::new(&Sha256::digest(data))
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    // The gates come first: a connection they deny never reaches the protocols below.
    allowed: Toggle<allow_block_list::Behaviour<AllowedPeers>>,
    blocked: allow_block_list::Behaviour<BlockedPeers>,
    gate: AddressGate,
    limits: connection_limits::Behaviour,
    memory: memory_connection_limits::Behaviour,
    gossipsub: gossipsub::Behaviour,
    sync: request_response::Behaviour<SyncCodec>,
    direct: direct::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    kad: Toggle<kad::Behaviour<kad::store::MemoryStore>>,
}

/// Builds the swarm, starts listening, and spawns the service on the current tokio runtime.
/// Returns once every listener has an address.
pub async fn start(config: Config, registry: &mut Registry) -> Result<(NetworkHandle, Events), Error> {
    let local = config.key.peer_id();
    let mut swarm = build_swarm(&config, registry)?;
    let topics: BTreeMap<TopicHash, Topic> =
        Topic::ALL.iter().map(|topic| (IdentTopic::new(topic.name(&config.chain_id)).hash(), *topic)).collect();
    for topic in Topic::ALL {
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&IdentTopic::new(topic.name(&config.chain_id)))
            .map_err(|error| Error::Transport(error.to_string()))?;
    }
    let listen_addrs = listen(&mut swarm, &config.listen).await?;
    let listen_addrs: Vec<Multiaddr> =
        listen_addrs.into_iter().map(|address| address.with_p2p(local).unwrap_or_else(|address| address)).collect();

    let (commands_tx, commands) = mpsc::channel(limits::P2P_COMMAND_QUEUE_MAX as usize);
    let (events_tx, events) = mpsc::channel(limits::P2P_EVENT_QUEUE_MAX as usize);
    let queued_bytes = Arc::new(AtomicU64::new(0));
    let events = Events { receiver: events, queued_bytes: Arc::clone(&queued_bytes) };
    let metrics = Metrics::register(registry);
    let handle = NetworkHandle {
        commands: commands_tx,
        peer_id: local,
        listen_addrs,
        gossip_limits: config.gossip,
        direct_metrics: metrics.direct.clone(),
    };
    let mut service = Service {
        swarm,
        events: events_tx,
        queued_bytes,
        reputation: Reputation::new(config.reputation.clone()),
        metrics,
        topics,
        connected: BTreeMap::new(),
        outbound: HashMap::new(),
        held_txs: VecDeque::new(),
        inbound: HashMap::new(),
        request_buckets: RequestBuckets::new(config.request_rate),
        direct_buckets: RequestBuckets::new(config.direct_rate),
        last_discovery: None,
        bootnodes: config.bootnodes.iter().map(|address| Bootnode::new(address.clone(), Instant::now())).collect(),
        config,
    };
    service.dial_bootnodes(Instant::now());
    tokio::spawn(service.run(commands));
    Ok((handle, events))
}

fn build_swarm(config: &Config, registry: &mut Registry) -> Result<Swarm<Behaviour>, Error> {
    let keypair = config.key.keypair().clone();
    let local = keypair.public().to_peer_id();
    let gossip_config = gossipsub::ConfigBuilder::default()
        // Content-addressed ids and no author: blocks and transactions authenticate
        // themselves, and the same payload from two peers is one message.
        .validation_mode(ValidationMode::Anonymous)
        .message_id_fn(|message| message_id(&message.data))
        .heartbeat_interval(GOSSIP_HEARTBEAT)
        .history_length(GOSSIP_HISTORY_BEATS as usize)
        .duplicate_cache_time(GOSSIP_DUPLICATE_TIME)
        .validate_messages()
        .max_transmit_size(limits::GOSSIP_FRAME_BYTES_MAX as usize)
        .build()
        .map_err(|error| Error::Transport(error.to_string()))?;
    let gossipsub = gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, gossip_config)
        .map_err(|error| Error::Transport(error.to_string()))?
        .with_metrics(registry.sub_registry_with_prefix("libp2p_gossipsub"), Default::default());

    let sync = request_response::Behaviour::with_codec(
        SyncCodec,
        [(sync::protocol(&config.chain_id), ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(config.request_timeout).with_max_concurrent_streams(
            limits::PEERS_MAX as usize * limits::SYNC_REQUESTS_IN_FLIGHT_PER_PEER_MAX as usize,
        ),
    );
    let direct = direct::Behaviour::new(direct::protocol(&config.chain_id));
    let identify = identify::Behaviour::new(
        identify::Config::new(identify_version(&config.chain_id), keypair.public())
            .with_agent_version(config.agent_version.clone()),
    );
    let kad = config.discovery.then(|| {
        let protocol = StreamProtocol::try_from_owned(format!("/chorus/{}/kad/1", config.chain_id))
            .expect("invariant: chain ids are ASCII without '/'");
        let mut kad_config = kad::Config::new(protocol);
        kad_config.set_periodic_bootstrap_interval(Some(DISCOVERY_INTERVAL * 6));
        let mut kad = kad::Behaviour::with_config(local, kad::store::MemoryStore::new(local), kad_config);
        // On a local network no external address is ever confirmed, and Kademlia would stay a
        // client that nobody can query.
        kad.set_mode(Some(kad::Mode::Server));
        kad
    });
    let allowed = config.allowlist.as_ref().map(|peers| {
        let mut allowed = allow_block_list::Behaviour::<AllowedPeers>::default();
        for peer in peers {
            allowed.allow_peer(*peer);
        }
        allowed
    });
    let connections = &config.connections;
    let behaviour = Behaviour {
        allowed: Toggle::from(allowed),
        blocked: allow_block_list::Behaviour::default(),
        gate: AddressGate::new(*connections),
        limits: connection_limits::Behaviour::new(
            connection_limits::ConnectionLimits::default()
                .with_max_established(Some(connections.peers_max))
                .with_max_established_incoming(Some(connections.peers_inbound_max))
                .with_max_established_per_peer(Some(connections.per_peer_max))
                .with_max_pending_incoming(Some(connections.pending_inbound_max)),
        ),
        memory: memory_connection_limits::Behaviour::with_max_bytes(
            usize::try_from(connections.process_memory_bytes_max).unwrap_or(usize::MAX),
        ),
        gossipsub,
        sync,
        direct,
        identify,
        ping: ping::Behaviour::new(ping::Config::new()),
        kad: Toggle::from(kad),
    };
    let idle_timeout = config.idle_timeout;
    let swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .map_err(|error| Error::Transport(error.to_string()))?;
    // With the `quic` feature, `/udp/<port>/quic-v1` listen and dial addresses work too.
    #[cfg(feature = "quic")]
    let swarm = swarm.with_quic();
    let swarm = swarm
        .with_bandwidth_metrics(registry.sub_registry_with_prefix("libp2p"))
        .with_behaviour(|_| behaviour)
        .map_err(|error| Error::Transport(error.to_string()))?
        .with_swarm_config(|swarm| swarm.with_idle_connection_timeout(idle_timeout))
        .build();
    Ok(swarm)
}

/// Starts every listener and waits until each has reported an address.
async fn listen(swarm: &mut Swarm<Behaviour>, addresses: &[Multiaddr]) -> Result<Vec<Multiaddr>, Error> {
    let mut waiting = Vec::new();
    for address in addresses {
        let id = swarm
            .listen_on(address.clone())
            .map_err(|error| Error::Listen { address: address.clone(), reason: error.to_string() })?;
        waiting.push((id, address.clone()));
    }
    let mut bound = Vec::new();
    let deadline = tokio::time::Instant::now() + LISTEN_TIMEOUT;
    while !waiting.is_empty() {
        let event = tokio::time::timeout_at(deadline, swarm.select_next_some()).await.map_err(|_| Error::Listen {
            address: waiting[0].1.clone(),
            reason: format!("no address within {LISTEN_TIMEOUT:?}"),
        })?;
        match event {
            SwarmEvent::NewListenAddr { listener_id, address } => {
                waiting.retain(|(id, _)| *id != listener_id);
                bound.push(address);
            }
            SwarmEvent::ListenerClosed { listener_id, reason, .. } => {
                if let Some((_, address)) = waiting.iter().find(|(id, _)| *id == listener_id) {
                    let reason = reason.err().map_or_else(|| "closed".to_owned(), |error| error.to_string());
                    return Err(Error::Listen { address: address.clone(), reason });
                }
            }
            SwarmEvent::ListenerError { error, .. } => {
                tracing::warn!(%error, "listener error");
            }
            _ => {}
        }
    }
    Ok(bound)
}

struct Connected {
    connections: Vec<(ConnectionId, ConnectedPoint)>,
    inbound: bool,
    since: Instant,
    agent: Option<String>,
    /// Since when a peer of another implementation (identify names no Chorus chain) has been
    /// waiting to subscribe to one of the chain's topics; `None` for Chorus peers and for
    /// peers that subscribed.
    foreign_since: Option<Instant>,
    /// Whether it subscribed to one of the chain's topics.
    subscribed: bool,
}

struct PendingRequest {
    peer: PeerId,
    request: SyncRequest,
    sent: Instant,
    reply: oneshot::Sender<Result<SyncResponse, RequestError>>,
}

struct InboundRequest {
    peer: PeerId,
    kind: &'static str,
    channel: ResponseChannel<SyncResponse>,
}

/// A bootnode and when to dial it next.
struct Bootnode {
    address: Multiaddr,
    peer: Option<PeerId>,
    next_dial: Instant,
    backoff: Duration,
}

impl Bootnode {
    fn new(address: Multiaddr, now: Instant) -> Bootnode {
        Bootnode { peer: peer_id_of(&address), address, next_dial: now, backoff: BOOTNODE_REDIAL_INTERVAL }
    }
}

struct Service {
    swarm: Swarm<Behaviour>,
    events: mpsc::Sender<Event>,
    /// Gossip bytes in `events`, shared with the node's end ([`Events`]).
    queued_bytes: Arc<AtomicU64>,
    reputation: Reputation,
    metrics: Metrics,
    topics: BTreeMap<TopicHash, Topic>,
    connected: BTreeMap<PeerId, Connected>,
    /// Our requests awaiting answers. Bounded: at most SYNC_REQUESTS_IN_FLIGHT_PER_PEER_MAX per
    /// connected peer.
    outbound: HashMap<OutboundRequestId, PendingRequest>,
    /// Transactions published while no peer subscribed to their topic, with when, oldest
    /// first: published again when one subscribes (`P2P_HELD_TXS_MAX`, `P2P_HELD_TX_SECS_MAX`).
    held_txs: VecDeque<(Instant, Vec<u8>)>,
    /// Peers' requests awaiting the node's answer, bounded the same way.
    inbound: HashMap<request_response::InboundRequestId, InboundRequest>,
    /// How fast each peer's requests are served.
    request_buckets: RequestBuckets,
    /// How many direct messages each peer may send us.
    direct_buckets: RequestBuckets,
    last_discovery: Option<Instant>,
    bootnodes: Vec<Bootnode>,
    config: Config,
}

impl Service {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut tick = tokio::time::interval(self.config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stopped = loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => break Some(reply),
                    Some(command) => self.on_command(command),
                    None => break None,
                },
                _ = tick.tick() => self.on_tick(Instant::now()),
            }
        };
        tracing::debug!("network service stopping");
        drop(self);
        if let Some(reply) = stopped {
            let _ = reply.send(());
        }
    }

    fn on_command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Publish { topic, data, reply } => {
                let _ = reply.send(self.publish(topic, data, now));
            }
            Command::Validate { id, from, verdict } => {
                let acceptance = match verdict {
                    Verdict::Accept => MessageAcceptance::Accept,
                    Verdict::Ignore => MessageAcceptance::Ignore,
                    Verdict::Reject(misbehaviour) => {
                        self.report(from, misbehaviour, now);
                        MessageAcceptance::Reject
                    }
                };
                self.swarm.behaviour_mut().gossipsub.report_message_validation_result(&id, &from, acceptance);
            }
            Command::Request { peer, request, reply } => self.request(peer, request, reply, now),
            Command::Respond { id, response } => self.respond(id.0, response),
            Command::SendDirect { peer, data, reply } => {
                let _ = reply.send(self.send_direct(peer, data));
            }
            Command::Report { peer, misbehaviour } => self.report(peer, misbehaviour, now),
            Command::Ban { peer, duration } => self.ban(peer, duration, BanReason::Manual, now),
            Command::Unban { peer } => {
                self.swarm.behaviour_mut().gate.unban_peer(&peer);
                if self.reputation.unban(&peer) {
                    self.sync_blocked();
                    // Reconnect if an address is known (identify keeps the ones it saw): a ban
                    // also dropped the peer from Kademlia, so discovery may not find it again.
                    let options = DialOpts::peer_id(peer).condition(PeerCondition::DisconnectedAndNotDialing).build();
                    if let Err(error) = self.swarm.dial(options) {
                        tracing::debug!(%peer, %error, "no redial after unban");
                    }
                }
            }
            Command::Allow { peer, allow, reply } => {
                let result = match self.swarm.behaviour_mut().allowed.as_mut() {
                    None => Err(Error::NotPermissioned),
                    Some(allowed) => {
                        if allow {
                            allowed.allow_peer(peer);
                        } else {
                            allowed.disallow_peer(peer);
                        }
                        Ok(())
                    }
                };
                let _ = reply.send(result);
            }
            Command::SetAllowlist { peers, reply } => {
                let _ = reply.send(self.set_allowlist(peers, now));
            }
            Command::Dial { address, reply } => {
                let result = self
                    .swarm
                    .dial(address.clone())
                    .map_err(|error| Error::Dial { address, reason: error.to_string() });
                let _ = reply.send(result);
            }
            Command::Peers { reply } => {
                let _ = reply.send(self.peers(now));
            }
            Command::Shutdown { .. } => unreachable!("handled by the loop"),
        }
    }

    fn publish(&mut self, topic: Topic, data: Vec<u8>, now: Instant) -> Result<(), PublishError> {
        let name = IdentTopic::new(topic.name(&self.config.chain_id));
        // A copy, kept if the transaction goes nowhere (gossipsub takes the original).
        let held = (topic == Topic::Transactions).then(|| data.clone());
        let result = match self.swarm.behaviour_mut().gossipsub.publish(name, data) {
            Ok(_) => Ok(()),
            Err(gossipsub::PublishError::Duplicate) => Err(PublishError::Duplicate),
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => Err(PublishError::NoPeers(topic)),
            Err(gossipsub::PublishError::AllQueuesFull(_)) => Err(PublishError::QueuesFull),
            Err(gossipsub::PublishError::MessageTooLarge) => Err(PublishError::TooLarge {
                topic,
                size_bytes: limits::GOSSIP_FRAME_BYTES_MAX as usize,
                limit_bytes: self.config.gossip.bytes_max(topic),
            }),
            Err(error) => {
                tracing::warn!(%error, %topic, "publish failed");
                Err(PublishError::QueuesFull)
            }
        };
        let outcome = match (&result, held) {
            (Ok(()), _) => "sent",
            (Err(PublishError::Duplicate), _) => "duplicate",
            (Err(PublishError::NoPeers(_)), Some(data)) => {
                if self.held_txs.len() >= limits::P2P_HELD_TXS_MAX as usize {
                    self.held_txs.pop_front();
                }
                self.held_txs.push_back((now, data));
                "held"
            }
            (Err(PublishError::NoPeers(_)), None) => "no_peers",
            (Err(_), _) => "failed",
        };
        self.metrics.published.get_or_create(&[("topic", topic.as_str()), ("outcome", outcome)]).inc();
        result
    }

    /// A peer subscribed to the transactions topic: the held transactions go out, but those
    /// held too long. One that finds no peer again is held again.
    fn publish_held_txs(&mut self, now: Instant) {
        let max_age = Duration::from_secs(limits::P2P_HELD_TX_SECS_MAX);
        let held = std::mem::take(&mut self.held_txs);
        for (since, data) in held {
            if now.saturating_duration_since(since) <= max_age {
                let _ = self.publish(Topic::Transactions, data, since);
            }
        }
    }

    fn request(
        &mut self,
        peer: PeerId,
        request: SyncRequest,
        reply: oneshot::Sender<Result<SyncResponse, RequestError>>,
        now: Instant,
    ) {
        if !self.swarm.is_connected(&peer) {
            let _ = reply.send(Err(RequestError::NotConnected(peer)));
            return;
        }
        let in_flight = self.outbound.values().filter(|pending| pending.peer == peer).count();
        let max = limits::SYNC_REQUESTS_IN_FLIGHT_PER_PEER_MAX;
        if in_flight >= max as usize {
            let _ = reply.send(Err(RequestError::TooManyInFlight { in_flight: in_flight as u32, max }));
            return;
        }
        let id = self.swarm.behaviour_mut().sync.send_request(&peer, WireRequest::Request(request.clone()));
        self.outbound.insert(id, PendingRequest { peer, request, sent: now, reply });
    }

    fn send_direct(&mut self, peer: PeerId, data: Vec<u8>) -> Result<(), DirectError> {
        let sent = self.swarm.behaviour_mut().direct.send(peer, data);
        match &sent {
            Ok(()) => {}
            Err(DirectError::NotConnected(_)) => self.count_direct("outbound", "not_connected"),
            Err(_) => self.count_direct("outbound", "queue_full"),
        }
        sent
    }

    fn on_direct_event(&mut self, event: DirectEvent, now: Instant) {
        match event {
            DirectEvent::Received { peer, data } => {
                if !self.direct_buckets.take(peer, now) {
                    self.report(peer, Misbehaviour::TooManyRequests, now);
                    return self.count_direct("inbound", "rate_limited");
                }
                // A full queue drops it; the sender's engine resends on its own timers.
                let outcome = if self.emit(Event::Direct { from: peer, data }) { "delivered" } else { "dropped" };
                self.count_direct("inbound", outcome);
            }
            DirectEvent::TooLarge { peer, size_bytes } => {
                tracing::debug!(%peer, size_bytes, "oversize direct message");
                self.report(peer, Misbehaviour::Oversize, now);
                self.count_direct("inbound", "oversize");
            }
            DirectEvent::Settled { written, lost } => {
                for (outcome, count) in [("written", written), ("lost", lost)] {
                    if count > 0 {
                        self.metrics
                            .direct
                            .get_or_create(&[("direction", "outbound"), ("outcome", outcome)])
                            .inc_by(u64::from(count));
                    }
                }
            }
        }
    }

    fn count_direct(&self, direction: &'static str, outcome: &'static str) {
        self.metrics.direct.get_or_create(&[("direction", direction), ("outcome", outcome)]).inc();
    }

    fn respond(&mut self, id: request_response::InboundRequestId, response: SyncResponse) {
        let Some(inbound) = self.inbound.remove(&id) else {
            // Timed out or the connection closed meanwhile.
            return;
        };
        let outcome = if self.swarm.behaviour_mut().sync.send_response(inbound.channel, response).is_ok() {
            "delivered"
        } else {
            "failed"
        };
        self.metrics.requests_inbound.get_or_create(&[("kind", inbound.kind), ("outcome", outcome)]).inc();
    }

    fn report(&mut self, peer: PeerId, misbehaviour: Misbehaviour, now: Instant) {
        tracing::debug!(%peer, %misbehaviour, "peer reported");
        self.metrics.reports.get_or_create(&[("kind", misbehaviour.as_str())]).inc();
        if let Some(ban) = self.reputation.report(peer, misbehaviour, now) {
            self.apply_ban(peer, ban.until.saturating_duration_since(now), ban.reason, now);
        }
    }

    fn ban(&mut self, peer: PeerId, duration: Duration, reason: BanReason, now: Instant) {
        self.reputation.ban(peer, duration, reason, now);
        self.apply_ban(peer, duration, reason, now);
    }

    /// Closes the banned peer's connections and bans the addresses they come from with it (for
    /// at most `ADDRESS_BAN_SECS_MAX`), so that a fresh peer id from there is refused too.
    fn apply_ban(&mut self, peer: PeerId, duration: Duration, reason: BanReason, now: Instant) {
        tracing::info!(%peer, ?duration, %reason, "peer banned");
        self.metrics.bans.inc();
        let addresses: Vec<_> = self.connected.get(&peer).map_or_else(Vec::new, |connected| {
            connected.connections.iter().filter_map(|(_, endpoint)| ip_of(endpoint.get_remote_address())).collect()
        });
        let until = now + duration.min(Duration::from_secs(limits::ADDRESS_BAN_SECS_MAX));
        for ip in addresses {
            self.swarm.behaviour_mut().gate.ban(ip, peer, until);
        }
        self.sync_blocked();
        if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() {
            kad.remove_peer(&peer);
        }
        self.emit(Event::PeerBanned { peer, duration, reason });
    }

    /// Makes the connection gate's blocked set equal the bans: blocking closes a peer's
    /// connections and refuses new ones in both directions. Bans end by expiry, unban, or
    /// eviction from the bounded table, all of which pass through here.
    fn sync_blocked(&mut self) {
        let blocked = &mut self.swarm.behaviour_mut().blocked;
        let lifted: Vec<PeerId> =
            blocked.blocked_peers().iter().filter(|peer| !self.reputation.is_banned(peer)).copied().collect();
        for peer in lifted {
            blocked.unblock_peer(peer);
        }
        for (peer, _) in self.reputation.bans() {
            blocked.block_peer(*peer);
        }
        self.metrics.banned.set(self.reputation.bans().count() as i64);
    }

    fn peers(&self, now: Instant) -> Peers {
        let connected = self
            .connected
            .iter()
            .map(|(peer, connected)| PeerInfo {
                peer: *peer,
                addresses: connected
                    .connections
                    .iter()
                    .map(|(_, endpoint)| endpoint.get_remote_address().clone())
                    .collect(),
                inbound: connected.inbound,
                score: self.reputation.score(peer, now),
                agent: connected.agent.clone(),
                connected_for: now.saturating_duration_since(connected.since),
            })
            .collect();
        let banned = self
            .reputation
            .bans()
            .map(|(peer, ban)| BannedPeer {
                peer: *peer,
                remaining: ban.until.saturating_duration_since(now),
                reason: ban.reason,
            })
            .collect();
        Peers { connected, banned }
    }

    fn on_tick(&mut self, now: Instant) {
        let ended = self.reputation.expire(now);
        if !ended.is_empty() {
            tracing::info!(peers = ?ended, "bans ended");
            self.sync_blocked();
        }
        self.swarm.behaviour_mut().gate.expire(now);
        self.drop_idle_foreign_peers(now);
        self.dial_bootnodes(now);
        self.discover(now);
    }

    /// Disconnects the peers of other implementations that have not subscribed to any of the
    /// chain's topics within `Config::foreign_peer_grace`: they belong to another network, or
    /// take part in nothing while holding a connection slot. No offence: they may come back.
    fn drop_idle_foreign_peers(&mut self, now: Instant) {
        let grace = self.config.foreign_peer_grace;
        let idle: Vec<PeerId> = self
            .connected
            .iter()
            .filter(|(_, entry)| entry.foreign_since.is_some_and(|since| now.saturating_duration_since(since) >= grace))
            .map(|(peer, _)| *peer)
            .collect();
        for peer in idle {
            tracing::debug!(%peer, "peer of another implementation subscribed to none of the chain's topics, disconnecting");
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    /// Whether the node's own dials have reached their target. Inbound peers do not count:
    /// however many connect, the node keeps choosing peers of its own.
    fn outbound_full(&self) -> bool {
        let outbound = self.connected.values().filter(|connected| !connected.inbound).count();
        outbound >= self.config.connections.peers_outbound_target as usize
    }

    /// Replaces the allowlist: peers no longer on it are disconnected, bootnodes newly on it
    /// are dialed now rather than when a backoff from their refused dials ends.
    fn set_allowlist(&mut self, peers: Vec<PeerId>, now: Instant) -> Result<(), Error> {
        let Some(allowed) = self.swarm.behaviour_mut().allowed.as_mut() else { return Err(Error::NotPermissioned) };
        let wanted: BTreeSet<PeerId> = peers.into_iter().collect();
        let current: Vec<PeerId> = allowed.allowed_peers().iter().copied().collect();
        for peer in current.iter().filter(|peer| !wanted.contains(peer)) {
            allowed.disallow_peer(*peer);
        }
        for peer in &wanted {
            if allowed.allow_peer(*peer) {
                for bootnode in self.bootnodes.iter_mut().filter(|bootnode| bootnode.peer == Some(*peer)) {
                    bootnode.next_dial = now;
                    bootnode.backoff = BOOTNODE_REDIAL_INTERVAL;
                }
            }
        }
        self.dial_bootnodes(now);
        Ok(())
    }

    /// Dials the bootnodes not connected, each when its backoff has passed, while outbound
    /// slots are free.
    fn dial_bootnodes(&mut self, now: Instant) {
        let outbound_full = self.outbound_full();
        // In permissioned mode a bootnode off the allowlist would be refused: not dialed.
        let admitted = self.swarm.behaviour().allowed.as_ref().map(|allowed| allowed.allowed_peers().clone());
        let refused = |peer: &PeerId| admitted.as_ref().is_some_and(|admitted| !admitted.contains(peer));
        for bootnode in &mut self.bootnodes {
            if bootnode.peer.is_some_and(|peer| self.connected.contains_key(&peer)) {
                bootnode.backoff = BOOTNODE_REDIAL_INTERVAL;
                continue;
            }
            if outbound_full
                || now < bootnode.next_dial
                || bootnode.peer.is_some_and(|peer| self.reputation.is_banned(&peer) || refused(&peer))
            {
                continue;
            }
            bootnode.next_dial = now + bootnode.backoff;
            bootnode.backoff = (bootnode.backoff * 2).min(BOOTNODE_REDIAL_INTERVAL_MAX);
            let options = match bootnode.peer {
                Some(peer) => DialOpts::peer_id(peer)
                    .addresses(vec![bootnode.address.clone()])
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build(),
                None => DialOpts::unknown_peer_id().address(bootnode.address.clone()).build(),
            };
            if let Err(error) = self.swarm.dial(options) {
                tracing::debug!(address = %bootnode.address, %error, "bootnode dial failed");
            }
        }
    }

    /// Asks Kademlia for more peers while the node has fewer outbound peers than its target.
    fn discover(&mut self, now: Instant) {
        if self.outbound_full()
            || self.last_discovery.is_some_and(|last| now.saturating_duration_since(last) < DISCOVERY_INTERVAL)
        {
            return;
        }
        if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut()
            && kad.bootstrap().is_ok()
        {
            self.last_discovery = Some(now);
        }
    }

    /// Queues `event` for the node, unless the queue is full in count or, for gossip, in bytes.
    fn emit(&mut self, event: Event) -> bool {
        let bytes = event.queued_bytes();
        // This service is the only sender, so the check and the add cannot interleave with
        // another; the node only takes bytes away.
        if self.queued_bytes.load(Ordering::Acquire).saturating_add(bytes) > limits::P2P_EVENT_QUEUE_BYTES_MAX {
            self.metrics.events_dropped.inc();
            return false;
        }
        self.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
        match self.events.try_send(event) {
            Ok(()) => true,
            Err(_) => {
                self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
                self.metrics.events_dropped.inc();
                false
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.metrics.libp2p.record(&event);
        let now = Instant::now();
        match event {
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event, now),
            SwarmEvent::ConnectionEstablished { peer_id, connection_id, endpoint, .. } => {
                let inbound = endpoint.is_listener();
                let first = !self.connected.contains_key(&peer_id);
                let entry = self.connected.entry(peer_id).or_insert(Connected {
                    connections: Vec::new(),
                    inbound,
                    since: now,
                    agent: None,
                    foreign_since: None,
                    subscribed: false,
                });
                entry.connections.push((connection_id, endpoint));
                if first {
                    tracing::debug!(peer = %peer_id, inbound, "peer connected");
                    self.metrics.peers.set(self.connected.len() as i64);
                    self.emit(Event::PeerConnected { peer: peer_id, inbound });
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, connection_id, num_established, .. } => {
                if let Some(entry) = self.connected.get_mut(&peer_id) {
                    entry.connections.retain(|(id, _)| *id != connection_id);
                }
                if num_established == 0 && self.connected.remove(&peer_id).is_some() {
                    tracing::debug!(peer = %peer_id, "peer disconnected");
                    self.metrics.peers.set(self.connected.len() as i64);
                    self.emit(Event::PeerDisconnected { peer: peer_id });
                }
            }
            SwarmEvent::IncomingConnectionError { error, send_back_addr, .. } => {
                tracing::debug!(%send_back_addr, %error, "incoming connection refused or failed");
                if let ListenError::Denied { cause } = &error
                    && let Some(refusal) = cause.downcast_ref::<AddressRefusal>()
                {
                    self.metrics.connections_refused.get_or_create(&[("reason", refusal.as_str())]).inc();
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(peer = ?peer_id, %error, "dial failed");
            }
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent, now: Instant) {
        match event {
            BehaviourEvent::Gossipsub(event) => {
                self.metrics.libp2p.record(&event);
                match event {
                    gossipsub::Event::Message { propagation_source, message_id, message } => {
                        self.on_gossip(propagation_source, message_id, message, now);
                    }
                    gossipsub::Event::Subscribed { peer_id, topic } => {
                        let ours = self.topics.get(&topic).copied();
                        if ours.is_some()
                            && let Some(entry) = self.connected.get_mut(&peer_id)
                        {
                            entry.subscribed = true;
                            entry.foreign_since = None;
                        }
                        if ours == Some(Topic::Transactions) && !self.held_txs.is_empty() {
                            self.publish_held_txs(now);
                        }
                    }
                    _ => {}
                }
            }
            BehaviourEvent::Sync(event) => self.on_sync_event(event, now),
            BehaviourEvent::Direct(event) => self.on_direct_event(event, now),
            BehaviourEvent::Identify(event) => {
                self.metrics.libp2p.record(&event);
                if let identify::Event::Received { peer_id, info, .. } = event {
                    let chorus = info.protocol_version == self.identify_version();
                    if !chorus && info.protocol_version.starts_with("/chorus/") {
                        tracing::debug!(peer = %peer_id, version = %info.protocol_version, "peer of another chain, disconnecting");
                        let _ = self.swarm.disconnect_peer_id(peer_id);
                        return;
                    }
                    if let Some(entry) = self.connected.get_mut(&peer_id) {
                        entry.agent = Some(info.agent_version.clone());
                        // Another implementation cannot name the chain in identify (js-libp2p
                        // derives the field from its protocol prefix): it stays while it takes
                        // part in the chain's gossip ([`Service::drop_idle_foreign_peers`]).
                        if !chorus && !entry.subscribed {
                            entry.foreign_since.get_or_insert(now);
                        }
                    }
                    if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() {
                        for address in info.listen_addrs {
                            kad.add_address(&peer_id, address);
                        }
                    }
                    self.discover(now);
                }
            }
            BehaviourEvent::Ping(event) => self.metrics.libp2p.record(&event),
            BehaviourEvent::Kad(event) => {
                self.metrics.libp2p.record(&event);
                if let kad::Event::RoutingUpdated { peer, addresses, .. } = event {
                    self.dial_discovered(peer, addresses.into_vec());
                }
            }
            BehaviourEvent::Allowed(never) | BehaviourEvent::Blocked(never) => match never {},
            BehaviourEvent::Limits(never) | BehaviourEvent::Memory(never) => match never {},
        }
    }

    fn identify_version(&self) -> String {
        identify_version(&self.config.chain_id)
    }

    fn dial_discovered(&mut self, peer: PeerId, addresses: Vec<Multiaddr>) {
        if self.connected.contains_key(&peer) || self.reputation.is_banned(&peer) || self.outbound_full() {
            return;
        }
        let options =
            DialOpts::peer_id(peer).addresses(addresses).condition(PeerCondition::DisconnectedAndNotDialing).build();
        if let Err(error) = self.swarm.dial(options) {
            tracing::debug!(%peer, %error, "dial of a discovered peer failed");
        }
    }

    fn on_gossip(&mut self, from: PeerId, id: gossipsub::MessageId, message: gossipsub::Message, now: Instant) {
        let Some(topic) = self.topics.get(&message.topic).copied() else {
            self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                &id,
                &from,
                MessageAcceptance::Ignore,
            );
            return;
        };
        let count = |metrics: &Metrics, outcome| {
            metrics.gossip.get_or_create(&[("topic", topic.as_str()), ("outcome", outcome)]).inc()
        };
        count(&self.metrics, "received");
        if message.data.len() > self.config.gossip.bytes_max(topic) as usize {
            count(&self.metrics, "oversize");
            self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                &id,
                &from,
                MessageAcceptance::Reject,
            );
            self.report(from, Misbehaviour::Oversize, now);
            return;
        }
        if !self.emit(Event::Gossip { topic, id: id.clone(), from, data: message.data }) {
            count(&self.metrics, "dropped");
            self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                &id,
                &from,
                MessageAcceptance::Ignore,
            );
        }
    }

    fn on_sync_event(&mut self, event: request_response::Event<WireRequest, SyncResponse>, now: Instant) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request_id, request, channel } => {
                    self.on_request(peer, request_id, request, channel, now)
                }
                request_response::Message::Response { request_id, response } => {
                    let Some(pending) = self.outbound.remove(&request_id) else { return };
                    let kind = pending.request.kind();
                    let result = if response.answers(&pending.request) {
                        self.metrics.request_seconds.observe(now.saturating_duration_since(pending.sent).as_secs_f64());
                        match response {
                            SyncResponse::Refused(refusal) => Err(RequestError::Refused(refusal)),
                            response => Ok(response),
                        }
                    } else {
                        self.report(peer, Misbehaviour::BadResponse, now);
                        Err(RequestError::BadResponse)
                    };
                    let outcome = if result.is_ok() { "ok" } else { "bad_response" };
                    self.metrics.requests_outbound.get_or_create(&[("kind", kind), ("outcome", outcome)]).inc();
                    let _ = pending.reply.send(result);
                }
            },
            request_response::Event::OutboundFailure { peer, request_id, error, .. } => {
                let Some(pending) = self.outbound.remove(&request_id) else { return };
                let (error, outcome) = match error {
                    OutboundFailure::Timeout => {
                        self.report(peer, Misbehaviour::Unanswered, now);
                        (RequestError::Timeout(self.config.request_timeout), "timeout")
                    }
                    OutboundFailure::Io(error) => match sync::codec_error(&error) {
                        Some(codec_error) => {
                            let misbehaviour = codec_misbehaviour(codec_error);
                            self.report(peer, misbehaviour, now);
                            (RequestError::Undecodable(codec_error.to_string()), "bad_response")
                        }
                        None => (RequestError::ConnectionClosed, "failed"),
                    },
                    OutboundFailure::UnsupportedProtocols => (RequestError::Unsupported, "failed"),
                    OutboundFailure::DialFailure => (RequestError::NotConnected(peer), "failed"),
                    OutboundFailure::ConnectionClosed => (RequestError::ConnectionClosed, "failed"),
                };
                self.metrics
                    .requests_outbound
                    .get_or_create(&[("kind", pending.request.kind()), ("outcome", outcome)])
                    .inc();
                let _ = pending.reply.send(Err(error));
            }
            request_response::Event::InboundFailure { peer, request_id, error, .. } => {
                let kind = self.inbound.remove(&request_id).map_or("unknown", |inbound| inbound.kind);
                tracing::debug!(%peer, %error, "inbound sync request failed");
                self.metrics.requests_inbound.get_or_create(&[("kind", kind), ("outcome", "failed")]).inc();
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_request(
        &mut self,
        peer: PeerId,
        request_id: request_response::InboundRequestId,
        request: WireRequest,
        channel: ResponseChannel<SyncResponse>,
        now: Instant,
    ) {
        let request = match request {
            WireRequest::Request(request) => request,
            WireRequest::Bad(error) => {
                tracing::debug!(%peer, %error, "undecodable sync request");
                self.report(peer, codec_misbehaviour(&error), now);
                // Dropping the channel closes the stream unanswered.
                self.metrics.requests_inbound.get_or_create(&[("kind", "undecodable"), ("outcome", "refused")]).inc();
                return;
            }
        };
        let kind = request.kind();
        if let Err(refusal) = request.check() {
            self.report(peer, Misbehaviour::OversizeRequest, now);
            return self.refuse(channel, kind, refusal, "refused");
        }
        let in_flight = self.inbound.values().filter(|inbound| inbound.peer == peer).count();
        if in_flight >= limits::SYNC_REQUESTS_IN_FLIGHT_PER_PEER_MAX as usize {
            return self.refuse(channel, kind, Refusal::Busy, "busy");
        }
        if !self.request_buckets.take(peer, now) {
            self.report(peer, Misbehaviour::TooManyRequests, now);
            return self.refuse(channel, kind, Refusal::RateLimited, "rate_limited");
        }
        if self.emit(Event::Request { peer, id: RequestId(request_id), request }) {
            self.inbound.insert(request_id, InboundRequest { peer, kind, channel });
        } else {
            self.refuse(channel, kind, Refusal::Busy, "busy");
        }
    }

    fn refuse(
        &mut self,
        channel: ResponseChannel<SyncResponse>,
        kind: &'static str,
        refusal: Refusal,
        outcome: &'static str,
    ) {
        let _ = self.swarm.behaviour_mut().sync.send_response(channel, SyncResponse::Refused(refusal));
        self.metrics.requests_inbound.get_or_create(&[("kind", kind), ("outcome", outcome)]).inc();
    }
}

/// Sent in identify: a peer announcing another Chorus chain's is disconnected at once.
fn identify_version(chain_id: &str) -> String {
    format!("/chorus/{chain_id}/1")
}

fn codec_misbehaviour(error: &chorus_chain::codec::CodecError) -> Misbehaviour {
    match error {
        chorus_chain::codec::CodecError::TooLarge { .. } => Misbehaviour::Oversize,
        _ => Misbehaviour::Undecodable,
    }
}

/// The node's end of the event queue, bounded in count (`limits::P2P_EVENT_QUEUE_MAX`) and in
/// gossip bytes (`limits::P2P_EVENT_QUEUE_BYTES_MAX`).
#[derive(Debug)]
pub struct Events {
    receiver: mpsc::Receiver<Event>,
    queued_bytes: Arc<AtomicU64>,
}

impl Events {
    /// The next event; `None` once the service has stopped.
    pub async fn recv(&mut self) -> Option<Event> {
        let event = self.receiver.recv().await?;
        self.queued_bytes.fetch_sub(event.queued_bytes(), Ordering::AcqRel);
        Some(event)
    }
}

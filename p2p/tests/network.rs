//! The network service over real sockets on loopback.

mod common;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use chorus_chain::{Height, codec, limits};
use chorus_p2p::{
    BanReason, ConnectionConfig, DirectError, Error, GossipLimits, Misbehaviour, Multiaddr, NodeKey, PeerId,
    PublishError, Refusal, RequestError, RequestRate, SyncRequest, SyncResponse, Topic,
};
use common::*;
use futures::future::{BoxFuture, Pending};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, FutureExt, StreamExt};
use libp2p::core::transport::{DialOpts, ListenerId, TransportError, TransportEvent};
use libp2p::core::upgrade::Version;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{StreamProtocol, Swarm, SwarmBuilder, Transport, noise, tcp, yamux};

fn address(node: &TestNode) -> Multiaddr {
    node.handle.listen_addrs()[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_mesh_from_one_bootnode_and_gossip_every_topic() {
    let boot = start(config(), chain(1)).await;
    let mut nodes = vec![boot];
    for _ in 0..2 {
        let mut config = config();
        config.bootnodes = vec![address(&nodes[0])];
        nodes.push(start(config, chain(1)).await);
    }
    let ids: Vec<PeerId> = nodes.iter().map(|node| node.handle.local_peer_id()).collect();
    // The two joiners only know the bootnode: Kademlia introduces them to each other.
    for node in &nodes {
        eventually("a full mesh of three", || async {
            let peers = connected(&node.handle).await;
            (peers.len() == 2).then_some(())
        })
        .await;
    }
    for (sender, topic) in [
        (0, Topic::Blocks),
        (1, Topic::Transactions),
        (2, Topic::Consensus),
        (1, Topic::Blocks),
        (2, Topic::Transactions),
        (0, Topic::Consensus),
    ] {
        let data = format!("{topic} from node {sender}").into_bytes();
        publish(&nodes[sender].handle, topic, &data).await;
        for receiver in (0..3).filter(|receiver| *receiver != sender) {
            until_gossip(&mut nodes[receiver], &data).await;
        }
    }
    // A block of the largest allowed size travels too (gossipsub's default frame is 64 KiB).
    let mut largest = vec![0u8; limits::BLOCK_BYTES_MAX as usize];
    largest[..13].copy_from_slice(b"largest block");
    publish(&nodes[1].handle, Topic::Blocks, &largest).await;
    until_gossip(&mut nodes[0], &largest).await;
    until_gossip(&mut nodes[2], &largest).await;
    let peers = nodes[0].handle.peers().await.expect("peers");
    assert!(peers.banned.is_empty());
    let mut metrics = String::new();
    prometheus_client::encoding::text::encode(&mut metrics, &nodes[0].registry).expect("encode");
    for name in [
        "chorus_p2p_peers 2",
        "chorus_p2p_gossip_messages_total{topic=\"blocks\",outcome=\"received\"}",
        "libp2p_swarm_",
        "libp2p_gossipsub_",
        "libp2p_bandwidth_",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
    let mut families: Vec<&str> = metrics.lines().filter(|line| line.starts_with("# TYPE")).collect();
    let all = families.len();
    families.sort_unstable();
    families.dedup();
    assert_eq!(families.len(), all, "a metric family is registered twice");
    for info in &peers.connected {
        assert!(ids.contains(&info.peer));
        assert_eq!(info.score, 0);
        assert!(!info.addresses.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_published_alone_goes_out_when_a_peer_subscribes() {
    let alone = start_silent(config()).await;
    // Nobody to send to: a transaction is held, a block is not.
    let tx = b"a transfer while cut off".to_vec();
    assert_eq!(
        alone.handle.publish(Topic::Transactions, tx.clone()).await,
        Err(PublishError::NoPeers(Topic::Transactions))
    );
    let block = b"a block while cut off".to_vec();
    assert_eq!(alone.handle.publish(Topic::Blocks, block.clone()).await, Err(PublishError::NoPeers(Topic::Blocks)));

    let mut joiner_config = config();
    joiner_config.bootnodes = vec![address(&alone)];
    let mut joiner = start_silent(joiner_config).await;
    let before = until_gossip(&mut joiner, &tx).await;
    assert!(!before.iter().any(|seen| matches!(seen, Seen::Gossip { data, .. } if *data == block)), "{before:?}");
    let mut metrics = String::new();
    prometheus_client::encoding::text::encode(&mut metrics, &alone.registry).expect("encode");
    for line in [
        "chorus_p2p_published_messages_total{topic=\"txs\",outcome=\"held\"} 1",
        "chorus_p2p_published_messages_total{topic=\"txs\",outcome=\"sent\"} 1",
        "chorus_p2p_published_messages_total{topic=\"blocks\",outcome=\"no_peers\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_and_oversize_gossip_ban_the_sender_and_are_not_forwarded() {
    let mut honest = config();
    honest.discovery = false;
    let mut hub = start(honest.clone(), chain(1)).await;
    let mut observer_config = config();
    observer_config.discovery = false;
    observer_config.bootnodes = vec![address(&hub)];
    let mut observer = start(observer_config, chain(1)).await;
    // The bad peer allows itself larger transactions than everyone else.
    let mut bad_config = config();
    bad_config.discovery = false;
    bad_config.bootnodes = vec![address(&hub)];
    bad_config.gossip = GossipLimits { tx_bytes_max: 4 * limits::GOSSIP_TX_BATCH_BYTES_MAX, ..GossipLimits::default() };
    let mut bad = start(bad_config, chain(1)).await;
    let bad_id = bad.handle.local_peer_id();
    eventually("hub connected to both", || async { (connected(&hub.handle).await.len() == 2).then_some(()) }).await;

    // First strike: a block the hub's node finds invalid.
    let invalid = [INVALID, b"block"].concat();
    publish(&bad.handle, Topic::Blocks, &invalid).await;
    until_gossip(&mut hub, &invalid).await;
    let score = eventually("the first report", || async {
        let peers = hub.handle.peers().await.expect("peers");
        peers.connected.iter().find(|info| info.peer == bad_id && info.score < 0).map(|info| info.score)
    })
    .await;
    assert_eq!(score, -Misbehaviour::Invalid.penalty());

    // Second strike: a message of transactions over the topic limit, refused by the service itself.
    let oversize = vec![7u8; limits::GOSSIP_TX_BATCH_BYTES_MAX as usize + 1];
    publish(&bad.handle, Topic::Transactions, &oversize).await;
    let banned = until_seen(&mut hub, "the ban", |seen| matches!(seen, Seen::Banned(peer, _) if *peer == bad_id)).await;
    assert_eq!(banned, Seen::Banned(bad_id, BanReason::Score(Misbehaviour::Oversize)));
    eventually("the bad peer disconnected", || async {
        (!connected(&hub.handle).await.contains(&bad_id)).then_some(())
    })
    .await;
    let peers = hub.handle.peers().await.expect("peers");
    assert_eq!(peers.banned.len(), 1);
    assert_eq!(peers.banned[0].peer, bad_id);
    assert!(peers.banned[0].remaining > Duration::from_secs(60 * 59), "banned for the configured hour");

    // Nothing the bad peer sent reached the observer: a marker published by the hub after both
    // verdicts arrives, and nothing from the bad peer came before it.
    let marker = b"marker after the verdicts".to_vec();
    publish(&hub.handle, Topic::Blocks, &marker).await;
    let before = until_gossip(&mut observer, &marker).await;
    assert!(
        !before.iter().any(|seen| matches!(seen, Seen::Gossip { data, .. } if *data == invalid || *data == oversize)),
        "forwarded: {before:?}"
    );

    // A banned peer cannot come back while the ban lasts: the hub closes its connection before
    // any protocol runs. After an unban it can.
    let hub_id = hub.handle.local_peer_id();
    until_seen(&mut bad, "the ban's disconnection", |seen| *seen == Seen::Disconnected(hub_id)).await;
    bad.handle.dial(address(&hub)).await.expect("dial");
    until_seen(&mut bad, "the refused reconnection", |seen| *seen == Seen::Disconnected(hub_id)).await;
    assert!(!connected(&hub.handle).await.contains(&bad_id));
    hub.handle.unban(bad_id).await.expect("unban");
    // Commands run in order: once `peers` answers, the unban has taken effect.
    assert!(hub.handle.peers().await.expect("peers").banned.is_empty());
    bad.handle.dial(address(&hub)).await.expect("dial");
    eventually("the unbanned peer back", || async { connected(&hub.handle).await.contains(&bad_id).then_some(()) })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissioned_mode_admits_only_the_allowlist_and_follows_changes() {
    let member_key = NodeKey::generate();
    let mut gate_config = config();
    gate_config.discovery = false;
    gate_config.allowlist = Some(vec![member_key.peer_id()]);
    let mut gate = start(gate_config, chain(1)).await;

    let mut member_config = config();
    member_config.key = member_key;
    member_config.discovery = false;
    member_config.bootnodes = vec![address(&gate)];
    let member = start(member_config, chain(1)).await;
    let member_id = member.handle.local_peer_id();

    let mut stranger_config = config();
    stranger_config.discovery = false;
    let mut stranger = start(stranger_config, chain(1)).await;
    let stranger_id = stranger.handle.local_peer_id();

    until_seen(&mut gate, "the member", |seen| *seen == Seen::Connected(member_id)).await;

    // A stranger's connection is closed by the gate before any protocol runs: the stranger sees
    // it end, the gate never counts it as a peer.
    stranger.handle.dial(address(&gate)).await.expect("dial");
    until_seen(&mut stranger, "the gate closing the connection", |seen| {
        *seen == Seen::Disconnected(gate.handle.local_peer_id())
    })
    .await;
    assert_eq!(connected(&gate.handle).await, vec![member_id]);

    // Allowed at run time, it gets in and its gossip arrives.
    gate.handle.allow(stranger_id).await.expect("permissioned");
    stranger.handle.dial(address(&gate)).await.expect("dial");
    eventually("the stranger admitted", || async {
        connected(&gate.handle).await.contains(&stranger_id).then_some(())
    })
    .await;
    let hello = b"hello from the newly allowed".to_vec();
    publish(&stranger.handle, Topic::Consensus, &hello).await;
    let before = until_gossip(&mut gate, &hello).await;
    assert!(!before.iter().any(|seen| matches!(seen, Seen::Gossip { from, .. } if *from == stranger_id)));

    // Removed again, it is disconnected.
    gate.handle.disallow(stranger_id).await.expect("permissioned");
    until_seen(&mut gate, "the stranger disconnected", |seen| *seen == Seen::Disconnected(stranger_id)).await;
    assert_eq!(connected(&gate.handle).await, vec![member_id]);

    // An open node has no allowlist to change.
    assert!(matches!(stranger.handle.allow(member_id).await, Err(Error::NotPermissioned)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_allowlist_dials_the_bootnodes_it_admits_and_drops_the_peers_it_removed() {
    let mut member_config = config();
    member_config.discovery = false;
    let member = start(member_config, chain(1)).await;
    let member_id = member.handle.local_peer_id();

    // A node that starts admitting no one (a Raft node before its engine names the members)
    // has its bootnode dial refused locally.
    let mut gate_config = config();
    gate_config.discovery = false;
    gate_config.allowlist = Some(Vec::new());
    gate_config.bootnodes = vec![address(&member)];
    let mut gate = start(gate_config, chain(1)).await;
    assert!(connected(&gate.handle).await.is_empty());

    gate.handle.set_allowlist(vec![member_id]).await.expect("permissioned");
    until_seen(&mut gate, "the admitted bootnode", |seen| *seen == Seen::Connected(member_id)).await;

    gate.handle.set_allowlist(Vec::new()).await.expect("permissioned");
    until_seen(&mut gate, "the removed member disconnected", |seen| *seen == Seen::Disconnected(member_id)).await;
    assert!(connected(&gate.handle).await.is_empty());

    // An open node has no allowlist to replace.
    assert!(matches!(member.handle.set_allowlist(Vec::new()).await, Err(Error::NotPermissioned)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_requests_return_ranges_within_the_limits() {
    let mut server_config = config();
    server_config.discovery = false;
    let served = chain(100);
    let server = start(server_config, served.clone()).await;
    let mut client_config = config();
    client_config.discovery = false;
    client_config.bootnodes = vec![address(&server)];
    let client = start(client_config, chain(1)).await;
    let server_id = server.handle.local_peer_id();
    eventually("connected", || async { connected(&client.handle).await.contains(&server_id).then_some(()) }).await;
    let request = |request| client.handle.request(server_id, request);

    let headers = request(SyncRequest::Headers { from: Height::new(10), count: 20 }).await.expect("headers");
    let SyncResponse::Headers(headers) = headers else { panic!("{headers:?}") };
    assert_eq!(headers.iter().map(|header| header.height.get()).collect::<Vec<_>>(), (10..30).collect::<Vec<_>>());

    let blocks = request(SyncRequest::Blocks { from: Height::new(90), count: 64 }).await.expect("blocks");
    let SyncResponse::Blocks(blocks) = blocks else { panic!("{blocks:?}") };
    assert_eq!(blocks.len(), 10, "the chain ends at 99");
    assert_eq!(blocks[0], served[90]);

    let wanted = served[42].hash();
    assert_eq!(request(SyncRequest::Block(wanted)).await, Ok(SyncResponse::Block(Some(Box::new(served[42].clone())))));
    assert_eq!(request(SyncRequest::Block(chorus_chain::Hash::ZERO)).await, Ok(SyncResponse::Block(None)));

    let status = request(SyncRequest::Status).await.expect("status");
    assert_eq!(status, SyncResponse::Status { head: served[99].hash(), height: Height::new(99) });
    let after = request(SyncRequest::BlocksAfter { locator: vec![served[0].hash()] }).await.expect("blocks after");
    let SyncResponse::Blocks(after) = after else { panic!("{after:?}") };
    assert_eq!(after.iter().map(|block| block.header.height.get()).collect::<Vec<_>>(), (1..65).collect::<Vec<_>>());

    // Over the limits: refused locally, before anything is sent.
    let max = limits::SYNC_BLOCKS_PER_RESPONSE_MAX;
    assert_eq!(
        request(SyncRequest::Blocks { from: Height::new(0), count: max + 1 }).await,
        Err(RequestError::Invalid(Refusal::TooLarge { requested: max + 1, max }))
    );
    assert!(matches!(
        request(SyncRequest::Headers { from: Height::new(0), count: 0 }).await,
        Err(RequestError::Invalid(_))
    ));
    let stranger = PeerId::random();
    assert_eq!(
        client.handle.request(stranger, SyncRequest::Block(wanted)).await,
        Err(RequestError::NotConnected(stranger))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_requests_time_out_and_cost_reputation() {
    let mut silent_config = config();
    silent_config.discovery = false;
    let silent = start_silent(silent_config).await;
    let silent_id = silent.handle.local_peer_id();
    let mut client_config = config();
    client_config.discovery = false;
    client_config.bootnodes = vec![address(&silent)];
    client_config.request_timeout = Duration::from_millis(500);
    let client = start(client_config, chain(1)).await;
    eventually("connected", || async { connected(&client.handle).await.contains(&silent_id).then_some(()) }).await;

    let answer = client.handle.request(silent_id, SyncRequest::Headers { from: Height::new(0), count: 1 }).await;
    assert_eq!(answer, Err(RequestError::Timeout(Duration::from_millis(500))));
    let peers = client.handle.peers().await.expect("peers");
    let info =
        peers.connected.iter().find(|info| info.peer == silent_id).expect("still connected: one timeout is no ban");
    assert_eq!(info.score, -Misbehaviour::Unanswered.penalty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_of_another_chain_are_disconnected() {
    let mut ours = config();
    ours.discovery = false;
    let mut node = start(ours, chain(1)).await;
    let mut foreign_config = config();
    foreign_config.chain_id = "another-chain".to_owned();
    foreign_config.discovery = false;
    let mut foreign = start(foreign_config, chain(1)).await;
    let foreign_id = foreign.handle.local_peer_id();
    foreign.handle.dial(address(&node)).await.expect("dial");
    // The connection opens (same transport), identify tells the chains apart, and it closes.
    until_seen(&mut node, "the foreign peer's disconnection", |seen| *seen == Seen::Disconnected(foreign_id)).await;
    until_seen(&mut foreign, "the disconnection", |seen| *seen == Seen::Disconnected(node.handle.local_peer_id()))
        .await;
    assert!(connected(&node.handle).await.is_empty());
    assert!(node.handle.peers().await.expect("peers").banned.is_empty(), "another chain is no offence");
}

/// A peer that speaks the sync protocol with raw bytes: it can send what the service's own
/// handle refuses to.
#[derive(Debug, Clone, Default)]
struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
    ) -> io::Result<Vec<u8>> {
        Err(io::Error::other("the raw peer serves nothing"))
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        io.take(u64::from(limits::SYNC_RESPONSE_BYTES_MAX) + 4).read_to_end(&mut bytes).await?;
        Ok(bytes)
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        bytes: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&bytes).await?;
        io.close().await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
        _: Vec<u8>,
    ) -> io::Result<()> {
        Err(io::Error::other("the raw peer serves nothing"))
    }
}

type RawSwarm = Swarm<request_response::Behaviour<RawCodec>>;

/// TCP that dials from a chosen local address. Linux routes all of 127.0.0.0/8 to loopback, so
/// raw peers on one machine can come from as many addresses as a test needs.
struct BoundTcp {
    source: IpAddr,
}

impl Transport for BoundTcp {
    type Output = tcp::tokio::TcpStream;
    type Error = io::Error;
    type ListenerUpgrade = Pending<io::Result<tcp::tokio::TcpStream>>;
    type Dial = BoxFuture<'static, io::Result<tcp::tokio::TcpStream>>;

    fn listen_on(&mut self, _: ListenerId, address: Multiaddr) -> Result<(), TransportError<io::Error>> {
        Err(TransportError::MultiaddrNotSupported(address))
    }

    fn remove_listener(&mut self, _: ListenerId) -> bool {
        false
    }

    fn dial(&mut self, address: Multiaddr, _: DialOpts) -> Result<Self::Dial, TransportError<io::Error>> {
        let mut protocols = address.iter();
        let (Some(Protocol::Ip4(ip)), Some(Protocol::Tcp(port))) = (protocols.next(), protocols.next()) else {
            return Err(TransportError::MultiaddrNotSupported(address));
        };
        let source = self.source;
        Ok(async move {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(source, 0))?;
            Ok(tcp::tokio::TcpStream(socket.connect(SocketAddr::new(ip.into(), port)).await?))
        }
        .boxed())
    }

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<TransportEvent<Self::ListenerUpgrade, io::Error>> {
        Poll::Pending
    }
}

/// A raw peer with a fresh identity, dialing from `source`, speaking `/chorus/<chain>/<protocol>`.
fn raw_swarm(source: &str, protocol: &str) -> RawSwarm {
    let source: IpAddr = source.parse().expect("an IP address");
    let protocol = StreamProtocol::try_from_owned(format!("/chorus/{CHAIN}/{protocol}")).expect("protocol");
    SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(|key| -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
            Ok(BoundTcp { source }
                .upgrade(Version::V1)
                .authenticate(noise::Config::new(key)?)
                .multiplex(yamux::Config::default()))
        })
        .expect("transport")
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                RawCodec,
                [(protocol, ProtocolSupport::Outbound)],
                request_response::Config::default(),
            )
        })
        .expect("behaviour")
        .with_swarm_config(|config| config.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

/// Dials `target` from `source` and drives the swarm (it connects only while polled) until the
/// connection is up (`Ok`) or has failed (`Err`, e.g. refused by the target).
async fn try_raw_peer(source: &str, target: &Multiaddr) -> Result<RawSwarm, String> {
    try_raw_peer_speaking(source, target, "sync/1").await
}

async fn try_raw_peer_speaking(source: &str, target: &Multiaddr, protocol: &str) -> Result<RawSwarm, String> {
    let mut swarm = raw_swarm(source, protocol);
    swarm.dial(target.clone()).expect("dial");
    let outcome = tokio::time::timeout(WAIT, async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { .. } => return Ok(()),
                SwarmEvent::OutgoingConnectionError { error, .. } => return Err(error.to_string()),
                _ => {}
            }
        }
    })
    .await
    .expect("a connection or a failure in time");
    outcome.map(|()| swarm)
}

async fn raw_peer(target: &Multiaddr) -> RawSwarm {
    try_raw_peer("127.0.0.1", target).await.expect("a connection to the target")
}

/// Keeps a raw peer's connection open (the swarm is polled in the background) and returns its id.
fn hold(mut swarm: RawSwarm) -> PeerId {
    let id = *swarm.local_peer_id();
    tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    id
}

/// Sends one raw request and returns the raw answer, or `None` if the exchange failed.
async fn raw_exchange(swarm: &mut RawSwarm, peer: PeerId, bytes: Vec<u8>) -> Option<Vec<u8>> {
    swarm.behaviour_mut().send_request(&peer, bytes);
    loop {
        match tokio::time::timeout(WAIT, swarm.select_next_some()).await.expect("an answer or a failure") {
            SwarmEvent::Behaviour(request_response::Event::Message {
                message: request_response::Message::Response { response, .. },
                ..
            }) => {
                return Some(response);
            }
            SwarmEvent::Behaviour(request_response::Event::OutboundFailure { .. }) => return None,
            _ => {}
        }
    }
}

/// Writes raw bytes on a fresh direct stream, which the node never answers.
async fn raw_send(swarm: &mut RawSwarm, peer: PeerId, bytes: Vec<u8>) {
    let answer = raw_exchange(swarm, peer, bytes).await;
    assert!(answer.unwrap_or_default().is_empty(), "direct messages are not answered");
}

fn frame(bytes: &[u8]) -> Vec<u8> {
    let mut framed = (bytes.len() as u32).to_le_bytes().to_vec();
    framed.extend_from_slice(bytes);
    framed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_peers_get_typed_refusals_and_garbage_gets_them_banned() {
    let mut server_config = config();
    server_config.discovery = false;
    let mut server = start(server_config, chain(10)).await;
    let server_id = server.handle.local_peer_id();

    // A well-formed request over the limit gets a typed refusal, not silence.
    let mut polite = raw_peer(&address(&server)).await;
    let oversize = codec::encode(&SyncRequest::Blocks { from: Height::new(0), count: 1_000 });
    let answer = raw_exchange(&mut polite, server_id, frame(&oversize)).await.expect("an answer");
    let length = u32::from_le_bytes(answer[..4].try_into().expect("length")) as usize;
    assert_eq!(length, answer.len() - 4);
    let refused: SyncResponse = codec::decode(&answer[4..]).expect("a canonical response");
    assert_eq!(
        refused,
        SyncResponse::Refused(Refusal::TooLarge { requested: 1_000, max: limits::SYNC_BLOCKS_PER_RESPONSE_MAX })
    );

    // Garbage, then a length prefix over the request limit: two strikes, banned.
    let mut rude = raw_peer(&address(&server)).await;
    let rude_id = *rude.local_peer_id();
    let answer = raw_exchange(&mut rude, server_id, frame(&[0xff; 40])).await;
    assert!(answer.is_none_or(|bytes| bytes.is_empty()), "garbage gets no answer");
    let huge_length = (limits::SYNC_REQUEST_BYTES_MAX * 1_000).to_le_bytes().to_vec();
    let _ = raw_exchange(&mut rude, server_id, huge_length).await;
    let banned = until_seen(
        &mut server,
        "the rude peer banned",
        |seen| matches!(seen, Seen::Banned(peer, _) if *peer == rude_id),
    )
    .await;
    assert_eq!(banned, Seen::Banned(rude_id, BanReason::Score(Misbehaviour::Oversize)));
    eventually("the rude peer disconnected", || async {
        (!connected(&server.handle).await.contains(&rude_id)).then_some(())
    })
    .await;
    // The polite peer was refused once (a small penalty) and stays.
    let peers = server.handle.peers().await.expect("peers");
    let polite_info =
        peers.connected.iter().find(|info| info.peer == *polite.local_peer_id()).expect("still connected");
    assert_eq!(polite_info.score, -Misbehaviour::OversizeRequest.penalty());
}

/// A node applying the address rules over loopback (which is exempt by default).
fn strict_config() -> chorus_p2p::Config {
    let mut config = config();
    config.discovery = false;
    config.connections.loopback_exempt = false;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_or_subnet_cannot_take_the_inbound_slots() {
    let mut server_config = strict_config();
    server_config.connections =
        ConnectionConfig { inbound_per_ip_max: 2, inbound_per_subnet_max: 3, ..server_config.connections };
    let server = start(server_config, chain(1)).await;
    let target = address(&server);

    let mut admitted = Vec::new();
    for _ in 0..2 {
        admitted.push(hold(try_raw_peer("127.0.0.1", &target).await.expect("within the limit per address")));
    }
    for _ in 0..3 {
        let refused = try_raw_peer("127.0.0.1", &target).await;
        assert!(refused.is_err(), "a third connection from 127.0.0.1 got in");
    }
    // Another address of the same /24 still gets in, until the subnet is full too.
    admitted.push(hold(try_raw_peer("127.0.0.2", &target).await.expect("another address")));
    assert!(try_raw_peer("127.0.0.3", &target).await.is_err(), "the subnet's fourth connection got in");
    admitted.push(hold(try_raw_peer("127.0.1.1", &target).await.expect("another subnet")));

    eventually("the admitted peers connected", || async {
        let mut peers = connected(&server.handle).await;
        peers.sort_unstable();
        let mut expected = admitted.clone();
        expected.sort_unstable();
        (peers == expected).then_some(())
    })
    .await;
    let mut metrics = String::new();
    prometheus_client::encoding::text::encode(&mut metrics, &server.registry).expect("encode");
    for line in [
        "chorus_p2p_connections_refused_total{reason=\"per_address\"} 3",
        "chorus_p2p_connections_refused_total{reason=\"per_subnet\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_banned_peer_cannot_return_under_a_fresh_id_from_its_address() {
    let mut server = start(strict_config(), chain(1)).await;
    let server_id = server.handle.local_peer_id();
    let target = address(&server);

    // Garbage twice from 127.0.0.5: banned, with its address.
    let mut rude = try_raw_peer("127.0.0.5", &target).await.expect("admitted");
    let rude_id = *rude.local_peer_id();
    let _ = raw_exchange(&mut rude, server_id, frame(&[0xff; 40])).await;
    let _ = raw_exchange(&mut rude, server_id, frame(&[0xff; 40])).await;
    until_seen(&mut server, "the ban", |seen| matches!(seen, Seen::Banned(peer, _) if *peer == rude_id)).await;

    // A fresh peer id from the banned address is refused; another address gets in.
    assert!(try_raw_peer("127.0.0.5", &target).await.is_err(), "a fresh id from the banned address got in");
    let neighbour = hold(try_raw_peer("127.0.0.6", &target).await.expect("another address"));
    eventually("the neighbour connected", || async {
        connected(&server.handle).await.contains(&neighbour).then_some(())
    })
    .await;

    // Unbanning the peer lifts its address's ban.
    server.handle.unban(rude_id).await.expect("unban");
    assert!(server.handle.peers().await.expect("peers").banned.is_empty());
    hold(try_raw_peer("127.0.0.5", &target).await.expect("admitted after the unban"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_peers_filling_their_slots_do_not_stop_the_bootnode_dial() {
    // The bootnode is down when the node starts: its first dial fails.
    let boot_key = NodeKey::generate();
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("port").port();
    let boot_listen: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().expect("multiaddr");
    let mut node_config = config();
    node_config.discovery = false;
    node_config.connections = ConnectionConfig { peers_inbound_max: 3, peers_max: 6, ..node_config.connections };
    node_config.bootnodes = vec![boot_listen.clone().with_p2p(boot_key.peer_id()).expect("no peer id yet")];
    let node = start(node_config, chain(1)).await;

    // Inbound peers take every inbound slot.
    let mut inbound = Vec::new();
    for _ in 0..3 {
        inbound.push(hold(raw_peer(&address(&node)).await));
    }
    eventually("the inbound slots full", || async { (connected(&node.handle).await.len() == 3).then_some(()) }).await;

    // The bootnode comes up: the node dials it again, as an outbound peer.
    let mut boot_config = config();
    boot_config.key = boot_key.clone();
    boot_config.discovery = false;
    boot_config.listen = vec![boot_listen];
    let _boot = start(boot_config, chain(1)).await;
    let info = eventually("the bootnode connected", || async {
        node.handle.peers().await.expect("peers").connected.into_iter().find(|info| info.peer == boot_key.peer_id())
    })
    .await;
    assert!(!info.inbound, "the node dialed its bootnode");
    let peers = connected(&node.handle).await;
    assert!(inbound.iter().all(|peer| peers.contains(peer)), "the inbound peers stay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_flooding_sync_requests_is_refused_beyond_its_rate_then_banned() {
    let mut server_config = config();
    server_config.discovery = false;
    // A burst of 4 and no refill within the test.
    server_config.request_rate = RequestRate { interval: Duration::from_secs(3_600), burst: 4 };
    // Nor any recovery of the score.
    server_config.reputation.recovery_interval = Duration::from_secs(3_600);
    let threshold = server_config.reputation.ban_threshold;
    let mut server = start(server_config, chain(10)).await;
    let server_id = server.handle.local_peer_id();
    let mut flooder = raw_peer(&address(&server)).await;
    let flooder_id = *flooder.local_peer_id();
    let status = frame(&codec::encode(&SyncRequest::Status));
    let answer = |bytes: Option<Vec<u8>>| -> SyncResponse {
        let bytes = bytes.expect("an answer");
        codec::decode(&bytes[4..]).expect("a canonical response")
    };

    for _ in 0..4 {
        let response = answer(raw_exchange(&mut flooder, server_id, status.clone()).await);
        assert!(matches!(response, SyncResponse::Status { .. }), "{response:?}");
    }
    // Each refusal costs a little; the one that crosses the threshold bans, and its answer may
    // not make it out before the connection closes.
    let penalty = Misbehaviour::TooManyRequests.penalty();
    let refusals_to_ban = (-threshold + penalty - 1) / penalty;
    assert!(refusals_to_ban > 1, "one refusal alone does not ban");
    for _ in 1..refusals_to_ban {
        let response = answer(raw_exchange(&mut flooder, server_id, status.clone()).await);
        assert_eq!(response, SyncResponse::Refused(Refusal::RateLimited));
    }
    let peers = server.handle.peers().await.expect("peers");
    let info = peers.connected.iter().find(|info| info.peer == flooder_id).expect("not banned yet");
    assert_eq!(info.score, -(refusals_to_ban - 1) * penalty);
    let _ = raw_exchange(&mut flooder, server_id, status).await;
    let banned = until_seen(
        &mut server,
        "the flooder banned",
        |seen| matches!(seen, Seen::Banned(peer, _) if *peer == flooder_id),
    )
    .await;
    assert_eq!(banned, Seen::Banned(flooder_id, BanReason::Score(Misbehaviour::TooManyRequests)));
}

/// Issue 15, item 5: the node's event queue was bounded by count only, so 4,096 blocks of 2 MiB
/// could wait in it. Full blocks gossiped at a node that does not take its events fill the
/// queue's byte bound; the rest are dropped (and counted), not queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_waiting_for_the_node_is_bounded_in_bytes() {
    let mut registry = prometheus_client::registry::Registry::default();
    let (receiver, mut events) = chorus_p2p::start(config(), &mut registry).await.expect("service starts");
    let mut sender_config = config();
    sender_config.bootnodes = vec![receiver.listen_addrs()[0].clone()];
    let sender = start(sender_config, chain(1)).await;
    let fits = limits::P2P_EVENT_QUEUE_BYTES_MAX / u64::from(limits::BLOCK_BYTES_MAX);
    let sent = fits + 8;
    for index in 0..sent {
        let mut block = vec![0u8; limits::BLOCK_BYTES_MAX as usize];
        block[..8].copy_from_slice(&index.to_le_bytes());
        publish(&sender.handle, Topic::Blocks, &block).await;
    }
    let dropped = "chorus_p2p_gossip_messages_total{topic=\"blocks\",outcome=\"dropped\"}";
    eventually("every block past the byte bound dropped", || async {
        let mut metrics = String::new();
        prometheus_client::encoding::text::encode(&mut metrics, &registry).expect("encode");
        metrics.lines().any(|line| line == format!("{dropped} {}", sent - fits)).then_some(())
    })
    .await;
    let mut queued = 0;
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(1), events.recv()).await {
        if let chorus_p2p::Event::Gossip { data, .. } = event {
            assert_eq!(data.len(), limits::BLOCK_BYTES_MAX as usize);
            queued += 1;
        }
    }
    assert_eq!(queued, fits, "exactly what fits the byte bound waited for the node");
    // Taken by the node, the bytes are free again.
    let mut block = vec![1u8; limits::BLOCK_BYTES_MAX as usize];
    block[..5].copy_from_slice(b"after");
    publish(&sender.handle, Topic::Blocks, &block).await;
    let next = tokio::time::timeout(WAIT, events.recv()).await.expect("in time").expect("service alive");
    assert!(matches!(next, chorus_p2p::Event::Gossip { data, .. } if data == block));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_messages_reach_only_their_peer_from_its_authenticated_id_within_the_limits() {
    let mut hub_config = config();
    hub_config.discovery = false;
    // A burst of 4 direct messages per peer and no refill within the test, nor any recovery.
    hub_config.direct_rate = RequestRate { interval: Duration::from_secs(3_600), burst: 4 };
    hub_config.reputation.recovery_interval = Duration::from_secs(3_600);
    let threshold = hub_config.reputation.ban_threshold;
    let mut hub = start_silent(hub_config).await;
    let hub_id = hub.handle.local_peer_id();
    let mut spokes = Vec::new();
    for _ in 0..2 {
        let mut spoke_config = config();
        spoke_config.discovery = false;
        spoke_config.bootnodes = vec![address(&hub)];
        spokes.push(start_silent(spoke_config).await);
    }
    let [first, second] = [spokes[0].handle.local_peer_id(), spokes[1].handle.local_peer_id()];
    eventually("the spokes connected to the hub", || async {
        let peers = connected(&hub.handle).await;
        (peers.contains(&first) && peers.contains(&second)).then_some(())
    })
    .await;

    // The same bytes twice reach the one peer twice (no de-duplication, unlike gossip), named
    // by the connection's peer id; the other spoke gets nothing.
    for _ in 0..2 {
        hub.handle.send_direct(first, b"append 1".to_vec()).expect("queued").outcome().await.expect("sent");
    }
    hub.handle.send_direct(first, b"append 2".to_vec()).expect("queued").outcome().await.expect("sent");
    let mut received = Vec::new();
    while received.len() < 3 {
        if let Seen::Direct { from, data } =
            until_seen(&mut spokes[0], "direct messages", |seen| matches!(seen, Seen::Direct { .. })).await
        {
            assert_eq!(from, hub_id);
            received.push(data);
        }
    }
    // One stream to the peer: in the order sent.
    assert_eq!(received, [b"append 1".to_vec(), b"append 1".to_vec(), b"append 2".to_vec()]);
    while let Ok(seen) = spokes[1].seen.try_recv() {
        assert!(!matches!(seen, Seen::Direct { .. }), "the other spoke got {seen:?}");
    }

    // Refused at the sender: over the limit, or to a peer not connected.
    let limit = limits::DIRECT_MESSAGE_BYTES_MAX;
    let oversize = hub.handle.send_direct(first, vec![0; limit as usize + 1]);
    assert_eq!(oversize.map(drop), Err(DirectError::TooLarge { size_bytes: limit as usize + 1, limit_bytes: limit }));
    let mut metrics = String::new();
    prometheus_client::encoding::text::encode(&mut metrics, &hub.registry).expect("encode");
    assert!(
        metrics.contains(r#"chorus_p2p_direct_messages_total{direction="outbound",outcome="too_large"} 1"#),
        "a refusal at the sender is counted: {metrics}"
    );
    let stranger = NodeKey::generate().peer_id();
    assert_eq!(
        hub.handle.send_direct(stranger, b"hello".to_vec()).expect("queued").outcome().await,
        Err(DirectError::NotConnected(stranger))
    );

    // A raw peer, a stream per exchange: its messages are delivered from its own id, in order,
    // many to a stream; a length over the limit closes the stream unread and costs it; a flood
    // beyond its rate is dropped and gets it banned.
    let mut raw = try_raw_peer_speaking("127.0.0.1", &address(&hub), "engine/2").await.expect("connected");
    let raw_id = *raw.local_peer_id();
    let direct = |seen: &Seen| matches!(seen, Seen::Direct { .. });
    raw_send(&mut raw, hub_id, [frame(b"vote"), frame(b"append")].concat()).await;
    for data in [&b"vote"[..], b"append"] {
        let seen = until_seen(&mut hub, "the raw peer's messages", direct).await;
        assert_eq!(seen, Seen::Direct { from: raw_id, data: data.to_vec() });
    }
    raw_send(&mut raw, hub_id, [(limit + 1).to_le_bytes().to_vec(), frame(b"unread")].concat()).await;
    let score =
        |peers: chorus_p2p::Peers| peers.connected.iter().find(|info| info.peer == raw_id).map(|info| info.score);
    eventually("the oversize length costs the raw peer", || async {
        (score(hub.handle.peers().await.expect("peers")) == Some(-Misbehaviour::Oversize.penalty())).then_some(())
    })
    .await;
    // The burst of 4 had 2 left.
    for _ in 0..2 {
        raw_send(&mut raw, hub_id, frame(b"vote")).await;
        let seen = until_seen(&mut hub, "a message within the burst", direct).await;
        assert_eq!(seen, Seen::Direct { from: raw_id, data: b"vote".to_vec() });
    }
    let penalty = Misbehaviour::TooManyRequests.penalty();
    let floods_to_ban = (-threshold - Misbehaviour::Oversize.penalty() + penalty - 1) / penalty;
    raw_send(&mut raw, hub_id, frame(b"vote").repeat(floods_to_ban as usize)).await;
    let banned = until_seen(&mut hub, "the flooder banned", |seen| {
        assert!(!matches!(seen, Seen::Direct { .. }), "beyond the rate: {seen:?}");
        matches!(seen, Seen::Banned(peer, _) if *peer == raw_id)
    })
    .await;
    assert_eq!(banned, Seen::Banned(raw_id, BanReason::Score(Misbehaviour::TooManyRequests)));
}

/// What a peer of another libp2p implementation shares with a Chorus node: gossipsub, and an
/// identify that names no Chorus chain (`ipfs/0.1.0`, js-libp2p's default).
#[derive(libp2p::swarm::NetworkBehaviour)]
struct ForeignBehaviour {
    gossipsub: libp2p::gossipsub::Behaviour,
    identify: libp2p::identify::Behaviour,
}

/// A foreign peer, subscribed to the blocks topic of `chain` if given, dialing `target`. Its
/// swarm runs in a task that reports every gossip payload and its disconnection from `target`.
fn foreign_peer(chain: Option<&str>, target: Multiaddr) -> (PeerId, tokio::sync::mpsc::Receiver<Option<Vec<u8>>>) {
    use libp2p::{gossipsub, identify};
    let mut swarm = SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .expect("transport")
        .with_behaviour(|key| {
            // As js-libp2p is set to talk to Chorus: unsigned messages, content-addressed ids.
            let config = gossipsub::ConfigBuilder::default()
                .validation_mode(gossipsub::ValidationMode::Anonymous)
                .build()
                .expect("gossipsub config");
            ForeignBehaviour {
                gossipsub: gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, config)
                    .expect("gossipsub"),
                identify: identify::Behaviour::new(identify::Config::new("ipfs/0.1.0".to_owned(), key.public())),
            }
        })
        .expect("behaviour")
        .with_swarm_config(|config| config.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    if let Some(chain) = chain {
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&gossipsub::IdentTopic::new(Topic::Blocks.name(chain)))
            .expect("subscribe");
    }
    let id = *swarm.local_peer_id();
    let target_id = match target.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    };
    swarm.dial(target).expect("dial");
    let (report, reports) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let seen = match swarm.select_next_some().await {
                SwarmEvent::Behaviour(ForeignBehaviourEvent::Gossipsub(gossipsub::Event::Message {
                    message, ..
                })) => Some(message.data),
                SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } if Some(peer_id) == target_id => None,
                _ => continue,
            };
            if report.send(seen).await.is_err() {
                return;
            }
        }
    });
    (id, reports)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_of_another_implementation_gets_blocks_while_it_takes_part_and_is_dropped_otherwise() {
    let mut ours = config();
    ours.discovery = false;
    ours.foreign_peer_grace = Duration::from_secs(2);
    let node = start(ours, chain(1)).await;
    let target = address(&node).with(Protocol::P2p(node.handle.local_peer_id()));
    let (member, mut member_seen) = foreign_peer(Some(CHAIN), target.clone());
    let (idle, mut idle_seen) = foreign_peer(None, target);

    // The member's identify names no Chorus chain, and it is kept: blocks reach it by gossip.
    publish(&node.handle, Topic::Blocks, b"a block for every implementation").await;
    let received = tokio::time::timeout(WAIT, member_seen.recv()).await.expect("in time").expect("task alive");
    assert_eq!(received.as_deref(), Some(&b"a block for every implementation"[..]));

    // The idle peer subscribed to nothing of the chain's: dropped once the grace ran out.
    let closed = tokio::time::timeout(WAIT, idle_seen.recv()).await.expect("in time").expect("task alive");
    assert_eq!(closed, None, "the idle foreign peer's connection closes");
    eventually("the idle peer gone, the member kept past the grace", || async {
        let peers = connected(&node.handle).await;
        (!peers.contains(&idle) && peers.contains(&member)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(connected(&node.handle).await.contains(&member), "a subscribed foreign peer outlives the grace");
    assert!(node.handle.peers().await.expect("peers").banned.is_empty(), "neither is an offence");
}

//! Direct engine messages: bytes from one peer to one peer, for engines that address a member
//! rather than everyone (Raft). Gossip would not do: it deduplicates identical payloads (two
//! equal heartbeats are one message) and does not say who wrote a message.
//!
//! Each side keeps one stream per connection open for the messages it sends, opened with the
//! first one: a message is a 4-byte little-endian length and the bytes, at most
//! `limits::DIRECT_MESSAGE_BYTES_MAX`, one after another. Opening and negotiating a stream per
//! message cost a round trip each time, on a Raft commit's path (the append, its answer, the
//! commit notice). Messages to a peer all take its first connection, so they arrive in order;
//! nothing is acknowledged, and an engine that talks directly tolerates loss (Raft resends on
//! its timers). The sender is the connection's peer id, which noise authenticated.
//!
//! Bounds: messages to one peer not yet written wait in its connection's queue, at most
//! `limits::DIRECT_QUEUED_PER_PEER_MAX` (beyond it a send is refused at once, and the stream's
//! flow control makes a peer that does not read fill it); a length over the limit is refused
//! before the body is read, and closes the stream. The service rate-limits what each peer
//! sends ([`crate::NetworkHandle::send_direct`]).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::task::{Context, Poll};

use chorus_chain::limits;
use futures::future::BoxFuture;
use futures::{AsyncRead, AsyncReadExt, AsyncWriteExt, FutureExt};
use libp2p::core::transport::PortUse;
use libp2p::core::upgrade::ReadyUpgrade;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::swarm::handler::{ConnectionEvent, FullyNegotiatedInbound, FullyNegotiatedOutbound};
use libp2p::swarm::{
    ConnectionClosed, ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm,
    NetworkBehaviour, NotifyHandler, Stream, SubstreamProtocol, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{PeerId, StreamProtocol};

use crate::DirectError;

/// The stream protocol name for a chain.
pub fn protocol(chain_id: &str) -> StreamProtocol {
    StreamProtocol::try_from_owned(format!("/chorus/{chain_id}/engine/2"))
        .expect("invariant: chain ids are ASCII without '/'")
}

/// A message as read off the wire: its bytes, or the length it announced over the limit (the
/// body unread).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    Bytes(Vec<u8>),
    TooLarge { size_bytes: u32 },
}

/// Reads the next message; `None` at the end of the stream.
pub(crate) async fn read_frame<T: AsyncRead + Unpin>(io: &mut T, limit_bytes: u32) -> io::Result<Option<Frame>> {
    let mut length = [0u8; 4];
    match io.read_exact(&mut length).await {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    let size_bytes = u32::from_le_bytes(length);
    if size_bytes > limit_bytes {
        return Ok(Some(Frame::TooLarge { size_bytes }));
    }
    let mut bytes = vec![0u8; size_bytes as usize];
    io.read_exact(&mut bytes).await?;
    Ok(Some(Frame::Bytes(bytes)))
}

/// Messages as one write: each behind its length. The caller checked each against the limit.
pub(crate) fn frames(messages: &[Vec<u8>]) -> Vec<u8> {
    let total = messages.iter().map(|message| message.len().saturating_add(4)).sum();
    let mut bytes = Vec::with_capacity(total);
    for message in messages {
        let length = u32::try_from(message.len()).expect("invariant: checked against the u32 limit");
        bytes.extend_from_slice(&length.to_le_bytes());
        bytes.extend_from_slice(message);
    }
    bytes
}

/// What the behaviour reports to the service.
#[derive(Debug)]
pub(crate) enum DirectEvent {
    /// A message from `peer`, the connection's authenticated id.
    Received { peer: PeerId, data: Vec<u8> },
    /// `peer` announced a message over the limit; the stream was closed with it unread.
    TooLarge { peer: PeerId, size_bytes: u32 },
    /// Messages to `peer` left its queue: `written` to the stream, or `lost` with a stream or
    /// connection that failed.
    Settled { written: u32, lost: u32 },
}

/// The direct-message behaviour: which peers are connected and how many messages each has
/// queued.
pub(crate) struct Behaviour {
    protocol: StreamProtocol,
    /// Each connected peer's connections, the first one carrying its messages.
    connections: HashMap<PeerId, Vec<ConnectionId>>,
    /// Messages handed to each connection and not yet written.
    queued: HashMap<ConnectionId, u32>,
    events: VecDeque<ToSwarm<DirectEvent, Vec<u8>>>,
}

impl Behaviour {
    pub(crate) fn new(protocol: StreamProtocol) -> Behaviour {
        Behaviour { protocol, connections: HashMap::new(), queued: HashMap::new(), events: VecDeque::new() }
    }

    /// Queues `data` for `peer` on its first connection.
    pub(crate) fn send(&mut self, peer: PeerId, data: Vec<u8>) -> Result<(), DirectError> {
        let Some(&connection) = self.connections.get(&peer).and_then(|connections| connections.first()) else {
            return Err(DirectError::NotConnected(peer));
        };
        let queued = self.queued.entry(connection).or_default();
        let max = limits::DIRECT_QUEUED_PER_PEER_MAX;
        if *queued >= max {
            return Err(DirectError::QueueFull { peer, queued: *queued, max });
        }
        *queued = queued.saturating_add(1);
        self.events.push_back(ToSwarm::NotifyHandler {
            peer_id: peer,
            handler: NotifyHandler::One(connection),
            event: data,
        });
        Ok(())
    }

    fn handler(&self) -> Handler {
        Handler {
            protocol: self.protocol.clone(),
            queue: VecDeque::new(),
            outbound: Outbound::Closed,
            inbound: None,
            reports: VecDeque::new(),
        }
    }

    fn settle(&mut self, connection: ConnectionId, written: u32, lost: u32) {
        if let Some(queued) = self.queued.get_mut(&connection) {
            *queued = queued.saturating_sub(written.saturating_add(lost));
        }
        self.events.push_back(ToSwarm::GenerateEvent(DirectEvent::Settled { written, lost }));
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = Handler;
    type ToSwarm = DirectEvent;

    fn handle_established_inbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.connections.entry(peer).or_default().push(connection);
        Ok(self.handler())
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.connections.entry(peer).or_default().push(connection);
        Ok(self.handler())
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        if let FromSwarm::ConnectionClosed(ConnectionClosed { peer_id, connection_id, .. }) = event {
            if let Some(connections) = self.connections.get_mut(&peer_id) {
                connections.retain(|connection| *connection != connection_id);
                if connections.is_empty() {
                    self.connections.remove(&peer_id);
                }
            }
            // What its handler still held is gone with it.
            if let Some(lost) = self.queued.remove(&connection_id).filter(|lost| *lost > 0) {
                self.events.push_back(ToSwarm::GenerateEvent(DirectEvent::Settled { written: 0, lost }));
            }
        }
    }

    fn on_connection_handler_event(&mut self, peer: PeerId, connection: ConnectionId, event: THandlerOutEvent<Self>) {
        match event {
            HandlerReport::Received(data) => {
                self.events.push_back(ToSwarm::GenerateEvent(DirectEvent::Received { peer, data }));
            }
            HandlerReport::TooLarge(size_bytes) => {
                self.events.push_back(ToSwarm::GenerateEvent(DirectEvent::TooLarge { peer, size_bytes }));
            }
            HandlerReport::Written(count) => self.settle(connection, count, 0),
            HandlerReport::Lost(count) => self.settle(connection, 0, count),
        }
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<DirectEvent, THandlerInEvent<Self>>> {
        match self.events.pop_front() {
            Some(event) => Poll::Ready(event),
            None => Poll::Pending,
        }
    }
}

/// What a connection's handler reports to the behaviour.
#[derive(Debug)]
pub(crate) enum HandlerReport {
    Received(Vec<u8>),
    TooLarge(u32),
    Written(u32),
    Lost(u32),
}

/// The stream this side writes to.
enum Outbound {
    /// None open (none needed yet, or the last one failed).
    Closed,
    /// Asked of the connection, being negotiated.
    Opening,
    Idle(Stream),
    /// Writing `count` messages; the stream comes back when they are written.
    Writing {
        write: BoxFuture<'static, io::Result<Stream>>,
        count: u32,
    },
}

type ReadNext = BoxFuture<'static, (Stream, io::Result<Option<Frame>>)>;

/// One connection's direct messages: the queue and stream out, the latest stream in.
pub(crate) struct Handler {
    protocol: StreamProtocol,
    queue: VecDeque<Vec<u8>>,
    outbound: Outbound,
    /// Reading the next message of the stream the peer opened last (a newer one replaces it).
    inbound: Option<ReadNext>,
    reports: VecDeque<HandlerReport>,
}

fn read_next(mut stream: Stream) -> ReadNext {
    async move {
        let frame = read_frame(&mut stream, limits::DIRECT_MESSAGE_BYTES_MAX).await;
        (stream, frame)
    }
    .boxed()
}

impl Handler {
    fn lose_queue(&mut self) {
        let lost = u32::try_from(self.queue.len()).unwrap_or(u32::MAX);
        self.queue.clear();
        if lost > 0 {
            self.reports.push_back(HandlerReport::Lost(lost));
        }
    }

    /// Moves the outbound stream along; `Some` asks the connection for a stream.
    fn poll_outbound(&mut self, cx: &mut Context<'_>) -> Option<SubstreamProtocol<ReadyUpgrade<StreamProtocol>, ()>> {
        loop {
            match std::mem::replace(&mut self.outbound, Outbound::Closed) {
                Outbound::Closed if !self.queue.is_empty() => {
                    self.outbound = Outbound::Opening;
                    return Some(SubstreamProtocol::new(ReadyUpgrade::new(self.protocol.clone()), ()));
                }
                Outbound::Idle(mut stream) if !self.queue.is_empty() => {
                    let messages: Vec<Vec<u8>> = self.queue.drain(..).collect();
                    let count = u32::try_from(messages.len()).unwrap_or(u32::MAX);
                    let write = async move {
                        stream.write_all(&frames(&messages)).await?;
                        stream.flush().await?;
                        Ok(stream)
                    }
                    .boxed();
                    self.outbound = Outbound::Writing { write, count };
                }
                Outbound::Writing { mut write, count } => match write.poll_unpin(cx) {
                    Poll::Ready(Ok(stream)) => {
                        self.reports.push_back(HandlerReport::Written(count));
                        self.outbound = Outbound::Idle(stream);
                    }
                    Poll::Ready(Err(error)) => {
                        tracing::debug!(%error, "direct stream failed");
                        self.reports.push_back(HandlerReport::Lost(count));
                    }
                    Poll::Pending => {
                        self.outbound = Outbound::Writing { write, count };
                        return None;
                    }
                },
                other => {
                    self.outbound = other;
                    return None;
                }
            }
        }
    }

    fn poll_inbound(&mut self, cx: &mut Context<'_>) {
        let Some(read) = self.inbound.as_mut() else { return };
        let Poll::Ready((stream, frame)) = read.poll_unpin(cx) else { return };
        self.inbound = None;
        match frame {
            Ok(Some(Frame::Bytes(data))) => {
                self.reports.push_back(HandlerReport::Received(data));
                self.inbound = Some(read_next(stream));
            }
            // The body is not read: the stream cannot go on.
            Ok(Some(Frame::TooLarge { size_bytes })) => self.reports.push_back(HandlerReport::TooLarge(size_bytes)),
            Ok(None) => {}
            Err(error) => tracing::debug!(%error, "inbound direct stream failed"),
        }
    }
}

impl ConnectionHandler for Handler {
    type FromBehaviour = Vec<u8>;
    type ToBehaviour = HandlerReport;
    type InboundProtocol = ReadyUpgrade<StreamProtocol>;
    type OutboundProtocol = ReadyUpgrade<StreamProtocol>;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol, ()> {
        SubstreamProtocol::new(ReadyUpgrade::new(self.protocol.clone()), ())
    }

    fn connection_keep_alive(&self) -> bool {
        !self.queue.is_empty() || matches!(self.outbound, Outbound::Opening | Outbound::Writing { .. })
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, (), HandlerReport>> {
        if let Some(protocol) = self.poll_outbound(cx) {
            return Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest { protocol });
        }
        // One message read per poll: the connection polls again after an event.
        if self.reports.is_empty() {
            self.poll_inbound(cx);
        }
        match self.reports.pop_front() {
            Some(report) => Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(report)),
            None => Poll::Pending,
        }
    }

    fn on_behaviour_event(&mut self, data: Vec<u8>) {
        self.queue.push_back(data);
    }

    fn on_connection_event(&mut self, event: ConnectionEvent<Self::InboundProtocol, Self::OutboundProtocol>) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound { protocol: mut stream, .. }) => {
                stream.ignore_for_keep_alive();
                self.inbound = Some(read_next(stream));
            }
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound { protocol: mut stream, .. }) => {
                stream.ignore_for_keep_alive();
                self.outbound = Outbound::Idle(stream);
            }
            ConnectionEvent::DialUpgradeError(error) => {
                tracing::debug!(error = %error.error, "no direct stream to the peer");
                self.outbound = Outbound::Closed;
                self.lose_queue();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;
    use futures::io::Cursor;

    use super::*;

    #[test]
    fn messages_follow_each_other_and_oversize_lengths_are_refused_before_reading() {
        let wire = frames(&[b"append 7".to_vec(), Vec::new(), b"commit".to_vec()]);
        assert_eq!(&wire[..4], &8u32.to_le_bytes());
        let mut reader = Cursor::new(&wire);
        for expected in [&b"append 7"[..], b"", b"commit"] {
            let frame = block_on(read_frame(&mut reader, 16)).expect("read");
            assert_eq!(frame, Some(Frame::Bytes(expected.to_vec())));
        }
        assert_eq!(block_on(read_frame(&mut reader, 16)).expect("the end"), None);

        // A length over the limit is refused with the body unread (here it is not even there).
        let oversize = 17u32.to_le_bytes();
        let read = block_on(read_frame(&mut Cursor::new(&oversize[..]), 16)).expect("no stream error");
        assert_eq!(read, Some(Frame::TooLarge { size_bytes: 17 }));
        // A body cut short is a broken stream, not the end of one.
        let mut cut = 8u32.to_le_bytes().to_vec();
        cut.extend_from_slice(b"app");
        assert!(block_on(read_frame(&mut Cursor::new(&cut[..]), 16)).is_err());
    }
}

//! Direct engine messages: bytes from one peer to one peer, for engines that address a member
//! rather than everyone (Raft). Gossip would not do: it deduplicates identical payloads (two
//! equal heartbeats are one message) and does not say who wrote a message.
//!
//! One message per stream: a 4-byte little-endian length and the bytes, at most
//! `limits::DIRECT_MESSAGE_BYTES_MAX` (checked before the body is read); the receiver
//! acknowledges with one byte ([`ACK`]) once the message is in the node's queue, and closes
//! the stream unanswered when it drops it. Each message has its own stream, so two messages
//! may arrive in either order; an engine that talks directly tolerates reordering and loss
//! (Raft does). The sender is
//! the connection's peer id, which noise authenticated. The service bounds what one peer may
//! have in flight to it and send to us ([`crate::NetworkHandle::send_direct`]).

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

/// The acknowledgement: one byte.
pub const ACK: u8 = 1;

/// The stream protocol name for a chain.
pub fn protocol(chain_id: &str) -> StreamProtocol {
    StreamProtocol::try_from_owned(format!("/chorus/{chain_id}/engine/1"))
        .expect("invariant: chain ids are ASCII without '/'")
}

/// A message as read off the wire: its bytes, or the length it announced over the limit (the
/// body unread), so that the service can report the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WireMessage {
    Bytes(Vec<u8>),
    TooLarge { size_bytes: u32 },
}

#[derive(Debug, Clone)]
pub(crate) struct DirectCodec {
    pub limit_bytes: u32,
}

impl libp2p::request_response::Codec for DirectCodec {
    type Protocol = StreamProtocol;
    type Request = WireMessage;
    type Response = ();

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<WireMessage>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut length = [0u8; 4];
        io.read_exact(&mut length).await?;
        let size_bytes = u32::from_le_bytes(length);
        if size_bytes > self.limit_bytes {
            return Ok(WireMessage::TooLarge { size_bytes });
        }
        let mut bytes = vec![0u8; size_bytes as usize];
        io.read_exact(&mut bytes).await?;
        Ok(WireMessage::Bytes(bytes))
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<()>
    where
        T: AsyncRead + Unpin + Send,
    {
        // A stream that ends without the byte was dropped by the receiver (over its rate, its
        // queue full): not acknowledged.
        let mut ack = [0u8; 1];
        io.read_exact(&mut ack).await?;
        match ack {
            [ACK] => Ok(()),
            _ => Err(io::Error::new(io::ErrorKind::InvalidData, "not a direct message acknowledgement")),
        }
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, message: WireMessage) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let WireMessage::Bytes(bytes) = message else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "an oversize direct message is never sent"));
        };
        let length = u32::try_from(bytes.len())
            .ok()
            .filter(|length| *length <= self.limit_bytes)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "direct message over the limit"))?;
        io.write_all(&length.to_le_bytes()).await?;
        io.write_all(&bytes).await?;
        io.close().await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, (): ()) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&[ACK]).await?;
        io.close().await
    }
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;
    use futures::io::Cursor;
    use libp2p::request_response::Codec;

    use super::*;

    #[test]
    fn messages_round_trip_and_oversize_lengths_are_refused_before_reading() {
        let protocol = protocol("chorus-test");
        let mut codec = DirectCodec { limit_bytes: 16 };
        let mut wire = Vec::new();
        let message = WireMessage::Bytes(b"append 7".to_vec());
        block_on(codec.write_request(&protocol, &mut Cursor::new(&mut wire), message.clone())).expect("write");
        assert_eq!(&wire[..4], &8u32.to_le_bytes());
        assert_eq!(block_on(codec.read_request(&protocol, &mut Cursor::new(&wire))).expect("read"), message);

        // A length over the limit is refused with the body unread (here it is not even there).
        let oversize = 17u32.to_le_bytes();
        let read = block_on(codec.read_request(&protocol, &mut Cursor::new(&oversize[..]))).expect("no stream error");
        assert_eq!(read, WireMessage::TooLarge { size_bytes: 17 });
        // ... and never written.
        let too_long = WireMessage::Bytes(vec![0; 17]);
        assert!(block_on(codec.write_request(&protocol, &mut Cursor::new(&mut Vec::new()), too_long)).is_err());

        // The acknowledgement is one byte; a stream closed without it is none.
        let mut ack = Vec::new();
        block_on(codec.write_response(&protocol, &mut Cursor::new(&mut ack), ())).expect("write");
        assert_eq!(ack, [ACK]);
        assert!(block_on(codec.read_response(&protocol, &mut Cursor::new(&ack[..]))).is_ok());
        assert!(block_on(codec.read_response(&protocol, &mut Cursor::new(&[][..]))).is_err());
        assert!(block_on(codec.read_response(&protocol, &mut Cursor::new(&[7u8][..]))).is_err());
    }
}

//! The sync protocol: headers or blocks by height range, one block by hash, the blocks after a
//! locator, and a peer's head.
//!
//! One request and one response per stream, each a 4-byte little-endian length followed by
//! the chain codec's canonical encoding. The length is checked against
//! `limits::SYNC_REQUEST_BYTES_MAX` / `SYNC_RESPONSE_BYTES_MAX` before anything is read, so a
//! peer can make us buffer no more than that. The node serves requests (it has the chain);
//! this module only defines, bounds and carries them.

use std::io;

use chorus_chain::codec::{self, Canonical, CodecError};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

use crate::{SyncRequest, SyncResponse};

/// The stream protocol name for a chain: peers of other chains fail to negotiate it.
pub fn protocol(chain_id: &str) -> StreamProtocol {
    StreamProtocol::try_from_owned(format!("/chorus/{chain_id}/sync/1"))
        .expect("invariant: chain ids are ASCII without '/'")
}

/// A request as read off the wire. Bytes that do not decode still reach the service as `Bad`,
/// so it can report the peer: libp2p's request-response drops a failed `read_request` without
/// telling anyone.
#[derive(Debug, Clone)]
pub(crate) enum WireRequest {
    Request(SyncRequest),
    Bad(CodecError),
}

/// The request-response codec: length-prefixed canonical encodings, bounded before reading.
#[derive(Debug, Clone, Default)]
pub(crate) struct SyncCodec;

impl libp2p::request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = WireRequest;
    type Response = SyncResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<WireRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        Ok(match read_frame(io).await? {
            Ok(request) => WireRequest::Request(request),
            Err(error) => WireRequest::Bad(error),
        })
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io).await?.map_err(invalid)
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, request: WireRequest) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        match request {
            WireRequest::Request(request) => write_frame(io, &codec::encode(&request)).await,
            WireRequest::Bad(error) => Err(invalid(error)),
        }
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, response: SyncResponse) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let (_, bytes) = response.fit();
        write_frame(io, &bytes).await
    }
}

/// Reads one length-prefixed frame. The outer error is the stream's; the inner one is the
/// peer's fault: a length over `T::BYTES_MAX` (refused before reading the body) or bytes that do
/// not decode.
async fn read_frame<T: Canonical, R: AsyncRead + Unpin>(io: &mut R) -> io::Result<Result<T, CodecError>> {
    let mut length = [0u8; 4];
    io.read_exact(&mut length).await?;
    let length = u32::from_le_bytes(length);
    if length > T::BYTES_MAX {
        let what = std::any::type_name::<T>().rsplit("::").next().unwrap_or("message");
        return Ok(Err(CodecError::TooLarge { what, size_bytes: length as usize, limit_bytes: T::BYTES_MAX }));
    }
    let mut bytes = vec![0u8; length as usize];
    io.read_exact(&mut bytes).await?;
    Ok(codec::decode(&bytes))
}

async fn write_frame<W: AsyncWrite + Unpin>(io: &mut W, bytes: &[u8]) -> io::Result<()> {
    let length =
        u32::try_from(bytes.len()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame over 4 GiB"))?;
    io.write_all(&length.to_le_bytes()).await?;
    io.write_all(bytes).await?;
    io.close().await
}

fn invalid(error: CodecError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

/// The codec error inside an I/O error from this protocol, if the peer's bytes were the cause.
pub(crate) fn codec_error(error: &io::Error) -> Option<&CodecError> {
    error.get_ref().and_then(|inner| inner.downcast_ref::<CodecError>())
}

#[cfg(test)]
mod tests {
    use chorus_chain::{Height, limits};
    use futures::executor::block_on;
    use futures::io::Cursor;

    use super::*;

    #[test]
    fn frames_round_trip_and_oversize_lengths_are_refused_before_reading() {
        let request = SyncRequest::Blocks { from: Height::new(3), count: 10 };
        let mut wire = Vec::new();
        block_on(write_frame(&mut Cursor::new(&mut wire), &codec::encode(&request))).expect("write");
        let read: Result<SyncRequest, _> = block_on(read_frame(&mut Cursor::new(&wire))).expect("read");
        assert_eq!(read, Ok(request));

        let mut oversize = (limits::SYNC_REQUEST_BYTES_MAX + 1).to_le_bytes().to_vec();
        oversize.extend([0u8; 8]);
        let read = block_on(read_frame::<SyncRequest, _>(&mut Cursor::new(&oversize))).expect("no stream error");
        assert!(matches!(read, Err(CodecError::TooLarge { .. })), "{read:?}");

        let garbage = [3u8, 0, 0, 0, 0xff, 0xff, 0xff];
        let read = block_on(read_frame::<SyncRequest, _>(&mut Cursor::new(&garbage[..]))).expect("no stream error");
        assert!(matches!(read, Err(CodecError::Malformed { .. })), "{read:?}");
    }
}

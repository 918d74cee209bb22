//! The sync protocol: headers or blocks by height range, one block by hash, the blocks after a
//! locator, and a peer's head.
//!
//! One request and one response per stream, each a 4-byte little-endian length followed by
//! the chain codec's canonical encoding. The length is checked against
//! `limits::SYNC_REQUEST_BYTES_MAX` / `SYNC_RESPONSE_BYTES_MAX` before anything is read, so a
//! peer can make us buffer no more than that. The node serves requests (it has the chain);
//! this module only defines, bounds and carries them.

use std::io;

use chorus_chain::codec::{self, Canonical, CodecError, Decode, Encode};
use chorus_chain::{Block, Hash, Header, Height, limits};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

/// A request for part of a peer's canonical chain.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[bincode(crate = "chorus_chain::codec::backend")]
pub enum SyncRequest {
    /// Up to `count` consecutive canonical headers starting at `from`.
    Headers { from: Height, count: u32 },
    /// Up to `count` consecutive canonical blocks starting at `from`.
    Blocks { from: Height, count: u32 },
    /// The block with this hash, canonical or not.
    Block(Hash),
    /// Up to `SYNC_BLOCKS_PER_RESPONSE_MAX` canonical blocks after the first of these hashes on
    /// the peer's chain (newest first, exponentially spaced back): finds the fork point and
    /// fetches what follows it in one round trip.
    BlocksAfter { locator: Vec<Hash> },
    /// The peer's head.
    Status,
}

impl Canonical for SyncRequest {
    const BYTES_MAX: u32 = limits::SYNC_REQUEST_BYTES_MAX;
}

/// The answer to a [`SyncRequest`]. A range answer may be shorter than asked (the chain ends,
/// or the response byte limit is reached): the requester asks again from where it stopped.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[bincode(crate = "chorus_chain::codec::backend")]
pub enum SyncResponse {
    Headers(Vec<Header>),
    Blocks(Vec<Block>),
    Block(Option<Box<Block>>),
    Status { head: Hash, height: Height },
    Refused(Refusal),
}

impl Canonical for SyncResponse {
    const BYTES_MAX: u32 = limits::SYNC_RESPONSE_BYTES_MAX;
}

/// Why a request was not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, thiserror::Error)]
#[bincode(crate = "chorus_chain::codec::backend")]
pub enum Refusal {
    #[error("asked for {requested} items, at most {max} per request")]
    TooLarge { requested: u32, max: u32 },
    #[error("the peer has too many requests in flight")]
    Busy,
}

impl SyncRequest {
    /// Most items a response to this request may hold.
    pub fn items_max(&self) -> u32 {
        match self {
            SyncRequest::Headers { .. } => limits::SYNC_HEADERS_PER_RESPONSE_MAX,
            SyncRequest::Blocks { .. } => limits::SYNC_BLOCKS_PER_RESPONSE_MAX,
            SyncRequest::Block(_) | SyncRequest::Status => 1,
            SyncRequest::BlocksAfter { .. } => limits::SYNC_BLOCKS_PER_RESPONSE_MAX,
        }
    }

    /// Checks the request against the protocol's limits.
    pub fn check(&self) -> Result<(), Refusal> {
        let (requested, max) = match self {
            SyncRequest::Headers { count, .. } | SyncRequest::Blocks { count, .. } => (*count, self.items_max()),
            SyncRequest::BlocksAfter { locator } => {
                (u32::try_from(locator.len()).unwrap_or(u32::MAX), limits::SYNC_LOCATOR_HASHES_MAX)
            }
            SyncRequest::Block(_) | SyncRequest::Status => (1, 1),
        };
        if requested == 0 || requested > max {
            return Err(Refusal::TooLarge { requested, max });
        }
        Ok(())
    }

    pub fn kind(&self) -> &'static str {
        match self {
            SyncRequest::Headers { .. } => "headers",
            SyncRequest::Blocks { .. } => "blocks",
            SyncRequest::Block(_) => "block",
            SyncRequest::BlocksAfter { .. } => "blocks_after",
            SyncRequest::Status => "status",
        }
    }
}

impl SyncResponse {
    /// Whether this is a possible answer to `request`: the same kind, no more items than
    /// asked, consecutive heights from the requested start, the requested hash.
    pub fn answers(&self, request: &SyncRequest) -> bool {
        match (request, self) {
            (_, SyncResponse::Refused(_)) => true,
            (SyncRequest::Headers { from, count }, SyncResponse::Headers(headers)) => {
                headers.len() <= *count as usize && consecutive(*from, headers.iter().map(|header| header.height))
            }
            (SyncRequest::Blocks { from, count }, SyncResponse::Blocks(blocks)) => {
                blocks.len() <= *count as usize && consecutive(*from, blocks.iter().map(|block| block.header.height))
            }
            (SyncRequest::Block(hash), SyncResponse::Block(block)) => {
                block.as_ref().is_none_or(|block| block.hash() == *hash)
            }
            (SyncRequest::BlocksAfter { .. }, SyncResponse::Blocks(blocks)) => {
                let from = blocks.first().map_or(Height::GENESIS, |block| block.header.height);
                blocks.len() <= limits::SYNC_BLOCKS_PER_RESPONSE_MAX as usize
                    && consecutive(from, blocks.iter().map(|block| block.header.height))
            }
            (SyncRequest::Status, SyncResponse::Status { .. }) => true,
            _ => false,
        }
    }

    /// Drops trailing items until the encoding fits `SYNC_RESPONSE_BYTES_MAX`. One block always
    /// fits (`BLOCK_BYTES_MAX` is below the limit), so a range answer never becomes empty
    /// unless it was.
    pub fn fit(mut self) -> (SyncResponse, Vec<u8>) {
        loop {
            let bytes = codec::encode(&self);
            if bytes.len() <= limits::SYNC_RESPONSE_BYTES_MAX as usize {
                return (self, bytes);
            }
            let shortened = match &mut self {
                SyncResponse::Headers(items) => items.pop().is_some(),
                SyncResponse::Blocks(items) => items.pop().is_some(),
                SyncResponse::Block(block) => block.take().is_some(),
                SyncResponse::Status { .. } | SyncResponse::Refused(_) => false,
            };
            if !shortened {
                // Unreachable with the limits' compile-time relations; answer with nothing
                // rather than send a frame the peer must refuse.
                self = SyncResponse::Refused(Refusal::Busy);
            }
        }
    }
}

fn consecutive(from: Height, heights: impl Iterator<Item = Height>) -> bool {
    heights.enumerate().all(|(offset, height)| Some(height.get()) == from.get().checked_add(offset as u64))
}

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
    use chorus_chain::testing;
    use futures::executor::block_on;
    use futures::io::Cursor;

    use super::*;

    fn header(height: u64) -> Header {
        let mut header = chorus_chain::state::genesis_block(&testing::genesis(1, 1), Hash::ZERO).header;
        header.height = Height::new(height);
        header
    }

    #[test]
    fn requests_are_checked_against_the_limits() {
        let max = limits::SYNC_BLOCKS_PER_RESPONSE_MAX;
        assert_eq!(SyncRequest::Blocks { from: Height::new(1), count: max }.check(), Ok(()));
        assert_eq!(
            SyncRequest::Blocks { from: Height::new(1), count: max + 1 }.check(),
            Err(Refusal::TooLarge { requested: max + 1, max })
        );
        assert!(SyncRequest::Headers { from: Height::new(1), count: 0 }.check().is_err());
        assert_eq!(SyncRequest::Block(Hash::ZERO).check(), Ok(()));
        let locator = vec![Hash::ZERO; limits::SYNC_LOCATOR_HASHES_MAX as usize + 1];
        assert!(SyncRequest::BlocksAfter { locator }.check().is_err());
        assert!(SyncRequest::BlocksAfter { locator: vec![] }.check().is_err());
    }

    #[test]
    fn the_largest_valid_request_fits_the_request_limit() {
        let locator = vec![Hash([0xab; 32]); limits::SYNC_LOCATOR_HASHES_MAX as usize];
        let request = SyncRequest::BlocksAfter { locator };
        assert_eq!(request.check(), Ok(()));
        let bytes = codec::encode(&request);
        assert!(bytes.len() <= limits::SYNC_REQUEST_BYTES_MAX as usize, "{} bytes", bytes.len());
        assert_eq!(codec::decode::<SyncRequest>(&bytes), Ok(request));
    }

    #[test]
    fn a_response_must_answer_its_request() {
        let request = SyncRequest::Headers { from: Height::new(5), count: 2 };
        assert!(SyncResponse::Headers(vec![header(5), header(6)]).answers(&request));
        assert!(SyncResponse::Headers(vec![header(5)]).answers(&request), "shorter is allowed");
        assert!(!SyncResponse::Headers(vec![header(5), header(7)]).answers(&request), "a gap");
        assert!(!SyncResponse::Headers(vec![header(5), header(6), header(7)]).answers(&request), "too many");
        assert!(!SyncResponse::Blocks(vec![]).answers(&request), "wrong kind");
        assert!(SyncResponse::Refused(Refusal::Busy).answers(&request));
    }

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

    #[test]
    fn fit_drops_trailing_items_to_the_byte_limit() {
        let headers: Vec<Header> = (0..10).map(header).collect();
        let (fitted, bytes) = SyncResponse::Headers(headers.clone()).fit();
        assert_eq!(fitted, SyncResponse::Headers(headers));
        assert!(bytes.len() <= limits::SYNC_RESPONSE_BYTES_MAX as usize);
    }
}

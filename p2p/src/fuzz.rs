//! The properties the fuzz targets in `p2p/fuzz` check: the length-prefixed framing of the sync
//! and direct-message protocols, read from a peer's stream. Their committed corpora replay as
//! unit tests on the stable toolchain (see `chorus_chain::fuzz`).
//!
//! Whatever a reader takes off a stream, written back, gives the bytes it consumed; a length
//! over the protocol's limit is refused before its body is read.

#![allow(clippy::panic, reason = "a failed property panics: that is what the fuzzer and the replay detect")]

use futures::executor::block_on;
use futures::io::Cursor;
use libp2p::request_response::Codec as _;

use crate::direct::{self, Frame};
use crate::sync::{SyncCodec, WireRequest};

/// A sync request stream: one length-prefixed request, read as the serving side reads it.
pub fn sync_request_frame(data: &[u8]) {
    let protocol = crate::sync::protocol("chorus-test");
    let mut stream = Cursor::new(data);
    let Ok(WireRequest::Request(request)) = block_on(SyncCodec.read_request(&protocol, &mut stream)) else { return };
    let consumed = &data[..stream.position() as usize];
    let mut written = Cursor::new(Vec::new());
    block_on(SyncCodec.write_request(&protocol, &mut written, WireRequest::Request(request.clone())))
        .expect("writing to memory");
    if written.get_ref() != consumed {
        panic!("{request:?} was read from {} bytes and writes {} others", consumed.len(), written.get_ref().len());
    }
}

/// A sync response stream: one length-prefixed answer, read as the requesting side reads it.
pub fn sync_response_frame(data: &[u8]) {
    let protocol = crate::sync::protocol("chorus-test");
    let mut stream = Cursor::new(data);
    let Ok(response) = block_on(SyncCodec.read_response(&protocol, &mut stream)) else { return };
    let consumed = &data[..stream.position() as usize];
    let mut written = Cursor::new(Vec::new());
    block_on(SyncCodec.write_response(&protocol, &mut written, response)).expect("writing to memory");
    if written.get_ref() != consumed {
        panic!("an answer was read from {} bytes and writes {} others", consumed.len(), written.get_ref().len());
    }
}

/// A direct-message stream: messages one after another until the stream ends, a length over
/// the limit (given by the first two bytes, so the fuzzer tries small ones) or a cut message.
pub fn direct_frames(data: &[u8]) {
    let Some((limit, data)) = data.split_first_chunk::<2>() else { return };
    let limit_bytes = u32::from(u16::from_le_bytes(*limit));
    let mut stream = Cursor::new(data);
    let mut messages = Vec::new();
    loop {
        match block_on(direct::read_frame(&mut stream, limit_bytes)) {
            Ok(Some(Frame::Bytes(bytes))) => {
                if bytes.len() > limit_bytes as usize {
                    panic!("a message of {} bytes was read under a limit of {limit_bytes}", bytes.len());
                }
                messages.push(bytes);
            }
            Ok(Some(Frame::TooLarge { size_bytes })) if size_bytes > limit_bytes => break,
            Ok(Some(Frame::TooLarge { size_bytes })) => panic!("{size_bytes} bytes refused under {limit_bytes}"),
            Ok(None) | Err(_) => break,
        }
    }
    let written = direct::frames(&messages);
    if !data.starts_with(&written) {
        panic!(
            "{} messages were read and write {} bytes that the stream does not start with",
            messages.len(),
            written.len()
        );
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use chorus_chain::codec;
    use chorus_chain::primitives::Height;
    use chorus_chain::wire::{SyncRequest, SyncResponse};

    use super::*;

    fn corpus(target: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target)
    }

    #[test]
    fn the_framing_corpora_replay_without_a_failed_property() {
        chorus_chain::fuzz::replay_corpus(&corpus("sync_request_frame"), sync_request_frame);
        chorus_chain::fuzz::replay_corpus(&corpus("sync_response_frame"), sync_response_frame);
        chorus_chain::fuzz::replay_corpus(&corpus("direct_frames"), direct_frames);
    }

    fn framed(bytes: &[u8]) -> Vec<u8> {
        direct::frames(&[bytes.to_vec()])
    }

    /// Honest streams pass the targets. With `CHORUS_FUZZ_SEED=1` they are written into the
    /// corpora for a fuzzer to start from.
    #[test]
    fn fuzz_seeds_pass_the_framing_targets() {
        let request = framed(&codec::encode(&SyncRequest::Blocks { from: Height::new(3), count: 16 }));
        let response =
            framed(&codec::encode(&SyncResponse::Status { head: Default::default(), height: Height::new(3) }));
        let limit = 64u16.to_le_bytes();
        let direct = [&limit[..], &framed(b"first"), &framed(b""), &framed(&[7; 64]), &framed(&[8; 65])].concat();
        let seeds: [(&str, Check, &str, Vec<u8>); 3] = [
            ("sync_request_frame", sync_request_frame, "blocks", request),
            ("sync_response_frame", sync_response_frame, "status", response),
            ("direct_frames", direct_frames, "three_and_one_over", direct),
        ];
        for (target, check, name, bytes) in seeds {
            chorus_chain::fuzz::seed(&corpus(target), name, &bytes, check);
        }
    }

    type Check = fn(&[u8]);
}

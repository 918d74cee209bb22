//! The property the `engine_message` fuzz target checks (`consensus/fuzz`), and the replay of
//! its committed corpus as a unit test on the stable toolchain (see `chorus_chain::fuzz`).
//!
//! An engine message arrives by gossip (votes) or as a direct message (Raft). Bytes are refused
//! or decode to a message that encodes back to them; a vote's signature check refuses or
//! passes; a Raft message that converts to `raft`'s protobuf form converts back to itself, so
//! what a member steps is what the peer sent.

#![allow(clippy::panic, reason = "a failed property panics: that is what the fuzzer and the replay detect")]

use chorus_chain::crypto;
use chorus_chain::fuzz::canonical;
use chorus_chain::primitives::ChainId;

use crate::EngineMessage;
use crate::raft::wire::RaftMessage;

/// An engine message off the wire: gossip topic `consensus` or a direct message.
pub fn engine_message(data: &[u8]) {
    let Some(message) = canonical::<EngineMessage>(data) else { return };
    match message {
        EngineMessage::Vote(vote) => {
            let chain_id = ChainId::new("chorus-test").expect("invariant: a valid chain id literal");
            let _ = crypto::verify(&vote.voter, vote.own_signing_hash(&chain_id).as_bytes(), &vote.signature);
        }
        EngineMessage::Raft(message) => {
            let Ok(pb) = message.to_pb() else { return };
            match RaftMessage::from_pb(&pb) {
                Ok(back) if back == *message => {}
                other => panic!("{message:?} converts to protobuf and back as {other:?}"),
            }
        }
        // The engine compares each member with its address; decoding is all there is to it.
        EngineMessage::RaftRoster(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use chorus_chain::codec;
    use chorus_chain::primitives::{Hash, Height};
    use chorus_chain::testing::{genesis, key};
    use chorus_chain::tx::{Checkpoint, Vote};

    use super::*;

    const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/engine_message");

    #[test]
    fn the_engine_message_corpus_replays_without_a_failed_property() {
        chorus_chain::fuzz::replay_corpus(Path::new(CORPUS), engine_message);
    }

    /// A vote and a Raft append: honest messages pass the target's checks. With
    /// `CHORUS_FUZZ_SEED=1` they are written into the corpus for a fuzzer to start from.
    #[test]
    fn fuzz_seeds_pass_the_engine_message_target() {
        let chain_id = genesis(1, 1).chain_id;
        let checkpoint =
            |height: u64| Checkpoint { height: Height::new(height), slot: height, hash: Hash([height as u8; 32]) };
        let vote = Vote::signed(&chain_id, &key(1), checkpoint(0), checkpoint(8));
        let append = crate::raft::wire::tests::message(Vec::new());
        let seeds = [("vote", EngineMessage::Vote(vote)), ("raft_append", EngineMessage::Raft(Box::new(append)))];
        for (name, message) in seeds {
            chorus_chain::fuzz::seed(Path::new(CORPUS), name, &codec::encode(&message), engine_message);
        }
    }
}

//! Direct engine messages through the node, as both hosts run it: what an engine sends one
//! peer becomes an [`Effect::Direct`] carrying the message's canonical bytes, what arrives that
//! way reaches the engine as from the peer the transport named, and bytes that do not decode,
//! or a message that travels the other route (a vote sent directly, a Raft message gossiped),
//! are the sender's fault.

use chorus_chain::codec;
use chorus_chain::genesis::Genesis;
use chorus_chain::header::Header;
use chorus_chain::primitives::{Hash, Height, Timestamp};
use chorus_chain::testing;
use chorus_chain::tx::{Checkpoint, Vote};
use chorus_chain::wire::{Topic, Verdict};
use chorus_consensus::raft::membership::RosterNotice;
use chorus_consensus::{
    Action, ChainRead, Engine, EngineError, EngineMessage, EngineOptions, Event, Misbehaviour, Outbound, PeerId,
    new_engine,
};
use chorus_node_core::{Driver, Effect, Node};
use chorus_store::Store;

/// PoW, except that every engine message is sent back to its sender alone.
#[derive(Debug)]
struct Echo {
    inner: Box<dyn Engine>,
}

impl Engine for Echo {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn step(
        &mut self,
        chain: &dyn ChainRead,
        now: Timestamp,
        event: Event,
        actions: &mut Vec<Action>,
    ) -> Result<(), EngineError> {
        match event {
            Event::Message { from, message } => {
                actions.push(Action::Send { to: from, message: Outbound::Message(message) });
                Ok(())
            }
            event => self.inner.step(chain, now, event, actions),
        }
    }

    fn check_header_alone(&self, header: &Header) -> Result<(), EngineError> {
        self.inner.check_header_alone(header)
    }
}

fn echo_node(genesis: &Genesis, dir: &std::path::Path) -> Node {
    let store = Store::open(dir, genesis).expect("store");
    let inner = new_engine(genesis, EngineOptions::default()).expect("engine");
    let mut node = Node::new(Driver::new(store, Box::new(Echo { inner })));
    node.start(genesis.genesis_time).expect("starts");
    node.take_effects();
    node
}

#[test]
fn an_engines_message_to_one_peer_goes_direct_and_direct_bytes_reach_the_engine_from_their_sender() {
    let genesis = testing::genesis(2, 1_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = echo_node(&genesis, dir.path());
    let now = genesis.genesis_time;
    let peer = PeerId::new("12D3KooWPeer");

    let roster = RosterNotice { conf_index: 3, members: Vec::new() };
    let bytes = codec::encode(&EngineMessage::RaftRoster(Box::new(roster)));
    node.on_direct(now, &peer, &bytes).expect("handled");
    let effects = node.take_effects();
    let direct: Vec<_> = effects.iter().filter(|effect| matches!(effect, Effect::Direct { .. })).collect();
    assert_eq!(direct.len(), 1, "{effects:?}");
    assert!(
        matches!(direct[0], Effect::Direct { peer: to, data } if *to == peer && *data == bytes),
        "the echo goes to its sender alone, as the message's canonical bytes: {effects:?}"
    );
    assert!(!effects.iter().any(|effect| matches!(effect, Effect::Publish { .. })), "nothing is gossiped");

    node.on_direct(now, &peer, &[0xff; 12]).expect("handled");
    let effects = node.take_effects();
    assert!(
        effects.iter().any(|effect| matches!(
            effect,
            Effect::Report { peer: blamed, penalty } if *blamed == peer && penalty.misbehaviour == Misbehaviour::Undecodable
        )),
        "undecodable bytes are the sender's fault: {effects:?}"
    );
    assert!(!effects.iter().any(|effect| matches!(effect, Effect::Direct { .. })), "{effects:?}");
}

/// Votes travel by gossip, whose seen-cache drops a replay at every hop; sent directly, every
/// replay would cost a signature check. Raft's messages go to one member; gossiped, they would
/// reach the engine as from their relayer.
#[test]
fn a_vote_sent_directly_and_a_raft_message_gossiped_are_the_senders_fault_and_reach_no_engine() {
    let genesis = testing::genesis(2, 1_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = echo_node(&genesis, dir.path());
    let now = genesis.genesis_time;
    let peer = PeerId::new("12D3KooWPeer");

    let checkpoint = |height: u64| Checkpoint { height: Height::new(height), slot: height, hash: Hash::digest(b"b") };
    let vote = Vote::signed(&genesis.chain_id, &testing::key(0), checkpoint(0), checkpoint(1));
    let vote = codec::encode(&EngineMessage::Vote(vote));
    for _ in 0..3 {
        node.on_direct(now, &peer, &vote).expect("handled");
        let effects = node.take_effects();
        assert!(
            effects.iter().any(|effect| matches!(
                effect,
                Effect::Report { peer: blamed, penalty } if *blamed == peer
                    && penalty.misbehaviour == Misbehaviour::Invalid
                    && penalty.reason.contains("travels by gossip")
            )),
            "a vote sent directly is the sender's fault, each time: {effects:?}"
        );
        assert!(!effects.iter().any(|effect| matches!(effect, Effect::Direct { .. })), "no engine saw it: {effects:?}");
    }

    let roster =
        codec::encode(&EngineMessage::RaftRoster(Box::new(RosterNotice { conf_index: 3, members: Vec::new() })));
    let verdict = node.on_gossip(now, &peer, Topic::Consensus, &roster).expect("handled");
    assert_eq!(verdict, Verdict::Reject(Misbehaviour::Invalid), "a gossiped Raft message is refused, not relayed");
    let effects = node.take_effects();
    assert!(!effects.iter().any(|effect| matches!(effect, Effect::Direct { .. })), "no engine saw it: {effects:?}");
}

//! Delegated proof of stake's chain rules as the state machine enforces them: a block's slot
//! and producer, the index of delegates and their weights, and schedule changes.

use chorus_chain::block::Block;
use chorus_chain::dpos::{DposState, Schedule};
use chorus_chain::genesis::{DposConfig, EngineConfig, Genesis};
use chorus_chain::header::{Header, Seal};
use chorus_chain::primitives::{Amount, Hash, Height};
use chorus_chain::state::memory::MemoryState;
use chorus_chain::state::{self, BlockError, BlockTemplate};
use chorus_chain::testing::{self, key};
use chorus_chain::tx::{Checkpoint, Evidence, SignedTransaction, TxKind, Vote};
use chorus_chain::{Address, slots};

const ACCOUNTS: u32 = 8;

struct Chain {
    genesis: Genesis,
    mem: MemoryState,
    head: Header,
}

impl Chain {
    /// Genesis delegates 0, 1 and 2; `producers` scheduled.
    fn new(producers: u32) -> Chain {
        let genesis = testing::dpos_genesis(ACCOUNTS, 10_000, 3, producers);
        let (mem, block) = MemoryState::from_genesis(&genesis).unwrap();
        Chain { genesis, mem, head: block.header }
    }

    fn config(&self) -> &DposConfig {
        match self.genesis.engine_at(Height::GENESIS) {
            EngineConfig::Dpos(config) => config,
            other => panic!("a DPoS genesis, got {}", other.name()),
        }
    }

    fn dpos(&self) -> DposState {
        state::read_dpos(&self.mem).unwrap().expect("a DPoS state")
    }

    fn slot(&self) -> u64 {
        if self.head.height == Height::GENESIS {
            0
        } else {
            slots::slot_of(&self.genesis, self.config().slot_ms, self.head.timestamp).unwrap()
        }
    }

    /// A block for `slot` by account `producer`, signed by its key, carrying `votes`.
    fn block(
        &self,
        slot: u64,
        producer: u32,
        txs: Vec<SignedTransaction>,
        votes: Vec<Vote>,
    ) -> Result<Block, BlockError> {
        let template = BlockTemplate {
            txs,
            votes,
            proposer: key(producer).address(),
            timestamp: slots::slot_start(&self.genesis, self.config().slot_ms, slot),
        };
        let mut block = state::build_block(&self.mem, &self.genesis, &self.head, template)?;
        block.header = Header { seal: Seal::None, ..block.header }.sign(&self.genesis.chain_id, slot, &key(producer));
        Ok(block)
    }

    fn apply(&mut self, block: &Block) -> Result<(), BlockError> {
        let outcome = state::apply_block(&self.mem, &self.genesis, &self.head, block)?;
        self.mem.commit_outcome(&outcome);
        self.head = block.header.clone();
        Ok(())
    }

    /// The producer of `slot` on the head.
    fn producer(&self, slot: u64) -> u32 {
        let (schedule, _) = self.dpos().schedule_for(self.slot(), slot);
        testing::index_of(&schedule.producer(slot).unwrap(), ACCOUNTS).unwrap()
    }

    /// Every scheduled producer's vote from the justified checkpoint to the head.
    fn votes(&self) -> Vec<Vote> {
        if self.head.height == Height::GENESIS {
            return Vec::new();
        }
        let dpos = self.dpos();
        let head = Checkpoint { height: self.head.height, slot: self.slot(), hash: self.head.hash() };
        let chain_id = &self.genesis.chain_id;
        let keys = dpos.active.producers.iter().map(|address| key(testing::index_of(address, ACCOUNTS).unwrap()));
        keys.map(|key| Vote::signed(chain_id, &key, dpos.ffg.justified, head)).collect()
    }

    /// The next block, in the next slot, with `txs` and every producer's vote for the head.
    fn push(&mut self, txs: Vec<SignedTransaction>) -> Block {
        let slot = self.slot() + 1;
        let block = self.block(slot, self.producer(slot), txs, self.votes()).unwrap();
        self.apply(&block).unwrap();
        block
    }

    fn tx(&self, index: u32, kind: TxKind) -> SignedTransaction {
        let nonce = state::read_account(&self.mem, &key(index).address()).unwrap().nonce;
        testing::signed(&self.genesis, &key(index), nonce, kind)
    }

    fn weight(&self, index: u32) -> Option<Amount> {
        let address = key(index).address();
        state::read_delegates(&self.mem).unwrap().0.iter().find(|(listed, _)| *listed == address).map(|(_, w)| *w)
    }
}

/// Two headers `offender` signed for one slot, at the head's height.
fn double_proposal(chain: &Chain, offender: u32) -> Evidence {
    let header = |byte: u8| {
        Header {
            parent: Hash([byte; 32]),
            height: chain.head.height,
            timestamp: chain.head.timestamp,
            txs_root: Hash::ZERO,
            votes_root: Hash::ZERO,
            state_root: Hash::ZERO,
            proposer: key(offender).address(),
            seal: Seal::None,
        }
        .sign(&chain.genesis.chain_id, 9, &key(offender))
    };
    Evidence::DoubleProposal { first: header(1), second: header(2) }
}

fn sorted(indexes: &[u32]) -> Vec<Address> {
    let mut addresses: Vec<Address> = indexes.iter().map(|index| key(*index).address()).collect();
    addresses.sort_unstable();
    addresses
}

#[test]
fn a_block_out_of_its_producers_slot_is_refused_with_its_reason() {
    let mut chain = Chain::new(21);
    assert_eq!(chain.dpos().active.producers, sorted(&[0, 1, 2]), "fewer delegates than producers: all of them");
    let right = chain.producer(1);
    let wrong = (0..3).find(|index| *index != right).unwrap();
    let got = chain.block(1, wrong, vec![], vec![]);
    assert_eq!(
        got.map(|_| ()),
        Err(BlockError::NotProposer {
            height: Height::new(1),
            slot: 1,
            expected: Some(key(right).address()),
            got: key(wrong).address()
        })
    );
    // A missed slot is skipped: slot 3's producer may build on genesis directly.
    let block = chain.block(3, chain.producer(3), vec![], vec![]).unwrap();
    chain.apply(&block).unwrap();
    // A stranger is never a producer.
    assert!(matches!(chain.block(4, 7, vec![], vec![]), Err(BlockError::NotProposer { .. })));
}

#[test]
fn weights_follow_stakes_and_slashing_and_a_slashed_delegate_leaves_the_ranking() {
    let mut chain = Chain::new(3);
    chain.push(vec![
        chain.tx(5, TxKind::RegisterDelegate),
        chain.tx(6, TxKind::Stake { amount: Amount::new(500) }),
        chain.tx(7, TxKind::Stake { amount: Amount::new(300) }),
    ]);
    assert_eq!(chain.weight(5), Some(Amount::ZERO), "a registered delegate is listed before any vote");
    chain.push(vec![
        chain.tx(6, TxKind::Vote { delegates: vec![key(5).address(), key(1).address()] }),
        chain.tx(7, TxKind::Vote { delegates: vec![key(2).address()] }),
    ]);
    assert_eq!(
        (chain.weight(5), chain.weight(1), chain.weight(2)),
        (Some(Amount::new(500)), Some(Amount::new(500)), Some(Amount::new(300)))
    );
    let config = chain.config().clone();
    assert_eq!(state::dpos_ranking(&chain.mem, &config).unwrap(), sorted(&[1, 2, 5]), "0 weighs nothing");
    chain.push(vec![chain.tx(6, TxKind::Unstake { amount: Amount::new(100) })]);
    assert_eq!(chain.weight(5), Some(Amount::new(400)), "weights follow the voter's stake");

    // Delegate 5 signs two headers for one slot: slashed, out of the ranking whatever its weight.
    chain.push(vec![chain.tx(5, TxKind::Stake { amount: Amount::new(100) })]);
    chain.push(vec![chain.tx(4, TxKind::Evidence(Box::new(double_proposal(&chain, 5))))]);
    assert_eq!(chain.weight(5), Some(Amount::new(400)), "its voters' stakes are theirs, not slashed");
    assert_eq!(state::dpos_ranking(&chain.mem, &config).unwrap(), sorted(&[0, 1, 2]));
    // Slashing a voter lowers the weight of what it approves.
    chain.push(vec![chain.tx(4, TxKind::Evidence(Box::new(double_proposal(&chain, 6))))]);
    assert_eq!(chain.weight(1), Some(Amount::new(200)), "half of 400 slashed");
}

#[test]
fn a_schedule_change_applies_at_the_round_boundary_after_its_block_is_irreversible() {
    let mut chain = Chain::new(3);
    let stake = chain.tx(6, TxKind::Stake { amount: Amount::new(500) });
    let mut vote = chain.tx(6, TxKind::Vote { delegates: vec![key(5).address()] });
    vote = testing::signed(&chain.genesis, &key(6), stake.tx.nonce + 1, vote.tx.kind);
    let proposed = chain.push(vec![chain.tx(5, TxKind::RegisterDelegate), stake, vote]);
    // 5 weighs 500; the genesis delegates weigh nothing: the two lower addresses stay.
    let mut new = sorted(&[0, 1, 2]);
    new.pop();
    new.push(key(5).address());
    new.sort_unstable();
    let pending = chain.dpos().pending.expect("the new ranking is pending");
    assert_eq!((pending.producers.clone(), pending.proposed_at), (new.clone(), proposed.header.height));
    let dropped = sorted(&[0, 1, 2]).into_iter().find(|address| !new.contains(address)).unwrap();
    // Blocks go on under the old schedule until the proposing block is irreversible and a round
    // boundary is passed; then every block is from the new schedule.
    let mut switched = None;
    while switched.is_none() {
        let before = chain.dpos();
        let slot = chain.slot() + 1;
        chain.push(vec![]);
        let after = chain.dpos();
        if after.active.version == 1 {
            assert!(before.irreversible() >= proposed.header.height, "irreversible first");
            assert_eq!(slot, before.active.round_start_after(slot - 1), "at a round boundary (no slot missed)");
            assert_eq!(after.active, Schedule { version: 1, start_slot: slot, producers: new.clone() });
            switched = Some(chain.head.height);
        }
        assert!(chain.head.height.get() < 30, "the switch came");
    }
    for _ in 0..6 {
        chain.push(vec![]);
        assert_ne!(chain.head.proposer, dropped, "the lightest genesis delegate is out of the schedule");
    }
    assert!(chain.dpos().irreversible() > switched.unwrap(), "irreversibility goes on under the new schedule");
}

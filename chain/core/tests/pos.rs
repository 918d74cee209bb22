//! Proof of stake's chain rules as the state machine enforces them: a block's slot, its
//! proposer, its seal, and the validator set each epoch's first block computes.

use chorus_chain::block::Block;
use chorus_chain::genesis::{EngineConfig, Genesis, PosConfig};
use chorus_chain::header::{Header, Seal};
use chorus_chain::pos::{self, ValidatorSet};
use chorus_chain::primitives::{Amount, Hash, Height, Timestamp};
use chorus_chain::state::memory::MemoryState;
use chorus_chain::state::{self, BlockError, BlockTemplate};
use chorus_chain::testing::{self, key};
use chorus_chain::tx::{Checkpoint, Evidence, SignedTransaction, TxKind, Vote};

const ACCOUNTS: u32 = 6;

struct Chain {
    genesis: Genesis,
    mem: MemoryState,
    head: Header,
}

impl Chain {
    /// Validators 0..3 with stakes 100, 200 and 300; epochs of 4 slots.
    fn new() -> Chain {
        let genesis = testing::pos_genesis(ACCOUNTS, 10_000, &[100, 200, 300], 4);
        let (mem, block) = MemoryState::from_genesis(&genesis).unwrap();
        Chain { genesis, mem, head: block.header }
    }

    fn config(&self) -> &PosConfig {
        match self.genesis.engine_at(Height::GENESIS) {
            EngineConfig::Pos(config) => config,
            other => panic!("a PoS genesis, got {}", other.name()),
        }
    }

    fn set(&self) -> ValidatorSet {
        state::read_validators(&self.mem).unwrap().expect("a PoS state has a set")
    }

    fn slot(&self) -> u64 {
        if self.head.height == Height::GENESIS {
            0
        } else {
            pos::slot_of(&self.genesis, self.config(), self.head.timestamp).unwrap()
        }
    }

    /// A block for `slot` by `proposer` (an account index), signed by `signer`'s key.
    fn block(&self, slot: u64, proposer: u32, signer: u32, txs: Vec<SignedTransaction>) -> Result<Block, BlockError> {
        let template = BlockTemplate {
            txs,
            votes: vec![],
            proposer: key(proposer).address(),
            timestamp: pos::slot_start(&self.genesis, self.config(), slot),
        };
        let mut block = state::build_block(&self.mem, &self.genesis, &self.head, template)?;
        block.header = Header { seal: Seal::None, ..block.header }.sign(&self.genesis.chain_id, slot, &key(signer));
        Ok(block)
    }

    fn apply(&mut self, block: &Block) -> Result<(), BlockError> {
        let outcome = state::apply_block(&self.mem, &self.genesis, &self.head, block)?;
        self.mem.commit_outcome(&outcome);
        self.head = block.header.clone();
        Ok(())
    }

    /// The next block by the drawn proposer of the next slot, with `txs`.
    fn push(&mut self, txs: Vec<SignedTransaction>) -> Block {
        let slot = self.slot() + 1;
        let set = self.set_for(slot);
        let proposer = set.proposer(slot).unwrap();
        let index = testing::index_of(&proposer, ACCOUNTS).unwrap();
        let block = self.block(slot, index, index, txs).unwrap();
        self.apply(&block).unwrap();
        block
    }

    /// The set a block for `slot` is checked against (the next epoch's when `slot` starts one).
    fn set_for(&self, slot: u64) -> ValidatorSet {
        let current = self.set();
        if pos::epoch_of(self.config(), slot) == current.epoch {
            return current;
        }
        // Build on a copy to see the set the epoch's first block computes.
        let mut probe = Chain { genesis: self.genesis.clone(), mem: self.mem.clone(), head: self.head.clone() };
        for index in 0..ACCOUNTS {
            if let Ok(block) = probe.block(slot, index, index, vec![]) {
                probe.apply(&block).unwrap();
                return probe.set();
            }
        }
        panic!("no account may propose slot {slot}");
    }

    fn tx(&self, index: u32, kind: TxKind) -> SignedTransaction {
        let nonce = state::read_account(&self.mem, &key(index).address()).unwrap().nonce;
        testing::signed(&self.genesis, &key(index), nonce, kind)
    }
}

fn addresses(set: &ValidatorSet) -> Vec<u32> {
    let mut indexes: Vec<u32> =
        set.validators.iter().map(|(address, _)| testing::index_of(address, ACCOUNTS).unwrap()).collect();
    indexes.sort_unstable();
    indexes
}

#[test]
fn a_block_needs_its_slots_proposer_a_later_slot_and_a_seal_for_that_slot() {
    let mut chain = Chain::new();
    assert_eq!(addresses(&chain.set()), vec![0, 1, 2], "epoch 0 is the genesis set");
    chain.push(vec![]);
    let slot = chain.slot() + 1;
    let proposer = testing::index_of(&chain.set().proposer(slot).unwrap(), ACCOUNTS).unwrap();
    let other = (proposer + 1) % 3;

    match chain.block(slot, other, other, vec![]) {
        Err(BlockError::NotProposer { slot: got, got: who, .. }) => {
            assert_eq!((got, who), (slot, key(other).address()))
        }
        other => panic!("expected the wrong proposer to be refused, got {other:?}"),
    }
    // The right proposer, but a slot that is not after the parent's.
    let parent_slot = chain.slot();
    let parent_proposer = testing::index_of(&chain.head.proposer, ACCOUNTS).unwrap();
    assert!(matches!(
        chain.block(parent_slot, parent_proposer, parent_proposer, vec![]),
        Err(BlockError::SlotNotAfterParent { .. })
    ));
    // A seal for another slot, or none.
    let good = chain.block(slot, proposer, proposer, vec![]).unwrap();
    let mut resealed = good.clone();
    resealed.header =
        Header { seal: Seal::None, ..good.header.clone() }.sign(&chain.genesis.chain_id, slot + 1, &key(proposer));
    let mut unsealed = good.clone();
    unsealed.header.seal = Seal::None;
    for bad in [resealed, unsealed] {
        assert!(matches!(chain.apply(&bad), Err(BlockError::SealSlot { .. })), "{:?}", bad.header.seal);
    }
    // A timestamp between slots.
    let mut between = good.clone();
    between.header.timestamp = Timestamp::from_millis(good.header.timestamp.as_millis() + 1);
    assert!(matches!(chain.apply(&between), Err(BlockError::Slot { .. })));
    // Signed by another key than the proposer's: the signature check refuses it.
    let mut forged = good.clone();
    forged.header = Header { seal: Seal::None, ..good.header.clone() };
    forged.header.seal = Header { proposer: key(other).address(), ..forged.header.clone() }
        .sign(&chain.genesis.chain_id, slot, &key(other))
        .seal;
    assert!(matches!(chain.apply(&forged), Err(BlockError::Shape(_))));
    chain.apply(&good).unwrap();
}

#[test]
fn each_epoch_takes_its_set_from_the_state_its_first_block_builds_on() {
    let mut chain = Chain::new();
    // In epoch 0: account 4 stakes above the minimum, account 5 below it, validator 0 is
    // slashed, validator 1 unstakes everything.
    let chain_id = chain.genesis.chain_id.clone();
    let source = Checkpoint { height: Height::GENESIS, slot: 0, hash: Hash([9; 32]) };
    let evidence = Evidence::DoubleVote {
        first: Vote::signed(
            &chain_id,
            &key(0),
            source,
            Checkpoint { height: Height::new(1), slot: 1, hash: Hash([1; 32]) },
        ),
        second: Vote::signed(
            &chain_id,
            &key(0),
            source,
            Checkpoint { height: Height::new(1), slot: 1, hash: Hash([2; 32]) },
        ),
    };
    chain.push(vec![
        chain.tx(4, TxKind::Stake { amount: Amount::new(150) }),
        chain.tx(5, TxKind::Stake { amount: Amount::new(99) }),
        chain.tx(3, TxKind::Evidence(Box::new(evidence))),
        chain.tx(1, TxKind::Unstake { amount: Amount::new(200) }),
    ]);
    assert_eq!(addresses(&chain.set()), vec![0, 1, 2], "changes wait for the next epoch");
    let epoch_zero = chain.set();
    while chain.set().epoch == 0 {
        chain.push(vec![]);
    }
    let set = chain.set();
    assert_eq!(addresses(&set), vec![2, 4], "slashed, unstaked and below-minimum accounts are out");
    assert_eq!(set.total, Amount::new(450));
    assert_ne!(set.seed, epoch_zero.seed, "each epoch has its own seed");
}

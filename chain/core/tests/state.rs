//! The state machine: every transaction kind, fees and rewards, unbonding, vote weights,
//! slashing, and whole-block rejection, run on the in-memory state.

use std::collections::BTreeMap;

use chorus_chain::block::Block;
use chorus_chain::crypto::{Address, SecretKey};
use chorus_chain::genesis::Genesis;
use chorus_chain::header::{Header, Seal};
use chorus_chain::primitives::{Amount, Hash, Height, Timestamp};
use chorus_chain::state::memory::MemoryState;
use chorus_chain::state::{self, Account, BlockError, BlockTemplate, StateKey, TxRejection};
use chorus_chain::testing::{self, key};
use chorus_chain::tx::{Checkpoint, Evidence, SignedTransaction, TxError, TxKind, Vote};

struct Chain {
    genesis: Genesis,
    mem: MemoryState,
    head: Header,
}

impl Chain {
    fn new(n_accounts: u32) -> Chain {
        let genesis = testing::genesis(n_accounts, 1_000);
        let (mem, block) = MemoryState::from_genesis(&genesis).unwrap();
        Chain { genesis, mem, head: block.header }
    }

    fn block_with(&self, txs: Vec<SignedTransaction>) -> Result<Block, BlockError> {
        let template = BlockTemplate {
            txs,
            votes: vec![],
            proposer: key(9).address(),
            timestamp: Timestamp::from_millis(self.head.timestamp.as_millis() + 1_000),
        };
        state::build_block(&self.mem, &self.genesis, &self.head, template)
    }

    /// Builds, validates and applies a block; returns the error if it is invalid.
    fn push(&mut self, txs: Vec<SignedTransaction>) -> Result<Block, BlockError> {
        let block = self.block_with(txs)?;
        let outcome = state::apply_block(&self.mem, &self.genesis, &self.head, &block)?;
        self.mem.commit_outcome(&outcome);
        self.head = block.header.clone();
        Ok(block)
    }

    fn account(&self, index: u32) -> Account {
        state::read_account(&self.mem, &key(index).address()).unwrap()
    }

    fn nonce(&self, index: u32) -> u64 {
        self.account(index).nonce
    }

    fn tx(&self, index: u32, kind: TxKind) -> SignedTransaction {
        testing::signed(&self.genesis, &key(index), self.nonce(index), kind)
    }

    fn votes_received(&self, index: u32) -> Amount {
        state::read_delegate(&self.mem, &key(index).address()).unwrap().expect("a delegate").votes_received
    }
}

fn rejection(result: Result<Block, BlockError>) -> TxRejection {
    match result {
        Err(BlockError::Tx { rejection, .. }) => rejection,
        other => panic!("expected a transaction rejection, got {other:?}"),
    }
}

#[test]
fn transfer_moves_funds_and_pays_the_proposer() {
    let mut chain = Chain::new(3);
    let tx = chain.tx(0, TxKind::Transfer { to: key(1).address(), amount: Amount::new(100) });
    chain.push(vec![tx]).unwrap();
    assert_eq!(chain.account(0).balance, Amount::new(899));
    assert_eq!(chain.account(0).nonce, 1);
    assert_eq!(chain.account(1).balance, Amount::new(1_100));
    assert_eq!(chain.account(9).balance, Amount::new(51), "reward 50 + fee 1");
    chain.push(vec![]).unwrap();
    assert_eq!(chain.account(9).balance, Amount::new(101), "an empty block still pays the reward");
}

#[test]
fn nonce_fee_and_balance_rules() {
    let mut chain = Chain::new(3);
    let genesis = chain.genesis.clone();
    let transfer = |amount| TxKind::Transfer { to: key(1).address(), amount: Amount::new(amount) };
    let wrong_nonce = testing::signed(&genesis, &key(0), 5, transfer(1));
    assert_eq!(rejection(chain.push(vec![wrong_nonce])), TxRejection::BadNonce { expected: 0, got: 5 });
    let too_much = chain.tx(0, transfer(1_000));
    assert_eq!(
        rejection(chain.push(vec![too_much])),
        TxRejection::InsufficientBalance { needed: Amount::new(1_001), available: Amount::new(1_000) }
    );
    let mut free = chain.tx(0, transfer(1)).tx;
    free.fee = Amount::ZERO;
    let free = free.sign(&key(0));
    assert_eq!(rejection(chain.push(vec![free])), TxRejection::FeeTooLow { min: Amount::new(1), got: Amount::ZERO });
    // Overflow of amount + fee is a rejection, not a panic.
    let mut huge = chain.tx(0, transfer(1)).tx;
    huge.kind = TxKind::Transfer { to: key(1).address(), amount: Amount::MAX };
    let huge = huge.sign(&key(0));
    assert_eq!(rejection(chain.push(vec![huge])), TxRejection::Overflow);
    // Nothing of the rejected blocks stuck.
    assert_eq!(chain.account(0), Account { balance: Amount::new(1_000), ..Account::default() });
}

#[test]
fn one_invalid_transaction_invalidates_the_block() {
    let chain = Chain::new(3);
    let good = chain.tx(0, TxKind::Transfer { to: key(1).address(), amount: Amount::new(10) });
    let bad = chain.tx(2, TxKind::Unstake { amount: Amount::new(1) });
    let block = {
        let mut block = chain.block_with(vec![good.clone()]).unwrap();
        block.body.txs.push(bad);
        block.header.txs_root = block.body.txs_root();
        block
    };
    match state::apply_block(&chain.mem, &chain.genesis, &chain.head, &block) {
        Err(BlockError::Tx { index: 1, rejection: TxRejection::InsufficientStake { .. }, .. }) => {}
        other => panic!("expected the second transaction to be rejected, got {other:?}"),
    }
    assert_eq!(chain.account(0).balance, Amount::new(1_000));
}

/// A proposer's build leaves out what the state rejects, in one pass, and what it leaves out
/// changed nothing: the fee an unstake with nothing staked would have charged is not taken, a
/// vote for a non-delegate changes no weights.
#[test]
fn a_proposal_leaves_out_rejected_transactions_and_nothing_of_them_remains() {
    let mut chain = Chain::new(4);
    let pay = |chain: &Chain, from: u32, nonce: u64| {
        testing::signed(
            &chain.genesis,
            &key(from),
            nonce,
            TxKind::Transfer { to: key(3).address(), amount: Amount::new(10) },
        )
    };
    let txs = vec![
        pay(&chain, 0, 0),
        testing::signed(&chain.genesis, &key(1), 0, TxKind::Unstake { amount: Amount::new(1) }),
        pay(&chain, 1, 1), // after its sender's rejected nonce: left out, not reported
        testing::signed(&chain.genesis, &key(2), 0, TxKind::Vote { delegates: vec![key(0).address()] }),
        pay(&chain, 0, 1),
    ];
    let template = BlockTemplate {
        txs: txs.clone(),
        votes: vec![],
        proposer: key(9).address(),
        timestamp: Timestamp::from_millis(chain.head.timestamp.as_millis() + 1_000),
    };
    let proposal = state::propose_block(&chain.mem, &chain.genesis, &chain.head, template).unwrap();
    assert_eq!(proposal.block.body.txs, vec![txs[0].clone(), txs[4].clone()]);
    let rejected: Vec<(u64, String)> =
        proposal.rejected.iter().map(|(tx, rejection)| (tx.tx.nonce, rejection.to_string())).collect();
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    assert!(matches!(proposal.rejected[0].1, TxRejection::InsufficientStake { .. }));
    assert!(matches!(proposal.rejected[1].1, TxRejection::NotDelegate { .. }));
    // The block is exactly what the state machine computes for its body.
    let outcome = state::apply_block(&chain.mem, &chain.genesis, &chain.head, &proposal.block).unwrap();
    assert_eq!(outcome.state_root, proposal.block.header.state_root);
    chain.mem.commit_outcome(&outcome);
    chain.head = proposal.block.header.clone();
    assert_eq!((chain.nonce(1), chain.account(1).balance), (0, Amount::new(1_000)), "no fee taken");
    assert_eq!(chain.nonce(2), 0);
    assert_eq!(chain.account(3).balance, Amount::new(1_020));
}

#[test]
fn signatures_the_node_checked_before_are_skipped_and_only_those() {
    let chain = Chain::new(3);
    let first = chain.tx(0, TxKind::Transfer { to: key(2).address(), amount: Amount::new(10) });
    let second = chain.tx(1, TxKind::Transfer { to: key(2).address(), amount: Amount::new(10) });
    let mut block = chain.block_with(vec![first, second]).unwrap();
    block.body.txs[1].signature.0[3] ^= 0x40;
    block.header.txs_root = block.body.txs_root();
    let [first, bad] = [block.body.txs[0].hash(), block.body.txs[1].hash()];
    let apply = |verified: &(dyn Fn(&Hash) -> bool + Sync)| {
        state::apply_block_with(&chain.mem, &chain.genesis, &chain.head, &block, verified)
    };
    let signature_error = |result: Result<_, BlockError>| {
        matches!(
            result,
            Err(BlockError::Shape(chorus_chain::block::BlockShapeError::Tx {
                index: 1,
                error: TxError::Signature(_),
                ..
            }))
        )
    };
    // Named as checked (as only a mempool's own transactions are), a signature is not checked
    // again: here that lets a broken one through, which is why only the mempool names them.
    assert!(apply(&|hash| *hash == bad).is_ok());
    // Every other signature still is.
    assert!(signature_error(apply(&|hash| *hash == first)));
    assert!(signature_error(apply(&chorus_chain::block::none_verified)));
    assert!(signature_error(state::apply_block(&chain.mem, &chain.genesis, &chain.head, &block)));
}

#[test]
fn bad_signature_and_roots_are_caught() {
    let chain = Chain::new(3);
    let tx = chain.tx(0, TxKind::Transfer { to: key(1).address(), amount: Amount::new(10) });
    let mut block = chain.block_with(vec![tx]).unwrap();
    block.body.txs[0].signature.0[3] ^= 0x40;
    block.header.txs_root = block.body.txs_root();
    match state::apply_block(&chain.mem, &chain.genesis, &chain.head, &block) {
        Err(BlockError::Shape(chorus_chain::block::BlockShapeError::Tx {
            index: 0,
            error: TxError::Signature(_),
            ..
        })) => {}
        other => panic!("expected a signature error, got {other:?}"),
    }
    let mut block = chain.block_with(vec![]).unwrap();
    block.header.txs_root = Hash([3; 32]);
    assert!(matches!(
        state::apply_block(&chain.mem, &chain.genesis, &chain.head, &block),
        Err(BlockError::Shape(chorus_chain::block::BlockShapeError::TxsRoot { .. }))
    ));
    let mut block = chain.block_with(vec![]).unwrap();
    block.header.parent = Hash([4; 32]);
    assert!(matches!(
        state::apply_block(&chain.mem, &chain.genesis, &chain.head, &block),
        Err(BlockError::WrongParent { .. })
    ));
}

#[test]
fn stake_unstake_and_unbonding_release_at_the_right_height() {
    let mut chain = Chain::new(3);
    chain.push(vec![chain.tx(0, TxKind::Stake { amount: Amount::new(300) })]).unwrap();
    assert_eq!((chain.account(0).balance, chain.account(0).stake), (Amount::new(699), Amount::new(300)));
    let unstake_block = chain.push(vec![chain.tx(0, TxKind::Unstake { amount: Amount::new(100) })]).unwrap();
    let release_at = Height::new(unstake_block.height().get() + 3); // unbonding period 3
    assert_eq!(chain.account(0).stake, Amount::new(200));
    assert_eq!(chain.account(0).unbonding[0].release_at, release_at);
    assert_eq!(chain.account(0).balance, Amount::new(698));
    while chain.head.height.next() != Some(release_at) {
        chain.push(vec![]).unwrap();
        assert_eq!(chain.account(0).balance, Amount::new(698), "locked until {release_at}");
    }
    chain.push(vec![]).unwrap();
    assert_eq!(chain.account(0).balance, Amount::new(798), "released at {release_at}");
    assert!(chain.account(0).unbonding.is_empty());
    let too_much = chain.tx(0, TxKind::Unstake { amount: Amount::new(201) });
    assert_eq!(
        rejection(chain.push(vec![too_much])),
        TxRejection::InsufficientStake { requested: Amount::new(201), staked: Amount::new(200) }
    );
}

#[test]
fn votes_follow_stake_changes() {
    let mut chain = Chain::new(5);
    chain.push(vec![chain.tx(1, TxKind::RegisterDelegate), chain.tx(2, TxKind::RegisterDelegate)]).unwrap();
    assert_eq!(
        rejection(chain.push(vec![chain.tx(1, TxKind::RegisterDelegate)])),
        TxRejection::AlreadyDelegate { address: key(1).address() }
    );
    chain.push(vec![chain.tx(0, TxKind::Stake { amount: Amount::new(100) })]).unwrap();
    chain.push(vec![chain.tx(0, TxKind::Vote { delegates: vec![key(1).address(), key(2).address()] })]).unwrap();
    assert_eq!((chain.votes_received(1), chain.votes_received(2)), (Amount::new(100), Amount::new(100)));
    chain.push(vec![chain.tx(0, TxKind::Stake { amount: Amount::new(50) })]).unwrap();
    assert_eq!((chain.votes_received(1), chain.votes_received(2)), (Amount::new(150), Amount::new(150)));
    chain.push(vec![chain.tx(0, TxKind::Unstake { amount: Amount::new(20) })]).unwrap();
    assert_eq!(chain.votes_received(1), Amount::new(130));
    chain.push(vec![chain.tx(0, TxKind::Vote { delegates: vec![key(2).address()] })]).unwrap();
    assert_eq!((chain.votes_received(1), chain.votes_received(2)), (Amount::ZERO, Amount::new(130)));
    chain.push(vec![chain.tx(0, TxKind::Vote { delegates: vec![] })]).unwrap();
    assert_eq!(chain.votes_received(2), Amount::ZERO);
    let not_delegate = chain.tx(0, TxKind::Vote { delegates: vec![key(3).address()] });
    assert_eq!(rejection(chain.push(vec![not_delegate])), TxRejection::NotDelegate { address: key(3).address() });
}

#[test]
fn vote_limits_are_stateless_errors() {
    let chain = Chain::new(2);
    let many: Vec<Address> = (100..131).map(|i| key(i).address()).collect();
    let tx = chain.tx(0, TxKind::Vote { delegates: many });
    assert_eq!(tx.check_stateless(&chain.genesis.chain_id), Err(TxError::TooManyDelegates { got: 31 }));
    let twice = chain.tx(0, TxKind::Vote { delegates: vec![key(1).address(), key(1).address()] });
    assert_eq!(
        twice.check_stateless(&chain.genesis.chain_id),
        Err(TxError::DuplicateDelegate { delegate: key(1).address() })
    );
}

/// The block at `height` of a chain without missed slots (its slot is its height).
fn checkpoint(height: u64, byte: u8) -> Checkpoint {
    Checkpoint { height: Height::new(height), slot: height, hash: Hash([byte; 32]) }
}

/// Two votes by `offender` from one source to different blocks at height `height`.
fn double_vote(chain: &Chain, offender: &SecretKey, height: u64) -> Evidence {
    let chain_id = &chain.genesis.chain_id;
    let source = checkpoint(height.saturating_sub(1), 9);
    Evidence::DoubleVote {
        first: Vote::signed(chain_id, offender, source, checkpoint(height, 1)),
        second: Vote::signed(chain_id, offender, source, checkpoint(height, 2)),
    }
}

#[test]
fn double_vote_is_slashed_once_and_weights_follow() {
    let mut chain = Chain::new(4);
    chain
        .push(vec![chain.tx(1, TxKind::RegisterDelegate), chain.tx(0, TxKind::Stake { amount: Amount::new(400) })])
        .unwrap();
    chain.push(vec![chain.tx(0, TxKind::Vote { delegates: vec![key(1).address()] })]).unwrap();
    chain.push(vec![chain.tx(0, TxKind::Unstake { amount: Amount::new(100) })]).unwrap();
    let evidence = double_vote(&chain, &key(0), chain.head.height.get());
    chain.push(vec![chain.tx(2, TxKind::Evidence(Box::new(evidence.clone())))]).unwrap();
    assert_eq!(chain.account(0).stake, Amount::new(150), "half of 300 slashed");
    assert_eq!(chain.account(0).unbonding[0].amount, Amount::new(50), "unbonding funds are slashed too");
    assert_eq!(chain.votes_received(1), Amount::new(150));
    // The same offence again, even reported by someone else with the votes swapped: refused.
    let swapped = match evidence {
        Evidence::DoubleVote { first, second } => Evidence::DoubleVote { first: second, second: first },
        Evidence::DoubleProposal { .. } => unreachable!(),
    };
    let again = chain.tx(3, TxKind::Evidence(Box::new(swapped.clone())));
    assert!(matches!(rejection(chain.push(vec![again])), TxRejection::DuplicateOffence { .. }));
}

#[test]
fn evidence_must_conflict_be_signed_and_recent() {
    let mut chain = Chain::new(4);
    chain.push(vec![chain.tx(0, TxKind::Stake { amount: Amount::new(400) })]).unwrap();
    let chain_id = chain.genesis.chain_id.clone();
    let vote = Vote::signed(&chain_id, &key(0), checkpoint(0, 9), checkpoint(1, 1));
    let not_conflicting = |first: &Vote, second: &Vote| {
        let evidence = Evidence::DoubleVote { first: first.clone(), second: second.clone() };
        chain.tx(2, TxKind::Evidence(Box::new(evidence))).check_stateless(&chain_id)
            == Err(TxError::EvidenceNotConflicting)
    };
    assert!(not_conflicting(&vote, &vote), "a vote and itself");
    // Consecutive links (1 -> 2 after 0 -> 1) and nested spans sharing an end are an honest
    // voter's history; two voters never conflict.
    let next = Vote::signed(&chain_id, &key(0), checkpoint(1, 1), checkpoint(2, 2));
    let longer = Vote::signed(&chain_id, &key(0), checkpoint(0, 9), checkpoint(3, 3));
    let other_voter = Vote::signed(&chain_id, &key(1), checkpoint(0, 9), checkpoint(1, 2));
    assert!(not_conflicting(&vote, &next));
    assert!(not_conflicting(&vote, &longer), "spans sharing a source do not surround");
    assert!(not_conflicting(&vote, &other_voter));
    // One height in two slots (a shorter branch's next block after a reorg) is not one epoch.
    let later_slot = Checkpoint { slot: 2, ..checkpoint(1, 2) };
    assert!(not_conflicting(&vote, &Vote::signed(&chain_id, &key(0), checkpoint(0, 9), later_slot)));
    // A span strictly inside another is a surround vote, in either order.
    let outer = Vote::signed(&chain_id, &key(0), checkpoint(0, 9), checkpoint(5, 5));
    let inner = Vote::signed(&chain_id, &key(0), checkpoint(2, 2), checkpoint(4, 4));
    for (first, second) in [(&outer, &inner), (&inner, &outer)] {
        let evidence = Evidence::DoubleVote { first: first.clone(), second: second.clone() };
        chain.tx(2, TxKind::Evidence(Box::new(evidence))).verify(&chain_id).unwrap();
    }
    // A forged second vote: the signature check fails.
    let mut forged = vote.clone();
    forged.target.hash = Hash([2; 32]);
    let evidence = Evidence::DoubleVote { first: vote, second: forged };
    assert!(matches!(chain.tx(2, TxKind::Evidence(Box::new(evidence))).verify(&chain_id), Err(TxError::Signature(_))));
    // Outside the unbonding window (3 blocks): refused.
    for _ in 0..5 {
        chain.push(vec![]).unwrap();
    }
    let old = double_vote(&chain, &key(0), 1);
    assert!(matches!(
        rejection(chain.push(vec![chain.tx(2, TxKind::Evidence(Box::new(old)))])),
        TxRejection::EvidenceOutOfWindow { .. }
    ));
    // An offender with nothing at stake.
    let empty = double_vote(&chain, &key(3), chain.head.height.get());
    assert_eq!(
        rejection(chain.push(vec![chain.tx(2, TxKind::Evidence(Box::new(empty)))])),
        TxRejection::NothingToSlash { offender: key(3).address() }
    );
}

#[test]
fn double_proposal_is_slashed() {
    let mut chain = Chain::new(4);
    chain.push(vec![chain.tx(0, TxKind::Stake { amount: Amount::new(200) })]).unwrap();
    let chain_id = chain.genesis.chain_id.clone();
    let header = |timestamp| {
        Header {
            parent: chain.head.hash(),
            height: chain.head.height.next().unwrap(),
            timestamp: Timestamp::from_millis(timestamp),
            txs_root: Hash::ZERO,
            votes_root: Hash::ZERO,
            state_root: Hash::ZERO,
            proposer: key(0).address(),
            seal: Seal::None,
        }
        .sign(&chain_id, 7, &key(0))
    };
    let evidence = Evidence::DoubleProposal { first: header(1), second: header(2) };
    // Two blocks at one height for different slots are an honest proposer's orphan and its
    // next block: not evidence.
    let mut later_slot = header(3);
    later_slot = Header { seal: Seal::None, ..later_slot }.sign(&chain_id, 8, &key(0));
    let honest = Evidence::DoubleProposal { first: header(1), second: later_slot };
    assert_eq!(
        chain.tx(2, TxKind::Evidence(Box::new(honest))).check_stateless(&chain_id),
        Err(TxError::EvidenceNotConflicting)
    );
    let tx = chain.tx(2, TxKind::Evidence(Box::new(evidence)));
    tx.verify(&chain_id).unwrap();
    chain.push(vec![tx]).unwrap();
    assert_eq!(chain.account(0).stake, Amount::new(100));
}

#[test]
fn equal_blocks_give_equal_roots_on_independent_states() {
    let mut first = Chain::new(4);
    let mut second = Chain::new(4);
    for round in 0..5u128 {
        let tx = first.tx(0, TxKind::Transfer { to: key(1).address(), amount: Amount::new(round + 1) });
        let block = first.push(vec![tx]).unwrap();
        let outcome = state::apply_block(&second.mem, &second.genesis, &second.head, &block).unwrap();
        assert_eq!(outcome.state_root, block.header.state_root);
        second.mem.commit_outcome(&outcome);
        second.head = block.header;
    }
}

#[test]
fn empty_blocks_write_only_the_reward_and_meta() {
    let chain = Chain::new(2);
    let block = chain.block_with(vec![]).unwrap();
    let changes = state::execute(&chain.mem, &chain.genesis, &chain.head, &block).unwrap();
    let keys: Vec<_> = changes.iter().map(|change| change.key.clone()).collect();
    let expected = vec![StateKey::Account(key(9).address()).encode(), StateKey::Meta.encode()];
    assert_eq!(keys, expected, "no empty unbonding queue or untouched account is written");
}

#[test]
fn the_index_of_stakers_follows_every_stake_change_and_is_part_of_the_state_root() {
    let mut genesis = testing::genesis(5, 1_000);
    genesis.accounts[4].stake = Amount::new(70);
    let (mem, block) = MemoryState::from_genesis(&genesis).unwrap();
    let mut chain = Chain { genesis, mem, head: block.header };
    let listed = |chain: &Chain| -> Vec<(u32, u128)> {
        let stakers = state::read_stakers(&chain.mem).unwrap();
        assert!(stakers.0.windows(2).all(|pair| pair[0].0 < pair[1].0), "sorted by address");
        stakers
            .0
            .iter()
            .map(|(address, stake)| ((0..5).find(|i| key(*i).address() == *address).unwrap(), stake.get()))
            .collect::<BTreeMap<_, _>>()
            .into_iter()
            .collect()
    };
    assert_eq!(listed(&chain), vec![(4, 70)], "genesis stakes are listed");

    let root_before = chain.head.state_root;
    chain
        .push(vec![
            chain.tx(0, TxKind::Stake { amount: Amount::new(400) }),
            chain.tx(1, TxKind::Stake { amount: Amount::new(5) }),
        ])
        .unwrap();
    assert_ne!(chain.head.state_root, root_before);
    assert_eq!(listed(&chain), vec![(0, 400), (1, 5), (4, 70)]);
    // A transfer to a staker touches its account without changing its stake: the index is
    // not rewritten.
    let transfer =
        chain.block_with(vec![chain.tx(2, TxKind::Transfer { to: key(0).address(), amount: Amount::new(1) })]).unwrap();
    let outcome = state::apply_block(&chain.mem, &chain.genesis, &chain.head, &transfer).unwrap();
    assert!(!outcome.changes.iter().any(|change| change.key == StateKey::Stakers.encode()));
    chain.mem.commit_outcome(&outcome);
    chain.head = transfer.header.clone();
    assert_eq!(listed(&chain), vec![(0, 400), (1, 5), (4, 70)]);
    // Unstaking everything leaves the index; a partial unstake and a slash lower the entry.
    chain
        .push(vec![
            chain.tx(1, TxKind::Unstake { amount: Amount::new(5) }),
            chain.tx(0, TxKind::Unstake { amount: Amount::new(100) }),
        ])
        .unwrap();
    assert_eq!(listed(&chain), vec![(0, 300), (4, 70)]);
    let evidence = double_vote(&chain, &key(4), chain.head.height.get());
    chain.push(vec![chain.tx(2, TxKind::Evidence(Box::new(evidence)))]).unwrap();
    assert_eq!(listed(&chain), vec![(0, 300), (4, 35)], "half of 70 slashed");
}

use chorus_chain::block::Block;
use chorus_chain::primitives::{Amount, Timestamp};
use chorus_chain::state::memory::MemoryState;
use chorus_chain::state::{self, BlockTemplate};
use chorus_chain::testing;
use chorus_chain::tx::TxKind;

use super::*;

/// Builds the next block on `mem` (following `parent`) and applies it there.
fn extend(
    mem: &mut MemoryState,
    genesis: &Genesis,
    parent: &Header,
    txs: Vec<chorus_chain::SignedTransaction>,
    proposer: u32,
) -> Block {
    let template = BlockTemplate {
        txs,
        votes: vec![],
        proposer: testing::key(proposer).address(),
        timestamp: Timestamp::from_millis(parent.timestamp.as_millis() + 1_000),
    };
    let block = state::build_block(mem, genesis, parent, template).expect("build");
    let outcome = state::apply_block(mem, genesis, parent, &block).expect("apply");
    mem.commit_outcome(&outcome);
    block
}

/// A branch of `len` blocks on top of `mem`, each with a transfer from account `from` so the
/// branches differ in state, not only in proposer.
fn branch(
    mem: &mut MemoryState,
    genesis: &Genesis,
    parent: &Header,
    len: usize,
    from: u32,
    proposer: u32,
) -> Vec<Block> {
    let mut blocks: Vec<Block> = Vec::new();
    let mut parent = parent.clone();
    for _ in 0..len {
        let key = testing::key(from);
        let nonce = state::read_account(mem, &key.address()).unwrap().nonce;
        let tx = testing::signed(
            genesis,
            &key,
            nonce,
            TxKind::Transfer { to: testing::key(from + 1).address(), amount: Amount::new(7) },
        );
        let block = extend(mem, genesis, &parent, vec![tx], proposer);
        parent = block.header.clone();
        blocks.push(block);
    }
    blocks
}

fn assert_same_state(store: &Store, mem: &MemoryState, genesis: &Genesis, n_accounts: u32) {
    for index in 0..n_accounts + 2 {
        let address = testing::key(index).address();
        assert_eq!(store.account(&address).unwrap(), state::read_account(mem, &address).unwrap(), "account {index}");
    }
    let height = store.head().height;
    assert_eq!(store.state_root_at(height).unwrap(), tree::root_at(mem, height).unwrap());
    let _ = genesis;
}

#[test]
fn genesis_reopen_and_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let genesis = testing::genesis(4, 1_000);
    let (mem, genesis_block) = MemoryState::from_genesis(&genesis).unwrap();
    let store = Store::open(dir.path(), &genesis).unwrap();
    assert_eq!(store.head_hash(), genesis_block.hash(), "store and memory agree on the genesis block");
    assert_eq!(store.genesis_hash(), genesis_block.hash());
    assert_same_state(&store, &mem, &genesis, 4);
    drop(store);

    let store = Store::open(dir.path(), &genesis).unwrap();
    assert_eq!(store.head_hash(), genesis_block.hash());
    drop(store);

    let other = testing::genesis(5, 1_000);
    match Store::open(dir.path(), &other) {
        Err(StoreError::GenesisMismatch { stored, given }) => assert_ne!(stored, given),
        other => panic!("expected a genesis mismatch, got {other:?}"),
    }
}

#[test]
fn imports_blocks_and_matches_an_independent_replay() {
    let dir = tempfile::tempdir().unwrap();
    let genesis = testing::genesis(6, 1_000);
    let (mut mem, genesis_block) = MemoryState::from_genesis(&genesis).unwrap();
    let mut store = Store::open(dir.path(), &genesis).unwrap();
    let blocks = branch(&mut mem, &genesis, &genesis_block.header, 5, 0, 3);
    for block in &blocks {
        store.import_block(block).unwrap();
    }
    assert_eq!(store.head_hash(), blocks[4].hash());
    assert_same_state(&store, &mem, &genesis, 6);
    // 5 transfers of 7 with fee 1; proposer 3 got 5 * (50 + 1).
    assert_eq!(store.account(&testing::key(0).address()).unwrap().balance, Amount::new(1_000 - 5 * 8));
    assert_eq!(store.account(&testing::key(3).address()).unwrap().balance, Amount::new(1_000 + 5 * 51));
    let tx_hash = blocks[2].body.txs[0].hash();
    let location = store.tx_location(&tx_hash).unwrap().unwrap();
    assert_eq!((location.height, location.block_hash, location.index), (blocks[2].height(), blocks[2].hash(), 0));

    drop(store);
    let store = Store::open(dir.path(), &genesis).unwrap();
    assert_eq!(store.head_hash(), blocks[4].hash(), "the head survives reopening");
    assert_same_state(&store, &mem, &genesis, 6);
}

/// A table's entries, key and value.
type Entries = Vec<(Box<[u8]>, Box<[u8]>)>;

/// Every entry of the tables a connected block writes (its body stays as a side block).
fn connected_tables(store: &Store) -> Vec<(&'static str, Entries)> {
    [Cf::Meta, Cf::Canonical, Cf::TxIndex, Cf::State, Cf::TreeNodes, Cf::TreeValues, Cf::Undo]
        .into_iter()
        .map(|cf| {
            let entries =
                store.db.iterator_cf(store.cf(cf), rocksdb::IteratorMode::Start).map(Result::unwrap).collect();
            (cf.name(), entries)
        })
        .collect()
}

#[test]
fn rolling_back_a_block_restores_every_table_it_wrote_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let genesis = testing::genesis(6, 1_000);
    let (mut mem, genesis_block) = MemoryState::from_genesis(&genesis).unwrap();
    let mut store = Store::open(dir.path(), &genesis).unwrap();
    let before = branch(&mut mem, &genesis, &genesis_block.header, 2, 0, 3);
    for block in &before {
        store.import_block(block).unwrap();
    }
    let tables_before = connected_tables(&store);
    let account_before = store.account(&testing::key(1).address()).unwrap();
    // A block that changes accounts that exist and creates one that did not.
    let key = testing::key(1);
    let to_existing = testing::signed(
        &genesis,
        &key,
        account_before.nonce,
        TxKind::Transfer { to: testing::key(2).address(), amount: Amount::new(5) },
    );
    let to_new = testing::signed(
        &genesis,
        &key,
        account_before.nonce + 1,
        TxKind::Transfer { to: testing::key(100).address(), amount: Amount::new(5) },
    );
    let parent = before.last().unwrap().header.clone();
    let block = extend(&mut mem, &genesis, &parent, vec![to_existing, to_new], 4);
    store.import_block(&block).unwrap();
    assert_ne!(connected_tables(&store), tables_before);
    assert_ne!(store.tables().tree_node_keys(block.height().get()).unwrap(), Vec::<Vec<u8>>::new());

    store.rollback_head().unwrap();
    assert_eq!(connected_tables(&store), tables_before, "the tables are as before the block, byte for byte");
    assert_eq!(store.account(&testing::key(1).address()).unwrap(), account_before, "and so is the cache");
    assert_eq!(store.account(&testing::key(100).address()).unwrap(), Account::default());
    assert_eq!(store.head_hash(), parent.hash());
    // The block stays stored (a side block) and connects again.
    store.import_block(&block).unwrap();
    assert_same_state(&store, &mem, &genesis, 6);
    assert_eq!(store.account(&testing::key(100).address()).unwrap().balance, Amount::new(5));
}

#[test]
fn import_blocks_pipelines_and_stops_at_the_first_invalid_block() {
    let genesis = testing::genesis(6, 1_000);
    let (mut mem, genesis_block) = MemoryState::from_genesis(&genesis).unwrap();
    let blocks = branch(&mut mem, &genesis, &genesis_block.header, 6, 0, 3);

    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), &genesis).unwrap();
    store.import_blocks(&blocks).unwrap();
    assert_eq!(store.head_hash(), blocks[5].hash());
    assert_same_state(&store, &mem, &genesis, 6);

    // A bad signature in block 4: blocks 1 to 3 are imported, then the error.
    let mut broken = blocks.clone();
    broken[3].body.txs[0].signature.0[10] ^= 1;
    broken[3].header.txs_root = broken[3].body.txs_root();
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), &genesis).unwrap();
    match store.import_blocks(&broken) {
        Err(StoreError::Invalid { hash, error }) => {
            assert_eq!(hash, broken[3].hash());
            assert!(matches!(*error, BlockError::Shape(block::BlockShapeError::Tx { index: 0, .. })));
        }
        other => panic!("expected the fourth block to be refused, got {other:?}"),
    }
    assert_eq!(store.head_hash(), blocks[2].hash());
}

#[test]
fn a_prechecked_block_imports_with_its_claim_and_a_check_of_another_block_is_not_taken() {
    let genesis = testing::genesis(6, 1_000);
    let (mut mem, genesis_block) = MemoryState::from_genesis(&genesis).unwrap();
    let blocks = branch(&mut mem, &genesis, &genesis_block.header, 3, 0, 3);
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), &genesis).unwrap();
    let checked = |block: &Block| block::check_block_stateless(block, &genesis.chain_id).unwrap();
    store.import_block_prechecked(&blocks[0], None, checked(&blocks[0])).unwrap();
    store.import_block_prechecked(&blocks[1], final_ref(&blocks[0]), checked(&blocks[1])).unwrap();
    assert_eq!((store.head_hash(), store.finalized()), (blocks[1].hash(), final_ref(&blocks[0])));

    // A broken signature with the check of the honest block 3 handed in: checked in full.
    let mut broken = blocks[2].clone();
    broken.body.txs[0].signature.0[10] ^= 1;
    broken.header.txs_root = broken.body.txs_root();
    match store.import_block_prechecked(&broken, None, checked(&blocks[2])) {
        Err(StoreError::Invalid { hash, error }) => {
            assert_eq!(hash, broken.hash());
            assert!(matches!(*error, BlockError::Shape(block::BlockShapeError::Tx { index: 0, .. })));
        }
        other => panic!("expected the forged block to be refused, got {other:?}"),
    }
    store.import_block_prechecked(&blocks[2], None, checked(&blocks[2])).unwrap();
    assert_same_state(&store, &mem, &genesis, 6);
}

#[test]
fn invalid_block_changes_nothing_and_is_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let genesis = testing::genesis(3, 1_000);
    let (mut mem, genesis_block) = MemoryState::from_genesis(&genesis).unwrap();
    let mut store = Store::open(dir.path(), &genesis).unwrap();
    let good = branch(&mut mem.clone(), &genesis, &genesis_block.header, 1, 0, 2).remove(0);

    // Same block, but claiming a wrong state root.
    let mut bad_root = good.clone();
    bad_root.header.state_root = Hash([9; 32]);
    match store.import_block(&bad_root) {
        Err(StoreError::Invalid { error, .. }) if matches!(*error, BlockError::StateRoot { .. }) => {}
        other => panic!("expected a state root error, got {other:?}"),
    }
    assert!(matches!(store.import_block(&bad_root), Err(StoreError::KnownInvalid { .. })));

    // A block whose second transaction reuses a nonce: invalid as a whole.
    let key = testing::key(0);
    let transfer = |nonce, amount| {
        testing::signed(
            &genesis,
            &key,
            nonce,
            TxKind::Transfer { to: testing::key(1).address(), amount: Amount::new(amount) },
        )
    };
    let mut block = good.clone();
    block.body.txs = vec![transfer(0, 5), transfer(0, 6)];
    block.header.txs_root = block.body.txs_root();
    match store.import_block(&block) {
        Err(StoreError::Invalid { error, .. })
            if matches!(
                *error,
                BlockError::Tx { index: 1, rejection: state::TxRejection::BadNonce { expected: 1, got: 0 }, .. }
            ) => {}
        other => panic!("expected a nonce rejection, got {other:?}"),
    }
    assert_eq!(store.head_hash(), genesis_block.hash());
    assert_same_state(&store, &mem, &genesis, 3);

    store.import_block(&good).unwrap();
    let outcome = state::apply_block(&mem, &genesis, &genesis_block.header, &good).unwrap();
    mem.commit_outcome(&outcome);
    assert_same_state(&store, &mem, &genesis, 3);
}

fn reorg_case(depth: usize) {
    let dir = tempfile::tempdir().unwrap();
    let genesis = testing::genesis(8, 1_000_000);
    let (mut mem, genesis_block) = MemoryState::from_genesis(&genesis).unwrap();
    let mut store = Store::open(dir.path(), &genesis).unwrap();
    let common = branch(&mut mem, &genesis, &genesis_block.header, 3, 0, 1);
    let fork_point = common.last().unwrap().header.clone();
    let mut losing_mem = mem.clone();
    let losing = branch(&mut losing_mem, &genesis, &fork_point, depth, 2, 3);
    let mut winning_mem = mem.clone();
    let winning = branch(&mut winning_mem, &genesis, &fork_point, depth + 1, 4, 5);

    for block in common.iter().chain(&losing) {
        store.import_block(block).unwrap();
    }
    assert_same_state(&store, &losing_mem, &genesis, 8);
    for block in &winning {
        store.store_block(block).unwrap();
    }
    let change = store.reorg_to(winning.last().unwrap().hash()).unwrap();
    assert_eq!(change.rolled_back.len(), depth);
    assert_eq!(change.applied.len(), depth + 1);
    assert_eq!(store.head_hash(), winning.last().unwrap().hash());
    assert_same_state(&store, &winning_mem, &genesis, 8);
    // Every height of the winning chain has its own root and block in the indexes.
    for block in &winning {
        assert_eq!(store.canonical_hash(block.height()).unwrap(), Some(block.hash()));
        assert_eq!(store.state_root_at(block.height()).unwrap(), block.header.state_root);
    }
    for block in &losing {
        let tx = block.body.txs[0].hash();
        assert_eq!(store.tx_location(&tx).unwrap(), None, "losing branch txs leave the index");
    }
    // And back again: the store can return to the first branch once it is longer.
    let mut losing_longer = losing.clone();
    let tip = losing.last().unwrap().header.clone();
    losing_longer.extend(branch(&mut losing_mem, &genesis, &tip, 2, 2, 3));
    for block in &losing_longer {
        store.store_block(block).unwrap();
    }
    store.reorg_to(losing_longer.last().unwrap().hash()).unwrap();
    assert_same_state(&store, &losing_mem, &genesis, 8);
}

#[test]
fn reorg_depth_1() {
    reorg_case(1);
}

#[test]
fn reorg_depth_10() {
    reorg_case(10);
}

#[test]
fn reorg_depth_100() {
    reorg_case(100);
}

#[test]
fn reorg_onto_an_invalid_branch_restores_the_old_chain() {
    let dir = tempfile::tempdir().unwrap();
    let genesis = testing::genesis(8, 1_000_000);
    let (mem, genesis_block) = MemoryState::from_genesis(&genesis).unwrap();
    let mut store = Store::open(dir.path(), &genesis).unwrap();
    let mut old_mem = mem.clone();
    let old = branch(&mut old_mem, &genesis, &genesis_block.header, 2, 0, 1);
    for block in &old {
        store.import_block(block).unwrap();
    }
    let mut new_mem = mem.clone();
    let mut new = branch(&mut new_mem, &genesis, &genesis_block.header, 3, 2, 3);
    new[1].header.state_root = Hash([1; 32]); // breaks block 2 of the new branch
    let parent_of_last = new[1].hash();
    new[2].header.parent = parent_of_last;
    for block in &new {
        store.store_block(block).unwrap();
    }
    match store.reorg_to(new[2].hash()) {
        Err(StoreError::ReorgFailed { failed, head, .. }) => {
            assert_eq!(failed, new[1].hash());
            assert_eq!(head, old[1].hash());
        }
        other => panic!("expected a failed reorg, got {other:?}"),
    }
    assert_eq!(store.head_hash(), old[1].hash());
    assert_same_state(&store, &old_mem, &genesis, 8);
    // The invalid block and its descendant are gone; its valid parent stays as a side block.
    assert!(store.contains_block(&new[0].hash()).unwrap());
    assert!(!store.contains_block(&new[1].hash()).unwrap());
    assert!(!store.contains_block(&new[2].hash()).unwrap());
    assert_eq!(store.header(&new[2].hash()).unwrap(), None);
}

#[test]
fn side_block_with_a_body_that_does_not_match_its_header_is_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let genesis = testing::genesis(3, 1_000);
    let (mut mem, genesis_block) = MemoryState::from_genesis(&genesis).unwrap();
    let mut store = Store::open(dir.path(), &genesis).unwrap();
    let mut block = branch(&mut mem, &genesis, &genesis_block.header, 1, 0, 1).remove(0);
    block.body.txs.clear();
    match store.store_block(&block) {
        Err(StoreError::Invalid { error, .. }) => {
            assert!(matches!(*error, BlockError::Shape(block::BlockShapeError::TxsRoot { .. })))
        }
        other => panic!("expected a body/header mismatch, got {other:?}"),
    }
    assert!(!store.contains_block(&block.hash()).unwrap());
}

#[test]
fn proofs_verify_against_block_roots() {
    let dir = tempfile::tempdir().unwrap();
    let genesis = testing::genesis(4, 1_000);
    let (mut mem, genesis_block) = MemoryState::from_genesis(&genesis).unwrap();
    let mut store = Store::open(dir.path(), &genesis).unwrap();
    let blocks = branch(&mut mem, &genesis, &genesis_block.header, 3, 0, 2);
    for block in &blocks {
        store.import_block(block).unwrap();
    }
    let key = StateKey::Account(testing::key(0).address());
    for block in &blocks {
        let proof = store.prove(&key, block.height()).unwrap();
        tree::verify_proof(block.header.state_root, &key, &proof).unwrap();
        let account: Account = codec::decode(proof.value.as_deref().unwrap()).unwrap();
        let spent = 8 * u128::from(block.height().get());
        assert_eq!(account.balance, Amount::new(1_000 - spent));

        let mut forged = proof.clone();
        let mut richer = account.clone();
        richer.balance = Amount::new(1_000_000);
        forged.value = Some(codec::encode(&richer));
        assert!(tree::verify_proof(block.header.state_root, &key, &forged).is_err(), "a forged value fails");
    }
    // An address that never appeared: an exclusion proof.
    let nobody = StateKey::Account(testing::key(77).address());
    let proof = store.prove(&nobody, store.head().height).unwrap();
    assert_eq!(proof.value, None);
    tree::verify_proof(store.head().state_root, &nobody, &proof).unwrap();
    // Proof bytes survive transport.
    let again = StateProof::from_parts(proof.value.clone(), &proof.proof_bytes()).unwrap();
    tree::verify_proof(store.head().state_root, &nobody, &again).unwrap();
}

#[test]
fn damaged_store_is_reported_not_panicked() {
    let dir = tempfile::tempdir().unwrap();
    let genesis = testing::genesis(2, 1_000);
    drop(Store::open(dir.path(), &genesis).unwrap());
    {
        let db = schema::open_db(dir.path()).unwrap();
        db.put_cf(db.cf_handle(Cf::Meta.name()).unwrap(), MetaKey::Head.key(), [1u8; 32]).unwrap();
    }
    match Store::open(dir.path(), &genesis) {
        Err(StoreError::Damaged { what }) => assert!(what.contains("head"), "{what}"),
        other => panic!("expected a damaged store, got {other:?}"),
    }
    {
        let db = schema::open_db(dir.path()).unwrap();
        db.put_cf(db.cf_handle(Cf::Meta.name()).unwrap(), MetaKey::Head.key(), [1u8; 5]).unwrap();
    }
    assert!(matches!(Store::open(dir.path(), &genesis), Err(StoreError::Damaged { .. })));
}

#[test]
fn engine_records_and_side_headers_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let genesis = testing::genesis(4, 1_000);
    let (mut mem, genesis_block) = MemoryState::from_genesis(&genesis).unwrap();
    let side = branch(&mut mem, &genesis, &genesis_block.header, 2, 0, 1);
    {
        let mut store = Store::open(dir.path(), &genesis).unwrap();
        for block in &side {
            store.store_block(block).unwrap();
        }
        store.put_engine_record(b"work/1", b"seven", false).unwrap();
        store.put_engine_record(b"guard", b"signed", true).unwrap();
        let oversize = vec![0u8; limits::ENGINE_RECORD_BYTES_MAX as usize];
        assert!(matches!(store.put_engine_record(b"big", &oversize, true), Err(StoreError::RecordTooLarge { .. })));
        // A batch writes and deletes together, or (one record too large) not at all.
        let batch = [(b"log/1".to_vec(), Some(b"a".to_vec())), (b"work/1".to_vec(), None)];
        store.put_engine_records(&batch, true).unwrap();
        let refused = [(b"log/2".to_vec(), Some(b"b".to_vec())), (b"big".to_vec(), Some(oversize))];
        assert!(matches!(store.put_engine_records(&refused, true), Err(StoreError::RecordTooLarge { .. })));
    }
    let store = Store::open(dir.path(), &genesis).unwrap();
    assert_eq!(store.engine_record(b"work/1").unwrap(), None, "deleted in the batch");
    assert_eq!(store.engine_record(b"log/1").unwrap().as_deref(), Some(&b"a"[..]));
    assert_eq!(store.engine_record(b"log/2").unwrap(), None, "a refused batch writes nothing");
    assert_eq!(store.engine_record(b"guard").unwrap().as_deref(), Some(&b"signed"[..]));
    assert_eq!(store.engine_record(b"big").unwrap(), None);
    assert_eq!(store.engine_record(b"work/2").unwrap(), None);
    // Read back from disk (the header cache is empty after a reopen).
    assert_eq!(store.header(&side[1].hash()).unwrap(), Some(side[1].header.clone()));
    assert_eq!(store.header(&Hash([9; 32])).unwrap(), None);
    assert_eq!(store.head_hash(), genesis_block.hash(), "side blocks do not move the head");
}

#[test]
fn tx_location_fits_its_limit() {
    let location = TxLocation { height: Height::new(u64::MAX), block_hash: Hash([7; 32]), index: u32::MAX };
    assert_eq!(codec::encode(&location).len(), 8 + 32 + 4);
    assert!(codec::encode(&location).len() <= limits::TX_LOCATION_BYTES_MAX as usize);
}

fn final_ref(block: &Block) -> Option<(Height, Hash)> {
    Some((block.height(), block.hash()))
}

#[test]
fn finality_is_written_with_its_proving_block_only_moves_forward_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let genesis = testing::genesis(4, 1_000_000);
    let (mut mem, genesis_block) = MemoryState::from_genesis(&genesis).unwrap();
    let mut store = Store::open(dir.path(), &genesis).unwrap();
    assert_eq!(store.finalized(), None);
    let blocks = branch(&mut mem, &genesis, &genesis_block.header, 6, 0, 1);
    // Block 2 proves block 1 final, 3 claims nothing, 4 proves 3, 5 claims 2 (behind: no move).
    let claims = [None, final_ref(&blocks[0]), None, final_ref(&blocks[2]), final_ref(&blocks[1])];
    let expected = [None, final_ref(&blocks[0]), final_ref(&blocks[0]), final_ref(&blocks[2]), final_ref(&blocks[2])];
    for ((block, claim), expected) in blocks.iter().zip(claims).zip(expected) {
        store.import_block_finalizing(block, claim).unwrap();
        assert_eq!(store.finalized(), expected, "after block {}", block.height());
    }
    // A claim off the block's chain is refused and writes nothing.
    let mut side_mem = MemoryState::from_genesis(&genesis).unwrap().0;
    let side = branch(&mut side_mem, &genesis, &genesis_block.header, 4, 1, 2);
    match store.import_block_finalizing(&blocks[5], final_ref(&side[3])) {
        Err(StoreError::ClaimNotOnChain { hash, claimed, claimed_height }) => {
            assert_eq!((hash, claimed, claimed_height), (blocks[5].hash(), side[3].hash(), side[3].height()));
        }
        other => panic!("expected a claim off the chain to be refused, got {other:?}"),
    }
    assert_eq!(store.head_hash(), blocks[4].hash());
    assert!(!store.contains_block(&blocks[5].hash()).unwrap());

    drop(store);
    let store = Store::open(dir.path(), &genesis).unwrap();
    assert_eq!(store.finalized(), final_ref(&blocks[2]), "the final block is read back at open");
}

#[test]
fn nothing_below_the_final_block_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let genesis = testing::genesis(6, 1_000_000);
    let (mem, genesis_block) = MemoryState::from_genesis(&genesis).unwrap();
    let mut store = Store::open(dir.path(), &genesis).unwrap();
    let mut main_mem = mem.clone();
    let mut main = branch(&mut main_mem, &genesis, &genesis_block.header, 2, 0, 1);
    // A branch forking at block 2 is stored while nothing is final.
    let mut fork_mem = main_mem.clone();
    let fork = branch(&mut fork_mem, &genesis, &main[1].header, 3, 2, 3);
    let top = main[1].header.clone();
    main.extend(branch(&mut main_mem, &genesis, &top, 2, 0, 1));
    for block in &main[..3] {
        store.import_block(block).unwrap();
    }
    for block in &fork {
        store.store_block(block).unwrap();
    }
    // Block 4 proves block 3 final.
    store.import_block_finalizing(&main[3], final_ref(&main[2])).unwrap();
    let (final_height, final_hash) = (main[2].height(), main[2].hash());

    let below = |result: Result<(), StoreError>, hash: Hash, fork_height: u64| match result {
        Err(StoreError::ConflictsWithFinal { hash: got, fork_height: at, final_height: h, final_hash: f }) => {
            assert_eq!((got, at, h, f), (hash, Height::new(fork_height), final_height, final_hash));
        }
        other => panic!("expected a conflict with the final block, got {other:?}"),
    };
    below(store.reorg_to(fork[2].hash()).map(drop), fork[2].hash(), 2);
    assert_eq!(store.head_hash(), main[3].hash(), "a refused reorg leaves the head");
    assert_same_state(&store, &main_mem, &genesis, 6);

    // A new side block forking below the final block is not stored.
    let early = branch(&mut mem.clone(), &genesis, &genesis_block.header, 1, 3, 4);
    below(store.store_block(&early[0]), early[0].hash(), 0);
    assert!(!store.contains_block(&early[0].hash()).unwrap());
    // Rolling back to the final block is fine, below it is not.
    store.rollback_head().unwrap();
    assert_eq!(store.head_hash(), final_hash);
    below(store.rollback_head(), final_hash, 2);
    assert_eq!(store.head_hash(), final_hash);
}

#[test]
fn a_side_blocks_claim_moves_finality_when_a_reorg_applies_it() {
    let dir = tempfile::tempdir().unwrap();
    let genesis = testing::genesis(6, 1_000_000);
    let (mem, genesis_block) = MemoryState::from_genesis(&genesis).unwrap();
    let mut store = Store::open(dir.path(), &genesis).unwrap();
    let mut old_mem = mem.clone();
    let old = branch(&mut old_mem, &genesis, &genesis_block.header, 2, 0, 1);
    for block in &old {
        store.import_block(block).unwrap();
    }
    let mut new_mem = mem.clone();
    let new = branch(&mut new_mem, &genesis, &genesis_block.header, 3, 2, 3);
    store.store_block(&new[0]).unwrap();
    store.store_block_finalizing(&new[1], final_ref(&new[0])).unwrap();
    store.store_block(&new[2]).unwrap();
    assert_eq!(store.finalized(), None, "a side block's claim waits until its block joins the chain");

    let change = store.reorg_to(new[2].hash()).unwrap();
    assert_eq!(change.applied.len(), 3);
    assert_eq!(store.finalized(), final_ref(&new[0]));
    match store.reorg_to(old[1].hash()) {
        Err(StoreError::ConflictsWithFinal { fork_height, .. }) => assert_eq!(fork_height, Height::GENESIS),
        other => panic!("expected the old branch to conflict with the final block, got {other:?}"),
    }
    drop(store);
    let store = Store::open(dir.path(), &genesis).unwrap();
    assert_eq!(store.finalized(), final_ref(&new[0]));
    assert_eq!(store.head_hash(), new[2].hash());
}

#[test]
fn a_reorg_that_finalized_part_of_its_branch_keeps_it_when_a_later_block_fails() {
    let dir = tempfile::tempdir().unwrap();
    let genesis = testing::genesis(8, 1_000_000);
    let (mem, genesis_block) = MemoryState::from_genesis(&genesis).unwrap();
    let mut store = Store::open(dir.path(), &genesis).unwrap();
    let mut old_mem = mem.clone();
    let old = branch(&mut old_mem, &genesis, &genesis_block.header, 2, 0, 1);
    for block in &old {
        store.import_block(block).unwrap();
    }
    let mut new_mem = mem.clone();
    let mut new = branch(&mut new_mem, &genesis, &genesis_block.header, 3, 2, 3);
    new[2].header.state_root = Hash([1; 32]);
    store.store_block_finalizing(&new[0], final_ref(&new[0])).unwrap();
    store.store_block(&new[1]).unwrap();
    store.store_block(&new[2]).unwrap();
    match store.reorg_to(new[2].hash()) {
        Err(StoreError::ReorgFailed { failed, head, moved, .. }) => {
            assert_eq!((failed, head), (new[2].hash(), new[1].hash()));
            assert_eq!(moved.rolled_back, vec![old[1].hash(), old[0].hash()]);
            assert_eq!(moved.applied, vec![new[0].hash(), new[1].hash()]);
        }
        other => panic!("expected a failed reorg that stays on the final branch, got {other:?}"),
    }
    assert_eq!(store.finalized(), final_ref(&new[0]));
    assert!(!store.contains_block(&new[2].hash()).unwrap());
}

#[test]
fn state_values_read_at_past_heights_of_the_current_chain() {
    let dir = tempfile::tempdir().unwrap();
    let genesis = testing::genesis(3, 1_000);
    let (mut mem, genesis_block) = MemoryState::from_genesis(&genesis).unwrap();
    let mut store = Store::open(dir.path(), &genesis).unwrap();
    let mut parent = genesis_block.header.clone();
    for amount in [100, 250] {
        let nonce = state::read_account(&mem, &testing::key(0).address()).unwrap().nonce;
        let stake = testing::signed(&genesis, &testing::key(0), nonce, TxKind::Stake { amount: Amount::new(amount) });
        let block = extend(&mut mem, &genesis, &parent, vec![stake], 1);
        store.import_block(&block).unwrap();
        parent = block.header;
    }
    let key = StateKey::Stakers.encode();
    let at = |height: u64| -> Option<state::Stakers> {
        store.get_raw_at(Height::new(height), &key).unwrap().map(|bytes| codec::decode(&bytes).unwrap())
    };
    let staked = |amount: u128| Some(state::Stakers(vec![(testing::key(0).address(), Amount::new(amount))]));
    assert_eq!(at(0), None, "no stakes at genesis");
    assert_eq!(at(1), staked(100));
    assert_eq!(at(2), staked(350));
    assert!(matches!(store.get_raw_at(Height::new(3), &key), Err(StoreError::Tree(_))), "above the head");
}

/// What a reader sees at once: the head, its state and its indexes, all from one commit.
fn committed_view(reader: &Reader) -> (Hash, Height, Account, Option<(Height, Hash)>) {
    reader
        .read(|committed| {
            let (hash, head) = committed.head()?;
            Ok((hash, head.height, committed.account(&testing::key(0).address())?, committed.finalized()?))
        })
        .unwrap()
}

#[test]
fn a_reader_sees_one_commit_at_a_time_and_agrees_with_the_store_across_a_reorg() {
    let dir = tempfile::tempdir().unwrap();
    let genesis = testing::genesis(8, 1_000_000);
    let (mut mem, genesis_block) = MemoryState::from_genesis(&genesis).unwrap();
    let mut store = Store::open(dir.path(), &genesis).unwrap();
    let reader = store.reader();
    let common = branch(&mut mem, &genesis, &genesis_block.header, 2, 0, 1);
    let mut losing_mem = mem.clone();
    let losing = branch(&mut losing_mem, &genesis, &common[1].header, 2, 2, 3);
    let winning = branch(&mut mem, &genesis, &common[1].header, 3, 0, 5);

    let agree = |store: &Store| {
        let (hash, height, account, finalized) = committed_view(&reader);
        assert_eq!((hash, height), (store.head_hash(), store.head().height));
        assert_eq!(account, store.account(&testing::key(0).address()).unwrap());
        assert_eq!(finalized, store.finalized());
    };
    agree(&store);
    store.import_block(&common[0]).unwrap();
    store.import_block_finalizing(&common[1], final_ref(&common[0])).unwrap();
    for block in &losing {
        store.import_block(block).unwrap();
    }
    agree(&store);
    for block in &winning {
        store.store_block(block).unwrap();
    }
    store.reorg_to(winning[2].hash()).unwrap();
    agree(&store);

    reader
        .read(|committed| {
            let head = committed.head()?.1;
            assert_eq!(head, winning[2].header);
            for block in &winning {
                assert_eq!(committed.canonical_block(block.height())?.as_ref(), Some(block));
                let tx = block.body.txs[0].hash();
                assert_eq!(committed.tx_location(&tx)?.map(|at| at.block_hash), Some(block.hash()));
                let key = StateKey::Account(testing::key(0).address());
                let proof = committed.prove(&key, block.height(), &head)?;
                tree::verify_proof(committed.state_root_at(block.height())?, &key, &proof).unwrap();
                assert_eq!(committed.state_root_at(block.height())?, block.header.state_root);
            }
            for block in &losing {
                assert_eq!(committed.block(&block.hash())?.as_ref(), Some(block), "side blocks stay readable");
                assert_eq!(committed.tx_location(&block.body.txs[0].hash())?, None);
            }
            let beyond = head.height.next().unwrap();
            assert!(matches!(
                committed.prove(&StateKey::Account(testing::key(0).address()), beyond, &head),
                Err(StoreError::Tree(TreeError::MissingRoot { .. }))
            ));
            Ok(())
        })
        .unwrap();

    // A snapshot keeps its commit while the store writes the next ones.
    let extra = branch(&mut mem, &genesis, &winning[2].header, 2, 0, 1);
    reader
        .read(|committed| {
            let before = (committed.head()?, committed.account(&testing::key(0).address())?);
            for block in &extra {
                store.import_block(block).unwrap();
            }
            assert_eq!(store.head_hash(), extra[1].hash());
            assert_eq!((committed.head()?, committed.account(&testing::key(0).address())?), before);
            assert_eq!(committed.canonical_block(extra[0].height())?, None, "a later commit is not seen");
            Ok(())
        })
        .unwrap();
    agree(&store);

    // A reader does not keep the database open: the store closes and reopens with it alive.
    drop(store);
    assert!(matches!(reader.read(|committed| committed.head()), Err(StoreError::Closed)));
    let store = Store::open(dir.path(), &genesis).unwrap();
    assert_eq!(store.head_hash(), extra[1].hash());
}

#[test]
fn a_reader_never_sees_a_reorg_midway() {
    let dir = tempfile::tempdir().unwrap();
    let genesis = testing::genesis(8, 1_000_000);
    let (mut mem, genesis_block) = MemoryState::from_genesis(&genesis).unwrap();
    let mut store = Store::open(dir.path(), &genesis).unwrap();
    let common = branch(&mut mem, &genesis, &genesis_block.header, 2, 0, 1);
    let (mut left_mem, mut right_mem) = (mem.clone(), mem);
    let mut left = branch(&mut left_mem, &genesis, &common[1].header, 8, 2, 3);
    let mut right = branch(&mut right_mem, &genesis, &common[1].header, 9, 4, 5);
    for block in common.iter().chain(&left) {
        store.import_block(block).unwrap();
    }
    for block in &right {
        store.store_block(block).unwrap();
    }
    let reader = store.reader();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let seen = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let mut seen = std::collections::BTreeSet::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                seen.insert(reader.read(|committed| Ok(committed.head()?.0)).unwrap());
            }
            seen
        });
        // Back and forth, each time onto the branch one block longer.
        for _ in 0..6 {
            let tip = left.last().unwrap().header.clone();
            let more = branch(&mut left_mem, &genesis, &tip, 2, 2, 3);
            for block in &more {
                store.store_block(block).unwrap();
            }
            left.extend(more);
            store.reorg_to(left.last().unwrap().hash()).unwrap();
            std::mem::swap(&mut left, &mut right);
            std::mem::swap(&mut left_mem, &mut right_mem);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        watcher.join().unwrap()
    });
    // Only heads a reorg ended on, never the fork point or a block on the way.
    let ends: std::collections::BTreeSet<Hash> =
        left.iter().chain(&right).map(Block::hash).filter(|hash| seen.contains(hash)).collect();
    assert!(!seen.contains(&common[1].hash()), "the fork point was seen as the head");
    assert_eq!(seen, ends, "every head seen is a block of one of the branches");
    for hash in &seen {
        let height = left.iter().chain(&right).find(|block| block.hash() == *hash).unwrap().height();
        assert!(height.get() >= 10, "a head seen at height {height} is below every reorg's end");
    }
}

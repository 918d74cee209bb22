use std::collections::BTreeMap;

use chorus_chain::state::{ReadError, StateRead};
use chorus_chain::testing;

use super::mining::{Grinder, with_nonce};
use super::*;
use crate::ChainRead;

/// Headers only: what the PoW engine reads. Blocks "added" by actions go in as stored headers.
struct TestChain {
    genesis: chorus_chain::Genesis,
    headers: BTreeMap<Hash, Header>,
    records: BTreeMap<Vec<u8>, Vec<u8>>,
    head: Hash,
    /// The head's ancestry by height (kept for chains that only grow at the head).
    canonical: BTreeMap<Height, Hash>,
}

impl TestChain {
    fn new(config: PowConfig) -> TestChain {
        let mut genesis = testing::genesis(1, 1);
        genesis.engines[0].engine = chorus_chain::genesis::EngineConfig::Pow(config);
        let block = chorus_chain::state::genesis_block(&genesis, Hash::ZERO);
        let head = block.hash();
        TestChain {
            genesis,
            headers: BTreeMap::from([(head, block.header)]),
            records: BTreeMap::new(),
            head,
            canonical: BTreeMap::from([(Height::GENESIS, head)]),
        }
    }

    /// Executes the store-facing actions the way the driver would (without executing bodies).
    fn apply(&mut self, actions: &[Action]) {
        for action in actions {
            match action {
                Action::Persist { key, value, .. } => {
                    self.records.insert(key.clone(), value.clone());
                }
                Action::AddBlock { block, make_head, .. } => {
                    self.headers.insert(block.hash(), block.header.clone());
                    if *make_head {
                        self.head = block.hash();
                        self.canonical.insert(block.header.height, block.hash());
                    }
                }
                _ => {}
            }
        }
    }
}

impl StateRead for TestChain {
    fn get_raw(&self, _key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        Ok(None)
    }
}

impl ChainRead for TestChain {
    fn genesis(&self) -> &chorus_chain::Genesis {
        &self.genesis
    }
    fn head(&self) -> (Hash, Header) {
        (self.head, self.headers[&self.head].clone())
    }
    fn header(&self, hash: &Hash) -> Result<Option<Header>, ChainReadError> {
        Ok(self.headers.get(hash).cloned())
    }
    fn canonical_hash(&self, height: Height) -> Result<Option<Hash>, ChainReadError> {
        Ok(self.canonical.get(&height).filter(|hash| self.headers[*hash].height == height).copied())
    }
    fn record(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ChainReadError> {
        Ok(self.records.get(key).cloned())
    }
    fn finalized(&self) -> Option<(Height, Hash)> {
        None
    }
    fn block(&self, _hash: &Hash) -> Result<Option<Block>, ChainReadError> {
        unreachable!("PoW reads headers only")
    }
    fn get_raw_at(&self, _height: Height, _key: &[u8]) -> Result<Option<Vec<u8>>, ChainReadError> {
        unreachable!("PoW reads no past state")
    }
}

fn easy_config() -> PowConfig {
    let mut target = [0xff; 32];
    target[0] = 0x0f; // 1 in 16 hashes
    PowConfig { target_block_time_ms: 1_000, initial_target: Hash(target), retarget_window_blocks: 10 }
}

fn coinbase() -> Address {
    testing::key(7).address()
}

/// A child header of `parent` with the right target, mined, at `timestamp`.
fn child(engine: &PowEngine, chain: &TestChain, parent: &Header, timestamp: u64, proposer: Address) -> Header {
    let (target, _) = engine.child_rules(chain, parent).unwrap();
    let header = Header {
        parent: parent.hash(),
        height: parent.height.next().unwrap(),
        timestamp: Timestamp::from_millis(timestamp),
        proposer,
        seal: Seal::Pow { target, nonce: 0 },
        ..parent.clone()
    };
    let (nonce, _) = Grinder::new(&header).unwrap().search(0, u64::MAX, &|| false);
    with_nonce(&header, nonce.unwrap())
}

fn block(header: Header) -> Arc<Block> {
    Arc::new(Block { header, body: Default::default() })
}

fn started(config: PowConfig, coinbase: Option<Address>) -> (PowEngine, TestChain, Vec<Action>) {
    let chain = TestChain::new(config.clone());
    let mut engine = PowEngine::new(config, coinbase);
    let mut actions = Vec::new();
    engine
        .step(&chain, Timestamp::from_millis(chain.head().1.timestamp.as_millis()), Event::Start, &mut actions)
        .unwrap();
    (engine, chain, actions)
}

fn peer() -> Origin {
    Origin::Peer(PeerId::new("peer-1"))
}

#[test]
fn a_valid_block_is_persisted_then_added_as_head() {
    let (mut engine, mut chain, _) = started(easy_config(), None);
    let genesis = chain.head().1;
    let header = child(&engine, &chain, &genesis, genesis.timestamp.as_millis() + 1_000, coinbase());
    let now = header.timestamp;
    let mut actions = Vec::new();
    engine.step(&chain, now, Event::Block { from: peer(), block: block(header.clone()) }, &mut actions).unwrap();
    assert!(matches!(&actions[0], Action::Persist { key, .. } if key.ends_with(header.hash().as_bytes())));
    assert!(matches!(&actions[1], Action::AddBlock { make_head: true, .. }));
    assert_eq!(actions.len(), 2, "a peer's block is relayed by gossip, not re-broadcast: {actions:?}");
    chain.apply(&actions);

    // The same block again is a no-op.
    let mut again = Vec::new();
    engine.step(&chain, now, Event::Block { from: peer(), block: block(header) }, &mut again).unwrap();
    assert!(again.is_empty());
}

#[test]
fn invalid_headers_are_refused_with_a_typed_reason_and_nothing_is_added() {
    let (mut engine, chain, _) = started(easy_config(), None);
    let genesis = chain.head().1;
    let t = genesis.timestamp.as_millis();
    let good = child(&engine, &chain, &genesis, t + 1_000, coinbase());
    let now = good.timestamp;
    let old = child(&engine, &chain, &genesis, t, coinbase());
    let future = child(&engine, &chain, &genesis, now.as_millis() + limits::BLOCK_FUTURE_DRIFT_MS_MAX + 1, coinbase());
    let mut check = |header: Header| {
        let mut actions = Vec::new();
        let result = engine.step(&chain, now, Event::Block { from: peer(), block: block(header) }, &mut actions);
        assert!(actions.is_empty(), "a refused block leaves no action: {actions:?}");
        result.unwrap_err()
    };

    // Wrong seal kind.
    let unsealed = Header { seal: Seal::None, ..good.clone() };
    assert!(matches!(check(unsealed), EngineError::Pow(PowError::NotPowSeal { .. })));

    // A hash above the target: find a nonce that fails.
    let mut grinder = Grinder::new(&good).unwrap();
    let target = header_target(&good);
    let bad_nonce = (0..).find(|&nonce| !difficulty::meets_target(&grinder.hash(nonce), &target)).unwrap();
    let error = check(with_nonce(&good, bad_nonce));
    assert!(matches!(error, EngineError::Pow(PowError::InsufficientWork { .. })), "{error}");
    assert!(error.is_peer_fault());

    // A target other than the retarget rule's (easier), mined honestly for it.
    let easier = Header { seal: Seal::Pow { target: Hash([0xff; 32]), nonce: 0 }, ..good.clone() };
    let error = check(easier);
    assert!(matches!(error, EngineError::Pow(PowError::WrongTarget { .. })), "{error}");
    assert!(error.to_string().contains("retarget rule gives"), "{error}");

    // Timestamp not after the median of the last blocks (here: genesis).
    assert!(matches!(check(old), EngineError::Pow(PowError::TimestampTooOld { .. })));

    // Too far in the future for this node's clock: refused, but not the peer's fault.
    let error = check(future);
    assert!(matches!(error, EngineError::Pow(PowError::TimestampInFuture { .. })), "{error}");
    assert!(!error.is_peer_fault());

    // Unknown parent and wrong height.
    let orphan = child_of_header_with_nonce(Header { parent: Hash([3; 32]), ..good.clone() });
    assert!(matches!(check(orphan), EngineError::UnknownParent { .. }));
    let skipped = child_of_header_with_nonce(Header { height: Height::new(2), ..good });
    assert!(matches!(check(skipped), EngineError::Pow(PowError::WrongHeight { .. })));
}

/// Re-mines `header` as it is (after a field was changed).
fn child_of_header_with_nonce(header: Header) -> Header {
    let (nonce, _) = Grinder::new(&header).unwrap().search(0, u64::MAX, &|| false);
    with_nonce(&header, nonce.unwrap())
}

#[test]
fn fork_choice_is_most_work_and_ties_keep_the_first() {
    let (mut engine, mut chain, _) = started(easy_config(), None);
    let genesis = chain.head().1;
    let t = genesis.timestamp.as_millis();
    let a1 = child(&engine, &chain, &genesis, t + 1_000, testing::key(1).address());
    let b1 = child(&engine, &chain, &genesis, t + 1_000, testing::key(2).address());
    let now = Timestamp::from_millis(t + 10_000);
    let step = |engine: &mut PowEngine, chain: &mut TestChain, header: &Header| {
        let mut actions = Vec::new();
        engine.step(chain, now, Event::Block { from: peer(), block: block(header.clone()) }, &mut actions).unwrap();
        chain.apply(&actions);
        let make_head = actions.iter().any(|action| matches!(action, Action::AddBlock { make_head: true, .. }));
        if make_head {
            let (head, header) = chain.head();
            engine
                .step(
                    chain,
                    now,
                    Event::HeadChanged { head, height: header.height, rolled_back: vec![], applied: vec![head] },
                    &mut Vec::new(),
                )
                .unwrap();
        }
        make_head
    };
    assert!(step(&mut engine, &mut chain, &a1));
    assert!(!step(&mut engine, &mut chain, &b1), "equal work: the first seen stays head");
    let b2 = child(&engine, &chain, &b1, t + 2_000, testing::key(2).address());
    assert!(step(&mut engine, &mut chain, &b2), "more work on the other branch: reorg");
    assert_eq!(chain.head, b2.hash());
    let expected = difficulty::work(&header_target(&b1)).saturating_add(difficulty::work(&header_target(&b2)));
    assert_eq!(engine.head_work(&chain).unwrap(), expected);
}

fn header_target(header: &Header) -> Hash {
    match header.seal {
        Seal::Pow { target, .. } => target,
        _ => unreachable!(),
    }
}

#[test]
fn work_survives_a_restart_through_records() {
    let (mut engine, mut chain, _) = started(easy_config(), None);
    let mut parent = chain.head().1;
    for index in 1..=5u64 {
        let header = child(&engine, &chain, &parent, parent.timestamp.as_millis() + 1_000, coinbase());
        let mut actions = Vec::new();
        engine
            .step(&chain, header.timestamp, Event::Block { from: peer(), block: block(header.clone()) }, &mut actions)
            .unwrap();
        chain.apply(&actions);
        assert_eq!(chain.head().1.height, Height::new(index));
        parent = header;
    }
    let before = engine.work_of(&chain, &chain.head).unwrap();
    // What the node reports as chainWork: the sum of each block's work from its own target.
    let summed = chain
        .headers
        .values()
        .filter(|header| header.height != Height::GENESIS)
        .fold(U256::zero(), |sum, header| sum + difficulty::work(&header_target(header)));
    assert_eq!(before, summed);
    let head = chain.head;
    assert_eq!(Engine::chain_work(&mut engine, &chain, &head).unwrap(), Some(before.to_big_endian()));
    // Readers without the engine read the same figure from the records, for every block, and
    // sum it from the headers where the records are missing.
    let recorded = |chain: &TestChain, hash: &Hash, header: &Header| {
        crate::recorded_chain_work(&chain.genesis, hash, header, |key| chain.record(key), |hash| chain.header(hash))
            .unwrap()
    };
    for (hash, header) in &chain.headers {
        assert_eq!(
            recorded(&chain, hash, header),
            Engine::chain_work(&mut engine, &chain, hash).unwrap(),
            "block {}",
            header.height
        );
    }
    let mut unrecorded = TestChain::new(easy_config());
    unrecorded.headers.clone_from(&chain.headers);
    assert_eq!(recorded(&unrecorded, &head, &chain.head().1), Some(before.to_big_endian()));
    let mut restarted = PowEngine::new(easy_config(), None);
    restarted.step(&chain, parent.timestamp, Event::Start, &mut Vec::new()).unwrap();
    assert_eq!(restarted.head_work(&chain).unwrap(), before);
    // Without records the work is summed from the headers: the same figure.
    chain.records.clear();
    let mut replayed = PowEngine::new(easy_config(), None);
    assert_eq!(replayed.work_of(&chain, &chain.head).unwrap(), before);
}

#[test]
fn a_miner_proposes_seals_with_the_target_and_restarts_on_a_better_head() {
    let (mut engine, mut chain, actions) = started(easy_config(), Some(coinbase()));
    let genesis = chain.head().1;
    assert!(matches!(actions[0], Action::SetTimer { timer: REFRESH_TIMER, .. }));
    let Action::Propose { parent, timestamp, proposer, .. } = actions[1].clone() else { panic!("{actions:?}") };
    assert_eq!((parent, proposer), (chain.head, coinbase()));
    assert!(timestamp > genesis.timestamp, "after the median time past");

    // The driver builds the block; the engine seals it with the target and starts mining.
    let built = Header { parent, height: Height::new(1), timestamp, proposer, ..genesis.clone() };
    let mut actions = Vec::new();
    engine.step(&chain, timestamp, Event::Built(block(built)), &mut actions).unwrap();
    let [Action::StartMining { template }] = actions.as_slice() else { panic!("{actions:?}") };
    let (target, _) = engine.child_rules(&chain, &genesis).unwrap();
    assert_eq!(template.header.seal, Seal::Pow { target, nonce: 0 });

    // The miner finds a nonce: the block is recorded, added as head and broadcast.
    let (nonce, _) = Grinder::new(&template.header).unwrap().search(0, u64::MAX, &|| false);
    let mined = Arc::new(Block { header: with_nonce(&template.header, nonce.unwrap()), body: template.body.clone() });
    let mut actions = Vec::new();
    engine.step(&chain, timestamp, Event::Mined(Arc::clone(&mined)), &mut actions).unwrap();
    assert!(matches!(
        actions.as_slice(),
        [Action::Persist { .. }, Action::AddBlock { make_head: true, .. }, Action::Broadcast(Outbound::Block(_))]
    ));
    chain.apply(&actions);

    // The head moved: stop mining at once, then a template on the new head.
    let mut actions = Vec::new();
    let event = Event::HeadChanged {
        head: mined.hash(),
        height: Height::new(1),
        rolled_back: vec![],
        applied: vec![mined.hash()],
    };
    engine.step(&chain, timestamp, event, &mut actions).unwrap();
    assert!(matches!(actions[0], Action::StopMining));
    assert!(matches!(actions[1], Action::Propose { parent, .. } if parent == mined.hash()));

    // A template built on a head that is no longer the head is ignored.
    let stale = Header { parent: genesis.hash(), height: Height::new(1), ..genesis };
    let mut actions = Vec::new();
    engine.step(&chain, timestamp, Event::Built(block(stale)), &mut actions).unwrap();
    assert!(actions.is_empty());
}

/// Mines `blocks` blocks with one simulated miner of `hashes_per_second`: each block's interval
/// is the number of hashes the nonce search took over the hash rate. Returns the intervals.
fn mine_at_rate(
    engine: &mut PowEngine,
    chain: &mut TestChain,
    hashes_per_second: u64,
    blocks: usize,
    seed: &mut u64,
) -> Vec<u64> {
    let mut intervals = Vec::with_capacity(blocks);
    for _ in 0..blocks {
        let (_, parent) = chain.head();
        let (target, median) = engine.child_rules(chain, &parent).unwrap();
        let template = Header {
            parent: parent.hash(),
            height: parent.height.next().unwrap(),
            seal: Seal::Pow { target, nonce: 0 },
            ..parent.clone()
        };
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let (nonce, tried) = Grinder::new(&template).unwrap().search(*seed, u64::MAX, &|| false);
        let interval = tried * 1_000 / hashes_per_second;
        let timestamp = (parent.timestamp.as_millis() + interval).max(median.as_millis() + 1);
        // The timestamp is part of the header: the found nonce is for the template's time, so
        // re-mine with the real timestamp (the statistics of `tried` are what matter).
        let header = child_of_header_with_nonce(Header {
            timestamp: Timestamp::from_millis(timestamp),
            ..with_nonce(&template, nonce.unwrap())
        });
        let mut actions = Vec::new();
        engine
            .step(chain, header.timestamp, Event::Block { from: peer(), block: block(header) }, &mut actions)
            .unwrap();
        chain.apply(&actions);
        intervals.push(timestamp - parent.timestamp.as_millis());
    }
    intervals
}

#[test]
fn retarget_holds_the_block_time_and_recovers_from_hash_rate_changes() {
    // Genesis target: 1 in 16 hashes; at 1,000 hashes/s the chain must settle near 1 s blocks.
    let config = easy_config();
    let (mut engine, mut chain, _) = started(config.clone(), None);
    let mut seed = 42;
    let target_ms = config.target_block_time_ms;
    for (rate, phase) in [(1_000, "fixed rate"), (2_000, "rate doubled"), (500, "rate halved")] {
        mine_at_rate(&mut engine, &mut chain, rate, 200, &mut seed); // warm-up
        let intervals = mine_at_rate(&mut engine, &mut chain, rate, 500, &mut seed);
        let mean = intervals.iter().sum::<u64>() / intervals.len() as u64;
        eprintln!("{phase}: mean interval {mean} ms over 500 blocks");
        assert!(mean.abs_diff(target_ms) <= target_ms / 10, "{phase}: mean interval {mean} ms, target {target_ms} ms");
    }
}

#[test]
fn a_side_block_is_stored_only_if_its_branch_could_still_win() {
    let (mut engine, mut chain, _) = started(easy_config(), None);
    let genesis = chain.head().1;
    let t = genesis.timestamp.as_millis();
    let step = |engine: &mut PowEngine, chain: &mut TestChain, header: Header| {
        let now = Timestamp::from_millis(header.timestamp.as_millis());
        let mut actions = Vec::new();
        let result = engine.step(chain, now, Event::Block { from: peer(), block: block(header) }, &mut actions);
        chain.apply(&actions);
        result.map(|()| actions)
    };
    // A chain just past the reorg limit.
    let mut parent = genesis.clone();
    let length = u64::from(limits::REORG_DEPTH_MAX) + 2;
    for height in 1..=length {
        let header = child(&engine, &chain, &parent, t + height * 1_000, coinbase());
        step(&mut engine, &mut chain, header.clone()).unwrap();
        parent = header;
    }
    assert_eq!(chain.head().1.height, Height::new(length));

    // A child of genesis forks below the limit: it can never become the head, so it is not
    // stored, and an honest node may have relayed it, so nobody is blamed.
    let now_ms = t + (length + 1) * 1_000;
    let stale = child(&engine, &chain, &genesis, now_ms, testing::key(2).address());
    let error = step(&mut engine, &mut chain, stale.clone()).unwrap_err();
    assert!(matches!(error, EngineError::Pow(PowError::BranchCannotWin { horizon, .. }) if horizon == Height::new(2)));
    assert!(!error.is_peer_fault());
    assert!(!chain.headers.contains_key(&stale.hash()));

    // A sibling of a block within the limit is stored as a side block.
    let fork_parent = chain.headers[&chain.canonical[&Height::new(100)]].clone();
    let side = child(&engine, &chain, &fork_parent, now_ms, testing::key(2).address());
    let actions = step(&mut engine, &mut chain, side.clone()).unwrap();
    assert!(actions.iter().any(|action| matches!(action, Action::AddBlock { make_head: false, .. })));
    assert!(chain.headers.contains_key(&side.hash()));
}

#[test]
fn a_header_alone_must_meet_a_target_within_the_genesis_limit() {
    let (engine, chain, _) = started(easy_config(), None);
    let genesis = chain.head().1;
    let good = child(&engine, &chain, &genesis, genesis.timestamp.as_millis() + 1_000, coinbase());
    engine.check_header_alone(&good).unwrap();
    // Parentless and claiming the easiest target: it cost nothing, so it is refused on its own.
    let free = child_of_header_with_nonce(Header {
        parent: Hash([3; 32]),
        seal: Seal::Pow { target: Hash([0xff; 32]), nonce: 0 },
        ..good
    });
    let error = engine.check_header_alone(&free).unwrap_err();
    assert!(matches!(error, EngineError::Pow(PowError::TargetAboveLimit { .. })), "{error}");
    assert!(error.is_peer_fault());
}

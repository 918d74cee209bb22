//! Crash safety: a child process imports blocks into a store on disk and is killed with
//! SIGKILL at seeded random moments; after each kill the store must reopen at a block
//! boundary whose state matches an independent in-memory replay of the same blocks, and whose
//! final block is the one the head block proves (every block claims its grandparent final, so
//! a final block written apart from its block would show).
//!
//! The child is this same test binary, re-run with `CHORUS_CRASH_CHILD` (the store) and
//! `CHORUS_CRASH_BLOCKS` (a file of encoded blocks) set: then `crash_child_imports` imports
//! every block the store does not have yet, as fast as it can.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use chorus_chain::Genesis;
use chorus_chain::block::Block;
use chorus_chain::codec;
use chorus_chain::primitives::{Amount, Hash, Height, Timestamp};
use chorus_chain::state::memory::MemoryState;
use chorus_chain::state::{self, BlockTemplate, tree};
use chorus_chain::testing;
use chorus_chain::tx::TxKind;
use chorus_store::Store;

const N_ACCOUNTS: u32 = 64;
const N_BLOCKS: usize = 400;
const TXS_PER_BLOCK: u32 = 40;
const N_KILLS: u32 = 60;
const SEED: u64 = 0xc4a5;
const CHILD_ENV: &str = "CHORUS_CRASH_CHILD";
const BLOCKS_ENV: &str = "CHORUS_CRASH_BLOCKS";

/// The same blocks in every process, and the memory replay's state root after each.
fn chain(n_blocks: usize) -> (Genesis, Vec<Block>, MemoryState) {
    let genesis = testing::genesis(N_ACCOUNTS, 1_000_000);
    let (mut mem, genesis_block) = MemoryState::from_genesis(&genesis).unwrap();
    let mut parent = genesis_block.header;
    let mut nonces = vec![0u64; N_ACCOUNTS as usize];
    let mut rng = testing::Rng(SEED);
    let mut blocks = Vec::with_capacity(n_blocks);
    for _ in 0..n_blocks {
        let txs = (0..TXS_PER_BLOCK)
            .map(|_| {
                let from = rng.below(N_ACCOUNTS) as usize;
                let to = testing::key(rng.below(N_ACCOUNTS)).address();
                let kind = TxKind::Transfer { to, amount: Amount::new(u128::from(rng.next_u64() % 100) + 1) };
                let tx = testing::signed(&genesis, &testing::key(from as u32), nonces[from], kind);
                nonces[from] += 1;
                tx
            })
            .collect();
        let template = BlockTemplate {
            txs,
            votes: vec![],
            proposer: testing::key(0).address(),
            timestamp: Timestamp::from_millis(parent.timestamp.as_millis() + 1_000),
        };
        let block = state::build_block(&mem, &genesis, &parent, template).unwrap();
        let outcome = state::apply_block(&mem, &genesis, &parent, &block).unwrap();
        mem.commit_outcome(&outcome);
        parent = block.header.clone();
        blocks.push(block);
    }
    (genesis, blocks, mem)
}

/// Imports every block above the store's head; prints the head height once open.
fn import_rest(dir: &Path, genesis: &Genesis, blocks: &[Block]) -> Height {
    let mut store = Store::open(dir, genesis).unwrap();
    // Written to the real stdout (the test harness captures only the print macros): the parent
    // waits for this line before its seeded delay.
    let mut stdout = std::io::stdout();
    writeln!(stdout, "opened {}", store.head().height).unwrap();
    stdout.flush().unwrap();
    let start = store.head().height.get() as usize;
    for (index, block) in blocks.iter().enumerate().skip(start) {
        store.import_block_finalizing(block, grandparent(blocks, index)).unwrap();
    }
    store.head().height
}

/// What block `index` of `blocks` claims final: its grandparent, from the third block on.
fn grandparent(blocks: &[Block], index: usize) -> Option<(Height, Hash)> {
    let block = blocks.get(index.checked_sub(2)?)?;
    Some((block.header.height, block.hash()))
}

fn write_blocks(path: &Path, blocks: &[Block]) {
    let mut bytes = Vec::new();
    for block in blocks {
        let encoded = codec::encode(block);
        bytes.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&encoded);
    }
    std::fs::write(path, bytes).unwrap();
}

fn read_blocks(path: &Path) -> Vec<Block> {
    let bytes = std::fs::read(path).unwrap();
    let mut rest = bytes.as_slice();
    let mut blocks = Vec::new();
    while !rest.is_empty() {
        let (len, tail) = rest.split_at(4);
        let len = u32::from_le_bytes(len.try_into().unwrap()) as usize;
        blocks.push(codec::decode(&tail[..len]).unwrap());
        rest = &tail[len..];
    }
    blocks
}

#[test]
fn crash_child_imports() {
    let genesis = testing::genesis(N_ACCOUNTS, 1_000_000);
    match (std::env::var_os(CHILD_ENV), std::env::var_os(BLOCKS_ENV)) {
        (Some(dir), Some(blocks)) => {
            import_rest(Path::new(&dir), &genesis, &read_blocks(Path::new(&blocks)));
        }
        // Run directly: the same code imports a short chain, through the file format.
        _ => {
            let (_, blocks, mem) = chain(20);
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("blocks.bin");
            write_blocks(&file, &blocks);
            let store_dir = dir.path().join("store");
            assert_eq!(import_rest(&store_dir, &genesis, &read_blocks(&file)), Height::new(20));
            let store = Store::open(&store_dir, &genesis).unwrap();
            assert_eq!(store.state_root_at(Height::new(20)).unwrap(), tree::root_at(&mem, Height::new(20)).unwrap());
        }
    }
}

#[test]
fn crash_store_survives_sigkill_during_imports() {
    let (genesis, blocks, _) = chain(N_BLOCKS);
    // Independent replay: the expected state root and accounts at every height.
    let (mut mem, genesis_block) = MemoryState::from_genesis(&genesis).unwrap();
    let accounts_of = |mem: &MemoryState| -> Vec<state::Account> {
        (0..N_ACCOUNTS).map(|index| state::read_account(mem, &testing::key(index).address()).unwrap()).collect()
    };
    let mut roots = vec![genesis_block.header.state_root];
    let mut accounts = vec![accounts_of(&mem)];
    let mut parent = genesis_block.header;
    for block in &blocks {
        let outcome = state::apply_block(&mem, &genesis, &parent, block).unwrap();
        mem.commit_outcome(&outcome);
        roots.push(outcome.state_root);
        accounts.push(accounts_of(&mem));
        parent = block.header.clone();
    }

    let work = tempfile::tempdir().unwrap();
    let blocks_file = work.path().join("blocks.bin");
    write_blocks(&blocks_file, &blocks);
    let mut dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = testing::Rng(SEED ^ 0xfeed);
    let mut heights_seen = Vec::new();
    let mut kills = 0;
    while kills < N_KILLS {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child_imports", "--nocapture", "--test-threads", "1"])
            .env(CHILD_ENV, dir.path())
            .env(BLOCKS_ENV, &blocks_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait until the child has opened the store, then let it import for a seeded while.
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            if stdout.read_line(&mut line).unwrap() == 0 || line.contains("opened ") {
                break;
            }
        }
        std::thread::sleep(Duration::from_micros(rng.next_u64() % 40_000));
        let finished = child.try_wait().unwrap().is_some();
        child.kill().unwrap();
        child.wait().unwrap();
        if !finished {
            kills += 1;
        }

        let store = Store::open(dir.path(), &genesis).unwrap();
        let height = store.head().height;
        let index = height.get() as usize;
        assert_eq!(store.head_hash(), if index == 0 { store.genesis_hash() } else { blocks[index - 1].hash() });
        assert_eq!(store.state_root_at(height).unwrap(), roots[index], "state root after kill {kills} at {height}");
        let proved = index.checked_sub(1).and_then(|head| grandparent(&blocks, head));
        assert_eq!(store.finalized(), proved, "the final block after kill {kills} at {height}");
        for (account, expected) in accounts[index].iter().enumerate() {
            let address = testing::key(account as u32).address();
            assert_eq!(&store.account(&address).unwrap(), expected, "account {account} at {height}");
        }
        heights_seen.push(height.get());
        if index == N_BLOCKS {
            // A fast machine got through every block: start again on an empty store.
            drop(store);
            dir = tempfile::tempdir().unwrap();
        }
    }
    // The kills landed at many different points, not all at one boundary.
    heights_seen.sort_unstable();
    heights_seen.dedup();
    assert!(heights_seen.len() >= 10, "kills landed at only {} distinct heights: {heights_seen:?}", heights_seen.len());
}

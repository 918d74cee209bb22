//! Helpers for tests and benchmarks in this and other crates (feature `testing`).

use crate::crypto::SecretKey;
use crate::genesis::{
    ChainParams, DposConfig, EngineConfig, EngineEntry, Genesis, GenesisAccount, Member, PeerIdText, PosConfig,
    PowConfig,
};
use crate::primitives::{Amount, BlockCount, ChainId, Hash, Height, Timestamp};
use crate::tx::{SignedTransaction, Transaction, TxKind};

/// The key of test account `index` (deterministic).
pub fn key(index: u32) -> SecretKey {
    let mut seed = [0u8; 32];
    seed[..4].copy_from_slice(&index.to_le_bytes());
    seed[31] = 0xc5;
    SecretKey::from_seed(seed)
}

/// A PoW genesis with `n_accounts` accounts (keys from [`key`]) holding `balance` each.
pub fn genesis(n_accounts: u32, balance: u128) -> Genesis {
    Genesis {
        chain_id: ChainId::new("chorus-test").expect("valid chain id"),
        genesis_time: Timestamp::from_millis(1_767_225_600_000),
        engines: vec![EngineEntry {
            from_height: Height::GENESIS,
            engine: EngineConfig::Pow(PowConfig {
                target_block_time_ms: 1_000,
                initial_target: Hash([0xff; 32]),
                retarget_window_blocks: 10,
            }),
        }],
        params: ChainParams {
            block_reward: Amount::new(50),
            min_tx_fee: Amount::new(1),
            unbonding_period: BlockCount(3),
            slash_permille: 500,
        },
        accounts: (0..n_accounts)
            .map(|index| GenesisAccount {
                address: key(index).address(),
                balance: Amount::new(balance),
                stake: Amount::ZERO,
                votes: Vec::new(),
            })
            .collect(),
    }
}

/// A PoS genesis: [`genesis`]'s accounts, of which the first `stakes.len()` are validators with
/// those stakes; slots of 1 s, epochs of `epoch_slots`, a minimum stake of 100.
pub fn pos_genesis(n_accounts: u32, balance: u128, stakes: &[u128], epoch_slots: u64) -> Genesis {
    let mut genesis = genesis(n_accounts, balance);
    let mut validators = Vec::new();
    for (index, stake) in stakes.iter().enumerate() {
        let account = genesis.accounts.get_mut(index).expect("invariant: a validator is one of the accounts");
        account.stake = Amount::new(*stake);
        validators.push(Member { address: account.address, peer_id: PeerIdText::of(&account.address) });
    }
    genesis.engines = vec![EngineEntry {
        from_height: Height::GENESIS,
        engine: EngineConfig::Pos(PosConfig {
            slot_ms: 1_000,
            epoch_slots,
            min_stake: Amount::new(100),
            validators_max: 100,
            validators,
        }),
    }];
    genesis
}

/// A DPoS genesis: [`genesis`]'s accounts, of which the first `delegates` are genesis
/// delegates; slots of 1 s, `producers` scheduled.
pub fn dpos_genesis(n_accounts: u32, balance: u128, delegates: u32, producers: u32) -> Genesis {
    let mut genesis = genesis(n_accounts, balance);
    let delegates = (0..delegates)
        .map(|index| {
            let address = key(index).address();
            Member { address, peer_id: PeerIdText::of(&address) }
        })
        .collect();
    genesis.engines = vec![EngineEntry {
        from_height: Height::GENESIS,
        engine: EngineConfig::Dpos(DposConfig { slot_ms: 1_000, producers, delegates }),
    }];
    genesis
}

/// The index of the test account whose key signs for `address`, among the first `n`.
pub fn index_of(address: &crate::crypto::Address, n: u32) -> Option<u32> {
    (0..n).find(|index| key(*index).address() == *address)
}

/// A signed transaction of `kind` from `key`.
pub fn signed(genesis: &Genesis, key: &SecretKey, nonce: u64, kind: TxKind) -> SignedTransaction {
    Transaction { chain_id: genesis.chain_id.clone(), sender: key.address(), nonce, fee: Amount::new(1), kind }
        .sign(key)
}

/// A small seeded generator (xorshift64*) for test and bench workloads: the same seed gives
/// the same blocks in every process.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: u32) -> u32 {
        let value = self.next_u64().checked_rem(u64::from(n.max(1))).expect("invariant: the divisor is at least 1");
        u32::try_from(value).expect("invariant: below n <= u32::MAX")
    }
}

/// `n_blocks` blocks on the genesis, a second apart, each of `n_txs` transfers of 1 between
/// accounts drawn among the first `n_accounts` test keys (seeded: the same blocks in every
/// process), built and executed in memory; `finish` completes each block (an engine's seal)
/// before its child is built on it. What the import and sync benchmarks feed a node.
pub fn transfer_blocks(
    genesis: &Genesis,
    n_accounts: u32,
    n_blocks: usize,
    n_txs: usize,
    mut finish: impl FnMut(&mut crate::Block),
) -> Vec<crate::Block> {
    use crate::state::{self, BlockTemplate, memory::MemoryState};
    let keys: Vec<SecretKey> = (0..n_accounts).map(key).collect();
    let mut nonces = vec![0u64; keys.len()];
    let (mut mem, genesis_block) = MemoryState::from_genesis(genesis).expect("the genesis is valid");
    let mut parent = genesis_block.header;
    let mut rng = Rng(0x5eed);
    let mut blocks = Vec::with_capacity(n_blocks);
    for _ in 0..n_blocks {
        let txs = (0..n_txs)
            .map(|_| {
                let from = rng.below(n_accounts) as usize;
                let to = keys.get(rng.below(n_accounts) as usize).expect("invariant: below n_accounts").address();
                let nonce = nonces.get_mut(from).expect("invariant: below n_accounts");
                let sender = keys.get(from).expect("invariant: below n_accounts");
                let tx = signed(genesis, sender, *nonce, TxKind::Transfer { to, amount: Amount::new(1) });
                *nonce = nonce.saturating_add(1);
                tx
            })
            .collect();
        let template = BlockTemplate {
            txs,
            votes: vec![],
            proposer: key(0).address(),
            timestamp: Timestamp::from_millis(parent.timestamp.as_millis().saturating_add(1_000)),
        };
        let mut block = state::build_block(&mem, genesis, &parent, template).expect("the transfers are valid");
        finish(&mut block);
        let outcome = state::apply_block(&mem, genesis, &parent, &block).expect("the block applies");
        mem.commit_outcome(&outcome);
        parent = block.header.clone();
        blocks.push(block);
    }
    blocks
}

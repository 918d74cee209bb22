//! `chorusd dev`: the embedded development chain and its well-known funded accounts.
//!
//! The dev accounts' keys are public on purpose (README lists them) so that `chorus` can import
//! them; a dev chain is never a place for value. Account `i`'s 32-byte ed25519 seed is
//! SHA-256 of `"chorus dev account i"`.

use chorus_chain::SecretKey;
use chorus_chain::crypto::Address;
use chorus_chain::genesis::{
    ChainParams, DPOS_PRODUCERS_DEFAULT, DposConfig, EngineConfig, EngineEntry, Genesis, GenesisAccount, Member,
    PeerIdText, PosConfig, PowConfig, RaftConfig, RaftMember,
};
use chorus_chain::primitives::{Amount, BlockCount, ChainId, Hash, Height, Timestamp};
use sha2::{Digest, Sha256};

/// Dev accounts funded in the dev genesis.
pub const DEV_ACCOUNTS: u32 = 4;

/// Each dev account's balance, in base units.
pub const DEV_BALANCE: u128 = 1_000_000_000_000;

/// The dev validator's bonded stake under PoS (also the chain's minimum stake).
pub const DEV_STAKE: u128 = 1_000_000;

/// The chain id of every dev chain.
pub const DEV_CHAIN_ID: &str = "chorus-dev";

/// Dev account `index`'s key (well known: never hold value with it).
pub fn dev_key(index: u32) -> SecretKey {
    SecretKey::from_seed(Sha256::digest(format!("chorus dev account {index}")).into())
}

/// The dev genesis for `engine`, starting at `genesis_time`, aiming at a block every
/// `block_time_ms`; under PoS, `validator` (the dev node's key) is the one validator.
pub fn dev_genesis(
    engine: &str,
    genesis_time: Timestamp,
    block_time_ms: u64,
    validator: Address,
) -> Result<Genesis, String> {
    let mut accounts: Vec<GenesisAccount> = (0..DEV_ACCOUNTS)
        .map(|index| GenesisAccount {
            address: dev_key(index).address(),
            balance: Amount::new(DEV_BALANCE),
            stake: Amount::ZERO,
            votes: Vec::new(),
        })
        .collect();
    let engine = match engine {
        "pow" => EngineConfig::Pow(PowConfig {
            // The first blocks come at once; retargets then slow them to the block time.
            target_block_time_ms: block_time_ms,
            initial_target: Hash::from_hex("0000ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff")
                .expect("invariant: 64 hex digits"),
            retarget_window_blocks: 10,
        }),
        "pos" => {
            accounts.push(GenesisAccount {
                address: validator,
                balance: Amount::new(DEV_BALANCE),
                stake: Amount::new(DEV_STAKE),
                votes: Vec::new(),
            });
            EngineConfig::Pos(PosConfig {
                slot_ms: block_time_ms,
                epoch_slots: 16,
                min_stake: Amount::new(DEV_STAKE),
                validators_max: 100,
                validators: vec![Member { address: validator, peer_id: PeerIdText::of(&validator) }],
            })
        }
        "dpos" => {
            accounts.push(GenesisAccount {
                address: validator,
                balance: Amount::new(DEV_BALANCE),
                stake: Amount::new(DEV_STAKE),
                votes: vec![validator],
            });
            EngineConfig::Dpos(DposConfig {
                slot_ms: block_time_ms,
                producers: DPOS_PRODUCERS_DEFAULT,
                delegates: vec![Member { address: validator, peer_id: PeerIdText::of(&validator) }],
            })
        }
        // The one member commits each block as it is built; `block_time_ms` does not apply
        // (blocks come when transactions do).
        "raft" => EngineConfig::Raft(RaftConfig {
            tick_ms: 100,
            election_ticks: 10,
            heartbeat_ticks: 2,
            members: vec![RaftMember { id: 1, address: validator, peer_id: PeerIdText::of(&validator) }],
        }),
        other => return Err(format!("unknown engine {other:?}; expected pow, pos, dpos or raft")),
    };
    Ok(Genesis {
        chain_id: ChainId::new(DEV_CHAIN_ID).expect("invariant: a valid chain id"),
        genesis_time,
        engines: vec![EngineEntry { from_height: Height::GENESIS, engine }],
        params: ChainParams {
            block_reward: Amount::new(50),
            min_tx_fee: Amount::new(1),
            unbonding_period: BlockCount(10),
            slash_permille: 500,
        },
        accounts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_genesis_is_valid_and_funds_the_documented_keys() {
        let node = dev_key(9).address();
        let genesis = dev_genesis("pow", Timestamp::from_millis(1_767_225_600_000), 1_000, node).expect("pow");
        genesis.validate().expect("valid");
        assert_eq!(genesis.accounts.len(), DEV_ACCOUNTS as usize);
        // README documents this seed for account 0.
        assert_eq!(hex::encode(dev_key(0).seed()), hex::encode(Sha256::digest(b"chorus dev account 0")));
        let pos = dev_genesis("pos", Timestamp::from_millis(1_767_225_600_000), 1_000, node).expect("pos");
        pos.validate().expect("valid");
        match pos.engine_at(Height::GENESIS) {
            EngineConfig::Pos(config) => assert_eq!(config.validators[0].address, node, "the node is the validator"),
            other => panic!("a pos genesis, got {}", other.name()),
        }
        let raft = dev_genesis("raft", Timestamp::from_millis(1_767_225_600_000), 1_000, node).expect("raft");
        raft.validate().expect("valid");
        match raft.engine_at(Height::GENESIS) {
            EngineConfig::Raft(config) => assert_eq!(config.members[0].address, node, "the node is the one member"),
            other => panic!("a raft genesis, got {}", other.name()),
        }
        assert!(dev_genesis("pbft", Timestamp::from_millis(0), 1_000, node).unwrap_err().contains("unknown engine"));
    }
}

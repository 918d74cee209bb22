//! The genesis file: parsing and validation of the JSON document that defines a chain.
//!
//! A genesis names the chain, its start time, the consensus engine schedule (which engine runs
//! from which height), the economic parameters and the initial accounts. [`Genesis::from_json`]
//! parses and then [`Genesis::validate`]s; a [`Genesis`] obtained from it upholds these
//! invariants:
//!
//! - the engine schedule has 1 to [`limits::ENGINE_SCHEDULE_MAX`] entries, the first starts at
//!   height 0 and start heights strictly ascend, so [`Genesis::engine_at`] always has an answer;
//! - every engine's timing and set parameters are in range, and validator, delegate and member
//!   sets are non-empty, bounded by [`limits::VALIDATORS_MAX`] and free of duplicate addresses,
//!   peer ids and (Raft) member ids; each member's peer id is its address's key
//!   ([`PeerIdText::of`]: a node's one key is its address, its network identity and its signing
//!   key); every PoS validator holds stake in `accounts`; a PoW
//!   retarget window is at most [`limits::RETARGET_WINDOW_BLOCKS_MAX`] blocks and its
//!   `initial_target` is also the easiest target the chain ever allows;
//! - `params.unbonding_period_blocks >= 1` and `params.slash_permille <= 1000`;
//! - at most [`limits::GENESIS_ACCOUNTS_MAX`] accounts, no address twice, and the sum of all
//!   balances and stakes fits in a `u128`.
//!
//! Every error names the field it is about as a path into the JSON document
//! (`engines[1].engine.pos.validators[0].peer_id`), and says what was expected. Unknown fields
//! are refused everywhere, so a mistyped name is an error rather than a silent default.
//! Validation is deterministic: ordered collections only, no floats. Reading the file is the
//! node's job (this crate does no I/O); it hands the bytes to [`Genesis::from_json`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::codec::{Decode, Encode, backend};
use crate::crypto::Address;
use crate::limits;
use crate::primitives::{Amount, BlockCount, ChainId, Hash, Height, Timestamp};

/// Producers per DPoS round when the genesis does not say.
pub const DPOS_PRODUCERS_DEFAULT: u32 = 21;

const BASE58BTC_ALPHABET: &str = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// Why a genesis file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenesisError {
    #[error("genesis file is {size_bytes} bytes, expected at most {} bytes", limits::GENESIS_BYTES_MAX)]
    TooLarge { size_bytes: u64 },
    #[error("genesis field {field}: {reason}")]
    Json { field: String, reason: String },
    #[error("genesis field {field} is invalid: {reason}")]
    Invalid { field: String, reason: String },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> GenesisError {
    GenesisError::Invalid { field: field.into(), reason: reason.into() }
}

/// A libp2p peer id in its base58btc text form (`12D3KooW...`), checked for alphabet and length
/// only: this type does not decode the multihash inside.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Serialize)]
#[serde(transparent)]
pub struct PeerIdText(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerIdError {
    #[error(
        "peer id must be {} to {} base58btc characters, got {got}",
        limits::PEER_ID_CHARS_MIN,
        limits::PEER_ID_CHARS_MAX
    )]
    Length { got: usize },
    #[error("peer id must hold only base58btc characters (no 0, O, I or l), got {got:?} at position {position}")]
    Character { got: char, position: usize },
}

impl PeerIdText {
    /// Checks the base58btc alphabet, then the length.
    pub fn new(text: &str) -> Result<PeerIdText, PeerIdError> {
        if let Some((position, got)) = text.chars().enumerate().find(|(_, c)| !BASE58BTC_ALPHABET.contains(*c)) {
            return Err(PeerIdError::Character { got, position });
        }
        // Only ASCII remains, so bytes are characters.
        if !(limits::PEER_ID_CHARS_MIN..=limits::PEER_ID_CHARS_MAX).contains(&text.len()) {
            return Err(PeerIdError::Length { got: text.len() });
        }
        Ok(PeerIdText(text.to_owned()))
    }

    /// The peer id of the libp2p identity whose ed25519 key is `address`: the base58btc text
    /// of an identity multihash over the key's protobuf encoding (`12D3KooW...`).
    pub fn of(address: &Address) -> PeerIdText {
        // Identity multihash (code 0, length 36) of the protobuf PublicKey message:
        // field 1 (key type) = 1 (Ed25519), field 2 (data) = the 32 key bytes.
        let mut bytes = vec![0x00, 0x24, 0x08, 0x01, 0x12, 0x20];
        bytes.extend_from_slice(address.as_bytes());
        PeerIdText(base58btc(&bytes))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Base58 in the bitcoin alphabet: leading zero bytes become '1's, the rest is the big-endian
/// number in base 58.
fn base58btc(bytes: &[u8]) -> String {
    let alphabet = BASE58BTC_ALPHABET.as_bytes();
    let zeros = bytes.iter().take_while(|byte| **byte == 0).count();
    // Base-58 digits, least significant first. Each digit is below 58, so a carry stays below
    // 58 * 256 + 256 and the wrapping operations never wrap.
    let mut digits: Vec<u8> = Vec::new();
    for byte in bytes.get(zeros..).unwrap_or_default() {
        let mut carry = u32::from(*byte);
        for digit in &mut digits {
            carry = u32::from(*digit).wrapping_mul(256).wrapping_add(carry);
            *digit = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let mut text = "1".repeat(zeros);
    text.extend(digits.iter().rev().filter_map(|digit| alphabet.get(usize::from(*digit)).copied().map(char::from)));
    text
}

impl fmt::Display for PeerIdText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PeerIdText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerIdText({})", self.0)
    }
}

impl std::str::FromStr for PeerIdText {
    type Err = PeerIdError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        PeerIdText::new(text)
    }
}

impl<'de> Deserialize<'de> for PeerIdText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        PeerIdText::new(&text).map_err(serde::de::Error::custom)
    }
}

impl<Context> Decode<Context> for PeerIdText {
    fn decode<D: backend::de::Decoder<Context = Context>>(
        decoder: &mut D,
    ) -> Result<Self, backend::error::DecodeError> {
        let text = String::decode(decoder)?;
        PeerIdText::new(&text).map_err(|error| backend::error::DecodeError::OtherString(error.to_string()))
    }
}
backend::impl_borrow_decode!(PeerIdText);

/// A PoS validator or DPoS delegate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub address: Address,
    pub peer_id: PeerIdText,
}

/// A Raft cluster member; `id` is its Raft node id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
#[serde(deny_unknown_fields)]
pub struct RaftMember {
    pub id: u64,
    pub address: Address,
    pub peer_id: PeerIdText,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
#[serde(deny_unknown_fields)]
pub struct PowConfig {
    pub target_block_time_ms: u64,
    /// The first blocks' target, and the easiest the retarget rule ever gives (the floor that
    /// keeps a side chain from becoming free to extend).
    #[serde(deserialize_with = "deserialize_target")]
    pub initial_target: Hash,
    pub retarget_window_blocks: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
#[serde(deny_unknown_fields)]
pub struct PosConfig {
    pub slot_ms: u64,
    pub epoch_slots: u64,
    /// The stake an account needs to join the set from the next epoch on (genesis validators
    /// need only some stake).
    pub min_stake: Amount,
    /// The most validators in an epoch's set: the largest stakes.
    pub validators_max: u32,
    pub validators: Vec<Member>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
#[serde(deny_unknown_fields)]
pub struct DposConfig {
    pub slot_ms: u64,
    #[serde(default = "default_producers")]
    pub producers: u32,
    pub delegates: Vec<Member>,
}

fn default_producers() -> u32 {
    DPOS_PRODUCERS_DEFAULT
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
#[serde(deny_unknown_fields)]
pub struct RaftConfig {
    pub tick_ms: u64,
    pub election_ticks: u32,
    pub heartbeat_ticks: u32,
    pub members: Vec<RaftMember>,
}

/// One consensus engine and its settings; JSON `{"pow": {...}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum EngineConfig {
    Pow(PowConfig),
    Pos(PosConfig),
    Dpos(DposConfig),
    Raft(RaftConfig),
}

impl EngineConfig {
    /// The engine's JSON tag.
    pub fn name(&self) -> &'static str {
        match self {
            EngineConfig::Pow(_) => "pow",
            EngineConfig::Pos(_) => "pos",
            EngineConfig::Dpos(_) => "dpos",
            EngineConfig::Raft(_) => "raft",
        }
    }
}

/// `engine` runs from block `from_height` until the next entry's height.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
#[serde(deny_unknown_fields)]
pub struct EngineEntry {
    pub from_height: Height,
    pub engine: EngineConfig,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
#[serde(deny_unknown_fields)]
pub struct ChainParams {
    pub block_reward: Amount,
    pub min_tx_fee: Amount,
    #[serde(rename = "unbonding_period_blocks")]
    pub unbonding_period: BlockCount,
    pub slash_permille: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
#[serde(deny_unknown_fields)]
pub struct GenesisAccount {
    pub address: Address,
    pub balance: Amount,
    #[serde(default)]
    pub stake: Amount,
    /// Genesis delegates this account approves with its stake (DPoS), as a `Vote` would.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub votes: Vec<Address>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    pub chain_id: ChainId,
    #[serde(rename = "genesis_time_ms")]
    pub genesis_time: Timestamp,
    pub engines: Vec<EngineEntry>,
    pub params: ChainParams,
    pub accounts: Vec<GenesisAccount>,
}

/// Like `Hash`'s own parsing, with a message that says what a target looks like.
fn deserialize_target<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Hash, D::Error> {
    let text = String::deserialize(deserializer)?;
    Hash::from_hex(&text).map_err(|error| {
        serde::de::Error::custom(format!(
            "expected 64 hex digits (32 bytes, optional 0x prefix), got {text:?} ({error})"
        ))
    })
}

impl Genesis {
    /// Identifies the genesis file: the hash of its canonical encoding. A store remembers the
    /// one it was made for and refuses any other.
    pub fn file_hash(&self) -> Hash {
        Hash::tagged(b"chorus/genesis-file/v1", &crate::codec::encode(self))
    }

    /// Parses a genesis document and validates it.
    pub fn from_json(bytes: &[u8]) -> Result<Genesis, GenesisError> {
        if bytes.len() as u64 > limits::GENESIS_BYTES_MAX {
            return Err(GenesisError::TooLarge { size_bytes: bytes.len() as u64 });
        }
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let genesis: Genesis = serde_path_to_error::deserialize(&mut deserializer).map_err(path_error)?;
        deserializer.end().map_err(|error| json_error(String::new(), &error))?;
        genesis.validate()?;
        Ok(genesis)
    }

    /// The genesis as indented JSON, in the form [`Genesis::from_json`] reads.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self)
            .expect("invariant: genesis types serialize to JSON without maps of non-string keys or floats")
    }

    /// The engine that runs at `height`: the last schedule entry starting at or below it.
    ///
    /// Panics only on a genesis that fails [`Genesis::validate`] (no entry at height 0).
    pub fn engine_at(&self, height: Height) -> &EngineConfig {
        let entry = self
            .engines
            .iter()
            .rev()
            .find(|entry| entry.from_height <= height)
            .expect("invariant: a validated schedule has an entry from height 0");
        &entry.engine
    }

    /// Checks every semantic rule listed in the module documentation.
    pub fn validate(&self) -> Result<(), GenesisError> {
        validate_schedule(&self.engines)?;
        validate_params(&self.params)?;
        let stakes = validate_accounts(&self.accounts)?;
        for (index, entry) in self.engines.iter().enumerate() {
            validate_engine(&format!("engines[{index}].engine.{}", entry.engine.name()), &entry.engine, &stakes)?;
        }
        self.validate_votes()
    }

    /// Every DPoS engine's genesis delegates.
    pub fn delegates(&self) -> BTreeSet<Address> {
        self.engines
            .iter()
            .flat_map(|entry| match &entry.engine {
                EngineConfig::Dpos(config) => config.delegates.iter().map(|member| member.address).collect(),
                _ => Vec::new(),
            })
            .collect()
    }

    /// Accounts approve at most `VOTE_DELEGATES_MAX` genesis delegates each, each once.
    fn validate_votes(&self) -> Result<(), GenesisError> {
        let delegates = self.delegates();
        for (index, account) in self.accounts.iter().enumerate() {
            let field = format!("accounts[{index}].votes");
            if account.votes.len() > limits::VOTE_DELEGATES_MAX as usize {
                let (max, got) = (limits::VOTE_DELEGATES_MAX, account.votes.len());
                return Err(invalid(field, format!("expected at most {max} delegates, got {got}")));
            }
            check_unique(&field, "delegate", account.votes.iter().copied())?;
            if let Some(stranger) = account.votes.iter().find(|address| !delegates.contains(address)) {
                return Err(invalid(field, format!("expected genesis delegates only, got {stranger}")));
            }
        }
        Ok(())
    }
}

fn path_error(error: serde_path_to_error::Error<serde_json::Error>) -> GenesisError {
    let field = error.path().to_string();
    json_error(if field == "." { String::new() } else { field }, error.inner())
}

/// Data errors lose serde_json's "at line L column C" (the field path locates them); syntax
/// errors keep it, since the path may not reach the fault.
fn json_error(field: String, error: &serde_json::Error) -> GenesisError {
    let field = if field.is_empty() { "(top level)".to_owned() } else { field };
    let mut reason = error.to_string();
    if error.is_data() {
        let location = format!(" at line {} column {}", error.line(), error.column());
        if let Some(stripped) = reason.strip_suffix(&location) {
            reason = stripped.to_owned();
        }
    }
    GenesisError::Json { field, reason }
}

fn validate_schedule(engines: &[EngineEntry]) -> Result<(), GenesisError> {
    check_count("engines", engines.len(), limits::ENGINE_SCHEDULE_MAX, "engine schedule entries")?;
    // check_count refused an empty schedule.
    if let Some(first) = engines.first()
        && first.from_height != Height::GENESIS
    {
        return Err(invalid(
            "engines[0].from_height",
            format!("expected 0 (the first engine must run from genesis), got {}", first.from_height),
        ));
    }
    for (index, (earlier, later)) in engines.iter().zip(engines.iter().skip(1)).enumerate() {
        if later.from_height <= earlier.from_height {
            return Err(invalid(
                format!("engines[{}].from_height", index.saturating_add(1)),
                format!(
                    "expected a height above engines[{index}].from_height ({}), got {}",
                    earlier.from_height, later.from_height
                ),
            ));
        }
    }
    Ok(())
}

fn validate_params(params: &ChainParams) -> Result<(), GenesisError> {
    if params.unbonding_period.0 < 1 {
        return Err(invalid("params.unbonding_period_blocks", "expected at least 1 block, got 0"));
    }
    if params.slash_permille > 1000 {
        return Err(invalid(
            "params.slash_permille",
            format!("expected at most 1000 (per mille), got {}", params.slash_permille),
        ));
    }
    Ok(())
}

/// Each account's index in `accounts` and its stake, by address.
type Stakes = BTreeMap<Address, (usize, Amount)>;

/// Checks the accounts; returns their stakes for the engine checks.
fn validate_accounts(accounts: &[GenesisAccount]) -> Result<Stakes, GenesisError> {
    if accounts.len() > limits::GENESIS_ACCOUNTS_MAX as usize {
        return Err(invalid(
            "accounts",
            format!("expected at most {} accounts, got {}", limits::GENESIS_ACCOUNTS_MAX, accounts.len()),
        ));
    }
    check_unique("accounts", "address", accounts.iter().map(|account| account.address))?;
    let mut total = Amount::ZERO;
    for (index, account) in accounts.iter().enumerate() {
        for (name, amount) in [("balance", account.balance), ("stake", account.stake)] {
            total = total.checked_add(amount).map_err(|_| {
                invalid(
                    format!("accounts[{index}].{name}"),
                    format!(
                        "expected the total of all balances and stakes to fit in 128 bits, adding {amount} overflows"
                    ),
                )
            })?;
        }
    }
    Ok(accounts.iter().enumerate().map(|(index, account)| (account.address, (index, account.stake))).collect())
}

fn validate_engine(prefix: &str, engine: &EngineConfig, stakes: &Stakes) -> Result<(), GenesisError> {
    match engine {
        EngineConfig::Pow(config) => validate_pow(prefix, config),
        EngineConfig::Pos(config) => validate_pos(prefix, config, stakes),
        EngineConfig::Dpos(config) => validate_dpos(prefix, config),
        EngineConfig::Raft(config) => validate_raft(prefix, config),
    }
}

fn validate_pow(prefix: &str, config: &PowConfig) -> Result<(), GenesisError> {
    check_positive(prefix, "target_block_time_ms", config.target_block_time_ms)?;
    if config.initial_target == Hash::ZERO {
        return Err(invalid(
            format!("{prefix}.initial_target"),
            "expected a nonzero target (no block hash can be below zero), got all zeros",
        ));
    }
    let window = config.retarget_window_blocks;
    if window == 0 || window > limits::RETARGET_WINDOW_BLOCKS_MAX {
        return Err(invalid(
            format!("{prefix}.retarget_window_blocks"),
            format!("expected 1 to {} blocks, got {window}", limits::RETARGET_WINDOW_BLOCKS_MAX),
        ));
    }
    Ok(())
}

fn validate_pos(prefix: &str, config: &PosConfig, stakes: &Stakes) -> Result<(), GenesisError> {
    check_positive(prefix, "slot_ms", config.slot_ms)?;
    check_positive(prefix, "epoch_slots", config.epoch_slots)?;
    if config.min_stake.is_zero() {
        return Err(invalid(format!("{prefix}.min_stake"), "expected a stake above 0, got 0"));
    }
    if !(1..=limits::VALIDATORS_MAX).contains(&config.validators_max) {
        return Err(invalid(
            format!("{prefix}.validators_max"),
            format!("expected 1 to {} validators, got {}", limits::VALIDATORS_MAX, config.validators_max),
        ));
    }
    validate_members(&format!("{prefix}.validators"), &config.validators, "validators")?;
    for (index, validator) in config.validators.iter().enumerate() {
        let found = match stakes.get(&validator.address) {
            Some((_, stake)) if !stake.is_zero() => continue,
            Some((account, _)) => format!("accounts[{account}] has stake 0"),
            None => "no account has it".to_owned(),
        };
        return Err(invalid(
            format!("{prefix}.validators[{index}].address"),
            format!("expected an entry in accounts with stake above 0 for {}, but {found}", validator.address),
        ));
    }
    Ok(())
}

fn validate_dpos(prefix: &str, config: &DposConfig) -> Result<(), GenesisError> {
    check_positive(prefix, "slot_ms", config.slot_ms)?;
    if !(1..=limits::VALIDATORS_MAX).contains(&config.producers) {
        return Err(invalid(
            format!("{prefix}.producers"),
            format!("expected 1 to {} producers, got {}", limits::VALIDATORS_MAX, config.producers),
        ));
    }
    validate_members(&format!("{prefix}.delegates"), &config.delegates, "delegates")
}

fn validate_raft(prefix: &str, config: &RaftConfig) -> Result<(), GenesisError> {
    check_positive(prefix, "tick_ms", config.tick_ms)?;
    check_positive(prefix, "heartbeat_ticks", u64::from(config.heartbeat_ticks))?;
    if config.election_ticks <= config.heartbeat_ticks {
        return Err(invalid(
            format!("{prefix}.election_ticks"),
            format!("expected more than heartbeat_ticks ({}), got {}", config.heartbeat_ticks, config.election_ticks),
        ));
    }
    let field = format!("{prefix}.members");
    check_count(&field, config.members.len(), limits::VALIDATORS_MAX, "members")?;
    if let Some(index) = config.members.iter().position(|member| member.id == 0) {
        return Err(invalid(format!("{field}[{index}].id"), "expected a nonzero raft id, got 0"));
    }
    check_unique(&field, "id", config.members.iter().map(|member| member.id))?;
    check_unique(&field, "address", config.members.iter().map(|member| member.address))?;
    check_peer_ids(&field, config.members.iter().map(|member| (&member.address, &member.peer_id)))
}

/// A non-empty, bounded set with unique addresses, each with its own key's peer id.
fn validate_members(field: &str, members: &[Member], noun: &str) -> Result<(), GenesisError> {
    check_count(field, members.len(), limits::VALIDATORS_MAX, noun)?;
    check_unique(field, "address", members.iter().map(|member| member.address))?;
    check_peer_ids(field, members.iter().map(|member| (&member.address, &member.peer_id)))
}

/// Refuses a member whose peer id is not its address's key: its blocks and votes would be
/// signed by one key and its connection by another.
fn check_peer_ids<'a>(
    list: &str,
    members: impl Iterator<Item = (&'a Address, &'a PeerIdText)>,
) -> Result<(), GenesisError> {
    for (index, (address, peer_id)) in members.enumerate() {
        let expected = PeerIdText::of(address);
        if *peer_id != expected {
            return Err(invalid(
                format!("{list}[{index}].peer_id"),
                format!("expected {expected}, the peer id of {address}'s key, got {peer_id}"),
            ));
        }
    }
    Ok(())
}

fn check_positive(prefix: &str, name: &str, value: u64) -> Result<(), GenesisError> {
    if value == 0 {
        return Err(invalid(format!("{prefix}.{name}"), "expected a value above 0, got 0"));
    }
    Ok(())
}

fn check_count(field: &str, count: usize, max: u32, noun: &str) -> Result<(), GenesisError> {
    if count == 0 || count > max as usize {
        return Err(invalid(field, format!("expected 1 to {max} {noun}, got {count}")));
    }
    Ok(())
}

/// Refuses the second occurrence of any value, naming its index and the first one's.
fn check_unique<T: Ord + fmt::Display>(
    list: &str,
    name: &str,
    values: impl Iterator<Item = T>,
) -> Result<(), GenesisError> {
    let mut seen = BTreeMap::new();
    for (index, value) in values.enumerate() {
        if let Some(first) = seen.get(&value) {
            return Err(invalid(
                format!("{list}[{index}].{name}"),
                format!("expected a unique {name}, got {value} again (first at {list}[{first}])"),
            ));
        }
        seen.insert(value, index);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{self, Canonical};
    use crate::crypto::SecretKey;

    const PEER_A: &str = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";

    const EXAMPLE: &str = r#"{
        "chain_id": "chorus-test.1",
        "genesis_time_ms": 1700000000000,
        "engines": [
            {"from_height": 0, "engine": {"pow": {
                "target_block_time_ms": 5000,
                "initial_target": "0x00000fffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
                "retarget_window_blocks": 60}}},
            {"from_height": 100, "engine": {"pos": {
                "slot_ms": 2000, "epoch_slots": 32, "min_stake": 100, "validators_max": 50,
                "validators": [{"address": "ADDR1", "peer_id": "PEER_A"},
                               {"address": "ADDR2", "peer_id": "PEER_B"}]}}},
            {"from_height": 200, "engine": {"dpos": {
                "slot_ms": 1000,
                "delegates": [{"address": "ADDR1", "peer_id": "PEER_A"},
                              {"address": "ADDR2", "peer_id": "PEER_B"}]}}},
            {"from_height": 300, "engine": {"raft": {
                "tick_ms": 100, "election_ticks": 10, "heartbeat_ticks": 2,
                "members": [{"id": 1, "address": "ADDR1", "peer_id": "PEER_A"},
                            {"id": 2, "address": "ADDR2", "peer_id": "PEER_B"}]}}}
        ],
        "params": {"block_reward": "5000000000", "min_tx_fee": 1000,
                   "unbonding_period_blocks": 1000, "slash_permille": 50},
        "accounts": [
            {"address": "ADDR1", "balance": "1000000000000000000000000", "stake": "500000"},
            {"address": "ADDR2", "balance": 2500, "stake": 700}
        ]
    }"#;

    fn address(seed: u8) -> String {
        SecretKey::from_seed([seed; 32]).address().to_string()
    }

    fn example_json() -> String {
        EXAMPLE
            .replace("ADDR1", &address(1))
            .replace("ADDR2", &address(2))
            .replace("PEER_A", PeerIdText::of(&SecretKey::from_seed([1; 32]).address()).as_str())
            .replace("PEER_B", PeerIdText::of(&SecretKey::from_seed([2; 32]).address()).as_str())
    }

    fn example() -> Genesis {
        Genesis::from_json(example_json().as_bytes()).expect("example genesis is valid")
    }

    /// The example JSON with `from` replaced by `to` (exactly one occurrence expected).
    fn edited(from: &str, to: &str) -> String {
        let json = example_json();
        assert_eq!(json.matches(from).count(), 1, "edit target {from:?} must occur once");
        json.replacen(from, to, 1)
    }

    fn json_field(json: &str) -> (String, String) {
        match Genesis::from_json(json.as_bytes()) {
            Err(GenesisError::Json { field, reason }) => (field, reason),
            other => panic!("expected a JSON error, got {other:?}"),
        }
    }

    /// Applies `edit` to the example and returns the field `validate` names.
    fn invalid_field(edit: impl FnOnce(&mut Genesis)) -> String {
        let mut genesis = example();
        edit(&mut genesis);
        match genesis.validate() {
            Err(GenesisError::Invalid { field, .. }) => field,
            other => panic!("expected an Invalid error, got {other:?}"),
        }
    }

    fn pow(genesis: &mut Genesis) -> &mut PowConfig {
        match &mut genesis.engines[0].engine {
            EngineConfig::Pow(config) => config,
            other => panic!("engine 0 is {}", other.name()),
        }
    }

    fn pos(genesis: &mut Genesis) -> &mut PosConfig {
        match &mut genesis.engines[1].engine {
            EngineConfig::Pos(config) => config,
            other => panic!("engine 1 is {}", other.name()),
        }
    }

    fn dpos(genesis: &mut Genesis) -> &mut DposConfig {
        match &mut genesis.engines[2].engine {
            EngineConfig::Dpos(config) => config,
            other => panic!("engine 2 is {}", other.name()),
        }
    }

    fn raft(genesis: &mut Genesis) -> &mut RaftConfig {
        match &mut genesis.engines[3].engine {
            EngineConfig::Raft(config) => config,
            other => panic!("engine 3 is {}", other.name()),
        }
    }

    fn peer(last: char) -> PeerIdText {
        PeerIdText::new(&format!("{}{last}", &PEER_A[..PEER_A.len() - 1])).expect("valid peer id")
    }

    fn member(seed: u8, index: usize) -> Member {
        let mut secret = [seed; 32];
        secret[..8].copy_from_slice(&(index as u64).to_le_bytes());
        let address = SecretKey::from_seed(secret).address();
        Member { address, peer_id: PeerIdText::of(&address) }
    }

    const KNOWN_PEER_OF_SEED_1: &str = "12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5";

    #[test]
    fn a_peer_id_is_its_keys_libp2p_identity() {
        // libp2p's text form of the identity with secret seed [1; 32] (computed by
        // `PeerId::from_public_key`; the p2p crate checks the two agree on many keys).
        let address = SecretKey::from_seed([1; 32]).address();
        assert_eq!(PeerIdText::of(&address).as_str(), KNOWN_PEER_OF_SEED_1);
        assert_eq!(base58btc(&[]), "");
        assert_eq!(base58btc(&[0, 0, 1]), "112");
        assert_eq!(base58btc(&[0xff]), "5Q");
        assert_eq!(base58btc(b"hello world"), "StV1DL6CwTryKyV");
    }

    #[derive(Debug, PartialEq, Encode, Decode)]
    struct Wrapped<T>(T);
    impl Canonical for Wrapped<Genesis> {
        const BYTES_MAX: u32 = limits::DECODE_BYTES_MAX;
    }
    impl Canonical for Wrapped<PeerIdText> {
        const BYTES_MAX: u32 = 128;
    }
    impl Canonical for Wrapped<String> {
        const BYTES_MAX: u32 = 128;
    }

    #[test]
    fn example_parses_round_trips_and_schedules() {
        let genesis = example();
        assert_eq!(genesis.chain_id.as_str(), "chorus-test.1");
        assert_eq!(genesis.genesis_time, Timestamp::from_millis(1_700_000_000_000));
        assert_eq!(genesis.accounts[0].balance, Amount::new(1_000_000_000_000_000_000_000_000));
        assert_eq!(genesis.accounts[1].balance, Amount::new(2500));
        assert_eq!(genesis.params.min_tx_fee, Amount::new(1000));
        assert_eq!(genesis.params.unbonding_period, BlockCount(1000));
        assert_eq!(dpos(&mut genesis.clone()).producers, DPOS_PRODUCERS_DEFAULT);

        let reparsed = Genesis::from_json(genesis.to_json_pretty().as_bytes()).expect("pretty JSON parses");
        assert_eq!(reparsed, genesis);
        let bytes = codec::encode(&Wrapped(genesis.clone()));
        assert_eq!(codec::decode::<Wrapped<Genesis>>(&bytes), Ok(Wrapped(genesis.clone())));

        for (height, name) in [(0, "pow"), (99, "pow"), (100, "pos"), (250, "dpos"), (10_000, "raft")] {
            assert_eq!(genesis.engine_at(Height::new(height)).name(), name, "height {height}");
        }
        assert_eq!(genesis.engine_at(Height::new(300)), &genesis.engines[3].engine);
    }

    #[test]
    fn amounts_accept_strings_and_integers() {
        let json = edited(r#""balance": 2500"#, r#""balance": "2500""#);
        assert_eq!(Genesis::from_json(json.as_bytes()).expect("valid").accounts[1].balance, Amount::new(2500));
        let json =
            edited(r#""stake": 700}"#, &format!(r#""stake": 700}}, {{"address": "{}", "balance": 1}}"#, address(3)));
        assert_eq!(Genesis::from_json(json.as_bytes()).expect("valid").accounts[2].stake, Amount::ZERO);
    }

    #[test]
    fn json_errors_name_the_field() {
        let (field, reason) = json_field(&edited(r#""balance": 2500"#, r#""balance": "-5""#));
        assert_eq!(field, "accounts[1].balance");
        assert_eq!(reason, r#"expected a non-negative integer amount in base units, got "-5""#);
        let error = Genesis::from_json(edited(r#""balance": 2500"#, r#""balance": "-5""#).as_bytes()).unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"genesis field accounts[1].balance: expected a non-negative integer amount in base units, got "-5""#
        );

        let (field, _) = json_field(&edited("0x00000fff", "0x00000ffg"));
        assert_eq!(field, "engines[0].engine.pow.initial_target");
        let (field, _) = json_field(&edited("chorus-test.1", "Chorus"));
        assert_eq!(field, "chain_id");
        let (field, _) = json_field(&edited(r#""slash_permille": 50"#, r#""slash_permile": 50"#));
        assert_eq!(field, "params.slash_permile");
        let (field, _) = json_field(&edited(r#""genesis_time_ms""#, r#""genesis_time""#));
        assert_eq!(field, "genesis_time");
        let (field, reason) = json_field(&edited(r#""slot_ms": 2000, "#, ""));
        assert_eq!((field.as_str(), reason.as_str()), ("engines[1].engine.pos", "missing field `slot_ms`"));
        let (field, _) = json_field(&edited(r#""chain_id": "chorus-test.1","#, ""));
        assert_eq!(field, "(top level)");
        let (field, _) =
            json_field(&edited(r#""from_height": 300, "engine": {"raft""#, r#""from_height": 300, "engine": {"bft""#));
        assert_eq!(field, "engines[3].engine");
        let (field, _) = json_field(&edited(r#""tick_ms": 100"#, r#""tick_ms": -100"#));
        assert_eq!(field, "engines[3].engine.raft.tick_ms");
        let (field, reason) = json_field(&format!("{} x", example_json()));
        assert_eq!(field, "(top level)");
        assert!(reason.contains("line"), "{reason}");
    }

    #[test]
    fn json_errors_name_bad_address_and_peer_id() {
        let good = address(2);
        let mut typo: Vec<char> = good.chars().collect();
        let last = typo.len() - 2;
        typo[last] = if typo[last] == 'q' { 'p' } else { 'q' };
        let typo: String = typo.into_iter().collect();
        let json = example_json().replacen(
            &format!(r#""address": "{good}", "balance""#),
            &format!(r#""address": "{typo}", "balance""#),
            1,
        );
        let (field, reason) = json_field(&json);
        assert_eq!(field, "accounts[1].address");
        assert!(reason.contains("checksum"), "{reason}");

        let peer_b = PeerIdText::of(&SecretKey::from_seed([2; 32]).address()).as_str().to_owned();
        let json = example_json().replacen(&peer_b, &peer_b.replace('W', "0"), 1);
        let (field, reason) = json_field(&json);
        assert_eq!(field, "engines[1].engine.pos.validators[1].peer_id");
        assert!(reason.contains("base58btc"), "{reason}");
    }

    #[test]
    fn peer_id_text_rules() {
        assert_eq!(PeerIdText::new(PEER_A).map(|peer| peer.as_str().to_owned()), Ok(PEER_A.to_owned()));
        for (bad, at) in [('0', 3), ('O', 3), ('I', 3), ('l', 3), ('-', 3), ('é', 3)] {
            let mut text: Vec<char> = PEER_A.chars().collect();
            text[at] = bad;
            let text: String = text.into_iter().collect();
            assert_eq!(PeerIdText::new(&text), Err(PeerIdError::Character { got: bad, position: at }));
        }
        assert!(PeerIdText::new(&"1".repeat(limits::PEER_ID_CHARS_MIN)).is_ok());
        assert!(PeerIdText::new(&"z".repeat(limits::PEER_ID_CHARS_MAX)).is_ok());
        assert_eq!(PeerIdText::new(&"1".repeat(39)), Err(PeerIdError::Length { got: 39 }));
        assert_eq!(PeerIdText::new(&"1".repeat(65)), Err(PeerIdError::Length { got: 65 }));
        assert_eq!(PeerIdText::new(""), Err(PeerIdError::Length { got: 0 }));

        let peer = PeerIdText::new(PEER_A).expect("valid");
        let bytes = codec::encode(&Wrapped(peer.clone()));
        assert_eq!(codec::decode::<Wrapped<PeerIdText>>(&bytes), Ok(Wrapped(peer)));
        let bad = codec::encode(&Wrapped(PEER_A.replace('W', "l")));
        assert!(codec::decode::<Wrapped<PeerIdText>>(&bad).is_err());
        assert!(codec::decode::<Wrapped<String>>(&bad).is_ok());
    }

    #[test]
    fn from_json_validates() {
        let json = edited(r#""slash_permille": 50"#, r#""slash_permille": 1001"#);
        assert!(matches!(
            Genesis::from_json(json.as_bytes()),
            Err(GenesisError::Invalid { field, .. }) if field == "params.slash_permille"
        ));
    }

    #[test]
    fn schedule_rules() {
        assert_eq!(invalid_field(|g| g.engines.clear()), "engines");
        assert_eq!(
            invalid_field(|g| {
                let last = g.engines[3].clone();
                g.engines = (0..=limits::ENGINE_SCHEDULE_MAX)
                    .map(|i| EngineEntry { from_height: Height::new(u64::from(i) * 10), ..last.clone() })
                    .collect();
            }),
            "engines"
        );
        assert_eq!(invalid_field(|g| g.engines[0].from_height = Height::new(1)), "engines[0].from_height");
        assert_eq!(invalid_field(|g| g.engines[2].from_height = Height::new(100)), "engines[2].from_height");
        assert_eq!(invalid_field(|g| g.engines[3].from_height = Height::new(150)), "engines[3].from_height");
    }

    #[test]
    fn params_rules() {
        assert_eq!(invalid_field(|g| g.params.unbonding_period = BlockCount(0)), "params.unbonding_period_blocks");
        assert_eq!(invalid_field(|g| g.params.slash_permille = 1001), "params.slash_permille");
        let mut genesis = example();
        genesis.params.slash_permille = 1000;
        assert_eq!(genesis.validate(), Ok(()));
    }

    #[test]
    fn account_rules() {
        assert_eq!(
            invalid_field(|g| {
                let account = g.accounts[1].clone();
                g.accounts = vec![account; limits::GENESIS_ACCOUNTS_MAX as usize + 1];
            }),
            "accounts"
        );
        assert_eq!(
            invalid_field(|g| {
                let copy = g.accounts[0].clone();
                g.accounts.push(copy);
            }),
            "accounts[2].address"
        );
        assert_eq!(invalid_field(|g| g.accounts[1].balance = Amount::MAX), "accounts[1].balance");
        assert_eq!(
            invalid_field(|g| {
                g.accounts[1].balance = Amount::ZERO;
                g.accounts[1].stake = Amount::MAX;
            }),
            "accounts[1].stake"
        );
    }

    #[test]
    fn pow_rules() {
        let p = "engines[0].engine.pow";
        assert_eq!(invalid_field(|g| pow(g).target_block_time_ms = 0), format!("{p}.target_block_time_ms"));
        assert_eq!(invalid_field(|g| pow(g).initial_target = Hash::ZERO), format!("{p}.initial_target"));
        assert_eq!(invalid_field(|g| pow(g).retarget_window_blocks = 0), format!("{p}.retarget_window_blocks"));
        let too_long = limits::RETARGET_WINDOW_BLOCKS_MAX + 1;
        assert_eq!(invalid_field(|g| pow(g).retarget_window_blocks = too_long), format!("{p}.retarget_window_blocks"));
    }

    #[test]
    fn pos_rules() {
        let p = "engines[1].engine.pos";
        assert_eq!(invalid_field(|g| pos(g).slot_ms = 0), format!("{p}.slot_ms"));
        assert_eq!(invalid_field(|g| pos(g).epoch_slots = 0), format!("{p}.epoch_slots"));
        assert_eq!(invalid_field(|g| pos(g).min_stake = Amount::ZERO), format!("{p}.min_stake"));
        assert_eq!(invalid_field(|g| pos(g).validators_max = 0), format!("{p}.validators_max"));
        let too_many = limits::VALIDATORS_MAX + 1;
        assert_eq!(invalid_field(|g| pos(g).validators_max = too_many), format!("{p}.validators_max"));
        assert_eq!(invalid_field(|g| pos(g).validators.clear()), format!("{p}.validators"));
        assert_eq!(
            invalid_field(|g| pos(g).validators = (0..=limits::VALIDATORS_MAX as usize).map(|i| member(1, i)).collect()),
            format!("{p}.validators")
        );
        assert_eq!(
            invalid_field(|g| pos(g).validators[1].address = pos(g).validators[0].address),
            format!("{p}.validators[1].address")
        );
        assert_eq!(invalid_field(|g| pos(g).validators[1].peer_id = peer('N')), format!("{p}.validators[1].peer_id"));
        assert_eq!(invalid_field(|g| pos(g).validators.push(member(3, 5))), format!("{p}.validators[2].address"));
        assert_eq!(invalid_field(|g| g.accounts[1].stake = Amount::ZERO), format!("{p}.validators[1].address"));
    }

    #[test]
    fn dpos_rules() {
        let p = "engines[2].engine.dpos";
        assert_eq!(invalid_field(|g| dpos(g).slot_ms = 0), format!("{p}.slot_ms"));
        assert_eq!(invalid_field(|g| dpos(g).producers = 0), format!("{p}.producers"));
        assert_eq!(invalid_field(|g| dpos(g).producers = limits::VALIDATORS_MAX + 1), format!("{p}.producers"));
        assert_eq!(invalid_field(|g| dpos(g).delegates.clear()), format!("{p}.delegates"));
        assert_eq!(
            invalid_field(|g| dpos(g).delegates = (0..=limits::VALIDATORS_MAX as usize).map(|i| member(1, i)).collect()),
            format!("{p}.delegates")
        );
        assert_eq!(
            invalid_field(|g| dpos(g).delegates[1].address = dpos(g).delegates[0].address),
            format!("{p}.delegates[1].address")
        );
        assert_eq!(invalid_field(|g| dpos(g).delegates[1].peer_id = peer('N')), format!("{p}.delegates[1].peer_id"));
    }

    #[test]
    fn raft_rules() {
        let p = "engines[3].engine.raft";
        assert_eq!(invalid_field(|g| raft(g).tick_ms = 0), format!("{p}.tick_ms"));
        assert_eq!(invalid_field(|g| raft(g).heartbeat_ticks = 0), format!("{p}.heartbeat_ticks"));
        assert_eq!(invalid_field(|g| raft(g).election_ticks = 2), format!("{p}.election_ticks"));
        assert_eq!(invalid_field(|g| raft(g).members.clear()), format!("{p}.members"));
        assert_eq!(
            invalid_field(|g| {
                raft(g).members = (0..=limits::VALIDATORS_MAX as usize)
                    .map(|i| {
                        let Member { address, peer_id } = member(1, i);
                        RaftMember { id: i as u64 + 1, address, peer_id }
                    })
                    .collect();
            }),
            format!("{p}.members")
        );
        assert_eq!(invalid_field(|g| raft(g).members[1].id = 0), format!("{p}.members[1].id"));
        assert_eq!(invalid_field(|g| raft(g).members[1].id = 1), format!("{p}.members[1].id"));
        assert_eq!(
            invalid_field(|g| raft(g).members[1].address = raft(g).members[0].address),
            format!("{p}.members[1].address")
        );
        assert_eq!(invalid_field(|g| raft(g).members[1].peer_id = peer('N')), format!("{p}.members[1].peer_id"));
    }
}

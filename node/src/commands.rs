//! `chorusd key ...` and `chorusd genesis ...`: the tooling a testnet needs.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use chorus_chain::genesis::{
    ChainParams, DposConfig, EngineConfig, EngineEntry, Genesis, GenesisAccount, GenesisError, Member, PeerIdText,
    PosConfig, PowConfig, RaftConfig, RaftMember,
};
use chorus_chain::primitives::{Amount, BlockCount, ChainId, Hash, Height};
use chorus_chain::{Address, SecretKey, limits};
use chorus_p2p::NodeKey;
use zeroize::Zeroizing;

use crate::config::{GenesisCommand, KeyCommand};

/// Why a genesis file could not be loaded: it could not be read, or `chorus-chain` refused its
/// content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenesisFileError {
    #[error("cannot read genesis file {}: {reason}", path.display())]
    Io { path: PathBuf, reason: String },
    #[error(transparent)]
    Genesis(#[from] GenesisError),
}

/// Reads, parses and validates a genesis file of at most [`limits::GENESIS_BYTES_MAX`] bytes.
pub fn read_genesis(path: &Path) -> Result<Genesis, GenesisFileError> {
    let io_error = |error: std::io::Error| GenesisFileError::Io { path: path.to_owned(), reason: error.to_string() };
    let file = std::fs::File::open(path).map_err(io_error)?;
    let size_bytes = file.metadata().map_err(io_error)?.len();
    if size_bytes > limits::GENESIS_BYTES_MAX {
        return Err(GenesisError::TooLarge { size_bytes }.into());
    }
    // The file may grow after the check: read one byte past the limit at most.
    let mut bytes = Vec::with_capacity(usize::try_from(size_bytes).unwrap_or(0));
    file.take(limits::GENESIS_BYTES_MAX + 1).read_to_end(&mut bytes).map_err(io_error)?;
    Ok(Genesis::from_json(&bytes)?)
}

/// A node key's 32-byte ed25519 seed, zeroized when dropped. Every copy this module makes (the
/// file's text, the hex digits) is zeroized too; `NodeKey::from_secret` and
/// `SecretKey::from_seed` zeroize the copies they are given.
pub type NodeSeed = Zeroizing<[u8; 32]>;

/// Why a node key file was not read.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read key file {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("key file {} is readable by others (mode {mode:o}); run chmod 600 on it", path.display())]
    Exposed { path: PathBuf, mode: u32 },
    #[error("key file {} is over {} bytes; a key file holds 64 hex digits", path.display(), limits::NODE_KEY_FILE_BYTES_MAX)]
    TooLarge { path: PathBuf },
    #[error("key file {} does not hold 64 hex digits (a 32-byte seed): {reason}", path.display())]
    NotASeed { path: PathBuf, reason: hex::FromHexError },
}

/// A node key file: the 32-byte ed25519 seed in hex, one line, mode 0600. The same key is the
/// node's libp2p identity and its chain address.
pub fn read_key(path: &Path) -> Result<NodeSeed, KeyFileError> {
    let io = |source| KeyFileError::Io { path: path.to_owned(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata().map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::Exposed { path: path.to_owned(), mode });
        }
    }
    // One buffer of fixed capacity: never moved, so it leaves no copy of the seed behind.
    let limit_bytes = limits::NODE_KEY_FILE_BYTES_MAX;
    let mut text = Zeroizing::new(Vec::with_capacity(limit_bytes as usize + 1));
    file.take(limit_bytes + 1).read_to_end(&mut text).map_err(io)?;
    if text.len() as u64 > limit_bytes {
        return Err(KeyFileError::TooLarge { path: path.to_owned() });
    }
    let mut seed = NodeSeed::default();
    hex::decode_to_slice(text.trim_ascii(), seed.as_mut_slice())
        .map_err(|reason| KeyFileError::NotASeed { path: path.to_owned(), reason })?;
    Ok(seed)
}

/// Creates a key file with a new key; refuses to overwrite.
pub fn write_new_key(path: &Path) -> anyhow::Result<NodeSeed> {
    let seed = NodeSeed::new(SecretKey::generate().seed());
    let mut line = Zeroizing::new([b'\n'; 65]);
    hex::encode_to_slice(seed.as_slice(), &mut line[..64]).expect("invariant: 32 bytes are 64 hex digits");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).with_context(|| format!("cannot create key file {}", path.display()))?;
    file.write_all(line.as_slice())?;
    file.sync_all()?;
    crate::files::sync_dir(path)?;
    Ok(seed)
}

/// The identities a key stands for.
pub fn describe_key(seed: &NodeSeed) -> (chorus_p2p::PeerId, Address) {
    (NodeKey::from_secret(**seed).peer_id(), SecretKey::from_seed(**seed).address())
}

pub fn key(command: KeyCommand) -> anyhow::Result<()> {
    let (path, seed) = match command {
        KeyCommand::Generate { out } => {
            let seed = write_new_key(&out)?;
            (out, seed)
        }
        KeyCommand::Inspect { file } => {
            let seed = read_key(&file)?;
            (file, seed)
        }
    };
    let (peer_id, address) = describe_key(&seed);
    drop(seed);
    println!("key file: {}\npeer id:  {peer_id}\naddress:  {address}", path.display());
    Ok(())
}

/// What `engine`'s genesis lists, for a flag given to the wrong engine.
fn members_of(engine: &str) -> &'static str {
    match engine {
        "pos" => "validators (--validator)",
        "dpos" => "delegates (--delegate)",
        "pow" => "miners, not listed in genesis",
        "raft" => "members (--member)",
        _ => "members of its own",
    }
}

/// `ADDRESS=STAKE` (or `ADDRESS` alone if `stake_optional`, for no stake) from `flag`.
fn parse_staked(flag: &str, entry: &str, stake_optional: bool) -> anyhow::Result<(Address, u128)> {
    let (address, stake) = match entry.split_once('=') {
        Some((address, stake)) => (address, Some(stake)),
        None if stake_optional => (entry, None),
        None => bail!("{flag} {entry:?}: expected ADDRESS=STAKE"),
    };
    let address = Address::parse(address).with_context(|| format!("{flag} {entry:?}: bad address"))?;
    let stake = match stake {
        Some(stake) => stake.parse().with_context(|| format!("{flag} {entry:?}: bad stake"))?,
        None => 0,
    };
    Ok((address, stake))
}

/// Gives `address` a bonded `stake` (adding the account if it is not funded), approving itself
/// with it if `self_vote`.
fn bond(accounts: &mut Vec<GenesisAccount>, address: Address, stake: u128, self_vote: bool) {
    let votes = if self_vote && stake > 0 { vec![address] } else { Vec::new() };
    match accounts.iter_mut().find(|account| account.address == address) {
        Some(account) => {
            account.stake = Amount::new(stake);
            account.votes = votes;
        }
        None => accounts.push(GenesisAccount { address, balance: Amount::ZERO, stake: Amount::new(stake), votes }),
    }
}

pub fn genesis(command: GenesisCommand) -> anyhow::Result<()> {
    match command {
        GenesisCommand::New {
            chain_id,
            engine,
            accounts,
            block_time_ms,
            validators,
            delegates,
            members,
            tick_ms,
            producers,
            slot_ms,
            epoch_slots,
            min_stake,
            validators_max,
            out,
        } => {
            let mut accounts = accounts
                .iter()
                .map(|entry| {
                    let (address, balance) = entry
                        .split_once('=')
                        .with_context(|| format!("--account {entry:?}: expected ADDRESS=BALANCE"))?;
                    let address =
                        Address::parse(address).with_context(|| format!("--account {entry:?}: bad address"))?;
                    let balance: u128 = balance.parse().with_context(|| format!("--account {entry:?}: bad balance"))?;
                    Ok(GenesisAccount {
                        address,
                        balance: Amount::new(balance),
                        stake: Amount::ZERO,
                        votes: Vec::new(),
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            if engine != "pos" && !validators.is_empty() {
                bail!("--validator is for pos; {engine} has {}", members_of(&engine));
            }
            if engine != "dpos" && !delegates.is_empty() {
                bail!("--delegate is for dpos; {engine} has {}", members_of(&engine));
            }
            if engine != "raft" && !members.is_empty() {
                bail!("--member is for raft; {engine} has {}", members_of(&engine));
            }
            let engine = match engine.as_str() {
                "pow" => EngineConfig::Pow(PowConfig {
                    target_block_time_ms: block_time_ms,
                    initial_target: Hash::from_hex("0000ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff")
                        .expect("invariant: 64 hex digits"),
                    retarget_window_blocks: 20,
                }),
                "pos" => {
                    if validators.is_empty() {
                        bail!("a pos genesis needs at least one --validator ADDRESS=STAKE");
                    }
                    let mut members = Vec::with_capacity(validators.len());
                    for entry in &validators {
                        let (address, stake) = parse_staked("--validator", entry, false)?;
                        bond(&mut accounts, address, stake, false);
                        members.push(Member { address, peer_id: PeerIdText::of(&address) });
                    }
                    EngineConfig::Pos(PosConfig {
                        slot_ms,
                        epoch_slots,
                        min_stake: Amount::new(min_stake),
                        validators_max,
                        validators: members,
                    })
                }
                "dpos" => {
                    if delegates.is_empty() {
                        bail!("a dpos genesis needs at least one --delegate ADDRESS[=STAKE]");
                    }
                    let mut members = Vec::with_capacity(delegates.len());
                    for entry in &delegates {
                        let (address, stake) = parse_staked("--delegate", entry, true)?;
                        bond(&mut accounts, address, stake, true);
                        members.push(Member { address, peer_id: PeerIdText::of(&address) });
                    }
                    EngineConfig::Dpos(DposConfig { slot_ms, producers, delegates: members })
                }
                "raft" => {
                    if members.is_empty() {
                        bail!("a raft genesis needs at least one --member ADDRESS");
                    }
                    let mut listed = Vec::with_capacity(members.len());
                    for (id, entry) in (1u64..).zip(&members) {
                        let address =
                            Address::parse(entry).with_context(|| format!("--member {entry:?}: bad address"))?;
                        listed.push(RaftMember { id, address, peer_id: PeerIdText::of(&address) });
                    }
                    EngineConfig::Raft(RaftConfig { tick_ms, election_ticks: 10, heartbeat_ticks: 2, members: listed })
                }
                other => bail!("unknown engine {other:?}; expected pow, pos, dpos or raft"),
            };
            let genesis = Genesis {
                chain_id: ChainId::new(&chain_id).map_err(|error| anyhow::anyhow!("--chain-id: {error}"))?,
                genesis_time: crate::clock::now(),
                engines: vec![EngineEntry { from_height: Height::GENESIS, engine }],
                params: ChainParams {
                    block_reward: Amount::new(50),
                    min_tx_fee: Amount::new(1),
                    unbonding_period: BlockCount(100),
                    slash_permille: 500,
                },
                accounts,
            };
            genesis.validate().map_err(|error| anyhow::anyhow!("{error}"))?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            file.write_all(genesis.to_json_pretty().as_bytes())?;
            file.sync_all()?;
            crate::files::sync_dir(&out)?;
            println!("genesis written to {}", out.display());
            Ok(())
        }
        GenesisCommand::Inspect { file } => {
            let genesis = read_genesis(&file).map_err(|error| anyhow::anyhow!("{}: {error}", file.display()))?;
            let total = genesis.accounts.iter().try_fold(Amount::ZERO, |sum, account| sum.checked_add(account.balance));
            println!("chain id:  {}", genesis.chain_id);
            println!("file hash: {}", genesis.file_hash());
            println!("engine:    {}", genesis.engine_at(Height::GENESIS).name());
            println!("accounts:  {}", genesis.accounts.len());
            println!("supply:    {}", total.map_or_else(|_| "overflows".to_owned(), |total| total.to_string()));
            if let EngineConfig::Pos(config) = genesis.engine_at(Height::GENESIS) {
                println!(
                    "slots:     {} ms, {} per epoch; min stake {}; at most {} validators",
                    config.slot_ms, config.epoch_slots, config.min_stake, config.validators_max
                );
                println!("validators:");
                for member in &config.validators {
                    let stake = genesis
                        .accounts
                        .iter()
                        .find(|account| account.address == member.address)
                        .map_or(Amount::ZERO, |account| account.stake);
                    println!("  {} {} stake {stake}", member.address, member.peer_id);
                }
            }
            if let EngineConfig::Dpos(config) = genesis.engine_at(Height::GENESIS) {
                println!("slots:     {} ms; {} producers", config.slot_ms, config.producers);
                println!("delegates:");
                for member in &config.delegates {
                    let approvals = genesis
                        .accounts
                        .iter()
                        .filter(|account| account.votes.contains(&member.address))
                        .try_fold(Amount::ZERO, |sum, account| sum.checked_add(account.stake));
                    let approvals = approvals.map_or_else(|_| "overflows".to_owned(), |weight| weight.to_string());
                    println!("  {} {} approvals {approvals}", member.address, member.peer_id);
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A written key reads back; the seed is held in a type that zeroizes it when dropped (the
    /// clearing itself cannot be observed from safe code: the type says it).
    #[test]
    fn a_new_node_key_reads_back_into_a_seed_zeroized_on_drop() {
        fn zeroized_on_drop<T: zeroize::ZeroizeOnDrop>(_: &T) {}
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("node.key");
        let written = write_new_key(&path).expect("write");
        zeroized_on_drop(&written);
        let read = read_key(&path).expect("read");
        zeroized_on_drop(&read);
        assert_eq!(read, written);
        assert_eq!(describe_key(&read).1, SecretKey::from_seed(*written).address());
        assert!(write_new_key(&path).is_err(), "never overwrites a key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).expect("metadata").permissions().mode() & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            assert!(matches!(read_key(&path), Err(KeyFileError::Exposed { mode: 0o644, .. })));
        }
    }

    #[test]
    fn a_key_file_that_is_not_one_seed_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("node.key");
        let write = |bytes: &[u8]| {
            let _ = std::fs::remove_file(&path);
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            options.open(&path).expect("create").write_all(bytes).expect("write");
        };
        write(format!("  {}\r\n", "0a".repeat(32)).as_bytes());
        assert_eq!(*read_key(&path).expect("surrounding whitespace is fine"), [0x0a; 32]);
        write("0a".repeat(31).as_bytes());
        assert!(matches!(read_key(&path), Err(KeyFileError::NotASeed { .. })));
        write("zz".repeat(32).as_bytes());
        assert!(matches!(read_key(&path), Err(KeyFileError::NotASeed { .. })));
        write(&vec![b' '; limits::NODE_KEY_FILE_BYTES_MAX as usize + 1]);
        assert!(matches!(read_key(&path), Err(KeyFileError::TooLarge { .. })));
    }

    #[test]
    fn read_genesis_reads_checks_size_and_names_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let genesis = chorus_chain::testing::genesis(3, 1_000);
        let good = dir.path().join("genesis.json");
        std::fs::write(&good, genesis.to_json_pretty()).expect("write");
        assert_eq!(read_genesis(&good), Ok(genesis));

        let missing = dir.path().join("missing.json");
        match read_genesis(&missing) {
            Err(error @ GenesisFileError::Io { .. }) => assert!(error.to_string().contains("missing.json"), "{error}"),
            other => panic!("expected an Io error, got {other:?}"),
        }

        let big = dir.path().join("big.json");
        let file = std::fs::File::create(&big).expect("create");
        file.set_len(limits::GENESIS_BYTES_MAX + 1).expect("sparse file");
        assert_eq!(
            read_genesis(&big),
            Err(GenesisFileError::Genesis(GenesisError::TooLarge { size_bytes: limits::GENESIS_BYTES_MAX + 1 }))
        );
    }
}

//! `chorusd key ...` and `chorusd genesis ...`: the tooling a testnet needs.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use chorus_chain::genesis::{ChainParams, EngineConfig, EngineEntry, Genesis, GenesisAccount, GenesisError, PowConfig};
use chorus_chain::primitives::{Amount, BlockCount, ChainId, Hash, Height};
use chorus_chain::{Address, SecretKey, limits};
use chorus_p2p::NodeKey;

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

/// A node key file: the 32-byte ed25519 seed in hex, one line, mode 0600. The same key is the
/// node's libp2p identity and its chain address.
pub fn read_key(path: &Path) -> anyhow::Result<[u8; 32]> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .with_context(|| format!("cannot read key file {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            bail!("key file {} is readable by others (mode {:o}); run chmod 600 on it", path.display(), mode & 0o777);
        }
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read key file {}", path.display()))?;
    let bytes = hex::decode(text.trim()).with_context(|| format!("key file {} is not hex", path.display()))?;
    bytes.try_into().map_err(|bytes: Vec<u8>| {
        anyhow::anyhow!("key file {} holds {} bytes, expected 32", path.display(), bytes.len())
    })
}

/// Creates a key file with a new key; refuses to overwrite.
pub fn write_new_key(path: &Path) -> anyhow::Result<[u8; 32]> {
    let seed = SecretKey::generate().seed();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).with_context(|| format!("cannot create key file {}", path.display()))?;
    writeln!(file, "{}", hex::encode(seed))?;
    file.sync_all()?;
    Ok(seed)
}

/// The identities a key stands for.
pub fn describe_key(seed: [u8; 32]) -> (chorus_p2p::PeerId, Address) {
    (NodeKey::from_secret(seed).peer_id(), SecretKey::from_seed(seed).address())
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
    let (peer_id, address) = describe_key(seed);
    println!("key file: {}\npeer id:  {peer_id}\naddress:  {address}", path.display());
    Ok(())
}

pub fn genesis(command: GenesisCommand) -> anyhow::Result<()> {
    match command {
        GenesisCommand::New { chain_id, engine, accounts, block_time_ms, out } => {
            if engine != "pow" {
                bail!("engine {engine:?} is not implemented yet; only \"pow\" runs today");
            }
            let accounts = accounts
                .iter()
                .map(|entry| {
                    let (address, balance) = entry
                        .split_once('=')
                        .with_context(|| format!("--account {entry:?}: expected ADDRESS=BALANCE"))?;
                    let address =
                        Address::parse(address).with_context(|| format!("--account {entry:?}: bad address"))?;
                    let balance: u128 = balance.parse().with_context(|| format!("--account {entry:?}: bad balance"))?;
                    Ok(GenesisAccount { address, balance: Amount::new(balance), stake: Amount::ZERO })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let genesis = Genesis {
                chain_id: ChainId::new(&chain_id).map_err(|error| anyhow::anyhow!("--chain-id: {error}"))?,
                genesis_time: crate::clock::now(),
                engines: vec![EngineEntry {
                    from_height: Height::GENESIS,
                    engine: EngineConfig::Pow(PowConfig {
                        target_block_time_ms: block_time_ms,
                        initial_target: Hash::from_hex(
                            "0000ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
                        )
                        .expect("invariant: 64 hex digits"),
                        retarget_window_blocks: 20,
                    }),
                }],
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
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

//! `chorusd`'s command line, and the configuration it resolves to.
//!
//! Every `run` and `dev` setting comes, in rising precedence, from its default, the TOML file
//! given by `--config`, its `CHORUS_...` environment variable, and its flag. A file key is the
//! flag's name (`data-dir = "..."`, `bootnode = ["..."]`); an unknown key or a bad value stops
//! start-up with a message naming it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chorus_chain::Address;
use chorus_p2p::Multiaddr;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::explorer::ExplorerAddr;
use crate::rpc::access::{AllowedHost, AllowedOrigin, RateLimit};

#[derive(Debug, Parser)]
#[command(name = "chorusd", version, about = "The Chorus node: a blockchain with pluggable consensus")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node on a genesis file.
    Run(RunArgs),
    /// Run a one-node development chain with funded dev accounts, producing blocks at once.
    Dev(DevArgs),
    /// Generate or inspect a node key.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Create or inspect a genesis file.
    #[command(subcommand)]
    Genesis(GenesisCommand),
}

/// Settings `run` and `dev` share.
#[derive(Debug, Clone, Default, Args)]
pub struct NodeArgs {
    /// A TOML file with any of these settings (keys are the flag names).
    #[arg(long, env = "CHORUS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The node's key file (created there if missing; default DATA_DIR/node.key).
    #[arg(long, env = "CHORUS_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// p2p listen address [default: /ip4/0.0.0.0/tcp/30333; dev: /ip4/127.0.0.1/tcp/30333].
    #[arg(long, env = "CHORUS_LISTEN", value_name = "MULTIADDR", value_delimiter = ',')]
    pub listen: Vec<Multiaddr>,
    /// A peer to connect to at start, ending in /p2p/<peer id> (repeatable).
    #[arg(long, env = "CHORUS_BOOTNODE", value_name = "MULTIADDR", value_delimiter = ',')]
    pub bootnode: Vec<Multiaddr>,
    /// JSON-RPC address, HTTP and WebSocket [default: 127.0.0.1:8545].
    ///
    /// Requests must name a loopback host (localhost, 127.0.0.1, [::1]) or one given with
    /// --rpc-allow-host, and browsers' requests an origin given with --rpc-allow-origin; others
    /// get HTTP 403. Admin methods (admin_*) are served only on loopback and only with the header
    /// `Authorization: Bearer TOKEN`, TOKEN being the content of DATA_DIR/rpc-admin.token, which
    /// the node writes at each start (mode 0600, new each time).
    #[arg(long, env = "CHORUS_RPC", value_name = "ADDR")]
    pub rpc: Option<SocketAddr>,
    /// A host name the RPC answers besides loopback's, without a port, e.g. node.example
    /// (repeatable; * for any, for a node behind a proxy that checks the host).
    #[arg(long, env = "CHORUS_RPC_ALLOW_HOST", value_name = "HOST", value_delimiter = ',')]
    pub rpc_allow_host: Vec<AllowedHost>,
    /// A web page origin that may call the RPC from a browser, e.g. https://explorer.example
    /// (repeatable; * for any) [default: none; clients that send no Origin are always served].
    #[arg(long, env = "CHORUS_RPC_ALLOW_ORIGIN", value_name = "ORIGIN", value_delimiter = ',')]
    pub rpc_allow_origin: Vec<AllowedOrigin>,
    /// RPC calls per second each client address may make, with bursts of twice that
    /// [default: 2000]. Every local client shares the loopback address's budget.
    #[arg(long, env = "CHORUS_RPC_RATE_LIMIT", value_name = "CALLS")]
    pub rpc_rate_limit: Option<u32>,
    /// Prometheus metrics address [default: 127.0.0.1:9615].
    #[arg(long, env = "CHORUS_METRICS", value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// The block explorer page's address, or off [default: 127.0.0.1:9616].
    ///
    /// A page in the browser that reads the node through its RPC's WebSocket, which admits this
    /// page's origin. On an address other than loopback, the RPC must also be reachable and
    /// admit the origin the browser sends (--rpc, --rpc-allow-host, --rpc-allow-origin).
    #[arg(long, env = "CHORUS_EXPLORER", value_name = "ADDR|off")]
    pub explorer: Option<ExplorerAddr>,
    /// Mine blocks (PoW) [default: off for run, on for dev].
    #[arg(long, env = "CHORUS_MINE", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub mine: Option<bool>,
    /// Miner threads [default: 1].
    #[arg(long, env = "CHORUS_MINER_THREADS", value_name = "N")]
    pub miner_threads: Option<u32>,
    /// Address that receives mined rewards and fees (chorus1...) [default: dev account 0 in dev].
    #[arg(long, env = "CHORUS_COINBASE", value_name = "ADDRESS", value_parser = parse_address)]
    pub coinbase: Option<Address>,
    /// Log format [default: human].
    #[arg(long, env = "CHORUS_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Where the chain is stored.
    #[arg(long, env = "CHORUS_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The chain's genesis file (JSON).
    #[arg(long, env = "CHORUS_GENESIS", value_name = "FILE")]
    pub genesis: Option<PathBuf>,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    /// The consensus engine of the dev chain.
    #[arg(long, env = "CHORUS_ENGINE", default_value = "pow")]
    pub engine: String,
    /// Keep no state: a temporary directory, deleted on exit (the default without --data-dir).
    #[arg(long, conflicts_with = "data_dir")]
    pub tmp: bool,
    /// Keep the dev chain here across restarts.
    #[arg(long, env = "CHORUS_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// A new dev chain's block time (PoW) or slot length (PoS, DPoS), in milliseconds; Raft
    /// builds a block when transactions come.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(10..))]
    pub block_time_ms: u64,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Write a new node key (mode 0600) and print its peer id and address.
    Generate {
        /// The key file to create; refuses to overwrite one.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Print a key file's peer id and address (never the secret).
    Inspect { file: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum GenesisCommand {
    /// Write a new genesis file.
    New {
        #[arg(long, default_value = "chorus-local")]
        chain_id: String,
        #[arg(long, default_value = "pow")]
        engine: String,
        /// A funded account, ADDRESS=BALANCE (repeatable).
        #[arg(long = "account", value_name = "ADDRESS=BALANCE")]
        accounts: Vec<String>,
        /// PoW target block time in milliseconds.
        #[arg(long, default_value_t = 2_000)]
        block_time_ms: u64,
        /// PoS: a genesis validator and its bonded stake, ADDRESS=STAKE (repeatable). The
        /// address is a node key's (`chorusd key generate` prints it); its peer id follows from
        /// it. The account need not be funded with --account.
        #[arg(long = "validator", value_name = "ADDRESS=STAKE")]
        validators: Vec<String>,
        /// DPoS: a genesis delegate, ADDRESS or ADDRESS=STAKE (repeatable): with a stake, the
        /// account bonds it and approves itself with it, so the genesis ranking is by those
        /// weights (ties: lower address). The address is a node key's, as for --validator.
        #[arg(long = "delegate", value_name = "ADDRESS[=STAKE]")]
        delegates: Vec<String>,
        /// Raft: a member, by its node key's address (repeatable); members get ids 1, 2, ...
        /// in the order given, and only they may connect to each other.
        #[arg(long = "member", value_name = "ADDRESS")]
        members: Vec<String>,
        /// Raft: the tick in milliseconds; a leader heartbeats every 2 ticks and a member
        /// without one for 10 to 20 ticks calls an election.
        #[arg(long, default_value_t = 100)]
        tick_ms: u64,
        /// DPoS: how many delegates, the highest ranked, produce blocks.
        #[arg(long, default_value_t = chorus_chain::genesis::DPOS_PRODUCERS_DEFAULT)]
        producers: u32,
        /// PoS and DPoS slot length in milliseconds.
        #[arg(long, default_value_t = 1_000)]
        slot_ms: u64,
        /// PoS slots per epoch (validator sets change at epoch boundaries).
        #[arg(long, default_value_t = 16)]
        epoch_slots: u64,
        /// PoS: the stake an account needs to join the validator set.
        #[arg(long, default_value_t = 1_000)]
        min_stake: u128,
        /// PoS: the most validators in an epoch's set.
        #[arg(long, default_value_t = 100)]
        validators_max: u32,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Validate a genesis file and print its hash, chain id, engine and accounts.
    Inspect { file: PathBuf },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

fn parse_address(text: &str) -> Result<Address, String> {
    Address::parse(text).map_err(|error| error.to_string())
}

/// The `--config` file: every setting optional, no unknown keys.
#[derive(Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct FileConfig {
    data_dir: Option<PathBuf>,
    genesis: Option<PathBuf>,
    key: Option<PathBuf>,
    listen: Option<Vec<String>>,
    bootnode: Option<Vec<String>>,
    rpc: Option<String>,
    rpc_allow_host: Option<Vec<String>>,
    rpc_allow_origin: Option<Vec<String>>,
    rpc_rate_limit: Option<u32>,
    metrics: Option<String>,
    explorer: Option<String>,
    mine: Option<bool>,
    miner_threads: Option<u32>,
    coinbase: Option<String>,
    log_format: Option<LogFormat>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("config file {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("config file {path}, field {field}: {reason}")]
    Field { path: PathBuf, field: String, reason: String },
    #[error("{0} is required (flag --{0}, environment variable CHORUS_{1}, or config key {0})")]
    Missing(&'static str, &'static str),
    #[error("miner-threads must be at least 1")]
    NoMinerThreads,
    #[error("rpc-rate-limit must be at least 1 call per second")]
    NoRpcCalls,
}

/// Where the node's networking and services listen, after layering.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub key: Option<PathBuf>,
    pub listen: Vec<Multiaddr>,
    pub bootnodes: Vec<Multiaddr>,
    pub rpc: SocketAddr,
    pub rpc_allow_hosts: Vec<AllowedHost>,
    pub rpc_allow_origins: Vec<AllowedOrigin>,
    pub rpc_rate: RateLimit,
    pub metrics: SocketAddr,
    /// `None`: no explorer.
    pub explorer: Option<SocketAddr>,
    pub mine: bool,
    pub miner_threads: u32,
    pub coinbase: Option<Address>,
    pub log_format: LogFormat,
}

/// What `run` resolves to.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub data_dir: PathBuf,
    pub genesis: PathBuf,
    pub node: NodeSettings,
}

pub const RPC_DEFAULT: &str = "127.0.0.1:8545";
pub const METRICS_DEFAULT: &str = "127.0.0.1:9615";
pub const EXPLORER_DEFAULT: &str = "127.0.0.1:9616";

impl RunArgs {
    pub fn resolve(&self) -> Result<RunSettings, ConfigError> {
        let file = FileLayer::load(self.node.config.as_deref())?;
        let data_dir = self
            .data_dir
            .clone()
            .or(file.config.data_dir.clone())
            .ok_or(ConfigError::Missing("data-dir", "DATA_DIR"))?;
        let genesis =
            self.genesis.clone().or(file.config.genesis.clone()).ok_or(ConfigError::Missing("genesis", "GENESIS"))?;
        let node = file.resolve(&self.node, "/ip4/0.0.0.0/tcp/30333", false)?;
        Ok(RunSettings { data_dir, genesis, node })
    }
}

impl DevArgs {
    pub fn resolve(&self) -> Result<(Option<PathBuf>, NodeSettings), ConfigError> {
        let file = FileLayer::load(self.node.config.as_deref())?;
        let data_dir = if self.tmp { None } else { self.data_dir.clone().or(file.config.data_dir.clone()) };
        let node = file.resolve(&self.node, "/ip4/127.0.0.1/tcp/30333", true)?;
        Ok((data_dir, node))
    }
}

pub(crate) struct FileLayer {
    path: PathBuf,
    pub(crate) config: FileConfig,
}

impl FileLayer {
    fn load(path: Option<&Path>) -> Result<FileLayer, ConfigError> {
        let Some(path) = path else { return Ok(FileLayer { path: PathBuf::new(), config: FileConfig::default() }) };
        let text = std::fs::read_to_string(path)
            .map_err(|error| ConfigError::Read { path: path.to_owned(), reason: error.to_string() })?;
        FileLayer::parse(path, &text)
    }

    /// The file at `path` whose text is `text`.
    pub(crate) fn parse(path: &Path, text: &str) -> Result<FileLayer, ConfigError> {
        let config = toml::from_str(text)
            .map_err(|error| ConfigError::Parse { path: path.to_owned(), reason: error.to_string() })?;
        Ok(FileLayer { path: path.to_owned(), config })
    }

    /// The settings this file gives `run` when no flag or environment variable is set.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn resolve_alone(&self) -> Result<NodeSettings, ConfigError> {
        self.resolve(&NodeArgs::default(), "/ip4/0.0.0.0/tcp/30333", false)
    }

    fn field<T: std::str::FromStr>(&self, field: &str, text: &str) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        text.parse().map_err(|error: T::Err| ConfigError::Field {
            path: self.path.clone(),
            field: field.to_owned(),
            reason: format!("{text:?}: {error}"),
        })
    }

    fn list<T: std::str::FromStr>(&self, field: &str, values: &Option<Vec<String>>) -> Result<Vec<T>, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        values
            .iter()
            .flatten()
            .enumerate()
            .map(|(index, text)| self.field(&format!("{field}[{index}]"), text))
            .collect()
    }

    /// A repeatable setting: the flags' values (or the environment's) if any, else the file's.
    fn flags_or_list<T: Clone + std::str::FromStr>(
        &self,
        field: &str,
        flags: &[T],
        values: &Option<Vec<String>>,
    ) -> Result<Vec<T>, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        if flags.is_empty() { self.list(field, values) } else { Ok(flags.to_vec()) }
    }

    fn resolve(&self, args: &NodeArgs, listen_default: &str, dev: bool) -> Result<NodeSettings, ConfigError> {
        let file = &self.config;
        let listen = if !args.listen.is_empty() {
            args.listen.clone()
        } else if file.listen.is_some() {
            self.list("listen", &file.listen)?
        } else {
            vec![listen_default.parse().expect("invariant: a valid default")]
        };
        let bootnodes = self.flags_or_list("bootnode", &args.bootnode, &file.bootnode)?;
        let rpc = match (args.rpc, &file.rpc) {
            (Some(rpc), _) => rpc,
            (None, Some(text)) => self.field("rpc", text)?,
            (None, None) => RPC_DEFAULT.parse().expect("invariant: a valid default"),
        };
        let rpc_allow_hosts = self.flags_or_list("rpc-allow-host", &args.rpc_allow_host, &file.rpc_allow_host)?;
        let rpc_allow_origins =
            self.flags_or_list("rpc-allow-origin", &args.rpc_allow_origin, &file.rpc_allow_origin)?;
        let metrics = match (args.metrics, &file.metrics) {
            (Some(metrics), _) => metrics,
            (None, Some(text)) => self.field("metrics", text)?,
            (None, None) => METRICS_DEFAULT.parse().expect("invariant: a valid default"),
        };
        let explorer = match (args.explorer, &file.explorer) {
            (Some(explorer), _) => explorer,
            (None, Some(text)) => self.field("explorer", text)?,
            (None, None) => EXPLORER_DEFAULT.parse().expect("invariant: a valid default"),
        };
        let coinbase = match (args.coinbase, &file.coinbase) {
            (Some(coinbase), _) => Some(coinbase),
            (None, Some(text)) => Some(Address::parse(text).map_err(|error| ConfigError::Field {
                path: self.path.clone(),
                field: "coinbase".to_owned(),
                reason: error.to_string(),
            })?),
            (None, None) => None,
        };
        let rpc_rate = match args.rpc_rate_limit.or(file.rpc_rate_limit) {
            Some(0) => return Err(ConfigError::NoRpcCalls),
            Some(per_sec) => RateLimit::per_sec(per_sec),
            None => RateLimit::default(),
        };
        let miner_threads = args.miner_threads.or(file.miner_threads).unwrap_or(1);
        if miner_threads == 0 {
            return Err(ConfigError::NoMinerThreads);
        }
        Ok(NodeSettings {
            key: args.key.clone().or(file.key.clone()),
            listen,
            bootnodes,
            rpc,
            rpc_allow_hosts,
            rpc_allow_origins,
            rpc_rate,
            metrics,
            explorer: match explorer {
                ExplorerAddr::Off => None,
                ExplorerAddr::At(addr) => Some(addr),
            },
            mine: args.mine.or(file.mine).unwrap_or(dev),
            miner_threads,
            coinbase,
            log_format: args.log_format.or(file.log_format).unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(flags: &[&str]) -> RunArgs {
        let mut argv = vec!["chorusd", "run"];
        argv.extend_from_slice(flags);
        match Cli::try_parse_from(argv).expect("parses").command {
            Command::Run(args) => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flags_override_the_file_and_the_file_overrides_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("chorusd.toml");
        std::fs::write(
            &file,
            "data-dir = \"/from/file\"\ngenesis = \"g.json\"\nrpc = \"127.0.0.1:9000\"\nminer-threads = 3\n",
        )
        .expect("write");
        let config = file.to_str().expect("utf-8");
        let settings = run_args(&["--config", config]).resolve().expect("resolves");
        assert_eq!(settings.data_dir, PathBuf::from("/from/file"));
        assert_eq!(settings.node.rpc, "127.0.0.1:9000".parse().expect("addr"));
        assert_eq!(settings.node.miner_threads, 3);
        assert_eq!(settings.node.metrics, METRICS_DEFAULT.parse().expect("addr"));
        assert!(!settings.node.mine);
        let settings = run_args(&["--config", config, "--data-dir", "/from/flag", "--rpc", "127.0.0.1:9001", "--mine"])
            .resolve()
            .expect("resolves");
        assert_eq!(settings.data_dir, PathBuf::from("/from/flag"));
        assert_eq!(settings.node.rpc, "127.0.0.1:9001".parse().expect("addr"));
        assert!(settings.node.mine);
    }

    #[test]
    fn rpc_allow_lists_come_from_the_file_or_the_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("chorusd.toml");
        std::fs::write(
            &file,
            "data-dir = \"d\"\ngenesis = \"g\"\nrpc-allow-host = [\"node.example\"]\nrpc-allow-origin = [\"https://x.example\"]\n",
        )
        .expect("write");
        let config = file.to_str().expect("utf-8");
        let settings = run_args(&["--config", config]).resolve().expect("resolves");
        assert_eq!(settings.node.rpc_allow_hosts, vec![AllowedHost::Name("node.example".to_owned())]);
        assert_eq!(settings.node.rpc_allow_origins, vec![AllowedOrigin::Exact("https://x.example".to_owned())]);
        let settings = run_args(&["--config", config, "--rpc-allow-host", "a.example,*"]).resolve().expect("resolves");
        assert_eq!(settings.node.rpc_allow_hosts, vec![AllowedHost::Name("a.example".to_owned()), AllowedHost::Any]);
        let defaults = run_args(&["--data-dir", "d", "--genesis", "g"]).resolve().expect("resolves");
        assert!(defaults.node.rpc_allow_hosts.is_empty() && defaults.node.rpc_allow_origins.is_empty());
        assert!(Cli::try_parse_from(["chorusd", "run", "--rpc-allow-origin", "x.example"]).is_err());
    }

    #[test]
    fn the_rpc_rate_limit_defaults_to_the_stated_one_and_may_be_set() {
        let defaults = run_args(&["--data-dir", "d", "--genesis", "g"]).resolve().expect("resolves");
        assert_eq!(defaults.node.rpc_rate, RateLimit::default());
        assert_eq!(defaults.node.rpc_rate.per_sec, chorus_chain::limits::RPC_CALLS_PER_SEC_MAX);
        let set =
            run_args(&["--data-dir", "d", "--genesis", "g", "--rpc-rate-limit", "50"]).resolve().expect("resolves");
        assert_eq!(set.node.rpc_rate, RateLimit { per_sec: 50, burst: 100 });
        let zero = run_args(&["--data-dir", "d", "--genesis", "g", "--rpc-rate-limit", "0"]).resolve();
        assert!(matches!(zero, Err(ConfigError::NoRpcCalls)));
    }

    #[test]
    fn bad_files_name_the_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("chorusd.toml");
        std::fs::write(
            &file,
            "data-dir = \"d\"\ngenesis = \"g\"\nbootnode = [\"/ip4/1.2.3.4/tcp/1\", \"not an address\"]\n",
        )
        .expect("write");
        let error = run_args(&["--config", file.to_str().expect("utf-8")]).resolve().expect_err("bad bootnode");
        assert!(error.to_string().contains("field bootnode[1]"), "{error}");
        std::fs::write(&file, "data-dir = \"d\"\nmystery = 1\n").expect("write");
        let error = run_args(&["--config", file.to_str().expect("utf-8")]).resolve().expect_err("unknown key");
        assert!(error.to_string().contains("mystery"), "{error}");
        std::fs::write(&file, "data-dir = \"d\"\ngenesis = \"g\"\nrpc-allow-origin = [\"explorer.example\"]\n")
            .expect("write");
        let error = run_args(&["--config", file.to_str().expect("utf-8")]).resolve().expect_err("bad origin");
        assert!(error.to_string().contains("field rpc-allow-origin[0]"), "{error}");
        let error = run_args(&[]).resolve().expect_err("no data dir");
        assert!(error.to_string().contains("CHORUS_DATA_DIR"), "{error}");
    }
}

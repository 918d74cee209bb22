//! `chorus`: the Chorus wallet. Talks to `chorusd` over JSON-RPC only; keys live in an
//! encrypted keystore (see [`keystore`]). Every error is one line and a distinct exit code
//! ([`Failure::exit_code`]); with `--json`, results and errors are JSON on stdout.
//!
//! Output goes through [`write_stdout`] and [`write_stderr`], never `println!`: a reader that
//! closes the pipe early (`chorus wallet list | head -1`) ends the command quietly instead of
//! panicking. Rust ignores SIGPIPE, so the closed pipe arrives as a write error (EPIPE).

mod load;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use chorus_chain::primitives::{Amount, Hash, Height};
use chorus_chain::tx::{Transaction, TxKind};
use chorus_chain::{Address, SecretKey, codec};
use chorus_cli::keystore;
use chorus_rpc_types::{
    BlockId, ErrorCode, GetAccount, GetBlock, GetFinalized, GetHead, GetStatus, GetTx, GetValidators,
    MembershipChangeKind, NodeStatus, RaftAddLearner, RaftPromote, RaftRemove, Request, SubmitTx, TxStatus, Validators,
};
use clap::{Parser, Subcommand};
use jsonrpsee::core::client::{ClientT, Error as ClientError};
use jsonrpsee::core::traits::ToRpcParams;
use jsonrpsee::http_client::{HeaderMap, HeaderValue, HttpClient, HttpClientBuilder};
use keystore::{Keystore, KeystoreError};
use serde::Serialize;
use serde_json::json;
use zeroize::Zeroizing;

#[derive(Debug, Parser)]
#[command(
    name = "chorus",
    version,
    about = "The Chorus wallet: keys, balances and transfers, over a node's JSON-RPC",
    long_about = "The Chorus wallet. It keeps keys in an encrypted keystore (one file per key, argon2id and \
XChaCha20-Poly1305, mode 0600) and talks to a chorusd node over JSON-RPC only. Listing keys needs \
no password; commands that sign ask for it once (or read --password-file or CHORUS_PASSWORD).",
    after_help = "Examples:\n  chorus wallet import dev1 --dev 1\n  chorus wallet new alice\n  \
chorus transfer --from dev1 --to alice --amount 5000 --wait\n  chorus balance alice\n  \
chorus --json account chorus1... --verify\n\nExit codes: 0 done, 2 usage, 3 mistyped address, 4 wrong password, \
5 keystore, 6 node unreachable, 7 refused, 8 --wait timed out, 9 proof does not verify, \
10 insufficient funds, 11 nonce conflict, 12 more than 30 delegates, 13 other bad input."
)]
struct Cli {
    /// The node's JSON-RPC URL.
    #[arg(long, global = true, env = "CHORUS_RPC_URL", default_value = "http://127.0.0.1:8545")]
    rpc: String,
    /// The keystore directory [default: ~/.chorus/keystore].
    #[arg(long, global = true, env = "CHORUS_KEYSTORE", value_name = "DIR")]
    keystore: Option<PathBuf>,
    /// Print results and errors as JSON (also CHORUS_JSON=true).
    #[arg(long, global = true, env = "CHORUS_JSON", value_parser = clap::builder::BoolishValueParser::new(), num_args = 0, default_missing_value = "true")]
    json: bool,
    /// Read the keystore password from this file (else CHORUS_PASSWORD, else a prompt).
    #[arg(long, global = true, value_name = "FILE")]
    password_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage keys.
    #[command(subcommand)]
    Wallet(WalletCommand),
    /// An account's balance (an address, or a key's name); without one, every key's in the
    /// keystore and their total.
    Balance { account: Option<String> },
    /// An account's state at the head (an address, or a key's name); with --verify, proven
    /// against a settled block's state root.
    Account {
        address: String,
        /// Check the node's Merkle proof locally against the state root of a final block (or,
        /// without finality, one six blocks deep).
        #[arg(long)]
        verify: bool,
    },
    /// Send tokens.
    Transfer {
        /// An address, or a key's name in the keystore.
        #[arg(long)]
        to: String,
        /// Base units to send.
        #[arg(long)]
        amount: u128,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Lock balance as stake (weighs votes, and validators' power under PoS).
    Stake {
        /// Base units to stake.
        amount: u128,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Start unbonding stake; it returns to the balance after the unbonding period.
    Unstake {
        /// Base units to unstake.
        amount: u128,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Delegate (DPoS) registration.
    #[command(subcommand)]
    Delegate(DelegateCommand),
    /// Approve delegates with your stake (at most 30; none withdraws the vote).
    Vote {
        /// Delegates' addresses or key names.
        delegates: Vec<String>,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// The active validator, delegate or member set.
    Validators,
    /// Print a shell completion script.
    Completions { shell: clap_complete::Shell },
    /// The node's status.
    Status,
    /// A block by height or hash [default: the head].
    Block { id: Option<String> },
    /// A transaction's status.
    Tx { hash: String },
    /// Send signed transfers at a rate for a time, from many accounts (funded by --from) to one
    /// node or several, and report how many were accepted, included and final, with latencies.
    Load(load::LoadArgs),
    /// Raft membership, at the leader (admin methods: the node's RPC on loopback and its admin
    /// token). Each answers at once: the change proposed (follow it with `chorus validators`) or
    /// why it was refused.
    #[command(subcommand)]
    Raft(RaftCommand),
}

#[derive(Debug, Subcommand)]
enum RaftCommand {
    /// Add the node whose key has this address (or a key name) as a learner.
    AddLearner {
        address: String,
        /// Its member id [default: the next id never used].
        #[arg(long)]
        id: Option<u64>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Make a learner that has caught up a voter.
    Promote {
        id: u64,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Remove a voter or learner for good (its id is never reused).
    Remove {
        id: u64,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// What admin commands take.
#[derive(Debug, Clone, clap::Args)]
struct AdminArgs {
    /// The node's admin token file, DATA_DIR/rpc-admin.token (readable only by the node's user).
    #[arg(long, env = "CHORUS_ADMIN_TOKEN_FILE", value_name = "FILE")]
    admin_token_file: PathBuf,
}

#[derive(Debug, Subcommand)]
enum DelegateCommand {
    /// Register the sending account as a delegate.
    Register {
        #[command(flatten)]
        tx: TxArgs,
    },
}

/// What every transaction command takes.
#[derive(Debug, Clone, clap::Args)]
struct TxArgs {
    /// The key that signs and pays (its name in the keystore).
    #[arg(long)]
    from: String,
    /// [default: the chain's minimum fee]
    #[arg(long)]
    fee: Option<u128>,
    /// [default: the account's next nonce at the node, counting its pending transactions]
    #[arg(long)]
    nonce: Option<u64>,
    /// Wait until the transaction is in a block (`--wait`, or `--wait block`), or until that
    /// block is final (`--wait final`: under engines with finality, such as pos; a chain
    /// without finality, such as pow, never gets there and the wait times out).
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "block", value_name = "UNTIL")]
    wait: Option<WaitFor>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum WaitFor {
    Block,
    Final,
}

#[derive(Debug, Subcommand)]
enum WalletCommand {
    /// Create a key.
    New { name: String },
    /// List keys (no password needed).
    List,
    /// Import a key from a file holding its hex seed, or one of `chorusd dev`'s accounts.
    Import {
        name: String,
        #[arg(long, value_name = "FILE", conflicts_with = "dev")]
        seed_file: Option<PathBuf>,
        /// `chorusd dev` account number (its seed is public: never hold value with it).
        #[arg(long, value_name = "N")]
        dev: Option<u32>,
    },
    /// Print a key's secret seed (hex). Anyone who sees it controls the account.
    Export { name: String },
}

/// Why a command failed; each kind has its own exit code.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("{0}")]
    Address(String),
    #[error("{0}")]
    TooManyDelegates(String),
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Keystore(#[from] KeystoreError),
    #[error("cannot reach the node at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// An answer that is not the method's result (a missing or malformed field, or no
    /// JSON-RPC at all): no usable node at that URL, so the exit code is unreachable's.
    #[error("the node at {url} answered {method} with something other than its result: {reason}")]
    Malformed { url: String, method: &'static str, reason: String },
    #[error("the node refused: {message} (code {code}{})", data.as_ref().and_then(|data| data["reason"].as_str()).map(|reason| format!(", reason {reason}")).unwrap_or_default())]
    Refused { code: i32, message: String, data: Option<serde_json::Value> },
    #[error("{0}")]
    Timeout(String),
    #[error("the node's proof does not verify: {0}")]
    Unverified(String),
    /// Stdout's reader is gone: nobody is left to tell, so the command ends quietly.
    #[error("stdout is closed")]
    StdoutClosed,
    #[error("cannot write to stdout: {0}")]
    Stdout(std::io::Error),
}

impl Failure {
    /// 1 is left for anything unexpected, 2 is clap's usage error. README lists them all.
    fn exit_code(&self) -> u8 {
        match self {
            Failure::StdoutClosed => 0,
            Failure::Stdout(_) => 1,
            Failure::Address(_) => 3,
            Failure::Keystore(KeystoreError::WrongPassword(_)) => 4,
            Failure::Keystore(_) => 5,
            Failure::Unreachable { .. } | Failure::Malformed { .. } => 6,
            Failure::Refused { .. } if self.refusal() == Some(INSUFFICIENT_BALANCE) => 10,
            Failure::Refused { .. } if self.refusal().is_some_and(|code| NONCE_CONFLICTS.contains(&code)) => 11,
            Failure::Refused { .. } => 7,
            Failure::Timeout(_) => 8,
            Failure::Unverified(_) => 9,
            Failure::TooManyDelegates(_) => 12,
            Failure::Input(_) => 13,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Failure::Address(_) => "address",
            Failure::Keystore(KeystoreError::WrongPassword(_)) => "wrong_password",
            Failure::Keystore(_) => "keystore",
            Failure::Unreachable { .. } => "unreachable",
            Failure::Malformed { .. } => "malformed",
            Failure::Refused { .. } if self.refusal() == Some(INSUFFICIENT_BALANCE) => "insufficient_balance",
            Failure::Refused { .. } if self.refusal().is_some_and(|code| NONCE_CONFLICTS.contains(&code)) => {
                "nonce_conflict"
            }
            Failure::Refused { .. } => "refused",
            Failure::Timeout(_) => "timeout",
            Failure::Unverified(_) => "unverified",
            Failure::TooManyDelegates(_) => "too_many_delegates",
            Failure::Input(_) => "input",
            Failure::StdoutClosed | Failure::Stdout(_) => "output",
        }
    }

    /// The node's code, when it refused with one of README's.
    fn refusal(&self) -> Option<ErrorCode> {
        match self {
            Failure::Refused { code, .. } => ErrorCode::from_code(i64::from(*code)),
            _ => None,
        }
    }
}

/// The node's refusals the wallet tells apart by exit code.
const INSUFFICIENT_BALANCE: ErrorCode = ErrorCode::TxInsufficientBalance;
/// Nonce used, too far ahead, the same transaction pending, a replacement without a higher fee.
const NONCE_CONFLICTS: [ErrorCode; 4] =
    [ErrorCode::TxNonceUsed, ErrorCode::TxNonceTooFarAhead, ErrorCode::TxDuplicate, ErrorCode::TxReplacementFeeTooLow];

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::StdoutClosed) => ExitCode::from(Failure::StdoutClosed.exit_code()),
        Err(failure) => {
            // Where the error cannot be written either, the exit code still says it.
            if json && !matches!(failure, Failure::Stdout(_)) {
                let mut error = json!({ "kind": failure.kind(), "message": failure.to_string() });
                if let Failure::Refused { code, data, .. } = &failure {
                    error["code"] = json!(code);
                    if let Some(data) = data {
                        error["data"] = data.clone();
                    }
                }
                let _ = write_stdout(format!("{}\n", json!({ "error": error })).as_bytes());
            } else {
                write_stderr(&format!("chorus: {failure}"));
            }
            ExitCode::from(failure.exit_code())
        }
    }
}

/// Writes `bytes` to stdout and flushes them. A closed pipe is [`Failure::StdoutClosed`].
fn write_stdout(bytes: &[u8]) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes).and_then(|()| stdout.flush()).map_err(|error| match error.kind() {
        std::io::ErrorKind::BrokenPipe => Failure::StdoutClosed,
        _ => Failure::Stdout(error),
    })
}

/// Writes one line to stderr, for people; a stderr nobody reads is no reason to fail.
fn write_stderr(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

struct Context {
    rpc_url: String,
    client: HttpClient,
    keystore: Keystore,
    password_file: Option<PathBuf>,
    json: bool,
    runtime: tokio::runtime::Runtime,
}

/// A wire request as jsonrpsee's parameters: the positional array it serializes to.
struct Positional<'a, R>(&'a R);

impl<R: Request> ToRpcParams for Positional<'_, R> {
    fn to_rpc_params(self) -> Result<Option<Box<serde_json::value::RawValue>>, serde_json::Error> {
        serde_json::value::to_raw_value(self.0).map(Some)
    }
}

impl Context {
    /// One call; its result read as the method's result type, every field required.
    fn request<R: Request + Sync>(&self, request: &R) -> Result<R::Response, Failure> {
        self.request_through(&self.client, request)
    }

    /// [`Context::request`] through a given client (one that sends the admin token).
    fn request_through<R: Request + Sync>(&self, client: &HttpClient, request: &R) -> Result<R::Response, Failure> {
        let method = R::METHOD.name();
        self.runtime
            .block_on(client.request(method, Positional(request)))
            .map_err(|error| call_failure(&self.rpc_url, method, error))
    }

    /// The password: `--password-file` (refused if others can read it), else `CHORUS_PASSWORD`,
    /// else one prompt.
    fn password(&self, prompt: &str) -> Result<Zeroizing<Vec<u8>>, Failure> {
        if let Some(path) = &self.password_file {
            return Ok(keystore::read_password_file(path)?);
        }
        if let Ok(password) = std::env::var("CHORUS_PASSWORD") {
            return Ok(Zeroizing::new(password.into_bytes()));
        }
        rpassword::prompt_password(prompt).map(|password| Zeroizing::new(password.into_bytes())).map_err(|error| {
            Failure::Input(format!("cannot read a password (set CHORUS_PASSWORD or --password-file): {error}"))
        })
    }

    /// Prints `value` as one line of JSON with `--json`, else `human()`'s line.
    fn print(&self, value: &impl Serialize, human: impl FnOnce() -> String) -> Result<(), Failure> {
        let mut line = if self.json {
            serde_json::to_string(value).expect("invariant: what the wallet prints serializes to JSON")
        } else {
            human()
        };
        line.push('\n');
        write_stdout(line.as_bytes())
    }

    /// A client that sends the node's admin token, read from the token file.
    fn admin_client(&self, admin: &AdminArgs) -> Result<HttpClient, Failure> {
        let path = &admin.admin_token_file;
        let token = std::fs::read_to_string(path)
            .map_err(|error| Failure::Input(format!("admin token file {}: {error}", path.display())))?;
        let value = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
            .map_err(|_| Failure::Input(format!("admin token file {}: not a token", path.display())))?;
        let mut headers = HeaderMap::new();
        headers.insert("authorization", value);
        HttpClientBuilder::default()
            .request_timeout(Duration::from_secs(30))
            .set_headers(headers)
            .build(&self.rpc_url)
            .map_err(|error| Failure::Input(format!("--rpc {}: {error}", self.rpc_url)))
    }

    /// An address, or the address of a key in the keystore.
    fn address(&self, text: &str) -> Result<Address, Failure> {
        // An address in either case (BIP-173's all-capitals form); anything else names a key.
        if text.get(..7).is_some_and(|prefix| prefix.eq_ignore_ascii_case("chorus1")) {
            return Address::parse(text).map_err(|error| Failure::Address(error.to_string()));
        }
        Ok(self.keystore.entry(text)?.address)
    }
}

/// What a failed call to the node at `url` means to the wallet.
fn call_failure(url: &str, method: &'static str, error: ClientError) -> Failure {
    match error {
        ClientError::Call(error) => Failure::Refused {
            code: error.code(),
            message: error.message().to_owned(),
            data: error.data().and_then(|data| serde_json::from_str(data.get()).ok()),
        },
        ClientError::ParseError(error) => Failure::Malformed { url: url.to_owned(), method, reason: error.to_string() },
        other => Failure::Unreachable { url: url.to_owned(), reason: other.to_string() },
    }
}

fn default_keystore() -> PathBuf {
    std::env::var_os("HOME")
        .map_or_else(|| PathBuf::from(".chorus/keystore"), |home| PathBuf::from(home).join(".chorus/keystore"))
}

fn run(cli: Cli) -> Result<(), Failure> {
    let client = HttpClientBuilder::default()
        .request_timeout(Duration::from_secs(30))
        .build(&cli.rpc)
        .map_err(|error| Failure::Input(format!("--rpc {}: {error}", cli.rpc)))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| Failure::Input(error.to_string()))?;
    let context = Context {
        rpc_url: cli.rpc.clone(),
        client,
        keystore: Keystore::new(cli.keystore.clone().unwrap_or_else(default_keystore)),
        password_file: cli.password_file.clone(),
        json: cli.json,
        runtime,
    };
    match cli.command {
        Command::Wallet(command) => wallet(&context, command),
        Command::Balance { account: None } => keystore_balances(&context),
        Command::Balance { account: Some(account) } => {
            let address = context.address(&account)?;
            let account = context.request(&GetAccount { address, proof_height: None })?;
            context.print(&json!({ "address": address, "balance": account.balance, "height": account.height }), || {
                account.balance.to_string()
            })
        }
        Command::Account { address, verify } => {
            let address = context.address(&address)?;
            if verify {
                return verified_account(&context, address);
            }
            let account = context.request(&GetAccount { address, proof_height: None })?;
            context.print(&account, || account_text(&account))
        }
        Command::Transfer { to, amount, tx } => {
            let to = context.address(&to)?;
            submit(&context, &tx, TxKind::Transfer { to, amount: Amount::new(amount) })
        }
        Command::Stake { amount, tx } => submit(&context, &tx, TxKind::Stake { amount: Amount::new(amount) }),
        Command::Unstake { amount, tx } => submit(&context, &tx, TxKind::Unstake { amount: Amount::new(amount) }),
        Command::Delegate(DelegateCommand::Register { tx }) => submit(&context, &tx, TxKind::RegisterDelegate),
        Command::Vote { delegates, tx } => {
            let max = chorus_chain::limits::VOTE_DELEGATES_MAX as usize;
            if delegates.len() > max {
                return Err(Failure::TooManyDelegates(format!(
                    "{} delegates given, a vote approves at most {max}",
                    delegates.len()
                )));
            }
            let delegates =
                delegates.iter().map(|delegate| context.address(delegate)).collect::<Result<Vec<_>, _>>()?;
            submit(&context, &tx, TxKind::Vote { delegates })
        }
        Command::Validators => {
            let set = context.request(&GetValidators)?;
            context.print(&set, || validators_table(&set))
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            // Generated into memory: clap_complete panics on a failed write.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "chorus", &mut script);
            write_stdout(&script)
        }
        Command::Status => {
            let status = context.request(&GetStatus)?;
            context.print(&status, || status_text(&status))
        }
        Command::Block { id } => {
            let id = match id {
                None => BlockId::Height(context.request(&GetHead)?.height),
                Some(text) => BlockId::parse(&text).map_err(|error| {
                    Failure::Input(format!("block {text:?}: neither a height nor a 64-hex-digit hash ({error})"))
                })?,
            };
            let block = context.request(&GetBlock { id })?.ok_or_else(|| Failure::Input(format!("no block {id}")))?;
            context.print(&block, || block_text(&block))
        }
        Command::Tx { hash } => {
            let hash =
                Hash::from_hex(&hash).map_err(|error| Failure::Input(format!("transaction hash {hash:?}: {error}")))?;
            let info = context.request(&GetTx { hash })?;
            context.print(&info, || tx_text(&info))
        }
        Command::Raft(command) => raft(&context, command),
        Command::Load(args) => load::run(&context, args),
    }
}

/// `chorus raft ...`: one admin call, answered at once.
fn raft(context: &Context, command: RaftCommand) -> Result<(), Failure> {
    let change = match command {
        RaftCommand::AddLearner { address, id, admin } => {
            let address = context.address(&address)?;
            context.request_through(&context.admin_client(&admin)?, &RaftAddLearner { address, id })?
        }
        RaftCommand::Promote { id, admin } => {
            context.request_through(&context.admin_client(&admin)?, &RaftPromote { id })?
        }
        RaftCommand::Remove { id, admin } => {
            context.request_through(&context.admin_client(&admin)?, &RaftRemove { id })?
        }
    };
    context.print(&change, || {
        let what = change_words(change.kind);
        format!(
            "proposed at log index {}: {what} member {} ({}); in force once applied (chorus validators shows it \
             pending until then)",
            change.index, change.id, change.address
        )
    })
}

/// `chorus validators` for people: the set as a table, the next slots' proposers, under DPoS
/// the pending schedule and the ranking, under Raft the members with their roles and leader.
fn validators_table(set: &Validators) -> String {
    if set.open {
        return format!("engine {}: open, anyone may produce blocks", set.engine);
    }
    if let Some(raft) = &set.raft {
        return raft_table(&set.engine, raft);
    }
    let mut heading = format!("engine {}", set.engine);
    if let Some(epoch) = set.epoch {
        heading.push_str(&format!(", epoch {epoch}"));
    }
    if let Some(slot) = set.slot {
        heading.push_str(&format!(", slot {slot}"));
    }
    if let Some(producer) = set.producer {
        heading.push_str(&format!(", producer {producer}"));
    }
    let mut lines = vec![heading];
    let weight = match &set.election {
        Some(election) => {
            lines.push(format!(
                "schedule version {} from slot {}: {} producers (at most {})",
                election.schedule_version,
                election.schedule_start_slot,
                set.validators.len(),
                election.producers
            ));
            "WEIGHT"
        }
        None => "STAKE",
    };
    lines.push(format!("{:<65} {:<52} {:>24} {:>8} {}", "ADDRESS", "PEER ID", weight, "SHARE", "SLASHED"));
    for validator in &set.validators {
        lines.push(format!(
            "{:<65} {:<52} {:>24} {:>7}% {}",
            validator.address.to_string(),
            validator.peer_id.as_str(),
            validator.stake.to_string(),
            format!("{}.{:02}", validator.share_bps / 100, validator.share_bps % 100),
            yes_no(validator.slashed)
        ));
    }
    if !set.schedule.is_empty() {
        lines.push("next proposers:".to_owned());
        for slot in &set.schedule {
            lines.push(format!("  slot {} {}", slot.slot, slot.proposer));
        }
    }
    if let Some(election) = &set.election {
        match &election.pending {
            Some(pending) => {
                lines.push(format!(
                    "pending schedule, proposed at block {} (in force from the first round boundary after that \
                     block is irreversible):",
                    pending.proposed_at
                ));
                lines.extend(pending.producers.iter().map(|producer| format!("  {producer}")));
            }
            None => lines.push("pending schedule: none".to_owned()),
        }
        lines.push(format!("ranking ({} registered delegates):", election.ranking.len()));
        lines.push(format!(
            "{:>5} {:<65} {:>24} {:<7} {:<9} {}",
            "RANK", "ADDRESS", "WEIGHT", "ELECTED", "SCHEDULED", "SLASHED"
        ));
        for delegate in &election.ranking {
            lines.push(format!(
                "{:>5} {:<65} {:>24} {:<7} {:<9} {}",
                delegate.rank,
                delegate.address.to_string(),
                delegate.weight.to_string(),
                yes_no(delegate.elected),
                yes_no(delegate.scheduled),
                yes_no(delegate.slashed)
            ));
        }
    }
    lines.join("\n")
}

/// A membership change's kind, as the wallet words it.
fn change_words(kind: MembershipChangeKind) -> &'static str {
    match kind {
        MembershipChangeKind::AddLearner => "add learner",
        MembershipChangeKind::Promote => "promote",
        MembershipChangeKind::Remove => "remove",
    }
}

fn raft_table(engine: &str, raft: &chorus_rpc_types::RaftMembers) -> String {
    let leader = match raft.leader {
        Some(id) => format!("leader {id}"),
        None => "no leader (an election is under way, or this node is cut off from a quorum)".to_owned(),
    };
    let me = match raft.member_id {
        Some(id) => format!("this node is member {id}"),
        None => "this node is not a member".to_owned(),
    };
    let mut lines = vec![
        format!("engine {engine}, term {}, {leader}, commit index {}; {me}", raft.term, raft.commit_index),
        format!("{:>4} {:<8} {:<65} {:>8} {:<6} {}", "ID", "ROLE", "ADDRESS", "MATCH", "ACTIVE", "PEER ID"),
    ];
    for member in &raft.members {
        let role = match (member.role, raft.leader == Some(member.id)) {
            (_, true) => "leader",
            (chorus_rpc_types::RaftRole::Voter, false) => "voter",
            (chorus_rpc_types::RaftRole::Learner, false) => "learner",
        };
        // What the leader knows of each member's log and liveness; other members do not know.
        let matched = member.match_index.map_or_else(|| "-".to_owned(), |index| index.to_string());
        let active = member.recently_active.map_or("-", yes_no);
        lines.push(format!(
            "{:>4} {:<8} {:<65} {:>8} {:<6} {}",
            member.id,
            role,
            member.address.to_string(),
            matched,
            active,
            member.peer_id.as_str()
        ));
    }
    if let Some(change) = &raft.pending_change {
        let what = change_words(change.kind);
        lines.push(format!(
            "pending change at log index {}: {what} member {} ({})",
            change.index, change.id, change.address
        ));
    }
    lines.join("\n")
}

/// `chorus block` for people: the header, then a line per transaction.
fn block_text(block: &chorus_rpc_types::Block) -> String {
    let mut lines = vec![
        format!("block {} {}", block.height, block.hash),
        format!("parent      {}", block.parent),
        format!("timestamp   {} ms since the Unix epoch", block.timestamp.as_millis()),
        format!("proposer    {}", block.proposer),
        format!("state root  {}", block.state_root),
        format!("txs root    {}", block.txs_root),
    ];
    if let Some(work) = &block.chain_work {
        lines.push(format!("chain work  {}", hex::encode(work.0)));
    }
    lines.push(format!("transactions: {}", block.transactions.len()));
    for tx in &block.transactions {
        lines.push(format!(
            "  {} from {} nonce {} fee {}: {}",
            tx.hash,
            tx.sender,
            tx.nonce,
            tx.fee,
            kind_text(&tx.kind)
        ));
    }
    lines.join("\n")
}

/// Label and value pairs as aligned lines: the labels padded to the longest.
fn fields(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
    rows.iter().map(|(label, value)| format!("{label:<width$}  {value}")).collect::<Vec<_>>().join("\n")
}

fn status_text(status: &NodeStatus) -> String {
    let mut rows = vec![
        ("chain", format!("{} ({})", status.chain_id, status.engine)),
        ("head", format!("{} {}", status.head.height, status.head.hash)),
        (
            "finalized",
            status.finalized.map_or_else(
                || "none (this engine has no finality)".to_owned(),
                |block| format!("{} {}", block.height, block.hash),
            ),
        ),
    ];
    if let Some(slot) = status.slot {
        rows.push(("slot", slot.to_string()));
    }
    rows.push(("peer id", status.peer_id.as_str().to_owned()));
    rows.push(("peers", status.n_peers.to_string()));
    rows.push((
        "sync",
        match &status.sync {
            Some(sync) => format!(
                "syncing: {} of {}, {}.{:03} blocks/s{}",
                sync.head,
                sync.target,
                sync.blocks_per_sec_milli / 1000,
                sync.blocks_per_sec_milli % 1000,
                sync.eta_secs.map(|secs| format!(", about {secs} s left")).unwrap_or_default()
            ),
            None if status.syncing => "syncing".to_owned(),
            None => "not syncing".to_owned(),
        },
    ));
    rows.push((
        "mempool",
        format!(
            "{} transactions, {} bytes (fee at least {})",
            status.mempool.n_transactions, status.mempool.size_bytes, status.min_tx_fee
        ),
    ));
    if let Some(reason) = &status.halted {
        rows.push(("HALTED", reason.clone()));
    }
    fields(&rows)
}

/// `chorus balance` without an account: each key's balance at the node's head (one read per
/// key, so under a fast chain the heights may differ by a block; each row says its own) and
/// their sum.
fn keystore_balances(context: &Context) -> Result<(), Failure> {
    let entries = context.keystore.list()?;
    if entries.is_empty() {
        return Err(Failure::Input(
            "the keystore holds no keys: give an ADDRESS, or add a key with `chorus wallet new NAME`".to_owned(),
        ));
    }
    let mut rows = Vec::with_capacity(entries.len());
    let mut total = Amount::ZERO;
    for entry in entries {
        let account = context.request(&GetAccount { address: entry.address, proof_height: None })?;
        total = total.checked_add(account.balance).map_err(|_| Failure::Malformed {
            url: context.rpc_url.clone(),
            method: GetAccount::METHOD.name(),
            reason: "the keys' balances add up to more than any amount can be".to_owned(),
        })?;
        rows.push((entry.name, account));
    }
    let json = json!({
        "accounts": rows.iter().map(|(name, account)| json!({
            "name": name, "address": account.address, "balance": account.balance, "height": account.height,
        })).collect::<Vec<_>>(),
        "total": total,
    });
    context.print(&json, || {
        let mut table = vec![["NAME", "ADDRESS", "BALANCE", "HEIGHT"].map(str::to_owned)];
        table.extend(rows.iter().map(|(name, account)| {
            [name.clone(), account.address.to_string(), account.balance.to_string(), account.height.to_string()]
        }));
        table.push(["total".to_owned(), String::new(), total.to_string(), String::new()]);
        let width = |column: usize| table.iter().map(|row| row[column].len()).max().unwrap_or(0);
        let (name_width, address_width, balance_width) = (width(0), width(1), width(2));
        table
            .iter()
            .map(|[name, address, balance, height]| {
                let line =
                    format!("{name:<name_width$}  {address:<address_width$}  {balance:>balance_width$}  {height}");
                line.trim_end().to_owned()
            })
            .collect::<Vec<_>>()
            .join("\n")
    })
}

fn account_text(account: &chorus_rpc_types::Account) -> String {
    let mut rows = vec![
        ("address", account.address.to_string()),
        ("balance", account.balance.to_string()),
        ("nonce", format!("{} (next transaction: {})", account.nonce, account.next_nonce)),
        ("stake", account.stake.to_string()),
    ];
    for entry in &account.unbonding {
        rows.push(("unbonding", format!("{} back at block {}", entry.amount, entry.release_height)));
    }
    if !account.votes.is_empty() {
        rows.push(("votes for", account.votes.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")));
    }
    rows.push(("read at", format!("block {}, state root {}", account.height, account.state_root)));
    fields(&rows)
}

fn tx_text(info: &chorus_rpc_types::TxInfo) -> String {
    let mut rows = vec![("transaction", info.hash.to_string())];
    let status = match &info.status {
        TxStatus::Unknown => "unknown: neither pending nor in a block of this node's chain".to_owned(),
        TxStatus::Pending => "pending: in the mempool, not in a block yet".to_owned(),
        TxStatus::Included { .. } => "included: in a block that is not final yet".to_owned(),
        TxStatus::Final { .. } => "final".to_owned(),
    };
    rows.push(("status", status));
    if let TxStatus::Included { height, block, index } | TxStatus::Final { height, block, index } = &info.status {
        rows.push(("block", format!("{height} {block}")));
        rows.push(("index", index.to_string()));
    }
    fields(&rows)
}

fn kind_text(kind: &TxKind) -> String {
    match kind {
        TxKind::Transfer { to, amount } => format!("transfer {amount} to {to}"),
        TxKind::Stake { amount } => format!("stake {amount}"),
        TxKind::Unstake { amount } => format!("unstake {amount}"),
        TxKind::RegisterDelegate => "register as a delegate".to_owned(),
        TxKind::Vote { delegates } if delegates.is_empty() => "withdraw the vote".to_owned(),
        TxKind::Vote { delegates } => {
            format!("vote for {}", delegates.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))
        }
        TxKind::Evidence(evidence) => format!("evidence against {}", evidence.offender()),
    }
}

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

fn wallet(context: &Context, command: WalletCommand) -> Result<(), Failure> {
    match command {
        WalletCommand::New { name } => {
            let password = context.password(&format!("password for new key {name}: "))?;
            let entry = context.keystore.add(&name, &SecretKey::generate(), &password)?;
            context.print(&json!(entry), || format!("{} {}", entry.name, entry.address))
        }
        WalletCommand::List => {
            let entries = context.keystore.list()?;
            context.print(&json!(entries), || {
                entries.iter().map(|entry| format!("{} {}", entry.name, entry.address)).collect::<Vec<_>>().join("\n")
            })
        }
        WalletCommand::Import { name, seed_file, dev } => {
            let key = match (seed_file, dev) {
                (Some(path), None) => {
                    let text = Zeroizing::new(
                        std::fs::read_to_string(&path)
                            .map_err(|error| Failure::Input(format!("{}: {error}", path.display())))?,
                    );
                    let bytes = Zeroizing::new(
                        hex::decode(text.trim())
                            .map_err(|_| Failure::Input(format!("{} does not hold a hex seed", path.display())))?,
                    );
                    let seed = Zeroizing::new(<[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                        Failure::Input(format!("{} holds {} bytes, a seed is 32", path.display(), bytes.len()))
                    })?);
                    SecretKey::from_seed(*seed)
                }
                (None, Some(index)) => SecretKey::from_seed(dev_seed(index)),
                _ => return Err(Failure::Input("give --seed-file FILE or --dev N".to_owned())),
            };
            let password = context.password(&format!("password for key {name}: "))?;
            let entry = context.keystore.add(&name, &key, &password)?;
            context.print(&json!(entry), || format!("{} {}", entry.name, entry.address))
        }
        WalletCommand::Export { name } => {
            let password = context.password(&format!("password for key {name}: "))?;
            let key = context.keystore.unlock(&name, &password)?;
            write_stdout(&export_line(&name, &key, context.json))
        }
    }
}

/// Bytes `wallet export` prints at most: a 64-character name, an address and 64 hex digits, in
/// JSON with its keys, or the hex digits alone.
const EXPORT_LINE_BYTES_MAX: usize = 256;

/// `wallet export`'s line: the seed in hex, alone or in JSON with the key's name and address.
/// Every copy of the seed on the way is zeroized when dropped, and the line is built in one
/// buffer that never outgrows its capacity (a grown buffer leaves its old bytes behind, freed
/// but not cleared).
fn export_line(name: &str, key: &SecretKey, json: bool) -> Zeroizing<Vec<u8>> {
    #[derive(Serialize)]
    struct Exported<'a> {
        address: Address,
        name: &'a str,
        seed: &'a str,
    }
    let seed = Zeroizing::new(key.seed());
    let mut seed_hex = Zeroizing::new([0u8; 64]);
    hex::encode_to_slice(seed.as_slice(), seed_hex.as_mut_slice()).expect("invariant: 32 bytes are 64 hex digits");
    let seed_text = std::str::from_utf8(seed_hex.as_slice()).expect("invariant: hex digits are ASCII");
    let mut line = Zeroizing::new(Vec::with_capacity(EXPORT_LINE_BYTES_MAX));
    if json {
        serde_json::to_writer(&mut *line, &Exported { address: key.address(), name, seed: seed_text })
            .expect("invariant: writing JSON into a Vec cannot fail");
    } else {
        line.extend_from_slice(seed_text.as_bytes());
    }
    line.push(b'\n');
    assert!(line.len() <= EXPORT_LINE_BYTES_MAX, "invariant: key names are at most 64 characters");
    line
}

/// `chorusd dev` account `index`'s seed: SHA-256 of "chorus dev account <index>" (README).
fn dev_seed(index: u32) -> [u8; 32] {
    Hash::digest(format!("chorus dev account {index}").as_bytes()).0
}

/// Blocks below the head an account is proven at when the engine has no finality.
const SETTLED_DEPTH: u64 = 6;

/// Proves an account against a settled block's state root, locally.
fn verified_account(context: &Context, address: Address) -> Result<(), Failure> {
    let height = match context.request(&GetFinalized)? {
        Some(finalized) => finalized.height,
        None => Height::new(context.request(&GetHead)?.height.get().saturating_sub(SETTLED_DEPTH)),
    };
    let block = context
        .request(&GetBlock { id: BlockId::Height(height) })?
        .ok_or_else(|| Failure::Input(format!("the node has no block {height}")))?;
    let root = block.state_root;
    let state = context.request(&GetAccount { address, proof_height: Some(height) })?;
    let proof = state.proof.ok_or_else(|| Failure::Unverified(format!("the node sent no proof at height {height}")))?;
    let account = verify_account(address, root, proof.value, &proof.proof_bytes)?;
    let result = json!({
        "address": address,
        "height": height,
        "stateRoot": root,
        "verified": true,
        "balance": account.balance,
        "nonce": account.nonce,
        "stake": account.stake,
    });
    context.print(&result, || {
        format!(
            "verified against block {height}'s state root {root}: balance {}, nonce {}, stake {}",
            account.balance, account.nonce, account.stake
        )
    })
}

/// Checks a Merkle proof that `address` holds `value` under `root`; returns the account.
fn verify_account(
    address: Address,
    root: Hash,
    value: Option<Vec<u8>>,
    proof_bytes: &[u8],
) -> Result<chorus_chain::state::Account, Failure> {
    use chorus_chain::state::{StateKey, tree};
    let proof =
        tree::StateProof::from_parts(value, proof_bytes).map_err(|error| Failure::Unverified(error.to_string()))?;
    tree::verify_proof(root, &StateKey::Account(address), &proof)
        .map_err(|error| Failure::Unverified(error.to_string()))?;
    match &proof.value {
        Some(bytes) => codec::decode(bytes)
            .map_err(|error| Failure::Unverified(format!("proven value is not an account: {error}"))),
        // Proven absent: an account never used holds nothing.
        None => Ok(chorus_chain::state::Account::default()),
    }
}

/// Signs a transaction of `kind` with `--from`'s key, submits it, and with `--wait` waits for
/// its block.
fn submit(context: &Context, args: &TxArgs, kind: TxKind) -> Result<(), Failure> {
    let TxArgs { from, fee, nonce, wait } = args.clone();
    let from = from.as_str();
    let entry = context.keystore.entry(from)?;
    let status = context.request(&GetStatus)?;
    let nonce = match nonce {
        Some(nonce) => nonce,
        None => context.request(&GetAccount { address: entry.address, proof_height: None })?.next_nonce,
    };
    let fee = fee.map_or(status.min_tx_fee, Amount::new);
    let password = context.password(&format!("password for key {from}: "))?;
    let key = context.keystore.unlock(from, &password)?;
    let tx = Transaction { chain_id: status.chain_id, sender: entry.address, nonce, fee, kind }.sign(&key);
    let hash = context.request(&SubmitTx { tx })?;
    let Some(wait) = wait else {
        return context.print(&json!({ "hash": hash, "status": "pending" }), || hash.to_string());
    };
    let goal = match wait {
        WaitFor::Block => "a block",
        WaitFor::Final => "a final block",
    };
    // A spinner on a terminal; plain lines for logs, pipes and --json.
    let spinner = (!context.json && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(|| {
        let spinner = indicatif::ProgressBar::new_spinner();
        spinner.enable_steady_tick(Duration::from_millis(100));
        spinner.set_message(format!("{hash}: waiting for {goal}"));
        spinner
    });
    if spinner.is_none() && !context.json {
        write_stderr(&format!("submitted {hash}; waiting for {goal} ..."));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(WAIT_SECS);
    loop {
        let status = context.request(&GetTx { hash })?.status;
        let done = match wait {
            WaitFor::Block => status.block().is_some(),
            WaitFor::Final => matches!(status, TxStatus::Final { .. }),
        };
        if let (true, Some(block)) = (done, status.block()) {
            if let Some(spinner) = &spinner {
                spinner.finish_and_clear();
            }
            let what = if wait == WaitFor::Final { "final in" } else { "included in" };
            return context.print(&json!({ "hash": hash, "status": status.name(), "height": block.height }), || {
                format!("{hash} {what} block {}", block.height)
            });
        }
        if let Some(spinner) = &spinner {
            spinner.set_message(format!("{hash}: {}, waiting for {goal}", status.name()));
        }
        if std::time::Instant::now() > deadline {
            return Err(Failure::Timeout(format!(
                "{hash} not in {goal} after {WAIT_SECS} s (status: {})",
                status.name()
            )));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// How long `--wait` waits for a block.
const WAIT_SECS: u64 = 120;

#[cfg(test)]
mod tests {
    use chorus_chain::state::memory::MemoryState;
    use chorus_chain::state::{StateKey, tree};
    use chorus_chain::testing;

    use super::*;

    /// The seed `wallet export` prints is held only in buffers zeroized on drop, and the line is
    /// built without outgrowing its buffer (a grown buffer leaves its old bytes behind). Whether
    /// memory is cleared cannot be observed from safe code: the types say it.
    #[test]
    fn the_exported_seed_is_held_in_a_buffer_zeroized_on_drop() {
        fn zeroized_on_drop<T: zeroize::ZeroizeOnDrop>(_: &T) {}
        let key = SecretKey::from_seed([0xab; 32]);
        let name = "n".repeat(64);
        for json in [false, true] {
            let line = export_line(&name, &key, json);
            zeroized_on_drop(&line);
            assert_eq!(line.capacity(), EXPORT_LINE_BYTES_MAX, "the line never outgrew its buffer");
            let text = std::str::from_utf8(&line).expect("utf-8");
            assert!(text.ends_with('\n'));
            if json {
                let value: serde_json::Value = serde_json::from_str(text).expect("JSON");
                assert_eq!(value, json!({ "address": key.address(), "name": name, "seed": "ab".repeat(32) }));
            } else {
                assert_eq!(text, format!("{}\n", "ab".repeat(32)));
            }
        }
    }

    #[test]
    fn a_true_proof_verifies_and_a_tampered_one_does_not() {
        let genesis = testing::genesis(3, 1_000);
        let (state, block) = MemoryState::from_genesis(&genesis).expect("genesis state");
        let root = block.header.state_root;
        let address = testing::key(1).address();
        let proof = tree::prove(&state, &StateKey::Account(address), Height::GENESIS).expect("proof");
        let bytes = proof.proof_bytes();
        let account = verify_account(address, root, proof.value.clone(), &bytes).expect("a true proof verifies");
        assert_eq!(account.balance, Amount::new(1_000));

        // A richer account than the proof shows.
        let mut richer = account.clone();
        richer.balance = Amount::new(1_000_000);
        let forged = Some(codec::encode(&richer));
        assert!(matches!(verify_account(address, root, forged, &bytes), Err(Failure::Unverified(_))));
        // The right value under another root, another account's key, or a damaged proof.
        let other_root = Hash::digest(b"another root");
        assert!(verify_account(address, other_root, proof.value.clone(), &bytes).is_err());
        assert!(verify_account(testing::key(2).address(), root, proof.value.clone(), &bytes).is_err());
        let mut damaged = bytes.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        assert!(verify_account(address, root, proof.value, &damaged).is_err());
    }

    /// Under Raft the table lists the members by id with their roles, the leader marked, and
    /// says plainly when there is no leader.
    #[test]
    fn raft_members_print_with_their_roles_and_the_leader() {
        use chorus_rpc_types::{RaftMember, RaftMembers, RaftRole};
        let member = |id: u64, role| {
            let address = SecretKey::from_seed([id as u8; 32]).address();
            RaftMember {
                id,
                address,
                peer_id: chorus_chain::genesis::PeerIdText::of(&address),
                role,
                match_index: None,
                recently_active: None,
            }
        };
        let mut raft = RaftMembers {
            term: 4,
            member_id: Some(1),
            leader: Some(2),
            commit_index: 17,
            members: vec![member(1, RaftRole::Voter), member(2, RaftRole::Voter), member(3, RaftRole::Learner)],
            pending_change: None,
        };
        let mut set = Validators {
            engine: "raft".to_owned(),
            open: false,
            epoch: None,
            slot: None,
            validators: Vec::new(),
            producer: None,
            schedule: Vec::new(),
            election: None,
            raft: Some(raft.clone()),
        };
        let table = validators_table(&set);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "engine raft, term 4, leader 2, commit index 17; this node is member 1", "{table}");
        let roles: Vec<Vec<&str>> = lines[2..].iter().map(|line| line.split_whitespace().take(3).collect()).collect();
        let address = |k: usize| raft.members[k].address.to_string();
        assert_eq!(roles, [["1", "voter", &address(0)], ["2", "leader", &address(1)], ["3", "learner", &address(2)]]);

        assert_eq!(lines.len(), 5, "no pending change, no line: {table}");

        raft.pending_change = Some(chorus_rpc_types::MembershipChange {
            kind: MembershipChangeKind::Promote,
            id: 3,
            address: raft.members[2].address,
            peer_id: raft.members[2].peer_id.clone(),
            index: 18,
        });
        set.raft = Some(raft.clone());
        let table = validators_table(&set);
        let last = table.lines().last().unwrap_or_default().to_owned();
        assert_eq!(last, format!("pending change at log index 18: promote member 3 ({})", raft.members[2].address));

        raft.leader = None;
        raft.member_id = None;
        set.raft = Some(raft);
        let table = validators_table(&set);
        assert!(table.starts_with("engine raft, term 4, no leader (an election is under way"), "{table}");
        assert!(table.lines().next().unwrap_or_default().ends_with("this node is not a member"), "{table}");
    }
}

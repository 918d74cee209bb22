//! `chorus load`: signed transfers at a stated rate from many accounts for a stated time,
//! against one node or several, and what became of them: accepted, included, final, with the
//! latencies from submit to each.
//!
//! Before sending, `--from` funds `--accounts` accounts derived from its address (the same ones
//! on every run: each key's seed is SHA-256 of a tag, that address and the index), topping each
//! up to what its share of the load spends, and waits until the funding is in a block. Each
//! account then sends its share of the rate on a fixed schedule, one transfer at a time (1 unit
//! to the next account, at the chain's minimum fee), so it counts its nonces itself: a refused
//! transfer leaves its nonce unused, and the account asks the node for its next nonce before it
//! sends again. Account `k` sends through node `k mod n`, as a client keeps to its node: nonces
//! spread over nodes arrive out of order where gossip lags, and a node holds only
//! `MEMPOOL_NONCE_AHEAD_MAX` beyond the next.
//!
//! A watcher follows the first node's chain (`chain_getHead`, then back by parent hash to the
//! last block it saw there) and its final block (`chain_getFinalized`) every
//! [`WATCH_INTERVAL`]: a transfer is included when a block holding it is seen on that chain,
//! final when that block's height is. A reorg takes back the inclusions of the blocks it
//! replaced; the transfers count again where the winning chain holds them. Latencies run from
//! the submit call to the watcher's sighting, so they carry up to one interval of delay. Under
//! an engine without finality nothing is final.
//!
//! Once the sending time is over the watcher goes on until every accepted transfer is included
//! (and final, under an engine with finality) or `--settle` seconds pass; then the report. The
//! command fails with the timeout's exit code if some accepted transfer never got there.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chorus_chain::primitives::{Amount, ChainId, Hash, Height};
use chorus_chain::tx::{Transaction, TxKind};
use chorus_chain::{Address, SecretKey, limits};
use chorus_rpc_types::{ErrorCode, GetAccount, GetBlock, GetFinalized, GetHead, GetStatus, GetTx, Request, SubmitTx};
use jsonrpsee::core::client::ClientT;
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use serde::Serialize;

use crate::{Context, Failure, Positional, call_failure, write_stderr};

/// How often the watcher looks at the chain.
const WATCH_INTERVAL: Duration = Duration::from_millis(100);
/// Units each load transfer sends.
const TRANSFER_AMOUNT: u128 = 1;

#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// The funded key (its name in the keystore) that pays for the load's accounts.
    #[arg(long)]
    from: String,
    /// Transfers per second, all accounts together.
    #[arg(long, default_value_t = 100)]
    rate: u32,
    /// Seconds to send for.
    #[arg(long, default_value_t = 30)]
    duration: u32,
    /// Accounts that send, each one transfer at a time through its node (at most 48 per node).
    #[arg(long, default_value_t = 16)]
    accounts: u32,
    /// Another node to send to, besides --rpc (repeatable); transfers take the nodes in turn.
    #[arg(long = "node", value_name = "URL")]
    nodes: Vec<String>,
    /// Seconds to wait, once sending stops, for accepted transfers to be included and final.
    #[arg(long, default_value_t = 60)]
    settle: u32,
}

/// One node the load sends to.
struct Node {
    url: String,
    client: HttpClient,
}

impl Node {
    async fn call<R: Request + Sync>(&self, request: &R) -> Result<R::Response, Failure> {
        let method = R::METHOD.name();
        self.client.request(method, Positional(request)).await.map_err(|error| call_failure(&self.url, method, error))
    }
}

/// What became of one accepted transfer, as the watcher saw it.
#[derive(Debug, Clone, Copy)]
struct Sent {
    submitted: Instant,
    accepted: bool,
    /// The block holding it on the followed chain, and when the watcher saw it there.
    included: Option<(Height, Hash, Instant)>,
    finalized: Option<Instant>,
}

/// The followed node's chain as the watcher last saw it: block hashes by height, from the
/// height it started at (or its final block) up.
struct Followed {
    chain: BTreeMap<Height, Hash>,
}

impl Followed {
    fn new(height: Height, hash: Hash) -> Followed {
        Followed { chain: BTreeMap::from([(height, hash)]) }
    }

    /// Whether `hash` at `height` is on the chain as seen, or below it (nothing to walk back to).
    fn joins(&self, height: Height, hash: &Hash) -> bool {
        match self.chain.first_key_value() {
            Some((lowest, _)) if height < *lowest => true,
            _ => self.chain.get(&height) == Some(hash),
        }
    }

    /// Takes `blocks` (oldest first, the first one's parent on the chain as seen, each the
    /// parent of the next) as the chain's new top; returns whether some block seen before was
    /// replaced.
    fn extend(&mut self, blocks: &[(Height, Hash)]) -> bool {
        let Some((first, _)) = blocks.first() else { return false };
        let replaced = self.chain.split_off(first);
        self.chain.extend(blocks.iter().copied());
        replaced.iter().any(|(height, hash)| self.chain.get(height) != Some(hash))
    }

    /// Forgets heights below `height` (final: no reorg goes under it).
    fn forget_below(&mut self, height: Height) {
        self.chain = self.chain.split_off(&height.min(self.top()));
    }

    fn top(&self) -> Height {
        self.chain.last_key_value().map_or(Height::GENESIS, |(height, _)| *height)
    }

    fn holds(&self, height: Height, hash: &Hash) -> bool {
        self.chain.get(&height) == Some(hash)
    }
}

/// What the senders and the watcher share.
#[derive(Default)]
struct Ledger {
    /// Every transfer submitted and not refused, by hash; entered before its submit call, so
    /// the watcher can meet it in a block before the call returns.
    sent: BTreeMap<Hash, Sent>,
    submitted: u64,
    /// Refusals by the node's message (its code in it), and calls that reached no node.
    refused: BTreeMap<String, u64>,
    has_finality: bool,
}

/// The report, printed as a table or (`--json`) one JSON object.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadReport {
    rate: u32,
    duration_secs: u32,
    accounts: u32,
    nodes: usize,
    submitted: u64,
    accepted: u64,
    refused: u64,
    refusals: BTreeMap<String, u64>,
    included: u64,
    /// `null` under an engine without finality.
    #[serde(rename = "final")]
    finalized: Option<u64>,
    /// Submitted transfers per second over the sending time.
    sent_per_sec: f64,
    /// Included transfers per second, from the first submit to the last inclusion seen.
    included_per_sec: f64,
    final_per_sec: Option<f64>,
    inclusion_latency_ms: Option<Percentiles>,
    final_latency_ms: Option<Percentiles>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Percentiles {
    p50: u64,
    p90: u64,
    p99: u64,
    max: u64,
}

impl Percentiles {
    /// Nearest-rank percentiles; `None` for no samples.
    fn of(mut samples: Vec<u64>) -> Option<Percentiles> {
        samples.sort_unstable();
        let rank = |percent: usize| samples[(samples.len() * percent).div_ceil(100).max(1) - 1];
        let max = *samples.last()?;
        Some(Percentiles { p50: rank(50), p90: rank(90), p99: rank(99), max })
    }
}

/// The key of load account `index` of the funder at `funder`.
fn account_key(funder: &Address, index: u32) -> SecretKey {
    let seed = Hash::tagged(b"chorus/load-account/v1", &[&funder.0[..], &index.to_le_bytes()].concat());
    SecretKey::from_seed(seed.0)
}

pub fn run(context: &Context, args: LoadArgs) -> Result<(), Failure> {
    let LoadArgs { ref from, rate, duration, accounts, ref nodes, settle } = args;
    let accounts_max = limits::LOAD_ACCOUNTS_MAX
        .min(limits::LOAD_ACCOUNTS_PER_NODE_MAX.saturating_mul(u32::try_from(nodes.len() + 1).unwrap_or(u32::MAX)));
    if rate == 0 || duration == 0 || accounts == 0 || accounts > accounts_max {
        return Err(Failure::Input(format!(
            "--rate and --duration must be positive and --accounts 1 to {accounts_max} ({} per node)",
            limits::LOAD_ACCOUNTS_PER_NODE_MAX
        )));
    }
    let total = u64::from(rate) * u64::from(duration);
    if total > limits::LOAD_TRANSFERS_MAX {
        return Err(Failure::Input(format!(
            "{rate}/s for {duration} s is {total} transfers; one run sends at most {}",
            limits::LOAD_TRANSFERS_MAX
        )));
    }
    let nodes: Vec<Arc<Node>> = std::iter::once(&context.rpc_url)
        .chain(nodes)
        .map(|url| {
            let client = HttpClientBuilder::default()
                .request_timeout(Duration::from_secs(30))
                .build(url)
                .map_err(|error| Failure::Input(format!("node {url}: {error}")))?;
            Ok(Arc::new(Node { url: url.clone(), client }))
        })
        .collect::<Result<_, Failure>>()?;
    let entry = context.keystore.entry(from)?;
    let password = context.password(&format!("password for key {from}: "))?;
    let funder = context.keystore.unlock(from, &password)?;
    let runtime = &context.runtime;
    let status = runtime.block_on(nodes[0].call(&GetStatus))?;
    let fee = status.min_tx_fee;
    let keys: Vec<SecretKey> = (0..accounts).map(|index| account_key(&entry.address, index)).collect();
    let per_account = total.div_ceil(u64::from(accounts));
    let spend = u128::from(per_account) * (TRANSFER_AMOUNT + fee.get());
    let progress = Progress::new(context.json);
    runtime.block_on(fund(&nodes[0], &status.chain_id, &funder, &keys, spend, fee, settle, &progress))?;

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let start = Instant::now();
    let sending_ends = start + Duration::from_secs(u64::from(duration));
    let senders: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(index, key)| {
            let sender = Sender {
                index: index as u32,
                key: key.clone(),
                to: keys[(index + 1) % keys.len()].address(),
                chain_id: status.chain_id.clone(),
                fee,
                nodes: nodes.clone(),
                ledger: Arc::clone(&ledger),
            };
            runtime.spawn(sender.run(start, rate, accounts, sending_ends))
        })
        .collect();
    let watched = runtime.block_on(watch(
        &nodes[0],
        &ledger,
        sending_ends,
        sending_ends + Duration::from_secs(u64::from(settle)),
        &progress,
        duration,
    ));
    for sender in senders {
        sender.abort();
    }
    watched?;
    progress.finish();
    let ledger = ledger.lock().expect("no sender panics holding the ledger");
    let report = report(&ledger, &args, nodes.len(), start);
    context.print(&report, || report_text(&report))?;
    let waited_for = if ledger.has_finality { report.finalized.unwrap_or(0) } else { report.included };
    if waited_for < report.accepted {
        let goal = if ledger.has_finality { "final" } else { "in a block" };
        return Err(Failure::Timeout(format!(
            "{} of {} accepted transfers were not {goal} {settle} s after sending stopped",
            report.accepted - waited_for,
            report.accepted
        )));
    }
    Ok(())
}

/// Tops each account up to `spend` from `funder` and waits until every top-up is in a block:
/// in waves of at most what a node holds pending from one sender
/// (`limits::MEMPOOL_TXS_PER_SENDER_MAX`), each waited for before the next.
#[allow(clippy::too_many_arguments)]
async fn fund(
    node: &Node,
    chain_id: &ChainId,
    funder: &SecretKey,
    keys: &[SecretKey],
    spend: u128,
    fee: Amount,
    settle: u32,
    progress: &Progress,
) -> Result<(), Failure> {
    let mut short = Vec::new();
    for key in keys {
        let balance = node.call(&GetAccount { address: key.address(), proof_height: None }).await?.balance.get();
        if balance < spend {
            short.push((key.address(), spend - balance));
        }
    }
    let n_short = short.len();
    for (wave, top_ups) in short.chunks(limits::MEMPOOL_TXS_PER_SENDER_MAX as usize).enumerate() {
        let mut nonce = node.call(&GetAccount { address: funder.address(), proof_height: None }).await?.next_nonce;
        let mut pending = Vec::new();
        for (to, amount) in top_ups {
            let kind = TxKind::Transfer { to: *to, amount: Amount::new(*amount) };
            let tx =
                Transaction { chain_id: chain_id.clone(), sender: funder.address(), nonce, fee, kind }.sign(funder);
            pending.push(node.call(&SubmitTx { tx }).await?);
            nonce += 1;
        }
        let deadline = Instant::now() + Duration::from_secs(u64::from(settle));
        while let Some(hash) = pending.last().copied() {
            let done = wave * limits::MEMPOOL_TXS_PER_SENDER_MAX as usize + top_ups.len() - pending.len();
            progress.message(format!("funding: {done} of {n_short} accounts topped up"));
            if node.call(&GetTx { hash }).await?.status.block().is_some() {
                pending.pop();
                continue;
            }
            if Instant::now() > deadline {
                return Err(Failure::Timeout(format!(
                    "{} account top-ups not in a block after {settle} s",
                    pending.len()
                )));
            }
            tokio::time::sleep(WATCH_INTERVAL).await;
        }
    }
    Ok(())
}

/// One account's share of the load.
struct Sender {
    index: u32,
    key: SecretKey,
    to: Address,
    chain_id: ChainId,
    fee: Amount,
    nodes: Vec<Arc<Node>>,
    ledger: Arc<Mutex<Ledger>>,
}

impl Sender {
    /// Sends transfer `j` at `start + (j * accounts + index) / rate` (at once when behind),
    /// until `ends`.
    async fn run(self, start: Instant, rate: u32, accounts: u32, ends: Instant) {
        let mut nonce = None;
        for turn in 0u64.. {
            let slot = turn * u64::from(accounts) + u64::from(self.index);
            let at = start + Duration::from_nanos(slot * 1_000_000_000 / u64::from(rate));
            if at >= ends {
                return;
            }
            tokio::time::sleep_until(at.into()).await;
            let node = &self.nodes[self.index as usize % self.nodes.len()];
            let next = match nonce {
                Some(next) => next,
                None => match node.call(&GetAccount { address: self.key.address(), proof_height: None }).await {
                    Ok(account) => account.next_nonce,
                    Err(failure) => {
                        self.refused(&failure);
                        continue;
                    }
                },
            };
            let kind = TxKind::Transfer { to: self.to, amount: Amount::new(TRANSFER_AMOUNT) };
            let tx = Transaction {
                chain_id: self.chain_id.clone(),
                sender: self.key.address(),
                nonce: next,
                fee: self.fee,
                kind,
            }
            .sign(&self.key);
            let hash = tx.hash();
            {
                let mut ledger = self.ledger.lock().expect("no task panics holding the ledger");
                ledger.submitted += 1;
                let sent = Sent { submitted: Instant::now(), accepted: false, included: None, finalized: None };
                ledger.sent.insert(hash, sent);
            }
            match node.call(&SubmitTx { tx }).await {
                Ok(_) => {
                    nonce = Some(next + 1);
                    if let Some(sent) =
                        self.ledger.lock().expect("no task panics holding the ledger").sent.get_mut(&hash)
                    {
                        sent.accepted = true;
                    }
                }
                Err(failure) => {
                    nonce = None;
                    self.ledger.lock().expect("no task panics holding the ledger").sent.remove(&hash);
                    self.refused(&failure);
                }
            }
        }
    }

    /// Counts a refusal by the node's code (its meaning, as README's table words it), or a call
    /// that got no answer by what went wrong.
    fn refused(&self, failure: &Failure) {
        let reason = match failure {
            Failure::Refused { code, message, .. } => match ErrorCode::from_code(i64::from(*code)) {
                Some(known) => format!("{code}: {}", known.meaning()),
                None => format!("{code}: {message}"),
            },
            other => other.to_string(),
        };
        *self.ledger.lock().expect("no task panics holding the ledger").refused.entry(reason).or_default() += 1;
    }
}

/// Follows the chain until sending is over and every accepted transfer is included (and final,
/// if the chain has finality), or until `gives_up`.
async fn watch(
    node: &Node,
    ledger: &Mutex<Ledger>,
    sending_ends: Instant,
    gives_up: Instant,
    progress: &Progress,
    duration: u32,
) -> Result<(), Failure> {
    let head = node.call(&GetHead).await?;
    let mut followed = Followed::new(head.height, head.hash);
    loop {
        tokio::time::sleep(WATCH_INTERVAL).await;
        let head = node.call(&GetHead).await?;
        // Back from the head by parent hash to the chain as seen: what is new, and where a
        // reorg forked off it.
        let mut blocks = Vec::new();
        let (mut height, mut hash) = (head.height, head.hash);
        while !followed.joins(height, &hash) {
            let id = chorus_rpc_types::BlockId::Hash(hash);
            let Some(block) = node.call(&GetBlock { id }).await? else { break };
            (height, hash) = (Height::new(block.height.get().saturating_sub(1)), block.parent);
            blocks.push(block);
        }
        blocks.reverse();
        let replaced = followed.extend(&blocks.iter().map(|block| (block.height, block.hash)).collect::<Vec<_>>());
        let finalized = node.call(&GetFinalized).await?;
        let now = Instant::now();
        let mut ledger = ledger.lock().expect("no task panics holding the ledger");
        if replaced {
            for sent in ledger.sent.values_mut() {
                if sent.included.is_some_and(|(height, hash, _)| !followed.holds(height, &hash)) {
                    sent.included = None;
                }
            }
        }
        for block in &blocks {
            for tx in &block.transactions {
                if let Some(sent) = ledger.sent.get_mut(&tx.hash)
                    && sent.included.is_none()
                {
                    sent.included = Some((block.height, block.hash, now));
                }
            }
        }
        if let Some(finalized) = finalized {
            ledger.has_finality = true;
            followed.forget_below(finalized.height);
            for sent in ledger.sent.values_mut() {
                if sent.finalized.is_none() && sent.included.is_some_and(|(height, ..)| height <= finalized.height) {
                    sent.finalized = Some(now);
                }
            }
        }
        let accepted = ledger.sent.values().filter(|sent| sent.accepted);
        let (mut n_accepted, mut n_included, mut n_final) = (0u64, 0u64, 0u64);
        for sent in accepted {
            n_accepted += 1;
            n_included += u64::from(sent.included.is_some());
            n_final += u64::from(sent.finalized.is_some());
        }
        let done = if ledger.has_finality { n_final } else { n_included } == n_accepted;
        let counts = format!(
            "sent {}, accepted {n_accepted}, included {n_included}{}",
            ledger.submitted,
            if ledger.has_finality { format!(", final {n_final}") } else { String::new() }
        );
        drop(ledger);
        if now < sending_ends {
            let elapsed = duration.saturating_sub(sending_ends.saturating_duration_since(now).as_secs() as u32);
            progress.sending(elapsed, duration, counts);
        } else if done || now >= gives_up {
            return Ok(());
        } else {
            progress.message(format!("settling: {counts}"));
        }
    }
}

#[allow(clippy::float_arithmetic, reason = "rates in a report to a person, never a value that decides a block")]
fn report(ledger: &Ledger, args: &LoadArgs, nodes: usize, start: Instant) -> LoadReport {
    let accepted: Vec<&Sent> = ledger.sent.values().filter(|sent| sent.accepted).collect();
    let millis = |from: Instant, to: Instant| to.saturating_duration_since(from).as_millis() as u64;
    let inclusion: Vec<u64> =
        accepted.iter().filter_map(|sent| Some(millis(sent.submitted, sent.included?.2))).collect();
    let finality: Vec<u64> = accepted.iter().filter_map(|sent| Some(millis(sent.submitted, sent.finalized?))).collect();
    // Rates to a tenth of a transfer per second.
    let tenths = |rate: f64| (rate * 10.0).round() / 10.0;
    let per_sec = |count: usize, last: Option<Instant>| {
        tenths(last.map_or(0.0, |last| count as f64 / last.saturating_duration_since(start).as_secs_f64().max(1e-3)))
    };
    let last_included = accepted.iter().filter_map(|sent| Some(sent.included?.2)).max();
    let last_final = accepted.iter().filter_map(|sent| sent.finalized).max();
    let refused = ledger.refused.values().sum();
    LoadReport {
        rate: args.rate,
        duration_secs: args.duration,
        accounts: args.accounts,
        nodes,
        submitted: ledger.submitted,
        accepted: accepted.len() as u64,
        refused,
        refusals: ledger.refused.clone(),
        included: inclusion.len() as u64,
        finalized: ledger.has_finality.then_some(finality.len() as u64),
        sent_per_sec: tenths(ledger.submitted as f64 / f64::from(args.duration)),
        included_per_sec: per_sec(inclusion.len(), last_included),
        final_per_sec: ledger.has_finality.then(|| per_sec(finality.len(), last_final)),
        inclusion_latency_ms: Percentiles::of(inclusion),
        final_latency_ms: if ledger.has_finality { Percentiles::of(finality) } else { None },
    }
}

fn report_text(report: &LoadReport) -> String {
    let latency = |percentiles: Option<Percentiles>| match percentiles {
        Some(Percentiles { p50, p90, p99, max }) => {
            format!("latency p50 {p50} ms, p90 {p90} ms, p99 {p99} ms, max {max} ms")
        }
        None => "no latency (none seen)".to_owned(),
    };
    let mut lines = vec![
        format!(
            "load: {}/s for {} s from {} accounts through {} node(s)",
            report.rate, report.duration_secs, report.accounts, report.nodes
        ),
        format!("submitted {:>8}  ({:.1}/s)", report.submitted, report.sent_per_sec),
        format!("accepted  {:>8}", report.accepted),
        format!("refused   {:>8}", report.refused),
    ];
    for (reason, count) in &report.refusals {
        lines.push(format!("  {count:>8}  {reason}"));
    }
    lines.push(format!(
        "included  {:>8}  ({:.1}/s)  {}",
        report.included,
        report.included_per_sec,
        latency(report.inclusion_latency_ms)
    ));
    match report.finalized {
        Some(finalized) => lines.push(format!(
            "final     {:>8}  ({:.1}/s)  {}",
            finalized,
            report.final_per_sec.unwrap_or(0.0),
            latency(report.final_latency_ms)
        )),
        None => lines.push("final          n/a  (the chain's engine has no finality)".to_owned()),
    }
    lines.join("\n")
}

/// A progress bar on a terminal (stderr); nothing for logs, pipes and `--json`.
struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    fn new(json: bool) -> Progress {
        let terminal = !json && std::io::IsTerminal::is_terminal(&std::io::stderr());
        if !json && !terminal {
            write_stderr("load: funding the accounts, then sending; the report follows");
        }
        Progress(terminal.then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        }))
    }

    fn message(&self, text: String) {
        if let Some(bar) = &self.0 {
            bar.set_style(indicatif::ProgressStyle::default_spinner());
            bar.set_message(text);
        }
    }

    fn sending(&self, elapsed: u32, duration: u32, counts: String) {
        if let Some(bar) = &self.0 {
            if bar.length() != Some(u64::from(duration)) {
                bar.set_length(u64::from(duration));
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} s  {msg}")
                        .expect("invariant: a valid template"),
                );
            }
            bar.set_position(u64::from(elapsed));
            bar.set_message(counts);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        assert_eq!(Percentiles::of(Vec::new()), None);
        assert_eq!(Percentiles::of(vec![7]), Some(Percentiles { p50: 7, p90: 7, p99: 7, max: 7 }));
        let hundred: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(Percentiles::of(hundred), Some(Percentiles { p50: 50, p90: 90, p99: 99, max: 100 }));
        assert_eq!(Percentiles::of(vec![1, 2, 3]), Some(Percentiles { p50: 2, p90: 3, p99: 3, max: 3 }));
    }

    #[test]
    fn the_followed_chain_takes_back_what_a_reorg_replaced_and_forgets_below_final() {
        let hash = |byte: u8| Hash([byte; 32]);
        let at = Height::new;
        let mut followed = Followed::new(at(10), hash(10));
        assert!(followed.joins(at(10), &hash(10)) && followed.joins(at(9), &hash(99)), "at or below the start");
        assert!(!followed.joins(at(11), &hash(11)));
        assert!(!followed.extend(&[(at(11), hash(11)), (at(12), hash(12))]), "growth replaces nothing");
        assert!(!followed.extend(&[]));
        // A branch from 11 replaces 12 and goes higher.
        assert!(followed.extend(&[(at(12), hash(22)), (at(13), hash(23))]));
        assert!(followed.holds(at(12), &hash(22)) && !followed.holds(at(12), &hash(12)));
        assert!(followed.holds(at(11), &hash(11)), "below the fork stays");
        // A branch from 11 that is shorter than the chain it replaces.
        assert!(followed.extend(&[(at(12), hash(32))]));
        assert!(!followed.holds(at(13), &hash(23)), "a replaced height above the new top is gone");
        assert_eq!(followed.top(), at(12));
        followed.forget_below(at(12));
        assert!(followed.joins(at(11), &hash(0)), "below final: nothing to walk back to");
        followed.forget_below(at(50));
        assert_eq!(followed.top(), at(12), "a final height above the top seen keeps the top");
    }

    #[test]
    fn load_accounts_are_the_same_on_every_run_and_differ_by_funder_and_index() {
        let funder = SecretKey::from_seed([1; 32]).address();
        let other = SecretKey::from_seed([2; 32]).address();
        assert_eq!(account_key(&funder, 3).address(), account_key(&funder, 3).address());
        assert_ne!(account_key(&funder, 3).address(), account_key(&funder, 4).address());
        assert_ne!(account_key(&funder, 3).address(), account_key(&other, 3).address());
    }
}

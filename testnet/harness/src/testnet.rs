//! N `chorusd` nodes on one genesis, as `testnet/run.sh` makes them, for end-to-end tests.
//!
//! Nodes are numbered from 1, as in `run.sh`. Each gets a key from `chorusd key generate` and
//! its own directory; the genesis comes from `chorusd genesis new` and funds
//! [`TestnetBuilder::accounts`] accounts whose keys the test knows ([`Testnet::account`]).
//! A node's first start takes ports the system picks; later starts reuse them, so peers that
//! knew it find it again. Every node knows every other started node as a bootnode.

use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use chorus_chain::genesis::PeerIdText;
use chorus_chain::primitives::{ChainId, Hash, Height};
use chorus_chain::{Address, SecretKey};
use serde_json::Value;

use crate::Binaries;
use crate::load::{Load, Route};
use crate::poll;
use crate::process::{Chorusd, Launch};
use crate::rpc::{BlockRef, Head, Rpc, TxStatus};

/// The default bound on every wait; checks return as soon as they hold.
pub const WAIT: Duration = Duration::from_secs(90);
/// Log lines printed per node when a test fails.
const LOG_TAIL_LINES: usize = 40;
/// The balance of each funded account.
pub const FUNDED_BALANCE: u128 = 1_000_000_000_000;
/// Each node's bonded stake under an engine with validators (all equal).
pub const VALIDATOR_STAKE: u128 = 1_000_000;
/// The password of the wallet's keystore.
pub const WALLET_PASSWORD: &str = "testnet";
/// The genesis chain id.
pub const CHAIN_ID: &str = "chorus-harness";

/// What to start.
#[derive(Debug, Clone)]
pub struct TestnetBuilder {
    engine: String,
    nodes: usize,
    miners: usize,
    block_time_ms: u64,
    accounts: u32,
    producers: Option<u32>,
    bins: Option<Binaries>,
}

impl TestnetBuilder {
    /// `nodes` nodes of `engine` (as `chorusd genesis new --engine` names it).
    pub fn new(engine: &str, nodes: usize) -> TestnetBuilder {
        TestnetBuilder {
            engine: engine.to_owned(),
            nodes,
            miners: 1,
            block_time_ms: 500,
            accounts: 4,
            producers: None,
            bins: None,
        }
    }

    /// How many nodes (the first ones) mine. Default 1.
    pub fn miners(mut self, miners: usize) -> TestnetBuilder {
        self.miners = miners;
        self
    }

    /// The block time the genesis aims at. Default 500 ms.
    pub fn block_time_ms(mut self, block_time_ms: u64) -> TestnetBuilder {
        self.block_time_ms = block_time_ms;
        self
    }

    /// How many funded accounts the genesis holds. Default 4.
    pub fn accounts(mut self, accounts: u32) -> TestnetBuilder {
        self.accounts = accounts;
        self
    }

    /// DPoS: how many delegates produce (the genesis `producers`). Default: the genesis default,
    /// so every node produces.
    pub fn producers(mut self, producers: u32) -> TestnetBuilder {
        self.producers = Some(producers);
        self
    }

    /// The binaries to run. Default [`Binaries::locate`].
    pub fn binaries(mut self, bins: Binaries) -> TestnetBuilder {
        self.bins = Some(bins);
        self
    }

    /// Makes keys and the genesis, starts every node, and waits until each answers and sees all
    /// the others. An engine `chorusd genesis new` refuses is an error carrying its message.
    pub fn start(self) -> Result<Testnet, String> {
        let bins = self.bins.clone().unwrap_or_else(Binaries::locate);
        let dir = tempfile::Builder::new().prefix("chorus-testnet-").tempdir().map_err(|error| error.to_string())?;
        let mut testnet = Testnet {
            bins,
            genesis: dir.path().join("genesis.json"),
            dir: Some(dir),
            nodes: Vec::new(),
            accounts: (1..=self.accounts).map(account_key).collect(),
            wallet: OnceCell::new(),
            banned: BTreeSet::new(),
            wait: WAIT,
        };
        // Node keys first: under an engine with validators, every node is a genesis validator
        // (a delegate approving itself, under DPoS) with equal stake, and funds to pay for the
        // evidence it reports.
        for k in 1..=self.nodes {
            testnet.make_slot(k <= self.miners)?;
        }
        let mut genesis = Command::new(&testnet.bins.chorusd);
        genesis.args(["genesis", "new", "--chain-id", CHAIN_ID, "--engine", &self.engine]);
        genesis.args(["--block-time-ms", &self.block_time_ms.to_string(), "--out"]).arg(&testnet.genesis);
        for key in &testnet.accounts {
            genesis.arg("--account").arg(format!("{}={FUNDED_BALANCE}", key.address()));
        }
        let member_flag = match self.engine.as_str() {
            "pos" => {
                genesis.args(["--slot-ms", &self.block_time_ms.to_string(), "--epoch-slots", "8"]);
                Some("--validator")
            }
            "dpos" => {
                genesis.args(["--slot-ms", &self.block_time_ms.to_string()]);
                if let Some(producers) = self.producers {
                    genesis.args(["--producers", &producers.to_string()]);
                }
                Some("--delegate")
            }
            _ => None,
        };
        if let Some(flag) = member_flag {
            for slot in &testnet.nodes {
                genesis.arg("--account").arg(format!("{}={FUNDED_BALANCE}", slot.address));
                genesis.arg(flag).arg(format!("{}={VALIDATOR_STAKE}", slot.address));
            }
        }
        if self.engine == "raft" {
            // Member ids follow the nodes' numbers.
            for slot in &testnet.nodes {
                genesis.arg("--member").arg(slot.address.to_string());
            }
        }
        run_ok(&mut genesis)?;
        for k in 1..=self.nodes {
            testnet.launch(k)?;
        }
        testnet.all_connected();
        Ok(testnet)
    }
}

/// One node's place: its directory, identity, ports and process.
#[derive(Debug)]
struct Slot {
    dir: PathBuf,
    peer_id: PeerIdText,
    /// The node key's chain address: where its mining rewards go.
    address: Address,
    mine: bool,
    /// Its p2p address with peer id, and RPC and metrics addresses, fixed at the first start.
    addresses: Option<(String, String, String)>,
    process: Option<Chorusd>,
    paused: bool,
}

/// Running nodes. Dropping it stops them (SIGTERM); after a panic it prints each node's log
/// tail and keeps the directory.
#[derive(Debug)]
pub struct Testnet {
    bins: Binaries,
    dir: Option<tempfile::TempDir>,
    genesis: PathBuf,
    nodes: Vec<Slot>,
    accounts: Vec<SecretKey>,
    wallet: OnceCell<Wallet>,
    /// Pairs (node, peer node) the partition banned, re-applied when a node restarts.
    banned: BTreeSet<(usize, usize)>,
    wait: Duration,
}

impl Testnet {
    pub fn builder(engine: &str, nodes: usize) -> TestnetBuilder {
        TestnetBuilder::new(engine, nodes)
    }

    /// PoW nodes, the first one mining, with the defaults; panics if they do not come up.
    pub fn pow(nodes: usize) -> Testnet {
        TestnetBuilder::new("pow", nodes).start().expect("the testnet starts")
    }

    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("invariant: kept until drop").path()
    }

    pub fn genesis(&self) -> &Path {
        &self.genesis
    }

    /// Every wait's bound from now on.
    pub fn set_wait(&mut self, wait: Duration) {
        self.wait = wait;
    }

    /// How many nodes were ever added.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Funded account `i` (1-based), named `funded<i>` in the wallet.
    pub fn account(&self, i: usize) -> &SecretKey {
        &self.accounts[i - 1]
    }

    /// The unfunded account a [`Testnet::start_load`] pays into.
    pub fn load_sink(&self) -> Address {
        account_key(0).address()
    }

    /// Starts a load of `per_second` transfers in all, each `(account, node)` route sending
    /// from funded account `account` through node `node` (taken in turn) to
    /// [`Testnet::load_sink`]. The nodes' ports stay across restarts, so a route survives one.
    pub fn start_load(&self, routes: &[(usize, usize)], per_second: u32) -> Load {
        let routes = routes
            .iter()
            .map(|&(account, node)| Route { key: self.account(account).clone(), node, rpc: self.rpc(node).clone() })
            .collect();
        Load::start(ChainId::new(CHAIN_ID).expect("a valid chain id"), routes, self.load_sink(), per_second)
    }

    /// Node `k`'s process; panics if it is not running.
    pub fn node(&self, k: usize) -> &Chorusd {
        self.slot(k).process.as_ref().unwrap_or_else(|| panic!("node {k} is not running"))
    }

    pub fn rpc(&self, k: usize) -> &Rpc {
        self.node(k).rpc()
    }

    pub fn peer_id(&self, k: usize) -> &PeerIdText {
        &self.slot(k).peer_id
    }

    /// Node `k`'s chain address (its key's), which a mining node's rewards go to.
    pub fn address(&self, k: usize) -> Address {
        self.slot(k).address
    }

    /// The nodes that are running and not paused: the ones checks look at.
    pub fn live(&self) -> Vec<usize> {
        (1..=self.nodes.len()).filter(|&k| self.slot(k).process.is_some() && !self.slot(k).paused).collect()
    }

    fn slot(&self, k: usize) -> &Slot {
        assert!((1..=self.nodes.len()).contains(&k), "no node {k}: nodes are 1..={}", self.nodes.len());
        &self.nodes[k - 1]
    }

    fn slot_mut(&mut self, k: usize) -> &mut Slot {
        assert!((1..=self.nodes.len()).contains(&k), "no node {k}: nodes are 1..={}", self.nodes.len());
        &mut self.nodes[k - 1]
    }

    /// Adds a node (mining or not), makes its key and starts it with every started node as a
    /// bootnode; waits until it answers. Returns its number.
    pub fn add_node(&mut self, mine: bool) -> usize {
        self.add(mine).unwrap_or_else(|error| panic!("a new node: {error}"))
    }

    /// Makes a node's directory and key without starting it (start it with
    /// [`Testnet::restart`]): for a node that must be named (a Raft learner) before it runs.
    pub fn prepare_node(&mut self) -> usize {
        self.make_slot(false).unwrap_or_else(|error| panic!("a new node: {error}"))
    }

    /// Node `k`'s RPC admin token file (its data directory's `rpc-admin.token`), for
    /// `chorus ... --admin-token-file`.
    pub fn admin_token_file(&self, k: usize) -> PathBuf {
        self.slot(k).dir.join("chain").join("rpc-admin.token")
    }

    fn add(&mut self, mine: bool) -> Result<usize, String> {
        let k = self.make_slot(mine)?;
        self.launch(k)?;
        Ok(k)
    }

    /// A new node's directory and key, not started yet.
    fn make_slot(&mut self, mine: bool) -> Result<usize, String> {
        let k = self.nodes.len() + 1;
        let dir = self.dir().join(format!("node{k}"));
        std::fs::create_dir_all(&dir).map_err(|error| format!("{}: {error}", dir.display()))?;
        let described =
            run_ok(Command::new(&self.bins.chorusd).args(["key", "generate", "--out"]).arg(dir.join("node.key")))?;
        let field = |name: &str| {
            described
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .map(|value| value.trim().to_owned())
                .ok_or_else(|| format!("chorusd key generate printed no {name} {described}"))
        };
        let peer_id = PeerIdText::new(&field("peer id:")?).map_err(|error| error.to_string())?;
        let address = Address::parse(&field("address:")?).map_err(|error| error.to_string())?;
        self.nodes.push(Slot { dir, peer_id, address, mine, addresses: None, process: None, paused: false });
        Ok(k)
    }

    fn launch(&mut self, k: usize) -> Result<(), String> {
        let slot = self.slot(k);
        let (p2p, rpc, metrics) = slot
            .addresses
            .clone()
            .unwrap_or_else(|| ("/ip4/127.0.0.1/tcp/0".to_owned(), "127.0.0.1:0".to_owned(), "127.0.0.1:0".to_owned()));
        let listen = p2p.split("/p2p/").next().unwrap_or_default().to_owned();
        let mut launch = Launch::new(&self.bins.chorusd, slot.dir.join("node.log"))
            .args(["run", "--genesis"])
            .arg(&self.genesis)
            .arg("--data-dir")
            .arg(slot.dir.join("chain"))
            .arg("--key")
            .arg(slot.dir.join("node.key"))
            .args(["--listen", &listen, "--rpc", &rpc, "--metrics", &metrics, "--explorer", "127.0.0.1:0"]);
        if slot.mine {
            launch = launch.args(["--mine", "--miner-threads", "1"]);
        }
        for (j, other) in self.nodes.iter().enumerate() {
            if let Some((address, _, _)) = other.addresses.as_ref().filter(|_| j + 1 != k) {
                launch = launch.args(["--bootnode", address]);
            }
        }
        let process = Chorusd::start(&launch).map_err(|error| format!("node {k}: {error}"))?;
        let slot = self.slot_mut(k);
        slot.addresses.get_or_insert_with(|| {
            (process.p2p().to_owned(), process.rpc().addr().to_string(), process.metrics_addr().to_string())
        });
        slot.process = Some(process);
        slot.paused = false;
        // A restarted node forgot its bans: a partition still in force applies to it again.
        for (a, b) in self.banned.clone() {
            if a == k {
                self.ban(a, b);
            }
        }
        Ok(())
    }

    /// SIGKILL node `k`; its data stays for [`Testnet::restart`].
    pub fn kill(&mut self, k: usize) {
        if let Some(mut process) = self.slot_mut(k).process.take() {
            process.kill();
        }
    }

    /// SIGTERM node `k` and wait for its exit; its data stays.
    pub fn stop(&mut self, k: usize) {
        if let Some(mut process) = self.slot_mut(k).process.take() {
            process.terminate();
        }
    }

    /// Starts node `k` again on its data, keys and ports (stopping it first if it runs).
    pub fn restart(&mut self, k: usize) {
        self.stop(k);
        self.launch(k).unwrap_or_else(|error| panic!("restart: {error}"));
    }

    /// SIGSTOP node `k`: it holds its connections and answers nothing.
    pub fn pause(&mut self, k: usize) {
        self.node(k).pause();
        self.slot_mut(k).paused = true;
    }

    /// SIGCONT node `k`.
    pub fn resume(&mut self, k: usize) {
        self.node(k).resume();
        self.slot_mut(k).paused = false;
    }

    /// Splits the nodes into groups that refuse each other (each bans the other groups' peer
    /// ids through the admin RPC), and waits until no connection crosses a group.
    pub fn partition(&mut self, groups: &[&[usize]]) {
        let mut seen = BTreeSet::new();
        for &k in groups.iter().flat_map(|group| group.iter()) {
            self.slot(k);
            assert!(seen.insert(k), "node {k} is in two groups");
        }
        for (i, group) in groups.iter().enumerate() {
            for other in &groups[i + 1..] {
                for &a in *group {
                    for &b in *other {
                        self.banned.extend([(a, b), (b, a)]);
                        self.ban(a, b);
                        self.ban(b, a);
                    }
                }
            }
        }
        self.wait_for("the partition to take", |testnet| {
            for k in testnet.live() {
                let peers = testnet.rpc(k).peers().map_err(|error| format!("node {k}: {error}"))?;
                for peer in &peers.connected {
                    if let Some(j) = testnet.node_of(&peer.peer_id)
                        && testnet.banned.contains(&(k, j))
                    {
                        return Err(format!("node {k} still connected to node {j}"));
                    }
                }
            }
            Ok(())
        });
    }

    /// Lifts every partition ban and waits until all live nodes see each other again. A paused
    /// node cannot answer: its own bans stay until `heal` is called again after `resume`.
    pub fn heal(&mut self) {
        let live = self.live();
        for (a, b) in std::mem::take(&mut self.banned) {
            if live.contains(&a) {
                self.rpc(a).unban_peer(self.peer_id(b)).unwrap_or_else(|error| panic!("node {a} unban: {error}"));
            } else if self.slot(a).paused {
                self.banned.insert((a, b));
            }
        }
        self.all_connected();
    }

    fn ban(&self, a: usize, b: usize) {
        if self.live().contains(&a) {
            self.rpc(a).ban_peer(self.peer_id(b), None).unwrap_or_else(|error| panic!("node {a} ban: {error}"));
        }
    }

    fn node_of(&self, peer_id: &PeerIdText) -> Option<usize> {
        self.nodes.iter().position(|slot| slot.peer_id == *peer_id).map(|i| i + 1)
    }

    /// Polls `check` with [`poll::eventually`] until it returns Ok, at most the wait bound;
    /// panics with `what` and the last reason it gave.
    /// A node that should be running has exited (crashed), which fails the check at once.
    pub fn wait_for<T>(&self, what: &str, mut check: impl FnMut(&Testnet) -> Result<T, String>) -> T {
        poll::eventually(what, self.wait, || {
            let reason = match check(self) {
                Ok(value) => return Ok(value),
                Err(reason) => reason,
            };
            for (i, slot) in self.nodes.iter().enumerate() {
                if let Some(exit) = slot.process.as_ref().and_then(Chorusd::exited) {
                    panic!("{what}: node {} exited unexpectedly ({exit}); last: {reason}", i + 1);
                }
            }
            Err(reason)
        })
    }

    /// Check: every live node is connected to every other live node.
    pub fn all_connected(&self) {
        self.wait_for("all nodes connected", |testnet| {
            let live = testnet.live();
            for &k in &live {
                let peers = testnet.rpc(k).peers().map_err(|error| format!("node {k}: {error}"))?;
                let connected: BTreeSet<usize> =
                    peers.connected.iter().filter_map(|peer| testnet.node_of(&peer.peer_id)).collect();
                let missing: Vec<usize> = live.iter().copied().filter(|j| *j != k && !connected.contains(j)).collect();
                if !missing.is_empty() {
                    return Err(format!("node {k} does not see nodes {missing:?}"));
                }
            }
            Ok(())
        });
    }

    /// Check: every live node's head is at least `height`.
    pub fn heads_at_least(&self, height: u64) -> Vec<Head> {
        self.wait_for(&format!("heads at least {height}"), |testnet| {
            let heads = testnet.heads()?;
            match heads.iter().zip(testnet.live()).find(|(head, _)| head.height.get() < height) {
                Some((head, k)) => Err(format!("node {k} at {}", head.height)),
                None => Ok(heads),
            }
        })
    }

    /// Check: the live nodes' heads are at most `k` blocks apart and they hold the same block
    /// `k` below the lowest head (one chain, up to the last `k` blocks).
    pub fn all_heads_within(&self, k: u64) -> Vec<Head> {
        self.wait_for(&format!("all heads within {k} blocks"), |testnet| {
            let heads = testnet.heads()?;
            let (low, high) = heads
                .iter()
                .fold((u64::MAX, 0), |(low, high), head| (low.min(head.height.get()), high.max(head.height.get())));
            if high - low > k {
                return Err(format!("heights {:?}", heads.iter().map(|head| head.height).collect::<Vec<_>>()));
            }
            testnet.same_block_at(low.saturating_sub(k))?;
            Ok(heads)
        })
    }

    /// Check: every live node has `tx` in the same block; returns that block.
    pub fn included_everywhere(&self, tx: &Hash) -> BlockRef {
        self.wait_for(&format!("transaction {tx} included everywhere"), |testnet| {
            let mut found: Option<BlockRef> = None;
            for k in testnet.live() {
                let status = testnet.rpc(k).tx(tx).map_err(|error| format!("node {k}: {error}"))?;
                let block = status.block().ok_or_else(|| format!("node {k}: {status:?}"))?;
                match &found {
                    Some(first) if *first != block => return Err(format!("in {first:?} and, on node {k}, {block:?}")),
                    _ => found = Some(block),
                }
            }
            found.ok_or_else(|| "no live node".to_owned())
        })
    }

    /// Check: every live node has finalized at least `height`, and they agree on the finalized
    /// block at the lowest of their finalized heights.
    pub fn finalized_at_least(&self, height: u64) -> Vec<BlockRef> {
        self.wait_for(&format!("finalized at least {height} everywhere"), |testnet| {
            let mut finals = Vec::new();
            for k in testnet.live() {
                let finalized = testnet.rpc(k).finalized().map_err(|error| format!("node {k}: {error}"))?;
                match finalized {
                    Some(block) if block.height.get() >= height => finals.push(block),
                    other => return Err(format!("node {k} finalized {other:?}")),
                }
            }
            let low = finals.iter().map(|block| block.height).min().ok_or("no live node")?;
            testnet.same_block_at(low.get())?;
            Ok(finals)
        })
    }

    /// Check: `tx` is final on every live node.
    pub fn final_everywhere(&self, tx: &Hash) {
        self.wait_for(&format!("transaction {tx} final everywhere"), |testnet| {
            for k in testnet.live() {
                match testnet.rpc(k).tx(tx).map_err(|error| format!("node {k}: {error}"))? {
                    TxStatus::Final { .. } => {}
                    other => return Err(format!("node {k}: {other:?}")),
                }
            }
            Ok(())
        });
    }

    /// `chorus transfer` of `amount` from funded account `from` to `to` through node `k`; the
    /// transaction's hash.
    pub fn transfer(&self, k: usize, from: usize, to: &Address, amount: u128) -> Hash {
        let (from, to, amount) = (format!("funded{from}"), to.to_string(), amount.to_string());
        let printed = self
            .chorus(k, &["transfer", "--from", &from, "--to", &to, "--amount", &amount])
            .unwrap_or_else(|error| panic!("transfer through node {k}: {error:?}"));
        Hash::from_hex(printed["hash"].as_str().expect("a hash")).expect("hex")
    }

    /// Check: the live nodes hold the same block at a height all have reached, and prove the
    /// same value for each of `accounts` at it (compared value by value, not only by root).
    /// Returns that height.
    pub fn accounts_match(&self, accounts: &[Address]) -> u64 {
        self.wait_for("accounts match across nodes", |testnet| {
            let heads = testnet.heads()?;
            let height = heads.iter().map(|head| head.height).min().ok_or("no live node")?;
            testnet.same_block_at(height.get())?;
            for account in accounts {
                let mut values = Vec::new();
                for k in testnet.live() {
                    let proven =
                        testnet.rpc(k).proven_account(account, height).map_err(|error| format!("node {k}: {error}"))?;
                    values.push(proven.value);
                }
                if values.iter().any(|value| *value != values[0]) {
                    return Err(format!("{account} at {height}: {values:?}"));
                }
            }
            Ok(height.get())
        })
    }

    fn heads(&self) -> Result<Vec<Head>, String> {
        self.live().into_iter().map(|k| self.rpc(k).head().map_err(|error| format!("node {k}: {error}"))).collect()
    }

    fn same_block_at(&self, height: u64) -> Result<Hash, String> {
        let mut first: Option<Hash> = None;
        for k in self.live() {
            let block = self.rpc(k).block_at(Height::new(height)).map_err(|error| format!("node {k}: {error}"))?;
            let hash = block.ok_or_else(|| format!("node {k} has no block {height}"))?.hash;
            match first {
                Some(first) if first != hash => return Err(format!("at {height}: {first} and, on node {k}, {hash}")),
                _ => first = Some(hash),
            }
        }
        first.ok_or_else(|| "no live node".to_owned())
    }

    /// The `chorus` wallet over this testnet's keystore, holding the funded accounts as
    /// `funded1`, `funded2`, ... (made on first use: each key costs one argon2id derivation).
    pub fn wallet(&self) -> &Wallet {
        self.wallet.get_or_init(|| {
            let wallet = Wallet::new(&self.bins.chorus, &self.dir().join("keystore"));
            let seeds = self.dir().join("seeds");
            std::fs::create_dir_all(&seeds).expect("seed directory");
            for (i, key) in self.accounts.iter().enumerate() {
                let seed = seeds.join(format!("funded{}", i + 1));
                std::fs::write(&seed, hex::encode(key.seed())).expect("seed file");
                let name = format!("funded{}", i + 1);
                let seed = seed.to_str().expect("utf-8 path");
                wallet.json(None, &["wallet", "import", &name, "--seed-file", seed]).expect("import");
            }
            std::fs::remove_dir_all(&seeds).expect("seeds removed");
            wallet
        })
    }

    /// Puts node `k`'s key (its address's) into the wallet as `node<k>`, so that `chorus` can
    /// sign for it (a delegate registers with its node's key). Returns the name.
    pub fn import_node_key(&self, k: usize) -> String {
        let name = format!("node{k}");
        let key = self.slot(k).dir.join("node.key");
        let key = key.to_str().expect("utf-8 path");
        self.wallet().json(None, &["wallet", "import", &name, "--seed-file", key]).expect("import a node key");
        name
    }

    /// Runs `chorus --json` against node `k`: the printed JSON, or the failure.
    pub fn chorus(&self, k: usize, args: &[&str]) -> Result<Value, WalletError> {
        self.wallet().json(Some(self.rpc(k)), args)
    }
}

impl Drop for Testnet {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        for (i, slot) in self.nodes.iter_mut().enumerate() {
            if let Some(mut process) = slot.process.take() {
                process.terminate();
            }
            if failed {
                let log = std::fs::read_to_string(slot.dir.join("node.log")).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                eprintln!("--- node {} log, last {LOG_TAIL_LINES} lines ---", i + 1);
                for line in &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..] {
                    eprintln!("{line}");
                }
            }
        }
        if failed && let Some(dir) = self.dir.take() {
            eprintln!("--- the testnet's directory is kept: {} ---", dir.keep().display());
        }
    }
}

/// Each node's final height as last seen, checked never to go down.
#[derive(Debug, Default)]
pub struct Finals {
    seen: BTreeMap<usize, u64>,
}

impl Finals {
    /// Every live node's final height (0 for none); panics if one is below what this saw
    /// before for that node.
    pub fn sample(&mut self, testnet: &Testnet) -> BTreeMap<usize, u64> {
        let mut now = BTreeMap::new();
        for k in testnet.live() {
            let height = testnet.rpc(k).finalized().expect("finalized").map_or(0, |block| block.height.get());
            let before = self.seen.get(&k).copied().unwrap_or(0);
            assert!(height >= before, "node {k}: final height went down from {before} to {height}");
            self.seen.insert(k, height);
            now.insert(k, height);
        }
        now
    }

    /// The highest final height a live node reports now.
    pub fn highest(&mut self, testnet: &Testnet) -> u64 {
        self.sample(testnet).into_values().max().unwrap_or(0)
    }

    /// What this last saw for node `k` (0 if never).
    pub fn last(&self, k: usize) -> u64 {
        self.seen.get(&k).copied().unwrap_or(0)
    }
}

/// The deterministic key of funded account `i`.
fn account_key(i: u32) -> SecretKey {
    SecretKey::from_seed(*Hash::digest(format!("chorus testnet account {i}").as_bytes()).as_bytes())
}

/// Runs a command that must succeed; returns its standard output.
fn run_ok(command: &mut Command) -> Result<String, String> {
    let output = command.output().map_err(|error| format!("{command:?}: {error}"))?;
    if !output.status.success() {
        return Err(format!("{command:?}: {}", String::from_utf8_lossy(&output.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A `chorus` wallet: the binary and a keystore, password [`WALLET_PASSWORD`].
#[derive(Debug, Clone)]
pub struct Wallet {
    bin: PathBuf,
    keystore: PathBuf,
}

/// A `chorus` command that failed: its exit code and the error it printed.
#[derive(Debug, Clone)]
pub struct WalletError {
    pub exit: Option<i32>,
    /// `{"error": {"kind", "message", "code"?}}` with `--json`.
    pub error: Value,
}

impl Wallet {
    pub fn new(bin: &Path, keystore: &Path) -> Wallet {
        Wallet { bin: bin.to_owned(), keystore: keystore.to_owned() }
    }

    pub fn keystore(&self) -> &Path {
        &self.keystore
    }

    /// `chorus --keystore K [--rpc URL] ARGS` with the password in the environment.
    pub fn run(&self, rpc: Option<&Rpc>, args: &[&str]) -> Output {
        let mut command = Command::new(&self.bin);
        command.arg("--keystore").arg(&self.keystore);
        if let Some(rpc) = rpc {
            command.args(["--rpc", &rpc.url()]);
        }
        command.args(args).env("CHORUS_PASSWORD", WALLET_PASSWORD).env_remove("CHORUS_RPC_URL");
        command.output().expect("chorus runs")
    }

    /// `run` with `--json`: the JSON it printed, or the failure.
    pub fn json(&self, rpc: Option<&Rpc>, args: &[&str]) -> Result<Value, WalletError> {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let output = self.run(rpc, &all);
        let printed: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
            Value::String(format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        });
        if output.status.success() {
            Ok(printed)
        } else {
            Err(WalletError { exit: output.status.code(), error: printed })
        }
    }
}

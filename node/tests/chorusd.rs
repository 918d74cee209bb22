//! Real `chorusd` processes on temporary data directories, driven over JSON-RPC.
#![allow(clippy::disallowed_types, reason = "tests bound their waits with the wall clock")]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use chorus_chain::codec;
use chorus_chain::primitives::{Amount, ChainId};
use chorus_chain::tx::{SignedTransaction, Transaction, TxKind};
use chorus_chain::{Address, SecretKey};
use chorus_node::dev::{DEV_BALANCE, DEV_CHAIN_ID, dev_key};
use chorus_testnet::process::loopback_ports;
use chorus_testnet::{CallError, Chorusd, Launch};
use serde_json::{Value, json};

/// Upper bound for anything a test waits for; polling ends as soon as it holds.
const WAIT: Duration = Duration::from_secs(90);
/// How long a PoW dev node's finality subscription is watched for silence: two block times.
const FINALITY_SILENCE: Duration = Duration::from_secs(2);

/// Starts `chorusd ARGS`, its log in a numbered file in `log_dir`.
fn start(args: &[&str], log_dir: &Path) -> Chorusd {
    let log = log_dir.join(format!("chorusd-{}.log", STARTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst)));
    Chorusd::start(&Launch::new(env!("CARGO_BIN_EXE_chorusd"), log).args(args.iter().copied()))
        .unwrap_or_else(|error| panic!("{error}"))
}

/// Numbers the processes a test starts, for their log files.
static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Raw JSON-RPC calls with the error as (code, message), as these tests look at both.
trait Calls {
    fn call(&self, method: &str, params: Value) -> Result<Value, (i64, String)>;
    fn ok(&self, method: &str, params: Value) -> Value;
    fn height(&self) -> u64;
}

impl Calls for Chorusd {
    fn call(&self, method: &str, params: Value) -> Result<Value, (i64, String)> {
        self.rpc().call(method, params).map_err(|error| match error {
            CallError::Rpc { code, message } => (code, message),
            other => panic!("{method}: {other}"),
        })
    }

    fn ok(&self, method: &str, params: Value) -> Value {
        self.call(method, params).unwrap_or_else(|error| panic!("{method}: {error:?}"))
    }

    fn height(&self) -> u64 {
        self.rpc().head().expect("chain_getHead").height.get()
    }
}

/// The HTTP status a 2 MiB POST body gets. By hand: the server answers and closes before the
/// body is written, which an HTTP client library reports as a failed write.
fn status_of_oversize_post(addr: std::net::SocketAddr) -> u16 {
    use std::io::{Read, Write};
    let body = vec![b' '; 2 * 1024 * 1024];
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("write");
    let _ = stream.write_all(&body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0)
}

/// [`chorus_testnet::eventually`] within [`WAIT`]; a failure shows `node`'s log.
fn eventually<T>(what: &str, node: &Chorusd, mut check: impl FnMut() -> Option<T>) -> T {
    chorus_testnet::eventually(what, WAIT, || check().ok_or(NotYet(node)))
}

/// Why a wait goes on: the check did not hold. Displayed (so the node's log is read) only in
/// the failure's message.
struct NotYet<'a>(&'a Chorusd);

impl std::fmt::Display for NotYet<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the check did not hold; log:\n{}", self.0.log())
    }
}

fn dev_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["dev"];
    args.extend(loopback_ports());
    args.extend_from_slice(extra);
    args
}

fn transfer(key: &SecretKey, nonce: u64, to: Address, amount: u128, fee: u128) -> SignedTransaction {
    Transaction {
        chain_id: ChainId::new(DEV_CHAIN_ID).expect("chain id"),
        sender: key.address(),
        nonce,
        fee: Amount::new(fee),
        kind: TxKind::Transfer { to, amount: Amount::new(amount) },
    }
    .sign(key)
}

fn tx_hex(tx: &SignedTransaction) -> String {
    hex::encode(codec::encode(tx))
}

fn balance(node: &Chorusd, address: &Address) -> u128 {
    node.ok("state_getAccount", json!([address.to_string()]))["balance"]
        .as_str()
        .expect("balance")
        .parse()
        .expect("number")
}

#[test]
fn dev_node_produces_blocks_and_includes_a_transfer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start(&dev_args(&["--tmp"]), dir.path());
    assert!(node.stdout().iter().any(|line| line.contains("state is temporary")), "{:?}", node.stdout());
    eventually("three blocks", &node, || (node.height() >= 3).then_some(()));

    let (alice, bob) = (dev_key(1), SecretKey::from_seed([7; 32]).address());
    assert_eq!(balance(&node, &alice.address()), DEV_BALANCE);
    let tx = transfer(&alice, 0, bob, 1_000, 5);
    let hash = node.ok("tx_submit", json!([tx_hex(&tx)]));
    assert_eq!(hash.as_str(), Some(tx.hash().to_hex().as_str()));
    let first = node.ok("tx_get", json!([hash]));
    assert!(["pending", "included"].contains(&first["status"].as_str().expect("status")), "{first}");
    let included = eventually("inclusion", &node, || {
        let status = node.ok("tx_get", json!([hash]));
        (status["status"] == "included").then_some(status)
    });
    let height = included["height"].as_u64().expect("height");
    let block = node.ok("chain_getBlock", json!([height]));
    assert!(block["transactions"].as_array().expect("txs").iter().any(|tx| tx["hash"] == hash), "{block}");
    assert_eq!(balance(&node, &bob), 1_000);
    assert_eq!(balance(&node, &alice.address()), DEV_BALANCE - 1_005);
    let by_hash = node.ok("chain_getBlock", json!([block["hash"]]));
    assert_eq!(by_hash["height"], block["height"]);
    // PoW reports each block's cumulative work (64 hex digits): zero at genesis, growing.
    let work = |value: &Value| value["chainWork"].as_str().expect("chainWork").to_owned();
    assert_eq!(work(&node.ok("chain_getBlock", json!([0]))), "0".repeat(64));
    let parent = node.ok("chain_getBlock", json!([height - 1]));
    assert!(work(&parent) < work(&block), "{parent} then {block}");
    assert!(work(&block) <= work(&node.ok("chain_getHead", json!([]))));

    assert_eq!(node.ok("consensus_validators", json!([]))["engine"], "pow");
    assert!(node.metric("chorus_blocks_imported_total").unwrap_or(0.0) >= 3.0, "mined blocks are counted");
    // The dev chain's difficulty is small but never zero past genesis; its miner's tries add up to
    // at least one nonce per block.
    assert!(node.metric("chorus_pow_difficulty").unwrap_or(0.0) >= 1.0, "the head's difficulty");
    assert!(node.metric("chorus_pow_hashes_total").unwrap_or(0.0) >= 3.0, "the miner's nonces");
    let metrics = node.metrics_text().expect("metrics");
    assert!(metrics.contains("\nlibp2p_identify_"), "libp2p's own families are there");
    assert!(!metrics.contains("libp2p_libp2p_"), "libp2p's families are prefixed once");

    // A proof against the block's state root comes with the account when asked for.
    let account = node.ok("state_getAccount", json!([bob.to_string(), height]));
    assert_eq!(account["proof"]["height"], height);
    assert_eq!(account["proof"]["stateRoot"], block["stateRoot"]);
}

/// `chorusd dev` under an engine with finality: the node is the one validator (delegate) with
/// its own key, its blocks become final at once, and `consensus_validators` shows it.
#[test]
fn dev_nodes_of_the_engines_with_finality_finalize_their_blocks() {
    for engine in ["pos", "dpos"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = start(&dev_args(&["--tmp", "--engine", engine]), dir.path());
        let finalized = eventually("three final blocks", &node, || {
            let finalized = node.ok("chain_getFinalized", json!([]));
            (finalized["height"].as_u64().unwrap_or(0) >= 3).then_some(finalized)
        });
        assert!(node.height() >= finalized["height"].as_u64().expect("height"));
        let peer_id = node.ok("node_status", json!([]))["peerId"].clone();
        let set = node.ok("consensus_validators", json!([]));
        assert_eq!(set["engine"], engine, "{set}");
        let members = set["validators"].as_array().expect("validators");
        assert_eq!(members.len(), 1, "{set}");
        assert_eq!(members[0]["peerId"], peer_id, "the node's own key: {set}");
        assert_eq!(set["producer"], members[0]["address"], "{set}");
        match engine {
            "dpos" => {
                let ranking = set["election"]["ranking"].as_array().expect("ranking");
                assert_eq!(ranking.len(), 1, "{set}");
                assert!(ranking[0]["elected"] == true && ranking[0]["scheduled"] == true, "{set}");
                assert_eq!(set["election"]["pending"], Value::Null, "{set}");
            }
            _ => assert_eq!(set["election"], Value::Null, "{set}"),
        }
    }
}

/// `chorusd dev --engine raft`: the one member leads, builds a block only when transactions
/// wait (none on a timer), and each block is final as it joins the chain; a restart keeps the
/// log and goes on from it.
#[test]
fn dev_raft_member_commits_blocks_when_transactions_come_and_each_is_final() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let args = dev_args(&["--data-dir", data.to_str().expect("utf-8"), "--engine", "raft"]);
    let node = start(&args, dir.path());
    let set = eventually("a leader", &node, || {
        let set = node.ok("consensus_validators", json!([]));
        (!set["producer"].is_null()).then_some(set)
    });
    assert_eq!(set["engine"], "raft", "{set}");
    assert_eq!(set["validators"].as_array().expect("members").len(), 1, "{set}");
    assert_eq!(set["producer"], set["validators"][0]["address"], "the member leads: {set}");
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(node.height(), 0, "no block without transactions");

    let (alice, bob) = (dev_key(1), SecretKey::from_seed([8; 32]).address());
    for nonce in 0..3 {
        let hash = node.ok("tx_submit", json!([tx_hex(&transfer(&alice, nonce, bob, 10, 5))]));
        // Final as soon as it is in a block.
        let included = eventually("inclusion", &node, || {
            let status = node.ok("tx_get", json!([hash]));
            (status["status"] != "pending").then_some(status)
        });
        assert_eq!(included["status"], "final", "{included}");
    }
    assert_eq!(balance(&node, &bob), 30);
    let head = node.ok("chain_getHead", json!([]));
    assert_eq!(node.ok("chain_getFinalized", json!([]))["hash"], head["hash"], "the head is final");
    // The leader's three blocks each went from proposal to commit once; it leads in term 1 or
    // later (the campaign at start) and knows itself as leader.
    let (_, metrics) = get_metrics(node.metrics_addr(), "");
    let value = |name: &str| {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|value| value.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
    };
    assert_eq!(value("chorus_raft_commit_seconds_count"), 3.0);
    assert!(value("chorus_raft_term") >= 1.0);
    assert_eq!(value("chorus_raft_leader"), 1.0);
    assert_eq!(value("chorus_raft_proposals_dropped_total"), 0.0);
    drop(node);

    let node = start(&args, dir.path());
    assert_eq!(node.ok("chain_getHead", json!([]))["hash"], head["hash"]);
    let hash = node.ok("tx_submit", json!([tx_hex(&transfer(&alice, 3, bob, 10, 5))]));
    eventually("inclusion after a restart", &node, || {
        (node.ok("tx_get", json!([hash]))["status"] == "final").then_some(())
    });
    assert_eq!(balance(&node, &bob), 40);
    assert_eq!(node.ok("chain_getFinalized", json!([]))["hash"], node.ok("chain_getHead", json!([]))["hash"]);
}

/// `GET /metrics` with these header lines (each ending in CRLF): the content type and body.
fn get_metrics(addr: std::net::SocketAddr, headers: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{headers}\r\n").expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").expect("headers and a body");
    let content_type = head
        .lines()
        .find_map(|line| line.split_once(':').filter(|(name, _)| name.eq_ignore_ascii_case("content-type")))
        .map(|(_, value)| value.trim().to_owned())
        .expect("a content type");
    (content_type, body.to_owned())
}

/// Scrapers get the format they ask for: OpenMetrics when they say so (Prometheus does), the
/// Prometheus text format otherwise, which promtool checks clean (`.ci/setup` installs it).
#[test]
fn metrics_come_in_the_format_asked_for_and_promtool_finds_nothing_to_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start(&dev_args(&["--tmp", "--engine", "pos"]), dir.path());
    eventually("three blocks", &node, || (node.height() >= 3).then_some(()));

    let (content_type, text) = get_metrics(node.metrics_addr(), "");
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert!(!text.contains("# EOF") && !text.contains("# UNIT"), "{text}");
    for line in text.lines().filter(|line| line.starts_with("# TYPE ") && line.ends_with(" counter")) {
        let name = line.split(' ').nth(2).expect("a name");
        assert!(name.ends_with("_total"), "{line}");
        assert!(text.contains(&format!("# HELP {name} ")), "{name} has no help");
    }
    assert!(text.contains("\nchorus_blocks_imported_total "), "{text}");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs (.ci/setup installs it: Debian's prometheus package)");
    std::io::Write::write_all(&mut promtool.stdin.take().expect("stdin"), text.as_bytes()).expect("write");
    let checked = promtool.wait_with_output().expect("promtool ends");
    let said = format!("{}{}", String::from_utf8_lossy(&checked.stdout), String::from_utf8_lossy(&checked.stderr));
    assert!(checked.status.success() && said.trim().is_empty(), "promtool check metrics: {said}");

    let (content_type, openmetrics) = get_metrics(node.metrics_addr(), "Accept: application/openmetrics-text\r\n");
    assert_eq!(content_type, "application/openmetrics-text; version=1.0.0; charset=utf-8");
    assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
    assert!(openmetrics.contains("# TYPE chorus_blocks_imported counter"), "{openmetrics}");
}

/// A peer of another implementation joins with its public options only: js-libp2p on Node
/// (`tests/js`, installed by `.ci/setup --tests`), whose identify cannot name a Chorus chain,
/// dials a dev node and receives a block on the chain's blocks topic by gossip.
#[test]
fn a_js_libp2p_peer_receives_blocks_by_gossip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start(&dev_args(&["--tmp"]), dir.path());
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(js.join("node_modules").is_dir(), "js-libp2p is not installed: run .ci/setup --tests (npm ci in {js:?})");
    let topic = format!("/chorus/{DEV_CHAIN_ID}/blocks/1");
    let output = Command::new("node")
        .arg(js.join("peer.mjs"))
        .args([node.p2p(), topic.as_str()])
        .output()
        .expect("node runs (Node.js, which .ci/setup --tests checks for)");
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the js-libp2p peer: {said}\nnode log:\n{}", node.log());
    assert!(said.contains(&format!("bytes on {topic}")), "{said}");
    assert!(node.height() >= 1, "a block was gossiped");
}

/// The explorer page in a real browser (Debian's Chromium driven by playwright-core, both
/// installed by `.ci/setup --tests`): the head advances on screen, a click on a block opens it,
/// a transaction found by its hash links to its block, which lists it, an address search shows
/// the balance the RPC gives, a hash of nothing gets a message, and a stopped node a banner.
/// The page fetches nothing beyond the node. The screenshot is kept in the target directory
/// (`tmp/explorer.png`).
#[test]
fn the_explorer_page_shows_the_chain_live_in_a_browser() {
    use std::io::{BufRead, Write};
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start(&dev_args(&["--tmp", "--engine", "pos"]), dir.path());
    let page = node.explorer_addr().expect("the explorer is on by default");
    let (alice, bob) = (dev_key(1), SecretKey::from_seed([9; 32]).address());
    let hash = node.ok("tx_submit", json!([tx_hex(&transfer(&alice, 0, bob, 1_234, 5))]));
    let hash = hash.as_str().expect("a hash").to_owned();
    let included = eventually("inclusion", &node, || {
        let status = node.ok("tx_get", json!([hash]));
        (status["status"] != "pending").then_some(status)
    });
    let balance = node.ok("state_getAccount", json!([bob.to_string()]))["balance"].clone();
    assert_eq!(balance, "1234");

    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(
        js.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run .ci/setup --tests"
    );
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("explorer.png");
    let _ = std::fs::remove_file(&screenshot);
    let mut browser = Command::new("node")
        .arg(js.join("explorer.mjs"))
        .args([format!("http://{page}/"), hash.clone(), bob.to_string(), screenshot.display().to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("node runs (Node.js, which .ci/setup --tests checks for)");
    let mut stdin = browser.stdin.take().expect("stdin");
    let mut lines = std::io::BufReader::new(browser.stdout.take().expect("stdout")).lines();
    let mut next = |what: &str| -> Value {
        match lines.next() {
            Some(Ok(line)) => serde_json::from_str(&line).unwrap_or_else(|error| panic!("{what}: {error}: {line}")),
            _ => {
                let mut said = String::new();
                let _ = std::io::Read::read_to_string(browser.stderr.as_mut().expect("stderr"), &mut said);
                panic!("{what}: the browser script stopped: {said}");
            }
        }
    };
    let seen = next("the page");
    assert_eq!(seen["failures"], json!([]), "the page ran without errors: {seen}");
    assert_eq!(seen["outside"], json!([]), "the page fetched nothing beyond the node: {seen}");
    assert!(seen["headAfter"].as_u64() > seen["headBefore"].as_u64(), "the head advanced on screen: {seen}");
    assert_eq!(seen["clickedHeight"], seen["newest"], "a click on the newest block opened it: {seen}");
    assert!(["included", "final"].contains(&seen["txStatus"].as_str().unwrap_or_default()), "{seen}");
    assert_eq!(seen["txBlockHeight"].as_str().map(str::to_owned), Some(included["height"].to_string()), "{seen}");
    assert_eq!(seen["blockTxs"], json!([hash]), "the block's page lists the transaction: {seen}");
    assert_eq!(seen["balance"], balance, "the page shows the RPC's balance: {seen}");
    assert!(seen["notFound"].as_str().unwrap_or_default().contains("Nothing found"), "{seen}");
    let png = std::fs::read(&screenshot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");

    drop(node);
    writeln!(stdin, "stopped").expect("tell the script");
    let gone = next("the page after the stop");
    assert!(gone["banner"].as_str().unwrap_or_default().contains("unreachable"), "{gone}");
    assert!(browser.wait().expect("the script ends").success());
}

#[test]
fn bad_rpc_input_gets_its_documented_code_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start(&dev_args(&["--tmp"]), dir.path());
    let alice = dev_key(2);
    let bob = dev_key(3).address();

    // JSON-RPC's own codes.
    let (status, body) = node.rpc().post(b"{not json").expect("an answer");
    assert_eq!(status, 200, "{body}");
    let parse_error: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(parse_error["error"]["code"], -32700);
    assert_eq!(node.call("no_such_method", json!([])).expect_err("unknown").0, -32601);
    assert_eq!(node.call("tx_get", json!([1, 2, 3])).expect_err("wrong params").0, -32602);
    assert_eq!(status_of_oversize_post(node.rpc().addr()), 413, "an oversize body is refused");

    // Ours, each with a message that says what was wrong.
    let (code, message) = node.call("tx_submit", json!(["zz"])).expect_err("not hex");
    assert_eq!((code, message.contains("not hex")), (1001, true), "{message}");
    assert_eq!(node.call("tx_submit", json!(["00ff"])).expect_err("undecodable").0, 1001);
    let mut forged = transfer(&alice, 0, bob, 1, 5);
    forged.tx.fee = Amount::new(6);
    assert_eq!(node.call("tx_submit", json!([tx_hex(&forged)])).expect_err("bad signature").0, 1002);
    let (code, message) = node.call("tx_submit", json!([tx_hex(&transfer(&alice, 0, bob, 1, 0))])).expect_err("fee");
    assert_eq!(code, 1005, "{message}");
    node.ok("tx_submit", json!([tx_hex(&transfer(&alice, 0, bob, 1, 5))]));
    eventually("inclusion of nonce 0", &node, || {
        let account = node.ok("state_getAccount", json!([alice.address().to_string()]));
        (account["nonce"] == 1).then_some(())
    });
    let (code, message) =
        node.call("tx_submit", json!([tx_hex(&transfer(&alice, 0, bob, 2, 5))])).expect_err("nonce used");
    assert_eq!((code, message.as_str()), (1003, "nonce 0 already used, next is 1"));
    let (code, _) = node.call("tx_submit", json!([tx_hex(&transfer(&alice, 1_000, bob, 2, 5))])).expect_err("gap");
    assert_eq!(code, 1004);
    let pauper = SecretKey::from_seed([9; 32]);
    let (code, message) =
        node.call("tx_submit", json!([tx_hex(&transfer(&pauper, 0, bob, 1_000, 5))])).expect_err("funds");
    assert_eq!(code, 1010, "{message}");
    assert!(message.contains("needs 1005"), "{message}");
    let (code, message) = node.call("state_getAccount", json!(["chorus1notanaddress"])).expect_err("address");
    assert_eq!(code, 2001, "{message}");
    assert_eq!(node.call("chain_getBlock", json!(["beef"])).expect_err("hash").0, 2002);
    assert_eq!(node.ok("chain_getBlock", json!([1_000_000])), Value::Null);

    // Every documented method is served; the document lists them all.
    let document = node.ok("rpc.discover", json!([]));
    let methods = document["methods"].as_array().expect("methods");
    for method in chorus_node::rpc::METHODS {
        assert!(methods.iter().any(|listed| listed["name"] == method.name), "{} not in rpc.discover", method.name);
        if method.name.contains("ubscribe") {
            continue;
        }
        let params = if method.params.iter().any(|(_, _, required)| *required) { json!(["x"]) } else { json!([]) };
        if let Err((code, message)) = node.call(method.name, params) {
            assert_ne!(code, -32601, "{} is documented but not served: {message}", method.name);
        }
    }
    // Still serving.
    assert!(node.height() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_subscription_delivers_new_heads_in_order() {
    use futures::FutureExt;
    use jsonrpsee::core::client::SubscriptionClientT;
    use jsonrpsee::rpc_params;

    let dir = tempfile::tempdir().expect("tempdir");
    let node = start(&dev_args(&["--tmp"]), dir.path());
    let client = jsonrpsee::ws_client::WsClientBuilder::default()
        .build(format!("ws://{}", node.rpc().addr()))
        .await
        .expect("ws");
    let mut heads = client
        .subscribe::<Value, _>("chain_subscribeHeads", rpc_params![], "chain_unsubscribeHeads")
        .await
        .expect("subscribe");
    let mut finals = client
        .subscribe::<Value, _>("chain_subscribeFinalized", rpc_params![], "chain_unsubscribeFinalized")
        .await
        .expect("subscribe to finality");
    let mut previous: Option<u64> = None;
    for _ in 0..5 {
        let head =
            tokio::time::timeout(WAIT, heads.next()).await.expect("a head in time").expect("open").expect("json");
        let height = head["height"].as_u64().expect("height");
        if let Some(previous) = previous {
            assert_eq!(height, previous + 1, "one node's heads come one by one");
        }
        previous = Some(height);
    }
    // PoW's no-finality guarantee: a block is only ever buried deeper, never final. While the
    // heads above advanced (and for two block times more), the finality subscription stays
    // open and says nothing; a notification sent meanwhile would be waiting in it now.
    let silence = tokio::time::timeout(FINALITY_SILENCE, finals.next()).await;
    assert!(silence.is_err(), "a PoW node finalized a block or closed the subscription: {silence:?}");
    let head = tokio::time::timeout(WAIT, heads.next()).await.expect("a head in time").expect("open").expect("json");
    assert!(head["height"].as_u64() > previous, "the chain went on meanwhile: {head}");
    assert!(finals.next().now_or_never().is_none(), "the finality subscription is still open and silent");
}

fn run_args<'a>(genesis: &'a str, data_dir: &'a str, bootnodes: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["run", "--genesis", genesis, "--data-dir", data_dir];
    for bootnode in bootnodes {
        args.extend(["--bootnode", bootnode]);
    }
    args.extend(loopback_ports());
    args
}

#[test]
fn late_nodes_sync_from_zero_from_several_peers_and_follow() {
    const LENGTH: u64 = 600;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name).to_str().expect("utf-8").to_owned();
    let first_dir = path("first");
    let first = start(&dev_args(&["--data-dir", &first_dir, "--block-time-ms", "20"]), dir.path());
    eventually("a chain to sync", &first, || (first.height() >= LENGTH).then_some(()));
    let genesis = path("first/dev-genesis.json");

    let second_dir = path("second");
    let second = start(&run_args(&genesis, &second_dir, &[first.p2p()]), dir.path());
    let target = first.height();
    eventually("the second node caught up", &second, || (second.height() >= target).then_some(()));
    assert!(second.log().contains("syncing"), "range sync reported progress:\n{}", second.log());
    assert!(second.metric("chorus_blocks_imported_total").unwrap_or(0.0) >= LENGTH as f64);
    assert!(second.metric("chorus_block_import_seconds_count").unwrap_or(0.0) >= LENGTH as f64);

    // The third knows both: ranges come from each of them.
    let third_dir = path("third");
    let third = start(&run_args(&genesis, &third_dir, &[first.p2p(), second.p2p()]), dir.path());
    let target = first.height();
    eventually("the third node caught up", &third, || (third.height() >= target).then_some(()));
    let served = |node: &Chorusd| {
        node.metric("chorus_p2p_sync_requests_inbound_total{kind=\"blocks\",outcome=\"delivered\"}").unwrap_or(0.0)
    };
    assert!(served(&second) > 0.0, "the second node served ranges to the third");
    assert!(served(&first) > 0.0, "the first node served ranges");

    // And they follow: blocks mined after the catch-up arrive by gossip.
    let later = first.height() + 5;
    for node in [&second, &third] {
        eventually("following", node, || (node.height() >= later).then_some(()));
        let ours = node.ok("chain_getBlock", json!([later]));
        let theirs = first.ok("chain_getBlock", json!([later]));
        assert_eq!(ours["hash"], theirs["hash"], "the same chain");
    }
    let peers = third.ok("node_peers", json!([]));
    assert_eq!(peers["connected"].as_array().expect("peers").len(), 2, "{peers}");
}

#[test]
fn a_node_killed_while_mining_and_receiving_transactions_restarts_and_continues() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("chain");
    let args = dev_args(&["--data-dir", data_dir.to_str().expect("utf-8")]);
    let sender = dev_key(1);
    let mut nonce;
    // A seeded schedule of how long each life lasts (ms).
    let mut state: u64 = 0x5eed_c0de;
    let mut last_height = 0;
    for life in 0..4 {
        let mut node = start(&args, dir.path());
        // Every head the node reported was committed: a kill loses no reported block.
        let reopened = node.height();
        assert!(reopened >= last_height, "life {life}: reopened at {reopened}, had reported {last_height}");
        // Pending transactions die with the process; the account's nonce says what was included.
        let account = node.ok("state_getAccount", json!([sender.address().to_string()]));
        nonce = account["nonce"].as_u64().expect("nonce");
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let life_ms = 1_000 + state % 2_000;
        let until = Instant::now() + Duration::from_millis(life_ms);
        while Instant::now() < until {
            let tx = transfer(&sender, nonce, dev_key(0).address(), 1, 5);
            if node.call("tx_submit", json!([tx_hex(&tx)])).is_ok() {
                nonce += 1;
            }
            if let Ok(head) = node.call("chain_getHead", json!([])) {
                last_height = last_height.max(head["height"].as_u64().unwrap_or(0));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        node.kill();
    }
    let node = start(&args, dir.path());
    let start = node.height();
    eventually("blocks after the last restart", &node, || (node.height() > start).then_some(()));
}

#[test]
fn a_malformed_config_file_stops_start_up_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("chorusd.toml");
    std::fs::write(&config, "rpc = \"not an address\"\n").expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_chorusd"))
        .args(["dev", "--tmp", "--config", config.to_str().expect("utf-8")])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("field rpc"), "{stderr}");
    let output =
        Command::new(env!("CARGO_BIN_EXE_chorusd")).args(["dev", "--tmp", "--engine", "pbft"]).output().expect("runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown engine"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_of_calls_and_subscriptions_are_refused_and_the_node_keeps_serving() {
    use jsonrpsee::core::client::{ClientT, SubscriptionClientT};
    use jsonrpsee::rpc_params;

    let dir = tempfile::tempdir().expect("tempdir");
    let node = start(&dev_args(&["--tmp"]), dir.path());
    let client = jsonrpsee::ws_client::WsClientBuilder::default()
        .max_concurrent_requests(20_000)
        .build(format!("ws://{}", node.rpc().addr()))
        .await
        .expect("ws");

    // Far more calls at once than one connection's burst allows.
    let calls = 3 * chorus_chain::limits::RPC_CALL_BURST_MAX as usize;
    let results =
        futures::future::join_all((0..calls).map(|_| client.request::<Value, _>("chain_getHead", rpc_params![]))).await;
    let limited = results
        .iter()
        .filter(|result| matches!(result, Err(jsonrpsee::core::ClientError::Call(error)) if error.code() == 3001))
        .count();
    let served = results.iter().filter(|result| result.is_ok()).count();
    assert!(limited > 0, "some calls were refused with 3001");
    assert!(served >= chorus_chain::limits::RPC_CALL_BURST_MAX as usize, "the burst was served ({served})");
    assert_eq!(limited + served, calls, "every call got an answer");

    // Subscriptions beyond the per-connection limit are refused; the ones before stay.
    let max = chorus_chain::limits::RPC_SUBSCRIPTIONS_PER_CONNECTION_MAX as usize;
    let mut subscriptions = Vec::new();
    for _ in 0..max {
        subscriptions.push(
            client
                .subscribe::<Value, _>("chain_subscribeHeads", rpc_params![], "chain_unsubscribeHeads")
                .await
                .expect("within the limit"),
        );
    }
    assert!(
        client.subscribe::<Value, _>("chain_subscribeHeads", rpc_params![], "chain_unsubscribeHeads").await.is_err()
    );
    let head = tokio::time::timeout(WAIT, subscriptions[0].next()).await.expect("a head").expect("open").expect("json");
    assert!(head["height"].as_u64().is_some());

    // A new connection is served at once.
    assert!(node.height() > 0);
    let metrics =
        node.metric("chorus_rpc_calls_total{method=\"chain_getHead\",outcome=\"rate_limited\"}").unwrap_or(0.0);
    assert_eq!(metrics as usize, limited, "refusals are counted");
}

#[test]
fn sigterm_stops_the_node_cleanly_and_it_reopens_where_it_was() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("chain");
    // A key file named but missing is created there, private, and said so.
    let key = dir.path().join("node.key");
    let args = dev_args(&["--data-dir", data_dir.to_str().expect("utf-8"), "--key", key.to_str().expect("utf-8")]);
    let mut node = start(&args, dir.path());
    assert!(node.stdout().iter().any(|line| line.contains("created a new one")), "{:?}", node.stdout());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).expect("the key file is created").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let peer_id = node.ok("node_status", json!([]))["peer_id"].clone();
    eventually("a few blocks", &node, || (node.height() >= 3).then_some(()));
    // `terminate` sends SIGTERM and waits at most 15 s; None means it had to SIGKILL.
    let exit = node.terminate();
    assert!(exit.is_some(), "no exit within 15 s of SIGTERM; log:\n{}", node.log());
    let exit = exit.expect("checked");
    assert!(exit.success(), "{exit:?}; log:\n{}", node.log());
    drop(node);
    let node = start(&args, dir.path());
    assert!(node.stdout().iter().any(|line| line.contains("state is kept")), "{:?}", node.stdout());
    assert!(node.height() >= 3, "reopened on its chain");
    assert_eq!(node.ok("node_status", json!([]))["peer_id"], peer_id, "with the key it created");
}

#[test]
fn settings_layer_flags_over_environment_over_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("chorusd.toml");
    // The file asks for a fixed port; the environment overrides it with any free one.
    std::fs::write(
        &config,
        "rpc = \"127.0.0.1:1\"\nmetrics = \"127.0.0.1:0\"\nexplorer = \"off\"\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\n",
    )
    .expect("write");
    let launch = Launch::new(env!("CARGO_BIN_EXE_chorusd"), dir.path().join("layered.log"))
        .args(["dev", "--tmp", "--config", config.to_str().expect("utf-8")])
        .env("CHORUS_RPC", "127.0.0.1:0");
    let node = Chorusd::start(&launch).unwrap_or_else(|error| panic!("{error}"));
    assert_ne!(node.rpc().addr().port(), 1, "the environment overrides the file");
    node.rpc().head().expect("it serves on the port the environment gave");
    drop(node);

    // A flag overrides the environment (which, invalid, would otherwise stop start-up).
    let output = Command::new(env!("CARGO_BIN_EXE_chorusd"))
        .args(["dev", "--tmp", "--rpc", "not-an-address"])
        .env("CHORUS_RPC", "127.0.0.1:0")
        .output()
        .expect("runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--rpc"), "the flag's error names it");
}

#[test]
fn pending_transactions_outlive_a_clean_stop_and_a_damaged_mempool_file_is_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("chain");
    let args = dev_args(&["--data-dir", data_dir.to_str().expect("utf-8")]);
    let (alice, bob) = (dev_key(1), dev_key(2).address());
    let mut node = start(&args, dir.path());
    // Nonce 1 before nonce 0: it waits in the mempool for the gap to close.
    let waiting = node.rpc().submit(&transfer(&alice, 1, bob, 5, 5)).expect("a gap is held");
    assert_eq!(node.rpc().tx(&waiting).expect("tx_get"), chorus_testnet::rpc::TxStatus::Pending);
    assert!(node.terminate().is_some_and(|exit| exit.success()), "log:\n{}", node.log());
    assert!(data_dir.join("mempool.bin").is_file(), "kept on a clean stop");

    let node = start(&args, dir.path());
    assert_eq!(node.rpc().tx(&waiting).expect("tx_get"), chorus_testnet::rpc::TxStatus::Pending, "offered again");
    assert!(!data_dir.join("mempool.bin").exists(), "a crash from now on must not offer it twice");
    node.rpc().submit(&transfer(&alice, 0, bob, 5, 5)).expect("nonce 0");
    eventually("both included", &node, || {
        matches!(node.rpc().tx(&waiting), Ok(chorus_testnet::rpc::TxStatus::Included { .. })).then_some(())
    });
    drop(node);

    std::fs::write(data_dir.join("mempool.bin"), b"chorusm1\x05\x00\x00\x00abc").expect("write");
    let node = start(&args, dir.path());
    assert!(node.height() > 0, "it serves");
    assert!(node.log().contains("pending transactions not restored"), "log:\n{}", node.log());
    assert!(!data_dir.join("mempool.bin").exists(), "removed");
}

/// Reads one HTTP/1.1 response: its status and body (by `Content-Length`; none for 101).
fn read_response(reader: &mut impl std::io::BufRead) -> (u16, String) {
    let (status, _, body) = read_response_and_headers(reader);
    (status, body)
}

/// A response's status, header lines (lowercase) and body.
fn read_response_and_headers(reader: &mut impl std::io::BufRead) -> (u16, Vec<String>, String) {
    let (mut status, mut length, mut headers) = (0, 0, Vec::new());
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).expect("a response line") > 0, "the connection closed");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if status == 0 {
            status = line.split_whitespace().nth(1).and_then(|code| code.parse().ok()).expect("a status line");
        } else {
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().expect("a length");
            }
            headers.push(line.to_ascii_lowercase());
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("the body");
    (status, headers, String::from_utf8(body).expect("utf-8"))
}

/// One raw HTTP/1.1 request with these header lines (each ending in CRLF) and body, on a new
/// connection: the status and body of the answer. Raw, so a test can send any Host or Origin.
fn raw_request(addr: std::net::SocketAddr, method: &str, headers: &str, body: &str) -> (u16, String) {
    let (status, _, body) = raw_exchange(addr, method, headers, body);
    (status, body)
}

/// One request on a new connection: the status, header lines (lowercase) and body.
fn raw_exchange(addr: std::net::SocketAddr, method: &str, headers: &str, body: &str) -> (u16, Vec<String>, String) {
    use std::io::Write;
    let stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let length = if method == "POST" {
        format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len())
    } else {
        String::new()
    };
    write!(&stream, "{method} / HTTP/1.1\r\n{headers}{length}\r\n{body}").expect("write");
    read_response_and_headers(&mut std::io::BufReader::new(stream))
}

fn call_body(method: &str, params: Value) -> String {
    json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }).to_string()
}

/// A WebSocket handshake's header lines for `host`, plus `extra`.
fn ws_handshake(host: &str, extra: &str) -> String {
    format!(
        "Host: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n{extra}"
    )
}

/// Issue 15, item 2: a web page made the operator's browser call the admin methods (a WebSocket
/// from a foreign origin, an HTTP POST under a rebound host name). Foreign hosts and origins
/// now get HTTP 403, admin calls need the token the node writes at each start, and the allowed
/// forms (loopback names, configured hosts and origins, no Origin at all) still pass.
#[test]
fn foreign_hosts_and_origins_are_refused_and_admin_calls_need_the_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("chain");
    let args = dev_args(&[
        "--data-dir",
        data_dir.to_str().expect("utf-8"),
        "--rpc-allow-host",
        "node.example",
        "--rpc-allow-origin",
        "http://explorer.example",
    ]);
    let mut node = start(&args, dir.path());
    let addr = node.rpc().addr();
    let port = addr.port();
    let token_file = data_dir.join("rpc-admin.token");
    let token = std::fs::read_to_string(&token_file).expect("the node wrote its admin token").trim().to_owned();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the token file is the node user's alone");
    }
    let peer = chorus_p2p::NodeKey::from_secret([7; 32]).peer_id().to_string();
    let ban = call_body("admin_banPeer", json!([peer]));
    let bearer = format!("Authorization: Bearer {token}\r\n");
    let banned = || node.rpc().peers().expect("node_peers").banned.len();

    // The demonstrated attacks, even with the token: refused before any method runs.
    let rebound = format!("Host: rebind.attacker.example:{port}\r\n{bearer}");
    let (status, body) = raw_request(addr, "POST", &rebound, &call_body("admin_unbanPeer", json!([peer])));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("rebind.attacker.example") && body.contains("--rpc-allow-host"), "{body}");
    let (status, body) =
        raw_request(addr, "POST", &format!("Host: 127.0.0.1:{port}\r\nOrigin: https://evil.example\r\n{bearer}"), &ban);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("https://evil.example") && body.contains("--rpc-allow-origin"), "{body}");
    let (status, body) =
        raw_request(addr, "GET", &ws_handshake("evil.example", "Origin: https://evil.example\r\n"), "");
    assert_eq!(status, 403, "a foreign WebSocket handshake: {body}");
    let (status, body) =
        raw_request(addr, "GET", &ws_handshake(&format!("localhost:{port}"), "Origin: https://evil.example\r\n"), "");
    assert_eq!(status, 403, "a WebSocket handshake from a foreign page: {body}");
    let (status, _) = raw_request(addr, "POST", "", &call_body("node_status", json!([])));
    assert_eq!(status, 403, "no Host at all");
    assert_eq!(banned(), 0);

    // Admin calls from an allowed host without the token, or with another one: refused.
    let local = format!("Host: 127.0.0.1:{port}\r\n");
    for authorization in ["", "Authorization: Bearer 00\r\n", &format!("Authorization: Basic {token}\r\n")] {
        let (status, body) = raw_request(addr, "POST", &format!("{local}{authorization}"), &ban);
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"code\":4003") && body.contains("rpc-admin.token"), "{authorization}: {body}");
    }
    let other = format!("Authorization: Bearer {}\r\n", "ab".repeat(32));
    let (_, body) = raw_request(addr, "POST", &format!("{local}{other}"), &ban);
    assert!(body.contains("\"code\":4003"), "another token: {body}");
    assert_eq!(banned(), 0, "no refused admin call ran");

    // The allowed forms.
    for host in
        [format!("localhost:{port}"), format!("127.0.0.1:{port}"), format!("[::1]:{port}"), "node.example".to_owned()]
    {
        let (status, body) =
            raw_request(addr, "POST", &format!("Host: {host}\r\n"), &call_body("node_status", json!([])));
        assert_eq!((status, body.contains("\"result\"")), (200, true), "{host}: {body}");
    }
    let explorer = format!("{local}Origin: http://explorer.example\r\n");
    let (status, headers, body) = raw_exchange(addr, "POST", &explorer, &call_body("node_status", json!([])));
    assert_eq!((status, body.contains("\"result\"")), (200, true), "the configured origin: {body}");
    // A browser lets the page read the answer (CORS), after a preflight that admits JSON POSTs
    // and no Authorization header; no other page gets either.
    assert!(headers.contains(&"access-control-allow-origin: http://explorer.example".to_owned()), "{headers:?}");
    assert!(headers.contains(&"vary: origin".to_owned()), "{headers:?}");
    let asking =
        format!("{explorer}Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n");
    let (status, headers, _) = raw_exchange(addr, "OPTIONS", &asking, "");
    assert_eq!(status, 204, "{headers:?}");
    for expected in [
        "access-control-allow-origin: http://explorer.example",
        "access-control-allow-methods: post",
        "access-control-allow-headers: content-type",
    ] {
        assert!(headers.contains(&expected.to_owned()), "{expected}: {headers:?}");
    }
    let evil = format!("{local}Origin: https://evil.example\r\nAccess-Control-Request-Method: POST\r\n");
    let (status, headers, _) = raw_exchange(addr, "OPTIONS", &evil, "");
    assert_eq!(status, 403, "a foreign page's preflight");
    assert!(!headers.iter().any(|line| line.starts_with("access-control-")), "{headers:?}");
    let (_, headers, _) = raw_exchange(addr, "POST", &local, &call_body("node_status", json!([])));
    assert!(!headers.iter().any(|line| line.starts_with("access-control-")), "no Origin, no CORS: {headers:?}");
    let (status, _) = raw_request(addr, "GET", &ws_handshake(&format!("localhost:{port}"), ""), "");
    assert_eq!(status, 101, "a WebSocket handshake without Origin (a program, not a page)");
    let (status, _) =
        raw_request(addr, "GET", &ws_handshake("node.example", "Origin: http://explorer.example\r\n"), "");
    assert_eq!(status, 101, "a WebSocket handshake from the configured origin");
    let (status, body) = raw_request(addr, "POST", &format!("{local}{bearer}"), &ban);
    assert_eq!((status, body.contains("\"result\":null")), (200, true), "admin with the token: {body}");
    assert_eq!(banned(), 1);
    node.rpc()
        .unban_peer(&chorus_chain::genesis::PeerIdText::new(&peer).expect("peer id"))
        .expect("the harness's admin call");
    assert_eq!(banned(), 0);

    // The token is the node's while it runs, and a new one at each start.
    assert!(node.terminate().is_some_and(|exit| exit.success()), "{}", node.log());
    assert!(!token_file.exists(), "a stopped node leaves no token behind");
    drop(node);
    let node = start(&args, dir.path());
    let fresh = std::fs::read_to_string(&token_file).expect("a new token").trim().to_owned();
    assert_ne!(fresh, token);
    let (_, body) = raw_request(node.rpc().addr(), "POST", &format!("Host: localhost\r\n{bearer}"), &ban);
    assert!(body.contains("\"code\":4003"), "the last start's token: {body}");
}

/// Issue 15, item 7: one keep-alive connection made 40,000 calls in 1.36 s, none refused, as
/// each HTTP request got a fresh bucket. Counted now per client address: of many pipelined
/// calls on one connection, no more pass than the burst plus the rate over the time they took.
///
/// The limit is set low (50 calls a second, bursts of 100) so that the calls outrun it however
/// slow the machine: at the default 2,000 a second, a loaded CI machine served 32,000 calls in
/// 28 s, under the rate, and none was refused.
#[test]
fn one_keep_alive_connection_cannot_outrun_the_rate_limit() {
    use std::io::Write;
    const PER_SEC: u32 = 50;
    const BURST: u32 = 2 * PER_SEC;

    let dir = tempfile::tempdir().expect("tempdir");
    let node = start(&dev_args(&["--tmp", "--rpc-rate-limit", &PER_SEC.to_string()]), dir.path());
    let addr = node.rpc().addr();
    let calls = 32 * BURST as usize;
    let body = call_body("chain_getHead", json!([]));
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let writer = stream.try_clone().expect("clone");
    // Bounds the calls' time from above: it starts before the first is sent.
    let started = Instant::now();
    let writing = std::thread::spawn(move || {
        let mut writer = std::io::BufWriter::new(writer);
        for _ in 0..calls {
            writer.write_all(request.as_bytes()).expect("write");
        }
        writer.flush().expect("flush");
    });
    let mut reader = std::io::BufReader::new(stream);
    let (mut served, mut limited) = (0u64, 0u64);
    for _ in 0..calls {
        let (status, body) = read_response(&mut reader);
        assert_eq!(status, 200, "{body}");
        if body.contains("\"code\":3001") {
            limited += 1;
        } else {
            assert!(body.contains("\"result\""), "{body}");
            served += 1;
        }
    }
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).expect("ms") + 1;
    writing.join().expect("writer");
    let allowed = u64::from(BURST) + u64::from(PER_SEC) * elapsed_ms / 1_000 + 1;
    assert!(limited > 0, "{calls} calls on one connection in {elapsed_ms} ms, none refused");
    assert!(served <= allowed, "{served} calls served in {elapsed_ms} ms; the limit allows {allowed}");
    let metric = node.metric("chorus_rpc_calls_total{method=\"chain_getHead\",outcome=\"rate_limited\"}");
    assert_eq!(metric.map(|value| value as u64), Some(limited), "refusals are counted");
    // The bucket refills: the client is served again.
    eventually("the client served again", &node, || node.rpc().head().ok());
}

/// Whether the tests run as root; otherwise says that `what` needs it and the test is skipped.
fn root(what: &str) -> bool {
    let uid = Command::new("id").arg("-u").output().expect("id runs");
    let root = String::from_utf8_lossy(&uid.stdout).trim() == "0";
    if !root {
        eprintln!("skipped: {what} needs root (CI runs as root)");
    }
    root
}

/// A tmpfs of `size_mib` mounted on `dir` for the test's life (root only, as CI runs).
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, size_mib: u64) -> SmallDisk {
        std::fs::create_dir_all(dir).expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("mount runs");
        assert!(status.success(), "mount -t tmpfs failed: {status:?}");
        SmallDisk(dir.to_path_buf())
    }

    /// Writes a file that leaves `leave` bytes free.
    fn fill(&self, leave: u64) -> std::path::PathBuf {
        let free = chorus_node::daemon::free_bytes(&self.0).expect("statvfs");
        let n_files = std::fs::read_dir(&self.0).expect("the disk's root").count();
        let path = self.0.join(format!("filler-{n_files}"));
        let file = std::fs::File::create(&path).expect("filler");
        let mut writer = std::io::BufWriter::new(file);
        let chunk = vec![0xa5u8; 1024 * 1024];
        let mut left = free.saturating_sub(leave);
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            if std::io::Write::write_all(&mut writer, &chunk[..n]).is_err() {
                break; // full: the node wrote meanwhile
            }
            left -= n as u64;
        }
        let _ = std::io::Write::flush(&mut writer);
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// An ext4 filesystem in an image file, loop-mounted with `errors=remount-ro`: its kernel
/// driver can be told to fail (`trigger_fs_error`), after which every write gets EROFS while
/// free space stays as it was, the way a failing disk is taken out of service.
struct Ext4Disk {
    image: std::path::PathBuf,
    mount: std::path::PathBuf,
}

impl Ext4Disk {
    fn make(dir: &Path, size_mib: u64) -> Ext4Disk {
        let (image, mount) = (dir.join("ext4.img"), dir.join("ext4"));
        std::fs::File::create(&image).expect("image").set_len(size_mib * 1024 * 1024).expect("size");
        let made = Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image).status().expect("mkfs.ext4 runs");
        assert!(made.success(), "mkfs.ext4: {made:?}");
        std::fs::create_dir_all(&mount).expect("mount point");
        let disk = Ext4Disk { image, mount };
        disk.mount();
        disk
    }

    fn mount(&self) {
        let status = Command::new("mount")
            .args(["-o", "loop,errors=remount-ro"])
            .arg(&self.image)
            .arg(&self.mount)
            .status()
            .expect("mount runs");
        assert!(status.success(), "mount -o loop: {status:?}");
    }

    /// The kernel's sysfs directory of this filesystem: `/sys/fs/ext4/loopN`.
    fn sysfs(&self) -> std::path::PathBuf {
        let source = Command::new("findmnt").args(["-n", "-o", "SOURCE"]).arg(&self.mount).output().expect("findmnt");
        let device = String::from_utf8_lossy(&source.stdout).trim().to_owned();
        let name = device.rsplit('/').next().expect("a device name").to_owned();
        Path::new("/sys/fs/ext4").join(name)
    }

    /// Makes the filesystem fail: the kernel remounts it read-only at once.
    fn fail(&self) {
        std::fs::write(self.sysfs().join("trigger_fs_error"), "chorus test: a failing disk")
            .expect("trigger_fs_error (ext4's fault injection)");
    }

    /// Unmounts, repairs (e2fsck) and mounts again read-write, as an operator would.
    fn repair(&self) {
        let unmounted = Command::new("umount").arg(&self.mount).status().expect("umount runs");
        assert!(unmounted.success(), "umount: {unmounted:?}");
        // Exit code 1: errors were corrected.
        let checked = Command::new("e2fsck").args(["-f", "-y"]).arg(&self.image).output().expect("e2fsck runs");
        assert!(matches!(checked.status.code(), Some(0 | 1)), "e2fsck: {checked:?}");
        self.mount();
    }
}

impl Drop for Ext4Disk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

/// A store write that fails while space remains (the disk's filesystem turned read-only): the
/// node halts on the error, says so, still answers reads, and after the operator repairs the
/// filesystem it reopens with every final block and continues.
#[test]
fn a_node_whose_store_write_fails_halts_says_why_and_continues_after_a_repair() {
    if !root("mounting a loop device") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = Ext4Disk::make(dir.path(), 512);
    let data_dir = disk.mount.join("chain");
    let args = dev_args(&["--engine", "pos", "--data-dir", data_dir.to_str().expect("utf-8")]);
    let node = start(&args, dir.path());
    let final_before = eventually("two final blocks", &node, || {
        let finalized = node.ok("chain_getFinalized", json!([]))["height"].as_u64().unwrap_or(0);
        (finalized >= 2).then_some(finalized)
    });

    disk.fail();
    let reason = eventually("the node halts on the failed write", &node, || halted(&node));
    eprintln!("halted: {reason}");
    assert!(!reason.contains("almost full"), "the space guard did not fire: {reason}");
    assert!(reason.to_lowercase().contains("read-only") || reason.contains("IO error"), "{reason}");
    assert!(node.log().contains("the node stopped importing, producing and accepting transactions"), "{}", node.log());
    assert_eq!(node.metric("chorus_halted"), Some(1.0));
    let height = node.height();
    let tx = transfer(&dev_key(1), 0, dev_key(2).address(), 5, 1);
    let refused = node.call("tx_submit", json!([tx_hex(&tx)])).expect_err("a halted node takes no transaction");
    assert_eq!(refused.0, 5001, "node unavailable: {refused:?}");
    assert_eq!(node.height(), height, "reads still answered, and nothing more stored");
    drop(node);

    disk.repair();
    let node = start(&args, dir.path());
    let finalized = node.ok("chain_getFinalized", json!([]))["height"].as_u64().expect("final");
    assert!(finalized >= final_before, "final blocks are kept: {finalized} < {final_before}");
    assert!(node.height() >= height.min(finalized), "reopened on its chain");
    let reopened = node.height();
    eventually("blocks after the repair", &node, || (node.height() > reopened + 2).then_some(()));
    assert_eq!(halted(&node), None);
}

/// The node's `halted` reason, once `node_status` gives one.
fn halted(node: &Chorusd) -> Option<String> {
    node.ok("node_status", json!([]))["halted"].as_str().map(str::to_owned)
}

/// Issue 21's full disk, after Bitcoin Core's low-disk stop: a node whose data directory's
/// filesystem runs low halts (stops writing, says why in its log, `node_status` and
/// `chorus_halted`, and keeps answering reads), refuses to start while space is short, and
/// continues where it was once space returns; a disk filled at once ends the same way, and no
/// final block is lost.
#[test]
fn a_node_low_on_disk_halts_says_why_and_continues_after_space_returns() {
    if !root("mounting a small tmpfs") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = SmallDisk::mount(&dir.path().join("disk"), 320);
    let data_dir = disk.0.join("chain");
    let args = dev_args(&["--engine", "pos", "--data-dir", data_dir.to_str().expect("utf-8")]);
    let mut node = start(&args, dir.path());
    let final_before = eventually("two final blocks", &node, || {
        let finalized = node.ok("chain_getFinalized", json!([]))["height"].as_u64().unwrap_or(0);
        (finalized >= 2).then_some(finalized)
    });

    // Below the bound (128 MiB) but far from full: the guard halts the node.
    let filler = disk.fill(64 * 1024 * 1024);
    let reason = eventually("the node halts", &node, || halted(&node));
    assert!(reason.contains("the disk is almost full"), "{reason}");
    assert!(node.log().contains("the node stopped importing, producing and accepting transactions"), "{}", node.log());
    assert_eq!(node.metric("chorus_halted"), Some(1.0));
    let height = node.height();
    std::thread::sleep(Duration::from_secs(3)); // three slots
    assert_eq!(node.height(), height, "a halted node produces nothing");
    let tx = transfer(&dev_key(1), 0, dev_key(2).address(), 5, 1);
    let refused = node.call("tx_submit", json!([tx_hex(&tx)])).expect_err("a halted node takes no transaction");
    assert_eq!(refused.0, 5001, "node unavailable: {refused:?}");
    assert!(node.terminate().is_some_and(|exit| exit.success()), "a clean stop; log:\n{}", node.log());
    drop(node);

    // Still short of space (RocksDB let go of its preallocated log on the stop, so fill again):
    // it does not start, and says why.
    let filler_again = disk.fill(64 * 1024 * 1024);
    let mut refused = Command::new(env!("CARGO_BIN_EXE_chorusd"))
        .args(&args)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("chorusd runs");
    let exit = chorus_testnet::eventually("chorusd refuses to start", WAIT, || {
        refused.try_wait().expect("wait").ok_or("still running")
    });
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut refused.stderr.take().expect("stderr"), &mut stderr).expect("stderr");
    assert!(!exit.success() && stderr.contains("the disk is almost full"), "{exit:?}: {stderr}");

    // Space returns: it continues from where it stopped.
    std::fs::remove_file(&filler).expect("remove the filler");
    std::fs::remove_file(&filler_again).expect("remove the filler");
    let mut node = start(&args, dir.path());
    assert!(node.height() >= height, "reopened on its chain");
    eventually("blocks past the halt", &node, || (node.height() > height + 2).then_some(()));
    assert_eq!(halted(&node), None);

    // Full at once: a write fails (or the guard sees it first); either way the node halts,
    // still answers, and keeps its final blocks through a restart.
    let final_full = node.ok("chain_getFinalized", json!([]))["height"].as_u64().expect("final");
    assert!(final_full >= final_before);
    let filler = disk.fill(0);
    let reason = eventually("the node halts on a full disk", &node, || halted(&node));
    assert!(reason.contains("space") || reason.contains("almost full"), "{reason}");
    assert!(node.terminate().is_some(), "it stops; log:\n{}", node.log());
    drop(node);
    std::fs::remove_file(&filler).expect("remove the filler");
    let node = start(&args, dir.path());
    let finalized = node.ok("chain_getFinalized", json!([]))["height"].as_u64().expect("final");
    assert!(finalized >= final_full, "final blocks are kept: {finalized} < {final_full}");
    let reopened = node.height();
    eventually("blocks after the full disk", &node, || (node.height() > reopened + 2).then_some(()));
}

/// A JSON-RPC error code `chorusd` documents: JSON-RPC's own or one of README's table.
fn documented_code(code: i64) -> bool {
    (-32700..=-32600).contains(&code) || chorus_rpc_types::ErrorCode::from_code(code).is_some()
}

/// Issue 21's hostile clients: every method with wrong types, wrong counts, huge, negative and
/// out-of-range numbers, long strings and named parameters, JSON nested past any parser's
/// depth, a malformed envelope, and 3,000 connections at once. Each gets a documented error
/// code or a refusal (an HTTP error, or the connection closed); the node keeps serving, and its
/// memory grows by less than what its limits allow at once (`RPC_CONNECTIONS_MAX` requests of
/// at most `RPC_REQUEST_BYTES_MAX`).
#[test]
fn hostile_rpc_clients_get_coded_errors_or_refusals_and_the_node_stays_bounded() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start(&dev_args(&["--tmp", "--engine", "pos"]), dir.path());
    eventually("a block", &node, || (node.height() >= 1).then_some(()));
    let idle_kib = node.resident_kib();

    let long = format!("[\"{}\"]", "7".repeat(100_000));
    let bad_params = [
        "[{}]",
        "[[]]",
        "[true]",
        "[null, null, null]",
        "[1.5]",
        "[-1]",
        "[-9223372036854775809]",
        "[18446744073709551616]",
        "[1e400]",
        "[1,2,3,4,5,6,7,8]",
        r#"{"named":1}"#,
        r#""a string""#,
        "7",
        long.as_str(),
    ];
    let mut n_calls = 0;
    for method in chorus_node::rpc::METHODS {
        for params in bad_params {
            let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{}","params":{params}}}"#, method.name);
            let (status, answer) = node.rpc().post(body.as_bytes()).expect("an answer");
            let answer: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
            let code = answer["error"]["code"].as_i64();
            assert!(
                status >= 400 || (status == 200 && code.is_some_and(documented_code)),
                "{} {params:.40}: HTTP {status}, {answer}",
                method.name
            );
            n_calls += 1;
        }
    }
    assert!(n_calls > 200, "{n_calls}");
    let refused = node.call("chain_getHead", json!([1])).expect_err("no parameters taken");
    assert_eq!(refused, (-32602, "chain_getHead takes no parameters, got 1".to_owned()));

    for body in [
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"chain_getBlock","params":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        ),
        r#"{"jsonrpc":"2.0","id":1,"method":123,"params":[]}"#.to_owned(),
        r#"{"jsonrpc":"1.0","id":{"nested":[1,2]},"method":"chain_getHead"}"#.to_owned(),
        "[]".to_owned(),
        "\u{0}\u{1}\u{2}".to_owned(),
    ] {
        let (status, answer) = node.rpc().post(body.as_bytes()).expect("an answer");
        let parsed: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
        let code = parsed["error"]["code"].as_i64().or_else(|| parsed[0]["error"]["code"].as_i64());
        assert!(status >= 400 || code.is_some_and(documented_code), "{body:.60}: HTTP {status}, {answer:.200}");
    }

    // 3,000 connections at once, each with a call: served, or refused.
    let addr = node.rpc().addr();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"chain_getHead","params":[]}"#;
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut streams: Vec<std::net::TcpStream> = Vec::new();
    let mut not_connected = 0;
    for _ in 0..3_000 {
        match std::net::TcpStream::connect(addr) {
            Ok(stream) => streams.push(stream),
            Err(_) => not_connected += 1,
        }
    }
    for stream in &mut streams {
        stream.set_write_timeout(Some(WAIT)).expect("timeout");
        let _ = stream.write_all(request.as_bytes());
    }
    let (mut served, mut refused) = (0, not_connected);
    for stream in &mut streams {
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        let text = String::from_utf8_lossy(&response);
        let status: u16 = text.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
        match status {
            200 if text.contains(r#""result""#) => served += 1,
            200 => {
                let code = text.split(r#""code":"#).nth(1).and_then(|rest| rest.split([',', '}']).next());
                let code = code.and_then(|code| code.trim().parse::<i64>().ok());
                assert!(code.is_some_and(documented_code), "{text:.300}");
                refused += 1;
            }
            0 | 400..=599 => refused += 1,
            other => panic!("HTTP {other}: {text:.300}"),
        }
    }
    drop(streams);
    assert_eq!(served + refused, 3_000);
    assert!(served > 0, "some of the connections were served");
    let loaded_kib = node.resident_kib();
    assert!(
        loaded_kib < idle_kib + 128 * 1024,
        "resident {} MiB after, {} MiB idle",
        loaded_kib / 1024,
        idle_kib / 1024
    );
    // Still serving.
    let height = node.height();
    eventually("blocks after the flood", &node, || (node.height() > height).then_some(()));
    eprintln!(
        "3,000 connections: {served} served, {refused} refused; resident {} -> {} MiB",
        idle_kib / 1024,
        loaded_kib / 1024
    );
}

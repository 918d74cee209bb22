//! Real `chorusd` processes on temporary data directories, driven over JSON-RPC.
#![allow(clippy::disallowed_types, reason = "tests bound their waits with the wall clock")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chorus_chain::codec;
use chorus_chain::primitives::{Amount, ChainId};
use chorus_chain::tx::{SignedTransaction, Transaction, TxKind};
use chorus_chain::{Address, SecretKey};
use chorus_node::dev::{DEV_BALANCE, DEV_CHAIN_ID, dev_key};
use serde_json::{Value, json};

/// Upper bound for anything a test waits for; polling ends as soon as it holds.
const WAIT: Duration = Duration::from_secs(90);

/// A running `chorusd`, killed when dropped.
struct Node {
    child: Child,
    rpc: SocketAddr,
    metrics: SocketAddr,
    p2p: String,
    stdout: Vec<String>,
    stderr_path: PathBuf,
}

impl Node {
    fn start(args: &[&str], log_dir: &Path) -> Node {
        let stderr_path =
            log_dir.join(format!("chorusd-{}.log", STARTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst)));
        let stderr = std::fs::File::create(&stderr_path).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_chorusd"))
            .args(args)
            .env("RUST_LOG", "info,libp2p=warn")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("chorusd starts");
        let (lines_tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            // Keep draining after start-up: a full pipe would block the node's writes.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let _ = lines_tx.send(line);
            }
        });
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        let (mut rpc, mut p2p, mut metrics) = (None, None, None);
        while rpc.is_none() || p2p.is_none() || metrics.is_none() {
            let line = lines.recv_timeout(deadline.saturating_duration_since(Instant::now())).unwrap_or_else(|_| {
                panic!(
                    "chorusd did not report its addresses; stdout: {seen:?}, log:\n{}",
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                )
            });
            if let Some(rest) = line.strip_prefix("RPC listening on http://") {
                rpc = Some(rest.split_whitespace().next().expect("address").parse().expect("socket address"));
            }
            if let Some(rest) = line.strip_prefix("p2p listening on ") {
                p2p = Some(rest.to_owned());
            }
            if let Some(rest) = line.strip_prefix("metrics at http://") {
                metrics = Some(rest.trim_end_matches("/metrics").parse().expect("socket address"));
            }
            seen.push(line);
        }
        let rpc = rpc.expect("rpc");
        Node { child, rpc, metrics: metrics.expect("metrics"), p2p: p2p.expect("p2p"), stdout: seen, stderr_path }
    }

    fn call(&self, method: &str, params: Value) -> Result<Value, (i64, String)> {
        let request = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
        let response = post(self.rpc, request.to_string().as_bytes());
        let response: Value = serde_json::from_str(&response).unwrap_or_else(|_| panic!("not JSON: {response}"));
        match response.get("error") {
            Some(error) => {
                Err((error["code"].as_i64().expect("code"), error["message"].as_str().expect("message").to_owned()))
            }
            None => Ok(response["result"].clone()),
        }
    }

    fn ok(&self, method: &str, params: Value) -> Value {
        self.call(method, params).unwrap_or_else(|error| panic!("{method}: {error:?}"))
    }

    fn height(&self) -> u64 {
        self.ok("chain_getHead", json!([]))["height"].as_u64().expect("height")
    }

    /// The value of a metric (the first sample whose line starts with `name`).
    fn metric(&self, name: &str) -> f64 {
        let mut stream = TcpStream::connect(self.metrics).expect("connect");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("write");
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        text.lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
            .unwrap_or(0.0)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    /// SIGTERM first, so a `--tmp` node deletes its directory (a SIGKILLed one cannot).
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// Stops a process with SIGTERM, waiting up to 15 s, then SIGKILL.
fn terminate(child: &mut Child) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Numbers the processes a test starts, for their log files.
static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// One HTTP/1.1 POST with `Connection: close`; returns the body.
fn post(addr: SocketAddr, body: &[u8]) -> String {
    let (status, body) = post_raw(addr, body);
    assert_eq!(status, 200, "HTTP status {status}: {body}");
    body
}

fn post_raw(addr: SocketAddr, body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("write");
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map_or(String::new(), |(_, body)| body.to_owned());
    (status, body)
}

fn eventually<T>(what: &str, node: &Node, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; log:\n{}", node.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn dev_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["dev", "--rpc", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--listen", "/ip4/127.0.0.1/tcp/0"];
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

fn balance(node: &Node, address: &Address) -> u128 {
    node.ok("state_getAccount", json!([address.to_string()]))["balance"]
        .as_str()
        .expect("balance")
        .parse()
        .expect("number")
}

#[test]
fn dev_node_produces_blocks_and_includes_a_transfer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(&dev_args(&["--tmp"]), dir.path());
    assert!(node.stdout.iter().any(|line| line.contains("state is temporary")), "{:?}", node.stdout);
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

    assert_eq!(node.ok("consensus_validators", json!([]))["engine"], "pow");
    assert!(node.metric("chorus_blocks_imported_total") >= 3.0, "mined blocks are counted");

    // A proof against the block's state root comes with the account when asked for.
    let account = node.ok("state_getAccount", json!([bob.to_string(), height]));
    assert_eq!(account["proof"]["height"], height);
    assert_eq!(account["proof"]["stateRoot"], block["stateRoot"]);
}

#[test]
fn bad_rpc_input_gets_its_documented_code_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(&dev_args(&["--tmp"]), dir.path());
    let alice = dev_key(2);
    let bob = dev_key(3).address();

    // JSON-RPC's own codes.
    let parse_error: Value = serde_json::from_str(&post(node.rpc, b"{not json")).expect("json");
    assert_eq!(parse_error["error"]["code"], -32700);
    assert_eq!(node.call("no_such_method", json!([])).expect_err("unknown").0, -32601);
    assert_eq!(node.call("tx_get", json!([1, 2, 3])).expect_err("wrong params").0, -32602);
    let (status, _) = post_raw(node.rpc, &vec![b' '; 2 * 1024 * 1024]);
    assert_eq!(status, 413, "an oversize body is refused");

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
    use jsonrpsee::core::client::SubscriptionClientT;
    use jsonrpsee::rpc_params;

    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(&dev_args(&["--tmp"]), dir.path());
    let client =
        jsonrpsee::ws_client::WsClientBuilder::default().build(format!("ws://{}", node.rpc)).await.expect("ws");
    let mut heads = client
        .subscribe::<Value, _>("chain_subscribeHeads", rpc_params![], "chain_unsubscribeHeads")
        .await
        .expect("subscribe");
    // PoW never finalizes: the subscription is accepted and stays silent.
    let _finals = client
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
}

fn run_args<'a>(genesis: &'a str, data_dir: &'a str, bootnodes: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["run", "--genesis", genesis, "--data-dir", data_dir];
    for bootnode in bootnodes {
        args.extend(["--bootnode", bootnode]);
    }
    args.extend(["--rpc", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--listen", "/ip4/127.0.0.1/tcp/0"]);
    args
}

#[test]
fn late_nodes_sync_from_zero_from_several_peers_and_follow() {
    const LENGTH: u64 = 600;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name).to_str().expect("utf-8").to_owned();
    let first_dir = path("first");
    let first = Node::start(&dev_args(&["--data-dir", &first_dir, "--block-time-ms", "20"]), dir.path());
    eventually("a chain to sync", &first, || (first.height() >= LENGTH).then_some(()));
    let genesis = path("first/dev-genesis.json");

    let second_dir = path("second");
    let second = Node::start(&run_args(&genesis, &second_dir, &[&first.p2p]), dir.path());
    let target = first.height();
    eventually("the second node caught up", &second, || (second.height() >= target).then_some(()));
    assert!(second.log().contains("syncing"), "range sync reported progress:\n{}", second.log());
    assert!(second.metric("chorus_blocks_imported_total") >= LENGTH as f64);
    assert!(second.metric("chorus_block_import_seconds_count") >= LENGTH as f64);

    // The third knows both: ranges come from each of them.
    let third_dir = path("third");
    let third = Node::start(&run_args(&genesis, &third_dir, &[&first.p2p, &second.p2p]), dir.path());
    let target = first.height();
    eventually("the third node caught up", &third, || (third.height() >= target).then_some(()));
    let served =
        |node: &Node| node.metric("chorus_p2p_sync_requests_inbound_total{kind=\"blocks\",outcome=\"delivered\"}");
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
        let mut node = Node::start(&args, dir.path());
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
    let node = Node::start(&args, dir.path());
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
        Command::new(env!("CARGO_BIN_EXE_chorusd")).args(["dev", "--tmp", "--engine", "raft"]).output().expect("runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not implemented yet"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_of_calls_and_subscriptions_are_refused_and_the_node_keeps_serving() {
    use jsonrpsee::core::client::{ClientT, SubscriptionClientT};
    use jsonrpsee::rpc_params;

    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(&dev_args(&["--tmp"]), dir.path());
    let client = jsonrpsee::ws_client::WsClientBuilder::default()
        .max_concurrent_requests(20_000)
        .build(format!("ws://{}", node.rpc))
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
    let metrics = node.metric("chorus_rpc_calls_total{method=\"chain_getHead\",outcome=\"rate_limited\"}");
    assert_eq!(metrics as usize, limited, "refusals are counted");
}

#[test]
fn sigterm_stops_the_node_cleanly_and_it_reopens_where_it_was() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("chain");
    let args = dev_args(&["--data-dir", data_dir.to_str().expect("utf-8")]);
    let mut node = Node::start(&args, dir.path());
    eventually("a few blocks", &node, || (node.height() >= 3).then_some(()));
    let status = Command::new("kill").args(["-TERM", &node.child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(exit) = node.child.try_wait().expect("wait") {
            break exit;
        }
        assert!(Instant::now() < deadline, "no exit within 15 s of SIGTERM; log:\n{}", node.log());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}; log:\n{}", node.log());
    drop(node);
    let node = Node::start(&args, dir.path());
    assert!(node.stdout.iter().any(|line| line.contains("state is kept")), "{:?}", node.stdout);
    assert!(node.height() >= 3, "reopened on its chain");
}

#[test]
fn settings_layer_flags_over_environment_over_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("chorusd.toml");
    // The file asks for a fixed port; the environment overrides it with any free one.
    std::fs::write(&config, "rpc = \"127.0.0.1:1\"\nmetrics = \"127.0.0.1:0\"\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\n")
        .expect("write");
    let mut child = Command::new(env!("CARGO_BIN_EXE_chorusd"))
        .args(["dev", "--tmp", "--config", config.to_str().expect("utf-8")])
        .env("CHORUS_RPC", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("runs");
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let rpc_line =
        stdout.lines().map_while(Result::ok).find(|line| line.starts_with("RPC listening on")).expect("rpc line");
    terminate(&mut child);
    assert!(!rpc_line.contains("127.0.0.1:1 "), "the environment overrides the file: {rpc_line}");

    // A flag overrides the environment (which, invalid, would otherwise stop start-up).
    let output = Command::new(env!("CARGO_BIN_EXE_chorusd"))
        .args(["dev", "--tmp", "--rpc", "not-an-address"])
        .env("CHORUS_RPC", "127.0.0.1:0")
        .output()
        .expect("runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--rpc"), "the flag's error names it");
}

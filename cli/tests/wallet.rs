//! `chorus` against a real `chorusd dev` node.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use chorus_testnet::{Chorusd, Launch, eventually};
use serde_json::Value;

/// A `chorusd dev --tmp` process (stopped with SIGTERM when dropped, so it deletes its state),
/// its log in `dir`.
fn dev_node(dir: &Path) -> Chorusd {
    // nextest builds every binary of the workspace into one directory.
    let chorusd = Path::new(env!("CARGO_BIN_EXE_chorus")).with_file_name("chorusd");
    Chorusd::start(&Launch::dev(chorusd, dir.join("chorusd.log"), &["--tmp"])).unwrap_or_else(|error| panic!("{error}"))
}

struct Wallet {
    keystore: PathBuf,
    rpc_url: String,
}

impl Wallet {
    fn run(&self, args: &[&str], password: Option<&str>) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_chorus"));
        command
            .args(["--rpc", &self.rpc_url, "--keystore", self.keystore.to_str().expect("utf-8")])
            .args(args)
            .env_remove("CHORUS_PASSWORD");
        if let Some(password) = password {
            command.env("CHORUS_PASSWORD", password);
        }
        command.stdin(Stdio::null()).output().expect("chorus runs")
    }

    fn ok(&self, args: &[&str], password: Option<&str>) -> String {
        let output = self.run(args, password);
        assert!(output.status.success(), "chorus {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).expect("utf-8").trim().to_owned()
    }

    fn json(&self, args: &[&str], password: Option<&str>) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all, password)).expect("--json prints JSON")
    }

    fn balance(&self, account: &str) -> u128 {
        self.ok(&["balance", account], None).parse().expect("a number")
    }
}

#[test]
fn a_new_wallet_is_funded_from_a_dev_account_and_transfers_with_wait() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = dev_node(dir.path());
    let wallet = Wallet { keystore: dir.path().join("keys"), rpc_url: node.rpc().url() };

    let created = wallet.json(&["wallet", "new", "alice"], Some("pw-alice"));
    assert!(created["address"].as_str().is_some_and(|address| address.starts_with("chorus1")));
    wallet.ok(&["wallet", "import", "dev1", "--dev", "1"], Some("pw-dev"));
    let listed = wallet.json(&["wallet", "list"], None);
    // CHORUS_JSON does what --json does.
    let output = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args(["--keystore", wallet.keystore.to_str().expect("utf-8"), "wallet", "list"])
        .env("CHORUS_JSON", "true")
        .output()
        .expect("runs");
    assert_eq!(serde_json::from_slice::<Value>(&output.stdout).expect("JSON"), listed);
    assert_eq!(listed.as_array().expect("list").len(), 2, "listing needs no password: {listed}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("keys/alice.json")).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let funded =
        wallet.json(&["transfer", "--from", "dev1", "--to", "alice", "--amount", "5000", "--wait"], Some("pw-dev"));
    assert_eq!(funded["status"], "included", "{funded}");
    assert_eq!(wallet.balance("alice"), 5_000);
    let dev1_before = wallet.balance("dev1");

    let bob = wallet.json(&["wallet", "new", "bob"], Some("pw-bob"))["address"].as_str().expect("address").to_owned();
    let sent = wallet.json(
        &["transfer", "--from", "alice", "--to", &bob, "--amount", "1200", "--fee", "3", "--wait"],
        Some("pw-alice"),
    );
    assert!(sent["height"].as_u64().is_some(), "{sent}");
    assert_eq!(wallet.balance(&bob), 1_200);
    assert_eq!(wallet.balance("alice"), 5_000 - 1_203);
    assert_eq!(wallet.balance("dev1"), dev1_before, "an unrelated account is untouched");
    let tx = wallet.json(&["tx", sent["hash"].as_str().expect("hash")], None);
    assert_eq!(tx["status"], "included");
    // The same for people: aligned labels, the block the transfer is in.
    let text = wallet.ok(&["tx", sent["hash"].as_str().expect("hash")], None);
    let expected_block = format!("block        {} {}", sent["height"], tx["block"].as_str().expect("block hash"));
    assert!(text.lines().any(|row| row == expected_block), "{text}");
    assert!(text.lines().any(|row| row.starts_with("status       included")), "{text}");
    let account = wallet.ok(&["account", "alice"], None);
    assert!(account.lines().any(|row| row == "balance  3797"), "by key name, aligned:\n{account}");
    assert!(account.lines().any(|row| row == "nonce    1 (next transaction: 1)"), "{account}");
    let status = wallet.ok(&["status"], None);
    let labels: Vec<&str> = status.lines().map(|row| row.split("  ").next().unwrap_or("")).collect();
    assert_eq!(labels, ["chain", "head", "finalized", "peer id", "peers", "sync", "mempool"], "{status}");
    assert!(status.lines().all(|row| row.get(9..11) == Some("  ")), "values start in one column:\n{status}");
    // An address in capitals (BIP-173's form for QR codes) is an address, not a key name.
    assert_eq!(wallet.balance(&bob.to_uppercase()), 1_200);
    // Without an account: every key's balance, by name, and their total.
    let all = wallet.json(&["balance"], None);
    let rows = all["accounts"].as_array().expect("accounts");
    let names: Vec<&str> = rows.iter().map(|row| row["name"].as_str().expect("name")).collect();
    assert_eq!(names, ["alice", "bob", "dev1"], "{all}");
    let dev1_now = wallet.balance("dev1");
    let each: Vec<u128> =
        rows.iter().map(|row| row["balance"].as_str().expect("balance").parse().expect("number")).collect();
    assert_eq!(each, [5_000 - 1_203, 1_200, dev1_now], "{all}");
    assert_eq!(rows[1]["address"], bob.as_str(), "{all}");
    assert_eq!(all["total"].as_str(), Some((5_000 - 1_203 + 1_200 + dev1_now).to_string().as_str()), "{all}");
    let text = wallet.ok(&["balance"], None);
    let lines: Vec<Vec<&str>> = text.lines().map(|line| line.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["NAME", "ADDRESS", "BALANCE", "HEIGHT"], "{text}");
    assert_eq!(lines[2][..3], ["bob", bob.as_str(), "1200"], "{text}");
    assert_eq!(
        lines.last().map(Vec::as_slice),
        Some(["total", all["total"].as_str().expect("total")].as_slice()),
        "{text}"
    );
    // The block for people: its header, then the transfer in words.
    let height = sent["height"].as_u64().expect("height").to_string();
    let block = wallet.ok(&["block", &height], None);
    assert!(block.starts_with(&format!("block {height} ")), "{block}");
    let line = format!("transfer 1200 to {bob}");
    assert!(block.lines().any(|row| row.contains(&line) && row.contains("fee 3")), "{block}");

    // Export prints the seed only when asked, and only with the password.
    let exported = wallet.json(&["wallet", "export", "alice"], Some("pw-alice"));
    assert_eq!(exported["seed"].as_str().map(str::len), Some(64));
}

#[test]
fn bad_input_gets_one_line_and_its_own_exit_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = dev_node(dir.path());
    let wallet = Wallet { keystore: dir.path().join("keys"), rpc_url: node.rpc().url() };
    wallet.ok(&["wallet", "import", "dev2", "--dev", "2"], Some("right"));
    let exit = |output: &Output| output.status.code().expect("exit code");

    let mistyped = "chorus1a96gzu903frf2pkr2lfjaqchzwhz44hc24pd62xnnt230068y9rslmgs64";
    let output = wallet.run(&["transfer", "--from", "dev2", "--to", mistyped, "--amount", "1"], Some("right"));
    assert_eq!(exit(&output), 3, "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stderr).contains("checksum"));
    assert_eq!(String::from_utf8_lossy(&output.stderr).lines().count(), 1);

    let output = wallet.run(&["wallet", "export", "dev2"], Some("wrong"));
    assert_eq!(exit(&output), 4);
    let output = wallet.run(&["--json", "wallet", "export", "dev2"], Some("wrong"));
    let error: Value = serde_json::from_slice(&output.stdout).expect("JSON error");
    assert_eq!(error["error"]["kind"], "wrong_password");

    let output = wallet.run(&["balance", "nobody"], None);
    assert_eq!(exit(&output), 5, "an unknown key name");
    let output = wallet.run(&["balance", "chorus1qqqq"], None);
    assert_eq!(exit(&output), 3, "a malformed address");

    let offline = Wallet { keystore: wallet.keystore.clone(), rpc_url: "http://127.0.0.1:1".to_owned() };
    let output = offline.run(&["status"], None);
    assert_eq!(exit(&output), 6);
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot reach the node"));

    let poor = "chorus1rq50dhnadshgxql7yzens6vsksx3vsmzszlzw35l7a5y3clhftdsxpt329";
    let output =
        wallet.run(&["transfer", "--from", "dev2", "--to", poor, "--amount", "999999999999999999"], Some("right"));
    assert_eq!(exit(&output), 10, "insufficient funds is refused by the node");
    assert!(String::from_utf8_lossy(&output.stderr).contains("insufficient balance"));
    let output = wallet.run(
        &["--json", "transfer", "--from", "dev2", "--to", poor, "--amount", "1", "--nonce", "0", "--wait"],
        Some("right"),
    );
    assert!(output.status.success());
    let output = wallet
        .run(&["--json", "transfer", "--from", "dev2", "--to", poor, "--amount", "1", "--nonce", "0"], Some("right"));
    assert_eq!(exit(&output), 11, "a used nonce");
    let error: Value = serde_json::from_slice(&output.stdout).expect("JSON error");
    assert_eq!(error["error"]["code"], 1003, "{error}");
}

#[test]
fn stake_unstake_delegate_vote_and_a_verified_account() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = dev_node(dir.path());
    let wallet = Wallet { keystore: dir.path().join("keys"), rpc_url: node.rpc().url() };
    wallet.ok(&["wallet", "import", "dev3", "--dev", "3"], Some("pw"));
    let address = wallet.json(&["wallet", "list"], None)[0]["address"].as_str().expect("address").to_owned();
    let account = |wallet: &Wallet| wallet.json(&["account", &address], None);

    // Two transactions back to back: the second takes the nonce after the pending first.
    let first = wallet.json(&["transfer", "--from", "dev3", "--to", "dev3", "--amount", "1"], Some("pw"));
    let second = wallet.json(&["stake", "1000", "--from", "dev3", "--wait"], Some("pw"));
    assert_ne!(first["hash"], second["hash"]);
    assert_eq!(account(&wallet)["stake"], "1000");

    wallet.json(&["delegate", "register", "--from", "dev3", "--wait"], Some("pw"));
    wallet.json(&["vote", "dev3", "--from", "dev3", "--wait"], Some("pw"));
    let state = account(&wallet);
    assert_eq!(state["votes"][0].as_str(), Some(address.as_str()), "{state}");

    let unstaked = wallet.json(&["unstake", "400", "--from", "dev3", "--wait"], Some("pw"));
    assert!(unstaked["height"].as_u64().is_some());
    let state = account(&wallet);
    assert_eq!(state["stake"], "600");
    assert_eq!(state["unbonding"][0]["amount"], "400", "{state}");
    // The unbonding period passes and the 400 return to the balance.
    let release = state["unbonding"][0]["releaseHeight"].as_u64().expect("release height");
    let balance_before: u128 = state["balance"].as_str().expect("balance").parse().expect("number");
    let released = eventually(&format!("the release at height {release}"), Duration::from_secs(90), || {
        let state = account(&wallet);
        if state["height"].as_u64().unwrap_or(0) >= release && state["unbonding"].as_array().is_some_and(Vec::is_empty)
        {
            Ok(state)
        } else {
            Err(state)
        }
    });
    let balance_after: u128 = released["balance"].as_str().expect("balance").parse().expect("number");
    // dev3 is not the coinbase, so only the release moved its balance.
    assert_eq!(balance_after, balance_before + 400, "{released}");

    let too_many: Vec<String> = (0..31).map(|_| address.clone()).collect();
    let mut args = vec!["vote", "--from", "dev3"];
    args.extend(too_many.iter().map(String::as_str));
    let output = wallet.run(&args, Some("pw"));
    assert_eq!(output.status.code(), Some(12));
    assert!(String::from_utf8_lossy(&output.stderr).contains("at most 30"));

    assert_eq!(wallet.json(&["validators"], None)["engine"], "pow");
    // Proven locally against the state root of a block six deep.
    eventually("the dev node mines to height 8", Duration::from_secs(60), || {
        let head = &wallet.json(&["status"], None)["head"];
        if head["height"].as_u64().unwrap_or(0) >= 8 { Ok(()) } else { Err(format!("head {head}")) }
    });
    let verified = wallet.json(&["account", &address, "--verify"], None);
    assert_eq!(verified["verified"], true, "{verified}");
    // A key's name stands for its address, as in `chorus balance`.
    let by_name = wallet.json(&["account", "dev3"], None);
    assert_eq!(by_name["stake"], account(&wallet)["stake"], "{by_name}");

    let completions = wallet.ok(&["completions", "bash"], None);
    assert!(completions.contains("chorus"));
}

/// A stand-in node on loopback that answers every JSON-RPC call with `result`, echoing the id.
fn fake_node(result: Value) -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream);
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let answer = serde_json::json!({ "jsonrpc": "2.0", "id": request["id"], "result": result }).to_string();
            let mut stream = reader.into_inner();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    url
}

#[test]
fn an_answer_missing_a_field_is_an_error_not_a_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A node whose account answer calls the balance `balanse`: no balance of 0 is shown.
    let account = serde_json::json!({
        "address": "chorus1rq50dhnadshgxql7yzens6vsksx3vsmzszlzw35l7a5y3clhftdsxpt329",
        "balanse": "5", "nonce": 0, "nextNonce": 0, "stake": "0", "unbonding": [], "votes": [],
        "height": 1, "stateRoot": "00".repeat(32), "proof": null,
    });
    let wallet = Wallet { keystore: dir.path().join("keys"), rpc_url: fake_node(account) };
    let output = wallet.run(&["balance", "chorus1rq50dhnadshgxql7yzens6vsksx3vsmzszlzw35l7a5y3clhftdsxpt329"], None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(6), "no usable node at that URL: {stderr}");
    assert!(output.stdout.is_empty(), "no balance printed");
    assert!(stderr.contains("state_getAccount") && stderr.contains("missing field `balance`"), "{stderr}");
    let output = wallet.run(&["--json", "status"], None);
    let error: Value = serde_json::from_slice(&output.stdout).expect("JSON error");
    assert_eq!(error["error"]["kind"], "malformed", "{error}");
    assert_eq!(output.status.code(), Some(6));
}

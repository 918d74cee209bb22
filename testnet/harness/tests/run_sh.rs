//! `testnet/run.sh` end to end, with the workspace's debug binaries (`CHORUS_BIN_DIR` skips the
//! script's release build): three PoW nodes, a transfer sent to node 2 seen by node 3, a node
//! killed and restarted, stop and start again, clean; a partition healed; four DPoS producers
//! taking turns, with blocks irreversible on every node; three Raft members with one leader,
//! a transfer final everywhere, and a new leader after the old one is killed; the Prometheus the
//! script starts, with data for every panel of `testnet/dashboard.json` that applies to the
//! engine (PoS, PoW and Raft).
#![allow(clippy::disallowed_types, reason = "tests bound their waits with the wall clock")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use chorus_testnet::{Binaries, Rpc, Wallet, eventually};
use serde_json::Value;

/// A testnet made by the script in a temporary directory.
struct Testnet {
    script: PathBuf,
    bins: Binaries,
    data: tempfile::TempDir,
}

impl Testnet {
    /// A testnet on the workspace's debug binaries in a temporary directory, and a base port
    /// free for `nodes` nodes.
    fn new(nodes: u16) -> (Testnet, u16) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../run.sh");
        let data = tempfile::Builder::new().prefix("chorus-run-sh-").tempdir().expect("tempdir");
        (Testnet { script, bins: Binaries::locate(), data }, free_base(nodes))
    }

    fn run(&self, args: &[&str]) -> Output {
        let bin_dir = self.bins.chorusd.parent().expect("bin dir");
        Command::new(&self.script)
            .args(args)
            .env("CHORUS_BIN_DIR", bin_dir)
            .env("CHORUS_TESTNET_DIR", self.data.path())
            .output()
            .expect("run.sh runs")
    }

    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "run.sh {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `chorus --json` against node `k`'s RPC port, on the keystore the script made.
    fn chorus(&self, rpc_port: u16, args: &[&str]) -> Value {
        let wallet = Wallet::new(&self.bins.chorus, &self.data.path().join("keystore"));
        let rpc = Rpc::new(([127, 0, 0, 1], rpc_port).into());
        wallet.json(Some(&rpc), args).unwrap_or_else(|error| panic!("chorus {args:?}: {error:?}"))
    }
}

impl Drop for Testnet {
    fn drop(&mut self) {
        let _ = self.run(&["stop"]);
    }
}

/// A base port whose ports (four per node, and Prometheus's) are free now; the script checks
/// again.
fn free_base(nodes: u16) -> u16 {
    let start = 20_000 + (std::process::id() % 2_000) as u16 * 10;
    (0..200u16)
        .map(|step| start.wrapping_add(step * 50) % 60_000 + 1_024)
        .find(|base| {
            std::net::TcpListener::bind(("127.0.0.1", base + 9)).is_ok()
                && (1..=nodes).all(|k| {
                    (0..4).all(|offset| std::net::TcpListener::bind(("127.0.0.1", base + 10 * k + offset)).is_ok())
                })
        })
        .expect("a free port range")
}

fn rows(status: &str) -> Vec<Vec<String>> {
    status
        .lines()
        .skip_while(|line| !line.starts_with("node "))
        .skip(1)
        .map(|line| line.split_whitespace().map(str::to_owned).collect())
        .collect()
}

#[test]
fn run_sh_starts_a_testnet_that_carries_a_transfer_and_survives_a_kill() {
    let (testnet, base) = Testnet::new(3);
    let started = testnet.ok(&["start", "--engine", "pow", "--nodes", "3", "--base-port", &base.to_string()]);
    assert!(started.contains("CHORUS_RPC_URL=http://127.0.0.1:"), "{started}");
    let table = rows(&testnet.ok(&["status"]));
    assert_eq!(table.len(), 3, "{table:?}");
    assert!(
        table.iter().all(|row| row[1] == "pow" && row[4] == "2" && row[6] == "node1"),
        "every node runs pow, sees two peers, and has a head mined by node 1 (the one miner): {table:?}"
    );

    let rpc = |k: u16| base + 10 * k + 1;
    let sent =
        testnet.chorus(rpc(2), &["transfer", "--from", "funded1", "--to", "funded2", "--amount", "77", "--wait"]);
    let hash = sent["hash"].as_str().expect("hash").to_owned();
    eventually(&format!("node 3 including {hash}"), Duration::from_secs(90), || {
        let status = testnet.chorus(rpc(3), &["tx", &hash]);
        if status["status"] == "included" { Ok(()) } else { Err(status) }
    });

    // Kill node 2 outright; restarted, it catches up with node 1.
    testnet.ok(&["kill", "2"]);
    assert_eq!(rows(&testnet.ok(&["status"]))[1][7], "-", "node 2 is down");
    testnet.ok(&["restart", "2"]);
    let target = testnet.chorus(rpc(1), &["status"])["head"]["height"].as_u64().expect("height");
    eventually(&format!("node 2 catching up to {target}"), Duration::from_secs(90), || {
        let height = testnet.chorus(rpc(2), &["status"])["head"]["height"].as_u64().expect("height");
        if height >= target { Ok(()) } else { Err(format!("node 2 at {height}")) }
    });

    // Stopped, it keeps its data and starts again on it.
    testnet.ok(&["stop"]);
    assert!(rows(&testnet.ok(&["status"])).iter().all(|row| row[7] == "-"), "all stopped");
    testnet.ok(&["start"]);
    assert!(testnet.chorus(rpc(3), &["status"])["head"]["height"].as_u64().expect("height") >= target);
    assert_eq!(testnet.chorus(rpc(3), &["balance", "funded2"])["balance"], "1000000000077");

    let refused = testnet.run(&["start", "--engine", "pbft", "--nodes", "3"]);
    assert!(!refused.status.success());
    testnet.ok(&["clean"]);
    assert!(!testnet.data.path().join("testnet.env").exists());
    let refused = testnet.run(&["start", "--engine", "pbft", "--nodes", "3"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unknown engine pbft"));
}

#[test]
fn run_sh_partition_and_heal_converge_on_one_chain() {
    let (testnet, base) = Testnet::new(3);
    testnet.ok(&["start", "--engine", "pow", "--nodes", "3", "--base-port", &base.to_string(), "--miners", "3"]);
    let rpc = |k: u16| base + 10 * k + 1;
    let head = |k: u16| testnet.chorus(rpc(k), &["status"])["head"].clone();
    let peers = |k: u16| testnet.chorus(rpc(k), &["status"])["peers"].as_u64().expect("peers");

    testnet.ok(&["partition", "1", "2,3"]);
    // One bound for the partition to take and both sides to grow on it.
    let partitioned = Instant::now();
    let partition_wait = Duration::from_secs(90);
    eventually("the partition to take", partition_wait, || match (peers(1), peers(2)) {
        (0, 1) => Ok(()),
        (one, two) => Err(format!("node 1 has {one} peers, node 2 has {two}")),
    });
    // A node restarted in a partition stays on its side (node 1 is alone on its own): checked
    // all the while both sides mine on, each growing a few blocks of its own.
    testnet.ok(&["restart", "1"]);
    let height = |k: u16| head(k)["height"].as_u64().expect("height");
    let split = height(1).max(height(2));
    eventually("both sides mining on", partition_wait.saturating_sub(partitioned.elapsed()), || {
        let heights = (height(1), height(2));
        assert_eq!(peers(1), 0, "the restarted node 1 rejoined the other side");
        if heights.0 >= split + 3 && heights.1 >= split + 3 {
            Ok(())
        } else {
            Err(format!("heights {heights:?}, split at {split}"))
        }
    });

    testnet.ok(&["heal"]);
    // Converged: every node has the same block at a height all of them have passed.
    eventually("convergence after the heal", Duration::from_secs(120), || {
        let heights: Vec<u64> = (1..=3).map(height).collect();
        let common = heights.iter().min().copied().unwrap_or(0).saturating_sub(1);
        let hashes: Vec<Value> =
            (1..=3).map(|k| testnet.chorus(rpc(k), &["block", &common.to_string()])["hash"].clone()).collect();
        if common > split + 3 && hashes.iter().all(|hash| *hash == hashes[0]) && (1..=3).all(|k| peers(k) == 2) {
            // The same block hash commits to the same state root: every account agrees.
            Ok(())
        } else {
            Err(format!("heights {heights:?}, hashes at {common}: {hashes:?}"))
        }
    });
}

#[test]
fn run_sh_starts_dpos_producers_that_take_turns_and_make_blocks_irreversible() {
    let (testnet, base) = Testnet::new(4);
    testnet.ok(&["start", "--engine", "dpos", "--nodes", "4", "--base-port", &base.to_string()]);
    // Status columns: node engine head finalized peers syncing proposer pid rpc. Every node's
    // irreversible block moves up, and the heads' producers rotate among the four.
    let mut producers = std::collections::BTreeSet::new();
    eventually("irreversible blocks everywhere and every node producing", Duration::from_secs(90), || {
        let table = rows(&testnet.ok(&["status"]));
        assert_eq!(table.len(), 4, "{table:?}");
        assert!(table.iter().all(|row| row[1] == "dpos"), "{table:?}");
        producers.extend(table.iter().map(|row| row[6].clone()).filter(|producer| producer.starts_with("node")));
        let irreversible = table.iter().all(|row| row[3].parse::<u64>().is_ok_and(|height| height >= 3));
        if irreversible && producers.len() == 4 { Ok(()) } else { Err(format!("{table:?}, producers {producers:?}")) }
    });
}

#[test]
fn run_sh_starts_raft_members_with_one_leader_and_a_new_one_after_a_kill() {
    let (testnet, base) = Testnet::new(3);
    testnet.ok(&["start", "--engine", "raft", "--nodes", "3", "--base-port", &base.to_string()]);
    let rpc = |k: u16| base + 10 * k + 1;
    // Status columns: node engine head finalized peers syncing proposer pid rpc role.
    let leader = |live: &[u16]| {
        eventually("one leader, the others following", Duration::from_secs(90), || {
            let table = rows(&testnet.ok(&["status"]));
            assert!(table.iter().all(|row| row[1] == "raft" || row[1] == "-"), "{table:?}");
            let roles: Vec<&str> = live.iter().map(|k| table[usize::from(*k) - 1][9].as_str()).collect();
            match roles.iter().filter(|role| **role == "leader").count() {
                1 if roles.iter().all(|role| *role == "leader" || *role == "follower") => {
                    Ok(live[roles.iter().position(|role| *role == "leader").unwrap_or(0)])
                }
                _ => Err(format!("{table:?}")),
            }
        })
    };
    let first = leader(&[1, 2, 3]);
    let follower = if first == 1 { 2 } else { 1 };
    let sent = testnet.chorus(rpc(follower), &["transfer", "--from", "funded1", "--to", "funded2", "--amount", "5"]);
    let hash = sent["hash"].as_str().expect("hash").to_owned();
    eventually("the transfer final on every member", Duration::from_secs(90), || {
        let statuses: Vec<Value> = (1..=3).map(|k| testnet.chorus(rpc(k), &["tx", &hash])["status"].clone()).collect();
        if statuses.iter().all(|status| status == "final") { Ok(()) } else { Err(format!("{statuses:?}")) }
    });
    let table = rows(&testnet.ok(&["status"]));
    assert!(table.iter().all(|row| row[2] == row[3] && row[4] == "2"), "heads are final, all connected: {table:?}");

    testnet.ok(&["kill", &first.to_string()]);
    let live: Vec<u16> = (1..=3).filter(|k| *k != first).collect();
    let second = leader(&live);
    assert_ne!(second, first);
    let sent = testnet.chorus(rpc(second), &["transfer", "--from", "funded2", "--to", "funded1", "--amount", "3"]);
    let hash = sent["hash"].as_str().expect("hash").to_owned();
    eventually("the second transfer final on the two left", Duration::from_secs(90), || {
        let statuses: Vec<Value> =
            live.iter().map(|k| testnet.chorus(rpc(*k), &["tx", &hash])["status"].clone()).collect();
        if statuses.iter().all(|status| status == "final") { Ok(()) } else { Err(format!("{statuses:?}")) }
    });
}

/// One panel of the dashboard: its row, title and PromQL expressions.
#[derive(Debug)]
struct Panel {
    row: String,
    title: String,
    exprs: Vec<String>,
}

/// Every panel of `testnet/dashboard.json`, in order, each with the title of the row above it.
fn dashboard() -> Vec<Panel> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboard.json");
    let dashboard: Value = serde_json::from_slice(&std::fs::read(&path).expect("the dashboard")).expect("JSON");
    let mut row = String::new();
    let mut panels = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().expect("a title").to_owned();
        if panel["type"] == "row" {
            row = title;
            continue;
        }
        let exprs: Vec<String> = panel["targets"]
            .as_array()
            .expect("targets")
            .iter()
            .map(|target| target["expr"].as_str().expect("an expression").to_owned())
            .collect();
        assert!(!exprs.is_empty(), "panel {title} queries nothing");
        assert_eq!(panel["datasource"]["uid"], "${DS_PROMETHEUS}", "panel {title} uses the imported data source");
        panels.push(Panel { row: row.clone(), title, exprs });
    }
    panels
}

/// Whether the dashboard's row `row` is about `engine`: its engine rows name engines, the
/// others apply to all.
fn row_applies(row: &str, engine: &str) -> bool {
    match row {
        "PoW" => engine == "pow",
        "Raft" => engine == "raft",
        _ if row.starts_with("Slot engines") => engine == "pos" || engine == "dpos",
        _ => true,
    }
}

/// An instant query's samples (labels and value) from the Prometheus on `port`, with the
/// dashboard's node variable set to every node; `NaN` samples (a quantile of no observations)
/// are no data.
fn query(port: u16, expr: &str) -> Result<Vec<(Value, f64)>, String> {
    let expr = expr.replace("$node", ".+");
    let mut reply = ureq::get(&format!("http://127.0.0.1:{port}/api/v1/query"))
        .query("query", &expr)
        .call()
        .map_err(|error| format!("{expr}: {error}"))?;
    let reply: Value = reply.body_mut().read_json().map_err(|error| format!("{expr}: {error}"))?;
    if reply["status"] != "success" {
        return Err(format!("{expr}: {reply}"));
    }
    Ok(reply["data"]["result"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|sample| {
            let value = sample["value"][1].as_str()?.parse::<f64>().ok().filter(|value| !value.is_nan())?;
            Some((sample["metric"].clone(), value))
        })
        .collect())
}

/// Starts `nodes` nodes of `engine` with `run.sh start --prometheus`, and sends a transfer with
/// `--wait` (Raft makes blocks only for transactions) between looks until every expression of
/// every panel that applies to the engine has data; `before` runs once the testnet is up.
/// Returns the testnet and Prometheus's port, for the engine's own checks.
fn every_panel_has_data(engine: &str, nodes: u16, before: impl FnOnce(&Testnet)) -> (Testnet, u16) {
    let (testnet, base) = Testnet::new(nodes);
    let started = testnet.ok(&[
        "start",
        "--engine",
        engine,
        "--nodes",
        &nodes.to_string(),
        "--base-port",
        &base.to_string(),
        "--prometheus",
    ]);
    let port = base + 9;
    assert!(started.contains(&format!("prometheus scrapes the nodes at http://127.0.0.1:{port}")), "{started}");
    assert!(testnet.ok(&["status"]).contains(&format!("prometheus: http://127.0.0.1:{port} (pid ")));
    before(&testnet);
    let panels: Vec<Panel> = dashboard().into_iter().filter(|panel| row_applies(&panel.row, engine)).collect();
    let mut sent = 0u32;
    eventually(&format!("data for every {engine} panel"), Duration::from_secs(180), || {
        testnet.chorus(base + 11, &["transfer", "--from", "funded1", "--to", "funded2", "--amount", "1", "--wait"]);
        sent += 1;
        let empty: Vec<String> = panels
            .iter()
            .flat_map(|panel| panel.exprs.iter().map(move |expr| (panel, expr)))
            .filter(|(_, expr)| !query(port, expr).is_ok_and(|samples| !samples.is_empty()))
            .map(|(panel, expr)| format!("{} / {}: {expr}", panel.row, panel.title))
            .collect();
        if empty.is_empty() { Ok(()) } else { Err(format!("after {sent} transfers, no data for {empty:#?}")) }
    });
    (testnet, port)
}

/// The largest value of `expr` over its samples.
fn max_of(port: u16, expr: &str) -> f64 {
    let samples = query(port, expr).unwrap_or_else(|error| panic!("{error}"));
    samples.iter().map(|(_, value)| *value).fold(f64::NAN, f64::max)
}

/// Waits (bounded) until the largest value of `expr` passes `holds`: rates and recent values
/// follow the scrapes, and a slow scrape of a busy node can leave a window short of samples.
fn until(port: u16, what: &str, expr: &str, holds: impl Fn(f64) -> bool) {
    eventually(what, Duration::from_secs(90), || {
        let value = max_of(port, expr);
        if holds(value) { Ok(()) } else { Err(format!("{expr} = {value}")) }
    });
}

#[test]
fn run_sh_prometheus_has_data_for_every_pos_panel_and_names_the_killed_validator_s_missed_slots() {
    // Four validators: with one killed, the other three hold more than two thirds of the
    // stake and keep finalizing, while the dead one's slots go empty.
    let (testnet, port) = every_panel_has_data("pos", 4, |testnet| {
        testnet.ok(&["kill", "4"]);
    });
    until(port, "blocks become final", "chorus_finalized_height", |height| height >= 1.0);
    until(port, "votes arrive", "rate(chorus_votes_received_total[1m])", |rate| rate > 0.0);
    until(port, "three of four nodes up", r#"sum(up{job="chorus"})"#, |up| up == 3.0);
    let dead = std::fs::read_to_string(testnet.data.path().join("node4/address")).expect("node 4's address");
    eventually("node 4's missed slots named", Duration::from_secs(90), || {
        let producers: Vec<Value> = query(port, "max by (producer) (chorus_producer_missed_slots)")?
            .into_iter()
            .map(|(labels, _)| labels["producer"].clone())
            .collect();
        if producers.contains(&Value::from(dead.trim())) { Ok(()) } else { Err(format!("{dead}: {producers:?}")) }
    });
}

#[test]
fn run_sh_prometheus_has_data_for_every_pow_panel() {
    let (testnet, port) = every_panel_has_data("pow", 2, |_| {});
    until(port, "a difficulty", "chorus_pow_difficulty", |difficulty| difficulty >= 1.0);
    until(port, "node 1 mines", r#"rate(chorus_pow_hashes_total{node="1"}[1m])"#, |rate| rate > 0.0);
    assert_eq!(max_of(port, r#"chorus_pow_hashes_total{node="2"}"#), 0.0, "node 2 does not");

    // Prometheus stops and starts with the testnet, on the samples it had.
    let before = max_of(port, "max_over_time(chorus_head_height[1h])");
    testnet.ok(&["stop"]);
    assert!(testnet.ok(&["status"]).contains("(stopped)"));
    assert!(query(port, "up").is_err(), "prometheus stopped");
    testnet.ok(&["start"]);
    assert!(testnet.ok(&["status"]).contains(&format!("prometheus: http://127.0.0.1:{port} (pid ")));
    until(port, "the samples before the stop kept", "max_over_time(chorus_head_height[1h])", |head| head >= before);
}

#[test]
fn run_sh_prometheus_has_data_for_every_raft_panel() {
    let (_testnet, port) = every_panel_has_data("raft", 3, |_| {});
    eventually("one leader known to all three", Duration::from_secs(90), || {
        let leaders = query(port, "chorus_raft_leader")?;
        let agreed = leaders.len() == 3 && leaders.iter().all(|(_, leader)| *leader == leaders[0].1 && *leader >= 1.0);
        if agreed { Ok(()) } else { Err(format!("{leaders:?}")) }
    });
    let p99 = "histogram_quantile(0.99, sum by (le) (rate(chorus_raft_commit_seconds_bucket[1m])))";
    until(port, "a commit latency", p99, |seconds| seconds > 0.0);
}

//! One `chorusd` process: started with any arguments, its addresses read from what it prints,
//! its log kept in a file, stopped or signalled on demand, and stopped with SIGTERM when dropped.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::rpc::Rpc;

/// How long a start may take to print its addresses, and a SIGTERM to end the process.
pub const START_WAIT: Duration = Duration::from_secs(90);
pub const STOP_WAIT: Duration = Duration::from_secs(15);

/// Standard output lines kept per process (chorusd prints a few announcements, not its log).
const STDOUT_LINES_MAX: usize = 1_000;

/// What to start: the binary, its arguments and environment, and where its log (stderr) goes.
#[derive(Debug, Clone)]
pub struct Launch {
    pub bin: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    pub log: PathBuf,
}

impl Launch {
    pub fn new(bin: impl Into<PathBuf>, log: impl Into<PathBuf>) -> Launch {
        Launch { bin: bin.into(), args: Vec::new(), env: Vec::new(), log: log.into() }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Launch {
        self.args.push(arg.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Launch {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Launch {
        self.env.push((key.into(), value.into()));
        self
    }

    /// `chorusd dev` on free loopback ports, plus `extra` (e.g. `--tmp` or `--data-dir DIR`).
    pub fn dev(bin: impl Into<PathBuf>, log: impl Into<PathBuf>, extra: &[&str]) -> Launch {
        Launch::new(bin, log).arg("dev").args(loopback_ports()).args(extra.iter().copied())
    }
}

/// `--rpc`, `--metrics`, `--explorer` and `--listen` on loopback ports the system picks.
pub fn loopback_ports() -> [&'static str; 8] {
    [
        "--rpc",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--explorer",
        "127.0.0.1:0",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
    ]
}

/// Why a process did not come up.
#[derive(Debug)]
pub struct StartError {
    pub message: String,
    pub stdout: Vec<String>,
    pub log: String,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; stdout: {:?}; log:\n{}", self.message, self.stdout, self.log)
    }
}

impl std::error::Error for StartError {}

/// A running `chorusd`. Dropping it stops it with SIGTERM (SIGKILL after [`STOP_WAIT`]), so a
/// `--tmp` node deletes its directory.
#[derive(Debug)]
pub struct Chorusd {
    /// Behind a lock so `exited` can reap through `&self` (checks look at shared testnets).
    child: Mutex<Child>,
    pid: u32,
    rpc: Rpc,
    metrics: SocketAddr,
    /// The explorer page's address, if it serves one.
    explorer: Option<SocketAddr>,
    p2p: String,
    stdout: Arc<Mutex<Vec<String>>>,
    log: PathBuf,
}

impl Chorusd {
    /// Starts the process and waits until it has printed its p2p, RPC and metrics addresses.
    pub fn start(launch: &Launch) -> Result<Chorusd, StartError> {
        let fail = |message: String, stdout: Vec<String>| StartError {
            message,
            stdout,
            log: std::fs::read_to_string(&launch.log).unwrap_or_default(),
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&launch.log)
            .map_err(|error| fail(format!("cannot open log {}: {error}", launch.log.display()), Vec::new()))?;
        let mut command = Command::new(&launch.bin);
        command.args(&launch.args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log);
        if !launch.env.iter().any(|(key, _)| key == "RUST_LOG") {
            command.env("RUST_LOG", "info,libp2p=warn");
        }
        command.envs(launch.env.iter().map(|(key, value)| (key, value)));
        let mut child = command
            .spawn()
            .map_err(|error| fail(format!("cannot run {}: {error}", launch.bin.display()), Vec::new()))?;

        // Drain stdout for the process's whole life: a full pipe would block the node's writes.
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let (lines_tx, lines) = mpsc::channel();
        let pipe = child.stdout.take().expect("invariant: stdout is piped");
        let kept = Arc::clone(&stdout);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { return };
                if let Ok(mut kept) = kept.lock()
                    && kept.len() < STDOUT_LINES_MAX
                {
                    kept.push(line.clone());
                }
                let _ = lines_tx.send(line);
            }
        });

        let deadline = Instant::now() + START_WAIT;
        let (mut rpc, mut p2p, mut metrics, mut admin_token, mut explorer) = (None, None, None, None, None);
        let seen = || stdout.lock().map(|lines| lines.clone()).unwrap_or_default();
        while rpc.is_none() || p2p.is_none() || metrics.is_none() {
            let line = match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    let exit = child.wait().ok();
                    return Err(fail(format!("chorusd did not print its addresses (exit: {exit:?})"), seen()));
                }
            };
            if let Some(path) = line.strip_prefix("RPC admin token in ") {
                // Written before the line is printed; read once, as it is new at each start.
                match std::fs::read_to_string(path) {
                    Ok(token) => admin_token = Some(token),
                    Err(error) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(fail(format!("cannot read the admin token {path}: {error}"), seen()));
                    }
                }
            } else if let Some(rest) = line.strip_prefix("RPC listening on http://") {
                rpc = rest.split_whitespace().next().and_then(|addr| addr.parse::<SocketAddr>().ok());
            } else if let Some(rest) = line.strip_prefix("p2p listening on ") {
                p2p = Some(rest.to_owned());
            } else if let Some(rest) = line.strip_prefix("metrics at http://") {
                metrics = rest.trim_end_matches("/metrics").parse::<SocketAddr>().ok();
            } else if let Some(rest) = line.strip_prefix("explorer at http://") {
                // Printed before the metrics line, so it is in by the end of the loop.
                explorer = rest.trim_end_matches('/').parse::<SocketAddr>().ok();
            }
        }
        let mut rpc = Rpc::new(rpc.expect("invariant: loop ends with it"));
        if let Some(token) = admin_token {
            rpc = rpc.with_admin_token(&token);
        }
        Ok(Chorusd {
            pid: child.id(),
            child: Mutex::new(child),
            rpc,
            metrics: metrics.expect("invariant: loop ends with it"),
            explorer,
            p2p: p2p.expect("invariant: loop ends with it"),
            stdout,
            log: launch.log.clone(),
        })
    }

    pub fn rpc(&self) -> &Rpc {
        &self.rpc
    }

    /// The first address it listens on for peers, with its peer id (`/ip4/.../tcp/N/p2p/...`).
    pub fn p2p(&self) -> &str {
        &self.p2p
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics
    }

    /// The explorer page's address; `None` with `--explorer off`.
    pub fn explorer_addr(&self) -> Option<SocketAddr> {
        self.explorer
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its resident memory (`VmRSS` in `/proc/PID/status`), in KiB.
    pub fn resident_kib(&self) -> u64 {
        resident_kib(self.pid)
    }

    /// What it printed on standard output so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().map(|lines| lines.clone()).unwrap_or_default()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Its log (standard error) so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The value of the first sample whose line starts with `name` (a metric name, optionally
    /// with its labels), or None when the node does not export it.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics_text()?
            .lines()
            .find(|line| line.strip_prefix(name).is_some_and(|rest| rest.starts_with([' ', '{'])))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
    }

    /// The metrics endpoint's whole answer (headers and body), or None if it does not answer.
    pub fn metrics_text(&self) -> Option<String> {
        let mut stream = TcpStream::connect(self.metrics).ok()?;
        stream.set_read_timeout(Some(crate::rpc::CALL_TIMEOUT)).ok()?;
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: chorusd\r\nConnection: close\r\n\r\n").ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        Some(text)
    }

    /// Its exit status once it has exited (reaping it), None while it runs.
    pub fn exited(&self) -> Option<ExitStatus> {
        self.child.lock().ok()?.try_wait().ok().flatten()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill").args([&format!("-{name}"), &self.pid.to_string()]).status();
        assert!(status.is_ok_and(|status| status.success()), "kill -{name} {} failed", self.pid);
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        if let Ok(child) = self.child.get_mut()
            && child.try_wait().ok().flatten().is_none()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the process stays, answering nothing, until [`Chorusd::resume`].
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// SIGCONT.
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// SIGTERM (after a SIGCONT, in case it was paused) and wait up to [`STOP_WAIT`] for the
    /// exit; SIGKILL after that. Returns the exit status, None if it had to be killed.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        if let Some(exit) = self.exited() {
            return Some(exit);
        }
        let _ = Command::new("kill").args(["-CONT", &self.pid.to_string()]).status();
        let _ = Command::new("kill").args(["-TERM", &self.pid.to_string()]).status();
        let deadline = Instant::now() + STOP_WAIT;
        while Instant::now() < deadline {
            if let Some(exit) = self.exited() {
                return Some(exit);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        None
    }
}

impl Drop for Chorusd {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// A process's resident memory (`VmRSS` in `/proc/PID/status`), in KiB; 0 once it is gone.
pub fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

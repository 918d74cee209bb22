//! A transaction load, like CometBFT's end-to-end runner's: signed transfers sent at a steady
//! rate from a background thread while a test perturbs the testnet.
//!
//! Each route is one funded account sending through one node, so the account's nonces are
//! known without asking: the load takes the account's `nextNonce` once and counts from there.
//! A refusal or an unreachable node is recorded, not retried, and the nonce is not consumed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chorus_chain::primitives::{Amount, ChainId, Hash};
use chorus_chain::tx::{Transaction, TxKind};
use chorus_chain::{Address, SecretKey};

use crate::rpc::{CallError, Rpc};

/// What each transfer carries: one unit to the sink, at this fee.
pub const LOAD_AMOUNT: u128 = 1;
pub const LOAD_FEE: u128 = 1;

/// One sender and the node it sends through.
#[derive(Debug, Clone)]
pub struct Route {
    pub key: SecretKey,
    pub node: usize,
    pub rpc: Rpc,
}

/// What a load did once stopped.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Hashes of the transfers a node accepted, in the order they were sent.
    pub accepted: Vec<Hash>,
    /// Node and error of each transfer that was not accepted.
    pub refused: Vec<(usize, CallError)>,
}

/// A running load; [`Load::stop`] ends it and reports.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<LoadReport>>,
}

impl Load {
    /// Sends `per_second` transfers in all, taking the routes in turn, each to `sink`.
    pub fn start(chain_id: ChainId, routes: Vec<Route>, sink: Address, per_second: u32) -> Load {
        assert!(!routes.is_empty() && per_second > 0, "a load needs a route and a rate");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut report = LoadReport::default();
            let mut nonces: Vec<Option<u64>> = vec![None; routes.len()];
            let interval = Duration::from_secs(1) / per_second;
            let mut next_send = Instant::now();
            for turn in (0..routes.len()).cycle() {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(next_send.saturating_duration_since(Instant::now()));
                next_send += interval;
                let route = &routes[turn];
                let nonce = match nonces[turn] {
                    Some(nonce) => nonce,
                    None => match route.rpc.account(&route.key.address()) {
                        Ok(account) => account.next_nonce,
                        Err(error) => {
                            report.refused.push((route.node, error));
                            continue;
                        }
                    },
                };
                let tx = Transaction {
                    chain_id: chain_id.clone(),
                    sender: route.key.address(),
                    nonce,
                    fee: Amount::new(LOAD_FEE),
                    kind: TxKind::Transfer { to: sink, amount: Amount::new(LOAD_AMOUNT) },
                }
                .sign(&route.key);
                match route.rpc.submit(&tx) {
                    Ok(hash) => {
                        report.accepted.push(hash);
                        nonces[turn] = Some(nonce + 1);
                    }
                    Err(error) => {
                        report.refused.push((route.node, error));
                        nonces[turn] = None;
                    }
                }
            }
            report
        });
        Load { stop, thread: Some(thread) }
    }

    /// Stops sending and returns what was sent.
    pub fn stop(mut self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().expect("invariant: joined only here").join().expect("the load thread does not panic")
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

//! Gossiped transactions are checked off the core task: decoding, their own rules and their
//! signatures, in batches over all cores ([`chorus_node_core::check_gossip_txs`]). The core
//! then only admits them (its mempool rules need the chain), so a burst of transactions from
//! peers costs it no signature checks and never holds up blocks and votes behind them.
//!
//! Gossip messages of transactions wait in a queue of at most
//! `limits::GOSSIP_TX_BATCHES_CHECKING_MAX`; one that finds it full is dropped unchecked
//! (gossip is told to ignore it: a peer that relays a lot is not at fault for it) and counted.
//! The checking task takes up to `limits::GOSSIP_TX_BATCHES_CHECKED_AT_ONCE` waiting messages
//! at a time, so the batch grows with the load. Each transaction arrives from every peer that
//! relays it; its signatures are checked the first time only.

use chorus_chain::limits;
use chorus_chain::primitives::ChainId;
use chorus_node_core::{CheckedTxs, RecentHashes, check_gossip_txs};
use chorus_p2p as p2p;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

use crate::daemon::Input;

/// A gossip message of transactions as it arrived: its id, who relayed it, its bytes.
pub type Arrived = (p2p::MessageId, p2p::PeerId, Vec<u8>);

/// The checks' results by message, in arrival order, for the core.
pub type Checked = Vec<(p2p::MessageId, p2p::PeerId, CheckedTxs)>;

/// Where the core hands gossiped transactions to be checked.
#[derive(Debug, Clone)]
pub struct TxChecker {
    queue: mpsc::Sender<Arrived>,
    dropped: Counter,
}

impl TxChecker {
    /// Starts the checking task: it sends each batch's results to the core as
    /// [`Input::CheckedTxs`], and ends when the core's inputs close or every `TxChecker` is
    /// dropped.
    pub fn start(chain_id: ChainId, inputs: mpsc::Sender<Input>, dropped: Counter) -> TxChecker {
        let (queue, mut waiting) = mpsc::channel::<Arrived>(limits::GOSSIP_TX_BATCHES_CHECKING_MAX as usize);
        tokio::spawn(async move {
            // The transactions whose signatures passed, the latest few.
            let mut verified = RecentHashes::new(limits::GOSSIP_TXS_VERIFIED_REMEMBERED_MAX);
            while let Some(first) = waiting.recv().await {
                let mut batch = vec![first];
                while batch.len() < limits::GOSSIP_TX_BATCHES_CHECKED_AT_ONCE as usize
                    && let Ok(next) = waiting.try_recv()
                {
                    batch.push(next);
                }
                let chain_id = chain_id.clone();
                let checked = tokio::task::spawn_blocking(move || {
                    let frames: Vec<&[u8]> = batch.iter().map(|(_, _, data)| data.as_slice()).collect();
                    let results = check_gossip_txs(&frames, &chain_id, &|hash| verified.contains(hash));
                    let checked: Checked =
                        batch.into_iter().zip(results).map(|((id, from, _), checked)| (id, from, checked)).collect();
                    (checked, verified)
                })
                .await;
                let Ok((checked, remembered)) = checked else { return };
                verified = remembered;
                for (_, _, result) in &checked {
                    if let CheckedTxs::Decoded(txs) = result {
                        for tx in txs.iter().flatten() {
                            verified.insert(0, tx.tx().hash());
                        }
                    }
                }
                if inputs.send(Input::CheckedTxs(checked)).await.is_err() {
                    return;
                }
            }
        });
        TxChecker { queue, dropped }
    }

    /// Queues a gossip message of transactions to be checked; `false` when the queue is full
    /// and it was dropped (counted).
    pub fn check(&self, arrived: Arrived) -> bool {
        let queued = self.queue.try_send(arrived).is_ok();
        if !queued {
            self.dropped.inc();
        }
        queued
    }
}

//! The PoW miner threads: what `chorusd` runs for [`Io::start_mining`](crate::Io::start_mining).
//!
//! Each search gets its own stop flag; thread `i` of `n` tries nonces `start + i`, `start + i +
//! n`, ... in batches, looking at the flag every `STOP_POLL_NONCES` nonces (about 100 us), so a
//! better head stops every thread within a batch. A find is sent on the channel given at
//! construction; the node loop hands it to the driver as a mined block. Threads add the nonces
//! they tried to one count per batch ([`ThreadMiner::hashes`], the hash-rate metric). This is the
//! only module of the crate that spawns threads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::thread::JoinHandle;

use chorus_chain::block::Block;
use chorus_consensus::pow::mining::{Grinder, STOP_POLL_NONCES, with_nonce};

#[derive(Debug)]
struct Search {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

#[derive(Debug)]
pub struct ThreadMiner {
    n_threads: u64,
    found: SyncSender<Arc<Block>>,
    search: Option<Search>,
    /// Where the next search starts, so successive templates do not retry the same nonces.
    next_start: u64,
    /// Nonces tried since construction, by every search.
    hashes: Arc<AtomicU64>,
}

impl ThreadMiner {
    /// A miner with `n_threads` threads (at least one) reporting finds on `found`.
    pub fn new(n_threads: u32, found: SyncSender<Arc<Block>>, start: u64) -> ThreadMiner {
        ThreadMiner {
            n_threads: u64::from(n_threads.max(1)),
            found,
            search: None,
            next_start: start,
            hashes: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Starts searching `template` (stopping the current search first). A template without a PoW
    /// seal is not mined.
    pub fn start(&mut self, template: Arc<Block>) {
        self.stop();
        let Ok(grinder) = Grinder::new(&template.header) else { return };
        let stop = Arc::new(AtomicBool::new(false));
        let start = self.next_start;
        self.next_start = self.next_start.wrapping_add(1 << 40);
        let threads = (0..self.n_threads)
            .map(|index| {
                let mut grinder = grinder.clone();
                let stop = Arc::clone(&stop);
                let template = Arc::clone(&template);
                let found = self.found.clone();
                let hashes = Arc::clone(&self.hashes);
                let stride = self.n_threads;
                std::thread::Builder::new()
                    .name(format!("miner-{index}"))
                    .spawn(move || {
                        let mut nonce = start.wrapping_add(index);
                        while !stop.load(Ordering::Relaxed) {
                            for tried in 1..=STOP_POLL_NONCES {
                                if chorus_consensus::pow::difficulty::meets_target(
                                    &grinder.hash(nonce),
                                    grinder.target(),
                                ) {
                                    hashes.fetch_add(tried, Ordering::Relaxed);
                                    stop.store(true, Ordering::Relaxed);
                                    let header = with_nonce(&template.header, nonce);
                                    let block = Block { header, body: template.body.clone() };
                                    // The node may have moved on; a full or closed channel only
                                    // loses a find that is stale anyway.
                                    let _ = found.try_send(Arc::new(block));
                                    return;
                                }
                                nonce = nonce.wrapping_add(stride);
                            }
                            hashes.fetch_add(STOP_POLL_NONCES, Ordering::Relaxed);
                        }
                    })
                    .expect("invariant: the OS can start a miner thread")
            })
            .collect();
        self.search = Some(Search { stop, threads });
    }

    /// Stops the current search and waits until every thread has stopped.
    pub fn stop(&mut self) {
        if let Some(search) = self.search.take() {
            search.stop.store(true, Ordering::Relaxed);
            for thread in search.threads {
                let _ = thread.join();
            }
        }
    }

    /// Nonces tried since the miner was made (a thread adds its count at the end of each batch
    /// and at a find).
    pub fn hashes(&self) -> u64 {
        self.hashes.load(Ordering::Relaxed)
    }

    pub fn is_mining(&self) -> bool {
        self.search.as_ref().is_some_and(|search| !search.stop.load(Ordering::Relaxed))
    }
}

impl Drop for ThreadMiner {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use chorus_chain::header::{Header, Seal};
    use chorus_chain::primitives::Hash;
    use chorus_consensus::pow::difficulty::meets_target;

    use super::*;

    fn template(target: Hash) -> Arc<Block> {
        let genesis = chorus_chain::state::genesis_block(&chorus_chain::testing::genesis(1, 1), Hash::ZERO);
        let header = Header { seal: Seal::Pow { target, nonce: 0 }, ..genesis.header };
        Arc::new(Block { header, body: Default::default() })
    }

    #[test]
    fn finds_a_valid_nonce_and_stops_on_request() {
        let (sender, receiver) = mpsc::sync_channel(4);
        let mut miner = ThreadMiner::new(2, sender, 0);
        let mut target = [0xff; 32];
        target[0] = 0x00;
        target[1] = 0x0f; // 1 in 4,096
        miner.start(template(Hash(target)));
        let block = receiver.recv_timeout(Duration::from_secs(60)).expect("a find within a minute");
        assert!(meets_target(&block.hash(), &Hash(target)));
        // The other thread may have found a nonce too before the stop: drop such finds.
        miner.stop();
        while receiver.try_recv().is_ok() {}
        let counted = miner.hashes();
        assert!(counted >= 1, "the find's nonces are counted");

        // An impossible target: the threads run until stopped (counting as they go), then all
        // are joined.
        miner.start(template(Hash::ZERO));
        assert!(miner.is_mining());
        let batches_counted = || miner.hashes() >= counted + 2 * STOP_POLL_NONCES;
        // At least a minute of 1 ms naps.
        for _ in 0..60_000 {
            if batches_counted() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(batches_counted(), "no batch counted within a minute: {} nonces", miner.hashes());
        miner.stop();
        assert!(!miner.is_mining());
        assert!(receiver.try_recv().is_err(), "nothing found for target zero");
    }
}

//! Every bound Chorus enforces, in one place, each with the reason for its value.
//!
//! Decoders, validators, queues and caches take their limits from here and nowhere else, so
//! what a peer or client can make a node hold is readable in this one file. Relations between
//! the bounds are checked at compile time at the bottom.

/// Largest encoded block. A block must fit in one gossip message with room for framing, and
/// 5,000 transfers (the import benchmark's block) take about 0.7 MiB.
pub const BLOCK_BYTES_MAX: u32 = 2 * 1024 * 1024;

/// Most transactions in one block: bounds the work of importing a block (one signature check
/// each, the dominant cost) to well under a second on a 2-core machine.
pub const BLOCK_TXS_MAX: u32 = 10_000;

/// Most finality votes carried in one block body: one per validator, and a validator set is
/// bounded by `VALIDATORS_MAX`.
pub const BLOCK_VOTES_MAX: u32 = VALIDATORS_MAX;

/// Largest encoded transaction. The largest honest transaction is `Evidence` carrying two
/// headers (a few hundred bytes each); 16 KiB leaves room for growth and caps what one bad
/// transaction makes a node decode.
pub const TX_BYTES_MAX: u32 = 16 * 1024;

/// Most delegates one `Vote` may approve (SPEC: at most 30).
pub const VOTE_DELEGATES_MAX: u32 = 30;

/// Largest encoded block header. Headers travel in sync responses and in evidence.
pub const HEADER_BYTES_MAX: u32 = 1024;

/// Most validators, delegates or Raft members in one set: bounds per-block vote processing and
/// the genesis file.
pub const VALIDATORS_MAX: u32 = 1_000;

/// Largest engine-specific extra data in a header seal (e.g. Raft term and index).
pub const SEAL_BYTES_MAX: u32 = 256;

/// Most unbonding entries one account may hold at once; an `Unstake` beyond it is rejected
/// rather than letting one account grow state without bound.
pub const UNBONDING_ENTRIES_MAX: u32 = 32;

/// Most accounts in a genesis file: the genesis state is built in memory in one pass.
pub const GENESIS_ACCOUNTS_MAX: u32 = 1_000_000;

/// Largest genesis file in bytes, read whole before parsing.
pub const GENESIS_BYTES_MAX: u64 = 256 * 1024 * 1024;

/// Longest chain id, in bytes of ASCII.
pub const CHAIN_ID_BYTES_MAX: u32 = 32;

/// Bounds of a libp2p peer id's base58btc text form: an ed25519 peer id is 52 characters,
/// RSA and secp256k1 ones stay below 64 (this crate checks the form; p2p checks the id).
pub const PEER_ID_CHARS_MIN: usize = 40;
pub const PEER_ID_CHARS_MAX: usize = 64;

/// Most entries in the genesis engine schedule (`{from_height, engine}` list).
pub const ENGINE_SCHEDULE_MAX: u32 = 16;

/// Largest record the store writes for itself (a block's undo record: the old value of every
/// entry the block changed, and its tree node keys).
pub const STORE_RECORD_BYTES_MAX: u32 = 64 * 1024 * 1024;

/// Largest input any type may declare as its own limit (`Canonical::BYTES_MAX`): the largest
/// of the per-type limits. Each type's own limit is checked against the input's length before
/// decoding.
pub const DECODE_BYTES_MAX: u32 = STORE_RECORD_BYTES_MAX;

// --- decoding budget (`chain::codec`) ---

/// Bytes of memory a decode may reserve per byte of its input (rounded up to a power of two, at
/// least 4 KiB). The decoder charges a container's elements' in-memory size before allocating
/// it, so a length prefix may promise at most what the input could hold: a 9-byte input makes
/// it reserve 4 KiB, not the 60 MiB its first length claimed. 8 covers the largest ratio of an
/// element's in-memory size to its smallest encoding (an undo record's entry: 48 bytes in memory,
/// 9 encoded), with room; `codec`'s tests check the ratio of every element type.
pub const DECODE_ALLOCATION_PER_INPUT_BYTE: u32 = 8;

/// Most blocks a single reorg may roll back. Deeper reorgs are refused: they could only come
/// from a chain that ignores finality, and each step holds an undo record in memory.
pub const REORG_DEPTH_MAX: u32 = 10_000;

/// Accounts kept in the store's in-memory state cache; beyond it, reads go to RocksDB.
pub const STATE_CACHE_ENTRIES_MAX: u32 = 200_000;

/// Tree nodes kept in the store's in-memory node cache (the upper levels of the tree, which
/// every update touches).
pub const TREE_NODE_CACHE_ENTRIES_MAX: u32 = 200_000;

/// Headers the store keeps decoded in memory: consensus engines read the recent ancestors of
/// every block that arrives (difficulty window, median time), which must not decode bodies.
pub const HEADER_CACHE_ENTRIES_MAX: u32 = 20_000;

/// Largest record (key and value) a consensus engine may write to the store: a Raft log entry
/// holds a whole block, with room for the entry's own fields.
pub const ENGINE_RECORD_BYTES_MAX: u32 = BLOCK_BYTES_MAX + 64 * 1024;

/// Largest encoded finality tracker (PoS and DPoS state): justified and finalized checkpoints
/// and the bounded vote tallies behind them.
pub const FFG_TRACKER_BYTES_MAX: u32 = 64 * 1024;

/// Largest encoded consensus message gossiped to every peer (a vote is under 200 bytes).
pub const ENGINE_MESSAGE_BYTES_MAX: u32 = 64 * 1024;

/// How far ahead of a node's clock a block's timestamp may be. A block beyond it is refused
/// for now (not marked invalid: it becomes acceptable as the clock advances). Tolerates clock
/// skew between honest nodes while bounding how far a miner can pull the chain's time ahead.
pub const BLOCK_FUTURE_DRIFT_MS_MAX: u64 = 15_000;

/// Chain-work entries a PoW engine keeps in memory; the rest are read from its records.
pub const WORK_CACHE_ENTRIES_MAX: u32 = 20_000;

/// The PoW retarget moves the target by at most this factor per block, either way: bounds what
/// manipulated timestamps can do to the difficulty.
pub const RETARGET_STEP_FACTOR_MAX: u64 = 4;

/// Shortest interval between two refreshes of a PoW mining template (a later timestamp, newer
/// transactions): a genesis with a very short block time must not turn the refresh timer into
/// a busy loop.
pub const MINING_REFRESH_INTERVAL_MS_MIN: u64 = 100;

/// Longest PoW retarget window a genesis may set: every header check reads that many ancestors
/// (from the header cache, `HEADER_CACHE_ENTRIES_MAX`), so it must stay well inside the cache.
/// Bitcoin's retarget period is 2,016 blocks.
pub const RETARGET_WINDOW_BLOCKS_MAX: u64 = 2_016;

/// Public keys the signature checks keep decoded (`crypto`'s key cache): a decompression is a
/// field exponentiation, about a quarter of the work of checking a signature, and the same
/// senders sign again and again. About 200 bytes an entry: 13 MiB when full, allocated a shard at
/// a time as keys arrive. Direct-mapped, so keys that share a slot take turns; 65,536 slots keep
/// about 86% of 10,000 busy senders (the import benchmark's accounts) decoded.
pub const DECODED_KEY_CACHE_ENTRIES: u32 = 65_536;

/// Shards of the key cache, each behind its own lock, so the threads of a parallel batch
/// rarely wait for each other.
pub const DECODED_KEY_CACHE_SHARDS: u32 = 64;

/// Most signatures in one batch verification (one multiscalar multiplication): past about a
/// thousand points the per-signature cost stops falling while memory keeps growing. Larger
/// batches are cut into chunks of at most this many.
pub const SIGNATURE_BATCH_CHUNK_MAX: u32 = 1024;

/// Blocks the sync paths (`block::import_with_checks_ahead`: `Store::import_blocks`, range
/// sync) check (signatures) ahead of the one they import: enough that the checks never wait for
/// the import while it holds one core, few enough that a failed import wastes little checking.
/// The checks keep only the blocks' transaction hashes.
pub const IMPORT_CHECKED_AHEAD_MAX: u32 = 2;

/// Fewest signatures a block or batch hands to the thread pool; fewer are checked (and a block
/// executed) on the calling thread. Waking the pool costs tens of microseconds on these
/// machines, about one signature check, and its idle threads then spin (yielding) for a while
/// on cores other work wants: measured, a Raft follower importing one-transfer blocks spent a
/// fifth of its samples in those spins while the other members waited for a core.
pub const PARALLEL_SIGNATURES_MIN: u32 = 32;

/// Transactions one node's mempool holds: about 30 blocks' worth at a typical 300 per block,
/// and with `MEMPOOL_BYTES_MAX` what a flood of submissions can make a node keep.
pub const MEMPOOL_TXS_MAX: u32 = 50_000;

/// Bytes of encoded transactions the mempool holds.
pub const MEMPOOL_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Bytes of the file a stopped node keeps its pending transactions in (`mempool.bin`): the pool's
/// bytes plus a 4-byte length per transaction and an 8-byte header. A larger file is not read.
pub const MEMPOOL_FILE_BYTES_MAX: u64 = MEMPOOL_BYTES_MAX + 4 * MEMPOOL_TXS_MAX as u64 + 8;

/// Transactions one sender may have pending: keeps one account from filling the pool. Not applied
/// to transactions a reorg returns from rolled-back blocks (they were in blocks; the pool's own
/// limits above still bound them).
pub const MEMPOOL_TXS_PER_SENDER_MAX: u32 = 64;

/// How far ahead of its account's nonce a pending transaction may be (a gap is held, bounded).
/// Not applied to transactions a reorg returns (they come back in nonce order, without gaps).
pub const MEMPOOL_NONCE_GAP_MAX: u64 = 64;

/// A transaction replaces a pending one with the same sender and nonce only if its fee is at
/// least this many permille higher, and at least one unit: a replacement must pay for the
/// bandwidth it costs.
pub const MEMPOOL_REPLACE_FEE_BUMP_PERMILLE: u16 = 100;

/// Transactions after a nonce gap (they cannot go in a block until the gap fills) that the
/// mempool holds in all: they were free to send, so they get a small pool of their own, are not
/// relayed, and expire. When full, the oldest goes.
pub const MEMPOOL_GAPPED_TXS_MAX: u32 = 4_096;

/// Gapped transactions one sender may have: enough for a burst sent out of order.
pub const MEMPOOL_GAPPED_PER_SENDER_MAX: u32 = 16;

/// Blocks a gapped transaction waits for its gap to fill before it is dropped.
pub const MEMPOOL_GAPPED_EXPIRY_BLOCKS: u64 = 32;

/// Transactions from one peer the node may ignore (they cannot be admitted: spent nonce, fee
/// too low, nothing to pay with) before each further one costs the peer reputation. Gossip
/// de-duplicates, and an honest peer relays only what its own mempool admitted, so it sends
/// such transactions only when its state differs from this node's, a few at a time. The
/// allowance refills at `IGNORED_TXS_PER_PEER_PER_SEC`.
pub const IGNORED_TXS_PER_PEER_BURST: u64 = 256;
pub const IGNORED_TXS_PER_PEER_PER_SEC: u64 = 16;

/// Blocks with an unknown parent a node holds while it fetches their ancestors.
pub const ORPHAN_BLOCKS_MAX: u32 = 256;

/// The orphans' bytes together: sixteen full blocks, not `ORPHAN_BLOCKS_MAX` of them (512 MiB).
pub const ORPHAN_BYTES_MAX: u64 = 16 * BLOCK_BYTES_MAX as u64;

/// Orphans from one peer at once; a peer that sends more displaces its own oldest, and when
/// the pool is full the peer holding the most loses its oldest, so a flood from a few peers
/// cannot push out what the others sent.
pub const ORPHANS_PER_PEER_MAX: u32 = 16;

/// How long an orphan waits for its ancestors: three sync request timeouts (20 s each in
/// `chorusd`); an ancestry that has not arrived by then is fetched again when it matters.
pub const ORPHAN_EXPIRY_MS: u64 = 60_000;

/// Side-branch bytes (blocks stored that do not become the head) one peer may make a node
/// store at once: eight full blocks, enough for a short fork race or a partition's branch of
/// ordinary blocks. The allowance refills at `SIDE_BLOCK_BYTES_PER_PEER_PER_SEC`; beyond it a
/// peer's side blocks are ignored (not stored, not blamed) until it refills.
pub const SIDE_BLOCK_BYTES_PER_PEER_BURST: u64 = 8 * BLOCK_BYTES_MAX as u64;
pub const SIDE_BLOCK_BYTES_PER_PEER_PER_SEC: u64 = 64 * 1024;

/// Peers whose allowances (side-branch bytes, ignored transactions) a node tracks; when full,
/// the one with the most allowance left is forgotten (it is the one that would start full again).
pub const ALLOWANCE_PEERS_TRACKED_MAX: u32 = 1_024;

/// Blocks in one sync response; a response must fit a sync message (`BLOCK_BYTES_MAX` each
/// at worst is the p2p layer's concern: it sends them one message each).
pub const SYNC_BLOCKS_PER_RESPONSE_MAX: u32 = 64;

/// Sync ranges (of `SYNC_BLOCKS_PER_RESPONSE_MAX` blocks) in flight or downloaded and waiting
/// for their turn to import: bounds the reorder buffer to this many responses (at most
/// 8 x `SYNC_RESPONSE_BYTES_MAX` = 128 MiB, typically a few MiB).
pub const SYNC_RANGES_AHEAD_MAX: u32 = 8;

/// Sync ranges one peer serves at a time: enough to keep it busy while the last answer is
/// imported, few enough that peers which report their heads a moment later still get a share.
pub const SYNC_RANGES_PER_PEER_MAX: u32 = 2;

/// Peers whose last block request time the driver remembers (rate limiting sync requests).
pub const SYNC_PEERS_TRACKED_MAX: u32 = 1_024;

/// Least time between two block requests to one peer: about a round trip plus the import of a
/// response, so the blocks of one response are connected before more are asked for.
pub const SYNC_REQUEST_INTERVAL_MS: u64 = 500;

/// How often a node announces its head: the bound on how long a node that missed a block (a
/// lost message, a healed partition) stays unaware of it when no new block arrives.
pub const STATUS_INTERVAL_MS: u64 = 2_000;

/// Hashes in a sync locator (exponentially spaced back from the head: covers 2^32 blocks).
pub const SYNC_LOCATOR_HASHES_MAX: u32 = 40;

/// Events one input may cause inside the driver (an action's result is an event): a bound
/// that turns an engine feedback loop into an error instead of a hang.
pub const DRIVER_EVENTS_PER_INPUT_MAX: u32 = 10_000;

/// Blocks found invalid that the store remembers (hash and reason), so a peer repeating one
/// costs a lookup, not an execution.
pub const INVALID_BLOCKS_REMEMBERED_MAX: u32 = 10_000;

// --- stored values (`chain::state` and `chorus-store`; fixed-width encodings) ---

/// Largest encoded state key: an enum tag (4 bytes) and at most one address or hash (32).
pub const STATE_KEY_BYTES_MAX: u32 = 64;

/// Largest encoded account: balance, nonce and stake (40 bytes), up to `UNBONDING_ENTRIES_MAX`
/// unbonding entries (24 bytes each) and `VOTE_DELEGATES_MAX` approved delegates (32 bytes
/// each) with their two 8-byte length prefixes: under 2 KiB today, so a raise of either limit
/// has room before an account could outgrow what the store decodes.
pub const ACCOUNT_BYTES_MAX: u32 = 8 * 1024;

/// Largest encoded delegate record: its registration height and received vote weight (24 bytes).
pub const DELEGATE_BYTES_MAX: u32 = 64;

/// Encoded size of the record of a slashed offence: the height it was slashed at.
pub const OFFENCE_RECORD_BYTES_MAX: u32 = 8;

/// Encoded size of the state's record of its own position: its height.
pub const STATE_META_BYTES_MAX: u32 = 8;

/// Largest encoded transaction-index entry: height, block hash and index in the block (44 bytes).
pub const TX_LOCATION_BYTES_MAX: u32 = 48;

/// Most accounts the state's index of stakers lists (an engine with validators reads it at an
/// epoch's first block): at least a full validator set, with room for as many candidates
/// again; when full, a new staker enters only by out-staking the smallest listed one.
pub const STAKERS_INDEXED_MAX: u32 = 2 * VALIDATORS_MAX;

/// Largest encoded index of stakers: a length and `STAKERS_INDEXED_MAX` (address, amount)
/// pairs (48 bytes each).
pub const STAKERS_BYTES_MAX: u32 = 8 + 48 * STAKERS_INDEXED_MAX;

/// Largest encoded validator set of an epoch: epoch, seed, total and `VALIDATORS_MAX`
/// (address, stake) pairs (48 bytes each).
pub const VALIDATOR_SET_BYTES_MAX: u32 = 8 + 32 + 16 + 8 + 48 * VALIDATORS_MAX;

/// Most delegates the state's index of delegates lists (DPoS ranks them after every block): a
/// full schedule and as many candidates again; when full, a delegate enters only by
/// outweighing the lightest listed one.
pub const DELEGATES_INDEXED_MAX: u32 = 2 * VALIDATORS_MAX;

/// Largest encoded index of delegates: a length and `DELEGATES_INDEXED_MAX` (address, weight)
/// pairs (48 bytes each).
pub const DELEGATES_BYTES_MAX: u32 = 8 + 48 * DELEGATES_INDEXED_MAX;

/// Largest encoded DPoS state: three schedules (active, previous, pending: `VALIDATORS_MAX`
/// addresses and a few fields each), the `VOTE_TARGET_AGE_MAX` recent blocks a vote may target
/// (48 bytes each) and the FFG tracker.
pub const DPOS_STATE_BYTES_MAX: u32 =
    3 * (32 + 32 * VALIDATORS_MAX) + (8 + 48 * VOTE_TARGET_AGE_MAX as u32) + FFG_TRACKER_BYTES_MAX;

/// How far below the block that carries it a finality vote's target may be: votes older than
/// this are not counted, so a block's tally of pending votes stays bounded while finality
/// stalls (and honest validators' newer votes supersede them anyway).
pub const VOTE_TARGET_AGE_MAX: u64 = 64;

/// Most gossiped votes a PoS node keeps for inclusion in its blocks: a vote per validator for
/// each recent target height.
pub const VOTE_POOL_MAX: u32 = 4 * VALIDATORS_MAX;

/// Most finality trackers (a block's justified, finalized and vote tallies) a PoS engine keeps
/// in memory; the rest are read back from the store.
pub const TRACKERS_CACHED_MAX: u32 = 1_024;

/// Most signed headers and votes a PoS node remembers to catch equivocation, and offences it
/// remembers having reported.
pub const EQUIVOCATION_WATCH_MAX: u32 = 8_192;

/// Blocks for a slot that has not begun (beyond the clock drift) a PoS node holds until it
/// does.
pub const EARLY_BLOCKS_MAX: u32 = 64;

/// Producers a slot engine counts missed slots for (a metric per producer): a full set. When
/// full, the producer with the fewest misses makes room.
pub const MISSED_SLOT_PRODUCERS_MAX: u32 = VALIDATORS_MAX;

/// Missed slots a slot engine attributes to their producers at one tick (the latest ones): a
/// node paused or starved for longer counts the rest in the total only, so one tick's work
/// stays bounded.
pub const MISSED_SLOTS_ATTRIBUTED_MAX: u64 = 256;

/// Largest encoded slashing-protection record: the last header signed (slot and hash) and the
/// last vote (two checkpoints), with option tags (under 150 bytes).
pub const GUARD_RECORD_BYTES_MAX: u32 = 256;

/// Largest encoded reference to a final block the store keeps: a height and a hash (40 bytes).
pub const FINAL_REF_BYTES_MAX: u32 = 40;

/// Files RocksDB keeps open at once. With the node's sockets (peers, pending inbound connections,
/// RPC connections) it stays under the 1,024 descriptors a default soft limit allows.
pub const STORE_OPEN_FILES_MAX: u32 = 512;

/// Bytes a column family's memtable holds before RocksDB flushes it to disk; memtable memory is
/// bounded by this times the number of column families and memtables RocksDB keeps per family.
pub const STORE_WRITE_BUFFER_BYTES_MAX: u32 = 64 * 1024 * 1024;

// --- p2p (the `chorus-p2p` service) ---

/// Most transactions in one message on the transactions topic. A node relays what it admits in
/// batches ([`TX_RELAY_DELAY_MS`]): each gossip message costs every peer a frame, its
/// encryption, a message id and a duplicate check, which one by one cost more than the
/// transaction's signature check.
pub const GOSSIP_TX_BATCH_TXS_MAX: u32 = 1_024;

/// Largest message on the transactions topic: more than `GOSSIP_TX_BATCH_TXS_MAX` transfers, or
/// 16 transactions of `TX_BYTES_MAX`.
pub const GOSSIP_TX_BATCH_BYTES_MAX: u32 = 256 * 1024;

/// How long a transaction to relay waits for others to share its gossip message: short beside
/// a slot, long enough that under load each message carries hundreds.
pub const TX_RELAY_DELAY_MS: u64 = 20;

/// How long a node remembers a transaction it relayed, and relays it no more: a transaction
/// that leaves the mempool and comes back (a reorg, a replacement war, a block that refused
/// it) would otherwise go round the network again each time. As long as gossip remembers a
/// message's id.
pub const TX_RELAYED_REMEMBERED_MS: u64 = 60_000;

/// Most transactions a node remembers relaying: a minute at about 1,000 per second, 2 MiB of
/// hashes and times; the oldest are forgotten first.
pub const TX_RELAYED_REMEMBERED_MAX: u32 = 65_536;

/// Largest gossipsub frame (one RPC) a node reads: one block plus room for the envelope
/// (topic, id, control messages). Frames above it are dropped by the transport; messages
/// above their topic's own limit (`BLOCK_BYTES_MAX`, `GOSSIP_TX_BATCH_BYTES_MAX`,
/// `ENGINE_MESSAGE_BYTES_MAX`) are rejected and cost the sender reputation.
pub const GOSSIP_FRAME_BYTES_MAX: u32 = BLOCK_BYTES_MAX + 64 * 1024;

/// Largest encoded sync request: the largest is a locator of `SYNC_LOCATOR_HASHES_MAX` hashes
/// (about 1.3 KiB); ranges and hashes take a few dozen bytes.
pub const SYNC_REQUEST_BYTES_MAX: u32 = 2 * 1024;

/// Largest encoded sync response. A responder stops adding blocks before it; one block always
/// fits, so a range is never unservable.
pub const SYNC_RESPONSE_BYTES_MAX: u32 = 16 * 1024 * 1024;

/// Headers in one sync response (about 300 bytes each: well under the response limit).
pub const SYNC_HEADERS_PER_RESPONSE_MAX: u32 = 2_000;

/// Sync requests in flight per peer and direction; more inbound ones are answered `Busy`,
/// more outbound ones are refused locally.
pub const SYNC_REQUESTS_IN_FLIGHT_PER_PEER_MAX: u32 = 8;

/// Established connections in all, and of them inbound: a node stays reachable for outbound
/// dials of its own when inbound slots are full.
pub const PEERS_MAX: u32 = 50;
pub const PEERS_INBOUND_MAX: u32 = 40;

/// Connections to one peer (two allows a simultaneous dial from both sides).
pub const CONNECTIONS_PER_PEER_MAX: u32 = 2;

/// Incoming connections still in their handshake.
pub const CONNECTIONS_PENDING_INBOUND_MAX: u32 = 16;

/// Commands queued from the node to the network service (publish, respond, report, ...).
pub const P2P_COMMAND_QUEUE_MAX: u32 = 1_024;

/// Events queued from the network service to the node. When full, gossip is ignored and sync
/// requests are answered `Busy` instead of queueing without bound.
pub const P2P_EVENT_QUEUE_MAX: u32 = 4_096;

/// Bytes of gossip payloads in that queue: 32 full blocks. Counted apart because a count alone
/// lets 4,096 blocks of 2 MiB (8 GiB) wait there.
pub const P2P_EVENT_QUEUE_BYTES_MAX: u64 = 32 * BLOCK_BYTES_MAX as u64;

/// Transactions the service holds that found no peer subscribed to their topic when published
/// (a node cut off, or just started), to publish when a peer subscribes: a client's
/// transaction a Raft follower admitted while alone must still reach the leader. The oldest
/// goes first when full; with `TX_BYTES_MAX` each, at most 4 MiB. One held longer than
/// `P2P_HELD_TX_SECS_MAX` is dropped: by then its sender has likely sent it elsewhere.
pub const P2P_HELD_TXS_MAX: u32 = 256;
pub const P2P_HELD_TX_SECS_MAX: u64 = 600;

/// Seconds a peer of another libp2p implementation (its identify names no Chorus chain: js-libp2p
/// sends `ipfs/0.1.0`) has to subscribe to one of the chain's gossip topics before it is
/// disconnected: such a peer cannot be told apart from one of another network by identify,
/// only by taking part, and one taking part in nothing would hold a connection slot.
pub const P2P_FOREIGN_PEER_SUBSCRIBE_SECS_MAX: u64 = 10;

/// Peers whose reputation the service remembers (connected or recently penalized).
pub const REPUTATION_PEERS_MAX: u32 = 4_096;

/// Banned peers remembered at once; beyond it the ban closest to expiry is dropped first.
pub const BANNED_PEERS_MAX: u32 = 4_096;

/// Process memory above which new connections are refused (the memory guard).
pub const P2P_PROCESS_MEMORY_BYTES_MAX: u64 = 4 * 1024 * 1024 * 1024;

// --- p2p: eclipse and request-flood defences ---

/// Outbound peers the node dials (bootnodes, then discovery) until it has this many. Only
/// outbound peers count: inbound ones cannot stop the node from choosing peers of its own, and
/// the slots above `PEERS_INBOUND_MAX` stay free for them.
pub const PEERS_OUTBOUND_TARGET: u32 = 10;

/// Inbound connections (pending or established) from one IP address: a few nodes behind one
/// NAT get in, one host cannot take the inbound slots.
pub const INBOUND_PER_IP_MAX: u32 = 4;

/// Inbound connections from one subnet (/24 for IPv4, /64 for IPv6, what one operator
/// typically holds): filling the inbound slots takes `PEERS_INBOUND_MAX / 8` = 5 subnets.
pub const INBOUND_PER_SUBNET_MAX: u32 = 8;

/// IP addresses banned with a peer id, remembered at once; beyond it the ban closest to its
/// end is dropped first.
pub const BANNED_ADDRESSES_MAX: u32 = 4_096;

/// Longest an address stays banned with its peer (a peer's own ban may be longer): addresses
/// change hands (DHCP, NAT), so an address ban should not outlive its holder by much.
pub const ADDRESS_BAN_SECS_MAX: u64 = 60 * 60;

/// Sync requests one peer may send per second, sustained, and the burst above it (a token
/// bucket per peer); more are answered `RateLimited` before they reach the node. An honest
/// syncing peer keeps at most `SYNC_RANGES_PER_PEER_MAX` ranges in flight and waits for their
/// import, well under this.
pub const SYNC_REQUESTS_PER_PEER_PER_SEC: u32 = 50;
pub const SYNC_REQUEST_BURST_MAX: u32 = 100;

/// Peers whose request bucket the service remembers (connected or recently so); beyond it the
/// fullest bucket, the one that matters least, is forgotten.
pub const SYNC_RATE_PEERS_MAX: u32 = 1_024;

/// Largest direct engine message (one peer to one peer): a Raft append carries at most one
/// whole block (`RAFT_APPEND_BYTES_MAX`) with room for the message's own fields.
pub const DIRECT_MESSAGE_BYTES_MAX: u32 = BLOCK_BYTES_MAX + 64 * 1024;

/// Direct messages to one peer waiting to be written to its stream; beyond it a send fails at
/// once (`QueueFull`) rather than queueing behind a slow peer (the stream's flow control holds
/// writes to one that does not read): an engine that talks directly (Raft) resends on its own
/// timers.
pub const DIRECT_QUEUED_PER_PEER_MAX: u32 = 64;

/// Direct messages one peer may send per second, sustained, and the burst above it (a token
/// bucket per peer, as for sync requests); more are dropped before the node sees them and cost
/// the peer reputation. Raft's leader and a follower exchange about two messages each way per
/// committed block (the append and its answer, the commit notice and its answer) besides a
/// heartbeat each way per two ticks; a block commits at most once per synced log write (about
/// 1 ms and more), so an honest member stays near 2,000 a second at the very most. Measured:
/// 200 a second banned honest followers at about 250 blocks a second.
pub const DIRECT_MESSAGES_PER_PEER_PER_SEC: u32 = 4_000;
pub const DIRECT_MESSAGE_BURST_MAX: u32 = 8_000;

/// Raft: the entries of one append total at most this many bytes (or are one entry): one whole
/// block, so a member behind catches up a block per message at worst.
pub const RAFT_APPEND_BYTES_MAX: u32 = BLOCK_BYTES_MAX;

/// Raft: appends a leader sends a member before it hears back (its pipeline).
pub const RAFT_INFLIGHT_APPENDS_MAX: u32 = 8;

/// Raft: bytes of entries a leader holds uncommitted; a proposal beyond it is dropped (and
/// retried once the log commits). The leader proposes one block at a time, so two fit.
pub const RAFT_UNCOMMITTED_BYTES_MAX: u64 = 4 * BLOCK_BYTES_MAX as u64;

/// Raft: applied entries kept in the log (memory and records) for members that fall a little
/// behind; one further behind gets a snapshot (the membership and a block hash) and fetches
/// the blocks over the sync protocol.
pub const RAFT_LOG_RETAINED_ENTRIES: u64 = 64;

/// Raft: entries in one member's log (applied and not); the leader's uncommitted bound keeps
/// honest logs far under it, so a longer log is a member's bug and is refused.
pub const RAFT_LOG_ENTRIES_MAX: u64 = 4_096;

/// Raft: committed blocks a member holds while it fetches the blocks below them (after a
/// snapshot); beyond it the newest wait for the sync protocol instead.
pub const RAFT_WAITING_BLOCKS_MAX: u32 = 64;

/// Raft: the opaque context a message carries (a leader transfer's tag).
pub const RAFT_CONTEXT_BYTES_MAX: u32 = 64;

/// Raft: voters and learners at once, as genesis bounds its members. A change that would pass
/// it is refused.
pub const RAFT_MEMBERS_MAX: u32 = VALIDATORS_MAX;

/// Raft: removed members remembered (their ids are never reused and their blocks stay valid
/// history); once full, no member can be added.
pub const RAFT_FORMER_MEMBERS_MAX: u32 = VALIDATORS_MAX;

/// Raft: one member's encoding (id, address, peer id text of at most 64 bytes, lengths).
pub const RAFT_MEMBER_BYTES_MAX: u32 = 128;

/// Raft: the roster (present and former members) a state record and a snapshot carry.
pub const RAFT_ROSTER_BYTES_MAX: u32 = 16 + RAFT_MEMBER_BYTES_MAX * (RAFT_MEMBERS_MAX + RAFT_FORMER_MEMBERS_MAX);

/// Range requests a syncing node sends one peer: half the rate peers serve, so the node's other
/// requests (a status every `STATUS_INTERVAL_MS`, locator requests every
/// `SYNC_REQUEST_INTERVAL_MS`) fit beside them and an honest syncer is never refused, however
/// fast it imports.
pub const SYNC_RANGE_REQUESTS_PER_PEER_PER_SEC: u32 = SYNC_REQUESTS_PER_PEER_PER_SEC / 2;
pub const SYNC_RANGE_REQUEST_BURST_MAX: u32 = SYNC_REQUEST_BURST_MAX / 2;

const _: () =
    assert!(PEERS_OUTBOUND_TARGET <= PEERS_MAX - PEERS_INBOUND_MAX, "inbound peers cannot take the outbound slots");
const _: () = assert!(INBOUND_PER_IP_MAX <= INBOUND_PER_SUBNET_MAX && INBOUND_PER_SUBNET_MAX < PEERS_INBOUND_MAX);
const _: () = assert!(SYNC_REQUEST_BURST_MAX >= SYNC_REQUESTS_IN_FLIGHT_PER_PEER_MAX, "a full pipeline fits a burst");
const _: () = assert!(SYNC_RATE_PEERS_MAX >= PEERS_MAX, "every connected peer has a bucket");
const _: () = assert!(DIRECT_MESSAGE_BURST_MAX >= DIRECT_QUEUED_PER_PEER_MAX, "a full pipeline fits a burst");
const _: () = assert!(
    RAFT_INFLIGHT_APPENDS_MAX as u64 * DIRECT_MESSAGE_BYTES_MAX as u64 <= P2P_EVENT_QUEUE_BYTES_MAX,
    "a Raft leader's full pipeline of appends to one member fits the node's event queue"
);
const _: () =
    assert!(P2P_EVENT_QUEUE_BYTES_MAX >= GOSSIP_FRAME_BYTES_MAX as u64, "the largest gossip message can queue");
const _: () = assert!(
    RAFT_ROSTER_BYTES_MAX + 1024 <= DIRECT_MESSAGE_BYTES_MAX,
    "a snapshot with the fullest roster is one direct message"
);
const _: () = assert!(
    SYNC_RANGE_REQUESTS_PER_PEER_PER_SEC as u64 * 1_000
        + 1_000 * 1_000 / STATUS_INTERVAL_MS
        + 1_000 * 1_000 / SYNC_REQUEST_INTERVAL_MS
        < SYNC_REQUESTS_PER_PEER_PER_SEC as u64 * 1_000,
    "a syncing node's own requests stay under the rate its peers serve"
);
const _: () = assert!(
    SYNC_RANGE_REQUEST_BURST_MAX >= SYNC_RANGES_PER_PEER_MAX && SYNC_RANGE_REQUEST_BURST_MAX < SYNC_REQUEST_BURST_MAX
);

// --- JSON-RPC (chorusd) ---

/// Largest JSON-RPC request body: a transaction's hex is at most twice `TX_BYTES_MAX`.
pub const RPC_REQUEST_BYTES_MAX: u32 = 1024 * 1024;

/// Largest JSON-RPC response body: a full block as JSON (10,000 transactions of about 300
/// bytes of JSON each) fits.
pub const RPC_RESPONSE_BYTES_MAX: u32 = 16 * 1024 * 1024;

const _: () = assert!(
    DELEGATES_INDEXED_MAX * 512 < RPC_RESPONSE_BYTES_MAX,
    "consensus_validators lists every indexed delegate (about 250 bytes of JSON each)"
);

/// Open JSON-RPC connections (HTTP and WebSocket together).
pub const RPC_CONNECTIONS_MAX: u32 = 100;

/// Subscriptions one WebSocket connection may hold.
pub const RPC_SUBSCRIPTIONS_PER_CONNECTION_MAX: u32 = 16;

/// RPC calls and sync answers queued for the node's task; callers wait for room.
pub const NODE_INPUT_QUEUE_MAX: u32 = 1_024;

/// Gossip messages of transactions waiting for their signature checks off the node's task; one
/// that finds the queue full is dropped unchecked (gossip ignores it). At most 32 MiB of
/// `GOSSIP_TX_BATCH_BYTES_MAX` messages.
pub const GOSSIP_TX_BATCHES_CHECKING_MAX: u32 = 128;

/// Transactions whose signatures the gossip checks remember having checked: each arrives from
/// every peer that relays it, and is checked once. About a minute at 1,000 per second, 2 MiB.
pub const GOSSIP_TXS_VERIFIED_REMEMBERED_MAX: u32 = 65_536;

/// Gossip messages of transactions checked together: the batch rate (about twice one by one)
/// over both cores even when each message carries a few transactions.
pub const GOSSIP_TX_BATCHES_CHECKED_AT_ONCE: u32 = 16;

/// Head and finality notices kept for slow subscribers; one further behind skips ahead.
pub const RPC_NOTICES_QUEUED_MAX: u32 = 256;

/// Blocks the miner threads found and the node's task has not taken yet.
pub const MINED_BLOCKS_QUEUED_MAX: u32 = 4;

/// Sustained JSON-RPC calls per second from one client address, and the burst above it a
/// client may spend at once (a token bucket kept per address, whatever its connections); calls
/// beyond get error 3001 instead of queueing.
pub const RPC_CALLS_PER_SEC_MAX: u32 = 2_000;
pub const RPC_CALL_BURST_MAX: u32 = 4_000;

// --- JSON-RPC access (chorusd) ---

/// Client addresses (IPv4, or IPv6 /64) whose rate-limit bucket the RPC server keeps. A bucket
/// refilled to the burst is dropped first, as a new one would be the same; past the bound the
/// fullest is dropped, so a client can gain at most a fresh burst by crowding the table out. At
/// least one per open connection, with room for clients between connections.
pub const RPC_CLIENTS_TRACKED_MAX: u32 = 1_024;
const _: () = assert!(RPC_CLIENTS_TRACKED_MAX >= RPC_CONNECTIONS_MAX, "every open connection's client has a bucket");

// --- disk (chorusd) ---

/// Free space `chorusd` keeps on its data directory's filesystem: below it the node does not
/// start, and a running node halts (stops writing, says why in its log and `node_status`)
/// before a write can fail for lack of room, as Bitcoin Core stops under 50 MB. RocksDB's
/// memtable flush writes up to 64 MiB at once, and a compaction about as much again.
pub const DISK_FREE_BYTES_MIN: u64 = 128 * 1024 * 1024;

// --- wallet (`chorus`) ---

/// Largest key file the wallet reads, checked before reading it: an encrypted key file is under
/// 1 KiB, and a larger file is refused as damaged.
pub const KEY_FILE_BYTES_MAX: u64 = 64 * 1024;

/// Accounts `chorus load` sends from through one node. Each keeps to its node with one transfer
/// in flight, so a node has at most this many of the load's connections open, well under its
/// `RPC_CONNECTIONS_MAX`.
pub const LOAD_ACCOUNTS_PER_NODE_MAX: u32 = 48;
const _: () =
    assert!(LOAD_ACCOUNTS_PER_NODE_MAX * 2 <= RPC_CONNECTIONS_MAX, "a load leaves a node room for other clients");

/// Accounts one `chorus load` run sends from, through all its nodes.
pub const LOAD_ACCOUNTS_MAX: u32 = 1_024;

/// Transfers one `chorus load` run may send (its rate times its seconds): it keeps each one's
/// hash and times (about 100 bytes) until the run ends, so at most about 200 MB.
pub const LOAD_TRANSFERS_MAX: u64 = 2_000_000;

// --- secrets (the wallet's keystore and password file, `chorusd`'s node key) ---

/// Largest argon2id costs a key file may ask for. Unlocking derives the key with the parameters
/// the file names, so without a bound a crafted file asks for up to 4 TiB (`m_cost` is in KiB, a
/// u32) or billions of passes. Four times the keystore's own costs (64 MiB, 3 passes, 1 lane)
/// leaves room to raise them; memory is the one that can hurt a machine, and 256 MiB is what a
/// small one can spare for a moment.
pub const KEYSTORE_ARGON2_M_COST_KIB_MAX: u32 = 256 * 1024;
pub const KEYSTORE_ARGON2_T_COST_MAX: u32 = 12;
pub const KEYSTORE_ARGON2_P_COST_MAX: u32 = 4;

/// Largest password file the wallet reads (`--password-file`): a password is a line.
pub const PASSWORD_FILE_BYTES_MAX: u64 = 4 * 1024;

/// Largest node key file `chorusd` reads: 64 hex digits and a line end; more is not a key file.
pub const NODE_KEY_FILE_BYTES_MAX: u64 = 1024;

const _: () = assert!(TX_BYTES_MAX < BLOCK_BYTES_MAX);
const _: () = assert!(GOSSIP_TX_BATCHES_CHECKED_AT_ONCE <= GOSSIP_TX_BATCHES_CHECKING_MAX);
const _: () = assert!(GOSSIP_TX_BATCH_BYTES_MAX >= TX_BYTES_MAX + 64, "one transaction of any size fits a message");
const _: () = assert!(GOSSIP_TX_BATCH_BYTES_MAX < GOSSIP_FRAME_BYTES_MAX);
const _: () = assert!(HEADER_BYTES_MAX < TX_BYTES_MAX / 4, "evidence carries two headers");
const _: () = assert!(DECODE_BYTES_MAX >= BLOCK_BYTES_MAX && DECODE_BYTES_MAX >= STORE_RECORD_BYTES_MAX);
const _: () = assert!(VOTE_DELEGATES_MAX <= VALIDATORS_MAX);
const _: () = assert!(SEAL_BYTES_MAX < HEADER_BYTES_MAX);
const _: () = assert!(MEMPOOL_TXS_PER_SENDER_MAX as u64 <= MEMPOOL_NONCE_GAP_MAX);
const _: () = assert!(MEMPOOL_GAPPED_PER_SENDER_MAX <= MEMPOOL_TXS_PER_SENDER_MAX);
const _: () = assert!(MEMPOOL_GAPPED_TXS_MAX < MEMPOOL_TXS_MAX, "gapped transactions are a small part of the pool");
const _: () = assert!(MEMPOOL_BYTES_MAX >= TX_BYTES_MAX as u64 * MEMPOOL_TXS_PER_SENDER_MAX as u64);
const _: () = assert!(GOSSIP_FRAME_BYTES_MAX > BLOCK_BYTES_MAX && GOSSIP_FRAME_BYTES_MAX > ENGINE_MESSAGE_BYTES_MAX);
const _: () = assert!(DIRECT_MESSAGE_BYTES_MAX >= ENGINE_MESSAGE_BYTES_MAX, "a gossiped engine message can go direct");
const _: () = assert!(ENGINE_RECORD_BYTES_MAX > RAFT_APPEND_BYTES_MAX, "a Raft entry with one whole block is a record");
const _: () = assert!(DIRECT_MESSAGE_BYTES_MAX > RAFT_APPEND_BYTES_MAX, "an append with one whole block is a message");
const _: () = assert!(SYNC_RESPONSE_BYTES_MAX > BLOCK_BYTES_MAX, "one block always fits a response");
const _: () = assert!(SYNC_HEADERS_PER_RESPONSE_MAX * HEADER_BYTES_MAX < SYNC_RESPONSE_BYTES_MAX);
const _: () = assert!(SYNC_RANGES_PER_PEER_MAX <= SYNC_RANGES_AHEAD_MAX);
const _: () = assert!(ORPHAN_BYTES_MAX >= BLOCK_BYTES_MAX as u64, "one full block fits the orphan pool");
const _: () = assert!(ORPHANS_PER_PEER_MAX >= 1 && ORPHANS_PER_PEER_MAX <= ORPHAN_BLOCKS_MAX);
const _: () = assert!(SIDE_BLOCK_BYTES_PER_PEER_BURST >= BLOCK_BYTES_MAX as u64, "one full side block is allowed");
const _: () = assert!(PEERS_INBOUND_MAX < PEERS_MAX);
const _: () =
    assert!(SYNC_REQUEST_BYTES_MAX >= 16 + 32 * SYNC_LOCATOR_HASHES_MAX, "a full locator fits a sync request");
const _: () = assert!(RETARGET_STEP_FACTOR_MAX >= 1, "the retarget clamp's lower end stays below its upper end");
const _: () = assert!(RETARGET_WINDOW_BLOCKS_MAX < HEADER_CACHE_ENTRIES_MAX as u64 / 4, "a window stays cached");
const _: () = assert!(SIGNATURE_BATCH_CHUNK_MAX >= 1, "a batch chunk holds at least one signature");
const _: () = assert!(PARALLEL_SIGNATURES_MIN <= SIGNATURE_BATCH_CHUNK_MAX, "a batch checked in place is one chunk");
const _: () = assert!(4 + 32 <= STATE_KEY_BYTES_MAX, "a tag and an address or hash fit a state key");
const _: () = assert!(
    16 + 8 + 16 + (8 + 24 * UNBONDING_ENTRIES_MAX) + (8 + 32 * VOTE_DELEGATES_MAX) <= ACCOUNT_BYTES_MAX,
    "an account with every unbonding entry and a full vote fits"
);
const _: () = assert!(8 + 16 <= DELEGATE_BYTES_MAX, "a height and an amount fit a delegate record");
const _: () = assert!(8 + 32 + 4 <= TX_LOCATION_BYTES_MAX, "a height, a hash and an index fit a tx location");
const _: () = assert!(8 + 32 <= FINAL_REF_BYTES_MAX, "a height and a hash fit a final-block reference");
const _: () = assert!(
    STORE_OPEN_FILES_MAX + PEERS_MAX + CONNECTIONS_PENDING_INBOUND_MAX + RPC_CONNECTIONS_MAX < 1024,
    "the store's files and the node's sockets fit a 1,024-descriptor soft limit"
);
const _: () = assert!(STORE_OPEN_FILES_MAX <= i32::MAX as u32, "RocksDB takes the open-file limit as an i32");
const _: () = assert!(
    DECODED_KEY_CACHE_SHARDS.is_power_of_two()
        && DECODED_KEY_CACHE_ENTRIES.is_power_of_two()
        && DECODED_KEY_CACHE_SHARDS <= 256
        && DECODED_KEY_CACHE_ENTRIES / DECODED_KEY_CACHE_SHARDS <= 65_536,
    "a key's first byte picks its shard and the next two its slot"
);

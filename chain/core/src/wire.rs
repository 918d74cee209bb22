//! What nodes send each other over the network: the gossip topics, the sync protocol's
//! requests and responses with their bounds, and the kinds of misbehaviour a peer is reported
//! for.
//!
//! Types and rules only. The network service (`chorus-p2p`) carries them over libp2p and the
//! node's core (`chorus-node-core`) decides what to send and how to judge what arrives; the
//! deterministic simulator carries the same types over its simulated network, so neither the
//! core nor the simulator needs libp2p.

use std::fmt;

use crate::block::Block;
use crate::codec::{self, Canonical, Decode, Encode};
use crate::header::Header;
use crate::limits;
use crate::primitives::{Hash, Height};
use crate::tx::SignedTransaction;

/// A gossip topic. Each chain has its own three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Topic {
    Blocks,
    Transactions,
    /// Engine messages other than blocks (finality votes, Raft messages).
    Consensus,
}

impl Topic {
    pub const ALL: [Topic; 3] = [Topic::Blocks, Topic::Transactions, Topic::Consensus];

    pub const fn as_str(self) -> &'static str {
        match self {
            Topic::Blocks => "blocks",
            Topic::Transactions => "txs",
            Topic::Consensus => "consensus",
        }
    }

    /// The gossipsub topic name for a chain.
    pub fn name(self, chain_id: &str) -> String {
        format!("/chorus/{chain_id}/{}/1", self.as_str())
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The node's answer to a gossip message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: forward it to other peers.
    Accept,
    /// Not forwarded and not held against the sender (e.g. a block we already have, a
    /// transaction the mempool has no room for).
    Ignore,
    /// Invalid: not forwarded, and the peer that sent it is reported for this.
    Reject(Misbehaviour),
}

/// What a peer did wrong. The node reports the kinds it finds (invalid blocks and
/// transactions, undecodable payloads); the service reports the rest itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Misbehaviour {
    /// Bytes that do not decode (gossip payload or sync message).
    Undecodable,
    /// A message above its topic's or protocol's size limit.
    Oversize,
    /// Well-formed data that fails validation (bad signature, invalid block, wrong seal).
    Invalid,
    /// A sync response that does not answer the request (wrong kind, more items than asked).
    BadResponse,
    /// A sync request above the protocol's limits.
    OversizeRequest,
    /// A sync request we sent got no answer in time.
    Unanswered,
    /// Well-formed input the node cannot use (transactions it cannot admit), sent beyond the
    /// allowance an honest peer whose state differs a little needs.
    Unwanted,
    /// A sync request or a direct message over the peer's rate.
    TooManyRequests,
}

impl Misbehaviour {
    pub const ALL: [Misbehaviour; 8] = [
        Misbehaviour::Undecodable,
        Misbehaviour::Oversize,
        Misbehaviour::Invalid,
        Misbehaviour::BadResponse,
        Misbehaviour::OversizeRequest,
        Misbehaviour::Unanswered,
        Misbehaviour::Unwanted,
        Misbehaviour::TooManyRequests,
    ];

    /// Points the report costs. With the default threshold of -100, two pieces of garbage or
    /// invalid data ban a peer; an honest peer that is slow now and then is never banned.
    pub const fn penalty(self) -> i32 {
        match self {
            Misbehaviour::Undecodable | Misbehaviour::Oversize | Misbehaviour::Invalid => 50,
            Misbehaviour::BadResponse => 40,
            Misbehaviour::OversizeRequest => 20,
            Misbehaviour::Unanswered | Misbehaviour::Unwanted => 10,
            // Repeated, not once: twenty refused requests before the score recovers ban.
            Misbehaviour::TooManyRequests => 5,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Misbehaviour::Undecodable => "undecodable",
            Misbehaviour::Oversize => "oversize",
            Misbehaviour::Invalid => "invalid",
            Misbehaviour::BadResponse => "bad_response",
            Misbehaviour::OversizeRequest => "oversize_request",
            Misbehaviour::Unanswered => "unanswered",
            Misbehaviour::Unwanted => "unwanted",
            Misbehaviour::TooManyRequests => "too_many_requests",
        }
    }
}

impl fmt::Display for Misbehaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message on the transactions topic: transactions a node admitted, in the order it did
/// (so each sender's nonces ascend), one to `GOSSIP_TX_BATCH_TXS_MAX` of them.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct TxBatch {
    pub txs: Vec<SignedTransaction>,
}

impl Canonical for TxBatch {
    const BYTES_MAX: u32 = limits::GOSSIP_TX_BATCH_BYTES_MAX;
}

impl TxBatch {
    /// Decodes a message strictly: canonical, within the byte limit, and one to
    /// `GOSSIP_TX_BATCH_TXS_MAX` transactions.
    pub fn decode(bytes: &[u8]) -> Option<TxBatch> {
        let batch: TxBatch = codec::decode(bytes).ok()?;
        let count = batch.txs.len();
        (count > 0 && count <= limits::GOSSIP_TX_BATCH_TXS_MAX as usize).then_some(batch)
    }

    /// Splits `txs` into messages in order, each as full as the limits allow; a transaction
    /// over `TX_BYTES_MAX` (which no mempool admits) still goes alone.
    pub fn pack(txs: Vec<SignedTransaction>) -> Vec<Vec<u8>> {
        TxBatch::pack_encoded(txs.iter().map(codec::encode))
    }

    /// [`TxBatch::pack`] for transactions already encoded (canonically, each on its own).
    pub fn pack_encoded(encoded: impl IntoIterator<Item = Vec<u8>>) -> Vec<Vec<u8>> {
        // A list encodes as its length (8 bytes) then its items.
        const ROOM: usize = limits::GOSSIP_TX_BATCH_BYTES_MAX as usize - 8;
        let mut messages = Vec::new();
        let mut items: Vec<u8> = Vec::new();
        let mut count: u64 = 0;
        let mut finish = |items: &mut Vec<u8>, count: &mut u64| {
            if *count > 0 {
                let mut message = Vec::with_capacity(items.len().saturating_add(8));
                codec::encode_into(count, &mut message);
                message.append(items);
                messages.push(message);
                *count = 0;
            }
        };
        for bytes in encoded {
            if count >= u64::from(limits::GOSSIP_TX_BATCH_TXS_MAX) || items.len().saturating_add(bytes.len()) > ROOM {
                finish(&mut items, &mut count);
            }
            items.extend_from_slice(&bytes);
            count = count.saturating_add(1);
        }
        finish(&mut items, &mut count);
        messages
    }
}

/// A request for part of a peer's canonical chain.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum SyncRequest {
    /// Up to `count` consecutive canonical headers starting at `from`.
    Headers { from: Height, count: u32 },
    /// Up to `count` consecutive canonical blocks starting at `from`.
    Blocks { from: Height, count: u32 },
    /// The block with this hash, canonical or not.
    Block(Hash),
    /// Up to `SYNC_BLOCKS_PER_RESPONSE_MAX` canonical blocks after the first of these hashes on
    /// the peer's chain (newest first, exponentially spaced back): finds the fork point and
    /// fetches what follows it in one round trip.
    BlocksAfter { locator: Vec<Hash> },
    /// The peer's head.
    Status,
}

impl Canonical for SyncRequest {
    const BYTES_MAX: u32 = limits::SYNC_REQUEST_BYTES_MAX;
}

/// The answer to a [`SyncRequest`]. A range answer may be shorter than asked (the chain ends,
/// or the response byte limit is reached): the requester asks again from where it stopped.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum SyncResponse {
    Headers(Vec<Header>),
    Blocks(Vec<Block>),
    Block(Option<Box<Block>>),
    Status { head: Hash, height: Height },
    Refused(Refusal),
}

impl Canonical for SyncResponse {
    const BYTES_MAX: u32 = limits::SYNC_RESPONSE_BYTES_MAX;
}

/// Why a request was not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, thiserror::Error)]
pub enum Refusal {
    #[error("asked for {requested} items, at most {max} per request")]
    TooLarge { requested: u32, max: u32 },
    #[error("the peer has too many requests in flight")]
    Busy,
    #[error("the peer sends requests faster than it is served")]
    RateLimited,
}

impl SyncRequest {
    /// Most items a response to this request may hold.
    pub fn items_max(&self) -> u32 {
        match self {
            SyncRequest::Headers { .. } => limits::SYNC_HEADERS_PER_RESPONSE_MAX,
            SyncRequest::Blocks { .. } => limits::SYNC_BLOCKS_PER_RESPONSE_MAX,
            SyncRequest::Block(_) | SyncRequest::Status => 1,
            SyncRequest::BlocksAfter { .. } => limits::SYNC_BLOCKS_PER_RESPONSE_MAX,
        }
    }

    /// Checks the request against the protocol's limits.
    pub fn check(&self) -> Result<(), Refusal> {
        let (requested, max) = match self {
            SyncRequest::Headers { count, .. } | SyncRequest::Blocks { count, .. } => (*count, self.items_max()),
            SyncRequest::BlocksAfter { locator } => {
                (u32::try_from(locator.len()).unwrap_or(u32::MAX), limits::SYNC_LOCATOR_HASHES_MAX)
            }
            SyncRequest::Block(_) | SyncRequest::Status => (1, 1),
        };
        if requested == 0 || requested > max {
            return Err(Refusal::TooLarge { requested, max });
        }
        Ok(())
    }

    pub fn kind(&self) -> &'static str {
        match self {
            SyncRequest::Headers { .. } => "headers",
            SyncRequest::Blocks { .. } => "blocks",
            SyncRequest::Block(_) => "block",
            SyncRequest::BlocksAfter { .. } => "blocks_after",
            SyncRequest::Status => "status",
        }
    }
}

impl SyncResponse {
    /// Whether this is a possible answer to `request`: the same kind, no more items than
    /// asked, consecutive heights from the requested start, the requested hash.
    pub fn answers(&self, request: &SyncRequest) -> bool {
        match (request, self) {
            (_, SyncResponse::Refused(_)) => true,
            (SyncRequest::Headers { from, count }, SyncResponse::Headers(headers)) => {
                headers.len() <= *count as usize && consecutive(*from, headers.iter().map(|header| header.height))
            }
            (SyncRequest::Blocks { from, count }, SyncResponse::Blocks(blocks)) => {
                blocks.len() <= *count as usize && consecutive(*from, blocks.iter().map(|block| block.header.height))
            }
            (SyncRequest::Block(hash), SyncResponse::Block(block)) => {
                block.as_ref().is_none_or(|block| block.hash() == *hash)
            }
            (SyncRequest::BlocksAfter { .. }, SyncResponse::Blocks(blocks)) => {
                let from = blocks.first().map_or(Height::GENESIS, |block| block.header.height);
                blocks.len() <= limits::SYNC_BLOCKS_PER_RESPONSE_MAX as usize
                    && consecutive(from, blocks.iter().map(|block| block.header.height))
            }
            (SyncRequest::Status, SyncResponse::Status { .. }) => true,
            _ => false,
        }
    }

    /// Drops trailing items until the encoding fits `SYNC_RESPONSE_BYTES_MAX`. One block always
    /// fits (`BLOCK_BYTES_MAX` is below the limit), so a range answer never becomes empty
    /// unless it was.
    pub fn fit(mut self) -> (SyncResponse, Vec<u8>) {
        loop {
            let bytes = codec::encode(&self);
            if bytes.len() <= limits::SYNC_RESPONSE_BYTES_MAX as usize {
                return (self, bytes);
            }
            let shortened = match &mut self {
                SyncResponse::Headers(items) => items.pop().is_some(),
                SyncResponse::Blocks(items) => items.pop().is_some(),
                SyncResponse::Block(block) => block.take().is_some(),
                SyncResponse::Status { .. } | SyncResponse::Refused(_) => false,
            };
            if !shortened {
                // Unreachable with the limits' compile-time relations; answer with nothing
                // rather than send a frame the peer must refuse.
                self = SyncResponse::Refused(Refusal::Busy);
            }
        }
    }
}

fn consecutive(from: Height, heights: impl Iterator<Item = Height>) -> bool {
    heights.enumerate().all(|(offset, height)| Some(height.get()) == from.get().checked_add(offset as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    fn header(height: u64) -> Header {
        let mut header = crate::state::genesis_block(&testing::genesis(1, 1), Hash::ZERO).header;
        header.height = Height::new(height);
        header
    }

    fn transfers(count: u64, memo_bytes: usize) -> Vec<SignedTransaction> {
        use crate::tx::{Transaction, TxKind};
        let chain_id = crate::primitives::ChainId::new("test").unwrap();
        let key = testing::key(1);
        (0..count)
            .map(|nonce| {
                // A transfer's size is fixed; a large transaction is a vote naming one delegate
                // many times (refused by its own rules, but well formed).
                let kind = if memo_bytes == 0 {
                    TxKind::Transfer { to: testing::key(2).address(), amount: crate::primitives::Amount::new(1) }
                } else {
                    TxKind::Vote { delegates: vec![testing::key(3).address(); memo_bytes / 32] }
                };
                Transaction {
                    chain_id: chain_id.clone(),
                    sender: key.address(),
                    nonce,
                    fee: crate::primitives::Amount::new(1),
                    kind,
                }
                .sign(&key)
            })
            .collect()
    }

    #[test]
    fn transactions_are_packed_into_messages_within_the_limits_and_in_order() {
        for (count, memo_bytes) in [(1, 0), (1_024, 0), (1_025, 0), (3_000, 0), (200, 4_000)] {
            let txs = transfers(count, memo_bytes);
            let messages = TxBatch::pack(txs.clone());
            let mut unpacked = Vec::new();
            for message in &messages {
                assert!(message.len() <= limits::GOSSIP_TX_BATCH_BYTES_MAX as usize, "{} bytes", message.len());
                let batch = TxBatch::decode(message).expect("a packed message decodes");
                assert_eq!(codec::encode(&batch), *message, "packing gives the canonical encoding");
                unpacked.extend(batch.txs);
            }
            assert_eq!(unpacked, txs, "{count} transactions of {memo_bytes} extra bytes");
            let fewest = (count as usize).div_ceil(limits::GOSSIP_TX_BATCH_TXS_MAX as usize);
            assert!(messages.len() >= fewest && (memo_bytes > 0 || messages.len() == fewest), "{}", messages.len());
        }
        assert!(TxBatch::pack(Vec::new()).is_empty());
        assert_eq!(TxBatch::decode(&codec::encode(&TxBatch { txs: Vec::new() })), None, "an empty message");
        let too_many = TxBatch { txs: transfers(u64::from(limits::GOSSIP_TX_BATCH_TXS_MAX) + 1, 0) };
        assert_eq!(TxBatch::decode(&codec::encode(&too_many)), None);
    }

    #[test]
    fn requests_are_checked_against_the_limits() {
        let max = limits::SYNC_BLOCKS_PER_RESPONSE_MAX;
        assert_eq!(SyncRequest::Blocks { from: Height::new(1), count: max }.check(), Ok(()));
        assert_eq!(
            SyncRequest::Blocks { from: Height::new(1), count: max + 1 }.check(),
            Err(Refusal::TooLarge { requested: max + 1, max })
        );
        assert!(SyncRequest::Headers { from: Height::new(1), count: 0 }.check().is_err());
        assert_eq!(SyncRequest::Block(Hash::ZERO).check(), Ok(()));
        let locator = vec![Hash::ZERO; limits::SYNC_LOCATOR_HASHES_MAX as usize + 1];
        assert!(SyncRequest::BlocksAfter { locator }.check().is_err());
        assert!(SyncRequest::BlocksAfter { locator: vec![] }.check().is_err());
    }

    #[test]
    fn the_largest_valid_request_fits_the_request_limit() {
        let locator = vec![Hash([0xab; 32]); limits::SYNC_LOCATOR_HASHES_MAX as usize];
        let request = SyncRequest::BlocksAfter { locator };
        assert_eq!(request.check(), Ok(()));
        let bytes = codec::encode(&request);
        assert!(bytes.len() <= limits::SYNC_REQUEST_BYTES_MAX as usize, "{} bytes", bytes.len());
        assert_eq!(codec::decode::<SyncRequest>(&bytes), Ok(request));
    }

    #[test]
    fn a_response_must_answer_its_request() {
        let request = SyncRequest::Headers { from: Height::new(5), count: 2 };
        assert!(SyncResponse::Headers(vec![header(5), header(6)]).answers(&request));
        assert!(SyncResponse::Headers(vec![header(5)]).answers(&request), "shorter is allowed");
        assert!(!SyncResponse::Headers(vec![header(5), header(7)]).answers(&request), "a gap");
        assert!(!SyncResponse::Headers(vec![header(5), header(6), header(7)]).answers(&request), "too many");
        assert!(!SyncResponse::Blocks(vec![]).answers(&request), "wrong kind");
        assert!(SyncResponse::Refused(Refusal::Busy).answers(&request));
    }

    #[test]
    fn fit_drops_trailing_items_to_the_byte_limit() {
        let headers: Vec<Header> = (0..10).map(header).collect();
        let (fitted, bytes) = SyncResponse::Headers(headers.clone()).fit();
        assert_eq!(fitted, SyncResponse::Headers(headers));
        assert!(bytes.len() <= limits::SYNC_RESPONSE_BYTES_MAX as usize);
    }
}

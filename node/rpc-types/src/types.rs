//! Each method's parameters (a [`Request`]) and result, one section per method, and the
//! subscriptions' notifications.
//!
//! Parameters are positional: each parameter type serializes to the JSON array the server
//! reads. Results are objects with camelCase fields.

use std::fmt;

use chorus_chain::genesis::PeerIdText;
use chorus_chain::primitives::{Amount, ChainId, Hash, Height, HexError, Timestamp};
use chorus_chain::tx::{Checkpoint, SignedTransaction, TxKind, Vote};
use chorus_chain::{Address, codec};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::fields::{hex_bytes, hex_bytes_or_null, nullable};
use crate::method::{Method, Request, Subscription};

/// `[]`: the parameters of a method that takes none.
fn no_params<S: Serializer>(serializer: S) -> Result<S::Ok, S::Error> {
    <[(); 0]>::serialize(&[], serializer)
}

/// A block as `chain_getHead`, `chain_getFinalized`, `tx_get` and `chain_finalized` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRef {
    pub height: Height,
    pub hash: Hash,
}

/// A chain's weight in its engine's fork choice (PoW: the cumulative work up to a block):
/// 256 bits, big-endian, so the derived order is the numeric one. On the wire: 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ChainWork(pub [u8; 32]);

impl fmt::Debug for ChainWork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainWork({})", hex::encode(self.0))
    }
}

impl Serialize for ChainWork {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for ChainWork {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ChainWork, D::Error> {
        let text = String::deserialize(deserializer)?;
        let mut bytes = [0; 32];
        hex::decode_to_slice(&text, &mut bytes)
            .map_err(|error| serde::de::Error::custom(format!("chainWork is not 64 hex digits ({error}): {text:?}")))?;
        Ok(ChainWork(bytes))
    }
}

// chain_getHead

/// `chain_getHead`: no parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GetHead;

impl Serialize for GetHead {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        no_params(serializer)
    }
}

impl Request for GetHead {
    const METHOD: Method = Method::ChainGetHead;
    type Response = Head;
}

/// The head block, as `chain_getHead`, `node_status` and `chain_head` notifications give it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Head {
    pub hash: Hash,
    pub height: Height,
    /// Milliseconds since the Unix epoch, from the header.
    pub timestamp: Timestamp,
    pub state_root: Hash,
    /// `null` for engines that do not choose by weight.
    #[serde(deserialize_with = "nullable")]
    pub chain_work: Option<ChainWork>,
}

impl Head {
    pub fn block_ref(&self) -> BlockRef {
        BlockRef { height: self.height, hash: self.hash }
    }
}

// chain_getBlock

/// A block by height (on the canonical chain) or by hash: a JSON number or 64 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BlockId {
    Height(Height),
    Hash(Hash),
}

impl BlockId {
    /// A height (decimal digits) or a hash (64 hex digits, `0x` allowed), as a user types it.
    pub fn parse(text: &str) -> Result<BlockId, HexError> {
        // A hash of only decimal digits is still a hash: heights never have 64 digits.
        if text.len() < 64
            && let Ok(height) = text.parse::<u64>()
        {
            return Ok(BlockId::Height(Height::new(height)));
        }
        Hash::from_hex(text).map(BlockId::Hash)
    }
}

impl fmt::Display for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockId::Height(height) => write!(f, "{height}"),
            BlockId::Hash(hash) => write!(f, "{hash}"),
        }
    }
}

/// `chain_getBlock`: `[id]`. Answers `null` for a block the node does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetBlock {
    pub id: BlockId,
}

impl Serialize for GetBlock {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (self.id,).serialize(serializer)
    }
}

impl Request for GetBlock {
    const METHOD: Method = Method::ChainGetBlock;
    type Response = Option<Block>;
}

/// `chain_getBlock`'s block: the header's fields, the transactions and the finality votes it
/// carries (PoS), without signatures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Block {
    pub hash: Hash,
    /// `null` for engines that do not choose by weight.
    #[serde(deserialize_with = "nullable")]
    pub chain_work: Option<ChainWork>,
    pub parent: Hash,
    pub height: Height,
    pub timestamp: Timestamp,
    pub txs_root: Hash,
    pub state_root: Hash,
    pub proposer: Address,
    pub transactions: Vec<BlockTx>,
    /// Absent from nodes older than the field: empty.
    #[serde(default)]
    pub votes: Vec<BlockVote>,
}

impl Block {
    /// The wire form of a chain block whose chain work is `chain_work`.
    pub fn new(block: &chorus_chain::Block, chain_work: Option<ChainWork>) -> Block {
        let header = &block.header;
        Block {
            hash: block.hash(),
            chain_work,
            parent: header.parent,
            height: header.height,
            timestamp: header.timestamp,
            txs_root: header.txs_root,
            state_root: header.state_root,
            proposer: header.proposer,
            transactions: block.body.txs.iter().map(BlockTx::new).collect(),
            votes: block.body.votes.iter().map(BlockVote::new).collect(),
        }
    }
}

/// One finality vote of [`Block`]: the voter's link from `source` to `target`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockVote {
    pub voter: Address,
    pub source: Checkpoint,
    pub target: Checkpoint,
}

impl BlockVote {
    pub fn new(vote: &Vote) -> BlockVote {
        BlockVote { voter: vote.voter, source: vote.source, target: vote.target }
    }
}

/// One transaction of [`Block`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockTx {
    pub hash: Hash,
    pub sender: Address,
    pub nonce: u64,
    pub fee: Amount,
    /// The chain's own JSON form: `{"transfer": {"to", "amount"}}`, `"register_delegate"`, ...
    pub kind: TxKind,
}

impl BlockTx {
    pub fn new(tx: &SignedTransaction) -> BlockTx {
        BlockTx { hash: tx.hash(), sender: tx.tx.sender, nonce: tx.tx.nonce, fee: tx.tx.fee, kind: tx.tx.kind.clone() }
    }
}

// chain_getFinalized

/// `chain_getFinalized`: no parameters. Answers `null` under an engine without finality (PoW).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GetFinalized;

impl Serialize for GetFinalized {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        no_params(serializer)
    }
}

impl Request for GetFinalized {
    const METHOD: Method = Method::ChainGetFinalized;
    type Response = Option<BlockRef>;
}

// state_getAccount

/// `state_getAccount`: `[address]`, or `[address, proofHeight]` for a proof against that
/// block's state root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetAccount {
    pub address: Address,
    pub proof_height: Option<Height>,
}

impl Serialize for GetAccount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.proof_height {
            Some(height) => (self.address, height).serialize(serializer),
            None => (self.address,).serialize(serializer),
        }
    }
}

impl Request for GetAccount {
    const METHOD: Method = Method::StateGetAccount;
    type Response = Account;
}

/// An account at the node's head, with a proof when one was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub address: Address,
    pub balance: Amount,
    /// Transactions included so far.
    pub nonce: u64,
    /// The nonce the account's next transaction should carry, counting its pending ones.
    pub next_nonce: u64,
    pub stake: Amount,
    pub unbonding: Vec<Unbonding>,
    /// The delegates this account approves.
    pub votes: Vec<Address>,
    /// The head the account was read at, and its state root.
    pub height: Height,
    pub state_root: Hash,
    /// `null` unless `proofHeight` was given.
    #[serde(deserialize_with = "nullable")]
    pub proof: Option<AccountProof>,
}

/// Stake on its way back to the balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Unbonding {
    pub amount: Amount,
    pub release_height: Height,
}

impl From<chorus_chain::state::Unbonding> for Unbonding {
    fn from(entry: chorus_chain::state::Unbonding) -> Unbonding {
        Unbonding { amount: entry.amount, release_height: entry.release_at }
    }
}

/// A Merkle proof of an account's value against the state root of the block at `height`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountProof {
    pub height: Height,
    pub state_root: Hash,
    /// The account's canonical encoding (hex); `null` when the proof shows it absent.
    #[serde(with = "hex_bytes_or_null")]
    pub value: Option<Vec<u8>>,
    /// The sparse Merkle proof's bytes (hex; `chain::state::tree::StateProof::from_parts`
    /// reads them back).
    #[serde(rename = "proof", with = "hex_bytes")]
    pub proof_bytes: Vec<u8>,
}

// tx_submit

/// `tx_submit`: `[hex of the transaction's canonical encoding]`. Answers the hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitTx {
    pub tx: SignedTransaction,
}

impl Serialize for SubmitTx {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (hex::encode(codec::encode(&self.tx)),).serialize(serializer)
    }
}

impl Request for SubmitTx {
    const METHOD: Method = Method::TxSubmit;
    type Response = Hash;
}

// tx_get

/// `tx_get`: `[hash]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetTx {
    pub hash: Hash,
}

impl Serialize for GetTx {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (self.hash,).serialize(serializer)
    }
}

impl Request for GetTx {
    const METHOD: Method = Method::TxGet;
    type Response = TxInfo;
}

/// A transaction's status, its hash beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxInfo {
    pub hash: Hash,
    #[serde(flatten)]
    pub status: TxStatus,
}

/// Where a transaction is: the `status` field, and for a transaction in a block, the block
/// and its index there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum TxStatus {
    /// Neither pending nor in a block of the node's chain.
    Unknown,
    Pending,
    /// In a block that is not final (yet).
    Included {
        height: Height,
        block: Hash,
        index: u32,
    },
    /// In a final block.
    Final {
        height: Height,
        block: Hash,
        index: u32,
    },
}

impl TxStatus {
    /// The block holding the transaction, included or final.
    pub fn block(&self) -> Option<BlockRef> {
        match self {
            TxStatus::Included { height, block, .. } | TxStatus::Final { height, block, .. } => {
                Some(BlockRef { height: *height, hash: *block })
            }
            TxStatus::Unknown | TxStatus::Pending => None,
        }
    }

    /// The `status` field's value.
    pub fn name(&self) -> &'static str {
        match self {
            TxStatus::Unknown => "unknown",
            TxStatus::Pending => "pending",
            TxStatus::Included { .. } => "included",
            TxStatus::Final { .. } => "final",
        }
    }
}

// node_status

/// `node_status`: no parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GetStatus;

impl Serialize for GetStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        no_params(serializer)
    }
}

impl Request for GetStatus {
    const METHOD: Method = Method::NodeStatus;
    type Response = NodeStatus;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// `pow`, `pos`, `dpos` or `raft`.
    pub engine: String,
    pub chain_id: ChainId,
    /// The lowest fee the mempool admits.
    pub min_tx_fee: Amount,
    /// This node's libp2p peer id.
    pub peer_id: PeerIdText,
    /// Connected peers.
    #[serde(rename = "peers")]
    pub n_peers: u64,
    pub head: Head,
    /// `null` under an engine without finality (PoW).
    #[serde(deserialize_with = "nullable")]
    pub finalized: Option<BlockRef>,
    /// The slot under way at the node's clock (slot engines); `null` otherwise.
    #[serde(deserialize_with = "nullable")]
    pub slot: Option<u64>,
    /// Whether range sync runs (the node is more than one range behind its best peer).
    pub syncing: bool,
    /// Range sync's progress; `null` when not syncing.
    #[serde(deserialize_with = "nullable")]
    pub sync: Option<SyncProgress>,
    pub mempool: MempoolStatus,
    /// Why the node stopped writing (a disk almost full, a store write that failed): it answers
    /// reads and nothing else until restarted. `null` while it runs.
    #[serde(deserialize_with = "nullable")]
    pub halted: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncProgress {
    pub head: Height,
    /// The best peer's head.
    pub target: Height,
    /// Blocks imported per second since syncing started, in thousandths.
    pub blocks_per_sec_milli: u64,
    /// Seconds left at that rate; `null` before the first import.
    #[serde(deserialize_with = "nullable")]
    pub eta_secs: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MempoolStatus {
    #[serde(rename = "transactions")]
    pub n_transactions: u64,
    #[serde(rename = "bytes")]
    pub size_bytes: u64,
}

// node_peers

/// `node_peers`: no parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GetPeers;

impl Serialize for GetPeers {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        no_params(serializer)
    }
}

impl Request for GetPeers {
    const METHOD: Method = Method::NodePeers;
    type Response = Peers;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peers {
    pub connected: Vec<ConnectedPeer>,
    pub banned: Vec<BannedPeer>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectedPeer {
    pub peer_id: PeerIdText,
    /// Multiaddrs, as text.
    pub addresses: Vec<String>,
    /// Whether the first connection was opened by the peer.
    pub inbound: bool,
    pub score: i32,
    /// From libp2p identify; `null` until received.
    #[serde(deserialize_with = "nullable")]
    pub agent: Option<String>,
    pub connected_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BannedPeer {
    pub peer_id: PeerIdText,
    pub remaining_secs: u64,
    pub reason: String,
}

// consensus_validators

/// `consensus_validators`: no parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GetValidators;

impl Serialize for GetValidators {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        no_params(serializer)
    }
}

impl Request for GetValidators {
    const METHOD: Method = Method::ConsensusValidators;
    type Response = Validators;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validators {
    pub engine: String,
    /// Whether anyone may produce blocks (PoW), so `validators` is empty.
    pub open: bool,
    /// The epoch of the set (PoS); `null` otherwise.
    #[serde(deserialize_with = "nullable")]
    pub epoch: Option<u64>,
    /// The slot under way at the node's clock (slot engines); `null` otherwise.
    #[serde(deserialize_with = "nullable")]
    pub slot: Option<u64>,
    /// PoS: the epoch's validators; DPoS: the scheduled producers.
    pub validators: Vec<Validator>,
    /// The proposer of `slot` on the node's head (slot engines): the head's own when the head
    /// is in that slot; `null` otherwise.
    #[serde(deserialize_with = "nullable")]
    pub producer: Option<Address>,
    /// The proposers of the next slots on the node's head, in order (slot engines).
    pub schedule: Vec<ScheduledSlot>,
    /// DPoS: the election behind the schedule; `null` for other engines.
    #[serde(deserialize_with = "nullable")]
    pub election: Option<Election>,
    /// Raft: the members, the term and the leader; `null` for other engines. `validators`
    /// lists the same members (with no stake) and `producer` is the leader.
    #[serde(deserialize_with = "nullable")]
    pub raft: Option<RaftMembers>,
}

/// Raft: the members as the node's log has them, the term and the leader it knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RaftMembers {
    pub term: u64,
    /// This node's member id; `null` when its key is no member's.
    #[serde(deserialize_with = "nullable")]
    pub member_id: Option<u64>,
    /// The leader's member id; `null` when the node knows none (during an election, or cut off
    /// from a quorum).
    #[serde(deserialize_with = "nullable")]
    pub leader: Option<u64>,
    /// The highest log index a quorum holds, as this node knows it.
    pub commit_index: u64,
    /// Voters, then learners, each by id.
    pub members: Vec<RaftMember>,
    /// A membership change in the log and not applied yet (one at a time); `null` if none.
    #[serde(deserialize_with = "nullable")]
    pub pending_change: Option<MembershipChange>,
}

/// A Raft membership change: what it does to which member, and the log entry that carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MembershipChange {
    pub kind: MembershipChangeKind,
    pub id: u64,
    pub address: Address,
    pub peer_id: PeerIdText,
    /// Its log index: in force once applied (`consensus_validators` then lists it and no
    /// longer shows it pending).
    pub index: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MembershipChangeKind {
    AddLearner,
    Promote,
    Remove,
}

/// `admin_raftAddLearner`: `[address]` or `[address, id]` (default: the next id never used).
/// Answers the proposed [`MembershipChange`] at once, or refuses with
/// `ErrorCode::MembershipRefused`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftAddLearner {
    pub address: Address,
    pub id: Option<u64>,
}

impl Serialize for RaftAddLearner {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.id {
            Some(id) => (&self.address, id).serialize(serializer),
            None => (&self.address,).serialize(serializer),
        }
    }
}

impl Request for RaftAddLearner {
    const METHOD: Method = Method::AdminRaftAddLearner;
    type Response = MembershipChange;
}

/// `admin_raftPromote`: `[id]`, a learner that has caught up. Answers as
/// [`RaftAddLearner`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftPromote {
    pub id: u64,
}

impl Serialize for RaftPromote {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (self.id,).serialize(serializer)
    }
}

impl Request for RaftPromote {
    const METHOD: Method = Method::AdminRaftPromote;
    type Response = MembershipChange;
}

/// `admin_raftRemove`: `[id]`, a voter or learner. Answers as [`RaftAddLearner`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftRemove {
    pub id: u64,
}

impl Serialize for RaftRemove {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (self.id,).serialize(serializer)
    }
}

impl Request for RaftRemove {
    const METHOD: Method = Method::AdminRaftRemove;
    type Response = MembershipChange;
}

/// The `data` of a `MembershipRefused` error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MembershipRefusalData {
    /// A stable name: `not_leader`, `no_leader`, `change_pending`, `not_caught_up`,
    /// `below_quorum`, `removed_id_reused`, `id_in_use`, `address_known`, `unknown_peer`,
    /// `already_voter`, `leader_leaving`, `leader_alone`, `not_a_member`, `unsupported`, ...
    pub reason: String,
    /// The leader's member id, when the node knows one (`not_leader`; `leader_leaving`: the
    /// member taking over).
    #[serde(deserialize_with = "nullable")]
    pub leader: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RaftMember {
    /// Never reused, even after the member is removed.
    pub id: u64,
    pub address: Address,
    pub peer_id: PeerIdText,
    pub role: RaftRole,
    /// On the leader: the log index up to which the member's log matches the leader's; `null`
    /// on other members.
    #[serde(deserialize_with = "nullable")]
    pub match_index: Option<u64>,
    /// On the leader: whether the member answered within the last election timeout (a learner
    /// is caught up when this holds and `matchIndex` reaches the commit index); `null` on
    /// other members.
    #[serde(deserialize_with = "nullable")]
    pub recently_active: Option<bool>,
}

/// A voter counts toward quorums; a learner receives the log and does not vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RaftRole {
    Voter,
    Learner,
}

/// One member of the active set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Validator {
    pub address: Address,
    /// The libp2p peer id of the member's key (its address).
    pub peer_id: PeerIdText,
    /// PoS: the bonded stake; DPoS: the approval weight (the stakes approving it).
    pub stake: Amount,
    /// Its share of the set's stake (or weight), in basis points (1/100 of a percent), rounded
    /// down.
    pub share_bps: u32,
    /// Slashed for an offence: it leaves the set at the next epoch (schedule).
    pub slashed: bool,
}

/// DPoS: the schedule in force, the one waiting to be, and the ranking that makes the next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Election {
    /// The active schedule's version (0 for the genesis one) and first slot.
    pub schedule_version: u64,
    pub schedule_start_slot: u64,
    /// How many delegates produce (the genesis `producers`).
    pub producers: u32,
    /// The next schedule, or `null`.
    #[serde(deserialize_with = "nullable")]
    pub pending: Option<PendingSchedule>,
    /// Every registered delegate on the node's head, by rank.
    pub ranking: Vec<RankedDelegate>,
}

/// A schedule proposed by the block at `proposedAt`: it takes effect at the first round
/// boundary after that block is irreversible.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingSchedule {
    pub proposed_at: Height,
    pub producers: Vec<Address>,
}

/// A registered delegate in the ranking: by weight, then address; slashed ones last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RankedDelegate {
    /// 1 for the first.
    pub rank: u32,
    pub address: Address,
    pub peer_id: PeerIdText,
    /// The sum of the bonded stakes approving it.
    pub weight: Amount,
    /// Among the top `producers` unslashed: in the schedule the ranking makes.
    pub elected: bool,
    /// In the active schedule.
    pub scheduled: bool,
    pub slashed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledSlot {
    pub slot: u64,
    pub proposer: Address,
}

// admin_banPeer, admin_unbanPeer

/// `admin_banPeer`: `[peerId]` or `[peerId, secs]` (default a day). Answers `null`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanPeer {
    pub peer_id: PeerIdText,
    pub secs: Option<u64>,
}

impl Serialize for BanPeer {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.secs {
            Some(secs) => (&self.peer_id, secs).serialize(serializer),
            None => (&self.peer_id,).serialize(serializer),
        }
    }
}

impl Request for BanPeer {
    const METHOD: Method = Method::AdminBanPeer;
    type Response = ();
}

/// `admin_unbanPeer`: `[peerId]`. Answers `null`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnbanPeer {
    pub peer_id: PeerIdText,
}

impl Serialize for UnbanPeer {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (&self.peer_id,).serialize(serializer)
    }
}

impl Request for UnbanPeer {
    const METHOD: Method = Method::AdminUnbanPeer;
    type Response = ();
}

// Subscriptions

/// `chain_subscribeHeads`: every new head, in order, as `chain_head` notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeadsSubscription;

impl Subscription for HeadsSubscription {
    const SUBSCRIBE: Method = Method::ChainSubscribeHeads;
    const UNSUBSCRIBE: Method = Method::ChainUnsubscribeHeads;
    const NOTIFICATION: &'static str = "chain_head";
    type Item = Head;
}

/// `chain_subscribeFinalized`: every newly final block as `chain_finalized` notifications;
/// silent under an engine without finality (PoW).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FinalizedSubscription;

impl Subscription for FinalizedSubscription {
    const SUBSCRIBE: Method = Method::ChainSubscribeFinalized;
    const UNSUBSCRIBE: Method = Method::ChainUnsubscribeFinalized;
    const NOTIFICATION: &'static str = "chain_finalized";
    type Item = BlockRef;
}

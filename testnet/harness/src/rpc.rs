//! A typed, blocking JSON-RPC client for one node (README's method table), over HTTP.
//!
//! Blocking on purpose: tests call it from plain `#[test]` functions and from inside tokio
//! tests alike, where a client that needs its own runtime would panic.

use std::net::SocketAddr;
use std::time::Duration;

use chorus_chain::primitives::{Amount, Hash};
use chorus_chain::tx::SignedTransaction;
use chorus_chain::{Address, codec};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// How long one call may take before it counts as failed (a paused node never answers).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a call gave no result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The node answered with a JSON-RPC error.
    Rpc { code: i64, message: String },
    /// No answer: refused, reset or timed out (a killed or paused node).
    Unreachable(String),
    /// An answer that is not what the method returns.
    Malformed(String),
}

impl CallError {
    /// The JSON-RPC error code, when the node answered with one.
    pub fn code(&self) -> Option<i64> {
        match self {
            CallError::Rpc { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Rpc { code, message } => write!(f, "error {code}: {message}"),
            CallError::Unreachable(why) => write!(f, "unreachable: {why}"),
            CallError::Malformed(why) => write!(f, "malformed answer: {why}"),
        }
    }
}

impl std::error::Error for CallError {}

/// A block reference as `chain_getHead`, `chain_getFinalized` and the subscriptions give it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BlockRef {
    pub height: u64,
    pub hash: Hash,
}

/// A chain's weight in its engine's fork choice (PoW: cumulative work), as `chainWork` gives
/// it: 256 bits, big-endian, so the derived order is the numeric one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ChainWork(pub [u8; 32]);

impl<'de> Deserialize<'de> for ChainWork {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<ChainWork, D::Error> {
        let text = String::deserialize(deserializer)?;
        let bytes = hex::decode(&text).map_err(serde::de::Error::custom)?;
        bytes.try_into().map(ChainWork).map_err(|_| serde::de::Error::custom("chainWork is not 32 bytes"))
    }
}

/// `chain_getHead`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Head {
    pub height: u64,
    pub hash: Hash,
    pub state_root: Hash,
    /// None for engines that do not choose by weight.
    pub chain_work: Option<ChainWork>,
}

/// `chain_getBlock`, with the transactions reduced to their hashes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Block {
    pub hash: Hash,
    pub parent: Hash,
    pub height: u64,
    pub state_root: Hash,
    pub chain_work: Option<ChainWork>,
    #[serde(deserialize_with = "tx_hashes")]
    pub transactions: Vec<Hash>,
}

fn tx_hashes<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<Hash>, D::Error> {
    #[derive(Deserialize)]
    struct Tx {
        hash: Hash,
    }
    Ok(Vec::<Tx>::deserialize(deserializer)?.into_iter().map(|tx| tx.hash).collect())
}

/// `state_getAccount` (without the proof).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub balance: Amount,
    pub nonce: u64,
    pub next_nonce: u64,
    pub stake: Amount,
    /// The head the answer was read at.
    pub height: u64,
    pub state_root: Hash,
}

/// `state_getAccount` with a proof: the account's encoded value at `height` (None: absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenValue {
    pub height: u64,
    pub state_root: Hash,
    pub value: Option<String>,
}

/// `tx_get`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxStatus {
    Unknown,
    Pending,
    Included { height: u64, block: Hash },
    Final { height: u64, block: Hash },
}

impl TxStatus {
    /// The block holding the transaction, included or final.
    pub fn block(&self) -> Option<BlockRef> {
        match self {
            TxStatus::Included { height, block } | TxStatus::Final { height, block } => {
                Some(BlockRef { height: *height, hash: *block })
            }
            TxStatus::Unknown | TxStatus::Pending => None,
        }
    }
}

/// `node_status`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub engine: String,
    pub chain_id: String,
    pub min_tx_fee: Amount,
    pub peer_id: String,
    pub peers: usize,
    pub head: Head,
    pub finalized: Option<BlockRef>,
    pub syncing: bool,
}

/// One connected peer of `node_peers`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Peer {
    pub peer_id: String,
    pub inbound: bool,
    pub score: i64,
}

/// One banned peer of `node_peers`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ban {
    pub peer_id: String,
    pub remaining_secs: u64,
    pub reason: String,
}

/// `node_peers`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Peers {
    pub connected: Vec<Peer>,
    pub banned: Vec<Ban>,
}

/// A client for one node's RPC address.
#[derive(Debug, Clone)]
pub struct Rpc {
    addr: SocketAddr,
    agent: ureq::Agent,
}

impl Rpc {
    pub fn new(addr: SocketAddr) -> Rpc {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(CALL_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .new_agent();
        Rpc { addr, agent }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// One call with positional parameters.
    pub fn call(&self, method: &str, params: Value) -> Result<Value, CallError> {
        let request = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
        let (status, body) = self.post(request.to_string().as_bytes())?;
        let response: Value = serde_json::from_str(&body)
            .map_err(|error| CallError::Malformed(format!("HTTP {status}, {error}: {body}")))?;
        match response.get("error") {
            Some(error) => Err(CallError::Rpc {
                code: error["code"].as_i64().unwrap_or_default(),
                message: error["message"].as_str().unwrap_or_default().to_owned(),
            }),
            None => Ok(response.get("result").cloned().unwrap_or(Value::Null)),
        }
    }

    /// One call whose result is decoded as `T`.
    pub fn call_as<T: DeserializeOwned>(&self, method: &str, params: Value) -> Result<T, CallError> {
        let result = self.call(method, params)?;
        serde_json::from_value(result.clone())
            .map_err(|error| CallError::Malformed(format!("{method}: {error}: {result}")))
    }

    /// Posts raw bytes and returns the HTTP status and body: for tests of the HTTP layer.
    pub fn post(&self, body: &[u8]) -> Result<(u16, String), CallError> {
        let mut response = self
            .agent
            .post(self.url())
            .header("content-type", "application/json")
            .send(body)
            .map_err(|error| CallError::Unreachable(error.to_string()))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(u64::from(chorus_chain::limits::RPC_RESPONSE_BYTES_MAX))
            .read_to_string()
            .map_err(|error| CallError::Unreachable(error.to_string()))?;
        Ok((status, body))
    }

    pub fn head(&self) -> Result<Head, CallError> {
        self.call_as("chain_getHead", json!([]))
    }

    pub fn finalized(&self) -> Result<Option<BlockRef>, CallError> {
        self.call_as("chain_getFinalized", json!([]))
    }

    pub fn block_at(&self, height: u64) -> Result<Option<Block>, CallError> {
        self.call_as("chain_getBlock", json!([height]))
    }

    pub fn block(&self, hash: &Hash) -> Result<Option<Block>, CallError> {
        self.call_as("chain_getBlock", json!([hash]))
    }

    pub fn account(&self, address: &Address) -> Result<Account, CallError> {
        self.call_as("state_getAccount", json!([address]))
    }

    /// The account's value at `height` with the node's proof of it (the proof is not checked
    /// here: `chorus account --verify` does that).
    pub fn proven_account(&self, address: &Address, height: u64) -> Result<ProvenValue, CallError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Proof {
            height: u64,
            state_root: Hash,
            value: Option<String>,
        }
        #[derive(Deserialize)]
        struct Answer {
            proof: Proof,
        }
        let answer: Answer = self.call_as("state_getAccount", json!([address, height]))?;
        let Proof { height, state_root, value } = answer.proof;
        Ok(ProvenValue { height, state_root, value })
    }

    pub fn submit(&self, tx: &SignedTransaction) -> Result<Hash, CallError> {
        self.call_as("tx_submit", json!([hex::encode(codec::encode(tx))]))
    }

    pub fn tx(&self, hash: &Hash) -> Result<TxStatus, CallError> {
        #[derive(Deserialize)]
        struct Answer {
            status: String,
            height: Option<u64>,
            block: Option<Hash>,
        }
        let answer: Answer = self.call_as("tx_get", json!([hash]))?;
        let place = || match (answer.height, answer.block) {
            (Some(height), Some(block)) => Ok((height, block)),
            _ => Err(CallError::Malformed(format!("tx_get {hash}: {} without height and block", answer.status))),
        };
        match answer.status.as_str() {
            "unknown" => Ok(TxStatus::Unknown),
            "pending" => Ok(TxStatus::Pending),
            "included" => place().map(|(height, block)| TxStatus::Included { height, block }),
            "final" => place().map(|(height, block)| TxStatus::Final { height, block }),
            other => Err(CallError::Malformed(format!("tx_get {hash}: status {other:?}"))),
        }
    }

    pub fn status(&self) -> Result<Status, CallError> {
        self.call_as("node_status", json!([]))
    }

    pub fn peers(&self) -> Result<Peers, CallError> {
        self.call_as("node_peers", json!([]))
    }

    /// `admin_banPeer` (loopback only): disconnects the peer and refuses it for `secs`.
    pub fn ban_peer(&self, peer_id: &str, secs: Option<u64>) -> Result<(), CallError> {
        let params = match secs {
            Some(secs) => json!([peer_id, secs]),
            None => json!([peer_id]),
        };
        self.call("admin_banPeer", params).map(drop)
    }

    /// `admin_unbanPeer` (loopback only): lifts a ban and dials the peer again.
    pub fn unban_peer(&self, peer_id: &str) -> Result<(), CallError> {
        self.call("admin_unbanPeer", json!([peer_id])).map(drop)
    }
}

//! A typed, blocking JSON-RPC client for one node (README's method table), over HTTP. Its
//! answers are `chorus-rpc-types`'s wire types, the ones the node serializes.
//!
//! Blocking on purpose: tests call it from plain `#[test]` functions and from inside tokio
//! tests alike, where a client that needs its own runtime would panic.

use std::net::SocketAddr;
use std::time::Duration;

use chorus_chain::Address;
use chorus_chain::genesis::PeerIdText;
use chorus_chain::primitives::{Hash, Height};
use chorus_chain::tx::SignedTransaction;
pub use chorus_rpc_types::{
    Account, AccountProof, Block, BlockId, BlockRef, ChainWork, ErrorCode, Head, NodeStatus, Peers, TxInfo, TxStatus,
};
use chorus_rpc_types::{
    BanPeer, GetAccount, GetBlock, GetFinalized, GetHead, GetPeers, GetStatus, GetTx, Method, Request, SubmitTx,
    UnbanPeer,
};
use serde::{Deserialize, Deserializer};
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

/// A client for one node's RPC address, with the node's admin token if it was given one.
#[derive(Debug, Clone)]
pub struct Rpc {
    addr: SocketAddr,
    agent: ureq::Agent,
    admin_token: Option<String>,
}

impl Rpc {
    pub fn new(addr: SocketAddr) -> Rpc {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(CALL_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .new_agent();
        Rpc { addr, agent, admin_token: None }
    }

    /// Sends `token` (the content of the node's `DATA_DIR/rpc-admin.token`) with admin calls.
    pub fn with_admin_token(mut self, token: &str) -> Rpc {
        self.admin_token = Some(token.trim().to_owned());
        self
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// One call with positional parameters: the result, or the node's error.
    pub fn call(&self, method: &str, params: Value) -> Result<Value, CallError> {
        /// A JSON-RPC response: a result (`null` included) or an error.
        #[derive(Deserialize)]
        struct Response {
            #[serde(default, deserialize_with = "present")]
            result: Option<Value>,
            error: Option<ErrorObject>,
        }
        #[derive(Deserialize)]
        struct ErrorObject {
            code: i64,
            message: String,
        }
        /// `Some` whenever the field is there, `null` too.
        fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
            Value::deserialize(deserializer).map(Some)
        }
        let request = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
        let admin = Method::from_name(method).is_some_and(Method::is_admin);
        let token = self.admin_token.as_deref().filter(|_| admin);
        let (status, body) = self.send(request.to_string().as_bytes(), token)?;
        let response: Response = serde_json::from_str(&body)
            .map_err(|error| CallError::Malformed(format!("{method}: HTTP {status}, {error}: {body}")))?;
        match response {
            Response { error: Some(ErrorObject { code, message }), .. } => Err(CallError::Rpc { code, message }),
            Response { result: Some(result), error: None } => Ok(result),
            Response { result: None, error: None } => {
                Err(CallError::Malformed(format!("{method}: HTTP {status}, neither result nor error: {body}")))
            }
        }
    }

    /// One call of a wire method, its result read as the method's result type.
    pub fn request<R: Request>(&self, request: &R) -> Result<R::Response, CallError> {
        let method = R::METHOD.name();
        let params = serde_json::to_value(request)
            .unwrap_or_else(|error| panic!("invariant: {method}'s parameters serialize to JSON: {error}"));
        let result = self.call(method, params)?;
        serde_json::from_value(result.clone())
            .map_err(|error| CallError::Malformed(format!("{method}: {error}: {result}")))
    }

    /// Posts raw bytes and returns the HTTP status and body: for tests of the HTTP layer.
    pub fn post(&self, body: &[u8]) -> Result<(u16, String), CallError> {
        self.send(body, None)
    }

    /// Posts raw bytes, with `admin_token` as a bearer token if given.
    fn send(&self, body: &[u8], admin_token: Option<&str>) -> Result<(u16, String), CallError> {
        let mut request = self.agent.post(self.url()).header("content-type", "application/json");
        if let Some(token) = admin_token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let mut response = request.send(body).map_err(|error| CallError::Unreachable(error.to_string()))?;
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
        self.request(&GetHead)
    }

    pub fn finalized(&self) -> Result<Option<BlockRef>, CallError> {
        self.request(&GetFinalized)
    }

    pub fn block_at(&self, height: Height) -> Result<Option<Block>, CallError> {
        self.request(&GetBlock { id: BlockId::Height(height) })
    }

    pub fn block(&self, hash: &Hash) -> Result<Option<Block>, CallError> {
        self.request(&GetBlock { id: BlockId::Hash(*hash) })
    }

    /// The account at the node's head.
    pub fn account(&self, address: &Address) -> Result<Account, CallError> {
        self.request(&GetAccount { address: *address, proof_height: None })
    }

    /// The account's value at `height` with the node's proof of it (the proof is not checked
    /// here: `chorus account --verify` does that).
    pub fn proven_account(&self, address: &Address, height: Height) -> Result<AccountProof, CallError> {
        let account = self.request(&GetAccount { address: *address, proof_height: Some(height) })?;
        let proof = account.proof.ok_or_else(|| {
            CallError::Malformed(format!("state_getAccount {address} at {height}: no proof in the answer"))
        })?;
        if proof.height != height {
            return Err(CallError::Malformed(format!(
                "state_getAccount {address} at {height}: a proof at {}",
                proof.height
            )));
        }
        Ok(proof)
    }

    pub fn submit(&self, tx: &SignedTransaction) -> Result<Hash, CallError> {
        self.request(&SubmitTx { tx: tx.clone() })
    }

    pub fn tx(&self, hash: &Hash) -> Result<TxStatus, CallError> {
        let info = self.request(&GetTx { hash: *hash })?;
        if info.hash != *hash {
            return Err(CallError::Malformed(format!("tx_get {hash}: the answer is about {}", info.hash)));
        }
        Ok(info.status)
    }

    pub fn status(&self) -> Result<NodeStatus, CallError> {
        self.request(&GetStatus)
    }

    pub fn peers(&self) -> Result<Peers, CallError> {
        self.request(&GetPeers)
    }

    /// `admin_banPeer` (loopback only, with the admin token): disconnects the peer and refuses it for `secs`.
    pub fn ban_peer(&self, peer_id: &PeerIdText, secs: Option<u64>) -> Result<(), CallError> {
        self.request(&BanPeer { peer_id: peer_id.clone(), secs })
    }

    /// `admin_unbanPeer` (loopback only, with the admin token): lifts a ban and dials the peer again.
    pub fn unban_peer(&self, peer_id: &PeerIdText) -> Result<(), CallError> {
        self.request(&UnbanPeer { peer_id: peer_id.clone() })
    }
}

//! The error codes: JSON-RPC's own and Chorus's, with README's meaning of each.
//!
//! Stable: clients match on the numbers. README's table lists exactly these (a test in this
//! module compares them row by row).

/// Every error code `chorusd` answers with. The message beside the code says what was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(i32)]
pub enum ErrorCode {
    /// The body is not JSON.
    ParseError = -32700,
    /// Not a JSON-RPC request.
    InvalidRequest = -32600,
    /// No such method.
    MethodNotFound = -32601,
    /// Wrong parameters (count or type).
    InvalidParams = -32602,
    /// The transaction is not hex, or its bytes are not a canonical transaction.
    TxUndecodable = 1001,
    /// Fails a stateless check: signature, chain id, size, fields.
    TxInvalid = 1002,
    /// The sender's nonce is already used.
    TxNonceUsed = 1003,
    /// The nonce is further ahead than the mempool holds.
    TxNonceTooFarAhead = 1004,
    /// The fee is below the chain's minimum.
    TxFeeTooLow = 1005,
    /// The same transaction is already pending.
    TxDuplicate = 1006,
    /// A pending transaction has this nonce and the new fee is not enough higher.
    TxReplacementFeeTooLow = 1007,
    /// The sender has as many pending transactions as one sender may (in all, or waiting after
    /// a nonce gap).
    TxSenderFull = 1008,
    /// The mempool is full and the fee does not beat the lowest pending one.
    MempoolFull = 1009,
    /// The sender's balance does not cover this transaction and its other pending ones.
    TxInsufficientBalance = 1010,
    /// An address that is not `chorus1...` with a valid checksum.
    InvalidAddress = 2001,
    /// A hash that is not 64 hex digits.
    InvalidHash = 2002,
    /// A proof was asked for a height the node does not have.
    ProofUnavailable = 2003,
    /// This client address sent calls faster than its rate limit (`limits::RPC_CALLS_PER_SEC_MAX`
    /// unless the node sets `--rpc-rate-limit`).
    RateLimited = 3001,
    /// An admin method on an RPC server that does not listen on loopback.
    AdminNotAllowed = 4001,
    /// A peer id that does not parse.
    InvalidPeerId = 4002,
    /// An admin method without the node's admin token (`Authorization: Bearer`), or a wrong one.
    AdminUnauthorized = 4003,
    /// A Raft membership change was refused; `data.reason` names why (`not_leader`,
    /// `change_pending`, `not_caught_up`, `below_quorum`, `removed_id_reused`, `unknown_peer`,
    /// ...) and, for `not_leader`, `data.leader` is the leader's member id.
    MembershipRefused = 4010,
    /// The node is shutting down or its store failed.
    NodeUnavailable = 5001,
}

impl ErrorCode {
    /// Every code, in README's order.
    pub const ALL: [ErrorCode; 23] = [
        ErrorCode::ParseError,
        ErrorCode::InvalidRequest,
        ErrorCode::MethodNotFound,
        ErrorCode::InvalidParams,
        ErrorCode::TxUndecodable,
        ErrorCode::TxInvalid,
        ErrorCode::TxNonceUsed,
        ErrorCode::TxNonceTooFarAhead,
        ErrorCode::TxFeeTooLow,
        ErrorCode::TxDuplicate,
        ErrorCode::TxReplacementFeeTooLow,
        ErrorCode::TxSenderFull,
        ErrorCode::MempoolFull,
        ErrorCode::TxInsufficientBalance,
        ErrorCode::InvalidAddress,
        ErrorCode::InvalidHash,
        ErrorCode::ProofUnavailable,
        ErrorCode::RateLimited,
        ErrorCode::AdminNotAllowed,
        ErrorCode::InvalidPeerId,
        ErrorCode::AdminUnauthorized,
        ErrorCode::MembershipRefused,
        ErrorCode::NodeUnavailable,
    ];

    /// The number on the wire.
    pub const fn code(self) -> i32 {
        self as i32
    }

    /// The code of a number; `None` for one `chorusd` does not answer with.
    pub fn from_code(code: i64) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|known| i64::from(known.code()) == code)
    }

    /// What the code means, worded as README's table words it.
    pub const fn meaning(self) -> &'static str {
        match self {
            ErrorCode::ParseError => "the body is not JSON",
            ErrorCode::InvalidRequest => "not a JSON-RPC request",
            ErrorCode::MethodNotFound => "no such method",
            ErrorCode::InvalidParams => {
                "wrong parameters (count or type; parameters are positional, and a method refuses more than `rpc.discover` lists for it)"
            }
            ErrorCode::TxUndecodable => "the transaction is not hex or does not decode to a canonical transaction",
            ErrorCode::TxInvalid => "the transaction fails a stateless check (signature, chain id, fields)",
            ErrorCode::TxNonceUsed => "the nonce is already used (`nonce 7 already used, next is 9`)",
            ErrorCode::TxNonceTooFarAhead => "the nonce is further ahead than the mempool holds",
            ErrorCode::TxFeeTooLow => "the fee is below the chain's minimum",
            ErrorCode::TxDuplicate => "the same transaction is already pending",
            ErrorCode::TxReplacementFeeTooLow => {
                "a pending transaction has this nonce and the new fee is not enough higher"
            }
            ErrorCode::TxSenderFull => "the sender has the most pending transactions one sender may",
            ErrorCode::MempoolFull => "the mempool is full and the fee does not beat the lowest pending one",
            ErrorCode::TxInsufficientBalance => {
                "the balance does not cover the transaction and the sender's other pending ones \
                 (`insufficient balance: needs 1005 ..., has 0`)"
            }
            ErrorCode::InvalidAddress => "not a `chorus1...` address with a valid checksum",
            ErrorCode::InvalidHash => "not a 64-hex-digit hash",
            ErrorCode::ProofUnavailable => "no proof at that height",
            ErrorCode::RateLimited => {
                "this client address sent calls faster than it may (`limits::RPC_CALLS_PER_SEC_MAX`, or `--rpc-rate-limit`)"
            }
            ErrorCode::AdminNotAllowed => "an admin method (`admin_*`) on an RPC that does not listen on loopback",
            ErrorCode::InvalidPeerId => "a peer id that does not parse",
            ErrorCode::AdminUnauthorized => {
                "an admin method without `Authorization: Bearer TOKEN`, TOKEN being the content of \
                 `DATA_DIR/rpc-admin.token` (new at each start), or with another token"
            }
            ErrorCode::MembershipRefused => {
                "a Raft membership change was refused; `data.reason` says why (`not_leader` with \
                 `data.leader`, `change_pending`, `not_caught_up`, `below_quorum`, `removed_id_reused`, \
                 `unknown_peer`, ...)"
            }
            ErrorCode::NodeUnavailable => "the node is shutting down, or halted (`node_status` says why)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// README's table of codes, row by row: `(code, meaning)`.
    fn readme_rows() -> Vec<(i64, String)> {
        let readme = include_str!("../../../README.md");
        let table = readme.split("| code | meaning |").nth(1).expect("README has the table of error codes");
        table
            .lines()
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .map(|line| {
                let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
                let [code, meaning] = cells.as_slice() else { panic!("a row of two cells: {line}") };
                (code.parse().unwrap_or_else(|_| panic!("a number: {code}")), (*meaning).to_owned())
            })
            .collect()
    }

    #[test]
    fn readme_lists_exactly_these_codes_with_these_meanings() {
        let ours: Vec<(i64, String)> =
            ErrorCode::ALL.iter().map(|code| (i64::from(code.code()), code.meaning().to_owned())).collect();
        assert_eq!(readme_rows(), ours);
    }

    #[test]
    fn codes_map_back_and_unknown_ones_do_not() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_code(i64::from(code.code())), Some(code));
        }
        assert_eq!(ErrorCode::from_code(-32603), None, "internal errors are not one of ours");
        assert_eq!(ErrorCode::from_code(1011), None);
    }
}

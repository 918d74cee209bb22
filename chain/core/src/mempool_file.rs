//! The file a node that stops cleanly keeps its pending transactions in (`mempool.bin`), and
//! offers again at start-up: an 8-byte magic, then each transaction's canonical encoding after
//! its length. A file is read whole (at most [`limits::MEMPOOL_FILE_BYTES_MAX`]) and strictly,
//! so what decodes encodes to the same bytes; the `mempool_file` fuzz target checks both.

use crate::codec;
use crate::limits;
use crate::tx::SignedTransaction;

/// The first bytes of a mempool file (format version 1).
pub const FILE_MAGIC: &[u8; 8] = b"chorusm1";

/// Why a mempool file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("not a mempool file (no {:?} header)", std::str::from_utf8(FILE_MAGIC).unwrap_or("?"))]
    Magic,
    #[error("{size_bytes} bytes, limit {}", limits::MEMPOOL_FILE_BYTES_MAX)]
    TooLarge { size_bytes: u64 },
    #[error("cut short at byte {at}")]
    Truncated { at: usize },
    #[error("transaction {index}: {error}")]
    Transaction { index: usize, error: codec::CodecError },
}

/// A mempool file: the magic, then each transaction's canonical encoding after its length
/// (u32, little-endian).
pub fn encode(txs: &[SignedTransaction]) -> Vec<u8> {
    let mut out = FILE_MAGIC.to_vec();
    for tx in txs {
        let bytes = codec::encode(tx);
        out.extend_from_slice(&u32::try_from(bytes.len()).expect("invariant: a transaction is small").to_le_bytes());
        out.extend_from_slice(&bytes);
    }
    out
}

/// Reads a mempool file strictly: the size limit, the header, every length and every
/// transaction's canonical decoding.
pub fn decode(bytes: &[u8]) -> Result<Vec<SignedTransaction>, FileError> {
    if bytes.len() as u64 > limits::MEMPOOL_FILE_BYTES_MAX {
        return Err(FileError::TooLarge { size_bytes: bytes.len() as u64 });
    }
    let mut rest = bytes.strip_prefix(FILE_MAGIC.as_slice()).ok_or(FileError::Magic)?;
    let mut txs = Vec::new();
    while !rest.is_empty() {
        let at = bytes.len().saturating_sub(rest.len());
        let (length, after) = rest.split_first_chunk::<4>().ok_or(FileError::Truncated { at })?;
        let length = u32::from_le_bytes(*length) as usize;
        let (tx, after) = after.split_at_checked(length).ok_or(FileError::Truncated { at })?;
        let tx = codec::decode(tx).map_err(|error| FileError::Transaction { index: txs.len(), error })?;
        txs.push(tx);
        rest = after;
    }
    Ok(txs)
}

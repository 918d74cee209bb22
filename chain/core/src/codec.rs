//! The one encoding of every consensus value: bincode 2.0.1, fixed-width integers, little endian.
//!
//! All bytes that are hashed, signed, stored or sent go through [`encode`] and [`decode`]; no
//! other module or crate names bincode: derives and hand-written impls take its traits from
//! here ([`Encode`], [`Decode`] and [`backend`]). Decoding is strict: input over the type's size limit, trailing
//! bytes and non-canonical input (anything that does not re-encode to the same bytes) are
//! refused with a typed [`CodecError`]. Golden vectors in `tests/vectors/` pin the format.
//!
//! Decoding is bounded twice, and only [`decode`] decodes, only a [`Canonical`] type (which
//! names its own limit): the input's length is checked against the type's `BYTES_MAX` before
//! anything is read, and what the decoder may reserve for the values it builds is a budget
//! proportional to that length ([`limits::DECODE_ALLOCATION_PER_INPUT_BYTE`]), not one budget
//! for every type. A length prefix that promises more elements than the bytes left could hold
//! is refused before its container is allocated ([`CodecError::ClaimsBeyondInput`]), so a few
//! bytes make the decoder reserve a few kilobytes at most. Bincode takes its budget as a
//! constant of the configuration's type; [`decode`] picks the smallest of a ladder of such
//! constants (powers of two) that covers the input's budget.

use bincode::config::{Configuration, Fixint, LittleEndian};
use bincode::error::DecodeError;

use crate::limits;

pub use bincode::{Decode, Encode};

/// The encoding library's traits, modules and macro that the `Encode` and `Decode` derives expand
/// to, and that hand-written `Decode` impls name (`backend::de::Decoder`,
/// `backend::error::DecodeError`, `backend::impl_borrow_decode!`). A derive outside this crate
/// points at it with `#[bincode(crate = "chorus_chain::codec::backend")]` (the derive's helper
/// attribute carries the library's name), so no other crate depends on the library.
pub mod backend {
    pub use bincode::{BorrowDecode, Decode, Encode, de, enc, error, impl_borrow_decode};
}

/// The format; decoding adds a budget ([`decode_within_budget`]), encoding needs none.
const CONFIG: Configuration<LittleEndian, Fixint> =
    bincode::config::standard().with_fixed_int_encoding().with_little_endian();

/// A value with a canonical encoding and a size limit; the only kind of value [`decode`] decodes.
pub trait Canonical: Encode + Decode<()> {
    /// Largest accepted encoding of this type, from [`limits`]; at most
    /// [`limits::DECODE_BYTES_MAX`] (checked when [`decode`] is instantiated for the type).
    const BYTES_MAX: u32;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("{what} is {size_bytes} bytes, limit {limit_bytes}")]
    TooLarge { what: &'static str, size_bytes: usize, limit_bytes: u32 },
    #[error("{what} could not be decoded: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("{what} has {trailing_bytes} trailing bytes")]
    TrailingBytes { what: &'static str, trailing_bytes: usize },
    #[error("{what} is not in canonical form")]
    NonCanonical { what: &'static str },
    /// A length prefix promises more than the input's bytes could hold: refused before the
    /// container it sizes is allocated.
    #[error("{what} of {size_bytes} bytes declares more content than that")]
    ClaimsBeyondInput { what: &'static str, size_bytes: usize },
}

/// Encodes `value`. Encoding a well-formed value cannot fail.
pub fn encode<T: Encode>(value: &T) -> Vec<u8> {
    bincode::encode_to_vec(value, CONFIG).expect("invariant: encoding into a Vec has no I/O and no size limit on write")
}

/// Appends the encoding of `value` to `out`.
pub fn encode_into<T: Encode>(value: &T, out: &mut Vec<u8>) {
    bincode::encode_into_std_write(value, out, CONFIG).expect("invariant: writing into a Vec cannot fail");
}

/// Decodes exactly one canonical `T` from `bytes`.
pub fn decode<T: Canonical>(bytes: &[u8]) -> Result<T, CodecError> {
    const { assert!(T::BYTES_MAX <= limits::DECODE_BYTES_MAX, "a type's limit is within the codec's") };
    let what = short_type_name::<T>();
    if bytes.len() > T::BYTES_MAX as usize {
        return Err(CodecError::TooLarge { what, size_bytes: bytes.len(), limit_bytes: T::BYTES_MAX });
    }
    let (value, read) = decode_within_budget::<T>(bytes).map_err(|error| match error {
        DecodeError::LimitExceeded => CodecError::ClaimsBeyondInput { what, size_bytes: bytes.len() },
        error => CodecError::Malformed { what, reason: error.to_string() },
    })?;
    if read != bytes.len() {
        return Err(CodecError::TrailingBytes { what, trailing_bytes: bytes.len().saturating_sub(read) });
    }
    // Re-encode and compare: catches every form bincode accepts but would not produce.
    if encode(&value) != bytes {
        return Err(CodecError::NonCanonical { what });
    }
    Ok(value)
}

/// Decodes one canonical `T` from the front of `bytes` and says how many bytes it took: a
/// value encoded first in a larger one (a block's header) read without decoding the rest.
/// Bounded and strict as [`decode`] is, but for trailing bytes.
pub fn decode_front<T: Canonical>(bytes: &[u8]) -> Result<(T, usize), CodecError> {
    const { assert!(T::BYTES_MAX <= limits::DECODE_BYTES_MAX, "a type's limit is within the codec's") };
    let what = short_type_name::<T>();
    let (front, _) = bytes.split_at(bytes.len().min(T::BYTES_MAX as usize));
    let (value, read) = decode_within_budget::<T>(front).map_err(|error| match error {
        DecodeError::LimitExceeded => CodecError::ClaimsBeyondInput { what, size_bytes: front.len() },
        error => CodecError::Malformed { what, reason: error.to_string() },
    })?;
    if front.get(..read) != Some(encode(&value).as_slice()) {
        return Err(CodecError::NonCanonical { what });
    }
    Ok((value, read))
}

/// Decodes one `T` from the front of `bytes` with an allocation budget of
/// [`limits::DECODE_ALLOCATION_PER_INPUT_BYTE`] per input byte, rounded up to a rung of the
/// ladder. Bincode charges a container's elements' in-memory size against the budget before
/// allocating it and each decoded value's bytes as it reads them; an honest encoding stays
/// within the budget because no element takes more than that many bytes of memory per byte of
/// its encoding.
fn decode_within_budget<T: Decode<()>>(bytes: &[u8]) -> Result<(T, usize), DecodeError> {
    let budget_bytes = bytes.len().saturating_mul(limits::DECODE_ALLOCATION_PER_INPUT_BYTE as usize);
    macro_rules! ladder {
        ($($log2:literal)+) => {$(
            if budget_bytes <= 1 << $log2 {
                return bincode::decode_from_slice(bytes, CONFIG.with_limit::<{ 1 << $log2 }>());
            }
        )+};
    }
    // From 4 KiB, which covers every small value, to the budget of the largest input any type
    // may declare.
    const _: () = assert!(
        limits::DECODE_BYTES_MAX as u64 * limits::DECODE_ALLOCATION_PER_INPUT_BYTE as u64 <= 1 << 29,
        "the ladder's top rung covers the largest input's budget"
    );
    ladder!(12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29);
    // Unreachable: `decode` checked the input against a type limit the ladder covers.
    Err(DecodeError::LimitExceeded)
}

fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Encode, Decode)]
    struct Pair {
        a: u32,
        b: Vec<u8>,
    }
    impl Canonical for Pair {
        const BYTES_MAX: u32 = 64;
    }

    #[test]
    fn round_trip_and_fixed_width() {
        let pair = Pair { a: 1, b: vec![7, 8] };
        let bytes = encode(&pair);
        assert_eq!(bytes, [1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 7, 8]);
        assert_eq!(decode::<Pair>(&bytes), Ok(pair));
    }

    #[test]
    fn rejects_trailing_oversize_truncated() {
        let mut bytes = encode(&Pair { a: 1, b: vec![] });
        bytes.push(0);
        assert!(matches!(decode::<Pair>(&bytes), Err(CodecError::TrailingBytes { trailing_bytes: 1, .. })));
        let big = encode(&Pair { a: 1, b: vec![0; 100] });
        assert!(matches!(decode::<Pair>(&big), Err(CodecError::TooLarge { size_bytes: 112, .. })));
        assert!(matches!(decode::<Pair>(&big[..5]), Err(CodecError::Malformed { .. })));
    }

    #[test]
    fn a_value_decodes_from_the_front_of_a_larger_one_strictly() {
        let pair = Pair { a: 1, b: vec![7, 8] };
        let mut bytes = encode(&pair);
        let taken = bytes.len();
        bytes.extend_from_slice(&[9; 100]);
        assert_eq!(decode_front::<Pair>(&bytes), Ok((pair, taken)));
        assert!(matches!(decode_front::<Pair>(&bytes[..5]), Err(CodecError::Malformed { .. })));
        // A length past the type's limit is cut at the limit, so it cannot be read.
        let big = encode(&Pair { a: 1, b: vec![0; 100] });
        assert!(decode_front::<Pair>(&big).is_err());
        // A block's header is its first field.
        let block = crate::Block { header: smallest_header(), body: crate::Body::default() };
        let encoded = encode(&block);
        assert_eq!(decode_front::<crate::Header>(&encoded), Ok((block.header, encode(&smallest_header()).len())));
    }

    #[test]
    fn rejects_length_claims_beyond_input() {
        // Claims 2^40 bytes follow: refused without allocating them.
        let mut bytes = vec![1, 0, 0, 0];
        bytes.extend_from_slice(&(1u64 << 40).to_le_bytes());
        assert_eq!(decode::<Pair>(&bytes), Err(CodecError::ClaimsBeyondInput { what: "Pair", size_bytes: 12 }));
        // The demonstrated `tx_submit`: the chain id's length claims 60 MiB of a 9-byte input.
        let tx_submit = [0x00, 0x00, 0xc0, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00];
        assert_eq!(
            decode::<crate::SignedTransaction>(&tx_submit),
            Err(CodecError::ClaimsBeyondInput { what: "SignedTransaction", size_bytes: 9 })
        );
    }

    fn smallest_header() -> crate::Header {
        use crate::primitives::{Hash, Height, Timestamp};
        crate::Header {
            parent: Hash::ZERO,
            height: Height::GENESIS,
            timestamp: Timestamp::from_millis(0),
            txs_root: Hash::ZERO,
            votes_root: Hash::ZERO,
            state_root: Hash::ZERO,
            proposer: crate::Address([0; 32]),
            seal: crate::Seal::None,
        }
    }

    /// The budget's premise: no element of a decoded container takes more memory than
    /// `DECODE_ALLOCATION_PER_INPUT_BYTE` bytes per byte of its smallest encoding. Every type
    /// that a decoded value holds in a `Vec` (or `String`) is listed, with its smallest value.
    #[test]
    fn every_container_element_fits_the_budget() {
        use crate::primitives::{Amount, ChainId, Hash, Height};
        use crate::state::Unbonding;
        use crate::{Address, Block, Body, Signature, SignedTransaction, Transaction, TxKind, Vote};

        fn check<T: Encode>(name: &str, smallest: T) {
            let memory_bytes = size_of::<T>();
            let encoded_bytes = encode(&smallest).len();
            println!("{name}: {memory_bytes} bytes in memory, at least {encoded_bytes} encoded");
            assert!(
                memory_bytes <= encoded_bytes * limits::DECODE_ALLOCATION_PER_INPUT_BYTE as usize,
                "{name}: {memory_bytes} bytes in memory for {encoded_bytes} encoded"
            );
        }
        let header = smallest_header();
        let tx = SignedTransaction {
            tx: Transaction {
                chain_id: ChainId::new("a").expect("a valid chain id"),
                sender: Address([0; 32]),
                nonce: 0,
                fee: Amount::ZERO,
                kind: TxKind::RegisterDelegate,
            },
            signature: Signature([0; 64]),
        };
        let checkpoint = crate::tx::Checkpoint { height: Height::GENESIS, slot: 0, hash: Hash::ZERO };
        let vote =
            Vote { voter: Address([0; 32]), source: checkpoint, target: checkpoint, signature: Signature([0; 64]) };
        check("u8 (Vec<u8>, String)", 0u8);
        check("Hash", Hash::ZERO);
        check("Address", Address([0; 32]));
        check("Unbonding", Unbonding { amount: Amount::ZERO, release_at: Height::GENESIS });
        check("Vote", vote);
        check("SignedTransaction", tx);
        check("Block", Block { header: header.clone(), body: Body { txs: Vec::new(), votes: Vec::new() } });
        check("Header", header);
        // The store's undo record: changed entries and tree node keys.
        check("(Vec<u8>, Option<Vec<u8>>)", (Vec::<u8>::new(), None::<Vec<u8>>));
        check("Vec<u8>", Vec::<u8>::new());
    }

    /// Honest values at their limits decode: the budget is not tighter than the format.
    #[test]
    fn a_full_block_of_the_smallest_transactions_decodes() {
        let genesis = crate::testing::genesis(1, 1_000);
        let tx = crate::testing::signed(&genesis, &crate::testing::key(0), 0, crate::TxKind::RegisterDelegate);
        let block = crate::Block {
            header: smallest_header(),
            body: crate::Body { txs: vec![tx; limits::BLOCK_TXS_MAX as usize], votes: Vec::new() },
        };
        let bytes = encode(&block);
        assert!(bytes.len() <= limits::BLOCK_BYTES_MAX as usize, "{} bytes", bytes.len());
        assert_eq!(decode::<crate::Block>(&bytes).map(|decoded| decoded == block), Ok(true));
    }
}

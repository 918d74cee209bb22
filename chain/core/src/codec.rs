//! The one encoding of every consensus value: bincode 2.0.1, fixed-width integers, little endian.
//!
//! All bytes that are hashed, signed, stored or sent go through [`encode`] and [`decode`]; no
//! other module or crate names bincode: derives and hand-written impls take its traits from
//! here ([`Encode`], [`Decode`] and [`backend`]). Decoding is strict: input over the type's size limit, trailing
//! bytes and non-canonical input (anything that does not re-encode to the same bytes) are
//! refused with a typed [`CodecError`]. Golden vectors in `tests/vectors/` pin the format.

use bincode::config::{Configuration, Fixint, Limit, LittleEndian};

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

type Config = Configuration<LittleEndian, Fixint, Limit<{ limits::DECODE_BYTES_MAX as usize }>>;

const CONFIG: Config = bincode::config::standard()
    .with_fixed_int_encoding()
    .with_little_endian()
    .with_limit::<{ limits::DECODE_BYTES_MAX as usize }>();

/// A value with a canonical encoding and a size limit.
pub trait Canonical: Encode + Decode<()> {
    /// Largest accepted encoding of this type, from [`limits`].
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
    let what = short_type_name::<T>();
    if bytes.len() > T::BYTES_MAX as usize {
        return Err(CodecError::TooLarge { what, size_bytes: bytes.len(), limit_bytes: T::BYTES_MAX });
    }
    let (value, read) = bincode::decode_from_slice::<T, _>(bytes, CONFIG)
        .map_err(|error| CodecError::Malformed { what, reason: error.to_string() })?;
    if read != bytes.len() {
        return Err(CodecError::TrailingBytes { what, trailing_bytes: bytes.len().saturating_sub(read) });
    }
    // Re-encode and compare: catches every form bincode accepts but would not produce.
    if encode(&value) != bytes {
        return Err(CodecError::NonCanonical { what });
    }
    Ok(value)
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
    fn rejects_length_claims_beyond_input() {
        // Claims 2^40 bytes follow: refused without allocating them.
        let mut bytes = vec![1, 0, 0, 0];
        bytes.extend_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(matches!(decode::<Pair>(&bytes), Err(CodecError::Malformed { .. })));
    }
}

//! Consensus-critical scalar types: hashes, heights, amounts, timestamps and the chain id.
//!
//! Arithmetic is checked everywhere: there is no `impl Add`; overflow is an error value the
//! caller must handle. Positions ([`Height`]) and distances ([`BlockCount`]) are distinct types.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::codec::{Decode, Encode, backend};
use crate::limits;

/// Arithmetic that left its type's range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ArithError {
    #[error("arithmetic overflow")]
    Overflow,
    #[error("arithmetic underflow")]
    Underflow,
}

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Encode, Decode)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub const ZERO: Hash = Hash([0; 32]);

    /// SHA-256 of `data`.
    pub fn digest(data: &[u8]) -> Hash {
        Hash(Sha256::digest(data).into())
    }

    /// SHA-256 of a domain tag followed by `data`; tags keep hashes of different kinds of
    /// object from ever colliding.
    pub fn tagged(tag: &[u8], data: &[u8]) -> Hash {
        let mut hasher = Sha256::new();
        hasher.update((tag.len() as u64).to_le_bytes());
        hasher.update(tag);
        hasher.update(data);
        Hash(hasher.finalize().into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits, with or without a `0x` prefix.
    pub fn from_hex(text: &str) -> Result<Hash, HexError> {
        let digits = text.strip_prefix("0x").unwrap_or(text);
        let bytes = hex::decode(digits).map_err(|_| HexError::NotHex)?;
        let array: [u8; 32] =
            bytes.try_into().map_err(|bytes: Vec<u8>| HexError::WrongLength { expected: 32, got: bytes.len() })?;
        Ok(Hash(array))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    #[error("not a hex string")]
    NotHex,
    #[error("expected {expected} bytes of hex, got {got}")]
    WrongLength { expected: usize, got: usize },
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Hash::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// An amount of tokens in base units.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Encode, Decode)]
pub struct Amount(u128);

impl Amount {
    pub const ZERO: Amount = Amount(0);
    pub const MAX: Amount = Amount(u128::MAX);

    pub const fn new(base_units: u128) -> Amount {
        Amount(base_units)
    }

    pub const fn get(self) -> u128 {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn checked_add(self, rhs: Amount) -> Result<Amount, ArithError> {
        self.0.checked_add(rhs.0).map(Amount).ok_or(ArithError::Overflow)
    }

    pub fn checked_sub(self, rhs: Amount) -> Result<Amount, ArithError> {
        self.0.checked_sub(rhs.0).map(Amount).ok_or(ArithError::Underflow)
    }

    /// `self * permille / 1000`, rounded down.
    pub fn permille(self, permille: u16) -> Amount {
        let permille = u128::from(permille.min(1000));
        // (a / 1000) * p + (a % 1000) * p / 1000 cannot overflow for p <= 1000: the first term
        // is at most a - a % 1000, the second at most a % 1000.
        let whole = (self.0 / 1000).checked_mul(permille).expect("invariant: (a / 1000) * p <= a for p <= 1000");
        let rest = (self.0 % 1000).checked_mul(permille).expect("invariant: below 1000 * 1000") / 1000;
        Amount(whole.checked_add(rest).expect("invariant: the sum is at most a for p <= 1000"))
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Amount({})", self.0)
    }
}

/// JSON carries amounts as decimal strings: u128 does not fit a JSON number in most parsers.
impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Text(String),
            Number(u64),
        }
        match Repr::deserialize(deserializer)? {
            Repr::Number(number) => Ok(Amount(u128::from(number))),
            Repr::Text(text) => {
                if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(serde::de::Error::custom(format!(
                        "expected a non-negative integer amount in base units, got {text:?}"
                    )));
                }
                text.parse::<u128>()
                    .map(Amount)
                    .map_err(|_| serde::de::Error::custom(format!("amount {text} does not fit in 128 bits")))
            }
        }
    }
}

/// A block's position in the chain; genesis is height 0.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Encode, Decode, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Height(u64);

impl Height {
    pub const GENESIS: Height = Height(0);

    pub const fn new(height: u64) -> Height {
        Height(height)
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    pub fn next(self) -> Option<Height> {
        self.0.checked_add(1).map(Height)
    }

    pub fn prev(self) -> Option<Height> {
        self.0.checked_sub(1).map(Height)
    }

    pub fn checked_add(self, count: BlockCount) -> Result<Height, ArithError> {
        self.0.checked_add(count.0).map(Height).ok_or(ArithError::Overflow)
    }

    /// Blocks from `earlier` to `self`; `None` if `earlier` is above `self`.
    pub fn since(self, earlier: Height) -> Option<BlockCount> {
        self.0.checked_sub(earlier.0).map(BlockCount)
    }
}

impl fmt::Display for Height {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for Height {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A number of blocks: a distance between heights (e.g. the unbonding period).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Encode, Decode, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BlockCount(pub u64);

/// Milliseconds since the Unix epoch. Time enters consensus only through headers and events.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Encode, Decode, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub const fn from_millis(millis: u64) -> Timestamp {
        Timestamp(millis)
    }

    pub const fn as_millis(self) -> u64 {
        self.0
    }
}

/// The chain's name: 1 to 32 characters of `a-z`, `0-9`, `-`, `_` and `.`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Serialize)]
#[serde(transparent)]
pub struct ChainId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainIdError {
    #[error("chain id must be 1 to {} characters, got {got}", limits::CHAIN_ID_BYTES_MAX)]
    Length { got: usize },
    #[error("chain id may hold only a-z, 0-9, '-', '_' and '.', got {got:?}")]
    Character { got: char },
}

impl ChainId {
    pub fn new(name: &str) -> Result<ChainId, ChainIdError> {
        if name.is_empty() || name.len() > limits::CHAIN_ID_BYTES_MAX as usize {
            return Err(ChainIdError::Length { got: name.len() });
        }
        if let Some(bad) = name.chars().find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '-' | '_' | '.')) {
            return Err(ChainIdError::Character { got: bad });
        }
        Ok(ChainId(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainId({})", self.0)
    }
}

impl<Context> Decode<Context> for ChainId {
    fn decode<D: backend::de::Decoder<Context = Context>>(
        decoder: &mut D,
    ) -> Result<Self, backend::error::DecodeError> {
        let name = String::decode(decoder)?;
        ChainId::new(&name).map_err(|error| backend::error::DecodeError::OtherString(error.to_string()))
    }
}
backend::impl_borrow_decode!(ChainId);

impl<'de> Deserialize<'de> for ChainId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        ChainId::new(&name).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amount_checked_and_permille() {
        assert_eq!(Amount::MAX.checked_add(Amount::new(1)), Err(ArithError::Overflow));
        assert_eq!(Amount::ZERO.checked_sub(Amount::new(1)), Err(ArithError::Underflow));
        assert_eq!(Amount::new(1999).permille(500), Amount::new(999));
        assert_eq!(Amount::MAX.permille(1000), Amount::MAX);
        assert_eq!(Amount::MAX.permille(0), Amount::ZERO);
    }

    #[test]
    fn amount_json_forms() {
        assert_eq!(serde_json::from_str::<Amount>("\"340282366920938463463374607431768211455\"").unwrap(), Amount::MAX);
        assert_eq!(serde_json::from_str::<Amount>("12").unwrap(), Amount::new(12));
        for bad in ["\"-1\"", "\"1.5\"", "\"\"", "-3", "\"340282366920938463463374607431768211456\""] {
            assert!(serde_json::from_str::<Amount>(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn height_steps() {
        assert_eq!(Height::new(u64::MAX).next(), None);
        assert_eq!(Height::GENESIS.prev(), None);
        assert_eq!(Height::new(10).since(Height::new(4)), Some(BlockCount(6)));
        assert_eq!(Height::new(4).since(Height::new(10)), None);
    }

    #[test]
    fn chain_id_rules() {
        assert!(ChainId::new("chorus-dev.1").is_ok());
        assert_eq!(ChainId::new(""), Err(ChainIdError::Length { got: 0 }));
        assert_eq!(ChainId::new("Main"), Err(ChainIdError::Character { got: 'M' }));
        assert!(ChainId::new(&"a".repeat(33)).is_err());
    }

    #[test]
    fn hash_hex() {
        let hash = Hash::digest(b"abc");
        assert_eq!(hash.to_hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(Hash::from_hex(&format!("0x{hash}")), Ok(hash));
        assert_eq!(Hash::from_hex("abcd"), Err(HexError::WrongLength { expected: 32, got: 2 }));
    }
}

//! Keys, addresses and signatures under Chorus's one ed25519 validity rule.
//!
//! # The validity rule
//! A signature `(R, s)` by public key `A` on message `M` is valid if and only if:
//! 1. `s` is a canonical scalar (`s < L`);
//! 2. `A` and `R` are canonical encodings of curve points (decoding then re-encoding gives the
//!    same 32 bytes: no `y >= p`, no "negative zero" x);
//! 3. neither `A` nor `R` is of small order (order 1, 2, 4 or 8);
//! 4. the cofactored equation holds: `[8][s]B = [8]R + [8][k]A` with
//!    `k = SHA-512(R || A || M) mod L`.
//!
//! [`verify`] checks one signature, [`verify_batch`] many at once with random-linear-combination
//! batching; both apply steps 1 to 3 identically and both use the cofactored equation, so they
//! agree on every input (batching can only wrongly accept with probability about 2^-125, for
//! coefficients the signer cannot predict). Using the cofactorless equation in one path and the
//! cofactored one in the other is exactly the disagreement "Taming the many EdDSAs" (Chalkias,
//! Garillot, Nikolaenko 2020) warns about; `tests/eddsa_edge_cases.rs` records the verdict on
//! each of its vectors.
//!
//! Signing uses ed25519-dalek (RFC 8032); its signatures always satisfy the rule.

use std::fmt;
use std::sync::{Mutex, PoisonError};

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::Signer;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256, Sha512};
use zeroize::Zeroize;

use crate::codec::{Decode, Encode};
use crate::limits;
use crate::primitives::Hash;

/// Human-readable prefix of addresses.
pub const ADDRESS_HRP: &str = "chorus";

/// An account: an ed25519 public key, shown as bech32m `chorus1...`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct Address(pub [u8; 32]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("address {text:?} is not valid bech32m (mistyped? the checksum does not match): {reason}")]
    Checksum { text: String, reason: String },
    #[error("address has prefix {got:?}, expected {ADDRESS_HRP:?}")]
    Prefix { got: String },
    #[error("address holds {got} bytes, expected 32")]
    Length { got: usize },
}

impl Address {
    /// Parses `chorus1...` (or `CHORUS1...`), verifying the bech32m checksum and the prefix.
    pub fn parse(text: &str) -> Result<Address, AddressError> {
        use bech32::primitives::decode::CheckedHrpstring;
        let checked = CheckedHrpstring::new::<bech32::Bech32m>(text)
            .map_err(|error| AddressError::Checksum { text: text.to_owned(), reason: error.to_string() })?;
        let hrp = checked.hrp();
        // Either case, as BIP-173 has it (an all-capitals address fits QR codes' alphanumeric
        // mode); the checksum has already refused mixed case.
        if !hrp.as_str().eq_ignore_ascii_case(ADDRESS_HRP) {
            return Err(AddressError::Prefix { got: hrp.to_string() });
        }
        let bytes: Vec<u8> = checked.byte_iter().collect();
        let array: [u8; 32] = bytes.try_into().map_err(|bytes: Vec<u8>| AddressError::Length { got: bytes.len() })?;
        Ok(Address(array))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hrp = bech32::Hrp::parse_unchecked(ADDRESS_HRP);
        let text = bech32::encode::<bech32::Bech32m>(hrp, &self.0)
            .expect("invariant: 32 bytes under a 6-letter prefix is far below bech32m's length limit");
        f.write_str(&text)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

impl std::str::FromStr for Address {
    type Err = AddressError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Address::parse(text)
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Address::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// An ed25519 signature `R || s`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Encode, Decode)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(self.0))
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let bytes = hex::decode(&text).map_err(serde::de::Error::custom)?;
        let array: [u8; 64] =
            bytes.try_into().map_err(|_| serde::de::Error::custom("a signature is 64 bytes of hex"))?;
        Ok(Signature(array))
    }
}

/// A signing key. Its bytes never appear in `Debug` output; they are zeroized on drop.
#[derive(Clone)]
pub struct SecretKey(ed25519_dalek::SigningKey);

impl SecretKey {
    /// A key from a 32-byte seed (RFC 8032's secret key). The copy of the seed this function
    /// was given is zeroized; the caller's own is the caller's to zeroize.
    pub fn from_seed(mut seed: [u8; 32]) -> SecretKey {
        let key = SecretKey(ed25519_dalek::SigningKey::from_bytes(&seed));
        seed.zeroize();
        key
    }

    /// A fresh key from the operating system's randomness.
    pub fn generate() -> SecretKey {
        SecretKey::from_seed(rand::random())
    }

    /// The seed; for keystores only. The caller zeroizes the copy (`zeroize::Zeroizing`).
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn address(&self) -> Address {
        Address(self.0.verifying_key().to_bytes())
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message).to_bytes())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(address {}, secret hidden)", self.address())
    }
}

/// Why a signature is invalid under the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signature scalar s is not canonical (s >= L)")]
    NonCanonicalScalar,
    #[error("public key is not a canonical curve point encoding")]
    NonCanonicalKey,
    #[error("signature point R is not a canonical curve point encoding")]
    NonCanonicalR,
    #[error("public key is of small order")]
    SmallOrderKey,
    #[error("signature point R is of small order")]
    SmallOrderR,
    #[error("signature does not verify")]
    Equation,
}

/// One (key, message, signature) triple to check.
#[derive(Debug, Clone, Copy)]
pub struct SignedItem<'a> {
    pub signer: &'a Address,
    pub message: &'a [u8],
    pub signature: &'a Signature,
}

/// The parts of a signature that passed steps 1 to 3 of the rule.
struct Prepared {
    key: EdwardsPoint,
    r: EdwardsPoint,
    s: Scalar,
    k: Scalar,
}

/// Decodes a canonical point encoding: `y < p`, and no sign bit on `x = 0` (the points
/// `y = 1` and `y = -1`). Equivalent to "decompress, then compress gives the same bytes"
/// (checked in the tests) without the compression's field inversion.
fn decode_point(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
    if !is_canonical_encoding(bytes) {
        return None;
    }
    CompressedEdwardsY(*bytes).decompress()
}

/// `p = 2^255 - 19`, little endian.
const FIELD_MODULUS_LE: [u8; 32] = {
    let mut p = [0xff; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    p
};

/// `y = 1` and `y = -1 = p - 1`, little endian: the two points with `x = 0`.
const ONE_LE: [u8; 32] = {
    let mut one = [0; 32];
    one[0] = 1;
    one
};
const MINUS_ONE_LE: [u8; 32] = {
    let mut minus_one = FIELD_MODULUS_LE;
    minus_one[0] -= 1;
    minus_one
};

fn is_canonical_encoding(bytes: &[u8; 32]) -> bool {
    let mut y = *bytes;
    let sign = y[31] >> 7;
    y[31] &= 0x7f;
    // y < p, comparing from the most significant byte.
    let below_modulus =
        y.iter().rev().zip(FIELD_MODULUS_LE.iter().rev()).find(|(a, b)| a != b).is_some_and(|(a, b)| a < b);
    if !below_modulus {
        return false;
    }
    // x = 0 exactly when y = 1 or y = -1; its sign bit must then be clear.
    !(sign == 1 && (y == ONE_LE || y == MINUS_ONE_LE))
}

/// Public keys that passed steps 2 and 3 of the rule, decoded, by their bytes (sized by
/// [`limits::DECODED_KEY_CACHE_ENTRIES`]). Only keys that passed are kept, and a key is decoded
/// the same way whether it is found here or not, so the cache changes how long a check takes,
/// never its verdict. Keys are chosen by signers, so one may make its keys share a slot: they
/// then take turns in it, which costs only their own decompressions.
static DECODED_KEYS: KeyCache = KeyCache { shards: [const { Mutex::new(Vec::new()) }; KEY_CACHE_SHARDS] };

const KEY_CACHE_SHARDS: usize = limits::DECODED_KEY_CACHE_SHARDS as usize;
const KEY_CACHE_SLOTS_PER_SHARD: usize =
    (limits::DECODED_KEY_CACHE_ENTRIES / limits::DECODED_KEY_CACHE_SHARDS) as usize;

/// A direct-mapped table: a key's first byte picks its shard and the next two its slot, which
/// holds the last key that landed there. A shard's slots are allocated when its first key
/// arrives.
struct KeyCache {
    shards: [Mutex<KeySlots>; KEY_CACHE_SHARDS],
}

type KeySlots = Vec<Option<([u8; 32], EdwardsPoint)>>;

impl KeyCache {
    fn slot(&self, bytes: &[u8; 32]) -> (&Mutex<KeySlots>, usize) {
        let shard = usize::from(bytes[0]) % KEY_CACHE_SHARDS;
        let slot = usize::from(u16::from_le_bytes([bytes[1], bytes[2]])) % KEY_CACHE_SLOTS_PER_SHARD;
        (self.shards.get(shard).expect("invariant: reduced modulo the shard count"), slot)
    }

    fn get(&self, bytes: &[u8; 32]) -> Option<EdwardsPoint> {
        let (shard, slot) = self.slot(bytes);
        // A panic elsewhere while a shard was locked leaves whole entries only: take it anyway.
        let table = shard.lock().unwrap_or_else(PoisonError::into_inner);
        match table.get(slot) {
            Some(Some((cached, point))) if cached == bytes => Some(*point),
            _ => None,
        }
    }

    fn insert(&self, bytes: &[u8; 32], point: EdwardsPoint) {
        let (shard, slot) = self.slot(bytes);
        let mut table = shard.lock().unwrap_or_else(PoisonError::into_inner);
        if table.is_empty() {
            table.resize(KEY_CACHE_SLOTS_PER_SHARD, None);
        }
        if let Some(entry) = table.get_mut(slot) {
            *entry = Some((*bytes, point));
        }
    }
}

fn prepare(item: &SignedItem<'_>) -> Result<Prepared, SignatureError> {
    let (r_bytes, s_bytes) = item.signature.0.split_at(32);
    let r_bytes: [u8; 32] = r_bytes.try_into().expect("invariant: 64 = 32 + 32");
    let s_bytes: [u8; 32] = s_bytes.try_into().expect("invariant: 64 = 32 + 32");
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)).ok_or(SignatureError::NonCanonicalScalar)?;
    let cached_key = DECODED_KEYS.get(&item.signer.0);
    let key = match cached_key {
        Some(key) => key,
        None => decode_point(&item.signer.0).ok_or(SignatureError::NonCanonicalKey)?,
    };
    let r = decode_point(&r_bytes).ok_or(SignatureError::NonCanonicalR)?;
    if cached_key.is_none() {
        if key.is_small_order() {
            return Err(SignatureError::SmallOrderKey);
        }
        DECODED_KEYS.insert(&item.signer.0, key);
    }
    if r.is_small_order() {
        return Err(SignatureError::SmallOrderR);
    }
    let mut hasher = Sha512::new();
    hasher.update(r_bytes);
    hasher.update(item.signer.0);
    hasher.update(item.message);
    let k = Scalar::from_bytes_mod_order_wide(&hasher.finalize().into());
    Ok(Prepared { key, r, s, k })
}

/// Checks one signature under the rule.
pub fn verify(signer: &Address, message: &[u8], signature: &Signature) -> Result<(), SignatureError> {
    let prepared = prepare(&SignedItem { signer, message, signature })?;
    // [s]B - [k]A - R, times the cofactor, must be the identity.
    let sb_minus_ka = EdwardsPoint::vartime_double_scalar_mul_basepoint(&prepared.k, &-prepared.key, &prepared.s);
    if (sb_minus_ka - prepared.r).mul_by_cofactor().is_identity() { Ok(()) } else { Err(SignatureError::Equation) }
}

/// The first invalid signature of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("signature {index} of the batch is invalid: {error}")]
pub struct BatchError {
    pub index: usize,
    pub error: SignatureError,
}

/// Checks many signatures in one multiscalar multiplication. Accepts exactly when [`verify`]
/// accepts every item; on failure, names the first invalid one (found by checking singly).
pub fn verify_batch(items: &[SignedItem<'_>]) -> Result<(), BatchError> {
    let mut prepared = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        match prepare(item) {
            Ok(part) => prepared.push(part),
            Err(error) => {
                // An earlier item may fail its equation: the first invalid one is named (the
                // ed25519_batch fuzz target found a later malformed key named instead).
                let earlier = items.get(..index).expect("invariant: index < items.len()");
                return Err(verify_batch(earlier).err().unwrap_or(BatchError { index, error }));
            }
        }
    }
    if batch_equation_holds(items, &prepared) {
        return Ok(());
    }
    for (index, item) in items.iter().enumerate() {
        verify(item.signer, item.message, item.signature).map_err(|error| BatchError { index, error })?;
    }
    unreachable!("invariant: a failing batch equation has a failing member (rule shared by both paths)")
}

/// Checks `[8](sum z_i R_i + sum (z_i k_i) A_i - (sum z_i s_i) B) == 0`.
///
/// The 128-bit coefficients `z_i` are derived by hashing the whole batch, so they are fixed by
/// the signatures yet unpredictable to whoever made them (deterministic, no RNG in consensus).
fn batch_equation_holds(items: &[SignedItem<'_>], prepared: &[Prepared]) -> bool {
    let mut transcript = Sha256::new();
    transcript.update(b"chorus/ed25519-batch/v1");
    for item in items {
        transcript.update(item.signer.0);
        transcript.update(item.signature.0);
        transcript.update(Sha256::digest(item.message));
    }
    let seed: [u8; 32] = transcript.finalize().into();

    let n_terms = prepared.len().saturating_mul(2).saturating_add(1);
    let mut scalars = Vec::with_capacity(n_terms);
    let mut points = Vec::with_capacity(n_terms);
    let mut s_sum = Scalar::ZERO;
    for (index, part) in prepared.iter().enumerate() {
        let mut hasher = Sha256::new();
        hasher.update(seed);
        hasher.update((index as u64).to_le_bytes());
        let digest: [u8; 32] = hasher.finalize().into();
        let mut z_bytes = [0u8; 32];
        z_bytes[..16].copy_from_slice(&digest[..16]);
        let z = Scalar::from_bytes_mod_order(z_bytes);
        s_sum += z * part.s;
        scalars.push(z);
        points.push(part.r);
        scalars.push(z * part.k);
        points.push(part.key);
    }
    scalars.push(-s_sum);
    points.push(curve25519_dalek::constants::ED25519_BASEPOINT_POINT);
    EdwardsPoint::vartime_multiscalar_mul(scalars, points).mul_by_cofactor().is_identity()
}

/// Checks many signatures using all cores: the batch is cut into one chunk per thread, of at
/// most [`limits::SIGNATURE_BATCH_CHUNK_MAX`] signatures. Fewer than
/// [`limits::PARALLEL_SIGNATURES_MIN`] are checked on the calling thread, as one batch.
pub fn verify_batch_parallel(items: &[SignedItem<'_>]) -> Result<(), BatchError> {
    use rayon::prelude::*;
    if items.len() < limits::PARALLEL_SIGNATURES_MIN as usize {
        return verify_batch(items);
    }
    let n_threads = rayon::current_num_threads().max(1);
    let chunk_len = items.len().div_ceil(n_threads).max(1);
    let chunk_len = chunk_len.min(limits::SIGNATURE_BATCH_CHUNK_MAX as usize);
    items
        .par_chunks(chunk_len)
        .enumerate()
        .map(|(chunk_idx, chunk)| {
            verify_batch(chunk).map_err(|error| {
                let index = chunk_idx
                    .checked_mul(chunk_len)
                    .and_then(|start| start.checked_add(error.index))
                    .expect("invariant: the position of an item of `items` fits a usize");
                BatchError { index, ..error }
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .find_map(Result::err)
        .map_or(Ok(()), Err)
}

/// The hash of `message` under `tag`, which is what Chorus signs: signatures cover a
/// domain-separated 32-byte digest, never raw encodings.
pub fn signing_hash(tag: &[u8], message: &[u8]) -> Hash {
    Hash::tagged(tag, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_round_trip_and_typos() {
        let address = SecretKey::from_seed([7; 32]).address();
        let text = address.to_string();
        assert!(text.starts_with("chorus1"), "{text}");
        assert_eq!(Address::parse(&text), Ok(address));
        // All capitals is the same address (the rpc_params fuzz seed found it refused as a
        // wrong prefix); mixed case is not.
        assert_eq!(Address::parse(&text.to_uppercase()), Ok(address));
        let mixed = format!("CHORUS{}", &text[6..]);
        assert!(matches!(Address::parse(&mixed), Err(AddressError::Checksum { .. })), "{mixed}");
        // Change one character: the checksum catches it.
        let mut typo: Vec<char> = text.chars().collect();
        let last = typo.len() - 3;
        typo[last] = if typo[last] == 'q' { 'p' } else { 'q' };
        let typo: String = typo.into_iter().collect();
        assert!(matches!(Address::parse(&typo), Err(AddressError::Checksum { .. })));
        // Right checksum, wrong prefix.
        let other = bech32::encode::<bech32::Bech32m>(bech32::Hrp::parse("cosmos").unwrap(), &address.0).unwrap();
        assert_eq!(Address::parse(&other), Err(AddressError::Prefix { got: "cosmos".into() }));
        // bech32 (not bech32m) checksum is refused.
        let legacy = bech32::encode::<bech32::Bech32>(bech32::Hrp::parse("chorus").unwrap(), &address.0).unwrap();
        assert!(matches!(Address::parse(&legacy), Err(AddressError::Checksum { .. })));
        let short = bech32::encode::<bech32::Bech32m>(bech32::Hrp::parse("chorus").unwrap(), &[1; 20]).unwrap();
        assert_eq!(Address::parse(&short), Err(AddressError::Length { got: 20 }));
    }

    #[test]
    fn sign_verify_single_and_batch() {
        let keys: Vec<SecretKey> = (0..40u8).map(|i| SecretKey::from_seed([i; 32])).collect();
        let addresses: Vec<Address> = keys.iter().map(SecretKey::address).collect();
        let messages: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; usize::from(i)]).collect();
        let mut signatures: Vec<Signature> = keys.iter().zip(&messages).map(|(key, m)| key.sign(m)).collect();
        let items = |signatures: &[Signature]| -> Vec<(Address, Vec<u8>, Signature)> {
            addresses.iter().zip(&messages).zip(signatures).map(|((a, m), s)| (*a, m.clone(), *s)).collect()
        };
        let owned = items(&signatures);
        let refs: Vec<SignedItem<'_>> =
            owned.iter().map(|(signer, message, signature)| SignedItem { signer, message, signature }).collect();
        for item in &refs {
            assert_eq!(verify(item.signer, item.message, item.signature), Ok(()));
        }
        assert_eq!(verify_batch(&refs), Ok(()));
        assert_eq!(verify_batch_parallel(&refs), Ok(()));

        signatures[17].0[40] ^= 1;
        let owned = items(&signatures);
        let refs: Vec<SignedItem<'_>> =
            owned.iter().map(|(signer, message, signature)| SignedItem { signer, message, signature }).collect();
        let expected = Err(BatchError { index: 17, error: SignatureError::Equation });
        assert_eq!(verify_batch(&refs), expected);
        assert_eq!(verify_batch_parallel(&refs), expected);
        // Too few for the pool: checked in place, the same answer.
        let in_place = limits::PARALLEL_SIGNATURES_MIN as usize - 1;
        assert!(in_place > 17 && refs.len() >= limits::PARALLEL_SIGNATURES_MIN as usize);
        assert_eq!(verify_batch_parallel(&refs[..in_place]), expected);
        assert_eq!(verify(refs[17].signer, refs[17].message, refs[17].signature), Err(SignatureError::Equation));
    }

    #[test]
    fn the_key_cache_keeps_valid_keys_only_and_never_confuses_two_keys_of_one_slot() {
        // Two keys that land in one slot (a birthday search over the slot's 16 bits).
        let mut seen = std::collections::BTreeMap::new();
        let (first, second) = (0u32..)
            .find_map(|i| {
                let mut seed = [0u8; 32];
                seed[..4].copy_from_slice(&i.to_le_bytes());
                seed[4] = 0xc5;
                let (shard, slot) = DECODED_KEYS.slot(&SecretKey::from_seed(seed).address().0);
                let place = (std::ptr::from_ref(shard) as usize, slot);
                seen.insert(place, seed).map(|earlier| (SecretKey::from_seed(earlier), SecretKey::from_seed(seed)))
            })
            .expect("a collision within 2^32 keys");
        assert_ne!(first.address(), second.address());
        let message = b"one slot, two keys";
        let (first_signature, second_signature) = (first.sign(message), second.sign(message));
        for _ in 0..2 {
            // Each key in turn takes the slot; each check uses its own key's point.
            assert_eq!(verify(&first.address(), message, &first_signature), Ok(()));
            assert_eq!(DECODED_KEYS.get(&second.address().0), None);
            assert_eq!(verify(&second.address(), message, &first_signature), Err(SignatureError::Equation));
            assert_eq!(verify(&second.address(), message, &second_signature), Ok(()));
            assert!(DECODED_KEYS.get(&second.address().0).is_some());
            assert_eq!(verify(&first.address(), message, &second_signature), Err(SignatureError::Equation));
        }

        // A key that fails steps 2 or 3 is refused the same way each time and never kept.
        let identity = Address(EdwardsPoint::default().compress().0);
        let non_canonical = Address(FIELD_MODULUS_LE);
        for _ in 0..2 {
            assert_eq!(verify(&identity, message, &first_signature), Err(SignatureError::SmallOrderKey));
            assert_eq!(verify(&non_canonical, message, &first_signature), Err(SignatureError::NonCanonicalKey));
        }
        assert_eq!(DECODED_KEYS.get(&identity.0), None);
        assert_eq!(DECODED_KEYS.get(&non_canonical.0), None);
    }

    #[test]
    fn canonical_encoding_check_matches_a_round_trip() {
        let round_trip = |bytes: &[u8; 32]| {
            let compressed = CompressedEdwardsY(*bytes);
            compressed.decompress().is_some_and(|point| point.compress() == compressed)
        };
        let mut inputs: Vec<[u8; 32]> = Vec::new();
        // Every y from p - 24 to 2^255 - 1, with either sign bit, and y = 0, 1, 2.
        for low in 0u8..=0xff {
            let mut y = FIELD_MODULUS_LE;
            if low < 0xd4 {
                continue;
            }
            y[0] = low;
            inputs.push(y);
            y[31] |= 0x80;
            inputs.push(y);
        }
        for small in 0u8..3 {
            let mut y = [0u8; 32];
            y[0] = small;
            inputs.push(y);
            y[31] |= 0x80;
            inputs.push(y);
        }
        // And many hash-derived encodings (about half are on the curve).
        for i in 0u32..2_000 {
            inputs.push(Hash::digest(&i.to_le_bytes()).0);
        }
        for input in &inputs {
            assert_eq!(decode_point(input).is_some(), round_trip(input), "{}", hex::encode(input));
        }
    }

    #[test]
    fn secret_key_debug_hides_seed() {
        let key = SecretKey::from_seed([0xab; 32]);
        let shown = format!("{key:?}");
        assert!(!shown.contains("abab"), "{shown}");
        assert!(shown.contains("chorus1"));
    }
}

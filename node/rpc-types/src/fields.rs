//! Serde helpers for fields whose wire form is not their type's own.

use serde::{Deserialize, Deserializer, Serializer};

/// A nullable field that must be present: `null` is `None`, a missing field is an error
/// (serde's default would read a missing `Option` field as `None`, so a renamed field would
/// pass for an absent value).
pub(crate) fn nullable<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer)
}

/// Bytes as a hex string (lowercase, no `0x`).
pub(crate) mod hex_bytes {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        hex::decode(&text).map_err(|error| serde::de::Error::custom(format!("not hex ({error}): {text:?}")))
    }
}

/// Bytes as a hex string, or `null`; the field must be present.
pub(crate) mod hex_bytes_or_null {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, serializer: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => serializer.serialize_str(&hex::encode(bytes)),
            None => serializer.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<u8>>, D::Error> {
        match Option::<String>::deserialize(deserializer)? {
            Some(text) => hex::decode(&text)
                .map(Some)
                .map_err(|error| serde::de::Error::custom(format!("not hex ({error}): {text:?}"))),
            None => Ok(None),
        }
    }
}

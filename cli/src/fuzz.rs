//! The property the `key_file` fuzz target checks (`cli/fuzz`): a key file's bytes, as the
//! wallet reads them before and after asking for the password. The committed corpus replays as
//! a unit test on the stable toolchain (see `chorus_chain::fuzz`).
//!
//! Whatever parses serializes back to JSON that parses to the same file; opening it refuses
//! with a typed error or yields the key of the address the file names. The fuzzer opens files
//! under small argon2 costs ([`COSTS_MAX`]) so that it runs fast; the keystore's own bound
//! (`limits::KEYSTORE_ARGON2_*_MAX`) is checked by the same comparison.

#![allow(clippy::panic, reason = "a failed property panics: that is what the fuzzer and the replay detect")]

use std::path::Path;

use crate::keystore::{self, KdfCosts};

/// The password every fuzzed key file is opened with (the seeds are sealed under it).
pub const PASSWORD: &[u8] = b"fuzz password";
/// The argon2 work the target lets a file ask for: a few hundred microseconds.
pub const COSTS_MAX: KdfCosts = KdfCosts { m_cost_kib: 64, t_cost: 2, p_cost: 2 };

/// A key file's bytes.
pub fn key_file(data: &[u8]) {
    let path = Path::new("fuzz.json");
    let Ok(file) = keystore::parse_key_file(path, data) else { return };
    let json = serde_json::to_vec_pretty(&file).expect("a key file serializes");
    match keystore::parse_key_file(path, &json) {
        Ok(again) if again == file => {}
        other => panic!("{file:?} serializes to JSON that parses as {other:?}"),
    }
    if let Ok(key) = keystore::open(path, "fuzz", file.clone(), PASSWORD, COSTS_MAX)
        && key.address() != file.address()
    {
        panic!("{file:?} opened to the key of {}", key.address());
    }
}

#[cfg(test)]
mod tests {
    use chorus_chain::testing::key;

    use super::*;

    const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/key_file");

    #[test]
    fn the_key_file_corpus_replays_without_a_failed_property() {
        chorus_chain::fuzz::replay_corpus(Path::new(CORPUS), key_file);
    }

    /// A key sealed under the target's costs opens in the target; one sealed at the keystore's
    /// costs is refused there as too costly. With `CHORUS_FUZZ_SEED=1` both go into the corpus.
    #[test]
    fn fuzz_seeds_pass_the_key_file_target_and_the_cheap_one_opens() {
        let cheap = keystore::seal("fuzz", &key(1), PASSWORD, COSTS_MAX).expect("seal");
        let opened = keystore::open(Path::new("cheap.json"), "fuzz", cheap.clone(), PASSWORD, COSTS_MAX);
        assert_eq!(opened.expect("the cheap seed opens").address(), key(1).address());
        let costly = keystore::seal("fuzz", &key(2), PASSWORD, KdfCosts { m_cost_kib: 1024, t_cost: 1, p_cost: 1 })
            .expect("seal");
        let refused = keystore::open(Path::new("costly.json"), "fuzz", costly.clone(), PASSWORD, COSTS_MAX);
        assert!(matches!(refused, Err(keystore::KeystoreError::KdfTooCostly { m_cost_kib: 1024, .. })), "{refused:?}");
        for (name, file) in [("cheap", cheap), ("costly", costly)] {
            let bytes = serde_json::to_vec_pretty(&file).expect("serializes");
            chorus_chain::fuzz::seed(Path::new(CORPUS), name, &bytes, key_file);
        }
    }
}

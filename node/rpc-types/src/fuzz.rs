//! The property the `rpc_params` fuzz target checks (`node/rpc-types/fuzz`): the text a client
//! hands `chorusd`'s JSON-RPC as a parameter (an address, a hash, a block id, a transaction's
//! hex), parsed as the server parses it. The committed corpus replays as a unit test on the
//! stable toolchain (see `chorus_chain::fuzz`).
//!
//! Whatever parses prints back to text that parses to the same value and differs from the
//! input only in letter case or a `0x` prefix; a transaction's bytes then go through the
//! `signed_transaction` target's checks.

#![allow(clippy::panic, reason = "a failed property panics: that is what the fuzzer and the replay detect")]

use chorus_chain::{Address, Hash};

use crate::BlockId;

/// One parameter's text, as every parser of the RPC server and the wallet reads it.
pub fn rpc_params(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(address) = Address::parse(text) {
        let printed = address.to_string();
        if !printed.eq_ignore_ascii_case(text) || Address::parse(&printed) != Ok(address) {
            panic!("address {text:?} parses and prints as {printed:?}");
        }
    }
    if let Ok(hash) = Hash::from_hex(text) {
        let printed = hash.to_string();
        if !printed.eq_ignore_ascii_case(text.strip_prefix("0x").unwrap_or(text))
            || Hash::from_hex(&printed) != Ok(hash)
        {
            panic!("hash {text:?} parses and prints as {printed:?}");
        }
    }
    if let Ok(id) = BlockId::parse(text) {
        let printed = id.to_string();
        if BlockId::parse(&printed) != Ok(id) {
            panic!("block id {text:?} parses as {id:?} and prints as {printed:?}, which does not parse to it");
        }
    }
    if let Ok(bytes) = hex::decode(text.trim_start_matches("0x")) {
        chorus_chain::fuzz::signed_transaction(&bytes);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use chorus_chain::testing::key;

    use super::*;

    const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/rpc_params");

    #[test]
    fn the_rpc_params_corpus_replays_without_a_failed_property() {
        chorus_chain::fuzz::replay_corpus(Path::new(CORPUS), rpc_params);
    }

    /// An address, in both cases, a hash with and without `0x`, a height and a transfer's hex
    /// pass the target. With `CHORUS_FUZZ_SEED=1` they are written into the corpus.
    #[test]
    fn fuzz_seeds_pass_the_rpc_params_target() {
        let address = key(1).address().to_string();
        let hash = Hash([0xab; 32]).to_string();
        let genesis = chorus_chain::testing::genesis(2, 1_000);
        let transfer = chorus_chain::testing::signed(
            &genesis,
            &key(0),
            0,
            chorus_chain::TxKind::Transfer { to: key(1).address(), amount: chorus_chain::Amount::new(5) },
        );
        let seeds = [
            ("address", address.clone()),
            ("address_upper", address.to_uppercase()),
            ("hash", hash.clone()),
            ("hash_0x", format!("0x{hash}")),
            ("height", "1234".to_owned()),
            ("tx_transfer", hex::encode(chorus_chain::codec::encode(&transfer))),
        ];
        for (name, text) in seeds {
            chorus_chain::fuzz::seed(Path::new(CORPUS), name, text.as_bytes(), rpc_params);
        }
        assert_eq!(Address::parse(&address.to_uppercase()), Ok(key(1).address()), "bech32m takes either case");
    }
}

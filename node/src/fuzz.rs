//! The property the `config_toml` fuzz target checks (`node/fuzz`): a `--config` file's text,
//! as `chorusd run` and `dev` read it. The committed corpus replays as a unit test on the
//! stable toolchain (see `chorus_chain::fuzz`).
//!
//! Whatever parses prints back as TOML that parses to the same settings, and resolving it gives
//! settings or an error that names the file's field, never a panic.

#![allow(clippy::panic, reason = "a failed property panics: that is what the fuzzer and the replay detect")]

use std::path::Path;

use crate::config::{ConfigError, FileLayer};

/// A config file's bytes (the node reads it as UTF-8 text; anything else is refused before).
pub fn config_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = Path::new("fuzz.toml");
    let Ok(file) = FileLayer::parse(path, text) else { return };
    let printed =
        toml::to_string(&file.config).unwrap_or_else(|error| panic!("{:?} does not print: {error}", file.config));
    match FileLayer::parse(path, &printed) {
        Ok(again) if again.config == file.config => {}
        Ok(again) => panic!("{:?} prints as {printed:?}, which parses as {:?}", file.config, again.config),
        Err(error) => panic!("{:?} prints as {printed:?}, which does not parse: {error}", file.config),
    }
    match file.resolve_alone() {
        Ok(_) | Err(ConfigError::Field { .. } | ConfigError::NoMinerThreads | ConfigError::NoRpcCalls) => {}
        Err(error) => panic!("{:?} resolves to an error that names no field: {error}", file.config),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/config_toml");

    #[test]
    fn the_config_toml_corpus_replays_without_a_failed_property() {
        chorus_chain::fuzz::replay_corpus(Path::new(CORPUS), config_toml);
    }

    /// Honest files: every key, a validator's, a public RPC's. With `CHORUS_FUZZ_SEED=1` they go
    /// into the corpus.
    #[test]
    fn fuzz_seeds_pass_the_config_toml_target_and_resolve() {
        let seeds = [
            (
                "every_key",
                "data-dir = \"/var/lib/chorus\"\ngenesis = \"genesis.json\"\nkey = \"node.key\"\n\
                 listen = [\"/ip4/0.0.0.0/tcp/30333\", \"/ip6/::/tcp/30333\"]\n\
                 bootnode = [\"/ip4/10.0.0.2/tcp/30333/p2p/12D3KooWPy4eAHivzPRnetqQGFAm4ZhZLht9BhRAQzcDp6fYtnup\"]\n\
                 rpc = \"127.0.0.1:8545\"\nrpc-allow-host = [\"node.example\", \"*\"]\n\
                 rpc-allow-origin = [\"https://explorer.example\"]\nrpc-rate-limit = 500\n\
                 metrics = \"127.0.0.1:9615\"\nexplorer = \"off\"\nmine = true\nminer-threads = 2\n\
                 coinbase = \"chorus1a96gzu903frf2pkr2lfjaqchzwhz44hc24pd62xnnt230068y9rslmgs63\"\nlog-format = \"json\"\n",
            ),
            (
                "validator",
                "genesis = \"genesis.json\"\ndata-dir = \"data\"\nkey = \"validator.key\"\nlog-format = \"human\"\n",
            ),
            ("public_rpc", "rpc = \"0.0.0.0:8545\"\nrpc-allow-host = [\"*\"]\nmetrics = \"[::1]:9615\"\n"),
        ];
        for (name, text) in seeds {
            let file = FileLayer::parse(Path::new("seed.toml"), text).expect("an honest file parses");
            file.resolve_alone().unwrap_or_else(|error| panic!("{name}: {error}"));
            chorus_chain::fuzz::seed(Path::new(CORPUS), name, text.as_bytes(), config_toml);
        }
    }
}

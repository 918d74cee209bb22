#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chorus_node::fuzz::config_toml(data));

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chorus_rpc_types::fuzz::rpc_params(data));

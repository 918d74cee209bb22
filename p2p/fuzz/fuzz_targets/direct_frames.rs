#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chorus_p2p::fuzz::direct_frames(data));

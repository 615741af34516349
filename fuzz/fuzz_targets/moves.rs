#![no_main]
//! The `moves` harness of `fuzz-harness` under libFuzzer.

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_harness::moves::fuzz(data));

#![no_main]
//! The `da_chunks` harness of `fuzz-harness` under libFuzzer.

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_harness::da::fuzz(data));

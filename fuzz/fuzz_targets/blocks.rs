#![no_main]
//! The `blocks` harness of `fuzz-harness` under libFuzzer.

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_harness::blocks::fuzz(data));

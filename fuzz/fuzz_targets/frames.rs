#![no_main]
//! The `frames` harness of `fuzz-harness` under libFuzzer.

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_harness::frames::fuzz(data));

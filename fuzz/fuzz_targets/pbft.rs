#![no_main]
//! The `pbft` harness of `fuzz-harness` under libFuzzer.

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_harness::pbft::fuzz(data));

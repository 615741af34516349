#![no_main]
//! The `kcp` harness of `fuzz-harness` under libFuzzer.

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_harness::kcp::fuzz(data));

#![no_main]
//! The `json_rpc` harness of `fuzz-harness` under libFuzzer.

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_harness::json_rpc::fuzz(data));

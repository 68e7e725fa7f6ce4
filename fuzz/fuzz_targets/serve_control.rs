//! Fuzz target `serve_control`: see `privlm_fuzz::run` and the harness docs in `fuzz/src/lib.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    privlm_fuzz::run("serve_control", data);
});

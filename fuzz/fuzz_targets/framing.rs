#![no_main]
// `cargo +nightly fuzz run framing`: see fuzz/README.md.
libfuzzer_sys::fuzz_target!(|data: &[u8]| portico_fuzz::framing(data));

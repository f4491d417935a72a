#![no_main]
// `cargo +nightly fuzz run --features libfuzzer path`: see fuzz/README.md.
libfuzzer_sys::fuzz_target!(|data: &[u8]| portico_fuzz::path::path(data));

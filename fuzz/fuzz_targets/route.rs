#![no_main]
// `cargo +nightly fuzz run route`: see fuzz/README.md.
libfuzzer_sys::fuzz_target!(|data: &[u8]| portico_fuzz::route(data));

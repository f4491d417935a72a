#![no_main]
// `cargo +nightly fuzz run forwarded`: see fuzz/README.md.
libfuzzer_sys::fuzz_target!(|data: &[u8]| portico_fuzz::forwarded(data));

#![no_main]
// `cargo +nightly fuzz run proxy_header`: see fuzz/README.md.
libfuzzer_sys::fuzz_target!(|data: &[u8]| portico_fuzz::proxy_header(data));

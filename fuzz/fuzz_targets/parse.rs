//! Everything the crate parses or validates: see `queueserver_fuzz::parse`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| queueserver_fuzz::parse::run(data));

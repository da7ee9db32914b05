//! Operation sequences against a `QueueServer` and the reference model: see
//! `queueserver_fuzz::ops`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| queueserver_fuzz::ops::run(data));

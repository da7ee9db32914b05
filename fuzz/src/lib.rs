//! Fuzzing of `queueserver`: the code the fuzz targets share with the corpus replay test.
//!
//! - [`model`]: a reference model of the server, written from its documentation with plain
//!   std collections;
//! - [`ops`]: operation sequences decoded from bytes and run against the server and the
//!   model (target `server_ops`);
//! - [`parse`]: everything the crate parses or validates (target `parse`).
//!
//! None of these files depends on `libfuzzer-sys`: the crate's `tests/fuzz_corpus.rs`
//! includes them to replay `fuzz/corpus/` on stable.

pub mod model;
pub mod ops;
pub mod parse;

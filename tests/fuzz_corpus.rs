//! Replays the committed fuzz corpora on stable, as ordinary tests: every file in
//! `fuzz/corpus/server_ops/` runs as an operation sequence against a server and the
//! reference model, every file in `fuzz/corpus/parse/` as a parse and validation case.
//! The decoders, the model and the checks are the fuzz targets' own (`fuzz/src/`), so a
//! corpus file means here exactly what it means to `cargo fuzz`.

#[path = "../fuzz/src/model.rs"]
mod model;
#[path = "../fuzz/src/ops.rs"]
mod ops;
#[path = "../fuzz/src/parse.rs"]
mod parse;

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// Runs every file of `fuzz/corpus/<target>/` through `run`; fails naming each input that
/// panics.
fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut inputs: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "{} holds no input", dir.display());
    let failed: Vec<String> = inputs
        .iter()
        .filter(|path| {
            let bytes = fs::read(path).expect("a readable input");
            catch_unwind(AssertUnwindSafe(|| run(&bytes))).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} inputs failed: {failed:#?}",
        failed.len(),
        inputs.len()
    );
}

#[test]
#[cfg_attr(
    miri,
    ignore = "reads the corpus directory, which Miri's isolation forbids; the same cases run natively"
)]
fn server_ops_corpus_agrees_with_the_model() {
    replay("server_ops", ops::run);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "reads the corpus directory, which Miri's isolation forbids; the same cases run natively"
)]
fn parse_corpus_passes_its_checks() {
    replay("parse", parse::run);
}

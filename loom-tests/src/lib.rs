//! loom models of the `queueserver` crate's own synchronisation.
//!
//! Built with `RUSTFLAGS="--cfg loom"`, the crate's `sync` shim hands out loom's atomics,
//! `Arc` and thread parking, and the models in `tests/` let loom run every interleaving of
//! the protocols between the computation, the requesters and the poller (within a bound on
//! preemptions). This library holds what the models share: a bounded `check`, a snapshot
//! type whose wholeness can be checked (`Pair`), a connection that records and checks what
//! it receives (`Probe`) and a `put_request` that checks what comes back (`put`); reading
//! the key `PANICS` of a `Pair` panics, for the models of a poller that panics.
//!
//! Without `--cfg loom` the library and the models are empty, so that the workspace builds,
//! lints and formats without loom. See `README.md` for how to run the models and what loom
//! cannot see.

#![forbid(unsafe_code)]

#[cfg(loom)]
mod model;

#[cfg(loom)]
pub use model::{check, put, quiet_deliberate_panics, Pair, Probe, DEFAULT_PREEMPTIONS, PANICS};

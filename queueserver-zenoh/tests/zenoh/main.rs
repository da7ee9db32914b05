//! The integration tests of `queueserver-zenoh`, in one test binary: it links Zenoh once,
//! and its tests run in parallel.
//!
//! - `cli`: `qs`'s help, usage errors and error messages;
//! - `contract`: every point of the wire contract, on loopback;
//! - `device`: `qs device` publishing a simulated microcontroller (the link's device side
//!   behind a TCP socket), seen by `qs get`, `qs list` and a session;
//! - `fed`: a relay fed by something other than a server (as a device's line feeds one),
//!   published with `Zenoh::publish`, and its liveliness while it answers;
//! - `select`: from key expressions to requests, against a reference matcher (proptest);
//! - `processes`: a getter killed mid-get, a stopped subscriber;
//! - `router`: two computations and several `qs` clients through a router killed and
//!   restarted;
//! - `trust`: what `qs` shows when someone else puts under a computation's prefix, and when
//!   the computation restarts;
//! - `security`: a router with user/password authentication and access control (the
//!   example configuration files of `config/`) keeps forged samples away from `qs` and
//!   from Python; a short `accept_timeout` lets sessions in past idle connections;
//! - `python`: a client no one here wrote, `eclipse-zenoh` in Python;
//! - `runtime`: `ZENOH_RUNTIME` on `qs`'s threads (Linux).
//!
//! `common::tools` finds the router and the Python client, and says on the terminal what it
//! does when it must install or stand in for one.

mod cli;
mod common;
mod contract;
mod device;
mod fed;
mod processes;
mod python;
mod router;
#[cfg(target_os = "linux")]
mod runtime;
mod security;
mod select;
mod trust;

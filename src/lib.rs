//! Wait-free publishing of a computation's state, with fan-out to connections and
//! deduplicated direct requests, for hard-real-time loops and embedded targets.
//!
//! A computation (a control loop, a simulation, an audio callback, firmware) publishes
//! snapshots of its state. A [`QueueServer`] fans them out to [`Connection`]s and answers
//! their direct requests, while the computation never waits: publishing takes no lock,
//! allocates nothing, makes no syscall and runs in bounded time. It is the `QueueServer` of
//! the Python package `mmf.async`, rebuilt in Rust.
//!
//! # Start here
//!
//! Two calls set everything up:
//!
//! - [`QueueServer::new`] takes the computation's state (an [`IDict`]: a struct with
//!   `#[derive(IDict)]`, or a map) and returns the computation's [`Publisher`] and the
//!   server;
//! - [`Runner::every`] (or [`Runner::notified`]) runs the server's poller on a thread of its
//!   own. Before that, [`QueueServer::add_client`] gives a [`Client`] that asks for values
//!   from any thread, and [`QueueServer::reader`] a [`Reader`] of the newest snapshot.
//!
//! With these lines in `Cargo.toml` (`derive` brings `#[derive(IDict)]`):
//!
//! ```toml
//! [dependencies]
//! queueserver = { version = "0.1", features = ["derive"] }
//! ```
//!
//! this is a whole program:
//!
//! ```
//! use queueserver::{IDict, QueueServer, Runner};
//! use std::time::Duration;
//!
//! /// The computation's state: each field is a value with a name.
//! #[derive(Clone, Default, IDict)]
//! struct Plant {
//!     position: f64,
//!     steps: u64,
//! }
//!
//! fn main() {
//!     let mut plant = Plant::default();
//!     let (mut publisher, mut server) = QueueServer::new(plant.clone());
//!     let client = server.add_client().unwrap();
//!     let reader = server.reader();
//!     let runner = Runner::every(server, Duration::from_millis(1)).unwrap();
//!
//!     // The computation: wait-free, whoever watches.
//!     for step in 1..=1000u32 {
//!         plant.position = f64::from(step) * 1e-3;
//!         plant.steps = u64::from(step);
//!         publisher.put_update(&plant);
//!     }
//!
//!     // Any other thread: one value now (the key enum comes from the derive)...
//!     let answer = client.get(PlantKey::Steps, Duration::from_secs(10)).unwrap();
//!     assert_eq!(answer.value, Some(PlantValue::Steps(answer.seq)));
//!     // ...or the newest snapshot, waiting for the last one.
//!     let last = reader.wait_newer(999, Duration::from_secs(10)).unwrap();
//!     assert_eq!(last.steps, 1000);
//!     runner.shutdown().unwrap();
//! }
//! ```
//!
//! Without `std` (`default-features = false`) the same server runs on a microcontroller:
//! your main loop or an interrupt calls [`QueueServer::poll`] instead of a runner. Other
//! processes watch it through the `queueserver-zenoh` crate, browsers through
//! `queueserver-web`.
//!
//! # Words used here
//!
//! | word | meaning |
//! |---|---|
//! | **IDict** | "interface dictionary": the computation's state as named values ([`IDict`]). A struct with `#[derive(IDict)]`, a map, or your own implementation |
//! | **computation** | the thread or interrupt that owns the state and publishes it ([`Publisher`]) |
//! | **snapshot** | one published copy of the IDict, numbered ([`Snapshot`]) |
//! | **seq** | a snapshot's number: 0 for the initial state, then 1, 2, … one per publish |
//! | **poller** | whatever calls the server's [`poll`](QueueServer::poll) (a [`Runner`]'s thread, a main loop): it takes snapshots, fans them out, answers requests |
//! | **connection** | a party the poller hands snapshots and answers to ([`Connection`]), named by a [`ConnectionId`] |
//! | **request** | a connection's ask for one value, or the whole snapshot ([`Request`]) |
//! | **overwritten** | a snapshot the poller never took: a newer one replaced it first (latest wins) |
//! | **superseded** | a snapshot the poller took but did not fan out: a newer one came while a rate limit held it |
//! | **consolidated** | a request answered by the read made for an identical one: ten requests for one key are one read |
//! | **orphaned** | a request whose connection went away before its answer |
//! | **abandoned** | a request the server will never answer (a panic while reading its value, or a server that stopped serving); its connection is told |
//! | **relay** | the piece every watcher on another thread sits on (a [`Client`], a web view, Zenoh): one connection, a latest-wins slot, a bounded queue of answers ([`runtime::relay`]) |
//! | **asker** | one party waiting for one answer behind a relay: a thread, a task, a browser, a remote get ([`runtime::asks`]) |
//!
//! # Guarantees
//!
//! | operation | where it runs | guarantee |
//! |---|---|---|
//! | [`Publisher::put_update`] | computation | wait-free; one in-place copy and one atomic swap (the triple buffer's), then the [`Notify`] hook if that swap found the last snapshot taken by the poller; no allocation, lock, syscall, log or panic of its own (see [`IDict::copy_from`] for the copy) |
//! | [`Publisher::wants_update`] | computation | one atomic load: lets the loop skip the copy when nobody watches |
//! | [`Requester::put_request`] | any thread, interrupt | never blocks or allocates; bounded steps; full, over quota, unknown or closed → the request comes back in the error |
//! | [`QueueServer::process_updates`] | poller | fans out at most the newest snapshot; counts exactly the snapshots overwritten before it saw them |
//! | [`QueueServer::process_requests`] | poller | every accepted request answered exactly once, or counted orphaned (its connection went away) or abandoned (its connection told, after a panic or when the server stops serving); one read per distinct key; unknown key → [`Response::NotFound`] |
//! | [`Reader::load`] (std) | any thread | lock-free read of the newest snapshot the poller has taken; allocates once per thread, at its first load (arc-swap's per-thread node) |
//! | [`Reader::wait_newer`], [`Reader::changed`] (std) | any thread or task | waits for a newer snapshot; woken by the poller when it stores one, never by the computation; [`WaitError::Closed`] once the server is dropped or no poller serves it |
//! | [`Client::get`], [`Client::get_async`] (std) | any thread or task | asks through one connection: one request per key in flight, the answer to every caller, a bound on outstanding asks, a deadline per ask; [`AskError::Closed`] at once when the connection is dropped, [`AskError::Abandoned`] when its request is abandoned |
//!
//! Memory is fixed after construction: three snapshots in the triple buffer, a request
//! queue of capacity `Q` (at most [`request::MAX_QUEUE_BYTES`]), the poller's batch of `Q`
//! and its `MAXC` connection slots. Construction allocates them all, a few allocations
//! made once (the server itself stays small whatever `Q` and `MAXC`); nothing on the
//! computation's path ever allocates.
//!
//! # Trade-offs
//!
//! - **Latest wins.** Snapshots are overwritten, never queued: a slow poller sees fewer
//!   snapshots, never older ones, and [`Stats::updates_overwritten`] says how many it missed.
//! - **The request queue is `heapless::mpmc`**, which is not strictly lock-free: a requester
//!   pre-empted in the middle of an enqueue can make others see the queue as full until it
//!   resumes (the `heapless` maintainers deprecated the type for that reason). Requesters
//!   get their request back and may retry; the computation never touches that queue.
//! - **Hooks decide real-time safety of notification**: see [`notify`].
//!
//! # Faults
//!
//! A connection that fails, or panics (with `std`), is removed and handed back; the others
//! and every accepted request carry on. Any other panic in the poller's work leaves the
//! server consistent for the next call, which settles every request exactly once. A dropped
//! server, or a [`Runner`] whose poller stopped, refuses every later request. Ids are never
//! valid again once removed, nor on another server. See [`fault`].
//!
//! # Example: a connection of your own, polled by hand
//!
//! The state here is a `heapless` map (add `heapless = "0.9"` to `Cargo.toml`); no `std` is
//! needed for any of it.
//!
//! ```
//! use queueserver::{Connection, ConnectionError, QueueServer, Request, Response, Snapshot};
//! use heapless::LinearMap;
//!
//! type State = LinearMap<&'static str, f64, 4>;
//!
//! /// Counts what it receives.
//! #[derive(Default)]
//! struct Counter { updates: u32, answers: u32 }
//!
//! impl Connection<State> for Counter {
//!     fn on_update(&mut self, _: &Snapshot<State>) -> Result<(), ConnectionError> {
//!         self.updates += 1;
//!         Ok(())
//!     }
//!     fn on_response(&mut self, r: Response<'_, State>) -> Result<(), ConnectionError> {
//!         if let Response::Value { value, .. } = r {
//!             assert_eq!(*value, 99.0);
//!         }
//!         self.answers += 1;
//!         Ok(())
//!     }
//! }
//!
//! let mut state = State::new();
//! state.insert("position", 0.0).unwrap();
//! let (mut publisher, mut server) = QueueServer::new(state.clone());
//! let ui = server.add_connection(Counter::default()).unwrap();
//!
//! // The computation: publish every step (wait-free, no allocation).
//! for step in 0..100 {
//!     state.insert("position", f64::from(step)).unwrap();
//!     publisher.put_update(&state);
//! }
//!
//! // A connection asks for one value, twice.
//! let requester = server.requester();
//! requester.put_request(Request::key(ui, "position")).unwrap();
//! requester.put_request(Request::key(ui, "position")).unwrap();
//!
//! // The poller: one fan-out of the newest snapshot, one read, one answer.
//! server.poll();
//! let stats = server.stats();
//! assert_eq!(stats.updates_published, 100);
//! assert_eq!(stats.updates_overwritten, 99);
//! assert_eq!((stats.reads, stats.requests_answered, stats.requests_consolidated), (1, 1, 1));
//! assert_eq!(server.connection(ui).unwrap().updates, 1);
//! ```
//!
//! # Layout: the core and the std runtime
//!
//! The modules at the top of this crate are the real-time core: `no_std`, no `unsafe`, no
//! allocation after construction (the computation's side, the request queue, the server
//! and its poller, connections, hooks, stats), and with `std` the read path's [`Reader`].
//! Everything that runs on an operating system's threads beside it is in one room,
//! [`runtime`] (std): the [`Runner`], the [relay](runtime::relay) every watcher sits on,
//! the [`asks`](runtime::asks) machinery, the [`Client`], a [channel](runtime::channel). It
//! is built on the core's public operations, and the core never names it. The types you
//! use most are re-exported here, so `use queueserver::{Client, QueueServer, Runner};` is
//! all an application needs; transports import the relay from
//! `queueserver::runtime::relay`.
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `std` | yes | [`Reader`] (arc-swap) and its waits, [`Client`] and the [`runtime::asks`] machinery under it, [`runtime::relay`], [`runtime::channel`], [`Runner`] (with control from any thread), [`StdClock`], [`ThreadNotify`], connections' panics caught, `std::error::Error` impls, [`IDict`] for `HashMap` |
//! | `log` | no | logs connection failures through `log`, from the poller only |
//! | `defmt` | no | the same through `defmt`, for embedded targets |
//! | `serde` | no | `Serialize` / `Deserialize` for snapshots, requests, ids, config and stats; `idict::ByName`; the derive's `serde` impls |
//! | `derive` | no | `#[derive(IDict)]`, re-exported from `queueserver-derive` |
//!
//! Without `std` the crate is `#![no_std]` and needs `alloc` at construction only. It
//! builds for targets with atomic compare-and-swap and `AtomicU8::swap`
//! (`thumbv7em-none-eabihf`, `thumbv7m-none-eabi`; not `thumbv6m`).

#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

mod builder;
pub mod clock;
mod config;
pub mod connection;
pub mod connections;
pub mod fault;
pub mod idict;
mod log;
pub mod notify;
#[cfg(feature = "std")]
mod park;
mod publisher;
#[cfg(feature = "std")]
mod reader;
pub mod request;
#[cfg(feature = "std")]
pub mod runtime;
mod server;
mod signal;
mod snapshot;
mod stats;
mod sync;

pub use builder::{Builder, Parts};
#[doc(inline)]
pub use clock::{Clock, ManualClock, NoClock};
pub use config::{Config, ConfigError};
#[doc(inline)]
pub use connection::{Abandoned, Connection, ConnectionError, ConnectionId, Response};
#[doc(inline)]
pub use fault::PanicMessage;
#[doc(inline)]
pub use idict::IDict;
/// `#[derive(IDict)]`: a struct with named fields becomes an [`IDict`](trait@IDict) whose
/// keys are a generated enum with names (feature `derive`).
///
/// ```
/// use queueserver::IDict;
///
/// #[derive(Clone, IDict)]
/// struct Motor {
///     speed: f64,
///     #[idict(rename = "current/phase-a")]
///     current: f64,
///     faults: u32,
///     enabled: bool,
///     #[idict(skip)]
///     scratch: [u8; 4],
/// }
///
/// // Generated: `MotorKey` (`Copy + Ord`, one variant per keyed field), `MotorValue` (each
/// // variant carries its field exactly), and the `IDict` impl.
/// assert_eq!(MotorKey::ALL, [MotorKey::Speed, MotorKey::Current, MotorKey::Faults, MotorKey::Enabled]);
/// assert_eq!(MotorKey::Current.name(), "current/phase-a");
/// assert_eq!("faults".parse(), Ok(MotorKey::Faults));
///
/// let motor = Motor { speed: 2.5, current: 0.5, faults: 7, enabled: true, scratch: [0; 4] };
/// assert_eq!(motor.get(&MotorKey::Faults), Some(MotorValue::Faults(7)));
/// ```
///
/// # What it generates
///
/// For `struct Motor` with named fields, in the struct's module and with its visibility:
///
/// - **`MotorKey`**, an enum with one variant per field in `PascalCase` (`speed` →
///   `Speed`), deriving `Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash`;
///   `MotorKey::ALL` and `MotorKey::NAMES` in field order, `const fn name(self)`,
///   `from_name(&str)`, `Display`, `FromStr` (error [`KeyError`](idict::KeyError)), and
///   [`KeyName`](idict::KeyName).
/// - **`MotorValue`**, an enum with one variant per field carrying that field's type
///   exactly (`Faults(u32)`), with `key()`; it derives `Clone, Debug, PartialEq`. When every
///   keyed field has the same type (spelled the same way), there is no `MotorValue`: the
///   value type is that type.
/// - **`impl IDict for Motor`**: `get` (always `Some`); `copy_from` in place, skipped
///   fields included, without allocating for [`FieldValue`](idict::FieldValue) fields: one
///   assignment of the whole struct when it is `Copy` (the block copy a hand-written
///   `*self = *source` compiles to), field by field with `clone_from` otherwise (so a
///   skipped buffer reuses its memory); `write_name`, `parse_key` (no lookup in the
///   snapshot: the names are constants), and `visit` in field order.
/// - With the `serde` feature: `MotorKey` serializes as its name, `MotorValue` as the plain
///   value (a number, a boolean, a string). With `#[idict(serde)]` too, `Motor` serializes
///   as an object of names and values (deserializing needs every key once, and takes
///   `Default::default()` for skipped fields). That impl is asked for, not implied by the
///   feature: features are additive, so a struct that derives `serde` itself would get a
///   second impl the day another crate in the build turns `queueserver/serde` on. Any IDict
///   with names serializes as such an object through `idict::ByName` (feature `serde`)
///   without it.
///
/// The generated code is `no_std`, has no `unsafe`, and compiles under
/// `#![forbid(unsafe_code)]` and `#![deny(missing_docs)]`.
///
/// # Attributes
///
/// | attribute | on | effect |
/// |---|---|---|
/// | `#[idict(rename = "name")]` | field | the key's name, instead of the field's; checked against the [name rules](idict::name) at compile time |
/// | `#[idict(skip)]` | field | no key for the field; `copy_from` still copies it |
/// | `#[idict(key = "Ident")]`, `#[idict(value = "Ident")]` | struct | names of the generated enums, instead of `<Struct>Key`, `<Struct>Value` |
/// | `#[idict(serde)]` | struct | `Serialize` / `Deserialize` for the struct too, as an object by name (with the `serde` feature; the key and value enums have theirs without it) |
/// | `#[idict(crate = "path")]` | struct | where `queueserver` is, if not at `::queueserver` |
///
/// # Compile errors
///
/// Each points at what is wrong: an enum, a union, a tuple or unit struct; generics; a
/// field whose type is not a [`FieldValue`](idict::FieldValue); a name that breaks the rules
/// (a field name too: rename it); two fields with one name, or whose key variants would
/// coincide; no field left after `skip`; an unknown or repeated attribute.
#[cfg(feature = "derive")]
pub use queueserver_derive::IDict;

#[doc(hidden)]
pub mod __private {
    //! What the code `#[derive(IDict)]` generates needs from the crate. Not public API.
    #[cfg(feature = "serde")]
    pub use serde;

    pub use crate::idict::generated::{CopyFields, CopyProbe, CopyWhole};
    pub use crate::idict::generated::{NoShape, ShapeOf, ShapeProbe};
}
#[doc(inline)]
pub use notify::{Event, FlagNotify, NoNotify, Notify, WakerNotify};
pub use publisher::Publisher;
#[doc(inline)]
pub use request::{Query, Request, RequestError, Requester};
pub use server::{ConnectionsFull, Failed, Processed, QueueServer};
pub use snapshot::Snapshot;
pub use stats::Stats;

/// The README's example, compiled and run as a doc-test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

#[cfg(feature = "std")]
#[doc(inline)]
pub use clock::StdClock;
#[cfg(feature = "std")]
#[doc(inline)]
pub use notify::ThreadNotify;
#[cfg(feature = "std")]
pub use reader::{Changed, ReadGuard, Reader, Store, WaitError};
#[cfg(feature = "std")]
#[doc(inline)]
pub use runtime::client::{Answer, AskError, Client, ClientConnection};
#[cfg(feature = "std")]
#[doc(inline)]
pub use runtime::relay::{Relay, RelayConnection};
#[cfg(feature = "std")]
#[doc(inline)]
pub use runtime::runner::{AddError, Crashed, RemoveError, Runner, StartError, StopCause};

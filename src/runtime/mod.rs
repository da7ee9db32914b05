//! The std runtime: what runs beside the real-time core on an operating system's threads.
//!
//! The core (the rest of `src/`) is `no_std` and knows nothing of what is here: the
//! computation's [`Publisher`](crate::Publisher), the request path, the
//! [`QueueServer`](crate::QueueServer)'s poller, and with `std` its read path (the
//! [`Reader`](crate::Reader) the poller stores each snapshot in). Everything in this module
//! is built on the core's public operations, and the arrows point one way: from here to the
//! core, never back.
//!
//! | module | what it is |
//! |---|---|
//! | [`runner`] | [`Runner`](crate::Runner): the poller on a thread of its own, controlled from any thread |
//! | [`relay`] | [`Relay`](relay::Relay): the one piece every watcher outside the poller sits on (one connection, a latest-wins slot, a bounded queue of answers, a worker side with the deadlines of every ask) |
//! | [`asks`] | many askers behind one connection: one request per query in flight, the answer to every asker, one bound, a deadline per ask |
//! | [`client`] | [`Client`](crate::Client): ask for values from any thread or task, a relay whose callers are its worker side |
//! | [`channel`] | a connection read on another thread as a channel, a relay without askers |
//! | `timer` (private) | the process's one timer thread, which wakes async asks at their deadline |
//!
//! The transports (the web view, Zenoh, the host side of a serial link) are sinks of a
//! relay, in crates of their own.

pub mod asks;
pub mod channel;
pub mod client;
pub mod outbox;
pub mod relay;
pub mod runner;
mod timer;

//! A serial link for [`queueserver`]: watch and query a firmware's computation from the
//! host, over a UART.
//!
//! The **device side** (`no_std`, no allocation, the default) is a [`Connection`] of the
//! firmware's `QueueServer` that turns its updates and answers into frames in a fixed TX
//! ring that the UART drains, and a receiver that turns the host's gets into
//! `put_request`s. The **host side** (feature `host`, std) opens a device by serial port
//! or TCP socket, reads its schema, decodes its snapshots and answers, sends gets, counts
//! what the line spoils, and reconnects when the line dies.
//!
//! # Guarantees
//!
//! | operation | where it runs | guarantee |
//! |---|---|---|
//! | `put_update` | computation | unchanged: the link adds nothing to the computation's path |
//! | [`Link`]'s `on_update`, `on_response`, [`flush`](device::Link::flush) | poller | never blocks, allocates nothing; an update the ring has no room for waits, and a newer one replaces it (counted); an answer always has room (reserved when its get was accepted) |
//! | [`LinkTx::next_byte`](device::LinkTx::next_byte), [`fill`](device::LinkTx::fill) | UART interrupt or main loop | never blocks, allocates nothing; the ring holds whole frames only |
//! | [`LinkRx::receive`](device::LinkRx::receive) | UART interrupt or main loop | never blocks, allocates nothing; bounded steps per byte; one `put_request` per accepted get; a refused get gets an error frame, never silence |
//!
//! # The wire
//!
//! `COBS(payload ‖ CRC-16) ‖ 0x00` frames of postcard values; the device sends its schema
//! (names and value types, from [`IDict::value_type`](queueserver::IDict::value_type)) at
//! start and when asked. See the crate's README for every byte, and [`wire`].
//!
//! [`Connection`]: queueserver::Connection
//! [`Link`]: device::Link

#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod device;
#[cfg(feature = "host")]
pub mod host;
pub mod wire;

pub use device::{Link, LinkRx, LinkStats, LinkTx, Parts, SplitError, Storage};

#[cfg(feature = "std")]
impl std::error::Error for device::SplitError {}

#[cfg(feature = "std")]
impl std::error::Error for wire::WireError {}

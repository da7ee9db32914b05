//! The crate's own synchronisation primitives, in one place.
//!
//! Everything the crate synchronises itself (the request flag, the demand word, per-connection
//! quotas, connection tags, shutdown, the runner's control and the thread a
//! `ThreadNotify` wakes) uses the types re-exported here. Built with
//! `RUSTFLAGS="--cfg loom"`, they become [`loom`](https://docs.rs/loom)'s types, so a model
//! checker can explore every interleaving of that protocol. The lock-free structures of the
//! dependencies (`triple_buffer`, `heapless::mpmc`, `arc-swap`) keep their own atomics: loom
//! sees each of their operations as one indivisible step.

#[cfg(not(loom))]
pub(crate) use alloc::sync::Arc;
#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::Arc;

#[cfg(all(feature = "std", not(loom)))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard, RwLock};

#[cfg(all(feature = "std", loom))]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard, RwLock};

/// Locks `mutex`, and goes on with a poisoned one: every critical section in the crate
/// leaves its data whole (a push, a take, a count, a flag), so a panic elsewhere while the
/// lock was held cannot have torn it.
#[cfg(feature = "std")]
pub(crate) fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Thread parking for the runner: `std::thread`, or loom's model of it.
#[cfg(all(feature = "std", not(loom)))]
pub(crate) mod thread {
    pub(crate) use std::thread::{current, park, park_timeout, yield_now, JoinHandle, Thread};

    /// Spawns a named thread.
    pub(crate) fn spawn<F, T>(name: &str, f: F) -> std::io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        std::thread::Builder::new().name(name.into()).spawn(f)
    }
}

/// Thread parking for the runner: `std::thread`, or loom's model of it.
#[cfg(all(feature = "std", loom))]
pub(crate) mod thread {
    pub(crate) use loom::thread::{current, park, yield_now, JoinHandle, Thread};

    /// Spawns a thread in the model (loom threads have no names).
    pub(crate) fn spawn<F, T>(_name: &str, f: F) -> std::io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        Ok(loom::thread::spawn(f))
    }

    /// loom has no timed park; a timed park is modelled as a park that may return early.
    pub(crate) fn park_timeout(_timeout: core::time::Duration) {
        yield_now();
    }
}

//! Blocking waits built on [`Waker`]s (std): one wake-up mechanism for threads and tasks.
//!
//! The crate's waiting parts ([`Reader`](crate::Reader)'s waits, the [`Client`](crate::Client)'s
//! answers) keep a list of `Waker`s and wake them; an async caller registers its task's
//! waker, a blocking caller registers a waker that unparks its thread and parks. So one code
//! path serves both, and whoever wakes never blocks: `Thread::unpark` and `Waker::wake`
//! return at once.

use std::sync::Arc;
use std::task::{Wake, Waker};
use std::thread::{self, Thread};
use std::time::Instant;

/// Unparks one thread.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

thread_local! {
    static WAKER: Waker = Waker::from(Arc::new(Unpark(thread::current())));
}

/// A waker that unparks the calling thread. Built once per thread, then cloned.
pub(crate) fn thread_waker() -> Waker {
    WAKER.with(Waker::clone)
}

/// Parks the calling thread until it is unparked or `until` passes (or spuriously, as any
/// park may): the caller re-checks its condition in a loop.
pub(crate) fn park_until(until: Instant) {
    let now = Instant::now();
    if until > now {
        thread::park_timeout(until - now);
    }
}

/// `now + timeout`, or a deadline so far away that it never comes when the sum overflows.
pub(crate) fn deadline_after(timeout: core::time::Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        // About 30 years: later than any wait a caller can mean.
        .or_else(|| now.checked_add(core::time::Duration::from_secs(1 << 30)))
        .unwrap_or(now)
}

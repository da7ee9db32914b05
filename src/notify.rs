//! Notify hooks: how whatever drives the poller learns that there is work.
//!
//! They are `mmf.async`'s `onUpdate` / `onRequest` hooks. [`Notify::notify`] is called right after a
//! [`put_update`](crate::Publisher::put_update) or a
//! [`put_request`](crate::Requester::put_request), but only when the poller has taken
//! everything announced before: calls are coalesced, never one per publish or request.
//!
//! - [`Event::Update`]: when the publish finds the last snapshot taken by the poller (the
//!   triple buffer's back buffer clean). Publishes that replace a snapshot the poller has
//!   not taken yet notify nobody: one notification per snapshot the poller takes, in
//!   [`process_updates`](crate::QueueServer::process_updates) or, to answer requests from
//!   the newest snapshot, in [`process_requests`](crate::QueueServer::process_requests).
//! - [`Event::Request`]: when the request pending flag goes from clear to set. The poller
//!   clears it when it starts `process_requests`: one notification per call at most.
//!
//! A hook called for [`Event::Update`] runs on the computation's thread and must itself be
//! real-time safe. The provided hooks:
//!
//! | hook | what it does | real-time safe |
//! |---|---|---|
//! | [`NoNotify`] | nothing: the poller polls on its own schedule | yes |
//! | [`FlagNotify`] | sets an atomic flag the poller (or a main loop) checks | yes: one atomic store |
//! | [`WakerNotify`] | wakes the task registered in an [`AtomicWaker`] | the hook itself is lock-free; the executor's `Waker::wake` decides the rest (an interrupt-pending or flag-setting waker is; a waker that unparks a thread is not) |
//! | `ThreadNotify` (std) | unparks the poller thread (allocation-free) | **no**: an unpark is a syscall when the thread sleeps, and a read lock that waits while a runner binds its thread |

use crate::sync::{AtomicBool, Ordering};
pub use atomic_waker::AtomicWaker;

/// What happened before a notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Event {
    /// A snapshot was published ([`Publisher::put_update`](crate::Publisher::put_update)).
    Update,
    /// A request was queued ([`Requester::put_request`](crate::Requester::put_request)).
    Request,
}

/// A hook told that the poller has work (`mmf.async`'s `onUpdate` / `onRequest`).
///
/// `notify` is called on the thread of whoever published or requested, at most once per
/// event kind between two poll cycles. For [`Event::Update`] that is the computation's
/// thread: keep the hook wait-free there, and never block, allocate or log in it.
pub trait Notify: Send + Sync {
    /// Tells the poller's driver that `event` happened and the poller should run.
    fn notify(&self, event: Event);
}

/// No notification: the poller runs on its own schedule (pure polling). Real-time safe.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoNotify;

impl Notify for NoNotify {
    #[inline]
    fn notify(&self, _event: Event) {}
}

/// Sets an atomic flag; a main loop or a timer interrupt checks it with [`take`](Self::take).
///
/// `notify` is one atomic store: wait-free, real-time safe.
#[derive(Debug, Default)]
pub struct FlagNotify {
    flag: AtomicBool,
}

impl FlagNotify {
    /// A clear flag.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            flag: AtomicBool::new(false),
        }
    }

    /// A clear flag.
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            flag: AtomicBool::new(false),
        }
    }

    /// Returns whether a notification arrived since the last `take`, and clears it.
    /// Wait-free; any thread.
    pub fn take(&self) -> bool {
        // Acquire: pairs with the Release store in `notify`, so work published before the
        // notification is visible once the flag is seen.
        self.flag.swap(false, Ordering::Acquire)
    }

    /// Returns whether a notification is waiting, without clearing it.
    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }
}

impl Notify for FlagNotify {
    #[inline]
    fn notify(&self, _event: Event) {
        self.flag.store(true, Ordering::Release);
    }
}

/// Wakes the task registered with [`register`](Self::register), for async executors.
///
/// `notify` takes the registered waker with one atomic read-modify-write and calls
/// `Waker::wake` on it: whether that is real-time safe depends on the executor.
#[derive(Debug, Default)]
pub struct WakerNotify {
    waker: AtomicWaker,
}

impl WakerNotify {
    /// A hook with no task registered yet.
    pub const fn new() -> Self {
        Self {
            waker: AtomicWaker::new(),
        }
    }

    /// Registers the task to wake; call it from the polling task's `poll` before it checks
    /// for work, as with any [`AtomicWaker`].
    pub fn register(&self, waker: &core::task::Waker) {
        self.waker.register(waker);
    }
}

impl Notify for WakerNotify {
    fn notify(&self, _event: Event) {
        self.waker.wake();
    }
}

impl<T: Notify + ?Sized> Notify for &'static T {
    fn notify(&self, event: Event) {
        (**self).notify(event);
    }
}

impl<T: Notify + ?Sized> Notify for alloc::sync::Arc<T> {
    fn notify(&self, event: Event) {
        (**self).notify(event);
    }
}

#[cfg(feature = "std")]
pub use self::thread_notify::ThreadNotify;

#[cfg(feature = "std")]
mod thread_notify {
    use super::{Event, Notify};
    use crate::sync::thread::Thread;
    use crate::sync::RwLock;
    use core::fmt;

    /// Unparks the poller thread (std). Used by [`Runner::notified`](crate::Runner::notified).
    ///
    /// **Not real-time safe**: unparking a sleeping thread is a syscall. Use it when the
    /// computation is an ordinary thread, or use [`FlagNotify`](super::FlagNotify) and a
    /// runner driven by interval.
    ///
    /// `notify` allocates nothing, on any thread, the first time or any other: it takes a
    /// read lock on the thread bound (std's `RwLock`, a few atomic operations) and unparks
    /// it. It blocks only while [`bind`](Self::bind) or [`unbind`](Self::unbind) holds the
    /// write lock, which a runner does once as it starts and once as it stops. No wake-up is
    /// lost across a bind: a notification that finds no thread (or the previous one) was
    /// made before the bind took the lock, so the work it announces is visible to the
    /// newly bound thread's first poll.
    #[derive(Default)]
    pub struct ThreadNotify {
        thread: RwLock<Option<Thread>>,
    }

    impl ThreadNotify {
        /// A hook bound to no thread yet; the runner binds its own thread when it starts.
        pub fn new() -> Self {
            Self::default()
        }

        /// Binds the thread to unpark, replacing any thread bound before (a server run
        /// again after a runner's shutdown binds the new runner's thread).
        pub fn bind(&self, thread: Thread) {
            let previous = self.swap(Some(thread));
            // Dropped outside the lock.
            drop(previous);
        }

        /// Binds no thread: notifications unpark nobody until the next `bind`.
        pub fn unbind(&self) {
            drop(self.swap(None));
        }

        fn swap(&self, thread: Option<Thread>) -> Option<Thread> {
            // A poisoned lock still holds a valid `Option<Thread>`: nothing panics while
            // holding it.
            let mut bound = self.thread.write().unwrap_or_else(|e| e.into_inner());
            core::mem::replace(&mut *bound, thread)
        }
    }

    impl Notify for ThreadNotify {
        fn notify(&self, _event: Event) {
            let bound = self.thread.read().unwrap_or_else(|e| e.into_inner());
            if let Some(thread) = &*bound {
                thread.unpark();
            }
        }
    }

    impl fmt::Debug for ThreadNotify {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let bound = self.thread.read().map(|t| t.is_some()).unwrap_or(false);
            f.debug_struct("ThreadNotify")
                .field("bound", &bound)
                .finish()
        }
    }
}

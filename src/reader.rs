//! [`Reader`] (std): the latest snapshot, for any thread, without locks; and a wait for a
//! newer one.
//!
//! The poller stores every snapshot it takes into an `arc_swap::ArcSwap`; a `Reader`
//! loads it. Readers never touch the triple buffer or the request queue, so they cost the
//! computation nothing.
//!
//! A reader can also wait for a snapshot newer than one it has seen: blocking
//! ([`Reader::wait_newer`], [`Reader::wait_changed`]) or async ([`Reader::changed`], in the
//! style of tokio's `watch::Receiver::changed`), woken by the poller: see [`Reader`].

use crate::park;
use crate::snapshot::Snapshot;
use crate::sync::{lock, Mutex, MutexGuard};
use arc_swap::{ArcSwap, Guard};
use core::fmt;
use core::future::Future;
use core::ops::Deref;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use core::time::Duration;
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Why a wait of a [`Reader`] ([`wait_newer`](Reader::wait_newer),
/// [`wait_changed`](Reader::wait_changed), [`changed`](Reader::changed)) returned without a
/// newer snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WaitError {
    /// The timeout passed first (never for [`changed`](Reader::changed), which has none).
    TimedOut,
    /// No newer snapshot will come: the server is gone, or no poller serves it any more (a
    /// [`Runner`](crate::Runner) that stopped, or panicked). The last snapshot stored stays
    /// readable with [`Reader::load`].
    Closed,
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TimedOut => f.write_str("no newer snapshot before the timeout"),
            Self::Closed => f.write_str("closed: no newer snapshot will come"),
        }
    }
}

impl std::error::Error for WaitError {}

/// What the poller and the readers share.
struct Shelf<D> {
    swap: ArcSwap<Snapshot<D>>,
    /// Set once, when the poller's end is dropped.
    closed: AtomicBool,
    /// Set while no poller serves the server (cleared by the next store).
    unserved: AtomicBool,
    /// How many waiters are registered: the poller takes the list's lock only when some are.
    registered: AtomicUsize,
    waiters: Mutex<Waiters>,
}

/// The wakers of the readers waiting for a newer snapshot, each under an id so that a
/// waiter can replace or withdraw its own.
#[derive(Default)]
struct Waiters {
    next: u64,
    wakers: Vec<(u64, Waker)>,
}

impl<D> Shelf<D> {
    fn waiters(&self) -> MutexGuard<'_, Waiters> {
        lock(&self.waiters)
    }

    /// Registers `waker` under `slot` (the id of an earlier registration, if any).
    fn register(&self, slot: &mut Option<u64>, waker: &Waker) {
        let mut waiters = self.waiters();
        if let Some(id) = *slot {
            if let Some((_, registered)) = waiters.wakers.iter_mut().find(|(i, _)| *i == id) {
                if !registered.will_wake(waker) {
                    registered.clone_from(waker);
                }
                return;
            }
        }
        let id = waiters.next;
        waiters.next += 1;
        waiters.wakers.push((id, waker.clone()));
        self.registered
            .store(waiters.wakers.len(), Ordering::SeqCst);
        drop(waiters);
        // SeqCst: the registration is ordered before the caller's second look at the
        // snapshot, as the poller's store is before its look at `registered`.
        fence(Ordering::SeqCst);
        *slot = Some(id);
    }

    /// Withdraws the registration under `slot`, if it is still there.
    fn unregister(&self, slot: &mut Option<u64>) {
        if let Some(id) = slot.take() {
            let removed = {
                let mut waiters = self.waiters();
                let at = waiters.wakers.iter().position(|(i, _)| *i == id);
                let removed = at.map(|at| waiters.wakers.swap_remove(at));
                self.registered
                    .store(waiters.wakers.len(), Ordering::SeqCst);
                removed
            };
            // Dropped outside the lock: a waker's drop is foreign code.
            drop(removed);
        }
    }

    /// Wakes every registered waiter. The list is taken under the lock and woken outside;
    /// with no waiter registered, the lock is not taken.
    ///
    /// A waiter registers (under the lock, raising `registered`) before its second look at
    /// the snapshot; the poller stores before it reads `registered`. Both are `SeqCst`: either
    /// the poller sees the registration and wakes it, or the waiter's second look sees the
    /// store.
    fn wake_all(&self) {
        // SeqCst: the store just made is ordered before this look (see `register`).
        fence(Ordering::SeqCst);
        if self.registered.load(Ordering::SeqCst) == 0 {
            return;
        }
        let wakers = {
            let mut waiters = self.waiters();
            self.registered.store(0, Ordering::SeqCst);
            core::mem::take(&mut waiters.wakers)
        };
        for (_, waker) in wakers {
            waker.wake();
        }
    }

    /// Wakes every registered waiter, whatever `registered` says (for an end, rare).
    fn wake_all_always(&self) {
        let wakers = {
            let mut waiters = self.waiters();
            self.registered.store(0, Ordering::SeqCst);
            core::mem::take(&mut waiters.wakers)
        };
        for (_, waker) in wakers {
            waker.wake();
        }
    }

    fn is_closed(&self) -> bool {
        // Acquire: pairs with the Release stores in `Store::drop` and `Store::unserved`, so
        // the last snapshot stored before is seen by whoever sees the flag.
        self.closed.load(Ordering::Acquire) || self.unserved.load(Ordering::Acquire)
    }

    /// The newest snapshot if its number is above `seq`.
    fn newer(&self, seq: u64) -> Option<Arc<Snapshot<D>>> {
        let newest = self.swap.load_full();
        (newest.seq() > seq).then_some(newest)
    }

    /// One look for a snapshot newer than `seq`: `Ready` with it, `Ready` with
    /// [`WaitError::Closed`], or `Pending` with `waker` registered under `slot`.
    ///
    /// Registering before the second look makes a store in between impossible to miss:
    /// the poller stores, then looks for waiters (see [`wake_all`](Self::wake_all)). Either our
    /// registration came first and the poller wakes us, or it came after the poller
    /// released the lock, and the lock orders the store before our second look.
    fn poll_newer(
        &self,
        seq: u64,
        slot: &mut Option<u64>,
        waker: &Waker,
    ) -> Poll<Result<Arc<Snapshot<D>>, WaitError>> {
        for registered in [false, true] {
            if let Some(newest) = self.newer(seq) {
                self.unregister(slot);
                return Poll::Ready(Ok(newest));
            }
            if self.is_closed() {
                self.unregister(slot);
                // The close may have come after a last store we have not looked at yet.
                return Poll::Ready(self.newer(seq).ok_or(WaitError::Closed));
            }
            if !registered {
                self.register(slot, waker);
            }
        }
        Poll::Pending
    }
}

/// The poller's end of the read path: stores the snapshots it takes and wakes the waiting
/// readers. A server keeps one (see [`QueueServer::reader`](crate::QueueServer::reader));
/// one of your own serves [`Reader`]s of snapshots that come from elsewhere (a device's
/// line). Dropping it tells every reader that no newer snapshot will come.
///
/// ```
/// use queueserver::{Snapshot, Store};
/// use std::sync::Arc;
///
/// let store = Store::new(Snapshot::new(0, 1.5_f64));
/// let reader = store.reader();
/// store.store(Arc::new(Snapshot::new(7, 2.5)));
/// assert_eq!((reader.load().seq(), **reader.load()), (7, 2.5));
/// ```
pub struct Store<D> {
    shared: Arc<Shelf<D>>,
}

impl<D> Store<D> {
    /// A store holding `snapshot`.
    ///
    /// **Allocates** (the shared state).
    pub fn new(snapshot: Snapshot<D>) -> Self {
        Self {
            shared: Arc::new(Shelf {
                swap: ArcSwap::from_pointee(snapshot),
                closed: AtomicBool::new(false),
                unserved: AtomicBool::new(false),
                registered: AtomicUsize::new(0),
                waiters: Mutex::new(Waiters::default()),
            }),
        }
    }

    /// Stores a new snapshot and wakes the waiting readers.
    ///
    /// **The one thread that stores** (a server's poller). One `ArcSwap` store; with
    /// waiters registered, a short lock of the waiter list and one `Waker::wake` per waiter
    /// (never blocks). Its cost grows a little with each thread that has loaded from a
    /// reader of it (see [`Reader::load`]).
    pub fn store(&self, snapshot: Arc<Snapshot<D>>) {
        self.shared.swap.store(snapshot);
        self.shared.unserved.store(false, Ordering::Relaxed);
        self.shared.wake_all();
    }

    /// No poller serves the server any more (its runner stopped): every waiter is told
    /// [`WaitError::Closed`] at once, and so is every later one, until a poller stores a
    /// snapshot again.
    pub(crate) fn unserved(&self) {
        // Release: pairs with the readers' Acquire load in `is_closed`.
        self.shared.unserved.store(true, Ordering::Release);
        self.shared.wake_all_always();
    }

    /// A reader of this store that has seen the snapshot stored now.
    pub fn reader(&self) -> Reader<D> {
        let seen = self.shared.swap.load().seq();
        Reader {
            shared: Arc::clone(&self.shared),
            seen,
        }
    }
}

impl<D> Drop for Store<D> {
    fn drop(&mut self) {
        // Release: pairs with the readers' Acquire load in `is_closed`.
        self.shared.closed.store(true, Ordering::Release);
        self.shared.wake_all_always();
    }
}

/// Reads the newest snapshot the poller has taken, and waits for newer ones. Cheap to
/// clone; `Send + Sync`.
///
/// Obtained from [`QueueServer::reader`](crate::QueueServer::reader). Each reader
/// remembers the sequence number of the last snapshot it was handed by
/// [`changed`](Self::changed) or [`wait_changed`](Self::wait_changed) (at first, the one
/// current when it was made; a clone starts where the original stands).
///
/// # Waiting, and its cost on the poller
///
/// Waiters are woken by the poller right after it stores a new snapshot, never by the
/// computation: `put_update` stays wait-free. Storing a snapshot takes one allocation (the
/// `Arc`) and one `ArcSwap` store; with waiters registered, a short lock of the waiter list
/// (held to take the list, never while waking) and one `Waker::wake` per waiter, which
/// never blocks (a task is scheduled, a thread unparked). When the server is dropped, or
/// when no poller serves it any more (a [`Runner`](crate::Runner) that stopped, or whose
/// poller panicked), every waiter returns [`WaitError::Closed`] at once, and so does every
/// later wait until a poller stores a snapshot again.
pub struct Reader<D> {
    shared: Arc<Shelf<D>>,
    seen: u64,
}

impl<D> Clone for Reader<D> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            seen: self.seen,
        }
    }
}

/// A loaded snapshot; dereferences to [`Snapshot`]. Hold it briefly: see
/// [`Reader::load`].
pub struct ReadGuard<D> {
    guard: Guard<Arc<Snapshot<D>>>,
}

impl<D> Deref for ReadGuard<D> {
    type Target = Snapshot<D>;

    fn deref(&self) -> &Snapshot<D> {
        &self.guard
    }
}

impl<D: fmt::Debug> fmt::Debug for ReadGuard<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<D> Reader<D> {
    /// The newest snapshot the poller has taken.
    ///
    /// **Any thread.** Lock-free (arc-swap's `load`: a few atomic operations on the
    /// thread's debt slots). It allocates once per thread, at the first load on that
    /// thread: arc-swap's per-thread node, kept for the thread's life (a node left by a
    /// thread that has ended is reused instead, when there is one); no later load on that
    /// thread allocates. Meant for short reads: a thread holding many guards at once falls
    /// back to a slower path; for a long-lived copy use [`load_full`](Self::load_full).
    ///
    /// Each thread that has loaded adds a little to every store the poller makes (it pays
    /// the debts arc-swap keeps per thread): read from a bounded set of threads, not one per
    /// receiver. The crate's relays read it from their worker thread only.
    pub fn load(&self) -> ReadGuard<D> {
        ReadGuard {
            guard: self.shared.swap.load(),
        }
    }

    /// The newest snapshot as an owned `Arc`: one reference-count increment.
    ///
    /// **Any thread.** Lock-free; allocates as [`load`](Self::load) does: once per
    /// thread, at the first load on it.
    pub fn load_full(&self) -> Arc<Snapshot<D>> {
        self.shared.swap.load_full()
    }

    /// Waits for a snapshot numbered above `seq` and returns it; at once if the newest one
    /// already is.
    ///
    /// **Any thread; blocks** for at most `timeout`. Woken by the poller when it stores a
    /// snapshot (see [`Reader`] for the cost on its side).
    ///
    /// ```
    /// # use queueserver::{Connection, QueueServer, WaitError};
    /// # use std::collections::BTreeMap;
    /// # use std::time::Duration;
    /// # type State = BTreeMap<&'static str, f64>;
    /// # type AnyConnection = Box<dyn Connection<State> + Send>;
    /// let (mut publisher, mut server) = QueueServer::<State, AnyConnection>::new(State::new());
    /// let reader = server.reader();
    /// let waiter = std::thread::spawn(move || reader.wait_newer(0, Duration::from_secs(60)));
    /// publisher.put_update(&State::from([("x", 1.0)]));
    /// server.poll(); // stores snapshot 1 and wakes the waiter
    /// assert_eq!(waiter.join().unwrap().unwrap().seq(), 1);
    ///
    /// let reader = server.reader();
    /// drop(server); // no newer snapshot will come
    /// assert_eq!(reader.wait_newer(1, Duration::from_secs(60)), Err(WaitError::Closed));
    /// ```
    ///
    /// # Errors
    ///
    /// [`WaitError::TimedOut`] when `timeout` passes first; [`WaitError::Closed`] when the
    /// server is dropped first.
    pub fn wait_newer(&self, seq: u64, timeout: Duration) -> Result<Arc<Snapshot<D>>, WaitError> {
        let deadline = park::deadline_after(timeout);
        let waker = park::thread_waker();
        let mut slot = None;
        loop {
            if let Poll::Ready(found) = self.shared.poll_newer(seq, &mut slot, &waker) {
                return found;
            }
            if std::time::Instant::now() >= deadline {
                self.shared.unregister(&mut slot);
                return Err(WaitError::TimedOut);
            }
            park::park_until(deadline);
        }
    }

    /// Waits for a snapshot newer than the last one this reader was handed, returns it and
    /// remembers it as seen: the blocking form of [`changed`](Self::changed).
    ///
    /// **Any thread; blocks** for at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`wait_newer`](Self::wait_newer).
    pub fn wait_changed(&mut self, timeout: Duration) -> Result<Arc<Snapshot<D>>, WaitError> {
        let newest = self.wait_newer(self.seen, timeout)?;
        self.seen = newest.seq();
        Ok(newest)
    }

    /// A future that resolves to the first snapshot newer than the last one this reader
    /// was handed, and remembers it as seen (tokio's `watch::Receiver::changed`, returning
    /// the snapshot).
    ///
    /// **Any task, any executor**: the future uses only the task's `Waker`, which the
    /// poller wakes when it stores a snapshot. Ready at once when the reader is behind.
    /// Dropping the future withdraws its waker.
    ///
    /// ```
    /// # use queueserver::{Connection, QueueServer};
    /// # use std::collections::BTreeMap;
    /// # type State = BTreeMap<&'static str, f64>;
    /// # type AnyConnection = Box<dyn Connection<State> + Send>;
    /// let (mut publisher, mut server) = QueueServer::<State, AnyConnection>::new(State::new());
    /// let mut reader = server.reader();
    /// publisher.put_update(&State::from([("x", 1.0)]));
    /// server.poll();
    /// let snapshot = futures_executor::block_on(reader.changed()).unwrap();
    /// assert_eq!((snapshot.seq(), reader.seen()), (1, 1));
    /// ```
    pub fn changed(&mut self) -> Changed<'_, D> {
        Changed {
            reader: self,
            slot: None,
        }
    }

    /// The sequence number of the last snapshot this reader was handed by
    /// [`changed`](Self::changed) or [`wait_changed`](Self::wait_changed), or of the one
    /// current when it was made.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Whether the server is gone (no newer snapshot will come).
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }
}

impl<D> fmt::Debug for Reader<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}

/// The future of [`Reader::changed`].
#[must_use = "futures do nothing unless polled"]
pub struct Changed<'a, D> {
    reader: &'a mut Reader<D>,
    /// Our registration in the waiter list, if any.
    slot: Option<u64>,
}

impl<D> Future for Changed<'_, D> {
    type Output = Result<Arc<Snapshot<D>>, WaitError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let seen = this.reader.seen;
        let found = this
            .reader
            .shared
            .poll_newer(seen, &mut this.slot, cx.waker());
        if let Poll::Ready(Ok(newest)) = &found {
            this.reader.seen = newest.seq();
        }
        found
    }
}

impl<D> Drop for Changed<'_, D> {
    fn drop(&mut self) {
        self.reader.shared.unregister(&mut self.slot);
    }
}

impl<D> fmt::Debug for Changed<'_, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Changed")
            .field("seen", &self.reader.seen)
            .finish_non_exhaustive()
    }
}

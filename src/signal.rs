//! Signals shared by the computation, the requesters and the poller.
//!
//! - The request pending flag: set by `put_request`, cleared by the poller when it starts
//!   processing requests. The flag going from clear to set calls the [`Notify`] hook, which
//!   coalesces request notifications to one per `process_requests`.
//! - Updates need no flag of their own: the triple buffer's dirty bit is one. `put_update`
//!   calls the hook when its publish finds the back buffer clean (the poller took the last
//!   snapshot), and only then: one notification per snapshot the poller takes. See
//!   [`Publisher::put_update`](crate::Publisher::put_update).
//! - The demand word, read by [`Publisher::wants_update`](crate::Publisher::wants_update)
//!   with one atomic load. It packs:
//!   bit 0, set once the request side is closed;
//!   bit 1, set while a connection subscribes to updates;
//!   bits 2 to the second highest, the number of requests accepted and not yet answered;
//!   the highest bit, set while no poller serves the server: set when the server is
//!   dropped, or when a runner's poller stops, cleared by the next poller call.
//!
//! Keeping the closed bit and the request count in one word makes shutdown exact: a
//! requester adds itself to the count and learns whether the side is closed in one
//! read-modify-write, so the poller's close and every requester's increment are totally
//! ordered. Either the requester sees the close and gives its request back, or the poller
//! sees the request in the count and waits for it.

use crate::notify::{Event, Notify};
use crate::sync::{AtomicBool, AtomicUsize, Ordering};

pub(crate) const CLOSED: usize = 1;
pub(crate) const SUBSCRIBED: usize = 2;
pub(crate) const ONE_REQUEST: usize = 4;
/// The sign bit. With the closed bit lowest, `wants_update` is one signed comparison.
pub(crate) const STOPPED: usize = 1 << (usize::BITS - 1);

pub(crate) struct Signals<N> {
    notify: N,
    request_pending: AtomicBool,
    demand: AtomicUsize,
}

impl<N: Notify> Signals<N> {
    pub(crate) fn new(notify: N) -> Self {
        Self {
            notify,
            request_pending: AtomicBool::new(false),
            demand: AtomicUsize::new(0),
        }
    }

    pub(crate) fn notifier(&self) -> &N {
        &self.notify
    }

    /// Tells the hook that a snapshot was published into a back buffer the poller had
    /// emptied.
    #[inline]
    pub(crate) fn notify_update(&self) {
        self.notify.notify(Event::Update);
    }

    /// Marks a request pending and calls the hook if none was pending yet.
    #[inline]
    pub(crate) fn raise_request(&self) {
        // AcqRel: the Release half orders the enqueue before the flag, so a poller whose
        // `begin_requests` reads this `true` sees the request. If we read `true`, the poller
        // has not cleared the flag yet (its clear comes later in the flag's modification
        // order) and will see our request when it does: no notification needed.
        if !self.request_pending.swap(true, Ordering::AcqRel) {
            self.notify.notify(Event::Request);
        }
    }

    /// Clears the request flag before the poller looks for requests.
    ///
    /// Clearing must come before the look: a request that arrives after the clear raises
    /// the flag again and notifies, so it is never left behind until some later event.
    #[inline]
    pub(crate) fn begin_requests(&self) {
        // AcqRel: Acquire synchronises with the `raise_request` whose `true` we read, so
        // its request is visible to the look that follows.
        self.request_pending.swap(false, Ordering::AcqRel);
    }

    /// Whether a request was put since the poller last began processing requests.
    pub(crate) fn request_pending(&self) -> bool {
        self.request_pending.load(Ordering::Acquire)
    }

    /// One load: someone subscribes, or a request waits for an answer, and a poller
    /// serves them.
    #[inline]
    pub(crate) fn wants_update(&self) -> bool {
        // Relaxed: the answer is advisory (skip a copy nobody needs); the request that set
        // the count is ordered by the queue itself.
        // Above the closed bit: a subscriber or a request; positive: the stopped bit (the
        // sign) clear.
        self.demand.load(Ordering::Relaxed) as isize > CLOSED as isize
    }

    /// Counts a request in before it is queued; `Err` if the request side is closed (the
    /// count is then taken back already).
    pub(crate) fn enter_request(&self) -> Result<(), ()> {
        // AcqRel: this RMW and the poller's `close` are totally ordered on `demand`; the
        // Acquire half makes a close we read visible, the Release half publishes the count.
        let before = self.demand.fetch_add(ONE_REQUEST, Ordering::AcqRel);
        if before & CLOSED != 0 {
            self.leave_requests(1);
            return Err(());
        }
        Ok(())
    }

    /// Takes `n` requests out of the count: answered, reported, or handed back.
    pub(crate) fn leave_requests(&self, n: usize) {
        if n != 0 {
            // Release: answers delivered before this are ordered before a later `0` count.
            self.demand.fetch_sub(n * ONE_REQUEST, Ordering::Release);
        }
    }

    /// Requests accepted (or being accepted) and not yet answered.
    pub(crate) fn requests_in_flight(&self) -> usize {
        (self.demand.load(Ordering::Acquire) & !STOPPED) / ONE_REQUEST
    }

    /// Sets or clears the subscribed bit, and clears the stopped bit: a poller is at work.
    /// Only the poller writes these bits, so a relaxed load tells exactly whether they must
    /// change, and unchanged bits cost no write.
    pub(crate) fn set_subscribed(&self, subscribed: bool) {
        let demand = self.demand.load(Ordering::Relaxed);
        let stopped = demand & STOPPED != 0;
        if !stopped && (demand & SUBSCRIBED != 0) == subscribed {
            return;
        }
        if subscribed {
            self.demand.fetch_or(SUBSCRIBED, Ordering::Relaxed);
        } else {
            self.demand.fetch_and(!SUBSCRIBED, Ordering::Relaxed);
        }
        if stopped {
            self.demand.fetch_and(!STOPPED, Ordering::Relaxed);
        }
    }
}

impl<N> Signals<N> {
    /// Closes the request side: every later `enter_request` fails.
    pub(crate) fn close(&self) {
        self.demand.fetch_or(CLOSED, Ordering::AcqRel);
    }

    /// Closes the request side, and says no poller serves the server: `wants_update` is
    /// false until a poller works again (never, once the server is dropped), whatever the
    /// count of requests still in flight (a requester that counted itself in before the
    /// close may still be about to queue its request, which nobody will take).
    pub(crate) fn stop(&self) {
        self.demand.fetch_or(CLOSED | STOPPED, Ordering::AcqRel);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.demand.load(Ordering::Acquire) & CLOSED != 0
    }
}

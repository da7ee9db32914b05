//! The handoff between the poller and a relay's worker side: a latest-wins slot for
//! updates (embassy-sync's `Signal`) and a bounded queue for answers (its `Channel`), with
//! the wakers of whoever works on them.
//!
//! - **The poller never waits.** [`offer`](Mailbox::offer) and [`push`](Mailbox::push)
//!   take one short lock and wake at most one waiter, outside it. The queue's memory is
//!   allocated at construction: a push never allocates. A value the slot or the queue
//!   drops is dropped outside the lock.
//! - **Latest wins.** An update the worker side has not taken yet is replaced, and counted.
//! - **Nothing else is dropped.** A push that finds the queue full is refused and handed
//!   back; the relay keeps the queue large enough that this never happens (one place per
//!   query in flight), and a refusal fails the connection rather than lose an answer.
//! - **Every waiter learns of its work.** A waiter registers under the same lock the poller
//!   pushes under, after finding nothing to do: a push either comes before (and the waiter
//!   sees it) or after (and wakes it). A waiter registered for answers only is not woken by
//!   updates, so that a worker pacing its updates costs the poller no wake-up per update.
//! - **Either side can end it.** The poller's side by [`detach`](Mailbox::detach) (the
//!   connection is gone), the worker's by [`close`](Mailbox::close); every waiter is woken,
//!   and what is queued stays for the worker side to take.
//!
//! The state is behind one `Mutex` of the crate's `sync` shim, so that the loom model
//! `loom-tests/tests/relay.rs` checks every interleaving of it.

use crate::fault::PanicMessage;
use crate::sync::{lock, Mutex, MutexGuard};
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;
use std::task::Waker;

/// Why a mailbox ended, and so the relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum End {
    /// The poller's side went away: the relay's connection was dropped (removed from its
    /// server, or the server dropped). What it queued before is still delivered.
    Detached,
    /// The worker's side was closed: its owner stopped it. The connection fails with
    /// [`ConnectionError::Closed`](crate::ConnectionError::Closed) at the poller's next call.
    Closed,
    /// A sink panicked on the worker side, with the panic's message. The connection fails
    /// with [`ConnectionError::Panicked`](crate::ConnectionError::Panicked) at the poller's
    /// next call.
    Failed(PanicMessage),
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Detached => f.write_str("the server dropped the relay's connection"),
            Self::Closed => f.write_str("the relay was closed"),
            Self::Failed(message) => write!(f, "the relay's sink panicked: {message}"),
        }
    }
}

/// A push the mailbox refused: the message comes back.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused<M> {
    /// The queue is full.
    Full(M),
    /// The worker's side has ended (closed, or failed).
    Ended(End, M),
}

/// The mailbox's counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Updates the poller offered.
    pub(crate) offered: u64,
    /// Updates replaced in the slot before the worker side took them.
    pub(crate) superseded: u64,
    /// Updates the worker side took.
    pub(crate) taken: u64,
    /// Messages queued.
    pub(crate) queued: u64,
    /// Pushes refused because the queue was full.
    pub(crate) refused: u64,
    /// The most messages queued at once.
    pub(crate) high_water: usize,
    /// Waiters the poller woke.
    pub(crate) wakes: u64,
}

struct Waiter {
    id: u64,
    waker: Waker,
    /// Whether an update alone is work for it.
    updates: bool,
}

struct State<U, M> {
    update: Option<U>,
    queue: VecDeque<M>,
    capacity: usize,
    waiters: Vec<Waiter>,
    next_id: u64,
    /// Set once; `Detached` may be followed by a worker-side end, which then wins for the
    /// poller (it is gone anyway) but not for the worker (it drains what was queued).
    detached: bool,
    end: Option<End>,
    counts: Counts,
}

impl<U, M> State<U, M> {
    /// Takes the first waiter that wants this kind of work out of the list.
    fn pop_waiter(&mut self, update: bool) -> Option<Waker> {
        let at = self.waiters.iter().position(|w| w.updates || !update)?;
        self.counts.wakes += 1;
        Some(self.waiters.swap_remove(at).waker)
    }

    fn has_work(&self, updates: bool) -> bool {
        !self.queue.is_empty()
            || (updates && self.update.is_some())
            || self.detached
            || self.end.is_some()
    }
}

/// See the [module docs](self).
pub(crate) struct Mailbox<U, M> {
    state: Mutex<State<U, M>>,
}

impl<U, M> Mailbox<U, M> {
    /// A mailbox whose queue holds `capacity` messages (at least one), allocated here.
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            state: Mutex::new(State {
                update: None,
                queue: VecDeque::with_capacity(capacity),
                capacity,
                waiters: Vec::new(),
                next_id: 0,
                detached: false,
                end: None,
                counts: Counts::default(),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State<U, M>> {
        lock(&self.state)
    }

    // ----- the poller's side -----

    /// Puts `update` in the slot, replacing one not taken yet; wakes a waiter that wants
    /// updates.
    ///
    /// **Poller.** One short lock, at most one wake outside it; the replaced update is
    /// dropped outside the lock. Returns the worker side's end, if it has ended (the update
    /// is dropped then).
    pub(crate) fn offer(&self, update: U) -> Result<(), End> {
        let mut state = self.state();
        if let Some(end) = state.end {
            drop(state);
            drop(update);
            return Err(end);
        }
        state.counts.offered += 1;
        let replaced = state.update.replace(update);
        if replaced.is_some() {
            state.counts.superseded += 1;
        }
        let waker = state.pop_waiter(true);
        drop(state);
        drop(replaced);
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Queues `message`; wakes one waiter.
    ///
    /// **Poller.** One short lock, no allocation, at most one wake outside it.
    pub(crate) fn push(&self, message: M) -> Result<(), Refused<M>> {
        let mut state = self.state();
        if let Some(end) = state.end {
            return Err(Refused::Ended(end, message));
        }
        if state.queue.len() >= state.capacity {
            state.counts.refused += 1;
            return Err(Refused::Full(message));
        }
        state.queue.push_back(message);
        state.counts.queued += 1;
        state.counts.high_water = state.counts.high_water.max(state.queue.len());
        let waker = state.pop_waiter(false);
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// The poller's side is gone: wakes every waiter. What is queued stays, and so does
    /// the update in the slot (the last snapshot a stopping server delivered).
    pub(crate) fn detach(&self) {
        let mut state = self.state();
        state.detached = true;
        let waiters = core::mem::take(&mut state.waiters);
        drop(state);
        for waiter in waiters {
            waiter.waker.wake();
        }
    }

    // ----- the worker's side -----

    /// Takes the update in the slot, if there is one.
    pub(crate) fn take_update(&self) -> Option<U> {
        let mut state = self.state();
        let update = state.update.take();
        if update.is_some() {
            state.counts.taken += 1;
        }
        update
    }

    /// After the messages: the update in the slot if `update` or the poller's side is gone
    /// (its last snapshot is handed over whatever the pace), and the end as
    /// [`end`](Self::end) sees it once that update is taken. One lock.
    pub(crate) fn finish(&self, update: bool) -> (Option<U>, Option<End>) {
        let mut state = self.state();
        let newest = if update || state.detached {
            state.update.take()
        } else {
            None
        };
        if newest.is_some() {
            state.counts.taken += 1;
        }
        let drained = state.queue.is_empty() && state.update.is_none();
        let end = state
            .end
            .or((state.detached && drained).then_some(End::Detached));
        (newest, end)
    }

    /// Takes the oldest message, if there is one.
    pub(crate) fn pop(&self) -> Option<M> {
        self.state().queue.pop_front()
    }

    /// Whether there is work for a waiter (`updates`: whether an update counts): a message,
    /// an update, or an end. If not, registers `waker` under `slot` (replacing an earlier
    /// registration of the same slot), to be woken when there is.
    ///
    /// **Worker side.** One short lock; allocates when the list of waiters grows.
    pub(crate) fn ready_or_register(
        &self,
        slot: &mut Option<u64>,
        waker: &Waker,
        updates: bool,
    ) -> bool {
        let mut state = self.state();
        let existing = slot.and_then(|id| state.waiters.iter().position(|w| w.id == id));
        if state.has_work(updates) {
            let removed = existing.map(|at| state.waiters.swap_remove(at));
            *slot = None;
            drop(state);
            drop(removed);
            return true;
        }
        match existing {
            Some(at) => {
                let waiter = &mut state.waiters[at];
                waiter.updates = updates;
                if !waiter.waker.will_wake(waker) {
                    waiter.waker.clone_from(waker);
                }
            }
            None => {
                let id = state.next_id;
                state.next_id += 1;
                state.waiters.push(Waiter {
                    id,
                    waker: waker.clone(),
                    updates,
                });
                *slot = Some(id);
            }
        }
        false
    }

    /// Withdraws the registration under `slot`, if it is still there.
    pub(crate) fn unregister(&self, slot: &mut Option<u64>) {
        if let Some(id) = slot.take() {
            let mut state = self.state();
            let removed = state
                .waiters
                .iter()
                .position(|w| w.id == id)
                .map(|at| state.waiters.swap_remove(at));
            drop(state);
            // A waker's drop is foreign code: outside the lock.
            drop(removed);
        }
    }

    /// Wakes every waiter (to look at a change of their own: a nearer deadline, say).
    pub(crate) fn wake_all(&self) {
        let waiters = core::mem::take(&mut self.state().waiters);
        for waiter in waiters {
            waiter.waker.wake();
        }
    }

    /// Ends the worker's side: later offers and pushes are refused with `end`, every waiter
    /// is woken. The first end stays.
    pub(crate) fn close(&self, end: End) {
        let mut state = self.state();
        if state.end.is_none() {
            state.end = Some(end);
        }
        let update = state.update.take();
        let waiters = core::mem::take(&mut state.waiters);
        drop(state);
        drop(update);
        for waiter in waiters {
            waiter.waker.wake();
        }
    }

    /// How the mailbox ended, as the worker side sees it: its own end if it has one, else
    /// [`End::Detached`] once the poller's side is gone and nothing is left in it.
    pub(crate) fn end(&self) -> Option<End> {
        let state = self.state();
        let drained = state.queue.is_empty() && state.update.is_none();
        state
            .end
            .or((state.detached && drained).then_some(End::Detached))
    }

    /// How many messages are queued, and the update if one waits.
    pub(crate) fn len(&self) -> usize {
        let state = self.state();
        state.queue.len() + usize::from(state.update.is_some())
    }

    /// The counts so far.
    pub(crate) fn counts(&self) -> Counts {
        self.state().counts
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn waker() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count::default());
        (Arc::clone(&count), Waker::from(count))
    }

    #[test]
    fn updates_are_latest_wins_and_counted() {
        let mailbox: Mailbox<u32, u32> = Mailbox::new(2);
        for u in 1..=3 {
            mailbox.offer(u).unwrap();
        }
        assert_eq!(mailbox.take_update(), Some(3));
        assert_eq!(mailbox.take_update(), None);
        let counts = mailbox.counts();
        assert_eq!((counts.offered, counts.superseded, counts.taken), (3, 2, 1));
    }

    #[test]
    fn a_full_queue_hands_the_message_back_and_drops_nothing() {
        let mailbox: Mailbox<u32, u32> = Mailbox::new(2);
        mailbox.push(1).unwrap();
        mailbox.push(2).unwrap();
        assert_eq!(mailbox.push(3), Err(Refused::Full(3)));
        assert_eq!(
            (mailbox.pop(), mailbox.pop(), mailbox.pop()),
            (Some(1), Some(2), None)
        );
        assert_eq!(mailbox.counts().refused, 1);
    }

    #[test]
    fn a_waiter_for_answers_only_is_not_woken_by_updates() {
        let mailbox: Mailbox<u32, u32> = Mailbox::new(2);
        let (count, waker) = waker();
        let mut slot = None;
        assert!(!mailbox.ready_or_register(&mut slot, &waker, false));
        mailbox.offer(1).unwrap();
        assert_eq!(count.0.load(Ordering::Relaxed), 0);
        // An update waits for it; an answer wakes it.
        assert!(!mailbox.ready_or_register(&mut slot, &waker, false));
        mailbox.push(7).unwrap();
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        assert!(mailbox.ready_or_register(&mut slot, &waker, true));
        assert_eq!(slot, None);
    }

    #[test]
    fn one_push_wakes_one_waiter() {
        let mailbox: Mailbox<u32, u32> = Mailbox::new(4);
        let (a, wa) = waker();
        let (b, wb) = waker();
        let (mut sa, mut sb) = (None, None);
        assert!(!mailbox.ready_or_register(&mut sa, &wa, false));
        assert!(!mailbox.ready_or_register(&mut sb, &wb, false));
        mailbox.push(1).unwrap();
        let woken = a.0.load(Ordering::Relaxed) + b.0.load(Ordering::Relaxed);
        assert_eq!(woken, 1);
        mailbox.push(2).unwrap();
        assert_eq!(a.0.load(Ordering::Relaxed) + b.0.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_detached_mailbox_wakes_everyone_and_keeps_what_is_queued() {
        let mailbox: Mailbox<u32, u32> = Mailbox::new(4);
        let (count, waker) = waker();
        let mut slot = None;
        mailbox.push(5).unwrap();
        assert!(mailbox.ready_or_register(&mut slot, &waker, false));
        assert_eq!(mailbox.pop(), Some(5));
        assert!(!mailbox.ready_or_register(&mut slot, &waker, false));
        mailbox.push(6).unwrap();
        mailbox.detach();
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        // Not ended for the worker until it has taken what was queued.
        assert_eq!(mailbox.end(), None);
        assert_eq!(mailbox.pop(), Some(6));
        assert_eq!(mailbox.end(), Some(End::Detached));
    }

    #[test]
    fn a_closed_mailbox_refuses_the_poller() {
        let mailbox: Mailbox<u32, u32> = Mailbox::new(4);
        mailbox.close(End::Closed);
        assert_eq!(mailbox.offer(1), Err(End::Closed));
        assert_eq!(mailbox.push(2), Err(Refused::Ended(End::Closed, 2)));
        mailbox.close(End::Failed(PanicMessage::new("later")));
        assert_eq!(mailbox.offer(3), Err(End::Closed));
    }
}

//! One receiver's outbox: a bounded queue of messages between a relay's worker side (and
//! whoever else answers the receiver) and the thread that writes to the receiver.
//!
//! A transport with many receivers behind one relay (the pages of a web view, Foxglove
//! clients) gives each one of these, so that a slow receiver costs only itself:
//!
//! - **Bounded.** At most `capacity` messages wait. When it is full, a new message evicts
//!   the oldest *update* (counted in [`dropped`](OutboxStats::dropped), and told to the
//!   writer as [`Next::Dropped`] before its next message); when it holds no update, an
//!   update is itself dropped (counted), and any other message (an answer, an error, a
//!   status) is dropped and counted in [`others_dropped`](OutboxStats::others_dropped).
//!   Memory is therefore `capacity` messages, whatever the receiver does.
//! - **Rate-limited.** An update is queued at most once per the receiver's interval; one
//!   that comes sooner is *held* (a single slot, latest wins: the one it replaces is counted
//!   in [`superseded`](OutboxStats::superseded)) and handed out by [`next`](Outbox::next)
//!   when the interval has passed. A held update is never lost to the limit: the newest is
//!   always sent, and before a [last word](Outbox::push_last).
//! - **Never blocks a pusher** beyond a short lock: the writer holds it only to pop.
//! - **Knows when the receiver was last heard from** ([`heard`](Outbox::heard)), so that a
//!   worker can disconnect one that stopped answering its pings, whatever the kernel's
//!   socket buffers hold.
//!
//! | operation | where | guarantee |
//! |---|---|---|
//! | [`offer`](Outbox::offer), [`push`](Outbox::push), [`push_last`](Outbox::push_last), [`close_with`](Outbox::close_with) | any thread (a relay's worker, the receiver's reader) | a short lock; no allocation (the queue is allocated at construction); at most one wake of the writer |
//! | [`next`](Outbox::next) | the receiver's writer | **blocks** until a message is there, a held update is due, or the outbox is closed |

use crate::sync::{lock, Condvar, Mutex, MutexGuard};
use std::collections::VecDeque;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

/// A copy of one outbox's counts.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OutboxStats {
    /// Messages waiting now.
    pub queued: usize,
    /// Bytes of the messages waiting now.
    pub queued_bytes: usize,
    /// The most messages that ever waited at once (at most the capacity).
    pub high_water: usize,
    /// The most bytes that ever waited at once.
    pub bytes_high_water: usize,
    /// Updates offered. Each one is sent, dropped, superseded, or still waiting:
    /// `offered = updates_sent + dropped + superseded + waiting`.
    pub offered: u64,
    /// Updates handed to the writer.
    pub updates_sent: u64,
    /// Updates dropped because the outbox was full: the receiver read too slowly.
    pub dropped: u64,
    /// Updates replaced by a newer one under the receiver's rate limit.
    pub superseded: u64,
    /// Other messages (answers, errors, statuses) dropped because the outbox was full of
    /// such messages.
    pub others_dropped: u64,
    /// Messages handed to the writer.
    pub sent: u64,
    /// The receiver's update rate limit, in updates per second.
    pub rate_hz: f64,
}

/// What the writer does next: see [`Outbox::next`].
#[derive(Debug, PartialEq, Eq)]
pub enum Next<M> {
    /// Sends this message.
    Send(M),
    /// Tells the receiver how many updates were dropped so far (the count changed since it
    /// was last told); then asks again.
    Dropped(u64),
}

/// How many bytes a message takes, for the outbox's counts.
pub trait Measured {
    /// The message's length in bytes, as sent.
    fn bytes(&self) -> usize;
}

impl Measured for String {
    fn bytes(&self) -> usize {
        self.len()
    }
}

impl Measured for Vec<u8> {
    fn bytes(&self) -> usize {
        self.len()
    }
}

struct Queued<M> {
    update: bool,
    message: M,
}

struct State<M> {
    queue: VecDeque<Queued<M>>,
    capacity: usize,
    /// The newest update not yet due under the rate limit.
    held: Option<M>,
    interval: Duration,
    /// When the next update may be queued.
    next_due: Option<Instant>,
    /// `dropped` as last told to the writer.
    dropped_told: u64,
    closed: bool,
    /// The writer waits on the condition variable: a push that gives it work wakes it (a
    /// wake is a syscall: pushes that give it none make none).
    waiting: bool,
    heard: Instant,
    stats: OutboxStats,
}

impl<M: Measured> State<M> {
    /// Queues `message`, making room as the module docs say; whether it was queued.
    fn push(&mut self, update: bool, message: M) -> bool {
        if self.queue.len() >= self.capacity {
            match self.queue.iter().position(|q| q.update) {
                Some(at) => {
                    if let Some(evicted) = self.queue.remove(at) {
                        self.stats.queued_bytes -= evicted.message.bytes();
                    }
                    self.stats.dropped += 1;
                }
                None if update => {
                    self.stats.dropped += 1;
                    return false;
                }
                None => {
                    self.stats.others_dropped += 1;
                    return false;
                }
            }
        }
        self.stats.queued_bytes += message.bytes();
        self.queue.push_back(Queued { update, message });
        self.note_len();
        true
    }

    fn note_len(&mut self) {
        self.stats.queued = self.queue.len();
        self.stats.high_water = self.stats.high_water.max(self.queue.len());
        self.stats.bytes_high_water = self.stats.bytes_high_water.max(self.stats.queued_bytes);
    }

    fn pop(&mut self) -> Option<Queued<M>> {
        let queued = self.queue.pop_front()?;
        self.stats.queued_bytes -= queued.message.bytes();
        self.stats.queued = self.queue.len();
        Some(queued)
    }

    /// Queues `update` if the rate limit allows it at `now`, else holds it. Returns
    /// whether the writer has new work: a message queued, or a held update where there was
    /// none (a writer waiting for a held one already wakes when it is due).
    fn offer(&mut self, update: M, now: Instant) -> bool {
        self.stats.offered += 1;
        let due = self.next_due.map_or(true, |due| now >= due);
        if due {
            // A held update the writer has not taken yet is older than this one.
            if self.held.take().is_some() {
                self.stats.superseded += 1;
            }
            self.next_due = Some(now + self.interval);
            self.push(true, update)
        } else if self.held.replace(update).is_some() {
            self.stats.superseded += 1;
            false
        } else {
            true
        }
    }
}

/// See the [module docs](self).
pub struct Outbox<M> {
    state: Mutex<State<M>>,
    ready: Condvar,
}

impl<M: Measured> Outbox<M> {
    /// An outbox of `capacity` messages (at least 1), for a receiver sent at most `rate_hz`
    /// updates per second (clamped to 0.1..=1000). Allocates the queue once.
    pub fn new(capacity: usize, rate_hz: f64) -> Self {
        let capacity = capacity.max(1);
        let rate_hz = clamp(rate_hz);
        Self {
            state: Mutex::new(State {
                queue: VecDeque::with_capacity(capacity),
                capacity,
                held: None,
                interval: interval(rate_hz),
                next_due: None,
                dropped_told: 0,
                closed: false,
                waiting: false,
                heard: Instant::now(),
                stats: OutboxStats {
                    rate_hz,
                    ..OutboxStats::default()
                },
            }),
            ready: Condvar::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State<M>> {
        lock(&self.state)
    }

    /// Offers an update: queued now, or held until the receiver's rate limit allows it.
    /// Refused (dropped, not counted) once the outbox is closed.
    pub fn offer(&self, update: M, now: Instant) {
        let mut state = self.state();
        if state.closed {
            return;
        }
        let work = state.offer(update, now);
        let wake = work && state.waiting;
        drop(state);
        if wake {
            self.ready.notify_one();
        }
    }

    /// Queues any other message; whether it was queued (else it was dropped, counted, or
    /// the outbox is closed).
    pub fn push(&self, message: M) -> bool {
        let mut state = self.state();
        if state.closed {
            return false;
        }
        let queued = state.push(false, message);
        let wake = queued && state.waiting;
        drop(state);
        if wake {
            self.ready.notify_one();
        }
        queued
    }

    /// Queues `message` as the last word for now (the computation stopped, say): the
    /// update the rate limit holds, if any, is queued first, so that the receiver has the
    /// newest snapshot before it reads that no more will come.
    pub fn push_last(&self, message: M) -> bool {
        let mut state = self.state();
        if state.closed {
            return false;
        }
        if let Some(held) = state.held.take() {
            state.push(true, held);
        }
        let queued = state.push(false, message);
        let wake = state.waiting;
        drop(state);
        if wake {
            self.ready.notify_one();
        }
        queued
    }

    /// Hands `message` out after what is queued, then ends the writer; later pushes are
    /// refused. The held update is dropped: the receiver is going.
    pub fn close_with(&self, message: M) {
        let mut state = self.state();
        if !state.closed {
            state.held = None;
            // Room for the last message whatever is queued: it replaces the oldest one.
            if state.queue.len() >= state.capacity {
                state.pop();
            }
            state.stats.queued_bytes += message.bytes();
            state.queue.push_back(Queued {
                update: false,
                message,
            });
            state.note_len();
            state.closed = true;
        }
        drop(state);
        self.ready.notify_all();
    }

    /// Ends the writer at once; later pushes are refused, and what waits is dropped.
    pub fn close(&self) {
        let mut state = self.state();
        state.closed = true;
        let queue = core::mem::take(&mut state.queue);
        let held = state.held.take();
        state.stats.queued = 0;
        state.stats.queued_bytes = 0;
        drop(state);
        self.ready.notify_all();
        drop((queue, held));
    }

    /// Whether the outbox is closed.
    pub fn is_closed(&self) -> bool {
        self.state().closed
    }

    /// Sets the receiver's rate limit (clamped to 0.1..=1000 per second), from now on;
    /// returns the rate in force.
    pub fn set_rate(&self, rate_hz: f64) -> f64 {
        let rate_hz = clamp(rate_hz);
        let mut state = self.state();
        state.interval = interval(rate_hz);
        state.stats.rate_hz = rate_hz;
        state.next_due = None;
        drop(state);
        self.ready.notify_one();
        rate_hz
    }

    /// Notes that the receiver was heard from now (any message, a pong).
    pub fn heard(&self) {
        self.state().heard = Instant::now();
    }

    /// When the receiver was last heard from (at first, when the outbox was made).
    pub fn last_heard(&self) -> Instant {
        self.state().heard
    }

    /// What the writer does next: a change in the dropped count first, then the oldest
    /// message, then the held update once due. `None` once closed and empty.
    ///
    /// **The writer. Blocks** until there is something to do.
    pub fn next(&self) -> Option<Next<M>> {
        let mut state = self.state();
        loop {
            if state.stats.dropped != state.dropped_told && !state.closed {
                state.dropped_told = state.stats.dropped;
                return Some(Next::Dropped(state.dropped_told));
            }
            if let Some(queued) = state.pop() {
                state.stats.sent += 1;
                if queued.update {
                    state.stats.updates_sent += 1;
                }
                return Some(Next::Send(queued.message));
            }
            if state.closed {
                return None;
            }
            let now = Instant::now();
            let wait = match (&state.held, state.next_due) {
                (Some(_), Some(due)) if due > now => Some(due - now),
                (Some(_), _) => {
                    if let Some(update) = state.held.take() {
                        state.next_due = Some(now + state.interval);
                        state.stats.sent += 1;
                        state.stats.updates_sent += 1;
                        return Some(Next::Send(update));
                    }
                    None
                }
                (None, _) => None,
            };
            state.waiting = true;
            state = match wait {
                Some(wait) => {
                    self.ready
                        .wait_timeout(state, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self
                    .ready
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
            };
            state.waiting = false;
        }
    }

    /// A copy of the counts.
    pub fn stats(&self) -> OutboxStats {
        self.state().stats
    }
}

impl<M> core::fmt::Debug for Outbox<M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Outbox").finish_non_exhaustive()
    }
}

fn clamp(rate_hz: f64) -> f64 {
    if rate_hz.is_nan() {
        1.0
    } else {
        rate_hz.clamp(0.1, 1000.0)
    }
}

/// The interval between updates at `rate_hz` (already clamped).
fn interval(rate_hz: f64) -> Duration {
    Duration::from_secs_f64(1.0 / rate_hz)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(next: Option<Next<String>>) -> String {
        match next {
            Some(Next::Send(t)) => t,
            Some(Next::Dropped(n)) => format!("dropped {n}"),
            None => panic!("closed"),
        }
    }

    #[test]
    fn a_full_outbox_drops_the_oldest_update_and_tells_the_count_first() {
        let outbox = Outbox::new(3, 1000.0);
        let start = Instant::now();
        for i in 0..5u64 {
            // Far enough apart for the rate limit (1 ms) to let each one through.
            let at = start + Duration::from_millis(10 * i);
            outbox.offer(format!("u{i}"), at);
        }
        let stats = outbox.stats();
        assert_eq!((stats.queued, stats.high_water, stats.dropped), (3, 3, 2));
        assert_eq!(text(outbox.next()), "dropped 2");
        assert_eq!(text(outbox.next()), "u2");
        assert_eq!(text(outbox.next()), "u3");
        assert_eq!(text(outbox.next()), "u4");
        assert_eq!(outbox.stats().queued_bytes, 0);
    }

    #[test]
    fn answers_evict_updates_and_are_dropped_only_among_answers() {
        let outbox = Outbox::new(2, 1000.0);
        outbox.offer("u0".to_owned(), Instant::now());
        assert!(outbox.push("a1".into()));
        assert!(outbox.push("a2".into())); // evicts u0
        assert!(!outbox.push("a3".into())); // full of answers
        let stats = outbox.stats();
        assert_eq!((stats.dropped, stats.others_dropped), (1, 1));
        assert_eq!(text(outbox.next()), "dropped 1");
        assert_eq!(text(outbox.next()), "a1");
        assert_eq!(text(outbox.next()), "a2");
    }

    #[test]
    fn the_rate_limit_holds_the_newest_update_and_sends_it_when_due() {
        let outbox = Outbox::new(8, 20.0); // 50 ms apart
        let now = Instant::now();
        outbox.offer("u0".to_owned(), now);
        outbox.offer("u1".to_owned(), now);
        outbox.offer("u2".to_owned(), now);
        let stats = outbox.stats();
        assert_eq!((stats.queued, stats.superseded, stats.dropped), (1, 1, 0));
        assert_eq!(text(outbox.next()), "u0");
        // The held one comes out once the interval has passed, not before.
        assert_eq!(text(outbox.next()), "u2");
        assert!(now.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn a_last_message_follows_the_held_update_at_once() {
        let outbox = Outbox::new(8, 0.1); // ten seconds apart
        let now = Instant::now();
        outbox.offer("u0".to_owned(), now);
        outbox.offer("u1".to_owned(), now);
        assert_eq!(text(outbox.next()), "u0");
        assert!(outbox.push_last("stopped".to_owned()));
        // The held update comes first, without waiting for its interval.
        assert_eq!(text(outbox.next()), "u1");
        assert_eq!(text(outbox.next()), "stopped");
        assert!(now.elapsed() < Duration::from_secs(10));
        let stats = outbox.stats();
        assert_eq!(
            (stats.updates_sent, stats.superseded, stats.dropped),
            (2, 0, 0)
        );
    }

    #[test]
    fn a_closed_outbox_refuses_pushes_and_ends_the_writer() {
        let outbox = Outbox::new(2, 10.0);
        assert!(outbox.push("x".to_owned()));
        outbox.close();
        assert!(!outbox.push("y".to_owned()));
        assert!(outbox.next().is_none());
    }
}

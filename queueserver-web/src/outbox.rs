//! One page's outbox: a bounded queue of messages between the poller (and the page's own
//! reader thread) and the thread that writes to the page's socket.
//!
//! - **Bounded.** At most `capacity` messages wait. When it is full, a new message evicts
//!   the oldest *update* (counted in `dropped`, and told to the page before its next
//!   message); when it holds no update, an update is itself dropped (counted), and any
//!   other message (an answer, an error, the counters) is dropped and counted in
//!   `others_dropped`. Memory is therefore `capacity` messages, whatever the page does.
//! - **Rate-limited.** An update is queued at most once per the page's interval; one that
//!   comes sooner is *held* (a single slot, latest wins: the one it replaces is counted in
//!   `superseded`) and queued by the writer when the interval has passed. A held update is
//!   never lost to the limit: the newest is always sent, and before the "stopped" status.
//! - **Never blocks a pusher** beyond a short lock: the writer holds it only to pop.
//!
//! The update texts are shared (`Utf8Bytes` clones count a reference), so the poller
//! serializes a snapshot once for every page.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tungstenite::protocol::CloseFrame;
use tungstenite::{Bytes, Utf8Bytes};

/// A message for the page.
#[derive(Debug)]
pub(crate) enum Out {
    /// A snapshot, as the shared JSON text.
    Update(Utf8Bytes),
    /// Any other JSON message.
    Text(Utf8Bytes),
    /// The reply to a ping.
    Pong(Bytes),
    /// Send this close frame, then stop.
    Close(CloseFrame),
}

impl Out {
    fn len(&self) -> usize {
        match self {
            Self::Update(text) | Self::Text(text) => text.len(),
            Self::Pong(data) => data.len(),
            Self::Close(frame) => frame.reason.len() + 2,
        }
    }
}

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
    /// Updates offered to the page (one per snapshot serialized while it was connected).
    /// Each one is sent, dropped, superseded, or still waiting:
    /// `offered = updates_sent + dropped + superseded + waiting`.
    pub offered: u64,
    /// Updates handed to the socket.
    pub updates_sent: u64,
    /// Updates dropped because the outbox was full: the page read too slowly.
    pub dropped: u64,
    /// Updates replaced by a newer one under the page's rate limit.
    pub superseded: u64,
    /// Other messages (answers, errors, counters) dropped because the outbox was full of
    /// such messages.
    pub others_dropped: u64,
    /// Messages handed to the socket.
    pub sent: u64,
    /// The page's update rate limit, in updates per second.
    pub rate_hz: f64,
}

struct State {
    queue: VecDeque<Out>,
    capacity: usize,
    /// The newest update not yet due under the rate limit.
    held: Option<Utf8Bytes>,
    interval: Duration,
    /// When the next update may be queued.
    next_due: Option<Instant>,
    /// `dropped` as last told to the page.
    dropped_told: u64,
    closed: bool,
    /// The writer waits on the condition variable: a push that gives it work wakes it (a
    /// wake is a syscall: pushes that give it none make none).
    waiting: bool,
    stats: OutboxStats,
}

impl State {
    /// Queues `out`, making room as the module docs say; whether it was queued.
    fn push(&mut self, out: Out) -> bool {
        let is_update = matches!(out, Out::Update(_));
        if self.queue.len() >= self.capacity {
            let oldest = self.queue.iter().position(|m| matches!(m, Out::Update(_)));
            match oldest {
                Some(at) => {
                    if let Some(evicted) = self.queue.remove(at) {
                        self.stats.queued_bytes -= evicted.len();
                    }
                    self.stats.dropped += 1;
                }
                None if is_update => {
                    self.stats.dropped += 1;
                    return false;
                }
                None => {
                    self.stats.others_dropped += 1;
                    return false;
                }
            }
        }
        self.stats.queued_bytes += out.len();
        self.queue.push_back(out);
        self.note_len();
        true
    }

    fn note_len(&mut self) {
        self.stats.queued = self.queue.len();
        self.stats.high_water = self.stats.high_water.max(self.queue.len());
        self.stats.bytes_high_water = self.stats.bytes_high_water.max(self.stats.queued_bytes);
    }

    fn pop(&mut self) -> Option<Out> {
        let out = self.queue.pop_front()?;
        self.stats.queued_bytes -= out.len();
        self.stats.queued = self.queue.len();
        Some(out)
    }

    /// Queues `update` if the rate limit allows it at `now`, else holds it. Returns
    /// whether the writer has new work: a message queued, or a held update where there was
    /// none (a writer waiting for a held one already wakes when it is due).
    fn offer_update(&mut self, update: Utf8Bytes, now: Instant) -> bool {
        self.stats.offered += 1;
        let due = self.next_due.map_or(true, |due| now >= due);
        if due {
            // A held update the writer has not taken yet is older than this one.
            if self.held.take().is_some() {
                self.stats.superseded += 1;
            }
            self.next_due = Some(now + self.interval);
            self.push(Out::Update(update))
        } else if self.held.replace(update).is_some() {
            self.stats.superseded += 1;
            false
        } else {
            true
        }
    }
}

/// See the [module docs](self).
pub(crate) struct Outbox {
    state: Mutex<State>,
    ready: Condvar,
}

impl Outbox {
    /// An outbox of `capacity` messages, for a page sent at most `rate_hz` updates per
    /// second. Allocates the queue once.
    pub(crate) fn new(capacity: usize, rate_hz: f64) -> Self {
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
                stats: OutboxStats {
                    rate_hz,
                    ..OutboxStats::default()
                },
            }),
            ready: Condvar::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every change leaves the state whole: a panic elsewhere cannot tear it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Offers a snapshot's text (the poller): queued now, or held until the page's rate
    /// limit allows it. A short lock; never blocks otherwise.
    pub(crate) fn push_update(&self, update: &Utf8Bytes, now: Instant) {
        let mut state = self.state();
        if state.closed {
            return;
        }
        let work = state.offer_update(update.clone(), now);
        let wake = work && state.waiting;
        drop(state);
        if wake {
            self.ready.notify_one();
        }
    }

    /// Queues any other message; whether it was queued (else it was dropped, counted).
    pub(crate) fn push(&self, out: Out) -> bool {
        let mut state = self.state();
        if state.closed {
            return false;
        }
        let queued = state.push(out);
        let wake = queued && state.waiting;
        drop(state);
        if wake {
            self.ready.notify_one();
        }
        queued
    }

    /// Queues `out` as the stream's last word for now (the computation stopped): the update
    /// the rate limit holds, if any, is queued first, so that the page has the newest
    /// snapshot before it reads that no more will come. A short lock; never blocks.
    pub(crate) fn push_last(&self, out: Out) -> bool {
        let mut state = self.state();
        if state.closed {
            return false;
        }
        if let Some(held) = state.held.take() {
            state.push(Out::Update(held));
        }
        let queued = state.push(out);
        let wake = state.waiting;
        drop(state);
        if wake {
            self.ready.notify_one();
        }
        queued
    }

    /// Queues a text message.
    pub(crate) fn push_text(&self, text: String) -> bool {
        self.push(Out::Text(Utf8Bytes::from(text)))
    }

    /// Sends `frame` after what is queued, then ends the writer; later pushes are refused.
    pub(crate) fn close_with(&self, frame: CloseFrame) {
        let mut state = self.state();
        if !state.closed {
            state.held = None;
            // Room for the close frame whatever is queued: it replaces the oldest message.
            if state.queue.len() >= state.capacity {
                state.pop();
            }
            let close = Out::Close(frame);
            state.stats.queued_bytes += close.len();
            state.queue.push_back(close);
            state.note_len();
            state.closed = true;
        }
        drop(state);
        self.ready.notify_all();
    }

    /// Ends the writer at once; later pushes are refused.
    pub(crate) fn close(&self) {
        let mut state = self.state();
        state.closed = true;
        state.queue.clear();
        state.held = None;
        state.stats.queued = 0;
        state.stats.queued_bytes = 0;
        drop(state);
        self.ready.notify_all();
    }

    /// Sets the page's rate limit; returns the rate in force.
    pub(crate) fn set_rate(&self, rate_hz: f64) -> f64 {
        let mut state = self.state();
        state.interval = interval(rate_hz);
        state.stats.rate_hz = rate_hz;
        // A new rate takes effect from now.
        state.next_due = None;
        drop(state);
        self.ready.notify_one();
        rate_hz
    }

    /// The next message for the socket (the writer): waits for one, or for the held
    /// update to become due. A change in the dropped count is told first. `None` once
    /// closed and empty.
    pub(crate) fn next(&self) -> Option<Out> {
        let mut state = self.state();
        loop {
            if state.stats.dropped != state.dropped_told && !state.closed {
                state.dropped_told = state.stats.dropped;
                let told = crate::wire::dropped(state.dropped_told);
                state.stats.sent += 1;
                return Some(Out::Text(Utf8Bytes::from(told)));
            }
            if let Some(out) = state.pop() {
                state.stats.sent += 1;
                if matches!(out, Out::Update(_)) {
                    state.stats.updates_sent += 1;
                }
                return Some(out);
            }
            if state.closed {
                return None;
            }
            let now = Instant::now();
            let wait = match (&state.held, state.next_due) {
                (Some(_), Some(due)) if due > now => Some(due - now),
                (Some(_), _) => {
                    let held = state.held.take();
                    if let Some(update) = held {
                        state.next_due = Some(now + state.interval);
                        state.stats.sent += 1;
                        state.stats.updates_sent += 1;
                        return Some(Out::Update(update));
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
    pub(crate) fn stats(&self) -> OutboxStats {
        self.state().stats
    }
}

/// The interval between updates at `rate_hz` (callers clamp the rate to `0.1..=1000`).
fn interval(rate_hz: f64) -> Duration {
    Duration::from_secs_f64(1.0 / rate_hz.clamp(0.1, 1000.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(out: Option<Out>) -> String {
        match out {
            Some(Out::Update(t) | Out::Text(t)) => t.as_str().to_owned(),
            other => panic!("not a text: {other:?}"),
        }
    }

    #[test]
    fn a_full_outbox_drops_the_oldest_update_and_tells_the_count_first() {
        let outbox = Outbox::new(3, 1000.0);
        let start = Instant::now();
        for i in 0..5u64 {
            // Far enough apart for the rate limit (1 ms) to let each one through.
            let at = start + Duration::from_millis(10 * i);
            outbox.push_update(&Utf8Bytes::from(format!("u{i}")), at);
        }
        let stats = outbox.stats();
        assert_eq!((stats.queued, stats.high_water, stats.dropped), (3, 3, 2));
        assert_eq!(text(outbox.next()), r#"{"type":"dropped","updates":2}"#);
        assert_eq!(text(outbox.next()), "u2");
        assert_eq!(text(outbox.next()), "u3");
        assert_eq!(text(outbox.next()), "u4");
        assert_eq!(outbox.stats().queued_bytes, 0);
    }

    #[test]
    fn answers_evict_updates_and_are_dropped_only_among_answers() {
        let outbox = Outbox::new(2, 1000.0);
        outbox.push_update(&Utf8Bytes::from("u0"), Instant::now());
        assert!(outbox.push_text("a1".into()));
        assert!(outbox.push_text("a2".into())); // evicts u0
        assert!(!outbox.push_text("a3".into())); // full of answers
        let stats = outbox.stats();
        assert_eq!((stats.dropped, stats.others_dropped), (1, 1));
        assert_eq!(text(outbox.next()), r#"{"type":"dropped","updates":1}"#);
        assert_eq!(text(outbox.next()), "a1");
        assert_eq!(text(outbox.next()), "a2");
    }

    #[test]
    fn the_rate_limit_holds_the_newest_update_and_sends_it_when_due() {
        let outbox = Outbox::new(8, 20.0); // 50 ms apart
        let now = Instant::now();
        outbox.push_update(&Utf8Bytes::from("u0"), now);
        outbox.push_update(&Utf8Bytes::from("u1"), now);
        outbox.push_update(&Utf8Bytes::from("u2"), now);
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
        outbox.push_update(&Utf8Bytes::from("u0"), now);
        outbox.push_update(&Utf8Bytes::from("u1"), now);
        assert_eq!(text(outbox.next()), "u0");
        assert!(outbox.push_last(Out::Text(Utf8Bytes::from("stopped"))));
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
        assert!(outbox.push_text("x".into()));
        outbox.close();
        assert!(!outbox.push_text("y".into()));
        assert!(outbox.next().is_none());
    }
}

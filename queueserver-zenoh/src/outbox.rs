//! The outbox and the sender thread: everything that touches the network on the publishing
//! side, kept off the poller.
//!
//! The poller hands the outbox two kinds of work, and never waits for the network:
//!
//! - **the newest snapshot** to publish, in a slot of one: latest wins. A snapshot the
//!   sender has not taken yet is replaced, and counted in
//!   [`Stats::snapshots_overwritten`](crate::Stats::snapshots_overwritten). The sender
//!   publishes every value that changed since the last snapshot *it published*, so a value
//!   changed only in an overwritten snapshot still goes out with the next one.
//! - **replies** to remote gets, in a queue whose length is bounded by the number of gets
//!   admitted ([`Options::with_max_gets`](crate::Options::with_max_gets)): a get is
//!   admitted only with room for every reply it stands for, and its room is given back
//!   when the sender has sent them.
//!
//! Each costs the poller a short lock and a condition-variable notification. The sender
//! thread does the serialization of published values, every `put`, every `reply`, and
//! drops every `zenoh::Query` (dropping the last clone of a query sends its final reply),
//! so a congested or vanished peer can slow the sender, never the poller. The same thread
//! sweeps the gets whose deadline has passed.

use crate::stats::Counters;
use crate::wire::{self, ENCODING, ERROR_ENCODING};
use queueserver::asks::{AskError, Asks};
use queueserver::idict::MAX_NAME_LEN;
use queueserver::{IDict, Snapshot};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use zenoh::bytes::ZBytes;
use zenoh::key_expr::{keyexpr, OwnedKeyExpr};
use zenoh::pubsub::Publisher;
use zenoh::qos::CongestionControl;
use zenoh::query::Query;
use zenoh::{Session, Wait};

/// How soon to sweep again while some request waits for room in the server's queue.
const RETRY: Duration = Duration::from_millis(2);

/// An answer prepared once on the poller, lent to every asker of its query.
#[derive(Debug)]
pub(crate) enum Prepared {
    /// A value or the snapshot, as JSON, read from snapshot `seq`.
    Payload { json: ZBytes, seq: u64 },
    /// No reply can be made: why, as the error reply says it.
    Error(String),
}

/// A reply the sender makes, then drops its query.
pub(crate) enum Job {
    /// Reply on the concrete key `key`.
    Reply {
        query: Query,
        key: OwnedKeyExpr,
        json: ZBytes,
        seq: u64,
    },
    /// An error reply.
    Fail { query: Query, message: String },
}

struct State<D> {
    latest: Option<Arc<Snapshot<D>>>,
    jobs: VecDeque<Job>,
    /// Sweep the asks by then.
    sweep_due: Option<Instant>,
    stop: bool,
}

/// What the poller, the queryable and the sender share.
pub(crate) struct Outbox<D> {
    state: Mutex<State<D>>,
    ready: Condvar,
    /// Gets admitted whose replies are not sent yet (one per request they stand for).
    pending: AtomicUsize,
    max_pending: usize,
    pub(crate) counters: Counters,
}

impl<D> Outbox<D> {
    pub(crate) fn new(max_pending: usize) -> Self {
        Self {
            state: Mutex::new(State {
                latest: None,
                jobs: VecDeque::new(),
                sweep_due: None,
                stop: false,
            }),
            ready: Condvar::new(),
            pending: AtomicUsize::new(0),
            max_pending,
            counters: Counters::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State<D>> {
        // Every critical section leaves the state whole: a panic elsewhere cannot tear it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands the newest snapshot to the sender; `false` once the sender has stopped.
    ///
    /// **Poller.** A short lock and a notification; never waits for the sender.
    pub(crate) fn offer(&self, snapshot: Arc<Snapshot<D>>) -> bool {
        let mut state = self.state();
        if state.stop {
            return false;
        }
        Counters::add(&self.counters.snapshots_offered, 1);
        if state.latest.replace(snapshot).is_some() {
            Counters::add(&self.counters.snapshots_overwritten, 1);
        }
        drop(state);
        self.ready.notify_one();
        true
    }

    /// Queues a reply for the sender.
    ///
    /// **Any thread** (the poller, for an answer). A short lock and a notification. The
    /// queue's length is bounded by [`reserve`](Self::reserve).
    pub(crate) fn push(&self, job: Job) {
        self.state().jobs.push_back(job);
        self.ready.notify_one();
    }

    /// Makes the sender sweep the asks by `at` at the latest.
    pub(crate) fn sweep_by(&self, at: Instant) {
        let mut state = self.state();
        if state.sweep_due.is_none_or(|due| at < due) {
            state.sweep_due = Some(at);
            drop(state);
            self.ready.notify_one();
        }
    }

    /// Takes room for `count` replies; `false`, taking none, when that would pass the
    /// bound.
    pub(crate) fn reserve(&self, count: usize) -> bool {
        self.pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |pending| {
                pending
                    .checked_add(count)
                    .filter(|&total| total <= self.max_pending)
            })
            .is_ok()
    }

    /// Gives back room for `count` replies.
    pub(crate) fn release(&self, count: usize) {
        self.pending.fetch_sub(count, Ordering::AcqRel);
    }

    /// Replies admitted and not yet sent.
    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Tells the sender to finish what is queued and stop.
    pub(crate) fn stop(&self) {
        self.state().stop = true;
        self.ready.notify_all();
    }
}

/// The sender thread's own state: what it published last, and its publishers.
pub(crate) struct Sender<D: IDict, A> {
    pub(crate) outbox: Arc<Outbox<D>>,
    pub(crate) asks: Asks<D, A>,
    pub(crate) session: Session,
    pub(crate) prefix: OwnedKeyExpr,
    /// The JSON last put for each name.
    last: HashMap<String, Vec<u8>>,
    publishers: HashMap<String, Publisher<'static>>,
    snapshot: Option<Publisher<'static>>,
}

impl<D, A> Sender<D, A>
where
    D: IDict,
    D::Value: Serialize,
    A: queueserver::asks::Asker,
{
    pub(crate) fn new(
        outbox: Arc<Outbox<D>>,
        asks: Asks<D, A>,
        session: Session,
        prefix: OwnedKeyExpr,
    ) -> Self {
        Self {
            outbox,
            asks,
            session,
            prefix,
            last: HashMap::new(),
            publishers: HashMap::new(),
            snapshot: None,
        }
    }

    /// Runs until told to stop: sends replies, publishes snapshots, sweeps asks.
    pub(crate) fn run(mut self) {
        loop {
            let (latest, jobs, sweep, stop) = self.wait();
            if sweep {
                let sweep = self.asks.sweep(Instant::now());
                let retry = sweep.unsent.then(|| Instant::now() + RETRY);
                if let Some(at) = sweep.next_deadline.into_iter().chain(retry).min() {
                    self.outbox.sweep_by(at);
                }
            }
            for job in jobs {
                self.send(job);
            }
            if let Some(snapshot) = latest {
                self.publish(&snapshot);
            }
            if stop {
                break;
            }
        }
    }

    /// Waits for work; takes it all.
    fn wait(&self) -> (Option<Arc<Snapshot<D>>>, VecDeque<Job>, bool, bool) {
        let mut state = self.outbox.state();
        loop {
            let now = Instant::now();
            let sweep = state.sweep_due.is_some_and(|due| due <= now);
            if sweep {
                state.sweep_due = None;
            }
            if sweep || state.stop || state.latest.is_some() || !state.jobs.is_empty() {
                let jobs = std::mem::take(&mut state.jobs);
                return (state.latest.take(), jobs, sweep, state.stop);
            }
            state = match state.sweep_due {
                Some(due) => {
                    self.outbox
                        .ready
                        .wait_timeout(state, due - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self
                    .outbox
                    .ready
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
    }

    /// Sends one reply, drops its query, and gives its room back.
    fn send(&self, job: Job) {
        let counters = &self.outbox.counters;
        let sent = match job {
            Job::Reply {
                query,
                key,
                json,
                seq,
            } => {
                let sent = query
                    .reply(key, json)
                    .encoding(ENCODING)
                    .attachment(wire::seq_attachment(seq))
                    .wait();
                Counters::add(&counters.replies, 1);
                sent
            }
            Job::Fail { query, message } => {
                Counters::add(&counters.error_replies, 1);
                query.reply_err(message).encoding(ERROR_ENCODING).wait()
            }
        };
        if sent.is_err() {
            Counters::add(&counters.replies_failed, 1);
        }
        self.outbox.release(1);
    }

    /// Puts every value that changed since the last snapshot published, deletes the names
    /// that are gone, and puts the snapshot.
    fn publish(&mut self, snapshot: &Snapshot<D>) {
        let seq = snapshot.seq();
        let mut seen: Vec<String> = Vec::new();
        let mut json = Vec::new();
        let (mut put, mut failed) = (0, 0);
        snapshot.visit(|key, value| {
            let mut name = heapless::String::<MAX_NAME_LEN>::new();
            if D::write_name(key, &mut name).is_err() {
                failed += 1;
                return;
            }
            json.clear();
            if serde_json::to_writer(&mut json, value).is_err() {
                failed += 1;
                return;
            }
            seen.push(name.as_str().to_owned());
            if self.last.get(name.as_str()) == Some(&json) {
                return;
            }
            let Some(publisher) = self.publisher(&name) else {
                failed += 1;
                return;
            };
            let sent = publisher
                .put(json.clone())
                .attachment(wire::seq_attachment(seq))
                .wait();
            match sent {
                Ok(()) => {
                    put += 1;
                    self.last.insert(name.as_str().to_owned(), json.clone());
                }
                Err(_) => failed += 1,
            }
        });
        if self.last.len() > seen.len() {
            seen.sort_unstable();
            let gone: Vec<String> = self
                .last
                .keys()
                .filter(|name| seen.binary_search(name).is_err())
                .cloned()
                .collect();
            for name in gone {
                self.last.remove(&name);
                if let Some(publisher) = self.publishers.remove(&name) {
                    if publisher.delete().wait().is_err() {
                        failed += 1;
                    }
                }
            }
        }
        match (wire::snapshot_json(snapshot), self.snapshot_publisher()) {
            (Ok(json), Some(publisher)) => {
                let sent = publisher
                    .put(json)
                    .attachment(wire::seq_attachment(seq))
                    .wait();
                if sent.is_err() {
                    failed += 1;
                }
            }
            _ => failed += 1,
        }
        let counters = &self.outbox.counters;
        Counters::add(&counters.snapshots_published, 1);
        Counters::add(&counters.values_put, put);
        Counters::add(&counters.puts_failed, failed);
    }

    /// The publisher of `P/<name>`, declared on first use.
    fn publisher(&mut self, name: &str) -> Option<&Publisher<'static>> {
        if !self.publishers.contains_key(name) {
            let key = self.prefix.join(name).ok()?;
            let publisher = declare(&self.session, key)?;
            self.publishers.insert(name.to_owned(), publisher);
        }
        self.publishers.get(name)
    }

    fn snapshot_publisher(&mut self) -> Option<&Publisher<'static>> {
        if self.snapshot.is_none() {
            self.snapshot = declare(&self.session, crate::select::snapshot_key(&self.prefix));
        }
        self.snapshot.as_ref()
    }
}

/// A publisher of JSON that drops rather than blocks when the link is congested: one slow
/// subscriber must not hold up the others, and the next change carries the newest value.
fn declare(session: &Session, key: OwnedKeyExpr) -> Option<Publisher<'static>> {
    session
        .declare_publisher(key)
        .encoding(ENCODING)
        .congestion_control(CongestionControl::Drop)
        .wait()
        .ok()
}

/// Why a get is refused, as the error reply says it.
pub(crate) fn refusal(error: AskError) -> String {
    match error {
        AskError::TooManyAsks => "too many outstanding gets: try again later".to_owned(),
        other => other.to_string(),
    }
}

/// Names `prefix`'s keys for error messages.
pub(crate) fn unknown(query: &keyexpr, prefix: &keyexpr) -> String {
    format!("unknown name: {query} names no value under {prefix}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use queueserver::Abandoned;

    /// The error replies the README's table promises, word for word.
    #[test]
    fn refusals_read_as_the_readme_says() {
        let cases = [
            (
                AskError::TooManyAsks,
                "too many outstanding gets: try again later",
            ),
            (AskError::TimedOut, "timed out waiting for the answer"),
            (AskError::Full, "timed out: the request queue stayed full"),
            (
                AskError::OverQuota,
                "timed out: the connection's share of the queue stayed taken",
            ),
            (
                AskError::Abandoned(Abandoned::Panicked),
                "abandoned: reading the value panicked",
            ),
            (
                AskError::Abandoned(Abandoned::Stopped),
                "abandoned: the server stopped serving requests",
            ),
            (AskError::Closed, "closed: no answer will come"),
        ];
        let readme = include_str!("../README.md");
        for (error, text) in cases {
            assert_eq!(refusal(error), text);
            assert!(readme.contains(&format!("`{text}`")), "{text:?}");
        }
    }
}

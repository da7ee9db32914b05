//! What the models share: the bounded model run, the snapshot, the connection, the put.

use queueserver::{
    Abandoned, Connection, ConnectionError, IDict, Notify, Query, Request, RequestError, Requester,
    Response, Snapshot,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The preemption bound of a model when `LOOM_MAX_PREEMPTIONS` is not set.
pub const DEFAULT_PREEMPTIONS: usize = 3;

/// Runs `model` under loom once per interleaving, within the preemption bound
/// `LOOM_MAX_PREEMPTIONS` (or [`DEFAULT_PREEMPTIONS`] when it is not set), then prints how
/// many interleavings that took and how long (shown with `--nocapture`).
///
/// Panics when an interleaving fails: an assertion of the model, a panic on one of its
/// threads, a deadlock (every thread parked or blocked), or a loom `Arc` still alive at the
/// end of the interleaving.
pub fn check<F>(name: &str, model: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mut builder = loom::model::Builder::new();
    let bound = *builder.preemption_bound.get_or_insert(DEFAULT_PREEMPTIONS);
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&runs);
    let start = Instant::now();
    builder.check(move || {
        counted.fetch_add(1, Ordering::Relaxed);
        model();
    });
    eprintln!(
        "{name}: {} interleavings, preemption bound {bound}, {:.2?}",
        runs.load(Ordering::Relaxed),
        start.elapsed()
    );
}

/// A snapshot of two words that the computation writes one after the other. The models
/// publish `Pair::at(n)` as their `n`-th snapshot, so a snapshot is whole when both words
/// equal its sequence number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pair {
    first: u64,
    second: u64,
}

impl Pair {
    /// The snapshot of step `step`.
    pub const fn at(step: u64) -> Self {
        Self {
            first: step,
            second: step,
        }
    }

    /// Whether both words were written by the publish numbered `seq`.
    pub const fn is_whole(&self, seq: u64) -> bool {
        self.first == seq && self.second == seq
    }
}

/// The key whose read panics, for the models of a poller that panics.
pub const PANICS: u8 = u8::MAX;

/// The message of the panic a read of [`PANICS`] raises.
const PANIC_MESSAGE: &str = "the read of key 255 panics";

/// Keeps the panic hook from printing the panics models raise on purpose (one per
/// interleaving); any other panic is printed as before.
pub fn quiet_deliberate_panics() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&PANIC_MESSAGE) {
                previous(info);
            }
        }));
    });
}

impl IDict for Pair {
    type Key = u8;
    type Value = u64;

    /// Every key exists and reads the first word, so an answer can be checked against the
    /// sequence number it carries; reading [`PANICS`] panics.
    fn get(&self, key: &u8) -> Option<u64> {
        if *key == PANICS {
            std::panic::panic_any(PANIC_MESSAGE);
        }
        Some(self.first)
    }

    fn copy_from(&mut self, source: &Self) {
        self.first = source.first;
        self.second = source.second;
    }
}

type Hook<T> = Box<dyn Fn(T) + Send>;

/// A connection that records what it receives and checks it as it arrives: every snapshot
/// whole and newer than the one before, every answer read from a whole snapshot. Optional
/// hooks run after each update or answer is recorded (to wake a waiting thread, or to check
/// what another party sees at that moment).
pub struct Probe {
    subscribed: bool,
    /// The sequence numbers of the snapshots delivered, in order.
    pub updates: Vec<u64>,
    /// The queries answered, in order.
    pub answers: Vec<Query<u8>>,
    /// The queries it was told are abandoned, in order.
    pub abandoned: Vec<(Query<u8>, Abandoned)>,
    on_update: Option<Hook<u64>>,
    on_answer: Option<Hook<Query<u8>>>,
}

impl Probe {
    /// A connection that subscribes to updates.
    pub fn subscriber() -> Self {
        Self {
            subscribed: true,
            updates: Vec::new(),
            answers: Vec::new(),
            abandoned: Vec::new(),
            on_update: None,
            on_answer: None,
        }
    }

    /// A connection that only asks.
    pub fn requester() -> Self {
        Self {
            subscribed: false,
            ..Self::subscriber()
        }
    }

    /// Runs `hook` with the sequence number of each snapshot delivered, once recorded.
    pub fn on_update(mut self, hook: impl Fn(u64) + Send + 'static) -> Self {
        self.on_update = Some(Box::new(hook));
        self
    }

    /// Runs `hook` with the query of each answer, once recorded.
    pub fn on_answer(mut self, hook: impl Fn(Query<u8>) + Send + 'static) -> Self {
        self.on_answer = Some(Box::new(hook));
        self
    }

    /// How many times `query` was answered.
    pub fn answered(&self, query: &Query<u8>) -> usize {
        self.answers.iter().filter(|q| *q == query).count()
    }

    /// How many times `query` was abandoned.
    pub fn abandoned(&self, query: &Query<u8>) -> usize {
        self.abandoned.iter().filter(|(q, _)| q == query).count()
    }
}

impl Connection<Pair> for Probe {
    fn on_update(&mut self, snapshot: &Snapshot<Pair>) -> Result<(), ConnectionError> {
        let seq = snapshot.seq();
        assert!(snapshot.is_whole(seq), "torn snapshot {seq}: {snapshot:?}");
        if let Some(&last) = self.updates.last() {
            assert!(seq > last, "snapshot {seq} delivered after snapshot {last}");
        }
        self.updates.push(seq);
        if let Some(hook) = &self.on_update {
            hook(seq);
        }
        Ok(())
    }

    fn on_response(&mut self, response: Response<'_, Pair>) -> Result<(), ConnectionError> {
        let query = match response {
            Response::Value { key, value, seq } => {
                assert_eq!(*value, seq, "key {key} read from a torn snapshot {seq}");
                Query::Key(*key)
            }
            Response::NotFound { key, seq } => {
                panic!("key {key} not found in snapshot {seq}: every key exists")
            }
            Response::Snapshot(snapshot) => {
                let seq = snapshot.seq();
                assert!(snapshot.is_whole(seq), "torn snapshot {seq}: {snapshot:?}");
                Query::All
            }
        };
        self.answers.push(query.clone());
        if let Some(hook) = &self.on_answer {
            hook(query);
        }
        Ok(())
    }

    fn wants_updates(&self) -> bool {
        self.subscribed
    }

    fn on_abandoned(&mut self, query: &Query<u8>, why: Abandoned) -> Result<(), ConnectionError> {
        self.abandoned.push((query.clone(), why));
        Ok(())
    }
}

/// Puts `request` and checks that a refusal hands back exactly the request put.
pub fn put<N: Notify, const Q: usize, const MAXC: usize>(
    requester: &Requester<u8, N, Q, MAXC>,
    request: Request<u8>,
) -> Result<(), RequestError<u8>> {
    let outcome = requester.put_request(request.clone());
    if let Err(error) = &outcome {
        assert_eq!(
            error.clone().into_request(),
            request,
            "a refusal ({error}) must hand back the request put"
        );
    }
    outcome
}

//! Operation sequences: decoded from arbitrary bytes, run against a real `QueueServer` and
//! the reference [`Model`], and compared after every step.
//!
//! Every observable result must agree: what each operation returns (ids, errors with the
//! request handed back, removed and failed connections, `Processed`, or a panic that
//! unwound through a poller call), every call each connection receives, in order, and after
//! each step the stats, the demand and pending flags, the attached ids, the poller's
//! snapshot, the reader's snapshot and the hook's notification count. A disagreement, or a
//! panic other than the deliberate ones, is a failure.
//!
//! Faults are part of the sequences: connections that panic instead of failing, a key
//! whose read panics (`model::PANIC_KEY`: the poller call unwinds, and the next one
//! recovers), a clock that goes back, requests abandoned, ids of another server, and at
//! the end the server dropped.
//!
//! The server is small (`Q` = 8 and `MAXC` = 4, or two other shapes) so that a full queue,
//! an exhausted share and a full set of slots come up often.

use super::model::{
    Behaviour, Call, Data, Key, Model, Seen, Settings, Unwound, Value, CONNECTION_PANIC, PANIC_KEY,
    READ_PANIC,
};
use arbitrary::{Arbitrary, Unstructured};
use queueserver::{
    Abandoned, Builder, Config, Connection, ConnectionError, ConnectionId, Event, IDict,
    ManualClock, NoClock, NoNotify, Notify, Processed, Query, QueueServer, Reader, Request,
    RequestError, Requester, Response, Snapshot, Stats,
};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

/// The server's IDict: the model's data, whose read of [`PANIC_KEY`] panics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct State(pub Data);

impl IDict for State {
    type Key = Key;
    type Value = Value;

    fn get(&self, key: &Key) -> Option<Value> {
        if *key == PANIC_KEY {
            std::panic::panic_any(READ_PANIC);
        }
        self.0.get(key).copied()
    }

    fn copy_from(&mut self, source: &Self) {
        self.0.clone_from(&source.0);
    }
}

/// Keeps the panic hook quiet about the deliberate panics (and libFuzzer's hook from
/// aborting on them); any other panic goes to the hook installed before.
fn expect_deliberate_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info.payload().downcast_ref::<&str>();
            if message != Some(&CONNECTION_PANIC) && message != Some(&READ_PANIC) {
                previous(info);
            }
        }));
    });
}

/// The server's shape: queue capacity and connection slots.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Shape {
    /// `Q` = 8, `MAXC` = 4: an even share of 2.
    Q8C4,
    /// `Q` = 4, `MAXC` = 1: the one connection may fill the queue.
    Q4C1,
    /// `Q` = 2, `MAXC` = 4: more slots than queue entries, a share of 1.
    Q2C4,
}

/// A key: mostly one of six, so that requests find keys that exist, sometimes any byte.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub struct KeyPick(pub u8);

impl KeyPick {
    /// The key it names.
    pub fn key(self) -> Key {
        if self.0 < 0xC0 {
            self.0 % 6
        } else {
            self.0
        }
    }
}

/// Which connection a request claims to come from.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum IdPick {
    /// One of the ids the server has issued so far (attached or removed).
    Issued(u8),
    /// An id of this server close to the real ones: a slot up to `MAXC`, a generation up
    /// to 3.
    Near(u8, u8),
    /// An id of this server with any slot and generation.
    Raw(u16, u32),
    /// An id another server issued, attached there.
    Foreign(u8),
}

/// What a request asks for.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum QueryPick {
    /// One key.
    Key(KeyPick),
    /// The whole snapshot.
    All,
}

/// How a connection fails.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Fault {
    /// `ConnectionError::Closed`.
    Closed,
    /// `ConnectionError::Overloaded`.
    Overloaded,
    /// `ConnectionError::Failed`.
    Failed,
    /// It panics.
    Panics,
}

/// A new connection's behaviour, as decoded.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub struct BehaviourPick {
    /// Whether it subscribes to updates.
    pub wants_updates: bool,
    /// `on_update` fails after `n % 4` successful calls.
    pub fail_update_after: Option<u8>,
    /// `on_response` fails after `n % 4` successful calls.
    pub fail_response_after: Option<u8>,
    /// The error it fails with.
    pub fault: Fault,
}

impl BehaviourPick {
    /// The behaviour: failures come after at most three successful calls.
    pub fn behaviour(self) -> Behaviour {
        Behaviour {
            wants_updates: self.wants_updates,
            fail_update_after: self.fail_update_after.map(|n| u32::from(n % 4)),
            fail_response_after: self.fail_response_after.map(|n| u32::from(n % 4)),
            error: match self.fault {
                Fault::Closed => ConnectionError::Closed,
                Fault::Overloaded => ConnectionError::Overloaded,
                Fault::Failed => ConnectionError::Failed("fuzz"),
                Fault::Panics => Behaviour::panicked(),
            },
            panics: matches!(self.fault, Fault::Panics),
        }
    }
}

/// One step of a sequence.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Op {
    /// The computation changes one value of its state (publishes nothing).
    Set(KeyPick, Value),
    /// The computation drops one key from its state (publishes nothing).
    Unset(KeyPick),
    /// `put_update` of the state, `1 + n % 4` times.
    Publish(u8),
    /// `add_connection`.
    Add(BehaviourPick),
    /// `remove_connection`.
    Remove(IdPick),
    /// Changes what a connection's `wants_updates` says, through `connection_mut`.
    Subscribe(IdPick, bool),
    /// `put_request`, `1 + times % 4` times, from the server or a `Requester`.
    Put {
        /// The requesting id.
        from: IdPick,
        /// What it asks for.
        query: QueryPick,
        /// How many times.
        times: u8,
        /// Through a cloned `Requester` rather than the server.
        via_requester: bool,
    },
    /// `process_updates`.
    ProcessUpdates,
    /// `process_requests`.
    ProcessRequests,
    /// `poll`.
    Poll,
    /// Advances the manual clock by `n % 16` ms.
    Advance(u8),
    /// Moves the manual clock back by `n` ms (a wrapping tick counter, a reset clock).
    Rewind(u8),
    /// `abandon_requests`.
    Abandon,
    /// `close`.
    Close,
    /// `take_failed`.
    TakeFailed,
    /// Loads the `Reader` (made on first use).
    Read,
}

/// A whole test case: the server's settings, its initial state, and the steps.
#[derive(Arbitrary, Clone, Debug)]
pub struct Scenario {
    /// Queue capacity and slots.
    pub shape: Shape,
    /// The per-connection share, `n % (Q + 2)`: 0 and `Q + 1` are refused.
    pub share: Option<u8>,
    /// The update rate limit, `n % 32` ms.
    pub update_interval: Option<u8>,
    /// The request rate limit, `n % 32` ms.
    pub request_interval: Option<u8>,
    /// The initial IDict.
    pub initial: Vec<(KeyPick, Value)>,
    /// The steps.
    pub ops: Vec<Op>,
}

/// Decodes `bytes` and runs the scenario; panics on any disagreement.
pub fn run(bytes: &[u8]) {
    if let Ok(scenario) = Scenario::arbitrary_take_rest(Unstructured::new(bytes)) {
        scenario.run();
    }
}

impl Scenario {
    /// Runs the scenario against a server and the model; panics on any disagreement.
    pub fn run(&self) {
        expect_deliberate_panics();
        match self.shape {
            Shape::Q8C4 => self.run_with::<8, 4>(),
            Shape::Q4C1 => self.run_with::<4, 1>(),
            Shape::Q2C4 => self.run_with::<2, 4>(),
        }
    }

    fn settings(&self, q: usize, maxc: usize) -> Settings {
        let ms = |n: Option<u8>| n.map(|n| Duration::from_millis(u64::from(n % 32)));
        Settings {
            q,
            maxc,
            share: self.share.map(|n| u32::from(n) % (q as u32 + 2)),
            update_interval: ms(self.update_interval),
            request_interval: ms(self.request_interval),
        }
    }

    fn run_with<const Q: usize, const MAXC: usize>(&self) {
        let settings = self.settings(Q, MAXC);
        let initial: Data = self.initial.iter().map(|&(k, v)| (k.key(), v)).collect();
        let mut config = Config::new();
        if let Some(share) = settings.share {
            config = config.with_max_pending_per_connection(share);
        }
        if let Some(interval) = settings.update_interval {
            config = config.with_min_update_interval(interval);
        }
        if let Some(interval) = settings.request_interval {
            config = config.with_min_request_interval(interval);
        }
        let hook = Arc::new(CountingNotify::default());
        let built = Builder::new(State(initial.clone()))
            .notify(Arc::clone(&hook))
            .clock(ManualClock::new())
            .config(config)
            .capacity::<Q, MAXC>()
            .build::<Probe>();
        let identity = built.as_ref().map_or(0, |(_, server)| server.id());
        let model = Model::new(settings, initial.clone(), identity);
        let (publisher, server) = match (built, model) {
            (Ok(parts), Ok(model)) => (parts, model),
            (Err(real), Err(expected)) => {
                assert_eq!(real, expected, "build refused for another reason");
                return;
            }
            (real, expected) => panic!(
                "build: server {:?}, model {:?}",
                real.map(|_| ()),
                expected.map(|_| ())
            ),
        };
        let (publisher, real) = publisher;
        assert_eq!(real.config(), &config);
        // Another server of the same shape, every slot attached: its ids are valid there.
        let (_, mut other) = Builder::new(State::default())
            .capacity::<Q, MAXC>()
            .build::<Probe>()
            .expect("the default settings");
        let foreign = (0..MAXC)
            .map(|label| {
                let probe = Probe::new(u32::MAX - label as u32, Behaviour::quiet());
                other.add_connection(probe).expect("a free slot")
            })
            .collect();
        let mut run = Run {
            other,
            foreign,
            requester: real.requester(),
            real,
            publisher,
            hook,
            model: server,
            state: State(initial),
            issued: Vec::new(),
            logs: BTreeMap::new(),
            labels: 0,
            reader: None,
            checked: BTreeMap::new(),
        };
        run.compare(After::Build);
        for (step, op) in self.ops.iter().enumerate() {
            run.apply(*op, step);
            run.compare(After::Step(step, op));
        }
        run.finish();
    }
}

/// A hook that counts its notifications.
#[derive(Debug, Default)]
struct CountingNotify {
    updates: AtomicUsize,
    requests: AtomicUsize,
}

impl Notify for CountingNotify {
    fn notify(&self, event: Event) {
        match event {
            Event::Update => self.updates.fetch_add(1, Ordering::Relaxed),
            Event::Request => self.requests.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// The real connection: records every call and fails as its behaviour says.
#[derive(Debug)]
struct Probe {
    label: u32,
    behaviour: Behaviour,
    wants_updates: bool,
    updates_ok: u32,
    responses_ok: u32,
    calls: Rc<RefCell<Vec<Call>>>,
}

impl Probe {
    fn new(label: u32, behaviour: Behaviour) -> Self {
        Self {
            label,
            behaviour,
            wants_updates: behaviour.wants_updates,
            updates_ok: 0,
            responses_ok: 0,
            calls: Rc::default(),
        }
    }

    /// Records the call, then fails as the behaviour says: by returning the error, or by
    /// panicking.
    fn record(
        &self,
        seen: Seen,
        result: Result<(), ConnectionError>,
    ) -> Result<(), ConnectionError> {
        self.calls.borrow_mut().push(Call { seen, result });
        if result.is_err() && self.behaviour.panics {
            std::panic::panic_any(CONNECTION_PANIC);
        }
        result
    }

    fn response(&mut self, seen: Seen) -> Result<(), ConnectionError> {
        let result = self.behaviour.response_result(self.responses_ok);
        self.responses_ok += u32::from(result.is_ok());
        self.record(seen, result)
    }
}

impl Connection<State> for Probe {
    fn on_update(&mut self, snapshot: &Snapshot<State>) -> Result<(), ConnectionError> {
        let result = self.behaviour.update_result(self.updates_ok);
        self.updates_ok += u32::from(result.is_ok());
        let seen = Seen::Update {
            seq: snapshot.seq(),
            data: snapshot.data().0.clone(),
        };
        self.record(seen, result)
    }

    fn on_response(&mut self, response: Response<'_, State>) -> Result<(), ConnectionError> {
        let seen = match response {
            Response::Value { key, value, seq } => Seen::Value {
                key: *key,
                value: *value,
                seq,
            },
            Response::NotFound { key, seq } => Seen::NotFound { key: *key, seq },
            Response::Snapshot(snapshot) => Seen::Snapshot {
                seq: snapshot.seq(),
                data: snapshot.data().0.clone(),
            },
        };
        self.response(seen)
    }

    fn on_abandoned(&mut self, query: &Query<Key>, why: Abandoned) -> Result<(), ConnectionError> {
        let query = query.clone();
        self.response(Seen::Abandoned { query, why })
    }

    fn wants_updates(&self) -> bool {
        self.wants_updates
    }
}

type Server<const Q: usize, const MAXC: usize> =
    QueueServer<State, Probe, Arc<CountingNotify>, ManualClock, Q, MAXC>;

/// One scenario in progress: the real parts beside the model.
struct Run<const Q: usize, const MAXC: usize> {
    real: Server<Q, MAXC>,
    /// Another server, whose ids the real one must refuse (and which must refuse the real
    /// one's).
    other: QueueServer<State, Probe, NoNotify, NoClock, Q, MAXC>,
    /// The ids `other` issued.
    foreign: Vec<ConnectionId>,
    publisher: queueserver::Publisher<State, Arc<CountingNotify>>,
    requester: Requester<Key, Arc<CountingNotify>, Q, MAXC>,
    hook: Arc<CountingNotify>,
    model: Model,
    /// The computation's current state.
    state: State,
    /// Every id the server issued, in order.
    issued: Vec<ConnectionId>,
    /// The calls each real connection recorded, by label.
    logs: BTreeMap<u32, Rc<RefCell<Vec<Call>>>>,
    labels: u32,
    reader: Option<Reader<State>>,
    /// How many calls of each connection have been compared already.
    checked: BTreeMap<u32, usize>,
}

/// When a comparison is made, for its failure message.
#[derive(Clone, Copy)]
enum After<'a> {
    Build,
    Step(usize, &'a Op),
    FinalPoll,
}

impl std::fmt::Display for After<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            After::Build => f.write_str("the build"),
            After::Step(step, op) => write!(f, "step {step}: {op:?}"),
            After::FinalPoll => f.write_str("the final poll"),
        }
    }
}

/// Everything the server shows between operations.
#[derive(Debug, PartialEq)]
struct View {
    stats: Stats,
    pending_requests: usize,
    wants_update: bool,
    publisher_wants_update: bool,
    has_pending_events: bool,
    closed: bool,
    requester_closed: bool,
    ids: Vec<ConnectionId>,
    count: usize,
    labels: Vec<Option<u32>>,
    attached: Vec<bool>,
    snapshot: (u64, Data),
    published: u64,
    notified: (usize, usize),
    share: u32,
}

impl<const Q: usize, const MAXC: usize> Run<Q, MAXC> {
    fn id(&self, pick: IdPick) -> ConnectionId {
        match pick {
            IdPick::Issued(n) if !self.issued.is_empty() => {
                self.issued[usize::from(n) % self.issued.len()]
            }
            IdPick::Issued(n) => ConnectionId::from_parts(self.real.id(), u16::from(n) % 2, 0),
            IdPick::Near(index, generation) => ConnectionId::from_parts(
                self.real.id(),
                u16::from(index) % (MAXC as u16 + 1),
                u32::from(generation % 4),
            ),
            IdPick::Raw(index, generation) => {
                ConnectionId::from_parts(self.real.id(), index, generation)
            }
            IdPick::Foreign(n) => self.foreign[usize::from(n) % self.foreign.len()],
        }
    }

    fn apply(&mut self, op: Op, step: usize) {
        match op {
            Op::Set(key, value) => {
                self.state.0.insert(key.key(), value);
            }
            Op::Unset(key) => {
                self.state.0.remove(&key.key());
            }
            Op::Publish(n) => {
                for _ in 0..=n % 4 {
                    self.publisher.put_update(&self.state);
                    self.model.publish(&self.state.0);
                }
            }
            Op::Add(pick) => {
                let behaviour = pick.behaviour();
                let label = self.labels;
                self.labels += 1;
                let probe = Probe::new(label, behaviour);
                let calls = Rc::clone(&probe.calls);
                let real = self.real.add_connection(probe).map_err(|full| full.0.label);
                let expected = self.model.add_connection(label, behaviour);
                assert_eq!(real, expected, "step {step}: add_connection");
                if let Ok(id) = real {
                    self.issued.push(id);
                    self.logs.insert(label, calls);
                }
            }
            Op::Remove(pick) => {
                let id = self.id(pick);
                let real = self.real.remove_connection(id).map(|c| c.label);
                let expected = self.model.remove_connection(id);
                assert_eq!(real, expected, "step {step}: remove_connection({id})");
            }
            Op::Subscribe(pick, wants) => {
                let id = self.id(pick);
                let real = self
                    .real
                    .connection_mut(id)
                    .map(|c| c.wants_updates = wants)
                    .is_some();
                let expected = self.model.set_wants_updates(id, wants);
                assert_eq!(real, expected, "step {step}: connection_mut({id})");
            }
            Op::Put {
                from,
                query,
                times,
                via_requester,
            } => {
                let from = self.id(from);
                let query = match query {
                    QueryPick::Key(key) => Query::Key(key.key()),
                    QueryPick::All => Query::All,
                };
                for _ in 0..=times % 4 {
                    let request = Request {
                        query: query.clone(),
                        from,
                    };
                    let real = if via_requester {
                        self.requester.put_request(request.clone())
                    } else {
                        self.real.put_request(request.clone())
                    };
                    if from.server() == self.real.id() {
                        // Documented: an id is refused by every server but its own.
                        let elsewhere = self.other.put_request(request.clone());
                        assert_eq!(
                            elsewhere,
                            Err(RequestError::UnknownConnection(request.clone())),
                            "step {step}: another server accepted {from}"
                        );
                    }
                    let expected = self.model.put_request(request);
                    assert_eq!(real, expected, "step {step}: put_request");
                }
            }
            Op::ProcessUpdates => {
                let real = self.real.process_updates();
                let expected = self.model.process_updates();
                Self::same_processed(real, expected, step, "process_updates");
            }
            Op::ProcessRequests => {
                let real = unwinding(|| self.real.process_requests());
                let expected = self.model.process_requests();
                assert_eq!(real, expected, "step {step}: process_requests");
            }
            Op::Poll => {
                let real = unwinding(|| self.real.poll());
                let expected = self.model.poll();
                assert_eq!(real, expected, "step {step}: poll");
            }
            Op::Advance(n) => {
                let by = Duration::from_millis(u64::from(n % 16));
                self.real.clock().advance(by);
                self.model.advance(by);
            }
            Op::Rewind(n) => {
                let by = Duration::from_millis(u64::from(n));
                self.real.clock().rewind(by);
                self.model.rewind(by);
            }
            Op::Abandon => {
                let real = self.real.abandon_requests();
                let expected = self.model.abandon_requests();
                Self::same_processed(real, expected, step, "abandon_requests");
            }
            Op::Close => {
                self.real.close();
                self.model.close();
            }
            Op::TakeFailed => {
                let real = self
                    .real
                    .take_failed()
                    .map(|f| (f.id, f.connection.label, f.error));
                let expected = self.model.take_failed();
                assert_eq!(real, expected, "step {step}: take_failed");
            }
            Op::Read => {
                let reader = self.reader.get_or_insert_with(|| self.real.reader());
                let loaded = reader.load();
                let (seq, data) = self.model.snapshot();
                assert_eq!(
                    (loaded.seq(), &loaded.data().0),
                    (seq, data),
                    "step {step}: reader"
                );
            }
        }
    }

    fn same_processed(real: Processed, expected: Processed, step: usize, what: &str) {
        assert_eq!(real, expected, "step {step}: {what}");
    }
}

/// Runs a poller call; `Err` if a panic unwound through it. Only the deliberate read panic
/// may: any other is passed on.
fn unwinding<R>(call: impl FnOnce() -> R) -> Result<R, Unwound> {
    catch_unwind(AssertUnwindSafe(call)).map_err(|payload| match payload.downcast_ref::<&str>() {
        Some(&message) if message == READ_PANIC => Unwound,
        _ => std::panic::resume_unwind(payload),
    })
}

impl<const Q: usize, const MAXC: usize> Run<Q, MAXC> {
    fn view_real(&self) -> View {
        let s = &self.real;
        View {
            stats: s.stats(),
            pending_requests: s.pending_requests(),
            wants_update: s.wants_update(),
            publisher_wants_update: self.publisher.wants_update(),
            has_pending_events: s.has_pending_events(),
            closed: s.is_closed(),
            requester_closed: self.requester.is_closed(),
            ids: s.connection_ids().collect(),
            count: s.connection_count(),
            labels: self
                .issued
                .iter()
                .map(|&id| s.connection(id).map(|c| c.label))
                .collect(),
            attached: self.issued.iter().map(|&id| s.is_attached(id)).collect(),
            snapshot: (s.snapshot().seq(), s.snapshot().data().0.clone()),
            published: self.publisher.published(),
            notified: (
                self.hook.updates.load(Ordering::Relaxed),
                self.hook.requests.load(Ordering::Relaxed),
            ),
            share: s.share(),
        }
    }

    fn view_model(&self) -> View {
        let m = &self.model;
        let ids = m.connection_ids();
        let (seq, data) = m.snapshot();
        View {
            stats: m.stats(),
            pending_requests: m.pending_requests(),
            wants_update: m.wants_update(),
            publisher_wants_update: m.wants_update(),
            has_pending_events: m.has_pending_events(),
            closed: m.is_closed(),
            requester_closed: m.is_closed(),
            count: ids.len(),
            ids,
            labels: self.issued.iter().map(|&id| m.label(id)).collect(),
            attached: self.issued.iter().map(|&id| m.is_attached(id)).collect(),
            snapshot: (seq, data.clone()),
            published: m.published(),
            notified: m.notified(),
            share: m.share(),
        }
    }

    fn compare(&mut self, after: After<'_>) {
        if let Err(broken) = self.model.check_identities() {
            panic!("after {after}: the model broke a documented identity: {broken}");
        }
        assert_eq!(self.view_real(), self.view_model(), "after {after}");
        // Calls are only ever appended: compare the ones made since the last comparison.
        let expected = self.model.calls();
        assert!(
            self.logs.keys().eq(expected.keys()),
            "connections, after {after}"
        );
        for ((&label, real), expected) in self.logs.iter().zip(expected.values()) {
            let real = real.borrow();
            let checked = self.checked.entry(label).or_default();
            assert_eq!(
                real.get(*checked..),
                expected.get(*checked..),
                "calls received by connection {label}, after {after}"
            );
            *checked = real.len();
        }
    }

    /// Closes the server and drains it, as a shutdown would: every accepted request is
    /// answered, orphaned or abandoned, and the newest snapshot reaches the subscribers.
    /// Then drops it: its request side stays closed, and nobody wants an update.
    fn finish(&mut self) {
        self.real.close();
        self.model.close();
        loop {
            let real = unwinding(|| self.real.poll());
            let expected = self.model.poll();
            assert_eq!(real, expected, "final poll");
            if real.is_ok() && self.real.pending_requests() == 0 {
                break;
            }
        }
        self.compare(After::FinalPoll);

        let Self {
            real,
            publisher,
            requester,
            model,
            issued,
            ..
        } = self;
        let ids = issued.clone();
        let attached: Vec<bool> = ids.iter().map(|&id| real.is_attached(id)).collect();
        // Dropped in place of the real server: a fresh one of the same shape.
        let (_, fresh) = Builder::new(State::default())
            .notify(Arc::new(CountingNotify::default()))
            .clock(ManualClock::new())
            .capacity::<Q, MAXC>()
            .build::<Probe>()
            .expect("the default settings");
        drop(std::mem::replace(real, fresh));
        model.drop_server();
        assert!(
            requester.is_closed(),
            "a dropped server's requester is open"
        );
        assert_eq!(publisher.wants_update(), model.wants_update());
        assert!(!publisher.wants_update(), "wants_update after the drop");
        for (&id, attached) in ids.iter().zip(attached) {
            let request = Request::key(id, 0);
            let refused = requester.put_request(request.clone());
            let expected = if attached {
                RequestError::Closed(request)
            } else {
                RequestError::UnknownConnection(request)
            };
            assert_eq!(refused, Err(expected), "a put after the drop");
        }
    }
}

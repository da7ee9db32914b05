//! [`WebView`]: the listener, the receivers' threads, and the sink of the view's relay.
//!
//! The view is a [relay](queueserver::runtime::relay): its connection is a
//! [`RelayConnection`] the poller owns, and its worker thread runs [`Pages`], the sink that
//! serializes each snapshot once and offers it to every page's outbox, encodes the channels
//! Foxglove clients subscribe to once each and offers each client its frames
//! ([`foxglove::Fanout`]), hands answers to the pages and clients that asked, sends the
//! counters, pings every receiver and disconnects the silent ones.

use crate::browser::{self, Browser, Handler, Out, Protocol};
use crate::foxglove::{self, wire::Parameter};
use crate::http::{self, HostCheck, Outcome, Routed};
use crate::options::Options;
use crate::wire;
use queueserver::idict::{check_name, KeyError};
use queueserver::runtime::asks::{AskError, AskStats, Asker};
use queueserver::runtime::outbox::{Outbox, OutboxStats};
use queueserver::runtime::relay::{Answered, End, Pace, Relay, RelayStats, Sink, Update, Worker};
use queueserver::{
    Clock, Connection, ConnectionId, ConnectionsFull, IDict, Notify, Query, QueueServer,
    RelayConnection, Requester, Response, Stats,
};
use serde::Serialize;
use std::convert::Infallible;
use std::fmt;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::Utf8Bytes;

/// The view's connection: the poller owns it. It is the view's relay's connection, and
/// subscribes to updates while a page or a Foxglove client is connected.
///
/// **On the poller** each update costs one copy of the snapshot into an `Arc` and one short
/// lock, whatever the number of receivers (and nothing while none is connected): the
/// view's worker thread serializes and sends. Dropping it (the server dropped, or the connection removed) tells every receiver
/// that the computation stopped, after the last snapshot, and ends their asks.
pub type WebConnection<D> = RelayConnection<D>;

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves its data whole: a panic cannot tear it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The view's own counters, sent to every page with the server's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ViewStats {
    /// Whether the view's connection is attached to a server (it was not dropped), or
    /// the feed of a relay it [publishes](WebView::publish) is there.
    pub running: bool,
    /// Pages connected now.
    pub browsers: usize,
    /// Foxglove clients connected now.
    pub foxglove_clients: usize,
    /// Receivers (pages and Foxglove clients) that connected: WebSocket upgrades accepted.
    pub accepted: u64,
    /// Receivers that went away, or were disconnected.
    pub disconnected: u64,
    /// Receivers disconnected because they were not heard from (no pong) for the stall
    /// timeout.
    pub stalled: u64,
    /// Files served (the page and its assets).
    pub served: u64,
    /// Requests refused: bad requests, unknown hosts, cross-origin upgrades, no room.
    pub refused: u64,
    /// Snapshots serialized: once each, for every page connected at the time.
    pub updates: u64,
    /// Snapshots encoded for Foxglove clients: once each, for every client connected at
    /// the time.
    pub foxglove_updates: u64,
    /// Foxglove channel payloads encoded: once per snapshot for each channel some client
    /// subscribes to, whatever the number of clients subscribed to it.
    pub foxglove_payloads: u64,
    /// Snapshots that had no JSON form (a key without a valid name, say).
    pub serialize_errors: u64,
    /// Text messages received from pages and Foxglove clients.
    pub messages: u64,
    /// Messages that were not understood, each answered with an error message.
    pub malformed: u64,
    /// Asks handed to the server's request path (a page's ask; each name of a Foxglove
    /// `getParameters`).
    pub asks: u64,
}

/// One receiver's counts, from [`WebView::browsers`] (pages) and
/// [`WebView::foxglove_clients`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BrowserStats {
    /// The receiver's number on this view, in order of connection (pages and Foxglove
    /// clients share the numbering).
    pub id: u64,
    /// Where it connects from.
    pub peer: SocketAddr,
    /// Its outbox: queued, dropped, superseded, sent.
    pub outbox: OutboxStats,
    /// Its asks not yet answered.
    pub asks: usize,
    /// Its subscriptions (a Foxglove client's; 0 for a page).
    pub subscriptions: usize,
}

/// Why [`WebView::attach`] (or [`WebView::publish`], whose `E` is [`Infallible`]) did not
/// start.
#[derive(Debug)]
pub enum StartError<E> {
    /// The address could not be bound.
    Bind(io::Error),
    /// A thread could not be started.
    Spawn(io::Error),
    /// The attach closure failed (for `add_connection`: every slot is taken).
    Attach(E),
}

impl<E: fmt::Display> fmt::Display for StartError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bind(why) => write!(f, "cannot listen: {why}"),
            Self::Spawn(why) => write!(f, "cannot start a thread: {why}"),
            Self::Attach(why) => write!(f, "cannot attach the connection: {why}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for StartError<E> {}

type StatsSource = Box<dyn FnMut() -> Stats + Send>;

#[derive(Default)]
pub(crate) struct Counters {
    accepted: AtomicU64,
    disconnected: AtomicU64,
    stalled: AtomicU64,
    served: AtomicU64,
    refused: AtomicU64,
    updates: AtomicU64,
    pub(crate) foxglove_updates: AtomicU64,
    pub(crate) foxglove_payloads: AtomicU64,
    pub(crate) serialize_errors: AtomicU64,
    pub(crate) messages: AtomicU64,
    pub(crate) malformed: AtomicU64,
    pub(crate) asks: AtomicU64,
}

/// What the view's threads and its sink share.
pub(crate) struct View<D: IDict> {
    pub(crate) options: Options,
    addr: SocketAddr,
    hosts: HostCheck,
    /// Set once the connection is attached, before any receiver can connect.
    pub(crate) relay: OnceLock<Relay<D, ViewAsker>>,
    browsers: Mutex<Vec<Arc<Browser>>>,
    /// The Foxglove clients connected.
    pub(crate) foxglove: Mutex<Vec<Arc<foxglove::Client>>>,
    /// The channels advertised to them.
    pub(crate) channels: Mutex<foxglove::Channels>,
    /// The `sessionId` Foxglove clients are told: when the view started, in ms.
    session: String,
    /// The newest snapshot the view knows, for the receivers' threads: the server's when
    /// the view was served, each update the worker takes, and the answer to the request for
    /// the whole snapshot each joining receiver makes (when nobody watched, the computation
    /// may have published since, unseen). The view does not use the server's `Reader`: each
    /// thread that loads from it adds to every store the poller makes there, and a store per
    /// snapshot is work the poller would do for the view alone. A relay made elsewhere
    /// ([`WebView::publish`]) may have a reader: its newest is then noted here as the
    /// receivers' threads need it.
    newest: Mutex<Option<Arc<queueserver::Snapshot<D>>>>,
    /// Receivers connected: the connection subscribes while there is one.
    watchers: Mutex<usize>,

    /// Places taken by pages, connected or being connected.
    places: AtomicUsize,
    next_id: AtomicU64,
    stats_source: Mutex<Option<StatsSource>>,
    attached: AtomicBool,
    stopping: AtomicBool,
    /// Threads serving sockets, still running.
    live: Mutex<usize>,
    live_changed: Condvar,
    pub(crate) counters: Counters,
}

/// Counts a socket thread as live while it exists.
struct LiveGuard<'a, D: IDict>(&'a View<D>);

impl<D: IDict> Drop for LiveGuard<'_, D> {
    fn drop(&mut self) {
        *lock(&self.0.live) -= 1;
        self.0.live_changed.notify_all();
    }
}

impl<D: IDict> View<D> {
    /// Listens on `options`' address: the listener, and the view's shared state, its
    /// relay not yet set.
    fn bind(options: Options) -> io::Result<(TcpListener, Arc<Self>)> {
        let listener = TcpListener::bind(options.bind)?;
        let addr = listener.local_addr()?;
        let view = Arc::new(View {
            hosts: HostCheck::new(
                addr,
                &options.allowed_hosts,
                options.any_host,
                &options.allowed_origins,
            ),
            options,
            addr,
            relay: OnceLock::new(),
            browsers: Mutex::new(Vec::new()),
            foxglove: Mutex::new(Vec::new()),
            channels: Mutex::new(foxglove::Channels::default()),
            session: wire::now_ms().to_string(),
            newest: Mutex::new(None),
            watchers: Mutex::new(0),
            places: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            stats_source: Mutex::new(None),
            attached: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            live: Mutex::new(0),
            live_changed: Condvar::new(),
            counters: Counters::default(),
        });
        Ok((listener, view))
    }

    fn view_stats(&self) -> ViewStats {
        let c = &self.counters;
        let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
        ViewStats {
            running: self.attached.load(Ordering::Relaxed),
            browsers: lock(&self.browsers).len(),
            foxglove_clients: lock(&self.foxglove).len(),
            accepted: load(&c.accepted),
            disconnected: load(&c.disconnected),
            stalled: load(&c.stalled),
            served: load(&c.served),
            refused: load(&c.refused),
            updates: load(&c.updates),
            foxglove_updates: load(&c.foxglove_updates),
            foxglove_payloads: load(&c.foxglove_payloads),
            serialize_errors: load(&c.serialize_errors),
            messages: load(&c.messages),
            malformed: load(&c.malformed),
            asks: load(&c.asks),
        }
    }

    /// Every receiver connected: the pages, then the Foxglove clients.
    fn receivers(&self) -> Vec<Arc<Browser>> {
        let mut all = lock(&self.browsers).clone();
        all.extend(lock(&self.foxglove).iter().map(|c| Arc::clone(&c.browser)));
        all
    }

    /// Queues `text` for every page.
    fn broadcast(&self, text: String) {
        let text = Utf8Bytes::from(text);
        for browser in lock(&self.browsers).iter() {
            browser.outbox.push(Out::Text(text.clone()));
        }
    }

    /// The newest snapshot the view's threads know (see `newest`): the server's newest as
    /// of the receiver's connection, or later; for a relay with a reader, the reader's
    /// newest or later.
    pub(crate) fn latest(&self) -> Option<Arc<queueserver::Snapshot<D>>> {
        if let Some(reader) = self.relay.get().and_then(Relay::reader) {
            self.note(&reader.load_full());
        }
        lock(&self.newest).clone()
    }

    /// Keeps `snapshot` as the newest known, unless a newer one is kept; whether it did.
    fn note(&self, snapshot: &Arc<queueserver::Snapshot<D>>) -> bool {
        let mut newest = lock(&self.newest);
        let newer = newest
            .as_ref()
            .map_or(true, |kept| kept.seq() < snapshot.seq());
        if newer {
            *newest = Some(Arc::clone(snapshot));
        }
        newer
    }
}

/// A receiver that connected, to be greeted.
struct Joining {
    browser: Arc<Browser>,
    client: Option<Arc<foxglove::Client>>,
}

impl<D> View<D>
where
    D: IDict,
    D::Value: Serialize,
{
    /// Greets a receiver with the newest snapshot known: a page's hello and values, a
    /// Foxglove client's server info and channels; then it is served.
    fn greet(&self, joining: Joining) {
        match joining.client {
            None => greet_page(self, &joining.browser),
            Some(client) => {
                foxglove::register(self, &client, "queueserver-web", &self.session);
                if !self.attached.load(Ordering::Relaxed) {
                    client.browser.outbox.push(Out::text(foxglove::wire::status(
                        foxglove::wire::Level::Warning,
                        "the computation's server is not running",
                    )));
                }
            }
        }
    }
}

impl<D> View<D>
where
    D: IDict + Send + Sync + 'static,
    D::Value: Clone + Send + Serialize,
{
    /// Answers an ask: at once when the name is no key, else through the relay.
    fn ask(&self, browser: &Arc<Browser>, id: u64, name: String) {
        let reply = |text: String| browser.outbox.push(Out::text(text));
        if let Err(why) = check_name(&name) {
            reply(wire::error(
                Some(id),
                &format!("{name:?} is no valid name: {why}"),
            ));
            return;
        }
        let (Some(relay), Some(latest)) = (self.relay.get(), self.latest()) else {
            reply(wire::error(
                Some(id),
                "the view is not attached to a server",
            ));
            return;
        };
        let key = match latest.parse_key(&name) {
            Ok(key) => key,
            Err(KeyError::Unknown) => {
                reply(wire::answer(
                    id,
                    &wire::answer_body::<D::Value>(&name, latest.seq(), None),
                ));
                return;
            }
            Err(why) => {
                reply(wire::error(
                    Some(id),
                    &format!("cannot ask for {name:?}: {why}"),
                ));
                return;
            }
        };
        if browser.asks.fetch_add(1, Ordering::Relaxed) >= self.options.max_asks {
            browser.asks.fetch_sub(1, Ordering::Relaxed);
            reply(wire::error(
                Some(id),
                &format!(
                    "too many asks outstanding (at most {})",
                    self.options.max_asks
                ),
            ));
            return;
        }
        // From here the asker owns the count just taken: its drop gives it back.
        let asker = ViewAsker(Party::Page(PageAsker {
            browser: Arc::downgrade(browser),
            id,
            name,
            told: false,
        }));
        self.counters.asks.fetch_add(1, Ordering::Relaxed);
        let deadline = Instant::now() + self.options.ask_timeout;
        if let Err(refused) = relay.ask(Query::Key(key), asker, deadline) {
            if let ViewAsker(Party::Page(mut asker)) = refused.asker {
                let text = wire::error(
                    Some(id),
                    &format!("ask for {:?} refused: {}", asker.name, refused.error),
                );
                asker.tell(text);
            }
        }
    }
}

impl<D> Handler for View<D>
where
    D: IDict + Send + Sync + 'static,
    D::Value: Clone + Send + Serialize,
{
    fn text(&self, browser: &Arc<Browser>, text: &str) {
        self.counters.messages.fetch_add(1, Ordering::Relaxed);
        match wire::parse(text) {
            Ok(wire::Incoming::Ask { id, name }) => self.ask(browser, id, name),
            Ok(wire::Incoming::Rate { hz }) => {
                if hz.is_finite() && hz > 0.0 {
                    let rate = browser.outbox.set_rate(hz.min(self.options.max_rate_hz));
                    browser.outbox.push(Out::text(wire::rate(rate)));
                } else {
                    self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                    browser.outbox.push(Out::text(wire::error(
                        None,
                        "rate: hz must be a positive number",
                    )));
                }
            }
            Err(why) => {
                self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                browser.outbox.push(Out::text(wire::error(None, &why)));
            }
        }
    }
}

/// Someone waiting for one answer through the view: a page's ask, or a name of a Foxglove
/// client's `getParameters`. What the view's relay holds for it; it holds its receiver
/// weakly, so a receiver that goes away is not kept by its asks.
pub struct ViewAsker(Party);

enum Party {
    Page(PageAsker),
    Parameter(foxglove::ParameterAsker),
    /// The view's own request for the whole snapshot, when a receiver joins: the sink hands
    /// the answer out as an update if it is newer than the newest the view knew.
    Fetch,
}

impl ViewAsker {
    pub(crate) fn parameter(asker: foxglove::ParameterAsker) -> Self {
        Self(Party::Parameter(asker))
    }
}

/// The answer as the view's askers receive it, prepared once per answer: a page's answer
/// body, and the values as Foxglove parameters.
pub struct Reply {
    page: String,
    parameters: Result<Vec<Parameter>, String>,
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reply")
            .field("page", &self.page)
            .finish_non_exhaustive()
    }
}

impl Asker for ViewAsker {
    type Reply = Reply;

    fn answer(self, reply: &Reply) {
        match self.0 {
            Party::Page(asker) => asker.answer(&reply.page),
            Party::Parameter(asker) => asker.answer(&reply.parameters),
            // Handed out as the answer was prepared.
            Party::Fetch => {}
        }
    }

    fn fail(self, error: AskError) {
        match self.0 {
            Party::Page(asker) => asker.fail(error),
            Party::Parameter(asker) => asker.fail(error),
            // The receivers have the newest snapshot the view knew.
            Party::Fetch => {}
        }
    }
}

impl fmt::Debug for ViewAsker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Party::Page(asker) => f
                .debug_struct("ViewAsker")
                .field("page_ask", &asker.id)
                .field("name", &asker.name)
                .finish_non_exhaustive(),
            Party::Parameter(_) => f.debug_struct("ViewAsker").finish_non_exhaustive(),
            Party::Fetch => f
                .debug_struct("ViewAsker")
                .field("fetch", &"@snapshot")
                .finish_non_exhaustive(),
        }
    }
}

/// A page waiting for one answer.
struct PageAsker {
    browser: Weak<Browser>,
    id: u64,
    name: String,
    told: bool,
}

impl PageAsker {
    fn tell(&mut self, text: String) {
        self.told = true;
        if let Some(browser) = self.browser.upgrade() {
            browser.outbox.push(Out::text(text));
        }
    }
}

impl PageAsker {
    /// The answer's body, made once and shared by every page that asked for the key.
    fn answer(mut self, body: &str) {
        let text = wire::answer(self.id, body);
        self.tell(text);
    }

    fn fail(mut self, error: AskError) {
        let text = wire::error(
            Some(self.id),
            &format!("ask for {:?} failed: {error}", self.name),
        );
        self.tell(text);
    }
}

impl Drop for PageAsker {
    fn drop(&mut self) {
        if !self.told {
            let text = wire::error(Some(self.id), "no answer will come");
            self.tell(text);
        }
        if let Some(browser) = self.browser.upgrade() {
            browser.asks.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The reply of an answer: the page's body and the Foxglove parameters, each made once.
fn reply<D>(answer: &Answered<D>) -> Reply
where
    D: IDict,
    D::Value: Serialize,
{
    let name = |key: &D::Key| {
        let mut name = String::new();
        D::write_name(key, &mut name).map(|()| name)
    };
    let parameter = |key: &D::Key, value: &D::Value| -> Result<Parameter, String> {
        let name = name(key).map_err(|why| format!("a key has no name: {why}"))?;
        let value = serde_json::to_value(value)
            .map_err(|why| format!("{name:?} has no JSON form: {why}"))?;
        Ok(Parameter::new(name, value))
    };
    let parameters = match answer {
        Answered::Value { key, value, .. } => parameter(key, value).map(|p| vec![p]),
        Answered::NotFound { .. } => Ok(Vec::new()),
        Answered::Snapshot(snapshot) => {
            let mut found = Vec::new();
            let mut failed = None;
            snapshot.visit(|key, value| match parameter(key, value) {
                Ok(p) => found.push(p),
                Err(why) => {
                    failed.get_or_insert(why);
                }
            });
            failed.map_or(Ok(found), Err)
        }
    };
    let page = match answer {
        Answered::Snapshot(_) => String::new(),
        _ => answer_body(&answer.response()),
    };
    Reply { page, parameters }
}

/// The body of an answer: the key's name, the snapshot's number, the value if found.
fn answer_body<D>(response: &Response<'_, D>) -> String
where
    D: IDict,
    D::Value: Serialize,
{
    let name = |key: &D::Key| {
        let mut name = String::new();
        let _ = D::write_name(key, &mut name);
        name
    };
    match response {
        Response::Value { key, value, seq } => wire::answer_body(&name(key), *seq, Some(*value)),
        Response::NotFound { key, seq } => wire::answer_body::<D::Value>(&name(key), *seq, None),
        Response::Snapshot(snapshot) => {
            // The view asks for keys only.
            wire::answer_body::<D::Value>("", snapshot.seq(), None)
        }
    }
}

/// Whole milliseconds of a time since the Unix epoch.
fn millis(since_epoch: Duration) -> u64 {
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}

/// The view's sink, on the relay's worker thread: every receiver's updates, answers and
/// housekeeping. Serializes each snapshot once for every page, and each Foxglove channel
/// some client subscribes to once for every client subscribed, at most at the receivers'
/// rate ([`Options::max_rate_hz`]); sends the counters to the pages every stats interval;
/// pings every receiver every ping interval and disconnects one not heard from for the
/// stall timeout.
struct Pages<D: IDict> {
    view: Arc<View<D>>,
    /// The Foxglove clients' part.
    foxglove: foxglove::Fanout,
    /// The last snapshot had no JSON form: the pages were told once.
    failing: bool,
    last_update: Option<Instant>,
    interval: Duration,
    next_stats: Instant,
    next_ping: Instant,
}

impl<D: IDict> Pages<D> {
    fn new(view: Arc<View<D>>) -> Self {
        let now = Instant::now();
        let interval = Duration::from_secs_f64(1.0 / view.options.max_rate_hz);
        let next_ping = now + view.options.ping_interval;
        Self {
            view,
            foxglove: foxglove::Fanout::default(),
            failing: false,
            last_update: None,
            interval,
            next_stats: now,
            next_ping,
        }
    }
}

impl<D> Sink<D> for Pages<D>
where
    D: IDict,
    D::Value: Serialize,
{
    type Asker = ViewAsker;

    fn prepare(&mut self, answer: Answered<D>) -> Reply {
        if let Answered::Snapshot(snapshot) = &answer {
            // Newer than the newest the view knew (the computation published while nobody
            // watched): every receiver gets it, as an update.
            if self.view.note(snapshot) {
                self.update(&Update::new(Arc::clone(snapshot), Instant::now()));
            }
        }
        reply(&answer)
    }

    fn update(&mut self, update: &Update<D>) {
        let now = Instant::now();
        self.last_update = Some(now);
        self.view.note(update.snapshot());
        if !lock(&self.view.foxglove).is_empty() {
            self.foxglove.update(&self.view, update, now);
        }
        let view = &self.view;
        let browsers = lock(&view.browsers).clone();
        if browsers.is_empty() {
            return;
        }
        match wire::update(
            update.seq(),
            millis(update.taken_since_epoch()),
            update.data(),
        ) {
            Ok(text) => {
                self.failing = false;
                view.counters.updates.fetch_add(1, Ordering::Relaxed);
                let text = Utf8Bytes::from(text);
                for browser in &browsers {
                    browser.outbox.offer(Out::Text(text.clone()), now);
                }
            }
            Err(why) => {
                view.counters
                    .serialize_errors
                    .fetch_add(1, Ordering::Relaxed);
                if !self.failing {
                    self.failing = true;
                    let text = Utf8Bytes::from(wire::error(
                        None,
                        &format!("snapshot {} has no JSON form: {why}", update.seq()),
                    ));
                    for browser in &browsers {
                        browser.outbox.push(Out::Text(text.clone()));
                    }
                }
            }
        }
    }

    fn pace(&mut self, now: Instant) -> Pace {
        let due = self.last_update.map_or(now, |last| last + self.interval);
        let mut tick = self.next_stats.min(self.next_ping);
        if now >= due {
            return Pace {
                update: true,
                tick: Some(tick),
            };
        }
        tick = tick.min(due);
        Pace::at(tick)
    }

    fn tick(&mut self, now: Instant) {
        let view = &self.view;
        if now >= self.next_stats {
            self.next_stats = now + view.options.stats_interval;
            let server = lock(&view.stats_source).as_mut().map(|source| source());
            let stats = view.view_stats();
            if stats.browsers > 0 {
                let message = wire::StatsMessage {
                    kind: "stats",
                    time: wire::now_ms(),
                    server: server.as_ref(),
                    view: &stats,
                };
                if let Ok(text) = serde_json::to_string(&message) {
                    view.broadcast(text);
                }
            }
        }
        if now >= self.next_ping {
            self.next_ping = now + view.options.ping_interval;
            for browser in &view.receivers() {
                if now.saturating_duration_since(browser.outbox.last_heard())
                    > view.options.stall_timeout
                {
                    // Not heard from, not even a pong: it reads nothing.
                    view.counters.stalled.fetch_add(1, Ordering::Relaxed);
                    browser.shut_down();
                } else {
                    browser.outbox.push(Out::Ping);
                }
            }
        }
    }

    fn ended(&mut self, end: End) {
        let view = &self.view;
        view.attached.store(false, Ordering::Relaxed);
        if end == End::Detached {
            let text = Utf8Bytes::from(wire::status(
                false,
                "the computation's server stopped: no more updates",
            ));
            for browser in lock(&view.browsers).iter() {
                browser.outbox.push_last(Out::Text(text.clone()));
            }
            foxglove::Fanout::ended(view);
        }
    }
}

/// A live web view of a server: listens, serves the page, streams to every page and
/// Foxglove client that connects, until it is [shut down](Self::shutdown) or dropped. See
/// the [crate docs](crate).
pub struct WebView<D: IDict> {
    view: Arc<View<D>>,
    worker: Option<Worker>,
    listener: Option<JoinHandle<()>>,
}

impl<D> WebView<D>
where
    D: IDict + Send + Sync + 'static,
    D::Value: Clone + Send + Serialize,
{
    /// Listens on `options`' address, attaches the view's connection with `attach`, which
    /// returns the id it was attached under (as [`Client::attach`](queueserver::Client::attach)
    /// does), and starts the view's threads.
    ///
    /// `requester` must be the server's (`server.requester()`). A receiver that connects is
    /// greeted with the newest snapshot the view knows, and the server's newest is asked
    /// for through its request path (one request for every receiver connecting meanwhile)
    /// and handed out as an update if it is newer. Starts two threads (the listener,
    /// and the relay's worker, which serializes, answers, sends the counters and pings),
    /// then two per connected page or Foxglove client.
    ///
    /// # Errors
    ///
    /// [`StartError`]: the address could not be bound, a thread could not be started, or
    /// `attach` failed (its error is handed back).
    pub fn attach<N, E, const Q: usize, const MAXC: usize>(
        requester: Requester<D::Key, N, Q, MAXC>,
        options: Options,
        attach: impl FnOnce(WebConnection<D>) -> Result<ConnectionId, E>,
    ) -> Result<Self, StartError<E>>
    where
        N: Notify + 'static,
    {
        let max_asks = options.total_asks();
        let (listener, view) = View::bind(options).map_err(StartError::Bind)?;
        let relay = Relay::attach(requester, None, max_asks, attach).map_err(StartError::Attach)?;
        Self::start(view, listener, relay).map_err(StartError::Spawn)
    }

    /// Listens on `options`' address and serves a relay made elsewhere, as
    /// [`attach`](Self::attach) serves a server: a relay fed by something other than a
    /// server's poller ([`Relay::fed`]: a microcontroller's line, a replay). Starts the
    /// relay's worker thread, whose sink sends the pages and Foxglove clients what the
    /// feed hands the relay; their asks become asks on the relay, whose upstream takes
    /// their requests. The relay should have room for the pages' asks:
    /// [`Options::total_asks`] outstanding.
    ///
    /// A receiver that connects is greeted as by a view of a server. A relay with a reader
    /// ([`Relay::reader`]) greets it with the reader's newest snapshot (each greeting and
    /// each ask loads it, on the receiver's thread; nothing is asked upstream); without
    /// one, the newest is asked for through the relay (one request for every receiver
    /// connecting meanwhile) and handed out as an update. The relay's connection
    /// subscribes while a receiver is connected ([`Feed::wants_updates`] says so to the
    /// feeder), and when the feed is dropped the receivers are told that no more updates
    /// will come.
    ///
    /// **Any thread.** Allocates; starts the same threads as [`attach`](Self::attach).
    ///
    /// [`Feed::wants_updates`]: queueserver::runtime::relay::Feed::wants_updates
    ///
    /// # Errors
    ///
    /// [`StartError::Bind`]: the address could not be bound; [`StartError::Spawn`]: a
    /// thread could not be started (the relay is then closed).
    pub fn publish(
        relay: Relay<D, ViewAsker>,
        options: Options,
    ) -> Result<Self, StartError<Infallible>> {
        let (listener, view) = View::bind(options).map_err(StartError::Bind)?;
        Self::start(view, listener, relay).map_err(StartError::Spawn)
    }

    /// Starts the relay's worker and the listener.
    fn start(
        view: Arc<View<D>>,
        listener: TcpListener,
        relay: Relay<D, ViewAsker>,
    ) -> io::Result<Self> {
        view.attached.store(true, Ordering::Relaxed);
        let _ = view.relay.set(relay.clone());
        let mut started = Self {
            view: Arc::clone(&view),
            worker: None,
            listener: None,
        };
        started.worker = Some(relay.spawn("queueserver-web", Pages::new(Arc::clone(&view)))?);
        let listening = Arc::clone(&view);
        started.listener = Some(
            thread::Builder::new()
                .name("queueserver-web-listen".into())
                .spawn(move || listen(&listening, &listener))?,
        );
        Ok(started)
    }

    /// [`attach`](Self::attach) to `server` itself: its requester and `add_connection`.
    /// For a server whose connection type takes a [`WebConnection`]
    /// (`Box<dyn Connection<D> + Send>`, or `WebConnection<D>` itself).
    ///
    /// A page that connects before the next update still gets the newest snapshot the
    /// server has taken, as soon as the poller answers for it.
    ///
    /// # Errors
    ///
    /// As [`attach`](Self::attach); [`ConnectionsFull`] when every slot is taken.
    pub fn serve<C, N, T, const Q: usize, const MAXC: usize>(
        server: &mut QueueServer<D, C, N, T, Q, MAXC>,
        options: Options,
    ) -> Result<Self, StartError<ConnectionsFull<C>>>
    where
        C: Connection<D> + From<WebConnection<D>>,
        N: Notify + 'static,
        T: Clock,
    {
        let requester = server.requester();
        // The newest snapshot the server has taken, for the first receivers' greeting.
        let taken = Arc::new(server.snapshot().clone());
        let view = Self::attach(requester, options, |connection| {
            server.add_connection(C::from(connection))
        })?;
        view.view.note(&taken);
        Ok(view)
    }

    /// Stops listening, closes every page (with close code `1001`, going away), and waits
    /// for every thread of the view to end (at most a moment: sockets are shut down).
    /// Dropping the view does the same. Its connection fails at the poller's next call,
    /// which removes it from the server.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl<D: IDict> WebView<D> {
    /// The address the view listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.view.addr
    }

    /// The page's address: `http://127.0.0.1:PORT/` (for a view bound to every address,
    /// its loopback one).
    pub fn url(&self) -> String {
        let addr = connectable(self.view.addr);
        format!("http://{addr}/")
    }

    /// The id of the view's connection.
    pub fn connection_id(&self) -> Option<ConnectionId> {
        self.view.relay.get().and_then(Relay::id)
    }

    /// Sends the counters `source` returns to every page, every stats interval, from the
    /// view's worker thread: for a runner, `move || runner.stats()`; for a poller of your
    /// own, whatever copy of [`QueueServer::stats`] it keeps. Replaces any source set
    /// before. Without one, pages show the view's counters only.
    pub fn set_stats(&self, source: impl FnMut() -> Stats + Send + 'static) {
        *lock(&self.view.stats_source) = Some(Box::new(source));
    }

    /// Removes the stats source; once this returns it is not called again (it is dropped
    /// here).
    pub fn clear_stats(&self) {
        let source = lock(&self.view.stats_source).take();
        drop(source);
    }

    /// The view's counters.
    pub fn stats(&self) -> ViewStats {
        self.view.view_stats()
    }

    /// The counts of the asks of every page (requests sent, answers received, ...).
    pub fn ask_stats(&self) -> Option<AskStats> {
        self.view.relay.get().map(|relay| relay.asks().stats())
    }

    /// The counts of the view's relay: snapshots the poller handed over, and how many the
    /// view took (the others were superseded under the pages' rate), answers, wake-ups.
    pub fn relay_stats(&self) -> Option<RelayStats> {
        self.view.relay.get().map(Relay::stats)
    }

    /// Each connected page's counts, in order of connection.
    pub fn browsers(&self) -> Vec<BrowserStats> {
        lock(&self.view.browsers)
            .iter()
            .map(|b| browser_stats(b, 0))
            .collect()
    }

    /// Each connected Foxglove client's counts, in order of connection.
    pub fn foxglove_clients(&self) -> Vec<BrowserStats> {
        lock(&self.view.foxglove)
            .iter()
            .map(|c| browser_stats(&c.browser, c.subscriptions()))
            .collect()
    }

    /// How many threads serve sockets now (two per page, one per request being read).
    pub fn socket_threads(&self) -> usize {
        *lock(&self.view.live)
    }

    fn stop(&mut self) {
        let view = &self.view;
        if view.stopping.swap(true, Ordering::Relaxed) {
            return;
        }
        // Wake the listener's `accept` with a connection of our own.
        let _ = TcpStream::connect_timeout(&connectable(view.addr), Duration::from_secs(1));
        if let Some(listener) = self.listener.take() {
            let _ = listener.join();
        }
        // Closes the relay: its connection fails at the poller's next call.
        drop(self.worker.take());
        for browser in &view.receivers() {
            browser.outbox.close_with(Out::Close(CloseFrame {
                code: CloseCode::Away,
                reason: "the view is shutting down".into(),
            }));
        }
        // A moment for the close frames to go out, then cut every socket.
        if wait_live(view, Duration::from_millis(200)) > 0 {
            for browser in &view.receivers() {
                browser.shut_down();
            }
            wait_live(view, Duration::from_secs(10));
        }
        drop(lock(&view.stats_source).take());
    }
}

fn browser_stats(b: &Browser, subscriptions: usize) -> BrowserStats {
    BrowserStats {
        id: b.id,
        peer: b.peer,
        outbox: b.outbox.stats(),
        asks: b.asks.load(Ordering::Relaxed),
        subscriptions,
    }
}

/// Waits until no socket thread runs, or `timeout`; returns how many still run.
fn wait_live<D: IDict>(view: &View<D>, timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    let mut live = lock(&view.live);
    while *live > 0 {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        live = view
            .live_changed
            .wait_timeout(live, deadline - now)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
    *live
}

impl<D: IDict> Drop for WebView<D> {
    fn drop(&mut self) {
        self.stop();
    }
}

impl<D: IDict> fmt::Debug for WebView<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebView")
            .field("addr", &self.view.addr)
            .finish_non_exhaustive()
    }
}

/// An address to connect to for a listener bound to `addr`.
fn connectable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port()))
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}

/// The listener's loop: a thread per connection, while there is room; past the bound on
/// threads, a `503` with `Retry-After`, written at once (a fresh socket's buffer takes it
/// without waiting).
fn listen<D>(view: &Arc<View<D>>, listener: &TcpListener)
where
    D: IDict + Send + Sync + 'static,
    D::Value: Clone + Send + Serialize,
{
    // Requests being read, besides the pages: a bound on threads a flood can start.
    let max_threads = view.options.max_browsers * 2 + 32;
    for stream in listener.incoming() {
        if view.stopping.load(Ordering::Relaxed) {
            return;
        }
        let Ok(mut stream) = stream else {
            // Out of descriptors, say: let some close.
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        if *lock(&view.live) >= max_threads {
            view.counters.refused.fetch_add(1, Ordering::Relaxed);
            let _ = stream.set_nonblocking(true);
            let _ = stream.write_all(http::BUSY);
            continue;
        }
        let connection = Arc::clone(view);
        *lock(&view.live) += 1;
        let started = thread::Builder::new()
            .name("queueserver-web-page".into())
            .spawn(move || {
                let guard = LiveGuard(&connection);
                handle(&connection, stream);
                drop(guard);
            });
        if started.is_err() {
            *lock(&view.live) -= 1;
            view.counters.refused.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A page's place, taken while it is connected.
struct PageSlot<'a>(&'a AtomicUsize);

impl Drop for PageSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One connection: its request, and if it is an upgrade, the page's writer.
fn handle<D>(view: &Arc<View<D>>, mut stream: TcpStream)
where
    D: IDict + Send + Sync + 'static,
    D::Value: Clone + Send + Serialize,
{
    let _ = stream.set_nodelay(true);
    let deadline = Instant::now() + view.options.request_timeout;
    // Takes a page's place; an upgrade (and only an upgrade) comes back with one taken.
    let routed = http::serve(&mut stream, &view.hosts, deadline, || {
        let max = view.options.max_browsers;
        view.places
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    });
    match routed {
        Routed::Done(outcome) => {
            let counter = match outcome {
                Outcome::Served => &view.counters.served,
                Outcome::Refused(_) => &view.counters.refused,
                Outcome::Dropped => return,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        Routed::Upgrade {
            key,
            rest,
            protocol,
        } => {
            // The place taken by the check, given back however this ends.
            let _place = PageSlot(&view.places);
            if http::accept(&mut stream, &key, protocol).is_ok() {
                run_receiver(view, stream, rest, protocol);
            }
        }
    }
}

/// A receiver from its upgrade to its end: its greeting (a page's hello and first values;
/// a Foxglove client's server info and channels), the reader thread, then this thread
/// writes until the receiver goes.
fn run_receiver<D>(view: &Arc<View<D>>, stream: TcpStream, rest: Vec<u8>, protocol: Protocol)
where
    D: IDict + Send + Sync + 'static,
    D::Value: Clone + Send + Serialize,
{
    let (Ok(peer), Ok(handle), Ok(reading)) =
        (stream.peer_addr(), stream.try_clone(), stream.try_clone())
    else {
        return;
    };
    let options = &view.options;
    if stream.set_read_timeout(None).is_err()
        || stream
            .set_write_timeout(Some(options.stall_timeout))
            .is_err()
    {
        return;
    }
    let id = view.next_id.fetch_add(1, Ordering::Relaxed);
    let outbox = Outbox::new(options.outbox, options.max_rate_hz);
    let browser = Arc::new(Browser::new(id, peer, protocol, outbox, handle));
    let client = match protocol {
        Protocol::Page => None,
        Protocol::Foxglove => Some(Arc::new(foxglove::Client::new(Arc::clone(&browser)))),
    };
    watch(view, 1);
    join(
        view,
        Joining {
            browser: Arc::clone(&browser),
            client: client.clone(),
        },
    );
    view.counters.accepted.fetch_add(1, Ordering::Relaxed);

    let reader = {
        let (view, browser) = (Arc::clone(view), Arc::clone(&browser));
        let client = client.clone();
        let max_message = options.max_message;
        *lock(&view.live) += 1;
        thread::Builder::new()
            .name("queueserver-web-read".into())
            .spawn(move || {
                let guard = LiveGuard(&view);
                match client {
                    None => browser::read_loop(&browser, reading, rest, max_message, &*view),
                    Some(client) => {
                        let handler = foxglove::Reader {
                            view: Arc::clone(&view),
                            client,
                        };
                        browser::read_loop(&browser, reading, rest, max_message, &handler);
                    }
                }
                drop(guard);
            })
    };
    let reader = match reader {
        Ok(reader) => Some(reader),
        Err(_) => {
            *lock(&view.live) -= 1;
            None
        }
    };
    if reader.is_some() {
        browser::write_loop(&browser, stream);
    }
    browser.shut_down();
    lock(&view.browsers).retain(|b| b.id != id);
    lock(&view.foxglove).retain(|c| c.browser.id != id);
    watch(view, -1);
    if let Some(reader) = reader {
        let _ = reader.join();
    }
    view.counters.disconnected.fetch_add(1, Ordering::Relaxed);
}

/// Counts a receiver in (`1`) or out (`-1`): the view's connection subscribes to updates
/// while one is connected.
fn watch<D: IDict>(view: &View<D>, change: isize) {
    let mut watchers = lock(&view.watchers);
    *watchers = watchers.saturating_add_signed(change);
    if let Some(relay) = view.relay.get() {
        relay.subscribe(*watchers > 0);
    }
}

/// A receiver joins: greeted at once with the newest snapshot the view knows; and, unless
/// the relay has a reader (which gave the newest), the newest the server has is asked for
/// through its request path (one request for every receiver joining meanwhile), handed
/// out as an update if newer.
fn join<D>(view: &Arc<View<D>>, joining: Joining)
where
    D: IDict + Send + Sync + 'static,
    D::Value: Clone + Send + Serialize,
{
    view.greet(joining);
    if let Some(relay) = view.relay.get().filter(|relay| relay.reader().is_none()) {
        let deadline = Instant::now() + view.options.ask_timeout;
        // Refused (too many asks, or the relay ended): the newest known stands.
        drop(relay.ask(Query::All, ViewAsker(Party::Fetch), deadline));
    }
}

/// A page's greeting: hello, the newest values, the server's state; then it is served.
fn greet_page<D>(view: &View<D>, browser: &Arc<Browser>)
where
    D: IDict,
    D::Value: Serialize,
{
    let options = &view.options;
    let running = view.attached.load(Ordering::Relaxed);
    let latest = view.latest();
    let mut names = Vec::new();
    if let Some(latest) = &latest {
        latest.visit(|key, _| {
            let mut name = String::new();
            if D::write_name(key, &mut name).is_ok() {
                names.push(name);
            }
        });
    }
    let hello = wire::Hello {
        kind: "hello",
        version: wire::FORMAT_VERSION,
        names: &names,
        rate_hz: options.max_rate_hz,
        max_rate_hz: options.max_rate_hz,
        outbox: options.outbox,
        max_message: options.max_message,
        server_time: wire::now_ms(),
        running,
    };
    if let Ok(hello) = serde_json::to_string(&hello) {
        browser.outbox.push(Out::text(hello));
    }
    if let Some(first) =
        latest.and_then(|latest| wire::update(latest.seq(), wire::now_ms(), latest.data()).ok())
    {
        browser.outbox.offer(Out::text(first), Instant::now());
    }
    if !running {
        browser.outbox.push(Out::text(wire::status(
            false,
            "the computation's server is not running",
        )));
    }
    lock(&view.browsers).push(Arc::clone(browser));
}

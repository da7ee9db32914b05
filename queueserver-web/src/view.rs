//! [`WebView`]: the listener, the pages' threads, and the sink of the view's relay.
//!
//! The view is a [relay](queueserver::runtime::relay): its connection is a
//! [`RelayConnection`] the poller owns, and its worker thread runs [`Pages`], the sink that
//! serializes each snapshot once and offers it to every page's outbox, hands answers to the
//! pages that asked, sends the counters, pings every page and disconnects the silent ones.

use crate::browser::{self, Browser, Handler, Out};
use crate::http::{self, HostCheck, Outcome, Routed};
use crate::options::Options;
use crate::wire;
use queueserver::idict::{check_name, KeyError};
use queueserver::runtime::asks::{AskError, AskStats, Asker};
use queueserver::runtime::outbox::{Outbox, OutboxStats};
use queueserver::runtime::relay::{Answered, End, Pace, Relay, RelayStats, Sink, Update, Worker};
use queueserver::{
    Clock, Connection, ConnectionId, ConnectionsFull, IDict, Notify, Query, QueueServer, Reader,
    RelayConnection, Requester, Response, Snapshot, Stats,
};
use serde::Serialize;
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
/// subscribes to updates while a page is connected.
///
/// **On the poller** each update costs a lock-free load of the [`Reader`]'s `Arc` and one
/// short lock, whatever the number of pages: the view's worker thread serializes and sends.
/// Dropping it (the server dropped, or the connection removed) tells every page that the
/// computation stopped, after the last snapshot, and ends their asks.
pub type WebConnection<D> = RelayConnection<D>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves its data whole: a panic cannot tear it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The view's own counters, sent to every page with the server's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ViewStats {
    /// Whether the view's connection is attached to a server (it was not dropped).
    pub running: bool,
    /// Pages connected now.
    pub browsers: usize,
    /// Pages that connected (WebSocket upgrades accepted).
    pub accepted: u64,
    /// Pages that went away, or were disconnected.
    pub disconnected: u64,
    /// Pages disconnected because they were not heard from (no pong) for the stall timeout.
    pub stalled: u64,
    /// Files served (the page and its assets).
    pub served: u64,
    /// Requests refused: bad requests, unknown hosts, cross-origin upgrades, no room.
    pub refused: u64,
    /// Snapshots serialized: once each, for every page connected at the time.
    pub updates: u64,
    /// Snapshots that had no JSON form (a key without a valid name, say).
    pub serialize_errors: u64,
    /// Text messages received from pages.
    pub messages: u64,
    /// Messages that were not understood, each answered with an error message.
    pub malformed: u64,
    /// Asks handed to the server's request path.
    pub asks: u64,
}

/// One page's counts, from [`WebView::browsers`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BrowserStats {
    /// The page's number on this view, in order of connection.
    pub id: u64,
    /// Where it connects from.
    pub peer: SocketAddr,
    /// Its outbox: queued, dropped, superseded, sent.
    pub outbox: OutboxStats,
    /// Its asks not yet answered.
    pub asks: usize,
}

/// Why [`WebView::attach`] did not start.
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
struct Counters {
    accepted: AtomicU64,
    disconnected: AtomicU64,
    stalled: AtomicU64,
    served: AtomicU64,
    refused: AtomicU64,
    updates: AtomicU64,
    serialize_errors: AtomicU64,
    messages: AtomicU64,
    malformed: AtomicU64,
    asks: AtomicU64,
}

/// What the view's threads and its sink share.
struct View<D: IDict> {
    options: Options,
    addr: SocketAddr,
    hosts: HostCheck,
    /// Set once the connection is attached, before any page can connect.
    relay: OnceLock<Relay<D, PageAsker>>,
    /// The newest snapshot the worker has seen, for turning an asked name into a key. Only
    /// the worker reads the server's `Reader`: every thread that loads it costs each of the
    /// poller's stores a little (arc-swap's debt list), so the pages' threads never do.
    latest: Mutex<Arc<Snapshot<D>>>,
    /// Pages connected, waiting for the worker to send them their first values.
    joining: Mutex<Vec<Arc<Browser>>>,
    browsers: Mutex<Vec<Arc<Browser>>>,
    /// Places taken by pages, connected or being connected.
    places: AtomicUsize,
    next_id: AtomicU64,
    stats_source: Mutex<Option<StatsSource>>,
    attached: AtomicBool,
    stopping: AtomicBool,
    /// Threads serving sockets, still running.
    live: Mutex<usize>,
    live_changed: Condvar,
    counters: Counters,
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
    fn view_stats(&self) -> ViewStats {
        let c = &self.counters;
        let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
        ViewStats {
            running: self.attached.load(Ordering::Relaxed),
            browsers: lock(&self.browsers).len(),
            accepted: load(&c.accepted),
            disconnected: load(&c.disconnected),
            stalled: load(&c.stalled),
            served: load(&c.served),
            refused: load(&c.refused),
            updates: load(&c.updates),
            serialize_errors: load(&c.serialize_errors),
            messages: load(&c.messages),
            malformed: load(&c.malformed),
            asks: load(&c.asks),
        }
    }

    /// Queues `text` for every page.
    fn broadcast(&self, text: String) {
        let text = Utf8Bytes::from(text);
        for browser in lock(&self.browsers).iter() {
            browser.outbox.push(Out::Text(text.clone()));
        }
    }

    /// The newest snapshot the worker has seen.
    fn latest(&self) -> Arc<Snapshot<D>> {
        Arc::clone(&lock(&self.latest))
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
        let (Some(relay), latest) = (self.relay.get(), self.latest()) else {
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
        let asker = PageAsker {
            browser: Arc::downgrade(browser),
            id,
            name,
            told: false,
        };
        self.counters.asks.fetch_add(1, Ordering::Relaxed);
        let deadline = Instant::now() + self.options.ask_timeout;
        if let Err(refused) = relay.ask(Query::Key(key), asker, deadline) {
            let mut asker = refused.asker;
            let text = wire::error(
                Some(id),
                &format!("ask for {:?} refused: {}", asker.name, refused.error),
            );
            asker.tell(text);
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

/// A page waiting for one answer: what the view's relay holds for it. It holds the page
/// weakly, so a page that goes away is not kept by its asks.
pub struct PageAsker {
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

impl Asker for PageAsker {
    /// The answer's body, made once and shared by every page that asked for the key.
    type Reply = String;

    fn answer(mut self, body: &String) {
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

impl fmt::Debug for PageAsker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PageAsker")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
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

/// The view's sink, on the relay's worker thread: every page's update, answers and
/// housekeeping. Serializes each snapshot once, whatever the number of pages, at most at
/// the pages' highest rate ([`Options::max_rate_hz`]); sends the counters every stats
/// interval; pings every page every ping interval and disconnects one not heard from for
/// the stall timeout.
struct Pages<D: IDict> {
    view: Arc<View<D>>,
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
    type Asker = PageAsker;

    fn prepare(&mut self, answer: Answered<D>) -> String {
        answer_body(&answer.response())
    }

    fn update(&mut self, update: &Update<D>) {
        let now = Instant::now();
        self.last_update = Some(now);
        let view = &self.view;
        *lock(&view.latest) = Arc::clone(update.snapshot());
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
        if !lock(&self.view.joining).is_empty() {
            tick = now;
        }
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
        let joining = std::mem::take(&mut *lock(&view.joining));
        if !joining.is_empty() {
            // The newest snapshot the poller has taken, read here on the worker's thread.
            if let Some(latest) = view.relay.get().and_then(Relay::latest) {
                *lock(&view.latest) = latest;
            }
            let latest = view.latest();
            for browser in joining {
                welcome(view, &browser, &latest, true);
                keep(view, browser);
            }
            if let Some(relay) = view.relay.get() {
                relay.subscribe(true);
            }
        }
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
            for browser in lock(&view.browsers).iter() {
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
        {
            // Pages that join from now on are welcomed by their own thread.
            let mut joining = lock(&view.joining);
            view.attached.store(false, Ordering::Relaxed);
            let latest = view.latest();
            for browser in joining.drain(..) {
                welcome(view, &browser, &latest, true);
                keep(view, browser);
            }
        }
        if end == End::Detached {
            let text = Utf8Bytes::from(wire::status(
                false,
                "the computation's server stopped: no more updates",
            ));
            for browser in lock(&view.browsers).iter() {
                browser.outbox.push_last(Out::Text(text.clone()));
            }
        }
    }
}

/// Adds a welcomed page to those served, unless it has gone meanwhile (its thread shuts
/// its outbox before it removes it, under the same lock).
fn keep<D: IDict>(view: &View<D>, browser: Arc<Browser>) {
    let mut browsers = lock(&view.browsers);
    if !browser.outbox.is_closed() {
        browsers.push(browser);
    }
}

/// Sends a page its `hello` and the values of `latest`; tells it if the computation does
/// not run.
fn welcome<D>(view: &View<D>, browser: &Browser, latest: &Snapshot<D>, running: bool)
where
    D: IDict,
    D::Value: Serialize,
{
    let options = &view.options;
    let running = running && view.attached.load(Ordering::Relaxed);
    let mut names = Vec::new();
    latest.visit(|key, _| {
        let mut name = String::new();
        if D::write_name(key, &mut name).is_ok() {
            names.push(name);
        }
    });
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
    if let Ok(first) = wire::update(latest.seq(), wire::now_ms(), latest.data()) {
        browser.outbox.offer(Out::text(first), Instant::now());
    }
    if !running {
        browser.outbox.push(Out::text(wire::status(
            false,
            "the computation's server is not running",
        )));
    }
}

/// A live web view of a server: listens, serves the page, streams to every page that
/// connects, until it is [shut down](Self::shutdown) or dropped. See the [crate docs](crate).
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
    /// `requester` and `reader` must be the server's (`server.requester()`,
    /// `server.reader()`): the view shares the snapshots the poller stores in the reader,
    /// and reads the newest one for a new page and for turning a name into a key. Starts
    /// two threads (the listener, and the relay's worker, which serializes, answers, sends
    /// the counters and pings), then two per connected page.
    ///
    /// # Errors
    ///
    /// [`StartError`]: the address could not be bound, a thread could not be started, or
    /// `attach` failed (its error is handed back).
    pub fn attach<N, E, const Q: usize, const MAXC: usize>(
        requester: Requester<D::Key, N, Q, MAXC>,
        reader: Reader<D>,
        options: Options,
        attach: impl FnOnce(WebConnection<D>) -> Result<ConnectionId, E>,
    ) -> Result<Self, StartError<E>>
    where
        N: Notify + 'static,
    {
        let listener = TcpListener::bind(options.bind).map_err(StartError::Bind)?;
        let addr = listener.local_addr().map_err(StartError::Bind)?;
        let max_asks = options.total_asks();
        let view = Arc::new(View {
            hosts: HostCheck::new(addr, &options.allowed_hosts, options.any_host),
            options,
            addr,
            relay: OnceLock::new(),
            // The one load of the reader outside the worker: this thread's, once.
            latest: Mutex::new(reader.load_full()),
            joining: Mutex::new(Vec::new()),
            browsers: Mutex::new(Vec::new()),
            places: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            stats_source: Mutex::new(None),
            attached: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            live: Mutex::new(0),
            live_changed: Condvar::new(),
            counters: Counters::default(),
        });
        let relay =
            Relay::attach(requester, Some(reader), max_asks, attach).map_err(StartError::Attach)?;
        view.attached.store(true, Ordering::Relaxed);
        let _ = view.relay.set(relay.clone());
        let mut started = Self {
            view: Arc::clone(&view),
            worker: None,
            listener: None,
        };
        started.worker = Some(
            relay
                .spawn("queueserver-web", Pages::new(Arc::clone(&view)))
                .map_err(StartError::Spawn)?,
        );
        let listening = Arc::clone(&view);
        started.listener = Some(
            thread::Builder::new()
                .name("queueserver-web-listen".into())
                .spawn(move || listen(&listening, &listener))
                .map_err(StartError::Spawn)?,
        );
        Ok(started)
    }

    /// [`attach`](Self::attach) to `server` itself: its requester, its reader and
    /// `add_connection`. For a server whose connection type takes a [`WebConnection`]
    /// (`Box<dyn Connection<D> + Send>`, or `WebConnection<D>` itself).
    ///
    /// A page that connects before the next update still gets the newest snapshot the
    /// server has taken, at once.
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
        let reader = server.reader();
        Self::attach(requester, reader, options, |connection| {
            server.add_connection(C::from(connection))
        })
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
            .map(|b| BrowserStats {
                id: b.id,
                peer: b.peer,
                outbox: b.outbox.stats(),
                asks: b.asks.load(Ordering::Relaxed),
            })
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
        for browser in lock(&view.browsers).iter() {
            browser.outbox.close_with(Out::Close(CloseFrame {
                code: CloseCode::Away,
                reason: "the view is shutting down".into(),
            }));
        }
        // A moment for the close frames to go out, then cut every socket.
        if wait_live(view, Duration::from_millis(200)) > 0 {
            for browser in lock(&view.browsers).iter() {
                browser.shut_down();
            }
            wait_live(view, Duration::from_secs(10));
        }
        drop(lock(&view.stats_source).take());
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
        Routed::Upgrade { key, rest } => {
            // The place taken by the check, given back however this ends.
            let _place = PageSlot(&view.places);
            if http::accept(&mut stream, &key).is_ok() {
                run_page(view, stream, rest);
            }
        }
    }
}

/// A page from its upgrade to its end: hello and first values, the reader thread, then
/// this thread writes until the page goes.
fn run_page<D>(view: &Arc<View<D>>, stream: TcpStream, rest: Vec<u8>)
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
    let browser = Arc::new(Browser::new(id, peer, outbox, handle));

    {
        // The worker welcomes the page (its first values come from the server's reader,
        // which only the worker reads); once the relay has ended, the page's own thread
        // does, from the last snapshot the worker saw.
        let mut joining = lock(&view.joining);
        if view.attached.load(Ordering::Relaxed) {
            joining.push(Arc::clone(&browser));
            drop(joining);
            if let Some(relay) = view.relay.get() {
                relay.nudge();
            }
        } else {
            drop(joining);
            welcome(view, &browser, &view.latest(), false);
            keep(view, Arc::clone(&browser));
        }
    }
    view.counters.accepted.fetch_add(1, Ordering::Relaxed);

    let reader = {
        let (view, browser) = (Arc::clone(view), Arc::clone(&browser));
        let max_message = options.max_message;
        *lock(&view.live) += 1;
        thread::Builder::new()
            .name("queueserver-web-read".into())
            .spawn(move || {
                let guard = LiveGuard(&view);
                browser::read_loop(&browser, reading, rest, max_message, &*view);
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
    lock(&view.joining).retain(|b| b.id != id);
    {
        // After the shutdown: a worker welcoming the page now sees it closed.
        let mut browsers = lock(&view.browsers);
        browsers.retain(|b| b.id != id);
        if browsers.is_empty() {
            if let Some(relay) = view.relay.get() {
                relay.subscribe(false);
            }
        }
    }
    if let Some(reader) = reader {
        let _ = reader.join();
    }
    view.counters.disconnected.fetch_add(1, Ordering::Relaxed);
}

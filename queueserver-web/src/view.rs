//! [`WebView`] (the listener and its threads) and [`WebConnection`] (what the poller owns).

use crate::browser::{self, Browser, Handler};
use crate::http::{self, HostCheck, Outcome, Routed};
use crate::options::Options;
use crate::outbox::{Outbox, OutboxStats};
use crate::wire;
use queueserver::asks::{AskError, AskStats, Asker, Asks, Responder};
use queueserver::idict::{check_name, KeyError};
use queueserver::{
    Abandoned, Clock, Connection, ConnectionError, ConnectionId, ConnectionsFull, IDict, Notify,
    Query, QueueServer, Requester, Response, Snapshot, Stats,
};
use serde::Serialize;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::Utf8Bytes;

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

/// The newest snapshot the poller handed the view: for a new page's first values and for
/// turning an asked name into a key.
struct Latest<D> {
    seq: u64,
    time: u64,
    data: Option<D>,
}

impl<D: IDict> Latest<D> {
    /// Nothing yet: before the first snapshot.
    const EMPTY: Self = Self {
        seq: 0,
        time: 0,
        data: None,
    };

    /// Copies `snapshot` in (allocating only the first time).
    fn keep(&mut self, snapshot: &Snapshot<D>, time: u64) {
        self.seq = snapshot.seq();
        self.time = time;
        match &mut self.data {
            Some(data) => data.copy_from(snapshot.data()),
            None => self.data = Some(snapshot.data().clone()),
        }
    }
}

type StatsSource = Box<dyn FnMut() -> Stats + Send>;

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    disconnected: AtomicU64,
    served: AtomicU64,
    refused: AtomicU64,
    updates: AtomicU64,
    serialize_errors: AtomicU64,
    messages: AtomicU64,
    malformed: AtomicU64,
    asks: AtomicU64,
}

/// What the view's threads, its connection and its handle share.
struct Shared<D: IDict> {
    options: Options,
    addr: SocketAddr,
    hosts: HostCheck,
    latest: Mutex<Latest<D>>,
    browsers: Mutex<Vec<Arc<Browser>>>,
    /// Places taken by pages, connected or being connected.
    places: AtomicUsize,
    next_id: AtomicU64,
    asks: OnceLock<Asks<D, PageAsker>>,
    stats_source: Mutex<Option<StatsSource>>,
    attached: AtomicBool,
    stopping: AtomicBool,
    /// Wakes the housekeeper early (to stop).
    wake: Condvar,
    wake_lock: Mutex<()>,
    /// Threads serving sockets, still running.
    live: Mutex<usize>,
    live_changed: Condvar,
    counters: Counters,
}

/// Counts a socket thread as live while it exists.
struct LiveGuard<'a, D: IDict>(&'a Shared<D>);

impl<D: IDict> Drop for LiveGuard<'_, D> {
    fn drop(&mut self) {
        *lock(&self.0.live) -= 1;
        self.0.live_changed.notify_all();
    }
}

impl<D: IDict> Shared<D> {
    fn view_stats(&self) -> ViewStats {
        let c = &self.counters;
        let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
        ViewStats {
            running: self.attached.load(Ordering::Relaxed),
            browsers: lock(&self.browsers).len(),
            accepted: load(&c.accepted),
            disconnected: load(&c.disconnected),
            served: load(&c.served),
            refused: load(&c.refused),
            updates: load(&c.updates),
            serialize_errors: load(&c.serialize_errors),
            messages: load(&c.messages),
            malformed: load(&c.malformed),
            asks: load(&c.asks),
        }
    }
}

impl<D> Shared<D>
where
    D: IDict + Sync + 'static,
    D::Value: Serialize,
{
    /// Queues `text` for every page.
    fn broadcast(&self, text: String) {
        let text = Utf8Bytes::from(text);
        for browser in lock(&self.browsers).iter() {
            browser.outbox.push(crate::outbox::Out::Text(text.clone()));
        }
    }

    /// The poller's share of the work: keep the newest snapshot, serialize it once, offer
    /// it to every page. Returns whether it failed to serialize.
    fn on_update(&self, snapshot: &Snapshot<D>, failing: &mut bool) {
        let time = wire::now_ms();
        // Never wait for a page's thread that is reading it: a copy one snapshot old
        // only delays a new page's first values or a name's lookup by one snapshot.
        let latest = match self.latest.try_lock() {
            Ok(latest) => Some(latest),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        if let Some(mut latest) = latest {
            latest.keep(snapshot, time);
        }
        let browsers = lock(&self.browsers);
        if browsers.is_empty() {
            return;
        }
        match wire::update(snapshot.seq(), time, snapshot.data()) {
            Ok(text) => {
                *failing = false;
                self.counters.updates.fetch_add(1, Ordering::Relaxed);
                let text = Utf8Bytes::from(text);
                let now = Instant::now();
                for browser in browsers.iter() {
                    browser.outbox.push_update(&text, now);
                }
            }
            Err(why) => {
                self.counters
                    .serialize_errors
                    .fetch_add(1, Ordering::Relaxed);
                if !*failing {
                    *failing = true;
                    let text = Utf8Bytes::from(wire::error(
                        None,
                        &format!("snapshot {} has no JSON form: {why}", snapshot.seq()),
                    ));
                    for browser in browsers.iter() {
                        browser.outbox.push(crate::outbox::Out::Text(text.clone()));
                    }
                }
            }
        }
    }

    /// The names of the newest snapshot, in visiting order.
    fn names(&self) -> Vec<String> {
        let latest = lock(&self.latest);
        let mut names = Vec::new();
        if let Some(data) = &latest.data {
            data.visit(|key, _| {
                let mut name = String::new();
                if D::write_name(key, &mut name).is_ok() {
                    names.push(name);
                }
            });
        }
        names
    }

    /// A new page's first update, from the newest snapshot.
    fn first_update(&self) -> Option<String> {
        let latest = lock(&self.latest);
        let data = latest.data.as_ref()?;
        wire::update(latest.seq, latest.time, data).ok()
    }

    /// Answers an ask: at once when the name is no key, else through the server.
    fn ask(&self, browser: &Arc<Browser>, id: u64, name: String) {
        let reply = |text: String| browser.outbox.push_text(text);
        if let Err(why) = check_name(&name) {
            reply(wire::error(
                Some(id),
                &format!("{name:?} is no valid name: {why}"),
            ));
            return;
        }
        let (key, seq) = {
            let latest = lock(&self.latest);
            let Some(data) = &latest.data else {
                reply(wire::error(Some(id), "no snapshot has been published yet"));
                return;
            };
            (data.parse_key(&name), latest.seq)
        };
        let key = match key {
            Ok(key) => key,
            Err(KeyError::Unknown) => {
                reply(wire::answer(
                    id,
                    &wire::answer_body::<D::Value>(&name, seq, None),
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
        let Some(asks) = self.asks.get() else {
            reply(wire::error(
                Some(id),
                "the view is not attached to a server",
            ));
            return;
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
        if let Err(refused) = asks.ask(Query::Key(key), asker, deadline) {
            let mut asker = refused.asker;
            asker.told = true;
            reply(wire::error(
                Some(id),
                &format!("ask for {:?} refused: {}", asker.name, refused.error),
            ));
        }
        // The sweep must come by the deadline.
        self.wake.notify_one();
    }
}

impl<D> Handler for Shared<D>
where
    D: IDict + Sync + 'static,
    D::Value: Serialize,
{
    fn text(&self, browser: &Arc<Browser>, text: &str) {
        self.counters.messages.fetch_add(1, Ordering::Relaxed);
        match wire::parse(text) {
            Ok(wire::Incoming::Ask { id, name }) => self.ask(browser, id, name),
            Ok(wire::Incoming::Rate { hz }) => {
                if hz.is_finite() && hz > 0.0 {
                    let rate = browser.outbox.set_rate(hz.min(self.options.max_rate_hz));
                    browser.outbox.push_text(wire::rate(rate));
                } else {
                    self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                    browser
                        .outbox
                        .push_text(wire::error(None, "rate: hz must be a positive number"));
                }
            }
            Err(why) => {
                self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                browser.outbox.push_text(wire::error(None, &why));
            }
        }
    }
}

/// A page waiting for one answer: what the [`asks`](queueserver::asks) machinery holds.
/// It holds the page weakly, so a page that goes away is not kept by its asks.
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
            browser.outbox.push_text(text);
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

/// The view's connection: the poller owns it. It subscribes to updates.
///
/// **On the poller**, [`on_update`](Connection::on_update) keeps a copy of the snapshot
/// (`IDict::copy_from`, skipped when a page's thread is reading the copy: never waits),
/// and, when pages are connected, serializes it once and offers the text to each page's
/// outbox (a short lock each, never a wait for a socket). With no page connected it
/// serializes nothing. [`on_response`](Connection::on_response) hands an answer to the
/// pages that asked for it, serialized once.
///
/// It never fails: a page that cannot keep up loses updates in its own outbox. Dropping it
/// (the server dropped, or the connection removed) tells every page that the computation
/// stopped, and ends their asks.
pub struct WebConnection<D: IDict> {
    shared: Arc<Shared<D>>,
    responder: Responder<D, PageAsker>,
    failing: bool,
}

impl<D> Connection<D> for WebConnection<D>
where
    D: IDict + Sync + 'static,
    D::Value: Serialize,
{
    fn on_update(&mut self, snapshot: &Snapshot<D>) -> Result<(), ConnectionError> {
        self.shared.on_update(snapshot, &mut self.failing);
        Ok(())
    }

    fn on_response(&mut self, response: Response<'_, D>) -> Result<(), ConnectionError> {
        self.responder.respond(&response, answer_body);
        Ok(())
    }

    fn wants_updates(&self) -> bool {
        true
    }

    /// Ends the asks waiting for `query` at once, each told by an `error` message: the
    /// server will never answer it, and why.
    fn on_abandoned(
        &mut self,
        query: &Query<D::Key>,
        why: Abandoned,
    ) -> Result<(), ConnectionError> {
        self.responder.abandon(query, why);
        Ok(())
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

impl<D: IDict> Drop for WebConnection<D> {
    fn drop(&mut self) {
        self.shared.attached.store(false, Ordering::Relaxed);
        let text = Utf8Bytes::from(wire::status(
            false,
            "the computation's server stopped: no more updates",
        ));
        for browser in lock(&self.shared.browsers).iter() {
            browser
                .outbox
                .push_last(crate::outbox::Out::Text(text.clone()));
        }
    }
}

impl<D> From<WebConnection<D>> for Box<dyn Connection<D> + Send>
where
    D: IDict + Sync + 'static,
    D::Value: Serialize,
{
    fn from(connection: WebConnection<D>) -> Self {
        Box::new(connection)
    }
}

impl<D: IDict> fmt::Debug for WebConnection<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebConnection")
            .field("addr", &self.shared.addr)
            .finish_non_exhaustive()
    }
}

/// A live web view of a server: listens, serves the page, streams to every page that
/// connects, until it is [shut down](Self::shutdown) or dropped. See the [crate docs](crate).
pub struct WebView<D: IDict> {
    shared: Arc<Shared<D>>,
    threads: Vec<JoinHandle<()>>,
}

impl<D> WebView<D>
where
    D: IDict + Sync + 'static,
    D::Value: Serialize,
{
    /// Listens on `options`' address, starts the view's threads, and attaches its
    /// connection with `attach`, which returns the id it was attached under (as
    /// [`Client::attach`](queueserver::Client::attach) does).
    ///
    /// `requester` must be the requester of the server `attach` adds the connection to.
    /// Starts two threads (the listener, and a housekeeper that sends the counters and
    /// ends expired asks), then two per connected page.
    ///
    /// # Errors
    ///
    /// [`StartError`]: the address could not be bound, a thread could not be started, or
    /// `attach` failed (its error is handed back; the threads are stopped again).
    pub fn attach<N, E, const Q: usize, const MAXC: usize>(
        requester: Requester<D::Key, N, Q, MAXC>,
        options: Options,
        attach: impl FnOnce(WebConnection<D>) -> Result<ConnectionId, E>,
    ) -> Result<Self, StartError<E>>
    where
        N: Notify + 'static,
    {
        Self::start(requester, options, Latest::EMPTY, attach)
    }

    /// [`attach`](Self::attach), with the view's copy of the newest snapshot starting as
    /// `latest`: in place before the first page can connect.
    fn start<N, E, const Q: usize, const MAXC: usize>(
        requester: Requester<D::Key, N, Q, MAXC>,
        options: Options,
        latest: Latest<D>,
        attach: impl FnOnce(WebConnection<D>) -> Result<ConnectionId, E>,
    ) -> Result<Self, StartError<E>>
    where
        N: Notify + 'static,
    {
        let listener = TcpListener::bind(options.bind).map_err(StartError::Bind)?;
        let addr = listener.local_addr().map_err(StartError::Bind)?;
        let shared = Arc::new(Shared {
            hosts: HostCheck::new(addr, &options.allowed_hosts, options.any_host),
            options,
            addr,
            latest: Mutex::new(latest),
            browsers: Mutex::new(Vec::new()),
            places: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            asks: OnceLock::new(),
            stats_source: Mutex::new(None),
            attached: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            wake: Condvar::new(),
            wake_lock: Mutex::new(()),
            live: Mutex::new(0),
            live_changed: Condvar::new(),
            counters: Counters::default(),
        });
        let mut view = Self {
            shared: Arc::clone(&shared),
            threads: Vec::new(),
        };
        let spawn = |name: &str, run: Box<dyn FnOnce() + Send>| {
            thread::Builder::new()
                .name(name.into())
                .spawn(run)
                .map_err(StartError::Spawn)
        };
        let listening = Arc::clone(&shared);
        view.threads.push(spawn(
            "queueserver-web-listen",
            Box::new(move || listen(&listening, &listener)),
        )?);
        let housekeeping = Arc::clone(&shared);
        view.threads.push(spawn(
            "queueserver-web-house",
            Box::new(move || housekeep(&housekeeping)),
        )?);
        let max_asks = shared.options.total_asks();
        let asks = Asks::attach(requester, max_asks, |responder| {
            attach(WebConnection {
                shared: Arc::clone(&shared),
                responder,
                failing: false,
            })
        })
        .map_err(StartError::Attach)?;
        shared.attached.store(true, Ordering::Relaxed);
        let _ = shared.asks.set(asks);
        Ok(view)
    }

    /// [`attach`](Self::attach) to `server` itself: its requester, and
    /// `add_connection`. For a server whose connection type takes a [`WebConnection`]
    /// (`Box<dyn Connection<D> + Send>`, or `WebConnection<D>` itself).
    ///
    /// The view starts from the newest snapshot the server has taken, if anything has been
    /// published: a page that connects before the next update still gets the values at
    /// once. (A view [attached](Self::attach) otherwise starts empty, and its pages get
    /// their first values with the first update the server delivers to it.)
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
        // No poll runs while `server` is borrowed here: this stays the newest snapshot
        // until the view's connection is attached.
        let taken = server.snapshot();
        let mut latest = Latest::EMPTY;
        if taken.seq() > 0 {
            latest.keep(taken, wire::now_ms());
        }
        Self::start(requester, options, latest, |connection| {
            server.add_connection(C::from(connection))
        })
    }

    /// Stops listening, closes every page (with close code `1001`, going away), and waits
    /// for every thread of the view to end (at most a moment: sockets are shut down).
    /// Dropping the view does the same. The connection stays with the server; without the
    /// view it keeps only a copy of the newest snapshot.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl<D: IDict> WebView<D> {
    /// The address the view listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The page's address: `http://127.0.0.1:PORT/` (for a view bound to every address,
    /// its loopback one).
    pub fn url(&self) -> String {
        let addr = connectable(self.shared.addr);
        format!("http://{addr}/")
    }

    /// The id of the view's connection, once attached.
    pub fn connection_id(&self) -> Option<ConnectionId> {
        self.shared.asks.get().map(Asks::id)
    }

    /// Sends the counters `source` returns to every page, every stats interval, from the
    /// view's housekeeping thread: for a runner, `move || runner.stats()`; for a poller of
    /// your own, whatever copy of [`QueueServer::stats`] it keeps. Replaces any source set
    /// before. Without one, pages show the view's counters only.
    pub fn set_stats(&self, source: impl FnMut() -> Stats + Send + 'static) {
        *lock(&self.shared.stats_source) = Some(Box::new(source));
    }

    /// Removes the stats source; once this returns it is not called again (it is dropped
    /// here).
    pub fn clear_stats(&self) {
        let source = lock(&self.shared.stats_source).take();
        drop(source);
    }

    /// The view's counters.
    pub fn stats(&self) -> ViewStats {
        self.shared.view_stats()
    }

    /// The counts of the asks of every page, as the [`asks`](queueserver::asks)
    /// machinery keeps them (requests sent, answers received, ...), once attached.
    pub fn ask_stats(&self) -> Option<AskStats> {
        self.shared.asks.get().map(Asks::stats)
    }

    /// Each connected page's counts, in order of connection.
    pub fn browsers(&self) -> Vec<BrowserStats> {
        lock(&self.shared.browsers)
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
        *lock(&self.shared.live)
    }

    fn stop(&mut self) {
        let shared = &self.shared;
        if shared.stopping.swap(true, Ordering::Relaxed) {
            return;
        }
        // Wake the listener's `accept` with a connection of our own.
        let _ = TcpStream::connect_timeout(&connectable(shared.addr), Duration::from_secs(1));
        {
            let _guard = lock(&shared.wake_lock);
            shared.wake.notify_all();
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        for browser in lock(&shared.browsers).iter() {
            browser.outbox.close_with(CloseFrame {
                code: CloseCode::Away,
                reason: "the view is shutting down".into(),
            });
        }
        // A moment for the close frames to go out, then cut every socket.
        if wait_live(shared, Duration::from_millis(200)) > 0 {
            for browser in lock(&shared.browsers).iter() {
                browser.shut_down();
            }
            wait_live(shared, Duration::from_secs(10));
        }
        drop(lock(&shared.stats_source).take());
    }
}

/// Waits until no socket thread runs, or `timeout`; returns how many still run.
fn wait_live<D: IDict>(shared: &Shared<D>, timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    let mut live = lock(&shared.live);
    while *live > 0 {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        live = shared
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
            .field("addr", &self.shared.addr)
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

/// The listener's loop: a thread per connection, while there is room.
fn listen<D>(shared: &Arc<Shared<D>>, listener: &TcpListener)
where
    D: IDict + Sync + 'static,
    D::Value: Serialize,
{
    // Requests being read, besides the pages: a bound on threads a flood can start.
    let max_threads = shared.options.max_browsers * 2 + 32;
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::Relaxed) {
            return;
        }
        let Ok(stream) = stream else {
            // Out of descriptors, say: let some close.
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        if *lock(&shared.live) >= max_threads {
            shared.counters.refused.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let connection = Arc::clone(shared);
        *lock(&shared.live) += 1;
        let started = thread::Builder::new()
            .name("queueserver-web-page".into())
            .spawn(move || {
                let guard = LiveGuard(&connection);
                handle(&connection, stream);
                drop(guard);
            });
        if started.is_err() {
            *lock(&shared.live) -= 1;
            shared.counters.refused.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A page's place, taken while it is connected.
struct Place<'a>(&'a AtomicUsize);

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One connection: its request, and if it is an upgrade, the page's writer.
fn handle<D>(shared: &Arc<Shared<D>>, mut stream: TcpStream)
where
    D: IDict + Sync + 'static,
    D::Value: Serialize,
{
    let _ = stream.set_nodelay(true);
    let deadline = Instant::now() + shared.options.request_timeout;
    // Takes a page's place; an upgrade (and only an upgrade) comes back with one taken.
    let routed = http::serve(&mut stream, &shared.hosts, deadline, || {
        let max = shared.options.max_browsers;
        shared
            .places
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    });
    match routed {
        Routed::Done(outcome) => {
            let counter = match outcome {
                Outcome::Served => &shared.counters.served,
                Outcome::Refused(_) => &shared.counters.refused,
                Outcome::Dropped => return,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        Routed::Upgrade { key, rest } => {
            // The place taken by the check, given back however this ends.
            let _place = Place(&shared.places);
            if http::accept(&mut stream, &key).is_ok() {
                run_page(shared, stream, rest);
            }
        }
    }
}

/// A page from its upgrade to its end: hello and first values, the reader thread, then
/// this thread writes until the page goes.
fn run_page<D>(shared: &Arc<Shared<D>>, stream: TcpStream, rest: Vec<u8>)
where
    D: IDict + Sync + 'static,
    D::Value: Serialize,
{
    let (Ok(peer), Ok(handle), Ok(reading)) =
        (stream.peer_addr(), stream.try_clone(), stream.try_clone())
    else {
        return;
    };
    let options = &shared.options;
    if stream.set_read_timeout(None).is_err()
        || stream
            .set_write_timeout(Some(options.stall_timeout))
            .is_err()
    {
        return;
    }
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let outbox = Outbox::new(options.outbox, options.max_rate_hz);
    let browser = Arc::new(Browser::new(id, peer, outbox, handle));

    let running = shared.attached.load(Ordering::Relaxed);
    let names = shared.names();
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
        browser.outbox.push_text(hello);
    }
    if let Some(update) = shared.first_update() {
        browser
            .outbox
            .push_update(&Utf8Bytes::from(update), Instant::now());
    }
    if !running {
        browser.outbox.push_text(wire::status(
            false,
            "the computation's server is not running",
        ));
    }
    lock(&shared.browsers).push(Arc::clone(&browser));
    shared.counters.accepted.fetch_add(1, Ordering::Relaxed);

    let reader = {
        let (shared, browser) = (Arc::clone(shared), Arc::clone(&browser));
        let max_message = options.max_message;
        *lock(&shared.live) += 1;
        thread::Builder::new()
            .name("queueserver-web-read".into())
            .spawn(move || {
                let guard = LiveGuard(&shared);
                browser::read_loop(&browser, reading, rest, max_message, &*shared);
                drop(guard);
            })
    };
    let reader = match reader {
        Ok(reader) => Some(reader),
        Err(_) => {
            *lock(&shared.live) -= 1;
            None
        }
    };
    if reader.is_some() {
        browser::write_loop(&browser, stream);
    }
    browser.shut_down();
    lock(&shared.browsers).retain(|b| b.id != id);
    if let Some(reader) = reader {
        let _ = reader.join();
    }
    shared.counters.disconnected.fetch_add(1, Ordering::Relaxed);
}

/// Sends the counters every stats interval, and ends expired asks, until the view stops.
fn housekeep<D>(shared: &Arc<Shared<D>>)
where
    D: IDict + Sync + 'static,
    D::Value: Serialize,
{
    let interval = shared.options.stats_interval;
    let mut next_stats = Instant::now();
    loop {
        let now = Instant::now();
        let mut wake_at = next_stats;
        if let Some(asks) = shared.asks.get() {
            let sweep = asks.sweep(now);
            if let Some(deadline) = sweep.next_deadline {
                wake_at = wake_at.min(deadline);
            }
            if sweep.unsent {
                wake_at = wake_at.min(now + Duration::from_millis(2));
            }
        }
        if now >= next_stats {
            next_stats = now + interval;
            wake_at = wake_at.min(next_stats);
            let server = lock(&shared.stats_source).as_mut().map(|source| source());
            let view = shared.view_stats();
            let message = wire::StatsMessage {
                kind: "stats",
                time: wire::now_ms(),
                server: server.as_ref(),
                view: &view,
            };
            if view.browsers > 0 {
                if let Ok(text) = serde_json::to_string(&message) {
                    shared.broadcast(text);
                }
            }
        }
        let guard = lock(&shared.wake_lock);
        if shared.stopping.load(Ordering::Relaxed) {
            return;
        }
        let wait = wake_at.saturating_duration_since(Instant::now());
        let _ = shared
            .wake
            .wait_timeout(guard, wait)
            .unwrap_or_else(PoisonError::into_inner);
        if shared.stopping.load(Ordering::Relaxed) {
            return;
        }
    }
}

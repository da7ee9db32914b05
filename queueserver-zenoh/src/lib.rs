#![doc = include_str!("../README.md")]
//!
//! ## The API
//!
//! - [`Zenoh`]: [`attach`](Zenoh::attach), [`open`](Zenoh::open),
//!   [`attach_with`](Zenoh::attach_with), [`publish`](Zenoh::publish) (any relay with a
//!   reader: a device's line, say), [`set_live`](Zenoh::set_live),
//!   [`close`](Zenoh::close), [`stats`](Zenoh::stats) ([`Stats`]),
//!   [`ask_stats`](Zenoh::ask_stats); [`Options`]; [`Error`]; [`GetAsker`] and [`GetReply`], the
//!   relay's asker and what it is handed.
//! - [`ZenohConnection`]: the connection the poller owns, a
//!   [`RelayConnection`](queueserver::RelayConnection): the crate is a sink of the core's
//!   [relay](queueserver::runtime::relay), whose worker thread serializes and sends.
//! - [`config`]: ready-made session configurations, [`config::SMALL_RUNTIME`].
//! - [`wire`]: the contract's constants and formats ([`wire::CONTRACT_VERSION`],
//!   [`wire::SNAPSHOT_CHUNK`], [`wire::ENCODING`], [`wire::ERROR_ENCODING`],
//!   [`wire::seq_of`], [`wire::snapshot_json`]).
//! - [`select`]: from a get's key expression to the requests it stands for.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
mod connection;
pub mod select;
mod sink;
mod stats;
pub mod wire;

pub use connection::{GetAsker, ZenohConnection};
pub use sink::GetReply;
pub use stats::Stats;

use connection::Gets;
use queueserver::runtime::asks::AskStats;
use queueserver::runtime::relay::{Relay, Worker};
use queueserver::{
    Clock, Connection, ConnectionId, ConnectionsFull, IDict, Notify, QueueServer, Reader, Requester,
};
use serde::Serialize;
use sink::ZenohSink;
use stats::Counters;
use std::convert::Infallible;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use zenoh::key_expr::{keyexpr, OwnedKeyExpr};
use zenoh::liveliness::LivelinessToken;
use zenoh::query::Queryable;
use zenoh::{Session, Wait};

/// How many requests of remote gets may wait for their reply at once, by default.
pub const DEFAULT_MAX_GETS: usize = 1024;
/// How long a remote get waits for its answer, by default (Zenoh's own default timeout
/// for a get).
pub const DEFAULT_GET_TIMEOUT: Duration = Duration::from_secs(10);

/// The settings of an attachment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    max_gets: usize,
    get_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self::new()
    }
}

impl Options {
    /// [`DEFAULT_MAX_GETS`] and [`DEFAULT_GET_TIMEOUT`].
    pub const fn new() -> Self {
        Self {
            max_gets: DEFAULT_MAX_GETS,
            get_timeout: DEFAULT_GET_TIMEOUT,
        }
    }

    /// At most `max` requests of remote gets waiting for their reply (a get of one name
    /// stands for one, a wildcard for one per name it matches); a get that would pass the
    /// bound gets an error reply at once. It is the relay's one bound: it counts a request
    /// until its reply goes out (its answer waiting in the relay's queue included) and a
    /// request in flight whose gets all ended, so it also bounds the memory a stalled
    /// network can hold. ([`Zenoh::publish`] takes a relay made with its bound already.)
    pub const fn with_max_gets(mut self, max: usize) -> Self {
        self.max_gets = max;
        self
    }

    /// How long a remote get waits for its answer before an error reply ends it.
    pub const fn with_get_timeout(mut self, timeout: Duration) -> Self {
        self.get_timeout = timeout;
        self
    }

    /// The bound on requests of remote gets waiting for their reply.
    pub const fn max_gets(&self) -> usize {
        self.max_gets
    }

    /// How long a remote get waits for its answer.
    pub const fn get_timeout(&self) -> Duration {
        self.get_timeout
    }
}

/// Why [`Zenoh::attach`] failed.
#[derive(Debug)]
pub enum Error<E = ()> {
    /// The prefix is no concrete Zenoh key expression (it is empty, holds a wildcard, or
    /// is not canonical).
    Prefix(String),
    /// A key of the IDict has no valid name: it cannot be put on the wire.
    Unnamed(queueserver::idict::KeyError),
    /// Zenoh refused a declaration (a queryable, a publisher, a matching listener, the
    /// liveliness token) or to open a session.
    Zenoh(zenoh::Error),
    /// The relay's worker thread could not be started.
    Thread(std::io::Error),
    /// Attaching the connection failed: the error `attach` returned.
    Attach(E),
    /// The relay given to [`Zenoh::publish`] has no reader: gets need the newest
    /// snapshot's names.
    NoReader,
}

impl<E: fmt::Debug> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Prefix(why) => write!(f, "invalid prefix: {why}"),
            Self::Unnamed(why) => write!(f, "a key cannot be put on the wire: {why}"),
            Self::Zenoh(why) => write!(f, "zenoh: {why}"),
            Self::Thread(why) => write!(f, "cannot start the relay's worker thread: {why}"),
            Self::Attach(why) => write!(f, "cannot attach the connection: {why:?}"),
            Self::NoReader => f.write_str("the relay has no reader: gets need its names"),
        }
    }
}

impl<E: fmt::Debug> std::error::Error for Error<E> {}

impl Error<Infallible> {
    /// The same error, as an error of an attachment that can fail with `E`.
    fn widen<E>(self) -> Error<E> {
        match self {
            Self::Prefix(why) => Error::Prefix(why),
            Self::Unnamed(why) => Error::Unnamed(why),
            Self::Zenoh(why) => Error::Zenoh(why),
            Self::Thread(why) => Error::Thread(why),
            Self::NoReader => Error::NoReader,
            Self::Attach(never) => match never {},
        }
    }
}

/// A server published on Zenoh: keeps the queryables, the liveliness token and the relay's
/// worker thread alive. Dropping it (or [`close`](Self::close)) takes the server off the
/// wire: the token goes, gets are no longer answered, and the connection it attached
/// fails with [`ConnectionError::Closed`](queueserver::ConnectionError::Closed) at the
/// poller's next call, which removes it from the server.
pub struct Zenoh<D: IDict> {
    relay: Relay<D, GetAsker>,
    counters: Arc<Counters>,
    prefix: OwnedKeyExpr,
    id: Option<ConnectionId>,
    session: Session,
    /// A session this handle opened, closed with it.
    owned: bool,
    queryables: Vec<Queryable<()>>,
    /// Declared while live.
    token: Mutex<Option<LivelinessToken>>,
    live: Arc<AtomicBool>,
    worker: Option<Worker>,
}

impl<D> Zenoh<D>
where
    D: IDict + Sync + 'static,
    D::Key: Send + Sync + 'static,
    D::Value: Serialize + Clone + Send + Sync,
{
    /// Publishes `server` on `session` under `prefix`: attaches a [`ZenohConnection`] to it,
    /// declares the queryables of `P/**` and `P/@snapshot` and the liveliness token `P`, and
    /// starts the relay's worker thread.
    ///
    /// **Poller** (wherever the server is, before a runner takes it). Allocates; makes
    /// Zenoh declarations, which may wait for Zenoh's runtime. The server's connections
    /// must be able to hold a `ZenohConnection` (a server of `ZenohConnection<D>`, of
    /// [`RelayConnection<D>`](queueserver::RelayConnection), or of
    /// `Box<dyn Connection<D> + Send>`).
    ///
    /// # Errors
    ///
    /// [`Error::Prefix`], [`Error::Unnamed`] (checked on the server's newest snapshot),
    /// [`Error::Zenoh`], [`Error::Thread`], and [`Error::Attach`] when every connection slot
    /// is taken.
    pub fn attach<C, N, T, const Q: usize, const MAXC: usize>(
        server: &mut QueueServer<D, C, N, T, Q, MAXC>,
        session: &Session,
        prefix: &str,
        options: Options,
    ) -> Result<Self, Error<ConnectionsFull<C>>>
    where
        C: Connection<D> + From<ZenohConnection<D>>,
        N: Notify + 'static,
        T: Clock,
    {
        let requester = server.requester();
        let reader = server.reader();
        Self::attach_with(requester, reader, session, prefix, options, |connection| {
            server.add_connection(C::from(connection))
        })
    }

    /// [`attach`](Self::attach) for a server kept elsewhere: `requester` and `reader` must
    /// be the server's, and `attach` must add the connection to that server and return
    /// the id it gave it (as [`Relay::attach`] asks). For a server a
    /// [`Runner`](queueserver::Runner) runs: `|c| runner.add_connection(c.into())`.
    ///
    /// # Errors
    ///
    /// As [`attach`](Self::attach); [`Error::Attach`] with what `attach` returned.
    pub fn attach_with<N, E, const Q: usize, const MAXC: usize>(
        requester: Requester<D::Key, N, Q, MAXC>,
        reader: Reader<D>,
        session: &Session,
        prefix: &str,
        options: Options,
        attach: impl FnOnce(ZenohConnection<D>) -> Result<ConnectionId, E>,
    ) -> Result<Self, Error<E>>
    where
        N: Notify + 'static,
    {
        let prefix = check_prefix(prefix).map_err(Error::Prefix)?;
        check_names(&reader).map_err(Error::Unnamed)?;
        let mut id = None;
        let relay = Relay::attach(
            requester,
            Some(reader.clone()),
            options.max_gets,
            |connection| {
                let attached = attach(connection)?;
                id = Some(attached);
                Ok(attached)
            },
        )
        .map_err(Error::Attach)?;
        let Some(id) = id else {
            unreachable!("attach returned an id, or the error returned above")
        };
        Self::start(relay, reader, Some(id), session, prefix, options).map_err(Error::widen)
    }

    /// Publishes a relay made elsewhere on `session` under `prefix`, as
    /// [`attach`](Self::attach) publishes a server: a relay fed by something other than a
    /// server's poller ([`Relay::fed`]: a microcontroller's line, a replay). Declares the
    /// queryables and the liveliness token and starts the relay's worker thread, whose
    /// sink publishes what the feed hands the relay; gets become asks on the relay, whose
    /// upstream takes their requests. The relay's reader (which it must have) gives the
    /// names gets select, and `options`' bound on gets is the relay's own (`max_asks`).
    ///
    /// A relay whose source comes and goes says so with [`set_live`](Self::set_live): the
    /// token is declared only while it is live, and gets meanwhile get an error reply at
    /// once.
    ///
    /// **Any thread.** Allocates; makes Zenoh declarations, which may wait for Zenoh's
    /// runtime.
    ///
    /// # Errors
    ///
    /// [`Error::Prefix`], [`Error::NoReader`], [`Error::Unnamed`] (checked on the
    /// reader's newest snapshot), [`Error::Zenoh`], [`Error::Thread`].
    pub fn publish(
        relay: Relay<D, GetAsker>,
        session: &Session,
        prefix: &str,
        options: Options,
    ) -> Result<Self, Error<Infallible>> {
        let prefix = check_prefix(prefix).map_err(Error::Prefix)?;
        let reader = relay.reader().cloned().ok_or(Error::NoReader)?;
        check_names(&reader).map_err(Error::Unnamed)?;
        Self::start(relay, reader, None, session, prefix, options)
    }

    /// Spawns the relay's worker and declares the queryables and the token.
    fn start(
        relay: Relay<D, GetAsker>,
        reader: Reader<D>,
        id: Option<ConnectionId>,
        session: &Session,
        prefix: OwnedKeyExpr,
        options: Options,
    ) -> Result<Self, Error<Infallible>> {
        let counters = Arc::new(Counters::default());
        let live = Arc::new(AtomicBool::new(true));
        let mut zenoh = Self {
            relay: relay.clone(),
            counters: Arc::clone(&counters),
            prefix: prefix.clone(),
            id,
            session: session.clone(),
            owned: false,
            queryables: Vec::new(),
            token: Mutex::new(None),
            live: Arc::clone(&live),
            worker: None,
        };
        // Subscribes the relay to updates while some subscriber hears them.
        let sink = ZenohSink::new(session, &prefix, Arc::clone(&counters), &relay)
            .map_err(Error::Zenoh)?;
        zenoh.worker = Some(relay.spawn("qs-zenoh", sink).map_err(Error::Thread)?);
        let gets = Arc::new(Gets {
            relay,
            reader,
            counters,
            prefix: prefix.clone(),
            timeout: options.get_timeout,
            live,
        });
        for key in [
            select::prefix_children(&prefix),
            select::snapshot_key(&prefix),
        ] {
            let gets = Arc::clone(&gets);
            let queryable = session
                .declare_queryable(key)
                .complete(true)
                .callback(move |query| gets.on_query(query))
                .wait()
                .map_err(Error::Zenoh)?;
            zenoh.queryables.push(queryable);
        }
        zenoh.set_live(true).map_err(Error::Zenoh)?;
        Ok(zenoh)
    }

    /// Opens a session with `config` and [`attach`](Self::attach)es `server` to it; the
    /// session is closed with the handle. See [`config`] for ready-made configurations.
    ///
    /// # Errors
    ///
    /// As [`attach`](Self::attach); [`Error::Zenoh`] when the session cannot be opened (a
    /// listening endpoint taken, say).
    pub fn open<C, N, T, const Q: usize, const MAXC: usize>(
        server: &mut QueueServer<D, C, N, T, Q, MAXC>,
        config: zenoh::Config,
        prefix: &str,
        options: Options,
    ) -> Result<Self, Error<ConnectionsFull<C>>>
    where
        C: Connection<D> + From<ZenohConnection<D>>,
        N: Notify + 'static,
        T: Clock,
    {
        // Check before opening: a session's listeners are taken as it opens.
        check_prefix(prefix).map_err(Error::Prefix)?;
        let session = zenoh::open(config).wait().map_err(Error::Zenoh)?;
        match Self::attach(server, &session, prefix, options) {
            Ok(mut zenoh) => {
                zenoh.owned = true;
                Ok(zenoh)
            }
            Err(error) => {
                let _ = session.close().wait();
                Err(error)
            }
        }
    }
}

impl<D: IDict> Zenoh<D> {
    /// The prefix `P`.
    pub fn prefix(&self) -> &keyexpr {
        &self.prefix
    }

    /// The id of the connection attached to the server; `None` for a relay
    /// [`publish`](Self::publish)ed.
    pub fn id(&self) -> Option<ConnectionId> {
        self.id
    }

    /// Says whether the computation answers now. While it does (from the start), the
    /// liveliness token `P` is declared and gets are asked of it; while it does not (a
    /// device whose line is down), the token is undeclared, so liveliness subscribers see
    /// it go, and every get gets the error reply `not live: the computation does not
    /// answer now` at once. Snapshots still go out if the relay is handed any.
    ///
    /// **Any thread.** A short lock; declaring or undeclaring the token may wait for
    /// Zenoh's runtime. Nothing happens when it already is as told.
    ///
    /// # Errors
    ///
    /// Zenoh refused to declare the token (the session closed): the computation then
    /// counts as live, without a token.
    pub fn set_live(&self, live: bool) -> zenoh::Result<()> {
        let mut token = self.token.lock().unwrap_or_else(PoisonError::into_inner);
        self.live.store(live, Ordering::Relaxed);
        match (live, token.is_some()) {
            (true, false) => {
                let declared = self
                    .session
                    .liveliness()
                    .declare_token(&self.prefix)
                    .wait()?;
                *token = Some(declared);
            }
            (false, true) => {
                if let Some(token) = token.take() {
                    token.undeclare().wait()?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether the computation answers now (see [`set_live`](Self::set_live)).
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Relaxed)
    }

    /// The session the server is published on.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The counters of the Zenoh side.
    ///
    /// **Any thread.** Relaxed loads and the relay's counts (two short locks).
    pub fn stats(&self) -> Stats {
        self.counters.stats(&self.relay.stats())
    }

    /// The counters of the asks behind the remote gets: asked, answered, expired, closed,
    /// abandoned; requests sent to the server and answers received.
    ///
    /// **Any thread.** A short lock.
    pub fn ask_stats(&self) -> AskStats {
        self.relay.asks().stats()
    }

    /// Takes the server off the wire: undeclares the queryables and the token, then closes
    /// the relay: every get still waiting for the server gets the error reply `closed: no
    /// answer will come` at once, from the calling thread, and a snapshot not published
    /// yet is dropped. The worker thread replies with the answers the poller had already
    /// handed over, then stops.
    ///
    /// **Blocks** until the worker thread has stopped, which may take as long as a
    /// congested link holds a send.
    pub fn close(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        for queryable in self.queryables.drain(..) {
            let _ = queryable.undeclare().wait();
        }
        let token = self
            .token
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(token) = token {
            let _ = token.undeclare().wait();
        }
        // The gets still waiting are told `closed` here; the worker delivers the answers
        // already queued, sees the end, and stops.
        self.relay.close();
        if let Some(worker) = self.worker.take() {
            worker.join();
        }
        if self.owned {
            self.owned = false;
            let _ = self.session.close().wait();
        }
    }
}

impl<D: IDict> Drop for Zenoh<D> {
    fn drop(&mut self) {
        self.shut();
    }
}

impl<D: IDict> fmt::Debug for Zenoh<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Zenoh")
            .field("prefix", &self.prefix)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A prefix is a concrete, canonical key expression.
fn check_prefix(prefix: &str) -> Result<OwnedKeyExpr, String> {
    let key = OwnedKeyExpr::try_from(prefix).map_err(|e| format!("{prefix:?}: {e}"))?;
    if key.is_wild() {
        return Err(format!("{prefix:?} holds a wildcard"));
    }
    if key.split('/').any(|chunk| chunk.starts_with('@')) {
        return Err(format!("{prefix:?} holds a verbatim (`@`) chunk"));
    }
    Ok(key)
}

/// Every key of the newest snapshot has a name.
fn check_names<D: IDict>(reader: &Reader<D>) -> Result<(), queueserver::idict::KeyError> {
    let snapshot = reader.load();
    let mut result = Ok(());
    snapshot.visit(|key, _| {
        if result.is_ok() {
            let mut name = heapless::String::<{ queueserver::idict::MAX_NAME_LEN }>::new();
            result = D::write_name(key, &mut name);
        }
    });
    result
}

/// Two peers on a unix socket, for the unit tests that need a session.
#[cfg(test)]
mod peers {
    use crate::config;
    use std::path::PathBuf;
    use std::time::{Duration, Instant};
    use zenoh::{Session, Wait};

    /// The socket file, removed when dropped.
    pub(crate) struct Socket(PathBuf);

    impl Drop for Socket {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// A peer listening on a socket of its own, and a peer connected to it.
    pub(crate) fn pair(tag: &str) -> (Session, Session, Socket) {
        let path = std::env::temp_dir().join(format!("qs-unit-{}-{tag}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let endpoint = format!("unixsock-stream/{}", path.display());
        let open = |listen: &[&str], connect: &[&str]| {
            zenoh::open(config::peer(listen, connect).unwrap())
                .wait()
                .unwrap()
        };
        let listening = open(&[&endpoint], &[]);
        (listening, open(&[], &[&endpoint]), Socket(path))
    }

    /// Waits up to 10 s for `done`.
    pub(crate) fn until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "waited 10 s for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::peers::{pair, until};
    use super::{Options, Zenoh};
    use queueserver::{Connection, QueueServer};
    use std::collections::BTreeMap;
    use std::time::Duration;
    use zenoh::Wait;

    type Map = BTreeMap<String, f64>;

    #[test]
    fn closing_ends_the_gets_still_waiting_with_an_error_reply_at_once() {
        let (computation, other, _socket) = pair("close");
        let (_publisher, mut server) = QueueServer::<Map, Box<dyn Connection<Map> + Send>>::new(
            Map::from([("x".to_owned(), 1.0)]),
        );
        let zenoh = Zenoh::attach(&mut server, &computation, "test/close", Options::new()).unwrap();
        // The queryable is known to the other peer once an unknown name gets its error.
        until("the queryable", || {
            let replies = other.get("test/close/nope").wait().unwrap();
            replies.recv().is_ok()
        });
        // Nobody polls: the get waits for the server, far from its deadline.
        let get = std::thread::spawn(move || {
            let replies = other
                .get("test/close/x")
                .timeout(Duration::from_secs(30))
                .wait()
                .unwrap();
            let reply = replies.recv().unwrap();
            let error = reply.into_result().unwrap_err();
            error.payload().try_to_string().unwrap().into_owned()
        });
        until("the get", || zenoh.ask_stats().outstanding == 1);
        zenoh.close();
        // Not `timed out`: the server-side deadline (10 s) had not passed.
        assert_eq!(get.join().unwrap(), "closed: no answer will come");
    }
}

//! [`Runner`] (std): drives the poller on its own thread, and lets any thread talk to it.
//!
//! Two ways to wake it: by notification ([`Runner::notified`], with a [`ThreadNotify`]
//! hook: the thread parks until a publish or request unparks it, or a rate limit is due),
//! or by interval ([`Runner::every`], with any hook: it polls at a fixed period).
//!
//! # Talking to a running poller
//!
//! The runner owns the server, but any thread holding the `Runner` (it is `Sync`: share it
//! by reference or in an `Arc`) can:
//!
//! - read the server's [`Stats`], as of the poller's last cycle ([`stats`](Runner::stats));
//! - [add](Runner::add_connection) and [remove](Runner::remove_connection) connections:
//!   they are moved to the poller's thread and attached (or detached) there;
//! - know whether the poller still runs ([`is_running`](Runner::is_running)), and why not
//!   ([`stopped`](Runner::stopped)).
//!
//! The poller never waits for a caller. Stats come through a triple buffer the poller
//! writes after every cycle. A call that changes connections takes its turn (callers wait
//! for each other), posts its command in a one-place mailbox, wakes the poller and waits
//! for the answer; the poller looks into the mailbox once per cycle with a `try_lock`, and a
//! caller it finds posting wakes it again when done.
//!
//! # Stopping
//!
//! [`Runner::shutdown`] stops the thread without losing a request: it closes the request
//! side (later `put_request` calls get [`RequestError::Closed`](crate::RequestError::Closed)),
//! answers every request accepted before the close, delivers the newest snapshot, and hands
//! the server back. Dropping the `Runner` does the same and then drops the server, closing its
//! request side for good.
//!
//! # Faults
//!
//! A connection that fails or panics is removed (and handed back by
//! [`QueueServer::take_failed`]); the poller carries on. Any other panic in the server's work
//! (in the [`IDict`], its keys or the [`Clock`]: see [`fault`](crate::fault)) stops the
//! poller: it gives up rather than run into the same panic again. It closes the request side,
//! [abandons](QueueServer::abandon_requests) every pending request (each connection is told,
//! so that whoever waits for an answer stops waiting), and keeps the server, whose
//! [`Publisher::wants_update`](crate::Publisher::wants_update) is now false, for `shutdown`,
//! which hands it back with the panic's message. Nothing the runner accepted is lost either
//! way.

use crate::clock::{Clock, NoClock};
use crate::connection::{Connection, ConnectionId};
use crate::fault::{contain, PanicMessage};
use crate::idict::IDict;
use crate::log;
use crate::notify::{Notify, ThreadNotify};
use crate::server::{ConnectionsFull, QueueServer};
use crate::stats::Stats;
use crate::sync::thread;
use crate::sync::{lock, Arc, AtomicBool, Mutex, Ordering};
use core::fmt;
use core::time::Duration;
use std::sync::TryLockError;

#[derive(Clone, Copy)]
enum Drive {
    Notified,
    Every(Duration),
}

/// Why a runner's poller stopped without being asked to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum StopCause {
    /// A panic unwound out of the server's work: not a connection's (that only removes the
    /// connection), but the [`IDict`]'s, its keys' or the [`Clock`]'s. Its message, as far
    /// as it is known.
    Panicked(PanicMessage),
}

impl fmt::Display for StopCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Panicked(message) => write!(f, "the poller panicked: {message}"),
        }
    }
}

/// A runner that could not start: why, and the server, handed back.
pub enum StartError<S> {
    /// [`Runner::every`] was given a zero period: it would poll without pause, a core
    /// spinning on an idle server. Give a period, or use [`Runner::notified`].
    ZeroPeriod(S),
    /// The thread could not be spawned.
    Spawn(std::io::Error, S),
}

impl<S> StartError<S> {
    /// The server, to use otherwise.
    pub fn into_server(self) -> S {
        match self {
            Self::ZeroPeriod(server) | Self::Spawn(_, server) => server,
        }
    }
}

impl<S> fmt::Debug for StartError<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroPeriod(_) => f.write_str("ZeroPeriod(..)"),
            Self::Spawn(error, _) => f.debug_tuple("Spawn").field(error).finish(),
        }
    }
}

impl<S> fmt::Display for StartError<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroPeriod(_) => f.write_str("a runner's period must not be zero"),
            Self::Spawn(error, _) => write!(f, "cannot spawn the poller thread: {error}"),
        }
    }
}

impl<S> std::error::Error for StartError<S> {}

/// Why [`Runner::add_connection`] did not attach a connection; it comes back.
pub enum AddError<C> {
    /// Every slot is taken (or retired).
    Full(C),
    /// The poller has stopped.
    Stopped(C),
}

impl<C> AddError<C> {
    /// The connection that was not attached.
    pub fn into_connection(self) -> C {
        match self {
            Self::Full(connection) | Self::Stopped(connection) => connection,
        }
    }
}

impl<C> fmt::Debug for AddError<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Full(_) => "Full(..)",
            Self::Stopped(_) => "Stopped(..)",
        })
    }
}

impl<C> fmt::Display for AddError<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Full(_) => "every connection slot is taken",
            Self::Stopped(_) => "the poller has stopped",
        })
    }
}

impl<C> std::error::Error for AddError<C> {}

/// Why [`Runner::remove_connection`] did not hand a connection back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoveError {
    /// No connection with this id is attached.
    NotAttached,
    /// The poller has stopped (its connections come back with the server, from
    /// [`Runner::shutdown`]).
    Stopped,
}

impl fmt::Display for RemoveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotAttached => "no such connection",
            Self::Stopped => "the poller has stopped",
        })
    }
}

impl std::error::Error for RemoveError {}

/// The poller stopped before [`Runner::shutdown`] asked it to: why, and the server, handed
/// back all the same (its stats and connections included; its request side closed, every
/// request it had accepted answered or abandoned).
pub struct Crashed<S> {
    /// The server.
    pub server: S,
    /// Why the poller stopped.
    pub cause: StopCause,
}

impl<S> fmt::Debug for Crashed<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Crashed")
            .field("cause", &self.cause)
            .finish_non_exhaustive()
    }
}

impl<S> fmt::Display for Crashed<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.cause, f)
    }
}

impl<S> std::error::Error for Crashed<S> {}

/// What [`Runner::shutdown`] returns: the server, or why the poller had stopped and the
/// server.
type Shutdown<S> = Result<S, Crashed<S>>;

/// A change of connections, for the poller to make.
enum Command<C> {
    Add(C),
    Remove(ConnectionId),
}

/// The poller's answer to a [`Command`].
enum Reply<C> {
    Added(Result<ConnectionId, ConnectionsFull<C>>),
    Removed(Option<C>),
    /// The poller had stopped: the command comes back.
    Stopped(Command<C>),
}

/// The one-place mailbox of commands.
struct Mailbox<C> {
    /// Whether the poller still takes commands.
    open: bool,
    /// A command, and the thread to wake with the answer.
    posted: Option<(Command<C>, thread::Thread)>,
}

/// What the runner's handle and its poller share.
struct Shared<C> {
    /// Set by `shutdown` (or drop): the poller stops after its current cycle.
    stop: AtomicBool,
    /// Cleared by the poller once it has stopped, after `cause`.
    running: AtomicBool,
    /// Why the poller stopped by itself. Written by the poller before it clears `running`;
    /// read only after, so the poller never waits for a reader.
    cause: Mutex<Option<StopCause>>,
    /// The server's stats as of the poller's last cycle; the poller holds the input.
    stats: Mutex<triple_buffer::Output<Stats>>,
    /// Held by the caller whose command is in the mailbox or being answered.
    turn: Mutex<()>,
    mailbox: Mutex<Mailbox<C>>,
    /// The poller's answer, written before `replied` is set; read only after.
    reply: Mutex<Option<Reply<C>>>,
    replied: AtomicBool,
}

/// A poller thread that owns a [`QueueServer`] until [`shutdown`](Self::shutdown), and
/// the handle to talk to it from any thread.
///
/// A typical set-up names only the IDict and the connection types: the other parameters
/// default to a runner woken by notification ([`ThreadNotify`]), no clock, a 64-request
/// queue and 8 connection slots, as [`Builder`](crate::Builder) makes them.
///
/// ```
/// use queueserver::{Builder, Connection, ConnectionError, Response, Runner, Snapshot, ThreadNotify};
/// use std::collections::BTreeMap;
///
/// type State = BTreeMap<&'static str, f64>;
///
/// struct Log;
/// impl Connection<State> for Log {
///     fn on_update(&mut self, s: &Snapshot<State>) -> Result<(), ConnectionError> { Ok(()) }
///     fn on_response(&mut self, _: Response<'_, State>) -> Result<(), ConnectionError> { Ok(()) }
/// }
///
/// struct App {
///     runner: Runner<State, Log>,
/// }
///
/// let (mut publisher, server) = Builder::new(State::from([("x", 0.0)]))
///     .notify(ThreadNotify::new())
///     .build()
///     .unwrap();
/// let app = App { runner: Runner::notified(server).unwrap() };
/// let id = app.runner.add_connection(Log).unwrap();
/// publisher.put_update(&State::from([("x", 1.0)]));
/// assert!(app.runner.is_running());
/// let server = app.runner.shutdown().unwrap();
/// assert!(server.is_attached(id));
/// assert_eq!(server.stats().updates_published, 1);
/// ```
pub struct Runner<
    D: IDict,
    C,
    N = ThreadNotify,
    T = NoClock,
    const Q: usize = 64,
    const MAXC: usize = 8,
> {
    shared: Arc<Shared<C>>,
    poller: thread::Thread,
    /// Taken by `shutdown` or drop.
    handle: Option<thread::JoinHandle<QueueServer<D, C, N, T, Q, MAXC>>>,
}

impl<D, C, T, const Q: usize, const MAXC: usize> Runner<D, C, ThreadNotify, T, Q, MAXC>
where
    D: IDict + Sync + 'static,
    C: Connection<D> + Send + 'static,
    T: Clock + Send + 'static,
{
    /// Runs the poller on a new thread that sleeps until the server's [`ThreadNotify`]
    /// hook wakes it (or a rate limit becomes due, or a control call arrives). The hook is
    /// bound to that thread while it runs.
    ///
    /// # Errors
    ///
    /// [`StartError::Spawn`] if the thread cannot be spawned; the server comes back.
    // The error hands the server back, no larger than the runner's server itself.
    #[allow(clippy::result_large_err)]
    pub fn notified(
        server: QueueServer<D, C, ThreadNotify, T, Q, MAXC>,
    ) -> Result<Self, StartError<QueueServer<D, C, ThreadNotify, T, Q, MAXC>>> {
        Self::spawn(
            server,
            Drive::Notified,
            |server| server.notifier().bind(thread::current()),
            |server| server.notifier().unbind(),
        )
    }
}

impl<D, C, N, T, const Q: usize, const MAXC: usize> Runner<D, C, N, T, Q, MAXC>
where
    D: IDict + Sync + 'static,
    C: Connection<D> + Send + 'static,
    N: Notify + 'static,
    T: Clock + Send + 'static,
{
    /// Runs the poller on a new thread that polls every `period` (any hook), and at once
    /// when a control call arrives.
    ///
    /// A period shorter than the operating system's timer resolution polls about as often
    /// as that resolution allows.
    ///
    /// # Errors
    ///
    /// [`StartError::ZeroPeriod`] for a zero `period`; [`StartError::Spawn`] if the thread
    /// cannot be spawned. Either way the server comes back.
    // The error hands the server back, no larger than the runner's server itself.
    #[allow(clippy::result_large_err)]
    pub fn every(
        server: QueueServer<D, C, N, T, Q, MAXC>,
        period: Duration,
    ) -> Result<Self, StartError<QueueServer<D, C, N, T, Q, MAXC>>> {
        if period.is_zero() {
            return Err(StartError::ZeroPeriod(server));
        }
        Self::spawn(server, Drive::Every(period), |_| {}, |_| {})
    }

    #[allow(clippy::result_large_err)]
    fn spawn(
        server: QueueServer<D, C, N, T, Q, MAXC>,
        drive: Drive,
        on_start: fn(&QueueServer<D, C, N, T, Q, MAXC>),
        on_stop: fn(&QueueServer<D, C, N, T, Q, MAXC>),
    ) -> Result<Self, StartError<QueueServer<D, C, N, T, Q, MAXC>>> {
        let (stats_in, stats_out) = triple_buffer::triple_buffer(&server.stats());
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            running: AtomicBool::new(true),
            cause: Mutex::new(None),
            stats: Mutex::new(stats_out),
            turn: Mutex::new(()),
            mailbox: Mutex::new(Mailbox {
                open: true,
                posted: None,
            }),
            reply: Mutex::new(None),
            replied: AtomicBool::new(false),
        });
        // The server reaches the thread through this slot, so that it can come back if the
        // thread cannot be spawned.
        let handoff = Arc::new(Mutex::new(Some(server)));
        let spawned = thread::spawn("queueserver-poller", {
            let (shared, handoff) = (Arc::clone(&shared), Arc::clone(&handoff));
            move || {
                let server = lock(&handoff).take();
                drop(handoff);
                let Some(server) = server else {
                    unreachable!("the server is handed over once, to this thread")
                };
                let poller = Poller {
                    server,
                    shared: &shared,
                    stats: stats_in,
                };
                poller.run(drive, on_start, on_stop)
            }
        });
        match spawned {
            Ok(handle) => Ok(Self {
                poller: handle.thread().clone(),
                shared,
                handle: Some(handle),
            }),
            Err(error) => match lock(&handoff).take() {
                Some(server) => Err(StartError::Spawn(error, server)),
                // The thread never ran, so it never took the server; kept for the types.
                None => unreachable!("a thread that was not spawned took the server"),
            },
        }
    }
}

impl<D, C, N, T, const Q: usize, const MAXC: usize> Runner<D, C, N, T, Q, MAXC>
where
    D: IDict,
    C: Connection<D>,
    N: Notify,
    T: Clock,
{
    /// The server's stats as of the poller's last cycle, or its last control call: after
    /// [`add_connection`](Self::add_connection) or
    /// [`remove_connection`](Self::remove_connection) returns, they show its effect.
    ///
    /// **Any thread.** Never waits for the poller (it waits only for another thread
    /// reading the stats at the same moment); no allocation.
    pub fn stats(&self) -> Stats {
        *lock(&self.shared.stats).read()
    }

    /// Whether the poller still runs. False once it has stopped by itself (see
    /// [`stopped`](Self::stopped)).
    pub fn is_running(&self) -> bool {
        self.shared.running.load(Ordering::Acquire)
    }

    /// Why the poller stopped by itself; `None` while it runs.
    pub fn stopped(&self) -> Option<StopCause> {
        if self.is_running() {
            return None;
        }
        // Written before `running` was cleared: the poller is done with it.
        *lock(&self.shared.cause)
    }

    /// Moves `connection` to the poller's thread and attaches it there; returns its id.
    ///
    /// **Any thread.** Blocks until the poller has attached it: up to a poller cycle (and
    /// behind other threads' control calls).
    ///
    /// # Errors
    ///
    /// Hands the connection back: [`AddError::Full`] when every slot is taken,
    /// [`AddError::Stopped`] when the poller has stopped.
    pub fn add_connection(&self, connection: C) -> Result<ConnectionId, AddError<C>> {
        match self.call(Command::Add(connection)) {
            Reply::Added(Ok(id)) => Ok(id),
            Reply::Added(Err(ConnectionsFull(connection))) => Err(AddError::Full(connection)),
            Reply::Stopped(Command::Add(connection)) => Err(AddError::Stopped(connection)),
            Reply::Removed(_) | Reply::Stopped(Command::Remove(_)) => {
                unreachable!("the poller answers an add with an add")
            }
        }
    }

    /// Detaches the connection `id` on the poller's thread and hands it back.
    ///
    /// **Any thread.** Blocks until the poller has detached it: up to a poller cycle (and
    /// behind other threads' control calls). Its queued requests are counted orphaned.
    ///
    /// # Errors
    ///
    /// [`RemoveError::NotAttached`] if no connection `id` is attached;
    /// [`RemoveError::Stopped`] when the poller has stopped.
    pub fn remove_connection(&self, id: ConnectionId) -> Result<C, RemoveError> {
        match self.call(Command::Remove(id)) {
            Reply::Removed(Some(connection)) => Ok(connection),
            Reply::Removed(None) => Err(RemoveError::NotAttached),
            Reply::Stopped(Command::Remove(_)) => Err(RemoveError::Stopped),
            Reply::Added(_) | Reply::Stopped(Command::Add(_)) => {
                unreachable!("the poller answers a removal with a removal")
            }
        }
    }

    /// Posts `command` for the poller and waits for its answer.
    fn call(&self, command: Command<C>) -> Reply<C> {
        let shared = &*self.shared;
        let _turn = lock(&shared.turn);
        // Relaxed: only the caller holding the turn and the poller touch it, and the
        // poller sets it only after taking the command posted (under the mailbox's lock)
        // below.
        shared.replied.store(false, Ordering::Relaxed);
        {
            let mut mailbox = lock(&shared.mailbox);
            if !mailbox.open {
                return Reply::Stopped(command);
            }
            mailbox.posted = Some((command, thread::current()));
        }
        // After the mailbox is unlocked: a poller that found it locked parks after its
        // `try_lock` failed, and this unpark makes that park return.
        self.poller.unpark();
        loop {
            // Acquire: pairs with the poller's Release store, after it wrote the reply.
            if shared.replied.load(Ordering::Acquire) {
                if let Some(reply) = lock(&shared.reply).take() {
                    return reply;
                }
            }
            thread::park();
        }
    }

    /// Stops the poller: closes the request side, answers every request accepted before,
    /// delivers the newest snapshot, and returns the server (for its stats and connections).
    ///
    /// Blocks until the poller thread has finished. A requester pre-empted between being
    /// counted and enqueueing its request delays the return until it resumes.
    ///
    /// # Errors
    ///
    /// [`Crashed`] if the poller had stopped by itself ([`stopped`](Self::stopped)): the
    /// server comes back all the same, with why.
    // The error hands the server back, no larger than the server itself: boxing it would
    // only add an allocation.
    #[allow(clippy::result_large_err)]
    pub fn shutdown(mut self) -> Shutdown<QueueServer<D, C, N, T, Q, MAXC>> {
        let Some(handle) = self.stop() else {
            unreachable!("only shutdown and drop take the thread, and they take the runner")
        };
        match handle.join() {
            Ok(server) => match self.stopped() {
                None => Ok(server),
                Some(cause) => Err(Crashed { server, cause }),
            },
            // The poller catches every panic of the server's work; one of its own would
            // be a bug, and is passed on.
            Err(payload) => std::panic::resume_unwind(payload),
        }
    }

    /// Asks the poller to stop and wakes it; the thread's handle, if not taken before.
    fn stop(&mut self) -> Option<thread::JoinHandle<QueueServer<D, C, N, T, Q, MAXC>>> {
        let handle = self.handle.take()?;
        // Release: pairs with the poller's Acquire load.
        self.shared.stop.store(true, Ordering::Release);
        self.poller.unpark();
        Some(handle)
    }
}

/// Stops the poller as [`shutdown`](Runner::shutdown) does, waits for its thread, and drops
/// the server (closing its request side for good: see [`QueueServer`]'s `Drop`).
impl<D: IDict, C, N, T, const Q: usize, const MAXC: usize> Drop for Runner<D, C, N, T, Q, MAXC> {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            self.shared.stop.store(true, Ordering::Release);
            self.poller.unpark();
            // The thread's server, or a panic of the poller's own, is dropped here.
            drop(handle.join());
        }
    }
}

impl<D: IDict, C, N, T, const Q: usize, const MAXC: usize> fmt::Debug
    for Runner<D, C, N, T, Q, MAXC>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner")
            .field("running", &self.shared.running.load(Ordering::Acquire))
            .finish_non_exhaustive()
    }
}

/// The poller thread's state.
struct Poller<'a, D: IDict, C, N, T, const Q: usize, const MAXC: usize> {
    server: QueueServer<D, C, N, T, Q, MAXC>,
    shared: &'a Shared<C>,
    stats: triple_buffer::Input<Stats>,
}

impl<D, C, N, T, const Q: usize, const MAXC: usize> Poller<'_, D, C, N, T, Q, MAXC>
where
    D: IDict,
    C: Connection<D>,
    N: Notify,
    T: Clock,
{
    /// Serves until asked to stop or until a panic of the server's work, then stops
    /// without losing a request and returns the server.
    fn run(
        mut self,
        drive: Drive,
        on_start: fn(&QueueServer<D, C, N, T, Q, MAXC>),
        on_stop: fn(&QueueServer<D, C, N, T, Q, MAXC>),
    ) -> QueueServer<D, C, N, T, Q, MAXC> {
        on_start(&self.server);
        let mut cause = self.serve(drive);
        // No more commands: a caller posting now gets its command back.
        let posted = {
            let mut mailbox = lock(&self.shared.mailbox);
            mailbox.open = false;
            mailbox.posted.take()
        };
        if let Some((command, caller)) = posted {
            self.answer(Reply::Stopped(command), caller);
        }
        let server = &mut self.server;
        server.close();
        if cause.is_none() {
            // Asked to stop: answer every request accepted before the close.
            while server.pending_requests() > 0 {
                if let Err(message) = contain(|| server.process_requests()) {
                    cause = Some(StopCause::Panicked(message));
                    break;
                }
                if server.pending_requests() > 0 {
                    thread::yield_now();
                }
            }
            if cause.is_none() {
                if let Err(message) = contain(|| server.process_updates()) {
                    cause = Some(StopCause::Panicked(message));
                }
            }
        }
        if cause.is_some() {
            // Gave up: tell whoever waits for an answer that none will come. Each panic
            // in there settles at least the request it came from, so this ends.
            while server.pending_requests() > 0 {
                let _ = contain(|| server.abandon_requests());
                if server.pending_requests() > 0 {
                    thread::yield_now();
                }
            }
        }
        server.stop();
        on_stop(server);
        self.stats.write(self.server.stats());
        if let Some(cause) = cause {
            log::warning!("poller stopped: {}", cause);
        }
        *lock(&self.shared.cause) = cause;
        // Release: `stopped` reads the cause after an Acquire load of `running`.
        self.shared.running.store(false, Ordering::Release);
        self.server
    }

    /// Polls until asked to stop (`None`) or until a panic of the server's work.
    fn serve(&mut self, drive: Drive) -> Option<StopCause> {
        loop {
            self.control();
            let server = &mut self.server;
            let done = match contain(|| server.poll()) {
                Ok(done) => done,
                Err(message) => return Some(StopCause::Panicked(message)),
            };
            self.stats.write(self.server.stats());
            // Acquire: pairs with `shutdown`'s Release store.
            if self.shared.stop.load(Ordering::Acquire) {
                return None;
            }
            match drive {
                Drive::Every(period) => thread::park_timeout(period),
                // A notification (or a control call) after `poll` began has unparked us
                // already: `park` returns at once. One before it was handled by `poll`.
                Drive::Notified => match done.retry_after {
                    Some(wait) => thread::park_timeout(wait),
                    None => thread::park(),
                },
            }
        }
    }

    /// Carries out the command in the mailbox, if there is one. Never waits: a caller
    /// holding the mailbox is posting, and wakes the poller when done.
    fn control(&mut self) {
        let posted = match self.shared.mailbox.try_lock() {
            Ok(mut mailbox) => mailbox.posted.take(),
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner().posted.take(),
            Err(TryLockError::WouldBlock) => None,
        };
        let Some((command, caller)) = posted else {
            return;
        };
        // Connections' panics are caught by the server: these return.
        let reply = match command {
            Command::Add(connection) => Reply::Added(self.server.add_connection(connection)),
            Command::Remove(id) => Reply::Removed(self.server.remove_connection(id)),
        };
        // The caller's next `stats` shows what it changed.
        self.stats.write(self.server.stats());
        self.answer(reply, caller);
    }

    /// Hands `reply` to the caller waiting on it.
    fn answer(&self, reply: Reply<C>, caller: thread::Thread) {
        // Never contended: the caller locks the reply only once `replied` is set.
        *lock(&self.shared.reply) = Some(reply);
        // Release: the reply is written before the caller, reading `true`, takes it.
        self.shared.replied.store(true, Ordering::Release);
        caller.unpark();
    }
}

//! [`Runner`] (std): drives the poller on its own thread.
//!
//! Two ways to wake it: by notification ([`Runner::notified`], with a [`ThreadNotify`]
//! hook: the thread parks until a publish or request unparks it, or a rate limit is due),
//! or by interval ([`Runner::every`], with any hook: it polls at a fixed period).
//!
//! [`Runner::shutdown`] stops the thread without losing a request: it closes the request
//! side (later `put_request` calls get [`RequestError::Closed`](crate::RequestError::Closed)),
//! answers every request accepted before the close, and hands the server back.

use crate::clock::Clock;
use crate::connection::Connection;
use crate::idict::IDict;
use crate::notify::{Notify, ThreadNotify};
use crate::server::QueueServer;
use crate::sync::thread;
use crate::sync::{Arc, AtomicBool, Ordering};
use core::fmt;
use core::time::Duration;

#[derive(Clone, Copy)]
enum Drive {
    Notified,
    Every(Duration),
}

/// A poller thread that owns a [`QueueServer`] until [`shutdown`](Self::shutdown).
pub struct Runner<D: IDict, C, N, T, const Q: usize, const MAXC: usize> {
    stop: Arc<AtomicBool>,
    thread: thread::Thread,
    handle: thread::JoinHandle<QueueServer<D, C, N, T, Q, MAXC>>,
}

impl<D, C, T, const Q: usize, const MAXC: usize> Runner<D, C, ThreadNotify, T, Q, MAXC>
where
    D: IDict + Sync + 'static,
    C: Connection<D> + Send + 'static,
    T: Clock + Send + 'static,
{
    /// Runs the poller on a new thread that sleeps until the server's [`ThreadNotify`]
    /// hook wakes it (or a rate limit becomes due).
    ///
    /// # Errors
    ///
    /// The error of `std::thread::Builder::spawn`.
    pub fn notified(server: QueueServer<D, C, ThreadNotify, T, Q, MAXC>) -> std::io::Result<Self> {
        Self::spawn(server, Drive::Notified, |server| {
            server.notifier().bind(thread::current());
        })
    }
}

impl<D, C, N, T, const Q: usize, const MAXC: usize> Runner<D, C, N, T, Q, MAXC>
where
    D: IDict + Sync + 'static,
    C: Connection<D> + Send + 'static,
    N: Notify + 'static,
    T: Clock + Send + 'static,
{
    /// Runs the poller on a new thread that polls every `period` (any hook).
    ///
    /// # Errors
    ///
    /// The error of `std::thread::Builder::spawn`.
    pub fn every(
        server: QueueServer<D, C, N, T, Q, MAXC>,
        period: Duration,
    ) -> std::io::Result<Self> {
        Self::spawn(server, Drive::Every(period), |_| {})
    }

    fn spawn(
        server: QueueServer<D, C, N, T, Q, MAXC>,
        drive: Drive,
        on_start: fn(&QueueServer<D, C, N, T, Q, MAXC>),
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = thread::spawn("queueserver-poller", move || {
            on_start(&server);
            run(server, &flag, drive)
        })?;
        Ok(Self {
            stop,
            thread: handle.thread().clone(),
            handle,
        })
    }

    /// Stops the poller: closes the request side, answers every request accepted before,
    /// and returns the server (for its stats and connections).
    ///
    /// Blocks until the poller thread has finished. A requester pre-empted between being
    /// counted and enqueueing its request delays the return until it resumes.
    ///
    /// # Errors
    ///
    /// The panic payload, if a connection panicked on the poller thread.
    pub fn shutdown(self) -> std::thread::Result<QueueServer<D, C, N, T, Q, MAXC>> {
        // Release: pairs with the poller's Acquire load.
        self.stop.store(true, Ordering::Release);
        self.thread.unpark();
        self.handle.join()
    }
}

fn run<D, C, N, T, const Q: usize, const MAXC: usize>(
    mut server: QueueServer<D, C, N, T, Q, MAXC>,
    stop: &AtomicBool,
    drive: Drive,
) -> QueueServer<D, C, N, T, Q, MAXC>
where
    D: IDict,
    C: Connection<D>,
    N: Notify,
    T: Clock,
{
    loop {
        let done = server.poll();
        // Acquire: pairs with `shutdown`'s Release store.
        if stop.load(Ordering::Acquire) {
            break;
        }
        match drive {
            Drive::Every(period) => thread::park_timeout(period),
            // A notification after `poll` began has unparked us already: `park` returns
            // at once. One before it was handled by `poll`.
            Drive::Notified => match done.retry_after {
                Some(wait) => thread::park_timeout(wait),
                None => thread::park(),
            },
        }
    }
    server.close();
    while server.pending_requests() > 0 {
        let _ = server.process_requests();
        if server.pending_requests() > 0 {
            thread::yield_now();
        }
    }
    let _ = server.process_updates();
    server
}

impl<D: IDict, C, N, T, const Q: usize, const MAXC: usize> fmt::Debug
    for Runner<D, C, N, T, Q, MAXC>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner").finish_non_exhaustive()
    }
}

//! [`Publisher`]: the computation's side of the server.
//!
//! The computation owns the only `Publisher` (one producer, enforced by ownership). Its two
//! operations are the only ones the crate runs on the computation's thread:
//!
//! | operation | guarantee |
//! |---|---|
//! | [`put_update`](Publisher::put_update) | wait-free: one in-place copy ([`IDict::copy_from`]), one atomic swap to publish, and the [`Notify`] hook when that swap finds the last snapshot taken. No allocation, lock, syscall, log or panic of its own. |
//! | [`wants_update`](Publisher::wants_update) | one relaxed atomic load |

use crate::idict::IDict;
use crate::notify::{NoNotify, Notify};
use crate::signal::Signals;
use crate::snapshot::Snapshot;
use crate::sync::Arc;
use core::fmt;

/// Publishes snapshots of the computation's IDict. `Send`, not `Clone`.
///
/// `N` is the server's notify hook: [`NoNotify`] unless the server was built with another.
///
/// Obtained with the server from [`QueueServer::new`](crate::QueueServer::new) or
/// [`Builder::build`](crate::Builder::build). There is only ever one: it cannot be cloned,
/// so the single-producer rule of the triple buffer holds by construction.
///
/// ```compile_fail
/// # use queueserver::{Connection, ConnectionError, QueueServer, Response, Snapshot};
/// # use std::collections::BTreeMap;
/// # type D = BTreeMap<u8, f64>;
/// # struct Nobody;
/// # impl Connection<D> for Nobody {
/// #     fn on_update(&mut self, _: &Snapshot<D>) -> Result<(), ConnectionError> { Ok(()) }
/// #     fn on_response(&mut self, _: Response<'_, D>) -> Result<(), ConnectionError> { Ok(()) }
/// # }
/// let (publisher, _server) = QueueServer::<BTreeMap<u8, f64>, Nobody>::new(BTreeMap::new());
/// let second = publisher.clone(); // error: `Publisher` is not `Clone`
/// ```
///
/// It moves to the computation's thread:
///
/// ```
/// # use queueserver::{Connection, ConnectionError, QueueServer, Response, Snapshot};
/// # use std::collections::BTreeMap;
/// # type D = BTreeMap<u8, f64>;
/// # struct Nobody;
/// # impl Connection<D> for Nobody {
/// #     fn on_update(&mut self, _: &Snapshot<D>) -> Result<(), ConnectionError> { Ok(()) }
/// #     fn on_response(&mut self, _: Response<'_, D>) -> Result<(), ConnectionError> { Ok(()) }
/// # }
/// let (mut publisher, mut server) = QueueServer::<D, Nobody>::new(BTreeMap::from([(0, 0.0)]));
/// std::thread::spawn(move || {
///     for i in 0..1000 {
///         publisher.put_update(&BTreeMap::from([(0, f64::from(i))]));
///     }
/// })
/// .join()
/// .unwrap();
/// server.poll();
/// assert_eq!(server.snapshot().seq(), 1000);
/// ```
pub struct Publisher<D: IDict, N = NoNotify> {
    input: triple_buffer::Input<Snapshot<D>>,
    seq: u64,
    signals: Arc<Signals<N>>,
}

impl<D: IDict, N: Notify> Publisher<D, N> {
    pub(crate) fn new(input: triple_buffer::Input<Snapshot<D>>, signals: Arc<Signals<N>>) -> Self {
        Self {
            input,
            seq: 0,
            signals,
        }
    }

    /// Publishes a copy of `idict` (`mmf.async`'s `put_update`).
    ///
    /// **Computation.** Wait-free: copies `idict` into the triple buffer's back buffer with
    /// [`IDict::copy_from`] (no allocation when that copy allocates nothing), publishes it
    /// with one atomic swap, and calls the [`Notify`] hook if that swap found the last
    /// snapshot taken by the poller: one notification per snapshot the poller takes,
    /// however many publishes come in between. A snapshot the poller has not taken yet is
    /// overwritten, never queued; the poller counts it in
    /// [`Stats::updates_overwritten`](crate::Stats::updates_overwritten).
    ///
    /// If [`IDict::copy_from`] panics, nothing is published and no sequence number is used
    /// up: the half-written back buffer is overwritten by the next publish, and the poller
    /// sees no gap.
    #[inline]
    pub fn put_update(&mut self, idict: &D) {
        // The number is taken before the copy and written with it, so that nothing but the
        // copy itself lives across a copy that calls out (`memcpy`): no register to save,
        // no load after the call. A copy that unwinds hands the number back (the guard);
        // where panics abort the guard compiles to nothing.
        let back = self.input.input_buffer_mut();
        self.seq += 1;
        let seq = Unused(&mut self.seq);
        back.set_seq(*seq.0);
        back.data_mut().copy_from(idict);
        core::mem::forget(seq);
        // `publish` returns false when its swap found the back buffer clean: the poller took
        // the last snapshot, so this one is news, and the hook is told, after the swap that
        // made it visible. It returns true when it replaced a snapshot the poller has not
        // taken: the first publish since the poller's last take found the buffer clean and
        // told the hook, so the poller takes again after that; its take swaps the same
        // atomic as our publish, so it comes after this publish in that atomic's order (and
        // takes it), or a publish since told the hook again. The buffer's dirty bit is the
        // pending flag: no atomic operation of our own.
        if !self.input.publish() {
            self.signals.notify_update();
        }
    }

    /// Whether anyone needs a new snapshot: a connection subscribes to updates, or a
    /// request waits for its answer.
    ///
    /// **Computation.** One relaxed atomic load. A loop may skip `put_update` while this
    /// is false. The answer may be stale by the time it is used: a request accepted just
    /// after the load is answered from the last snapshot published. False for good once
    /// the server is dropped (or its [`Runner`](crate::Runner)'s poller has stopped).
    #[inline]
    pub fn wants_update(&self) -> bool {
        self.signals.wants_update()
    }

    /// How many snapshots this publisher has published: the sequence number of the last.
    pub fn published(&self) -> u64 {
        self.seq
    }

    /// The notify hook, shared with the server.
    pub fn notifier(&self) -> &N {
        self.signals.notifier()
    }
}

/// A sequence number taken for a publish whose copy has not returned yet: given back if
/// the copy unwinds, forgotten once it returns.
struct Unused<'a>(&'a mut u64);

impl Drop for Unused<'_> {
    fn drop(&mut self) {
        *self.0 -= 1;
    }
}

impl<D: IDict, N> fmt::Debug for Publisher<D, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("published", &self.seq)
            .finish_non_exhaustive()
    }
}

//! [`Publisher`]: the computation's side of the server.
//!
//! The computation owns the only `Publisher` (one producer, enforced by ownership). Its two
//! operations are the only ones the crate runs on the computation's thread:
//!
//! | operation | guarantee |
//! |---|---|
//! | [`put_update`](Publisher::put_update) | wait-free: one in-place copy ([`IDict::copy_from`]), one atomic swap to publish, one atomic swap of the pending flag, and the [`Notify`] hook when that flag was clear. No allocation, lock, syscall, log or panic of its own. |
//! | [`wants_update`](Publisher::wants_update) | one relaxed atomic load |

use crate::idict::IDict;
use crate::notify::{Event, NoNotify, Notify};
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

    /// Publishes a copy of `idict` (the seed's `put_update`).
    ///
    /// **Computation.** Wait-free: copies `idict` into the triple buffer's back buffer with
    /// [`IDict::copy_from`] (no allocation when that copy allocates nothing), publishes it
    /// with one atomic swap, and, unless it replaced a snapshot the poller has not taken
    /// yet, marks an update pending (one more swap) and calls the [`Notify`] hook if no
    /// update was pending. A snapshot the poller has not taken yet is overwritten, never
    /// queued; the poller counts it in
    /// [`Stats::updates_overwritten`](crate::Stats::updates_overwritten).
    ///
    /// If [`IDict::copy_from`] panics, nothing is published and no sequence number is used
    /// up: the half-written back buffer is overwritten by the next publish, and the poller
    /// sees no gap.
    #[inline]
    pub fn put_update(&mut self, idict: &D) {
        // Where a panic can unwind out of the copy, the number is taken once the copy has
        // returned, so that a copy that panics uses none up. Where panics abort, nothing
        // returns from a panicking copy, and the number is taken first: the same
        // instructions, in the order the compiler makes the least of on a Cortex-M (two
        // instructions fewer at opt-level "s"); on x86-64 both orders compile to as many.
        #[cfg(not(panic = "abort"))]
        {
            let back = self.input.input_buffer_mut();
            back.data_mut().copy_from(idict);
            self.seq += 1;
            back.set_seq(self.seq);
        }
        #[cfg(panic = "abort")]
        {
            self.seq += 1;
            let back = self.input.input_buffer_mut();
            back.set_seq(self.seq);
            back.data_mut().copy_from(idict);
        }
        // `publish` returns true when it replaced a snapshot the poller has not taken.
        // The publish that made the back buffer dirty then raised the update flag (below),
        // and the poller has either not cleared the flag since, or cleared it and not yet
        // taken the buffer. Either way the poller takes the buffer again after an Acquire
        // clear that saw that raise, so it finds the buffer dirty, and its take (a swap)
        // comes after this publish in the buffer's modification order: it takes this
        // snapshot. A raise would only repeat that notification, so it is skipped, and a
        // loop that outruns its poller pays one atomic swap per publish.
        if !self.input.publish() {
            self.signals.raise(Event::Update);
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

impl<D: IDict, N> fmt::Debug for Publisher<D, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("published", &self.seq)
            .finish_non_exhaustive()
    }
}

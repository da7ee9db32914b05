//! What the benchmarks share: a snapshot of a chosen size, a connection that consumes what
//! it receives, a busy thread on the other core, and the criterion settings.

#![allow(dead_code)]

use criterion::Criterion;
use queueserver::{Connection, ConnectionError, IDict, Response, Snapshot};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// A snapshot of `W` 64-bit words (`8 * W` bytes). Key `i` reads word `i`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Blob<const W: usize>(pub [u64; W]);

impl<const W: usize> Blob<W> {
    /// Words `seed, seed + 1, ...`.
    pub fn new(seed: u64) -> Self {
        let mut words = [0; W];
        for (i, w) in words.iter_mut().enumerate() {
            *w = seed.wrapping_add(i as u64);
        }
        Self(words)
    }

    /// The size in bytes, for group names.
    pub const BYTES: usize = 8 * W;
}

impl<const W: usize> IDict for Blob<W> {
    type Key = u16;
    type Value = u64;

    fn get(&self, key: &u16) -> Option<u64> {
        self.0.get(usize::from(*key)).copied()
    }
}

/// A connection that copies each snapshot it is pushed (as a consumer that forwards it
/// would) and reads each answer.
#[derive(Clone, Copy)]
pub struct Sink<const W: usize> {
    pub subscribed: bool,
    pub last: Blob<W>,
}

impl<const W: usize> Sink<W> {
    pub fn subscriber() -> Self {
        Self {
            subscribed: true,
            last: Blob([0; W]),
        }
    }

    pub fn requester() -> Self {
        Self {
            subscribed: false,
            last: Blob([0; W]),
        }
    }
}

impl<const W: usize> Connection<Blob<W>> for Sink<W> {
    fn on_update(&mut self, snapshot: &Snapshot<Blob<W>>) -> Result<(), ConnectionError> {
        self.last = **snapshot;
        black_box(&self.last);
        Ok(())
    }

    fn on_response(&mut self, response: Response<'_, Blob<W>>) -> Result<(), ConnectionError> {
        black_box(response);
        Ok(())
    }

    fn wants_updates(&self) -> bool {
        self.subscribed
    }
}

/// Pins the calling thread to core `index` (modulo the cores there are); a no-op where
/// pinning is not supported.
pub fn pin(index: usize) {
    // `get_core_ids` lists the cores the *calling thread* may run on, so it is read once,
    // before any thread is pinned: a thread spawned by a pinned one would see one core.
    static CORES: OnceLock<Vec<core_affinity::CoreId>> = OnceLock::new();
    let cores = CORES.get_or_init(|| core_affinity::get_core_ids().unwrap_or_default());
    if !cores.is_empty() {
        core_affinity::set_for_current(cores[index % cores.len()]);
    }
}

/// A thread spinning on `step` on core 1 (the measuring thread is on core 0) until
/// dropped.
pub struct Busy {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<u64>>,
}

impl Busy {
    pub fn spawn<F: FnMut() + Send + 'static>(mut step: F) -> Self {
        pin(0);
        let stop = Arc::new(AtomicBool::new(false));
        let started = Arc::new(AtomicBool::new(false));
        let handle = thread::spawn({
            let (stop, started) = (Arc::clone(&stop), Arc::clone(&started));
            move || {
                pin(1);
                started.store(true, Ordering::Release);
                let mut steps = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    step();
                    steps += 1;
                }
                steps
            }
        });
        while !started.load(Ordering::Acquire) {
            thread::yield_now();
        }
        Self {
            stop,
            handle: Some(handle),
        }
    }
}

impl Busy {
    /// Stops the thread and returns how many steps it ran.
    pub fn stop(mut self) -> u64 {
        self.join()
    }

    fn join(&mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let Some(handle) = self.handle.take() else {
            return 0;
        };
        let steps = handle.join().expect("the busy thread panicked");
        assert!(steps > 0, "the busy thread never ran");
        steps
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.join();
    }
}

/// Short warm-up and measurement so that the whole suite runs in a few minutes on two
/// cores; command-line flags still override these.
pub fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30)
        .configure_from_args()
}

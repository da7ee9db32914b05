//! One timer for the whole process: wakes a task at a deadline.
//!
//! An async ask's future only has its task's `Waker`; nothing would poll it at its deadline
//! unless something wakes it then. Every [`Client`](crate::Client) of the process shares one
//! timer thread for that: [`Timer::shared`] hands out the running one, or starts it; the
//! thread sleeps until the earliest alarm and is stopped and joined when the last holder
//! (the last client that made an async ask) lets it go. An alarm is withdrawn when dropped.

use crate::sync::{lock, Condvar, Mutex, MutexGuard};
use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, Weak};
use std::task::Waker;
use std::thread::JoinHandle;
use std::time::Instant;

#[derive(Default)]
struct State {
    alarms: BTreeMap<(Instant, u64), Waker>,
    next_id: u64,
    stop: bool,
}

/// What the timer thread and the alarms share.
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The thread's loop: wakes the alarms that are due, sleeps until the next, until told
    /// to stop.
    fn run(&self) {
        let mut state = self.state();
        loop {
            if state.stop {
                return;
            }
            let now = Instant::now();
            let mut due = Vec::new();
            while let Some(entry) = state.alarms.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                due.push(entry.remove());
            }
            if !due.is_empty() {
                drop(state);
                for waker in due {
                    waker.wake();
                }
                state = self.state();
                continue;
            }
            state = match state.alarms.first_key_value() {
                Some((&(at, _), _)) => {
                    self.changed
                        .wait_timeout(state, at - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
    }
}

/// The process's timer thread, while someone holds it.
pub(crate) struct Timer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// The timer running now, if any holder keeps it.
static CURRENT: std::sync::Mutex<Weak<Timer>> = std::sync::Mutex::new(Weak::new());

impl Timer {
    /// The process's timer: the one running, or a new one.
    ///
    /// **Any thread.** A short lock; starts the thread when none runs.
    ///
    /// # Panics
    ///
    /// If the thread cannot be started (as `std::thread::spawn`).
    pub(crate) fn shared() -> Arc<Self> {
        let mut current = CURRENT.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(timer) = current.upgrade() {
            return timer;
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let thread = std::thread::Builder::new()
            .name("queueserver-timer".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || shared.run()
            })
            .expect("start the timer thread");
        let timer = Arc::new(Self {
            shared,
            thread: Some(thread),
        });
        *current = Arc::downgrade(&timer);
        timer
    }

    /// Wakes `waker` at `at` (or soon after), unless the returned alarm is dropped first.
    ///
    /// **Any thread.** A short lock; allocates the alarm's place.
    pub(crate) fn wake_at(&self, at: Instant, waker: &Waker) -> Alarm {
        let shared = &self.shared;
        let mut state = shared.state();
        let id = state.next_id;
        state.next_id += 1;
        let earliest = state
            .alarms
            .first_key_value()
            .map_or(true, |(&(t, _), _)| at < t);
        state.alarms.insert((at, id), waker.clone());
        drop(state);
        if earliest {
            shared.changed.notify_one();
        }
        Alarm {
            shared: Arc::clone(shared),
            key: (at, id),
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.shared.state().stop = true;
        self.shared.changed.notify_one();
        if let Some(thread) = self.thread.take() {
            // A waker run on the timer's own thread may drop the last holder: it ends by
            // itself then.
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

/// An alarm set with [`Timer::wake_at`]; dropping it withdraws it.
pub(crate) struct Alarm {
    shared: Arc<Shared>,
    key: (Instant, u64),
}

impl Alarm {
    /// When it rings.
    pub(crate) fn at(&self) -> Instant {
        self.key.0
    }
}

impl Drop for Alarm {
    fn drop(&mut self) {
        let removed = self.shared.state().alarms.remove(&self.key);
        // A waker's drop is foreign code: outside the lock.
        drop(removed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;
    use std::time::Duration;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn an_alarm_wakes_once_at_its_time_and_a_dropped_one_is_withdrawn() {
        let timer = Timer::shared();
        assert!(Arc::ptr_eq(&timer, &Timer::shared()), "one timer");
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let alarms = || timer.shared.state().alarms.len();
        let start = Instant::now();
        // Dropped long before its time (an hour: however slow the run, e.g. under Miri),
        // it is no longer the timer's.
        let dropped = timer.wake_at(start + Duration::from_secs(3600), &waker);
        assert_eq!(alarms(), 1);
        drop(dropped);
        assert_eq!(alarms(), 0, "withdrawn");
        let kept = timer.wake_at(start + Duration::from_millis(20), &waker);
        while count.0.load(Ordering::Relaxed) == 0 {
            assert!(start.elapsed() < Duration::from_secs(60), "never woken");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(
            start.elapsed() >= Duration::from_millis(20),
            "not before its time"
        );
        assert_eq!(alarms(), 0, "rung alarms leave the timer");
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(count.0.load(Ordering::Relaxed), 1, "once");
        drop(kept);
        drop(timer);
    }
}

//! One timer for the whole process: wakes a task at a deadline.
//!
//! An async ask's future only has its task's `Waker`; nothing would poll it at its deadline
//! unless something wakes it then. Every [`Client`](crate::Client) of the process shares
//! this one timer thread for that: it is started by the first alarm, sleeps until the
//! earliest one, and ends when it has had no alarm for a second (the next alarm starts it
//! again). An alarm is withdrawn when dropped.

use crate::sync::{lock, Condvar, Mutex, MutexGuard};
use std::collections::BTreeMap;
use std::sync::{OnceLock, PoisonError};
use std::task::Waker;
use std::time::{Duration, Instant};

/// How long the thread stays with no alarm before it ends.
const IDLE: Duration = Duration::from_secs(1);

#[derive(Default)]
struct State {
    alarms: BTreeMap<(Instant, u64), Waker>,
    next_id: u64,
    running: bool,
}

struct Timer {
    state: Mutex<State>,
    changed: Condvar,
}

fn timer() -> &'static Timer {
    static TIMER: OnceLock<Timer> = OnceLock::new();
    TIMER.get_or_init(|| Timer {
        state: Mutex::new(State::default()),
        changed: Condvar::new(),
    })
}

impl Timer {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The thread's loop: wakes the alarms that are due, sleeps until the next.
    fn run(&self) {
        let mut state = self.state();
        loop {
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
                None => {
                    let (next, timeout) = self
                        .changed
                        .wait_timeout(state, IDLE)
                        .unwrap_or_else(PoisonError::into_inner);
                    if timeout.timed_out() && next.alarms.is_empty() {
                        let mut next = next;
                        next.running = false;
                        return;
                    }
                    next
                }
            };
        }
    }
}

/// An alarm set with [`wake_at`]; dropping it withdraws it.
pub(crate) struct Alarm {
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
        let removed = timer().state().alarms.remove(&self.key);
        // A waker's drop is foreign code: outside the lock.
        drop(removed);
    }
}

/// Wakes `waker` at `at` (or soon after), from the process's timer thread, unless the
/// returned alarm is dropped first.
///
/// **Any thread.** A short lock; allocates the alarm's place; starts the timer thread if it
/// is not running.
///
/// # Panics
///
/// If the timer thread cannot be started (as `std::thread::spawn`).
pub(crate) fn wake_at(at: Instant, waker: &Waker) -> Alarm {
    let clock = timer();
    let mut state = clock.state();
    let id = state.next_id;
    state.next_id += 1;
    let earliest = state
        .alarms
        .first_key_value()
        .map_or(true, |(&(t, _), _)| at < t);
    state.alarms.insert((at, id), waker.clone());
    if !state.running {
        state.running = true;
        std::thread::Builder::new()
            .name("queueserver-timer".into())
            .spawn(|| timer().run())
            .expect("start the timer thread");
    } else if earliest {
        clock.changed.notify_one();
    }
    Alarm { key: (at, id) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn an_alarm_wakes_once_at_its_time_and_a_dropped_one_never() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let start = Instant::now();
        let kept = wake_at(start + Duration::from_millis(20), &waker);
        let dropped = wake_at(start + Duration::from_millis(10), &waker);
        drop(dropped);
        while count.0.load(Ordering::Relaxed) == 0 {
            assert!(start.elapsed() < Duration::from_secs(60), "never woken");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(start.elapsed() >= Duration::from_millis(20));
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        drop(kept);
    }
}

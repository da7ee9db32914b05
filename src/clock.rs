//! [`Clock`]: the poller's time source for rate limits.
//!
//! Rate limits ([`Config::min_update_interval`](crate::Config::min_update_interval),
//! [`Config::min_request_interval`](crate::Config::min_request_interval)) compare times read
//! from a `Clock`. Only the poller reads it. `no_std` users implement it over their timer;
//! std users take [`StdClock`]; tests take [`ManualClock`].
//!
//! A clock may go backwards: a reading earlier than the last one the poller kept counts as
//! "the interval has passed", so a wrapping tick counter (a 32-bit millisecond counter wraps
//! every 49.7 days) lets work through at once instead of holding it until the counter
//! catches up.

use core::cell::Cell;
use core::time::Duration;

/// A time source, read by the poller only.
///
/// It should be monotonic, but need not be: a reading earlier than the one a rate limit last
/// recorded counts as "the interval has passed" (the work goes through and the limit
/// restarts from the new reading). A wrapping tick counter is therefore a valid clock: at
/// each wrap, work held by a rate limit goes through at most one interval early.
pub trait Clock {
    /// Time since an arbitrary origin. See the trait's docs for a reading that goes back.
    fn now(&self) -> Duration;

    /// Whether this clock measures time at all. Only [`NoClock`] says no; the server then
    /// refuses a configuration with rate limits instead of never answering.
    fn is_running(&self) -> bool {
        true
    }
}

/// No time source: the default, for servers without rate limits.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoClock;

impl Clock for NoClock {
    fn now(&self) -> Duration {
        Duration::ZERO
    }

    fn is_running(&self) -> bool {
        false
    }
}

/// A clock moved by hand: for tests, simulations, and `no_std` loops that count ticks.
///
/// `Send` but not `Sync`: whoever owns it (usually the server, reached through
/// [`QueueServer::clock`](crate::QueueServer::clock)) advances it.
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    now: Cell<Duration>,
}

impl ManualClock {
    /// A clock at time zero.
    pub const fn new() -> Self {
        Self {
            now: Cell::new(Duration::ZERO),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.now.set(self.now.get().saturating_add(by));
    }

    /// Sets the clock to `to`, if that is not earlier than now; returns whether it moved.
    pub fn set(&self, to: Duration) -> bool {
        let moves = to >= self.now.get();
        if moves {
            self.now.set(to);
        }
        moves
    }

    /// Moves the clock back by `by` (not below zero), as a wrapping tick counter or a clock
    /// reset would: for testing how the rate limits take it (see [`Clock`]).
    pub fn rewind(&self, by: Duration) {
        self.now.set(self.now.get().saturating_sub(by));
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        self.now.get()
    }
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> Duration {
        (**self).now()
    }

    fn is_running(&self) -> bool {
        (**self).is_running()
    }
}

#[cfg(feature = "std")]
pub use self::std_clock::StdClock;

#[cfg(feature = "std")]
mod std_clock {
    use super::Clock;
    use core::time::Duration;
    use std::time::Instant;

    /// `std::time::Instant`, measured from the clock's creation (std).
    #[derive(Clone, Copy, Debug)]
    pub struct StdClock {
        origin: Instant,
    }

    impl StdClock {
        /// A clock whose origin is now.
        pub fn new() -> Self {
            Self {
                origin: Instant::now(),
            }
        }
    }

    impl Default for StdClock {
        fn default() -> Self {
            Self::new()
        }
    }

    impl Clock for StdClock {
        fn now(&self) -> Duration {
            self.origin.elapsed()
        }
    }
}

//! [`Clock`]: the poller's time source for rate limits.
//!
//! Rate limits ([`Config::min_update_interval`](crate::Config::min_update_interval),
//! [`Config::min_request_interval`](crate::Config::min_request_interval)) compare times read
//! from a `Clock`. Only the poller reads it. `no_std` users implement it over their timer;
//! std users take [`StdClock`]; tests take [`ManualClock`].

use core::cell::Cell;
use core::time::Duration;

/// A monotonic time source, read by the poller only.
pub trait Clock {
    /// Time since an arbitrary, fixed origin. Must never go backwards.
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

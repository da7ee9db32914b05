//! [`Config`]: rate limits and the per-connection share of the request queue.
//!
//! Built with `const fn` setters and checked once, when the server is built
//! ([`Builder::build`](crate::Builder::build)); a bad value is a [`ConfigError`], never a
//! panic.

use core::fmt;
use core::time::Duration;

/// The server's settings. `Config::new()` has no rate limits and an even share of the
/// queue per connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Config {
    min_update_interval: Option<Duration>,
    min_request_interval: Option<Duration>,
    max_pending_per_connection: Option<u32>,
}

impl Config {
    /// No rate limits; each connection may queue `max(1, Q / MAXC)` requests.
    pub const fn new() -> Self {
        Self {
            min_update_interval: None,
            min_request_interval: None,
            max_pending_per_connection: None,
        }
    }

    /// Subscribers receive at most one snapshot per `interval` (so at most
    /// `1 / interval` per second). Snapshots that arrive meanwhile are superseded; the
    /// newest is delivered once the interval has passed.
    #[must_use]
    pub const fn with_min_update_interval(mut self, interval: Duration) -> Self {
        self.min_update_interval = Some(interval);
        self
    }

    /// The poller reads from the snapshot to answer requests at most once per
    /// `interval`. Requests that arrive meanwhile wait and are consolidated into the next
    /// read.
    #[must_use]
    pub const fn with_min_request_interval(mut self, interval: Duration) -> Self {
        self.min_request_interval = Some(interval);
        self
    }

    /// How many requests one connection may have queued at once. Keep
    /// `share × connections ≤ Q` to guarantee every connection room in the queue.
    #[must_use]
    pub const fn with_max_pending_per_connection(mut self, share: u32) -> Self {
        self.max_pending_per_connection = Some(share);
        self
    }

    /// The update rate limit, if any.
    pub const fn min_update_interval(&self) -> Option<Duration> {
        self.min_update_interval
    }

    /// The request rate limit, if any.
    pub const fn min_request_interval(&self) -> Option<Duration> {
        self.min_request_interval
    }

    /// The per-connection share of a queue of capacity `q` shared by `maxc` connections
    /// (`maxc` = 0 counts as 1).
    pub const fn max_pending_per_connection(&self, q: usize, maxc: usize) -> u32 {
        match self.max_pending_per_connection {
            Some(share) => share,
            None => {
                let even = match q.checked_div(maxc) {
                    Some(even) => even,
                    None => q,
                };
                if even == 0 {
                    1
                } else if even > u32::MAX as usize {
                    u32::MAX
                } else {
                    even as u32
                }
            }
        }
    }

    /// Checks the settings against a queue of capacity `q`, `maxc` connection slots, and
    /// whether the server has a running clock.
    pub fn validate(&self, q: usize, maxc: usize, clock_running: bool) -> Result<(), ConfigError> {
        let share = self.max_pending_per_connection(q, maxc);
        if share == 0 || share as usize > q {
            return Err(ConfigError::Share { share, capacity: q });
        }
        let limited = self.min_update_interval.is_some() || self.min_request_interval.is_some();
        if limited && !clock_running {
            return Err(ConfigError::RateLimitWithoutClock);
        }
        Ok(())
    }
}

/// A setting the server cannot work with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConfigError {
    /// The per-connection share must be in `1..=capacity`.
    Share {
        /// The share asked for.
        share: u32,
        /// The queue's capacity.
        capacity: usize,
    },
    /// A rate limit needs a running [`Clock`](crate::Clock); the server has
    /// [`NoClock`](crate::NoClock).
    RateLimitWithoutClock,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Share { share, capacity } => write!(
                f,
                "per-connection share {share} is outside 1..={capacity} (the queue's capacity)"
            ),
            Self::RateLimitWithoutClock => {
                f.write_str("a rate limit is set but the server has no running clock")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ConfigError {}

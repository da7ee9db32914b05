//! [`Builder`]: every setting of a server, checked once.
//!
//! ```
//! use queueserver::{Builder, Config, ManualClock, FlagNotify, QueueServer};
//! use core::time::Duration;
//! # use queueserver::{Connection, ConnectionError, Response, Snapshot};
//! # struct Ui;
//! # impl Connection<heapless::LinearMap<u8, i32, 4>> for Ui {
//! #     fn on_update(&mut self, _: &Snapshot<heapless::LinearMap<u8, i32, 4>>) -> Result<(), ConnectionError> { Ok(()) }
//! #     fn on_response(&mut self, _: Response<'_, heapless::LinearMap<u8, i32, 4>>) -> Result<(), ConnectionError> { Ok(()) }
//! # }
//!
//! let (publisher, server) = Builder::new(heapless::LinearMap::<u8, i32, 4>::new())
//!     .notify(FlagNotify::new())
//!     .clock(ManualClock::new())
//!     .config(Config::new().with_min_request_interval(Duration::from_millis(10)))
//!     .capacity::<128, 4>()
//!     .build_with([Ui])
//!     .expect("a valid configuration");
//! assert_eq!(server.connection_count(), 1);
//! assert_eq!(server.share(), 32); // 128 / 4
//! ```

use crate::clock::{Clock, NoClock};
use crate::config::{Config, ConfigError};
use crate::connection::Connection;
use crate::idict::IDict;
use crate::notify::{NoNotify, Notify};
use crate::publisher::Publisher;
use crate::server::QueueServer;

/// What a build returns: the computation's [`Publisher`] and the poller's [`QueueServer`].
pub type Parts<D, C, N, T, const Q: usize, const MAXC: usize> =
    (Publisher<D, N>, QueueServer<D, C, N, T, Q, MAXC>);

/// Builds a [`QueueServer`] and its [`Publisher`]: the hook, the clock, the settings, the
/// queue capacity `Q` and the number of connection slots `MAXC`.
#[derive(Debug)]
#[must_use = "a builder does nothing until `build`"]
pub struct Builder<D, N = NoNotify, T = NoClock, const Q: usize = 64, const MAXC: usize = 8> {
    idict: D,
    notify: N,
    clock: T,
    config: Config,
}

impl<D: IDict> Builder<D> {
    /// Starts from the initial IDict, with the defaults of [`QueueServer::new`].
    pub fn new(idict: D) -> Self {
        Self {
            idict,
            notify: NoNotify,
            clock: NoClock,
            config: Config::new(),
        }
    }
}

impl<D: IDict, N: Notify, T: Clock, const Q: usize, const MAXC: usize> Builder<D, N, T, Q, MAXC> {
    /// The hook told of publishes and requests.
    pub fn notify<N2: Notify>(self, notify: N2) -> Builder<D, N2, T, Q, MAXC> {
        Builder {
            idict: self.idict,
            notify,
            clock: self.clock,
            config: self.config,
        }
    }

    /// The clock the rate limits read.
    pub fn clock<T2: Clock>(self, clock: T2) -> Builder<D, N, T2, Q, MAXC> {
        Builder {
            idict: self.idict,
            notify: self.notify,
            clock,
            config: self.config,
        }
    }

    /// The settings.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The request queue's capacity (a power of two, checked at compile time, as is the
    /// queue's size: see [`MAX_QUEUE_BYTES`](crate::request::MAX_QUEUE_BYTES)) and the
    /// number of connection slots.
    pub fn capacity<const Q2: usize, const MAXC2: usize>(self) -> Builder<D, N, T, Q2, MAXC2> {
        Builder {
            idict: self.idict,
            notify: self.notify,
            clock: self.clock,
            config: self.config,
        }
    }

    /// Builds the server with no connection attached.
    ///
    /// Allocates the triple buffer, the shared state, the queue, the batch and the slots:
    /// call it before the real-time part starts.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the settings do not fit the capacity or the clock.
    pub fn build<C: Connection<D>>(self) -> Result<Parts<D, C, N, T, Q, MAXC>, ConfigError> {
        self.build_with([])
    }

    /// Builds the server with `connections` attached, in slot order (at most `MAXC`,
    /// checked at compile time).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the settings do not fit the capacity or the clock.
    pub fn build_with<C: Connection<D>, const M: usize>(
        self,
        connections: [C; M],
    ) -> Result<Parts<D, C, N, T, Q, MAXC>, ConfigError> {
        const { assert!(M <= MAXC, "more connections than MAXC slots") };
        self.config.validate(Q, MAXC, self.clock.is_running())?;
        let (publisher, mut server) =
            QueueServer::assemble(self.idict, self.notify, self.clock, self.config);
        for connection in connections {
            // Cannot fail: M <= MAXC and the server is new.
            let _ = server.add_connection(connection);
        }
        Ok((publisher, server))
    }
}

//! [`Options`]: where the view listens, whom it lets in, and every bound it keeps.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// The view's settings. `Options::new()` listens on `127.0.0.1` on a free port, with the
/// bounds below; every setter says what it bounds.
///
/// | setting | default | what it bounds |
/// |---|---|---|
/// | [`bind`](Self::bind) | `127.0.0.1:0` | where the view listens (see [below](#binding-elsewhere-than-loopback)) |
/// | [`allow_origin`](Self::allow_origin) | none | origins besides the view's own whose pages may open a WebSocket (Foxglove's web app's, say) |
/// | [`max_browsers`](Self::max_browsers) | 16 | receivers (pages and Foxglove clients) connected at once; more get `503` |
/// | [`outbox`](Self::outbox) | 64 | messages queued for one receiver; past it the oldest update is dropped (counted) |
/// | [`max_rate_hz`](Self::max_rate_hz) | 60 | updates per second sent to one receiver (each page may ask for fewer) |
/// | [`max_message`](Self::max_message) | 4096 | bytes of one message or frame from a page; longer closes it (`1009`) |
/// | [`stall_timeout`](Self::stall_timeout) | 10 s | how long a page may go unheard (no pong to the view's pings, no message) before it is disconnected; also how long one write may make no progress |
/// | [`ping_interval`](Self::ping_interval) | 5 s | how often each page is pinged (and checked): a page that reads nothing is disconnected within `stall_timeout` plus one ping interval |
/// | [`request_timeout`](Self::request_timeout) | 5 s | how long a client may take to send its HTTP request head (8 KiB at most) |
/// | [`max_asks`](Self::max_asks) | 16 | asks one page may have outstanding; 256 for all pages together |
/// | [`ask_timeout`](Self::ask_timeout) | 2 s | how long an ask may wait for its answer |
/// | [`stats_interval`](Self::stats_interval) | 500 ms | how often the server's counters are sent |
///
/// # Binding elsewhere than loopback
///
/// By default the view listens on `127.0.0.1`: only programs on this machine can reach it.
/// [`bind`](Self::bind) to another address (`0.0.0.0:7878`, a LAN address) is an explicit
/// choice, with these risks: the page and the stream carry **every value the computation
/// publishes, in clear text, to anyone who can reach the port**, with no authentication
/// and no TLS; anyone who can reach it can also ask for values (through the server's
/// request path, so within its rate limits and queue shares) and take up to
/// `max_browsers` places. Put it behind a firewall, an SSH tunnel
/// (`ssh -L 7878:127.0.0.1:7878 host` keeps the view on loopback), or a reverse proxy
/// with TLS and authentication.
///
/// Whatever the address, the view checks the `Host` header of every request against the
/// names it is known by: `localhost`, `127.0.0.1`, `[::1]` and the bound address, at the
/// bound port, plus those given with [`allow_host`](Self::allow_host). That refuses DNS
/// rebinding (a page of another site whose name is made to resolve to this machine). A
/// view bound to `0.0.0.0` must be told the names it is reached by, or told to accept any
/// with [`allow_any_host`](Self::allow_any_host).
#[derive(Clone, Debug)]
pub struct Options {
    pub(crate) bind: SocketAddr,
    pub(crate) allowed_hosts: Vec<String>,
    pub(crate) any_host: bool,
    pub(crate) allowed_origins: Vec<String>,
    pub(crate) max_browsers: usize,
    pub(crate) outbox: usize,
    pub(crate) max_rate_hz: f64,
    pub(crate) max_message: usize,
    pub(crate) stall_timeout: Duration,
    pub(crate) ping_interval: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) max_asks: usize,
    pub(crate) ask_timeout: Duration,
    pub(crate) stats_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self::new()
    }
}

impl Options {
    /// Loopback, a free port, and the default bounds (see the table above).
    pub fn new() -> Self {
        Self {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            allowed_hosts: Vec::new(),
            any_host: false,
            allowed_origins: Vec::new(),
            max_browsers: 16,
            outbox: 64,
            max_rate_hz: 60.0,
            max_message: 4096,
            stall_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            max_asks: 16,
            ask_timeout: Duration::from_secs(2),
            stats_interval: Duration::from_millis(500),
        }
    }

    /// Where to listen. Port 0 picks a free one ([`WebView::url`](crate::WebView::url)
    /// says which). Anything but a loopback address exposes the values: read the risks
    /// [above](#binding-elsewhere-than-loopback) first.
    #[must_use]
    pub fn bind(mut self, addr: impl Into<SocketAddr>) -> Self {
        self.bind = addr.into();
        self
    }

    /// Accepts requests whose `Host` header is `host` (a name with its port,
    /// `"plant-pc:7878"`, compared without regard to case), besides the loopback names.
    #[must_use]
    pub fn allow_host(mut self, host: impl Into<String>) -> Self {
        self.allowed_hosts.push(host.into().to_ascii_lowercase());
        self
    }

    /// Accepts any `Host` header: gives up the check that refuses DNS rebinding. Only for
    /// a view behind a proxy that checks the host itself. Cross-origin WebSocket upgrades
    /// are still refused.
    #[must_use]
    pub fn allow_any_host(mut self) -> Self {
        self.any_host = true;
        self
    }

    /// Lets pages of `origin` open a WebSocket to the view, besides its own page: a
    /// scheme, a host and a port if not the scheme's default, exactly as a browser sends it
    /// in `Origin` (`"https://app.foxglove.dev"`, compared without regard to case; a
    /// trailing `/` is ignored). Foxglove's web app needs this to connect. By default every
    /// other origin is refused (`403`): a page of another site, open in the user's browser,
    /// could otherwise read every value and ask for more. Allow only origins you trust with
    /// that. Programs that send no `Origin` (WebSocket clients outside a browser usually
    /// send none) need no allowance.
    #[must_use]
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        let origin = origin.into();
        self.allowed_origins
            .push(origin.trim().trim_end_matches('/').to_ascii_lowercase());
        self
    }

    /// How many receivers (pages and Foxglove clients) may be connected at once (at least
    /// 1).
    #[must_use]
    pub fn max_browsers(mut self, max: usize) -> Self {
        self.max_browsers = max.max(1);
        self
    }

    /// How many messages may wait for one page (at least 2). A page that reads too slowly
    /// loses its oldest updates first, each one counted and told to it; an answer or an
    /// error is dropped only when every queued message is one too.
    #[must_use]
    pub fn outbox(mut self, messages: usize) -> Self {
        self.outbox = messages.max(2);
        self
    }

    /// The most updates per second one page is sent (and the rate a page starts at). A
    /// page may ask for fewer; updates that arrive meanwhile are superseded by newer ones,
    /// never queued. Clamped to `0.1..=1000`.
    #[must_use]
    pub fn max_rate_hz(mut self, hz: f64) -> Self {
        self.max_rate_hz = if hz.is_nan() {
            60.0
        } else {
            hz.clamp(0.1, 1000.0)
        };
        self
    }

    /// The longest message (and frame) a page may send, in bytes (at least 256). A longer
    /// one gets an error message and the socket is closed with code `1009`.
    #[must_use]
    pub fn max_message(mut self, bytes: usize) -> Self {
        self.max_message = bytes.max(256);
        self
    }

    /// How long a page may go unheard before it is disconnected (at least 1 ms): the
    /// view pings every page every [ping interval](Self::ping_interval), and a page that
    /// answers no ping (nor sends anything) for this long reads nothing, whatever the
    /// kernel's socket buffers still take. It is also how long one write to a page may make
    /// no progress. Until then the page's outbox drops its oldest updates.
    #[must_use]
    pub fn stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How often every page is pinged and checked for silence (at least 1 ms).
    #[must_use]
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How long a client may take to send its request head (at least 1 ms).
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How many asks one page may have outstanding (at least 1); all pages together may
    /// have 16 times as many.
    #[must_use]
    pub fn max_asks(mut self, max: usize) -> Self {
        self.max_asks = max.max(1);
        self
    }

    /// How long an ask waits for the server's answer before the page is told it timed out.
    #[must_use]
    pub fn ask_timeout(mut self, timeout: Duration) -> Self {
        self.ask_timeout = timeout;
        self
    }

    /// How often the server's counters are sent to every page (at least 10 ms).
    #[must_use]
    pub fn stats_interval(mut self, interval: Duration) -> Self {
        self.stats_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// The address the view will listen on.
    pub fn bind_addr(&self) -> SocketAddr {
        self.bind
    }

    /// The bound on outstanding asks of all pages together ([`max_asks`](Self::max_asks)
    /// times 16): the room a relay made for [`WebView::publish`](crate::WebView::publish)
    /// should have (its `max_asks`).
    pub fn total_asks(&self) -> usize {
        self.max_asks.saturating_mul(16)
    }
}

//! A computation with known values, served by a web view, and a WebSocket client that
//! reads the stream as a page would.

#![allow(dead_code)]

use queueserver::{IDict, QueueServer, Stats};
use queueserver_web::{Options, WebConnection, WebView};
use serde_json::Value;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

/// What the computation publishes: snapshot `n` has `step == n`, and the rest follow from it.
#[derive(Clone, Debug, Default, IDict)]
pub struct Wave {
    pub step: u64,
    pub sine: f64,
    pub cosine: f64,
    pub ramp: f64,
    pub enabled: bool,
}

impl Wave {
    pub fn at(step: u64) -> Self {
        let t = step as f64 * 1e-3;
        Self {
            step,
            sine: (t * std::f64::consts::TAU * 0.5).sin(),
            cosine: (t * std::f64::consts::TAU * 0.2).cos() * 0.6,
            ramp: (step % 2000) as f64 / 2000.0,
            enabled: step % 4000 < 2000,
        }
    }
}

/// A server of `D`, its web view, a computation publishing until stopped, and a poller of
/// our own (so that the view can be given the server's counters).
pub struct Rig<D: IDict> {
    pub view: Option<WebView<D>>,
    stop_computation: Arc<AtomicBool>,
    stop_poller: Arc<AtomicBool>,
    computation: Option<JoinHandle<u64>>,
    poller: Option<JoinHandle<()>>,
    pub stats: Arc<Mutex<Stats>>,
}

impl<D> Rig<D>
where
    D: IDict + Send + Sync + 'static,
    D::Value: Clone + Send + serde::Serialize,
{
    /// Starts everything: `make(n)` is snapshot `n`, published every `period`.
    pub fn start(
        options: Options,
        period: Duration,
        make: impl Fn(u64) -> D + Send + 'static,
    ) -> Self {
        let (mut publisher, mut server) = QueueServer::<D, WebConnection<D>>::new(make(0));
        let view = WebView::serve(&mut server, options).expect("the view starts");
        let stats = Arc::new(Mutex::new(Stats::default()));
        let shared_stats = Arc::clone(&stats);
        view.set_stats(move || *shared_stats.lock().unwrap());

        let stop_computation = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&stop_computation);
        let computation = thread::spawn(move || {
            let mut n = 0;
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                publisher.put_update(&make(n));
                next += period;
                thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            n
        });
        let stop_poller = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&stop_poller);
        let poller_stats = Arc::clone(&stats);
        let poller = thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                server.poll();
                *poller_stats.lock().unwrap() = server.stats();
                thread::sleep(Duration::from_millis(1));
            }
            server.poll();
            *poller_stats.lock().unwrap() = server.stats();
            // The server, and with it the view's connection, is dropped here.
        });
        Self {
            view: Some(view),
            stop_computation,
            stop_poller,
            computation: Some(computation),
            poller: Some(poller),
            stats,
        }
    }

    pub fn view(&self) -> &WebView<D> {
        self.view.as_ref().expect("the view runs")
    }

    /// Stops publishing; returns the number of the last snapshot, once the poller has
    /// taken it.
    pub fn stop_computation(&mut self) -> u64 {
        self.stop_computation.store(true, Ordering::Relaxed);
        let last = self.computation.take().map_or(0, |c| c.join().unwrap());
        wait_for("the poller to take the last snapshot", || {
            self.stats.lock().unwrap().updates_published >= last
        });
        last
    }

    /// Stops the poller and drops the server (and the view's connection with it).
    pub fn stop_server(&mut self) {
        self.stop_computation();
        self.stop_poller.store(true, Ordering::Relaxed);
        if let Some(poller) = self.poller.take() {
            poller.join().unwrap();
        }
    }
}

impl<D: IDict> Drop for Rig<D> {
    fn drop(&mut self) {
        self.stop_computation.store(true, Ordering::Relaxed);
        self.stop_poller.store(true, Ordering::Relaxed);
        if let Some(c) = self.computation.take() {
            let _ = c.join();
        }
        if let Some(p) = self.poller.take() {
            let _ = p.join();
        }
        drop(self.view.take());
    }
}

/// Waits (at most 20 s, then fails) until `done` holds: a bound on liveness, not a
/// measure of speed.
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// A WebSocket client of the view at `addr`, at `path`, offering `subprotocol` and sending
/// `origin` if given (reads time out after 20 s): the socket and the subprotocol the view
/// chose, or the view's refusal as an error.
pub fn handshake(
    addr: SocketAddr,
    path: &str,
    subprotocol: Option<&str>,
    origin: Option<&str>,
) -> Result<(WebSocket<TcpStream>, Option<String>), tungstenite::Error> {
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    let headers = request.headers_mut();
    if let Some(subprotocol) = subprotocol {
        headers.insert("Sec-WebSocket-Protocol", subprotocol.parse().unwrap());
    }
    if let Some(origin) = origin {
        headers.insert("Origin", origin.parse().unwrap());
    }
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    match tungstenite::client::client(request, stream) {
        Ok((socket, response)) => {
            let chosen = response
                .headers()
                .get("Sec-WebSocket-Protocol")
                .map(|v| v.to_str().unwrap().to_owned());
            Ok((socket, chosen))
        }
        Err(tungstenite::HandshakeError::Failure(e)) => Err(e),
        Err(tungstenite::HandshakeError::Interrupted(_)) => unreachable!("blocking socket"),
    }
}

/// A page's socket, read as a program would.
pub struct Page {
    pub socket: WebSocket<TcpStream>,
}

impl Page {
    /// Connects to the view's stream, with no `Origin` header (as a program does).
    pub fn connect<D: IDict>(view: &WebView<D>) -> Self {
        Self::connect_with(view, None).expect("the upgrade is accepted")
    }

    /// Connects with the given `Origin` header; the server's refusal as an error.
    pub fn connect_with<D: IDict>(
        view: &WebView<D>,
        origin: Option<&str>,
    ) -> Result<Self, tungstenite::Error> {
        handshake(view.local_addr(), "/ws", None, origin).map(|(socket, _)| Self { socket })
    }

    /// The next text message, parsed.
    pub fn next(&mut self) -> Value {
        loop {
            match self.socket.read().expect("a message") {
                Message::Text(text) => {
                    return serde_json::from_str(text.as_str()).expect("JSON from the view")
                }
                Message::Close(frame) => panic!("closed by the view: {frame:?}"),
                _ => {}
            }
        }
    }

    /// The next message of type `kind`, skipping others.
    pub fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let message = self.next();
            if message["type"] == kind {
                return message;
            }
        }
    }

    pub fn send(&mut self, text: &str) {
        self.socket.send(Message::text(text)).unwrap();
    }
}

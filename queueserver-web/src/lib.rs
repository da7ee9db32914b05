//! A live web view of a running computation: a connection of its
//! [`QueueServer`](queueserver::QueueServer) that serves one page and streams the values
//! to it over a WebSocket, so that watching costs the computation nothing. The same port
//! speaks [Foxglove](#foxglove)'s protocol, `foxglove.websocket.v1`.
//!
//! Open the page in any browser: every value by name, updating in place with its
//! snapshot's `seq` and age; a live plot of the values you tick; the server's counters and
//! the update rate actually received; a field to ask for one value through the server's
//! request path. Nothing to install: the page (with its chart library, uPlot, vendored) is
//! embedded in the binary.
//!
//! # Guarantees
//!
//! The view is a [relay](queueserver::runtime::relay): one connection of the server, and a
//! worker thread of its own that does everything else.
//!
//! | where | what the view does there | guarantee |
//! |---|---|---|
//! | computation | nothing | the view is a connection: `put_update` does not know it exists |
//! | poller ([`WebConnection`], a [`RelayConnection`](queueserver::RelayConnection)) | copies the snapshot once into an `Arc` in the relay's latest-wins slot, while a receiver is connected; queues each answer | O(1) whatever the number of receivers: never serializes, never touches a socket or a page, never waits |
//! | the relay's worker thread | serializes a snapshot **once**, at most at the receivers' highest rate, and offers the text to each page's outbox; encodes each Foxglove channel some client subscribes to **once**, and offers each client its frames; prepares each answer once for the pages and clients that asked (one request per key in flight, whatever the number asking); sends the counters; pings every receiver and disconnects the silent ones | one thread, whatever the number of receivers |
//! | the receivers' threads | listen, serve the page, read and write each receiver's socket | one listener, two threads per page or Foxglove client; all end at [`WebView::shutdown`] |
//!
//! - **A slow or stalled receiver** never grows memory and never slows the poller or the
//!   others: its outbox holds at most [`Options::outbox`] messages and drops its oldest
//!   update when full, counted and told to it (a page's `{"type":"dropped",..}`, a
//!   Foxglove `status`). A receiver not heard from for [`Options::stall_timeout`] (it
//!   answers no ping) is disconnected, whatever the kernel's socket buffers still take.
//! - **The view does not use the server's [`Reader`](queueserver::Reader)**: a store in it
//!   per snapshot would be work the poller does for the view alone, and each thread that
//!   loads from it adds to every store (arc-swap pays the debts of every such thread). The
//!   view keeps the newest snapshot itself, from each update its worker takes; a receiver
//!   that connects is greeted with it, and the view asks the server for the whole snapshot
//!   through the request path then (when nobody watched, the computation may have
//!   published unseen), handing the answer out as an update if it is newer.
//! - **Each page has its own rate limit**, [`Options::max_rate_hz`] at most; a page may
//!   ask for less. An update that comes sooner is superseded by the next, and the newest is
//!   always sent.
//! - **A page that goes** is removed: its threads end and its place is freed.
//! - **Malformed input** (not JSON, an unknown message, a bad name, a binary frame) gets an
//!   error message back, never a panic; an oversized message, a protocol violation or
//!   text that is not UTF-8 gets one too, and closes that page's socket.
//!
//! # Safety
//!
//! The view listens on `127.0.0.1` unless told otherwise ([`Options::bind`] says what
//! binding elsewhere exposes). It refuses cross-origin WebSocket upgrades (an `Origin`
//! other than `http://` + the request's `Host`, unless allowed by name with
//! [`Options::allow_origin`]), requests for a `Host` it is not known by
//! (DNS rebinding), methods other than `GET`, request heads over 8 KiB, and messages over
//! [`Options::max_message`]; the crate README lists each refusal.
//!
//! # Example
//!
//! ```
//! use queueserver::{IDict, QueueServer, Runner};
//! use queueserver_web::{Options, WebConnection, WebView};
//! use std::io::{Read, Write};
//! use std::time::Duration;
//!
//! #[derive(Clone, Default, IDict)]
//! struct Plant { position: f64, velocity: f64 }
//!
//! // A server whose one connection is the view (`Box<dyn Connection<Plant> + Send>` for a mix).
//! let (mut publisher, mut server) = QueueServer::<_, WebConnection<Plant>>::new(Plant::default());
//! // 127.0.0.1 on a free port; `Options::new().bind(([127, 0, 0, 1], 7878))` for a fixed one.
//! let view = WebView::serve(&mut server, Options::new()).unwrap();
//! println!("open {}", view.url());
//! let runner = Runner::every(server, Duration::from_millis(1)).unwrap();
//!
//! publisher.put_update(&Plant { position: 0.5, velocity: 0.0 });
//!
//! // The page, as a browser gets it.
//! let mut http = std::net::TcpStream::connect(view.local_addr()).unwrap();
//! write!(http, "GET / HTTP/1.1\r\nHost: {}\r\n\r\n", view.local_addr()).unwrap();
//! let mut page = String::new();
//! http.read_to_string(&mut page).unwrap();
//! assert!(page.starts_with("HTTP/1.1 200 OK") && page.contains("<title>"));
//!
//! view.shutdown();
//! runner.shutdown().unwrap();
//! ```
//!
//! With a server of mixed connections (`Box<dyn Connection<D> + Send>`), `serve` works the
//! same; [`WebView::attach`] takes the requester and an attach closure instead, as
//! [`Client::attach`](queueserver::Client::attach) does. [`WebView::set_stats`] gives the
//! view the server's counters to show.
//!
//! A relay made elsewhere, fed by something other than a server's poller
//! ([`Relay::fed`](queueserver::runtime::relay::Relay::fed): a microcontroller's line, as
//! `queueserver-link`'s `Bridge::add_relay` makes one, or a replay), is served with
//! [`WebView::publish`], as `queueserver-zenoh`'s `Zenoh::publish` puts one on Zenoh:
//! pages see what the feed hands the relay, and their asks go to its upstream. A relay
//! with a reader greets each page with the reader's newest snapshot.
//!
//! # The stream
//!
//! The page and any other program read the same WebSocket, at `ws://HOST:PORT/ws`: JSON
//! text messages, each an object with a `"type"`. The crate README documents every
//! message; in short, the server sends `hello`, then `update`s
//! (`{"type":"update","seq":42,"time":1732550000123,"values":{"position":0.5,..}}`, the
//! values by name as [`ByName`](queueserver::idict::ByName) writes them), `stats`,
//! `dropped`, `answer`, `error`, `rate` and `status`; a page sends `ask` and `rate`.
//!
//! # Foxglove
//!
//! A WebSocket upgrade that offers the subprotocol [`FOXGLOVE_SUBPROTOCOL`]
//! (`foxglove.websocket.v1`), at `/` (as Foxglove connects to `ws://127.0.0.1:7878`) or at
//! `/ws`, speaks Foxglove's protocol instead: one more kind of receiver of the same relay,
//! with the same bounds. In Foxglove: *Open connection* → *Foxglove WebSocket* →
//! `ws://127.0.0.1:7878`; its web app, served from `https://app.foxglove.dev`, needs
//! `Options::new().allow_origin("https://app.foxglove.dev")`.
//!
//! - `serverInfo` (capability `parameters`), then `advertise`: one channel per value (its
//!   name as the topic) and one for the whole snapshot (`@snapshot`), each `json` with a
//!   JSON Schema. The IDict names its values but not their types, so each schema is that
//!   of the JSON type the value had when its channel was first advertised (`number` for a
//!   float, `integer`, `boolean`, `string`, arrays and objects of them). A value's
//!   messages are `{"seq":N,"value":V}`, the snapshot's `{"seq":N,"values":{..}}`.
//! - `subscribe` / `unsubscribe`: only channels some client subscribes to are encoded,
//!   each once per snapshot for every client subscribed to it; a new subscription gets the
//!   newest value at once. Messages are binary `messageData` frames stamped with the
//!   snapshot's **receive time**: the wall clock (ns since the Unix epoch) when the
//!   server's poller handed it to the view. The computation offers no clock of its own, so
//!   the view sends no `time` messages and does not claim the `time` capability.
//! - `getParameters` reads named values through the server's request path, as a page's
//!   ask (one request per key in flight for all pages and clients, the same bound and
//!   deadline); an empty list reads every value with one request for the whole snapshot.
//!   Unknown names get a `status` error. `setParameters` is refused with a `status` error:
//!   the computation's values are read-only from outside. Malformed messages, unknown or
//!   unsupported ops and binary messages get a `status` error too.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod browser;
mod foxglove;
mod http;
mod options;
mod view;
mod wire;

pub use foxglove::wire::SUBPROTOCOL as FOXGLOVE_SUBPROTOCOL;
pub use options::Options;
pub use queueserver::runtime::outbox::OutboxStats;
pub use view::{BrowserStats, Reply, StartError, ViewAsker, ViewStats, WebConnection, WebView};
pub use wire::FORMAT_VERSION;

/// The README's examples, compiled as doc-tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

//! The one page, its assets, and the WebSocket upgrade: a minimal HTTP/1.1 server for
//! `GET` only, one request per connection.
//!
//! What it refuses, and how:
//!
//! | request | answer |
//! |---|---|
//! | a head longer than 8 KiB, or with more than 32 headers | `431` |
//! | a head not complete within the request timeout | the socket is closed |
//! | not HTTP/1.1 syntax | `400` |
//! | a method other than `GET` | `405` |
//! | no `Host`, or a `Host` the view is not known by (DNS rebinding) | `400` / `403` |
//! | a path other than the page's | `404` |
//! | an upgrade that is not a WebSocket version 13 upgrade | `400` / `426` |
//! | an upgrade of `/` that does not offer the `foxglove.websocket.v1` subprotocol | `400` |
//! | an upgrade whose `Origin` is neither the page's own (`http://` or `https://` + `Host`) nor one allowed by `Options::allow_origin` | `403` |
//! | an upgrade when `max_browsers` receivers are connected | `503` |
//! | any connection while `2 × max_browsers + 32` requests are being read (a flood, or heads trickled byte by byte) | `503` with `Retry-After: 1`, at once |
//!
//! An upgrade of `/ws` or `/` that offers the subprotocol `foxglove.websocket.v1` (in
//! `Sec-WebSocket-Protocol`) speaks Foxglove's protocol, and the answer names it; any other
//! upgrade of `/ws` is the page's stream.
//!
//! Every page response carries a `Content-Security-Policy` that allows only the view's own
//! scripts, styles and socket, and no framing.

use crate::browser::Protocol;
use crate::foxglove::wire::SUBPROTOCOL;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Instant;

/// The longest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// The most headers a request may have.
const MAX_HEADERS: usize = 32;

/// The files the view serves, embedded in the binary. uPlot is version 1.6.32, vendored
/// from its npm package under `vendor/uplot/` with its licence.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../static/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_str!("../static/app.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_str!("../static/style.css"),
    ),
    (
        "/uPlot.min.js",
        "text/javascript; charset=utf-8",
        include_str!("../vendor/uplot/uPlot.iife.min.js"),
    ),
    (
        "/uPlot.min.css",
        "text/css; charset=utf-8",
        include_str!("../vendor/uplot/uPlot.min.css"),
    ),
    (
        "/uPlot.LICENSE.txt",
        "text/plain; charset=utf-8",
        include_str!("../vendor/uplot/LICENSE"),
    ),
];

/// Headers on every answer: no caching, no sniffing, no framing, only our own resources.
const COMMON_HEADERS: &str = "Cache-Control: no-store\r\n\
    X-Content-Type-Options: nosniff\r\n\
    Referrer-Policy: no-referrer\r\n\
    Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; \
    form-action 'none'\r\n";

/// The answer to a connection the view has no thread for (too many requests being read
/// at once: a flood, or clients that trickle their heads): come back in a second.
pub(crate) const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
    Retry-After: 1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 38\r\n\
    Connection: close\r\nCache-Control: no-store\r\n\r\n\
    busy: too many requests; retry in 1 s\n";

/// What a request asked for, once read and checked.
pub(crate) enum Routed {
    /// Answered already (a file, or a refusal); the socket may be closed.
    Done(Outcome),
    /// A WebSocket upgrade that passed every check: answer it with [`accept`].
    Upgrade {
        /// The client's `Sec-WebSocket-Key`.
        key: String,
        /// Bytes read past the head (a client must not send any before our answer; kept
        /// rather than lost).
        rest: Vec<u8>,
        /// The protocol the client chose by its subprotocol.
        protocol: Protocol,
    },
}

/// How a plain request ended, for the view's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A file was served.
    Served,
    /// The request was refused with this status.
    Refused(u16),
    /// The client went away or was too slow; nothing was answered.
    Dropped,
}

/// Who may be served: the names the view is known by, and the origins besides its own
/// whose pages may open a WebSocket.
pub(crate) struct HostCheck {
    names: Vec<String>,
    any: bool,
    origins: Vec<String>,
}

impl HostCheck {
    /// The loopback names and the bound address, at `addr`'s port, plus `extra`; the
    /// origins `origins` besides the view's own.
    pub(crate) fn new(addr: SocketAddr, extra: &[String], any: bool, origins: &[String]) -> Self {
        let port = addr.port();
        let mut names = vec![
            format!("localhost:{port}"),
            format!("127.0.0.1:{port}"),
            format!("[::1]:{port}"),
        ];
        if !addr.ip().is_unspecified() {
            names.push(match addr.ip() {
                IpAddr::V4(ip) => format!("{ip}:{port}"),
                IpAddr::V6(ip) => format!("[{ip}]:{port}"),
            });
        }
        names.extend(extra.iter().cloned());
        Self {
            names,
            any,
            origins: origins.to_vec(),
        }
    }

    /// Whether a page of `origin` may open a WebSocket to the view known as `host`: its own
    /// origin (`http://` + `host`), or one allowed by name.
    /// The page's own origin (`http://` or, behind a TLS-terminating proxy, `https://`,
    /// then the `Host` it was served under), or one allowed by name.
    fn allows_origin(&self, origin: &str, host: &str) -> bool {
        let own = |scheme: &str| origin.eq_ignore_ascii_case(&format!("{scheme}://{host}"));
        own("http")
            || own("https")
            || self
                .origins
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(origin))
    }

    fn allows(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        // A `Host` without a port means port 80.
        let with_port = if host.ends_with(']') || !host.contains(':') {
            format!("{host}:80")
        } else {
            host
        };
        self.any || self.names.contains(&with_port)
    }
}

/// Reads one request from `stream` and answers it, unless it is a WebSocket upgrade that
/// may go ahead. `room` says whether another page may connect.
pub(crate) fn serve(
    stream: &mut TcpStream,
    hosts: &HostCheck,
    deadline: Instant,
    room: impl FnOnce() -> bool,
) -> Routed {
    let (head, rest) = match read_head(stream, deadline) {
        Ok(read) => read,
        Err(HeadError::TooLong) => return refuse(stream, 431, "request head too long"),
        Err(HeadError::Io) => return Routed::Done(Outcome::Dropped),
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        Err(httparse::Error::TooManyHeaders) => {
            return refuse(stream, 431, "too many headers");
        }
        Ok(httparse::Status::Partial) | Err(_) => {
            return refuse(stream, 400, "malformed request");
        }
    }
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(str::trim)
    };
    if request.method != Some("GET") {
        return refuse(stream, 405, "only GET is served");
    }
    let Some(host) = header("host") else {
        return refuse(stream, 400, "no Host header");
    };
    if !hosts.allows(host) {
        return refuse(stream, 403, "this view is not served under that host name");
    }
    let path = request.path.unwrap_or("/");
    let path = path.split(['?', '#']).next().unwrap_or("/");
    // Foxglove connects to the address as given (`ws://127.0.0.1:7878`): the root.
    if path == "/ws" || (path == "/" && header("upgrade").is_some()) {
        return upgrade(stream, hosts, host, path, &header, rest, room);
    }
    let path = if path == "/index.html" { "/" } else { path };
    match ASSETS.iter().find(|(p, _, _)| *p == path) {
        Some((_, kind, body)) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
                 Connection: close\r\n{COMMON_HEADERS}\r\n",
                body.len()
            );
            let sent = stream
                .write_all(head.as_bytes())
                .and_then(|()| stream.write_all(body.as_bytes()))
                .and_then(|()| stream.flush());
            Routed::Done(if sent.is_ok() {
                Outcome::Served
            } else {
                Outcome::Dropped
            })
        }
        None => refuse(stream, 404, "not found"),
    }
}

/// Checks a WebSocket upgrade request.
fn upgrade<'h>(
    stream: &mut TcpStream,
    hosts: &HostCheck,
    host: &str,
    path: &str,
    header: &impl Fn(&str) -> Option<&'h str>,
    rest: Vec<u8>,
    room: impl FnOnce() -> bool,
) -> Routed {
    let has_token = |name: &str, token: &str| {
        header(name).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        return refuse(stream, 426, "this path takes a WebSocket upgrade");
    }
    if header("sec-websocket-version") != Some("13") {
        return refuse(stream, 426, "WebSocket version 13 only");
    }
    let Some(key) = header("sec-websocket-key").filter(|k| !k.is_empty()) else {
        return refuse(stream, 400, "no Sec-WebSocket-Key");
    };
    let protocol = if has_token("sec-websocket-protocol", SUBPROTOCOL) {
        Protocol::Foxglove
    } else if path == "/ws" {
        Protocol::Page
    } else {
        return refuse(
            stream,
            400,
            "a WebSocket upgrade of / must offer the subprotocol foxglove.websocket.v1 \
             (the page's stream is at /ws)",
        );
    };
    // Browsers always send `Origin` with a WebSocket upgrade; other programs may not, and
    // are not the ones a cross-origin check protects against.
    if let Some(origin) = header("origin") {
        if !hosts.allows_origin(origin, host) {
            let shown: String = origin.chars().take(200).collect();
            let why = format!(
                "cross-origin WebSocket upgrade refused: origin {shown} is not allowed \
                 (Options::allow_origin names the origins allowed)"
            );
            return refuse(stream, 403, &why);
        }
    }
    if !room() {
        return refuse(stream, 503, "too many receivers connected");
    }
    Routed::Upgrade {
        key: key.to_owned(),
        rest,
        protocol,
    }
}

/// Answers an upgrade that may go ahead with `101 Switching Protocols`, naming the
/// subprotocol for a Foxglove client.
pub(crate) fn accept(stream: &mut TcpStream, key: &str, protocol: Protocol) -> io::Result<()> {
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let subprotocol = match protocol {
        Protocol::Page => String::new(),
        Protocol::Foxglove => format!("Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n"),
    };
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n{subprotocol}\r\n"
    );
    stream.write_all(head.as_bytes())?;
    stream.flush()
}

/// Answers with `status` and a one-line reason.
fn refuse(stream: &mut TcpStream, status: u16, why: &str) -> Routed {
    let reason = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let extra = match status {
        405 => "Allow: GET\r\n",
        426 => "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
        _ => "",
    };
    let body = format!("{status} {reason}: {why}\n");
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n{extra}{COMMON_HEADERS}\r\n",
        body.len()
    );
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body.as_bytes()))
        .and_then(|()| stream.flush());
    Routed::Done(Outcome::Refused(status))
}

enum HeadError {
    TooLong,
    Io,
}

/// Reads up to the blank line that ends the head; returns the head and any bytes after it.
fn read_head(stream: &mut TcpStream, deadline: Instant) -> Result<(Vec<u8>, Vec<u8>), HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HeadError::Io);
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|_| HeadError::Io)?;
        let n = match stream.read(&mut chunk) {
            Ok(0) => return Err(HeadError::Io),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(HeadError::Io),
        };
        let searched_from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find_blank_line(&buf[searched_from..]) {
            let end = searched_from + end;
            let rest = buf.split_off(end);
            return Ok((buf, rest));
        }
        if buf.len() > MAX_HEAD {
            return Err(HeadError::TooLong);
        }
    }
}

/// Where the head ends: just past the first `\r\n\r\n`.
fn find_blank_line(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_the_loopback_names_and_the_bound_address_at_its_port() {
        let check = HostCheck::new("127.0.0.1:7878".parse().unwrap(), &[], false, &[]);
        for ok in [
            "127.0.0.1:7878",
            "localhost:7878",
            "LOCALHOST:7878",
            "[::1]:7878",
        ] {
            assert!(check.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example:7878",
            "127.0.0.1:80",
            "localhost",
            "127.0.0.1:7879",
            "",
        ] {
            assert!(!check.allows(bad), "{bad}");
        }
        let lan = HostCheck::new(
            "0.0.0.0:80".parse().unwrap(),
            &["plant-pc:80".into()],
            false,
            &[],
        );
        assert!(lan.allows("plant-pc") && lan.allows("plant-pc:80") && lan.allows("localhost"));
        assert!(!lan.allows("0.0.0.0:80") && !lan.allows("other:80"));
        assert!(HostCheck::new("0.0.0.0:80".parse().unwrap(), &[], true, &[]).allows("anything"));
    }

    #[test]
    fn origins_are_the_views_own_and_those_allowed_by_name() {
        let addr = "127.0.0.1:7878".parse().unwrap();
        let strict = HostCheck::new(addr, &[], false, &[]);
        assert!(strict.allows_origin("http://127.0.0.1:7878", "127.0.0.1:7878"));
        assert!(!strict.allows_origin("https://app.foxglove.dev", "127.0.0.1:7878"));
        assert!(!strict.allows_origin("http://localhost:7878", "127.0.0.1:7878"));
        let allowed = ["https://app.foxglove.dev".to_owned()];
        let open = HostCheck::new(addr, &[], false, &allowed);
        assert!(open.allows_origin("https://APP.foxglove.dev", "127.0.0.1:7878"));
        assert!(!open.allows_origin("https://app.foxglove.dev.evil.example", "127.0.0.1:7878"));
        assert!(!open.allows_origin("http://app.foxglove.dev", "127.0.0.1:7878"));
    }

    #[test]
    fn every_asset_is_embedded() {
        for (path, _, body) in ASSETS {
            assert!(body.len() > 100, "{path}");
        }
    }
}

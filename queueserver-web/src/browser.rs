//! One connected page: its outbox, and the two threads that serve its socket.
//!
//! - The **writer** (the thread that accepted the connection) takes messages from the
//!   outbox and writes them, each flushed at once. Its socket has a write timeout, the
//!   view's stall timeout: a page that accepts no byte for that long is disconnected.
//!   Until then its outbox drops the oldest updates; nothing else waits for it.
//! - The **reader** reads the page's messages (asks, rate changes), answers malformed
//!   ones with an error message, and passes pings' pongs and close replies to the writer
//!   through the outbox, so that only the writer ever writes to the socket.
//!
//! Either one ending ends the other: the reader closes the outbox, the writer shuts the
//! socket down. The writer then removes the page from the view and waits for the reader.

use crate::outbox::{Out, Outbox};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::AtomicUsize;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig, WebSocketContext};
use tungstenite::{Error, Message};

/// One page, shared by its two threads, the poller (which pushes updates) and the askers
/// of its asks (which hold it weakly).
pub(crate) struct Browser {
    pub(crate) id: u64,
    pub(crate) peer: SocketAddr,
    pub(crate) outbox: Outbox,
    /// A handle on the socket, to shut it down from any thread.
    socket: TcpStream,
    /// Asks of this page not yet ended.
    pub(crate) asks: AtomicUsize,
}

impl Browser {
    pub(crate) fn new(id: u64, peer: SocketAddr, outbox: Outbox, socket: TcpStream) -> Self {
        Self {
            id,
            peer,
            outbox,
            socket,
            asks: AtomicUsize::new(0),
        }
    }

    /// Ends both threads: the writer's blocked write and the reader's blocked read return.
    pub(crate) fn shut_down(&self) {
        let _ = self.socket.shutdown(Shutdown::Both);
        self.outbox.close();
    }
}

/// What the reader does with a page's text message.
pub(crate) trait Handler {
    fn text(&self, browser: &std::sync::Arc<Browser>, text: &str);
}

/// The socket seen by the reader: reads pass through; writes are discarded, because the
/// writer alone writes (tungstenite's own replies to pings and closes, queued by a read,
/// are sent by the writer instead).
struct ReadHalf(TcpStream);

impl Read for ReadHalf {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for ReadHalf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The reader's loop: reads until the page goes, sends something it must not, or the
/// socket is shut down.
pub(crate) fn read_loop(
    browser: &std::sync::Arc<Browser>,
    stream: TcpStream,
    rest: Vec<u8>,
    max_message: usize,
    handler: &impl Handler,
) {
    let config = WebSocketConfig::default()
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message));
    let mut context = WebSocketContext::from_partially_read(rest, Role::Server, Some(config));
    let mut input = ReadHalf(stream);
    let error = |text: String| browser.outbox.push_text(crate::wire::error(None, &text));
    let close = |code: CloseCode, reason: &'static str| {
        browser.outbox.close_with(CloseFrame {
            code,
            reason: reason.into(),
        });
    };
    loop {
        match context.read(&mut input) {
            Ok(Message::Text(text)) => handler.text(browser, text.as_str()),
            Ok(Message::Binary(_)) => {
                error("binary messages are not read: send JSON text".into());
            }
            Ok(Message::Ping(data)) => {
                browser.outbox.push(Out::Pong(data));
            }
            Ok(Message::Pong(_) | Message::Frame(_)) => {}
            Ok(Message::Close(frame)) => {
                let code = frame.map_or(CloseCode::Normal, |f| f.code);
                browser.outbox.close_with(CloseFrame {
                    code,
                    reason: "".into(),
                });
                return;
            }
            Err(Error::Capacity(why)) => {
                error(format!(
                    "message too long ({why}); the limit is {max_message} bytes"
                ));
                close(CloseCode::Size, "message too long");
                return;
            }
            Err(Error::Utf8(_)) => {
                error("a text message was not UTF-8".into());
                close(CloseCode::Invalid, "text not UTF-8");
                return;
            }
            Err(Error::Protocol(why)) => {
                error(format!("WebSocket protocol error: {why}"));
                close(CloseCode::Protocol, "protocol error");
                return;
            }
            Err(Error::Io(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                // Gone, or shut down.
                browser.outbox.close();
                return;
            }
        }
    }
}

/// The writer's loop: sends what the outbox hands out until it is closed or a write
/// fails (the page is gone, or accepted nothing for the stall timeout).
pub(crate) fn write_loop(browser: &Browser, mut stream: TcpStream) {
    let mut context = WebSocketContext::new(Role::Server, None);
    while let Some(out) = browser.outbox.next() {
        let sent = match out {
            Out::Update(text) | Out::Text(text) => context
                .write(&mut stream, Message::Text(text))
                .and_then(|()| context.flush(&mut stream)),
            Out::Pong(data) => context
                .write(&mut stream, Message::Pong(data))
                .and_then(|()| context.flush(&mut stream)),
            Out::Close(frame) => {
                let _ = context.close(&mut stream, Some(frame));
                break;
            }
        };
        if sent.is_err() {
            break;
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}

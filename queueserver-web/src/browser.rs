//! One connected receiver (a page, or a Foxglove client): its outbox, and the two threads
//! that serve its socket.
//!
//! - The **writer** (the thread that accepted the connection) takes messages from the
//!   page's [`Outbox`] and writes them, each flushed at once. Its socket has a write
//!   timeout, the view's stall timeout: a write that makes no progress for that long
//!   disconnects the page. Until then its outbox drops the oldest updates; nothing else
//!   waits for it.
//! - The **reader** reads the receiver's messages (a page's asks and rate changes, a
//!   Foxglove client's subscriptions and parameter reads), answers malformed ones with an
//!   error message in the receiver's protocol, notes that the page was heard from (any frame, the pongs
//!   to the view's pings included), and passes pings' pongs and close replies to the
//!   writer through the outbox, so that only the writer ever writes to the socket. The
//!   view's relay worker pings every page and disconnects one not heard from for the stall
//!   timeout: a page that reads nothing is found out whatever the kernel's buffers hold.
//!
//! Either one ending ends the other: the reader closes the outbox, the writer shuts the
//! socket down. The writer then removes the page from the view and waits for the reader.

use queueserver::runtime::outbox::{Measured, Next, Outbox};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig, WebSocketContext};
use tungstenite::{Bytes, Error, Message, Utf8Bytes};

/// The protocol a receiver speaks, chosen at its upgrade.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// The view's own stream, read by its page (`/ws`, no subprotocol).
    Page,
    /// Foxglove's `foxglove.websocket.v1`.
    Foxglove,
}

impl Protocol {
    /// An error message in this protocol: a page's `error`, a Foxglove `status` at level
    /// error.
    pub(crate) fn error(self, text: &str) -> Out {
        match self {
            Self::Page => Out::text(crate::wire::error(None, text)),
            Self::Foxglove => Out::text(crate::foxglove::wire::status(
                crate::foxglove::wire::Level::Error,
                text,
            )),
        }
    }

    /// How a receiver is told its count of dropped updates.
    fn dropped(self, updates: u64) -> Out {
        match self {
            Self::Page => Out::text(crate::wire::dropped(updates)),
            Self::Foxglove => Out::text(crate::foxglove::wire::dropped(updates)),
        }
    }
}

/// One Foxglove `messageData` frame to send: the receiver's subscription, and the channel's
/// payload, encoded once for every receiver subscribed to it.
#[derive(Debug)]
pub(crate) struct Frame {
    pub(crate) subscription: u32,
    /// Cleared when the receiver unsubscribes: a frame queued before is then not sent.
    pub(crate) live: Arc<AtomicBool>,
    pub(crate) payload: Bytes,
}

/// A message for the receiver.
#[derive(Debug)]
pub(crate) enum Out {
    /// A JSON text message (a snapshot's, shared by every page, or any other).
    Text(Utf8Bytes),
    /// Foxglove `messageData` frames of one snapshot, stamped `time` (ns since the Unix
    /// epoch): one binary message each.
    Data { time: u64, frames: Vec<Frame> },
    /// A ping, whose pong tells the page still reads.
    Ping,
    /// The reply to a ping.
    Pong(Bytes),
    /// Send this close frame, then stop.
    Close(CloseFrame),
}

impl Measured for Out {
    fn bytes(&self) -> usize {
        match self {
            Self::Text(text) => text.len(),
            Self::Data { frames, .. } => frames
                .iter()
                .map(|f| crate::foxglove::wire::DATA_HEADER + f.payload.len())
                .sum(),
            Self::Ping => 0,
            Self::Pong(data) => data.len(),
            Self::Close(frame) => frame.reason.len() + 2,
        }
    }
}

impl Out {
    /// A text message.
    pub(crate) fn text(text: String) -> Self {
        Self::Text(Utf8Bytes::from(text))
    }
}

/// One receiver, shared by its two threads, the view's worker (which offers updates) and
/// the askers of its asks (which hold it weakly).
pub(crate) struct Browser {
    pub(crate) id: u64,
    pub(crate) peer: SocketAddr,
    pub(crate) protocol: Protocol,
    pub(crate) outbox: Outbox<Out>,
    /// A handle on the socket, to shut it down from any thread.
    socket: TcpStream,
    /// Asks of this page not yet ended.
    pub(crate) asks: AtomicUsize,
}

impl Browser {
    pub(crate) fn new(
        id: u64,
        peer: SocketAddr,
        protocol: Protocol,
        outbox: Outbox<Out>,
        socket: TcpStream,
    ) -> Self {
        Self {
            id,
            peer,
            protocol,
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

/// What the reader does with a receiver's text message.
pub(crate) trait Handler {
    fn text(&self, browser: &Arc<Browser>, text: &str);
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
    browser: &Arc<Browser>,
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
    let error = |text: String| browser.outbox.push(browser.protocol.error(&text));
    let close = |code: CloseCode, reason: &'static str| {
        browser.outbox.close_with(Out::Close(CloseFrame {
            code,
            reason: reason.into(),
        }));
    };
    loop {
        let read = context.read(&mut input);
        if read.is_ok() {
            browser.outbox.heard();
        }
        match read {
            Ok(Message::Text(text)) => handler.text(browser, text.as_str()),
            Ok(Message::Binary(_)) => {
                error(match browser.protocol {
                    Protocol::Page => "binary messages are not read: send JSON text".into(),
                    Protocol::Foxglove => "binary messages (client publishing, service calls) \
                                           are not supported by this server"
                        .into(),
                });
            }
            Ok(Message::Ping(data)) => {
                browser.outbox.push(Out::Pong(data));
            }
            Ok(Message::Pong(_) | Message::Frame(_)) => {}
            Ok(Message::Close(frame)) => {
                let code = frame.map_or(CloseCode::Normal, |f| f.code);
                browser.outbox.close_with(Out::Close(CloseFrame {
                    code,
                    reason: "".into(),
                }));
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
/// fails (the receiver is gone, or accepted nothing for the stall timeout).
pub(crate) fn write_loop(browser: &Browser, mut stream: TcpStream) {
    let mut context = WebSocketContext::new(Role::Server, None);
    while let Some(next) = browser.outbox.next() {
        let out = match next {
            Next::Send(out) => out,
            Next::Dropped(updates) => browser.protocol.dropped(updates),
        };
        let sent = match out {
            Out::Text(text) => context
                .write(&mut stream, Message::Text(text))
                .and_then(|()| context.flush(&mut stream)),
            Out::Data { time, frames } => write_frames(&mut context, &mut stream, time, &frames),
            Out::Ping => context
                .write(&mut stream, Message::Ping(Bytes::new()))
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

/// Writes each frame whose subscription is still live as one binary message, then
/// flushes once. The header is the receiver's own (its subscription id); the payload is
/// copied after it here, on the receiver's thread.
fn write_frames(
    context: &mut WebSocketContext,
    stream: &mut TcpStream,
    time: u64,
    frames: &[Frame],
) -> Result<(), Error> {
    for frame in frames {
        if !frame.live.load(Ordering::Acquire) {
            continue;
        }
        let data = crate::foxglove::wire::message_data(frame.subscription, time, &frame.payload);
        context.write(stream, Message::Binary(Bytes::from(data)))?;
    }
    context.flush(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use tungstenite::WebSocket;

    #[test]
    fn a_frame_of_a_subscription_ended_while_it_was_queued_is_not_sent() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut server = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (client, _) = listener.accept().unwrap();
        let mut client = WebSocket::from_raw_socket(client, Role::Client, None);
        let frame = |subscription, live| Frame {
            subscription,
            live: Arc::new(AtomicBool::new(live)),
            payload: Bytes::from_static(b"{\"seq\":7}"),
        };
        let frames = [frame(1, true), frame(2, false), frame(3, true)];
        let mut context = WebSocketContext::new(Role::Server, None);
        write_frames(&mut context, &mut server, 42, &frames).unwrap();
        context
            .write(&mut server, Message::text("end"))
            .and_then(|()| context.flush(&mut server))
            .unwrap();
        let mut sent = Vec::new();
        loop {
            match client.read().unwrap() {
                Message::Binary(data) => sent.push(data[1]),
                Message::Text(text) => {
                    assert_eq!(text.as_str(), "end");
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(sent, [1, 3]);
    }
}

//! The receivers the web view's benchmark and latency example attach: a page, and a
//! Foxglove client subscribed to every channel. Each is a thread with a WebSocket client
//! that reads everything it is sent until the view closes it, and returns how many
//! messages it read.

use serde_json::{json, Value};
use std::net::{SocketAddr, TcpStream};
use std::thread::{self, JoinHandle};
use tungstenite::client::IntoClientRequest;
use tungstenite::Message;

/// What kind of receiver to attach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The page's stream (`/ws`).
    Page,
    /// A Foxglove client (`foxglove.websocket.v1`) subscribed to every channel.
    Foxglove,
}

/// Connects a receiver of `kind` to the view at `addr`; for a Foxglove client, subscribes
/// to every channel it is advertised before returning.
pub fn connect(addr: SocketAddr, kind: Kind) -> JoinHandle<u64> {
    let (path, subprotocol) = match kind {
        Kind::Page => ("/ws", None),
        Kind::Foxglove => ("/", Some(queueserver_web::FOXGLOVE_SUBPROTOCOL)),
    };
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    if let Some(subprotocol) = subprotocol {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", subprotocol.parse().unwrap());
    }
    let (mut socket, _) =
        tungstenite::client::client(request, TcpStream::connect(addr).unwrap()).unwrap();
    if kind == Kind::Foxglove {
        loop {
            let Message::Text(text) = socket.read().unwrap() else {
                continue;
            };
            let message: Value = serde_json::from_str(text.as_str()).unwrap();
            if message["op"] == "advertise" {
                let subscriptions: Vec<Value> = message["channels"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .enumerate()
                    .map(|(n, c)| json!({ "id": n, "channelId": c["id"] }))
                    .collect();
                let subscribe = json!({ "op": "subscribe", "subscriptions": subscriptions });
                socket.send(Message::text(subscribe.to_string())).unwrap();
                break;
            }
        }
    }
    thread::spawn(move || {
        let mut messages = 0u64;
        while socket.read().is_ok() {
            messages += 1;
        }
        messages
    })
}

/// Waits until `receivers` receivers are connected to `view`, each Foxglove client
/// subscribed to the demo plant's seven channels (six values and the snapshot).
pub fn wait_connected<D: queueserver::IDict>(view: &queueserver_web::WebView<D>, receivers: usize) {
    while view.browsers().len()
        + view
            .foxglove_clients()
            .iter()
            .filter(|c| c.subscriptions == 7)
            .count()
        < receivers
    {
        thread::sleep(std::time::Duration::from_millis(1));
    }
}

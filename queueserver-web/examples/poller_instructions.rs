//! The poller's work per update with the web view attached, in instructions: run under
//! callgrind by `queueserver-web/benches/poller-instructions.sh`, which counts what one
//! thread executes inside `poll_once` (`put_update` then `process_updates`) over
//! `--updates` calls, with `--pages` simulated browsers connected (threads with a WebSocket
//! client, reading everything). Instruction counts do not depend on the machine's load.
//!
//! ```text
//! cargo run --release -p queueserver-web --example poller_instructions -- --pages 16 --updates 20000
//! ```

use queueserver::{Publisher, QueueServer};
use queueserver_web::{Options, WebConnection, WebView};
use std::hint::black_box;
use std::net::TcpStream;
use std::thread;
use std::time::Duration;
use tungstenite::client::IntoClientRequest;

#[path = "../benches/common/plant.rs"]
mod plant;
use plant::Plant;

type Server = QueueServer<Plant, WebConnection<Plant>>;

/// One update through the poller: what callgrind counts.
#[inline(never)]
fn poll_once(publisher: &mut Publisher<Plant>, server: &mut Server, step: u64) {
    publisher.put_update(&Plant::at(step));
    black_box(server.process_updates());
}

fn main() {
    let mut pages: Option<usize> = Some(0);
    let mut updates = 20_000u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--pages" => pages = args.next().and_then(|n| n.parse().ok()),
            "--no-view" => pages = None,
            "--updates" => updates = args.next().and_then(|n| n.parse().ok()).unwrap_or(updates),
            other => panic!("unknown argument {other}: --pages N, --no-view, --updates N"),
        }
    }
    let (mut publisher, mut server) = Server::new(Plant::default());
    let view = pages.map(|_| {
        let options = Options::new().max_rate_hz(1000.0).max_browsers(32);
        WebView::serve(&mut server, options).expect("the view starts")
    });
    let readers: Vec<_> = (0..pages.unwrap_or(0))
        .map(|_| {
            let addr = view.as_ref().expect("a view").local_addr();
            let request = format!("ws://{addr}/ws").into_client_request().unwrap();
            let (mut socket, _) =
                tungstenite::client::client(request, TcpStream::connect(addr).unwrap()).unwrap();
            thread::spawn(move || while socket.read().is_ok() {})
        })
        .collect();
    if let Some(view) = &view {
        while view.browsers().len() < readers.len() {
            thread::sleep(Duration::from_millis(1));
        }
    }
    for step in 1..=updates {
        poll_once(&mut publisher, &mut server, step);
    }
    let messages: u64 = view
        .as_ref()
        .map_or(0, |v| v.browsers().iter().map(|b| b.outbox.sent).sum());
    eprintln!(
        "pages {}: {updates} updates, {messages} messages sent to the pages",
        pages.unwrap_or(0)
    );
    drop(view);
    for reader in readers {
        reader.join().unwrap();
    }
}

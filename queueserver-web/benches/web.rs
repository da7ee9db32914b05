//! The poller's cost per update with the web view attached: `put_update` then
//! `process_updates`, with no view, a view with no page, 1 page and 16 pages. Each page is
//! a simulated browser: a thread with a WebSocket client that reads everything it is sent.
//! The pages' rate limit is the highest the view allows (1000/s), so most updates are held
//! and superseded in the pages' outboxes, as at any rate above the pages'; the cost shown
//! is the poller's: one copy of the snapshot, one serialization, one offer per page.

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use queueserver::QueueServer;
use queueserver_web::{Options, WebConnection, WebView};
use std::net::TcpStream;
use std::thread::{self, JoinHandle};
use std::time::Duration;
use tungstenite::client::IntoClientRequest;

#[path = "common/plant.rs"]
mod plant;
use plant::Plant;

/// A page that reads until the view closes it.
fn page(addr: std::net::SocketAddr) -> JoinHandle<()> {
    let request = format!("ws://{addr}/ws").into_client_request().unwrap();
    let stream = TcpStream::connect(addr).unwrap();
    let (mut socket, _) = tungstenite::client::client(request, stream).unwrap();
    thread::spawn(move || while socket.read().is_ok() {})
}

fn poller_cost(c: &mut Criterion) {
    let mut group = c.benchmark_group("web/poller");
    // None: a server with no connection at all; then the view with 0, 1 and 16 pages.
    for pages in [None, Some(0usize), Some(1), Some(16)] {
        let name = match pages {
            None => "no view".to_owned(),
            Some(n) => format!("view, pages {n}"),
        };
        group.bench_function(
            BenchmarkId::new("put_update + process_updates", name),
            |b| {
                let (mut publisher, mut server) =
                    QueueServer::<Plant, WebConnection<Plant>>::new(Plant::default());
                let view = pages.map(|_| {
                    let options = Options::new().max_rate_hz(1000.0).max_browsers(32);
                    WebView::serve(&mut server, options).unwrap()
                });
                let readers: Vec<_> = match &view {
                    Some(view) => (0..pages.unwrap_or(0))
                        .map(|_| page(view.local_addr()))
                        .collect(),
                    None => Vec::new(),
                };
                if let Some(view) = &view {
                    while view.browsers().len() < readers.len() {
                        thread::sleep(Duration::from_millis(1));
                    }
                }
                let mut step = 0;
                b.iter(|| {
                    step += 1;
                    publisher.put_update(&Plant::at(step));
                    server.process_updates()
                });
                drop(view);
                for reader in readers {
                    reader.join().unwrap();
                }
            },
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30)
        .configure_from_args();
    targets = poller_cost
}
criterion_main!(benches);

//! The poller's cost per update with the web view attached: `put_update` then
//! `process_updates`, with no view, a view with no receiver, 1 page, 16 pages, and 16
//! Foxglove clients subscribed to every channel. Each receiver is a thread with a
//! WebSocket client that reads everything it is sent (`common/readers.rs`). The rate limit
//! is the highest the view allows (1000/s), and, for a last case, one a second. The
//! poller's own work is the same in every case with the view: its connection puts the
//! snapshot's `Arc` in the relay's slot and wakes the worker at most once, whatever the
//! receivers. What the receivers add to the figure is the interference of the view's
//! threads (its worker serializes and offers, each receiver's writer writes) with the
//! benchmark's, on the same cores: the case at one update a second, where those threads
//! have next to nothing to do (and the poller wakes the worker only when it is due),
//! shows it.

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use queueserver::QueueServer;
use queueserver_web::{Options, WebConnection, WebView};
use std::time::Duration;

#[path = "common/plant.rs"]
mod plant;
#[path = "common/readers.rs"]
mod readers;
use plant::Plant;
use readers::Kind;

fn poller_cost(c: &mut Criterion) {
    let mut group = c.benchmark_group("web/poller");
    // None: a server with no connection at all; then the view with 0, 1 and 16 pages, and
    // with 16 Foxglove clients, sent up to 1000 updates a second; last, 16 Foxglove clients
    // sent one a second: the same offer on the poller, next to no work on the view's
    // threads.
    let cases = [
        None,
        Some((0usize, Kind::Page, 1000.0)),
        Some((1, Kind::Page, 1000.0)),
        Some((16, Kind::Page, 1000.0)),
        Some((16, Kind::Foxglove, 1000.0)),
        Some((16, Kind::Foxglove, 1.0)),
    ];
    for case in cases {
        let name = match case {
            None => "no view".to_owned(),
            Some((n, Kind::Page, _)) => format!("view, pages {n}"),
            Some((n, Kind::Foxglove, hz)) if hz < 1000.0 => format!("view, foxglove {n}, 1 per s"),
            Some((n, Kind::Foxglove, _)) => format!("view, foxglove {n}"),
        };
        group.bench_function(
            BenchmarkId::new("put_update + process_updates", name),
            |b| {
                let (mut publisher, mut server) =
                    QueueServer::<Plant, WebConnection<Plant>>::new(Plant::default());
                let view = case.map(|(_, _, hz)| {
                    let options = Options::new().max_rate_hz(hz).max_browsers(32);
                    WebView::serve(&mut server, options).unwrap()
                });
                let (count, kind, _) = case.unwrap_or((0, Kind::Page, 0.0));
                let readers: Vec<_> = match &view {
                    Some(view) => (0..count)
                        .map(|_| readers::connect(view.local_addr(), kind))
                        .collect(),
                    None => Vec::new(),
                };
                if let Some(view) = &view {
                    readers::wait_connected(view, readers.len());
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

//! `put_update` latency with 16 pages, or 16 Foxglove clients, watching through the web
//! view, against none.
//!
//! The computation publishes the demo's plant (six `f64`s) every 100 µs on one thread (it
//! spins between publishes), timing each `put_update` into an HdrHistogram. A runner
//! polls every millisecond. With the view, 16 simulated receivers (threads with a
//! WebSocket client, reading everything: `benches/common/readers.rs`) are each sent up to
//! 1000 updates/s: 16 pages, or 16 Foxglove clients subscribed to every channel (the six
//! values and the snapshot). The view's worker thread serializes every snapshot it takes
//! (for Foxglove, each of the seven channels once) and its 33 socket threads write them,
//! on the same cores. The view never touches the computation's thread; what this measures
//! is the interference of that work with it (caches, cores, the scheduler).
//!
//! ```text
//! cargo run --release -p queueserver-web --example web_latency [-- --publishes N]
//! ```

use hdrhistogram::Histogram;
use queueserver::{QueueServer, Runner};
use queueserver_web::{Options, WebConnection, WebView};
use std::time::{Duration, Instant};

#[path = "../benches/common/plant.rs"]
mod plant;
#[path = "../benches/common/readers.rs"]
mod readers;
use plant::Plant;
use readers::Kind;

const PERIOD: Duration = Duration::from_micros(100);
const RECEIVERS: usize = 16;

/// Publishes `publishes` snapshots, one every `PERIOD`, watched by `receivers` receivers of
/// `kind`; returns the latency histogram (ns) and the messages the receivers read.
fn run(receivers: usize, kind: Kind, publishes: u64) -> (Histogram<u64>, u64) {
    let (mut publisher, mut server) =
        QueueServer::<Plant, WebConnection<Plant>>::new(Plant::default());
    let view = (receivers > 0).then(|| {
        let options = Options::new().max_rate_hz(1000.0).max_browsers(RECEIVERS);
        WebView::serve(&mut server, options).expect("the view starts")
    });
    let runner = Runner::every(server, Duration::from_millis(1)).expect("the poller starts");
    let readers: Vec<_> = (0..receivers)
        .map(|_| readers::connect(view.as_ref().unwrap().local_addr(), kind))
        .collect();
    if let Some(view) = &view {
        readers::wait_connected(view, receivers);
    }

    let mut histogram = Histogram::<u64>::new(3).unwrap();
    let mut next = Instant::now();
    for step in 0..publishes {
        next += PERIOD;
        while Instant::now() < next {
            std::hint::spin_loop();
        }
        let plant = Plant::at(step);
        let before = Instant::now();
        publisher.put_update(&plant);
        let took = before.elapsed();
        histogram.saturating_record(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
    }
    drop(view);
    let received: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    runner.shutdown().expect("the poller ran");
    (histogram, received)
}

fn main() {
    let mut publishes = 100_000u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--publishes", Some(n)) => publishes = n.parse().expect("--publishes N"),
            _ => {
                eprintln!("usage: latency [--publishes N]   (default 100000, one per 100 µs)");
                std::process::exit(2);
            }
        }
    }
    println!(
        "put_update latency (ns, timer included), {publishes} publishes every {PERIOD:?}, poller every 1 ms"
    );
    println!(
        "{:<22} {:>7} {:>7} {:>7} {:>8} {:>9}  messages read by the receivers",
        "", "p50", "p99", "p99.9", "p99.99", "max"
    );
    for (receivers, kind) in [
        (0, Kind::Page),
        (RECEIVERS, Kind::Page),
        (RECEIVERS, Kind::Foxglove),
    ] {
        let (h, received) = run(receivers, kind, publishes);
        let label = match (receivers, kind) {
            (0, _) => "no view".to_owned(),
            (n, Kind::Page) => format!("view, {n} pages"),
            (n, Kind::Foxglove) => format!("view, {n} foxglove"),
        };
        println!(
            "{label:<22} {:>7} {:>7} {:>7} {:>8} {:>9}  {received}",
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.value_at_quantile(0.9999),
            h.max(),
        );
    }
}

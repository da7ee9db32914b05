//! `put_update` latency with 16 pages watching through the web view, against none.
//!
//! The computation publishes the demo's plant (six `f64`s) every 100 µs on one thread (it
//! spins between publishes), timing each `put_update` into an HdrHistogram. A runner
//! polls every millisecond. With the view, 16 simulated browsers (threads with a
//! WebSocket client, reading everything) are each sent up to 1000 updates/s: the poller
//! serializes every snapshot it takes and the view's 33 socket threads write them, on the
//! same two cores. The view never touches the computation's thread; what this measures is
//! the interference of that work with it (caches, cores, the scheduler).
//!
//! ```text
//! cargo run --release -p queueserver-web --example web_latency [-- --publishes N]
//! ```

use hdrhistogram::Histogram;
use queueserver::{QueueServer, Runner};
use queueserver_web::{Options, WebConnection, WebView};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;

#[path = "../benches/common/plant.rs"]
mod plant;
use plant::Plant;

const PERIOD: Duration = Duration::from_micros(100);
const PAGES: usize = 16;

/// Publishes `publishes` snapshots, one every `PERIOD`; returns the latency histogram (ns).
fn run(pages: usize, publishes: u64) -> (Histogram<u64>, u64) {
    let (mut publisher, mut server) =
        QueueServer::<Plant, WebConnection<Plant>>::new(Plant::default());
    let view = (pages > 0).then(|| {
        let options = Options::new().max_rate_hz(1000.0).max_browsers(PAGES);
        WebView::serve(&mut server, options).expect("the view starts")
    });
    let runner = Runner::every(server, Duration::from_millis(1)).expect("the poller starts");
    let readers: Vec<_> = (0..pages)
        .map(|_| {
            let addr = view.as_ref().unwrap().local_addr();
            let request = format!("ws://{addr}/ws").into_client_request().unwrap();
            let (mut socket, _) =
                tungstenite::client::client(request, TcpStream::connect(addr).unwrap()).unwrap();
            thread::spawn(move || {
                let mut messages = 0u64;
                while socket.read().is_ok() {
                    messages += 1;
                }
                messages
            })
        })
        .collect();
    if let Some(view) = &view {
        while view.browsers().len() < pages {
            thread::sleep(Duration::from_millis(1));
        }
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
        "{:<22} {:>7} {:>7} {:>7} {:>8} {:>9}  messages read by the pages",
        "", "p50", "p99", "p99.9", "p99.99", "max"
    );
    for pages in [0, PAGES] {
        let (h, received) = run(pages, publishes);
        let label = if pages == 0 {
            "no view".to_owned()
        } else {
            format!("view, {pages} pages")
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

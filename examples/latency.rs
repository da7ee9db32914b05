//! Worst-case latency of publishing a 256 B snapshot under load.
//!
//! ```text
//! cargo run --release --example latency -- [--publishes N] [--fifo]
//! ```
//!
//! The publishing thread runs on core 0 and times every publish with `Instant` into an
//! HdrHistogram. On core 1 run, for each contender in turn, the same load: a poller that
//! takes and copies every new snapshot, and two requesters that read one value over and
//! over. For `QueueServer` the poller calls `poll` (fan-out to a subscriber, answers to
//! the requests) and the requesters call `put_request`; for `Mutex<T>` and tokio's
//! `watch` they lock or borrow the shared snapshot and copy it or read from it.
//!
//! Prints p50, p99, p99.9, p99.99 and max for each contender, the timer's own cost, and
//! how much work the load threads did, so that the runs can be compared.
//!
//! With `--fifo` the publishing thread measures at real-time priority (`SCHED_FIFO` 80, set
//! with `chrt`; needs root or `CAP_SYS_NICE`), as a control loop would run, while the load
//! stays at normal priority: then the tail shows what each primitive makes the publisher
//! wait for, rather than the scheduler handing core 0 to something else.

#[path = "../benches/common/mod.rs"]
mod common;

use common::{pin, Blob, Busy, Sink};
use hdrhistogram::Histogram;
use queueserver::{QueueServer, Request};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

type Snap = Blob<32>;

/// The distribution of one contender's publish times, and the work its load did.
struct Run {
    name: &'static str,
    histogram: Histogram<u64>,
    load: String,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// Whether the publishing thread measures at real-time priority.
static FIFO: AtomicBool = AtomicBool::new(false);

/// Sets the main thread's scheduling policy with `chrt` (its thread id is the process id):
/// `SCHED_FIFO` 80, or back to `SCHED_OTHER`. Threads spawned meanwhile would inherit it,
/// so the load is always spawned before this is raised, and it is lowered again after.
fn set_fifo(on: bool) {
    let pid = std::process::id().to_string();
    let args: [&str; 4] = if on {
        ["-f", "-p", "80", &pid]
    } else {
        ["-o", "-p", "0", &pid]
    };
    let ok = std::process::Command::new("chrt")
        .args(args)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("latency: `chrt {}` failed", args.join(" "));
        std::process::exit(1);
    }
}

/// Times `publish` `n` times on the calling thread (pinned to core 0).
fn measure(n: u64, mut publish: impl FnMut(&Snap)) -> Histogram<u64> {
    pin(0);
    let fifo = FIFO.load(Ordering::Relaxed);
    if fifo {
        set_fifo(true);
    }
    let mut histogram = histogram();
    let mut value = Snap::new(0);
    for i in 0..n {
        value.0[0] = i;
        let start = Instant::now();
        publish(&value);
        histogram.saturating_record(start.elapsed().as_nanos() as u64);
    }
    if fifo {
        set_fifo(false);
    }
    histogram
}

fn queueserver(n: u64) -> Run {
    let (mut publisher, mut server) = QueueServer::<Snap, Sink<32>>::new(Snap::new(0));
    server.add_connection(Sink::subscriber()).unwrap();
    let requesters: Vec<Busy> = (0..2u16)
        .map(|k| {
            let id = server.add_connection(Sink::requester()).unwrap();
            let requester = server.requester();
            Busy::spawn(move || {
                // A refused request (over its share) is handed back; try again.
                let _ = requester.put_request(Request::key(id, k));
            })
        })
        .collect();
    let handled = Arc::new(AtomicU64::new(0));
    let poller = {
        let handled = Arc::clone(&handled);
        Busy::spawn(move || {
            let done = server.poll();
            if done.handled > 0 {
                handled.fetch_add(done.handled as u64, Ordering::Relaxed);
            }
        })
    };
    let histogram = measure(n, |value| publisher.put_update(value));
    let puts: u64 = requesters.into_iter().map(Busy::stop).sum();
    let polls = poller.stop();
    Run {
        name: "queueserver put_update",
        histogram,
        load: format!(
            "poller {polls} polls handling {} deliveries and requests; requesters {puts} put_request calls",
            handled.load(Ordering::Relaxed)
        ),
    }
}

fn mutex(n: u64) -> Run {
    let shared = Arc::new(Mutex::new(Snap::new(0)));
    let requesters: Vec<Busy> = (0..2usize)
        .map(|k| {
            let shared = Arc::clone(&shared);
            Busy::spawn(move || {
                black_box(shared.lock().unwrap().0[k]);
            })
        })
        .collect();
    let poller = {
        let shared = Arc::clone(&shared);
        Busy::spawn(move || {
            let copy = *shared.lock().unwrap();
            black_box(&copy);
        })
    };
    let histogram = measure(n, |value| shared.lock().unwrap().clone_from(value));
    let steps: u64 = requesters.into_iter().map(Busy::stop).sum();
    let polls = poller.stop();
    Run {
        name: "Mutex<T> clone_from",
        histogram,
        load: format!("poller {polls} copies; requesters {steps} reads"),
    }
}

fn watch(n: u64) -> Run {
    let (sender, receiver) = tokio::sync::watch::channel(Snap::new(0));
    let requesters: Vec<Busy> = (0..2usize)
        .map(|k| {
            let receiver = receiver.clone();
            Busy::spawn(move || {
                black_box(receiver.borrow().0[k]);
            })
        })
        .collect();
    let poller = {
        let mut receiver = receiver.clone();
        Busy::spawn(move || {
            if receiver.has_changed().unwrap_or(false) {
                let copy = *receiver.borrow_and_update();
                black_box(&copy);
            }
        })
    };
    let histogram = measure(n, |value| {
        sender.send_replace(*value);
    });
    let steps: u64 = requesters.into_iter().map(Busy::stop).sum();
    let polls = poller.stop();
    drop(receiver);
    Run {
        name: "tokio watch send_replace",
        histogram,
        load: format!("poller {polls} checks; requesters {steps} reads"),
    }
}

fn usage() -> ! {
    eprintln!("usage: latency [--publishes N] [--fifo]   (N > 0, default 10000000)");
    std::process::exit(2);
}

fn main() {
    let mut publishes: u64 = 10_000_000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--fifo" => FIFO.store(true, Ordering::Relaxed),
            "--publishes" => match args.next().and_then(|v| v.parse().ok()) {
                Some(n) if n > 0 => publishes = n,
                _ => usage(),
            },
            _ => usage(),
        }
    }

    let timer = measure(publishes.min(1_000_000), |value| {
        black_box(value);
    });
    let runs = [queueserver(publishes), mutex(publishes), watch(publishes)];

    println!(
        "{publishes} publishes of a {} B snapshot each, publisher at {} priority; times in ns",
        Snap::BYTES,
        if FIFO.load(Ordering::Relaxed) {
            "SCHED_FIFO 80"
        } else {
            "normal"
        }
    );
    println!(
        "timer alone (included in every figure): p50 {} ns, p99 {} ns\n",
        timer.value_at_quantile(0.5),
        timer.value_at_quantile(0.99)
    );
    println!("| contender | p50 | p99 | p99.9 | p99.99 | max |");
    println!("|---|---:|---:|---:|---:|---:|");
    for run in &runs {
        let h = &run.histogram;
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            run.name,
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.value_at_quantile(0.9999),
            h.max()
        );
    }
    let ours = &runs[0].histogram;
    println!("\nratio to queueserver (higher is worse for the other):");
    for run in &runs[1..] {
        let h = &run.histogram;
        let ratio =
            |q: f64| h.value_at_quantile(q) as f64 / ours.value_at_quantile(q).max(1) as f64;
        println!(
            "- {}: p99.9 {:.1}x, p99.99 {:.1}x, max {:.1}x",
            run.name,
            ratio(0.999),
            ratio(0.9999),
            h.max() as f64 / ours.max().max(1) as f64
        );
    }
    println!("\nload on core 1:");
    for run in &runs {
        println!("- {}: {}", run.name, run.load);
    }
}

//! Worst-case latency of publishing a 256 B snapshot under load, and freshness: how long a
//! published snapshot takes to reach its receiver.
//!
//! ```text
//! cargo run --release --example latency -- [--publishes N] [--updates M] [--fifo]
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
//! Freshness: a publisher on core 0 publishes `M` snapshots (default 20,000), 50 µs apart,
//! each carrying the time it was published (taken just before the publishing call). On the
//! other side, a receiver records the time from that moment to the moment it holds
//! the snapshot: for `QueueServer`, a subscribed connection's `on_update` on a
//! `Runner::notified` poller (parked until the publish's `ThreadNotify` unparks it); for
//! tokio's `watch`, `send` → `changed().await` in a task on a current-thread runtime; for
//! `crossbeam-channel`, `send` → a blocking `recv`. Each receiver runs on its own thread,
//! pinned to core 1 when it starts. Prints p50, p99, p99.9 and max, and how many snapshots
//! each receiver got (a watch or a `QueueServer` skips snapshots superseded before it
//! looked; a channel delivers all).
//!
//! With `--fifo` the publishing thread measures at real-time priority (`SCHED_FIFO` 80, set
//! with `chrt`; needs root or `CAP_SYS_NICE`), as a control loop would run, while the load
//! stays at normal priority: then the tail shows what each primitive makes the publisher
//! wait for, rather than the scheduler handing core 0 to something else.

#[path = "../benches/common/mod.rs"]
mod common;

use common::{pin, Blob, Busy, Sink};
use hdrhistogram::Histogram;
use queueserver::{
    Builder, Connection, ConnectionError, QueueServer, Request, Response, Runner, Snapshot,
    ThreadNotify,
};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// Time between two publishes in the freshness runs: long enough that every receiver is
/// back to waiting (parked, or blocked in the kernel) when the next one comes.
const FRESH_PERIOD: Duration = Duration::from_micros(50);

/// One receiver's freshness distribution.
struct Fresh {
    name: &'static str,
    histogram: Histogram<u64>,
    received: u64,
}

/// Nanoseconds since `epoch`, the clock every freshness figure is read from.
fn since(epoch: Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64
}

/// Publishes `m` snapshots, `FRESH_PERIOD` apart, each stamped with the time just before
/// `publish` is called, from the calling thread pinned to core 0 (at real-time priority
/// with `--fifo`, raised once the receiver is spawned).
fn publish_paced(m: u64, epoch: Instant, mut publish: impl FnMut(&Snap)) {
    pin(0);
    let fifo = FIFO.load(Ordering::Relaxed);
    if fifo {
        set_fifo(true);
    }
    let mut value = Snap::new(0);
    for _ in 0..m {
        // From the last publish, not from a schedule: a publisher held up (descheduled)
        // does not catch up with a burst that the receivers would see coalesced.
        let due = Instant::now() + FRESH_PERIOD;
        while Instant::now() < due {
            std::hint::spin_loop();
        }
        value.0[0] = since(epoch);
        publish(&value);
    }
    if fifo {
        set_fifo(false);
    }
}

/// The subscribed connection of the freshness run: records how old each snapshot is when
/// it arrives.
struct Stamped {
    epoch: Instant,
    histogram: Arc<Mutex<Histogram<u64>>>,
    pinned: bool,
}

impl Connection<Snap> for Stamped {
    fn on_update(&mut self, snapshot: &Snapshot<Snap>) -> Result<(), ConnectionError> {
        let now = since(self.epoch);
        if !self.pinned {
            // The runner's poller thread, on its first delivery.
            pin(1);
            self.pinned = true;
        }
        if snapshot.seq() > 0 {
            let mut histogram = self.histogram.lock().unwrap();
            histogram.saturating_record(now.saturating_sub(snapshot.0[0]));
        }
        Ok(())
    }

    fn on_response(&mut self, _: Response<'_, Snap>) -> Result<(), ConnectionError> {
        Ok(())
    }
}

fn fresh_queueserver(m: u64) -> Fresh {
    let epoch = Instant::now();
    let histogram = Arc::new(Mutex::new(histogram()));
    let (mut publisher, mut server) = Builder::new(Snap::new(0))
        .notify(ThreadNotify::new())
        .build()
        .expect("a valid configuration");
    server
        .add_connection(Stamped {
            epoch,
            histogram: Arc::clone(&histogram),
            pinned: false,
        })
        .unwrap();
    let runner = Runner::notified(server).expect("the poller thread starts");
    publish_paced(m, epoch, |value| publisher.put_update(value));
    let server = runner.shutdown().expect("the poller ran to the end");
    let received = server.stats().updates_received;
    let histogram = histogram.lock().unwrap().clone();
    Fresh {
        name: "queueserver put_update → on_update (Runner::notified)",
        histogram,
        received,
    }
}

fn fresh_watch(m: u64) -> Fresh {
    let epoch = Instant::now();
    let (sender, mut receiver) = tokio::sync::watch::channel(Snap::new(0));
    let ready = Arc::new(AtomicBool::new(false));
    let waiter = std::thread::spawn({
        let ready = Arc::clone(&ready);
        move || {
            pin(1);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a current-thread runtime");
            runtime.block_on(async move {
                let mut histogram = histogram();
                let mut received = 0;
                ready.store(true, Ordering::Release);
                while receiver.changed().await.is_ok() {
                    let now = since(epoch);
                    let sent = receiver.borrow_and_update().0[0];
                    histogram.saturating_record(now.saturating_sub(sent));
                    received += 1;
                }
                (histogram, received)
            })
        }
    });
    while !ready.load(Ordering::Acquire) {
        std::thread::yield_now();
    }
    publish_paced(m, epoch, |value| {
        sender.send(*value).expect("the receiver is alive");
    });
    drop(sender);
    let (histogram, received) = waiter.join().expect("the receiver ran");
    Fresh {
        name: "tokio watch send → changed().await (current-thread runtime)",
        histogram,
        received,
    }
}

fn fresh_channel(m: u64) -> Fresh {
    let epoch = Instant::now();
    let (sender, receiver) = crossbeam_channel::bounded::<Snap>(1024);
    let waiter = std::thread::spawn(move || {
        pin(1);
        let mut histogram = histogram();
        let mut received = 0;
        while let Ok(value) = receiver.recv() {
            let now = since(epoch);
            histogram.saturating_record(now.saturating_sub(value.0[0]));
            received += 1;
        }
        (histogram, received)
    });
    publish_paced(m, epoch, |value| {
        sender.send(*value).expect("the receiver is alive");
    });
    drop(sender);
    let (histogram, received) = waiter.join().expect("the receiver ran");
    Fresh {
        name: "crossbeam-channel send → recv (blocking)",
        histogram,
        received,
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: latency [--publishes N] [--updates M] [--fifo]   (N, M > 0; defaults 10000000, 20000)"
    );
    std::process::exit(2);
}

fn main() {
    let mut publishes: u64 = 10_000_000;
    let mut updates: u64 = 20_000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--fifo" => FIFO.store(true, Ordering::Relaxed),
            "--publishes" => match args.next().and_then(|v| v.parse().ok()) {
                Some(n) if n > 0 => publishes = n,
                _ => usage(),
            },
            "--updates" => match args.next().and_then(|v| v.parse().ok()) {
                Some(m) if m > 0 => updates = m,
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

    let fresh = [
        fresh_queueserver(updates),
        fresh_watch(updates),
        fresh_channel(updates),
    ];
    println!(
        "\nfreshness: {updates} snapshots of {} B, one every {} µs, from the publishing call to the \
         receiver holding it; times in ns\n",
        Snap::BYTES,
        FRESH_PERIOD.as_micros()
    );
    println!("| receiver | received | p50 | p99 | p99.9 | max |");
    println!("|---|---:|---:|---:|---:|---:|");
    for run in &fresh {
        let h = &run.histogram;
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            run.name,
            run.received,
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max()
        );
    }
}

//! The receiving side: a `Client::get` round trip, and the wake-up of a `Reader::changed`
//! waiter, side by side with what a user would otherwise write.
//!
//! `get round trip/...`: the measuring thread (core 0) asks for one value of a 256 B
//! snapshot and waits for it; the time is the whole round trip.
//!
//! - `server parked`: the server side sleeps until told. For the crate, a
//!   [`Runner::notified`] poller: `put_request` unparks it, it polls, answers, and the
//!   client's thread is unparked. Against a `crossbeam-channel` request/reply to a server
//!   thread blocked in `recv` (the reply on a channel of the client's), and a `Mutex<T>`
//!   lock and read (no second thread: the floor).
//! - `server spinning`: the server side polls in a loop on core 1 (the crate's
//!   `QueueServer::poll`, crossbeam's `try_recv`).
//!
//! `changed wake-up/...`: a publisher on core 1 publishes a 256 B snapshot while the
//! measuring thread (core 0) is parked in `changed().await` (its waker registered before
//! the publisher is told to go); the time is from just before the publish to the waiter
//! running again.
//!
//! - `publisher polls`: the publisher calls `put_update` then `process_updates` itself, so
//!   the poller's store wakes the waiter: one hop, as tokio's `watch::Sender::send`.
//! - `notified poller`: the publisher only calls `put_update`; a [`Runner::notified`]
//!   poller thread stores the snapshot and wakes the waiter: two hops.
//!
//! The waiter is driven by the same minimal executor for both (park until woken, poll).

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

mod common;

use common::{config, pin, Blob, Busy};
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use queueserver::{Builder, IDict, QueueServer, Runner, ThreadNotify};
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

type Group<'a> = BenchmarkGroup<'a, criterion::measurement::WallTime>;
type Snap = Blob<32>;

const KEY: u16 = 5;
const PATIENCE: Duration = Duration::from_secs(10);

// ----- get round trip -----

type Reply = crossbeam_channel::Sender<Option<u64>>;
type Requests = crossbeam_channel::Sender<(u16, Reply)>;

/// The crossbeam server's work: read the value, send it back.
fn answer(state: &Snap, (key, reply): (u16, Reply)) {
    let _ = reply.send(state.get(&key));
}

/// Times a request through `requests` and the reply on a channel of the caller's.
fn request_reply(group: &mut Group<'_>, name: &str, requests: &Requests) {
    let (reply, replies) = crossbeam_channel::bounded(1);
    group.bench_function(name, |b| {
        b.iter(|| {
            requests.send((KEY, reply.clone())).unwrap();
            black_box(replies.recv().unwrap())
        })
    });
}

fn get_parked(group: &mut Group<'_>) {
    pin(0);
    let (_publisher, mut server) = Builder::new(Snap::new(1))
        .notify(ThreadNotify::new())
        .build()
        .unwrap();
    let client = server.add_client().unwrap();
    let runner = Runner::notified(server).unwrap();
    group.bench_function("queueserver Client::get, notified poller", |b| {
        b.iter(|| black_box(client.get(KEY, PATIENCE).unwrap().value))
    });
    runner.shutdown().unwrap();

    let (requests, server_side) = crossbeam_channel::bounded(64);
    let server = thread::spawn(move || {
        let state = Snap::new(1);
        while let Ok(request) = server_side.recv() {
            answer(&state, request);
        }
    });
    let name = "crossbeam-channel request/reply, server in recv";
    request_reply(group, name, &requests);
    drop(requests);
    server.join().unwrap();

    let shared = Mutex::new(Snap::new(1));
    group.bench_function("Mutex<T> lock and read", |b| {
        b.iter(|| black_box(shared.lock().unwrap().get(&KEY)))
    });
}

fn get_spinning(group: &mut Group<'_>) {
    let (_publisher, mut server) = QueueServer::new(Snap::new(1));
    let client = server.add_client().unwrap();
    let poller = Busy::spawn(move || {
        server.poll();
    });
    group.bench_function("queueserver Client::get, spinning poller", |b| {
        b.iter(|| black_box(client.get(KEY, PATIENCE).unwrap().value))
    });
    drop(poller);

    let (requests, server_side) = crossbeam_channel::bounded(64);
    let state = Snap::new(1);
    let server = Busy::spawn(move || {
        if let Ok(request) = server_side.try_recv() {
            answer(&state, request);
        }
    });
    let name = "crossbeam-channel request/reply, server in try_recv";
    request_reply(group, name, &requests);
    drop(server);
}

// ----- changed wake-up -----

/// Unparks the waiting thread.
struct Unpark(thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `future` once (registering the thread's waker), calls `go`, then parks until
/// the future is ready.
fn wait_after<F: Future>(future: F, go: impl FnOnce()) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
        return output;
    }
    go();
    loop {
        thread::park();
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

/// A publisher on core 1 that publishes when told, stamping the time just before.
struct Publisher {
    go: Arc<AtomicBool>,
    stamp: Arc<AtomicU64>,
    origin: Instant,
    _thread: Busy,
}

impl Publisher {
    fn spawn(mut publish: impl FnMut() + Send + 'static) -> Self {
        let go = Arc::new(AtomicBool::new(false));
        let stamp = Arc::new(AtomicU64::new(0));
        let origin = Instant::now();
        let thread = Busy::spawn({
            let (go, stamp) = (Arc::clone(&go), Arc::clone(&stamp));
            move || {
                if go.swap(false, Ordering::Acquire) {
                    stamp.store(origin.elapsed().as_nanos() as u64, Ordering::Release);
                    publish();
                }
            }
        });
        Self {
            go,
            stamp,
            origin,
            _thread: thread,
        }
    }

    fn go(&self) {
        self.go.store(true, Ordering::Release);
    }

    /// Time since the last publish began.
    fn since_publish(&self) -> Duration {
        let stamp = Duration::from_nanos(self.stamp.load(Ordering::Acquire));
        self.origin.elapsed().saturating_sub(stamp)
    }
}

/// Times `iters` wake-ups: `wait` waits in `changed`, and calls its argument to tell the
/// publisher to go once its waker is registered.
fn time_wakeups(iters: u64, publisher: &Publisher, mut wait: impl FnMut(&dyn Fn())) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        wait(&|| publisher.go());
        total += publisher.since_publish();
    }
    total
}

fn watch(group: &mut Group<'_>) {
    let (tx, mut rx) = tokio::sync::watch::channel(Snap::new(0));
    let mut seq = 0;
    let publisher = Publisher::spawn(move || {
        seq += 1;
        tx.send_replace(Snap::new(seq));
    });
    group.bench_function("tokio watch::Receiver::changed", |b| {
        b.iter_custom(|iters| {
            time_wakeups(iters, &publisher, |go| {
                black_box(wait_after(rx.changed(), go)).unwrap();
            })
        })
    });
}

fn changed_publisher_polls(group: &mut Group<'_>) {
    pin(0);
    let (mut publisher, mut server) =
        QueueServer::<Snap, queueserver::ClientConnection<Snap>>::new(Snap::new(0));
    let mut reader = server.reader();
    let mut seq = 0;
    let publisher = Publisher::spawn(move || {
        seq += 1;
        publisher.put_update(&Snap::new(seq));
        server.process_updates();
    });
    group.bench_function("queueserver Reader::changed, publisher polls", |b| {
        b.iter_custom(|iters| {
            time_wakeups(iters, &publisher, |go| {
                black_box(wait_after(reader.changed(), go)).unwrap();
            })
        })
    });
    drop(publisher);
    watch(group);
}

fn changed_notified(group: &mut Group<'_>) {
    pin(0);
    let (mut publisher, mut server) = Builder::new(Snap::new(0))
        .notify(ThreadNotify::new())
        .build::<queueserver::ClientConnection<Snap>>()
        .unwrap();
    let mut reader = server.reader();
    let runner = Runner::notified(server).unwrap();
    let mut seq = 0;
    let publisher = Publisher::spawn(move || {
        seq += 1;
        publisher.put_update(&Snap::new(seq));
    });
    group.bench_function("queueserver Reader::changed, notified poller", |b| {
        b.iter_custom(|iters| {
            time_wakeups(iters, &publisher, |go| {
                black_box(wait_after(reader.changed(), go)).unwrap();
            })
        })
    });
    drop(publisher);
    runner.shutdown().unwrap();
    watch(group);
}

fn clients(c: &mut Criterion) {
    let mut group = c.benchmark_group("get round trip/server parked");
    get_parked(&mut group);
    group.finish();
    let mut group = c.benchmark_group("get round trip/server spinning");
    get_spinning(&mut group);
    group.finish();
    let mut group = c.benchmark_group("changed wake-up/publisher polls");
    changed_publisher_polls(&mut group);
    group.finish();
    let mut group = c.benchmark_group("changed wake-up/notified poller");
    changed_notified(&mut group);
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = clients
}
criterion_main!(benches);

//! Publishing a snapshot: `Publisher::put_update` side by side with what a loop would
//! otherwise use, at 16 B, 256 B and 4 KiB, with nobody reading ("uncontended") and with
//! a thread on the other core taking and copying every snapshot it can ("contended").
//!
//! Every contender publishes the same value the same way: an in-place copy where the
//! primitive allows one (`clone_from`), a move of a copy where it does not.

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

mod common;

use common::{config, Blob, Busy, Sink};
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use queueserver::QueueServer;
use std::hint::black_box;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

type Group<'a> = BenchmarkGroup<'a, criterion::measurement::WallTime>;

fn queueserver<const W: usize>(group: &mut Group<'_>, contended: bool) {
    let value = Blob::<W>::new(7);
    let (mut publisher, mut server) = QueueServer::<Blob<W>, Sink<W>>::new(Blob::new(0));
    server.add_connection(Sink::subscriber()).unwrap();
    let _busy = contended.then(|| {
        Busy::spawn(move || {
            server.process_updates();
        })
    });
    group.bench_function("queueserver put_update", |b| {
        b.iter(|| publisher.put_update(black_box(&value)))
    });
}

fn triple_buffer<const W: usize>(group: &mut Group<'_>, contended: bool) {
    let value = Blob::<W>::new(7);
    let (mut input, mut output) = triple_buffer::triple_buffer(&Blob::<W>::new(0));
    let _busy = contended.then(|| {
        Busy::spawn(move || {
            if output.update() {
                let copy = *output.output_buffer();
                black_box(&copy);
            }
        })
    });
    group.bench_function("triple_buffer write+publish", |b| {
        b.iter(|| {
            input.input_buffer_mut().clone_from(black_box(&value));
            input.publish()
        })
    });
}

fn mutex<const W: usize>(group: &mut Group<'_>, contended: bool) {
    let value = Blob::<W>::new(7);
    let shared = Arc::new(Mutex::new(Blob::<W>::new(0)));
    let _busy = contended.then(|| {
        let shared = Arc::clone(&shared);
        Busy::spawn(move || {
            let copy = *shared.lock().unwrap();
            black_box(&copy);
        })
    });
    group.bench_function("Mutex clone_from", |b| {
        b.iter(|| shared.lock().unwrap().clone_from(black_box(&value)))
    });
}

fn rwlock<const W: usize>(group: &mut Group<'_>, contended: bool) {
    let value = Blob::<W>::new(7);
    let shared = Arc::new(RwLock::new(Blob::<W>::new(0)));
    let _busy = contended.then(|| {
        let shared = Arc::clone(&shared);
        Busy::spawn(move || {
            let copy = *shared.read().unwrap();
            black_box(&copy);
        })
    });
    group.bench_function("RwLock clone_from", |b| {
        b.iter(|| shared.write().unwrap().clone_from(black_box(&value)))
    });
}

fn tokio_watch<const W: usize>(group: &mut Group<'_>, contended: bool) {
    let value = Blob::<W>::new(7);
    let (sender, mut receiver) = tokio::sync::watch::channel(Blob::<W>::new(0));
    let _busy = contended.then(|| {
        let mut receiver = receiver.clone();
        Busy::spawn(move || {
            if receiver.has_changed().unwrap_or(false) {
                let copy = *receiver.borrow_and_update();
                black_box(&copy);
            }
        })
    });
    group.bench_function("tokio watch send_replace", |b| {
        b.iter(|| sender.send_replace(*black_box(&value)))
    });
    // Keeps a receiver alive for the whole measurement, as a user's would be.
    receiver.mark_unchanged();
}

/// Capacity of the channel: the uncontended case sends this many, then drains untimed.
const CHANNEL: usize = 64;

fn crossbeam_channel<const W: usize>(group: &mut Group<'_>, contended: bool) {
    let value = Blob::<W>::new(7);
    let (sender, receiver) = crossbeam_channel::bounded::<Blob<W>>(CHANNEL);
    if contended {
        let _busy = {
            let receiver = receiver.clone();
            Busy::spawn(move || {
                if let Ok(copy) = receiver.try_recv() {
                    black_box(&copy);
                }
            })
        };
        // A full channel hands the snapshot back; that attempt is timed too.
        group.bench_function("crossbeam-channel try_send", |b| {
            b.iter(|| black_box(sender.try_send(*black_box(&value))))
        });
        return;
    }
    group.bench_function("crossbeam-channel try_send", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(CHANNEL as u64);
                let start = Instant::now();
                for _ in 0..n {
                    sender.try_send(*black_box(&value)).unwrap();
                }
                elapsed += start.elapsed();
                left -= n;
                while receiver.try_recv().is_ok() {}
            }
            elapsed
        })
    });
}

fn arc_swap<const W: usize>(group: &mut Group<'_>, contended: bool) {
    let value = Blob::<W>::new(7);
    let shared = Arc::new(arc_swap::ArcSwap::from_pointee(Blob::<W>::new(0)));
    let _busy = contended.then(|| {
        let shared = Arc::clone(&shared);
        Busy::spawn(move || {
            let copy = **shared.load();
            black_box(&copy);
        })
    });
    group.bench_function("arc-swap store(Arc::new)", |b| {
        b.iter(|| shared.store(Arc::new(*black_box(&value))))
    });
}

fn sized<const W: usize>(c: &mut Criterion) {
    for contended in [false, true] {
        let mode = if contended {
            "contended"
        } else {
            "uncontended"
        };
        let mut group = c.benchmark_group(format!("publish/{}B/{mode}", Blob::<W>::BYTES));
        queueserver::<W>(&mut group, contended);
        triple_buffer::<W>(&mut group, contended);
        mutex::<W>(&mut group, contended);
        rwlock::<W>(&mut group, contended);
        tokio_watch::<W>(&mut group, contended);
        crossbeam_channel::<W>(&mut group, contended);
        arc_swap::<W>(&mut group, contended);
        group.finish();
    }
}

fn publish(c: &mut Criterion) {
    sized::<2>(c);
    sized::<32>(c);
    sized::<512>(c);
}

criterion_group! {
    name = benches;
    config = config();
    targets = publish
}
criterion_main!(benches);

//! Reading the latest snapshot from any thread: `Reader::load` (arc-swap) side by side with
//! an `RwLock` read and a `Mutex` lock of a 256 B snapshot:
//!
//! - `1 thread`: one reader;
//! - `2 threads`: a second reader spinning on the other core;
//! - `2 threads, one writing`: a writer on the other core replacing the snapshot as fast
//!   as it can (for the crate: `put_update` then `process_updates`, which stores each
//!   snapshot for the readers).
//!
//! A read takes the snapshot and reads one word from it.

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

mod common;

use common::{config, Blob, Busy, Sink};
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use queueserver::QueueServer;
use std::hint::black_box;
use std::sync::{Arc, Mutex, RwLock};

type Group<'a> = BenchmarkGroup<'a, criterion::measurement::WallTime>;
type Snap = Blob<32>;

/// Who else runs while the measured thread reads.
#[derive(Clone, Copy, PartialEq)]
enum Other {
    Nobody,
    Reader,
    Writer,
}

fn reader(group: &mut Group<'_>, other: Other) {
    let (mut publisher, mut server) = QueueServer::<Snap, Sink<32>>::new(Snap::new(0));
    let reader = server.reader();
    publisher.put_update(&Snap::new(1));
    server.process_updates();
    let _busy = match other {
        Other::Nobody => None,
        Other::Reader => {
            let reader = reader.clone();
            Some(Busy::spawn(move || {
                black_box(reader.load().0[5]);
            }))
        }
        Other::Writer => {
            let value = Snap::new(2);
            Some(Busy::spawn(move || {
                publisher.put_update(&value);
                server.process_updates();
            }))
        }
    };
    group.bench_function("queueserver Reader::load", |b| {
        b.iter(|| black_box(reader.load().0[5]))
    });
}

fn rwlock(group: &mut Group<'_>, other: Other) {
    let shared = Arc::new(RwLock::new(Snap::new(1)));
    let _busy = (other != Other::Nobody).then(|| {
        let shared = Arc::clone(&shared);
        let value = Snap::new(2);
        Busy::spawn(move || match other {
            Other::Writer => shared.write().unwrap().clone_from(&value),
            _ => drop(black_box(shared.read().unwrap().0[5])),
        })
    });
    group.bench_function("RwLock read", |b| {
        b.iter(|| black_box(shared.read().unwrap().0[5]))
    });
}

fn mutex(group: &mut Group<'_>, other: Other) {
    let shared = Arc::new(Mutex::new(Snap::new(1)));
    let _busy = (other != Other::Nobody).then(|| {
        let shared = Arc::clone(&shared);
        let value = Snap::new(2);
        Busy::spawn(move || match other {
            Other::Writer => shared.lock().unwrap().clone_from(&value),
            _ => drop(black_box(shared.lock().unwrap().0[5])),
        })
    });
    group.bench_function("Mutex lock", |b| {
        b.iter(|| black_box(shared.lock().unwrap().0[5]))
    });
}

fn reads(c: &mut Criterion) {
    for (name, other) in [
        ("1 thread", Other::Nobody),
        ("2 threads", Other::Reader),
        ("2 threads, one writing", Other::Writer),
    ] {
        let mut group = c.benchmark_group(format!("reads/{name}"));
        reader(&mut group, other);
        rwlock(&mut group, other);
        mutex(&mut group, other);
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = config();
    targets = reads
}
criterion_main!(benches);

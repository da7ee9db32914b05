//! The request path.
//!
//! - `put`: `put_request` (quota, demand count, heapless `mpmc` enqueue) side by side with a
//!   push onto a crossbeam `ArrayQueue` and a `std::sync::mpsc` send of the same request.
//!   Each sends 512 requests timed, then drains them untimed.
//! - `consolidate`: `process_requests` on 1,000 queued requests from 8 connections spread
//!   over 10, 100 and 1,000 distinct keys: drain, sort, one read per key, one answer per
//!   connection per key. Only `process_requests` is timed.

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

mod common;

use common::{config, Blob, Sink};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use queueserver::{Builder, Config, ConnectionId, QueueServer, Request};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Requests sent per timed run before an untimed drain.
const RUN: u64 = 512;
/// Requests per `process_requests` call in the consolidation benchmark.
const BATCH: usize = 1000;
const CONNECTIONS: usize = 8;

/// A 1,024-word snapshot (8 KiB): keys 0..1024 all exist.
type Big = Blob<1024>;
type Server = QueueServer<Big, Sink<1024>, queueserver::NoNotify, queueserver::NoClock, 1024, 8>;

fn server(share: u32) -> Server {
    let (_publisher, server) = Builder::new(Big::new(0))
        .capacity::<1024, 8>()
        .config(Config::new().with_max_pending_per_connection(share))
        .build()
        .unwrap();
    server
}

/// Times `send` over runs of `RUN`, calling `drain` untimed after each run.
fn timed_runs(iters: u64, mut send: impl FnMut(), mut drain: impl FnMut()) -> Duration {
    let mut elapsed = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(RUN);
        let start = Instant::now();
        for _ in 0..n {
            send();
        }
        elapsed += start.elapsed();
        left -= n;
        drain();
    }
    elapsed
}

fn put(c: &mut Criterion) {
    let mut group = c.benchmark_group("requests/put");
    group.throughput(Throughput::Elements(1));

    group.bench_function("queueserver put_request", |b| {
        let mut server = server(1024);
        let id = server.add_connection(Sink::requester()).unwrap();
        let requester = server.requester();
        let request = Request::key(id, 3u16);
        b.iter_custom(|iters| {
            timed_runs(
                iters,
                || requester.put_request(black_box(request.clone())).unwrap(),
                || {
                    server.process_requests();
                },
            )
        })
    });

    group.bench_function("crossbeam ArrayQueue push", |b| {
        let queue = crossbeam_queue::ArrayQueue::new(1024);
        let request = Request::key(ConnectionId::from_parts(0, 0, 0), 3u16);
        b.iter_custom(|iters| {
            timed_runs(
                iters,
                || queue.push(black_box(request.clone())).unwrap(),
                || while queue.pop().is_some() {},
            )
        })
    });

    group.bench_function("std mpsc send", |b| {
        let (sender, receiver) = std::sync::mpsc::channel();
        let request = Request::key(ConnectionId::from_parts(0, 0, 0), 3u16);
        b.iter_custom(|iters| {
            timed_runs(
                iters,
                || sender.send(black_box(request.clone())).unwrap(),
                || while receiver.try_recv().is_ok() {},
            )
        })
    });
    group.finish();
}

fn consolidate(c: &mut Criterion) {
    let mut group = c.benchmark_group("requests/process_requests");
    group.throughput(Throughput::Elements(BATCH as u64));
    for keys in [10u16, 100, 1000] {
        group.bench_with_input(
            BenchmarkId::new("1000 requests", keys),
            &keys,
            |b, &keys| {
                let mut server = server(1024 / CONNECTIONS as u32);
                let ids: Vec<ConnectionId> = (0..CONNECTIONS)
                    .map(|_| server.add_connection(Sink::requester()).unwrap())
                    .collect();
                // Keys in a scattered order, so that the sort has work to do.
                let requests: Vec<Request<u16>> = (0..BATCH)
                    .map(|i| {
                        let key = (i as u64 * 7919 % u64::from(keys)) as u16;
                        Request::key(ids[i % CONNECTIONS], key)
                    })
                    .collect();
                b.iter_custom(|iters| {
                    let mut elapsed = Duration::ZERO;
                    for _ in 0..iters {
                        for request in &requests {
                            server.put_request(request.clone()).unwrap();
                        }
                        let start = Instant::now();
                        let done = server.process_requests();
                        elapsed += start.elapsed();
                        assert_eq!(done.handled, BATCH);
                    }
                    elapsed
                })
            },
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = put, consolidate
}
criterion_main!(benches);

//! Fan-out: `process_updates` pushing one new 256 B snapshot to 1, 8 and 64 subscribed
//! connections, each of which copies it. Each iteration publishes, then fans out: the
//! publish alone costs what `publish/256B/uncontended` shows (a few ns).

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

mod common;

use common::{config, Blob, Sink};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use queueserver::{Builder, NoClock, NoNotify, QueueServer};

type Snap = Blob<32>;
type Server = QueueServer<Snap, Sink<32>, NoNotify, NoClock, 64, 64>;

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout/process_updates");
    for connections in [1usize, 8, 64] {
        group.bench_with_input(
            BenchmarkId::new("put_update + process_updates, connections", connections),
            &connections,
            |b, &connections| {
                let (mut publisher, mut server): (_, Server) = Builder::new(Snap::new(0))
                    .capacity::<64, 64>()
                    .build()
                    .unwrap();
                for _ in 0..connections {
                    server.add_connection(Sink::subscriber()).unwrap();
                }
                let value = Snap::new(1);
                b.iter(|| {
                    publisher.put_update(&value);
                    let done = server.process_updates();
                    assert_eq!(done.handled, connections);
                    done
                })
            },
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = fanout
}
criterion_main!(benches);

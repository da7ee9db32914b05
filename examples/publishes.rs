//! Publishes in a plain loop, for counting instructions per publish and reading the
//! generated code.
//!
//! ```text
//! cargo run --release --example publishes -- --publishes N --size S --impl X [--taken]
//! ```
//!
//! `S` is 16, 256 or 4096 (bytes); `X` is `queueserver` (`Publisher::put_update` with a
//! subscriber attached), `triple_buffer` (a raw `triple_buffer`
//! `input_buffer_mut().clone_from` + `publish`) or `mutex` (an uncontended `Mutex<T>`
//! `lock().clone_from`). `N` publishes run on the calling thread.
//!
//! Without `--taken` nobody reads: every publish replaces a snapshot nobody took (a loop
//! that outruns its poller). With `--taken` the reader takes each snapshot between two
//! publishes, on the same thread (`process_updates`, `Output::update`, a lock and a copy):
//! every publish then finds its last snapshot taken, as under a reader that keeps up.
//!
//! Each publish goes through an `#[inline(never)]` function (`publish_queueserver`,
//! `publish_triple_buffer`, `publish_mutex`), so that its code can be read with
//! `objdump -d` and its instructions counted on their own: `benches/instructions.sh` runs
//! this program under valgrind's callgrind, collecting only inside those functions (the
//! copy they call included), and, where the machine has hardware counters, under
//! `perf stat -e instructions:u` (the whole loop, start-up cancelled by two values of `N`).

#[path = "../benches/common/mod.rs"]
mod common;

use common::{Blob, Sink};
use queueserver::{Publisher, QueueServer};
use std::hint::black_box;
use std::sync::Mutex;

#[inline(never)]
fn publish_queueserver<const W: usize>(publisher: &mut Publisher<Blob<W>>, value: &Blob<W>) {
    publisher.put_update(value);
}

#[inline(never)]
fn publish_triple_buffer<const W: usize>(
    input: &mut triple_buffer::Input<Blob<W>>,
    value: &Blob<W>,
) -> bool {
    input.input_buffer_mut().clone_from(value);
    input.publish()
}

#[inline(never)]
fn publish_mutex<const W: usize>(shared: &Mutex<Blob<W>>, value: &Blob<W>) {
    shared.lock().unwrap().clone_from(value);
}

fn run<const W: usize>(imp: &str, n: u64, taken: bool) {
    let value = Blob::<W>::new(7);
    match imp {
        "queueserver" => {
            let (mut publisher, mut server) = QueueServer::<Blob<W>, Sink<W>>::new(Blob::new(0));
            server.add_connection(Sink::subscriber()).unwrap();
            for _ in 0..n {
                publish_queueserver(&mut publisher, black_box(&value));
                if taken {
                    assert_eq!(server.process_updates().handled, 1);
                }
            }
            assert_eq!(publisher.published(), n);
            if taken {
                assert_eq!(server.stats().updates_overwritten, 0);
            }
        }
        "triple_buffer" => {
            let (mut input, mut output) = triple_buffer::triple_buffer(&Blob::<W>::new(0));
            for _ in 0..n {
                black_box(publish_triple_buffer(&mut input, black_box(&value)));
                if taken {
                    assert!(output.update());
                    black_box(output.output_buffer());
                }
            }
        }
        "mutex" => {
            let shared = Mutex::new(Blob::<W>::new(0));
            for _ in 0..n {
                publish_mutex(&shared, black_box(&value));
                if taken {
                    let copy = *shared.lock().unwrap();
                    black_box(&copy);
                }
            }
            assert_eq!(*shared.lock().unwrap(), value);
        }
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: publishes --publishes N --size 16|256|4096 --impl queueserver|triple_buffer|mutex [--taken]"
    );
    std::process::exit(2);
}

fn main() {
    let (mut n, mut size, mut imp, mut taken) = (None, None, None, false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--taken" {
            taken = true;
            continue;
        }
        let value = args.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--publishes" => n = value.parse::<u64>().ok(),
            "--size" => size = value.parse::<usize>().ok(),
            "--impl" => imp = Some(value),
            _ => usage(),
        }
    }
    let (Some(n), Some(size), Some(imp)) = (n, size, imp) else {
        usage()
    };
    match size {
        16 => run::<2>(&imp, n, taken),
        256 => run::<32>(&imp, n, taken),
        4096 => run::<512>(&imp, n, taken),
        _ => usage(),
    }
}

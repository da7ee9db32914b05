//! Worst-case latency of publishing a 256 B snapshot under load, beside the machine's own
//! floor; and freshness: how long a published snapshot takes to reach its receiver.
//!
//! ```text
//! cargo run --release --example latency -- [--seconds S] [--updates M] [--fifo] [--spin]
//! ```
//!
//! # Latency under load
//!
//! The publishing thread (the main thread) runs on core 0 and times every publish with
//! `Instant` into an HdrHistogram, for `S` seconds per contender (default 5). It runs as a
//! control loop does: every 1 ms period it publishes back to back for the first 500 µs,
//! then sleeps until the next period (`--spin`: it never sleeps; see below). On core 1 runs,
//! for each contender in turn, the same load: a poller that takes and copies every new
//! snapshot, and two requesters that read one value. For `QueueServer` the poller calls
//! `poll` (fan-out to a subscriber, answers to the requests) and the requesters call
//! `put_request`; for `Mutex<T>` and tokio's `watch` they lock or borrow the shared
//! snapshot and copy it or read from it. The load is driven two ways, each against all
//! three contenders:
//!
//! - **flat out**: the poller and the requesters loop without pause (the worst case: the
//!   snapshot's cache lines are read on the other core as fast as it can);
//! - **every 1 ms**: each does one step, then sleeps 1 ms, as a `Runner::every(1 ms)`
//!   poller does (`poll`, then park for the period), with requesters asking as often.
//!
//! **The floor.** Just before and just after each measurement, with the same load running,
//! the tool runs `cyclictest` (Debian's `rt-tests`) on core 0 at the publisher's priority
//! for the same `S` seconds (`-i 100`: a wake-up every 100 µs), and prints its max beside
//! ours: the longest the machine itself kept a thread of that priority waiting on that
//! core, in the same minute. A publish longer than the larger of the two is counted as the
//! contender's own stall ("over the floor"). When `cyclictest` is missing, or cannot run
//! (it needs `SCHED_FIFO` whatever priority it is given: root, `CAP_SYS_NICE` or
//! `RLIMIT_RTPRIO`), the tool says so and measures without a floor
//! (`benches/latency-floor.sh` installs it).
//!
//! **Real-time set-up.** With `--fifo` the publishing thread measures at `SCHED_FIFO` 80
//! (set with `chrt`), as a control loop would run, while the load stays at normal
//! priority: then the tail shows what each primitive makes the publisher wait for, rather
//! than the scheduler handing core 0 to something else. Before measuring, the process
//! locks its memory (`mlockall(MCL_CURRENT | MCL_FUTURE)`), and the publishing thread
//! touches 512 KiB of its stack and every page of its histogram, so that no page fault
//! lands inside the measurement. Each needs a privilege (`SCHED_FIFO`: root or
//! `CAP_SYS_NICE`; `mlockall`: root or `CAP_IPC_LOCK`): the tool says which it has and
//! what it could do, and measures anyway.
//!
//! Why the publisher sleeps: a `SCHED_FIFO` thread that never sleeps is stopped by the
//! kernel for up to 50 ms in every second while other work waits on its core (real-time
//! throttling, `/proc/sys/kernel/sched_rt_runtime_us`, or the fair server that replaced it),
//! which would be every contender's max. `--spin` measures that way all the same.
//!
//! Prints p50, p99, p99.9, p99.99 and max for each contender, the floor, the ratios to
//! `QueueServer` and the targets, the timer's own cost, `/proc/loadavg` before and after
//! each set of runs, and how much work the load threads did, so that runs can be compared.
//! It reports; it never fails on a figure.
//!
//! # Freshness
//!
//! A publisher on core 0 publishes `M` snapshots (default 20,000), 50 µs apart, each
//! carrying the time it was published (taken just before the publishing call). On the
//! other side, a receiver records the time from that moment to the moment it holds
//! the snapshot: for `QueueServer`, a subscribed connection's `on_update` on a
//! `Runner::notified` poller (parked until the publish's `ThreadNotify` unparks it); for
//! tokio's `watch`, `send` → `changed().await` in a task on a current-thread runtime; for
//! `crossbeam-channel`, `send` → a blocking `recv`. Each receiver runs on its own thread,
//! on core 1 from its start (it is spawned from there: a thread spawned from core 0 could
//! wait behind the real-time publisher before it got to move). Prints p50, p99, p99.9 and max, and how many snapshots
//! each receiver got (a watch or a `QueueServer` skips snapshots superseded before it
//! looked; a channel delivers all). `--updates 0` skips it.

#[path = "../benches/common/mod.rs"]
mod common;

use common::{pin, Blob, Busy, Sink};
use hdrhistogram::Histogram;
use queueserver::{
    Builder, Connection, ConnectionError, QueueServer, Request, Response, Runner, Snapshot,
    ThreadNotify,
};
use std::hint::black_box;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Snap = Blob<32>;

/// The control period of the publishing loop, and of the paced load.
const PERIOD: Duration = Duration::from_millis(1);
/// How long the publishing loop publishes back to back in each period.
const BURST: Duration = Duration::from_micros(500);
/// cyclictest's wake-up interval, in µs.
const FLOOR_INTERVAL_US: u128 = 100;
/// Bytes of the publishing thread's stack touched before it measures.
const STACK_PREFAULT: usize = 512 * 1024;
/// The real-time priority of the publisher (and of cyclictest) with `--fifo`.
const FIFO_PRIORITY: &str = "80";

/// Bits of `CapEff` in `/proc/self/status` (`linux/capability.h`).
const CAP_IPC_LOCK: u32 = 14;
const CAP_SYS_NICE: u32 = 23;

/// What the run was asked for, and what the machine allowed.
struct Setup {
    /// Measurement time per contender (and per cyclictest run).
    duration: Duration,
    /// Whether the publisher measures at `SCHED_FIFO` (asked for, and allowed).
    fifo: bool,
    /// Whether the publisher never sleeps.
    spin: bool,
    /// Whether the process's memory is locked.
    locked: bool,
    /// The CPU number of core 0, for cyclictest's `-a`.
    cpu: Option<usize>,
    /// Whether `cyclictest` runs.
    cyclictest: bool,
}

/// How the load on core 1 runs.
#[derive(Clone, Copy)]
enum Poller {
    /// Each load thread loops without pause.
    FlatOut,
    /// Each load thread does one step, then sleeps for the period.
    Every(Duration),
}

impl Poller {
    fn describe(self) -> String {
        match self {
            Poller::FlatOut => "poller and requesters flat out".into(),
            Poller::Every(period) => format!(
                "poller and requesters every {} ms (one step, then sleep: `Runner::every`)",
                period.as_millis()
            ),
        }
    }

    /// Runs `step` on core 1 until the returned thread is stopped.
    fn spawn(self, mut step: impl FnMut() + Send + 'static) -> Busy {
        match self {
            Poller::FlatOut => Busy::spawn(step),
            Poller::Every(period) => Busy::spawn(move || {
                step();
                std::thread::sleep(period);
            }),
        }
    }
}

/// cyclictest's max on core 0 just before and just after one measurement, in ns.
#[derive(Clone, Copy, Default)]
struct Floor {
    before: Option<u64>,
    after: Option<u64>,
}

impl Floor {
    /// The larger of the two: the machine's own worst in that minute.
    fn max(self) -> Option<u64> {
        match (self.before, self.after) {
            (Some(b), Some(a)) => Some(b.max(a)),
            (b, a) => b.or(a),
        }
    }
}

/// The distribution of one contender's publish times, the floor around it, and the work
/// its load did.
struct Run {
    name: &'static str,
    histogram: Histogram<u64>,
    floor: Floor,
    load: String,
}

/// An empty histogram, every page of its counts touched (written) once, so that recording
/// into it takes no page fault.
fn histogram() -> Histogram<u64> {
    let mut histogram =
        Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds");
    histogram.reset();
    histogram
}

/// The privileges the tool looks at, from `/proc/self/status`.
struct Privileges {
    uid: Option<u32>,
    caps: Option<u64>,
}

impl Privileges {
    fn read() -> Self {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .map(str::trim)
        };
        Self {
            uid: field("Uid:")
                .and_then(|v| v.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok()),
            caps: field("CapEff:").and_then(|v| u64::from_str_radix(v, 16).ok()),
        }
    }

    fn has(&self, cap: u32) -> bool {
        self.caps.is_some_and(|caps| caps & (1 << cap) != 0)
    }

    fn describe(&self) -> String {
        let yes = |cap| if self.has(cap) { "yes" } else { "no" };
        format!(
            "effective uid {}, CAP_SYS_NICE {}, CAP_IPC_LOCK {}",
            self.uid.map_or("unknown".into(), |u| u.to_string()),
            yes(CAP_SYS_NICE),
            yes(CAP_IPC_LOCK)
        )
    }
}

/// Locks the process's memory, present and future, or says why not.
#[cfg(target_os = "linux")]
fn lock_memory(privileges: &Privileges) -> Result<(), String> {
    use nix::sys::mman::{mlockall, MlockAllFlags};
    // Without the capability, mlockall is bounded by RLIMIT_MEMLOCK (8 MiB by default):
    // with MCL_FUTURE every later allocation past it would fail, and abort the tool.
    if !privileges.has(CAP_IPC_LOCK) {
        return Err("not root and no CAP_IPC_LOCK".into());
    }
    mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE)
        .map_err(|e| format!("mlockall failed: {e}"))
}

#[cfg(not(target_os = "linux"))]
fn lock_memory(_: &Privileges) -> Result<(), String> {
    Err("mlockall is only called on Linux".into())
}

/// Writes every page of `STACK_PREFAULT` bytes of the calling thread's stack, so that the
/// measuring loop, called at a shallower depth, never grows it by a page fault.
#[inline(never)]
fn prefault_stack() {
    let mut stack = [0u8; STACK_PREFAULT];
    black_box(&mut stack);
}

/// Sets the main thread's scheduling policy with `chrt` (its thread id is the process id):
/// `SCHED_FIFO` 80, or back to `SCHED_OTHER`. Threads spawned meanwhile would inherit it,
/// so the load is always spawned before this is raised, and it is lowered again after.
/// Returns whether `chrt` succeeded.
fn set_fifo(on: bool) -> bool {
    let pid = std::process::id().to_string();
    let args: [&str; 4] = if on {
        ["-f", "-p", FIFO_PRIORITY, &pid]
    } else {
        ["-o", "-p", "0", &pid]
    };
    let ok = Command::new("chrt")
        .args(args)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("latency: `chrt {}` failed", args.join(" "));
    }
    ok
}

/// Runs cyclictest on core 0 for the measurement's duration, at the publisher's priority;
/// returns its max wake-up latency in ns. Says why when it gives none.
fn cyclictest(setup: &Setup) -> Option<u64> {
    if !setup.cyclictest {
        return None;
    }
    let loops = (setup.duration.as_micros() / FLOOR_INTERVAL_US).max(1);
    run_cyclictest(setup, loops)
        .map_err(|why| eprintln!("latency: {why}"))
        .ok()
}

/// Runs `loops` wake-ups of cyclictest as [`cyclictest`] does; its max in ns, or why not.
fn run_cyclictest(setup: &Setup, loops: u128) -> Result<u64, String> {
    let mut command = Command::new("cyclictest");
    command.args(["-q", "-N", "-i", &FLOOR_INTERVAL_US.to_string()]);
    command.args(["-l", &loops.to_string()]);
    if setup.locked {
        command.arg("-m");
    }
    if let Some(cpu) = setup.cpu {
        command.args(["-a", &cpu.to_string()]);
    }
    if setup.fifo {
        command.args(["-p", FIFO_PRIORITY, "--policy=fifo"]);
    } else {
        command.args(["-p", "0", "--policy=other"]);
    }
    let output = command
        .output()
        .map_err(|e| format!("cyclictest did not start: {e}"))?;
    // The summary line: "T: 0 (1234) P:80 I:100 C:  50000 Min: ... Avg: ... Max:   22816".
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .filter(|line| line.starts_with("T:"))
        .find_map(|line| line.split("Max:").nth(1)?.trim().parse().ok())
        .ok_or_else(|| {
            format!(
                "no max in cyclictest's output ({}): {} {}",
                output.status,
                stdout.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            )
        })
}

/// Times `publish` for `duration` on the calling thread, pinned to core 0: in bursts of
/// [`BURST`] every [`PERIOD`], or without pause with `--spin`.
fn time_publishes(
    setup: &Setup,
    duration: Duration,
    mut publish: impl FnMut(&Snap),
) -> Histogram<u64> {
    pin(0);
    let mut histogram = histogram();
    prefault_stack();
    let fifo = setup.fifo && set_fifo(true);
    let mut value = Snap::new(0);
    let start = Instant::now();
    let end = start + duration;
    let mut period = start;
    let mut now = start;
    let mut i = 0u64;
    while now < end {
        let burst_end = if setup.spin { end } else { period + BURST };
        loop {
            i += 1;
            value.0[0] = i;
            let started = Instant::now();
            publish(&value);
            now = Instant::now();
            histogram.saturating_record((now - started).as_nanos() as u64);
            if now >= burst_end {
                break;
            }
        }
        // The next period that has not begun: a loop held up skips periods rather than
        // catching up.
        while period <= now {
            period += PERIOD;
        }
        if !setup.spin && period < end {
            std::thread::sleep(period - now);
            now = Instant::now();
        }
    }
    if fifo {
        set_fifo(false);
    }
    histogram
}

/// The floor just before, `publish` timed for the set duration, and the floor just after.
fn measure(setup: &Setup, publish: impl FnMut(&Snap)) -> (Histogram<u64>, Floor) {
    let before = cyclictest(setup);
    let histogram = time_publishes(setup, setup.duration, publish);
    let after = cyclictest(setup);
    (histogram, Floor { before, after })
}

fn queueserver(setup: &Setup, load: Poller) -> Run {
    let (mut publisher, mut server) = QueueServer::<Snap, Sink<32>>::new(Snap::new(0));
    server.add_connection(Sink::subscriber()).unwrap();
    let requesters: Vec<Busy> = (0..2u16)
        .map(|k| {
            let id = server.add_connection(Sink::requester()).unwrap();
            let requester = server.requester();
            load.spawn(move || {
                // A refused request (over its share) is handed back; try again.
                let _ = requester.put_request(Request::key(id, k));
            })
        })
        .collect();
    let handled = Arc::new(AtomicU64::new(0));
    let poller = {
        let handled = Arc::clone(&handled);
        load.spawn(move || {
            let done = server.poll();
            if done.handled > 0 {
                handled.fetch_add(done.handled as u64, Ordering::Relaxed);
            }
        })
    };
    let (histogram, floor) = measure(setup, |value| publisher.put_update(value));
    let puts: u64 = requesters.into_iter().map(Busy::stop).sum();
    let polls = poller.stop();
    Run {
        name: "queueserver put_update",
        histogram,
        floor,
        load: format!(
            "poller {polls} polls handling {} deliveries and requests; requesters {puts} put_request calls",
            handled.load(Ordering::Relaxed)
        ),
    }
}

fn mutex(setup: &Setup, load: Poller) -> Run {
    let shared = Arc::new(Mutex::new(Snap::new(0)));
    let requesters: Vec<Busy> = (0..2usize)
        .map(|k| {
            let shared = Arc::clone(&shared);
            load.spawn(move || {
                black_box(shared.lock().unwrap().0[k]);
            })
        })
        .collect();
    let poller = {
        let shared = Arc::clone(&shared);
        load.spawn(move || {
            let copy = *shared.lock().unwrap();
            black_box(&copy);
        })
    };
    let (histogram, floor) = measure(setup, |value| shared.lock().unwrap().clone_from(value));
    let steps: u64 = requesters.into_iter().map(Busy::stop).sum();
    let polls = poller.stop();
    Run {
        name: "Mutex<T> clone_from",
        histogram,
        floor,
        load: format!("poller {polls} copies; requesters {steps} reads"),
    }
}

fn watch(setup: &Setup, load: Poller) -> Run {
    let (sender, receiver) = tokio::sync::watch::channel(Snap::new(0));
    let requesters: Vec<Busy> = (0..2usize)
        .map(|k| {
            let receiver = receiver.clone();
            load.spawn(move || {
                black_box(receiver.borrow().0[k]);
            })
        })
        .collect();
    let poller = {
        let mut receiver = receiver.clone();
        load.spawn(move || {
            if receiver.has_changed().unwrap_or(false) {
                let copy = *receiver.borrow_and_update();
                black_box(&copy);
            }
        })
    };
    let (histogram, floor) = measure(setup, |value| {
        sender.send_replace(*value);
    });
    let steps: u64 = requesters.into_iter().map(Busy::stop).sum();
    let polls = poller.stop();
    drop(receiver);
    Run {
        name: "tokio watch send_replace",
        histogram,
        floor,
        load: format!("poller {polls} checks; requesters {steps} reads"),
    }
}

/// `/proc/loadavg`'s three load averages.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// An optional figure in ns, or a dash.
fn ns(value: Option<u64>) -> String {
    value.map_or("-".into(), |v| v.to_string())
}

/// Prints one set of runs (the three contenders under one load), its ratios and targets.
fn print_runs(load: Poller, runs: &[Run], load_before: &str, load_after: &str) {
    println!("\n## {}\n", load.describe());
    println!("load average: {load_before} before, {load_after} after\n");
    println!(
        "| contender | publishes | p50 | p99 | p99.9 | p99.99 | max | cyclictest max before | after | over the floor |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for run in runs {
        let h = &run.histogram;
        let over = run
            .floor
            .max()
            .map(|floor| h.len() - h.count_between(0, floor));
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            run.name,
            h.len(),
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.value_at_quantile(0.9999),
            h.max(),
            ns(run.floor.before),
            ns(run.floor.after),
            ns(over)
        );
    }
    let ours = &runs[0].histogram;
    println!("\nratio to queueserver (higher is worse for the other):");
    let mut p999_ratios = Vec::new();
    for run in &runs[1..] {
        let h = &run.histogram;
        let ratio =
            |q: f64| h.value_at_quantile(q) as f64 / ours.value_at_quantile(q).max(1) as f64;
        p999_ratios.push((run.name, ratio(0.999)));
        println!(
            "- {}: p99.9 {:.1}x, p99.99 {:.1}x, max {:.1}x",
            run.name,
            ratio(0.999),
            ratio(0.9999),
            h.max() as f64 / ours.max().max(1) as f64
        );
    }
    for run in runs {
        if let Some(floor) = run.floor.max() {
            let h = &run.histogram;
            if h.max() > floor {
                println!(
                    "- {}: its max, {} ns, is longer than the machine's floor ({floor} ns): a stall of its own",
                    run.name,
                    h.max()
                );
            }
        }
    }

    let verdict = |met: bool| if met { "met" } else { "missed" };
    let p999 = ours.value_at_quantile(0.999);
    println!("\ntargets (reported, not enforced):");
    println!("- p99.9 <= 1 µs: {p999} ns: {}", verdict(p999 <= 1_000));
    let ratios: Vec<String> = p999_ratios
        .iter()
        .map(|(name, r)| format!("{r:.1}x below {name}"))
        .collect();
    println!(
        "- p99.9 >= 10x below Mutex and watch: {}: {}",
        ratios.join(", "),
        verdict(p999_ratios.iter().all(|(_, r)| *r >= 10.0))
    );
    match runs[0].floor.max() {
        Some(floor) => println!(
            "- max within 2x of cyclictest's max in the same minute: {} ns against {floor} ns ({:.2}x): {}",
            ours.max(),
            ours.max() as f64 / floor.max(1) as f64,
            verdict(ours.max() <= 2 * floor)
        ),
        None => println!("- max within 2x of cyclictest's max: no floor measured"),
    }
    println!("\nload on core 1:");
    for run in runs {
        println!("- {}: {}", run.name, run.load);
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
fn publish_paced(setup: &Setup, m: u64, epoch: Instant, mut publish: impl FnMut(&Snap)) {
    pin(0);
    let fifo = setup.fifo && set_fifo(true);
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
}

impl Connection<Snap> for Stamped {
    fn on_update(&mut self, snapshot: &Snapshot<Snap>) -> Result<(), ConnectionError> {
        let now = since(self.epoch);
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

fn fresh_queueserver(setup: &Setup, m: u64) -> Fresh {
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
        })
        .unwrap();
    pin(1);
    let runner = Runner::notified(server).expect("the poller thread starts");
    publish_paced(setup, m, epoch, |value| publisher.put_update(value));
    let server = runner.shutdown().expect("the poller ran to the end");
    let received = server.stats().updates_received;
    let histogram = histogram.lock().unwrap().clone();
    Fresh {
        name: "queueserver put_update → on_update (Runner::notified)",
        histogram,
        received,
    }
}

fn fresh_watch(setup: &Setup, m: u64) -> Fresh {
    let epoch = Instant::now();
    let (sender, mut receiver) = tokio::sync::watch::channel(Snap::new(0));
    let ready = Arc::new(AtomicBool::new(false));
    pin(1);
    let waiter = std::thread::spawn({
        let ready = Arc::clone(&ready);
        move || {
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
    publish_paced(setup, m, epoch, |value| {
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

fn fresh_channel(setup: &Setup, m: u64) -> Fresh {
    let epoch = Instant::now();
    let (sender, receiver) = crossbeam_channel::bounded::<Snap>(1024);
    pin(1);
    let waiter = std::thread::spawn(move || {
        let mut histogram = histogram();
        let mut received = 0;
        while let Ok(value) = receiver.recv() {
            let now = since(epoch);
            histogram.saturating_record(now.saturating_sub(value.0[0]));
            received += 1;
        }
        (histogram, received)
    });
    publish_paced(setup, m, epoch, |value| {
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
        "usage: latency [--seconds S] [--updates M] [--fifo] [--spin]   (S > 0, M >= 0; defaults 5, 20000)"
    );
    std::process::exit(2);
}

fn main() {
    let mut seconds = 5.0f64;
    let mut updates: u64 = 20_000;
    let mut fifo = false;
    let mut spin = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--fifo" => fifo = true,
            "--spin" => spin = true,
            "--seconds" => match args.next().and_then(|v| v.parse::<f64>().ok()) {
                Some(s) if s > 0.0 && s.is_finite() => seconds = s,
                _ => usage(),
            },
            "--updates" => match args.next().and_then(|v| v.parse().ok()) {
                Some(m) => updates = m,
                _ => usage(),
            },
            _ => usage(),
        }
    }

    // Core 0's CPU number, read before any thread is pinned (a pinned thread sees one core).
    let cpu = core_affinity::get_core_ids().and_then(|ids| ids.first().map(|id| id.id));
    let privileges = Privileges::read();
    println!("privileges: {}", privileges.describe());
    let fifo = fifo && {
        // Tried once here, so that a refusal is said once and the run goes on without it.
        let ok = set_fifo(true) && set_fifo(false);
        if !ok {
            println!(
                "SCHED_FIFO: refused (needs root or CAP_SYS_NICE): measuring at normal priority"
            );
        }
        ok
    };
    let locked = match lock_memory(&privileges) {
        Ok(()) => {
            println!("memory: locked (mlockall MCL_CURRENT | MCL_FUTURE)");
            true
        }
        Err(why) => {
            println!("memory: not locked ({why}): measuring anyway, page faults may show");
            false
        }
    };
    let mut setup = Setup {
        duration: Duration::from_secs_f64(seconds),
        fifo,
        spin,
        locked,
        cpu,
        cyclictest: true,
    };
    // Tried once here: cyclictest may be missing, or refuse to run (it needs SCHED_FIFO
    // whatever the policy asked for: root, CAP_SYS_NICE or RLIMIT_RTPRIO).
    if let Err(why) = run_cyclictest(&setup, 1) {
        println!(
            "floor: cyclictest does not run ({}): measuring without a floor \
             (Debian: apt-get install rt-tests; benches/latency-floor.sh installs it)",
            why.replace('\n', " ")
        );
        setup.cyclictest = false;
    }

    let timer = time_publishes(
        &setup,
        setup.duration.min(Duration::from_secs(1)),
        |value| {
            black_box(value);
        },
    );
    println!(
        "publishing: a {} B snapshot, on CPU {}, at {} priority, {} s per contender, {}; times in ns",
        Snap::BYTES,
        ns(cpu.map(|c| c as u64)),
        if setup.fifo {
            "SCHED_FIFO 80"
        } else {
            "normal"
        },
        seconds,
        if setup.spin {
            "without pause".to_string()
        } else {
            format!(
                "{} µs back to back in every {} ms period",
                BURST.as_micros(),
                PERIOD.as_millis()
            )
        }
    );
    println!(
        "floor: {}",
        if setup.cyclictest {
            format!(
                "cyclictest -i {FLOOR_INTERVAL_US} on the same CPU at the same priority{}, \
                 for the same time just before and after each measurement",
                if setup.locked { ", memory locked" } else { "" }
            )
        } else {
            "none".into()
        }
    );
    println!(
        "timer alone (included in every figure): p50 {} ns, p99 {} ns",
        timer.value_at_quantile(0.5),
        timer.value_at_quantile(0.99)
    );

    for load in [Poller::FlatOut, Poller::Every(PERIOD)] {
        let before = loadavg();
        let runs = [
            queueserver(&setup, load),
            mutex(&setup, load),
            watch(&setup, load),
        ];
        print_runs(load, &runs, &before, &loadavg());
    }

    if updates == 0 {
        return;
    }
    let fresh = [
        fresh_queueserver(&setup, updates),
        fresh_watch(&setup, updates),
        fresh_channel(&setup, updates),
    ];
    println!(
        "\n## freshness: {updates} snapshots of {} B, one every {} µs, from the publishing call to the \
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

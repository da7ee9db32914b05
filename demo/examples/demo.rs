//! A 10 kHz control loop publishing its state through a `QueueServer`.
//!
//! The simulated plant is a damped mass on a spring, held at a setpoint by a PD controller.
//! The setpoint is a square wave, so the figures keep moving. A control thread steps the
//! plant every 100 µs (sleep until just before the deadline, then spin) and publishes
//! every step with [`Publisher::put_update`]: the only crate call on that thread, wait-free
//! and allocation-free. The state is a plain struct of `f64`s with `#[derive(IDict)]`: its
//! keys are the generated `PlantKey`, its values `f64`, and the copy into the triple buffer
//! is a field-by-field copy.
//!
//! A poller thread ([`Runner::every`], 1 ms period) owns the server and its connections,
//! three of them within the process:
//!
//! 1. **ui**: subscribes to updates, which the server limits to one every 33 ms (the limit
//!    applies to every subscriber);
//! 2. **probe**: a [`Client`], which does not subscribe: four threads turn key names into
//!    keys (as a network client would; one name is no key, and is refused there with a
//!    typed error) and ask the client for them in turn (many duplicates), waiting for each
//!    answer as GUI threads would; asks for the same key at the same time share one request;
//! 3. **slow**: subscribes, and takes 2 ms over each update, on the poller's thread.
//!
//! A fourth connection, the live web view (`queueserver-web`), serves a page on
//! `http://127.0.0.1:7878/` (or a free port if that one is taken; `--web ADDR` to choose,
//! `--no-web` to go without) that shows the plant's values, plots them, asks for them, and
//! shows the server's counters as the runner last saw them.
//!
//! A fifth, Zenoh (`queueserver-zenoh`), publishes the plant under `demo/plant` as a peer
//! listening on `tcp/127.0.0.1:7449` (`--no-zenoh` to go without), so that
//! `qs watch demo/plant` in another terminal shows it live and `qs get demo/plant/position`
//! asks for a value; the demo prints the command. Zenoh's runtimes run on two worker threads
//! (`ZENOH_RUNTIME`, unless set, is `queueserver_zenoh::config::SMALL_RUNTIME`).
//!
//! Progress is printed once per second on stderr. At the end the demo prints the loop's
//! period jitter, the latency of `put_update`, the server's counters and each connection's
//! own counts, and checks the server's accounting identities; it exits with status 1 if
//! one does not hold.
//!
//! Every thread runs at ordinary priority, so the jitter figures are what a general-purpose
//! scheduler gives; a real-time priority and a dedicated core for the control thread would
//! tighten them.
//!
//! ```text
//! cargo run --release --example demo [-- --seconds N] [--no-web | --web ADDR] [--no-zenoh]
//! ```

use queueserver::client::DEFAULT_MAX_ASKS;
use queueserver::{
    Answer, Builder, Client, Config, Connection, ConnectionError, IDict, NoNotify, Publisher,
    Response, Runner, Snapshot, StdClock,
};
use queueserver_web::{Options as WebOptions, WebView};
use queueserver_zenoh::{config as zenoh_config, Options as ZenohOptions, Zenoh};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Control loop period: 10 kHz.
const PERIOD: Duration = Duration::from_micros(100);
/// The control loop sleeps until this long before its deadline, then spins.
const SPIN: Duration = Duration::from_micros(50);
/// Poller period.
const POLL_PERIOD: Duration = Duration::from_millis(1);
/// Subscribers get at most one snapshot per this interval (about 30 Hz).
const UI_INTERVAL: Duration = Duration::from_millis(33);
/// Threads asking the probe for values.
const PROBERS: usize = 4;
/// How long a probe thread waits for an answer at most.
const PROBE_TIMEOUT: Duration = Duration::from_millis(100);
/// How long the slow connection takes over each update.
const SLOW_UPDATE: Duration = Duration::from_millis(2);
/// The names the probe asks for, in turn: mostly duplicates, and one the plant lacks.
const PROBE_NAMES: [&str; 6] = [
    "position", "velocity", "position", "force", "position", "torque",
];
/// Default run time.
const DEFAULT_SECONDS: u64 = 10;
/// The prefix the plant is published under on Zenoh.
const ZENOH_PREFIX: &str = "demo/plant";

/// Request queue capacity and connection slots; each connection may queue `Q / MAXC`.
/// Five connections (ui, slow, probe, the web view, Zenoh), and room to spare.
const Q: usize = 64;
const MAXC: usize = 8;

// ----- the plant -------------------------------------------------------------------------

/// The published state of the plant and its controller. Every field an `f64`, so the
/// derived IDict's value type is `f64`; publishing copies it field by field, with no
/// allocation.
#[derive(Clone, Copy, Debug, Default, IDict)]
struct Plant {
    /// Simulated time, s.
    time: f64,
    /// Mass position, m.
    position: f64,
    /// Mass velocity, m/s.
    velocity: f64,
    /// Controller force, N.
    force: f64,
    /// Position the controller tracks, m.
    setpoint: f64,
    /// Kinetic plus spring energy, J.
    energy: f64,
}

impl Plant {
    const MASS: f64 = 1.0;
    const SPRING: f64 = 20.0;
    const DAMPING: f64 = 0.5;
    const KP: f64 = 200.0;
    const KD: f64 = 20.0;
    /// The setpoint toggles between ±AMPLITUDE every HALF_PERIOD seconds.
    const AMPLITUDE: f64 = 0.5;
    const HALF_PERIOD: f64 = 1.0;

    /// Advances the plant by `dt` seconds: PD control, then semi-implicit Euler.
    fn step(&mut self, dt: f64) {
        let phase = (self.time / Self::HALF_PERIOD) as u64;
        self.setpoint = if phase % 2 == 0 {
            Self::AMPLITUDE
        } else {
            -Self::AMPLITUDE
        };
        self.force = Self::KP * (self.setpoint - self.position) - Self::KD * self.velocity;
        let accel = (self.force - Self::SPRING * self.position - Self::DAMPING * self.velocity)
            / Self::MASS;
        self.velocity += accel * dt;
        self.position += self.velocity * dt;
        self.time += dt;
        self.energy = 0.5 * Self::MASS * self.velocity * self.velocity
            + 0.5 * Self::SPRING * self.position * self.position;
    }
}

// ----- connections -----------------------------------------------------------------------

type State = Plant;
type Conn = Box<dyn Connection<State> + Send>;

/// Counts a subscriber shares with the main thread (the poller owns the connection).
#[derive(Debug, Default)]
struct UpdateCounts {
    updates: AtomicU64,
    last_seq: AtomicU64,
}

impl UpdateCounts {
    fn record(&self, snapshot: &Snapshot<State>) {
        self.updates.fetch_add(1, Ordering::Relaxed);
        self.last_seq.store(snapshot.seq(), Ordering::Relaxed);
    }
}

/// A user interface: shows every snapshot it is sent.
struct Ui {
    counts: Arc<UpdateCounts>,
}

impl Connection<State> for Ui {
    fn on_update(&mut self, snapshot: &Snapshot<State>) -> Result<(), ConnectionError> {
        self.counts.record(snapshot);
        Ok(())
    }

    fn on_response(&mut self, _: Response<'_, State>) -> Result<(), ConnectionError> {
        Ok(())
    }
}

/// A consumer that takes [`SLOW_UPDATE`] over each snapshot, on the poller's thread.
struct Slow {
    counts: Arc<UpdateCounts>,
}

impl Connection<State> for Slow {
    fn on_update(&mut self, snapshot: &Snapshot<State>) -> Result<(), ConnectionError> {
        thread::sleep(SLOW_UPDATE);
        self.counts.record(snapshot);
        Ok(())
    }

    fn on_response(&mut self, _: Response<'_, State>) -> Result<(), ConnectionError> {
        Ok(())
    }
}

// ----- the control loop ------------------------------------------------------------------

/// What the control thread shares with the progress printer while it runs.
#[derive(Debug, Default)]
struct LoopCounts {
    steps: AtomicU64,
    overruns: AtomicU64,
}

/// What the control thread hands back when it stops.
struct LoopResult {
    publisher: Publisher<State>,
    /// Time between the starts of consecutive steps, ns.
    periods: Vec<u32>,
    /// Time spent in each `put_update`, ns, timer overhead included.
    put_latency: Vec<u32>,
    /// Median cost of the two `Instant::now` calls around a `put_update`, ns.
    timer_overhead: u32,
    steps: u64,
    overruns: u64,
}

/// Sleeps until `SPIN` before `deadline`, then spins until it.
fn wait_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now + SPIN {
        thread::sleep(deadline - now - SPIN);
    }
    while Instant::now() < deadline {
        std::hint::spin_loop();
    }
}

fn nanos(d: Duration) -> u32 {
    u32::try_from(d.as_nanos()).unwrap_or(u32::MAX)
}

/// Steps the plant every [`PERIOD`] and publishes every step, until `stop`.
///
/// The sample vectors are allocated before the loop starts and never grow: once full,
/// further samples are dropped, so the loop itself does not allocate.
fn control_loop(
    mut publisher: Publisher<State>,
    stop: &AtomicBool,
    counts: &LoopCounts,
    capacity: usize,
) -> LoopResult {
    let mut periods: Vec<u32> = Vec::with_capacity(capacity);
    let mut put_latency: Vec<u32> = Vec::with_capacity(capacity);
    let mut plant = Plant::default();
    let dt = PERIOD.as_secs_f64();
    let (mut steps, mut overruns) = (0u64, 0u64);
    let mut previous: Option<Instant> = None;

    // What the latency measurement costs by itself, measured around nothing.
    let mut empty: Vec<u32> = (0..1000)
        .map(|_| {
            let before = Instant::now();
            nanos(before.elapsed())
        })
        .collect();
    empty.sort_unstable();
    let timer_overhead = quantile(&empty, 0.5);

    let mut deadline = Instant::now() + PERIOD;

    while !stop.load(Ordering::Relaxed) {
        wait_until(deadline);
        let start = Instant::now();
        if let Some(previous) = previous {
            if periods.len() < periods.capacity() {
                periods.push(nanos(start - previous));
            }
        }
        previous = Some(start);
        // A step that starts a whole period late has missed its slot: count it and
        // schedule from now instead of trying to catch up with a burst of steps.
        if start.saturating_duration_since(deadline) > PERIOD {
            overruns += 1;
            deadline = start;
        }
        deadline += PERIOD;

        plant.step(dt);
        let before = Instant::now();
        publisher.put_update(&plant);
        let took = before.elapsed();
        if put_latency.len() < put_latency.capacity() {
            put_latency.push(nanos(took));
        }

        steps += 1;
        counts.steps.store(steps, Ordering::Relaxed);
        counts.overruns.store(overruns, Ordering::Relaxed);
    }

    LoopResult {
        publisher,
        periods,
        put_latency,
        timer_overhead,
        steps,
        overruns,
    }
}

// ----- the probe: a client asked from several threads ----------------------------------

/// How the probe's gets ended, counted by the threads that made them.
#[derive(Debug, Default)]
struct ProbeCounts {
    /// Names that are no key of the plant, refused before anything is asked.
    unknown_names: AtomicU64,
    values: AtomicU64,
    not_found: AtomicU64,
    failed: AtomicU64,
    last_position: AtomicU64,
}

/// Asks `client` for the keys named in [`PROBE_NAMES`] in turn, from the `first`, waiting
/// for each answer, until `stop`. A name that is no key is counted and never asked for.
fn ask_in_turn(client: &Client<State>, first: usize, stop: &AtomicBool, counts: &ProbeCounts) {
    let mut next = first;
    while !stop.load(Ordering::Relaxed) {
        let name = PROBE_NAMES[next];
        next = (next + 1) % PROBE_NAMES.len();
        let Ok(key) = name.parse::<PlantKey>() else {
            counts.unknown_names.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        match client.get(key, PROBE_TIMEOUT) {
            Ok(Answer {
                value: Some(value), ..
            }) => {
                counts.values.fetch_add(1, Ordering::Relaxed);
                if key == PlantKey::Position {
                    counts
                        .last_position
                        .store(value.to_bits(), Ordering::Relaxed);
                }
            }
            Ok(Answer { value: None, .. }) => {
                counts.not_found.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                counts.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

// ----- statistics ------------------------------------------------------------------------

/// The `p`-th quantile (0..=1) of sorted samples, by the nearest-rank method.
fn quantile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn us(ns: u32) -> f64 {
    f64::from(ns) / 1000.0
}

fn parse_seconds() -> Result<u64, String> {
    let mut seconds = DEFAULT_SECONDS;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                let value = args.next().ok_or("--seconds needs a value")?;
                seconds = value
                    .parse()
                    .ok()
                    .filter(|&s| s > 0)
                    .ok_or_else(|| format!("--seconds: not a positive integer: {value}"))?;
            }
            // Read by `web_address`.
            "--no-web" => {}
            "--web" => drop(args.next()),
            // Read by `main`.
            "--no-zenoh" => {}
            "-h" | "--help" => {
                return Err(format!(
                    "usage: demo [--seconds N] [--no-web | --web ADDR] [--no-zenoh]   \
                     (default {DEFAULT_SECONDS} s, the view on {WEB_ADDR}, published on \
                     Zenoh under {ZENOH_PREFIX})"
                ))
            }
            other => return Err(format!("unknown argument: {other} (try --help)")),
        }
    }
    Ok(seconds)
}

// ----- the web view ------------------------------------------------------------------

/// Where the web view listens unless told otherwise.
const WEB_ADDR: &str = "127.0.0.1:7878";

/// The web view's address from the command line: `None` with `--no-web`.
fn web_address() -> Result<Option<std::net::SocketAddr>, String> {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--no-web") {
        return Ok(None);
    }
    let addr = match args.iter().position(|a| a == "--web") {
        Some(at) => args.get(at + 1).ok_or("--web needs an address")?.as_str(),
        None => WEB_ADDR,
    };
    addr.parse()
        .map(Some)
        .map_err(|_| format!("--web: not an address: {addr}"))
}

/// Serves the live web view; on the default address, a free port if it is taken.
fn serve_web<C, const Q: usize, const MAXC: usize>(
    server: &mut queueserver::QueueServer<State, C, NoNotify, StdClock, Q, MAXC>,
    addr: std::net::SocketAddr,
) -> Option<WebView<State>>
where
    C: Connection<State> + From<queueserver_web::WebConnection<State>>,
{
    let mut options = WebOptions::new().bind(addr);
    if addr.to_string() == WEB_ADDR && std::net::TcpListener::bind(addr).is_err() {
        options = options.bind((addr.ip(), 0));
    }
    match WebView::serve(server, options) {
        Ok(view) => {
            println!("web view: open {}", view.url());
            Some(view)
        }
        Err(error) => {
            eprintln!("web view not started: {error}");
            None
        }
    }
}

// ----- zenoh -----------------------------------------------------------------------------

/// Publishes the plant on Zenoh under [`ZENOH_PREFIX`], as a peer listening on
/// [`zenoh_config::DEFAULT_ENDPOINT`], and says how to watch it. Without Zenoh (the port is
/// taken, say) the demo runs on.
fn publish_on_zenoh<C, const Q: usize, const MAXC: usize>(
    server: &mut queueserver::QueueServer<State, C, NoNotify, StdClock, Q, MAXC>,
) -> Option<Zenoh<State>>
where
    C: Connection<State> + From<queueserver_zenoh::ZenohConnection<State>>,
{
    let config = zenoh_config::default();
    match Zenoh::open(server, config, ZENOH_PREFIX, ZenohOptions::new()) {
        Ok(zenoh) => {
            println!(
                "zenoh: published under {ZENOH_PREFIX} on {}; watch it from another terminal:\n  \
                 cargo run --release -p queueserver-zenoh --bin qs -- watch {ZENOH_PREFIX}",
                zenoh_config::DEFAULT_ENDPOINT,
            );
            Some(zenoh)
        }
        Err(error) => {
            eprintln!("zenoh: not published ({error}); the demo runs without it");
            None
        }
    }
}

fn main() -> ExitCode {
    if std::env::var_os("ZENOH_RUNTIME").is_none() {
        // No other thread runs yet: Zenoh reads the variable when the first session opens.
        std::env::set_var("ZENOH_RUNTIME", zenoh_config::SMALL_RUNTIME);
    }
    let with_zenoh = !std::env::args().any(|a| a == "--no-zenoh");
    let (seconds, web_addr) = match parse_seconds().and_then(|s| Ok((s, web_address()?))) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };

    // ----- build the server and its connections (everything allocates here) -----
    let ui_counts = Arc::new(UpdateCounts::default());
    let slow_counts = Arc::new(UpdateCounts::default());
    let probe_counts = Arc::new(ProbeCounts::default());

    // The loop's thread publishes; nothing on it may block, so no hook wakes the poller
    // (`ThreadNotify` would unpark it, a syscall on the control thread). The poller runs
    // every millisecond instead, a delay far below the 33 ms update interval.
    let config = Config::new().with_min_update_interval(UI_INTERVAL);
    let built = Builder::new(Plant::default())
        .notify(NoNotify)
        .clock(StdClock::new())
        .config(config)
        .capacity::<Q, MAXC>()
        .build();
    let (publisher, mut server) = match built {
        Ok(parts) => parts,
        Err(error) => {
            eprintln!("bad configuration: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut add = |connection: Conn| {
        server
            .add_connection(connection)
            .expect("MAXC slots hold the demo's five connections")
    };
    let ui = add(Box::new(Ui {
        counts: Arc::clone(&ui_counts),
    }));
    let slow = add(Box::new(Slow {
        counts: Arc::clone(&slow_counts),
    }));
    let client = Client::attach(server.requester(), DEFAULT_MAX_ASKS, |connection| {
        server.add_connection(connection.into())
    })
    .expect("MAXC slots hold the demo's five connections");
    let probe = client.id();
    let web = web_addr.and_then(|addr| serve_web(&mut server, addr));
    let zenoh = if with_zenoh {
        publish_on_zenoh(&mut server)
    } else {
        None
    };
    let reader = server.reader();
    let share = server.share();

    println!(
        "plant at {:.0} Hz for {seconds} s; poller every {:?}; updates every {:?} at most; \
         queue {Q}, {share} per connection",
        1.0 / PERIOD.as_secs_f64(),
        POLL_PERIOD,
        UI_INTERVAL,
    );
    let mut attached = format!("connections: ui {ui}, probe {probe}, slow {slow}");
    if let Some(id) = web.as_ref().and_then(WebView::connection_id) {
        attached.push_str(&format!(", web {id}"));
    }
    if let Some(zenoh) = &zenoh {
        attached.push_str(&format!(", zenoh {}", zenoh.id()));
    }
    println!("{attached}");

    // ----- start the threads -----
    let runner = match Runner::every(server, POLL_PERIOD) {
        Ok(runner) => runner,
        Err(error) => {
            eprintln!("cannot start the poller: {error}");
            return ExitCode::FAILURE;
        }
    };
    // The page shows the server's counters as of the poller's last cycle.
    let runner = Arc::new(runner);
    if let Some(view) = &web {
        let runner = Arc::clone(&runner);
        view.set_stats(move || runner.stats());
    }
    let stop_loop = Arc::new(AtomicBool::new(false));
    let stop_probe = Arc::new(AtomicBool::new(false));
    let loop_counts = Arc::new(LoopCounts::default());

    let capacity = usize::try_from(seconds)
        .unwrap_or(usize::MAX / 2)
        .saturating_add(1)
        .saturating_mul(10_000);
    let control = {
        let (stop, counts) = (Arc::clone(&stop_loop), Arc::clone(&loop_counts));
        thread::Builder::new()
            .name("control".into())
            .spawn(move || control_loop(publisher, &stop, &counts, capacity))
            .expect("spawn the control thread")
    };
    let probers: Vec<_> = (0..PROBERS)
        .map(|first| {
            let (client, stop) = (client.clone(), Arc::clone(&stop_probe));
            let counts = Arc::clone(&probe_counts);
            thread::Builder::new()
                .name(format!("probe {first}"))
                .spawn(move || ask_in_turn(&client, first, &stop, &counts))
                .expect("spawn a probe thread")
        })
        .collect();

    // ----- progress, once per second -----
    let started = Instant::now();
    for second in 1..=seconds {
        thread::sleep(
            (started + Duration::from_secs(second)).saturating_duration_since(Instant::now()),
        );
        let latest = reader.load();
        eprintln!(
            "[{:>5.1} s] published {:>7}  overruns {:>3}  latest seq {:>7} position {:+.4}  \
             ui {:>4}  slow {:>4}  probe gets {:>6} in {:>6} requests",
            started.elapsed().as_secs_f64(),
            loop_counts.steps.load(Ordering::Relaxed),
            loop_counts.overruns.load(Ordering::Relaxed),
            latest.seq(),
            latest.position,
            ui_counts.updates.load(Ordering::Relaxed),
            slow_counts.updates.load(Ordering::Relaxed),
            probe_counts.values.load(Ordering::Relaxed)
                + probe_counts.not_found.load(Ordering::Relaxed),
            client.stats().requests_sent,
        );
    }

    // ----- shut down: requests first, then the loop, then the poller -----
    stop_probe.store(true, Ordering::Relaxed);
    for prober in probers {
        prober.join().expect("a probe thread panicked");
    }
    stop_loop.store(true, Ordering::Relaxed);
    let LoopResult {
        publisher,
        mut periods,
        mut put_latency,
        timer_overhead,
        steps,
        overruns,
    } = control.join().expect("the control thread panicked");
    let elapsed = started.elapsed();
    if let Some(view) = &web {
        view.clear_stats();
    }
    let Ok(runner) = Arc::try_unwrap(runner) else {
        unreachable!("the view's stats source, the only other owner, is dropped")
    };
    let server = match runner.shutdown() {
        Ok(server) => server,
        Err(crashed) => {
            eprintln!("{crashed}");
            return ExitCode::FAILURE;
        }
    };
    let stats = server.stats();
    let pending = server.pending_requests();
    // Remote gets ask through the Zenoh connection: the server's request counts hold them.
    let remote = zenoh.as_ref().map(Zenoh::ask_stats).unwrap_or_default();
    let zenoh_stats = zenoh.as_ref().map(Zenoh::stats);
    if let Some(zenoh) = zenoh {
        zenoh.close();
    }

    // ----- summary -----
    periods.sort_unstable();
    put_latency.sort_unstable();
    let target = nanos(PERIOD);
    let mut deviation: Vec<u32> = periods.iter().map(|&p| p.abs_diff(target)).collect();
    deviation.sort_unstable();

    println!();
    println!("== summary after {:.2} s ==", elapsed.as_secs_f64());
    println!(
        "control loop: {steps} steps ({:.0} Hz), {overruns} overruns (a step more than one \
         period late)",
        steps as f64 / elapsed.as_secs_f64(),
    );
    println!(
        "  period (target {:.1} µs, {} samples): p50 {:.2} µs, min {:.2} µs, max {:.2} µs",
        us(target),
        periods.len(),
        us(quantile(&periods, 0.5)),
        us(periods.first().copied().unwrap_or(0)),
        us(periods.last().copied().unwrap_or(0)),
    );
    println!(
        "  jitter |period - target|: p50 {:.2} µs, p99 {:.2} µs, max {:.2} µs",
        us(quantile(&deviation, 0.5)),
        us(quantile(&deviation, 0.99)),
        us(quantile(&deviation, 1.0)),
    );
    println!(
        "put_update latency ({} samples, {timer_overhead} ns of timer overhead included): \
         p50 {} ns, p99 {} ns, p99.9 {} ns, max {} ns",
        put_latency.len(),
        quantile(&put_latency, 0.5),
        quantile(&put_latency, 0.99),
        quantile(&put_latency, 0.999),
        quantile(&put_latency, 1.0),
    );
    println!(
        "updates: published {} (server saw {}), received {}, overwritten {}, delivered {}, \
         superseded {}, deliveries {}",
        publisher.published(),
        stats.updates_published,
        stats.updates_received,
        stats.updates_overwritten,
        stats.updates_delivered,
        stats.updates_superseded,
        stats.deliveries,
    );
    println!(
        "requests: accepted {}, rejected {}, consolidated {}, answered {}, orphaned {}, \
         abandoned {}, pending {pending}; reads {}, pending high water {}",
        stats.requests_accepted,
        stats.requests_rejected,
        stats.requests_consolidated,
        stats.requests_answered,
        stats.requests_orphaned,
        stats.requests_abandoned,
        stats.reads,
        stats.pending_high_water,
    );

    let attached = |id| {
        if server.connection(id).is_some() {
            "attached"
        } else {
            "removed"
        }
    };
    println!("connections ({} failed):", stats.connections_failed);
    for (name, id, counts) in [("ui", ui, &ui_counts), ("slow", slow, &slow_counts)] {
        let updates = counts.updates.load(Ordering::Relaxed);
        println!(
            "  {name:<5} {id} {}: {updates} updates ({:.1}/s), last seq {}",
            attached(id),
            updates as f64 / elapsed.as_secs_f64(),
            counts.last_seq.load(Ordering::Relaxed),
        );
    }
    let asks = client.stats();
    let web_asks = web
        .as_ref()
        .and_then(WebView::ask_stats)
        .unwrap_or_default();
    let (got, not_found, failed) = (
        probe_counts.values.load(Ordering::Relaxed),
        probe_counts.not_found.load(Ordering::Relaxed),
        probe_counts.failed.load(Ordering::Relaxed),
    );
    let unknown_names = probe_counts.unknown_names.load(Ordering::Relaxed);
    println!(
        "  probe {probe} {}: {} gets from {PROBERS} threads ({got} values, {not_found} not \
         found, {failed} failed) in {} requests ({} refused for room and put again); \
         {unknown_names} names refused as no key; last position {:+.4}",
        attached(probe),
        got + not_found + failed,
        asks.requests_sent,
        asks.requests_deferred,
        f64::from_bits(probe_counts.last_position.load(Ordering::Relaxed)),
    );
    // Any IDict lists its values by name: what a transport would show.
    let mut values = String::new();
    server.snapshot().visit(|key, value| {
        values.push_str(if values.is_empty() { "" } else { ", " });
        Plant::write_name(key, &mut values).expect("derived keys have names");
        values.push_str(&format!(" {value:+.4}"));
    });
    println!("final snapshot #{}: {values}", server.snapshot().seq());
    if let Some(z) = zenoh_stats {
        println!(
            "zenoh: {} snapshots published ({} overwritten before the sender took them), {} \
             values put; {} remote gets ({} unknown, {} refused) in {} requests, {} replies",
            z.snapshots_published,
            z.snapshots_overwritten,
            z.values_put,
            z.gets,
            z.gets_unknown,
            z.gets_refused,
            remote.requests_sent,
            z.replies,
        );
    }

    // ----- accounting -----
    let checks = [
        (
            "requests_accepted == answered + consolidated + orphaned + abandoned + pending",
            stats.requests_accepted
                == stats.requests_answered
                    + stats.requests_consolidated
                    + stats.requests_orphaned
                    + stats.requests_abandoned
                    + pending as u64,
        ),
        (
            "updates_published == received + overwritten",
            stats.updates_published == stats.updates_received + stats.updates_overwritten,
        ),
        (
            // Shutdown lifts the update rate limit, so the newest snapshot went out too.
            "updates_received == delivered + superseded",
            stats.updates_received == stats.updates_delivered + stats.updates_superseded,
        ),
        (
            "ui received the last publish",
            ui_counts.last_seq.load(Ordering::Relaxed) == publisher.published(),
        ),
        (
            "server saw every publish",
            stats.updates_published == publisher.published(),
        ),
        (
            // The probe, the web view's pages and the remote gets are the only askers.
            "probe + web + zenoh requests sent == requests_accepted",
            asks.requests_sent + web_asks.requests_sent + remote.requests_sent
                == stats.requests_accepted,
        ),
        (
            "probe + web + zenoh requests refused for room == requests_rejected",
            asks.requests_deferred + web_asks.requests_deferred + remote.requests_deferred
                == stats.requests_rejected,
        ),
        (
            "probe + web + zenoh responses == requests_answered",
            asks.responses + web_asks.responses + remote.responses == stats.requests_answered,
        ),
        (
            "probe gets answered == values + not found",
            asks.answered == got + not_found,
        ),
        (
            "probe gets == answered + expired + closed + abandoned + refused",
            got + not_found + failed
                == asks.answered + asks.expired + asks.closed + asks.abandoned + asks.refused,
        ),
        (
            "every key asked for exists: no answer is \"not found\"",
            not_found == 0,
        ),
        (
            "the name that is no key was refused before any ask",
            unknown_names > 0,
        ),
    ];
    let mut ok = true;
    println!("accounting:");
    for (what, holds) in checks {
        println!("  {} {what}", if holds { "ok  " } else { "FAIL" });
        ok &= holds;
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

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
//! A fifth, Zenoh (`queueserver-zenoh`), publishes the plant under `demo/plant` (`--prefix`
//! to choose) as a peer listening on `tcp/127.0.0.1:7449` (`--zenoh-listen` to choose,
//! `--zenoh-router` to join a `zenohd` router as its client instead, `-c FILE` for a Zenoh
//! configuration file, `--no-zenoh` to go without), so that `qs watch demo/plant` in another
//! terminal shows it live and `qs get demo/plant/position` asks for a value; the demo prints
//! the command. When its endpoint is taken (by another demo, say) it says so, and what `qs`
//! will then show, and runs on without Zenoh. Zenoh's runtimes run on two worker threads
//! (`ZENOH_RUNTIME`, unless set, is `queueserver_zenoh::config::SMALL_RUNTIME`).
//!
//! The demo runs until Ctrl-C (SIGINT) or SIGTERM, or for `--seconds N`. Progress is
//! printed once per second on stderr. At the end the demo stops the loop, tells its
//! connections (the web view's pages and Zenoh's watchers see the computation stop), prints
//! the loop's period jitter, the latency of `put_update`, the server's counters, where
//! requests were consolidated and each connection's own counts, checks the server's
//! accounting identities, and exits with status 0, or 1 if one does not hold. A second
//! Ctrl-C ends it at once (status 1). Its memory stays flat however long it runs: the loop's
//! timings go into fixed-size histograms (`hdrhistogram`, three significant digits).
//!
//! Every thread runs at ordinary priority, so the jitter figures are what a general-purpose
//! scheduler gives; a real-time priority and a dedicated core for the control thread would
//! tighten them.
//!
//! ```text
//! cargo run --release --example demo [-- --seconds N] [--no-web | --web ADDR] [--no-zenoh]
//!     [--prefix P] [--zenoh-listen ENDPOINT | --zenoh-router ENDPOINT] [-c FILE]
//! ```

use clap::Parser;
use hdrhistogram::Histogram;
use queueserver::runtime::client::DEFAULT_MAX_ASKS;
use queueserver::{
    Answer, Builder, Client, Config, Connection, ConnectionError, IDict, NoNotify, Publisher,
    Response, Runner, Snapshot, StdClock,
};
use queueserver_web::{Options as WebOptions, WebView};
use queueserver_zenoh::{config as zenoh_config, Options as ZenohOptions, Zenoh};
use std::net::SocketAddr;
use std::path::PathBuf;
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
/// The prefix the plant is published under on Zenoh, by default.
const ZENOH_PREFIX: &str = "demo/plant";
/// The longest time the loop's histograms hold, ns: one minute. Longer samples count as
/// one minute.
const HISTOGRAM_MAX: u64 = 60_000_000_000;

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
    periods: Histogram<u64>,
    /// `|period - PERIOD|`, ns.
    jitter: Histogram<u64>,
    /// Time spent in each `put_update`, ns, timer overhead included.
    put_latency: Histogram<u64>,
    /// Median cost of the two `Instant::now` calls around a `put_update`, ns.
    timer_overhead: u64,
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

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A histogram of nanoseconds up to [`HISTOGRAM_MAX`], three significant digits: about
/// 30 KiB, allocated once.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX, 3).expect("valid histogram bounds")
}

/// Steps the plant every [`PERIOD`] and publishes every step, until `stop`.
///
/// The histograms are allocated before the loop starts and never grow (a sample past
/// their range counts as their largest value), so the loop itself does not allocate and
/// the demo's memory stays flat however long it runs.
fn control_loop(
    mut publisher: Publisher<State>,
    stop: &AtomicBool,
    counts: &LoopCounts,
) -> LoopResult {
    let (mut periods, mut jitter, mut put_latency) = (histogram(), histogram(), histogram());
    let mut plant = Plant::default();
    let dt = PERIOD.as_secs_f64();
    let (mut steps, mut overruns) = (0u64, 0u64);
    let mut previous: Option<Instant> = None;

    // What the latency measurement costs by itself, measured around nothing.
    let mut empty = histogram();
    for _ in 0..1000 {
        let before = Instant::now();
        empty.saturating_record(nanos(before.elapsed()));
    }
    let timer_overhead = quantile(&empty, 0.5);
    let target = nanos(PERIOD);

    let mut deadline = Instant::now() + PERIOD;

    while !stop.load(Ordering::Relaxed) {
        wait_until(deadline);
        let start = Instant::now();
        if let Some(previous) = previous {
            let period = nanos(start - previous);
            periods.saturating_record(period);
            jitter.saturating_record(period.abs_diff(target));
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
        put_latency.saturating_record(nanos(before.elapsed()));

        steps += 1;
        counts.steps.store(steps, Ordering::Relaxed);
        counts.overruns.store(overruns, Ordering::Relaxed);
    }

    LoopResult {
        publisher,
        periods,
        jitter,
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

/// The `p`-th quantile (0..=1) of a histogram's samples (0 when it has none): within
/// 0.1% of the sample of that rank.
fn quantile(histogram: &Histogram<u64>, p: f64) -> u64 {
    if histogram.is_empty() {
        0
    } else {
        histogram.value_at_quantile(p)
    }
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

// ----- the command line ------------------------------------------------------------

/// A 10 kHz control loop publishing its state through a QueueServer, served to its
/// connections: in-process clients, a web view and Zenoh.
///
/// Runs until Ctrl-C or SIGTERM (or --seconds N), then prints the summary and checks its
/// accounting.
#[derive(Debug, Parser)]
#[command(name = "demo", max_term_width = 100)]
struct Args {
    /// Run N seconds, then stop [default: until Ctrl-C or SIGTERM].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    seconds: Option<u64>,
    /// Serve the web view on ADDR (port 0: any free port; on the default address, a free
    /// port if it is taken).
    #[arg(long, value_name = "ADDR", default_value = WEB_ADDR)]
    web: SocketAddr,
    /// No web view.
    #[arg(long, conflicts_with = "web")]
    no_web: bool,
    /// Let pages and Foxglove clients of ORIGIN connect to the web view (as many times as
    /// needed), e.g. https://app.foxglove.dev for Foxglove's web app. By default only the
    /// view's own page may.
    #[arg(long, value_name = "ORIGIN", conflicts_with = "no_web")]
    allow_origin: Vec<String>,
    /// Not on Zenoh.
    #[arg(long)]
    no_zenoh: bool,
    /// The prefix the plant is published under on Zenoh.
    #[arg(long, value_name = "P", default_value = ZENOH_PREFIX, conflicts_with = "no_zenoh")]
    prefix: String,
    /// Listen for Zenoh peers (`qs`, other programs) on ENDPOINT [default:
    /// tcp/127.0.0.1:7449, where `qs` looks by default].
    #[arg(long, value_name = "ENDPOINT", conflicts_with_all = ["no_zenoh", "zenoh_router"])]
    zenoh_listen: Option<String>,
    /// Join the zenohd router at ENDPOINT as its client instead of listening, e.g.
    /// tcp/127.0.0.1:7447.
    #[arg(long, value_name = "ENDPOINT", conflicts_with = "no_zenoh")]
    zenoh_router: Option<String>,
    /// A Zenoh configuration file (JSON5 or YAML, as Zenoh's own tools read it: TLS, user
    /// and password...); --zenoh-listen and --zenoh-router override its endpoints.
    #[arg(short = 'c', long, value_name = "FILE", conflicts_with = "no_zenoh")]
    zenoh_config: Option<PathBuf>,
}

// ----- the web view ------------------------------------------------------------------

/// Where the web view listens unless told otherwise.
const WEB_ADDR: &str = "127.0.0.1:7878";

/// Serves the live web view; on the default address, a free port if it is taken.
fn serve_web<C, const Q: usize, const MAXC: usize>(
    server: &mut queueserver::QueueServer<State, C, NoNotify, StdClock, Q, MAXC>,
    addr: std::net::SocketAddr,
    origins: &[String],
) -> Option<WebView<State>>
where
    C: Connection<State> + From<queueserver_web::WebConnection<State>>,
{
    let mut options = WebOptions::new().bind(addr);
    for origin in origins {
        options = options.allow_origin(origin.as_str());
    }
    if addr.to_string() == WEB_ADDR && std::net::TcpListener::bind(addr).is_err() {
        options = options.bind((addr.ip(), 0));
    }
    match WebView::serve(server, options) {
        Ok(view) => {
            println!("web view: open {}", view.url());
            println!(
                "foxglove: Open connection > Foxglove WebSocket > ws://{}",
                view.local_addr()
            );
            Some(view)
        }
        Err(error) => {
            eprintln!("web view not started: {error}");
            None
        }
    }
}

// ----- zenoh -----------------------------------------------------------------------------

/// The Zenoh configuration the command line asks for, and the options `qs` needs to reach
/// the demo with it (empty: `qs`'s defaults).
fn zenoh_setup(args: &Args) -> Result<(zenoh::Config, String), String> {
    let listen = args.zenoh_listen.as_deref();
    let router = args.zenoh_router.as_deref();
    let config = match &args.zenoh_config {
        None => match (router, listen) {
            (Some(router), _) => zenoh_config::client(&[router]),
            (None, Some(listen)) => zenoh_config::peer(&[listen], &[]),
            (None, None) => Ok(zenoh_config::default()),
        }
        .map_err(|e| format!("bad endpoint: {}", zenoh_config::message(&e)))?,
        Some(file) => {
            let mut config = zenoh_config::from_file(file).map_err(|e| e.to_string())?;
            let (mode, listen, connect): (_, Vec<&str>, Vec<&str>) = match (router, listen) {
                (Some(router), _) => (Some("client"), vec![], vec![router]),
                (None, Some(listen)) => (Some("peer"), vec![listen], vec![]),
                (None, None) => (None, vec![], vec![]),
            };
            zenoh_config::apply(&mut config, mode, &listen, &connect)
                .map_err(|e| format!("bad endpoint: {e}"))?;
            config
        }
    };
    let qs = match (router, listen, &args.zenoh_config) {
        (Some(router), _, _) => format!("-e {router} "),
        (None, Some(listen), _) => {
            format!("-e {} --mode peer ", listen.replace("0.0.0.0", "127.0.0.1"))
        }
        (None, None, Some(_)) => "-c <a configuration that reaches it> ".to_owned(),
        (None, None, None) => String::new(),
    };
    Ok((config, qs))
}

/// The address of a `tcp/` endpoint on this machine, if `endpoint` is one.
fn tcp_address(endpoint: &str) -> Option<SocketAddr> {
    endpoint
        .strip_prefix("tcp/")?
        .split('#')
        .next()?
        .parse()
        .ok()
}

/// Why Zenoh could not open, for a person: a listening endpoint that is taken is named,
/// with what `qs` shows meanwhile and how to run beside it.
fn explain_zenoh_error(error: &dyn std::fmt::Display, args: &Args) -> String {
    let listen = args
        .zenoh_listen
        .as_deref()
        .unwrap_or(zenoh_config::DEFAULT_ENDPOINT);
    let taken = args.zenoh_router.is_none()
        && tcp_address(listen).is_some_and(|addr| {
            std::net::TcpListener::bind(addr)
                .is_err_and(|e| e.kind() == std::io::ErrorKind::AddrInUse)
        });
    if !taken {
        return format!(
            "zenoh: not published ({}); the demo runs without it",
            zenoh_config::message(error)
        );
    }
    let by_default = listen == zenoh_config::DEFAULT_ENDPOINT;
    format!(
        "zenoh: NOT PUBLISHED: {listen} is taken, most likely by another computation (another \
         demo?). {}The demo runs on without Zenoh. To run beside the other one, give this one an \
         endpoint and a prefix of its own:\n  cargo run --release --example demo -- \
         --zenoh-listen tcp/127.0.0.1:7450 --prefix demo/plant2\nand watch it with\n  cargo \
         run --release --example qs -- -e tcp/127.0.0.1:7450 --mode peer watch demo/plant2",
        if by_default {
            format!(
                "`qs` looks there by default, so `qs list` and `qs watch {}` show THAT \
                 computation's values, not this demo's. ",
                args.prefix
            )
        } else {
            String::new()
        }
    )
}

/// Publishes the plant on Zenoh as the command line says (by default under
/// [`ZENOH_PREFIX`], as a peer listening on [`zenoh_config::DEFAULT_ENDPOINT`]), and says
/// how to watch it. Without Zenoh (the port is taken, say) the demo runs on.
fn publish_on_zenoh<C, const Q: usize, const MAXC: usize>(
    server: &mut queueserver::QueueServer<State, C, NoNotify, StdClock, Q, MAXC>,
    args: &Args,
) -> Option<Zenoh<State>>
where
    C: Connection<State> + From<queueserver_zenoh::ZenohConnection<State>>,
{
    let (config, qs) = match zenoh_setup(args) {
        Ok(setup) => setup,
        Err(error) => {
            eprintln!("zenoh: not published: {error}; the demo runs without it");
            return None;
        }
    };
    let prefix = &args.prefix;
    match Zenoh::open(server, config, prefix, ZenohOptions::new()) {
        Ok(zenoh) => {
            let place = match (&args.zenoh_router, &args.zenoh_listen) {
                (Some(router), _) => format!("through the router at {router}"),
                (None, Some(listen)) => format!("on {listen}"),
                (None, None) if args.zenoh_config.is_some() => "as its file says".to_owned(),
                (None, None) => format!("on {}", zenoh_config::DEFAULT_ENDPOINT),
            };
            println!(
                "zenoh: published under {prefix} {place}; watch it from another terminal (the \
                 same build, nothing to compile but qs itself):\n  \
                 cargo run --release --example qs -- {qs}watch {prefix}",
            );
            Some(zenoh)
        }
        Err(error) => {
            eprintln!("{}", explain_zenoh_error(&error, args));
            None
        }
    }
}

fn main() -> ExitCode {
    if std::env::var_os("ZENOH_RUNTIME").is_none() {
        // No other thread runs yet: Zenoh reads the variable when the first session opens.
        std::env::set_var("ZENOH_RUNTIME", zenoh_config::SMALL_RUNTIME);
    }
    // --help exits 0, a usage error 2, each with clap's message.
    let args = Args::try_parse().unwrap_or_else(|error| error.exit());

    // SIGINT (Ctrl-C) and SIGTERM end the run cleanly: the flag stops the progress loop,
    // then everything shuts down in order and the summary is printed. A second one ends
    // the process at once (status 1), should the clean stop hang. The handlers only set
    // flags (signal-hook), on whatever thread the signal lands.
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let registered =
            signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&interrupted))
                .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&interrupted)));
        if let Err(error) = registered {
            eprintln!("cannot handle signal {signal}: {error}");
            return ExitCode::FAILURE;
        }
    }

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
    let web = if args.no_web {
        None
    } else {
        serve_web(&mut server, args.web, &args.allow_origin)
    };
    let zenoh = if args.no_zenoh {
        None
    } else {
        publish_on_zenoh(&mut server, &args)
    };
    let reader = server.reader();
    let share = server.share();

    let run = match args.seconds {
        Some(seconds) => format!("for {seconds} s"),
        None => "until Ctrl-C".to_owned(),
    };
    println!(
        "plant at {:.0} Hz {run}; poller every {:?}; updates every {:?} at most; \
         queue {Q}, {share} per connection",
        1.0 / PERIOD.as_secs_f64(),
        POLL_PERIOD,
        UI_INTERVAL,
    );
    let mut attached = format!("connections: ui {ui}, probe {probe}, slow {slow}");
    if let Some(id) = web.as_ref().and_then(WebView::connection_id) {
        attached.push_str(&format!(", web {id}"));
    }
    if let Some(id) = zenoh.as_ref().and_then(Zenoh::id) {
        attached.push_str(&format!(", zenoh {id}"));
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

    let control = {
        let (stop, counts) = (Arc::clone(&stop_loop), Arc::clone(&loop_counts));
        thread::Builder::new()
            .name("control".into())
            .spawn(move || control_loop(publisher, &stop, &counts))
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

    // ----- progress, once per second, until the end of the run or a signal -----
    let started = Instant::now();
    let end = args.seconds.map(|s| started + Duration::from_secs(s));
    for second in 1.. {
        let next = started + Duration::from_secs(second);
        let next = end.map_or(next, |end| next.min(end));
        while !interrupted.load(Ordering::Relaxed) && Instant::now() < next {
            thread::sleep(Duration::from_millis(20).min(next - Instant::now()));
        }
        if interrupted.load(Ordering::Relaxed) {
            eprintln!(
                "[{:>5.1} s] interrupted: stopping the loop, then the summary (interrupt again \
                 to quit at once)",
                started.elapsed().as_secs_f64()
            );
            break;
        }
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
        if end.is_some_and(|end| Instant::now() >= end) {
            break;
        }
    }

    // ----- shut down: requests first, then the loop, then the poller -----
    stop_probe.store(true, Ordering::Relaxed);
    for prober in probers {
        prober.join().expect("a probe thread panicked");
    }
    stop_loop.store(true, Ordering::Relaxed);
    let LoopResult {
        publisher,
        periods,
        jitter,
        put_latency,
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
    let target = nanos(PERIOD);

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
        us(quantile(&periods, 0.0)),
        us(quantile(&periods, 1.0)),
    );
    println!(
        "  jitter |period - target|: p50 {:.2} µs, p99 {:.2} µs, max {:.2} µs",
        us(quantile(&jitter, 0.5)),
        us(quantile(&jitter, 0.99)),
        us(quantile(&jitter, 1.0)),
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
            "zenoh: {} snapshots published ({} superseded before the worker took them), {} \
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

    // Asks of one key share one request where they meet: in a client first, then in the
    // server's batch.
    println!(
        "consolidation: in the clients (one request per key in flight, its answer shared by \
         every ask of that key): probe {} asks in {} requests, web {} in {}, zenoh {} in {}; \
         in the server: {} requests consolidated (a connection's repeat of a request still \
         queued), {} answers from {} reads",
        asks.asked,
        asks.requests_sent,
        web_asks.asked,
        web_asks.requests_sent,
        remote.asked,
        remote.requests_sent,
        stats.requests_consolidated,
        stats.requests_answered,
        stats.reads,
    );

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

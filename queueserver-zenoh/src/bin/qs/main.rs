//! `qs`: list, watch and query queueserver computations over Zenoh.
//!
//! ```text
//! qs [-c FILE] [-e ENDPOINT]... [--mode peer|client] list
//! qs [...] watch P [--interval MS] [--frames N]
//! qs [...] get KEYEXPR [--timeout MS]
//! qs [...] device ADDR --prefix P [--listen ENDPOINT]... [--baud N] [--web ADDR]
//! qs completions SHELL
//! ```
//!
//! Without `-e` or `-c`, `qs` is a peer that connects to `tcp/127.0.0.1:7449`, where a
//! computation listens by default. With `-e tcp/host:port` it is a client of the router
//! there (or a peer of that endpoint with `--mode peer`). `-c FILE` reads a Zenoh
//! configuration file, as Zenoh's own tools do; `-e` and `--mode` override it. `qs device`
//! publishes a microcontroller that speaks `queueserver-link` (see `device.rs`): it listens
//! on `tcp/127.0.0.1:7449` by default, where the other commands look. The crate's README
//! says what each command shows and how it decides what to trust.

#![forbid(unsafe_code)]

mod device;
mod table;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use queueserver_zenoh::{config, wire};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use table::{Snapshot, Table};
use zenoh::key_expr::{KeyExpr, OwnedKeyExpr};
use zenoh::sample::{Sample, SampleKind};
use zenoh::{Session, Wait};

/// List, watch and query queueserver computations over Zenoh.
///
/// Without -e or -c, qs is a peer that connects to tcp/127.0.0.1:7449, where a computation
/// (the workspace's demo, say) listens by default; multicast scouting is off.
#[derive(Debug, Parser)]
#[command(name = "qs", version, max_term_width = 100)]
struct Cli {
    #[command(flatten)]
    zenoh: ZenohArgs,
    #[command(subcommand)]
    command: Command,
}

/// How to reach the computations.
#[derive(Debug, Args)]
struct ZenohArgs {
    /// A Zenoh configuration file (JSON5 or YAML, as Zenoh's own tools read it): TLS,
    /// user and password, endpoints, mode. -e and --mode override it.
    #[arg(short = 'c', long = "config", value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Connect to ENDPOINT (repeatable), e.g. tcp/10.0.0.5:7447: a zenohd router, as its
    /// client; a computation itself with --mode peer.
    #[arg(short = 'e', long = "connect", value_name = "ENDPOINT", global = true)]
    connect: Vec<String>,
    /// The session's mode [default: peer without -e, client with it, or the file's].
    #[arg(long, value_enum, global = true)]
    mode: Option<Mode>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Talks to the endpoints it connects to, a computation directly.
    Peer,
    /// Talks through the router it connects to.
    Client,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Self::Peer => "peer",
            Self::Client => "client",
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The computations running: each liveliness token, confirmed by a get of its
    /// P/@snapshot, with its seq and number of values.
    List {
        /// How long to wait for tokens and for each computation's answer, ms.
        #[arg(long, value_name = "MS", default_value = "1000", value_parser = millis)]
        timeout: Duration,
    },
    /// A live table of the values under prefix P, with their seq and rates; Ctrl-C ends it.
    Watch {
        /// The computation's prefix, e.g. demo/plant (`qs list` shows them).
        #[arg(value_name = "P")]
        prefix: String,
        /// Refresh period, ms.
        #[arg(long, value_name = "MS", default_value = "500", value_parser = millis)]
        interval: Duration,
        /// Stop after N refreshes [default: until interrupted].
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        frames: Option<u64>,
    },
    /// Get values: P/NAME, a wildcard (P/**, P/motor/*) or P/@snapshot.
    ///
    /// Prints `key = json  (seq N)` for each reply and `error: text` on stderr for each
    /// error reply. Exits 0 when values came, 1 on an error reply, 2 when no reply came.
    Get {
        /// A key expression, e.g. demo/plant/position, 'demo/plant/**', demo/plant/@snapshot.
        #[arg(value_name = "KEYEXPR")]
        key: String,
        /// How long to wait for replies, ms.
        #[arg(long, value_name = "MS", default_value = "2000", value_parser = millis)]
        timeout: Duration,
    },
    /// Publish a microcontroller that speaks queueserver-link under P, as any computation:
    /// values on P/NAME, P/@snapshot, gets through the device, the token P while it answers.
    ///
    /// Without -e or -c it listens on tcp/127.0.0.1:7449, where `qs watch P` looks; with
    /// -e it is a client of that router. With --web ADDR it also serves the device's web
    /// view there. Runs until stopped (Ctrl-C). The device is never reset: a line that
    /// fails or goes silent is opened again, and its seq goes on.
    Device(device::DeviceArgs),
    /// Print a completion script for SHELL on stdout, e.g. `qs completions bash >
    /// ~/.local/share/bash-completion/completions/qs`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// A positive number of milliseconds.
fn millis(text: &str) -> Result<Duration, String> {
    match text.parse::<u64>() {
        Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
        _ => Err(format!("not a positive number of milliseconds: {text}")),
    }
}

/// Where the session goes, for messages: its connect endpoints or the file.
struct Opened {
    session: Session,
    /// Where it looks, in words: `tcp/127.0.0.1:7449`, `the router at ...`.
    place: String,
}

fn open(args: &ZenohArgs) -> Result<Opened, String> {
    let connect: Vec<&str> = args.connect.iter().map(String::as_str).collect();
    let config = match &args.config {
        None => {
            let client = args.mode.map_or(!connect.is_empty(), |m| m == Mode::Client);
            let connect = if connect.is_empty() {
                vec![config::DEFAULT_ENDPOINT]
            } else {
                connect.clone()
            };
            if client {
                config::client(&connect)
            } else {
                config::peer(&[], &connect)
            }
            .map_err(|e| format!("bad endpoint: {}", config::message(&e)))?
        }
        Some(file) => {
            let mut config = config::from_file(file).map_err(|e| e.to_string())?;
            let mode = args
                .mode
                .or_else(|| (!connect.is_empty()).then_some(Mode::Client))
                .filter(|_| args.mode.is_some() || config::mode(&config).is_none());
            config::apply(&mut config, mode.map(Mode::name), &[], &connect)
                .map_err(|e| format!("bad endpoint: {e}"))?;
            config
        }
    };
    let client = config::mode(&config).as_deref() == Some("client");
    let endpoints = config
        .get_json("connect/endpoints")
        .ok()
        .and_then(|json| serde_json::from_str::<Vec<String>>(&json).ok())
        .unwrap_or_default()
        .join(", ");
    let place = match (client, endpoints.is_empty()) {
        (true, _) => format!("the router at {endpoints}"),
        (false, false) => endpoints.clone(),
        (false, true) => "the peers multicast scouting finds".to_owned(),
    };
    let session = zenoh::open(config).wait().map_err(|e| {
        let why = config::message(&e);
        if client {
            format!(
                "no router answers at {endpoints} ({why}). Is zenohd running there? Without \
                 a router, reach a computation directly: qs -e ENDPOINT --mode peer"
            )
        } else {
            format!("cannot open a Zenoh session: {why}")
        }
    })?;
    if !client {
        // A peer connects in the background: give it a moment to reach its endpoints.
        let wanted = connect.len().max(1);
        let deadline = Instant::now() + Duration::from_secs(2);
        while session.info().peers_zid().wait().count() < wanted && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(Opened { session, place })
}

/// What to try when nothing answers at `place`.
fn hint(place: &str) -> String {
    format!(
        "nothing answers at {place}: is the computation running (the demo: `cargo run \
         --release --example demo`)? Through a router: qs -e tcp/HOST:7447"
    )
}

fn payload(sample: &Sample) -> String {
    sample
        .payload()
        .try_to_string()
        .map(|s| s.into_owned())
        .unwrap_or_else(|_| format!("<{} bytes>", sample.payload().len()))
}

/// The prefixes with a liveliness token, sorted, each once.
fn tokens(session: &Session, timeout: Duration) -> Result<Vec<String>, String> {
    let replies = session
        .liveliness()
        .get("**")
        .timeout(timeout)
        .wait()
        .map_err(|e| config::message(&e))?;
    let mut prefixes: Vec<String> = Vec::new();
    while let Ok(reply) = replies.recv() {
        if let Ok(sample) = reply.result() {
            prefixes.push(sample.key_expr().to_string());
        }
    }
    prefixes.sort();
    prefixes.dedup();
    Ok(prefixes)
}

/// A computation's answer to a get of `P/@snapshot`: the first reply on that very key
/// that reads as a snapshot, if any came within `timeout`.
fn confirm(session: &Session, prefix: &str, timeout: Duration) -> Option<Snapshot> {
    let key = format!("{prefix}/{}", wire::SNAPSHOT_CHUNK);
    let replies = session.get(&key).timeout(timeout).wait().ok()?;
    while let Ok(reply) = replies.recv() {
        if let Ok(sample) = reply.result() {
            if sample.key_expr().as_str() == key {
                if let Some(snapshot) = Snapshot::parse(&payload(sample)) {
                    return Some(snapshot);
                }
            }
        }
    }
    None
}

fn list(session: &Opened, timeout: Duration) -> Result<ExitCode, String> {
    let prefixes = tokens(&session.session, timeout)?;
    // Every computation asked at once: the whole list waits one timeout at most.
    let answers: Vec<(String, Option<Snapshot>)> = std::thread::scope(|scope| {
        let asks: Vec<_> = prefixes
            .iter()
            .map(|prefix| {
                let session = &session.session;
                (
                    prefix.clone(),
                    scope.spawn(move || confirm(session, prefix, timeout)),
                )
            })
            .collect();
        asks.into_iter()
            .map(|(prefix, ask)| (prefix, ask.join().ok().flatten()))
            .collect()
    });
    let (answering, silent): (Vec<_>, Vec<_>) = answers
        .into_iter()
        .partition(|(_, snapshot)| snapshot.is_some());
    if answering.is_empty() {
        eprintln!("no computation found: {}", hint(&session.place));
    } else {
        println!("{:<40} {:>12} {:>7}", "PREFIX", "SEQ", "VALUES");
        for (prefix, snapshot) in &answering {
            let snapshot = snapshot.as_ref().expect("partitioned on Some");
            println!(
                "{prefix:<40} {:>12} {:>7}",
                snapshot.seq,
                snapshot.values.len()
            );
        }
    }
    if !silent.is_empty() {
        eprintln!(
            "not answering (a liveliness token, but no reply to P/{} within {} ms: no \
             queueserver computation, or one that is stuck):",
            wire::SNAPSHOT_CHUNK,
            timeout.as_millis()
        );
        for (prefix, _) in &silent {
            eprintln!("  {prefix}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A key expression as `qs` takes it, or an error that says how to write one.
fn key_expr(key: &str) -> Result<KeyExpr<'static>, String> {
    KeyExpr::try_from(key.to_owned()).map_err(|e| {
        format!(
            "{key:?} is no Zenoh key expression ({}). Write chunks separated by single `/`, \
             without a leading or trailing `/`, with `*` (one chunk) and `**` (any chunks) as \
             wildcards: demo/plant/position, 'demo/plant/**'",
            config::message(&e)
        )
    })
}

fn get(session: &Opened, key: &str, timeout: Duration) -> Result<ExitCode, String> {
    let key_expr = key_expr(key)?;
    let replies = session
        .session
        .get(key_expr)
        .timeout(timeout)
        .wait()
        .map_err(|e| format!("{key}: {}", config::message(&e)))?;
    let (mut values, mut errors) = (0, 0);
    while let Ok(reply) = replies.recv() {
        match reply.result() {
            Ok(sample) => {
                values += 1;
                let seq = wire::seq_of(sample.attachment())
                    .map_or_else(|| "-".to_owned(), |s| s.to_string());
                println!("{} = {}  (seq {seq})", sample.key_expr(), payload(sample));
            }
            Err(error) => {
                errors += 1;
                let text = error.payload().try_to_string().map(|s| s.into_owned());
                eprintln!("error: {}", text.unwrap_or_else(|_| "<binary>".into()));
            }
        }
    }
    Ok(match (values, errors) {
        (_, 1..) => ExitCode::FAILURE,
        (0, 0) => {
            eprintln!(
                "no reply for {key} within {} ms: nothing answers under that key.",
                timeout.as_millis()
            );
            match tokens(&session.session, Duration::from_secs(1)) {
                Ok(prefixes) if !prefixes.is_empty() => eprintln!(
                    "computations running: {} (`qs list` shows them, `qs get 'P/**'` every \
                     value of one)",
                    prefixes.join(", ")
                ),
                _ => eprintln!("no computation found either: {}", hint(&session.place)),
            }
            ExitCode::from(2)
        }
        _ => ExitCode::SUCCESS,
    })
}

/// The table, locked; it holds no invariant a panic could break half-way.
fn lock(table: &Mutex<Table>) -> std::sync::MutexGuard<'_, Table> {
    table.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How long `watch` goes without a snapshot before it asks for one.
const RESYNC: Duration = Duration::from_secs(2);

fn watch(
    session: &Opened,
    prefix: &str,
    interval: Duration,
    frames: Option<u64>,
) -> Result<ExitCode, String> {
    let prefix_key = OwnedKeyExpr::try_from(prefix.to_owned())
        .ok()
        .filter(|key| !key.is_wild())
        .ok_or_else(|| {
            format!(
                "{prefix:?} is no prefix: a computation's prefix is a key expression without \
                 wildcards, e.g. demo/plant (`qs list` shows them)"
            )
        })?;
    let values = prefix_key.join("**").map_err(|e| config::message(&e))?;
    let snapshot_key = prefix_key
        .join(wire::SNAPSHOT_CHUNK)
        .map_err(|e| config::message(&e))?;
    let table = Arc::new(Mutex::new(Table::default()));
    let skip = prefix.len() + 1;
    let session_ = &session.session;
    let _values = {
        let table = Arc::clone(&table);
        session_
            .declare_subscriber(&values)
            .callback(move |sample: Sample| {
                if let Some(name) = sample.key_expr().as_str().get(skip..) {
                    let seq = wire::seq_of(sample.attachment());
                    let value = (sample.kind() == SampleKind::Put).then(|| payload(&sample));
                    lock(&table).value(name, value.as_deref(), seq);
                }
            })
            .wait()
            .map_err(|e| config::message(&e))?
    };
    let on_snapshot = {
        let table = Arc::clone(&table);
        move |sample: &Sample| {
            if sample.kind() == SampleKind::Put {
                lock(&table).snapshot(&payload(sample));
            }
        }
    };
    let _snapshots = {
        let on_snapshot = on_snapshot.clone();
        session_
            .declare_subscriber(&snapshot_key)
            .callback(move |sample: Sample| on_snapshot(&sample))
            .wait()
            .map_err(|e| config::message(&e))?
    };
    let _alive = {
        let table = Arc::clone(&table);
        session_
            .liveliness()
            .declare_subscriber(&prefix_key)
            .history(true)
            .callback(move |sample: Sample| {
                lock(&table).token(sample.kind() == SampleKind::Put);
            })
            .wait()
            .map_err(|e| config::message(&e))?
    };
    // The present state at once, and again whenever no snapshot came for a while (values
    // that do not change are never put again; a forged sample lasts until the next one).
    let ask = || {
        let on_snapshot = on_snapshot.clone();
        let key = snapshot_key.clone();
        session_
            .get(&snapshot_key)
            .timeout(RESYNC)
            .callback(move |reply| {
                if let Ok(sample) = reply.result() {
                    if sample.key_expr().as_str() == key.as_str() {
                        on_snapshot(sample);
                    }
                }
            })
            .wait()
            .map_err(|e| config::message(&e))
    };
    ask()?;
    let mut asked = Instant::now();

    let started = Instant::now();
    let terminal = std::io::stdout().is_terminal();
    let mut last = Instant::now();
    let mut frame = 0u64;
    loop {
        std::thread::sleep(interval);
        let now = Instant::now();
        let seconds = now.duration_since(last).as_secs_f64().max(1e-9);
        last = now;
        frame += 1;
        let (out, quiet) = {
            let mut table = lock(&table);
            let out = table.render(prefix, seconds);
            (
                out,
                !matches!(table.since_snapshot(now), Some(quiet) if quiet <= RESYNC),
            )
        };
        let mut out = out;
        if quiet && now.duration_since(asked) > RESYNC {
            ask()?;
            asked = now;
        }
        if quiet && now.duration_since(started) > RESYNC && lock(&table).never_answered() {
            out += &format!(
                "\nnothing answers under {prefix}: no liveliness token, no snapshot, no \
                 reply to {snapshot_key}. Check the prefix: `qs list` shows the computations \
                 running ({}).\n",
                session.place
            );
        }
        let mut stdout = std::io::stdout().lock();
        let written = if terminal {
            // Home, clear to the end: the table refreshes in place.
            write!(stdout, "\x1b[H\x1b[J{out}")
        } else {
            writeln!(stdout, "{out}")
        };
        if written.and_then(|()| stdout.flush()).is_err() {
            // The reader went away (a closed pipe).
            return Ok(ExitCode::SUCCESS);
        }
        if frames.is_some_and(|n| frame >= n) {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

/// `qs`'s entry point: parses the command line, runs the command, closes the session.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version exit 0, usage errors 2, each with clap's message.
        Err(error) => error.exit(),
    };
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "qs", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    if std::env::var_os("ZENOH_RUNTIME").is_none() {
        // No other thread runs yet: Zenoh reads the variable when the session opens.
        std::env::set_var("ZENOH_RUNTIME", config::SMALL_RUNTIME);
    }
    if let Command::Device(args) = &cli.command {
        return device::run(&cli.zenoh, args).unwrap_or_else(|message| {
            eprintln!("qs: {message}");
            ExitCode::FAILURE
        });
    }
    let session = match open(&cli.zenoh) {
        Ok(session) => session,
        Err(message) => {
            eprintln!("qs: {message}");
            return ExitCode::FAILURE;
        }
    };
    let result = match &cli.command {
        Command::List { timeout } => list(&session, *timeout),
        Command::Watch {
            prefix,
            interval,
            frames,
        } => watch(&session, prefix, *interval, *frames),
        Command::Get { key, timeout } => get(&session, key, *timeout),
        Command::Completions { .. } | Command::Device(_) => {
            unreachable!("handled before the session opens")
        }
    };
    // Closed here, before `main` returns: Zenoh must not run during process exit.
    let _ = session.session.close().wait();
    result.unwrap_or_else(|message| {
        eprintln!("qs: {message}");
        ExitCode::FAILURE
    })
}

//! `qs`: list, watch and query queueserver computations over Zenoh.
//!
//! ```text
//! qs [-e ENDPOINT]... [--mode peer|client] list
//! qs [...] watch P [--interval MS] [--frames N]
//! qs [...] get KEYEXPR [--timeout MS]
//! ```
//!
//! Without `-e`, `qs` is a peer that connects to `tcp/127.0.0.1:7449`, where a computation
//! listens by default. With `-e tcp/host:port` it is a client of the router there (or a
//! peer of that endpoint with `--mode peer`). Multicast scouting is off either way.

use queueserver_zenoh::{config, wire};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use zenoh::key_expr::OwnedKeyExpr;
use zenoh::sample::{Sample, SampleKind};
use zenoh::{Session, Wait};

const USAGE: &str = "\
usage: qs [OPTIONS] COMMAND

commands:
  list                      the computations running (their liveliness tokens), with seq and size
  watch P                   a live table of the values under prefix P, with rates and seq
      --interval MS             refresh period (default 500)
      --frames N                stop after N refreshes (default: until interrupted)
  get KEYEXPR               get values: P/<name>, wildcards (P/**, P/motor/*), or P/@snapshot
      --timeout MS              how long to wait for replies (default 2000)

options:
  -e, --connect ENDPOINT    connect to ENDPOINT (repeatable); a router: client mode
      --mode peer|client    the session's mode (default: peer without -e, client with it)
  -h, --help                this text

Without -e, qs is a peer connecting to tcp/127.0.0.1:7449, where a computation listens by
default. Multicast scouting is off.";

/// What the command line asks for.
struct Args {
    connect: Vec<String>,
    mode: Option<String>,
    command: Command,
}

enum Command {
    List,
    Watch {
        prefix: String,
        interval: Duration,
        frames: Option<u64>,
    },
    Get {
        key: String,
        timeout: Duration,
    },
}

fn millis(flag: &str, value: Option<String>) -> Result<Duration, String> {
    let value = value.ok_or_else(|| format!("{flag} needs a value"))?;
    value
        .parse()
        .ok()
        .filter(|&ms| ms > 0)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{flag}: not a positive number of milliseconds: {value}"))
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut connect, mut mode) = (Vec::new(), None);
    let (mut words, mut interval, mut frames, mut timeout) = (Vec::new(), None, None, None);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-e" | "--connect" => connect.push(args.next().ok_or("-e needs an endpoint")?),
            "--mode" => {
                let value = args.next().ok_or("--mode needs peer or client")?;
                if value != "peer" && value != "client" {
                    return Err(format!("--mode: peer or client, not {value}"));
                }
                mode = Some(value);
            }
            "--interval" => interval = Some(millis("--interval", args.next())?),
            "--timeout" => timeout = Some(millis("--timeout", args.next())?),
            "--frames" => {
                let value = args.next().ok_or("--frames needs a count")?;
                frames = Some(
                    value
                        .parse()
                        .ok()
                        .filter(|&n: &u64| n > 0)
                        .ok_or_else(|| format!("--frames: not a positive count: {value}"))?,
                );
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            flag if flag.starts_with('-') => {
                return Err(format!("unknown option {flag}\n\n{USAGE}"))
            }
            _ => words.push(arg),
        }
    }
    let mut words = words.into_iter();
    let command = match (words.next().as_deref(), words.next(), words.next()) {
        (Some("list"), None, _) => Command::List,
        (Some("watch"), Some(prefix), None) => Command::Watch {
            prefix,
            interval: interval.unwrap_or(Duration::from_millis(500)),
            frames,
        },
        (Some("get"), Some(key), None) => Command::Get {
            key,
            timeout: timeout.unwrap_or(Duration::from_secs(2)),
        },
        _ => return Err(USAGE.to_owned()),
    };
    Ok(Args {
        connect,
        mode,
        command,
    })
}

fn open(args: &Args) -> Result<Session, String> {
    let connect: Vec<&str> = if args.connect.is_empty() {
        vec![config::DEFAULT_ENDPOINT]
    } else {
        args.connect.iter().map(String::as_str).collect()
    };
    let client = match args.mode.as_deref() {
        Some(mode) => mode == "client",
        None => !args.connect.is_empty(),
    };
    let config = if client {
        config::client(&connect)
    } else {
        config::peer(&[], &connect)
    }
    .map_err(|e| format!("bad endpoint: {e}"))?;
    let session = zenoh::open(config)
        .wait()
        .map_err(|e| format!("cannot open a zenoh session: {e}"))?;
    if !client {
        // A peer connects in the background: give it a moment to reach the endpoint.
        let deadline = Instant::now() + Duration::from_secs(2);
        while session.info().peers_zid().wait().next().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(session)
}

/// A JSON value as the table shows it: numbers with six decimals when not integers.
fn show(json: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::Number(n)) if !(n.is_i64() || n.is_u64()) => {
            format!("{:.6}", n.as_f64().unwrap_or(f64::NAN))
        }
        Ok(value) => value.to_string(),
        Err(_) => json.to_owned(),
    }
}

fn payload(sample: &Sample) -> String {
    sample
        .payload()
        .try_to_string()
        .map(|s| s.into_owned())
        .unwrap_or_else(|_| format!("<{} bytes>", sample.payload().len()))
}

fn list(session: &Session) -> Result<ExitCode, String> {
    let tokens = session
        .liveliness()
        .get("**")
        .timeout(Duration::from_secs(1))
        .wait()
        .map_err(|e| e.to_string())?;
    let mut prefixes: Vec<String> = Vec::new();
    while let Ok(reply) = tokens.recv() {
        if let Ok(sample) = reply.result() {
            prefixes.push(sample.key_expr().to_string());
        }
    }
    prefixes.sort();
    prefixes.dedup();
    println!("{:<40} {:>12} {:>7}", "PREFIX", "SEQ", "VALUES");
    for prefix in &prefixes {
        let (mut seq, mut values) = ("-".to_owned(), "-".to_owned());
        let key = format!("{prefix}/{}", wire::SNAPSHOT_CHUNK);
        if let Ok(replies) = session.get(&key).timeout(Duration::from_secs(1)).wait() {
            if let Ok(Ok(sample)) = replies.recv().map(|r| r.into_result()) {
                if let Ok(json) = serde_json::from_str::<serde_json::Value>(&payload(&sample)) {
                    seq = json["seq"].to_string();
                    if let Some(map) = json["values"].as_object() {
                        values = map.len().to_string();
                    }
                }
            }
        }
        println!("{prefix:<40} {seq:>12} {values:>7}");
    }
    if prefixes.is_empty() {
        eprintln!("no computation found");
    }
    Ok(ExitCode::SUCCESS)
}

fn get(session: &Session, key: &str, timeout: Duration) -> Result<ExitCode, String> {
    let replies = session
        .get(key)
        .timeout(timeout)
        .wait()
        .map_err(|e| format!("{key}: {e}"))?;
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
            eprintln!("no reply for {key}");
            ExitCode::from(2)
        }
        _ => ExitCode::SUCCESS,
    })
}

/// One row of the watch table.
#[derive(Default)]
struct Row {
    value: String,
    seq: u64,
    updates: u64,
    /// `updates` at the last refresh.
    shown: u64,
}

#[derive(Default)]
struct Table {
    rows: BTreeMap<String, Row>,
    snapshots: u64,
    snapshots_shown: u64,
    seq: u64,
    alive: Option<bool>,
}

impl Table {
    fn record(&mut self, name: &str, sample: &Sample) {
        let seq = wire::seq_of(sample.attachment()).unwrap_or(0);
        let row = self.rows.entry(name.to_owned()).or_default();
        if sample.kind() == SampleKind::Delete {
            self.rows.remove(name);
            return;
        }
        if seq >= row.seq {
            row.value = show(&payload(sample));
            row.seq = seq;
        }
        row.updates += 1;
        self.seq = self.seq.max(seq);
    }
}

fn watch(
    session: &Session,
    prefix: &str,
    interval: Duration,
    frames: Option<u64>,
) -> Result<ExitCode, String> {
    let prefix_key = OwnedKeyExpr::try_from(prefix).map_err(|e| format!("{prefix}: {e}"))?;
    let values = prefix_key.join("**").map_err(|e| e.to_string())?;
    let snapshot = prefix_key
        .join(wire::SNAPSHOT_CHUNK)
        .map_err(|e| e.to_string())?;
    let table = Arc::new(Mutex::new(Table::default()));
    let name_of = {
        let skip = prefix.len() + 1;
        move |sample: &Sample| sample.key_expr().as_str().get(skip..).map(str::to_owned)
    };
    let on_value = {
        let table = Arc::clone(&table);
        move |sample: Sample| {
            if let Some(name) = name_of(&sample) {
                let mut table = table.lock().unwrap_or_else(PoisonError::into_inner);
                table.record(&name, &sample);
            }
        }
    };
    let _values = session
        .declare_subscriber(&values)
        .callback(on_value.clone())
        .wait()
        .map_err(|e| e.to_string())?;
    let _snapshots = {
        let table = Arc::clone(&table);
        session
            .declare_subscriber(&snapshot)
            .callback(move |sample: Sample| {
                let mut table = table.lock().unwrap_or_else(PoisonError::into_inner);
                table.snapshots += 1;
                if let Some(seq) = wire::seq_of(sample.attachment()) {
                    table.seq = table.seq.max(seq);
                }
            })
            .wait()
            .map_err(|e| e.to_string())?
    };
    let _alive = {
        let table = Arc::clone(&table);
        session
            .liveliness()
            .declare_subscriber(&prefix_key)
            .history(true)
            .callback(move |sample: Sample| {
                let mut table = table.lock().unwrap_or_else(PoisonError::into_inner);
                table.alive = Some(sample.kind() == SampleKind::Put);
            })
            .wait()
            .map_err(|e| e.to_string())?
    };
    // Values that do not change are never put again: fetch them once.
    if let Ok(replies) = session.get(&values).timeout(Duration::from_secs(2)).wait() {
        while let Ok(reply) = replies.recv() {
            if let Ok(sample) = reply.into_result() {
                on_value(sample);
            }
        }
    }

    let terminal = std::io::stdout().is_terminal();
    let mut last = Instant::now();
    let mut frame = 0u64;
    loop {
        std::thread::sleep(interval);
        let now = Instant::now();
        let seconds = now.duration_since(last).as_secs_f64().max(1e-9);
        last = now;
        frame += 1;
        let mut out = String::new();
        {
            let mut table = table.lock().unwrap_or_else(PoisonError::into_inner);
            let status = match table.alive {
                Some(true) => "running",
                Some(false) => "gone",
                None => "not seen",
            };
            let snapshots = (table.snapshots - table.snapshots_shown) as f64 / seconds;
            table.snapshots_shown = table.snapshots;
            out += &format!(
                "{prefix}  [{status}]  seq {}  {snapshots:.1} snapshots/s  {} values\n",
                table.seq,
                table.rows.len()
            );
            out += &format!(
                "{:<32} {:>18} {:>12} {:>9}\n",
                "NAME", "VALUE", "SEQ", "PER S"
            );
            for (name, row) in table.rows.iter_mut() {
                let rate = (row.updates - row.shown) as f64 / seconds;
                row.shown = row.updates;
                out += &format!("{name:<32} {:>18} {:>12} {rate:>9.1}\n", row.value, row.seq);
            }
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

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    if std::env::var_os("ZENOH_RUNTIME").is_none() {
        // No other thread runs yet: Zenoh reads the variable when the session opens.
        std::env::set_var("ZENOH_RUNTIME", config::SMALL_RUNTIME);
    }
    let session = match open(&args) {
        Ok(session) => session,
        Err(message) => {
            eprintln!("qs: {message}");
            return ExitCode::FAILURE;
        }
    };
    let result = match &args.command {
        Command::List => list(&session),
        Command::Watch {
            prefix,
            interval,
            frames,
        } => watch(&session, prefix, *interval, *frames),
        Command::Get { key, timeout } => get(&session, key, *timeout),
    };
    // Closed here, before `main` returns: Zenoh must not run during process exit.
    let _ = session.close().wait();
    result.unwrap_or_else(|message| {
        eprintln!("qs: {message}");
        ExitCode::FAILURE
    })
}

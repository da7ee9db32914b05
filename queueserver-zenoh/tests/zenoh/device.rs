//! `qs device` against a simulated microcontroller: the link's device side in a thread
//! behind a TCP socket on 127.0.0.1 (the same `Sim` as queueserver-link's tests), as QEMU's
//! `-serial` socket offers a firmware's UART. `qs get`, `qs list` and a Zenoh session see
//! its values at their seq; its token goes while the line is silent and comes back with
//! it; `--stats` prints the line's counters; with `--web` a WebSocket client reads the
//! device's web view beside Zenoh. The firmware itself, under QEMU, is
//! `tests/firmware.rs`.

#[path = "../../../queueserver-link/tests/common/mod.rs"]
mod sim;

use crate::common::page::{ask, connect, get_page};
use crate::common::{free_port, peer_of, qs, wait_until, Guard};
use queueserver_zenoh::wire;
use serde_json::json;
use sim::{Sim, State};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zenoh::sample::SampleKind;
use zenoh::{Session, Wait};

const P: &str = "test/mcu";
const LIMIT: Duration = Duration::from_secs(10);

/// The value of `name` at `seq`, as a number.
fn number_at(name: &str, seq: u64) -> f64 {
    let state = State::at(seq as u32);
    match name {
        "step" => f64::from(state.step),
        "ch1" => f64::from(state.ch1),
        "ch2" => f64::from(state.ch2),
        other => panic!("no value {other}"),
    }
}

/// `qs device` on `sim`, listening on its own port; its stdout's lines are kept.
struct Published {
    guard: Guard,
    endpoint: String,
    stdout: Arc<Mutex<Vec<String>>>,
}

fn publish(sim: &Sim, extra: &[&str]) -> Published {
    let endpoint = format!("tcp/127.0.0.1:{}", free_port());
    let mut guard = Guard::spawn(
        "qs device",
        qs().args([
            "device",
            &sim.address(),
            "--prefix",
            P,
            "--listen",
            &endpoint,
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit()),
    );
    let stdout = Arc::new(Mutex::new(Vec::new()));
    {
        let lines = BufReader::new(guard.child.stdout.take().unwrap());
        let stdout = Arc::clone(&stdout);
        std::thread::spawn(move || {
            for line in lines.lines().map_while(Result::ok) {
                stdout.lock().unwrap().push(line);
            }
        });
    }
    let port: u16 = endpoint.rsplit(':').next().unwrap().parse().unwrap();
    wait_until(LIMIT, "qs device to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    Published {
        guard,
        endpoint,
        stdout,
    }
}

/// `qs` as a user runs it, a peer of `endpoint`.
fn run_qs(endpoint: &str, args: &[&str]) -> Output {
    qs().args(["-e", endpoint, "--mode", "peer"])
        .args(args)
        .output()
        .unwrap()
}

/// `qs get` of one name: its value and seq.
fn qs_get(endpoint: &str, name: &str) -> (f64, u64) {
    let out = run_qs(endpoint, &["get", &format!("{P}/{name}")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "qs get {name}: {out:?}");
    // `test/mcu/ch1 = 6.5  (seq 12)`
    let (value, seq) = text
        .trim()
        .split_once(" = ")
        .and_then(|(_, rest)| rest.split_once("  (seq "))
        .unwrap_or_else(|| panic!("a reply: {text}"));
    (
        value.parse().unwrap(),
        seq.trim_end_matches(')').parse().unwrap(),
    )
}

/// The liveliness tokens under `P`, as a subscriber sees them come and go.
fn tokens(session: &Session) -> (Arc<Mutex<Vec<SampleKind>>>, impl Sized) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let subscriber = {
        let seen = Arc::clone(&seen);
        session
            .liveliness()
            .declare_subscriber(P)
            .history(true)
            .callback(move |sample| seen.lock().unwrap().push(sample.kind()))
            .wait()
            .unwrap()
    };
    (seen, subscriber)
}

#[test]
fn a_simulated_device_is_watched_and_asked_like_a_computation() {
    let sim = Sim::start();
    let mut published = publish(&sim, &["--stats", "200"]);
    let endpoint = published.endpoint.clone();
    let session = peer_of(&endpoint);
    let (seen, _tokens) = tokens(&session);
    wait_until(LIMIT, "the token", || {
        seen.lock().unwrap().last() == Some(&SampleKind::Put)
    });

    // Values put on P/<name>, each the state at its seq.
    let heard = Arc::new(Mutex::new(Vec::new()));
    let _values = {
        let heard = Arc::clone(&heard);
        session
            .declare_subscriber(format!("{P}/**"))
            .callback(move |sample| {
                let name = sample.key_expr().as_str()[P.len() + 1..].to_owned();
                let json: f64 = sample.payload().try_to_string().unwrap().parse().unwrap();
                let seq = wire::seq_of(sample.attachment()).unwrap();
                heard.lock().unwrap().push((name, json, seq));
            })
            .wait()
            .unwrap()
    };
    wait_until(LIMIT, "values", || heard.lock().unwrap().len() >= 30);
    for (name, value, seq) in heard.lock().unwrap().iter() {
        assert_eq!(*value, number_at(name, *seq), "{name} at #{seq}");
    }

    // `qs get` and `qs list`, as a user runs them.
    for name in ["step", "ch1", "ch2"] {
        let (value, seq) = qs_get(&endpoint, name);
        assert_eq!(value, number_at(name, seq), "{name} at #{seq}");
    }
    let out = run_qs(&endpoint, &["get", &format!("{P}/torque")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown name"),
        "{out:?}"
    );
    let out = run_qs(&endpoint, &["list"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(P) && l.ends_with(" 3")),
        "{listed}"
    );

    // The line goes silent: the token goes, and gets are refused at once; it comes back.
    sim.control.mute.store(true, Ordering::Release);
    wait_until(LIMIT, "the token withdrawn", || {
        seen.lock().unwrap().last() == Some(&SampleKind::Delete)
    });
    let out = run_qs(&endpoint, &["get", &format!("{P}/ch1")]);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("not live: the computation does not answer now"),
        "{out:?}"
    );
    sim.control.mute.store(false, Ordering::Release);
    wait_until(LIMIT, "the token back", || {
        seen.lock().unwrap().last() == Some(&SampleKind::Put)
    });
    let (value, seq) = qs_get(&endpoint, "ch2");
    assert_eq!(value, number_at("ch2", seq));

    // Garbage toward the host: counted, and the values go on.
    sim.control
        .garbage
        .lock()
        .unwrap()
        .extend_from_slice(&[0x55; 30]);
    wait_until(LIMIT, "the garbage counted", || {
        published.stdout.lock().unwrap().iter().any(|line| {
            let stats: serde_json::Value = serde_json::from_str(line).unwrap();
            stats["host"]["garbage_bytes"].as_u64() >= Some(30)
        })
    });
    let (value, seq) = qs_get(&endpoint, "step");
    assert_eq!(value, number_at("step", seq));
    let last = published.stdout.lock().unwrap().last().cloned().unwrap();
    let stats: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert!(
        stats["device"]["gets_accepted"].as_u64() >= Some(5),
        "{stats}"
    );
    published.guard.stop();
}

#[test]
fn with_web_the_device_is_watched_in_the_web_view_beside_zenoh() {
    let sim = Sim::start();
    let web = format!("127.0.0.1:{}", free_port());
    let mut published = publish(&sim, &["--web", &web]);
    let endpoint = published.endpoint.clone();
    wait_until(LIMIT, "the web view to listen", || {
        TcpStream::connect(&web).is_ok()
    });
    // The page itself, and its stream, read as the page reads it.
    let html = get_page(&web);
    assert!(
        html.starts_with("HTTP/1.1 200") && html.contains("<html"),
        "{}",
        &html[..html.len().min(200)]
    );
    let mut page = connect(&web);
    let hello = page.next();
    assert_eq!(hello["type"], "hello", "{hello}");
    // The names of the newest snapshot the device pushed; none only for a page that joins
    // before the first (greeted with the empty one, seq 0).
    assert!(
        hello["names"] == json!(["step", "ch1", "ch2"]) || hello["names"] == json!([]),
        "{hello}"
    );
    let mut last = 0;
    for _ in 0..20 {
        let update = page.next_of("update");
        let seq = update["seq"].as_u64().expect("a seq");
        if seq == 0 {
            assert_eq!(update["values"], json!({}), "{update}");
            continue;
        }
        assert!(seq > last, "updates in order: {seq} after {last}");
        last = seq;
        for name in ["step", "ch1", "ch2"] {
            assert_eq!(
                update["values"][name].as_f64(),
                Some(number_at(name, seq)),
                "{name} at #{seq}: {update}"
            );
        }
    }

    // An ask from the page and a get from Zenoh, both through the device's line.
    ask(&mut page, 1, "ch2");
    let (value, seq) = qs_get(&endpoint, "ch1");
    assert_eq!(value, number_at("ch1", seq));
    let answer = page.next_of("answer");
    assert_eq!(answer["id"], 1, "{answer}");
    assert_eq!(answer["found"], true, "{answer}");
    let seq = answer["seq"].as_u64().expect("a seq");
    assert_eq!(
        answer["value"].as_f64(),
        Some(number_at("ch2", seq)),
        "{answer}"
    );
    published.guard.stop();
}

#[test]
fn device_usage_errors_name_what_is_wrong() {
    let out = qs().args(["device", "tcp:127.0.0.1:1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "no --prefix: {out:?}");
    let out = qs()
        .args(["device", "tcp:nowhere", "--prefix", P])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("not a device address") && text.contains("tcp:HOST:PORT"),
        "{text}"
    );
    // Nothing listens on a port just freed.
    let address = format!("tcp:127.0.0.1:{}", free_port());
    let out = qs()
        .args(["device", &address, "--prefix", P])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains(&address) && text.contains("Is the device there"),
        "{text}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_qs"))
        .args(["-e", "tcp/127.0.0.1:1", "device", "tcp:127.0.0.1:1"])
        .args(["--prefix", P, "--listen", "tcp/127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("a client of a router listens on nothing"),
        "{out:?}"
    );
}

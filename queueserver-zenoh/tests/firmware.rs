//! The Cortex-M example's `link` firmware under QEMU, published by `qs device` and seen
//! from Zenoh as any computation: by a Zenoh session in this process, by `qs get`, `qs
//! watch` and `qs list` as a user runs them, and by the Python client `eclipse-zenoh`.
//!
//! QEMU's UART is a TCP socket on 127.0.0.1; `qs device` reaches it through a proxy that
//! spoils the line on request. Checked: every value is the firmware's state at the seq it
//! names; snapshots come at the firmware's configured rate (one per 10 control periods);
//! an unknown name gets an error reply; garbage both ways is counted (`qs device
//! --stats`) and the link resynchronises; `qs device` killed and started again finds the
//! firmware going on (seq continues, no reset); the firmware's own checks pass. Prints
//! the round trip of a get (Zenoh → host → firmware → host → Zenoh) as a figure. With
//! `--web`, a WebSocket client reads the device's web view beside Zenoh: updates and an
//! answer, each the firmware's state at its seq.
//!
//! Built only with the `qemu` feature and run by `.ci/cortex-m`, which builds the
//! firmware and names it in `LINK_FIRMWARE`. QEMU and every process started here are
//! stopped by their PID; everything listens on 127.0.0.1.

#[path = "zenoh/common/mod.rs"]
mod common;
#[path = "../../queueserver-link/tests/common/mod.rs"]
mod link;

use common::page::{ask, connect, get_page};
use common::{free_port, peer_of, qs, tools, wait_until, Guard};
use link::qemu::{names, value_of, Proxy, Qemu};
use queueserver_zenoh::wire;
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zenoh::sample::SampleKind;
use zenoh::{Session, Wait};

const P: &str = "fw/plant";
const LIMIT: Duration = Duration::from_secs(20);

/// Whether `json` (a payload's text) is the firmware's value of `name` at `seq`.
fn is_value_at(name: &str, json: &str, seq: u64) -> bool {
    let expected = serde_json::to_value(value_of(seq, name)).unwrap();
    let got: serde_json::Value = serde_json::from_str(json).unwrap();
    got.as_f64().is_some() && got.as_f64() == expected.as_f64()
}

fn assert_value_at(name: &str, json: &str, seq: u64) {
    assert!(
        is_value_at(name, json, seq),
        "{name} = {json} at #{seq}, not {:?}",
        value_of(seq, name)
    );
}

/// Checks a snapshot's JSON (`{"seq":N,"values":{...}}`) against the state at its seq;
/// returns the seq.
fn assert_snapshot(json: &str) -> u64 {
    let snapshot: serde_json::Value = serde_json::from_str(json).unwrap();
    let seq = snapshot["seq"].as_u64().expect("a seq");
    let values = snapshot["values"].as_object().expect("values");
    let mut expected = names();
    expected.sort();
    assert!(values.keys().eq(expected.iter()), "every name: {values:?}");
    for (name, value) in values {
        assert_value_at(name, &value.to_string(), seq);
    }
    seq
}

/// `qs device` on `address`, listening on `endpoint` (and serving its web view on `web`,
/// if given), printing its counters every 200 ms (kept, one JSON object a line).
struct Published {
    guard: Guard,
    stats: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Published {
    fn start(address: &str, endpoint: &str, web: Option<&str>) -> Self {
        let mut guard = Guard::spawn(
            "qs device",
            qs().args(["device", address, "--prefix", P, "--listen", endpoint])
                .args(["--stats", "200"])
                .args(web.map(|web| ["--web", web]).into_iter().flatten())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        );
        let stats = Arc::new(Mutex::new(Vec::new()));
        {
            let lines = BufReader::new(guard.child.stdout.take().unwrap());
            let stats = Arc::clone(&stats);
            std::thread::spawn(move || {
                for line in lines.lines().map_while(Result::ok) {
                    stats
                        .lock()
                        .unwrap()
                        .push(serde_json::from_str(&line).expect("a JSON line"));
                }
            });
        }
        let port: u16 = endpoint.rsplit(':').next().unwrap().parse().unwrap();
        wait_until(LIMIT, "qs device to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Self { guard, stats }
    }

    /// Waits for counters that satisfy `done`; returns them.
    fn stats_until(
        &self,
        what: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let mut found = None;
        wait_until(LIMIT, what, || {
            found = self
                .stats
                .lock()
                .unwrap()
                .iter()
                .rev()
                .find(|s| done(s))
                .cloned();
            found.is_some()
        });
        found.unwrap()
    }
}

/// `qs` as a user runs it, a peer of `endpoint`.
fn run_qs(endpoint: &str, args: &[&str]) -> Output {
    qs().args(["-e", endpoint, "--mode", "peer"])
        .args(args)
        .output()
        .unwrap()
}

/// The `key = json  (seq N)` lines of `qs get`'s output.
fn parse_get(out: &Output) -> Vec<(String, String, u64)> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let (key, rest) = line.split_once(" = ").expect("key = json");
            let (json, seq) = rest.rsplit_once("  (seq ").expect("(seq N)");
            (
                key[P.len() + 1..].to_owned(),
                json.to_owned(),
                seq.trim_end_matches(')').parse().unwrap(),
            )
        })
        .collect()
}

/// Every sample a subscriber hears: (key, payload, seq).
type Heard = Arc<Mutex<Vec<(String, String, u64)>>>;

fn hear(session: &Session, key: &str) -> (Heard, impl Sized) {
    let heard: Heard = Arc::default();
    let subscriber = {
        let heard = Arc::clone(&heard);
        session
            .declare_subscriber(key)
            .callback(move |sample| {
                let seq = wire::seq_of(sample.attachment()).expect("a seq");
                let json = sample.payload().try_to_string().unwrap().into_owned();
                let key = sample.key_expr().to_string();
                heard.lock().unwrap().push((key, json, seq));
            })
            .wait()
            .unwrap()
    };
    (heard, subscriber)
}

/// The liveliness token of `P` as a subscriber sees it come and go.
fn token(session: &Session) -> (Arc<Mutex<Vec<SampleKind>>>, impl Sized) {
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

fn last_is(seen: &Mutex<Vec<SampleKind>>, kind: SampleKind) -> bool {
    seen.lock().unwrap().last() == Some(&kind)
}

fn summary(mut samples: Vec<f64>) -> (f64, f64, f64) {
    samples.sort_by(f64::total_cmp);
    (
        samples[0],
        samples[samples.len() / 2],
        samples[samples.len() - 1],
    )
}

#[test]
fn the_firmware_is_watched_and_asked_from_zenoh() {
    let mut qemu = Qemu::start("LINK_FIRMWARE");
    let banner = qemu.wait_line("link: queueserver-link", LIMIT);
    assert!(banner.contains("updates every 10 ms"), "{banner}");
    wait_until(LIMIT, "QEMU to listen", || qemu.listens());
    let proxy = Proxy::start(qemu.port);
    let endpoint = format!("tcp/127.0.0.1:{}", free_port());
    let web = format!("127.0.0.1:{}", free_port());
    let mut published = Published::start(&proxy.address(), &endpoint, Some(&web));
    let session = peer_of(&endpoint);
    let (alive, _token) = token(&session);
    wait_until(LIMIT, "the token", || last_is(&alive, SampleKind::Put));

    // Snapshots on P/@snapshot and values on P/<name>, each the state at its seq, one
    // snapshot per 10 control periods (the firmware's update limit).
    let (snapshots, _snapshots) = hear(&session, &format!("{P}/@snapshot"));
    let (values, _values) = hear(&session, &format!("{P}/**"));
    wait_until(LIMIT, "100 snapshots", || {
        snapshots.lock().unwrap().len() >= 100
    });
    let mut seqs: Vec<u64> = snapshots
        .lock()
        .unwrap()
        .iter()
        .map(|(_, json, _)| assert_snapshot(json))
        .collect();
    for (key, json, seq) in values.lock().unwrap().iter() {
        assert_value_at(&key[P.len() + 1..], json, *seq);
    }
    let mut gaps: Vec<u64> = seqs.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort_unstable();
    // Never closer than the limit; mostly at it (latest wins on the way: a busy host
    // may skip some, never add any).
    assert!(gaps[0] >= 10, "the update limit holds: {gaps:?}");
    assert!(
        gaps[gaps.len() / 2] <= 12,
        "an update every 10 periods: {gaps:?}"
    );
    let last_seen = seqs.pop().unwrap();

    // `qs get`, as a user runs it: one name, every name, the snapshot.
    for name in ["step", "ch1", "ch7", "ch15"] {
        let out = run_qs(&endpoint, &["get", &format!("{P}/{name}")]);
        assert!(out.status.success(), "{out:?}");
        let got = parse_get(&out);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, name);
        assert_value_at(name, &got[0].1, got[0].2);
        assert!(got[0].2 > last_seen, "read now, not before");
    }
    let out = run_qs(&endpoint, &["get", &format!("{P}/**")]);
    let got = parse_get(&out);
    assert_eq!(got.len(), names().len(), "{out:?}");
    for (name, json, seq) in &got {
        assert_value_at(name, json, *seq);
    }
    let out = run_qs(&endpoint, &["get", &format!("{P}/@snapshot")]);
    let got = parse_get(&out);
    assert_eq!(assert_snapshot(&got[0].1), got[0].2);

    // An unknown name: an error reply.
    let out = run_qs(&endpoint, &["get", &format!("{P}/ch16")]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains(&format!("unknown name: {P}/ch16 names no value under {P}")),
        "{text}"
    );

    // `qs list` and `qs watch`: the firmware runs, its seq goes on, every value is there.
    let out = run_qs(&endpoint, &["list"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(P) && l.ends_with(&format!(" {}", names().len()))),
        "{listed}"
    );
    let out = run_qs(
        &endpoint,
        &["watch", P, "--frames", "3", "--interval", "700"],
    );
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let headers: Vec<(u64, f64)> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{P}  [running]  seq ")))
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            (words[3].parse().unwrap(), words[4].parse().unwrap())
        })
        .collect();
    assert_eq!(headers.len(), 3, "{text}");
    assert!(headers[2].0 > headers[0].0, "the seq goes on: {headers:?}");
    assert!(headers[2].1 > 0.0, "snapshots heard: {headers:?}");
    for name in names() {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{name} "))),
            "{name} in {text}"
        );
    }
    println!(
        "figure: qs watch on the firmware: {:.1} snapshots/s in real time (one per 10 \
         control periods of QEMU's clock)",
        headers[2].1
    );

    // The web view (`--web`), beside Zenoh: a page's updates and its ask, each the
    // firmware's state at its seq.
    wait_until(LIMIT, "the web view to listen", || {
        std::net::TcpStream::connect(&web).is_ok()
    });
    assert!(get_page(&web).starts_with("HTTP/1.1 200"));
    let mut page = connect(&web);
    let hello = page.next_of("hello");
    assert_eq!(hello["names"], serde_json::json!(names()), "{hello}");
    let mut last = 0;
    for _ in 0..20 {
        let seq = assert_snapshot(&page.next_of("update").to_string());
        assert!(seq > last, "updates in order: #{seq} after #{last}");
        last = seq;
    }
    ask(&mut page, 1, "ch5");
    let answer = page.next_of("answer");
    assert_eq!(
        (answer["id"].as_u64(), answer["found"].as_bool()),
        (Some(1), Some(true))
    );
    assert_value_at(
        "ch5",
        &answer["value"].to_string(),
        answer["seq"].as_u64().unwrap(),
    );
    drop(page);

    // The Python client.
    let python = Command::new(tools::python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/firmware.py"))
        .args([&endpoint, P])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(python.status.success(), "firmware.py: {python:?}");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&python.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (mut gets, mut puts) = (0, 0);
    for line in &lines {
        let key = line["key"].as_str().unwrap();
        let json = line["json"].as_str().unwrap();
        let seq: u64 = line["seq"].as_str().unwrap().parse().unwrap();
        match &key[P.len() + 1..] {
            "@snapshot" => assert_eq!(assert_snapshot(json), seq),
            name => assert_value_at(name, json, seq),
        }
        match line["how"].as_str() {
            Some("get") => gets += 1,
            _ => puts += 1,
        }
    }
    assert_eq!(gets, 1 + names().len(), "{lines:?}");
    assert!(puts > 0, "Python heard values");

    // The round trip of a get: Zenoh → qs device → the firmware → qs device → Zenoh.
    let mut trips = Vec::new();
    for i in 0..200 {
        let name = &names()[(i * 7) % names().len()];
        let asked = Instant::now();
        let replies = session
            .get(format!("{P}/{name}"))
            .timeout(LIMIT)
            .wait()
            .unwrap();
        let sample = replies.recv().unwrap().into_result().unwrap();
        trips.push(asked.elapsed().as_secs_f64() * 1e6);
        let seq = wire::seq_of(sample.attachment()).unwrap();
        assert_value_at(name, &sample.payload().try_to_string().unwrap(), seq);
    }
    let (lo, mid, hi) = summary(trips);
    println!(
        "figure: get round trip Zenoh -> qs device -> firmware -> qs device -> Zenoh (us): \
         min {lo:.0} median {mid:.0} max {hi:.0}"
    );

    // Garbage both ways: counted by the host and by the firmware; the link resynchronises.
    let before = published.stats_until("counters", |s| !s["device"].is_null());
    let host_garbage = before["host"]["garbage_bytes"].as_u64().unwrap();
    let device_garbage = before["device"]["rx_garbage_bytes"].as_u64().unwrap();
    let spoiled: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(37) | 1).collect();
    proxy
        .spoil
        .to_host
        .lock()
        .unwrap()
        .extend_from_slice(&spoiled);
    proxy
        .spoil
        .to_device
        .lock()
        .unwrap()
        .extend_from_slice(&[0x42; 25]);
    let after = published.stats_until("the garbage counted both ways", |s| {
        s["host"]["garbage_bytes"].as_u64() >= Some(host_garbage + 40)
            && s["device"]["rx_garbage_bytes"].as_u64() >= Some(device_garbage + 25)
    });
    println!("figure: counters after garbage both ways: {after}");
    let heard = snapshots.lock().unwrap().len();
    wait_until(LIMIT, "snapshots after the garbage", || {
        snapshots.lock().unwrap().len() >= heard + 20
    });
    for (_, json, _) in snapshots.lock().unwrap()[heard..].iter() {
        assert_snapshot(json);
    }
    let got = parse_get(&run_qs(&endpoint, &["get", &format!("{P}/ch3")]));
    assert_value_at("ch3", &got[0].1, got[0].2);

    // `qs device` killed and started again: the token goes and comes back, and the
    // firmware went on meanwhile (its seq continues: no reset).
    let before_kill = snapshots.lock().unwrap().last().unwrap().2;
    published.guard.stop();
    wait_until(LIMIT, "the token withdrawn", || {
        last_is(&alive, SampleKind::Delete)
    });
    drop(session);
    let published = Published::start(&proxy.address(), &endpoint, None);
    let session = peer_of(&endpoint);
    let (alive, _token) = token(&session);
    wait_until(LIMIT, "the token back", || last_is(&alive, SampleKind::Put));
    let got = parse_get(&run_qs(&endpoint, &["get", &format!("{P}/step")]));
    assert_value_at("step", &got[0].1, got[0].2);
    assert!(
        got[0].2 > before_kill,
        "the firmware went on: #{} after #{before_kill}",
        got[0].2
    );
    assert!(qemu.child.try_wait().unwrap().is_none(), "QEMU still runs");
    let banners = qemu
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("link: queueserver-link"))
        .count();
    assert_eq!(banners, 1, "the firmware started once");
    let stats = published.stats_until("the device's counters", |s| !s["device"].is_null());
    assert!(
        stats["device"]["schemas_sent"].as_u64() >= Some(2),
        "a schema per line, the counters kept: {stats}"
    );

    // The firmware's own checks: no allocation after start, every period published.
    qemu.wait_line("link: checks passed", Duration::from_secs(60));
    qemu.assert_running();
    let (_, median, _) = qemu.cost("put_update (64-byte State)", LIMIT);
    println!("figure: put_update with qs device attached: median {median} instructions");
    drop(published);
}

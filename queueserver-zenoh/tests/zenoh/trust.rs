//! What `qs` trusts: the computation's snapshots, not a number a sample carries. Through a
//! router that lets anyone put (no access control), another client forges a value with a
//! huge `seq`, a snapshot, a bare liveliness token; `qs watch` shows the computation's
//! values again at its next snapshot, shows a restarted computation (its seq starting
//! over) at once, and `qs list` lists only what answers a get of `P/@snapshot`.

use crate::common::{qs, tools, wait_until, AnyConnection, Guard, Rig};
use queueserver::{QueueServer, Runner};
use queueserver_zenoh::{config, wire, Options, Zenoh};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use zenoh::{Session, Wait};

const LIMIT: Duration = Duration::from_secs(15);

fn tmp(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("trust-{}-{name}", std::process::id()))
}

fn client(endpoint: &str) -> Session {
    zenoh::open(config::client(&[endpoint]).unwrap())
        .wait()
        .unwrap()
}

/// A computation publishing `Rig::at(seq)` every 5 ms from seq 1, through the router.
struct Computation {
    stop: Arc<AtomicBool>,
    seq: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Computation {
    fn start(endpoint: &str, prefix: &str) -> Self {
        let (stop, seq) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let (mut publisher, mut server) = QueueServer::<Rig, AnyConnection>::new(Rig::default());
        let session = client(endpoint);
        let zenoh = Zenoh::attach(&mut server, &session, prefix, Options::new()).unwrap();
        let runner = Runner::every(server, Duration::from_millis(1)).unwrap();
        let thread = {
            let (stop, seq) = (Arc::clone(&stop), Arc::clone(&seq));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let next = seq.load(Ordering::Relaxed) + 1;
                    publisher.put_update(&Rig::at(next));
                    seq.store(next, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(5));
                }
                runner.shutdown().unwrap();
                zenoh.close();
                session.close().wait().unwrap();
            })
        };
        Self {
            stop,
            seq,
            thread: Some(thread),
        }
    }

    fn seq(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }

    /// Stops publishing and takes the computation off the wire; its last seq.
    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        self.seq()
    }
}

impl Drop for Computation {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One table of `qs watch`: its header's status and seq, and each row's value and seq.
#[derive(Debug, Default)]
struct Frame {
    status: String,
    seq: Option<u64>,
    rows: BTreeMap<String, (String, Option<u64>)>,
}

/// The last complete table `qs watch` printed to `path` (tables end with a blank line).
fn last_frame(path: &Path) -> Option<Frame> {
    let text = std::fs::read_to_string(path).ok()?;
    let complete = &text[..text.rfind("\n\n")?];
    let table = complete.rsplit("\n\n").next()?;
    let mut lines = table.lines().filter(|line| !line.is_empty());
    let header = lines.next()?;
    let status = header.split('[').nth(1)?.split(']').next()?.to_owned();
    let seq = header
        .split("  seq ")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok();
    let mut frame = Frame {
        status,
        seq,
        ..Frame::default()
    };
    for line in lines.skip(1) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let [name, value, seq, _rate] = words[..] {
            frame
                .rows
                .insert(name.to_owned(), (value.to_owned(), seq.parse().ok()));
        }
    }
    Some(frame)
}

/// Whether a table shows the computation's own values: every name of `Rig`, each with the
/// value `Rig::at` gives for the seq it shows, and nothing else.
fn truthful(frame: &Frame) -> bool {
    frame.rows.len() == crate::common::NAMES.len()
        && frame.rows.iter().all(|(name, (value, seq))| {
            let Some(seq) = seq else { return false };
            let Ok(expected) = serde_json::from_str::<serde_json::Value>(&Rig::json_at(name, *seq))
            else {
                return false;
            };
            let shown = match expected.as_f64() {
                Some(x) if !expected.is_u64() && !expected.is_boolean() => format!("{x:.6}"),
                _ => expected.to_string(),
            };
            *value == shown
        })
}

#[test]
fn a_forged_sample_lasts_until_the_next_snapshot_and_a_restart_shows_at_once() {
    const P: &str = "trust/rig";
    let port = crate::common::free_port();
    let endpoint = format!("tcp/127.0.0.1:{port}");
    let _router = tools::start_router(port, &tools::RouterSetup::default(), &tmp("router.log"));
    let first = Computation::start(&endpoint, P);
    let watched = tmp("watch.out");
    let _watch = Guard::spawn(
        "qs watch",
        qs().args(["-e", &endpoint, "watch", P, "--interval", "100"])
            .stdout(File::create(&watched).unwrap())
            .stderr(Stdio::inherit()),
    );
    wait_until(LIMIT, "qs to show the computation", || {
        last_frame(&watched).is_some_and(|f| f.status == "running" && truthful(&f))
    });

    // Someone else puts under P: a value and a whole snapshot, with seqs far ahead.
    let forger = client(&endpoint);
    let forged_seq = wire::seq_attachment(999_999_999);
    forger
        .put(format!("{P}/count"), "999999")
        .attachment(forged_seq.clone())
        .wait()
        .unwrap();
    forger
        .put(
            format!("{P}/{}", wire::SNAPSHOT_CHUNK),
            r#"{"seq":999999999,"values":{"count":999999,"forged":1}}"#,
        )
        .attachment(forged_seq)
        .wait()
        .unwrap();
    let forged_at = first.seq();
    // The computation's next snapshots put its own values back.
    wait_until(LIMIT, "the forged values to go", || {
        last_frame(&watched).is_some_and(|f| {
            truthful(&f)
                && f.seq
                    .is_some_and(|seq| seq > forged_at && seq < 999_999_999)
        })
    });

    // The computation restarts: a new session, a new token, its seq from 1 again.
    let last = first.stop();
    wait_until(LIMIT, "qs to see it go", || {
        last_frame(&watched).is_some_and(|f| f.status == "gone")
    });
    let second = Computation::start(&endpoint, P);
    wait_until(LIMIT, "qs to show the new run", || {
        last_frame(&watched).is_some_and(|f| {
            f.status == "running" && truthful(&f) && f.seq.is_some_and(|seq| seq < last)
        })
    });
    let frame = last_frame(&watched).unwrap();
    println!("after the restart (the first run ended at seq {last}): {frame:?}");
    assert!(second.seq() < last, "the second run outran the first");
    forger.close().wait().unwrap();
}

#[test]
fn a_bare_token_and_a_forged_snapshot_are_no_computation_in_qs_list() {
    let port = crate::common::free_port();
    let endpoint = format!("tcp/127.0.0.1:{port}");
    let _router = tools::start_router(port, &tools::RouterSetup::default(), &tmp("list.log"));
    let real = Computation::start(&endpoint, "trust/real");
    let forger = client(&endpoint);
    let _token = forger
        .liveliness()
        .declare_token("trust/fake")
        .wait()
        .unwrap();
    forger
        .put(
            format!("trust/fake/{}", wire::SNAPSHOT_CHUNK),
            r#"{"seq":1,"values":{"x":1}}"#,
        )
        .wait()
        .unwrap();
    wait_until(LIMIT, "the computation to publish", || real.seq() > 10);

    let (out, err) = (tmp("list.out"), tmp("list.err"));
    let mut list = Guard::spawn(
        "qs list",
        qs().args(["-e", &endpoint, "list"])
            .stdout(File::create(&out).unwrap())
            .stderr(File::create(&err).unwrap()),
    );
    assert!(list.wait_for(LIMIT).success());
    let (listed, said) = (
        std::fs::read_to_string(&out).unwrap(),
        std::fs::read_to_string(&err).unwrap(),
    );
    println!("{listed}{said}");
    assert!(listed.contains("trust/real"), "{listed}");
    assert!(!listed.contains("trust/fake"), "{listed}");
    assert!(
        said.contains("not answering") && said.contains("trust/fake"),
        "{said}"
    );
    drop(real);
    forger.close().wait().unwrap();
}

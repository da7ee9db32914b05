//! The README's closed set-up, with its example files (`config/`): a router with
//! user/password authentication and access control that lets only the computation
//! (user `plant`) put and declare under `demo/plant`. Viewers (user `viewer`: `qs`, a
//! subscriber here, a subscriber in Python) see the computation's values; what another
//! client forges, logged in as a viewer or not logged in at all, reaches none of them.
//! And the README's advice on idle connections: a short `accept_timeout` in a
//! configuration file lets new sessions in sooner.

use crate::common::{qs, tools, wait_until, AnyConnection, Guard, Rig};
use queueserver::{QueueServer, Runner};
use queueserver_zenoh::{config, wire, Options, Zenoh};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zenoh::sample::Sample;
use zenoh::Wait;

const P: &str = "demo/plant";
const FORGED: &str = "999999";
const LIMIT: Duration = Duration::from_secs(20);

fn example(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config")
        .join(file)
}

fn tmp(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("security-{}-{name}", std::process::id()))
}

/// A configuration file of `config/`, pointed at the router at `endpoint`.
fn session_config(file: &str, endpoint: &str) -> zenoh::Config {
    let mut config = config::from_file(example(file)).unwrap();
    config::apply(&mut config, None, &[], &[endpoint]).unwrap();
    config
}

#[test]
fn only_the_computation_publishes_through_the_closed_router() {
    let port = crate::common::free_port();
    let endpoint = format!("tcp/127.0.0.1:{port}");
    let users = example("users.txt");
    let setup = tools::RouterSetup {
        file: Some(example("router.json5")),
        overrides: vec![(
            "transport/auth/usrpwd/dictionary_file".into(),
            serde_json::to_string(&users.to_str().unwrap()).unwrap(),
        )],
    };
    let _router = tools::start_router(port, &setup, &tmp("router.log"));

    // No password, a wrong one: no session at all.
    for (what, auth) in [
        ("no user", None),
        ("a wrong password", Some(("viewer", "guess"))),
    ] {
        let mut config = config::client(&[&endpoint]).unwrap();
        if let Some((user, password)) = auth {
            config
                .insert_json5(
                    "transport/auth/usrpwd",
                    &format!(r#"{{ user: "{user}", password: "{password}" }}"#),
                )
                .unwrap();
        }
        assert!(
            zenoh::open(config).wait().is_err(),
            "a client with {what} got in"
        );
    }

    // The computation, logged in as `plant`.
    let (mut publisher, mut server) = QueueServer::<Rig, AnyConnection>::new(Rig::default());
    let zenoh = Zenoh::open(
        &mut server,
        session_config("computation.json5", &endpoint),
        P,
        Options::new(),
    )
    .unwrap();
    let runner = Runner::every(server, Duration::from_millis(1)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let computation = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut seq = 0;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                publisher.put_update(&Rig::at(seq));
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };

    // Viewers: qs, a subscriber here, a subscriber in Python; all logged in as `viewer`.
    let watched = tmp("watch.out");
    let _watch = Guard::spawn(
        "qs watch",
        qs().arg("-c")
            .arg(example("viewer.json5"))
            .args(["-e", &endpoint, "watch", P, "--interval", "100"])
            .stdout(File::create(&watched).unwrap())
            .stderr(Stdio::inherit()),
    );
    let viewer = zenoh::open(session_config("viewer.json5", &endpoint))
        .wait()
        .unwrap();
    let heard = Arc::new(Mutex::new(Vec::<String>::new()));
    let _subscriber = {
        let heard = Arc::clone(&heard);
        viewer
            .declare_subscriber(format!("{P}/**"))
            .callback(move |sample: Sample| {
                let payload = sample.payload().try_to_string().unwrap().into_owned();
                heard.lock().unwrap().push(payload);
            })
            .wait()
            .unwrap()
    };
    let python_out = tmp("python.out");
    let mut python = Guard::spawn(
        "listen.py",
        Command::new(tools::python())
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/listen.py"))
            .arg(example("viewer.json5"))
            .args([&endpoint, &format!("{P}/**"), "6"])
            .stdout(File::create(&python_out).unwrap())
            .stderr(Stdio::inherit()),
    );
    wait_until(LIMIT, "the viewers to hear the computation", || {
        heard.lock().unwrap().len() > 20
            && std::fs::read_to_string(&watched).is_ok_and(|text| text.contains("[running]"))
    });

    // A forger logged in as a viewer puts a value, a snapshot and a token, again and again.
    let forger = zenoh::open(session_config("viewer.json5", &endpoint))
        .wait()
        .unwrap();
    let _token = forger.liveliness().declare_token("demo/plant").wait();
    let until = Instant::now() + Duration::from_secs(2);
    let mut forged = 0;
    while Instant::now() < until {
        // The router drops them; the calls themselves succeed.
        forger
            .put(format!("{P}/count"), FORGED)
            .attachment(wire::seq_attachment(999_999_999))
            .wait()
            .unwrap();
        forger
            .put(
                format!("{P}/{}", wire::SNAPSHOT_CHUNK),
                format!(r#"{{"seq":999999999,"values":{{"count":{FORGED}}}}}"#),
            )
            .wait()
            .unwrap();
        forged += 2;
        std::thread::sleep(Duration::from_millis(20));
    }
    let python_status = python.wait_for(LIMIT);

    stop.store(true, Ordering::Relaxed);
    computation.join().unwrap();
    runner.shutdown().unwrap();
    let stats = zenoh.stats();
    zenoh.close();
    forger.close().wait().unwrap();
    viewer.close().wait().unwrap();

    let heard = heard.lock().unwrap().clone();
    let shown = std::fs::read_to_string(&watched).unwrap();
    let python_text = std::fs::read_to_string(&python_out).unwrap();
    assert!(python_status.success(), "listen.py: {python_status}");
    let report: serde_json::Value = serde_json::from_str(python_text.trim()).unwrap();
    let python_samples = report["samples"].as_array().unwrap();
    println!(
        "{forged} forged puts; the computation put {} values; heard here {}, by Python {}",
        stats.values_put,
        heard.len(),
        python_samples.len()
    );
    // The computation's values reached every viewer...
    assert!(heard.len() > 100, "{}", heard.len());
    assert!(python_samples.len() > 100, "{}", python_samples.len());
    assert!(shown.contains("count "), "{shown}");
    // ...and nothing forged reached any of them.
    assert!(!heard.iter().any(|p| p.contains(FORGED)), "{heard:?}");
    assert!(
        !python_samples
            .iter()
            .any(|s| s[1].as_str().is_some_and(|p| p.contains(FORGED))),
        "{python_text}"
    );
    assert!(!shown.contains(FORGED), "qs showed a forged value");
}

/// Idle TCP connections fill Zenoh's `accept_pending` places until `accept_timeout` drops
/// them (10 s by default); a computation configured (`-c FILE`) with a short
/// `accept_timeout` lets a new session in again that much sooner.
#[test]
fn a_short_accept_timeout_lets_sessions_in_past_idle_connections() {
    const P: &str = "idle/rig";
    let port = crate::common::free_port();
    let file = tmp("accept.json5");
    std::fs::write(
        &file,
        format!(
            r#"{{ mode: "peer", listen: {{ endpoints: ["tcp/127.0.0.1:{port}"] }},
                  scouting: {{ multicast: {{ enabled: false }} }},
                  transport: {{ unicast: {{ accept_timeout: 1000 }} }} }}"#
        ),
    )
    .unwrap();
    let (mut publisher, mut server) = QueueServer::<Rig, AnyConnection>::new(Rig::default());
    let zenoh = Zenoh::open(
        &mut server,
        config::from_file(&file).unwrap(),
        P,
        Options::new(),
    )
    .unwrap();
    publisher.put_update(&Rig::at(1));
    let runner = Runner::every(server, Duration::from_millis(1)).unwrap();

    // Twice Zenoh's default `accept_pending` (100) connections that never say a word.
    let idle: Vec<std::net::TcpStream> = (0..200)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let started = Instant::now();
    let endpoint = format!("tcp/127.0.0.1:{port}");
    loop {
        let out = qs()
            .args(["-e", &endpoint, "--mode", "peer", "list"])
            .stderr(Stdio::null())
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).contains(P) {
            break;
        }
        assert!(started.elapsed() < LIMIT, "qs never got in");
    }
    let waited = started.elapsed();
    println!(
        "qs got in {:.1} s after 200 idle connections",
        waited.as_secs_f64()
    );
    drop(idle);
    runner.shutdown().unwrap();
    zenoh.close();
    // Zenoh's default (10 s) would keep it out longer than this.
    assert!(waited < Duration::from_secs(8), "{waited:?}");
}

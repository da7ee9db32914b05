//! The demo as a user runs it: started as its own binary, stopped by a signal sent to its
//! PID (Ctrl-C is SIGINT), two of them on one machine (each on an endpoint of its own, or
//! both through a router, as the README sets them up), and one whose Zenoh port is taken.
//!
//! The router is `zenohd` 1.10.2 when there is one (`QS_ZENOHD`, else the `PATH`; `.ci/run`
//! installs it), else the router zenohd runs, the `zenoh` crate in router mode, opened in
//! this test's process.

mod common;

use common::{example, Demo};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use zenoh::Wait;

/// Each demo spins a core half the time (its 10 kHz loop): the tests run their demos one
/// test at a time, so that a 2-core machine keeps up.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A TCP port on loopback that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A demo without web view, on Zenoh at `tcp/127.0.0.1:port` under `prefix`, once it is
/// published and has printed a second of progress.
fn start(port: u16, prefix: &str, more: &[&str]) -> Demo {
    let endpoint = format!("tcp/127.0.0.1:{port}");
    let mut args = vec!["--no-web", "--zenoh-listen", &endpoint, "--prefix", prefix];
    args.extend_from_slice(more);
    let mut demo = Demo::start(&example("demo"), &args);
    demo.line_after("zenoh: published under ");
    demo.wait_stderr("[  1.0 s]");
    demo
}

/// The demo stopped and summed up: exit 0, the summary, every check `ok`.
fn check_summary(demo: &mut Demo, how: &str) {
    let status = demo.wait();
    let out = demo.output();
    assert!(status.success(), "after {how}: {status}\n{out}");
    assert!(out.contains("== summary after"), "after {how}:\n{out}");
    assert!(out.contains("consolidation: in the clients"), "{out}");
    let checks: Vec<&str> = out
        .lines()
        .skip_while(|line| *line != "accounting:")
        .skip(1)
        .collect();
    assert!(checks.len() >= 10, "after {how}: {checks:?}");
    assert!(
        checks.iter().all(|c| c.trim_start().starts_with("ok")),
        "{checks:?}"
    );
}

#[test]
fn sigint_and_sigterm_stop_the_demo_with_its_summary() {
    let _serial = one_at_a_time();
    for signal in ["INT", "TERM"] {
        let mut demo = start(free_port(), "test/stop", &[]);
        demo.signal(signal);
        check_summary(&mut demo, &format!("SIG{signal}"));
        assert!(
            demo.stderr().contains("interrupted: stopping"),
            "{}",
            demo.stderr()
        );
    }
}

#[test]
fn two_demos_on_one_machine_are_both_listed() {
    let _serial = one_at_a_time();
    let (a, b) = (free_port(), free_port());
    let mut first = start(a, "test/first", &[]);
    let mut second = start(b, "test/second", &[]);
    let listed = Command::new(example("qs"))
        .args(["-e", &format!("tcp/127.0.0.1:{a}")])
        .args(["-e", &format!("tcp/127.0.0.1:{b}")])
        .args(["--mode", "peer", "list"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "{listed:?}");
    assert!(
        out.contains("test/first") && out.contains("test/second"),
        "{out}\n{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    for demo in [&mut first, &mut second] {
        demo.signal("INT");
        check_summary(demo, "SIGINT");
    }
}

#[test]
fn a_taken_zenoh_port_is_named_with_what_qs_then_shows() {
    let _serial = one_at_a_time();
    let port = free_port();
    let mut first = start(port, "test/taken", &[]);
    // A second demo on the same endpoint: it says so, and runs on without Zenoh.
    let endpoint = format!("tcp/127.0.0.1:{port}");
    let mut second = Demo::start(
        &example("demo"),
        &["--no-web", "--zenoh-listen", &endpoint, "--seconds", "1"],
    );
    check_summary(&mut second, "a bounded run");
    let said = second.stderr();
    assert!(said.contains(&format!("{endpoint} is taken")), "{said}");
    assert!(said.contains("--zenoh-listen"), "{said}");
    first.signal("TERM");
    check_summary(&mut first, "SIGTERM");
}

/// A router on `tcp/127.0.0.1:port`, once it accepts connections: zenohd as a child process
/// (killed when dropped), or the zenoh crate in router mode in this process.
enum Router {
    Zenohd(std::process::Child),
    Crate(zenoh::Session),
}

impl Router {
    fn start(port: u16) -> Self {
        let listen = format!("tcp/127.0.0.1:{port}");
        let zenohd = std::env::var_os("QS_ZENOHD")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::split_paths(&std::env::var_os("PATH")?)
                    .map(|dir| dir.join("zenohd"))
                    .find(|path| path.is_file())
            });
        let router = match zenohd {
            Some(zenohd) => Router::Zenohd(
                Command::new(zenohd)
                    .args(["-l", &listen, "--no-multicast-scouting"])
                    .args(["--cfg", "plugins_loading/enabled:false"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start zenohd"),
            ),
            None => {
                let mut config = zenoh::Config::default();
                config.insert_json5("mode", r#""router""#).unwrap();
                config
                    .insert_json5("scouting/multicast/enabled", "false")
                    .unwrap();
                config
                    .insert_json5("listen/endpoints", &format!(r#"["{listen}"]"#))
                    .unwrap();
                Router::Crate(zenoh::open(config).wait().unwrap())
            }
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the router does not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        router
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        match self {
            // Our own child, by its PID.
            Router::Zenohd(child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Router::Crate(session) => drop(session.close().wait()),
        }
    }
}

#[test]
fn two_demos_through_a_router_are_both_listed() {
    let _serial = one_at_a_time();
    let port = free_port();
    let router = format!("tcp/127.0.0.1:{port}");
    let _router = Router::start(port);
    let mut demos: Vec<Demo> = ["test/left", "test/right"]
        .iter()
        .map(|prefix| {
            let mut demo = Demo::start(
                &example("demo"),
                &["--no-web", "--zenoh-router", &router, "--prefix", prefix],
            );
            demo.line_after("zenoh: published under ");
            demo
        })
        .collect();
    let listed = Command::new(example("qs"))
        .args(["-e", &router, "list"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success() && out.contains("test/left") && out.contains("test/right"),
        "{out}\n{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    for demo in &mut demos {
        demo.signal("INT");
        check_summary(demo, "SIGINT");
    }
}

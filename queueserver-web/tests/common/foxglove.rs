//! Foxglove's client library, `@foxglove/ws-protocol` 0.8.0, on Node, driven by a test:
//! `tests/foxglove/client.cjs` runs it, takes commands on its stdin and tells what happens
//! on its stdout, one JSON object a line each way.
//!
//! Node is `$QS_NODE` or `node` on `PATH`; when it is missing and the test runs as root,
//! Debian's `nodejs` and `npm` are installed with apt-get. The package (with `ws` 8.18.3,
//! the WebSocket it runs on) is looked for in `$QS_FOXGLOVE_WS/node_modules` (`.ci/run`
//! sets it), else in `target/tools/foxglove/node_modules`, where it is installed with npm
//! when missing. Each client is a Node process of the test's own, ended by its PID when
//! dropped.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The version of the client library the tests drive.
pub const VERSION: &str = "0.8.0";
const WS_VERSION: &str = "8.18.3";

/// How long any one event may take to come: a bound on liveness, not a measure of speed.
pub const PATIENCE: Duration = Duration::from_secs(20);

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    })
}

/// Writes a line to stderr past the test harness's capture: what the test installs is
/// said even when it passes.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn run(program: &Path, args: &[&str], advice: &str) {
    let status = Command::new(program)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "{advice} (`{} {}` failed.)",
        program.display(),
        args.join(" ")
    );
}

fn find_node() -> Option<PathBuf> {
    std::env::var_os("QS_NODE")
        .map(PathBuf::from)
        .or_else(|| on_path("node"))
}

/// Node, installed from Debian's packages if it is missing and we are root.
fn node() -> PathBuf {
    if let Some(node) = find_node() {
        return node;
    }
    let advice = "The Foxglove tests need Node and npm: install Debian's `nodejs` and `npm` \
                  or set QS_NODE to a node binary.";
    assert!(
        is_root(),
        "{advice} (Not running as root: not installing them.)"
    );
    say("foxglove test: Node not found; installing Debian's `nodejs` and `npm`");
    let apt = PathBuf::from("apt-get");
    run(&apt, &["update", "-qq"], advice);
    run(&apt, &["install", "-y", "-qq", "nodejs", "npm"], advice);
    find_node().unwrap_or_else(|| panic!("{advice} (Installed, yet not on PATH.)"))
}

fn installed(dir: &Path) -> bool {
    let manifest = dir.join("node_modules/@foxglove/ws-protocol/package.json");
    std::fs::read_to_string(manifest).is_ok_and(|text| {
        serde_json::from_str::<Value>(&text).is_ok_and(|v| v["version"] == VERSION)
    }) && dir.join("node_modules/ws/package.json").is_file()
}

/// The folder whose `node_modules` holds the client library: installed once per test
/// process when missing.
fn package_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("QS_FOXGLOVE_WS") {
            let dir = PathBuf::from(dir);
            assert!(
                installed(&dir),
                "QS_FOXGLOVE_WS={} holds no @foxglove/ws-protocol {VERSION} and ws",
                dir.display()
            );
            return dir;
        }
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tools/foxglove");
        if !installed(&dir) {
            node();
            let npm = on_path("npm").unwrap_or_else(|| PathBuf::from("npm"));
            say(&format!(
                "foxglove test: installing @foxglove/ws-protocol@{VERSION} and ws@{WS_VERSION} \
                 with npm into {}",
                dir.display()
            ));
            std::fs::create_dir_all(&dir).expect("make the package folder");
            let prefix = dir.to_str().expect("a UTF-8 path");
            run(
                &npm,
                &[
                    "install",
                    "--prefix",
                    prefix,
                    "--no-audit",
                    "--no-fund",
                    "--save-exact",
                    &format!("@foxglove/ws-protocol@{VERSION}"),
                    &format!("ws@{WS_VERSION}"),
                ],
                "The Foxglove tests install their client library with npm.",
            );
            assert!(installed(&dir), "npm installed no client library");
        }
        dir
    })
}

/// One Foxglove client: a Node process of our own, ended by its PID when dropped.
pub struct Foxglove {
    child: Child,
    stdin: ChildStdin,
    events: Receiver<Value>,
}

impl Foxglove {
    /// Starts a client of `url`, sending `origin` as its `Origin` if given.
    pub fn start(url: &str, origin: Option<&str>) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/foxglove/client.cjs");
        let mut command = Command::new(node());
        command
            .arg(script)
            .arg(url)
            .env("NODE_PATH", package_dir().join("node_modules"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(origin) = origin {
            command.arg(origin);
        }
        let mut child = command.spawn().expect("start node");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (send, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let event = serde_json::from_str(&line)
                    .unwrap_or_else(|why| panic!("not JSON from the client ({why}): {line}"));
                if send.send(event).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            stdin,
            events,
        }
    }

    /// The process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a command.
    pub fn send(&mut self, command: Value) {
        writeln!(self.stdin, "{command}").expect("the client takes commands");
        self.stdin.flush().expect("the client takes commands");
    }

    /// The next event, within `PATIENCE`.
    pub fn next(&self) -> Value {
        self.next_within(PATIENCE)
            .unwrap_or_else(|| panic!("no event from the Foxglove client within {PATIENCE:?}"))
    }

    /// The next event within `wait`, if one comes.
    pub fn next_within(&self, wait: Duration) -> Option<Value> {
        match self.events.recv_timeout(wait) {
            Ok(event) => Some(event),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => panic!("the Foxglove client exited"),
        }
    }

    /// Events until one of kind `event`, which is returned with those skipped.
    pub fn until(&self, event: &str) -> (Value, Vec<Value>) {
        let deadline = Instant::now() + PATIENCE;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = self
                .next_within(left)
                .unwrap_or_else(|| panic!("no {event} from the Foxglove client: {skipped:?}"));
            if next["event"] == event {
                return (next, skipped);
            }
            skipped.push(next);
        }
    }

    /// Subscribes to `topics`; returns their subscription ids, in order.
    pub fn subscribe(&mut self, topics: &[&str]) -> Vec<u64> {
        self.send(json!({ "cmd": "subscribe", "topics": topics }));
        topics
            .iter()
            .map(|topic| {
                let (event, _) = self.until("subscribed");
                assert_eq!(event["topic"], *topic, "{event}");
                event["subscription"].as_u64().expect("an id")
            })
            .collect()
    }

    /// Sends SIGSTOP (`stop == true`) or SIGCONT to the process: a client that stops
    /// reading, then reads again.
    pub fn pause(&self, stop: bool) {
        let signal = if stop { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .arg(signal)
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {}", self.pid());
    }
}

impl Drop for Foxglove {
    fn drop(&mut self) {
        // SIGKILL, which ends a stopped process too.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

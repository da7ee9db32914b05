//! What the demo's tests share: the example binaries, built if need be, and a running
//! demo whose output is read as it comes.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest the tests wait for the demo: to print a line, to end, to close its output.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Whether `binary` is newer than every file its Cargo dep-info (`<binary>.d`, a Makefile
/// rule: `binary: source source …`, spaces in names escaped) lists.
pub fn is_fresh(binary: &Path) -> bool {
    let (Ok(built), Ok(rule)) = (
        binary.metadata().and_then(|m| m.modified()),
        std::fs::read_to_string(binary.with_extension("d")),
    ) else {
        return false;
    };
    let Some((_, sources)) = rule.lines().next().and_then(|line| line.split_once(": ")) else {
        return false;
    };
    let sources = sources.replace("\\ ", "\0");
    sources.split(' ').filter(|s| !s.is_empty()).all(|source| {
        let source = PathBuf::from(source.replace('\0', " "));
        // A source that is gone no longer counts: Cargo decides what the build needs.
        source
            .metadata()
            .and_then(|m| m.modified())
            .map_or(true, |modified| modified <= built)
    })
}

/// The demo crate's example `name` (`demo`, `qs`), next to this test's
/// (`target/<profile>/deps/…`), built with Cargo if it is not there or older than its
/// sources (`cargo test --test browser` builds no example).
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps");
    let demo = profile
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if is_fresh(&demo) {
        return demo;
    }
    let mut cargo = Command::new(env!("CARGO"));
    cargo.args(["build", "--example", name, "-p", "queueserver-demo"]);
    match profile.file_name().and_then(|name| name.to_str()) {
        Some("debug") => {}
        Some("release") => drop(cargo.arg("--release")),
        Some(other) => drop(cargo.args(["--profile", other])),
        None => {}
    }
    if let Some(target) = profile.parent() {
        cargo.arg("--target-dir").arg(target);
    }
    eprintln!("demo tests: building the example {name}: {cargo:?}");
    let mut build = cargo.spawn().expect("run cargo");
    // Only the example is left to compile: the test links the demo's dependencies already.
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = build.try_wait().expect("wait for cargo") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = build.kill();
            let _ = build.wait();
            panic!("building the example {name} took more than 300 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "building the example {name} failed: {status}"
    );
    assert!(demo.is_file(), "cargo built no {}", demo.display());
    demo
}

/// The demo, running, its output read as it comes; killed (by its PID, through `Child`) if the test ends before it does.
/// On a failure its output is shown.
pub struct Demo {
    pub child: Child,
    /// Its stdout, a line at a time, as a thread reads it.
    lines: Receiver<String>,
    /// The lines of stdout received so far.
    pub stdout: Vec<String>,
    /// Its stderr (progress once per second), as a thread reads it.
    stderr: Arc<Mutex<String>>,
}

impl Demo {
    /// Starts `binary` with `args`.
    pub fn start(binary: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr_pipe = child.stderr.take().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let into = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut chunk = [0; 4096];
            while let Ok(n @ 1..) = stderr_pipe.read(&mut chunk) {
                into.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
        Self {
            child,
            lines,
            stdout: Vec::new(),
            stderr,
        }
    }

    /// The next line of stdout, if one comes before `deadline`; `None` at its end.
    pub fn next_line(&mut self, deadline: Instant, what: &str) -> Option<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => {
                self.stdout.push(line.clone());
                Some(line)
            }
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => panic!("timed out waiting for {what}"),
        }
    }

    /// What follows `prefix` on the first line of stdout that starts with it.
    pub fn line_after(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        let what = format!("the demo to print {prefix:?}");
        while let Some(line) = self.next_line(deadline, &what) {
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.to_owned();
            }
        }
        panic!("the demo's output ended without {prefix:?}");
    }

    /// Waits for the demo to end, and for the end of its output.
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for the demo") {
                break status;
            }
            assert!(Instant::now() < deadline, "the demo did not end in time");
            std::thread::sleep(Duration::from_millis(50));
        };
        while self
            .next_line(deadline, "the end of the demo's output")
            .is_some()
        {}
        status
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "the demo's stdout:\n{}\nits stderr:\n{}",
                self.stdout.join("\n"),
                self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
            );
        }
    }
}

impl Demo {
    /// Its PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to it, by its PID (the `kill` command: the workspace has no `unsafe`).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {}", self.pid());
    }

    /// Its stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Its stdout so far, as far as it was read.
    pub fn output(&self) -> String {
        self.stdout.join("\n")
    }

    /// Waits until its stderr holds `text`.
    pub fn wait_stderr(&self, text: &str) {
        let deadline = Instant::now() + PATIENCE;
        while !self.stderr().contains(text) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {text:?} on stderr"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

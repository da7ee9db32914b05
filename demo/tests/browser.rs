//! The demo's page in a real browser: the test starts the demo's example binary, as a user
//! would (`demo --seconds 8 --web 127.0.0.1:0`), reads the URL it prints, loads the page in
//! headless Chromium (the web view's driver, `queueserver-web/tests/common/browser.rs`),
//! and checks what the page shows while the control loop runs and after it stops, against
//! the final snapshot the demo prints.
//!
//! The binary is the one `cargo test` builds next to this test (`target/<profile>/examples/
//! demo`); when it is missing or older than its sources (`cargo test --test browser` builds
//! no example), the test builds it with Cargo. The page's screenshot is saved as `demo-view.png` in Cargo's test
//! scratch directory.

#[path = "../../queueserver-web/tests/common/browser.rs"]
mod browser;

use browser::{number, Browser, Shown};
use serde_json::json;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the demo runs, s.
const SECONDS: u64 = 8;
/// The longest the test waits for the demo: to print its URL, to end after its run, to
/// close its output.
const PATIENCE: Duration = Duration::from_secs(30);
/// The plant's values, in the order of the demo's `Plant`.
const NAMES: [&str; 6] = [
    "time", "position", "velocity", "force", "setpoint", "energy",
];
/// The plant's step (the control loop's period), s: snapshot `n` is the plant at `n` steps.
const STEP: f64 = 1e-4;

/// Whether `binary` is newer than every file its Cargo dep-info (`<binary>.d`, a Makefile
/// rule: `binary: source source …`, spaces in names escaped) lists.
fn is_fresh(binary: &Path) -> bool {
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

/// The demo's example binary, next to this test's (`target/<profile>/deps/browser-…`), built
/// with Cargo if it is not there or older than its sources (`cargo test --test browser`
/// builds no example).
fn demo_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps");
    let demo = profile
        .join("examples")
        .join(format!("demo{}", std::env::consts::EXE_SUFFIX));
    if is_fresh(&demo) {
        return demo;
    }
    let mut cargo = Command::new(env!("CARGO"));
    cargo.args(["build", "--example", "demo", "-p", "queueserver-demo"]);
    match profile.file_name().and_then(|name| name.to_str()) {
        Some("debug") => {}
        Some("release") => drop(cargo.arg("--release")),
        Some(other) => drop(cargo.args(["--profile", other])),
        None => {}
    }
    if let Some(target) = profile.parent() {
        cargo.arg("--target-dir").arg(target);
    }
    eprintln!("browser test: building the demo: {cargo:?}");
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
            panic!("building the demo took more than 300 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "building the demo failed: {status}");
    assert!(demo.is_file(), "cargo built no {}", demo.display());
    demo
}

/// The demo, running; killed (by its PID, through `Child`) if the test ends before it does.
/// On a failure its output is shown.
struct Demo {
    child: Child,
    /// Its stdout, a line at a time, as a thread reads it.
    lines: Receiver<String>,
    /// The lines of stdout received so far.
    stdout: Vec<String>,
    /// Its stderr (progress once per second), as a thread reads it.
    stderr: Arc<Mutex<String>>,
}

impl Demo {
    fn start(binary: &Path, seconds: u64) -> Self {
        let mut child = Command::new(binary)
            .args(["--seconds", &seconds.to_string(), "--web", "127.0.0.1:0"])
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
    fn next_line(&mut self, deadline: Instant, what: &str) -> Option<String> {
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
    fn line_after(&mut self, prefix: &str) -> String {
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
    fn wait(&mut self) -> ExitStatus {
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

/// The final snapshot the demo prints: `final snapshot #SEQ: name value, …`, values with
/// four decimals.
fn final_snapshot(line: &str) -> (u64, Vec<(String, f64)>) {
    let (seq, values) = line.split_once(": ").expect("#SEQ: values");
    let seq = seq.parse().expect("the final snapshot's number");
    let values = values
        .split(", ")
        .map(|pair| {
            let (name, value) = pair.split_once(' ').expect("name value");
            (name.to_owned(), value.parse().expect("a printed value"))
        })
        .collect();
    (seq, values)
}

/// How far a value shown by the page may be from the exact one: the page shows five
/// decimals below 1000 and two above (or four significant digits below 1e-3).
fn shown_precision(value: f64) -> f64 {
    if value.abs() >= 1000.0 {
        0.5e-2
    } else {
        0.5e-5
    }
}

/// Checks that what the page shows is one snapshot of the plant: the snapshot's number
/// and the simulated time agree, the setpoint is one of its two levels, and the energy is
/// that of the position and velocity shown.
fn check_coherent(shown: &Shown) {
    let names: Vec<&str> = shown.values.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, NAMES, "{shown:?}");
    let value = |name| number(shown.value(name));
    let time = shown.seq as f64 * STEP;
    assert!(
        (value("time") - time).abs() <= shown_precision(time) + 1e-9,
        "snapshot {} is the plant at {time} s: {shown:?}",
        shown.seq
    );
    assert!(
        [0.5, -0.5].contains(&value("setpoint")),
        "the setpoint is ±0.5: {shown:?}"
    );
    let (x, v) = (value("position"), value("velocity"));
    let energy = 0.5 * v * v + 0.5 * 20.0 * x * x;
    // Each of x and v is off by up to 5e-6 as shown.
    let slack = (v.abs() + 20.0 * x.abs() + 1.0) * 1e-5 + shown_precision(energy);
    assert!(
        (value("energy") - energy).abs() <= slack,
        "energy is ½v² + ½·20·x² = {energy}: {shown:?}"
    );
}

#[test]
fn the_demo_page_shows_the_plant_live_and_its_final_snapshot() {
    let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let binary = demo_binary();
    // The browser first, so that the demo's seconds are spent on the page.
    let mut browser = Browser::launch(&scratch);
    let mut demo = Demo::start(&binary, SECONDS);
    let url = demo.line_after("web view: open ");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    browser.call("Page.navigate", json!({ "url": url }));

    // Live, with the plant's names, in its order, and a snapshot the loop published.
    browser.wait_until(
        "the page to go live with the plant's names",
        &format!(
            "document.getElementById('state').dataset.state === 'live' \
             && Number(document.getElementById('seq').textContent.replace(/,/g, '')) > 0 \
             && JSON.stringify([...document.querySelectorAll('#values tr[data-name]')] \
                .map(r => r.dataset.name)) === {}",
            json!(json!(NAMES).to_string())
        ),
    );

    // The values change: a later snapshot, and the mass has moved.
    let first = browser.shown();
    check_coherent(&first);
    browser.wait_until(
        "the values to change",
        &format!(
            "Number(document.getElementById('seq').textContent.replace(/,/g, '')) > {} \
             && document.querySelector(\"#values tr[data-name='position'] .value\") \
                .textContent !== {}",
            first.seq,
            json!(first.value("position"))
        ),
    );
    let second = browser.shown();
    check_coherent(&second);
    assert!(second.seq > first.seq, "{first:?} then {second:?}");
    assert_ne!(
        second.value("position"),
        first.value("position"),
        "{first:?} then {second:?}"
    );

    // Plot the position alone, and see that the plot has drawn it.
    browser.eval(
        "for (const row of document.querySelectorAll('#values tr[data-name]')) {
             const box = row.querySelector('input');
             if (box.checked !== (row.dataset.name === 'position')) box.click();
         } true",
    );
    browser.wait_until(
        "the plot to draw the position",
        "JSON.stringify(queueserverView.ticked) === '[\"position\"]' \
         && queueserverView.plotPoints() > 30 && queueserverView.seriesPixels() > 200",
    );

    // The server's counters: snapshots published, and the probe's requests answered.
    browser.wait_until(
        "the counters",
        "Number(document.getElementById('c-published').textContent.replace(/,/g, '')) > 0 \
         && Number(document.getElementById('c-answered').textContent.replace(/,/g, '')) > 0",
    );
    let rate = number(browser.text("rate").trim_end_matches(" /s"));
    assert!(rate > 0.0, "{rate}");

    // A name of the plant is answered, through the server, from a snapshot at least as
    // new as the one shown before; a valid name that is no key of it is not found.
    let answer = browser.ask("position", "answer");
    let answered_seq = number(answer["seq"].as_str().unwrap()) as u64;
    let answered = number(answer["value"].as_str().unwrap());
    assert!(answered.is_finite(), "{answer}");
    assert!(answered_seq >= second.seq, "{answer} after {second:?}");
    let said = answer["text"].as_str().unwrap();
    assert!(said.starts_with("position = "), "{said}");
    let not_found = browser.ask("torque", "not-found");
    let said = not_found["text"].as_str().unwrap();
    assert!(said.starts_with("torque: not found"), "{said}");

    let png = browser.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = scratch.join("demo-view.png");
    std::fs::write(&path, &png).unwrap();
    eprintln!("browser test: screenshot at {}", path.display());

    // The demo ends by itself, its accounting sound, and prints its final snapshot.
    let status = demo.wait();
    assert!(status.success(), "the demo exited with {status}");
    let line = demo
        .stdout
        .iter()
        .find_map(|line| line.strip_prefix("final snapshot #"))
        .expect("the demo prints its final snapshot")
        .to_owned();
    let (final_seq, printed) = final_snapshot(&line);
    let printed_names: Vec<&str> = printed.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(printed_names, NAMES, "{line}");
    assert!(answered_seq <= final_seq, "{answer} before #{final_seq}");

    // The page says the computation stopped or the view is gone, and shows the last
    // snapshot it was sent: no later than the last published, and if it is that one, its
    // values as printed.
    browser.wait_until(
        "the stopped or disconnected state",
        "['stopped', 'disconnected'].includes(document.getElementById('state').dataset.state)",
    );
    let last = browser.shown();
    check_coherent(&last);
    assert!(
        last.seq >= second.seq && last.seq <= final_seq,
        "{last:?}, the demo's last #{final_seq}"
    );
    if last.seq == final_seq {
        for (name, value) in &printed {
            let shown = number(last.value(name));
            // Printed with four decimals.
            assert!(
                (shown - value).abs() <= 0.5e-4 + shown_precision(shown) + 1e-9,
                "{name}: shown {shown}, printed {value}: {last:?}, {line}"
            );
        }
    }
    eprintln!(
        "browser test: the page's last snapshot #{}, the demo's #{final_seq}",
        last.seq
    );
}

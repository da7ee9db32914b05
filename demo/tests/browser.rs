//! The demo's page in a real browser: the test starts the demo's example binary, as a user
//! would (`demo --seconds 8 --web 127.0.0.1:0 --no-zenoh`), reads the URL it prints, loads
//! the page in headless Chromium (the web view's driver, `queueserver-web/tests/common/browser.rs`),
//! and checks what the page shows while the control loop runs and after it stops, against
//! the final snapshot the demo prints.
//!
//! The binary is the one `cargo test` builds next to this test (`target/<profile>/examples/
//! demo`); when it is missing or older than its sources (`cargo test --test browser` builds
//! no example), the test builds it with Cargo. The page's screenshot is saved as `demo-view.png` in Cargo's test
//! scratch directory.

#[path = "../../queueserver-web/tests/common/browser.rs"]
mod browser;
mod common;

use browser::{number, Browser, Shown};
use common::{example, Demo};
use serde_json::json;
use std::path::PathBuf;

/// How long the demo runs, s.
const SECONDS: u64 = 8;
/// The plant's values, in the order of the demo's `Plant`.
const NAMES: [&str; 6] = [
    "time", "position", "velocity", "force", "setpoint", "energy",
];
/// The plant's step (the control loop's period), s: snapshot `n` is the plant at `n` steps.
const STEP: f64 = 1e-4;

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
    let binary = example("demo");
    // The browser first, so that the demo's seconds are spent on the page.
    let mut browser = Browser::launch(&scratch);
    let seconds = SECONDS.to_string();
    let mut demo = Demo::start(
        &binary,
        &["--seconds", &seconds, "--web", "127.0.0.1:0", "--no-zenoh"],
    );
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

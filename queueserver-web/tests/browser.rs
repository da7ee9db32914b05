//! The page in a real browser: headless Chromium (`common/browser.rs`) loads the page from
//! a view of a computation whose values are known, and checks what the page shows. The
//! page's screenshot is saved as `web-view.png` in Cargo's test scratch directory, and
//! also at `$QUEUESERVER_WEB_SCREENSHOT` if set.

#[path = "common/browser.rs"]
mod browser;
mod common;

use browser::{number, Browser};
use common::{wait_for, Rig, Wave};
use queueserver_web::Options;
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

/// Reads what the page shows and checks it against what snapshot `seq` held.
fn check_shown(browser: &mut Browser) -> u64 {
    let shown = browser.shown();
    let published = Wave::at(shown.seq);
    assert_eq!(number(shown.value("step")), shown.seq as f64, "{shown:?}");
    // Shown with five decimals.
    assert!(
        (number(shown.value("sine")) - published.sine).abs() < 1e-5,
        "{shown:?}"
    );
    assert!(
        (number(shown.value("cosine")) - published.cosine).abs() < 1e-5,
        "{shown:?}"
    );
    assert_eq!(
        shown.value("enabled"),
        published.enabled.to_string(),
        "{shown:?}"
    );
    shown.seq
}

#[test]
fn the_page_shows_the_values_plots_them_and_asks_for_one() {
    let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let mut rig = Rig::start(Options::new(), Duration::from_millis(1), Wave::at);
    let url = rig.view().url();
    let addr = rig.view().local_addr();
    let mut browser = Browser::launch(&scratch);
    browser.call("Page.navigate", json!({ "url": url }));

    browser.wait_until(
        "the page to go live",
        "document.getElementById('state').dataset.state === 'live' \
         && document.querySelectorAll('#values tr[data-name]').length === 5",
    );

    // The values shown are those the computation published, and they change.
    let first = check_shown(&mut browser);
    std::thread::sleep(Duration::from_millis(300));
    let second = check_shown(&mut browser);
    assert!(second > first, "{first} then {second}");

    // Plot two values, and see that the plot has drawn them.
    browser.eval(
        "for (const name of ['step', 'sine', 'cosine']) {
             const box = document.querySelector(`#values tr[data-name='${name}'] input`);
             if (box.checked !== (name !== 'step')) box.click();
         } true",
    );
    browser.wait_until(
        "the plot to hold points",
        "queueserverView.plotPoints() > 200 && queueserverView.seriesPixels() > 200",
    );

    // The server's counters and the rate received.
    browser.wait_until(
        "the counters",
        "Number(document.getElementById('c-published').textContent.replace(/,/g, '')) > 0",
    );
    let rate: f64 = number(browser.text("rate").trim_end_matches(" /s"));
    assert!(rate > 0.0, "{rate}");

    // An unknown name is not found; a known one is answered, read from the snapshot named.
    browser.ask("torque", "not-found");
    let answer = browser.ask("step", "answer");
    let seq = number(answer["seq"].as_str().unwrap());
    assert_eq!(number(answer["value"].as_str().unwrap()), seq, "{answer}");
    assert!(seq as u64 >= second, "{answer}");

    let png = browser.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = scratch.join("web-view.png");
    std::fs::write(&path, &png).unwrap();
    eprintln!("browser test: screenshot at {}", path.display());
    if let Some(copy) = std::env::var_os("QUEUESERVER_WEB_SCREENSHOT") {
        std::fs::write(&copy, &png).unwrap();
    }

    // The computation stops: the page says so.
    rig.stop_server();
    browser.wait_until(
        "the stopped state",
        "document.getElementById('state').dataset.state === 'stopped'",
    );
    // The view goes: the page says it is disconnected, and retries.
    rig.view.take().unwrap().shutdown();
    browser.wait_until(
        "the disconnected state",
        "document.getElementById('state').dataset.state === 'disconnected'",
    );
    // It comes back on the same address: the page reconnects by itself and is live again.
    let back = Rig::start(
        Options::new().bind(addr),
        Duration::from_millis(1),
        Wave::at,
    );
    browser.wait_until(
        "the page to reconnect",
        "document.getElementById('state').dataset.state === 'live'",
    );
    wait_for("the view to count the page", || {
        back.view().browsers().len() == 1
    });
    check_shown(&mut browser);
}

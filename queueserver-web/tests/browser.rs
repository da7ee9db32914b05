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
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
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

/// Kills a child process by its PID when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_page_loaded_over_https_through_a_tls_proxy_streams_over_wss() {
    let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tls");
    std::fs::create_dir_all(&scratch).unwrap();
    let (cert, key) = (scratch.join("cert.pem"), scratch.join("key.pem"));
    // A self-signed certificate for 127.0.0.1 (Debian's `openssl`, which the CI installs).
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl (Debian's package `openssl`)");
    assert!(made.success(), "openssl made no certificate");

    // The view behind a proxy that terminates TLS, as the README advises for exposing it.
    let proxy_port_holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_port = proxy_port_holder.local_addr().unwrap().port();
    drop(proxy_port_holder);
    let options = Options::new().allow_host(format!("127.0.0.1:{proxy_port}"));
    let rig = Rig::start(options, Duration::from_millis(1), Wave::at);
    let view = rig.view().local_addr();
    let mut proxy = Child(
        Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tls_proxy.py"))
            .args([&cert, &key])
            .args([
                view.ip().to_string(),
                view.port().to_string(),
                proxy_port.to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("run python3"),
    );
    let mut first = String::new();
    BufReader::new(proxy.0.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let port: u16 = first.trim().parse().expect("the proxy listens");
    assert_eq!(port, proxy_port);
    let url = format!("https://127.0.0.1:{port}/");

    let mut browser = Browser::launch_with(&scratch, &["--ignore-certificate-errors"]);
    browser.call("Page.navigate", json!({ "url": url }));
    browser.wait_until(
        "the page to go live over wss://",
        "document.getElementById('state').dataset.state === 'live' \
         && queueserverView.socket.url.startsWith('wss://') \
         && document.querySelectorAll('#values tr[data-name]').length === 5",
    );
    check_shown(&mut browser);
    let origin = browser.eval("location.origin");
    assert_eq!(origin, format!("https://127.0.0.1:{port}"));
    drop(browser);
    drop(proxy);
}

//! The page in a real browser: headless Chromium, driven through its DevTools protocol
//! over a WebSocket (tungstenite, as the view's own stream), loads the page from a view of
//! a computation whose values are known, and checks what the page shows.
//!
//! Chromium is found on `PATH` (`chromium`, `chromium-browser`, `google-chrome`) or at
//! `$CHROMIUM`; when it is missing and the test runs as root, Debian's `chromium` package
//! is installed with apt-get. The page's screenshot is saved as `web-view.png` in Cargo's
//! test scratch directory, and also at `$QUEUESERVER_WEB_SCREENSHOT` if set.

mod common;

use common::{wait_for, Rig, Wave};
use queueserver_web::Options;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

/// Flags that keep Chromium headless and off the network (it would otherwise call home).
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
];

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    })
}

fn find_chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| on_path(name))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Chromium, installed from Debian's packages if it is missing and we are root.
fn chromium() -> PathBuf {
    if let Some(path) = find_chromium() {
        return path;
    }
    let advice = "The browser test needs Chromium. Install Debian's package \
                  (`apt-get install chromium`) or set CHROMIUM to a Chrome or Chromium binary.";
    assert!(
        is_root(),
        "{advice} (Not running as root: not installing it.)"
    );
    eprintln!("browser test: Chromium not found; installing Debian's `chromium` with apt-get");
    for args in [
        &["update", "-qq"][..],
        &["install", "-y", "-qq", "chromium"][..],
    ] {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "{advice} (`apt-get {}` failed.)",
            args.join(" ")
        );
    }
    find_chromium().unwrap_or_else(|| panic!("{advice} (Installed, yet not on PATH.)"))
}

/// A headless Chromium of our own, ended (by its PID, through `Child`) when dropped.
struct Browser {
    child: Child,
    profile: PathBuf,
    devtools: WebSocket<TcpStream>,
    session: String,
    next_id: u64,
}

impl Browser {
    fn launch(scratch: &Path) -> Self {
        let profile = scratch.join(format!("chromium-profile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        let mut child = Command::new(chromium())
            .args(FLAGS)
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start Chromium");
        // Chromium says where its DevTools socket is on stderr.
        let stderr = child.stderr.take().unwrap();
        let (found, url) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("ws://") {
                    let _ = found.send(line[at..].trim().to_owned());
                }
            }
        });
        let url = match url.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("Chromium did not start its DevTools server within 60 s");
            }
        };
        let request = url.as_str().into_client_request().unwrap();
        let addr: SocketAddr = request.uri().authority().unwrap().as_str().parse().unwrap();
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let (devtools, _) = tungstenite::client::client(request, stream)
            .unwrap_or_else(|e| panic!("connect to Chromium's DevTools: {e}"));
        let mut browser = Self {
            child,
            profile,
            devtools,
            session: String::new(),
            next_id: 1,
        };
        let target = browser.call("Target.createTarget", json!({ "url": "about:blank" }));
        let target = target["targetId"].as_str().unwrap().to_owned();
        let attached = browser.call(
            "Target.attachToTarget",
            json!({ "targetId": target, "flatten": true }),
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": 1280, "height": 690, "deviceScaleFactor": 1, "mobile": false }),
        );
        browser
    }

    /// Sends a DevTools command (to the page, once attached) and waits for its result.
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut command = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            command["sessionId"] = json!(self.session);
        }
        self.devtools
            .send(Message::text(command.to_string()))
            .unwrap();
        loop {
            let Message::Text(text) = self.devtools.read().expect("DevTools answers") else {
                continue;
            };
            let message: Value = serde_json::from_str(text.as_str()).unwrap();
            if message["id"] == json!(id) {
                assert!(message.get("error").is_none(), "{method}: {message}");
                return message["result"].clone();
            }
        }
    }

    /// Evaluates `expression` in the page and returns its value.
    fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        );
        assert!(
            result.get("exceptionDetails").is_none(),
            "{expression}: {result}"
        );
        result["result"]["value"].clone()
    }

    /// Waits until `expression` is true in the page (an exception counts as false: the
    /// page may still be loading).
    fn wait_until(&mut self, what: &str, expression: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let guarded =
            format!("(() => {{ try {{ return {expression}; }} catch (e) {{ return false; }} }})()");
        while self.eval(&guarded) != json!(true) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn screenshot(&mut self) -> Vec<u8> {
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        data_encoding::BASE64
            .decode(shot["data"].as_str().unwrap().as_bytes())
            .unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// What the page shows: the snapshot number and each value's text.
const SHOWN: &str = r#"JSON.stringify({
    seq: document.getElementById('seq').textContent,
    values: Object.fromEntries([...document.querySelectorAll('#values tr[data-name]')]
        .map(r => [r.dataset.name, r.querySelector('.value').textContent])),
})"#;

fn number(text: &str) -> f64 {
    text.replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {text:?}"))
}

/// Reads what the page shows and checks it against what snapshot `seq` held.
fn check_shown(browser: &mut Browser) -> u64 {
    let shown: Value = serde_json::from_str(browser.eval(SHOWN).as_str().unwrap()).unwrap();
    let seq = number(shown["seq"].as_str().unwrap()) as u64;
    let published = Wave::at(seq);
    let value = |name: &str| shown["values"][name].as_str().unwrap().to_owned();
    assert_eq!(number(&value("step")), seq as f64, "{shown}");
    // Shown with five decimals.
    assert!(
        (number(&value("sine")) - published.sine).abs() < 1e-5,
        "{shown}"
    );
    assert!(
        (number(&value("cosine")) - published.cosine).abs() < 1e-5,
        "{shown}"
    );
    assert_eq!(value("enabled"), published.enabled.to_string(), "{shown}");
    seq
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
    let rate: f64 = number(
        browser
            .eval("document.getElementById('rate').textContent")
            .as_str()
            .unwrap()
            .trim_end_matches(" /s"),
    );
    assert!(rate > 0.0, "{rate}");

    // An unknown name is not found; a known one is answered, read from the snapshot named.
    browser.eval(
        "document.getElementById('ask-name').value = 'torque'; \
         document.getElementById('ask-go').click(); true",
    );
    browser.wait_until(
        "not found",
        "document.getElementById('ask-result').dataset.state === 'not-found'",
    );
    browser.eval(
        "document.getElementById('ask-name').value = 'step'; \
         document.getElementById('ask-go').click(); true",
    );
    browser.wait_until(
        "the answer",
        "document.getElementById('ask-result').dataset.state === 'answer'",
    );
    let answer = browser
        .eval("JSON.stringify(Object.assign({}, document.getElementById('ask-result').dataset))");
    let answer: Value = serde_json::from_str(answer.as_str().unwrap()).unwrap();
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

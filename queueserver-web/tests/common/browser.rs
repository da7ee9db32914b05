//! A headless Chromium of the test's own, driven through its DevTools protocol over a
//! WebSocket (tungstenite, as the view's own stream): launched, sent commands, asked to
//! evaluate expressions in the page and to take screenshots, and ended when dropped.
//!
//! Chromium is found on `PATH` (`chromium`, `chromium-browser`, `google-chrome`) or at
//! `$CHROMIUM`; when it is missing and the test runs as root, Debian's `chromium` package
//! is installed with apt-get. Shared by the browser tests of the web view and of the demo,
//! each of which includes it with `#[path]`.

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
pub struct Browser {
    child: Child,
    profile: PathBuf,
    devtools: WebSocket<TcpStream>,
    session: String,
    next_id: u64,
}

impl Browser {
    pub fn launch(scratch: &Path) -> Self {
        Self::launch_with(scratch, &[])
    }

    /// Launches Chromium with `extra` flags besides the usual ones.
    pub fn launch_with(scratch: &Path, extra: &[&str]) -> Self {
        let profile = scratch.join(format!(
            "chromium-profile-{}-{}",
            std::process::id(),
            extra.len()
        ));
        let _ = std::fs::remove_dir_all(&profile);
        let mut child = Command::new(chromium())
            .args(FLAGS)
            .args(extra)
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
    pub fn call(&mut self, method: &str, params: Value) -> Value {
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
    pub fn eval(&mut self, expression: &str) -> Value {
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
    pub fn wait_until(&mut self, what: &str, expression: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let guarded =
            format!("(() => {{ try {{ return {expression}; }} catch (e) {{ return false; }} }})()");
        while self.eval(&guarded) != json!(true) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn screenshot(&mut self) -> Vec<u8> {
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
    values: [...document.querySelectorAll('#values tr[data-name]')]
        .map(r => [r.dataset.name, r.querySelector('.value').textContent]),
})"#;

/// What the page shows of the newest update it has drawn.
#[derive(Debug)]
pub struct Shown {
    /// The snapshot's number.
    pub seq: u64,
    /// Each value's name and text, in the page's order.
    pub values: Vec<(String, String)>,
}

impl Shown {
    /// The text shown for `name`.
    pub fn value(&self, name: &str) -> &str {
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, text)| text.as_str())
            .unwrap_or_else(|| panic!("no value {name:?} shown: {self:?}"))
    }
}

impl Browser {
    /// Reads what the page shows (once it shows an update: the seq must be a number).
    pub fn shown(&mut self) -> Shown {
        let shown: Value = serde_json::from_str(self.eval(SHOWN).as_str().unwrap()).unwrap();
        let values = shown["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| {
                let text = |i: usize| pair[i].as_str().unwrap().to_owned();
                (text(0), text(1))
            })
            .collect();
        Shown {
            seq: number(shown["seq"].as_str().unwrap()) as u64,
            values,
        }
    }

    /// The text of the page's element `id`.
    pub fn text(&mut self, id: &str) -> String {
        let expression = format!("document.getElementById({}).textContent", json!(id));
        self.eval(&expression).as_str().unwrap().to_owned()
    }

    /// Asks for `name` with the page's ask field and waits until the page shows the
    /// outcome `state` (`answer`, `not-found`). Returns what it shows: `state`, `seq` and
    /// `value` (the answer's JSON; empty when not found) as strings, and its `text`.
    pub fn ask(&mut self, name: &str, state: &str) -> Value {
        // The click sets the state to `pending` at once: an earlier outcome does not count.
        self.eval(&format!(
            "document.getElementById('ask-name').value = {}; \
             document.getElementById('ask-go').click(); true",
            json!(name)
        ));
        self.wait_until(
            &format!("the ask for {name} to end {state}"),
            &format!(
                "document.getElementById('ask-result').dataset.state === {}",
                json!(state)
            ),
        );
        let shown = self.eval(
            "JSON.stringify(Object.assign({ text: document.getElementById('ask-result') \
             .textContent }, document.getElementById('ask-result').dataset))",
        );
        serde_json::from_str(shown.as_str().unwrap()).unwrap()
    }
}

/// A number as the page shows it (with thousands separators).
pub fn number(text: &str) -> f64 {
    text.replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {text:?}"))
}

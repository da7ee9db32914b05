//! What the integration tests share: the IDict they publish, sessions on loopback,
//! children stopped by PID, bounded waits, and a page of a web view.

#![allow(dead_code)]

pub mod page;
pub mod tools;

use queueserver::{Connection, IDict};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use zenoh::{Session, Wait};

/// A rig: values of several types, names with `/`.
#[derive(Clone, Debug, Default, PartialEq, IDict)]
pub struct Rig {
    pub count: u64,
    pub half: f64,
    #[idict(rename = "motor/speed")]
    pub speed: f64,
    #[idict(rename = "motor/on")]
    pub on: bool,
}

impl Rig {
    /// The state published as snapshot `seq`: every value a function of `seq`, so a reader
    /// can check any value against the `seq` it came with.
    pub fn at(seq: u64) -> Self {
        Self {
            count: seq,
            half: seq as f64 / 2.0,
            speed: seq as f64 * 0.25,
            on: seq.is_multiple_of(2),
        }
    }

    /// The JSON of the value named `name` in `Rig::at(seq)`.
    pub fn json_at(name: &str, seq: u64) -> String {
        let rig = Self::at(seq);
        match name {
            "count" => serde_json::to_string(&rig.count),
            "half" => serde_json::to_string(&rig.half),
            "motor/speed" => serde_json::to_string(&rig.speed),
            "motor/on" => serde_json::to_string(&rig.on),
            other => panic!("no value {other}"),
        }
        .unwrap()
    }
}

pub const NAMES: [&str; 4] = ["count", "half", "motor/speed", "motor/on"];

pub type AnyConnection = Box<dyn Connection<Rig> + Send>;

/// A socket file, removed when dropped.
pub struct SocketFile(pub PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A unix socket endpoint of its own for this test.
pub fn unix_endpoint(tag: &str) -> (String, SocketFile) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "qs-test-{}-{tag}-{}.sock",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&path);
    (
        format!("unixsock-stream/{}", path.display()),
        SocketFile(path),
    )
}

/// A TCP port on loopback that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A peer listening on `listen` (if any) and connecting to `connect` (if any).
pub fn peer(listen: &[&str], connect: &[&str]) -> Session {
    let config = queueserver_zenoh::config::peer(listen, connect).unwrap();
    zenoh::open(config).wait().unwrap()
}

/// A peer connected to `endpoint`, once the connection is up.
pub fn peer_of(endpoint: &str) -> Session {
    let session = peer(&[], &[endpoint]);
    wait_until(Duration::from_secs(10), "the peers to connect", || {
        session.info().peers_zid().wait().next().is_some()
    });
    session
}

/// Waits until `done`, checking every 5 ms; panics after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A child process, killed by its PID and waited for when dropped.
pub struct Guard {
    pub child: Child,
    pub name: &'static str,
}

impl Guard {
    pub fn spawn(name: &'static str, command: &mut Command) -> Self {
        let child = command
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Self { child, name }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `signal` to the child.
    pub fn signal(&self, signal: i32) {
        // The child's own PID, which we started: never a group, never by name.
        let rc = kill_pid(self.pid(), signal);
        assert_eq!(rc, 0, "kill({}, {signal}) failed", self.pid());
    }

    /// Kills the child and waits for it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits at most `limit` for the child to exit by itself; kills it after.
    pub fn wait_for(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                self.stop();
                panic!("{} did not exit within {limit:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // A stopped child must be continued to die of anything but SIGKILL; SIGKILL works
            // on stopped processes too.
            self.stop();
        }
    }
}

/// `kill(2)` through the `kill` command: the workspace has no `unsafe`.
fn kill_pid(pid: i32, signal: i32) -> i32 {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    status.code().unwrap_or(-1)
}

/// The `qs` binary of this crate.
pub fn qs() -> Command {
    Command::new(env!("CARGO_BIN_EXE_qs"))
}

/// The `p`-th quantile of sorted samples (nearest rank).
pub fn quantile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

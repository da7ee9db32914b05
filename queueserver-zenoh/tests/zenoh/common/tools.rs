//! The outside tools some tests need: a Zenoh router and a Python with `eclipse-zenoh`
//! 1.10.2 (a client no one here wrote).
//!
//! **The router** is `zenohd` 1.10.2 when there is one: `QS_ZENOHD`, else the `PATH`
//! (`.ci/run` installs it and sets `QS_ZENOHD`). Without one, the tests say so and run the
//! router that `zenohd` itself runs, the `zenoh` crate 1.10.2 opened in router mode, in a
//! process of its own (this test binary, started again as [`router_process`]): the same
//! routing, user/password authentication and access control code, without zenohd's
//! plugins. Building zenohd takes about 5 minutes on 2 cores; the tests never build it
//! behind anyone's back.
//!
//! **Python**: `QS_PYTHON`, else a venv in `target/tools/venv`, made on first use (a
//! minute or less, about 60 MB, said on the terminal as it happens) under a lock file, so
//! that tests running in parallel do not race.

use super::{wait_until, Guard};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Once;
use std::time::Duration;

/// The version of the router and of the Python client, the same as the `zenoh` crate's.
pub const ZENOH_VERSION: &str = "1.10.2";

/// Says `text` on the terminal at once. The test harness captures `eprintln!` until a
/// test fails; this goes around it, so a long install is never silent.
pub fn say(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "\n{text}\n");
    let _ = stderr.flush();
}

fn tools_dir() -> PathBuf {
    // `target/tmp` for integration tests: the tools go beside it, in `target/tools`.
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.parent().unwrap_or(tmp).join("tools");
    std::fs::create_dir_all(&dir).expect("create target/tools");
    dir
}

/// Runs `provision` with the lock of `target/tools` held.
fn locked<T>(provision: impl FnOnce() -> T) -> T {
    let lock = File::create(tools_dir().join(".lock")).expect("create the lock file");
    lock.lock().expect("lock target/tools/.lock");
    let result = provision();
    drop(lock.unlock());
    result
}

fn zenohd_fits(path: &Path) -> bool {
    Command::new(path)
        .arg("--version")
        .output()
        .is_ok_and(|out| {
            String::from_utf8_lossy(&out.stdout).contains(&format!("v{ZENOH_VERSION}"))
        })
}

/// The router program the tests start.
#[derive(Clone, Debug)]
pub enum RouterProgram {
    /// `zenohd` itself.
    Zenohd(PathBuf),
    /// The `zenoh` crate in router mode, in this test binary started again.
    Crate,
}

/// `zenohd` 1.10.2 if there is one (`QS_ZENOHD`, else the `PATH`); else the `zenoh` crate
/// in router mode, said once on the terminal with how to get zenohd.
pub fn router_program() -> RouterProgram {
    if let Some(path) = std::env::var_os("QS_ZENOHD") {
        let path = PathBuf::from(path);
        assert!(
            zenohd_fits(&path),
            "QS_ZENOHD={} is no zenohd {ZENOH_VERSION}",
            path.display()
        );
        return RouterProgram::Zenohd(path);
    }
    if let Some(path) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("zenohd"))
            .find(|path| path.is_file() && zenohd_fits(path))
    }) {
        return RouterProgram::Zenohd(path);
    }
    static SAID: Once = Once::new();
    SAID.call_once(|| {
        say(&format!(
            "queueserver-zenoh tests: no zenohd {ZENOH_VERSION} found (QS_ZENOHD unset, none on \
             PATH), so the tests through a router run the router zenohd runs, the zenoh crate \
             {ZENOH_VERSION} in router mode, in a process of their own (same routing, \
             authentication and access control; no plugins). To test against zenohd itself, \
             as .ci/run does: `cargo install zenohd --version {ZENOH_VERSION} --locked` (about \
             5 minutes on 2 cores), then put it on PATH or set QS_ZENOHD to it."
        ));
    });
    RouterProgram::Crate
}

/// A router's settings beyond its listening port: a configuration file and `key:value`
/// overrides in JSON5, as `zenohd --cfg` takes them.
#[derive(Clone, Debug, Default)]
pub struct RouterSetup {
    pub file: Option<PathBuf>,
    pub overrides: Vec<(String, String)>,
}

/// A router listening on `tcp/127.0.0.1:port`, multicast scouting off, as `setup` says,
/// started as a process of its own, once it accepts connections; its log goes to `log`.
pub fn start_router(port: u16, setup: &RouterSetup, log: &Path) -> Guard {
    let log = File::create(log).expect("create the router's log");
    let listen = format!("tcp/127.0.0.1:{port}");
    let mut command = match router_program() {
        RouterProgram::Zenohd(path) => {
            let mut command = Command::new(path);
            if let Some(file) = &setup.file {
                command.arg("-c").arg(file);
            }
            command
                .args(["-l", &listen, "--no-multicast-scouting"])
                // No plugin, no REST interface, nothing but routing.
                .args(["--cfg", "plugins_loading/enabled:false"]);
            for (key, value) in &setup.overrides {
                command.arg("--cfg").arg(format!("{key}:{value}"));
            }
            command
        }
        RouterProgram::Crate => {
            let mut command = Command::new(std::env::current_exe().expect("the test binary"));
            command
                .args([
                    "--ignored",
                    "--exact",
                    "common::tools::router_process",
                    "--nocapture",
                ])
                .env("QS_ROUTER_LISTEN", &listen)
                .env(
                    "QS_ROUTER_FILE",
                    setup.file.as_deref().unwrap_or(Path::new("")),
                )
                .env(
                    "QS_ROUTER_CFG",
                    setup
                        .overrides
                        .iter()
                        .map(|(key, value)| format!("{key}:{value}"))
                        .collect::<Vec<_>>()
                        .join("\n"),
                );
            command
        }
    };
    let guard = Guard::spawn(
        "router",
        command.stdout(log.try_clone().unwrap()).stderr(log),
    );
    wait_until(Duration::from_secs(20), "the router to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    guard
}

/// The `zenoh` crate in router mode, as [`start_router`] starts it when there is no
/// zenohd: a child process of this test binary, until it is killed (at most 5 minutes).
#[test]
#[ignore = "a router process, started by the tests through a router"]
fn router_process() {
    use zenoh::Wait;
    let (Ok(listen), Ok(file), Ok(overrides)) = (
        std::env::var("QS_ROUTER_LISTEN"),
        std::env::var("QS_ROUTER_FILE"),
        std::env::var("QS_ROUTER_CFG"),
    ) else {
        panic!("started by start_router only");
    };
    let mut config = if file.is_empty() {
        zenoh::Config::default()
    } else {
        queueserver_zenoh::config::from_file(&file).unwrap()
    };
    config.insert_json5("mode", "\"router\"").unwrap();
    config
        .insert_json5("scouting/multicast/enabled", "false")
        .unwrap();
    queueserver_zenoh::config::apply(&mut config, None, &[&listen], &[]).unwrap();
    for line in overrides.lines().filter(|line| !line.is_empty()) {
        let (key, value) = line.split_once(':').expect("key:value");
        config.insert_json5(key, value).unwrap();
    }
    let session = zenoh::open(config).wait().unwrap();
    println!("router listening on {listen}");
    std::thread::sleep(Duration::from_secs(300));
    drop(session);
}

fn python_fits(path: &Path) -> bool {
    Command::new(path)
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('eclipse-zenoh'))",
        ])
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == ZENOH_VERSION)
}

/// A Python that imports `zenoh` from `eclipse-zenoh` [`ZENOH_VERSION`]: `QS_PYTHON`, else
/// the venv in `target/tools/venv`, made on first use (said on the terminal).
pub fn python() -> PathBuf {
    if let Some(path) = std::env::var_os("QS_PYTHON") {
        let path = PathBuf::from(path);
        assert!(
            python_fits(&path),
            "QS_PYTHON={} has no eclipse-zenoh {ZENOH_VERSION}",
            path.display()
        );
        return path;
    }
    let venv = tools_dir().join("venv");
    let path = venv.join("bin").join("python");
    locked(|| {
        if !python_fits(&path) {
            say(&format!(
                "queueserver-zenoh tests: installing the Python client eclipse-zenoh \
                 {ZENOH_VERSION} from PyPI into {} (python3 -m venv, then pip), for the tests \
                 that check a client no one here wrote: about a minute or less, about 60 MB. \
                 To skip it, set QS_PYTHON to a Python that has eclipse-zenoh {ZENOH_VERSION}.",
                venv.display()
            ));
            let made = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .is_ok_and(|s| s.success());
            // pip's own lines go to the terminal, around the harness's capture.
            let installed = made
                && Command::new(venv.join("bin").join("pip"))
                    .args([
                        "install",
                        "--progress-bar",
                        "off",
                        "--disable-pip-version-check",
                        &format!("eclipse-zenoh=={ZENOH_VERSION}"),
                    ])
                    .stdout(Stdio::inherit())
                    .stderr(Stdio::inherit())
                    .status()
                    .is_ok_and(|s| s.success());
            assert!(
                installed && python_fits(&path),
                "could not install eclipse-zenoh {ZENOH_VERSION} into a venv at {}: it needs \
                 python3 with venv and PyPI; or set QS_PYTHON to a Python with eclipse-zenoh \
                 {ZENOH_VERSION}",
                venv.display()
            );
            say("queueserver-zenoh tests: eclipse-zenoh installed.");
        }
    });
    path
}

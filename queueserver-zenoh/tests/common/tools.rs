//! The outside tools some tests need, found or provisioned: `zenohd` 1.10.2 (the router)
//! and a Python with `eclipse-zenoh` 1.10.2 (a client no one here wrote).
//!
//! Each is looked for in turn: an environment variable naming it (`QS_ZENOHD`,
//! `QS_PYTHON`), the `PATH` (zenohd only), then `target/tools/`; if none fits, it is
//! installed into `target/tools/` under a lock file, so that tests running in parallel do
//! not race. A failed install panics with what to do.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The version of the router and of the Python client, the same as the `zenoh` crate's.
pub const ZENOH_VERSION: &str = "1.10.2";

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

/// A `zenohd` of version [`ZENOH_VERSION`].
pub fn zenohd() -> PathBuf {
    if let Some(path) = std::env::var_os("QS_ZENOHD") {
        let path = PathBuf::from(path);
        assert!(
            zenohd_fits(&path),
            "QS_ZENOHD={} is no zenohd {ZENOH_VERSION}",
            path.display()
        );
        return path;
    }
    if let Some(path) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("zenohd"))
            .find(|path| path.is_file() && zenohd_fits(path))
    }) {
        return path;
    }
    let root = tools_dir();
    let path = root.join("bin").join("zenohd");
    locked(|| {
        if !zenohd_fits(&path) {
            eprintln!(
                "installing zenohd {ZENOH_VERSION} into {} (minutes)",
                root.display()
            );
            let status = Command::new(env!("CARGO"))
                .args(["install", "--locked", "--root"])
                .arg(&root)
                .args(["zenohd", "--version", ZENOH_VERSION])
                .status();
            assert!(
                status.is_ok_and(|s| s.success()) && zenohd_fits(&path),
                "could not install zenohd {ZENOH_VERSION}: run `cargo install --locked zenohd \
                 --version {ZENOH_VERSION}` (it needs crates.io) or set QS_ZENOHD to a zenohd \
                 {ZENOH_VERSION}"
            );
        }
    });
    path
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

/// A Python that imports `zenoh` from `eclipse-zenoh` [`ZENOH_VERSION`].
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
            eprintln!(
                "installing eclipse-zenoh {ZENOH_VERSION} into {}",
                venv.display()
            );
            let made = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .is_ok_and(|s| s.success());
            let installed = made
                && Command::new(venv.join("bin").join("pip"))
                    .args([
                        "install",
                        "--quiet",
                        &format!("eclipse-zenoh=={ZENOH_VERSION}"),
                    ])
                    .status()
                    .is_ok_and(|s| s.success());
            assert!(
                installed && python_fits(&path),
                "could not install eclipse-zenoh {ZENOH_VERSION} into a venv at {}: it needs \
                 python3 with venv and PyPI; or set QS_PYTHON to a Python with eclipse-zenoh \
                 {ZENOH_VERSION}",
                venv.display()
            );
        }
    });
    path
}

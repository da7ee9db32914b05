//! `ZENOH_RUNTIME` as the README gives it: `qs` watching a computation, its threads read
//! from `/proc` while it runs, with Zenoh's default runtimes and with
//! [`config::SMALL_RUNTIME`] (which `qs` sets itself when the variable is unset).

use crate::common::{peer, qs, AnyConnection, Guard, Rig};
use queueserver::{QueueServer, Runner};
use queueserver_zenoh::{config, Options, Zenoh};
use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

const P: &str = "runtime/rig";

/// The names of the threads of `qs`, each without its trailing `-N` (Zenoh names a
/// runtime's threads `app-0`, `app-1`, ...); empty before `qs` runs (between fork and
/// exec the child bears the name of the thread that started it) and once it has exited.
fn threads_of(pid: u32) -> BTreeSet<String> {
    let main = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if main.trim() != "qs" {
        return BTreeSet::new();
    }
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return BTreeSet::new();
    };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| {
            let name = name.trim();
            match name.rsplit_once('-') {
                Some((runtime, n)) if n.bytes().all(|b| b.is_ascii_digit()) => runtime.to_owned(),
                _ => name.to_owned(),
            }
        })
        .collect()
}

/// Every thread name `qs watch` had during its run, with `ZENOH_RUNTIME` set to `runtime`
/// (or unset), and whether it saw the computation running.
fn qs_threads(endpoint: &str, runtime: Option<&str>) -> (BTreeSet<String>, bool) {
    let out = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "runtime-{}-{}.out",
        std::process::id(),
        runtime.map_or(0, str::len)
    ));
    let mut command = qs();
    command
        .args(["-e", endpoint, "--mode", "peer", "watch", P])
        .args(["--interval", "100", "--frames", "15"])
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::inherit())
        .env_remove("ZENOH_RUNTIME");
    if let Some(runtime) = runtime {
        command.env("ZENOH_RUNTIME", runtime);
    }
    let mut watch = Guard::spawn("qs watch", &mut command);
    let mut seen = BTreeSet::new();
    while watch.child.try_wait().unwrap().is_none() {
        seen.extend(threads_of(watch.child.id()));
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = watch.wait_for(Duration::from_secs(10));
    assert!(status.success(), "qs watch: {status}");
    let shown = std::fs::read_to_string(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    (seen, shown.contains("[running]"))
}

#[test]
fn zenoh_runtime_sets_the_threads_of_a_process() {
    let endpoint = format!("tcp/127.0.0.1:{}", crate::common::free_port());
    let session = peer(&[&endpoint], &[]);
    let (mut publisher, mut server) = QueueServer::<Rig, AnyConnection>::new(Rig::default());
    let zenoh = Zenoh::attach(&mut server, &session, P, Options::new()).unwrap();
    publisher.put_update(&Rig::at(1));
    let runner = Runner::every(server, Duration::from_millis(1)).unwrap();

    // Zenoh's defaults: a runtime of its own for receiving and for the network.
    let (default, connected) = qs_threads(&endpoint, Some("()"));
    println!("ZENOH_RUNTIME='()': {default:?}");
    assert!(connected, "qs never saw the computation");
    for runtime in ["app", "tx", "rx", "net"] {
        assert!(
            default.contains(runtime),
            "no {runtime} thread: {default:?}"
        );
    }

    // The small runtime, set by hand or by qs itself: the application and transmit
    // runtimes only.
    let small: BTreeSet<String> = ["qs", "app", "tx"].map(String::from).into();
    for runtime in [Some(config::SMALL_RUNTIME), None] {
        let (threads, connected) = qs_threads(&endpoint, runtime);
        println!("ZENOH_RUNTIME={runtime:?}: {threads:?}");
        assert!(connected, "qs never saw the computation");
        assert_eq!(threads, small, "ZENOH_RUNTIME={runtime:?}");
    }

    runner.shutdown().unwrap();
    zenoh.close();
}

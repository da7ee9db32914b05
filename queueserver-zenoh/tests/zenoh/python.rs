//! A client no one here wrote: `tests/interop.py`, on `eclipse-zenoh` 1.10.2 (Python),
//! subscribes, gets by name, by wildcard and the snapshot, and checks every value against
//! the `seq` it came with, while a computation in this process publishes `Rig::at(seq)`.

use crate::common::{peer, tools, AnyConnection, Guard, Rig};
use queueserver::{QueueServer, Runner};
use queueserver_zenoh::{Options, Zenoh};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn the_python_client_reads_what_the_computation_published() {
    const P: &str = "interop/rig";
    let python = tools::python();
    let endpoint = format!("tcp/127.0.0.1:{}", crate::common::free_port());
    let session = peer(&[&endpoint], &[]);
    let (mut publisher, mut server) = QueueServer::<Rig, AnyConnection>::new(Rig::default());
    let zenoh = Zenoh::attach(&mut server, &session, P, Options::new()).unwrap();
    let runner = Runner::every(server, Duration::from_millis(1)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let computation = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut seq = 0;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                publisher.put_update(&Rig::at(seq));
                std::thread::sleep(Duration::from_millis(2));
            }
            publisher
        })
    };

    let out = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("interop-{}.out", std::process::id()));
    let mut script = Guard::spawn(
        "interop.py",
        Command::new(python)
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop.py"))
            .args([&endpoint, P])
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::inherit()),
    );
    let status = script.wait_for(Duration::from_secs(60));
    stop.store(true, Ordering::Relaxed);
    let publisher = computation.join().unwrap();
    runner.shutdown().unwrap();
    let stats = zenoh.stats();
    zenoh.close();

    let printed = std::fs::read_to_string(&out).unwrap();
    println!("interop.py: {printed}");
    assert!(status.success(), "interop.py failed: {status}");
    let report: serde_json::Value = serde_json::from_str(printed.trim()).unwrap();
    assert!(report["checks"].as_u64().unwrap() >= 10, "{report}");
    // What Python saw was published here.
    assert!(
        report["max_seq"].as_u64().unwrap() <= publisher.published(),
        "{report}"
    );
    assert!(stats.gets >= 6 && stats.gets_unknown == 1, "{stats:?}");
}

//! `qs` as a command-line tool: help that exits 0, usage errors that name what was wrong,
//! Zenoh's errors without its source locations, and a wrong prefix that points to the
//! computations running.

use crate::common::{peer, qs, AnyConnection, Rig};
use queueserver::{QueueServer, Runner};
use queueserver_zenoh::{Options, Zenoh};
use std::process::Output;
use std::time::Duration;

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = qs().args(args).output().expect("run qs");
    (
        status.code(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

#[test]
fn help_and_usage_errors() {
    for args in [
        &["--help"][..],
        &["watch", "--help"],
        &["get", "-h"],
        &["--version"],
    ] {
        let (code, out, _) = run(args);
        assert_eq!(code, Some(0), "qs {args:?}");
        assert!(out.contains("qs") || out.contains("Usage"), "{out}");
    }
    let (code, _, err) = run(&["gett"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("'gett'") && err.contains("'get'"), "{err}");
    let (code, _, err) = run(&["get"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("<KEYEXPR>"), "{err}");
    let (code, _, err) = run(&["watch", "demo/plant", "--interval", "0"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("--interval") && err.contains("positive"),
        "{err}"
    );
    let (code, out, _) = run(&["completions", "bash"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("complete") && out.contains("qs"), "{out}");
}

#[test]
fn errors_say_what_to_do_without_source_paths() {
    const P: &str = "cli/rig";
    let endpoint = format!("tcp/127.0.0.1:{}", crate::common::free_port());
    let session = peer(&[&endpoint], &[]);
    let (mut publisher, mut server) = QueueServer::<Rig, AnyConnection>::new(Rig::default());
    let zenoh = Zenoh::attach(&mut server, &session, P, Options::new()).unwrap();
    publisher.put_update(&Rig::at(1));
    let runner = Runner::every(server, Duration::from_millis(1)).unwrap();
    let at = ["-e", endpoint.as_str(), "--mode", "peer"];

    // A key expression Zenoh refuses: named, with how to write one, and no `.rs:`.
    let (code, _, err) = run(&[&at[..], &["get", "cli//rig"]].concat());
    assert_eq!(code, Some(1));
    assert!(
        err.contains("\"cli//rig\" is no Zenoh key expression"),
        "{err}"
    );
    assert!(!err.contains(".rs:"), "{err}");

    // A wrong prefix: no reply, and the computations that do run.
    let (code, _, err) = run(&[&at[..], &["get", "cli/rg/count", "--timeout", "500"]].concat());
    assert_eq!(code, Some(2));
    assert!(err.contains("no reply for cli/rg/count"), "{err}");
    assert!(err.contains(&format!("computations running: {P}")), "{err}");
    assert!(err.contains("qs list"), "{err}");

    // `watch` says when nothing answers under its prefix.
    let (code, out, _) = run(&[
        &at[..],
        &["watch", "cli/rg", "--interval", "500", "--frames", "6"],
    ]
    .concat());
    assert_eq!(code, Some(0));
    assert!(out.contains("nothing answers under cli/rg"), "{out}");
    assert!(out.contains("qs list"), "{out}");

    // No router where one is asked for: said, without source paths.
    let nowhere = format!("tcp/127.0.0.1:{}", crate::common::free_port());
    let (code, _, err) = run(&["-e", &nowhere, "list"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no router answers at"), "{err}");
    assert!(!err.contains(".rs:"), "{err}");

    // A configuration file that is not there.
    let (code, _, err) = run(&["-c", "/nonexistent/qs.json5", "list"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("/nonexistent/qs.json5") && !err.contains(".rs:"),
        "{err}"
    );

    runner.shutdown().unwrap();
    zenoh.close();
}

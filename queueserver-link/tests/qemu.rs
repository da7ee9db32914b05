//! The Cortex-M example's `link` firmware under QEMU, from the host: QEMU connects the
//! board's UART to a TCP socket on 127.0.0.1, the host side connects to it (directly, or
//! through a proxy that spoils the line on request), and checks what comes against
//! `State::at(seq)`.
//!
//! Built only with the `qemu` feature and run by `.ci/cortex-m`, which builds the
//! firmware first and names it: `LINK_FIRMWARE` (updates every 10 ms) and
//! `LINK_FIRMWARE_FAST` (a 100 µs control period and no update limit). A missing
//! variable, or QEMU, fails the test.

mod common;

use common::qemu::{names, value_of, Proxy, Qemu};
use common::WAIT;
use queueserver_link::host::{Counters, Device, Event, GetError, Options, Shape};
use queueserver_link::wire::ErrorCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn options() -> Options {
    Options {
        dead_after: Duration::from_millis(1500),
        ping_after: Duration::from_millis(300),
        reopen_after: Duration::from_millis(100),
        ..Options::default()
    }
}

/// Opens the device once QEMU listens.
fn open(qemu: &Qemu, address: &str) -> Device {
    let deadline = Instant::now() + WAIT;
    loop {
        match Device::open(address, options()) {
            Ok(device) => return device,
            Err(e) => {
                assert!(Instant::now() < deadline, "QEMU listens: {e}");
                qemu.assert_running();
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn summary(mut samples: Vec<f64>) -> (f64, f64, f64) {
    samples.sort_by(f64::total_cmp);
    (
        samples[0],
        samples[samples.len() / 2],
        samples[samples.len() - 1],
    )
}

#[test]
fn the_firmware_on_the_wire() {
    let mut qemu = Qemu::start("LINK_FIRMWARE");
    let line = qemu.wait_line("link: queueserver-link", WAIT);
    assert!(line.contains("updates every 10 ms"), "{line}");
    let device = open(&qemu, &qemu.address());

    // The schema: every key, named and typed, from the derived IDict.
    let schema = device.wait_ready(WAIT).unwrap();
    let got: Vec<&str> = schema.keys.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(got, names());
    assert_eq!(schema.keys[0].shape, Shape::U32);
    assert!(schema.keys[1..].iter().all(|k| k.shape == Shape::F32));

    // Snapshots: each the state at its seq, at most one per 10 control periods.
    let mut seq = device.wait_newer(0, WAIT).unwrap().seq;
    let before = device.counters();
    let started = Instant::now();
    let mut gaps = Vec::new();
    while started.elapsed() < Duration::from_secs(2) {
        let snapshot = device.wait_newer(seq, WAIT).unwrap();
        for (name, value) in snapshot.iter() {
            assert_eq!(
                *value,
                value_of(snapshot.seq, name),
                "{name} at #{}",
                snapshot.seq
            );
        }
        gaps.push(snapshot.seq - seq);
        seq = snapshot.seq;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after = device.counters();
    gaps.sort_unstable();
    let (min_gap, median_gap) = (gaps[0], gaps[gaps.len() / 2]);
    assert!(min_gap >= 10, "the rate limit holds: {gaps:?}");
    assert!(median_gap <= 12, "an update every 10 periods: {gaps:?}");
    // Real time: QEMU's `-icount` clock runs behind it when the host is busy, so the
    // rate in real time is a figure, not a check.
    let snapshots = after.snapshots - before.snapshots;
    let rate = snapshots as f64 / elapsed;
    let bytes_per_update = (after.bytes_in - before.bytes_in) as f64 / snapshots as f64;
    println!(
        "figure: updates every 10 periods: {rate:.1} updates/s in real time, \
         {bytes_per_update:.1} bytes/update (pings included), seq gaps {min_gap} / {median_gap}"
    );

    // Gets: every answer is the value at the seq it names; round trips measured.
    let mut trips = Vec::new();
    let names = names();
    for i in 0..200 {
        let name = &names[(i * 7) % names.len()];
        let asked = Instant::now();
        let answer = device.ask(name, WAIT).unwrap();
        trips.push(asked.elapsed().as_secs_f64() * 1e6);
        assert_eq!(
            answer.value,
            Some(value_of(answer.seq, name)),
            "{name} at #{}",
            answer.seq
        );
    }
    let (lo, mid, hi) = summary(trips);
    println!("figure: get round trip (us): min {lo:.0} median {mid:.0} max {hi:.0}");

    // An unknown name: refused on the host, and by the device when sent anyway.
    assert_eq!(
        device.ask("ch16", WAIT),
        Err(GetError::UnknownName("ch16".into()))
    );
    let tag = device.get_unchecked("ch16").unwrap();
    let deadline = Instant::now() + WAIT;
    let refused = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match device.events().recv_timeout(left) {
            Ok(Event::Refused { tag: t, code }) if t == tag => break code,
            Ok(_) => {}
            Err(e) => panic!("a refusal of tag {tag}: {e}"),
        }
    };
    assert_eq!(refused, ErrorCode::UnknownName);

    // Garbage toward the device: counted there, and the next get passes.
    let stats = device.device_stats(WAIT).unwrap();
    device.write_raw(&[0x42; 25]).unwrap();
    let answer = device.ask("ch3", WAIT).unwrap();
    assert_eq!(answer.value, Some(value_of(answer.seq, "ch3")));
    let after = device.device_stats(WAIT).unwrap();
    assert_eq!(
        after.rx_garbage_bytes - stats.rx_garbage_bytes,
        25,
        "{after:?}"
    );
    assert_eq!(after.rx_bad_frames - stats.rx_bad_frames, 1);

    // The host side closed and opened again: the firmware went on (seq, counters).
    let last = device.latest().unwrap().seq;
    let tx_bytes = after.tx_bytes;
    device.close();
    let device = open(&qemu, &qemu.address());
    device.wait_ready(WAIT).unwrap();
    let snapshot = device.wait_newer(0, WAIT).unwrap();
    assert!(
        snapshot.seq > last,
        "seq went on: #{} after #{last}",
        snapshot.seq
    );
    let stats = device.device_stats(WAIT).unwrap();
    assert!(stats.tx_bytes > tx_bytes, "the counters went on: {stats:?}");
    assert!(stats.schemas_sent >= 2);
    device.close();

    // Garbage toward the host, and a line gone silent, through a proxy.
    let proxy = Proxy::start(qemu.port);
    let device = open(&qemu, &proxy.address());
    device.wait_ready(WAIT).unwrap();
    let seq = device.wait_newer(0, WAIT).unwrap().seq;
    let spoiled: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(37) | 1).collect();
    proxy
        .spoil
        .to_host
        .lock()
        .unwrap()
        .extend_from_slice(&spoiled);
    let deadline = Instant::now() + WAIT;
    while device.counters().bad_frames == 0 {
        assert!(Instant::now() < deadline, "the garbage arrives");
        std::thread::sleep(Duration::from_millis(10));
    }
    let counters: Counters = device.counters();
    assert!(counters.garbage_bytes >= 40, "{counters:?}");
    let later = device.wait_newer(seq + 20, WAIT).unwrap();
    assert_eq!(
        later.get("ch7"),
        Some(&value_of(later.seq, "ch7")),
        "resynchronised"
    );
    proxy.spoil.stalled.store(true, Ordering::Release);
    let deadline = Instant::now() + WAIT;
    while device.is_connected() {
        assert!(Instant::now() < deadline, "the silence is noticed");
        std::thread::sleep(Duration::from_millis(20));
    }
    proxy.spoil.stalled.store(false, Ordering::Release);
    device.wait_ready(WAIT).unwrap();
    let revived = device.wait_newer(later.seq, WAIT).unwrap();
    assert_eq!(revived.get("step"), Some(&value_of(revived.seq, "step")));
    assert!(device.counters().disconnects >= 1);
    drop(device);
    drop(proxy);

    // The firmware's own checks, and its costs.
    qemu.wait_line("link: checks passed", Duration::from_secs(30));
    qemu.assert_running();
    for name in [
        "put_update (64-byte State)",
        "link on_update: one snapshot frame",
        "of which CRC-16 of 67 bytes",
        "of which COBS of 67 bytes (no ring)",
        "process_updates, delivered to the link",
        "LinkRx::receive, a get frame completed",
        "process_requests, answered by the link",
        "one byte from the TX ring to the UART",
    ] {
        let (lo, mid, hi) = qemu.cost(name, WAIT);
        println!("figure: {name}: {lo} / {mid} / {hi} instructions");
    }
}

#[test]
fn throughput_unthrottled() {
    let qemu = Qemu::start("LINK_FIRMWARE_FAST");
    let device = open(&qemu, &qemu.address());
    device.wait_ready(WAIT).unwrap();
    let mut seq = device.wait_newer(0, WAIT).unwrap().seq;
    let before = device.counters();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        let snapshot = device.wait_newer(seq, WAIT).unwrap();
        assert!(snapshot.seq > seq);
        assert_eq!(snapshot.get("ch15"), Some(&value_of(snapshot.seq, "ch15")));
        seq = snapshot.seq;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after = device.counters();
    let updates = (after.snapshots - before.snapshots) as f64 / elapsed;
    let bytes = (after.bytes_in - before.bytes_in) as f64 / elapsed;
    assert_eq!(after.bad_frames, 0);
    println!(
        "figure: unthrottled: {updates:.0} updates/s, {bytes:.0} bytes/s, {:.1} bytes/update, {} skipped of {}",
        bytes / updates,
        after.seq_skipped - before.seq_skipped,
        after.snapshots - before.snapshots + after.seq_skipped - before.seq_skipped,
    );
    let stats = device.device_stats(WAIT).unwrap();
    println!("figure: unthrottled device stats: {stats:?}");
}

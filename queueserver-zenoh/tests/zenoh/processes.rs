//! Other processes at the other end: a getter killed in the middle of its get, and a
//! subscriber stopped (SIGSTOP) while a computation publishes fast, whose stalled link
//! must not slow the poller. Every child is a `qs` process this test starts, and stops by
//! its PID.

use crate::common::{
    peer, peer_of, qs, quantile, unix_endpoint, wait_until, AnyConnection, Guard, Rig,
};
use queueserver::{Connection, QueueServer};
use queueserver_zenoh::{Options, Zenoh};
use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zenoh::Wait;

const LIMIT: Duration = Duration::from_secs(10);

#[test]
fn a_getter_killed_mid_get_costs_only_its_slot() {
    const P: &str = "test/killed";
    let (endpoint, _socket) = unix_endpoint("killed");
    let computation = peer(&[&endpoint], &[]);
    let (mut publisher, mut server) = QueueServer::<Rig, AnyConnection>::new(Rig::default());
    let zenoh = Zenoh::attach(&mut server, &computation, P, Options::new()).unwrap();
    publisher.put_update(&Rig::at(1));

    // The getter waits long; nobody polls, so its get stays pending.
    let mut getter = Guard::spawn(
        "qs get",
        qs().args(["--mode", "peer", "-e", &endpoint, "get"])
            .arg(format!("{P}/count"))
            .args(["--timeout", "30000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_until(LIMIT, "the child's get", || zenoh.stats().gets == 1);
    assert_eq!(zenoh.stats().pending_replies, 1);
    assert_eq!(zenoh.ask_stats().outstanding, 1);
    getter.stop();

    // Its answer goes nowhere, and its slot comes back.
    server.poll();
    wait_until(LIMIT, "the slot back", || {
        zenoh.stats().pending_replies == 0
    });
    let asks = zenoh.ask_stats();
    assert_eq!((asks.answered, asks.outstanding), (1, 0));
    assert_eq!(server.stats().requests_orphaned, 0);

    // And the server carries on for the others.
    let other = peer_of(&endpoint);
    let ask = std::thread::spawn(move || {
        let replies = other
            .get(format!("{P}/count"))
            .timeout(LIMIT)
            .wait()
            .unwrap();
        let reply = replies.recv().unwrap().into_result().unwrap();
        reply.payload().try_to_string().unwrap().into_owned()
    });
    wait_until(LIMIT, "the next get", || zenoh.stats().gets == 2);
    server.poll();
    assert_eq!(ask.join().unwrap(), "1");
}

/// Time spent in each `poll`, in ns, per phase.
#[derive(Default)]
struct Phases {
    healthy: Vec<u64>,
    stopped: Vec<u64>,
    resumed: Vec<u64>,
}

fn summary(name: &str, samples: &mut [u64], seconds: f64) -> (f64, u64) {
    samples.sort_unstable();
    let p99 = quantile(samples, 0.99);
    let rate = samples.len() as f64 / seconds;
    println!(
        "{name:<8} {:>6} polls ({rate:>6.0}/s)  poll p50 {:>7} ns  p99 {:>8} ns  max {:>9} ns",
        samples.len(),
        quantile(samples, 0.5),
        p99,
        samples.last().copied().unwrap_or(0),
    );
    (rate, p99)
}

#[test]
fn a_stopped_subscriber_does_not_slow_the_poller() {
    const P: &str = "test/big";
    const HEALTHY: Duration = Duration::from_millis(1500);
    const STOPPED: Duration = Duration::from_millis(3000);
    const RESUMED: Duration = Duration::from_millis(1000);
    type Big = BTreeMap<String, f64>;
    let initial: Big = (0..200).map(|i| (format!("v{i:03}"), 0.0)).collect();

    let (endpoint, _socket) = unix_endpoint("stalled");
    let computation = peer(&[&endpoint], &[]);
    let (mut publisher, mut server) =
        QueueServer::<Big, Box<dyn Connection<Big> + Send>>::new(initial.clone());
    let zenoh = Zenoh::attach(&mut server, &computation, P, Options::new()).unwrap();

    let mut watcher = Guard::spawn(
        "qs watch",
        qs().args([
            "--mode",
            "peer",
            "-e",
            &endpoint,
            "watch",
            P,
            "--interval",
            "100",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null()),
    );
    wait_until(LIMIT, "the watcher", || {
        computation.info().peers_zid().wait().next().is_some()
    });

    // The computation: every value changes at every publish, about 2000 times a second.
    let stop = Arc::new(AtomicBool::new(false));
    let computation_thread = {
        let stop = Arc::clone(&stop);
        let mut state = initial;
        std::thread::spawn(move || {
            let mut step = 0.0;
            while !stop.load(Ordering::Relaxed) {
                step += 1.0;
                for (i, value) in state.values_mut().enumerate() {
                    *value = step + i as f64 * 1e-3;
                }
                publisher.put_update(&state);
                std::thread::sleep(Duration::from_micros(500));
            }
        })
    };

    // The poller: every millisecond, timing each poll.
    let started = Instant::now();
    let mut phases = Phases::default();
    let mut stopped_at = None;
    let mut offered_before_stop = 0;
    let mut resumed_at = None;
    while started.elapsed() < HEALTHY + STOPPED + RESUMED {
        let before = Instant::now();
        server.poll();
        let took = before.elapsed().as_nanos() as u64;
        let at = before.duration_since(started);
        if at < HEALTHY {
            phases.healthy.push(took);
        } else if at < HEALTHY + STOPPED {
            if stopped_at.is_none() {
                offered_before_stop = zenoh.stats().snapshots_offered;
                watcher.signal(19); // SIGSTOP
                stopped_at = Some(Instant::now());
            }
            phases.stopped.push(took);
        } else {
            if resumed_at.is_none() {
                watcher.signal(18); // SIGCONT
                resumed_at = Some(Instant::now());
            }
            phases.resumed.push(took);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    stop.store(true, Ordering::Relaxed);
    computation_thread.join().unwrap();
    watcher.stop();
    let stats = zenoh.stats();
    let offered_while_stopped = stats.snapshots_offered - offered_before_stop;

    let (healthy_rate, healthy_p99) =
        summary("healthy", &mut phases.healthy, HEALTHY.as_secs_f64());
    let (stopped_rate, stopped_p99) =
        summary("stopped", &mut phases.stopped, STOPPED.as_secs_f64());
    summary("resumed", &mut phases.resumed, RESUMED.as_secs_f64());
    println!(
        "zenoh: {} snapshots offered ({offered_while_stopped} while the subscriber was stopped), \
         {} published, {} overwritten before the sender took them; {} values put, {} puts failed",
        stats.snapshots_offered,
        stats.snapshots_published,
        stats.snapshots_overwritten,
        stats.values_put,
        stats.puts_failed,
    );
    // Loose bounds: a poll that waited on the stalled link would take milliseconds to
    // seconds, and the poller would cycle a fraction as often.
    assert!(
        stopped_rate >= healthy_rate / 2.0,
        "the poller cycled {stopped_rate:.0}/s with the subscriber stopped, {healthy_rate:.0}/s before"
    );
    assert!(
        stopped_p99 <= healthy_p99 * 10 + 2_000_000,
        "poll p99 {stopped_p99} ns with the subscriber stopped, {healthy_p99} ns before"
    );
    // The poller went on handing snapshots to the sender all along.
    assert!(offered_while_stopped > 100, "{offered_while_stopped}");
}

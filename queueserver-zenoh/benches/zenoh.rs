//! Zenoh benchmarks, side by side with raw Zenoh in one run. Each remote party is a child
//! process (this binary again, in another role); everything runs on loopback TCP.
//!
//! ```text
//! cargo bench -p queueserver-zenoh --bench zenoh                  # all three
//! cargo bench -p queueserver-zenoh --bench zenoh -- freshness     # or gets, or disturb
//! cargo bench -p queueserver-zenoh --bench zenoh -- --seconds 5   # per measurement (default 3)
//! ```
//!
//! - **freshness**: from `put_update` to a subscriber in another process receiving the
//!   value (the value is the publish time, read back on the same machine's clock),
//!   p50/p99/p99.9; against a raw `session.put` of the same JSON to the same subscriber.
//! - **gets**: 1, 16 and 64 getter threads in another process, asking for one key or for
//!   keys among 100, as fast as answers come: gets answered per second and reads of the
//!   snapshot per second; against a raw queryable that locks a `Mutex<State>` per get.
//! - **disturb**: the computation's `put_update` latency at 10 kHz, p99.9 and max, with 64
//!   remote getters hammering against none.

use queueserver::{Builder, Connection, IDict, NoNotify, Runner, ThreadNotify};
use queueserver_zenoh::{config, Options, Zenoh};
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use zenoh::{Session, Wait};

const ROLE: &str = "QS_BENCH_ROLE";

/// The freshness benchmark's state: the publish time, in ns since the epoch.
#[derive(Clone, Copy, Default, IDict)]
struct Stamp {
    sent: u64,
}

type Keys = BTreeMap<String, f64>;
type AnyConnection<D> = Box<dyn Connection<D> + Send>;

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn quantile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} unset"))
}

fn listen(endpoint: &str) -> Session {
    zenoh::open(config::peer(&[endpoint], &[]).unwrap())
        .wait()
        .unwrap()
}

fn connect(endpoint: &str) -> Session {
    let session = zenoh::open(config::peer(&[], &[endpoint]).unwrap())
        .wait()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while session.info().peers_zid().wait().next().is_none() {
        assert!(Instant::now() < deadline, "no peer at {endpoint}");
        std::thread::sleep(Duration::from_millis(5));
    }
    session
}

fn endpoint() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("tcp/127.0.0.1:{port}")
}

/// This binary again, in `role`, with `vars`; its stdout is read when it ends.
fn child(role: &str, vars: &[(&str, String)]) -> Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.env(ROLE, role).stdout(Stdio::piped());
    for (name, value) in vars {
        command.env(name, value);
    }
    command.spawn().unwrap()
}

fn output(child: Child) -> String {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "a child failed: {}", out.status);
    String::from_utf8(out.stdout).unwrap()
}

// ----- children ----------------------------------------------------------------------------

/// Subscribes to `QS_KEY` for `QS_SECONDS`, then prints the latency of every sample (ns,
/// one a line): its receive time minus the publish time it carries.
fn subscriber() {
    let session = connect(&env("QS_ENDPOINT"));
    let seconds: f64 = env("QS_SECONDS").parse().unwrap();
    let latencies = Arc::new(Mutex::new(Vec::<u64>::new()));
    let sink = Arc::clone(&latencies);
    let _sub = session
        .declare_subscriber(env("QS_KEY"))
        .callback(move |sample| {
            let received = now_ns();
            let text = sample.payload().try_to_string().unwrap_or_default();
            if let Ok(sent) = text.parse::<u64>() {
                sink.lock().unwrap().push(received.saturating_sub(sent));
            }
        })
        .wait()
        .unwrap();
    println!("ready");
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let latencies = latencies.lock().unwrap();
    for ns in latencies.iter() {
        println!("{ns}");
    }
    drop(session.close().wait());
}

/// `QS_THREADS` threads get keys (`QS_KEYS` of them, named `k00`..) under `QS_PREFIX`, one
/// after the other, for `QS_SECONDS`; prints the gets answered.
fn getters() {
    let session = connect(&env("QS_ENDPOINT"));
    let threads: usize = env("QS_THREADS").parse().unwrap();
    let keys: usize = env("QS_KEYS").parse().unwrap();
    let seconds: f64 = env("QS_SECONDS").parse().unwrap();
    let prefix = env("QS_PREFIX");
    let answered = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (session, answered, prefix) =
                (session.clone(), Arc::clone(&answered), prefix.clone());
            std::thread::spawn(move || {
                let mut i = t;
                while Instant::now() < until {
                    let key = format!("{prefix}/k{:02}", i % keys);
                    i += 7;
                    let replies = session
                        .get(&key)
                        .timeout(Duration::from_secs(5))
                        .wait()
                        .unwrap();
                    while let Ok(reply) = replies.recv() {
                        if reply.result().is_ok() {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    println!("{}", answered.load(Ordering::Relaxed));
    drop(session.close().wait());
}

// ----- freshness ---------------------------------------------------------------------------

fn latencies_of(child: Child) -> Vec<u64> {
    let mut v: Vec<u64> = output(child)
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect();
    v.sort_unstable();
    v
}

fn wait_ready(child: &mut Child) {
    use std::io::BufRead;
    let stdout = child.stdout.as_mut().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
}

fn report_latency(name: &str, v: &[u64]) {
    println!(
        "  {name:<34} {:>6} samples  p50 {:>8.1} µs  p99 {:>8.1} µs  p99.9 {:>8.1} µs",
        v.len(),
        quantile(v, 0.5) as f64 / 1e3,
        quantile(v, 0.99) as f64 / 1e3,
        quantile(v, 0.999) as f64 / 1e3,
    );
}

fn freshness(seconds: f64) {
    println!("freshness: put to a subscriber in another process, 1000 publishes/s, loopback TCP");
    let rate = Duration::from_millis(1);
    // Through the server: put_update → poller (woken by the hook) → sender → subscriber.
    {
        let endpoint = endpoint();
        let session = listen(&endpoint);
        let (mut publisher, mut server) = Builder::new(Stamp::default())
            .notify(ThreadNotify::new())
            .build::<AnyConnection<Stamp>>()
            .unwrap();
        let zenoh = Zenoh::attach(&mut server, &session, "bench/fresh", Options::new()).unwrap();
        let runner = Runner::notified(server).unwrap();
        let mut sub = child(
            "subscriber",
            &[
                ("QS_ENDPOINT", endpoint.clone()),
                ("QS_KEY", "bench/fresh/sent".into()),
                ("QS_SECONDS", format!("{}", seconds + 1.0)),
            ],
        );
        wait_ready(&mut sub);
        std::thread::sleep(Duration::from_millis(300));
        let until = Instant::now() + Duration::from_secs_f64(seconds);
        while Instant::now() < until {
            publisher.put_update(&Stamp { sent: now_ns() });
            std::thread::sleep(rate);
        }
        let v = latencies_of(sub);
        report_latency("queueserver-zenoh (put_update)", &v);
        runner.shutdown().unwrap();
        zenoh.close();
    }
    // Raw: session.put of the same JSON, from the publishing thread.
    {
        let endpoint = endpoint();
        let session = listen(&endpoint);
        let publisher = session
            .declare_publisher("bench/raw/sent")
            .encoding(zenoh::bytes::Encoding::APPLICATION_JSON)
            .wait()
            .unwrap();
        let mut sub = child(
            "subscriber",
            &[
                ("QS_ENDPOINT", endpoint.clone()),
                ("QS_KEY", "bench/raw/sent".into()),
                ("QS_SECONDS", format!("{}", seconds + 1.0)),
            ],
        );
        wait_ready(&mut sub);
        std::thread::sleep(Duration::from_millis(300));
        let until = Instant::now() + Duration::from_secs_f64(seconds);
        while Instant::now() < until {
            let json = serde_json::to_vec(&now_ns()).unwrap();
            publisher.put(json).wait().unwrap();
            std::thread::sleep(rate);
        }
        let v = latencies_of(sub);
        report_latency("raw zenoh (publisher.put)", &v);
    }
}

// ----- consolidated gets -------------------------------------------------------------------

fn hundred_keys() -> Keys {
    (0..100).map(|i| (format!("k{i:02}"), 0.0)).collect()
}

/// Updates `state` at about 1 kHz until `stop`.
fn churn(stop: &AtomicBool, mut publish: impl FnMut(f64)) {
    let mut step = 0.0;
    while !stop.load(Ordering::Relaxed) {
        step += 1.0;
        publish(step);
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn run_getters(endpoint: &str, prefix: &str, threads: usize, keys: usize, seconds: f64) -> u64 {
    let getters = child(
        "getters",
        &[
            ("QS_ENDPOINT", endpoint.to_owned()),
            ("QS_PREFIX", prefix.to_owned()),
            ("QS_THREADS", threads.to_string()),
            ("QS_KEYS", keys.to_string()),
            ("QS_SECONDS", seconds.to_string()),
        ],
    );
    output(getters).trim().parse().unwrap()
}

fn gets(seconds: f64) {
    println!("consolidated gets: getter threads in another process, loopback TCP");
    println!(
        "  {:<22} {:>7} {:>5} {:>12} {:>14}",
        "", "getters", "keys", "gets/s", "reads/s"
    );
    for keys in [1, 100] {
        for threads in [1, 16, 64] {
            // Through the server.
            {
                let endpoint = endpoint();
                let session = listen(&endpoint);
                let (mut publisher, mut server) = Builder::new(hundred_keys())
                    .notify(ThreadNotify::new())
                    .config(queueserver::Config::new().with_max_pending_per_connection(64))
                    .build::<AnyConnection<Keys>>()
                    .unwrap();
                let zenoh =
                    Zenoh::attach(&mut server, &session, "bench/qs", Options::new()).unwrap();
                let runner = Runner::notified(server).unwrap();
                let stop = Arc::new(AtomicBool::new(false));
                let churner = {
                    let stop = Arc::clone(&stop);
                    std::thread::spawn(move || {
                        let mut state = hundred_keys();
                        churn(&stop, |step| {
                            for value in state.values_mut() {
                                *value = step;
                            }
                            publisher.put_update(&state);
                        });
                    })
                };
                // The server's answers to this, its only connection: one read of the
                // snapshot each.
                let reads_before = zenoh.ask_stats().responses;
                let answered = run_getters(&endpoint, "bench/qs", threads, keys, seconds);
                let reads = zenoh.ask_stats().responses - reads_before;
                stop.store(true, Ordering::Relaxed);
                churner.join().unwrap();
                runner.shutdown().unwrap();
                zenoh.close();
                println!(
                    "  {:<22} {threads:>7} {keys:>5} {:>12.0} {:>14.0}",
                    "queueserver-zenoh",
                    answered as f64 / seconds,
                    reads as f64 / seconds
                );
            }
            // Raw: a queryable that locks the state per get.
            {
                let endpoint = endpoint();
                let session = listen(&endpoint);
                let state = Arc::new(Mutex::new(hundred_keys()));
                let reads = Arc::new(AtomicU64::new(0));
                let _queryable = {
                    let (state, reads) = (Arc::clone(&state), Arc::clone(&reads));
                    session
                        .declare_queryable("bench/raw/**")
                        .callback(move |query| {
                            let name = query.key_expr().as_str()["bench/raw/".len()..].to_owned();
                            let value = state.lock().unwrap().get(&name).copied();
                            reads.fetch_add(1, Ordering::Relaxed);
                            if let Some(value) = value {
                                let json = serde_json::to_vec(&value).unwrap();
                                let key = query.key_expr().clone();
                                let _ = query.reply(key, json).wait();
                            }
                        })
                        .wait()
                        .unwrap()
                };
                let stop = Arc::new(AtomicBool::new(false));
                let churner = {
                    let (stop, state) = (Arc::clone(&stop), Arc::clone(&state));
                    std::thread::spawn(move || {
                        churn(&stop, |step| {
                            for value in state.lock().unwrap().values_mut() {
                                *value = step;
                            }
                        })
                    })
                };
                let answered = run_getters(&endpoint, "bench/raw", threads, keys, seconds);
                let reads = reads.load(Ordering::Relaxed);
                stop.store(true, Ordering::Relaxed);
                churner.join().unwrap();
                println!(
                    "  {:<22} {threads:>7} {keys:>5} {:>12.0} {:>14.0}",
                    "raw (Mutex per get)",
                    answered as f64 / seconds,
                    reads as f64 / seconds
                );
            }
        }
    }
}

// ----- the computation, undisturbed --------------------------------------------------------

fn disturb(seconds: f64) {
    println!(
        "put_update at 10 kHz (poller every 1 ms, no hook), with and without 64 remote getters"
    );
    for getters in [0, 64] {
        let endpoint = endpoint();
        let session = listen(&endpoint);
        let (mut publisher, mut server) = Builder::new(hundred_keys())
            .notify(NoNotify)
            .build::<AnyConnection<Keys>>()
            .unwrap();
        let zenoh = Zenoh::attach(&mut server, &session, "bench/qs", Options::new()).unwrap();
        let runner = Runner::every(server, Duration::from_millis(1)).unwrap();
        let hammer = (getters > 0).then(|| {
            let endpoint = endpoint.clone();
            std::thread::spawn(move || {
                run_getters(&endpoint, "bench/qs", getters, 100, seconds + 1.0)
            })
        });
        std::thread::sleep(Duration::from_millis(500));
        let mut state = hundred_keys();
        let mut latencies: Vec<u64> = Vec::with_capacity((seconds * 11_000.0) as usize);
        let until = Instant::now() + Duration::from_secs_f64(seconds);
        let mut next = Instant::now();
        let mut step = 0.0;
        while Instant::now() < until {
            next += Duration::from_micros(100);
            while Instant::now() < next {
                std::hint::spin_loop();
            }
            step += 1.0;
            for value in state.values_mut() {
                *value = step;
            }
            let before = Instant::now();
            publisher.put_update(&state);
            latencies.push(before.elapsed().as_nanos() as u64);
        }
        let answered = hammer.map(|h| h.join().unwrap()).unwrap_or(0);
        runner.shutdown().unwrap();
        zenoh.close();
        latencies.sort_unstable();
        println!(
            "  {getters:>2} getters ({:>7} gets answered): {} publishes  p50 {:>6} ns  p99.9 {:>7} ns  max {:>8} ns",
            answered,
            latencies.len(),
            quantile(&latencies, 0.5),
            quantile(&latencies, 0.999),
            latencies.last().copied().unwrap_or(0),
        );
    }
}

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("subscriber") => return subscriber(),
        Ok("getters") => return getters(),
        _ => {}
    }
    let mut which = Vec::new();
    let mut seconds = 3.0;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                seconds = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("--seconds N")
            }
            "freshness" | "gets" | "disturb" => which.push(arg),
            // What `cargo bench` passes to every bench binary.
            "--bench" => {}
            other => panic!("unknown argument {other}: freshness, gets, disturb, --seconds N"),
        }
    }
    if which.is_empty() {
        which = vec!["freshness".into(), "gets".into(), "disturb".into()];
    }
    println!("figures of one run; BENCHMARKS.md has three, and says on what machine");
    for bench in which {
        match bench.as_str() {
            "freshness" => freshness(seconds),
            "gets" => gets(seconds),
            _ => disturb(seconds),
        }
        println!();
    }
}

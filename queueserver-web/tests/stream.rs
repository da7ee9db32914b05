//! The stream, read by WebSocket clients as pages and programs read it.

mod common;

use common::{wait_for, Page, Rig, Wave};
use queueserver_web::{Options, WebConnection, WebView};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

/// Snapshots of about 20 kB of JSON: the count, and ten long strings.
type Big = BTreeMap<String, String>;

fn big(n: u64) -> Big {
    let mut map: Big = (0..10)
        .map(|i| (format!("blob-{i}"), "x".repeat(2000)))
        .collect();
    map.insert("n".into(), n.to_string());
    map
}

fn wave_rig(options: Options) -> Rig<Wave> {
    Rig::start(options, Duration::from_micros(500), Wave::at)
}

/// Checks that an update's values are those of the snapshot its `seq` names.
fn check_update(update: &Value) -> u64 {
    let seq = update["seq"].as_u64().expect("a seq");
    let expected = Wave::at(seq);
    let values = &update["values"];
    assert_eq!(values["step"], json!(seq), "{update}");
    assert_eq!(values["sine"], json!(expected.sine), "{update}");
    assert_eq!(values["cosine"], json!(expected.cosine), "{update}");
    assert_eq!(values["enabled"], json!(expected.enabled), "{update}");
    assert!(
        update["time"].as_u64().unwrap() > 1_600_000_000_000,
        "{update}"
    );
    seq
}

#[test]
fn a_page_gets_hello_then_updates_whose_values_are_the_snapshots() {
    let rig = wave_rig(Options::new());
    let mut page = Page::connect(rig.view());
    let hello = page.next();
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["version"], json!(queueserver_web::FORMAT_VERSION));
    // The first may be the initial IDict (seq 0), when the page connects before the
    // poller has taken a publish.
    let mut last = None;
    for _ in 0..30 {
        let seq = check_update(&page.next_of("update"));
        assert!(
            last.map_or(true, |last| seq > last),
            "updates come in order: {seq} after {last:?}"
        );
        last = Some(seq);
    }
    let update = page.next_of("update");
    let names: Vec<&str> = update["values"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    // serde_json's map is sorted; the names are the IDict's.
    assert_eq!(names, ["cosine", "enabled", "ramp", "sine", "step"]);
    // The counters come too: the server's, and the view's.
    let stats = page.next_of("stats");
    assert!(
        stats["server"]["updates_published"].as_u64().unwrap() > 0,
        "{stats}"
    );
    assert_eq!(stats["view"]["browsers"], 1);
}

#[test]
fn a_page_of_a_paused_computation_gets_the_newest_snapshot_at_once() {
    // Published and taken before the view is served; nothing is published after.
    let (mut publisher, mut server) =
        queueserver::QueueServer::<Wave, WebConnection<Wave>>::new(Wave::at(0));
    for n in 1..=7 {
        publisher.put_update(&Wave::at(n));
    }
    server.process_updates();
    let view = WebView::serve(&mut server, Options::new()).expect("the view starts");
    let mut page = Page::connect(&view);
    let hello = page.next_of("hello");
    assert_eq!(
        hello["names"],
        json!(["step", "sine", "cosine", "ramp", "enabled"]),
        "{hello}"
    );
    // No poll runs: the update can only come from what `serve` found.
    assert_eq!(check_update(&page.next_of("update")), 7);
    assert_eq!(server.snapshot().seq(), 7);
}

#[test]
fn a_stalled_page_drops_its_oldest_updates_while_the_others_keep_up() {
    // Big snapshots (about 20 kB of JSON) at up to 200 updates/s, 4 MB/s a page: a page
    // that stops reading fills the kernel's socket buffers within a second or so, and then
    // its outbox, while the pages that read keep up with room to spare on a loaded machine.
    // At 5 ms apart, an update is often held by the rate limit when the server stops: the
    // readers still see the last snapshot only if it is sent before the "stopped" status.
    let make = big;
    let capacity = 8;
    let options = Options::new()
        .outbox(capacity)
        .max_rate_hz(200.0)
        .stall_timeout(Duration::from_secs(60));
    let mut rig = Rig::start(options, Duration::from_micros(500), make);
    let view = rig.view();
    let outbox_of = |rig: &Rig<Big>, id| {
        rig.view()
            .browsers()
            .into_iter()
            .find(|b| b.id == id)
            .expect("the page is connected")
            .outbox
    };

    let mut stalled = Page::connect(view);
    // Known by its id before the others connect: each page is registered by a thread of
    // its own, in no set order.
    wait_for("the stalled page", || view.browsers().len() == 1);
    let stalled_id = view.browsers()[0].id;
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let mut page = Page::connect(view);
            std::thread::spawn(move || {
                let mut updates = 0u64;
                let mut last_seq = 0;
                let mut dropped = 0;
                loop {
                    let message = page.next();
                    match message["type"].as_str() {
                        Some("update") => {
                            updates += 1;
                            last_seq = message["seq"].as_u64().unwrap();
                        }
                        Some("dropped") => dropped = message["updates"].as_u64().unwrap(),
                        Some("status") => break,
                        _ => {}
                    }
                }
                (updates, last_seq, dropped)
            })
        })
        .collect();
    wait_for("four pages", || view.browsers().len() == 4);
    wait_for("the stalled page to drop updates", || {
        outbox_of(&rig, stalled_id).dropped > 50
    });
    // Memory stays bounded while it is stalled: never more than `capacity` messages.
    let before = outbox_of(&rig, stalled_id);
    assert!(before.high_water <= capacity, "{before:?}");
    // Each update is a little over 20 kB here.
    assert!(before.bytes_high_water <= capacity * 21_000, "{before:?}");

    // Stop the computation, then the server: the pages are told, and the readers end.
    let last = rig.stop_computation();
    let others: Vec<_> = rig
        .view()
        .browsers()
        .into_iter()
        .filter(|b| b.id != stalled_id)
        .collect();
    rig.stop_server();
    for reader in readers {
        let (updates, last_seq, dropped) = reader.join().unwrap();
        // The pages that read kept up: nothing dropped, and they saw the last snapshot.
        assert_eq!(dropped, 0);
        assert_eq!(last_seq, last);
        assert!(updates > 100, "{updates}");
    }
    for other in &others {
        assert_eq!(other.outbox.dropped, 0, "{other:?}");
    }

    // The stalled page reads again: it is told how many it lost, and the accounting holds.
    let mut seen = 0u64;
    let mut told_dropped = 0;
    loop {
        let message = stalled.next();
        match message["type"].as_str() {
            Some("update") => seen += 1,
            Some("dropped") => told_dropped = message["updates"].as_u64().unwrap(),
            Some("status") => break,
            _ => {}
        }
    }
    let after = outbox_of(&rig, stalled_id);
    assert_eq!(told_dropped, after.dropped, "{after:?}");
    assert_eq!(seen, after.updates_sent, "{after:?}");
    assert_eq!(
        after.offered,
        after.updates_sent + after.dropped + after.superseded,
        "{after:?}"
    );
    assert!(after.high_water <= capacity, "{after:?}");
}

#[test]
fn malformed_messages_get_an_error_and_the_page_stays() {
    let rig = wave_rig(Options::new().max_message(1024));
    let mut page = Page::connect(rig.view());
    page.next_of("update");
    for bad in [
        "not json",
        "{}",
        r#"{"type":"shutdown"}"#,
        r#"{"type":"ask","id":1}"#,
        r#"{"type":"ask","id":-4,"name":"step"}"#,
        r#"{"type":"rate","hz":-1}"#,
        r#"{"type":"rate","hz":"fast"}"#,
    ] {
        page.send(bad);
        let error = page.next_of("error");
        assert!(
            error["error"].as_str().unwrap().len() > 10,
            "{bad}: {error}"
        );
        assert!(error.get("id").is_none(), "{bad}: {error}");
    }
    page.socket.send(Message::binary(vec![1, 2, 3])).unwrap();
    let error = page.next_of("error");
    assert!(
        error["error"].as_str().unwrap().contains("binary"),
        "{error}"
    );
    // Still served: an ask is answered, updates keep coming.
    page.send(r#"{"type":"ask","id":9,"name":"step"}"#);
    assert_eq!(page.next_of("answer")["id"], 9);
    check_update(&page.next_of("update"));
    assert_eq!(rig.view().stats().malformed, 7);

    // Too long: an error, then the socket is closed with 1009.
    page.send(&format!(
        r#"{{"type":"ask","id":1,"name":"{}"}}"#,
        "x".repeat(2000)
    ));
    let error = page.next_of("error");
    assert!(
        error["error"].as_str().unwrap().contains("too long"),
        "{error}"
    );
    let code = loop {
        match page.socket.read() {
            Ok(Message::Close(frame)) => break frame.map(|f| f.code),
            Ok(_) => {}
            Err(e) => panic!("no close frame: {e}"),
        }
    };
    assert_eq!(code, Some(CloseCode::Size));
    wait_for("the page to be removed", || {
        rig.view().browsers().is_empty()
    });
}

#[test]
fn asks_are_answered_through_the_server_and_unknown_names_are_not_found() {
    let mut rig = wave_rig(Options::new());
    let mut page = Page::connect(rig.view());
    let first = check_update(&page.next_of("update"));
    page.send(r#"{"type":"ask","id":1,"name":"step"}"#);
    let answer = page.next_of("answer");
    assert_eq!(answer["id"], 1);
    assert_eq!(answer["name"], "step");
    assert_eq!(answer["found"], true);
    // Read from the snapshot the answer names, which is at least as new as the one seen.
    let seq = answer["seq"].as_u64().unwrap();
    assert!(seq >= first);
    assert_eq!(answer["value"], json!(seq));

    page.send(r#"{"type":"ask","id":2,"name":"torque"}"#);
    let missing = page.next_of("answer");
    assert_eq!(
        (missing["id"].clone(), missing["found"].clone()),
        (json!(2), json!(false))
    );
    assert!(missing.get("value").is_none());

    page.send(r#"{"type":"ask","id":3,"name":"no spaces allowed"}"#);
    let error = page.next_of("error");
    assert_eq!(error["id"], 3);
    assert!(
        error["error"].as_str().unwrap().contains("no valid name"),
        "{error}"
    );

    // Many pages asking for the same key at once share requests: each is answered.
    let mut pages: Vec<Page> = (0..4).map(|_| Page::connect(rig.view())).collect();
    for (i, page) in pages.iter_mut().enumerate() {
        page.send(&format!(
            r#"{{"type":"ask","id":{},"name":"sine"}}"#,
            100 + i
        ));
    }
    for (i, page) in pages.iter_mut().enumerate() {
        let answer = page.next_of("answer");
        assert_eq!(answer["id"], json!(100 + i));
        let seq = answer["seq"].as_u64().unwrap();
        assert_eq!(answer["value"], json!(Wave::at(seq).sine));
    }
    assert_eq!(rig.view().stats().asks, 5);

    // With the server gone, an ask is refused with a reason, never left hanging.
    rig.stop_server();
    page.next_of("status");
    page.send(r#"{"type":"ask","id":4,"name":"step"}"#);
    let error = page.next_of("error");
    assert_eq!(error["id"], 4, "{error}");
}

#[test]
fn pages_that_go_are_removed_and_their_threads_end() {
    let rig = wave_rig(Options::new());
    let view = rig.view();
    let mut closing = Page::connect(view);
    let vanishing = Page::connect(view);
    let mut staying = Page::connect(view);
    // Two threads a page (a page is listed as its writer starts, a moment before its
    // reader).
    wait_for("three pages, two threads each", || {
        view.browsers().len() == 3 && view.socket_threads() == 6
    });

    closing.socket.close(None).unwrap();
    // The view answers the close.
    loop {
        match closing.socket.read() {
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    // This one goes without a word: its TCP connection just ends.
    drop(vanishing);
    wait_for("one page left", || view.browsers().len() == 1);
    wait_for("its threads to end", || view.socket_threads() == 2);
    assert_eq!(view.stats().disconnected, 2);
    check_update(&staying.next_of("update"));
}

#[test]
fn a_page_that_accepts_nothing_for_the_stall_timeout_is_disconnected() {
    let make = big;
    let options = Options::new()
        .outbox(4)
        .max_rate_hz(1000.0)
        .stall_timeout(Duration::from_millis(300));
    let rig = Rig::start(options, Duration::from_micros(500), make);
    let stalled = Page::connect(rig.view());
    wait_for("the page to be disconnected", || {
        rig.view().stats().disconnected == 1
    });
    assert!(rig.view().browsers().is_empty());
    wait_for("its threads to end", || rig.view().socket_threads() == 0);
    drop(stalled);
}

/// Sends `request` as is and returns the status line of the answer.
fn status_of(addr: std::net::SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.lines().next().unwrap_or("").to_owned()
}

#[test]
fn cross_origin_upgrades_foreign_hosts_and_bad_requests_are_refused() {
    let rig = wave_rig(Options::new().max_browsers(2));
    let view = rig.view();
    let addr = view.local_addr();
    let host = format!("127.0.0.1:{}", addr.port());

    // The page's own origin may connect; another may not.
    let own = Page::connect_with(view, Some(&format!("http://{host}"))).map(|_| ());
    assert!(own.is_ok(), "{own:?}");
    wait_for("its place to be free again", || view.browsers().is_empty());
    for origin in [
        "http://evil.example",
        "null",
        "https://127.0.0.1:1",
        &format!("http://{host}.evil"),
    ] {
        match Page::connect_with(view, Some(origin)) {
            Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
            other => panic!("{origin}: {:?}", other.map(|_| ())),
        }
    }

    let upgrade = |host: &str| {
        format!(
            "GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
    };
    // DNS rebinding: a foreign name for this address.
    assert!(status_of(addr, &upgrade(&format!("evil.example:{}", addr.port()))).contains("403"));
    assert!(status_of(
        addr,
        &format!(
            "GET / HTTP/1.1\r\nHost: evil.example:{}\r\n\r\n",
            addr.port()
        )
    )
    .contains("403"));
    assert!(status_of(addr, &format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n")).contains("200"));
    assert!(status_of(addr, &format!("POST / HTTP/1.1\r\nHost: {host}\r\n\r\n")).contains("405"));
    assert!(status_of(
        addr,
        &format!("GET /etc/passwd HTTP/1.1\r\nHost: {host}\r\n\r\n")
    )
    .contains("404"));
    assert!(status_of(addr, "GET / HTTP/1.1\r\n\r\n").contains("400"));
    assert!(status_of(addr, "\u{1}\u{2} nonsense\r\n\r\n").contains("400"));
    let long = format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nX-Long: {}\r\n\r\n",
        "a".repeat(10_000)
    );
    assert!(status_of(addr, &long).contains("431"));
    assert!(status_of(addr, &format!("GET /ws HTTP/1.1\r\nHost: {host}\r\n\r\n")).contains("426"));

    // Two places: the third page is refused.
    let _a = Page::connect(view);
    let _b = Page::connect(view);
    wait_for("two pages", || view.browsers().len() == 2);
    assert!(status_of(addr, &upgrade(&host)).contains("503"));
    assert!(view.stats().refused >= 12);
}

#[test]
fn pages_are_told_when_the_computation_stops_and_closed_when_the_view_stops() {
    let mut rig = wave_rig(Options::new());
    let mut page = Page::connect(rig.view());
    page.next_of("update");
    rig.stop_server();
    let status = page.next_of("status");
    assert_eq!(status["running"], false);
    // The view still serves: a new page learns at once that nothing runs.
    let mut late = Page::connect(rig.view());
    assert_eq!(late.next()["running"], false);

    rig.view.take().unwrap().shutdown();
    for page in [&mut page, &mut late] {
        let code = loop {
            match page.socket.read() {
                Ok(Message::Close(frame)) => break frame.map(|f| f.code),
                Ok(_) => {}
                Err(e) => panic!("no close frame: {e}"),
            }
        };
        assert_eq!(code, Some(CloseCode::Away));
    }
}

/// Holds `x`; reading `boom` panics: a fault of the computation's state, not of the view.
#[derive(Clone, Default)]
struct Brittle;

impl queueserver::IDict for Brittle {
    type Key = &'static str;
    type Value = f64;

    fn get(&self, key: &&'static str) -> Option<f64> {
        match *key {
            "x" => Some(1.0),
            "boom" => panic!("reading boom"),
            _ => None,
        }
    }

    fn write_name<W: std::fmt::Write + ?Sized>(
        key: &&'static str,
        out: &mut W,
    ) -> Result<(), queueserver::idict::KeyError> {
        queueserver::idict::write_checked(key, out)
    }

    fn parse_key(&self, name: &str) -> Result<&'static str, queueserver::idict::KeyError> {
        queueserver::idict::parse_by_visit(self, name)
    }

    fn visit<F: FnMut(&&'static str, &f64)>(&self, mut f: F) {
        f(&"x", &1.0);
        f(&"boom", &0.0);
    }
}

#[test]
fn an_ask_the_server_abandons_gets_an_error_at_once_and_the_page_goes_on() {
    use queueserver::QueueServer;
    use queueserver_web::{WebConnection, WebView};
    use std::panic::{catch_unwind, AssertUnwindSafe};

    // An ask left waiting would be told only at its timeout, ten minutes from now: far
    // past the page's 20 s read timeout.
    let options = Options::new().ask_timeout(Duration::from_secs(600));
    let (mut publisher, mut server) = QueueServer::<_, WebConnection<Brittle>>::new(Brittle);
    let view = WebView::serve(&mut server, options).unwrap();
    let mut page = Page::connect(&view);
    assert_eq!(page.next()["type"], "hello");
    publisher.put_update(&Brittle);
    let _ = server.poll();
    page.next_of("update");
    // (The view asked for the whole snapshot when the page joined.)
    let before = view.ask_stats().unwrap().requests_sent;

    page.send(r#"{"type":"ask","id":1,"name":"boom"}"#);
    wait_for("the ask queued", || {
        view.ask_stats()
            .is_some_and(|asks| asks.requests_sent == before + 1)
    });
    // A poll loop that catches the panic of the read: the next poll abandons the request,
    // and the view tells the page at once.
    assert!(catch_unwind(AssertUnwindSafe(|| server.poll())).is_err());
    let _ = server.poll();
    let error = page.next_of("error");
    assert_eq!(error["id"], 1, "{error}");
    assert_eq!(
        error["error"], r#"ask for "boom" failed: abandoned: reading the value panicked"#,
        "{error}"
    );
    assert_eq!(server.stats().requests_abandoned, 1);

    // Only that ask ended: the page asks again and is answered.
    page.send(r#"{"type":"ask","id":2,"name":"x"}"#);
    wait_for("the second ask queued", || {
        view.ask_stats()
            .is_some_and(|asks| asks.requests_sent == before + 2)
    });
    let _ = server.poll();
    let answer = page.next_of("answer");
    assert_eq!(
        (answer["id"].clone(), answer["value"].clone()),
        (json!(2), json!(1.0))
    );
    // Answered: the page's second ask, and the view's own ask for the snapshot when the
    // page joined.
    let asks = view.ask_stats().unwrap();
    assert_eq!(
        (asks.answered, asks.abandoned, asks.closed, asks.outstanding),
        (2, 1, 0, 0)
    );
    view.shutdown();
}

#[test]
fn a_page_that_reads_nothing_is_found_out_by_its_pings_whatever_the_socket_buffers_hold() {
    // Ten small updates a second: the kernel's buffers would take them for hours, so only
    // the pings can tell that this page reads nothing.
    let options = Options::new()
        .max_rate_hz(10.0)
        .stall_timeout(Duration::from_millis(400))
        .ping_interval(Duration::from_millis(100));
    let rig = Rig::start(options, Duration::from_millis(100), Wave::at);
    let mut reading = Page::connect(rig.view());
    let reader = std::thread::spawn(move || {
        // Reading answers the pings (tungstenite queues each pong and sends it as it reads).
        while reading.socket.read().is_ok() {}
    });
    let silent = Page::connect(rig.view());
    let connected = std::time::Instant::now();
    // Found stalled, then disconnected once its threads end (two counters, a moment
    // apart).
    wait_for("the silent page to be disconnected", || {
        let stats = rig.view().stats();
        stats.stalled == 1 && stats.disconnected == 1
    });
    // Not before it was silent for the stall timeout.
    assert!(connected.elapsed() >= Duration::from_millis(400));
    let stats = rig.view().stats();
    assert_eq!((stats.stalled, stats.disconnected), (1, 1));
    // The page that reads (and so answers the pings) stays, well past the stall timeout.
    let left = rig.view().browsers();
    assert_eq!(left.len(), 1);
    let sent = left[0].outbox.sent;
    std::thread::sleep(Duration::from_millis(800));
    let left = rig.view().browsers();
    assert_eq!(left.len(), 1);
    assert!(left[0].outbox.sent > sent);
    assert_eq!(rig.view().stats().stalled, 1);
    drop(silent);
    drop(rig);
    reader.join().unwrap();
}

#[test]
fn past_the_bound_on_request_threads_a_connection_gets_503_at_once() {
    // One page place: 2 * 1 + 32 threads read requests at most. Clients that trickle
    // nothing hold them (for the request timeout).
    let rig = wave_rig(
        Options::new()
            .max_browsers(1)
            .request_timeout(Duration::from_secs(30)),
    );
    let addr = rig.view().local_addr();
    let held: Vec<TcpStream> = (0..34).map(|_| TcpStream::connect(addr).unwrap()).collect();
    wait_for("every request thread to be taken", || {
        rig.view().socket_threads() == 34
    });
    let mut late = TcpStream::connect(addr).unwrap();
    late.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut answer = String::new();
    let _ = late.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    assert!(answer.contains("\r\nRetry-After: 1\r\n"), "{answer:?}");
    assert!(rig.view().stats().refused >= 1);
    drop(held);
    wait_for("the held threads to end", || {
        rig.view().socket_threads() == 0
    });
}

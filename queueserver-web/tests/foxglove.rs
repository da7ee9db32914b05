//! Foxglove's protocol on the view's port: Foxglove's own client library
//! (`@foxglove/ws-protocol` 0.8.0, on Node: `common/foxglove.rs`) against a running
//! computation whose values are known, and raw WebSocket clients for the wire's details.

mod common;
#[path = "common/foxglove.rs"]
mod foxglove;

use common::{wait_for, Rig, Wave};
use foxglove::Foxglove;
use queueserver::QueueServer;
use queueserver_web::{Options, WebConnection, WebView, FOXGLOVE_SUBPROTOCOL};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tungstenite::{Message, WebSocket};

const FOXGLOVE_APP: &str = "https://app.foxglove.dev";

fn wave_rig(options: Options) -> Rig<Wave> {
    Rig::start(options, Duration::from_micros(500), Wave::at)
}

fn url<D: queueserver::IDict>(view: &WebView<D>) -> String {
    format!("ws://{}", view.local_addr())
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Checks a message of `topic` against the snapshot its `seq` names; returns the seq.
fn check_wave(topic: &str, data: &Value) -> u64 {
    let seq = data["seq"].as_u64().expect("a seq");
    let expected = Wave::at(seq);
    let value = |name: &str| match topic {
        "@snapshot" => data["values"][name].clone(),
        _ => data["value"].clone(),
    };
    let number = |name: &str| value(name).as_f64().expect("a number");
    if topic == "step" || topic == "@snapshot" {
        assert_eq!(value("step"), json!(seq), "{topic}: {data}");
    }
    if topic == "sine" || topic == "@snapshot" {
        assert_eq!(number("sine"), expected.sine, "{topic}: {data}");
    }
    if topic == "cosine" || topic == "@snapshot" {
        assert_eq!(number("cosine"), expected.cosine, "{topic}: {data}");
    }
    if topic == "enabled" || topic == "@snapshot" {
        assert_eq!(value("enabled"), json!(expected.enabled), "{topic}: {data}");
    }
    if topic == "@snapshot" {
        assert_eq!(number("ramp"), expected.ramp, "{data}");
    }
    seq
}

/// What one subscription has received.
#[derive(Default)]
struct Seen {
    count: usize,
    last_seq: Option<u64>,
    last_time: u64,
}

/// Checks a message event: its values are its seq's, and per subscription seqs grow and
/// times do not go back.
fn check_message(event: &Value, seen: &mut BTreeMap<u64, Seen>) -> u64 {
    let topic = event["topic"].as_str().expect("a subscribed topic");
    let subscription = event["subscription"].as_u64().unwrap();
    let seq = check_wave(topic, &event["data"]);
    let time: u64 = event["timestamp"].as_str().unwrap().parse().unwrap();
    assert!(
        time > 1_600_000_000_000_000_000 && time <= now_ns(),
        "{event}"
    );
    let seen = seen.entry(subscription).or_default();
    assert!(
        seen.last_seq.map_or(true, |last| seq > last),
        "{topic}: seq {seq} after {:?}",
        seen.last_seq
    );
    assert!(time >= seen.last_time, "{topic}: time went back: {event}");
    seen.count += 1;
    seen.last_seq = Some(seq);
    seen.last_time = time;
    seq
}

/// The client's greeting: `open` (with the subprotocol), `serverInfo`, `advertise`;
/// returns the channels by topic.
fn greeting(client: &Foxglove) -> BTreeMap<String, Value> {
    let (open, _) = client.until("open");
    assert_eq!(open["protocol"], FOXGLOVE_SUBPROTOCOL);
    let (info, _) = client.until("serverInfo");
    assert_eq!(
        info["info"]["capabilities"],
        json!(["parameters"]),
        "{info}"
    );
    assert_eq!(info["info"]["name"], "queueserver-web");
    let (advertise, _) = client.until("advertise");
    advertise["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["topic"].as_str().unwrap().to_owned(), c.clone()))
        .collect()
}

#[test]
fn the_client_library_reads_three_values_and_the_snapshot_each_as_its_seq_says() {
    let rig = wave_rig(Options::new().allow_origin(FOXGLOVE_APP));
    // Foxglove's web app sends its origin; the view lets it in because it was told to.
    let mut client = Foxglove::start(&url(rig.view()), Some(FOXGLOVE_APP));
    let channels = greeting(&client);
    let topics: BTreeSet<&str> = channels.keys().map(String::as_str).collect();
    assert_eq!(
        topics,
        BTreeSet::from(["@snapshot", "step", "sine", "cosine", "ramp", "enabled"])
    );
    let schema_type = |topic: &str| {
        let channel = &channels[topic];
        assert_eq!(channel["encoding"], "json");
        assert_eq!(channel["schemaEncoding"], "jsonschema");
        let schema: Value = serde_json::from_str(channel["schema"].as_str().unwrap()).unwrap();
        match topic {
            "@snapshot" => schema["properties"]["values"]["properties"]["sine"]["type"].clone(),
            _ => schema["properties"]["value"]["type"].clone(),
        }
    };
    assert_eq!(schema_type("sine"), "number");
    assert_eq!(schema_type("step"), "integer");
    assert_eq!(schema_type("enabled"), "boolean");
    assert_eq!(schema_type("@snapshot"), "number");

    let ids = client.subscribe(&["step", "sine", "enabled", "@snapshot"]);
    let (sine, snapshot) = (ids[1], ids[3]);
    let mut seen = BTreeMap::new();
    while ids
        .iter()
        .any(|id| seen.get(id).map_or(0, |s: &Seen| s.count) < 30)
    {
        let event = client.next();
        match event["event"].as_str() {
            Some("message") => {
                check_message(&event, &mut seen);
            }
            Some("status") => panic!("a status while reading: {event}"),
            _ => {}
        }
    }
    let clients = rig.view().foxglove_clients();
    assert_eq!(clients.len(), 1);
    assert_eq!(clients[0].subscriptions, 4);

    // Unsubscribed: once the view has read the unsubscribe (its reply to a later request
    // says so), no message of those subscriptions comes, while the others flow on.
    client.send(json!({ "cmd": "unsubscribe", "topics": ["sine", "@snapshot"] }));
    client.send(json!({ "cmd": "get", "names": ["step"], "id": "sync" }));
    loop {
        let event = client.next();
        match event["event"].as_str() {
            Some("message") => {
                check_message(&event, &mut seen);
            }
            Some("parameterValues") => {
                assert_eq!(event["values"]["id"], "sync");
                break;
            }
            Some("status") => panic!("a status: {event}"),
            _ => {}
        }
    }
    let before: BTreeMap<u64, usize> = seen.iter().map(|(id, s)| (*id, s.count)).collect();
    let (step, enabled) = (ids[0], ids[2]);
    while seen[&step].count < before[&step] + 30 || seen[&enabled].count < before[&enabled] + 30 {
        let event = client.next();
        if event["event"] == "message" {
            let subscription = event["subscription"].as_u64().unwrap();
            assert!(
                subscription != sine && subscription != snapshot,
                "a message after unsubscribing: {event}"
            );
            check_message(&event, &mut seen);
        }
    }
    assert_eq!(seen[&sine].count, before[&sine]);
    assert_eq!(seen[&snapshot].count, before[&snapshot]);
    assert_eq!(rig.view().foxglove_clients()[0].subscriptions, 2);
    let stats = rig.view().stats();
    assert_eq!((stats.foxglove_clients, stats.malformed), (1, 0));
    assert!(stats.foxglove_payloads > 0 && stats.foxglove_updates > 0);
}

#[test]
fn get_parameters_reads_known_names_through_the_server_and_refuses_the_rest() {
    let mut rig = wave_rig(Options::new());
    wait_for("some publishes", || {
        rig.stats.lock().unwrap().updates_published > 100
    });
    // A paused computation: every read is of the last snapshot.
    let last = rig.stop_computation();
    let expected = Wave::at(last);
    let mut client = Foxglove::start(&url(rig.view()), None);
    greeting(&client);
    let answered_before = rig.view().ask_stats().unwrap().answered;

    client.send(json!({
        "cmd": "get",
        "names": ["step", "sine", "enabled", "torque", "no spaces"],
        "id": "p1"
    }));
    let (values, _) = client.until("parameterValues");
    let sine = &values["values"]["parameters"][1]["value"];
    assert_eq!(sine.as_f64(), Some(expected.sine), "{values}");
    assert_eq!(
        values["values"],
        json!({"op": "parameterValues", "id": "p1", "parameters": [
            {"name": "step", "value": last},
            // As the client read it: JSON has one kind of number.
            {"name": "sine", "value": sine, "type": "float64"},
            {"name": "enabled", "value": expected.enabled},
        ]})
    );
    let (status, _) = client.until("status");
    let message = status["status"]["message"].as_str().unwrap();
    assert_eq!(status["status"]["level"], 2, "{status}");
    assert!(
        message.contains("p1") && message.contains("\"torque\": no such value"),
        "{message}"
    );
    assert!(
        message.contains("\"no spaces\" is no valid name"),
        "{message}"
    );
    // Three names, three reads through the server's request path.
    assert_eq!(
        rig.view().ask_stats().unwrap().answered,
        answered_before + 3
    );

    // No names: every value, one read of the whole snapshot.
    client.send(json!({ "cmd": "get", "names": [], "id": "all" }));
    let (values, _) = client.until("parameterValues");
    let all: BTreeMap<&str, &Value> = values["values"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), &p["value"]))
        .collect();
    assert_eq!(all.len(), 5, "{values}");
    assert_eq!(all["step"], &json!(last));
    assert_eq!(all["ramp"].as_f64(), Some(expected.ramp));
    assert_eq!(
        rig.view().ask_stats().unwrap().answered,
        answered_before + 4
    );

    // Writes are refused; so is what the view does not understand; the client stays.
    let refusals = [
        (json!({ "cmd": "set", "id": "s1" }), "read-only"),
        (
            json!({ "cmd": "raw", "text": "not json" }),
            "malformed message",
        ),
        (
            json!({ "cmd": "raw", "text": "{\"op\":\"launch\"}" }),
            "unknown op \"launch\"",
        ),
        (
            json!({ "cmd": "raw", "text": "{\"op\":\"subscribe\",\"subscriptions\":7}" }),
            "malformed \"subscribe\" message",
        ),
        (
            json!({ "cmd": "raw", "text": "{\"op\":\"subscribe\",\"subscriptions\":[{\"id\":1,\"channelId\":99}]}" }),
            "no channel 99",
        ),
        (
            json!({ "cmd": "raw", "text": "{\"op\":\"unsubscribe\",\"subscriptionIds\":[42]}" }),
            "no subscription [42]",
        ),
        (json!({ "cmd": "binary" }), "binary messages"),
    ];
    for (command, expected) in refusals {
        client.send(command);
        let (status, skipped) = client.until("status");
        assert!(skipped.iter().all(|e| e["event"] != "close"), "{skipped:?}");
        assert_eq!(status["status"]["level"], 2, "{status}");
        let message = status["status"]["message"].as_str().unwrap();
        assert!(message.contains(expected), "{expected}: {message}");
    }
    client.send(json!({ "cmd": "get", "names": ["ramp"], "id": "p2" }));
    let (values, _) = client.until("parameterValues");
    assert_eq!(
        values["values"]["parameters"][0]["value"].as_f64(),
        Some(expected.ramp)
    );
    // Not JSON, an unknown op, a malformed subscribe: the rest were well formed.
    assert_eq!(rig.view().stats().malformed, 3);
}

/// Snapshots of about 20 kB of JSON: the count `n`, and ten long strings.
fn big(n: u64) -> BTreeMap<String, String> {
    let mut map: BTreeMap<String, String> = (0..10)
        .map(|i| (format!("blob-{i}"), "x".repeat(2000)))
        .collect();
    map.insert("n".into(), n.to_string());
    map
}

#[test]
fn a_client_that_stops_reading_drops_its_oldest_updates_and_slows_nobody() {
    // About 40 kB an update for a client subscribed to everything (each value, and the
    // snapshot), at up to 200 updates a second: a client that stops reading fills the
    // kernel's socket buffers within seconds, then its outbox.
    let capacity = 8;
    let options = Options::new()
        .outbox(capacity)
        .max_rate_hz(200.0)
        .stall_timeout(Duration::from_secs(120));
    let rig = Rig::start(options, Duration::from_micros(500), big);
    let view = rig.view();

    let mut stalled = Foxglove::start(&url(view), None);
    let channels = greeting(&stalled);
    wait_for("the stalled client", || view.foxglove_clients().len() == 1);
    let stalled_id = view.foxglove_clients()[0].id;
    let topics: Vec<&str> = channels.keys().map(String::as_str).collect();
    assert_eq!(topics.len(), 12);
    stalled.subscribe(&topics);
    stalled.until("message");
    stalled.pause(true);

    let mut reader = Foxglove::start(&url(view), None);
    greeting(&reader);
    let ids = reader.subscribe(&["n", "@snapshot"]);
    let stats_of = |id| {
        view.foxglove_clients()
            .into_iter()
            .find(|c| c.id == id)
            .expect("connected")
            .outbox
    };
    let offered_before = view.relay_stats().unwrap().updates_offered;
    let published_before = rig.stats.lock().unwrap().updates_published;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut read = 0;
    let mut read_while_dropping = 0;
    let mut last_seq = BTreeMap::new();
    while read_while_dropping < 200 {
        assert!(
            Instant::now() < deadline,
            "the stalled client dropped {:?}",
            stats_of(stalled_id)
        );
        let event = reader.next();
        if event["event"] != "message" {
            assert_ne!(event["event"], "status", "{event}");
            continue;
        }
        let data = &event["data"];
        let seq = data["seq"].as_u64().unwrap();
        let n = match event["topic"].as_str().unwrap() {
            "n" => data["value"].as_str().unwrap(),
            _ => {
                assert_eq!(data["values"]["blob-3"].as_str().unwrap().len(), 2000);
                data["values"]["n"].as_str().unwrap()
            }
        };
        assert_eq!(n, seq.to_string(), "{event}");
        let subscription = event["subscription"].as_u64().unwrap();
        assert!(ids.contains(&subscription));
        let last = last_seq.insert(subscription, seq);
        assert!(last.map_or(true, |last| seq > last), "{event}");
        read += 1;
        if stats_of(stalled_id).dropped >= 20 {
            read_while_dropping += 1;
        }
    }
    let stalled_stats = stats_of(stalled_id);
    let reader_stats = view
        .foxglove_clients()
        .into_iter()
        .find(|c| c.id != stalled_id)
        .unwrap()
        .outbox;
    // The stalled client's outbox stayed within its bound, dropping its oldest updates;
    // the reader lost none; the poller went on handing snapshots to the view.
    assert!(stalled_stats.high_water <= capacity, "{stalled_stats:?}");
    assert!(stalled_stats.dropped >= 20, "{stalled_stats:?}");
    assert_eq!(reader_stats.dropped, 0, "{reader_stats:?}");
    assert!(read >= 200);
    assert!(view.relay_stats().unwrap().updates_offered > offered_before + 100);
    assert!(rig.stats.lock().unwrap().updates_published > published_before + 100);

    // Reading again, the stalled client is told how many it lost.
    stalled.pause(false);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "no drop count told");
        let (status, _) = stalled.until("status");
        let message = status["status"]["message"].as_str().unwrap();
        if let Some(count) = message.strip_suffix(
            " updates dropped so far: this client read too slowly and its outbox was full \
             (the oldest update goes first)",
        ) {
            assert_eq!(status["status"]["level"], 1);
            assert!(count.parse::<u64>().unwrap() >= 20, "{message}");
            break;
        }
    }
}

/// A raw client of the view at `path`, offering `subprotocol`, sending `origin`.
fn raw(
    addr: std::net::SocketAddr,
    path: &str,
    subprotocol: Option<&str>,
    origin: Option<&str>,
) -> Result<(WebSocket<TcpStream>, Option<String>), tungstenite::Error> {
    common::handshake(addr, path, subprotocol, origin)
}

fn status_of(result: Result<(WebSocket<TcpStream>, Option<String>), tungstenite::Error>) -> u16 {
    match result {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("{other}"),
        Ok(_) => 101,
    }
}

fn next_text(socket: &mut WebSocket<TcpStream>) -> Value {
    loop {
        match socket.read().expect("a message") {
            Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => {}
        }
    }
}

#[test]
fn the_subprotocol_chooses_foxglove_and_foreign_origins_need_allowing() {
    let rig = wave_rig(Options::new());
    let addr = rig.view().local_addr();
    // At the root, as Foxglove connects, and at the page's path: the answer names the
    // subprotocol, and the first message is the server's info.
    for path in ["/", "/ws"] {
        let (mut socket, chosen) = raw(addr, path, Some(FOXGLOVE_SUBPROTOCOL), None).unwrap();
        assert_eq!(chosen.as_deref(), Some(FOXGLOVE_SUBPROTOCOL));
        assert_eq!(next_text(&mut socket)["op"], "serverInfo");
        assert_eq!(next_text(&mut socket)["op"], "advertise");
    }
    // The page's stream has no subprotocol; the root takes only Foxglove's.
    let (mut page, chosen) = raw(addr, "/ws", None, None).unwrap();
    assert_eq!(chosen, None);
    assert_eq!(next_text(&mut page)["type"], "hello");
    assert_eq!(status_of(raw(addr, "/", None, None)), 400);
    assert_eq!(status_of(raw(addr, "/", Some("other.v1"), None)), 400);
    // A foreign origin is refused, whatever the protocol, until allowed by name.
    for (path, subprotocol) in [("/", Some(FOXGLOVE_SUBPROTOCOL)), ("/ws", None)] {
        assert_eq!(
            status_of(raw(addr, path, subprotocol, Some(FOXGLOVE_APP))),
            403
        );
    }
    let own = format!("http://{addr}");
    assert_eq!(
        status_of(raw(addr, "/", Some(FOXGLOVE_SUBPROTOCOL), Some(&own))),
        101
    );
    let open = wave_rig(Options::new().allow_origin("https://APP.foxglove.dev/"));
    let addr = open.view().local_addr();
    for (path, subprotocol) in [("/", Some(FOXGLOVE_SUBPROTOCOL)), ("/ws", None)] {
        assert_eq!(
            status_of(raw(addr, path, subprotocol, Some(FOXGLOVE_APP))),
            101
        );
    }
    assert_eq!(
        status_of(raw(
            addr,
            "/",
            Some(FOXGLOVE_SUBPROTOCOL),
            Some("https://evil.example")
        )),
        403
    );
}

/// Reads binary frames until each of `subscriptions` has one of snapshot `seq`; checks
/// each frame's header and payload.
fn read_frames(socket: &mut WebSocket<TcpStream>, subscriptions: &[(u32, &str)], seq: u64) {
    let mut done = BTreeSet::new();
    while done.len() < subscriptions.len() {
        let Message::Binary(frame) = socket.read().expect("a frame") else {
            continue;
        };
        assert_eq!(frame[0], 0x01, "messageData");
        let subscription = u32::from_le_bytes(frame[1..5].try_into().unwrap());
        let time = u64::from_le_bytes(frame[5..13].try_into().unwrap());
        assert!(time > 1_600_000_000_000_000_000 && time <= now_ns());
        let (_, topic) = subscriptions
            .iter()
            .find(|(id, _)| *id == subscription)
            .expect("a subscription of ours");
        let data: Value = serde_json::from_slice(&frame[13..]).unwrap();
        if check_wave(topic, &data) == seq {
            done.insert(subscription);
        }
    }
}

#[test]
fn each_channel_is_encoded_once_per_snapshot_whatever_the_clients_subscribed() {
    let (mut publisher, mut server) = QueueServer::<Wave, WebConnection<Wave>>::new(Wave::at(0));
    let view = WebView::serve(&mut server, Options::new().max_rate_hz(1000.0)).unwrap();
    let addr = view.local_addr();
    let mut clients: Vec<_> = (0..3)
        .map(|n| {
            let (mut socket, _) = raw(addr, "/", Some(FOXGLOVE_SUBPROTOCOL), None).unwrap();
            next_text(&mut socket);
            let advertise = next_text(&mut socket);
            let id_of = |topic: &str| {
                advertise["channels"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|c| c["topic"] == topic)
                    .unwrap()["id"]
                    .clone()
            };
            // Each client numbers its subscriptions its own way.
            let subscribe = json!({"op": "subscribe", "subscriptions": [
                {"id": 10 * n, "channelId": id_of("sine")},
                {"id": 10 * n + 1, "channelId": id_of("@snapshot")},
            ]});
            socket.send(Message::text(subscribe.to_string())).unwrap();
            // The reply to a later request: the subscriptions are in place.
            let get = json!({"op": "getParameters", "parameterNames": ["step"], "id": "sync"});
            socket.send(Message::text(get.to_string())).unwrap();
            loop {
                match socket.read().unwrap() {
                    Message::Text(text) if text.contains("parameterValues") => break,
                    Message::Text(text) => panic!("{text}"),
                    _ => {}
                }
            }
            (socket, n as u32)
        })
        .collect();
    let before = view.stats();
    for step in 1..=40 {
        publisher.put_update(&Wave::at(step));
        server.process_updates();
        // Every client reads the frames of both its channels for this snapshot: so the
        // view encoded this one.
        for (socket, n) in &mut clients {
            read_frames(
                socket,
                &[(10 * *n, "sine"), (10 * *n + 1, "@snapshot")],
                step,
            );
        }
    }
    let after = view.stats();
    let updates = after.foxglove_updates - before.foxglove_updates;
    assert_eq!(updates, 40, "{after:?}");
    // Two channels a snapshot, whatever the number of clients subscribed to them.
    assert_eq!(
        after.foxglove_payloads - before.foxglove_payloads,
        2 * updates
    );
    assert_eq!(view.foxglove_clients().len(), 3);
    view.shutdown();
}

/// The next text message, skipping binary frames.
fn next_op(socket: &mut WebSocket<TcpStream>) -> Value {
    let message = next_text(socket);
    assert!(message["op"].is_string(), "{message}");
    message
}

#[test]
fn names_that_appear_are_advertised_and_names_that_go_are_unadvertised() {
    type Map = BTreeMap<String, f64>;
    let map = |pairs: &[(&str, f64)]| -> Map {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    };
    let (mut publisher, mut server) =
        QueueServer::<Map, WebConnection<Map>>::new(map(&[("a", 1.0), ("b", 2.0)]));
    let view = WebView::serve(&mut server, Options::new()).unwrap();
    let (mut socket, _) = raw(view.local_addr(), "/", Some(FOXGLOVE_SUBPROTOCOL), None).unwrap();
    assert_eq!(next_op(&mut socket)["op"], "serverInfo");
    let advertise = next_op(&mut socket);
    let id_of = |advertise: &Value, topic: &str| {
        advertise["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["topic"] == topic)
            .map(|c| c["id"].as_u64().unwrap())
    };
    let b = id_of(&advertise, "b").expect("b is advertised");
    assert!(id_of(&advertise, "a").is_some() && id_of(&advertise, "@snapshot").is_some());
    let subscribe = json!({"op": "subscribe", "subscriptions": [{"id": 5, "channelId": b}]});
    socket.send(Message::text(subscribe.to_string())).unwrap();
    wait_for("the subscription", || {
        view.foxglove_clients()[0].subscriptions == 1
    });

    // `b` goes and `c` comes: `b` is unadvertised (its subscription ends), `c` advertised
    // under a new id.
    publisher.put_update(&map(&[("a", 1.5), ("c", 3.0)]));
    server.process_updates();
    let unadvertise = next_op(&mut socket);
    assert_eq!(unadvertise, json!({"op": "unadvertise", "channelIds": [b]}));
    let advertise = next_op(&mut socket);
    assert_eq!(advertise["op"], "advertise");
    assert_eq!(
        advertise["channels"].as_array().unwrap().len(),
        1,
        "{advertise}"
    );
    let c = id_of(&advertise, "c").expect("c is advertised");
    assert!(c > b);
    assert_eq!(view.foxglove_clients()[0].subscriptions, 0);

    // Subscribed, `c` comes at once with the newest value.
    let subscribe = json!({"op": "subscribe", "subscriptions": [{"id": 5, "channelId": c}]});
    socket.send(Message::text(subscribe.to_string())).unwrap();
    let frame = loop {
        match socket.read().expect("a frame") {
            Message::Binary(frame) => break frame,
            Message::Text(text) => panic!("{text}"),
            _ => {}
        }
    };
    assert_eq!(u32::from_le_bytes(frame[1..5].try_into().unwrap()), 5);
    let data: Value = serde_json::from_slice(&frame[13..]).unwrap();
    assert_eq!(data, json!({"seq": 1, "value": 3.0}));
}

//! The ready-made connections: a channel read on another thread (a slow reader gets the
//! newest update and the missed ones are counted; an answer is never lost silently) and a
//! closure.

mod common;

use common::{state, State};
use queueserver::connections::{from_fn, Delivery};
use queueserver::runtime::channel::{channel, requests_only, ChannelConnection, Message};
use queueserver::{
    Abandoned, Connection, ConnectionError, Query, QueueServer, Request, Response, Runner,
};
use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
use std::thread;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(60);

fn seq_of(message: Message<State>) -> u64 {
    match message {
        Message::Update(snapshot) => snapshot.seq(),
        other => panic!("expected an update, got {other:?}"),
    }
}

#[test]
fn a_slow_reader_gets_the_newest_update_and_the_missed_ones_are_counted() {
    let (connection, receiver) = channel::<State>(3);
    let (mut publisher, mut server) = QueueServer::new(state(0.0, 0.0));
    server.add_connection(connection).unwrap();
    for step in 1..=5 {
        publisher.put_update(&state(f64::from(step), 0.0));
        let _ = server.poll();
    }
    assert_eq!(receiver.len(), 1);
    assert_eq!(receiver.updates_dropped(), 4);
    assert_eq!(seq_of(receiver.try_recv().unwrap()), 5);
    assert_eq!(receiver.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(server.stats().deliveries, 5);
}

#[test]
fn answers_wait_apart_from_the_update_and_are_read_first() {
    let (connection, receiver) = channel::<State>(2);
    let (mut publisher, mut server) = QueueServer::new(state(0.0, 0.0));
    let id = server.add_connection(connection).unwrap();
    publisher.put_update(&state(1.0, 0.0));
    let _ = server.poll();
    server.put_request(Request::key(id, "x")).unwrap();
    let _ = server.poll();
    // [answer x] and update 1: an answer evicts no update, an update no answer.
    server.put_request(Request::key(id, "nope")).unwrap();
    let _ = server.poll();
    assert_eq!(receiver.len(), 3);
    assert_eq!(
        receiver.try_recv(),
        Ok(Message::Value {
            key: "x",
            value: 1.0,
            seq: 1
        })
    );
    assert_eq!(
        receiver.try_recv(),
        Ok(Message::NotFound {
            key: "nope",
            seq: 1
        })
    );
    assert_eq!(seq_of(receiver.try_recv().unwrap()), 1);
    assert_eq!(receiver.updates_dropped(), 0);
    // A queue full of answers still takes the newest update, in its slot.
    server.put_request(Request::snapshot(id)).unwrap();
    server.put_request(Request::key(id, "v")).unwrap();
    let _ = server.poll();
    publisher.put_update(&state(2.0, 0.0));
    let _ = server.poll();
    assert_eq!(receiver.updates_dropped(), 0);
    // (The poller answers a batch in query order: keys, then the whole snapshot.)
    assert!(matches!(
        receiver.try_recv(),
        Ok(Message::Value { key: "v", .. })
    ));
    assert!(matches!(receiver.try_recv(), Ok(Message::All(s)) if s.seq() == 1));
    assert_eq!(seq_of(receiver.try_recv().unwrap()), 2);
    assert_eq!(server.stats().connections_failed, 0);
}

#[test]
fn an_answer_that_finds_the_queue_full_fails_the_connection_loudly() {
    let (connection, receiver) = requests_only::<State>(2);
    let (_publisher, mut server) =
        QueueServer::<State, ChannelConnection<State>>::new(state(0.0, 0.0));
    let id = server.add_connection(connection).unwrap();
    for key in ["x", "v", "x"] {
        server.put_request(Request::key(id, key)).unwrap();
        let _ = server.poll();
    }
    let failed = server.take_failed().expect("the connection failed");
    assert_eq!((failed.id, failed.error), (id, ConnectionError::Overloaded));
    let stats = server.stats();
    assert_eq!(
        (
            stats.requests_answered,
            stats.requests_orphaned,
            stats.connections_failed
        ),
        (2, 1, 1)
    );
    // The reader gets both answers, then learns why no more come.
    assert!(matches!(
        receiver.try_recv(),
        Ok(Message::Value { key: "x", .. })
    ));
    assert!(matches!(
        receiver.try_recv(),
        Ok(Message::Value { key: "v", .. })
    ));
    assert_eq!(receiver.try_recv(), Err(TryRecvError::Disconnected));
    assert!(receiver.overloaded());
    assert_eq!(receiver.updates_dropped(), 0);
}

#[test]
fn a_reader_on_another_thread_receives_updates_and_answers() {
    let (connection, receiver) = channel::<State>(64);
    let (mut publisher, mut server) = QueueServer::new(state(0.0, 0.0));
    let id = server.add_connection(connection).unwrap();
    let requester = server.requester();
    let runner = Runner::every(server, Duration::from_millis(1)).unwrap();
    let reader = thread::spawn(move || {
        let mut last_update = 0;
        let mut answers = 0;
        while answers < 1 || last_update < 3 {
            match receiver.recv_timeout(PATIENCE).unwrap() {
                Message::Update(s) => {
                    assert!(s.seq() > last_update);
                    last_update = s.seq();
                }
                Message::Value { key: "x", .. } => answers += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        receiver
    });
    for step in 1..=3 {
        publisher.put_update(&state(f64::from(step), 0.0));
    }
    requester.put_request(Request::key(id, "x")).unwrap();
    let receiver = reader.join().unwrap();
    drop(runner.shutdown().unwrap());
    // The connection went with the server: whatever is left, then disconnected.
    while receiver.try_recv().is_ok() {}
    assert_eq!(receiver.recv(), Err(std::sync::mpsc::RecvError));
    assert_eq!(
        receiver.recv_timeout(Duration::ZERO),
        Err(RecvTimeoutError::Disconnected)
    );
}

#[test]
fn dropping_the_receiver_removes_the_connection() {
    let (connection, receiver) = channel::<State>(4);
    let (mut publisher, mut server) = QueueServer::new(state(0.0, 0.0));
    let id = server.add_connection(connection).unwrap();
    drop(receiver);
    publisher.put_update(&state(1.0, 0.0));
    let _ = server.poll();
    let failed = server.take_failed().expect("removed");
    assert_eq!((failed.id, failed.error), (id, ConnectionError::Closed));
}

#[test]
fn a_closure_connection_gets_updates_and_answers_unless_requests_only() {
    let mut log: Vec<String> = Vec::new();
    let mut answers = 0;
    let (mut publisher, mut server) = QueueServer::new(state(0.0, 0.0));
    let watcher = server
        .add_connection(Box::new(from_fn(|delivery: Delivery<'_, State>| {
            log.push(format!("{delivery:?}").chars().take(6).collect());
            Ok(())
        })) as Box<dyn queueserver::Connection<State>>)
        .unwrap();
    let asker = server
        .add_connection(Box::new(
            from_fn(|delivery: Delivery<'_, State>| match delivery {
                Delivery::Update(_) => Err(ConnectionError::Failed("subscribed by mistake")),
                Delivery::Response(Response::Value { value, .. }) => {
                    answers += 1;
                    assert_eq!(*value, 1.0);
                    Ok(())
                }
                Delivery::Response(_) | Delivery::Abandoned { .. } => {
                    Err(ConnectionError::Failed("unexpected answer"))
                }
            })
            .requests_only(),
        ))
        .unwrap();
    publisher.put_update(&state(1.0, 0.0));
    server.put_request(Request::key(watcher, "x")).unwrap();
    server.put_request(Request::key(asker, "x")).unwrap();
    let _ = server.poll();
    assert_eq!(server.stats().connections_failed, 0);
    drop(server);
    assert_eq!(log, ["Update", "Respon"]);
    assert_eq!(answers, 1);
}

#[test]
fn a_closure_that_fails_removes_its_connection() {
    let (mut publisher, mut server) = QueueServer::new(state(0.0, 0.0));
    let id = server
        .add_connection(from_fn(|_: Delivery<'_, State>| {
            Err(ConnectionError::Closed)
        }))
        .unwrap();
    publisher.put_update(&state(1.0, 0.0));
    let _ = server.poll();
    let failed = server.take_failed().unwrap();
    assert_eq!((failed.id, failed.error), (id, ConnectionError::Closed));
}

#[test]
fn both_connections_pass_on_the_requests_the_server_abandons() {
    let (connection, receiver) = channel::<State>(2);
    let mut told = Vec::new();
    let (mut publisher, mut server) = QueueServer::new(state(0.0, 0.0));
    let channelled = server
        .add_connection(Box::new(connection) as Box<dyn Connection<State>>)
        .unwrap();
    let closure = server
        .add_connection(Box::new(
            from_fn(|delivery: Delivery<'_, State>| {
                if let Delivery::Abandoned { query, why } = delivery {
                    told.push((query.clone(), why));
                }
                Ok(())
            })
            .requests_only(),
        ))
        .unwrap();
    // The channel holds an update; the abandoned requests wait beside it, as answers do.
    publisher.put_update(&state(1.0, 0.0));
    let _ = server.poll();
    for request in [
        Request::key(channelled, "x"),
        Request::snapshot(channelled),
        Request::key(closure, "v"),
    ] {
        server.put_request(request).unwrap();
    }
    // An owner that stops serving gives up on what it accepted.
    server.close();
    let _ = server.abandon_requests();
    let stats = server.stats();
    assert_eq!((stats.requests_abandoned, stats.requests_answered), (3, 0));
    assert_eq!(stats.connections_failed, 0);
    assert_eq!(receiver.updates_dropped(), 0);
    assert_eq!(
        receiver.try_recv(),
        Ok(Message::Abandoned {
            query: Query::Key("x"),
            why: Abandoned::Stopped
        })
    );
    assert_eq!(
        receiver.try_recv(),
        Ok(Message::Abandoned {
            query: Query::All,
            why: Abandoned::Stopped
        })
    );
    assert_eq!(seq_of(receiver.try_recv().unwrap()), 1);
    drop(server);
    assert_eq!(receiver.try_recv(), Err(TryRecvError::Disconnected));
    assert_eq!(told, [(Query::Key("v"), Abandoned::Stopped)]);
}

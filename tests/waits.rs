//! Waiting for a newer snapshot: `Reader::wait_newer`, `wait_changed` and the async
//! `changed`, woken by the poller when it stores a snapshot, never by the computation, and
//! told `Closed` when the server is dropped.
//!
//! Waits that must return use a long timeout: a wait that hung would come back `TimedOut`
//! after a minute and fail the assertion, so no assertion depends on timing.

mod common;

use common::{state, Recorder, State};
use queueserver::{QueueServer, Runner, WaitError};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::Duration;

/// Longer than any wait that must return.
const PATIENCE: Duration = Duration::from_secs(60);

/// A waker that counts its wakes.
#[derive(Default)]
struct CountWakes(AtomicUsize);

impl Wake for CountWakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl CountWakes {
    /// A counter, and a waker that counts into it.
    fn waker() -> (Arc<Self>, Waker) {
        let wakes = Arc::new(Self::default());
        (Arc::clone(&wakes), Waker::from(wakes))
    }

    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

fn server() -> (queueserver::Publisher<State>, QueueServer<State, Recorder>) {
    QueueServer::new(state(0.0, 0.0))
}

#[test]
fn a_reader_that_is_behind_returns_at_once() {
    let (mut publisher, mut server) = server();
    let mut reader = server.reader();
    assert_eq!(reader.seen(), 0);
    publisher.put_update(&state(1.0, 0.0));
    publisher.put_update(&state(2.0, 0.0));
    let _ = server.poll();
    // No thread will ever publish again: only a reader that is behind can return.
    assert_eq!(reader.wait_newer(0, PATIENCE).unwrap().seq(), 2);
    assert_eq!(reader.wait_newer(1, PATIENCE).unwrap().seq(), 2);
    let newest = reader.wait_changed(PATIENCE).unwrap();
    assert_eq!(
        (newest.seq(), newest.data()["x"], reader.seen()),
        (2, 2.0, 2)
    );
    assert_eq!(
        reader.clone().seen(),
        2,
        "a clone starts where its original stands"
    );
}

#[test]
fn a_wait_times_out_when_nothing_newer_is_stored() {
    let (_publisher, mut server) = server();
    let mut reader = server.reader();
    assert_eq!(
        reader.wait_newer(0, Duration::from_millis(20)),
        Err(WaitError::TimedOut)
    );
    assert_eq!(
        reader.wait_changed(Duration::ZERO),
        Err(WaitError::TimedOut)
    );
    assert_eq!(reader.seen(), 0);
}

#[test]
fn the_poller_wakes_a_waiter_and_the_computation_does_not() {
    let (mut publisher, mut server) = server();
    let reader = server.reader();
    let (tx, rx) = mpsc::channel();
    let waiter = thread::spawn(move || {
        tx.send(reader.wait_newer(0, PATIENCE).map(|s| s.seq()))
            .unwrap();
    });
    publisher.put_update(&state(1.0, 0.0));
    // Published but not taken by the poller: the waiter must still be waiting.
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(50)),
        Err(mpsc::RecvTimeoutError::Timeout)
    );
    let _ = server.process_updates();
    assert_eq!(rx.recv_timeout(PATIENCE), Ok(Ok(1)));
    waiter.join().unwrap();
}

#[test]
fn one_store_wakes_every_waiter() {
    let (mut publisher, mut server) = server();
    let reader = server.reader();
    let waiters: Vec<_> = (0..8)
        .map(|_| {
            let reader = reader.clone();
            thread::spawn(move || reader.wait_newer(0, PATIENCE).map(|s| s.seq()))
        })
        .collect();
    publisher.put_update(&state(1.0, 0.0));
    let _ = server.process_updates();
    for waiter in waiters {
        assert_eq!(waiter.join().unwrap(), Ok(1));
    }
}

#[test]
fn a_wait_across_the_server_being_dropped_returns_closed() {
    let (mut publisher, mut server) = server();
    let reader = server.reader();
    let waiting = {
        let reader = reader.clone();
        thread::spawn(move || reader.wait_newer(0, PATIENCE))
    };
    publisher.put_update(&state(1.0, 0.0));
    // Published, never taken: dropping the server must still end the wait.
    drop(server);
    assert_eq!(waiting.join().unwrap(), Err(WaitError::Closed));
    assert!(reader.is_closed());
    // The last snapshot stored stays readable, and a later wait returns at once.
    assert_eq!(reader.load().seq(), 0);
    assert_eq!(reader.wait_newer(0, PATIENCE), Err(WaitError::Closed));
}

#[test]
fn a_wait_across_a_runner_shutdown_and_drop_returns_closed() {
    let (mut publisher, mut server) = server();
    let mut reader = server.reader();
    let runner = Runner::every(server, Duration::from_millis(1)).unwrap();
    publisher.put_update(&state(5.0, 0.0));
    assert_eq!(reader.wait_changed(PATIENCE).unwrap().seq(), 1);
    let waiting = {
        let mut reader = reader.clone();
        thread::spawn(move || reader.wait_changed(PATIENCE))
    };
    let server = runner.shutdown().unwrap();
    drop(server);
    assert_eq!(waiting.join().unwrap(), Err(WaitError::Closed));
}

#[test]
fn changed_is_ready_at_once_when_behind_then_pending_until_the_poller_stores() {
    let (mut publisher, mut server) = server();
    let mut reader = server.reader();
    publisher.put_update(&state(1.0, 0.0));
    publisher.put_update(&state(2.0, 0.0));
    let _ = server.poll();

    let (wakes, waker) = CountWakes::waker();
    let mut cx = Context::from_waker(&waker);
    {
        let mut changed = pin!(reader.changed());
        match changed.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(snapshot)) => assert_eq!(snapshot.seq(), 2),
            other => panic!("expected snapshot 2 at once, got {other:?}"),
        }
    }
    assert_eq!(reader.seen(), 2);

    let mut changed = pin!(reader.changed());
    assert!(changed.as_mut().poll(&mut cx).is_pending());
    publisher.put_update(&state(3.0, 0.0));
    assert_eq!(wakes.count(), 0, "the computation never wakes a reader");
    let _ = server.process_updates();
    assert_eq!(
        wakes.count(),
        1,
        "the poller wakes it when it stores the snapshot"
    );
    match changed.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(snapshot)) => assert_eq!(snapshot.seq(), 3),
        other => panic!("expected snapshot 3, got {other:?}"),
    }
}

#[test]
fn dropping_a_changed_future_withdraws_its_waker() {
    let (mut publisher, mut server) = server();
    let mut reader = server.reader();
    let (wakes, waker) = CountWakes::waker();
    let mut cx = Context::from_waker(&waker);
    {
        let mut changed = pin!(reader.changed());
        assert!(changed.as_mut().poll(&mut cx).is_pending());
    }
    publisher.put_update(&state(1.0, 0.0));
    let _ = server.process_updates();
    assert_eq!(wakes.count(), 0);
}

#[test]
fn changed_across_the_server_being_dropped_returns_closed() {
    let (_publisher, mut server) = server();
    let mut reader = server.reader();
    let (wakes, waker) = CountWakes::waker();
    let mut cx = Context::from_waker(&waker);
    let mut changed = pin!(reader.changed());
    assert!(changed.as_mut().poll(&mut cx).is_pending());
    drop(server);
    assert_eq!(wakes.count(), 1);
    assert!(matches!(
        changed.as_mut().poll(&mut cx),
        Poll::Ready(Err(WaitError::Closed))
    ));
}

#[test]
fn changed_on_tokio_and_on_a_plain_block_on() {
    let (mut publisher, mut server) = server();
    let reader = server.reader();
    let runner = Runner::every(server, Duration::from_millis(1)).unwrap();

    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let mut reader = reader.clone();
            multi.spawn(async move { reader.changed().await.map(|s| s.seq()) })
        })
        .collect();
    let on_current = {
        let mut reader = reader.clone();
        thread::spawn(move || {
            let current = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            current.block_on(reader.changed()).map(|s| s.seq())
        })
    };
    let on_block_on = {
        let mut reader = reader.clone();
        thread::spawn(move || futures_executor::block_on(reader.changed()).map(|s| s.seq()))
    };

    publisher.put_update(&state(1.0, 0.0));
    for task in tasks {
        let seq = multi.block_on(task).unwrap().unwrap();
        assert!(seq >= 1);
    }
    assert!(on_current.join().unwrap().unwrap() >= 1);
    assert!(on_block_on.join().unwrap().unwrap() >= 1);

    // And across shutdown.
    let pending = {
        let mut reader = reader.clone();
        let _ = reader.load();
        multi.spawn(async move {
            loop {
                if let Err(closed) = reader.changed().await {
                    return closed;
                }
            }
        })
    };
    drop(runner.shutdown().unwrap());
    assert_eq!(multi.block_on(pending).unwrap(), WaitError::Closed);
}

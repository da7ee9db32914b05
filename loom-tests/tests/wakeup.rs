//! Model 3: coalesced notifications never lose a wakeup.
//!
//! `put_request` calls the hook only when the request flag goes from clear to set, and the
//! poller clears the flag before it looks for requests; `put_update` calls it only when its
//! publish finds the last snapshot taken. Whatever the interleaving, work that arrives while
//! the poller is busy or going to sleep is either seen by the poller or leaves it told (the
//! request flag set, or the publish's notification made after the snapshot is there), so
//! the poller runs again:
//!
//! - a poller that runs on its own schedule and sleeps when no event is pending never
//!   leaves a request behind (for publishes, model 1 checks the same);
//! - a `Runner` driven by `ThreadNotify` (park / unpark) answers every request and delivers
//!   every publish without any other prompt. A lost wakeup leaves the runner parked while
//!   the model waits for the answer: loom reports the deadlock.

#![cfg(loom)]

use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use queueserver::{
    Builder, ConnectionId, Event, NoClock, Notify, Publisher, Query, Request, Runner, ThreadNotify,
};
use queueserver_loom_tests::{check, put, Pair, Probe};

/// Requests, or publishes, racing with the poller.
const PUTS: u8 = 2;
/// `process_requests` calls racing with the requests.
const POLLS: usize = 2;

/// Counts the notifications of each kind.
#[derive(Default)]
struct Count {
    updates: AtomicUsize,
    requests: AtomicUsize,
}

impl Notify for Count {
    fn notify(&self, event: Event) {
        let count = match event {
            Event::Update => &self.updates,
            Event::Request => &self.requests,
        };
        count.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn a_request_racing_with_a_polling_poller_is_never_left_unflagged() {
    check("wakeup: put_request vs process_requests", || {
        let (_publisher, mut server) = Builder::new(Pair::at(0))
            .notify(Count::default())
            .capacity::<2, 1>()
            .build_with([Probe::requester()])
            .unwrap();
        let id = server.connection_ids().next().unwrap();
        let requester = server.requester();

        let client = thread::spawn(move || {
            for key in 1..=PUTS {
                assert_eq!(put(&requester, Request::key(id, key)), Ok(()));
            }
        });
        for _ in 0..POLLS {
            let _ = server.process_requests();
        }
        client.join().unwrap();

        // The poller would now sleep until an event is pending.
        if !server.has_pending_events() {
            assert_eq!(
                server.pending_requests(),
                0,
                "a request left queued with no event pending: a lost wakeup"
            );
        }
        // Coalesced: one notification to start with, then at most one per clear.
        let notifications = server.notifier().requests.load(Ordering::Relaxed);
        assert!(
            (1..=1 + POLLS).contains(&notifications),
            "{notifications} notifications for {PUTS} requests and {POLLS} polls"
        );
        assert_eq!(server.notifier().updates.load(Ordering::Relaxed), 0);

        let _ = server.process_requests();
        assert_eq!(server.pending_requests(), 0);
        let probe = server.connection(id).unwrap();
        for key in 1..=PUTS {
            assert_eq!(probe.answered(&Query::Key(key)), 1);
        }
    });
}

#[test]
fn a_notified_runner_wakes_for_every_request() {
    check("wakeup: put_request vs a parking runner", || {
        let (_publisher, mut server) = Builder::new(Pair::at(0))
            .notify(ThreadNotify::new())
            .capacity::<2, 1>()
            .build::<Probe>()
            .unwrap();
        let answered = Arc::new(AtomicUsize::new(0));
        let probe = {
            let (answered, waiter) = (Arc::clone(&answered), thread::current());
            Probe::requester().on_answer(move |_| {
                answered.fetch_add(1, Ordering::Release);
                waiter.unpark();
            })
        };
        let id = server.add_connection(probe).unwrap();
        let requester = server.requester();
        let runner = Runner::notified(server).unwrap();

        for key in 1..=PUTS {
            assert_eq!(put(&requester, Request::key(id, key)), Ok(()));
        }
        // Only the runner can end this wait; if it sleeps through a request, loom reports
        // a deadlock.
        while answered.load(Ordering::Acquire) < usize::from(PUTS) {
            thread::park();
        }

        let server = runner.shutdown().unwrap();
        let probe = server.connection(id).unwrap();
        for key in 1..=PUTS {
            assert_eq!(probe.answered(&Query::Key(key)), 1);
        }
        assert_eq!(server.pending_requests(), 0);
    });
}

/// The runner of the publish models.
type NotifiedRunner = Runner<Pair, Probe, ThreadNotify, NoClock, 2, 1>;

/// A `Runner` driven by `ThreadNotify`, serving one subscriber that records the newest
/// sequence number delivered and unparks the calling thread.
fn subscribed_runner() -> (
    Publisher<Pair, ThreadNotify>,
    NotifiedRunner,
    ConnectionId,
    Arc<AtomicU64>,
) {
    let (publisher, mut server) = Builder::new(Pair::at(0))
        .notify(ThreadNotify::new())
        .capacity::<2, 1>()
        .build::<Probe>()
        .unwrap();
    let delivered = Arc::new(AtomicU64::new(0));
    let probe = {
        let (delivered, waiter) = (Arc::clone(&delivered), thread::current());
        Probe::subscriber().on_update(move |seq| {
            delivered.store(seq, Ordering::Release);
            waiter.unpark();
        })
    };
    let id = server.add_connection(probe).unwrap();
    let runner = Runner::notified(server).unwrap();
    (publisher, runner, id, delivered)
}

/// Parks until snapshot `seq` has been delivered. Only the runner can end this wait; if it
/// sleeps through a publish, loom reports a deadlock.
fn wait_for_delivery(delivered: &AtomicU64, seq: u64) {
    while delivered.load(Ordering::Acquire) < seq {
        thread::park();
    }
}

#[test]
fn a_notified_runner_wakes_for_every_publish() {
    check("wakeup: put_update vs a parking runner", || {
        let (mut publisher, runner, id, delivered) = subscribed_runner();
        let last = u64::from(PUTS);
        for step in 1..=last {
            publisher.put_update(&Pair::at(step));
        }
        wait_for_delivery(&delivered, last);

        let server = runner.shutdown().unwrap();
        assert_eq!(server.connection(id).unwrap().updates.last(), Some(&last));
        let stats = server.stats();
        assert_eq!(
            stats.updates_delivered + stats.updates_overwritten,
            publisher.published(),
            "{stats:?}"
        );
    });
}

#[test]
fn a_notified_runner_wakes_for_a_publish_after_it_took_the_last() {
    // Each publish waits until the one before was delivered, so every publish after the
    // first finds the back buffer taken: it must notify again, or the runner
    // sleeps through it.
    check(
        "wakeup: put_update after each delivery vs a parking runner",
        || {
            let (mut publisher, runner, id, delivered) = subscribed_runner();
            for step in 1..=u64::from(PUTS) {
                publisher.put_update(&Pair::at(step));
                wait_for_delivery(&delivered, step);
            }

            let server = runner.shutdown().unwrap();
            assert_eq!(server.connection(id).unwrap().updates, [1, 2]);
            assert_eq!(server.stats().updates_overwritten, 0);
        },
    );
}

#[test]
fn a_notified_runner_wakes_for_publishes_and_requests_together() {
    check(
        "wakeup: put_update and put_request vs a parking runner",
        || {
            let (mut publisher, mut server) = Builder::new(Pair::at(0))
                .notify(ThreadNotify::new())
                .capacity::<2, 1>()
                .build::<Probe>()
                .unwrap();
            let delivered = Arc::new(AtomicU64::new(0));
            let answered = Arc::new(AtomicUsize::new(0));
            let probe = {
                let (delivered, answered) = (Arc::clone(&delivered), Arc::clone(&answered));
                let (waiter, also_waiter) = (thread::current(), thread::current());
                Probe::subscriber()
                    .on_update(move |seq| {
                        delivered.store(seq, Ordering::Release);
                        waiter.unpark();
                    })
                    .on_answer(move |_| {
                        answered.fetch_add(1, Ordering::Release);
                        also_waiter.unpark();
                    })
            };
            let id = server.add_connection(probe).unwrap();
            let requester = server.requester();
            let runner = Runner::notified(server).unwrap();

            let client = thread::spawn(move || {
                for key in 1..=PUTS {
                    assert_eq!(put(&requester, Request::key(id, key)), Ok(()));
                }
            });
            let last = u64::from(PUTS);
            for step in 1..=last {
                publisher.put_update(&Pair::at(step));
            }
            // Only the runner can end this wait: if it sleeps through a publish or a request,
            // loom reports a deadlock.
            while delivered.load(Ordering::Acquire) < last
                || answered.load(Ordering::Acquire) < usize::from(PUTS)
            {
                thread::park();
            }
            client.join().unwrap();

            let server = runner.shutdown().unwrap();
            let probe = server.connection(id).unwrap();
            assert_eq!(probe.updates.last(), Some(&last));
            for key in 1..=PUTS {
                assert_eq!(probe.answered(&Query::Key(key)), 1);
            }
        },
    );
}

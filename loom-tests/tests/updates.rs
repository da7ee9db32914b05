//! Model 1: the computation publishing while a poller driven by its notifications processes
//! updates (a main loop that takes what the hook left, then polls, as firmware does with a
//! `FlagNotify`).
//!
//! In every interleaving of `put_update` (and the hook it calls) with the poller's take of
//! the notifications and `process_updates`: each snapshot delivered is newer than the one
//! before; between two poller calls the newest sequence number the poller knows of is
//! exactly `delivered + overwritten`; a publish the poller has not taken leaves a
//! notification untaken, so the main loop polls again (none is lost); notifications are
//! coalesced (at most one per poll, plus the first); and once the poller has taken the last
//! publish, `published = delivered + overwritten` exactly.
//!
//! The hook counts with a read-modify-write rather than `FlagNotify`'s plain store: loom
//! may let a load read an earlier read-modify-write's value over a plain store that came
//! after it (see the README), which would report a lost notification that is not.

#![cfg(loom)]

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use queueserver::{Builder, Event, Notify};
use queueserver_loom_tests::{check, Pair, Probe};

/// Publishes by the computation.
const PUBLISHES: u64 = 3;
/// `process_updates` calls racing with them.
const POLLS: usize = 2;

/// Counts the notifications not yet taken, and all of them.
#[derive(Default)]
struct Tally {
    untaken: AtomicUsize,
    total: AtomicUsize,
}

impl Tally {
    /// Whether a notification came since the last `take`; forgets it.
    fn take(&self) -> bool {
        // Acquire: what the publish before the notification wrote is visible after.
        self.untaken.swap(0, Ordering::Acquire) > 0
    }
}

impl Notify for Tally {
    fn notify(&self, event: Event) {
        assert_eq!(event, Event::Update);
        self.total.fetch_add(1, Ordering::Relaxed);
        self.untaken.fetch_add(1, Ordering::Release);
    }
}

#[test]
fn publishing_races_with_processing() {
    check("updates: publishing vs processing", || {
        let (mut publisher, mut server) = Builder::new(Pair::at(0))
            .notify(Tally::default())
            .capacity::<2, 1>()
            .build_with([Probe::subscriber()])
            .unwrap();
        let id = server.connection_ids().next().unwrap();

        let computation = thread::spawn(move || {
            for step in 1..=PUBLISHES {
                publisher.put_update(&Pair::at(step));
            }
            publisher
        });

        for _ in 0..POLLS {
            // The main loop's order: take the notifications, then poll.
            let _ = server.notifier().take();
            let _ = server.process_updates();
            let stats = server.stats();
            let seen = &server.connection(id).unwrap().updates;
            // One subscriber, no rate limit: every snapshot taken is fanned out at once.
            assert_eq!(stats.updates_superseded, 0, "{stats:?}");
            assert_eq!(seen.len() as u64, stats.updates_delivered, "{stats:?}");
            assert_eq!(
                stats.updates_published,
                stats.updates_delivered + stats.updates_overwritten,
                "the newest seq seen = delivered + overwritten: {stats:?}"
            );
            assert_eq!(seen.last().copied().unwrap_or(0), stats.updates_published);
        }

        let publisher = computation.join().unwrap();
        let stats = server.stats();
        let pending = publisher.published() - stats.updates_published;
        assert!(
            pending == 0 || server.has_pending_events(),
            "{pending} publish(es) not taken and no update pending: {stats:?}"
        );
        let tally = server.notifier();
        assert!(
            pending == 0 || tally.untaken.load(Ordering::Relaxed) > 0,
            "{pending} publish(es) not taken and no notification left: the loop would sleep"
        );
        let total = tally.total.load(Ordering::Relaxed);
        assert!(
            total <= POLLS + 1,
            "{total} notifications for {POLLS} polls: not coalesced"
        );

        let _ = server.process_updates();
        let stats = server.stats();
        let seen = &server.connection(id).unwrap().updates;
        assert_eq!(
            seen.last(),
            Some(&PUBLISHES),
            "the newest publish is delivered"
        );
        assert_eq!(
            publisher.published(),
            stats.updates_delivered + stats.updates_overwritten,
            "published = delivered + overwritten once nothing is pending: {stats:?}"
        );
        assert_eq!(
            stats.updates_overwritten,
            PUBLISHES - seen.len() as u64,
            "overwritten = the publishes never delivered: {stats:?}"
        );
        assert!(!server.has_pending_events());
    });
}

//! Model 1: the computation publishing while the poller processes updates.
//!
//! In every interleaving of `put_update` with `process_updates`: each snapshot delivered is
//! whole and newer than the one before; between two poller calls the newest sequence number
//! the poller knows of is exactly `delivered + overwritten`; a publish the poller has not
//! taken leaves an update pending; and once the poller has taken the last publish,
//! `published = delivered + overwritten` exactly.

#![cfg(loom)]

use loom::thread;
use queueserver::Builder;
use queueserver_loom_tests::{check, Pair, Probe};

/// Publishes by the computation.
const PUBLISHES: u64 = 3;
/// `process_updates` calls racing with them.
const POLLS: usize = 2;

#[test]
fn publishing_races_with_processing() {
    check("updates: publishing vs processing", || {
        let (mut publisher, mut server) = Builder::new(Pair::at(0))
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

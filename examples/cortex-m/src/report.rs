//! The end of a run: what the server did, what it cost, and whether it all adds up.
//!
//! The checks are the identities of the crate's `Stats` (see `src/stats.rs`) with nothing
//! left in flight, plus the counts kept on the other side of each path: by the publisher,
//! by the requesters (accepted and refused), and by the connections (updates and answers,
//! each checked on arrival). A few more make sure every path really ran: overwritten and
//! superseded snapshots, consolidated duplicates, refused requests, names that are no key,
//! rate limits. And one on the derive: its `copy_from` costs what a plain copy does.
//!
//! Beside the costs, `put_update` against the raw `triple_buffer` write + publish of the
//! same `State`, with its target (at most 6 instructions more): reported, not a check, as
//! a cost is a figure, not a fault.

use crate::cost::{Series, Summary, INSTRUCTIONS_PER_COUNT};
use crate::heap::HeapCounts;
use crate::plant::{State, StateKey};
use crate::{costs, Server, Tally, ISR_REQUESTS, MAXC, Q, SAMPLES, TICKS};
use core::mem::size_of;
use core::sync::atomic::Ordering;
use cortex_m_semihosting::hprintln;
use queueserver::{ConnectionId, Publisher, Requester, Snapshot};

/// What the main loop hands over at the end.
pub struct Run<'a> {
    /// The server, closed and drained.
    pub server: &'a Server,
    /// The console's id.
    pub console: ConnectionId,
    /// The probe's id.
    pub probe: ConnectionId,
    /// The heap's counts when it was sealed.
    pub at_start: HeapCounts,
    /// The heap's counts now.
    pub after: HeapCounts,
    /// The stopwatch's self-test: runs checked, or the first `(expected, measured)` that
    /// differed.
    pub stopwatch: Result<usize, (u32, u32)>,
    /// Snapshots the publisher published.
    pub published: u32,
    /// What the main loop's `put_request` calls returned.
    pub main_requests: &'a Tally,
    /// The newest `State` the raw triple buffer's output holds at the end.
    pub raw_last: State,
}

/// `put_update` may cost at most this many instructions more than the raw `triple_buffer`
/// write + publish of the same `State` (first call, median and worst alike).
pub const RAW_TARGET_SLACK: u32 = 6;

/// Prints the run's figures and checks; returns whether every check passed.
pub fn report(run: &Run<'_>) -> bool {
    let stats = run.server.stats();
    let console = run.server.connection(run.console);
    let probe = run.server.connection(run.probe);

    hprintln!("\nheap");
    hprintln!(
        "  at start: {} allocations, {} bytes asked, {} bytes in use",
        run.at_start.allocations,
        run.at_start.bytes,
        run.at_start.used
    );
    hprintln!(
        "  after:    {} allocations, {} frees, {} after start",
        run.after.allocations,
        run.after.frees,
        run.after.late
    );
    hprintln!("\nsizes (bytes)");
    hprintln!(
        "  State {}, Snapshot<State> {}, Publisher {}, Requester {}, QueueServer {} (Q = {}, MAXC = {})",
        size_of::<State>(),
        size_of::<Snapshot<State>>(),
        size_of::<Publisher<State, &'static queueserver::FlagNotify>>(),
        size_of::<Requester<StateKey, &'static queueserver::FlagNotify, Q, MAXC>>(),
        size_of::<Server>(),
        Q,
        MAXC
    );
    hprintln!("\nstats {:#?}", stats);
    for (name, link) in [("console", console), ("probe", probe)] {
        match link {
            Some(link) => hprintln!("{} {:?}", name, link),
            None => hprintln!("{} is no longer attached", name),
        }
    }

    hprintln!(
        "\ncosts in instructions (1 SysTick count = {} instructions); each includes the call",
        INSTRUCTIONS_PER_COUNT
    );
    let series: [(&str, &Series<SAMPLES>); 13] = [
        ("empty call", &costs::EMPTY_CALL),
        ("wants_update", &costs::WANTS_UPDATE),
        ("put_update (64-byte State)", &costs::PUT_UPDATE),
        ("raw triple_buffer write + publish", &costs::RAW_PUBLISH),
        ("plain copy of the State", &costs::PLAIN_COPY),
        ("derived copy_from of the State", &costs::DERIVED_COPY),
        ("put_request (PendSV), accepted", &costs::PUT_REQUEST),
        (
            "put_request (PendSV), refused over quota",
            &costs::PUT_REQUEST_REFUSED,
        ),
        ("process_updates, new, rate-limited", &costs::UPDATES_HELD),
        (
            "process_updates, delivered + semihosting",
            &costs::UPDATES_DELIVERED,
        ),
        ("process_requests, rate-limited", &costs::REQUESTS_HELD),
        ("process_requests, one batch", &costs::REQUESTS_BATCH),
        ("  the same, per request in the batch", &costs::PER_REQUEST),
    ];
    for (name, series) in series {
        match series.summary() {
            Some(s) => print_summary(name, &s, series.dropped()),
            None => hprintln!("  {:<42} no sample", name),
        }
    }
    if let Some(s) = costs::BATCH_SIZE.summary() {
        hprintln!(
            "  batch sizes: min {}, median {}, max {} requests",
            s.min,
            s.median,
            s.max
        );
    }

    compare_raw();

    hprintln!("\nchecks");
    let mut checks = Checks::default();
    match run.stopwatch {
        Ok(runs) => checks.check(
            &format_args!("stopwatch exact on {} runs of nops", runs),
            true,
        ),
        // The instrument, not the crate: a miss makes the costs above approximate (to a few
        // instructions) but says nothing about the server, so it warns rather than fails.
        // A change elsewhere in the firmware has been seen to make it miss by 3 at
        // opt-level 3; the cause is not known. The figures in the README come from builds
        // that passed it, or are marked.
        Err((expected, measured)) => hprintln!(
            "  WARN  stopwatch: {} nops measured as {} (run with -icount shift=0): the costs \
             above are not instruction-exact on this build",
            expected,
            measured
        ),
    }
    let (start, after) = (&run.at_start, &run.after);
    checks.check(
        &"no allocation or free after start",
        after.late == 0 && after.allocations == start.allocations && after.frees == start.frees,
    );
    checks.check(
        &"every period published, and the poller knows it",
        run.published == TICKS && stats.updates_published == u64::from(TICKS),
    );
    checks.check(
        &"updates_published = updates_received + updates_overwritten",
        stats.updates_published == stats.updates_received + stats.updates_overwritten,
    );
    checks.check(
        &"updates_received = updates_delivered + updates_superseded (none waiting)",
        stats.updates_received == stats.updates_delivered + stats.updates_superseded,
    );
    let pending = run.server.pending_requests() as u64;
    checks.check(
        &"requests_accepted = answered + consolidated + orphaned + abandoned + pending",
        stats.requests_accepted
            == stats.requests_answered
                + stats.requests_consolidated
                + stats.requests_orphaned
                + stats.requests_abandoned
                + pending,
    );
    checks.check(
        &"no request pending, orphaned or abandoned",
        pending == 0 && stats.requests_orphaned == 0 && stats.requests_abandoned == 0,
    );
    let (main, isr) = (run.main_requests, &ISR_REQUESTS);
    let accepted = main.accepted.load(Ordering::Relaxed) + isr.accepted.load(Ordering::Relaxed);
    checks.check(
        &"accepted as the requesters counted them",
        stats.requests_accepted == u64::from(accepted),
    );
    checks.check(
        &"rejected as the requesters counted them",
        stats.requests_rejected == u64::from(main.rejected() + isr.rejected()),
    );
    checks.check(
        &"no refusal but over quota or full",
        main.unexpected.load(Ordering::Relaxed) == 0 && isr.unexpected.load(Ordering::Relaxed) == 0,
    );
    checks.check(
        &"no connection failed or removed",
        stats.connections_added == 2
            && stats.connections_removed == 0
            && stats.connections_failed == 0,
    );
    match (console, probe) {
        (Some(console), Some(probe)) => {
            checks.check(
                &"no fault seen by a connection",
                console.faults + probe.faults == 0,
            );
            checks.check(
                &"answers received = requests_answered",
                u64::from(console.answers() + probe.answers()) == stats.requests_answered,
            );
            checks.check(
                &"deliveries = updates_delivered = the console's updates",
                stats.deliveries == stats.updates_delivered
                    && stats.deliveries == u64::from(console.updates),
            );
            checks.check(
                &"the console got the last snapshot; the probe, not subscribed, none",
                console.last_update == u64::from(TICKS) && probe.updates == 0,
            );
            checks.check(
                &"names that are no key refused by the parse; no key \"not found\"",
                isr.unknown_names.load(Ordering::Relaxed) > 0
                    && probe.not_found + console.not_found == 0,
            );
            checks.check(&"whole snapshots answered", console.snapshots > 0);
        }
        _ => checks.check(&"both connections still attached", false),
    }
    checks.check(
        &"overwritten and superseded snapshots seen",
        stats.updates_overwritten > 0 && stats.updates_superseded > 0,
    );
    checks.check(
        &"duplicate requests consolidated",
        stats.requests_consolidated > 0,
    );
    checks.check(
        &"floods refused over quota",
        isr.over_quota.load(Ordering::Relaxed) > 0,
    );
    checks.check(
        &"one read per distinct key: 0 < reads <= answered",
        0 < stats.reads && stats.reads <= stats.requests_answered,
    );
    checks.check(
        &"pending high-water mark within a batch and a full queue",
        0 < stats.pending_high_water && stats.pending_high_water <= 2 * Q as u64,
    );
    // The derived `copy_from` of a `Copy` struct must be the block copy a hand-written
    // `*self = *source` is, not sixteen field copies (43 instructions instead of 14 at `s`).
    // One instruction of slack: at opt-level `z` LLVM folds the two wrappers into one
    // function, and a call site may still hold one load it scheduled into the measured window.
    let (plain, derived) = (costs::PLAIN_COPY.summary(), costs::DERIVED_COPY.summary());
    checks.check(
        &"the derived copy_from costs what a plain copy does (min, median, max; +1 at most)",
        matches!((plain, derived), (Some(p), Some(d))
            if d.min <= p.min + 1 && d.median <= p.median + 1 && d.max <= p.max + 1),
    );
    checks.check(
        &"the raw triple buffer's reader got the last State",
        run.raw_last == State::at(TICKS),
    );
    checks.check(
        &"rate limits held work back",
        costs::UPDATES_HELD.summary().is_some() && costs::REQUESTS_HELD.summary().is_some(),
    );
    hprintln!("checks: {} passed, {} failed", checks.passed, checks.failed);
    hprintln!(
        "RESULT: {}",
        if checks.failed == 0 { "PASS" } else { "FAIL" }
    );
    checks.failed == 0
}

/// `put_update` against the raw triple buffer: first call, median and worst, their
/// differences, and the target.
fn compare_raw() {
    let (Some(ours), Some(raw)) = (costs::PUT_UPDATE.summary(), costs::RAW_PUBLISH.summary())
    else {
        hprintln!("\nput_update against the raw triple buffer: no sample");
        return;
    };
    let stats = |s: &Summary| [s.first, s.median, s.max];
    let pairs = stats(&ours).into_iter().zip(stats(&raw));
    let mut differences = [0i64; 3];
    for (difference, (o, r)) in differences.iter_mut().zip(pairs.clone()) {
        *difference = i64::from(o) - i64::from(r);
    }
    hprintln!("\nput_update against the raw triple buffer (instructions: first / median / worst)");
    hprintln!(
        "  put_update                         {} / {} / {}",
        ours.first,
        ours.median,
        ours.max
    );
    hprintln!(
        "  raw triple_buffer write + publish  {} / {} / {}",
        raw.first,
        raw.median,
        raw.max
    );
    hprintln!(
        "  difference                         {:+} / {:+} / {:+}",
        differences[0],
        differences[1],
        differences[2]
    );
    let met = pairs.into_iter().all(|(o, r)| o <= r + RAW_TARGET_SLACK);
    hprintln!(
        "  TARGET put_update <= raw + {} in each: {}",
        RAW_TARGET_SLACK,
        if met { "met" } else { "missed" }
    );
}

fn print_summary(name: &str, s: &Summary, dropped: u32) {
    // Hundredths of a SysTick count, in integers.
    let hundredths = s.median * 100 / INSTRUCTIONS_PER_COUNT;
    hprintln!(
        "  {:<42} {:>5} calls  first {:>5}  min {:>5}  median {:>5}  max {:>5}  (median {}.{:02} counts){}",
        name,
        s.count,
        s.first,
        s.min,
        s.median,
        s.max,
        hundredths / 100,
        hundredths % 100,
        if dropped > 0 {
            "  [some dropped: an interrupt ran into them]"
        } else {
            ""
        },
    );
}

/// Tallies and prints checks.
#[derive(Default)]
struct Checks {
    passed: u32,
    failed: u32,
}

impl Checks {
    fn check(&mut self, what: &dyn core::fmt::Display, ok: bool) {
        if ok {
            self.passed += 1;
            hprintln!("  ok    {}", what);
        } else {
            self.failed += 1;
            hprintln!("  FAIL  {}", what);
        }
    }
}

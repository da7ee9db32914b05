#!/usr/bin/env bash
# Shows that every loom model can fail: each mutation below breaks one ordering of the
# crate's synchronisation in a copy of the crate, and the model that guards that ordering
# must report it. Exits non-zero unless every mutation is caught; `src/` itself carries no
# mutation hook.
#
#   loom-tests/mutants.sh            # every mutation
#   loom-tests/mutants.sh NAME...    # only these
#
# Builds go to target/loom-mutants (MUTANTS_TARGET_DIR to change, relative to the crate's
# root), so that the dependencies are built once for all mutations.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CARGO_TERM_COLOR=never
export RUSTFLAGS="--cfg loom"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
# Deadlock reports name where each thread is blocked.
export LOOM_LOCATION=1
target=${MUTANTS_TARGET_DIR:-target/loom-mutants}
[[ $target == /* ]] || target=$root/$target
export CARGO_TARGET_DIR=$target

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

only=("$@")
# The copy is a whole workspace: every member the root manifest lists (on one line) must be
# in it.
mapfile -t members < <(grep -m1 '^members *= *\[.*\]' Cargo.toml | grep -o '"[^"]*"' | tr -d '"' | grep -vx '\.')
caught=()
missed=()

# mutant NAME TEST MODEL FILE SED_SCRIPT...
#
# Copies the crate, applies each sed script to FILE (each must change it), builds, and runs
# the model MODEL of loom-tests/tests/TEST.rs, which must fail with a panic.
mutant() {
    local name=$1 test=$2 model=$3 file=$4
    shift 4
    if ((${#only[@]})) && [[ " ${only[*]} " != *" $name "* ]]; then
        return
    fi
    local crate=$work/crate
    rm -rf "$crate"
    mkdir "$crate"
    cp -r Cargo.toml Cargo.lock README.md src benches "${members[@]}" "$crate/"
    local script
    for script in "$@"; do
        cp "$crate/$file" "$work/before"
        sed -i -e "$script" "$crate/$file"
        if cmp -s "$work/before" "$crate/$file"; then
            echo "mutation $name no longer applies to $file: $script" >&2
            exit 2
        fi
    done

    printf '\n=== %s\nmodel: loom-tests/tests/%s.rs, %s\n' "$name" "$test" "$model"
    diff -U1 "$root/$file" "$crate/$file" | tail -n +3 | grep -v '^@@' || true
    if ! (cd "$crate" && cargo test -q --release -p queueserver-loom-tests --test "$test" \
        --no-run >"$work/build.log" 2>&1); then
        cat "$work/build.log" >&2
        echo "mutation $name does not build" >&2
        exit 2
    fi
    local start=$SECONDS
    if (cd "$crate" && cargo test -q --release -p queueserver-loom-tests --test "$test" \
        -- --exact "$model" >"$work/run.log" 2>&1); then
        echo "NOT CAUGHT: the model passed ($((SECONDS - start)) s)"
        missed+=("$name")
    elif grep -q 'panicked at' "$work/run.log"; then
        echo "caught in $((SECONDS - start)) s; loom says:"
        # The first panic: where, and its message (a deadlock lists every thread).
        awk '/panicked at/ { p = 1 } /^(stack backtrace:|note: )/ { if (p) exit } p' \
            "$work/run.log" | cut -c1-400 | sed 's/^/    /'
        caught+=("$name")
    else
        cat "$work/run.log" >&2
        echo "mutation $name: the model failed without a panic" >&2
        exit 2
    fi
}

# 1. The publisher coalesces on its own: it notifies for its first publish that finds the
#    buffer taken and never again, as a publisher-side pending flag that nobody clears
#    would. A publish after the poller took the last one tells nobody, and the runner
#    parks with it pending.
mutant notify-once wakeup a_notified_runner_wakes_for_a_publish_after_it_took_the_last \
    src/publisher.rs \
    's/^        if !self.input.publish() {$/        if !self.input.publish() \&\& self.seq == 1 {/'

# 2. The per-connection quota is bumped with a load and a store instead of one fetch_add:
#    the poller's give-back in between is lost (the quota leaks) or counted twice.
mutant quota-load-store requests requesters_race_with_the_drain src/request.rs \
    's/let before = queued.fetch_add(1, Ordering::Relaxed);/let before = queued.load(Ordering::Relaxed);\n        queued.store(before + 1, Ordering::Relaxed);/'

# 3. The poller clears a pending flag with Relaxed instead of AcqRel: it consumes the
#    requester's `true` without synchronising with it, reads a stale request count of zero,
#    and leaves the request queued with no event pending.
mutant clear-relaxed wakeup a_request_racing_with_a_polling_poller_is_never_left_unflagged \
    src/signal.rs \
    's/self.request_pending.swap(false, Ordering::AcqRel);/self.request_pending.swap(false, Ordering::Relaxed);/'

# 4. The poller clears the request flag after draining the queue instead of before: a
#    request put during the drain finds the flag still set, does not notify, and the runner
#    parks with it queued.
mutant clear-after-drain wakeup a_notified_runner_wakes_for_every_request src/server.rs \
    '/pub fn process_requests/,/^    }$/{/^        self.signals.begin_requests();$/d}' \
    '/pub fn process_requests/,/^    }$/s/^                done.handled = self.take_batch();$/&\n                self.signals.begin_requests();/'

# 5. The poller sets and clears the subscribed bit with a load and a store instead of one
#    read-modify-write: a request counted in between is wiped from the demand word, and the
#    count wraps below zero when it is answered.
mutant subscribed-load-store demand demand_follows_requests_and_subscribers src/signal.rs \
    's/self.demand.fetch_or(SUBSCRIBED, Ordering::Relaxed);/let demand = self.demand.load(Ordering::Relaxed);\n            self.demand.store(demand | SUBSCRIBED, Ordering::Relaxed);/' \
    's/self.demand.fetch_and(!SUBSCRIBED, Ordering::Relaxed);/let demand = self.demand.load(Ordering::Relaxed);\n            self.demand.store(demand \& !SUBSCRIBED, Ordering::Relaxed);/'

# 6. The poller takes a batch out of the request count as soon as it has taken it off the
#    queue instead of once it is settled: `wants_update` (and `pending_requests`) read zero
#    while answers are still being given.
mutant uncount-before-answer demand demand_follows_requests_and_subscribers src/server.rs \
    '/^            self.signals.leave_requests(settled);$/d' \
    's/^        self.batch.requests.len()$/        self.signals.leave_requests(self.batch.requests.len());\n&/'

# 7. A requester checks for the close with a load before counting itself in: the poller
#    can close, find nothing pending and stop between the two, and the request is accepted
#    after the last drain.
mutant closed-check-before-count shutdown shutdown_races_with_requests src/signal.rs \
    's/let before = self.demand.fetch_add(ONE_REQUEST, Ordering::AcqRel);/let before = self.demand.load(Ordering::Acquire);\n        if before \& CLOSED == 0 {\n            self.demand.fetch_add(ONE_REQUEST, Ordering::AcqRel);\n        }/' \
    '/^            self.leave_requests(1);$/d'

# 8. The poller takes a connection for attached without checking the generation of its id:
#    a request of a removed connection goes to the next connection in the same slot instead
#    of being counted orphaned.
mutant no-generation-check shutdown removal_races_with_requests src/server.rs \
    's/^            \&\& self.generations\[index\] == id.generation();$/;/'

# 9. The publisher notifies when its publish replaced an untaken snapshot instead of when it
#    found the back buffer clean (the opposite of the rule): a publish after the poller took
#    the last one tells nobody, and the runner parks with it pending.
mutant raise-inverted wakeup a_notified_runner_wakes_for_a_publish_after_it_took_the_last \
    src/publisher.rs \
    's/if !self.input.publish() {/if self.input.publish() {/'

# 10. A requester checks the slot's tag with a load instead of a read-modify-write: the
#     poller's detaching swap no longer synchronises with it, so the poller can miss the
#     count of a request that got past the check, and give the slot's next connection the
#     counter that request is in.
mutant tag-check-by-load reuse a_reused_slot_gives_its_newcomer_an_empty_share src/request.rs \
    's/if slot.tag.fetch_add(0, Ordering::AcqRel) != id.generation() {/if slot.tag.load(Ordering::Acquire) != id.generation() {/'

# 11. One share counter per slot instead of one per generation parity: the requests the
#     former connection left queued count against the newcomer.
mutant one-share-counter reuse a_reused_slot_gives_its_newcomer_an_empty_share src/request.rs \
    's/\&self.queued\[(generation \& 1) as usize\]/\&self.queued[0]/'

# 12. Dropping the server leaves its request side open: requests are still accepted that
#     nobody will answer.
mutant drop-leaves-open drop dropping_the_server_closes_the_request_side_for_good src/server.rs \
    '/fn drop(&mut self) {/,/^    }$/{/self.signals.stop();/d}'

# 13. `wants_update` ignores the stopped bit: it stays true after the server is dropped.
mutant wants-update-ignores-stop drop dropping_the_server_closes_the_request_side_for_good \
    src/signal.rs \
    's/self.demand.load(Ordering::Relaxed) as isize > CLOSED as isize/self.demand.load(Ordering::Relaxed) \& !(CLOSED | STOPPED) != 0/'

# 14. A control call posts its command without waking the poller: a poller asleep until
#     the next notification never answers, and the caller waits for ever.
mutant control-without-wake control a_control_call_reaches_a_sleeping_poller src/runtime/runner.rs \
    '/fn call(&self, command/,/^    }$/{/self.poller.unpark();/d}'

# 15. The poller stops without closing its mailbox: a command posted after it has stopped
#     is never answered, and the caller waits for ever.
mutant mailbox-left-open control \
    a_control_call_racing_a_poller_that_stops_is_answered_and_loses_nothing src/runtime/runner.rs \
    '/^            mailbox.open = false;$/d'

# 16. A poller that panics stops without abandoning the requests it accepted: they are
#     left pending, and whoever waits for them is never told.
mutant give-up-without-abandoning shutdown a_poller_that_panics_gives_up_without_losing_a_request \
    src/runtime/runner.rs \
    's/^        if cause.is_some() {$/        if cause.is_some() \&\& false {/'

# 17. A poller that panics abandons the pending requests before closing the request side
#     (the close moved after): a request accepted in between is never settled.
mutant give-up-before-close shutdown a_poller_that_panics_gives_up_without_losing_a_request \
    src/runtime/runner.rs \
    '/^        server.close();$/d' \
    's/^        server.stop();$/        server.close();\n&/'

# 18. The relay's queue takes an answer without waking the worker side that waits for it:
#     a worker asleep through updates never hands the answer to its asker.
mutant relay-push-without-wake relay an_answer_wakes_a_worker_that_sleeps_through_updates \
    src/runtime/relay/mailbox.rs \
    's/let waker = state.pop_waiter(false);/let waker: Option<Waker> = None;/'

# 19. The relay's slot takes an update without waking the worker side that waits for one:
#     the worker sleeps with the newest snapshot in the slot.
mutant relay-offer-without-wake relay \
    the_worker_gets_its_answer_and_the_newest_snapshot_and_never_sleeps_on_work \
    src/runtime/relay/mailbox.rs \
    's/let waker = state.pop_waiter(true);/let waker: Option<Waker> = None;/'

# 20. A dropped server leaves the relay's worker side asleep: it never learns the end, and
#     its askers are never told.
mutant relay-detach-without-wake relay a_dropped_server_wakes_the_worker_after_what_it_queued \
    src/runtime/relay/mailbox.rs \
    '/pub(crate) fn detach(&self)/,/^    }$/{s/waiter.waker.wake();/drop(waiter);/}'

printf '\n%d mutation(s) caught' "${#caught[@]}"
((${#caught[@]})) && printf ': %s' "${caught[*]}"
printf '\n'
if ((${#missed[@]})); then
    echo "NOT CAUGHT: ${missed[*]}" >&2
    exit 1
fi

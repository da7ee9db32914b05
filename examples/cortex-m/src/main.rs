//! The `queueserver` core on a Cortex-M, as QEMU emulates it: a Cortex-M4F (`mps2-an386`,
//! target `thumbv7em-none-eabihf`) or a Cortex-M3 (`lm3s6965evb`, `thumbv7m-none-eabi`).
//!
//! - **SysTick is the computation.** Every 1 ms control period it computes the next
//!   [`State`] and publishes it with `put_update` (it owns the [`Publisher`]); for
//!   comparison it also writes and publishes the same `State` through a raw
//!   `triple_buffer`, as a firmware without the crate would.
//! - **PendSV is a requester.** SysTick pends it every third period; it puts bursts of
//!   requests for the probe connection, duplicates and unknown keys included, and now and
//!   then a flood larger than the probe's share of the queue.
//! - **The main loop is the poller.** It sleeps until [`FlagNotify`] says there is work,
//!   runs `process_updates` and `process_requests`, and puts the console's own requests.
//! - **The console writes over semihosting**; the probe only counts (see [`link`]).
//!
//! After [`TICKS`] periods the main loop stops SysTick, closes the server, drains the queue,
//! prints the statistics and the measured costs, checks them (see [`report`]), and exits
//! QEMU with success or failure. A panic or a fault exits with failure too.
//!
//! # How the halves get to their owners
//!
//! The crate allocates once, when the server is built (and the raw triple buffer once, when
//! it is made); the heap is then sealed and any later allocation or free fails the run
//! ([`heap`]). The [`Publisher`], the raw buffer's input and a [`Requester`] are parked in `Mutex<RefCell<Option<..>>>` statics before SysTick starts; each handler moves
//! its half out once, on its first run, into a handler-local `static mut`, which cortex-m-rt
//! hands to the handler as a plain `&mut` (the handler is not reentrant). From then on
//! `put_update` and `put_request` run without a critical section or a lock.
//!
//! # `unsafe`
//!
//! The crate has none. The firmware has a little, each with its reason: giving the heap its
//! memory, setting exception priorities, the global allocator, and the stopwatch's assembly
//! ([`cost`]).

#![no_std]
#![no_main]

mod board;
mod cost;
mod heap;
mod link;
// Before `plant`, whose `State` it derives `IDict` for.
#[macro_use]
mod state_idict;
mod plant;
mod report;

use core::cell::RefCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU32, Ordering};
use core::time::Duration;
use cortex_m::interrupt::{self, Mutex};
use cortex_m::peripheral::scb::SystemHandler;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SCB;
use cortex_m_rt::{entry, exception, ExceptionFrame};
use cortex_m_semihosting::{debug, hprintln};
use panic_semihosting as _;
use queueserver::idict::KeyError;
use queueserver::{Builder, Clock, Config, ConnectionId, FlagNotify, IDict, Processed};
use queueserver::{Publisher, QueueServer, Request, RequestError, Requester};

use cost::{measure, Series, Stopwatch};
use heap::CountingHeap;
use link::Link;
use plant::{State, StateKey, CHANNELS};

/// Control periods to run before the checks.
pub const TICKS: u32 = 2_000;
/// SysTick reload: a 1 ms period.
const RELOAD: u32 = board::SYSTICK_HZ / 1000 - 1;
/// Request queue capacity.
pub const Q: usize = 32;
/// Connection slots: the console and the probe.
pub const MAXC: usize = 2;
/// The heap: the server needs well under a kilobyte of it.
const HEAP_SIZE: usize = 4096;
/// Samples kept per measured cost.
pub const SAMPLES: usize = board::SAMPLES;

/// The console's requests, put from the main loop: a value every this many periods…
const CONSOLE_VALUE_EVERY: u32 = 10;
/// … and the whole snapshot every this many.
const CONSOLE_SNAPSHOT_EVERY: u32 = 250;
/// PendSV floods the queue every this many periods (a multiple of 3).
const FLOOD_EVERY: u32 = 300;
/// Every this many periods the main loop is busy elsewhere for [`BUSY_FOR`] periods and
/// does not poll: the snapshots published meanwhile are overwritten.
const BUSY_EVERY: u32 = 100;
/// How long the main loop stays away.
const BUSY_FOR: u32 = 3;
/// Requests in a flood: twice the probe's share.
const FLOOD: u8 = 2 * (Q / MAXC) as u8;

type Notifier = &'static FlagNotify;
/// The firmware's server: the poller's half.
pub type Server = QueueServer<State, Link, Notifier, TickClock, Q, MAXC>;
type StatePublisher = Publisher<State, Notifier>;
type StateRequester = Requester<StateKey, Notifier, Q, MAXC>;
/// The writing side of a raw `triple_buffer` of the same [`State`].
type RawInput = triple_buffer::Input<State>;

/// A name PendSV asks for that is no key of [`State`]: refused by the parse, never sent.
const UNKNOWN_NAME: &str = "ch16";

#[global_allocator]
static HEAP: CountingHeap = CountingHeap::new();

/// Set by `put_update` and `put_request` (coalesced); taken by the main loop.
static NOTIFY: FlagNotify = FlagNotify::new();

/// Control periods completed. Written by SysTick only.
static TICK: AtomicU32 = AtomicU32::new(0);
/// SysTick entries, to drop measurements that SysTick ran into. Written by SysTick only.
static SYSTICK_RUNS: AtomicU32 = AtomicU32::new(0);
/// Snapshots published, as the publisher counts them. Written by SysTick only.
static PUBLISHED: AtomicU32 = AtomicU32::new(0);

/// The computation's half, parked until SysTick's first run takes it.
static PUBLISHER: Mutex<RefCell<Option<StatePublisher>>> = Mutex::new(RefCell::new(None));
/// The raw triple buffer's input (the baseline `put_update` is compared with), parked the
/// same way.
static RAW_INPUT: Mutex<RefCell<Option<RawInput>>> = Mutex::new(RefCell::new(None));
/// PendSV's requester and the connection it asks for, parked until its first run.
static REQUESTER: Mutex<RefCell<Option<(StateRequester, ConnectionId)>>> =
    Mutex::new(RefCell::new(None));

/// What PendSV's `put_request` calls returned. Written by PendSV only.
pub static ISR_REQUESTS: Tally = Tally::new();

/// Outcomes of `put_request` calls from one context.
pub struct Tally {
    /// Accepted.
    pub accepted: AtomicU32,
    /// Refused because the connection had its share queued.
    pub over_quota: AtomicU32,
    /// Refused because the queue was full.
    pub full: AtomicU32,
    /// Refused for a reason this firmware never expects (unknown connection, closed).
    pub unexpected: AtomicU32,
    /// Names that are no key, refused by `parse_key` before any request was made.
    pub unknown_names: AtomicU32,
}

impl Tally {
    const fn new() -> Self {
        Self {
            accepted: AtomicU32::new(0),
            over_quota: AtomicU32::new(0),
            full: AtomicU32::new(0),
            unexpected: AtomicU32::new(0),
            unknown_names: AtomicU32::new(0),
        }
    }

    /// Counts one outcome (single writer: load and store).
    fn add(&self, result: &Result<(), RequestError<StateKey>>) {
        let counter = match result {
            Ok(()) => &self.accepted,
            Err(RequestError::OverQuota(_)) => &self.over_quota,
            Err(RequestError::Full(_)) => &self.full,
            Err(_) => &self.unexpected,
        };
        counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// Counts a name that is no key (single writer).
    fn count_unknown_name(&self) {
        let n = &self.unknown_names;
        n.store(n.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// Refused requests.
    pub fn rejected(&self) -> u32 {
        [&self.over_quota, &self.full, &self.unexpected]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

/// The measured costs, in instructions. Each is recorded by one context.
pub mod costs {
    use super::{Series, SAMPLES};

    /// A call doing one `nop`: the call overhead every figure below includes.
    pub static EMPTY_CALL: Series<SAMPLES> = Series::new();
    /// `Publisher::wants_update`.
    pub static WANTS_UPDATE: Series<SAMPLES> = Series::new();
    /// `Publisher::put_update` of a 64-byte [`State`](crate::plant::State).
    pub static PUT_UPDATE: Series<SAMPLES> = Series::new();
    /// The same `State` written into a raw `triple_buffer` and published: the
    /// baseline `put_update` is compared with.
    pub static RAW_PUBLISH: Series<SAMPLES> = Series::new();
    /// A plain copy of the same 64 bytes, for comparison: what a hand-written
    /// `copy_from` (`*self = *source`) compiles to.
    pub static PLAIN_COPY: Series<SAMPLES> = Series::new();
    /// The derived `IDict::copy_from` of the same 64 bytes, field by field.
    pub static DERIVED_COPY: Series<SAMPLES> = Series::new();
    /// `Requester::put_request`, from PendSV, accepted.
    pub static PUT_REQUEST: Series<SAMPLES> = Series::new();
    /// `Requester::put_request`, from PendSV, refused (the probe over its share).
    pub static PUT_REQUEST_REFUSED: Series<SAMPLES> = Series::new();
    /// `process_updates` taking a new snapshot and holding it back (update rate limit).
    pub static UPDATES_HELD: Series<SAMPLES> = Series::new();
    /// `process_updates` delivering to the console, its semihosting write included.
    pub static UPDATES_DELIVERED: Series<SAMPLES> = Series::new();
    /// `process_requests` answering a batch.
    pub static REQUESTS_BATCH: Series<SAMPLES> = Series::new();
    /// The sizes of those batches (requests, not instructions).
    pub static BATCH_SIZE: Series<SAMPLES> = Series::new();
    /// Those batches' costs divided by their sizes.
    pub static PER_REQUEST: Series<SAMPLES> = Series::new();
    /// `process_requests` held back by the request rate limit.
    pub static REQUESTS_HELD: Series<SAMPLES> = Series::new();
}

static SYSTICK_WATCH: Stopwatch = Stopwatch::new();
static PENDSV_WATCH: Stopwatch = Stopwatch::new();
static MAIN_WATCH: Stopwatch = Stopwatch::new();

/// The poller's clock: control periods completed, 1 ms each.
pub struct TickClock;

impl Clock for TickClock {
    fn now(&self) -> Duration {
        Duration::from_millis(u64::from(TICK.load(Ordering::Acquire)))
    }
}

#[entry]
fn main() -> ! {
    // cortex-m-rt gives `main` its `static mut` as a `&'static mut`: the memory is ours alone.
    static mut HEAP_MEMORY: [MaybeUninit<u8>; HEAP_SIZE] = [MaybeUninit::uninit(); HEAP_SIZE];
    // SAFETY: called once, before anything allocates, with memory nothing else uses.
    unsafe { HEAP.init(HEAP_MEMORY.as_mut_ptr() as usize, HEAP_SIZE) };

    let mut core = cortex_m::Peripherals::take().expect("the core peripherals, taken once");

    // Start-up: the only allocations of the program.
    let config = Config::new()
        .with_min_update_interval(Duration::from_millis(100))
        .with_min_request_interval(Duration::from_millis(5));
    let (publisher, mut server) = Builder::new(State::INITIAL)
        .notify(&NOTIFY)
        .clock(TickClock)
        .config(config)
        .capacity::<Q, MAXC>()
        .build_with([Link::console(), Link::probe()])
        .expect("a valid configuration");
    let mut ids = server.connection_ids();
    let (Some(console), Some(probe)) = (ids.next(), ids.next()) else {
        panic!("both connections attached");
    };
    drop(ids);
    let requester = server.requester();
    let (raw_input, mut raw_output) = triple_buffer::triple_buffer(&State::INITIAL);
    interrupt::free(|cs| {
        PUBLISHER.borrow(cs).replace(Some(publisher));
        RAW_INPUT.borrow(cs).replace(Some(raw_input));
        REQUESTER.borrow(cs).replace(Some((requester, probe)));
    });
    let at_start = HEAP.seal();

    hprintln!(
        "queueserver on a {}, opt-level {}: {} periods of 1 ms",
        board::NAME,
        env!("FIRMWARE_OPT_LEVEL"),
        TICKS
    );

    // The stopwatch needs the counter running; the interrupt comes after its self-test.
    core.SYST.set_clock_source(SystClkSource::Core);
    core.SYST.set_reload(RELOAD);
    core.SYST.clear_current();
    core.SYST.enable_counter();
    let stopwatch = cost::self_test();

    // SAFETY: priorities change before either exception can run, so no critical section
    // relies on them yet. SysTick (the computation) pre-empts PendSV (a requester).
    unsafe {
        core.SCB.set_priority(SystemHandler::SysTick, 0x00);
        core.SCB.set_priority(SystemHandler::PendSV, 0xC0);
    }
    core.SYST.enable_interrupt();

    let main_requests = Tally::new();
    let mut seen = 0;
    let mut retry_at: Option<Duration> = None;
    loop {
        // Sleep unless there is work. Interrupts are masked from the check to the WFI, so a
        // notification cannot slip in between; WFI still wakes on a pending interrupt, which
        // runs as soon as the mask is lifted.
        interrupt::free(|_| {
            if !NOTIFY.is_set() {
                cortex_m::asm::wfi();
            }
        });
        let tick = TICK.load(Ordering::Acquire);
        while seen < tick {
            seen += 1;
            if seen.is_multiple_of(CONSOLE_VALUE_EVERY) {
                main_requests.add(&server.put_request(Request::key(console, StateKey::Step)));
            }
            if seen.is_multiple_of(CONSOLE_SNAPSHOT_EVERY) {
                main_requests.add(&server.put_request(Request::snapshot(console)));
            }
        }
        let due = retry_at.is_some_and(|at| TickClock.now() >= at);
        if NOTIFY.take() || due {
            let retry_after = poll(&mut server);
            retry_at = retry_after.map(|after| TickClock.now() + after);
            // The raw buffer is taken when the server's is, so that its publishes find
            // their buffer taken or not as `put_update`'s do.
            raw_output.update();
        }
        if tick >= TICKS {
            break;
        }
        if tick % BUSY_EVERY == BUSY_EVERY / 2 {
            while TICK.load(Ordering::Acquire) < tick + BUSY_FOR {
                cortex_m::asm::wfi();
            }
        }
    }
    core.SYST.disable_interrupt();

    // Shut down: no request may be lost. Closing lifts the rate limits; what is queued is
    // answered, and the newest snapshot reaches the console.
    server.close();
    for _ in 0..=Q {
        if server.pending_requests() == 0 {
            break;
        }
        server.process_requests();
    }
    server.process_updates();
    raw_output.update();

    let passed = report::report(&report::Run {
        server: &server,
        console,
        probe,
        at_start,
        after: HEAP.counts(),
        stopwatch,
        published: PUBLISHED.load(Ordering::Acquire),
        raw_last: *raw_output.output_buffer(),
        main_requests: &main_requests,
    });
    debug::exit(if passed {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    loop {
        cortex_m::asm::wfi();
    }
}

/// One poller pass, measured: `process_updates` then `process_requests`. Returns when to
/// retry held-back requests.
fn poll(server: &mut Server) -> Option<Duration> {
    let received = server.stats().updates_received;
    let runs = SYSTICK_RUNS.load(Ordering::Relaxed);
    let (updates, instructions) = measure!(MAIN_WATCH, process_updates(server));
    if updates.handled > 0 {
        keep(&costs::UPDATES_DELIVERED, instructions, runs);
    } else if server.stats().updates_received > received {
        keep(&costs::UPDATES_HELD, instructions, runs);
    }

    let pending = server.pending_requests();
    let runs = SYSTICK_RUNS.load(Ordering::Relaxed);
    let (requests, instructions) = measure!(MAIN_WATCH, process_requests(server));
    if requests.handled > 0 {
        if keep(&costs::REQUESTS_BATCH, instructions, runs) {
            let size = requests.handled as u32;
            costs::BATCH_SIZE.record(size);
            costs::PER_REQUEST.record(instructions / size);
        }
    } else if pending > 0 && requests.retry_after.is_some() {
        keep(&costs::REQUESTS_HELD, instructions, runs);
    }
    requests.retry_after
}

/// Records a measurement unless SysTick ran during it (`runs` is its count from before).
fn keep(series: &Series<SAMPLES>, instructions: u32, runs: u32) -> bool {
    let clean = SYSTICK_RUNS.load(Ordering::Relaxed) == runs;
    if clean {
        series.record(instructions);
    } else {
        series.drop_one();
    }
    clean
}

// The measured calls. Each is a real call, so that a measurement is exactly the call: the
// argument moves, `bl`, the function, its return.

/// A call that does nothing but one `nop` (which keeps it from being optimised away).
#[inline(never)]
fn empty_call(_publisher: &mut StatePublisher) {
    cortex_m::asm::nop();
}

#[inline(never)]
fn wants_update(publisher: &StatePublisher) -> bool {
    publisher.wants_update()
}

#[inline(never)]
fn put_update(publisher: &mut StatePublisher, state: &State) {
    publisher.put_update(state);
}

/// What a firmware without the crate would write: the state copied into the raw triple
/// buffer's back buffer, then published with its one atomic swap.
#[inline(never)]
fn raw_publish(input: &mut RawInput, state: &State) {
    *input.input_buffer_mut() = *state;
    input.publish();
}

#[inline(never)]
fn plain_copy(to: &mut State, from: &State) {
    *to = *from;
}

#[inline(never)]
fn derived_copy(to: &mut State, from: &State) {
    to.copy_from(from);
}

#[inline(never)]
fn put_request(
    requester: &StateRequester,
    request: Request<StateKey>,
) -> Result<(), RequestError<StateKey>> {
    requester.put_request(request)
}

#[inline(never)]
fn process_updates(server: &mut Server) -> Processed {
    server.process_updates()
}

#[inline(never)]
fn process_requests(server: &mut Server) -> Processed {
    server.process_requests()
}

/// The computation: one control period.
#[exception]
fn SysTick() {
    // Handler-local statics: cortex-m-rt hands them to this (non-reentrant) handler as `&mut`.
    static mut PUBLISHER_HERE: Option<StatePublisher> = None;
    static mut RAW_HERE: Option<RawInput> = None;
    static mut STATE: State = State::INITIAL;
    static mut COPY: State = State::INITIAL;

    SYSTICK_RUNS.store(SYSTICK_RUNS.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    let step = TICK.load(Ordering::Relaxed) + 1;
    if step > TICKS {
        return;
    }
    let publisher = PUBLISHER_HERE.get_or_insert_with(|| {
        interrupt::free(|cs| PUBLISHER.borrow(cs).take())
            .expect("the publisher is parked before SysTick starts")
    });
    let raw = RAW_HERE.get_or_insert_with(|| {
        interrupt::free(|cs| RAW_INPUT.borrow(cs).take())
            .expect("the raw input is parked before SysTick starts")
    });

    *STATE = State::at(step);
    let ((), instructions) = measure!(SYSTICK_WATCH, empty_call(publisher));
    costs::EMPTY_CALL.record(instructions);
    let (wants, instructions) = measure!(SYSTICK_WATCH, wants_update(publisher));
    costs::WANTS_UPDATE.record(instructions);
    if wants {
        let ((), instructions) = measure!(SYSTICK_WATCH, put_update(publisher, STATE));
        costs::PUT_UPDATE.record(instructions);
    }
    let ((), instructions) = measure!(SYSTICK_WATCH, raw_publish(raw, STATE));
    costs::RAW_PUBLISH.record(instructions);
    let ((), instructions) = measure!(SYSTICK_WATCH, plain_copy(COPY, STATE));
    costs::PLAIN_COPY.record(instructions);
    let ((), instructions) = measure!(SYSTICK_WATCH, derived_copy(COPY, STATE));
    costs::DERIVED_COPY.record(instructions);
    // The copy is never read: keep the compiler from dropping it.
    core::hint::black_box(&*COPY);
    PUBLISHED.store(publisher.published() as u32, Ordering::Relaxed);

    if step.is_multiple_of(3) {
        SCB::set_pendsv();
    }
    TICK.store(step, Ordering::Release);
}

/// A requester in another interrupt: bursts for the probe, with duplicates and a name that
/// is no key, and now and then a flood beyond the probe's share.
#[exception]
fn PendSV() {
    static mut REQUESTER_HERE: Option<(StateRequester, ConnectionId)> = None;

    let (requester, probe) = REQUESTER_HERE.get_or_insert_with(|| {
        interrupt::free(|cs| REQUESTER.borrow(cs).take())
            .expect("the requester is parked before SysTick starts")
    });
    let step = TICK.load(Ordering::Acquire);
    // As a requester that gets names from outside would: the parse refuses a name that is no
    // key with a typed error, so no request is made for it.
    match State::INITIAL.parse_key(UNKNOWN_NAME) {
        Err(KeyError::Unknown) => ISR_REQUESTS.count_unknown_name(),
        _ => ISR_REQUESTS.unexpected.store(u32::MAX, Ordering::Relaxed),
    }
    let channel = (step / 3 % CHANNELS as u32) as usize + 1;
    let key = StateKey::ALL[channel];
    let next = |after: usize| StateKey::ALL[after % CHANNELS + 1];
    let burst = [key, key, next(channel), next(channel + 1)];
    let flood = if step.is_multiple_of(FLOOD_EVERY) {
        FLOOD
    } else {
        0
    };
    let all = StateKey::ALL.len();
    let keys = burst
        .into_iter()
        .chain((0..usize::from(flood)).map(|i| StateKey::ALL[i % all]));
    for key in keys {
        let runs = SYSTICK_RUNS.load(Ordering::Relaxed);
        let (result, instructions) = measure!(
            PENDSV_WATCH,
            put_request(requester, Request::key(*probe, key))
        );
        let series = match result {
            Ok(()) => &costs::PUT_REQUEST,
            Err(_) => &costs::PUT_REQUEST_REFUSED,
        };
        keep(series, instructions, runs);
        ISR_REQUESTS.add(&result);
    }
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    hprintln!("hard fault: {:?}", frame);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}

#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    hprintln!("unexpected exception or interrupt {}", irqn);
    debug::exit(debug::EXIT_FAILURE);
}

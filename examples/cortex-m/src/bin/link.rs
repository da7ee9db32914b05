//! The `queueserver` core on a Cortex-M4F (`mps2-an386`), watched and queried from the
//! host over its UART with `queueserver-link`.
//!
//! - **SysTick is the computation.** Every control period it publishes [`State::at`] the
//!   step with `put_update` (measured, as in the main firmware), so any snapshot or value
//!   the host receives can be checked against the step its sequence number names.
//! - **UART0's receive interrupt is the link's receiver.** It feeds each byte to
//!   [`LinkRx`], which puts a request for each get the host sends.
//! - **The main loop is the poller and the transmitter.** It runs `poll`, lets the
//!   [`Link`] move waiting frames into its TX ring, and hands the ring's bytes to the
//!   UART while it takes them.
//!
//! QEMU connects UART0 to a TCP socket (`-chardev socket,...,server=on,wait=off -serial
//! chardev:...`): the host side connects there, as it would to a USB-serial adapter.
//! The firmware runs until QEMU is stopped. After [`REPORT_AT`] periods it prints the
//! costs it measured and its checks over semihosting, then `link: checks passed` or
//! exits QEMU with failure; an allocation or free after start fails it at once, whenever
//! it happens.
//!
//! Build-time settings (environment variables read by `cargo build`):
//! `LINK_UPDATE_MS` (default 10: at most 100 updates a second; 0: no limit) and
//! `LINK_TICK_US` (the control period, default 1000).

#![no_std]
#![no_main]

#[path = "../board.rs"]
#[allow(dead_code)]
mod board;
#[path = "../cost.rs"]
#[allow(dead_code)]
mod cost;
#[path = "../heap.rs"]
mod heap;
#[path = "../uart.rs"]
mod uart;

/// `plant.rs` declares `State` through this: here with `#[derive(IDict)]`.
macro_rules! state_derives {
    ($state:item) => {
        #[derive(queueserver::IDict)]
        $state
    };
}

#[path = "../plant.rs"]
#[allow(dead_code)]
mod plant;

use core::cell::RefCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use core::time::Duration;
use cortex_m::interrupt::{self, Mutex};
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::NVIC;
use cortex_m_rt::{entry, exception, ExceptionFrame};
use cortex_m_semihosting::{debug, hprintln};
use panic_semihosting as _;
use queueserver::{Builder, Clock, Config, Connection, FlagNotify, Processed, Publisher};
use queueserver::{QueueServer, Requester, Snapshot};
use queueserver_link::device::{LinkRx, Parts, Received};
use queueserver_link::{Link, Storage};

use cost::{measure, Series, Summary, INSTRUCTIONS_PER_COUNT};
use heap::CountingHeap;
use plant::{State, StateKey};

/// Parses a decimal number at compile time (a build-time setting); `default` if unset.
const fn setting(text: Option<&str>, default: u32) -> u32 {
    let Some(text) = text else { return default };
    let bytes = text.as_bytes();
    let mut value = 0u32;
    let mut i = 0;
    while i < bytes.len() {
        assert!(
            bytes[i].is_ascii_digit(),
            "a build setting is a decimal number"
        );
        value = value * 10 + (bytes[i] - b'0') as u32;
        i += 1;
    }
    value
}

/// The control period, in microseconds.
const TICK_US: u32 = setting(option_env!("LINK_TICK_US"), 1000);
/// The server's `min_update_interval`, in milliseconds (0: none).
const UPDATE_MS: u32 = setting(option_env!("LINK_UPDATE_MS"), 10);
/// SysTick reload for one control period.
const RELOAD: u32 = board::SYSTICK_HZ / 1_000_000 * TICK_US - 1;
/// Control periods before the report.
pub const REPORT_AT: u32 = 3_000;
/// Request queue capacity.
const Q: usize = 32;
/// Connection slots: the link.
const MAXC: usize = 1;
/// Keys of the State: `step`, `ch1` … `ch15`.
const K: usize = 16;
/// The link's TX ring, in bytes.
const TX: usize = 1024;
/// The link's frame buffer: a snapshot frame of the State is 73 bytes at most.
const F: usize = 96;
/// The link's answer buffer.
const A: usize = 512;
/// The heap: the server needs about 3 KiB with these settings (its connection slot holds
/// the link, whose answer buffer is 512 bytes).
const HEAP_SIZE: usize = 8192;
/// Samples kept per measured cost.
const SAMPLES: usize = 1024;

type Notifier = &'static FlagNotify;
type StateLink = Link<'static, State, K, F, A>;
type Server = QueueServer<State, StateLink, Notifier, TickClock, Q, MAXC>;
type StatePublisher = Publisher<State, Notifier>;
type StateRx = LinkRx<'static, State, Requester<StateKey, Notifier, Q, MAXC>, K>;

#[global_allocator]
static HEAP: CountingHeap = CountingHeap::new();

/// Set by `put_update` and `put_request` (coalesced); taken by the main loop.
static NOTIFY: FlagNotify = FlagNotify::new();
/// Control periods completed. Written by SysTick only.
static TICK: AtomicU32 = AtomicU32::new(0);
/// SysTick entries, to drop measurements that SysTick ran into.
static SYSTICK_RUNS: AtomicU32 = AtomicU32::new(0);
/// A frame from the host was handled: the link may have an error or status to send.
static RECEIVED: AtomicBool = AtomicBool::new(false);

/// The computation's half, parked until SysTick's first run takes it.
static PUBLISHER: Mutex<RefCell<Option<StatePublisher>>> = Mutex::new(RefCell::new(None));
/// The receiver: the receive interrupt takes it for each run.
static RECEIVER: Mutex<RefCell<Option<StateRx>>> = Mutex::new(RefCell::new(None));

/// The measured costs, in instructions; each recorded by one context.
mod costs {
    use super::{Series, SAMPLES};

    /// `Publisher::put_update` of the 64-byte State (SysTick).
    pub static PUT_UPDATE: Series<SAMPLES> = Series::new();
    /// The link's `on_update`: one snapshot frame encoded (postcard, CRC, COBS) into the
    /// TX ring, measured at start on a link of its own.
    pub static FRAME_ENCODE: Series<SAMPLES> = Series::new();
    /// Of a snapshot frame's cost: the CRC-16 of its 67 bytes.
    pub static FRAME_CRC: Series<SAMPLES> = Series::new();
    /// Of a snapshot frame's cost: COBS of its 67 bytes (without the TX ring).
    pub static FRAME_COBS: Series<SAMPLES> = Series::new();
    /// `process_updates` delivering a snapshot to the link (the frame included).
    pub static UPDATE_DELIVERED: Series<SAMPLES> = Series::new();
    /// `LinkRx::receive` of the byte that completes a get frame: COBS, CRC, the name's
    /// lookup, `put_request` (UART interrupt).
    pub static GET_RECEIVED: Series<SAMPLES> = Series::new();
    /// `process_requests` answering (the link's answer frame included).
    pub static ANSWERED: Series<SAMPLES> = Series::new();
    /// One byte from the TX ring to the UART (`next_byte` and the register write).
    pub static TX_BYTE: Series<SAMPLES> = Series::new();
}

static SYSTICK_WATCH: cost::Stopwatch = cost::Stopwatch::new();
static MAIN_WATCH: cost::Stopwatch = cost::Stopwatch::new();
static RX_WATCH: cost::Stopwatch = cost::Stopwatch::new();

/// The poller's clock: control periods completed.
pub struct TickClock;

impl Clock for TickClock {
    fn now(&self) -> Duration {
        Duration::from_micros(u64::from(TICK.load(Ordering::Acquire)) * u64::from(TICK_US))
    }
}

#[entry]
fn main() -> ! {
    // cortex-m-rt gives `main` its `static mut`s as `&'static mut`: the memory is ours alone.
    static mut HEAP_MEMORY: [MaybeUninit<u8>; HEAP_SIZE] = [MaybeUninit::uninit(); HEAP_SIZE];
    static mut LINK: Storage<State, K, TX> = Storage::new();
    static mut BENCH_LINK: Storage<State, K, TX> = Storage::new();
    // SAFETY: called once, before anything allocates, with memory nothing else uses.
    unsafe { HEAP.init(HEAP_MEMORY.as_mut_ptr() as usize, HEAP_SIZE) };

    let mut core = cortex_m::Peripherals::take().expect("the core peripherals, taken once");
    if !uart::ON_THIS_BOARD {
        hprintln!("link: runs on mps2-an386 (thumbv7em-none-eabihf) only: its UART is there");
        debug::exit(debug::EXIT_FAILURE);
    }

    // Start-up: the only allocations of the program.
    let config = match UPDATE_MS {
        0 => Config::new(),
        ms => Config::new().with_min_update_interval(Duration::from_millis(u64::from(ms))),
    };
    let Ok(Parts { link, mut tx, rx }) = LINK.split::<F, A>(&State::INITIAL) else {
        panic!("the State fits the link");
    };
    let Ok((publisher, mut server)) = Builder::new(State::INITIAL)
        .notify(&NOTIFY)
        .clock(TickClock)
        .config(config)
        .capacity::<Q, MAXC>()
        .build::<StateLink>()
    else {
        panic!("a valid configuration");
    };
    let Ok(id) = server.add_connection(link) else {
        panic!("a free slot");
    };
    let rx = rx.attach(server.requester(), id);
    interrupt::free(|cs| {
        PUBLISHER.borrow(cs).replace(Some(publisher));
        RECEIVER.borrow(cs).replace(Some(rx));
    });
    let at_start = HEAP.seal();

    hprintln!(
        "link: queueserver-link on a {}, opt-level {}: control period {} us, updates every {} ms",
        board::NAME,
        env!("FIRMWARE_OPT_LEVEL"),
        TICK_US,
        UPDATE_MS
    );

    core.SYST.set_clock_source(SystClkSource::Core);
    core.SYST.set_reload(RELOAD);
    core.SYST.clear_current();
    core.SYST.enable_counter();
    let stopwatch = cost::self_test();
    measure_frames(BENCH_LINK, &server);

    // SAFETY: priorities change before either interrupt can run. SysTick (the
    // computation) pre-empts the UART's receive interrupt.
    unsafe {
        core.SCB
            .set_priority(cortex_m::peripheral::scb::SystemHandler::SysTick, 0x00);
        core.NVIC.set_priority(uart::RxInterrupt, 0x80);
    }
    uart::init();
    // SAFETY: the receive interrupt's handler (`DefaultHandler`) is ready, and its
    // receiver is parked.
    unsafe { NVIC::unmask(uart::RxInterrupt) };
    core.SYST.enable_interrupt();

    let mut retry_at: Option<Duration> = None;
    let mut reported = false;
    loop {
        // Sleep unless there is work; any interrupt (SysTick every period, a received
        // byte) wakes it.
        interrupt::free(|_| {
            if !NOTIFY.is_set() && !RECEIVED.load(Ordering::Relaxed) {
                cortex_m::asm::wfi();
            }
        });
        let due = retry_at.is_some_and(|at| TickClock.now() >= at);
        if NOTIFY.take() || due {
            retry_at = poll(&mut server).map(|after| TickClock.now() + after);
        }
        RECEIVED.store(false, Ordering::Relaxed);
        let link = server.connection_mut(id).expect("the link is attached");
        if tx.is_empty() && link.has_waiting() {
            link.flush();
        }
        // The UART takes bytes while it can; QEMU hands each to the socket at once.
        while uart::can_send() {
            let runs = SYSTICK_RUNS.load(Ordering::Relaxed);
            let (sent, instructions) = measure!(MAIN_WATCH, send_byte(&mut tx));
            if !sent {
                break;
            }
            keep(&costs::TX_BYTE, instructions, runs);
        }
        // Checked on every pass, not only in the report: the host may ask at any time.
        if HEAP.counts().late != 0 {
            hprintln!("  FAIL  an allocation or free after start");
            debug::exit(debug::EXIT_FAILURE);
        }
        if !reported && TICK.load(Ordering::Acquire) >= REPORT_AT {
            reported = true;
            let link = server.connection(id).expect("the link is attached");
            if !report(&server, link.stats(), at_start, stopwatch) {
                debug::exit(debug::EXIT_FAILURE);
            }
        }
    }
}

/// Measures the link's `on_update` on a link of its own (its frames go nowhere).
fn measure_frames(storage: &'static mut Storage<State, K, TX>, server: &Server) {
    let Ok(Parts {
        mut link, mut tx, ..
    }) = storage.split::<F, A>(&State::INITIAL)
    else {
        panic!("the State fits the link");
    };
    // The schema goes first.
    link.flush();
    while tx.next_byte().is_some() {}
    let snapshot = server.snapshot();
    for _ in 0..256 {
        let ((), instructions) = measure!(MAIN_WATCH, encode_frame(&mut link, snapshot));
        costs::FRAME_ENCODE.record(instructions);
        while tx.next_byte().is_some() {}
    }
    // Two of its parts, on a frame of the same length.
    let frame = core::hint::black_box([0x5Au8; 67]);
    for _ in 0..256 {
        let (_, instructions) = measure!(
            MAIN_WATCH,
            core::hint::black_box(crc(core::hint::black_box(&frame)))
        );
        costs::FRAME_CRC.record(instructions);
        let (_, instructions) = measure!(
            MAIN_WATCH,
            core::hint::black_box(cobs(core::hint::black_box(&frame)))
        );
        costs::FRAME_COBS.record(instructions);
    }
}

#[inline(never)]
fn crc(frame: &[u8]) -> u16 {
    queueserver_link::wire::crc16(frame)
}

/// COBS-encodes `frame` into nothing but a checksum of its bytes: the encoding alone,
/// without the TX ring.
#[inline(never)]
fn cobs(frame: &[u8]) -> u32 {
    let mut sum = 0u32;
    queueserver_link::wire::cobs_encode(frame, |byte| sum = sum.wrapping_add(u32::from(byte)));
    sum
}

#[inline(never)]
fn encode_frame(link: &mut StateLink, snapshot: &Snapshot<State>) {
    // `on_update` never fails.
    let _ = link.on_update(snapshot);
}

#[inline(never)]
fn send_byte(tx: &mut queueserver_link::LinkTx<'static, K>) -> bool {
    match tx.next_byte() {
        Some(byte) => uart::try_send(byte),
        None => false,
    }
}

#[inline(never)]
fn put_update(publisher: &mut StatePublisher, state: &State) {
    publisher.put_update(state);
}

#[inline(never)]
fn process_updates(server: &mut Server) -> Processed {
    server.process_updates()
}

#[inline(never)]
fn process_requests(server: &mut Server) -> Processed {
    server.process_requests()
}

#[inline(never)]
fn receive(rx: &mut StateRx, byte: u8) -> Received {
    rx.receive(byte)
}

/// One poller pass, measured. Returns when to retry held-back requests.
fn poll(server: &mut Server) -> Option<Duration> {
    let runs = SYSTICK_RUNS.load(Ordering::Relaxed);
    let (updates, instructions) = measure!(MAIN_WATCH, process_updates(server));
    if updates.handled > 0 {
        keep(&costs::UPDATE_DELIVERED, instructions, runs);
    }
    let runs = SYSTICK_RUNS.load(Ordering::Relaxed);
    let (requests, instructions) = measure!(MAIN_WATCH, process_requests(server));
    if requests.handled > 0 {
        keep(&costs::ANSWERED, instructions, runs);
    }
    requests.retry_after
}

/// Records a measurement unless SysTick ran during it (`runs` is its count from before).
fn keep(series: &Series<SAMPLES>, instructions: u32, runs: u32) {
    if SYSTICK_RUNS.load(Ordering::Relaxed) == runs {
        series.record(instructions);
    } else {
        series.drop_one();
    }
}

fn print_summary(name: &str, s: &Summary) {
    hprintln!(
        "  {:<42} {:>5} calls  min {:>5}  median {:>5}  max {:>5}",
        name,
        s.count,
        s.min,
        s.median,
        s.max
    );
}

/// Prints the costs and the checks; returns whether every check passed.
fn report(
    server: &Server,
    link: queueserver_link::LinkStats,
    at_start: heap::HeapCounts,
    stopwatch: Result<usize, (u32, u32)>,
) -> bool {
    hprintln!(
        "\nlink: costs in instructions (1 SysTick count = {} instructions); each includes the call",
        INSTRUCTIONS_PER_COUNT
    );
    let series: [(&str, &Series<SAMPLES>); 8] = [
        ("put_update (64-byte State)", &costs::PUT_UPDATE),
        ("link on_update: one snapshot frame", &costs::FRAME_ENCODE),
        ("  of which CRC-16 of 67 bytes", &costs::FRAME_CRC),
        ("  of which COBS of 67 bytes (no ring)", &costs::FRAME_COBS),
        (
            "process_updates, delivered to the link",
            &costs::UPDATE_DELIVERED,
        ),
        (
            "LinkRx::receive, a get frame completed",
            &costs::GET_RECEIVED,
        ),
        ("process_requests, answered by the link", &costs::ANSWERED),
        ("one byte from the TX ring to the UART", &costs::TX_BYTE),
    ];
    for (name, series) in series {
        match series.summary() {
            Some(s) => print_summary(name, &s),
            None => hprintln!("  {:<42} no sample", name),
        }
    }
    hprintln!(
        "link: sizes (bytes): Storage {} (static: TX ring {}, keys, notices, counters), Link {} \
         (in the server's connection slot: frame buffers 2 x {}, answer buffer {}), LinkRx {}, LinkTx {}",
        core::mem::size_of::<Storage<State, K, TX>>(),
        TX,
        core::mem::size_of::<StateLink>(),
        F,
        A,
        core::mem::size_of::<StateRx>(),
        core::mem::size_of::<queueserver_link::LinkTx<'static, K>>()
    );
    hprintln!("link: stats {:?}", link);
    hprintln!("link: server {:?}", server.stats());
    let after = HEAP.counts();
    let mut passed = true;
    let mut check = |what: &str, ok: bool| {
        hprintln!("  {}  {}", if ok { "ok  " } else { "FAIL" }, what);
        passed &= ok;
    };
    hprintln!("\nlink: checks");
    match stopwatch {
        Ok(runs) => check("stopwatch exact on its runs of nops", runs > 0),
        Err((expected, measured)) => hprintln!(
            "  WARN  stopwatch: {} nops measured as {}: the costs above are approximate",
            expected,
            measured
        ),
    }
    check(
        "no allocation or free after start",
        after.late == 0 && after.allocations == at_start.allocations,
    );
    check(
        "every control period published",
        costs::PUT_UPDATE.summary().is_some(),
    );
    check("snapshot frames encoded", link.updates_sent > 0);
    check("no frame failed to encode", link.frames_failed == 0);
    check(
        "no connection failed",
        server.stats().connections_failed == 0,
    );
    if passed {
        hprintln!("link: checks passed");
    }
    passed
}

/// The computation: one control period.
#[exception]
fn SysTick() {
    static mut PUBLISHER_HERE: Option<StatePublisher> = None;
    static mut STATE: State = State::INITIAL;

    SYSTICK_RUNS.store(SYSTICK_RUNS.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    let step = TICK.load(Ordering::Relaxed) + 1;
    let publisher = PUBLISHER_HERE.get_or_insert_with(|| {
        interrupt::free(|cs| PUBLISHER.borrow(cs).take())
            .expect("the publisher is parked before SysTick starts")
    });
    *STATE = State::at(step);
    if publisher.wants_update() {
        let ((), instructions) = measure!(SYSTICK_WATCH, put_update(publisher, STATE));
        costs::PUT_UPDATE.record(instructions);
    }
    TICK.store(step, Ordering::Release);
}

/// UART0's receive interrupt (IRQ 0); any other interrupt fails the run.
#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    if irqn != uart::RX_IRQ as i16 {
        hprintln!("unexpected exception or interrupt {}", irqn);
        debug::exit(debug::EXIT_FAILURE);
        return;
    }
    // cortex-m-rt gives `DefaultHandler` no handler-local `&mut` statics: the receiver is
    // taken out of its cell for the run (two short critical sections), so that SysTick
    // is never masked while a frame is handled.
    let Some(mut rx) = interrupt::free(|cs| RECEIVER.borrow(cs).take()) else {
        return;
    };
    while let Some(byte) = uart::try_receive() {
        let runs = SYSTICK_RUNS.load(Ordering::Relaxed);
        let (received, instructions) = measure!(RX_WATCH, receive(&mut rx, byte));
        if received == Received::Frame {
            keep(&costs::GET_RECEIVED, instructions, runs);
            RECEIVED.store(true, Ordering::Relaxed);
        }
    }
    interrupt::free(|cs| RECEIVER.borrow(cs).replace(Some(rx)));
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    hprintln!("hard fault: {:?}", frame);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}

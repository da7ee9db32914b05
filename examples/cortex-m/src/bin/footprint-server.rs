//! Footprint: `footprint-baseline` with the server in between.
//!
//! SysTick publishes the same [`State`] with `put_update`; the main loop polls, and asks for
//! a value now and then with `put_request`; a connection prints over semihosting. The crate
//! needs `alloc` once, so this program has a heap. See `footprint.sh`.

#![no_std]
#![no_main]

#[path = "../board.rs"]
#[allow(dead_code)]
mod board;
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
use core::sync::atomic::{AtomicU32, Ordering};
use cortex_m::interrupt::{self, Mutex};
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{entry, exception};
use cortex_m_semihosting::{debug, hprintln};
use embedded_alloc::LlffHeap;
use panic_semihosting as _;
use plant::{State, StateKey, StateValue};
use queueserver::{Builder, Connection, ConnectionError, FlagNotify, Publisher, Request};
use queueserver::{Response, Snapshot};

/// Periods to run.
const TICKS: u32 = 300;
/// The server needs about 1.4 KiB of heap with these settings.
const HEAP_SIZE: usize = 2048;

type StatePublisher = Publisher<State, &'static FlagNotify>;

#[global_allocator]
static HEAP: LlffHeap = LlffHeap::empty();
static NOTIFY: FlagNotify = FlagNotify::new();
static PUBLISHER: Mutex<RefCell<Option<StatePublisher>>> = Mutex::new(RefCell::new(None));
static TICK: AtomicU32 = AtomicU32::new(0);

/// Prints a line now and then.
struct Printer {
    lines: u32,
}

impl Connection<State> for Printer {
    fn on_update(&mut self, snapshot: &Snapshot<State>) -> Result<(), ConnectionError> {
        if snapshot.step.is_multiple_of(100) {
            hprintln!("step {}: ch1 {}", snapshot.step, snapshot.ch1 as u32);
            self.lines += 1;
        }
        Ok(())
    }

    fn on_response(&mut self, response: Response<'_, State>) -> Result<(), ConnectionError> {
        if let Response::Value {
            value: StateValue::Ch1(value),
            seq,
            ..
        } = response
        {
            hprintln!("value of #{}: {}", seq as u32, *value as u32);
            self.lines += 1;
        }
        Ok(())
    }
}

#[entry]
fn main() -> ! {
    static mut HEAP_MEMORY: [MaybeUninit<u8>; HEAP_SIZE] = [MaybeUninit::uninit(); HEAP_SIZE];
    // SAFETY: called once, before anything allocates, with memory nothing else uses.
    unsafe { HEAP.init(HEAP_MEMORY.as_mut_ptr() as usize, HEAP_SIZE) };

    // `let else` rather than `expect`: formatting the error with `Debug` would add its code
    // to a figure meant for the server alone.
    let Ok((publisher, mut server)) = Builder::new(State::INITIAL)
        .notify(&NOTIFY)
        .capacity::<16, 2>()
        .build_with([Printer { lines: 0 }])
    else {
        panic!("a valid configuration");
    };
    let printer = server
        .connection_ids()
        .next()
        .expect("the printer is attached");
    interrupt::free(|cs| PUBLISHER.borrow(cs).replace(Some(publisher)));

    let mut core = cortex_m::Peripherals::take().expect("the core peripherals, taken once");
    core.SYST.set_clock_source(SystClkSource::Core);
    core.SYST.set_reload(board::SYSTICK_HZ / 1000 - 1);
    core.SYST.clear_current();
    core.SYST.enable_counter();
    core.SYST.enable_interrupt();
    loop {
        interrupt::free(|_| {
            if !NOTIFY.is_set() {
                cortex_m::asm::wfi();
            }
        });
        if NOTIFY.take() {
            if server.snapshot().step.is_multiple_of(150) {
                // A refusal is harmless here: the next period asks again.
                let _ = server.put_request(Request::key(printer, StateKey::Ch1));
            }
            server.poll();
        }
        if TICK.load(Ordering::Acquire) >= TICKS {
            core.SYST.disable_interrupt();
            let lines = server.connection(printer).map_or(0, |p| p.lines);
            hprintln!("server: {} lines", lines);
            debug::exit(debug::EXIT_SUCCESS);
        }
    }
}

#[exception]
fn SysTick() {
    static mut PUBLISHER_HERE: Option<StatePublisher> = None;

    let step = TICK.load(Ordering::Relaxed) + 1;
    let publisher = PUBLISHER_HERE.get_or_insert_with(|| {
        interrupt::free(|cs| PUBLISHER.borrow(cs).take())
            .expect("the publisher is parked before SysTick starts")
    });
    if publisher.wants_update() {
        publisher.put_update(&State::at(step));
    }
    TICK.store(step, Ordering::Release);
}

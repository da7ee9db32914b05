//! Footprint baseline: the firmware's skeleton without the server.
//!
//! SysTick computes the same [`State`] every 1 ms and hands the newest to the main loop
//! through a critical section, the way one would without the crate; the main loop prints a
//! line now and then over semihosting. `footprint-server` is the same program with the
//! server in between: the difference of their sizes is what the server costs (its code,
//! its heap, and the allocator it needs). See `footprint.sh`.

#![no_std]
#![no_main]

#[path = "../board.rs"]
#[allow(dead_code)]
mod board;
/// `plant.rs` declares `State` through this: here as it is, so that the baseline links
/// nothing of the crate.
macro_rules! state_derives {
    ($state:item) => {
        $state
    };
}

#[path = "../plant.rs"]
#[allow(dead_code)]
mod plant;

use core::cell::Cell;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use cortex_m::interrupt::{self, Mutex};
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{entry, exception};
use cortex_m_semihosting::{debug, hprintln};
use panic_semihosting as _;
use plant::State;

/// Periods to run.
const TICKS: u32 = 300;

static LATEST: Mutex<Cell<State>> = Mutex::new(Cell::new(State::INITIAL));
static NEW: AtomicBool = AtomicBool::new(false);
static TICK: AtomicU32 = AtomicU32::new(0);

#[entry]
fn main() -> ! {
    let mut core = cortex_m::Peripherals::take().expect("the core peripherals, taken once");
    core.SYST.set_clock_source(SystClkSource::Core);
    core.SYST.set_reload(board::SYSTICK_HZ / 1000 - 1);
    core.SYST.clear_current();
    core.SYST.enable_counter();
    core.SYST.enable_interrupt();
    let mut lines = 0;
    loop {
        interrupt::free(|_| {
            if !NEW.load(Ordering::Acquire) {
                cortex_m::asm::wfi();
            }
        });
        if NEW.swap(false, Ordering::Acquire) {
            let state = interrupt::free(|cs| LATEST.borrow(cs).get());
            if state.step.is_multiple_of(100) {
                hprintln!("step {}: ch1 {}", state.step, state.ch1 as u32);
                lines += 1;
            }
        }
        if TICK.load(Ordering::Acquire) >= TICKS {
            core.SYST.disable_interrupt();
            hprintln!("baseline: {} lines", lines);
            debug::exit(debug::EXIT_SUCCESS);
        }
    }
}

#[exception]
fn SysTick() {
    let step = TICK.load(Ordering::Relaxed) + 1;
    let state = State::at(step);
    interrupt::free(|cs| LATEST.borrow(cs).set(state));
    NEW.store(true, Ordering::Release);
    TICK.store(step, Ordering::Release);
}

//! Footprint: `footprint-server` with its printing connection replaced by the serial link
//! (`queueserver-link`) on UART0, polled from the main loop.
//!
//! SysTick publishes the same [`State`] with `put_update`; the main loop polls the server,
//! feeds received bytes to the link's receiver and hands the link's bytes to the UART.
//! `footprint-link` minus `footprint-server` is what the link adds (see `footprint.sh` for
//! how the sizes are read). Built for `mps2-an386`, whose UART0 the link drives.

#![no_std]
#![no_main]

#[path = "../board.rs"]
#[allow(dead_code)]
mod board;
#[path = "../uart.rs"]
#[allow(dead_code)]
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
use core::sync::atomic::{AtomicU32, Ordering};
use cortex_m::interrupt::{self, Mutex};
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{entry, exception};
use cortex_m_semihosting::{debug, hprintln};
use embedded_alloc::LlffHeap;
use panic_semihosting as _;
use plant::State;
use queueserver::{Builder, FlagNotify, Publisher};
use queueserver_link::device::Parts;
use queueserver_link::{Link, Storage};

/// Periods to run.
const TICKS: u32 = 300;
/// The server's heap, with the link in its connection slot: 1 KiB more than
/// `footprint-server`'s (the link in the slot is 520 bytes).
const HEAP_SIZE: usize = 3072;

type StatePublisher = Publisher<State, &'static FlagNotify>;
type StateLink = Link<'static, State, 16, 96, 256>;

#[global_allocator]
static HEAP: LlffHeap = LlffHeap::empty();
static NOTIFY: FlagNotify = FlagNotify::new();
static PUBLISHER: Mutex<RefCell<Option<StatePublisher>>> = Mutex::new(RefCell::new(None));
static TICK: AtomicU32 = AtomicU32::new(0);

#[entry]
fn main() -> ! {
    static mut HEAP_MEMORY: [MaybeUninit<u8>; HEAP_SIZE] = [MaybeUninit::uninit(); HEAP_SIZE];
    static mut LINK: Storage<State, 16, 512> = Storage::new();
    // SAFETY: called once, before anything allocates, with memory nothing else uses.
    unsafe { HEAP.init(HEAP_MEMORY.as_mut_ptr() as usize, HEAP_SIZE) };

    let Ok(Parts { link, mut tx, rx }) = LINK.split::<96, 256>(&State::INITIAL) else {
        panic!("the State fits the link");
    };
    // `let else` rather than `expect`: formatting the error with `Debug` would add its code
    // to a figure meant for the server and the link alone.
    let Ok((publisher, mut server)) = Builder::new(State::INITIAL)
        .notify(&NOTIFY)
        .capacity::<16, 1>()
        .build::<StateLink>()
    else {
        panic!("a valid configuration");
    };
    let Ok(id) = server.add_connection(link) else {
        panic!("a free slot");
    };
    let mut rx = rx.attach(server.requester(), id);
    interrupt::free(|cs| PUBLISHER.borrow(cs).replace(Some(publisher)));
    uart::init();

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
        while let Some(byte) = uart::try_receive() {
            rx.receive(byte);
        }
        if NOTIFY.take() {
            server.poll();
        }
        if let Some(link) = server.connection_mut(id) {
            if tx.is_empty() {
                link.flush();
            }
        }
        while uart::can_send() {
            match tx.next_byte() {
                Some(byte) => {
                    uart::try_send(byte);
                }
                None => break,
            }
        }
        if TICK.load(Ordering::Acquire) >= TICKS {
            core.SYST.disable_interrupt();
            let sent = tx.stats().tx_bytes;
            hprintln!("link: {} bytes", sent);
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

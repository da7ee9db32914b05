//! UART0 of the `mps2-an386` board: an Arm CMSDK APB UART at `0x4000_4000`, receive
//! interrupt on IRQ 0. QEMU connects it to its first `-serial` (here a TCP socket).
//!
//! The UART has a one-byte buffer each way and no FIFO. QEMU does not model the baud
//! rate: a byte written is handed to the socket at once, and a byte received waits in
//! QEMU until the firmware has read the previous one, so nothing is lost to overrun.
//!
//! Register access is volatile through raw addresses, which is `unsafe`: each access
//! says why it is sound.

use core::ptr;

/// Whether the firmware was built for the board this UART belongs to (`mps2-an386`).
pub const ON_THIS_BOARD: bool = cfg!(board = "mps2-an386");

const BASE: usize = 0x4000_4000;
const DATA: usize = BASE;
const STATE: usize = BASE + 0x04;
const CTRL: usize = BASE + 0x08;
const INTSTATUS: usize = BASE + 0x0C;
const BAUDDIV: usize = BASE + 0x10;

const STATE_TX_FULL: u32 = 1 << 0;
const STATE_RX_FULL: u32 = 1 << 1;
const CTRL_TX_EN: u32 = 1 << 0;
const CTRL_RX_EN: u32 = 1 << 1;
const CTRL_RX_INT_EN: u32 = 1 << 3;
const INT_RX: u32 = 1 << 1;

/// The receive interrupt's number (NVIC IRQ 0).
pub const RX_IRQ: u16 = 0;

fn read(addr: usize) -> u32 {
    // SAFETY: `addr` is one of the UART's registers (above), always mapped on this
    // board; a volatile read of them has no effect beyond the UART's documented ones.
    unsafe { ptr::read_volatile(addr as *const u32) }
}

fn write(addr: usize, value: u32) {
    // SAFETY: as in `read`; writing these registers only drives the UART.
    unsafe { ptr::write_volatile(addr as *mut u32, value) }
}

/// Enables the transmitter, the receiver and the receive interrupt; the baud divider is
/// set as for 115 200 baud at 25 MHz (QEMU only checks that it is at least 16).
pub fn init() {
    write(BAUDDIV, 25_000_000 / 115_200);
    write(CTRL, CTRL_TX_EN | CTRL_RX_EN | CTRL_RX_INT_EN);
}

/// Sends `byte` if the transmitter can take it; `false` when it is busy.
pub fn try_send(byte: u8) -> bool {
    if read(STATE) & STATE_TX_FULL != 0 {
        return false;
    }
    write(DATA, u32::from(byte));
    true
}

/// Whether the transmitter can take a byte now.
pub fn can_send() -> bool {
    read(STATE) & STATE_TX_FULL == 0
}

/// The received byte, if there is one; clears the receive interrupt.
pub fn try_receive() -> Option<u8> {
    if read(STATE) & STATE_RX_FULL == 0 {
        write(INTSTATUS, INT_RX);
        return None;
    }
    let byte = read(DATA) as u8;
    write(INTSTATUS, INT_RX);
    Some(byte)
}

/// The receive interrupt, as the NVIC numbers it.
#[derive(Clone, Copy)]
pub struct RxInterrupt;

// SAFETY: IRQ 0 is UART0's receive interrupt on this board, a valid interrupt number.
unsafe impl cortex_m::interrupt::InterruptNumber for RxInterrupt {
    fn number(self) -> u16 {
        RX_IRQ
    }
}

//! The board QEMU emulates, chosen by the target (see `build.rs`).

/// `mps2-an386`: a Cortex-M4F whose SysTick counts a 25 MHz clock.
#[cfg(board = "mps2-an386")]
mod this {
    /// The board's name.
    pub const NAME: &str = "Cortex-M4F (mps2-an386)";
    /// SysTick counts per second (the processor clock QEMU gives SysTick).
    pub const SYSTICK_HZ: u32 = 25_000_000;
    /// Samples kept per measured cost: 4 MiB of RAM leaves plenty of room.
    pub const SAMPLES: usize = 2048;
}

/// `lm3s6965evb`: a Cortex-M3 whose SysTick counts a 12.5 MHz clock.
#[cfg(board = "lm3s6965evb")]
mod this {
    /// The board's name.
    pub const NAME: &str = "Cortex-M3 (lm3s6965evb)";
    /// SysTick counts per second (the processor clock QEMU gives SysTick).
    pub const SYSTICK_HZ: u32 = 12_500_000;
    /// Samples kept per measured cost: the board has 64 KiB of RAM.
    pub const SAMPLES: usize = 512;
}

pub use this::*;

/// Instructions per SysTick count under `-icount shift=0` (one instruction per nanosecond).
pub const INSTRUCTIONS_PER_COUNT: u32 = 1_000_000_000 / SYSTICK_HZ;

const _: () = assert!(INSTRUCTIONS_PER_COUNT * SYSTICK_HZ == 1_000_000_000);

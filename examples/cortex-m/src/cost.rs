//! Instruction-exact costs, read from the SysTick counter.
//!
//! Under QEMU's `-icount shift=0` every instruction takes exactly one nanosecond of virtual
//! time, and SysTick counts the board's clock: one count every [`INSTRUCTIONS_PER_COUNT`]
//! instructions (40 on `mps2-an386`, 80 on `lm3s6965evb`). QEMU does not model the DWT cycle
//! counter (it reads 0), so one reading of SysTick is all there is, and it is 40 or 80
//! instructions coarse. A [`Stopwatch`] is a vernier on it, exact to the instruction:
//!
//! - a *mark* spins on the counter until it changes: the read that sees the change comes 0
//!   to 3 instructions after it (the loop is 4 instructions long), and the loop counts its
//!   turns;
//! - it then reads the counter three times in a row, ending one instruction before the next
//!   change is due: the change falls among them, and how many of the three already see it
//!   is how far (0 to 3 instructions) the first change lay before the read that saw it.
//!
//! Marking before and after an operation gives the number of instructions executed between
//! the end of the first mark and the start of the second, whatever the phases: the counts
//! between the two changes located, times [`INSTRUCTIONS_PER_COUNT`], plus the difference of
//! the phases, minus the spin of the second mark and the marks' own fixed instructions.
//! [`self_test`] checks this against runs of `nop`s of known lengths at many phases; the
//! firmware warns if one is off by a single instruction (its costs are then approximate).
//!
//! A measurement is only valid when no interrupt ran inside it: callers that can be
//! pre-empted check that and drop the sample.

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use cortex_m::peripheral::SYST;

pub use crate::board::INSTRUCTIONS_PER_COUNT;

/// `nop`s between a mark's spin and its three reads, which then fall 3, 2 and 1
/// instructions before the next change at the latest.
pub const MARK_PAD: u32 = INSTRUCTIONS_PER_COUNT - 6;

/// The marks' own instructions between the two changes they locate: the first mark ends
/// `phase + 14` instructions after its change, the second starts `4 × turns + 1 − phase`
/// before its own, and one more makes the count exclusive of both ends.
const MARK_OVERHEAD: i64 = 16;

/// Where the two marks of one measurement write what they saw. One per execution context
/// (handler or main loop): a mark writes its stopwatch without synchronisation.
#[repr(C)]
pub struct Stopwatch {
    /// `[counter after the change the spin saw, spin turns, phase]` of the first mark, then
    /// of the second. The phase is how many instructions (0 to 3) the change came before
    /// the spin's read that saw it.
    marks: [AtomicU32; 6],
}

impl Stopwatch {
    /// A stopwatch for one execution context.
    pub const fn new() -> Self {
        Self {
            marks: [const { AtomicU32::new(0) }; 6],
        }
    }

    /// Instructions executed between the two marks of the last measurement.
    ///
    /// Never inlined: inlined, its constants (the SysTick registers' addresses) could be
    /// loaded into a register the marks leave alone before the second mark, inside the
    /// measured window (at opt-level 3 one was).
    #[inline(never)]
    pub fn elapsed(&self) -> u32 {
        let read = |i: usize| self.marks[i].load(Ordering::Relaxed);
        let (start, start_phase) = (read(0), read(2));
        let (end, end_turns, end_phase) = (read(3), read(4), read(5));
        // The counter counts down from the reload value to 0, then reloads.
        let period = SYST::get_reload() + 1;
        // The first mark's three reads locate the change *after* the one its spin saw, one
        // count lower; the second mark's spin locates its change itself.
        let after_start = (start + period - 1) % period;
        let counts = (after_start + period - end) % period;
        let instructions = i64::from(counts * INSTRUCTIONS_PER_COUNT) + i64::from(end_phase)
            - i64::from(start_phase)
            - 4 * i64::from(end_turns)
            - MARK_OVERHEAD;
        u32::try_from(instructions).unwrap_or(u32::MAX)
    }
}

/// Marks the stopwatch `$watch` (a `static` [`Stopwatch`]) at offset `$offset` (0 for the
/// first mark, 12 for the second).
///
/// The mark uses only core registers a call may clobber (r0-r3, r12, lr) and writes through
/// the stopwatch's address, built inside the assembly, so the compiler has nothing to place
/// between a mark and the measured code but that code's own instructions.
macro_rules! mark {
    ($watch:path, $offset:literal) => {
        // SAFETY: the assembly reads the SysTick current-value register (a read has no side
        // effect) and writes 12 bytes inside the `static` stopwatch, whose atomics only this
        // execution context touches; it uses no stack and declares every register it changes.
        unsafe {
            core::arch::asm!(
                "movw r12, #0xE018",
                "movt r12, #0xE000",
                // Spin until the counter changes; r3 counts the turns.
                "ldr r1, [r12]",
                "movs r3, #0",
                "2:",
                "adds r3, r3, #1",
                "ldr r2, [r12]",
                "cmp r2, r1",
                "beq 2b",
                // Three reads, 3, 2 and 1 instructions before the next change at the latest.
                ".rept {pad}",
                "nop",
                ".endr",
                "ldr r0, [r12]",
                "ldr r1, [r12]",
                "ldr lr, [r12]",
                // The phase: how many of the three reads differ from r2.
                "cmp r0, r2",
                "ite ne",
                "movne r0, #1",
                "moveq r0, #0",
                "cmp r1, r2",
                "it ne",
                "addne r0, r0, #1",
                "cmp lr, r2",
                "it ne",
                "addne r0, r0, #1",
                "movw r12, :lower16:{watch}",
                "movt r12, :upper16:{watch}",
                "str r2, [r12, #{offset}]",
                "str r3, [r12, #{offset} + 4]",
                "str r0, [r12, #{offset} + 8]",
                watch = sym $watch,
                offset = const $offset,
                pad = const $crate::cost::MARK_PAD,
                out("r0") _,
                out("r1") _,
                out("r2") _,
                out("r3") _,
                out("r12") _,
                out("lr") _,
                options(nostack),
            )
        }
    };
}

/// Evaluates `$op` between two marks of `$watch`; gives `(result, instructions)`.
///
/// The count goes through `black_box`, so that it is computed here: left for later, its
/// arithmetic can be scheduled into the window of the next measurement (at opt-level 3 it
/// was, in the self-test's unrolled runs: 1 `nop` measured as 4).
macro_rules! measure {
    ($watch:path, $op:expr) => {{
        $crate::cost::mark!($watch, 0);
        let result = $op;
        $crate::cost::mark!($watch, 12);
        (result, core::hint::black_box($watch.elapsed()))
    }};
}

pub(crate) use {mark, measure};

/// Samples of one cost, recorded by one execution context (single writer).
pub struct Series<const N: usize> {
    samples: [AtomicU32; N],
    len: AtomicUsize,
    dropped: AtomicU32,
}

/// The first sample, minimum, median and maximum of a [`Series`].
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    /// Samples kept.
    pub count: usize,
    /// The first call's, in instructions.
    pub first: u32,
    /// The cheapest, in instructions.
    pub min: u32,
    /// The median (the upper one for an even count), in instructions.
    pub median: u32,
    /// The dearest, in instructions.
    pub max: u32,
}

impl<const N: usize> Series<N> {
    /// An empty series that keeps the first `N` samples.
    pub const fn new() -> Self {
        Self {
            samples: [const { AtomicU32::new(0) }; N],
            len: AtomicUsize::new(0),
            dropped: AtomicU32::new(0),
        }
    }

    /// Keeps `instructions`, if there is room. Only one execution context may record.
    pub fn record(&self, instructions: u32) {
        let len = self.len.load(Ordering::Relaxed);
        if let Some(slot) = self.samples.get(len) {
            slot.store(instructions, Ordering::Relaxed);
            self.len.store(len + 1, Ordering::Release);
        }
    }

    /// Counts a measurement that an interrupt ran into.
    pub fn drop_one(&self) {
        self.dropped
            .store(self.dropped.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// Measurements dropped because an interrupt ran into them.
    pub fn dropped(&self) -> u32 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Sorts a copy of the samples (on the stack) and summarises them.
    pub fn summary(&self) -> Option<Summary> {
        let len = self.len.load(Ordering::Acquire);
        let first = self.samples.first()?.load(Ordering::Relaxed);
        let mut sorted = [0u32; N];
        for (dst, src) in sorted.iter_mut().zip(&self.samples[..len]) {
            *dst = src.load(Ordering::Relaxed);
        }
        let sorted = &mut sorted[..len];
        sorted.sort_unstable();
        Some(Summary {
            count: len,
            first,
            min: *sorted.first()?,
            median: sorted[len / 2],
            max: *sorted.last()?,
        })
    }
}

/// The stopwatch of the self-test (main loop, before interrupts start).
static TEST_WATCH: Stopwatch = Stopwatch::new();

/// Runs `k` `nop`s between two marks.
macro_rules! nops {
    ($k:literal) => {
        measure!(TEST_WATCH, {
            // SAFETY: `nop`s only.
            unsafe {
                core::arch::asm!(
                    ".rept {k}", "nop", ".endr",
                    k = const $k,
                    options(nomem, nostack, preserves_flags),
                )
            }
        })
        .1
    };
}

/// Spends about `n` instructions, to start the next measurement at another phase.
#[inline(never)]
fn shift_phase(n: u32) {
    for _ in 0..n {
        cortex_m::asm::nop();
    }
}

/// Checks the stopwatch against runs of `nop`s of known lengths, each at 80 different
/// phases of the counter. Needs the SysTick counter running with its interrupt off.
///
/// Returns the first `(expected, measured)` that differ.
pub fn self_test() -> Result<usize, (u32, u32)> {
    let mut checked = 0;
    for phase in 0..80 {
        let runs = [
            (0, nops!(0)),
            (1, nops!(1)),
            (2, nops!(2)),
            (3, nops!(3)),
            (5, nops!(5)),
            (13, nops!(13)),
            (39, nops!(39)),
            (40, nops!(40)),
            (41, nops!(41)),
            (79, nops!(79)),
            (80, nops!(80)),
            (97, nops!(97)),
            (1000, nops!(1000)),
        ];
        for (expected, measured) in runs {
            if measured != expected {
                return Err((expected, measured));
            }
            checked += 1;
            shift_phase(phase);
        }
    }
    Ok(checked)
}

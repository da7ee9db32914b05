//! The global allocator: embedded-alloc's linked-list heap, with every call counted.
//!
//! The firmware builds the server first (the crate allocates once, at construction), then
//! [seals](CountingHeap::seal) the heap. Every allocation, reallocation or free after that is
//! counted as late, and the firmware fails if there is any.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use embedded_alloc::LlffHeap;

/// A heap that counts what it is asked for.
pub struct CountingHeap {
    heap: LlffHeap,
    sealed: AtomicBool,
    allocations: AtomicU32,
    frees: AtomicU32,
    bytes: AtomicUsize,
    late: AtomicU32,
}

/// The counts of a [`CountingHeap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapCounts {
    /// Allocations (a reallocation counts as one, and as one free).
    pub allocations: u32,
    /// Frees.
    pub frees: u32,
    /// Bytes asked for by the allocations.
    pub bytes: usize,
    /// Allocations and frees after the heap was sealed.
    pub late: u32,
    /// Bytes in use, with the allocator's rounding.
    pub used: usize,
}

impl CountingHeap {
    /// A heap with no memory yet.
    pub const fn new() -> Self {
        Self {
            heap: LlffHeap::empty(),
            sealed: AtomicBool::new(false),
            allocations: AtomicU32::new(0),
            frees: AtomicU32::new(0),
            bytes: AtomicUsize::new(0),
            late: AtomicU32::new(0),
        }
    }

    /// Gives the heap its memory.
    ///
    /// # Safety
    ///
    /// Call it once, before any allocation, with `size` bytes at `start` that nothing else
    /// uses for the rest of the program.
    pub unsafe fn init(&self, start: usize, size: usize) {
        // SAFETY: the caller's contract is the allocator's.
        unsafe { self.heap.init(start, size) }
    }

    /// Ends the start-up phase: from now on every call is late. Returns the counts so far.
    pub fn seal(&self) -> HeapCounts {
        self.sealed.store(true, Ordering::SeqCst);
        self.counts()
    }

    /// The counts now.
    pub fn counts(&self) -> HeapCounts {
        HeapCounts {
            allocations: self.allocations.load(Ordering::SeqCst),
            frees: self.frees.load(Ordering::SeqCst),
            bytes: self.bytes.load(Ordering::SeqCst),
            late: self.late.load(Ordering::SeqCst),
            used: self.heap.used(),
        }
    }

    fn count(&self, counter: &AtomicU32) {
        counter.fetch_add(1, Ordering::SeqCst);
        if self.sealed.load(Ordering::SeqCst) {
            self.late.fetch_add(1, Ordering::SeqCst);
        }
    }
}

// SAFETY: every call is forwarded unchanged to embedded-alloc's heap; the counting around it
// touches atomics only.
unsafe impl GlobalAlloc for CountingHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.count(&self.allocations);
        self.bytes.fetch_add(layout.size(), Ordering::SeqCst);
        // SAFETY: the caller's contract is the heap's.
        unsafe { self.heap.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.count(&self.frees);
        // SAFETY: the caller's contract is the heap's.
        unsafe { self.heap.dealloc(ptr, layout) }
    }
}

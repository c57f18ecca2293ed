//! A bump allocator for guests that live for exactly one call.
//!
//! The host gives every plugin call a fresh instance and throws the instance
//! away afterwards, so a guest never needs to reuse freed memory: `free` only
//! rolls back the newest allocation (which makes `Vec`/`String` growth
//! in place), everything else is reclaimed when the instance is dropped.
//! Allocation is a pointer bump in a static arena that is part of the
//! instance's initial (zeroed, already resident) memory, so a call neither
//! runs a general-purpose allocator nor grows its linear memory
//! (`memory.grow` is a host call and makes more pages to reset). Measured in
//! `cargo bench -p intentgate --bench decision` (`plugin_call`): see
//! docs/performance.md.
//!
//! When the arena is used up, a wasm guest grows its memory and keeps
//! bumping there, so large inputs still work (bounded by the host's memory
//! limit); elsewhere (native unit tests, which do not install it as the
//! global allocator) exhaustion is an allocation failure.
//!
//! Install it in a plugin's `lib.rs` with `intentgate_guest::use_call_arena!();`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes reserved in the module's zero-initialized data for allocations.
/// The connectors in this repository use a few KiB per call; 256 KiB covers
/// large Spanner messages without growing memory.
pub const ARENA_BYTES: usize = 256 << 10;

#[repr(C, align(16))]
struct Arena(UnsafeCell<[u8; ARENA_BYTES]>);

/// The bump allocator. See the module documentation.
pub struct CallArena {
    arena: Arena,
    /// Address one past the newest allocation (0 until the first one).
    next: AtomicUsize,
    /// Address one past the region `next` bumps in (0 until the first one).
    end: AtomicUsize,
    /// Start of the newest allocation, so `dealloc`/`realloc` can roll it back.
    last: AtomicUsize,
}

// SAFETY: all state is behind atomics; the arena bytes are only handed out
// as disjoint regions (each address range is returned by `alloc` once until
// it is rolled back by `dealloc` of that same, newest, allocation).
unsafe impl Sync for CallArena {}

impl CallArena {
    /// An empty arena; usable in a `static`.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            arena: Arena(UnsafeCell::new([0; ARENA_BYTES])),
            next: AtomicUsize::new(0),
            end: AtomicUsize::new(0),
            last: AtomicUsize::new(0),
        }
    }

    fn start(&self) {
        if self.end.load(Ordering::Relaxed) == 0 {
            let base = self.arena.0.get() as usize;
            self.next.store(base, Ordering::Relaxed);
            self.end.store(base + ARENA_BYTES, Ordering::Relaxed);
        }
    }

    /// Bumps `layout` in the current region, or in fresh memory after it.
    /// Guests are single-threaded; the atomics keep native tests sound, not fast.
    fn bump(&self, layout: Layout) -> *mut u8 {
        self.start();
        let next = self.next.load(Ordering::Relaxed);
        let Some(begin) = align_up(next, layout.align()) else {
            return ptr::null_mut();
        };
        let Some(finish) = begin.checked_add(layout.size()) else {
            return ptr::null_mut();
        };
        if finish <= self.end.load(Ordering::Relaxed) {
            self.next.store(finish, Ordering::Relaxed);
            self.last.store(begin, Ordering::Relaxed);
            return begin as *mut u8;
        }
        self.bump_in_new_memory(layout)
    }

    #[cfg(target_arch = "wasm32")]
    fn bump_in_new_memory(&self, layout: Layout) -> *mut u8 {
        const PAGE: usize = 64 << 10;
        // Grow at least 4 pages at a time so a string of small allocations
        // after exhaustion does not call the host for each.
        let want = layout.size().saturating_add(layout.align()).max(4 * PAGE);
        let pages = want.div_ceil(PAGE);
        let old = core::arch::wasm32::memory_grow(0, pages);
        if old == usize::MAX {
            return ptr::null_mut();
        }
        let base = old * PAGE;
        // The old region's tail is abandoned; the new region follows the old
        // memory end, which is not adjacent to the static arena.
        self.next.store(base, Ordering::Relaxed);
        self.end.store(base + pages * PAGE, Ordering::Relaxed);
        self.bump(layout)
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn bump_in_new_memory(&self, _layout: Layout) -> *mut u8 {
        ptr::null_mut()
    }

    /// Bytes handed out from the static arena so far.
    #[cfg(test)]
    fn used(&self) -> usize {
        let base = self.arena.0.get() as usize;
        let next = self.next.load(Ordering::Relaxed);
        if (base..=base + ARENA_BYTES).contains(&next) {
            next - base
        } else {
            ARENA_BYTES
        }
    }
}

impl Default for CallArena {
    fn default() -> Self {
        Self::new()
    }
}

/// Makes [`CallArena`] the global allocator of a wasm guest (native builds,
/// such as unit tests, keep the system allocator).
#[macro_export]
macro_rules! use_call_arena {
    () => {
        #[cfg(target_arch = "wasm32")]
        #[global_allocator]
        static ALLOCATOR: $crate::CallArena = $crate::CallArena::new();
    };
}

fn align_up(addr: usize, align: usize) -> Option<usize> {
    Some(addr.checked_add(align - 1)? & !(align - 1))
}

// SAFETY: `alloc` returns either null or a region of `layout.size()` bytes
// aligned to `layout.align()` that no other live allocation overlaps;
// `dealloc` only moves `next` back when the freed block is the newest one;
// `realloc` grows in place only the newest block and otherwise copies.
unsafe impl GlobalAlloc for CallArena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.bump(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = self.bump(layout);
        if !p.is_null() {
            // A rolled-back block may be handed out again, so it is not
            // necessarily still zero.
            // SAFETY: `p` is valid for `layout.size()` bytes.
            unsafe { ptr::write_bytes(p, 0, layout.size()) };
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        let addr = p as usize;
        if addr == self.last.load(Ordering::Relaxed)
            && addr + layout.size() == self.next.load(Ordering::Relaxed)
        {
            self.next.store(addr, Ordering::Relaxed);
        }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let addr = p as usize;
        let newest = addr == self.last.load(Ordering::Relaxed)
            && addr + layout.size() == self.next.load(Ordering::Relaxed);
        if newest
            && let Some(finish) = addr.checked_add(new_size)
            && finish <= self.end.load(Ordering::Relaxed)
        {
            self.next.store(finish, Ordering::Relaxed);
            return p;
        }
        if new_size <= layout.size() {
            return p;
        }
        // SAFETY: the caller guarantees `layout.align()` is a valid alignment
        // and `new_size`, rounded up to it, does not overflow `isize`.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let q = self.bump(new_layout);
        if !q.is_null() {
            // SAFETY: both regions are valid for `layout.size()` bytes and
            // do not overlap (`q` was bumped past `p`'s end).
            unsafe { ptr::copy_nonoverlapping(p, q, layout.size()) };
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[test]
    fn allocations_are_aligned_and_disjoint() {
        let a = Box::new(CallArena::new());
        // SAFETY: test of the allocator contract; every pointer is checked.
        unsafe {
            let p = a.alloc(layout(3, 1)) as usize;
            let q = a.alloc(layout(8, 8)) as usize;
            let r = a.alloc(layout(1, 64)) as usize;
            assert!(p != 0 && q != 0 && r != 0);
            assert_eq!(q % 8, 0);
            assert_eq!(r % 64, 0);
            assert!(p + 3 <= q && q + 8 <= r);
        }
    }

    #[test]
    fn newest_block_grows_in_place_and_frees_back() {
        let a = Box::new(CallArena::new());
        // SAFETY: as above.
        unsafe {
            let p = a.alloc(layout(16, 8));
            let before = a.used();
            let q = a.realloc(p, layout(16, 8), 64);
            assert_eq!(p, q, "the newest block grows in place");
            assert_eq!(a.used(), before + 48);
            a.dealloc(q, layout(64, 8));
            assert_eq!(a.used(), before - 16, "freeing the newest block rolls back");
        }
    }

    #[test]
    fn realloc_of_an_older_block_copies_its_bytes() {
        let a = Box::new(CallArena::new());
        // SAFETY: as above.
        unsafe {
            let p = a.alloc(layout(4, 1));
            ptr::copy_nonoverlapping(b"abcd".as_ptr(), p, 4);
            let _newer = a.alloc(layout(4, 1));
            let q = a.realloc(p, layout(4, 1), 8);
            assert_ne!(p, q);
            assert_eq!(std::slice::from_raw_parts(q, 4), b"abcd");
        }
    }

    #[test]
    fn zeroed_allocation_is_zero_after_a_rollback() {
        let a = Box::new(CallArena::new());
        // SAFETY: as above.
        unsafe {
            let p = a.alloc(layout(8, 1));
            ptr::write_bytes(p, 0xff, 8);
            a.dealloc(p, layout(8, 1));
            let q = a.alloc_zeroed(layout(8, 1));
            assert_eq!(p, q);
            assert_eq!(std::slice::from_raw_parts(q, 8), &[0; 8]);
        }
    }

    #[test]
    fn exhaustion_is_an_allocation_failure_off_wasm() {
        let a = Box::new(CallArena::new());
        // SAFETY: as above.
        unsafe {
            assert!(!a.alloc(layout(ARENA_BYTES - 16, 16)).is_null());
            assert!(a.alloc(layout(64, 16)).is_null());
        }
    }
}

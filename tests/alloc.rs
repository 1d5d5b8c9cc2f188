//! Hot path: no heap allocation per operation in steady state (DESIGN.md invariant 7).
//!
//! A counting global allocator counts the allocations of the measuring thread only (a
//! thread-local switch), so tests running in parallel do not disturb each other.
mod util;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use trueio::op::{Nop, Read};
use trueio::BackendChoice;

struct Counting;

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

fn note() {
    // try_with: the allocator may run while thread-locals are being torn down.
    if ON.try_with(|on| on.get()).unwrap_or(false) {
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Allocations made by this thread while `f` runs.
fn allocations(f: impl FnOnce()) -> usize {
    COUNT.with(|c| c.set(0));
    ON.with(|on| on.set(true));
    f();
    ON.with(|on| on.set(false));
    COUNT.with(|c| c.get())
}

const OPS: usize = 10_000;
/// One-time growth (a table resized once, a lazily created buffer) is tolerated; anything
/// per operation is not.
const TOLERATED_TOTAL: usize = 16;

/// Returns (allocations over OPS nops, allocations over OPS reads), or None when the backend
/// cannot run here.
fn measure(choice: BackendChoice) -> Option<(usize, usize)> {
    let b = util::builder(choice)?;
    let engine = b.build().unwrap();
    let dir = util::TempDir::new("alloc");
    let data = util::pattern(64, 1);
    let file = dir.rw_file("f", &data);
    let mut buf: Vec<u8> = Vec::with_capacity(64);
    let addr = buf.as_ptr();

    let nop = || {
        util::run(&engine, Nop::new()).unwrap();
    };
    let read = |buf: Vec<u8>| -> Vec<u8> {
        let (n, mut back) = util::run(&engine, Read::at(&file, buf, 0));
        assert_eq!(n.unwrap(), 64);
        assert!(back == data, "a read returned other bytes");
        back.clear();
        back
    };
    // Warm up: every table and queue reaches its steady size.
    for _ in 0..1000 {
        nop();
        buf = read(buf);
    }
    let nops = allocations(|| {
        for _ in 0..OPS {
            nop();
        }
    });
    let reads = allocations(|| {
        for _ in 0..OPS {
            buf = read(std::mem::take(&mut buf));
        }
    });
    // The buffer really was reused and filled: one allocation went round every read.
    buf = read(buf);
    assert_eq!(
        buf.as_ptr(),
        addr,
        "the read buffer was replaced on the way"
    );
    assert_eq!(buf.capacity(), 64);
    assert_eq!(engine.in_flight(), 0);
    Some((nops, reads))
}

fn check(name: &str, choice: BackendChoice) {
    let Some((nops, reads)) = measure(choice) else {
        return;
    };
    eprintln!(
        "{name}: {nops} allocations over {OPS} nop submit+wait ({:.4}/op), {reads} over {OPS} \
         reads ({:.4}/op)",
        nops as f64 / OPS as f64,
        reads as f64 / OPS as f64
    );
    assert!(
        nops <= TOLERATED_TOTAL,
        "{name}: {nops} allocations over {OPS} nops: the hot path allocates per operation"
    );
    assert!(
        reads <= TOLERATED_TOTAL,
        "{name}: {reads} allocations over {OPS} reads: the hot path allocates per operation"
    );
}

#[test]
fn uring_steady_state_allocates_nothing_per_op() {
    check("io_uring", BackendChoice::Uring);
}

#[test]
fn epoll_steady_state_allocates_nothing_per_op() {
    check("epoll", BackendChoice::Epoll);
}

#[test]
fn counting_allocator_counts() {
    // Control: the counter sees allocations made by this thread.
    let n = allocations(|| {
        let v: Vec<u8> = Vec::with_capacity(100);
        std::hint::black_box(&v);
    });
    assert_eq!(n, 1);
}

//! The in-process workloads: NOP round trips and page-cached file reads, each through trueio
//! on io_uring (plain, or registered buffers and a fixed file), trueio on epoll, blocking std
//! and tokio. The caller's thread is pinned to one CPU; threads started here inherit it.

use std::collections::VecDeque;
use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use io_uring::{opcode, IoUring};
use trueio::buf::{AlignedBuf, FixedBuf, IoBuf, Slice};
use trueio::op::{self, Read, ReadFixed};
use trueio::{Engine, Fd, Ticket};

use crate::measure::{Histogram, Meter, Sample};
use crate::sys::Rng;

/// One timed section: how long, and whether this is the pass that counts system calls.
#[derive(Clone, Copy)]
pub struct Pass {
    pub dur: Duration,
    /// `Some(tracepoint id)`: count system calls (the counting pass, not timed).
    pub count: Option<u64>,
}

/// Which blocks a read loop visits.
#[derive(Clone, Copy)]
pub enum Pattern {
    /// Uniformly random blocks of `bs` bytes.
    Random,
    /// Consecutive blocks, wrapping at the end of the file.
    Sequential,
}

struct Offsets {
    rng: Rng,
    next: u64,
    blocks: u64,
    bs: u64,
    pattern: Pattern,
}

impl Offsets {
    fn new(file_size: u64, bs: usize, pattern: Pattern, seed: u64) -> Offsets {
        Offsets {
            rng: Rng(0x9e37_79b9_7f4a_7c15 ^ seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1),
            next: seed,
            blocks: file_size / bs as u64,
            bs: bs as u64,
            pattern,
        }
    }
    fn next(&mut self) -> u64 {
        let b = match self.pattern {
            Pattern::Random => self.rng.next() % self.blocks,
            Pattern::Sequential => {
                let b = self.next % self.blocks;
                self.next += 1;
                b
            }
        };
        b * self.bs
    }
}

pub use crate::sys::warm;

// ---------------------------------------------------------------------------------------
// NOP round trips

/// `batch` NOPs submitted, then all awaited, for `pass.dur`; latency is the batch's round
/// trip, counted for each of its operations.
pub fn nop_engine(e: &Engine, batch: usize, pass: Pass) -> Sample {
    let mut tickets: Vec<Ticket<op::Nop>> = Vec::with_capacity(batch);
    let mut hist = Histogram::new();
    let mut m = Meter::new(pass.count);
    m.begin(Some(e));
    let start = Instant::now();
    let mut ops = 0;
    loop {
        let t0 = Instant::now();
        for _ in 0..batch {
            tickets.push(e.submit(op::Nop::new()));
        }
        for t in tickets.drain(..) {
            t.wait().expect("engine").expect("nop");
        }
        let t1 = Instant::now();
        hist.record_n(t1 - t0, batch as u64);
        ops += batch as u64;
        if t1 - start >= pass.dur {
            break;
        }
    }
    m.end(ops, Some(e), &hist)
}

/// The raw `io-uring` crate: the floor under the engine.
pub fn raw_ring() -> Option<IoUring> {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(512)
        .build(256)
        .or_else(|_| IoUring::builder().build(256))
        .ok()
}

pub fn nop_raw(ring: &mut IoUring, batch: usize, pass: Pass) -> Sample {
    let mut hist = Histogram::new();
    let mut m = Meter::new(pass.count);
    m.begin(None);
    let start = Instant::now();
    let mut ops = 0;
    loop {
        let t0 = Instant::now();
        {
            let mut sq = ring.submission();
            for i in 0..batch {
                let e = opcode::Nop::new().build().user_data(i as u64);
                // SAFETY: a NOP references no memory.
                unsafe { sq.push(&e).expect("sq has room") };
            }
        }
        ring.submit_and_wait(batch).expect("io_uring_enter");
        let n = ring.completion().count();
        assert_eq!(n, batch, "one completion per NOP");
        let t1 = Instant::now();
        hist.record_n(t1 - t0, batch as u64);
        ops += batch as u64;
        if t1 - start >= pass.dur {
            break;
        }
    }
    m.end(ops, None, &hist)
}

/// Blocking std's "round trip": one trivial system call (`getppid`), the least a
/// synchronous operation costs. There is nothing to batch.
pub fn nop_syscall(pass: Pass) -> Sample {
    let mut hist = Histogram::new();
    let mut m = Meter::new(pass.count);
    m.begin(None);
    let start = Instant::now();
    let mut ops = 0;
    loop {
        let t0 = Instant::now();
        // SAFETY: getppid has no arguments and no side effects.
        let r = unsafe { libc::syscall(libc::SYS_getppid) };
        assert!(r > 0);
        let t1 = Instant::now();
        hist.record(t1 - t0);
        ops += 1;
        if t1 - start >= pass.dur {
            break;
        }
    }
    m.end(ops, None, &hist)
}

/// tokio's round trip for an operation readiness cannot do (what `tokio::fs` does for every
/// call): `spawn_blocking` of an empty closure, `batch` at a time.
pub fn nop_tokio(rt: &tokio::runtime::Runtime, batch: usize, pass: Pass) -> Sample {
    let mut hist = Histogram::new();
    let mut m = Meter::new(pass.count);
    let mut handles = Vec::with_capacity(batch);
    rt.block_on(async {
        m.begin(None);
        let start = Instant::now();
        let mut ops = 0;
        loop {
            let t0 = Instant::now();
            for _ in 0..batch {
                handles.push(tokio::task::spawn_blocking(|| ()));
            }
            for h in handles.drain(..) {
                h.await.expect("spawn_blocking");
            }
            let t1 = Instant::now();
            hist.record_n(t1 - t0, batch as u64);
            ops += batch as u64;
            if t1 - start >= pass.dur {
                break;
            }
        }
        m.end(ops, None, &hist)
    })
}

// ---------------------------------------------------------------------------------------
// File reads

/// What a trueio read loop reads into and from.
pub enum Target<'a> {
    /// Page-aligned heap buffers and the plain descriptor.
    Plain(RawFd),
    /// Registered buffers from the engine's pool and a fixed-file slot.
    Fixed(&'a trueio::FixedFile),
}

enum InFlight {
    Plain(Ticket<Read<AlignedBuf>>),
    Fixed(Ticket<ReadFixed<Slice<FixedBuf>>>),
}

enum Buf {
    Plain(AlignedBuf),
    Fixed(FixedBuf),
}

/// Keeps `qd` reads of `bs` bytes in flight on the Completion API (as `examples/iobench`),
/// reaping in submission order.
pub fn engine_reads(
    e: &Engine,
    target: Target<'_>,
    file_size: u64,
    bs: usize,
    qd: usize,
    pattern: Pattern,
    pass: Pass,
) -> Sample {
    let mut offs = Offsets::new(file_size, bs, pattern, 0);
    let mut spare: Vec<Buf> = (0..qd)
        .map(|_| match target {
            Target::Plain(_) => Buf::Plain(AlignedBuf::zeroed(bs)),
            Target::Fixed(_) => Buf::Fixed(e.fixed_buf().expect("a registered buffer")),
        })
        .collect();
    let mut inflight: VecDeque<(InFlight, Instant)> = VecDeque::with_capacity(qd);
    let mut hist = Histogram::new();
    let mut m = Meter::new(pass.count);
    m.begin(Some(e));
    let start = Instant::now();
    let mut bytes = 0usize;
    let mut short = 0u64;
    let mut stopping = false;
    loop {
        while !stopping && inflight.len() < qd {
            let Some(b) = spare.pop() else { break };
            let off = offs.next();
            // Before the submission: the epoll backend completes a page-cache hit inside it.
            let t0 = Instant::now();
            let t = match (b, &target) {
                (Buf::Plain(b), Target::Plain(fd)) => {
                    InFlight::Plain(e.submit(Read::at(*fd, b, off)))
                }
                (Buf::Fixed(b), Target::Fixed(f)) => {
                    InFlight::Fixed(e.submit(ReadFixed::at(Fd::from(*f), b.slice(..bs), off)))
                }
                _ => unreachable!("buffers match the target"),
            };
            inflight.push_back((t, t0));
        }
        let Some((t, t0)) = inflight.pop_front() else {
            break;
        };
        let (r, b) = match t {
            InFlight::Plain(t) => {
                let (r, b) = t.wait().expect("engine");
                (r, Buf::Plain(b))
            }
            InFlight::Fixed(t) => {
                let (r, b) = t.wait().expect("engine");
                (r, Buf::Fixed(b.into_inner()))
            }
        };
        let n = r.expect("read");
        assert!(n > 0, "a read inside the file returned 0");
        if n < bs {
            short += 1;
        }
        bytes += n;
        let now = Instant::now();
        hist.record(now - t0);
        spare.push(b);
        if now - start >= pass.dur {
            stopping = true;
        }
    }
    let sample = m.end(blocks(bytes, bs), Some(e), &hist);
    if short > 0 {
        eprintln!(
            "note: {short} short reads of {bs} bytes ({:?} backend)",
            e.backend()
        );
    }
    sample
}

/// Operations counted as whole blocks read: a short read (legal on any file, and seen on
/// io_uring's buffered reads) counts for the part it read.
fn blocks(bytes: usize, bs: usize) -> u64 {
    (bytes / bs) as u64
}

/// One `pread`; the count read, never 0 (the offsets are inside the file).
fn pread_some(fd: RawFd, buf: &mut AlignedBuf, off: u64) -> usize {
    // SAFETY: buf holds buf.len() writable bytes, alive for the call.
    let r = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), off as i64) };
    assert!(r > 0, "pread: {r}: {}", std::io::Error::last_os_error());
    r as usize
}

/// Blocking `pread` loops: on the calling thread at depth 1, else one thread per operation in
/// flight (all on this CPU).
pub fn std_reads(
    file: &File,
    file_size: u64,
    bs: usize,
    qd: usize,
    pattern: Pattern,
    pass: Pass,
) -> Sample {
    let fd = file.as_raw_fd();
    let mut m = Meter::new(pass.count);
    if qd == 1 {
        let mut offs = Offsets::new(file_size, bs, pattern, 0);
        let mut buf = AlignedBuf::zeroed(bs);
        let mut hist = Histogram::new();
        m.begin(None);
        let start = Instant::now();
        let mut bytes = 0;
        loop {
            let t0 = Instant::now();
            bytes += pread_some(fd, &mut buf, offs.next());
            let t1 = Instant::now();
            hist.record(t1 - t0);
            if t1 - start >= pass.dur {
                break;
            }
        }
        return m.end(blocks(bytes, bs), None, &hist);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let go = Arc::new(Barrier::new(qd + 1));
    let threads: Vec<_> = (0..qd)
        .map(|i| {
            let (stop, go) = (stop.clone(), go.clone());
            std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn(move || {
                    let mut offs = Offsets::new(file_size, bs, pattern, i as u64 * 7919);
                    let mut buf = AlignedBuf::zeroed(bs);
                    let mut hist = Histogram::new();
                    let mut bytes = 0;
                    go.wait();
                    while !stop.load(Ordering::Relaxed) {
                        let t0 = Instant::now();
                        bytes += pread_some(fd, &mut buf, offs.next());
                        hist.record(t0.elapsed());
                    }
                    (bytes, hist)
                })
                .expect("start a reader thread")
        })
        .collect();
    m.begin(None);
    go.wait();
    std::thread::sleep(pass.dur);
    stop.store(true, Ordering::Relaxed);
    let mut hist = Histogram::new();
    let mut bytes = 0;
    for t in threads {
        let (n, h) = t.join().expect("reader thread");
        bytes += n;
        hist.merge(&h);
    }
    m.end(blocks(bytes, bs), None, &hist)
}

/// tokio's way to read a file at an offset: `spawn_blocking(pread)` (what `tokio::fs` does
/// inside), `qd` tasks at a time on a current-thread runtime.
pub fn tokio_preads(
    rt: &tokio::runtime::Runtime,
    file: &File,
    file_size: u64,
    bs: usize,
    qd: usize,
    pattern: Pattern,
    pass: Pass,
) -> Sample {
    let fd = file.as_raw_fd();
    let mut m = Meter::new(pass.count);
    rt.block_on(async {
        m.begin(None);
        let start = Instant::now();
        let tasks: Vec<_> = (0..qd)
            .map(|i| {
                tokio::spawn(async move {
                    let mut offs = Offsets::new(file_size, bs, pattern, i as u64 * 7919);
                    let mut buf = AlignedBuf::zeroed(bs);
                    let mut hist = Histogram::new();
                    let mut bytes = 0;
                    loop {
                        let off = offs.next();
                        let t0 = Instant::now();
                        let n;
                        (n, buf) = tokio::task::spawn_blocking(move || {
                            (pread_some(fd, &mut buf, off), buf)
                        })
                        .await
                        .expect("spawn_blocking");
                        bytes += n;
                        let t1 = Instant::now();
                        hist.record(t1 - t0);
                        if t1 - start >= pass.dur {
                            return (bytes, hist);
                        }
                    }
                })
            })
            .collect();
        let mut hist = Histogram::new();
        let mut bytes = 0;
        for t in tasks {
            let (n, h) = t.await.expect("reader task");
            bytes += n;
            hist.merge(&h);
        }
        m.end(blocks(bytes, bs), None, &hist)
    })
}

/// `tokio::fs::File` read sequentially, as a tokio program streams a file (each read is a
/// `spawn_blocking` into tokio's own buffer, then a copy into the caller's).
pub fn tokio_fs_sequential(
    rt: &tokio::runtime::Runtime,
    file: &File,
    bs: usize,
    pass: Pass,
) -> Sample {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let std_file = file.try_clone().expect("dup the data file");
    let mut m = Meter::new(pass.count);
    rt.block_on(async {
        let mut f = tokio::fs::File::from_std(std_file);
        f.seek(std::io::SeekFrom::Start(0)).await.expect("seek");
        let mut buf = AlignedBuf::zeroed(bs);
        let mut hist = Histogram::new();
        m.begin(None);
        let start = Instant::now();
        let mut bytes = 0usize;
        loop {
            let t0 = Instant::now();
            let n = f.read(&mut buf[..]).await.expect("tokio::fs read");
            if n == 0 {
                f.seek(std::io::SeekFrom::Start(0)).await.expect("seek");
                continue;
            }
            let t1 = Instant::now();
            hist.record(t1 - t0);
            bytes += n;
            if t1 - start >= pass.dur {
                break;
            }
        }
        m.end(blocks(bytes, bs), None, &hist)
    })
}

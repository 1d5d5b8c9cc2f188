//! 4 KiB random reads of a page-cached file at queue depth 1 and 32: io_uring, the epoll
//! backend (RWF_NOWAIT inline, pool on a miss) and blocking `pread` in a loop, in one run.
//!
//! `cargo bench --bench fileread` (`TRUEIO_BENCH_QUICK=1` for a short run). The
//! `preadv2 NW` column is the bare `preadv2(RWF_NOWAIT)` loop: the floor of the epoll
//! backend's inline path, since that call is what keeps a cache miss off the event loop. The file is read
//! whole just before every run (the VM pages out idle page cache after about a minute);
//! buffers are page-aligned (4K aliasing makes misaligned copies many times slower here).

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use trueio::buf::AlignedBuf;
use trueio::{op, BackendChoice, Engine, Ticket};

#[path = "common/sys.rs"]
mod sys;
use sys::{warm, Rng};

const BS: usize = 4096;

/// Random block-aligned 4 KiB reads with `read_at(buf, offset)` for `dur`; ops/s.
fn timed_reads(blocks: u64, dur: Duration, mut read_at: impl FnMut(&mut AlignedBuf, i64)) -> f64 {
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let mut buf = AlignedBuf::zeroed(BS);
    let start = Instant::now();
    let mut ops = 0u64;
    while start.elapsed() < dur {
        for _ in 0..256 {
            let off = (rng.next() % blocks) * BS as u64;
            read_at(&mut buf, off as i64);
        }
        ops += 256;
    }
    ops as f64 / start.elapsed().as_secs_f64()
}

fn pread_loop(file: &File, blocks: u64, dur: Duration) -> f64 {
    timed_reads(blocks, dur, |buf, off| {
        // SAFETY: buf holds BS writable bytes.
        let r = unsafe { libc::pread(file.as_raw_fd(), buf.as_mut_ptr().cast(), BS, off) };
        assert_eq!(r, BS as isize);
    })
}

/// The floor of the epoll backend's inline path: `preadv2(RWF_NOWAIT)` in a loop, no engine
/// (a miss is read blocking, as the engine's pool would).
fn preadv2_nowait_loop(file: &File, blocks: u64, dur: Duration) -> f64 {
    timed_reads(blocks, dur, |buf, off| {
        let iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: BS,
        };
        let fd = file.as_raw_fd();
        // SAFETY: one iovec over buf's BS writable bytes, alive for the calls.
        let mut r = unsafe { libc::preadv2(fd, &iov, 1, off, libc::RWF_NOWAIT) };
        if r < 0 {
            // SAFETY: as above.
            r = unsafe { libc::preadv2(fd, &iov, 1, off, 0) };
        }
        assert_eq!(r, BS as isize);
    })
}

fn engine_loop(e: &Engine, file: &File, blocks: u64, qd: usize, dur: Duration) -> f64 {
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let mut inflight: VecDeque<Ticket<op::Read<AlignedBuf>>> = VecDeque::with_capacity(qd);
    let mut spare: Vec<AlignedBuf> = (0..qd).map(|_| AlignedBuf::zeroed(BS)).collect();
    let start = Instant::now();
    let mut ops = 0u64;
    loop {
        while inflight.len() < qd {
            let Some(b) = spare.pop() else { break };
            let off = (rng.next() % blocks) * BS as u64;
            inflight.push_back(e.submit(op::Read::at(file, b, off)));
        }
        let Some(t) = inflight.pop_front() else { break };
        let (r, b) = t.wait().expect("engine");
        assert_eq!(r.expect("read"), BS);
        spare.push(b);
        ops += 1;
        if ops % 1024 == 0 && start.elapsed() >= dur {
            break;
        }
    }
    for t in inflight {
        let _ = t.wait();
    }
    ops as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let quick = std::env::var("TRUEIO_BENCH_QUICK").is_ok();
    let size: u64 = if quick { 64 << 20 } else { 256 << 20 };
    let dur = Duration::from_millis(if quick { 300 } else { 2000 });
    let rounds = if quick { 1 } else { 3 };
    let dir = std::env::var_os("TRUEIO_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let path = dir.join(format!("trueio-fileread-{}", std::process::id()));
    {
        let mut f = File::create(&path).expect("create bench file");
        let chunk: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
        for _ in 0..size >> 20 {
            f.write_all(&chunk).expect("write");
        }
    }
    let file = File::open(&path).expect("open");
    let blocks = size / BS as u64;
    let uring = Engine::builder().backend(BackendChoice::Uring).build().ok();
    let epoll = Engine::builder()
        .backend(BackendChoice::Epoll)
        .build()
        .expect("epoll engine");
    if uring.is_none() {
        println!("(io_uring unavailable here: its rows are skipped)");
    }

    println!(
        "4 KiB random reads, page-cached {} MiB file, ops/s (median of {rounds})",
        size >> 20
    );
    println!(
        "{:<6} {:>12} {:>12} {:>12} {:>12} {:>10} {:>10}",
        "depth", "pread", "preadv2 NW", "io_uring", "epoll", "uring/pr", "epoll/pr"
    );
    // TRUEIO_BENCH_ONLY=pread|nowait|uring|epoll runs one column alone (for a profiler).
    let only = std::env::var("TRUEIO_BENCH_ONLY").unwrap_or_default();
    let run = |name: &str| only.is_empty() || only == name;
    for qd in [1usize, 32] {
        let (mut p, mut nw, mut u, mut ep) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            if run("pread") {
                warm(&path);
                p.push(pread_loop(&file, blocks, dur));
            }
            if run("nowait") {
                warm(&path);
                nw.push(preadv2_nowait_loop(&file, blocks, dur));
            }
            if let Some(e) = uring.as_ref().filter(|_| run("uring")) {
                warm(&path);
                u.push(engine_loop(e, &file, blocks, qd, dur));
            }
            if run("epoll") {
                warm(&path);
                ep.push(engine_loop(&epoll, &file, blocks, qd, dur));
            }
        }
        let med = |v: &mut Vec<f64>| {
            if v.is_empty() {
                return f64::NAN;
            }
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        };
        let (pm, nm, um, em) = (med(&mut p), med(&mut nw), med(&mut u), med(&mut ep));
        println!(
            "QD{:<4} {:>12.0} {:>12.0} {:>12.0} {:>12.0} {:>9.2}x {:>9.2}x",
            qd,
            pm,
            nm,
            um,
            em,
            um / pm,
            em / pm
        );
    }
    let s = epoll.stats();
    println!(
        "epoll backend: {} of {} reads inline (page-cache hits), {} on the pool, {:.2} syscalls/op",
        s.inline_completions,
        s.completed,
        s.pool_jobs,
        s.syscalls_per_op()
    );
    if let Some(e) = &uring {
        let s = e.stats();
        println!(
            "io_uring: {:.3} io_uring_enter per op",
            s.enters as f64 / s.completed.max(1) as f64
        );
    }
    let _ = std::fs::remove_file(&path);
}

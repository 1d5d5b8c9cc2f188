//! NOP round trip: the engine against the raw `io-uring` crate, in the same run.
//!
//! `cargo bench --bench nop`. Batched (32 per submit) and single; runs are interleaved and
//! repeated, and the medians with their spread are printed with the engine/raw ratio.
//! The engine's overhead is what it adds per operation: the in-flight table, the ticket, the
//! dispatch. Pin with `taskset -c 1 cargo bench --bench nop` for steadier numbers.

use std::time::{Duration, Instant};

use io_uring::{opcode, IoUring};
use trueio::{op, BackendChoice, Engine, Ticket};

const BATCH: usize = 32;

fn raw_ring() -> IoUring {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(512)
        .build(256)
        .or_else(|_| IoUring::builder().build(256))
        .expect("io_uring setup")
}

fn raw(ring: &mut IoUring, ops: usize, batch: usize) -> Duration {
    let start = Instant::now();
    let mut done = 0;
    while done < ops {
        {
            let mut sq = ring.submission();
            for i in 0..batch {
                let e = opcode::Nop::new().build().user_data(i as u64);
                // SAFETY: a NOP references no memory.
                unsafe { sq.push(&e).expect("sq has room") };
            }
        }
        ring.submit_and_wait(batch).expect("submit");
        let n = ring.completion().count();
        done += n;
    }
    start.elapsed()
}

fn engine(e: &Engine, ops: usize, batch: usize, tickets: &mut Vec<Ticket<op::Nop>>) -> Duration {
    let start = Instant::now();
    let mut done = 0;
    while done < ops {
        for _ in 0..batch {
            tickets.push(e.submit(op::Nop::new()));
        }
        for t in tickets.drain(..) {
            t.wait().expect("engine").expect("nop");
        }
        done += batch;
    }
    start.elapsed()
}

fn median(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn main() {
    let quick = std::env::var("TRUEIO_BENCH_QUICK").is_ok();
    let e = match Engine::builder().backend(BackendChoice::Uring).build() {
        Ok(e) => e,
        Err(err) => {
            println!("nop bench skipped: io_uring unavailable here: {err}");
            return;
        }
    };
    let mut ring = raw_ring();
    let mut tickets = Vec::with_capacity(BATCH);
    let rounds = if quick { 3 } else { 9 };
    println!("NOP round trip, ns per operation (median [min..max] of {rounds} interleaved runs)");
    println!(
        "{:<10} {:>24} {:>24} {:>8}",
        "mode", "raw io-uring crate", "trueio engine", "ratio"
    );
    for (name, batch, ops) in [
        ("batch 32", BATCH, if quick { 64_000 } else { 640_000 }),
        ("single", 1, if quick { 20_000 } else { 200_000 }),
    ] {
        // TRUEIO_NOP_MODE=batch|single runs one mode alone (for a profiler).
        let mode = std::env::var("TRUEIO_NOP_MODE").unwrap_or_default();
        if !mode.is_empty() && !name.starts_with(mode.as_str()) {
            continue;
        }
        // Warm up both.
        raw(&mut ring, ops / 10, batch);
        engine(&e, ops / 10, batch, &mut tickets);
        let (mut r, mut t) = (Vec::new(), Vec::new());
        // TRUEIO_NOP_ONLY=raw|engine runs one side alone (for a profiler).
        let only = std::env::var("TRUEIO_NOP_ONLY").unwrap_or_default();
        for _ in 0..rounds {
            if only != "engine" {
                r.push(raw(&mut ring, ops, batch).as_nanos() as f64 / ops as f64);
            }
            if only != "raw" {
                t.push(engine(&e, ops, batch, &mut tickets).as_nanos() as f64 / ops as f64);
            }
        }
        if r.is_empty() {
            r.push(f64::NAN);
        }
        if t.is_empty() {
            t.push(f64::NAN);
        }
        let (rm, rlo, rhi) = median(&mut r);
        let (tm, tlo, thi) = median(&mut t);
        println!(
            "{:<10} {:>8.1} [{:>5.1}..{:>5.1}] {:>8.1} [{:>5.1}..{:>5.1}] {:>7.2}x",
            name,
            rm,
            rlo,
            rhi,
            tm,
            tlo,
            thi,
            tm / rm
        );
    }
    let s = e.stats();
    println!(
        "engine: {:.3} io_uring_enter per op over the run",
        s.enters as f64 / s.completed.max(1) as f64
    );
}

//! Criterion micro benchmarks: the NOP round trip through the trueio engine (io_uring and
//! epoll) and through the raw `io-uring` crate, one at a time and in batches of 32.
//!
//! `cargo bench --bench micro` (`TRUEIO_BENCH_QUICK=1` for short measurements). The
//! throughput-at-depth workloads (file reads, echo) are in `benches/compare`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use io_uring::{opcode, IoUring};
use trueio::{op, BackendChoice, Engine, Ticket};

fn engine_nops(e: &Engine, batch: usize, tickets: &mut Vec<Ticket<op::Nop>>) {
    for _ in 0..batch {
        tickets.push(e.submit(op::Nop::new()));
    }
    for t in tickets.drain(..) {
        t.wait().expect("engine").expect("nop");
    }
}

fn raw_nops(ring: &mut IoUring, batch: usize) {
    {
        let mut sq = ring.submission();
        for i in 0..batch {
            let e = opcode::Nop::new().build().user_data(i as u64);
            // SAFETY: a NOP references no memory.
            unsafe { sq.push(&e).expect("sq has room") };
        }
    }
    ring.submit_and_wait(batch).expect("io_uring_enter");
    assert_eq!(ring.completion().count(), batch);
}

fn nop(c: &mut Criterion) {
    let mut g = c.benchmark_group("nop");
    let uring = Engine::builder().backend(BackendChoice::Uring).build().ok();
    let epoll = Engine::builder()
        .backend(BackendChoice::Epoll)
        .build()
        .expect("epoll engine");
    let mut ring = uring
        .as_ref()
        .and_then(|_| IoUring::builder().build(256).ok());
    let mut tickets = Vec::with_capacity(32);
    for batch in [1usize, 32] {
        g.throughput(Throughput::Elements(batch as u64));
        if let Some(ring) = ring.as_mut() {
            g.bench_function(BenchmarkId::new("io-uring crate", batch), |b| {
                b.iter(|| raw_nops(ring, batch))
            });
        }
        if let Some(e) = &uring {
            g.bench_function(BenchmarkId::new("trueio io_uring", batch), |b| {
                b.iter(|| engine_nops(e, batch, &mut tickets))
            });
        }
        g.bench_function(BenchmarkId::new("trueio epoll", batch), |b| {
            b.iter(|| engine_nops(&epoll, batch, &mut tickets))
        });
    }
    g.finish();
}

fn config() -> Criterion {
    let c = Criterion::default();
    if std::env::var_os("TRUEIO_BENCH_QUICK").is_some() {
        c.warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_millis(500))
            .sample_size(20)
    } else {
        c
    }
}

criterion_group! {
    name = benches;
    config = config();
    targets = nop
}
criterion_main!(benches);

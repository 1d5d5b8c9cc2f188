//! The comparison suite: one binary, the same workloads and buffers, through trueio on
//! io_uring (plain, and with registered buffers and fixed files), trueio on the epoll
//! fallback, blocking std and tokio, side by side.
//!
//! `cargo bench --bench compare` (full: 5 interleaved rounds of 2 s per cell, medians; about
//! 9 minutes); `TRUEIO_BENCH_QUICK=1 cargo bench --bench compare` (one round of 0.3 s per
//! cell, for CI; under a minute).
//! Prints the table and writes `target/trueio-bench/report.md` and `report.svg`.
//!
//! Workloads: NOP round trip (one at a time and batches of 32); 4 KiB random reads of a
//! page-cached file at queue depth 1 and 32; 128 KiB sequential reads; TCP echo of 64-byte
//! messages over 64 and 1000 connections; metadata (50 000 files in 500 directories, quick:
//! 5 000 in 50, created, stat'ed, renamed, listed and unlinked; see `meta.rs`). The I/O job is pinned to CPU 0 (threads it starts
//! inherit that); for echo the server is a child process on CPU 0 and the load generator a
//! thread on CPU 1. Buffers are page-aligned everywhere (4K aliasing makes misaligned copies
//! many times slower on this machine's CPU). The data file is read whole just before every
//! buffered run (the VM drops idle page cache within about a minute). Cells are interleaved
//! across rounds. System calls are counted by the kernel in a separate, untimed pass (an open
//! `sys_enter` tracepoint slows every system call), when tracefs is readable.
//!
//! `TRUEIO_BENCH_ONLY=substring` keeps the cells whose workload or engine contains it;
//! `TRUEIO_BENCH_DIR` is where the data file goes (default: the temp dir).

mod echo;
#[path = "../common/echo_conn.rs"]
mod echo_conn;
mod local;
mod measure;
mod meta;
mod report;
#[path = "../common/sys.rs"]
mod sys;

use std::fs::File;
use std::io::Write as _;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use local::{Pass, Pattern, Target};
use measure::Sample;
use report::{Family, Row, SysSource};
use trueio::{BackendChoice, Engine};

#[global_allocator]
static ALLOC: measure::CountingAlloc = measure::CountingAlloc;

const NOP1: &str = "NOP, one at a time";
const NOP32: &str = "NOP, batches of 32";
const RAND1: &str = "4 KiB random read, QD1";
const RAND32: &str = "4 KiB random read, QD32";
const SEQ: &str = "128 KiB sequential read, QD1";
const ECHO64: &str = "TCP echo 64 B, 64 conns";
const ECHO1000: &str = "TCP echo 64 B, 1000 conns";
const META: &str = "metadata: create, stat, rename, list, unlink";

/// A timed run whose CPU other work took more of than this is run again (full mode).
const DISTURBED: f64 = 0.10;
const ATTEMPTS: usize = 3;

struct Config {
    quick: bool,
    rounds: usize,
    dur: Duration,
    warmup: Duration,
    /// Echo: connections are opened and exchanging before the window opens.
    echo_warmup: Duration,
    count_dur: Duration,
    file_size: u64,
}

type RunFn<'a> = Box<dyn FnMut(Pass) -> Sample + 'a>;

fn add<'a>(
    cells: &mut Vec<Cell<'a>>,
    workload: &'static str,
    engine: &str,
    family: Family,
    file: bool,
    run: RunFn<'a>,
) {
    cells.push(Cell {
        workload,
        engine: engine.to_string(),
        family,
        file,
        run,
        samples: Vec::new(),
        counted: None,
    })
}

struct Cell<'a> {
    workload: &'static str,
    engine: String,
    family: Family,
    /// Reads the data file: warm the page cache before every run.
    file: bool,
    run: RunFn<'a>,
    samples: Vec<Sample>,
    counted: Option<Sample>,
}

/// `target/` of the build running this binary (`target/release/deps/compare-*`).
fn target_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("current exe");
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// The data file, removed however the run ends.
struct DataFile(PathBuf);

impl Drop for DataFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn make_data_file(path: &Path, size: u64) {
    let mut f = File::create(path).expect("create the data file");
    let chunk: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    for _ in 0..size >> 20 {
        f.write_all(&chunk).expect("write the data file");
    }
    f.sync_all().expect("sync the data file");
}

fn machine() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    // Not available_parallelism: this thread is pinned to one CPU.
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    format!("Linux {}, {cpu}, {n} CPUs", kernel.trim())
}

/// The 1-minute load average (this run's own threads count in it too).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// The share of the measured CPU that other work took during a sample, in percent.
fn others_share(s: &Sample) -> f64 {
    100.0 * s.others
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    if let Ok(kind) = std::env::var(echo::SERVER_ENV) {
        sys::raise_nofile();
        echo::serve(&kind);
        return;
    }
    // `cargo test --benches` runs bench binaries with `--list`-like flags; nothing to do then.
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let quick = std::env::var_os("TRUEIO_BENCH_QUICK").is_some();
    let cfg = if quick {
        Config {
            quick,
            rounds: 1,
            dur: Duration::from_millis(300),
            warmup: Duration::from_millis(50),
            echo_warmup: Duration::from_millis(250),
            count_dur: Duration::from_millis(100),
            file_size: 64 << 20,
        }
    } else {
        Config {
            quick,
            rounds: 5,
            dur: Duration::from_millis(2000),
            warmup: Duration::from_millis(300),
            echo_warmup: Duration::from_millis(500),
            count_dur: Duration::from_millis(500),
            file_size: 256 << 20,
        }
    };
    let began = Instant::now();
    let load_before = loadavg();
    let (busy0, own0) = (
        measure::busy_seconds(None),
        measure::cpu_seconds_with_children(),
    );
    sys::raise_nofile();
    sys::pin(measure::IO_CPU);

    let out_dir = target_dir().join("trueio-bench");
    std::fs::create_dir_all(&out_dir).expect("create target/trueio-bench");
    let data_dir = std::env::var_os("TRUEIO_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let data = DataFile(data_dir.join(format!("trueio-compare-{}", std::process::id())));
    let path = data.0.clone();
    make_data_file(&path, cfg.file_size);
    let file = File::open(&path).expect("open the data file");
    let size = cfg.file_size;

    let uring = Engine::builder().backend(BackendChoice::Uring).build();
    let uring = match uring {
        Ok(e) => Some(e),
        Err(e) => {
            println!("(io_uring unavailable here, its rows are skipped: {e})");
            None
        }
    };
    let uring_fixed = uring.as_ref().map(|_| {
        let e = Engine::builder()
            .backend(BackendChoice::Uring)
            .fixed_buffers(32, 128 << 10)
            .fixed_files(4)
            .build()
            .expect("io_uring engine with registered buffers");
        let slot = e
            .register_file(OwnedFd::from(file.try_clone().expect("dup")))
            .expect("a fixed-file slot");
        (e, slot)
    });
    if let Some((e, _)) = &uring_fixed {
        let registered = e.buffers().is_some_and(|b| b.is_registered());
        if !registered {
            println!("(buffers could not be registered here: the fixed rows run unregistered)");
        }
    }
    let epoll = Engine::builder()
        .backend(BackendChoice::Epoll)
        .build()
        .expect("epoll engine");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut ring = uring.as_ref().and_then(|_| local::raw_ring());
    let ring = ring.as_mut().map(std::cell::RefCell::new);

    // Counting needs tracefs (for the tracepoint's id) and perf events (root, or a low
    // perf_event_paranoid); without them the fallbacks say where each figure comes from.
    let tracepoint =
        measure::sys_enter_id().filter(|&id| measure::SyscallCounter::start(id).is_ok());
    let sys_note = if tracepoint.is_some() {
        "counted by the kernel (a perf counter on the `raw_syscalls:sys_enter` tracepoint, every \
         thread of the process; for echo, of the server process) in a separate untimed pass. \
         For trueio rows, `(e x)` is the engine's own count from `Engine::stats()` over the \
         same pass."
            .to_string()
    } else {
        "tracefs is not readable here (mount it at /sys/kernel/tracing for kernel counts), so: \
         trueio rows `(e)` from `Engine::stats()`; std and tokio file rows `≥x` from \
         `/proc/self/io` syscr + syscw (read/write-family calls only: not `futex`, \
         `epoll_wait`, `recvfrom`/`sendto`), a lower bound; `-` where that sees nothing."
            .to_string()
    };
    println!(
        "compare: {} mode, {} round(s) of {:?} per cell; syscalls {}",
        if quick { "quick" } else { "full" },
        cfg.rounds,
        cfg.dur,
        if tracepoint.is_some() {
            "counted by the kernel"
        } else {
            "from Engine::stats() and /proc/self/io (tracefs not readable)"
        }
    );

    let meta_uring = uring
        .as_ref()
        .map(|_| Engine::builder().backend(BackendChoice::Uring));
    // The same, with io_uring's kernel workers on the other CPUs: the calls in flight then run
    // beside the thread that submits them, which is what io_uring is for (this job's thread
    // stays pinned; so do its workers by default). Not "all CPUs": with the ring's thread
    // pinned, 6.18 gives workers asked for CPUs {0, 1} CPU 0 alone (kernel-notes.md).
    let others: Vec<usize> = sys::all_cpus()
        .into_iter()
        .filter(|&c| c != measure::IO_CPU)
        .collect();
    let meta_uring_wide = uring.as_ref().filter(|_| !others.is_empty()).map(|_| {
        Engine::builder()
            .backend(BackendChoice::Uring)
            .io_worker_cpus(&others)
    });
    // tokio's blocking pool, likewise on every CPU.
    let rt_wide = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_start(sys::unpin)
        .build()
        .expect("tokio runtime");
    let meta_epoll = Engine::builder().backend(BackendChoice::Epoll);
    let tree = meta::tree(&data_dir, quick);
    // The cells borrow these; `move` closures copy the references.
    let (epoll, rt, file, meta_epoll, tree) = (&epoll, &rt, &file, &meta_epoll, &tree);
    let rt_wide = &rt_wide;
    let mut cells: Vec<Cell<'_>> = Vec::new();
    for (w, batch) in [(NOP1, 1usize), (NOP32, 32)] {
        if let Some(ring) = &ring {
            add(
                &mut cells,
                w,
                "io-uring crate (raw)",
                Family::Raw,
                false,
                Box::new(move |p| local::nop_raw(&mut ring.borrow_mut(), batch, p)),
            );
        }
        if let Some(e) = &uring {
            add(
                &mut cells,
                w,
                "trueio io_uring",
                Family::Uring,
                false,
                Box::new(move |p| local::nop_engine(e, batch, p)),
            );
        }
        add(
            &mut cells,
            w,
            "trueio epoll",
            Family::Epoll,
            false,
            Box::new(move |p| local::nop_engine(epoll, batch, p)),
        );
        add(
            &mut cells,
            w,
            "std: getppid()",
            Family::Std,
            false,
            Box::new(local::nop_syscall),
        );
        add(
            &mut cells,
            w,
            "tokio spawn_blocking",
            Family::Tokio,
            false,
            Box::new(move |p| local::nop_tokio(rt, batch, p)),
        );
    }
    let fd = file.as_raw_fd();
    for (w, bs, qd, pattern) in [
        (RAND1, 4096usize, 1usize, Pattern::Random),
        (RAND32, 4096, 32, Pattern::Random),
        (SEQ, 128 << 10, 1, Pattern::Sequential),
    ] {
        if let Some(e) = &uring {
            add(
                &mut cells,
                w,
                "trueio io_uring",
                Family::Uring,
                true,
                Box::new(move |p| {
                    local::engine_reads(e, Target::Plain(fd), size, bs, qd, pattern, p)
                }),
            );
        }
        if let Some((e, slot)) = &uring_fixed {
            add(
                &mut cells,
                w,
                "trueio io_uring fixed",
                Family::UringFixed,
                true,
                Box::new(move |p| {
                    local::engine_reads(e, Target::Fixed(slot), size, bs, qd, pattern, p)
                }),
            );
        }
        add(
            &mut cells,
            w,
            "trueio epoll",
            Family::Epoll,
            true,
            Box::new(move |p| {
                local::engine_reads(epoll, Target::Plain(fd), size, bs, qd, pattern, p)
            }),
        );
        let std_name = match (qd, pattern) {
            (1, _) => "std pread".to_string(),
            (n, _) => format!("std pread, {n} threads"),
        };
        add(
            &mut cells,
            w,
            &std_name,
            Family::Std,
            true,
            Box::new(move |p| local::std_reads(file, size, bs, qd, pattern, p)),
        );
        if matches!(pattern, Pattern::Sequential) {
            add(
                &mut cells,
                w,
                "tokio::fs::File",
                Family::Tokio,
                true,
                Box::new(move |p| local::tokio_fs_sequential(rt, file, bs, p)),
            );
        } else {
            add(
                &mut cells,
                w,
                "tokio spawn_blocking(pread)",
                Family::Tokio,
                true,
                Box::new(move |p| local::tokio_preads(rt, file, size, bs, qd, pattern, p)),
            );
        }
    }
    if let Some(rt) = &meta_uring {
        add(
            &mut cells,
            META,
            "trueio io_uring",
            Family::Uring,
            false,
            Box::new(move |p| meta::trueio_fs(rt, tree, p)),
        );
    }
    add(
        &mut cells,
        META,
        "trueio epoll",
        Family::Epoll,
        false,
        Box::new(move |p| meta::trueio_fs(meta_epoll, tree, p)),
    );
    add(
        &mut cells,
        META,
        "std::fs",
        Family::Std,
        false,
        Box::new(move |p| meta::std_fs(tree, p)),
    );
    if let Some(rt) = &meta_uring_wide {
        add(
            &mut cells,
            META,
            "trueio io_uring, io-wq on the other CPU",
            Family::UringFixed,
            false,
            Box::new(move |p| meta::trueio_fs(rt, tree, p)),
        );
    }
    add(
        &mut cells,
        META,
        "tokio::fs, 64 in flight",
        Family::Tokio,
        false,
        Box::new(move |p| meta::tokio_fs(rt, tree, p)),
    );
    add(
        &mut cells,
        META,
        "tokio::fs, pool on all CPUs",
        Family::Tokio,
        false,
        Box::new(move |p| meta::tokio_fs(rt_wide, tree, p)),
    );
    let warmup = cfg.echo_warmup;
    for (w, conns) in [(ECHO64, 64usize), (ECHO1000, 1000)] {
        for kind in echo::KINDS {
            if kind.starts_with("uring") && uring.is_none() {
                continue;
            }
            let (name, family) = match kind {
                "std" => ("std, thread per conn", Family::Std),
                "tokio" => ("tokio current_thread", Family::Tokio),
                "uring" => ("trueio io_uring", Family::Uring),
                "uring-multishot" => ("trueio io_uring multishot", Family::UringFixed),
                _ => ("trueio epoll", Family::Epoll),
            };
            add(
                &mut cells,
                w,
                name,
                family,
                false,
                Box::new(move |p| echo::run(kind, conns, 64, warmup, p)),
            );
        }
    }
    if let Ok(only) = std::env::var("TRUEIO_BENCH_ONLY") {
        cells.retain(|c| c.workload.contains(&only) || c.engine.contains(&only));
    }

    // Timed rounds: cells of one workload run back to back (rotated each round), so the
    // engines of a row group see the same machine state.
    let timed = Pass {
        dur: cfg.dur,
        count: None,
    };
    let warm_pass = Pass {
        dur: cfg.warmup,
        count: None,
    };
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, c) in cells.iter().enumerate() {
        match groups.last_mut() {
            Some(g) if cells[g[0]].workload == c.workload => g.push(i),
            _ => groups.push(vec![i]),
        }
    }
    for round in 0..cfg.rounds {
        for g in &groups {
            for k in 0..g.len() {
                let c = &mut cells[g[(k + round) % g.len()]];
                // A run that other work disturbed (more than DISTURBED of its CPU taken) is
                // run again, up to ATTEMPTS times; the least disturbed one counts.
                let mut best: Option<Sample> = None;
                for attempt in 1..=ATTEMPTS {
                    if c.file {
                        local::warm(&path);
                    }
                    if !c.workload.starts_with("TCP") {
                        (c.run)(warm_pass);
                    }
                    let s = (c.run)(timed);
                    eprintln!(
                        "round {}/{}  {:<30} {:<28} {:>10.0} ops/s {:>8.2} µs CPU/op  others {:>3.0}%{}",
                        round + 1,
                        cfg.rounds,
                        c.workload,
                        c.engine,
                        s.ops as f64 / s.secs,
                        s.cpu_s * 1e6 / s.ops.max(1) as f64,
                        others_share(&s),
                        if attempt > 1 { format!(" (attempt {attempt})") } else { String::new() }
                    );
                    let quiet = s.others <= DISTURBED;
                    if best.as_ref().map_or(true, |b| s.others < b.others) {
                        best = Some(s);
                    }
                    if quiet || cfg.quick {
                        break;
                    }
                }
                c.samples.push(best.expect("at least one attempt"));
            }
        }
    }
    // The counting pass.
    if let Some(id) = tracepoint {
        for c in &mut cells {
            if c.file {
                local::warm(&path);
            }
            let s = (c.run)(Pass {
                dur: cfg.count_dur,
                count: Some(id),
            });
            eprintln!(
                "syscalls     {:<30} {:<28} {:>10.2} per op",
                c.workload,
                c.engine,
                s.syscalls.unwrap_or(0) as f64 / s.ops.max(1) as f64
            );
            c.counted = Some(s);
        }
    }
    drop(data);
    let _ = std::fs::remove_dir_all(&tree.root);

    let rows: Vec<Row> = cells
        .iter()
        .map(|c| {
            let per = |f: &dyn Fn(&Sample) -> Option<f64>| {
                median(
                    c.samples
                        .iter()
                        .filter(|s| s.ops > 0)
                        .filter_map(|s| f(s).map(|v| v / s.ops as f64))
                        .collect(),
                )
            };
            let rates: Vec<f64> = c.samples.iter().map(|s| s.ops as f64 / s.secs).collect();
            let rate = median(rates.clone());
            let lo = rates.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = rates.iter().copied().fold(0.0, f64::max);
            let engine_sys = per(&|s| s.engine_syscalls.map(|v| v as f64));
            let engine_sys = engine_sys.is_finite().then_some(engine_sys);
            let syscalls = match &c.counted {
                Some(s) => s
                    .syscalls
                    .map(|v| (v as f64 / s.ops.max(1) as f64, SysSource::Kernel)),
                None => match engine_sys {
                    Some(v) => Some((v, SysSource::Engine)),
                    None => {
                        let v = per(&|s| s.proc_io.map(|v| v as f64));
                        // Below one call in two operations it sees nothing of this row's I/O
                        // (sockets, io_uring), only its own reads of /proc/self/io.
                        (v.is_finite() && v >= 0.5).then_some((v, SysSource::ProcIo))
                    }
                },
            };
            Row {
                workload: c.workload,
                engine: c.engine.clone(),
                family: c.family,
                ops_per_s: rate,
                spread: if rate > 0.0 { (hi - lo) / rate } else { 0.0 },
                cpu_us: per(&|s| Some(s.cpu_s * 1e6)),
                allocs: per(&|s| Some(s.allocs as f64)),
                syscalls,
                // The engine's own count over the same (counting) pass, to set beside the
                // kernel's.
                engine_syscalls: c.counted.as_ref().and_then(|s| {
                    s.engine_syscalls
                        .filter(|_| s.ops > 0)
                        .map(|v| v as f64 / s.ops as f64)
                }),
                others: median(c.samples.iter().map(others_share).collect()),
                p50_us: median(c.samples.iter().map(|s| s.p50_us).collect()),
                p99_us: median(c.samples.iter().map(|s| s.p99_us).collect()),
            }
        })
        .collect();

    let mut command = String::new();
    if let Ok(only) = std::env::var("TRUEIO_BENCH_ONLY") {
        command += &format!("TRUEIO_BENCH_ONLY={only:?} ");
    }
    if quick {
        command += "TRUEIO_BENCH_QUICK=1 ";
    }
    command += "cargo bench --bench compare";
    let others_total = {
        let busy = measure::busy_seconds(None) - busy0;
        let own = measure::cpu_seconds_with_children() - own0;
        // SAFETY: sysconf has no preconditions.
        let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as f64;
        100.0 * (busy - own).max(0.0) / (began.elapsed().as_secs_f64() * cpus)
    };
    let meta = report::Meta {
        command,
        mode: format!(
            "{}: {} round(s) of {:.1} s per cell, medians; ran {:.0} s",
            if cfg.quick { "quick" } else { "full" },
            cfg.rounds,
            cfg.dur.as_secs_f64(),
            began.elapsed().as_secs_f64()
        ),
        machine: format!(
            "{}; load average {load_before} at the start; other work took {:.0}% of the \
             machine's CPU over the run",
            machine(),
            others_total
        ),
        sys_note,
        notes: vec![
            "trueio rows drive the Completion API directly (`Engine::submit`, as \
             `examples/iobench`); echo servers use `trueio::rt` and `trueio::net`. \
             `io_uring fixed`: registered buffers and a fixed file (`ReadFixed`). \
             `io_uring multishot`: multishot receive into a ring of provided buffers, sending \
             straight from it."
                .into(),
            "NOP: std has no NOP; its row is one trivial system call (`getppid`), the floor of \
             any synchronous operation, and it has nothing to batch. tokio's row is \
             `spawn_blocking` of an empty closure, the round trip `tokio::fs` pays per call."
                .into(),
            format!(
                "File reads: a {} MiB file in the page cache, read whole just before each run; \
                 QD32 for std is 32 threads doing `pread`, for tokio 32 tasks each awaiting \
                 `spawn_blocking(pread)` on a current-thread runtime; all on one CPU. \
                 Sequential: tokio reads through `tokio::fs::File` (its own buffer, then a \
                 copy).",
                cfg.file_size >> 20
            ),
            "Echo: ops are round trips of 64-byte messages; the tokio load generator (CPU 1) \
             is the same for every server and limits ops/s near its own ceiling, so the \
             server's CPU per message tells the engines apart best. The std server runs a \
             thread per connection."
                .into(),
        ],
    };
    let md = report::markdown(&rows, &meta);
    println!("\n{}", report::table(&rows));
    std::fs::write(out_dir.join("report.md"), &md).expect("write report.md");
    std::fs::write(out_dir.join("report.svg"), report::svg(&rows, &meta))
        .expect("write report.svg");
    println!(
        "wrote {} and report.svg ({:.0} s)",
        out_dir.join("report.md").display(),
        began.elapsed().as_secs_f64()
    );
}

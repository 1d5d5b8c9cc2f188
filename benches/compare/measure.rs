//! What every row measures, and how: a counting allocator, a latency histogram, the kernel's
//! count of system calls (a perf counter on the `raw_syscalls:sys_enter` tracepoint), CPU
//! time, and a `Meter` that snapshots them around a timed section.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// The system allocator, counting every allocation (alloc, alloc_zeroed, realloc) in the process.
pub struct CountingAlloc;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the counter has no
// effect on the memory handed out.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: the caller's obligations are the system allocator's.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(p, l, new) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(p, l) }
    }
}

/// Allocations made by the whole process so far.
pub fn allocs() -> u64 {
    ALLOCS.load(Relaxed)
}

/// User + system CPU time of the whole process (all threads), in seconds.
pub fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// The CPU the I/O job (or the echo server) is pinned to.
pub const IO_CPU: usize = 0;
/// The CPU the echo load generator is pinned to.
pub const LOAD_CPU: usize = 1;

/// Seconds the machine (`None`) or one CPU spent busy (every process, kernel included): its
/// `/proc/stat` line less idle and iowait.
pub fn busy_seconds(cpu: Option<usize>) -> f64 {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let prefix = match cpu {
        None => "cpu ".to_string(),
        Some(n) => format!("cpu{n} "),
    };
    let Some(line) = stat.lines().find(|l| l.starts_with(&prefix)) else {
        return f64::NAN;
    };
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let busy: f64 = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    busy / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// CPU time of this process and of its children that have been waited for, in seconds.
pub fn cpu_seconds_with_children() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    cpu_seconds() + t(ru.ru_utime) + t(ru.ru_stime)
}

/// `syscr + syscw` from `/proc/self/io`: read- and write-family calls only (`read`, `pread64`,
/// `readv`, `write`, ...; not `recvfrom`/`sendto`, `futex`, `epoll_wait`, `io_uring_enter`).
pub fn proc_io_calls() -> Option<u64> {
    let s = fs::read_to_string("/proc/self/io").ok()?;
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    Some(field("syscr:")? + field("syscw:")?)
}

/// Latency histogram: exact below 32 ns, then 16 linear buckets per power of two (at most ~3%
/// off). Fixed size, so recording never allocates.
pub struct Histogram {
    counts: Box<[u64; 1024]>,
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram {
            counts: Box::new([0; 1024]),
        }
    }

    fn index(ns: u64) -> usize {
        if ns < 32 {
            return ns as usize;
        }
        let msb = 63 - ns.leading_zeros() as usize;
        let sub = ((ns >> (msb - 4)) - 16) as usize;
        32 + (msb - 5) * 16 + sub
    }

    fn value(i: usize) -> f64 {
        if i < 32 {
            return i as f64;
        }
        let (msb, sub) = ((i - 32) / 16 + 5, (i - 32) % 16);
        let width = 1u64 << (msb - 4);
        ((16 + sub as u64) * width) as f64 + width as f64 / 2.0
    }

    pub fn record(&mut self, d: Duration) {
        self.record_n(d, 1);
    }

    pub fn record_n(&mut self, d: Duration, n: u64) {
        let ns = d.as_nanos().min(u64::MAX as u128) as u64;
        self.counts[Self::index(ns)] += n;
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The `p` quantile (0..=1) in microseconds; NaN when empty.
    pub fn quantile_us(&self, p: f64) -> f64 {
        let total = self.count();
        if total == 0 {
            return f64::NAN;
        }
        let target = ((p * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= target {
                return Self::value(i) / 1000.0;
            }
        }
        f64::NAN
    }
}

const PERF_TYPE_TRACEPOINT: u32 = 2;
const ATTR_INHERIT: u64 = 1 << 1;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;

/// `struct perf_event_attr` up to `config1` (PERF_ATTR_SIZE_VER0, 64 bytes).
#[repr(C)]
#[derive(Default)]
struct PerfAttr {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

/// The id of the `raw_syscalls:sys_enter` tracepoint, when tracefs is mounted and readable.
pub fn sys_enter_id() -> Option<u64> {
    [
        "/sys/kernel/tracing/events/raw_syscalls/sys_enter/id",
        "/sys/kernel/debug/tracing/events/raw_syscalls/sys_enter/id",
    ]
    .iter()
    .find_map(|p| fs::read_to_string(p).ok()?.trim().parse().ok())
}

/// The kernel's count of system calls entered by every thread of this process (and the
/// threads they start), from `start` until `stop`.
///
/// One counter per thread, each inherited by the threads it starts. The counters exist only
/// while counting: an open `sys_enter` tracepoint sends every system call on the machine
/// through the slow entry path, so timed runs never have one open.
pub struct SyscallCounter {
    fds: Vec<OwnedFd>,
}

impl SyscallCounter {
    pub fn start(id: u64) -> std::io::Result<SyscallCounter> {
        let mut fds = Vec::new();
        for entry in fs::read_dir("/proc/self/task")? {
            let Some(tid) = entry?
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            let attr = PerfAttr {
                type_: PERF_TYPE_TRACEPOINT,
                size: std::mem::size_of::<PerfAttr>() as u32,
                config: id,
                flags: ATTR_INHERIT,
                ..PerfAttr::default()
            };
            // SAFETY: attr is a valid perf_event_attr of the size it declares, alive for the
            // call; the kernel copies it.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_perf_event_open,
                    &attr as *const PerfAttr,
                    tid,
                    -1,
                    -1,
                    PERF_FLAG_FD_CLOEXEC,
                )
            };
            if fd < 0 {
                let e = std::io::Error::last_os_error();
                // A thread that exited since the listing.
                if e.raw_os_error() == Some(libc::ESRCH) {
                    continue;
                }
                return Err(e);
            }
            // SAFETY: perf_event_open returned a new descriptor that nothing else owns.
            fds.push(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        }
        Ok(SyscallCounter { fds })
    }

    pub fn stop(self) -> u64 {
        self.fds
            .iter()
            .map(|fd| {
                let mut v = 0u64;
                // SAFETY: reads 8 bytes into v, a valid u64 on this frame.
                let n = unsafe { libc::read(fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
                assert_eq!(n, 8, "reading a perf counter");
                v
            })
            .sum()
    }
}

/// What one timed section measured.
#[derive(Clone, Default)]
pub struct Sample {
    pub ops: u64,
    pub secs: f64,
    pub cpu_s: f64,
    pub allocs: u64,
    /// Kernel-counted system calls (a counting pass only).
    pub syscalls: Option<u64>,
    /// `Engine::stats().syscalls` over the section (trueio rows).
    pub engine_syscalls: Option<u64>,
    /// `/proc/self/io` syscr + syscw over the section.
    pub proc_io: Option<u64>,
    pub p50_us: f64,
    pub p99_us: f64,
    /// The share (0..1) of the measured CPU that other work took during the section (for
    /// echo, the larger of the server's and the load generator's CPU): how disturbed it was.
    pub others: f64,
}

struct Snap {
    t: Instant,
    cpu: f64,
    busy: f64,
    allocs: u64,
    io: Option<u64>,
    engine: Option<trueio::Stats>,
}

/// Snapshots the process's counters around a timed section.
pub struct Meter {
    /// `Some(tracepoint id)` in a counting pass.
    count_syscalls: Option<u64>,
    counter: Option<SyscallCounter>,
    start: Option<Snap>,
}

impl Meter {
    pub fn new(count_syscalls: Option<u64>) -> Meter {
        Meter {
            count_syscalls,
            counter: None,
            start: None,
        }
    }

    pub fn begin(&mut self, engine: Option<&trueio::Engine>) {
        let io = proc_io_calls();
        let engine = engine.map(|e| e.stats());
        // The counters' own setup (a few allocations and system calls) stays outside.
        self.counter = self
            .count_syscalls
            .map(|id| SyscallCounter::start(id).expect("opening the syscall counters"));
        let allocs = allocs();
        let busy = busy_seconds(Some(IO_CPU));
        let cpu = cpu_seconds();
        self.start = Some(Snap {
            t: Instant::now(),
            cpu,
            busy,
            allocs,
            io,
            engine,
        });
    }

    pub fn end(&mut self, ops: u64, engine: Option<&trueio::Engine>, hist: &Histogram) -> Sample {
        let syscalls = self.counter.take().map(SyscallCounter::stop);
        let t = Instant::now();
        let cpu = cpu_seconds();
        let busy = busy_seconds(Some(IO_CPU));
        let allocs = allocs();
        let engine = engine.map(|e| e.stats());
        let io = proc_io_calls();
        let s = self.start.take().expect("Meter::begin before end");
        let secs = t.duration_since(s.t).as_secs_f64();
        Sample {
            ops,
            secs,
            cpu_s: cpu - s.cpu,
            allocs: allocs - s.allocs,
            syscalls,
            engine_syscalls: match (engine, s.engine) {
                (Some(b), Some(a)) => Some(b.since(&a).syscalls),
                _ => None,
            },
            proc_io: match (io, s.io) {
                (Some(b), Some(a)) => Some(b - a),
                _ => None,
            },
            p50_us: hist.quantile_us(0.50),
            p99_us: hist.quantile_us(0.99),
            // Every thread of the job is pinned to IO_CPU.
            others: ((busy - s.busy - (cpu - s.cpu)) / secs).clamp(0.0, 1.0),
        }
    }
}

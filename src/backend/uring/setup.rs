//! Ring setup with the best flags the running kernel accepts, the probe, and the
//! registrations (ring fd, buffers, files), each degrading on its own with a recorded reason.

use std::io;
use std::os::fd::AsRawFd;

use io_uring::{opcode, IoUring, Probe};

use super::{submit, Driver};
use crate::backend::{Config, FdFacts, Offload};
use crate::buf::BufPool;
use crate::capability::{io_uring_disabled, memlock, Backend, Feature, Report, Status};

/// A set of setup flags to try, best first.
struct Rung {
    name: &'static str,
    single_issuer: bool,
    defer_taskrun: bool,
    coop_taskrun: bool,
    submit_all: bool,
}

const RUNGS: &[Rung] = &[
    Rung {
        name: "SINGLE_ISSUER | DEFER_TASKRUN | SUBMIT_ALL",
        single_issuer: true,
        defer_taskrun: true,
        coop_taskrun: false,
        submit_all: true,
    },
    Rung {
        name: "SINGLE_ISSUER | COOP_TASKRUN | SUBMIT_ALL",
        single_issuer: true,
        defer_taskrun: false,
        coop_taskrun: true,
        submit_all: true,
    },
    Rung {
        name: "COOP_TASKRUN | SUBMIT_ALL",
        single_issuer: false,
        defer_taskrun: false,
        coop_taskrun: true,
        submit_all: true,
    },
    Rung {
        name: "SUBMIT_ALL",
        single_issuer: false,
        defer_taskrun: false,
        coop_taskrun: false,
        submit_all: true,
    },
    Rung {
        name: "(none)",
        single_issuer: false,
        defer_taskrun: false,
        coop_taskrun: false,
        submit_all: false,
    },
];

/// The opcodes the engine needs on io_uring (all in 5.6), and the optional ones.
const REQUIRED: &[(&str, u8)] = &[
    ("NOP", opcode::Nop::CODE),
    ("READ", opcode::Read::CODE),
    ("WRITE", opcode::Write::CODE),
    ("READV", opcode::Readv::CODE),
    ("WRITEV", opcode::Writev::CODE),
    ("READ_FIXED", opcode::ReadFixed::CODE),
    ("WRITE_FIXED", opcode::WriteFixed::CODE),
    ("FSYNC", opcode::Fsync::CODE),
    ("FALLOCATE", opcode::Fallocate::CODE),
    ("OPENAT2", opcode::OpenAt2::CODE),
    ("CLOSE", opcode::Close::CODE),
    ("STATX", opcode::Statx::CODE),
    ("TIMEOUT", opcode::Timeout::CODE),
    ("LINK_TIMEOUT", opcode::LinkTimeout::CODE),
    ("ASYNC_CANCEL", opcode::AsyncCancel::CODE),
    ("POLL_ADD", opcode::PollAdd::CODE),
];

const OPTIONAL: &[(&str, u8)] = &[
    ("SPLICE", opcode::Splice::CODE),
    ("SEND", opcode::Send::CODE),
    ("RECV", opcode::Recv::CODE),
    ("ACCEPT", opcode::Accept::CODE),
    ("CONNECT", opcode::Connect::CODE),
    ("SHUTDOWN", opcode::Shutdown::CODE),
    ("SOCKET", opcode::Socket::CODE),
    ("SEND_ZC", opcode::SendZc::CODE),
    ("READ_MULTISHOT", opcode::ReadMulti::CODE),
    ("FIXED_FD_INSTALL", 54),
];

fn describe_setup_error(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOSYS) => {
            "io_uring_setup failed with ENOSYS: the kernel has no io_uring (before 5.1, or \
             CONFIG_IO_URING off), or a seccomp filter hides it"
                .to_string()
        }
        Some(libc::EPERM) | Some(libc::EACCES) => {
            let sysctl = match io_uring_disabled() {
                Some(v) => format!("kernel.io_uring_disabled={v}"),
                None => "no kernel.io_uring_disabled sysctl".to_string(),
            };
            format!(
                "io_uring_setup failed with EPERM ({sysctl}; a container seccomp profile such \
                 as Docker's default also denies it)"
            )
        }
        Some(libc::ENOMEM) => {
            let (soft, _) = memlock();
            format!(
                "io_uring_setup failed with ENOMEM (RLIMIT_MEMLOCK soft limit {soft} bytes; \
                 without CAP_IPC_LOCK, ring memory is charged to it before 5.12 and again on recent kernels)"
            )
        }
        _ => format!("io_uring_setup failed: {e}"),
    }
}

impl Driver {
    pub(crate) fn open(b: &Config, bufs: Option<&BufPool>) -> io::Result<(Driver, Report)> {
        let mut report = Report::new(Backend::Uring, String::new());
        let mut sq = b.entries.next_power_of_two().clamp(1, 32768);
        loop {
            match Self::open_sized(b, bufs, sq, report.clone()) {
                // Ring memory is charged to RLIMIT_MEMLOCK for processes without
                // CAP_IPC_LOCK (before 5.12; seen again on 6.18, per user): a smaller ring may
                // still fit.
                Err(e) if e.kind() == io::ErrorKind::OutOfMemory && sq > 8 => {
                    report.setup_rejected.push(format!(
                        "SQ {sq}: ENOMEM (RLIMIT_MEMLOCK), trying SQ {}",
                        sq / 2
                    ));
                    sq /= 2;
                }
                r => return r,
            }
        }
    }

    /// One attempt at a ring of `sq` entries: the setup ladder, the minimum checks, then each
    /// registration on its own rung, every step recorded in the report.
    fn open_sized(
        b: &Config,
        bufs: Option<&BufPool>,
        sq: u32,
        mut report: Report,
    ) -> io::Result<(Driver, Report)> {
        let cq = b
            .cq_entries
            .unwrap_or(0)
            .max(sq * 2)
            .next_power_of_two()
            .min(65536);
        let (ring, rung, sqpoll_on) = build_ring(b, sq, cq, &mut report)?;
        let probe = check_minimum(&ring)?;
        describe_ring(&mut report, &ring, &probe, rung, sqpoll_on, b);
        let ext_arg = ring.params().is_feature_ext_arg() && !b.is_disabled(Feature::ExtArg);
        report.timed_wait = if ext_arg {
            Status::on("io_uring_enter with EXT_ARG timeout")
        } else {
            Status::off("no EXT_ARG (before 5.11) or disabled: an internal TIMEOUT request bounds each timed wait")
        };
        let (enter_fd, registered) = register_ring_fd(&ring, b, &mut report);
        report.registered_buffers = register_buffers(&ring, b, bufs);
        let (fixed_files, fixed_native) = register_files(&ring, b);
        report.fixed_files = fixed_files;
        report.io_workers = io_worker_cpus(&ring, b);
        report.paths = paths(&report, &probe);
        let driver = Driver {
            ring,
            enter_fd,
            registered,
            ext_arg,
            sqpoll: sqpoll_on,
            fixed_native,
            fail_next: None,
            cqes: Vec::with_capacity(cq as usize),
            wait_ts: Box::new(io_uring::types::Timespec::new()),
            wait_pending: None,
            deferred_cancels: Vec::new(),
            buf_rings: Vec::new(),
            bufs: bufs.cloned(),
            facts: FdFacts::default(),
            lone_reads: !b.is_disabled(Feature::NowaitReads),
            inline_writes: b.inline_file_writes,
            opcodes: opcode_bits(&probe, &b.masked_opcodes),
            offload: Offload::new(b),
        };
        Ok((driver, report))
    }
}

/// A ring with `rung`'s flags (and SQPOLL with `sqpoll`'s idle time).
fn try_rung(b: &Config, sq: u32, cq: u32, rung: &Rung, sqpoll: Option<u32>) -> io::Result<IoUring> {
    let mut builder = IoUring::builder();
    builder.setup_cqsize(cq).dontfork();
    if rung.single_issuer {
        builder.setup_single_issuer();
    }
    if rung.defer_taskrun {
        builder.setup_defer_taskrun();
    }
    if rung.coop_taskrun {
        builder.setup_coop_taskrun();
    }
    if rung.submit_all {
        builder.setup_submit_all();
    }
    if let Some(idle) = sqpoll {
        builder.setup_sqpoll(idle);
        if let Some(cpu) = b.sqpoll_cpu {
            builder.setup_sqpoll_cpu(cpu);
        }
    }
    builder.build(sq)
}

/// Whether `rung` asks only for flags the builder did not switch off.
fn usable(b: &Config, r: &Rung) -> bool {
    !(r.single_issuer && b.is_disabled(Feature::SingleIssuer)
        || r.defer_taskrun && b.is_disabled(Feature::DeferTaskrun)
        || r.coop_taskrun && b.is_disabled(Feature::CoopTaskrun)
        || r.submit_all && b.is_disabled(Feature::SubmitAll))
}

/// The setup ladder: the best rung of flags the kernel accepts, with SQPOLL first when asked;
/// each refusal goes to the report. The ring, its rung, and whether SQPOLL runs.
fn build_ring(
    b: &Config,
    sq: u32,
    cq: u32,
    report: &mut Report,
) -> io::Result<(IoUring, &'static Rung, bool)> {
    let sqpoll_tries: &[Option<u32>] = match b.sqpoll_idle {
        Some(ref idle) => &[Some(*idle), None][..],
        None => &[None],
    };
    'sqpoll: for &sqpoll in sqpoll_tries {
        for rung in RUNGS.iter().filter(|r| usable(b, r)) {
            // DEFER_TASKRUN needs the submitter to reap; SQPOLL submits from a kernel thread:
            // the kernel rejects the pair.
            if sqpoll.is_some() && rung.defer_taskrun {
                continue;
            }
            let with = if sqpoll.is_some() { " | SQPOLL" } else { "" };
            match try_rung(b, sq, cq, rung, sqpoll) {
                Ok(ring) => return Ok((ring, rung, sqpoll.is_some())),
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    report
                        .setup_rejected
                        .push(format!("{}{with}: EINVAL", rung.name));
                }
                Err(e) if sqpoll.is_some() && e.raw_os_error() == Some(libc::EPERM) => {
                    report.setup_rejected.push(format!(
                        "{}{with}: EPERM (needs privileges before 5.11)",
                        rung.name
                    ));
                    continue 'sqpoll;
                }
                Err(e) => return Err(io::Error::new(e.kind(), describe_setup_error(&e))),
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "io_uring_setup rejected every flag set: {}",
            report.setup_rejected.join("; ")
        ),
    ))
}

/// The io-wq affinity rung: the CPUs the builder asked for, or why not.
fn io_worker_cpus(ring: &IoUring, b: &Config) -> Status {
    let Some(cpus) = &b.io_worker_cpus else {
        return Status::off("the ring creator's CPUs (the default)");
    };
    // SAFETY: cpu_set_t is a plain bit array; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
        // SAFETY: `cpu` is below CPU_SETSIZE, the set's size in bits.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    match ring.submitter().register_iowq_aff(&set) {
        Ok(()) => Status::on(format!("CPUs {cpus:?}")),
        Err(e) => Status::off(format!(
            "IORING_REGISTER_IOWQ_AFF failed ({e}; needs 5.14): the ring creator's CPUs"
        )),
    }
}

/// The opcodes of the probe, less `masked`, one bit each.
fn opcode_bits(probe: &Probe, masked: &[u8]) -> [u64; 4] {
    let mut bits = [0u64; 4];
    for code in 0..=u8::MAX {
        if probe.is_supported(code) && !masked.contains(&code) {
            bits[usize::from(code / 64)] |= 1 << (code % 64);
        }
    }
    bits
}

/// The minimum the engine needs (NODROP, SUBMIT_STABLE, the basic opcodes): the probe, or
/// why this ring cannot serve.
fn check_minimum(ring: &IoUring) -> io::Result<Probe> {
    let p = ring.params();
    if !p.is_feature_nodrop() || !p.is_feature_submit_stable() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "io_uring lacks IORING_FEAT_NODROP or IORING_FEAT_SUBMIT_STABLE (kernel before \
             5.5): completions could be lost",
        ));
    }
    let mut probe = Probe::new();
    if let Err(e) = ring.submitter().register_probe(&mut probe) {
        return Err(io::Error::new(
            e.kind(),
            format!(
                "io_uring probe failed ({e}): kernel before 5.6, which lacks the basic opcodes"
            ),
        ));
    }
    let missing: Vec<&str> = REQUIRED
        .iter()
        .filter(|(_, c)| !probe.is_supported(*c))
        .map(|(n, _)| *n)
        .collect();
    if !missing.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("io_uring lacks required opcodes: {}", missing.join(", ")),
        ));
    }
    Ok(probe)
}

/// The ring's sizes, setup flags, SQPOLL state, kernel features and opcodes, for the report.
fn describe_ring(
    report: &mut Report,
    ring: &IoUring,
    probe: &Probe,
    rung: &Rung,
    sqpoll_on: bool,
    b: &Config,
) {
    let p = ring.params();
    report.backend_reason = "io_uring set up with the minimum features".into();
    report.queue_sizes = (p.sq_entries(), p.cq_entries());
    report.setup_flags = rung.name.split(" | ").filter(|s| *s != "(none)").collect();
    report.setup_flags.push("CQSIZE");
    if sqpoll_on {
        report.setup_flags.push("SQPOLL");
        report.sqpoll = Status::on(format!(
            "kernel thread polls the SQ, sleeps after {} ms idle",
            b.sqpoll_idle.unwrap_or(0)
        ));
    } else if b.sqpoll_idle.is_some() {
        report.sqpoll = Status::off("requested but rejected by the kernel");
    }
    report.features = vec![
        ("NODROP", p.is_feature_nodrop()),
        ("SUBMIT_STABLE", p.is_feature_submit_stable()),
        ("RW_CUR_POS", p.is_feature_rw_cur_pos()),
        ("FAST_POLL", p.is_feature_fast_poll()),
        ("EXT_ARG", p.is_feature_ext_arg()),
        ("NATIVE_WORKERS", p.is_feature_native_workers()),
        ("LINKED_FILE", p.is_feature_linked_file()),
    ];
    report.opcodes = REQUIRED
        .iter()
        .chain(OPTIONAL)
        .map(|(n, c)| (*n, probe.is_supported(*c)))
        .collect();
}

/// The registered ring descriptor rung: the descriptor (or registered index) enters use, and
/// whether it is registered.
fn register_ring_fd(ring: &IoUring, b: &Config, report: &mut Report) -> (i32, bool) {
    let ring_fd = ring.as_raw_fd();
    if b.is_disabled(Feature::RegisteredRingFd) {
        report.registered_ring_fd = Status::off("disabled by the builder");
        return (ring_fd, false);
    }
    match submit::register_ring_fd(ring_fd) {
        Ok(idx) => {
            report.registered_ring_fd = Status::on("io_uring_enter skips the descriptor lookup");
            (idx as i32, true)
        }
        Err(e) => {
            report.registered_ring_fd =
                Status::off(format!("IORING_REGISTER_RING_FDS failed ({e}; needs 5.18)"));
            (ring_fd, false)
        }
    }
}

/// The registered buffers rung: the whole arena in one registration, or why not.
fn register_buffers(ring: &IoUring, b: &Config, bufs: Option<&BufPool>) -> Status {
    let pool = match bufs {
        None => return Status::off("no buffer pool configured"),
        Some(_) if b.is_disabled(Feature::RegisteredBuffers) => {
            return Status::off("disabled by the builder: fixed operations run as plain ones")
        }
        Some(pool) => pool,
    };
    let iov = pool.arena_iovec();
    // SAFETY: the kernel pins the arena's pages; the arena stays mapped as long as the ring
    // because the driver keeps a handle on the pool (`Driver::bufs`), and every FixedBuf in
    // flight keeps it too.
    match unsafe { ring.submitter().register_buffers(&[iov]) } {
        Ok(()) => {
            pool.mark_registered(b.engine_id, 0);
            Status::on(format!(
                "{} x {} KiB registered as one arena ({} KiB pinned)",
                pool.count(),
                pool.buf_size() / 1024,
                iov.iov_len / 1024
            ))
        }
        Err(e) => {
            let why = match e.raw_os_error() {
                Some(libc::ENOMEM) => format!(
                    "RLIMIT_MEMLOCK (soft {} bytes) is below the {} bytes to pin and \
                     CAP_IPC_LOCK is absent; raise `ulimit -l`",
                    memlock().0,
                    iov.iov_len
                ),
                Some(libc::EPERM) => "EPERM from the kernel".to_string(),
                _ => e.to_string(),
            };
            Status::off(format!(
                "registration refused ({why}): fixed operations run as plain ones, same results"
            ))
        }
    }
}

/// The fixed-file rung: a sparse table of direct-descriptor slots (a table of -1 before
/// 5.19), or emulated slots; the status and whether the slots are the kernel's.
fn register_files(ring: &IoUring, b: &Config) -> (Status, bool) {
    if b.fixed_files == 0 {
        return (Status::off("no slots configured"), false);
    }
    if b.is_disabled(Feature::FixedFiles) {
        return (
            Status::off("disabled by the builder: slots are emulated with ordinary descriptors"),
            false,
        );
    }
    let sub = ring.submitter();
    let r = sub
        .register_files_sparse(b.fixed_files)
        .map(|_| "sparse")
        .or_else(|_| {
            sub.register_files(&vec![-1; b.fixed_files as usize])
                .map(|_| "table of -1")
        });
    match r {
        Ok(how) => (
            Status::on(format!("{} direct-descriptor slots ({how})", b.fixed_files)),
            true,
        ),
        Err(e) => (
            Status::off(format!(
                "registration failed ({e}): slots are emulated with ordinary descriptors"
            )),
            false,
        ),
    }
}

/// The path each operation takes on this ring.
fn paths(report: &Report, probe: &Probe) -> Vec<(&'static str, String)> {
    let or_einval = |code: u8, op: &str, since: &str| {
        if probe.is_supported(code) {
            format!("IORING_OP_{op}")
        } else {
            format!("unsupported by this kernel ({since}+): completes with EINVAL")
        }
    };
    let fixed_bufs = if report.registered_buffers.active {
        "IORING_OP_READ_FIXED / WRITE_FIXED on the registered arena"
    } else {
        "IORING_OP_READ / WRITE (buffers not registered)"
    };
    let open = if report.fixed_files.active {
        "IORING_OP_OPENAT2 (direct: into a fixed slot)"
    } else {
        "IORING_OP_OPENAT2 (direct: emulated slot)"
    };
    vec![
        ("nop", "IORING_OP_NOP".into()),
        (
            "read/write",
            "IORING_OP_READ / WRITE (async in the kernel)".into(),
        ),
        ("read_fixed", fixed_bufs.into()),
        ("readv/writev", "IORING_OP_READV / WRITEV".into()),
        ("fsync", "IORING_OP_FSYNC".into()),
        ("fallocate", "IORING_OP_FALLOCATE".into()),
        ("open", open.into()),
        ("close", "IORING_OP_CLOSE".into()),
        ("statx", "IORING_OP_STATX".into()),
        ("timeout", "IORING_OP_TIMEOUT / LINK_TIMEOUT".into()),
        ("cancel", "IORING_OP_ASYNC_CANCEL".into()),
        ("poll", "IORING_OP_POLL_ADD".into()),
        ("splice", or_einval(opcode::Splice::CODE, "SPLICE", "5.7")),
        (
            "accept/connect",
            "IORING_OP_ACCEPT (SOCK_CLOEXEC | SOCK_NONBLOCK) / CONNECT".into(),
        ),
        ("send/recv", "IORING_OP_SEND (MSG_NOSIGNAL) / RECV".into()),
        (
            "shutdown",
            or_einval(opcode::Shutdown::CODE, "SHUTDOWN", "5.11"),
        ),
    ]
}

//! What the running kernel gives us, what we use, and why: the capability report.

use std::fmt;

/// The backend an engine runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// io_uring: true completion I/O.
    Uring,
    /// epoll readiness plus a blocking pool for files.
    Epoll,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Uring => "io_uring",
            Backend::Epoll => "epoll",
        })
    }
}

/// An optional kernel feature the engine uses when it can. Each can be switched off with
/// [`Builder::disable`](crate::Builder::disable) to take the next rung of the degradation ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Feature {
    /// `IORING_SETUP_SINGLE_ISSUER` (6.0).
    SingleIssuer,
    /// `IORING_SETUP_DEFER_TASKRUN` (6.1).
    DeferTaskrun,
    /// `IORING_SETUP_COOP_TASKRUN` (5.19).
    CoopTaskrun,
    /// `IORING_SETUP_SUBMIT_ALL` (5.18).
    SubmitAll,
    /// A registered ring descriptor (`IORING_REGISTER_RING_FDS`, 5.18).
    RegisteredRingFd,
    /// Registered (fixed) buffers (5.1).
    RegisteredBuffers,
    /// A native fixed-file table (sparse registration 5.19; 5.1 with a table of -1).
    FixedFiles,
    /// `IORING_ENTER_EXT_ARG` timed waits (5.11).
    ExtArg,
    /// `RWF_NOWAIT` inline attempts on the epoll backend (4.14 for reads).
    NowaitReads,
    /// Kernel AIO (`io_submit` with `RWF_NOWAIT`, 4.13) for `O_DIRECT` file transfers on the
    /// epoll backend, instead of a pool thread each.
    LinuxAio,
}

impl Feature {
    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// A set of [`Feature`]s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features(u32);

impl Features {
    /// The empty set.
    pub const fn empty() -> Features {
        Features(0)
    }

    /// Adds a feature.
    pub fn insert(&mut self, f: Feature) {
        self.0 |= f.bit();
    }

    /// True when the set holds `f`.
    pub fn contains(&self, f: Feature) -> bool {
        self.0 & f.bit() != 0
    }
}

/// Whether an optional facility is active, and why (not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// In use.
    pub active: bool,
    /// A sentence a person can act on.
    pub detail: String,
}

impl Status {
    pub(crate) fn on(detail: impl Into<String>) -> Status {
        Status {
            active: true,
            detail: detail.into(),
        }
    }

    pub(crate) fn off(detail: impl Into<String>) -> Status {
        Status {
            active: false,
            detail: detail.into(),
        }
    }
}

/// The capability report: which backend runs and why, what the kernel offers, what is used,
/// and the path each operation takes. `Display` gives the form `examples/doctor` prints.
#[derive(Debug, Clone)]
pub struct Report {
    /// The backend in use.
    pub backend: Backend,
    /// Why this backend (the choice, or the error that ruled io_uring out).
    pub backend_reason: String,
    /// `uname -r`.
    pub kernel: String,
    /// io_uring setup flags in use.
    pub setup_flags: Vec<&'static str>,
    /// Setup attempts rejected by the kernel before the one that worked, with the errno.
    pub setup_rejected: Vec<String>,
    /// Submission and completion queue sizes.
    pub queue_sizes: (u32, u32),
    /// io_uring features the kernel advertises (`IORING_FEAT_*`).
    pub features: Vec<(&'static str, bool)>,
    /// Opcodes the engine may use and whether the kernel has each.
    pub opcodes: Vec<(&'static str, bool)>,
    /// RLIMIT_MEMLOCK (soft, hard), bytes; `u64::MAX` = unlimited.
    pub memlock: (u64, u64),
    /// `kernel.io_uring_disabled` (absent before 6.6).
    pub io_uring_disabled: Option<u32>,
    /// The registered buffer pool.
    pub registered_buffers: Status,
    /// The fixed-file table.
    pub fixed_files: Status,
    /// The registered ring descriptor.
    pub registered_ring_fd: Status,
    /// The kernel submission thread.
    pub sqpoll: Status,
    /// Timed waits.
    pub timed_wait: Status,
    /// Where io_uring's kernel workers (io-wq) may run.
    pub io_workers: Status,
    /// For each operation: the path it takes and why.
    pub paths: Vec<(&'static str, String)>,
}

impl Report {
    pub(crate) fn new(backend: Backend, reason: String) -> Report {
        let (memlock_soft, memlock_hard) = memlock();
        Report {
            backend,
            backend_reason: reason,
            kernel: kernel_release(),
            setup_flags: Vec::new(),
            setup_rejected: Vec::new(),
            queue_sizes: (0, 0),
            features: Vec::new(),
            opcodes: Vec::new(),
            memlock: (memlock_soft, memlock_hard),
            io_uring_disabled: io_uring_disabled(),
            registered_buffers: Status::off("not configured"),
            fixed_files: Status::off("not configured"),
            registered_ring_fd: Status::off("not used"),
            sqpoll: Status::off("not requested"),
            timed_wait: Status::off("not used"),
            io_workers: Status::off("the ring creator's CPUs (the default)"),
            paths: Vec::new(),
        }
    }
}

fn fmt_limit(v: u64) -> String {
    if v == u64::MAX {
        "unlimited".into()
    } else if v >= 1 << 20 {
        format!("{} MiB", v >> 20)
    } else {
        format!("{} KiB", v >> 10)
    }
}

fn onoff(s: &Status) -> &'static str {
    if s.active {
        "active"
    } else {
        "off"
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "backend:            {} ({})",
            self.backend, self.backend_reason
        )?;
        writeln!(f, "kernel:             {}", self.kernel)?;
        let disabled = match self.io_uring_disabled {
            Some(0) => "0 (io_uring allowed)".to_string(),
            Some(1) => "1 (io_uring only for the io_uring_group and CAP_SYS_ADMIN)".to_string(),
            Some(2) => "2 (io_uring disabled for everyone)".to_string(),
            Some(v) => v.to_string(),
            None => "absent (kernel before 6.6)".to_string(),
        };
        writeln!(f, "io_uring_disabled:  {disabled}")?;
        writeln!(
            f,
            "memlock:            soft {}, hard {}",
            fmt_limit(self.memlock.0),
            fmt_limit(self.memlock.1)
        )?;
        if self.backend == Backend::Uring {
            writeln!(
                f,
                "queues:             SQ {} / CQ {}",
                self.queue_sizes.0, self.queue_sizes.1
            )?;
            writeln!(f, "setup flags:        {}", self.setup_flags.join(" | "))?;
            for r in &self.setup_rejected {
                writeln!(f, "  rejected:         {r}")?;
            }
            let feats: Vec<String> = self
                .features
                .iter()
                .map(|(n, on)| format!("{}{n}", if *on { "+" } else { "-" }))
                .collect();
            writeln!(f, "features:           {}", feats.join(" "))?;
            let ops: Vec<String> = self
                .opcodes
                .iter()
                .map(|(n, on)| format!("{}{n}", if *on { "+" } else { "-" }))
                .collect();
            writeln!(f, "opcodes:            {}", ops.join(" "))?;
        }
        for (name, s) in [
            ("registered buffers", &self.registered_buffers),
            ("fixed files", &self.fixed_files),
            ("registered ring fd", &self.registered_ring_fd),
            ("sqpoll", &self.sqpoll),
            ("timed waits", &self.timed_wait),
            ("io workers' cpus", &self.io_workers),
        ] {
            writeln!(f, "{:<20}{} - {}", format!("{name}:"), onoff(s), s.detail)?;
        }
        writeln!(f, "operation paths:")?;
        for (op, path) in &self.paths {
            writeln!(f, "  {op:<14}{path}")?;
        }
        Ok(())
    }
}

/// `uname -r`.
pub(crate) fn kernel_release() -> String {
    // SAFETY: utsname is plain bytes; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return "unknown".into();
    }
    // SAFETY: uname NUL-terminates the release field.
    unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// RLIMIT_MEMLOCK (soft, hard).
pub(crate) fn memlock() -> (u64, u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) } != 0 {
        return (0, 0);
    }
    let conv = |v: libc::rlim_t| {
        if v == libc::RLIM_INFINITY {
            u64::MAX
        } else {
            v
        }
    };
    (conv(r.rlim_cur), conv(r.rlim_max))
}

/// `kernel.io_uring_disabled`, where the kernel has it (6.6+).
pub(crate) fn io_uring_disabled() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

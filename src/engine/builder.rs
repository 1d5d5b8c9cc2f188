//! [`Builder`] and [`BackendChoice`]: what an engine is built with.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Engine, Inner};
use crate::backend::{Config, Driver};
use crate::buf::BufPool;
use crate::capability::{Feature, Report};

static NEXT_ENGINE_ID: AtomicU64 = AtomicU64::new(1);

/// Which backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    /// io_uring when the ring can be set up with the minimum features, else epoll.
    Auto,
    /// io_uring or a clear error; never silently degrades.
    Uring,
    /// The epoll readiness backend with a blocking pool for files.
    Epoll,
}

impl BackendChoice {
    /// Parses `auto`, `uring` (or `io_uring`), `epoll`.
    pub fn parse(s: &str) -> io::Result<BackendChoice> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(BackendChoice::Auto),
            "uring" | "io_uring" | "io-uring" => Ok(BackendChoice::Uring),
            "epoll" => Ok(BackendChoice::Epoll),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unknown backend {other:?}: expected auto, uring or epoll"),
            )),
        }
    }

    /// The choice named by `TRUEIO_BACKEND`, or `Auto` when it is unset.
    pub fn from_env() -> io::Result<BackendChoice> {
        match std::env::var("TRUEIO_BACKEND") {
            Ok(v) => Self::parse(&v)
                .map_err(|e| io::Error::new(e.kind(), format!("TRUEIO_BACKEND: {e}"))),
            Err(_) => Ok(BackendChoice::Auto),
        }
    }
}

/// Configures and builds an [`Engine`].
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// use trueio::{BackendChoice, Engine};
/// let engine = Engine::builder()
///     .entries(128)
///     .fixed_buffers(8, 64 * 1024)
///     .fixed_files(16)
///     .backend(BackendChoice::Auto)
///     .build()?;
/// println!("{}", engine.report());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    /// What the backends are opened with.
    cfg: Config,
    /// The registered buffer pool: count and size.
    buffers: (usize, usize),
    backend: Option<BackendChoice>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            cfg: Config::default(),
            buffers: (16, 64 * 1024),
            backend: None,
        }
    }
}

impl Builder {
    /// Submission queue size (rounded up to a power of two by the kernel; default 256). The
    /// completion queue gets at least twice as many entries.
    pub fn entries(mut self, n: u32) -> Self {
        self.cfg.entries = n.max(1);
        self
    }

    /// Completion queue size (at least twice `entries` is used whatever is asked).
    pub fn cq_entries(mut self, n: u32) -> Self {
        self.cfg.cq_entries = Some(n);
        self
    }

    /// The registered buffer pool: `count` buffers of `size` bytes (page-aligned; default
    /// 16 x 64 KiB). `count == 0` disables the pool.
    pub fn fixed_buffers(mut self, count: usize, size: usize) -> Self {
        self.buffers = (count, size);
        self
    }

    /// Slots in the fixed-file table (default 64; 0 disables it).
    pub fn fixed_files(mut self, slots: u32) -> Self {
        self.cfg.fixed_files = slots;
        self
    }

    /// Asks for a kernel submission thread (SQPOLL) that sleeps after `idle_ms` without work.
    /// It burns a core while busy; opt in only where a core is spare.
    pub fn sqpoll(mut self, idle_ms: u32) -> Self {
        self.cfg.sqpoll_idle = Some(idle_ms);
        self
    }

    /// Binds the SQPOLL thread (if [`sqpoll`](Self::sqpoll) is asked) to `cpu`
    /// (`IORING_SETUP_SQ_AFF`), e.g. the core the application does not use.
    pub fn sqpoll_cpu(mut self, cpu: u32) -> Self {
        self.cfg.sqpoll_cpu = Some(cpu);
        self
    }

    /// Whether `feature` was switched off with [`disable`](Self::disable).
    pub fn is_disabled(&self, feature: Feature) -> bool {
        self.cfg.is_disabled(feature)
    }

    /// The backend, overriding `TRUEIO_BACKEND`.
    pub fn backend(mut self, choice: BackendChoice) -> Self {
        self.backend = Some(choice);
        self
    }

    /// Switches an optional kernel feature off, as if the kernel lacked it (to test each rung
    /// of the degradation ladder, or to work around a kernel bug).
    pub fn disable(mut self, feature: Feature) -> Self {
        self.cfg.disabled.insert(feature);
        self
    }

    /// Treats an io_uring opcode (`io_uring::opcode::RenameAt::CODE`, say, or its number
    /// from `<linux/io_uring.h>`) as missing, as on a kernel older than it: the operations
    /// that need it take the path they take there (the blocking pool, see kernel-notes.md).
    /// To test that path, or to step around a kernel bug in one opcode. The epoll backend
    /// ignores it.
    pub fn without_opcode(mut self, opcode: u8) -> Self {
        self.cfg.masked_opcodes.push(opcode);
        self
    }

    /// The CPUs io_uring's kernel workers may run on (`IORING_REGISTER_IOWQ_AFF`, 5.14).
    /// io-wq workers run what cannot complete at once: every metadata call (mkdir, rename,
    /// unlink, an open that creates, a `statx` by name), a buffered write on ext4, a read
    /// that misses the page cache. By default they inherit the CPUs of the thread that made
    /// the ring, so a thread pinned to one core keeps its kernel work on that core too; give
    /// them other cores (or all) to let that work run beside the thread. Ignored by the epoll
    /// backend; a kernel without it says so in the report.
    pub fn io_worker_cpus(mut self, cpus: &[usize]) -> Self {
        self.cfg.io_worker_cpus = Some(cpus.to_vec());
        self
    }

    /// Threads of the blocking pool (default: 4 per core, at least 4): the epoll backend's
    /// file operations, and on io_uring the calls it has no opcode for.
    pub fn pool_threads(mut self, n: usize) -> Self {
        self.cfg.pool_threads = Some(n.max(1));
        self
    }

    /// Queue bound of the blocking pool; jobs beyond it wait in the engine.
    pub fn pool_queue(mut self, n: usize) -> Self {
        self.cfg.pool_queue = Some(n.max(1));
        self
    }

    /// Runs positional writes ([`op::Write`](crate::op::Write),
    /// [`op::WriteFixed`](crate::op::WriteFixed)) to files on a local filesystem on the
    /// engine's own thread, as a blocking `pwrite`, instead of sending them to io_uring
    /// (whose worker threads take every buffered write on a filesystem that refuses
    /// `RWF_NOWAIT` writes, ext4 among them: a thread hop per write) or to the epoll
    /// backend's pool. Off by default.
    ///
    /// For a storage tool whose thread has nothing else to do (`iobench --inline-writes`):
    /// the write costs what `pwrite` costs. Not for a server: a write that waits (dirty-page
    /// throttling, a journal commit) then stalls every other operation of the thread.
    /// `O_DIRECT` files, pipes, sockets, FIFOs and files on network or FUSE filesystems are
    /// never written inline. The write completes at its submission (its ticket is done).
    pub fn inline_file_writes(mut self, on: bool) -> Self {
        self.cfg.inline_file_writes = on;
        self
    }

    /// Builds the engine on the chosen backend.
    pub fn build(self) -> io::Result<Engine> {
        let choice = match self.backend {
            Some(c) => c,
            None => BackendChoice::from_env()?,
        };
        let mut cfg = self.cfg;
        cfg.engine_id = NEXT_ENGINE_ID.fetch_add(1, Ordering::Relaxed);
        let bufs = match self.buffers {
            (0, _) => None,
            (count, size) => Some(BufPool::new(count, size)?),
        };
        let (driver, report) = open_backend(&cfg, choice, bufs.as_ref())?;
        Ok(Engine::from_inner(Inner::new(&cfg, driver, report, bufs)))
    }
}

/// The backend `choice` names, or (auto) io_uring with epoll as the fallback, with the reason
/// recorded in the report.
fn open_backend(
    cfg: &Config,
    choice: BackendChoice,
    bufs: Option<&BufPool>,
) -> io::Result<(Driver, Report)> {
    match choice {
        BackendChoice::Epoll => {
            Driver::epoll(cfg, "chosen (TRUEIO_BACKEND or builder)".into(), bufs)
        }
        BackendChoice::Uring => Driver::uring(cfg, bufs).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("io_uring backend requested but unavailable: {e}"),
            )
        }),
        BackendChoice::Auto => Driver::uring(cfg, bufs)
            .or_else(|e| Driver::epoll(cfg, format!("io_uring unavailable: {e}"), bufs)),
    }
}

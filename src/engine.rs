//! The public Completion API: [`Engine`], its [`Builder`], [`Ticket`]s and [`Chain`]s.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use slab::Slab;

use crate::backend::{Driver, Link, RawCompletion, CQE_F_MORE};
use crate::buf::{BufPool, BufRing, FixedBuf};
use crate::capability::{Backend, Feature, Features, Report};
use crate::fd::{FileTable, FixedFile};
use crate::op::{BuildCtx, Multishot, Op, Plan, Syscall};
use crate::stats::{Stats, StatsCells};

/// The user_data of requests the engine makes for itself (cancels, wait timeouts); their
/// completions are consumed internally. Slab keys never reach u32::MAX.
pub(crate) const INTERNAL: u64 = u32::MAX as u64;

/// The key of a [`Ticket`] whose operation completed at once, without an entry in the
/// table; its `gen` field holds the result. Never a slab key, never [`INTERNAL`].
const DONE_KEY: usize = u32::MAX as usize - 1;

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
    pub(crate) entries: u32,
    pub(crate) cq_entries: Option<u32>,
    pub(crate) buffers: (usize, usize),
    pub(crate) fixed_files: u32,
    pub(crate) sqpoll_idle: Option<u32>,
    pub(crate) sqpoll_cpu: Option<u32>,
    pub(crate) backend: Option<BackendChoice>,
    pub(crate) disabled: Features,
    pub(crate) pool_threads: Option<usize>,
    pub(crate) pool_queue: Option<usize>,
    pub(crate) inline_file_writes: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            entries: 256,
            cq_entries: None,
            buffers: (16, 64 * 1024),
            fixed_files: 64,
            sqpoll_idle: None,
            sqpoll_cpu: None,
            backend: None,
            disabled: Features::empty(),
            pool_threads: None,
            pool_queue: None,
            inline_file_writes: false,
        }
    }
}

impl Builder {
    /// Submission queue size (rounded up to a power of two by the kernel; default 256). The
    /// completion queue gets at least twice as many entries.
    pub fn entries(mut self, n: u32) -> Self {
        self.entries = n.max(1);
        self
    }

    /// Completion queue size (at least twice `entries` is used whatever is asked).
    pub fn cq_entries(mut self, n: u32) -> Self {
        self.cq_entries = Some(n);
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
        self.fixed_files = slots;
        self
    }

    /// Asks for a kernel submission thread (SQPOLL) that sleeps after `idle_ms` without work.
    /// It burns a core while busy; opt in only where a core is spare.
    pub fn sqpoll(mut self, idle_ms: u32) -> Self {
        self.sqpoll_idle = Some(idle_ms);
        self
    }

    /// Binds the SQPOLL thread (if [`sqpoll`](Self::sqpoll) is asked) to `cpu`
    /// (`IORING_SETUP_SQ_AFF`), e.g. the core the application does not use.
    pub fn sqpoll_cpu(mut self, cpu: u32) -> Self {
        self.sqpoll_cpu = Some(cpu);
        self
    }

    /// Whether `feature` was switched off with [`disable`](Self::disable).
    pub fn is_disabled(&self, feature: Feature) -> bool {
        self.disabled.contains(feature)
    }

    /// The backend, overriding `TRUEIO_BACKEND`.
    pub fn backend(mut self, choice: BackendChoice) -> Self {
        self.backend = Some(choice);
        self
    }

    /// Switches an optional kernel feature off, as if the kernel lacked it (to test each rung
    /// of the degradation ladder, or to work around a kernel bug).
    pub fn disable(mut self, feature: Feature) -> Self {
        self.disabled.insert(feature);
        self
    }

    /// Threads of the epoll backend's blocking pool (default: 4 per core, at least 4).
    pub fn pool_threads(mut self, n: usize) -> Self {
        self.pool_threads = Some(n.max(1));
        self
    }

    /// Queue bound of the epoll backend's blocking pool; jobs beyond it wait in the engine.
    pub fn pool_queue(mut self, n: usize) -> Self {
        self.pool_queue = Some(n.max(1));
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
        self.inline_file_writes = on;
        self
    }

    /// Builds the engine on the chosen backend.
    pub fn build(self) -> io::Result<Engine> {
        let choice = match self.backend {
            Some(c) => c,
            None => BackendChoice::from_env()?,
        };
        let fork_gen = crate::fork::generation();
        let id = NEXT_ENGINE_ID.fetch_add(1, Ordering::Relaxed);
        let files = Rc::new(FileTable::new(self.fixed_files));
        let bufs = if self.buffers.0 > 0 {
            Some(BufPool::new(self.buffers.0, self.buffers.1)?)
        } else {
            None
        };
        let (driver, report) = Driver::open(&self, choice, id, bufs.as_ref())?;
        let lone_reads =
            report.backend == Backend::Uring && !self.disabled.contains(Feature::NowaitReads);
        Ok(Engine {
            inner: Rc::new(Inner {
                id,
                ops: RefCell::new(Slab::with_capacity(self.entries as usize * 2)),
                driver: ManuallyDrop::new(RefCell::new(driver)),
                fork_gen,
                stats: StatsCells::default(),
                files,
                bufs,
                report,
                generation: Cell::new(0),
                next_bgid: Cell::new(0),
                wakers: RefCell::new(Vec::with_capacity(64)),
                reaped: RefCell::new(Vec::with_capacity(256)),
                completed_inline: Cell::new(0),
                held_done: Cell::new(0),
                detached_inline: Cell::new(0),
                lone_reads,
                inline_writes: self.inline_file_writes,
                direct: RefCell::new(crate::backend::DirectHints::default()),
                finished: RefCell::new(Vec::new()),
                chain_buf: RefCell::new(Vec::new()),
            }),
        })
    }
}

/// The completion engine: takes owned operations, gives back completions that carry the
/// result and every resource the operation owned.
///
/// One engine per thread (it is `!Send`): the thread-per-core model. On io_uring the ring is
/// set up with `SINGLE_ISSUER` where the kernel has it, which binds it to this thread.
///
/// Submitting does not enter the kernel: operations are batched until the engine waits
/// ([`Ticket::wait`], [`Engine::turn`]) or [`Engine::flush`] is called; one `io_uring_enter`
/// then submits the batch and waits.
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// use trueio::{op, Engine};
/// let engine = Engine::new()?;
/// let (r, buf) = engine
///     .submit(op::Read::at(&std::fs::File::open("Cargo.toml")?, vec![0u8; 16], 0))
///     .wait()?;
/// assert_eq!(r?, 16);
/// assert!(buf.starts_with(b"[workspace]"));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Engine {
    inner: Rc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) id: u64,
    pub(crate) ops: RefCell<Slab<Entry>>,
    /// Dropped by hand: in a forked child it must not run (see `fork`).
    pub(crate) driver: ManuallyDrop<RefCell<Driver>>,
    /// The fork generation the engine was built in.
    fork_gen: u64,
    pub(crate) stats: StatsCells,
    pub(crate) files: Rc<FileTable>,
    pub(crate) bufs: Option<BufPool>,
    pub(crate) report: Report,
    generation: Cell<u32>,
    /// The next provided-buffer group id.
    next_bgid: Cell<u16>,
    /// Wakers collected while dispatching, woken after every borrow is released.
    wakers: RefCell<Vec<Waker>>,
    /// Completions taken from the backend, dispatched after the driver borrow ends.
    reaped: RefCell<Vec<RawCompletion>>,
    /// Operations completed without a completion to reap (inline on epoll, or failed at
    /// submission) since the last turn: the next turn must not wait for them.
    completed_inline: Cell<usize>,
    /// Tickets that completed at once (no table entry) and whose output was not taken yet:
    /// with the table's entries, what the caller has outstanding (see `lone_reads`).
    held_done: Cell<usize>,
    /// Of `completed_inline`, those that completed at submission (no table entry).
    detached_inline: Cell<usize>,
    /// io_uring: a file read submitted alone (nothing else in flight, no completed ticket
    /// held: a caller keeping a queue of reads is better served by the ring's batch) is
    /// first tried inline with `RWF_NOWAIT`: a page-cache hit then costs one plain syscall
    /// instead of a ring round trip; a miss goes to the ring. Off with
    /// `Feature::NowaitReads` disabled.
    lone_reads: bool,
    /// Positional file writes run inline, blocking (`Builder::inline_file_writes`).
    inline_writes: bool,
    /// Which descriptors are `O_DIRECT` (their `RWF_NOWAIT` reads wait for the device).
    direct: RefCell<crate::backend::DirectHints>,
    /// Operations whose handle was dropped and that have completed; finished (their output
    /// built and dropped, closing any descriptor it holds) outside every borrow.
    finished: RefCell<Vec<Finished>>,
    chain_buf: RefCell<Vec<(u64, crate::backend::Item, Link)>>,
}

/// An operation whose handle is gone, with its final result.
type Finished = (Box<dyn Erased>, i32, u32);

/// One in-flight operation's lifecycle state.
pub(crate) struct Entry {
    gen: u32,
    state: State,
}

enum State {
    /// In the engine (pushed or submitted), nobody waiting.
    Pending,
    /// A task waits for it.
    Waiting(Waker),
    /// The final completion arrived.
    Done { res: i32, flags: u32 },
    /// The handle was dropped: the engine owns the operation until its final completion.
    Ignored(Box<dyn Erased>),
    /// A single-shot operation whose result arrived with more to follow (a zero-copy send:
    /// the kernel may still read the buffer until its notification). Done at the final
    /// completion, with this result.
    Partial {
        res: i32,
        flags: u32,
        waker: Option<Waker>,
    },
    /// A multishot operation: its completions so far, in order; `ended` once the final one
    /// (without `IORING_CQE_F_MORE`) arrived.
    Stream {
        queue: VecDeque<(i32, u32)>,
        waker: Option<Waker>,
        ended: bool,
    },
}

/// An operation whose handle is gone, type-erased so the engine can finish it.
pub(crate) trait Erased: Any {
    fn finish(self: Box<Self>, res: i32, flags: u32);

    /// A non-final completion of an abandoned multishot operation: build its item and drop
    /// it (closing an accepted socket, say). Runs inside the engine's dispatch: must not
    /// call back into the engine.
    fn partial(&mut self, _res: i32, _flags: u32) {}
}

/// An abandoned multishot operation: every completion becomes an item that is dropped.
struct AbandonedStream<T>(T);

impl<T: Multishot> Erased for AbandonedStream<T> {
    fn finish(mut self: Box<Self>, res: i32, flags: u32) {
        drop(self.0.item(res, flags));
    }

    fn partial(&mut self, res: i32, flags: u32) {
        drop(self.0.item(res, flags));
    }
}

impl<T: Op> Erased for T {
    fn finish(self: Box<Self>, res: i32, flags: u32) {
        // Building the output releases what it holds (a descriptor an open returned, a
        // buffer back to its pool).
        drop((*self).complete(res, flags));
    }
}

fn user_data(key: usize, gen: u32) -> u64 {
    ((gen as u64) << 32) | key as u64
}

fn split(ud: u64) -> (usize, u32) {
    ((ud & 0xffff_ffff) as usize, (ud >> 32) as u32)
}

impl Engine {
    /// An engine with the default settings on the backend `TRUEIO_BACKEND` names (`auto` when
    /// unset).
    pub fn new() -> io::Result<Engine> {
        Builder::default().build()
    }

    /// A builder to configure queue depth, registered buffers, fixed files, SQPOLL and the
    /// backend.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Which backend runs.
    pub fn backend(&self) -> Backend {
        self.inner.report.backend
    }

    /// Moves `op` into the engine and returns the handle of its completion.
    ///
    /// This does not enter the kernel; the operation is submitted with the next batch. It
    /// never fails: an operation that cannot be submitted (a bad argument, a broken ring)
    /// completes with the error and gives its resources back. An operation may also
    /// complete during this call (a cached file read tried inline with `RWF_NOWAIT`, say):
    /// its ticket is then done already and holds the result; nothing stays in flight.
    pub fn submit<T: Op>(&self, op: T) -> Ticket<T> {
        self.inner.submit(op)
    }

    /// Submits a multishot operation (one submission, many completions, such as
    /// [`AcceptMulti`](crate::op::AcceptMulti)) and returns the stream of its items.
    pub fn submit_multishot<T: Multishot>(&self, op: T) -> Subscription<T> {
        self.inner.submit_multishot(op)
    }

    /// Starts a chain of linked operations: each starts only when the previous one succeeded
    /// (a failure or a short transfer completes the rest with `ECANCELED`).
    pub fn chain(&self) -> Chain<'_> {
        Chain::new(self, Link::Soft)
    }

    /// Starts a chain whose operations run in order whatever the results
    /// (`IOSQE_IO_HARDLINK`).
    pub fn hard_chain(&self) -> Chain<'_> {
        Chain::new(self, Link::Hard)
    }

    /// Submits every pushed operation without waiting; returns how many entered the kernel
    /// (epoll: 0).
    pub fn flush(&self) -> io::Result<usize> {
        if self.inner.forked() {
            return Err(crate::fork::inherited());
        }
        let r = self.inner.driver.borrow_mut().flush(&self.inner.stats);
        self.inner.dispatch_now();
        r
    }

    /// Submits the batch, waits until at least one completion arrives (or `timeout` passes),
    /// and dispatches every completion available. Returns how many operations completed.
    pub fn turn(&self, timeout: Option<Duration>) -> io::Result<usize> {
        self.inner.turn(timeout)
    }

    /// Dispatches completions already available, without waiting.
    pub fn poll(&self) -> io::Result<usize> {
        self.inner.turn(Some(Duration::ZERO))
    }

    /// Operations submitted and not yet finally completed (including those whose handle was
    /// dropped).
    pub fn in_flight(&self) -> usize {
        self.inner.ops.borrow().len()
    }

    /// The registered buffer pool, when configured.
    pub fn buffers(&self) -> Option<&BufPool> {
        self.inner.bufs.as_ref()
    }

    /// A buffer from the registered pool, or a clear error when there is no pool or it is
    /// exhausted.
    pub fn fixed_buf(&self) -> io::Result<FixedBuf> {
        match &self.inner.bufs {
            Some(p) => p.get(),
            None => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "no registered buffer pool: build the engine with fixed_buffers(count, size)",
            )),
        }
    }

    /// A ring of `entries` provided buffers of `buf_size` bytes (page-rounded) for multishot
    /// receives ([`RecvMulti`](crate::op::RecvMulti)). On io_uring it needs Linux 5.19
    /// (`IORING_REGISTER_PBUF_RING`) and fails with a clear error before; on the epoll backend
    /// it is emulated. The engine keeps the ring's memory as long as it lives.
    pub fn buf_ring(&self, entries: u16, buf_size: usize) -> io::Result<BufRing> {
        let inner = &self.inner;
        if inner.forked() {
            return Err(crate::fork::inherited());
        }
        let bgid = inner.next_bgid.get();
        inner.next_bgid.set(bgid.wrapping_add(1));
        let ring = inner
            .driver
            .borrow_mut()
            .buf_ring(bgid, entries, buf_size)?;
        Ok(BufRing { inner: ring })
    }

    /// Puts `fd` in a free slot of the fixed-file table and returns the slot. Operations on a
    /// [`FixedFile`] skip the per-operation descriptor lookup on io_uring.
    ///
    /// The engine keeps `fd` itself open beside the kernel's slot until the slot is closed or
    /// released, so that a lone read on it can still be tried inline with
    /// `preadv2(RWF_NOWAIT)` (which needs a descriptor number); it counts against
    /// `RLIMIT_NOFILE` as it did before registration. Slots filled by a direct open
    /// ([`OpenAt2Direct`](crate::op::OpenAt2Direct)) have no such descriptor.
    pub fn register_file(&self, fd: OwnedFd) -> io::Result<FixedFile> {
        let inner = &self.inner;
        if inner.forked() {
            return Err(crate::fork::inherited());
        }
        inner
            .driver
            .borrow_mut()
            .release_slots(&inner.files)
            .map_err(|e| io::Error::new(e.kind(), format!("fixed files: {e}")))?;
        let slot = inner.files.free.borrow_mut().pop().ok_or_else(|| {
            io::Error::other(format!(
                "fixed-file table full ({} slots); raise Builder::fixed_files",
                inner.files.size
            ))
        })?;
        let file = FixedFile::new(slot, inner.files.clone());
        if let Err(e) = inner
            .driver
            .borrow_mut()
            .install_file(&inner.files, slot, fd)
        {
            // Dropping `file` releases the slot again.
            drop(file);
            return Err(io::Error::new(
                e.kind(),
                format!("fixed files: installing into slot {slot}: {e}"),
            ));
        }
        Ok(file)
    }

    /// True when the backend runs the io_uring opcode `name` (as listed in
    /// [`Report::opcodes`](crate::Report::opcodes)); always false on the epoll backend.
    pub fn has_opcode(&self, name: &str) -> bool {
        self.inner
            .report
            .opcodes
            .iter()
            .any(|(n, on)| *on && *n == name)
    }

    /// Counters: operations submitted and completed, kernel entries, SQ-full flushes, CQ
    /// overflows, cancellations, pool jobs.
    pub fn stats(&self) -> Stats {
        self.inner.stats.snapshot()
    }

    /// What runs and why: backend, kernel, setup flags, features, opcodes, limits, and the
    /// path each operation takes.
    pub fn report(&self) -> &Report {
        &self.inner.report
    }

    #[doc(hidden)]
    /// Test hook: the next `io_uring_enter` uses `fd` instead of the ring (to provoke a submit
    /// failure with SQEs pushed). No effect on the epoll backend.
    pub fn __fail_next_enter_with(&self, fd: &impl AsRawFd) {
        self.inner
            .driver
            .borrow_mut()
            .fail_next_enter(fd.as_raw_fd());
    }
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("backend", &self.backend())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl Inner {
    #[inline]
    fn ctx(&self) -> BuildCtx<'_> {
        BuildCtx {
            engine_id: self.id,
            files: &self.files,
            fixed_files_native: self.report.fixed_files.active,
        }
    }

    #[inline]
    fn insert(&self) -> (usize, u32) {
        self.insert_with(State::Pending)
    }

    #[inline]
    fn insert_with(&self, state: State) -> (usize, u32) {
        let gen = self.generation.get().wrapping_add(1);
        self.generation.set(gen);
        let key = self.ops.borrow_mut().insert(Entry { gen, state });
        (key, gen)
    }

    /// Submits a multishot operation, its entry a stream of completions.
    fn submit_multishot<T: Multishot>(self: &Rc<Self>, mut op: T) -> Subscription<T> {
        let (key, gen) = self.insert_with(State::Stream {
            queue: VecDeque::new(),
            waker: None,
            ended: false,
        });
        if let Some(r) = self.push_op(user_data(key, gen), &mut op, true) {
            self.complete_now(key, r);
        }
        self.after_push();
        Subscription {
            inner: self.clone(),
            key,
            gen,
            op: Some(op),
        }
    }

    /// Hands an operation to the backend under `ud`: `Some(res)` when it completed at once
    /// (it never reached the kernel, or ran inline), `None` when it is in flight. `in_table`
    /// says whether its entry is in the table already (a multishot operation's is).
    ///
    /// The caller then calls [`Inner::after_push`]: a push that had to flush a full SQ (or
    /// an epoll operation that woke another) may have produced completions.
    #[inline]
    fn push_op<T: Op>(&self, ud: u64, op: &mut T, in_table: bool) -> Option<i32> {
        if self.forked() {
            // The ring is the parent's (and not even mapped here): never touch it.
            return Some(-libc::EBADFD);
        }
        StatsCells::bump(&self.stats.submitted);
        // A cancel whose target's final completion has already arrived is answered here, with
        // ENOENT as documented, on both backends. io_uring itself may answer EALREADY for a
        // moment after it posted that completion: the io-wq worker that ran the request still
        // holds it until the issue path returns (a window seen under qemu's TCG on 6.12,
        // kernel-notes.md), which would make the answer depend on timing.
        if let Some(target) = op.cancel_target() {
            if self.has_ended(target) {
                return Some(-libc::ENOENT);
            }
        }
        if let Some(fd) = op.local_fd() {
            if let Some(r) = self.try_local_call(op, fd) {
                StatsCells::bump(&self.stats.inline_completions);
                return Some(r);
            }
        }
        if self.lone_reads
            && self.ops.borrow().len() + self.held_done.get() == usize::from(in_table)
        {
            if let Some(r) = self.try_lone_read(op) {
                StatsCells::bump(&self.stats.inline_completions);
                return Some(r);
            }
        }
        if self.inline_writes {
            if let Some(r) = self.try_inline_write(op) {
                StatsCells::bump(&self.stats.inline_completions);
                return Some(r);
            }
        }
        let res = self
            .driver
            .borrow_mut()
            .submit(ud, op, &self.ctx(), &self.stats);
        match res {
            Ok(None) => {
                // io_uring only: the epoll backend sends O_DIRECT transfers to its pool at once.
                if self.report.backend == Backend::Uring {
                    self.submit_direct_now(op);
                }
                None
            }
            // Completed at once (epoll inline).
            Ok(Some(r)) => Some(r),
            Err(errno) => Some(-errno),
        }
    }

    /// After a push, with the pushed operation's entry in the table: dispatches the
    /// completions the push produced, if any.
    #[inline]
    fn after_push(&self) {
        if self.driver.borrow().has_completions() {
            self.dispatch_now();
        }
    }

    /// A transfer on an `O_DIRECT` file goes to the kernel at once instead of with the next
    /// batch: it waits for the device anyway, so the syscall is cheap beside it, and the
    /// device starts on it sooner (4 KiB random reads at QD32 on this VM's virtio disk:
    /// about 73k IOPS batched per turn, 86-89k submitted at once, as fio does by default).
    #[inline]
    fn submit_direct_now<T: Op>(&self, op: &T) {
        let Some(fd) = op.file_fd(&self.ctx()) else {
            return;
        };
        if self.direct.borrow_mut().is_direct(fd, &self.stats) {
            // An error leaves the entry in the SQ: the next turn submits it and reports.
            let _ = self.driver.borrow_mut().flush(&self.stats);
        }
    }

    /// A call that does not wait on a local filesystem (see `Op::local_fd`), run inline:
    /// its result, or `None` when `fd` is not known to be on a local filesystem.
    fn try_local_call<T: Op>(&self, op: &mut T, fd: RawFd) -> Option<i32> {
        if !self.direct.borrow_mut().is_local(fd, &self.stats) {
            return None;
        }
        StatsCells::bump(&self.stats.syscalls);
        Some(match op.plan(&self.ctx()) {
            // SAFETY: `op` is borrowed for this frame, so what its plan points at is alive,
            // and nothing else (no kernel, no pool thread) has it.
            Ok(Plan::Pool(sys)) => unsafe { sys.run(false) },
            Ok(_) => return None,
            Err(errno) => -errno,
        })
    }

    /// A lone file read tried inline (see `lone_reads`): its result, or `None` when it would
    /// block (not cached), cannot be tried (not a positional read, an `O_DIRECT` file, a
    /// fixed slot filled by a direct open, with no descriptor) or the file refuses `RWF_NOWAIT`.
    #[inline]
    fn try_lone_read<T: Op>(&self, op: &mut T) -> Option<i32> {
        let sys = op.lone_read(&self.ctx())?;
        let Syscall::Read { fd, .. } = sys else {
            return None;
        };
        if self.direct.borrow_mut().skip_inline(fd, &self.stats) {
            return None;
        }
        StatsCells::bump(&self.stats.syscalls);
        // SAFETY: `op` is borrowed for this frame and was handed to nobody else.
        let r = unsafe { sys.run(true) };
        if r == -libc::EOPNOTSUPP {
            // This filesystem does not do RWF_NOWAIT: stop trying on this descriptor.
            self.direct.borrow_mut().refused(fd);
        }
        (r != -libc::EAGAIN && r != -libc::EOPNOTSUPP).then_some(r)
    }

    /// A positional file write run inline, blocking (see `inline_writes`): its result, or
    /// `None` when it is not one to run so (not a positional write, an `O_DIRECT` file, not
    /// on a local filesystem, not seekable).
    fn try_inline_write<T: Op>(&self, op: &mut T) -> Option<i32> {
        let sys = op.inline_write(&self.ctx())?;
        let Syscall::Write { fd, .. } = sys else {
            return None;
        };
        {
            let mut hints = self.direct.borrow_mut();
            if hints.is_direct(fd, &self.stats) || !hints.is_local(fd, &self.stats) {
                return None;
            }
        }
        StatsCells::bump(&self.stats.syscalls);
        // SAFETY: `op` is borrowed for this frame and was handed to nobody else.
        unsafe { sys.run_positional_write() }
    }

    /// Submits a single-shot operation. One that completes at once (inline, or refused
    /// before reaching the kernel) never takes an entry in the table: its ticket carries the
    /// result (see [`DONE_KEY`]).
    #[inline]
    fn submit<T: Op>(self: &Rc<Self>, mut op: T) -> Ticket<T> {
        let gen = self.generation.get().wrapping_add(1);
        self.generation.set(gen);
        // The key the entry will take if the operation goes in flight: nothing inserts into
        // the table between here and the insert below (the driver never sees the table, and
        // completions are dispatched only after the insert).
        let key = self.ops.borrow().vacant_key();
        let ticket = match self.push_op(user_data(key, gen), &mut op, false) {
            Some(res) => {
                StatsCells::bump(&self.stats.completed);
                self.held_done.set(self.held_done.get() + 1);
                // A caller that turns the engine before looking at its tickets must not
                // sleep: this completion counts as the next turn's.
                self.completed_inline.set(self.completed_inline.get() + 1);
                self.detached_inline.set(self.detached_inline.get() + 1);
                Ticket {
                    inner: self.clone(),
                    key: DONE_KEY,
                    gen: res as u32,
                    op: Some(op),
                }
            }
            None => {
                let got = self.ops.borrow_mut().insert(Entry {
                    gen,
                    state: State::Pending,
                });
                // A mismatch would leave the kernel with a user_data no entry answers to.
                assert_eq!(got, key, "the operation table changed during a push");
                Ticket {
                    inner: self.clone(),
                    key: got,
                    gen,
                    op: Some(op),
                }
            }
        };
        self.after_push();
        ticket
    }

    /// True when the operation behind `ud` has had its final completion (or is no longer in
    /// the table: its output was taken; or it was never submitted to this engine).
    fn has_ended(&self, ud: u64) -> bool {
        let (key, gen) = split(ud);
        match self.ops.borrow().get(key) {
            Some(e) if e.gen == gen => matches!(
                e.state,
                State::Done { .. } | State::Stream { ended: true, .. }
            ),
            _ => true,
        }
    }

    /// Completes an operation that never reached the kernel.
    fn complete_now(&self, key: usize, res: i32) {
        if let Some(e) = self.ops.borrow_mut().get_mut(key) {
            match &mut e.state {
                State::Stream { queue, ended, .. } => {
                    queue.push_back((res, 0));
                    *ended = true;
                }
                s => *s = State::Done { res, flags: 0 },
            }
        }
        self.completed_inline.set(self.completed_inline.get() + 1);
        StatsCells::bump(&self.stats.completed);
    }

    /// True in a child process forked after the engine was built.
    #[inline]
    fn forked(&self) -> bool {
        crate::fork::current() != self.fork_gen
    }

    fn turn(&self, timeout: Option<Duration>) -> io::Result<usize> {
        if self.forked() {
            return Err(crate::fork::inherited());
        }
        self.driver.borrow_mut().release_slots(&self.files)?;
        // Completions that happened since the last turn count as this turn's: do not sleep
        // waiting for more.
        let inline = self.completed_inline.replace(0);
        // Of those, the ones that completed at submission have no entry in the table.
        let in_table = inline.saturating_sub(self.detached_inline.replace(0));
        // Every operation in the table completed inline and the kernel has nothing of ours:
        // no reason to enter it at all. (io_uring's `idle` cannot see requests the kernel
        // runs, so the count must leave out completions without an entry: an entry still
        // in flight would otherwise pass for one of them.)
        if inline > 0 && self.ops.borrow().len() <= in_table && self.driver.borrow_mut().idle() {
            return Ok(inline);
        }
        let timeout = if inline > 0 {
            Some(Duration::ZERO)
        } else {
            timeout
        };
        let r = {
            let mut reaped = self.reaped.borrow_mut();
            self.driver
                .borrow_mut()
                .wait(timeout, &mut reaped, &self.stats)
        };
        let n = self.dispatch();
        r.map(|_| n + inline)
    }

    /// Dispatches completions reaped outside a turn (a flush at submission, a cancel) and
    /// counts them as the next turn's, as inline completions are: that turn must not sleep
    /// waiting for completions that have already arrived.
    fn dispatch_now(&self) {
        let n = self.dispatch();
        self.completed_inline.set(self.completed_inline.get() + n);
    }

    /// Moves reaped completions into the table, wakes waiters, finishes ignored operations.
    /// Returns how many final completions were dispatched.
    pub(crate) fn dispatch(&self) -> usize {
        let mut n = 0;
        {
            let mut reaped = self.reaped.borrow_mut();
            self.driver.borrow_mut().drain(&mut reaped);
            if reaped.is_empty() {
                return 0;
            }
            let mut ops = self.ops.borrow_mut();
            let mut wakers = self.wakers.borrow_mut();
            let mut finished = self.finished.borrow_mut();
            for (ud, res, flags) in reaped.drain(..) {
                if ud & 0xffff_ffff == INTERNAL {
                    continue;
                }
                let (key, gen) = split(ud);
                let Some(entry) = ops.get_mut(key) else {
                    continue;
                };
                if entry.gen != gen {
                    continue;
                }
                let more = flags & CQE_F_MORE != 0;
                match &mut entry.state {
                    State::Stream {
                        queue,
                        waker,
                        ended,
                    } => {
                        queue.push_back((res, flags));
                        if !more {
                            *ended = true;
                            n += 1;
                        }
                        if let Some(w) = waker.take() {
                            wakers.push(w);
                        }
                        continue;
                    }
                    State::Ignored(op) if more => {
                        op.partial(res, flags);
                        continue;
                    }
                    State::Pending if more => {
                        entry.state = State::Partial {
                            res,
                            flags,
                            waker: None,
                        };
                        continue;
                    }
                    State::Waiting(w) if more => {
                        let waker = Some(w.clone());
                        entry.state = State::Partial { res, flags, waker };
                        continue;
                    }
                    _ => {}
                }
                n += 1;
                // The result of an operation that completed in two steps is the first one's.
                let (res, flags) = match entry.state {
                    State::Partial { res, flags, .. } => (res, flags),
                    _ => (res, flags),
                };
                match std::mem::replace(&mut entry.state, State::Done { res, flags }) {
                    State::Waiting(w) | State::Partial { waker: Some(w), .. } => wakers.push(w),
                    State::Ignored(op) => {
                        ops.remove(key);
                        finished.push((op, res, flags));
                    }
                    State::Pending
                    | State::Done { .. }
                    | State::Stream { .. }
                    | State::Partial { waker: None, .. } => {}
                }
            }
        }
        self.stats
            .completed
            .set(self.stats.completed.get() + n as u64);
        // Wake and finish outside every borrow: a waker or a drop may call back in.
        let mut wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        for w in wakers.drain(..) {
            w.wake();
        }
        *self.wakers.borrow_mut() = wakers;
        loop {
            let next = self.finished.borrow_mut().pop();
            match next {
                Some((op, res, flags)) => op.finish(res, flags),
                None => break,
            }
        }
        n
    }

    fn cancel(&self, ud: u64) {
        if self.forked() {
            return;
        }
        StatsCells::bump(&self.stats.cancelled);
        self.driver.borrow_mut().cancel(ud, &self.stats);
        self.dispatch_now();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.forked() {
            // A child's copy of the parent's engine: the ring, the epoll instance and the pool
            // threads are the parent's. Touch none of it; leak the operations and the driver.
            for (_, e) in std::mem::take(self.ops.get_mut()) {
                std::mem::forget(e);
            }
            return;
        }
        // Every handle is gone (each holds an Rc), so every entry left is Ignored or Done.
        let pending: Vec<u64> = self
            .ops
            .get_mut()
            .iter()
            .filter(|(_, e)| !matches!(e.state, State::Done { .. }))
            .map(|(k, e)| user_data(k, e.gen))
            .collect();
        for ud in &pending {
            self.driver.get_mut().cancel(*ud, &self.stats);
        }
        // Wait, with a bound, for the kernel to give back every operation.
        let deadline = Instant::now() + Duration::from_secs(2);
        while self
            .ops
            .get_mut()
            .iter()
            .any(|(_, e)| !matches!(e.state, State::Done { .. }))
        {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let r = {
                let reaped = self.reaped.get_mut();
                self.driver
                    .get_mut()
                    .wait(Some(deadline - now), reaped, &self.stats)
            };
            self.dispatch();
            if r.is_err() {
                break;
            }
        }
        // What is still pending belongs to the kernel (or a pool thread): leak it rather than
        // free memory that may still be written. Only Ignored entries can remain, since every
        // handle (which holds this Inner alive) is gone.
        for (_, e) in std::mem::take(self.ops.get_mut()) {
            if let State::Ignored(op) = e.state {
                std::mem::forget(op);
            }
        }
        // SAFETY: the driver is dropped exactly once, here, and nothing uses it afterwards
        // (this is the engine's last moment).
        unsafe { ManuallyDrop::drop(&mut self.driver) };
    }
}

/// The handle of one submitted operation: wait for it, poll it as a future, or cancel it.
///
/// Dropping a ticket before its completion cancels the operation; the engine keeps the
/// operation's resources until the kernel's final completion has been reaped, then releases
/// them (closing any descriptor an open returned). `mem::forget` on a ticket leaks the
/// operation, never frees what the kernel may still write (and, for a ticket that completed
/// at its submission, turns off io_uring's inline lone reads on that engine).
#[must_use = "dropping a Ticket cancels its operation"]
pub struct Ticket<T: Op> {
    inner: Rc<Inner>,
    key: usize,
    gen: u32,
    op: Option<T>,
}

// The operation is never pinned structurally: the kernel sees only heap memory it owns.
impl<T: Op> Unpin for Ticket<T> {}

impl<T: Op> Ticket<T> {
    /// The user_data the kernel sees for this operation.
    pub fn user_data(&self) -> u64 {
        user_data(self.key, self.gen)
    }

    /// True when the final completion has arrived (or the output was already taken).
    pub fn is_done(&self) -> bool {
        self.op.is_none()
            || self.key == DONE_KEY
            || matches!(
                self.inner.ops.borrow().get(self.key).map(|e| &e.state),
                Some(State::Done { .. })
            )
    }

    /// The output when the operation has completed; `None` while it is in flight or when the
    /// output was taken already.
    #[inline]
    pub fn try_take(&mut self) -> Option<T::Output> {
        self.op.as_ref()?;
        if self.key == DONE_KEY {
            return self.take_done();
        }
        let (res, flags) = {
            let mut ops = self.inner.ops.borrow_mut();
            let e = ops.get(self.key)?;
            let State::Done { res, flags } = e.state else {
                return None;
            };
            ops.remove(self.key);
            (res, flags)
        };
        self.op.take().map(|op| op.complete(res, flags))
    }

    /// The output of a ticket that completed at its submission (its result is in `gen`).
    fn take_done(&mut self) -> Option<T::Output> {
        let op = self.op.take()?;
        self.inner.held_done.set(self.inner.held_done.get() - 1);
        Some(op.complete(self.gen as i32, 0))
    }

    /// `Ready` once the final completion has arrived (the output stays in the ticket);
    /// otherwise registers the task's waker. For combinators that must not take the output
    /// yet, such as [`time::deadline`](crate::time::deadline).
    pub fn poll_done(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.key == DONE_KEY && self.op.is_some() {
            return Poll::Ready(());
        }
        let mut ops = self.inner.ops.borrow_mut();
        let Some(e) = ops.get_mut(self.key).filter(|_| self.op.is_some()) else {
            return Poll::Pending;
        };
        match &mut e.state {
            State::Done { .. } => return Poll::Ready(()),
            State::Partial { waker, .. } => match waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                w => *w = Some(cx.waker().clone()),
            },
            State::Waiting(w) if w.will_wake(cx.waker()) => {}
            s => *s = State::Waiting(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Drives the engine until this operation completes and returns its output. Fails only
    /// when the engine itself fails (for example a ring inherited across `fork`); the
    /// operation then stays owned by the engine.
    pub fn wait(mut self) -> io::Result<T::Output> {
        if self.inner.forked() {
            return Err(crate::fork::inherited());
        }
        loop {
            if let Some(out) = self.try_take() {
                return Ok(out);
            }
            if self.op.is_none() {
                return Err(io::Error::other("the ticket's output was taken already"));
            }
            self.inner.turn(None)?;
        }
    }

    /// Asks the engine to cancel the operation. Its completion still arrives: `ECANCELED`
    /// with the resources, or the result it reached first (data read is never dropped).
    pub fn cancel(&self) {
        if !self.is_done() {
            self.inner.cancel(self.user_data());
        }
    }
}

impl<T: Op> Future for Ticket<T> {
    type Output = T::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T::Output> {
        match self.poll_done(cx) {
            Poll::Ready(()) => match self.try_take() {
                Some(out) => Poll::Ready(out),
                // Polled again after its output was taken: never ready again.
                None => Poll::Pending,
            },
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: Op> Drop for Ticket<T> {
    fn drop(&mut self) {
        if self.key == DONE_KEY {
            // Completed at once: build the output to release what it holds.
            drop(self.take_done());
            return;
        }
        let Some(op) = self.op.take() else { return };
        let done = {
            let mut ops = self.inner.ops.borrow_mut();
            let Some(e) = ops.get_mut(self.key) else {
                return;
            };
            match e.state {
                State::Done { res, flags } => {
                    ops.remove(self.key);
                    Some((op, res, flags))
                }
                _ => {
                    e.state = State::Ignored(Box::new(op));
                    None
                }
            }
        };
        match done {
            // Outside the borrow: building the output may drop a FixedBuf or close a file.
            Some((op, res, flags)) => drop(op.complete(res, flags)),
            None => self.inner.cancel(user_data(self.key, self.gen)),
        }
    }
}

impl<T: Op> fmt::Debug for Ticket<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("user_data", &self.user_data())
            .field("done", &self.is_done())
            .finish()
    }
}

/// Linked operations, submitted together: each starts when the one before it has finished.
///
/// With [`Engine::chain`], a failure (or a short read or write) completes the rest with
/// `ECANCELED`; with [`Engine::hard_chain`] they run whatever happens. A
/// [`LinkTimeout`](crate::op::LinkTimeout) pushed right after an operation bounds it.
/// The chain is submitted when [`Chain::submit`] is called or the chain is dropped.
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// use trueio::{op, Engine};
/// let engine = Engine::new()?;
/// let file = tempfile_like()?;
/// let mut chain = engine.chain();
/// let w = chain.push(op::Write::at(&file, b"hello".to_vec(), 0));
/// let s = chain.push(op::Fsync::new(&file));
/// chain.submit();
/// assert_eq!(w.wait()?.0?, 5);
/// s.wait()??;
/// # Ok(()) }
/// # fn tempfile_like() -> std::io::Result<std::fs::File> {
/// #     let p = std::env::temp_dir().join(format!("trueio-doc-{}", std::process::id()));
/// #     let f = std::fs::OpenOptions::new().create(true).write(true).read(true).open(&p)?;
/// #     std::fs::remove_file(&p)?;
/// #     Ok(f)
/// # }
/// ```
pub struct Chain<'a> {
    engine: &'a Engine,
    link: Link,
    items: Vec<(u64, crate::backend::Item, Link)>,
    /// A step could not be built: like the kernel, fail the whole chain.
    failed: bool,
}

impl<'a> Chain<'a> {
    fn new(engine: &'a Engine, link: Link) -> Chain<'a> {
        let items = std::mem::take(&mut *engine.inner.chain_buf.borrow_mut());
        Chain {
            engine,
            link,
            items,
            failed: false,
        }
    }

    /// Adds `op` to the chain.
    pub fn push<T: Op>(&mut self, mut op: T) -> Ticket<T> {
        let inner = &self.engine.inner;
        let (key, gen) = inner.insert();
        StatsCells::bump(&inner.stats.submitted);
        let ud = user_data(key, gen);
        let item = {
            let d = inner.driver.borrow();
            d.build(&mut op, &inner.ctx())
        };
        match item {
            Ok(item) if !self.failed => self.items.push((ud, item, self.link)),
            Ok(_) => inner.complete_now(key, -libc::ECANCELED),
            Err(errno) => {
                // A step that cannot be prepared fails the chain, as in the kernel: it
                // completes with its error and every other step with ECANCELED.
                inner.complete_now(key, -errno);
                self.failed = true;
            }
        }
        Ticket {
            inner: inner.clone(),
            key,
            gen,
            op: Some(op),
        }
    }

    /// Submits the chain (also done on drop).
    pub fn submit(self) {}

    fn commit(&mut self) {
        let inner = &self.engine.inner;
        if let Some(last) = self.items.last_mut() {
            last.2 = Link::None;
        }
        let r = if self.failed {
            Err(libc::ECANCELED)
        } else {
            inner
                .driver
                .borrow_mut()
                .push_chain(&mut self.items, &inner.stats)
        };
        if let Err(errno) = r {
            for (ud, _, _) in self.items.drain(..) {
                inner.complete_now(split(ud).0, -errno);
            }
        }
        self.items.clear();
        *inner.chain_buf.borrow_mut() = std::mem::take(&mut self.items);
        inner.dispatch_now();
    }
}

impl Drop for Chain<'_> {
    fn drop(&mut self) {
        self.commit();
    }
}

impl fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chain")
            .field("link", &self.link)
            .field("len", &self.items.len())
            .finish()
    }
}

/// The stream of a multishot operation's items ([`Engine::submit_multishot`]).
///
/// Each completion becomes one item, in order; the last one (the kernel's final completion,
/// often an error such as `ECANCELED` or `ENOBUFS`) ends the stream, after which
/// [`next`](Subscription::next) gives `None`. Dropping the subscription cancels the operation;
/// items that arrive afterwards are built and dropped by the engine (an accepted socket is
/// closed), and the operation's resources are released after its final completion.
#[must_use = "dropping a Subscription cancels its operation"]
pub struct Subscription<T: Multishot> {
    inner: Rc<Inner>,
    key: usize,
    gen: u32,
    op: Option<T>,
}

impl<T: Multishot> Subscription<T> {
    /// The next item, or `None` once the stream has ended.
    pub async fn next(&mut self) -> Option<T::Item> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// Polls for the next item; registers the task's waker while there is none.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<T::Item>> {
        let Some(op) = self.op.as_mut() else {
            return Poll::Ready(None);
        };
        let next = {
            let mut ops = self.inner.ops.borrow_mut();
            let Some(e) = ops.get_mut(self.key).filter(|e| e.gen == self.gen) else {
                return Poll::Ready(None);
            };
            let State::Stream {
                queue,
                waker,
                ended,
            } = &mut e.state
            else {
                return Poll::Ready(None);
            };
            match queue.pop_front() {
                Some(c) => Some(c),
                None if *ended => None,
                None => {
                    match waker {
                        Some(w) if w.will_wake(cx.waker()) => {}
                        w => *w = Some(cx.waker().clone()),
                    }
                    return Poll::Pending;
                }
            }
        };
        match next {
            Some((res, flags)) => Poll::Ready(Some(op.item(res, flags))),
            None => {
                self.inner.ops.borrow_mut().remove(self.key);
                self.op = None;
                Poll::Ready(None)
            }
        }
    }

    /// Asks the engine to stop the operation; the stream then ends (usually with an
    /// `ECANCELED` item).
    pub fn cancel(&self) {
        if self.op.is_some() {
            self.inner.cancel(user_data(self.key, self.gen));
        }
    }

    /// True once the final completion has been consumed.
    pub fn is_ended(&self) -> bool {
        self.op.is_none()
    }
}

impl<T: Multishot> Drop for Subscription<T> {
    fn drop(&mut self) {
        let Some(mut op) = self.op.take() else { return };
        let (queued, ended) = {
            let mut ops = self.inner.ops.borrow_mut();
            let Some(e) = ops.get_mut(self.key).filter(|e| e.gen == self.gen) else {
                return;
            };
            let (queued, ended) = match &mut e.state {
                State::Stream { queue, ended, .. } => (std::mem::take(queue), *ended),
                _ => (VecDeque::new(), true),
            };
            if ended {
                ops.remove(self.key);
            }
            (queued, ended)
        };
        // Items delivered but never taken: build and drop them (outside the borrow).
        for (res, flags) in queued {
            drop(op.item(res, flags));
        }
        if !ended {
            if let Some(e) = self.inner.ops.borrow_mut().get_mut(self.key) {
                e.state = State::Ignored(Box::new(AbandonedStream(op)));
            }
            self.inner.cancel(user_data(self.key, self.gen));
        }
    }
}

impl<T: Multishot> fmt::Debug for Subscription<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("user_data", &user_data(self.key, self.gen))
            .field("ended", &self.is_ended())
            .finish()
    }
}

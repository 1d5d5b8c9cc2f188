//! The public Completion API: [`Engine`], built by a [`Builder`]; each operation's handle, a
//! [`Ticket`] (a [`Subscription`] for multishot ones); [`Chain`]s of linked operations.
//!
//! - `builder.rs`: the builder, the backend choice and the opening of the backend;
//! - `table.rs`: the in-flight table, its lifecycle states and the dispatch of completions;
//! - `ticket.rs`, `chain.rs`, `subscription.rs`: the handles;
//! - this file: the engine, submission, turns and teardown.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::task::Waker;
use std::time::{Duration, Instant};

use crate::backend::{Config, Driver, Item, Link, RawCompletion};
use crate::buf::{BufPool, BufRing, FixedBuf};
use crate::capability::{Backend, Report};
use crate::fd::{FileTable, FixedFile};
use crate::op::{BuildCtx, Multishot, Op};
use crate::stats::{Stats, StatsCells};
use crate::user_data::UserData;

mod builder;
mod chain;
mod subscription;
mod table;
mod ticket;

pub use builder::{BackendChoice, Builder};
pub use chain::Chain;
pub use subscription::Subscription;
pub use ticket::Ticket;

use table::{Finished, State, Table};
use ticket::TicketState;

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
    ops: RefCell<Table>,
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
    /// with the table's entries, what the caller has outstanding (see `push_op`).
    held_done: Cell<usize>,
    /// Of `completed_inline`, those that completed at submission (no table entry).
    detached_inline: Cell<usize>,
    /// The last push left completions in the backend (a full SQ was flushed): see
    /// `after_push`.
    reaped_at_push: Cell<bool>,
    /// Operations whose handle was dropped and that have completed; finished (their output
    /// built and dropped, closing any descriptor it holds) outside every borrow.
    finished: RefCell<Vec<Finished>>,
    /// A chain's steps, kept between chains for their allocation.
    chain_buf: RefCell<Vec<(UserData, Item, Link)>>,
}

impl Inner {
    fn new(cfg: &Config, driver: Driver, report: Report, bufs: Option<BufPool>) -> Inner {
        Inner {
            id: cfg.engine_id,
            ops: RefCell::new(Table::with_capacity(cfg.entries as usize * 2)),
            driver: ManuallyDrop::new(RefCell::new(driver)),
            fork_gen: crate::fork::generation(),
            stats: StatsCells::default(),
            files: Rc::new(FileTable::new(cfg.fixed_files)),
            bufs,
            report,
            generation: Cell::new(0),
            next_bgid: Cell::new(0),
            wakers: RefCell::new(Vec::with_capacity(64)),
            reaped: RefCell::new(Vec::with_capacity(256)),
            completed_inline: Cell::new(0),
            held_done: Cell::new(0),
            detached_inline: Cell::new(0),
            reaped_at_push: Cell::new(false),
            finished: RefCell::new(Vec::new()),
            chain_buf: RefCell::new(Vec::new()),
        }
    }
}

impl Engine {
    fn from_inner(inner: Inner) -> Engine {
        Engine {
            inner: Rc::new(inner),
        }
    }

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

    /// Submits a multishot operation, its entry a stream of completions.
    fn submit_multishot<T: Multishot>(self: &Rc<Self>, mut op: T) -> Subscription<T> {
        let ud = self.insert_with(State::Stream(Box::default()));
        if let Some(r) = self.push_op(ud, &mut op, true) {
            self.complete_now(ud, r);
        }
        self.after_push();
        Subscription::new(self.clone(), ud, op)
    }

    /// Hands an operation to the backend under `ud`: `Some(res)` when it completed at once
    /// (it never reached the kernel, or ran inline), `None` when it is in flight. `in_table`
    /// says whether its entry is in the table already (a multishot operation's is).
    ///
    /// The caller then calls [`Inner::after_push`]: a push that had to flush a full SQ (or
    /// an epoll operation that woke another) may have produced completions.
    #[inline]
    fn push_op<T: Op>(&self, ud: UserData, op: &mut T, in_table: bool) -> Option<i32> {
        if self.forked() {
            // The ring is the parent's (and not even mapped here): never touch it.
            return Some(-libc::EBADFD);
        }
        StatsCells::bump(&self.stats.submitted);
        // A cancel whose target's final completion has already arrived is answered here, with
        // ENOENT as documented, on both backends. io_uring itself may answer EALREADY for a
        // moment after it posted that completion: the io-wq worker that ran the request still
        // holds it until the issue path returns (kernel-notes.md), which would make the
        // answer depend on timing.
        if let Some(target) = op.cancel_target() {
            if self.has_ended(target) {
                return Some(-libc::ENOENT);
            }
        }
        // Nothing else outstanding (in flight, or completed and not yet taken): the backend
        // may run the call inline rather than batch it (see io_uring's lone reads).
        let alone = self.ops.borrow().len() + self.held_done.get() == usize::from(in_table);
        let res = {
            let mut driver = self.driver.borrow_mut();
            let res = driver.submit(ud, op, &self.ctx(), &self.stats, alone);
            self.reaped_at_push.set(driver.has_completions());
            res
        };
        match res {
            Ok(None) => None,
            // Completed at once (inline).
            Ok(Some(r)) => Some(r),
            Err(errno) => Some(errno.raw()),
        }
    }

    /// After a push, with the pushed operation's entry in the table: dispatches the
    /// completions the push produced, if any.
    #[inline]
    fn after_push(&self) {
        if self.reaped_at_push.replace(false) {
            self.dispatch_now();
        }
    }

    /// Submits a single-shot operation. One that completes at once (inline, or refused
    /// before reaching the kernel) never takes an entry in the table: its ticket carries the
    /// result.
    #[inline]
    fn submit<T: Op>(self: &Rc<Self>, mut op: T) -> Ticket<T> {
        let gen = self.next_generation();
        // The key the entry will take if the operation goes in flight: nothing inserts into
        // the table between here and the insert below (the driver never sees the table, and
        // completions are dispatched only after the insert).
        let ud = UserData::new(self.ops.borrow().vacant_key(), gen);
        let state = match self.push_op(ud, &mut op, false) {
            Some(res) => {
                StatsCells::bump(&self.stats.completed);
                self.held_done.set(self.held_done.get() + 1);
                // A caller that turns the engine before looking at its tickets must not
                // sleep: this completion counts as the next turn's.
                self.completed_inline.set(self.completed_inline.get() + 1);
                self.detached_inline.set(self.detached_inline.get() + 1);
                TicketState::Done(res)
            }
            None => {
                let key = self.ops.borrow_mut().insert_pending(gen);
                // A mismatch would leave the kernel with a user_data no entry answers to.
                assert_eq!(key, ud.key(), "the operation table changed during a push");
                TicketState::InTable(ud)
            }
        };
        let ticket = Ticket::new(self.clone(), state, op);
        self.after_push();
        ticket
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

    fn cancel(&self, ud: UserData) {
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
            for state in self.ops.get_mut().take_all() {
                std::mem::forget(state);
            }
            return;
        }
        // Every handle is gone (each holds an Rc), so every entry left is Ignored or Done.
        let pending: Vec<UserData> = self
            .ops
            .get_mut()
            .iter()
            .filter(|(_, e)| !matches!(e.state, State::Done { .. }))
            .map(|(k, e)| UserData::new(k, e.gen))
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
        for state in self.ops.get_mut().take_all() {
            if let State::Ignored(op) = state {
                std::mem::forget(op);
            }
        }
        // SAFETY: the driver is dropped exactly once, here, and nothing uses it afterwards
        // (this is the engine's last moment).
        unsafe { ManuallyDrop::drop(&mut self.driver) };
    }
}

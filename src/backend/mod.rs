//! The two backends behind the Completion API.
//!
//! Each backend provides the same contract to the engine (`Driver`):
//! - `build`: turn an operation into its backend form (an SQE, or a readiness plan);
//! - `submit` / `push_chain`: accept one operation, or a chain, for the next batch without
//!   blocking; a chain's steps are kept contiguous and in order;
//! - `flush` / `wait`: submit the batch, wait with an optional timeout, and hand back
//!   completions as `(user_data, result, flags)`;
//! - `cancel(user_data)`: ask for an operation to end early; its own completion still comes;
//! - `install_file` / `release_slots`: fill and empty fixed-file slots;
//! - dropping a driver never frees operation memory: operations live in the engine's table,
//!   which leaks what the kernel or a pool thread may still write.
//!
//! Every submitted operation produces exactly one final completion on both backends.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use io_uring::squeue;

use crate::buf::BufPool;
use crate::capability::Report;
use crate::errno::Errno;
use crate::fd::FileTable;
use crate::op::{BuildCtx, Op, Plan};
use crate::stats::StatsCells;
use crate::user_data::UserData;

mod config;
mod fd_facts;
mod inline;
mod offload;

pub(crate) use config::Config;
pub(crate) use fd_facts::FdFacts;
pub(crate) use offload::Offload;

pub(crate) mod epoll;
pub(crate) mod uring;

/// `IORING_CQE_F_MORE`: more completions will follow for this request (multishot). The epoll
/// backend sets it the same way.
pub(crate) const CQE_F_MORE: u32 = 1 << 1;

/// A completion as a backend hands it to the engine: (user_data, result, CQE flags).
pub(crate) type RawCompletion = (UserData, i32, u32);

/// How an operation is linked to the next one in a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    /// Not linked.
    None,
    /// The next starts only if this one succeeds fully (`IOSQE_IO_LINK`).
    Soft,
    /// The next starts whatever this one's result (`IOSQE_IO_HARDLINK`).
    Hard,
}

/// An operation in its backend's form.
#[derive(Debug)]
pub(crate) enum Item {
    Sqe(squeue::Entry),
    Plan(Plan),
}

pub(crate) enum Driver {
    Uring(uring::Driver),
    Epoll(epoll::Driver),
}

impl Driver {
    /// The io_uring backend, with the best setup the kernel accepts, or why it cannot be had.
    pub(crate) fn uring(cfg: &Config, bufs: Option<&BufPool>) -> io::Result<(Driver, Report)> {
        uring::Driver::open(cfg, bufs).map(|(d, r)| (Driver::Uring(d), r))
    }

    /// The epoll backend; `reason` says why it runs (for the report).
    pub(crate) fn epoll(
        cfg: &Config,
        reason: String,
        bufs: Option<&BufPool>,
    ) -> io::Result<(Driver, Report)> {
        epoll::Driver::open(cfg, reason, bufs).map(|(d, r)| (Driver::Epoll(d), r))
    }

    #[inline]
    pub(crate) fn build<T: Op>(&self, op: &mut T, ctx: &BuildCtx<'_>) -> Result<Item, Errno> {
        match self {
            // A chain reaches the kernel in one piece: a step without its opcode here cannot
            // be linked to the others.
            Driver::Uring(d) if !d.on_ring(op) => Err(Errno(libc::EOPNOTSUPP)),
            Driver::Uring(_) => op.uring_sqe(ctx).map(Item::Sqe),
            Driver::Epoll(_) => op.plan(ctx).map(Item::Plan),
        }
    }

    /// Builds and pushes one operation (the common, unchained path: no `Item` in between, so
    /// the SQE is written once rather than moved through an enum), or runs it inline where its
    /// backend's fast path takes it. `Ok(Some(result))`: completed at once (no completion to
    /// dispatch later). `alone`: nothing else of the caller's is outstanding.
    #[inline]
    pub(crate) fn submit<T: Op>(
        &mut self,
        ud: UserData,
        op: &mut T,
        ctx: &BuildCtx<'_>,
        stats: &StatsCells,
        alone: bool,
    ) -> Result<Option<i32>, Errno> {
        match self {
            Driver::Uring(d) => d.submit(ud, op, ctx, stats, alone),
            Driver::Epoll(d) => d.submit(ud, op, ctx, stats),
        }
    }

    #[inline]
    pub(crate) fn has_completions(&self) -> bool {
        match self {
            Driver::Uring(d) => d.has_completions(),
            Driver::Epoll(d) => d.has_completions(),
        }
    }

    /// Nothing queued for the kernel, nothing reaped but not yet handed over, nothing
    /// pending (epoll): a turn has nothing to wait for.
    pub(crate) fn idle(&mut self) -> bool {
        match self {
            Driver::Uring(d) => d.idle(),
            Driver::Epoll(d) => d.idle(),
        }
    }

    pub(crate) fn push_chain(
        &mut self,
        items: &mut Vec<(UserData, Item, Link)>,
        stats: &StatsCells,
    ) -> Result<(), Errno> {
        match self {
            Driver::Uring(d) => d.push_chain(items, stats),
            Driver::Epoll(d) => d.push_chain(items, stats),
        }
    }

    pub(crate) fn flush(&mut self, stats: &StatsCells) -> io::Result<usize> {
        match self {
            Driver::Uring(d) => d.flush(stats),
            Driver::Epoll(d) => d.flush(stats),
        }
    }

    pub(crate) fn wait(
        &mut self,
        timeout: Option<Duration>,
        out: &mut Vec<RawCompletion>,
        stats: &StatsCells,
    ) -> io::Result<()> {
        match self {
            Driver::Uring(d) => d.wait(timeout, out, stats),
            Driver::Epoll(d) => d.wait(timeout, out, stats),
        }
    }

    /// Moves completions already known to the backend into `out`, without a system call.
    pub(crate) fn drain(&mut self, out: &mut Vec<RawCompletion>) {
        match self {
            Driver::Uring(d) => d.drain(out),
            Driver::Epoll(d) => d.drain(out),
        }
    }

    /// Never lost: a cancel that cannot be queued now is queued at the next flush or wait.
    pub(crate) fn cancel(&mut self, ud: UserData, stats: &StatsCells) {
        match self {
            Driver::Uring(d) => d.cancel(ud, stats),
            Driver::Epoll(d) => d.cancel(ud, stats),
        }
    }

    pub(crate) fn install_file(
        &mut self,
        files: &FileTable,
        slot: u32,
        fd: OwnedFd,
    ) -> io::Result<()> {
        match self {
            // The kernel's table takes its own reference; ours stays beside it as the slot's
            // shadow, so that a lone read on the slot can still be tried inline with
            // `preadv2(RWF_NOWAIT)`, which needs a descriptor number.
            Driver::Uring(d) if d.fixed_files_native() => {
                d.install_file(slot, fd.as_raw_fd())?;
                emulated_install(files, slot, fd);
                Ok(())
            }
            _ => {
                emulated_install(files, slot, fd);
                Ok(())
            }
        }
    }

    /// Empties the fixed-file slots whose handles were dropped since the last call.
    #[inline]
    pub(crate) fn release_slots(&mut self, files: &FileTable) -> io::Result<()> {
        if files.released.borrow().is_empty() {
            return Ok(());
        }
        self.release_slots_now(files)
    }

    fn release_slots_now(&mut self, files: &FileTable) -> io::Result<()> {
        let released = std::mem::take(&mut *files.released.borrow_mut());
        for slot in released {
            if let Driver::Uring(d) = self {
                if d.fixed_files_native() {
                    d.empty_slot(slot)?;
                }
            }
            // The emulated descriptor, or the shadow of a native slot.
            let fd = files
                .emulated
                .borrow_mut()
                .get_mut(slot as usize)
                .and_then(|s| s.take());
            drop(fd);
            files.free.borrow_mut().push(slot);
        }
        Ok(())
    }

    /// Creates a provided-buffer ring; the driver keeps it alive as long as its ring.
    pub(crate) fn buf_ring(
        &mut self,
        bgid: u16,
        entries: u16,
        buf_size: usize,
    ) -> io::Result<std::rc::Rc<crate::buf::ring::RingInner>> {
        match self {
            Driver::Uring(d) => d.buf_ring(bgid, entries, buf_size),
            Driver::Epoll(d) => d.buf_ring(bgid, entries, buf_size),
        }
    }

    pub(crate) fn fail_next_enter(&mut self, fd: i32) {
        if let Driver::Uring(d) = self {
            d.fail_next_enter(fd);
        }
    }
}

fn emulated_install(files: &FileTable, slot: u32, fd: OwnedFd) {
    let mut t = files.emulated.borrow_mut();
    let idx = slot as usize;
    if t.len() <= idx {
        t.resize_with(idx + 1, || None);
    }
    t[idx] = Some(fd);
}

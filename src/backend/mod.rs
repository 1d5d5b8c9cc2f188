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
use crate::engine::{BackendChoice, Builder};
use crate::fd::FileTable;
use crate::op::{BuildCtx, Op, Plan};
use crate::stats::StatsCells;

pub(crate) mod epoll;
pub(crate) mod uring;

/// `IORING_CQE_F_MORE`: more completions will follow for this request (multishot). The epoll
/// backend sets it the same way.
pub(crate) const CQE_F_MORE: u32 = 1 << 1;

/// A completion as a backend hands it to the engine: (user_data, result, CQE flags).
pub(crate) type RawCompletion = (u64, i32, u32);

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
    pub(crate) fn open(
        b: &Builder,
        choice: BackendChoice,
        engine_id: u64,
        bufs: Option<&BufPool>,
    ) -> io::Result<(Driver, Report)> {
        match choice {
            BackendChoice::Epoll => {
                let (d, r) =
                    epoll::Driver::open(b, "chosen (TRUEIO_BACKEND or builder)".into(), bufs)?;
                Ok((Driver::Epoll(d), r))
            }
            BackendChoice::Uring => match uring::Driver::open(b, engine_id, bufs) {
                Ok((d, r)) => Ok((Driver::Uring(d), r)),
                Err(e) => Err(io::Error::new(
                    e.kind(),
                    format!("io_uring backend requested but unavailable: {e}"),
                )),
            },
            BackendChoice::Auto => match uring::Driver::open(b, engine_id, bufs) {
                Ok((d, r)) => Ok((Driver::Uring(d), r)),
                Err(e) => {
                    let (d, r) =
                        epoll::Driver::open(b, format!("io_uring unavailable: {e}"), bufs)?;
                    Ok((Driver::Epoll(d), r))
                }
            },
        }
    }

    #[inline]
    pub(crate) fn build<T: Op>(&self, op: &mut T, ctx: &BuildCtx<'_>) -> Result<Item, i32> {
        match self {
            Driver::Uring(_) => op.uring_sqe(ctx).map(Item::Sqe),
            Driver::Epoll(_) => op.plan(ctx).map(Item::Plan),
        }
    }

    /// Builds and pushes one operation (the common, unchained path: no `Item` in between, so
    /// the SQE is written once rather than moved through an enum). `Ok(Some(result))`: the
    /// epoll backend completed it at once (no completion to dispatch later).
    #[inline]
    pub(crate) fn submit<T: Op>(
        &mut self,
        ud: u64,
        op: &mut T,
        ctx: &BuildCtx<'_>,
        stats: &StatsCells,
    ) -> Result<Option<i32>, i32> {
        match self {
            Driver::Uring(d) => d
                .push_sqe(ud, op.uring_sqe(ctx)?, Link::None, stats)
                .map(|()| None),
            Driver::Epoll(d) => Ok(d.push(ud, op.plan(ctx)?, || op.fd_owner(), stats)),
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
        items: &mut Vec<(u64, Item, Link)>,
        stats: &StatsCells,
    ) -> Result<(), i32> {
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
    pub(crate) fn cancel(&mut self, ud: u64, stats: &StatsCells) {
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

    pub(crate) fn release_slots(&mut self, files: &FileTable) -> io::Result<()> {
        let released = std::mem::take(&mut *files.released.borrow_mut());
        if released.is_empty() {
            return Ok(());
        }
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

/// What the backends learned about descriptor numbers, for their inline `RWF_NOWAIT`
/// attempts (io_uring's lone reads, every epoll call):
/// - open with `O_DIRECT`: such a call does not fail fast, it waits for the device, which
///   would stall the event loop at any queue depth; those reads go to the pool or the ring;
/// - refused `RWF_NOWAIT` (`EOPNOTSUPP`, tmpfs on 6.1 say): no more attempts on it.
///
/// `fcntl(F_GETFL)` answers once per descriptor number and again every
/// [`DirectHints::RECHECK`] operations (which also forgets a refusal), since a number may be
/// closed and reused outside the engine. A hint only: a stale one costs speed, never
/// correctness.
#[derive(Default)]
pub(crate) struct DirectHints {
    /// Per descriptor number: 0 unknown, else (direct as bit 15) | (`RWF_NOWAIT` refused as
    /// bit 14) | operations until recheck.
    by_fd: Vec<u16>,
}

impl DirectHints {
    const RECHECK: u16 = 1024;
    const DIRECT: u16 = 1 << 15;
    const REFUSED: u16 = 1 << 14;
    /// The filesystem was looked at (`fstatfs`) since the last recheck...
    const FS_KNOWN: u16 = 1 << 13;
    /// ...and it is a local one, where a `statx` of the descriptor never waits.
    const LOCAL: u16 = 1 << 12;
    const COUNT: u16 = Self::LOCAL - 1;

    /// Whether an inline `RWF_NOWAIT` attempt on `fd` is pointless: an `O_DIRECT` file, or
    /// one whose filesystem refused the flag lately (tmpfs before 6.x, for one).
    #[inline]
    pub(crate) fn skip_inline(
        &mut self,
        fd: std::os::fd::RawFd,
        stats: &crate::stats::StatsCells,
    ) -> bool {
        self.is_direct(fd, stats) || self.is_refused(fd)
    }

    /// Whether `fd` refused `RWF_NOWAIT` lately (no syscall).
    pub(crate) fn is_refused(&self, fd: std::os::fd::RawFd) -> bool {
        usize::try_from(fd)
            .ok()
            .and_then(|i| self.by_fd.get(i))
            .is_some_and(|h| h & Self::REFUSED != 0)
    }

    /// Records that `fd` refused `RWF_NOWAIT` (until the next recheck).
    pub(crate) fn refused(&mut self, fd: std::os::fd::RawFd) {
        if let Some(h) = usize::try_from(fd).ok().and_then(|i| self.by_fd.get_mut(i)) {
            *h |= Self::REFUSED;
        }
    }

    /// Whether `fd` was opened with `O_DIRECT`, asking the kernel when not known (recently).
    #[inline]
    pub(crate) fn is_direct(
        &mut self,
        fd: std::os::fd::RawFd,
        stats: &crate::stats::StatsCells,
    ) -> bool {
        let Ok(i) = usize::try_from(fd) else {
            return false;
        };
        if i >= self.by_fd.len() {
            if i > 1 << 20 {
                return false;
            }
            self.by_fd.resize(i + 1, 0);
        }
        let h = self.by_fd[i];
        if h & Self::COUNT > 1 {
            self.by_fd[i] = h - 1;
            return h & Self::DIRECT != 0;
        }
        crate::stats::StatsCells::bump(&stats.syscalls);
        // SAFETY: F_GETFL takes no pointers; a closed descriptor gives -1 (EBADF), answered
        // as "not direct", and the operation itself reports the error.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        let direct = flags >= 0 && flags & libc::O_DIRECT != 0;
        self.by_fd[i] = Self::RECHECK | if direct { Self::DIRECT } else { 0 };
        direct
    }

    /// Whether `fd` is on a local filesystem (see [`local_fs`]), asking the kernel once per
    /// recheck period.
    pub(crate) fn is_local(
        &mut self,
        fd: std::os::fd::RawFd,
        stats: &crate::stats::StatsCells,
    ) -> bool {
        // Refreshes the entry (and its count) when due.
        self.is_direct(fd, stats);
        let Some(h) = usize::try_from(fd).ok().and_then(|i| self.by_fd.get_mut(i)) else {
            return false;
        };
        if *h & Self::FS_KNOWN == 0 {
            crate::stats::StatsCells::bump(&stats.syscalls);
            *h |= Self::FS_KNOWN;
            if local_fs(fd) {
                *h |= Self::LOCAL;
            }
        }
        *h & Self::LOCAL != 0
    }

    /// Forgets `fd` (closed through the engine).
    pub(crate) fn forget(&mut self, fd: std::os::fd::RawFd) {
        if let Some(h) = usize::try_from(fd).ok().and_then(|i| self.by_fd.get_mut(i)) {
            *h = 0;
        }
    }
}

/// Whether `fd` lives on a filesystem whose attributes are in memory, so that `statx` of the
/// descriptor answers without waiting: the usual local disk filesystems, tmpfs and the kernel's
/// own. Network and FUSE filesystems, and any not listed, are not: their `getattr` may ask a
/// server or a daemon.
fn local_fs(fd: std::os::fd::RawFd) -> bool {
    const LOCAL: &[i64] = &[
        0xEF53,      // ext2/3/4
        0x5846_5342, // xfs
        0x9123_683E, // btrfs
        0x0102_1994, // tmpfs
        0x8584_58f6, // ramfs
        0xF2F5_2010, // f2fs
        0x2fc1_2fc1, // zfs
        0xca45_1a4e, // bcachefs
        0x794c_7630, // overlayfs
        0xE0F5_E1E2, // erofs
        0x7371_7368, // squashfs
        0x4d44,      // vfat
        0x2011_BAB0, // exfat
        0x7366_746e, // ntfs3
        0x9fa0,      // proc
        0x6265_6572, // sysfs
        0x5049_5045, // pipefs
        0x534F_434B, // sockfs
        0x0904_1934, // anon inodes
    ];
    // SAFETY: statfs is plain integers; all-zero is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: fstatfs writes one statfs into `st`, alive on this frame; a bad descriptor
    // gives -1 (not local).
    if unsafe { libc::fstatfs(fd, &mut st) } != 0 {
        return false;
    }
    LOCAL.contains(&(st.f_type as i64))
}

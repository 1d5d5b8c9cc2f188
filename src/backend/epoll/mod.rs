//! The readiness driver: every operation of the Completion API on epoll, with the same
//! results, errors and ownership rules as on io_uring.
//!
//! Each operation's [`Plan`] says how it runs:
//! - sockets and pipes: try the call now (`RWF_NOWAIT`); on EAGAIN wait for readiness
//!   (edge-triggered, registered once per descriptor) and retry;
//! - regular files: try the call now with `RWF_NOWAIT`, which succeeds when the data is in the
//!   page cache; otherwise run it on the blocking pool, whose completions come back through an
//!   eventfd;
//! - open, statx, fsync, fallocate, close: on the pool;
//! - timers on a timer heap; chains run step by step; cancel of a queued or waiting operation
//!   gives ECANCELED, of a running pool job its result (`EALREADY` to the canceller).
//!
//! Descriptors are registered with epoll on their first wait, renewed when a wait finds
//! nobody else waiting (so a number closed and reused outside the engine is registered anew),
//! and removed when a `Close` operation closes them. Closing a descriptor outside the engine
//! while an operation waits on it is the caller's error (the wait may never end, as with
//! epoll itself).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use trueio_fallback::{
    Aio, AioOp, Done, Events, Interest as PInterest, JobId, Mode, Poller, Pool, PoolConfig,
    RejectReason, TimerHeap, TimerId, Waker,
};

use super::{inline, Config, FdFacts, Item, Link, RawCompletion, CQE_F_MORE};
use crate::buf::BufPool;
use crate::capability::{Backend, Feature, Report, Status};
use crate::errno::Errno;
use crate::op::sys::file_type;
use crate::op::{BuildCtx, Fast, Interest, Op, Plan, Syscall};
use crate::stats::StatsCells;
use crate::user_data::UserData;

const WAKER_TOKEN: u64 = u64::MAX;
/// The poller token of the AIO context's eventfd.
const AIO_TOKEN: u64 = u64::MAX - 1;
/// Requests one AIO context holds in flight; more go to the pool.
const AIO_ENTRIES: u32 = 256;

pub(crate) struct Driver {
    poller: Poller,
    waker: Waker,
    events: Events,
    pool: Pool<Syscall>,
    timers: TimerHeap<UserData>,
    ops: Table,
    fds: HashMap<RawFd, FdWaiters>,
    /// Operations to try (again) now.
    ready: VecDeque<UserData>,
    /// Pool jobs waiting for room in the pool's bounded queue.
    overflow: VecDeque<UserData>,
    /// Timers that also end after a number of completions.
    counting: Vec<UserData>,
    done: Vec<RawCompletion>,
    /// Emulated provided-buffer rings, kept alive as long as the driver.
    buf_rings: Vec<Rc<crate::buf::ring::RingInner>>,
    pool_done: Vec<Done<Syscall>>,
    nowait: bool,
    /// What is known of descriptors by number: `O_DIRECT`, `RWF_NOWAIT` refused, local
    /// filesystem (see [`FdFacts`]).
    facts: FdFacts,
    /// Positional file writes run inline, blocking (`Builder::inline_file_writes`).
    inline_writes: bool,
    /// Kernel AIO for `O_DIRECT` transfers, set up at the first one.
    aio: AioSlot,
    aio_done: Vec<(u64, i64)>,
}

/// The AIO context: not tried yet, set up, or refused (disabled, or the kernel said no).
enum AioSlot {
    Untried,
    On(Aio),
    Off,
}

/// Pending operations by user_data, indexed by the engine's table key (`UserData::key`): no
/// hashing on the hot path; the full user_data is checked on every lookup.
#[derive(Default)]
struct Table {
    slots: Vec<Option<(UserData, Pending)>>,
    len: usize,
}

impl Table {
    fn idx(ud: UserData) -> usize {
        ud.key()
    }

    fn insert(&mut self, ud: UserData, p: Pending) {
        let i = Self::idx(ud);
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, || None);
        }
        if self.slots[i].replace((ud, p)).is_none() {
            self.len += 1;
        }
    }

    fn get(&self, ud: &UserData) -> Option<&Pending> {
        match self.slots.get(Self::idx(*ud)) {
            Some(Some((u, p))) if u == ud => Some(p),
            _ => None,
        }
    }

    fn get_mut(&mut self, ud: &UserData) -> Option<&mut Pending> {
        match self.slots.get_mut(Self::idx(*ud)) {
            Some(Some((u, p))) if u == ud => Some(p),
            _ => None,
        }
    }

    fn remove(&mut self, ud: &UserData) -> Option<Pending> {
        let slot = self.slots.get_mut(Self::idx(*ud))?;
        match slot {
            Some((u, _)) if u == ud => {
                self.len -= 1;
                slot.take().map(|(_, p)| p)
            }
            _ => None,
        }
    }
}

struct Pending {
    plan: Plan,
    state: State,
    link: Link,
    /// The next step of its chain.
    next: Option<UserData>,
    /// The link timeout guarding this operation.
    guard: Option<UserData>,
    /// For a link timeout: the operation it guards.
    guards: Option<UserData>,
    /// Regular file (or block device): EAGAIN goes to the pool, not to epoll.
    file: Option<bool>,
    /// RWF_NOWAIT refused (EOPNOTSUPP): call plainly after readiness.
    plain: bool,
    /// Completions still to count (Timeout::or_count).
    count: u32,
    /// The shared descriptor the operation holds, if any (see `wait_fd`).
    owner: Option<Weak<OwnedFd>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the previous step of its chain.
    Blocked,
    /// In the ready queue.
    Ready,
    /// Waiting for readiness of a descriptor.
    WaitFd(RawFd),
    /// In the pool's queue or running.
    Pool(JobId),
    /// Waiting for room in the pool.
    Overflow,
    /// Submitted to the kernel's AIO context (an `O_DIRECT` transfer).
    Aio,
    /// On the timer heap.
    Timer(TimerId),
}

#[derive(Default)]
struct FdWaiters {
    readers: Vec<UserData>,
    writers: Vec<UserData>,
    /// The shared descriptor the registration was made for: while it is alive (upgrades), the
    /// number still names the registered file.
    owner: Option<Weak<OwnedFd>>,
}

/// Bytes an I/O plan asks for, to tell a short transfer (which breaks a soft link).
fn expected(plan: &Plan) -> Option<usize> {
    match plan {
        Plan::Io { sys, .. } => match *sys {
            Syscall::Read { len, .. } | Syscall::Write { len, .. } => Some(len),
            Syscall::Readv { iov, cnt, .. } | Syscall::Writev { iov, cnt, .. } => {
                // SAFETY: the iovec array is owned by the operation, alive while it is pending.
                let v = unsafe { std::slice::from_raw_parts(iov, cnt) };
                Some(v.iter().map(|i| i.iov_len).sum())
            }
            _ => None,
        },
        _ => None,
    }
}

impl Driver {
    pub(crate) fn open(
        b: &Config,
        reason: String,
        bufs: Option<&BufPool>,
    ) -> io::Result<(Driver, Report)> {
        let poller = Poller::new()?;
        let waker = Waker::new()?;
        poller.add(waker.fd(), WAKER_TOKEN, PInterest::READABLE, Mode::Edge)?;
        let mut cfg = PoolConfig::default();
        if let Some(n) = b.pool_threads {
            cfg.threads = n;
        }
        if let Some(n) = b.pool_queue {
            cfg.queue_capacity = n;
        }
        let threads = cfg.threads;
        let pool = Pool::new(cfg, waker.clone())?;
        let nowait = !b.disabled.contains(Feature::NowaitReads);
        let aio = if b.disabled.contains(Feature::LinuxAio) {
            AioSlot::Off
        } else {
            AioSlot::Untried
        };

        let report = describe(
            b,
            reason,
            bufs,
            nowait,
            !matches!(aio, AioSlot::Off),
            threads,
        );
        Ok((
            Driver {
                poller,
                waker,
                events: Events::with_capacity(256),
                pool,
                timers: TimerHeap::new(),
                ops: Table::default(),
                fds: HashMap::new(),
                ready: VecDeque::new(),
                overflow: VecDeque::new(),
                counting: Vec::new(),
                done: Vec::new(),
                buf_rings: Vec::new(),
                pool_done: Vec::new(),
                nowait,
                facts: FdFacts::default(),
                inline_writes: b.inline_file_writes,
                aio,
                aio_done: Vec::new(),
            },
            report,
        ))
    }

    fn insert(&mut self, ud: UserData, plan: Plan, link: Link, state: State) {
        let count = match plan {
            Plan::Timer { count, .. } => count,
            _ => 0,
        };
        self.ops.insert(
            ud,
            Pending {
                plan,
                state,
                link,
                next: None,
                guard: None,
                guards: None,
                file: None,
                plain: false,
                count,
                owner: None,
            },
        );
    }

    pub(crate) fn buf_ring(
        &mut self,
        bgid: u16,
        entries: u16,
        buf_size: usize,
    ) -> io::Result<Rc<crate::buf::ring::RingInner>> {
        let ring = Rc::new(crate::buf::ring::RingInner::new(
            bgid, entries, buf_size, false,
        )?);
        self.buf_rings.push(ring.clone());
        Ok(ring)
    }

    fn set_owner(&mut self, ud: UserData, owner: Option<Weak<OwnedFd>>) {
        if let Some(p) = self.ops.get_mut(&ud) {
            p.owner = owner;
        }
    }

    /// The engine's submission of one operation: inline where a fast path takes it (a local
    /// `statx`, an inline write), else its plan, tried now where that cannot block.
    /// `Ok(Some(result))`: completed at once.
    #[inline]
    pub(crate) fn submit<T: Op>(
        &mut self,
        ud: UserData,
        op: &mut T,
        ctx: &BuildCtx<'_>,
        stats: &StatsCells,
    ) -> Result<Option<i32>, Errno> {
        // One plan serves the fast paths and the push.
        let plan = op.plan(ctx)?;
        if inline::is_metadata(T::FAST) {
            if let Some(r) = inline::metadata(&mut self.facts, T::FAST, &plan, stats) {
                return Ok(Some(r));
            }
        }
        if self.inline_writes && T::FAST == Fast::Transfer {
            let write = plan.positional();
            if let Some(r) =
                write.and_then(|sys| inline::positional_write(&mut self.facts, sys, stats))
            {
                return Ok(Some(r));
            }
        }
        Ok(self.push(ud, plan, || op.fd_owner(), stats))
    }

    /// Accepts one unchained operation and runs it as far as it goes now. `Some(result)`
    /// when it completed at once: the common case of an I/O call that does not block (a
    /// page-cache hit, data waiting in a socket, a cached open), which never enters the
    /// table. Counting timeouts need every completion to pass through `complete`, so they
    /// take the general path.
    fn push(
        &mut self,
        ud: UserData,
        plan: Plan,
        owner: impl FnOnce() -> Option<Weak<OwnedFd>>,
        stats: &StatsCells,
    ) -> Option<i32> {
        if self.counting.is_empty() {
            match plan {
                // Nothing to run (a NOP): done at submission, as an inline call is.
                Plan::Done(res) => return Some(res),
                Plan::Pool(sys) if self.nowait => {
                    // SAFETY: the operation is borrowed by the submitting frame for this call
                    // and handed to nobody else: what its plan points at is alive and unshared.
                    if let Some(r) = unsafe { sys.try_inline(stats) } {
                        StatsCells::bump(&stats.inline_completions);
                        return Some(r);
                    }
                }
                Plan::Io { sys, fd, .. }
                    if (self.nowait || sys.never_blocks())
                        && !self.facts.skip_inline(fd, stats) =>
                {
                    return match Self::attempt_nowait(sys, stats) {
                        Ok(r) => Some(r),
                        Err(r) => {
                            self.insert(ud, plan, Link::None, State::Ready);
                            self.set_owner(ud, owner());
                            self.would_block(ud, r, stats);
                            None
                        }
                    };
                }
                _ => {}
            }
        }
        self.insert(ud, plan, Link::None, State::Ready);
        self.set_owner(ud, owner());
        self.start(ud, stats);
        None
    }

    pub(crate) fn push_chain(
        &mut self,
        items: &mut Vec<(UserData, Item, Link)>,
        stats: &StatsCells,
    ) -> Result<(), Errno> {
        let mut prev: Option<UserData> = None;
        let mut head = None;
        for (ud, item, link) in items.drain(..) {
            let Item::Plan(plan) = item else {
                return Err(Errno(libc::EINVAL));
            };
            self.insert(ud, plan, link, State::Blocked);
            match (plan, prev) {
                (Plan::LinkTimer { .. }, Some(p))
                    if self.ops.get(&p).is_some_and(|x| {
                        x.guard.is_none() && !matches!(x.plan, Plan::LinkTimer { .. })
                    }) =>
                {
                    // Guards `p`; the chain goes on after the timeout.
                    if let Some(pp) = self.ops.get_mut(&p) {
                        pp.guard = Some(ud);
                        pp.next = Some(ud);
                    }
                    if let Some(t) = self.ops.get_mut(&ud) {
                        t.guards = Some(p);
                    }
                }
                (_, Some(p)) => {
                    if let Some(pp) = self.ops.get_mut(&p) {
                        pp.next = Some(ud);
                    }
                }
                (_, None) => head = Some(ud),
            }
            prev = Some(ud);
        }
        if let Some(h) = head {
            self.start(h, stats);
        }
        Ok(())
    }

    /// Runs an operation's plan as far as it goes now.
    fn start(&mut self, ud: UserData, stats: &StatsCells) {
        let Some(p) = self.ops.get_mut(&ud) else {
            return;
        };
        p.state = State::Ready;
        let plan = p.plan;
        if let Some(g) = p.guard {
            if let Some(Plan::LinkTimer { after }) = self.ops.get(&g).map(|t| t.plan) {
                let id = self.timers.insert(Instant::now() + after, g);
                if let Some(t) = self.ops.get_mut(&g) {
                    t.state = State::Timer(id);
                }
            }
        }
        match plan {
            Plan::Done(res) => self.complete(ud, res, stats),
            Plan::Io { .. } => self.try_io(ud, stats),
            Plan::Multi { .. } => self.try_multi(ud, stats),
            Plan::Pool(sys) => self.send_to_pool(ud, sys, stats),
            Plan::Poll { fd, events } => self.try_poll(ud, fd, events, stats),
            Plan::Timer { after, count } => {
                let id = self.timers.insert(Instant::now() + after, ud);
                if let Some(p) = self.ops.get_mut(&ud) {
                    p.state = State::Timer(id);
                }
                if count > 0 {
                    self.counting.push(ud);
                }
            }
            // A guarding link timeout is never started: its guarded op starts its timer and
            // completes or removes it. One started here guards nothing (alone, first in a
            // chain, or after another timeout): EINVAL, as io_uring says.
            Plan::LinkTimer { .. } => self.complete(ud, -libc::EINVAL, stats),
            Plan::Cancel { user_data } => {
                let r = self.cancel_op(user_data, stats);
                self.complete(ud, r, stats);
            }
        }
    }

    fn try_io(&mut self, ud: UserData, stats: &StatsCells) {
        let Some(p) = self.ops.get(&ud) else { return };
        let Plan::Io { sys, fd, interest } = p.plan else {
            return;
        };
        let plain = (p.plain || !self.nowait || self.facts.is_refused(fd)) && !sys.never_blocks();
        let known_file = p.file;
        let direct = self.facts.is_direct(fd, stats);
        if direct && self.submit_aio(ud, sys, stats) {
            return;
        }
        if known_file == Some(true) || direct {
            // A regular file whose data was not cached, or an O_DIRECT file (whose
            // RWF_NOWAIT calls wait for the device) that AIO did not take: the pool.
            return self.send_to_pool(ud, sys, stats);
        }
        if plain {
            // No RWF_NOWAIT: a plain call may block. Files go to the pool; pipes and sockets
            // are called only once poll(2) says they are ready, with O_NONBLOCK for the call
            // (the descriptor may be in blocking mode, and ready is not room for everything).
            if self.is_file(ud, fd, stats) {
                return self.send_to_pool(ud, sys, stats);
            }
            let events = if interest == Interest::Write {
                libc::POLLOUT
            } else {
                libc::POLLIN
            };
            let mut pfd = libc::pollfd {
                fd,
                events,
                revents: 0,
            };
            StatsCells::bump(&stats.syscalls);
            // SAFETY: one pollfd on this frame, zero timeout.
            let n = unsafe { libc::poll(&mut pfd, 1, 0) };
            if n == 0 {
                return self.wait_or_fail(ud, fd, interest, stats);
            }
            StatsCells::bump(&stats.syscalls);
            // SAFETY: `ud` is pending in this driver, so its operation is alive in the
            // engine's table and nothing else uses its memory during the call.
            let r = unsafe { sys.run_ready(fd) };
            if r == -libc::EAGAIN {
                return self.wait_or_fail(ud, fd, interest, stats);
            }
            StatsCells::bump(&stats.inline_completions);
            return self.complete(ud, r, stats);
        }
        match Self::attempt_nowait(sys, stats) {
            Ok(r) => self.complete(ud, r, stats),
            Err(r) => self.would_block(ud, r, stats),
        }
    }

    /// One `RWF_NOWAIT` attempt: `Ok(result)` when it is final, `Err(EAGAIN or EOPNOTSUPP)`
    /// when the call would have blocked or refuses to try.
    #[inline]
    fn attempt_nowait(sys: Syscall, stats: &StatsCells) -> Result<i32, Errno> {
        StatsCells::bump(&stats.syscalls);
        // SAFETY: called for a pending operation only, alive in the engine's table and
        // untouched by anything else during the call.
        let r = unsafe { sys.run(true) };
        if r == -libc::EAGAIN || (r == -libc::EOPNOTSUPP && !sys.never_blocks()) {
            return Err(Errno(-r));
        }
        StatsCells::bump(&stats.inline_completions);
        Ok(r)
    }

    /// After a `RWF_NOWAIT` attempt would have blocked: files go to the pool, pipes and
    /// sockets wait for readiness.
    fn would_block(&mut self, ud: UserData, why: Errno, stats: &StatsCells) {
        let Some(p) = self.ops.get_mut(&ud) else {
            return;
        };
        let Plan::Io { sys, fd, interest } = p.plan else {
            return;
        };
        if why == Errno(libc::EOPNOTSUPP) {
            // This file refuses RWF_NOWAIT: from now on (for this operation, and for the
            // descriptor until the hints recheck it) no more attempts, poll-gated plain calls.
            p.plain = true;
            self.facts.refused(fd);
        }
        if self.is_file(ud, fd, stats) {
            self.send_to_pool(ud, sys, stats);
        } else {
            self.wait_or_fail(ud, fd, interest, stats);
        }
    }

    /// Whether `fd` is a regular file or block device (always "ready" to epoll, so EAGAIN
    /// means the pool), found once per operation.
    fn is_file(&mut self, ud: UserData, fd: RawFd, stats: &StatsCells) -> bool {
        let Some(p) = self.ops.get(&ud) else {
            return false;
        };
        if let Some(known) = p.file {
            return known;
        }
        // A number epoll already watches for this very descriptor is pollable: not a regular
        // file. No fstat then (one system call less per socket receive that would block).
        let file = !self.watched_for(fd, &p.owner) && {
            StatsCells::bump(&stats.syscalls);
            matches!(file_type(fd), Some(libc::S_IFREG | libc::S_IFBLK))
        };
        if let Some(p) = self.ops.get_mut(&ud) {
            p.file = Some(file);
        }
        file
    }

    /// Whether epoll's registration of `fd` was made for `owner`, a shared descriptor still
    /// alive: then the number cannot have changed files since.
    fn watched_for(&self, fd: RawFd, owner: &Option<Weak<OwnedFd>>) -> bool {
        match (self.fds.get(&fd).and_then(|w| w.owner.as_ref()), owner) {
            (Some(a), Some(b)) => a.strong_count() > 0 && Weak::ptr_eq(a, b),
            _ => false,
        }
    }

    /// Waits for readiness, or completes with the error that prevents waiting.
    /// An I/O call that would block: wait for readiness. A descriptor epoll refuses (EPERM:
    /// a file type without poll support that still said EAGAIN) runs blocking on the pool.
    fn wait_or_fail(&mut self, ud: UserData, fd: RawFd, interest: Interest, stats: &StatsCells) {
        match self.wait_fd(ud, fd, interest == Interest::Write, stats) {
            Ok(()) => {}
            Err(Errno(libc::EPERM)) => match self.pool_syscall(ud) {
                Some(sys) => self.send_to_pool(ud, sys, stats),
                None => self.complete(ud, -libc::EPERM, stats),
            },
            Err(e) => self.complete(ud, e.raw(), stats),
        }
    }

    /// A multishot call: every success is a completion with `CQE_F_MORE`, drained until the
    /// call would block (edge-triggered readiness), at most `MULTI_BATCH` per round; an error
    /// is the final completion.
    fn try_multi(&mut self, ud: UserData, stats: &StatsCells) {
        const MULTI_BATCH: usize = 64;
        let Some(Plan::Multi { sys, fd, interest }) = self.ops.get(&ud).map(|p| p.plan) else {
            return;
        };
        for _ in 0..MULTI_BATCH {
            StatsCells::bump(&stats.syscalls);
            // SAFETY: `ud` is pending here (its operation alive in the engine's table), and
            // this runs on the driver's thread, which owns the emulated rings.
            let (r, flags) = unsafe { sys.run_multi() };
            if r == -libc::EAGAIN {
                return self.wait_or_fail(ud, fd, interest, stats);
            }
            // An error ends the stream; so does the end of a received stream (0 bytes).
            let ends = r < 0 || (r == 0 && matches!(sys, Syscall::RecvRing { .. }));
            if ends {
                return self.complete(ud, r, stats);
            }
            StatsCells::bump(&stats.inline_completions);
            self.done.push((ud, r, CQE_F_MORE | flags));
        }
        // More may be waiting: go on next round, after the others had their turn.
        if let Some(p) = self.ops.get_mut(&ud) {
            p.state = State::Ready;
        }
        self.ready.push_back(ud);
    }

    fn try_poll(&mut self, ud: UserData, fd: RawFd, events: u32, stats: &StatsCells) {
        let mut pfd = libc::pollfd {
            fd,
            events: events as i16,
            revents: 0,
        };
        StatsCells::bump(&stats.syscalls);
        // SAFETY: one pollfd on this frame, zero timeout.
        let r = unsafe { libc::poll(&mut pfd, 1, 0) };
        if r < 0 {
            let e = io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO);
            return self.complete(ud, -e, stats);
        }
        if pfd.revents != 0 {
            if pfd.revents & libc::POLLNVAL != 0 {
                return self.complete(ud, -libc::EBADF, stats);
            }
            return self.complete(ud, pfd.revents as u16 as i32, stats);
        }
        let write = events & (libc::POLLOUT as u32) != 0 && events & (libc::POLLIN as u32) == 0;
        if let Err(e) = self.wait_fd(ud, fd, write, stats) {
            self.complete(ud, e.raw(), stats);
        }
    }

    /// Registers `ud` as waiting for `fd` to become readable (or writable).
    ///
    /// Descriptors stay registered (edge-triggered, both directions) between waits. But a
    /// number may have been closed and reused since its last wait (by the caller, or by
    /// dropping an owned descriptor), and epoll forgets a closed file by itself. So when
    /// nobody else waits on the number, the registration is renewed with EPOLL_CTL_MOD
    /// (ENOENT: the old file is gone, add the new one), unless it was made for the very shared
    /// descriptor this operation holds and that descriptor is still alive: then the number
    /// cannot have changed files, and no system call is needed (the common case for the
    /// runtime's sockets and files).
    fn wait_fd(
        &mut self,
        ud: UserData,
        fd: RawFd,
        write: bool,
        stats: &StatsCells,
    ) -> Result<(), Errno> {
        let interest = PInterest::READABLE | PInterest::WRITABLE;
        let owner = self.ops.get(&ud).and_then(|p| p.owner.clone());
        let (known, trusted) = match self.fds.get(&fd) {
            None => (false, false),
            Some(w) => {
                let busy = !(w.readers.is_empty() && w.writers.is_empty());
                (true, busy || self.watched_for(fd, &owner))
            }
        };
        if !trusted {
            StatsCells::bump(&stats.syscalls);
            let first = if known {
                self.poller.modify(fd, fd as u64, interest, Mode::Edge)
            } else {
                self.poller.add(fd, fd as u64, interest, Mode::Edge)
            };
            let r = match first {
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    self.poller.add(fd, fd as u64, interest, Mode::Edge)
                }
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    self.poller.modify(fd, fd as u64, interest, Mode::Edge)
                }
                r => r,
            };
            // EPERM: a descriptor epoll cannot watch; the caller decides.
            r.map_err(|e| Errno::of(&e))?;
        }
        let w = self.fds.entry(fd).or_default();
        if !trusted {
            w.owner = owner;
        }
        if write {
            w.writers.push(ud);
        } else {
            w.readers.push(ud);
        }
        if let Some(p) = self.ops.get_mut(&ud) {
            p.state = State::WaitFd(fd);
        }
        Ok(())
    }

    /// Hands a positional transfer on an `O_DIRECT` file to the kernel's AIO context (set up
    /// at the first one); false when AIO is off, full or refuses it (the pool takes it).
    fn submit_aio(&mut self, ud: UserData, sys: Syscall, stats: &StatsCells) -> bool {
        let op = match sys {
            _ if self
                .facts
                .is_refused(sys.transfer().map_or(-1, |(fd, _)| fd)) =>
            {
                return false
            }
            Syscall::Read { fd, buf, len, off } if off >= 0 => AioOp::Read { fd, buf, len, off },
            Syscall::Write { fd, buf, len, off } if off >= 0 => AioOp::Write { fd, buf, len, off },
            Syscall::Readv { fd, iov, cnt, off } if off >= 0 => AioOp::Readv { fd, iov, cnt, off },
            Syscall::Writev { fd, iov, cnt, off } if off >= 0 => {
                AioOp::Writev { fd, iov, cnt, off }
            }
            _ => return false,
        };
        if matches!(self.aio, AioSlot::Untried) {
            // eventfd, io_setup, epoll_ctl.
            for _ in 0..3 {
                StatsCells::bump(&stats.syscalls);
            }
            // Missing (ENOSYS), forbidden (EPERM) or fs.aio-max-nr used up (EAGAIN): the
            // pool, as before.
            let poller = &self.poller;
            self.aio = Aio::new(AIO_ENTRIES)
                .and_then(|aio| {
                    poller.add(aio.fd(), AIO_TOKEN, PInterest::READABLE, Mode::Edge)?;
                    Ok(aio)
                })
                .map_or(AioSlot::Off, AioSlot::On);
        }
        let AioSlot::On(aio) = &mut self.aio else {
            return false;
        };
        if !aio.has_room() {
            return false;
        }
        StatsCells::bump(&stats.syscalls);
        // SAFETY: the buffers (and iovec arrays) `sys` names belong to the operation `ud`,
        // which the engine keeps, untouched, until its completion has been reaped here (or,
        // at the engine's drop, leaks; the AIO context's drop waits for the kernel).
        match unsafe { aio.submit(ud.to_raw(), op) } {
            Ok(()) => {
                StatsCells::bump(&stats.aio_jobs);
                if let Some(p) = self.ops.get_mut(&ud) {
                    p.state = State::Aio;
                }
                true
            }
            // A kernel from before RWF_NOWAIT in AIO (4.13/4.14) refuses the field with
            // EINVAL: no AIO on this kernel, if the context never took a request (a malformed
            // one gives EINVAL too; and a context with requests in flight must stay to reap
            // them). EOPNOTSUPP: this file takes no RWF_NOWAIT (NFS, FUSE): not again for
            // the descriptor. Other refusals (EAGAIN: the context is full) send only this
            // transfer to the pool.
            Err(e) => {
                match e.raw_os_error() {
                    Some(libc::EINVAL) if aio.submitted() == 0 => self.aio = AioSlot::Off,
                    Some(libc::EOPNOTSUPP) => {
                        self.facts.refused(sys.transfer().map_or(-1, |(fd, _)| fd))
                    }
                    _ => {}
                }
                false
            }
        }
    }

    /// Completes what the AIO context finished. A request that would have blocked
    /// (`-EAGAIN` under `RWF_NOWAIT`) or whose device takes no `REQ_NOWAIT` (`-EOPNOTSUPP`
    /// from the block layer: device-mapper and md on many kernels; its descriptor then
    /// skips AIO) goes to the pool instead, as io_uring reissues those itself.
    fn reap_aio(&mut self, stats: &StatsCells) {
        let AioSlot::On(aio) = &mut self.aio else {
            return;
        };
        StatsCells::bump(&stats.syscalls);
        let mut done = std::mem::take(&mut self.aio_done);
        // On an error (EFAULT/EINVAL: not expected) `reap` re-arms the eventfd, so what it
        // did not collect is reaped at the next wait; what it did is dispatched now.
        let _ = aio.reap(&mut done);
        for (token, res) in done.drain(..) {
            let ud = UserData::from_raw(token);
            let Some(p) = self.ops.get(&ud) else { continue };
            if !matches!(p.state, State::Aio) {
                continue;
            }
            // The kernel caps a transfer at MAX_RW_COUNT: the result fits an i32.
            let res = res.clamp(i32::MIN as i64, i32::MAX as i64) as i32;
            match (res, self.pool_syscall(ud)) {
                (r, Some(sys)) if r == -libc::EAGAIN || r == -libc::EOPNOTSUPP => {
                    if r == -libc::EOPNOTSUPP {
                        self.facts.refused(sys.transfer().map_or(-1, |(fd, _)| fd));
                    }
                    self.send_to_pool(ud, sys, stats);
                }
                (r, _) => self.complete(ud, r, stats),
            }
        }
        self.aio_done = done;
    }

    fn send_to_pool(&mut self, ud: UserData, sys: Syscall, stats: &StatsCells) {
        if let Syscall::Close { fd } = sys {
            // Leave epoll before the number can be reused.
            if self.fds.remove(&fd).is_some() {
                let _ = self.poller.delete(fd);
            }
            self.facts.forget(fd);
        }
        if !self.overflow.is_empty() {
            // Keep submission order: queue behind those already waiting.
            self.overflow.push_back(ud);
            if let Some(p) = self.ops.get_mut(&ud) {
                p.state = State::Overflow;
            }
            return;
        }
        self.submit_pool(ud, sys, stats);
    }

    fn submit_pool(&mut self, ud: UserData, sys: Syscall, stats: &StatsCells) {
        match self.pool.try_submit(ud.to_raw(), sys) {
            Ok(id) => {
                StatsCells::bump(&stats.pool_jobs);
                if let Some(p) = self.ops.get_mut(&ud) {
                    p.state = State::Pool(id);
                }
            }
            Err(rej) => match rej.reason {
                RejectReason::Full => {
                    // Backpressure: the job waits here, bounded by the engine's own table.
                    self.overflow.push_back(ud);
                    if let Some(p) = self.ops.get_mut(&ud) {
                        p.state = State::Overflow;
                    }
                }
                RejectReason::ShutDown => self.complete(ud, -libc::ECANCELED, stats),
                RejectReason::Spawn(e) => {
                    self.complete(ud, -e.raw_os_error().unwrap_or(libc::EAGAIN), stats)
                }
            },
        }
    }

    fn pool_syscall(&self, ud: UserData) -> Option<Syscall> {
        match self.ops.get(&ud)?.plan {
            Plan::Io { sys, .. } | Plan::Pool(sys) => Some(sys),
            _ => None,
        }
    }

    fn pump_overflow(&mut self, stats: &StatsCells) {
        while let Some(&ud) = self.overflow.front() {
            let Some(sys) = self.pool_syscall(ud) else {
                self.overflow.pop_front();
                continue;
            };
            match self.pool.try_submit(ud.to_raw(), sys) {
                Ok(id) => {
                    self.overflow.pop_front();
                    StatsCells::bump(&stats.pool_jobs);
                    if let Some(p) = self.ops.get_mut(&ud) {
                        p.state = State::Pool(id);
                    }
                }
                Err(_) => return,
            }
        }
    }

    /// The final completion of `ud`; runs its chain on.
    fn complete(&mut self, ud: UserData, res: i32, stats: &StatsCells) {
        let Some(p) = self.ops.remove(&ud) else {
            return;
        };
        self.done.push((ud, res, 0));
        // Timeout::or_count: every other completion counts.
        if !self.counting.is_empty() && !matches!(p.plan, Plan::Timer { .. }) {
            let mut fired = Vec::new();
            for t in &self.counting {
                if let Some(tp) = self.ops.get_mut(t) {
                    tp.count = tp.count.saturating_sub(1);
                    if tp.count == 0 {
                        fired.push(*t);
                    }
                }
            }
            for t in fired {
                self.counting.retain(|x| *x != t);
                if let Some(State::Timer(id)) = self.ops.get(&t).map(|x| x.state) {
                    self.timers.cancel(id);
                }
                self.complete(t, 0, stats);
            }
        }
        if matches!(p.plan, Plan::Timer { .. }) {
            self.counting.retain(|x| *x != ud);
        }
        // The chain: a guarded op ends its link timeout first.
        // (A link timeout that fired or was cancelled has cleared `guard` and handed its
        // successor to `next` already.)
        let mut next = p.next;
        if let Some(g) = p.guard {
            if let Some(t) = self.ops.remove(&g) {
                if let State::Timer(id) = t.state {
                    self.timers.cancel(id);
                }
                next = t.next;
                self.done.push((g, -libc::ECANCELED, 0));
            }
        }
        let Some(n) = next else { return };
        let failed = res < 0 || expected(&p.plan).is_some_and(|want| (res as usize) < want);
        if failed && p.link == Link::Soft {
            self.cancel_chain(n);
        } else {
            self.start(n, stats);
        }
    }

    /// Completes a chain's remaining steps with ECANCELED.
    fn cancel_chain(&mut self, mut ud: UserData) {
        loop {
            let Some(p) = self.ops.remove(&ud) else {
                return;
            };
            self.done.push((ud, -libc::ECANCELED, 0));
            if let Some(g) = p.guard {
                if self.ops.remove(&g).is_some() {
                    self.done.push((g, -libc::ECANCELED, 0));
                }
            }
            match p.next {
                Some(n) => ud = n,
                None => return,
            }
        }
    }

    /// Cancels `target`: 0 when it was stopped (it completes with ECANCELED), -EALREADY when
    /// it is running and will complete on its own, -ENOENT when there is no such operation.
    fn cancel_op(&mut self, target: UserData, stats: &StatsCells) -> i32 {
        let Some(p) = self.ops.get(&target) else {
            return -libc::ENOENT;
        };
        match p.state {
            State::Blocked => {
                // A later chain step: io_uring cancels it and the steps after it.
                self.cancel_chain(target);
                0
            }
            State::Ready => {
                self.ready.retain(|x| *x != target);
                self.complete(target, -libc::ECANCELED, stats);
                0
            }
            State::WaitFd(fd) => {
                if let Some(w) = self.fds.get_mut(&fd) {
                    w.readers.retain(|x| *x != target);
                    w.writers.retain(|x| *x != target);
                }
                self.complete(target, -libc::ECANCELED, stats);
                0
            }
            State::Overflow => {
                self.overflow.retain(|x| *x != target);
                self.complete(target, -libc::ECANCELED, stats);
                0
            }
            State::Pool(id) => match self.pool.cancel(id) {
                Some(_) => {
                    self.complete(target, -libc::ECANCELED, stats);
                    0
                }
                None => -libc::EALREADY,
            },
            // With the device: AIO cannot take it back (io_cancel refuses block I/O); it
            // completes on its own, as a running pool job does.
            State::Aio => -libc::EALREADY,
            State::Timer(id) => {
                self.timers.cancel(id);
                self.counting.retain(|x| *x != target);
                if let Some(g) = p.guards {
                    // A link timeout cancelled on its own leaves its chain: the guarded op goes
                    // on unbounded and is followed by the step after the timeout.
                    let after = p.next;
                    if let Some(gp) = self.ops.get_mut(&g) {
                        gp.guard = None;
                        gp.next = after;
                    }
                    self.ops.remove(&target);
                    self.done.push((target, -libc::ECANCELED, 0));
                    return 0;
                }
                self.complete(target, -libc::ECANCELED, stats);
                0
            }
        }
    }

    pub(crate) fn cancel(&mut self, ud: UserData, stats: &StatsCells) {
        self.cancel_op(ud, stats);
    }

    pub(crate) fn flush(&mut self, stats: &StatsCells) -> io::Result<usize> {
        self.run_ready(stats);
        Ok(0)
    }

    /// Retries the operations that became ready. Only those queued at the start: a multishot
    /// operation that requeues itself waits for the next round, so it cannot starve others.
    fn run_ready(&mut self, stats: &StatsCells) {
        for _ in 0..self.ready.len() {
            let Some(ud) = self.ready.pop_front() else {
                break;
            };
            let Some(p) = self.ops.get(&ud) else { continue };
            match p.plan {
                Plan::Io { .. } => self.try_io(ud, stats),
                Plan::Multi { .. } => self.try_multi(ud, stats),
                Plan::Poll { fd, events } => self.try_poll(ud, fd, events, stats),
                _ => {}
            }
        }
    }

    fn fire_timers(&mut self, stats: &StatsCells) {
        let now = Instant::now();
        while let Some((_, ud)) = self.timers.pop_expired(now) {
            let Some(p) = self.ops.get(&ud) else { continue };
            match (p.plan, p.guards) {
                (Plan::LinkTimer { .. }, Some(target)) => {
                    // The deadline passed first: cancel the guarded op. Its completion (now,
                    // or when a running pool job ends) continues the chain.
                    if let Some(tp) = self.ops.get_mut(&target) {
                        tp.guard = None;
                    }
                    let next = self.ops.get(&ud).and_then(|t| t.next);
                    if let Some(tp) = self.ops.get_mut(&target) {
                        tp.next = next;
                    }
                    self.ops.remove(&ud);
                    self.done.push((ud, -libc::ETIME, 0));
                    self.cancel_op(target, stats);
                }
                _ => {
                    self.counting.retain(|x| *x != ud);
                    self.complete(ud, -libc::ETIME, stats);
                }
            }
        }
    }

    pub(crate) fn wait(
        &mut self,
        timeout: Option<Duration>,
        out: &mut Vec<RawCompletion>,
        stats: &StatsCells,
    ) -> io::Result<()> {
        self.run_ready(stats);
        self.fire_timers(stats);
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let now = Instant::now();
            let mut t = if self.done.is_empty() {
                deadline.map(|d| d.saturating_duration_since(now))
            } else {
                Some(Duration::ZERO)
            };
            if let Some(next) = self.timers.next_deadline() {
                let until = next.saturating_duration_since(now);
                t = Some(t.map_or(until, |x| x.min(until)));
            }
            StatsCells::bump(&stats.enters);
            StatsCells::bump(&stats.syscalls);
            self.poller.wait(&mut self.events, t)?;
            let mut woke = false;
            let mut aio = false;
            for ev in self.events.iter() {
                if ev.token() == WAKER_TOKEN {
                    woke = true;
                    continue;
                }
                if ev.token() == AIO_TOKEN {
                    aio = true;
                    continue;
                }
                let fd = ev.token() as RawFd;
                if let Some(w) = self.fds.get_mut(&fd) {
                    if ev.readable() {
                        self.ready.extend(w.readers.drain(..));
                    }
                    if ev.writable() {
                        self.ready.extend(w.writers.drain(..));
                    }
                }
            }
            if woke {
                self.waker.reset();
                self.pool.drain_completed(&mut self.pool_done);
                let mut done = std::mem::take(&mut self.pool_done);
                for d in done.drain(..) {
                    if let Some(p) = self.ops.get(&UserData::from_raw(d.token)) {
                        if matches!(p.state, State::Pool(_)) {
                            self.complete(UserData::from_raw(d.token), d.result as i32, stats);
                        }
                    }
                }
                self.pool_done = done;
                self.pump_overflow(stats);
            }
            if aio {
                self.reap_aio(stats);
            }
            self.run_ready(stats);
            self.fire_timers(stats);
            if !self.done.is_empty() || deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
        }
        out.append(&mut self.done);
        Ok(())
    }

    pub(crate) fn has_completions(&self) -> bool {
        !self.done.is_empty()
    }

    /// Nothing pending, queued, finished-but-undelivered or timed.
    pub(crate) fn idle(&self) -> bool {
        self.ops.len == 0
            && self.done.is_empty()
            && self.ready.is_empty()
            && self.overflow.is_empty()
            && self.timers.is_empty()
    }

    pub(crate) fn drain(&mut self, out: &mut Vec<RawCompletion>) {
        out.append(&mut self.done);
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Queued jobs never ran: nothing points at their memory any more.
        drop(self.pool.shutdown());
    }
}

/// The epoll backend's report: what it emulates, and the path each operation takes.
fn describe(
    b: &Config,
    reason: String,
    bufs: Option<&BufPool>,
    nowait: bool,
    aio: bool,
    threads: usize,
) -> Report {
    let mut report = Report::new(Backend::Epoll, reason);
    report.registered_buffers = match bufs {
        Some(p) => Status::off(format!(
            "emulated: {} x {} KiB page-aligned pool, same API, plain reads and writes",
            p.count(),
            p.buf_size() / 1024
        )),
        None => Status::off("no buffer pool configured"),
    };
    report.fixed_files = if b.fixed_files > 0 {
        Status::off(format!(
            "emulated: {} slots holding ordinary descriptors",
            b.fixed_files
        ))
    } else {
        Status::off("no slots configured")
    };
    report.registered_ring_fd = Status::off("no ring on this backend");
    report.io_workers = Status::off("no ring on this backend");
    report.sqpoll = Status::off("no ring on this backend");
    report.timed_wait = Status::on("epoll_wait timeout and a timer heap");
    let file_path = if nowait {
        "preadv2/pwritev2 with RWF_NOWAIT inline (page-cache hit), else the blocking pool"
    } else {
        "blocking pool (RWF_NOWAIT attempts disabled)"
    };
    let file_path = if !aio {
        format!("{file_path}; O_DIRECT: the blocking pool (kernel AIO disabled)")
    } else {
        format!(
            "{file_path}; O_DIRECT: kernel AIO (io_submit with RWF_NOWAIT, up to \
             {AIO_ENTRIES} in flight) where the kernel allows it, else the pool"
        )
    };
    report.paths = vec![
        ("nop", "completes inline".into()),
        (
            "read/write",
            format!(
                "sockets, pipes: try now, on EAGAIN wait for epoll readiness; files: {file_path}"
            ),
        ),
        (
            "read_fixed",
            "as read/write (buffers not registered)".into(),
        ),
        ("readv/writev", "as read/write".into()),
        ("fsync", format!("blocking pool ({threads} threads)")),
        ("fallocate", "blocking pool".into()),
        (
            "open",
            "openat2 inline when the path is cached (RESOLVE_CACHED, 5.12), else on the \
             blocking pool (openat without RESOLVE_* before 5.6)"
                .into(),
        ),
        ("close", "blocking pool".into()),
        ("statx", "blocking pool".into()),
        ("timeout", "timer heap, epoll_wait timeout".into()),
        (
            "cancel",
            "queued or waiting: ECANCELED; running on the pool or with AIO: its result".into(),
        ),
        ("poll", "epoll readiness".into()),
        (
            "splice",
            "SPLICE_F_NONBLOCK now, on EAGAIN wait for the pipe end".into(),
        ),
        (
            "accept/connect",
            "accept4/connect now, on EAGAIN (EINPROGRESS) wait for readiness".into(),
        ),
        (
            "send/recv",
            "MSG_DONTWAIT now, on EAGAIN wait for readiness".into(),
        ),
        ("shutdown", "inline".into()),
    ];
    report
}

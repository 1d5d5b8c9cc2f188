//! The ring manager: one io_uring, its submission batching, completion reaping, cancellation,
//! registered buffers and fixed files.
//!
//! - `setup.rs`: ring setup with the best flags the kernel accepts, the probe, registrations.
//! - `submit.rs`: `io_uring_enter` and the ring-fd registration.
//! - this file: pushing SQEs (a full SQ is flushed, never an error), waiting (EINTR, EAGAIN,
//!   EBUSY and CQ overflow handled), reaping, cancel, fixed-file slots.

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, IoUring};

use super::{inline, FdFacts, Item, Link, Offload, RawCompletion};
use crate::buf::BufPool;
use crate::errno::Errno;
use crate::op::{BuildCtx, OnRing, Op, Plan, Syscall};
use crate::stats::StatsCells;
use crate::user_data::UserData;

mod setup;
mod submit;

use submit::{enter, ENTER_GETEVENTS, ENTER_SQ_WAKEUP};

/// How long a wait on an SQPOLL ring watches the CQ before it sleeps in the kernel.
const SQPOLL_SPIN: Duration = Duration::from_micros(50);

pub(crate) struct Driver {
    ring: IoUring,
    /// The registered ring index, or the ring descriptor.
    enter_fd: RawFd,
    registered: bool,
    ext_arg: bool,
    sqpoll: bool,
    fixed_native: bool,
    /// Test hook: the next enter uses this descriptor instead of the ring.
    fail_next: Option<RawFd>,
    /// Completions reaped but not yet handed to the engine.
    cqes: Vec<RawCompletion>,
    /// The timespec of internal wait timeouts on kernels without EXT_ARG. The kernel copies it
    /// when the TIMEOUT request is prepared, at submission.
    wait_ts: Box<io_uring::types::Timespec>,
    /// The earliest deadline of an internal wait timeout still in the kernel: a later timed
    /// wait needs no timeout of its own (the runtime waits with a timeout on every turn once
    /// it has timers; one `TIMEOUT` each would pile up in the kernel until they expired).
    wait_pending: Option<Instant>,
    /// Cancels that found the SQ full and the ring refusing a flush; retried on every wait.
    deferred_cancels: Vec<UserData>,
    /// Provided-buffer rings registered with this ring: kept mapped as long as the ring.
    buf_rings: Vec<std::rc::Rc<crate::buf::ring::RingInner>>,
    /// Keeps the registered arena mapped for as long as the ring may use it.
    bufs: Option<BufPool>,
    /// What is known of the descriptors operations name (`O_DIRECT`, local filesystem).
    facts: FdFacts,
    /// A file read submitted alone (nothing else in flight, no completed ticket held: a
    /// caller keeping a queue of reads is better served by the ring's batch) is first tried
    /// inline with `RWF_NOWAIT`: a page-cache hit then costs one plain syscall instead of a
    /// ring round trip; a miss goes to the ring. Off with `Feature::NowaitReads` disabled.
    lone_reads: bool,
    /// Positional file writes run inline, blocking (`Builder::inline_file_writes`).
    inline_writes: bool,
    /// The opcodes this ring has (the probe, less those the builder masked), one bit each.
    opcodes: [u64; 4],
    /// The blocking pool for the calls without an opcode here.
    offload: Offload,
}

fn link_flags(link: Link) -> squeue::Flags {
    match link {
        Link::None => squeue::Flags::empty(),
        Link::Soft => squeue::Flags::IO_LINK,
        Link::Hard => squeue::Flags::IO_HARDLINK,
    }
}

/// The engine's own cancel of `target`.
fn cancel_entry(target: UserData) -> squeue::Entry {
    opcode::AsyncCancel::new(target.to_raw())
        .build()
        .user_data(UserData::CANCEL.to_raw())
}

impl Driver {
    pub(crate) fn fixed_files_native(&self) -> bool {
        self.fixed_native
    }

    pub(crate) fn fail_next_enter(&mut self, fd: RawFd) {
        self.fail_next = Some(fd);
    }

    #[inline]
    pub(crate) fn has_completions(&self) -> bool {
        !self.cqes.is_empty()
    }

    /// Nothing to submit, no reaped completions, no deferred cancels.
    pub(crate) fn idle(&mut self) -> bool {
        self.cqes.is_empty()
            && self.deferred_cancels.is_empty()
            && self.ring.submission().is_empty()
    }

    /// The engine's submission of one operation: inline where a fast path takes it (a
    /// local `statx`, a lone cached read, an inline write), else its SQE for the next batch;
    /// a transfer on an `O_DIRECT` file enters the kernel at once. `Ok(Some(result))`:
    /// completed inline.
    #[inline]
    pub(crate) fn submit<T: Op>(
        &mut self,
        ud: UserData,
        op: &mut T,
        ctx: &BuildCtx<'_>,
        stats: &StatsCells,
        alone: bool,
    ) -> Result<Option<i32>, Errno> {
        if let Some(target) = op.cancel_target() {
            // A cancel of a call on the pool: the kernel does not know it.
            if let Some(gone) = self.offload.cancel(target, &mut self.cqes) {
                return Ok(Some(if gone { 0 } else { -libc::EALREADY }));
            }
        }
        if inline::is_metadata(T::FAST) {
            if let Some(r) = op
                .plan(ctx)
                .ok()
                .and_then(|p| inline::metadata(&mut self.facts, T::FAST, &p, stats))
            {
                return Ok(Some(r));
            }
        }
        if !self.on_ring(op) {
            return self.off_ring(ud, op, ctx, stats);
        }
        // A read or write at an offset: its call, planned once for every path below.
        let transfer = inline::positional(op, ctx);
        if let Some(r) = transfer.and_then(|sys| self.try_inline(sys, stats, alone)) {
            return Ok(Some(r));
        }
        self.push_sqe(ud, op.uring_sqe(ctx)?, Link::None, stats)?;
        if let Some((fd, _)) = transfer.and_then(|sys| sys.transfer()) {
            self.submit_direct_now(fd, stats);
        }
        Ok(None)
    }

    /// Whether `T` has its opcode on this ring.
    #[inline]
    pub(crate) fn on_ring<T: Op>(&self, op: &T) -> bool {
        let has = match T::RING {
            OnRing::Always => true,
            OnRing::Needs(code) => self.opcodes[usize::from(code / 64)] & (1 << (code % 64)) != 0,
            OnRing::Never => false,
        };
        has && op.fits_sqe()
    }

    /// An operation without its opcode here: its plan runs on the pool (or completes at
    /// once), as on the epoll backend. A cancel of such an operation is answered here.
    #[cold]
    fn off_ring<T: Op>(
        &mut self,
        ud: UserData,
        op: &mut T,
        ctx: &BuildCtx<'_>,
        stats: &StatsCells,
    ) -> Result<Option<i32>, Errno> {
        match op.plan(ctx)? {
            Plan::Done(r) => Ok(Some(r)),
            Plan::Pool(sys) => self.offload.submit(ud, sys, stats).map(|()| None),
            // Every operation without an opcode is a pool call.
            _ => Err(Errno(libc::EOPNOTSUPP)),
        }
    }

    /// The fast paths that complete a positional transfer at its submission; `None` when
    /// none takes it.
    #[inline]
    fn try_inline(&mut self, sys: Syscall, stats: &StatsCells, alone: bool) -> Option<i32> {
        if self.lone_reads && alone {
            if let Some(r) = self.try_lone_read(sys, stats) {
                return Some(r);
            }
        }
        if self.inline_writes {
            return inline::positional_write(&mut self.facts, sys, stats);
        }
        None
    }

    /// A lone file read tried inline (see `lone_reads`): its result, or `None` when it would
    /// block (not cached), cannot be tried (not a positional read, an `O_DIRECT` file, a
    /// fixed slot filled by a direct open, with no descriptor) or the file refuses
    /// `RWF_NOWAIT`.
    #[inline]
    fn try_lone_read(&mut self, sys: Syscall, stats: &StatsCells) -> Option<i32> {
        let Syscall::Read { fd, .. } = sys else {
            return None;
        };
        if self.facts.skip_inline(fd, stats) {
            return None;
        }
        StatsCells::bump(&stats.syscalls);
        // SAFETY: `sys` comes from the plan of the operation being submitted, which the
        // caller's frame borrows and has handed to nobody else.
        let r = unsafe { sys.run(true) };
        if r == -libc::EOPNOTSUPP {
            // This filesystem does not do RWF_NOWAIT: stop trying on this descriptor.
            self.facts.refused(fd);
        }
        if r == -libc::EAGAIN || r == -libc::EOPNOTSUPP {
            return None;
        }
        StatsCells::bump(&stats.inline_completions);
        Some(r)
    }

    /// A transfer on an `O_DIRECT` file goes to the kernel at once instead of with the next
    /// batch: it waits for the device anyway, so the syscall is cheap beside it, and the
    /// device starts on it sooner (kernel-notes.md has the figures).
    #[inline]
    fn submit_direct_now(&mut self, fd: RawFd, stats: &StatsCells) {
        if self.facts.is_direct(fd, stats) {
            // An error leaves the entry in the SQ: the next turn submits it and reports.
            let _ = self.flush(stats);
        }
    }

    #[inline]
    pub(crate) fn push_sqe(
        &mut self,
        ud: UserData,
        e: squeue::Entry,
        link: Link,
        stats: &StatsCells,
    ) -> Result<(), Errno> {
        self.push_entry(&e.user_data(ud.to_raw()).flags(link_flags(link)), stats)
    }

    #[inline]
    fn push_entry(&mut self, e: &squeue::Entry, stats: &StatsCells) -> Result<(), Errno> {
        for _ in 0..3 {
            // SAFETY: every pointer in the SQE refers to memory owned by an operation that the
            // engine keeps alive and in place until its completion is reaped.
            if unsafe { self.ring.submission().push(e) }.is_ok() {
                return Ok(());
            }
            StatsCells::bump(&stats.sq_full_flushes);
            self.flush(stats).map_err(|e| Errno::of(&e))?;
        }
        // The kernel consumed nothing three times over: the ring is unusable.
        Err(Errno(libc::EBUSY))
    }

    pub(crate) fn push_chain(
        &mut self,
        items: &mut Vec<(UserData, Item, Link)>,
        stats: &StatsCells,
    ) -> Result<(), Errno> {
        let cap = self.ring.submission().capacity();
        if items.len() > cap {
            return Err(Errno(libc::EINVAL));
        }
        // A chain must reach the kernel in one piece: make room first.
        let mut tries = 0;
        while cap - self.ring.submission().len() < items.len() {
            StatsCells::bump(&stats.sq_full_flushes);
            self.flush(stats).map_err(|e| Errno::of(&e))?;
            tries += 1;
            if tries > 3 {
                return Err(Errno(libc::EBUSY));
            }
        }
        let mut sq = self.ring.submission();
        for (ud, item, link) in items.drain(..) {
            let Item::Sqe(e) = item else {
                return Err(Errno(libc::EINVAL));
            };
            let e = e.user_data(ud.to_raw()).flags(link_flags(link));
            // SAFETY: as in push_entry; room was made above.
            if unsafe { sq.push(&e) }.is_err() {
                return Err(Errno(libc::EBUSY));
            }
        }
        Ok(())
    }

    fn enter(
        &mut self,
        to_submit: u32,
        min_complete: u32,
        flags: u32,
        timeout: Option<Duration>,
        stats: &StatsCells,
    ) -> io::Result<u32> {
        StatsCells::bump(&stats.enters);
        StatsCells::bump(&stats.syscalls);
        if let Some(fd) = self.fail_next.take() {
            return enter(fd, false, to_submit, min_complete, flags, timeout);
        }
        enter(
            self.enter_fd,
            self.registered,
            to_submit,
            min_complete,
            flags,
            timeout,
        )
    }

    /// The entries waiting in the SQ, and the flags an enter needs besides the caller's:
    /// GETEVENTS to flush a CQ overflow or run deferred task work, SQ_WAKEUP for a sleeping
    /// SQPOLL thread (and whether those force an enter).
    fn sq_state(&mut self, stats: &StatsCells) -> (u32, u32, bool) {
        let sq = self.ring.submission();
        let pending = sq.len() as u32;
        let mut flags = 0;
        if sq.cq_overflow() {
            StatsCells::bump(&stats.cq_overflows);
            flags |= ENTER_GETEVENTS;
        }
        if sq.taskrun() {
            flags |= ENTER_GETEVENTS;
        }
        let mut must_enter = flags != 0;
        if self.sqpoll {
            // The SQPOLL thread needs a wake-up only once it has gone idle (see io_uring(7)
            // and the io-uring crate's `need_wakeup`); the fence orders our tail store before
            // the flags load.
            std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
            if sq.need_wakeup() {
                flags |= ENTER_SQ_WAKEUP;
                must_enter = true;
            }
        }
        (pending, flags, must_enter)
    }

    /// Submits what is in the SQ without waiting.
    pub(crate) fn flush(&mut self, stats: &StatsCells) -> io::Result<usize> {
        let mut total = 0usize;
        loop {
            let (pending, flags, must_enter) = self.sq_state(stats);
            if pending == 0 && !must_enter {
                return Ok(total);
            }
            if self.sqpoll && !must_enter {
                // The kernel thread is awake and will pick the entries up.
                return Ok(total + pending as usize);
            }
            match self.enter(pending, 0, flags, None, stats) {
                Ok(n) => {
                    total += n as usize;
                    self.reap(stats);
                    // With SUBMIT_ALL everything went in; without it the kernel stops at an
                    // entry that failed to prepare (and posts its CQE): go on with the rest.
                    if n == 0 || self.ring.submission().is_empty() || self.sqpoll {
                        return Ok(total);
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EBUSY)) => {
                    // The kernel is short of memory for requests, or the CQ overflow list is
                    // full: reap to make room, then try again.
                    if self.reap(stats) == 0 {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Polls the CQ tail for up to `budget`; true when a completion arrived.
    fn spin_for_cqe(&mut self, budget: Duration) -> bool {
        let start = Instant::now();
        loop {
            for _ in 0..64 {
                if !self.ring.completion().is_empty() {
                    return true;
                }
                std::hint::spin_loop();
            }
            if start.elapsed() >= budget {
                return false;
            }
        }
    }

    /// Copies every available CQE out of the ring into `cqes`; returns how many.
    fn reap(&mut self, stats: &StatsCells) -> usize {
        let mut cqes = std::mem::take(&mut self.cqes);
        let n = self.reap_into(&mut cqes, stats);
        self.cqes = cqes;
        n
    }

    /// Moves the completions reaped earlier (by a flush), then every CQE in the ring, into
    /// `out`, in the order the kernel posted them (a multishot operation's items must stay in
    /// order); returns how many came from the ring.
    #[inline]
    fn reap_into(&mut self, out: &mut Vec<RawCompletion>, stats: &StatsCells) -> usize {
        if !self.cqes.is_empty() {
            out.append(&mut self.cqes);
        }
        let mut n = 0;
        loop {
            {
                let mut cq = self.ring.completion();
                for cqe in &mut cq {
                    let ud = UserData::from_raw(cqe.user_data());
                    if ud == UserData::WAIT_TIMEOUT {
                        // Expired (or cancelled): the next timed wait pushes a new one. With
                        // several pending (each earlier than the last), forgetting them all
                        // costs at most one timeout too many.
                        self.wait_pending = None;
                    } else if ud == UserData::POOL_WAKE {
                        self.offload.on_wake(out, stats);
                    }
                    out.push((ud, cqe.result(), cqe.flags()));
                    n += 1;
                }
            }
            // With NODROP, completions that did not fit wait in the kernel; an enter with
            // GETEVENTS moves them into the CQ once there is room.
            if !self.ring.submission().cq_overflow() {
                return n;
            }
            StatsCells::bump(&stats.cq_overflows);
            if let Err(e) = self.enter(0, 0, ENTER_GETEVENTS, None, stats) {
                if e.raw_os_error() != Some(libc::EINTR) {
                    return n;
                }
            }
        }
    }

    /// Submits the batch and waits for at least one completion or the timeout; every
    /// completion available goes to `out`.
    pub(crate) fn wait(
        &mut self,
        timeout: Option<Duration>,
        out: &mut Vec<RawCompletion>,
        stats: &StatsCells,
    ) -> io::Result<()> {
        let deadline = timeout.map(|t| Instant::now() + t);
        if !self.deferred_cancels.is_empty() {
            self.push_deferred_cancels();
        }
        // Calls on the pool: a POLL_ADD on its eventfd wakes this wait when one ends. Without
        // it in the ring the wait could sleep past their completions: it only polls then.
        let unwatched = self.watch_pool(stats);
        let base = out.len();
        let mut spun = false;
        let result = loop {
            self.reap_into(out, stats);
            let have = out.len() > base;
            let (pending, mut flags, must_enter) = self.sq_state(stats);
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if self.sqpoll && !must_enter {
                // The kernel thread submits by itself: enter only to sleep for completions.
                if have || remaining == Some(Duration::ZERO) {
                    break Ok(());
                }
                // Whoever asks for SQPOLL has given a core to the kernel's thread, which
                // completes a cached read within microseconds: watch the CQ for a moment
                // before paying for a sleep and the wake-up.
                if !spun {
                    spun = true;
                    if self.spin_for_cqe(SQPOLL_SPIN.min(remaining.unwrap_or(SQPOLL_SPIN))) {
                        continue;
                    }
                }
            }
            flags |= ENTER_GETEVENTS;
            if have && pending == 0 && flags == ENTER_GETEVENTS && !self.sqpoll {
                // Completions at hand and nothing to submit or flush: no need to enter.
                break Ok(());
            }
            let poll_only = have || unwatched || remaining == Some(Duration::ZERO);
            let (want, ts) = self.wait_bound(poll_only, remaining, stats);
            // A wait timeout pushed just now is one more entry to submit.
            let pending = pending.max(self.ring.submission().len() as u32);
            match self.enter(pending, want, flags, ts, stats) {
                Ok(_) => break Ok(()),
                Err(e) => {
                    if let Some(r) = self.after_enter_error(e, deadline, out, base, stats) {
                        break r;
                    }
                }
            }
        };
        self.reap_into(out, stats);
        result
    }

    /// Puts the pool's eventfd watch in the SQ if the pool has work and no watch is there;
    /// true when it has work but the watch could not be queued.
    #[inline]
    fn watch_pool(&mut self, stats: &StatsCells) -> bool {
        let Some(fd) = self.offload.arm() else {
            return false;
        };
        let e = opcode::PollAdd::new(io_uring::types::Fd(fd), libc::POLLIN as u32)
            .build()
            .user_data(UserData::POOL_WAKE.to_raw());
        if self.push_entry(&e, stats).is_err() {
            self.offload.disarm();
            return true;
        }
        false
    }

    /// How many completions a wait asks for (0: poll only) and its EXT_ARG timeout. Without
    /// EXT_ARG the bound is an internal TIMEOUT request; when none can be queued the wait
    /// only polls: a sleep would have no bound, and the caller's loop comes back.
    #[inline]
    fn wait_bound(
        &mut self,
        poll_only: bool,
        remaining: Option<Duration>,
        stats: &StatsCells,
    ) -> (u32, Option<Duration>) {
        match remaining {
            _ if poll_only => (0, None),
            None => (1, None),
            Some(rem) if self.ext_arg => (1, Some(rem)),
            Some(rem) => (u32::from(self.push_wait_timeout(rem, stats)), None),
        }
    }

    /// After a failed wait's enter: `Some(result)` to end the wait, `None` to try again.
    fn after_enter_error(
        &mut self,
        e: io::Error,
        deadline: Option<Instant>,
        out: &mut Vec<RawCompletion>,
        base: usize,
        stats: &StatsCells,
    ) -> Option<io::Result<()>> {
        match e.raw_os_error() {
            // A timed wait that expired: not an error.
            Some(libc::ETIME) => Some(Ok(())),
            // A signal: whatever was submitted stays submitted (the SQ head moved); wait
            // again for the rest of the time, resubmitting only what is left.
            Some(libc::EINTR) => deadline
                .is_some_and(|d| Instant::now() >= d)
                .then_some(Ok(())),
            Some(libc::EAGAIN) | Some(libc::EBUSY) => {
                if self.reap_into(out, stats) == 0 {
                    // Give the kernel a moment to free request memory.
                    std::thread::yield_now();
                }
                (out.len() > base).then_some(Ok(()))
            }
            _ => Some(Err(e)),
        }
    }

    /// Bounds a wait on kernels without EXT_ARG with an internal TIMEOUT request: true when
    /// one is in the kernel's hands (or the SQ) and due by the deadline, false when none could
    /// be queued.
    fn push_wait_timeout(&mut self, after: Duration, stats: &StatsCells) -> bool {
        let deadline = Instant::now() + after;
        // A pending one due no later than a millisecond after this deadline serves: the
        // same deadline asked again comes back a few nanoseconds off, and a timed wait may
        // end up to a millisecond late (only on kernels without EXT_ARG). One due earlier
        // ends the wait early, and the caller loops.
        if self
            .wait_pending
            .is_some_and(|p| p <= deadline + Duration::from_millis(1))
        {
            return true;
        }
        *self.wait_ts = io_uring::types::Timespec::new()
            .sec(after.as_secs())
            .nsec(after.subsec_nanos());
        let e = opcode::Timeout::new(&*self.wait_ts)
            .build()
            .user_data(UserData::WAIT_TIMEOUT.to_raw());
        // Only a timeout that was queued counts as pending: a later wait trusting one that
        // never reached the SQ would sleep without a bound.
        if self.push_entry(&e, stats).is_err() {
            return false;
        }
        StatsCells::bump(&stats.wait_timeouts);
        self.wait_pending = Some(self.wait_pending.map_or(deadline, |p| p.min(deadline)));
        true
    }

    pub(crate) fn drain(&mut self, out: &mut Vec<RawCompletion>) {
        out.append(&mut self.cqes);
    }

    pub(crate) fn cancel(&mut self, ud: UserData, stats: &StatsCells) {
        if self.offload.cancel(ud, &mut self.cqes).is_some() {
            return;
        }
        let e = cancel_entry(ud);
        if self.push_entry(&e, stats).is_err() {
            // The SQ is full and the kernel takes nothing now: keep the request for later.
            self.deferred_cancels.push(ud);
        }
    }

    /// Queues the cancels that found no room earlier.
    fn push_deferred_cancels(&mut self) {
        while let Some(&ud) = self.deferred_cancels.last() {
            let e = cancel_entry(ud);
            // SAFETY: a cancel SQE references no memory.
            if unsafe { self.ring.submission().push(&e) }.is_err() {
                return;
            }
            self.deferred_cancels.pop();
        }
    }

    pub(crate) fn buf_ring(
        &mut self,
        bgid: u16,
        entries: u16,
        buf_size: usize,
    ) -> io::Result<std::rc::Rc<crate::buf::ring::RingInner>> {
        let ring = crate::buf::ring::RingInner::new(bgid, entries, buf_size, true)?;
        let addr = ring.ring_addr().unwrap_or(0);
        // SAFETY: `addr` is the ring mapping of `entries` entries made above; it stays mapped
        // for as long as this driver's ring exists (kept in `buf_rings`).
        unsafe {
            self.ring
                .submitter()
                .register_buf_ring_with_flags(addr, ring.entries(), bgid, 0)
        }
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("registering a provided-buffer ring (needs Linux 5.19): {e}"),
            )
        })?;
        ring.fill();
        let ring = std::rc::Rc::new(ring);
        self.buf_rings.push(ring.clone());
        Ok(ring)
    }

    /// Puts `fd` in the kernel's table at `slot`. The caller keeps `fd` open beside the slot
    /// (a shadow descriptor for inline calls, see `Driver::install_file` in the parent module).
    pub(crate) fn install_file(&mut self, slot: u32, fd: RawFd) -> io::Result<()> {
        self.ring
            .submitter()
            .register_files_update(slot, &[fd])
            .map(|_| ())
    }

    /// Empties a slot in the kernel's table. Requests in flight hold their own reference to
    /// the old file, so this never pulls a file from under them.
    pub(crate) fn empty_slot(&mut self, slot: u32) -> io::Result<()> {
        self.ring
            .submitter()
            .register_files_update(slot, &[-1])
            .map(|_| ())
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(b) = &self.bufs {
            b.mark_unregistered();
        }
    }
}

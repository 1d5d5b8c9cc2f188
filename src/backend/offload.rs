//! The io_uring backend's blocking pool, for the calls its ring has no opcode for: an opcode
//! newer than the kernel (`FTRUNCATE` before 6.9, `MKDIRAT` before 5.15), one masked by the
//! builder, or a call io_uring has no opcode for at all (`getdents64`). They run on
//! `trueio-fallback`'s pool, as on the epoll backend; the pool's completions come back into
//! the ring's waits through an eventfd that the ring watches (a `POLL_ADD`, built by the
//! ring's driver), so a wait sleeps in one place for both.
//!
//! The pool and its eventfd are made at the first such call: a ring whose operations all
//! have opcodes never starts a thread.

use std::collections::{HashMap, VecDeque};

use trueio_fallback::{Done, JobId, Pool, PoolConfig, RejectReason, Waker};

use super::{Config, RawCompletion};
use crate::errno::Errno;
use crate::op::Syscall;
use crate::stats::StatsCells;
use crate::user_data::UserData;

/// The blocking pool of one ring, and the operations on it.
pub(crate) struct Offload {
    cfg: PoolConfig,
    /// The pool and the eventfd it wakes, once a call needed them.
    pool: Option<(Pool<Syscall>, Waker)>,
    /// Operations queued on or running in the pool.
    jobs: HashMap<UserData, JobId>,
    /// Calls waiting for room in the pool's bounded queue, in submission order.
    waiting: VecDeque<(UserData, Syscall)>,
    /// Reused by each drain of the pool's completions.
    done: Vec<Done<Syscall>>,
    /// A `POLL_ADD` on the eventfd is in the ring (or its SQ).
    armed: bool,
}

impl Offload {
    pub(crate) fn new(b: &Config) -> Offload {
        let mut cfg = PoolConfig {
            name: "trueio-offload".into(),
            ..PoolConfig::default()
        };
        if let Some(n) = b.pool_threads {
            cfg.threads = n;
        }
        if let Some(n) = b.pool_queue {
            cfg.queue_capacity = n;
        }
        Offload {
            cfg,
            pool: None,
            jobs: HashMap::new(),
            waiting: VecDeque::new(),
            done: Vec::new(),
            armed: false,
        }
    }

    /// No operation of ours on the pool.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.jobs.is_empty() && self.waiting.is_empty()
    }

    /// Sends `sys`, the call of the operation `ud`, to the pool; it completes in a later wait.
    /// `Err` when no pool can be made (the operation completes with that error).
    pub(crate) fn submit(
        &mut self,
        ud: UserData,
        sys: Syscall,
        stats: &StatsCells,
    ) -> Result<(), Errno> {
        if self.pool.is_none() {
            let waker = Waker::new().map_err(|e| Errno::of(&e))?;
            let pool = Pool::new(self.cfg.clone(), waker.clone()).map_err(|e| Errno::of(&e))?;
            self.pool = Some((pool, waker));
        }
        if !self.waiting.is_empty() {
            // Keep submission order: behind those already waiting.
            self.waiting.push_back((ud, sys));
            return Ok(());
        }
        self.try_send(ud, sys, stats)
    }

    /// One try at the pool: queued, or waiting for room.
    fn try_send(&mut self, ud: UserData, sys: Syscall, stats: &StatsCells) -> Result<(), Errno> {
        let Some((pool, _)) = &self.pool else {
            return Err(Errno(libc::EBADF));
        };
        match pool.try_submit(ud.to_raw(), sys) {
            Ok(id) => {
                StatsCells::bump(&stats.pool_jobs);
                self.jobs.insert(ud, id);
                Ok(())
            }
            Err(rej) => match rej.reason {
                RejectReason::Full => {
                    self.waiting.push_front((ud, rej.job));
                    Ok(())
                }
                RejectReason::ShutDown => Err(Errno(libc::ECANCELED)),
                RejectReason::Spawn(e) => Err(Errno::of(&e)),
            },
        }
    }

    /// Cancels `ud` if it is ours and has not started: `Some(true)` when it will never run
    /// (its `ECANCELED` completion is in `out`), `Some(false)` when it runs already (its
    /// result comes as usual), `None` when it is not on the pool.
    pub(crate) fn cancel(&mut self, ud: UserData, out: &mut Vec<RawCompletion>) -> Option<bool> {
        if let Some(pos) = self.waiting.iter().position(|(u, _)| *u == ud) {
            self.waiting.remove(pos);
            out.push((ud, -libc::ECANCELED, 0));
            return Some(true);
        }
        let id = *self.jobs.get(&ud)?;
        let (pool, _) = self.pool.as_ref()?;
        if pool.cancel(id).is_some() {
            self.jobs.remove(&ud);
            out.push((ud, -libc::ECANCELED, 0));
            return Some(true);
        }
        Some(false)
    }

    /// The eventfd to watch for the pool's next completion, when a watch is needed and not
    /// in place yet; the caller puts one in place (and calls [`Offload::disarm`] if it
    /// cannot).
    pub(crate) fn arm(&mut self) -> Option<std::os::fd::RawFd> {
        if self.armed || self.is_empty() {
            return None;
        }
        let (_, waker) = self.pool.as_ref()?;
        self.armed = true;
        Some(waker.fd())
    }

    /// The watch from [`Offload::arm`] could not be put in place.
    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }

    /// The eventfd's watch fired: the pool's completions go to `out`, and the calls
    /// waiting for room take the room they left.
    pub(crate) fn on_wake(&mut self, out: &mut Vec<RawCompletion>, stats: &StatsCells) {
        self.armed = false;
        let Some((pool, waker)) = &self.pool else {
            return;
        };
        // Reset first: a completion after the drain then wakes the next POLL_ADD.
        waker.reset();
        pool.drain_completed(&mut self.done);
        for d in self.done.drain(..) {
            let ud = UserData::from_raw(d.token);
            self.jobs.remove(&ud);
            out.push((
                ud,
                d.result.clamp(i32::MIN as isize, i32::MAX as isize) as i32,
                0,
            ));
        }
        while let Some((ud, sys)) = self.waiting.pop_front() {
            let before = self.waiting.len();
            if let Err(e) = self.try_send(ud, sys, stats) {
                out.push((ud, e.raw(), 0));
            }
            if self.waiting.len() > before {
                // Still full: the rest wait for the next completion.
                return;
            }
        }
    }
}

//! Counters of what the engine did, for benchmarks that print syscalls per operation.

use std::cell::Cell;

/// A snapshot of the engine's counters ([`Engine::stats`](crate::Engine::stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Operations handed to the engine.
    pub submitted: u64,
    /// Final completions dispatched.
    pub completed: u64,
    /// `io_uring_enter` calls (epoll backend: `epoll_wait` calls).
    pub enters: u64,
    /// Times the submission queue was full and flushed before a push could continue.
    pub sq_full_flushes: u64,
    /// Times the kernel reported completion-queue overflow (entries kept by NODROP and
    /// flushed by the engine).
    pub cq_overflows: u64,
    /// Cancellations requested (explicit or by dropping a handle).
    pub cancelled: u64,
    /// epoll backend: operations sent to the blocking pool.
    pub pool_jobs: u64,
    /// epoll backend: `O_DIRECT` transfers handed to kernel AIO (`io_submit`) instead (one
    /// that comes back "would block" goes to the pool and is counted there too).
    pub aio_jobs: u64,
    /// Operations completed at their submission by a call on the engine's thread: epoll's
    /// non-blocking attempts, io_uring's lone cached reads, both backends' local `statx` and
    /// inline writes.
    pub inline_completions: u64,
    /// System calls made per operation by the engine: `io_uring_enter`s, and on the epoll
    /// backend `epoll_wait`s, inline attempts, readiness checks, `fstat` and `epoll_ctl`
    /// (setup and fixed-file registration are not counted). Divide by `completed` for
    /// syscalls per operation.
    pub syscalls: u64,
    /// io_uring without `IORING_FEAT_EXT_ARG` (before 5.11): internal `TIMEOUT` requests
    /// submitted to bound timed waits (at most one pending at a time in steady state).
    pub wait_timeouts: u64,
}

impl Stats {
    /// The counters accumulated since `earlier`.
    pub fn since(&self, earlier: &Stats) -> Stats {
        Stats {
            submitted: self.submitted - earlier.submitted,
            completed: self.completed - earlier.completed,
            enters: self.enters - earlier.enters,
            sq_full_flushes: self.sq_full_flushes - earlier.sq_full_flushes,
            cq_overflows: self.cq_overflows - earlier.cq_overflows,
            cancelled: self.cancelled - earlier.cancelled,
            pool_jobs: self.pool_jobs - earlier.pool_jobs,
            aio_jobs: self.aio_jobs - earlier.aio_jobs,
            inline_completions: self.inline_completions - earlier.inline_completions,
            syscalls: self.syscalls - earlier.syscalls,
            wait_timeouts: self.wait_timeouts - earlier.wait_timeouts,
        }
    }

    /// System calls per completed operation.
    pub fn syscalls_per_op(&self) -> f64 {
        if self.completed == 0 {
            0.0
        } else {
            self.syscalls as f64 / self.completed as f64
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct StatsCells {
    pub(crate) submitted: Cell<u64>,
    pub(crate) completed: Cell<u64>,
    pub(crate) enters: Cell<u64>,
    pub(crate) sq_full_flushes: Cell<u64>,
    pub(crate) cq_overflows: Cell<u64>,
    pub(crate) cancelled: Cell<u64>,
    pub(crate) pool_jobs: Cell<u64>,
    pub(crate) aio_jobs: Cell<u64>,
    pub(crate) inline_completions: Cell<u64>,
    pub(crate) syscalls: Cell<u64>,
    pub(crate) wait_timeouts: Cell<u64>,
}

impl StatsCells {
    pub(crate) fn bump(c: &Cell<u64>) {
        c.set(c.get() + 1);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            submitted: self.submitted.get(),
            completed: self.completed.get(),
            enters: self.enters.get(),
            sq_full_flushes: self.sq_full_flushes.get(),
            cq_overflows: self.cq_overflows.get(),
            cancelled: self.cancelled.get(),
            pool_jobs: self.pool_jobs.get(),
            aio_jobs: self.aio_jobs.get(),
            inline_completions: self.inline_completions.get(),
            syscalls: self.syscalls.get(),
            wait_timeouts: self.wait_timeouts.get(),
        }
    }
}

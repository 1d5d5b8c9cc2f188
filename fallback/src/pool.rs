//! A bounded pool of threads for syscalls that epoll cannot make
//! non-blocking.
//!
//! Regular-file `read`/`write`, `openat2`, `statx`, `fsync`, `fallocate`,
//! `close` and friends always block the calling thread. [`Pool`] runs them on
//! worker threads and hands the results back to the event loop through a
//! completion list plus a [`Waker`].
//!
//! * **Bounded.** At most [`PoolConfig::threads`] workers and
//!   [`PoolConfig::queue_capacity`] queued jobs. A full queue rejects the job
//!   and gives it back ([`Rejected`]), so memory never grows without bound
//!   and the caller decides whether to wait or fail.
//! * **Elastic.** Workers are spawned lazily when a job is queued and no idle
//!   worker is available, and exit after [`PoolConfig::idle_timeout`] without
//!   work.
//! * **No allocation per job.** The pool is generic over the job type `J`;
//!   jobs are moved into a pre-sized queue and back out in [`Done`].
//! * **Completions.** After a job ran, its [`Done`] is pushed onto a shared
//!   list and the waker is woken if the list was empty. The event loop calls
//!   [`Waker::reset`] and *then* [`Pool::drain_completed`] (in that order, so
//!   that no wake-up is lost).

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::Waker;

/// How long `Drop for Pool` waits for running jobs before detaching their
/// threads.
const DROP_GRACE: Duration = Duration::from_secs(1);

/// A unit of blocking work.
///
/// `run` is called once, on a pool thread. By convention it returns the
/// syscall result: non-negative on success, `-errno` on failure. The job is
/// handed back in [`Done`] afterwards, so it can own the buffers the syscall
/// used.
///
/// A panic inside `run` is caught and reported as `-EIO`.
pub trait Job: Send + 'static {
    /// Performs the work and returns its result (`-errno` on failure).
    fn run(&mut self) -> isize;
}

/// Configuration of a [`Pool`].
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// Maximum number of worker threads (at least 1).
    pub threads: usize,
    /// Maximum number of jobs waiting for a worker (at least 1). Jobs being
    /// run do not count.
    pub queue_capacity: usize,
    /// A worker exits after this long without work (`Duration::MAX`: never).
    pub idle_timeout: Duration,
    /// Name given to worker threads (no NUL bytes; Linux shows at most 15
    /// bytes).
    pub name: String,
}

impl Default for PoolConfig {
    /// * `threads`: 4 × the available parallelism, clamped to `4..=64`.
    ///   Blocking-pool threads spend their time asleep in the kernel, so
    ///   more threads than cores keeps the device queues busy, while the cap
    ///   keeps the memory and scheduler cost bounded.
    /// * `queue_capacity`: 1024.
    /// * `idle_timeout`: 10 s.
    /// * `name`: `"trueio-blocking"`.
    fn default() -> PoolConfig {
        let cores = thread::available_parallelism().map_or(1, |n| n.get());
        PoolConfig {
            threads: cores.saturating_mul(4).clamp(4, 64),
            queue_capacity: 1024,
            idle_timeout: Duration::from_secs(10),
            name: String::from("trueio-blocking"),
        }
    }
}

/// Identifies a submitted job; ids increase monotonically per pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(u64);

impl JobId {
    /// The numeric value of the id.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

/// A finished job, as returned by [`Pool::drain_completed`].
#[derive(Debug)]
pub struct Done<J> {
    /// The token passed to [`Pool::try_submit`].
    pub token: u64,
    /// The job, handed back after it ran.
    pub job: J,
    /// The value returned by [`Job::run`], or `-EIO` if it panicked.
    pub result: isize,
}

/// Why [`Pool::try_submit`] refused a job.
#[derive(Debug)]
pub enum RejectReason {
    /// The queue holds [`PoolConfig::queue_capacity`] jobs. Retry after some
    /// completions have been drained.
    Full,
    /// [`Pool::shutdown`] was called (or the pool is being dropped).
    ShutDown,
    /// No worker thread is alive and spawning one failed with this error.
    Spawn(io::Error),
}

/// A job refused by [`Pool::try_submit`], handed back to the caller.
pub struct Rejected<J> {
    /// The job, which has not run.
    pub job: J,
    /// Why it was refused.
    pub reason: RejectReason,
}

impl<J> fmt::Debug for Rejected<J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejected")
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

impl<J> fmt::Display for Rejected<J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reason {
            RejectReason::Full => f.write_str("blocking pool queue is full"),
            RejectReason::ShutDown => f.write_str("blocking pool is shut down"),
            RejectReason::Spawn(e) => e.fmt(f),
        }
    }
}

impl<J> std::error::Error for Rejected<J> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.reason {
            RejectReason::Spawn(e) => Some(e),
            _ => None,
        }
    }
}

impl<J> From<Rejected<J>> for io::Error {
    /// Drops the job: `Full` becomes `WouldBlock`, `ShutDown` becomes
    /// `BrokenPipe`, `Spawn(e)` becomes `e`.
    fn from(r: Rejected<J>) -> io::Error {
        match r.reason {
            RejectReason::Full => {
                io::Error::new(io::ErrorKind::WouldBlock, "blocking pool queue is full")
            }
            RejectReason::ShutDown => {
                io::Error::new(io::ErrorKind::BrokenPipe, "blocking pool is shut down")
            }
            RejectReason::Spawn(e) => e,
        }
    }
}

struct Queued<J> {
    id: JobId,
    token: u64,
    job: J,
}

struct State<J> {
    /// Sorted by id (pushed in id order, removed from anywhere).
    queue: VecDeque<Queued<J>>,
    next_id: u64,
    /// Live worker threads, including ones still starting.
    threads: usize,
    /// Workers waiting for work, plus spawned workers that have not yet
    /// looked at the queue.
    idle: usize,
    /// Jobs inside `Job::run`.
    running: usize,
    shutdown: bool,
}

struct Shared<J> {
    state: Mutex<State<J>>,
    /// Signalled when work is queued or on shutdown.
    work: Condvar,
    /// Signalled when a worker exits.
    exited: Condvar,
    /// Lock order: `state` before `completed`.
    completed: Mutex<Vec<Done<J>>>,
    waker: Waker,
    max_threads: usize,
    queue_capacity: usize,
    idle_timeout: Duration,
    name: String,
}

/// Locks a mutex, ignoring poisoning: the pool never panics while holding a
/// lock (job panics are caught outside of any lock), and all state is
/// consistent between statements.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<J: Job> Shared<J> {
    fn lock(&self) -> MutexGuard<'_, State<J>> {
        lock(&self.state)
    }

    /// Pushes a completion; returns whether the list was empty, in which
    /// case the caller must call [`Shared::wake`].
    fn push_completed(&self, done: Done<J>) -> bool {
        let mut completed = lock(&self.completed);
        let was_empty = completed.is_empty();
        completed.push(done);
        was_empty
    }

    fn wake(&self) {
        // Nothing useful can be done about a failure here; eventfd writes do
        // not fail in practice.
        let _ = self.waker.wake();
    }
}

/// A bounded, elastic pool of blocking worker threads. See the
/// [module docs](self).
///
/// # Dropping
///
/// Dropping the pool stops accepting jobs, drops the queued ones (call
/// [`Pool::shutdown`] first to get them back) and waits up to one second for
/// running jobs to finish. A job still running after that (e.g. blocked
/// forever reading a FIFO) is leaked together with its thread: the thread owns
/// the job, so its memory stays valid, and if the job ever returns the thread
/// exits. Completions not yet drained are dropped.
///
/// ```
/// use std::time::Duration;
/// use trueio_fallback::{Done, Events, Interest, Job, Mode, Poller, Pool, PoolConfig, Waker};
///
/// struct Add(isize, isize);
/// impl Job for Add {
///     fn run(&mut self) -> isize {
///         self.0 + self.1
///     }
/// }
///
/// # fn main() -> std::io::Result<()> {
/// const WAKER: u64 = 0;
/// let poller = Poller::new()?;
/// let waker = Waker::new()?;
/// poller.add(waker.fd(), WAKER, Interest::READABLE, Mode::Edge)?;
/// let pool = Pool::new(PoolConfig::default(), waker.clone())?;
///
/// pool.try_submit(42, Add(2, 3))?;
///
/// let mut events = Events::with_capacity(8);
/// let mut done: Vec<Done<Add>> = Vec::new();
/// while done.is_empty() {
///     poller.wait(&mut events, Some(Duration::from_secs(5)))?;
///     if events.iter().any(|e| e.token() == WAKER) {
///         waker.reset(); // before draining
///         pool.drain_completed(&mut done);
///     }
/// }
/// assert_eq!((done[0].token, done[0].result), (42, 5));
/// # Ok(())
/// # }
/// ```
pub struct Pool<J: Job> {
    shared: Arc<Shared<J>>,
}

impl<J: Job> Pool<J> {
    /// Creates a pool. No thread is started until the first job arrives.
    ///
    /// Fails with `InvalidInput` if `threads` or `queue_capacity` is 0 or
    /// `name` contains a NUL byte.
    pub fn new(config: PoolConfig, waker: Waker) -> io::Result<Pool<J>> {
        let invalid = |msg: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
        if config.threads == 0 {
            return invalid("blocking pool: `threads` must be at least 1");
        }
        if config.queue_capacity == 0 {
            return invalid("blocking pool: `queue_capacity` must be at least 1");
        }
        if config.name.contains('\0') {
            return invalid("blocking pool: thread name contains a NUL byte");
        }
        let state = State {
            queue: VecDeque::with_capacity(config.queue_capacity.min(4096)),
            next_id: 0,
            threads: 0,
            idle: 0,
            running: 0,
            shutdown: false,
        };
        Ok(Pool {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                work: Condvar::new(),
                exited: Condvar::new(),
                completed: Mutex::new(Vec::new()),
                waker,
                max_threads: config.threads,
                queue_capacity: config.queue_capacity,
                idle_timeout: config.idle_timeout,
                name: config.name,
            }),
        })
    }

    /// Queues `job`; its [`Done`] will carry `token`.
    ///
    /// Never blocks. On refusal the job is handed back in [`Rejected`]:
    /// [`RejectReason::Full`] when the queue is at capacity,
    /// [`RejectReason::ShutDown`] after [`Pool::shutdown`], and
    /// [`RejectReason::Spawn`] when no worker is alive and a new one could not
    /// be spawned.
    ///
    /// If spawning fails while other workers are alive, the job stays queued
    /// for them. In the rare case that it fails with none alive, jobs that
    /// other threads queued concurrently (counting on that worker) are
    /// completed with the spawn error's `-errno` rather than left stranded.
    pub fn try_submit(&self, token: u64, job: J) -> Result<JobId, Rejected<J>> {
        let shared = &*self.shared;
        let (id, spawn) = {
            let mut st = shared.lock();
            if st.shutdown {
                return Err(Rejected {
                    job,
                    reason: RejectReason::ShutDown,
                });
            }
            if st.queue.len() >= shared.queue_capacity {
                return Err(Rejected {
                    job,
                    reason: RejectReason::Full,
                });
            }
            let id = JobId(st.next_id);
            st.next_id += 1;
            st.queue.push_back(Queued { id, token, job });
            // Every queued job needs its own idle worker; start one more if
            // there are not enough. The new worker counts as idle right away
            // so that concurrent submitters do not over-spawn.
            let spawn = st.queue.len() > st.idle && st.threads < shared.max_threads;
            if spawn {
                st.threads += 1;
                st.idle += 1;
            }
            (id, spawn)
        };
        if !spawn {
            shared.work.notify_one();
            return Ok(id);
        }
        let worker = Arc::clone(&self.shared);
        let spawned = thread::Builder::new()
            .name(shared.name.clone())
            .spawn(move || worker_loop(&worker));
        match spawned {
            // Dropping the handle detaches the thread; it reports its exit
            // through `threads` and `exited`.
            Ok(_) => Ok(id),
            Err(err) => self.spawn_failed(id, err),
        }
    }

    #[cold]
    fn spawn_failed(&self, id: JobId, err: io::Error) -> Result<JobId, Rejected<J>> {
        let shared = &*self.shared;
        let (job, orphans) = {
            let mut st = shared.lock();
            st.threads -= 1;
            st.idle -= 1;
            if st.threads > 0 {
                // Live workers will get to the job eventually.
                drop(st);
                shared.work.notify_one();
                return Ok(id);
            }
            // Nobody is left to run anything: hand our job back, and fail the
            // jobs other submitters queued in the meantime (they relied on
            // the worker we reserved), so that their completions are not lost.
            let job = remove_queued(&mut st.queue, id);
            let orphans: Vec<Queued<J>> = st.queue.drain(..).collect();
            (job, orphans)
        };
        let errno = err.raw_os_error().unwrap_or(libc::EAGAIN) as isize;
        let mut wake = false;
        for q in orphans {
            wake |= shared.push_completed(Done {
                token: q.token,
                job: q.job,
                result: -errno,
            });
        }
        if wake {
            shared.wake();
        }
        match job {
            Some(job) => Err(Rejected {
                job,
                reason: RejectReason::Spawn(io::Error::new(
                    err.kind(),
                    format!(
                        "failed to spawn blocking pool thread {:?}: {err}",
                        shared.name
                    ),
                )),
            }),
            // A concurrent `cancel` or `shutdown` already handed the job to
            // its caller.
            None => Ok(id),
        }
    }

    /// Removes a job that is still queued and returns it; it will never run
    /// and no [`Done`] will be produced for it.
    ///
    /// Returns `None` if the job is running or has finished (its `Done` is
    /// or will be delivered as usual), or was never submitted.
    pub fn cancel(&self, id: JobId) -> Option<J> {
        let mut st = self.shared.lock();
        remove_queued(&mut st.queue, id)
    }

    /// Moves all completions into `out` (appending). Never blocks on workers
    /// beyond a short lock.
    ///
    /// When `out` is empty its buffer is swapped with the pool's, so a loop
    /// that drains into the same, emptied `Vec` does not allocate.
    ///
    /// Call [`Waker::reset`] before this, not after: a completion that
    /// arrives between the two then still wakes the poller again.
    pub fn drain_completed(&self, out: &mut Vec<Done<J>>) {
        let mut completed = lock(&self.shared.completed);
        if out.is_empty() {
            std::mem::swap(&mut *completed, out);
        } else {
            out.append(&mut completed);
        }
    }

    /// Stops accepting jobs and returns the queued ones, which never ran, as
    /// `(token, job)` pairs. Jobs already running finish normally and their
    /// completions are still delivered. Does not wait for the workers.
    ///
    /// Later calls return an empty `Vec`.
    pub fn shutdown(&self) -> Vec<(u64, J)> {
        let jobs: Vec<(u64, J)> = {
            let mut st = self.shared.lock();
            st.shutdown = true;
            st.queue.drain(..).map(|q| (q.token, q.job)).collect()
        };
        self.shared.work.notify_all();
        jobs
    }

    /// Jobs waiting for a worker.
    pub fn queued(&self) -> usize {
        self.shared.lock().queue.len()
    }

    /// Jobs currently running.
    ///
    /// A job stops counting as running in the same step in which its
    /// [`Done`] becomes visible to [`Pool::drain_completed`].
    pub fn running(&self) -> usize {
        self.shared.lock().running
    }

    /// Live worker threads.
    pub fn threads(&self) -> usize {
        self.shared.lock().threads
    }
}

/// Removes the job `id` from `queue` (sorted by id).
fn remove_queued<J>(queue: &mut VecDeque<Queued<J>>, id: JobId) -> Option<J> {
    let pos = queue.binary_search_by_key(&id, |q| q.id).ok()?;
    queue.remove(pos).map(|q| q.job)
}

impl<J: Job> Drop for Pool<J> {
    /// Stops accepting jobs, drops the queued ones (use [`Pool::shutdown`]
    /// first to get them back) and waits up to one second for running jobs.
    ///
    /// A job still running after that (e.g. blocked forever reading a FIFO)
    /// is leaked together with its thread: the thread owns the job, so its
    /// memory stays valid, and if the job ever returns the thread exits.
    fn drop(&mut self) {
        // Drop the jobs outside the lock: their destructors may be slow.
        drop(self.shutdown());
        let deadline = Instant::now() + DROP_GRACE;
        let mut st = self.shared.lock();
        while st.threads > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st = self
                .shared
                .exited
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl<J: Job> fmt::Debug for Pool<J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.shared.lock();
        f.debug_struct("Pool")
            .field("name", &self.shared.name)
            .field("threads", &st.threads)
            .field("max_threads", &self.shared.max_threads)
            .field("running", &st.running)
            .field("queued", &st.queue.len())
            .field("queue_capacity", &self.shared.queue_capacity)
            .field("shutdown", &st.shutdown)
            .finish()
    }
}

fn worker_loop<J: Job>(shared: &Shared<J>) {
    let mut st = shared.lock();
    // The spawner counted this thread as idle.
    st.idle -= 1;
    let mut idle_since = Instant::now();
    loop {
        if let Some(Queued { token, mut job, .. }) = st.queue.pop_front() {
            st.running += 1;
            drop(st);

            let result = match catch_unwind(AssertUnwindSafe(|| job.run())) {
                Ok(result) => result,
                Err(payload) => {
                    // Dropping the payload runs arbitrary code that may panic
                    // too; this thread must survive to keep the counts right.
                    let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
                    -(libc::EIO as isize)
                }
            };
            // Publish the completion and the `running` decrement under the
            // state lock, so that observers never see a job as both running
            // and completed, or as neither.
            st = shared.lock();
            let was_empty = shared.push_completed(Done { token, job, result });
            st.running -= 1;
            if was_empty {
                drop(st);
                shared.wake();
                st = shared.lock();
            }
            idle_since = Instant::now();
            continue;
        }
        if st.shutdown {
            break;
        }
        st.idle += 1;
        // A deadline beyond what `Instant` can represent means "never".
        match idle_since.checked_add(shared.idle_timeout) {
            Some(deadline) => {
                let now = Instant::now();
                if now >= deadline {
                    st.idle -= 1;
                    break;
                }
                st = shared
                    .work
                    .wait_timeout(st, deadline - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            None => {
                st = shared.work.wait(st).unwrap_or_else(PoisonError::into_inner);
            }
        }
        st.idle -= 1;
    }
    st.threads -= 1;
    drop(st);
    shared.exited.notify_all();
}

//! Integration tests for the blocking `Pool`, driven through a real `Poller`
//! and `Waker`.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use trueio_fallback::{
    Done, Events, Interest, Job, JobId, Mode, Poller, Pool, PoolConfig, RejectReason, Waker,
};

const WAKER: u64 = u64::MAX;
const BOUND: Duration = Duration::from_secs(10);

struct TestJob {
    tag: u64,
    f: Box<dyn FnMut() -> isize + Send>,
}

impl TestJob {
    fn new(tag: u64, f: impl FnMut() -> isize + Send + 'static) -> TestJob {
        TestJob {
            tag,
            f: Box::new(f),
        }
    }

    fn value(tag: u64, v: isize) -> TestJob {
        TestJob::new(tag, move || v)
    }
}

impl Job for TestJob {
    fn run(&mut self) -> isize {
        (self.f)()
    }
}

/// A latch that jobs block on (with a bound, so a failing test never hangs).
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn open(&self) {
        *self.0 .0.lock().unwrap() = true;
        self.0 .1.notify_all();
    }

    fn wait(&self) -> isize {
        let guard = self.0 .0.lock().unwrap();
        let (guard, res) = self
            .0
             .1
            .wait_timeout_while(guard, BOUND, |open| !*open)
            .unwrap();
        assert!(*guard && !res.timed_out(), "gate never opened");
        0
    }

    fn job(&self, tag: u64) -> TestJob {
        let gate = self.clone();
        TestJob::new(tag, move || gate.wait())
    }
}

struct Harness {
    poller: Poller,
    waker: Waker,
    pool: Pool<TestJob>,
}

impl Harness {
    fn new(threads: usize, queue_capacity: usize, idle_timeout: Duration) -> Harness {
        let poller = Poller::new().unwrap();
        let waker = Waker::new().unwrap();
        poller
            .add(waker.fd(), WAKER, Interest::READABLE, Mode::Edge)
            .unwrap();
        let config = PoolConfig {
            threads,
            queue_capacity,
            idle_timeout,
            name: "pool-test".into(),
        };
        let pool = Pool::new(config, waker.clone()).unwrap();
        Harness {
            poller,
            waker,
            pool,
        }
    }

    fn small(threads: usize, queue_capacity: usize) -> Harness {
        Harness::new(threads, queue_capacity, Duration::from_secs(10))
    }

    fn submit(&self, token: u64, job: TestJob) -> JobId {
        match self.pool.try_submit(token, job) {
            Ok(id) => id,
            Err(r) => panic!("rejected: {r}"),
        }
    }

    /// Runs the event loop until `n` completions arrived.
    fn collect(&self, n: usize) -> Vec<Done<TestJob>> {
        let deadline = Instant::now() + BOUND;
        let mut events = Events::with_capacity(4);
        let mut out = Vec::new();
        while out.len() < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} completions",
                out.len()
            );
            self.poller
                .wait(&mut events, Some(Duration::from_millis(100)))
                .unwrap();
            if events.iter().any(|e| e.token() == WAKER) {
                self.waker.reset();
                self.pool.drain_completed(&mut out);
            }
        }
        out
    }

    /// Asserts that nothing completes for a little while.
    fn assert_quiet(&self) {
        let mut events = Events::with_capacity(4);
        self.poller
            .wait(&mut events, Some(Duration::from_millis(50)))
            .unwrap();
        let mut out = Vec::new();
        self.pool.drain_completed(&mut out);
        assert!(out.is_empty(), "unexpected completions");
    }
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + BOUND;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn tokens(done: &[Done<TestJob>]) -> Vec<u64> {
    let mut t: Vec<u64> = done.iter().map(|d| d.token).collect();
    t.sort_unstable();
    t
}

#[test]
fn results_are_delivered_with_tokens() {
    let h = Harness::small(4, 1024);
    for i in 0..200u64 {
        h.submit(i, TestJob::value(i, 2 * i as isize));
    }
    let done = h.collect(200);
    assert_eq!(tokens(&done), (0..200).collect::<Vec<_>>());
    for d in &done {
        assert_eq!(d.result, 2 * d.token as isize);
        assert_eq!(d.job.tag, d.token);
    }
    assert!(h.pool.threads() <= 4);
    assert_eq!(h.pool.queued(), 0);
}

#[test]
fn job_ids_increase() {
    let h = Harness::small(1, 16);
    let ids: Vec<JobId> = (0..5).map(|i| h.submit(i, TestJob::value(i, 0))).collect();
    assert!(ids
        .windows(2)
        .all(|w| w[0] < w[1] && w[0].as_u64() < w[1].as_u64()));
    h.collect(5);
}

#[test]
fn full_queue_rejects_and_returns_the_job() {
    let h = Harness::small(1, 2);
    let gate = Gate::default();
    h.submit(0, gate.job(0));
    wait_until("job 0 running", || h.pool.running() == 1);
    h.submit(1, TestJob::value(1, 1));
    h.submit(2, TestJob::value(2, 2));
    assert_eq!(h.pool.queued(), 2);

    let rejected = h.pool.try_submit(3, TestJob::value(3, 3)).unwrap_err();
    assert!(
        matches!(rejected.reason, RejectReason::Full),
        "{rejected:?}"
    );
    assert_eq!(rejected.job.tag, 3);
    let err: io::Error = rejected.into();
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock);

    gate.open();
    let done = h.collect(3);
    assert_eq!(tokens(&done), [0, 1, 2]);
    // Space again.
    h.submit(4, TestJob::value(4, 4));
    assert_eq!(h.collect(1)[0].result, 4);
}

#[test]
fn cancelled_queued_job_is_returned_and_never_runs() {
    let h = Harness::small(1, 8);
    let gate = Gate::default();
    let ran = Arc::new(AtomicBool::new(false));
    h.submit(0, gate.job(0));
    wait_until("job 0 running", || h.pool.running() == 1);

    let flag = Arc::clone(&ran);
    let id = h.submit(
        1,
        TestJob::new(1, move || {
            flag.store(true, Ordering::SeqCst);
            0
        }),
    );
    h.submit(2, TestJob::value(2, 22));
    assert_eq!(h.pool.queued(), 2);

    let job = h.pool.cancel(id).expect("still queued");
    assert_eq!(job.tag, 1);
    assert!(h.pool.cancel(id).is_none());
    assert_eq!(h.pool.queued(), 1);

    gate.open();
    let done = h.collect(2);
    assert_eq!(tokens(&done), [0, 2]);
    h.assert_quiet();
    assert!(!ran.load(Ordering::SeqCst));
}

#[test]
fn running_job_cannot_be_cancelled_and_still_completes() {
    let h = Harness::small(2, 8);
    let gate = Gate::default();
    let id = h.submit(7, gate.job(7));
    wait_until("job running", || h.pool.running() == 1);
    assert!(h.pool.cancel(id).is_none());
    gate.open();
    let done = h.collect(1);
    assert_eq!((done[0].token, done[0].result), (7, 0));
    // Finished jobs cannot be cancelled either.
    assert!(h.pool.cancel(id).is_none());
}

#[test]
fn panicking_job_yields_eio() {
    let h = Harness::small(1, 8);
    h.submit(1, TestJob::new(1, || panic!("job panics on purpose")));
    h.submit(2, TestJob::value(2, 5));
    let mut done = h.collect(2);
    done.sort_by_key(|d| d.token);
    assert_eq!(done[0].result, -(libc::EIO as isize));
    assert_eq!(done[0].job.tag, 1);
    assert_eq!(done[1].result, 5);
    assert_eq!(h.pool.running(), 0);
    assert_eq!(h.pool.threads(), 1);
}

#[test]
fn drop_with_a_job_blocked_forever_returns() {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for `pipe2` to fill.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both fds were just created by `pipe2` and are owned by nobody
    // else.
    let (mut reader, writer) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };

    let h = Harness::small(1, 8);
    // A blocking read on an empty pipe whose write end we keep open.
    h.submit(
        1,
        TestJob::new(1, move || {
            let mut buf = [0u8; 1];
            match reader.read(&mut buf) {
                Ok(n) => n as isize,
                Err(e) => -(e.raw_os_error().unwrap_or(libc::EIO) as isize),
            }
        }),
    );
    h.submit(2, TestJob::value(2, 0)); // queued behind it, dropped unrun
    wait_until("reader running", || h.pool.running() == 1);

    let start = Instant::now();
    drop(h);
    let elapsed = start.elapsed();
    assert!(elapsed < Duration::from_secs(2), "drop took {elapsed:?}");
    // Let the leaked thread finish: the read returns EOF.
    drop(writer);
}

#[test]
fn threads_scale_up_under_load_and_idle_out() {
    let h = Harness::new(4, 64, Duration::from_millis(150));
    assert_eq!(h.pool.threads(), 0, "threads are spawned lazily");

    let gate = Gate::default();
    for i in 0..4 {
        h.submit(i, gate.job(i));
    }
    wait_until("4 running", || h.pool.running() == 4);
    assert_eq!(h.pool.threads(), 4);
    for i in 4..10 {
        h.submit(i, gate.job(i));
    }
    assert_eq!(h.pool.queued(), 6);
    assert_eq!(h.pool.threads(), 4, "never more than `threads`");

    gate.open();
    assert_eq!(tokens(&h.collect(10)), (0..10).collect::<Vec<_>>());
    wait_until("idle threads to exit", || h.pool.threads() == 0);

    // After idling out the pool spawns again on demand.
    h.submit(99, TestJob::value(99, 1));
    assert_eq!(h.collect(1)[0].token, 99);
}

#[test]
fn light_sequential_load_reuses_threads() {
    let h = Harness::small(8, 64);
    for i in 0..20 {
        h.submit(i, TestJob::value(i, 0));
        h.collect(1);
    }
    assert!(
        h.pool.threads() <= 2,
        "spawned {} threads",
        h.pool.threads()
    );
}

#[test]
fn wakes_only_when_the_list_was_empty() {
    let h = Harness::small(1, 64);
    let gate = Gate::default();
    h.submit(0, gate.job(0));
    for i in 1..10 {
        h.submit(i, TestJob::value(i, 0));
    }
    gate.open();
    wait_until("all done", || h.pool.running() + h.pool.queued() == 0);
    // Nobody drained, so only the first completion wrote to the eventfd.
    let mut count: u64 = 0;
    // SAFETY: reads 8 bytes into a live `u64` from the waker's open eventfd.
    let n = unsafe { libc::read(h.waker.fd(), (&mut count as *mut u64).cast(), 8) };
    assert_eq!((n, count), (8, 1));

    let mut out = Vec::new();
    h.pool.drain_completed(&mut out);
    assert_eq!(out.len(), 10);
    // Appends when `out` is not empty.
    h.submit(10, TestJob::value(10, 0));
    wait_until("job 10", || h.pool.running() + h.pool.queued() == 0);
    wait_until("completion", || {
        h.pool.drain_completed(&mut out);
        out.len() == 11
    });
}

#[test]
fn shutdown_returns_queued_jobs_and_rejects_new_ones() {
    let h = Harness::small(1, 8);
    let gate = Gate::default();
    h.submit(0, gate.job(0));
    wait_until("job 0 running", || h.pool.running() == 1);
    h.submit(1, TestJob::value(1, 0));
    h.submit(2, TestJob::value(2, 0));

    let back = h.pool.shutdown();
    let back: Vec<(u64, u64)> = back.into_iter().map(|(t, j)| (t, j.tag)).collect();
    assert_eq!(back, [(1, 1), (2, 2)]);
    assert!(h.pool.shutdown().is_empty());

    let rejected = h.pool.try_submit(3, TestJob::value(3, 0)).unwrap_err();
    assert!(matches!(rejected.reason, RejectReason::ShutDown));
    assert_eq!(rejected.job.tag, 3);
    assert!(rejected.to_string().contains("shut down"));

    // The running job still completes.
    gate.open();
    assert_eq!(h.collect(1)[0].token, 0);
    h.assert_quiet();
    wait_until("workers exit after shutdown", || h.pool.threads() == 0);
}

#[test]
fn invalid_config_is_rejected() {
    let waker = Waker::new().unwrap();
    let base = PoolConfig::default();
    let bad = [
        PoolConfig {
            threads: 0,
            ..base.clone()
        },
        PoolConfig {
            queue_capacity: 0,
            ..base.clone()
        },
        PoolConfig {
            name: "a\0b".into(),
            ..base.clone()
        },
    ];
    for config in bad {
        let err = Pool::<TestJob>::new(config, waker.clone()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}

#[test]
fn default_config() {
    let c = PoolConfig::default();
    assert!((4..=64).contains(&c.threads));
    assert_eq!(c.queue_capacity, 1024);
    assert_eq!(c.idle_timeout, Duration::from_secs(10));
    assert_eq!(c.name, "trueio-blocking");
}

#[test]
fn pool_is_send_sync_and_debug() {
    fn check<T: Send + Sync>() {}
    check::<Pool<TestJob>>();
    let h = Harness::small(1, 1);
    assert!(format!("{:?}", h.pool).contains("pool-test"));
}

#[test]
fn unbounded_idle_timeout_is_accepted() {
    let h = Harness::new(2, 8, Duration::MAX);
    h.submit(1, TestJob::value(1, 3));
    assert_eq!(h.collect(1)[0].result, 3);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(h.pool.threads(), 1);
    let start = Instant::now();
    drop(h); // the idle worker wakes on shutdown and exits
    assert!(start.elapsed() < Duration::from_millis(900));
}

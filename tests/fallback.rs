//! Blocking work does not block the event loop, and the blocking pool is bounded.
//!
//! Opening an existing FIFO for reading with `O_CREAT` blocks until a writer appears on both
//! backends (io_uring sends `O_CREAT` opens to its io-wq workers, the epoll backend to its
//! pool): a real operation that stays blocked for as long as the test wants. Without
//! `O_CREAT`, io_uring opens a FIFO at once, as if `O_NONBLOCK` (see the parity test), and
//! the epoll backend does the same.

mod util;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use trueio::{op, BackendChoice, Engine};

fn fifo(dir: &util::TempDir) -> std::path::PathBuf {
    let path = dir.path("fifo");
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    path
}

/// An open that blocks until a writer appears (see the module docs).
fn blocking_open(path: &std::path::Path) -> op::OpenAt2 {
    op::OpenAt2::new(
        None,
        path,
        op::OpenHow::new(libc::O_RDONLY | libc::O_CREAT).mode(0o600),
    )
}

/// A writer that satisfies every blocked reader open at once (O_RDWR on a FIFO never blocks).
fn release(path: &std::path::Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open the FIFO read-write")
}

both_backends! {
    fn opening_a_fifo_without_a_peer_behaves_as_io_uring(b: Builder) {
        let engine = b.build().unwrap();
        let dir = util::TempDir::new("fifo-parity");
        let path = fifo(&dir);
        let fd = util::run(&engine, op::OpenAt2::new(None, &path, op::OpenHow::new(libc::O_RDONLY)))
            .expect("a FIFO opens for reading at once");
        // SAFETY: F_GETFL on a descriptor we own.
        let fl = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&fd), libc::F_GETFL) };
        assert_eq!(fl & libc::O_NONBLOCK, 0, "O_NONBLOCK was not asked and must not stay set");
        drop(fd);
        util::assert_errno(
            &util::run(&engine, op::OpenAt2::new(None, &path, op::OpenHow::new(libc::O_WRONLY))),
            libc::ENXIO,
            "a FIFO without a reader does not open for writing",
        );
    }

    fn a_timer_fires_on_time_while_a_blocking_open_runs(b: Builder) {
        let engine = b.build().unwrap();
        let dir = util::TempDir::new("fifo-timer");
        let path = fifo(&dir);
        // If the blocking open ran on the event loop's thread, nothing below would return.
        let _watchdog = util::Watchdog::arm("blocking open on the event loop", Duration::from_secs(20));
        let mut open = engine.submit(blocking_open(&path));

        let start = Instant::now();
        let timer = engine.submit(op::Timeout::after(Duration::from_millis(50)));
        util::wait(&engine, timer).expect("the timer fires");
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(50), "fired early: {took:?}");
        assert!(
            took < Duration::from_millis(1000),
            "the timer was held up by the blocking open: {took:?}"
        );
        if let Some(r) = open.try_take() {
            panic!("the open cannot finish without a writer, got {r:?}");
        }

        let _writer = release(&path);
        let fd = util::wait_within(&engine, &mut open, util::LIMIT).expect("the open completes");
        drop(fd);
        assert_eq!(engine.in_flight(), 0);
    }
}

#[test]
fn the_pool_queue_is_bounded_and_the_rest_waits_in_the_engine() {
    let Some(b) = util::builder(BackendChoice::Epoll) else {
        return;
    };
    let engine: Engine = b.pool_threads(1).pool_queue(2).build().unwrap();
    let dir = util::TempDir::new("fifo-pool");
    let path = fifo(&dir);

    let _watchdog = util::Watchdog::arm("blocking opens", Duration::from_secs(20));
    let mut opens: Vec<_> = (0..10)
        .map(|_| engine.submit(blocking_open(&path)))
        .collect();
    util::drive_for(&engine, Duration::from_millis(100));
    assert!(
        opens.iter().all(|t| !t.is_done()),
        "nothing can open without a writer"
    );
    // The pool took at most one running job and two queued ones (a slot freed by a worker
    // that dequeued is seen at the next completion); the rest wait in the engine, not in an
    // unbounded pool queue.
    let taken = engine.stats().pool_jobs;
    assert!((1..=3).contains(&taken), "{:?}", engine.stats());

    let _writer = release(&path);
    for t in &mut opens {
        util::wait_within(&engine, t, util::LIMIT).expect("every open completes");
    }
    assert_eq!(
        engine.stats().pool_jobs,
        10,
        "the waiting jobs went to the pool in turn"
    );
    assert_eq!(engine.in_flight(), 0);
}

#[test]
fn a_cancelled_job_still_queued_never_runs() {
    let Some(b) = util::builder(BackendChoice::Epoll) else {
        return;
    };
    let engine: Engine = b.pool_threads(1).pool_queue(4).build().unwrap();
    let dir = util::TempDir::new("fifo-cancel");
    let path = fifo(&dir);
    let _watchdog = util::Watchdog::arm("blocking open", Duration::from_secs(20));
    let mut running = engine.submit(blocking_open(&path));
    let created = dir.path("created");
    let mut queued = engine.submit(op::OpenAt2::new(
        None,
        &created,
        op::OpenHow::new(libc::O_CREAT | libc::O_WRONLY).mode(0o600),
    ));
    util::drive_for(&engine, Duration::from_millis(50));
    queued.cancel();
    util::assert_errno(
        &util::wait_within(&engine, &mut queued, util::LIMIT),
        libc::ECANCELED,
        "a queued pool job is cancelled",
    );
    let _writer = release(&path);
    util::wait_within(&engine, &mut running, util::LIMIT).expect("the running open completes");
    assert!(!created.exists(), "the cancelled open must never run");
}

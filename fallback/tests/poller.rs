//! Integration tests for `Poller` on real pipes and socketpairs.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use trueio_fallback::{Event, Events, Interest, Mode, Poller};

const SHORT: Duration = Duration::from_millis(50);
const LONG: Duration = Duration::from_secs(5);

fn pipe() -> (File, File) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for `pipe2` to fill.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
    assert_eq!(rc, 0, "pipe2: {}", io::Error::last_os_error());
    // SAFETY: both fds were just created by `pipe2` and are owned by nobody
    // else.
    unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
}

fn pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    (a, b)
}

fn wait(poller: &Poller, timeout: Duration) -> Vec<Event> {
    let mut events = Events::with_capacity(16);
    let n = poller.wait(&mut events, Some(timeout)).unwrap();
    assert_eq!(n, events.len());
    events.iter().collect()
}

fn drain(mut r: impl Read) -> usize {
    let mut buf = [0u8; 4096];
    let mut total = 0;
    loop {
        match r.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return total,
            Err(e) => panic!("read: {e}"),
        }
    }
}

#[test]
fn readable_and_writable_with_tokens() {
    let poller = Poller::new().unwrap();
    let (a, mut b) = pair();
    poller
        .add(
            a.as_raw_fd(),
            11,
            Interest::READABLE | Interest::WRITABLE,
            Mode::Level,
        )
        .unwrap();

    let evs = wait(&poller, LONG);
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].token(), 11);
    assert!(evs[0].writable());
    assert!(!evs[0].readable());
    assert!(!evs[0].hup() && !evs[0].error() && !evs[0].priority());

    b.write_all(b"x").unwrap();
    let evs = wait(&poller, LONG);
    assert_eq!(evs.len(), 1);
    assert!(evs[0].readable() && evs[0].writable());

    // Change the token and interest.
    poller
        .modify(a.as_raw_fd(), 12, Interest::READABLE, Mode::Level)
        .unwrap();
    let evs = wait(&poller, LONG);
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].token(), 12);
    assert!(evs[0].readable() && !evs[0].writable());

    poller.delete(a.as_raw_fd()).unwrap();
    assert!(wait(&poller, SHORT).is_empty());
}

#[test]
fn several_fds_distinct_tokens() {
    let poller = Poller::new().unwrap();
    let pipes: Vec<(File, File)> = (0..3).map(|_| pipe()).collect();
    for (i, (r, _)) in pipes.iter().enumerate() {
        poller
            .add(
                r.as_raw_fd(),
                100 + i as u64,
                Interest::READABLE,
                Mode::Level,
            )
            .unwrap();
    }
    (&pipes[0].1).write_all(b"a").unwrap();
    (&pipes[2].1).write_all(b"c").unwrap();
    let mut tokens: Vec<u64> = wait(&poller, LONG).iter().map(|e| e.token()).collect();
    tokens.sort_unstable();
    assert_eq!(tokens, [100, 102]);

    // A buffer smaller than the number of ready fds returns what fits.
    let mut small = Events::with_capacity(0);
    assert_eq!(small.capacity(), 1);
    assert_eq!(poller.wait(&mut small, Some(LONG)).unwrap(), 1);
    small.clear();
    assert!(small.is_empty());
    assert_eq!(small.iter().count(), 0);
}

#[test]
fn edge_triggered_fires_once_until_drained() {
    let poller = Poller::new().unwrap();
    let (r, w) = pipe();
    poller
        .add(r.as_raw_fd(), 1, Interest::READABLE, Mode::Edge)
        .unwrap();

    (&w).write_all(b"hello").unwrap();
    let evs = wait(&poller, LONG);
    assert_eq!(evs.len(), 1);
    assert!(evs[0].readable());
    // Not drained, no new data: no new edge.
    assert!(wait(&poller, SHORT).is_empty());

    assert_eq!(drain(&r), 5);
    assert!(wait(&poller, SHORT).is_empty());

    (&w).write_all(b"again").unwrap();
    assert_eq!(wait(&poller, LONG).len(), 1);
}

#[test]
fn level_triggered_repeats() {
    let poller = Poller::new().unwrap();
    let (r, w) = pipe();
    poller
        .add(r.as_raw_fd(), 1, Interest::READABLE, Mode::Level)
        .unwrap();
    (&w).write_all(b"x").unwrap();
    for _ in 0..3 {
        assert_eq!(wait(&poller, LONG).len(), 1);
    }
    drain(&r);
    assert!(wait(&poller, SHORT).is_empty());
}

#[test]
fn oneshot_needs_rearm() {
    let poller = Poller::new().unwrap();
    let (r, w) = pipe();
    poller
        .add(r.as_raw_fd(), 5, Interest::READABLE, Mode::Oneshot)
        .unwrap();

    (&w).write_all(b"x").unwrap();
    assert_eq!(wait(&poller, LONG).len(), 1);
    // Disabled now, even with data pending and more arriving.
    assert!(wait(&poller, SHORT).is_empty());
    (&w).write_all(b"y").unwrap();
    assert!(wait(&poller, SHORT).is_empty());

    // Re-arming reports the still-ready fd immediately.
    poller
        .modify(r.as_raw_fd(), 6, Interest::READABLE, Mode::Oneshot)
        .unwrap();
    let evs = wait(&poller, LONG);
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].token(), 6);

    // Re-arm while not ready: the next write is reported.
    drain(&r);
    poller
        .modify(r.as_raw_fd(), 7, Interest::READABLE, Mode::Oneshot)
        .unwrap();
    assert!(wait(&poller, SHORT).is_empty());
    (&w).write_all(b"z").unwrap();
    assert_eq!(wait(&poller, LONG)[0].token(), 7);
}

#[test]
fn peer_shutdown_is_rdhup_and_readable() {
    let poller = Poller::new().unwrap();
    let (a, b) = pair();
    poller
        .add(a.as_raw_fd(), 3, Interest::READABLE, Mode::Edge)
        .unwrap();
    b.shutdown(std::net::Shutdown::Write).unwrap();
    let evs = wait(&poller, LONG);
    assert_eq!(evs.len(), 1);
    assert!(evs[0].hup());
    assert!(evs[0].readable());
    assert_eq!(drain(&a), 0); // EOF
}

#[test]
fn peer_close_is_hup_and_readable_even_for_write_interest() {
    let poller = Poller::new().unwrap();
    let (a, b) = pair();
    // Interested only in writability (and already writable): the close must
    // still wake a reader-side waiter.
    poller
        .add(a.as_raw_fd(), 4, Interest::WRITABLE, Mode::Edge)
        .unwrap();
    assert_eq!(wait(&poller, LONG).len(), 1);
    drop(b);
    let evs = wait(&poller, LONG);
    assert_eq!(evs.len(), 1);
    assert!(evs[0].hup());
    assert!(evs[0].readable());
    assert!(evs[0].writable());
}

#[test]
fn pipe_writer_closed_is_hup() {
    let poller = Poller::new().unwrap();
    let (r, w) = pipe();
    poller
        .add(r.as_raw_fd(), 8, Interest::READABLE, Mode::Level)
        .unwrap();
    drop(w);
    let evs = wait(&poller, LONG);
    assert_eq!(evs.len(), 1);
    assert!(evs[0].hup() && evs[0].readable());
}

#[test]
fn pipe_reader_closed_is_error_and_writable() {
    let poller = Poller::new().unwrap();
    let (r, w) = pipe();
    poller
        .add(w.as_raw_fd(), 9, Interest::WRITABLE, Mode::Edge)
        .unwrap();
    assert_eq!(wait(&poller, LONG).len(), 1);
    drop(r);
    let evs = wait(&poller, LONG);
    assert_eq!(evs.len(), 1);
    assert!(evs[0].error());
    assert!(evs[0].writable() && evs[0].readable());
}

#[test]
fn ctl_errors_keep_errno() {
    let poller = Poller::new().unwrap();
    let (r, _w) = pipe();
    let fd = r.as_raw_fd();
    poller.add(fd, 1, Interest::READABLE, Mode::Edge).unwrap();
    let e = poller
        .add(fd, 1, Interest::READABLE, Mode::Edge)
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EEXIST));
    poller.delete(fd).unwrap();
    let e = poller.delete(fd).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    let e = poller
        .modify(fd, 1, Interest::READABLE, Mode::Edge)
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    let e = poller
        .add(-1, 1, Interest::READABLE, Mode::Edge)
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EBADF));

    // Regular files cannot be polled.
    let file = File::open("/proc/self/exe").unwrap();
    let e = poller
        .add(file.as_raw_fd(), 1, Interest::READABLE, Mode::Edge)
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EPERM));
}

#[test]
fn timeouts() {
    let poller = Poller::new().unwrap();
    let mut events = Events::with_capacity(4);

    let start = Instant::now();
    assert_eq!(poller.wait(&mut events, Some(Duration::ZERO)).unwrap(), 0);
    assert!(start.elapsed() < Duration::from_secs(1));

    // A sub-millisecond timeout is rounded up, not down to a busy poll.
    let start = Instant::now();
    assert_eq!(
        poller
            .wait(&mut events, Some(Duration::from_micros(10)))
            .unwrap(),
        0
    );
    assert!(
        start.elapsed() >= Duration::from_millis(1),
        "{:?}",
        start.elapsed()
    );

    let start = Instant::now();
    assert_eq!(
        poller
            .wait(&mut events, Some(Duration::from_millis(30)))
            .unwrap(),
        0
    );
    assert!(start.elapsed() >= Duration::from_millis(30));
}

#[test]
fn infinite_wait_returns_on_event() {
    let poller = Poller::new().unwrap();
    let (r, w) = pipe();
    poller
        .add(r.as_raw_fd(), 1, Interest::READABLE, Mode::Edge)
        .unwrap();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        // Should the write fail, dropping `w` still wakes the poller (HUP),
        // so the infinite wait below cannot hang.
        let _ = (&w).write(b"x");
        w
    });
    let mut events = Events::with_capacity(4);
    assert_eq!(poller.wait(&mut events, None).unwrap(), 1);
    drop(writer.join().unwrap());
}

extern "C" fn noop_handler(_: libc::c_int) {}

#[test]
fn eintr_is_ok_zero() {
    // SAFETY: installing a no-op handler for SIGUSR1, which nothing else in
    // this test binary uses; `sa` is fully initialized before the call.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = noop_handler as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
    }
    let poller = Poller::new().unwrap();
    let mut events = Events::with_capacity(4);
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let (res_tx, res_rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        // SAFETY: `pthread_self` has no preconditions.
        tid_tx.send(unsafe { libc::pthread_self() }).unwrap();
        let start = Instant::now();
        let n = poller.wait(&mut events, Some(LONG)).unwrap();
        res_tx.send((n, events.len(), start.elapsed())).unwrap();
    });
    let thread = tid_rx.recv_timeout(LONG).unwrap();
    // Signal repeatedly: the first signal may arrive before the thread is
    // inside epoll_wait.
    let give_up = Instant::now() + 2 * LONG;
    let result = loop {
        // SAFETY: `thread` has not been joined yet, so its id is valid.
        assert_eq!(unsafe { libc::pthread_kill(thread, libc::SIGUSR1) }, 0);
        match res_rx.recv_timeout(Duration::from_millis(50)) {
            Ok(r) => break r,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) if Instant::now() < give_up => {}
            Err(e) => panic!("waiter did not report: {e}"),
        }
    };
    waiter.join().unwrap();
    let (n, len, elapsed) = result;
    assert_eq!((n, len), (0, 0));
    assert!(elapsed < LONG, "wait was not interrupted");
}

#[test]
fn interest_and_debug() {
    let i = Interest::READABLE | Interest::WRITABLE;
    assert!(i.is_readable() && i.is_writable() && !i.is_priority());
    let mut j = Interest::PRIORITY;
    j |= Interest::READABLE;
    assert_eq!(format!("{j:?}"), "READABLE | PRIORITY");
    assert_ne!(format!("{:?}", Poller::new().unwrap()), "");
    assert_eq!(format!("{:?}", Events::with_capacity(2)), "[]");
}

#[test]
fn poller_is_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<Poller>();
    check::<Events>();
}

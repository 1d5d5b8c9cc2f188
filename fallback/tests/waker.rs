//! Integration tests for `Waker` with a real `Poller`.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use trueio_fallback::{Events, Interest, Mode, Poller, Waker};

const WAKER: u64 = u64::MAX;
const SHORT: Duration = Duration::from_millis(50);
const LONG: Duration = Duration::from_secs(5);

fn setup(mode: Mode) -> (Poller, Waker) {
    let poller = Poller::new().unwrap();
    let waker = Waker::new().unwrap();
    poller
        .add(waker.fd(), WAKER, Interest::READABLE, mode)
        .unwrap();
    (poller, waker)
}

fn tokens(poller: &Poller, timeout: Duration) -> Vec<u64> {
    let mut events = Events::with_capacity(8);
    poller.wait(&mut events, Some(timeout)).unwrap();
    events.iter().map(|e| e.token()).collect()
}

#[test]
fn wakes_blocked_wait_from_another_thread() {
    let (poller, waker) = setup(Mode::Edge);
    let remote = waker.clone();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(30));
        remote.wake().unwrap();
    });
    let start = Instant::now();
    let got = tokens(&poller, LONG);
    assert_eq!(got, [WAKER]);
    assert!(start.elapsed() < LONG);
    waker.reset();
    t.join().unwrap();
}

#[test]
fn reset_drains_the_counter() {
    let (poller, waker) = setup(Mode::Level);
    assert!(tokens(&poller, Duration::ZERO).is_empty());
    waker.wake().unwrap();
    waker.wake().unwrap();
    waker.wake().unwrap();
    assert_eq!(tokens(&poller, LONG), [WAKER]);
    assert_eq!(tokens(&poller, LONG), [WAKER]); // level: still readable
    waker.reset();
    assert!(tokens(&poller, SHORT).is_empty());
    // Resetting an unwoken waker is harmless.
    waker.reset();
    assert!(tokens(&poller, Duration::ZERO).is_empty());
    waker.wake().unwrap();
    assert_eq!(tokens(&poller, LONG), [WAKER]);
}

#[test]
fn saturated_counter_is_already_woken() {
    let (poller, waker) = setup(Mode::Level);
    // The eventfd counter maxes out at u64::MAX - 1.
    let max: u64 = u64::MAX - 1;
    // SAFETY: writes 8 bytes from a live `u64` to the waker's open eventfd.
    let n = unsafe {
        libc::write(
            waker.fd(),
            (&max as *const u64).cast(),
            std::mem::size_of::<u64>(),
        )
    };
    assert_eq!(n, 8);
    // A further write would overflow: EAGAIN, reported as success.
    waker.wake().unwrap();
    assert_eq!(tokens(&poller, LONG), [WAKER]);
    waker.reset();
    assert!(tokens(&poller, SHORT).is_empty());
}

#[test]
fn many_threads_wake_concurrently() {
    let (poller, waker) = setup(Mode::Edge);
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let w = waker.clone();
            thread::spawn(move || {
                for _ in 0..1000 {
                    w.wake().unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(tokens(&poller, LONG), [WAKER]);
    waker.reset();
    assert!(tokens(&poller, SHORT).is_empty());
}

#[test]
fn clones_share_one_fd_that_outlives_the_original() {
    let waker = Waker::new().unwrap();
    let clone = waker.clone();
    assert_eq!(waker.fd(), clone.fd());
    assert_eq!(waker.as_raw_fd(), waker.fd());
    let fd = waker.fd();
    drop(waker);
    // Still open: fcntl succeeds.
    // SAFETY: F_GETFD on an fd number has no memory-safety requirements.
    assert!(unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0);
    clone.wake().unwrap();
    clone.reset();

    let shared = Arc::new(clone);
    let s2 = Arc::clone(&shared);
    thread::spawn(move || s2.wake().unwrap()).join().unwrap();
    shared.reset();
    assert!(format!("{shared:?}").contains("Waker"));
}

#[test]
fn waker_is_send_sync_clone() {
    fn check<T: Send + Sync + Clone>() {}
    check::<Waker>();
}

//! Cross-thread wake-ups for a [`Poller`](crate::Poller) via `eventfd`.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

/// Wakes a thread blocked in [`Poller::wait`](crate::Poller::wait).
///
/// A `Waker` is an `eventfd` (`EFD_NONBLOCK | EFD_CLOEXEC`). Register
/// [`Waker::fd`] in the poller under a reserved token with
/// [`Interest::READABLE`](crate::Interest::READABLE); any thread may then call
/// [`Waker::wake`]. When the poller reports the reserved token, call
/// [`Waker::reset`] *before* handling whatever the wake-up announced, so that
/// a wake issued during that handling is not lost.
///
/// `Waker` is `Send + Sync` and cloning it is cheap (clones share one
/// eventfd, which is closed when the last clone is dropped).
///
/// ```
/// use std::os::fd::AsRawFd;
/// use std::time::Duration;
/// use trueio_fallback::{Events, Interest, Mode, Poller, Waker};
///
/// const WAKER: u64 = u64::MAX;
/// # fn main() -> std::io::Result<()> {
/// let poller = Poller::new()?;
/// let waker = Waker::new()?;
/// poller.add(waker.fd(), WAKER, Interest::READABLE, Mode::Edge)?;
///
/// let remote = waker.clone();
/// std::thread::spawn(move || remote.wake());
///
/// let mut events = Events::with_capacity(8);
/// loop {
///     poller.wait(&mut events, Some(Duration::from_secs(5)))?;
///     if events.iter().any(|e| e.token() == WAKER) {
///         waker.reset();
///         break;
///     }
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Waker {
    fd: Arc<OwnedFd>,
}

impl Waker {
    /// Creates a new eventfd-backed waker.
    pub fn new() -> io::Result<Waker> {
        // SAFETY: `eventfd` takes no pointers; any argument values are
        // memory-safe.
        let fd = syscall!(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        // SAFETY: `fd` was just returned by a successful `eventfd`, so it is
        // an open descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Waker { fd: Arc::new(fd) })
    }

    /// Makes the eventfd readable, waking a poller that watches it.
    ///
    /// Wakes coalesce: waking an already-woken waker is cheap and succeeds
    /// (a saturated counter, `EAGAIN`, means "already woken").
    pub fn wake(&self) -> io::Result<()> {
        let one: u64 = 1;
        // SAFETY: the eventfd is open for as long as `self` holds the `Arc`;
        // the buffer is a valid 8-byte `u64` that outlives the call.
        let res = syscall!(unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            )
        });
        match res {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Drains the eventfd counter so the fd stops being readable.
    ///
    /// Call after the poller reported the waker's token, before acting on the
    /// wake-up. Resetting a waker that was not woken does nothing.
    pub fn reset(&self) {
        let mut buf: u64 = 0;
        // SAFETY: the eventfd is open for as long as `self` holds the `Arc`;
        // `buf` is a valid, writable 8-byte buffer that outlives the call.
        // The result is deliberately ignored: with an 8-byte buffer on a
        // non-blocking eventfd the only possible failure is `EAGAIN`, which
        // means the counter was already zero.
        let _ = syscall!(unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&mut buf as *mut u64).cast(),
                std::mem::size_of::<u64>(),
            )
        });
    }

    /// The eventfd, for registering in a [`Poller`](crate::Poller).
    ///
    /// The fd stays open for as long as any clone of this `Waker` lives.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsRawFd for Waker {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Waker {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl fmt::Debug for Waker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waker")
            .field("fd", &self.fd.as_raw_fd())
            .finish()
    }
}

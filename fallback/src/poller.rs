//! An `epoll` instance: readiness notification for file descriptors.
//!
//! [`Poller`] is a thin, safe wrapper around one epoll file descriptor. It
//! does not own the descriptors registered in it and keeps no per-fd state;
//! the caller chooses a `u64` token per registration and gets it back in each
//! [`Event`].
//!
//! # Contract
//!
//! * **Register once per fd.** [`Poller::add`] fails with `EEXIST` if the fd
//!   is already in the set; use [`Poller::modify`] to change the token,
//!   interest or mode of an existing registration.
//! * **Edge-triggered ([`Mode::Edge`]) means "drain until `EAGAIN`".** An
//!   edge-triggered registration reports a direction once when it becomes
//!   ready. The caller must keep reading (or writing) until the syscall fails
//!   with `EAGAIN`/`EWOULDBLOCK`; stopping earlier may mean no further event
//!   is ever reported for data that is already buffered. The fd should be in
//!   non-blocking mode.
//! * **One-shot ([`Mode::Oneshot`]) must be re-armed.** After one event the
//!   registration is disabled (but stays in the set) until it is re-armed
//!   with [`Poller::modify`]. Re-arming reports the fd again at once if it is
//!   ready at that moment, so no wake-up is lost between the event and the
//!   re-arm.
//! * **Level-triggered ([`Mode::Level`])** reports an fd on every
//!   [`Poller::wait`] for as long as it stays ready.
//! * **Delete before close.** epoll tracks the open file description, not the
//!   fd number: a closed fd leaves the set automatically only once *every*
//!   duplicate of it (from `dup`, `fork`, `SCM_RIGHTS`, ...) is closed. Until
//!   then events keep arriving with the old token, possibly after the fd
//!   number has been reused for something else. Call [`Poller::delete`]
//!   before closing.
//! * **Errors and hang-ups always count as readable** (and mostly writable, see
//!   [`Event`]): a task waiting for readiness should retry its syscall on any
//!   event and let the syscall report the real error or end-of-file.
//!
//! Errors from `epoll_ctl`/`epoll_wait` are returned unchanged
//! ([`io::Error::raw_os_error`] is the errno), so callers can match on
//! `EEXIST`, `ENOENT`, `EPERM` (the fd does not support polling, e.g. a
//! regular file) and so on.

use std::fmt;
use std::io;
use std::ops::{BitOr, BitOrAssign};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// The readiness directions a registration asks for.
///
/// Combine with `|`. Every registration also asks for `EPOLLRDHUP`, so a
/// peer's shutdown of its write side is always reported (as
/// [`Event::hup`] and [`Event::readable`]).
///
/// ```
/// use trueio_fallback::Interest;
///
/// let both = Interest::READABLE | Interest::WRITABLE;
/// assert!(both.is_readable() && both.is_writable());
/// assert!(!Interest::READABLE.is_writable());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Interest(u32);

impl Interest {
    /// Readable: `EPOLLIN`.
    pub const READABLE: Interest = Interest(libc::EPOLLIN as u32);
    /// Writable: `EPOLLOUT`.
    pub const WRITABLE: Interest = Interest(libc::EPOLLOUT as u32);
    /// Urgent / priority data (`EPOLLPRI`), e.g. TCP out-of-band data.
    pub const PRIORITY: Interest = Interest(libc::EPOLLPRI as u32);

    /// Whether this interest includes [`Interest::READABLE`].
    pub const fn is_readable(self) -> bool {
        self.0 & Self::READABLE.0 != 0
    }

    /// Whether this interest includes [`Interest::WRITABLE`].
    pub const fn is_writable(self) -> bool {
        self.0 & Self::WRITABLE.0 != 0
    }

    /// Whether this interest includes [`Interest::PRIORITY`].
    pub const fn is_priority(self) -> bool {
        self.0 & Self::PRIORITY.0 != 0
    }
}

impl BitOr for Interest {
    type Output = Interest;

    fn bitor(self, rhs: Interest) -> Interest {
        Interest(self.0 | rhs.0)
    }
}

impl BitOrAssign for Interest {
    fn bitor_assign(&mut self, rhs: Interest) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for Interest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        for (set, name) in [
            (self.is_readable(), "READABLE"),
            (self.is_writable(), "WRITABLE"),
            (self.is_priority(), "PRIORITY"),
        ] {
            if set {
                write!(f, "{sep}{name}")?;
                sep = " | ";
            }
        }
        Ok(())
    }
}

/// How a registration reports readiness. See the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Edge-triggered (`EPOLLET`): reported when the fd *becomes* ready; the
    /// caller must drain until `EAGAIN`.
    Edge,
    /// Level-triggered one-shot (`EPOLLONESHOT`): reported once, then
    /// disabled until re-armed with [`Poller::modify`].
    Oneshot,
    /// Level-triggered: reported on every wait while ready.
    Level,
}

impl Mode {
    fn flags(self) -> u32 {
        match self {
            Mode::Edge => libc::EPOLLET as u32,
            Mode::Oneshot => libc::EPOLLONESHOT as u32,
            Mode::Level => 0,
        }
    }
}

/// An epoll instance (created with `EPOLL_CLOEXEC`).
///
/// `Poller` is `Send + Sync`; registration and waiting may happen from
/// different threads.
///
/// ```
/// use std::os::fd::AsRawFd;
/// use std::os::unix::net::UnixStream;
/// use std::io::Write;
/// use trueio_fallback::{Events, Interest, Mode, Poller};
///
/// # fn main() -> std::io::Result<()> {
/// let poller = Poller::new()?;
/// let (a, mut b) = UnixStream::pair()?;
/// a.set_nonblocking(true)?;
/// poller.add(a.as_raw_fd(), 7, Interest::READABLE, Mode::Edge)?;
///
/// b.write_all(b"ping")?;
/// let mut events = Events::with_capacity(16);
/// let n = poller.wait(&mut events, Some(std::time::Duration::from_secs(5)))?;
/// assert_eq!(n, 1);
/// let ev = events.iter().next().unwrap();
/// assert_eq!(ev.token(), 7);
/// assert!(ev.readable());
///
/// poller.delete(a.as_raw_fd())?; // before `a` is closed
/// # Ok(())
/// # }
/// ```
pub struct Poller {
    epfd: OwnedFd,
}

impl Poller {
    /// Creates a new epoll instance.
    pub fn new() -> io::Result<Poller> {
        // SAFETY: `epoll_create1` takes no pointers; any flag value is
        // memory-safe.
        let fd = syscall!(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `fd` was just returned by a successful `epoll_create1`, so
        // it is an open descriptor that nothing else owns.
        let epfd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Poller { epfd })
    }

    /// Registers `fd` with the given token, interest and mode.
    ///
    /// Fails with `EEXIST` if `fd` is already registered, `EPERM` if it does
    /// not support polling (e.g. a regular file), `EBADF` if it is not open.
    pub fn add(&self, fd: RawFd, token: u64, interest: Interest, mode: Mode) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, token, interest, mode)
    }

    /// Changes the token, interest or mode of a registered `fd`; re-arms a
    /// [`Mode::Oneshot`] registration.
    ///
    /// Fails with `ENOENT` if `fd` is not registered.
    pub fn modify(&self, fd: RawFd, token: u64, interest: Interest, mode: Mode) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, token, interest, mode)
    }

    /// Removes `fd` from the set. Call this before closing `fd`.
    ///
    /// Fails with `ENOENT` if `fd` is not registered.
    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        // Kernels before 2.6.9 require a non-null event pointer even for
        // EPOLL_CTL_DEL.
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: `self.epfd` is an open epoll fd owned by `self`, and `ev` is
        // a valid, writable `epoll_event` for the duration of the call. An
        // invalid `fd` only produces an error.
        syscall!(unsafe {
            libc::epoll_ctl(self.epfd.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, &mut ev)
        })?;
        Ok(())
    }

    fn ctl(
        &self,
        op: i32,
        fd: RawFd,
        token: u64,
        interest: Interest,
        mode: Mode,
    ) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: interest.0 | libc::EPOLLRDHUP as u32 | mode.flags(),
            u64: token,
        };
        // SAFETY: `self.epfd` is an open epoll fd owned by `self`, and `ev` is
        // a valid `epoll_event` for the duration of the call. An invalid `fd`
        // only produces an error.
        syscall!(unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), op, fd, &mut ev) })?;
        Ok(())
    }

    /// Waits for events, storing them in `events` (previous contents are
    /// discarded) and returning how many there are.
    ///
    /// `timeout` is rounded *up* to whole milliseconds, so a non-zero
    /// duration never turns into a busy poll; `Some(Duration::ZERO)` polls
    /// without blocking; `None` waits indefinitely. Timeouts above
    /// `i32::MAX` ms (about 24.8 days) are clamped.
    ///
    /// If the wait is interrupted by a signal (`EINTR`) this returns `Ok(0)`
    /// with `events` empty, just like a timeout: callers are expected to loop
    /// and recompute their timeout.
    pub fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize> {
        events.len = 0;
        let timeout_ms = timeout.map_or(-1, duration_to_ms_ceil);
        // The kernel rejects maxevents above INT_MAX / sizeof(epoll_event).
        let max = i32::MAX as usize / std::mem::size_of::<libc::epoll_event>();
        let maxevents = events.buf.len().min(max) as i32;
        // SAFETY: `self.epfd` is an open epoll fd owned by `self`;
        // `events.buf` is an initialized, writable buffer of at least
        // `maxevents` (>= 1) `epoll_event`s that outlives the call.
        let res = syscall!(unsafe {
            libc::epoll_wait(
                self.epfd.as_raw_fd(),
                events.buf.as_mut_ptr(),
                maxevents,
                timeout_ms,
            )
        });
        match res {
            Ok(n) => {
                // epoll_wait never returns more than `maxevents`.
                events.len = (n as usize).min(events.buf.len());
                Ok(events.len)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(e),
        }
    }
}

/// Converts a duration to milliseconds, rounding up and clamping to
/// `i32::MAX`.
fn duration_to_ms_ceil(d: Duration) -> i32 {
    let mut ms = d.as_millis();
    if d.subsec_nanos() % 1_000_000 != 0 {
        ms += 1;
    }
    ms.min(i32::MAX as u128) as i32
}

impl AsRawFd for Poller {
    fn as_raw_fd(&self) -> RawFd {
        self.epfd.as_raw_fd()
    }
}

impl AsFd for Poller {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epfd.as_fd()
    }
}

impl fmt::Debug for Poller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Poller")
            .field("epfd", &self.epfd.as_raw_fd())
            .finish()
    }
}

/// A reusable buffer of events filled by [`Poller::wait`].
pub struct Events {
    buf: Box<[libc::epoll_event]>,
    len: usize,
}

impl Events {
    /// Creates a buffer that receives at most `capacity` events per wait.
    ///
    /// A capacity of 0 is treated as 1.
    pub fn with_capacity(capacity: usize) -> Events {
        let empty = libc::epoll_event { events: 0, u64: 0 };
        Events {
            buf: vec![empty; capacity.max(1)].into_boxed_slice(),
            len: 0,
        }
    }

    /// The maximum number of events one wait can return.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// The number of events from the last wait.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the last wait returned no events.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Iterates over the events from the last wait.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            inner: self.buf[..self.len].iter(),
        }
    }

    /// Forgets all events.
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for &'a Events {
    type Item = Event;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// Iterator over [`Events`], created by [`Events::iter`].
#[derive(Clone)]
pub struct Iter<'a> {
    inner: std::slice::Iter<'a, libc::epoll_event>,
}

impl Iterator for Iter<'_> {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        self.inner.next().map(|ev| Event {
            // Copy the fields out: `epoll_event` is packed on x86-64.
            token: ev.u64,
            flags: ev.events,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl fmt::Debug for Iter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter")
            .field("remaining", &self.inner.len())
            .finish()
    }
}

/// One readiness event.
///
/// Error and hang-up conditions are folded into the directions so that a
/// waiter always retries its syscall and observes the real outcome:
///
/// | kernel flag  | `readable` | `writable` | `error` | `hup` |
/// |--------------|:----------:|:----------:|:-------:|:-----:|
/// | `EPOLLIN`    | ✓          |            |         |       |
/// | `EPOLLOUT`   |            | ✓          |         |       |
/// | `EPOLLERR`   | ✓          | ✓          | ✓       |       |
/// | `EPOLLHUP`   | ✓          | ✓          |         | ✓     |
/// | `EPOLLRDHUP` | ✓          |            |         | ✓     |
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Event {
    token: u64,
    flags: u32,
}

impl Event {
    const ERR: u32 = libc::EPOLLERR as u32;
    const HUP: u32 = libc::EPOLLHUP as u32;
    const RDHUP: u32 = libc::EPOLLRDHUP as u32;

    /// The token given at registration.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// Readable, or an error / hang-up / peer write-shutdown that a read will
    /// report.
    pub fn readable(&self) -> bool {
        self.flags & (libc::EPOLLIN as u32 | Self::ERR | Self::HUP | Self::RDHUP) != 0
    }

    /// Writable, or an error / full hang-up that a write will report.
    pub fn writable(&self) -> bool {
        self.flags & (libc::EPOLLOUT as u32 | Self::ERR | Self::HUP) != 0
    }

    /// An error condition is pending on the fd (`EPOLLERR`); the next
    /// syscall (or `SO_ERROR`) reports it.
    pub fn error(&self) -> bool {
        self.flags & Self::ERR != 0
    }

    /// The peer hung up (`EPOLLHUP`) or shut down its write side
    /// (`EPOLLRDHUP`).
    pub fn hup(&self) -> bool {
        self.flags & (Self::HUP | Self::RDHUP) != 0
    }

    /// Priority / out-of-band data is available (`EPOLLPRI`).
    pub fn priority(&self) -> bool {
        self.flags & libc::EPOLLPRI as u32 != 0
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("token", &self.token)
            .field("readable", &self.readable())
            .field("writable", &self.writable())
            .field("error", &self.error())
            .field("hup", &self.hup())
            .field("priority", &self.priority())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::duration_to_ms_ceil;
    use std::time::Duration;

    #[test]
    fn timeout_rounds_up() {
        assert_eq!(duration_to_ms_ceil(Duration::ZERO), 0);
        assert_eq!(duration_to_ms_ceil(Duration::from_nanos(1)), 1);
        assert_eq!(duration_to_ms_ceil(Duration::from_micros(999)), 1);
        assert_eq!(duration_to_ms_ceil(Duration::from_millis(1)), 1);
        assert_eq!(duration_to_ms_ceil(Duration::from_micros(1001)), 2);
        assert_eq!(duration_to_ms_ceil(Duration::from_secs(2)), 2000);
        assert_eq!(duration_to_ms_ceil(Duration::MAX), i32::MAX);
    }
}

//! Timers of the runtime: [`sleep`], [`sleep_until`], [`timeout`] and [`deadline`].
//!
//! They live in the thread's runtime, a heap of deadlines in user space, and the engine's wait
//! takes the nearest one as its timeout (io_uring's `EXT_ARG` wait timeout, `epoll_wait`'s
//! on the fallback), the same on both backends. A timer therefore costs no operation of its
//! own, and a timeout that does not fire (an I/O that finished in time, the usual case)
//! costs nothing in the kernel: an io_uring `TIMEOUT` per timer would cost a submission, a
//! kernel timer, a cancel and two completions. Engine users without a runtime have
//! [`op::Timeout`](crate::op::Timeout) and [`op::LinkTimeout`](crate::op::LinkTimeout).
//!
//! ```
//! # fn main() -> std::io::Result<()> {
//! use std::time::{Duration, Instant};
//! use trueio::{rt::Runtime, time};
//! let rt = Runtime::new()?;
//! rt.block_on(async {
//!     let t = Instant::now();
//!     time::sleep(Duration::from_millis(10)).await;
//!     assert!(t.elapsed() >= Duration::from_millis(10));
//! });
//! # Ok(()) }
//! ```

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::op::Op;
use crate::rt::{self, TimerKey, Timers};
use crate::Ticket;

/// Waits for `d` on the current runtime.
///
/// # Panics
///
/// When polled outside a runtime ([`Runtime::block_on`](crate::rt::Runtime::block_on)).
pub async fn sleep(d: Duration) {
    Sleep::until(Instant::now() + d).await
}

/// Waits until `deadline` on the current runtime (at once when it has passed).
///
/// # Panics
///
/// When polled outside a runtime.
pub async fn sleep_until(deadline: Instant) {
    Sleep::until(deadline).await
}

/// A deadline, registered with the runtime's timers the first time it is polled before it
/// has passed, and removed from them when dropped.
struct Sleep {
    deadline: Instant,
    registered: Option<(Rc<RefCell<Timers>>, TimerKey)>,
}

impl Sleep {
    fn until(deadline: Instant) -> Sleep {
        Sleep {
            deadline,
            registered: None,
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let Some((timers, key)) = &self.registered {
            return if timers.borrow_mut().poll(*key, cx.waker()) {
                Poll::Ready(())
            } else {
                Poll::Pending
            };
        }
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        let timers = rt::timers();
        let key = timers
            .borrow_mut()
            .insert(self.deadline, cx.waker().clone());
        self.registered = Some((timers, key));
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some((timers, key)) = self.registered.take() {
            // The heap is borrowed only inside its own calls, which run no task code; only a
            // foreign waker dropped by `Timers::poll` could drop a timer from in there. Such
            // an entry stays: it wakes that waker once at its deadline and keeps its slot.
            if let Ok(mut t) = timers.try_borrow_mut() {
                t.remove(key);
            }
        }
    }
}

/// The error of a [`timeout`] whose deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed(());

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

impl From<Elapsed> for io::Error {
    fn from(e: Elapsed) -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, e)
    }
}

/// Runs `fut` for at most `d`. When the deadline passes first, `fut` is dropped (its
/// operations are cancelled; their buffers stay with the engine until the kernel is done) and
/// `Err(Elapsed)` comes back. To get an operation's buffer back after a deadline, use
/// [`deadline`] on its ticket instead.
///
/// # Panics
///
/// When polled outside a runtime, unless `fut` is ready at its first poll.
pub async fn timeout<F: Future>(d: Duration, fut: F) -> Result<F::Output, Elapsed> {
    let mut timer = Sleep::until(Instant::now() + d);
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        Pin::new(&mut timer).poll(cx).map(|()| Err(Elapsed(())))
    })
    .await
}

/// What [`deadline`] gives back: the operation's own output either way.
#[derive(Debug)]
pub enum Deadline<T> {
    /// The operation finished before the deadline.
    Done(T),
    /// The deadline passed; the operation was cancelled and this is its output (usually
    /// `ECANCELED` with its buffer, or its result if it finished in the meantime: data that
    /// arrived is never dropped).
    Elapsed(T),
}

impl<T> Deadline<T> {
    /// The operation's output, whichever way it ended.
    pub fn into_inner(self) -> T {
        match self {
            Deadline::Done(t) | Deadline::Elapsed(t) => t,
        }
    }

    /// True when the deadline passed first.
    pub fn elapsed(&self) -> bool {
        matches!(self, Deadline::Elapsed(_))
    }
}

/// Waits for `ticket` for at most `d`; past the deadline, cancels it and waits for its final
/// completion, so the caller gets the operation's resources back (deterministic cancel).
///
/// # Panics
///
/// When polled outside a runtime.
pub async fn deadline<T: Op>(d: Duration, mut ticket: Ticket<T>) -> Deadline<T::Output> {
    let mut timer = Sleep::until(Instant::now() + d);
    let fired = std::future::poll_fn(|cx| {
        if ticket.poll_done(cx).is_ready() {
            return Poll::Ready(false);
        }
        Pin::new(&mut timer).poll(cx).map(|()| true)
    })
    .await;
    drop(timer);
    if fired {
        ticket.cancel();
        Deadline::Elapsed(ticket.await)
    } else {
        Deadline::Done(ticket.await)
    }
}

//! Timers on the engine: io_uring `TIMEOUT` requests, or the epoll backend's timer heap.
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

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::op::{self, Op};
use crate::{rt, Ticket};

/// Waits for `d` on the current runtime's engine.
///
/// # Panics
///
/// Outside a runtime.
pub async fn sleep(d: Duration) {
    // A timer completes with Ok on expiry; the only error is cancellation, which cannot
    // happen while this future holds the ticket.
    let _ = rt::engine().submit(op::Timeout::after(d)).await;
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
pub async fn timeout<F: Future>(d: Duration, fut: F) -> Result<F::Output, Elapsed> {
    let timer = rt::engine().submit(op::Timeout::after(d));
    Timeout {
        fut: Box::pin(fut),
        timer,
    }
    .await
}

struct Timeout<F: Future> {
    fut: Pin<Box<F>>,
    timer: Ticket<op::Timeout>,
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(v) = self.fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match Pin::new(&mut self.timer).poll(cx) {
            Poll::Ready(_) => Poll::Ready(Err(Elapsed(()))),
            Poll::Pending => Poll::Pending,
        }
    }
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
pub async fn deadline<T: Op>(d: Duration, mut ticket: Ticket<T>) -> Deadline<T::Output> {
    let engine = rt::engine();
    let mut timer = engine.submit(op::Timeout::after(d));
    let fired = std::future::poll_fn(|cx| {
        if ticket.poll_done(cx).is_ready() {
            return Poll::Ready(false);
        }
        Pin::new(&mut timer).poll(cx).map(|_| true)
    })
    .await;
    if fired {
        ticket.cancel();
        Deadline::Elapsed(ticket.await)
    } else {
        drop(timer); // cancels it
        Deadline::Done(ticket.await)
    }
}

//! [`Ticket`]: the handle of one submitted operation.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::table::State;
use super::Inner;
use crate::op::{Op, OpId};
use crate::user_data::UserData;

/// The handle of one submitted operation: wait for it, poll it as a future, or cancel it.
///
/// Dropping a ticket before its completion cancels the operation; the engine keeps the
/// operation's resources until the kernel's final completion has been reaped, then releases
/// them (closing any descriptor an open returned). `mem::forget` on a ticket leaks the
/// operation, never frees what the kernel may still write (and, for a ticket that completed
/// at its submission, turns off io_uring's inline lone reads on that engine).
#[must_use = "dropping a Ticket cancels its operation"]
pub struct Ticket<T: Op> {
    inner: Rc<Inner>,
    state: TicketState,
    /// `None` once the output was taken.
    op: Option<T>,
}

/// Where a ticket's result is.
#[derive(Debug, Clone, Copy)]
pub(super) enum TicketState {
    /// In the engine's table, under this user_data (in flight, or completed and not taken).
    InTable(UserData),
    /// Completed at its submission with this result, without a table entry.
    Done(i32),
}

// The operation is never pinned structurally: the kernel sees only heap memory it owns.
impl<T: Op> Unpin for Ticket<T> {}

impl<T: Op> Ticket<T> {
    pub(super) fn new(inner: Rc<Inner>, state: TicketState, op: T) -> Ticket<T> {
        Ticket {
            inner,
            state,
            op: Some(op),
        }
    }

    /// The user_data the kernel sees for this operation; `None` for one that completed at its
    /// submission (it never had one in the kernel).
    pub fn user_data(&self) -> Option<u64> {
        match self.state {
            TicketState::InTable(ud) => Some(ud.to_raw()),
            TicketState::Done(_) => None,
        }
    }

    /// True when the final completion has arrived (or the output was already taken).
    pub fn is_done(&self) -> bool {
        match self.state {
            _ if self.op.is_none() => true,
            TicketState::Done(_) => true,
            TicketState::InTable(ud) => matches!(
                self.inner.ops.borrow().get(ud.key()).map(|e| &e.state),
                Some(State::Done { .. })
            ),
        }
    }

    /// The output when the operation has completed; `None` while it is in flight or when the
    /// output was taken already.
    #[inline]
    pub fn try_take(&mut self) -> Option<T::Output> {
        self.op.as_ref()?;
        let ud = match self.state {
            TicketState::Done(res) => return self.take_done(res),
            TicketState::InTable(ud) => ud,
        };
        let (res, flags) = {
            let mut ops = self.inner.ops.borrow_mut();
            let e = ops.get(ud.key())?;
            let State::Done { res, flags } = e.state else {
                return None;
            };
            ops.remove(ud.key());
            (res, flags)
        };
        self.op.take().map(|op| op.complete(res, flags))
    }

    /// The output of a ticket that completed at its submission.
    fn take_done(&mut self, res: i32) -> Option<T::Output> {
        let op = self.op.take()?;
        self.inner.held_done.set(self.inner.held_done.get() - 1);
        Some(op.complete(res, 0))
    }

    /// `Ready` once the final completion has arrived (the output stays in the ticket);
    /// otherwise registers the task's waker. For combinators that must not take the output
    /// yet, such as [`time::deadline`](crate::time::deadline).
    pub fn poll_done(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.op.is_none() {
            return Poll::Pending;
        }
        let ud = match self.state {
            TicketState::Done(_) => return Poll::Ready(()),
            TicketState::InTable(ud) => ud,
        };
        let mut ops = self.inner.ops.borrow_mut();
        let Some(e) = ops.get_mut(ud.key()) else {
            return Poll::Pending;
        };
        match &mut e.state {
            State::Done { .. } => return Poll::Ready(()),
            State::Partial { waker, .. } => match waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                w => *w = Some(cx.waker().clone()),
            },
            State::Waiting(w) if w.will_wake(cx.waker()) => {}
            s => *s = State::Waiting(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Drives the engine until this operation completes and returns its output. Fails only
    /// when the engine itself fails (for example a ring inherited across `fork`); the
    /// operation then stays owned by the engine.
    pub fn wait(mut self) -> io::Result<T::Output> {
        if self.inner.forked() {
            return Err(crate::fork::inherited());
        }
        loop {
            if let Some(out) = self.try_take() {
                return Ok(out);
            }
            if self.op.is_none() {
                return Err(io::Error::other("the ticket's output was taken already"));
            }
            self.inner.turn(None)?;
        }
    }

    /// Asks the engine to cancel the operation. Its completion still arrives: `ECANCELED`
    /// with the resources, or the result it reached first (data read is never dropped).
    pub fn cancel(&self) {
        if let (TicketState::InTable(ud), false) = (self.state, self.is_done()) {
            self.inner.cancel(ud);
        }
    }
}

impl<T: Op> Future for Ticket<T> {
    type Output = T::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T::Output> {
        match self.poll_done(cx) {
            Poll::Ready(()) => match self.try_take() {
                Some(out) => Poll::Ready(out),
                // Polled again after its output was taken: never ready again.
                None => Poll::Pending,
            },
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: Op> Drop for Ticket<T> {
    fn drop(&mut self) {
        let ud = match self.state {
            // Completed at once: build the output to release what it holds.
            TicketState::Done(res) => return drop(self.take_done(res)),
            TicketState::InTable(ud) => ud,
        };
        let Some(op) = self.op.take() else { return };
        let done = {
            let mut ops = self.inner.ops.borrow_mut();
            let Some(e) = ops.get_mut(ud.key()) else {
                return;
            };
            match e.state {
                State::Done { res, flags } => {
                    ops.remove(ud.key());
                    Some((op, res, flags))
                }
                _ => {
                    e.state = State::Ignored(Box::new(op));
                    None
                }
            }
        };
        match done {
            // Outside the borrow: building the output may drop a FixedBuf or close a file.
            Some((op, res, flags)) => drop(op.complete(res, flags)),
            None => self.inner.cancel(ud),
        }
    }
}

impl<T: Op> fmt::Debug for Ticket<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("user_data", &self.user_data())
            .field("done", &self.is_done())
            .finish()
    }
}

/// A [`Cancel`](crate::op::Cancel) of a ticket's operation; one that completed at its
/// submission is no target (the cancel answers `ENOENT`).
impl<T: Op> From<&Ticket<T>> for OpId {
    fn from(t: &Ticket<T>) -> OpId {
        match t.state {
            TicketState::InTable(ud) if t.op.is_some() => OpId::new(ud),
            _ => OpId::NONE,
        }
    }
}

//! [`Subscription`]: the stream of a multishot operation's items.

use std::collections::VecDeque;
use std::fmt;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::table::{AbandonedStream, State, Stream};
use super::Inner;
use crate::op::{Multishot, OpId};
use crate::user_data::UserData;

/// The stream of a multishot operation's items
/// ([`Engine::submit_multishot`](crate::Engine::submit_multishot)).
///
/// Each completion becomes one item, in order; the last one (the kernel's final completion,
/// often an error such as `ECANCELED` or `ENOBUFS`) ends the stream, after which
/// [`next`](Subscription::next) gives `None`. Dropping the subscription cancels the operation;
/// items that arrive afterwards are built and dropped by the engine (an accepted socket is
/// closed), and the operation's resources are released after its final completion.
#[must_use = "dropping a Subscription cancels its operation"]
pub struct Subscription<T: Multishot> {
    inner: Rc<Inner>,
    ud: UserData,
    op: Option<T>,
}

impl<T: Multishot> Subscription<T> {
    pub(super) fn new(inner: Rc<Inner>, ud: UserData, op: T) -> Subscription<T> {
        Subscription {
            inner,
            ud,
            op: Some(op),
        }
    }

    /// The next item, or `None` once the stream has ended.
    pub async fn next(&mut self) -> Option<T::Item> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// Polls for the next item; registers the task's waker while there is none.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<T::Item>> {
        let Some(op) = self.op.as_mut() else {
            return Poll::Ready(None);
        };
        let next = {
            let mut ops = self.inner.ops.borrow_mut();
            let Some(e) = ops
                .get_mut(self.ud.key())
                .filter(|e| e.gen == self.ud.gen())
            else {
                return Poll::Ready(None);
            };
            let State::Stream(s) = &mut e.state else {
                return Poll::Ready(None);
            };
            let Stream {
                queue,
                waker,
                ended,
            } = &mut **s;
            match queue.pop_front() {
                Some(c) => Some(c),
                None if *ended => None,
                None => {
                    match waker {
                        Some(w) if w.will_wake(cx.waker()) => {}
                        w => *w = Some(cx.waker().clone()),
                    }
                    return Poll::Pending;
                }
            }
        };
        match next {
            Some((res, flags)) => Poll::Ready(Some(op.item(res, flags))),
            None => {
                self.inner.ops.borrow_mut().remove(self.ud.key());
                self.op = None;
                Poll::Ready(None)
            }
        }
    }

    /// Asks the engine to stop the operation; the stream then ends (usually with an
    /// `ECANCELED` item).
    pub fn cancel(&self) {
        if self.op.is_some() {
            self.inner.cancel(self.ud);
        }
    }

    /// True once the final completion has been consumed.
    pub fn is_ended(&self) -> bool {
        self.op.is_none()
    }
}

impl<T: Multishot> Drop for Subscription<T> {
    fn drop(&mut self) {
        let Some(mut op) = self.op.take() else { return };
        let (queued, ended) = {
            let mut ops = self.inner.ops.borrow_mut();
            let Some(e) = ops
                .get_mut(self.ud.key())
                .filter(|e| e.gen == self.ud.gen())
            else {
                return;
            };
            let (queued, ended) = match &mut e.state {
                State::Stream(s) => (std::mem::take(&mut s.queue), s.ended),
                _ => (VecDeque::new(), true),
            };
            if ended {
                ops.remove(self.ud.key());
            }
            (queued, ended)
        };
        // Items delivered but never taken: build and drop them (outside the borrow).
        for (res, flags) in queued {
            drop(op.item(res, flags));
        }
        if !ended {
            if let Some(e) = self.inner.ops.borrow_mut().get_mut(self.ud.key()) {
                e.state = State::Ignored(Box::new(AbandonedStream(op)));
            }
            self.inner.cancel(self.ud);
        }
    }
}

impl<T: Multishot> fmt::Debug for Subscription<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("user_data", &self.ud.to_raw())
            .field("ended", &self.is_ended())
            .finish()
    }
}

/// A [`Cancel`](crate::op::Cancel) of a subscription's operation.
impl<T: Multishot> From<&Subscription<T>> for OpId {
    fn from(s: &Subscription<T>) -> OpId {
        match s.op {
            Some(_) => OpId::new(s.ud),
            None => OpId::NONE,
        }
    }
}

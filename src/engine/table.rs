//! The in-flight table: one entry per operation from submission to its final completion,
//! its lifecycle states, and the dispatch of completions into it.

use std::any::Any;
use std::collections::VecDeque;
use std::task::Waker;

use super::Inner;
use crate::backend::{RawCompletion, CQE_F_MORE};
use crate::op::{Multishot, Op};
use crate::stats::StatsCells;
use crate::user_data::UserData;

/// An operation whose handle is gone, with its final result.
pub(super) type Finished = (Box<dyn Erased>, i32, u32);

/// One in-flight operation's lifecycle state.
pub(crate) struct Entry {
    pub(super) gen: u32,
    pub(super) state: State,
}

pub(super) enum State {
    /// In the engine (pushed or submitted), nobody waiting.
    Pending,
    /// A task waits for it.
    Waiting(Waker),
    /// The final completion arrived.
    Done { res: i32, flags: u32 },
    /// The handle was dropped: the engine owns the operation until its final completion.
    Ignored(Box<dyn Erased>),
    /// A single-shot operation whose result arrived with more to follow (a zero-copy send:
    /// the kernel may still read the buffer until its notification). Done at the final
    /// completion, with this result.
    Partial {
        res: i32,
        flags: u32,
        waker: Option<Waker>,
    },
    /// A multishot operation: its completions so far, in order; `ended` once the final one
    /// (without `IORING_CQE_F_MORE`) arrived.
    Stream {
        queue: VecDeque<(i32, u32)>,
        waker: Option<Waker>,
        ended: bool,
    },
}

/// An operation whose handle is gone, type-erased so the engine can finish it.
pub(crate) trait Erased: Any {
    fn finish(self: Box<Self>, res: i32, flags: u32);

    /// A non-final completion of an abandoned multishot operation: build its item and drop
    /// it (closing an accepted socket, say). Runs inside the engine's dispatch: must not
    /// call back into the engine.
    fn partial(&mut self, _res: i32, _flags: u32) {}
}

/// An abandoned multishot operation: every completion becomes an item that is dropped.
pub(super) struct AbandonedStream<T>(pub(super) T);

impl<T: Multishot> Erased for AbandonedStream<T> {
    fn finish(mut self: Box<Self>, res: i32, flags: u32) {
        drop(self.0.item(res, flags));
    }

    fn partial(&mut self, res: i32, flags: u32) {
        drop(self.0.item(res, flags));
    }
}

impl<T: Op> Erased for T {
    fn finish(self: Box<Self>, res: i32, flags: u32) {
        // Building the output releases what it holds (a descriptor an open returned, a
        // buffer back to its pool).
        drop((*self).complete(res, flags));
    }
}

impl Inner {
    /// A new entry in `state`; its user_data.
    #[inline]
    pub(super) fn insert_with(&self, state: State) -> UserData {
        let gen = self.next_generation();
        let key = self.ops.borrow_mut().insert(Entry { gen, state });
        UserData::new(key, gen)
    }

    /// The generation of the next entry.
    #[inline]
    pub(super) fn next_generation(&self) -> u32 {
        let gen = self.generation.get().wrapping_add(1);
        self.generation.set(gen);
        gen
    }

    /// True when the operation behind `ud` has had its final completion (or is no longer in
    /// the table: its output was taken; or it was never submitted to this engine).
    pub(super) fn has_ended(&self, ud: UserData) -> bool {
        match self.ops.borrow().get(ud.key()) {
            Some(e) if e.gen == ud.gen() => matches!(
                e.state,
                State::Done { .. } | State::Stream { ended: true, .. }
            ),
            _ => true,
        }
    }

    /// Completes an operation that never reached the kernel.
    pub(super) fn complete_now(&self, ud: UserData, res: i32) {
        if let Some(e) = self.ops.borrow_mut().get_mut(ud.key()) {
            match &mut e.state {
                State::Stream { queue, ended, .. } => {
                    queue.push_back((res, 0));
                    *ended = true;
                }
                s => *s = State::Done { res, flags: 0 },
            }
        }
        self.completed_inline.set(self.completed_inline.get() + 1);
        StatsCells::bump(&self.stats.completed);
    }

    /// Moves reaped completions into the table, wakes waiters, finishes ignored operations.
    /// Returns how many final completions were dispatched.
    pub(crate) fn dispatch(&self) -> usize {
        let mut n = 0;
        {
            let mut reaped = self.reaped.borrow_mut();
            self.driver.borrow_mut().drain(&mut reaped);
            if reaped.is_empty() {
                return 0;
            }
            let mut ops = self.ops.borrow_mut();
            let mut wakers = self.wakers.borrow_mut();
            let mut finished = self.finished.borrow_mut();
            for c in reaped.drain(..) {
                n += usize::from(deliver(&mut ops, c, &mut wakers, &mut finished));
            }
        }
        self.stats
            .completed
            .set(self.stats.completed.get() + n as u64);
        // Wake and finish outside every borrow: a waker or a drop may call back in.
        let mut wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        for w in wakers.drain(..) {
            w.wake();
        }
        *self.wakers.borrow_mut() = wakers;
        loop {
            let next = self.finished.borrow_mut().pop();
            match next {
                Some((op, res, flags)) => op.finish(res, flags),
                None => break,
            }
        }
        n
    }
}

/// Moves one completion into its entry: true when it was the operation's final one. A waker
/// to wake goes to `wakers`; an abandoned operation that ended goes to `finished`, out of the
/// table.
fn deliver(
    ops: &mut slab::Slab<Entry>,
    (ud, res, flags): RawCompletion,
    wakers: &mut Vec<Waker>,
    finished: &mut Vec<Finished>,
) -> bool {
    if ud.is_internal() {
        return false;
    }
    let Some(entry) = ops.get_mut(ud.key()).filter(|e| e.gen == ud.gen()) else {
        return false;
    };
    let more = flags & CQE_F_MORE != 0;
    match &mut entry.state {
        State::Stream {
            queue,
            waker,
            ended,
        } => {
            queue.push_back((res, flags));
            if !more {
                *ended = true;
            }
            if let Some(w) = waker.take() {
                wakers.push(w);
            }
            return !more;
        }
        State::Ignored(op) if more => {
            op.partial(res, flags);
            return false;
        }
        State::Pending if more => {
            entry.state = State::Partial {
                res,
                flags,
                waker: None,
            };
            return false;
        }
        State::Waiting(w) if more => {
            let waker = Some(w.clone());
            entry.state = State::Partial { res, flags, waker };
            return false;
        }
        _ => {}
    }
    // The result of an operation that completed in two steps is the first one's.
    let (res, flags) = match entry.state {
        State::Partial { res, flags, .. } => (res, flags),
        _ => (res, flags),
    };
    match std::mem::replace(&mut entry.state, State::Done { res, flags }) {
        State::Waiting(w) | State::Partial { waker: Some(w), .. } => wakers.push(w),
        State::Ignored(op) => {
            ops.remove(ud.key());
            finished.push((op, res, flags));
        }
        State::Pending
        | State::Done { .. }
        | State::Stream { .. }
        | State::Partial { waker: None, .. } => {}
    }
    true
}

//! The in-flight table: one entry per operation from submission to its final completion,
//! its lifecycle states, and the dispatch of completions into it.

use std::any::Any;
use std::collections::VecDeque;
use std::task::Waker;

use super::Inner;
use crate::backend::{RawCompletion, CQE_F_MORE};
use crate::op::{Multishot, Op};
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
    /// A multishot operation (boxed: rare, and the table's entries stay small).
    Stream(Box<Stream>),
    /// A free slot of the table (never seen outside it): the next free slot's key.
    Vacant(usize),
}

/// A multishot operation's completions so far, in order; `ended` once the final one (without
/// `IORING_CQE_F_MORE`) arrived.
#[derive(Default)]
pub(super) struct Stream {
    pub(super) queue: VecDeque<(i32, u32)>,
    pub(super) waker: Option<Waker>,
    pub(super) ended: bool,
}

/// The entries by key, with a free list through the vacant ones (the shape of the `slab`
/// crate, whose out-of-line `insert_at` took each new entry by value: built on the stack and
/// loaded back at once, a store-forwarding stall on every submission). Here an insert writes
/// the generation and the state's tag in place.
#[derive(Default)]
pub(super) struct Table {
    slots: Vec<Entry>,
    /// The first vacant slot (`slots.len()` when none).
    next: usize,
    len: usize,
}

impl Table {
    pub(super) fn with_capacity(n: usize) -> Table {
        Table {
            slots: Vec::with_capacity(n),
            next: 0,
            len: 0,
        }
    }

    /// Entries in the table.
    #[inline]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The key the next insert takes.
    #[inline]
    pub(super) fn vacant_key(&self) -> usize {
        self.next
    }

    /// Inserts an entry at [`vacant_key`](Self::vacant_key) in `state`; returns that key.
    #[inline]
    pub(super) fn insert(&mut self, gen: u32, state: State) -> usize {
        let key = self.insert_pending(gen);
        self.slots[key].state = state;
        key
    }

    /// Inserts a [`State::Pending`] entry, the submission's hot path: the generation and the
    /// tag are written in place (an entry moved in by value is built on the stack and loaded
    /// back at once, a store-forwarding stall).
    #[inline(always)]
    pub(super) fn insert_pending(&mut self, gen: u32) -> usize {
        let key = self.next;
        match self.slots.get_mut(key) {
            Some(slot) => {
                let State::Vacant(next) = slot.state else {
                    unreachable!("the free list names an occupied slot");
                };
                self.next = next;
                slot.gen = gen;
                // A vacant state owns nothing: no drop glue to run.
                std::mem::forget(std::mem::replace(&mut slot.state, State::Pending));
            }
            None => {
                self.slots.push(Entry {
                    gen,
                    state: State::Pending,
                });
                self.next = self.slots.len();
            }
        }
        self.len += 1;
        key
    }

    #[inline]
    pub(super) fn get(&self, key: usize) -> Option<&Entry> {
        self.slots
            .get(key)
            .filter(|e| !matches!(e.state, State::Vacant(_)))
    }

    #[inline]
    pub(super) fn get_mut(&mut self, key: usize) -> Option<&mut Entry> {
        self.slots
            .get_mut(key)
            .filter(|e| !matches!(e.state, State::Vacant(_)))
    }

    /// Removes the entry at `key`, if any; returns its state.
    #[inline]
    pub(super) fn remove(&mut self, key: usize) -> Option<State> {
        let next = self.next;
        let e = self.get_mut(key)?;
        let state = std::mem::replace(&mut e.state, State::Vacant(next));
        self.next = key;
        self.len -= 1;
        Some(state)
    }

    /// The entries with their keys.
    pub(super) fn iter(&self) -> impl Iterator<Item = (usize, &Entry)> {
        (self.slots.iter().enumerate()).filter(|(_, e)| !matches!(e.state, State::Vacant(_)))
    }

    /// Takes every entry's state out, leaving the table empty.
    pub(super) fn take_all(&mut self) -> impl Iterator<Item = State> {
        let slots = std::mem::take(&mut self.slots);
        self.next = 0;
        self.len = 0;
        (slots.into_iter().map(|e| e.state)).filter(|s| !matches!(s, State::Vacant(_)))
    }
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
        let key = self.ops.borrow_mut().insert(gen, state);
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
            Some(e) if e.gen == ud.gen() => match &e.state {
                State::Done { .. } => true,
                State::Stream(s) => s.ended,
                _ => false,
            },
            _ => true,
        }
    }

    /// Completes an operation that never reached the kernel, as its completion from the
    /// kernel would: a waiting task is woken, an abandoned operation finished and removed.
    pub(super) fn complete_now(&self, ud: UserData, res: i32) {
        self.reaped.borrow_mut().push((ud, res, 0));
        self.dispatch_now();
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
        if !self.wakers.borrow().is_empty() {
            let mut wakers = std::mem::take(&mut *self.wakers.borrow_mut());
            for w in wakers.drain(..) {
                w.wake();
            }
            *self.wakers.borrow_mut() = wakers;
        }
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
#[inline]
fn deliver(
    ops: &mut Table,
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
    match entry.state {
        State::Stream(_) => return deliver_more(entry, res, flags, wakers),
        State::Pending | State::Waiting(_) | State::Ignored(_) if more => {
            return deliver_more(entry, res, flags, wakers)
        }
        // Anything else is final (a second "more" after a partial result ends it too).
        _ => {}
    }
    // The final completion of a single-shot operation (the common case).
    match std::mem::replace(&mut entry.state, State::Done { res, flags }) {
        State::Waiting(w) => wakers.push(w),
        // The result of an operation that completed in two steps is the first one's.
        State::Partial { res, flags, waker } => {
            entry.state = State::Done { res, flags };
            wakers.extend(waker);
        }
        State::Ignored(op) => {
            ops.remove(ud.key());
            finished.push((op, res, flags));
        }
        State::Pending | State::Done { .. } | State::Stream(_) | State::Vacant(_) => {}
    }
    true
}

/// A multishot operation's completion, or a single-shot one's with more to follow (a
/// zero-copy send's result before its notification): true when it was the final one.
fn deliver_more(entry: &mut Entry, res: i32, flags: u32, wakers: &mut Vec<Waker>) -> bool {
    let more = flags & CQE_F_MORE != 0;
    match &mut entry.state {
        State::Stream(s) => {
            s.queue.push_back((res, flags));
            if !more {
                s.ended = true;
            }
            wakers.extend(s.waker.take());
            !more
        }
        State::Ignored(op) => {
            op.partial(res, flags);
            false
        }
        State::Pending => {
            entry.state = State::Partial {
                res,
                flags,
                waker: None,
            };
            false
        }
        State::Waiting(w) => {
            let waker = Some(w.clone());
            entry.state = State::Partial { res, flags, waker };
            false
        }
        // Not sent here: `deliver` finishes these.
        State::Partial { .. } | State::Done { .. } | State::Vacant(_) => true,
    }
}

//! The runtime's timers: a heap of deadlines in user space. The engine's wait takes the nearest
//! one as its timeout, so a timer costs no system call of its own, and one cancelled before its
//! deadline (an I/O timeout that did not fire, the usual case) costs nothing in the kernel.
//! An io_uring `TIMEOUT` per timer would cost a submission, an hrtimer, a cancel and two
//! completions instead.
//!
//! Removal is lazy: a cancelled timer's heap entry stays until it reaches the top or the heap
//! is rebuilt, which happens once stale entries outnumber live ones by far (a server re-arms
//! an idle timeout per request, each good for seconds).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::task::Waker;
use std::time::Instant;

use slab::Slab;

/// A registered timer: its slot and the generation that slot had when it was registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimerKey {
    slot: usize,
    gen: u64,
}

struct Entry {
    gen: u64,
    deadline: Instant,
    waker: Option<Waker>,
    fired: bool,
}

#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    entries: Slab<Entry>,
    next_gen: u64,
}

impl Timers {
    /// Heap entries allowed beyond twice the live timers before a rebuild.
    const SLACK: usize = 1024;

    pub(crate) fn insert(&mut self, deadline: Instant, waker: Waker) -> TimerKey {
        self.next_gen = self.next_gen.wrapping_add(1);
        let gen = self.next_gen;
        let slot = self.entries.insert(Entry {
            gen,
            deadline,
            waker: Some(waker),
            fired: false,
        });
        self.heap.push(Reverse((deadline, slot, gen)));
        if self.heap.len() > 2 * self.entries.len() + Self::SLACK {
            self.rebuild();
        }
        TimerKey { slot, gen }
    }

    fn entry(&mut self, key: TimerKey) -> Option<&mut Entry> {
        self.entries.get_mut(key.slot).filter(|e| e.gen == key.gen)
    }

    /// True once the timer's deadline has passed (it was fired); otherwise keeps `waker` to
    /// wake then.
    pub(crate) fn poll(&mut self, key: TimerKey, waker: &Waker) -> bool {
        match self.entry(key) {
            Some(e) if e.fired => true,
            Some(e) => {
                match &mut e.waker {
                    Some(w) if w.will_wake(waker) => {}
                    w => *w = Some(waker.clone()),
                }
                false
            }
            // Not ours any more: treat as fired rather than wait forever.
            None => true,
        }
    }

    pub(crate) fn remove(&mut self, key: TimerKey) {
        if self.entry(key).is_some() {
            self.entries.remove(key.slot);
        }
    }

    /// Fires every timer whose deadline is at or before `now` into `wake`; returns the next
    /// deadline still pending.
    pub(crate) fn fire(&mut self, now: Instant, wake: &mut Vec<Waker>) -> Option<Instant> {
        while let Some(&Reverse((deadline, slot, gen))) = self.heap.peek() {
            let live = self
                .entries
                .get(slot)
                .is_some_and(|e| e.gen == gen && !e.fired);
            if !live {
                self.heap.pop();
                continue;
            }
            if deadline > now {
                return Some(deadline);
            }
            self.heap.pop();
            if let Some(e) = self.entries.get_mut(slot) {
                e.fired = true;
                wake.extend(e.waker.take());
            }
        }
        None
    }

    /// True when no timer is registered (fired ones not yet dropped count).
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn rebuild(&mut self) {
        self.heap = self
            .entries
            .iter()
            .filter(|(_, e)| !e.fired)
            .map(|(slot, e)| Reverse((e.deadline, slot, e.gen)))
            .collect();
    }

    #[cfg(test)]
    fn heap_len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;
    use std::time::Duration;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn fires_in_deadline_order_and_skips_removed() {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        let w = Waker::from(c.clone());
        let mut t = Timers::default();
        let t0 = Instant::now();
        let a = t.insert(t0 + Duration::from_millis(30), w.clone());
        let b = t.insert(t0 + Duration::from_millis(10), w.clone());
        let gone = t.insert(t0 + Duration::from_millis(5), w.clone());
        t.remove(gone);
        let mut wake = Vec::new();
        assert_eq!(t.fire(t0, &mut wake), Some(t0 + Duration::from_millis(10)));
        assert!(wake.is_empty());
        assert_eq!(
            t.fire(t0 + Duration::from_millis(10), &mut wake),
            Some(t0 + Duration::from_millis(30))
        );
        assert_eq!(wake.len(), 1);
        assert!(t.poll(b, &w));
        assert!(!t.poll(a, &w));
        wake.clear();
        assert_eq!(t.fire(t0 + Duration::from_secs(1), &mut wake), None);
        assert_eq!(wake.len(), 1);
        assert!(t.poll(a, &w));
        t.remove(a);
        t.remove(b);
        assert!(t.is_empty());
    }

    #[test]
    fn a_removed_key_is_not_confused_with_its_slot_reused() {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        let w = Waker::from(c);
        let mut t = Timers::default();
        let far = Instant::now() + Duration::from_secs(60);
        let old = t.insert(far, w.clone());
        t.remove(old);
        let new = t.insert(far, w.clone());
        assert_eq!(old.slot, new.slot);
        t.remove(old); // stale: must not remove `new`
        assert!(!t.poll(new, &w));
        assert!(!t.is_empty());
    }

    #[test]
    fn stale_entries_do_not_pile_up() {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        let w = Waker::from(c);
        let mut t = Timers::default();
        let far = Instant::now() + Duration::from_secs(60);
        let keep = t.insert(far, w.clone());
        for _ in 0..100_000 {
            let k = t.insert(far, w.clone());
            t.remove(k);
        }
        assert!(t.heap_len() <= 2 + Timers::SLACK + 1, "{}", t.heap_len());
        assert!(!t.poll(keep, &w));
    }
}

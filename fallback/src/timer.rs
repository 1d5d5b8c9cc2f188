//! A deadline-ordered timer queue with cancellation.
//!
//! [`TimerHeap`] stores values in a slab (a `Vec` of slots with generation
//! counters, reused through a free list) and orders them with a binary heap of
//! `(deadline, sequence)` keys. Cancellation frees the slot immediately and
//! leaves the heap entry behind as a *stale* entry, which is skipped lazily.
//! When stale entries outnumber live ones the heap is compacted, so memory
//! stays proportional to the peak number of live timers no matter how often
//! timers are inserted and cancelled.
//!
//! Costs: `insert` O(log n), `cancel` O(1) amortized (plus O(log n) per stale
//! entry removed from the top), `pop_expired` O(log n) amortized,
//! `next_deadline` O(1).

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::fmt;
use std::time::Instant;

/// Identifies a timer in a [`TimerHeap`].
///
/// Ids are never confused with each other: once a timer fired or was
/// cancelled its id is stale, and a stale id never matches a timer inserted
/// later, even if that timer reuses the same internal slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId {
    index: usize,
    generation: u64,
}

struct Slot<T> {
    /// Incremented every time the slot is vacated.
    generation: u64,
    value: Option<T>,
}

struct Entry {
    deadline: Instant,
    seq: u64,
    index: usize,
    generation: u64,
}

impl Entry {
    fn key(&self) -> (Instant, u64) {
        (self.deadline, self.seq)
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Entry) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Entry) -> Ordering {
        self.key().cmp(&other.key())
    }
}

/// A queue of values ordered by deadline.
///
/// Timers with equal deadlines fire in insertion order.
///
/// ```
/// use std::time::{Duration, Instant};
/// use trueio_fallback::TimerHeap;
///
/// let now = Instant::now();
/// let mut timers = TimerHeap::new();
/// let a = timers.insert(now + Duration::from_millis(20), "a");
/// let _b = timers.insert(now + Duration::from_millis(10), "b");
/// assert_eq!(timers.cancel(a), Some("a"));
/// assert_eq!(timers.cancel(a), None); // stale id
///
/// assert_eq!(timers.next_deadline(), Some(now + Duration::from_millis(10)));
/// assert!(timers.pop_expired(now).is_none());
/// let later = now + Duration::from_millis(30);
/// while let Some((_id, value)) = timers.pop_expired(later) {
///     assert_eq!(value, "b");
/// }
/// assert!(timers.is_empty());
/// ```
pub struct TimerHeap<T> {
    heap: BinaryHeap<Reverse<Entry>>,
    slots: Vec<Slot<T>>,
    free: Vec<usize>,
    next_seq: u64,
    len: usize,
    stale: usize,
}

impl<T> TimerHeap<T> {
    /// Creates an empty timer heap.
    pub fn new() -> TimerHeap<T> {
        TimerHeap::with_capacity(0)
    }

    /// Creates an empty timer heap with room for `capacity` timers.
    pub fn with_capacity(capacity: usize) -> TimerHeap<T> {
        TimerHeap {
            heap: BinaryHeap::with_capacity(capacity),
            slots: Vec::with_capacity(capacity),
            free: Vec::new(),
            next_seq: 0,
            len: 0,
            stale: 0,
        }
    }

    /// Adds a timer that expires at `deadline`.
    ///
    /// A deadline in the past is fine: the timer is expired immediately.
    pub fn insert(&mut self, deadline: Instant, value: T) -> TimerId {
        let index = match self.free.pop() {
            Some(index) => {
                self.slots[index].value = Some(value);
                index
            }
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    value: Some(value),
                });
                self.slots.len() - 1
            }
        };
        let generation = self.slots[index].generation;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Reverse(Entry {
            deadline,
            seq,
            index,
            generation,
        }));
        self.len += 1;
        TimerId { index, generation }
    }

    /// Cancels a pending timer and returns its value.
    ///
    /// Returns `None` if the timer already fired or was cancelled.
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        let slot = self.slots.get_mut(id.index)?;
        if slot.generation != id.generation {
            return None;
        }
        let value = self.vacate(id.index)?;
        self.stale += 1;
        self.prune_top();
        self.maybe_compact();
        Some(value)
    }

    /// Whether `id` refers to a pending timer.
    pub fn contains(&self, id: TimerId) -> bool {
        self.slots
            .get(id.index)
            .is_some_and(|s| s.generation == id.generation && s.value.is_some())
    }

    /// The earliest deadline among pending timers, if any.
    ///
    /// Use it as the poller timeout (`deadline - now`, saturating at zero).
    pub fn next_deadline(&self) -> Option<Instant> {
        // `prune_top` keeps the top of the heap live at all times.
        self.heap.peek().map(|Reverse(e)| e.deadline)
    }

    /// Removes and returns one timer whose deadline is `<= now`, earliest
    /// first. Call in a loop until it returns `None`.
    pub fn pop_expired(&mut self, now: Instant) -> Option<(TimerId, T)> {
        let top = match self.heap.peek() {
            Some(Reverse(e)) if e.deadline <= now => e,
            _ => return None,
        };
        let id = TimerId {
            index: top.index,
            generation: top.generation,
        };
        self.heap.pop();
        let value = self.vacate(id.index);
        self.prune_top();
        self.maybe_compact();
        // The top is always live, so `value` is `Some`.
        value.map(|v| (id, v))
    }

    /// The number of pending timers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no pending timers.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Internal sizes for tests: `(heap entries including stale ones, slots)`.
    #[doc(hidden)]
    pub fn internal_sizes(&self) -> (usize, usize) {
        (self.heap.len(), self.slots.len())
    }

    /// Takes the value out of slot `index`, bumps its generation and puts the
    /// slot on the free list.
    fn vacate(&mut self, index: usize) -> Option<T> {
        let slot = &mut self.slots[index];
        let value = slot.value.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(index);
        self.len -= 1;
        Some(value)
    }

    fn is_live(&self, e: &Entry) -> bool {
        self.slots[e.index].generation == e.generation
    }

    /// Pops stale entries off the top so that the top is live (or the heap is
    /// empty).
    fn prune_top(&mut self) {
        while let Some(Reverse(top)) = self.heap.peek() {
            if self.is_live(top) {
                break;
            }
            self.heap.pop();
            self.stale -= 1;
        }
    }

    /// Keeps stale entries at most half of the heap. Each compaction costs
    /// O(heap) = O(stale), paid for by the cancellations that made them.
    fn maybe_compact(&mut self) {
        if self.stale > self.len {
            self.compact();
        }
    }

    /// Drops every stale entry from the heap.
    fn compact(&mut self) {
        let slots = &self.slots;
        self.heap
            .retain(|Reverse(e)| slots[e.index].generation == e.generation);
        self.stale = 0;
        // Keep memory proportional to the live set after a burst.
        if self.heap.capacity() > 4 * self.heap.len().max(16) {
            self.heap.shrink_to(2 * self.heap.len());
        }
    }
}

impl<T> Default for TimerHeap<T> {
    fn default() -> TimerHeap<T> {
        TimerHeap::new()
    }
}

impl<T> fmt::Debug for TimerHeap<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerHeap")
            .field("len", &self.len)
            .field("next_deadline", &self.next_deadline())
            .finish_non_exhaustive()
    }
}

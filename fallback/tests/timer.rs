//! Integration tests for `TimerHeap`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use trueio_fallback::{TimerHeap, TimerId};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn pop_all<T>(t: &mut TimerHeap<T>, now: Instant) -> Vec<T> {
    let mut out = Vec::new();
    while let Some((_, v)) = t.pop_expired(now) {
        out.push(v);
    }
    out
}

#[test]
fn fires_in_deadline_order() {
    let base = Instant::now();
    let mut t = TimerHeap::new();
    for (d, v) in [(30, "c"), (10, "a"), (20, "b"), (40, "d")] {
        t.insert(base + ms(d), v);
    }
    assert_eq!(t.len(), 4);
    assert_eq!(t.next_deadline(), Some(base + ms(10)));
    assert!(t.pop_expired(base).is_none());
    assert_eq!(pop_all(&mut t, base + ms(25)), ["a", "b"]);
    assert_eq!(t.next_deadline(), Some(base + ms(30)));
    assert_eq!(pop_all(&mut t, base + ms(100)), ["c", "d"]);
    assert!(t.is_empty());
    assert_eq!(t.next_deadline(), None);
    assert!(t.pop_expired(base + ms(1000)).is_none());
}

#[test]
fn deadline_equal_to_now_is_expired() {
    let base = Instant::now();
    let mut t = TimerHeap::new();
    t.insert(base, 1);
    assert_eq!(pop_all(&mut t, base), [1]);
}

#[test]
fn equal_deadlines_fire_in_insertion_order() {
    let base = Instant::now();
    let mut t = TimerHeap::new();
    for i in 0..100 {
        t.insert(base + ms(5), i);
    }
    // Interleave other deadlines and slot reuse.
    let x = t.insert(base + ms(1), -1);
    t.cancel(x);
    for i in 100..150 {
        t.insert(base + ms(5), i);
    }
    assert_eq!(pop_all(&mut t, base + ms(5)), (0..150).collect::<Vec<_>>());
}

#[test]
fn cancel_returns_value_and_is_skipped() {
    let base = Instant::now();
    let mut t = TimerHeap::new();
    let a = t.insert(base + ms(10), "a");
    let b = t.insert(base + ms(20), "b");
    let c = t.insert(base + ms(30), "c");
    assert!(t.contains(a));
    assert_eq!(t.cancel(a), Some("a"));
    assert!(!t.contains(a));
    assert_eq!(t.len(), 2);
    // The earliest deadline skips the cancelled timer.
    assert_eq!(t.next_deadline(), Some(base + ms(20)));
    assert_eq!(t.cancel(c), Some("c"));
    assert_eq!(pop_all(&mut t, base + ms(100)), ["b"]);
    assert!(!t.contains(b));
    assert_eq!(t.next_deadline(), None);
}

#[test]
fn stale_ids_never_cancel_other_timers() {
    let base = Instant::now();
    let mut t = TimerHeap::new();
    let a = t.insert(base, "a");
    let (fired, v) = t.pop_expired(base).unwrap();
    assert_eq!((fired, v), (a, "a"));
    assert_eq!(t.cancel(a), None);

    // The new timer reuses a's slot; a's id must not match it.
    let b = t.insert(base + ms(10), "b");
    assert_ne!(a, b);
    assert_eq!(t.cancel(a), None);
    assert!(t.contains(b));
    assert_eq!(t.cancel(b), Some("b"));
    assert_eq!(t.cancel(b), None);

    let c = t.insert(base + ms(10), "c");
    assert_eq!(t.cancel(b), None);
    assert_eq!(t.cancel(a), None);
    assert_eq!(t.len(), 1);
    assert_eq!(t.cancel(c), Some("c"));

    // Ids from another heap with out-of-range slots are simply unknown.
    let mut big = TimerHeap::new();
    let ids: Vec<TimerId> = (0..10).map(|i| big.insert(base, i)).collect();
    assert_eq!(t.cancel(ids[9]), None);
}

#[test]
fn ids_are_unique_among_live_timers() {
    let base = Instant::now();
    let mut t = TimerHeap::new();
    let mut seen = HashSet::new();
    for i in 0..1000u64 {
        let id = t.insert(base + ms(i % 7), i);
        assert!(seen.insert(id));
        if i % 3 == 0 {
            t.cancel(id);
        }
    }
}

#[test]
fn repeated_insert_cancel_does_not_grow() {
    let base = Instant::now();
    let mut t = TimerHeap::new();
    // A few long-lived timers that stay at the top of the heap, so cancelled
    // entries further down are not pruned from the top.
    let keep: Vec<TimerId> = (0..8).map(|i| t.insert(base + ms(i), i)).collect();
    for i in 0..100_000u64 {
        let id = t.insert(base + ms(1_000 + i % 1000), 1_000 + i);
        assert_eq!(t.cancel(id), Some(1_000 + i));
        let (heap, slots) = t.internal_sizes();
        assert!(heap <= 2 * t.len() + 1, "heap grew to {heap} at {i}");
        assert!(slots <= 9, "slots grew to {slots}");
    }
    // Cancelling the heads too.
    for i in 0..100_000u64 {
        let id = t.insert(base, i);
        t.cancel(id);
    }
    let (heap, slots) = t.internal_sizes();
    assert!(heap <= 17 && slots <= 9, "{heap} {slots}");
    assert_eq!(t.len(), 8);
    for id in keep {
        assert!(t.contains(id));
    }
    assert_eq!(pop_all(&mut t, base + ms(10)), (0..8).collect::<Vec<_>>());
    assert_eq!(t.internal_sizes().0, 0);
}

#[test]
fn interleaved_model_check() {
    // Compare against a simple sorted model with a deterministic PRNG.
    let base = Instant::now();
    let mut t = TimerHeap::new();
    let mut model: Vec<(u64, u64, TimerId)> = Vec::new(); // (deadline ms, seq, id)
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut now_ms = 0u64;
    for seq in 0..20_000u64 {
        match rand() % 4 {
            0 | 1 => {
                let d = now_ms + rand() % 50;
                let id = t.insert(base + ms(d), seq);
                model.push((d, seq, id));
            }
            2 if !model.is_empty() => {
                let i = (rand() as usize) % model.len();
                let (_, v, id) = model.swap_remove(i);
                assert_eq!(t.cancel(id), Some(v));
                assert_eq!(t.cancel(id), None);
            }
            _ => {
                now_ms += rand() % 10;
                model.sort_unstable_by_key(|e| (e.0, e.1));
                let n = model.iter().take_while(|e| e.0 <= now_ms).count();
                let expected: Vec<(TimerId, u64)> =
                    model.drain(..n).map(|(_, v, id)| (id, v)).collect();
                let mut got = Vec::new();
                while let Some(x) = t.pop_expired(base + ms(now_ms)) {
                    got.push(x);
                }
                assert_eq!(got, expected);
            }
        }
        assert_eq!(t.len(), model.len());
        let min = model.iter().map(|e| e.0).min();
        assert_eq!(t.next_deadline(), min.map(|d| base + ms(d)));
        let (heap, _) = t.internal_sizes();
        assert!(heap <= 2 * t.len() + 1);
    }
}

#[test]
fn default_and_debug() {
    let mut t: TimerHeap<String> = TimerHeap::default();
    assert!(t.is_empty());
    t.insert(Instant::now(), String::from("x"));
    let s = format!("{t:?}");
    assert!(s.contains("len: 1"), "{s}");
    let _ = TimerHeap::<()>::with_capacity(16);
}

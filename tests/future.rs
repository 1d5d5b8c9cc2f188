//! A `Ticket` is a `Future`: polled before its completion it registers the task's waker,
//! the engine wakes that waker when the completion is dispatched, and the next poll gives the
//! output (the result and the buffer).

mod util;

use std::future::Future;
use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use trueio::op;

struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

both_backends! {
    fn ticket_as_future_is_woken_by_its_completion(b: Builder) {
        let engine = b.build().unwrap();
        let (rx, tx) = util::pipe(true);
        let mut ticket = engine.submit(op::Read::stream(rx.as_raw_fd(), vec![0u8; 16]));

        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);

        // Nothing to read yet: pending, and not woken by a turn without a completion.
        assert!(Pin::new(&mut ticket).poll(&mut cx).is_pending());
        engine.turn(Some(Duration::from_millis(20))).unwrap();
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            0,
            "woken without a completion"
        );
        assert!(Pin::new(&mut ticket).poll(&mut cx).is_pending());

        // Data arrives: the engine's dispatch wakes the registered waker.
        std::fs::File::from(tx).write_all(b"future").unwrap();
        let woken = util::drive_until(&engine, util::LIMIT, || {
            counter.0.load(Ordering::SeqCst) > 0
        });
        assert!(woken, "the waker was never woken");
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "woken exactly once");

        match Pin::new(&mut ticket).poll(&mut cx) {
            Poll::Ready((n, buf)) => {
                assert_eq!(n.unwrap(), 6);
                assert_eq!(&buf[..6], b"future");
            }
            Poll::Pending => panic!("woken but still pending"),
        }
        assert_eq!(engine.in_flight(), 0);
    }

    fn polling_with_a_new_waker_replaces_the_old_one(b: Builder) {
        let engine = b.build().unwrap();
        let (rx, tx) = util::pipe(true);
        let mut ticket = engine.submit(op::Read::stream(rx.as_raw_fd(), vec![0u8; 4]));
        let first = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let second = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let w1 = Waker::from(first.clone());
        let w2 = Waker::from(second.clone());
        assert!(Pin::new(&mut ticket)
            .poll(&mut Context::from_waker(&w1))
            .is_pending());
        assert!(Pin::new(&mut ticket)
            .poll(&mut Context::from_waker(&w2))
            .is_pending());
        std::fs::File::from(tx).write_all(b"x").unwrap();
        let woken = util::drive_until(&engine, util::LIMIT, || second.0.load(Ordering::SeqCst) > 0);
        assert!(woken, "the latest waker was never woken");
        assert_eq!(
            first.0.load(Ordering::SeqCst),
            0,
            "a replaced waker was woken"
        );
        match Pin::new(&mut ticket).poll(&mut Context::from_waker(&w2)) {
            Poll::Ready((n, buf)) => {
                assert_eq!(n.unwrap(), 1);
                assert_eq!(&buf[..1], b"x");
            }
            Poll::Pending => panic!("woken but still pending"),
        }
    }
}

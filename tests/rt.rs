//! The async layer: executor, timers and files, on both backends.

mod util;

use std::future::Future;
use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use trueio::fs::File;
use trueio::rt::{self, Runtime};
use trueio::time::{self, Deadline};
use trueio::{op, Builder};

fn runtime(b: Builder) -> Runtime {
    Runtime::with_builder(b).expect("runtime")
}

/// Completes once another thread sets it: proves remote wake-ups reach a sleeping runtime.
#[derive(Default)]
struct Signal {
    state: Mutex<(bool, Option<Waker>)>,
}

impl Signal {
    fn set(&self) {
        let mut s = self.state.lock().unwrap();
        s.0 = true;
        if let Some(w) = s.1.take() {
            w.wake();
        }
    }
}

struct Wait(Arc<Signal>);

impl Future for Wait {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.0.state.lock().unwrap();
        if s.0 {
            Poll::Ready(())
        } else {
            s.1 = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

both_backends! {
    fn spawned_tasks_run_and_join(b: Builder) {
        let rt = runtime(b);
        let total = rt.block_on(async {
            let handles: Vec<_> = (0..100u64).map(|i| rt::spawn(async move { i * 2 })).collect();
            let mut total = 0;
            for h in handles {
                total += h.await.expect("no panic");
            }
            total
        });
        assert_eq!(total, 9900);
    }

    fn a_panicking_task_gives_err_and_the_runtime_goes_on(b: Builder) {
        let rt = runtime(b);
        let (bad, good) = rt.block_on(async {
            let bad = rt::spawn(async { panic!("task failure on purpose") });
            let good = rt::spawn(async { 7 });
            (bad.await, good.await)
        });
        let payload = bad.expect_err("the panic is reported");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"task failure on purpose"));
        assert_eq!(good.unwrap(), 7);
    }

    fn a_wake_from_another_thread_ends_the_engine_wait(b: Builder) {
        let _watchdog = util::Watchdog::arm("remote wake-up", Duration::from_secs(20));
        let rt = runtime(b);
        let signal = Arc::new(Signal::default());
        let s2 = signal.clone();
        // Before the thread starts: its 50 ms must not begin before the measurement does.
        let start = Instant::now();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            s2.set();
        });
        rt.block_on(Wait(signal));
        assert!(start.elapsed() >= Duration::from_millis(50));
        t.join().unwrap();
    }

    fn sleep_waits_at_least_its_duration(b: Builder) {
        let rt = runtime(b);
        rt.block_on(async {
            let start = Instant::now();
            time::sleep(Duration::from_millis(30)).await;
            let took = start.elapsed();
            assert!(took >= Duration::from_millis(30), "{took:?}");
            assert!(took < Duration::from_secs(5), "{took:?}");
        });
    }

    /// Timers of tasks fire in deadline order, whatever order they were set in, and a runtime
    /// with nothing but timers sleeps in the engine until the next one.
    fn timers_fire_in_deadline_order(b: Builder) {
        let rt = runtime(b);
        let order = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let start = Instant::now();
        rt.block_on(async {
            let tasks: Vec<_> = [40u64, 10, 30, 20]
                .into_iter()
                .map(|ms| {
                    let order = order.clone();
                    rt::spawn(async move {
                        time::sleep(Duration::from_millis(ms)).await;
                        order.borrow_mut().push(ms);
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        });
        assert_eq!(*order.borrow(), vec![10, 20, 30, 40]);
        assert!(start.elapsed() >= Duration::from_millis(40));
    }

    /// A timeout around work that finishes in time costs the engine nothing: the timers live
    /// in the runtime, and the engine's wait only takes the nearest deadline as its timeout.
    fn timeouts_that_do_not_fire_submit_nothing(b: Builder) {
        let rt = runtime(b);
        rt.block_on(async {
            let engine = rt::engine();
            time::sleep(Duration::from_millis(1)).await; // settle the runtime's own read
            let before = engine.stats();
            for _ in 0..1000 {
                // Pending once, then ready: the timer is registered and then dropped.
                let r = time::timeout(Duration::from_secs(30), rt::yield_now()).await;
                assert!(r.is_ok());
            }
            let st = engine.stats().since(&before);
            assert!(st.submitted < 10, "timeouts went to the engine: {st:?}");
        });
    }

    /// A runtime with a far timer waits with a timeout on every turn. Where io_uring has no
    /// timed wait (`EXT_ARG`, 5.11; the `uring_no_ext_arg` variant), each such wait used to
    /// leave one internal `TIMEOUT` in the kernel until it expired: thousands for a server
    /// with idle timeouts. Now one stays pending, and later waits reuse it.
    fn timed_waits_do_not_pile_up_kernel_timeouts(b: Builder) {
        let rt = runtime(b);
        let (rx, tx) = util::pipe(true);
        rt.block_on(async {
            let engine = rt::engine();
            let far = rt::spawn(time::sleep(Duration::from_secs(30)));
            rt::yield_now().await; // let it register its timer
            let before = engine.stats();
            for i in 0..200u8 {
                // Each read waits in the engine (a timed wait: the 30 s timer is pending)
                // until the write lands.
                let read = engine.submit(op::Read::stream(rx.as_raw_fd(), vec![0u8; 1]));
                std::fs::File::from(tx.try_clone().unwrap()).write_all(&[i]).unwrap();
                let (n, _) = read.await;
                assert_eq!(n.unwrap(), 1);
            }
            let st = engine.stats().since(&before);
            assert!(st.wait_timeouts <= 2, "internal timeouts pushed: {st:?}");
            drop(far);
        });
    }

    /// A dropped timer does not fire into anything, and one due while tasks stay busy still
    /// fires (the runtime checks the timers between batches of tasks, not only when idle).
    fn a_timer_fires_while_other_tasks_stay_busy(b: Builder) {
        let _watchdog = util::Watchdog::arm("a timer among busy tasks", Duration::from_secs(20));
        let rt = runtime(b);
        let fired = rt.block_on(async {
            // Registered, then dropped: its deadline comes and goes with nobody waiting. The
            // deadline is set inside the first poll, and under qemu's TCG 1 ms can pass before
            // that same poll checks it; only then may the poll be ready, and the test retries.
            loop {
                let start = Instant::now();
                let mut early = Box::pin(time::sleep(Duration::from_millis(1)));
                let registered =
                    std::future::poll_fn(|cx| Poll::Ready(early.as_mut().poll(cx).is_pending()))
                        .await;
                if registered {
                    drop(early);
                    break;
                }
                assert!(
                    start.elapsed() >= Duration::from_millis(1),
                    "a 1 ms sleep was ready after {:?}",
                    start.elapsed()
                );
            }
            let stop = std::rc::Rc::new(std::cell::Cell::new(false));
            let s = stop.clone();
            let busy = rt::spawn(async move {
                let mut spins = 0u64;
                while !s.get() {
                    rt::yield_now().await;
                    spins += 1;
                }
                spins
            });
            time::sleep(Duration::from_millis(20)).await;
            stop.set(true);
            busy.await.unwrap()
        });
        assert!(fired > 0);
    }

    fn timeout_around_a_read_that_never_completes(b: Builder) {
        let rt = runtime(b);
        let (rx, _tx) = util::pipe(true);
        rt.block_on(async {
            let engine = rt::engine();
            // Let the runtime settle: it keeps a read of its own pending once it has waited in
            // the engine. A timer can be due at its first poll (qemu's TCG stalls that long),
            // so sleep until that read is there, whatever the clock did.
            let settle = Instant::now() + util::LIMIT;
            while engine.in_flight() == 0 && Instant::now() < settle {
                time::sleep(Duration::from_millis(1)).await;
            }
            let before = engine.in_flight();
            let read = engine.submit(op::Read::stream(rx.as_raw_fd(), vec![0u8; 16]));
            let r = time::timeout(Duration::from_millis(30), read).await;
            let err: std::io::Error = r.expect_err("the read never completes").into();
            assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
            // The abandoned read is cancelled and released by the engine as the runtime turns.
            let deadline = Instant::now() + util::LIMIT;
            while engine.in_flight() > before {
                assert!(Instant::now() < deadline, "the abandoned read was never released");
                time::sleep(Duration::from_millis(5)).await;
            }
        });
    }

    fn deadline_gives_the_buffer_back_with_the_timeout(b: Builder) {
        let rt = runtime(b);
        let (rx, _tx) = util::pipe(true);
        rt.block_on(async {
            let engine = rt::engine();
            let mut buf = Vec::with_capacity(16);
            buf.extend_from_slice(b"keep");
            let read = engine.submit(op::Read::stream(rx.as_raw_fd(), buf));
            match time::deadline(Duration::from_millis(30), read).await {
                Deadline::Elapsed((r, buf)) => {
                    util::assert_errno(&r, libc::ECANCELED, "cancelled at the deadline");
                    assert_eq!(&buf[..], b"keep", "the buffer comes back untouched");
                }
                Deadline::Done(out) => panic!("finished without data: {:?}", out.0),
            }
        });
    }

    fn deadline_returns_data_that_arrived_in_time(b: Builder) {
        let rt = runtime(b);
        let (rx, tx) = util::pipe(true);
        std::fs::File::from(tx).write_all(b"data").unwrap();
        rt.block_on(async {
            let engine = rt::engine();
            let read = engine.submit(op::Read::stream(rx.as_raw_fd(), vec![0u8; 16]));
            match time::deadline(Duration::from_secs(5), read).await {
                Deadline::Done((r, buf)) => {
                    assert_eq!(r.unwrap(), 4);
                    assert_eq!(&buf[..4], b"data");
                }
                Deadline::Elapsed(_) => panic!("the data was there"),
            }
        });
    }

    fn file_write_all_then_read_exact_round_trip(b: Builder) {
        let rt = runtime(b);
        let dir = util::TempDir::new("rt-file");
        let path = dir.path("data");
        let data = util::pattern(3 * 1024 * 1024 + 17, 3);
        rt.block_on(async {
            let f = File::create(&path).await.unwrap();
            let (r, back) = f.write_all_at(data.clone(), 5).await;
            r.unwrap();
            assert_eq!(back.len(), data.len(), "the buffer comes back");
            f.sync_data().await.unwrap();
            let meta = f.metadata().await.unwrap();
            assert_eq!(meta.len(), data.len() as u64 + 5);
            assert!(meta.is_file());
            f.close().await.unwrap();

            let f = File::open(&path).await.unwrap();
            let (r, buf) = f.read_exact_at(Vec::with_capacity(data.len()), 5).await;
            r.unwrap();
            assert!(buf == data, "byte-exact");
            let (r, buf) = f.read_exact_at(vec![0u8; 100], data.len() as u64).await;
            let e = r.expect_err("past the end");
            assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
            assert_eq!(buf.len(), 100);
        });
    }

    fn opening_a_missing_file_names_it(b: Builder) {
        let rt = runtime(b);
        let e = rt
            .block_on(File::open("/nonexistent/trueio-missing"))
            .expect_err("missing");
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        assert!(e.to_string().contains("/nonexistent/trueio-missing"), "{e}");
    }
}

//! The engine's queues under stress: CQ overflow, signals during a wait, a failed submit,
//! and fixed-file slots that stay reserved while an operation uses them.
mod util;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use trueio::op::{Nop, Op, Read, Timeout};
use trueio::{Backend, Engine, Stats, Ticket};
use util::{assert_settled, pipe, run, wait, TempDir, Watchdog};

extern "C" fn on_sigusr1(_: libc::c_int) {}

/// Installs a no-op SIGUSR1 handler without SA_RESTART, so a blocked system call of the
/// signalled thread fails with EINTR.
fn install_sigusr1_handler() {
    // SAFETY: a zeroed sigaction with a valid handler and an empty mask is a valid argument.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigusr1 as extern "C" fn(libc::c_int) as usize;
        sa.sa_flags = 0; // no SA_RESTART
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()),
            0,
            "sigaction: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Sends SIGUSR1 to a thread a few times; stops and joins on drop, so it never signals a
/// thread that has gone away (even when the test panics).
struct Signaller {
    stop: Arc<AtomicBool>,
    sent: Arc<std::sync::atomic::AtomicUsize>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Signaller {
    fn start(target: libc::pthread_t, times: usize, every: Duration) -> Signaller {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (s, n) = (stop.clone(), sent.clone());
        let handle = std::thread::spawn(move || {
            for _ in 0..times {
                std::thread::sleep(every);
                if s.load(Ordering::SeqCst) {
                    return;
                }
                // SAFETY: `target` is alive: it joins this thread before it returns.
                let r = unsafe { libc::pthread_kill(target, libc::SIGUSR1) };
                assert_eq!(r, 0, "pthread_kill");
                n.fetch_add(1, Ordering::SeqCst);
            }
        });
        Signaller {
            stop,
            sent,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            h.join().expect("signaller thread");
        }
        self.sent.load(Ordering::SeqCst)
    }
}

impl Drop for Signaller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Takes the output of every ticket, which must be there and succeed, and checks that no
/// ticket has a second one.
fn take_each_once<T: Op<Output = std::io::Result<()>>>(tickets: &mut [Ticket<T>], what: &str) {
    for (i, t) in tickets.iter_mut().enumerate() {
        t.try_take()
            .unwrap_or_else(|| panic!("{what} {i}: no output"))
            .unwrap();
        assert!(t.try_take().is_none(), "{what} {i}: a second output");
    }
}

/// Drives `engine` until `all_done` holds (20 s at most), then a little longer so that a
/// duplicate completion would show in the counters; checks that the `n` operations submitted
/// since `before` each completed exactly once and returns the counters since `before`. (Their
/// outputs stay in the tickets: `in_flight` counts them until they are taken.)
fn complete_all(
    engine: &Engine,
    before: &Stats,
    n: u64,
    what: &str,
    all_done: impl FnMut() -> bool,
) -> Stats {
    let ok = util::drive_until(engine, Duration::from_secs(20), all_done);
    assert!(ok, "some {what} never completed");
    util::drive_for(engine, Duration::from_millis(50));
    let st = engine.stats().since(before);
    assert_eq!(st.submitted, n);
    assert_eq!(
        st.completed, n,
        "{what}: every one completes exactly once: {st:?}"
    );
    eprintln!("{what}: {st:?}");
    st
}

both_backends! {
    fn cq_overflow_every_ticket_completes_once(b: Builder) {
        let engine = b.entries(8).cq_entries(16).build().unwrap();
        let before = engine.stats();
        let mut nops = Vec::new();
        let mut timers = Vec::new();
        for _ in 0..500 {
            nops.push(engine.submit(Nop::new()));
            timers.push(engine.submit(Timeout::after(Duration::ZERO)));
        }
        // The epoll backend has nothing to run for a NOP: it completes at its submission.
        let nops_in_flight = if engine.backend() == Backend::Uring { 500 } else { 0 };
        assert_eq!(engine.in_flight(), 500 + nops_in_flight);
        let st = complete_all(&engine, &before, 1000, "operations", || {
            nops.iter().all(|t| t.is_done()) && timers.iter().all(|t| t.is_done())
        });
        take_each_once(&mut nops, "nop");
        take_each_once(&mut timers, "timeout");
        assert_eq!(engine.in_flight(), 0);

        // The engine reaps after every enter, so completions that come as the batches go in
        // need not overflow (they do not on the rungs without DEFER_TASKRUN). A burst does:
        // 64 timers with one deadline fire while the engine sleeps, and 64 completions meet a
        // CQ of 16.
        let before = engine.stats();
        let mut burst: Vec<_> = (0..64)
            .map(|_| engine.submit(Timeout::after(Duration::from_millis(30))))
            .collect();
        engine.flush().unwrap();
        std::thread::sleep(Duration::from_millis(150));
        let burst_st = complete_all(&engine, &before, 64, "burst timers", || {
            burst.iter().all(|t| t.is_done())
        });
        take_each_once(&mut burst, "burst timeout");
        assert_eq!(engine.in_flight(), 0);
        if engine.backend() == Backend::Uring {
            assert!(
                st.cq_overflows + burst_st.cq_overflows > 0,
                "the CQ never overflowed, so the test did not test an overflow: {st:?} \
                 {burst_st:?}"
            );
        }
    }

    fn wait_survives_signals_without_resubmitting(b: Builder) {
        let engine = b.build().unwrap();
        install_sigusr1_handler();
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        let before = engine.stats();
        let mut t = engine.submit(Timeout::after(Duration::from_millis(300)));
        let start = Instant::now();
        let sig = Signaller::start(me, 6, Duration::from_millis(30));
        let deadline = start + Duration::from_secs(10);
        while !t.is_done() {
            assert!(Instant::now() < deadline, "the timeout never fired");
            // A signal must not surface as an error of the wait.
            engine
                .turn(Some(Duration::from_secs(2)))
                .expect("turn interrupted by a signal");
        }
        let el = start.elapsed();
        let sent = sig.finish();
        eprintln!("{sent} signals sent during the wait");
        assert!(sent >= 1, "no signal was sent during the wait");
        assert!(
            el >= Duration::from_millis(300),
            "timeout fired early: {el:?}"
        );
        // A resubmitted timeout would complete a second time about 300 ms later.
        util::drive_for(&engine, Duration::from_millis(400));
        let st = engine.stats().since(&before);
        assert_eq!(st.submitted, 1);
        assert_eq!(st.completed, 1, "completed once, not resubmitted: {st:?}");
        t.try_take().expect("output").expect("timeout result");
        assert!(t.try_take().is_none());
    }

    fn ticket_wait_survives_signals(b: Builder) {
        // The same through Ticket::wait, the blocking call users make (bounded by the
        // signaller's join and the timeout's own 300 ms).
        let engine = b.build().unwrap();
        install_sigusr1_handler();
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        let t = engine.submit(Timeout::after(Duration::from_millis(300)));
        let start = Instant::now();
        let sig = Signaller::start(me, 6, Duration::from_millis(30));
        // Ticket::wait has no timeout of its own: a watchdog aborts the run rather than let a
        // lost completion hang it.
        let watchdog = Watchdog::arm(
            "ticket_wait_survives_signals: Ticket::wait",
            Duration::from_secs(20),
        );
        let r = t.wait();
        drop(watchdog);
        let sent = sig.finish();
        let out = r.expect("Ticket::wait interrupted by a signal");
        out.expect("timeout result");
        assert!(start.elapsed() >= Duration::from_millis(300));
        assert!(sent >= 1, "no signal was sent during the wait");
        assert_settled(&engine);
    }

    fn failed_submit_keeps_ops_in_flight(b: Builder) {
        let engine = b.build().unwrap();
        let tickets: Vec<_> = (0..5).map(|_| engine.submit(Nop::new())).collect();
        let devnull = std::fs::File::open("/dev/null").unwrap();
        engine.__fail_next_enter_with(&devnull);
        let r = engine.flush();
        if engine.backend() == Backend::Uring {
            assert!(
                r.is_err(),
                "io_uring_enter on /dev/null must fail, got {r:?}"
            );
        } else {
            // No ring to enter on the epoll backend: the hook has no effect.
            assert!(r.is_ok(), "{r:?}");
        }
        // On epoll the NOPs completed at their submission: nothing was left to fail.
        let in_flight = if engine.backend() == Backend::Uring { 5 } else { 0 };
        assert_eq!(engine.in_flight(), in_flight, "the operations stay in flight");
        for t in tickets {
            wait(&engine, t).expect("the Nop completes after the failed submit");
        }
        assert_settled(&engine);
    }

    /// Without EXT_ARG a timed wait is bounded by an internal TIMEOUT request. When that
    /// request finds the SQ full and the kernel taking nothing (the enter that would make room
    /// fails), the wait must still end by its deadline, and so must the next: none of them
    /// may trust a timeout that never reached the SQ. (It once did: both waits slept until an
    /// operation completed.)
    fn a_timed_wait_whose_timeout_finds_the_sq_full_stays_bounded(b: Builder) {
        let engine = b.disable(trueio::Feature::ExtArg).entries(4).build().unwrap();
        let (rx, tx) = pipe(true);
        // Four polls of an empty pipe fill the SQ of four entries; none can complete.
        let polls: Vec<_> = (0..4)
            .map(|_| engine.submit(trueio::op::PollAdd::new(&rx, libc::POLLIN as u32)))
            .collect();
        let devnull = std::fs::File::open("/dev/null").unwrap();
        engine.__fail_next_enter_with(&devnull);
        // A broken build sleeps until the polls complete: make them, late, so that it fails
        // on the time it took instead of hanging.
        let (done, wake) = std::sync::mpsc::channel::<()>();
        let writer = std::thread::spawn(move || {
            let _ = wake.recv_timeout(Duration::from_secs(5));
            util::write_all(&tx, b"x");
            tx
        });
        let start = Instant::now();
        {
            // Past the writer's five seconds a broken build sleeps in the second wait with
            // nothing in flight, for ever: make that a failure too.
            let _watchdog = Watchdog::arm("two 50 ms waits", Duration::from_secs(15));
            for _ in 0..2 {
                engine.turn(Some(Duration::from_millis(50))).unwrap();
            }
        }
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "two 50 ms waits took {took:?}: a wait slept without a bound"
        );
        assert!(polls.iter().all(|t| !t.is_done()), "a poll of an empty pipe completed");
        done.send(()).unwrap();
        let tx = writer.join().unwrap();
        for t in polls {
            wait(&engine, t).unwrap();
        }
        drop(tx);
        assert_settled(&engine);
    }

    fn failed_submit_then_wait_still_completes(b: Builder) {
        // The failure hits the enter of a wait instead of a flush.
        let engine = b.build().unwrap();
        let dir = TempDir::new("ring-failwait");
        std::fs::write(dir.path("f"), b"abc").unwrap();
        let file = std::fs::File::open(dir.path("f")).unwrap();
        // A stream read: a positional read submitted alone may complete inline (a cached
        // lone read), never reaching the enter this test makes fail.
        let mut rd = engine.submit(Read::stream(&file, Vec::with_capacity(8)));
        let devnull = std::fs::File::open("/dev/null").unwrap();
        engine.__fail_next_enter_with(&devnull);
        let r = engine.turn(Some(Duration::from_millis(50)));
        if engine.backend() == Backend::Uring {
            assert!(r.is_err(), "the failed enter is reported, got {r:?}");
        } else {
            // No ring to enter on the epoll backend: the hook has no effect.
            assert!(r.is_ok(), "{r:?}");
        }
        let (n, buf) = util::wait_within(&engine, &mut rd, util::LIMIT);
        assert_eq!(n.unwrap(), 3);
        assert_eq!(buf, b"abc");
    }

    fn fixed_slot_not_reused_while_in_flight(b: Builder) {
        let engine = b.fixed_files(2).build().unwrap();
        let dir = TempDir::new("ring-slots");
        std::fs::write(dir.path("f"), b"file").unwrap();
        let (r, w) = pipe(false);
        let pipe_ff = engine.register_file(r).unwrap();
        let busy = pipe_ff.slot();
        let mut rd = engine.submit(Read::stream(&pipe_ff, Vec::with_capacity(64)));
        engine.flush().unwrap();
        util::drive_for(&engine, Duration::from_millis(30));
        assert!(!rd.is_done(), "empty pipe: the read is pending");
        drop(pipe_ff);

        let other = engine
            .register_file(std::fs::File::open(dir.path("f")).unwrap().into())
            .unwrap();
        assert_ne!(
            other.slot(),
            busy,
            "a slot was reused under an operation in flight"
        );
        // Two slots: one busy, one taken. No third.
        let third = engine.register_file(std::fs::File::open(dir.path("f")).unwrap().into());
        assert!(
            third.is_err(),
            "the busy slot was handed out again: {third:?}"
        );

        util::write_all(&w, b"through the slot");
        let (n, buf) = util::wait_within(&engine, &mut rd, util::LIMIT);
        assert_eq!(n.unwrap(), 16);
        assert_eq!(buf, b"through the slot");
        drop(rd);

        // The operation is gone: the old slot is free again.
        let again = engine
            .register_file(std::fs::File::open(dir.path("f")).unwrap().into())
            .expect("the released slot is reusable");
        assert_eq!(again.slot(), busy);
        let (n, buf) = run(&engine, Read::at(&again, Vec::with_capacity(8), 0));
        assert_eq!(n.unwrap(), 4);
        assert_eq!(buf, b"file", "the reused slot names the new file");
        let (n, buf) = run(&engine, Read::at(&other, Vec::with_capacity(8), 0));
        assert_eq!(n.unwrap(), 4);
        assert_eq!(buf, b"file");
    }
}

/// `Builder::io_worker_cpus`: io_uring's kernel workers run on the CPUs asked for, not on the
/// pinned CPU of the thread that made the ring. (io-wq belongs to the thread: a fresh thread
/// has no workers yet, so all of them are made under the setting.)
#[test]
fn io_workers_run_on_the_cpus_asked_for() {
    // SAFETY: sysconf takes no pointers.
    if unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) } < 2 {
        util::skip("one CPU: nowhere else to put the workers");
        return;
    }
    let Some(b) = util::builder(trueio::BackendChoice::Uring) else {
        return;
    };
    let dir = util::TempDir::new("iowq");
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: cpu_set_t is plain bits; CPU_SET writes within it.
            unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(0, &mut set);
                assert_eq!(
                    libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set),
                    0
                );
            }
            let e = b.io_worker_cpus(&[1]).build().unwrap();
            if !e.report().io_workers.active {
                util::skip(&format!(
                    "no IORING_REGISTER_IOWQ_AFF: {}",
                    e.report().io_workers.detail
                ));
                return;
            }
            // mkdir always runs on an io-wq worker (forced async in the kernel); on a disk
            // filesystem the engine does not run it inline.
            let tickets: Vec<_> = (0..64)
                .map(|i| {
                    e.submit(trueio::op::MkdirAt::new(
                        None,
                        dir.path(&format!("d{i}")),
                        0o755,
                    ))
                })
                .collect();
            for t in tickets {
                t.wait().unwrap().unwrap();
            }
            let mut workers = Vec::new();
            for t in std::fs::read_dir("/proc/self/task").unwrap() {
                let p = t.unwrap().path();
                let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
                if comm.starts_with("iou-wrk") {
                    let status = std::fs::read_to_string(p.join("status")).unwrap_or_default();
                    let cpus = status
                        .lines()
                        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                        .unwrap_or("")
                        .trim()
                        .to_string();
                    workers.push(cpus);
                }
            }
            assert!(!workers.is_empty(), "no io-wq worker ran the mkdirs");
            // Other tests' threads have workers of their own; at least ours are on CPU 1.
            assert!(
                workers.iter().any(|c| c == "1"),
                "workers' CPUs: {workers:?}"
            );
        });
    });
}

//! Ownership through an operation's life: dropped tickets, dropped engines, forgotten
//! tickets, cancel racing with data, and descriptors an abandoned open returns.
mod util;

use std::cell::Cell;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use trueio::buf::{IoBuf, IoBufMut};
use trueio::op::{Read, Timeout};
use trueio::{Backend, Engine, Ticket};
use util::{
    assert_errno, assert_settled, open_rdonly, open_rdonly_direct, pipe, TempDir, Watchdog,
};

/// A buffer that records when it is dropped.
struct FlagBuf {
    v: Vec<u8>,
    dropped: Rc<Cell<bool>>,
}

impl FlagBuf {
    fn new(cap: usize) -> (FlagBuf, Rc<Cell<bool>>) {
        let flag = Rc::new(Cell::new(false));
        (
            FlagBuf {
                v: Vec::with_capacity(cap),
                dropped: flag.clone(),
            },
            flag,
        )
    }
}

impl Drop for FlagBuf {
    fn drop(&mut self) {
        self.dropped.set(true);
    }
}

// SAFETY: the Vec's heap storage is stable across moves; `len` bytes are initialised.
unsafe impl IoBuf for FlagBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.v.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.v.len()
    }
    fn bytes_total(&self) -> usize {
        self.v.capacity()
    }
}

// SAFETY: set_init only raises `len` within capacity, as the caller guarantees.
unsafe impl IoBufMut for FlagBuf {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.v.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, pos: usize) {
        if self.v.len() < pos {
            // SAFETY: the caller guarantees pos <= capacity bytes are initialised.
            unsafe { self.v.set_len(pos) };
        }
    }
}

/// Submits the batch and gives the kernel a moment, so `t`'s operation is really in flight.
fn settle(engine: &Engine) {
    engine.flush().unwrap();
    engine.turn(Some(Duration::from_millis(20))).unwrap();
}

/// Leaves the operation submitted in round `i` in one of three states, in turn: still queued
/// in the engine, flushed to the kernel, or flushed and given a turn of `turn` to complete.
fn stage(engine: &Engine, i: u32, turn: Duration) {
    match i % 3 {
        0 => {}
        1 => {
            engine.flush().unwrap();
        }
        _ => {
            engine.flush().unwrap();
            engine.turn(Some(turn)).unwrap();
        }
    }
}

/// A read into a [`FlagBuf`] on an empty pipe, submitted and settled: really pending.
struct PendingRead {
    ticket: Ticket<Read<FlagBuf>>,
    /// Set when the buffer is dropped.
    dropped: Rc<Cell<bool>>,
    /// The pipe's read end (the read's descriptor).
    r: OwnedFd,
    /// The pipe's write end, kept open so that the read waits instead of seeing EOF.
    w: OwnedFd,
}

fn pending_read(engine: &Engine, cap: usize) -> PendingRead {
    let (r, w) = pipe(false);
    let (buf, dropped) = FlagBuf::new(cap);
    let ticket = engine.submit(Read::stream(&r, buf));
    settle(engine);
    assert!(!ticket.is_done(), "empty pipe: the read is pending");
    assert!(!dropped.get());
    PendingRead {
        ticket,
        dropped,
        r,
        w,
    }
}

/// Drops `engine` (the last handle) under a watchdog: dropping it waits, bounded, for the
/// operations it still has in flight.
fn drop_engine(engine: Engine) {
    let _watchdog = Watchdog::arm("dropping the engine", Duration::from_secs(20));
    drop(engine);
}

both_backends! {
    fn dropped_pending_read_keeps_buffer_until_completion(b: Builder) {
        let engine = b.build().unwrap();
        let read = pending_read(&engine, 64);
        let dropped = read.dropped.clone();
        assert_eq!(engine.in_flight(), 1);

        drop(read.ticket);
        // The buffer may be released only together with the operation's final completion.
        assert_eq!(
            dropped.get(),
            engine.in_flight() == 0,
            "buffer dropped = {}, in flight = {}",
            dropped.get(),
            engine.in_flight()
        );
        if engine.backend() == Backend::Uring {
            // The kernel owns the read until the cancellation's completion is reaped.
            assert_eq!(engine.in_flight(), 1, "still owned by the kernel");
            assert!(
                !dropped.get(),
                "buffer freed while the kernel may still write it"
            );
        }
        util::drive_until_idle(&engine, "the cancelled read was never reaped");
        assert!(
            dropped.get(),
            "buffer released once the completion was reaped"
        );
        assert_settled(&engine);
    }

    fn dropping_engine_with_ops_in_flight_waits_for_them(b: Builder) {
        let engine = b.build().unwrap();
        let (r, _w) = pipe(false);
        let mut flags = Vec::new();
        let mut tickets = Vec::new();
        for _ in 0..5 {
            let (buf, f) = FlagBuf::new(32);
            flags.push(f);
            tickets.push(engine.submit(Read::stream(&r, buf)));
        }
        let timer = engine.submit(Timeout::after(Duration::from_secs(60)));
        settle(&engine);
        assert_eq!(engine.in_flight(), 6);
        assert!(flags.iter().all(|f| !f.get()));

        let start = Instant::now();
        // Engine handle first: the tickets keep the engine's core alive until they go.
        drop(engine);
        assert!(
            flags.iter().all(|f| !f.get()),
            "nothing freed while tickets live"
        );
        {
            // The last ticket takes the engine's core with it: that drop waits for the rest.
            let _watchdog = Watchdog::arm("dropping the last tickets", Duration::from_secs(20));
            drop(tickets);
            drop(timer);
        }
        let el = start.elapsed();
        assert!(
            el < Duration::from_secs(3),
            "engine drop blocked for {el:?}"
        );
        for (i, f) in flags.iter().enumerate() {
            assert!(
                f.get(),
                "buffer {i} was not released: the engine leaked it instead of reaping its cancel"
            );
        }
    }

    fn dropping_ticket_then_engine_releases_buffer(b: Builder) {
        let engine = b.build().unwrap();
        let read = pending_read(&engine, 16);
        drop(read.ticket);
        drop_engine(engine);
        assert!(
            read.dropped.get(),
            "the engine reaped the cancellation before going away"
        );
    }

    fn forgotten_ticket_leaks_rather_than_frees(b: Builder) {
        let engine = b.build().unwrap();
        let PendingRead {
            ticket,
            dropped,
            r,
            w,
        } = pending_read(&engine, 16);
        let before = engine.stats().completed;
        std::mem::forget(ticket);
        assert!(!dropped.get());
        assert_eq!(engine.in_flight(), 1);
        util::drive_for(&engine, Duration::from_millis(50));
        assert!(!dropped.get());
        // Let the read complete: its output has no owner and must stay leaked.
        util::write_all(&w, b"x");
        let done = util::drive_until(&engine, Duration::from_secs(5), || {
            engine.stats().completed > before
        });
        assert!(done, "the forgotten read never completed");
        assert!(
            !dropped.get(),
            "a forgotten ticket's buffer must leak, not be freed"
        );
        drop_engine(engine);
        assert!(
            !dropped.get(),
            "still leaked after the engine handle is gone"
        );
        // The byte went into the leaked buffer: nothing is left in the pipe.
        assert!(util::drain_nonblocking(&r).is_empty());
    }

    fn cancel_racing_with_data_never_loses_bytes(b: Builder) {
        let engine = b.build().unwrap();
        let rounds: u32 = if engine.backend() == Backend::Uring {
            2000
        } else {
            1000
        };
        let (r, w) = pipe(false);
        let mut written = Vec::new();
        let mut read = Vec::new();
        let (mut cancelled, mut completed) = (0u32, 0u32);
        for i in 0..rounds {
            let mut t = engine.submit(Read::stream(&r, Vec::with_capacity(4)));
            // The last stage polls: a turn that does not wait.
            stage(&engine, i, Duration::ZERO);
            // Every seventh round writes nothing, so a backlog left by an earlier cancel drains
            // and the next reads are pending when their byte arrives.
            if i % 7 != 3 {
                let byte = (i % 251) as u8;
                util::write_all(&w, &[byte]);
                written.push(byte);
            }
            if i % 5 == 4 {
                engine.poll().unwrap();
            }
            t.cancel();
            let (res, buf) = util::wait_within(&engine, &mut t, util::LIMIT);
            match res {
                Ok(n) => {
                    assert!(n > 0, "round {i}: a read that completed got no bytes");
                    assert_eq!(buf.len(), n);
                    read.extend_from_slice(&buf);
                    completed += 1;
                }
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(libc::ECANCELED), "round {i}: {e}");
                    assert!(
                        buf.is_empty(),
                        "round {i}: a cancelled read carries no bytes"
                    );
                    assert_eq!(buf.capacity(), 4, "round {i}: the buffer comes back");
                    cancelled += 1;
                }
            }
            assert!(t.try_take().is_none(), "round {i}: a second completion");
        }
        let left = util::drain_nonblocking(&r);
        eprintln!(
            "{rounds} rounds: {completed} reads completed, {cancelled} cancelled, {} bytes read, \
             {} left in the pipe",
            read.len(),
            left.len()
        );
        read.extend_from_slice(&left);
        assert_eq!(
            read.len(),
            written.len(),
            "bytes read + left != bytes written"
        );
        assert!(read == written, "data reordered or corrupted");
        assert_eq!(completed + cancelled, rounds);
        // A race in which one side never happened tested nothing.
        assert!(completed > 0, "no read ever completed before its cancel");
        assert!(cancelled > 0, "no cancel ever won");
        assert_settled(&engine);
    }

    fn dropped_open_does_not_leak_descriptor(b: Builder) {
        let engine = b.build().unwrap();
        let dir = TempDir::new("life-open");
        std::fs::write(dir.path("target"), b"x").unwrap();
        let path = std::fs::canonicalize(dir.path("target")).unwrap();
        assert_eq!(util::open_fds_to(&path), 0);
        for i in 0..60 {
            let t = engine.submit(open_rdonly(&path));
            stage(&engine, i, Duration::from_millis(1));
            drop(t);
        }
        util::drive_until_idle(&engine, "abandoned opens never completed");
        assert_eq!(
            util::open_fds_to(&path),
            0,
            "an abandoned open leaked its descriptor"
        );

        // Control: a kept open does show up in the count.
        let fd = util::run(&engine, open_rdonly(&path)).unwrap();
        assert_eq!(util::open_fds_to(&path), 1);
        drop(fd);
        assert_eq!(util::open_fds_to(&path), 0);
    }

    fn dropped_direct_open_does_not_leak_slot(b: Builder) {
        let engine = b.fixed_files(4).build().unwrap();
        let dir = TempDir::new("life-direct");
        std::fs::write(dir.path("target"), b"x").unwrap();
        // Precondition: a direct open kept to completion works (else a leak could not show).
        let ff = util::run(&engine, open_rdonly_direct(dir.path("target")))
            .expect("precondition: OpenAt2Direct into a free slot succeeds");
        drop(ff);
        for i in 0..20 {
            let t = engine.submit(open_rdonly_direct(dir.path("target")));
            if i % 2 == 1 {
                engine.flush().unwrap();
            }
            drop(t);
        }
        util::drive_until_idle(&engine, "abandoned direct opens never completed");
        // Every slot is free again: all four can be registered.
        let mut files = Vec::new();
        for i in 0..4 {
            let f = std::fs::File::open(dir.path("target")).unwrap();
            match engine.register_file(f.into()) {
                Ok(ff) => files.push(ff),
                Err(e) => panic!("slot {i} of 4 leaked by an abandoned direct open: {e}"),
            }
        }
        let f = std::fs::File::open(dir.path("target")).unwrap();
        assert!(
            engine.register_file(f.into()).is_err(),
            "a fifth slot does not exist"
        );
    }

    fn cancelled_read_resolves_once_with_buffer(b: Builder) {
        let engine = b.build().unwrap();
        let mut read = pending_read(&engine, 8);
        read.ticket.cancel();
        read.ticket.cancel(); // a second cancel is harmless
        let (res, buf) = util::wait_within(&engine, &mut read.ticket, util::LIMIT);
        assert_errno(&res, libc::ECANCELED, "cancelled read");
        assert!(!read.dropped.get(), "the buffer is handed back, not freed");
        assert_eq!(buf.v.capacity(), 8);
        assert!(read.ticket.try_take().is_none());
        drop(buf);
        assert!(read.dropped.get());
        util::drive_for(&engine, Duration::from_millis(30));
        assert_eq!(engine.in_flight(), 0);
    }
}

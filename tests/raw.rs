//! `op::Raw`, the unsafe extension point: a hand-built SQE and its owner, on both backends.
mod util;

use std::os::fd::AsRawFd;
use std::time::Duration;

use io_uring::{opcode, types};
use trueio::op::{Fallback, Raw};
use trueio::Backend;
use util::{assert_errno, pattern, pipe, wait, TempDir};

/// A negated errno from a libc return value, as the kernel's completions carry it.
fn raw_result(r: isize) -> i32 {
    if r < 0 {
        -std::io::Error::last_os_error().raw_os_error().unwrap()
    } else {
        r as i32
    }
}

/// A raw `READ` of `len` bytes at `off` into a fresh vector, with a `pread` fallback run
/// `when` says.
fn raw_read(fd: i32, len: usize, off: u64, when: Fallback) -> Raw<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let entry = opcode::Read::new(types::Fd(fd), buf.as_mut_ptr(), len as u32)
        .offset(off)
        .build();
    // SAFETY: the entry points at `buf`'s heap memory, `len` bytes, which the Vec owns and does
    // not move when moved into the operation; each test keeps `fd` open until the completion.
    let op = unsafe { Raw::new(entry, buf) };
    op.fallback(when, move |buf| {
        // SAFETY: `buf` is the owner, ours for the call, `buf.len()` bytes.
        raw_result(unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), off as i64) })
    })
}

/// A raw read of a pipe: `read(2)` (the pipe is non-blocking, so the call answers EAGAIN
/// while it is empty).
fn raw_pipe_read(fd: i32, len: usize) -> Raw<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let entry = opcode::Read::new(types::Fd(fd), buf.as_mut_ptr(), len as u32)
        .offset(u64::MAX)
        .build();
    // SAFETY: as in `raw_read`.
    let op = unsafe { Raw::new(entry, buf) };
    op.fallback(Fallback::Readable(fd), move |buf| {
        // SAFETY: as in `raw_read`.
        raw_result(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
    })
}

both_backends! {
    /// A raw read gives the file's bytes and the owner back, on io_uring through the entry and
    /// on epoll through the fallback call on the pool.
    fn a_raw_read_gives_the_data_and_its_owner_back(b: Builder) {
        let dir = TempDir::new("raw-read");
        let data = pattern(8192, 7);
        let path = dir.path("data");
        std::fs::write(&path, &data).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let engine = b.build().unwrap();
        let t = engine.submit(raw_read(file.as_raw_fd(), 4096, 1000, Fallback::Blocking));
        let (n, buf) = wait(&engine, t);
        assert_eq!(n.unwrap(), 4096);
        assert_eq!(&buf[..], &data[1000..5096]);
        // A read past the end: 0, as the kernel says.
        let t = engine.submit(raw_read(file.as_raw_fd(), 16, 1 << 20, Fallback::Blocking));
        assert_eq!(wait(&engine, t).0.unwrap(), 0);
    }

    /// Without a readiness plan, the epoll backend cannot run a raw entry: `EOPNOTSUPP`, with
    /// the owner given back. io_uring runs it.
    fn a_raw_entry_without_a_fallback_is_unsupported_on_epoll(b: Builder) {
        let engine = b.build().unwrap();
        let owner = String::from("mine");
        // SAFETY: a NOP points at nothing.
        let op = unsafe { Raw::new(opcode::Nop::new().build(), owner) };
        let (r, owner) = wait(&engine, engine.submit(op));
        assert_eq!(owner, "mine");
        match engine.backend() {
            Backend::Uring => assert_eq!(r.unwrap(), 0),
            Backend::Epoll => assert_errno(&r, libc::EOPNOTSUPP, "a raw entry on epoll"),
        }
    }

    /// A raw read of an empty pipe waits (on epoll: for readability, then the call again) and
    /// completes with what was written; one dropped in flight, then its engine, frees nothing
    /// the kernel may write.
    fn a_raw_pipe_read_waits_for_data_and_survives_a_drop(b: Builder) {
        let engine = b.build().unwrap();
        let (rx, tx) = pipe(true);
        let mut t = engine.submit(raw_pipe_read(rx.as_raw_fd(), 64));
        engine.turn(Some(Duration::from_millis(20))).unwrap();
        assert!(t.try_take().is_none(), "a read of an empty pipe completed");
        util::write_all(&tx, b"hello");
        let (n, buf) = wait(&engine, t);
        assert_eq!(n.unwrap(), 5);
        assert_eq!(&buf[..5], b"hello");

        let t = engine.submit(raw_pipe_read(rx.as_raw_fd(), 64));
        engine.turn(Some(Duration::ZERO)).unwrap();
        drop(t);
        util::drive_until_idle(&engine, "a dropped raw read");
        let t = engine.submit(raw_pipe_read(rx.as_raw_fd(), 64));
        engine.flush().unwrap();
        drop(t);
        drop(engine);
        drop((rx, tx));
    }

    /// A raw step in a chain links like any other: a failing one cancels the next.
    fn a_raw_step_in_a_chain_links(b: Builder) {
        let engine = b.build().unwrap();
        let mut chain = engine.chain();
        // Descriptor -1: EBADF from the kernel and from the fallback call alike.
        let first = chain.push(raw_read(-1, 16, 0, Fallback::Blocking));
        let second = chain.push(trueio::op::Nop::new());
        chain.submit();
        assert_errno(&wait(&engine, first).0, libc::EBADF, "a raw read of fd -1");
        assert_errno(&wait(&engine, second), libc::ECANCELED, "the step after it");
    }
}

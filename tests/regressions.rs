//! Regressions, each named after the bug it guards against.

mod util;

use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::time::Duration;

use trueio::op;

/// A file holding `data`, opened for reading with `O_DIRECT`; `None` (said why) where the
/// temporary directory's filesystem refuses the flag.
fn direct_file(dir: &util::TempDir, data: &[u8]) -> Option<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    dir.rw_file("f", data).sync_all().unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(dir.path("f"));
    if file.is_err() {
        util::skip("O_DIRECT is not supported on the temporary directory's filesystem");
    }
    file.ok()
}

/// Whether kernel AIO takes an `O_DIRECT` read of `file` here (the epoll backend's path for
/// it): `Err(reason)` where AIO is missing, forbidden or refuses this filesystem.
fn aio_takes(file: &std::fs::File) -> Result<(), String> {
    // `buf` before `aio`: dropped after it, since the context's drop waits for the request.
    let mut buf = trueio::buf::AlignedBuf::zeroed(4096);
    let mut aio = trueio_fallback::Aio::new(2).map_err(|e| format!("no kernel AIO: {e}"))?;
    let op = trueio_fallback::AioOp::Read {
        fd: file.as_raw_fd(),
        buf: buf.as_mut_ptr(),
        len: 4096,
        off: 0,
    };
    // SAFETY: `buf` outlives the request: reaped below, or waited for by `aio`'s drop
    // (declared after `buf`, so dropped before it).
    unsafe { aio.submit(1, op) }.map_err(|e| format!("io_submit refused: {e}"))?;
    let mut done = Vec::new();
    let deadline = std::time::Instant::now() + util::LIMIT;
    while done.is_empty() && std::time::Instant::now() < deadline {
        aio.reap(&mut done)
            .map_err(|e| format!("io_getevents: {e}"))?;
        std::thread::sleep(Duration::from_millis(1));
    }
    match done.first() {
        Some(&(1, 4096)) => Ok(()),
        other => Err(format!("an O_DIRECT read under RWF_NOWAIT gave {other:?}")),
    }
}

both_backends! {
    /// The epoll backend ran every O_DIRECT transfer as a blocking call on a pool thread: a
    /// thread hop and a context switch each, 58k IOPS against fio's 87k at QD32 on this VM's
    /// disk. Where the kernel allows it they now go to kernel AIO (`io_submit` with
    /// `RWF_NOWAIT`), with the same results as io_uring's: writes, reads, a short read at the
    /// end of the file, `EINVAL` for a misaligned buffer, a cancel that either stops the read
    /// or lets it finish with its bytes.
    fn o_direct_transfers_run_on_kernel_aio_not_a_thread_each(b: Builder) {
        use std::os::unix::fs::OpenOptionsExt;
        let aio_on = !b.is_disabled(trueio::Feature::LinuxAio);
        let engine = b.build().unwrap();
        let dir = util::TempDir::new("direct-aio");
        let data = util::pattern(64 * 1024, 9);
        let Some(probe) = direct_file(&dir, &data) else {
            return;
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(dir.path("f"))
            .unwrap();
        // Eight overwrites in flight at once.
        let new = util::pattern(32 * 1024, 11);
        let mut writes = Vec::new();
        for i in 0..8usize {
            let mut buf = trueio::buf::AlignedBuf::with_capacity(4096);
            buf.extend_from_slice(&new[i * 4096..(i + 1) * 4096]);
            writes.push(engine.submit(op::Write::at(&file, buf, (i * 4096) as u64)));
        }
        for t in writes {
            let (n, _) = util::wait(&engine, t);
            assert_eq!(n.unwrap(), 4096);
        }
        // Sixteen reads in flight: the new bytes, then the old ones. (The writes may have
        // gone to the pool: under RWF_NOWAIT ext4 answers EAGAIN to a direct write that must
        // update the file's times, as it does for io_uring, which hands it to a worker.)
        let before = engine.stats();
        let mut reads = Vec::new();
        for i in 0..16usize {
            let buf = trueio::buf::AlignedBuf::with_capacity(4096);
            reads.push(engine.submit(op::Read::at(&file, buf, (i * 4096) as u64)));
        }
        for (i, t) in reads.into_iter().enumerate() {
            let (n, buf) = util::wait(&engine, t);
            assert_eq!(n.unwrap(), 4096);
            let want = if i < 8 { &new[i * 4096..(i + 1) * 4096] } else { &data[i * 4096..(i + 1) * 4096] };
            assert!(&buf[..] == want, "block {i} holds the wrong bytes");
        }
        // A read across the end of the file stops there.
        let (n, buf) = util::run(&engine, op::Read::at(&file, trueio::buf::AlignedBuf::with_capacity(8192), 60 * 1024));
        assert_eq!(n.unwrap(), 4096);
        assert!(buf[..] == data[60 * 1024..]);
        // A buffer off the alignment O_DIRECT needs: what a plain pread says (EINVAL on
        // ext4; filesystems without an alignment rule, tmpfs for one, read it).
        let mut odd = trueio::buf::AlignedBuf::with_capacity(8192);
        odd.set_len(8192);
        // SAFETY: 4096 bytes from offset 1 of an 8192-byte buffer we own.
        let plain = unsafe { libc::pread(probe.as_raw_fd(), odd.as_mut_ptr().add(1).cast(), 4096, 0) };
        let plain = if plain < 0 { Err(std::io::Error::last_os_error().raw_os_error()) } else { Ok(plain as usize) };
        let odd = trueio::buf::IoBuf::slice(odd, 1..4097);
        let (n, _) = util::run(&engine, op::Read::at(&file, odd, 0));
        assert_eq!(n.map_err(|e| e.raw_os_error()), plain, "a misaligned O_DIRECT read");
        // Cancelled in flight: stopped, or finished with its bytes.
        let t = engine.submit(op::Read::at(&file, trueio::buf::AlignedBuf::with_capacity(4096), 40 * 1024));
        t.cancel();
        let (n, buf) = util::wait(&engine, t);
        match n {
            Ok(n) => {
                assert_eq!(n, 4096);
                assert!(buf[..] == data[40 * 1024..44 * 1024]);
            }
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ECANCELED)),
        }
        // A ticket dropped in flight, then the engine: the read's buffer is not freed under
        // the kernel (the engine waits for it, and the AIO context's teardown would too).
        let lost = engine.submit(op::Read::at(&file, trueio::buf::AlignedBuf::with_capacity(4096), 0));
        let st = engine.stats().since(&before);
        if engine.backend() == trueio::Backend::Epoll {
            match (aio_on, aio_takes(&probe)) {
                (true, Ok(())) => {
                    assert_eq!(st.aio_jobs, 20, "O_DIRECT reads did not go to kernel AIO: {st:?}");
                    assert_eq!(st.pool_jobs, 0, "O_DIRECT reads went to the pool: {st:?}");
                }
                (true, Err(why)) => util::skip(&format!("{why}: the pool takes O_DIRECT here")),
                (false, _) => assert_eq!(st.aio_jobs, 0, "AIO used while disabled: {st:?}"),
            }
        }
        drop(lost);
        drop(engine);
    }
    /// The epoll backend tried every file read inline with RWF_NOWAIT; on an O_DIRECT file
    /// that call does not fail fast but waits for the device, so the event loop stalled on
    /// each read and a queue depth of 32 ran like 1 (iobench: 22k vs 61k IOPS). O_DIRECT
    /// reads must go elsewhere (kernel AIO, or the pool where AIO is off or refused), and
    /// still return the right bytes.
    fn o_direct_reads_do_not_run_inline_on_the_event_loop(b: Builder) {
        let engine = b.build().unwrap();
        let dir = util::TempDir::new("direct-pool");
        let data = util::pattern(64 * 1024, 5);
        let Some(file) = direct_file(&dir, &data) else {
            return;
        };
        let before = engine.stats();
        let mut tickets = Vec::new();
        for i in 0..8u64 {
            let buf = trueio::buf::AlignedBuf::with_capacity(8192);
            tickets.push(engine.submit(op::Read::at(&file, buf, i * 8192)));
        }
        for (i, t) in tickets.into_iter().enumerate() {
            let (n, buf) = util::wait(&engine, t);
            assert_eq!(n.unwrap(), 8192);
            assert_eq!(&buf[..], &data[i * 8192..(i + 1) * 8192]);
        }
        let st = engine.stats().since(&before);
        // Neither backend's inline attempt (epoll's RWF_NOWAIT try, io_uring's lone read)
        // may take an O_DIRECT read.
        assert_eq!(st.inline_completions, 0, "an O_DIRECT read ran inline: {st:?}");
        if engine.backend() == trueio::Backend::Epoll {
            assert_eq!(st.pool_jobs + st.aio_jobs, 8, "O_DIRECT reads must go to AIO or the pool: {st:?}");
        }
    }

    /// io_uring held an O_DIRECT read in the SQ until the engine's next turn, with the rest
    /// of the batch; a device-bound read should reach the device at once (iobench 4 KiB
    /// O_DIRECT QD32: 73k IOPS batched, 86-89k submitted at once, fio's own figure). On
    /// epoll it goes to kernel AIO (or the pool) at submission.
    fn an_o_direct_read_reaches_the_kernel_at_submission(b: Builder) {
        let engine = b.build().unwrap();
        let dir = util::TempDir::new("direct-eager");
        let data = util::pattern(8192, 9);
        let Some(file) = direct_file(&dir, &data) else {
            return;
        };
        let before = engine.stats();
        let t = engine.submit(op::Read::at(
            &file,
            trueio::buf::AlignedBuf::with_capacity(4096),
            4096,
        ));
        let st = engine.stats().since(&before);
        if engine.backend() == trueio::Backend::Uring {
            assert!(st.enters >= 1, "the read waited in the SQ: {st:?}");
        } else {
            assert_eq!(st.pool_jobs + st.aio_jobs, 1, "the read waited for the next turn: {st:?}");
        }
        let (n, buf) = util::wait(&engine, t);
        assert_eq!(n.unwrap(), 4096);
        assert_eq!(&buf[..], &data[4096..]);

        // A read at the end of the file completes during that very submission; the next
        // turn must not then sleep waiting for a completion that has already arrived (it
        // did: copy_file of a 4096-byte file with O_DIRECT hung in io_cqring_wait).
        let _watchdog = util::Watchdog::arm("a turn after a completed submission", Duration::from_secs(20));
        let mut t = engine.submit(op::Read::at(
            &file,
            trueio::buf::AlignedBuf::with_capacity(4096),
            8192,
        ));
        // As copy_file does: one turn after submitting, whatever the ticket says. It may
        // return for completions an earlier call already took; it must never sleep past one
        // that has arrived.
        engine.turn(None).unwrap();
        let (n, _) = loop {
            if let Some(out) = t.try_take() {
                break out;
            }
            engine.turn(None).unwrap();
        };
        assert_eq!(n.unwrap(), 0);
    }

    /// The epoll backend asked `fstat` for the file type of every receive that would block
    /// (to choose between the pool and a readiness wait), although the socket was already
    /// watched for the same live descriptor: a fourth system call per echo message (tokio
    /// makes under three). A receive that waits on a watched socket now costs the attempt,
    /// the wait and the call: three.
    fn a_receive_on_a_watched_socket_needs_no_file_type_check(b: Builder) {
        use std::io::Write as _;
        let engine = b.build().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (ours, _) = listener.accept().unwrap();
        ours.set_nonblocking(true).unwrap();
        let ours = std::rc::Rc::new(std::os::fd::OwnedFd::from(ours));
        let mut per_cycle = Vec::new();
        for i in 0..10u8 {
            let before = engine.stats();
            let t = engine.submit(op::Recv::new(ours.clone(), vec![0u8; 16]));
            peer.write_all(&[i; 4]).unwrap();
            let (n, buf) = util::wait(&engine, t);
            assert_eq!(n.unwrap(), 4);
            assert_eq!(&buf[..4], &[i; 4]);
            per_cycle.push(engine.stats().since(&before).syscalls);
        }
        if engine.backend() == trueio::Backend::Epoll {
            // The first cycle registers the socket with epoll; every later one is the same.
            assert!(
                per_cycle[1..].iter().all(|&n| n <= 3),
                "system calls per receive: {per_cycle:?}"
            );
        }
    }

    /// The epoll backend kept a descriptor number registered after the file was closed
    /// outside the engine; epoll forgets closed files, so a new file under the same number
    /// waited on a dead registration forever.
    fn a_reused_descriptor_number_is_watched_anew(b: Builder) {
        let engine = b.build().unwrap();
        let (r1, w1) = util::pipe(true);
        let first = r1.as_raw_fd();
        let t = engine.submit(op::Read::stream(first, vec![0u8; 8]));
        util::drive_for(&engine, Duration::from_millis(20));
        std::fs::File::from(w1).write_all(b"one").unwrap();
        let (n, _) = util::wait(&engine, t);
        assert_eq!(n.unwrap(), 3);

        // Put a new pipe under the same number: dup3 closes the old file (its last
        // reference) and installs the new one, as a close and a reuse would, without racing
        // other tests for the number.
        let (r2, w2) = util::pipe(true);
        // SAFETY: both descriptors are ours; `first` is replaced atomically.
        let r = unsafe { libc::dup3(r2.as_raw_fd(), first, libc::O_CLOEXEC) };
        assert_eq!(r, first, "dup3: {}", std::io::Error::last_os_error());
        // `first` now holds the new pipe: keep owning it through r1's OwnedFd, drop r2's copy.
        let r2 = r1;
        let t = engine.submit(op::Read::stream(r2.as_raw_fd(), vec![0u8; 8]));
        util::drive_for(&engine, Duration::from_millis(20));
        std::fs::File::from(w2).write_all(b"two").unwrap();
        let (n, buf) = util::wait(&engine, t);
        assert_eq!(n.unwrap(), 3);
        assert_eq!(&buf[..3], b"two");
    }
    /// The same, for a shared descriptor: the epoll backend trusts a registration made for a
    /// shared descriptor only while that very descriptor is alive.
    fn a_reused_number_behind_a_new_shared_descriptor_is_watched_anew(b: Builder) {
        use std::os::fd::{FromRawFd, OwnedFd};
        use std::rc::Rc;
        let engine = b.build().unwrap();
        let (r1, w1) = util::pipe(true);
        let first = r1.as_raw_fd();
        let shared = Rc::new(r1);
        let t = engine.submit(op::Read::stream(shared.clone(), vec![0u8; 8]));
        util::drive_for(&engine, Duration::from_millis(20));
        std::fs::File::from(w1).write_all(b"one").unwrap();
        assert_eq!(util::wait(&engine, t).0.unwrap(), 3);

        // Replace the file under the number while the old Rc lives on, then let the old Rc
        // go without closing the number (it now belongs to the new pipe).
        let (r2, w2) = util::pipe(true);
        // SAFETY: both descriptors are ours; `first` is replaced atomically.
        assert_eq!(unsafe { libc::dup3(r2.as_raw_fd(), first, libc::O_CLOEXEC) }, first);
        let old = Rc::try_unwrap(shared).expect("no op holds the old descriptor");
        std::mem::forget(old);
        // SAFETY: `first` now names the new pipe's read end, owned here from now on.
        let fresh = Rc::new(unsafe { OwnedFd::from_raw_fd(first) });
        let t = engine.submit(op::Read::stream(fresh.clone(), vec![0u8; 8]));
        util::drive_for(&engine, Duration::from_millis(20));
        std::fs::File::from(w2).write_all(b"two").unwrap();
        let (n, buf) = util::wait(&engine, t);
        assert_eq!(n.unwrap(), 3);
        assert_eq!(&buf[..3], b"two");
        drop(r2);
    }

    /// Without `RWF_NOWAIT` (kernels before 5.8 refuse it on pipes, or the rung switched off)
    /// the epoll backend made a plain `write(2)` once poll(2) said a blocking pipe was
    /// writable; a write larger than the room left then blocked the engine's thread until a
    /// reader took it all, and with the reader on that thread, forever. Found by
    /// `tests/model.rs`.
    fn a_write_larger_than_a_blocking_pipes_room_does_not_block_the_engine(b: Builder) {
        let engine = b.build().unwrap();
        let (r, w) = util::pipe(false);
        let data = util::pattern(300 * 1024, 3);
        // Past the watchdog's limit the engine's thread is stuck in the write.
        let watchdog = util::Watchdog::arm("a write into a full pipe", Duration::from_secs(20));
        let mut t = engine.submit(op::Write::stream(&w, data.clone()));
        util::drive_for(&engine, Duration::from_millis(20));
        let mut got = Vec::new();
        let (n, _) = loop {
            got.extend_from_slice(&util::drain_nonblocking(&r));
            if let Some(out) = t.try_take() {
                break out;
            }
            engine.turn(Some(Duration::from_millis(10))).unwrap();
        };
        drop(watchdog);
        let n = n.expect("the write completes");
        got.extend_from_slice(&util::drain_nonblocking(&r));
        // A short count is allowed (the epoll backend writes what fits); every byte the
        // write reports is in the pipe, in order.
        assert!(n > 0 && n <= data.len(), "wrote {n}");
        assert_eq!(got.len(), n, "bytes read != bytes the write reports");
        assert!(got[..] == data[..n], "the pipe holds other bytes");
    }

    /// A splice from a pipe with data to a full pipe waited on the input (readable since
    /// before, so no new edge) instead of the output, and never finished on epoll.
    fn a_splice_into_a_full_pipe_finishes_once_the_pipe_drains(b: Builder) {
        use std::io::Read as _;
        let engine = b.build().unwrap();
        // Blocking pipes: io_uring then waits for room (in a worker) as the epoll backend
        // waits for readiness; with O_NONBLOCK pipes io_uring would fail with EAGAIN instead.
        let (in_r, in_w) = util::pipe(false);
        let (out_r, out_w) = util::pipe(false);
        let mut in_w = std::fs::File::from(in_w);
        in_w.write_all(b"payload").unwrap();
        // Fill the output pipe.
        let mut out_w = std::fs::File::from(out_w);
        let chunk = [0u8; 4096];
        let mut filled = 0usize;
        let set_nonblock = |fd: i32, on: bool| {
            // SAFETY: F_GETFL/F_SETFL on a descriptor this test owns.
            unsafe {
                let fl = libc::fcntl(fd, libc::F_GETFL);
                let fl = if on { fl | libc::O_NONBLOCK } else { fl & !libc::O_NONBLOCK };
                libc::fcntl(fd, libc::F_SETFL, fl);
            }
        };
        set_nonblock(out_w.as_raw_fd(), true);
        loop {
            match out_w.write(&chunk) {
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("filling the pipe: {e}"),
            }
        }
        set_nonblock(out_w.as_raw_fd(), false);
        let t = engine.submit(op::Splice::new(in_r.as_raw_fd(), None, out_w.as_raw_fd(), None, 7));
        util::drive_for(&engine, Duration::from_millis(30));
        assert!(!t.is_done(), "the output is full: the splice must wait");
        // Drain the output: now the splice can move its bytes.
        let mut out_r = std::fs::File::from(out_r);
        let mut sink = vec![0u8; filled];
        out_r.read_exact(&mut sink).unwrap();
        let n = util::wait(&engine, t).expect("the splice completes");
        assert_eq!(n, 7);
        let mut got = [0u8; 7];
        out_r.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"payload");
        drop(in_r);
    }

    /// A chain that fails before reaching the kernel (a step that cannot be built) completes
    /// every step: one whose ticket was already dropped is finished and leaves the table, as
    /// its kernel completion would have done. (It once stayed there as done for ever:
    /// `in_flight` never came back to 0, and lone reads were off for good.)
    fn a_failed_chain_finishes_a_step_whose_ticket_was_dropped(b: Builder) {
        let engine = b.build().unwrap();
        // A ticket whose output was taken: a Cancel of it cannot be built (ENOENT).
        let mut taken = engine.submit(op::Nop::new());
        util::wait_within(&engine, &mut taken, util::LIMIT).unwrap();
        let mut chain = engine.chain();
        let first = chain.push(op::Nop::new());
        drop(first);
        let cancel = chain.push(op::Cancel::new(&taken));
        chain.submit();
        util::assert_errno(&util::wait(&engine, cancel), libc::ENOENT, "the unbuildable step");
        util::drive_until_idle(&engine, "a failed chain");
        assert_eq!(engine.in_flight(), 0, "a step of the failed chain is still in the table");
    }
}

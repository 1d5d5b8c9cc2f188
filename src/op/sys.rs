//! Plain-data descriptions of system calls: what the epoll backend runs (inline, or on its
//! pool), and what both backends run inline at submission.
//!
//! A [`Syscall`] holds only numbers and pointers into memory that the owning operation keeps
//! alive at a stable address (heap buffers, boxed iovecs, paths and result structs), so it can
//! run inline on the engine's thread or be sent to the blocking pool while the operation itself
//! stays in the engine.

use std::os::fd::RawFd;

use super::raw::RawCall;
pub(crate) use super::sys_fs::Lookup;

/// One system call, ready to run. Results follow io_uring: a count, or a negated errno.
///
/// Public in a crate-private module: outside code can neither name nor build one.
#[derive(Debug, Clone, Copy)]
pub enum Syscall {
    /// No operation.
    Nop,
    /// `pread`/`read` (offset -1 = the file position).
    Read {
        fd: RawFd,
        buf: *mut u8,
        len: usize,
        off: i64,
    },
    /// `pwrite`/`write`.
    Write {
        fd: RawFd,
        buf: *const u8,
        len: usize,
        off: i64,
    },
    /// `preadv`.
    Readv {
        fd: RawFd,
        iov: *const libc::iovec,
        cnt: usize,
        off: i64,
    },
    /// `pwritev`.
    Writev {
        fd: RawFd,
        iov: *const libc::iovec,
        cnt: usize,
        off: i64,
    },
    /// `fsync`/`fdatasync`.
    Fsync { fd: RawFd, datasync: bool },
    /// `fallocate`.
    Fallocate {
        fd: RawFd,
        mode: i32,
        off: i64,
        len: i64,
    },
    /// `openat2`, or `openat` on kernels without it when no RESOLVE_* flag is asked.
    OpenAt2 {
        dirfd: RawFd,
        path: *const libc::c_char,
        how: *const libc::open_how,
    },
    /// `close`.
    Close { fd: RawFd },
    /// `statx`.
    Statx {
        dirfd: RawFd,
        path: *const libc::c_char,
        flags: i32,
        mask: u32,
        buf: *mut libc::statx,
    },
    /// `splice`; the offsets point into the operation's own storage (null = none).
    Splice {
        fd_in: RawFd,
        off_in: *mut i64,
        fd_out: RawFd,
        off_out: *mut i64,
        len: usize,
        flags: u32,
    },
    /// `accept4(SOCK_CLOEXEC | SOCK_NONBLOCK)`, non-blocking even on a listener in blocking
    /// mode; `addr` and `len` point into the operation's boxed peer address, or are both null
    /// (multishot accept, which reports no address).
    Accept {
        fd: RawFd,
        addr: *mut libc::sockaddr_storage,
        len: *mut libc::socklen_t,
    },
    /// `connect`, non-blocking whatever the socket's mode. "In progress" (EINPROGRESS,
    /// EALREADY) is -EAGAIN, recorded in `*in_progress` (operation-owned), and then EISCONN
    /// on a retry is success. A failed attempt reports its error on the retry.
    Connect {
        fd: RawFd,
        addr: *const libc::sockaddr_storage,
        len: libc::socklen_t,
        in_progress: *mut bool,
    },
    /// `send(MSG_DONTWAIT | MSG_NOSIGNAL)`.
    Send {
        fd: RawFd,
        buf: *const u8,
        len: usize,
    },
    /// `recv(MSG_DONTWAIT)`.
    Recv { fd: RawFd, buf: *mut u8, len: usize },
    /// `recv` into a buffer taken from an emulated provided-buffer ring (multishot receive
    /// on the epoll backend). Runs only inline on the engine's thread (never on the pool):
    /// the ring is the thread's own, kept alive by the driver.
    RecvRing {
        fd: RawFd,
        /// The `RingInner` (opaque here: the type is crate-private).
        ring: *const (),
    },
    /// `shutdown` (`how` is `SHUT_RD`, `SHUT_WR` or `SHUT_RDWR`).
    Shutdown { fd: RawFd, how: i32 },
    /// The fallback call of an [`op::Raw`](crate::op::Raw), boxed in the operation.
    Custom { call: *mut dyn RawCall },
    /// `renameat2`.
    RenameAt {
        olddir: RawFd,
        old: *const libc::c_char,
        newdir: RawFd,
        new: *const libc::c_char,
        flags: u32,
    },
    /// `unlinkat` (`AT_REMOVEDIR` for a directory).
    UnlinkAt {
        dir: RawFd,
        path: *const libc::c_char,
        flags: i32,
    },
    /// `mkdirat`.
    MkdirAt {
        dir: RawFd,
        path: *const libc::c_char,
        mode: u32,
    },
    /// `symlinkat`: a link at `dir`/`path` whose content is `target`.
    SymlinkAt {
        target: *const libc::c_char,
        dir: RawFd,
        path: *const libc::c_char,
    },
    /// `linkat`.
    LinkAt {
        olddir: RawFd,
        old: *const libc::c_char,
        newdir: RawFd,
        new: *const libc::c_char,
        flags: i32,
    },
    /// `readlinkat` into the operation's buffer.
    ReadLinkAt {
        dir: RawFd,
        path: *const libc::c_char,
        buf: *mut u8,
        len: usize,
    },
    /// `ftruncate`.
    Ftruncate { fd: RawFd, len: i64 },
    /// `posix_fadvise`.
    Fadvise {
        fd: RawFd,
        off: i64,
        len: i64,
        advice: i32,
    },
    /// `sync_file_range`.
    SyncFileRange {
        fd: RawFd,
        off: i64,
        len: i64,
        flags: u32,
    },
    /// `fgetxattr` (on `fd`) or `getxattr` (on `path`, following symlinks, as io_uring does);
    /// `len` 0 asks for the value's size.
    GetXattr {
        fd: RawFd,
        path: *const libc::c_char,
        name: *const libc::c_char,
        value: *mut u8,
        len: usize,
    },
    /// `fsetxattr` or `setxattr` (`XATTR_CREATE`, `XATTR_REPLACE` in `flags`).
    SetXattr {
        fd: RawFd,
        path: *const libc::c_char,
        name: *const libc::c_char,
        value: *const u8,
        len: usize,
        flags: i32,
    },
    /// `getdents64` into the operation's buffer.
    Getdents { fd: RawFd, buf: *mut u8, len: usize },
}

// SAFETY: a Syscall carries pointers into memory owned by an operation that the engine keeps
// alive, unmoved and untouched until this call's result is reaped (the ownership invariant);
// nothing else reads or writes that memory meanwhile, so running it on another thread is sound.
unsafe impl Send for Syscall {}

/// `openat2(2)`: a descriptor, or a negated errno.
///
/// # Safety
/// `path` must point at a NUL-terminated string alive for the call.
pub(crate) unsafe fn openat2(dirfd: RawFd, path: *const libc::c_char, how: &libc::open_how) -> i32 {
    // SAFETY: the caller's `path`; `how` is borrowed for the call and its size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd,
            path,
            how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    ret(r as isize)
}

pub(super) fn ret(r: isize) -> i32 {
    if r < 0 {
        -std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    } else {
        r.min(i32::MAX as isize) as i32
    }
}

impl Syscall {
    /// The descriptor and offset (-1: at the file position) of a read or write; `None` for
    /// other calls.
    #[inline]
    pub(crate) fn transfer(&self) -> Option<(RawFd, i64)> {
        match *self {
            Syscall::Read { fd, off, .. }
            | Syscall::Write { fd, off, .. }
            | Syscall::Readv { fd, off, .. }
            | Syscall::Writev { fd, off, .. } => Some((fd, off)),
            _ => None,
        }
    }

    /// For a `statx` of an open descriptor (empty path, `AT_EMPTY_PATH`): that descriptor.
    pub(crate) fn stat_of_fd(&self) -> Option<RawFd> {
        let Syscall::Statx {
            dirfd, path, flags, ..
        } = *self
        else {
            return None;
        };
        // SAFETY: `path` is the NUL-terminated CString of the operation that built this call,
        // alive while the call is (see `run`); its first byte is readable.
        let empty = !path.is_null() && unsafe { *path } == 0;
        (empty && flags & libc::AT_EMPTY_PATH != 0 && dirfd >= 0).then_some(dirfd)
    }

    /// Runs the call. With `nowait`, reads and writes on regular files use `RWF_NOWAIT` (fail
    /// with -EAGAIN rather than block on the disk); the caller then moves them to the pool.
    ///
    /// # Safety
    ///
    /// Every pointer in `self` must point at live memory of the operation that built it, of
    /// the length it says, that nothing else reads or writes for the call's duration: the
    /// operation is in the engine (submitted, its final completion not yet reaped), so its
    /// buffers, iovecs, paths and result structs stay alive and in place.
    pub(crate) unsafe fn run(&self, nowait: bool) -> i32 {
        match *self {
            Syscall::Nop => 0,
            Syscall::Read { .. }
            | Syscall::Write { .. }
            | Syscall::Readv { .. }
            | Syscall::Writev { .. } => {
                // SAFETY: the caller's contract.
                unsafe { self.run_transfer(nowait) }
            }
            Syscall::Accept { .. }
            | Syscall::Connect { .. }
            | Syscall::Send { .. }
            | Syscall::Recv { .. }
            | Syscall::Shutdown { .. } => {
                // SAFETY: the caller's contract.
                unsafe { self.run_socket() }
            }
            // SAFETY: the caller's contract; the ring is the driver's (see `run_multi`).
            Syscall::RecvRing { .. } => unsafe { self.run_multi() }.0,
            // SAFETY: `call` points into the Raw operation's `Rc<UnsafeCell<..>>`, alive while
            // it is in flight; only this call touches it then (the kernel never sees it on this
            // backend, and the Raw reads it again only at its completion).
            Syscall::Custom { call } => unsafe { (*call).call() },
            Syscall::RenameAt { .. }
            | Syscall::UnlinkAt { .. }
            | Syscall::MkdirAt { .. }
            | Syscall::SymlinkAt { .. }
            | Syscall::LinkAt { .. }
            | Syscall::ReadLinkAt { .. }
            | Syscall::Getdents { .. } => {
                // SAFETY: the caller's contract.
                unsafe { self.run_namespace() }
            }
            Syscall::Ftruncate { .. }
            | Syscall::Fadvise { .. }
            | Syscall::SyncFileRange { .. }
            | Syscall::GetXattr { .. }
            | Syscall::SetXattr { .. } => {
                // SAFETY: the caller's contract.
                unsafe { self.run_file_meta() }
            }
            // SAFETY: the caller's contract.
            _ => unsafe { self.run_file(nowait) },
        }
    }

    /// `run` for reads and writes.
    ///
    /// # Safety
    /// As [`Syscall::run`].
    unsafe fn run_transfer(&self, nowait: bool) -> i32 {
        let flags = if nowait { libc::RWF_NOWAIT } else { 0 };
        // SAFETY (for every arm): the caller's contract: the pointers come from the owning
        // operation, which keeps the memory alive and in place until the result is reaped;
        // lengths are the operation's own buffer sizes.
        match *self {
            Syscall::Read { fd, buf, len, off } => {
                let iov = libc::iovec {
                    iov_base: buf.cast(),
                    iov_len: len,
                };
                rw_retry_espipe(off, |off| {
                    // SAFETY: see above; `iov` lives on this stack frame for the call.
                    unsafe { preadv2(fd, &iov, 1, off, flags) }
                })
            }
            Syscall::Write { fd, buf, len, off } => {
                let iov = libc::iovec {
                    iov_base: buf as *mut _,
                    iov_len: len,
                };
                rw_retry_espipe(off, |off| {
                    // SAFETY: see above.
                    unsafe { pwritev2(fd, &iov, 1, off, flags) }
                })
            }
            Syscall::Readv { fd, iov, cnt, off } => rw_retry_espipe(off, |off| {
                // SAFETY: see above; the iovec array is owned by the operation.
                unsafe { preadv2(fd, iov, cnt as i32, off, flags) }
            }),
            Syscall::Writev { fd, iov, cnt, off } => rw_retry_espipe(off, |off| {
                // SAFETY: see above.
                unsafe { pwritev2(fd, iov, cnt as i32, off, flags) }
            }),
            _ => -libc::EINVAL,
        }
    }

    /// `run` for file and metadata calls (the pool's work) and splice.
    ///
    /// # Safety
    /// As [`Syscall::run`].
    unsafe fn run_file(&self, nowait: bool) -> i32 {
        // SAFETY (for every arm): the caller's contract, as in `run_transfer`.
        match *self {
            Syscall::Fsync { fd, datasync } => {
                // SAFETY: plain descriptor call.
                let r = unsafe {
                    if datasync {
                        libc::fdatasync(fd)
                    } else {
                        libc::fsync(fd)
                    }
                };
                ret(r as isize)
            }
            Syscall::Fallocate { fd, mode, off, len } => {
                // SAFETY: plain descriptor call.
                let r = unsafe { libc::fallocate(fd, mode, off, len) };
                ret(r as isize)
            }
            Syscall::OpenAt2 { dirfd, path, how } => {
                // SAFETY: `how` is an open_how owned by the operation.
                let asked = unsafe { *how };
                open_like_io_uring(dirfd, path, asked)
            }
            Syscall::Close { fd } => {
                // SAFETY: the operation owns the descriptor and gave it up to this call.
                let r = unsafe { libc::close(fd) };
                // Linux always releases the descriptor, even when close reports an error.
                ret(r as isize)
            }
            Syscall::Statx {
                dirfd,
                path,
                flags,
                mask,
                buf,
            } => {
                // SAFETY: path and buf are owned by the operation.
                let r = unsafe { libc::statx(dirfd, path, flags, mask, buf) };
                ret(r as isize)
            }
            Syscall::Splice {
                fd_in,
                off_in,
                fd_out,
                off_out,
                len,
                flags,
            } => {
                let extra = if nowait { libc::SPLICE_F_NONBLOCK } else { 0 };
                // SAFETY: the offsets are null or point into the operation's storage.
                let r = unsafe { libc::splice(fd_in, off_in, fd_out, off_out, len, flags | extra) };
                ret(r)
            }
            _ => -libc::EINVAL,
        }
    }

    /// `run` for socket calls, which never block.
    ///
    /// # Safety
    /// As [`Syscall::run`].
    unsafe fn run_socket(&self) -> i32 {
        // SAFETY (for every arm): the caller's contract, as in `run_transfer`.
        match *self {
            Syscall::Accept { fd, addr, len } => {
                let accept = || {
                    if !len.is_null() {
                        // SAFETY: `len` points into the operation's boxed peer address.
                        unsafe { *len = std::mem::size_of::<libc::sockaddr_storage>() as _ };
                    }
                    // SAFETY: `addr` points to that box's sockaddr_storage, `*len` bytes long, or
                    // both are null (no address wanted).
                    let r = unsafe {
                        libc::accept4(
                            fd,
                            addr.cast(),
                            len,
                            libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                        )
                    };
                    ret(r as isize)
                };
                nonblocking(fd, accept)
            }
            Syscall::Connect {
                fd,
                addr,
                len,
                in_progress,
            } => {
                let r = nonblocking(fd, || {
                    // SAFETY: `addr` points to the operation's boxed sockaddr_storage, of which
                    // the first `len` bytes hold the address.
                    ret(unsafe { libc::connect(fd, addr.cast(), len) } as isize)
                });
                // SAFETY: `in_progress` points into the operation's boxed connect state, which
                // only this call reads and writes while the operation is in flight.
                let in_progress = unsafe { &mut *in_progress };
                match r {
                    r if r == -libc::EINPROGRESS || r == -libc::EALREADY => {
                        *in_progress = true;
                        -libc::EAGAIN
                    }
                    // The attempt this operation started has succeeded (as io_uring reports).
                    r if r == -libc::EISCONN && *in_progress => 0,
                    r => r,
                }
            }
            Syscall::Send { fd, buf, len } => {
                // SAFETY: `buf` points to `len` initialised bytes of the operation's buffer.
                let r = unsafe {
                    libc::send(fd, buf.cast(), len, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
                };
                ret(r)
            }
            Syscall::Recv { fd, buf, len } => {
                // SAFETY: `buf` points to `len` writable bytes of the operation's buffer.
                let r = unsafe { libc::recv(fd, buf.cast(), len, libc::MSG_DONTWAIT) };
                ret(r)
            }
            Syscall::Shutdown { fd, how } => {
                // SAFETY: plain descriptor call.
                let r = unsafe { libc::shutdown(fd, how) };
                ret(r as isize)
            }
            _ => -libc::EINVAL,
        }
    }

    /// Runs a multishot step: the result and the completion flags it carries (the provided
    /// buffer it filled, for `RecvRing`).
    ///
    /// # Safety
    /// As [`Syscall::run`]; a `RecvRing` runs on the driver's thread, whose ring it names.
    pub(crate) unsafe fn run_multi(&self) -> (i32, u32) {
        let Syscall::RecvRing { fd, ring } = *self else {
            // SAFETY: the caller's contract.
            return (unsafe { self.run(true) }, 0);
        };
        // SAFETY: the driver keeps every emulated ring alive for its whole life and runs this
        // only on its own thread (see the variant's docs).
        let ring = unsafe { &*ring.cast::<crate::buf::ring::RingInner>() };
        let Some((bid, buf, len)) = ring.take() else {
            // Every buffer is out: as io_uring, end the multishot receive.
            return (-libc::ENOBUFS, 0);
        };
        // SAFETY: `buf` is a free buffer of `len` bytes of the ring's arena, ours until the
        // completion hands it to the caller (or it is given back just below).
        let r = ret(unsafe { libc::recv(fd, buf.cast(), len, libc::MSG_DONTWAIT) });
        if r > 0 {
            (r, crate::buf::BufRing::flags_for(bid))
        } else {
            ring.untake(bid);
            (r, 0)
        }
    }
}

impl Syscall {
    /// A positional write run as a plain, blocking `pwrite` (`Builder::inline_file_writes`):
    /// its result, or `None` when this is not a positional write or the descriptor is not
    /// seekable (a FIFO: then the backend must take it, since a plain write could block
    /// forever).
    ///
    /// # Safety
    /// As [`Syscall::run`].
    pub(crate) unsafe fn run_positional_write(&self) -> Option<i32> {
        let Syscall::Write { fd, buf, len, off } = *self else {
            return None;
        };
        if off < 0 {
            return None;
        }
        // SAFETY: `buf` and `len` are the owning operation's buffer, alive and in place for
        // the call (see the Send impl); pwrite only reads it.
        let r = ret(unsafe { libc::pwrite(fd, buf.cast(), len, off) });
        (r != -libc::ESPIPE).then_some(r)
    }

    /// Runs the call without `RWF_NOWAIT` on `fd`, a pipe, socket or other descriptor that
    /// is not a regular file and that poll(2) has just reported ready, with `O_NONBLOCK` set
    /// for the call: ready means some room or some data, not all that the call asks. A write
    /// larger than the room left in a blocking pipe would otherwise block the engine's thread
    /// until a reader took it all (tests/regressions.rs); without the flag it writes what
    /// fits, and a short count or `EAGAIN` is what the caller handles.
    ///
    /// # Safety
    /// As [`Syscall::run`].
    pub(crate) unsafe fn run_ready(&self, fd: RawFd) -> i32 {
        // SAFETY: the caller's contract.
        with_nonblock(fd, || true, || unsafe { self.run(false) })
    }

    /// Socket calls (accept4, connect, send, recv, shutdown) never block: they run with
    /// MSG_DONTWAIT or on a non-blocking socket whatever `RWF_NOWAIT` support the kernel has,
    /// so EOPNOTSUPP from them is their real result, and no poll(2) gate is needed.
    pub(crate) fn never_blocks(&self) -> bool {
        matches!(
            self,
            Syscall::Accept { .. }
                | Syscall::Connect { .. }
                | Syscall::Send { .. }
                | Syscall::Recv { .. }
                | Syscall::Shutdown { .. }
                | Syscall::RecvRing { .. }
                | Syscall::Custom { .. }
        )
    }
}

/// An open that completes without blocking when the path is in the dentry cache
/// (`RESOLVE_CACHED`, 5.12), as io_uring's inline attempt does: `None` when it would need
/// I/O (or the kernel lacks the flag, or the open may block in any case): then run it on the
/// pool.
fn open_cached(dirfd: RawFd, path: *const libc::c_char, asked: libc::open_how) -> Option<i32> {
    const RESOLVE_CACHED: u64 = 0x20;
    let flags = asked.flags as i32;
    if flags & (libc::O_CREAT | libc::O_TRUNC | libc::O_PATH) != 0
        || flags & libc::O_TMPFILE == libc::O_TMPFILE
    {
        return None;
    }
    let mut how = asked;
    how.flags |= libc::O_NONBLOCK as u64;
    how.resolve |= RESOLVE_CACHED;
    // SAFETY: `path` is a NUL-terminated CString owned by the operation.
    let r = unsafe { openat2(dirfd, path, &how) };
    // EAGAIN: not cached; EINVAL or ENOSYS: no RESOLVE_CACHED (or openat2) here, or a real
    // EINVAL that the pool's full open reports as well.
    if r == -libc::EAGAIN || r == -libc::EINVAL || r == -libc::ENOSYS {
        return None;
    }
    if r >= 0 && flags & libc::O_NONBLOCK == 0 {
        // As in `open_like_io_uring`: only the status flags asked, without O_NONBLOCK.
        return Some(with_flags_asked(r, flags));
    }
    Some(r)
}

impl Syscall {
    /// For pool work that can sometimes finish at once without blocking (an open whose path
    /// is cached), the result of that attempt; `None`: run it on the pool.
    ///
    /// # Safety
    /// As [`Syscall::run`].
    pub(crate) unsafe fn try_inline(&self, stats: &crate::stats::StatsCells) -> Option<i32> {
        match *self {
            Syscall::OpenAt2 { dirfd, path, how } => {
                crate::stats::StatsCells::bump(&stats.syscalls);
                // SAFETY: `how` is an open_how owned by the operation.
                open_cached(dirfd, path, unsafe { *how })
            }
            _ => None,
        }
    }
}

/// `openat2` with io_uring's semantics, so that both backends open alike.
///
/// io_uring first tries an open inline with `O_NONBLOCK` added (unless `O_CREAT`, `O_TRUNC` or
/// `O_TMPFILE` is asked), clears `O_NONBLOCK` again on success if it was not asked, and only
/// retries blocking on `EAGAIN`. Observable difference to a plain blocking open: a FIFO opens
/// for reading at once and fails with ENXIO for writing when it has no reader.
fn open_like_io_uring(dirfd: RawFd, path: *const libc::c_char, asked: libc::open_how) -> i32 {
    let open = |how: &libc::open_how| {
        // SAFETY: `path` is a NUL-terminated CString owned by the operation.
        let r = unsafe { openat2(dirfd, path, how) };
        if r == -libc::ENOSYS && how.resolve == 0 {
            // Before 5.6: plain openat gives the same result when no RESOLVE_* flag is asked
            // (openat2 only adds stricter checks of flags and mode).
            // SAFETY: as above.
            let r =
                unsafe { libc::openat(dirfd, path, how.flags as i32, how.mode as libc::c_uint) };
            return ret(r as isize);
        }
        r
    };
    let flags = asked.flags as i32;
    // io_uring sets O_NONBLOCK on its internal open flags, past the check that rejects it
    // with O_PATH; openat2 itself would refuse the pair, so O_PATH opens as asked.
    let blocking_only = flags & (libc::O_CREAT | libc::O_TRUNC | libc::O_PATH) != 0
        || flags & libc::O_TMPFILE == libc::O_TMPFILE;
    if blocking_only || flags & libc::O_NONBLOCK != 0 {
        return open(&asked);
    }
    let mut nonblock = asked;
    nonblock.flags |= libc::O_NONBLOCK as u64;
    match open(&nonblock) {
        r if r == -libc::EAGAIN => open(&asked),
        r if r >= 0 => with_flags_asked(r, flags),
        r => r,
    }
}

/// Gives `fd`, just opened with `O_NONBLOCK` added, the status flags asked (`F_SETFL` sets
/// only those: O_APPEND, O_DIRECT, O_NOATIME, O_NONBLOCK...): `fd`, or the error with `fd`
/// closed, since a descriptor left non-blocking behind the caller's back would turn its
/// blocking reads into EAGAIN.
fn with_flags_asked(fd: RawFd, flags: i32) -> i32 {
    // SAFETY: `fd` is the descriptor just opened, owned by this call until returned.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } == 0 {
        return fd;
    }
    let r = ret(-1);
    // SAFETY: as above; nobody else has the number yet.
    unsafe { libc::close(fd) };
    r
}

/// The file type bits (`S_IFMT`) of an open descriptor, or `None` when `fstat` fails.
pub(crate) fn file_type(fd: RawFd) -> Option<libc::mode_t> {
    // SAFETY: fstat writes only into the zeroed struct on this frame.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return None;
    }
    Some(st.st_mode & libc::S_IFMT)
}

/// Runs `call` (a socket call without a per-call non-blocking flag: accept4, connect) so that
/// it cannot block: as is when `fd` is in non-blocking mode or is not a socket (the call then
/// fails at once, ENOTSOCK); on a socket in blocking mode with `O_NONBLOCK` set for the call
/// and the previous file status flags restored after it (io_uring passes `O_NONBLOCK` to the
/// one call; from user space it can only be set on the socket, so a concurrent `F_SETFL` on
/// the same socket during the call is undone).
fn nonblocking(fd: RawFd, call: impl FnOnce() -> i32) -> i32 {
    with_nonblock(fd, || file_type(fd) == Some(libc::S_IFSOCK), call)
}

/// Runs `call` with `O_NONBLOCK` set on `fd` for the call when the descriptor is in blocking
/// mode and `applies` says so, restoring the previous flags after it (as
/// `nonblocking`, whose caveat about a concurrent `F_SETFL` holds here too).
fn with_nonblock(fd: RawFd, applies: impl FnOnce() -> bool, call: impl FnOnce() -> i32) -> i32 {
    // SAFETY: F_GETFL only reads the descriptor's status flags.
    let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if fl < 0 {
        return ret(-1);
    }
    if fl & libc::O_NONBLOCK != 0 || !applies() {
        return call();
    }
    // SAFETY: F_SETFL sets only status flags, on a descriptor the operation acts on.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) } < 0 {
        return ret(-1);
    }
    let r = call();
    // The call's result stands whatever the restore says: it may have moved data, which must
    // reach the caller. The restore fails only for a descriptor closed under the operation
    // (EBADF), which then has no flags left to restore.
    // SAFETY: as above; restores the flags read before.
    unsafe { libc::fcntl(fd, libc::F_SETFL, fl) };
    r
}

/// `preadv2`. With flags (`RWF_NOWAIT`, the inline attempts on the hot path) it is the
/// system call itself: glibc's wrapper makes the call a thread-cancellation point, which costs
/// two calls around it on every read (kernel-notes.md). Without flags, glibc's wrapper, which
/// falls back to `preadv` on kernels before 4.6.
///
/// # Safety
/// As `preadv2(2)`: `iov` points at `cnt` iovecs over memory writable for the call.
#[inline]
unsafe fn preadv2(fd: RawFd, iov: *const libc::iovec, cnt: i32, off: i64, flags: i32) -> isize {
    if flags != 0 {
        // SAFETY: the caller's contract.
        if let Some(r) = unsafe { raw_rw2(libc::SYS_preadv2, fd, iov, cnt, off, flags) } {
            return r;
        }
    }
    // SAFETY: the caller's contract.
    unsafe { libc::preadv2(fd, iov, cnt, off, flags) }
}

/// `pwritev2`, as [`preadv2`].
///
/// # Safety
/// As `pwritev2(2)`: `iov` points at `cnt` iovecs over memory readable for the call.
#[inline]
unsafe fn pwritev2(fd: RawFd, iov: *const libc::iovec, cnt: i32, off: i64, flags: i32) -> isize {
    if flags != 0 {
        // SAFETY: the caller's contract.
        if let Some(r) = unsafe { raw_rw2(libc::SYS_pwritev2, fd, iov, cnt, off, flags) } {
            return r;
        }
    }
    // SAFETY: the caller's contract.
    unsafe { libc::pwritev2(fd, iov, cnt, off, flags) }
}

/// `preadv2`/`pwritev2` (`nr`) as the bare system call, where the offset is one register
/// (64-bit targets); `None` elsewhere, for glibc's wrapper.
///
/// # Safety
/// As the call: `iov` points at `cnt` iovecs over memory valid for it.
#[inline]
#[allow(unused_variables)]
unsafe fn raw_rw2(
    nr: libc::c_long,
    fd: RawFd,
    iov: *const libc::iovec,
    cnt: i32,
    off: i64,
    flags: i32,
) -> Option<isize> {
    #[cfg(target_pointer_width = "64")]
    {
        // SAFETY: the caller's contract; the high half of the offset, 0, is ignored.
        let r = unsafe { libc::syscall(nr, fd, iov, cnt, off, 0i64, flags) };
        Some(nosys_as_unsupported(r as isize))
    }
    #[cfg(not(target_pointer_width = "64"))]
    None
}

/// A kernel without `preadv2` (before 4.6) answers ENOSYS where glibc's wrapper answers
/// EOPNOTSUPP for a call with flags: keep glibc's answer, which the callers know as "no
/// `RWF_NOWAIT` here".
#[cfg(target_pointer_width = "64")]
#[inline]
fn nosys_as_unsupported(r: isize) -> isize {
    if r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
        // SAFETY: errno is this thread's own.
        unsafe { *libc::__errno_location() = libc::EOPNOTSUPP };
    }
    r
}

/// io_uring ignores the offset on pipes and sockets; `pread` fails there with ESPIPE. Retry as
/// a plain read/write so both backends agree.
fn rw_retry_espipe(off: i64, call: impl Fn(i64) -> isize) -> i32 {
    let r = ret(call(off));
    if r == -libc::ESPIPE && off != -1 {
        return ret(call(-1));
    }
    r
}

impl trueio_fallback::Job for Syscall {
    fn run(&mut self) -> isize {
        // SAFETY: the epoll backend sends a Syscall to the pool only while its operation is
        // in the engine's table, and keeps it there until the pool's result is reaped (a
        // running job is never abandoned: cancel answers EALREADY, drop waits or leaks).
        unsafe { Syscall::run(self, false) as isize }
    }
}

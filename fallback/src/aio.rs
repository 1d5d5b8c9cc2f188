//! Kernel AIO (`io_submit`) for `O_DIRECT` files: asynchronous reads and writes without a
//! thread per operation, where io_uring is not available.
//!
//! Linux AIO is only truly asynchronous for `O_DIRECT` files; on a buffered file `io_submit`
//! does the work before it returns. Every request here is submitted with `RWF_NOWAIT`
//! (4.13), so a request that would have to block (a full device queue, a block allocation,
//! an extending write, a write that must update the file's times) completes at once with
//! `-EAGAIN` instead of stalling the submitting thread, and one on a device that takes no
//! non-blocking requests with `-EOPNOTSUPP`; the caller then runs it elsewhere (a blocking
//! pool).
//!
//! Completions are announced on an `eventfd` (`IOCB_FLAG_RESFD`): register [`Aio::fd`] in a
//! [`Poller`](crate::Poller) for [`Interest::READABLE`](crate::Interest::READABLE), and when
//! it fires call [`Aio::reap`].
//!
//! Many sandboxes that forbid io_uring still allow AIO (Docker's default seccomp profile
//! lists `io_setup`, `io_submit`, `io_getevents` and `io_destroy`); where it is refused,
//! [`Aio::new`] fails and the caller goes on without it.
//!
//! ```no_run
//! use std::os::fd::AsRawFd;
//! use std::os::unix::fs::OpenOptionsExt;
//! use trueio_fallback::{Aio, AioOp};
//!
//! # fn main() -> std::io::Result<()> {
//! let file = std::fs::OpenOptions::new()
//!     .read(true)
//!     .custom_flags(libc::O_DIRECT)
//!     .open("/var/tmp/data")?;
//! let mut aio = Aio::new(64)?;
//! // O_DIRECT wants an aligned buffer.
//! let layout = std::alloc::Layout::from_size_align(4096, 4096).unwrap();
//! // SAFETY: a non-zero size.
//! let buf = unsafe { std::alloc::alloc(layout) };
//! let op = AioOp::Read { fd: file.as_raw_fd(), buf, len: 4096, off: 0 };
//! // SAFETY: `buf` stays allocated until the completion is reaped below.
//! unsafe { aio.submit(7, op)? };
//! let mut done = Vec::new();
//! while done.is_empty() {
//!     aio.reap(&mut done)?; // a real loop waits for `aio.fd()` to be readable first
//! }
//! assert_eq!(done[0].0, 7);
//! // SAFETY: the kernel is done with it.
//! unsafe { std::alloc::dealloc(buf, layout) };
//! # Ok(())
//! # }
//! ```

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `struct iocb` of `<linux/aio_abi.h>` (little-endian layout: key, then rw_flags).
#[repr(C)]
#[derive(Default)]
struct Iocb {
    aio_data: u64,
    aio_key: u32,
    aio_rw_flags: u32,
    aio_lio_opcode: u16,
    aio_reqprio: i16,
    aio_fildes: u32,
    aio_buf: u64,
    aio_nbytes: u64,
    aio_offset: i64,
    aio_reserved2: u64,
    aio_flags: u32,
    aio_resfd: u32,
}

/// `struct io_event`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct IoEvent {
    data: u64,
    obj: u64,
    res: i64,
    res2: i64,
}

const IOCB_CMD_PREAD: u16 = 0;
const IOCB_CMD_PWRITE: u16 = 1;
const IOCB_CMD_PREADV: u16 = 7;
const IOCB_CMD_PWRITEV: u16 = 8;
const IOCB_FLAG_RESFD: u32 = 1;

#[cfg(not(target_endian = "little"))]
compile_error!("the iocb layout here is the little-endian one");

/// One positional transfer for [`Aio::submit`].
#[derive(Debug, Clone, Copy)]
pub enum AioOp {
    /// `pread` into `buf[..len]` at `off`.
    Read {
        /// The descriptor (`O_DIRECT` for a truly asynchronous read).
        fd: RawFd,
        /// Where the data goes.
        buf: *mut u8,
        /// How many bytes.
        len: usize,
        /// The file offset (not negative).
        off: i64,
    },
    /// `pwrite` of `buf[..len]` at `off`.
    Write {
        /// The descriptor.
        fd: RawFd,
        /// The data.
        buf: *const u8,
        /// How many bytes.
        len: usize,
        /// The file offset (not negative).
        off: i64,
    },
    /// `preadv` into `cnt` iovecs at `off`.
    Readv {
        /// The descriptor.
        fd: RawFd,
        /// The iovec array (copied by the kernel at submission; the buffers it names are not).
        iov: *const libc::iovec,
        /// How many iovecs.
        cnt: usize,
        /// The file offset (not negative).
        off: i64,
    },
    /// `pwritev` of `cnt` iovecs at `off`.
    Writev {
        /// The descriptor.
        fd: RawFd,
        /// The iovec array.
        iov: *const libc::iovec,
        /// How many iovecs.
        cnt: usize,
        /// The file offset (not negative).
        off: i64,
    },
}

/// A kernel AIO context with an eventfd for its completions. See the [module docs](self).
///
/// Dropping it waits for every request still in flight (`io_destroy` blocks until the
/// kernel is done with them), so no buffer is written after the drop returns.
pub struct Aio {
    ctx: libc::c_ulong,
    efd: OwnedFd,
    capacity: usize,
    in_flight: usize,
    submitted: u64,
    events: Vec<IoEvent>,
}

impl Aio {
    /// Sets up a context for up to `entries` requests in flight (`io_setup`) and its eventfd.
    /// Fails where AIO is missing or forbidden (`ENOSYS`, `EPERM` from seccomp) or the
    /// system-wide `fs.aio-max-nr` is used up (`EAGAIN`).
    pub fn new(entries: u32) -> io::Result<Aio> {
        let entries = entries.max(1);
        // SAFETY: eventfd takes no pointers.
        let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor just returned by eventfd, owned by nobody else.
        let efd = unsafe { OwnedFd::from_raw_fd(efd) };
        let mut ctx: libc::c_ulong = 0;
        // SAFETY: io_setup writes the context id into `ctx`, a valid c_ulong on this frame
        // that must be zero on entry.
        let r = unsafe {
            libc::syscall(
                libc::SYS_io_setup,
                entries as libc::c_long,
                &mut ctx as *mut libc::c_ulong,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("io_setup({entries}): {e}"),
            ));
        }
        Ok(Aio {
            ctx,
            efd,
            capacity: entries as usize,
            in_flight: 0,
            submitted: 0,
            events: vec![IoEvent::default(); (entries as usize).min(256)],
        })
    }

    /// The eventfd that turns readable when requests complete.
    pub fn fd(&self) -> RawFd {
        self.efd.as_raw_fd()
    }

    /// Requests submitted and not yet reaped.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Requests this context has taken since it was set up.
    pub fn submitted(&self) -> u64 {
        self.submitted
    }

    /// Whether another request fits (the context was sized for `entries`).
    pub fn has_room(&self) -> bool {
        self.in_flight < self.capacity
    }

    /// Submits one transfer with `RWF_NOWAIT`; its completion is reaped with `token`. An error
    /// means it was not submitted (no room, `RWF_NOWAIT` refused by this kernel or file, a
    /// negative offset, a descriptor AIO does not take): run it some other way.
    ///
    /// # Safety
    ///
    /// Every buffer the operation names (and, until this call returns, its iovec array) must
    /// stay valid, and not be used otherwise, until [`Aio::reap`] returns its completion or
    /// the `Aio` is dropped.
    pub unsafe fn submit(&mut self, token: u64, op: AioOp) -> io::Result<()> {
        let (opcode, fd, buf, n, off) = match op {
            AioOp::Read { fd, buf, len, off } => (IOCB_CMD_PREAD, fd, buf as u64, len, off),
            AioOp::Write { fd, buf, len, off } => (IOCB_CMD_PWRITE, fd, buf as u64, len, off),
            AioOp::Readv { fd, iov, cnt, off } => (IOCB_CMD_PREADV, fd, iov as u64, cnt, off),
            AioOp::Writev { fd, iov, cnt, off } => (IOCB_CMD_PWRITEV, fd, iov as u64, cnt, off),
        };
        if off < 0 || fd < 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        if !self.has_room() {
            return Err(io::Error::from_raw_os_error(libc::EAGAIN));
        }
        let mut cb = Iocb {
            aio_data: token,
            aio_rw_flags: libc::RWF_NOWAIT as u32,
            aio_lio_opcode: opcode,
            aio_fildes: fd as u32,
            aio_buf: buf,
            aio_nbytes: n as u64,
            aio_offset: off,
            aio_flags: IOCB_FLAG_RESFD,
            aio_resfd: self.efd.as_raw_fd() as u32,
            ..Iocb::default()
        };
        let mut list = [&mut cb as *mut Iocb];
        // SAFETY: one valid iocb on this frame, read by the kernel during the call only; the
        // memory it names is kept valid by the caller (this function's contract).
        let r = unsafe {
            libc::syscall(
                libc::SYS_io_submit,
                self.ctx,
                1 as libc::c_long,
                list.as_mut_ptr(),
            )
        };
        match r {
            1 => {
                self.in_flight += 1;
                self.submitted += 1;
                Ok(())
            }
            r if r < 0 => Err(io::Error::last_os_error()),
            _ => Err(io::Error::from_raw_os_error(libc::EAGAIN)),
        }
    }

    /// Appends every finished request as `(token, result)` (bytes, or `-errno`; `-EAGAIN`
    /// means it would have blocked and did nothing, `-EOPNOTSUPP` that the device takes no
    /// non-blocking requests: run those elsewhere) and returns how many. Resets the eventfd
    /// first, so a completion that lands during the call fires it again. On an error the
    /// eventfd is signalled again, so that what was not reaped is not forgotten; what was
    /// appended before it is still in `out`.
    pub fn reap(&mut self, out: &mut Vec<(u64, i64)>) -> io::Result<usize> {
        let mut count = [0u8; 8];
        // SAFETY: reads at most 8 bytes into the array on this frame; EAGAIN (nothing
        // pending) is fine.
        unsafe { libc::read(self.efd.as_raw_fd(), count.as_mut_ptr().cast(), 8) };
        let mut total = 0;
        while self.in_flight > 0 {
            let zero = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            let want = self.events.len().min(self.in_flight);
            // SAFETY: `events` has room for `want` io_events; a zero timeout never blocks.
            let n = unsafe {
                libc::syscall(
                    libc::SYS_io_getevents,
                    self.ctx,
                    0 as libc::c_long,
                    want as libc::c_long,
                    self.events.as_mut_ptr(),
                    &zero as *const libc::timespec,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                let one = 1u64.to_ne_bytes();
                // SAFETY: writes 8 bytes from the array on this frame to our eventfd.
                unsafe { libc::write(self.efd.as_raw_fd(), one.as_ptr().cast(), 8) };
                return Err(e);
            }
            let n = n as usize;
            for ev in &self.events[..n] {
                out.push((ev.data, ev.res));
            }
            self.in_flight -= n;
            total += n;
            if n < want {
                break;
            }
        }
        Ok(total)
    }
}

impl Drop for Aio {
    fn drop(&mut self) {
        // SAFETY: our context, destroyed once; io_destroy waits for the requests in flight,
        // so the memory they name is not written after this returns.
        unsafe { libc::syscall(libc::SYS_io_destroy, self.ctx) };
    }
}

impl std::fmt::Debug for Aio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aio")
            .field("in_flight", &self.in_flight)
            .field("capacity", &self.capacity)
            .finish()
    }
}

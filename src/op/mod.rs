//! The operation vocabulary.
//!
//! Each operation is a value that owns everything the kernel may touch while it is in flight
//! (buffer, iovecs, path, `statx` buffer, timespec, a handle on its file) and knows, for each
//! backend, how it runs:
//! - on io_uring, the SQE it builds;
//! - on the epoll backend, its readiness decision ([`Plan`]): try the system call now, wait for
//!   readiness and retry, or run it on the blocking pool.
//!
//! An operation is moved into the engine by [`Engine::submit`] and comes back, with its result
//! and all its resources, in one completion (`Op::Output`).
//!
//! [`Engine::submit`]: crate::Engine::submit

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::squeue;

use std::rc::Rc;

use crate::fd::{Fd, FileTable, Target};

mod cancel;
mod close;
mod fallocate;
mod fixed;
mod fsync;
pub(crate) mod net;
mod nop;
mod open;
mod poll;
mod rw;
mod splice;
mod statx;
pub(crate) mod sys;
mod timeout;
mod vectored;

pub use cancel::Cancel;
pub use close::Close;
pub use fallocate::Fallocate;
pub use fixed::{ReadFixed, WriteFixed};
pub use fsync::Fsync;
pub use net::{Accept, AcceptMulti, Connect, Recv, RecvMulti, Send, SendZc, Shutdown};
pub use nop::Nop;
pub use open::{OpenAt2, OpenAt2Direct, OpenHow};
pub use poll::PollAdd;
pub use rw::{Read, Write};
pub use splice::Splice;
pub use statx::Statx;
pub use sys::Syscall;
pub use timeout::{LinkTimeout, Timeout};
pub use vectored::{Readv, Writev};

/// An operation the engine can run. Implemented by the types of this module only.
pub trait Op: 'static + Sized {
    /// What the completion gives back: the result and every resource the operation owned.
    type Output;

    #[doc(hidden)]
    /// The SQE for io_uring, without user_data. `Err(errno)` completes the operation at once
    /// with that error, without the kernel.
    fn uring_sqe(&mut self, ctx: &BuildCtx<'_>) -> Result<squeue::Entry, i32>;

    #[doc(hidden)]
    /// The readiness decision for the epoll backend. `Err(errno)` completes the operation at
    /// once with that error, as `uring_sqe`'s does on io_uring.
    fn plan(&mut self, ctx: &BuildCtx<'_>) -> Result<Plan, i32>;

    #[doc(hidden)]
    /// For a read of a file: the call itself, which the io_uring backend may try inline with
    /// `RWF_NOWAIT` when the read is alone (nothing else in flight to batch with).
    fn lone_read(&mut self, _ctx: &BuildCtx<'_>) -> Option<Syscall> {
        None
    }

    #[doc(hidden)]
    /// For a positional write: the call itself, which the engine runs inline when asked to
    /// (`Builder::inline_file_writes`).
    fn inline_write(&mut self, _ctx: &BuildCtx<'_>) -> Option<Syscall> {
        None
    }

    #[doc(hidden)]
    /// For a positional read or write of a file: its descriptor number, so that the io_uring
    /// backend can send a transfer on an `O_DIRECT` file to the kernel at once.
    fn file_fd(&self, _ctx: &BuildCtx<'_>) -> Option<RawFd> {
        None
    }

    #[doc(hidden)]
    /// For a call that never waits when its descriptor is on a local filesystem (`statx` of
    /// an open descriptor): that descriptor. The engine then runs the call inline, on both
    /// backends, instead of sending it to io_uring's workers (which run every `statx`) or to
    /// the blocking pool.
    fn local_fd(&self) -> Option<RawFd> {
        None
    }

    #[doc(hidden)]
    /// The shared descriptor a readiness wait would be on, if the operation holds one (see
    /// the epoll backend's registration renewal).
    fn fd_owner(&self) -> Option<std::rc::Weak<std::os::fd::OwnedFd>> {
        None
    }

    #[doc(hidden)]
    /// For a cancel: the user_data of the operation it targets (see `Engine`'s `push_op`).
    fn cancel_target(&self) -> Option<u64> {
        None
    }

    #[doc(hidden)]
    /// Turns the raw result (a count, or a negated errno) into the output.
    fn complete(self, res: i32, flags: u32) -> Self::Output;
}

/// An operation that completes many times from one submission (multishot), each completion
/// an item of its [`Subscription`](crate::Subscription).
pub trait Multishot: Op {
    /// What each completion gives.
    type Item;

    #[doc(hidden)]
    /// Turns one completion into an item.
    fn item(&mut self, res: i32, flags: u32) -> Self::Item;
}

/// What an operation may ask of the engine while it is built.
#[doc(hidden)]
#[derive(Debug)]
pub struct BuildCtx<'a> {
    pub(crate) engine_id: u64,
    pub(crate) files: &'a Rc<FileTable>,
    /// True when fixed slots are real io_uring direct descriptors; false when the engine
    /// emulates them with a table of ordinary descriptors (epoll, or registration refused).
    pub(crate) fixed_files_native: bool,
}

impl BuildCtx<'_> {
    /// The target as the io_uring backend passes it: a fixed slot stays a slot when fixed
    /// files are native, else becomes the emulated slot's descriptor.
    pub(crate) fn target(&self, fd: &Fd) -> Result<Target, i32> {
        match fd.target() {
            Target::Fixed(slot) if !self.fixed_files_native => self
                .files
                .emulated_fd(slot)
                .map(Target::Fd)
                .ok_or(libc::EBADF),
            t => Ok(t),
        }
    }

    pub(crate) fn files_rc(&self) -> Rc<FileTable> {
        self.files.clone()
    }

    /// Resolves a target to a descriptor number for the epoll backend (fixed slots are
    /// emulated by a table of descriptors).
    pub(crate) fn raw(&self, t: Target) -> Result<RawFd, i32> {
        match t {
            Target::Fd(fd) => Ok(fd),
            Target::Fixed(slot) => self.files.emulated_fd(slot).ok_or(libc::EBADF),
        }
    }
}

/// The epoll backend's readiness decision for one operation.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub enum Plan {
    /// Complete at once with this (non-negative) result; errors are `plan`'s `Err`.
    Done(i32),
    /// A read or write-like call on `fd`: try it now (regular files with `RWF_NOWAIT`); on
    /// EAGAIN wait for `interest` on a socket or pipe, or go to the pool for a regular file.
    Io {
        sys: Syscall,
        fd: RawFd,
        interest: Interest,
    },
    /// Always on the blocking pool (open, statx, fsync, fallocate, close).
    Pool(Syscall),
    /// A multishot call on `fd`: every success is a completion with more to follow; retried
    /// until it would block, then again on readiness; an error ends it.
    Multi {
        sys: Syscall,
        fd: RawFd,
        interest: Interest,
    },
    /// Wait until `fd` reports any of the poll(2) `events`, then complete with the revents.
    Poll { fd: RawFd, events: u32 },
    /// A timer: complete with -ETIME after `after`, or 0 once `count` other operations
    /// completed (0 = only the timer).
    Timer { after: Duration, count: u32 },
    /// A link timeout for the previous operation in its chain.
    LinkTimer { after: Duration },
    /// Cancel the operation with this user_data.
    Cancel { user_data: u64 },
}

/// Which readiness an I/O operation waits for on the epoll backend.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Wait until readable.
    Read,
    /// Wait until writable.
    Write,
}

/// Turns a raw result into `io::Result` (the one place that does so).
pub(crate) fn result(res: i32) -> io::Result<u32> {
    if res < 0 {
        Err(io::Error::from_raw_os_error(-res))
    } else {
        Ok(res as u32)
    }
}

/// Builds an io-uring opcode for a descriptor or a fixed slot (the crate types differ).
macro_rules! with_target {
    ($t:expr, |$f:ident| $build:expr) => {
        match $t {
            $crate::fd::Target::Fd(n) => {
                let $f = io_uring::types::Fd(n);
                $build
            }
            $crate::fd::Target::Fixed(s) => {
                let $f = io_uring::types::Fixed(s);
                $build
            }
        }
    };
}
pub(crate) use with_target;

/// The largest single transfer: io_uring lengths are u32, read(2) caps at 0x7ffff000.
pub(crate) const MAX_IO: usize = 0x7fff_f000;

//! What the backends ask of an operation: the build context, and the epoll backend's
//! readiness decision. Public in a private module: unnameable outside the crate.

use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::Duration;

use super::Syscall;
use crate::errno::Errno;
use crate::fd::{Fd, FileTable, Target};
use crate::user_data::UserData;

/// What an operation may ask of the engine while it is built.
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
    pub(crate) fn target(&self, fd: &Fd) -> Result<Target, Errno> {
        match fd.target() {
            Target::Fixed(slot) if !self.fixed_files_native => self
                .files
                .emulated_fd(slot)
                .map(Target::Fd)
                .ok_or(Errno(libc::EBADF)),
            t => Ok(t),
        }
    }

    pub(crate) fn files_rc(&self) -> Rc<FileTable> {
        self.files.clone()
    }

    /// Resolves a target to a descriptor number for the epoll backend (fixed slots are
    /// emulated by a table of descriptors).
    pub(crate) fn raw(&self, t: Target) -> Result<RawFd, Errno> {
        match t {
            Target::Fd(fd) => Ok(fd),
            Target::Fixed(slot) => self.files.emulated_fd(slot).ok_or(Errno(libc::EBADF)),
        }
    }
}

/// The epoll backend's readiness decision for one operation.
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
    Cancel { user_data: UserData },
}

/// Which readiness an I/O operation waits for on the epoll backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Wait until readable.
    Read,
    /// Wait until writable.
    Write,
}

/// Which of the backends' inline fast paths an operation may take (each derived from its
/// [`Plan`]: see [`Plan::positional`] and [`Syscall::stat_of_fd`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fast {
    /// None.
    None,
    /// A read or write: at an offset, of a file, it may run inline (a lone cached read, an
    /// inline write), and on an `O_DIRECT` file it enters the kernel at once.
    Transfer,
    /// A `statx`: of an open descriptor on a local filesystem, it runs inline.
    Stat,
    /// A `getdents64`: of a directory on a filesystem held in memory, it runs inline.
    Dirents,
    /// A namespace call (mkdir, unlink, rename, link, symlink): of single names in
    /// directories on a filesystem held in memory, it runs inline.
    Namespace,
}

/// Whether an operation has an io_uring opcode; one without it (on this kernel, or at all)
/// runs its [`Plan`] there as on the epoll backend: on the blocking pool, or at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRing {
    /// Its opcode is one the engine requires of every ring.
    Always,
    /// It needs this opcode, which older kernels lack (or the builder masked).
    Needs(u8),
    /// io_uring has no opcode for it (`getdents64`).
    Never,
}

impl Plan {
    /// The call of a positional transfer (a read or write at an offset), if this is one.
    #[inline]
    pub(crate) fn positional(&self) -> Option<Syscall> {
        match *self {
            Plan::Io { sys, .. } if sys.transfer().is_some_and(|(_, off)| off >= 0) => Some(sys),
            _ => None,
        }
    }
}

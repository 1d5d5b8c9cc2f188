//! The extension point for io_uring opcodes trueio does not wrap yet.

use std::cell::UnsafeCell;
use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::rc::Rc;

use io_uring::squeue;

use super::{result, BuildCtx, Interest, Op, OpImpl, Plan, Syscall};
use crate::errno::Errno;

/// A hand-built io_uring entry and the value that owns what it points at.
///
/// For an opcode trueio has no operation for yet. The engine pushes the entry as given
/// (setting its own user_data and, in a chain, its link flag), keeps `owner` until the
/// kernel's final completion, then gives it back with the result: the same ownership rules as
/// every other operation. Building one is `unsafe`: the engine cannot check what the entry's
/// pointers point at.
///
/// On the epoll backend there is no ring: the operation completes with `EOPNOTSUPP` unless a
/// readiness plan was given with [`Raw::fallback`], a call the backend runs when the
/// descriptor is ready (or on its blocking pool), with the same result convention.
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// use std::os::fd::AsRawFd;
/// use trueio::op::{Fallback, Raw};
/// use trueio::Engine;
///
/// let engine = Engine::new()?;
/// let file = std::fs::File::open("Cargo.toml")?;
/// let fd = file.as_raw_fd();
/// let mut buf = vec![0u8; 11];
/// let entry = io_uring::opcode::Read::new(io_uring::types::Fd(fd), buf.as_mut_ptr(), 11)
///     .offset(0)
///     .build();
/// // SAFETY: the entry points at `buf`'s heap memory, which `buf` owns and does not move when
/// // the Vec is moved into the operation; `file` outlives the operation (waited for below).
/// let op = unsafe { Raw::new(entry, buf) }.fallback(Fallback::Blocking, move |buf| {
///     // SAFETY: `buf` is the owner, ours for the call; `fd` is open.
///     let r = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
///     if r < 0 { -std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO) } else { r as i32 }
/// });
/// let (n, buf) = engine.submit(op).wait()?;
/// assert_eq!(n?, 11);
/// assert_eq!(&buf, b"[workspace]");
/// # Ok(()) }
/// ```
pub struct Raw<T> {
    entry: squeue::Entry,
    /// Where the epoll backend runs the fallback, if one was given.
    when: Option<Fallback>,
    /// Shared with the epoll backend's `Syscall::Custom`, which points into it while the
    /// operation is in flight: an `Rc` (unlike a `Box`) does not claim unique access to its
    /// contents each time it moves, so the pointer stays valid as the operation moves
    /// between the ticket and the engine's table. Never cloned.
    state: Rc<UnsafeCell<RawState<T>>>,
}

/// Where the epoll backend runs a [`Raw`] operation's fallback call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Try the call now; when it answers `-EAGAIN`, again each time the descriptor is
    /// readable (a socket or pipe).
    Readable(RawFd),
    /// As `Readable`, for writability.
    Writable(RawFd),
    /// On the backend's blocking pool (the call may block: a regular file, metadata).
    Blocking,
}

/// The owner and the fallback call, behind a pointer the epoll backend keeps while the
/// operation moves.
struct RawState<T> {
    owner: T,
    call: Option<FallbackCall<T>>,
}

type FallbackCall<T> = Box<dyn FnMut(&mut T) -> i32 + Send>;

/// A fallback call as the epoll backend runs it (type-erased over the owner).
pub trait RawCall {
    /// Runs the call: a count, or a negated errno.
    fn call(&mut self) -> i32;
}

impl<T> RawCall for RawState<T> {
    fn call(&mut self) -> i32 {
        match &mut self.call {
            Some(f) => f(&mut self.owner),
            None => -libc::EOPNOTSUPP,
        }
    }
}

impl<T: 'static> Raw<T> {
    /// Wraps `entry`, whose memory `owner` keeps alive.
    ///
    /// # Safety
    ///
    /// The caller promises that, from the submission of this operation until its completion
    /// is given back:
    /// - every pointer in `entry` (buffers, iovecs, paths, structs the kernel reads or
    ///   writes) points either at memory that `owner` owns on the heap, which does not move
    ///   when `owner` is moved (a `Vec`'s or `Box`'s contents, say), or at memory that lives
    ///   and stays put for the whole program; and the lengths in `entry` stay within it;
    /// - nothing else reads or writes that memory while the kernel may (the engine gives it to
    ///   nobody: `owner` is moved in and comes back only with the completion);
    /// - the descriptors `entry` names stay open as long (a number closed and reused would
    ///   send the request elsewhere);
    /// - `entry` asks for exactly one completion, or for several of which the last lacks
    ///   `IORING_CQE_F_MORE`: no `IOSQE_CQE_SKIP_SUCCESS`, no `IOSQE_IO_LINK` or
    ///   `IOSQE_IO_HARDLINK` of its own (use [`Engine::chain`](crate::Engine::chain)), no
    ///   buffer selection (`IOSQE_BUFFER_SELECT`) from a group the engine does not know.
    pub unsafe fn new(entry: squeue::Entry, owner: T) -> Raw<T> {
        Raw {
            entry,
            when: None,
            state: Rc::new(UnsafeCell::new(RawState { owner, call: None })),
        }
    }
}

impl<T: Send + 'static> Raw<T> {
    /// Gives the epoll backend a way to run the operation: `call` gets the owner and returns
    /// what the kernel would have (a count, or a negated errno such as `-libc::EAGAIN`).
    /// Without it the operation completes with `EOPNOTSUPP` there. On io_uring the entry
    /// runs and `call` is never used.
    pub fn fallback(
        mut self,
        when: Fallback,
        call: impl FnMut(&mut T) -> i32 + Send + 'static,
    ) -> Raw<T> {
        let Some(state) = Rc::get_mut(&mut self.state) else {
            unreachable!("a Raw's state is never shared before its submission");
        };
        state.get_mut().call = Some(Box::new(call));
        self.when = Some(when);
        self
    }
}

impl<T: 'static> Op for Raw<T> {
    type Output = (io::Result<u32>, T);
}

impl<T: 'static> OpImpl for Raw<T> {
    fn uring_sqe(&mut self, _ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno> {
        Ok(self.entry.clone())
    }

    fn plan(&mut self, _ctx: &BuildCtx<'_>) -> Result<Plan, Errno> {
        let when = self.when.ok_or(Errno(libc::EOPNOTSUPP))?;
        let state: *mut RawState<T> = self.state.get();
        let sys = Syscall::Custom { call: state };
        Ok(match when {
            Fallback::Readable(fd) => Plan::Io {
                sys,
                fd,
                interest: Interest::Read,
            },
            Fallback::Writable(fd) => Plan::Io {
                sys,
                fd,
                interest: Interest::Write,
            },
            Fallback::Blocking => Plan::Pool(sys),
        })
    }

    fn complete(self, res: i32, _flags: u32) -> <Self as Op>::Output {
        match Rc::try_unwrap(self.state) {
            Ok(state) => (result(res), state.into_inner().owner),
            Err(_) => unreachable!("a Raw's state is never shared"),
        }
    }
}

impl<T> fmt::Debug for Raw<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Raw")
            .field("opcode", &self.entry.get_opcode())
            .field("fallback", &self.when)
            .finish()
    }
}

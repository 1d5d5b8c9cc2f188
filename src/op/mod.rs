//! The operation vocabulary.
//!
//! Each operation is a value that owns everything the kernel may touch while it is in flight
//! (buffer, iovecs, path, `statx` buffer, timespec, a handle on its file) and knows, for each
//! backend, how it runs:
//! - on io_uring, the SQE it builds;
//! - on the epoll backend, its readiness decision: try the system call now, wait for
//!   readiness and retry, or run it on the blocking pool.
//!
//! An operation is moved into the engine by [`Engine::submit`] and comes back, with its result
//! and all its resources, in one completion (`Op::Output`).
//!
//! [`Engine::submit`]: crate::Engine::submit

use std::io;

mod cancel;
mod close;
mod fallocate;
mod file_meta;
mod fixed;
mod fsync;
mod namespace;
pub(crate) mod net;
mod nop;
mod open;
mod path;
mod plan;
mod poll;
mod raw;
mod rw;
mod splice;
mod statx;
pub(crate) mod sys;
mod sys_fs;
mod timeout;
mod vectored;

pub use cancel::{Cancel, OpId};
pub use close::Close;
pub use fallocate::Fallocate;
pub use file_meta::{Fadvise, Ftruncate, GetXattr, Getdents, SetXattr, SyncFileRange};
pub use fixed::{ReadFixed, WriteFixed};
pub use fsync::Fsync;
pub use namespace::{LinkAt, MkdirAt, ReadLinkAt, RenameAt, SymlinkAt, UnlinkAt};
pub use net::{Accept, AcceptMulti, Connect, Recv, RecvMulti, Send, SendZc, Shutdown};
pub use nop::Nop;
pub use open::{OpenAt2, OpenAt2Direct, OpenHow};
pub use poll::PollAdd;
pub use raw::{Fallback, Raw};
pub use rw::{Read, Write};
pub use splice::Splice;
pub use statx::Statx;

pub(crate) use plan::{BuildCtx, Fast, Interest, OnRing, Plan};
pub(crate) use sys::Syscall;
pub use timeout::{LinkTimeout, Timeout};
pub use vectored::{Readv, Writev};

/// An operation the engine can run: one of this module's types, or a [`Raw`] entry.
///
/// The trait is sealed: what an operation hands the kernel (an SQE with pointers into its
/// own memory, or the system call the epoll backend runs) is built by hooks on a private
/// supertrait, so safe code outside the crate can neither implement it nor call them. An
/// opcode trueio does not wrap yet goes through [`Raw`], whose constructor is `unsafe`.
///
/// ```
/// // The module's operations are `Op`s, and generic code names the trait as usual:
/// fn output_of<T: trueio::op::Op>(t: trueio::Ticket<T>) -> std::io::Result<T::Output> {
///     t.wait()
/// }
/// let engine = trueio::Engine::new()?;
/// output_of(engine.submit(trueio::op::Nop::new()))??;
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// Each snippet below is the smallest that shows one refusal, so that it fails to compile for
/// that reason alone (stable rustdoc does not check the error codes it names).
///
/// ```compile_fail,E0277
/// // Outside the crate, `Op` cannot be implemented: its supertrait is private.
/// struct Mine;
/// impl trueio::op::Op for Mine {
///     type Output = ();
/// }
/// ```
///
/// ```compile_fail,E0603
/// // Nor can the system call behind an operation be named, let alone run.
/// let _ = trueio::op::sys::Syscall::Nop;
/// ```
///
/// ```compile_fail,E0432
/// use trueio::op::Syscall;
/// ```
pub trait Op: sealed::OpImpl + 'static + Sized {
    /// What the completion gives back: the result and every resource the operation owned.
    type Output;
}

/// An operation that completes many times from one submission (multishot), each completion
/// an item of its [`Subscription`](crate::Subscription). Sealed, as [`Op`].
pub trait Multishot: Op + sealed::MultishotImpl {
    /// What each completion gives.
    type Item;
}

/// The hooks behind [`Op`] and [`Multishot`]: public in a private module, so nameable inside
/// the crate only.
pub(crate) mod sealed {
    use io_uring::squeue;

    use super::{BuildCtx, Fast, OnRing, Plan};
    use crate::errno::Errno;

    /// How the engine runs an operation on each backend.
    pub trait OpImpl {
        /// The SQE for io_uring, without user_data. `Err(errno)` completes the operation at
        /// once with that error, without the kernel.
        fn uring_sqe(&mut self, ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno>;

        /// The readiness decision for the epoll backend. `Err(errno)` completes the operation
        /// at once with that error, as `uring_sqe`'s does on io_uring.
        fn plan(&mut self, ctx: &BuildCtx<'_>) -> Result<Plan, Errno>;

        /// Which inline fast path of the backends the operation may take; what the path
        /// needs (the call, its descriptor) comes from [`plan`](Self::plan).
        const FAST: Fast = Fast::None;

        /// Whether io_uring has an opcode for it; without one, `uring_sqe` is never called
        /// and the operation runs its [`plan`](Self::plan) (the pool, or at once).
        const RING: OnRing = OnRing::Always;

        /// False when this instance cannot be said in an SQE (a length beyond the opcode's
        /// 32 bits): it then runs its plan, as where the opcode is missing.
        fn fits_sqe(&self) -> bool {
            true
        }

        /// The shared descriptor a readiness wait would be on, if the operation holds one
        /// (see the epoll backend's registration renewal).
        fn fd_owner(&self) -> Option<std::rc::Weak<std::os::fd::OwnedFd>> {
            None
        }

        /// For a cancel: the user_data of the operation it targets (see `Engine`'s `push_op`).
        fn cancel_target(&self) -> Option<crate::user_data::UserData> {
            None
        }

        /// Turns the raw result (a count, or a negated errno) into the output.
        fn complete(self, res: i32, flags: u32) -> <Self as super::Op>::Output
        where
            Self: super::Op;
    }

    /// How a multishot operation turns each completion into an item.
    pub trait MultishotImpl {
        /// Turns one completion into an item.
        fn item(&mut self, res: i32, flags: u32) -> <Self as super::Multishot>::Item
        where
            Self: super::Multishot;
    }
}

pub(crate) use sealed::{MultishotImpl, OpImpl};

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

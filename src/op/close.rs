use std::io;
use std::os::fd::{IntoRawFd, OwnedFd, RawFd};

use io_uring::{opcode, squeue, types};

use super::{result, BuildCtx, Op, OpImpl, Plan, Syscall};
use crate::errno::Errno;
use crate::fd::FixedFile;

/// Closes a descriptor, or empties a fixed-file slot.
///
/// The descriptor is given up at submission: whatever the outcome, it is closed (Linux
/// releases the number even when `close` reports an error such as EIO from a late write-back).
#[derive(Debug)]
pub struct Close {
    target: CloseTarget,
}

#[derive(Debug)]
enum CloseTarget {
    /// `None` once the descriptor was handed to the close call.
    Fd(Option<OwnedFd>),
    Fixed(FixedFile),
}

impl Close {
    /// Closes an owned descriptor.
    pub fn new(fd: OwnedFd) -> Close {
        Close {
            target: CloseTarget::Fd(Some(fd)),
        }
    }

    /// Empties a fixed-file slot (the slot itself is reused only after every clone of the
    /// [`FixedFile`] is gone).
    pub fn fixed(file: FixedFile) -> Close {
        Close {
            target: CloseTarget::Fixed(file),
        }
    }

    /// Hands the descriptor over to the close call: taken out of this operation, or out of
    /// an emulated fixed slot (epoll, or fixed files not registered).
    fn take_fd(&mut self) -> Result<RawFd, Errno> {
        let fd = match &mut self.target {
            CloseTarget::Fd(fd) => fd.take(),
            CloseTarget::Fixed(f) => {
                let slot = f.slot() as usize;
                f.table()
                    .emulated
                    .borrow_mut()
                    .get_mut(slot)
                    .and_then(|s| s.take())
            }
        };
        fd.map(IntoRawFd::into_raw_fd).ok_or(Errno(libc::EBADF))
    }
}

impl Op for Close {
    type Output = io::Result<()>;
}

impl OpImpl for Close {
    fn uring_sqe(&mut self, ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno> {
        if let CloseTarget::Fixed(f) = &self.target {
            if ctx.fixed_files_native {
                // Our shadow of the slot (see `Engine::register_file`) goes now, so that the
                // file is closed once the kernel drops its reference, as without a shadow.
                drop(
                    f.table()
                        .emulated
                        .borrow_mut()
                        .get_mut(f.slot() as usize)
                        .and_then(|s| s.take()),
                );
                return Ok(opcode::Close::new(types::Fixed(f.slot())).build());
            }
        }
        Ok(opcode::Close::new(types::Fd(self.take_fd()?)).build())
    }

    fn plan(&mut self, _ctx: &BuildCtx<'_>) -> Result<Plan, Errno> {
        Ok(Plan::Pool(Syscall::Close {
            fd: self.take_fd()?,
        }))
    }

    fn complete(self, res: i32, _flags: u32) -> <Self as Op>::Output {
        result(res).map(|_| ())
    }
}

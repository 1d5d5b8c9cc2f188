use std::io;
use std::os::fd::{IntoRawFd, OwnedFd, RawFd};

use io_uring::{opcode, squeue, types};

use super::{result, BuildCtx, Op, Plan, Syscall};
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
    Fd(Option<OwnedFd>),
    Raw(Option<RawFd>),
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

    fn raw(&mut self) -> Option<RawFd> {
        if let CloseTarget::Fd(fd) = &mut self.target {
            let raw = fd.take()?.into_raw_fd();
            // Ownership moves to the close call; keep the number only.
            self.target = CloseTarget::Raw(Some(raw));
        }
        match &mut self.target {
            CloseTarget::Raw(fd) => fd.take(),
            _ => None,
        }
    }
}

/// Takes the descriptor out of an emulated fixed slot; the close call owns it from here.
fn take_emulated(f: &FixedFile) -> Option<RawFd> {
    let slot = f.slot() as usize;
    let fd = f.table().emulated.borrow_mut().get_mut(slot)?.take()?;
    Some(fd.into_raw_fd())
}

impl Op for Close {
    type Output = io::Result<()>;

    fn uring_sqe(&mut self, ctx: &BuildCtx<'_>) -> Result<squeue::Entry, i32> {
        if let CloseTarget::Fixed(f) = &self.target {
            if ctx.fixed_files_native {
                return Ok(opcode::Close::new(types::Fixed(f.slot())).build());
            }
            let fd = take_emulated(f).ok_or(libc::EBADF)?;
            return Ok(opcode::Close::new(types::Fd(fd)).build());
        }
        let fd = self.raw().ok_or(libc::EBADF)?;
        Ok(opcode::Close::new(types::Fd(fd)).build())
    }

    fn plan(&mut self, _ctx: &BuildCtx<'_>) -> Plan {
        if let CloseTarget::Fixed(f) = &self.target {
            return match take_emulated(f) {
                Some(fd) => Plan::Pool(Syscall::Close { fd }),
                None => Plan::Done(-libc::EBADF),
            };
        }
        match self.raw() {
            Some(fd) => Plan::Pool(Syscall::Close { fd }),
            None => Plan::Done(-libc::EBADF),
        }
    }

    fn complete(self, res: i32, _flags: u32) -> Self::Output {
        result(res).map(|_| ())
    }
}

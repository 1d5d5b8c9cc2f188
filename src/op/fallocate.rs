use std::io;

use io_uring::{opcode, squeue};

use super::{result, with_target, BuildCtx, Op, OpImpl, Plan, Syscall};
use crate::errno::Errno;
use crate::fd::Fd;

/// Allocates (or with `mode` flags such as `FALLOC_FL_PUNCH_HOLE`, deallocates) file space.
#[derive(Debug)]
pub struct Fallocate {
    fd: Fd,
    offset: u64,
    len: u64,
    mode: i32,
}

impl Fallocate {
    /// `fallocate(fd, mode, offset, len)`; mode 0 allocates and extends the file size.
    pub fn new(fd: impl Into<Fd>, offset: u64, len: u64, mode: i32) -> Fallocate {
        Fallocate {
            fd: fd.into(),
            offset,
            len,
            mode,
        }
    }
}

impl Op for Fallocate {
    type Output = io::Result<()>;
}

impl OpImpl for Fallocate {
    fn uring_sqe(&mut self, ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno> {
        let Fallocate {
            fd,
            offset,
            len,
            mode,
        } = self;
        Ok(with_target!(ctx.target(fd)?, |f| opcode::Fallocate::new(
            f, *len
        )
        .offset(*offset)
        .mode(*mode)
        .build()))
    }

    fn plan(&mut self, ctx: &BuildCtx<'_>) -> Result<Plan, Errno> {
        if self.offset > i64::MAX as u64 || self.len > i64::MAX as u64 {
            return Err(Errno(libc::EFBIG));
        }
        Ok(Plan::Pool(Syscall::Fallocate {
            fd: ctx.raw(self.fd.target())?,
            mode: self.mode,
            off: self.offset as i64,
            len: self.len as i64,
        }))
    }

    fn complete(self, res: i32, _flags: u32) -> <Self as Op>::Output {
        result(res).map(|_| ())
    }
}

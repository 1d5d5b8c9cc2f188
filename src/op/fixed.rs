use std::io;

use io_uring::{opcode, squeue};

use super::{result, with_target, BuildCtx, Interest, Op, Plan, Syscall};
use crate::buf::{FixedBuf, IoBuf, IoBufMut};
use crate::fd::Fd;

/// Reads into a registered buffer (`IORING_OP_READ_FIXED`).
///
/// When the buffer's arena is not registered with this engine (registration refused, or the
/// epoll backend), it runs as a plain read with the same result: the engine degrades, the
/// caller's code does not change. [`Engine::report`](crate::Engine::report) says which.
#[derive(Debug)]
pub struct ReadFixed {
    fd: Fd,
    buf: FixedBuf,
    offset: i64,
}

impl ReadFixed {
    /// Reads at `offset` into `buf`, up to its capacity.
    pub fn at(fd: impl Into<Fd>, buf: FixedBuf, offset: u64) -> ReadFixed {
        ReadFixed {
            fd: fd.into(),
            buf,
            offset: offset.min(i64::MAX as u64) as i64,
        }
    }

    /// Reads at the file's current position.
    pub fn stream(fd: impl Into<Fd>, buf: FixedBuf) -> ReadFixed {
        ReadFixed {
            fd: fd.into(),
            buf,
            offset: -1,
        }
    }
}

impl Op for ReadFixed {
    type Output = (io::Result<usize>, FixedBuf);

    fn uring_sqe(&mut self, ctx: &BuildCtx<'_>) -> Result<squeue::Entry, i32> {
        let ReadFixed { fd, buf, offset } = self;
        let len = buf.bytes_total() as u32;
        let ptr = buf.stable_mut_ptr();
        let off = *offset as u64;
        Ok(match buf.registered_for(ctx.engine_id) {
            Some(index) => with_target!(ctx.target(fd)?, |f| opcode::ReadFixed::new(
                f, ptr, len, index
            )
            .offset(off)
            .build()),
            None => with_target!(ctx.target(fd)?, |f| opcode::Read::new(f, ptr, len)
                .offset(off)
                .build()),
        })
    }

    fn plan(&mut self, ctx: &BuildCtx<'_>) -> Result<Plan, i32> {
        let fd = ctx.raw(self.fd.target())?;
        Ok(Plan::Io {
            sys: Syscall::Read {
                fd,
                buf: self.buf.stable_mut_ptr(),
                len: self.buf.bytes_total(),
                off: self.offset,
            },
            fd,
            interest: Interest::Read,
        })
    }

    fn complete(mut self, res: i32, _flags: u32) -> Self::Output {
        let r = result(res).map(|n| n as usize);
        if let Ok(n) = r {
            // SAFETY: the first n bytes were written by the read.
            unsafe { self.buf.set_init(n) };
        }
        (r, self.buf)
    }
}

/// Writes a registered buffer's bytes (`IORING_OP_WRITE_FIXED`); a plain write when the
/// buffer is not registered with this engine.
#[derive(Debug)]
pub struct WriteFixed {
    fd: Fd,
    buf: FixedBuf,
    offset: i64,
}

impl WriteFixed {
    /// Writes `buf[..len]` at `offset`.
    pub fn at(fd: impl Into<Fd>, buf: FixedBuf, offset: u64) -> WriteFixed {
        WriteFixed {
            fd: fd.into(),
            buf,
            offset: offset.min(i64::MAX as u64) as i64,
        }
    }

    /// Writes at the file's current position.
    pub fn stream(fd: impl Into<Fd>, buf: FixedBuf) -> WriteFixed {
        WriteFixed {
            fd: fd.into(),
            buf,
            offset: -1,
        }
    }
}

impl Op for WriteFixed {
    type Output = (io::Result<usize>, FixedBuf);

    fn uring_sqe(&mut self, ctx: &BuildCtx<'_>) -> Result<squeue::Entry, i32> {
        let WriteFixed { fd, buf, offset } = self;
        let len = buf.bytes_init() as u32;
        let ptr = buf.stable_ptr();
        let off = *offset as u64;
        Ok(match buf.registered_for(ctx.engine_id) {
            Some(index) => with_target!(ctx.target(fd)?, |f| opcode::WriteFixed::new(
                f, ptr, len, index
            )
            .offset(off)
            .build()),
            None => with_target!(ctx.target(fd)?, |f| opcode::Write::new(f, ptr, len)
                .offset(off)
                .build()),
        })
    }

    fn plan(&mut self, ctx: &BuildCtx<'_>) -> Result<Plan, i32> {
        let fd = ctx.raw(self.fd.target())?;
        Ok(Plan::Io {
            sys: Syscall::Write {
                fd,
                buf: self.buf.stable_ptr(),
                len: self.buf.bytes_init(),
                off: self.offset,
            },
            fd,
            interest: Interest::Write,
        })
    }

    fn complete(self, res: i32, _flags: u32) -> Self::Output {
        (result(res).map(|n| n as usize), self.buf)
    }
}

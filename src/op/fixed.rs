use std::io;

use io_uring::{opcode, squeue};

use super::{with_target, BuildCtx, Fast, Op, OpImpl, Plan, Read, Write};
use crate::buf::{FixedBuf, IoBuf, IoBufMut};
use crate::errno::Errno;
use crate::fd::Fd;

/// Reads into a registered buffer (`IORING_OP_READ_FIXED`).
///
/// When the buffer's arena is not registered with this engine (registration refused, or the
/// epoll backend), it runs as a plain [`Read`] with the same result: the engine degrades, the
/// caller's code does not change. [`Engine::report`](crate::Engine::report) says which.
///
/// `B` is a [`FixedBuf`] or a [`Slice`](crate::buf::Slice) of one.
#[derive(Debug)]
pub struct ReadFixed<B: IoBufMut = FixedBuf>(Read<B>);

impl<B: IoBufMut> ReadFixed<B> {
    /// Reads at `offset` into `buf`, up to its capacity.
    pub fn at(fd: impl Into<Fd>, buf: B, offset: u64) -> ReadFixed<B> {
        ReadFixed(Read::at(fd, buf, offset))
    }

    /// Reads at the file's current position.
    pub fn stream(fd: impl Into<Fd>, buf: B) -> ReadFixed<B> {
        ReadFixed(Read::stream(fd, buf))
    }
}

impl<B: IoBufMut> Op for ReadFixed<B> {
    type Output = (io::Result<usize>, B);
}

impl<B: IoBufMut> OpImpl for ReadFixed<B> {
    const FAST: Fast = Fast::Transfer;

    fn fd_owner(&self) -> Option<std::rc::Weak<std::os::fd::OwnedFd>> {
        self.0.fd_owner()
    }

    fn uring_sqe(&mut self, ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno> {
        let Read { fd, buf, offset } = &mut self.0;
        let Some(index) = buf.registered_for(ctx.engine_id) else {
            return self.0.uring_sqe(ctx);
        };
        let (ptr, len) = (buf.stable_mut_ptr(), buf.bytes_total() as u32);
        Ok(with_target!(ctx.target(fd)?, |f| opcode::ReadFixed::new(
            f, ptr, len, index
        )
        .offset(*offset as u64)
        .build()))
    }

    fn plan(&mut self, ctx: &BuildCtx<'_>) -> Result<Plan, Errno> {
        self.0.plan(ctx)
    }

    fn complete(self, res: i32, flags: u32) -> <Self as Op>::Output {
        self.0.complete(res, flags)
    }
}

/// Writes a registered buffer's bytes (`IORING_OP_WRITE_FIXED`); a plain [`Write`] when the
/// buffer is not registered with this engine.
#[derive(Debug)]
pub struct WriteFixed<B: IoBuf = FixedBuf>(Write<B>);

impl<B: IoBuf> WriteFixed<B> {
    /// Writes `buf[..len]` at `offset`.
    pub fn at(fd: impl Into<Fd>, buf: B, offset: u64) -> WriteFixed<B> {
        WriteFixed(Write::at(fd, buf, offset))
    }

    /// Writes at the file's current position.
    pub fn stream(fd: impl Into<Fd>, buf: B) -> WriteFixed<B> {
        WriteFixed(Write::stream(fd, buf))
    }
}

impl<B: IoBuf> Op for WriteFixed<B> {
    type Output = (io::Result<usize>, B);
}

impl<B: IoBuf> OpImpl for WriteFixed<B> {
    const FAST: Fast = Fast::Transfer;

    fn fd_owner(&self) -> Option<std::rc::Weak<std::os::fd::OwnedFd>> {
        self.0.fd_owner()
    }

    fn uring_sqe(&mut self, ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno> {
        let Write { fd, buf, offset } = &self.0;
        let Some(index) = buf.registered_for(ctx.engine_id) else {
            return self.0.uring_sqe(ctx);
        };
        let (ptr, len) = (buf.stable_ptr(), buf.bytes_init() as u32);
        Ok(with_target!(ctx.target(fd)?, |f| opcode::WriteFixed::new(
            f, ptr, len, index
        )
        .offset(*offset as u64)
        .build()))
    }

    fn plan(&mut self, ctx: &BuildCtx<'_>) -> Result<Plan, Errno> {
        self.0.plan(ctx)
    }

    fn complete(self, res: i32, flags: u32) -> <Self as Op>::Output {
        self.0.complete(res, flags)
    }
}

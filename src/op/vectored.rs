use std::io;

use io_uring::{opcode, squeue};

use super::{result, with_target, BuildCtx, Fast, Interest, Op, OpImpl, Plan, Syscall};
use crate::buf::{IoBuf, IoBufMut};
use crate::errno::Errno;
use crate::fd::Fd;

/// Reads into several owned buffers in order (`preadv`).
///
/// Each buffer is filled from its start to its capacity before the next; the count read is
/// spread over them in that order when they are given back.
#[derive(Debug)]
pub struct Readv<B> {
    fd: Fd,
    bufs: Vec<B>,
    iovecs: Box<[libc::iovec]>,
    offset: i64,
}

impl<B: IoBufMut> Readv<B> {
    /// Reads at `offset`.
    pub fn at(fd: impl Into<Fd>, mut bufs: Vec<B>, offset: u64) -> Readv<B> {
        let iovecs = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.stable_mut_ptr().cast(),
                iov_len: b.bytes_total(),
            })
            .collect();
        Readv {
            fd: fd.into(),
            bufs,
            iovecs,
            offset: offset.min(i64::MAX as u64) as i64,
        }
    }
}

impl<B: IoBufMut> Op for Readv<B> {
    type Output = (io::Result<usize>, Vec<B>);
}

impl<B: IoBufMut> OpImpl for Readv<B> {
    const FAST: Fast = Fast::Transfer;

    fn fd_owner(&self) -> Option<std::rc::Weak<std::os::fd::OwnedFd>> {
        self.fd.owner()
    }

    fn uring_sqe(&mut self, ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno> {
        let Readv {
            fd,
            bufs: _,
            iovecs,
            offset,
        } = self;
        let cnt = u32::try_from(iovecs.len()).map_err(|_| Errno(libc::EINVAL))?;
        Ok(with_target!(ctx.target(fd)?, |f| opcode::Readv::new(
            f,
            iovecs.as_ptr(),
            cnt
        )
        .offset(*offset as u64)
        .build()))
    }

    fn plan(&mut self, ctx: &BuildCtx<'_>) -> Result<Plan, Errno> {
        let fd = ctx.raw(self.fd.target())?;
        Ok(Plan::Io {
            sys: Syscall::Readv {
                fd,
                iov: self.iovecs.as_ptr(),
                cnt: self.iovecs.len(),
                off: self.offset,
            },
            fd,
            interest: Interest::Read,
        })
    }

    fn complete(mut self, res: i32, _flags: u32) -> <Self as Op>::Output {
        let r = result(res).map(|n| n as usize);
        if let Ok(mut left) = r {
            for b in &mut self.bufs {
                let n = left.min(b.bytes_total());
                // SAFETY: the kernel filled the buffers in order; this one got n bytes.
                unsafe { b.set_init(n) };
                left -= n;
            }
        }
        (r, self.bufs)
    }
}

/// Writes the initialised bytes of several owned buffers in order (`pwritev`).
#[derive(Debug)]
pub struct Writev<B> {
    fd: Fd,
    bufs: Vec<B>,
    iovecs: Box<[libc::iovec]>,
    offset: i64,
}

impl<B: IoBuf> Writev<B> {
    /// Writes at `offset`.
    pub fn at(fd: impl Into<Fd>, bufs: Vec<B>, offset: u64) -> Writev<B> {
        let iovecs = bufs
            .iter()
            .map(|b| libc::iovec {
                iov_base: b.stable_ptr() as *mut _,
                iov_len: b.bytes_init(),
            })
            .collect();
        Writev {
            fd: fd.into(),
            bufs,
            iovecs,
            offset: offset.min(i64::MAX as u64) as i64,
        }
    }

    /// Writes at the file's current position.
    pub fn stream(fd: impl Into<Fd>, bufs: Vec<B>) -> Writev<B> {
        let mut w = Self::at(fd, bufs, 0);
        w.offset = -1;
        w
    }
}

impl<B: IoBuf> Op for Writev<B> {
    type Output = (io::Result<usize>, Vec<B>);
}

impl<B: IoBuf> OpImpl for Writev<B> {
    const FAST: Fast = Fast::Transfer;

    fn fd_owner(&self) -> Option<std::rc::Weak<std::os::fd::OwnedFd>> {
        self.fd.owner()
    }

    fn uring_sqe(&mut self, ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno> {
        let Writev {
            fd,
            bufs: _,
            iovecs,
            offset,
        } = self;
        let cnt = u32::try_from(iovecs.len()).map_err(|_| Errno(libc::EINVAL))?;
        Ok(with_target!(ctx.target(fd)?, |f| opcode::Writev::new(
            f,
            iovecs.as_ptr(),
            cnt
        )
        .offset(*offset as u64)
        .build()))
    }

    fn plan(&mut self, ctx: &BuildCtx<'_>) -> Result<Plan, Errno> {
        let fd = ctx.raw(self.fd.target())?;
        Ok(Plan::Io {
            sys: Syscall::Writev {
                fd,
                iov: self.iovecs.as_ptr(),
                cnt: self.iovecs.len(),
                off: self.offset,
            },
            fd,
            interest: Interest::Write,
        })
    }

    fn complete(self, res: i32, _flags: u32) -> <Self as Op>::Output {
        (result(res).map(|n| n as usize), self.bufs)
    }
}

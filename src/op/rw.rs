use std::io;

use io_uring::{opcode, squeue};

use super::{result, with_target, BuildCtx, Fast, Interest, Op, OpImpl, Plan, Syscall, MAX_IO};
use crate::buf::{IoBuf, IoBufMut};
use crate::errno::Errno;
use crate::fd::Fd;

/// Reads into an owned buffer, at an offset or at the file's current position.
///
/// Fills the buffer from its start up to its capacity ([`IoBuf::bytes_total`]). The output is
/// the count read (0 at end of file) and the buffer, whose initialised length is raised to the
/// count read if that is larger. A short count is not an error.
///
/// ```no_run
/// # fn main() -> std::io::Result<()> {
/// use trueio::{op::Read, Engine};
/// let engine = Engine::new()?;
/// let file = std::fs::File::open("/etc/hostname")?;
/// let (n, buf) = engine.submit(Read::at(&file, Vec::with_capacity(4096), 0)).wait()?;
/// println!("{} bytes: {:?}", n?, String::from_utf8_lossy(&buf));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Read<B> {
    pub(super) fd: Fd,
    pub(super) buf: B,
    pub(super) offset: i64,
}

impl<B: IoBufMut> Read<B> {
    /// Reads at `offset` (ignored on pipes and sockets, as by io_uring).
    pub fn at(fd: impl Into<Fd>, buf: B, offset: u64) -> Read<B> {
        Read {
            fd: fd.into(),
            buf,
            offset: offset.min(i64::MAX as u64) as i64,
        }
    }

    /// Reads at the file's current position and advances it (pipes, sockets, terminals).
    pub fn stream(fd: impl Into<Fd>, buf: B) -> Read<B> {
        Read {
            fd: fd.into(),
            buf,
            offset: -1,
        }
    }
}

impl<B: IoBufMut> Op for Read<B> {
    type Output = (io::Result<usize>, B);
}

impl<B: IoBufMut> OpImpl for Read<B> {
    const FAST: Fast = Fast::Transfer;

    fn fd_owner(&self) -> Option<std::rc::Weak<std::os::fd::OwnedFd>> {
        self.fd.owner()
    }

    fn uring_sqe(&mut self, ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno> {
        let Read { fd, buf, offset } = self;
        let len = buf.bytes_total().min(MAX_IO) as u32;
        let ptr = buf.stable_mut_ptr();
        Ok(with_target!(ctx.target(fd)?, |f| opcode::Read::new(
            f, ptr, len
        )
        .offset(*offset as u64)
        .build()))
    }

    fn plan(&mut self, ctx: &BuildCtx<'_>) -> Result<Plan, Errno> {
        let Read { fd, buf, offset } = self;
        let fd = ctx.raw(fd.target())?;
        let sys = Syscall::Read {
            fd,
            buf: buf.stable_mut_ptr(),
            len: buf.bytes_total().min(MAX_IO),
            off: *offset,
        };
        Ok(Plan::Io {
            sys,
            fd,
            interest: Interest::Read,
        })
    }

    fn complete(mut self, res: i32, _flags: u32) -> <Self as Op>::Output {
        let r = result(res).map(|n| n as usize);
        if let Ok(n) = r {
            // SAFETY: the kernel (or the syscall) initialised the first n bytes, n <= total.
            unsafe { self.buf.set_init(n) };
        }
        (r, self.buf)
    }
}

/// Writes the initialised bytes of an owned buffer, at an offset or at the file's position.
///
/// The output is the count written, which may be short (a full pipe, a signal, a full disk
/// part-way), and the buffer.
#[derive(Debug)]
pub struct Write<B> {
    pub(super) fd: Fd,
    pub(super) buf: B,
    pub(super) offset: i64,
}

impl<B: IoBuf> Write<B> {
    /// Writes at `offset` (ignored on pipes and sockets).
    pub fn at(fd: impl Into<Fd>, buf: B, offset: u64) -> Write<B> {
        Write {
            fd: fd.into(),
            buf,
            offset: offset.min(i64::MAX as u64) as i64,
        }
    }

    /// Writes at the file's current position (or appends with `O_APPEND`).
    pub fn stream(fd: impl Into<Fd>, buf: B) -> Write<B> {
        Write {
            fd: fd.into(),
            buf,
            offset: -1,
        }
    }
}

impl<B: IoBuf> Op for Write<B> {
    type Output = (io::Result<usize>, B);
}

impl<B: IoBuf> OpImpl for Write<B> {
    const FAST: Fast = Fast::Transfer;

    fn fd_owner(&self) -> Option<std::rc::Weak<std::os::fd::OwnedFd>> {
        self.fd.owner()
    }

    fn uring_sqe(&mut self, ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno> {
        let Write { fd, buf, offset } = self;
        let len = buf.bytes_init().min(MAX_IO) as u32;
        let ptr = buf.stable_ptr();
        Ok(with_target!(ctx.target(fd)?, |f| opcode::Write::new(
            f, ptr, len
        )
        .offset(*offset as u64)
        .build()))
    }

    fn plan(&mut self, ctx: &BuildCtx<'_>) -> Result<Plan, Errno> {
        let Write { fd, buf, offset } = self;
        let fd = ctx.raw(fd.target())?;
        Ok(Plan::Io {
            sys: Syscall::Write {
                fd,
                buf: buf.stable_ptr(),
                len: buf.bytes_init().min(MAX_IO),
                off: *offset,
            },
            fd,
            interest: Interest::Write,
        })
    }

    fn complete(self, res: i32, _flags: u32) -> <Self as Op>::Output {
        (result(res).map(|n| n as usize), self.buf)
    }
}

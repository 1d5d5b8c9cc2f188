use std::io;

use io_uring::{opcode, squeue, types};

use super::{result, BuildCtx, Interest, Op, OpImpl, Plan, Syscall, MAX_IO};
use crate::errno::Errno;
use crate::fd::{Fd, Target};

/// Moves up to `len` bytes between two descriptors, one of which is a pipe, without copying
/// through user space (`splice(2)`). Offsets apply to non-pipe ends (`None` = file position).
#[derive(Debug)]
pub struct Splice {
    fd_in: Fd,
    fd_out: Fd,
    offs: Box<[i64; 2]>,
    has_off: [bool; 2],
    len: u32,
    flags: u32,
}

impl Splice {
    /// Splices `len` bytes from `fd_in` (at `off_in`) to `fd_out` (at `off_out`).
    pub fn new(
        fd_in: impl Into<Fd>,
        off_in: Option<u64>,
        fd_out: impl Into<Fd>,
        off_out: Option<u64>,
        len: usize,
    ) -> Splice {
        let o = |x: Option<u64>| x.map(|v| v.min(i64::MAX as u64) as i64).unwrap_or(-1);
        Splice {
            fd_in: fd_in.into(),
            fd_out: fd_out.into(),
            offs: Box::new([o(off_in), o(off_out)]),
            has_off: [off_in.is_some(), off_out.is_some()],
            len: len.min(MAX_IO) as u32,
            flags: 0,
        }
    }

    /// Adds `SPLICE_F_*` flags (e.g. `SPLICE_F_MOVE`, `SPLICE_F_MORE`).
    pub fn flags(mut self, flags: u32) -> Splice {
        self.flags = flags;
        self
    }
}

/// True when a pipe or socket has bytes to read (`FIONREAD`).
fn has_data(fd: i32) -> bool {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into `n`, a live local.
    let r = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    r == 0 && n > 0
}

impl Op for Splice {
    type Output = io::Result<usize>;
}

impl OpImpl for Splice {
    fn uring_sqe(&mut self, ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno> {
        let (off_in, off_out) = (self.offs[0], self.offs[1]);
        let len = self.len;
        let flags = self.flags;
        let e = match (ctx.target(&self.fd_in)?, ctx.target(&self.fd_out)?) {
            (Target::Fd(i), Target::Fd(o)) => {
                opcode::Splice::new(types::Fd(i), off_in, types::Fd(o), off_out, len)
                    .flags(flags)
                    .build()
            }
            (Target::Fixed(i), Target::Fd(o)) => {
                opcode::Splice::new(types::Fixed(i), off_in, types::Fd(o), off_out, len)
                    .flags(flags)
                    .build()
            }
            (Target::Fd(i), Target::Fixed(o)) => {
                opcode::Splice::new(types::Fd(i), off_in, types::Fixed(o), off_out, len)
                    .flags(flags)
                    .build()
            }
            (Target::Fixed(i), Target::Fixed(o)) => {
                opcode::Splice::new(types::Fixed(i), off_in, types::Fixed(o), off_out, len)
                    .flags(flags)
                    .build()
            }
        };
        Ok(e)
    }

    fn plan(&mut self, ctx: &BuildCtx<'_>) -> Result<Plan, Errno> {
        let fd_in = ctx.raw(self.fd_in.target())?;
        let fd_out = ctx.raw(self.fd_out.target())?;
        let p = self.offs.as_mut_ptr();
        let sys = Syscall::Splice {
            fd_in,
            off_in: if self.has_off[0] {
                p
            } else {
                std::ptr::null_mut()
            },
            off_out: if self.has_off[1] {
                // SAFETY: p points to a 2-element array; p + 1 is its second element.
                unsafe { p.add(1) }
            } else {
                std::ptr::null_mut()
            },
            fd_out,
            len: self.len as usize,
            flags: self.flags,
        };
        // Wait on the end that blocks: an empty pipe or socket on the input side, else the
        // output (a full pipe or socket). Waiting on an input that has data while the output
        // is full would never see a new edge.
        let in_is_stream = matches!(
            super::sys::file_type(fd_in),
            Some(libc::S_IFIFO | libc::S_IFSOCK)
        );
        let (fd, interest) = if in_is_stream && !has_data(fd_in) {
            (fd_in, Interest::Read)
        } else {
            (fd_out, Interest::Write)
        };
        Ok(Plan::Io { sys, fd, interest })
    }

    fn complete(self, res: i32, _flags: u32) -> <Self as Op>::Output {
        result(res).map(|n| n as usize)
    }
}

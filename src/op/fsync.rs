use std::io;

use io_uring::{opcode, squeue, types::FsyncFlags};

use super::{result, with_target, BuildCtx, Op, OpImpl, Plan, Syscall};
use crate::errno::Errno;
use crate::fd::Fd;

/// Flushes a file's data (and metadata, unless `data_only`) to stable storage.
#[derive(Debug)]
pub struct Fsync {
    fd: Fd,
    datasync: bool,
}

impl Fsync {
    /// `fsync(2)`: data and metadata.
    pub fn new(fd: impl Into<Fd>) -> Fsync {
        Fsync {
            fd: fd.into(),
            datasync: false,
        }
    }

    /// `fdatasync(2)`: data, and only the metadata needed to read it back.
    pub fn data_only(fd: impl Into<Fd>) -> Fsync {
        Fsync {
            fd: fd.into(),
            datasync: true,
        }
    }
}

impl Op for Fsync {
    type Output = io::Result<()>;
}

impl OpImpl for Fsync {
    fn uring_sqe(&mut self, ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno> {
        let Fsync { fd, datasync } = self;
        let flags = if *datasync {
            FsyncFlags::DATASYNC
        } else {
            FsyncFlags::empty()
        };
        Ok(with_target!(ctx.target(fd)?, |f| opcode::Fsync::new(f)
            .flags(flags)
            .build()))
    }

    fn plan(&mut self, ctx: &BuildCtx<'_>) -> Result<Plan, Errno> {
        Ok(Plan::Pool(Syscall::Fsync {
            fd: ctx.raw(self.fd.target())?,
            datasync: self.datasync,
        }))
    }

    fn complete(self, res: i32, _flags: u32) -> <Self as Op>::Output {
        result(res).map(|_| ())
    }
}

use std::io;

use io_uring::{opcode, squeue};

use super::{result, with_target, BuildCtx, Op, OpImpl, Plan};
use crate::errno::Errno;
use crate::fd::Fd;

/// Waits until a descriptor is ready (`poll(2)` events such as `POLLIN`, `POLLOUT`), once.
/// Completes with the events that are ready (`POLLERR`/`POLLHUP` are always reported).
#[derive(Debug)]
pub struct PollAdd {
    fd: Fd,
    events: u32,
}

impl PollAdd {
    /// Waits for any of `events` on `fd`.
    pub fn new(fd: impl Into<Fd>, events: u32) -> PollAdd {
        PollAdd {
            fd: fd.into(),
            events,
        }
    }
}

impl Op for PollAdd {
    type Output = io::Result<u32>;
}

impl OpImpl for PollAdd {
    fn fd_owner(&self) -> Option<std::rc::Weak<std::os::fd::OwnedFd>> {
        self.fd.owner()
    }

    fn uring_sqe(&mut self, ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno> {
        let PollAdd { fd, events } = self;
        Ok(with_target!(ctx.target(fd)?, |f| opcode::PollAdd::new(
            f, *events
        )
        .build()))
    }

    fn plan(&mut self, ctx: &BuildCtx<'_>) -> Result<Plan, Errno> {
        Ok(Plan::Poll {
            fd: ctx.raw(self.fd.target())?,
            events: self.events,
        })
    }

    fn complete(self, res: i32, _flags: u32) -> <Self as Op>::Output {
        result(res)
    }
}

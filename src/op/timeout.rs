use std::io;
use std::time::Duration;

use io_uring::{opcode, squeue, types};

use super::{BuildCtx, Op, OpImpl, Plan};
use crate::errno::Errno;

fn timespec(d: Duration) -> Box<types::Timespec> {
    Box::new(
        types::Timespec::new()
            .sec(d.as_secs())
            .nsec(d.subsec_nanos()),
    )
}

/// A timer: completes when `after` has passed (`Ok(())`), or earlier once `count` other
/// operations of the engine have completed (`Ok(())` as well, see [`Timeout::or_count`]).
/// A cancelled timer completes with `ECANCELED`.
#[derive(Debug)]
pub struct Timeout {
    after: Duration,
    ts: Box<types::Timespec>,
    count: u32,
}

impl Timeout {
    /// Fires after `after`.
    pub fn after(after: Duration) -> Timeout {
        Timeout {
            after,
            ts: timespec(after),
            count: 0,
        }
    }

    /// Fires after `after`, or as soon as `count` other operations have completed.
    pub fn or_count(after: Duration, count: u32) -> Timeout {
        Timeout {
            count,
            ..Self::after(after)
        }
    }
}

impl Op for Timeout {
    type Output = io::Result<()>;
}

impl OpImpl for Timeout {
    fn uring_sqe(&mut self, _ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno> {
        let Timeout {
            after: _,
            ts,
            count,
        } = self;
        Ok(opcode::Timeout::new(&**ts).count(*count).build())
    }

    fn plan(&mut self, _ctx: &BuildCtx<'_>) -> Result<Plan, Errno> {
        Ok(Plan::Timer {
            after: self.after,
            count: self.count,
        })
    }

    fn complete(self, res: i32, _flags: u32) -> <Self as Op>::Output {
        // Expiry (-ETIME) is this operation's normal outcome.
        if res == -libc::ETIME || res >= 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(-res))
        }
    }
}

/// A deadline for the operation before it in a chain (`IORING_OP_LINK_TIMEOUT`).
///
/// Push it right after the operation it guards, with [`Chain`](crate::Chain). If the deadline
/// passes first, the guarded operation is cancelled (it completes with `ECANCELED`, or with what
/// it had done) and this completes with `Err(ETIME)`; if the operation finishes first, this
/// completes with `Err(ECANCELED)`.
#[derive(Debug)]
pub struct LinkTimeout {
    after: Duration,
    ts: Box<types::Timespec>,
}

impl LinkTimeout {
    /// A deadline `after` from the guarded operation's start.
    pub fn new(after: Duration) -> LinkTimeout {
        LinkTimeout {
            after,
            ts: timespec(after),
        }
    }
}

impl Op for LinkTimeout {
    type Output = io::Result<()>;
}

impl OpImpl for LinkTimeout {
    fn uring_sqe(&mut self, _ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno> {
        Ok(opcode::LinkTimeout::new(&*self.ts).build())
    }

    fn plan(&mut self, _ctx: &BuildCtx<'_>) -> Result<Plan, Errno> {
        Ok(Plan::LinkTimer { after: self.after })
    }

    fn complete(self, res: i32, _flags: u32) -> <Self as Op>::Output {
        super::result(res).map(|_| ())
    }
}

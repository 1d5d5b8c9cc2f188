use std::io;

use io_uring::{opcode, squeue};

use super::{result, BuildCtx, Op, OpImpl, Plan};
use crate::errno::Errno;
use crate::user_data::UserData;

/// Asks the engine to cancel another operation (`IORING_OP_ASYNC_CANCEL`).
///
/// Completes with `Ok(())` when the target was found and cancelled, `ENOENT` when it had
/// already completed (or never existed), `EALREADY` when it is running and cannot be stopped
/// (it will complete on its own). Either way the target's own completion still arrives and
/// says what happened to it: cancelled, or done with its result and its buffer.
/// [`Ticket::cancel`](crate::Ticket::cancel) does the same without a completion of its own.
#[derive(Debug, Clone, Copy)]
pub struct Cancel {
    target: OpId,
}

/// Which operation a [`Cancel`] targets: made from a `&Ticket` or a `&Subscription`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpId(Option<UserData>);

impl OpId {
    /// No operation in flight: a ticket that completed at its submission, or whose output
    /// was taken.
    pub(crate) const NONE: OpId = OpId(None);

    pub(crate) fn new(ud: UserData) -> OpId {
        OpId(Some(ud))
    }
}

impl Cancel {
    /// Targets the operation behind `target` (`&ticket`, `&subscription`).
    pub fn new(target: impl Into<OpId>) -> Cancel {
        Cancel {
            target: target.into(),
        }
    }
}

impl Op for Cancel {
    type Output = io::Result<()>;
}

impl OpImpl for Cancel {
    fn uring_sqe(&mut self, _ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno> {
        let ud = self.target.0.ok_or(Errno(libc::ENOENT))?;
        Ok(opcode::AsyncCancel::new(ud.to_raw()).build())
    }

    fn plan(&mut self, _ctx: &BuildCtx<'_>) -> Result<Plan, Errno> {
        let user_data = self.target.0.ok_or(Errno(libc::ENOENT))?;
        Ok(Plan::Cancel { user_data })
    }

    fn cancel_target(&self) -> Option<UserData> {
        self.target.0
    }

    fn complete(self, res: i32, _flags: u32) -> <Self as Op>::Output {
        result(res).map(|_| ())
    }
}

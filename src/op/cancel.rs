use std::io;

use io_uring::{opcode, squeue};

use super::{result, BuildCtx, Op, OpImpl, Plan};
use crate::engine::Ticket;

/// Asks the engine to cancel another operation (`IORING_OP_ASYNC_CANCEL`).
///
/// Completes with `Ok(())` when the target was found and cancelled, `ENOENT` when it had
/// already completed (or never existed), `EALREADY` when it is running and cannot be stopped
/// (it will complete on its own). Either way the target's own completion still arrives and
/// says what happened to it: cancelled, or done with its result and its buffer.
/// [`Ticket::cancel`] does the same without a completion of its own.
#[derive(Debug, Clone, Copy)]
pub struct Cancel {
    user_data: u64,
}

impl Cancel {
    /// Targets the operation behind `ticket`.
    pub fn new<T: Op>(ticket: &Ticket<T>) -> Cancel {
        Cancel {
            user_data: ticket.user_data(),
        }
    }
}

impl Op for Cancel {
    type Output = io::Result<()>;
}

impl OpImpl for Cancel {
    fn uring_sqe(&mut self, _ctx: &BuildCtx<'_>) -> Result<squeue::Entry, i32> {
        Ok(opcode::AsyncCancel::new(self.user_data).build())
    }

    fn plan(&mut self, _ctx: &BuildCtx<'_>) -> Result<Plan, i32> {
        Ok(Plan::Cancel {
            user_data: self.user_data,
        })
    }

    fn cancel_target(&self) -> Option<u64> {
        Some(self.user_data)
    }

    fn complete(self, res: i32, _flags: u32) -> <Self as Op>::Output {
        result(res).map(|_| ())
    }
}

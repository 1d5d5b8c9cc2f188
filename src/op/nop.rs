use std::io;

use io_uring::{opcode, squeue};

use super::{result, BuildCtx, Op, OpImpl, Plan};
use crate::errno::Errno;

/// Does nothing; completes with `Ok(())`. Measures the engine's own overhead.
#[derive(Debug, Default, Clone, Copy)]
pub struct Nop;

impl Nop {
    /// A no-op.
    pub fn new() -> Nop {
        Nop
    }
}

impl Op for Nop {
    type Output = io::Result<()>;
}

impl OpImpl for Nop {
    fn uring_sqe(&mut self, _ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno> {
        Ok(opcode::Nop::new().build())
    }

    fn plan(&mut self, _ctx: &BuildCtx<'_>) -> Result<Plan, Errno> {
        Ok(Plan::Done(0))
    }

    fn complete(self, res: i32, _flags: u32) -> <Self as Op>::Output {
        result(res).map(|_| ())
    }
}

//! Calls both backends may run on the engine's own thread, at submission, instead of sending
//! them to the ring or the pool: where that is cheaper and cannot stall the thread.

use std::os::fd::RawFd;

use super::FdFacts;
use crate::op::{BuildCtx, Op, Plan, Syscall};
use crate::stats::StatsCells;

/// A call that does not wait on a local filesystem (`statx` of an open descriptor, see the
/// hook `local_fd`), run inline: its result, or `None` when `fd` is not known to be on a
/// local filesystem.
pub(crate) fn local_call<T: Op>(
    facts: &mut FdFacts,
    op: &mut T,
    ctx: &BuildCtx<'_>,
    fd: RawFd,
    stats: &StatsCells,
) -> Option<i32> {
    if !facts.is_local(fd, stats) {
        return None;
    }
    StatsCells::bump(&stats.syscalls);
    let r = match op.plan(ctx) {
        // SAFETY: `op` is borrowed for this frame, so what its plan points at is alive, and
        // nothing else (no kernel, no pool thread) has it.
        Ok(Plan::Pool(sys)) => unsafe { sys.run(false) },
        Ok(_) => return None,
        Err(errno) => -errno,
    };
    StatsCells::bump(&stats.inline_completions);
    Some(r)
}

/// A positional file write run inline, blocking (`Builder::inline_file_writes`): its result,
/// or `None` when it is not one to run so (not a positional write, an `O_DIRECT` file, not on
/// a local filesystem, not seekable).
pub(crate) fn positional_write<T: Op>(
    facts: &mut FdFacts,
    op: &mut T,
    ctx: &BuildCtx<'_>,
    stats: &StatsCells,
) -> Option<i32> {
    let sys = op.inline_write(ctx)?;
    let Syscall::Write { fd, .. } = sys else {
        return None;
    };
    if facts.is_direct(fd, stats) || !facts.is_local(fd, stats) {
        return None;
    }
    StatsCells::bump(&stats.syscalls);
    // SAFETY: `op` is borrowed for this frame and was handed to nobody else.
    let r = unsafe { sys.run_positional_write() }?;
    StatsCells::bump(&stats.inline_completions);
    Some(r)
}

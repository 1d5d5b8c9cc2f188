//! Calls both backends may run on the engine's own thread, at submission, instead of sending
//! them to the ring or the pool: where that is cheaper and cannot stall the thread. What each
//! needs comes from the operation's plan (see `Fast`).

use super::FdFacts;
use crate::op::{BuildCtx, Fast, Op, Plan, Syscall};
use crate::stats::StatsCells;

/// A `statx` of an open descriptor on a local filesystem, which never waits, run inline: its
/// result, or `None` when it is not one (another operation, a path, a filesystem that may ask
/// a server or a daemon).
#[inline]
pub(crate) fn local_call<T: Op>(
    facts: &mut FdFacts,
    op: &mut T,
    ctx: &BuildCtx<'_>,
    stats: &StatsCells,
) -> Option<i32> {
    if T::FAST != Fast::Stat {
        return None;
    }
    let Ok(Plan::Pool(sys)) = op.plan(ctx) else {
        return None;
    };
    if !facts.is_local(sys.stat_of_fd()?, stats) {
        return None;
    }
    StatsCells::bump(&stats.syscalls);
    // SAFETY: `op` is borrowed for this frame, so what its plan points at is alive, and
    // nothing else (no kernel, no pool thread) has it.
    let r = unsafe { sys.run(false) };
    StatsCells::bump(&stats.inline_completions);
    Some(r)
}

/// The positional read or write of `op` (from its plan), if it is one.
#[inline]
pub(crate) fn positional<T: Op>(op: &mut T, ctx: &BuildCtx<'_>) -> Option<Syscall> {
    if T::FAST != Fast::Transfer {
        return None;
    }
    op.plan(ctx).ok()?.positional()
}

/// A positional file write run inline, blocking (`Builder::inline_file_writes`): its result,
/// or `None` when it is not one to run so (not a positional write, an `O_DIRECT` file, not on
/// a local filesystem, not seekable).
///
/// `sys` is the positional call of the operation being submitted ([`positional`]), which the
/// caller's frame borrows.
pub(crate) fn positional_write(
    facts: &mut FdFacts,
    sys: Syscall,
    stats: &StatsCells,
) -> Option<i32> {
    let Syscall::Write { fd, .. } = sys else {
        return None;
    };
    if facts.is_direct(fd, stats) || !facts.is_local(fd, stats) {
        return None;
    }
    StatsCells::bump(&stats.syscalls);
    // SAFETY: `sys` comes from the plan of an operation the caller's frame borrows and has
    // handed to nobody else (see above).
    let r = unsafe { sys.run_positional_write() }?;
    StatsCells::bump(&stats.inline_completions);
    Some(r)
}

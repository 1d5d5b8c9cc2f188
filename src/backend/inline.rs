//! Calls both backends may run on the engine's own thread, at submission, instead of sending
//! them to the ring or the pool: where that is cheaper and cannot stall the thread. What each
//! needs comes from the operation's plan (see `Fast`).

use super::FdFacts;
use crate::op::{BuildCtx, Fast, Op, Plan, Syscall};
use crate::stats::StatsCells;

/// A `statx` of an open descriptor on a local filesystem, which never waits, run inline: its
/// result, or `None` when `plan` is not one (another call, a path, a filesystem that may ask
/// a server or a daemon).
///
/// `plan` is the plan of the operation being submitted, which the caller's frame borrows.
#[inline]
pub(crate) fn local_stat(facts: &mut FdFacts, plan: &Plan, stats: &StatsCells) -> Option<i32> {
    let Plan::Pool(sys) = *plan else {
        return None;
    };
    if !facts.is_local(sys.stat_of_fd()?, stats) {
        return None;
    }
    StatsCells::bump(&stats.syscalls);
    // SAFETY: `sys` comes from the plan of an operation the caller's frame borrows and has
    // handed to nobody else (no kernel, no pool thread).
    let r = unsafe { sys.run(false) };
    StatsCells::bump(&stats.inline_completions);
    Some(r)
}

/// A `getdents64` of a directory on a filesystem held in memory, run inline: it cannot wait
/// for a device, and the pool's thread hop would cost more than the call. `None` for any
/// other plan or filesystem (the pool takes it).
pub(crate) fn memory_dirents(facts: &mut FdFacts, plan: &Plan, stats: &StatsCells) -> Option<i32> {
    let Plan::Pool(sys @ Syscall::Getdents { fd, .. }) = *plan else {
        return None;
    };
    if !facts.is_memory(fd, stats) {
        return None;
    }
    StatsCells::bump(&stats.syscalls);
    // SAFETY: as in `local_stat`: the plan of an operation the caller's frame borrows.
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

//! Calls both backends may run on the engine's own thread, at submission, instead of sending
//! them to the ring or the pool: where that is cheaper and cannot stall the thread. What each
//! needs comes from the operation's plan (see `Fast`).

use super::FdFacts;
use crate::op::sys::Lookup;
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

/// The metadata fast paths, by the operation's [`Fast`]: a `statx` of a descriptor on a local
/// filesystem or of a name in memory, a namespace call in memory, a directory read in memory.
#[inline]
pub(crate) fn metadata(
    facts: &mut FdFacts,
    fast: Fast,
    plan: &Plan,
    stats: &StatsCells,
) -> Option<i32> {
    match fast {
        Fast::Stat => local_stat(facts, plan, stats)
            .or_else(|| memory_names(facts, plan, stats))
            .or_else(|| cached_stat(facts, plan, stats)),
        Fast::Namespace => memory_names(facts, plan, stats),
        Fast::Dirents => memory_dirents(facts, plan, stats),
        Fast::None | Fast::Transfer => None,
    }
}

/// Whether `fast` is one of [`metadata`]'s.
#[inline]
pub(crate) const fn is_metadata(fast: Fast) -> bool {
    matches!(fast, Fast::Stat | Fast::Namespace | Fast::Dirents)
}

/// A namespace call (or a `statx` by name) whose names are single components in directories
/// on a filesystem held in memory, run inline: io_uring hands every such opcode to an io-wq
/// worker (a thread hop, two context switches), and the epoll backend to its pool, for a
/// call that cannot wait. A name that is a symlink is never followed here (a followed one
/// could lead to a disk or a network filesystem): a `statx` that finds one goes back to
/// the ring or the pool. `None` when it does not apply.
pub(crate) fn memory_names(facts: &mut FdFacts, plan: &Plan, stats: &StatsCells) -> Option<i32> {
    let Plan::Pool(sys) = *plan else {
        return None;
    };
    let (first, second) = sys.lookups()?;
    if !in_memory(facts, first, stats) || second.is_some_and(|l| !in_memory(facts, l, stats)) {
        return None;
    }
    let follows =
        matches!(sys, Syscall::Statx { flags, .. } if flags & libc::AT_SYMLINK_NOFOLLOW == 0);
    let mut sys = sys;
    if let Syscall::Statx { flags, .. } = &mut sys {
        // Looked up without following; a symlink found means the follow is still to do.
        *flags |= libc::AT_SYMLINK_NOFOLLOW;
    }
    StatsCells::bump(&stats.syscalls);
    // SAFETY: as in `local_stat`: the plan of an operation the caller's frame borrows.
    let r = unsafe { sys.run(false) };
    if follows && r == 0 {
        if let Syscall::Statx { buf, .. } = sys {
            // SAFETY: `buf` is the operation's statx box, just written by the call.
            let mode = u32::from(unsafe { (*buf).stx_mode });
            if mode & libc::S_IFMT == libc::S_IFLNK {
                return None;
            }
        }
    }
    StatsCells::bump(&stats.inline_completions);
    Some(r)
}

/// A `statx` by name relative to a directory on a local filesystem, run inline when the
/// lookup needs no I/O: `openat2(O_PATH)` with `RESOLVE_CACHED` (5.12: `EAGAIN` rather than
/// read a directory block or ask a server) and `RESOLVE_NO_XDEV` (the lookup stays on that
/// filesystem, whose attributes of open files are in memory), then `statx` of the descriptor
/// and `close`: three plain calls, where io_uring would hand the `statx` to an io-wq worker
/// (a thread hop) and the epoll backend to its pool. Any failure of the open (`EAGAIN`, a
/// kernel without it, a missing name) leaves the call to the ring or the pool, which also
/// gives the error exactly as `statx` would.
fn cached_stat(facts: &mut FdFacts, plan: &Plan, stats: &StatsCells) -> Option<i32> {
    let Plan::Pool(Syscall::Statx {
        dirfd,
        path,
        flags,
        mask,
        buf,
    }) = *plan
    else {
        return None;
    };
    if dirfd < 0 || path.is_null() || flags & libc::AT_EMPTY_PATH != 0 {
        return None;
    }
    if !facts.is_local(dirfd, stats) {
        return None;
    }
    let nofollow = if flags & libc::AT_SYMLINK_NOFOLLOW != 0 {
        libc::O_NOFOLLOW
    } else {
        0
    };
    // SAFETY: open_how is plain integers; all-zero is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_CLOEXEC | nofollow) as u64;
    how.resolve = libc::RESOLVE_CACHED | libc::RESOLVE_NO_XDEV;
    StatsCells::bump(&stats.syscalls);
    // SAFETY: `path` is the operation's NUL-terminated CString, alive while its plan is.
    let fd = unsafe { crate::op::sys::openat2(dirfd, path, &how) };
    if fd < 0 {
        return None;
    }
    let stat = Syscall::Statx {
        dirfd: fd,
        path: c"".as_ptr(),
        flags: (flags & !libc::AT_SYMLINK_NOFOLLOW) | libc::AT_EMPTY_PATH,
        mask,
        buf,
    };
    StatsCells::bump(&stats.syscalls);
    // SAFETY: `buf` is the operation's statx box; the empty path is static.
    let r = unsafe { stat.run(false) };
    StatsCells::bump(&stats.syscalls);
    // SAFETY: `fd` was opened just above and nothing else has it.
    unsafe { libc::close(fd) };
    StatsCells::bump(&stats.inline_completions);
    Some(r)
}

/// Whether a lookup is one name in a directory on a filesystem held in memory.
fn in_memory(facts: &mut FdFacts, (dir, path): Lookup, stats: &StatsCells) -> bool {
    if dir < 0 || path.is_null() {
        return false;
    }
    // SAFETY: `path` is the operation's NUL-terminated CString, alive while its plan is.
    let name = unsafe { std::ffi::CStr::from_ptr(path) }.to_bytes();
    let single = !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/');
    single && facts.is_memory(dir, stats)
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

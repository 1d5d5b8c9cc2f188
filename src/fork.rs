//! Noticing `fork`: an engine belongs to the process that built it.
//!
//! A child inherits the parent's ring descriptor (its memory is mapped `MADV_DONTFORK`, so the
//! child does not even have it) or epoll instance and blocking pool (whose threads exist only
//! in the parent). Using them from the child would corrupt the parent's state or crash, so the
//! child gets a clear error instead and builds an engine of its own.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

/// Bumped in every child at fork time.
static GENERATION: AtomicU64 = AtomicU64::new(0);
static INSTALL: Once = Once::new();

extern "C" fn in_child() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// The current fork generation; installs the `pthread_atfork` handler on first use.
pub(crate) fn generation() -> u64 {
    INSTALL.call_once(|| {
        // SAFETY: registers a handler that only bumps an atomic (async-signal-safe), once per
        // process; the handler lives for the whole program.
        unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
    });
    GENERATION.load(Ordering::Relaxed)
}

/// The generation without installing anything (for hot paths, after `generation` ran once).
#[inline]
pub(crate) fn current() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}

/// The error an engine gives in a child process.
pub(crate) fn inherited() -> io::Error {
    io::Error::other(
        "trueio: this engine was built before fork(); its ring or epoll instance belongs to \
         the parent process: build a new Engine in the child",
    )
}

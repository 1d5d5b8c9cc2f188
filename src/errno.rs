//! The one errno type at the kernel boundary.
//!
//! Raw results follow io_uring's completions: a count, or a negated errno (`-EINVAL`). Where
//! something fails before a result exists (an operation that cannot be built, a push the ring
//! refuses), the failure is an [`Errno`], positive as `libc` spells it; it becomes a raw
//! result with [`Errno::raw`], and a raw result becomes `io::Result` in one place
//! (`op::result`).

use std::io;

/// A positive errno (`libc::EINVAL`...). Public in a private module: unnameable outside the
/// crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub(crate) i32);

impl Errno {
    /// As a raw result: the negated errno.
    #[inline]
    pub(crate) fn raw(self) -> i32 {
        -self.0
    }

    /// The errno of an `io::Error` from a system call (`EIO` for one without).
    pub(crate) fn of(e: &io::Error) -> Errno {
        Errno(e.raw_os_error().unwrap_or(libc::EIO))
    }
}

impl From<Errno> for io::Error {
    fn from(e: Errno) -> io::Error {
        io::Error::from_raw_os_error(e.0)
    }
}

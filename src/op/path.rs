//! A path an operation names, relative to a directory descriptor or the working directory,
//! kept as the C string the kernel reads until the completion.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::errno::Errno;
use crate::fd::{Fd, Target};

/// `dir`/`path`, `openat` style. A path with a NUL byte cannot be named: the operation
/// completes with `EINVAL` at its submission, as `std::fs` refuses it.
#[derive(Debug)]
pub(crate) struct AtPath {
    dir: Option<Fd>,
    path: Option<CString>,
}

impl AtPath {
    pub(crate) fn new(dir: Option<Fd>, path: &Path) -> AtPath {
        AtPath {
            dir,
            path: CString::new(path.as_os_str().as_bytes()).ok(),
        }
    }

    /// The directory descriptor (`AT_FDCWD` without one). The `*at` calls take a real
    /// descriptor, not a fixed slot.
    pub(crate) fn dirfd(&self) -> Result<i32, Errno> {
        match self.dir.as_ref().map(Fd::target) {
            None => Ok(libc::AT_FDCWD),
            Some(Target::Fd(fd)) => Ok(fd),
            Some(Target::Fixed(_)) => Err(Errno(libc::EBADF)),
        }
    }

    /// The path, NUL-terminated; it lives as long as the operation.
    pub(crate) fn ptr(&self) -> Result<*const libc::c_char, Errno> {
        self.path
            .as_ref()
            .map(|p| p.as_ptr())
            .ok_or(Errno(libc::EINVAL))
    }
}

/// A C string that lives as long as the operation (an xattr name, a symlink's target).
pub(crate) fn c_string(bytes: &[u8]) -> Option<CString> {
    CString::new(bytes).ok()
}

/// Its pointer, or `EINVAL` for a string that had a NUL byte.
pub(crate) fn c_ptr(s: &Option<CString>) -> Result<*const libc::c_char, Errno> {
    s.as_ref().map(|s| s.as_ptr()).ok_or(Errno(libc::EINVAL))
}

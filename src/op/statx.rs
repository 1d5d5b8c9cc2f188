use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use io_uring::{opcode, squeue, types};

use super::{result, BuildCtx, Fast, Op, OpImpl, Plan, Syscall};
use crate::errno::Errno;
use crate::fd::{Fd, Target};

/// File metadata (`statx(2)`): by path relative to a directory, or of an open descriptor.
///
/// `mask` says which fields are wanted (`STATX_BASIC_STATS`, `STATX_DIOALIGN`...); check
/// `stx_mask` in the result for what the filesystem filled in.
pub struct Statx {
    dir: Option<Fd>,
    path: Option<CString>,
    flags: i32,
    mask: u32,
    buf: Box<libc::statx>,
}

impl std::fmt::Debug for Statx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Statx")
            .field("path", &self.path)
            .field("flags", &self.flags)
            .field("mask", &self.mask)
            .finish()
    }
}

fn zeroed() -> Box<libc::statx> {
    // SAFETY: statx is plain integers; all-zero is a valid value.
    Box::new(unsafe { std::mem::zeroed() })
}

impl Statx {
    /// Metadata of `path` relative to `dir` (or the current directory). `flags` are `AT_*`
    /// flags such as `AT_SYMLINK_NOFOLLOW`.
    pub fn path(dir: Option<Fd>, path: impl AsRef<Path>, flags: i32, mask: u32) -> Statx {
        Statx {
            dir,
            path: CString::new(path.as_ref().as_os_str().as_bytes()).ok(),
            flags,
            mask,
            buf: zeroed(),
        }
    }

    /// Metadata of an open descriptor (`AT_EMPTY_PATH`).
    pub fn fd(fd: impl Into<Fd>, mask: u32) -> Statx {
        Statx {
            dir: Some(fd.into()),
            path: Some(CString::default()),
            flags: libc::AT_EMPTY_PATH,
            mask,
            buf: zeroed(),
        }
    }

    fn dirfd(&self) -> Result<i32, Errno> {
        match self.dir.as_ref().map(|d| d.target()) {
            None => Ok(libc::AT_FDCWD),
            Some(Target::Fd(fd)) => Ok(fd),
            // statx names a real descriptor, not a fixed slot.
            Some(Target::Fixed(_)) => Err(Errno(libc::EBADF)),
        }
    }
}

impl Op for Statx {
    type Output = io::Result<libc::statx>;
}

impl OpImpl for Statx {
    const FAST: Fast = Fast::Stat;

    fn uring_sqe(&mut self, _ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno> {
        let dirfd = self.dirfd()?;
        let path = self.path.as_ref().ok_or(Errno(libc::EINVAL))?;
        let buf: *mut libc::statx = &mut *self.buf;
        Ok(
            opcode::Statx::new(types::Fd(dirfd), path.as_ptr(), buf.cast::<types::statx>())
                .flags(self.flags)
                .mask(self.mask)
                .build(),
        )
    }

    fn plan(&mut self, _ctx: &BuildCtx<'_>) -> Result<Plan, Errno> {
        let path = self.path.as_ref().ok_or(Errno(libc::EINVAL))?;
        Ok(Plan::Pool(Syscall::Statx {
            dirfd: self.dirfd()?,
            path: path.as_ptr(),
            flags: self.flags,
            mask: self.mask,
            buf: &mut *self.buf,
        }))
    }

    fn complete(self, res: i32, _flags: u32) -> <Self as Op>::Output {
        result(res).map(|_| *self.buf)
    }
}

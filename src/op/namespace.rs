//! Operations on names in the filesystem: rename, unlink, mkdir, symlinks and hard links.
//!
//! Each takes its paths relative to a directory (`Some(dir)`, the `*at` style that keeps a
//! tree walk from racing on paths) or to the working directory (`None`). On io_uring they use
//! their opcodes (`RENAMEAT`/`UNLINKAT` 5.11; `MKDIRAT`/`SYMLINKAT`/`LINKAT` 5.15) and run on
//! the blocking pool below those kernels, as always on the epoll backend.

use std::io;
use std::path::{Path, PathBuf};

use io_uring::{opcode, squeue, types};

use super::path::{c_ptr, c_string, AtPath};
use super::{result, BuildCtx, Fast, OnRing, Op, OpImpl, Plan, Syscall};
use crate::errno::Errno;
use crate::fd::Fd;

/// `renameat2(2)`: moves `old` to `new`. `flags`: 0 (replace `new` if it exists),
/// `libc::RENAME_NOREPLACE` (fail with `EEXIST` instead) or `libc::RENAME_EXCHANGE` (swap
/// the two, both must exist).
#[derive(Debug)]
pub struct RenameAt {
    old: AtPath,
    new: AtPath,
    flags: u32,
}

impl RenameAt {
    /// Renames `old_dir`/`old` to `new_dir`/`new`.
    pub fn new(
        old_dir: Option<Fd>,
        old: impl AsRef<Path>,
        new_dir: Option<Fd>,
        new: impl AsRef<Path>,
        flags: u32,
    ) -> RenameAt {
        RenameAt {
            old: AtPath::new(old_dir, old.as_ref()),
            new: AtPath::new(new_dir, new.as_ref()),
            flags,
        }
    }
}

impl Op for RenameAt {
    type Output = io::Result<()>;
}

impl OpImpl for RenameAt {
    const RING: OnRing = OnRing::Needs(opcode::RenameAt::CODE);
    const FAST: Fast = Fast::Namespace;

    fn uring_sqe(&mut self, _ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno> {
        Ok(opcode::RenameAt::new(
            types::Fd(self.old.dirfd()?),
            self.old.ptr()?,
            types::Fd(self.new.dirfd()?),
            self.new.ptr()?,
        )
        .flags(self.flags)
        .build())
    }

    fn plan(&mut self, _ctx: &BuildCtx<'_>) -> Result<Plan, Errno> {
        Ok(Plan::Pool(Syscall::RenameAt {
            olddir: self.old.dirfd()?,
            old: self.old.ptr()?,
            newdir: self.new.dirfd()?,
            new: self.new.ptr()?,
            flags: self.flags,
        }))
    }

    fn complete(self, res: i32, _flags: u32) -> io::Result<()> {
        result(res).map(|_| ())
    }
}

/// `unlinkat(2)`: removes a name; `libc::AT_REMOVEDIR` in `flags` removes an empty directory.
#[derive(Debug)]
pub struct UnlinkAt {
    path: AtPath,
    flags: i32,
}

impl UnlinkAt {
    /// Removes `dir`/`path`.
    pub fn new(dir: Option<Fd>, path: impl AsRef<Path>, flags: i32) -> UnlinkAt {
        UnlinkAt {
            path: AtPath::new(dir, path.as_ref()),
            flags,
        }
    }
}

impl Op for UnlinkAt {
    type Output = io::Result<()>;
}

impl OpImpl for UnlinkAt {
    const RING: OnRing = OnRing::Needs(opcode::UnlinkAt::CODE);
    const FAST: Fast = Fast::Namespace;

    fn uring_sqe(&mut self, _ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno> {
        Ok(
            opcode::UnlinkAt::new(types::Fd(self.path.dirfd()?), self.path.ptr()?)
                .flags(self.flags)
                .build(),
        )
    }

    fn plan(&mut self, _ctx: &BuildCtx<'_>) -> Result<Plan, Errno> {
        Ok(Plan::Pool(Syscall::UnlinkAt {
            dir: self.path.dirfd()?,
            path: self.path.ptr()?,
            flags: self.flags,
        }))
    }

    fn complete(self, res: i32, _flags: u32) -> io::Result<()> {
        result(res).map(|_| ())
    }
}

/// `mkdirat(2)`: creates a directory with permission bits `mode` (less the umask).
#[derive(Debug)]
pub struct MkdirAt {
    path: AtPath,
    mode: u32,
}

impl MkdirAt {
    /// Creates the directory `dir`/`path`.
    pub fn new(dir: Option<Fd>, path: impl AsRef<Path>, mode: u32) -> MkdirAt {
        MkdirAt {
            path: AtPath::new(dir, path.as_ref()),
            mode,
        }
    }
}

impl Op for MkdirAt {
    type Output = io::Result<()>;
}

impl OpImpl for MkdirAt {
    const RING: OnRing = OnRing::Needs(opcode::MkDirAt::CODE);
    const FAST: Fast = Fast::Namespace;

    fn uring_sqe(&mut self, _ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno> {
        Ok(
            opcode::MkDirAt::new(types::Fd(self.path.dirfd()?), self.path.ptr()?)
                .mode(self.mode as libc::mode_t)
                .build(),
        )
    }

    fn plan(&mut self, _ctx: &BuildCtx<'_>) -> Result<Plan, Errno> {
        Ok(Plan::Pool(Syscall::MkdirAt {
            dir: self.path.dirfd()?,
            path: self.path.ptr()?,
            mode: self.mode,
        }))
    }

    fn complete(self, res: i32, _flags: u32) -> io::Result<()> {
        result(res).map(|_| ())
    }
}

/// `symlinkat(2)`: creates `dir`/`path`, a symbolic link whose content is `target`.
#[derive(Debug)]
pub struct SymlinkAt {
    target: Option<std::ffi::CString>,
    path: AtPath,
}

impl SymlinkAt {
    /// Creates the link `dir`/`path` pointing at `target` (which need not exist).
    pub fn new(target: impl AsRef<Path>, dir: Option<Fd>, path: impl AsRef<Path>) -> SymlinkAt {
        use std::os::unix::ffi::OsStrExt;
        SymlinkAt {
            target: c_string(target.as_ref().as_os_str().as_bytes()),
            path: AtPath::new(dir, path.as_ref()),
        }
    }
}

impl Op for SymlinkAt {
    type Output = io::Result<()>;
}

impl OpImpl for SymlinkAt {
    const RING: OnRing = OnRing::Needs(opcode::SymlinkAt::CODE);
    const FAST: Fast = Fast::Namespace;

    fn uring_sqe(&mut self, _ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno> {
        Ok(opcode::SymlinkAt::new(
            types::Fd(self.path.dirfd()?),
            c_ptr(&self.target)?,
            self.path.ptr()?,
        )
        .build())
    }

    fn plan(&mut self, _ctx: &BuildCtx<'_>) -> Result<Plan, Errno> {
        Ok(Plan::Pool(Syscall::SymlinkAt {
            target: c_ptr(&self.target)?,
            dir: self.path.dirfd()?,
            path: self.path.ptr()?,
        }))
    }

    fn complete(self, res: i32, _flags: u32) -> io::Result<()> {
        result(res).map(|_| ())
    }
}

/// `linkat(2)`: a new name `new` for the file `old`. `flags`: `libc::AT_SYMLINK_FOLLOW`
/// links the file a symlink `old` points at, not the symlink itself.
#[derive(Debug)]
pub struct LinkAt {
    old: AtPath,
    new: AtPath,
    flags: i32,
}

impl LinkAt {
    /// Links `old_dir`/`old` as `new_dir`/`new`.
    pub fn new(
        old_dir: Option<Fd>,
        old: impl AsRef<Path>,
        new_dir: Option<Fd>,
        new: impl AsRef<Path>,
        flags: i32,
    ) -> LinkAt {
        LinkAt {
            old: AtPath::new(old_dir, old.as_ref()),
            new: AtPath::new(new_dir, new.as_ref()),
            flags,
        }
    }
}

impl Op for LinkAt {
    type Output = io::Result<()>;
}

impl OpImpl for LinkAt {
    const RING: OnRing = OnRing::Needs(opcode::LinkAt::CODE);
    const FAST: Fast = Fast::Namespace;

    fn uring_sqe(&mut self, _ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno> {
        Ok(opcode::LinkAt::new(
            types::Fd(self.old.dirfd()?),
            self.old.ptr()?,
            types::Fd(self.new.dirfd()?),
            self.new.ptr()?,
        )
        .flags(self.flags)
        .build())
    }

    fn plan(&mut self, _ctx: &BuildCtx<'_>) -> Result<Plan, Errno> {
        Ok(Plan::Pool(Syscall::LinkAt {
            olddir: self.old.dirfd()?,
            old: self.old.ptr()?,
            newdir: self.new.dirfd()?,
            new: self.new.ptr()?,
            flags: self.flags,
        }))
    }

    fn complete(self, res: i32, _flags: u32) -> io::Result<()> {
        result(res).map(|_| ())
    }
}

/// `readlinkat(2)`: the content of a symbolic link. io_uring has no opcode for it: it runs on
/// the blocking pool on both backends.
#[derive(Debug)]
pub struct ReadLinkAt {
    path: AtPath,
    buf: Vec<u8>,
}

impl ReadLinkAt {
    /// Reads the link `dir`/`path` (up to `PATH_MAX` bytes, the most Linux stores).
    pub fn new(dir: Option<Fd>, path: impl AsRef<Path>) -> ReadLinkAt {
        ReadLinkAt {
            path: AtPath::new(dir, path.as_ref()),
            buf: vec![0; libc::PATH_MAX as usize],
        }
    }
}

impl Op for ReadLinkAt {
    type Output = io::Result<PathBuf>;
}

impl OpImpl for ReadLinkAt {
    const RING: OnRing = OnRing::Never;

    fn uring_sqe(&mut self, _ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno> {
        Err(Errno(libc::EOPNOTSUPP))
    }

    fn plan(&mut self, _ctx: &BuildCtx<'_>) -> Result<Plan, Errno> {
        Ok(Plan::Pool(Syscall::ReadLinkAt {
            dir: self.path.dirfd()?,
            path: self.path.ptr()?,
            buf: self.buf.as_mut_ptr(),
            len: self.buf.len(),
        }))
    }

    fn complete(mut self, res: i32, _flags: u32) -> io::Result<PathBuf> {
        use std::os::unix::ffi::OsStringExt;
        let n = result(res)? as usize;
        self.buf.truncate(n);
        Ok(PathBuf::from(std::ffi::OsString::from_vec(self.buf)))
    }
}

//! The namespace and file-metadata calls of [`Syscall`]: what runs on the pool where io_uring
//! has no opcode for them (and always on the epoll backend).

use std::os::fd::RawFd;

use super::sys::{ret, Syscall};

/// A name a call looks up: its directory descriptor and its path.
pub(crate) type Lookup = (RawFd, *const libc::c_char);

impl Syscall {
    /// The names a namespace call looks up (one, or two for a rename or a link), when none of
    /// them is followed if it is a symlink: such a call touches no filesystem but the ones
    /// its directories are on (when each name is a single component). `None` for other calls.
    pub(crate) fn lookups(&self) -> Option<(Lookup, Option<Lookup>)> {
        match *self {
            Syscall::MkdirAt { dir, path, .. } | Syscall::UnlinkAt { dir, path, .. } => {
                Some(((dir, path), None))
            }
            Syscall::SymlinkAt { dir, path, .. } => Some(((dir, path), None)),
            Syscall::RenameAt {
                olddir,
                old,
                newdir,
                new,
                ..
            } => Some(((olddir, old), Some((newdir, new)))),
            Syscall::LinkAt {
                olddir,
                old,
                newdir,
                new,
                flags,
            } if flags & libc::AT_SYMLINK_FOLLOW == 0 => Some(((olddir, old), Some((newdir, new)))),
            Syscall::Statx {
                dirfd, path, flags, ..
            } if flags & libc::AT_EMPTY_PATH == 0 => Some(((dirfd, path), None)),
            _ => None,
        }
    }

    /// `run` for namespace calls (rename, unlink, mkdir, links, directory entries).
    ///
    /// # Safety
    /// As [`Syscall::run`]: every path, name and buffer is the operation's own, alive and
    /// untouched by anything else for the call's duration.
    pub(super) unsafe fn run_namespace(&self) -> i32 {
        // SAFETY: (every arm) the caller's contract; the paths are NUL-terminated CStrings and
        // the buffers `len` bytes long, all owned by the operation.
        let r = unsafe {
            match *self {
                Syscall::RenameAt {
                    olddir,
                    old,
                    newdir,
                    new,
                    flags,
                } => libc::syscall(libc::SYS_renameat2, olddir, old, newdir, new, flags) as isize,
                Syscall::UnlinkAt { dir, path, flags } => libc::unlinkat(dir, path, flags) as isize,
                Syscall::MkdirAt { dir, path, mode } => {
                    libc::mkdirat(dir, path, mode as libc::mode_t) as isize
                }
                Syscall::SymlinkAt { target, dir, path } => {
                    libc::symlinkat(target, dir, path) as isize
                }
                Syscall::LinkAt {
                    olddir,
                    old,
                    newdir,
                    new,
                    flags,
                } => libc::linkat(olddir, old, newdir, new, flags) as isize,
                Syscall::ReadLinkAt {
                    dir,
                    path,
                    buf,
                    len,
                } => libc::readlinkat(dir, path, buf.cast(), len),
                Syscall::Getdents { fd, buf, len } => {
                    libc::syscall(libc::SYS_getdents64, fd, buf, len) as isize
                }
                _ => return -libc::EINVAL,
            }
        };
        ret(r)
    }

    /// `run` for calls on an open file's size, cache and attributes.
    ///
    /// # Safety
    /// As [`Syscall::run_namespace`].
    pub(super) unsafe fn run_file_meta(&self) -> i32 {
        // SAFETY: (every arm) the caller's contract, as above.
        let r = unsafe {
            match *self {
                Syscall::Ftruncate { fd, len } => libc::ftruncate(fd, len) as isize,
                Syscall::Fadvise {
                    fd,
                    off,
                    len,
                    advice,
                } => {
                    // posix_fadvise returns the error number instead of setting errno.
                    let e = libc::posix_fadvise(fd, off, len, advice);
                    return -e;
                }
                Syscall::SyncFileRange {
                    fd,
                    off,
                    len,
                    flags,
                } => libc::sync_file_range(fd, off, len, flags) as isize,
                Syscall::GetXattr {
                    fd,
                    path,
                    name,
                    value,
                    len,
                } if path.is_null() => libc::fgetxattr(fd, name, value.cast(), len),
                Syscall::GetXattr {
                    path,
                    name,
                    value,
                    len,
                    ..
                } => libc::getxattr(path, name, value.cast(), len),
                Syscall::SetXattr {
                    fd,
                    path,
                    name,
                    value,
                    len,
                    flags,
                } if path.is_null() => libc::fsetxattr(fd, name, value.cast(), len, flags) as isize,
                Syscall::SetXattr {
                    path,
                    name,
                    value,
                    len,
                    flags,
                    ..
                } => libc::setxattr(path, name, value.cast(), len, flags) as isize,
                _ => return -libc::EINVAL,
            }
        };
        ret(r)
    }
}

//! Operations on an open file's size, page cache, write-back and extended attributes, and
//! directory reading.
//!
//! io_uring opcodes: `SYNC_FILE_RANGE` 5.2, `FADVISE` 5.6, `FGETXATTR`/`FSETXATTR`/
//! `GETXATTR`/`SETXATTR` 5.19, `FTRUNCATE` 6.9; below those kernels (and on the epoll
//! backend) the call runs on the blocking pool. io_uring has no `getdents`: see [`Getdents`].

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use io_uring::{opcode, squeue};

use super::path::{c_ptr, c_string};
use super::{result, with_target, BuildCtx, Fast, OnRing, Op, OpImpl, Plan, Syscall};
use crate::errno::Errno;
use crate::fd::Fd;

/// An offset or length as the kernel's signed `loff_t`.
fn signed(v: u64) -> Result<i64, Errno> {
    i64::try_from(v).map_err(|_| Errno(libc::EFBIG))
}

/// `ftruncate(2)`: sets the file's size to `len`, dropping what lies beyond or adding a hole.
#[derive(Debug)]
pub struct Ftruncate {
    fd: Fd,
    len: u64,
}

impl Ftruncate {
    /// Truncates (or extends) the file to `len` bytes.
    pub fn new(fd: impl Into<Fd>, len: u64) -> Ftruncate {
        Ftruncate { fd: fd.into(), len }
    }
}

impl Op for Ftruncate {
    type Output = io::Result<()>;
}

impl OpImpl for Ftruncate {
    const RING: OnRing = OnRing::Needs(opcode::Ftruncate::CODE);

    fn uring_sqe(&mut self, ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno> {
        signed(self.len)?;
        let len = self.len;
        Ok(with_target!(ctx.target(&self.fd)?, |f| {
            opcode::Ftruncate::new(f, len).build()
        }))
    }

    fn plan(&mut self, ctx: &BuildCtx<'_>) -> Result<Plan, Errno> {
        Ok(Plan::Pool(Syscall::Ftruncate {
            fd: ctx.raw(self.fd.target())?,
            len: signed(self.len)?,
        }))
    }

    fn complete(self, res: i32, _flags: u32) -> io::Result<()> {
        result(res).map(|_| ())
    }
}

/// `posix_fadvise(2)`: tells the kernel how `len` bytes from `offset` will be used
/// (`libc::POSIX_FADV_SEQUENTIAL`, `WILLNEED`, `DONTNEED`...); `len` 0 means to the end.
#[derive(Debug)]
pub struct Fadvise {
    fd: Fd,
    offset: u64,
    len: u64,
    advice: i32,
}

impl Fadvise {
    /// Advice `advice` for the range.
    pub fn new(fd: impl Into<Fd>, offset: u64, len: u64, advice: i32) -> Fadvise {
        Fadvise {
            fd: fd.into(),
            offset,
            len,
            advice,
        }
    }
}

impl Op for Fadvise {
    type Output = io::Result<()>;
}

impl OpImpl for Fadvise {
    const RING: OnRing = OnRing::Needs(opcode::Fadvise::CODE);

    /// The SQE's length field has 32 bits.
    fn fits_sqe(&self) -> bool {
        self.len <= u64::from(u32::MAX)
    }

    fn uring_sqe(&mut self, ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno> {
        let (off, len, advice) = (self.offset, self.len as libc::off_t, self.advice);
        signed(off)?;
        Ok(with_target!(ctx.target(&self.fd)?, |f| {
            opcode::Fadvise::new(f, len, advice).offset(off).build()
        }))
    }

    fn plan(&mut self, ctx: &BuildCtx<'_>) -> Result<Plan, Errno> {
        Ok(Plan::Pool(Syscall::Fadvise {
            fd: ctx.raw(self.fd.target())?,
            off: signed(self.offset)?,
            len: signed(self.len)?,
            advice: self.advice,
        }))
    }

    fn complete(self, res: i32, _flags: u32) -> io::Result<()> {
        result(res).map(|_| ())
    }
}

/// `sync_file_range(2)`: starts (or waits for) write-back of a range, without the metadata
/// and without a disk cache flush: a way to pace a large write, not a durability point (use
/// [`Fsync`](super::Fsync) for that).
#[derive(Debug)]
pub struct SyncFileRange {
    fd: Fd,
    offset: u64,
    len: u64,
    flags: u32,
}

impl SyncFileRange {
    /// `flags`: `libc::SYNC_FILE_RANGE_WRITE` and/or `_WAIT_BEFORE`, `_WAIT_AFTER`; `len` 0
    /// means to the end of the file.
    pub fn new(fd: impl Into<Fd>, offset: u64, len: u64, flags: u32) -> SyncFileRange {
        SyncFileRange {
            fd: fd.into(),
            offset,
            len,
            flags,
        }
    }
}

impl Op for SyncFileRange {
    type Output = io::Result<()>;
}

impl OpImpl for SyncFileRange {
    const RING: OnRing = OnRing::Needs(opcode::SyncFileRange::CODE);

    /// The SQE's length field has 32 bits.
    fn fits_sqe(&self) -> bool {
        self.len <= u64::from(u32::MAX)
    }

    fn uring_sqe(&mut self, ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno> {
        let (off, len, flags) = (self.offset, self.len as u32, self.flags);
        signed(off)?;
        Ok(with_target!(ctx.target(&self.fd)?, |f| {
            opcode::SyncFileRange::new(f, len)
                .offset(off)
                .flags(flags)
                .build()
        }))
    }

    fn plan(&mut self, ctx: &BuildCtx<'_>) -> Result<Plan, Errno> {
        Ok(Plan::Pool(Syscall::SyncFileRange {
            fd: ctx.raw(self.fd.target())?,
            off: signed(self.offset)?,
            len: signed(self.len)?,
            flags: self.flags,
        }))
    }

    fn complete(self, res: i32, _flags: u32) -> io::Result<()> {
        result(res).map(|_| ())
    }
}

/// Where an extended attribute lives: an open file, or a path (symlinks followed, as
/// io_uring's `GETXATTR` does).
#[derive(Debug)]
enum XattrOf {
    Fd(Fd),
    Path(Option<CString>),
}

impl XattrOf {
    fn path(p: &Path) -> XattrOf {
        XattrOf::Path(c_string(p.as_os_str().as_bytes()))
    }

    /// The descriptor and path of the call: one is meaningful, the other -1 or null.
    fn parts(&self, ctx: &BuildCtx<'_>) -> Result<(i32, *const libc::c_char), Errno> {
        match self {
            XattrOf::Fd(fd) => Ok((ctx.raw(fd.target())?, std::ptr::null())),
            XattrOf::Path(p) => Ok((-1, c_ptr(p)?)),
        }
    }
}

/// Reads an extended attribute's value (`fgetxattr(2)`/`getxattr(2)`), up to `max` bytes;
/// `ERANGE` when the value is longer, `ENODATA` when the file has no such attribute.
#[derive(Debug)]
pub struct GetXattr {
    of: XattrOf,
    name: Option<CString>,
    value: Vec<u8>,
}

impl GetXattr {
    /// The attribute `name` (`"user.comment"`) of an open file.
    pub fn fd(fd: impl Into<Fd>, name: &str, max: usize) -> GetXattr {
        GetXattr::of(XattrOf::Fd(fd.into()), name, max)
    }

    /// The attribute `name` of the file at `path`.
    pub fn path(path: impl AsRef<Path>, name: &str, max: usize) -> GetXattr {
        GetXattr::of(XattrOf::path(path.as_ref()), name, max)
    }

    fn of(of: XattrOf, name: &str, max: usize) -> GetXattr {
        GetXattr {
            of,
            name: c_string(name.as_bytes()),
            // The kernel caps values at XATTR_SIZE_MAX (64 KiB).
            value: vec![0; max.min(65536)],
        }
    }
}

impl Op for GetXattr {
    type Output = io::Result<Vec<u8>>;
}

impl OpImpl for GetXattr {
    const RING: OnRing = OnRing::Needs(opcode::FGetXattr::CODE);

    fn uring_sqe(&mut self, ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno> {
        let name = c_ptr(&self.name)?;
        let (value, len) = (self.value.as_mut_ptr().cast(), self.value.len() as u32);
        Ok(match &self.of {
            XattrOf::Fd(fd) => with_target!(ctx.target(fd)?, |f| {
                opcode::FGetXattr::new(f, name, value, len).build()
            }),
            XattrOf::Path(p) => opcode::GetXattr::new(name, value, c_ptr(p)?, len).build(),
        })
    }

    fn plan(&mut self, ctx: &BuildCtx<'_>) -> Result<Plan, Errno> {
        let (fd, path) = self.of.parts(ctx)?;
        Ok(Plan::Pool(Syscall::GetXattr {
            fd,
            path,
            name: c_ptr(&self.name)?,
            value: self.value.as_mut_ptr(),
            len: self.value.len(),
        }))
    }

    fn complete(mut self, res: i32, _flags: u32) -> io::Result<Vec<u8>> {
        let n = result(res)? as usize;
        self.value.truncate(n);
        Ok(self.value)
    }
}

/// Sets an extended attribute (`fsetxattr(2)`/`setxattr(2)`). `flags`: 0 (create or
/// replace), `libc::XATTR_CREATE` (fail with `EEXIST` if it exists) or `XATTR_REPLACE` (fail
/// with `ENODATA` if it does not).
#[derive(Debug)]
pub struct SetXattr {
    of: XattrOf,
    name: Option<CString>,
    value: Vec<u8>,
    flags: i32,
}

impl SetXattr {
    /// Sets `name` to `value` on an open file.
    pub fn fd(fd: impl Into<Fd>, name: &str, value: Vec<u8>, flags: i32) -> SetXattr {
        SetXattr::of(XattrOf::Fd(fd.into()), name, value, flags)
    }

    /// Sets `name` to `value` on the file at `path`.
    pub fn path(path: impl AsRef<Path>, name: &str, value: Vec<u8>, flags: i32) -> SetXattr {
        SetXattr::of(XattrOf::path(path.as_ref()), name, value, flags)
    }

    fn of(of: XattrOf, name: &str, value: Vec<u8>, flags: i32) -> SetXattr {
        SetXattr {
            of,
            name: c_string(name.as_bytes()),
            value,
            flags,
        }
    }
}

impl Op for SetXattr {
    /// The value is given back.
    type Output = (io::Result<()>, Vec<u8>);
}

impl OpImpl for SetXattr {
    const RING: OnRing = OnRing::Needs(opcode::FSetXattr::CODE);

    fn uring_sqe(&mut self, ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno> {
        let name = c_ptr(&self.name)?;
        let len = u32::try_from(self.value.len()).map_err(|_| Errno(libc::E2BIG))?;
        let (value, flags) = (self.value.as_ptr().cast(), self.flags);
        Ok(match &self.of {
            XattrOf::Fd(fd) => with_target!(ctx.target(fd)?, |f| {
                opcode::FSetXattr::new(f, name, value, len)
                    .flags(flags)
                    .build()
            }),
            XattrOf::Path(p) => opcode::SetXattr::new(name, value, c_ptr(p)?, len)
                .flags(flags)
                .build(),
        })
    }

    fn plan(&mut self, ctx: &BuildCtx<'_>) -> Result<Plan, Errno> {
        let (fd, path) = self.of.parts(ctx)?;
        Ok(Plan::Pool(Syscall::SetXattr {
            fd,
            path,
            name: c_ptr(&self.name)?,
            value: self.value.as_ptr(),
            len: self.value.len(),
            flags: self.flags,
        }))
    }

    fn complete(self, res: i32, _flags: u32) -> (io::Result<()>, Vec<u8>) {
        (result(res).map(|_| ()), self.value)
    }
}

/// `getdents64(2)`: the next directory entries of an open directory into `buf` (raw
/// `linux_dirent64` records; [`fs::read_dir`](crate::fs::read_dir) parses them). io_uring has
/// no opcode for it: on both backends it runs inline for a directory on a filesystem held in
/// memory (tmpfs), where it cannot wait, and on the blocking pool otherwise.
#[derive(Debug)]
pub struct Getdents {
    fd: Fd,
    buf: Vec<u8>,
}

impl Getdents {
    /// Reads entries into `buf`, up to its capacity (its length is ignored); 0 bytes at the
    /// end of the directory.
    pub fn new(fd: impl Into<Fd>, mut buf: Vec<u8>) -> Getdents {
        buf.clear();
        Getdents { fd: fd.into(), buf }
    }
}

impl Op for Getdents {
    /// The bytes read, and the buffer holding them.
    type Output = (io::Result<usize>, Vec<u8>);
}

impl OpImpl for Getdents {
    const RING: OnRing = OnRing::Never;
    const FAST: Fast = Fast::Dirents;

    fn uring_sqe(&mut self, _ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno> {
        Err(Errno(libc::EOPNOTSUPP))
    }

    fn plan(&mut self, ctx: &BuildCtx<'_>) -> Result<Plan, Errno> {
        Ok(Plan::Pool(Syscall::Getdents {
            fd: ctx.raw(self.fd.target())?,
            buf: self.buf.as_mut_ptr(),
            len: self.buf.capacity(),
        }))
    }

    fn complete(mut self, res: i32, _flags: u32) -> (io::Result<usize>, Vec<u8>) {
        match result(res) {
            Ok(n) => {
                // SAFETY: the kernel wrote `n` bytes (at most the capacity it was given) at
                // the start of the buffer.
                unsafe { self.buf.set_len(n as usize) };
                (Ok(n as usize), self.buf)
            }
            Err(e) => (Err(e), self.buf),
        }
    }
}

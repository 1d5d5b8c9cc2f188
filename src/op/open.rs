use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use io_uring::{opcode, squeue, types};

use super::{result, BuildCtx, Op, OpImpl, Plan, Syscall};
use crate::errno::Errno;
use crate::fd::{Fd, FixedFile, Target};

/// How to open a file: `open(2)` flags, the mode for created files, and `RESOLVE_*` flags
/// (`openat2(2)`), e.g. `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS` to keep a lookup inside a
/// directory. `O_CLOEXEC` is always added.
///
/// ```
/// use trueio::op::OpenHow;
/// let how = OpenHow::new(libc::O_RDONLY)
///     .resolve(libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS);
/// # let _ = how;
/// ```
#[derive(Debug, Clone, Copy)]
pub struct OpenHow {
    flags: i32,
    mode: u32,
    resolve: u64,
}

impl OpenHow {
    /// `flags` as for `open(2)` (`O_RDONLY`, `O_CREAT | O_WRONLY`, `O_DIRECT`...).
    pub fn new(flags: i32) -> OpenHow {
        OpenHow {
            flags,
            mode: 0,
            resolve: 0,
        }
    }

    /// The permission bits for a created file (needs `O_CREAT` or `O_TMPFILE`).
    pub fn mode(mut self, mode: u32) -> OpenHow {
        self.mode = mode;
        self
    }

    /// `RESOLVE_*` flags (`RESOLVE_BENEATH`, `RESOLVE_NO_SYMLINKS`, ...).
    pub fn resolve(mut self, resolve: u64) -> OpenHow {
        self.resolve = resolve;
        self
    }

    fn to_libc(self) -> Box<libc::open_how> {
        let flags = (self.flags | libc::O_CLOEXEC) as u64;
        // O_CREAT/O_TMPFILE take a mode; openat2 rejects a mode otherwise.
        let takes_mode =
            self.flags & libc::O_CREAT != 0 || self.flags & libc::O_TMPFILE == libc::O_TMPFILE;
        // SAFETY: open_how is plain integers; all-zero is a valid value.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = flags;
        how.mode = if takes_mode { self.mode as u64 } else { 0 };
        how.resolve = self.resolve;
        Box::new(how)
    }
}

struct OpenArgs {
    dir: Option<Fd>,
    path: Option<CString>,
    how: Box<libc::open_how>,
}

impl OpenArgs {
    fn new(dir: Option<Fd>, path: &Path, how: OpenHow) -> OpenArgs {
        OpenArgs {
            dir,
            // A path with a NUL byte cannot be named; it fails with EINVAL at submission.
            path: CString::new(path.as_os_str().as_bytes()).ok(),
            how: how.to_libc(),
        }
    }

    fn dirfd(&self) -> Result<i32, Errno> {
        match self.dir.as_ref().map(|d| d.target()) {
            None => Ok(libc::AT_FDCWD),
            Some(Target::Fd(fd)) => Ok(fd),
            // openat2 takes a real directory descriptor, not a fixed slot.
            Some(Target::Fixed(_)) => Err(Errno(libc::EBADF)),
        }
    }

    fn sqe(&mut self, slot: Option<u32>) -> Result<squeue::Entry, Errno> {
        if slot.is_some() {
            // A direct descriptor has no close-on-exec state: the kernel rejects O_CLOEXEC
            // together with a file_index (EINVAL).
            self.how.flags &= !(libc::O_CLOEXEC as u64);
        }
        let path = self.path.as_ref().ok_or(Errno(libc::EINVAL))?;
        let how: *const libc::open_how = &*self.how;
        let mut op = opcode::OpenAt2::new(
            types::Fd(self.dirfd()?),
            path.as_ptr(),
            how.cast::<types::OpenHow>(),
        );
        if let Some(slot) = slot {
            let dest = types::DestinationSlot::try_from_slot_target(slot)
                .map_err(|_| Errno(libc::EBADF))?;
            op = op.file_index(Some(dest));
        }
        Ok(op.build())
    }

    fn plan(&self) -> Result<Plan, Errno> {
        let path = self.path.as_ref().ok_or(Errno(libc::EINVAL))?;
        Ok(Plan::Pool(Syscall::OpenAt2 {
            dirfd: self.dirfd()?,
            path: path.as_ptr(),
            how: &*self.how,
        }))
    }
}

/// Opens a file relative to a directory (`openat2(2)`), giving an owned descriptor.
///
/// `dir` `None` means the current directory. If the operation is cancelled but the open still
/// succeeds, the engine closes the descriptor: nothing leaks.
pub struct OpenAt2 {
    args: OpenArgs,
}

impl OpenAt2 {
    /// Opens `path` relative to `dir` (or the current directory) as `how` says.
    pub fn new(dir: Option<Fd>, path: impl AsRef<Path>, how: OpenHow) -> OpenAt2 {
        OpenAt2 {
            args: OpenArgs::new(dir, path.as_ref(), how),
        }
    }
}

impl std::fmt::Debug for OpenAt2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAt2")
            .field("path", &self.args.path)
            .finish()
    }
}

impl Op for OpenAt2 {
    type Output = io::Result<OwnedFd>;
}

impl OpImpl for OpenAt2 {
    fn uring_sqe(&mut self, _ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno> {
        self.args.sqe(None)
    }

    fn plan(&mut self, _ctx: &BuildCtx<'_>) -> Result<Plan, Errno> {
        self.args.plan()
    }

    fn complete(self, res: i32, _flags: u32) -> <Self as Op>::Output {
        let fd = result(res)?;
        // SAFETY: a successful open returned a new descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }
}

/// Opens a file straight into a fixed-file slot (a direct descriptor, Linux 5.15), giving a
/// [`FixedFile`]. On the epoll backend the slot holds an ordinary descriptor.
pub struct OpenAt2Direct {
    args: OpenArgs,
    slot: Option<FixedFile>,
    emulated: bool,
}

impl OpenAt2Direct {
    /// Opens `path` relative to `dir` into a free slot of the engine's fixed-file table.
    pub fn new(dir: Option<Fd>, path: impl AsRef<Path>, how: OpenHow) -> OpenAt2Direct {
        OpenAt2Direct {
            args: OpenArgs::new(dir, path.as_ref(), how),
            slot: None,
            emulated: false,
        }
    }

    fn take_slot(&mut self, ctx: &BuildCtx<'_>) -> Result<u32, Errno> {
        let table = ctx.files_rc();
        let slot = table.free.borrow_mut().pop().ok_or(Errno(libc::ENFILE))?;
        self.slot = Some(FixedFile::new(slot, table));
        Ok(slot)
    }
}

impl std::fmt::Debug for OpenAt2Direct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAt2Direct")
            .field("path", &self.args.path)
            .field("slot", &self.slot)
            .finish()
    }
}

impl Op for OpenAt2Direct {
    type Output = io::Result<FixedFile>;
}

impl OpImpl for OpenAt2Direct {
    fn uring_sqe(&mut self, ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno> {
        let slot = self.take_slot(ctx)?;
        if ctx.fixed_files_native {
            self.args.sqe(Some(slot))
        } else {
            // Fixed files emulated (registration refused): open an ordinary descriptor and
            // keep it in the slot's table entry.
            self.emulated = true;
            self.args.sqe(None)
        }
    }

    fn plan(&mut self, ctx: &BuildCtx<'_>) -> Result<Plan, Errno> {
        self.take_slot(ctx)?;
        self.emulated = true;
        self.args.plan()
    }

    fn complete(self, res: i32, _flags: u32) -> <Self as Op>::Output {
        let fd = result(res)?;
        let slot = self
            .slot
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENFILE))?;
        if self.emulated {
            // SAFETY: the open returned a new descriptor that nothing else owns.
            let owned = unsafe { OwnedFd::from_raw_fd(fd as i32) };
            let mut table = slot.table().emulated.borrow_mut();
            let idx = slot.slot() as usize;
            if table.len() <= idx {
                table.resize_with(idx + 1, || None);
            }
            table[idx] = Some(owned);
        }
        Ok(slot)
    }
}

//! Atomic replacement of a file: readers, a crash or a power loss see the old content or the
//! whole new content, never a mix and never a truncated file.
//!
//! The order, and why:
//! 1. The new content goes into a file with no name yet: `O_TMPFILE` in the target's
//!    directory (where the filesystem has it), else a fresh hidden name beside the target
//!    (`.NAME.trueio-PID-N.tmp`, created with `O_EXCL`). A process killed here leaves no
//!    name at all with `O_TMPFILE` (the kernel frees the inode), and only that hidden name
//!    otherwise.
//! 2. `fsync` of the file: its data and size are on the disk before any name points at it.
//!    Without it, a power loss after step 3 can leave the name on a file of zeros or of
//!    length 0 (ext4's `auto_da_alloc` papers over this for some patterns, XFS and btrfs do
//!    not).
//! 3. The file takes the target's name in one step. With `O_TMPFILE`: `linkat` from
//!    `/proc/self/fd` straight to the name when the target does not exist (`linkat` never
//!    replaces), else to the hidden name `.NAME.trueio-tmp` then `renameat` over the target:
//!    a kill between those two calls leaves that one name (the target intact), which the
//!    next replacement of the same target takes over. No call replaces a name from a
//!    descriptor, so this window cannot be closed. Otherwise `renameat` of the hidden name.
//!    A rename within a directory is atomic for every reader.
//! 4. `fsync` of the directory: the rename itself is durable when the call returns. Before
//!    it, a power loss leaves the old name or the new, each whole.

use std::ffi::OsString;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::dir::At;
use super::{on_path, with_context, File};
use crate::buf::IoBuf;
use crate::op::{self, OpenHow};

/// Distinguishes the temporary names of one process.
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

/// Rounds of link-and-rename before giving up to writers that keep taking the name.
const LINK_TRIES: usize = 16;

/// Writes `data` to `path` atomically: afterwards, and after a crash or power loss at any
/// moment, `path` holds either its old content or all of `data`. The file's permission bits
/// are the old file's (0o666 before the umask for a new one). See the module's steps.
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// use trueio::{fs, rt::Runtime};
/// let path = std::env::temp_dir().join(format!("trueio-atomic-doc-{}", std::process::id()));
/// Runtime::new()?.block_on(async {
///     fs::write_atomic(&path, b"version 1".to_vec()).await?;
///     fs::write_atomic(&path, b"version 2".to_vec()).await?;
///     assert_eq!(fs::read(&path).await?, b"version 2");
///     fs::remove_file(&path).await
/// })
/// # }
/// ```
pub async fn write_atomic<B: IoBuf>(path: impl AsRef<Path>, data: B) -> io::Result<()> {
    write_atomic_at(&At::cwd(), path.as_ref(), data).await
}

pub(super) async fn write_atomic_at<B: IoBuf>(at: &At, path: &Path, data: B) -> io::Result<()> {
    let f = AtomicFile::create_at(at, path).await?;
    let (r, _) = f.file().write_all_at(data, 0).await;
    r.map_err(|e| on_path(e, "writing", &at.shown(path)))?;
    f.commit().await
}

/// How the new content is held until it takes the target's name.
#[derive(Debug)]
enum Temp {
    /// An `O_TMPFILE` file: no name yet.
    Unnamed,
    /// A hidden name beside the target.
    Named(OsString),
}

/// A file being written that replaces `path` atomically at [`commit`](Self::commit), for
/// content streamed in pieces; dropped without a commit, it leaves `path` untouched and
/// removes its temporary name.
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// use trueio::{fs::AtomicFile, rt::Runtime};
/// let path = std::env::temp_dir().join(format!("trueio-atomicfile-doc-{}", std::process::id()));
/// Runtime::new()?.block_on(async {
///     let f = AtomicFile::create(&path).await?;
///     let (r, _) = f.file().write_all_at(b"part 1, ".to_vec(), 0).await;
///     r?;
///     let (r, _) = f.file().write_all_at(b"part 2".to_vec(), 8).await;
///     r?;
///     f.commit().await?;
///     assert_eq!(std::fs::read(&path)?, b"part 1, part 2");
///     std::fs::remove_file(&path)
/// })
/// # }
/// ```
#[derive(Debug)]
pub struct AtomicFile {
    file: Option<File>,
    dir: At,
    name: OsString,
    shown: PathBuf,
    temp: Temp,
}

impl AtomicFile {
    /// Starts the replacement of `path` (relative to the working directory).
    pub async fn create(path: impl AsRef<Path>) -> io::Result<AtomicFile> {
        AtomicFile::create_at(&At::cwd(), path.as_ref()).await
    }

    pub(super) async fn create_at(at: &At, path: &Path) -> io::Result<AtomicFile> {
        let shown = at.shown(path);
        let name = path
            .file_name()
            .filter(|_| !path.as_os_str().as_bytes().ends_with(b"/"))
            .ok_or_else(|| {
                let e = io::Error::new(io::ErrorKind::InvalidInput, "not a file name");
                on_path(e, "replacing", &shown)
            })?
            .to_owned();
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir = at.open_dir(parent).await?.at();
        // The old file's permission bits, so that a replaced config keeps its mode.
        let mode = match dir.metadata(Path::new(&name), 0).await {
            Ok(m) => m.mode() & 0o7777,
            Err(_) => 0o666,
        };
        let unnamed = OpenHow::new(libc::O_TMPFILE | libc::O_WRONLY).mode(mode);
        let (file, temp) = match dir.open_file(Path::new("."), unnamed).await {
            Ok(f) => (f, Temp::Unnamed),
            // No O_TMPFILE on this filesystem (or kernel): a hidden name.
            Err(e) if no_tmpfile(&e) => {
                let (f, temp) = create_named(&dir, &name, mode).await?;
                (f, Temp::Named(temp))
            }
            Err(e) => return Err(on_path(e, "creating a temporary file for", &shown)),
        };
        Ok(AtomicFile {
            file: Some(file),
            dir,
            name,
            shown,
            temp,
        })
    }

    /// The file to write the new content into (from offset 0; the content is what the file
    /// holds at the commit).
    pub fn file(&self) -> &File {
        self.file
            .as_ref()
            .unwrap_or_else(|| unreachable!("taken only by commit"))
    }

    /// Makes the new content durable and gives it the target's name (the module's steps 2
    /// to 4). On an error the target is untouched and no temporary name stays behind.
    pub async fn commit(mut self) -> io::Result<()> {
        let file = self
            .file
            .take()
            .unwrap_or_else(|| unreachable!("taken only here"));
        let r = self.place(&file).await;
        if r.is_err() {
            self.remove_temp();
        } else {
            // Placed: nothing to remove.
            self.temp = Temp::Unnamed;
        }
        r?;
        file.close()
            .await
            .map_err(|e| on_path(e, "closing", &self.shown))
    }

    async fn place(&mut self, file: &File) -> io::Result<()> {
        file.sync_all()
            .await
            .map_err(|e| on_path(e, "syncing", &self.shown))?;
        match &self.temp {
            Temp::Unnamed => self.link_unnamed(file).await?,
            Temp::Named(temp) => self.rename_into_place(temp.clone()).await?,
        }
        let dir_fd = self
            .dir
            .fd()
            .unwrap_or_else(|| unreachable!("an opened directory"));
        self.dir
            .submit(op::Fsync::new(dir_fd))
            .await
            .map_err(|e| with_context(e, "syncing the directory of", &self.shown, String::new()))
    }

    /// Step 3 for an `O_TMPFILE` file.
    async fn link_unnamed(&mut self, file: &File) -> io::Result<()> {
        let proc_path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        let link = |to: OsString| {
            self.dir.submit(op::LinkAt::new(
                None,
                &proc_path,
                self.dir.fd(),
                to,
                libc::AT_SYMLINK_FOLLOW,
            ))
        };
        let target_exists = self
            .dir
            .metadata(Path::new(&self.name), libc::AT_SYMLINK_NOFOLLOW)
            .await
            .is_ok();
        if !target_exists {
            match link(self.name.clone()).await {
                Ok(()) => return Ok(()),
                // Created meanwhile: replace it as below.
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => return Err(on_path(e, "linking the new content of", &self.shown)),
            }
        }
        // One fixed hidden name per target: a process killed between the link and the
        // rename leaves at most that one name, which the next replacement reuses. Two
        // writers racing for it: one takes the other's name away (that one links again),
        // and the target ends with one whole content.
        let temp = fixed_temp_name(&self.name);
        for _ in 0..LINK_TRIES {
            match link(temp.clone()).await {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    // Stale (a killed writer) or another writer's: take it.
                    let _ = self
                        .dir
                        .submit(op::UnlinkAt::new(self.dir.fd(), &temp, 0))
                        .await;
                    continue;
                }
                Err(e) => return Err(on_path(e, "linking the new content of", &self.shown)),
            }
            self.temp = Temp::Named(temp.clone());
            match self.rename_into_place(temp.clone()).await {
                // Another writer took the name between our link and rename: link again.
                Err(e) if super::os_error(&e) == Some(libc::ENOENT) => continue,
                r => return r,
            }
        }
        let e = io::Error::new(
            io::ErrorKind::WouldBlock,
            "other writers kept taking the temporary name",
        );
        Err(on_path(e, "replacing", &self.shown))
    }

    async fn rename_into_place(&self, temp: OsString) -> io::Result<()> {
        self.dir
            .submit(op::RenameAt::new(
                self.dir.fd(),
                temp,
                self.dir.fd(),
                &self.name,
                0,
            ))
            .await
            .map_err(|e| on_path(e, "renaming the new content onto", &self.shown))
    }

    /// Removes the temporary name, if one was made (a plain `unlinkat`: this also runs from
    /// `Drop`, which cannot wait for the engine).
    fn remove_temp(&mut self) {
        let Temp::Named(temp) = std::mem::replace(&mut self.temp, Temp::Unnamed) else {
            return;
        };
        let (Some(dir), Ok(c)) = (&self.dir.dir, std::ffi::CString::new(temp.as_bytes())) else {
            return;
        };
        // SAFETY: a plain syscall on a descriptor we hold and a NUL-terminated path that
        // lives across the call.
        unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) };
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        self.remove_temp();
    }
}

/// Whether opening with `O_TMPFILE` failed because the filesystem (or kernel) lacks it.
fn no_tmpfile(e: &io::Error) -> bool {
    matches!(
        super::os_error(e),
        Some(libc::EOPNOTSUPP) | Some(libc::EISDIR) | Some(libc::EINVAL)
    )
}

/// `.NAME.trueio-tmp`: the hidden name an `O_TMPFILE` file takes just before its rename.
fn fixed_temp_name(name: &OsString) -> OsString {
    let mut t = OsString::from(".");
    t.push(name);
    t.push(".trueio-tmp");
    t
}

/// `.NAME.trueio-PID-N.tmp`: hidden, and unique within this process and among processes.
fn temp_name(name: &OsString) -> OsString {
    let n = NEXT_TEMP.fetch_add(1, Ordering::Relaxed);
    let mut t = OsString::from(".");
    t.push(name);
    t.push(format!(".trueio-{}-{n}.tmp", std::process::id()));
    t
}

/// A new file under a fresh hidden name beside `name`.
async fn create_named(dir: &At, name: &OsString, mode: u32) -> io::Result<(File, OsString)> {
    loop {
        let temp = temp_name(name);
        let how = OpenHow::new(libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL).mode(mode);
        match dir.open_file(Path::new(&temp), how).await {
            Ok(f) => return Ok((f, temp)),
            Err(e) if super::os_error(&e) == Some(libc::EEXIST) => continue,
            Err(e) => return Err(e),
        }
    }
}

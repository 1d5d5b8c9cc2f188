//! Names in the filesystem, relative to an open directory ([`Dir`]) or to the working
//! directory (the free functions of [`fs`](super)), with the semantics of the `std::fs` calls
//! of the same names.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::read_dir::ReadDir;
use super::{on_path, File, Metadata, STATX_DIOALIGN};
use crate::op::{self, OpenHow};
use crate::{rt, Engine, Fd, Ticket};

/// Names removed at once by `remove_dir_all`: a directory's files are unlinked this many in
/// flight, which overlaps their journal work without holding an unbounded queue.
const UNLINKS_IN_FLIGHT: usize = 128;

/// An open directory: every path given to its methods is relative to it (`openat` style), so
/// a tool walking a tree does not race with renames above it.
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// use trueio::{fs::Dir, rt::Runtime};
/// let root = std::env::temp_dir().join(format!("trueio-dir-doc-{}", std::process::id()));
/// std::fs::create_dir(&root)?;
/// Runtime::new()?.block_on(async {
///     let dir = Dir::open(&root).await?;
///     dir.create_dir_all("a/b").await?;
///     dir.write_atomic("a/b/c.txt", b"hello".to_vec()).await?;
///     dir.rename("a/b/c.txt", &dir, "d.txt").await?;
///     assert_eq!(dir.metadata("d.txt").await?.len(), 5);
///     dir.remove_dir_all("a").await?;
///     dir.remove_file("d.txt").await
/// })?;
/// std::fs::remove_dir(&root)
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Dir {
    fd: Rc<OwnedFd>,
    path: PathBuf,
    engine: Engine,
}

/// Where a path is looked up: an open directory, or the working directory.
#[derive(Debug, Clone)]
pub(super) struct At {
    pub(super) dir: Option<Rc<OwnedFd>>,
    /// The directory's path, for error messages only.
    base: PathBuf,
    pub(super) engine: Engine,
}

impl Dir {
    /// Opens the directory at `path`.
    pub async fn open(path: impl AsRef<Path>) -> io::Result<Dir> {
        At::cwd().open_dir(path.as_ref()).await
    }

    /// The path this directory was opened with (for messages; the handle does not depend on
    /// it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn at(&self) -> At {
        At {
            dir: Some(self.fd.clone()),
            base: self.path.clone(),
            engine: self.engine.clone(),
        }
    }

    /// Opens the directory `path` inside this one.
    pub async fn open_dir(&self, path: impl AsRef<Path>) -> io::Result<Dir> {
        self.at().open_dir(path.as_ref()).await
    }

    /// Opens the file `path` inside this one as `how` says.
    pub async fn open_file(&self, path: impl AsRef<Path>, how: OpenHow) -> io::Result<File> {
        self.at().open_file(path.as_ref(), how).await
    }

    /// Creates the directory `path` (mode 0o777 before the umask), as `std::fs::create_dir`.
    pub async fn create_dir(&self, path: impl AsRef<Path>) -> io::Result<()> {
        self.at().create_dir(path.as_ref()).await
    }

    /// Creates `path` and its missing parents, as `std::fs::create_dir_all`.
    pub async fn create_dir_all(&self, path: impl AsRef<Path>) -> io::Result<()> {
        self.at().create_dir_all(path.as_ref()).await
    }

    /// Removes the file (or symlink) `path`.
    pub async fn remove_file(&self, path: impl AsRef<Path>) -> io::Result<()> {
        self.at().unlink(path.as_ref(), 0, "removing").await
    }

    /// Removes the empty directory `path`.
    pub async fn remove_dir(&self, path: impl AsRef<Path>) -> io::Result<()> {
        self.at()
            .unlink(path.as_ref(), libc::AT_REMOVEDIR, "removing directory")
            .await
    }

    /// Removes `path` and everything under it without following a symlink (see
    /// [`remove_dir_all`](super::remove_dir_all)).
    pub async fn remove_dir_all(&self, path: impl AsRef<Path>) -> io::Result<()> {
        self.at().remove_dir_all(path.as_ref()).await
    }

    /// Renames `from` (in this directory) to `to` in `to_dir`, replacing `to` if it exists,
    /// as `std::fs::rename`.
    pub async fn rename(
        &self,
        from: impl AsRef<Path>,
        to_dir: &Dir,
        to: impl AsRef<Path>,
    ) -> io::Result<()> {
        self.at()
            .rename(from.as_ref(), &to_dir.at(), to.as_ref(), 0)
            .await
    }

    /// Renames with `renameat2` flags: `libc::RENAME_NOREPLACE` fails with `AlreadyExists`
    /// rather than replace `to`; `libc::RENAME_EXCHANGE` swaps the two names.
    pub async fn rename_with(
        &self,
        from: impl AsRef<Path>,
        to_dir: &Dir,
        to: impl AsRef<Path>,
        flags: u32,
    ) -> io::Result<()> {
        self.at()
            .rename(from.as_ref(), &to_dir.at(), to.as_ref(), flags)
            .await
    }

    /// A new name `link` in `link_dir` for the file `original` (a symlink itself, not what
    /// it points at, as `std::fs::hard_link` on Linux).
    pub async fn hard_link(
        &self,
        original: impl AsRef<Path>,
        link_dir: &Dir,
        link: impl AsRef<Path>,
    ) -> io::Result<()> {
        self.at()
            .hard_link(original.as_ref(), &link_dir.at(), link.as_ref())
            .await
    }

    /// Creates the symlink `link` here, whose content is `original`.
    pub async fn symlink(
        &self,
        original: impl AsRef<Path>,
        link: impl AsRef<Path>,
    ) -> io::Result<()> {
        self.at().symlink(original.as_ref(), link.as_ref()).await
    }

    /// The content of the symlink `path`.
    pub async fn read_link(&self, path: impl AsRef<Path>) -> io::Result<PathBuf> {
        self.at().read_link(path.as_ref()).await
    }

    /// Metadata of `path`, following a final symlink.
    pub async fn metadata(&self, path: impl AsRef<Path>) -> io::Result<Metadata> {
        self.at().metadata(path.as_ref(), 0).await
    }

    /// Metadata of `path` itself, a symlink included.
    pub async fn symlink_metadata(&self, path: impl AsRef<Path>) -> io::Result<Metadata> {
        self.at()
            .metadata(path.as_ref(), libc::AT_SYMLINK_NOFOLLOW)
            .await
    }

    /// The entries of this directory (a fresh descriptor of it, so two reads never share a
    /// position).
    pub async fn read_dir(&self) -> io::Result<ReadDir> {
        self.at().read_dir(Path::new(".")).await
    }

    /// Writes `data` to `path` atomically (see [`write_atomic`](super::write_atomic)).
    pub async fn write_atomic<B: crate::buf::IoBuf>(
        &self,
        path: impl AsRef<Path>,
        data: B,
    ) -> io::Result<()> {
        super::atomic::write_atomic_at(&self.at(), path.as_ref(), data).await
    }
}

impl AsRawFd for Dir {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

impl At {
    /// The working directory of the current runtime's engine.
    pub(super) fn cwd() -> At {
        At {
            dir: None,
            base: PathBuf::new(),
            engine: rt::engine(),
        }
    }

    pub(super) fn fd(&self) -> Option<Fd> {
        self.dir.clone().map(Fd::Shared)
    }

    /// `path` as messages show it.
    pub(super) fn shown(&self, path: &Path) -> PathBuf {
        self.base.join(path)
    }

    pub(super) fn submit<T: op::Op>(&self, op: T) -> Ticket<T> {
        self.engine.submit(op)
    }

    pub(super) async fn open_fd(&self, path: &Path, how: OpenHow) -> io::Result<OwnedFd> {
        self.submit(op::OpenAt2::new(self.fd(), path, how))
            .await
            .map_err(|e| on_path(e, "opening", &self.shown(path)))
    }

    pub(super) async fn open_dir(&self, path: &Path) -> io::Result<Dir> {
        let how = OpenHow::new(libc::O_RDONLY | libc::O_DIRECTORY);
        let fd = self.open_fd(path, how).await?;
        Ok(Dir {
            fd: Rc::new(fd),
            path: self.shown(path),
            engine: self.engine.clone(),
        })
    }

    pub(super) async fn open_file(&self, path: &Path, how: OpenHow) -> io::Result<File> {
        let fd = self.open_fd(path, how).await?;
        Ok(File::from_parts(fd, self.engine.clone()))
    }

    pub(super) async fn create_dir(&self, path: &Path) -> io::Result<()> {
        self.submit(op::MkdirAt::new(self.fd(), path, 0o777))
            .await
            .map_err(|e| on_path(e, "creating directory", &self.shown(path)))
    }

    /// Creates the missing ancestors first, from the deepest one that exists; a directory
    /// made meanwhile by someone else is fine, as for `std::fs::create_dir_all`.
    pub(super) async fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut missing = Vec::new();
        let mut at = Some(path);
        while let Some(p) = at.filter(|p| !p.as_os_str().is_empty()) {
            match self.submit(op::MkdirAt::new(self.fd(), p, 0o777)).await {
                Ok(()) => break,
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    if self.is_dir(p).await {
                        break;
                    }
                    return Err(on_path(e, "creating directory", &self.shown(p)));
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    missing.push(p);
                    at = p.parent();
                }
                Err(e) => return Err(on_path(e, "creating directory", &self.shown(p))),
            }
        }
        for p in missing.into_iter().rev() {
            match self.submit(op::MkdirAt::new(self.fd(), p, 0o777)).await {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) && self.is_dir(p).await => {}
                Err(e) => return Err(on_path(e, "creating directory", &self.shown(p))),
            }
        }
        Ok(())
    }

    async fn is_dir(&self, path: &Path) -> bool {
        self.metadata(path, 0).await.is_ok_and(|m| m.is_dir())
    }

    pub(super) async fn unlink(
        &self,
        path: &Path,
        flags: i32,
        what: &'static str,
    ) -> io::Result<()> {
        self.submit(op::UnlinkAt::new(self.fd(), path, flags))
            .await
            .map_err(|e| on_path(e, what, &self.shown(path)))
    }

    pub(super) async fn rename(
        &self,
        from: &Path,
        to: &At,
        to_path: &Path,
        flags: u32,
    ) -> io::Result<()> {
        self.submit(op::RenameAt::new(self.fd(), from, to.fd(), to_path, flags))
            .await
            .map_err(|e| {
                let detail = format!(" to {}", to.shown(to_path).display());
                super::with_context(e, "renaming", &self.shown(from), detail)
            })
    }

    pub(super) async fn hard_link(&self, original: &Path, to: &At, link: &Path) -> io::Result<()> {
        self.submit(op::LinkAt::new(self.fd(), original, to.fd(), link, 0))
            .await
            .map_err(|e| {
                let detail = format!(" as {}", to.shown(link).display());
                super::with_context(e, "linking", &self.shown(original), detail)
            })
    }

    pub(super) async fn symlink(&self, original: &Path, link: &Path) -> io::Result<()> {
        self.submit(op::SymlinkAt::new(original, self.fd(), link))
            .await
            .map_err(|e| on_path(e, "creating symlink", &self.shown(link)))
    }

    pub(super) async fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        self.submit(op::ReadLinkAt::new(self.fd(), path))
            .await
            .map_err(|e| on_path(e, "reading link", &self.shown(path)))
    }

    pub(super) async fn metadata(&self, path: &Path, flags: i32) -> io::Result<Metadata> {
        let mask = libc::STATX_BASIC_STATS | STATX_DIOALIGN;
        self.submit(op::Statx::path(self.fd(), path, flags, mask))
            .await
            .map(Metadata)
            .map_err(|e| on_path(e, "reading metadata of", &self.shown(path)))
    }

    pub(super) async fn read_dir(&self, path: &Path) -> io::Result<ReadDir> {
        let how = OpenHow::new(libc::O_RDONLY | libc::O_DIRECTORY);
        let fd = self.open_fd(path, how).await?;
        Ok(ReadDir::new(
            Rc::new(fd),
            &self.shown(path),
            self.engine.clone(),
        ))
    }

    /// Removes `path` and all it holds. A symlink is removed itself, never followed: each
    /// directory is opened relative to its parent with `O_NOFOLLOW`, so a directory replaced
    /// by a symlink meanwhile is unlinked as the link it has become, and nothing outside the
    /// tree is touched. A name that vanished meanwhile is not an error.
    pub(super) async fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let meta = self.metadata(path, libc::AT_SYMLINK_NOFOLLOW).await?;
        if !meta.is_dir() {
            if meta.is_symlink() {
                return self.unlink(path, 0, "removing").await;
            }
            let e = io::Error::from_raw_os_error(libc::ENOTDIR);
            return Err(on_path(e, "removing directory", &self.shown(path)));
        }
        let root = self.open_nofollow(path).await?;
        let files = root.clear_files().await?;
        // Depth first: each frame is a directory, the subdirectories it has left to empty,
        // and its name in the frame below (none for the root).
        let mut stack: Vec<(At, Vec<OsString>, Option<OsString>)> = vec![(root, files, None)];
        while let Some(top) = stack.last_mut() {
            let Some(name) = top.1.pop() else {
                if let Some((_, _, Some(name))) = stack.pop() {
                    if let Some((parent, _, _)) = stack.last() {
                        parent.remove_entry(&name, libc::AT_REMOVEDIR).await?;
                    }
                }
                continue;
            };
            let dir = top.0.clone();
            match dir.open_nofollow(Path::new(&name)).await {
                Ok(child) => {
                    let files = child.clear_files().await?;
                    stack.push((child, files, Some(name)));
                }
                Err(e) => match super::os_error(&e) {
                    // Replaced by a symlink or a file meanwhile: remove the name itself.
                    Some(libc::ELOOP) | Some(libc::ENOTDIR) => dir.remove_entry(&name, 0).await?,
                    Some(libc::ENOENT) => {}
                    _ => return Err(e),
                },
            }
        }
        self.unlink(path, libc::AT_REMOVEDIR, "removing directory")
            .await
    }

    /// A directory inside this one, opened without following a symlink.
    async fn open_nofollow(&self, path: &Path) -> io::Result<At> {
        let how = OpenHow::new(libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW);
        let fd = self.open_fd(path, how).await?;
        Ok(At {
            dir: Some(Rc::new(fd)),
            base: self.shown(path),
            engine: self.engine.clone(),
        })
    }

    /// Unlinks every entry of this directory that is not a directory, many in flight; gives
    /// back the names of the subdirectories.
    async fn clear_files(&self) -> io::Result<Vec<OsString>> {
        let mut entries = ReadDir::new(
            self.dir
                .clone()
                .unwrap_or_else(|| unreachable!("an opened directory")),
            &self.base,
            self.engine.clone(),
        );
        let mut subdirs = Vec::new();
        let mut in_flight: Vec<(OsString, Ticket<op::UnlinkAt>)> = Vec::new();
        while let Some(entry) = entries.next_entry().await {
            let entry = entry?;
            let name = entry.file_name().to_owned();
            if entry.file_type_hint().is_some_and(|t| t.is_dir()) {
                subdirs.push(name);
                continue;
            }
            let t = self.submit(op::UnlinkAt::new(self.fd(), &name, 0));
            in_flight.push((name, t));
            if in_flight.len() >= UNLINKS_IN_FLIGHT {
                self.finish_unlinks(&mut in_flight, &mut subdirs).await?;
            }
        }
        self.finish_unlinks(&mut in_flight, &mut subdirs).await?;
        Ok(subdirs)
    }

    /// Waits for the unlinks in flight; a name that was a directory after all (`DT_UNKNOWN`)
    /// joins `subdirs`.
    async fn finish_unlinks(
        &self,
        in_flight: &mut Vec<(OsString, Ticket<op::UnlinkAt>)>,
        subdirs: &mut Vec<OsString>,
    ) -> io::Result<()> {
        let mut first_err = None;
        for (name, t) in in_flight.drain(..) {
            match t.await {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EISDIR) => subdirs.push(name),
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => {
                    first_err.get_or_insert_with(|| {
                        on_path(e, "removing", &self.shown(Path::new(&name)))
                    });
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Removes an entry by name (a vanished one is not an error).
    async fn remove_entry(&self, name: &OsString, flags: i32) -> io::Result<()> {
        match self.unlink(Path::new(name), flags, "removing").await {
            Err(e) if super::os_error(&e) == Some(libc::ENOENT) => Ok(()),
            r => r,
        }
    }
}

//! Files on the current runtime's engine, with owned buffers.
//!
//! Every method takes its buffer by value and gives it back with the result, also on error:
//! `let (res, buf) = file.read_at(buf, 0).await;`.
//!
//! ```
//! # fn main() -> std::io::Result<()> {
//! use trueio::{fs::File, rt::Runtime};
//! let path = std::env::temp_dir().join(format!("trueio-fs-doc-{}", std::process::id()));
//! Runtime::new()?.block_on(async {
//!     let f = File::create(&path).await?;
//!     let (r, _) = f.write_all_at(b"hello".to_vec(), 0).await;
//!     r?;
//!     f.sync_all().await?;
//!     let f = File::open(&path).await?;
//!     let (r, buf) = f.read_exact_at(vec![0u8; 5], 0).await;
//!     r?;
//!     assert_eq!(buf, b"hello");
//!     assert_eq!(f.metadata().await?.len(), 5);
//!     std::fs::remove_file(&path)
//! })
//! # }
//! ```

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use crate::buf::{resume, FixedBuf, IoBuf, IoBufMut};
use crate::op::{self, OpenHow};
use crate::{rt, Engine, Fd};
use dir::At;

mod atomic;
mod copy;
mod dir;
mod read_dir;
pub use atomic::{write_atomic, AtomicFile};
pub use copy::{
    copy_file, copy_file_with, CopyOptions, CopyReport, Progress, DEFAULT_BLOCK_SIZE,
    DEFAULT_QUEUE_DEPTH, MAX_BLOCK_SIZE,
};
pub use dir::Dir;
pub use read_dir::{DirEntry, FileType, ReadDir};

/// `STATX_DIOALIGN` (6.1): the direct-I/O alignment fields.
const STATX_DIOALIGN: u32 = 0x2000;

/// Whether `len` bytes of `fd` from `pos` are all in the page cache (`cachestat`, 6.5). Kernels
/// without it answer "not known": the caller reads through the engine.
pub(crate) fn page_cached(fd: RawFd, pos: u64, len: u64) -> bool {
    use std::sync::atomic::{AtomicBool, Ordering};
    static MISSING: AtomicBool = AtomicBool::new(false);
    if MISSING.load(Ordering::Relaxed) {
        return false;
    }
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct CacheStat {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }
    const SYS_CACHESTAT: libc::c_long = 451;
    let range = Range { off: pos, len };
    let mut st = CacheStat::default();
    // SAFETY: both structs live on this frame and match the kernel's layouts
    // (`struct cachestat_range`, `struct cachestat`); flags must be 0.
    let r = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            fd,
            &range as *const Range,
            &mut st as *mut CacheStat,
            0u32,
        )
    };
    if r < 0 {
        if io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
            MISSING.store(true, Ordering::Relaxed);
        }
        return false;
    }
    let page = crate::buf::page_size() as u64;
    // Pages the range touches.
    let first = pos / page;
    let last = (pos + len.max(1) - 1) / page;
    st.nr_cache > last - first
}

/// An error about opening `path`: the message names it, and [`os_error`] still finds the
/// errno.
fn with_path(e: io::Error, path: &Path) -> io::Error {
    with_context(e, "opening", path, String::new())
}

/// An error of `what` (a verb: "opening", "reading") on `path`, with `detail` after the path
/// (e.g. " at offset 4096"); keeps the kind, and [`os_error`] still finds the errno.
pub(crate) fn with_context(
    e: io::Error,
    what: &'static str,
    path: &Path,
    detail: String,
) -> io::Error {
    io::Error::new(
        e.kind(),
        PathError {
            what,
            path: path.to_path_buf(),
            detail,
            source: e,
        },
    )
}

/// An error of `what` on `path`, without a detail ([`with_context`]).
pub(crate) fn on_path(e: io::Error, what: &'static str, path: &Path) -> io::Error {
    with_context(e, what, path, String::new())
}

#[derive(Debug)]
struct PathError {
    what: &'static str,
    path: std::path::PathBuf,
    detail: String,
    source: io::Error,
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}{}: {}",
            self.what,
            self.path.display(),
            self.detail,
            self.source
        )
    }
}

impl std::error::Error for PathError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The errno behind an error from this module, also when the error names its file (where
/// `io::Error::raw_os_error` alone gives `None`).
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// use trueio::{fs, rt::Runtime};
/// let e = Runtime::new()?.block_on(fs::File::open("/nonexistent/x")).unwrap_err();
/// assert_eq!(fs::os_error(&e), Some(libc::ENOENT));
/// assert!(e.to_string().contains("/nonexistent/x"));
/// # Ok(()) }
/// ```
pub fn os_error(e: &io::Error) -> Option<i32> {
    e.raw_os_error().or_else(|| {
        let inner = e.get_ref()?;
        if let Some(p) = inner.downcast_ref::<PathError>() {
            return os_error(&p.source);
        }
        inner
            .downcast_ref::<copy::CopyError>()
            .and_then(|c| os_error(&c.source))
    })
}

/// Creates the directory `path` (mode 0o777 before the umask), as `std::fs::create_dir`.
pub async fn create_dir(path: impl AsRef<Path>) -> io::Result<()> {
    At::cwd().create_dir(path.as_ref()).await
}

/// Creates `path` and its missing parents; a directory that exists already (or appears
/// meanwhile) is fine, as for `std::fs::create_dir_all`.
pub async fn create_dir_all(path: impl AsRef<Path>) -> io::Result<()> {
    At::cwd().create_dir_all(path.as_ref()).await
}

/// Removes a file or symlink, as `std::fs::remove_file`.
pub async fn remove_file(path: impl AsRef<Path>) -> io::Result<()> {
    At::cwd().unlink(path.as_ref(), 0, "removing").await
}

/// Removes an empty directory, as `std::fs::remove_dir`.
pub async fn remove_dir(path: impl AsRef<Path>) -> io::Result<()> {
    At::cwd()
        .unlink(path.as_ref(), libc::AT_REMOVEDIR, "removing directory")
        .await
}

/// Removes a directory and everything under it, as `std::fs::remove_dir_all`: a symlink
/// (`path` itself or any entry) is removed, never followed, and each directory is opened
/// relative to its parent without following symlinks, so a tree changed underneath (a
/// directory swapped for a link to elsewhere) cannot lead the removal outside it. Many
/// files of a directory are unlinked at once.
pub async fn remove_dir_all(path: impl AsRef<Path>) -> io::Result<()> {
    At::cwd().remove_dir_all(path.as_ref()).await
}

/// Renames `from` to `to`, replacing `to` if it exists, as `std::fs::rename`.
pub async fn rename(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
    let at = At::cwd();
    at.rename(from.as_ref(), &at, to.as_ref(), 0).await
}

/// A new name `link` for the file `original`, as `std::fs::hard_link`.
pub async fn hard_link(original: impl AsRef<Path>, link: impl AsRef<Path>) -> io::Result<()> {
    let at = At::cwd();
    at.hard_link(original.as_ref(), &at, link.as_ref()).await
}

/// Creates the symlink `link` whose content is `original`, as
/// `std::os::unix::fs::symlink`.
pub async fn symlink(original: impl AsRef<Path>, link: impl AsRef<Path>) -> io::Result<()> {
    At::cwd().symlink(original.as_ref(), link.as_ref()).await
}

/// The content of a symlink, as `std::fs::read_link`.
pub async fn read_link(path: impl AsRef<Path>) -> io::Result<std::path::PathBuf> {
    At::cwd().read_link(path.as_ref()).await
}

/// Metadata of `path`, following symlinks, as `std::fs::metadata`.
pub async fn metadata(path: impl AsRef<Path>) -> io::Result<Metadata> {
    At::cwd().metadata(path.as_ref(), 0).await
}

/// Metadata of `path` itself, as `std::fs::symlink_metadata`.
pub async fn symlink_metadata(path: impl AsRef<Path>) -> io::Result<Metadata> {
    At::cwd()
        .metadata(path.as_ref(), libc::AT_SYMLINK_NOFOLLOW)
        .await
}

/// The entries of a directory, as `std::fs::read_dir`: each with its name and, where the
/// filesystem reports it, its type, without a `stat` per entry.
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// use trueio::{fs, rt::Runtime};
/// Runtime::new()?.block_on(async {
///     let mut entries = fs::read_dir("/").await?;
///     let mut dirs = 0;
///     while let Some(entry) = entries.next_entry().await {
///         if entry?.file_type().await?.is_dir() {
///             dirs += 1;
///         }
///     }
///     assert!(dirs > 0);
///     Ok(())
/// })
/// # }
/// ```
pub async fn read_dir(path: impl AsRef<Path>) -> io::Result<ReadDir> {
    At::cwd().read_dir(path.as_ref()).await
}

/// The whole content of a file, as `std::fs::read`.
pub async fn read(path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
    let path = path.as_ref();
    let f = File::open(path).await?;
    f.read_to_end()
        .await
        .map_err(|e| on_path(e, "reading", path))
}

/// The whole content of a file as UTF-8, as `std::fs::read_to_string` (`InvalidData` when
/// it is not).
pub async fn read_to_string(path: impl AsRef<Path>) -> io::Result<String> {
    let path = path.as_ref();
    let bytes = read(path).await?;
    String::from_utf8(bytes).map_err(|e| {
        let e = io::Error::new(io::ErrorKind::InvalidData, e.utf8_error());
        on_path(e, "reading", path)
    })
}

/// Writes `data` as the whole content of `path`, creating or truncating it, as
/// `std::fs::write` (not atomic: see [`write_atomic`] for that).
pub async fn write<B: IoBuf>(path: impl AsRef<Path>, data: B) -> io::Result<()> {
    let path = path.as_ref();
    let f = File::create(path).await?;
    let (r, _) = f.write_all_at(data, 0).await;
    r.map_err(|e| on_path(e, "writing", path))?;
    f.close().await.map_err(|e| on_path(e, "closing", path))
}

/// The absolute path of `path` with every symlink, `.` and `..` resolved, as
/// `std::fs::canonicalize` (from the kernel's own name of the opened file, through
/// `/proc/self/fd`).
pub async fn canonicalize(path: impl AsRef<Path>) -> io::Result<std::path::PathBuf> {
    let path = path.as_ref();
    let at = At::cwd();
    let fd = at.open_fd(path, OpenHow::new(libc::O_PATH)).await?;
    let proc = format!("/proc/self/fd/{}", fd.as_raw_fd());
    at.read_link(Path::new(&proc))
        .await
        .map_err(|e| on_path(e, "resolving", path))
}

/// The value of the extended attribute `name` of `path` (following symlinks).
pub async fn get_xattr(path: impl AsRef<Path>, name: &str) -> io::Result<Vec<u8>> {
    let path = path.as_ref();
    let engine = rt::engine();
    xattr::get(&engine, |max| op::GetXattr::path(path, name, max))
        .await
        .map_err(|e| with_context(e, "reading attribute", path, format!(" {name}")))
}

/// Sets the extended attribute `name` of `path` (`flags`: 0, `libc::XATTR_CREATE` or
/// `XATTR_REPLACE`).
pub async fn set_xattr(
    path: impl AsRef<Path>,
    name: &str,
    value: Vec<u8>,
    flags: i32,
) -> io::Result<()> {
    let path = path.as_ref();
    let (r, _) = rt::engine()
        .submit(op::SetXattr::path(path, name, value, flags))
        .await;
    r.map_err(|e| with_context(e, "setting attribute", path, format!(" {name}")))
}

mod xattr {
    use std::io;

    use crate::{op, Engine};

    /// A value's first read tries this many bytes; a longer one is read again with room
    /// for the longest Linux allows (`XATTR_SIZE_MAX`, 64 KiB).
    const FIRST_TRY: usize = 256;
    const SIZE_MAX: usize = 65536;

    /// Reads a value whatever its length: `build(max)` makes the read.
    pub(super) async fn get(
        engine: &Engine,
        build: impl Fn(usize) -> op::GetXattr,
    ) -> io::Result<Vec<u8>> {
        match engine.submit(build(FIRST_TRY)).await {
            Err(e) if e.raw_os_error() == Some(libc::ERANGE) => {
                let mut v = engine.submit(build(SIZE_MAX)).await?;
                v.shrink_to_fit();
                Ok(v)
            }
            r => r,
        }
    }
}

/// An open file whose operations run on the engine of the runtime that opened it.
#[derive(Debug)]
pub struct File {
    fd: Rc<OwnedFd>,
    engine: Engine,
}

impl File {
    /// Opens `path` read-only.
    pub async fn open(path: impl AsRef<Path>) -> io::Result<File> {
        Self::open_with(None, path, OpenHow::new(libc::O_RDONLY)).await
    }

    /// Creates (or truncates) `path` for writing, mode 0o666 before the umask.
    pub async fn create(path: impl AsRef<Path>) -> io::Result<File> {
        let how = OpenHow::new(libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC).mode(0o666);
        Self::open_with(None, path, how).await
    }

    /// Opens `path` relative to `dir` (the current directory when `None`) as `how` says,
    /// e.g. with `RESOLVE_BENEATH` to stay inside `dir`.
    pub async fn open_with(
        dir: Option<&File>,
        path: impl AsRef<Path>,
        how: OpenHow,
    ) -> io::Result<File> {
        let engine = rt::engine();
        let path = path.as_ref();
        let dir = dir.map(|d| Fd::Shared(d.fd.clone()));
        let fd = engine
            .submit(op::OpenAt2::new(dir, path, how))
            .await
            .map_err(|e| with_path(e, path))?;
        Ok(File {
            fd: Rc::new(fd),
            engine,
        })
    }

    pub(crate) fn from_parts(fd: OwnedFd, engine: Engine) -> File {
        File {
            fd: Rc::new(fd),
            engine,
        }
    }

    /// Wraps a descriptor opened elsewhere, on the current runtime's engine.
    pub fn from_owned_fd(fd: OwnedFd) -> File {
        File {
            fd: Rc::new(fd),
            engine: rt::engine(),
        }
    }

    fn target(&self) -> Fd {
        Fd::Shared(self.fd.clone())
    }

    /// Reads at `pos` into `buf` (from its start, up to its capacity); a short count is not
    /// an error, 0 is the end of the file.
    pub async fn read_at<B: IoBufMut>(&self, buf: B, pos: u64) -> (io::Result<usize>, B) {
        self.engine
            .submit(op::Read::at(self.target(), buf, pos))
            .await
    }

    /// Writes the initialised bytes of `buf` at `pos`; the count may be short.
    pub async fn write_at<B: IoBuf>(&self, buf: B, pos: u64) -> (io::Result<usize>, B) {
        self.engine
            .submit(op::Write::at(self.target(), buf, pos))
            .await
    }

    /// Fills `buf` to its capacity from `pos`, resuming after short reads. The end of the
    /// file first gives `UnexpectedEof` (the buffer holds what was read).
    pub async fn read_exact_at<B: IoBufMut>(&self, buf: B, pos: u64) -> (io::Result<()>, B) {
        let total = buf.bytes_total();
        resume::read_exact(
            buf,
            |slice, done| {
                self.engine
                    .submit(op::Read::at(self.target(), slice, pos + done as u64))
            },
            |done| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "end of file at offset {} reading {total} bytes at {pos}",
                        pos + done as u64
                    ),
                )
            },
        )
        .await
    }

    /// Writes all initialised bytes of `buf` at `pos`, resuming after short writes. A write
    /// that makes no progress gives `WriteZero`.
    pub async fn write_all_at<B: IoBuf>(&self, buf: B, pos: u64) -> (io::Result<()>, B) {
        resume::write_all(
            buf,
            |slice, done| {
                self.engine
                    .submit(op::Write::at(self.target(), slice, pos + done as u64))
            },
            |done| {
                io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("no progress writing at offset {}", pos + done as u64),
                )
            },
        )
        .await
    }

    /// Reads at `pos` into several buffers in order.
    pub async fn readv_at<B: IoBufMut>(
        &self,
        bufs: Vec<B>,
        pos: u64,
    ) -> (io::Result<usize>, Vec<B>) {
        self.engine
            .submit(op::Readv::at(self.target(), bufs, pos))
            .await
    }

    /// Writes several buffers at `pos` in order.
    pub async fn writev_at<B: IoBuf>(&self, bufs: Vec<B>, pos: u64) -> (io::Result<usize>, Vec<B>) {
        self.engine
            .submit(op::Writev::at(self.target(), bufs, pos))
            .await
    }

    /// Reads into a registered buffer (a plain read where buffers are not registered).
    pub async fn read_fixed_at(&self, buf: FixedBuf, pos: u64) -> (io::Result<usize>, FixedBuf) {
        self.engine
            .submit(op::ReadFixed::at(self.target(), buf, pos))
            .await
    }

    /// Writes a registered buffer (a plain write where buffers are not registered).
    pub async fn write_fixed_at(&self, buf: FixedBuf, pos: u64) -> (io::Result<usize>, FixedBuf) {
        self.engine
            .submit(op::WriteFixed::at(self.target(), buf, pos))
            .await
    }

    /// Flushes data and metadata to stable storage.
    pub async fn sync_all(&self) -> io::Result<()> {
        self.engine.submit(op::Fsync::new(self.target())).await
    }

    /// Flushes data (and the metadata needed to read it back) to stable storage.
    pub async fn sync_data(&self) -> io::Result<()> {
        self.engine
            .submit(op::Fsync::data_only(self.target()))
            .await
    }

    /// Allocates (mode 0) or, with `FALLOC_FL_*` flags, deallocates file space.
    pub async fn fallocate(&self, offset: u64, len: u64, mode: i32) -> io::Result<()> {
        self.engine
            .submit(op::Fallocate::new(self.target(), offset, len, mode))
            .await
    }

    /// Truncates or extends the file to `len` bytes, as `std::fs::File::set_len`.
    pub async fn set_len(&self, len: u64) -> io::Result<()> {
        self.engine
            .submit(op::Ftruncate::new(self.target(), len))
            .await
    }

    /// Tells the kernel how a range will be read (`posix_fadvise`: `libc::POSIX_FADV_*`);
    /// `len` 0 means to the end.
    pub async fn advise(&self, offset: u64, len: u64, advice: i32) -> io::Result<()> {
        self.engine
            .submit(op::Fadvise::new(self.target(), offset, len, advice))
            .await
    }

    /// Starts or waits for write-back of a range (`sync_file_range`, `libc::SYNC_FILE_RANGE_*`
    /// flags): pacing for large writes, not durability (that is [`sync_data`](Self::sync_data)).
    pub async fn sync_range(&self, offset: u64, len: u64, flags: u32) -> io::Result<()> {
        self.engine
            .submit(op::SyncFileRange::new(self.target(), offset, len, flags))
            .await
    }

    /// The value of the extended attribute `name` (`ENODATA` when there is none).
    pub async fn get_xattr(&self, name: &str) -> io::Result<Vec<u8>> {
        xattr::get(&self.engine, |max| {
            op::GetXattr::fd(self.target(), name, max)
        })
        .await
    }

    /// Sets the extended attribute `name` (`flags`: 0, `libc::XATTR_CREATE` or
    /// `XATTR_REPLACE`).
    pub async fn set_xattr(&self, name: &str, value: Vec<u8>, flags: i32) -> io::Result<()> {
        let op = op::SetXattr::fd(self.target(), name, value, flags);
        self.engine.submit(op).await.0
    }

    /// Reads from offset 0 to the end of the file (which may grow meanwhile): one read of
    /// the size `statx` gives plus one that finds the end, for a file that does not change.
    pub async fn read_to_end(&self) -> io::Result<Vec<u8>> {
        let size = self.metadata().await.map(|m| m.len()).unwrap_or(0);
        let first = usize::try_from(size)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        let (r, mut data) = self
            .read_at(Vec::with_capacity(first.min(1 << 30)), 0)
            .await;
        r?;
        let mut chunk = Vec::with_capacity(64 * 1024);
        loop {
            let (r, buf) = self.read_at(chunk, data.len() as u64).await;
            let n = r?;
            if n == 0 {
                return Ok(data);
            }
            data.extend_from_slice(&buf[..n]);
            chunk = buf;
        }
    }

    /// Size, type, permissions, times and the direct-I/O alignment, from `statx`.
    pub async fn metadata(&self) -> io::Result<Metadata> {
        let mask = libc::STATX_BASIC_STATS | STATX_DIOALIGN;
        let st = self
            .engine
            .submit(op::Statx::fd(self.target(), mask))
            .await?;
        Ok(Metadata(st))
    }

    /// Closes the file through the engine and reports the close's error (a write-back
    /// failure, say), which dropping the file would not. Operations still holding the file
    /// keep it open until they finish; then it is closed on drop.
    pub async fn close(self) -> io::Result<()> {
        match Rc::try_unwrap(self.fd) {
            Ok(fd) => self.engine.submit(op::Close::new(fd)).await,
            Err(_) => Ok(()),
        }
    }
}

impl AsRawFd for File {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// File metadata from `statx`.
#[derive(Clone, Copy)]
pub struct Metadata(libc::statx);

impl std::fmt::Debug for Metadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metadata")
            .field("len", &self.len())
            .field("mode", &format_args!("{:o}", self.mode()))
            .finish()
    }
}

impl Metadata {
    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.0.stx_size
    }

    /// True for an empty file.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `st_mode`: type and permission bits.
    pub fn mode(&self) -> u32 {
        self.0.stx_mode as u32
    }

    /// A regular file.
    pub fn is_file(&self) -> bool {
        self.mode() & libc::S_IFMT == libc::S_IFREG
    }

    /// A directory.
    pub fn is_dir(&self) -> bool {
        self.mode() & libc::S_IFMT == libc::S_IFDIR
    }

    /// A symbolic link (only when looked up without following it).
    pub fn is_symlink(&self) -> bool {
        self.mode() & libc::S_IFMT == libc::S_IFLNK
    }

    /// The file's type.
    pub fn file_type(&self) -> FileType {
        FileType::from_mode(self.mode())
    }

    /// The inode number.
    pub fn ino(&self) -> u64 {
        self.0.stx_ino
    }

    /// The number of hard links.
    pub fn nlink(&self) -> u32 {
        self.0.stx_nlink
    }

    /// The device the file lives on (`makedev(major, minor)`).
    pub fn dev(&self) -> u64 {
        libc::makedev(self.0.stx_dev_major, self.0.stx_dev_minor)
    }

    /// 512-byte blocks allocated (holes take none).
    pub fn blocks(&self) -> u64 {
        self.0.stx_blocks
    }

    /// Last modification time.
    pub fn modified(&self) -> SystemTime {
        let t = self.0.stx_mtime;
        let d = Duration::new(t.tv_sec.unsigned_abs(), t.tv_nsec);
        if t.tv_sec >= 0 {
            SystemTime::UNIX_EPOCH + d
        } else {
            SystemTime::UNIX_EPOCH - d
        }
    }

    /// The memory and file-offset alignment `O_DIRECT` needs, when the filesystem reports it
    /// (`STATX_DIOALIGN`, 6.1); `None` when it does not (or direct I/O is unsupported).
    pub fn dio_alignment(&self) -> Option<(u32, u32)> {
        let m = &self.0;
        (m.stx_mask & STATX_DIOALIGN != 0 && m.stx_dio_mem_align != 0)
            .then_some((m.stx_dio_mem_align, m.stx_dio_offset_align))
    }

    /// The raw `statx` result.
    pub fn as_raw(&self) -> &libc::statx {
        &self.0
    }
}

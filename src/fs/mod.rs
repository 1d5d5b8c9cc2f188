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

mod copy;
pub use copy::{
    copy_file, copy_file_with, CopyOptions, CopyReport, Progress, DEFAULT_BLOCK_SIZE,
    DEFAULT_QUEUE_DEPTH, MAX_BLOCK_SIZE,
};

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

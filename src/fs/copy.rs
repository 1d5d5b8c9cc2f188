//! A pipelined file copy on the Completion API: [`copy_file`] and [`copy_file_with`].
//!
//! The copy keeps `queue_depth` blocks in flight. Each block is a read linked to the write of
//! the same memory (`IO_LINK`): the kernel starts the write as soon as the read completes,
//! without a round trip through user space. A short read breaks the link (the kernel cancels
//! the write), and the copy writes what arrived and reads the rest again. Blocks come from the
//! engine's registered pool when it has one (`READ_FIXED`/`WRITE_FIXED`), and both files are
//! registered as fixed files when the engine can.
//!
//! It uses the Completion API rather than `async`: a copy is one loop over a bounded set of
//! slots, and driving the engine directly keeps the queue depth, the links and the
//! registered buffers under its control with no executor between it and the ring.
//!
//! What it handles:
//! - **sizes that lie**: the copy reads until a read returns 0, past the size `statx` gave
//!   (files that grow, `/sys` files) and stops early at a premature end (files that shrink);
//!   files that report size 0 (`/proc`) are read sequentially to their end;
//! - **sparse files**: only the data extents (`SEEK_DATA`/`SEEK_HOLE`) are read and written,
//!   and the destination's size is set at the end, so holes stay holes;
//! - **`O_DIRECT`**, optionally: the alignment comes from `statx` (`STATX_DIOALIGN`, 6.1;
//!   4096 assumed before), blocks are aligned, and the unaligned tail of the file goes
//!   through a second, buffered descriptor;
//! - **errors**: they name the file and the offset; on any failure the destination, which
//!   the copy created or truncated, is removed, so no truncated file passes for a copy.
//!
//! ```
//! # fn main() -> std::io::Result<()> {
//! use trueio::fs::{copy_file, CopyOptions};
//! let dir = std::env::temp_dir();
//! let (src, dst) = (dir.join("trueio-copy-doc-src"), dir.join("trueio-copy-doc-dst"));
//! std::fs::write(&src, vec![7u8; 300_000])?;
//! let report = copy_file(&src, &dst, &CopyOptions::new().queue_depth(4))?;
//! assert_eq!(report.bytes, 300_000);
//! assert_eq!(std::fs::read(&dst)?, std::fs::read(&src)?);
//! # std::fs::remove_file(&src)?; std::fs::remove_file(&dst)?;
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::fs::{File as StdFile, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{on_path, with_context, STATX_DIOALIGN};
use crate::buf::{AlignedBuf, FixedBuf, IoBuf, IoBufMut};
use crate::op::{Fsync, ReadFixed, Statx, WriteFixed};
use crate::{BackendChoice, Engine, Fd, FixedFile, Ticket};

/// Progress of one file's copy, given to the [`CopyOptions::progress`] callback after every
/// block.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Bytes of data copied so far (holes not counted).
    pub copied: u64,
    /// The bytes of data the copy expects in all (the data extents' total; it may change when
    /// the file's size turns out to differ from what `statx` said).
    pub total: u64,
}

/// How [`copy_file`] copies.
#[derive(Clone)]
pub struct CopyOptions {
    queue_depth: usize,
    block_size: usize,
    direct: bool,
    sync: bool,
    sparse: bool,
    link: bool,
    fixed_files: bool,
    preserve: bool,
    in_kernel: bool,
    backend: Option<BackendChoice>,
    progress: Option<Rc<dyn Fn(Progress)>>,
}

impl fmt::Debug for CopyOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CopyOptions")
            .field("queue_depth", &self.queue_depth)
            .field("block_size", &self.block_size)
            .field("direct", &self.direct)
            .field("sync", &self.sync)
            .field("sparse", &self.sparse)
            .field("link", &self.link)
            .field("fixed_files", &self.fixed_files)
            .field("preserve", &self.preserve)
            .field("in_kernel", &self.in_kernel)
            .field("backend", &self.backend)
            .finish()
    }
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions::new()
    }
}

/// The default number of blocks in flight.
pub const DEFAULT_QUEUE_DEPTH: usize = 8;
/// The default block size.
pub const DEFAULT_BLOCK_SIZE: usize = 256 * 1024;
/// The largest block size accepted (a single read or write transfers at most ~2 GiB).
pub const MAX_BLOCK_SIZE: usize = 64 << 20;

impl CopyOptions {
    /// Queue depth 8, 256 KiB blocks, buffered, sparse-aware, linked, no fsync.
    pub fn new() -> CopyOptions {
        CopyOptions {
            queue_depth: DEFAULT_QUEUE_DEPTH,
            block_size: DEFAULT_BLOCK_SIZE,
            direct: false,
            sync: false,
            sparse: true,
            link: true,
            fixed_files: true,
            preserve: false,
            in_kernel: true,
            backend: None,
            progress: None,
        }
    }

    /// Blocks in flight at once (1..=1024).
    pub fn queue_depth(mut self, n: usize) -> Self {
        self.queue_depth = n.clamp(1, 1024);
        self
    }

    /// Bytes per read and write (rounded up to the page size, at most [`MAX_BLOCK_SIZE`]).
    pub fn block_size(mut self, n: usize) -> Self {
        let page = crate::buf::page_size();
        self.block_size = n.clamp(1, MAX_BLOCK_SIZE).div_ceil(page) * page;
        self
    }

    /// Bypasses the page cache (`O_DIRECT`) on both files where their filesystems allow it;
    /// where one does not, that file is copied buffered and [`CopyReport::direct`] says so.
    pub fn direct(mut self, yes: bool) -> Self {
        self.direct = yes;
        self
    }

    /// Flushes the destination to stable storage (`fsync`) before reporting success.
    pub fn sync(mut self, yes: bool) -> Self {
        self.sync = yes;
        self
    }

    /// Keeps holes (default): copies only data extents. `false` reads and writes every byte.
    pub fn sparse(mut self, yes: bool) -> Self {
        self.sparse = yes;
        self
    }

    /// Links each block's write to its read (default). `false` waits for each read and then
    /// submits its write: one round trip more per block, for comparison.
    pub fn link(mut self, yes: bool) -> Self {
        self.link = yes;
        self
    }

    /// Registers both files as fixed files when the engine can (default).
    pub fn fixed_files(mut self, yes: bool) -> Self {
        self.fixed_files = yes;
        self
    }

    /// Gives the destination the source's permission bits and access/modification times.
    /// (Without it, the destination gets the source's permission bits less the umask, as
    /// `cp` does.)
    pub fn preserve(mut self, yes: bool) -> Self {
        self.preserve = yes;
        self
    }

    /// Copies ranges of the source already in the page cache inside the kernel
    /// (`copy_file_range`, one call per 8 MiB, no copy through user space), and the rest
    /// through the engine's pipeline (default; buffered copies only). `cachestat` (6.5) tells
    /// which ranges are cached: without it, or where the kernel cannot copy between the two
    /// files (`EXDEV`, `EOPNOTSUPP`...), everything goes through the pipeline. The calls run
    /// on the calling thread, as the rest of `copy_file` does; a cached range never waits
    /// for a disk read.
    pub fn in_kernel(mut self, yes: bool) -> Self {
        self.in_kernel = yes;
        self
    }

    /// The backend of the engine [`copy_file`] builds (default: `TRUEIO_BACKEND`, else auto).
    pub fn backend(mut self, choice: BackendChoice) -> Self {
        self.backend = Some(choice);
        self
    }

    /// Calls `f` after every block with the progress of the file being copied.
    pub fn progress(mut self, f: impl Fn(Progress) + 'static) -> Self {
        self.progress = Some(Rc::new(f));
        self
    }

    /// Whether cached ranges are copied inside the kernel.
    pub fn get_in_kernel(&self) -> bool {
        self.in_kernel
    }

    /// The queue depth.
    pub fn get_queue_depth(&self) -> usize {
        self.queue_depth
    }

    /// The block size.
    pub fn get_block_size(&self) -> usize {
        self.block_size
    }

    /// A builder for an engine suited to these options: registered buffers for every block
    /// in flight and a ring deep enough for the linked pairs.
    pub fn engine_builder(&self) -> crate::Builder {
        let mut b = Engine::builder()
            .entries((self.queue_depth * 2).next_power_of_two().clamp(8, 4096) as u32)
            .fixed_buffers(self.queue_depth, self.block_size)
            .fixed_files(4);
        if let Some(choice) = self.backend {
            b = b.backend(choice);
        }
        b
    }
}

/// What a copy did.
#[derive(Debug, Clone, Default)]
pub struct CopyReport {
    /// Bytes of data read and written (holes excluded).
    pub bytes: u64,
    /// The destination's final size.
    pub len: u64,
    /// Bytes left as holes.
    pub holes: u64,
    /// Data extents copied.
    pub extents: u64,
    /// Both files were read/written with `O_DIRECT` (false when not asked, or when a
    /// filesystem refused it).
    pub direct: bool,
    /// Why `O_DIRECT` was not used although asked, if so.
    pub direct_refused: Option<String>,
    /// The blocks lived in registered (fixed) buffers.
    pub fixed_buffers: bool,
    /// Both files were registered as fixed files.
    pub fixed_files: bool,
    /// Reads and writes submitted.
    pub ops: u64,
    /// Bytes copied inside the kernel (`copy_file_range`) because they were in the page
    /// cache (see [`CopyOptions::in_kernel`]).
    pub in_kernel: u64,
    /// Reads or writes that transferred less than asked (each was resumed).
    pub short: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// Copies the file `src` to `dst` (created, or truncated) on an engine of its own, built by
/// [`CopyOptions::engine_builder`]. It reads to the end whatever `statx` says (files in
/// `/proc`), keeps holes as holes, can copy with `O_DIRECT` (a buffered descriptor takes the
/// unaligned tail), and on failure names the file and the offset and removes the destination
/// (which it created or truncated), so no truncated file passes for a copy.
///
/// For many files, build one engine and call [`copy_file_with`]: setting up a ring and
/// registering buffers costs more than copying a small file.
pub fn copy_file(
    src: impl AsRef<Path>,
    dst: impl AsRef<Path>,
    opts: &CopyOptions,
) -> io::Result<CopyReport> {
    let engine = opts.engine_builder().build()?;
    copy_file_with(&engine, src, dst, opts)
}

/// Copies `src` to `dst` on `engine`, using its registered buffers when they are at least
/// the block size (else page-aligned buffers of its own).
pub fn copy_file_with(
    engine: &Engine,
    src: impl AsRef<Path>,
    dst: impl AsRef<Path>,
    opts: &CopyOptions,
) -> io::Result<CopyReport> {
    let (src, dst) = (src.as_ref(), dst.as_ref());
    let start = Instant::now();
    let src_file = StdFile::open(src).map_err(|e| on_path(e, "opening", src))?;
    let meta = src_file
        .metadata()
        .map_err(|e| on_path(e, "reading the metadata of", src))?;
    if meta.is_dir() {
        return Err(on_path(
            io::Error::from_raw_os_error(libc::EISDIR),
            "copying",
            src,
        ));
    }
    // Truncating the source through the destination would lose it: refuse, as cp does.
    if let Ok(d) = std::fs::metadata(dst) {
        if d.dev() == meta.dev() && d.ino() == meta.ino() {
            return Err(on_path(
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} and {} are the same file", src.display(), dst.display()),
                ),
                "copying",
                src,
            ));
        }
    }
    let dst_file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(meta.mode() & 0o777)
        .open(dst)
        .map_err(|e| on_path(e, "creating", dst))?;

    let mut copy = Copy::new(engine, opts, src, dst, src_file, dst_file, &meta);
    match copy.run(opts).and_then(|()| copy.finish(opts, &meta)) {
        Ok(()) => {
            copy.report.elapsed = start.elapsed();
            Ok(copy.report)
        }
        Err(e) => {
            // Cancel what is in flight and wait for it, so that the engine lets go of the files
            // (descriptors, fixed slots) before the partial copy is removed: on a full
            // filesystem the space comes back at once.
            copy.abort();
            drop(copy);
            // One more turn releases the fixed slots dropped just now.
            let _ = engine.poll();
            let removed = std::fs::remove_file(dst);
            let what = match removed {
                Ok(()) => "; the incomplete destination was removed",
                Err(_) => "; the incomplete destination could not be removed",
            };
            Err(io::Error::new(
                e.kind(),
                CopyError {
                    source: e,
                    note: what,
                },
            ))
        }
    }
}

/// A copy failure: the error (naming the file and offset) and what became of the destination.
#[derive(Debug)]
pub(super) struct CopyError {
    pub(super) source: io::Error,
    note: &'static str,
}

impl fmt::Display for CopyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.source, self.note)
    }
}

impl std::error::Error for CopyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The memory of one block.
enum BlockMem {
    Fixed(FixedBuf),
    Aligned(AlignedBuf),
}

/// One block's memory, shared by the read and the write of a linked pair.
struct Block {
    mem: BlockMem,
    ptr: *mut u8,
    cap: usize,
}

impl Block {
    fn new(mut mem: BlockMem) -> Block {
        let (ptr, cap) = match &mut mem {
            BlockMem::Fixed(b) => (b.stable_mut_ptr(), b.capacity()),
            BlockMem::Aligned(b) => (b.stable_mut_ptr(), b.capacity()),
        };
        Block { mem, ptr, cap }
    }
}

/// A range of a [`Block`], handed to one operation. The read and the write of a pair each
/// hold one over the same memory.
struct View {
    block: Rc<Block>,
    begin: usize,
    end: usize,
}

impl View {
    fn new(block: &Rc<Block>, begin: usize, end: usize) -> View {
        assert!(
            begin <= end && end <= block.cap,
            "copy: view out of its block"
        );
        View {
            block: block.clone(),
            begin,
            end,
        }
    }
}

// SAFETY: the range lies inside the block (checked in `View::new`), whose memory is
// page-aligned heap or arena memory that never moves and lives as long as any `Rc` to it;
// every byte is initialised (both kinds of block are zeroed when allocated).
unsafe impl IoBuf for View {
    fn stable_ptr(&self) -> *const u8 {
        // SAFETY: begin <= cap, inside the allocation.
        unsafe { self.block.ptr.add(self.begin) }
    }
    fn bytes_init(&self) -> usize {
        self.end - self.begin
    }
    fn bytes_total(&self) -> usize {
        self.end - self.begin
    }
    fn registered_for(&self, owner: u64) -> Option<u16> {
        match &self.block.mem {
            BlockMem::Fixed(b) => b.registered_for(owner),
            BlockMem::Aligned(_) => None,
        }
    }
}

// SAFETY: the kernel may write through a `View` while another `View` of the same block
// exists only in a linked pair, where that other view belongs to the write that the kernel
// starts after the read completed (IO_LINK; the epoll backend runs chains in order), and the
// copy loop looks at neither until both completed. `set_init` records nothing: all of the
// block is initialised already and the copy takes the count from the result.
unsafe impl IoBufMut for View {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        // SAFETY: as for `stable_ptr`.
        unsafe { self.block.ptr.add(self.begin) }
    }
    unsafe fn set_init(&mut self, _pos: usize) {}
}

/// A range of the source to copy.
#[derive(Debug, Clone, Copy)]
struct Job {
    off: u64,
    len: usize,
}

type ReadT = Ticket<ReadFixed<View>>;
type WriteT = Ticket<WriteFixed<View>>;

enum Stage {
    Idle,
    /// A read linked to the write of the same bytes.
    Pair {
        job: Job,
        read: ReadT,
        write: WriteT,
    },
    /// A read alone (unlinked mode, a block at the end, or a stream).
    Read {
        job: Job,
        read: ReadT,
    },
    /// `data` bytes of the block were read for `job.off`; `done` of them are written; the
    /// write of the rest is in flight.
    Write {
        job: Job,
        data: usize,
        done: usize,
        write: WriteT,
    },
}

struct Slot {
    block: Rc<Block>,
    stage: Stage,
}

/// Where a file's operations go: its fixed slot when registered, else its descriptor.
struct Target {
    fd: Rc<OwnedFd>,
    fixed: Option<FixedFile>,
}

impl Target {
    fn new(engine: &Engine, fd: OwnedFd, register: bool) -> Target {
        let fixed = register
            .then(|| fd.try_clone().ok())
            .flatten()
            .and_then(|dup| engine.register_file(dup).ok());
        Target {
            fd: Rc::new(fd),
            fixed,
        }
    }

    fn fd(&self) -> Fd {
        match &self.fixed {
            Some(f) => Fd::from(f),
            None => Fd::Shared(self.fd.clone()),
        }
    }
}

struct Copy<'a> {
    engine: &'a Engine,
    src_path: &'a Path,
    dst_path: &'a Path,
    src: Target,
    dst: Target,
    /// Buffered descriptors beside the `O_DIRECT` ones, for the unaligned tail.
    src_buffered: Option<Target>,
    dst_buffered: Option<Target>,
    /// The `O_DIRECT` offset alignment, when direct.
    align: Option<u64>,
    slots: Vec<Slot>,
    queue: VecDeque<Job>,
    /// Read positionally (a regular file whose size is known) or from the file position.
    positional: bool,
    link: bool,
    /// The size `statx` gave.
    size: u64,
    /// Where the data ends, once a read returned 0.
    eof: Option<u64>,
    /// The end of the furthest byte read.
    end: u64,
    block_size: usize,
    progress: Option<Rc<dyn Fn(Progress)>>,
    total: u64,
    report: CopyReport,
    /// Cached ranges go through `copy_file_range` (until the kernel refuses it).
    in_kernel: bool,
}

impl<'a> Copy<'a> {
    fn new(
        engine: &'a Engine,
        opts: &CopyOptions,
        src_path: &'a Path,
        dst_path: &'a Path,
        src_file: StdFile,
        dst_file: StdFile,
        meta: &std::fs::Metadata,
    ) -> Copy<'a> {
        let positional = meta.is_file() && meta.len() > 0;
        let mut report = CopyReport::default();
        // O_DIRECT on both files, when asked and both filesystems take it.
        let mut align = None;
        let (mut src_fd, mut dst_fd) = (OwnedFd::from(src_file), OwnedFd::from(dst_file));
        let (mut src_buffered, mut dst_buffered) = (None, None);
        if opts.direct {
            match open_direct(engine, src_path, &src_fd, dst_path, &dst_fd, positional) {
                Ok((a, s, d)) => {
                    align = Some(a);
                    src_buffered = Some(Target::new(
                        engine,
                        std::mem::replace(&mut src_fd, s),
                        false,
                    ));
                    dst_buffered = Some(Target::new(
                        engine,
                        std::mem::replace(&mut dst_fd, d),
                        false,
                    ));
                    report.direct = true;
                }
                Err(why) => report.direct_refused = Some(why),
            }
        }
        let src = Target::new(engine, src_fd, opts.fixed_files);
        let dst = Target::new(engine, dst_fd, opts.fixed_files);
        report.fixed_files = src.fixed.is_some() && dst.fixed.is_some();

        // Blocks: the engine's registered buffers when they are big enough, else our own
        // page-aligned (or direct-aligned) memory.
        let mut block_size = opts.block_size;
        if let Some(a) = align {
            block_size = (block_size as u64).div_ceil(a).max(1) as usize * a as usize;
        }
        let depth = if positional { opts.queue_depth } else { 1 };
        let mut slots = Vec::with_capacity(depth);
        // Page-aligned memory serves O_DIRECT too (`open_direct` refuses larger alignments).
        let page = crate::buf::page_size();
        let pool_fits = engine.buffers().is_some_and(|p| p.buf_size() >= block_size);
        for _ in 0..depth {
            let fixed = if pool_fits {
                engine.buffers().and_then(|p| p.try_get())
            } else {
                None
            };
            let mem = match fixed {
                Some(b) => BlockMem::Fixed(b),
                None => {
                    let mut b = AlignedBuf::with_capacity_aligned(block_size, page);
                    b.set_len(block_size);
                    BlockMem::Aligned(b)
                }
            };
            slots.push(Slot {
                block: Rc::new(Block::new(mem)),
                stage: Stage::Idle,
            });
        }
        report.fixed_buffers = slots.iter().all(|s| match &s.block.mem {
            BlockMem::Fixed(b) => b.fixed_index().is_some(),
            BlockMem::Aligned(_) => false,
        });
        Copy {
            engine,
            src_path,
            dst_path,
            src,
            dst,
            src_buffered,
            dst_buffered,
            align,
            slots,
            queue: VecDeque::new(),
            positional,
            link: opts.link,
            size: meta.len(),
            eof: None,
            end: 0,
            block_size,
            progress: opts.progress.clone(),
            total: 0,
            report,
            in_kernel: opts.in_kernel && align.is_none() && positional,
        }
    }

    /// Plans the blocks: the data extents of the source, cut into blocks.
    fn plan(&mut self, sparse: bool) -> io::Result<()> {
        if !self.positional {
            return Ok(());
        }
        let extents = if sparse {
            data_extents(&self.src.fd, self.size)
                .map_err(|e| on_path(e, "finding the data extents of", self.src_path))?
        } else {
            vec![(0, self.size)]
        };
        let bs = self.block_size as u64;
        for (mut start, end) in extents {
            if let Some(a) = self.align {
                // Direct reads start aligned; a hole's few bytes read as zeros.
                start -= start % a;
            }
            self.report.extents += 1;
            self.total += end - start;
            let mut off = start;
            while off < end {
                let len = (end - off).min(bs);
                self.queue.push_back(Job {
                    off,
                    len: len as usize,
                });
                off += len;
            }
        }
        Ok(())
    }

    fn run(&mut self, opts: &CopyOptions) -> io::Result<()> {
        self.plan(opts.sparse)?;
        if self.in_kernel {
            self.copy_cached_in_kernel()?;
        }
        loop {
            for i in 0..self.slots.len() {
                if matches!(self.slots[i].stage, Stage::Idle) {
                    let Some(job) = self.next_job() else { break };
                    self.start(i, job);
                }
            }
            if self.slots.iter().all(|s| matches!(s.stage, Stage::Idle)) {
                // Nothing queued nor in flight: done once a read has returned 0.
                if self.eof.is_some() {
                    return Ok(());
                }
                let job = self.probe_job();
                self.start(0, job);
            }
            self.engine.turn(None)?;
            for i in 0..self.slots.len() {
                self.advance(i)?;
            }
        }
    }

    /// Takes the planned jobs whose source range is in the page cache off the queue and
    /// copies them with `copy_file_range`, 8 MiB per call (merging adjacent blocks); the
    /// rest stay queued for the pipeline. A refusal of the call (`EXDEV`, `EINVAL`,
    /// `EOPNOTSUPP`, `ENOSYS`) leaves everything to the pipeline; any other error fails the
    /// copy, naming the offset.
    fn copy_cached_in_kernel(&mut self) -> io::Result<()> {
        const CHUNK: u64 = 8 << 20;
        let jobs = std::mem::take(&mut self.queue);
        let mut rest = VecDeque::with_capacity(jobs.len());
        let mut jobs = jobs.into_iter().peekable();
        while let Some(first) = jobs.next() {
            if !self.in_kernel {
                rest.push_back(first);
                continue;
            }
            // Adjacent blocks up to CHUNK make one range.
            let mut run = vec![first];
            let mut end = first.off + first.len as u64;
            while let Some(next) = jobs.peek() {
                if next.off != end || end - first.off + next.len as u64 > CHUNK {
                    break;
                }
                end += next.len as u64;
                run.push(*next);
                jobs.next();
            }
            let (off, len) = (first.off, end - first.off);
            if !super::page_cached(self.src.fd.as_raw_fd(), off, len) {
                rest.extend(run);
                continue;
            }
            match self.copy_range(off, len) {
                Ok(done) if done == len => {}
                // The source ended early (the pipeline finds out where), or the kernel refused
                // the call: the pipeline takes the rest, the blocks that end past what was
                // copied.
                Ok(done) => {
                    rest.extend(
                        run.into_iter()
                            .filter(|j| j.off + j.len as u64 > off + done),
                    );
                }
                Err(e) => {
                    return Err(with_context(
                        e,
                        "copying",
                        self.src_path,
                        format!(" to {} at offset {off}", self.dst_path.display()),
                    ))
                }
            }
        }
        self.queue = rest;
        Ok(())
    }

    /// `copy_file_range` of `len` bytes at `off` (same offset in both files): the bytes
    /// copied, fewer when the source ended first or the kernel refused the call (then
    /// `in_kernel` is off). Progress is reported per call.
    fn copy_range(&mut self, off: u64, len: u64) -> io::Result<u64> {
        let mut done = 0u64;
        while done < len {
            let mut src_off = (off + done) as libc::loff_t;
            let mut dst_off = src_off;
            // SAFETY: both offsets live on this frame; the descriptors are open for the call.
            let r = unsafe {
                libc::copy_file_range(
                    self.src.fd.as_raw_fd(),
                    &mut src_off,
                    self.dst.fd.as_raw_fd(),
                    &mut dst_off,
                    (len - done) as usize,
                    0,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EXDEV | libc::EINVAL | libc::EOPNOTSUPP | libc::ENOSYS)
                ) {
                    // This pair of files cannot be copied in the kernel: from here on, the
                    // pipeline copies (the rest of this range too).
                    self.in_kernel = false;
                    break;
                }
                return Err(e);
            }
            if r == 0 {
                break;
            }
            done += r as u64;
            self.report.in_kernel += r as u64;
            self.end = self.end.max(off + done);
            self.copied(r as u64);
        }
        Ok(done)
    }

    /// Counts `n` more bytes of data copied and tells the progress callback.
    fn copied(&mut self, n: u64) {
        self.report.bytes += n;
        if let Some(p) = &self.progress {
            p(Progress {
                copied: self.report.bytes,
                total: self.total.max(self.report.bytes),
            });
        }
    }

    fn next_job(&mut self) -> Option<Job> {
        let job = self.queue.pop_front()?;
        // Past a premature end of file there is nothing to read.
        match self.eof {
            Some(eof) if job.off >= eof => {
                self.queue.clear();
                None
            }
            _ => Some(job),
        }
    }

    /// The next read past everything planned: the file may hold more than its size said
    /// (or, for a stream, everything is read this way).
    fn probe_job(&self) -> Job {
        Job {
            off: self.end.max(if self.positional { self.size } else { 0 }),
            len: self.block_size,
        }
    }

    /// The source descriptor for a read of `job` (the buffered one for an unaligned range).
    fn read_fd(&self, job: &Job) -> Fd {
        match (&self.src_buffered, self.align) {
            (Some(b), Some(a)) if job.off % a != 0 => b.fd(),
            _ => self.src.fd(),
        }
    }

    /// The destination descriptor for writing `len` bytes at `off`.
    fn write_fd(&self, off: u64, len: usize) -> Fd {
        match (&self.dst_buffered, self.align) {
            (Some(b), Some(a)) if off % a != 0 || len as u64 % a != 0 => b.fd(),
            _ => self.dst.fd(),
        }
    }

    fn start(&mut self, i: usize, job: Job) {
        let mut len = job.len;
        if let Some(a) = self.align {
            // A direct read asks for whole aligned units; at the end of the file it is short.
            len = (len as u64).div_ceil(a) as usize * a as usize;
        }
        let len = len.min(self.block_size);
        let block = self.slots[i].block.clone();
        let src = self.read_fd(&job);
        let read_op = |view| match self.positional {
            true => ReadFixed::at(src.clone(), view, job.off),
            false => ReadFixed::stream(src.clone(), view),
        };
        // Link only where the read should fill its block: a block that reaches past the
        // stated size (the end of the file) is read first, then written as far as it got.
        let linkable = self.link && self.positional && job.off + len as u64 <= self.size;
        self.report.ops += 1;
        let stage = if linkable {
            self.report.ops += 1;
            let mut chain = self.engine.chain();
            let read = chain.push(read_op(View::new(&block, 0, len)));
            let write = chain.push(WriteFixed::at(
                self.write_fd(job.off, len),
                View::new(&block, 0, len),
                job.off,
            ));
            chain.submit();
            Stage::Pair {
                job: Job { off: job.off, len },
                read,
                write,
            }
        } else {
            let read = self.engine.submit(read_op(View::new(&block, 0, len)));
            Stage::Read {
                job: Job { off: job.off, len },
                read,
            }
        };
        self.slots[i].stage = stage;
    }

    fn read_error(&self, e: io::Error, off: u64) -> io::Error {
        with_context(e, "reading", self.src_path, format!(" at offset {off}"))
    }

    fn write_error(&self, e: io::Error, off: u64) -> io::Error {
        with_context(e, "writing", self.dst_path, format!(" at offset {off}"))
    }

    /// Moves slot `i` on if its operations completed.
    fn advance(&mut self, i: usize) -> io::Result<()> {
        let stage = std::mem::replace(&mut self.slots[i].stage, Stage::Idle);
        self.slots[i].stage = match stage {
            Stage::Idle => Stage::Idle,
            Stage::Pair {
                job,
                mut read,
                mut write,
            } => {
                // The write completes after its read (or is cancelled after it).
                if !write.is_done() || !read.is_done() {
                    Stage::Pair { job, read, write }
                } else {
                    let (r, _) = take(&mut read);
                    let (w, _) = take(&mut write);
                    let n = r.map_err(|e| self.read_error(e, job.off))?;
                    let written = match w {
                        // The kernel did not break the link on a short read: only the bytes
                        // read count (the size is set at the end, past any stale bytes).
                        Ok(w) => w.min(n),
                        Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => 0,
                        Err(e) => return Err(self.write_error(e, job.off)),
                    };
                    self.after_read(i, job, n, written)
                }
            }
            Stage::Read { job, mut read } => match read.try_take() {
                None => Stage::Read { job, read },
                Some((r, _)) => {
                    let n = r.map_err(|e| self.read_error(e, job.off))?;
                    self.after_read(i, job, n, 0)
                }
            },
            Stage::Write {
                job,
                data,
                done,
                mut write,
            } => match write.try_take() {
                None => Stage::Write {
                    job,
                    data,
                    done,
                    write,
                },
                Some((w, _)) => {
                    let off = job.off + done as u64;
                    let w = w.map_err(|e| self.write_error(e, off))?;
                    if w == 0 {
                        return Err(
                            self.write_error(io::Error::from(io::ErrorKind::WriteZero), off)
                        );
                    }
                    self.report.short += u64::from(done + w < data);
                    self.written(i, job, data, done + w)
                }
            },
        };
        Ok(())
    }

    /// A read of `job` returned `n` bytes, `written` of which are on disk already.
    fn after_read(&mut self, i: usize, job: Job, n: usize, written: usize) -> Stage {
        self.end = self.end.max(job.off + n as u64);
        if n == 0 {
            // The end of the data (sooner or later than the size said).
            self.eof = Some(self.eof.map_or(job.off, |e| e.min(job.off)));
            return Stage::Idle;
        }
        if n < job.len {
            self.report.short += 1;
            // The rest of the block: read again (more may come; a 0 there ends the file).
            let rest = Job {
                off: job.off + n as u64,
                len: job.len - n,
            };
            // Past the stated size (and for streams) the probe after the planned blocks
            // reads on; within it, a short read is retried.
            if self.positional && rest.off < self.size {
                self.queue.push_front(rest);
            }
        }
        self.written(i, job, n, written)
    }

    /// `done` of the `data` bytes read for `job` are written: write the rest, or finish.
    fn written(&mut self, i: usize, job: Job, data: usize, done: usize) -> Stage {
        if done >= data {
            self.copied(data as u64);
            return Stage::Idle;
        }
        let off = job.off + done as u64;
        let fd = self.write_fd(off, data - done);
        let view = View::new(&self.slots[i].block, done, data);
        self.report.ops += 1;
        let write = self.engine.submit(WriteFixed::at(fd, view, off));
        Stage::Write {
            job,
            data,
            done,
            write,
        }
    }

    /// Cancels this copy's operations still in flight and waits (up to 2 s) for their final
    /// completions. Only its own: the engine may be shared with other work.
    fn abort(&mut self) {
        let busy = |stage: &Stage| match stage {
            Stage::Idle => false,
            Stage::Pair { read, write, .. } => !read.is_done() || !write.is_done(),
            Stage::Read { read, .. } => !read.is_done(),
            Stage::Write { write, .. } => !write.is_done(),
        };
        for slot in &self.slots {
            match &slot.stage {
                Stage::Idle => {}
                Stage::Pair { read, write, .. } => {
                    read.cancel();
                    write.cancel();
                }
                Stage::Read { read, .. } => read.cancel(),
                Stage::Write { write, .. } => write.cancel(),
            }
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.slots.iter().any(|s| busy(&s.stage)) && Instant::now() < deadline {
            if self.engine.turn(Some(Duration::from_millis(10))).is_err() {
                break;
            }
        }
    }

    /// Sets the final size (holes at the end), flushes if asked, preserves metadata.
    fn finish(&mut self, opts: &CopyOptions, meta: &std::fs::Metadata) -> io::Result<()> {
        let len = self.eof.unwrap_or(self.end);
        self.report.len = len;
        self.report.holes = len.saturating_sub(self.report.bytes);
        let dst = self.dst_buffered.as_ref().unwrap_or(&self.dst).fd.clone();
        // SAFETY: ftruncate takes no pointers; `dst` is an open descriptor we own.
        if unsafe { libc::ftruncate(dst.as_raw_fd(), len as libc::off_t) } < 0 {
            return Err(with_context(
                io::Error::last_os_error(),
                "setting the size of",
                self.dst_path,
                format!(" to {len}"),
            ));
        }
        if opts.preserve {
            preserve(&dst, meta)
                .map_err(|e| on_path(e, "preserving mode and times of", self.dst_path))?;
        }
        if opts.sync {
            self.engine
                .submit(Fsync::new(self.dst.fd()))
                .wait()
                .and_then(|r| r)
                .map_err(|e| on_path(e, "syncing", self.dst_path))?;
        }
        Ok(())
    }
}

/// Takes the output of a ticket known to be done.
fn take<T: crate::op::Op>(t: &mut Ticket<T>) -> T::Output {
    match t.try_take() {
        Some(out) => out,
        None => unreachable!("copy: a ticket reported done has no output"),
    }
}

/// Copies the permission bits and the access and modification times of `meta` onto `fd`.
fn preserve(fd: &OwnedFd, meta: &std::fs::Metadata) -> io::Result<()> {
    let file = StdFile::from(fd.try_clone()?);
    file.set_permissions(std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    let times = std::fs::FileTimes::new()
        .set_accessed(meta.accessed()?)
        .set_modified(meta.modified()?);
    file.set_times(times)
}

/// The data extents `[start, end)` of a file of `size` bytes (`SEEK_DATA`/`SEEK_HOLE`); the
/// whole file as one extent where the filesystem does not tell.
fn data_extents(fd: &OwnedFd, size: u64) -> io::Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    let mut off = 0u64;
    while off < size {
        // SAFETY: lseek takes no pointers; `fd` is open.
        let data = unsafe { libc::lseek(fd.as_raw_fd(), off as libc::off_t, libc::SEEK_DATA) };
        if data < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                // No data past `off`: the rest is a hole.
                Some(libc::ENXIO) => break,
                // The filesystem cannot tell: copy everything.
                Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) if out.is_empty() => {
                    return Ok(vec![(0, size)]);
                }
                _ => return Err(e),
            }
        }
        let data = data as u64;
        if data >= size {
            break;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd.as_raw_fd(), data as libc::off_t, libc::SEEK_HOLE) };
        let hole = if hole < 0 {
            size
        } else {
            (hole as u64).min(size)
        };
        out.push((data, hole.max(data + 1).min(size)));
        off = hole.max(data + 1);
    }
    // SEEK_DATA and SEEK_HOLE moved the file position; nothing reads at it afterwards, since
    // only positional copies plan extents.
    Ok(out)
}

/// Opens both files again with `O_DIRECT`; returns the offset alignment and the buffered
/// descriptors to keep beside the direct ones, or why direct I/O cannot be had.
fn open_direct(
    engine: &Engine,
    src_path: &Path,
    src: &OwnedFd,
    dst_path: &Path,
    dst: &OwnedFd,
    positional: bool,
) -> Result<(u64, OwnedFd, OwnedFd), String> {
    if !positional {
        return Err(format!(
            "{} is not a regular file with a size",
            src_path.display()
        ));
    }
    let mut align = 0u64;
    for (path, fd) in [(src_path, src), (dst_path, dst)] {
        let mask = libc::STATX_BASIC_STATS | STATX_DIOALIGN;
        let st = engine
            .submit(Statx::fd(fd, mask))
            .wait()
            .and_then(|r| r)
            .map_err(|e| format!("statx {}: {e}", path.display()))?;
        let a = if st.stx_mask & STATX_DIOALIGN != 0 {
            if st.stx_dio_mem_align == 0 {
                return Err(format!(
                    "{}: its filesystem does not support O_DIRECT",
                    path.display()
                ));
            }
            // Memory alignment beyond a page is not served by our buffers.
            if st.stx_dio_mem_align as usize > crate::buf::page_size() {
                return Err(format!(
                    "{}: O_DIRECT needs {}-byte aligned memory",
                    path.display(),
                    st.stx_dio_mem_align
                ));
            }
            u64::from(st.stx_dio_offset_align.max(st.stx_dio_mem_align))
        } else {
            // Before 6.1 the kernel does not say: a page is safe on common devices.
            crate::buf::page_size() as u64
        };
        align = align.max(a);
    }
    let reopen = |path: &Path, write: bool| {
        OpenOptions::new()
            .read(true)
            .write(write)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .map(OwnedFd::from)
            .map_err(|e| format!("opening {} with O_DIRECT: {e}", path.display()))
    };
    let s = reopen(src_path, false)?;
    let d = reopen(dst_path, true)?;
    Ok((align, s, d))
}

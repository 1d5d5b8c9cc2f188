//! The metadata workload: a tree of files created, stat'ed, renamed, listed with their
//! metadata and unlinked, through trueio (many calls in flight), blocking `std::fs` (one call
//! at a time, as a program without threads does it) and `tokio::fs` (calls in flight on its
//! blocking pool, through a `JoinSet`).
//!
//! One round: `dirs` directories of `files / dirs` empty files each; per file, `open(O_CREAT)`
//! and close, `statx`, `rename`, a directory entry read with `statx` of it, `unlink`; the
//! directories are made first and removed last. An operation of the row is one file through
//! all of that, a directory at a time as a tree walk goes. (Going round the directories
//! instead, file j of each then file j+1, measured 0.83-0.92x of this on both filesystems.)

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Instant;

use trueio::fs::Dir;
use trueio::op::{self, Op, OpenHow};
use trueio::rt::Runtime;
use trueio::{Engine, Fd, Ticket};

use crate::local::Pass;
use crate::measure::{Histogram, Meter, Sample};

/// Calls in flight for trueio and tokio.
const WINDOW: usize = 64;

/// The tree of one round.
#[derive(Clone)]
pub struct Tree {
    pub root: PathBuf,
    pub dirs: usize,
    pub files: usize,
}

impl Tree {
    fn per_dir(&self) -> usize {
        self.files / self.dirs
    }

    fn dir_name(i: usize) -> String {
        format!("d{i}")
    }

    fn file_name(j: usize, renamed: bool) -> OsString {
        OsString::from(if renamed {
            format!("g{j}")
        } else {
            format!("f{j}")
        })
    }
}

/// Runs rounds for the pass's duration and meters them.
fn rounds(tree: &Tree, pass: Pass, e: Option<&Engine>, mut round: impl FnMut()) -> Sample {
    let mut hist = Histogram::new();
    let mut m = Meter::new(pass.count);
    m.begin(e);
    let start = Instant::now();
    let mut ops = 0;
    loop {
        let t0 = Instant::now();
        round();
        let t1 = Instant::now();
        // Per file: the round's time shared out (the row's latency is a round's).
        hist.record_n((t1 - t0) / tree.files as u32, tree.files as u64);
        ops += tree.files as u64;
        if t1 - start >= pass.dur {
            break;
        }
    }
    m.end(ops, e, &hist)
}

// ---------------------------------------------------------------------------------------
// std

pub fn std_fs(tree: &Tree, pass: Pass) -> Sample {
    rounds(tree, pass, None, || std_round(tree))
}

fn std_round(t: &Tree) {
    let dirs: Vec<PathBuf> = (0..t.dirs)
        .map(|i| t.root.join(Tree::dir_name(i)))
        .collect();
    for d in &dirs {
        std::fs::create_dir(d).expect("mkdir");
    }
    for d in &dirs {
        for j in 0..t.per_dir() {
            std::fs::File::create(d.join(Tree::file_name(j, false))).expect("create");
        }
    }
    for d in &dirs {
        for j in 0..t.per_dir() {
            std::fs::metadata(d.join(Tree::file_name(j, false))).expect("stat");
        }
    }
    for d in &dirs {
        for j in 0..t.per_dir() {
            let (a, b) = (Tree::file_name(j, false), Tree::file_name(j, true));
            std::fs::rename(d.join(a), d.join(b)).expect("rename");
        }
    }
    for d in &dirs {
        for e in std::fs::read_dir(d).expect("read_dir") {
            e.expect("entry").metadata().expect("entry stat");
        }
    }
    for d in &dirs {
        for j in 0..t.per_dir() {
            std::fs::remove_file(d.join(Tree::file_name(j, true))).expect("unlink");
        }
        std::fs::remove_dir(d).expect("rmdir");
    }
}

// ---------------------------------------------------------------------------------------
// tokio

pub fn tokio_fs(rt: &tokio::runtime::Runtime, tree: &Tree, pass: Pass) -> Sample {
    rounds(tree, pass, None, || rt.block_on(tokio_round(tree)))
}

/// Runs `jobs` with at most WINDOW in flight on tokio's blocking pool (through tokio::fs).
async fn tokio_window<F>(jobs: impl Iterator<Item = F>)
where
    F: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
{
    let mut set: tokio::task::JoinSet<std::io::Result<()>> = tokio::task::JoinSet::new();
    for job in jobs {
        if set.len() >= WINDOW {
            set.join_next()
                .await
                .expect("a task")
                .expect("join")
                .expect("tokio::fs");
        }
        set.spawn(job);
    }
    while let Some(r) = set.join_next().await {
        r.expect("join").expect("tokio::fs");
    }
}

async fn tokio_round(t: &Tree) {
    let dirs: Vec<PathBuf> = (0..t.dirs)
        .map(|i| t.root.join(Tree::dir_name(i)))
        .collect();
    let n = t.per_dir();
    let files = |renamed: bool| {
        dirs.iter()
            .flat_map(move |d| (0..n).map(move |j| d.join(Tree::file_name(j, renamed))))
    };
    tokio_window(dirs.iter().cloned().map(tokio::fs::create_dir)).await;
    tokio_window(files(false).map(|p| async move { tokio::fs::File::create(p).await.map(drop) }))
        .await;
    tokio_window(files(false).map(|p| async move { tokio::fs::metadata(p).await.map(drop) })).await;
    tokio_window(
        files(false)
            .zip(files(true))
            .map(|(a, b)| tokio::fs::rename(a, b)),
    )
    .await;
    tokio_window(dirs.iter().cloned().map(|d| async move {
        let mut rd = tokio::fs::read_dir(d).await?;
        while let Some(e) = rd.next_entry().await? {
            e.metadata().await?;
        }
        Ok(())
    }))
    .await;
    tokio_window(files(true).map(tokio::fs::remove_file)).await;
    tokio_window(dirs.iter().cloned().map(tokio::fs::remove_dir)).await;
}

// ---------------------------------------------------------------------------------------
// trueio

/// On a thread of its own, with a runtime of its own: io_uring's kernel workers belong to the
/// thread (not to the ring), and a worker keeps the CPUs it was made with, so each row gets a
/// thread whose workers are all made under its own settings.
pub fn trueio_fs(b: &trueio::Builder, tree: &Tree, pass: Pass) -> Sample {
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = Runtime::with_builder(b.clone()).expect("a trueio runtime");
            let e = rt.engine().clone();
            rounds(tree, pass, Some(&e), || rt.block_on(trueio_round(&e, tree)))
        })
        .join()
        .expect("the trueio metadata thread")
    })
}

/// Submits `ops` with at most WINDOW in flight; `done` takes each output in order.
async fn window<T: Op>(e: &Engine, ops: impl Iterator<Item = T>, mut done: impl FnMut(T::Output)) {
    let mut q: VecDeque<Ticket<T>> = VecDeque::with_capacity(WINDOW);
    for op in ops {
        if q.len() >= WINDOW {
            done(q.pop_front().expect("a ticket").await);
        }
        q.push_back(e.submit(op));
    }
    while let Some(t) = q.pop_front() {
        done(t.await);
    }
}

fn ok<T>(what: &'static str) -> impl FnMut(std::io::Result<T>) {
    move |r| {
        r.expect(what);
    }
}

async fn trueio_round(e: &Engine, t: &Tree) {
    let root = Dir::open(&t.root).await.expect("open the root");
    let root_fd = || Some(Fd::Raw(root_raw(&root)));
    let names: Vec<String> = (0..t.dirs).map(Tree::dir_name).collect();
    window(
        e,
        names.iter().map(|n| op::MkdirAt::new(root_fd(), n, 0o777)),
        ok("mkdir"),
    )
    .await;
    let mut dirs = Vec::with_capacity(t.dirs);
    for n in &names {
        dirs.push(root.open_dir(n).await.expect("open a dir"));
    }
    let n = t.per_dir();
    let dirs = &dirs;
    let each = |renamed: bool| {
        dirs.iter()
            .flat_map(move |d| (0..n).map(move |j| (d, Tree::file_name(j, renamed))))
    };
    let create = OpenHow::new(libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC).mode(0o666);
    window(
        e,
        each(false).map(|(d, f)| op::OpenAt2::new(Some(dir_fd(d)), f, create)),
        |r| drop(r.expect("create")),
    )
    .await;
    let mask = libc::STATX_BASIC_STATS;
    window(
        e,
        each(false).map(|(d, f)| op::Statx::path(Some(dir_fd(d)), f, 0, mask)),
        ok("stat"),
    )
    .await;
    window(
        e,
        each(false)
            .zip(each(true))
            .map(|((d, a), (_, b))| op::RenameAt::new(Some(dir_fd(d)), a, Some(dir_fd(d)), b, 0)),
        ok("rename"),
    )
    .await;
    for d in dirs {
        let mut rd = d.read_dir().await.expect("read_dir");
        let mut names = Vec::with_capacity(n);
        while let Some(entry) = rd.next_entry().await {
            names.push(entry.expect("entry").file_name().to_owned());
        }
        let flags = libc::AT_SYMLINK_NOFOLLOW;
        window(
            e,
            names
                .iter()
                .map(|f| op::Statx::path(Some(dir_fd(d)), f, flags, mask)),
            ok("entry stat"),
        )
        .await;
    }
    window(
        e,
        each(true).map(|(d, f)| op::UnlinkAt::new(Some(dir_fd(d)), f, 0)),
        ok("unlink"),
    )
    .await;
    window(
        e,
        names
            .iter()
            .map(|n| op::UnlinkAt::new(root_fd(), n, libc::AT_REMOVEDIR)),
        ok("rmdir"),
    )
    .await;
}

/// The descriptor of an open directory, for the operations' `*at` calls.
fn dir_fd(d: &Dir) -> Fd {
    Fd::Raw(root_raw(d))
}

fn root_raw(d: &Dir) -> std::os::fd::RawFd {
    use std::os::fd::AsRawFd;
    d.as_raw_fd()
}

/// Where a round's tree goes: `TRUEIO_BENCH_DIR` or the temp dir, emptied.
pub fn tree(base: &Path, quick: bool) -> Tree {
    let root = base.join(format!("trueio-meta-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("create the metadata tree's root");
    let (dirs, files) = if quick { (50, 5_000) } else { (500, 50_000) };
    Tree { root, dirs, files }
}

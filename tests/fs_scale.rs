//! `fs::read_dir` of a large directory: every name once, the types right, and the memory it
//! holds bounded (a counting allocator tracks the peak of live heap bytes while it reads).
//! 100 000 entries on tmpfs (read inline), 10 000 on the temp dir's disk filesystem (read on
//! the pool); both backends, one after the other so that nothing else allocates meanwhile.

mod util;

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use trueio::rt::Runtime;
use trueio::{BackendChoice, Engine};

struct Tracking;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by as isize, Ordering::Relaxed) + by as isize;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        grew(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

/// Reading bounded: one 64 KiB batch and its parsed entries, with room to spare; a reader
/// that kept every entry of 100 000 would hold several MiB.
const BOUND: isize = 1 << 20;

fn read_all(backend: BackendChoice, dir: &Path, n: usize) -> (isize, u64, u64) {
    let rt = Runtime::with_builder(Engine::builder().backend(backend)).unwrap();
    let mut seen = vec![false; n];
    let before = rt.engine().stats();
    let extra = rt.block_on(async {
        let base = LIVE.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let mut rd = trueio::fs::read_dir(dir).await.unwrap();
        while let Some(e) = rd.next_entry().await {
            let e = e.unwrap();
            let name = e.file_name().to_str().unwrap();
            let i: usize = name.strip_prefix('f').unwrap().parse().unwrap();
            assert!(!seen[i], "{name} twice");
            seen[i] = true;
            assert!(e.file_type_hint().is_some_and(|t| t.is_file()), "{name}");
        }
        PEAK.load(Ordering::Relaxed) - base
    });
    assert!(seen.iter().all(|s| *s), "names missing");
    let s = rt.engine().stats().since(&before);
    (extra, s.inline_completions, s.pool_jobs)
}

/// Whether `dir` is on tmpfs or ramfs (read inline), per `statfs`.
fn in_memory(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
    // SAFETY: statfs is plain integers; all-zero is valid.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a statfs on this frame.
    assert_eq!(unsafe { libc::statfs(c.as_ptr(), &mut st) }, 0);
    matches!(st.f_type as i64, 0x0102_1994 | 0x8584_58f6)
}

fn fill(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        std::fs::File::create(dir.join(format!("f{i}"))).unwrap();
    }
}

#[test]
fn read_dir_of_a_large_directory_is_complete_and_bounded() {
    let _dog = util::Watchdog::arm("large read_dir", Duration::from_secs(240));
    let shm = Path::new("/dev/shm");
    let mut cases = Vec::new();
    let tmpfs_dir = shm.join(format!("trueio-readdir-{}", std::process::id()));
    if shm.is_dir() {
        fill(&tmpfs_dir, util::scaled(100_000));
        cases.push(("tmpfs", tmpfs_dir.clone(), util::scaled(100_000), true));
    } else {
        util::skip("no /dev/shm: the tmpfs case needs it");
    }
    let disk = util::TempDir::new("readdir-disk");
    fill(&disk.0, util::scaled(10_000));
    // The temp dir is a disk filesystem here, tmpfs in the kernel matrix's VM.
    let temp_in_memory = in_memory(&disk.0);
    if temp_in_memory {
        util::skip("the temp dir is in memory: no case read on the pool");
    }
    cases.push((
        "temp dir",
        disk.0.clone(),
        util::scaled(10_000),
        temp_in_memory,
    ));
    let mut backends = vec![BackendChoice::Epoll];
    if util::builder(BackendChoice::Uring).is_some() {
        backends.insert(0, BackendChoice::Uring);
    }
    for (what, dir, n, memory) in &cases {
        for &b in &backends {
            let (extra, inline, pool) = read_all(b, dir, *n);
            println!("{what} ({n} entries, {b:?}): peak {extra} B beyond the start, {inline} inline, {pool} pool calls");
            assert!(extra < BOUND, "{what} {b:?}: held {extra} bytes at peak");
            // tmpfs directories are read inline; a disk filesystem's on the pool.
            if *memory {
                assert!(
                    inline > 0 && pool == 0,
                    "{what} {b:?}: {inline} inline, {pool} pool"
                );
            } else {
                assert!(pool > 0, "{what} {b:?}: {inline} inline, {pool} pool");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&tmpfs_dir);
}

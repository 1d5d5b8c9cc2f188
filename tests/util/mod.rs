//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;

use trueio::{BackendChoice, Builder, Engine};

/// Generates, from one body, one test per backend (`uring::name`, `epoll::name`) and one per
/// rung of the degradation ladder: io_uring with each optional feature switched off in turn
/// (`uring_no_<feature>::name`), and epoll without `RWF_NOWAIT` attempts. The body gets a
/// `Builder` configured for its variant.
#[macro_export]
macro_rules! both_backends {
    ($(fn $name:ident($b:ident: Builder) $body:block)*) => {
        $crate::backend_variant!(uring, Uring, [], $($name)*);
        $crate::backend_variant!(epoll, Epoll, [], $($name)*);
        $crate::backend_variant!(uring_no_defer_taskrun, Uring, [DeferTaskrun], $($name)*);
        $crate::backend_variant!(uring_no_single_issuer, Uring, [SingleIssuer, DeferTaskrun], $($name)*);
        $crate::backend_variant!(uring_no_taskrun_flags, Uring, [DeferTaskrun, CoopTaskrun], $($name)*);
        $crate::backend_variant!(uring_no_submit_all, Uring, [SubmitAll], $($name)*);
        $crate::backend_variant!(uring_no_ring_fd, Uring, [RegisteredRingFd], $($name)*);
        $crate::backend_variant!(uring_no_fixed_buffers, Uring, [RegisteredBuffers], $($name)*);
        $crate::backend_variant!(uring_no_fixed_files, Uring, [FixedFiles], $($name)*);
        $crate::backend_variant!(uring_no_ext_arg, Uring, [ExtArg], $($name)*);
        $crate::backend_variant!(epoll_no_nowait, Epoll, [NowaitReads], $($name)*);
        $(fn $name($b: trueio::Builder) $body)*
    };
}

/// One module of tests for a backend with some features disabled (see `both_backends!`).
#[macro_export]
macro_rules! backend_variant {
    ($module:ident, $choice:ident, [$($feature:ident),*], $($name:ident)*) => {
        mod $module {
            fn configure() -> Option<trueio::Builder> {
                let b = $crate::util::builder(trueio::BackendChoice::$choice)?;
                $(let b = b.disable(trueio::Feature::$feature);)*
                Some(b)
            }
            $(
                #[test]
                fn $name() {
                    let Some(b) = configure() else { return };
                    super::$name(b)
                }
            )*
        }
    };
}

/// A builder for `choice`, or `None` (with the reason printed) when that backend cannot run
/// here, e.g. io_uring denied by a seccomp filter.
pub fn builder(choice: BackendChoice) -> Option<Builder> {
    if let Ok(only) = std::env::var("TRUEIO_TEST_ONLY") {
        if BackendChoice::parse(&only).ok() != Some(choice) {
            eprintln!("skipped: TRUEIO_TEST_ONLY={only}");
            return None;
        }
    }
    let b = Engine::builder().backend(choice);
    if choice == BackendChoice::Uring {
        if let Err(e) = b.clone().build() {
            eprintln!("skipped: io_uring unavailable here: {e}");
            return None;
        }
    }
    Some(b)
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("trueio-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A pipe (read end, write end); `nonblock` applies O_NONBLOCK to both.
pub fn pipe(nonblock: bool) -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    let flags = libc::O_CLOEXEC | if nonblock { libc::O_NONBLOCK } else { 0 };
    // SAFETY: fds is a valid two-int array.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), flags) };
    assert_eq!(r, 0, "pipe2: {}", io::Error::last_os_error());
    // SAFETY: pipe2 returned two fresh descriptors.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Deterministic test data.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Open descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// How long any single operation in a test may take before the test fails (instead of
/// hanging).
pub const LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Drives `engine` until `ticket` completes and returns its output; panics when `limit`
/// passes first, so no test can hang on a lost completion.
pub fn wait_within<T: trueio::op::Op>(
    engine: &Engine,
    ticket: &mut trueio::Ticket<T>,
    limit: std::time::Duration,
) -> T::Output {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(out) = ticket.try_take() {
            return out;
        }
        let now = std::time::Instant::now();
        assert!(
            now < deadline,
            "operation {ticket:?} did not complete within {limit:?}"
        );
        let slice = (deadline - now).min(std::time::Duration::from_millis(100));
        engine.turn(Some(slice)).expect("Engine::turn failed");
    }
}

/// [`wait_within`] with the default [`LIMIT`], consuming the ticket.
pub fn wait<T: trueio::op::Op>(engine: &Engine, mut ticket: trueio::Ticket<T>) -> T::Output {
    wait_within(engine, &mut ticket, LIMIT)
}

/// Drives `engine` until `cond` holds or `limit` passes; returns whether it held.
pub fn drive_until(
    engine: &Engine,
    limit: std::time::Duration,
    mut cond: impl FnMut() -> bool,
) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            return false;
        }
        let slice = (deadline - now).min(std::time::Duration::from_millis(50));
        engine.turn(Some(slice)).expect("Engine::turn failed");
    }
}

/// Drives `engine` for `dur` (to give an operation every chance to complete).
pub fn drive_for(engine: &Engine, dur: std::time::Duration) {
    let deadline = std::time::Instant::now() + dur;
    loop {
        let now = std::time::Instant::now();
        if now >= deadline {
            return;
        }
        engine
            .turn(Some(deadline - now))
            .expect("Engine::turn failed");
    }
}

/// The errno of a failed result, `None` when it succeeded.
pub fn errno<T>(r: &io::Result<T>) -> Option<i32> {
    r.as_ref().err().and_then(|e| e.raw_os_error())
}

/// Asserts that `r` failed with `expected` (an errno), with a readable message.
#[track_caller]
pub fn assert_errno<T: std::fmt::Debug>(r: &io::Result<T>, expected: i32, what: &str) {
    match r {
        Err(e) if e.raw_os_error() == Some(expected) => {}
        other => panic!(
            "{what}: expected errno {expected} ({}), got {other:?}",
            io::Error::from_raw_os_error(expected)
        ),
    }
}

/// Writes all of `data` to a descriptor with plain `write(2)` (blocking pipes and files).
pub fn write_all(fd: &impl std::os::fd::AsRawFd, data: &[u8]) {
    let mut off = 0;
    while off < data.len() {
        // SAFETY: the pointer and length name the live slice `data[off..]`.
        let n = unsafe {
            libc::write(
                fd.as_raw_fd(),
                data[off..].as_ptr().cast(),
                data.len() - off,
            )
        };
        assert!(n > 0, "write: {}", io::Error::last_os_error());
        off += n as usize;
    }
}

/// Reads whatever is available from a descriptor without blocking (switches it to
/// O_NONBLOCK), until EAGAIN or end of file.
pub fn drain_nonblocking(fd: &impl std::os::fd::AsRawFd) -> Vec<u8> {
    let fd = fd.as_raw_fd();
    // SAFETY: fcntl on a descriptor the caller holds open.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: `buf` is a live local array of the given length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            out.extend_from_slice(&buf[..n as usize]);
            continue;
        }
        if n == 0 {
            return out;
        }
        let e = io::Error::last_os_error();
        assert_eq!(e.raw_os_error(), Some(libc::EAGAIN), "drain read: {e}");
        return out;
    }
}

/// Open descriptors of this process that refer to `path` (immune to other tests opening
/// descriptors concurrently).
pub fn open_fds_to(path: &std::path::Path) -> usize {
    let Ok(d) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    d.filter_map(|e| e.ok())
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t == path))
        .count()
}

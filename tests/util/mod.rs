//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;

use trueio::{BackendChoice, Builder, Engine};

/// Generates one test per backend from one body: `uring::name` and `epoll::name`.
/// The body gets a `Builder` for its backend.
#[macro_export]
macro_rules! both_backends {
    ($(fn $name:ident($b:ident: Builder) $body:block)*) => {
        mod uring {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $name() {
                    let Some($b) = $crate::util::builder(trueio::BackendChoice::Uring) else { return };
                    super::$name($b)
                }
            )*
        }
        mod epoll {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $name() {
                    let Some($b) = $crate::util::builder(trueio::BackendChoice::Epoll) else { return };
                    super::$name($b)
                }
            )*
        }
        $(fn $name($b: trueio::Builder) $body)*
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
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

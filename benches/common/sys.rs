//! Small helpers every benchmark binary needs: CPU pinning, a file-descriptor limit high
//! enough for 1 000 connections, a cheap random number generator, and warming a file into
//! the page cache.

#![allow(dead_code)] // each binary uses its own subset

use std::fs::File;
use std::io::Read as _;
use std::path::Path;

use trueio::buf::AlignedBuf;

/// Pins the calling thread (and the threads it starts later) to one CPU; says so on stderr
/// when it cannot (the run goes on unpinned).
pub fn pin(cpu: usize) {
    // SAFETY: cpu_set_t is plain bits; CPU_SET writes within it.
    let r = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if r != 0 {
        eprintln!(
            "bench: cannot pin to CPU {cpu}: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Lets the calling thread run on every CPU (undoes `pin` for threads it starts next).
#[allow(dead_code)]
pub fn unpin() {
    let cpus = all_cpus().len();
    // SAFETY: as in `pin`.
    let r = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for cpu in 0..cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if r != 0 {
        eprintln!("bench: cannot unpin: {}", std::io::Error::last_os_error());
    }
}

/// Every online CPU's number (not only those this thread may run on, which is what
/// `available_parallelism` counts).
#[allow(dead_code)]
pub fn all_cpus() -> Vec<usize> {
    // SAFETY: sysconf takes no pointers.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    (0..n.max(1) as usize).collect()
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (at most 65 536).
pub fn raise_nofile() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid rlimit pointers on this frame.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur = r.rlim_max.min(65536);
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
    }
}

/// xorshift64: cheap and good enough to pick blocks. The seed must not be 0.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Reads the file whole into a page-aligned buffer, so the run that follows finds it in the
/// page cache (this VM drops page cache that has been idle for about a minute).
pub fn warm(path: &Path) {
    let mut f = File::open(path).expect("open the data file");
    let mut buf = AlignedBuf::zeroed(1 << 20);
    while f.read(&mut buf).expect("read the data file") > 0 {}
}

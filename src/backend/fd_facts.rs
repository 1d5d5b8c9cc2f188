//! What the engine knows about descriptor numbers: one cache per engine, kept by its backend.

use std::os::fd::RawFd;

use crate::stats::StatsCells;

/// What the backends learned about descriptor numbers, for the calls they run at submission
/// (io_uring's lone reads and O_DIRECT submit-now, every epoll call, both backends' local
/// `statx` and inline writes):
/// - open with `O_DIRECT`: such a call does not fail fast, it waits for the device, which
///   would stall the event loop at any queue depth; those reads go to the pool or the ring;
/// - refused `RWF_NOWAIT` (`EOPNOTSUPP`, tmpfs on 6.1 say): no more attempts on it.
///
/// `fcntl(F_GETFL)` answers once per descriptor number and again every
/// [`FdFacts::RECHECK`] operations (which also forgets a refusal), since a number may be
/// closed and reused outside the engine. A hint only: a stale one costs speed, never
/// correctness.
#[derive(Default)]
pub(crate) struct FdFacts {
    /// Per descriptor number: 0 unknown, else (direct as bit 15) | (`RWF_NOWAIT` refused as
    /// bit 14) | operations until recheck.
    by_fd: Vec<u16>,
}

impl FdFacts {
    const RECHECK: u16 = 1024;
    const DIRECT: u16 = 1 << 15;
    const REFUSED: u16 = 1 << 14;
    /// The filesystem was looked at (`fstatfs`) since the last recheck...
    const FS_KNOWN: u16 = 1 << 13;
    /// ...and it is a local one, where a `statx` of the descriptor never waits...
    const LOCAL: u16 = 1 << 12;
    /// ...and one that lives in memory (tmpfs, the kernel's own), where nothing waits.
    const MEMORY: u16 = 1 << 11;
    const COUNT: u16 = Self::MEMORY - 1;

    /// Whether an inline `RWF_NOWAIT` attempt on `fd` is pointless: an `O_DIRECT` file, or
    /// one whose filesystem refused the flag lately (tmpfs before 6.x, for one).
    #[inline]
    pub(crate) fn skip_inline(&mut self, fd: RawFd, stats: &StatsCells) -> bool {
        self.is_direct(fd, stats) || self.is_refused(fd)
    }

    /// Whether `fd` refused `RWF_NOWAIT` lately (no syscall).
    pub(crate) fn is_refused(&self, fd: RawFd) -> bool {
        usize::try_from(fd)
            .ok()
            .and_then(|i| self.by_fd.get(i))
            .is_some_and(|h| h & Self::REFUSED != 0)
    }

    /// Records that `fd` refused `RWF_NOWAIT` (until the next recheck).
    pub(crate) fn refused(&mut self, fd: RawFd) {
        if let Some(h) = usize::try_from(fd).ok().and_then(|i| self.by_fd.get_mut(i)) {
            *h |= Self::REFUSED;
        }
    }

    /// Whether `fd` was opened with `O_DIRECT`, asking the kernel when not known (recently).
    #[inline]
    pub(crate) fn is_direct(&mut self, fd: RawFd, stats: &StatsCells) -> bool {
        let Ok(i) = usize::try_from(fd) else {
            return false;
        };
        if i >= self.by_fd.len() {
            if i > 1 << 20 {
                return false;
            }
            self.by_fd.resize(i + 1, 0);
        }
        let h = self.by_fd[i];
        if h & Self::COUNT > 1 {
            self.by_fd[i] = h - 1;
            return h & Self::DIRECT != 0;
        }
        StatsCells::bump(&stats.syscalls);
        // SAFETY: F_GETFL takes no pointers; a closed descriptor gives -1 (EBADF), answered
        // as "not direct", and the operation itself reports the error.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        let direct = flags >= 0 && flags & libc::O_DIRECT != 0;
        self.by_fd[i] = Self::RECHECK | if direct { Self::DIRECT } else { 0 };
        direct
    }

    /// Whether `fd` is on a local filesystem (see [`local_fs`]), asking the kernel once per
    /// recheck period.
    pub(crate) fn is_local(&mut self, fd: RawFd, stats: &StatsCells) -> bool {
        self.fs_bits(fd, stats) & Self::LOCAL != 0
    }

    /// Whether `fd` is on a filesystem held in memory (see [`fs_kind`]), where reading a
    /// directory never waits for a device.
    pub(crate) fn is_memory(&mut self, fd: RawFd, stats: &StatsCells) -> bool {
        self.fs_bits(fd, stats) & Self::MEMORY != 0
    }

    /// The entry's filesystem bits, asking the kernel once per recheck period.
    fn fs_bits(&mut self, fd: RawFd, stats: &StatsCells) -> u16 {
        // Refreshes the entry (and its count) when due.
        self.is_direct(fd, stats);
        let Some(h) = usize::try_from(fd).ok().and_then(|i| self.by_fd.get_mut(i)) else {
            return 0;
        };
        if *h & Self::FS_KNOWN == 0 {
            StatsCells::bump(&stats.syscalls);
            *h |= Self::FS_KNOWN;
            match fs_kind(fd) {
                FsKind::Memory => *h |= Self::LOCAL | Self::MEMORY,
                FsKind::Local => *h |= Self::LOCAL,
                FsKind::Other => {}
            }
        }
        *h
    }

    /// Forgets `fd` (closed through the engine).
    pub(crate) fn forget(&mut self, fd: RawFd) {
        if let Some(h) = usize::try_from(fd).ok().and_then(|i| self.by_fd.get_mut(i)) {
            *h = 0;
        }
    }
}

/// What a descriptor's filesystem is, for the calls run at submission.
enum FsKind {
    /// Held in memory: nothing on it waits for a device (tmpfs, ramfs, the kernel's own).
    Memory,
    /// Local, with the attributes of open files in memory: `statx` of a descriptor answers
    /// without waiting (the usual disk filesystems).
    Local,
    /// Network and FUSE filesystems, and any not listed: their `getattr` may ask a server or a
    /// daemon.
    Other,
}

/// The filesystem `fd` lives on ([`FsKind`]).
fn fs_kind(fd: RawFd) -> FsKind {
    const MEMORY: &[i64] = &[
        0x0102_1994, // tmpfs
        0x8584_58f6, // ramfs
        0x9fa0,      // proc
        0x6265_6572, // sysfs
        0x5049_5045, // pipefs
        0x534F_434B, // sockfs
        0x0904_1934, // anon inodes
    ];
    const LOCAL: &[i64] = &[
        0xEF53,      // ext2/3/4
        0x5846_5342, // xfs
        0x9123_683E, // btrfs
        0xF2F5_2010, // f2fs
        0x2fc1_2fc1, // zfs
        0xca45_1a4e, // bcachefs
        0x794c_7630, // overlayfs
        0xE0F5_E1E2, // erofs
        0x7371_7368, // squashfs
        0x4d44,      // vfat
        0x2011_BAB0, // exfat
        0x7366_746e, // ntfs3
    ];
    // SAFETY: statfs is plain integers; all-zero is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: fstatfs writes one statfs into `st`, alive on this frame; a bad descriptor
    // gives -1 (not local).
    if unsafe { libc::fstatfs(fd, &mut st) } != 0 {
        return FsKind::Other;
    }
    let t = st.f_type as i64;
    if MEMORY.contains(&t) {
        FsKind::Memory
    } else if LOCAL.contains(&t) {
        FsKind::Local
    } else {
        FsKind::Other
    }
}

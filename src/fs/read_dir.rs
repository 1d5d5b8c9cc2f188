//! Directory reading: `getdents64` in large batches, parsed into entries that carry their
//! file type, so a walk needs no `stat` per entry.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::{Metadata, STATX_DIOALIGN};
use crate::{op, Engine, Fd};

/// Bytes asked of each `getdents64`: about 1 500 entries of short names per call, so a
/// directory of 100 000 entries costs some 70 calls, while the memory held stays bounded.
const BATCH: usize = 64 * 1024;

/// The type of a file, from a directory entry or from `statx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileType(u8);

impl FileType {
    /// From a `d_type` value (`DT_REG`...); `DT_UNKNOWN` is not a type.
    fn from_dtype(t: u8) -> Option<FileType> {
        (t != libc::DT_UNKNOWN).then_some(FileType(t))
    }

    /// From `st_mode`'s type bits.
    pub(crate) fn from_mode(mode: u32) -> FileType {
        FileType(match mode & libc::S_IFMT {
            libc::S_IFREG => libc::DT_REG,
            libc::S_IFDIR => libc::DT_DIR,
            libc::S_IFLNK => libc::DT_LNK,
            libc::S_IFIFO => libc::DT_FIFO,
            libc::S_IFSOCK => libc::DT_SOCK,
            libc::S_IFCHR => libc::DT_CHR,
            libc::S_IFBLK => libc::DT_BLK,
            _ => libc::DT_UNKNOWN,
        })
    }

    /// A regular file.
    pub fn is_file(self) -> bool {
        self.0 == libc::DT_REG
    }

    /// A directory.
    pub fn is_dir(self) -> bool {
        self.0 == libc::DT_DIR
    }

    /// A symbolic link.
    pub fn is_symlink(self) -> bool {
        self.0 == libc::DT_LNK
    }

    /// A named pipe.
    pub fn is_fifo(self) -> bool {
        self.0 == libc::DT_FIFO
    }

    /// A Unix socket.
    pub fn is_socket(self) -> bool {
        self.0 == libc::DT_SOCK
    }

    /// A character or block device.
    pub fn is_device(self) -> bool {
        self.0 == libc::DT_CHR || self.0 == libc::DT_BLK
    }
}

/// One entry of a directory (never `.` or `..`).
#[derive(Debug)]
pub struct DirEntry {
    dir: Rc<OwnedFd>,
    base: Rc<Path>,
    name: OsString,
    ino: u64,
    kind: Option<FileType>,
    engine: Engine,
}

impl DirEntry {
    /// The entry's name in its directory.
    pub fn file_name(&self) -> &std::ffi::OsStr {
        &self.name
    }

    /// The path the directory was opened with, joined with the name.
    pub fn path(&self) -> PathBuf {
        self.base.join(&self.name)
    }

    /// The inode number.
    pub fn ino(&self) -> u64 {
        self.ino
    }

    /// The type as the directory reports it; `None` on a filesystem that does not
    /// (`DT_UNKNOWN`: [`file_type`](Self::file_type) then asks `statx`).
    pub fn file_type_hint(&self) -> Option<FileType> {
        self.kind
    }

    /// The entry's type, without following a symlink: from the directory itself where the
    /// filesystem reports it (ext4, XFS, btrfs, tmpfs do), else one `statx`.
    pub async fn file_type(&self) -> io::Result<FileType> {
        match self.kind {
            Some(k) => Ok(k),
            None => Ok(FileType::from_mode(self.metadata().await?.mode())),
        }
    }

    /// The entry's metadata, without following a symlink (as `std::fs::DirEntry::metadata`),
    /// looked up relative to the open directory, not by path.
    pub async fn metadata(&self) -> io::Result<Metadata> {
        let mask = libc::STATX_BASIC_STATS | STATX_DIOALIGN;
        let st = op::Statx::path(
            Some(Fd::Shared(self.dir.clone())),
            &self.name,
            libc::AT_SYMLINK_NOFOLLOW,
            mask,
        );
        let st = self
            .engine
            .submit(st)
            .await
            .map_err(|e| super::on_path(e, "reading metadata of", &self.path()))?;
        Ok(Metadata(st))
    }
}

/// The entries of an open directory, in the order the filesystem gives them, read in
/// batches of 64 KiB through the engine (on the blocking pool: io_uring has no `getdents`).
#[derive(Debug)]
pub struct ReadDir {
    dir: Rc<OwnedFd>,
    base: Rc<Path>,
    engine: Engine,
    buf: Option<Vec<u8>>,
    entries: VecDeque<(OsString, u64, Option<FileType>)>,
    ended: bool,
}

impl ReadDir {
    pub(crate) fn new(dir: Rc<OwnedFd>, base: &Path, engine: Engine) -> ReadDir {
        ReadDir {
            dir,
            base: base.into(),
            engine,
            buf: Some(Vec::with_capacity(BATCH)),
            entries: VecDeque::new(),
            ended: false,
        }
    }

    /// The next entry; `None` at the end. An error ends the stream.
    pub async fn next_entry(&mut self) -> Option<io::Result<DirEntry>> {
        while self.entries.is_empty() && !self.ended {
            if let Err(e) = self.fill().await {
                self.ended = true;
                return Some(Err(super::on_path(e, "reading directory", &self.base)));
            }
        }
        let (name, ino, kind) = self.entries.pop_front()?;
        Some(Ok(DirEntry {
            dir: self.dir.clone(),
            base: self.base.clone(),
            name,
            ino,
            kind,
            engine: self.engine.clone(),
        }))
    }

    /// One `getdents64` call, its records parsed into `entries`.
    async fn fill(&mut self) -> io::Result<()> {
        let buf = self.buf.take().unwrap_or_else(|| Vec::with_capacity(BATCH));
        let (res, buf) = self
            .engine
            .submit(op::Getdents::new(Fd::Shared(self.dir.clone()), buf))
            .await;
        let n = res?;
        if n == 0 {
            self.ended = true;
        }
        parse(&buf, &mut self.entries);
        self.buf = Some(buf);
        Ok(())
    }
}

/// Parses `linux_dirent64` records: `d_ino` (8 bytes), `d_off` (8), `d_reclen` (2),
/// `d_type` (1), then the NUL-terminated name. `.` and `..` are left out.
fn parse(buf: &[u8], out: &mut VecDeque<(OsString, u64, Option<FileType>)>) {
    let mut at = 0;
    while at + 19 <= buf.len() {
        let rec = &buf[at..];
        let ino = u64::from_ne_bytes(rec[0..8].try_into().unwrap_or_default());
        let reclen = usize::from(u16::from_ne_bytes([rec[16], rec[17]]));
        if reclen < 19 || reclen > rec.len() {
            // A record the kernel never writes: stop rather than read past it.
            return;
        }
        let dtype = rec[18];
        let name = &rec[19..reclen];
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        at += reclen;
        if name == b"." || name == b".." {
            continue;
        }
        let name = OsString::from_vec(name.to_vec());
        debug_assert!(!name.as_bytes().contains(&b'/'));
        out.push_back((name, ino, FileType::from_dtype(dtype)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ino: u64, dtype: u8, name: &str) -> Vec<u8> {
        let mut r = Vec::new();
        r.extend_from_slice(&ino.to_ne_bytes());
        r.extend_from_slice(&0u64.to_ne_bytes());
        let len = (19 + name.len() + 1).next_multiple_of(8);
        r.extend_from_slice(&(len as u16).to_ne_bytes());
        r.push(dtype);
        r.extend_from_slice(name.as_bytes());
        r.resize(len, 0);
        r
    }

    #[test]
    fn parses_records_skips_dots_and_stops_at_a_bad_length() {
        let mut buf = record(1, libc::DT_DIR, ".");
        buf.extend(record(2, libc::DT_DIR, ".."));
        buf.extend(record(7, libc::DT_REG, "a.txt"));
        buf.extend(record(8, libc::DT_UNKNOWN, "b"));
        let mut bad = record(9, libc::DT_REG, "c");
        bad[16] = 200; // reclen past the end
        buf.extend(bad);
        let mut out = VecDeque::new();
        parse(&buf, &mut out);
        let got: Vec<_> = out.iter().map(|(n, i, k)| (n.clone(), *i, *k)).collect();
        assert_eq!(
            got,
            vec![
                ("a.txt".into(), 7, Some(FileType(libc::DT_REG))),
                ("b".into(), 8, None),
            ]
        );
    }
}

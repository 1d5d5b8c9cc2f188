//! The filesystem vocabulary (`trueio::fs`: directories, names, links, attributes, whole-file
//! reads and writes, atomic replacement) against `std::fs` on real files, on both backends,
//! every rung, and on io_uring with each new opcode masked (the pool path older kernels take).

mod util;

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use io_uring::opcode;
use trueio::fs::{self, Dir};
use trueio::rt::Runtime;
use trueio::{BackendChoice, Builder};
use util::TempDir;

/// The opcodes the filesystem vocabulary uses (those older kernels lack).
const FS_OPCODES: &[u8] = &[
    opcode::RenameAt::CODE,
    opcode::UnlinkAt::CODE,
    opcode::MkDirAt::CODE,
    opcode::SymlinkAt::CODE,
    opcode::LinkAt::CODE,
    opcode::Ftruncate::CODE,
    opcode::Fadvise::CODE,
    opcode::SyncFileRange::CODE,
    opcode::FGetXattr::CODE,
    opcode::FSetXattr::CODE,
];

/// io_uring with every filesystem opcode masked: what a 5.10 kernel does.
fn masked() -> Option<Builder> {
    let b = util::variant(BackendChoice::Uring, &[])?;
    Some(FS_OPCODES.iter().fold(b, |b, &c| b.without_opcode(c)))
}

/// Each test on both backends, every rung, and on io_uring with the opcodes masked.
macro_rules! fs_tests {
    ($($(#[$meta:meta])* fn $name:ident($b:ident: Builder) $body:block)*) => {
        both_backends! { $($(#[$meta])* fn $name($b: Builder) $body)* }
        mod uring_fs_opcodes_masked {
            $(
                #[test]
                fn $name() {
                    let Some(b) = super::masked() else { return };
                    super::$name(b)
                }
            )*
        }
    };
}

fn run<F: std::future::Future>(b: Builder, f: impl FnOnce() -> F) -> F::Output {
    let _dog = util::Watchdog::arm("an fs test", Duration::from_secs(60));
    Runtime::with_builder(b).expect("runtime").block_on(f())
}

/// Both failed the same way (same errno, same `ErrorKind`), or both succeeded.
#[track_caller]
fn same<T: std::fmt::Debug, U: std::fmt::Debug>(
    what: &str,
    ours: io::Result<T>,
    std: io::Result<U>,
) {
    match (&ours, &std) {
        (Ok(_), Ok(_)) => {}
        // std refuses some input before any system call (a NUL byte): the kinds match.
        (Err(a), Err(b)) if b.raw_os_error().is_none() => {
            assert_eq!(
                a.kind(),
                b.kind(),
                "{what}: kind differs: ours {a}, std {b}"
            );
        }
        (Err(a), Err(b)) => {
            assert_eq!(
                fs::os_error(a),
                b.raw_os_error(),
                "{what}: errno differs: ours {a}, std {b}"
            );
            assert_eq!(
                a.kind(),
                b.kind(),
                "{what}: kind differs: ours {a}, std {b}"
            );
            // Our message names the path.
            assert!(a.to_string().contains('/'), "{what}: no path in {a}");
        }
        _ => panic!("{what}: ours {ours:?}, std {std:?}"),
    }
}

fs_tests! {
    fn directories_and_their_errors_match_std(b: Builder) {
        let t = TempDir::new("fs-dirs");
        let (d, f) = (t.path("d"), t.path("f"));
        std::fs::write(&f, b"x").unwrap();
        run(b, || async {
            fs::create_dir(&d).await.unwrap();
            assert!(std::fs::metadata(&d).unwrap().is_dir());
            same("mkdir existing", fs::create_dir(&d).await, std::fs::create_dir(&d));
            let deep = t.path("no/such");
            same("mkdir no parent", fs::create_dir(&deep).await, std::fs::create_dir(&deep));
            let under_file = f.join("x");
            same("mkdir under a file", fs::create_dir(&under_file).await, std::fs::create_dir(&under_file));

            let nested = t.path("a/b/c/d");
            fs::create_dir_all(&nested).await.unwrap();
            assert!(nested.is_dir());
            fs::create_dir_all(&nested).await.unwrap();
            fs::create_dir_all("").await.unwrap();
            let blocked = f.join("y/z");
            same("mkdir -p through a file", fs::create_dir_all(&blocked).await, std::fs::create_dir_all(&blocked));

            std::fs::write(d.join("inside"), b"1").unwrap();
            same("rmdir non-empty", fs::remove_dir(&d).await, std::fs::remove_dir(&d));
            same("rmdir a file", fs::remove_dir(&f).await, std::fs::remove_dir(&f));
            same("rmdir missing", fs::remove_dir(t.path("gone")).await, std::fs::remove_dir(t.path("gone")));
            same("unlink a dir", fs::remove_file(&d).await, std::fs::remove_file(&d));
            same("unlink missing", fs::remove_file(t.path("gone")).await, std::fs::remove_file(t.path("gone")));
            fs::remove_file(d.join("inside")).await.unwrap();
            fs::remove_dir(&d).await.unwrap();
            assert!(!d.exists());
            let nul = Path::new("bad\0name");
            same("a NUL in the path", fs::create_dir(nul).await, std::fs::create_dir(nul));
        });
    }

    fn renames_and_links_and_their_errors_match_std(b: Builder) {
        let t = TempDir::new("fs-names");
        let (a, bb, dir) = (t.path("a"), t.path("b"), t.path("dir"));
        std::fs::write(&a, b"old a").unwrap();
        std::fs::write(&bb, b"old b").unwrap();
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("x"), b"").unwrap();
        run(b, || async {
            let top = Dir::open(&t.0).await.unwrap();
            top.rename_with("a", &top, "b", libc::RENAME_EXCHANGE).await.unwrap();
            assert_eq!(std::fs::read(&a).unwrap(), b"old b");
            let r = top.rename_with("a", &top, "b", libc::RENAME_NOREPLACE).await;
            assert_eq!(r.unwrap_err().kind(), io::ErrorKind::AlreadyExists);
            fs::rename(&a, &bb).await.unwrap();
            assert!(!a.exists());
            assert_eq!(std::fs::read(&bb).unwrap(), b"old b");
            same("rename missing", fs::rename(&a, t.path("c")).await, std::fs::rename(&a, t.path("c")));
            same("rename a file onto a dir", fs::rename(&bb, &dir).await, std::fs::rename(&bb, &dir));
            std::fs::create_dir(t.path("empty")).unwrap();
            same("rename a dir onto a non-empty dir", fs::rename(t.path("empty"), &dir).await, std::fs::rename(t.path("empty"), &dir));
            same("rename a dir onto a file", fs::rename(&dir, &bb).await, std::fs::rename(&dir, &bb));

            fs::hard_link(&bb, t.path("hard")).await.unwrap();
            assert_eq!(std::fs::metadata(&bb).unwrap().nlink(), 2);
            same("link onto existing", fs::hard_link(&bb, t.path("hard")).await, std::fs::hard_link(&bb, t.path("hard")));
            same("link missing", fs::hard_link(&a, t.path("h2")).await, std::fs::hard_link(&a, t.path("h2")));

            fs::symlink("b", t.path("sym")).await.unwrap();
            assert_eq!(fs::read_link(t.path("sym")).await.unwrap(), Path::new("b"));
            assert_eq!(std::fs::read(t.path("sym")).unwrap(), b"old b");
            same("symlink onto existing", fs::symlink("b", t.path("sym")).await, std::os::unix::fs::symlink("b", t.path("sym")));
            same("readlink of a file", fs::read_link(&bb).await, std::fs::read_link(&bb));
            let meta = fs::symlink_metadata(t.path("sym")).await.unwrap();
            assert!(meta.is_symlink() && meta.file_type().is_symlink());
            assert!(fs::metadata(t.path("sym")).await.unwrap().is_file());
            std::os::unix::fs::symlink("loop", t.path("loop")).unwrap();
            same("stat a symlink loop", fs::metadata(t.path("loop")).await, std::fs::metadata(t.path("loop")));
            let through_file = bb.join("x");
            same("stat through a file", fs::metadata(&through_file).await, std::fs::metadata(&through_file));
            let canon = fs::canonicalize(t.0.join("dir/../sym")).await.unwrap();
            assert_eq!(canon, std::fs::canonicalize(t.0.join("dir/../sym")).unwrap());
            same("canonicalize missing", fs::canonicalize(t.path("gone")).await, std::fs::canonicalize(t.path("gone")));
        });
    }

    fn a_rename_across_filesystems_fails_with_exdev_as_std(b: Builder) {
        let shm = Path::new("/dev/shm");
        let t = TempDir::new("fs-exdev");
        let on_tmp = t.path("f");
        std::fs::write(&on_tmp, b"x").unwrap();
        let dev = |p: &Path| std::fs::metadata(p).map(|m| m.dev());
        if !shm.is_dir() || dev(shm).ok() == dev(&t.0).ok() {
            util::skip("no second filesystem (/dev/shm on another device than the temp dir)");
            return;
        }
        let other = shm.join(format!("trueio-exdev-{}", std::process::id()));
        run(b, || async {
            same("rename across filesystems", fs::rename(&on_tmp, &other).await, std::fs::rename(&on_tmp, &other));
            same("link across filesystems", fs::hard_link(&on_tmp, &other).await, std::fs::hard_link(&on_tmp, &other));
        });
        assert!(on_tmp.exists() && !other.exists());
    }

    fn whole_files_truncation_advice_and_attributes(b: Builder) {
        let t = TempDir::new("fs-files");
        let p = t.path("f");
        run(b, || async {
            let data = util::pattern(300_000, 3);
            fs::write(&p, data.clone()).await.unwrap();
            assert_eq!(fs::read(&p).await.unwrap(), data);
            fs::write(&p, b"short".to_vec()).await.unwrap();
            assert_eq!(fs::read_to_string(&p).await.unwrap(), "short");
            fs::write(&p, vec![0xff, 0xfe]).await.unwrap();
            let e = fs::read_to_string(&p).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            same("read missing", fs::read(t.path("gone")).await, std::fs::read(t.path("gone")));
            same("read a dir", fs::read(&t.0).await, std::fs::read(&t.0));

            let f = fs::File::open_with(None, &p, trueio::op::OpenHow::new(libc::O_RDWR)).await.unwrap();
            f.set_len(1 << 20).await.unwrap();
            assert_eq!(std::fs::metadata(&p).unwrap().len(), 1 << 20);
            f.set_len(3).await.unwrap();
            assert_eq!(std::fs::metadata(&p).unwrap().len(), 3);
            f.advise(0, 0, libc::POSIX_FADV_SEQUENTIAL).await.unwrap();
            f.advise(0, 8 << 30, libc::POSIX_FADV_WILLNEED).await.unwrap();
            let r = f.advise(0, 0, 12345).await;
            assert_eq!(r.unwrap_err().kind(), io::ErrorKind::InvalidInput);
            f.sync_range(0, 0, libc::SYNC_FILE_RANGE_WRITE).await.unwrap();
            f.sync_range(0, 8 << 30, libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER).await.unwrap();

            match f.set_xattr("user.trueio", b"v1".to_vec(), 0).await {
                Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                    util::skip("no user xattrs on the temp dir's filesystem");
                }
                r => {
                    r.unwrap();
                    assert_eq!(f.get_xattr("user.trueio").await.unwrap(), b"v1");
                    let long = util::pattern(3000, 9);
                    fs::set_xattr(&p, "user.long", long.clone(), 0).await.unwrap();
                    assert_eq!(fs::get_xattr(&p, "user.long").await.unwrap(), long);
                    let e = f.set_xattr("user.trueio", b"v2".to_vec(), libc::XATTR_CREATE).await.unwrap_err();
                    assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
                    let e = fs::get_xattr(&p, "user.none").await.unwrap_err();
                    assert_eq!(fs::os_error(&e), Some(libc::ENODATA), "{e}");
                }
            }
        });
    }

    fn read_dir_gives_every_entry_once_with_its_type(b: Builder) {
        let t = TempDir::new("fs-readdir");
        for i in 0..500 {
            std::fs::write(t.path(&format!("file-{i}")), b"").unwrap();
        }
        std::fs::create_dir(t.path("sub")).unwrap();
        std::os::unix::fs::symlink("file-0", t.path("link")).unwrap();
        run(b, || async {
            let mut rd = fs::read_dir(&t.0).await.unwrap();
            let mut seen = vec![false; 500];
            let (mut dirs, mut links) = (0, 0);
            while let Some(e) = rd.next_entry().await {
                let e = e.unwrap();
                let name = e.file_name().to_str().unwrap().to_string();
                let ty = e.file_type().await.unwrap();
                assert_eq!(e.path(), t.path(&name));
                if let Some(i) = name.strip_prefix("file-") {
                    let i: usize = i.parse().unwrap();
                    assert!(!seen[i], "{name} twice");
                    seen[i] = true;
                    assert!(ty.is_file());
                    assert!(e.metadata().await.unwrap().is_file());
                } else if name == "sub" {
                    assert!(ty.is_dir());
                    dirs += 1;
                } else {
                    assert_eq!(name, "link");
                    assert!(ty.is_symlink());
                    assert!(e.metadata().await.unwrap().is_symlink(), "metadata follows no link");
                    links += 1;
                }
            }
            assert!(seen.iter().all(|s| *s));
            assert_eq!((dirs, links), (1, 1));
            assert!(rd.next_entry().await.is_none());
            same("read_dir of a file", fs::read_dir(t.path("file-1")).await, std::fs::read_dir(t.path("file-1")));
            same("read_dir missing", fs::read_dir(t.path("gone")).await, std::fs::read_dir(t.path("gone")));
        });
    }

    fn remove_dir_all_touches_nothing_outside_the_tree(b: Builder) {
        let t = TempDir::new("fs-rmtree");
        let outside = t.path("outside");
        std::fs::create_dir_all(outside.join("keep")).unwrap();
        std::fs::write(outside.join("keep/precious"), b"keep me").unwrap();
        let tree = t.path("tree");
        for i in 0..20 {
            let d = tree.join(format!("d{i}/e{i}"));
            std::fs::create_dir_all(&d).unwrap();
            for j in 0..30 {
                std::fs::write(d.join(format!("f{j}")), b"x").unwrap();
            }
        }
        std::os::unix::fs::symlink(&outside, tree.join("link-to-outside-dir")).unwrap();
        std::os::unix::fs::symlink(outside.join("keep/precious"), tree.join("d3/link-to-file")).unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("d5/e5/deep-link")).unwrap();
        std::os::unix::fs::symlink(&outside, t.path("top-link")).unwrap();
        run(b, || async {
            // A symlink given as the root is removed itself.
            fs::remove_dir_all(t.path("top-link")).await.unwrap();
            assert!(!t.path("top-link").exists() && outside.is_dir());
            same("remove_dir_all of a file", fs::remove_dir_all(outside.join("keep/precious")).await, std::fs::remove_dir_all(outside.join("keep/precious")));
            same("remove_dir_all missing", fs::remove_dir_all(t.path("gone")).await, std::fs::remove_dir_all(t.path("gone")));
            fs::remove_dir_all(&tree).await.unwrap();
        });
        assert!(!tree.exists());
        assert_eq!(std::fs::read(outside.join("keep/precious")).unwrap(), b"keep me");
    }

    fn write_atomic_replaces_whole_and_keeps_the_mode(b: Builder) {
        let t = TempDir::new("fs-atomic");
        let p = t.path("config");
        run(b, || async {
            fs::write_atomic(&p, b"first".to_vec()).await.unwrap();
            assert_eq!(std::fs::read(&p).unwrap(), b"first");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            let held = std::fs::File::open(&p).unwrap();
            fs::write_atomic(&p, util::pattern(100_000, 1)).await.unwrap();
            assert_eq!(std::fs::read(&p).unwrap(), util::pattern(100_000, 1));
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
            // A reader that had the old file open still reads the old content whole.
            assert_eq!(std::io::read_to_string(held).unwrap(), "first");
            // An abandoned replacement leaves the old content and no temporary name.
            let f = fs::AtomicFile::create(&p).await.unwrap();
            let (r, _) = f.file().write_all_at(b"never".to_vec(), 0).await;
            r.unwrap();
            drop(f);
            assert_eq!(std::fs::read(&p).unwrap(), util::pattern(100_000, 1));
            let e = fs::write_atomic(t.path("no/such/dir/f"), b"x".to_vec()).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::NotFound);
            let e = fs::write_atomic(&t.0, b"x".to_vec()).await.unwrap_err();
            assert!(fs::os_error(&e).is_some(), "{e}");
        });
        let names: Vec<_> = std::fs::read_dir(&t.0).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("config")], "stray names");
    }
}

/// Which path the calls take, and each opcode masked alone.
mod paths {
    use super::*;

    both_backends! {
            /// With their opcodes, the namespace calls go through the ring (no pool job); masked,
            /// through the pool. On the epoll backend, always the pool.
            fn namespace_calls_take_the_ring_where_it_has_their_opcodes(b: Builder) {
                let t = TempDir::new("fs-path");
                let ring = b.clone().build().unwrap().backend() == trueio::Backend::Uring;
                for masked in [false, true] {
                    if masked && !ring {
                        continue;
                    }
                    let b = if masked { FS_OPCODES.iter().fold(b.clone(), |b, &c| b.without_opcode(c)) } else { b.clone() };
                    let rt = Runtime::with_builder(b).unwrap();
                    rt.block_on(async {
                        fs::create_dir(t.path("d")).await.unwrap();
                        fs::rename(t.path("d"), t.path("e")).await.unwrap();
                        fs::remove_dir(t.path("e")).await.unwrap();
                    });
                    let jobs = rt.engine().stats().pool_jobs;
                    if ring && !masked {
                        assert_eq!(jobs, 0, "mkdir/rename/rmdir should use their opcodes");
                    } else {
                        assert_eq!(jobs, 3, "each call on the pool (masked: {masked})");
                    }
                }
            }

            /// Each opcode masked alone: its operation still works (through the pool).
            fn each_opcode_masked_in_turn(b: Builder) {
                let t = TempDir::new("fs-mask");
                for &code in FS_OPCODES {
                    let rt = Runtime::with_builder(b.clone().without_opcode(code)).unwrap();
                    rt.block_on(async {
                        let (d, f) = (t.path("d"), t.path("f"));
                        fs::create_dir(&d).await.unwrap();
                        fs::write(&f, b"abc".to_vec()).await.unwrap();
                        fs::symlink("f", t.path("s")).await.unwrap();
                        fs::hard_link(&f, t.path("h")).await.unwrap();
                        fs::rename(t.path("h"), d.join("h")).await.unwrap();
                        let file = fs::File::open_with(None, &f, trueio::op::OpenHow::new(libc::O_RDWR)).await.unwrap();
                        file.set_len(1).await.unwrap();
                        file.advise(0, 0, libc::POSIX_FADV_NORMAL).await.unwrap();
                        file.sync_range(0, 0, libc::SYNC_FILE_RANGE_WRITE).await.unwrap();
                        match file.set_xattr("user.m", b"1".to_vec(), 0).await {
                            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {}
                            r => {
                                r.unwrap();
                                assert_eq!(file.get_xattr("user.m").await.unwrap(), b"1");
                            }
                        }
                        assert_eq!(fs::read(&f).await.unwrap(), b"a");
                        fs::remove_dir_all(&d).await.unwrap();
                        fs::remove_file(t.path("s")).await.unwrap();
                        fs::remove_file(&f).await.unwrap();
                    });
                }
            }

        /// On tmpfs the namespace calls and the stats of single names run inline (they cannot
        /// wait there); a stat that finds a symlink still follows it, out of tmpfs too.
        fn names_in_memory_run_inline_and_symlinks_are_still_followed(b: Builder) {
            let shm = Path::new("/dev/shm");
            if !shm.is_dir() {
                util::skip("no /dev/shm");
                return;
            }
            let d = shm.join(format!("trueio-inline-{}-{}", std::process::id(), line!()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir(&d).unwrap();
            let disk = TempDir::new("fs-follow");
            std::fs::write(disk.path("target"), b"12345").unwrap();
            std::os::unix::fs::symlink(disk.path("target"), d.join("link")).unwrap();
            let rt = Runtime::with_builder(b).unwrap();
            let before = rt.engine().stats();
            rt.block_on(async {
                let dir = Dir::open(&d).await.unwrap();
                dir.create_dir("x").await.unwrap();
                dir.rename("x", &dir, "y").await.unwrap();
                assert!(dir.symlink_metadata("y").await.unwrap().is_dir());
                dir.remove_dir("y").await.unwrap();
                // Followed: the target's metadata, on the disk filesystem.
                let m = dir.metadata("link").await.unwrap();
                assert!(m.is_file() && m.len() == 5, "{m:?}");
                assert!(dir.symlink_metadata("link").await.unwrap().is_symlink());
            });
            let s = rt.engine().stats().since(&before);
            // mkdir, rename, two lstats, rmdir inline; the followed stat is not.
            assert!(s.inline_completions >= 5, "{s:?}");
            std::fs::remove_dir_all(&d).unwrap();
        }
    }
}

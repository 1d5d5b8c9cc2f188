//! Storage tools: `fs::copy_file`, `examples/cp` and `examples/iobench`, on both backends.

mod util;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use trueio::fs::{copy_file_with, os_error, CopyOptions};
use trueio::{Backend, Builder, Engine};
use util::TempDir;

/// Sizes around the page and block edges, and a few MiB with an odd tail.
const SIZES: [usize; 6] = [0, 1, 4095, 4096, 4097, 3 * 1024 * 1024 + 4321];

fn engine(b: Builder, opts: &CopyOptions) -> Engine {
    b.fixed_buffers(opts.get_queue_depth(), opts.get_block_size())
        .build()
        .unwrap()
}

fn backend_flag(engine: &Engine) -> &'static str {
    match engine.backend() {
        Backend::Uring => "uring",
        Backend::Epoll => "epoll",
    }
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

/// Runs coreutils `cp` (the reference) with `args`.
fn coreutils_cp(args: &[&Path]) {
    let st = Command::new("cp")
        .args(args)
        .status()
        .expect("coreutils cp");
    assert!(st.success(), "coreutils cp {args:?} failed");
}

/// Runs our `cp` example; returns (success, stderr).
fn our_cp(engine: &Engine, args: &[&std::ffi::OsStr]) -> (bool, String) {
    let mut cmd = Command::new(util::example_binary("cp"));
    cmd.args(args).args(["--backend", backend_flag(engine)]);
    let run = util::run_child_within(&mut cmd, Duration::from_secs(120), "cp example");
    (run.status.success(), run.stderr)
}

/// Whether O_DIRECT opens work in `dir` (tmpfs before 6.6 refuses them, for one).
fn direct_supported(dir: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    let p = dir.join(".direct-probe");
    std::fs::write(&p, b"x").unwrap();
    let ok = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(&p)
        .is_ok();
    let _ = std::fs::remove_file(&p);
    ok
}

/// Whether this kernel has `cachestat` (6.5), which the in-kernel copy needs.
fn cachestat_works(path: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap();
    let range = [0u64, 1];
    let mut st = [0u64; 5];
    // SAFETY: cachestat reads one range and writes one struct of 5 u64, both on this frame.
    let r = unsafe { libc::syscall(451, f.as_raw_fd(), range.as_ptr(), st.as_mut_ptr(), 0u32) };
    r == 0
}

/// The `n`-th test file: a pattern with no long zero runs (so nothing is mistaken for holes).
fn data(len: usize, seed: u8) -> Vec<u8> {
    util::pattern(len, seed.wrapping_add(1))
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ (i >> 12) as u8 | 1)
        .collect()
}

both_backends! {
    /// Through the engine's pipeline (in_kernel off), and with the source's cached ranges
    /// copied inside the kernel (the default): the same bytes either way.
    fn copy_file_is_byte_exact_for_edge_sizes(b: Builder) {
        let dir = TempDir::new("copy-sizes");
        // A small block size and queue, so that the multi-MiB file spans many linked pairs.
        let pipeline = CopyOptions::new().queue_depth(4).block_size(64 * 1024).in_kernel(false);
        let engine = engine(b, &pipeline);
        let in_kernel = pipeline.clone().in_kernel(true);
        for (i, &len) in SIZES.iter().enumerate() {
            for opts in [&pipeline, &in_kernel] {
                let src = dir.path(&format!("src-{len}"));
                std::fs::write(&src, data(len, i as u8)).unwrap();
                let dst = dir.path(&format!("dst-{len}"));
                let report = copy_file_with(&engine, &src, &dst, opts).unwrap();
                assert_eq!(report.bytes, len as u64, "bytes reported for {len}");
                assert_eq!(report.len, len as u64, "length reported for {len}");
                // The source was just written: every byte is cached.
                let expect_in_kernel = if opts.get_in_kernel() && cachestat_works(&src) {
                    len as u64
                } else {
                    0
                };
                assert_eq!(report.in_kernel, expect_in_kernel, "in-kernel bytes for {len}");
                let reference = dir.path(&format!("ref-{len}"));
                coreutils_cp(&[&src, &reference]);
                assert_eq!(read(&dst), read(&src), "copy of {len} bytes differs from the source");
                assert_eq!(
                    read(&dst),
                    read(&reference),
                    "copy of {len} bytes differs from coreutils cp's"
                );
            }
        }
        util::assert_settled(&engine);
    }

    fn copy_file_direct_is_byte_exact_with_an_unaligned_tail(b: Builder) {
        let dir = TempDir::new("copy-direct");
        if !direct_supported(&dir.0) {
            util::skip(&format!("O_DIRECT is not supported on the filesystem of {}", dir.0.display()));
            return;
        }
        let opts = CopyOptions::new().queue_depth(4).block_size(64 * 1024).direct(true);
        let engine = engine(b, &opts);
        for (i, &len) in SIZES.iter().enumerate() {
            let src = dir.path(&format!("src-{len}"));
            std::fs::write(&src, data(len, i as u8 + 50)).unwrap();
            let dst = dir.path(&format!("dst-{len}"));
            let report = copy_file_with(&engine, &src, &dst, &opts).unwrap();
            if len > 0 {
                assert!(report.direct, "O_DIRECT not used for {len} bytes: {:?}", report.direct_refused);
            }
            assert_eq!(read(&dst), read(&src), "direct copy of {len} bytes differs");
        }
    }

    fn copy_file_keeps_holes(b: Builder) {
        let dir = TempDir::new("copy-sparse");
        let src = dir.path("sparse");
        let size = 64u64 << 20;
        {
            use std::os::unix::fs::FileExt;
            let f = std::fs::File::create(&src).unwrap();
            f.set_len(size).unwrap();
            f.write_all_at(&data(10_000, 3), 0).unwrap();
            f.write_all_at(&data(5_000, 4), size - 5_000).unwrap();
        }
        let src_blocks = std::fs::metadata(&src).unwrap().blocks();
        if src_blocks * 512 >= size / 2 {
            util::skip("the filesystem of the temporary directory does not keep holes");
            return;
        }
        let opts = CopyOptions::new();
        let engine = engine(b, &opts);
        let dst = dir.path("copy");
        let report = copy_file_with(&engine, &src, &dst, &opts).unwrap();
        assert_eq!(read(&dst), read(&src), "sparse copy differs");
        let meta = std::fs::metadata(&dst).unwrap();
        assert_eq!(meta.len(), size);
        // Allocated blocks stay few: the two data ends, not 64 MiB.
        assert!(
            meta.blocks() <= src_blocks + 64,
            "holes filled: {} blocks allocated for the copy, {} for the source",
            meta.blocks(),
            src_blocks
        );
        assert_eq!(report.extents, 2, "two data extents expected: {report:?}");
        assert!(report.holes >= size - 2 * (1 << 20), "holes reported: {report:?}");
    }

    fn copy_file_reads_proc_and_sys_files_to_their_end(b: Builder) {
        // /proc files say size 0, /sys files say 4096: the copy reads until end of file.
        let dir = TempDir::new("copy-proc");
        let opts = CopyOptions::new();
        let engine = engine(b, &opts);
        for src in ["/proc/version", "/proc/filesystems", "/sys/kernel/mm/transparent_hugepage/enabled"] {
            let src = Path::new(src);
            let Ok(expected) = std::fs::read(src) else {
                util::skip(&format!("{} cannot be read here", src.display()));
                continue;
            };
            assert!(!expected.is_empty());
            let dst = dir.path("copy");
            let report = copy_file_with(&engine, src, &dst, &opts).unwrap();
            assert_eq!(read(&dst), expected, "copy of {} differs", src.display());
            assert_eq!(report.bytes, expected.len() as u64);
        }
    }

    fn copy_file_handles_names_with_spaces_and_utf8(b: Builder) {
        let dir = TempDir::new("copy-names");
        let opts = CopyOptions::new();
        let engine = engine(b, &opts);
        let src = dir.path("a file with spaces ✓ é ü.bin");
        std::fs::write(&src, data(100_000, 9)).unwrap();
        let dst = dir.path("copié — ✓ dest.bin");
        copy_file_with(&engine, &src, &dst, &opts).unwrap();
        assert_eq!(read(&dst), read(&src));
        // And through the cp example.
        let dst2 = dir.path("второй copy ✓.bin");
        let (ok, err) = our_cp(&engine, &[src.as_os_str(), dst2.as_os_str()]);
        assert!(ok, "cp failed: {err}");
        assert_eq!(read(&dst2), read(&src));
    }

    fn copy_file_errors_name_the_file_and_lose_nothing(b: Builder) {
        let dir = TempDir::new("copy-errors");
        let opts = CopyOptions::new();
        let engine = engine(b, &opts);
        // A missing source: the error names it; no destination appears.
        let missing = dir.path("missing");
        let dst = dir.path("dst");
        let e = copy_file_with(&engine, &missing, &dst, &opts).unwrap_err();
        assert_eq!(os_error(&e), Some(libc::ENOENT), "{e}");
        assert!(e.to_string().contains("missing"), "{e}");
        assert!(!dst.exists());
        // Copying a file onto itself is refused and the file keeps its bytes.
        let src = dir.path("self");
        std::fs::write(&src, b"precious").unwrap();
        let e = copy_file_with(&engine, &src, &src, &opts).unwrap_err();
        assert!(e.to_string().contains("same file"), "{e}");
        assert_eq!(read(&src), b"precious");
        // Also through another name (a hard link).
        let link = dir.path("self-link");
        std::fs::hard_link(&src, &link).unwrap();
        assert!(copy_file_with(&engine, &src, &link, &opts).is_err());
        assert_eq!(read(&src), b"precious");
        // A destination in a missing directory.
        let e = copy_file_with(&engine, &src, dir.path("no/such/dir/x"), &opts).unwrap_err();
        assert_eq!(os_error(&e), Some(libc::ENOENT), "{e}");
        assert!(e.to_string().contains("no/such/dir/x"), "{e}");
        // A directory as the source.
        let e = copy_file_with(&engine, &dir.0, dir.path("d"), &opts).unwrap_err();
        assert_eq!(os_error(&e), Some(libc::EISDIR), "{e}");
    }

    fn copy_into_a_full_filesystem_fails_clearly_and_leaves_no_destination(b: Builder) {
        let dir = TempDir::new("copy-enospc");
        let mnt = dir.path("small");
        std::fs::create_dir(&mnt).unwrap();
        let Some(_mount) = Tmpfs::mount(&mnt, "1m") else { return };
        let src = dir.path("big");
        std::fs::write(&src, data(4 << 20, 7)).unwrap();
        let opts = CopyOptions::new().queue_depth(4);
        let engine = engine(b, &opts);
        let dst = mnt.join("big");
        let e = copy_file_with(&engine, &src, &dst, &opts).unwrap_err();
        assert_eq!(os_error(&e), Some(libc::ENOSPC), "{e}");
        let msg = e.to_string();
        assert!(msg.contains("big") && msg.contains("offset"), "the error should name the file and offset: {msg}");
        assert!(!dst.exists(), "an incomplete destination was left behind: {msg}");
        // The cp example says so too and exits non-zero.
        let (ok, err) = our_cp(&engine, &[src.as_os_str(), dst.as_os_str()]);
        assert!(!ok, "cp into a full filesystem succeeded");
        assert!(err.contains("No space left"), "cp's message: {err}");
        assert!(!dst.exists());
        // The filesystem is not left full of garbage: a small copy still works. (The space
        // comes back when the kernel drops its last reference to the removed file: at once
        // on recent kernels, up to a second later on 6.1, which releases registered files
        // from a delayed work item.)
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while free_bytes(&mnt) < 512 * 1024 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let small = dir.path("small-src");
        std::fs::write(&small, data(1000, 1)).unwrap();
        copy_file_with(&engine, &small, mnt.join("ok"), &opts).unwrap();
        assert_eq!(read(&mnt.join("ok")), read(&small));
    }

    fn cp_recursive_copies_a_tree_with_a_symlink_like_coreutils(b: Builder) {
        let dir = TempDir::new("cp-tree");
        let src = dir.path("tree");
        std::fs::create_dir_all(src.join("sub dir/deeper")).unwrap();
        std::fs::write(src.join("a.txt"), b"alpha").unwrap();
        std::fs::write(src.join("sub dir/b ✓.bin"), data(200_000, 2)).unwrap();
        std::fs::write(src.join("sub dir/deeper/empty"), b"").unwrap();
        std::os::unix::fs::symlink("../a.txt", src.join("sub dir/link-to-a")).unwrap();
        std::os::unix::fs::symlink("/nonexistent/target", src.join("dangling")).unwrap();
        std::fs::set_permissions(src.join("a.txt"), std::fs::Permissions::from_mode(0o640)).unwrap();
        let engine = Builder::build(b).unwrap();
        let ours = dir.path("ours");
        let (ok, err) = our_cp(&engine, &["-r".as_ref(), src.as_os_str(), ours.as_os_str()]);
        assert!(ok, "cp -r failed: {err}");
        let theirs = dir.path("theirs");
        coreutils_cp(&[Path::new("-r"), &src, &theirs]);
        // Same tree, same bytes, links as links with the same targets.
        let diff = Command::new("diff")
            .args(["-r", "--no-dereference"])
            .arg(&ours)
            .arg(&theirs)
            .output()
            .expect("diff");
        assert!(diff.status.success(), "trees differ:\n{}", String::from_utf8_lossy(&diff.stdout));
        let link = ours.join("sub dir/link-to-a");
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_link(&link).unwrap(), PathBuf::from("../a.txt"));
        assert_eq!(std::fs::read_link(ours.join("dangling")).unwrap(), PathBuf::from("/nonexistent/target"));
        let mode = std::fs::metadata(ours.join("a.txt")).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o640 & !umask());
        // Copying a tree into itself is refused.
        let (ok, err) = our_cp(&engine, &["-r".as_ref(), src.as_os_str(), src.join("sub dir/inner").as_os_str()]);
        assert!(!ok && err.contains("into itself"), "cp -r into itself: {err}");
    }

    fn cp_preserve_keeps_mode_and_times(b: Builder) {
        let dir = TempDir::new("cp-preserve");
        let src = dir.path("src");
        std::fs::write(&src, data(10_000, 5)).unwrap();
        std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o604)).unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        std::fs::File::options().write(true).open(&src).unwrap()
            .set_times(std::fs::FileTimes::new().set_modified(old).set_accessed(old)).unwrap();
        let engine = Builder::build(b).unwrap();
        let dst = dir.path("dst");
        let (ok, err) = our_cp(&engine, &["--preserve".as_ref(), "--sync".as_ref(), src.as_os_str(), dst.as_os_str()]);
        assert!(ok, "{err}");
        let m = std::fs::metadata(&dst).unwrap();
        assert_eq!(m.mode() & 0o777, 0o604);
        assert_eq!(m.modified().unwrap(), old);
        assert_eq!(read(&dst), read(&src));
    }

    fn iobench_randwrite_counts_match_the_file(b: Builder) {
        let dir = TempDir::new("iobench");
        let file = dir.path("bench.dat");
        let engine = Builder::build(b).unwrap();
        let (size, bs) = (4u64 << 20, 4096u64);
        let bin = util::example_binary("iobench");
        // Runs iobench on the test file and this variant's backend; its standard output.
        let iobench = |args: &[&str]| -> String {
            let mut cmd = Command::new(&bin);
            cmd.arg("--file").arg(&file).args(args).args(["--backend", backend_flag(&engine)]);
            let run = util::run_child_within(&mut cmd, Duration::from_secs(60), "iobench");
            assert!(run.status.success(), "iobench {args:?} failed: {}", run.stderr);
            run.stdout.trim().to_string()
        };
        let json = iobench(&[
            "--size", "4M", "--rw", "randwrite", "--bs", "4k", "--qd", "8", "--runtime", "0.3",
            "--fixed-bufs", "--fixed-files", "--verify", "--json", "--seed", "12345",
        ]);
        let json = json.as_str();
        for key in ["iops", "mb_per_s", "lat_p50_us", "lat_p99_us", "lat_p999_us", "usr_s", "sys_s", "syscalls_per_op", "backend"] {
            assert!(json.contains(&format!("\"{key}\":")), "key {key} missing from {json}");
        }
        assert!(json.contains(&format!("\"backend\":\"{}\"", backend_flag(&engine))), "{json}");
        let field = |k: &str| -> f64 {
            let start = json.find(&format!("\"{k}\":")).unwrap() + k.len() + 3;
            let rest = &json[start..];
            let end = rest.find([',', '}']).unwrap();
            rest[..end].trim_matches('"').parse().unwrap()
        };
        assert_eq!(field("verify_mismatches"), 0.0, "{json}");
        let ops = field("ops") as u64;
        let written = field("blocks_written") as u64;
        assert!(ops > 0 && written > 0 && written <= ops, "{json}");
        // Random runs visit every block once per pass (fio's random map): no block twice
        // before all have been written.
        assert_eq!(written, ops.min(size / bs), "{json}");
        // Check the counts against the file ourselves: the blocks holding the run's pattern
        // are as many as it reports, and every other block still holds the fill.
        let bytes = read(&file);
        assert_eq!(bytes.len() as u64, size);
        let mut seen = 0;
        for (i, block) in bytes.chunks(bs as usize).enumerate() {
            let off = i as u64 * bs;
            if holds(block, off, 12345) {
                seen += 1;
            } else {
                assert!(holds(block, off, 0), "block {i} holds neither the fill nor the write pattern");
            }
        }
        assert_eq!(seen, written, "blocks holding the write pattern vs blocks_written");
        // Stopped at 700 of the 1024 blocks, a random write run has written 700 distinct
        // blocks (independent draws would have hit about 500) and stops at its count.
        let json = iobench(&[
            "--size", "4M", "--rw", "randwrite", "--bs", "4k", "--qd", "8", "--runtime", "30",
            "--number-ios", "700", "--verify", "--json", "--seed", "777",
        ]);
        assert!(json.contains("\"ops\":700,"), "{json}");
        assert!(json.contains("\"blocks_written\":700,"), "{json}");
        assert!(json.contains("\"verify_mismatches\":0"), "{json}");
        // A read run over the same file works and reports its reads.
        let json = iobench(&[
            "--size", "4M", "--rw", "randread", "--bs", "4k", "--qd", "4", "--runtime", "0.2", "--json",
        ]);
        assert!(json.contains("\"rw\":\"randread\""), "{json}");
    }
}

/// iobench's block pattern (see `examples/iobench.rs`): splitmix64 of position and tag.
fn pattern_word(pos: u64, tag: u64) -> u64 {
    let mut z = pos.wrapping_add(tag.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn holds(block: &[u8], off: u64, tag: u64) -> bool {
    block
        .chunks(8)
        .enumerate()
        .all(|(i, c)| c == &pattern_word(off + 8 * i as u64, tag).to_le_bytes()[..c.len()])
}

/// This process's umask, from /proc (setting it to read it would race with other tests).
fn umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
    u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap()
}

/// A small tmpfs mounted for a test, unmounted on drop; `None` (with the reason printed) when
/// mounting is not allowed here.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "trueio-test"])
            .arg(at)
            .output();
        match st {
            Ok(o) if o.status.success() => Some(Tmpfs(at.to_path_buf())),
            Ok(o) => {
                util::skip(&format!(
                    "cannot mount a tmpfs (needs root): {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
                None
            }
            Err(e) => {
                util::skip(&format!("cannot run mount: {e}"));
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Free bytes of the filesystem holding `p`.
fn free_bytes(p: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: statvfs fills the zeroed struct on this frame; `c` is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let r = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    assert_eq!(r, 0, "statvfs {}", p.display());
    st.f_bavail as u64 * st.f_frsize as u64
}

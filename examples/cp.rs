//! `cp`: copies files and directory trees with trueio's pipelined copy.
//!
//! ```sh
//! cargo run --release --example cp -- SRC DST [--qd N] [--bs SIZE] [--direct] [--sync] [--preserve] [--backend auto|uring|epoll]
//! cargo run --release --example cp -- -r SRCDIR DSTDIR
//! ```
//!
//! Files are copied by `trueio::fs::copy_file_with` on one engine: `--qd` blocks of `--bs`
//! bytes in flight, each a read linked to its write, in registered buffers; holes stay holes.
//! With `-r`, directories are recreated, symbolic links are copied as links, FIFOs and device
//! nodes are recreated. A progress bar shows on a terminal; otherwise the copy is quiet. Any
//! failure prints a message naming the file and the exit status is 1 (the other files are
//! still copied, and no incomplete destination file is left).

use std::io::IsTerminal;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use trueio::fs::{copy_file_with, CopyOptions};
use trueio::{BackendChoice, Engine};

#[path = "common/size.rs"]
mod size;
use size::parse_size;

const USAGE: &str = "usage: cp [-r] SRC... DST [--qd N] [--bs SIZE] [--direct] [--sync] \
                     [--preserve] [--backend auto|uring|epoll] [--no-link] [-v]";

struct Args {
    recursive: bool,
    preserve: bool,
    verbose: bool,
    paths: Vec<PathBuf>,
    opts: CopyOptions,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        recursive: false,
        preserve: false,
        verbose: false,
        paths: Vec::new(),
        opts: CopyOptions::new(),
    };
    let mut it = std::env::args_os().skip(1);
    let value = |it: &mut dyn Iterator<Item = std::ffi::OsString>, flag: &str| {
        it.next()
            .and_then(|v| v.into_string().ok())
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
    };
    let mut only_paths = false;
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        if only_paths || !s.starts_with('-') || s == "-" {
            args.paths.push(PathBuf::from(a));
            continue;
        }
        let opts = std::mem::take(&mut args.opts);
        args.opts = match s.as_ref() {
            "--" => {
                only_paths = true;
                opts
            }
            "-r" | "-R" | "--recursive" => {
                args.recursive = true;
                opts
            }
            "-v" | "--verbose" => {
                args.verbose = true;
                opts
            }
            "--qd" => {
                let v = value(&mut it, "--qd")?;
                let n: usize = v.parse().map_err(|_| format!("--qd {v}: not a number"))?;
                if n == 0 || n > 1024 {
                    return Err(format!("--qd {v}: must be 1..=1024"));
                }
                opts.queue_depth(n)
            }
            "--bs" => {
                let v = value(&mut it, "--bs")?;
                let n = parse_size(&v)?;
                if n > trueio::fs::MAX_BLOCK_SIZE as u64 {
                    return Err(format!("--bs {v}: at most 64 MiB"));
                }
                opts.block_size(n as usize)
            }
            "--direct" => opts.direct(true),
            "--sync" => opts.sync(true),
            "--preserve" | "-p" => {
                args.preserve = true;
                opts.preserve(true)
            }
            "--no-link" => opts.link(false),
            "--backend" => {
                let v = value(&mut it, "--backend")?;
                opts.backend(BackendChoice::parse(&v).map_err(|e| e.to_string())?)
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        };
    }
    if args.paths.len() < 2 {
        return Err(format!("missing source or destination\n{USAGE}"));
    }
    Ok(args)
}

/// Copies one tree entry after another, counting failures.
struct Copier {
    engine: Engine,
    opts: CopyOptions,
    recursive: bool,
    preserve: bool,
    verbose: bool,
    bar: Option<ProgressBar>,
    failures: usize,
    bytes: u64,
}

impl Copier {
    fn fail(&mut self, msg: String) {
        self.failures += 1;
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("cp: {msg}")),
            None => eprintln!("cp: {msg}"),
        }
    }

    /// Copies `src` to `dst` (the final name, not a directory to copy into).
    fn copy(&mut self, src: &Path, dst: &Path) {
        let meta = match std::fs::symlink_metadata(src) {
            Ok(m) => m,
            Err(e) => return self.fail(format!("cannot stat {}: {e}", src.display())),
        };
        let ft = meta.file_type();
        if ft.is_dir() {
            if !self.recursive {
                return self.fail(format!(
                    "-r not given; omitting directory {}",
                    src.display()
                ));
            }
            self.copy_dir(src, dst, &meta);
        } else if ft.is_symlink() && self.recursive {
            self.copy_symlink(src, dst);
        } else if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
            if self.recursive {
                self.make_node(src, dst, &meta);
            } else {
                self.copy_file(src, dst);
            }
        } else if ft.is_socket() {
            self.fail(format!("cannot copy socket {}", src.display()));
        } else {
            self.copy_file(src, dst);
        }
    }

    fn copy_file(&mut self, src: &Path, dst: &Path) {
        let opts = match &self.bar {
            Some(bar) => {
                let (bar, base) = (bar.clone(), self.bytes);
                self.opts
                    .clone()
                    .progress(move |p| bar.set_position(base + p.copied))
            }
            None => self.opts.clone(),
        };
        match copy_file_with(&self.engine, src, dst, &opts) {
            Ok(r) => {
                self.bytes += r.bytes;
                if let Some(why) = &r.direct_refused {
                    let msg = format!(
                        "note: {} copied through the page cache: {why}",
                        src.display()
                    );
                    match &self.bar {
                        Some(bar) => bar.suspend(|| eprintln!("cp: {msg}")),
                        None => eprintln!("cp: {msg}"),
                    }
                }
                if self.verbose {
                    println!(
                        "{} -> {}: {} bytes ({} holes, {} copied in the kernel) in {:.3} s{}{}",
                        src.display(),
                        dst.display(),
                        r.bytes,
                        r.holes,
                        r.in_kernel,
                        r.elapsed.as_secs_f64(),
                        if r.direct { ", O_DIRECT" } else { "" },
                        if r.fixed_buffers {
                            ", registered buffers"
                        } else {
                            ""
                        },
                    );
                }
            }
            Err(e) => self.fail(e.to_string()),
        }
    }

    fn copy_dir(&mut self, src: &Path, dst: &Path, meta: &std::fs::Metadata) {
        // Refuse to copy a directory into itself (it would never end).
        if let (Ok(s), Some(parent)) = (src.canonicalize(), dst.parent()) {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            if let Ok(p) = parent.canonicalize() {
                if p.starts_with(&s) {
                    return self.fail(format!(
                        "cannot copy a directory, {}, into itself, {}",
                        src.display(),
                        dst.display()
                    ));
                }
            }
        }
        match std::fs::create_dir(dst) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dst.is_dir() => {}
            Err(e) => return self.fail(format!("cannot create directory {}: {e}", dst.display())),
        }
        let entries = match std::fs::read_dir(src) {
            Ok(rd) => rd,
            Err(e) => return self.fail(format!("cannot read directory {}: {e}", src.display())),
        };
        let mut names: Vec<_> = Vec::new();
        for entry in entries {
            match entry {
                Ok(e) => names.push(e.file_name()),
                Err(e) => self.fail(format!("reading directory {}: {e}", src.display())),
            }
        }
        names.sort();
        for name in names {
            self.copy(&src.join(&name), &dst.join(&name));
        }
        // Permissions (and times, with --preserve) after the contents, which change them.
        let mode = if self.preserve {
            meta.mode() & 0o7777
        } else {
            meta.mode() & 0o777
        };
        if let Err(e) = std::fs::set_permissions(dst, std::fs::Permissions::from_mode(mode)) {
            self.fail(format!("setting permissions of {}: {e}", dst.display()));
        }
        if self.preserve {
            if let Err(e) = set_times(dst, meta) {
                self.fail(format!("preserving times of {}: {e}", dst.display()));
            }
        }
    }

    fn copy_symlink(&mut self, src: &Path, dst: &Path) {
        let target = match std::fs::read_link(src) {
            Ok(t) => t,
            Err(e) => return self.fail(format!("cannot read link {}: {e}", src.display())),
        };
        if std::fs::symlink_metadata(dst).is_ok() {
            if let Err(e) = std::fs::remove_file(dst) {
                return self.fail(format!("cannot replace {}: {e}", dst.display()));
            }
        }
        if let Err(e) = std::os::unix::fs::symlink(&target, dst) {
            self.fail(format!(
                "cannot create symbolic link {}: {e}",
                dst.display()
            ));
        }
    }

    fn make_node(&mut self, src: &Path, dst: &Path, meta: &std::fs::Metadata) {
        let Ok(c) = std::ffi::CString::new(dst.as_os_str().as_bytes()) else {
            return self.fail(format!("{}: a name with a NUL byte", dst.display()));
        };
        let _ = std::fs::remove_file(dst);
        // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
        let r = unsafe {
            libc::mknod(
                c.as_ptr(),
                meta.mode() as libc::mode_t,
                meta.rdev() as libc::dev_t,
            )
        };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            self.fail(format!(
                "cannot create special file {} (from {}): {e}",
                dst.display(),
                src.display()
            ));
        }
    }
}

fn set_times(path: &Path, meta: &std::fs::Metadata) -> std::io::Result<()> {
    let f = std::fs::File::open(path)?;
    f.set_times(
        std::fs::FileTimes::new()
            .set_accessed(meta.accessed()?)
            .set_modified(meta.modified()?),
    )
}

/// Bytes of regular files under `path` (for the progress bar's length).
fn total_bytes(path: &Path, recursive: bool) -> u64 {
    let Ok(m) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if m.is_dir() && recursive {
        std::fs::read_dir(path)
            .map(|rd| rd.flatten().map(|e| total_bytes(&e.path(), true)).sum())
            .unwrap_or(0)
    } else if m.is_file() {
        m.len()
    } else {
        0
    }
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("cp: {e}");
            return ExitCode::from(2);
        }
    };
    let engine = match args.opts.engine_builder().build() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cp: cannot start the I/O engine: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (srcs, dst) = args.paths.split_at(args.paths.len() - 1);
    let dst = &dst[0];
    let dst_is_dir = dst.is_dir();
    if srcs.len() > 1 && !dst_is_dir {
        eprintln!("cp: target {} is not a directory", dst.display());
        return ExitCode::FAILURE;
    }
    let bar = std::io::stderr().is_terminal().then(|| {
        let total = srcs.iter().map(|s| total_bytes(s, args.recursive)).sum();
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let mut copier = Copier {
        engine,
        opts: args.opts,
        recursive: args.recursive,
        preserve: args.preserve,
        verbose: args.verbose,
        bar,
        failures: 0,
        bytes: 0,
    };
    let start = Instant::now();
    for src in srcs {
        // Into an existing directory, under the source's own name.
        let target = match (dst_is_dir, src.file_name()) {
            (true, Some(name)) => dst.join(name),
            (true, None) => {
                copier.fail(format!(
                    "cannot copy {} into a directory: no file name",
                    src.display()
                ));
                continue;
            }
            (false, _) => dst.clone(),
        };
        copier.copy(src, &target);
    }
    if let Some(bar) = &copier.bar {
        bar.finish_and_clear();
    }
    if copier.verbose {
        let s = start.elapsed().as_secs_f64();
        println!(
            "{} bytes in {s:.3} s ({:.1} MiB/s), backend {:?}",
            copier.bytes,
            copier.bytes as f64 / s.max(1e-9) / (1 << 20) as f64,
            copier.engine.backend()
        );
    }
    if copier.failures > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

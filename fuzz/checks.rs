//! What fuzzing the file server checks, shared by the fuzz targets (`fuzz_targets/`) and by
//! `tests/request_fuzz.rs` (which replays the corpus and runs proptest generators).
//!
//! Both run the server's own request handling (`examples/file_server/request.rs` and
//! `http.rs`, included by path) and resolve every path it decides to open with the server's
//! open flags, through the engine, beneath a root that has a secret next to it and symlinks
//! pointing out of it. A panic anywhere, a path that the routing should have refused, a
//! redirect that leaves the site, or a file opened outside the root fails.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use trueio::op::OpenAt2;
use trueio::{Engine, Fd};

use crate::http;
use crate::request::{
    beneath, file_name, parse_request, redirect_location, route, Parsed, Request, Route, MAX_HEAD,
};

/// The contents of the file next to the root (never to be served).
pub const SECRET: &[u8] = b"TOP-SECRET-3b9d-never-serve-me";

/// A served root with a secret beside it, and the engine that opens paths beneath it.
pub struct Fixture {
    dir: PathBuf,
    root: OwnedFd,
    /// The root's canonical path: every opened file must be beneath it.
    root_real: PathBuf,
    engine: Engine,
}

impl Fixture {
    /// `<tmp>/trueio-fuzz-<pid>-<n>/`: `secret`, `outside/x.txt`, and `root/` with files, a
    /// directory with an index, and symlinks that stay inside (`sub/up`) or point out
    /// (relative, absolute, to a magic link, a loop).
    pub fn new(engine: Engine) -> Fixture {
        use std::os::unix::fs::symlink;
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("trueio-fuzz-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let root = dir.join("root");
        let mk = |p: &Path| std::fs::create_dir_all(p).expect("fixture directory");
        let put = |p: &Path, data: &[u8]| std::fs::write(p, data).expect("fixture file");
        let link = |target: &str, at: &Path| symlink(target, at).expect("fixture symlink");
        mk(&root.join("sub"));
        mk(&root.join("withindex"));
        mk(&dir.join("outside"));
        put(&dir.join("secret"), SECRET);
        put(&dir.join("outside").join("x.txt"), SECRET);
        put(&root.join("small.txt"), b"hello, world\n");
        put(&root.join("sub").join("a.txt"), b"a");
        put(&root.join("withindex").join("index.html"), b"<p>index</p>");
        link("..", &root.join("sub").join("up"));
        link("../..", &root.join("sub").join("upup"));
        link("../secret", &root.join("rel_out"));
        link("../outside", &root.join("dir_out"));
        let abs_secret = dir.join("secret");
        link(
            abs_secret.to_str().expect("UTF-8 temp dir"),
            &root.join("abs_out"),
        );
        link("/etc/passwd", &root.join("passwd"));
        link("/proc/self/root", &root.join("proc_root"));
        link("/proc/self/cwd", &root.join("proc_cwd"));
        link("loop", &root.join("loop"));
        let root_real = std::fs::canonicalize(&root).expect("canonical root");
        let root_fd = File::open(&root).expect("open the root").into();
        Fixture {
            dir,
            root: root_fd,
            root_real,
            engine,
        }
    }

    /// Opens `rel` beneath the root as the server does (its flags, through the engine).
    pub fn open(&self, rel: &[u8]) -> std::io::Result<OwnedFd> {
        let op = OpenAt2::new(
            Some(Fd::Raw(self.root.as_raw_fd())),
            OsStr::from_bytes(rel),
            beneath(),
        );
        self.engine
            .submit(op)
            .wait()
            .expect("the engine waits for the open")
    }

    /// `Err` when `fd` is not the root or beneath it, or reads as the secret.
    pub fn verify_beneath(&self, fd: &OwnedFd) -> Result<(), String> {
        let real = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .map_err(|e| format!("readlink of an opened descriptor: {e}"))?;
        if !real.starts_with(&self.root_real) {
            return Err(format!(
                "opened {} outside the root {}",
                real.display(),
                self.root_real.display()
            ));
        }
        let mut buf = [0u8; 64];
        // SAFETY: `buf` is a live local array of the given length.
        let n = unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n > 0 && buf[..n as usize].starts_with(SECRET) {
            return Err(format!("read the secret through {}", real.display()));
        }
        Ok(())
    }

    /// Opens `rel` and asserts that whatever opened is beneath the root.
    pub fn check_open(&self, rel: &[u8]) {
        if let Ok(fd) = self.open(rel) {
            if let Err(e) = self.verify_beneath(&fd) {
                panic!("path {:?}: {e}", String::from_utf8_lossy(rel));
            }
        }
    }

    /// The temporary directory (to open the secret directly in a test of the checker).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Raw request bytes, as the server reads them from a connection.
pub fn check_request(fx: &Fixture, data: &[u8]) {
    match parse_request(data) {
        Parsed::Partial => assert!(data.len() < MAX_HEAD, "Partial at {} bytes", data.len()),
        Parsed::Error(status) => {
            assert!(matches!(status, 400 | 414 | 431), "parse error {status}")
        }
        Parsed::Request(req, n) => {
            assert!(
                n <= data.len() && n <= MAX_HEAD,
                "took {n} of {}",
                data.len()
            );
            let _ = req.keep_alive();
            check_headers(&req, data.len() as u64);
            check_route(fx, &req);
        }
    }
}

/// A request target as sent (any UTF-8, beyond what the parser lets through), then the same
/// bytes as a path relative to the root.
pub fn check_path(fx: &Fixture, data: &[u8]) {
    if let Ok(target) = std::str::from_utf8(data) {
        let req = Request {
            method: "GET".into(),
            target: target.into(),
            version: 1,
            headers: Vec::new(),
        };
        check_route(fx, &req);
    }
    if !data.is_empty() && !data.contains(&0) {
        fx.check_open(data);
    }
}

/// The header values the server interprets, against a representation of `len` bytes.
fn check_headers(req: &Request, len: u64) {
    if let Some(r) = req.header("range") {
        match http::parse_range(r, len) {
            http::Range::Part(a, b) => assert!(a <= b && b < len, "range {r:?} of {len}: {a}-{b}"),
            http::Range::Full | http::Range::Unsatisfiable => {}
        }
    }
    if let Some(d) = req.header("if-modified-since") {
        if let Some(t) = http::parse_http_date(d) {
            // What parses is a date the server itself could have written.
            assert_eq!(http::parse_http_date(&http::http_date(t)), Some(t), "{d:?}");
        }
    }
}

/// The routing decision, the redirect it may lead to, and the open it leads to.
fn check_route(fx: &Fixture, req: &Request) {
    match route(req) {
        Route::Refuse(status) => assert!(matches!(status, 400 | 405), "refused with {status}"),
        Route::Open { path, rel } => {
            assert_eq!(path.first(), Some(&b'/'), "path {path:?}");
            assert!(
                !path.contains(&0) && !path.contains(&b'\\'),
                "path {path:?}"
            );
            assert!(!rel.is_empty() && rel[0] != b'/', "rel {rel:?}");
            assert!(!rel.contains(&0), "rel {rel:?}");
            check_redirect(&rel);
            let _ = file_name(&rel);
            fx.check_open(&rel);
        }
    }
}

/// The `Location` of a directory's redirect: on this site, one header value, and naming the
/// same segments.
fn check_redirect(rel: &[u8]) {
    let loc = redirect_location(rel);
    assert!(
        loc.starts_with('/') && !loc.starts_with("//"),
        "redirect to {loc:?} leaves the site"
    );
    assert!(
        loc.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-._~/%".contains(&c)),
        "redirect {loc:?} carries raw bytes"
    );
    let decoded = http::percent_decode(loc.as_bytes()).expect("the redirect decodes");
    let segs = |p: &[u8]| -> Vec<Vec<u8>> {
        p.split(|&c| c == b'/')
            .filter(|s| !s.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    };
    assert_eq!(segs(&decoded), segs(rel), "redirect {loc:?} for {rel:?}");
}

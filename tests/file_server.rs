//! End-to-end tests of `examples/file_server.rs`: the example runs as a child process on each
//! backend and raw `std::net` clients talk HTTP to it.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use trueio::BackendChoice;
use util::TempDir;

const SECRET: &str = "TOP-SECRET-7f3a9c-do-not-serve";
const BIG: usize = 5 * 1024 * 1024;

/// The example binary next to this test's: target/<profile>/deps/file_server-HASH ->
/// target/<profile>/examples/file_server. `cargo test --test file_server` does not build
/// examples (a plain `cargo test` does), so it is brought up to date here, once; except
/// where `TRUEIO_TEST_PREBUILT_EXAMPLES` is set (the kernel matrix's VM, which has the
/// binaries of `cargo test --no-run` but no cargo): there the example must already be there.
fn server_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().unwrap();
            let profile_dir = exe.parent().unwrap().parent().unwrap();
            if std::env::var_os("TRUEIO_TEST_PREBUILT_EXAMPLES").is_some() {
                let bin = profile_dir.join("examples").join("file_server");
                assert!(
                    bin.exists(),
                    "TRUEIO_TEST_PREBUILT_EXAMPLES is set but {} is missing",
                    bin.display()
                );
                return bin;
            }
            let release = profile_dir.file_name().is_some_and(|n| n == "release");
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "--quiet", "--example", "file_server"])
                .current_dir(env!("CARGO_MANIFEST_DIR"));
            if release {
                cmd.arg("--release");
            }
            let run = util::run_child_within(&mut cmd, Duration::from_secs(600), "cargo build");
            assert!(
                run.status.success(),
                "cargo build --example file_server: {}",
                run.stderr
            );
            let bin = profile_dir.join("examples").join("file_server");
            assert!(bin.exists(), "{} not built", bin.display());
            bin
        })
        .clone()
}

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// The files every test serves, in `<tmp>/root`, with a secret next to (not in) the root.
struct Fixture {
    dir: TempDir,
    big: Vec<u8>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = TempDir::new("file-server");
        let root = dir.path("root");
        std::fs::create_dir_all(root.join("list")).unwrap();
        std::fs::create_dir_all(root.join("withindex")).unwrap();
        std::fs::write(dir.path("secret"), SECRET).unwrap();
        let big = util::pattern(BIG, 7);
        std::fs::write(root.join("big.bin"), &big).unwrap();
        std::fs::write(root.join("small.txt"), "hello, world\n").unwrap();
        std::fs::write(root.join("other.txt"), "the other file\n").unwrap();
        std::fs::write(root.join("list").join("a&b<c>.txt"), "x").unwrap();
        std::fs::write(root.join("withindex").join("index.html"), "<p>index</p>").unwrap();
        use std::os::unix::fs::symlink as link;
        link("../secret", root.join("rel_out")).unwrap();
        link(dir.path("secret"), root.join("abs_out")).unwrap();
        link("/etc/passwd", root.join("passwd")).unwrap();
        Fixture { dir, big }
    }

    fn root(&self) -> PathBuf {
        self.dir.path("root")
    }
}

/// The server child process, killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
    _fixture_out: TempDir,
}

impl Server {
    /// Starts the server on `backend` serving `root`; `None` (skipped) when that backend
    /// cannot run here.
    fn start(backend: &str, root: &Path) -> Option<Server> {
        Server::start_with(backend, root, &[])
    }

    /// As [`Server::start`], with more arguments.
    fn start_with(backend: &str, root: &Path, extra: &[&str]) -> Option<Server> {
        let choice = BackendChoice::parse(backend).unwrap();
        util::builder(choice)?;
        let out = TempDir::new("file-server-out");
        let addr = free_port();
        let child = Command::new(server_binary())
            .arg("--root")
            .arg(root)
            .args(["--addr", &addr.to_string(), "--threads", "1"])
            .args(["--backend", backend])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(out.path("stdout")).unwrap())
            .stderr(std::fs::File::create(out.path("stderr")).unwrap())
            .spawn()
            .unwrap();
        let mut server = Server {
            child,
            addr,
            _fixture_out: out,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect(addr).is_ok() {
                break;
            }
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!(
                    "server exited ({status}): {}",
                    std::fs::read_to_string(server._fixture_out.path("stderr")).unwrap()
                );
            }
            assert!(
                Instant::now() < deadline,
                "server did not accept within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // The server listens before it prints its banner: a connect can succeed while the
        // banner is still to come (seen under qemu's TCG, .ci/kernel-matrix.sh).
        let stdout = loop {
            let stdout = std::fs::read_to_string(server._fixture_out.path("stdout")).unwrap();
            if stdout.contains("file_server serving") {
                break stdout;
            }
            assert!(
                Instant::now() < deadline,
                "server accepted but printed no banner within 10 s: {stdout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let name = if backend == "uring" {
            "io_uring"
        } else {
            backend
        };
        assert!(stdout.contains(&format!("backend {name}")), "{stdout}");
        Some(server)
    }

    /// What the server printed so far.
    fn stdout(&self) -> String {
        std::fs::read_to_string(self._fixture_out.path("stdout")).unwrap()
    }

    fn client(&self) -> Client {
        Client::connect(self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A raw HTTP client on one connection.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).unwrap();
    }

    fn get(&mut self, path: &str, extra: &str) -> Response {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").as_bytes());
        self.response(false).expect("a response")
    }

    /// More bytes; false at EOF (or a reset).
    fn fill(&mut self) -> bool {
        let mut tmp = [0u8; 64 * 1024];
        match self.stream.read(&mut tmp) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => false,
            Err(e) => panic!("read: {e}"),
        }
    }

    /// The next response; `None` when the connection ends first. `head`: no body follows.
    fn response(&mut self, head: bool) -> Option<Response> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(n) = resp.parse(&self.buf).expect("valid response") {
                let status = resp.code.unwrap();
                let headers: Vec<(String, String)> = resp
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8(h.value.to_vec()).unwrap(),
                        )
                    })
                    .collect();
                self.buf.drain(..n);
                let mut r = Response {
                    status,
                    headers,
                    body: Vec::new(),
                };
                let len: usize = r.header("content-length").map_or(0, |v| v.parse().unwrap());
                if !head && status != 304 {
                    while self.buf.len() < len {
                        assert!(self.fill(), "connection closed inside a body");
                    }
                    r.body = self.buf.drain(..len).collect();
                }
                return Some(r);
            }
            if !self.fill() {
                assert!(self.buf.is_empty(), "partial response: {:?}", self.buf);
                return None;
            }
        }
    }

    /// True when the server closes the connection (EOF) with nothing more to read.
    fn closed(&mut self) -> bool {
        !self.fill() && self.buf.is_empty()
    }
}

/// One test per backend for each scenario.
macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        mod uring {
            $(#[test] fn $name() { super::$name("uring") })*
        }
        mod epoll {
            $(#[test] fn $name() { super::$name("epoll") })*
        }
    };
}

scenarios!(
    big_file,
    many_clients,
    head,
    ranges,
    conditional,
    keep_alive_and_versions,
    pipelining,
    traversal,
    malformed,
    directories,
    curl_download,
    header_timeout,
    graceful_shutdown,
    access_log,
    max_conns,
    redirects_and_forms,
    idle_timeout,
    send_timeout,
    idle_connections,
    chromium_listing,
);

fn big_file(backend: &str) {
    let f = Fixture::new();
    let Some(s) = Server::start(backend, &f.root()) else {
        return;
    };
    let r = s.client().get("/big.bin", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some(BIG.to_string().as_str()));
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert!(r.header("etag").is_some() && r.header("last-modified").is_some());
    assert!(r.header("date").unwrap().ends_with(" GMT"));
    assert!(r.body == f.big, "5 MiB body differs");
}

fn many_clients(backend: &str) {
    let f = Fixture::new();
    // Two threads, two SO_REUSEPORT listeners: connections spread over both. 16 clients
    // fetch 160 MiB in all (fewer under TRUEIO_TEST_SCALE: the kernel matrix's TCG).
    let Some(s) = Server::start_with(backend, &f.root(), &["--threads", "2"]) else {
        return;
    };
    std::thread::scope(|scope| {
        for _ in 0..util::scaled(16) {
            scope.spawn(|| {
                let mut c = s.client();
                for _ in 0..2 {
                    let r = c.get("/big.bin", "");
                    assert_eq!(r.status, 200);
                    assert!(r.body == f.big, "5 MiB body differs");
                }
            });
        }
    });
}

fn head(backend: &str) {
    let f = Fixture::new();
    let Some(s) = Server::start(backend, &f.root()) else {
        return;
    };
    let mut c = s.client();
    c.send(b"HEAD /big.bin HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.response(true).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some(BIG.to_string().as_str()));
    // No body came: the next response on the connection starts right away.
    let r = c.get("/small.txt", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello, world\n");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
}

fn ranges(backend: &str) {
    let f = Fixture::new();
    let Some(s) = Server::start(backend, &f.root()) else {
        return;
    };
    let mut c = s.client();
    let r = c.get("/big.bin", "Range: bytes=10-19\r\n");
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &f.big[10..20]);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 10-19/{BIG}").as_str())
    );
    let r = c.get("/big.bin", "Range: bytes=-5\r\n");
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &f.big[BIG - 5..]);
    let r = c.get("/big.bin", "Range: bytes=1000000-\r\n");
    assert_eq!(r.status, 206);
    assert!(r.body == f.big[1_000_000..]);
    let r = c.get("/big.bin", &format!("Range: bytes={BIG}-\r\n"));
    assert_eq!(r.status, 416);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes */{BIG}").as_str())
    );
    let r = c.get("/small.txt", "Range: bytes=0-1,4-5\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello, world\n");
}

fn conditional(backend: &str) {
    let f = Fixture::new();
    let Some(s) = Server::start(backend, &f.root()) else {
        return;
    };
    let mut c = s.client();
    let r = c.get("/small.txt", "");
    let etag = r.header("etag").unwrap().to_string();
    let lm = r.header("last-modified").unwrap().to_string();
    let r = c.get("/small.txt", &format!("If-None-Match: {etag}\r\n"));
    assert_eq!(r.status, 304);
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    let r = c.get("/small.txt", "If-None-Match: \"nope\", *\r\n");
    assert_eq!(r.status, 304);
    let r = c.get("/small.txt", "If-None-Match: \"nope\"\r\n");
    assert_eq!(r.status, 200);
    let r = c.get("/small.txt", &format!("If-Modified-Since: {lm}\r\n"));
    assert_eq!(r.status, 304);
    let r = c.get(
        "/small.txt",
        "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello, world\n");
    // 29 bytes with a character across a byte index the date parser slices at: the parser
    // panicked and the connection died without a response (found by fuzz/). No date: 200.
    let r = c.get(
        "/small.txt",
        "If-Modified-Since: Su\u{e9} 06 Nov 1994 08:49:37 GMT\r\n",
    );
    assert_eq!(r.status, 200);
    // If-None-Match wins over If-Modified-Since.
    let r = c.get(
        "/small.txt",
        &format!("If-None-Match: \"nope\"\r\nIf-Modified-Since: {lm}\r\n"),
    );
    assert_eq!(r.status, 200);
}

fn keep_alive_and_versions(backend: &str) {
    let f = Fixture::new();
    let Some(s) = Server::start(backend, &f.root()) else {
        return;
    };
    let mut c = s.client();
    assert_eq!(c.get("/small.txt", "").status, 200);
    assert_eq!(c.get("/other.txt", "").body, b"the other file\n");
    // Connection: close is honoured.
    let r = c.get("/small.txt", "Connection: close\r\n");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed());
    // HTTP/1.0 closes by default...
    let mut c = s.client();
    c.send(b"GET /small.txt HTTP/1.0\r\n\r\n");
    assert_eq!(c.response(false).unwrap().status, 200);
    assert!(c.closed());
    // ...and stays open with keep-alive.
    let mut c = s.client();
    for _ in 0..2 {
        c.send(b"GET /small.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let r = c.response(false).unwrap();
        assert_eq!(r.header("connection"), Some("keep-alive"));
    }
}

fn pipelining(backend: &str) {
    let f = Fixture::new();
    let Some(s) = Server::start(backend, &f.root()) else {
        return;
    };
    let mut c = s.client();
    c.send(
        b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\nGET /other.txt HTTP/1.1\r\nHost: x\r\n\r\n\
          HEAD /big.bin HTTP/1.1\r\n\r\nGET /missing HTTP/1.1\r\n\r\n",
    );
    assert_eq!(c.response(false).unwrap().body, b"hello, world\n");
    assert_eq!(c.response(false).unwrap().body, b"the other file\n");
    assert_eq!(c.response(true).unwrap().status, 200);
    assert_eq!(c.response(false).unwrap().status, 404);
    assert_eq!(c.get("/small.txt", "").status, 200);
}

fn traversal(backend: &str) {
    let f = Fixture::new();
    let Some(s) = Server::start(backend, &f.root()) else {
        return;
    };
    let attempts = [
        "/../secret",
        "/%2e%2e/secret",
        "/%2e%2e%2fsecret",
        "/a/..%2f..%2fsecret",
        "/list/..%2f..%2fsecret",
        "/\\..\\secret",
        "/%5c..%5csecret",
        "//../secret",
        "/rel_out",
        "/abs_out",
        "/passwd",
        "/proc/self/root/etc/passwd",
        &format!("{}", f.dir.path("secret").display()),
        "secret",
        "http://x/../secret",
    ];
    for path in attempts {
        let mut c = s.client();
        c.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        let r = c.response(false).unwrap();
        assert!((400..500).contains(&r.status), "{path}: {}", r.status);
        let body = String::from_utf8_lossy(&r.body);
        assert!(!body.contains(SECRET), "{path} leaked the secret");
        assert!(!body.contains("root:"), "{path} leaked /etc/passwd");
    }
    // Still serving.
    assert_eq!(s.client().get("/small.txt", "").status, 200);
}

fn malformed(backend: &str) {
    let f = Fixture::new();
    let Some(s) = Server::start(backend, &f.root()) else {
        return;
    };
    let many_headers: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    let corpus: Vec<(&str, Vec<u8>, u16)> = vec![
        ("garbage", b"\x00\x01\x02\xff garbage\r\n\r\n".to_vec(), 400),
        ("missing version", b"GET /small.txt\r\n\r\n".to_vec(), 400),
        (
            "huge header",
            format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(20 * 1024)).into_bytes(),
            431,
        ),
        (
            "100 headers",
            format!("GET / HTTP/1.1\r\n{many_headers}\r\n").into_bytes(),
            431,
        ),
        (
            "long uri",
            format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(10 * 1024)).into_bytes(),
            414,
        ),
        (
            "unknown method",
            b"BREW /pot HTTP/1.1\r\n\r\n".to_vec(),
            400,
        ),
        (
            "post",
            b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n".to_vec(),
            405,
        ),
        (
            "nul in path",
            b"GET /small%00.txt HTTP/1.1\r\n\r\n".to_vec(),
            400,
        ),
        ("bad escape", b"GET /%zz HTTP/1.1\r\n\r\n".to_vec(), 400),
        (
            "body on get",
            b"GET /small.txt HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
            400,
        ),
        (
            "chunked get",
            b"GET /small.txt HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            400,
        ),
        ("http/2.0", b"GET / HTTP/2.0\r\n\r\n".to_vec(), 400),
    ];
    for (what, raw, status) in corpus {
        let mut c = s.client();
        c.send(&raw);
        let r = c
            .response(false)
            .unwrap_or_else(|| panic!("{what}: no response"));
        assert_eq!(r.status, status, "{what}");
        if status == 405 {
            assert_eq!(r.header("allow"), Some("GET, HEAD"));
        }
        assert!(c.closed(), "{what}: connection left open");
        assert_eq!(s.client().get("/small.txt", "").status, 200, "after {what}");
    }
    // A request that never finishes is dropped (header timeout is 10 s; don't wait for it,
    // but the server must keep serving others meanwhile).
    let mut slow = s.client();
    slow.send(b"GET /small.txt HTTP/1.1\r\n");
    assert_eq!(s.client().get("/small.txt", "").status, 200);
}

fn directories(backend: &str) {
    let f = Fixture::new();
    let Some(s) = Server::start(backend, &f.root()) else {
        return;
    };
    let mut c = s.client();
    let r = c.get("/list", "");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/list/"));
    let r = c.get("/list/", "");
    assert_eq!(r.status, 200);
    let body = String::from_utf8(r.body).unwrap();
    assert!(body.contains(">a&amp;b&lt;c&gt;.txt<"), "{body}");
    assert!(body.contains("href=\"a%26b%3Cc%3E.txt\""), "{body}");
    assert!(!body.contains("a&b<c>"), "{body}");
    let r = c.get("/a%26b%3Cc%3E.txt", "");
    assert_eq!(r.status, 404);
    let r = c.get("/list/a%26b%3Cc%3E.txt", "");
    assert_eq!(r.body, b"x");
    let r = c.get("/withindex/", "");
    assert_eq!(r.body, b"<p>index</p>");
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let r = c.get("/", "");
    assert_eq!(r.status, 200);
    assert!(String::from_utf8(r.body).unwrap().contains("big.bin"));
}

fn curl_download(backend: &str) {
    let Ok(out) = Command::new("curl").arg("--version").output() else {
        util::skip("curl is not installed");
        return;
    };
    assert!(out.status.success());
    let f = Fixture::new();
    let Some(s) = Server::start(backend, &f.root()) else {
        return;
    };
    let dest = f.dir.path("downloaded");
    let run = util::run_child_within(
        Command::new("curl")
            .args(["-sS", "--fail", "-o"])
            .arg(&dest)
            .arg(format!("http://{}/big.bin", s.addr)),
        Duration::from_secs(30),
        "curl",
    );
    assert!(run.status.success(), "curl: {}", run.stderr);
    assert!(
        std::fs::read(&dest).unwrap() == f.big,
        "curl download differs"
    );
}

fn header_timeout(backend: &str) {
    let f = Fixture::new();
    let Some(s) = Server::start_with(backend, &f.root(), &["--header-timeout", "2"]) else {
        return;
    };
    // A request begun and never finished is dropped after the header timeout (10 s by default, 2 s here).
    let mut slow = s.client();
    let start = Instant::now();
    slow.send(b"GET /small.txt HTTP/1.1\r\nHost: x\r\n");
    assert!(slow.closed());
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(6),
        "closed after {took:?}"
    );
}

fn graceful_shutdown(backend: &str) {
    let f = Fixture::new();
    let Some(mut s) = Server::start(backend, &f.root()) else {
        return;
    };
    // A response under way when SIGTERM comes still finishes; then the server exits 0.
    let mut c = s.client();
    c.send(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n");
    while !c.buf.windows(4).any(|w| w == b"\r\n\r\n") {
        assert!(c.fill());
    }
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: signalling our own child by its pid.
    assert_eq!(unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) }, 0);
    std::thread::sleep(Duration::from_millis(200));
    let r = c.response(false).unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body == f.big, "body cut short by the shutdown");
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "server still running after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}

fn access_log(backend: &str) {
    let f = Fixture::new();
    let Some(s) = Server::start_with(backend, &f.root(), &["--log"]) else {
        return;
    };
    let mut c = s.client();
    assert_eq!(c.get("/small.txt", "").status, 200);
    assert_eq!(c.get("/nothing-here", "").status, 404);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = s.stdout();
        if out.contains("\"GET /small.txt HTTP/1.1\" 200 13")
            && out.contains("\"GET /nothing-here HTTP/1.1\" 404")
        {
            break;
        }
        assert!(Instant::now() < deadline, "access log: {out}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn max_conns(backend: &str) {
    let f = Fixture::new();
    let Some(s) = Server::start_with(backend, &f.root(), &["--max-conns", "2"]) else {
        return;
    };
    // A served connection (the start-up probe may still hold a slot for a moment).
    let served = || {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut c = s.client();
            c.send(b"GET /small.txt HTTP/1.1\r\n\r\n");
            if let Some(r) = c.response(false) {
                assert_eq!(r.status, 200);
                return c;
            }
            assert!(Instant::now() < deadline, "no connection served");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let a = served();
    let mut b = served();
    // A third connection is closed at once, unanswered.
    let mut c = s.client();
    c.send(b"GET /small.txt HTTP/1.1\r\n\r\n");
    assert!(c.response(false).is_none());
    // Once one closes, connections are served again.
    drop(a);
    drop(served());
    assert_eq!(b.get("/other.txt", "").status, 200);
}

fn redirects_and_forms(backend: &str) {
    let f = Fixture::new();
    let Some(s) = Server::start(backend, &f.root()) else {
        return;
    };
    let mut c = s.client();
    // The redirect is built from the decoded path: never a protocol-relative `//host`.
    let r = c.get("//list?x=1", "");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/list/"));
    // Absolute form, a query string, HEAD of a listing.
    let r = c.get("http://example.com/small.txt?v=2", "");
    assert_eq!(r.body, b"hello, world\n");
    c.send(b"HEAD /list/ HTTP/1.1\r\n\r\n");
    let r = c.response(true).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(c.get("/small.txt", "").body, b"hello, world\n");
}

fn idle_timeout(backend: &str) {
    let f = Fixture::new();
    let Some(s) = Server::start_with(backend, &f.root(), &["--idle-timeout", "3"]) else {
        return;
    };
    // A keep-alive connection with no new request is closed after the idle timeout (30 s by default, 3 s here).
    let mut c = s.client();
    c.stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    assert_eq!(c.get("/small.txt", "").status, 200);
    let start = Instant::now();
    assert!(c.closed());
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(8),
        "closed after {took:?}"
    );
}

fn send_timeout(backend: &str) {
    let f = Fixture::new();
    let Some(s) = Server::start_with(backend, &f.root(), &["--send-timeout", "3"]) else {
        return;
    };
    // A client that stops reading: once the socket buffers are full, a send waits for the send timeout (30 s by default, 3 s here), then
    // the server gives up on the connection. 50 MiB asked, far more than the buffers hold.
    let mut c = s.client();
    let requests = "GET /big.bin HTTP/1.1\r\n\r\n".repeat(10);
    c.send(requests.as_bytes());
    std::thread::sleep(Duration::from_secs(8));
    c.stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut total = 0usize;
    let mut tmp = vec![0u8; 1 << 20];
    loop {
        match c.stream.read(&mut tmp) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the server kept the connection open ({total} bytes read): {e}"),
        }
    }
    assert!(total < 10 * BIG, "all {total} bytes arrived");
}

/// Raises this process's soft RLIMIT_NOFILE to its hard limit; returns the new soft limit.
fn raise_nofile() -> u64 {
    // SAFETY: getrlimit/setrlimit read and write the rlimit struct on this frame.
    unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
        rl.rlim_cur = rl.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
        rl.rlim_cur
    }
}

/// 2 000 idle connections (each sent half a request line, or nothing) do not stop a normal
/// request from being served.
fn idle_connections(backend: &str) {
    const IDLE: usize = 2000;
    if raise_nofile() < IDLE as u64 + 100 {
        util::skip("RLIMIT_NOFILE's hard limit is below 2 100 descriptors");
        return;
    }
    let f = Fixture::new();
    let Some(s) = Server::start(backend, &f.root()) else {
        return;
    };
    let mut idle = Vec::with_capacity(IDLE);
    for i in 0..IDLE {
        let mut c = TcpStream::connect(s.addr)
            .unwrap_or_else(|e| panic!("idle connection {i} refused: {e}"));
        if i % 2 == 0 {
            // Half of them start a request and stall (slowloris-like).
            c.write_all(b"GET /small.txt HT").unwrap();
        }
        idle.push(c);
    }
    // A normal client is still served, promptly, many times.
    for _ in 0..5 {
        let mut c = s.client();
        c.stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let r = c.get("/small.txt", "");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"hello, world\n");
    }
    // The idle connections are still open (not dropped to make room): one of them can
    // finish its request.
    let c = &mut idle[0];
    c.write_all(b"TP/1.1\r\nConnection: close\r\n\r\n").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut resp = Vec::new();
    c.read_to_end(&mut resp).unwrap();
    let text = String::from_utf8_lossy(&resp);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("hello, world\n"), "{text}");
}

/// A directory listing loads in headless Chromium and shows the files, with names escaped.
fn chromium_listing(backend: &str) {
    let Some(chromium) = ["chromium", "chromium-browser"].into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }) else {
        util::skip("Chromium is not installed (Debian package chromium; .ci/run installs it)");
        return;
    };
    let f = Fixture::new();
    let Some(s) = Server::start(backend, &f.root()) else {
        return;
    };
    let profile = TempDir::new("chromium-profile");
    // The page as Chromium parsed it (its DOM, serialised).
    let dom_of = |path: &str| {
        let run = util::run_child_within(
            Command::new(chromium)
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--dump-dom",
                ])
                .arg(format!("--user-data-dir={}", profile.0.display()))
                .arg(format!("http://{}{path}", s.addr)),
            Duration::from_secs(60),
            "chromium",
        );
        assert!(run.status.success(), "chromium failed: {}", run.stderr);
        run.stdout
    };
    let dom = dom_of("/list/");
    // The parsed page has the file as a link, its name shown as text (escaped in the DOM
    // serialisation), and the browser did not see raw markup from the name.
    assert!(
        dom.contains("a&amp;b&lt;c&gt;.txt"),
        "the listing's DOM lacks the file: {dom}"
    );
    assert!(
        dom.contains("href=\"a%26b%3Cc%3E.txt\""),
        "no link to the file: {dom}"
    );
    assert!(!dom.contains("<c>"), "a name was parsed as markup: {dom}");
    let root = dom_of("/");
    for name in ["big.bin", "small.txt", "list/", "withindex/"] {
        assert!(root.contains(name), "the root listing lacks {name}: {root}");
    }
}

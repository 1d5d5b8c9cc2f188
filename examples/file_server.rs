//! A static file server over HTTP/1.1: one runtime, engine and `SO_REUSEPORT` listener per
//! thread, one task per connection. Every file is opened beneath the root directory with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`, so the kernel keeps requests inside it.
//!
//! `cargo run --release --example file_server -- --root DIR --addr 127.0.0.1:8080
//! [--threads N] [--backend auto|uring|epoll] [--max-conns N] [--log]`

#[path = "file_server/http.rs"]
mod http;
#[path = "file_server/request.rs"]
mod request;

use std::cell::Cell;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use trueio::buf::{AlignedBuf, IoBuf};
use trueio::fs::{File, Metadata};
use trueio::net::{ListenOptions, TcpListener, TcpStream};
use trueio::op::OpenHow;
use trueio::{rt, time, BackendChoice, Engine};

use http::Range;
use request::{beneath, parse_request, Parsed, Request, Route, MAX_HEAD};

/// How long a connection may take to send a whole request, stay idle between requests, and
/// leave a send unread.
#[derive(Clone, Copy)]
struct Timeouts {
    header: Duration,
    idle: Duration,
    send: Duration,
    /// Bodies from this size on go out with `TcpStream::send_file` (sendfile from the page
    /// cache); smaller ones are read into a buffer and sent. `None`: never.
    sendfile_min: Option<u64>,
}
/// File bytes per read and send.
const CHUNK: usize = 256 * 1024;
/// Bodies up to this size go out in the same send as the headers.
const SMALL_BODY: u64 = 16 * 1024;
/// `sendfile` pieces, each bounded by the send timeout.
const SENDFILE_PIECE: u64 = 4 << 20;
/// Bodies from this size on go out by `sendfile` when cached (see `--sendfile-min`).
const DEFAULT_SENDFILE_MIN: u64 = 64 * 1024;

struct Args {
    root: PathBuf,
    addr: SocketAddr,
    threads: usize,
    backend: BackendChoice,
    max_conns: usize,
    log: bool,
    timeouts: Timeouts,
}

fn usage() -> String {
    "usage: file_server [--root DIR] [--addr HOST:PORT] [--threads N] \
     [--backend auto|uring|epoll] [--max-conns N] [--log] \
     [--header-timeout SECS (10)] [--idle-timeout SECS (30)] [--send-timeout SECS (30)] \
     [--sendfile-min BYTES|off (65536)]"
        .into()
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        root: ".".into(),
        addr: ([127, 0, 0, 1], 8080).into(),
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        backend: BackendChoice::from_env().map_err(|e| e.to_string())?,
        max_conns: 10_000,
        log: false,
        timeouts: Timeouts {
            header: Duration::from_secs(10),
            idle: Duration::from_secs(30),
            send: Duration::from_secs(30),
            sendfile_min: Some(DEFAULT_SENDFILE_MIN),
        },
    };
    let secs = |name: &str, v: String| -> Result<Duration, String> {
        v.parse::<f64>()
            .ok()
            .filter(|s| *s > 0.0 && *s < 1e9)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| format!("{name} {v}: expected a positive number of seconds"))
    };
    let positive = |name: &str, v: String| -> Result<usize, String> {
        v.parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{name} {v}: expected a positive number"))
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| format!("{name} needs a value\n{}", usage()))
        };
        match a.as_str() {
            "--root" => args.root = value("--root")?.into(),
            "--addr" => {
                let v = value("--addr")?;
                args.addr = v.parse().map_err(|e| format!("--addr {v}: {e}"))?;
            }
            "--threads" => args.threads = positive("--threads", value("--threads")?)?,
            "--max-conns" => args.max_conns = positive("--max-conns", value("--max-conns")?)?,
            "--backend" => {
                args.backend =
                    BackendChoice::parse(&value("--backend")?).map_err(|e| e.to_string())?;
            }
            "--log" => args.log = true,
            "--header-timeout" => {
                args.timeouts.header = secs("--header-timeout", value("--header-timeout")?)?;
            }
            "--idle-timeout" => {
                args.timeouts.idle = secs("--idle-timeout", value("--idle-timeout")?)?;
            }
            "--send-timeout" => {
                args.timeouts.send = secs("--send-timeout", value("--send-timeout")?)?;
            }
            "--sendfile-min" => {
                let v = value("--sendfile-min")?;
                args.timeouts.sendfile_min = match v.as_str() {
                    "off" => None,
                    n => Some(n.parse().map_err(|_| {
                        format!("--sendfile-min {n}: a byte count or off\n{}", usage())
                    })?),
                };
            }
            "-h" | "--help" => return Err(usage()),
            other => return Err(format!("unknown argument {other:?}\n{}", usage())),
        }
    }
    Ok(args)
}

/// Raises the soft descriptor limit to the hard one.
fn raise_nofile_limit() {
    // SAFETY: getrlimit/setrlimit read and write a plain struct we own.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Set by SIGINT/SIGTERM: finish the responses under way, take no new requests.
static STOPPING: AtomicBool = AtomicBool::new(false);
/// Requests being answered right now, over all threads.
static BUSY: AtomicUsize = AtomicUsize::new(0);
/// How long a shutdown waits for the responses under way.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Blocks SIGINT and SIGTERM in every thread (call before starting any) and waits for them
/// on a thread of their own: on the first, stop taking requests, let the responses under way
/// finish (at most `SHUTDOWN_GRACE`), then exit.
fn handle_signals() {
    // SAFETY: sigset_t is plain bits, filled by sigemptyset/sigaddset; pthread_sigmask only
    // changes this thread's mask (threads started later inherit it).
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    std::thread::spawn(move || {
        let mut sig = 0;
        // SAFETY: `set` is a valid signal set and `sig` a valid out-parameter.
        unsafe { libc::sigwait(&set, &mut sig) };
        STOPPING.store(true, Ordering::SeqCst);
        eprintln!("file_server: signal {sig}, finishing responses under way");
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        while BUSY.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::process::exit(0);
    });
}

/// One connection counted against `--max-conns`, until dropped (even by a panic).
struct ConnSlot(Rc<Cell<usize>>);

impl ConnSlot {
    fn take(conns: &Rc<Cell<usize>>) -> ConnSlot {
        conns.set(conns.get() + 1);
        ConnSlot(conns.clone())
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// What every connection of a thread shares.
struct Shared {
    root: File,
    log: bool,
    timeouts: Timeouts,
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    raise_nofile_limit();
    handle_signals();
    let builder = Engine::builder().backend(args.backend);
    let (addr, root, threads, max_conns, log, timeouts) = (
        args.addr,
        args.root,
        args.threads,
        args.max_conns,
        args.log,
        args.timeouts,
    );
    let results = rt::run_per_core(threads, builder, move |i| {
        let root = root.clone();
        async move {
            // A thread that cannot start ends the whole server (the others would run on).
            let fatal = |e: io::Error| -> ! {
                eprintln!("file_server thread {i}: {e}");
                std::process::exit(1)
            };
            let how = OpenHow::new(libc::O_DIRECTORY | libc::O_RDONLY);
            let dir = File::open_with(None, &root, how)
                .await
                .unwrap_or_else(|e| fatal(e));
            let options = ListenOptions {
                reuse_port: true,
                ..Default::default()
            };
            let listener = TcpListener::bind_with(addr, options)
                .unwrap_or_else(|e| fatal(io::Error::new(e.kind(), format!("bind {addr}: {e}"))));
            if i == 0 {
                println!(
                    "file_server serving {} on http://{} with {} thread(s), backend {}",
                    root.display(),
                    listener.local_addr(),
                    threads,
                    rt::engine().backend()
                );
            }
            let shared = Rc::new(Shared {
                root: dir,
                log,
                timeouts,
            });
            let conns = Rc::new(Cell::new(0usize));
            let mut incoming = listener.incoming();
            loop {
                match incoming.next().await {
                    Ok(stream) => {
                        if conns.get() >= max_conns || STOPPING.load(Ordering::Relaxed) {
                            drop(stream); // over the limit: close at once
                            continue;
                        }
                        let slot = ConnSlot::take(&conns);
                        let shared = shared.clone();
                        drop(rt::spawn(async move {
                            serve(stream, &shared).await;
                            drop(slot);
                        }));
                    }
                    Err(e)
                        if e.raw_os_error() == Some(libc::EMFILE)
                            || e.raw_os_error() == Some(libc::ENFILE) =>
                    {
                        // Out of descriptors: back off instead of spinning.
                        time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => {
                        eprintln!("accept: {e}");
                        time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            #[allow(unreachable_code)]
            Ok::<(), io::Error>(())
        }
    });
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) | Err(e) => {
                eprintln!("file_server thread {i}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

/// The connection, its buffers and the peer (for the log).
struct Conn<'a> {
    stream: TcpStream,
    shared: &'a Shared,
    peer: String,
    /// Received bytes not yet parsed.
    inbuf: Vec<u8>,
    /// The buffer reads land in.
    rbuf: Vec<u8>,
    /// Response headers (and small bodies).
    out: Vec<u8>,
    /// File chunks.
    /// Page-aligned: copies between buffers at different page offsets hit 4K aliasing here.
    chunk: Option<AlignedBuf>,
}

async fn serve(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_nodelay(true);
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "-".to_string(), |a| a.to_string());
    let mut c = Conn {
        stream,
        shared,
        peer,
        inbuf: Vec::with_capacity(MAX_HEAD),
        rbuf: Vec::with_capacity(MAX_HEAD),
        out: Vec::with_capacity(1024),
        chunk: None,
    };
    loop {
        let req = match c.next_request().await {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(status) => {
                let _ = c.simple(status, None, false, &[]).await;
                c.linger_close().await;
                return;
            }
        };
        BUSY.fetch_add(1, Ordering::SeqCst);
        let r = c.respond(&req).await;
        BUSY.fetch_sub(1, Ordering::SeqCst);
        match r {
            Ok(true) if STOPPING.load(Ordering::Relaxed) => return,
            Ok(true) => {}
            Ok(false) => {
                c.linger_close().await;
                return;
            }
            Err(_) => return,
        }
    }
}

impl Conn<'_> {
    /// The next request: `Ok(None)` when the peer closed or went idle, `Err(status)` for a
    /// request to refuse (then close).
    async fn next_request(&mut self) -> Result<Option<Request>, u16> {
        let mut header_deadline = None;
        loop {
            if !self.inbuf.is_empty() {
                match parse_request(&self.inbuf) {
                    Parsed::Request(r, n) => {
                        self.inbuf.drain(..n);
                        return Ok(Some(r));
                    }
                    Parsed::Error(s) => return Err(s),
                    Parsed::Partial => {}
                }
            }
            // Idle between requests; once a request has begun, it must arrive whole in time.
            let limit = if self.inbuf.is_empty() {
                self.shared.timeouts.idle
            } else {
                let d = *header_deadline
                    .get_or_insert_with(|| Instant::now() + self.shared.timeouts.header);
                d.saturating_duration_since(Instant::now())
            };
            let mut rbuf = std::mem::take(&mut self.rbuf);
            rbuf.clear();
            let (r, rbuf) = match time::timeout(limit, self.stream.read(rbuf)).await {
                Ok(v) => v,
                Err(_) => return Ok(None), // timed out: just close
            };
            match r {
                Ok(0) | Err(_) => return Ok(None),
                Ok(n) => {
                    if header_deadline.is_none() {
                        header_deadline = Some(Instant::now() + self.shared.timeouts.header);
                    }
                    self.inbuf.extend_from_slice(&rbuf[..n]);
                }
            }
            self.rbuf = rbuf;
        }
    }

    /// Sends `self.out`, within the send timeout.
    async fn send_out(&mut self) -> io::Result<()> {
        let out = std::mem::take(&mut self.out);
        match time::timeout(self.shared.timeouts.send, self.stream.write_all(out)).await {
            Ok((r, mut out)) => {
                out.clear();
                self.out = out;
                r
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Starts a response in `self.out`: the status line and the common headers.
    fn head(&mut self, status: u16, keep_alive: bool, version: u8) {
        self.out.clear();
        let _ = write!(
            self.out_str(),
            "HTTP/1.1 {status} {}\r\nServer: trueio-file-server\r\nDate: ",
            http::reason(status),
        );
        DATE_NOW.with(|d| d.write(&mut self.out, SystemTime::now()));
        self.out.extend_from_slice(b"\r\n");
        if !keep_alive {
            self.out.extend_from_slice(b"Connection: close\r\n");
        } else if version == 0 {
            self.out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
    }

    fn out_str(&mut self) -> OutWriter<'_> {
        OutWriter(&mut self.out)
    }

    /// A response with a short text body (errors, redirects).
    async fn simple(
        &mut self,
        status: u16,
        req: Option<&Request>,
        keep_alive: bool,
        extra: &[(&str, &str)],
    ) -> io::Result<()> {
        let version = req.map_or(1, |r| r.version);
        self.head(status, keep_alive, version);
        let body = format!("{status} {}\n", http::reason(status));
        let _ = write!(
            self.out_str(),
            "Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in extra {
            let _ = write!(self.out_str(), "{k}: {v}\r\n");
        }
        self.out.extend_from_slice(b"\r\n");
        let head_only = req.is_some_and(|r| r.method == "HEAD") || status == 304;
        if !head_only {
            self.out.extend_from_slice(body.as_bytes());
        }
        self.log(req, status, if head_only { 0 } else { body.len() as u64 });
        self.send_out().await
    }

    fn log(&self, req: Option<&Request>, status: u16, bytes: u64) {
        if !self.shared.log {
            return;
        }
        let line = match req {
            Some(r) => format!(
                "{} {} HTTP/1.{}",
                r.method,
                r.target.escape_debug(),
                r.version
            ),
            None => "-".into(),
        };
        println!("{} \"{line}\" {status} {bytes}", self.peer);
    }

    /// Sends a response; `Ok(false)` when the connection is to close afterwards.
    async fn respond(&mut self, req: &Request) -> io::Result<bool> {
        let keep_alive = req.keep_alive();
        let (path, rel) = match request::route(req) {
            Route::Open { path, rel } => (path, rel),
            Route::Refuse(405) => {
                let allow = [("Allow", "GET, HEAD")];
                self.simple(405, Some(req), false, &allow).await?;
                return Ok(false);
            }
            Route::Refuse(status) => {
                self.simple(status, Some(req), false, &[]).await?;
                return Ok(false);
            }
        };
        let rel = &rel[..];
        let file = match open_beneath(&self.shared.root, rel).await {
            Ok(f) => f,
            Err(status) => {
                self.simple(status, Some(req), keep_alive, &[]).await?;
                return Ok(keep_alive);
            }
        };
        let (file, meta) = file;
        if meta.is_dir() {
            if !path.ends_with(b"/") {
                let location = request::redirect_location(rel);
                let extra = [("Location", location.as_str())];
                self.simple(301, Some(req), keep_alive, &extra).await?;
                return Ok(keep_alive);
            }
            let index = File::open_with(Some(&file), "index.html", beneath()).await;
            if let Ok(index) = index {
                if let Ok(m) = index.metadata().await {
                    if m.is_file() {
                        clear_nonblock(&index);
                        self.send_file(req, &index, &m, b"index.html", keep_alive)
                            .await?;
                        return Ok(keep_alive);
                    }
                }
            }
            self.send_listing(req, &file, &path, keep_alive).await?;
            return Ok(keep_alive);
        }
        let name = request::file_name(rel);
        self.send_file(req, &file, &meta, name, keep_alive).await?;
        Ok(keep_alive)
    }

    async fn send_file(
        &mut self,
        req: &Request,
        file: &File,
        meta: &Metadata,
        name: &[u8],
        keep_alive: bool,
    ) -> io::Result<()> {
        let len = meta.len();
        let mtime = meta.modified();
        let since = mtime
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let mut etag = StackText::default();
        // At most 2 + 16 + 1 + 16 + 1 + 8 bytes: always fits.
        let _ = write!(
            etag,
            "\"{len:x}-{:x}-{:x}\"",
            since.as_secs(),
            since.subsec_nanos()
        );
        let etag = etag.as_str();
        let last_modified = LAST_MODIFIED.with(|d| d.get(mtime));

        // Conditionals: If-None-Match wins over If-Modified-Since.
        let not_modified = if let Some(inm) = req.header("if-none-match") {
            inm.split(',')
                .map(str::trim)
                .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
        } else if let Some(ims) = req.header("if-modified-since") {
            http::parse_http_date(ims).is_some_and(|d| since.as_secs() <= http::unix_secs(d))
        } else {
            false
        };
        if not_modified {
            self.head(304, keep_alive, req.version);
            let _ = write!(
                self.out_str(),
                "ETag: {etag}\r\nLast-Modified: {last_modified}\r\n\r\n"
            );
            self.log(Some(req), 304, 0);
            return self.send_out().await;
        }

        let range = match req.header("range") {
            Some(r) => http::parse_range(r, len),
            None => Range::Full,
        };
        let (status, start, count) = match range {
            Range::Full => (200, 0, len),
            Range::Part(a, b) => (206, a, b - a + 1),
            Range::Unsatisfiable => {
                let cr = format!("bytes */{len}");
                let extra = [("Content-Range", cr.as_str())];
                return self.simple(416, Some(req), keep_alive, &extra).await;
            }
        };
        self.head(status, keep_alive, req.version);
        let _ = write!(
            self.out_str(),
            "Content-Type: {}\r\nContent-Length: {count}\r\nLast-Modified: {last_modified}\r\n\
             ETag: {etag}\r\nAccept-Ranges: bytes\r\n",
            http::mime_type(name)
        );
        if status == 206 {
            let _ = write!(
                self.out_str(),
                "Content-Range: bytes {start}-{}/{len}\r\n",
                start + count - 1
            );
        }
        self.out.extend_from_slice(b"\r\n");
        let is_head = req.method == "HEAD";
        self.log(Some(req), status, if is_head { 0 } else { count });
        if is_head || count == 0 {
            return self.send_out().await;
        }
        if count <= SMALL_BODY {
            // One send: headers and body together.
            let mut chunk = self.take_chunk();
            let (mut pos, end) = (start, start + count);
            while pos < end {
                chunk = self.read_chunk(file, chunk, pos, end - pos).await?;
                self.out.extend_from_slice(&chunk);
                pos += chunk.len() as u64;
            }
            self.chunk = Some(chunk);
            return self.send_out().await;
        }
        let mut pos = start;
        let end = start + count;
        if self
            .shared
            .timeouts
            .sendfile_min
            .is_some_and(|m| count >= m)
        {
            // Page cache to socket without a copy through user space; each piece must leave
            // within the send timeout. The headers go with the first piece's segments.
            let out = std::mem::take(&mut self.out);
            let n = (end - pos).min(SENDFILE_PIECE);
            let (sent, mut out) = time::timeout(
                self.shared.timeouts.send,
                self.stream.send_file_with_head(out, file, pos, n),
            )
            .await?;
            out.clear();
            self.out = out;
            pos += sent?;
            while pos < end {
                let n = (end - pos).min(SENDFILE_PIECE);
                let sent = time::timeout(
                    self.shared.timeouts.send,
                    self.stream.send_file(file, pos, n),
                )
                .await??;
                pos += sent;
            }
            return Ok(());
        }
        self.send_out().await?;
        let mut chunk = self.take_chunk();
        while pos < end {
            let want = (end - pos).min(CHUNK as u64);
            chunk = self.read_chunk(file, chunk, pos, want).await?;
            let n = chunk.len();
            let (r, slice) = match time::timeout(
                self.shared.timeouts.send,
                self.stream.write_all(chunk),
            )
            .await
            {
                Ok(v) => v,
                Err(e) => return Err(e.into()),
            };
            r?;
            chunk = slice;
            pos += n as u64;
        }
        self.chunk = Some(chunk);
        Ok(())
    }

    fn take_chunk(&mut self) -> AlignedBuf {
        self.chunk
            .take()
            .unwrap_or_else(|| AlignedBuf::with_capacity(CHUNK))
    }

    /// Reads up to `want` bytes (at most one chunk) at `pos`; a file that shrank is an error.
    async fn read_chunk(
        &self,
        file: &File,
        mut chunk: AlignedBuf,
        pos: u64,
        want: u64,
    ) -> io::Result<AlignedBuf> {
        let want = (want as usize).min(CHUNK);
        chunk.clear();
        let (r, slice) = file.read_at(chunk.slice(..want), pos).await;
        let mut chunk = slice.into_inner();
        let n = r?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while being sent",
            ));
        }
        chunk.set_len(n);
        Ok(chunk)
    }

    async fn send_listing(
        &mut self,
        req: &Request,
        dir: &File,
        path: &[u8],
        keep_alive: bool,
    ) -> io::Result<()> {
        // The directory is already open beneath the root: list it through its descriptor.
        let proc = format!("/proc/self/fd/{}", dir.as_raw_fd());
        let mut names: Vec<(Vec<u8>, bool)> = match std::fs::read_dir(&proc) {
            Ok(rd) => rd
                .filter_map(Result::ok)
                .map(|e| {
                    let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
                    (e.file_name().as_bytes().to_vec(), is_dir)
                })
                .collect(),
            Err(_) => return self.simple(403, Some(req), keep_alive, &[]).await,
        };
        names.sort();
        let title = http::html_escape(&String::from_utf8_lossy(path));
        let mut body = format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title>\
             </head>\n<body><h1>Index of {title}</h1>\n<ul>\n"
        );
        if path != b"/" {
            body.push_str("<li><a href=\"../\">../</a></li>\n");
        }
        for (name, is_dir) in &names {
            let slash = if *is_dir { "/" } else { "" };
            let _ = writeln!(
                body,
                "<li><a href=\"{}{slash}\">{}{slash}</a></li>",
                http::percent_encode(name),
                http::html_escape(&String::from_utf8_lossy(name))
            );
        }
        body.push_str("</ul></body></html>\n");
        self.head(200, keep_alive, req.version);
        let _ = write!(
            self.out_str(),
            "Content-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let is_head = req.method == "HEAD";
        if !is_head {
            self.out.extend_from_slice(body.as_bytes());
        }
        self.log(Some(req), 200, if is_head { 0 } else { body.len() as u64 });
        self.send_out().await
    }

    /// Closes politely after an error: stop sending, then drain what the peer still sends
    /// for a moment, so that closing with unread data does not reset the connection before
    /// the peer has read the response.
    async fn linger_close(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write).await;
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut buf = std::mem::take(&mut self.rbuf);
        if buf.capacity() == 0 {
            buf.reserve(MAX_HEAD);
        }
        for _ in 0..64 {
            let left = deadline.saturating_duration_since(Instant::now());
            buf.clear();
            match time::timeout(left, self.stream.read(buf)).await {
                Ok((Ok(n), b)) if n > 0 => buf = b,
                _ => return,
            }
        }
    }
}

/// `fmt::Write` into the output buffer.
struct OutWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for OutWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Opens `rel` beneath `root`: a regular file or a directory and its metadata, or the status
/// to answer with.
async fn open_beneath(root: &File, rel: &[u8]) -> Result<(File, Metadata), u16> {
    let file = File::open_with(Some(root), OsStr::from_bytes(rel), beneath())
        .await
        .map_err(|e| match trueio::fs::os_error(&e) {
            Some(libc::EACCES) | Some(libc::EPERM) => 403u16,
            // Out of descriptors: the file may well exist; the client may retry.
            Some(libc::EMFILE) | Some(libc::ENFILE) => 503,
            // Missing, outside the root (EXDEV), a symlink loop...: do not tell which.
            _ => 404,
        })?;
    let meta = file.metadata().await.map_err(|_| 404u16)?;
    if meta.is_file() {
        clear_nonblock(&file);
        Ok((file, meta))
    } else if meta.is_dir() {
        Ok((file, meta))
    } else {
        Err(403) // FIFOs, sockets, devices
    }
}

/// Regular files were opened `O_NONBLOCK` only so that a FIFO could not block the open;
/// reads of them go without it (on io_uring, a read of an `O_NONBLOCK` file that misses the
/// page cache fails with EAGAIN instead of waiting for the disk).
fn clear_nonblock(file: &File) {
    // Of the flags F_SETFL sets (O_APPEND, O_ASYNC, O_DIRECT, O_NOATIME, O_NONBLOCK), `beneath`
    // opens with O_NONBLOCK alone: clearing them all clears it, in one call.
    // SAFETY: F_SETFL on a descriptor we own changes only its status flags.
    unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, 0) };
}

/// An HTTP date, formatted once per second it names (the `Date` of every response, the
/// `Last-Modified` of a file served again and again).
struct DateMemo(Cell<(u64, [u8; 29])>);

impl DateMemo {
    const fn new() -> DateMemo {
        DateMemo(Cell::new((u64::MAX, [0; 29])))
    }

    /// The date's text, without allocating when the memo holds it.
    fn get(&self, t: SystemTime) -> StackText {
        let mut out = StackText::default();
        let secs = http::unix_secs(t);
        let (memo_secs, mut text) = self.0.get();
        if memo_secs != secs {
            let s = http::http_date(t);
            match <[u8; 29]>::try_from(s.as_bytes()) {
                Ok(b) => text = b,
                // Years past 9999 do not fit the fixed form: no memo for them (a 12-digit
                // year, the most a u64 of seconds gives, still fits the stack text).
                Err(_) => {
                    let _ = out.write_str(&s);
                    return out;
                }
            }
            self.0.set((secs, text));
        }
        // The memo holds ASCII only (http_date's text).
        let _ = out.write_str(std::str::from_utf8(&text).unwrap_or_default());
        out
    }

    fn write(&self, out: &mut Vec<u8>, t: SystemTime) {
        out.extend_from_slice(self.get(t).as_str().as_bytes());
    }
}

/// A short text built on the stack (an ETag, an HTTP date): one allocation less per
/// response. Writing past its 64 bytes fails and keeps what fit.
struct StackText {
    buf: [u8; 64],
    len: usize,
}

impl Default for StackText {
    fn default() -> StackText {
        StackText {
            buf: [0; 64],
            len: 0,
        }
    }
}

impl StackText {
    fn as_str(&self) -> &str {
        // Only whole `&str`s are ever copied in (see write_str).
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl std::fmt::Display for StackText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

thread_local! {
    static DATE_NOW: DateMemo = const { DateMemo::new() };
    static LAST_MODIFIED: DateMemo = const { DateMemo::new() };
}

//! TCP on the current runtime's engine, with owned buffers.
//!
//! ```
//! # fn main() -> std::io::Result<()> {
//! use trueio::buf::IoBuf;
//! use trueio::net::{TcpListener, TcpStream};
//! use trueio::rt::{self, Runtime};
//! Runtime::new()?.block_on(async {
//!     let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap())?;
//!     let addr = listener.local_addr();
//!     let server = rt::spawn(async move {
//!         let (stream, _) = listener.accept().await?;
//!         let (n, buf) = stream.read(vec![0u8; 64]).await;
//!         let n = n?;
//!         let (r, _) = stream.write_all(buf.slice(..n)).await;
//!         r
//!     });
//!     let client = TcpStream::connect(addr).await?;
//!     let (r, _) = client.write_all(b"ping".to_vec()).await;
//!     r?;
//!     let (n, buf) = client.read(vec![0u8; 64]).await;
//!     assert_eq!(&buf[..n?], b"ping");
//!     server.await.unwrap()
//! })
//! # }
//! ```

use std::cell::Cell;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;

use crate::buf::{resume, BufRing, IoBuf, IoBufMut};
use crate::op::net::{socket_addr_from_storage, socket_addr_to_storage};
use crate::{op, rt, Engine, Fd, Subscription};

/// From this size on, `write_all` sends without copying (where the kernel can, and not to a
/// loopback peer): below it, the zero-copy notification costs more than the copy saves.
const ZERO_COPY_MIN: usize = 64 * 1024;

/// `send_file` asks the page cache about, and sends, at most this much at a time.
const SEND_FILE_CHUNK: u64 = 1 << 20;
/// `send_file`'s read-and-send chunk for data not in the page cache.
const COPY_CHUNK: usize = 256 * 1024;

/// How a listener is set up.
#[derive(Debug, Clone, Copy)]
pub struct ListenOptions {
    /// `SO_REUSEPORT`: several listeners (one per thread) share the address and the kernel
    /// spreads connections over them.
    pub reuse_port: bool,
    /// The accept backlog.
    pub backlog: i32,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            reuse_port: false,
            backlog: 1024,
        }
    }
}

fn cvt(r: libc::c_int, what: &str) -> io::Result<libc::c_int> {
    if r < 0 {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    } else {
        Ok(r)
    }
}

fn socket(addr: &SocketAddr) -> io::Result<OwnedFd> {
    let domain = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain integer arguments; the result is checked before it is owned.
    let fd = cvt(
        unsafe {
            libc::socket(
                domain,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            )
        },
        "socket",
    )?;
    // SAFETY: a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn set_int_opt(fd: RawFd, level: i32, name: i32, value: i32, what: &str) -> io::Result<()> {
    // SAFETY: passes a pointer to a local int and its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    cvt(r, what).map(drop)
}

fn sock_name(fd: RawFd, peer: bool) -> io::Result<SocketAddr> {
    // SAFETY: sockaddr_storage is plain bytes.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let p = (&mut storage as *mut libc::sockaddr_storage).cast();
    // SAFETY: storage and len are locals the kernel fills within their size.
    let r = unsafe {
        if peer {
            libc::getpeername(fd, p, &mut len)
        } else {
            libc::getsockname(fd, p, &mut len)
        }
    };
    cvt(r, if peer { "getpeername" } else { "getsockname" })?;
    socket_addr_from_storage(&storage, len)
}

/// A TCP listening socket.
#[derive(Debug)]
pub struct TcpListener {
    fd: Rc<OwnedFd>,
    engine: Engine,
    local: SocketAddr,
}

impl TcpListener {
    /// Binds and listens on `addr` (with `SO_REUSEADDR`) on the current runtime's engine.
    pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
        Self::bind_with(addr, ListenOptions::default())
    }

    /// Binds and listens with `options` (e.g. `SO_REUSEPORT` for one listener per thread).
    pub fn bind_with(addr: SocketAddr, options: ListenOptions) -> io::Result<TcpListener> {
        let engine = rt::engine();
        let fd = socket(&addr)?;
        let raw = fd.as_raw_fd();
        set_int_opt(raw, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1, "SO_REUSEADDR")?;
        if options.reuse_port {
            set_int_opt(raw, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1, "SO_REUSEPORT")?;
        }
        let (storage, len) = socket_addr_to_storage(&addr);
        // SAFETY: storage holds a sockaddr of `len` bytes.
        let r = unsafe { libc::bind(raw, (&storage as *const libc::sockaddr_storage).cast(), len) };
        cvt(r, &format!("bind {addr}"))?;
        // SAFETY: plain integer arguments.
        cvt(unsafe { libc::listen(raw, options.backlog) }, "listen")?;
        let local = sock_name(raw, false)?;
        Ok(TcpListener {
            fd: Rc::new(fd),
            engine,
            local,
        })
    }

    /// The address it listens on (with the port the kernel chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Accepts a connection. Dropping the future cancels the accept; a connection accepted
    /// anyway is closed, never leaked.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (fd, peer) = self
            .engine
            .submit(op::Accept::new(Fd::Shared(self.fd.clone())))
            .await?;
        Ok((
            TcpStream {
                fd: Rc::new(fd),
                engine: self.engine.clone(),
                zero_copy: Cell::new(None),
            },
            peer,
        ))
    }
}

impl TcpListener {
    /// A stream of accepted connections from one multishot accept (5.19; a plain accept per
    /// connection on older kernels, chosen at the first `EINVAL`).
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming {
            listener: self,
            sub: None,
            single: false,
            worked: false,
        }
    }
}

/// Accepted connections, from [`TcpListener::incoming`].
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a TcpListener,
    sub: Option<Subscription<op::AcceptMulti>>,
    /// Multishot accept refused (kernel before 5.19): one accept per connection.
    single: bool,
    /// A multishot accept has worked on this listener.
    worked: bool,
}

impl Incoming<'_> {
    /// The next connection. An error (EMFILE, say) is returned once; the next call accepts
    /// again.
    pub async fn next(&mut self) -> io::Result<TcpStream> {
        let l = self.listener;
        loop {
            if self.single {
                return l.accept().await.map(|(s, _)| s);
            }
            let sub = self.sub.get_or_insert_with(|| {
                l.engine
                    .submit_multishot(op::AcceptMulti::new(Fd::Shared(l.fd.clone())))
            });
            match sub.next().await {
                Some(Ok(fd)) => {
                    self.worked = true;
                    return Ok(TcpStream {
                        fd: Rc::new(fd),
                        engine: l.engine.clone(),
                        zero_copy: Cell::new(None),
                    });
                }
                // An error ends a multishot request: the next call starts a new one.
                Some(Err(e)) => {
                    self.sub = None;
                    if e.raw_os_error() == Some(libc::EINVAL) && !self.worked {
                        self.single = true;
                        continue;
                    }
                    return Err(e);
                }
                None => self.sub = None,
            }
        }
    }
}

impl AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// A TCP connection.
///
/// Methods take `&self`, so one task can read while another writes. Dropping the stream
/// closes it; operations still in flight on it are cancelled and the socket is shut down
/// first, so the peer sees the end of the stream at once.
#[derive(Debug)]
pub struct TcpStream {
    fd: Rc<OwnedFd>,
    engine: Engine,
    /// Whether large sends go zero-copy (decided at the first one).
    zero_copy: Cell<Option<bool>>,
}

impl TcpStream {
    /// Connects to `addr` on the current runtime's engine.
    pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
        let engine = rt::engine();
        let fd = Rc::new(socket(&addr)?);
        engine
            .submit(op::Connect::new(Fd::Shared(fd.clone()), addr))
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("connect {addr}: {e}")))?;
        Ok(TcpStream {
            fd,
            engine,
            zero_copy: Cell::new(None),
        })
    }

    fn target(&self) -> Fd {
        Fd::Shared(self.fd.clone())
    }

    /// Receives into `buf` (from its start, up to its capacity); 0 is the end of the stream.
    pub async fn read<B: IoBufMut>(&self, buf: B) -> (io::Result<usize>, B) {
        self.engine.submit(op::Recv::new(self.target(), buf)).await
    }

    /// Receives continuously into buffers of `ring`, from one multishot submission (see
    /// [`op::RecvMulti`]): each item holds the next bytes of the stream; an empty item is the
    /// end of the stream; `ENOBUFS` ends the subscription when every buffer is out (drop some
    /// and call again: nothing is lost).
    pub fn read_multi(&self, ring: &BufRing) -> Subscription<op::RecvMulti> {
        self.engine
            .submit_multishot(op::RecvMulti::new(self.target(), ring))
    }

    /// Sends the initialised bytes of `buf`; the count may be short.
    pub async fn write<B: IoBuf>(&self, buf: B) -> (io::Result<usize>, B) {
        self.engine.submit(op::Send::new(self.target(), buf)).await
    }

    /// Sends all initialised bytes of `buf`, resuming after short sends. Buffers of 64 KiB
    /// and more go out with zero-copy sends where the kernel has them (`SEND_ZC`, 6.0).
    pub async fn write_all<B: IoBuf>(&self, buf: B) -> (io::Result<()>, B) {
        let zero_copy = buf.bytes_init() >= ZERO_COPY_MIN && self.zero_copy_pays();
        resume::write_all(
            buf,
            |slice, _| {
                let target = self.target();
                let engine = &self.engine;
                async move {
                    if zero_copy {
                        engine.submit(op::SendZc::new(target, slice)).await
                    } else {
                        engine.submit(op::Send::new(target, slice)).await
                    }
                }
            },
            |done| {
                io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("the peer took no more bytes after {done}"),
                )
            },
        )
        .await
    }

    /// Zero-copy sends pay to a remote peer on a kernel that has them. To a loopback peer
    /// the kernel copies the data anyway at the receiving socket, so the notification is pure
    /// overhead (kernel-notes.md has the figures). Decided once per stream, at its first
    /// large send.
    fn zero_copy_pays(&self) -> bool {
        if let Some(z) = self.zero_copy.get() {
            return z;
        }
        let pays = self.engine.has_opcode("SEND_ZC")
            && self.peer_addr().is_ok_and(|a| match a.ip() {
                std::net::IpAddr::V4(v4) => !v4.is_loopback(),
                std::net::IpAddr::V6(v6) => {
                    !(v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()))
                }
            });
        self.zero_copy.set(Some(pays));
        pays
    }

    /// Sends `len` bytes of `file` from `pos`, the fastest way the data allows:
    ///
    /// - where the range is in the page cache (asked with `cachestat`, 6.5), `sendfile` from
    ///   the cache to the socket, with no copy through user space; when the socket's buffer
    ///   is full, the engine waits for it to drain (`POLL_ADD`);
    /// - where it is not (or the kernel cannot tell), the bytes are read through the engine
    ///   (io_uring, or the fallback's pool) and sent, so the event loop never waits on a disk.
    ///
    /// Returns the bytes sent (`len`, unless the file ended first: then an `UnexpectedEof`
    /// error says how far it got). A future dropped part-way leaves the stream at an unknown
    /// position: close it.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn f(stream: &trueio::net::TcpStream, file: &trueio::fs::File) -> std::io::Result<()> {
    /// let len = file.metadata().await?.len();
    /// stream.send_file(file, 0, len).await?;
    /// # Ok(()) }
    /// ```
    pub async fn send_file(&self, file: &crate::fs::File, pos: u64, len: u64) -> io::Result<u64> {
        let end = pos.saturating_add(len);
        let mut at = pos;
        let mut scratch: Option<crate::buf::AlignedBuf> = None;
        // The range up to here was found in the page cache already: a retry after a full
        // socket buffer does not ask again (cachestat walks every page of the range, and a
        // large piece goes out in many partial sends).
        let mut cached_until = at;
        while at < end {
            let want = (end - at).min(SEND_FILE_CHUNK);
            let cached = at + want <= cached_until || {
                let from = at.max(cached_until);
                let ok = crate::fs::page_cached(file.as_raw_fd(), from, at + want - from);
                if ok {
                    cached_until = at + want;
                }
                ok
            };
            if cached {
                let mut off = at as libc::off_t;
                // SAFETY: `off` is a valid off_t on this frame; both descriptors are open
                // (the socket is non-blocking, so the call does not wait for the peer).
                let r = unsafe {
                    libc::sendfile(
                        self.fd.as_raw_fd(),
                        file.as_raw_fd(),
                        &mut off,
                        want as usize,
                    )
                };
                if r > 0 {
                    at += r as u64;
                    continue;
                }
                if r == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("the file ended at {at}, before {end}"),
                    ));
                }
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) => {
                        self.engine
                            .submit(op::PollAdd::new(self.target(), libc::POLLOUT as u32))
                            .await?;
                        continue;
                    }
                    Some(libc::EINTR) => continue,
                    // This pair of files cannot sendfile: copy instead (below).
                    Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => {}
                    _ => return Err(e),
                }
            }
            // Through user space, by the engine.
            let mut buf = scratch
                .take()
                .unwrap_or_else(|| crate::buf::AlignedBuf::with_capacity(COPY_CHUNK));
            buf.clear();
            let n = ((end - at) as usize).min(COPY_CHUNK);
            let (r, slice) = file.read_at(buf.slice(..n), at).await;
            let mut buf = slice.into_inner();
            let got = r?;
            if got == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the file ended at {at}, before {end}"),
                ));
            }
            buf.set_len(got);
            let (r, buf) = self.write_all(buf).await;
            r?;
            scratch = Some(buf);
            at += got as u64;
        }
        Ok(end - pos)
    }

    /// Sends `head` (a response's headers, say), then `len` bytes of `file` from `pos` as
    /// [`send_file`](Self::send_file) does. `head` goes with `MSG_MORE`, so that the kernel
    /// holds it for the file's first bytes rather than sending it in a segment of its own
    /// (what nginx's `tcp_nopush` does with `TCP_CORK`), even on a `TCP_NODELAY` stream.
    /// Gives `head` back with the count of file bytes sent. As with `send_file`, no other
    /// send on this stream may be in flight meanwhile.
    pub async fn send_file_with_head<B: IoBuf>(
        &self,
        head: B,
        file: &crate::fs::File,
        pos: u64,
        len: u64,
    ) -> (io::Result<u64>, B) {
        let n = head.bytes_init();
        let more = if len > 0 { libc::MSG_MORE } else { 0 };
        // SAFETY: the first `n` bytes of `head` are initialised and stay in place for the
        // call; the socket is non-blocking and MSG_DONTWAIT makes sure of it.
        let r = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                head.stable_ptr().cast(),
                n,
                more | libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        let sent = if r >= 0 {
            r as usize
        } else {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => 0,
                _ => return (Err(e), head),
            }
        };
        let head = if sent < n {
            // A full socket buffer: the rest through the engine, which waits for room.
            let (r, slice) = self.write_all(head.slice(sent..)).await;
            let head = slice.into_inner();
            if let Err(e) = r {
                return (Err(e), head);
            }
            head
        } else {
            head
        };
        (self.send_file(file, pos, len).await, head)
    }

    /// Shuts down the read half, the write half (the peer reads EOF) or both.
    pub async fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.engine
            .submit(op::Shutdown::new(self.target(), how))
            .await
    }

    /// `TCP_NODELAY`: send small writes at once instead of coalescing them.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        set_int_opt(
            self.fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            on as i32,
            "TCP_NODELAY",
        )
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        sock_name(self.fd.as_raw_fd(), true)
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        sock_name(self.fd.as_raw_fd(), false)
    }
}

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        if Rc::strong_count(&self.fd) > 1 {
            // Operations still hold the socket (cancelled, not yet reaped): shut it down so
            // the peer sees EOF now, not when the last of them is reaped.
            // SAFETY: shutdown on a descriptor we own; errors (ENOTCONN) do not matter here.
            unsafe { libc::shutdown(self.fd.as_raw_fd(), libc::SHUT_RDWR) };
        }
    }
}

//! Socket operations: accept, connect, send, recv, shutdown.
//!
//! On io_uring each is one opcode. On the epoll backend each is a non-blocking system call
//! tried at once and, when it would block, retried after the socket's readiness, with the
//! results and errors io_uring gives:
//! - `accept4` and `connect` have no per-call non-blocking flag, so on a socket in blocking
//!   mode the call runs with `O_NONBLOCK` set on the socket and the previous flags restored
//!   right after (a change of the socket's flags made by another thread during that call is
//!   lost);
//! - `send` always passes `MSG_NOSIGNAL` (on both backends: a write to a closed peer fails
//!   with EPIPE, it never raises SIGPIPE) and `MSG_DONTWAIT`, `recv` passes `MSG_DONTWAIT`.

use std::fmt;
use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use io_uring::{opcode, squeue};

use super::{
    result, with_target, BuildCtx, Interest, Multishot, MultishotImpl, Op, OpImpl, Plan, Syscall,
    MAX_IO,
};
use crate::buf::{BufRing, IoBuf, IoBufMut, RingBuf};
use crate::errno::Errno;
use crate::fd::Fd;

/// The size of `sockaddr_storage`, as a `socklen_t`.
const STORAGE_LEN: libc::socklen_t = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;

fn zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain integers and byte arrays; all-zero is a valid value
    // (family AF_UNSPEC).
    unsafe { mem::zeroed() }
}

/// Converts a socket address the kernel filled in (`len` bytes of `storage`) to a
/// [`SocketAddr`]. Fails with `EAFNOSUPPORT` for families other than `AF_INET`/`AF_INET6`,
/// and with `EINVAL` when `len` is too short for the family.
pub(crate) fn socket_addr_from_storage(
    storage: &libc::sockaddr_storage,
    len: libc::socklen_t,
) -> io::Result<SocketAddr> {
    let len = len as usize;
    let short = || io::Error::from_raw_os_error(libc::EINVAL);
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            if len < mem::size_of::<libc::sockaddr_in>() {
                return Err(short());
            }
            // SAFETY: the family says the storage holds a sockaddr_in, `len` covers it, and
            // sockaddr_storage is large and aligned enough for every socket address type.
            let a =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Ok(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(a.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            if len < mem::size_of::<libc::sockaddr_in6>() {
                return Err(short());
            }
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Ok(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => Err(io::Error::from_raw_os_error(libc::EAFNOSUPPORT)),
    }
}

/// Converts a [`SocketAddr`] to the `sockaddr_storage` and length that `connect` takes.
pub(crate) fn socket_addr_to_storage(
    addr: &SocketAddr,
) -> (libc::sockaddr_storage, libc::socklen_t) {
    let mut storage = zeroed_storage();
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for a sockaddr_in, and the
            // pointer comes from a live, exclusively borrowed local.
            let sin = unsafe {
                &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(a.ip().octets()),
            };
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above, for a sockaddr_in6.
            let sin6 = unsafe {
                &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            sin6.sin6_scope_id = a.scope_id();
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// Accepts connections on a listening socket until cancelled, from one submission
/// (`IORING_OP_ACCEPT` with `IORING_ACCEPT_MULTISHOT`, Linux 5.19): each item is an accepted
/// socket (close-on-exec, non-blocking), or the error that ended the stream.
///
/// Kernels before 5.19 end the stream at once with `EINVAL`; fall back to [`Accept`] then
/// ([`TcpListener::incoming`](crate::net::TcpListener::incoming) does). On the epoll backend
/// the listener is drained on each readiness event. No peer address is reported (use
/// `getpeername` on the socket).
#[derive(Debug)]
pub struct AcceptMulti {
    fd: Fd,
}

impl AcceptMulti {
    /// Accepts on `listener` until cancelled.
    pub fn new(listener: impl Into<Fd>) -> AcceptMulti {
        AcceptMulti {
            fd: listener.into(),
        }
    }
}

impl Op for AcceptMulti {
    /// Nothing: the items carry the results.
    type Output = ();
}

impl OpImpl for AcceptMulti {
    fn fd_owner(&self) -> Option<std::rc::Weak<std::os::fd::OwnedFd>> {
        self.fd.owner()
    }

    fn uring_sqe(&mut self, ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno> {
        let AcceptMulti { fd } = self;
        Ok(with_target!(ctx.target(fd)?, |f| opcode::AcceptMulti::new(
            f
        )
        .flags(libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK)
        .build()))
    }

    fn plan(&mut self, ctx: &BuildCtx<'_>) -> Result<Plan, Errno> {
        let fd = ctx.raw(self.fd.target())?;
        Ok(Plan::Multi {
            sys: Syscall::Accept {
                fd,
                addr: std::ptr::null_mut(),
                len: std::ptr::null_mut(),
            },
            fd,
            interest: Interest::Read,
        })
    }

    fn complete(self, _res: i32, _flags: u32) -> <Self as Op>::Output {}
}

impl Multishot for AcceptMulti {
    type Item = io::Result<OwnedFd>;
}

impl MultishotImpl for AcceptMulti {
    fn item(&mut self, res: i32, _flags: u32) -> <Self as Multishot>::Item {
        let fd = result(res)? as RawFd;
        // SAFETY: a non-negative accept result is a new descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

/// Sends without copying the buffer into the kernel (`IORING_OP_SEND_ZC`, Linux 6.0): the
/// network stack reads the pages in place. Pays for large buffers (tens of KiB and more);
/// for small ones the notification costs more than the copy it saves.
///
/// The completion comes only once the kernel has let go of the buffer (its notification),
/// so the buffer given back is free to reuse. Where zero-copy send is missing (the epoll
/// backend, older kernels with the probe saying so) use [`Send`]; results are the same.
#[derive(Debug)]
pub struct SendZc<B>(Send<B>);

impl<B: IoBuf> SendZc<B> {
    /// Sends the initialised bytes of `buf` on `socket`.
    pub fn new(socket: impl Into<Fd>, buf: B) -> SendZc<B> {
        SendZc(Send::new(socket, buf))
    }
}

impl<B: IoBuf> Op for SendZc<B> {
    type Output = (io::Result<usize>, B);
}

impl<B: IoBuf> OpImpl for SendZc<B> {
    fn fd_owner(&self) -> Option<std::rc::Weak<std::os::fd::OwnedFd>> {
        self.0.fd_owner()
    }

    fn uring_sqe(&mut self, ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno> {
        let Send { fd, buf } = &self.0;
        let (ptr, len) = (buf.stable_ptr(), buf.bytes_init().min(MAX_IO) as u32);
        Ok(with_target!(ctx.target(fd)?, |f| opcode::SendZc::new(
            f, ptr, len
        )
        .flags(libc::MSG_NOSIGNAL)
        .build()))
    }

    /// The epoll backend has no zero-copy send: a plain send, same result.
    fn plan(&mut self, ctx: &BuildCtx<'_>) -> Result<Plan, Errno> {
        self.0.plan(ctx)
    }

    fn complete(self, res: i32, flags: u32) -> <Self as Op>::Output {
        self.0.complete(res, flags)
    }
}

/// Receives on a connected socket until the stream ends, from one submission, into buffers
/// the kernel picks from a [`BufRing`] (`IORING_OP_RECV` multishot with a provided-buffer
/// ring, Linux 6.0; emulated on the epoll backend).
///
/// Each item is a [`RingBuf`] with the bytes received, in order; an empty one means the peer
/// closed its end (the last item). The stream also ends with an error item, notably `ENOBUFS`
/// when every buffer of the ring is out: drop (consume) buffers and submit again, nothing
/// received is lost.
#[derive(Debug)]
pub struct RecvMulti {
    fd: Fd,
    ring: BufRing,
}

impl RecvMulti {
    /// Receives on `socket` into buffers of `ring`.
    pub fn new(socket: impl Into<Fd>, ring: &BufRing) -> RecvMulti {
        RecvMulti {
            fd: socket.into(),
            ring: ring.clone(),
        }
    }
}

impl Op for RecvMulti {
    /// Nothing: the items carry the data.
    type Output = ();
}

impl OpImpl for RecvMulti {
    fn fd_owner(&self) -> Option<std::rc::Weak<std::os::fd::OwnedFd>> {
        self.fd.owner()
    }

    fn uring_sqe(&mut self, ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno> {
        let RecvMulti { fd, ring } = self;
        let group = ring.group();
        Ok(with_target!(ctx.target(fd)?, |f| opcode::RecvMulti::new(
            f, group
        )
        .build()))
    }

    fn plan(&mut self, ctx: &BuildCtx<'_>) -> Result<Plan, Errno> {
        let fd = ctx.raw(self.fd.target())?;
        Ok(Plan::Multi {
            sys: Syscall::RecvRing {
                fd,
                ring: std::rc::Rc::as_ptr(&self.ring.inner).cast(),
            },
            fd,
            interest: Interest::Read,
        })
    }

    fn complete(self, _res: i32, _flags: u32) -> <Self as Op>::Output {}
}

impl Multishot for RecvMulti {
    type Item = io::Result<RingBuf>;
}

impl MultishotImpl for RecvMulti {
    fn item(&mut self, res: i32, flags: u32) -> <Self as Multishot>::Item {
        let n = result(res)? as usize;
        match self.ring.buffer_of(n, flags) {
            Some(buf) => Ok(buf),
            // No buffer: the end of the stream (0 bytes).
            None => Ok(RingBuf::empty(&self.ring)),
        }
    }
}

/// A peer address the kernel fills in, at a stable heap address.
struct PeerAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

/// Accepts one connection on a listening TCP socket (IPv4 or IPv6).
///
/// The output is the connected socket, opened with `SOCK_CLOEXEC | SOCK_NONBLOCK`, and the
/// peer's address. If the operation is cancelled (or its ticket dropped) after the kernel
/// accepted a connection, the engine closes that socket.
///
/// Listeners of other families (Unix sockets) are not supported: a connection accepted on one
/// is closed and the result is `EAFNOSUPPORT`.
///
/// ```no_run
/// # fn main() -> std::io::Result<()> {
/// use trueio::{op::Accept, Engine};
/// let engine = Engine::new()?;
/// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let (socket, peer) = engine.submit(Accept::new(&listener)).wait()??;
/// println!("connection from {peer}: {socket:?}");
/// # Ok(()) }
/// ```
pub struct Accept {
    fd: Fd,
    addr: Box<PeerAddr>,
}

impl fmt::Debug for Accept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accept").field("fd", &self.fd).finish()
    }
}

impl Accept {
    /// Accepts a connection on `listener`.
    pub fn new(listener: impl Into<Fd>) -> Accept {
        Accept {
            fd: listener.into(),
            addr: Box::new(PeerAddr {
                storage: zeroed_storage(),
                len: STORAGE_LEN,
            }),
        }
    }
}

impl Op for Accept {
    type Output = io::Result<(OwnedFd, SocketAddr)>;
}

impl OpImpl for Accept {
    fn fd_owner(&self) -> Option<std::rc::Weak<std::os::fd::OwnedFd>> {
        self.fd.owner()
    }

    fn uring_sqe(&mut self, ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno> {
        let Accept { fd, addr } = self;
        addr.len = STORAGE_LEN;
        let PeerAddr { storage, len } = &mut **addr;
        let storage: *mut libc::sockaddr_storage = storage;
        let len: *mut libc::socklen_t = len;
        Ok(with_target!(ctx.target(fd)?, |f| opcode::Accept::new(
            f,
            storage.cast(),
            len
        )
        .flags(libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK)
        .build()))
    }

    fn plan(&mut self, ctx: &BuildCtx<'_>) -> Result<Plan, Errno> {
        let Accept { fd, addr } = self;
        let fd = ctx.raw(fd.target())?;
        let PeerAddr { storage, len } = &mut **addr;
        // Not a listening socket: accept fails at once (EINVAL, EOPNOTSUPP, ENOTSOCK, EBADF);
        // socket calls never wait on such errors (`Syscall::never_blocks`).
        Ok(Plan::Io {
            sys: Syscall::Accept {
                fd,
                addr: storage,
                len,
            },
            fd,
            interest: Interest::Read,
        })
    }

    fn complete(self, res: i32, _flags: u32) -> <Self as Op>::Output {
        let fd = result(res)? as RawFd;
        // SAFETY: a non-negative result of accept is a new descriptor that nothing else owns;
        // it is owned (and closed on every path) from here on.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        let peer = socket_addr_from_storage(&self.addr.storage, self.addr.len)?;
        Ok((socket, peer))
    }
}

/// The destination of a connect, at a stable heap address, and whether a connection attempt
/// is in progress (epoll backend: EISCONN on a retry then means success).
struct ConnectAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
    in_progress: bool,
}

/// Connects a socket to an IPv4 or IPv6 address.
///
/// Completes once the connection is established, or with its error (`ECONNREFUSED`,
/// `ETIMEDOUT`, `ENETUNREACH`...). The socket may be in blocking or non-blocking mode.
pub struct Connect {
    fd: Fd,
    addr: SocketAddr,
    raw: Box<ConnectAddr>,
}

impl fmt::Debug for Connect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connect")
            .field("fd", &self.fd)
            .field("addr", &self.addr)
            .finish()
    }
}

impl Connect {
    /// Connects `socket` to `addr`.
    pub fn new(socket: impl Into<Fd>, addr: SocketAddr) -> Connect {
        let (storage, len) = socket_addr_to_storage(&addr);
        Connect {
            fd: socket.into(),
            addr,
            raw: Box::new(ConnectAddr {
                storage,
                len,
                in_progress: false,
            }),
        }
    }
}

impl Op for Connect {
    type Output = io::Result<()>;
}

impl OpImpl for Connect {
    fn fd_owner(&self) -> Option<std::rc::Weak<std::os::fd::OwnedFd>> {
        self.fd.owner()
    }

    fn uring_sqe(&mut self, ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno> {
        let Connect { fd, addr: _, raw } = self;
        let ConnectAddr {
            storage,
            len,
            in_progress: _,
        } = &**raw;
        let storage: *const libc::sockaddr_storage = storage;
        let len = *len;
        Ok(with_target!(ctx.target(fd)?, |f| opcode::Connect::new(
            f,
            storage.cast(),
            len
        )
        .build()))
    }

    fn plan(&mut self, ctx: &BuildCtx<'_>) -> Result<Plan, Errno> {
        let Connect { fd, addr: _, raw } = self;
        let fd = ctx.raw(fd.target())?;
        let ConnectAddr {
            storage,
            len,
            in_progress,
        } = &mut **raw;
        let sys = Syscall::Connect {
            fd,
            addr: storage,
            len: *len,
            in_progress,
        };
        Ok(Plan::Io {
            sys,
            fd,
            interest: Interest::Write,
        })
    }

    fn complete(self, res: i32, _flags: u32) -> <Self as Op>::Output {
        result(res).map(|_| ())
    }
}

/// Sends the initialised bytes of an owned buffer on a connected socket (`send(2)` with
/// `MSG_NOSIGNAL`).
///
/// The output is the count sent, which may be short (a full socket buffer), and the buffer.
/// A send to a peer that closed its end fails with `EPIPE` (or `ECONNRESET`), never with a
/// SIGPIPE.
#[derive(Debug)]
pub struct Send<B> {
    pub(super) fd: Fd,
    pub(super) buf: B,
}

impl<B: IoBuf> Send<B> {
    /// Sends `buf[..bytes_init]` on `socket`.
    pub fn new(socket: impl Into<Fd>, buf: B) -> Send<B> {
        Send {
            fd: socket.into(),
            buf,
        }
    }
}

impl<B: IoBuf> Op for Send<B> {
    type Output = (io::Result<usize>, B);
}

impl<B: IoBuf> OpImpl for Send<B> {
    fn fd_owner(&self) -> Option<std::rc::Weak<std::os::fd::OwnedFd>> {
        self.fd.owner()
    }

    fn uring_sqe(&mut self, ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno> {
        let Send { fd, buf } = self;
        let len = buf.bytes_init().min(MAX_IO) as u32;
        let ptr = buf.stable_ptr();
        Ok(with_target!(ctx.target(fd)?, |f| opcode::Send::new(
            f, ptr, len
        )
        .flags(libc::MSG_NOSIGNAL)
        .build()))
    }

    fn plan(&mut self, ctx: &BuildCtx<'_>) -> Result<Plan, Errno> {
        let Send { fd, buf } = self;
        let fd = ctx.raw(fd.target())?;
        Ok(Plan::Io {
            sys: Syscall::Send {
                fd,
                buf: buf.stable_ptr(),
                len: buf.bytes_init().min(MAX_IO),
            },
            fd,
            interest: Interest::Write,
        })
    }

    fn complete(self, res: i32, _flags: u32) -> <Self as Op>::Output {
        (result(res).map(|n| n as usize), self.buf)
    }
}

/// Receives into an owned buffer from a connected socket (`recv(2)`).
///
/// Fills the buffer from its start up to its capacity ([`IoBuf::bytes_total`]). The output is
/// the count received (0 once the peer has shut down its sending side) and the buffer, whose
/// initialised length is raised to the count received if that is larger.
#[derive(Debug)]
pub struct Recv<B> {
    fd: Fd,
    buf: B,
}

impl<B: IoBufMut> Recv<B> {
    /// Receives into `buf` from `socket`.
    pub fn new(socket: impl Into<Fd>, buf: B) -> Recv<B> {
        Recv {
            fd: socket.into(),
            buf,
        }
    }
}

impl<B: IoBufMut> Op for Recv<B> {
    type Output = (io::Result<usize>, B);
}

impl<B: IoBufMut> OpImpl for Recv<B> {
    fn fd_owner(&self) -> Option<std::rc::Weak<std::os::fd::OwnedFd>> {
        self.fd.owner()
    }

    fn uring_sqe(&mut self, ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno> {
        let Recv { fd, buf } = self;
        let len = buf.bytes_total().min(MAX_IO) as u32;
        let ptr = buf.stable_mut_ptr();
        Ok(with_target!(ctx.target(fd)?, |f| opcode::Recv::new(
            f, ptr, len
        )
        .build()))
    }

    fn plan(&mut self, ctx: &BuildCtx<'_>) -> Result<Plan, Errno> {
        let Recv { fd, buf } = self;
        let fd = ctx.raw(fd.target())?;
        Ok(Plan::Io {
            sys: Syscall::Recv {
                fd,
                buf: buf.stable_mut_ptr(),
                len: buf.bytes_total().min(MAX_IO),
            },
            fd,
            interest: Interest::Read,
        })
    }

    fn complete(mut self, res: i32, _flags: u32) -> <Self as Op>::Output {
        let r = result(res).map(|n| n as usize);
        if let Ok(n) = r {
            // SAFETY: the kernel (or the syscall) initialised the first n bytes, n <= total.
            unsafe { self.buf.set_init(n) };
        }
        (r, self.buf)
    }
}

/// Shuts down the reading side, the writing side or both of a connected socket
/// (`shutdown(2)`). After `Shutdown::Write` the peer reads end of file.
///
/// On io_uring this needs Linux 5.11 (`IORING_OP_SHUTDOWN`); before, the kernel completes it
/// with `EINVAL`.
#[derive(Debug)]
pub struct Shutdown {
    fd: Fd,
    how: std::net::Shutdown,
}

impl Shutdown {
    /// Shuts down `how` of `socket`.
    pub fn new(socket: impl Into<Fd>, how: std::net::Shutdown) -> Shutdown {
        Shutdown {
            fd: socket.into(),
            how,
        }
    }

    fn how(how: std::net::Shutdown) -> i32 {
        match how {
            std::net::Shutdown::Read => libc::SHUT_RD,
            std::net::Shutdown::Write => libc::SHUT_WR,
            std::net::Shutdown::Both => libc::SHUT_RDWR,
        }
    }
}

impl Op for Shutdown {
    type Output = io::Result<()>;
}

impl OpImpl for Shutdown {
    fn uring_sqe(&mut self, ctx: &BuildCtx<'_>) -> Result<squeue::Entry, Errno> {
        let Shutdown { fd, how } = self;
        let how = Shutdown::how(*how);
        Ok(with_target!(ctx.target(fd)?, |f| opcode::Shutdown::new(
            f, how
        )
        .build()))
    }

    fn plan(&mut self, ctx: &BuildCtx<'_>) -> Result<Plan, Errno> {
        let Shutdown { fd, how } = self;
        let fd = ctx.raw(fd.target())?;
        let sys = Syscall::Shutdown {
            fd,
            how: Shutdown::how(*how),
        };
        // shutdown never blocks: it completes on the first try, errors included.
        Ok(Plan::Io {
            sys,
            fd,
            interest: Interest::Write,
        })
    }

    fn complete(self, res: i32, _flags: u32) -> <Self as Op>::Output {
        result(res).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_addr_round_trips() {
        let addrs: [SocketAddr; 4] = [
            "127.0.0.1:8080".parse().unwrap(),
            "0.0.0.0:0".parse().unwrap(),
            "[::1]:443".parse().unwrap(),
            SocketAddr::V6(SocketAddrV6::new(
                "fe80::1".parse().unwrap(),
                65535,
                0x12345,
                7,
            )),
        ];
        for a in addrs {
            let (storage, len) = socket_addr_to_storage(&a);
            assert_eq!(socket_addr_from_storage(&storage, len).unwrap(), a);
            assert_eq!(
                socket_addr_from_storage(&storage, len - 1)
                    .unwrap_err()
                    .raw_os_error(),
                Some(libc::EINVAL)
            );
        }
        let storage = zeroed_storage();
        assert_eq!(
            socket_addr_from_storage(&storage, STORAGE_LEN)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::EAFNOSUPPORT)
        );
    }
}

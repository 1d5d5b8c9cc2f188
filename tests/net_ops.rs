//! Socket operations (accept, connect, send, recv, shutdown): results and errors, on both
//! backends and every rung of the degradation ladder.
mod util;

use std::io::{self, Read as _, Write as _};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use trueio::op::{self, Accept, Connect, Recv, Shutdown};
use trueio::{Engine, Ticket};
use util::{assert_errno, pattern, run, wait, LIMIT};

/// A loopback address of the given family and port.
fn loopback(v6: bool, port: u16) -> SocketAddr {
    if v6 {
        (Ipv6Addr::LOCALHOST, port).into()
    } else {
        (Ipv4Addr::LOCALHOST, port).into()
    }
}

/// A listener on a loopback port of the family, in blocking or non-blocking mode; `None`
/// (the case is skipped) when IPv6 is not available here.
fn listener(v6: bool, nonblocking: bool) -> Option<TcpListener> {
    match TcpListener::bind(loopback(v6, 0)) {
        Ok(l) => {
            l.set_nonblocking(nonblocking).unwrap();
            Some(l)
        }
        Err(e) if v6 => {
            util::skip(&format!("no IPv6 loopback here: {e}"));
            None
        }
        Err(e) => panic!("bind 127.0.0.1:0: {e}"),
    }
}

/// The families and modes a case runs in: (IPv6?, non-blocking?).
const CASES: [(bool, bool); 4] = [(false, false), (false, true), (true, false), (true, true)];

/// A fresh TCP socket of the family, in blocking or non-blocking mode.
fn tcp_socket(v6: bool, nonblocking: bool) -> OwnedFd {
    let family = if v6 { libc::AF_INET6 } else { libc::AF_INET };
    let ty =
        libc::SOCK_STREAM | libc::SOCK_CLOEXEC | if nonblocking { libc::SOCK_NONBLOCK } else { 0 };
    // SAFETY: plain socket creation.
    let fd = unsafe { libc::socket(family, ty, 0) };
    assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
    // SAFETY: `fd` is a new descriptor owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// The descriptor's file status flags (`F_GETFL`).
fn status_flags(fd: RawFd) -> i32 {
    // SAFETY: F_GETFL only reads flags.
    let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    assert!(fl >= 0, "F_GETFL: {}", io::Error::last_os_error());
    fl
}

/// The descriptor flags (`F_GETFD`).
fn fd_flags(fd: RawFd) -> i32 {
    // SAFETY: F_GETFD only reads flags.
    let fl = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    assert!(fl >= 0, "F_GETFD: {}", io::Error::last_os_error());
    fl
}

/// Accepts on a std listener with a deadline (the listener is switched to non-blocking).
fn std_accept(l: &TcpListener) -> (TcpStream, SocketAddr) {
    l.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + LIMIT;
    loop {
        match l.accept() {
            Ok((s, a)) => {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(LIMIT)).unwrap();
                s.set_write_timeout(Some(LIMIT)).unwrap();
                return (s, a);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "no connection to accept");
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// A connected pair over loopback: (the side the engine uses, the std peer), both blocking
/// with timeouts on the std side.
fn std_pair() -> (TcpStream, TcpStream) {
    let l = listener(false, false).unwrap();
    let ours = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (peer, _) = std_accept(&l);
    (ours, peer)
}

/// A connected pair made by the engine itself: Accept and Connect in flight together.
/// Returns (the connecting side, the accepted side).
fn engine_pair(engine: &Engine) -> (OwnedFd, OwnedFd) {
    let l = listener(false, true).unwrap();
    let acc = engine.submit(Accept::new(&l));
    let s = tcp_socket(false, true);
    let con = engine.submit(Connect::new(&s, l.local_addr().unwrap()));
    wait(engine, con).expect("connect");
    let (a, peer) = wait(engine, acc).expect("accept");
    assert_eq!(peer, local_addr(s.as_raw_fd()));
    (s, a)
}

/// A socket's local address (`getsockname`).
fn local_addr(fd: RawFd) -> SocketAddr {
    // SAFETY: the stream is only borrowed: ManuallyDrop keeps the descriptor open.
    let s = std::mem::ManuallyDrop::new(unsafe { TcpStream::from_raw_fd(fd) });
    s.local_addr().unwrap()
}

/// Moves `data` from `from` to `to` through the engine, a send and a receive in flight at
/// once, in chunks of `send_chunk` and `recv_chunk` bytes; returns what arrived.
fn pump(
    engine: &Engine,
    from: RawFd,
    to: RawFd,
    data: &[u8],
    send_chunk: usize,
    recv_chunk: usize,
) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sent = 0;
    let mut got = Vec::with_capacity(data.len());
    let mut st: Option<Ticket<op::Send<Vec<u8>>>> = None;
    let mut rt: Option<Ticket<Recv<Vec<u8>>>> = None;
    while got.len() < data.len() {
        if st.is_none() && sent < data.len() {
            let end = (sent + send_chunk).min(data.len());
            st = Some(engine.submit(op::Send::new(from, data[sent..end].to_vec())));
        }
        if rt.is_none() {
            rt = Some(engine.submit(Recv::new(to, Vec::with_capacity(recv_chunk))));
        }
        let mut progressed = false;
        if let Some(out) = st.as_mut().and_then(|t| t.try_take()) {
            let (n, buf) = out;
            let n = n.expect("send");
            assert!(n > 0 && n <= buf.len(), "send count {n} of {}", buf.len());
            sent += n;
            st = None;
            progressed = true;
        }
        if let Some(out) = rt.as_mut().and_then(|t| t.try_take()) {
            let (n, buf) = out;
            let n = n.expect("recv");
            assert!(n > 0, "EOF before all the data arrived");
            assert_eq!(buf.len(), n, "the buffer's length is the count received");
            assert_eq!(buf.capacity(), recv_chunk);
            got.extend_from_slice(&buf);
            rt = None;
            progressed = true;
        }
        if !progressed {
            assert!(
                Instant::now() < deadline,
                "transfer stalled at {} of {} bytes",
                got.len(),
                data.len()
            );
            engine.turn(Some(Duration::from_millis(100))).unwrap();
        }
    }
    assert!(st.is_none(), "everything sent was received");
    drop(rt);
    got
}

/// Connected TCP sockets of this process whose local port is `port` (sockets accepted on a
/// listener of that port), found through /proc: immune to other tests opening descriptors
/// concurrently.
fn accepted_sockets_on(port: u16) -> usize {
    let mut inodes = std::collections::HashSet::new();
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            let lport = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            // 0A: LISTEN (the listener itself).
            if lport == Some(port) && *state != "0A" && *inode != "0" {
                inodes.insert(format!("socket:[{inode}]"));
            }
        }
    }
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|t| inodes.contains(t.to_string_lossy().as_ref()))
        .count()
}

/// Sends on `fd` until a send fails; returns the errors of that send and of the next one.
fn send_until_error(engine: &Engine, fd: RawFd) -> (i32, i32) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let (r, _) = run(engine, op::Send::new(fd, vec![7u8; 64 * 1024]));
        match r {
            Ok(_) => {
                assert!(
                    Instant::now() < deadline,
                    "sends to a closed peer kept succeeding"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => {
                let first = e.raw_os_error().unwrap();
                let (r, _) = run(engine, op::Send::new(fd, vec![7u8; 16]));
                let second = util::errno(&r).expect("a send after the failure fails too");
                return (first, second);
            }
        }
    }
}

/// The body of the closed-peer check: EPIPE (possibly ECONNRESET first, when the peer's reset
/// is reported), never a SIGPIPE.
fn closed_peer_send_check(engine: &Engine) -> (i32, i32) {
    let (ours, peer) = std_pair();
    // Unread data on the peer makes its close send a reset at once.
    util::write_all(&ours, b"unread");
    std::thread::sleep(Duration::from_millis(20));
    drop(peer);
    send_until_error(engine, ours.as_raw_fd())
}

const SIGPIPE_CHILD: &str = "TRUEIO_NET_SIGPIPE_CHILD";

both_backends! {
    fn accept_a_std_client(b: Builder) {
        let engine = b.build().unwrap();
        for (v6, nonblocking) in CASES {
            let Some(l) = listener(v6, nonblocking) else { continue };
            let flags_before = status_flags(l.as_raw_fd());
            let mut t = engine.submit(Accept::new(&l));
            util::drive_for(&engine, Duration::from_millis(20));
            assert!(!t.is_done(), "nobody connected yet: the accept waits");
            let mut client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let (sock, peer) = util::wait_within(&engine, &mut t, LIMIT).expect("accept");
            assert_eq!(peer, client.local_addr().unwrap(), "v6={v6}");
            assert_ne!(status_flags(sock.as_raw_fd()) & libc::O_NONBLOCK, 0, "SOCK_NONBLOCK");
            assert_ne!(fd_flags(sock.as_raw_fd()) & libc::FD_CLOEXEC, 0, "SOCK_CLOEXEC");
            assert_eq!(
                status_flags(l.as_raw_fd()),
                flags_before,
                "the listener's flags are left as they were"
            );
            // It is that connection.
            client.write_all(b"ping").unwrap();
            let (n, buf) = run(&engine, Recv::new(&sock, Vec::with_capacity(16)));
            assert_eq!(n.unwrap(), 4);
            assert_eq!(buf, b"ping");

            // A connection already queued: accepted at once.
            let client2 = TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let (_, peer2) = run(&engine, Accept::new(&l)).expect("queued accept");
            assert_eq!(peer2, client2.local_addr().unwrap());
        }
        util::assert_settled(&engine);
    }

    fn connect_to_a_std_listener(b: Builder) {
        let engine = b.build().unwrap();
        for (v6, nonblocking) in CASES {
            let Some(l) = listener(v6, true) else { continue };
            let s = tcp_socket(v6, nonblocking);
            let flags_before = status_flags(s.as_raw_fd());
            run(&engine, Connect::new(&s, l.local_addr().unwrap())).expect("connect");
            assert_eq!(
                status_flags(s.as_raw_fd()),
                flags_before,
                "the socket's mode is left as it was (v6={v6}, nonblocking={nonblocking})"
            );
            let (mut peer, from) = std_accept(&l);
            assert_eq!(from, local_addr(s.as_raw_fd()));
            let (n, _) = run(&engine, op::Send::new(&s, b"hi".to_vec()));
            assert_eq!(n.unwrap(), 2);
            let mut got = [0u8; 2];
            peer.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"hi");

            // Connected already: EISCONN, as the kernel says.
            let r = run(&engine, Connect::new(&s, l.local_addr().unwrap()));
            assert_errno(&r, libc::EISCONN, "connect of a connected socket");
        }
        util::assert_settled(&engine);
    }

    fn connect_refused(b: Builder) {
        let engine = b.build().unwrap();
        for (v6, nonblocking) in CASES {
            let Some(l) = listener(v6, false) else { continue };
            let addr = l.local_addr().unwrap();
            drop(l);
            let s = tcp_socket(v6, nonblocking);
            let r = run(&engine, Connect::new(&s, addr));
            assert_errno(&r, libc::ECONNREFUSED, &format!("connect to a closed port (v6={v6}, nonblocking={nonblocking})"));
        }
        util::assert_settled(&engine);
    }

    fn send_recv_round_trip_1mib(b: Builder) {
        let engine = b.build().unwrap();
        let (a, bside) = engine_pair(&engine);
        let data = pattern(1 << 20, 11);
        let there = pump(&engine, a.as_raw_fd(), bside.as_raw_fd(), &data, 64 * 1024, 16 * 1024);
        assert!(there == data, "a -> b is byte-exact");
        let back = pump(&engine, bside.as_raw_fd(), a.as_raw_fd(), &there, 100_000, 48 * 1024);
        assert!(back == data, "b -> a is byte-exact");

        // The same over a std peer that echoes, with one large send at a time.
        let (ours, mut peer) = std_pair();
        let echo = std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 20];
            peer.read_exact(&mut buf).unwrap();
            peer.write_all(&buf).unwrap();
        });
        let mut sent = 0;
        while sent < data.len() {
            let (n, _) = run(&engine, op::Send::new(&ours, data[sent..].to_vec()));
            sent += n.expect("send");
        }
        let mut got = Vec::new();
        while got.len() < data.len() {
            let (n, buf) = run(&engine, Recv::new(&ours, Vec::with_capacity(256 * 1024)));
            assert!(n.expect("recv") > 0, "EOF before the echo ended");
            got.extend_from_slice(&buf);
        }
        assert!(got == data, "the echo is byte-exact");
        echo.join().unwrap();
        util::assert_settled(&engine);
    }

    fn recv_is_zero_at_eof(b: Builder) {
        let engine = b.build().unwrap();
        // The peer closes while the recv waits.
        let (ours, mut peer) = std_pair();
        let mut t = engine.submit(Recv::new(&ours, Vec::with_capacity(64)));
        util::drive_for(&engine, Duration::from_millis(20));
        assert!(!t.is_done(), "no data yet: the recv waits");
        peer.write_all(b"last words").unwrap();
        drop(peer);
        let (n, buf) = util::wait_within(&engine, &mut t, LIMIT);
        assert_eq!(n.unwrap(), 10);
        assert_eq!(buf, b"last words");
        let (n, buf) = run(&engine, Recv::new(&ours, Vec::with_capacity(64)));
        assert_eq!(n.unwrap(), 0, "end of file");
        assert!(buf.is_empty());
        // And again: EOF stays.
        let (n, _) = run(&engine, Recv::new(&ours, Vec::with_capacity(64)));
        assert_eq!(n.unwrap(), 0);
    }

    fn send_to_a_closed_peer_is_epipe_without_sigpipe(b: Builder) {
        let engine = b.build().unwrap();
        if std::env::var_os(SIGPIPE_CHILD).is_some() {
            // The child: SIGPIPE's default action kills the process, should it be raised.
            // SAFETY: restores a signal's default disposition; no handler is involved.
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
            let (first, second) = closed_peer_send_check(&engine);
            println!("errors {first} {second}");
            return;
        }
        // In this process (where Rust ignores SIGPIPE): SIGPIPE blocked on this thread, so
        // one raised here would stay pending.
        // SAFETY: sigset operations on locals; the mask is restored below.
        let old = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGPIPE);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
            old
        };
        let (first, second) = closed_peer_send_check(&engine);
        // SAFETY: reads this thread's pending set into a local.
        let pending = unsafe {
            let mut p: libc::sigset_t = std::mem::zeroed();
            libc::sigpending(&mut p);
            libc::sigismember(&p, libc::SIGPIPE) == 1
        };
        if pending {
            // SAFETY: consumes the pending SIGPIPE so it cannot outlive this test.
            unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGPIPE);
                let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
                libc::sigtimedwait(&set, std::ptr::null_mut(), &zero);
            }
        }
        // SAFETY: restores the mask saved above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
        assert!(!pending, "a send to a closed peer raised SIGPIPE");
        assert!(
            first == libc::EPIPE || first == libc::ECONNRESET,
            "first failure: {}",
            io::Error::from_raw_os_error(first)
        );
        assert_eq!(second, libc::EPIPE, "after the reset: {}", io::Error::from_raw_os_error(second));

        // And in a child process with SIGPIPE's default action (which kills): this same test.
        // This test's name; under `--test-threads=1` the test runs on the main thread, whose
        // name is not the test's: then the plain variant of this backend is run.
        const NAME: &str = "send_to_a_closed_peer_is_epipe_without_sigpipe";
        let name = match std::thread::current().name() {
            Some(n) if n.ends_with(NAME) => n.to_string(),
            _ => match engine.backend() {
                trueio::Backend::Epoll => format!("epoll::{NAME}"),
                trueio::Backend::Uring => format!("uring::{NAME}"),
            },
        };
        let out = util::run_child_within(
            std::process::Command::new(std::env::current_exe().unwrap())
                .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
                .env(SIGPIPE_CHILD, "1"),
            Duration::from_secs(30),
            "the SIGPIPE child",
        );
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), None, "the child was killed by a signal:\n{}\n{}", out.stdout, out.stderr);
        assert!(out.status.success(), "child failed:\n{}\n{}", out.stdout, out.stderr);
        assert!(out.stdout.contains("1 passed"), "the child ran the test:\n{}", out.stdout);
    }

    fn shutdown_write_gives_the_peer_eof(b: Builder) {
        let engine = b.build().unwrap();
        let (ours, mut peer) = std_pair();
        let (n, _) = run(&engine, op::Send::new(&ours, b"bye".to_vec()));
        assert_eq!(n.unwrap(), 3);
        run(&engine, Shutdown::new(&ours, std::net::Shutdown::Write)).expect("shutdown");
        let mut got = Vec::new();
        peer.read_to_end(&mut got).expect("the peer reads to EOF");
        assert_eq!(got, b"bye");
        // Our reading side still works.
        peer.write_all(b"ok").unwrap();
        let (n, buf) = run(&engine, Recv::new(&ours, Vec::with_capacity(8)));
        assert_eq!(n.unwrap(), 2);
        assert_eq!(buf, b"ok");
        // Sending after shutdown(Write): EPIPE, no signal.
        let (r, _) = run(&engine, op::Send::new(&ours, b"more".to_vec()));
        assert_errno(&r, libc::EPIPE, "send after shutdown(Write)");
        run(&engine, Shutdown::new(&ours, std::net::Shutdown::Both)).expect("shutdown both");

        // Errors: a socket that is not connected, and a descriptor that is not a socket.
        let s = tcp_socket(false, false);
        let r = run(&engine, Shutdown::new(&s, std::net::Shutdown::Write));
        assert_errno(&r, libc::ENOTCONN, "shutdown of an unconnected socket");
        let (rd, _wr) = util::pipe(false);
        let r = run(&engine, Shutdown::new(&rd, std::net::Shutdown::Both));
        assert_errno(&r, libc::ENOTSOCK, "shutdown of a pipe");
        util::assert_settled(&engine);
    }

    fn cancel_a_pending_recv(b: Builder) {
        let engine = b.build().unwrap();
        let (ours, mut peer) = std_pair();
        let mut t = engine.submit(Recv::new(&ours, Vec::with_capacity(100)));
        util::drive_for(&engine, Duration::from_millis(30));
        assert!(!t.is_done(), "nothing to receive: still pending");
        t.cancel();
        let (r, buf) = util::wait_within(&engine, &mut t, LIMIT);
        assert_errno(&r, libc::ECANCELED, "cancelled recv");
        assert!(buf.is_empty());
        assert_eq!(buf.capacity(), 100, "the buffer comes back");
        // The socket is intact and nothing was consumed.
        peer.write_all(b"after").unwrap();
        let (n, buf) = run(&engine, Recv::new(&ours, Vec::with_capacity(100)));
        assert_eq!(n.unwrap(), 5);
        assert_eq!(buf, b"after");
        util::assert_settled(&engine);
    }

    fn a_dropped_accept_leaks_no_descriptor(b: Builder) {
        let engine = b.build().unwrap();
        for nonblocking in [false, true] {
            let l = listener(false, nonblocking).unwrap();
            let addr = l.local_addr().unwrap();
            let port = addr.port();
            assert_eq!(accepted_sockets_on(port), 0);

            // The helper sees an accepted socket.
            let client = TcpStream::connect(addr).unwrap();
            let (sock, _) = run(&engine, Accept::new(&l)).unwrap();
            assert_eq!(accepted_sockets_on(port), 1, "the count sees an accepted socket");
            drop((sock, client));
            assert_eq!(accepted_sockets_on(port), 0);

            for round in 0..30u64 {
                let client = match round % 3 {
                    // A connection is waiting: the accept succeeds at once, its ticket is
                    // gone, the engine closes the socket.
                    0 => {
                        let c = TcpStream::connect(addr).unwrap();
                        std::thread::sleep(Duration::from_millis(2));
                        drop(engine.submit(Accept::new(&l)));
                        c
                    }
                    // Nobody connects: the accept is cancelled while it waits.
                    1 => {
                        let t = engine.submit(Accept::new(&l));
                        util::drive_for(&engine, Duration::from_millis(10));
                        assert!(!t.is_done());
                        drop(t);
                        util::drive_until_idle(&engine, "the cancelled accept finished");
                        TcpStream::connect(addr).unwrap()
                    }
                    // The connect races the drop.
                    _ => {
                        let t = engine.submit(Accept::new(&l));
                        engine.flush().unwrap();
                        let delay = Duration::from_micros(250 * (round % 7));
                        let c = std::thread::spawn(move || {
                            std::thread::sleep(delay);
                            TcpStream::connect(addr).unwrap()
                        });
                        engine.turn(Some(Duration::from_millis(1))).unwrap();
                        drop(t);
                        c.join().unwrap()
                    }
                };
                util::drive_until_idle(&engine, "the dropped accept finished");
                drop(client);
                assert_eq!(
                    accepted_sockets_on(port),
                    0,
                    "round {round}: an accepted socket was left open"
                );
                // Connections the engine did not take: accepted and closed here, so that
                // every round starts with an empty queue.
                l.set_nonblocking(true).unwrap();
                while l.accept().is_ok() {}
                l.set_nonblocking(nonblocking).unwrap();
            }
            assert_eq!(accepted_sockets_on(port), 0);
        }
        util::assert_settled(&engine);
    }

    fn accept_errors(b: Builder) {
        let engine = b.build().unwrap();
        // Not a socket.
        let (rd, _wr) = util::pipe(false);
        assert_errno(&run(&engine, Accept::new(&rd)), libc::ENOTSOCK, "accept on a pipe");
        let dir = util::TempDir::new("net-accept");
        let f = dir.rw_file("f", b"x");
        assert_errno(&run(&engine, Accept::new(&f)), libc::ENOTSOCK, "accept on a file");
        // Not open.
        assert_errno(&run(&engine, Accept::new(999_999)), libc::EBADF, "accept on a bad fd");
        // A TCP socket that does not listen.
        let s = tcp_socket(false, false);
        assert_errno(&run(&engine, Accept::new(&s)), libc::EINVAL, "accept on a non-listening socket");
        // A socket type without accept (completes, never waits for a datagram).
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_errno(&run(&engine, Accept::new(&u)), libc::EOPNOTSUPP, "accept on UDP");
        util::assert_settled(&engine);
    }

    fn send_recv_errors(b: Builder) {
        let engine = b.build().unwrap();
        let (rd, wr) = util::pipe(false);
        // Socket calls never wait on a descriptor that is not a socket, on any driver
        // (an empty pipe's read end is never ready).
        let (r, buf) = run(&engine, Recv::new(&rd, Vec::with_capacity(8)));
        assert_errno(&r, libc::ENOTSOCK, "recv on a pipe");
        assert_eq!(buf.capacity(), 8);
        let (r, buf) = run(&engine, op::Send::new(&rd, b"x".to_vec()));
        assert_errno(&r, libc::ENOTSOCK, "send on a pipe's read end");
        assert_eq!(buf, b"x");
        // A pipe's write end with room is ready: ENOTSOCK on every driver.
        let (r, buf) = run(&engine, op::Send::new(&wr, b"x".to_vec()));
        assert_errno(&r, libc::ENOTSOCK, "send on a pipe");
        assert_eq!(buf, b"x");
        let (r, _) = run(&engine, Recv::new(-1, Vec::with_capacity(8)));
        assert_errno(&r, libc::EBADF, "recv on a bad fd");
        // A TCP socket that is not connected.
        let s = tcp_socket(false, false);
        let (r, _) = run(&engine, Recv::new(&s, Vec::with_capacity(8)));
        assert_errno(&r, libc::ENOTCONN, "recv on an unconnected socket");
        let (r, _) = run(&engine, op::Send::new(&s, b"x".to_vec()));
        assert_errno(&r, libc::EPIPE, "send on an unconnected socket");
        // Connecting to a non-socket.
        let r = run(&engine, Connect::new(&rd, loopback(false, 9)));
        assert_errno(&r, libc::ENOTSOCK, "connect of a pipe");
        util::assert_settled(&engine);
    }

    fn socket_ops_through_a_fixed_slot(b: Builder) {
        let engine = b.fixed_files(4).build().unwrap();
        let l = listener(false, true).unwrap();
        let lf = engine.register_file(l.try_clone().unwrap().into()).unwrap();
        let acc = engine.submit(Accept::new(&lf));
        let s = tcp_socket(false, true);
        let sf = engine.register_file(s.try_clone().unwrap()).unwrap();
        run(&engine, Connect::new(&sf, l.local_addr().unwrap())).expect("connect via a slot");
        let (a, peer) = wait(&engine, acc).expect("accept via a slot");
        assert_eq!(peer, local_addr(s.as_raw_fd()));
        let (n, _) = run(&engine, op::Send::new(&sf, b"fixed".to_vec()));
        assert_eq!(n.unwrap(), 5);
        let (n, buf) = run(&engine, Recv::new(&a, Vec::with_capacity(8)));
        assert_eq!(n.unwrap(), 5);
        assert_eq!(buf, b"fixed");
        run(&engine, Shutdown::new(&sf, std::net::Shutdown::Write)).expect("shutdown via a slot");
        let (n, _) = run(&engine, Recv::new(&a, Vec::with_capacity(8)));
        assert_eq!(n.unwrap(), 0);
        drop((lf, sf));
        util::drive_for(&engine, Duration::from_millis(5));
        util::assert_settled(&engine);
    }
}

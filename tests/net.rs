//! TCP through the async layer, on both backends.

mod util;

use std::cell::Cell;
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use trueio::buf::{IoBuf, IoBufMut};
use trueio::net::{TcpListener, TcpStream};
use trueio::rt::{self, Runtime};
use trueio::{time, Builder};

fn raise_nofile(want: u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid rlimit on this frame.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
    r.rlim_cur = r.rlim_cur.max(want.min(r.rlim_max));
    // SAFETY: as above.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) };
}

async fn echo(stream: TcpStream) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (r, b) = stream.read(buf).await;
        let n = match r {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let (r, b) = stream.write_all(b.slice(..n)).await;
        if r.is_err() {
            return;
        }
        buf = b.into_inner();
    }
}

/// A server on its own thread and runtime: accepts `conns` connections, echoes each until
/// its peer closes, then returns.
fn echo_server(b: Builder, conns: usize) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        let rt = Runtime::with_builder(b).expect("server runtime");
        rt.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).expect("bind");
            tx.send(listener.local_addr()).unwrap();
            let mut served = Vec::new();
            for _ in 0..conns {
                let (s, _) = listener.accept().await.expect("accept");
                served.push(rt::spawn(echo(s)));
            }
            for h in served {
                h.await.expect("echo task");
            }
        });
    });
    (rx.recv_timeout(util::LIMIT).expect("server address"), h)
}

/// An owned buffer that records when it is dropped.
struct Flagged {
    data: Vec<u8>,
    dropped: Rc<Cell<bool>>,
}

impl Drop for Flagged {
    fn drop(&mut self) {
        self.dropped.set(true);
    }
}

// SAFETY: delegates to the inner Vec, whose heap memory does not move with the struct.
unsafe impl IoBuf for Flagged {
    fn stable_ptr(&self) -> *const u8 {
        self.data.stable_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.data.bytes_init()
    }
    fn bytes_total(&self) -> usize {
        self.data.bytes_total()
    }
}

// SAFETY: as above.
unsafe impl IoBufMut for Flagged {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.data.stable_mut_ptr()
    }
    unsafe fn set_init(&mut self, pos: usize) {
        // SAFETY: forwarded from the caller.
        unsafe { self.data.set_init(pos) }
    }
}

both_backends! {
    /// `send_file` sends a file's range byte-exact, from the page cache (sendfile) and from
    /// data that is not cached (read through the engine), through a slow reader that fills
    /// the socket buffers (the sender waits for room).
    fn send_file_sends_cached_and_uncached_ranges_byte_exact(b: Builder) {
        use std::os::fd::AsRawFd;
        let dir = util::TempDir::new("send-file");
        let data = util::pattern(3 * 1024 * 1024 + 123, 9);
        let f = dir.rw_file("f", &data);
        f.sync_all().unwrap();
        let path = dir.path("f");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // The reader: two responses, read slowly at first.
        let expected = [data[..].to_vec(), data[1000..1000 + 2_000_000].to_vec()];
        let reader = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            std::thread::sleep(Duration::from_millis(200));
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            got
        });
        let rt = Runtime::with_builder(b).unwrap();
        rt.block_on(async {
            let file = trueio::fs::File::open(&path).await.unwrap();
            let s = TcpStream::connect(addr).await.unwrap();
            // Cached: the file was just written.
            let n = s.send_file(&file, 0, data.len() as u64).await.unwrap();
            assert_eq!(n, data.len() as u64);
            // Not cached: drop the file's pages first (clean after the sync).
            // SAFETY: fadvise takes no pointers.
            unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            let n = s.send_file(&file, 1000, 2_000_000).await.unwrap();
            assert_eq!(n, 2_000_000);
            // Past the end of the file: an error that says so.
            let e = s.send_file(&file, data.len() as u64 - 10, 100).await.unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
        });
        drop(rt);
        let got = reader.join().unwrap();
        let want: Vec<u8> = expected.concat();
        assert_eq!(got.len(), want.len() + 10, "bytes received");
        assert!(got[..want.len()] == want[..], "the bytes differ");
        assert_eq!(&got[want.len()..], &data[data.len() - 10..]);
    }

    fn echo_round_trips_with_1000_concurrent_connections(b: Builder) {
        const CONNS: usize = 1000;
        const ROUNDS: usize = 3;
        raise_nofile(4 * CONNS as u64 + 256);
        let _watchdog = util::Watchdog::arm("1000-connection echo", Duration::from_secs(120));
        let (addr, server) = echo_server(b.clone(), CONNS);
        let rt = Runtime::with_builder(b).unwrap();
        let bytes = rt.block_on(async move {
            let clients: Vec<_> = (0..CONNS)
                .map(|i| {
                    rt::spawn(async move {
                        let s = TcpStream::connect(addr).await.expect("connect");
                        let mut total = 0;
                        for round in 0..ROUNDS {
                            let msg = util::pattern(64 + (i * 7 + round) % 512, i as u8);
                            let (r, _) = s.write_all(msg.clone()).await;
                            r.expect("write");
                            let mut got = Vec::with_capacity(msg.len());
                            while got.len() < msg.len() {
                                let (r, chunk) = s.read(vec![0u8; msg.len() - got.len()]).await;
                                let n = r.expect("read");
                                assert!(n > 0, "connection {i}: EOF before the echo");
                                got.extend_from_slice(&chunk[..n]);
                            }
                            assert!(got == msg, "connection {i} round {round}: echo differs");
                            total += msg.len();
                        }
                        total
                    })
                })
                .collect();
            let mut bytes = 0;
            for c in clients {
                bytes += c.await.expect("client task");
            }
            bytes
        });
        assert!(bytes > CONNS * ROUNDS * 64);
        server.join().expect("server thread");
    }

    fn a_dropped_read_releases_its_buffer_and_closing_gives_the_peer_eof(b: Builder) {
        let _watchdog = util::Watchdog::arm("dropped read", Duration::from_secs(30));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let rt = Runtime::with_builder(b).unwrap();
        let dropped = Rc::new(Cell::new(false));
        let flag = dropped.clone();
        let mut peer = None;
        rt.block_on(async {
            let stream = TcpStream::connect(addr).await.expect("connect");
            let (p, _) = listener.accept().unwrap();
            p.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            peer = Some(p);
            // An idle connection: the read never completes; the timeout drops its future.
            let buf = Flagged { data: Vec::with_capacity(64), dropped: flag };
            let r = time::timeout(Duration::from_millis(20), stream.read(buf)).await;
            assert!(r.is_err(), "nothing was sent");
            // The engine owns the buffer until the cancellation's completion is reaped.
            let deadline = Instant::now() + util::LIMIT;
            while !dropped.get() {
                assert!(Instant::now() < deadline, "the buffer was never released");
                time::sleep(Duration::from_millis(5)).await;
            }
            drop(stream);
        });
        let mut peer = peer.unwrap();
        let start = Instant::now();
        let mut b = [0u8; 8];
        let n = peer.read(&mut b).expect("the peer reads EOF, not a timeout");
        assert_eq!(n, 0);
        assert!(start.elapsed() < Duration::from_secs(1));
        // And writing to it now fails or is discarded, never echoed back.
        let _ = peer.write_all(b"late");
    }

    fn connect_refused_names_the_address(b: Builder) {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let rt = Runtime::with_builder(b).unwrap();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let e = rt.block_on(TcpStream::connect(addr)).expect_err("refused");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
        assert!(e.to_string().contains(&addr.to_string()), "{e}");
    }
}

mod multishot {
    use super::*;
    use trueio::op;

    both_backends! {
        fn incoming_accepts_every_connection_from_one_submission(b: Builder) {
            let _watchdog = util::Watchdog::arm("incoming", Duration::from_secs(30));
            let rt = Runtime::with_builder(b).unwrap();
            rt.block_on(async {
                let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
                let addr = listener.local_addr();
                let clients: Vec<_> = (0..20)
                    .map(|_| std::net::TcpStream::connect(addr).expect("connect"))
                    .collect();
                let submitted = rt::engine().stats().submitted;
                let mut incoming = listener.incoming();
                let mut peers = Vec::new();
                for _ in 0..clients.len() {
                    let s = incoming.next().await.expect("accept");
                    peers.push(s.peer_addr().unwrap());
                }
                let mut want: Vec<_> = clients.iter().map(|c| c.local_addr().unwrap()).collect();
                want.sort();
                peers.sort();
                assert_eq!(peers, want, "every client accepted once");
                let accepts = rt::engine().stats().submitted - submitted;
                assert!(accepts <= 2, "one multishot submission, not one per connection: {accepts}");
            });
        }

        fn cancelling_a_multishot_accept_ends_its_stream_cleanly(b: Builder) {
            let _watchdog = util::Watchdog::arm("multishot cancel", Duration::from_secs(30));
            let rt = Runtime::with_builder(b).unwrap();
            rt.block_on(async {
                let engine = rt::engine();
                let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                listener.set_nonblocking(true).unwrap();
                // Let the runtime settle (it keeps a read of its own pending once it waited).
                time::sleep(Duration::from_millis(1)).await;
                let before = engine.in_flight();
                let mut sub = engine.submit_multishot(op::AcceptMulti::new(&listener));
                let _c = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
                let first = sub.next().await.expect("an item").expect("a connection");
                drop(first);
                sub.cancel();
                match sub.next().await {
                    Some(Err(e)) => assert_eq!(e.raw_os_error(), Some(libc::ECANCELED)),
                    other => panic!("the final item is ECANCELED, got {other:?}"),
                }
                assert!(sub.next().await.is_none(), "nothing after the final completion");
                assert!(sub.is_ended());
                // Settle again, as before `before`: under qemu the runtime's own read may be
                // between its completion and its next submission at either moment.
                time::sleep(Duration::from_millis(1)).await;
                assert_eq!(engine.in_flight(), before, "the operation left the table");
            });
        }

        fn connections_accepted_after_the_subscription_is_dropped_are_closed(b: Builder) {
            let _watchdog = util::Watchdog::arm("abandoned multishot", Duration::from_secs(30));
            let rt = Runtime::with_builder(b).unwrap();
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let addr = listener.local_addr().unwrap();
            let clients: Vec<_> = (0..3)
                .map(|_| {
                    let c = std::net::TcpStream::connect(addr).unwrap();
                    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    c
                })
                .collect();
            rt.block_on(async {
                let engine = rt::engine();
                let sub = engine.submit_multishot(op::AcceptMulti::new(&listener));
                // Let the accepts complete into the subscription's queue, untaken.
                time::sleep(Duration::from_millis(50)).await;
                drop(sub);
                time::sleep(Duration::from_millis(50)).await;
            });
            for mut c in clients {
                let mut b = [0u8; 1];
                let n = c.read(&mut b).expect("EOF, not a timeout: the accepted socket was closed");
                assert_eq!(n, 0);
            }
        }
    }
}

mod provided_buffers {
    use super::*;

    both_backends! {
        fn a_burst_larger_than_the_ring_arrives_whole_and_in_order(b: Builder) {
            let _watchdog = util::Watchdog::arm("provided buffers", Duration::from_secs(60));
            const TOTAL: usize = 256 * 1024;
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let data = util::pattern(TOTAL, 11);
            let sent = data.clone();
            let peer = std::thread::spawn(move || {
                let (mut s, _) = listener.accept().unwrap();
                s.write_all(&sent).unwrap();
                // Closing ends the stream: the receiver sees an empty item.
            });
            let rt = Runtime::with_builder(b).unwrap();
            let (got, enobufs) = rt.block_on(async {
                let engine = rt::engine();
                let ring = match engine.buf_ring(4, 4096) {
                    Ok(r) => r,
                    Err(e) => {
                        util::skip(&format!("no provided-buffer ring here: {e}"));
                        return (data.clone(), 1);
                    }
                };
                let stream = TcpStream::connect(addr).await.unwrap();
                let mut got = Vec::with_capacity(TOTAL);
                let mut enobufs = 0;
                'outer: loop {
                    let mut sub = stream.read_multi(&ring);
                    // Hold every buffer until the ring runs dry: the receive must stop with
                    // ENOBUFS, not drop data.
                    let mut held: Vec<trueio::buf::RingBuf> = Vec::new();
                    while let Some(item) = sub.next().await {
                        match item {
                            Ok(buf) if buf.is_empty() => {
                                for b in held.drain(..) {
                                    got.extend_from_slice(&b[..]);
                                }
                                assert!(sub.next().await.is_none(), "nothing after the end");
                                break 'outer;
                            }
                            Ok(buf) => held.push(buf),
                            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                                enobufs += 1;
                                assert!(held.len() <= 4, "more buffers out than the ring has");
                            }
                            Err(e) => panic!("receive failed: {e}"),
                        }
                    }
                    assert!(sub.is_ended());
                    for b in held.drain(..) {
                        got.extend_from_slice(&b[..]);
                    }
                }
                (got, enobufs)
            });
            peer.join().unwrap();
            assert_eq!(got.len(), data.len(), "every byte arrives");
            assert!(got == data, "in order, byte-exact");
            assert!(enobufs > 0, "a 4-buffer ring must run dry on a 256 KiB burst");
        }
    }
}

mod zero_copy {
    use super::*;
    use trueio::op;

    fn reader(listener: std::net::TcpListener, want: usize) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut got = vec![0u8; want];
            s.read_exact(&mut got).unwrap();
            got
        })
    }

    both_backends! {
        fn a_zero_copy_send_arrives_byte_exact_and_gives_the_buffer_back(b: Builder) {
            let _watchdog = util::Watchdog::arm("send_zc", Duration::from_secs(60));
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let data = util::pattern(4 << 20, 5);
            let peer = reader(listener, data.len());
            let rt = Runtime::with_builder(b).unwrap();
            let sent = rt.block_on(async {
                let s = TcpStream::connect(addr).await.unwrap();
                let engine = rt::engine();
                let mut buf = data.clone();
                let mut off = 0;
                while off < data.len() {
                    // Resend the unsent tail: SendZc may send a short count.
                    let tail = buf.split_off(off);
                    let (r, back) = engine
                        .submit(op::SendZc::new(std::os::fd::AsRawFd::as_raw_fd(&s), tail))
                        .await;
                    let n = r.expect("send_zc");
                    assert!(n > 0);
                    buf.extend_from_slice(&back);
                    off += n;
                }
                // The whole buffer came back (also after a short count).
                buf
            });
            assert!(sent == data, "the buffer comes back unchanged");
            assert!(peer.join().unwrap() == data, "byte-exact on the wire");
        }

        fn write_all_of_a_large_buffer_arrives_byte_exact(b: Builder) {
            let _watchdog = util::Watchdog::arm("large write_all", Duration::from_secs(60));
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let data = util::pattern(3 << 20, 9);
            let peer = reader(listener, data.len());
            let rt = Runtime::with_builder(b).unwrap();
            rt.block_on(async {
                let s = TcpStream::connect(addr).await.unwrap();
                let (r, back) = s.write_all(data.clone()).await;
                r.expect("write_all");
                assert_eq!(back.len(), data.len());
            });
            assert!(peer.join().unwrap() == data);
        }
    }
}

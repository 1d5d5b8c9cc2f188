//! TCP echo: each server is a child process (this same binary) pinned to CPU 0; the load
//! generator, a tokio client identical for every server, runs on a thread pinned to CPU 1.
//!
//! The parent drives a measurement window over the child's stdin: `mark` after the warm-up,
//! `report` at the end. The child answers `report` with what it measured over the window in
//! its own process: CPU time, allocations, system calls (kernel-counted in a counting pass;
//! `Engine::stats()` for trueio; `/proc/self/io`), so every server-side number is the server's.

use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use crate::echo_conn::{echo_multishot, echo_plain};
use crate::local::Pass;
use crate::measure::{self, Histogram, Sample, SyscallCounter};

pub const SERVER_ENV: &str = "TRUEIO_COMPARE_ECHO_SERVER";
const COUNT_ENV: &str = "TRUEIO_COMPARE_COUNT_SYSCALLS";

/// The servers, by the name the child is started with.
pub const KINDS: [&str; 5] = ["std", "tokio", "uring", "uring-multishot", "epoll"];

// ---------------------------------------------------------------------------------------
// The child: a server and its measurement window

/// The trueio servers' engine counters, asked for by the control thread and answered from
/// inside the runtime (an engine belongs to its thread).
#[derive(Default)]
struct EngineProbe {
    wanted: AtomicBool,
    waker: Mutex<Option<Waker>>,
    answer: Mutex<Option<std::sync::mpsc::Sender<trueio::Stats>>>,
}

impl EngineProbe {
    fn ask(&self) -> trueio::Stats {
        let (tx, rx) = std::sync::mpsc::channel();
        *self.answer.lock().unwrap() = Some(tx);
        self.wanted.store(true, Ordering::Release);
        if let Some(w) = self.waker.lock().unwrap().take() {
            w.wake();
        }
        rx.recv().expect("the server answers")
    }

    /// Runs inside the server's runtime: answers every question with the engine's stats.
    async fn serve(&self) {
        loop {
            std::future::poll_fn(|cx| {
                if self.wanted.swap(false, Ordering::AcqRel) {
                    return Poll::Ready(());
                }
                *self.waker.lock().unwrap() = Some(cx.waker().clone());
                // Asked between the check and storing the waker.
                if self.wanted.swap(false, Ordering::AcqRel) {
                    return Poll::Ready(());
                }
                Poll::Pending
            })
            .await;
            let stats = trueio::rt::engine().stats();
            if let Some(tx) = self.answer.lock().unwrap().take() {
                let _ = tx.send(stats);
            }
        }
    }
}

/// Reads `mark`/`report` lines from stdin and answers on stdout.
fn control(probe: Option<Arc<EngineProbe>>) {
    let count = std::env::var(COUNT_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    let mut mark = None;
    for line in stdin.lock().lines() {
        let line = line.expect("control line");
        match line.trim() {
            "mark" => {
                let engine = probe.as_ref().map(|p| p.ask());
                let io = measure::proc_io_calls();
                let counter = count.map(|id| SyscallCounter::start(id).expect("syscall counter"));
                let allocs = measure::allocs();
                let cpu = measure::cpu_seconds();
                mark = Some((cpu, allocs, io, engine, counter));
                writeln!(out, "ok")
                    .and_then(|_| out.flush())
                    .expect("stdout");
            }
            "report" => {
                let (cpu0, allocs0, io0, engine0, counter) = mark.take().expect("mark first");
                let syscalls = counter.map(SyscallCounter::stop);
                let cpu = measure::cpu_seconds() - cpu0;
                let allocs = measure::allocs() - allocs0;
                let engine = probe
                    .as_ref()
                    .map(|p| p.ask())
                    .zip(engine0)
                    .map(|(b, a)| b.since(&a).syscalls);
                let io = measure::proc_io_calls().zip(io0).map(|(b, a)| b - a);
                let opt = |v: Option<u64>| v.map_or(-1, |v| v as i64);
                writeln!(
                    out,
                    "{cpu} {allocs} {} {} {}",
                    opt(syscalls),
                    opt(engine),
                    opt(io)
                )
                .and_then(|_| out.flush())
                .expect("stdout");
            }
            other => panic!("unknown control line {other:?}"),
        }
    }
}

/// The child's main: serves until killed.
pub fn serve(kind: &str) {
    crate::sys::pin(measure::IO_CPU);
    // Port 0: the kernel picks a free port, and `ready` tells the parent which.
    let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
    match kind {
        "std" => serve_std(addr),
        "tokio" => serve_tokio(addr),
        "uring" => serve_trueio(trueio::BackendChoice::Uring, false, addr),
        "uring-multishot" => serve_trueio(trueio::BackendChoice::Uring, true, addr),
        "epoll" => serve_trueio(trueio::BackendChoice::Epoll, false, addr),
        other => panic!("unknown server {other}"),
    }
}

fn ready(addr: SocketAddr) {
    let mut out = std::io::stdout();
    writeln!(out, "ready {addr}")
        .and_then(|_| out.flush())
        .expect("stdout");
}

/// A thread per connection (small stacks), blocking reads and writes.
fn serve_std(addr: SocketAddr) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind(addr).expect("bind");
    std::thread::spawn(|| control(None));
    ready(listener.local_addr().expect("local address"));
    for s in listener.incoming() {
        let Ok(mut s) = s else { continue };
        std::thread::Builder::new()
            .stack_size(64 << 10)
            .spawn(move || {
                let _ = s.set_nodelay(true);
                let mut buf = vec![0u8; 8192];
                loop {
                    let n = match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            })
            .expect("start a connection thread");
    }
}

fn serve_tokio(addr: SocketAddr) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    std::thread::spawn(|| control(None));
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        ready(listener.local_addr().expect("local address"));
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                let mut buf = vec![0u8; 8192];
                loop {
                    let n = match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
}

fn serve_trueio(backend: trueio::BackendChoice, multishot: bool, addr: SocketAddr) {
    use trueio::net::TcpListener;
    use trueio::rt::{self, Runtime};
    let rt = Runtime::with_builder(trueio::Engine::builder().backend(backend)).expect("runtime");
    let probe = Arc::new(EngineProbe::default());
    let p = probe.clone();
    std::thread::spawn(move || control(Some(p)));
    rt.block_on(async move {
        drop(rt::spawn(async move { probe.serve().await }));
        let listener = TcpListener::bind(addr).expect("bind");
        // One ring of provided buffers for every connection: a receive takes a buffer only
        // when data arrives, and the echo sends straight from it.
        let ring = if multishot {
            Some(
                rt::engine()
                    .buf_ring(2048, 8192)
                    .expect("provided-buffer ring"),
            )
        } else {
            None
        };
        ready(listener.local_addr());
        let mut incoming = listener.incoming();
        loop {
            let Ok(s) = incoming.next().await else {
                continue;
            };
            let ring = ring.clone();
            drop(rt::spawn(async move {
                let _ = s.set_nodelay(true);
                match ring {
                    Some(ring) => echo_multishot(&s, &ring).await,
                    None => echo_plain(&s).await,
                }
            }));
        }
    });
}

// ---------------------------------------------------------------------------------------
// The parent: start a server, load it, read its report

struct Server {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Server {
    /// Starts a server; returns it and the address it listens on.
    fn start(kind: &str, count: Option<u64>) -> (Server, SocketAddr) {
        let mut cmd = Command::new(std::env::current_exe().expect("current exe"));
        cmd.env(SERVER_ENV, kind)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if let Some(id) = count {
            cmd.env(COUNT_ENV, id.to_string());
        }
        let mut child = cmd.spawn().expect("start the echo server");
        let stdin = child.stdin.take().expect("server stdin");
        let mut s = Server {
            stdout: BufReader::new(child.stdout.take().expect("server stdout")),
            stdin,
            child,
        };
        let line = s.line();
        let addr = line
            .strip_prefix("ready ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("the {kind} echo server did not start: {line:?}"));
        (s, addr)
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        let n = self.stdout.read_line(&mut l).expect("server stdout");
        assert!(n > 0, "the echo server exited early");
        l.trim().to_string()
    }

    fn ask(&mut self, what: &str) -> String {
        writeln!(self.stdin, "{what}")
            .and_then(|_| self.stdin.flush())
            .expect("server stdin");
        self.line()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One run: `conns` connections exchange `size`-byte messages for a warm-up, then `pass.dur`
/// measured.
pub fn run(kind: &str, conns: usize, size: usize, warmup: Duration, pass: Pass) -> Sample {
    let (mut server, addr) = Server::start(kind, pass.count);
    let (msgs, secs, hist, report, busy) = std::thread::scope(|s| {
        s.spawn(|| {
            crate::sys::pin(measure::LOAD_CPU);
            load(&mut server, addr, conns, size, warmup, pass.dur)
        })
        .join()
        .expect("load generator")
    });
    drop(server);
    let f: Vec<&str> = report.split_whitespace().collect();
    assert_eq!(f.len(), 5, "server report {report:?}");
    let num = |i: usize| f[i].parse::<f64>().expect("server report field");
    let opt = |i: usize| Some(num(i)).filter(|v| *v >= 0.0).map(|v| v as u64);
    Sample {
        ops: msgs,
        secs,
        cpu_s: num(0),
        allocs: num(1) as u64,
        syscalls: opt(2),
        engine_syscalls: opt(3),
        proc_io: opt(4),
        p50_us: hist.quantile_us(0.50),
        p99_us: hist.quantile_us(0.99),
        // Each CPU's busy time in the window, less the server's (on IO_CPU) and the load
        // generator's (on LOAD_CPU).
        others: (((busy.0 - num(0)) / secs).max((busy.1 - busy.2) / secs)).clamp(0.0, 1.0),
    }
}

const WARM: u8 = 0;
const MEASURE: u8 = 1;
const DONE: u8 = 2;

fn load(
    server: &mut Server,
    addr: SocketAddr,
    conns: usize,
    size: usize,
    warmup: Duration,
    dur: Duration,
) -> (u64, f64, Histogram, String, (f64, f64, f64)) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    rt.block_on(async move {
        let phase = Arc::new(AtomicU8::new(WARM));
        let mut streams = Vec::with_capacity(conns);
        for _ in 0..conns {
            let s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let _ = s.set_nodelay(true);
            streams.push(s);
        }
        let tasks: Vec<_> = streams
            .into_iter()
            .map(|mut s| {
                let phase = phase.clone();
                tokio::spawn(async move {
                    let msg = vec![7u8; size];
                    let mut back = vec![0u8; size];
                    let mut hist = Histogram::new();
                    let mut n = 0u64;
                    loop {
                        let t = Instant::now();
                        s.write_all(&msg).await.expect("write");
                        s.read_exact(&mut back).await.expect("read");
                        match phase.load(Ordering::Relaxed) {
                            MEASURE => {
                                hist.record(t.elapsed());
                                n += 1;
                            }
                            DONE => return (n, hist),
                            _ => {}
                        }
                    }
                })
            })
            .collect();
        tokio::time::sleep(warmup).await;
        // Blocking the client's thread for a line is fine: the phase switches after it.
        assert_eq!(server.ask("mark"), "ok");
        phase.store(MEASURE, Ordering::Relaxed);
        let busy = || {
            (
                measure::busy_seconds(Some(measure::IO_CPU)),
                measure::busy_seconds(Some(measure::LOAD_CPU)),
                measure::cpu_seconds(),
            )
        };
        let busy0 = busy();
        let start = Instant::now();
        tokio::time::sleep(dur).await;
        phase.store(DONE, Ordering::Relaxed);
        let secs = start.elapsed().as_secs_f64();
        let busy1 = busy();
        let busy = (busy1.0 - busy0.0, busy1.1 - busy0.1, busy1.2 - busy0.2);
        let report = server.ask("report");
        let mut hist = Histogram::new();
        let mut msgs = 0;
        for t in tasks {
            let (n, h) = t.await.expect("client task");
            msgs += n;
            hist.merge(&h);
        }
        (msgs, secs, hist, report, busy)
    })
}

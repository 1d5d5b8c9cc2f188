//! Echo benchmark: the same load generator against trueio on io_uring, trueio on epoll and a
//! tokio `current_thread` server. Each server is a process of its own pinned to CPU 0; the
//! load generator (a tokio client, identical for all) runs on CPU 1.
//!
//! `cargo bench --bench echo` (`TRUEIO_BENCH_QUICK=1` for a short run). To profile one
//! server by hand: start it with `TRUEIO_ECHO_BENCH_SERVER=uring|epoll|tokio
//! TRUEIO_ECHO_BENCH_ADDR=127.0.0.1:17771`, then load it with
//! `TRUEIO_ECHO_BENCH_CLIENT=127.0.0.1:17771,64,64,6` (address, connections, message size,
//! seconds) and, say, `perf record -e cpu-clock -p PID -g`. Prints messages/s,
//! p50/p99 round-trip latency, and the server's CPU time (user+system, all threads) per
//! message: on two cores the load generator saturates its own, so server CPU per message is
//! the figure that shows each engine's cost.

use std::net::SocketAddr;

#[path = "common/sys.rs"]
mod sys;
use sys::{pin, raise_nofile};
#[path = "common/echo_conn.rs"]
mod echo_conn;
use echo_conn::{echo_multishot, echo_plain};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SERVER_ENV: &str = "TRUEIO_ECHO_BENCH_SERVER";

fn serve_trueio(backend: trueio::BackendChoice, addr: SocketAddr) {
    use trueio::net::{TcpListener, TcpStream};
    use trueio::rt::{self, Runtime};
    let rt = Runtime::with_builder(trueio::Engine::builder().backend(backend)).expect("runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(addr).expect("bind");
        // One ring of provided buffers for every connection: a receive takes a buffer only
        // when data arrives, and the echo sends straight from it.
        let ring = rt::engine().buf_ring(2048, 8192).ok();
        println!("ready");
        let mut incoming = listener.incoming();
        loop {
            let Ok(s) = incoming.next().await else {
                continue;
            };
            let ring = ring.clone();
            drop(rt::spawn(async move {
                let s: TcpStream = s;
                let _ = s.set_nodelay(true);
                match ring {
                    Some(ring) => echo_multishot(&s, &ring).await,
                    None => echo_plain(&s).await,
                }
            }));
        }
    });
}

fn serve_tokio(addr: SocketAddr) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        println!("ready");
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

fn start_server(kind: &str, addr: SocketAddr) -> Child {
    let mut child = Command::new(std::env::current_exe().expect("current exe"))
        .env(SERVER_ENV, kind)
        .env("TRUEIO_ECHO_BENCH_ADDR", addr.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the server");
    let mut out = child.stdout.take().expect("server stdout");
    let mut b = [0u8; 6];
    std::io::Read::read_exact(&mut out, &mut b).expect("server ready");
    child
}

/// utime + stime of a process, all threads, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // utime and stime are fields 14 and 15 (1-based); index 11 and 12 after the ')'.
    (ticks(11) + ticks(12)) / hz
}

struct Load {
    msgs: u64,
    secs: f64,
    p50_us: f64,
    p99_us: f64,
}

fn load(addr: SocketAddr, conns: usize, size: usize, dur: Duration) -> Load {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    rt.block_on(async move {
        let start = Instant::now();
        let deadline = start + dur;
        let mut tasks = Vec::new();
        for _ in 0..conns {
            tasks.push(tokio::spawn(async move {
                let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
                let _ = s.set_nodelay(true);
                let msg = vec![7u8; size];
                let mut back = vec![0u8; size];
                let mut lat = Vec::with_capacity(4096);
                while Instant::now() < deadline {
                    let t = Instant::now();
                    s.write_all(&msg).await.expect("write");
                    s.read_exact(&mut back).await.expect("read");
                    lat.push(t.elapsed().as_nanos() as u32);
                }
                lat
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("client task"));
        }
        let secs = start.elapsed().as_secs_f64();
        all.sort_unstable();
        let q = |p: f64| {
            all.get(((all.len() as f64 - 1.0) * p) as usize)
                .copied()
                .unwrap_or(0) as f64
                / 1000.0
        };
        Load {
            msgs: all.len() as u64,
            secs,
            p50_us: q(0.50),
            p99_us: q(0.99),
        }
    })
}

fn main() {
    raise_nofile();
    if let Ok(kind) = std::env::var(SERVER_ENV) {
        pin(0);
        let addr: SocketAddr = std::env::var("TRUEIO_ECHO_BENCH_ADDR")
            .expect("address")
            .parse()
            .expect("address");
        match kind.as_str() {
            "uring" => serve_trueio(trueio::BackendChoice::Uring, addr),
            "epoll" => serve_trueio(trueio::BackendChoice::Epoll, addr),
            _ => serve_tokio(addr),
        }
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // For profiling a server started by hand: the load generator alone, on CPU 1.
    // TRUEIO_ECHO_BENCH_CLIENT=ADDR,CONNS,SIZE,SECONDS
    if let Ok(spec) = std::env::var("TRUEIO_ECHO_BENCH_CLIENT") {
        let v: Vec<&str> = spec.split(',').collect();
        let [addr, conns, size, secs] = v[..] else {
            panic!("TRUEIO_ECHO_BENCH_CLIENT=ADDR,CONNS,SIZE,SECONDS");
        };
        pin(1);
        let l = load(
            addr.parse().expect("address"),
            conns.parse().expect("connections"),
            size.parse().expect("size"),
            Duration::from_secs_f64(secs.parse().expect("seconds")),
        );
        println!(
            "{:.0} msgs/s, p50 {:.1} us, p99 {:.1} us",
            l.msgs as f64 / l.secs,
            l.p50_us,
            l.p99_us
        );
        return;
    }
    pin(1);
    let quick = std::env::var("TRUEIO_BENCH_QUICK").is_ok();
    let dur = Duration::from_millis(if quick { 500 } else { 3000 });
    let rounds = if quick { 1 } else { 3 };
    let uring_ok = trueio::Engine::builder()
        .backend(trueio::BackendChoice::Uring)
        .build()
        .is_ok();
    let kinds: Vec<&str> = if uring_ok {
        vec!["tokio", "uring", "epoll"]
    } else {
        println!("(io_uring unavailable here: its rows are skipped)");
        vec!["tokio", "epoll"]
    };
    println!(
        "echo, server pinned to CPU 0, load generator on CPU 1, {:?} per run, median of {rounds}",
        dur
    );
    println!(
        "{:<7} {:>5} {:>6} {:>11} {:>9} {:>9} {:>12} {:>9} {:>9}",
        "server",
        "conns",
        "size",
        "msgs/s",
        "p50 us",
        "p99 us",
        "CPU us/msg",
        "vs tokio",
        "CPU/tokio"
    );
    let mut port = 17000 + (std::process::id() % 1000) as u16 * 8;
    for (conns, size) in [(64, 64), (64, 4096), (1000, 64), (1000, 4096)] {
        let mut rows: Vec<(&str, f64, f64, f64, f64)> = Vec::new();
        for kind in &kinds {
            let mut runs = Vec::new();
            for _ in 0..rounds {
                port += 1;
                let addr: SocketAddr = ([127, 0, 0, 1], port).into();
                let mut server = start_server(kind, addr);
                let cpu0 = cpu_seconds(server.id());
                let l = load(addr, conns, size, dur);
                let cpu = cpu_seconds(server.id()) - cpu0;
                let _ = server.kill();
                let _ = server.wait();
                runs.push((
                    l.msgs as f64 / l.secs,
                    l.p50_us,
                    l.p99_us,
                    cpu * 1e6 / l.msgs.max(1) as f64,
                ));
            }
            runs.sort_by(|a, b| a.0.total_cmp(&b.0));
            let m = runs[runs.len() / 2];
            rows.push((kind, m.0, m.1, m.2, m.3));
        }
        let tokio = rows[0];
        for (kind, rate, p50, p99, cpu) in rows {
            println!(
                "{:<7} {:>5} {:>6} {:>11.0} {:>9.1} {:>9.1} {:>12.2} {:>8.2}x {:>8.2}x",
                kind,
                conns,
                size,
                rate,
                p50,
                p99,
                cpu,
                rate / tokio.1,
                cpu / tokio.4
            );
        }
    }
}

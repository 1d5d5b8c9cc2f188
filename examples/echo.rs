//! A TCP echo server: one runtime, engine and `SO_REUSEPORT` listener per thread.
//!
//! `cargo run --release --example echo -- --addr 127.0.0.1:7000 [--threads N] [--backend auto|uring|epoll]`

use std::net::SocketAddr;
use std::process::ExitCode;

use trueio::buf::{BufRing, IoBuf};
use trueio::net::{ListenOptions, TcpListener, TcpStream};
use trueio::{rt, BackendChoice, Engine};

struct Args {
    addr: SocketAddr,
    threads: usize,
    backend: BackendChoice,
}

fn usage() -> String {
    "usage: echo --addr HOST:PORT [--threads N] [--backend auto|uring|epoll]".into()
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        addr: ([127, 0, 0, 1], 7000).into(),
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        backend: BackendChoice::from_env().map_err(|e| e.to_string())?,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| format!("{name} needs a value\n{}", usage()))
        };
        match a.as_str() {
            "--addr" => {
                let v = value("--addr")?;
                args.addr = v.parse().map_err(|e| format!("--addr {v}: {e}"))?;
            }
            "--threads" => {
                let v = value("--threads")?;
                args.threads = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("--threads {v}: expected a positive number"))?;
            }
            "--backend" => {
                args.backend =
                    BackendChoice::parse(&value("--backend")?).map_err(|e| e.to_string())?;
            }
            "-h" | "--help" => return Err(usage()),
            other => return Err(format!("unknown argument {other:?}\n{}", usage())),
        }
    }
    Ok(args)
}

/// Echoes one connection: with a ring of provided buffers, one multishot receive serves the
/// whole connection and each echo is sent straight from the buffer the data arrived in.
async fn serve(stream: TcpStream, ring: Option<BufRing>) {
    let _ = stream.set_nodelay(true);
    let Some(ring) = ring else {
        return serve_plain(stream).await;
    };
    loop {
        let mut received = stream.read_multi(&ring);
        while let Some(item) = received.next().await {
            match item {
                Ok(buf) if buf.is_empty() => return,
                Ok(buf) => {
                    if stream.write_all(buf).await.0.is_err() {
                        return;
                    }
                }
                // Every buffer is out: they come back as sends finish; receive again.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
                // No multishot receive (before 6.0): a buffer per receive instead.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    return serve_plain(stream).await;
                }
                Err(_) => return,
            }
        }
    }
}

/// Without provided buffers (before 5.19): a buffer per connection.
async fn serve_plain(stream: TcpStream) {
    let mut buf = vec![0u8; 16 * 1024];
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

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let builder = Engine::builder().backend(args.backend);
    let addr = args.addr;
    let results = rt::run_per_core(args.threads, builder, move |i| async move {
        let listener = TcpListener::bind_with(
            addr,
            ListenOptions {
                reuse_port: true,
                ..Default::default()
            },
        )?;
        if i == 0 {
            println!(
                "echo listening on {} with {} thread(s), backend {}",
                listener.local_addr(),
                args.threads,
                rt::engine().backend()
            );
        }
        let ring = match rt::engine().buf_ring(4096, 16 * 1024) {
            Ok(r) => Some(r),
            Err(e) => {
                if i == 0 {
                    eprintln!("no provided buffers ({e}): one buffer per connection");
                }
                None
            }
        };
        // One multishot accept serves every connection (a plain accept each before 5.19).
        let mut incoming = listener.incoming();
        loop {
            match incoming.next().await {
                Ok(stream) => drop(rt::spawn(serve(stream, ring.clone()))),
                Err(e)
                    if e.raw_os_error() == Some(libc::EMFILE)
                        || e.raw_os_error() == Some(libc::ENFILE) =>
                {
                    // Out of descriptors: back off instead of spinning.
                    trueio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => eprintln!("accept: {e}"),
            }
        }
        #[allow(unreachable_code)]
        Ok::<(), std::io::Error>(())
    });
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) | Err(e) => {
                eprintln!("echo thread {i}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

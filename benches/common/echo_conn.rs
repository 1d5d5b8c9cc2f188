//! The trueio echo connection handlers, shared by `benches/echo.rs` and
//! `benches/compare` so that both measure the same server code.

/// Echoes with a multishot receive into `ring`'s provided buffers, sending straight from
/// them; falls back to [`echo_plain`] where the kernel has no multishot receive.
pub async fn echo_multishot(s: &trueio::net::TcpStream, ring: &trueio::buf::BufRing) {
    loop {
        let mut sub = s.read_multi(ring);
        while let Some(item) = sub.next().await {
            match item {
                Ok(buf) if buf.is_empty() => return,
                Ok(buf) => {
                    if s.write_all(buf).await.0.is_err() {
                        return;
                    }
                }
                // Out of buffers: they come back as sends finish; receive again.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
                // No multishot receive (before 6.0): a buffer per receive instead.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return echo_plain(s).await,
                Err(_) => return,
            }
        }
    }
}

/// Echoes with one receive into a buffer of its own per message.
pub async fn echo_plain(s: &trueio::net::TcpStream) {
    use trueio::buf::IoBuf;
    let mut buf = vec![0u8; 8192];
    loop {
        let (r, b) = s.read(buf).await;
        let n = match r {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let (r, b) = s.write_all(b.slice(..n)).await;
        if r.is_err() {
            return;
        }
        buf = b.into_inner();
    }
}

//! Loops that resume a transfer after short counts, shared by files and sockets.

use std::future::Future;
use std::io;

use super::{IoBuf, IoBufMut, Slice};

/// Calls `transfer(slice, done)` on the part of `buf` not yet moved until `total` bytes are,
/// resuming after short counts and `EINTR`. `end` is what a 0 count means: end of file, or no
/// progress. The buffer comes back whatever happens.
pub(crate) async fn resume<B, F, Fut>(
    buf: B,
    total: usize,
    mut transfer: F,
    end: impl Fn(usize) -> io::Error,
) -> (io::Result<()>, B)
where
    B: IoBuf,
    F: FnMut(Slice<B>, usize) -> Fut,
    Fut: Future<Output = (io::Result<usize>, Slice<B>)>,
{
    let mut buf = buf;
    let mut done = 0;
    while done < total {
        let (r, slice) = transfer(buf.slice(done..total), done).await;
        buf = slice.into_inner();
        match r {
            Ok(0) => return (Err(end(done)), buf),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (Err(e), buf),
        }
    }
    (Ok(()), buf)
}

/// [`resume`] for reads: fills `buf` to its capacity.
pub(crate) async fn read_exact<B, F, Fut>(
    buf: B,
    transfer: F,
    end: impl Fn(usize) -> io::Error,
) -> (io::Result<()>, B)
where
    B: IoBufMut,
    F: FnMut(Slice<B>, usize) -> Fut,
    Fut: Future<Output = (io::Result<usize>, Slice<B>)>,
{
    let total = buf.bytes_total();
    resume(buf, total, transfer, end).await
}

/// [`resume`] for writes: sends every initialised byte of `buf`.
pub(crate) async fn write_all<B, F, Fut>(
    buf: B,
    transfer: F,
    end: impl Fn(usize) -> io::Error,
) -> (io::Result<()>, B)
where
    B: IoBuf,
    F: FnMut(Slice<B>, usize) -> Fut,
    Fut: Future<Output = (io::Result<usize>, Slice<B>)>,
{
    let total = buf.bytes_init();
    resume(buf, total, transfer, end).await
}

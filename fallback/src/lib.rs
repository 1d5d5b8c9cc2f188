//! The readiness world of trueio: building blocks for an epoll event loop.
//!
//! Where io_uring is unavailable, trueio runs its completion API on top of an
//! epoll readiness driver built from these pieces. This crate knows nothing
//! about that API and is usable on its own:
//!
//! * [`Poller`] — an epoll instance: register fds with a `u64` token, an
//!   [`Interest`] and a [`Mode`], then [`Poller::wait`] for [`Events`].
//! * [`Waker`] — an eventfd that wakes a blocked `wait` from any thread.
//! * [`TimerHeap`] — deadlines with cancellation; its
//!   [`next_deadline`](TimerHeap::next_deadline) becomes the wait timeout.
//! * [`Pool`] — a bounded, elastic thread pool for the syscalls epoll cannot
//!   make non-blocking (regular-file I/O, `openat2`, `statx`, `fsync`, ...).
//!   Finished jobs are collected in a list and announced through a [`Waker`].
//! * [`Aio`] — kernel AIO (`io_submit` with `RWF_NOWAIT`) for `O_DIRECT` file
//!   transfers without a thread each; completions arrive on an eventfd.
//!
//! Only APIs from the epoll/eventfd/pthread era are used (Linux 2.6.27+ for
//! `epoll_create1` and `eventfd` flags), and AIO's `RWF_NOWAIT` (4.14) where
//! the caller asks for [`Aio`].
//!
//! # A reactor loop
//!
//! One iteration: compute the timeout from the earliest timer, wait, handle
//! fd events by token, and when the waker's reserved token fires, reset the
//! waker and then drain the pool's completions; finally fire expired timers.
//!
//! ```
//! use std::io::{Read, Write};
//! use std::os::fd::AsRawFd;
//! use std::os::unix::net::UnixStream;
//! use std::time::{Duration, Instant};
//! use trueio_fallback::{
//!     Done, Events, Interest, Job, Mode, Poller, Pool, PoolConfig, TimerHeap, Waker,
//! };
//!
//! const WAKER: u64 = u64::MAX;
//! const SOCKET: u64 = 1;
//!
//! // Pretend `fsync`: something epoll cannot wait for.
//! struct Blocking;
//! impl Job for Blocking {
//!     fn run(&mut self) -> isize {
//!         std::thread::sleep(Duration::from_millis(5));
//!         0
//!     }
//! }
//!
//! # fn main() -> std::io::Result<()> {
//! let poller = Poller::new()?;
//! let waker = Waker::new()?;
//! poller.add(waker.fd(), WAKER, Interest::READABLE, Mode::Edge)?;
//! let pool = Pool::new(PoolConfig::default(), waker.clone())?;
//! let mut timers = TimerHeap::new();
//!
//! let (mut sock, mut peer) = UnixStream::pair()?;
//! sock.set_nonblocking(true)?;
//! poller.add(sock.as_raw_fd(), SOCKET, Interest::READABLE, Mode::Edge)?;
//!
//! peer.write_all(b"hello")?;
//! pool.try_submit(7, Blocking)?;
//! timers.insert(Instant::now() + Duration::from_millis(10), "tick");
//!
//! let (mut got_data, mut got_job, mut got_timer) = (false, false, false);
//! let mut events = Events::with_capacity(64);
//! let mut done: Vec<Done<Blocking>> = Vec::new();
//! let give_up = Instant::now() + Duration::from_secs(10);
//! while !(got_data && got_job && got_timer) && Instant::now() < give_up {
//!     let timeout = timers
//!         .next_deadline()
//!         .map(|d| d.saturating_duration_since(Instant::now()));
//!     poller.wait(&mut events, timeout.or(Some(Duration::from_secs(1))))?;
//!     for ev in &events {
//!         match ev.token() {
//!             WAKER => {
//!                 waker.reset(); // first reset, then drain
//!                 pool.drain_completed(&mut done);
//!                 for d in done.drain(..) {
//!                     assert_eq!((d.token, d.result), (7, 0));
//!                     got_job = true;
//!                 }
//!             }
//!             SOCKET if ev.readable() => {
//!                 // Edge-triggered: read until WouldBlock.
//!                 let mut buf = [0u8; 64];
//!                 loop {
//!                     match sock.read(&mut buf) {
//!                         Ok(0) => break, // EOF
//!                         Ok(_) => got_data = true,
//!                         Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
//!                         Err(e) => return Err(e),
//!                     }
//!                 }
//!             }
//!             _ => {}
//!         }
//!     }
//!     while let Some((_id, what)) = timers.pop_expired(Instant::now()) {
//!         assert_eq!(what, "tick");
//!         got_timer = true;
//!     }
//! }
//! assert!(got_data && got_job && got_timer);
//! poller.delete(sock.as_raw_fd())?; // delete before close
//! # Ok(())
//! # }
//! ```
#![deny(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks
)]

/// Evaluates a libc call and turns a `-1` result into the thread's `errno` as
/// an [`std::io::Error`]; any other value is returned as `Ok`.
///
/// The argument is the full call expression, including its `unsafe` block,
/// so that each call site documents its own safety argument:
///
/// ```text
/// // SAFETY: ...
/// let fd = syscall!(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
/// ```
macro_rules! syscall {
    ($call:expr) => {{
        let res = $call;
        if res == -1 {
            ::std::result::Result::Err(::std::io::Error::last_os_error())
        } else {
            ::std::result::Result::Ok(res)
        }
    }};
}

pub mod aio;
pub mod poller;
pub mod pool;
pub mod timer;
pub mod waker;

pub use aio::{Aio, AioOp};
pub use poller::{Event, Events, Interest, Mode, Poller};
pub use pool::{Done, Job, JobId, Pool, PoolConfig, RejectReason, Rejected};
pub use timer::{TimerHeap, TimerId};
pub use waker::Waker;

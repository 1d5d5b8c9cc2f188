//! # trueio: completion-based asynchronous I/O for Linux
//!
//! An engine that takes owned operations and gives back completions: io_uring where the
//! kernel allows it, an epoll readiness engine with a blocking pool where it does not (old
//! kernels, seccomp profiles, `kernel.io_uring_disabled`). The same program runs on both,
//! with the same results, errors and ownership rules; only the speed differs.
//!
//! - [`Engine`]: the Completion API. [`Engine::submit`] moves an operation in and returns a
//!   [`Ticket`]; the ticket gives the operation's output back (`wait`, or `.await`).
//! - [`op`]: the operations (read, write, vectored, fixed-buffer, fsync, fallocate, openat2,
//!   close, statx, timeout, link timeout, cancel, poll, splice, accept, connect, send, recv,
//!   shutdown).
//! - [`rt`], [`time`], [`fs`]: async/await on top, one executor and engine per thread.
//! - [`buf`]: owned buffers, the registered [`BufPool`](buf::BufPool), aligned buffers.
//! - [`Engine::report`] explains which backend runs and which path each operation takes.
//!
//! Backend choice: `TRUEIO_BACKEND=auto|uring|epoll`, or [`Builder::backend`].
//!
//! ```
//! # fn main() -> std::io::Result<()> {
//! use trueio::{op, Engine};
//! let engine = Engine::new()?;
//! let t = engine.submit(op::Nop::new());
//! t.wait()??;
//! # Ok(()) }
//! ```

#![deny(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks
)]
#![doc(test(attr(deny(warnings))))]

mod backend;
pub mod buf;
mod capability;
mod engine;
mod errno;
mod fd;
mod fork;
pub mod fs;
pub mod net;
pub mod op;
pub mod rt;
mod stats;
pub mod time;
mod user_data;

pub use capability::{Backend, Feature, Features, Report, Status};
pub use engine::{BackendChoice, Builder, Chain, Engine, Subscription, Ticket};
pub use fd::{Fd, FixedFile};
pub use stats::Stats;

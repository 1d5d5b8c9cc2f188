//! `io_uring_enter`, called directly so that the engine controls the ring descriptor (a
//! registered index, or a test's stand-in), the timeout argument and the error handling.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

pub(crate) const ENTER_GETEVENTS: u32 = 1 << 0;
pub(crate) const ENTER_SQ_WAKEUP: u32 = 1 << 1;
pub(crate) const ENTER_EXT_ARG: u32 = 1 << 3;
pub(crate) const ENTER_REGISTERED_RING: u32 = 1 << 4;

/// `struct io_uring_getevents_arg` (5.11).
#[repr(C)]
struct GetEventsArg {
    sigmask: u64,
    sigmask_sz: u32,
    min_wait_usec: u32,
    ts: u64,
}

/// `struct __kernel_timespec`.
#[repr(C)]
struct KernelTimespec {
    tv_sec: i64,
    tv_nsec: i64,
}

/// One `io_uring_enter` call. `timeout` needs `IORING_FEAT_EXT_ARG`; the caller passes it only
/// when the kernel has it.
pub(crate) fn enter(
    fd: RawFd,
    registered: bool,
    to_submit: u32,
    min_complete: u32,
    mut flags: u32,
    timeout: Option<Duration>,
) -> io::Result<u32> {
    if registered {
        flags |= ENTER_REGISTERED_RING;
    }
    let ts;
    let arg;
    let (argp, argsz): (*const libc::c_void, usize) = match timeout {
        Some(t) => {
            ts = KernelTimespec {
                tv_sec: t.as_secs().min(i64::MAX as u64) as i64,
                tv_nsec: t.subsec_nanos() as i64,
            };
            arg = GetEventsArg {
                sigmask: 0,
                sigmask_sz: 0,
                min_wait_usec: 0,
                ts: &ts as *const KernelTimespec as u64,
            };
            flags |= ENTER_EXT_ARG;
            (
                &arg as *const GetEventsArg as *const libc::c_void,
                std::mem::size_of::<GetEventsArg>(),
            )
        }
        None => (std::ptr::null(), 0),
    };
    // SAFETY: io_uring_enter reads `argp` (a GetEventsArg pointing at `ts`, both alive on this
    // frame for the call) only with EXT_ARG; every SQE it consumes points at memory owned by
    // operations the engine keeps until their completions are reaped.
    let r = unsafe {
        libc::syscall(
            libc::SYS_io_uring_enter,
            fd,
            to_submit,
            min_complete,
            flags,
            argp,
            argsz,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as u32)
    }
}

/// Registers the ring's own descriptor (`IORING_REGISTER_RING_FDS`, 5.18) and returns the
/// index to pass to `io_uring_enter` with `IORING_ENTER_REGISTERED_RING`.
pub(crate) fn register_ring_fd(ring_fd: RawFd) -> io::Result<u32> {
    #[repr(C)]
    struct RsrcUpdate {
        offset: u32,
        resv: u32,
        data: u64,
    }
    const IORING_REGISTER_RING_FDS: u32 = 20;
    let mut up = RsrcUpdate {
        offset: u32::MAX,
        resv: 0,
        data: ring_fd as u64,
    };
    // SAFETY: the kernel reads and writes exactly one RsrcUpdate, alive on this frame.
    let r = unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            ring_fd,
            IORING_REGISTER_RING_FDS,
            &mut up as *mut RsrcUpdate,
            1u32,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(up.offset)
}

//! Runs a command with io_uring denied, as an old kernel or a container would deny it.
//!
//! `cargo run --example deny_io_uring -- [--errno ENOSYS|EPERM] -- COMMAND [ARGS...]`
//!
//! Installs a seccomp filter that fails `io_uring_setup`, `io_uring_enter` and
//! `io_uring_register` with the chosen errno (ENOSYS: a kernel before 5.1; EPERM: Docker's
//! default profile or `kernel.io_uring_disabled`), then executes the command under it. The
//! filter is inherited by every child, so `deny_io_uring -- cargo test` runs the whole suite
//! where io_uring cannot be had.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

const IO_URING_SETUP: u32 = 425;
const IO_URING_ENTER: u32 = 426;
const IO_URING_REGISTER: u32 = 427;
/// `AUDIT_ARCH_X86_64` from `<linux/audit.h>`.
const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// Installs the filter on this thread (inherited across fork and exec).
fn deny(errno: i32) -> io::Result<()> {
    const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let mut prog = vec![
        // seccomp_data.arch at offset 4: only x86_64 numbers are known here.
        stmt(LD_W_ABS, 4),
        jump(JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        stmt(RET_K, libc::SECCOMP_RET_ALLOW),
        // seccomp_data.nr at offset 0.
        stmt(LD_W_ABS, 0),
        jump(JEQ_K, IO_URING_SETUP, 3, 0),
        jump(JEQ_K, IO_URING_ENTER, 2, 0),
        jump(JEQ_K, IO_URING_REGISTER, 1, 0),
        stmt(RET_K, libc::SECCOMP_RET_ALLOW),
        stmt(
            RET_K,
            libc::SECCOMP_RET_ERRNO | (errno as u32 & libc::SECCOMP_RET_DATA),
        ),
    ];
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: PR_SET_NO_NEW_PRIVS takes plain integers.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fprog` points at `prog`, both alive for the call; the kernel copies the filter.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &fprog as *const libc::sock_fprog,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1).peekable();
    let mut errno = libc::ENOSYS;
    let mut cmd = Vec::new();
    while let Some(a) = args.next() {
        match a.to_str() {
            Some("--errno") => match args.next().as_ref().and_then(|v| v.to_str()) {
                Some("ENOSYS") => errno = libc::ENOSYS,
                Some("EPERM") => errno = libc::EPERM,
                other => {
                    eprintln!("deny_io_uring: --errno takes ENOSYS or EPERM, not {other:?}");
                    return ExitCode::from(2);
                }
            },
            Some("--") => {
                cmd.extend(args.by_ref());
                break;
            }
            _ => {
                cmd.push(a);
                cmd.extend(args.by_ref());
                break;
            }
        }
    }
    if cmd.is_empty() {
        eprintln!("usage: deny_io_uring [--errno ENOSYS|EPERM] -- COMMAND [ARGS...]");
        return ExitCode::from(2);
    }
    if let Err(e) = deny(errno) {
        eprintln!("deny_io_uring: installing the seccomp filter failed: {e}");
        return ExitCode::FAILURE;
    }
    let cargs: Vec<CString> = match cmd
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
    {
        Ok(v) => v,
        Err(_) => {
            eprintln!("deny_io_uring: an argument contains a NUL byte");
            return ExitCode::from(2);
        }
    };
    let mut ptrs: Vec<*const libc::c_char> = cargs.iter().map(|c| c.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // SAFETY: `ptrs` is a NULL-terminated array of pointers to NUL-terminated strings that
    // outlive the call; execvp only returns on failure.
    unsafe { libc::execvp(ptrs[0], ptrs.as_ptr()) };
    eprintln!(
        "deny_io_uring: cannot run {:?}: {}",
        cmd[0],
        io::Error::last_os_error()
    );
    ExitCode::from(127)
}

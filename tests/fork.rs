//! fork() after an engine is built: the child gets a clear error from the inherited engine
//! (never a crash or a corrupted parent), can build an engine of its own, and the parent's
//! engine is unaffected.
//!
//! The parent tests re-run this binary with `--test-threads=1` so the fork happens in a
//! process with a single test thread.

use std::process::Command;

use trueio::{op, BackendChoice, Engine};

const CHILD_ENV: &str = "TRUEIO_FORK_CHILD";

fn run_child(backend: &str) {
    let exe = std::env::current_exe().expect("current exe");
    let out = Command::new(exe)
        .args(["--exact", "fork_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, backend)
        .output()
        .expect("spawn the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "fork child ({backend}) failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains(&format!("FORK-OK {backend}")),
        "the child did not run its body:\n{stdout}\n{stderr}"
    );
}

#[test]
fn fork_with_an_io_uring_engine() {
    if Engine::builder()
        .backend(BackendChoice::Uring)
        .build()
        .is_err()
    {
        eprintln!("skipped: io_uring unavailable here");
        return;
    }
    run_child("uring");
}

#[test]
fn fork_with_an_epoll_engine() {
    run_child("epoll");
}

/// Harness entry, not a test of its own: runs only in the child started above.
#[test]
fn fork_child() {
    let Ok(backend) = std::env::var(CHILD_ENV) else {
        eprintln!("not a child run ({CHILD_ENV} unset): nothing to check");
        return;
    };
    let choice = BackendChoice::parse(&backend).unwrap();
    let engine = Engine::builder().backend(choice).build().unwrap();
    engine.submit(op::Nop::new()).wait().unwrap().unwrap();
    // A pending operation in the parent, to prove the child's drop leaves it alone.
    let (rx, tx) = {
        let mut fds = [0; 2];
        // SAFETY: a valid two-int array.
        assert_eq!(
            unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) },
            0
        );
        (fds[0], fds[1])
    };
    let pending = engine.submit(op::Read::stream(rx, vec![0u8; 8]));
    let _ = engine.poll();

    // SAFETY: the child below only calls the engine (which must refuse cleanly), builds a new
    // one and exits with _exit; no locks are held across the fork by this thread.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = (|| {
            let e = match engine.submit(op::Nop::new()).wait() {
                Err(e) => e,
                Ok(_) => return 2,
            };
            if !e.to_string().contains("fork") {
                return 3;
            }
            if engine.turn(None).is_ok() {
                return 4;
            }
            drop(pending);
            drop(engine);
            let fresh = match Engine::builder().backend(choice).build() {
                Ok(e) => e,
                Err(_) => return 5,
            };
            match fresh.submit(op::Nop::new()).wait() {
                Ok(Ok(())) => 0,
                _ => 6,
            }
        })();
        // SAFETY: leaves the child at once, without running the parent's atexit handlers or
        // destructors.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for the child just forked.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status),
        "the child crashed (status {status:#x})"
    );
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "the child's check failed (exit code)"
    );

    // The parent's engine and its pending read are unaffected.
    // SAFETY: writes one byte to the pipe created above.
    assert_eq!(unsafe { libc::write(tx, b"x".as_ptr().cast(), 1) }, 1);
    let (n, buf) = pending.wait().unwrap();
    assert_eq!(n.unwrap(), 1);
    assert_eq!(buf[0], b'x');
    engine.submit(op::Nop::new()).wait().unwrap().unwrap();
    // SAFETY: closes the pipe's two ends, ours.
    unsafe {
        libc::close(rx);
        libc::close(tx);
    }
    eprintln!("FORK-OK {backend}");
}

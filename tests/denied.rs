//! io_uring denied by a seccomp filter, as on a kernel before 5.1 (ENOSYS) or under a
//! container profile (EPERM): `auto` takes epoll and says why, operations work, and `uring`
//! fails with a clear error.
//!
//! The parent test re-runs this binary under `examples/deny_io_uring` (built by `cargo test`
//! with the other examples), with TRUEIO_DENIED_CHILD set so that only the child body runs.

use std::path::PathBuf;
use std::process::Command;

use trueio::{op, Backend, BackendChoice, Engine};

fn deny_tool() -> Option<PathBuf> {
    // target/<profile>/deps/denied-HASH -> target/<profile>/examples/deny_io_uring
    let exe = std::env::current_exe().ok()?;
    let p = exe
        .parent()?
        .parent()?
        .join("examples")
        .join("deny_io_uring");
    p.exists().then_some(p)
}

fn run_child(errno: &str) {
    let Some(tool) = deny_tool() else {
        eprintln!(
            "skipped: examples/deny_io_uring not built (run `cargo test`, which builds examples)"
        );
        return;
    };
    let exe = std::env::current_exe().expect("current exe");
    let out = Command::new(tool)
        .args(["--errno", errno, "--"])
        .arg(exe)
        .args(["--exact", "child_body", "--nocapture", "--test-threads=1"])
        .env("TRUEIO_DENIED_CHILD", errno)
        .env_remove("TRUEIO_BACKEND")
        .output()
        .expect("spawn child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child under {errno} failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("1 passed") && stderr.contains("CHILD-OK"),
        "child did not run its body:\n{stdout}\n{stderr}"
    );
}

#[test]
fn auto_takes_epoll_when_setup_fails_with_enosys() {
    run_child("ENOSYS");
}

#[test]
fn auto_takes_epoll_when_setup_fails_with_eperm() {
    run_child("EPERM");
}

#[test]
fn child_body() {
    let Ok(errno) = std::env::var("TRUEIO_DENIED_CHILD") else {
        return; // only meaningful under the filter
    };
    let e = Engine::builder()
        .backend(BackendChoice::Auto)
        .build()
        .expect("auto engine");
    assert_eq!(e.backend(), Backend::Epoll, "auto must fall back to epoll");
    let reason = &e.report().backend_reason;
    assert!(
        reason.contains(&errno),
        "report must give the reason: {reason}"
    );
    // Operations work on the fallback.
    let f = std::fs::File::open("/proc/self/stat").expect("open");
    let (n, buf) = e
        .submit(op::Read::at(&f, vec![0u8; 256], 0))
        .wait()
        .unwrap();
    assert!(n.unwrap() > 0 && buf.starts_with(std::process::id().to_string().as_bytes()));
    e.submit(op::Nop::new()).wait().unwrap().unwrap();
    // `uring` fails with a clear error, never a panic, never a silent fallback.
    let err = Engine::builder()
        .backend(BackendChoice::Uring)
        .build()
        .expect_err("uring must fail where io_uring is denied");
    let msg = err.to_string();
    assert!(
        msg.contains("io_uring") && msg.contains(&errno),
        "unclear error: {msg}"
    );
    eprintln!("CHILD-OK: {reason}; uring error: {msg}");
}

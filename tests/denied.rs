//! io_uring denied by a seccomp filter, as on a kernel before 5.1 (ENOSYS) or under a
//! container profile (EPERM): `auto` takes epoll and says why, operations work, and `uring`
//! fails with a clear error.
//!
//! The parent test re-runs this binary under `examples/deny_io_uring` (built by `cargo test`
//! with the other examples), with TRUEIO_DENIED_CHILD set so that only the child body runs.
mod util;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use trueio::{op, Backend, BackendChoice, Engine};

/// `examples/deny_io_uring`, next to this test binary:
/// target/<profile>/deps/denied-HASH -> target/<profile>/examples/deny_io_uring.
fn deny_tool() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let p = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lives in target/<profile>/deps")
        .join("examples")
        .join("deny_io_uring");
    // Without the tool nothing here can be checked: fail rather than pass unchecked.
    assert!(
        p.exists(),
        "{} is not built: `cargo test` builds it with the other examples; with a target \
         filter (`cargo test --test denied`) run `cargo build --example deny_io_uring` first",
        p.display()
    );
    p
}

fn run_child(errno: &str) {
    let tool = deny_tool();
    let exe = std::env::current_exe().expect("current exe");
    let out = util::run_child_within(
        Command::new(tool)
            .args(["--errno", errno, "--"])
            .arg(exe)
            .args(["--exact", "child_body", "--nocapture", "--test-threads=1"])
            .env("TRUEIO_DENIED_CHILD", errno)
            .env_remove("TRUEIO_BACKEND"),
        Duration::from_secs(60),
        &format!("child under {errno}"),
    );
    let (stdout, stderr) = (&out.stdout, &out.stderr);
    assert!(
        out.status.success(),
        "child under {errno} failed ({}):\n{stdout}\n{stderr}",
        out.status
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

/// Harness entry, not a test of its own: the body of the child that `run_child` starts under
/// the seccomp filter (TRUEIO_DENIED_CHILD names the errno). Run any other way it checks
/// nothing and says so; the two tests above are what check it.
#[test]
fn child_body() {
    let Ok(errno) = std::env::var("TRUEIO_DENIED_CHILD") else {
        eprintln!("child_body: not a child run (TRUEIO_DENIED_CHILD unset): nothing to check");
        return;
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
    let (n, buf) = util::run(&e, op::Read::at(&f, vec![0u8; 256], 0));
    assert!(n.unwrap() > 0 && buf.starts_with(std::process::id().to_string().as_bytes()));
    util::run(&e, op::Nop::new()).unwrap();
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

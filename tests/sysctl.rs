//! `kernel.io_uring_disabled=2` (6.6): io_uring denied to everyone, root included. A test
//! binary of its own with one test, since the sysctl is global: no other test of this
//! process may run while it is set. Root only; it restores the value it found, also when the
//! test fails.

mod util;

use trueio::{Backend, BackendChoice, Engine};

const SYSCTL: &str = "/proc/sys/kernel/io_uring_disabled";

/// Puts the sysctl back on drop.
struct Restore(String);

impl Drop for Restore {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(SYSCTL, &self.0) {
            eprintln!("could not restore {SYSCTL} to {}: {e}", self.0.trim());
        }
    }
}

#[test]
fn io_uring_disabled_2_falls_back_to_epoll_with_the_reason() {
    let Ok(old) = std::fs::read_to_string(SYSCTL) else {
        util::skip("no kernel.io_uring_disabled sysctl here (before 6.6)");
        return;
    };
    if let Err(e) = Engine::builder().backend(BackendChoice::Uring).build() {
        util::skip(&format!(
            "io_uring is already unavailable here ({e}); the test shows the sysctl turning it off"
        ));
        return;
    }
    if let Err(e) = std::fs::write(SYSCTL, "2") {
        util::skip(&format!(
            "cannot set kernel.io_uring_disabled (needs root): {e}"
        ));
        return;
    }
    let _restore = Restore(old);

    // auto: the epoll backend, and the report says why.
    let engine = Engine::builder()
        .backend(BackendChoice::Auto)
        .build()
        .expect("auto must fall back to epoll");
    assert_eq!(engine.backend(), Backend::Epoll);
    let reason = &engine.report().backend_reason;
    assert!(
        reason.contains("EPERM") || reason.contains("ermission"),
        "the reason should name the refusal: {reason}"
    );
    assert!(
        reason.contains("io_uring_disabled=2"),
        "the reason should give the sysctl: {reason}"
    );
    // Operations work there.
    let dir = util::TempDir::new("sysctl");
    let f = dir.rw_file("f", b"denied but working");
    let (n, buf) = engine
        .submit(trueio::op::Read::at(&f, vec![0u8; 64], 0))
        .wait()
        .unwrap();
    assert_eq!(n.unwrap(), 18);
    assert_eq!(&buf[..18], b"denied but working");

    // uring: a clear error, not a panic and not a silent fallback.
    let e = Engine::builder()
        .backend(BackendChoice::Uring)
        .build()
        .expect_err("io_uring must be refused");
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
    assert!(e.to_string().contains("io_uring_disabled"), "{e}");
}

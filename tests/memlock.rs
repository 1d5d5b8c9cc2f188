//! Registered buffers degrade to plain I/O when memory cannot be pinned (RLIMIT_MEMLOCK too
//! low, no CAP_IPC_LOCK), with the same results and a report that says why.
//!
//! The limits are process-wide and cannot be raised again, so the body runs in a re-executed
//! copy of this test binary (`memlock_child`, enabled by an environment variable); the
//! parent test checks its exit status.
mod util;

use std::process::Command;
use std::time::Duration;

use trueio::op::{ReadFixed, WriteFixed};
use trueio::{Backend, BackendChoice, Engine};
use util::{pattern, wait, TempDir};

const CHILD_ENV: &str = "TRUEIO_TEST_MEMLOCK_CHILD";
const LIMIT_BYTES: u64 = 64 * 1024;
const BUFS: usize = 16;
const BUF_SIZE: usize = 64 * 1024;
const CAP_IPC_LOCK: u32 = 14;
/// What the child prints once its whole body has run.
const CHILD_DONE: &str = "MEMLOCK-CHILD-OK";

/// Lowers RLIMIT_MEMLOCK (soft and hard) and drops CAP_IPC_LOCK from the bounding set and
/// from this thread's effective and permitted sets.
fn drop_pinning_rights() {
    let lim = libc::rlimit {
        rlim_cur: LIMIT_BYTES,
        rlim_max: LIMIT_BYTES,
    };
    // SAFETY: a valid rlimit on this frame.
    let r = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) };
    assert_eq!(r, 0, "setrlimit: {}", std::io::Error::last_os_error());

    // SAFETY: PR_CAPBSET_DROP takes a capability number; no memory is passed.
    let r = unsafe {
        libc::prctl(
            libc::PR_CAPBSET_DROP,
            CAP_IPC_LOCK as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    // EPERM without CAP_SETPCAP: then the bounding set was never ours to keep.
    assert!(
        r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM),
        "PR_CAPBSET_DROP: {}",
        std::io::Error::last_os_error()
    );

    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut hdr = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget writes two Data structs, which `data` holds.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut hdr as *mut Header, data.as_mut_ptr()) };
    assert_eq!(r, 0, "capget: {}", std::io::Error::last_os_error());
    let bit = 1u32 << CAP_IPC_LOCK;
    data[0].effective &= !bit;
    data[0].permitted &= !bit;
    data[0].inheritable &= !bit;
    // SAFETY: capset reads the header and two Data structs.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut Header, data.as_ptr()) };
    assert_eq!(r, 0, "capset: {}", std::io::Error::last_os_error());

    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    let eff = status
        .lines()
        .find(|l| l.starts_with("CapEff:"))
        .map(|l| u64::from_str_radix(l["CapEff:".len()..].trim(), 16).unwrap())
        .unwrap();
    assert_eq!(eff & (1 << CAP_IPC_LOCK), 0, "CAP_IPC_LOCK still effective");
}

/// Writes every pool buffer's pattern with WriteFixed (all in flight at once), reads each back
/// with ReadFixed, and checks every byte.
fn fixed_round_trips(engine: &Engine) {
    let dir = TempDir::new("memlock");
    let file = dir.rw_file("f", b"");
    let pool = engine.buffers().expect("pool configured");
    assert_eq!(pool.count(), BUFS);

    let mut writes = Vec::new();
    for i in 0..BUFS {
        let mut fb = engine.fixed_buf().unwrap();
        assert_eq!(fb.extend_from_slice(&pattern(BUF_SIZE, i as u8)), BUF_SIZE);
        writes.push(engine.submit(WriteFixed::at(&file, fb, (i * BUF_SIZE) as u64)));
    }
    assert_eq!(engine.buffers().unwrap().available(), 0);
    for (i, t) in writes.into_iter().enumerate() {
        let (n, _) = wait(engine, t);
        assert_eq!(n.unwrap(), BUF_SIZE, "write_fixed {i}");
    }
    assert_eq!(engine.buffers().unwrap().available(), BUFS);
    assert_eq!(file.metadata().unwrap().len(), (BUFS * BUF_SIZE) as u64);

    let mut reads = Vec::new();
    for i in (0..BUFS).rev() {
        let fb = engine.fixed_buf().unwrap();
        reads.push((
            i,
            engine.submit(ReadFixed::at(&file, fb, (i * BUF_SIZE) as u64)),
        ));
    }
    for (i, t) in reads {
        let (n, fb) = wait(engine, t);
        assert_eq!(n.unwrap(), BUF_SIZE, "read_fixed {i}");
        assert!(
            fb[..] == pattern(BUF_SIZE, i as u8)[..],
            "read_fixed {i}: bytes differ"
        );
    }
    assert_eq!(engine.buffers().unwrap().available(), BUFS);
}

/// Harness entry, not a test of its own: the child's body, run by `run_child` in a re-executed
/// copy of this binary with TRUEIO_TEST_MEMLOCK_CHILD naming the backend. Run any other way it
/// checks nothing and says so; `registered_buffers_degrade_under_low_memlock` is what checks it.
#[test]
fn memlock_child() {
    let Ok(which) = std::env::var(CHILD_ENV) else {
        eprintln!("memlock_child: not a child run ({CHILD_ENV} unset): nothing to check");
        return;
    };
    let choice = BackendChoice::parse(&which).unwrap();
    drop_pinning_rights();
    let engine = Engine::builder()
        .fixed_buffers(BUFS, BUF_SIZE)
        .backend(choice)
        .build()
        .expect("an engine builds without pinnable memory");
    let rep = engine.report();
    eprintln!("registered buffers: {:?}", rep.registered_buffers);
    assert_eq!(
        rep.memlock.0, LIMIT_BYTES,
        "the report shows the lowered limit"
    );
    assert!(
        !rep.registered_buffers.active,
        "registration must have been refused"
    );
    assert!(!engine.buffers().unwrap().is_registered());
    if choice == BackendChoice::Uring {
        assert_eq!(
            engine.backend(),
            Backend::Uring,
            "io_uring never silently degrades"
        );
        assert!(
            rep.registered_buffers
                .detail
                .to_lowercase()
                .contains("memlock"),
            "the report should name the memlock limit: {:?}",
            rep.registered_buffers.detail
        );
    }
    fixed_round_trips(&engine);
    eprintln!("{CHILD_DONE}: {which}");
}

/// Runs `memlock_child` in a fresh copy of this binary for `backend`; bounded by a deadline.
fn run_child(backend: &str) {
    // RLIMIT_MEMLOCK charges are per user, and since 6.13 ring memory is charged too: children
    // running side by side would exhaust each other's 64 KiB. One child at a time.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = util::run_child_within(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "memlock_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, backend)
            .env_remove("TRUEIO_TEST_ONLY"),
        Duration::from_secs(60),
        &format!("memlock child for {backend}"),
    );
    let (status, stdout, stderr) = (out.status, &out.stdout, &out.stderr);
    assert!(
        status.success(),
        "memlock child for {backend} failed ({status}):\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("test memlock_child ... ok") && stdout.contains("1 passed"),
        "the child did not run memlock_child:\n{stdout}\n{stderr}"
    );
    // A child that never saw the variable would pass too, having checked nothing.
    assert!(
        stderr.contains(&format!("{CHILD_DONE}: {backend}")),
        "memlock_child returned without running its body:\n{stdout}\n{stderr}"
    );
    eprint!("{stderr}");
}

both_backends! {
    fn registered_buffers_degrade_under_low_memlock(b: Builder) {
        let engine = b.fixed_buffers(BUFS, BUF_SIZE).build().unwrap();
        let backend = engine.backend();
        if backend == Backend::Uring {
            // Control: with this process's own limits the same pool registers (root or a
            // large enough limit), so the child's degradation comes from the lowered rights.
            let (soft, _) = engine.report().memlock;
            let masked = engine
                .report()
                .registered_buffers
                .detail
                .contains("disabled by the builder");
            if soft >= 4 * (BUFS * BUF_SIZE) as u64 && !masked {
                assert!(
                    engine.report().registered_buffers.active,
                    "control: registration works with the normal limit: {:?}",
                    engine.report().registered_buffers
                );
            }
        }
        drop(engine);
        run_child(match backend {
            Backend::Uring => "uring",
            Backend::Epoll => "epoll",
        });
    }
}

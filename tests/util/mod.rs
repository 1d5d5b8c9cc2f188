//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use trueio::op::{OpenAt2, OpenAt2Direct, OpenHow, Read};
use trueio::{BackendChoice, Builder, Engine, Feature};

/// Generates, from one body, one test per backend (`uring::name`, `epoll::name`) and one per
/// rung of the degradation ladder: io_uring with each optional feature switched off in turn
/// (`uring_no_<feature>::name`), and epoll without `RWF_NOWAIT` attempts. The body gets a
/// `Builder` configured for its variant.
#[macro_export]
macro_rules! both_backends {
    ($($(#[$meta:meta])* fn $name:ident($b:ident: Builder) $body:block)*) => {
        $crate::backend_variant!(uring, Uring, [], $($name)*);
        $crate::backend_variant!(epoll, Epoll, [], $($name)*);
        $crate::backend_variant!(uring_no_defer_taskrun, Uring, [DeferTaskrun], $($name)*);
        $crate::backend_variant!(uring_no_single_issuer, Uring, [SingleIssuer, DeferTaskrun], $($name)*);
        $crate::backend_variant!(uring_no_taskrun_flags, Uring, [DeferTaskrun, CoopTaskrun], $($name)*);
        $crate::backend_variant!(uring_no_submit_all, Uring, [SubmitAll], $($name)*);
        $crate::backend_variant!(uring_no_ring_fd, Uring, [RegisteredRingFd], $($name)*);
        $crate::backend_variant!(uring_no_fixed_buffers, Uring, [RegisteredBuffers], $($name)*);
        $crate::backend_variant!(uring_no_fixed_files, Uring, [FixedFiles], $($name)*);
        $crate::backend_variant!(uring_no_ext_arg, Uring, [ExtArg], $($name)*);
        // The plain fallback: no RWF_NOWAIT attempts, no kernel AIO; files on the pool only.
        $crate::backend_variant!(epoll_no_nowait, Epoll, [NowaitReads, LinuxAio], $($name)*);
        $($(#[$meta])* fn $name($b: trueio::Builder) $body)*
    };
}

/// One module of tests for a backend with some features disabled (see `both_backends!`).
#[macro_export]
macro_rules! backend_variant {
    ($module:ident, $choice:ident, [$($feature:ident),*], $($name:ident)*) => {
        mod $module {
            fn configure() -> Option<trueio::Builder> {
                $crate::util::variant(
                    trueio::BackendChoice::$choice,
                    &[$(trueio::Feature::$feature),*],
                )
            }
            $(
                #[test]
                fn $name() {
                    // `None`: the backend cannot run here; `util::skip` has said so.
                    let Some(b) = configure() else { return };
                    super::$name(b)
                }
            )*
        }
    };
}

/// A builder for `choice`, or `None` (with the reason given by [`skip`]) when that backend
/// cannot run here: io_uring missing (ENOSYS, a kernel too old), denied (EPERM/EACCES: a
/// seccomp profile, `kernel.io_uring_disabled`) or short of memory (RLIMIT_MEMLOCK), or the run
/// restricted to the other backend by `TRUEIO_TEST_ONLY`. Any other io_uring setup failure is a
/// bug and fails the test instead of skipping it.
pub fn builder(choice: BackendChoice) -> Option<Builder> {
    if let Ok(only) = std::env::var("TRUEIO_TEST_ONLY") {
        let only_choice = BackendChoice::parse(&only)
            .unwrap_or_else(|e| panic!("TRUEIO_TEST_ONLY={only:?}: {e}"));
        // `auto` (or empty) restricts nothing.
        if only_choice != BackendChoice::Auto && only_choice != choice {
            skip(&format!("TRUEIO_TEST_ONLY={only}"));
            return None;
        }
    }
    let b = Engine::builder().backend(choice);
    if choice == BackendChoice::Uring {
        if let Err(e) = b.clone().build() {
            use io::ErrorKind::{OutOfMemory, PermissionDenied, Unsupported};
            assert!(
                matches!(e.kind(), Unsupported | PermissionDenied | OutOfMemory),
                "io_uring setup failed, and not because io_uring is unavailable here \
                 ({:?}): {e}",
                e.kind()
            );
            skip(&format!("io_uring unavailable here: {e}"));
            return None;
        }
    }
    Some(b)
}

/// Says why a test passes without running its body: on the test's own (captured) stderr, and
/// once per reason and process straight to the real stderr, so that a skip shows in a plain
/// `cargo test` run too.
pub fn skip(reason: &str) {
    use std::io::Write as _;
    static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    eprintln!("skipped: {reason}");
    let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
    if !said.iter().any(|r| r == reason) {
        said.push(reason.to_string());
        // `io::stderr()` itself is not captured by the test harness (only `eprintln!` is).
        let _ = writeln!(
            io::stderr(),
            "note: tests of {} skipped: {reason}",
            std::env::current_exe()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_default()
        );
    }
}

/// The builder of one rung of the degradation ladder (see `both_backends!`): `choice` with
/// `disabled` switched off, or `None` when the backend cannot run here. Checks that the engine
/// really runs without each disabled feature, so that a variant test named for a rung runs on
/// that rung.
pub fn variant(choice: BackendChoice, disabled: &[Feature]) -> Option<Builder> {
    let mut b = builder(choice)?;
    for &f in disabled {
        b = b.disable(f);
    }
    if !disabled.is_empty() {
        assert_runs_without(&b, disabled);
    }
    Some(b)
}

/// Asserts that an engine built from `b` uses none of `disabled`.
fn assert_runs_without(b: &Builder, disabled: &[Feature]) {
    let probe = b
        .clone()
        .fixed_files(1)
        .fixed_buffers(1, 4096)
        .build()
        .expect("the variant's engine builds");
    let rep = probe.report();
    let flag_off = |name: &str| !rep.setup_flags.contains(&name);
    for &f in disabled {
        let off = match f {
            Feature::SingleIssuer => flag_off("SINGLE_ISSUER"),
            Feature::DeferTaskrun => flag_off("DEFER_TASKRUN"),
            Feature::CoopTaskrun => flag_off("COOP_TASKRUN"),
            Feature::SubmitAll => flag_off("SUBMIT_ALL"),
            Feature::RegisteredRingFd => !rep.registered_ring_fd.active,
            Feature::RegisteredBuffers => !rep.registered_buffers.active,
            Feature::FixedFiles => !rep.fixed_files.active,
            Feature::ExtArg => !rep.timed_wait.active,
            Feature::NowaitReads => {
                // Without RWF_NOWAIT attempts a file read goes to the blocking pool even when
                // the data is in the page cache.
                let dir = TempDir::new("probe-nowait");
                let file = dir.rw_file("f", b"cached");
                let before = probe.stats();
                let (n, _) = run(&probe, Read::at(&file, Vec::with_capacity(8), 0));
                assert_eq!(n.expect("probe read"), 6);
                let st = probe.stats().since(&before);
                st.inline_completions == 0 && st.pool_jobs == 1
            }
            Feature::LinuxAio => {
                // Without kernel AIO an O_DIRECT read goes to the blocking pool.
                let dir = TempDir::new("probe-aio");
                dir.rw_file("d", &[7u8; 4096]);
                let direct = {
                    use std::os::unix::fs::OpenOptionsExt;
                    OpenOptions::new()
                        .read(true)
                        .custom_flags(libc::O_DIRECT)
                        .open(dir.path("d"))
                };
                match direct {
                    // No O_DIRECT on this filesystem: nothing could take the AIO path.
                    Err(_) => true,
                    Ok(f) => {
                        let before = probe.stats();
                        let buf = trueio::buf::AlignedBuf::with_capacity(4096);
                        let (n, _) = run(&probe, Read::at(&f, buf, 0));
                        assert_eq!(n.expect("probe O_DIRECT read"), 4096);
                        let st = probe.stats().since(&before);
                        st.pool_jobs == 1 && st.aio_jobs == 0
                    }
                }
            }
            other => panic!("no check for a disabled {other:?}: add one to util::variant"),
        };
        assert!(
            off,
            "the variant disables {f:?}, yet the engine still uses it:\n{rep}"
        );
    }
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("trueio-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// A read-write file `name` in this directory holding exactly `data` (created, or
    /// truncated first).
    pub fn rw_file(&self, name: &str, data: &[u8]) -> File {
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(self.path(name))
            .unwrap();
        f.write_all(data).unwrap();
        f
    }

    /// The contents of the file `name` in this directory.
    pub fn contents(&self, name: &str) -> Vec<u8> {
        let mut v = Vec::new();
        File::open(self.path(name))
            .unwrap()
            .read_to_end(&mut v)
            .unwrap();
        v
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A pipe (read end, write end); `nonblock` applies O_NONBLOCK to both.
pub fn pipe(nonblock: bool) -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    let flags = libc::O_CLOEXEC | if nonblock { libc::O_NONBLOCK } else { 0 };
    // SAFETY: fds is a valid two-int array.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), flags) };
    assert_eq!(r, 0, "pipe2: {}", io::Error::last_os_error());
    // SAFETY: pipe2 returned two fresh descriptors.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Deterministic test data: byte `i` is `(i as u8) * 31 + seed`.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    // The bytes repeat every 256: build one period and let `repeat` copy it. A loop over
    // every byte of an unoptimized test build takes ~100 ms for 5 MiB, ~2.5 s under qemu's
    // TCG (.ci/kernel-matrix.sh), and the file server tests make a 5 MiB file each.
    let period: Vec<u8> = (0..=255u8)
        .map(|i| i.wrapping_mul(31).wrapping_add(seed))
        .collect();
    let mut data = period.repeat(len.div_ceil(256));
    data.truncate(len);
    data
}

/// Open descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .count()
}

/// How long any single operation in a test may take before the test fails (instead of
/// hanging).
pub const LIMIT: Duration = Duration::from_secs(10);

/// Drives `engine` until `ticket` completes and returns its output; panics when `limit`
/// passes first, so no test can hang on a lost completion.
pub fn wait_within<T: trueio::op::Op>(
    engine: &Engine,
    ticket: &mut trueio::Ticket<T>,
    limit: Duration,
) -> T::Output {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(out) = ticket.try_take() {
            return out;
        }
        let now = Instant::now();
        assert!(
            now < deadline,
            "operation {ticket:?} did not complete within {limit:?}"
        );
        let slice = (deadline - now).min(Duration::from_millis(100));
        engine.turn(Some(slice)).expect("Engine::turn failed");
    }
}

/// [`wait_within`] with the default [`LIMIT`], consuming the ticket.
pub fn wait<T: trueio::op::Op>(engine: &Engine, mut ticket: trueio::Ticket<T>) -> T::Output {
    wait_within(engine, &mut ticket, LIMIT)
}

/// Drives `engine` until `cond` holds or `limit` passes; returns whether it held.
pub fn drive_until(engine: &Engine, limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        let slice = (deadline - now).min(Duration::from_millis(50));
        engine.turn(Some(slice)).expect("Engine::turn failed");
    }
}

/// Drives `engine` for `dur` (to give an operation every chance to complete).
pub fn drive_for(engine: &Engine, dur: Duration) {
    let deadline = Instant::now() + dur;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        engine
            .turn(Some(deadline - now))
            .expect("Engine::turn failed");
    }
}

/// The errno of a failed result, `None` when it succeeded.
pub fn errno<T>(r: &io::Result<T>) -> Option<i32> {
    r.as_ref().err().and_then(|e| e.raw_os_error())
}

/// Asserts that `r` failed with `expected` (an errno), with a readable message.
#[track_caller]
pub fn assert_errno<T: std::fmt::Debug>(r: &io::Result<T>, expected: i32, what: &str) {
    match r {
        Err(e) if e.raw_os_error() == Some(expected) => {}
        other => panic!(
            "{what}: expected errno {expected} ({}), got {other:?}",
            io::Error::from_raw_os_error(expected)
        ),
    }
}

/// Writes all of `data` to a descriptor with plain `write(2)` (blocking pipes and files).
pub fn write_all(fd: &impl std::os::fd::AsRawFd, data: &[u8]) {
    let mut off = 0;
    while off < data.len() {
        // SAFETY: the pointer and length name the live slice `data[off..]`.
        let n = unsafe {
            libc::write(
                fd.as_raw_fd(),
                data[off..].as_ptr().cast(),
                data.len() - off,
            )
        };
        assert!(n > 0, "write: {}", io::Error::last_os_error());
        off += n as usize;
    }
}

/// Reads whatever is available from a descriptor without blocking (switches it to
/// O_NONBLOCK), until EAGAIN or end of file.
pub fn drain_nonblocking(fd: &impl std::os::fd::AsRawFd) -> Vec<u8> {
    let fd = fd.as_raw_fd();
    // SAFETY: fcntl on a descriptor the caller holds open.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: `buf` is a live local array of the given length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            out.extend_from_slice(&buf[..n as usize]);
            continue;
        }
        if n == 0 {
            return out;
        }
        let e = io::Error::last_os_error();
        assert_eq!(e.raw_os_error(), Some(libc::EAGAIN), "drain read: {e}");
        return out;
    }
}

/// Open descriptors of this process that refer to `path` (immune to other tests opening
/// descriptors concurrently).
pub fn open_fds_to(path: &Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .filter_map(|e| e.ok())
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t == path))
        .count()
}

/// Submits `op` and waits (bounded, see [`wait`]) for its output.
pub fn run<T: trueio::op::Op>(engine: &Engine, op: T) -> T::Output {
    wait(engine, engine.submit(op))
}

/// `OpenAt2` of `path` (absolute, or relative to the working directory) read-only.
pub fn open_rdonly(path: impl AsRef<Path>) -> OpenAt2 {
    OpenAt2::new(None, path, OpenHow::new(libc::O_RDONLY))
}

/// `OpenAt2Direct` of `path` read-only into a free fixed-file slot.
pub fn open_rdonly_direct(path: impl AsRef<Path>) -> OpenAt2Direct {
    OpenAt2Direct::new(None, path, OpenHow::new(libc::O_RDONLY))
}

/// Asserts that `engine` has nothing in flight and completed every operation it was given.
#[track_caller]
pub fn assert_settled(engine: &Engine) {
    assert_eq!(engine.in_flight(), 0, "operations still in flight");
    let st = engine.stats();
    assert_eq!(st.completed, st.submitted, "completed != submitted: {st:?}");
}

/// Drives `engine` until nothing is in flight; panics with `what` when that takes more than
/// five seconds.
#[track_caller]
pub fn drive_until_idle(engine: &Engine, what: &str) {
    let done = drive_until(engine, Duration::from_secs(5), || engine.in_flight() == 0);
    assert!(done, "{what}");
}

/// Aborts the whole test process, with a message, when it is still armed after a limit: for
/// calls that cannot be given a timeout of their own (`Ticket::wait`, dropping an engine with
/// operations in flight), so that a hang becomes a failure. Disarmed on drop.
pub struct Watchdog {
    disarm: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    pub fn arm(what: &str, limit: Duration) -> Watchdog {
        let (disarm, armed) = std::sync::mpsc::channel::<()>();
        let what = what.to_string();
        let thread = std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = armed.recv_timeout(limit) {
                // Straight to stderr: captured output would die with the process.
                let _ = writeln!(
                    io::stderr(),
                    "{what}: still blocked after {limit:?}; aborting"
                );
                std::process::abort();
            }
        });
        Watchdog {
            disarm: Some(disarm),
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.disarm.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What a child process left behind.
pub struct ChildRun {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` (stdin from /dev/null, output collected) and waits for it at most `limit`;
/// kills it and panics when it takes longer.
pub fn run_child_within(cmd: &mut Command, limit: Duration, what: &str) -> ChildRun {
    // Files rather than pipes: a chatty child never blocks on a full pipe we do not read.
    let dir = TempDir::new("child-output");
    let (out_path, err_path) = (dir.path("stdout"), dir.path("stderr"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: spawn: {e}"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let Some(status) = status else {
        panic!("{what} did not finish within {limit:?}:\n{stdout}\n{stderr}");
    };
    ChildRun {
        status,
        stdout,
        stderr,
    }
}

/// The example `name`, built once per test binary (`cargo test --test X` does not build
/// examples; a plain `cargo test` does), in this test's profile.
pub fn example_binary(name: &str) -> PathBuf {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let mut built = BUILT.get_or_init(Default::default).lock().unwrap();
    if let Some(p) = built.get(name) {
        return p.clone();
    }
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    if std::env::var_os("TRUEIO_TEST_PREBUILT_EXAMPLES").is_some() {
        // The kernel matrix's VM: the binaries of `cargo test --no-run`, and no cargo.
        let bin = profile_dir.join("examples").join(name);
        assert!(
            bin.exists(),
            "TRUEIO_TEST_PREBUILT_EXAMPLES is set but {} is missing",
            bin.display()
        );
        built.insert(name.to_string(), bin.clone());
        return bin;
    }
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "--example", name])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if release {
        cmd.arg("--release");
    }
    let run = run_child_within(&mut cmd, Duration::from_secs(600), "cargo build");
    assert!(
        run.status.success(),
        "cargo build --example {name}: {}",
        run.stderr
    );
    let bin = profile_dir.join("examples").join(name);
    assert!(bin.exists(), "{} not built", bin.display());
    built.insert(name.to_string(), bin.clone());
    bin
}

/// `n` scaled by `TRUEIO_TEST_SCALE` (a factor, default 1; at least 1 is returned): how many
/// clients, rounds or bulk transfers a data-heavy test makes. The kernel matrix
/// (.ci/kernel-matrix.sh) sets it below 1, since under qemu's TCG bulk copies run ~25x slower;
/// the normal lane runs the full amount. Scale counts, never the sizes a test is about.
pub fn scaled(n: usize) -> usize {
    static SCALE: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let scale = *SCALE.get_or_init(|| match std::env::var("TRUEIO_TEST_SCALE") {
        Err(_) => 1.0,
        Ok(s) => match s.parse::<f64>() {
            Ok(f) if f > 0.0 && f.is_finite() => f,
            _ => panic!("TRUEIO_TEST_SCALE={s:?}: expected a positive number such as 0.25"),
        },
    });
    ((n as f64 * scale).round() as usize).max(1)
}

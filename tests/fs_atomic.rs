//! `fs::write_atomic` under `kill -9`: a child process replaces a file in a loop and is
//! killed at random moments (while it starts, writes, syncs, links or renames); after every
//! kill the file holds one whole version, never a mix or a short file. On the temp dir's
//! filesystem (ext4 here) and on tmpfs, alternating the backends.

mod util;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use trueio::rt::Runtime;
use trueio::{BackendChoice, Engine};

/// Bytes per version: large enough that a write takes several calls.
const LEN: usize = 256 * 1024;
const CHILD_ENV: &str = "TRUEIO_ATOMIC_CHILD";
const BACKEND_ENV: &str = "TRUEIO_ATOMIC_BACKEND";

/// Version `k`: LEN bytes of one value (never 0, the parent's first version).
fn version(k: u64) -> Vec<u8> {
    vec![(k % 251) as u8 + 1; LEN]
}

/// The child: replaces the file forever, until killed.
fn child(path: &Path, backend: &str) {
    let choice = BackendChoice::parse(backend).expect("backend");
    let rt = Runtime::with_builder(Engine::builder().backend(choice)).expect("runtime");
    rt.block_on(async {
        // The parent starts its clock at this line: the kills land in the loop, not in the
        // start-up (which takes seconds under qemu).
        println!("ready");
        for k in 1.. {
            trueio::fs::write_atomic(path, version(k))
                .await
                .expect("write_atomic");
        }
    });
}

/// The names in `dir` other than `target`'s.
fn strays(dir: &Path, target: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != target)
        .collect()
}

/// Waits for the child's "ready" line (the test harness prints its own lines first).
fn wait_ready(c: &mut std::process::Child) {
    use std::io::BufRead;
    let out = c.stdout.take().expect("piped stdout");
    let mut lines = std::io::BufReader::new(out).lines();
    for line in lines.by_ref() {
        if line.map(|l| l.contains("ready")).unwrap_or(true) {
            break;
        }
    }
    // Keep draining so the child never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
}

/// A small deterministic generator for the kill delays.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn runs_on(dir: PathBuf, what: &str, runs: usize) {
    let backends: Vec<&str> = ["uring", "epoll"]
        .into_iter()
        .filter(|b| *b == "epoll" || util::builder(BackendChoice::Uring).is_some())
        .collect();
    let target = dir.join("file");
    std::fs::write(&target, vec![0u8; LEN]).unwrap();
    let me = std::env::current_exe().unwrap();
    let mut rng = Lcg(0x5eed);
    let (mut seen_versions, mut stray_after_kill) = (std::collections::BTreeSet::new(), 0);
    for run in 0..runs {
        let backend = backends[run % backends.len()];
        let mut c = Command::new(&me)
            .args([
                "--exact",
                "write_atomic_survives_sigkill_at_random_points",
                "--nocapture",
            ])
            .env(CHILD_ENV, &target)
            .env(BACKEND_ENV, backend)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        wait_ready(&mut c);
        std::thread::sleep(Duration::from_micros(rng.below(40_000)));
        c.kill().unwrap();
        let status = c.wait().unwrap();
        assert!(!status.success(), "the child ended by itself: {status}");
        let got = std::fs::read(&target).unwrap();
        assert_eq!(
            got.len(),
            LEN,
            "{what}, run {run} ({backend}): a short file"
        );
        assert!(
            got.iter().all(|&b| b == got[0]),
            "{what}, run {run} ({backend}): two versions mixed"
        );
        seen_versions.insert(got[0]);
        stray_after_kill += strays(&dir, "file").len();
    }
    // A later replacement takes over what a kill left.
    let rt = Runtime::with_builder(Engine::builder()).unwrap();
    rt.block_on(trueio::fs::write_atomic(&target, version(7)))
        .unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), version(7));
    assert_eq!(
        strays(&dir, "file"),
        Vec::<String>::new(),
        "{what}: stray names remain"
    );
    println!(
        "{what}: {runs} kills, {} distinct versions seen, {stray_after_kill} kills left the \
         hidden name (taken over by the next replacement)",
        seen_versions.len()
    );
    // The kills landed at different moments: the file moved on between them.
    assert!(
        seen_versions.len() > 2,
        "{what}: the kills all landed before the first write"
    );
}

#[test]
fn write_atomic_survives_sigkill_at_random_points() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        let backend = std::env::var(BACKEND_ENV).unwrap_or_else(|_| "auto".into());
        return child(Path::new(&path), &backend);
    }
    let _dog = util::Watchdog::arm("write_atomic kill runs", Duration::from_secs(300));
    let start = Instant::now();
    let runs = util::scaled(200);
    let ext = util::TempDir::new("atomic-kill");
    runs_on(ext.0.clone(), "temp dir", runs);
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        let d = shm.join(format!("trueio-atomic-kill-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        runs_on(d.clone(), "tmpfs", runs);
        std::fs::remove_dir_all(&d).unwrap();
    } else {
        util::skip("no /dev/shm: the tmpfs runs need it");
    }
    println!("took {:?}", start.elapsed());
}

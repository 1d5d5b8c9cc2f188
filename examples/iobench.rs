//! `iobench`: a fio-like storage benchmark on the Completion API.
//!
//! ```sh
//! cargo run --release --example iobench -- --file PATH --size 1G --rw randread|randwrite|read|write \
//!     --bs 4k --qd 32 --runtime 10 [--direct] [--fixed-bufs] [--fixed-files] [--sqpoll] \
//!     [--inline-writes] [--number-ios N] [--backend auto|uring|epoll] [--json] [--verify] \
//!     [--seed N]
//! ```
//!
//! Keeps `--qd` operations of `--bs` bytes in flight for `--runtime` seconds and reports IOPS,
//! MB/s, latency percentiles (p50/p99/p99.9, from submission to completion), the process's
//! user and system CPU time, and syscalls per operation from `Engine::stats()`. The file is
//! created and filled when it is missing or shorter than `--size`; a buffered run reads it
//! once first so that it is in the page cache (this machine drops idle page cache within a
//! minute). `--number-ios N` ends the run after N operations if `--runtime` has not ended it
//! first (fio's `number_ios`).
//!
//! Random runs visit every block once per pass, in a fresh order each pass (fio's default
//! random map), so a write run touches as many distinct blocks as fio's does.
//!
//! `--inline-writes` runs each buffered write on the benchmark's thread as a blocking
//! `pwrite` (`Builder::inline_file_writes`) instead of sending it to io_uring, whose worker
//! threads take every buffered write on a filesystem that refuses `RWF_NOWAIT` writes (ext4).
//!
//! Every block has a known content: the fill writes `pattern(offset, 0)` and a write run with
//! `--verify` writes `pattern(offset, seed)` (a fresh seed per run unless `--seed` is given;
//! without `--verify` a write sends its buffer's bytes as they are, as fio does), so
//! `--verify` (or any program) can check the file after a write run: the blocks holding the
//! write pattern are exactly those the run reports having written (`blocks_written`), and on
//! a freshly filled file every other block still holds the fill.
//!
//! `--json` prints one JSON object with the keys `iops`, `mb_per_s`, `lat_p50_us`,
//! `lat_p99_us`, `lat_p999_us`, `usr_s`, `sys_s`, `syscalls_per_op`, `backend` (and more).

use std::fs::OpenOptions;
use std::io::{self, Read as _, Write as _};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use trueio::buf::{AlignedBuf, FixedBuf, IoBuf, Slice};
use trueio::op::{Read, ReadFixed, Write, WriteFixed};
use trueio::{BackendChoice, Engine, Fd, Ticket};

#[path = "common/size.rs"]
mod size;
use size::parse_size;

const USAGE: &str = "usage: iobench --file PATH [--size 1G] [--rw randread|randwrite|read|write] \
    [--bs 4k] [--qd 32] [--runtime 10] [--direct] [--fixed-bufs] [--fixed-files] [--sqpoll] [--sqpoll-cpu N] \
    [--inline-writes] [--number-ios N] [--backend auto|uring|epoll] [--json] [--verify] [--seed N]";

#[derive(Clone, Copy, PartialEq, Debug)]
enum Rw {
    RandRead,
    RandWrite,
    Read,
    Write,
}

impl Rw {
    fn writes(self) -> bool {
        matches!(self, Rw::RandWrite | Rw::Write)
    }
    fn random(self) -> bool {
        matches!(self, Rw::RandRead | Rw::RandWrite)
    }
    fn name(self) -> &'static str {
        match self {
            Rw::RandRead => "randread",
            Rw::RandWrite => "randwrite",
            Rw::Read => "read",
            Rw::Write => "write",
        }
    }
}

struct Args {
    file: PathBuf,
    size: u64,
    rw: Rw,
    bs: usize,
    qd: usize,
    runtime: Duration,
    direct: bool,
    fixed_bufs: bool,
    fixed_files: bool,
    sqpoll: bool,
    inline_writes: bool,
    sqpoll_cpu: Option<u32>,
    number_ios: Option<u64>,
    backend: BackendChoice,
    json: bool,
    verify: bool,
    seed: u64,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        file: PathBuf::new(),
        size: 1 << 30,
        rw: Rw::RandRead,
        bs: 4096,
        qd: 32,
        runtime: Duration::from_secs(10),
        direct: false,
        fixed_bufs: false,
        fixed_files: false,
        sqpoll: false,
        inline_writes: false,
        sqpoll_cpu: None,
        number_ios: None,
        backend: BackendChoice::from_env().map_err(|e| e.to_string())?,
        json: false,
        verify: false,
        // A fresh seed per run, so a verification never mistakes an earlier run's blocks
        // for this one's.
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1,
    };
    let mut it = std::env::args().skip(1);
    let mut have_file = false;
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--file" => {
                a.file = PathBuf::from(value()?);
                have_file = true;
            }
            "--size" => a.size = parse_size(&value()?)?,
            "--rw" => {
                a.rw = match value()?.as_str() {
                    "randread" => Rw::RandRead,
                    "randwrite" => Rw::RandWrite,
                    "read" => Rw::Read,
                    "write" => Rw::Write,
                    v => return Err(format!("--rw {v}: randread, randwrite, read or write")),
                }
            }
            "--bs" => {
                let v = parse_size(&value()?)?;
                if v > 64 << 20 {
                    return Err("--bs: at most 64 MiB".into());
                }
                a.bs = v as usize;
            }
            "--qd" => {
                let v = value()?;
                a.qd = v.parse().map_err(|_| format!("--qd {v}: not a number"))?;
                if a.qd == 0 || a.qd > 4096 {
                    return Err(format!("--qd {v}: must be 1..=4096"));
                }
            }
            "--runtime" => {
                let v = value()?;
                let s: f64 = v.parse().map_err(|_| format!("--runtime {v}: seconds"))?;
                if !(s > 0.0 && s < 1e6) {
                    return Err(format!("--runtime {v}: must be positive"));
                }
                a.runtime = Duration::from_secs_f64(s);
            }
            "--seed" => {
                let v = value()?;
                a.seed = v.parse().map_err(|_| format!("--seed {v}: not a number"))?;
                if a.seed == 0 {
                    return Err("--seed: 0 is the fill's pattern; pick another".into());
                }
            }
            "--backend" => {
                a.backend = BackendChoice::parse(&value()?).map_err(|e| e.to_string())?
            }
            "--direct" => a.direct = true,
            "--fixed-bufs" => a.fixed_bufs = true,
            "--fixed-files" => a.fixed_files = true,
            "--sqpoll" => a.sqpoll = true,
            "--sqpoll-cpu" => {
                let v = value()?;
                a.sqpoll_cpu = Some(
                    v.parse()
                        .map_err(|_| format!("--sqpoll-cpu {v}: a CPU number"))?,
                );
                a.sqpoll = true;
            }
            "--inline-writes" => a.inline_writes = true,
            "--number-ios" => {
                let v = value()?;
                let n: u64 = v
                    .parse()
                    .map_err(|_| format!("--number-ios {v}: not a number"))?;
                if n == 0 {
                    return Err("--number-ios: at least 1".into());
                }
                a.number_ios = Some(n);
            }
            "--json" => a.json = true,
            "--verify" => a.verify = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    if !have_file {
        return Err(format!("--file is required\n{USAGE}"));
    }
    if a.size < a.bs as u64 {
        return Err(format!("--size {} is smaller than --bs {}", a.size, a.bs));
    }
    if a.direct && a.bs % 512 != 0 {
        return Err("--direct needs --bs to be a multiple of 512 (better 4096)".into());
    }
    Ok(a)
}

/// The content of the 8-byte word at `pos` in a block written with `tag` (0: the fill).
pub fn pattern_word(pos: u64, tag: u64) -> u64 {
    // splitmix64 of the position and the tag.
    let mut z = pos.wrapping_add(tag.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fills `buf` with the pattern of the block at `off`.
fn fill_pattern(buf: &mut [u8], off: u64, tag: u64) {
    for (i, chunk) in buf.chunks_mut(8).enumerate() {
        let w = pattern_word(off + 8 * i as u64, tag).to_le_bytes();
        chunk.copy_from_slice(&w[..chunk.len()]);
    }
}

fn matches_pattern(buf: &[u8], off: u64, tag: u64) -> bool {
    buf.chunks(8).enumerate().all(|(i, chunk)| {
        let w = pattern_word(off + 8 * i as u64, tag).to_le_bytes();
        chunk == &w[..chunk.len()]
    })
}

/// Creates or extends the file to `size` bytes of the fill pattern.
fn prepare(args: &Args) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&args.file)
        .map_err(|e| io::Error::new(e.kind(), format!("opening {}: {e}", args.file.display())))?;
    let len = f.metadata()?.len();
    if len < args.size {
        if !args.json {
            eprintln!(
                "iobench: filling {} to {} bytes",
                args.file.display(),
                args.size
            );
        }
        // Whole 1 MiB chunks of the pattern (the pattern is per offset, so any chunking works).
        let chunk = 1 << 20;
        let mut buf = vec![0u8; chunk];
        let mut off = len - len % 8;
        use std::io::Seek;
        f.seek(io::SeekFrom::Start(off))?;
        while off < args.size {
            let n = (args.size - off).min(chunk as u64) as usize;
            fill_pattern(&mut buf[..n], off, 0);
            f.write_all(&buf[..n]).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("filling {} at {off}: {e}", args.file.display()),
                )
            })?;
            off += n as u64;
        }
        f.sync_all()?;
    }
    Ok(())
}

/// Reads the file once so that a buffered run starts with it in the page cache.
fn warm(args: &Args) -> io::Result<()> {
    let mut f = std::fs::File::open(&args.file)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = args.size;
    while left > 0 {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        left = left.saturating_sub(n as u64);
    }
    Ok(())
}

enum Buf {
    Fixed(FixedBuf),
    Plain(AlignedBuf),
}

enum InFlight {
    ReadF(Ticket<ReadFixed<Slice<FixedBuf>>>),
    WriteF(Ticket<WriteFixed<Slice<FixedBuf>>>),
    Read(Ticket<Read<Slice<AlignedBuf>>>),
    Write(Ticket<Write<Slice<AlignedBuf>>>),
}

struct Slot {
    /// The operation, its block's offset, the bytes of the block already transferred (a
    /// short transfer is resumed), and when the block's first operation was submitted.
    op: Option<(InFlight, u64, usize, Instant)>,
    buf: Option<Buf>,
}

/// xorshift64*: cheap and good enough to key the block order.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// The order of a random run's blocks: every block once per pass, in a fresh pseudo-random
/// order each pass, as fio's default random map does. Drawing blocks independently instead
/// revisits some and skips others; for writes that flatters the benchmark against fio, since
/// dirtying an already dirty page costs a fraction of dirtying a clean one (journal, block
/// mapping).
///
/// The permutation is a keyed 4-round Feistel network over the smallest even bit width that
/// covers the block count; values past the end walk the cycle until they land inside, which
/// keeps it a bijection on `0..blocks` (at most four steps on average).
struct BlockOrder {
    blocks: u64,
    half: u32,
    keys: [u64; 4],
    i: u64,
}

impl BlockOrder {
    fn new(blocks: u64, rng: &mut Rng) -> BlockOrder {
        let bits = (64 - blocks.saturating_sub(1).leading_zeros()).max(2);
        let mut o = BlockOrder {
            blocks,
            half: bits.div_ceil(2),
            keys: [0; 4],
            i: 0,
        };
        o.rekey(rng);
        o
    }

    fn rekey(&mut self, rng: &mut Rng) {
        for k in &mut self.keys {
            *k = rng.next();
        }
    }

    fn permute(&self, x: u64) -> u64 {
        let mask = (1u64 << self.half) - 1;
        let (mut l, mut r) = (x >> self.half, x & mask);
        for k in self.keys {
            // A round: multiply-shift hashing of the right half under the round's key.
            let f = ((r ^ k).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) & mask;
            (l, r) = (r, l ^ f);
        }
        (l << self.half) | r
    }

    fn next(&mut self, rng: &mut Rng) -> u64 {
        if self.i == self.blocks {
            self.i = 0;
            self.rekey(rng);
        }
        let mut b = self.permute(self.i);
        while b >= self.blocks {
            b = self.permute(b);
        }
        self.i += 1;
        b
    }
}

fn cpu_times() -> (f64, f64) {
    // SAFETY: getrusage writes into the zeroed struct we pass; no other preconditions.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `ru` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    (t(ru.ru_utime), t(ru.ru_stime))
}

struct Outcome {
    ops: u64,
    elapsed: Duration,
    lat_ns: Vec<u32>,
    usr: f64,
    sys: f64,
    syscalls: u64,
    written: Vec<u64>,
    /// Transfers that moved less than asked (each resumed).
    short: u64,
}

fn run(args: &Args, engine: &Engine, fd: Fd) -> io::Result<Outcome> {
    let blocks = args.size / args.bs as u64;
    let mut rng = Rng(args.seed | 1);
    let mut order = BlockOrder::new(blocks, &mut rng);
    let mut seq = 0u64;
    let mut next_off = |rng: &mut Rng| {
        let b = if args.rw.random() {
            order.next(rng)
        } else {
            let b = seq % blocks;
            seq += 1;
            b
        };
        b * args.bs as u64
    };
    let mut slots: Vec<Slot> = Vec::with_capacity(args.qd);
    for _ in 0..args.qd {
        // Without --verify a write sends whatever its buffer holds (filled once here, as fio
        // does): generating the block pattern per write would cost more than the write.
        let buf = if args.fixed_bufs {
            let mut b = engine.fixed_buf()?;
            b.set_len(args.bs);
            fill_pattern(&mut b, 0, args.seed);
            Buf::Fixed(b)
        } else {
            let mut b = AlignedBuf::with_capacity(args.bs);
            b.set_len(args.bs);
            fill_pattern(&mut b, 0, args.seed);
            Buf::Plain(b)
        };
        slots.push(Slot {
            op: None,
            buf: Some(buf),
        });
    }
    let mut written = if args.verify {
        vec![0u64; (blocks as usize).div_ceil(64)]
    } else {
        Vec::new()
    };
    let mut lat_ns: Vec<u32> = Vec::with_capacity(1 << 20);
    // Submits the block at `off` from byte `done` (0, or where a short transfer stopped).
    let submit = |slot: &mut Slot, off: u64, done: usize, t0: Instant| {
        let mut buf = slot.buf.take().expect("an idle slot holds its buffer");
        let (range, at) = (done..args.bs, off + done as u64);
        let op = match (&mut buf, args.rw.writes()) {
            (Buf::Fixed(b), true) => {
                b.set_len(args.bs);
                if args.verify && done == 0 {
                    fill_pattern(b, off, args.seed);
                }
                let Buf::Fixed(b) = buf else { unreachable!() };
                InFlight::WriteF(engine.submit(WriteFixed::at(fd.clone(), b.slice(range), at)))
            }
            (Buf::Fixed(_), false) => {
                let Buf::Fixed(b) = buf else { unreachable!() };
                InFlight::ReadF(engine.submit(ReadFixed::at(fd.clone(), b.slice(range), at)))
            }
            (Buf::Plain(b), true) => {
                if args.verify && done == 0 {
                    fill_pattern(b, off, args.seed);
                }
                let Buf::Plain(b) = buf else { unreachable!() };
                InFlight::Write(engine.submit(Write::at(fd.clone(), b.slice(range), at)))
            }
            (Buf::Plain(_), false) => {
                let Buf::Plain(b) = buf else { unreachable!() };
                InFlight::Read(engine.submit(Read::at(fd.clone(), b.slice(range), at)))
            }
        };
        slot.op = Some((op, off, done, t0));
    };
    let stats0 = engine.stats();
    let (u0, s0) = cpu_times();
    let start = Instant::now();
    let deadline = start + args.runtime;
    // Blocks started so far; --number-ios caps them (the run also ends at --runtime).
    let limit = args.number_ios.unwrap_or(u64::MAX);
    let mut issued = 0u64;
    for slot in &mut slots {
        if issued == limit {
            break;
        }
        let off = next_off(&mut rng);
        submit(slot, off, 0, Instant::now());
        issued += 1;
    }
    let mut short = 0u64;
    let mut ops = 0u64;
    let mut stopping = false;
    loop {
        engine.turn(None)?;
        let now = Instant::now();
        if !stopping && (now >= deadline || issued >= limit) {
            stopping = true;
        }
        let mut busy = 0;
        for slot in &mut slots {
            let Some((op, off, done, t0)) = slot.op.take() else {
                continue;
            };
            let res = match op {
                InFlight::ReadF(mut t) => match t.try_take() {
                    Some((r, b)) => Some((r, Buf::Fixed(b.into_inner()))),
                    None => {
                        slot.op = Some((InFlight::ReadF(t), off, done, t0));
                        None
                    }
                },
                InFlight::WriteF(mut t) => match t.try_take() {
                    Some((r, b)) => Some((r, Buf::Fixed(b.into_inner()))),
                    None => {
                        slot.op = Some((InFlight::WriteF(t), off, done, t0));
                        None
                    }
                },
                InFlight::Read(mut t) => match t.try_take() {
                    Some((r, b)) => Some((r, Buf::Plain(b.into_inner()))),
                    None => {
                        slot.op = Some((InFlight::Read(t), off, done, t0));
                        None
                    }
                },
                InFlight::Write(mut t) => match t.try_take() {
                    Some((r, b)) => Some((r, Buf::Plain(b.into_inner()))),
                    None => {
                        slot.op = Some((InFlight::Write(t), off, done, t0));
                        None
                    }
                },
            };
            let Some((r, buf)) = res else {
                busy += 1;
                continue;
            };
            let what = if args.rw.writes() {
                "writing"
            } else {
                "reading"
            };
            let n = r.map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("{what} {} at offset {off}: {e}", args.file.display()),
                )
            })?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "{what} {} at offset {}: 0 bytes (is the file shorter than --size?)",
                        args.file.display(),
                        off + done as u64
                    ),
                ));
            }
            slot.buf = Some(buf);
            if done + n < args.bs {
                // A short transfer: the rest of the block, then it counts as one operation.
                short += 1;
                submit(slot, off, done + n, t0);
                busy += 1;
                continue;
            }
            let buf = slot.buf.take().expect("just put back");
            ops += 1;
            lat_ns.push(now.duration_since(t0).as_nanos().min(u32::MAX as u128) as u32);
            if args.verify && args.rw.writes() {
                let b = off / args.bs as u64;
                written[(b / 64) as usize] |= 1 << (b % 64);
            }
            slot.buf = Some(buf);
            if !stopping && issued < limit {
                // The next block starts at the turn that reaped this one: one clock read per
                // turn serves as the end of what it reaped and the start of what it submits.
                // A start can read early by up to one scan of the slots (and, where a submit
                // reaps completions itself, as on io_uring with O_DIRECT, an end can too).
                let off = next_off(&mut rng);
                submit(slot, off, 0, now);
                issued += 1;
                busy += 1;
            }
        }
        if stopping && busy == 0 {
            break;
        }
    }
    let elapsed = start.elapsed();
    let (u1, s1) = cpu_times();
    let stats = engine.stats().since(&stats0);
    Ok(Outcome {
        ops,
        elapsed,
        lat_ns,
        usr: u1 - u0,
        sys: s1 - s0,
        syscalls: stats.syscalls,
        written,
        short,
    })
}

/// Reads the file back (buffered) and checks every block: the blocks this run wrote hold its
/// write pattern, and no other block does. Returns (blocks holding the write pattern,
/// mismatches).
fn verify(args: &Args, written: &[u64]) -> io::Result<(u64, u64)> {
    let mut f = std::fs::File::open(&args.file)?;
    let mut buf = vec![0u8; args.bs];
    let blocks = args.size / args.bs as u64;
    let (mut seen, mut bad) = (0u64, 0u64);
    for b in 0..blocks {
        f.read_exact(&mut buf)?;
        let off = b * args.bs as u64;
        let was_written = written[(b / 64) as usize] & (1 << (b % 64)) != 0;
        let holds = matches_pattern(&buf, off, args.seed);
        seen += u64::from(holds);
        if holds != was_written {
            bad += 1;
            if bad <= 5 {
                let what = if was_written { "lacks" } else { "holds" };
                eprintln!("iobench: verify: block at offset {off} {what} the write pattern");
            }
        }
    }
    Ok((seen, bad))
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("iobench: {e}");
            return ExitCode::from(2);
        }
    };
    match bench(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("iobench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench(args: &Args) -> io::Result<()> {
    prepare(args)?;
    if !args.direct {
        warm(args)?;
    }
    let mut b = Engine::builder()
        .backend(args.backend)
        .entries((args.qd * 2).next_power_of_two().clamp(8, 4096) as u32);
    if args.fixed_bufs {
        b = b.fixed_buffers(args.qd, args.bs);
    }
    if args.fixed_files {
        b = b.fixed_files(4);
    }
    if args.inline_writes {
        b = b.inline_file_writes(true);
    }
    if args.sqpoll {
        b = b.sqpoll(1000);
        if let Some(cpu) = args.sqpoll_cpu {
            b = b.sqpoll_cpu(cpu);
        }
    }
    // On the epoll backend files go through the blocking pool: give it a thread per
    // operation in flight, as a thread-pool engine at this depth would have (O_DIRECT reads
    // wait on the device; the default pool, 4 per core, would cap the depth).
    if args.qd > 8 {
        b = b.pool_threads(args.qd.min(256));
    }
    let engine = b.build()?;
    let mut flags = libc::O_CLOEXEC;
    if args.direct {
        flags |= libc::O_DIRECT;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(args.rw.writes())
        .custom_flags(flags)
        .open(&args.file)
        .map_err(|e| io::Error::new(e.kind(), format!("opening {}: {e}", args.file.display())))?;
    let file = OwnedFd::from(file);
    let raw = file.as_raw_fd();
    let (fd, fixed_file) = if args.fixed_files {
        let f = engine.register_file(file.try_clone()?)?;
        (Fd::from(&f), Some(f))
    } else {
        (Fd::from(raw), None)
    };
    let out = run(args, &engine, fd)?;
    drop(fixed_file);
    let (verified, mismatches) = if args.verify && args.rw.writes() {
        verify(args, &out.written)?
    } else {
        (0, 0)
    };
    let mut lat = out.lat_ns;
    lat.sort_unstable();
    let secs = out.elapsed.as_secs_f64();
    let iops = out.ops as f64 / secs;
    let mb_per_s = out.ops as f64 * args.bs as f64 / secs / 1e6;
    let (p50, p99, p999) = (
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        percentile(&lat, 0.999),
    );
    let spo = out.syscalls as f64 / out.ops.max(1) as f64;
    let backend = format!("{:?}", engine.backend()).to_lowercase();
    let fixed_bufs_active = args.fixed_bufs && engine.buffers().is_some_and(|p| p.is_registered());
    if args.json {
        println!(
            "{{\"rw\":\"{}\",\"bs\":{},\"qd\":{},\"ops\":{},\"runtime_s\":{:.3},\"iops\":{:.0},\"mb_per_s\":{:.1},\
\"lat_p50_us\":{:.2},\"lat_p99_us\":{:.2},\"lat_p999_us\":{:.2},\"usr_s\":{:.3},\"sys_s\":{:.3},\
\"syscalls_per_op\":{:.4},\"backend\":\"{}\",\"direct\":{},\"fixed_bufs\":{},\"fixed_files\":{},\"sqpoll\":{},\"inline_writes\":{},\
\"short_transfers\":{},\"seed\":{},\"blocks_written\":{},\"verify_mismatches\":{}}}",
            args.rw.name(), args.bs, args.qd, out.ops, secs, iops, mb_per_s, p50, p99, p999, out.usr, out.sys, spo,
            backend, args.direct, fixed_bufs_active, args.fixed_files, args.sqpoll, args.inline_writes, out.short, args.seed, verified, mismatches
        );
    } else {
        println!(
            "{} bs={} qd={} backend={} direct={} fixed-bufs={} fixed-files={} sqpoll={} inline-writes={}",
            args.rw.name(),
            args.bs,
            args.qd,
            backend,
            args.direct,
            fixed_bufs_active,
            args.fixed_files,
            args.sqpoll,
            args.inline_writes
        );
        println!(
            "  {:.0} IOPS, {:.1} MB/s, {} ops in {secs:.2} s",
            iops, mb_per_s, out.ops
        );
        println!("  latency p50 {p50:.2} us, p99 {p99:.2} us, p99.9 {p999:.2} us");
        if out.short > 0 {
            println!("  {} short transfers, each resumed", out.short);
        }
        println!(
            "  cpu usr {:.2} s, sys {:.2} s ({:.2} us/op); {spo:.3} syscalls/op",
            out.usr,
            out.sys,
            (out.usr + out.sys) * 1e6 / out.ops.max(1) as f64
        );
        if args.verify && args.rw.writes() {
            println!("  verify: {verified} blocks hold the write pattern, {mismatches} mismatches");
        }
    }
    if mismatches > 0 {
        return Err(io::Error::other(format!(
            "verify: {mismatches} blocks hold the wrong data"
        )));
    }
    Ok(())
}

//! Model-based tests: random sequences of submit / cancel / drop / reap / engine drop over a
//! regular file, a pipe and a socket pair, run against a model of what each operation may do.
//!
//! After every step and at the end of every sequence the test checks that
//! - every operation ends exactly once: a ticket gives one output and then never another, and
//!   an abandoned operation releases its buffer exactly once;
//! - every buffer comes back (the same buffer, in the output) or is freed by the engine, and
//!   never while its ticket still waits for it; no released buffer is written afterwards (each
//!   is filled with a poison byte when released and checked once everything is quiet, so a
//!   read the kernel finished into freed memory shows) and no released buffer is read
//!   afterwards (the poison would reach the file or the stream);
//! - the file holds what the model says (each abandoned write may or may not have happened,
//!   never half), and every byte written to the pipe or a socket is received exactly once;
//! - cancellation is deterministic: `ECANCELED` only for a cancelled operation, and then with
//!   nothing done (no byte written, none read);
//! - no descriptor leaks.
//!
//! Runs on both backends and every rung of the degradation ladder (`both_backends!`), one
//! variant at a time; `PROPTEST_CASES` sets the number of sequences per variant (128).
mod util;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use trueio::buf::{IoBuf, IoBufMut};
use trueio::op::{Nop, Read, Recv, Send, Timeout, Write};
use trueio::{Builder, Engine, Fd, FixedFile, Ticket};

both_backends! {
    fn random_sequences_match_the_model(b: Builder) {
        run_model(b)
    }
}

/// The file is `SLOTS` slots of `SLOT` bytes; each file operation covers one slot.
const SLOT: usize = 32;
const SLOTS: usize = 6;
/// A flood: a write larger than a pipe's or a socket's buffer, so that it waits for room
/// (and a cancel may meet it half done); and a read that takes a flood in a few steps.
const FLOOD: usize = 300 * 1024;
const BIG_READ: usize = 128 * 1024;
/// What a released buffer is filled with. Written data is a tag in 1..=127, the file's initial
/// contents 0x80 + slot: poison in a file or a stream means a released buffer was read.
const POISON: u8 = 0xFF;

/// How an operation names its descriptor.
#[derive(Debug, Clone, Copy)]
enum FdMode {
    /// `Fd::Raw`: the test keeps the descriptor open.
    Raw,
    /// `Fd::Shared`: the operation holds an `Rc<OwnedFd>`.
    Shared,
    /// `Fd::Fixed`: a slot of the engine's fixed-file table.
    Fixed,
}

#[derive(Debug, Clone, Copy)]
enum OpSpec {
    Nop,
    Timeout {
        ms: u8,
    },
    FileRead {
        slot: usize,
        fd: FdMode,
    },
    FileWrite {
        slot: usize,
        len: usize,
        fd: FdMode,
    },
    /// A read from the pipe (pending while the pipe is empty).
    PipeRead {
        cap: usize,
        fd: FdMode,
    },
    PipeWrite {
        len: usize,
        fd: FdMode,
    },
    /// A receive from socket stream `dir` (0: a to b, 1: b to a).
    Recv {
        dir: usize,
        cap: usize,
        fd: FdMode,
    },
    Send {
        dir: usize,
        len: usize,
        fd: FdMode,
    },
}

#[derive(Debug, Clone)]
enum Action {
    Submit(OpSpec),
    /// `Ticket::cancel` on one of the live tickets.
    Cancel(Index),
    /// Drops one of the live tickets (the engine cancels and owns the operation).
    Drop(Index),
    /// `Ticket::try_take`.
    TryTake(Index),
    /// Polls the ticket as a future with a waker that does nothing.
    PollFuture(Index),
    /// Waits for a ticket: a few milliseconds, then cancels it and waits for its completion.
    Wait(Index),
    /// `Engine::turn` with a timeout of this many milliseconds.
    Turn(u8),
    Flush,
}

/// How a sequence ends.
#[derive(Debug, Clone, Copy)]
enum Ending {
    /// Every live ticket cancelled and waited for, the engine driven until idle, then dropped.
    Settle,
    /// Every live ticket dropped, then the engine (which reaps what is left).
    DropTicketsThenEngine,
    /// The engine handle dropped first, then the tickets: the last one takes the engine.
    DropEngineThenTickets,
}

#[derive(Debug, Clone)]
struct Case {
    /// Submission queue entries: 4 makes pushes flush a full queue.
    entries: u32,
    /// O_NONBLOCK on the pipe and the sockets.
    nonblock: bool,
    actions: Vec<Action>,
    ending: Ending,
}

fn fd_mode() -> impl Strategy<Value = FdMode> {
    prop_oneof![Just(FdMode::Raw), Just(FdMode::Shared), Just(FdMode::Fixed)]
}

/// Bytes a pipe read or a receive asks for.
fn read_cap() -> impl Strategy<Value = usize> {
    prop_oneof![9 => 1..=96usize, 1 => Just(BIG_READ)]
}

/// Bytes a pipe write or a send carries.
fn write_len() -> impl Strategy<Value = usize> {
    prop_oneof![9 => 1..=64usize, 1 => Just(FLOOD)]
}

fn op_spec() -> impl Strategy<Value = OpSpec> {
    prop_oneof![
        1 => Just(OpSpec::Nop),
        1 => (0u8..20).prop_map(|ms| OpSpec::Timeout { ms }),
        2 => (0..SLOTS, fd_mode()).prop_map(|(slot, fd)| OpSpec::FileRead { slot, fd }),
        2 => (0..SLOTS, 1..=SLOT, fd_mode())
            .prop_map(|(slot, len, fd)| OpSpec::FileWrite { slot, len, fd }),
        2 => (read_cap(), fd_mode()).prop_map(|(cap, fd)| OpSpec::PipeRead { cap, fd }),
        2 => (write_len(), fd_mode()).prop_map(|(len, fd)| OpSpec::PipeWrite { len, fd }),
        2 => (0..2usize, read_cap(), fd_mode())
            .prop_map(|(dir, cap, fd)| OpSpec::Recv { dir, cap, fd }),
        2 => (0..2usize, write_len(), fd_mode())
            .prop_map(|(dir, len, fd)| OpSpec::Send { dir, len, fd }),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        8 => op_spec().prop_map(Action::Submit),
        2 => any::<Index>().prop_map(Action::Cancel),
        2 => any::<Index>().prop_map(Action::Drop),
        2 => any::<Index>().prop_map(Action::TryTake),
        1 => any::<Index>().prop_map(Action::PollFuture),
        2 => any::<Index>().prop_map(Action::Wait),
        2 => (0u8..3).prop_map(Action::Turn),
        1 => Just(Action::Flush),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![Just(4u32), Just(64)],
        any::<bool>(),
        prop::collection::vec(action(), 1..64),
        prop_oneof![
            Just(Ending::Settle),
            Just(Ending::DropTicketsThenEngine),
            Just(Ending::DropEngineThenTickets)
        ],
    )
        .prop_map(|(entries, nonblock, actions, ending)| Case {
            entries,
            nonblock,
            actions,
            ending,
        })
}

/// Serialises the variants: the descriptor count of the process must be theirs alone.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn run_model(b: Builder) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128);
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 400,
        max_shrink_time: 30_000,
        ..Config::default()
    };
    // A lost completion would hang a sequence (or the shrinking of a failure): abort instead.
    let _watchdog = util::Watchdog::arm(
        "the model test",
        Duration::from_secs(120 + u64::from(cases)),
    );
    let mut runner = TestRunner::new(config);
    let totals = RefCell::new(Totals::default());
    let result = runner.run(&case(), |case| {
        let t = run_case(&b, &case)?;
        totals.borrow_mut().add(&t);
        Ok(())
    });
    let totals = totals.into_inner();
    if let Err(e) = result {
        panic!("{e}");
    }
    eprintln!("{cases} sequences: {totals}");
    // A model run that never reached the interesting states tested little.
    assert!(totals.cancelled_with_ecanceled > 0, "no cancel ever won");
    assert!(totals.abandoned > 0, "no operation was ever abandoned");
    assert!(
        totals.stream_bytes > 0,
        "no byte went through a pipe or socket"
    );
}

/// What the sequences did, to show that they reached the states that matter.
#[derive(Default)]
struct Totals {
    ops: usize,
    outputs: usize,
    cancelled_with_ecanceled: usize,
    abandoned: usize,
    stream_bytes: usize,
}

impl Totals {
    fn add(&mut self, t: &Totals) {
        self.ops += t.ops;
        self.outputs += t.outputs;
        self.cancelled_with_ecanceled += t.cancelled_with_ecanceled;
        self.abandoned += t.abandoned;
        self.stream_bytes += t.stream_bytes;
    }
}

impl fmt::Display for Totals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} operations, {} outputs taken ({} ECANCELED), {} abandoned, {} bytes through \
             pipes and sockets",
            self.ops,
            self.outputs,
            self.cancelled_with_ecanceled,
            self.abandoned,
            self.stream_bytes
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Instrumented buffers

/// Who holds a buffer, as far as the test knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holder {
    /// The operation of a live ticket that has not given its output yet.
    Ticket,
    /// The operation of a dropped ticket: the engine frees it at the final completion.
    Engine,
    /// It came back in an output.
    Test,
}

/// What an operation's buffer is for (to account for the data an abandoned read took).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    FileRead,
    FileWrite,
    StreamRead(usize),
    StreamWrite(usize),
}

struct BufRecord {
    mem: *mut [u8],
    holder: Holder,
    use_: Use,
    drops: u32,
    /// The bytes an abandoned buffer held when the engine released it.
    released_with: Vec<u8>,
}

/// Every buffer of one sequence. Their memory belongs to the tracker and outlives the buffers,
/// so that a write into a released buffer corrupts nothing and can be detected.
#[derive(Default)]
struct Tracker {
    bufs: RefCell<Vec<BufRecord>>,
    violations: RefCell<Vec<String>>,
}

impl Drop for Tracker {
    fn drop(&mut self) {
        for r in self.bufs.get_mut().drain(..) {
            // SAFETY: allocated by Box::into_raw in `TBuf::new`; every TBuf (each holds an
            // Rc of this tracker) is gone, and so is every operation that held one.
            drop(unsafe { Box::from_raw(r.mem) });
        }
    }
}

/// A buffer whose drop is recorded, and which is poisoned when released.
struct TBuf {
    id: usize,
    ptr: *mut u8,
    /// Bytes a read may fill.
    total: usize,
    len: usize,
    tracker: Rc<Tracker>,
}

impl TBuf {
    fn new(tracker: &Rc<Tracker>, use_: Use, total: usize, data: &[u8]) -> TBuf {
        assert!(data.len() <= total);
        let mut mem = vec![0u8; total].into_boxed_slice();
        mem[..data.len()].copy_from_slice(data);
        let mem = Box::into_raw(mem);
        let ptr = mem.cast::<u8>();
        let mut bufs = tracker.bufs.borrow_mut();
        bufs.push(BufRecord {
            mem,
            holder: Holder::Ticket,
            use_,
            drops: 0,
            released_with: Vec::new(),
        });
        TBuf {
            id: bufs.len() - 1,
            ptr,
            total,
            len: data.len(),
            tracker: tracker.clone(),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        // SAFETY: the first `len` bytes of the buffer's live memory are initialised.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }.to_vec()
    }
}

impl Drop for TBuf {
    fn drop(&mut self) {
        let data = self.bytes();
        let mut bufs = self.tracker.bufs.borrow_mut();
        let r = &mut bufs[self.id];
        r.drops += 1;
        let mut violation = None;
        if r.drops > 1 {
            violation = Some(format!("buffer {} dropped {} times", self.id, r.drops));
        }
        match r.holder {
            Holder::Ticket => {
                violation = Some(format!(
                    "buffer {} ({:?}) freed while its ticket still waits for it",
                    self.id, r.use_
                ))
            }
            Holder::Engine => r.released_with = data,
            Holder::Test => {}
        }
        // SAFETY: the tracker keeps the memory allocated; nobody may use it any more.
        unsafe { std::ptr::write_bytes(self.ptr, POISON, self.total) };
        drop(bufs);
        if let Some(v) = violation {
            self.tracker.violations.borrow_mut().push(v);
        }
    }
}

// SAFETY: the memory is a heap allocation owned by the tracker, stable across moves, valid
// until the tracker goes (after every TBuf); `len` bytes are initialised (all are).
unsafe impl IoBuf for TBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.ptr
    }
    fn bytes_init(&self) -> usize {
        self.len
    }
    fn bytes_total(&self) -> usize {
        self.total
    }
}

// SAFETY: as above; all of the memory is initialised, `set_init` only raises `len`.
unsafe impl IoBufMut for TBuf {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.ptr
    }
    unsafe fn set_init(&mut self, pos: usize) {
        self.len = self.len.max(pos);
    }
}

// ---------------------------------------------------------------------------------------------
// Tickets of every kind

enum AnyTicket {
    Nop(Ticket<Nop>),
    Timeout(Ticket<Timeout>),
    Read(Ticket<Read<TBuf>>),
    Write(Ticket<Write<TBuf>>),
    Recv(Ticket<Recv<TBuf>>),
    Send(Ticket<Send<TBuf>>),
}

enum Output {
    Unit(io::Result<()>),
    Buf(io::Result<usize>, TBuf),
}

macro_rules! each_ticket {
    ($t:expr, $x:ident => $e:expr) => {
        match $t {
            AnyTicket::Nop($x) => $e,
            AnyTicket::Timeout($x) => $e,
            AnyTicket::Read($x) => $e,
            AnyTicket::Write($x) => $e,
            AnyTicket::Recv($x) => $e,
            AnyTicket::Send($x) => $e,
        }
    };
}

impl AnyTicket {
    fn try_take(&mut self) -> Option<Output> {
        Some(match self {
            AnyTicket::Nop(t) => Output::Unit(t.try_take()?),
            AnyTicket::Timeout(t) => Output::Unit(t.try_take()?),
            AnyTicket::Read(t) => t.try_take().map(|(r, b)| Output::Buf(r, b))?,
            AnyTicket::Write(t) => t.try_take().map(|(r, b)| Output::Buf(r, b))?,
            AnyTicket::Recv(t) => t.try_take().map(|(r, b)| Output::Buf(r, b))?,
            AnyTicket::Send(t) => t.try_take().map(|(r, b)| Output::Buf(r, b))?,
        })
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Output> {
        use std::future::Future;
        use std::pin::Pin;
        fn p<F: Future + Unpin>(f: &mut F, cx: &mut Context<'_>) -> Poll<F::Output> {
            Pin::new(f).poll(cx)
        }
        match self {
            AnyTicket::Nop(t) => p(t, cx).map(Output::Unit),
            AnyTicket::Timeout(t) => p(t, cx).map(Output::Unit),
            AnyTicket::Read(t) => p(t, cx).map(|(r, b)| Output::Buf(r, b)),
            AnyTicket::Write(t) => p(t, cx).map(|(r, b)| Output::Buf(r, b)),
            AnyTicket::Recv(t) => p(t, cx).map(|(r, b)| Output::Buf(r, b)),
            AnyTicket::Send(t) => p(t, cx).map(|(r, b)| Output::Buf(r, b)),
        }
    }

    fn cancel(&self) {
        each_ticket!(self, t => t.cancel())
    }

    fn is_done(&self) -> bool {
        each_ticket!(self, t => t.is_done())
    }
}

// ---------------------------------------------------------------------------------------------
// The model

/// One operation whose ticket the test still holds.
struct Live {
    spec: OpSpec,
    ticket: AnyTicket,
    /// Its buffer's id.
    buf: Option<usize>,
    /// The tag its data carries (writes and sends).
    tag: u8,
    /// `cancel()` was called: ECANCELED is allowed.
    cancel_asked: bool,
    submitted: Instant,
}

/// What became of the bytes written with one tag into a stream.
#[derive(Debug)]
enum Sent {
    /// Exactly this many (the write's own result).
    Exactly(usize),
    /// Abandoned: its count is unknown, at most `len`; `atomic`: all or nothing.
    Unknown { len: usize, atomic: bool },
}

#[derive(Default)]
struct StreamModel {
    sent: BTreeMap<u8, Sent>,
    received: Vec<u8>,
}

/// The descriptors of one sequence, in the three forms an operation can name them.
struct Res {
    shared: Rc<OwnedFd>,
    fixed: FixedFile,
}

impl Res {
    fn new(engine: &Engine, fd: OwnedFd) -> Res {
        let dup = fd.try_clone().expect("dup");
        let fixed = engine.register_file(dup).expect("register_file");
        Res {
            shared: Rc::new(fd),
            fixed,
        }
    }

    fn fd(&self, mode: FdMode) -> Fd {
        match mode {
            FdMode::Raw => Fd::Raw(self.shared.as_raw_fd()),
            FdMode::Shared => Fd::Shared(self.shared.clone()),
            FdMode::Fixed => Fd::Fixed(self.fixed.clone()),
        }
    }
}

struct World {
    engine: Option<Engine>,
    tracker: Rc<Tracker>,
    file: Res,
    /// Pipe: read end, write end. Sockets: a and b.
    pipe: (Res, Res),
    socks: (Res, Res),
    /// Each slot's possible contents (more than one after an abandoned write).
    slots: Vec<Vec<Vec<u8>>>,
    /// The buffer of the operation on each slot, if one may still be in flight.
    slot_busy: [Option<usize>; SLOTS],
    /// 0: the pipe; 1: socket a to b; 2: socket b to a.
    streams: [StreamModel; 3],
    live: Vec<Live>,
    next_tag: u8,
    totals: Totals,
}

fn fail(msg: impl Into<String>) -> TestCaseError {
    TestCaseError::fail(msg.into())
}

fn errno_of<T>(r: &io::Result<T>) -> Option<i32> {
    r.as_ref().err().map(|e| e.raw_os_error().unwrap_or(-1))
}

fn socketpair(nonblock: bool) -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    let ty =
        libc::SOCK_STREAM | libc::SOCK_CLOEXEC | if nonblock { libc::SOCK_NONBLOCK } else { 0 };
    // SAFETY: fds is a valid two-int array.
    let r = unsafe { libc::socketpair(libc::AF_UNIX, ty, 0, fds.as_mut_ptr()) };
    assert_eq!(r, 0, "socketpair: {}", io::Error::last_os_error());
    // SAFETY: socketpair returned two fresh descriptors.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn initial_slot(slot: usize) -> Vec<u8> {
    vec![0x80 + slot as u8; SLOT]
}

impl World {
    fn engine(&self) -> &Engine {
        self.engine
            .as_ref()
            .expect("the engine is alive during the actions")
    }

    fn buf_holder(&self, id: usize) -> (Holder, u32) {
        let bufs = self.tracker.bufs.borrow();
        (bufs[id].holder, bufs[id].drops)
    }

    fn set_holder(&self, id: usize, h: Holder) {
        self.tracker.bufs.borrow_mut()[id].holder = h;
    }

    /// True while an operation on the slot may still be in flight.
    fn slot_busy(&self, slot: usize) -> bool {
        match self.slot_busy[slot] {
            None => false,
            Some(id) => {
                let (holder, drops) = self.buf_holder(id);
                holder != Holder::Test && drops == 0
            }
        }
    }

    fn tag(&mut self) -> u8 {
        self.next_tag += 1;
        assert!(
            self.next_tag < 0x80,
            "tags run into the file's initial bytes"
        );
        self.next_tag
    }

    fn submit(&mut self, spec: OpSpec) {
        let engine = self.engine().clone();
        let tracker = self.tracker.clone();
        let mut tag = 0;
        // Before the submission: a timeout counts from there (taken after it, the time the
        // submission took made a timeout look early under qemu's TCG).
        let submitted = Instant::now();
        let (ticket, buf) = match spec {
            OpSpec::Nop => (AnyTicket::Nop(engine.submit(Nop::new())), None),
            OpSpec::Timeout { ms } => {
                let t = Timeout::after(Duration::from_millis(ms.into()));
                (AnyTicket::Timeout(engine.submit(t)), None)
            }
            OpSpec::FileRead { slot, fd } => {
                if self.slot_busy(slot) {
                    return;
                }
                let b = TBuf::new(&tracker, Use::FileRead, SLOT, &[]);
                let id = b.id;
                self.slot_busy[slot] = Some(id);
                let op = Read::at(self.file.fd(fd), b, (slot * SLOT) as u64);
                (AnyTicket::Read(engine.submit(op)), Some(id))
            }
            OpSpec::FileWrite { slot, len, fd } => {
                if self.slot_busy(slot) {
                    return;
                }
                tag = self.tag();
                let b = TBuf::new(&tracker, Use::FileWrite, len, &vec![tag; len]);
                let id = b.id;
                self.slot_busy[slot] = Some(id);
                let op = Write::at(self.file.fd(fd), b, (slot * SLOT) as u64);
                (AnyTicket::Write(engine.submit(op)), Some(id))
            }
            OpSpec::PipeRead { cap, fd } => {
                let b = TBuf::new(&tracker, Use::StreamRead(0), cap, &[]);
                let id = b.id;
                let op = Read::stream(self.pipe.0.fd(fd), b);
                (AnyTicket::Read(engine.submit(op)), Some(id))
            }
            OpSpec::PipeWrite { len, fd } => {
                tag = self.tag();
                let b = TBuf::new(&tracker, Use::StreamWrite(0), len, &vec![tag; len]);
                let id = b.id;
                let op = Write::stream(self.pipe.1.fd(fd), b);
                (AnyTicket::Write(engine.submit(op)), Some(id))
            }
            OpSpec::Recv { dir, cap, fd } => {
                let b = TBuf::new(&tracker, Use::StreamRead(1 + dir), cap, &[]);
                let id = b.id;
                let sock = if dir == 0 {
                    &self.socks.1
                } else {
                    &self.socks.0
                };
                let op = Recv::new(sock.fd(fd), b);
                (AnyTicket::Recv(engine.submit(op)), Some(id))
            }
            OpSpec::Send { dir, len, fd } => {
                tag = self.tag();
                let b = TBuf::new(&tracker, Use::StreamWrite(1 + dir), len, &vec![tag; len]);
                let id = b.id;
                let sock = if dir == 0 {
                    &self.socks.0
                } else {
                    &self.socks.1
                };
                let op = Send::new(sock.fd(fd), b);
                (AnyTicket::Send(engine.submit(op)), Some(id))
            }
        };
        self.totals.ops += 1;
        self.live.push(Live {
            spec,
            ticket,
            buf,
            tag,
            cancel_asked: false,
            submitted,
        });
    }

    /// Checks one operation's output against the model and updates the model.
    fn resolve(&mut self, live: &Live, out: Output) -> Result<(), TestCaseError> {
        self.totals.outputs += 1;
        let what = format!("{:?}", live.spec);
        let cancelled = |r: Option<i32>| -> Result<bool, TestCaseError> {
            match r {
                None => Ok(false),
                Some(libc::ECANCELED) if live.cancel_asked => Ok(true),
                Some(e) => Err(fail(format!(
                    "{what}: failed with {} (cancel asked: {})",
                    io::Error::from_raw_os_error(e),
                    live.cancel_asked
                ))),
            }
        };
        let (res, buf) = match out {
            Output::Unit(r) => {
                if cancelled(errno_of(&r))? {
                    self.totals.cancelled_with_ecanceled += 1;
                } else if let OpSpec::Timeout { ms } = live.spec {
                    let took = live.submitted.elapsed();
                    if took < Duration::from_millis(ms.into()) {
                        return Err(fail(format!("{what}: fired after {took:?}")));
                    }
                }
                return Ok(());
            }
            Output::Buf(r, b) => (r, b),
        };
        // The buffer that comes back is the operation's own.
        let id = live.buf.expect("buffer ops have a buffer");
        if buf.id != id {
            return Err(fail(format!(
                "{what}: got buffer {} back, gave {id}",
                buf.id
            )));
        }
        self.set_holder(id, Holder::Test);
        if cancelled(errno_of(&res))? {
            self.totals.cancelled_with_ecanceled += 1;
            let is_read = matches!(
                live.spec,
                OpSpec::FileRead { .. } | OpSpec::PipeRead { .. } | OpSpec::Recv { .. }
            );
            if is_read && buf.len != 0 {
                return Err(fail(format!("{what}: ECANCELED with {} bytes", buf.len)));
            }
            // A cancelled write wrote nothing: the model stays as it is.
            if let OpSpec::PipeWrite { .. } | OpSpec::Send { .. } = live.spec {
                let s = self.stream_of(live.spec);
                self.streams[s].sent.insert(live.tag, Sent::Exactly(0));
            }
            return Ok(());
        }
        let n = res.expect("not an error");
        match live.spec {
            OpSpec::FileRead { slot, .. } => {
                let data = buf.bytes();
                if n != SLOT || data.len() != SLOT {
                    return Err(fail(format!(
                        "{what}: read {n} bytes, buffer {}",
                        data.len()
                    )));
                }
                if !self.slots[slot].contains(&data) {
                    return Err(fail(format!(
                        "{what}: read {data:?}, the model has {:?}",
                        self.slots[slot]
                    )));
                }
                self.slots[slot] = vec![data];
            }
            OpSpec::FileWrite { slot, len, .. } => {
                if n != len {
                    return Err(fail(format!("{what}: short write of {n}")));
                }
                for c in &mut self.slots[slot] {
                    c[..n].fill(live.tag);
                }
                dedup(&mut self.slots[slot]);
            }
            OpSpec::PipeRead { .. } | OpSpec::Recv { .. } => {
                // The writing ends stay open: never end of file.
                if n == 0 || n != buf.len {
                    return Err(fail(format!("{what}: {n} bytes, buffer holds {}", buf.len)));
                }
                let s = self.stream_of(live.spec);
                self.streams[s].received.extend_from_slice(&buf.bytes());
            }
            OpSpec::PipeWrite { len, .. } | OpSpec::Send { len, .. } => {
                if n == 0 || n > len {
                    return Err(fail(format!("{what}: wrote {n} of {len}")));
                }
                let s = self.stream_of(live.spec);
                self.streams[s].sent.insert(live.tag, Sent::Exactly(n));
            }
            OpSpec::Nop | OpSpec::Timeout { .. } => unreachable!(),
        }
        Ok(())
    }

    fn stream_of(&self, spec: OpSpec) -> usize {
        match spec {
            OpSpec::PipeRead { .. } | OpSpec::PipeWrite { .. } => 0,
            OpSpec::Recv { dir, .. } | OpSpec::Send { dir, .. } => 1 + dir,
            _ => unreachable!(),
        }
    }

    /// Gives up a ticket: the engine owns its operation from now on, and the model allows
    /// either outcome.
    fn abandon(&mut self, live: Live) {
        self.totals.abandoned += 1;
        if let Some(id) = live.buf {
            self.set_holder(id, Holder::Engine);
        }
        match live.spec {
            OpSpec::FileWrite { slot, len, .. } => {
                let mut next = Vec::new();
                for c in &self.slots[slot] {
                    let mut w = c.clone();
                    w[..len].fill(live.tag);
                    next.push(c.clone());
                    next.push(w);
                }
                dedup(&mut next);
                self.slots[slot] = next;
            }
            OpSpec::PipeWrite { len, .. } | OpSpec::Send { len, .. } => {
                let s = self.stream_of(live.spec);
                // Pipe writes of at most PIPE_BUF bytes are atomic.
                let atomic = s == 0 && len <= libc::PIPE_BUF;
                self.streams[s]
                    .sent
                    .insert(live.tag, Sent::Unknown { len, atomic });
            }
            _ => {}
        }
        drop(live.ticket);
    }

    /// After each step: the tracker saw nothing wrong.
    fn check_violations(&self) -> Result<(), TestCaseError> {
        let v = self.tracker.violations.borrow();
        if v.is_empty() {
            Ok(())
        } else {
            Err(fail(v.join("; ")))
        }
    }

    fn step(&mut self, action: &Action) -> Result<(), TestCaseError> {
        let pick = |ix: &Index, live: &[Live]| (!live.is_empty()).then(|| ix.index(live.len()));
        match action {
            Action::Submit(spec) => self.submit(*spec),
            Action::Cancel(ix) => {
                if let Some(i) = pick(ix, &self.live) {
                    self.live[i].cancel_asked = true;
                    self.live[i].ticket.cancel();
                }
            }
            Action::Drop(ix) => {
                if let Some(i) = pick(ix, &self.live) {
                    let live = self.live.remove(i);
                    self.abandon(live);
                }
            }
            Action::TryTake(ix) => {
                if let Some(i) = pick(ix, &self.live) {
                    let done = self.live[i].ticket.is_done();
                    match self.live[i].ticket.try_take() {
                        Some(out) => self.take_output(i, out)?,
                        None if done => {
                            return Err(fail(format!(
                                "{:?}: is_done() yet try_take() gave nothing",
                                self.live[i].spec
                            )))
                        }
                        None => {}
                    }
                }
            }
            Action::PollFuture(ix) => {
                if let Some(i) = pick(ix, &self.live) {
                    let waker = Waker::from(Arc::new(NoWake));
                    let mut cx = Context::from_waker(&waker);
                    if let Poll::Ready(out) = self.live[i].ticket.poll(&mut cx) {
                        self.take_output(i, out)?;
                    }
                }
            }
            Action::Wait(ix) => {
                if let Some(i) = pick(ix, &self.live) {
                    let engine = self.engine().clone();
                    let t = &mut self.live[i];
                    util::drive_until(&engine, Duration::from_millis(5), || t.ticket.is_done());
                    if !t.ticket.is_done() {
                        t.cancel_asked = true;
                        t.ticket.cancel();
                    }
                    let out = self.wait_for(i)?;
                    self.take_output(i, out)?;
                }
            }
            Action::Turn(ms) => {
                self.engine()
                    .turn(Some(Duration::from_millis((*ms).into())))
                    .map_err(|e| fail(format!("turn: {e}")))?;
            }
            Action::Flush => {
                self.engine()
                    .flush()
                    .map_err(|e| fail(format!("flush: {e}")))?;
            }
        }
        self.check_violations()
    }

    /// Drives the engine until live ticket `i` completes (bounded).
    fn wait_for(&mut self, i: usize) -> Result<Output, TestCaseError> {
        let engine = self.engine().clone();
        let deadline = Instant::now() + util::LIMIT;
        loop {
            if let Some(out) = self.live[i].ticket.try_take() {
                return Ok(out);
            }
            if Instant::now() >= deadline {
                return Err(fail(format!(
                    "{:?} (cancel asked: {}) did not complete within {:?}",
                    self.live[i].spec,
                    self.live[i].cancel_asked,
                    util::LIMIT
                )));
            }
            engine
                .turn(Some(Duration::from_millis(20)))
                .map_err(|e| fail(format!("turn: {e}")))?;
        }
    }

    /// Resolves live ticket `i` with its output, and checks that it gives no second one.
    fn take_output(&mut self, i: usize, out: Output) -> Result<(), TestCaseError> {
        let mut live = self.live.remove(i);
        self.resolve(&live, out)?;
        if live.ticket.try_take().is_some() {
            return Err(fail(format!("{:?}: a second output", live.spec)));
        }
        if !live.ticket.is_done() {
            return Err(fail(format!("{:?}: not done after its output", live.spec)));
        }
        // The spent ticket goes now; dropping it must not touch the buffer it gave back.
        drop(live.ticket);
        self.check_violations()
    }

    /// Ends the sequence as `ending` says; afterwards the engine and every ticket are gone.
    fn end(&mut self, ending: Ending) -> Result<(), TestCaseError> {
        match ending {
            Ending::Settle => {
                for t in &mut self.live {
                    t.cancel_asked = true;
                    t.ticket.cancel();
                }
                while !self.live.is_empty() {
                    let out = self.wait_for(0)?;
                    self.take_output(0, out)?;
                }
                let engine = self.engine().clone();
                let idle = util::drive_until(&engine, util::LIMIT, || engine.in_flight() == 0);
                if !idle {
                    return Err(fail(format!(
                        "{} abandoned operations never completed",
                        engine.in_flight()
                    )));
                }
                let st = engine.stats();
                if st.completed != st.submitted {
                    return Err(fail(format!(
                        "completed != submitted after settling: {st:?}"
                    )));
                }
                drop(engine);
                self.drop_engine();
            }
            Ending::DropTicketsThenEngine => {
                for live in std::mem::take(&mut self.live) {
                    self.abandon(live);
                }
                self.check_violations()?;
                self.drop_engine();
            }
            Ending::DropEngineThenTickets => {
                self.drop_engine();
                let _watchdog =
                    util::Watchdog::arm("dropping the last tickets", Duration::from_secs(20));
                for live in std::mem::take(&mut self.live) {
                    self.abandon(live);
                }
            }
        }
        self.check_violations()
    }

    /// Once the engine is gone, drains every stream and writes into it again: a read still
    /// pending in the kernel (whose buffer was released) would take these bytes and write them
    /// into freed memory.
    fn write_after_end(&mut self) {
        let readers = [&self.pipe.0, &self.socks.1, &self.socks.0];
        let left: Vec<Vec<u8>> = readers
            .iter()
            .map(|r| util::drain_nonblocking(&*r.shared))
            .collect();
        for (s, left) in left.into_iter().enumerate() {
            self.streams[s].received.extend_from_slice(&left);
        }
        let writers = [&self.pipe.1, &self.socks.0, &self.socks.1];
        let fds: Vec<i32> = writers.iter().map(|r| r.shared.as_raw_fd()).collect();
        for (s, fd) in fds.into_iter().enumerate() {
            let tag = self.tag();
            let data = [tag; 16];
            // SAFETY: `data` is a live local array; the descriptor is open.
            let n = unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), libc::MSG_DONTWAIT) };
            let n = if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOTSOCK) {
                // SAFETY: as above (a pipe: drained just now, it has room).
                unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) }
            } else {
                n
            };
            assert_eq!(
                n,
                data.len() as isize,
                "write after the end: {}",
                io::Error::last_os_error()
            );
            self.streams[s].sent.insert(tag, Sent::Exactly(data.len()));
        }
        std::thread::sleep(Duration::from_millis(1));
    }

    fn drop_engine(&mut self) {
        let _watchdog = util::Watchdog::arm("dropping the engine", Duration::from_secs(20));
        self.engine = None;
    }
}

/// A waker that does nothing (the test drives the engine itself).
struct NoWake;

impl Wake for NoWake {
    fn wake(self: Arc<Self>) {}
}

fn dedup(v: &mut Vec<Vec<u8>>) {
    v.sort();
    v.dedup();
}

fn run_case(b: &Builder, case: &Case) -> Result<Totals, TestCaseError> {
    let fds_before = fd_set();
    let dir = util::TempDir::new("model");
    let mut initial = Vec::new();
    for s in 0..SLOTS {
        initial.extend_from_slice(&initial_slot(s));
    }
    let file: OwnedFd = dir.rw_file("data", &initial).into();
    let engine = b
        .clone()
        .entries(case.entries)
        .fixed_buffers(0, 0)
        .fixed_files(8)
        .build()
        .map_err(|e| fail(format!("build: {e}")))?;
    // Before 6.3 pipes lack IOCB_NOWAIT: io_uring runs every read or write of a blocking
    // pipe on an io-wq worker, where a cancel interrupts it with EINTR or, racing the
    // worker's pickup, misses it (the operation then waits for data forever). The kernel
    // matrix showed both on 6.1 (kernel-notes.md); there the model keeps its pipes
    // non-blocking, and says so.
    let pipe_nonblock =
        case.nonblock || (engine.backend() == trueio::Backend::Uring && !pipes_nowait());
    let (pr, pw) = util::pipe(pipe_nonblock);
    let (sa, sb) = socketpair(case.nonblock);
    let mut w = World {
        file: Res::new(&engine, file),
        pipe: (Res::new(&engine, pr), Res::new(&engine, pw)),
        socks: (Res::new(&engine, sa), Res::new(&engine, sb)),
        engine: Some(engine),
        tracker: Rc::new(Tracker::default()),
        slots: (0..SLOTS).map(|s| vec![initial_slot(s)]).collect(),
        slot_busy: [None; SLOTS],
        streams: Default::default(),
        live: Vec::new(),
        next_tag: 0,
        totals: Totals::default(),
    };
    for a in &case.actions {
        w.step(a)?;
    }
    w.end(case.ending)?;
    w.write_after_end();
    check_end(&mut w, &dir)?;
    let totals = std::mem::take(&mut w.totals);
    drop(w);
    drop(dir);
    // Descriptors opened during the sequence and still open. Other variants' threads build an
    // engine of their own before they wait for their turn: give theirs time to go.
    let mut opened: Vec<_> = fd_set().difference(&fds_before).cloned().collect();
    for _ in 0..30 {
        if opened.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        let now = fd_set();
        opened.retain(|fd| now.contains(fd));
    }
    if !opened.is_empty() {
        return Err(fail(format!(
            "descriptors leaked by the sequence: {opened:?}"
        )));
    }
    Ok(totals)
}

/// This process's open descriptors and what each refers to (but the one listing them).
fn fd_set() -> std::collections::BTreeSet<(String, String)> {
    let listing = format!("/proc/{}/fd", std::process::id());
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let target = std::fs::read_link(e.path()).ok()?;
            if target.as_os_str() == listing.as_str() {
                return None;
            }
            Some((
                e.file_name().to_string_lossy().into_owned(),
                target.to_string_lossy().into_owned(),
            ))
        })
        .collect()
}

/// The checks once the engine and every ticket are gone.
fn check_end(w: &mut World, dir: &util::TempDir) -> Result<(), TestCaseError> {
    // Every buffer was released exactly once, and nothing wrote into it afterwards.
    {
        let bufs = w.tracker.bufs.borrow();
        for (id, r) in bufs.iter().enumerate() {
            if r.drops != 1 {
                return Err(fail(format!(
                    "buffer {id} ({:?}, held by {:?}) released {} times",
                    r.use_, r.holder, r.drops
                )));
            }
            // SAFETY: the tracker keeps the memory; no operation holds the buffer any more.
            let mem = unsafe { &*r.mem };
            if let Some(p) = mem.iter().position(|&c| c != POISON) {
                return Err(fail(format!(
                    "buffer {id} ({:?}) was written after it was released (byte {p} = {:#x})",
                    r.use_, mem[p]
                )));
            }
        }
    }
    // The data abandoned reads took counts as received.
    for r in w.tracker.bufs.borrow().iter() {
        if let (Holder::Engine, Use::StreamRead(s)) = (r.holder, r.use_) {
            w.streams[s].received.extend_from_slice(&r.released_with);
        }
    }
    // The file.
    let data = dir.contents("data");
    if data.len() != SLOT * SLOTS {
        return Err(fail(format!("the file has {} bytes", data.len())));
    }
    for (s, chunk) in data.chunks(SLOT).enumerate() {
        if !w.slots[s].iter().any(|c| c == chunk) {
            return Err(fail(format!(
                "file slot {s} holds {chunk:?}, the model has {:?}",
                w.slots[s]
            )));
        }
    }
    // The streams: what is left in them, then every tag's count.
    let left = [
        util::drain_nonblocking(&*w.pipe.0.shared),
        util::drain_nonblocking(&*w.socks.1.shared),
        util::drain_nonblocking(&*w.socks.0.shared),
    ];
    for (s, left) in left.into_iter().enumerate() {
        let m = &mut w.streams[s];
        m.received.extend_from_slice(&left);
        w.totals.stream_bytes += m.received.len();
        let mut counts = BTreeMap::<u8, usize>::new();
        for &c in &m.received {
            *counts.entry(c).or_default() += 1;
        }
        for (&tag, &n) in &counts {
            if !m.sent.contains_key(&tag) {
                return Err(fail(format!(
                    "stream {s}: {n} bytes {tag:#x} that nobody wrote (poison is {POISON:#x})"
                )));
            }
        }
        for (tag, sent) in &m.sent {
            let got = counts.get(tag).copied().unwrap_or(0);
            let ok = match *sent {
                Sent::Exactly(n) => got == n,
                Sent::Unknown { len, atomic: true } => got == 0 || got == len,
                Sent::Unknown { len, atomic: false } => got <= len,
            };
            if !ok {
                return Err(fail(format!(
                    "stream {s}: tag {tag}: {got} bytes received, sent {sent:?}"
                )));
            }
        }
    }
    Ok(())
}

/// Whether this kernel's pipes take `IOCB_NOWAIT` (6.3), so that io_uring polls a blocking
/// pipe instead of blocking an io-wq worker on it. Says once when not.
fn pipes_nowait() -> bool {
    static ANSWER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ANSWER.get_or_init(|| {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut parts = release.trim().split(['.', '-']);
        let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let yes = (major, minor) >= (6, 3);
        if !yes {
            util::skip(&format!(
                "kernel {}: blocking pipes run on io-wq under io_uring (no IOCB_NOWAIT before 6.3), \
                 where a cancel can be missed; the model uses non-blocking pipes on io_uring here",
                release.trim()
            ));
        }
        yes
    })
}

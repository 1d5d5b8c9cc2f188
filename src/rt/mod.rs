//! A single-threaded executor per thread, on the Completion API.
//!
//! [`Runtime::block_on`] runs a future and every task it [`spawn`]s on the current thread,
//! driving the thread's [`Engine`] whenever no task is ready: one `io_uring_enter` (or one
//! `epoll_wait`) submits the operations the tasks queued and waits for completions. Tasks need
//! not be `Send`. [`run_per_core`] starts one runtime with its own engine per core, the
//! thread-per-core model.
//!
//! There is no work stealing, on purpose: an engine (and its ring, its registered buffers and
//! fixed files) belongs to one thread, and an operation's resources stay on the thread that
//! submitted it. Moving tasks between threads would need `Send` tasks and shared engines,
//! and the cache traffic and locking that come with them. Spread work by giving each thread
//! its own listener (`SO_REUSEPORT`) or its own files.
//!
//! Wake-ups from other threads (a [`Waker`] sent elsewhere) go through a
//! queue and an eventfd that the runtime keeps a read pending on, so they work on both
//! backends.
//!
//! ```
//! # fn main() -> std::io::Result<()> {
//! use trueio::rt::{self, Runtime};
//! let rt = Runtime::new()?;
//! let sum = rt.block_on(async {
//!     let a = rt::spawn(async { 1 });
//!     let b = rt::spawn(async { 2 });
//!     a.await.unwrap() + b.await.unwrap()
//! });
//! assert_eq!(sum, 3);
//! # Ok(()) }
//! ```

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use slab::Slab;

use crate::{op, Builder, Engine, Ticket};

mod timer;

pub(crate) use timer::{TimerKey, Timers};

/// The id the block_on future uses in the ready queue.
const MAIN: usize = usize::MAX;
/// Tasks polled between two looks at the engine's completions.
const BUDGET: usize = 128;

type Task = Pin<Box<dyn Future<Output = ()>>>;

thread_local! {
    static CURRENT: RefCell<Option<Rc<Scheduler>>> = const { RefCell::new(None) };
}

/// What other threads share with a runtime: the queue of remote wake-ups and the eventfd that
/// interrupts the engine's wait.
struct Shared {
    remote: Mutex<Vec<usize>>,
    eventfd: OwnedFd,
    /// Set while the runtime waits in the engine: a remote wake must write the eventfd.
    sleeping: AtomicBool,
}

struct TaskWaker {
    id: usize,
    shared: Arc<Shared>,
    /// In a ready queue already (or being polled and woken again).
    scheduled: AtomicBool,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let local = CURRENT.with(|c| match &*c.borrow() {
            Some(s) if Arc::ptr_eq(&s.shared, &self.shared) => {
                s.ready.borrow_mut().push_back(self.id);
                true
            }
            _ => false,
        });
        if local {
            return;
        }
        self.shared
            .remote
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(self.id);
        if self.shared.sleeping.load(Ordering::SeqCst) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a local to the eventfd this Shared owns. A full
            // counter (EAGAIN) means a wake-up is pending already.
            unsafe {
                libc::write(
                    self.shared.eventfd.as_raw_fd(),
                    (&one as *const u64).cast(),
                    8,
                )
            };
        }
    }
}

struct Slot {
    task: Option<Task>,
    waker: Arc<TaskWaker>,
}

struct Scheduler {
    /// The pending read on the eventfd (declared before `engine` and `shared`: dropped
    /// first, which cancels it while both still exist).
    notify: RefCell<Option<Ticket<op::Read<Vec<u8>>>>>,
    engine: Engine,
    tasks: RefCell<Slab<Slot>>,
    ready: RefCell<VecDeque<usize>>,
    shared: Arc<Shared>,
    /// `time::sleep`, `timeout` and `deadline` register here (see `timer.rs`).
    timers: Rc<RefCell<Timers>>,
}

/// A thread's executor and its engine.
pub struct Runtime {
    sched: Rc<Scheduler>,
    main_waker: Arc<TaskWaker>,
    entered: Cell<bool>,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("engine", &self.sched.engine)
            .field("tasks", &self.sched.tasks.borrow().len())
            .finish()
    }
}

impl Runtime {
    /// A runtime with an engine built from the environment (`TRUEIO_BACKEND`).
    pub fn new() -> io::Result<Runtime> {
        Self::with_engine(Engine::new()?)
    }

    /// A runtime with an engine built from `builder`.
    pub fn with_builder(builder: Builder) -> io::Result<Runtime> {
        Self::with_engine(builder.build()?)
    }

    /// A runtime driving `engine`.
    pub fn with_engine(engine: Engine) -> io::Result<Runtime> {
        // SAFETY: eventfd takes plain flags; the result is checked before it is owned.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("runtime eventfd: {e}")));
        }
        let shared = Arc::new(Shared {
            remote: Mutex::new(Vec::new()),
            // SAFETY: a fresh descriptor that nothing else owns.
            eventfd: unsafe { OwnedFd::from_raw_fd(fd) },
            sleeping: AtomicBool::new(false),
        });
        let main_waker = Arc::new(TaskWaker {
            id: MAIN,
            shared: shared.clone(),
            scheduled: AtomicBool::new(false),
        });
        Ok(Runtime {
            sched: Rc::new(Scheduler {
                notify: RefCell::new(None),
                engine,
                tasks: RefCell::new(Slab::new()),
                ready: RefCell::new(VecDeque::new()),
                shared,
                timers: Rc::new(RefCell::new(Timers::default())),
            }),
            main_waker,
            entered: Cell::new(false),
        })
    }

    /// The runtime's engine.
    pub fn engine(&self) -> &Engine {
        &self.sched.engine
    }

    /// Runs `fut` to completion on this thread, with every task spawned meanwhile.
    ///
    /// # Panics
    ///
    /// When called from inside another `block_on` on the same thread, or when the engine
    /// itself fails (for example a ring inherited across `fork`).
    pub fn block_on<F: Future>(&self, fut: F) -> F::Output {
        assert!(
            !self.entered.replace(true) && CURRENT.with(|c| c.borrow().is_none()),
            "trueio: block_on inside a runtime on the same thread"
        );
        let _guard = Enter::new(self);
        let mut fut = std::pin::pin!(fut);
        let main = Waker::from(self.main_waker.clone());
        let sched = &self.sched;
        sched.ready.borrow_mut().push_back(MAIN);
        self.main_waker.scheduled.store(true, Ordering::Release);
        loop {
            let mut polled = 0;
            loop {
                let next = sched.ready.borrow_mut().pop_front();
                let Some(id) = next else { break };
                if id == MAIN {
                    self.main_waker.scheduled.store(false, Ordering::Release);
                    if let Poll::Ready(out) = fut.as_mut().poll(&mut Context::from_waker(&main)) {
                        return out;
                    }
                } else {
                    sched.poll_task(id);
                }
                polled += 1;
                if polled % BUDGET == 0 {
                    // Let completions and due timers in even while tasks keep each other busy.
                    if let Err(e) = sched.engine.poll() {
                        panic!("trueio runtime: the engine failed: {e}");
                    }
                    sched.fire_timers();
                }
            }
            if sched.take_remote() {
                continue;
            }
            let (fired, next_timer) = sched.fire_timers();
            if fired {
                continue;
            }
            sched.arm_notify();
            sched.shared.sleeping.store(true, Ordering::SeqCst);
            // A remote wake that came before `sleeping` was set is in the queue: look again.
            if sched.take_remote() {
                sched.shared.sleeping.store(false, Ordering::SeqCst);
                continue;
            }
            let r = sched
                .engine
                .turn(next_timer.map(|d| d.saturating_duration_since(Instant::now())));
            sched.shared.sleeping.store(false, Ordering::SeqCst);
            if let Err(e) = r {
                panic!("trueio runtime: the engine failed: {e}");
            }
            sched.take_remote();
        }
    }
}

/// Sets the thread's current runtime for the duration of a `block_on`.
struct Enter<'a> {
    rt: &'a Runtime,
}

impl<'a> Enter<'a> {
    fn new(rt: &'a Runtime) -> Enter<'a> {
        CURRENT.with(|c| *c.borrow_mut() = Some(rt.sched.clone()));
        Enter { rt }
    }
}

impl Drop for Enter<'_> {
    fn drop(&mut self) {
        CURRENT.with(|c| *c.borrow_mut() = None);
        self.rt.entered.set(false);
    }
}

impl Scheduler {
    fn poll_task(&self, id: usize) {
        let (task, waker) = {
            let mut tasks = self.tasks.borrow_mut();
            let Some(slot) = tasks.get_mut(id) else {
                return;
            };
            let Some(task) = slot.task.take() else {
                return;
            };
            slot.waker.scheduled.store(false, Ordering::Release);
            (task, slot.waker.clone())
        };
        let mut task = task;
        let w = Waker::from(waker);
        // Outside the borrow: the task may spawn or wake others.
        let done = task.as_mut().poll(&mut Context::from_waker(&w)).is_ready();
        let mut tasks = self.tasks.borrow_mut();
        if done {
            tasks.remove(id);
        } else if let Some(slot) = tasks.get_mut(id) {
            slot.task = Some(task);
        }
    }

    /// Wakes the tasks whose timers are due; returns whether any were, and the next deadline.
    fn fire_timers(&self) -> (bool, Option<Instant>) {
        let mut wake = Vec::new();
        let next = {
            let mut timers = self.timers.borrow_mut();
            if timers.is_empty() {
                return (false, None);
            }
            timers.fire(Instant::now(), &mut wake)
        };
        let fired = !wake.is_empty();
        // Outside the borrow: a wake may run code that registers or drops timers.
        for w in wake {
            w.wake();
        }
        (fired, next)
    }

    /// Moves remote wake-ups into the ready queue; true when there were any.
    fn take_remote(&self) -> bool {
        let ids =
            std::mem::take(&mut *self.shared.remote.lock().unwrap_or_else(|e| e.into_inner()));
        if ids.is_empty() {
            return false;
        }
        let mut ready = self.ready.borrow_mut();
        for id in ids {
            if id == MAIN || self.tasks.borrow().contains(id) {
                ready.push_back(id);
            }
        }
        true
    }

    /// Keeps a read pending on the eventfd so a remote wake ends the engine's wait.
    fn arm_notify(&self) {
        let mut notify = self.notify.borrow_mut();
        if let Some(t) = notify.as_mut() {
            match t.try_take() {
                None => return,
                Some((_, buf)) => {
                    let fd = self.shared.eventfd.as_raw_fd();
                    *notify = Some(self.engine.submit(op::Read::stream(fd, buf)));
                    return;
                }
            }
        }
        let fd = self.shared.eventfd.as_raw_fd();
        *notify = Some(self.engine.submit(op::Read::stream(fd, vec![0u8; 8])));
    }
}

/// Spawns a task on the current thread's runtime.
///
/// # Panics
///
/// Outside [`Runtime::block_on`].
pub fn spawn<F>(fut: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let sched = CURRENT
        .with(|c| c.borrow().clone())
        .expect("trueio::rt::spawn outside a runtime");
    let state = Rc::new(RefCell::new(JoinState::<F::Output> {
        result: None,
        waker: None,
        detached: false,
    }));
    let st = state.clone();
    let task: Task = Box::pin(async move {
        let out = CatchUnwind(AssertUnwindSafe(fut)).await;
        let mut s = st.borrow_mut();
        if s.detached {
            return;
        }
        s.result = Some(out);
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    });
    let id = {
        let mut tasks = sched.tasks.borrow_mut();
        let entry = tasks.vacant_entry();
        let id = entry.key();
        entry.insert(Slot {
            task: Some(task),
            waker: Arc::new(TaskWaker {
                id,
                shared: sched.shared.clone(),
                scheduled: AtomicBool::new(true),
            }),
        });
        id
    };
    sched.ready.borrow_mut().push_back(id);
    JoinHandle { state }
}

/// The engine of the current thread's runtime.
///
/// # Panics
///
/// Outside [`Runtime::block_on`].
pub fn engine() -> Engine {
    try_engine().expect("trueio: no runtime on this thread (use Runtime::block_on)")
}

/// The timers of the current thread's runtime.
///
/// # Panics
///
/// Outside [`Runtime::block_on`].
pub(crate) fn timers() -> Rc<RefCell<Timers>> {
    CURRENT
        .with(|c| c.borrow().as_ref().map(|s| s.timers.clone()))
        .expect("trueio: timers need a runtime on this thread (use Runtime::block_on)")
}

/// The engine of the current thread's runtime, if any.
pub fn try_engine() -> Option<Engine> {
    CURRENT.with(|c| c.borrow().as_ref().map(|s| s.engine.clone()))
}

struct JoinState<T> {
    result: Option<std::thread::Result<T>>,
    waker: Option<Waker>,
    detached: bool,
}

/// Awaits a spawned task's output: `Ok(value)`, or `Err(panic payload)` when the task
/// panicked (the runtime and the other tasks go on). Dropping the handle detaches the task.
pub struct JoinHandle<T> {
    state: Rc<RefCell<JoinState<T>>>,
}

impl<T> JoinHandle<T> {
    /// True once the task has finished.
    pub fn is_finished(&self) -> bool {
        self.state.borrow().result.is_some()
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = std::thread::Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = self.state.borrow_mut();
        match s.result.take() {
            Some(r) => Poll::Ready(r),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        self.state.borrow_mut().detached = true;
    }
}

/// Polls a future, turning a panic into an `Err` with its payload.
struct CatchUnwind<F>(AssertUnwindSafe<F>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = std::thread::Result<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: structural pinning of the only field; it is never moved out.
        let inner = unsafe { self.map_unchecked_mut(|s| &mut s.0 .0) };
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

/// Yields once to the other ready tasks.
pub async fn yield_now() {
    struct YieldNow(bool);
    impl Future for YieldNow {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 {
                return Poll::Ready(());
            }
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
    YieldNow(false).await
}

/// Starts `threads` threads, each with a runtime on an engine from `builder` (its backend and
/// sizes), pins thread `i` to CPU `i % cores` where the system allows it, runs `main(i)` on
/// each, and returns their outputs in thread order.
///
/// A thread whose engine cannot be built, or whose `main` panics, yields `Err`.
pub fn run_per_core<F, Fut, T>(threads: usize, builder: Builder, main: F) -> Vec<io::Result<T>>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let main = Arc::new(main);
    let handles: Vec<_> = (0..threads.max(1))
        .map(|i| {
            let main = main.clone();
            let builder = builder.clone();
            std::thread::Builder::new()
                .name(format!("trueio-{i}"))
                .spawn(move || -> io::Result<T> {
                    pin_to_cpu(i % cores);
                    let rt = Runtime::with_builder(builder)?;
                    Ok(rt.block_on(main(i)))
                })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| match h {
            Ok(h) => h
                .join()
                .unwrap_or_else(|p| Err(io::Error::other(panic_message(&p)))),
            Err(e) => Err(e),
        })
        .collect()
}

fn panic_message(p: &Box<dyn Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        format!("thread panicked: {s}")
    } else if let Some(s) = p.downcast_ref::<String>() {
        format!("thread panicked: {s}")
    } else {
        "thread panicked".into()
    }
}

/// Pins the calling thread to `cpu`; a refusal (cgroup cpuset, seccomp) is not an error.
fn pin_to_cpu(cpu: usize) {
    // SAFETY: cpu_set_t is plain bits; CPU_SET writes within it (cpu < CPU_SETSIZE checked).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu < libc::CPU_SETSIZE as usize {
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
}

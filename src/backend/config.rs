//! What the backends take from the engine's builder: a leaf type, so that no backend names
//! the engine's own.

use crate::capability::{Feature, Features};

/// The settings a backend is opened with.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// The engine's id (the io_uring backend names its ring after it in the report).
    pub(crate) engine_id: u64,
    /// Submission queue size asked for.
    pub(crate) entries: u32,
    /// Completion queue size asked for (at least twice `entries` is used).
    pub(crate) cq_entries: Option<u32>,
    /// Fixed-file slots (0: none).
    pub(crate) fixed_files: u32,
    /// SQPOLL idle time in milliseconds, when asked.
    pub(crate) sqpoll_idle: Option<u32>,
    /// The CPU of the SQPOLL thread, when asked.
    pub(crate) sqpoll_cpu: Option<u32>,
    /// Features switched off (each a rung of the degradation ladder).
    pub(crate) disabled: Features,
    /// Threads of the epoll backend's blocking pool.
    pub(crate) pool_threads: Option<usize>,
    /// Queue bound of that pool.
    pub(crate) pool_queue: Option<usize>,
    /// Positional file writes run inline, blocking (`Builder::inline_file_writes`).
    pub(crate) inline_file_writes: bool,
    /// io_uring opcodes treated as missing (`Builder::without_opcode`).
    pub(crate) masked_opcodes: Vec<u8>,
    /// The CPUs io-wq workers may run on (`Builder::io_worker_cpus`).
    pub(crate) io_worker_cpus: Option<Vec<usize>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            engine_id: 0,
            entries: 256,
            cq_entries: None,
            fixed_files: 64,
            sqpoll_idle: None,
            sqpoll_cpu: None,
            disabled: Features::empty(),
            pool_threads: None,
            pool_queue: None,
            inline_file_writes: false,
            masked_opcodes: Vec::new(),
            io_worker_cpus: None,
        }
    }
}

impl Config {
    /// Whether `feature` was switched off.
    #[inline]
    pub(crate) fn is_disabled(&self, feature: Feature) -> bool {
        self.disabled.contains(feature)
    }
}

//! What an operation acts on: a file descriptor the caller keeps open, a shared handle that
//! keeps it open while the operation is in flight, or a slot of the engine's fixed-file table.

use std::cell::RefCell;
use std::fmt;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::rc::{Rc, Weak};

/// The file an operation acts on.
///
/// - `Fd::Raw`: a descriptor the caller keeps open until the completion (built from `&T` for any
///   `T: AsRawFd`, e.g. `&File`). Closing it early is not memory-unsafe, but the operation may
///   then act on whatever reuses that number.
/// - `Fd::Shared`: an `Rc<OwnedFd>` clone held by the operation, so the descriptor cannot be
///   closed under it.
/// - `Fd::Fixed`: a slot in the engine's fixed-file table (see [`Engine::register_file`]); the
///   operation holds the slot, so it is not reused while the operation is in flight.
///
/// [`Engine::register_file`]: crate::Engine::register_file
#[derive(Clone)]
pub enum Fd {
    /// A raw descriptor the caller keeps open.
    Raw(RawFd),
    /// A shared, owned descriptor kept open by the operation.
    Shared(Rc<OwnedFd>),
    /// A fixed-file (direct descriptor) slot.
    Fixed(FixedFile),
}

impl Fd {
    /// The descriptor number or the fixed slot, and which of the two it is.
    pub(crate) fn target(&self) -> Target {
        match self {
            Fd::Raw(fd) => Target::Fd(*fd),
            Fd::Shared(fd) => Target::Fd(fd.as_raw_fd()),
            Fd::Fixed(f) => Target::Fixed(f.slot()),
        }
    }
}

impl Fd {
    /// For a shared descriptor, a weak handle on it: while it upgrades, the descriptor has
    /// not been closed (the epoll backend uses this to trust an earlier registration).
    pub(crate) fn owner(&self) -> Option<Weak<OwnedFd>> {
        match self {
            Fd::Shared(fd) => Some(Rc::downgrade(fd)),
            Fd::Raw(_) | Fd::Fixed(_) => None,
        }
    }
}

impl fmt::Debug for Fd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fd::Raw(fd) => write!(f, "Fd::Raw({fd})"),
            Fd::Shared(fd) => write!(f, "Fd::Shared({})", fd.as_raw_fd()),
            Fd::Fixed(x) => write!(f, "Fd::Fixed({})", x.slot()),
        }
    }
}

impl<T: AsRawFd> From<&T> for Fd {
    fn from(f: &T) -> Fd {
        Fd::Raw(f.as_raw_fd())
    }
}

impl From<RawFd> for Fd {
    fn from(fd: RawFd) -> Fd {
        Fd::Raw(fd)
    }
}

impl From<Rc<OwnedFd>> for Fd {
    fn from(fd: Rc<OwnedFd>) -> Fd {
        Fd::Shared(fd)
    }
}

impl From<OwnedFd> for Fd {
    fn from(fd: OwnedFd) -> Fd {
        Fd::Shared(Rc::new(fd))
    }
}

impl From<FixedFile> for Fd {
    fn from(f: FixedFile) -> Fd {
        Fd::Fixed(f)
    }
}

impl From<&FixedFile> for Fd {
    fn from(f: &FixedFile) -> Fd {
        Fd::Fixed(f.clone())
    }
}

/// A descriptor number or a fixed-table slot, as the backends see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Fd(RawFd),
    Fixed(u32),
}

/// A slot in an engine's fixed-file table (an io_uring "direct descriptor"; emulated by a table
/// of descriptors on the epoll backend).
///
/// Cheap to clone; the slot is released when the last clone is dropped, and every operation
/// that names the slot holds a clone, so a slot is never reused while an operation on the old
/// file is in flight.
#[derive(Clone)]
pub struct FixedFile {
    guard: Rc<SlotGuard>,
}

struct SlotGuard {
    slot: u32,
    table: Rc<FileTable>,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.table.released.borrow_mut().push(self.slot);
    }
}

impl FixedFile {
    /// The slot index in the fixed-file table.
    pub fn slot(&self) -> u32 {
        self.guard.slot
    }

    pub(crate) fn new(slot: u32, table: Rc<FileTable>) -> FixedFile {
        FixedFile {
            guard: Rc::new(SlotGuard { slot, table }),
        }
    }

    pub(crate) fn table(&self) -> &Rc<FileTable> {
        &self.guard.table
    }
}

impl fmt::Debug for FixedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("FixedFile").field(&self.slot()).finish()
    }
}

/// The engine's bookkeeping of fixed-file slots, shared by both backends.
///
/// A slot goes `free -> in use (FixedFile clones alive) -> released (last clone dropped) ->
/// free`, and the released -> free step happens only after the backend has emptied the slot
/// (io_uring: `IORING_REGISTER_FILES_UPDATE` with -1; epoll: the emulated descriptor closed).
#[derive(Debug)]
pub(crate) struct FileTable {
    pub(crate) size: u32,
    pub(crate) free: RefCell<Vec<u32>>,
    pub(crate) released: RefCell<Vec<u32>>,
    /// The epoll backend's emulation: the descriptor in each slot.
    pub(crate) emulated: RefCell<Vec<Option<OwnedFd>>>,
}

impl FileTable {
    pub(crate) fn new(size: u32) -> FileTable {
        FileTable {
            size,
            free: RefCell::new((0..size).rev().collect()),
            released: RefCell::new(Vec::new()),
            emulated: RefCell::new(Vec::new()),
        }
    }

    /// The descriptor the epoll backend keeps in `slot`.
    pub(crate) fn emulated_fd(&self, slot: u32) -> Option<RawFd> {
        self.emulated
            .borrow()
            .get(slot as usize)
            .and_then(|f| f.as_ref().map(|f| f.as_raw_fd()))
    }
}

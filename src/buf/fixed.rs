use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::ops::{Deref, DerefMut};
use std::rc::Rc;

use super::{map_anonymous, page_size, IoBuf, IoBufMut};

/// A pool of equally sized, page-aligned buffers carved from one memory arena.
///
/// The engine registers the arena with the kernel as a single fixed buffer (index 0) when it
/// can; `READ_FIXED`/`WRITE_FIXED` on a [`FixedBuf`] then skip the per-operation page pinning.
/// When registration is refused (RLIMIT_MEMLOCK too low, EPERM, or the epoll backend), the
/// same pool still hands out the same buffers and fixed operations run as plain ones:
/// the ownership rules and the API do not change, only the speed. [`Engine::report`] says which.
///
/// A [`FixedBuf`] goes back to the pool when it is dropped; a buffer inside an operation in
/// flight is owned by the engine until the kernel's completion has been reaped, so it cannot
/// be handed out twice.
///
/// [`Engine::report`]: crate::Engine::report
#[derive(Clone)]
pub struct BufPool {
    inner: Rc<Arena>,
}

struct Arena {
    base: *mut u8,
    map_len: usize,
    buf_size: usize,
    count: usize,
    free: RefCell<Vec<u16>>,
    /// The registered-buffer index of the arena in its engine's ring, when registered.
    registered: Cell<Option<u16>>,
    /// Identifies the engine whose ring registered the arena.
    owner: Cell<u64>,
}

impl BufPool {
    /// A pool of `count` buffers of `buf_size` bytes each (rounded up to the page size).
    ///
    /// `count` is at most 65 536. The memory is mapped, zeroed and page-aligned.
    pub fn new(count: usize, buf_size: usize) -> io::Result<BufPool> {
        if count > u16::MAX as usize + 1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("buffer pool: {count} buffers requested, at most 65536"),
            ));
        }
        let page = page_size();
        let buf_size = buf_size.max(1).div_ceil(page) * page;
        let map_len = buf_size.checked_mul(count.max(1)).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "buffer pool: size overflows")
        })?;
        let base = map_anonymous(map_len, "buffer pool")?;
        Ok(BufPool {
            inner: Rc::new(Arena {
                base,
                map_len,
                buf_size,
                count,
                free: RefCell::new((0..count).rev().map(|i| i as u16).collect()),
                registered: Cell::new(None),
                owner: Cell::new(0),
            }),
        })
    }

    /// Takes a free buffer (`len == 0`), or `None` when all are in use.
    pub fn try_get(&self) -> Option<FixedBuf> {
        let idx = self.inner.free.borrow_mut().pop()?;
        Some(FixedBuf {
            arena: self.inner.clone(),
            idx,
            len: 0,
        })
    }

    /// Takes a free buffer, or fails with `WouldBlock` and a message saying the pool is
    /// exhausted.
    pub fn get(&self) -> io::Result<FixedBuf> {
        self.try_get().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "registered buffer pool exhausted: all {} buffers are in use",
                    self.inner.count
                ),
            )
        })
    }

    /// The size of each buffer.
    pub fn buf_size(&self) -> usize {
        self.inner.buf_size
    }

    /// How many buffers the pool has.
    pub fn count(&self) -> usize {
        self.inner.count
    }

    /// How many buffers are free now.
    pub fn available(&self) -> usize {
        self.inner.free.borrow().len()
    }

    /// True when the arena is registered with a ring (fixed operations skip page pinning).
    pub fn is_registered(&self) -> bool {
        self.inner.registered.get().is_some()
    }

    /// The arena as one iovec, for registration.
    pub(crate) fn arena_iovec(&self) -> libc::iovec {
        libc::iovec {
            iov_base: self.inner.base.cast(),
            iov_len: self.inner.map_len,
        }
    }

    pub(crate) fn mark_registered(&self, owner: u64, index: u16) {
        self.inner.owner.set(owner);
        self.inner.registered.set(Some(index));
    }

    pub(crate) fn mark_unregistered(&self) {
        self.inner.registered.set(None);
    }
}

impl fmt::Debug for BufPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufPool")
            .field("count", &self.inner.count)
            .field("buf_size", &self.inner.buf_size)
            .field("available", &self.available())
            .field("registered", &self.is_registered())
            .finish()
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: the mapping was created in BufPool::new with this length; every FixedBuf
        // (and every operation holding one) keeps the arena alive through its Rc, so no
        // pointer into it is used after this point.
        unsafe { libc::munmap(self.base.cast(), self.map_len) };
    }
}

/// One buffer of a [`BufPool`]: page-aligned, owned, returned to the pool on drop.
///
/// `len` follows `Vec` semantics: the bytes that hold data. The whole capacity is always
/// initialised (the arena is zeroed when mapped).
pub struct FixedBuf {
    arena: Rc<Arena>,
    idx: u16,
    len: usize,
}

impl FixedBuf {
    /// The bytes held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when `len` is 0.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The buffer's capacity (the pool's buffer size).
    pub fn capacity(&self) -> usize {
        self.arena.buf_size
    }

    /// Sets `len`.
    ///
    /// # Panics
    ///
    /// When `len > capacity()`.
    pub fn set_len(&mut self, len: usize) {
        assert!(len <= self.capacity(), "FixedBuf::set_len beyond capacity");
        self.len = len;
    }

    /// Sets `len` to 0.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Appends as much of `data` as fits; returns how many bytes were copied.
    pub fn extend_from_slice(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.capacity() - self.len);
        // SAFETY: `start..start+n` is within this buffer's slot, which only this FixedBuf uses.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr().add(self.len), n);
        }
        self.len += n;
        n
    }

    /// The slot index of this buffer within its pool.
    pub fn slot(&self) -> u16 {
        self.idx
    }

    fn ptr(&self) -> *mut u8 {
        // SAFETY: idx < count, so the offset stays inside the mapping.
        unsafe { self.arena.base.add(self.idx as usize * self.arena.buf_size) }
    }
}

impl Drop for FixedBuf {
    fn drop(&mut self) {
        self.arena.free.borrow_mut().push(self.idx);
    }
}

impl Deref for FixedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the slot is initialised memory owned exclusively by this FixedBuf.
        unsafe { std::slice::from_raw_parts(self.ptr(), self.len) }
    }
}

impl DerefMut for FixedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for Deref, with exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr(), self.len) }
    }
}

impl fmt::Debug for FixedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FixedBuf")
            .field("slot", &self.idx)
            .field("len", &self.len)
            .field("capacity", &self.capacity())
            .finish()
    }
}

// SAFETY: the slot lives in the arena mapping, which the Rc keeps alive and which never
// moves; it is initialised (zeroed at mmap).
unsafe impl IoBuf for FixedBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len
    }
    fn bytes_total(&self) -> usize {
        self.capacity()
    }
    fn fixed_index(&self) -> Option<u16> {
        self.arena.registered.get()
    }
    fn registered_for(&self, owner: u64) -> Option<u16> {
        match self.arena.registered.get() {
            Some(i) if self.arena.owner.get() == owner => Some(i),
            _ => None,
        }
    }
}

// SAFETY: the whole slot is writable and initialised; set_init only raises len.
unsafe impl IoBufMut for FixedBuf {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.ptr()
    }
    unsafe fn set_init(&mut self, pos: usize) {
        if self.len < pos {
            self.len = pos.min(self.capacity());
        }
    }
}

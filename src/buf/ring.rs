use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::ops::Deref;
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;

use super::{map_anonymous, page_size};

/// `IORING_CQE_F_BUFFER`: the completion names a provided buffer in its upper 16 bits.
pub(crate) const CQE_F_BUFFER: u32 = 1;
const CQE_BUFFER_SHIFT: u32 = 16;

/// A ring of provided buffers (io_uring's `IORING_REGISTER_PBUF_RING`, 5.19; emulated by a
/// free list on the epoll backend): multishot receives pick a buffer per completion, so no
/// buffer is tied up by a connection that has nothing to say.
///
/// Each [`RingBuf`] a completion gives back returns to the ring when dropped. When every
/// buffer is out, a multishot receive ends with `ENOBUFS`; start it again once buffers came
/// back. Created by [`Engine::buf_ring`](crate::Engine::buf_ring); the engine keeps the memory
/// alive for as long as its ring may use it.
#[derive(Clone)]
pub struct BufRing {
    pub(crate) inner: Rc<RingInner>,
}

pub(crate) struct RingInner {
    pub(crate) bgid: u16,
    entries: u16,
    buf_size: usize,
    arena: *mut u8,
    arena_len: usize,
    /// io_uring: the ring the kernel takes buffers from.
    kernel: Option<KernelRing>,
    /// The epoll emulation: buffers not handed out.
    free: RefCell<Vec<u16>>,
}

struct KernelRing {
    base: *mut BufRingEntry,
    len: usize,
    /// Our copy of the tail; published to the kernel after each addition.
    tail: Cell<u16>,
}

impl RingInner {
    /// A ring of `entries` (a power of two, at most 32768) buffers of `buf_size` bytes.
    /// `kernel`: also map the ring the kernel reads (the caller registers it).
    pub(crate) fn new(
        bgid: u16,
        entries: u16,
        buf_size: usize,
        kernel: bool,
    ) -> io::Result<RingInner> {
        if entries == 0 || !entries.is_power_of_two() || entries > 32768 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("buffer ring: {entries} entries; need a power of two up to 32768"),
            ));
        }
        let page = page_size();
        let buf_size = buf_size.max(1).div_ceil(page) * page;
        let arena_len = buf_size * entries as usize;
        let arena = map_anonymous(arena_len, "buffer ring")?;
        let kernel = if kernel {
            let len =
                (entries as usize * std::mem::size_of::<BufRingEntry>()).div_ceil(page) * page;
            match map_anonymous(len, "buffer ring") {
                Ok(base) => Some(KernelRing {
                    base: base.cast(),
                    len,
                    tail: Cell::new(0),
                }),
                Err(e) => {
                    // SAFETY: the arena was mapped above with this length and is unused.
                    unsafe { libc::munmap(arena.cast(), arena_len) };
                    return Err(e);
                }
            }
        } else {
            None
        };
        Ok(RingInner {
            bgid,
            entries,
            buf_size,
            arena,
            arena_len,
            kernel,
            free: RefCell::new((0..entries).rev().collect()),
        })
    }

    /// The kernel ring's address, for registration.
    pub(crate) fn ring_addr(&self) -> Option<u64> {
        self.kernel.as_ref().map(|k| k.base as u64)
    }

    pub(crate) fn entries(&self) -> u16 {
        self.entries
    }

    /// Hands every buffer to the kernel ring (after registration).
    pub(crate) fn fill(&self) {
        if self.kernel.is_some() {
            self.free.borrow_mut().clear();
            for bid in 0..self.entries {
                self.recycle(bid);
            }
        }
    }

    fn slot(&self, bid: u16) -> *mut u8 {
        // SAFETY: bid < entries, so the offset is inside the arena.
        unsafe { self.arena.add(bid as usize * self.buf_size) }
    }

    /// Gives buffer `bid` back: to the kernel ring, or to the emulation's free list.
    fn recycle(&self, bid: u16) {
        match &self.kernel {
            Some(k) => {
                let tail = k.tail.get();
                let idx = (tail & (self.entries - 1)) as usize;
                // SAFETY: idx < entries, within the ring mapping; the kernel reads this entry
                // only after the tail below makes it visible.
                let e = unsafe { &mut *k.base.add(idx) };
                e.set_addr(self.slot(bid) as u64);
                e.set_len(self.buf_size as u32);
                e.set_bid(bid);
                let tail = tail.wrapping_add(1);
                k.tail.set(tail);
                // SAFETY: the ring's tail is the u16 the kernel reads at this address; the
                // release store publishes the entry written above before the new tail.
                unsafe {
                    let t = BufRingEntry::tail(k.base) as *const AtomicU16;
                    (*t).store(tail, Ordering::Release);
                }
            }
            None => self.free.borrow_mut().push(bid),
        }
    }

    /// The epoll emulation: a free buffer, as the kernel would select one.
    pub(crate) fn take(&self) -> Option<(u16, *mut u8, usize)> {
        let bid = self.free.borrow_mut().pop()?;
        Some((bid, self.slot(bid), self.buf_size))
    }

    /// The epoll emulation: a buffer taken but not filled goes back.
    pub(crate) fn untake(&self, bid: u16) {
        self.free.borrow_mut().push(bid);
    }
}

impl Drop for RingInner {
    fn drop(&mut self) {
        // The engine holds the ring until its own ring is gone, so the kernel no longer reads
        // these mappings.
        // SAFETY: both mappings were made in `new` with these lengths.
        unsafe {
            libc::munmap(self.arena.cast(), self.arena_len);
            if let Some(k) = &self.kernel {
                libc::munmap(k.base.cast(), k.len);
            }
        }
    }
}

impl BufRing {
    /// The buffer group id operations name.
    pub fn group(&self) -> u16 {
        self.inner.bgid
    }

    /// The size of each buffer.
    pub fn buf_size(&self) -> usize {
        self.inner.buf_size
    }

    /// How many buffers the ring has.
    pub fn entries(&self) -> u16 {
        self.inner.entries
    }

    /// The buffer a completion names (its flags carry the buffer id), holding `len` bytes.
    /// `None` when the completion carries no buffer (an error, or the end of a stream).
    pub(crate) fn buffer_of(&self, len: usize, flags: u32) -> Option<RingBuf> {
        if flags & CQE_F_BUFFER == 0 {
            return None;
        }
        let bid = (flags >> CQE_BUFFER_SHIFT) as u16;
        if bid >= self.inner.entries {
            return None;
        }
        Some(RingBuf {
            ring: self.inner.clone(),
            bid: Some(bid),
            len: len.min(self.inner.buf_size),
        })
    }

    /// The flags a completion carries for buffer `bid` (the epoll emulation builds them).
    pub(crate) fn flags_for(bid: u16) -> u32 {
        CQE_F_BUFFER | ((bid as u32) << CQE_BUFFER_SHIFT)
    }
}

impl fmt::Debug for BufRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufRing")
            .field("group", &self.inner.bgid)
            .field("entries", &self.inner.entries)
            .field("buf_size", &self.inner.buf_size)
            .field("kernel", &self.inner.kernel.is_some())
            .finish()
    }
}

/// Data received into a buffer of a [`BufRing`]; the buffer returns to the ring on drop.
pub struct RingBuf {
    ring: Rc<RingInner>,
    /// `None` for the empty item that ends a stream.
    bid: Option<u16>,
    len: usize,
}

impl RingBuf {
    /// The empty item: the end of a received stream.
    pub(crate) fn empty(ring: &BufRing) -> RingBuf {
        RingBuf {
            ring: ring.inner.clone(),
            bid: None,
            len: 0,
        }
    }
}

impl Deref for RingBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self.bid {
            // SAFETY: the kernel (or the emulation) wrote `len` bytes into this buffer, which
            // is ours alone until it is recycled on drop.
            Some(bid) => unsafe { std::slice::from_raw_parts(self.ring.slot(bid), self.len) },
            None => &[],
        }
    }
}

// SAFETY: the bytes live in the ring's arena, which does not move and which the Rc keeps
// mapped; the buffer is not in the ring (so nothing else writes it) until this value drops.
unsafe impl super::IoBuf for RingBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.deref().as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len
    }
    fn bytes_total(&self) -> usize {
        self.len
    }
}

impl Drop for RingBuf {
    fn drop(&mut self) {
        if let Some(bid) = self.bid {
            self.ring.recycle(bid);
        }
    }
}

impl fmt::Debug for RingBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingBuf")
            .field("bid", &self.bid)
            .field("len", &self.len)
            .finish()
    }
}

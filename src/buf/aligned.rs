use std::alloc::{self, Layout};
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use super::{page_size, IoBuf, IoBufMut};

/// A heap buffer whose start is aligned to a chosen power of two (the page size by default).
///
/// `O_DIRECT` needs buffers aligned to the device's DMA alignment (see `STATX_DIOALIGN`), and on
/// many CPUs a copy between buffers that sit at different offsets within a page hits 4K
/// aliasing and runs many times slower; page alignment avoids both. The memory is zeroed on
/// allocation, so the whole capacity is always initialised, but `len` follows `Vec` semantics:
/// a read raises it to the count read.
///
/// ```
/// use trueio::buf::{AlignedBuf, IoBuf};
/// let buf = AlignedBuf::zeroed(8192);
/// assert_eq!(buf.len(), 8192);
/// assert_eq!(buf.stable_ptr() as usize % 4096, 0);
/// ```
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    layout: Layout,
}

// SAFETY: AlignedBuf owns its allocation exclusively, like a Vec<u8>.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared references only read the bytes.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// An empty (`len == 0`) page-aligned buffer of `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> AlignedBuf {
        Self::with_capacity_aligned(capacity, page_size())
    }

    /// An empty buffer of `capacity` bytes aligned to `align` (rounded up to a power of two,
    /// at least 1).
    pub fn with_capacity_aligned(capacity: usize, align: usize) -> AlignedBuf {
        let align = align.max(1).next_power_of_two();
        // A zero-size allocation is not allowed; keep one aligned unit instead.
        let size = capacity.max(1);
        let layout = match Layout::from_size_align(size, align) {
            Ok(l) => l,
            Err(_) => panic!("AlignedBuf: capacity {capacity} with alignment {align} overflows"),
        };
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = match NonNull::new(raw) {
            Some(p) => p,
            None => alloc::handle_alloc_error(layout),
        };
        AlignedBuf {
            ptr,
            len: 0,
            layout,
        }
    }

    /// A page-aligned buffer of `len` zero bytes (`len == capacity`).
    pub fn zeroed(len: usize) -> AlignedBuf {
        let mut b = Self::with_capacity(len);
        b.len = len;
        b
    }

    /// The bytes held (`len` of them).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when `len` is 0.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many bytes the buffer can hold.
    pub fn capacity(&self) -> usize {
        self.layout.size()
    }

    /// The alignment of the start of the buffer.
    pub fn alignment(&self) -> usize {
        self.layout.align()
    }

    /// Sets `len`, which must not exceed the capacity. The memory is always initialised
    /// (zeroed at allocation), so this is safe.
    ///
    /// # Panics
    ///
    /// When `len > capacity()`.
    pub fn set_len(&mut self, len: usize) {
        assert!(
            len <= self.capacity(),
            "AlignedBuf::set_len beyond capacity"
        );
        self.len = len;
    }

    /// Sets `len` to 0.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Appends `data`, as far as it fits; returns how many bytes were copied.
    pub fn extend_from_slice(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.capacity() - self.len);
        self.spare()[..n].copy_from_slice(&data[..n]);
        self.len += n;
        n
    }

    fn spare(&mut self) -> &mut [u8] {
        let cap = self.capacity();
        // SAFETY: the allocation holds `cap` initialised bytes (zeroed at allocation) and we
        // hold `&mut self`.
        let all = unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), cap) };
        &mut all[self.len..]
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: `ptr` was allocated by `alloc_zeroed` with exactly `layout`.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the first `len` bytes are initialised and owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for Deref, with exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Clone for AlignedBuf {
    fn clone(&self) -> Self {
        let mut b = Self::with_capacity_aligned(self.capacity(), self.alignment());
        b.extend_from_slice(self);
        b
    }
}

impl fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlignedBuf")
            .field("len", &self.len)
            .field("capacity", &self.capacity())
            .field("align", &self.alignment())
            .finish()
    }
}

// SAFETY: the heap allocation does not move with the value; `len` bytes are initialised.
unsafe impl IoBuf for AlignedBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len
    }
    fn bytes_total(&self) -> usize {
        self.capacity()
    }
}

// SAFETY: the whole capacity is writable and initialised; set_init only raises len.
unsafe impl IoBufMut for AlignedBuf {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }
    unsafe fn set_init(&mut self, pos: usize) {
        if self.len < pos {
            self.len = pos.min(self.capacity());
        }
    }
}

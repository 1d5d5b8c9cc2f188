//! Owned buffers.
//!
//! The kernel reads and writes an operation's buffer while the operation is in flight, long
//! after the call that submitted it returned. So every operation takes its buffer **by value**
//! and gives it back in its completion; the engine owns it in between, whatever the caller
//! does with the handle (drop it, cancel it, forget it).
//!
//! [`IoBuf`] (a buffer the kernel reads from) and [`IoBufMut`] (a buffer the kernel writes
//! into) are implemented for `Vec<u8>`, `Box<[u8]>`, [`bytes::BytesMut`], [`bytes::Bytes`]
//! (read-only), `&'static [u8]` (read-only), [`FixedBuf`] (a slice of the engine's registered
//! arena) and [`AlignedBuf`] (page-aligned memory for `O_DIRECT`).
//!
//! Reads fill a buffer from its start up to [`IoBuf::bytes_total`] and then raise its
//! initialised length to the count read if that is larger (a `Vec` grows its `len`, it never
//! shrinks). Writes send the first [`IoBuf::bytes_init`] bytes.

mod aligned;
mod fixed;
pub(crate) mod resume;
pub(crate) mod ring;
mod slice;

pub use aligned::AlignedBuf;
pub use fixed::{BufPool, FixedBuf};
pub use ring::{BufRing, RingBuf};
pub use slice::Slice;

/// A buffer the kernel may read from while an operation is in flight.
///
/// # Safety
///
/// `stable_ptr` must point to `bytes_total` bytes of memory whose first `bytes_init` bytes are
/// initialised, and that pointer must stay valid and unchanged when the value is moved (heap
/// memory, not inline storage) until the value is dropped.
pub unsafe trait IoBuf: 'static {
    /// A pointer to the start of the buffer, stable across moves of `self`.
    fn stable_ptr(&self) -> *const u8;

    /// How many bytes, from the start, hold data (what a write sends).
    fn bytes_init(&self) -> usize;

    /// The buffer's capacity: how many bytes a read may fill.
    fn bytes_total(&self) -> usize;

    /// The registered buffer index, when this buffer lives in memory registered with the
    /// kernel (used by `READ_FIXED`/`WRITE_FIXED`).
    #[doc(hidden)]
    fn fixed_index(&self) -> Option<u16> {
        None
    }

    /// The registered buffer index when this buffer lives in memory registered by the engine
    /// whose id is `owner` (`READ_FIXED`/`WRITE_FIXED` may then use it).
    #[doc(hidden)]
    fn registered_for(&self, _owner: u64) -> Option<u16> {
        None
    }

    /// The bytes of `range` as an owned buffer of their own (see [`Slice`]).
    ///
    /// # Panics
    ///
    /// When the range is not within `0..bytes_total()`.
    fn slice(self, range: impl std::ops::RangeBounds<usize>) -> Slice<Self>
    where
        Self: Sized,
    {
        Slice::new(self, range)
    }
}

/// A buffer the kernel may write into while an operation is in flight.
///
/// # Safety
///
/// In addition to [`IoBuf`]'s contract, `stable_mut_ptr` must point to `bytes_total` writable
/// bytes, and `set_init` must only record that the first `pos` bytes are initialised.
pub unsafe trait IoBufMut: IoBuf {
    /// A mutable pointer to the start of the buffer, stable across moves of `self`.
    fn stable_mut_ptr(&mut self) -> *mut u8;

    /// Records that the kernel has initialised the first `pos` bytes.
    ///
    /// # Safety
    ///
    /// The first `pos` bytes must really be initialised and `pos <= bytes_total()`.
    unsafe fn set_init(&mut self, pos: usize);
}

// SAFETY: a Vec's heap pointer does not change when the Vec is moved; `len` bytes are
// initialised and `capacity` are allocated.
unsafe impl IoBuf for Vec<u8> {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.capacity()
    }
}

// SAFETY: as above; `set_init` only raises `len` within `capacity`.
unsafe impl IoBufMut for Vec<u8> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, pos: usize) {
        if self.len() < pos {
            // SAFETY: the caller guarantees `pos <= capacity` bytes are initialised.
            unsafe { self.set_len(pos) };
        }
    }
}

// SAFETY: a boxed slice's heap pointer is stable and all of it is initialised.
unsafe impl IoBuf for Box<[u8]> {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

// SAFETY: the whole slice is initialised already; nothing to record.
unsafe impl IoBufMut for Box<[u8]> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, _pos: usize) {}
}

// SAFETY: BytesMut's storage is on the heap and does not move with the handle.
unsafe impl IoBuf for bytes::BytesMut {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.capacity()
    }
}

// SAFETY: `set_init` only raises `len` within `capacity`.
unsafe impl IoBufMut for bytes::BytesMut {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, pos: usize) {
        if self.len() < pos {
            // SAFETY: the caller guarantees `pos <= capacity` bytes are initialised.
            unsafe { self.set_len(pos) };
        }
    }
}

// SAFETY: Bytes is an immutable, heap- or static-backed view that does not move.
unsafe impl IoBuf for bytes::Bytes {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

// SAFETY: static memory never moves nor goes away.
unsafe impl IoBuf for &'static [u8] {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

// SAFETY: static memory never moves nor goes away.
unsafe impl IoBuf for &'static str {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

/// An anonymous, private, zeroed, page-aligned mapping of `len` bytes; `what` names it in the
/// error.
pub(crate) fn map_anonymous(len: usize, what: &str) -> std::io::Result<*mut u8> {
    // SAFETY: an anonymous private mapping with no address hint has no preconditions; the
    // result is checked for MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        let e = std::io::Error::last_os_error();
        return Err(std::io::Error::new(
            e.kind(),
            format!("{what}: mmap of {len} bytes failed: {e}"),
        ));
    }
    Ok(p.cast())
}

/// The system page size (4 KiB where it cannot be read).
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

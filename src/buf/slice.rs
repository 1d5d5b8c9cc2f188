use std::ops::{Bound, RangeBounds};

use super::{IoBuf, IoBufMut};

/// A range of an owned buffer, itself an owned buffer: reads fill the range, writes send its
/// initialised part. Used to resume after a short transfer without copying
/// (`read_exact_at`, `write_all`).
///
/// ```
/// use trueio::buf::{IoBuf, Slice};
/// let s: Slice<Vec<u8>> = b"hello world".to_vec().slice(6..);
/// assert_eq!(s.bytes_init(), 5);
/// assert_eq!(s.into_inner().len(), 11);
/// ```
#[derive(Debug)]
pub struct Slice<T> {
    buf: T,
    begin: usize,
    end: usize,
}

impl<T: IoBuf> Slice<T> {
    pub(crate) fn new(buf: T, range: impl RangeBounds<usize>) -> Slice<T> {
        let total = buf.bytes_total();
        let begin = match range.start_bound() {
            Bound::Included(&n) => n,
            Bound::Excluded(&n) => n + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&n) => n + 1,
            Bound::Excluded(&n) => n,
            Bound::Unbounded => total,
        };
        assert!(
            begin <= end && end <= total,
            "slice {begin}..{end} out of a buffer of {total} bytes"
        );
        Slice { buf, begin, end }
    }

    /// Where the range starts in the whole buffer.
    pub fn begin(&self) -> usize {
        self.begin
    }

    /// Where the range ends in the whole buffer.
    pub fn end(&self) -> usize {
        self.end
    }

    /// The whole buffer.
    pub fn get_ref(&self) -> &T {
        &self.buf
    }

    /// Gives the whole buffer back.
    pub fn into_inner(self) -> T {
        self.buf
    }
}

// SAFETY: the range lies within the inner buffer's stable allocation (checked at creation),
// so the offset pointer is stable too and `bytes_init <= bytes_total` holds.
unsafe impl<T: IoBuf> IoBuf for Slice<T> {
    fn stable_ptr(&self) -> *const u8 {
        // SAFETY: begin <= bytes_total, within the allocation.
        unsafe { self.buf.stable_ptr().add(self.begin) }
    }
    fn bytes_init(&self) -> usize {
        self.buf
            .bytes_init()
            .min(self.end)
            .saturating_sub(self.begin)
    }
    fn bytes_total(&self) -> usize {
        self.end - self.begin
    }
    fn fixed_index(&self) -> Option<u16> {
        self.buf.fixed_index()
    }
    fn registered_for(&self, owner: u64) -> Option<u16> {
        self.buf.registered_for(owner)
    }
}

// SAFETY: as above; `set_init` raises the inner buffer's initialised length only when the
// range starts within its initialised part, so no uninitialised gap is ever declared
// initialised.
unsafe impl<T: IoBufMut> IoBufMut for Slice<T> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        // SAFETY: begin <= bytes_total, within the allocation.
        unsafe { self.buf.stable_mut_ptr().add(self.begin) }
    }
    unsafe fn set_init(&mut self, pos: usize) {
        if self.begin <= self.buf.bytes_init() {
            // SAFETY: bytes ..begin were initialised already and the caller initialised
            // `pos` bytes from `begin`.
            unsafe { self.buf.set_init(self.begin + pos) }
        }
    }
}

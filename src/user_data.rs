//! The tag the kernel hands back with each completion (`user_data`), laid out in one place.
//!
//! The low 32 bits are the operation's key in the engine's table, the high 32 its generation
//! (a key is reused; the generation tells a stale completion from the current one). Requests
//! the engine makes for itself (cancels, io_uring's wait timeouts) use a key no table entry
//! ever has, with a tag in the high half.

/// One request's `user_data` (public in a private module: unnameable outside the crate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserData(u64);

impl UserData {
    /// The key of internal requests: table keys never reach it.
    const INTERNAL_KEY: u32 = u32::MAX;

    /// The engine's own cancels; their completions are consumed by the backends' callers.
    pub(crate) const CANCEL: UserData = UserData::internal(0);

    /// io_uring's internal wait timeouts (kernels without EXT_ARG).
    pub(crate) const WAIT_TIMEOUT: UserData = UserData::internal(1);

    /// io_uring's watch on its blocking pool's eventfd (calls without an opcode).
    pub(crate) const POOL_WAKE: UserData = UserData::internal(2);

    /// The operation at table `key`, generation `gen`.
    #[inline]
    pub(crate) fn new(key: usize, gen: u32) -> UserData {
        debug_assert!(
            key < Self::INTERNAL_KEY as usize,
            "table key {key} out of range"
        );
        UserData(((gen as u64) << 32) | key as u64)
    }

    const fn internal(tag: u32) -> UserData {
        UserData(((tag as u64) << 32) | Self::INTERNAL_KEY as u64)
    }

    /// The table key (also the epoll backend's index).
    #[inline]
    pub(crate) fn key(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }

    /// The generation.
    #[inline]
    pub(crate) fn gen(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// A request the engine made for itself, not an operation of the table.
    #[inline]
    pub(crate) fn is_internal(self) -> bool {
        self.0 & 0xffff_ffff == Self::INTERNAL_KEY as u64
    }

    /// The value the kernel carries.
    #[inline]
    pub(crate) fn to_raw(self) -> u64 {
        self.0
    }

    /// From the value a completion carries.
    #[inline]
    pub(crate) fn from_raw(raw: u64) -> UserData {
        UserData(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::UserData;

    #[test]
    fn key_and_generation_round_trip_and_internal_tags_are_no_key() {
        let ud = UserData::new(12345, 0xdead_beef);
        assert_eq!((ud.key(), ud.gen()), (12345, 0xdead_beef));
        assert_eq!(UserData::from_raw(ud.to_raw()), ud);
        assert!(!ud.is_internal());
        assert!(UserData::CANCEL.is_internal() && UserData::WAIT_TIMEOUT.is_internal());
        assert_ne!(UserData::CANCEL, UserData::WAIT_TIMEOUT);
    }
}

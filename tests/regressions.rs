//! Regressions, each named after the bug it guards against.

mod util;

use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::time::Duration;

use trueio::op;

both_backends! {
    /// The epoll backend kept a descriptor number registered after the file was closed
    /// outside the engine; epoll forgets closed files, so a new file under the same number
    /// waited on a dead registration forever.
    fn a_reused_descriptor_number_is_watched_anew(b: Builder) {
        let engine = b.build().unwrap();
        let (r1, w1) = util::pipe(true);
        let first = r1.as_raw_fd();
        let t = engine.submit(op::Read::stream(first, vec![0u8; 8]));
        util::drive_for(&engine, Duration::from_millis(20));
        std::fs::File::from(w1).write_all(b"one").unwrap();
        let (n, _) = util::wait(&engine, t);
        assert_eq!(n.unwrap(), 3);

        // Put a new pipe under the same number: dup3 closes the old file (its last
        // reference) and installs the new one, as a close and a reuse would, without racing
        // other tests for the number.
        let (r2, w2) = util::pipe(true);
        // SAFETY: both descriptors are ours; `first` is replaced atomically.
        let r = unsafe { libc::dup3(r2.as_raw_fd(), first, libc::O_CLOEXEC) };
        assert_eq!(r, first, "dup3: {}", std::io::Error::last_os_error());
        // `first` now holds the new pipe: keep owning it through r1's OwnedFd, drop r2's copy.
        let r2 = r1;
        let t = engine.submit(op::Read::stream(r2.as_raw_fd(), vec![0u8; 8]));
        util::drive_for(&engine, Duration::from_millis(20));
        std::fs::File::from(w2).write_all(b"two").unwrap();
        let (n, buf) = util::wait(&engine, t);
        assert_eq!(n.unwrap(), 3);
        assert_eq!(&buf[..3], b"two");
    }
    /// The same, for a shared descriptor: the epoll backend trusts a registration made for a
    /// shared descriptor only while that very descriptor is alive.
    fn a_reused_number_behind_a_new_shared_descriptor_is_watched_anew(b: Builder) {
        use std::os::fd::{FromRawFd, OwnedFd};
        use std::rc::Rc;
        let engine = b.build().unwrap();
        let (r1, w1) = util::pipe(true);
        let first = r1.as_raw_fd();
        let shared = Rc::new(r1);
        let t = engine.submit(op::Read::stream(shared.clone(), vec![0u8; 8]));
        util::drive_for(&engine, Duration::from_millis(20));
        std::fs::File::from(w1).write_all(b"one").unwrap();
        assert_eq!(util::wait(&engine, t).0.unwrap(), 3);

        // Replace the file under the number while the old Rc lives on, then let the old Rc
        // go without closing the number (it now belongs to the new pipe).
        let (r2, w2) = util::pipe(true);
        // SAFETY: both descriptors are ours; `first` is replaced atomically.
        assert_eq!(unsafe { libc::dup3(r2.as_raw_fd(), first, libc::O_CLOEXEC) }, first);
        let old = Rc::try_unwrap(shared).expect("no op holds the old descriptor");
        std::mem::forget(old);
        // SAFETY: `first` now names the new pipe's read end, owned here from now on.
        let fresh = Rc::new(unsafe { OwnedFd::from_raw_fd(first) });
        let t = engine.submit(op::Read::stream(fresh.clone(), vec![0u8; 8]));
        util::drive_for(&engine, Duration::from_millis(20));
        std::fs::File::from(w2).write_all(b"two").unwrap();
        let (n, buf) = util::wait(&engine, t);
        assert_eq!(n.unwrap(), 3);
        assert_eq!(&buf[..3], b"two");
        drop(r2);
    }
}

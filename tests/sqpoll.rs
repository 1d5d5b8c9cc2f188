//! SQPOLL (opt-in): a kernel thread submits for us. After it goes idle it sleeps, and the next
//! submission must wake it (IORING_ENTER_SQ_WAKEUP) or the operation would never start.

mod util;

use std::time::Duration;

use trueio::{op, Backend};

both_backends! {
    fn sqpoll_submissions_complete_before_and_after_the_thread_idles(b: Builder) {
        let engine = b.sqpoll(5).build().unwrap();
        let report = engine.report();
        if engine.backend() == Backend::Uring {
            assert!(
                report.sqpoll.active,
                "SQPOLL requested as root on a 6.x kernel should be active: {:?}",
                report.sqpoll
            );
        } else {
            assert!(!report.sqpoll.active, "no SQPOLL thread without a ring");
        }
        let dir = util::TempDir::new("sqpoll");
        let data = util::pattern(64 * 1024, 7);
        let file = dir.rw_file("data", &data);

        for round in 0..3 {
            for i in 0..16u64 {
                let (n, buf) = util::run(&engine, op::Read::at(&file, vec![0u8; 4096], i * 4096));
                assert_eq!(n.unwrap(), 4096, "round {round} read {i}");
                assert_eq!(&buf[..], &data[i as usize * 4096..(i as usize + 1) * 4096]);
            }
            // Longer than the 5 ms idle time: the thread goes to sleep, and the next round's
            // first submission has to wake it.
            std::thread::sleep(Duration::from_millis(30));
        }
        assert_eq!(engine.in_flight(), 0);
    }
}

//! Linked operations: soft chains stop at the first failure or short transfer, hard chains
//! run every step.
mod util;

use std::fs::File;

use trueio::op::{Fsync, Nop, OpenAt2, OpenHow, Read, Write};
use trueio::{Builder, Engine, Ticket};
use util::{assert_errno, pattern, wait, TempDir};

/// An engine from `b`, a fresh directory tagged `tag`, and an empty read-write file "f" in it.
fn setup(b: Builder, tag: &str) -> (Engine, TempDir, File) {
    let engine = b.build().unwrap();
    let dir = TempDir::new(tag);
    let file = dir.rw_file("f", b"");
    (engine, dir, file)
}

/// A soft chain in a fresh directory: a read of up to 100 bytes from "src", which holds
/// `src_len` bytes of pattern 4, then a write of "after" to the empty "dst"; submitted.
struct ReadThenWrite {
    engine: Engine,
    dir: TempDir,
    /// "src" and "dst", open while the steps run.
    _files: (File, File),
    read: Ticket<Read<Vec<u8>>>,
    write: Ticket<Write<Vec<u8>>>,
}

fn read_then_write(b: Builder, tag: &str, src_len: usize) -> ReadThenWrite {
    let engine = b.build().unwrap();
    let dir = TempDir::new(tag);
    let src = dir.rw_file("src", &pattern(src_len, 4));
    let dst = dir.rw_file("dst", b"");
    let buf = Vec::with_capacity(100);
    assert_eq!(buf.capacity(), 100);
    let mut chain = engine.chain();
    let read = chain.push(Read::at(&src, buf, 0));
    let write = chain.push(Write::at(&dst, b"after".to_vec(), 0));
    chain.submit();
    ReadThenWrite {
        engine,
        dir,
        _files: (src, dst),
        read,
        write,
    }
}

both_backends! {
    fn write_then_fsync_both_succeed(b: Builder) {
        let (engine, dir, file) = setup(b, "chain-wf");
        let data = pattern(4096, 2);
        let mut chain = engine.chain();
        let w = chain.push(Write::at(&file, data.clone(), 0));
        let s = chain.push(Fsync::new(&file));
        let s2 = chain.push(Fsync::data_only(&file));
        chain.submit();
        let (n, _) = wait(&engine, w);
        assert_eq!(n.unwrap(), 4096);
        wait(&engine, s).unwrap();
        wait(&engine, s2).unwrap();
        assert_eq!(dir.contents("f"), data);
        assert_eq!(engine.in_flight(), 0);
    }

    fn steps_run_in_order(b: Builder) {
        // Write then read back the same range in one chain: the read sees the write.
        let (engine, _dir, file) = setup(b, "chain-order");
        let data = pattern(512, 8);
        let mut chain = engine.chain();
        let w = chain.push(Write::at(&file, data.clone(), 0));
        let r = chain.push(Read::at(&file, Vec::with_capacity(512), 0));
        chain.submit();
        let (n, _) = wait(&engine, w);
        assert_eq!(n.unwrap(), 512);
        let (n, buf) = wait(&engine, r);
        assert_eq!(n.unwrap(), 512);
        assert_eq!(buf, data);
    }

    fn failed_first_step_cancels_the_rest(b: Builder) {
        let (engine, dir, file) = setup(b, "chain-fail");

        let mut chain = engine.chain();
        let r = chain.push(Read::at(-1, Vec::with_capacity(8), 0));
        let w = chain.push(Write::at(&file, b"must not land".to_vec(), 0));
        let n = chain.push(Nop::new());
        chain.submit();
        let (res, buf) = wait(&engine, r);
        assert_errno(&res, libc::EBADF, "first step: read on fd -1");
        assert_eq!(buf.capacity(), 8);
        let (res, buf) = wait(&engine, w);
        assert_errno(&res, libc::ECANCELED, "second step after a failure");
        assert_eq!(
            buf, b"must not land",
            "the cancelled step gives its buffer back"
        );
        assert_errno(
            &wait(&engine, n),
            libc::ECANCELED,
            "third step after a failure",
        );
        assert!(
            dir.contents("f").is_empty(),
            "the cancelled write never ran"
        );
    }

    fn write_to_readonly_fd_cancels_the_rest(b: Builder) {
        let engine = b.build().unwrap();
        let dir = TempDir::new("chain-ro");
        drop(dir.rw_file("f", b"original"));
        let ro = File::open(dir.path("f")).unwrap();
        let other = dir.rw_file("g", b"");

        let mut chain = engine.chain();
        let w = chain.push(Write::at(&ro, b"XXXX".to_vec(), 0));
        let w2 = chain.push(Write::at(&other, b"never".to_vec(), 0));
        let s = chain.push(Fsync::new(&other));
        chain.submit();
        assert_errno(
            &wait(&engine, w).0,
            libc::EBADF,
            "write to a read-only descriptor",
        );
        assert_errno(
            &wait(&engine, w2).0,
            libc::ECANCELED,
            "step after the failed write",
        );
        assert_errno(&wait(&engine, s), libc::ECANCELED, "last step");
        assert_eq!(dir.contents("f"), b"original");
        assert!(dir.contents("g").is_empty());
    }

    fn short_read_in_soft_chain_cancels_next(b: Builder) {
        let c = read_then_write(b, "chain-short", 10);
        let (n, buf) = wait(&c.engine, c.read);
        assert_eq!(
            n.unwrap(),
            10,
            "the short read itself succeeds with its count"
        );
        assert_eq!(buf, pattern(10, 4));
        let (res, _) = wait(&c.engine, c.write);
        assert_errno(&res, libc::ECANCELED, "step after a short read");
        assert!(c.dir.contents("dst").is_empty());
    }

    fn full_read_in_soft_chain_continues(b: Builder) {
        // Control for the short-read case: a full read does not break the chain.
        let c = read_then_write(b, "chain-full", 100);
        assert_eq!(wait(&c.engine, c.read).0.unwrap(), 100);
        assert_eq!(wait(&c.engine, c.write).0.unwrap(), 5);
        assert_eq!(c.dir.contents("dst"), b"after");
    }

    fn step_that_cannot_be_prepared_fails_whole_chain(b: Builder) {
        // Chain::push documents the kernel's rule: a step that cannot be prepared (here a path
        // with a NUL byte: EINVAL at submission) completes with its error and every other step
        // of the chain, before and after it, with ECANCELED, without running.
        let (engine, dir, file) = setup(b, "chain-prep");
        let mut chain = engine.chain();
        let w = chain.push(Write::at(&file, b"before".to_vec(), 0));
        let o = chain.push(OpenAt2::new(
            None,
            "bad\0path",
            OpenHow::new(libc::O_RDONLY),
        ));
        let n = chain.push(Nop::new());
        chain.submit();
        let (wr, _) = wait(&engine, w);
        let or = wait(&engine, o);
        let nr = wait(&engine, n);
        assert_errno(&or, libc::EINVAL, "the step that cannot be prepared");
        assert_errno(&nr, libc::ECANCELED, "the step after it");
        assert_errno(&wr, libc::ECANCELED, "the step before it");
        assert!(
            dir.contents("f").is_empty(),
            "no step of a failed chain runs"
        );
    }

    fn hard_chain_continues_after_failure(b: Builder) {
        let (engine, dir, file) = setup(b, "chain-hard");
        let src = dir.rw_file("src", b"short");

        let mut chain = engine.hard_chain();
        let r = chain.push(Read::at(-1, Vec::with_capacity(8), 0));
        let w = chain.push(Write::at(&file, b"ran anyway".to_vec(), 0));
        let short = chain.push(Read::at(&src, Vec::with_capacity(64), 0));
        let s = chain.push(Fsync::new(&file));
        chain.submit();
        assert_errno(&wait(&engine, r).0, libc::EBADF, "failing first step");
        assert_eq!(wait(&engine, w).0.unwrap(), 10);
        assert_eq!(wait(&engine, short).0.unwrap(), 5);
        wait(&engine, s).unwrap();
        assert_eq!(dir.contents("f"), b"ran anyway");
    }
}

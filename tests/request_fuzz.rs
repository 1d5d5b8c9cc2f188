//! The file server's request handling and path resolution under generated input, with the
//! checks of the fuzz targets (`fuzz/checks.rs`): the fuzz corpus replayed (`fuzz/corpus/`,
//! grown by `cargo fuzz`, see `.ci/fuzz.sh`), and proptest generators over raw request bytes
//! and request paths. On io_uring and on epoll (the backend that resolves the paths).
//! `PROPTEST_CASES` sets the number of generated inputs per test.
mod util;

#[allow(dead_code)]
#[path = "../fuzz/checks.rs"]
mod checks;
#[allow(dead_code)]
#[path = "../examples/file_server/http.rs"]
mod http;
#[allow(dead_code)]
#[path = "../examples/file_server/request.rs"]
mod request;

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use trueio::Builder;

backend_variant!(
    uring,
    Uring,
    [],
    the_corpus_replays_cleanly
    generated_requests_stay_beneath_the_root
    generated_paths_stay_beneath_the_root
    the_checks_catch_an_escape
);
backend_variant!(
    epoll,
    Epoll,
    [],
    the_corpus_replays_cleanly
    generated_requests_stay_beneath_the_root
    generated_paths_stay_beneath_the_root
    the_checks_catch_an_escape
);

fn fixture(b: Builder) -> checks::Fixture {
    checks::Fixture::new(b.build().expect("engine"))
}

/// Every input of a corpus directory of `fuzz/`, with its name.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    // TRUEIO_FUZZ_CORPUS: where the corpus is when the source tree is not (the kernel
    // matrix's VM, whose /tmp is a fresh tmpfs).
    let root = std::env::var_os("TRUEIO_FUZZ_CORPUS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus"));
    let dir = root.join(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let e = e.unwrap();
            let data = std::fs::read(e.path()).unwrap();
            (e.file_name().to_string_lossy().into_owned(), data)
        })
        .collect();
    inputs.sort();
    inputs
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2048)
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    })
}

fn the_corpus_replays_cleanly(b: Builder) {
    let fx = fixture(b);
    for (target, check) in [
        (
            "request",
            checks::check_request as fn(&checks::Fixture, &[u8]),
        ),
        ("path", checks::check_path),
    ] {
        let inputs = corpus(target);
        assert!(inputs.len() >= 10, "fuzz/corpus/{target} is (nearly) empty");
        for (name, data) in inputs {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&fx, &data)));
            if r.is_err() {
                panic!("fuzz/corpus/{target}/{name} fails the checks: {data:?}");
            }
        }
    }
}

/// A path segment: names from the fixture (symlinks out of the root among them), dot
/// segments plain and encoded, and arbitrary text.
fn segment() -> impl Strategy<Value = String> {
    const NAMES: &[&str] = &[
        "..",
        ".",
        "%2e%2e",
        "%2E%2e",
        ".%2e",
        "",
        "sub",
        "up",
        "upup",
        "rel_out",
        "abs_out",
        "dir_out",
        "passwd",
        "proc_root",
        "proc_cwd",
        "loop",
        "secret",
        "small.txt",
        "a.txt",
        "withindex",
        "index.html",
        "outside",
        "x.txt",
        "etc",
    ];
    prop_oneof![
        6 => proptest::sample::select(NAMES).prop_map(String::from),
        2 => "[a-z%./\\\\0-9]{0,6}",
        1 => any::<String>().prop_map(|s| s.chars().take(8).collect()),
    ]
}

/// A request target: an optional scheme and host, segments joined by a slash (or an encoded
/// one), and an optional query or fragment.
fn target() -> impl Strategy<Value = String> {
    (
        proptest::sample::select(&["/", "//", "", "http://h", "https://h/", "/./"][..]),
        prop::collection::vec(segment(), 0..7),
        proptest::sample::select(&["/", "/", "/", "%2f", "%2F", "%5c", "//"][..]),
        proptest::sample::select(&["", "/", "?q=1", "#f", "?../../secret", "%00"][..]),
    )
        .prop_map(|(prefix, segs, sep, suffix)| format!("{prefix}{}{suffix}", segs.join(sep)))
}

fn header() -> impl Strategy<Value = String> {
    const NAMES: &[&str] = &[
        "Range",
        "If-Modified-Since",
        "If-None-Match",
        "Connection",
        "Content-Length",
        "Transfer-Encoding",
        "Host",
    ];
    let values = prop_oneof![
        Just("bytes=0-3".to_string()),
        Just("bytes=-5".to_string()),
        Just("Sun, 06 Nov 1994 08:49:37 GMT".to_string()),
        Just("close".to_string()),
        Just("keep-alive".to_string()),
        Just("0".to_string()),
        "bytes=[0-9]{0,20}-[0-9]{0,20}",
        "[A-Za-z]{3}, [0-9]{2} [A-Za-z]{3} [0-9]{4} [0-9:]{8} GMT",
        any::<String>().prop_map(|s| s.chars().filter(|c| !c.is_control()).take(40).collect()),
    ];
    (proptest::sample::select(NAMES), values).prop_map(|(n, v)| format!("{n}: {v}\r\n"))
}

/// A well-formed request with a generated method, target, version and headers.
fn well_formed() -> impl Strategy<Value = Vec<u8>> {
    let method = proptest::sample::select(&["GET", "HEAD", "POST", "OPTIONS", "BREW", "get"][..]);
    let version = proptest::sample::select(&["HTTP/1.1", "HTTP/1.0", "HTTP/2.0"][..]);
    (
        method,
        target(),
        version,
        prop::collection::vec(header(), 0..4),
    )
        .prop_map(|(m, t, v, h)| format!("{m} {t} {v}\r\n{}\r\n", h.concat()).into_bytes())
}

/// Raw request bytes: well-formed requests, the same with one byte changed or cut short, and
/// plain noise.
fn request_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => well_formed(),
        2 => (well_formed(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(mut r, i, b)| {
            let i = i.index(r.len());
            r[i] = b;
            r
        }),
        1 => (well_formed(), any::<prop::sample::Index>()).prop_map(|(r, i)| {
            let n = i.index(r.len());
            r[..n].to_vec()
        }),
        1 => prop::collection::vec(any::<u8>(), 0..300),
    ]
}

fn generated_requests_stay_beneath_the_root(b: Builder) {
    let fx = fixture(b);
    let r = runner().run(&request_bytes(), |data| {
        checks::check_request(&fx, &data);
        Ok(())
    });
    if let Err(e) = r {
        panic!("{e}");
    }
}

fn generated_paths_stay_beneath_the_root(b: Builder) {
    let fx = fixture(b);
    let r = runner().run(&target(), |t| {
        checks::check_path(&fx, t.as_bytes());
        Ok(())
    });
    if let Err(e) = r {
        panic!("{e}");
    }
}

/// The checks are not vacuous: a descriptor of the secret (opened without the server's
/// resolve flags, through a symlink of the root) fails them, one of a file in the root passes,
/// and the server's open refuses the same symlink.
fn the_checks_catch_an_escape(b: Builder) {
    let fx = fixture(b);
    let plain: OwnedFd = File::open(fx.dir().join("root/rel_out")).unwrap().into();
    let e = fx
        .verify_beneath(&plain)
        .expect_err("the secret, opened through rel_out without RESOLVE_BENEATH");
    assert!(e.contains("outside the root"), "{e}");
    let inside = fx
        .open(b"sub/up/small.txt")
        .expect("a symlink that stays inside");
    fx.verify_beneath(&inside).expect("a file in the root");
    let refused = fx.open(b"rel_out");
    assert_eq!(
        util::errno(&refused),
        Some(libc::EXDEV),
        "RESOLVE_BENEATH refuses a symlink out of the root"
    );
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        checks::check_request(&fx, b"GET /sub HTTP/1.1\r\nIf-Modified-Since: x\r\n\r\n")
    }));
    assert!(r.is_ok(), "a plain request passes");
}

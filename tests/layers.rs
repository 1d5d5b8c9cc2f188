//! DESIGN.md's layers, held by reading the source tree: data flows one way, no layer names one
//! above it, and the two backends never name each other. Comments are not code: a doc link
//! upward is allowed, an import or a path in code is not.

mod util;

use std::path::{Path, PathBuf};

/// The engine's public types, re-exported at the crate root (so `crate::Engine` is the engine
/// layer too).
const ENGINE: &[&str] = &[
    "crate::engine",
    "crate::Engine",
    "crate::Builder",
    "crate::BackendChoice",
    "crate::Ticket",
    "crate::Chain",
    "crate::Subscription",
];

/// What sits on top of the engine.
const ABOVE_ENGINE: &[&str] = &[
    "crate::rt",
    "crate::fs",
    "crate::net",
    "crate::time",
    "crate::compat",
];

/// Each folder (or file) and the paths its code must not name.
fn rules() -> Vec<(&'static str, Vec<&'static str>)> {
    let upper = |extra: &[&'static str]| {
        let mut v: Vec<&'static str> = ENGINE.to_vec();
        v.extend_from_slice(ABOVE_ENGINE);
        v.extend_from_slice(extra);
        v
    };
    vec![
        // libc only: nothing of the Completion API.
        ("fallback/src", vec!["trueio::", "io_uring"]),
        // Leaf modules every layer may use.
        ("src/fd.rs", upper(&["crate::op", "crate::backend"])),
        ("src/stats.rs", upper(&["crate::op", "crate::backend"])),
        ("src/user_data.rs", upper(&["crate::op", "crate::backend"])),
        ("src/errno.rs", upper(&["crate::op", "crate::backend"])),
        ("src/capability.rs", upper(&["crate::op", "crate::backend"])),
        ("src/buf", upper(&["crate::op", "crate::backend"])),
        ("src/op", upper(&["crate::backend"])),
        ("src/backend", upper(&[])),
        (
            "src/backend/uring",
            vec!["super::epoll", "backend::epoll", "trueio_fallback"],
        ),
        ("src/backend/epoll", vec!["super::uring", "backend::uring"]),
        // Above the engine: the engine's public API, never a backend.
        ("src/rt", vec!["crate::backend"]),
        ("src/fs", vec!["crate::backend"]),
        ("src/net", vec!["crate::backend"]),
        ("src/time", vec!["crate::backend"]),
    ]
}

/// The code of a Rust source, without its comments (line comments, and doc comments, which
/// are line comments here).
fn code_of(src: &str) -> String {
    src.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The forbidden paths `src` names, as `path:line: name`.
fn violations_in(file: &Path, src: &str, forbidden: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, line) in code_of(src).lines().enumerate() {
        for f in forbidden {
            if names(line, f) {
                out.push(format!(
                    "{}:{}: names {f}: {}",
                    file.display(),
                    i + 1,
                    line.trim()
                ));
            }
        }
    }
    out
}

/// Whether `line` names `path` (and not merely a longer identifier that starts with it).
fn names(line: &str, path: &str) -> bool {
    line.match_indices(path).any(|(i, _)| {
        let after = line[i + path.len()..].chars().next();
        let before = line[..i].chars().next_back();
        let ident = |c: char| c.is_alphanumeric() || c == '_';
        !after.is_some_and(ident) && !before.is_some_and(ident)
    })
}

fn rust_files(at: &Path) -> Vec<PathBuf> {
    if at.is_file() {
        return vec![at.to_path_buf()];
    }
    let mut out = Vec::new();
    for e in std::fs::read_dir(at).unwrap_or_else(|e| panic!("{}: {e}", at.display())) {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

#[test]
fn no_layer_names_one_above_it_and_the_backends_never_name_each_other() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !root.join("src/op").is_dir() {
        // The kernel matrix runs the test binaries in a VM without the source tree; the check
        // is about the source, and ran on the host.
        return util::skip(&format!("no source tree at {}", root.display()));
    }
    let mut found = Vec::new();
    let mut files = 0;
    for (at, forbidden) in rules() {
        for file in rust_files(&root.join(at)) {
            files += 1;
            let src = std::fs::read_to_string(&file).unwrap();
            let rel = file.strip_prefix(root).unwrap();
            found.extend(violations_in(rel, &src, &forbidden));
        }
    }
    assert!(
        files > 40,
        "only {files} files read: the rules name the wrong folders"
    );
    assert!(
        found.is_empty(),
        "imports against DESIGN.md's layers:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_flags_an_upward_path_in_code_and_not_in_a_comment() {
    let src = "use crate::engine::Ticket;\n/// See [`Engine`](crate::Engine).\nlet x = crate::fs::read; // crate::rt\nuse crate::fsx;\n";
    let found = violations_in(
        Path::new("x.rs"),
        src,
        &["crate::engine", "crate::Engine", "crate::fs", "crate::rt"],
    );
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        found[0].starts_with("x.rs:1: names crate::engine"),
        "{found:#?}"
    );
    assert!(
        found[1].starts_with("x.rs:3: names crate::fs"),
        "{found:#?}"
    );
}

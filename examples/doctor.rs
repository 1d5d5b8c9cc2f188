//! `cargo run --release --example doctor`: what trueio can use on this machine, and why.
//!
//! Prints the capability report of the engine `TRUEIO_BACKEND` (default `auto`) selects, then
//! checks that a few operations really complete on it.

use std::io::Write as _;
use std::process::ExitCode;

use trueio::{op, Engine};

fn main() -> ExitCode {
    let engine = match Engine::new() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("doctor: no engine could be built: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("trueio doctor\n");
    print!("{}", engine.report());

    println!("\nself-test:");
    let mut ok = true;
    let mut check = |name: &str, r: std::io::Result<()>| match &r {
        Ok(()) => println!("  {name:<24}ok"),
        Err(e) => {
            ok = false;
            println!("  {name:<24}FAILED: {e}")
        }
    };
    check("nop", engine.submit(op::Nop::new()).wait().and_then(|r| r));
    let path = std::env::temp_dir().join(format!("trueio-doctor-{}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path);
    match file {
        Ok(mut f) => {
            let _ = f.write_all(b"trueio doctor");
            let r = engine
                .submit(op::Read::at(&f, vec![0u8; 64], 0))
                .wait()
                .and_then(|(n, buf)| {
                    let n = n?;
                    if &buf[..n] == b"trueio doctor" {
                        Ok(())
                    } else {
                        Err(std::io::Error::other("read back different bytes"))
                    }
                });
            check("read file", r);
            let r = engine.fixed_buf().and_then(|mut b| {
                b.extend_from_slice(b"fixed");
                let (n, _) = engine.submit(op::WriteFixed::at(&f, b, 0)).wait()?;
                n.map(|_| ())
            });
            check("write_fixed", r);
            check(
                "fsync",
                engine.submit(op::Fsync::new(&f)).wait().and_then(|r| r),
            );
            let _ = std::fs::remove_file(&path);
        }
        Err(e) => check("temp file", Err(e)),
    }
    let s = engine.stats();
    println!(
        "\nstats: {} submitted, {} completed, {} kernel entries",
        s.submitted, s.completed, s.enters
    );
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

//! The results: a table on stdout, `report.md` (the table with ratios and what each cell
//! means) and `report.svg` (bars per workload: throughput and CPU per operation).

use std::fmt::Write as _;

/// Which kind of engine a row is; colours the chart and finds the ratio baselines.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Raw,
    Uring,
    UringFixed,
    Epoll,
    Std,
    Tokio,
}

impl Family {
    fn colour(self) -> &'static str {
        match self {
            Family::Raw => "#9467bd",
            Family::Uring => "#1f77b4",
            Family::UringFixed => "#17becf",
            Family::Epoll => "#ff7f0e",
            Family::Std => "#7f7f7f",
            Family::Tokio => "#2ca02c",
        }
    }
}

/// Where a syscalls/op figure comes from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SysSource {
    /// The kernel's count (perf counter on `raw_syscalls:sys_enter`), whole process.
    Kernel,
    /// `Engine::stats().syscalls`.
    Engine,
    /// `/proc/self/io` syscr + syscw: read/write-family calls only, a lower bound.
    ProcIo,
}

/// One row: medians over the timed rounds, syscalls from the counting pass.
pub struct Row {
    pub workload: &'static str,
    pub engine: String,
    pub family: Family,
    pub ops_per_s: f64,
    pub spread: f64,
    pub cpu_us: f64,
    pub allocs: f64,
    pub syscalls: Option<(f64, SysSource)>,
    /// `Engine::stats()` syscalls/op beside a kernel count, for trueio rows.
    pub engine_syscalls: Option<f64>,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Median share of the machine's CPU that other work took during this row's runs (%).
    pub others: f64,
}

pub struct Meta {
    pub command: String,
    pub mode: String,
    pub machine: String,
    pub sys_note: String,
    pub notes: Vec<String>,
}

fn si(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn num(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn ratio(a: f64, b: Option<f64>) -> String {
    match b {
        Some(b) if a.is_finite() && b.is_finite() && b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".into(),
    }
}

fn sys_cell(r: &Row) -> String {
    match r.syscalls {
        None => "-".into(),
        Some((v, SysSource::Kernel)) => match r.engine_syscalls {
            Some(e) => format!("{} (e {})", num(v), num(e)),
            None => num(v),
        },
        Some((v, SysSource::Engine)) => format!("{} (e)", num(v)),
        Some((v, SysSource::ProcIo)) => format!("≥{}", num(v)),
    }
}

/// The markdown table alone (also what the README carries).
pub fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    s.push_str("| workload | engine | ops/s | spread | CPU µs/op | syscalls/op | allocs/op | p50 µs | p99 µs | ops/s vs tokio | ops/s vs std | CPU vs tokio | CPU vs std | others |\n");
    s.push_str("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    for r in rows {
        let base = |f: Family| {
            rows.iter()
                .find(|b| b.workload == r.workload && b.family == f)
        };
        let tokio = base(Family::Tokio);
        let std = base(Family::Std);
        let _ = writeln!(
            s,
            "| {} | {} | {} | ±{:.0}% | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0}% |",
            r.workload,
            r.engine,
            si(r.ops_per_s),
            r.spread * 100.0,
            num(r.cpu_us),
            sys_cell(r),
            num(r.allocs),
            num(r.p50_us),
            num(r.p99_us),
            ratio(r.ops_per_s, tokio.map(|b| b.ops_per_s)),
            ratio(r.ops_per_s, std.map(|b| b.ops_per_s)),
            ratio(r.cpu_us, tokio.map(|b| b.cpu_us)),
            ratio(r.cpu_us, std.map(|b| b.cpu_us)),
            r.others,
        );
    }
    s
}

pub fn markdown(rows: &[Row], meta: &Meta) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# trueio comparison\n");
    let _ = writeln!(s, "`{}` ({}). {}\n", meta.command, meta.mode, meta.machine);
    s.push_str(&table(rows));
    s.push('\n');
    let _ = writeln!(
        s,
        "- **ops/s**: median over the rounds; **spread**: (max - min) / median of the rounds.\n\
         - **CPU µs/op**: user + system time of the process doing the I/O (all its threads; \
         for echo, the server process) per operation. Ratios below 1 in the CPU columns are \
         cheaper.\n\
         - **syscalls/op**: {}\n\
         - **allocs/op**: heap allocations (a counting global allocator) in the process doing \
         the I/O (for echo, counted inside the server process and reported back).\n\
         - **p50/p99**: per-operation latency (submission to completion; for batches, the \
         batch's round trip; for echo, the client's round trip).\n\
         - **vs tokio / vs std**: this row divided by the tokio row and the blocking-std row of \
         the same workload.\n\
         - **others**: the share of the measured CPU (the one the I/O job is pinned to; for \
         echo, the larger of the server's and the load generator's) that other work on the \
         machine took, median over the row's runs. In full mode a run disturbed by more than \
         10% is run again (up to 3 times) and the least disturbed one counts; where this \
         column is still high, the row's numbers are skewed.\n\
         - `-`: does not apply or could not be measured here.",
        meta.sys_note
    );
    for n in &meta.notes {
        let _ = writeln!(s, "- {n}");
    }
    s
}

fn esc(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One panel per workload; in each, throughput bars (left) and CPU-per-operation bars
/// (right), each bar labelled with its value and its ratio to tokio.
pub fn svg(rows: &[Row], meta: &Meta) -> String {
    const W: f64 = 1200.0;
    const LABEL: f64 = 210.0;
    const BAR_W: f64 = 250.0;
    const GAP: f64 = 230.0;
    const ROW_H: f64 = 18.0;
    let mut workloads: Vec<&str> = Vec::new();
    for r in rows {
        if !workloads.contains(&r.workload) {
            workloads.push(r.workload);
        }
    }
    let mut body = String::new();
    let mut y = 74.0;
    for w in &workloads {
        let rs: Vec<&Row> = rows.iter().filter(|r| r.workload == *w).collect();
        let tokio = rs.iter().copied().find(|r| r.family == Family::Tokio);
        let std = rs.iter().copied().find(|r| r.family == Family::Std);
        let max_t = rs.iter().map(|r| r.ops_per_s).fold(0.0, f64::max);
        let max_c = rs
            .iter()
            .map(|r| r.cpu_us)
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max);
        let _ = writeln!(
            body,
            r#"<text x="10" y="{y}" font-weight="bold" font-size="14">{}</text>"#,
            esc(w)
        );
        y += 16.0;
        let _ = writeln!(
            body,
            r##"<text x="{}" y="{y}" font-size="11" fill="#555">throughput (ops/s, longer is better)</text><text x="{}" y="{y}" font-size="11" fill="#555">CPU per operation (µs, shorter is better)</text>"##,
            LABEL,
            LABEL + BAR_W + GAP
        );
        y += 4.0;
        for r in &rs {
            let _ = writeln!(
                body,
                r#"<text x="{}" y="{}" font-size="12" text-anchor="end">{}</text>"#,
                LABEL - 6.0,
                y + 13.0,
                esc(&r.engine)
            );
            let tw = if max_t > 0.0 {
                r.ops_per_s / max_t * BAR_W
            } else {
                0.0
            };
            // "(0.41x std · 33x tokio)": this row against the two baselines (not itself).
            let vs = |get: fn(&Row) -> f64| {
                let mut out = String::new();
                for (b, name) in [(std, "std"), (tokio, "tokio")] {
                    let Some(b) = b.filter(|b| b.engine != r.engine) else {
                        continue;
                    };
                    let (x, y) = (get(r), get(b));
                    if x.is_finite() && y > 0.0 {
                        let q = x / y;
                        let q = if q >= 10.0 {
                            format!("{q:.0}")
                        } else {
                            format!("{q:.2}")
                        };
                        out += &format!("{}{q}x {name}", if out.is_empty() { "" } else { " · " });
                    }
                }
                if out.is_empty() {
                    out
                } else {
                    format!(r##"<tspan fill="#666"> ({out})</tspan>"##)
                }
            };
            let _ = writeln!(
                body,
                r#"<rect x="{LABEL}" y="{}" width="{tw:.1}" height="{}" fill="{}"/><text x="{}" y="{}" font-size="11">{}{}</text>"#,
                y + 2.0,
                ROW_H - 4.0,
                r.family.colour(),
                LABEL + tw + 4.0,
                y + 13.0,
                si(r.ops_per_s),
                vs(|r| r.ops_per_s),
            );
            let x2 = LABEL + BAR_W + GAP;
            if r.cpu_us.is_finite() && max_c > 0.0 {
                let cw = r.cpu_us / max_c * BAR_W;
                let _ = writeln!(
                    body,
                    r#"<rect x="{x2}" y="{}" width="{cw:.1}" height="{}" fill="{}" opacity="0.75"/><text x="{}" y="{}" font-size="11">{}{}</text>"#,
                    y + 2.0,
                    ROW_H - 4.0,
                    r.family.colour(),
                    x2 + cw + 4.0,
                    y + 13.0,
                    num(r.cpu_us),
                    vs(|r| r.cpu_us),
                );
            }
            y += ROW_H;
        }
        y += 26.0;
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{}" viewBox="0 0 {W} {}" font-family="sans-serif">"#,
        y + 10.0,
        y + 10.0
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="22" font-size="17" font-weight="bold">trueio: io_uring vs epoll vs blocking std vs tokio</text>"#
    );
    let _ = writeln!(
        s,
        r##"<text x="10" y="38" font-size="11" fill="#555">{} ({}).</text><text x="10" y="52" font-size="11" fill="#555">{}</text>"##,
        esc(&meta.command),
        esc(&meta.mode),
        esc(&meta.machine)
    );
    s.push_str(&body);
    s.push_str("</svg>\n");
    s
}

//! Small HTTP helpers for the file server: dates, MIME types, escaping, ranges.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// (year, month 1..=12, day 1..=31) of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days since 1970-01-01 of a civil date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds since the epoch (0 for times before it).
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// An IMF-fixdate (RFC 7231 §7.1.1.1): `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(t: SystemTime) -> String {
    let secs = unix_secs(t) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        d,
        MONTHS[m as usize - 1],
        y,
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Parses an IMF-fixdate into a time; `None` for anything else.
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let b = s.as_bytes();
    // "Sun, 06 Nov 1994 08:49:37 GMT" is exactly 29 bytes, all ASCII (so that slicing by
    // byte index cannot split a character: a header value may hold any UTF-8).
    if b.len() != 29 || !s.is_ascii() || &s[3..5] != ", " || &s[25..] != " GMT" {
        return None;
    }
    if !DAYS.contains(&&s[..3]) || b[7] != b' ' || b[11] != b' ' || b[16] != b' ' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let t = s.get(r)?;
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    let day = num(5..7)?;
    let month = MONTHS.iter().position(|m| *m == &s[8..11])? as u32 + 1;
    let year = num(12..16)?;
    if b[19] != b':' || b[22] != b':' {
        return None;
    }
    let (h, mi, se) = (num(17..19)?, num(20..22)?, num(23..25)?);
    if !(1..=31).contains(&day) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = days_from_civil(year as i64, month, day);
    let secs = days * 86_400 + (h * 3600 + mi * 60 + se) as i64;
    if secs < 0 {
        return None;
    }
    Some(UNIX_EPOCH + Duration::from_secs(secs as u64))
}

/// The Content-Type for a file name, from its extension.
pub fn mime_type(name: &[u8]) -> &'static str {
    let ext = match name.iter().rposition(|&c| c == b'.') {
        Some(i) => &name[i + 1..],
        None => return "application/octet-stream",
    };
    let ext = String::from_utf8_lossy(ext).to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        "ico" => "image/x-icon",
        "xml" => "application/xml",
        "mp4" => "video/mp4",
        _ => "application/octet-stream",
    }
}

/// Decodes `%XX` escapes; `None` when an escape is malformed (not two hex digits).
pub fn percent_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            // Not `from_str_radix` alone: it takes a sign ("%+5" would decode to 5).
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Percent-encodes everything but unreserved characters (for links in listings).
pub fn percent_encode(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s {
        if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

/// Escapes text for HTML content and attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What a `Range` header asks of a representation of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Range {
    /// No usable range (absent, malformed, several ranges, another unit): send it all.
    Full,
    /// Bytes `start..=end`.
    Part(u64, u64),
    /// No byte of the range exists: 416.
    Unsatisfiable,
}

/// Parses a single `bytes=a-b`, `bytes=a-` or `bytes=-n`.
pub fn parse_range(value: &str, len: u64) -> Range {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Range::Full;
    };
    if spec.contains(',') {
        return Range::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Range::Full;
    };
    let num = |t: &str| -> Option<u64> {
        if !t.is_empty() && t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    match (a.trim(), b.trim()) {
        ("", n) => match num(n) {
            None => Range::Full,
            Some(0) => Range::Unsatisfiable,
            Some(_) if len == 0 => Range::Unsatisfiable,
            Some(n) => Range::Part(len.saturating_sub(n), len - 1),
        },
        (a, "") => match num(a) {
            None => Range::Full,
            Some(a) if a >= len => Range::Unsatisfiable,
            Some(a) => Range::Part(a, len - 1),
        },
        (a, b) => match (num(a), num(b)) {
            (Some(a), Some(b)) if a <= b => {
                if a >= len {
                    Range::Unsatisfiable
                } else {
                    Range::Part(a, b.min(len - 1))
                }
            }
            _ => Range::Full,
        },
    }
}

/// The reason phrase of a status code.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(t));
        assert_eq!(http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_164_800); // 2024-02-29
        assert_eq!(http_date(t), "Thu, 29 Feb 2024 00:00:00 GMT");
        assert_eq!(parse_http_date(&http_date(t)), Some(t));
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
        // 29 bytes with a character across the comma's byte index: no panic (a client can
        // send it in If-Modified-Since).
        assert_eq!(parse_http_date("Su\u{e9} 06 Nov 1994 08:49:37 GMT"), None);
    }

    #[test]
    fn percent_escapes() {
        assert_eq!(percent_decode(b"/a%20b%2F%2e"), Some(b"/a b/.".to_vec()));
        assert_eq!(percent_decode(b"%4"), None);
        assert_eq!(percent_decode(b"%zz"), None);
        assert_eq!(percent_decode(b"%+5"), None, "a sign is not a hex digit");
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(percent_decode(percent_encode(&all).as_bytes()), Some(all));
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Range::Part(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), Range::Part(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), Range::Part(90, 99));
        assert_eq!(parse_range("bytes=-1000", 100), Range::Part(0, 99));
        assert_eq!(parse_range("bytes=50-1000", 100), Range::Part(50, 99));
        assert_eq!(parse_range("bytes=100-", 100), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Range::Full);
        assert_eq!(parse_range("bytes=5-2", 100), Range::Full);
        assert_eq!(parse_range("items=0-1", 100), Range::Full);
    }
}

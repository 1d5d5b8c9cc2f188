//! The file server's request handling before any I/O: parsing a request, deciding what it
//! asks for (a refusal, or a path to open beneath the root), and the redirect for a directory
//! named without its slash. Pure functions, so that the fuzz targets (`fuzz/`) and
//! `tests/request_fuzz.rs` run exactly the server's code.

use trueio::op::OpenHow;

use crate::http;

/// Request line and headers, together.
pub const MAX_HEAD: usize = 8 * 1024;
pub const MAX_HEADERS: usize = 64;

/// One parsed request, owned (the read buffer moves on).
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The request target as sent.
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .map(str::trim)
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .filter_map(|(_, v)| std::str::from_utf8(v).ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    pub fn keep_alive(&self) -> bool {
        if self.version == 0 {
            self.has_token("connection", "keep-alive")
        } else {
            !self.has_token("connection", "close")
        }
    }
}

/// What parsing the buffer gave.
#[derive(Debug)]
pub enum Parsed {
    /// A request, and how many bytes of the buffer it took.
    Request(Request, usize),
    /// More bytes needed.
    Partial,
    /// Reply with this status and close.
    Error(u16),
}

pub fn parse_request(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n > MAX_HEAD => Parsed::Error(431),
        Ok(httparse::Status::Complete(n)) => Parsed::Request(
            Request {
                method: req.method.unwrap_or_default().to_string(),
                target: req.path.unwrap_or_default().to_string(),
                version: req.version.unwrap_or(1),
                headers: req
                    .headers
                    .iter()
                    .map(|h| (h.name.to_string(), h.value.to_vec()))
                    .collect(),
            },
            n,
        ),
        Ok(httparse::Status::Partial) => {
            if buf.len() >= MAX_HEAD {
                let line_done = buf[..MAX_HEAD].contains(&b'\n');
                Parsed::Error(if line_done { 431 } else { 414 })
            } else {
                Parsed::Partial
            }
        }
        Err(httparse::Error::TooManyHeaders) => Parsed::Error(431),
        Err(_) => Parsed::Error(400),
    }
}

/// What a parsed request asks for, before the file system is touched.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// Answer with this status and close: 405 (with `Allow: GET, HEAD`) for a known method
    /// other than GET and HEAD; 400 for an unknown method, a request with a body, or a path
    /// that does not decode.
    Refuse(u16),
    /// Open `rel` beneath the root. `path` is the decoded request path (from '/', without
    /// NUL or backslash); `rel` is it without its leading slashes, or `.` for the root.
    Open { path: Vec<u8>, rel: Vec<u8> },
}

/// Decides what `req` asks for.
pub fn route(req: &Request) -> Route {
    let method = req.method.as_str();
    if method != "GET" && method != "HEAD" {
        const KNOWN: [&str; 7] = [
            "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT",
        ];
        return Route::Refuse(if KNOWN.contains(&method) { 405 } else { 400 });
    }
    // GET and HEAD take no body.
    let has_body = req.header("transfer-encoding").is_some()
        || req
            .header("content-length")
            .is_some_and(|v| v.parse::<u64>().map_or(true, |n| n > 0));
    if has_body {
        return Route::Refuse(400);
    }
    // The path: before any query, percent-decoded, no NUL or backslash, from '/'.
    // The absolute form (`http://host/path`, for proxies) names the same path.
    let target = ["http://", "https://"]
        .iter()
        .find_map(|scheme| req.target.strip_prefix(scheme))
        .map_or(req.target.as_str(), |rest| {
            rest.find('/').map_or("/", |i| &rest[i..])
        });
    let raw_path = target.split(['?', '#']).next().unwrap_or("");
    let path = match http::percent_decode(raw_path.as_bytes()) {
        Some(p) if p.first() == Some(&b'/') && !p.contains(&0) && !p.contains(&b'\\') => p,
        _ => return Route::Refuse(400),
    };
    let start = path.iter().position(|&c| c != b'/').unwrap_or(path.len());
    let rel = if start == path.len() {
        b".".to_vec()
    } else {
        path[start..].to_vec()
    };
    Route::Open { path, rel }
}

/// The `Location` of the 301 for a directory named without its trailing slash: rebuilt from
/// the decoded path's segments, each percent-encoded (never `//host/...`, an open redirect,
/// and never a byte that could end the header).
pub fn redirect_location(rel: &[u8]) -> String {
    let mut location = String::new();
    for seg in rel.split(|&c| c == b'/').filter(|s| !s.is_empty()) {
        location.push('/');
        location.push_str(&http::percent_encode(seg));
    }
    location.push('/');
    location
}

/// The file name a path ends with (for its Content-Type).
pub fn file_name(rel: &[u8]) -> &[u8] {
    rel.rsplit(|&c| c == b'/').next().unwrap_or(rel)
}

/// How every request's file is opened: read-only, never blocking on a FIFO or device, and
/// resolved beneath the directory given (no `..` escape, no absolute or magic links).
pub fn beneath() -> OpenHow {
    OpenHow::new(libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY)
        .resolve(libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS)
}

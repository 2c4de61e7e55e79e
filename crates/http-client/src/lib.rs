//! A small blocking HTTP/1.1 client over `std::net`, for plain `http://`
//! services on loopback or inside a cluster: OCI registries, the gateway's
//! admin API, Prometheus, the trace collector's query API.
//!
//! One connection per request (`Connection: close`), bounded by one deadline
//! for connecting, sending and reading, and by a response size limit. Bodies
//! may come with `Content-Length`, chunked, or delimited by the connection
//! closing. Every error names the URL it was about.
//!
//! Why not hyper: these conversations are a handful of sequential requests;
//! a blocking client keeps its callers free of an async runtime.

use std::fmt;
use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::time::{Duration, Instant};

/// Responses larger than this are refused.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// A parsed `http://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub target: String,
}

impl Url {
    /// Parses `http://host[:port][/path]`; the port defaults to 80.
    ///
    /// # Errors
    /// Another scheme (https is not supported), or a malformed URL.
    pub fn parse(url: &str) -> Result<Url, String> {
        let rest = match url.split_once("://") {
            Some(("http", rest)) => rest,
            Some((scheme, _)) => {
                return Err(format!(
                    "{url}: only http:// is supported (scheme {scheme})"
                ));
            }
            None => return Err(format!("{url}: not an http:// URL")),
        };
        let (authority, target) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        // An IPv6 host is bracketed: `[::1]:5000`, `[::1]`.
        let (host, port) = match authority.strip_prefix('[') {
            Some(rest) => match rest.split_once(']') {
                Some((host, "")) => (host, None),
                Some((host, after)) => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return Err(format!("{url}: unexpected {after:?} after the host")),
                },
                None => return Err(format!("{url}: unclosed [ in the host")),
            },
            None => match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| format!("{url}: invalid port {p:?}"))?,
            None => 80,
        };
        if host.is_empty() {
            return Err(format!("{url}: no host"));
        }
        Ok(Url {
            host: host.to_string(),
            port,
            target: target.to_string(),
        })
    }

    /// `host:port`, with an IPv6 host in brackets.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority(), self.target)
    }
}

/// A whole response: status, headers in order, the decoded body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request got no usable response. Each names the URL.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("connecting to {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no answer from {url} within {seconds:.1} s")]
    Timeout { url: String, seconds: f64 },
    #[error("talking to {url}: {source}")]
    Io {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{url} sent a malformed response: {detail}")]
    Malformed { url: String, detail: String },
}

/// The `Authorization` header that presents a bearer token.
pub fn bearer(token: &str) -> (&'static str, String) {
    ("Authorization", format!("Bearer {token}"))
}

/// Sends one request and reads the whole response.
///
/// # Errors
/// Connection failures, the deadline passing, a response over
/// [`MAX_RESPONSE_BYTES`] or one that is not HTTP/1.x.
pub fn request(
    method: &str,
    url: &Url,
    headers: &[(&str, String)],
    body: &[u8],
    timeout: Duration,
) -> Result<Response, HttpError> {
    let authority = url.authority();
    let deadline = Instant::now() + timeout;
    let timed_out = || HttpError::Timeout {
        url: url.to_string(),
        seconds: timeout.as_secs_f64(),
    };
    let io = |source: std::io::Error| {
        if matches!(
            source.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ) {
            timed_out()
        } else {
            HttpError::Io {
                url: url.to_string(),
                source,
            }
        }
    };
    let addrs = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|source| HttpError::Connect {
            url: url.to_string(),
            source,
        })?;
    let mut last = None;
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let mut stream = stream.ok_or_else(|| HttpError::Connect {
        url: url.to_string(),
        source: last.unwrap_or_else(|| std::io::Error::other("no address")),
    })?;
    let mut head = format!(
        "{method} {} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nUser-Agent: bulkhead\r\n",
        url.target
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || matches!(method, "PUT" | "POST" | "PATCH") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    stream.write_all(head.as_bytes()).map_err(io)?;
    stream.write_all(body).map_err(io)?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    // Known once the head is in: how the body ends.
    let mut framing = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out());
        }
        stream.set_read_timeout(Some(left)).map_err(io)?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let searched = raw.len().saturating_sub(3);
                raw.extend_from_slice(&buf[..n]);
                if raw.len() > MAX_RESPONSE_BYTES {
                    return Err(HttpError::Malformed {
                        url: url.to_string(),
                        detail: format!("response larger than {MAX_RESPONSE_BYTES} bytes"),
                    });
                }
                if framing.is_none()
                    && let Some(end) = raw[searched..].windows(4).position(|w| w == b"\r\n\r\n")
                {
                    framing = Some(Framing::of(
                        &raw[..searched + end],
                        searched + end + 4,
                        method == "HEAD",
                    ));
                }
                // A server may keep the connection open despite `Connection:
                // close`: stop reading once the whole response is in.
                if framing.as_ref().is_some_and(|f| f.complete(&raw)) {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
    }
    parse_response(&raw, method == "HEAD").map_err(|detail| HttpError::Malformed {
        url: url.to_string(),
        detail,
    })
}

/// How a response's body ends, from its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Where the body ends.
    Until(usize),
    /// Chunked, starting here.
    Chunked(usize),
    /// When the server closes the connection (or the head is not HTTP: the
    /// parser then says why).
    Close,
}

impl Framing {
    /// `head` is the response head without its blank line; the body starts at `body`.
    fn of(head: &[u8], body: usize, head_only: bool) -> Framing {
        let Ok(head) = std::str::from_utf8(head) else {
            return Framing::Close;
        };
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse::<u16>().ok());
        let Some(status) = status else {
            return Framing::Close;
        };
        if head_only || status == 204 || status == 304 {
            return Framing::Until(body);
        }
        let mut framing = Framing::Close;
        for (name, value) in lines.filter_map(|l| l.split_once(':')) {
            let (name, value) = (name.trim(), value.trim());
            if name.eq_ignore_ascii_case("transfer-encoding")
                && value.to_ascii_lowercase().contains("chunked")
            {
                return Framing::Chunked(body);
            }
            if name.eq_ignore_ascii_case("content-length")
                && let Ok(len) = value.parse::<usize>()
            {
                framing = Framing::Until(body.saturating_add(len));
            }
        }
        framing
    }

    fn complete(self, raw: &[u8]) -> bool {
        match self {
            Framing::Until(end) => raw.len() >= end,
            Framing::Chunked(start) => chunks_end(&raw[start..]).is_some(),
            Framing::Close => false,
        }
    }
}

/// Where a chunked body's last (empty) chunk and trailers end; `None` while
/// incomplete or malformed. Walks the chunk sizes without copying.
fn chunks_end(data: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let line = data[at..].windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[at..at + line]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        at += line + 2;
        if size == 0 {
            // Trailer fields, each ending in CRLF, then an empty line.
            loop {
                let line = data[at..].windows(2).position(|w| w == b"\r\n")?;
                at += line + 2;
                if line == 0 {
                    return Some(at);
                }
            }
        }
        at = at.checked_add(size)?.checked_add(2)?;
        if at > data.len() {
            return None;
        }
    }
}

fn parse_response(raw: &[u8], head_only: bool) -> Result<Response, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("status line {status_line:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
    });
    if head_only || status == 204 || status == 304 {
        body.clear();
    } else if chunked {
        body = dechunk(&body)?;
    } else if let Some(len) = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        if body.len() < len {
            return Err(format!("body truncated: {} of {len} bytes", body.len()));
        }
        body.truncate(len);
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// The payload of a chunked body (extensions and trailers are skipped).
fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_text = std::str::from_utf8(&data[..line_end]).map_err(|_| "bad chunk size")?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Percent-encodes a path segment or query value (RFC 3986 unreserved bytes stay).
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests;

//! A small blocking HTTP/1.1 client over `std::net`, for plain `http://`
//! services on loopback or inside a cluster: OCI registries, the gateway's
//! admin API, Prometheus, the trace collector's query API; and `https://`
//! (rustls) for the forges' REST APIs, trusting the system's CA bundle and
//! any certificates the caller adds ([`Tls`]).
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
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Responses larger than this are refused.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// A parsed `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub target: String,
    /// `https://`: TLS to the host.
    pub tls: bool,
}

impl Url {
    /// Parses `http://host[:port][/path]` (port 80 by default) or
    /// `https://host[:port][/path]` (443).
    ///
    /// # Errors
    /// Another scheme, or a malformed URL.
    pub fn parse(url: &str) -> Result<Url, String> {
        let (rest, tls) = match url.split_once("://") {
            Some(("http", rest)) => (rest, false),
            Some(("https", rest)) => (rest, true),
            Some((scheme, _)) => {
                return Err(format!(
                    "{url}: only http:// and https:// are supported (scheme {scheme})"
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
            None if tls => 443,
            None => 80,
        };
        if host.is_empty() {
            return Err(format!("{url}: no host"));
        }
        Ok(Url {
            host: host.to_string(),
            port,
            target: target.to_string(),
            tls,
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
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority(), self.target)
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

/// What `https://` requests trust: the system's CA bundle (`SSL_CERT_FILE`,
/// else Debian's `/etc/ssl/certs/ca-certificates.crt`) and the certificates
/// added with [`Tls::with_pem`].
#[derive(Clone)]
pub struct Tls {
    config: Arc<rustls::ClientConfig>,
    roots: usize,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tls({} trusted roots)", self.roots)
    }
}

/// Where the system's CA bundle lives when `SSL_CERT_FILE` does not say.
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

impl Tls {
    /// The system's roots and the PEM certificates in `extra` (a private
    /// CA, a test server's self-signed certificate). A missing system bundle
    /// leaves only `extra`.
    ///
    /// # Errors
    /// `extra` that is not empty and holds no valid PEM certificate.
    pub fn with_pem(extra: &[u8]) -> Result<Tls, String> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject as _;
        let mut roots = rustls::RootCertStore::empty();
        let bundle = std::env::var_os("SSL_CERT_FILE")
            .map_or_else(|| SYSTEM_BUNDLE.into(), std::path::PathBuf::from);
        if let Ok(pem) = std::fs::read(&bundle) {
            let certs = CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok);
            roots.add_parsable_certificates(certs);
        }
        if !extra.is_empty() {
            let certs = CertificateDer::pem_slice_iter(extra)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("not PEM certificates: {e}"))?;
            if certs.is_empty() {
                return Err("no PEM certificate in it".into());
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("not a usable CA certificate: {e}"))?;
            }
        }
        let count = roots.len();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Tls {
            config: Arc::new(config),
            roots: count,
        })
    }

    /// The system's roots alone, loaded once per process.
    ///
    /// # Errors
    /// When rustls offers no protocol version with the ring provider, which
    /// its build rules out.
    pub fn system() -> Result<Tls, String> {
        static SYSTEM: OnceLock<Result<Tls, String>> = OnceLock::new();
        SYSTEM.get_or_init(|| Tls::with_pem(&[])).clone()
    }
}

/// The connection a request runs on.
enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => &s.sock,
        }
    }
}

impl std::io::Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl std::io::Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// Sends one request and reads the whole response; `https://` trusts the
/// system's roots ([`Tls::system`]).
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
    let tls = if url.tls {
        Some(Tls::system().map_err(|e| HttpError::Io {
            url: url.to_string(),
            source: std::io::Error::other(e),
        })?)
    } else {
        None
    };
    request_with(method, url, headers, body, timeout, tls.as_ref())
}

/// As [`request`], trusting `tls` for an `https://` URL.
///
/// # Errors
/// As [`request`], and a TLS handshake that fails (a certificate no root vouches for).
pub fn request_with(
    method: &str,
    url: &Url,
    headers: &[(&str, String)],
    body: &[u8],
    timeout: Duration,
    tls: Option<&Tls>,
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
    let tcp = stream.ok_or_else(|| HttpError::Connect {
        url: url.to_string(),
        source: last.unwrap_or_else(|| std::io::Error::other("no address")),
    })?;
    let mut stream = if url.tls {
        let tls = match tls {
            Some(tls) => tls.clone(),
            None => Tls::system().map_err(|e| HttpError::Io {
                url: url.to_string(),
                source: std::io::Error::other(e),
            })?,
        };
        let name = rustls::pki_types::ServerName::try_from(url.host.clone()).map_err(|e| {
            HttpError::Malformed {
                url: url.to_string(),
                detail: format!("host is not a TLS server name: {e}"),
            }
        })?;
        let connection =
            rustls::ClientConnection::new(tls.config, name).map_err(|e| HttpError::Io {
                url: url.to_string(),
                source: std::io::Error::other(e),
            })?;
        Conn::Tls(Box::new(rustls::StreamOwned::new(connection, tcp)))
    } else {
        Conn::Plain(tcp)
    };
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
    stream.tcp().set_write_timeout(Some(timeout)).map_err(io)?;
    stream.write_all(head.as_bytes()).map_err(io)?;
    stream.write_all(body).map_err(io)?;
    let mut raw = Vec::new();
    // Large answers (a fleet's CVE reach is megabytes) arrive in few reads,
    // each paying a read and a timeout update.
    let mut buf = vec![0u8; 256 * 1024];
    // Known once the head is in: how the body ends.
    let mut framing = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out());
        }
        stream.tcp().set_read_timeout(Some(left)).map_err(io)?;
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
                    let known =
                        Framing::of(&raw[..searched + end], searched + end + 4, method == "HEAD");
                    // The whole answer's room at once, instead of doubling through it.
                    if let Framing::Until(end) = known {
                        raw.reserve(end.min(MAX_RESPONSE_BYTES).saturating_sub(raw.len()));
                    }
                    framing = Some(known);
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

/// Percent-decodes a path segment or query value; a `%` not followed by two
/// hex digits stays as it is, and bytes that are not UTF-8 become U+FFFD.
pub fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests;

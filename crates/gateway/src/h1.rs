//! HTTP/1.1 message heads and body framing, as the proxy's data path reads and writes them.
//!
//! The proxy forwards bytes: a head is parsed once (with `httparse`) into ranges
//! of the bytes it arrived in, a new head is written for the other side, and a
//! body is passed on in the framing it came in (a length, chunks, or until the
//! connection closes), with [`Chunked`] only finding where a chunked body ends
//! and how much data it held. Nothing here does I/O.

use bytes::{Bytes, BytesMut};
use std::mem::MaybeUninit;
use std::ops::Range;

/// More header fields than this in one head is refused (431 for requests).
pub const MAX_HEADERS: usize = 100;

/// Why a head could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Not HTTP/1.x, or a malformed line.
    Malformed(&'static str),
    /// More than [`MAX_HEADERS`] fields.
    TooManyHeaders,
}

impl HeadError {
    pub fn describe(self) -> &'static str {
        match self {
            HeadError::Malformed(what) => what,
            HeadError::TooManyHeaders => "too many header fields",
        }
    }
}

fn malformed(e: httparse::Error) -> HeadError {
    match e {
        httparse::Error::TooManyHeaders => HeadError::TooManyHeaders,
        httparse::Error::HeaderName => HeadError::Malformed("invalid header name"),
        httparse::Error::HeaderValue => HeadError::Malformed("invalid header value"),
        httparse::Error::NewLine | httparse::Error::Token => {
            HeadError::Malformed("malformed request line or header")
        }
        httparse::Error::Status => HeadError::Malformed("invalid status code"),
        httparse::Error::Version => HeadError::Malformed("not HTTP/1.0 or HTTP/1.1"),
    }
}

type FieldRanges = Vec<(Range<usize>, Range<usize>)>;

thread_local! {
    /// Field lists of dropped heads, reused: two heads per request would
    /// otherwise cost two allocations.
    static SPARE: std::cell::RefCell<Vec<FieldRanges>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn field_list() -> FieldRanges {
    SPARE
        .with(|spare| spare.borrow_mut().pop())
        .unwrap_or_else(|| Vec::with_capacity(16))
}

/// Where `part`, a slice of `buf`, lies in it.
fn range_in(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    start..start + part.len()
}

/// Where each parsed field's name and value lie in `buf`.
fn field_ranges(buf: &[u8], headers: &[httparse::Header<'_>]) -> FieldRanges {
    let mut fields = field_list();
    fields.extend(
        headers
            .iter()
            .map(|h| (range_in(buf, h.name.as_bytes()), range_in(buf, h.value))),
    );
    fields
}

/// A parsed head: the bytes it arrived in and where each part lies in them.
#[derive(Debug)]
pub struct Head {
    bytes: Bytes,
    /// Method (requests) or reason phrase (responses).
    first: Range<usize>,
    /// Request target (requests); empty for responses.
    target: Range<usize>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// Status code of a response; 0 for requests.
    pub status: u16,
    fields: FieldRanges,
}

impl Drop for Head {
    fn drop(&mut self) {
        let mut fields = std::mem::take(&mut self.fields);
        fields.clear();
        SPARE.with(|spare| {
            let mut spare = spare.borrow_mut();
            if spare.len() < 8 {
                spare.push(fields);
            }
        });
    }
}

impl Head {
    /// Takes a complete request head off the front of `buf`; `Ok(None)` while it is incomplete.
    pub fn request(buf: &mut BytesMut) -> Result<Option<Head>, HeadError> {
        let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let len = match req.parse_with_uninit_headers(buf, &mut fields) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(malformed(e)),
        };
        let first = req.method.map_or(0..0, |m| range_in(buf, m.as_bytes()));
        let target = req.path.map_or(0..0, |p| range_in(buf, p.as_bytes()));
        let minor = req.version.unwrap_or(1);
        let fields = field_ranges(buf, req.headers);
        Ok(Some(Head {
            bytes: buf.split_to(len).freeze(),
            first,
            target,
            minor,
            status: 0,
            fields,
        }))
    }

    /// Takes a complete response head off the front of `buf`; `Ok(None)` while it is incomplete.
    pub fn response(buf: &mut BytesMut) -> Result<Option<Head>, HeadError> {
        let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut res = httparse::Response::new(&mut []);
        let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut res,
            buf,
            &mut fields,
        ) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(malformed(e)),
        };
        let first = res.reason.map_or(0..0, |r| range_in(buf, r.as_bytes()));
        let minor = res.version.unwrap_or(1);
        let status = res.code.unwrap_or(0);
        let fields = field_ranges(buf, res.headers);
        Ok(Some(Head {
            bytes: buf.split_to(len).freeze(),
            first,
            target: 0..0,
            minor,
            status,
            fields,
        }))
    }

    pub fn method(&self) -> &str {
        std::str::from_utf8(&self.bytes[self.first.clone()]).unwrap_or("")
    }

    pub fn reason(&self) -> &[u8] {
        &self.bytes[self.first.clone()]
    }

    /// The request target as sent (origin form, or absolute form from a proxy client).
    pub fn target(&self) -> &str {
        std::str::from_utf8(&self.bytes[self.target.clone()]).unwrap_or("/")
    }

    /// Every field, in order, as `(name, value)`.
    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.fields
            .iter()
            .map(|(n, v)| (&self.bytes[n.clone()], &self.bytes[v.clone()]))
    }

    /// The head as received.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Header lookup by name (case-insensitive), over a parsed head or a `HeaderMap`.
pub trait Fields {
    /// Every value of the field `name` (lowercase), in order.
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a;

    /// The first value of `name`.
    fn get<'a>(&'a self, name: &'a str) -> Option<&'a [u8]> {
        self.values(name).next()
    }

    /// The first value of `name`, when it is text.
    fn text<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// True when a comma-separated field (`Connection`, `Transfer-Encoding`) lists `token`.
    fn lists(&self, name: &str, token: &str) -> bool {
        self.values(name)
            .flat_map(|v| v.split(|&b| b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    }
}

impl Fields for Head {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.fields
            .iter()
            .filter(move |(n, _)| self.bytes[n.clone()].eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| &self.bytes[v.clone()])
    }
}

impl Fields for hyper::HeaderMap {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.get_all(name)
            .iter()
            .map(hyper::header::HeaderValue::as_bytes)
    }
}

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the sender closes the connection (responses only).
    UntilClose,
}

/// A request body's framing (RFC 9112, section 6.3): a length must be one
/// well-formed number, a request with both a length and `Transfer-Encoding` is
/// refused as a smuggling risk, and the only coding passed on is `chunked`
/// alone: the gateway does not decode others, and forwarding a coding it does
/// not understand (`identity, chunked`, `gzip, chunked`, `chunked, chunked`)
/// could let the upstream delimit the body differently (section 6.1).
pub fn request_framing(head: &Head) -> Result<Framing, &'static str> {
    let length = content_length(head)?;
    if head.get("transfer-encoding").is_some() {
        if length.is_some() {
            return Err("both Content-Length and Transfer-Encoding");
        }
        return if only_coding_is_chunked(head) {
            Ok(Framing::Chunked)
        } else {
            Err("a request's Transfer-Encoding must be exactly chunked")
        };
    }
    Ok(match length {
        None | Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
    })
}

/// A response body's framing, given the request's method.
pub fn response_framing(head: &Head, head_request: bool) -> Result<Framing, &'static str> {
    if head_request || head.status < 200 || head.status == 204 || head.status == 304 {
        return Ok(Framing::Empty);
    }
    if head.get("transfer-encoding").is_some() {
        return Ok(if last_coding_is_chunked(head) {
            Framing::Chunked
        } else {
            Framing::UntilClose
        });
    }
    Ok(match content_length(head)? {
        Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
        None => Framing::UntilClose,
    })
}

fn last_coding_is_chunked(head: &Head) -> bool {
    head.values("transfer-encoding")
        .flat_map(|v| v.split(|&b| b == b','))
        .filter(|t| !t.trim_ascii().is_empty())
        .last()
        .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// True when the `Transfer-Encoding` fields, taken together, list one coding:
/// `chunked` (empty list members are allowed by the list syntax and skipped).
fn only_coding_is_chunked(head: &Head) -> bool {
    let mut codings = head
        .values("transfer-encoding")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty());
    codings
        .next()
        .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"))
        && codings.next().is_none()
}

/// The request's `Host` value (RFC 9112, section 3.2): `Ok(None)` when there is
/// none, an error when there are two or more, since a router and an upstream
/// could each read a different one.
pub fn request_host(head: &Head) -> Result<Option<&[u8]>, &'static str> {
    let mut hosts = head.values("host");
    let first = hosts.next();
    if hosts.next().is_some() {
        return Err("more than one Host field");
    }
    Ok(first)
}

/// `Content-Length`: every value (and list member) must be the same decimal number.
fn content_length(head: &Head) -> Result<Option<u64>, &'static str> {
    let mut found: Option<u64> = None;
    for value in head.values("content-length") {
        for part in value.split(|&b| b == b',') {
            let part = part.trim_ascii();
            if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
                return Err("invalid Content-Length");
            }
            let n = part.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            if found.is_some_and(|f| f != n) {
                return Err("conflicting Content-Length values");
            }
            found = Some(n);
        }
    }
    Ok(found)
}

/// Fields that describe one connection, not the message (RFC 9110, section 7.6.1).
/// `Transfer-Encoding` is not among them here: the proxy passes a chunked body on
/// as it came, so the field goes with it.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

/// Tells a head's hop-by-hop fields, the ones its `Connection` field names included.
pub struct HopByHop<'a> {
    connection: Vec<&'a [u8]>,
}

impl<'a> HopByHop<'a> {
    pub fn of(head: &'a Head) -> HopByHop<'a> {
        HopByHop {
            connection: head
                .values("connection")
                .flat_map(|v| v.split(|&b| b == b','))
                .map(<[u8]>::trim_ascii)
                .filter(|t| !t.is_empty())
                .collect(),
        }
    }

    pub fn contains(&self, name: &[u8]) -> bool {
        HOP_BY_HOP
            .iter()
            .any(|h| h.as_bytes().eq_ignore_ascii_case(name))
            || self.connection.iter().any(|t| t.eq_ignore_ascii_case(name))
    }
}

/// Appends `name: value\r\n`.
pub fn put_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends a decimal number.
pub fn put_number(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Why a chunked body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkError(pub &'static str);

/// Finds the end of a chunked body passed on byte for byte, counting its data.
#[derive(Debug, Default)]
pub struct Chunked {
    state: ChunkState,
    size: u64,
    digits: u8,
    remaining: u64,
    data: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

impl Chunked {
    /// Reads framing from `input`; returns how many bytes belong to the body
    /// (all of them unless the body ends inside `input`).
    pub fn scan(&mut self, input: &[u8]) -> Result<usize, ChunkError> {
        use ChunkState as S;
        let mut i = 0;
        while i < input.len() && self.state != S::Done {
            if self.state == S::Data {
                let take =
                    (input.len() - i).min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                i += take;
                self.remaining -= take as u64;
                self.data += take as u64;
                if self.remaining == 0 {
                    self.state = S::DataCr;
                }
                continue;
            }
            let b = input[i];
            i += 1;
            self.state = match (self.state, b) {
                (S::Size, b) if b.is_ascii_hexdigit() => {
                    if self.digits == 15 {
                        return Err(ChunkError("chunk size too large"));
                    }
                    self.digits += 1;
                    self.size = self.size * 16 + u64::from(hex_value(b));
                    S::Size
                }
                (S::Size, b';' | b' ' | b'\t') if self.digits > 0 => S::Extension,
                (S::Size, b'\r') if self.digits > 0 => S::SizeLf,
                (S::Size, _) => return Err(ChunkError("invalid chunk size")),
                (S::Extension, b'\r') => S::SizeLf,
                (S::Extension, b'\n') => return Err(ChunkError("bare LF in chunk extension")),
                (S::Extension, _) => S::Extension,
                (S::SizeLf, b'\n') if self.size == 0 => S::TrailerStart,
                (S::SizeLf, b'\n') => {
                    self.remaining = self.size;
                    S::Data
                }
                (S::DataCr, b'\r') => S::DataLf,
                (S::DataLf, b'\n') => {
                    self.size = 0;
                    self.digits = 0;
                    S::Size
                }
                (S::TrailerStart, b'\r') => S::EndLf,
                (S::TrailerStart | S::Trailer, b'\n') => {
                    return Err(ChunkError("bare LF in trailer"));
                }
                (S::Trailer, b'\r') => S::TrailerLf,
                (S::TrailerStart | S::Trailer, _) => S::Trailer,
                (S::TrailerLf, b'\n') => S::TrailerStart,
                (S::EndLf, b'\n') => S::Done,
                _ => return Err(ChunkError("malformed chunk framing")),
            };
        }
        Ok(i)
    }

    pub fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Data bytes seen so far (framing not counted).
    pub fn data(&self) -> u64 {
        self.data
    }
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> Result<Option<Head>, HeadError> {
        Head::request(&mut BytesMut::from(text))
    }

    fn response(text: &str) -> Head {
        Head::response(&mut BytesMut::from(text)).unwrap().unwrap()
    }

    #[test]
    fn a_request_head_is_taken_off_the_buffer_and_its_fields_read() {
        let mut buf = BytesMut::from(
            "POST /api/x?y=1 HTTP/1.1\r\nHost: gw\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 3\r\n\r\nabcGET",
        );
        let head = Head::request(&mut buf).unwrap().unwrap();
        assert_eq!(&buf[..], b"abcGET");
        assert_eq!(
            (head.method(), head.target(), head.minor),
            ("POST", "/api/x?y=1", 1)
        );
        assert_eq!(head.values("x-a").collect::<Vec<_>>(), [b"1", b"2"]);
        assert_eq!(head.text("host"), Some("gw"));
        assert_eq!(request_framing(&head), Ok(Framing::Length(3)));
        assert!(request("GET / HTTP/1.1\r\nHost: gw\r\n").unwrap().is_none());
    }

    #[test]
    fn malformed_heads_say_why() {
        for (text, want) in [
            ("GARBAGE\r\n\r\n", "malformed request line or header"),
            (
                "GET / HTTP/1.1\r\nbad header line\r\n\r\n",
                "invalid header name",
            ),
            ("GET / HTTP/2.0\r\n\r\n", "not HTTP/1.0 or HTTP/1.1"),
        ] {
            assert_eq!(request(text).unwrap_err().describe(), want, "{text:?}");
        }
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: v\r\n")).collect();
        let text = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(request(&text).unwrap_err(), HeadError::TooManyHeaders);
    }

    #[test]
    fn request_framing_follows_rfc_9112() {
        let framing = |fields: &str| {
            request_framing(
                &request(&format!("POST / HTTP/1.1\r\n{fields}\r\n"))
                    .unwrap()
                    .unwrap(),
            )
        };
        assert_eq!(framing(""), Ok(Framing::Empty));
        assert_eq!(framing("content-length: 0\r\n"), Ok(Framing::Empty));
        assert_eq!(
            framing("content-length: 12, 12\r\n"),
            Ok(Framing::Length(12))
        );
        assert_eq!(
            framing("transfer-encoding: chunked\r\n"),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            framing("transfer-encoding: , Chunked ,\r\n"),
            Ok(Framing::Chunked)
        );
        for refused in [
            "transfer-encoding: gzip, chunked\r\n",
            "transfer-encoding: identity, chunked\r\n",
            "transfer-encoding: chunked, chunked\r\n",
            "transfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n",
            "transfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n",
            "transfer-encoding: \r\n",
        ] {
            assert_eq!(
                framing(refused),
                Err("a request's Transfer-Encoding must be exactly chunked"),
                "{refused:?}"
            );
        }
        assert!(framing("content-length: nope\r\n").is_err());
        assert!(framing("content-length: -1\r\n").is_err());
        assert!(framing("content-length: 1\r\ncontent-length: 2\r\n").is_err());
        assert!(framing("content-length: 1\r\ntransfer-encoding: chunked\r\n").is_err());
        assert!(framing("transfer-encoding: chunked, gzip\r\n").is_err());
    }

    #[test]
    fn a_request_has_at_most_one_host() {
        let host = |fields: &str| {
            let head = request(&format!("GET / HTTP/1.1\r\n{fields}\r\n"))
                .unwrap()
                .unwrap();
            request_host(&head).map(|h| h.map(<[u8]>::to_vec))
        };
        assert_eq!(host(""), Ok(None));
        assert_eq!(host("Host: a\r\nx: 1\r\n"), Ok(Some(b"a".to_vec())));
        assert_eq!(
            host("Host: a\r\nhost: b\r\n"),
            Err("more than one Host field")
        );
        assert_eq!(
            host("host: a\r\nHOST: a\r\n"),
            Err("more than one Host field")
        );
    }

    #[test]
    fn response_framing_knows_bodiless_answers() {
        let r = response("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n");
        assert_eq!((r.status, r.reason()), (200, &b"OK"[..]));
        assert_eq!(response_framing(&r, false), Ok(Framing::Length(5)));
        assert_eq!(response_framing(&r, true), Ok(Framing::Empty));
        let r = response("HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(response_framing(&r, false), Ok(Framing::Empty));
        let r = response("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(response_framing(&r, false), Ok(Framing::UntilClose));
        let r = response("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
        assert_eq!(response_framing(&r, false), Ok(Framing::Chunked));
    }

    #[test]
    fn hop_by_hop_fields_include_those_connection_names() {
        let head = request("GET / HTTP/1.1\r\nConnection: close, X-Secret\r\n\r\n")
            .unwrap()
            .unwrap();
        let hop = HopByHop::of(&head);
        assert!(hop.contains(b"Keep-Alive"));
        assert!(hop.contains(b"x-secret"));
        assert!(!hop.contains(b"transfer-encoding"));
        assert!(!hop.contains(b"host"));
    }

    #[test]
    fn chunked_bodies_end_where_the_last_chunk_and_trailers_end() {
        let body = b"5;name=v\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nx-t: 1\r\n\r\nNEXT";
        // Whole, and one byte at a time: the same end and the same data count.
        let mut whole = Chunked::default();
        assert_eq!(whole.scan(body), Ok(body.len() - 4));
        assert!(whole.done());
        assert_eq!(whole.data(), 21);
        let mut bytewise = Chunked::default();
        let mut used = 0;
        for b in body.chunks(1) {
            used += bytewise.scan(b).unwrap();
        }
        assert_eq!((used, bytewise.data()), (body.len() - 4, 21));
        let mut c = Chunked::default();
        assert_eq!(c.scan(b"0\r\n\r\n"), Ok(5));
        assert!(c.done());
    }

    #[test]
    fn malformed_chunks_are_errors() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\r\nhelloXX",
            b"fffffffffffffffff\r\n",
            b"0\r\nbad\n",
        ] {
            assert!(
                Chunked::default().scan(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        let mut out = Vec::new();
        for n in [0, 7, 1234567890, u64::MAX] {
            out.clear();
            put_number(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }
}

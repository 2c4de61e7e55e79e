//! The proxy's HTTP/1.1 wire behaviour, byte for byte: blocking raw clients
//! against a gateway whose upstream is a raw loopback server each test scripts
//! (so it can answer chunked, close-delimited, bodiless or after a 1xx, and
//! close kept-alive connections). Covers connection management, body framing
//! both ways, `Expect: 100-continue`, retries on a stale upstream connection,
//! early answers of an upstream, request-smuggling guards (`Host`,
//! `Transfer-Encoding`), absolute-form targets and protocol switches
//! (WebSocket upgrades).

use crate::support::{Gw, eventually};
use gateway::{AccessLog, Options};
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// How long one read from the gateway may take before the test fails.
const READ_LIMIT: Duration = Duration::from_secs(10);

fn config(upstream: SocketAddr) -> String {
    format!(
        "listeners: [{{address: 127.0.0.1:0}}]
routes: [{{name: api, prefix: /api, service: app}}]
services:
  app:
    endpoints: [{{address: {upstream}, labels: {{app: x}}}}]
    selector: {{app: x}}
"
    )
}

/// Where a head ends (after its blank line), once it has all arrived.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// The value of the first field `name` (any case) in a head.
fn field<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A chunked body taken apart: its data, its trailer lines, and its length on the wire.
struct Dechunked {
    data: Vec<u8>,
    trailers: Vec<String>,
    len: usize,
}

/// Decodes the chunked body at the front of `buf`; `Ok(None)` while it is incomplete.
fn dechunk(buf: &[u8]) -> Result<Option<Dechunked>, String> {
    let line = |at: usize| {
        buf[at..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|i| (&buf[at..at + i], at + i + 2))
    };
    let mut at = 0;
    let mut data = Vec::new();
    loop {
        let Some((size_line, next)) = line(at) else {
            return Ok(None);
        };
        let digits = size_line.split(|&b| b == b';').next().unwrap_or_default();
        let size = std::str::from_utf8(digits)
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .ok_or_else(|| format!("bad chunk size {:?}", String::from_utf8_lossy(size_line)))?;
        at = next;
        if size == 0 {
            break;
        }
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        if &buf[at + size..at + size + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF".into());
        }
        data.extend_from_slice(&buf[at..at + size]);
        at += size + 2;
    }
    let mut trailers = Vec::new();
    loop {
        let Some((text, next)) = line(at) else {
            return Ok(None);
        };
        at = next;
        if text.is_empty() {
            return Ok(Some(Dechunked {
                data,
                trailers,
                len: at,
            }));
        }
        trailers.push(String::from_utf8_lossy(text).into_owned());
    }
}

/// `pieces` as chunks (the first with a chunk extension), then the last chunk and `trailer`.
fn chunked(pieces: &[&[u8]], trailer: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        let extension = if i == 0 { ";note=first" } else { "" };
        out.extend_from_slice(format!("{:x}{extension}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("0\r\n{trailer}\r\n").as_bytes());
    out
}

/// One request as the raw upstream read it.
#[derive(Debug, Clone)]
struct Got {
    /// The accepted connection it came on, counting from 0.
    connection: usize,
    /// Its place among that connection's requests, counting from 0.
    nth: usize,
    head: String,
    /// The body's data (decoded when chunked).
    body: Vec<u8>,
    trailers: Vec<String>,
}

impl Got {
    fn request_line(&self) -> &str {
        self.head.split("\r\n").next().unwrap_or("")
    }

    fn method(&self) -> &str {
        self.request_line().split(' ').next().unwrap_or("")
    }

    fn target(&self) -> &str {
        self.request_line().split(' ').nth(1).unwrap_or("")
    }

    fn field(&self, name: &str) -> Option<&str> {
        field(&self.head, name)
    }
}

/// What the raw upstream writes back, and whether it closes the connection
/// after, or echoes every byte that follows until the other side closes.
struct Answer {
    bytes: Vec<u8>,
    close: bool,
    echo: bool,
}

impl Answer {
    fn keep(bytes: impl Into<Vec<u8>>) -> Answer {
        Answer {
            bytes: bytes.into(),
            close: false,
            echo: false,
        }
    }

    fn close(bytes: impl Into<Vec<u8>>) -> Answer {
        Answer {
            bytes: bytes.into(),
            close: true,
            echo: false,
        }
    }

    /// A protocol switch: `bytes` (a 101 and what follows it), then an echo.
    fn switch(bytes: impl Into<Vec<u8>>) -> Answer {
        Answer {
            bytes: bytes.into(),
            close: false,
            echo: true,
        }
    }

    /// Closes the connection without a word, as a server whose idle timeout
    /// fired just as the request arrived.
    fn hang_up() -> Answer {
        Answer::close(Vec::new())
    }

    /// 200 with `METHOD target` as the body (its length only, for HEAD), kept alive.
    fn echo(got: &Got) -> Answer {
        Answer::keep(echo_bytes(got))
    }
}

fn echo_bytes(got: &Got) -> Vec<u8> {
    let text = format!("{} {}", got.method(), got.target());
    let body = if got.method() == "HEAD" { "" } else { &text };
    format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
        text.len()
    )
    .into_bytes()
}

type Script = Arc<dyn Fn(&Got) -> Answer + Send + Sync>;

/// An HTTP/1.1 upstream on loopback that reads requests by their framing,
/// records them, and writes back exactly the bytes its script gives.
struct RawUpstream {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    got: Arc<Mutex<Vec<Got>>>,
}

impl RawUpstream {
    async fn start(script: impl Fn(&Got) -> Answer + Send + Sync + 'static) -> RawUpstream {
        let script: Script = Arc::new(script);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let got = Arc::new(Mutex::new(Vec::new()));
        let (count, log) = (connections.clone(), got.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let connection = count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve_raw(stream, connection, script.clone(), log.clone()));
            }
        });
        RawUpstream {
            addr,
            connections,
            got,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

async fn serve_raw(
    mut stream: tokio::net::TcpStream,
    connection: usize,
    script: Script,
    log: Arc<Mutex<Vec<Got>>>,
) {
    let mut buf = Vec::new();
    for nth in 0.. {
        let Some(got) = read_request(&mut stream, &mut buf, connection, nth).await else {
            return;
        };
        log.lock().unwrap().push(got.clone());
        let answer = script(&got);
        if stream.write_all(&answer.bytes).await.is_err() || answer.close {
            return;
        }
        if answer.echo {
            let (mut from, mut to) = stream.split();
            if to.write_all(&buf).await.is_ok() {
                let _ = tokio::io::copy(&mut from, &mut to).await;
            }
            return;
        }
    }
}

/// Reads one request; `None` when the connection ends before a whole one arrived.
async fn read_request(
    stream: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
    connection: usize,
    nth: usize,
) -> Option<Got> {
    async fn more(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<()> {
        let mut piece = [0u8; 16 * 1024];
        match stream.read(&mut piece).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                buf.extend_from_slice(&piece[..n]);
                Some(())
            }
        }
    }
    let end = loop {
        if let Some(end) = head_end(buf) {
            break end;
        }
        more(stream, buf).await?;
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end);
    let mut got = Got {
        connection,
        nth,
        body: Vec::new(),
        trailers: Vec::new(),
        head,
    };
    if got
        .field("transfer-encoding")
        .is_some_and(|te| te.contains("chunked"))
    {
        let body = loop {
            if let Some(body) = dechunk(buf).ok()? {
                break body;
            }
            more(stream, buf).await?;
        };
        buf.drain(..body.len);
        (got.body, got.trailers) = (body.data, body.trailers);
    } else if let Some(length) = got.field("content-length") {
        let length: usize = length.parse().ok()?;
        while buf.len() < length {
            more(stream, buf).await?;
        }
        got.body = buf.drain(..length).collect();
    }
    Some(got)
}

/// One response as the client read it.
#[derive(Debug)]
struct Response {
    status: u16,
    head: String,
    body: Vec<u8>,
    trailers: Vec<String>,
}

impl Response {
    fn field(&self, name: &str) -> Option<&str> {
        field(&self.head, name)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A blocking client connection to the gateway that reads responses by their framing.
struct Wire {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Wire {
    fn open(addr: SocketAddr) -> Wire {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(READ_LIMIT)).unwrap();
        Wire {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream.write_all(bytes.as_ref()).unwrap();
    }

    fn read_more(&mut self) -> std::io::Result<usize> {
        let mut piece = [0u8; 16 * 1024];
        let n = self.stream.read(&mut piece)?;
        self.buf.extend_from_slice(&piece[..n]);
        Ok(n)
    }

    /// Reads more of `what`, failing the test if the gateway closes or goes quiet.
    fn fill(&mut self, what: &str) {
        match self.read_more() {
            Ok(0) => panic!(
                "the gateway closed the connection in {what}; unread: {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
            Ok(_) => {}
            Err(e) => panic!(
                "reading {what}: {e}; unread: {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }

    /// The next `n` bytes, whatever they are (after a protocol switch).
    fn take(&mut self, n: usize, what: &str) -> Vec<u8> {
        while self.buf.len() < n {
            self.fill(what);
        }
        self.buf.drain(..n).collect()
    }

    /// Reads the next response (an informational one included) to a `method` request.
    fn response(&mut self, method: &str) -> Response {
        let end = loop {
            if let Some(end) = head_end(&self.buf) {
                break end;
            }
            self.fill("a response head");
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end);
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        let mut response = Response {
            status,
            head,
            body: Vec::new(),
            trailers: Vec::new(),
        };
        if method == "HEAD" || status < 200 || status == 204 || status == 304 {
            return response;
        }
        if response
            .field("transfer-encoding")
            .is_some_and(|te| te.contains("chunked"))
        {
            let body = loop {
                match dechunk(&self.buf) {
                    Ok(Some(body)) => break body,
                    Ok(None) => self.fill("a chunked body"),
                    Err(e) => panic!("{e} in the response body of {:?}", response.head),
                }
            };
            self.buf.drain(..body.len);
            (response.body, response.trailers) = (body.data, body.trailers);
        } else if let Some(length) = response.field("content-length") {
            let length: usize = length.parse().unwrap();
            while self.buf.len() < length {
                self.fill("a content-length body");
            }
            response.body = self.buf.drain(..length).collect();
        } else {
            loop {
                match self.read_more() {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => panic!("reading a close-delimited body: {e}"),
                }
            }
            response.body = std::mem::take(&mut self.buf);
        }
        response
    }

    /// The next final (2xx..5xx) response, informational ones skipped.
    fn final_response(&mut self, method: &str) -> Response {
        loop {
            let response = self.response(method);
            if response.status >= 200 {
                return response;
            }
        }
    }

    /// Fails the test unless the gateway closes the connection with nothing more to say.
    fn assert_closed(&mut self) {
        assert!(
            self.buf.is_empty(),
            "unexpected bytes: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        match self.read_more() {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Ok(_) => panic!(
                "expected a close, got more bytes: {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
            Err(e) => panic!("expected the gateway to close the connection: {e}"),
        }
    }
}

fn get(target: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nhost: gw\r\n\r\n")
}

/// A gateway routing `/api` to a raw upstream, both on a runtime of their own,
/// so the test itself can speak blocking TCP.
struct Rig {
    gw: Gw,
    up: RawUpstream,
    runtime: tokio::runtime::Runtime,
}

impl Rig {
    fn start(script: impl Fn(&Got) -> Answer + Send + Sync + 'static) -> Rig {
        Rig::start_with(script, Options::default())
    }

    fn start_with(
        script: impl Fn(&Got) -> Answer + Send + Sync + 'static,
        options: Options,
    ) -> Rig {
        Rig::start_limited(script, options, "{}")
    }

    /// With `limits` (a flow mapping) as the configuration's limits.
    fn start_limited(
        script: impl Fn(&Got) -> Answer + Send + Sync + 'static,
        options: Options,
        limits: &str,
    ) -> Rig {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let up = runtime.block_on(RawUpstream::start(script));
        let yaml = format!("{}limits: {limits}\n", config(up.addr));
        let gw = runtime.block_on(Gw::start_with(&yaml, options));
        Rig { gw, up, runtime }
    }

    fn connect(&self) -> Wire {
        Wire::open(self.gw.proxy())
    }
}

#[test]
fn connection_close_gets_connection_close_and_the_gateway_hangs_up() {
    let rig = Rig::start(Answer::echo);
    for (target, status) in [("/api/x", 200), ("/nowhere", 404)] {
        let mut wire = rig.connect();
        wire.send(format!(
            "GET {target} HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n"
        ));
        let response = wire.response("GET");
        assert_eq!(response.status, status, "{response:?}");
        assert_eq!(response.field("connection"), Some("close"), "{response:?}");
        wire.assert_closed();
    }
    let got = rig.up.got();
    assert_eq!(got.len(), 1, "only the routed request goes upstream");
    assert_eq!(got[0].field("connection"), None, "a hop-by-hop field");
}

#[test]
fn kept_alive_and_pipelined_requests_are_answered_in_order() {
    let rig = Rig::start(Answer::echo);
    let mut wire = rig.connect();
    for target in ["/api/one", "/api/two"] {
        wire.send(get(target));
        let response = wire.response("GET");
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(response.text(), format!("GET {target}"));
        assert_eq!(response.field("connection"), None, "{response:?}");
    }
    // Two heads in one write, a gateway-made answer among them.
    wire.send(get("/api/three") + &get("/nowhere") + &get("/api/four"));
    for (status, text) in [
        (200, "GET /api/three"),
        (404, "no route for this host and path\n"),
        (200, "GET /api/four"),
    ] {
        let response = wire.response("GET");
        assert_eq!((response.status, response.text().as_str()), (status, text));
    }
    assert_eq!(
        rig.up.connections(),
        1,
        "one kept-alive upstream connection"
    );
}

#[test]
fn http10_clients_are_closed_on_unless_they_ask_for_keep_alive() {
    let rig = Rig::start(Answer::echo);
    let mut wire = rig.connect();
    wire.send("GET /api/old HTTP/1.0\r\nhost: gw\r\n\r\n");
    let response = wire.response("GET");
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "GET /api/old")
    );
    assert_eq!(response.field("connection"), Some("close"), "{response:?}");
    wire.assert_closed();

    let mut wire = rig.connect();
    for target in ["/api/a", "/api/b"] {
        wire.send(format!(
            "GET {target} HTTP/1.0\r\nhost: gw\r\nconnection: keep-alive\r\n\r\n"
        ));
        let response = wire.response("GET");
        assert_eq!(response.text(), format!("GET {target}"));
        assert_eq!(
            response.field("connection"),
            Some("keep-alive"),
            "{response:?}"
        );
    }
    wire.send("GET /api/c HTTP/1.0\r\nhost: gw\r\n\r\n");
    assert_eq!(wire.response("GET").text(), "GET /api/c");
    wire.assert_closed();
    // The upstream is asked in HTTP/1.0 too, so it cannot answer in chunks
    // the client could not read.
    for got in rig.up.got() {
        assert!(got.request_line().ends_with(" HTTP/1.0"), "{got:?}");
        assert_eq!(got.field("connection"), Some("keep-alive"), "{got:?}");
    }
}

#[test]
fn a_chunked_request_body_reaches_the_upstream_whole_and_is_logged_by_its_data() {
    let dir = test_support::TempDir::new("gw-wire");
    let file = dir.join("access.log");
    let rig = Rig::start_with(
        Answer::echo,
        Options {
            access_log: AccessLog::File(file.clone()),
            ..Options::default()
        },
    );
    let big = vec![b'x'; 20_000];
    let pieces: [&[u8]; 4] = [b"wiki", b"pedia", b" in\r\n\r\nchunks.", &big];
    let data = pieces.concat();
    let body = chunked(&pieces, "x-checksum: 42\r\n");
    let mut wire = rig.connect();
    // The head with the first bytes of the body, then the rest.
    let mut first =
        b"POST /api/upload HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    first.extend_from_slice(&body[..10]);
    wire.send(first);
    wire.send(&body[10..]);
    let response = wire.response("POST");
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "POST /api/upload")
    );
    let got = rig.up.got().remove(0);
    assert_eq!(got.field("transfer-encoding"), Some("chunked"));
    assert_eq!(got.body.len(), data.len());
    assert!(got.body == data, "the upstream's data differs");
    assert_eq!(got.trailers, ["x-checksum: 42"]);

    let lines = || {
        std::fs::read_to_string(&file)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    rig.runtime.block_on(eventually(
        Duration::from_secs(10),
        "the access-log line",
        || async { lines().len() == 1 },
    ));
    let line = lines().remove(0);
    assert_eq!(line["path"], "/api/upload", "{line}");
    assert_eq!(
        line["bytes_in"],
        data.len(),
        "data bytes, not framing: {line}"
    );
}

#[test]
fn a_chunked_response_reaches_the_client_intact_and_both_connections_are_reused() {
    let big: Vec<u8> = (0..70_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let pieces: Vec<Vec<u8>> = vec![b"hello".to_vec(), b", ".to_vec(), big];
    let data = pieces.concat();
    let body = {
        let pieces: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
        chunked(&pieces, "x-checksum: 42\r\n")
    };
    let rig = Rig::start(move |got| {
        if got.target() == "/api/chunked" {
            let mut bytes = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
            bytes.extend_from_slice(&body);
            Answer::keep(bytes)
        } else {
            Answer::echo(got)
        }
    });
    let mut wire = rig.connect();
    wire.send(get("/api/chunked"));
    let response = wire.response("GET");
    assert_eq!(response.status, 200);
    assert_eq!(response.field("transfer-encoding"), Some("chunked"));
    assert_eq!(response.body.len(), data.len());
    assert!(response.body == data, "the client's data differs");
    assert_eq!(response.trailers, ["x-checksum: 42"]);
    wire.send(get("/api/after"));
    assert_eq!(wire.response("GET").text(), "GET /api/after");
    assert_eq!(rig.up.connections(), 1);
}

#[test]
fn a_close_delimited_response_reaches_the_client_whole_and_then_closes_it() {
    let data: Vec<u8> = (0..100_000u32).map(|i| b'0' + (i % 10) as u8).collect();
    let body = data.clone();
    let rig = Rig::start(move |_| {
        let mut bytes = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n".to_vec();
        bytes.extend_from_slice(&body);
        Answer::close(bytes)
    });
    let mut wire = rig.connect();
    wire.send(get("/api/stream"));
    let response = wire.response("GET");
    assert_eq!(response.status, 200);
    assert_eq!(response.field("connection"), Some("close"), "{response:?}");
    assert_eq!(response.field("content-length"), None);
    assert_eq!(response.body.len(), data.len());
    assert!(response.body == data, "the client's data differs");
    wire.assert_closed();
}

#[test]
fn head_204_and_304_answers_have_no_body_and_the_connections_carry_on() {
    let rig = Rig::start(|got| match got.target() {
        "/api/204" => Answer::keep("HTTP/1.1 204 No Content\r\nx-kind: none\r\n\r\n"),
        "/api/304" => {
            Answer::keep("HTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\ncontent-length: 12\r\n\r\n")
        }
        _ => Answer::echo(got),
    });
    let mut wire = rig.connect();
    wire.send("HEAD /api/h HTTP/1.1\r\nhost: gw\r\n\r\n");
    let response = wire.response("HEAD");
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.field("content-length"),
        Some("HEAD /api/h".len().to_string().as_str())
    );
    wire.send(get("/api/204"));
    let response = wire.response("GET");
    assert_eq!(response.status, 204, "{response:?}");
    assert_eq!(response.field("x-kind"), Some("none"));
    wire.send(get("/api/304"));
    let response = wire.response("GET");
    assert_eq!(response.status, 304, "{response:?}");
    assert_eq!(response.field("etag"), Some("\"v1\""));
    // Had any of them been given a body, this answer would not parse.
    wire.send(get("/api/after"));
    let response = wire.response("GET");
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "GET /api/after")
    );
    assert_eq!(rig.up.connections(), 1);
}

#[test]
fn informational_answers_from_the_upstream_are_followed_by_the_final_one() {
    let rig = Rig::start(|got| match got.target() {
        "/api/hints" => Answer::keep(
            "HTTP/1.1 103 Early Hints\r\nlink: </s.css>; rel=preload\r\n\r\n\
             HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        ),
        "/api/continue" => Answer::keep(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ndone",
        ),
        _ => Answer::echo(got),
    });
    let mut wire = rig.connect();
    wire.send(get("/api/hints"));
    // A proxy passes informational answers on (RFC 9110, section 15.2).
    let hints = wire.response("GET");
    assert_eq!(hints.status, 103, "{hints:?}");
    assert_eq!(hints.field("link"), Some("</s.css>; rel=preload"));
    let response = wire.final_response("GET");
    assert_eq!((response.status, response.text().as_str()), (200, "ok"));
    wire.send("POST /api/continue HTTP/1.1\r\nhost: gw\r\ncontent-length: 3\r\n\r\nabc");
    let response = wire.final_response("POST");
    assert_eq!((response.status, response.text().as_str()), (200, "done"));
    wire.send(get("/api/after"));
    assert_eq!(wire.final_response("GET").text(), "GET /api/after");
    assert_eq!(rig.up.got()[1].body, b"abc");
}

/// Proxies before the gateway may each have added an `X-Forwarded-For` or
/// `Forwarded` field: all of them, in order, are one list, and the client's
/// address goes at its end.
#[test]
fn every_forwarding_field_of_earlier_hops_is_kept_in_order() {
    let rig = Rig::start(Answer::echo);
    let mut wire = rig.connect();
    wire.send(
        "GET /api/hops HTTP/1.1\r\nhost: gw\r\nX-Forwarded-For: 203.0.113.9\r\n\
         Forwarded: for=203.0.113.9\r\nX-Forwarded-For: 198.51.100.7, 192.0.2.1\r\n\
         Forwarded: for=198.51.100.7\r\n\r\n",
    );
    assert_eq!(wire.final_response("GET").status, 200);
    let got = rig.up.got();
    let head = &got[0].head;
    let values = |name: &str| -> Vec<&str> {
        head.split("\r\n")
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .collect()
    };
    assert_eq!(
        values("x-forwarded-for"),
        ["203.0.113.9, 198.51.100.7, 192.0.2.1, 127.0.0.1"]
    );
    assert_eq!(
        values("forwarded"),
        ["for=203.0.113.9, for=198.51.100.7, for=127.0.0.1;proto=http;host=\"gw\""]
    );
}

/// A WebSocket handshake, answered by the upstream with a 101 and bytes of the
/// new protocol right behind it: the 101 reaches the client with its Upgrade
/// field, then bytes flow both ways until the client closes (RFC 9110, section 7.8).
#[test]
fn an_upgrade_the_upstream_accepts_joins_the_two_connections() {
    let rig = Rig::start(|got| {
        let asked = got
            .field("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("upgrade"))
            && got.field("upgrade") == Some("websocket");
        if asked {
            Answer::switch(
                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                 Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\nhello",
            )
        } else {
            Answer::close("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
        }
    });
    let mut wire = rig.connect();
    wire.send(
        "GET /api/socket HTTP/1.1\r\nhost: gw\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    let switched = wire.response("GET");
    assert_eq!(switched.status, 101, "{}", switched.head);
    assert_eq!(switched.field("upgrade"), Some("websocket"));
    assert_eq!(switched.field("connection"), Some("upgrade"));
    assert_eq!(
        switched.field("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    assert!(
        switched.field("x-request-id").is_some(),
        "{}",
        switched.head
    );
    assert_eq!(wire.take(5, "the bytes behind the 101"), b"hello");
    wire.send("frame one");
    assert_eq!(wire.take(9, "the echo"), b"frame one");
    wire.send("frame two");
    assert_eq!(wire.take(9, "the second echo"), b"frame two");
    // The client ends its side; the upstream's echo ends, and the gateway closes.
    wire.stream.shutdown(std::net::Shutdown::Write).unwrap();
    wire.assert_closed();
    let got = rig.up.got();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].field("sec-websocket-key"),
        Some("dGhlIHNhbXBsZSBub25jZQ==")
    );
}

#[test]
fn a_tunnel_with_nothing_moving_is_closed_after_its_idle_timeout() {
    let rig = Rig::start_limited(
        |_| {
            Answer::switch(
                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            )
        },
        Options::default(),
        "{tunnel_idle_timeout: 300ms}",
    );
    let mut wire = rig.connect();
    wire.send(
        "GET /api/socket HTTP/1.1\r\nhost: gw\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    );
    assert_eq!(wire.response("GET").status, 101);
    // Traffic keeps the tunnel open past the timeout...
    let opened = std::time::Instant::now();
    for frame in ["frame one", "frame two", "frame three", "frame four"] {
        wire.send(frame);
        assert_eq!(wire.take(frame.len(), "the echo"), frame.as_bytes());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(opened.elapsed() >= Duration::from_millis(400));
    // ...and silence closes it (the read limit is 10 s, far over 300 ms).
    let quiet = std::time::Instant::now();
    wire.assert_closed();
    assert!(quiet.elapsed() < READ_LIMIT, "{:?}", quiet.elapsed());
}

/// A 101 to a request that asked for no switch, or a switch asked with a
/// body, is not followed: the gateway answers 502, as for any broken answer.
#[test]
fn a_switch_nobody_asked_for_is_a_bad_gateway() {
    let rig = Rig::start(|_| {
        Answer::keep(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n",
        )
    });
    let mut wire = rig.connect();
    wire.send(get("/api/plain"));
    let response = wire.final_response("GET");
    assert_eq!(response.status, 502, "{}", response.text());
    assert!(
        response
            .text()
            .contains("101 Switching Protocols without an upgrade"),
        "{}",
        response.text()
    );
    let mut wire = rig.connect();
    wire.send("POST /api/body HTTP/1.1\r\nhost: gw\r\nConnection: Upgrade\r\nUpgrade: x\r\ncontent-length: 2\r\n\r\nab");
    assert_eq!(wire.final_response("POST").status, 502);
    // The switch asked with a body was not passed on.
    let got = rig.up.got();
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|g| g.field("upgrade").is_none()), "{got:?}");
}

/// The upstream closes every connection right after its first response,
/// without `connection: close`: the next GET must not fail on the dead connection.
#[test]
fn a_kept_alive_upstream_connection_closed_by_the_upstream_is_replaced() {
    let rig = Rig::start(|got| Answer::close(echo_bytes(got)));
    let mut wire = rig.connect();
    for target in ["/api/1", "/api/2", "/api/3"] {
        wire.send(get(target));
        let response = wire.response("GET");
        assert_eq!(
            (response.status, response.text()),
            (200, format!("GET {target}"))
        );
    }
    assert_eq!(rig.up.connections(), 3);
    assert_eq!(rig.up.got().len(), 3);
}

/// The upstream reads a second request on a kept-alive connection and hangs
/// up without answering: an idempotent bodiless request is sent again on a
/// new connection; a POST with a body is not (it may have been acted on), and
/// the client gets 502.
#[test]
fn a_request_dropped_on_a_kept_alive_connection_is_sent_again_only_if_safe() {
    let rig = Rig::start(|got| {
        if got.nth == 0 {
            Answer::echo(got)
        } else {
            Answer::hang_up()
        }
    });
    let mut wire = rig.connect();
    for target in ["/api/1", "/api/2"] {
        wire.send(get(target));
        let response = wire.response("GET");
        assert_eq!(
            (response.status, response.text()),
            (200, format!("GET {target}"))
        );
    }
    wire.send("POST /api/3 HTTP/1.1\r\nhost: gw\r\ncontent-length: 7\r\n\r\npayload");
    let response = wire.response("POST");
    assert_eq!(response.status, 502, "{response:?}");
    let seen: Vec<(usize, usize, String)> = rig
        .up
        .got()
        .iter()
        .map(|g| (g.connection, g.nth, g.request_line().to_string()))
        .collect();
    assert_eq!(
        seen,
        [
            (0, 0, "GET /api/1 HTTP/1.1".to_string()),
            (0, 1, "GET /api/2 HTTP/1.1".to_string()),
            (1, 0, "GET /api/2 HTTP/1.1".to_string()),
            (1, 1, "POST /api/3 HTTP/1.1".to_string()),
        ]
    );
    assert_eq!(rig.up.got()[3].body, b"payload");
    assert_eq!(rig.up.connections(), 2);
}

#[test]
fn expect_100_continue_is_answered_by_the_gateway_and_not_passed_on() {
    let rig = Rig::start(Answer::echo);
    let mut wire = rig.connect();
    wire.send(
        "POST /api/upload HTTP/1.1\r\nhost: gw\r\ncontent-length: 11\r\nexpect: 100-continue\r\n\r\n",
    );
    let interim = wire.response("POST");
    assert!(
        interim.head.starts_with("HTTP/1.1 100 Continue\r\n"),
        "{interim:?}"
    );
    wire.send("hello world");
    let response = wire.response("POST");
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "POST /api/upload")
    );
    let got = rig.up.got().remove(0);
    assert_eq!(got.body, b"hello world");
    assert_eq!(got.field("expect"), None, "{}", got.head);
}

#[test]
fn ambiguous_request_framing_is_refused_with_400_and_a_close() {
    let rig = Rig::start(Answer::echo);
    let post = "POST /api/x HTTP/1.1\r\nhost: gw\r\n";
    for (fields, body) in [
        (
            "content-length: 5\r\ntransfer-encoding: chunked\r\n",
            "0\r\n\r\n",
        ),
        ("content-length: 5\r\ncontent-length: 6\r\n", "hello!"),
        ("transfer-encoding: gzip\r\n", "hello"),
        ("transfer-encoding: chunked, gzip\r\n", "hello"),
        ("transfer-encoding: identity, chunked\r\n", "0\r\n\r\n"),
        ("transfer-encoding: gzip, chunked\r\n", "0\r\n\r\n"),
        ("transfer-encoding: chunked, chunked\r\n", "0\r\n\r\n"),
        (
            "transfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n",
            "0\r\n\r\n",
        ),
        ("transfer-encoding: chunked\r\n", "zz\r\nhello\r\n0\r\n\r\n"),
    ] {
        let mut wire = rig.connect();
        wire.send(format!("{post}{fields}\r\n{body}"));
        let response = wire.response("POST");
        assert_eq!(response.status, 400, "{fields:?}: {response:?}");
        assert_eq!(
            response.field("connection"),
            Some("close"),
            "{fields:?}: {response:?}"
        );
        wire.assert_closed();
    }
    assert!(rig.up.got().is_empty(), "{:?}", rig.up.got());
}

#[test]
fn an_http11_request_needs_exactly_one_host_field() {
    let rig = Rig::start(Answer::echo);
    for (request, status) in [
        ("GET /api/x HTTP/1.1\r\n\r\n", 400),
        ("GET /api/x HTTP/1.1\r\nhost: gw\r\nhost: gw\r\n\r\n", 400),
        (
            "GET /api/x HTTP/1.1\r\nHost: gw\r\nx-a: 1\r\nHOST: admin.internal\r\n\r\n",
            400,
        ),
        ("GET /api/x HTTP/1.0\r\nhost: a\r\nhost: b\r\n\r\n", 400),
        (
            "GET http://gw/api/x HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n",
            400,
        ),
        // An absolute-form target does not excuse the field (RFC 9112, section 3.2).
        ("GET http://gw/api/x HTTP/1.1\r\n\r\n", 400),
        // HTTP/1.0 predates Host: a request without one is still served.
        ("GET /api/one-oh HTTP/1.0\r\n\r\n", 200),
        ("GET http://gw/api/one-oh-absolute HTTP/1.0\r\n\r\n", 200),
        ("GET /api/one-one HTTP/1.1\r\nhost: gw\r\n\r\n", 200),
    ] {
        let mut wire = rig.connect();
        wire.send(request);
        let response = wire.response("GET");
        assert_eq!(response.status, status, "{request:?}: {response:?}");
        if status == 400 {
            assert_eq!(response.field("connection"), Some("close"), "{request:?}");
            assert!(
                response.text().contains("Host"),
                "{request:?}: {response:?}"
            );
            wire.assert_closed();
        }
    }
    let targets: Vec<String> = rig.up.got().iter().map(|g| g.target().to_owned()).collect();
    assert_eq!(
        targets,
        ["/api/one-oh", "/api/one-oh-absolute", "/api/one-one"]
    );
}

#[test]
fn an_absolute_form_target_is_routed_by_its_path_and_sent_in_origin_form() {
    let rig = Rig::start(Answer::echo);
    let mut wire = rig.connect();
    wire.send("GET http://gw/api/x?q=1 HTTP/1.1\r\nhost: gw\r\n\r\n");
    let response = wire.response("GET");
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "GET /api/x?q=1")
    );
    wire.send("GET http://gw/elsewhere HTTP/1.1\r\nhost: gw\r\n\r\n");
    assert_eq!(wire.response("GET").status, 404);
    // The target's authority replaces Host (RFC 9112, section 3.2.2); an
    // HTTP/1.0 request needs no Host at all.
    let mut wire = rig.connect();
    wire.send("GET http://gw/api/y HTTP/1.0\r\nconnection: keep-alive\r\n\r\n");
    assert_eq!(wire.response("GET").status, 200);
    wire.send("GET http://gw/api/z HTTP/1.1\r\nhost: other.example\r\n\r\n");
    assert_eq!(wire.response("GET").status, 200);
    let got = rig.up.got();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].request_line(), "GET /api/x?q=1 HTTP/1.1");
    for g in &got {
        assert_eq!(g.field("host"), Some("gw"), "{g:?}");
        assert_eq!(
            g.head.matches("\r\nhost:").count() + g.head.matches("\r\nHost:").count(),
            1,
            "{g:?}"
        );
    }
}

#[test]
fn an_upstream_answering_before_the_whole_body_and_closing_is_passed_on() {
    // An upstream that refuses a body by its head alone: it answers 413 and
    // closes without reading on, while the client is still sending.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = listener.local_addr().unwrap();
    let early = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(READ_LIMIT)).unwrap();
        let mut buf = Vec::new();
        let end = loop {
            if let Some(end) = head_end(&buf) {
                break end;
            }
            let mut piece = [0u8; 4096];
            let n = stream.read(&mut piece).unwrap();
            assert!(n > 0, "the gateway closed before the head");
            buf.extend_from_slice(&piece[..n]);
        };
        stream
            .write_all(
                b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 10\r\nconnection: close\r\n\r\ntoo large\n",
            )
            .unwrap();
        String::from_utf8_lossy(&buf[..end]).into_owned()
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let gw = runtime.block_on(Gw::start(&config(upstream)));
    let mut wire = Wire::open(gw.proxy());
    let length = 8 << 20;
    wire.send(format!(
        "POST /api/upload HTTP/1.1\r\nhost: gw\r\ncontent-length: {length}\r\n\r\n"
    ));
    // The body goes on from its own thread: the gateway no longer passes it
    // on, but reads and drops it, so that the client sees a clean close and
    // not a reset that could have destroyed the answer.
    let mut body = wire.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let piece = vec![b'x'; 64 * 1024];
        let mut sent = 0;
        while sent < length {
            match body.write(&piece) {
                Ok(n) if n > 0 => sent += n,
                _ => break,
            }
        }
        sent
    });
    let response = wire.response("POST");
    assert_eq!(
        (response.status, response.text().as_str()),
        (413, "too large\n"),
        "{response:?}"
    );
    assert_eq!(response.field("connection"), Some("close"), "{response:?}");
    let head = early.join().unwrap();
    assert!(head.starts_with("POST /api/upload HTTP/1.1\r\n"), "{head}");
    assert_eq!(sender.join().unwrap(), length, "the body was cut off");
    wire.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(wire.read_more().unwrap(), 0, "{:?}", wire.buf);
}

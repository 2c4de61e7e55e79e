//! The connection loop over an in-memory duplex stream: requests in as raw
//! bytes, the exact answers out.

use super::{Handler, Request, Response, serve};
use std::sync::Mutex;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};
use tokio::sync::watch;

/// Answers every request with `METHOD PATH BODY-LENGTH`, and records refusals.
#[derive(Default)]
struct Echo {
    refused: Mutex<Vec<u16>>,
}

impl Handler for Echo {
    fn handle(&self, request: &Request<'_>) -> Response {
        Response::text(
            200,
            format!("{} {} {}", request.method, request.path, request.body.len()),
        )
    }

    fn refused(&self, status: u16) {
        self.refused.lock().expect("lock").push(status);
    }
}

/// Runs a connection over a duplex stream; returns the client's end, the stop
/// switch and the connection task (which ends when the server closes).
fn connect(
    echo: &'static Echo,
) -> (
    DuplexStream,
    watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let (client, server) = tokio::io::duplex(256 * 1024);
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(async move { serve(server, echo, stopped).await });
    (client, stop, task)
}

fn leaked() -> &'static Echo {
    Box::leak(Box::default())
}

/// Reads until the server closes; everything it wrote.
async fn until_closed(client: &mut DuplexStream) -> String {
    let mut out = Vec::new();
    client.read_to_end(&mut out).await.expect("read");
    String::from_utf8(out).expect("utf-8")
}

/// Reads exactly `n` answers of the Echo handler (their lengths are in their heads).
async fn answers(client: &mut DuplexStream, n: usize) -> Vec<String> {
    let mut buffer = Vec::new();
    let mut found = Vec::new();
    while found.len() < n {
        let mut chunk = [0u8; 4096];
        let read = client.read(&mut chunk).await.expect("read");
        assert!(read > 0, "closed after {found:?}");
        buffer.extend_from_slice(&chunk[..read]);
        while let Some(end) = complete(&buffer) {
            let answer: Vec<u8> = buffer.drain(..end).collect();
            found.push(String::from_utf8(answer).expect("utf-8"));
        }
    }
    found
}

/// The length of the first whole answer in `buffer`, if it is all there.
fn complete(buffer: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(buffer).ok()?;
    let head = text.find("\r\n\r\n")? + 4;
    let length: usize = text[..head]
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))?
        .trim()
        .parse()
        .ok()?;
    (buffer.len() >= head + length).then_some(head + length)
}

fn post(path: &str, body: &str, extra: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: webhook\r\nContent-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
}

const OK_ECHO: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ";

#[tokio::test]
async fn keep_alive_answers_requests_in_turn_and_strips_the_query() {
    let (mut client, _stop, _task) = connect(leaked());
    client
        .write_all(post("/validate?timeout=10s", "{}", "").as_bytes())
        .await
        .expect("write");
    assert_eq!(
        answers(&mut client, 1).await,
        [format!("{OK_ECHO}16\r\n\r\nPOST /validate 2")]
    );
    client
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: w\r\n\r\n")
        .await
        .expect("write");
    assert_eq!(
        answers(&mut client, 1).await,
        [format!("{OK_ECHO}14\r\n\r\nGET /healthz 0")]
    );
}

#[tokio::test]
async fn head_gets_the_head_without_the_body() {
    let (mut client, _stop, _task) = connect(leaked());
    client
        .write_all(b"HEAD /healthz HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n")
        .await
        .expect("write");
    let mut both = Vec::new();
    let expected = format!("{OK_ECHO}15\r\n\r\n{OK_ECHO}14\r\n\r\nGET /healthz 0");
    while both.len() < expected.len() {
        let mut chunk = [0u8; 4096];
        let n = client.read(&mut chunk).await.expect("read");
        assert!(n > 0, "closed after {both:?}");
        both.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(String::from_utf8(both).expect("utf-8"), expected);
}

#[tokio::test]
async fn pipelined_requests_and_split_bodies_are_answered_in_order() {
    let (mut client, _stop, _task) = connect(leaked());
    let both = post("/a", "xyz", "") + &post("/b", "", "");
    client.write_all(both.as_bytes()).await.expect("write");
    assert_eq!(
        answers(&mut client, 2).await,
        [
            format!("{OK_ECHO}9\r\n\r\nPOST /a 3"),
            format!("{OK_ECHO}9\r\n\r\nPOST /b 0"),
        ]
    );
    // The head first, the body in two later pieces.
    client
        .write_all(b"POST /c HTTP/1.1\r\nContent-Length: 6\r\n\r\nabc")
        .await
        .expect("write");
    // Lets the connection read the first piece alone (the test runtime has one thread).
    tokio::task::yield_now().await;
    client.write_all(b"def").await.expect("write");
    assert_eq!(
        answers(&mut client, 1).await,
        [format!("{OK_ECHO}9\r\n\r\nPOST /c 6")]
    );
}

#[tokio::test]
async fn connection_close_and_http_1_0_end_the_connection_after_the_answer() {
    for request in [
        post("/v", "", "Connection: close\r\n"),
        "GET /healthz HTTP/1.0\r\n\r\n".to_string(),
    ] {
        let (mut client, _stop, task) = connect(leaked());
        client.write_all(request.as_bytes()).await.expect("write");
        let all = until_closed(&mut client).await;
        assert!(all.contains("\r\nconnection: close\r\n\r\n"), "{all}");
        task.await.expect("connection ends");
    }
    // An HTTP/1.0 client that asks to keep the connection keeps it.
    let (mut client, _stop, _task) = connect(leaked());
    let keep = "GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    client.write_all(keep.as_bytes()).await.expect("write");
    client.write_all(keep.as_bytes()).await.expect("write");
    let two = answers(&mut client, 2).await;
    assert!(
        two.iter().all(|a| !a.contains("connection: close")),
        "{two:?}"
    );
}

#[tokio::test]
async fn requests_that_cannot_be_read_are_refused_and_closed() {
    let huge_head = format!(
        "GET / HTTP/1.1\r\nX-Filler: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let many_fields = format!("GET / HTTP/1.1\r\n{}\r\n", "X-A: b\r\n".repeat(65));
    let cases = [
        (
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_string(),
            "411 Length Required",
            "not Transfer-Encoding",
        ),
        (
            format!(
                "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
                crate::MAX_BODY + 1
            ),
            "413 Content Too Large",
            "the body exceeds 4194304 bytes",
        ),
        (
            huge_head,
            "431 Request Header Fields Too Large",
            "over 65536 bytes",
        ),
        (
            many_fields,
            "431 Request Header Fields Too Large",
            "over 64 header fields",
        ),
        (
            "POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n".to_string(),
            "400 Bad Request",
            "two different Content-Length",
        ),
        (
            "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n".to_string(),
            "400 Bad Request",
            "invalid Content-Length",
        ),
        (
            "NOT HTTP\r\n\r\n".to_string(),
            "400 Bad Request",
            "malformed HTTP request",
        ),
    ];
    for (request, status, reason) in cases {
        let echo = leaked();
        let (mut client, _stop, task) = connect(echo);
        client.write_all(request.as_bytes()).await.expect("write");
        let all = until_closed(&mut client).await;
        assert!(all.starts_with(&format!("HTTP/1.1 {status}\r\n")), "{all}");
        assert!(all.contains("connection: close"), "{all}");
        assert!(all.contains(reason), "{reason:?} not in {all}");
        task.await.expect("connection ends");
        let code: u16 = status[..3].parse().expect("status");
        assert_eq!(*echo.refused.lock().expect("lock"), [code]);
    }
}

#[tokio::test]
async fn expect_continue_gets_an_interim_answer_before_the_body() {
    let (mut client, _stop, _task) = connect(leaked());
    client
        .write_all(b"POST /v HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        .await
        .expect("write");
    let mut interim = [0u8; 25];
    client.read_exact(&mut interim).await.expect("read");
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    client.write_all(b"{}").await.expect("write");
    assert_eq!(
        answers(&mut client, 1).await,
        [format!("{OK_ECHO}9\r\n\r\nPOST /v 2")]
    );
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_finishes_started_requests() {
    let (mut idle, stop_idle, idle_task) = connect(leaked());
    stop_idle.send(true).expect("connection listens");
    assert_eq!(until_closed(&mut idle).await, "");
    idle_task.await.expect("idle connection ends");

    let (mut busy, stop_busy, busy_task) = connect(leaked());
    busy.write_all(b"POST /v HTTP/1.1\r\nContent-Length: 4\r\n\r\nab")
        .await
        .expect("write");
    // The test runtime has one thread: yielding runs the connection task,
    // which reads the head, so it is no longer idle when the stop comes.
    tokio::task::yield_now().await;
    stop_busy.send(true).expect("connection listens");
    busy.write_all(b"cd").await.expect("write");
    let all = until_closed(&mut busy).await;
    assert_eq!(
        all,
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 9\r\nconnection: close\r\n\r\nPOST /v 4"
    );
    busy_task.await.expect("busy connection ends");
}

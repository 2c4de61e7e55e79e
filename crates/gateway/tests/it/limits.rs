//! Limits and hygiene: header and body sizes, malformed requests, slow and idle
//! clients, the connection cap, and draining on shutdown.

use crate::support::{Gw, Reply, Upstream, eventually, raw};
use bytes::Bytes;
use http_body_util::Full;
use hyper::StatusCode;
use hyper::body::Frame;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn config(upstream: std::net::SocketAddr, limits: &str) -> String {
    format!(
        "listeners: [{{address: 127.0.0.1:0}}]
limits: {limits}
routes: [{{prefix: /, service: app}}]
services:
  app:
    endpoints: [{{address: {upstream}, labels: {{app: x}}}}]
    selector: {{app: x}}
"
    )
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_get_431_and_malformed_requests_get_400() {
    let up = Upstream::start("a").await;
    let gw = Gw::start(&config(up.addr, "{max_header_bytes: 8192}")).await;
    let addr = gw.proxy();
    let big = format!(
        "GET / HTTP/1.1\r\nhost: gw\r\nx-big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let answer = blocking(move || raw(addr, big.as_bytes(), Duration::from_secs(10))).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    for garbage in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nbad header line\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: gw\r\ncontent-length: nope\r\n\r\n",
    ] {
        let answer = blocking(move || raw(addr, garbage, Duration::from_secs(10))).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    }
    // The process is fine and serves the next client.
    assert_eq!(gw.get("/").await, (StatusCode::OK, "a".into()));
    assert_eq!(up.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_get_413_declared_or_streamed() {
    let up = Upstream::start("a").await;
    let gw = Gw::start(&config(up.addr, "{max_body_bytes: 1000}")).await;
    let url = format!("http://{}/upload", gw.proxy());
    let req = hyper::Request::post(&url)
        .body(Full::new(Bytes::from(vec![b'x'; 2000])))
        .unwrap();
    let (status, _, body) = gw.send(req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body, "request body over the limit of 1000 bytes\n");
    assert_eq!(
        up.requests(),
        0,
        "a declared oversize body is refused before forwarding"
    );

    // A chunked body has no length up front: it is cut off when it passes the limit.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let req = hyper::Request::post(&url)
        .body(Chunks(vec![Bytes::from(vec![b'y'; 600]); 4]))
        .unwrap();
    let response = client.request(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let req = hyper::Request::post(&url)
        .body(Full::new(Bytes::from(vec![b'z'; 1000])))
        .unwrap();
    assert_eq!(gw.send(req).await.0, StatusCode::OK);
    assert_eq!(
        (up.last().method.as_str(), up.last().body_len),
        ("POST", 1000)
    );
}

/// A body of chunks with no declared length, so it is sent chunked.
struct Chunks(Vec<Bytes>);

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let next = (!self.0.is_empty()).then(|| Ok(Frame::data(self.0.remove(0))));
        std::task::Poll::Ready(next)
    }
}

/// A client that sends its headers one byte every 50 ms is cut off at the header
/// timeout, and other clients are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_loris_is_cut_off_without_holding_other_clients() {
    let up = Upstream::start("a").await;
    let gw = Gw::start(&config(up.addr, "{header_timeout: 500ms}")).await;
    let addr = gw.proxy();
    let loris = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let headers = format!(
            "GET / HTTP/1.1\r\nhost: gw\r\nx-slow: {}\r\n\r\n",
            "s".repeat(400)
        );
        let started = Instant::now();
        for byte in headers.as_bytes() {
            if stream.write_all(&[*byte]).is_err() {
                return Some(started.elapsed());
            }
            // The read timeout paces the bytes and notices the server closing.
            let mut buf = [0u8; 512];
            match stream.read(&mut buf) {
                Ok(_) => return Some(started.elapsed()),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return Some(started.elapsed()),
            }
        }
        None
    });
    for _ in 0..20 {
        assert_eq!(gw.get("/").await, (StatusCode::OK, "a".into()));
    }
    let cut_after = loris.await.unwrap();
    // 430 bytes at 50 ms would take over 20 s: the gateway ended it long before.
    assert!(cut_after.is_some(), "the slow client sent every byte");
    assert_eq!(
        up.requests(),
        20,
        "the slow request never reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed() {
    let up = Upstream::start("a").await;
    let gw = Gw::start(&config(up.addr, "{idle_timeout: 300ms}")).await;
    let addr = gw.proxy();
    let closed = blocking(move || {
        // One request on a keep-alive connection, then silence.
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: gw\r\n\r\n")
            .unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => return Ok(String::from_utf8_lossy(&seen).into_owned()),
                Ok(n) => seen.extend_from_slice(&buf[..n]),
                Err(e) => return Err(e.kind()),
            }
        }
    })
    .await;
    let answer = closed.expect("the gateway closes the idle connection within 10 s");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // A connection that never sends anything is closed too.
    let silent = blocking(move || raw(addr, b"", Duration::from_secs(10))).await;
    assert_eq!(silent, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_get_503_until_one_closes() {
    let up = Upstream::start("a").await;
    let gw = Gw::start(&config(up.addr, "{max_connections: 2}")).await;
    let addr = gw.proxy();
    let held = blocking(move || {
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nhost: gw\r\n\r\n").unwrap();
            let mut buf = [0u8; 512];
            let n = s.read(&mut buf).unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
            held.push(s);
        }
        held
    })
    .await;
    let refused = blocking(move || {
        raw(
            addr,
            b"GET / HTTP/1.1\r\nhost: gw\r\n\r\n",
            Duration::from_secs(10),
        )
    })
    .await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.ends_with("too many connections\n"), "{refused}");
    assert_eq!(
        gw.metric("bulkhead_gateway_open_connections").await,
        2.0,
        "the two held client connections (admin connections are not counted)"
    );
    drop(held);
    eventually(
        Duration::from_secs(10),
        "a free connection slot",
        || async {
            blocking(move || {
                raw(
                    addr,
                    b"GET / HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n",
                    Duration::from_secs(10),
                )
            })
            .await
            .starts_with("HTTP/1.1 200")
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_requests_in_flight_finish() {
    let up = Upstream::with("slow", |_| Reply::After(Duration::from_millis(700))).await;
    let gw = Gw::start(&config(up.addr, "{drain_timeout: 20s}")).await;
    let addr = gw.proxy();
    let in_flight = tokio::spawn({
        let client = gw.client.clone();
        async move {
            let req = hyper::Request::get(format!("http://{addr}/"))
                .body(Full::default())
                .unwrap();
            let response = client.request(req).await.unwrap();
            let status = response.status();
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            (status, body)
        }
    });
    eventually(
        Duration::from_secs(10),
        "the upstream to get the request",
        || async { up.requests() == 1 },
    )
    .await;
    let drained = gw.gateway.shutdown().await;
    assert!(drained, "drained within the timeout");
    assert_eq!(
        in_flight.await.unwrap(),
        (StatusCode::OK, Bytes::from("slow"))
    );
    let after = blocking(move || TcpStream::connect(addr).is_err()).await;
    assert!(after, "the listener is closed after shutdown");
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);
}

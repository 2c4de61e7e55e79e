//! Real loopback upstreams that record what they see, a gateway started from YAML,
//! and raw HTTP/1.1 clients for what a well-behaved client library will not send.

use bytes::Bytes;
use gateway::{Gateway, Options};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "s3cret-token";

/// What an upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body_len: usize,
}

/// How an upstream answers one request.
pub enum Reply {
    /// This status, with the upstream's name as the body.
    Status(StatusCode),
    /// 200 after a pause: a slow upstream.
    After(Duration),
    /// 200 with these extra response headers.
    Headers(Vec<(&'static str, &'static str)>),
}

type Behaviour = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

pub struct Upstream {
    pub addr: SocketAddr,
    /// TCP connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    /// Answers 200 with its name and echoes the `traceparent` it got as `x-seen-traceparent`.
    pub async fn start(name: &'static str) -> Upstream {
        Upstream::with(name, |_| Reply::Status(StatusCode::OK)).await
    }

    pub async fn with(
        name: &'static str,
        behaviour: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> Upstream {
        let behaviour: Behaviour = Arc::new(behaviour);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (count, log) = (connections.clone(), seen.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let (behaviour, log) = (behaviour.clone(), log.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (behaviour, log) = (behaviour.clone(), log.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let seen = Seen {
                                method: parts.method.to_string(),
                                path: parts.uri.path().to_string(),
                                headers: parts.headers.clone(),
                                body_len: body.len(),
                            };
                            log.lock().unwrap().push(seen.clone());
                            let reply = behaviour(&seen);
                            let mut response = Response::new(Full::new(Bytes::from(name)));
                            match reply {
                                Reply::Status(status) => *response.status_mut() = status,
                                Reply::After(pause) => tokio::time::sleep(pause).await,
                                Reply::Headers(headers) => {
                                    for (k, v) in headers {
                                        response.headers_mut().insert(k, v.parse().unwrap());
                                    }
                                }
                            }
                            if let Some(tp) = parts.headers.get("traceparent") {
                                response
                                    .headers_mut()
                                    .insert("x-seen-traceparent", tp.clone());
                            }
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            connections,
            seen,
        }
    }

    pub fn requests(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a request")
    }
}

/// A loopback address where nothing listens: connecting is refused.
pub fn dead_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

pub struct Gw {
    pub gateway: Gateway,
    pub client: Client<HttpConnector, Full<Bytes>>,
}

impl Gw {
    pub async fn start(yaml: &str) -> Gw {
        Gw::start_with(yaml, Options::default()).await
    }

    /// A gateway from this configuration, with an admin API guarded by [`TOKEN`].
    pub async fn start_with(yaml: &str, options: Options) -> Gw {
        let config = gateway::parse("gateway.yaml", yaml).unwrap();
        let options = Options {
            admin: Some("127.0.0.1:0".parse().unwrap()),
            admin_token: Some(TOKEN.to_string()),
            ..options
        };
        Gw {
            gateway: Gateway::bind(config, options).await.unwrap(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub fn proxy(&self) -> SocketAddr {
        self.gateway.proxy_addrs()[0]
    }

    pub async fn send(&self, req: Request<Full<Bytes>>) -> (StatusCode, HeaderMap, String) {
        let response = self.client.request(req).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    pub async fn get(&self, path: &str) -> (StatusCode, String) {
        let req = Request::get(format!("http://{}{path}", self.proxy()))
            .body(Full::default())
            .unwrap();
        let (status, _, body) = self.send(req).await;
        (status, body)
    }

    pub async fn admin(&self, method: &str, path: &str, body: &str) -> (StatusCode, String) {
        let addr = self.gateway.admin_addr().unwrap();
        let req = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let (status, _, body) = self.send(req).await;
        (status, body)
    }

    pub async fn admin_json(&self, method: &str, path: &str, body: &str) -> serde_json::Value {
        let (status, text) = self.admin(method, path, body).await;
        assert_eq!(status, StatusCode::OK, "{method} {path}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// The value of one sample on `/metrics`, e.g.
    /// `bulkhead_gateway_requests_total{service="a",version="v1",code="2xx"}`; 0 when absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        let (_, text) = self.admin("GET", "/metrics", "").await;
        text.lines()
            .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
            .map_or(0.0, |v| v.parse().unwrap())
    }
}

/// Polls `condition` every 20 ms until it holds; fails the test after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends raw bytes on a fresh connection and reads until the server closes it
/// or `limit` passes; returns what came back.
pub fn raw(addr: SocketAddr, request: &[u8], limit: Duration) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(limit)).unwrap();
    stream.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

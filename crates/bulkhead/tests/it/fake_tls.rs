//! A small HTTPS server for the fakes of the APIs that cannot run here
//! (GitHub, GitLab, the Kubernetes API server): one request per connection,
//! answered by the fake's handler, with a self-signed certificate from the
//! helper `policy serve --self-signed` uses. An answer is one JSON body, or
//! a stream of chunks (`Transfer-Encoding: chunked`, as the Kubernetes API
//! server sends a watch) that ends when its sender is dropped.

use serde_json::Value;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// An answer: (status, extra header lines, JSON), or chunks streamed as they come.
pub enum Reply {
    Json(u16, String, Value),
    Stream(std::sync::mpsc::Receiver<Vec<u8>>),
}

/// A handler: (method, target, a header by lowercase name, JSON body) to its reply.
pub type Handler =
    dyn Fn(&str, &str, &dyn Fn(&str) -> Option<String>, Value) -> Reply + Send + Sync;

/// The server, stopped when dropped.
pub struct TlsServer {
    pub addr: SocketAddr,
    /// The certificate to trust, PEM.
    pub ca_pem: String,
    stop: Arc<AtomicBool>,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

impl TlsServer {
    pub fn start(
        handler: impl Fn(&str, &str, &dyn Fn(&str) -> Option<String>, Value) -> (u16, String, Value)
        + Send
        + Sync
        + 'static,
    ) -> TlsServer {
        let cert = ::admission::tls::SelfSigned::generate(&["127.0.0.1".to_string()])
            .expect("self-signed certificate");
        let tls = cert.server_config().expect("server config");
        TlsServer::start_with(tls, cert.cert_pem, handler)
    }

    /// As [`TlsServer::start_with`], with a handler that may stream its answer;
    /// without `tls`, a self-signed certificate for 127.0.0.1.
    pub fn start_replying(
        tls: Option<(Arc<rustls::ServerConfig>, String)>,
        handler: impl Fn(&str, &str, &dyn Fn(&str) -> Option<String>, Value) -> Reply
        + Send
        + Sync
        + 'static,
    ) -> TlsServer {
        let (tls, ca_pem) = tls.unwrap_or_else(|| {
            let cert = ::admission::tls::SelfSigned::generate(&["127.0.0.1".to_string()])
                .expect("self-signed certificate");
            (cert.server_config().expect("server config"), cert.cert_pem)
        });
        TlsServer::serve(tls, ca_pem, Arc::new(handler))
    }

    /// As [`TlsServer::start`], with the TLS configuration `tls` (one that
    /// asks for client certificates, say) whose chain `ca_pem` roots.
    pub fn start_with(
        tls: Arc<rustls::ServerConfig>,
        ca_pem: String,
        handler: impl Fn(&str, &str, &dyn Fn(&str) -> Option<String>, Value) -> (u16, String, Value)
        + Send
        + Sync
        + 'static,
    ) -> TlsServer {
        TlsServer::serve(
            tls,
            ca_pem,
            Arc::new(move |method, target, header, body| {
                let (status, extra, answer) = handler(method, target, header, body);
                Reply::Json(status, extra, answer)
            }),
        )
    }

    fn serve(tls: Arc<rustls::ServerConfig>, ca_pem: String, handler: Arc<Handler>) -> TlsServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        let stop = Arc::new(AtomicBool::new(false));
        let halt = stop.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if halt.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (tls, handler) = (tls.clone(), handler.clone());
                std::thread::spawn(move || serve_one(stream, tls, &*handler));
            }
        });
        TlsServer { addr, ca_pem, stop }
    }
}

/// One request on one TLS connection.
fn serve_one(stream: TcpStream, tls: Arc<rustls::ServerConfig>, handler: &Handler) {
    let Ok(connection) = rustls::ServerConnection::new(tls) else {
        return;
    };
    let mut stream = rustls::StreamOwned::new(connection, stream);
    let mut reader = BufReader::new(&mut stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() || line.trim_end().is_empty() {
            break;
        }
        if let Some((k, v)) = line.trim_end().split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or_default().to_string(),
        parts.next().unwrap_or_default().to_string(),
    );
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (status, extra, answer) = match handler(&method, &target, &header, body) {
        Reply::Json(status, extra, answer) => (status, extra, answer),
        Reply::Stream(chunks) => {
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            );
            let _ = stream.flush();
            for chunk in chunks {
                let sent = write!(stream, "{:x}\r\n", chunk.len())
                    .and_then(|()| stream.write_all(&chunk))
                    .and_then(|()| stream.write_all(b"\r\n"))
                    .and_then(|()| stream.flush());
                if sent.is_err() {
                    return;
                }
            }
            let _ = stream.write_all(b"0\r\n\r\n");
            let _ = stream.flush();
            stream.conn.send_close_notify();
            let _ = stream.flush();
            return;
        }
    };
    let text = answer.to_string();
    let reason = match status {
        200 => "OK",
        201 => "Created",
        401 => "Unauthorized",
        403 => "Forbidden",
        409 => "Conflict",
        410 => "Gone",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        _ => "Not Found",
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = stream.flush();
    stream.conn.send_close_notify();
    let _ = stream.flush();
}

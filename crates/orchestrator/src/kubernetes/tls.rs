//! HTTPS to an API server for kube-rs: a hyper client whose connector speaks
//! rustls (ring) with the kubeconfig's CA and client certificate, and a layer
//! that gives each request the server's scheme and authority and the bearer
//! token. kube's own TLS features would build a second TLS stack and its
//! kubeconfig reader serde_yaml; this is the part of them the executor needs.

use crate::kubeconfig::{Auth, Cluster};
use hyper::Uri;
use hyper::header::{AUTHORIZATION, HeaderValue};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A TLS connection hyper can pool.
pub struct Stream(tokio_rustls::client::TlsStream<TcpStream>);

impl Connection for Stream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Connects to the URI's host with TLS.
#[derive(Clone)]
pub struct Connector {
    tls: tokio_rustls::TlsConnector,
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<Stream>;
    type Error = std::io::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.tls.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| std::io::Error::other(format!("{uri}: no host")))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(443);
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            let _ = tcp.set_nodelay(true);
            let name = rustls::pki_types::ServerName::try_from(host)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let stream = tls.connect(name, tcp).await?;
            Ok(TokioIo::new(Stream(stream)))
        })
    }
}

/// The rustls client configuration for `cluster`: its CA (else the system's
/// bundle) and its client certificate.
///
/// # Errors
/// PEM that holds no certificate or key, or a key rustls refuses.
fn client_config(cluster: &Cluster) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    let pem = match &cluster.ca_pem {
        Some(pem) => pem.clone(),
        None => std::fs::read(
            std::env::var_os("SSL_CERT_FILE")
                .unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into()),
        )
        .unwrap_or_default(),
    };
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("certificate-authority: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("certificate-authority: {e}"))?;
    }
    if roots.is_empty() {
        return Err("certificate-authority: no PEM certificate".into());
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots);
    let mut config = match &cluster.auth {
        Auth::ClientCertificate { cert_pem, key_pem } => {
            let chain = CertificateDer::pem_slice_iter(cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("client-certificate: {e}"))?;
            let key =
                PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("client-key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate and key: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Gives each request the server's scheme and authority, and the token.
#[derive(Clone)]
pub struct Api {
    inner: HttpClient<Connector, kube::client::Body>,
    server: Uri,
    token: Option<HeaderValue>,
}

impl tower_service::Service<hyper::Request<kube::client::Body>> for Api {
    type Response = hyper::Response<hyper::body::Incoming>;
    type Error = hyper_util::client::legacy::Error;
    type Future = hyper_util::client::legacy::ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: hyper::Request<kube::client::Body>) -> Self::Future {
        let mut parts = self.server.clone().into_parts();
        parts.path_and_query = request.uri().path_and_query().cloned();
        if let Ok(uri) = Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
        if let Some(token) = &self.token {
            request.headers_mut().insert(AUTHORIZATION, token.clone());
        }
        self.inner.request(request)
    }
}

/// The service kube's `Client::new` takes, for an `https://` cluster.
///
/// # Errors
/// A server URL that does not parse, TLS material rustls refuses, or an exec
/// plugin that gives no token.
pub fn api(cluster: &Cluster, token: Option<String>) -> Result<Api, String> {
    let server: Uri = cluster
        .server
        .parse()
        .map_err(|e| format!("server {:?}: {e}", cluster.server))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(client_config(cluster)?));
    let inner = HttpClient::builder(TokioExecutor::new()).build(Connector { tls });
    let token = token
        .map(|t| {
            HeaderValue::from_str(&format!("Bearer {t}"))
                .map_err(|_| "the token is not a valid header value".to_string())
        })
        .transpose()?;
    Ok(Api {
        inner,
        server,
        token,
    })
}

//! The admin API: read the configuration and state, change one service, reload the file, metrics.

use crate::Body;
use crate::config::{Labels, WeightedSelector};
use crate::state::{Change, ChangeError, ReloadError, Shared};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug)]
pub(crate) struct Admin {
    pub shared: Arc<Shared>,
    pub token: Option<String>,
    /// The file `POST /reload` reads; `None` when the configuration came from elsewhere.
    pub config_path: Option<PathBuf>,
}

/// Compares in time that depends only on the lengths, never on where the bytes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

/// A plain-text answer.
fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut response = text(status, format!("{value}\n"));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response<Body> {
    json(status, &serde_json::json!({"error": message.to_string()}))
}

#[derive(serde::Deserialize)]
struct EndpointBody {
    address: SocketAddr,
}

impl Admin {
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        if let Some(token) = &self.token {
            let given = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
                .unwrap_or(b"");
            if !constant_time_eq(given, token.as_bytes()) {
                let mut r = text(StatusCode::UNAUTHORIZED, "missing or wrong bearer token\n");
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return r;
            }
        }
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let body = match Limited::new(req.into_body(), 1 << 20).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return text(StatusCode::BAD_REQUEST, "unreadable or oversized body\n"),
        };
        let change =
            |parse: fn(&[u8]) -> Result<Change, serde_json::Error>, service: &str| match parse(
                &body,
            ) {
                Ok(change) => self.change(service, change),
                Err(e) => error(StatusCode::BAD_REQUEST, e),
            };
        match (&method, segments.as_slice()) {
            (&Method::GET, ["config"]) => {
                let (config, generation) = self.shared.config();
                json(
                    StatusCode::OK,
                    &serde_json::json!({"generation": generation, "config": config}),
                )
            }
            (&Method::GET, ["state"]) => {
                let table = self.shared.table();
                json(
                    StatusCode::OK,
                    &serde_json::json!({
                        "generation": table.generation,
                        "services": table.state(),
                        "down": table.down(),
                    }),
                )
            }
            (&Method::GET, ["metrics"]) => {
                let generation = self.shared.table().generation;
                let mut r = text(
                    StatusCode::OK,
                    self.shared.registry.metrics.render(generation),
                );
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                r
            }
            (&Method::POST, ["reload"]) => self.reload().await,
            (&Method::PUT, ["services", service, "selector"]) => change(
                |b| serde_json::from_slice::<Labels>(b).map(Change::Selector),
                service,
            ),
            (&Method::PUT, ["services", service, "weights"]) => change(
                |b| serde_json::from_slice::<Vec<WeightedSelector>>(b).map(Change::Weights),
                service,
            ),
            (&Method::POST, ["services", service, "drain"]) => change(
                |b| serde_json::from_slice::<EndpointBody>(b).map(|e| Change::Drain(e.address)),
                service,
            ),
            (&Method::POST, ["services", service, "undrain"]) => change(
                |b| serde_json::from_slice::<EndpointBody>(b).map(|e| Change::Undrain(e.address)),
                service,
            ),
            _ => text(StatusCode::NOT_FOUND, "no such admin endpoint\n"),
        }
    }

    fn change(&self, service: &str, change: Change) -> Response<Body> {
        match self.shared.apply(service, change) {
            Ok(generation) => json(
                StatusCode::OK,
                &serde_json::json!({"generation": generation}),
            ),
            Err(e) => {
                let status = match e {
                    ChangeError::UnknownService(_) | ChangeError::UnknownEndpoint { .. } => {
                        StatusCode::NOT_FOUND
                    }
                    ChangeError::Invalid(_) | ChangeError::NoLiveEndpoint(_) => {
                        StatusCode::UNPROCESSABLE_ENTITY
                    }
                };
                error(status, e)
            }
        }
    }

    /// Reads and parses the file off the runtime's workers, then swaps the whole table.
    async fn reload(&self) -> Response<Body> {
        let Some(path) = self.config_path.clone() else {
            return error(
                StatusCode::CONFLICT,
                "this gateway was not started from a file",
            );
        };
        let name = path.display().to_string();
        let read = tokio::task::spawn_blocking(move || std::fs::read_to_string(&path)).await;
        let text = match read {
            Ok(Ok(text)) => text,
            Ok(Err(e)) => {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("reading {name}: {e}"),
                );
            }
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
        };
        let outcome = crate::parse(&name, &text)
            .map_err(ReloadError::from)
            .and_then(|config| self.shared.reload(&name, config));
        match outcome {
            Ok(generation) => json(
                StatusCode::OK,
                &serde_json::json!({"generation": generation}),
            ),
            Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_compare() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"secret"));
    }
}

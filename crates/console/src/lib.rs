//! The web console: `bulkhead console`. One process holds the fleet graph in
//! memory ([`graph`]), keeps it current by watching the fleet's files, and
//! serves server-rendered HTML pages with a JSON mirror of each under `/api/`
//! (`pages`), on hyper's HTTP/1.1 server as the collector does. A thread of
//! its own samples the gateway's and the admission webhook's metrics for the
//! live charts (`live`).
//!
//! Safety: it listens on loopback unless given a token; every action that
//! changes something (a rollout's promote, pause, resume, abort, undo) is a
//! POST that must come from the console's own pages (same origin, the page's
//! CSRF token) and carry the token when one is set (401 without it, 403
//! from another site). Docs: `docs/console.md`.

pub mod graph;
mod live;
mod pages;
mod svg;
mod web;

pub use graph::{Current, Graph};

use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use web::{Body, Fail, Query};

/// Largest action form accepted.
const MAX_FORM_BYTES: usize = 16 << 10;

/// How the console runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub scan: discover::ScanOptions,
    pub listen: SocketAddr,
    /// A collector's (or any Jaeger-compatible) query API, for traces.
    pub collector: Option<String>,
    /// The gateway's admin API, for live routing state and traffic.
    pub gateway_admin: Option<String>,
    pub gateway_token: Option<String>,
    /// The admission webhook's `/metrics`, for its decisions.
    pub webhook_metrics: Option<String>,
    /// The CA the webhook's certificate is checked against, read at every scrape.
    pub webhook_ca: Option<PathBuf>,
    /// A folder of JSON-lines logs (the lab's `DIR/logs`), for a trace's log lines.
    pub logs: Option<PathBuf>,
    /// Required on every action when set; required to listen beyond loopback.
    pub token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "--listen {0} is not a loopback address: give --token-file so that actions need a token"
    )]
    NeedsToken(SocketAddr),
    #[error("binding {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Load(String),
    #[error("starting: {0}")]
    Runtime(std::io::Error),
}

/// State every request sees.
#[derive(Debug)]
pub struct Ctx {
    pub current: Arc<Current>,
    pub options: Options,
    /// Embedded in every page; an action's form must carry it back.
    pub csrf: String,
    /// Traffic and admission decisions, sampled in the background.
    pub live: Arc<live::Live>,
}

/// A running console.
#[derive(Debug)]
pub struct Console {
    pub address: SocketAddr,
    pub ctx: Arc<Ctx>,
}

impl Console {
    /// Scans the fleet, starts watching it and binds the listener on the current runtime.
    ///
    /// # Errors
    /// A non-loopback address without a token, a fleet that cannot be
    /// scanned, or a listener that cannot be bound.
    pub async fn start(options: Options) -> Result<Console, Error> {
        if !options.listen.ip().is_loopback() && options.token.is_none() {
            return Err(Error::NeedsToken(options.listen));
        }
        let listener = TcpListener::bind(options.listen)
            .await
            .map_err(|source| Error::Bind {
                address: options.listen,
                source,
            })?;
        let address = listener.local_addr().map_err(Error::Runtime)?;
        let scan = options.scan.clone();
        let current = tokio::task::spawn_blocking(move || graph::load(&scan))
            .await
            .map_err(|e| Error::Load(e.to_string()))?
            .map_err(Error::Load)?;
        let sources = live::Sources {
            gateway: options
                .gateway_admin
                .clone()
                .map(|url| (url, options.gateway_token.clone())),
            webhook: options
                .webhook_metrics
                .clone()
                .map(|url| (url, options.webhook_ca.clone())),
        };
        let live = Arc::new(live::Live::new(&sources));
        if sources.gateway.is_some() || sources.webhook.is_some() {
            live::spawn(&live, sources).map_err(Error::Runtime)?;
        }
        let ctx = Arc::new(Ctx {
            current,
            options,
            csrf: web::random_hex(16).map_err(Error::Runtime)?,
            live,
        });
        let served = ctx.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    // Out of file descriptors, usually: back off instead of spinning.
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                };
                let ctx = served.clone();
                let service = service_fn(move |req| {
                    let ctx = ctx.clone();
                    async move { Ok::<_, Infallible>(handle(ctx, req).await) }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Console { address, ctx })
    }
}

/// Runs a console on its own runtime until Ctrl-C or SIGTERM; `on_started`
/// sees it once the fleet is loaded and the listener bound.
///
/// # Errors
/// As [`Console::start`], or a runtime that cannot start.
pub fn run(options: Options, on_started: impl FnOnce(&Console)) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    runtime.block_on(async {
        let stop = signals::stop().map_err(Error::Runtime)?;
        let console = Console::start(options).await?;
        on_started(&console);
        stop.await;
        Ok::<_, Error>(())
    })?;
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(())
}

/// The state directory the console reads records from (rollouts.db).
pub fn state_dir(ctx: &Ctx) -> PathBuf {
    ctx.current.get().state_dir.clone()
}

async fn handle(ctx: Arc<Ctx>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = Query::parse(req.uri().query().unwrap_or(""));
    let method = req.method().clone();
    let headers = req.headers().clone();
    let generation = ctx.current.get().generation;
    match (&method, path.as_str()) {
        (&Method::GET | &Method::HEAD, "/healthz") => {
            return web::respond(StatusCode::OK, "text/plain", "ok\n");
        }
        (&Method::GET | &Method::HEAD, "/assets/console.css") => {
            return web::respond(StatusCode::OK, "text/css", web::CSS);
        }
        (&Method::GET | &Method::HEAD, "/assets/console.js") => {
            return web::respond(StatusCode::OK, "text/javascript", web::JS);
        }
        _ => {}
    }
    let api = path == "/api" || path.starts_with("/api/");
    let fail = |f: Fail| {
        if api {
            web::fail_json(&f)
        } else {
            web::fail_page(&f, generation, &ctx.csrf)
        }
    };
    if method == Method::POST {
        let body = match Limited::new(req.into_body(), MAX_FORM_BYTES)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => return fail(Fail::BadRequest("unreadable or oversized form".into())),
        };
        return match action(&ctx, &path, &headers, &body).await {
            Ok(response) => response,
            Err(f) => fail(f),
        };
    }
    if method != Method::GET && method != Method::HEAD {
        let mut r = fail(Fail::BadRequest(format!(
            "{method} is not answered here; pages are GET, actions POST"
        )));
        *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST"));
        return r;
    }
    let route = if api {
        path.strip_prefix("/api").unwrap_or("").to_string()
    } else {
        path.clone()
    };
    let segments: Vec<String> = route
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(web::decode)
        .collect();
    let worker = ctx.clone();
    let format = query.get("format").map(str::to_string);
    let answered = tokio::task::spawn_blocking(move || {
        let graph = worker.current.get();
        pages::route(&worker, &graph, &segments, &query, api)
    })
    .await;
    let page = match answered {
        Ok(Ok(page)) => page,
        Ok(Err(f)) => return fail(f),
        Err(_) => return fail(Fail::Internal("the page failed to render".into())),
    };
    match page {
        pages::Answer::Redirect(to) => web::see_other(&to),
        pages::Answer::Page(page) if api => match (format.as_deref(), &page.report) {
            (None | Some("json"), _) => match &page.json_text {
                Some(text) => web::respond(StatusCode::OK, "application/json", text.clone()),
                None => web::json_response(StatusCode::OK, &page.json),
            },
            (Some("table"), Some(report)) => web::respond(
                StatusCode::OK,
                "text/plain; charset=utf-8",
                model::report::render_table(report),
            ),
            (Some("markdown"), Some(report)) => web::respond(
                StatusCode::OK,
                "text/markdown; charset=utf-8",
                model::report::render_markdown(report),
            ),
            (Some(other), _) => fail(Fail::BadRequest(format!(
                "format={other}: this endpoint answers json{}",
                if page.report.is_some() {
                    ", table or markdown"
                } else {
                    ""
                }
            ))),
        },
        pages::Answer::Page(page) => web::html_response(
            StatusCode::OK,
            web::frame(&page.title, &page.html, generation, &ctx.csrf),
        ),
    }
}

/// A POST: the login form, or a rollout action.
async fn action(
    ctx: &Arc<Ctx>,
    path: &str,
    headers: &hyper::HeaderMap,
    body: &[u8],
) -> Result<Response<Body>, Fail> {
    web::same_origin(headers)?;
    let form = web::form(body);
    if path == "/login" {
        let Some(token) = &ctx.options.token else {
            return Ok(web::see_other("/"));
        };
        if !form
            .get("token")
            .is_some_and(|t| web::same_secret(t, token))
        {
            return Err(Fail::Unauthorized("wrong token".into()));
        }
        let mut r = web::see_other("/rollouts");
        if let Ok(v) = HeaderValue::from_str(&format!(
            "bulkhead-token={token}; Path=/; HttpOnly; SameSite=Strict"
        )) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        return Ok(r);
    }
    if let Some(token) = &ctx.options.token {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let given = bearer.or_else(|| web::cookie(headers, "bulkhead-token"));
        if !given.is_some_and(|g| web::same_secret(g, token)) {
            return Err(Fail::Unauthorized(
                "this action needs the console's token (Authorization: Bearer, or log in)".into(),
            ));
        }
    }
    if !form
        .get("csrf")
        .is_some_and(|c| web::same_secret(c, &ctx.csrf))
    {
        return Err(Fail::Forbidden(
            "the form's CSRF token is missing or stale; reload the page and try again".into(),
        ));
    }
    let segments: Vec<String> = path.trim_matches('/').split('/').map(web::decode).collect();
    let ["rollouts", id, verb] = segments.iter().map(String::as_str).collect::<Vec<_>>()[..] else {
        return Err(Fail::not_found(format!("no action at {path}"), ""));
    };
    let id: i64 = id
        .parse()
        .map_err(|_| Fail::BadRequest(format!("rollout id {id:?} is not a number")))?;
    let service = form.get("service").map(str::to_string);
    let event = match verb {
        "promote" => rollout::Event::Promote { service },
        "pause" => rollout::Event::Pause,
        "resume" => rollout::Event::Resume,
        "abort" => rollout::Event::Abort { service },
        "undo" => rollout::Event::Undo {
            service: Some(service.ok_or_else(|| {
                Fail::BadRequest("undo needs the service to roll back (form field service)".into())
            })?),
        },
        other => {
            return Err(Fail::BadRequest(format!(
                "unknown rollout action {other:?}: promote, pause, resume, abort or undo"
            )));
        }
    };
    let dir = state_dir(ctx);
    tokio::task::spawn_blocking(move || pages::rollouts::act(&dir, id, event))
        .await
        .map_err(|_| Fail::Internal("the action failed".into()))??;
    Ok(web::see_other(&format!("/rollouts/{id}")))
}

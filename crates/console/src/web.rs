//! Requests and answers: query strings, forms, the HTML page frame, the
//! safety checks of actions (token, same origin, CSRF token), and errors
//! that become 400 and 404 pages.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, combinators::BoxBody};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::{Value as Json, json};
use std::convert::Infallible;
use std::fmt::Write as _;

pub type Body = BoxBody<Bytes, Infallible>;

pub const CSS: &str = include_str!("../assets/console.css");
pub const JS: &str = include_str!("../assets/console.js");

/// Rows of a table page shown at once (`?page=N`, 1-based, picks which).
pub const PAGE_SIZE: usize = 100;

/// What a handler could not answer, as the page and the API show it.
#[derive(Debug)]
pub enum Fail {
    /// 400: a query parameter or form field is missing or malformed.
    BadRequest(String),
    /// 404: no such service, CVE, trace, rollout; `search` prefills the search box.
    NotFound { what: String, search: String },
    /// 401: an action without the console's token.
    Unauthorized(String),
    /// 403: an action from another site, or without the page's CSRF token.
    Forbidden(String),
    /// 502: a backend (collector, gateway admin API) did not answer.
    Upstream(String),
    /// 500: the state database or another local failure.
    Internal(String),
}

impl Fail {
    pub fn status(&self) -> StatusCode {
        match self {
            Fail::BadRequest(_) => StatusCode::BAD_REQUEST,
            Fail::NotFound { .. } => StatusCode::NOT_FOUND,
            Fail::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Fail::Forbidden(_) => StatusCode::FORBIDDEN,
            Fail::Upstream(_) => StatusCode::BAD_GATEWAY,
            Fail::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Fail::BadRequest(m)
            | Fail::Unauthorized(m)
            | Fail::Forbidden(m)
            | Fail::Upstream(m)
            | Fail::Internal(m) => m,
            Fail::NotFound { what, .. } => what,
        }
    }

    pub fn not_found(what: impl Into<String>, search: impl Into<String>) -> Fail {
        Fail::NotFound {
            what: what.into(),
            search: search.into(),
        }
    }
}

/// A rendered page: its title, HTML body, and the same content as JSON.
#[derive(Debug)]
pub struct Page {
    pub title: String,
    pub html: String,
    pub json: Json,
    /// An impact report the API also renders as `?format=table|markdown`, as the CLI prints it.
    pub report: Option<model::ImpactReport>,
    /// The exact JSON text the API answers, when it must be what the CLI
    /// prints (fields in the CLI's order); `json` otherwise.
    /// Shared, not copied, by each answer: a CVE's can be megabytes.
    pub json_text: Option<Bytes>,
}

impl Page {
    pub fn new(title: impl Into<String>, html: String, json: Json) -> Page {
        Page {
            title: title.into(),
            html,
            json,
            report: None,
            json_text: None,
        }
    }
}

/// The query string as ordered pairs, percent- and plus-decoded.
#[derive(Debug, Default)]
pub struct Query(pub Vec<(String, String)>);

impl Query {
    pub fn parse(query: &str) -> Query {
        Query(
            query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (decode(k), decode(v))
                })
                .collect(),
        )
    }

    /// The first non-empty value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.trim())
    }

    /// `?page=N`, 1-based, default 1.
    pub fn page(&self) -> Result<usize, Fail> {
        match self.get("page") {
            None => Ok(1),
            Some(v) => v.parse::<usize>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                Fail::BadRequest(format!("page={v}: expected a page number from 1"))
            }),
        }
    }

    /// Only these parameters are understood; anything else is a 400 that names it.
    pub fn only(&self, known: &[&str]) -> Result<(), Fail> {
        match self
            .0
            .iter()
            .find(|(k, _)| !known.contains(&k.as_str()) && k != "format")
        {
            Some((k, _)) => Err(Fail::BadRequest(format!(
                "unknown query parameter {k:?}; this page takes {}",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))),
            None => Ok(()),
        }
    }
}

/// Percent-decoding with `+` as a space, as forms and query strings write them.
pub fn decode(text: &str) -> String {
    http_client::decode(&text.replace('+', " "))
}

/// HTML-escapes text for element content and quoted attributes.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a path segment or query value.
pub fn enc(text: &str) -> String {
    http_client::encode(text)
}

/// A table: `headers`, rows of HTML cells; `filterable` gets the filter box
/// and every header sorts (console.js).
pub fn table(id: &str, headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!(
        "<input class=\"filter\" data-table=\"{id}\" placeholder=\"filter rows\" aria-label=\"filter {id}\">\
         <table id=\"{id}\" class=\"sortable\"><thead><tr>"
    );
    for h in headers {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// The slice of `items` page `page` shows, and the pager's HTML (links keep
/// the other query parameters of `base`, a path with its query so far).
pub fn paginate<'a, T>(items: &'a [T], page: usize, base: &str) -> Result<(&'a [T], String), Fail> {
    let pages = items.len().div_ceil(PAGE_SIZE).max(1);
    if page > pages {
        return Err(Fail::BadRequest(format!(
            "page={page}: there are {pages} page(s)"
        )));
    }
    let start = (page - 1) * PAGE_SIZE;
    let end = (start + PAGE_SIZE).min(items.len());
    let sep = if base.contains('?') { '&' } else { '?' };
    let mut pager = format!(
        "<p class=\"pager\">rows {}–{} of {} · page {page} of {pages}",
        if items.is_empty() { 0 } else { start + 1 },
        end,
        items.len()
    );
    if page > 1 {
        let _ = write!(
            pager,
            " · <a rel=\"prev\" href=\"{}\">previous</a>",
            esc(&format!("{base}{sep}page={}", page - 1))
        );
    }
    if page < pages {
        let _ = write!(
            pager,
            " · <a rel=\"next\" href=\"{}\">next</a>",
            esc(&format!("{base}{sep}page={}", page + 1))
        );
    }
    pager.push_str("</p>");
    Ok((&items[start..end], pager))
}

const NAV: [(&str, &str); 9] = [
    ("/", "Fleet"),
    ("/impact", "Impact"),
    ("/cve", "CVE"),
    ("/templates", "Templates"),
    ("/policy", "Policy"),
    ("/rollouts", "Rollouts"),
    ("/traces", "Traces"),
    ("/hosts", "Hosts"),
    ("/api", "API"),
];

/// The whole HTML document around a page's body.
pub fn frame(title: &str, body: &str, generation: u64, csrf: &str) -> String {
    let mut nav = String::new();
    for (href, name) in NAV {
        let _ = write!(nav, "<a href=\"{href}\">{name}</a>");
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"csrf-token\" content=\"{csrf}\">\
         <title>{t} · bulkhead</title><link rel=\"stylesheet\" href=\"/assets/console.css\"></head>\
         <body data-generation=\"{generation}\"><header><a class=\"brand\" href=\"/\">bulkhead</a><nav>{nav}</nav>\
         <form class=\"search\" action=\"/search\"><input name=\"q\" placeholder=\"service, CVE, image\" aria-label=\"search\"></form>\
         <span id=\"live\" title=\"fleet graph generation\">gen {generation}</span></header>\
         <main><h1>{t}</h1>{body}</main><script src=\"/assets/console.js\"></script></body></html>",
        t = esc(title),
    )
}

pub fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `value` as the CLI's `--json` prints it: pretty, with a final newline.
pub fn cli_json(value: &impl serde::Serialize) -> Option<String> {
    serde_json::to_string_pretty(value).ok().map(|t| t + "\n")
}

pub fn json_response(status: StatusCode, value: &Json) -> Response<Body> {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".to_string());
    respond(status, "application/json", format!("{text}\n"))
}

pub fn html_response(status: StatusCode, html: String) -> Response<Body> {
    respond(status, "text/html; charset=utf-8", html)
}

/// The 4xx/5xx page: what was wrong, and a search box on a 404.
pub fn fail_page(fail: &Fail, generation: u64, csrf: &str) -> Response<Body> {
    let status = fail.status();
    let mut body = format!("<p class=\"error\">{}</p>", esc(fail.message()));
    if let Fail::NotFound { search, .. } = fail {
        let _ = write!(
            body,
            "<form action=\"/search\"><label>Search the fleet <input name=\"q\" value=\"{}\" autofocus></label> <button>Search</button></form>",
            esc(search)
        );
    }
    if let Fail::Unauthorized(_) = fail {
        body.push_str("<p><a href=\"/login\">Enter the console's token</a></p>");
    }
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("error")
    );
    html_response(status, frame(&title, &body, generation, csrf))
}

pub fn fail_json(fail: &Fail) -> Response<Body> {
    json_response(
        fail.status(),
        &json!({"error": {"status": fail.status().as_u16(), "message": fail.message()}}),
    )
}

/// A 303 to `location` (after an action).
pub fn see_other(location: &str) -> Response<Body> {
    let mut r = respond(StatusCode::SEE_OTHER, "text/plain", "");
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Compares in time that depends only on the lengths.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Refuses a state-changing request that did not come from this console's
/// own pages: `Sec-Fetch-Site` other than same-origin, or an `Origin` (else
/// `Referer`) that is not `http://HOST` of the request. A request naming
/// neither is refused too: browsers send `Origin` on every cross-site POST,
/// and the console's own forms always have one.
pub fn same_origin(headers: &HeaderMap) -> Result<(), Fail> {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if let Some(site) = text("sec-fetch-site")
        && site != "same-origin"
        && site != "none"
    {
        return Err(Fail::Forbidden(format!(
            "cross-site request refused (Sec-Fetch-Site: {site})"
        )));
    }
    let host =
        text("host").ok_or_else(|| Fail::Forbidden("a request without Host is refused".into()))?;
    let expected = format!("http://{host}");
    let origin = text("origin").map(str::to_string).or_else(|| {
        text("referer").map(|r| {
            let after = r.find("://").map_or(0, |i| i + 3);
            let end = r[after..].find('/').map_or(r.len(), |i| after + i);
            r[..end].to_string()
        })
    });
    match origin {
        Some(o) if o == expected => Ok(()),
        Some(o) => Err(Fail::Forbidden(format!(
            "cross-site request refused: it came from {o}, not {expected}"
        ))),
        None => Err(Fail::Forbidden(
            "request refused: neither Origin nor Referer says it came from this console".into(),
        )),
    }
}

/// `application/x-www-form-urlencoded` fields.
pub fn form(body: &[u8]) -> Query {
    Query::parse(&String::from_utf8_lossy(body))
}

/// Fresh random hex from the kernel, for CSRF tokens.
pub fn random_hex(bytes: usize) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode_and_refuse_unknown_parameters() {
        let q = Query::parse("services=a%2Cb&x=1+2&page=2");
        assert_eq!(q.get("services"), Some("a,b"));
        assert_eq!(q.get("x"), Some("1 2"));
        assert_eq!(q.page().ok(), Some(2));
        let err = q.only(&["services", "page"]).unwrap_err();
        assert!(err.message().contains("\"x\""), "{}", err.message());
        assert!(Query::parse("page=0").page().is_err());
        assert!(Query::parse("page=abc").page().is_err());
    }

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn origin_checks() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("127.0.0.1:8080"));
        assert!(matches!(same_origin(&h), Err(Fail::Forbidden(_))));
        h.insert("origin", HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(same_origin(&h).is_ok());
        h.insert("origin", HeaderValue::from_static("http://evil.example"));
        assert!(matches!(same_origin(&h), Err(Fail::Forbidden(_))));
        h.remove("origin");
        h.insert(
            "referer",
            HeaderValue::from_static("http://127.0.0.1:8080/rollouts/1"),
        );
        assert!(same_origin(&h).is_ok());
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(matches!(same_origin(&h), Err(Fail::Forbidden(_))));
    }

    #[test]
    fn pages_of_a_hundred() {
        let items: Vec<usize> = (0..250).collect();
        let (rows, pager) = paginate(&items, 3, "/?q=a").unwrap();
        assert_eq!(rows, &items[200..250]);
        assert!(pager.contains("href=\"/?q=a&amp;page=2\""), "{pager}");
        assert!(paginate(&items, 4, "/").is_err());
    }
}

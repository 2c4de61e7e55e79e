//! The webhook's HTTP/1.1: one task per TLS connection reads a request,
//! answers it, and reads the next (keep-alive; pipelined requests are answered
//! in order).
//!
//! The webhook's traffic is narrow: the API server POSTs a review of a few
//! kilobytes with a `Content-Length` (it speaks HTTP/1.1 to admission
//! webhooks) and waits for a JSON answer. A general server's machinery (header
//! maps, body streams, a service stack) cost several microseconds per review,
//! a sizeable share of a review that is decided in tens of them. Here a head
//! is parsed in place with httparse, the body is a slice of the same buffer,
//! and an answer is written with one call.
//!
//! What is refused, and how:
//! - a head over 64 KiB or with over 64 fields: 431, connection closed;
//! - a body over the declared limit: 413, connection closed;
//! - `Transfer-Encoding` (a body without a length): 411, connection closed;
//! - a syntax error or two different lengths: 400, connection closed;
//! - a request not read in full within 30 s of waiting for it (including an
//!   idle keep-alive connection): the connection is closed without an answer.

use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::watch;
use tokio::time::Instant;

/// The largest request head read.
const MAX_HEAD: usize = 64 * 1024;
/// The most header fields in a head.
const MAX_FIELDS: usize = 64;
/// How long a connection may take to deliver its next request in full.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes asked of the stream per read; a review and its head fit in one.
const READ_SIZE: usize = 16 * 1024;

/// One request, borrowed from the connection's buffer.
#[derive(Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The target without its query.
    pub path: &'a str,
    pub body: &'a [u8],
}

/// The answer to one request.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into().into_bytes(),
        }
    }
}

/// What the connection asks of the application for each request.
pub(crate) trait Handler {
    fn handle(&self, request: &Request<'_>) -> Response;

    /// A request that could not be read and was answered here (the `status`
    /// says why); the application counts it.
    fn refused(&self, status: u16);
}

/// Serves requests on `stream` until the client closes, an error, the request
/// timeout, or `stop` turns true (a request being read or answered is
/// finished first, and its answer says `connection: close`).
pub(crate) async fn serve<S, H>(mut stream: S, handler: &H, mut stop: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    let mut input: Vec<u8> = Vec::with_capacity(READ_SIZE);
    let mut output: Vec<u8> = Vec::with_capacity(1024);
    loop {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        let read = match next_request(&mut stream, &mut input, deadline, &mut stop).await {
            Next::Request(read) => read,
            Next::Refuse(status, message) => {
                handler.refused(status);
                let response = Response::text(status, message);
                write(
                    &mut stream,
                    &mut output,
                    &response,
                    Framing {
                        close: true,
                        body: true,
                    },
                )
                .await;
                return;
            }
            Next::Close => return,
        };
        let close = read.close || *stop.borrow();
        let request = Request {
            method: read.method(&input),
            path: read.path(&input),
            body: &input[read.head..read.end],
        };
        let response = handler.handle(&request);
        let framing = Framing {
            close,
            // The answer to HEAD has the head GET would have, and no body (RFC 9110 9.3.2).
            body: request.method != "HEAD",
        };
        if !write(&mut stream, &mut output, &response, framing).await || close {
            return;
        }
        input.drain(..read.end);
    }
}

/// Where a fully read request lies in the buffer.
#[derive(Debug)]
struct Read {
    method: (usize, usize),
    path: (usize, usize),
    /// End of the head, start of the body.
    head: usize,
    /// End of the body.
    end: usize,
    /// The client asked to close after this request.
    close: bool,
}

impl Read {
    fn method<'a>(&self, input: &'a [u8]) -> &'a str {
        text(&input[self.method.0..self.method.1])
    }

    fn path<'a>(&self, input: &'a [u8]) -> &'a str {
        let target = text(&input[self.path.0..self.path.1]);
        target.split_once('?').map_or(target, |(path, _)| path)
    }
}

/// Reads `input` as the start of a connection, without I/O: `Ok(Some(request))`
/// for a whole request, `Ok(None)` while one is incomplete. `cargo xtask fuzz`
/// feeds it mutated requests.
///
/// # Errors
/// The status and message a refused request is answered with.
pub fn read_request(input: &[u8]) -> Result<Option<Request<'_>>, (u16, String)> {
    match parse(input) {
        Parsed::Request(read, _) if read.end <= input.len() => Ok(Some(Request {
            method: read.method(input),
            path: read.path(input),
            body: &input[read.head..read.end],
        })),
        Parsed::Request(..) | Parsed::Partial => Ok(None),
        Parsed::Refuse(status, message) => Err((status, message)),
    }
}

/// httparse checks that method and target are visible ASCII.
fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or("")
}

enum Next {
    Request(Read),
    Refuse(u16, String),
    Close,
}

/// Reads until `input` holds a whole request.
async fn next_request<S>(
    stream: &mut S,
    input: &mut Vec<u8>,
    deadline: Instant,
    stop: &mut watch::Receiver<bool>,
) -> Next
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut sent_continue = false;
    loop {
        match parse(input) {
            Parsed::Request(read, _) if read.end <= input.len() => return Next::Request(read),
            Parsed::Request(read, expects_continue) => {
                if expects_continue && !sent_continue {
                    sent_continue = true;
                    let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
                    if stream.write_all(interim).await.is_err() || stream.flush().await.is_err() {
                        return Next::Close;
                    }
                }
                input.reserve(read.end - input.len());
            }
            Parsed::Partial => {}
            Parsed::Refuse(status, message) => return Next::Refuse(status, message),
        }
        if input.capacity() - input.len() < READ_SIZE / 4 {
            input.reserve(READ_SIZE);
        }
        // An idle connection closes at once on shutdown; one with part of a
        // request buffered gets to finish it.
        let idle = input.is_empty();
        let n = tokio::select! {
            // The read first: it is usually ready, and then the stop signal is not looked at.
            biased;
            read = tokio::time::timeout_at(deadline, stream.read_buf(input)) => match read {
                Ok(Ok(n)) => n,
                Ok(Err(_)) | Err(_) => return Next::Close,
            },
            _ = stop.wait_for(|stop| *stop), if idle => return Next::Close,
        };
        if n == 0 {
            return Next::Close;
        }
    }
}

enum Parsed {
    /// The head is complete (the body may not be yet); whether the client
    /// waits for `100 Continue` before sending the body.
    Request(Read, bool),
    Partial,
    Refuse(u16, String),
}

fn parse(input: &[u8]) -> Parsed {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut request = httparse::Request::new(&mut fields);
    let head = match request.parse(input) {
        Ok(httparse::Status::Complete(head)) if head <= MAX_HEAD => head,
        Ok(httparse::Status::Complete(_)) => {
            return Parsed::Refuse(431, format!("request head over {MAX_HEAD} bytes\n"));
        }
        Ok(httparse::Status::Partial) if input.len() > MAX_HEAD => {
            return Parsed::Refuse(431, format!("request head over {MAX_HEAD} bytes\n"));
        }
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Refuse(431, format!("over {MAX_FIELDS} header fields\n"));
        }
        Err(e) => return Parsed::Refuse(400, format!("malformed HTTP request: {e}\n")),
    };
    let (Some(method), Some(target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return Parsed::Refuse(400, "malformed HTTP request\n".to_string());
    };
    let mut length: Option<usize> = None;
    let mut close = version == 0;
    let mut expects_continue = false;
    for field in request.headers.iter() {
        let value = field.value;
        if field.name.eq_ignore_ascii_case("content-length") {
            let parsed = text(value).trim().parse::<usize>().ok();
            match (parsed, length) {
                (None, _) => return Parsed::Refuse(400, "invalid Content-Length\n".to_string()),
                (Some(n), Some(m)) if n != m => {
                    return Parsed::Refuse(
                        400,
                        "two different Content-Length fields\n".to_string(),
                    );
                }
                (Some(n), _) => length = Some(n),
            }
        } else if field.name.eq_ignore_ascii_case("transfer-encoding") {
            return Parsed::Refuse(
                411,
                "send the AdmissionReview with a Content-Length, not Transfer-Encoding\n"
                    .to_string(),
            );
        } else if field.name.eq_ignore_ascii_case("connection") {
            for token in text(value).split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") && version == 0 {
                    close = false;
                }
            }
        } else if field.name.eq_ignore_ascii_case("expect") {
            expects_continue = text(value).trim().eq_ignore_ascii_case("100-continue");
        }
    }
    let length = length.unwrap_or(0);
    if length > crate::MAX_BODY {
        return Parsed::Refuse(
            413,
            format!(
                "malformed AdmissionReview: the body exceeds {} bytes\n",
                crate::MAX_BODY
            ),
        );
    }
    let start = input.as_ptr() as usize;
    let span = |s: &str| {
        let from = s.as_ptr() as usize - start;
        (from, from + s.len())
    };
    let read = Read {
        method: span(method),
        path: span(target),
        head,
        end: head + length,
        close,
    };
    Parsed::Request(read, expects_continue)
}

/// How an answer is sent.
#[derive(Debug, Clone, Copy)]
struct Framing {
    /// Says `connection: close` (the connection ends after it).
    close: bool,
    /// Carries its body (not so for HEAD).
    body: bool,
}

/// Writes `response` in one piece; false when the client is gone.
async fn write<S>(
    stream: &mut S,
    output: &mut Vec<u8>,
    response: &Response,
    framing: Framing,
) -> bool
where
    S: AsyncWrite + Unpin,
{
    output.clear();
    output.extend_from_slice(b"HTTP/1.1 ");
    output.extend_from_slice(status_line(response.status).as_bytes());
    output.extend_from_slice(b"\r\ncontent-type: ");
    output.extend_from_slice(response.content_type.as_bytes());
    output.extend_from_slice(b"\r\ncontent-length: ");
    output.extend_from_slice(response.body.len().to_string().as_bytes());
    if framing.close {
        output.extend_from_slice(b"\r\nconnection: close");
    }
    output.extend_from_slice(b"\r\n\r\n");
    if framing.body {
        output.extend_from_slice(&response.body);
    }
    stream.write_all(output).await.is_ok() && stream.flush().await.is_ok()
}

fn status_line(status: u16) -> &'static str {
    match status {
        200 => "200 OK",
        400 => "400 Bad Request",
        404 => "404 Not Found",
        405 => "405 Method Not Allowed",
        411 => "411 Length Required",
        413 => "413 Content Too Large",
        431 => "431 Request Header Fields Too Large",
        _ => "500 Internal Server Error",
    }
}

#[cfg(test)]
mod tests;

//! The client against canned responses: URL grammar, body framing, and
//! errors against servers that refuse, stay silent or answer garbage.

use super::*;
use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;

#[test]
fn urls_parse_or_say_why_not() {
    let ok = |url: &str, host: &str, port: u16, target: &str| {
        let parsed = Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(
            (parsed.host.as_str(), parsed.port, parsed.target.as_str()),
            (host, port, target),
            "{url}"
        );
    };
    ok("http://127.0.0.1:5000", "127.0.0.1", 5000, "/");
    ok("http://registry/v2/", "registry", 80, "/v2/");
    ok("http://[::1]:9901/state?x=1", "::1", 9901, "/state?x=1");
    ok("http://[::1]/a", "::1", 80, "/a");
    ok(
        "https://registry.example.com",
        "registry.example.com",
        443,
        "/",
    );
    ok(
        "https://127.0.0.1:8443/api/v3",
        "127.0.0.1",
        8443,
        "/api/v3",
    );
    assert!(Url::parse("https://api.github.com").unwrap().tls);
    assert!(!Url::parse("http://api.github.com").unwrap().tls);
    for (url, expect) in [
        (
            "ftp://registry.example.com",
            "only http:// and https:// are supported (scheme ftp)",
        ),
        ("registry:5000", "not an http:// URL"),
        ("http://host:port/", "invalid port \"port\""),
        ("http://:80/", "no host"),
        ("http://[]:80/", "no host"),
        ("http://[::1/", "unclosed [ in the host"),
        ("http://[::1]x/", "unexpected \"x\" after the host"),
    ] {
        let err = Url::parse(url).unwrap_err();
        assert_eq!(err, format!("{url}: {expect}"));
    }
}

#[test]
fn urls_print_with_their_authority_and_target() {
    for url in [
        "http://127.0.0.1:5000/v2/",
        "http://[::1]:80/a?b=c",
        "https://api.github.com:443/repos",
    ] {
        assert_eq!(Url::parse(url).unwrap().to_string(), url);
    }
    assert_eq!(
        Url::parse("http://collector").unwrap().to_string(),
        "http://collector:80/"
    );
}

#[test]
fn bodies_are_framed_by_length_chunks_or_the_connection() {
    for (raw, head_only, status, body) in [
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello-extra",
            false,
            200,
            "hello",
        ),
        (
            "HTTP/1.1 200 OK\r\n\r\nuntil close",
            false,
            200,
            "until close",
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nTrailer: x\r\n\r\n",
            false,
            200,
            "hello, world",
        ),
        (
            "HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n0\r\n\r\n",
            false,
            200,
            "",
        ),
        ("HTTP/1.0 204 No Content\r\n\r\nignored", false, 204, ""),
        ("HTTP/1.1 304 Not Modified\r\n\r\nignored", false, 304, ""),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
            true,
            200,
            "",
        ),
    ] {
        let r =
            parse_response(raw.as_bytes(), head_only).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
        assert_eq!(
            (r.status, r.body.as_slice()),
            (status, body.as_bytes()),
            "{raw:?}"
        );
    }
}

#[test]
fn malformed_responses_say_what_is_wrong() {
    for (raw, expect) in [
        ("HTTP/1.1 200 OK\r\nContent-Length: 5", "no end of headers"),
        ("SSH-2.0-OpenSSH\r\n\r\n", "status line \"SSH-2.0-OpenSSH\""),
        ("HTTP/1.1 abc\r\n\r\n", "status line \"HTTP/1.1 abc\""),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort",
            "body truncated: 5 of 9 bytes",
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "bad chunk size \"zz\"",
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nhello\r\n",
            "truncated chunk",
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
            "truncated chunk size",
        ),
    ] {
        assert_eq!(
            parse_response(raw.as_bytes(), false).unwrap_err(),
            expect,
            "{raw:?}"
        );
    }
}

#[test]
fn headers_are_found_by_name_in_any_case() {
    let r = parse_response(
        b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=x\r\nX-A: 1\r\nx-a: 2\r\n\r\n",
        false,
    )
    .unwrap();
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=x"));
    assert_eq!(r.header("X-A"), Some("1"));
    assert_eq!(r.header("missing"), None);
}

#[test]
fn values_are_percent_encoded_and_tokens_presented_as_bearer() {
    for (value, expect) in [
        ("sha256:ab", "sha256%3Aab"),
        ("a b/c?d=e&f", "a%20b%2Fc%3Fd%3De%26f"),
        ("Az09-_.~", "Az09-_.~"),
        ("é", "%C3%A9"),
    ] {
        assert_eq!(encode(value), expect, "{value:?}");
    }
    assert_eq!(bearer("t0k"), ("Authorization", "Bearer t0k".to_string()));
}

#[test]
fn values_are_percent_decoded_and_stray_percents_kept() {
    for (text, expect) in [
        ("sha256%3Aab", "sha256:ab"),
        ("a%20b%2Fc%3Fd%3De%26f", "a b/c?d=e&f"),
        ("%C3%A9", "é"),
        ("a+b", "a+b"),
        ("100%", "100%"),
        ("%zz%4", "%zz%4"),
        ("%FF", "\u{FFFD}"),
    ] {
        assert_eq!(decode(text), expect, "{text:?}");
    }
}

#[test]
fn a_response_is_complete_by_its_framing_not_by_the_connection_closing() {
    let complete = |raw: &str, head_only: bool| {
        let end = raw.find("\r\n\r\n").expect("a head");
        Framing::of(&raw.as_bytes()[..end], end + 4, head_only).complete(raw.as_bytes())
    };
    for (raw, head_only, expect) in [
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
            false,
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{",
            false,
            false,
        ),
        ("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true, true),
        ("HTTP/1.1 204 No Content\r\n\r\n", false, true),
        ("HTTP/1.1 200 OK\r\n\r\nuntil close", false, false),
        ("garbage\r\n\r\n", false, false),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            false,
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX: 1\r\n\r\n",
            false,
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n",
            false,
            false,
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nok",
            false,
            false,
        ),
    ] {
        assert_eq!(complete(raw, head_only), expect, "{raw:?}");
    }
}

#[test]
fn a_server_that_keeps_the_connection_open_still_answers() {
    let (url, _seen) = serve_once_then_hold(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
    );
    let response = request("POST", &url, &[], b"{}", Duration::from_secs(30)).expect("answer");
    assert_eq!(
        (response.status, response.body.as_slice()),
        (200, &b"{}"[..])
    );
}

/// A one-connection server on loopback: reads the request head, sends it to
/// the test, answers `answer` (or nothing, holding the connection, for `None`).
fn serve_once(answer: Option<&'static str>) -> (Url, std::sync::mpsc::Receiver<String>) {
    serve(answer, false)
}

fn serve(answer: Option<&'static str>, hold: bool) -> (Url, std::sync::mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = Url::parse(&format!(
        "http://{}/v2/x?y=1",
        listener.local_addr().unwrap()
    ))
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let mut body = vec![0u8; 4];
        if head.contains("Content-Length: 4") {
            reader.read_exact(&mut body).expect("body");
            head.push_str(&String::from_utf8_lossy(&body));
        }
        let _ = tx.send(head);
        match answer {
            Some(text) => {
                let _ = stream.write_all(text.as_bytes());
                if hold {
                    // Until the client hangs up.
                    let _ = reader.read_line(&mut String::new());
                }
            }
            // Hold the connection open until the client gives up.
            None => {
                let _ = reader.read_line(&mut String::new());
            }
        }
    });
    (url, rx)
}

/// Like [`serve_once`], but keeps the connection open after answering.
fn serve_once_then_hold(answer: &'static str) -> (Url, std::sync::mpsc::Receiver<String>) {
    serve(Some(answer), true)
}

#[test]
fn a_request_sends_its_head_and_body_and_reads_the_answer() {
    let (url, seen) = serve_once(Some(
        "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    ));
    let response = request(
        "PUT",
        &url,
        &[bearer("secret")],
        b"data",
        Duration::from_secs(10),
    )
    .expect("request");
    assert_eq!(
        (response.status, response.body.as_slice()),
        (201, &b"ok"[..])
    );
    let head = seen.recv().expect("the server saw the request");
    for line in [
        "PUT /v2/x?y=1 HTTP/1.1\r\n",
        &format!("Host: {}\r\n", url.authority()),
        "Connection: close\r\n",
        "Authorization: Bearer secret\r\n",
        "Content-Length: 4\r\n",
    ] {
        assert!(head.contains(line), "{line:?} in {head:?}");
    }
    assert!(head.ends_with("data"), "{head:?}");
}

#[test]
fn errors_name_the_url() {
    let (url, _seen) = serve_once(None);
    let err = request("GET", &url, &[], b"", Duration::from_millis(200)).unwrap_err();
    assert!(matches!(err, HttpError::Timeout { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!("no answer from {url} within 0.2 s")
    );

    let (url, _seen) = serve_once(Some("garbage\r\n\r\n"));
    let err = request("GET", &url, &[], b"", Duration::from_secs(10)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{url} sent a malformed response: status line \"garbage\"")
    );

    let closed = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let url = Url::parse(&format!("http://{closed}/state")).unwrap();
    let err = request("GET", &url, &[], b"", Duration::from_secs(10)).unwrap_err();
    assert!(matches!(err, HttpError::Connect { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("connecting to http://{closed}/state: ")),
        "{err}"
    );
}

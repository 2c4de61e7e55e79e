use super::*;

#[test]
fn the_endpoint_gets_the_traces_path_once() {
    let check = |base: &str, expect: &str| {
        let url: HttpUrl = base.parse().unwrap();
        assert_eq!(url.with_path_suffix("/v1/traces").unwrap().as_str(), expect);
    };
    check("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces");
    check("http://127.0.0.1:4318/", "http://127.0.0.1:4318/v1/traces");
    check(
        "http://collector:4318/otlp",
        "http://collector:4318/otlp/v1/traces",
    );
    check(
        "http://127.0.0.1:4318/v1/traces",
        "http://127.0.0.1:4318/v1/traces",
    );
}

#[test]
fn urls_are_plain_http() {
    let check = |text: &str, expect: Result<(), &str>| {
        let got = text
            .parse::<HttpUrl>()
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert_eq!(got, expect.map_err(str::to_string), "{text}");
    };
    check("http://127.0.0.1:4001/", Ok(()));
    check("http://payments", Ok(()));
    check(
        "https://127.0.0.1/",
        Err(r#"invalid URL "https://127.0.0.1/": https is not supported: use http://"#),
    );
    check(
        "127.0.0.1:4001",
        Err(r#"invalid URL "127.0.0.1:4001": expected http://HOST:PORT/PATH"#),
    );
    check(
        "/path",
        Err(r#"invalid URL "/path": expected http://HOST:PORT/PATH"#),
    );
}

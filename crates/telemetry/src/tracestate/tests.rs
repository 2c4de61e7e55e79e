use super::*;

/// Every header value of one request in order, and the members or the error.
fn check(headers: &[&str], expect: Result<&[(&str, &str)], TraceStateError>) {
    let got = parse_tracestate(headers.iter().map(|h| h.as_bytes()));
    assert_eq!(
        got.as_deref().map_err(|e| *e),
        expect,
        "tracestate {headers:?}"
    );
}

#[test]
fn members_follow_the_w3c_rules() {
    check(
        &["foo=1,bar=2", "baz=3"],
        Ok(&[("foo", "1"), ("bar", "2"), ("baz", "3")]),
    );
    check(&["", " , foo=a b ,\t"], Ok(&[("foo", "a b")]));
    check(&["t3n4nt@sys=1"], Ok(&[("t3n4nt@sys", "1")]));
    check(&["foo=1", "foo=2"], Ok(&[("foo", "1")]));
    check(&["FOO=1"], Err(TraceStateError::Member("FOO=1")));
    check(&["1foo=1"], Ok(&[("1foo", "1")]));
    check(&["_foo=1"], Err(TraceStateError::Member("_foo=1")));
    check(
        &["foo@longersystemid=1"],
        Ok(&[("foo@longersystemid", "1")]),
    );
    check(&["foo=a,b=c=d"], Err(TraceStateError::Member("b=c=d")));
    check(&["foo"], Err(TraceStateError::Member("foo")));
    check(&["foo=1 x"], Ok(&[("foo", "1 x")]));
    check(
        &[&format!("foo={}", "v".repeat(257))],
        Err(TraceStateError::Member(&format!("foo={}", "v".repeat(257)))),
    );
}

/// `expect`: `Ok(members)` or the error.
fn check_tracestate(headers: &[&str], expect: Result<&[(&str, &str)], TraceStateError>) {
    let got = TraceState::parse(headers.iter().map(|h| h.as_bytes()));
    let expect = expect.map(|members| TraceState {
        members: members
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    });
    assert_eq!(got, expect, "tracestate {headers:?}");
}

#[test]
fn tracestate_rules() {
    use TraceStateError as E;
    let foo: &[(&str, &str)] = &[("foo", "1")];
    check_tracestate(&["foo=1"], Ok(foo));
    check_tracestate(&["foo=1,bar=2"], Ok(&[("foo", "1"), ("bar", "2")]));
    // Several headers combine in order.
    check_tracestate(
        &["foo=1,bar=2", "rojo=1,congo=2", "baz=3"],
        Ok(&[
            ("foo", "1"),
            ("bar", "2"),
            ("rojo", "1"),
            ("congo", "2"),
            ("baz", "3"),
        ]),
    );
    // Empty headers and empty members are allowed.
    check_tracestate(&[""], Ok(&[]));
    check_tracestate(&["foo=1", ""], Ok(foo));
    check_tracestate(&["", "foo=1"], Ok(foo));
    check_tracestate(&["foo=1,,"], Ok(foo));
    check_tracestate(&[" , foo=1 ,\t"], Ok(foo));
    // Optional whitespace around members.
    check_tracestate(
        &["foo=1 \t , \t bar=2, \t baz=3"],
        Ok(&[("foo", "1"), ("bar", "2"), ("baz", "3")]),
    );
    check_tracestate(&["\t foo=1 \t"], Ok(foo));
    // Every allowed key and value character.
    let key = "abcdefghijklmnopqrstuvwxyz0123456789_-*/";
    let value: String = (0x20u8..=0x7e)
        .filter(|&c| c != b',' && c != b'=')
        .map(char::from)
        .collect();
    check_tracestate(&[&format!("{key}={value}")], Ok(&[(key, &value)]));
    let vendor_key = format!("{key}@a-z0-9_-*/");
    check_tracestate(
        &[&format!("{vendor_key}={value}")],
        Ok(&[(&vendor_key, &value)]),
    );
    // Spaces inside a value are fine, but not at its end (that is OWS, trimmed).
    check_tracestate(&["foo=a b"], Ok(&[("foo", "a b")]));
    check_tracestate(&["foo= 1"], Ok(&[("foo", " 1")]));
    // A duplicated key keeps the list, with its first member, also across headers.
    check_tracestate(&["foo=1,foo=1"], Ok(foo));
    check_tracestate(&["foo=1,foo=2"], Ok(foo));
    check_tracestate(&["foo=1", "foo=1"], Ok(foo));
    check_tracestate(&["foo=1", "foo=2,bar=2"], Ok(&[("foo", "1"), ("bar", "2")]));
    // Invalid keys.
    check_tracestate(&["foo =1"], Err(E::Member("foo =1")));
    check_tracestate(&["FOO=1"], Err(E::Member("FOO=1")));
    check_tracestate(&["foo.bar=1"], Err(E::Member("foo.bar=1")));
    check_tracestate(&["@foo=1,bar=2"], Err(E::Member("@foo=1")));
    check_tracestate(&["*foo=1"], Err(E::Member("*foo=1")));
    check_tracestate(&["=1"], Err(E::Member("=1")));
    // `@` is a key character after the first: no tenant/system split.
    check_tracestate(&["foo@=1,bar=2"], Ok(&[("foo@", "1"), ("bar", "2")]));
    check_tracestate(
        &["foo@@bar=1,bar=2"],
        Ok(&[("foo@@bar", "1"), ("bar", "2")]),
    );
    check_tracestate(
        &["foo@bar@baz=1,bar=2"],
        Ok(&[("foo@bar@baz", "1"), ("bar", "2")]),
    );
    check_tracestate(&["foo@1bar=1"], Ok(&[("foo@1bar", "1")]));
    check_tracestate(&["1tenant@vendor=1"], Ok(&[("1tenant@vendor", "1")]));
    // Invalid values.
    check_tracestate(&["foo=bar=baz"], Err(E::Member("foo=bar=baz")));
    check_tracestate(&["foo=,bar=3"], Err(E::Member("foo=")));
    check_tracestate(&["foo"], Err(E::Member("foo")));
    check_tracestate(&["foo=\u{7f}"], Err(E::Member("foo=\u{7f}")));
    check_tracestate(&["foo=é"], Err(E::Member("foo=é")));
    // Key length limit: 256 characters, `@` included.
    let z256 = "z".repeat(256);
    check_tracestate(
        &["foo=1", &format!("{z256}=1")],
        Ok(&[("foo", "1"), (&z256, "1")]),
    );
    let z257 = format!("{}=1", "z".repeat(257));
    check_tracestate(&["foo=1", &z257], Err(E::Member(&z257)));
    let tenant = format!("{}@{}", "t".repeat(241), "v".repeat(14));
    check_tracestate(
        &["foo=1", &format!("{tenant}=1")],
        Ok(&[("foo", "1"), (&tenant, "1")]),
    );
    let long_tenant = format!("{}@v", "t".repeat(242));
    check_tracestate(
        &["foo=1", &format!("{long_tenant}=1")],
        Ok(&[("foo", "1"), (&long_tenant, "1")]),
    );
    let long_system = format!("t@{}", "v".repeat(15));
    check_tracestate(
        &["foo=1", &format!("{long_system}=1")],
        Ok(&[("foo", "1"), (&long_system, "1")]),
    );
    let at257 = format!("{}@{}=1", "t".repeat(241), "v".repeat(15));
    check_tracestate(&["foo=1", &at257], Err(E::Member(&at257)));
    // Value length limit: 256.
    let v256 = "v".repeat(256);
    check_tracestate(&[&format!("foo={v256}")], Ok(&[("foo", &v256)]));
    let v257 = format!("foo={}", "v".repeat(257));
    check_tracestate(&[&v257], Err(E::Member(&v257)));
    // At most 32 members.
    let members =
        |n: usize| -> Vec<String> { (1..=n).map(|i| format!("bar{i:02}={i:02}")).collect() };
    let headers: Vec<String> = members(32).chunks(10).map(|c| c.join(",")).collect();
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    assert_eq!(
        parse_tracestate(headers.iter().map(|h| h.as_bytes())).map(|t| t.len()),
        Ok(32)
    );
    let headers: Vec<String> = members(33).chunks(10).map(|c| c.join(",")).collect();
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    check_tracestate(&headers, Err(E::TooManyMembers(33)));
    // Duplicates count: the list as sent has 33 members.
    let mut dup = members(32);
    dup.push("bar01=01".into());
    check_tracestate(&[&dup.join(",")], Err(E::TooManyMembers(33)));
    // Past the limit members are only counted, not read.
    let long = format!("{},NOT VALID", members(40).join(","));
    check_tracestate(&[&long], Err(E::TooManyMembers(41)));
    // Not text.
    assert_eq!(parse_tracestate([&[0xffu8][..]]), Err(E::NotText));
}

#[test]
fn tracestate_header_value_round_trips() {
    let ts = TraceState::parse([&b" foo=1 ,\tbar=a b "[..]]).unwrap();
    assert_eq!(ts.header_value().as_deref(), Some("foo=1,bar=a b"));
    assert_eq!(ts.get("bar"), Some("a b"));
    assert_eq!(TraceState::default().header_value(), None);
}

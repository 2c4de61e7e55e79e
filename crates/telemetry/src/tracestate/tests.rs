use super::*;

/// Every header value of one request in order, and the members or the error.
fn check(headers: &[&str], expect: Result<&[(&str, &str)], MemberError>) {
    let mut members = Vec::new();
    let got = headers
        .iter()
        .try_for_each(|h| push_members(h, &mut members))
        .map(|()| members.as_slice());
    assert_eq!(got, expect, "tracestate {headers:?}");
}

#[test]
fn members_follow_the_w3c_rules() {
    check(
        &["foo=1,bar=2", "baz=3"],
        Ok(&[("foo", "1"), ("bar", "2"), ("baz", "3")]),
    );
    check(&["", " , foo=a b ,\t"], Ok(&[("foo", "a b")]));
    check(&["t3n4nt@sys=1"], Ok(&[("t3n4nt@sys", "1")]));
    check(&["foo=1", "foo=2"], Err(MemberError::DuplicateKey("foo")));
    check(&["FOO=1"], Err(MemberError::Invalid("FOO=1")));
    check(&["1foo=1"], Err(MemberError::Invalid("1foo=1")));
    check(
        &["foo@toolongsystemid=1"],
        Err(MemberError::Invalid("foo@toolongsystemid=1")),
    );
    check(&["foo=a,b=c=d"], Err(MemberError::Invalid("b=c=d")));
    check(&["foo"], Err(MemberError::Invalid("foo")));
    check(&["foo=1 x"], Ok(&[("foo", "1 x")]));
    check(
        &[&format!("foo={}", "v".repeat(257))],
        Err(MemberError::Invalid(&format!("foo={}", "v".repeat(257)))),
    );
}

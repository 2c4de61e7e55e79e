//! Critical path, self time, service latency, bottlenecks and root cause on
//! hand-built traces of five to six services.

use crate::fixture::{Fixture, MS, ms_after_epoch};
use traces::{Blame, Span, SpanId, SpanKind, StatusCode, TraceId, WarningKind};

/// A checkout: frontend calls cart (which reads redis), then checkout, which
/// calls payment and shipping in parallel and email after both.
pub const CHECKOUT: &str = "
root     -       frontend  GET:/checkout  server    0  100
fe-cart  root    frontend  GET:cart       client    5   25
cart     fe-cart cart      GetCart        server    7   23
redis    cart    cart      HGETALL        client    9   20  peer.service=redis
fe-co    root    frontend  POST:checkout  client   30   95
co       fe-co   checkout  PlaceOrder     server   32   93
pay-c    co      checkout  Charge         client   35   60
pay      pay-c   payment   Charge         server   37   58
ship-c   co      checkout  Quote          client   35   80
ship     ship-c  shipping  Quote          server   38   78
email-c  co      checkout  Send           client   82   90
email    email-c email     Send           server   83   89
";

#[test]
fn critical_path_follows_the_last_finishing_children_through_nested_and_parallel_calls() {
    let fixture = Fixture::parse(CHECKOUT);
    let (_, analysis) = fixture.analyze();
    assert_eq!(
        fixture.critical_path(&analysis),
        [
            "root 0-5",
            "fe-cart 5-7",
            "cart 7-9",
            "redis 9-20",
            "cart 20-23",
            "fe-cart 23-25",
            "root 25-30",
            "fe-co 30-32",
            "co 32-35",
            "ship-c 35-38",
            "ship 38-78",
            "ship-c 78-80",
            "co 80-82",
            "email-c 82-83",
            "email 83-89",
            "email-c 89-90",
            "co 90-93",
            "fe-co 93-95",
            "root 95-100",
        ]
    );
    assert_eq!(analysis.critical_path_nano, 100 * MS);
    // payment ran beside shipping and finished first: it is not on the path.
    let pay = analysis
        .spans
        .iter()
        .find(|t| t.service == "payment")
        .unwrap();
    assert_eq!(pay.critical_nano, 0);
}

#[test]
fn self_time_is_duration_minus_the_union_of_children() {
    let fixture = Fixture::parse(CHECKOUT);
    let (_, analysis) = fixture.analyze();
    assert_eq!(
        fixture.self_times(&analysis),
        [
            "root=15",
            "fe-cart=4",
            "cart=5",
            "redis=11",
            "fe-co=4",
            "co=8",
            "pay-c=4",
            "pay=21",
            "ship-c=5",
            "ship=40",
            "email-c=2",
            "email=6",
        ]
    );
}

#[test]
fn latency_per_service_and_bottleneck_ranking() {
    let (_, analysis) = Fixture::parse(CHECKOUT).analyze();
    let rows: Vec<String> = analysis
        .services
        .iter()
        .map(|s| {
            format!(
                "{} spans={} self={} path={}",
                s.service,
                s.span_count,
                s.self_nano / MS,
                s.critical_nano / MS
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            "shipping spans=1 self=40 path=40",
            "frontend spans=3 self=23 path=23",
            "cart spans=2 self=16 path=16",
            "checkout spans=4 self=19 path=15",
            "email spans=1 self=6 path=6",
            "payment spans=1 self=21 path=0",
        ]
    );
    let top = &analysis.bottlenecks[0];
    assert_eq!(
        (top.service.as_str(), top.operation.as_str()),
        ("shipping", "Quote")
    );
    assert!((top.share - 0.40).abs() < 1e-9, "{}", top.share);
    assert!(analysis.bottlenecks.iter().all(|b| b.service != "payment"));
    assert_eq!((analysis.service_count, analysis.span_count), (6, 12));
    assert_eq!(analysis.duration_nano, 100 * MS);
}

#[test]
fn a_slow_leaf_is_the_bottleneck() {
    let fixture = Fixture::parse(
        "
        root   -      frontend   GET:/product  server     0  1000
        auth-c root   frontend   Check         client    10    30
        auth   auth-c auth       Check         server    12    28
        cat-c  root   frontend   Product       client    35   990
        cat    cat-c  catalog    Product       server    37   988
        inv-c  cat    catalog    Stock         client    40    60
        inv    inv-c  inventory  Stock         server    42    58
        pri-c  cat    catalog    Price         client    62   980
        pri    pri-c  pricing    Price         server    64   978
        ",
    );
    let (_, analysis) = fixture.analyze();
    let ranking: Vec<(&str, u64)> = analysis
        .bottlenecks
        .iter()
        .map(|b| (b.service.as_str(), b.critical_nano / MS))
        .collect();
    assert_eq!(
        ranking,
        [
            ("pricing", 914),
            ("frontend", 33),
            ("catalog", 21),
            ("auth", 16),
            ("inventory", 16)
        ]
    );
    assert!(analysis.bottlenecks[0].share > 0.9);
}

#[test]
fn only_the_last_finishing_parallel_branch_is_on_the_path() {
    let fixture = Fixture::parse(
        "
        root  -     gateway  GET:/       server    0  100
        a     root  search   Query       server   10   50
        b     root  ranking  Rank        server   10   80
        c     root  ads      Pick        server   10   30
        d     root  render   Page        server   85   95
        ",
    );
    let (_, analysis) = fixture.analyze();
    assert_eq!(
        fixture.critical_path(&analysis),
        [
            "root 0-10",
            "b 10-80",
            "root 80-85",
            "d 85-95",
            "root 95-100"
        ]
    );
}

/// Jaeger takes a child only if it finished strictly before the point the walk
/// came back at; a child ending exactly when its successor starts is not on
/// the path, its time goes to the parent.
#[test]
fn a_child_ending_exactly_at_the_next_start_is_not_taken_as_jaeger_does() {
    let fixture = Fixture::parse(
        "
        root  -     gateway  GET:/   server   0  100
        a     root  users    Load    server  10   50
        b     root  orders   List    server  50   90
        ",
    );
    let (_, analysis) = fixture.analyze();
    assert_eq!(
        fixture.critical_path(&analysis),
        ["root 0-50", "b 50-90", "root 90-100"]
    );
}

#[test]
fn clock_skew_clips_children_into_their_parent() {
    let fixture = Fixture::parse(
        "
        root    -     frontend  GET:/    server      0  100
        c       root  frontend  call     client     10   90
        s       c     backend   handle   server      5   95   # 5ms early and 5ms late
        late    root  frontend  audit    internal  120  130   # wholly after its parent
        lchild  late  frontend  write    internal  121  125
        ",
    );
    let (trace, analysis) = fixture.analyze();
    assert_eq!(
        fixture.critical_path(&analysis),
        ["root 0-10", "s 10-90", "root 90-100"]
    );
    assert_eq!(
        fixture.self_times(&analysis),
        ["root=20", "c=0", "s=80", "late=0", "lchild=0"]
    );
    let warnings: Vec<(WarningKind, &str)> = trace
        .warnings()
        .iter()
        .map(|w| (w.kind, fixture.name(w.span_id.unwrap())))
        .collect();
    assert_eq!(
        warnings,
        [
            (WarningKind::StartsBeforeParent, "s"),
            (WarningKind::OutsideParent, "late")
        ]
    );
    // The waterfall still shows the real times.
    let s = analysis
        .spans
        .iter()
        .find(|t| t.service == "backend")
        .unwrap();
    assert_eq!(ms_after_epoch(s.start_unix_nano), 5);
    assert_eq!(analysis.duration_nano, 130 * MS);
}

#[test]
fn a_missing_parent_makes_an_extra_root_with_a_warning() {
    let mut fixture = Fixture::parse(
        "
        root  -      frontend   GET:/     server   0   50
        a     root   frontend   call      client   5   45
        x     ghost  inventory  Reserve   server  10   30
        y     x      inventory  SELECT    client  12   28  peer.service=postgres
        ",
    );
    let ghost = fixture.id("ghost");
    let (trace, analysis) = fixture.analyze();
    let roots: Vec<&str> = trace
        .roots()
        .iter()
        .map(|&i| fixture.name(trace.spans()[i].span_id))
        .collect();
    assert_eq!(roots, ["root", "x"]);
    let warning = &trace.warnings()[0];
    assert_eq!(warning.kind, WarningKind::MissingParent);
    assert!(
        warning.message.contains(&ghost.to_string()),
        "{}",
        warning.message
    );
    // Each root gets its own critical path, as Jaeger UI computes one per root.
    assert_eq!(
        fixture.critical_path(&analysis),
        [
            "root 0-5",
            "a 5-45",
            "x 10-12",
            "y 12-28",
            "x 28-30",
            "root 45-50"
        ]
    );
    let depths: Vec<usize> = analysis.spans.iter().map(|t| t.depth).collect();
    assert_eq!(depths, [0, 1, 0, 1]);
}

#[test]
fn a_consumer_under_a_producer_is_off_the_path_and_timed_on_its_own() {
    let fixture = Fixture::parse(
        "
        root     -        orders   POST:/orders   server     0  100
        publish  root     orders   send           producer  10   20
        consume  publish  billing  process        consumer  50  150
        bill     consume  billing  INSERT         client    60   70  peer.service=postgres
        ",
    );
    let (trace, analysis) = fixture.analyze();
    assert_eq!(
        fixture.critical_path(&analysis),
        ["root 0-10", "publish 10-20", "root 20-100"]
    );
    assert_eq!(
        fixture.self_times(&analysis),
        ["root=90", "publish=10", "consume=90", "bill=10"]
    );
    assert!(trace.warnings().is_empty(), "{:?}", trace.warnings());
}

#[test]
fn an_error_propagating_up_the_chain_blames_the_originating_service() {
    let fixture = Fixture::parse(
        "
        root   -      frontend  GET:/checkout  server    0  100  ERROR
        rec-c  root   frontend  Recommend      client    2    8
        rec    rec-c  recommend Recommend      server    3    7
        fe-co  root   frontend  POST:checkout  client   10   95  ERROR
        co     fe-co  checkout  PlaceOrder     server   11   94  ERROR
        pay-c  co     checkout  Charge         client   15   90  ERROR
        pay    pay-c  payment   Charge         server   16   89  ERROR:card_processor_timeout
        db     pay    payment   INSERT         client   20   30  peer.service=postgres
        ",
    );
    let (_, analysis) = fixture.analyze();
    assert_eq!(analysis.root_causes.len(), 1);
    let cause = &analysis.root_causes[0];
    assert_eq!(fixture.name(cause.span_id), "pay");
    assert_eq!(cause.blamed_service, "payment");
    assert_eq!(cause.blame, Blame::Span);
    assert_eq!(cause.message, "card processor timeout");
    assert!(cause.reached_root);
    assert_eq!(cause.propagated_through, ["checkout", "frontend"]);
    assert_eq!(analysis.error_count, 5);
    assert_eq!(
        traces::root_cause_line(&analysis),
        "root cause: payment (\"Charge\" failed): card processor timeout; propagated through checkout -> frontend"
    );
}

#[test]
fn a_failing_client_call_without_a_server_span_blames_the_peer() {
    let fixture = Fixture::parse(
        "
        root   -     frontend  GET:/       server   0  100  ERROR
        co-c   root  frontend  checkout    client   5   95  ERROR
        co     co-c  checkout  PlaceOrder  server   6   94  http.response.status_code=503
        pay-c  co    checkout  Charge      client  10   90  ERROR:connection_refused  peer.service=payment
        ",
    );
    let (_, analysis) = fixture.analyze();
    let cause = &analysis.root_causes[0];
    assert_eq!(fixture.name(cause.span_id), "pay-c");
    assert_eq!(
        (cause.blame, cause.blamed_service.as_str()),
        (Blame::Peer, "payment")
    );
    assert_eq!(cause.service, "checkout");
    assert_eq!(cause.propagated_through, ["checkout", "frontend"]);
    assert_eq!(
        traces::root_cause_line(&analysis),
        "root cause: payment (call \"Charge\" from checkout failed; payment sent no span): connection refused; propagated through checkout -> frontend"
    );
}

#[test]
fn the_peer_falls_back_to_server_address_then_net_peer_name() {
    for (attribute, blamed) in [
        ("server.address=payments.internal", "payments.internal"),
        ("net.peer.name=10.0.0.7", "10.0.0.7"),
    ] {
        let fixture = Fixture::parse(&format!(
            "root - checkout PlaceOrder server 0 100 ERROR\n\
             pay-c root checkout Charge client 10 90 ERROR {attribute}\n"
        ));
        let (_, analysis) = fixture.analyze();
        let cause = &analysis.root_causes[0];
        assert_eq!(
            (cause.blame, cause.blamed_service.as_str()),
            (Blame::Peer, blamed)
        );
    }
    // With a server child the client span is not the origin: the server is.
    let fixture = Fixture::parse(
        "root - checkout PlaceOrder server 0 100 ERROR\n\
         pay-c root checkout Charge client 10 90 ERROR peer.service=payment\n\
         pay pay-c payment Charge server 12 88 ERROR\n",
    );
    let (_, analysis) = fixture.analyze();
    assert_eq!(fixture.name(analysis.root_causes[0].span_id), "pay");
    assert_eq!(analysis.root_causes[0].blame, Blame::Span);
}

#[test]
fn several_origins_are_ranked_failure_reaching_the_root_first() {
    let fixture = Fixture::parse(
        "
        root    -       frontend  GET:/checkout  server     0  200  ERROR
        ads-c   root    frontend  Ads            client     5   20  OK
        ads     ads-c   ads       Ads            server     6   19  ERROR:index_stale     # handled: frontend fell back
        co-c    root    frontend  POST:checkout  client    25  150  ERROR
        co      co-c    checkout  PlaceOrder     server    26  149  ERROR
        pay-c1  co      checkout  Charge         client    30   60  ERROR:timeout  peer.service=payment
        pay-c2  co      checkout  Charge         client    70  100  ERROR:timeout  peer.service=payment
        render  root    frontend  Render         internal 160  190  ERROR:template_missing
        ",
    );
    let (_, analysis) = fixture.analyze();
    let ranked: Vec<(&str, &str, bool)> = analysis
        .root_causes
        .iter()
        .map(|c| {
            (
                fixture.name(c.span_id),
                c.blamed_service.as_str(),
                c.reached_root,
            )
        })
        .collect();
    assert_eq!(
        ranked,
        [
            // Deepest chain of failures up to the root, earliest first.
            ("pay-c1", "payment", true),
            ("pay-c2", "payment", true),
            ("render", "frontend", true),
            ("ads", "ads", false),
        ]
    );
    assert!(traces::root_cause_line(&analysis).ends_with("; 3 more failing spans"));
}

#[test]
fn http_status_and_error_tags_decide_errors_when_the_status_is_unset() {
    let span = |status: StatusCode, attribute: (&str, &str)| Span {
        trace_id: TraceId([1; 16]),
        span_id: SpanId([1; 8]),
        parent_span_id: None,
        service: "web".into(),
        name: "GET /".into(),
        kind: SpanKind::Server,
        start_unix_nano: 0,
        end_unix_nano: 1,
        status,
        status_message: String::new(),
        attributes: vec![(attribute.0.to_owned(), attribute.1.to_owned())],
    };
    let cases = [
        (
            StatusCode::Unset,
            ("http.response.status_code", "503"),
            true,
        ),
        (
            StatusCode::Unset,
            ("http.response.status_code", "500"),
            true,
        ),
        (StatusCode::Unset, ("http.status_code", "502"), true),
        (
            StatusCode::Unset,
            ("http.response.status_code", "404"),
            false,
        ),
        (
            StatusCode::Unset,
            ("http.response.status_code", "not a number"),
            false,
        ),
        (StatusCode::Ok, ("http.response.status_code", "500"), false),
        (
            StatusCode::Error,
            ("http.response.status_code", "200"),
            true,
        ),
        (StatusCode::Unset, ("error", "true"), true),
        (StatusCode::Unset, ("peer.service", "db"), false),
    ];
    for (status, attribute, expected) in cases {
        assert_eq!(
            traces::is_error(&span(status, attribute)),
            expected,
            "{status:?} {attribute:?}"
        );
    }
}

#[test]
fn a_trace_without_errors_says_so() {
    let (_, analysis) = Fixture::parse(CHECKOUT).analyze();
    assert!(analysis.root_causes.is_empty());
    assert_eq!(traces::root_cause_line(&analysis), "no error");
}

#[test]
fn analysis_serializes_ids_as_hex_and_enums_as_snake_case() {
    let fixture = Fixture::parse(
        "root - checkout PlaceOrder server 0 100 ERROR\n\
         pay-c root checkout Charge client 10 90 ERROR peer.service=payment\n\
         x ghost checkout Orphan internal 20 30\n",
    );
    let (_, analysis) = fixture.analyze();
    let json = serde_json::to_value(&analysis).unwrap();
    assert_eq!(json["trace_id"], "4b000000000000000000000000000001");
    assert_eq!(json["critical_path"][0]["span_id"], "0000000000001000");
    assert_eq!(json["root_causes"][0]["blame"], "peer");
    assert_eq!(json["warnings"][0]["kind"], "missing_parent");
    assert_eq!(json["spans"][1]["parent_span_id"], "0000000000001000");
    assert_eq!(json["dependencies"][0]["parent"], "checkout");
}

#[test]
fn ids_parse_and_display_as_lowercase_hex() {
    let trace: TraceId = "4BF92F3577B34DA6A3CE929D0E0E4736".parse().unwrap();
    assert_eq!(trace.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    let span: SpanId = "00f067aa0ba902b7".parse().unwrap();
    assert_eq!(span.0, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
    assert_eq!(
        serde_json::to_string(&span).unwrap(),
        "\"00f067aa0ba902b7\""
    );
    for bad in [
        "",
        "00f067aa0ba902b",
        "00f067aa0ba902b7a",
        "00f067aa0ba902bg",
        "+0f067aa0ba902b7",
    ] {
        let error = bad.parse::<SpanId>().unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("invalid id {bad:?}: expected 16 hex digits")
        );
    }
    assert!(
        "4bf92f3577b34da6a3ce929d0e0e473"
            .parse::<TraceId>()
            .is_err()
    );
    // Multi-byte text of the right byte length is rejected, not sliced.
    assert!("00f067aa0ba902é".parse::<SpanId>().is_err());
}

//! Service dependency links from cross-service parent/child pairs.

use crate::analysis::CHECKOUT;
use crate::fixture::Fixture;
use traces::DependencyLink;

const FAILED_CHECKOUT: &str = "
root   -     frontend  GET:/       server   0  100  ERROR                                trace=2
co-c   root  frontend  checkout    client   5   95  ERROR                                trace=2
co     co-c  checkout  PlaceOrder  server   6   94  http.response.status_code=503        trace=2
pay-c  co    checkout  Charge      client  10   90  ERROR  peer.service=payment         trace=2
";

fn links(links: &[DependencyLink]) -> Vec<String> {
    links
        .iter()
        .map(|l| {
            format!(
                "{} -> {} calls={} errors={}",
                l.parent, l.child, l.call_count, l.error_count
            )
        })
        .collect()
}

#[test]
fn links_count_calls_and_errors_across_traces() {
    let ok = Fixture::parse(CHECKOUT);
    let failed = Fixture::parse(FAILED_CHECKOUT);
    // The first trace twice: a re-sent batch must not double the counts.
    let all = ok.spans.iter().chain(&ok.spans).chain(&failed.spans);
    assert_eq!(
        links(&traces::dependencies(all)),
        [
            // redis and the failed payment never reported spans: their edges
            // come from the CLIENT spans' peer.service.
            "cart -> redis calls=1 errors=0",
            "checkout -> email calls=1 errors=0",
            "checkout -> payment calls=2 errors=1",
            "checkout -> shipping calls=1 errors=0",
            "frontend -> cart calls=1 errors=0",
            "frontend -> checkout calls=2 errors=1",
        ]
    );
}

#[test]
fn same_service_pairs_and_parents_in_other_traces_are_not_links() {
    let fixture = Fixture::parse(
        "
        root  -     web   GET:/     server  0  10
        mid   root  web   render    internal 1  9
        api   mid   api   Fetch     server  2  8  trace=2   # parent is in trace 1
        ",
    );
    assert!(traces::dependencies(&fixture.spans).is_empty());
}

#[test]
fn a_trace_analysis_carries_its_own_links() {
    let (_, analysis) = Fixture::parse(FAILED_CHECKOUT).analyze();
    assert_eq!(
        links(&analysis.dependencies),
        [
            "checkout -> payment calls=1 errors=1",
            "frontend -> checkout calls=1 errors=1"
        ]
    );
    assert_eq!(analysis.dependencies[0].error_rate(), 1.0);
}

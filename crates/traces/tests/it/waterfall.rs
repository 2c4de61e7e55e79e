//! The terminal rendering, pinned as golden text.

use crate::fixture::Fixture;

const SMALL: &str = "
root   -      frontend  GET:/checkout  server     0  100  ERROR
cart   root   cart      GetCart        server    10   30
co-c   root   frontend  checkout       client    35   95  ERROR
co     co-c   checkout  PlaceOrder     server    40   90  ERROR
pay-c  co     checkout  Charge         client    45   85  ERROR:connection_refused  peer.service=payment
audit  root   audit     Record         server    50   60
";

#[test]
fn waterfall_golden() {
    let (trace, analysis) = Fixture::parse(SMALL).analyze();
    let expected = "\
trace 4b000000000000000000000000000001  100.00ms  6 spans  4 services  4 errors
                            0                                 100.00ms
*! frontend GET:/checkout  |#####=======###========================###| 100.00ms
*    cart GetCart          |    #########                             |  20.00ms
*!   frontend checkout     |              ###====================###  |  60.00ms
*!     checkout PlaceOrder |                ###================###    |  50.00ms
*!       checkout Charge   |                  ##################      |  40.00ms
     audit Record          |                     =====                |  10.00ms
* on the critical path (# its time there)  ! error
";
    assert_eq!(traces::render_waterfall(&trace, &analysis, 80), expected);
}

#[test]
fn service_table_golden() {
    let (_, analysis) = Fixture::parse(SMALL).analyze();
    let expected = "\
SERVICE   SPANS  ERRORS  SELF TIME  SELF %  CRITICAL PATH  PATH %
checkout      2       2    50.00ms   45.5%        50.00ms   50.0%
frontend      2       2    30.00ms   27.3%        30.00ms   30.0%
cart          1       0    20.00ms   18.2%        20.00ms   20.0%
audit         1       0    10.00ms    9.1%            0ns    0.0%
bottleneck: checkout (Charge) 50.00ms on the critical path, 50.0% of it
";
    assert_eq!(traces::render_service_table(&analysis), expected);
}

#[test]
fn a_narrow_width_truncates_names_but_keeps_a_bar() {
    let (trace, analysis) = Fixture::parse(SMALL).analyze();
    let text = traces::render_waterfall(&trace, &analysis, 20);
    for line in text.lines().skip(2).filter(|l| l.contains('|')) {
        let bar = line.split('|').nth(1).unwrap();
        assert_eq!(bar.chars().count(), 10, "{line}");
    }
}

#[test]
fn extra_roots_say_why_they_are_roots() {
    let (trace, analysis) = Fixture::parse(
        "root - web GET:/ server 0 10\n\
         x ghost api Fetch server 2 8\n\
         a b db Read internal 3 6\n\
         b a db Write internal 4 5\n",
    )
    .analyze();
    let text = traces::render_waterfall(&trace, &analysis, 100);
    assert!(
        text.contains(" api Fetch (parent 0000000000001002 missing) "),
        "{text}"
    );
    assert!(text.contains(" db Read (parent loop cut) "), "{text}");
    assert!(text.contains("   db Write "), "{text}");
}

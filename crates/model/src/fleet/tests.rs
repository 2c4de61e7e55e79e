use super::*;

#[test]
fn service_host_reads_in_cluster_addresses_only() {
    let namespaces: BTreeSet<&str> = ["shop"].into_iter().collect();
    let cases = [
        ("productcatalogservice:3550", Some("productcatalogservice")),
        ("http://payments:8080/", Some("payments")),
        ("http://payments", Some("payments")),
        ("grpc://user:pw@ledger:9000/x", Some("ledger")),
        ("orders.shop:8080", Some("orders")),
        ("orders.other:8080", None),
        ("orders.shop.svc.cluster.local:8080", Some("orders")),
        ("orders.shop.svc", Some("orders")),
        ("orders", None),
        ("8080", None),
        ("localhost:8080", None),
        ("db.example.com:5432", None),
        ("https://api.stripe.com/v1", None),
        ("http://123.123.123", None),
        ("payments:0", None),
        ("payments:http", None),
        ("Payments:80", None),
        ("", None),
        ("true", None),
    ];
    for (value, expected) in cases {
        assert_eq!(service_host(value, &namespaces), expected, "{value:?}");
    }
}

#[test]
fn tiers_and_owners_normalise() {
    assert_eq!(Tier::parse("1"), Some(Tier(1)));
    assert_eq!(Tier::parse("tier-2"), Some(Tier(2)));
    assert_eq!(Tier::parse("Tier3"), Some(Tier(3)));
    assert_eq!(Tier::parse("0"), None);
    assert_eq!(Tier::parse("gold"), None);
    assert_eq!(Owner::from_entity_ref("group:default/team-a").0, "team-a");
    assert_eq!(Owner::from_entity_ref("team-b").0, "team-b");
}

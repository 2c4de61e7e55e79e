//! Hosts inventories through [`crate::parse`], rendered one line per host.

use crate::test_support::dedent;
use crate::{FileKind, parse};
use model::Facts;

fn render(facts: &Facts) -> String {
    let mut out = String::new();
    for h in &facts.hosts {
        out.push_str(&format!(
            "{} {} {:?} @{}\n",
            h.name,
            h.address.as_deref().unwrap_or("-"),
            h.groups,
            h.at.line
        ));
    }
    for d in &facts.diagnostics {
        out.push_str(&format!(
            "{} @{}: {}\n",
            d.severity,
            d.line.map_or("-".to_string(), |l| l.to_string()),
            d.message
        ));
    }
    out
}

#[track_caller]
fn check(text: &str, expect: &str) {
    let facts = parse("hosts.yaml", FileKind::Yaml, &dedent(text));
    assert!(facts.hosts.iter().all(|h| h.at.path == "hosts.yaml"));
    ::test_support::expect_text(&render(&facts), expect);
}

#[test]
fn list_form() {
    check(
        "
        hosts:
          - name: web-1
            address: 10.0.1.11
            groups: [web, eu-west]
            maintenance_window: 'Sun 02:00-04:00 UTC'
            package_manager: apt
            transport: ssh
          - name: db-1
            address: db-1.internal
            groups: db
          - name: bare
          - address: 10.0.9.9
          - name: web-1
            address: 10.0.1.99
        ",
        "
        web-1 10.0.1.11 [\"web\", \"eu-west\"] @2
        db-1 db-1.internal [\"db\"] @8
        bare - [] @11
        warning @12: host has no name; skipped
        warning @13: host web-1 is listed twice (first on line 2); skipped
        ",
    );
}

#[test]
fn map_form() {
    check(
        "
        hosts:
          web-1:
            address: 10.0.1.11
            groups: [web]
          web-2:
            address: 10.0.1.12
            groups: [web, canary]
            maintenance_window: 'Sat 01:00-03:00 UTC'
          build-box:
        ",
        "
        web-1 10.0.1.11 [\"web\"] @2
        web-2 10.0.1.12 [\"web\", \"canary\"] @5
        build-box - [] @9
        ",
    );
}

/// Only inventory-shaped `hosts:` keys are read; other YAML that happens to
/// have one yields nothing.
#[test]
fn lookalikes_are_not_inventories() {
    for text in [
        "hosts: []\n",
        "hosts: web-1\n",
        "hosts: [web-1, web-2]\n",
        "hosts: [{address: 10.0.0.1}]\n",
        "hosts: {web-1: 10.0.0.1}\n",
        "hosts: {}\n",
        "- hosts: webservers\n  tasks: []\n",
    ] {
        check(text, "");
    }
}

/// `defaults:` gives groups to hosts without their own, as host patching reads them.
#[test]
fn default_groups() {
    check(
        "
        defaults:
          groups: [fleet]
        hosts:
          - name: web-1
            address: 10.0.1.11
          - name: db-1
            groups: [db]
        ",
        "
        web-1 10.0.1.11 [\"fleet\"] @4
        db-1 - [\"db\"] @6
        ",
    );
}

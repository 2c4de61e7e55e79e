use super::*;

fn parse_ok(text: &str) -> Inventory {
    let inv = parse("inventory/hosts.yaml", text);
    assert!(inv.diagnostics.is_empty(), "{:#?}", inv.diagnostics);
    inv
}

fn messages(inv: &Inventory) -> Vec<String> {
    inv.diagnostics.iter().map(ToString::to_string).collect()
}

/// The shape `bulkhead lab init` writes.
#[test]
fn reads_the_sample_fleet_inventory() {
    let inv = parse_ok(
        r#"hosts:
  - name: web-1
    address: web-1.acme.internal
    groups: [web]
    os: debian-12
    maintenance_window:
      days: [sat, sun]
      start: "02:00"
      end: "05:00"
      timezone: Europe/Berlin
    package_manager: apt
    transport: ssh
"#,
    );
    let h = &inv.hosts[0];
    assert_eq!(h.name, "web-1");
    assert_eq!(h.groups, ["web"]);
    assert_eq!(h.package_manager, PackageManager::Apt);
    assert_eq!(
        h.transport,
        Transport::Ssh {
            destination: "web-1.acme.internal".into(),
            port: None
        }
    );
    let w = h.window.as_ref().unwrap();
    assert_eq!(w.to_string(), "sat,sun 02:00-05:00 Europe/Berlin");
    assert_eq!(h.at.line, 2);
    assert!(h.snapshot.is_none() && h.health_checks.is_empty());
}

#[test]
fn reads_local_roots_snapshots_checks_and_defaults() {
    let inv = parse_ok(
        r#"defaults:
  package_manager: apt
  health_checks:
    - command: test -f "$BULKHEAD_ROOT/ok"
hosts:
  - name: a
    transport: {local: roots/a}
    snapshot: {provider: qcow2, image: disks/a.qcow2}
  - name: b
    transport: {ssh: {user: admin, port: 2222}}
    address: 10.0.0.2
    snapshot: {provider: command, create: "make-snap", restore: "restore-snap"}
    health_checks:
      - http: http://127.0.0.1:8080/healthz
        status: 204
        timeout: 2m
      - command: systemctl is-active nginx
        timeout: 5s
  - name: c
    transport: {local: {root: /srv/c}}
    snapshot: {provider: btrfs, subvolume: /srv/c}
    maintenance_window: {days: weekdays, start: "22:00", end: "01:00"}
"#,
    );
    let mut inv = inv;
    inv.resolve_paths(std::path::Path::new("/etc/bulkhead"));
    let [a, b, c] = &inv.hosts[..] else {
        panic!("three hosts")
    };
    assert_eq!(
        a.transport,
        Transport::Local {
            root: "/etc/bulkhead/roots/a".into()
        }
    );
    assert_eq!(
        a.snapshot,
        Some(SnapshotSpec::Qcow2 {
            image: "/etc/bulkhead/disks/a.qcow2".into()
        })
    );
    assert_eq!(a.health_checks.len(), 1, "defaults apply");
    assert_eq!(
        b.transport,
        Transport::Ssh {
            destination: "admin@10.0.0.2".into(),
            port: Some(2222)
        }
    );
    assert_eq!(
        b.health_checks,
        [
            HealthCheck::Http {
                url: "http://127.0.0.1:8080/healthz".into(),
                status: 204,
                timeout_secs: 120
            },
            HealthCheck::Command {
                command: "systemctl is-active nginx".into(),
                timeout_secs: 5
            },
        ]
    );
    assert_eq!(
        b.snapshot.as_ref().map(SnapshotSpec::provider),
        Some("command")
    );
    assert_eq!(
        c.transport,
        Transport::Local {
            root: "/srv/c".into()
        }
    );
    assert_eq!(
        c.snapshot,
        Some(SnapshotSpec::Btrfs {
            subvolume: "/srv/c".into(),
            dir: "/.snapshots".into()
        })
    );
    assert_eq!(
        c.window.as_ref().unwrap().to_string(),
        "mon,tue,wed,thu,fri 22:00-01:00 UTC"
    );
}

#[test]
fn the_map_form_works_too() {
    let inv = parse_ok("hosts:\n  db-1:\n    groups: [db]\n  db-2: {}\n");
    let names: Vec<&str> = inv.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["db-1", "db-2"]);
    assert_eq!(
        inv.hosts[1].transport,
        Transport::Ssh {
            destination: "db-2".into(),
            port: None
        }
    );
}

#[test]
fn bad_hosts_are_diagnostics_with_lines_and_the_rest_is_read() {
    let inv = parse(
        "inv.yaml",
        r#"hosts:
  - name: good
  - name: bad-window
    maintenance_window: {days: [someday], start: "2am", end: "05:00"}
  - name: bad-transport
    transport: telnet
  - name: bad-check
    health_checks: [{http: https://x/}]
  - name: good
  - address: nameless
  - name: bad-snapshot
    snapshot: {provider: zfs}
  - name: bad-pm
    package_manager: pacman
"#,
    );
    assert_eq!(
        inv.hosts
            .iter()
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>(),
        ["good"]
    );
    let text = messages(&inv).join("\n");
    for expected in [
        "inv.yaml:4: error: host bad-window: unknown day \"someday\"",
        "inv.yaml:4: error: host bad-window: start must be a time like \"02:00\"",
        "inv.yaml:6: error: host bad-transport: unknown transport \"telnet\"",
        "inv.yaml:8: error: host bad-check: health check URL \"https://x/\" must start with http://",
        "inv.yaml:9: error: host good is listed twice",
        "inv.yaml:10: error: host has no name; skipped",
        "inv.yaml:12: error: host bad-snapshot: unknown snapshot provider \"zfs\"",
        "inv.yaml:14: error: host bad-pm: unknown package_manager \"pacman\"",
        "inv.yaml:3: error: host bad-window skipped: fix the errors above",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
}

#[test]
fn broken_and_empty_files_are_diagnostics() {
    assert_eq!(
        messages(&parse("i.yaml", "")),
        ["i.yaml: error: empty inventory"]
    );
    assert_eq!(
        messages(&parse("i.yaml", "services: []\n")),
        ["i.yaml:1: error: no hosts: key"]
    );
    let broken = parse("i.yaml", "hosts: [\n");
    assert!(
        messages(&broken)[0].starts_with("i.yaml:"),
        "{:?}",
        messages(&broken)
    );
    assert_eq!(
        messages(&parse("i.yaml", "hosts: 3\n")),
        ["i.yaml:1: error: hosts is neither a list nor a mapping"]
    );
}

/// Health check timeouts in the one duration grammar, in whole seconds; a
/// bare number is still seconds. Each bad one is an error on its line.
#[test]
fn health_check_timeouts() {
    let cases: &[(&str, Result<u64, &str>)] = &[
        ("30", Ok(30)),
        ("30s", Ok(30)),
        ("2m", Ok(120)),
        ("1m30s", Ok(90)),
        ("1.5m", Ok(90)),
        (
            "soon",
            Err("inv.yaml:4: error: host a: timeout: \"soon\" is not a duration"),
        ),
        (
            "1500ms",
            Err("inv.yaml:4: error: host a: timeout \"1500ms\" is not a whole number of seconds"),
        ),
        (
            "0s",
            Err("inv.yaml:4: error: host a: timeout must not be zero"),
        ),
        (
            "[1]",
            Err("inv.yaml:4: error: host a: timeout must be a duration, not a list"),
        ),
    ];
    for (timeout, want) in cases {
        let text = format!(
            "hosts:\n  - name: a\n    health_checks:\n      - {{command: 'true', timeout: {timeout}}}\n"
        );
        let inv = parse("inv.yaml", &text);
        match want {
            Ok(secs) => assert_eq!(
                inv.hosts[0].health_checks,
                [HealthCheck::Command {
                    command: "true".into(),
                    timeout_secs: *secs
                }],
                "{timeout}"
            ),
            Err(message) => {
                assert!(inv.hosts.is_empty(), "{timeout}");
                let text = messages(&inv).join("\n");
                assert!(text.contains(message), "{timeout}: {text}");
            }
        }
    }
}

/// Hosts, names, addresses and groups come from the fleet scan's reader, so
/// both read the same hosts from the same file, `defaults:` groups included.
#[test]
fn hosts_are_the_fleet_scans_hosts() {
    let text = "defaults: {groups: [all]}\nhosts:\n  - name: a\n    address: 10.0.0.1\n  - name: b\n    groups: [db]\n";
    let inv = parse_ok(text);
    let (docs, _) = yaml::load(text);
    let fleet = scan::inventory::hosts("inventory/hosts.yaml", &docs[0]).hosts;
    let from_patch: Vec<model::Host> = inv
        .hosts
        .iter()
        .map(|h| model::Host {
            name: h.name.clone(),
            address: h.address.clone(),
            groups: h.groups.clone(),
            at: h.at.clone(),
        })
        .collect();
    assert_eq!(from_patch, fleet);
    assert_eq!(fleet[0].groups, ["all"]);
    assert_eq!(fleet[1].groups, ["db"]);
}

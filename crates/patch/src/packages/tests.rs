use super::*;

fn pkg(name: &str, version: &str, status: &str) -> InstalledPackage {
    InstalledPackage {
        name: name.into(),
        arch: "all".into(),
        version: version.into(),
        status: status.into(),
    }
}

#[test]
fn dpkg_query_output_is_read_and_sorted() {
    let text = "zlib\tamd64\t1:1.2\tii \ndemo\tall\t1.2\tiF \n\nbroken line\n";
    let p = parse_dpkg_query(text);
    assert_eq!(p.len(), 2);
    assert_eq!(p[0], pkg("demo", "1.2", "iF"));
    assert_eq!(p[1].to_string(), "zlib:amd64 1:1.2 [ii]");
    assert!(!p[0].is_ok() && p[1].is_ok());
}

/// Real `apt-get -s dist-upgrade` lines (apt 2.6).
#[test]
fn apt_simulation_lists_upgrades_installs_and_removals() {
    let text = "\
NOTE: This is only a simulation!
Inst demo [1.0] (1.1 localhost [all])
Inst demo-extras (1.1 localhost [all])
Inst libc6:i386 [2.36-9] (2.36-9+deb12u4 Debian-Security:12/stable-security [i386])
Remv old-tool [0.9]
Conf demo (1.1 localhost [all])
";
    let c = parse_apt_simulation(text);
    assert_eq!(c.len(), 4);
    assert_eq!(
        c[0],
        PackageChange {
            name: "demo".into(),
            arch: Some("all".into()),
            from: Some("1.0".into()),
            to: Some("1.1".into())
        }
    );
    assert_eq!(c[1].to_string(), "demo-extras (new) 1.1");
    assert_eq!(c[2].arch.as_deref(), Some("i386"));
    assert_eq!(c[2].to.as_deref(), Some("2.36-9+deb12u4"));
    assert_eq!(c[3].to_string(), "old-tool 0.9 (removed)");
}

#[test]
fn history_log_entries_keep_changes_and_errors() {
    let text = "
Start-Date: 2026-11-26  15:09:40
Commandline: apt-get -y dist-upgrade
Upgrade: demo:amd64 (1.0, 1.1), libdemo:amd64 (2.0, 2.1)
Install: demo-extras:amd64 (1.1, automatic)
End-Date: 2026-11-26  15:09:40

Start-Date: 2026-11-26  15:09:43
Commandline: apt-get -y dist-upgrade
Upgrade: demo:amd64 (1.1, 1.2)
Remove: old:amd64 (0.9)
Error: Sub-process /usr/bin/dpkg returned an error code (1)
End-Date: 2026-11-26  15:09:43
";
    let h = parse_history(text);
    assert_eq!(h.len(), 2);
    assert_eq!(
        h[0].changes
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        [
            "demo 1.0 -> 1.1",
            "libdemo 2.0 -> 2.1",
            "demo-extras (new) 1.1"
        ]
    );
    assert_eq!(h[0].error, None);
    assert_eq!(
        h[1].error.as_deref(),
        Some("Sub-process /usr/bin/dpkg returned an error code (1)")
    );
    assert_eq!(h[1].changes[1].to_string(), "old 0.9 (removed)");
    assert_eq!(h[1].end.as_deref(), Some("2026-11-26  15:09:43"));
    assert!(parse_history("Upgrade: stray (1, 2)\n").is_empty());
}

#[test]
fn dpkg_audit_names_the_broken_packages() {
    let text = "The following packages are only half configured, probably due to problems
configuring them the first time.  The configuration should be retried using
dpkg --configure <package> or the configure menu option in dselect:
 demo                 demo package
";
    assert_eq!(parse_dpkg_audit(text), ["demo"]);
    assert!(parse_dpkg_audit("").is_empty());
}

#[test]
fn proc_locks_are_read_and_waiters_skipped() {
    let text = "1: POSIX  ADVISORY  WRITE 4242 fe:00:10274410 0 EOF\n1: -> POSIX  ADVISORY  WRITE 4243 fe:00:10274410 0 EOF\n2: FLOCK  ADVISORY  WRITE 77 00:1a:99 0 EOF\n";
    let l = parse_proc_locks(text);
    assert_eq!(l.len(), 2);
    assert_eq!(
        (l[0].pid, l[0].major, l[0].minor, l[0].inode),
        (4242, 254, 0, 10_274_410)
    );
    assert_eq!(l[1].kind, "FLOCK");
}

#[test]
fn reboot_needs_from_needrestart_and_the_flag_file() {
    let nr = "NEEDRESTART-VER: 3.6\nNEEDRESTART-KCUR: 6.1.0-20-amd64\nNEEDRESTART-KEXP: 6.1.0-21-amd64\nNEEDRESTART-KSTA: 3\n";
    assert_eq!(
        parse_needrestart_batch(nr).to_string(),
        "required (kernel 6.1.0-20-amd64 running, 6.1.0-21-amd64 installed)"
    );
    assert_eq!(
        parse_needrestart_batch("NEEDRESTART-KSTA: 1\n"),
        RebootNeed::NotRequired
    );
    assert_eq!(
        parse_needrestart_batch("NEEDRESTART-KSTA: 0\n"),
        RebootNeed::Unknown
    );
    assert_eq!(
        reboot_required_file(
            Some("*** System restart required ***"),
            Some("linux-image-6.1.0-21-amd64\n")
        )
        .to_string(),
        "required (linux-image-6.1.0-21-amd64)"
    );
    assert_eq!(reboot_required_file(None, None), RebootNeed::NotRequired);
    assert!(is_kernel_package("linux-image-6.1.0-21-amd64") && is_kernel_package("kernel-core"));
    assert!(!is_kernel_package("linux-base"));
}

#[test]
fn restore_plans_reinstall_changed_and_purge_new_packages() {
    let before = vec![
        pkg("a", "1.0", "ii"),
        pkg("b", "1.0", "ii"),
        pkg("c", "1.0", "ii"),
    ];
    let now = vec![
        pkg("a", "1.2", "iF"),
        pkg("b", "1.0", "ii"),
        pkg("d", "1.0", "ii"),
    ];
    let plan = restore_plan(&before, &now);
    assert_eq!(plan.install, [pkg("a", "1.0", "ii"), pkg("c", "1.0", "ii")]);
    assert_eq!(plan.purge, [pkg("d", "1.0", "ii")]);
    assert_eq!(
        state_differences(&before, &now),
        [
            "a is 1.2 [iF], was 1.0 [ii]",
            "c:all 1.0 [ii] is missing",
            "d:all 1.0 [ii] was not installed"
        ]
    );
    assert!(restore_plan(&before, &before).is_empty());
    assert!(state_differences(&before, &before).is_empty());
}

//! Scenario `patch`: a rolling patch of the lab's dpkg hosts inside their
//! maintenance window, one host per batch. The third host's new release
//! fails its health check: it is rolled back automatically (its `dpkg-query
//! -W` is identical to before), the 0% batch threshold halts the run, and
//! the host after it is never touched.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use super::live;
use super::{Lab, Report, ScenarioError, failed};
use crate::infra;

/// A Saturday night inside the hosts' window, and a Wednesday outside it.
const IN_WINDOW: &str = "2025-06-07T02:30:00Z";
const OUT_OF_WINDOW: &str = "2025-06-04T12:00:00Z";

/// Each host's root, from the inventory the lab wrote.
fn roots(inventory: &std::path::Path) -> BTreeMap<String, PathBuf> {
    let folder = inventory.parent().unwrap_or(inventory).to_path_buf();
    let text = std::fs::read_to_string(inventory).unwrap_or_default();
    let mut out = BTreeMap::new();
    let mut host = None;
    for line in text.lines() {
        if let Some(name) = line.trim().strip_prefix("- name: ") {
            host = Some(name.to_string());
        } else if let (Some(h), Some(rest)) =
            (&host, line.trim().strip_prefix("transport: {local: "))
        {
            out.insert(h.clone(), folder.join(rest.trim_end_matches('}').trim()));
        }
    }
    out
}

pub fn run(lab: &mut Lab, report: &mut Report) -> Result<(), ScenarioError> {
    let inventory = lab.dir.join(infra::HOSTS_INVENTORY);
    live::eventually(
        "the lab's dpkg hosts",
        std::time::Duration::from_secs(120),
        // Built once lab.json says so (each `lab up` builds them anew).
        || {
            let record = crate::up::read_record(&lab.dir).ok()?;
            record["provision"]["hosts"]["hosts"].as_u64()?;
            inventory.is_file().then_some(())
        },
    )?;
    let roots = roots(&inventory);
    if roots.len() != infra::HOSTS.len() {
        return Err(failed(
            "the hosts inventory",
            format!("{} names {} hosts", inventory.display(), roots.len()),
        ));
    }
    let query = |root: &PathBuf| hostops::testbed::dpkg_query_w(root).unwrap_or_else(|e| e);
    let before: BTreeMap<&String, String> = roots.iter().map(|(h, r)| (h, query(r))).collect();
    let state = lab.dir.join("scenarios/patch/state");
    let _ = std::fs::remove_dir_all(&state);
    let inv = inventory.display().to_string();
    let state_arg = state.display().to_string();
    // `patch VERB` on the lab's hosts, one host a batch, at the time `now`.
    let patch = |verb: &'static str, now: &'static str, extra: &[&'static str]| {
        let mut args = vec![
            "patch",
            verb,
            "--inventory",
            inv.as_str(),
            "--state",
            state_arg.as_str(),
            "--batch",
            "1",
        ];
        args.extend_from_slice(extra);
        args.extend(["--now", now, "--json"]);
        args
    };

    let closed = lab.run(report, &patch("run", OUT_OF_WINDOW, &[]))?;
    report.check(
        "outside the maintenance window nothing is patched",
        roots.iter().all(|(h, r)| before[h] == query(r)),
        format!(
            "patch run at {OUT_OF_WINDOW} exits {}, every host's dpkg-query -W unchanged",
            closed.exit
        ),
    );
    let _ = std::fs::remove_dir_all(&state);
    let plan = lab.run_json(report, &patch("plan", IN_WINDOW, &[]))?;
    let waves = plan["plan"]["waves"].as_array().map_or(0, Vec::len);
    let ran = lab.run(
        report,
        &patch("run", IN_WINDOW, &["--max-fail-percent", "0"]),
    )?;
    let status: Value = ran.json()?;
    let state_of = |host: &str| -> String {
        status["hosts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|h| h["name"] == host)
            .and_then(|h| h["state"]["state"].as_str())
            .unwrap_or("untouched")
            .to_string()
    };
    let (bad, _) = infra::HOSTS
        .iter()
        .find(|(_, v)| *v == "1.3")
        .copied()
        .unwrap_or(("", ""));
    let bad_index = infra::HOSTS
        .iter()
        .position(|(h, _)| *h == bad)
        .unwrap_or(0);
    let states: BTreeMap<&str, String> = infra::HOSTS
        .iter()
        .map(|(h, _)| (*h, state_of(h)))
        .collect();
    report.check(
        "the run halts at the batch threshold (exit 1)",
        ran.exit == 1
            && status["outcome"]
                .as_str()
                .is_some_and(|o| o.contains("halt")),
        format!("exit {}, outcome {}", ran.exit, status["outcome"]),
    );
    let patched_before_bad = infra::HOSTS[..bad_index]
        .iter()
        .all(|(h, _)| states[h] == "patched" && query(&roots[*h]).contains("demo\t1.1"));
    report.check(
        "the hosts before the failing one are patched",
        patched_before_bad,
        format!("{states:?}"),
    );
    let bad_root = &roots[bad];
    report.check(
        "the host that failed its health check is rolled back: dpkg-query -W identical",
        states[bad] == "rolled_back" && query(bad_root) == before[&bad.to_string()],
        format!(
            "{bad}: {}",
            query(bad_root).replace('\t', " ").replace('\n', ", ")
        ),
    );
    let untouched: Vec<&str> = infra::HOSTS[bad_index + 1..]
        .iter()
        .map(|(h, _)| *h)
        .filter(|h| query(&roots[*h]) == before[&h.to_string()])
        .collect();
    report.check(
        "the hosts after the halted batch are not touched",
        untouched.len() == infra::HOSTS.len() - bad_index - 1,
        format!("unchanged: {untouched:?}"),
    );
    let rollback_seconds = status["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|h| h["name"] == bad)
        .and_then(|h| h["rollback_seconds"].as_f64());
    report.evidence("states", &states);
    report.evidence("waves", waves);
    report.evidence("rollback_seconds", rollback_seconds);
    report.evidence("dpkg_query_before", &before);

    report.answers.what_breaks = vec![format!(
        "{bad}: demo 1.3 installs, but its health check fails"
    )];
    report.answers.who_is_impacted = vec![format!(
        "{bad_index} host(s) patched before it, 1 rolled back, {} never touched",
        untouched.len()
    )];
    report.answers.how_fast_we_roll_back = vec![format!(
        "{bad} rolled back automatically in {} s to the .debs saved before its upgrade",
        rollback_seconds.map_or("?".into(), |s| format!("{s:.2}"))
    )];
    report.answers.how_we_monitor = vec![
        "a health check per host after each upgrade; the batch threshold stops the run".into(),
        format!(
            "`bulkhead patch status --state {}` shows every step, recorded before it ran",
            state.display()
        ),
    ];
    Ok(())
}

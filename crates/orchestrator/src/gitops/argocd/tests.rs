//! Application statuses as Argo CD writes them, judged against a commit.

use super::*;

/// Application statuses as Argo CD writes them, and what each means for the commit waited for.
#[test]
fn statuses_are_judged_against_the_commit() {
    let c = "0123456789abcdef0123456789abcdef01234567";
    let app = |sync: &str, rev: &str, health: &str, message: &str| {
        serde_json::json!({"status": {
            "sync": {"status": sync, "revision": rev},
            "health": {"status": health, "message": message}}})
    };
    let cases = [
        (
            app("Synced", "older", "Healthy", ""),
            Sync::Waiting("sync Synced at older, health Healthy".into()),
        ),
        (
            app("OutOfSync", c, "Progressing", ""),
            Sync::Waiting("sync OutOfSync at 0123456789ab, health Progressing".into()),
        ),
        (
            app("Synced", c, "Progressing", ""),
            Sync::Waiting("sync Synced at 0123456789ab, health Progressing".into()),
        ),
        (app("Synced", c, "Healthy", ""), Sync::Done),
        (
            app(
                "Synced",
                c,
                "Degraded",
                "Deployment \"shop\" exceeded its progress deadline",
            ),
            Sync::Failed(
                "Degraded at 0123456789ab: Deployment \"shop\" exceeded its progress deadline"
                    .into(),
            ),
        ),
        (
            serde_json::json!({"status": {"sync": {"status": "OutOfSync", "revision": "older"},
                "operationState": {"phase": "Failed", "message": "one or more objects failed to apply",
                                   "syncResult": {"revision": c}}}}),
            Sync::Failed(
                "the sync of 0123456789ab failed: one or more objects failed to apply".into(),
            ),
        ),
    ];
    for (app, want) in cases {
        assert_eq!(judge(&app, c), want, "{app}");
    }
}

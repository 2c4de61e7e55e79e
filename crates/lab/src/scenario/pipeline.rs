//! SCAFFOLD: replace with the real scenario.

use super::{Lab, Report, ScenarioError};

pub fn run(_lab: &mut Lab, _report: &mut Report) -> Result<(), ScenarioError> {
    Err(ScenarioError::Failed {
        what: "scenario".into(),
        detail: "not built yet".into(),
    })
}

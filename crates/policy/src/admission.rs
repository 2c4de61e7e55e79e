//! Admission: an AdmissionReview (admission.k8s.io/v1) in, the decision and
//! the AdmissionReview response out. The HTTPS server around it is the `admission` crate.
//!
//! Denying findings deny with their messages; warnings become the response's
//! `warnings`. A dry-run request is decided the same way (the webhook has no
//! side effects) and says so in `dry_run`. When a policy fails to evaluate
//! (an error or the time budget), [`FailurePolicy`] decides: `Closed` denies,
//! `Open` allows with a warning.

use crate::{Finding, Level, Policies, PolicyError, input};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What to do when policies cannot decide in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    Open,
    Closed,
}

/// Why a request is not a valid AdmissionReview: the webhook answers 400 with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    #[error("request body is not JSON: {0}")]
    NotJson(String),
    #[error(
        "expected an admission.k8s.io/v1 AdmissionReview, got apiVersion {api:?} kind {kind:?}"
    )]
    NotAdmissionReview { api: String, kind: String },
    #[error("AdmissionReview has no request")]
    NoRequest,
    #[error("AdmissionReview request has no uid")]
    NoUid,
}

/// The decision on one review.
#[derive(Debug, Clone, PartialEq)]
pub struct AdmissionDecision {
    pub uid: String,
    pub allowed: bool,
    pub denials: Vec<String>,
    pub warnings: Vec<String>,
    pub dry_run: bool,
    /// The evaluation failure the failure policy was applied to, if any.
    pub error: Option<PolicyError>,
}

impl AdmissionDecision {
    /// The AdmissionReview v1 response, uid echoed, ready to serialize.
    pub fn response(&self) -> ReviewResponse<'_> {
        ReviewResponse {
            api_version: "admission.k8s.io/v1",
            kind: "AdmissionReview",
            response: Answer {
                uid: &self.uid,
                allowed: self.allowed,
                status: (!self.allowed).then(|| Status {
                    code: 403,
                    reason: "Forbidden",
                    message: self.denials.join("; "),
                }),
                warnings: &self.warnings,
            },
        }
    }
}

/// An AdmissionReview v1 carrying a response. Serialized straight from the
/// decision: the webhook writes one per review, and building a JSON tree
/// first cost more than writing it.
#[derive(Debug, Serialize)]
pub struct ReviewResponse<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    response: Answer<'a>,
}

#[derive(Debug, Serialize)]
struct Answer<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Status>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
}

#[derive(Debug, Serialize)]
struct Status {
    code: u16,
    reason: &'static str,
    message: String,
}

/// Decides one AdmissionReview body.
///
/// # Errors
/// When the body is not a v1 AdmissionReview with a request and a uid.
pub fn decide(
    policies: &mut Policies,
    body: &[u8],
    failure: FailurePolicy,
) -> Result<AdmissionDecision, ReviewError> {
    // Only the bundle's rules: they read the object alone, so only the object
    // is built as a Rego value, in the same pass that reads the envelope.
    // Anything the slim reading does not take (a review whose policies read
    // the whole request, a field of an odd type, a duplicate key) goes the
    // general way.
    if !policies.reads_request()
        && let Ok(slim) = serde_json::from_slice::<SlimReview>(body)
        && let Some(checked) = slim.checked()
    {
        let Checked {
            uid,
            dry_run,
            object,
        } = checked?;
        return Ok(match object {
            None => allowed(uid, dry_run),
            Some(object) => {
                let subject = input::subject_of_rego(&object);
                judge(
                    policies.admit_object(&subject, object),
                    uid,
                    dry_run,
                    failure,
                )
            }
        });
    }
    let review: Value =
        serde_json::from_slice(body).map_err(|e| ReviewError::NotJson(e.to_string()))?;
    let api = review
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = review.get("kind").and_then(Value::as_str).unwrap_or("");
    check_envelope(api, kind)?;
    let request = review
        .get("request")
        .filter(|r| r.is_object())
        .ok_or(ReviewError::NoRequest)?;
    let uid = request
        .get("uid")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .ok_or(ReviewError::NoUid)?
        .to_string();
    let dry_run = request
        .get("dryRun")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if request.get("object").is_none_or(Value::is_null) {
        return Ok(allowed(uid, dry_run));
    }
    Ok(judge(policies.admit(request), uid, dry_run, failure))
}

fn check_envelope(api: &str, kind: &str) -> Result<(), ReviewError> {
    if api != "admission.k8s.io/v1" || kind != "AdmissionReview" {
        return Err(ReviewError::NotAdmissionReview {
            api: api.to_string(),
            kind: kind.to_string(),
        });
    }
    Ok(())
}

/// What [`decide`] reads of a review when only the bundle's rules run.
#[derive(Deserialize)]
struct SlimReview {
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    kind: Option<String>,
    request: Option<SlimRequest>,
}

#[derive(Deserialize)]
struct SlimRequest {
    uid: Option<String>,
    #[serde(rename = "dryRun")]
    dry_run: Option<bool>,
    object: Option<regorus::Value>,
}

/// A valid review's request, as the bundle needs it.
struct Checked {
    uid: String,
    dry_run: bool,
    /// `None` for a DELETE, which carries no object: nothing to check.
    object: Option<regorus::Value>,
}

impl SlimReview {
    /// The request, or why the review is invalid; `None` when the general
    /// reading must decide (an object of an unexpected type).
    fn checked(self) -> Option<Result<Checked, ReviewError>> {
        let api = self.api_version.unwrap_or_default();
        let kind = self.kind.unwrap_or_default();
        if let Err(e) = check_envelope(&api, &kind) {
            return Some(Err(e));
        }
        let Some(request) = self.request else {
            return Some(Err(ReviewError::NoRequest));
        };
        let uid = match request.uid {
            Some(uid) if !uid.is_empty() => uid,
            _ => return Some(Err(ReviewError::NoUid)),
        };
        let dry_run = request.dry_run.unwrap_or(false);
        let object = match request.object {
            None | Some(regorus::Value::Null) => None,
            Some(object) if object.as_object().is_ok() => Some(object),
            Some(_) => return None,
        };
        Some(Ok(Checked {
            uid,
            dry_run,
            object,
        }))
    }
}

fn allowed(uid: String, dry_run: bool) -> AdmissionDecision {
    AdmissionDecision {
        uid,
        allowed: true,
        denials: Vec::new(),
        warnings: Vec::new(),
        dry_run,
        error: None,
    }
}

/// The decision from the policies' findings, or from the failure policy when they failed.
fn judge(
    findings: Result<Vec<Finding>, PolicyError>,
    uid: String,
    dry_run: bool,
    failure: FailurePolicy,
) -> AdmissionDecision {
    match findings {
        Ok(findings) => from_findings(uid, dry_run, &findings),
        Err(e) => {
            let message = format!("bulkhead policy: {e}");
            let (allowed, denials, warnings) = match failure {
                FailurePolicy::Closed => (false, vec![message], Vec::new()),
                FailurePolicy::Open => (
                    true,
                    Vec::new(),
                    vec![format!("{message}; allowed (fail-open)")],
                ),
            };
            AdmissionDecision {
                uid,
                allowed,
                denials,
                warnings,
                dry_run,
                error: Some(e),
            }
        }
    }
}

fn from_findings(uid: String, dry_run: bool, findings: &[Finding]) -> AdmissionDecision {
    let text = |f: &Finding| format!("[{}] {}", f.policy, f.message);
    let denials: Vec<String> = findings
        .iter()
        .filter(|f| f.level == Level::Deny)
        .map(text)
        .collect();
    let warnings = findings
        .iter()
        .filter(|f| f.level == Level::Warn)
        .map(text)
        .collect();
    AdmissionDecision {
        uid,
        allowed: denials.is_empty(),
        denials,
        warnings,
        dry_run,
        error: None,
    }
}

#[cfg(test)]
mod tests;

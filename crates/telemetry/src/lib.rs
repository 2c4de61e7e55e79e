//! Telemetry pieces that the gateway and the demo service share: `tracestate`
//! list members by W3C Trace Context level 2, and the UTC timestamps of their
//! JSON logs. Pure: text and times in, values out.

mod time;
mod tracestate;

pub use time::{civil_from_days, rfc3339_millis};
pub use tracestate::{MAX_TRACESTATE_MEMBERS, MemberError, push_members};

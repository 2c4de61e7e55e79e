//! Telemetry pieces that the gateway and the demo service share: `tracestate`
//! list members by W3C Trace Context level 2. Pure: text in, values out.

mod tracestate;

pub use tracestate::{MAX_TRACESTATE_MEMBERS, MemberError, push_members};

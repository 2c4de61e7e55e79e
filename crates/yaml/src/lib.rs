//! The text layer under every bulkhead file format: YAML with a line for every
//! node and diagnostics instead of panics, and the scalar grammars that files
//! and flags share, so that `30s` means the same thing everywhere.

pub mod duration;
pub mod node;
pub mod time;

pub use duration::{DurationError, format_duration, parse_duration};
pub use node::{MAX_DEPTH, MAX_NODES, Node, Value, YamlError, load};

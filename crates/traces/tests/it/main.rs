//! Data-driven tests of the trace analysis: hand-built traces in a small text
//! format (see `fixture.rs`) in, the facts the analysis must find out.

mod analysis;
mod dependencies;
mod fixture;
mod robustness;
mod waterfall;

//! One module per top-level verb: its arguments, and the work that parses
//! them, calls the libraries and prints. They use `args` and `output`, and
//! `images` shares its loading with `cve` and `impact image`.

pub mod cluster;
pub mod collector;
pub mod console;
pub mod cve;
pub mod demo;
pub mod gateway;
pub mod images;
pub mod impact;
pub mod lab;
pub mod patch;
pub mod policy;
pub mod rollout;
pub mod scan;
pub mod template;
pub mod trace;

//! The bulkhead lab: sample fleets to rehearse change-impact scenarios on.
//!
//! [`generate`] writes a deterministic, realistic microservice fleet (service repos, the shared
//! CI template repo, the base image repo, scanner reports, a host inventory) together with a
//! ground truth of every fact it planted, so that scanners and impact analysis can be checked
//! against known answers. [`up`] runs a live lab on it: the services, the gateway and the
//! collector as supervised child processes, with the registry, webhook and dpkg hosts
//! of [`infra`]; [`scenario`] carries changes out on it.

pub mod cluster;
pub mod generate;
pub mod infra;
pub mod scenario;
pub mod tour;
pub mod up;

//! Progressive delivery's I/O edge (`rollout` is its pure half): the
//! executors that change routing (the bulkhead gateway's admin API, a GitOps
//! repository, a Kubernetes API server), the metric providers that feed
//! analysis gates, the state database that records every transition before
//! it is acted on, and the driver that runs a rollout from the pure `rollout`
//! crate's state machine.
//!
//! An executor is always a routing backend behind [`Executor`] (what
//! `--executor` picks); the loop that runs a rollout is the [`driver::Driver`].
//!
//! The same kubeconfig client also reads a cluster's workloads live
//! ([`cluster`]) for the image analyses, prints a rollout's patches as
//! `kubectl diff`s, and exports the RBAC rules all of it needs.

pub mod analysis;
pub mod cluster;
pub mod driver;
pub mod executor;
pub mod gateway;
pub mod gitops;
pub mod kubeconfig;
pub mod kubernetes;
pub mod metrics;
pub mod operator;
pub mod state;

pub use executor::{ExecError, Executor, ImageMove, Labels, WeightedPool};

#[cfg(test)]
mod testutil;

use analysis::Sources;
use state::Target;
use std::collections::BTreeMap;

fn token(env: Option<&String>) -> Result<Option<String>, ExecError> {
    env.map(|name| {
        std::env::var(name).map_err(|_| ExecError::Refused {
            target: format!("environment variable {name}"),
            detail: "not set (it should hold the bearer token)".to_string(),
        })
    })
    .transpose()
}

fn wait(seconds: Option<u64>) -> std::time::Duration {
    seconds.map_or(kubernetes::DEFAULT_WAIT, std::time::Duration::from_secs)
}

/// Builds the executor and the metric sources a stored target describes,
/// reading tokens from the environment variables it names.
///
/// # Errors
/// When a token variable is unset or the executor cannot be set up.
pub fn connect(target: &Target) -> Result<(Box<dyn Executor>, Sources), ExecError> {
    Ok(match target {
        Target::Gateway {
            admin,
            token_env,
            metrics,
        } => {
            let token = token(token_env.as_ref())?;
            let sources = Sources {
                gateway_metrics: Some(metrics.clone()),
                gateway_token: token.clone(),
            };
            (
                Box::new(gateway::GatewayExecutor::new(admin, token)?),
                sources,
            )
        }
        Target::Gitops {
            repo,
            branch,
            metrics,
            metrics_token_env,
            remote,
            argocd,
        } => (
            Box::new({
                let mut executor = gitops::GitOpsExecutor::new(repo, branch)?;
                if let Some(remote) = remote {
                    executor = executor.pushing_to(remote);
                }
                if let Some(argo) = argocd {
                    let kube = kubernetes::KubernetesExecutor::from_kubeconfig(
                        &argo.kubeconfig,
                        argo.context.as_deref(),
                        Some(argo.namespace.as_str()),
                    )?
                    .waiting_at_most(wait(argo.wait_seconds));
                    executor = executor.syncing_with(gitops::ArgoCd::new(
                        kube,
                        &argo.namespace,
                        &argo.application,
                    ));
                }
                executor
            }),
            Sources {
                gateway_metrics: metrics.clone(),
                gateway_token: token(metrics_token_env.as_ref())?,
            },
        ),
        Target::Kubernetes {
            api,
            namespace,
            token_env,
            metrics,
            metrics_token_env,
            kubeconfig,
            context,
            wait_seconds,
        } => (
            Box::new(
                match kubeconfig {
                    Some(path) => kubernetes::KubernetesExecutor::from_kubeconfig(
                        path,
                        context.as_deref(),
                        Some(namespace.as_str()).filter(|n| !n.is_empty()),
                    )?,
                    None => kubernetes::KubernetesExecutor::new(
                        api,
                        namespace,
                        token(token_env.as_ref())?,
                    )?,
                }
                .waiting_at_most(wait(*wait_seconds)),
            ),
            Sources {
                gateway_metrics: metrics.clone(),
                gateway_token: token(metrics_token_env.as_ref())?,
            },
        ),
    })
}

/// The routing of every service outside the rollout's change set: what the
/// executor reports, less the routes the plan changes.
///
/// # Errors
/// When the executor cannot be read.
pub fn outside_routing(
    executor: &mut dyn Executor,
    plan: &rollout::Plan,
) -> Result<BTreeMap<String, String>, ExecError> {
    let mut routing = executor.routing()?;
    for (name, service) in &plan.rollouts {
        routing.remove(name);
        routing.remove(&service.route);
    }
    Ok(routing)
}

//! `bulkhead cluster ...`: a live cluster through its kubeconfig. `snapshot`
//! saves its workloads as `kubectl get -A -o json` prints them; `rbac`
//! prints the RBAC objects bulkhead needs there. [`ClusterArgs`] are the
//! `--cluster` flags of `cve` and `images audit`, which read the same way.

use crate::args::{Exit, Format, FormatArgs};
use crate::output;
use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use orchestrator::cluster::{self, rbac};
use orchestrator::kubeconfig;
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Save a cluster's workloads (pods, deployments, statefulsets,
    /// daemonsets, jobs, cronjobs, every namespace) as `kubectl get -A -o json` prints them.
    ///
    /// Lists page by page (`--chunk-size`, as kubectl), starts a kind's list
    /// again when its continue token expires (410 Gone) and waits out 429s
    /// (Retry-After). The file is what `[cluster] snapshots` in bulkhead.toml
    /// reads: named CONTEXT.json, `cve` and `images audit` give the same
    /// answers from it as `--cluster CONTEXT` gives live.
    ///
    /// Example: bulkhead cluster snapshot --context prod -o clusters/prod.json
    Snapshot(SnapshotArgs),
    /// Print the RBAC objects bulkhead needs on a cluster, for `kubectl apply -f -`.
    ///
    /// A ClusterRole (list the workloads of every namespace: the live read),
    /// a Role in --namespace (services, httproutes, deployments: rollouts)
    /// and a Role in --argocd-namespace (Argo CD Applications: the GitOps
    /// executor's wait), each bound to one service account. The verbs and
    /// resources are exactly the requests bulkhead sends (docs/production.md).
    ///
    /// Example: bulkhead cluster rbac --namespace shop | kubectl apply -f -
    Rbac(RbacArgs),
}

/// How a command reaches live clusters: kubeconfig contexts.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Read the workloads of this kubeconfig context's cluster live, as
    /// `cluster snapshot` saves them (repeat for several; default: `[cluster]
    /// contexts` in bulkhead.toml). Answers name the cluster by its context.
    #[arg(long = "cluster", value_name = "CONTEXT")]
    pub contexts: Vec<String>,
    /// The kubeconfig of those contexts (default: `[cluster] kubeconfig`,
    /// else $KUBECONFIG, else ~/.kube/config); `in-cluster` uses the pod's
    /// service account.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
}

impl ClusterArgs {
    /// Reads the clusters these flags (else the fleet's `config`, paths
    /// relative to `root`) name.
    ///
    /// # Errors
    /// The first cluster that cannot be read.
    pub fn read(&self, root: &Path, config: &discover::Config) -> Result<Vec<images::Snapshot>> {
        let contexts = if self.contexts.is_empty() {
            &config.cluster.contexts
        } else {
            &self.contexts
        };
        if contexts.is_empty() {
            return Ok(Vec::new());
        }
        let path = match (&self.kubeconfig, &config.cluster.kubeconfig) {
            (Some(path), _) => path.clone(),
            (None, Some(path)) => root.join(path),
            (None, None) => default_kubeconfig(),
        };
        contexts
            .iter()
            .map(|context| {
                let snapshot = read(&path, Some(context), cluster::DEFAULT_PAGE_SIZE)?;
                Ok(images::Snapshot::live(&snapshot.context, snapshot.text))
            })
            .collect()
    }
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// The kubeconfig (default: $KUBECONFIG, else ~/.kube/config); `in-cluster`
    /// uses the pod's service account.
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// The context (default: the kubeconfig's current-context).
    #[arg(long, value_name = "NAME")]
    context: Option<String>,
    /// Where to write the snapshot (`-`: stdout).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: PathBuf,
    /// Objects per list request (kubectl's --chunk-size).
    #[arg(long, value_name = "N", default_value_t = cluster::DEFAULT_PAGE_SIZE,
          value_parser = clap::value_parser!(u32).range(1..))]
    chunk_size: u32,
}

#[derive(Debug, Args)]
pub struct RbacArgs {
    /// The namespace rollouts change, where the Role, its binding and the
    /// service account live.
    #[arg(long, value_name = "NS", default_value = "default")]
    namespace: String,
    /// The namespace of Argo CD's Applications (the GitOps executor's wait).
    #[arg(long, value_name = "NS", default_value = "argocd")]
    argocd_namespace: String,
    /// The service account bulkhead runs as.
    #[arg(long, value_name = "NAME", default_value = "bulkhead")]
    service_account: String,
    #[command(flatten)]
    format: FormatArgs,
}

pub fn run(command: ClusterCommand) -> Result<Exit> {
    match command {
        ClusterCommand::Snapshot(args) => snapshot(args),
        ClusterCommand::Rbac(args) => rbac_cmd(args),
    }
}

fn default_kubeconfig() -> PathBuf {
    kubeconfig::default_path(&|name| std::env::var(name).ok())
}

fn read(path: &Path, context: Option<&str>, page_size: u32) -> Result<cluster::Snapshot> {
    let snapshot = cluster::snapshot(path, context, page_size).with_context(|| {
        format!(
            "reading the cluster of context {} in {}",
            context.unwrap_or("(current)"),
            path.display()
        )
    })?;
    eprintln!(
        "{}: {}",
        snapshot.context,
        snapshot
            .counts
            .iter()
            .map(|(kind, n)| format!("{n} {kind}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(snapshot)
}

fn snapshot(args: SnapshotArgs) -> Result<Exit> {
    let path = args.kubeconfig.unwrap_or_else(default_kubeconfig);
    let snapshot = read(&path, args.context.as_deref(), args.chunk_size)?;
    if args.output == Path::new("-") {
        output::print(&snapshot.text)?;
        return Ok(Exit::Ran);
    }
    // Through a temporary file and a rename: a reader never sees half a snapshot.
    let file = &args.output;
    let tmp = file.with_extension("json.tmp");
    std::fs::write(&tmp, &snapshot.text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, file).with_context(|| format!("renaming {}", file.display()))?;
    eprintln!("wrote {}", file.display());
    Ok(Exit::Ran)
}

fn rbac_cmd(args: RbacArgs) -> Result<Exit> {
    match args.format.get() {
        Format::Json => output::print_json(&serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": rbac::objects(&args.namespace, &args.argocd_namespace, &args.service_account),
        }))?,
        Format::Table => output::print(&rbac::yaml(
            &args.namespace,
            &args.argocd_namespace,
            &args.service_account,
        ))?,
        Format::Markdown => output::print(&format!(
            "```yaml\n{}```\n",
            rbac::yaml(
                &args.namespace,
                &args.argocd_namespace,
                &args.service_account
            )
        ))?,
    }
    Ok(Exit::Ran)
}

//! The Kubernetes objects that run `bulkhead policy serve` as a cluster's
//! validating admission webhook: the ValidatingWebhookConfiguration, the
//! Service in front of the webhook, its Deployment, and the
//! PodDisruptionBudget that keeps a replica up through node drains.
//!
//! Text in, text out: the caller reads the certificate and gives the
//! `caBundle`. The objects are written as YAML by hand (every value is a
//! checked name, a number or a JSON-quoted string, which YAML reads as is),
//! so that the comments explaining the choices reach the operator.

/// What the objects are made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSpec {
    /// Name of every object (and the pods' `app.kubernetes.io/name` label).
    pub name: String,
    /// Where the Service and Deployment live; never itself reviewed.
    pub namespace: String,
    /// The bulkhead image the Deployment runs.
    pub image: String,
    pub replicas: u32,
    /// Base64 of the PEM CA (or self-signed certificate) that signs the serving certificate.
    pub ca_bundle: String,
    /// `Ignore` instead of `Fail` when the webhook cannot be reached.
    pub fail_open: bool,
    /// The API server's timeout for one review, 1 to 30 seconds.
    pub timeout_seconds: u32,
    /// The Secret (`kubernetes.io/tls`) holding `tls.crt` and `tls.key`.
    pub tls_secret: String,
    /// A ConfigMap of Gatekeeper templates and constraints, mounted and passed as `--policy`.
    pub policy_config_map: Option<String>,
    /// A ConfigMap of manifests, mounted and passed as `--inventory`.
    pub inventory_config_map: Option<String>,
    /// Keep the inventory as a live copy of the cluster instead
    /// (`--inventory-cluster --kubeconfig in-cluster`): the pods then run as
    /// their own ServiceAccount with its token mounted.
    pub live_inventory: bool,
    /// Flags passed on to `policy serve` (`--allowed-registry R`, ...).
    pub extra_args: Vec<String>,
}

/// The port the webhook listens on inside the pod.
pub const CONTAINER_PORT: u16 = 8443;

/// Why a spec cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {value:?}: {reason}")]
pub struct SpecError {
    pub field: &'static str,
    pub value: String,
    pub reason: &'static str,
}

/// A DNS-1123 label, as Kubernetes requires of Service and namespace names.
fn check_label(field: &'static str, value: &str) -> Result<(), SpecError> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(SpecError {
            field,
            value: value.to_string(),
            reason: "must be a DNS label: at most 63 of a-z, 0-9 and '-', not starting or ending with '-'",
        })
    }
}

/// A YAML scalar that reads back as exactly `s` (a JSON string is YAML).
fn quote(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// The webhook's objects as one multi-document YAML stream: the
/// ValidatingWebhookConfiguration, Service, Deployment and
/// PodDisruptionBudget, and with a live inventory its ServiceAccount.
///
/// # Errors
/// A name, namespace, Secret or ConfigMap that is not a DNS label, a timeout
/// outside 1 to 30 seconds, or no replicas.
pub fn manifests(spec: &WebhookSpec) -> Result<String, SpecError> {
    check_label("name", &spec.name)?;
    check_label("namespace", &spec.namespace)?;
    check_label("TLS secret", &spec.tls_secret)?;
    for cm in spec
        .policy_config_map
        .iter()
        .chain(&spec.inventory_config_map)
    {
        check_label("ConfigMap", cm)?;
    }
    if !(1..=30).contains(&spec.timeout_seconds) {
        return Err(SpecError {
            field: "timeout",
            value: spec.timeout_seconds.to_string(),
            reason: "the API server accepts 1 to 30 seconds",
        });
    }
    if spec.replicas == 0 {
        return Err(SpecError {
            field: "replicas",
            value: "0".into(),
            reason: "a webhook with no replica fails every review (or admits every one)",
        });
    }
    let name = &spec.name;
    let ns = &spec.namespace;
    let (failure_policy, failure_comment) = if spec.fail_open {
        (
            "Ignore",
            "    # failurePolicy Ignore (fail open): when no replica answers within\n    \
             # timeoutSeconds, the API server admits the object unchecked. Availability\n    \
             # wins over enforcement; `policy check` in CI still catches what slips by.\n",
        )
    } else {
        (
            "Fail",
            "    # failurePolicy Fail (fail closed): when no replica answers within\n    \
             # timeoutSeconds, the API server refuses the object. Nothing unchecked gets\n    \
             # in, at the price of blocking changes while the webhook is down: hence\n    \
             # several replicas, a PodDisruptionBudget, and kube-system and this\n    \
             # namespace left out below, so the cluster and the webhook can always be repaired.\n",
        )
    };
    let mut args = vec![
        "policy".to_string(),
        "serve".into(),
        "--listen".into(),
        format!("0.0.0.0:{CONTAINER_PORT}"),
        "--cert".into(),
        "/etc/bulkhead/tls/tls.crt".into(),
        "--key".into(),
        "/etc/bulkhead/tls/tls.key".into(),
    ];
    let mut mounts =
        String::from("        - {name: tls, mountPath: /etc/bulkhead/tls, readOnly: true}\n");
    let mut volumes = format!(
        "      - name: tls\n        secret: {{secretName: {}}}\n",
        spec.tls_secret
    );
    if let Some(cm) = &spec.policy_config_map {
        args.extend(["--policy".into(), "/etc/bulkhead/policy".into()]);
        mounts.push_str(
            "        - {name: policy, mountPath: /etc/bulkhead/policy, readOnly: true}\n",
        );
        volumes.push_str(&format!(
            "      - name: policy\n        configMap: {{name: {cm}}}\n"
        ));
    }
    if let Some(cm) = &spec.inventory_config_map {
        args.extend(["--inventory".into(), "/etc/bulkhead/inventory".into()]);
        mounts.push_str(
            "        - {name: inventory, mountPath: /etc/bulkhead/inventory, readOnly: true}\n",
        );
        volumes.push_str(&format!(
            "      - name: inventory\n        configMap: {{name: {cm}}}\n"
        ));
    }
    if spec.live_inventory {
        args.extend([
            "--inventory-cluster".into(),
            "--kubeconfig".into(),
            "in-cluster".into(),
        ]);
    }
    if spec.fail_open {
        args.push("--fail-open".into());
    }
    args.extend(spec.extra_args.iter().cloned());
    let args: String = args
        .iter()
        .map(|a| format!("        - {}\n", quote(a)))
        .collect();
    let image = quote(&spec.image);
    let ca_bundle = quote(&spec.ca_bundle);
    let timeout = spec.timeout_seconds;
    let replicas = spec.replicas;
    // Without a live inventory the webhook never calls the API server, so the
    // pods get no token at all; with one, only the token of their own account,
    // which `bulkhead cluster rbac` binds to list and watch.
    let (account, service_account) = if spec.live_inventory {
        (
            format!("      serviceAccountName: {name}\n      automountServiceAccountToken: true\n"),
            format!(
                "---
# The webhook's own identity for its live inventory. Bind it to list and watch the
# copied kinds with: bulkhead cluster rbac --namespace {ns} --service-account {name}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {name}
  namespace: {ns}
  labels: {{app.kubernetes.io/name: {name}}}
"
            ),
        )
    } else {
        (
            "      automountServiceAccountToken: false\n".to_string(),
            String::new(),
        )
    };
    Ok(format!(
        "# The admission webhook: bulkhead policy serve behind a Service, registered with the API server.
# Apply after the Secret {secret} (type kubernetes.io/tls, for {name}.{ns}.svc) exists in {ns}.
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: {name}
  labels: {{app.kubernetes.io/name: {name}}}
webhooks:
  - name: {name}.{ns}.svc
    admissionReviewVersions: [v1]
    sideEffects: None
{failure_comment}    failurePolicy: {failure_policy}
    # The API server's limit for one review; the webhook's own --budget (2s) is shorter.
    timeoutSeconds: {timeout}
    matchPolicy: Equivalent
    clientConfig:
      service: {{name: {name}, namespace: {ns}, path: /validate, port: 443}}
      # Base64 of the PEM CA that signed the serving certificate; the API server trusts only it.
      caBundle: {ca_bundle}
    # Every namespace but kube-system and the webhook's own: a broken webhook must never
    # stop the cluster's components or its own repair.
    namespaceSelector:
      matchExpressions:
        - key: kubernetes.io/metadata.name
          operator: NotIn
          values: [kube-system, {ns}]
    rules:
      - apiGroups: [\"*\"]
        apiVersions: [\"*\"]
        operations: [CREATE, UPDATE]
        resources: [\"*\"]
        scope: Namespaced
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: {ns}
  labels: {{app.kubernetes.io/name: {name}}}
spec:
  selector: {{app.kubernetes.io/name: {name}}}
  ports:
    - {{name: https, port: 443, targetPort: {port}, protocol: TCP}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {ns}
  labels: {{app.kubernetes.io/name: {name}}}
spec:
  # Reviews are independent and the policies are read-only: replicas scale reads alone.
  replicas: {replicas}
  selector:
    matchLabels: {{app.kubernetes.io/name: {name}}}
  template:
    metadata:
      labels: {{app.kubernetes.io/name: {name}}}
    spec:
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels: {{app.kubernetes.io/name: {name}}}
{account}      securityContext: {{runAsNonRoot: true, runAsUser: 65532, seccompProfile: {{type: RuntimeDefault}}}}
      containers:
      - name: webhook
        image: {image}
        args:
{args}        ports:
          - {{name: https, containerPort: {port}}}
        readinessProbe:
          httpGet: {{path: /healthz, port: https, scheme: HTTPS}}
          periodSeconds: 5
        livenessProbe:
          httpGet: {{path: /healthz, port: https, scheme: HTTPS}}
          periodSeconds: 10
        resources:
          requests: {{cpu: 100m, memory: 64Mi}}
          limits: {{memory: 256Mi}}
        securityContext: {{allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {{drop: [ALL]}}}}
        volumeMounts:
{mounts}      volumes:
{volumes}---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {name}
  namespace: {ns}
  labels: {{app.kubernetes.io/name: {name}}}
spec:
  # A drain never takes the last replica: with failurePolicy Fail that would stop every change.
  minAvailable: 1
  selector:
    matchLabels: {{app.kubernetes.io/name: {name}}}
{service_account}",
        secret = spec.tls_secret,
        port = CONTAINER_PORT,
    ))
}

#[cfg(test)]
mod tests;

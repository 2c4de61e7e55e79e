use super::*;

const CONFIG: &str = "apiVersion: v1
kind: Config
current-context: prod
clusters:
  - name: prod-cluster
    cluster:
      server: https://10.0.0.1:6443/
      certificate-authority: ca.crt
  - name: dev-cluster
    cluster:
      server: https://dev.example:6443
      certificate-authority-data: LS0tLS1CRUdJTg==
contexts:
  - name: prod
    context: {cluster: prod-cluster, user: admin, namespace: shop}
  - name: dev
    context: {cluster: dev-cluster, user: dev}
  - name: broken
    context: {cluster: nowhere, user: admin}
  - name: half
    context: {cluster: dev-cluster, user: half}
users:
  - name: admin
    user:
      client-certificate: certs/admin.crt
      client-key-data: S0VZ
  - name: dev
    user: {tokenFile: token}
  - name: half
    user: {client-certificate-data: Q0VSVA==}
";

fn read(path: &Path) -> Result<Vec<u8>, String> {
    match path.to_str() {
        Some("/home/ops/.kube/ca.crt") => Ok(b"CA".to_vec()),
        Some("/home/ops/.kube/certs/admin.crt") => Ok(b"CERT".to_vec()),
        Some("/home/ops/.kube/token") => Ok(b"t0ken\n".to_vec()),
        _ => Err("No such file or directory".into()),
    }
}

fn resolved(context: Option<&str>) -> Result<Cluster, KubeconfigError> {
    resolve(Path::new("/home/ops/.kube/config"), CONFIG, context, &read)
}

#[test]
fn contexts_resolve_to_server_ca_user_and_namespace() {
    let prod = resolved(None).unwrap();
    assert_eq!(prod.server, "https://10.0.0.1:6443");
    assert_eq!(prod.ca_pem.as_deref(), Some(b"CA".as_slice()));
    assert_eq!(prod.namespace.as_deref(), Some("shop"));
    assert!(
        prod.auth
            == Auth::ClientCertificate {
                cert_pem: b"CERT".to_vec(),
                key_pem: b"KEY".to_vec()
            }
    );
    assert_eq!(prod.context, "prod");
    let dev = resolved(Some("dev")).unwrap();
    assert_eq!(dev.context, "dev");
    assert_eq!(dev.ca_pem.as_deref(), Some(b"-----BEGIN".as_slice()));
    assert!(dev.auth == Auth::Token("t0ken".into()));
    assert_eq!(dev.namespace, None);
}

#[test]
fn what_cannot_be_used_is_named_with_its_place() {
    for (context, expect) in [
        (
            Some("staging"),
            "/home/ops/.kube/config:1: no context named \"staging\"",
        ),
        (
            Some("broken"),
            "/home/ops/.kube/config:1: no cluster named \"nowhere\"",
        ),
        (
            Some("half"),
            "/home/ops/.kube/config:30: user \"half\" has a client certificate without its key",
        ),
    ] {
        let error = resolved(context).unwrap_err().to_string();
        assert!(error.starts_with(expect), "{error}");
    }
    let no_current = resolve(Path::new("k"), "clusters: []\n", None, &read).unwrap_err();
    assert_eq!(
        no_current.to_string(),
        "k: no current-context: give --context"
    );
    let insecure = "current-context: a\nclusters: [{name: c, cluster: {server: https://x, insecure-skip-tls-verify: true}}]\ncontexts: [{name: a, context: {cluster: c}}]\n";
    let error = resolve(Path::new("k"), insecure, None, &read)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("insecure-skip-tls-verify is refused"),
        "{error}"
    );
}

#[test]
fn in_a_pod_the_service_account_is_the_configuration() {
    let dir = Path::new(SERVICE_ACCOUNT);
    let read = |path: &Path| match path.file_name().and_then(|n| n.to_str()) {
        Some("token") => Ok(b"sa-t0ken\n".to_vec()),
        Some("ca.crt") => Ok(b"CA".to_vec()),
        Some("namespace") => Ok(b"shop".to_vec()),
        _ => Err("No such file or directory".to_string()),
    };
    let env = |name: &str| match name {
        "KUBERNETES_SERVICE_HOST" => Some("10.96.0.1".to_string()),
        "KUBERNETES_SERVICE_PORT" => Some("443".to_string()),
        _ => None,
    };
    let cluster = in_cluster(&env, dir, &read).unwrap();
    assert_eq!(cluster.server, "https://10.96.0.1:443");
    assert!(cluster.auth == Auth::Token("sa-t0ken".into()));
    assert_eq!(cluster.ca_pem.as_deref(), Some(b"CA".as_slice()));
    assert_eq!(cluster.namespace.as_deref(), Some("shop"));
    let v6 = |name: &str| (name == "KUBERNETES_SERVICE_HOST").then(|| "fd00::1".to_string());
    assert_eq!(
        in_cluster(&v6, dir, &read).unwrap().server,
        "https://[fd00::1]:443"
    );
    let outside = in_cluster(&|_: &str| None, dir, &read).unwrap_err();
    assert_eq!(
        outside.to_string(),
        "/var/run/secrets/kubernetes.io/serviceaccount: not in a pod: KUBERNETES_SERVICE_HOST is unset"
    );
}

#[test]
fn without_a_path_the_kubeconfig_is_kubectls() {
    for (kubeconfig, expect) in [
        (Some("/etc/kube/a:/etc/kube/b"), "/etc/kube/a"),
        (Some(":/etc/kube/b"), "/etc/kube/b"),
        (Some(""), "/home/ops/.kube/config"),
        (None, "/home/ops/.kube/config"),
    ] {
        let env = |name: &str| match name {
            "KUBECONFIG" => kubeconfig.map(str::to_string),
            "HOME" => Some("/home/ops".to_string()),
            _ => None,
        };
        assert_eq!(default_path(&env), Path::new(expect), "{kubeconfig:?}");
    }
}

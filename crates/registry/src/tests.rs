//! The client against a real registry (Debian's `docker-registry`, started on
//! loopback in a temporary folder by each test that needs it), and against
//! small hand-written HTTP servers where a real one cannot be had here: a
//! token-auth registry (that needs a signing certificate chain) and
//! misbehaving servers (500, no answer).

use super::*;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

/// A `docker-registry` process with its storage in a temporary folder; killed on drop.
pub struct Registry {
    child: Child,
    /// Removed after the process is killed: fields drop after `drop` runs.
    _dir: test_support::TempDir,
    pub url: String,
}

impl Registry {
    pub fn start() -> Registry {
        Registry::start_with(None)
    }

    /// With `Some((user, password))`, the registry asks for HTTP Basic
    /// credentials (`auth: htpasswd`), checked against a bcrypt htpasswd file
    /// written by `htpasswd -Bbn` (Debian package apache2-utils).
    pub fn start_with(credentials: Option<(&str, &str)>) -> Registry {
        let dir = test_support::TempDir::new("registry");
        std::fs::create_dir_all(dir.join("storage")).expect("temp dir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("storage").display()
        );
        if let Some((user, password)) = credentials {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("htpasswd (Debian package apache2-utils; scripts/setup installs it)");
            assert!(out.status.success(), "htpasswd: {out:?}");
            std::fs::write(dir.join("htpasswd"), &out.stdout).expect("htpasswd file");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: bulkhead-test\n    path: {}\n",
                dir.join("htpasswd").display()
            ));
        }
        std::fs::write(dir.join("config.yml"), config).expect("config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian package docker-registry; scripts/setup installs it)");
        let registry = Registry {
            child,
            _dir: dir,
            url: format!("http://127.0.0.1:{port}"),
        };
        // Ready when /v2/ answers 200.
        let mut client = Client::new(&registry.url)
            .expect("url")
            .with_timeout(Duration::from_secs(2));
        if let Some((user, password)) = credentials {
            client = client.with_credentials(user, password);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while client.ping().is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not become ready"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        registry
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pushes an image whose layers are `layers` (their contents stand in for tar
/// files) and returns (manifest digest, diff_ids).
pub fn push_image(
    client: &Client,
    repo: &str,
    tag: &str,
    layers: &[&[u8]],
    annotations: &[(&str, &str)],
) -> (Digest, Vec<String>) {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| sha256_digest(l).to_string())
        .collect();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    })
    .to_string();
    let config_digest = client
        .push_blob(repo, config.as_bytes())
        .expect("push config");
    let mut descriptors = Vec::new();
    for layer in layers {
        let digest = client.push_blob(repo, layer).expect("push layer");
        descriptors.push(serde_json::json!({"mediaType": OCI_LAYER, "digest": digest.to_string(), "size": layer.len()}));
    }
    let annotations: BTreeMap<&str, &str> = annotations.iter().copied().collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
        "layers": descriptors,
        "annotations": annotations,
    })
    .to_string();
    let digest = client
        .push_manifest(repo, tag, OCI_MANIFEST, manifest.as_bytes())
        .expect("push manifest");
    (digest, diff_ids)
}

#[test]
fn real_registry_resolves_tags_reads_configs_and_base_annotations() {
    let registry = Registry::start();
    let client = Client::new(&registry.url).expect("url");
    let (base_digest, base_ids) =
        push_image(&client, "base/debian-12", "2024.10", &[b"os layer"], &[]);
    let (app_digest, app_ids) = push_image(
        &client,
        "apps/orders",
        "1.0.0",
        &[b"os layer", b"app layer"],
        &[
            (BASE_NAME, "127.0.0.1/base/debian-12:2024.10"),
            (BASE_DIGEST, &base_digest.to_string()),
        ],
    );
    assert_eq!(
        client
            .resolve("base/debian-12", "2024.10")
            .expect("resolve"),
        base_digest
    );
    assert_eq!(
        client.resolve("apps/orders", "1.0.0").expect("resolve"),
        app_digest
    );
    assert_eq!(
        client.tags("apps/orders").expect("tags"),
        vec!["1.0.0".to_string()]
    );

    let inspection = client
        .inspect("apps/orders", "1.0.0", ("linux", "amd64"))
        .expect("inspect");
    assert_eq!(inspection.digest, app_digest);
    assert_eq!(inspection.config.rootfs.diff_ids, app_ids);
    assert!(app_ids.starts_with(&base_ids));
    assert_eq!(
        inspection.base,
        Some((
            "127.0.0.1/base/debian-12:2024.10".to_string(),
            Some(base_digest.clone())
        ))
    );
    // By digest, the same manifest.
    let by_digest = client
        .manifest("apps/orders", &app_digest.to_string())
        .expect("manifest");
    assert_eq!(by_digest.digest, app_digest);
    assert!(matches!(by_digest.kind, ManifestKind::Image { ref layers, .. } if layers.len() == 2));
    // The base has no annotations.
    let base = client
        .inspect("base/debian-12", "2024.10", ("linux", "amd64"))
        .expect("inspect");
    assert_eq!(base.base, None);
}

#[test]
fn real_registry_serves_image_indexes_and_the_client_picks_the_platform() {
    let registry = Registry::start();
    let client = Client::new(&registry.url).expect("url");
    let (amd, amd_ids) = push_image(&client, "base/multi", "amd64", &[b"amd64 layer"], &[]);
    let (arm, _) = push_image(&client, "base/multi", "arm64", &[b"arm64 layer"], &[]);
    let size = |d: &Digest| {
        client
            .manifest("base/multi", &d.to_string())
            .expect("m")
            .bytes
            .len()
    };
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": arm.to_string(), "size": size(&arm), "platform": {"os": "linux", "architecture": "arm64"}},
            {"mediaType": OCI_MANIFEST, "digest": amd.to_string(), "size": size(&amd), "platform": {"os": "linux", "architecture": "amd64"}},
        ],
    })
    .to_string();
    let index_digest = client
        .push_manifest("base/multi", "1.0", OCI_INDEX, index.as_bytes())
        .expect("push index");
    assert_eq!(
        client.resolve("base/multi", "1.0").expect("resolve"),
        index_digest
    );
    let top = client.manifest("base/multi", "1.0").expect("index");
    assert!(matches!(top.kind, ManifestKind::Index { ref manifests } if manifests.len() == 2));
    let inspection = client
        .inspect("base/multi", "1.0", ("linux", "amd64"))
        .expect("inspect");
    assert_eq!(inspection.digest, index_digest);
    assert_eq!(inspection.manifest.digest, amd);
    assert_eq!(inspection.config.rootfs.diff_ids, amd_ids);
    let missing = client
        .inspect("base/multi", "1.0", ("linux", "s390x"))
        .unwrap_err();
    assert!(
        missing.to_string().contains("no linux/s390x image"),
        "{missing}"
    );
}

#[test]
fn real_registry_errors_name_what_failed() {
    let registry = Registry::start();
    let client = Client::new(&registry.url).expect("url");
    let err = client.resolve("apps/nothing", "1.0").unwrap_err();
    assert!(
        matches!(err, RegistryError::Status { status: 404, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("resolving apps/nothing:1.0"),
        "{err}"
    );
    let err = client.manifest("apps/nothing", "1.0").unwrap_err();
    assert!(
        err.to_string().contains("MANIFEST_UNKNOWN") || err.to_string().contains("NAME_UNKNOWN"),
        "{err}"
    );
}

#[test]
fn real_registry_with_htpasswd_auth_takes_basic_credentials_and_refuses_others() {
    let registry = Registry::start_with(Some(("ci", "s3cret pass")));
    let client = Client::new(&registry.url)
        .expect("url")
        .with_credentials("ci", "s3cret pass");
    // Push and read back through the Basic challenge, every request.
    let (digest, diff_ids) = push_image(&client, "base/debian-12", "2024.10", &[b"rootfs"], &[]);
    assert_eq!(
        client
            .resolve("base/debian-12", "2024.10")
            .expect("resolve"),
        digest
    );
    assert_eq!(
        client
            .inspect("base/debian-12", "2024.10", ("linux", "amd64"))
            .expect("inspect")
            .config
            .rootfs
            .diff_ids,
        diff_ids
    );
    assert_eq!(
        client.tags("base/debian-12").expect("tags"),
        vec!["2024.10".to_string()]
    );
    // Without credentials: a clear error naming what was asked and why.
    let anonymous = Client::new(&registry.url).expect("url");
    let err = anonymous.resolve("base/debian-12", "2024.10").unwrap_err();
    assert!(matches!(err, RegistryError::Auth { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("resolving base/debian-12:2024.10") && text.contains("Basic credentials"),
        "{text}"
    );
    // With the wrong password: refused, and said so.
    let wrong = Client::new(&registry.url)
        .expect("url")
        .with_credentials("ci", "guess");
    let err = wrong.manifest("base/debian-12", "2024.10").unwrap_err();
    assert!(matches!(err, RegistryError::Auth { .. }), "{err:?}");
    assert!(err.to_string().contains("refused the credentials"), "{err}");
}

fn files(list: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    list.iter()
        .map(|(p, c)| (p.to_string(), c.as_bytes().to_vec()))
        .collect()
}

/// Unpacks a layer blob with the system `tar` and returns (path, content) of its files.
fn untar(blob: &[u8], gzip: bool) -> Vec<(String, String)> {
    let dir = test_support::TempDir::new("layer");
    let archive = dir.write("layer.tar", blob);
    std::fs::create_dir_all(dir.join("out")).expect("out dir");
    let out = Command::new("tar")
        .arg(if gzip { "-xzf" } else { "-xf" })
        .arg(&archive)
        .arg("-C")
        .arg(dir.join("out"))
        .output()
        .expect("tar");
    assert!(out.status.success(), "tar: {out:?}");
    let mut found = Vec::new();
    let mut pending = vec![dir.join("out")];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path
                    .strip_prefix(dir.join("out"))
                    .expect("inside")
                    .to_string_lossy()
                    .to_string();
                found.push((relative, std::fs::read_to_string(&path).expect("file")));
            }
        }
    }
    found.sort();
    found
}

#[test]
fn built_images_push_under_two_tags_and_read_back_with_their_lineage() {
    let registry = Registry::start();
    let client = Client::new(&registry.url).expect("url");
    let base = image::build(&image::ImageSpec {
        os: "linux".into(),
        architecture: "amd64".into(),
        layers: vec![image::LayerFiles {
            files: files(&[("etc/os-release", "ID=debian\nVERSION_ID=12\n")]),
            gzip: true,
        }],
        base: None,
    })
    .expect("base image");
    let base_digest = client
        .push_image("base/debian-12", &base, &["2024.10"])
        .expect("push base");
    assert_eq!(base_digest, base.digest);

    let layer_files = [
        (vec![("etc/os-release", "ID=debian\nVERSION_ID=12\n")], true),
        (
            vec![
                ("srv/orders/app.sh", "#!/bin/sh\necho orders\n"),
                ("srv/orders/conf/orders.toml", "port = 8080\n"),
            ],
            false,
        ),
    ];
    let spec = image::ImageSpec {
        os: "linux".into(),
        architecture: "arm64".into(),
        layers: layer_files
            .iter()
            .map(|(list, gzip)| image::LayerFiles {
                files: files(list),
                gzip: *gzip,
            })
            .collect(),
        base: Some((
            "127.0.0.1/base/debian-12:2024.10".into(),
            base_digest.clone(),
        )),
    };
    let app = image::build(&spec).expect("app image");
    // Deterministic: the same files, the same digests.
    assert_eq!(image::build(&spec).expect("again").digest, app.digest);
    // The base layer is shared, byte for byte.
    assert_eq!(app.layers[0], base.layers[0]);

    let digest = client
        .push_image("apps/orders", &app, &["1.0.0", "latest"])
        .expect("push app");
    assert_eq!(digest, app.digest);
    assert_eq!(
        client.tags("apps/orders").expect("tags"),
        vec!["1.0.0".to_string(), "latest".to_string()]
    );
    for tag in ["1.0.0", "latest"] {
        assert_eq!(client.resolve("apps/orders", tag).expect("resolve"), digest);
        let inspection = client
            .inspect("apps/orders", tag, ("linux", "arm64"))
            .expect("inspect");
        assert_eq!(inspection.digest, digest);
        assert_eq!(inspection.manifest.bytes, app.manifest);
        assert_eq!(inspection.config.architecture, "arm64");
        assert_eq!(inspection.config.os, "linux");
        let diff_ids: Vec<String> = app.layers.iter().map(|l| l.diff_id.to_string()).collect();
        assert_eq!(inspection.config.rootfs.diff_ids, diff_ids);
        assert_eq!(
            inspection.base,
            Some((
                "127.0.0.1/base/debian-12:2024.10".to_string(),
                Some(base_digest.clone())
            ))
        );
        let ManifestKind::Image { config, layers } = &inspection.manifest.kind else {
            panic!("an image manifest: {:?}", inspection.manifest.kind);
        };
        assert_eq!(config.digest, app.config_digest);
        assert_eq!(config.media_type, OCI_CONFIG);
        let served: Vec<(&str, &Digest)> = layers
            .iter()
            .map(|l| (l.media_type.as_str(), &l.digest))
            .collect();
        let built: Vec<(&str, &Digest)> = app
            .layers
            .iter()
            .map(|l| (l.media_type, &l.digest))
            .collect();
        assert_eq!(served, built);
        assert_eq!(served[0].0, OCI_LAYER);
        assert_eq!(served[1].0, OCI_LAYER_TAR);
    }
    // Each layer blob, pulled back, is a tar of exactly its files; its
    // uncompressed bytes hash to its diff_id.
    for ((list, gzip), layer) in layer_files.iter().zip(&app.layers) {
        let blob = client.blob("apps/orders", &layer.digest).expect("blob");
        let mut expected: Vec<(String, String)> = list
            .iter()
            .map(|(p, c)| (p.to_string(), c.to_string()))
            .collect();
        expected.sort();
        assert_eq!(untar(&blob, *gzip), expected);
        let plain = image::tar(&files(list)).expect("tar");
        assert_eq!(sha256_digest(&plain), layer.diff_id);
    }
}

#[test]
fn pushing_a_blob_the_registry_holds_skips_the_upload() {
    let registry = Registry::start();
    let client = Client::new(&registry.url).expect("url");
    let blob = b"a layer pushed twice";
    let digest = sha256_digest(blob);
    assert!(!client.blob_exists("apps/orders", &digest).expect("head"));
    let first = client.upload_blob("apps/orders", blob).expect("first");
    assert_eq!(
        first,
        BlobPush {
            digest: digest.clone(),
            uploaded: true
        }
    );
    assert!(client.blob_exists("apps/orders", &digest).expect("head"));
    let second = client.upload_blob("apps/orders", blob).expect("second");
    assert_eq!(
        second,
        BlobPush {
            digest: digest.clone(),
            uploaded: false
        }
    );
    assert_eq!(client.blob("apps/orders", &digest).expect("blob"), blob);
}

#[test]
fn a_manifest_pushed_under_a_digest_it_does_not_have_is_refused() {
    let registry = Registry::start();
    let client = Client::new(&registry.url).expect("url");
    let built = image::build(&image::ImageSpec {
        os: "linux".into(),
        architecture: "amd64".into(),
        layers: vec![image::LayerFiles {
            files: files(&[("a.txt", "a\n")]),
            gzip: false,
        }],
        base: None,
    })
    .expect("image");
    for layer in &built.layers {
        client.push_blob("apps/x", &layer.blob).expect("layer");
    }
    client.push_blob("apps/x", &built.config).expect("config");
    let wrong = format!("sha256:{}", "0".repeat(64));
    let err = client
        .push_manifest("apps/x", &wrong, OCI_MANIFEST, &built.manifest)
        .unwrap_err();
    assert!(matches!(err, RegistryError::Protocol { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "pushing manifest apps/x:{wrong}: the manifest's digest is {}, not {wrong}",
            built.digest
        )
    );
    // Nothing was stored under either digest.
    for reference in [wrong, built.digest.to_string()] {
        let err = client.resolve("apps/x", &reference).unwrap_err();
        assert!(
            matches!(err, RegistryError::Status { status: 404, .. }),
            "{err}"
        );
    }
    // Under its own digest, it goes in.
    assert_eq!(
        client
            .push_manifest(
                "apps/x",
                &built.digest.to_string(),
                OCI_MANIFEST,
                &built.manifest
            )
            .expect("by digest"),
        built.digest
    );
}

/// A registry that takes every push but reports another digest for it.
#[test]
fn a_registry_reporting_another_digest_than_was_sent_is_refused() {
    let reported = format!("sha256:{}", "c".repeat(64));
    let header = reported.clone();
    let url = fake_server(move |head| {
        let response = if head.starts_with("HEAD ") {
            http_response("404 Not Found", &[], "")
        } else if head.starts_with("POST ") {
            http_response(
                "202 Accepted",
                &[("Location", "/v2/apps/x/blobs/uploads/u1?_state=s")],
                "",
            )
        } else {
            http_response("201 Created", &[("Docker-Content-Digest", &header)], "")
        };
        Some(response)
    });
    let client = Client::new(&url).expect("url");
    let blob = b"layer";
    let err = client.upload_blob("apps/x", blob).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "uploading blob {0} to apps/x: the registry reports digest {reported} for content whose digest is {0}",
            sha256_digest(blob)
        )
    );
    let err = client
        .push_manifest("apps/x", "1.0", OCI_MANIFEST, b"{}")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "pushing manifest apps/x:1.0: the registry reports digest {reported} for content whose digest is {}",
            sha256_digest(b"{}")
        )
    );
}

#[test]
fn tar_refuses_paths_a_layer_cannot_hold() {
    let long = "d/".repeat(50) + "f";
    for (path, detail) in [
        ("", "not a relative path"),
        ("/etc/passwd", "not a relative path"),
        ("etc/../passwd", "not a relative path"),
        ("./etc", "not a relative path"),
        ("etc//passwd", "not a relative path"),
        (long.as_str(), "longer than the 100 bytes"),
    ] {
        let err = image::tar(&files(&[(path, "x")])).unwrap_err();
        assert_eq!(err.path, path);
        assert!(err.detail.contains(detail), "{path:?}: {err}");
    }
}

#[test]
fn tar_lists_parent_directories_once_with_modes_the_system_tar_reads() {
    let archive = image::tar(&files(&[
        ("srv/app/run.sh", "#!/bin/sh\n"),
        ("srv/app/conf/a.toml", "a = 1\n"),
        ("top.txt", ""),
    ]))
    .expect("tar");
    assert_eq!(archive.len() % 512, 0);
    let dir = test_support::TempDir::new("tar");
    let path = dir.write("layer.tar", &archive);
    let out = Command::new("tar")
        .arg("-tvf")
        .arg(&path)
        .output()
        .expect("tar");
    assert!(out.status.success(), "tar: {out:?}");
    let listing: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            (
                fields[0].to_string(),
                fields.last().expect("name").to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("drwxr-xr-x", "srv/"),
        ("drwxr-xr-x", "srv/app/"),
        ("-rw-r--r--", "srv/app/run.sh"),
        ("drwxr-xr-x", "srv/app/conf/"),
        ("-rw-r--r--", "srv/app/conf/a.toml"),
        ("-rw-r--r--", "top.txt"),
    ]
    .iter()
    .map(|(m, n)| (m.to_string(), n.to_string()))
    .collect();
    assert_eq!(listing, expected);
}

/// A one-thread HTTP server answering each request with `answer(request head)`.
fn fake_server(answer: impl Fn(&str) -> Option<String> + Send + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            match answer(&head) {
                Some(response) => {
                    let _ = stream.write_all(response.as_bytes());
                }
                // Hold the connection open without answering.
                None => std::thread::sleep(Duration::from_secs(5)),
            }
        }
    });
    url
}

fn http_response(status: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut out = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    out
}

/// The bearer-token challenge flow, against a fake registry and token server
/// (Debian's docker-registry needs a certificate chain to sign tokens with).
#[test]
fn bearer_challenge_fetches_a_token_and_retries() {
    let seen = std::sync::Arc::new(Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": format!("sha256:{}", "a".repeat(64)), "size": 2},
        "layers": [],
    })
    .to_string();
    let digest = sha256_digest(manifest.as_bytes()).to_string();
    let expected = digest.clone();
    let url_cell = std::sync::Arc::new(Mutex::new(String::new()));
    let url_for_server = url_cell.clone();
    let url = fake_server(move |head| {
        log.lock()
            .unwrap()
            .push(head.lines().next().unwrap_or("").to_string());
        let me = url_for_server.lock().unwrap().clone();
        if head.starts_with("GET /token?") {
            assert!(head.contains("service=fake-registry"), "{head}");
            assert!(
                head.contains("scope=repository%3Aapps%2Forders%3Apull"),
                "{head}"
            );
            assert!(
                head.contains("Authorization: Basic dXNlcjpzZWNyZXQ="),
                "{head}"
            );
            return Some(http_response("200 OK", &[], r#"{"token":"t0k3n"}"#));
        }
        if head.contains("Authorization: Bearer t0k3n") {
            return Some(http_response(
                "200 OK",
                &[
                    ("Docker-Content-Digest", &digest),
                    ("Content-Type", OCI_MANIFEST),
                ],
                &manifest,
            ));
        }
        let challenge = format!(
            "Bearer realm=\"{me}/token\",service=\"fake-registry\",scope=\"repository:apps/orders:pull\""
        );
        Some(http_response(
            "401 Unauthorized",
            &[("WWW-Authenticate", &challenge)],
            "{}",
        ))
    });
    *url_cell.lock().unwrap() = url.clone();
    let client = Client::new(&url)
        .expect("url")
        .with_credentials("user", "secret");
    let m = client
        .manifest("apps/orders", "1.0")
        .expect("manifest after the token flow");
    assert_eq!(m.digest.to_string(), expected);
    // The token is reused: the second request goes straight through.
    client.manifest("apps/orders", "1.0").expect("again");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert!(seen[1].starts_with("GET /token?"), "{seen:?}");
}

#[test]
fn a_500_and_a_silent_server_are_errors_with_context() {
    let url = fake_server(|_| Some(http_response("500 Internal Server Error", &[], "boom")));
    let err = Client::new(&url)
        .expect("url")
        .resolve("apps/x", "1")
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::Status { status: 500, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("resolving apps/x:1"), "{err}");

    let url = fake_server(|_| None);
    let err = Client::new(&url)
        .expect("url")
        .with_timeout(Duration::from_millis(200))
        .manifest("apps/x", "1")
        .unwrap_err();
    assert!(err.to_string().contains("no answer from"), "{err}");

    let err = Client::new("https://registry.example.com").unwrap_err();
    assert!(err.to_string().contains("only http://"), "{err}");
}

#[test]
fn a_manifest_that_does_not_match_its_digest_is_refused() {
    let url = fake_server(|_| {
        Some(http_response(
            "200 OK",
            &[(
                "Docker-Content-Digest",
                &format!("sha256:{}", "b".repeat(64)),
            )],
            r#"{"schemaVersion":2,"config":{"digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},"layers":[]}"#,
        ))
    });
    let err = Client::new(&url)
        .expect("url")
        .manifest("apps/x", "1")
        .unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
}

#[test]
fn sha256_matches_known_vectors() {
    assert_eq!(
        sha256::hex(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        sha256::hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        sha256::hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    );
}

#[test]
fn basic_credentials_are_base64_of_user_colon_password() {
    for ((user, password), expect) in [
        (("user", "secret"), "Basic dXNlcjpzZWNyZXQ="),
        (("a", ""), "Basic YTo="),
    ] {
        let client = Client::new("http://127.0.0.1:5000")
            .expect("url")
            .with_credentials(user, password);
        assert_eq!(client.basic().as_deref(), Some(expect));
    }
}

#[test]
fn challenges_parse_quoted_and_bare_values() {
    let p =
        parse_challenge(r#"realm="http://a/token",service=reg,scope="repository:x/y:pull,push""#);
    assert_eq!(p["realm"], "http://a/token");
    assert_eq!(p["service"], "reg");
    assert_eq!(p["scope"], "repository:x/y:pull,push");
}

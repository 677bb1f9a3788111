//! TLS and mutual TLS on the listener (`--tls-cert-file`, `--tls-key-file`,
//! `--tls-client-ca-file`), with certificates made for each test: real calls over TLS, a
//! plaintext client refused, client certificates checked before anything is served, a stalled
//! handshake dropped, and bad PEM files stopping start-up with a message naming the file.

use std::{
    io::Read,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use clap::Parser;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio::io::AsyncReadExt;
use tonic::{Status, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use workspaced::{
    config::{Cli, Command as Sub},
    pb::v1::{self as pb, workspace_service_client::WorkspaceServiceClient},
    tls::{HANDSHAKE_TIMEOUT, Tls, TlsFiles},
};

use crate::common::{
    Options, TestServer, TlsOptions, create, new_ws, plaintext_channel, req, tls_channel, token,
};

/// A certificate and its key, in PEM.
#[derive(Clone)]
struct Pair {
    cert: String,
    key: String,
}

impl Pair {
    fn as_client(&self) -> Option<(&str, &str)> {
        Some((&self.cert, &self.key))
    }
}

/// A CA that signs certificates.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// An end-entity certificate for `names` (DNS names or IP addresses), for `usage`.
    fn sign(&self, cn: &str, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Pair {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap().pem();
        Pair {
            cert,
            key: key.serialize_pem(),
        }
    }
}

/// Everything a test needs: a CA, the server's files signed by it, a client certificate
/// signed by it, and a client certificate from another CA.
struct Pki {
    dir: tempfile::TempDir,
    ca: String,
    client: Pair,
    stranger: Pair,
}

/// The name every CA here carries, so that a certificate from the other CA is refused for
/// its signature and not merely for naming an unknown issuer.
const CA_NAME: &str = "workspaced test CA";

impl Pki {
    fn new() -> Pki {
        let ca = Ca::new(CA_NAME);
        let server = ca.sign(
            "localhost",
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let client = ca.sign("alice", &[], ExtendedKeyUsagePurpose::ClientAuth);
        let stranger = Ca::new(CA_NAME).sign("mallory", &[], ExtendedKeyUsagePurpose::ClientAuth);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), &ca.pem).unwrap();
        std::fs::write(dir.path().join("server.pem"), &server.cert).unwrap();
        std::fs::write(dir.path().join("server-key.pem"), &server.key).unwrap();
        Pki {
            dir,
            ca: ca.pem,
            client,
            stranger,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `text` to a file `name` next to the others and returns its path.
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The server's files; with `mutual`, client certificates must be signed by the CA.
    fn files(&self, mutual: bool) -> TlsFiles {
        TlsFiles {
            cert: self.path("server.pem"),
            key: self.path("server-key.pem"),
            client_ca: mutual.then(|| self.path("ca.pem")),
        }
    }

    /// A server speaking TLS (mutual with `mutual`); the helper's channel trusts the CA and,
    /// under mutual TLS, presents the good client certificate.
    async fn spawn(&self, mutual: bool) -> TestServer {
        TestServer::spawn_with(Options {
            tls: Some(TlsOptions {
                files: self.files(mutual),
                ca_pem: self.ca.clone(),
                client: mutual.then(|| (self.client.cert.clone(), self.client.key.clone())),
            }),
            ..Default::default()
        })
        .await
    }
}

/// The server's overall health status through `channel`.
async fn health(channel: Channel) -> Result<i32, Status> {
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|r| r.into_inner().status)
}

/// Creates workspace `name` through `channel`.
async fn create_via(channel: Channel, name: &str) -> Result<pb::Workspace, Status> {
    WorkspaceServiceClient::new(channel)
        .create_workspace(req(
            pb::CreateWorkspaceRequest {
                workspace: Some(new_ws(name)),
                request_id: String::new(),
            },
            &token("alice"),
        ))
        .await
        .map(|r| r.into_inner().workspace.expect("workspace"))
}

/// A failed call's error with its sources, where a TLS alert from the server shows.
fn cause(status: &Status) -> String {
    let mut text = format!("{status:?}");
    let mut source = std::error::Error::source(status);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

const SERVING: i32 = ServingStatus::Serving as i32;

#[tokio::test]
async fn tls_serves_real_calls_end_to_end() {
    let pki = Pki::new();
    let s = pki.spawn(false).await;
    let ws = create(&s, &token("alice"), new_ws("over-tls")).await;
    assert_eq!(ws.name, "over-tls");
    // Without a client CA any TLS client is served, including one without a certificate.
    let anonymous = tls_channel(s.addr, &pki.ca, None);
    assert_eq!(health(anonymous.clone()).await.unwrap(), SERVING);
    let second = create_via(anonymous, "over-tls-2").await.unwrap();
    assert_eq!(second.name, "over-tls-2");
}

#[tokio::test]
async fn a_plaintext_client_is_refused_by_a_tls_server() {
    let pki = Pki::new();
    let s = pki.spawn(false).await;
    // Refused at the connection (the server does not speak HTTP/2 in the clear), not by
    // some service answering with a status.
    let err = health(plaintext_channel(s.addr)).await.unwrap_err();
    assert!(cause(&err).contains("transport error"), "{}", cause(&err));
    create_via(plaintext_channel(s.addr), "plain")
        .await
        .unwrap_err();
    // The same server answers over TLS, so the refusal is about plaintext.
    assert_eq!(health(s.channel.clone()).await.unwrap(), SERVING);
}

#[tokio::test]
async fn mutual_tls_refuses_a_client_without_a_certificate() {
    let pki = Pki::new();
    let s = pki.spawn(true).await;
    let bare = tls_channel(s.addr, &pki.ca, None);
    // Health too: nothing is served before the client certificate is checked.
    let err = health(bare.clone()).await.unwrap_err();
    assert!(
        cause(&err).contains("received fatal alert: CertificateRequired"),
        "{}",
        cause(&err)
    );
    create_via(bare, "no-cert").await.unwrap_err();
    assert_eq!(health(s.channel.clone()).await.unwrap(), SERVING);
}

#[tokio::test]
async fn mutual_tls_refuses_a_certificate_from_another_ca() {
    let pki = Pki::new();
    let s = pki.spawn(true).await;
    let stranger = tls_channel(s.addr, &pki.ca, pki.stranger.as_client());
    // The server's alert (DecryptError: the signature does not verify against the CA of the
    // same name) ends the handshake.
    let err = health(stranger.clone()).await.unwrap_err();
    assert!(
        cause(&err).contains("received fatal alert"),
        "{}",
        cause(&err)
    );
    create_via(stranger, "stranger").await.unwrap_err();
    assert_eq!(health(s.channel.clone()).await.unwrap(), SERVING);
}

#[tokio::test]
async fn mutual_tls_serves_a_client_with_a_good_certificate() {
    let pki = Pki::new();
    let s = pki.spawn(true).await;
    let good = tls_channel(s.addr, &pki.ca, pki.client.as_client());
    assert_eq!(health(good.clone()).await.unwrap(), SERVING);
    let ws = create_via(good, "mutual").await.unwrap();
    assert_eq!(ws.name, "mutual");
}

#[tokio::test]
async fn a_stalled_handshake_is_dropped() {
    let pki = Pki::new();
    let s = pki.spawn(true).await;
    // Connects and never says hello: the server must hang up once the handshake times out.
    let mut stalled = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(HANDSHAKE_TIMEOUT * 3, stalled.read(&mut buf))
        .await
        .expect("the server kept a stalled handshake open");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the server sent data to a client that never spoke: {read:?}"
    );
    let waited = started.elapsed();
    assert!(
        waited >= HANDSHAKE_TIMEOUT - Duration::from_secs(1),
        "dropped after {waited:?}, before the handshake timeout"
    );
    // Other clients were served meanwhile and still are.
    assert_eq!(health(s.channel.clone()).await.unwrap(), SERVING);
}

#[test]
fn bad_tls_files_are_refused_naming_the_file() {
    let pki = Pki::new();
    assert!(Tls::load(&pki.files(true)).is_ok(), "the good files load");
    let garbage = pki.write("garbage.pem", "not a certificate\n");
    let broken = pki.write(
        "broken.pem",
        "-----BEGIN CERTIFICATE-----\n%%% not base64 %%%\n-----END CERTIFICATE-----\n",
    );
    let other_key = pki.write("other-key.pem", &pki.client.key);
    let cases: Vec<(&str, TlsFiles, PathBuf)> = vec![
        (
            "cannot read",
            TlsFiles {
                cert: pki.path("missing.pem"),
                ..pki.files(false)
            },
            pki.path("missing.pem"),
        ),
        (
            "no PEM CERTIFICATE",
            TlsFiles {
                cert: garbage.clone(),
                ..pki.files(false)
            },
            garbage.clone(),
        ),
        (
            "not valid PEM",
            TlsFiles {
                cert: broken.clone(),
                ..pki.files(false)
            },
            broken.clone(),
        ),
        (
            "no PEM private key",
            TlsFiles {
                key: pki.path("server.pem"),
                ..pki.files(false)
            },
            pki.path("server.pem"),
        ),
        (
            "not usable together",
            TlsFiles {
                key: other_key.clone(),
                ..pki.files(false)
            },
            other_key.clone(),
        ),
        (
            "no PEM CERTIFICATE",
            TlsFiles {
                client_ca: Some(garbage.clone()),
                ..pki.files(false)
            },
            garbage.clone(),
        ),
        (
            "cannot read",
            TlsFiles {
                client_ca: Some(pki.path("missing-ca.pem")),
                ..pki.files(false)
            },
            pki.path("missing-ca.pem"),
        ),
    ];
    for (expected, files, named) in cases {
        let err = Tls::load(&files).expect_err(&format!("{files:?} loaded"));
        assert!(err.contains(expected), "{files:?}: {err}");
        assert!(
            err.contains(&named.display().to_string()),
            "{files:?}: the message does not name {}: {err}",
            named.display()
        );
    }
}

#[test]
fn serve_exits_non_zero_on_a_bad_tls_file() {
    let pki = Pki::new();
    let bad_key = pki.write("bad-key.pem", "-----BEGIN PRIVATE KEY-----\n");
    let mut child = Command::new(env!("CARGO_BIN_EXE_workspaced"))
        .current_dir(pki.dir.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--insecure-no-auth"])
        .arg("--database-url")
        .arg(format!(
            "sqlite://{}?mode=rwc",
            pki.path("serve.db").display()
        ))
        .arg("--tls-cert-file")
        .arg(pki.path("server.pem"))
        .arg("--tls-key-file")
        .arg(&bad_key)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("serve started with a bad TLS key file");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!status.success(), "{status:?}; {stderr}");
    assert!(
        stderr.contains(&bad_key.display().to_string()),
        "the message does not name the file: {stderr}"
    );
}

/// `serve`'s TLS files as parsed from `args`, or clap's error.
fn parse(args: &[&str]) -> Result<Option<TlsFiles>, clap::Error> {
    let cli = Cli::try_parse_from(["workspaced", "serve"].iter().chain(args))?;
    match cli.command {
        Sub::Serve(serve) => Ok(serve.tls_files()),
        other => panic!("parsed as {other:?}"),
    }
}

#[test]
fn tls_flags_come_together() {
    for args in [
        &["--tls-cert-file", "c.pem"][..],
        &["--tls-key-file", "k.pem"],
        &["--tls-client-ca-file", "ca.pem"],
        &["--tls-cert-file", "c.pem", "--tls-client-ca-file", "ca.pem"],
        &["--tls-key-file", "k.pem", "--tls-client-ca-file", "ca.pem"],
    ] {
        let err = parse(args).expect_err(&format!("{args:?} accepted"));
        assert_eq!(
            err.kind(),
            clap::error::ErrorKind::MissingRequiredArgument,
            "{args:?}: {err}"
        );
    }
    assert_eq!(parse(&[]).unwrap(), None);
    assert_eq!(
        parse(&["--tls-cert-file", "c.pem", "--tls-key-file", "k.pem"]).unwrap(),
        Some(TlsFiles {
            cert: "c.pem".into(),
            key: "k.pem".into(),
            client_ca: None,
        })
    );
    assert_eq!(
        parse(&[
            "--tls-cert-file",
            "c.pem",
            "--tls-key-file",
            "k.pem",
            "--tls-client-ca-file",
            "ca.pem",
        ])
        .unwrap(),
        Some(TlsFiles {
            cert: "c.pem".into(),
            key: "k.pem".into(),
            client_ca: Some("ca.pem".into()),
        })
    );
}

//! TLS and mutual TLS on the gRPC listener: reads the PEM files named by `--tls-*-file` into
//! tonic's rustls-based [`ServerTlsConfig`], checked at start-up so that a bad file stops
//! `serve` with a message naming it instead of failing every handshake later.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    time::Duration,
};

use rustls_pki_types::{
    CertificateDer, PrivateKeyDer,
    pem::{self, PemObject},
};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::BoxError;

/// How long a client may take to complete the TLS handshake. Each handshake in progress holds
/// a task and a socket, so one that stalls (a slow-loris or a port scanner) is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The PEM files that turn TLS on, as given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key of the leaf certificate (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA certificates a client certificate must chain to; `None` accepts any client.
    pub client_ca: Option<PathBuf>,
}

/// A checked TLS configuration for the gRPC listener.
#[derive(Clone, Debug)]
pub struct Tls {
    config: ServerTlsConfig,
    files: TlsFiles,
}

impl Tls {
    /// Reads and checks the files: each must be PEM holding what its flag promises, the key
    /// must belong to the certificate, and rustls must accept the whole (the same check the
    /// server makes when it starts listening, done here so the error can name the file).
    pub fn load(files: &TlsFiles) -> Result<Tls, String> {
        let cert = read(&files.cert, "certificate")?;
        certificates(&cert, &files.cert, "certificate")?;
        let key = read(&files.key, "key")?;
        PrivateKeyDer::from_pem_slice(&key).map_err(|e| match e {
            pem::Error::NoItemsFound => format!(
                "TLS key file {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
                files.key.display()
            ),
            e => format!(
                "TLS key file {} is not valid PEM: {}",
                files.key.display(),
                describe(&e)
            ),
        })?;
        let config = ServerTlsConfig::new()
            .identity(Identity::from_pem(cert, key))
            .timeout(HANDSHAKE_TIMEOUT);
        check(&config).map_err(|e| {
            format!(
                "TLS certificate file {} and key file {} are not usable together: {e}",
                files.cert.display(),
                files.key.display()
            )
        })?;
        let config = match &files.client_ca {
            None => config,
            Some(path) => {
                let ca = read(path, "client CA")?;
                certificates(&ca, path, "client CA")?;
                // Client authentication stays required (tonic's default): the contract
                // serves nothing, Health included, before a client certificate is checked.
                let config = config.client_ca_root(Certificate::from_pem(ca));
                check(&config).map_err(|e| {
                    format!("TLS client CA file {} is not usable: {e}", path.display())
                })?;
                config
            }
        };
        Ok(Tls {
            config,
            files: files.clone(),
        })
    }
}

/// Makes `builder` speak TLS when `tls` is set, and logs once which protocol the listener
/// speaks, so that a server left in plaintext by mistake says so.
pub fn configure(builder: Server, tls: Option<&Tls>) -> Result<Server, BoxError> {
    match tls {
        Some(tls) => {
            tracing::info!(
                cert = %tls.files.cert.display(),
                mutual_tls = tls.files.client_ca.is_some(),
                "speaking TLS"
            );
            Ok(builder.tls_config(tls.config.clone())?)
        }
        None => {
            tracing::info!("no TLS configured: speaking plaintext HTTP/2");
            Ok(builder)
        }
    }
}

/// The bytes of a PEM file, with an error naming it.
fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read TLS {what} file {}: {e}", path.display()))
}

/// Checks that `pem` holds at least one well-formed CERTIFICATE block.
fn certificates(pem: &[u8], path: &Path, what: &str) -> Result<(), String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            format!(
                "TLS {what} file {} is not valid PEM: {}",
                path.display(),
                describe(&e)
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "TLS {what} file {} holds no PEM CERTIFICATE block",
            path.display()
        ));
    }
    Ok(())
}

/// Runs tonic's own construction of the rustls acceptor, which is where rustls rejects a key
/// that does not match the certificate, an unparsable certificate or an unusable CA.
fn check(config: &ServerTlsConfig) -> Result<(), String> {
    Server::builder()
        .tls_config(config.clone())
        .map(drop)
        .map_err(|e| chain(&e))
}

/// An error's sources, which say what rustls refused; tonic's own message on top of them
/// ("transport error") says nothing more.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = String::new();
    let mut next = Some(e.source().unwrap_or(e));
    while let Some(e) = next {
        if !text.is_empty() {
            text.push_str(": ");
        }
        let _ = write!(text, "{e}");
        next = e.source();
    }
    text
}

/// A PEM syntax error in words; the parser's own text prints bytes as numbers.
fn describe(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a BEGIN line has no matching END line".into(),
        pem::Error::IllegalSectionStart { .. } => "a malformed BEGIN line".into(),
        pem::Error::Base64Decode(e) => format!("bad base64 inside a PEM block ({e})"),
        e => e.to_string(),
    }
}

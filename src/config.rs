//! The command line: `serve`, `token` and `migrate`, each flag also read from a
//! `WORKSPACED_<FLAG>` environment variable, with the contract's defaults.

use std::{
    io::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use clap::{Args, Parser, Subcommand};

use crate::{
    auth::{AuthMode, JwtSettings, Verifier},
    domain::{
        model::PolicyRules,
        rules::{self, PolicyInput},
    },
    tls::TlsFiles,
};

/// The SQLite file used when no database URL is given.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://workspaced.db?mode=rwc";
/// The HS256 key file used (and created by `serve`) when no key is configured.
pub const DEFAULT_KEY_FILE: &str = "workspaced.key";

/// workspaced: workspaces, memberships and GPU policies for ML platforms, over gRPC.
#[derive(Debug, Parser)]
#[command(name = "workspaced", version, about)]
pub struct Cli {
    /// How log lines are written to stderr.
    #[arg(
        long,
        global = true,
        env = "WORKSPACED_LOG_FORMAT",
        value_enum,
        default_value = "pretty"
    )]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log line formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line: timestamp, level, message and fields.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the gRPC server (migrating the database first).
    Serve(Box<ServeArgs>),
    /// Prints a signed HS256 token for calling the server.
    Token(TokenArgs),
    /// Applies database migrations and exits.
    Migrate(DatabaseArgs),
}

/// Where the data lives.
#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// `sqlite://file.db?mode=rwc`, `sqlite:///abs/path.db?mode=rwc` or `postgres://…`.
    #[arg(long, env = "WORKSPACED_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
}

/// Flags of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "WORKSPACED_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// File holding the HS256 secret (surrounding whitespace trimmed). Without any key
    /// configured, `workspaced.key` is used and created with a random secret if missing.
    #[arg(long, env = "WORKSPACED_JWT_HS256_SECRET_FILE")]
    pub jwt_hs256_secret_file: Option<PathBuf>,
    /// JWKS file with the public keys (RS256, ES256, EdDSA) of accepted tokens, by `kid`.
    #[arg(long, env = "WORKSPACED_JWKS_FILE")]
    pub jwks_file: Option<PathBuf>,
    /// Required `iss` claim.
    #[arg(long, env = "WORKSPACED_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` claim.
    #[arg(long, env = "WORKSPACED_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Name of the claim that carries platform roles (an array of strings).
    #[arg(long, env = "WORKSPACED_ROLES_CLAIM", default_value = "roles")]
    pub roles_claim: String,
    /// Name of the claim that carries the caller's groups (an array of strings); a group
    /// member's role is held by every caller whose token names the group there.
    #[arg(long, env = "WORKSPACED_GROUPS_CLAIM", default_value = "groups")]
    pub groups_claim: String,
    /// Address to serve Prometheus metrics on, at `/metrics` (off when unset).
    #[arg(long, env = "WORKSPACED_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// JSON file with the GPU policy every new workspace starts with (fields as in the
    /// `Policy` message; durations like "24h"); unset fields mean no limit.
    #[arg(long, env = "WORKSPACED_DEFAULT_POLICY_FILE")]
    pub default_policy_file: Option<PathBuf>,
    /// Treat every caller as an anonymous platform admin. Local experiments only. Its
    /// variable takes the usual words: 1, true, yes, on (and 0, false, no, off).
    #[arg(long, env = "WORKSPACED_INSECURE_NO_AUTH",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub insecure_no_auth: bool,
    /// Connections open at once (also bounded by the open-file limit); more are closed as
    /// soon as they are accepted.
    #[arg(long, env = "WORKSPACED_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Calls running at once; more wait in line for at most 50 ms, and are then answered
    /// UNAVAILABLE (reason OVERLOADED). While calls wait longer than 5 ms, fewer run (down to
    /// `--min-in-flight`), so that the admitted ones stay fast.
    #[arg(long, env = "WORKSPACED_MAX_IN_FLIGHT", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: u32,
    /// Calls running at once while overload lasts: more admit more calls then, each slower.
    /// Default: 4 on SQLite, 6 on PostgreSQL (a replica's share when several share one
    /// database: raise it for a database with many cores to itself).
    #[arg(long, env = "WORKSPACED_MIN_IN_FLIGHT",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub min_in_flight: Option<u32>,
    /// How long the change history keeps events, such as `30d` or `12h`; at least `1s`.
    /// Older ones are pruned within a tenth of it (at least 1 s, at most a minute).
    #[arg(long, env = "WORKSPACED_EVENT_RETENTION", default_value = "30d",
          allow_hyphen_values = true, value_parser = parse_retention)]
    pub event_retention: humantime::Duration,
    /// Benchmarks only: write no change history, against the contract, to measure what
    /// writing it costs. On PostgreSQL the view then has no history to follow, and serves
    /// as if this replica were the database's only one: never run two so.
    #[arg(long, hide = true)]
    pub without_events: bool,
    /// PEM file with the server's certificate chain, leaf first; with `--tls-key-file` the
    /// server speaks TLS (1.2 or 1.3) instead of plaintext HTTP/2.
    #[arg(long, env = "WORKSPACED_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM file with the private key of `--tls-cert-file` (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "WORKSPACED_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// PEM file with the CA certificates that sign client certificates; every client must
    /// then present one (mutual TLS) before any call, Health included.
    #[arg(
        long,
        env = "WORKSPACED_TLS_CLIENT_CA_FILE",
        requires = "tls_cert_file"
    )]
    pub tls_client_ca_file: Option<PathBuf>,
}

/// Flags of `token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The token's `sub`.
    #[arg(long, env = "WORKSPACED_SUBJECT")]
    pub subject: String,
    /// The token's `email`.
    #[arg(long, env = "WORKSPACED_EMAIL")]
    pub email: Option<String>,
    /// A platform role to include (`platform-admin`, `platform-service`); repeatable.
    /// Other names are refused: the server ignores roles it does not know, so a misspelt
    /// role would make a token that silently lacks it.
    #[arg(
        long = "role",
        value_name = "ROLE",
        env = "WORKSPACED_ROLE",
        value_delimiter = ',',
        value_parser = [
            crate::domain::access::PlatformRoles::ADMIN,
            crate::domain::access::PlatformRoles::SERVICE,
        ]
    )]
    pub roles: Vec<String>,
    /// A group to include in the token's `groups` claim; repeatable (1-255 printable
    /// characters each, commas included: group names such as `cn=ml,ou=groups` are common).
    #[arg(
        long = "group",
        value_name = "GROUP",
        env = "WORKSPACED_GROUP",
        value_parser = |s: &str| crate::domain::validate::group(s)
    )]
    pub groups: Vec<String>,
    /// How long the token is valid, such as `1h` or `30m`; at least one second.
    // Hyphen values reach the parser, so that `--ttl -1h` is told it is negative instead of
    // being taken for an unknown flag.
    #[arg(
        long,
        env = "WORKSPACED_TTL",
        default_value = "1h",
        allow_hyphen_values = true,
        value_parser = parse_ttl
    )]
    pub ttl: humantime::Duration,
    /// File holding the HS256 secret.
    #[arg(long, env = "WORKSPACED_JWT_HS256_SECRET_FILE", default_value = DEFAULT_KEY_FILE)]
    pub jwt_hs256_secret_file: PathBuf,
}

/// Parses `--event-retention`: a duration of at least one second.
fn parse_retention(s: &str) -> Result<humantime::Duration, String> {
    parse_ttl(s).map_err(|e| e.replace("1h or 30m", "30d or 12h"))
}

/// Parses `--ttl`: a duration of at least one second. A token's `exp` counts whole seconds,
/// so anything shorter makes a token that has expired when it is printed.
fn parse_ttl(s: &str) -> Result<humantime::Duration, String> {
    if s.trim_start().starts_with('-') {
        return Err("must be positive, such as 1h or 30m".into());
    }
    let ttl: humantime::Duration = s
        .parse()
        .map_err(|e| format!("{e}; use a duration such as 1h or 30m"))?;
    if ttl.as_secs() == 0 {
        return Err("must be at least 1s, such as 1h or 30m".into());
    }
    Ok(ttl)
}

/// Reads a key file: its bytes with surrounding whitespace trimmed.
pub fn read_key(path: &Path) -> Result<Vec<u8>, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read key file {}: {e}", path.display()))?;
    let key = bytes.trim_ascii().to_vec();
    if key.is_empty() {
        return Err(format!("key file {} is empty", path.display()));
    }
    Ok(key)
}

/// Reads the default key file, creating it with a random secret (mode 0600) if missing.
fn read_or_create_default_key(path: &Path) -> Result<Vec<u8>, String> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| format!("cannot make a random key: {e}"))?;
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(path) {
        Ok(mut f) => {
            f.write_all(format!("{hex}\n").as_bytes())
                .map_err(|e| format!("cannot write key file {}: {e}", path.display()))?;
            tracing::info!(path = %path.display(), "created a new HS256 key file");
        }
        // It exists, perhaps just created by another process starting beside this one.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => wait_for_key(path),
        Err(e) => return Err(format!("cannot create key file {}: {e}", path.display())),
    }
    read_key(path)
}

/// Waits until a key file that was changed within the last two seconds holds a line (the
/// one write of the process that has just created it), for at most two seconds.
fn wait_for_key(path: &Path) {
    const FRESH: std::time::Duration = std::time::Duration::from_secs(2);
    for _ in 0..200 {
        let fresh = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age < FRESH));
        if !fresh || std::fs::read(path).is_ok_and(|b| b.ends_with(b"\n")) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// The default-policy file's shape: the `Policy` message's settable fields, all optional.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct PolicyFile {
    priority_range: Option<RangeFile>,
    max_gprs: Option<i64>,
    max_exit_duration_per_gpr: Option<String>,
    enforce_idle_timeout: Option<bool>,
    requeue_on_failure: Option<bool>,
    enable_auto_eviction: Option<bool>,
    global_gpu_constraints: Option<GpuFile>,
}

/// A priority range; an end left out keeps the built-in default's (a file giving only
/// `min` must not get a `max` of 0, and with it a range no priority fits).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RangeFile {
    min: Option<i64>,
    max: Option<i64>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct GpuFile {
    gpu_shapes: Vec<String>,
    max_gpu_per_gpr: i64,
    max_memory_per_gpr_bytes: i64,
}

/// Reads and validates a default-policy file; fields it leaves out keep the built-in
/// defaults (no limits).
pub fn read_policy_file(path: &Path) -> Result<PolicyRules, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read default policy file {}: {e}", path.display()))?;
    let f: PolicyFile = serde_json::from_str(&text)
        .map_err(|e| format!("default policy file {} is invalid: {e}", path.display()))?;
    let d = PolicyRules::default();
    let range = f.priority_range.unwrap_or_default();
    let gpu = f.global_gpu_constraints.unwrap_or_default();
    let exit = match f.max_exit_duration_per_gpr {
        None => Some(d.max_exit_duration_us),
        // A fraction of a microsecond rounds up, as in requests: "500ns" is a limit, not 0
        // (no limit), and "720h 1ns" over the 30 days a limit may be.
        Some(s) => humantime::parse_duration(&s)
            .ok()
            .and_then(|d| i64::try_from(d.as_nanos().div_ceil(1000)).ok()),
    };
    let input = PolicyInput {
        priority_min: range.min.unwrap_or(d.priority_min.into()),
        priority_max: range.max.unwrap_or(d.priority_max.into()),
        max_gprs: f.max_gprs.unwrap_or(d.max_gprs.into()),
        max_exit_duration_us: exit,
        enforce_idle_timeout: f.enforce_idle_timeout.unwrap_or(d.enforce_idle_timeout),
        requeue_on_failure: f.requeue_on_failure.unwrap_or(d.requeue_on_failure),
        enable_auto_eviction: f.enable_auto_eviction.unwrap_or(d.enable_auto_eviction),
        gpu_shapes: gpu.gpu_shapes,
        max_gpu_per_gpr: gpu.max_gpu_per_gpr,
        max_memory_per_gpr_bytes: gpu.max_memory_per_gpr_bytes,
    };
    rules::validate(&input)
        .map_err(|e| format!("default policy file {} is invalid: {e}", path.display()))
}

impl ServeArgs {
    /// The TLS files, when TLS is on (clap makes the certificate and key come together).
    pub fn tls_files(&self) -> Option<TlsFiles> {
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.tls_client_ca_file.clone(),
            }),
            _ => None,
        }
    }

    /// The policy new workspaces start with.
    pub fn policy_defaults(&self) -> Result<PolicyRules, String> {
        match &self.default_policy_file {
            Some(path) => read_policy_file(path),
            None => Ok(PolicyRules::default()),
        }
    }

    /// How requests are authenticated, reading (or creating) the configured keys.
    pub fn auth_mode(&self) -> Result<AuthMode, String> {
        if self.insecure_no_auth {
            return Ok(AuthMode::Insecure);
        }
        let hs256_secret = match (&self.jwt_hs256_secret_file, &self.jwks_file) {
            (Some(path), _) => Some(read_key(path)?),
            (None, Some(_)) => None,
            (None, None) => Some(read_or_create_default_key(Path::new(DEFAULT_KEY_FILE))?),
        };
        let jwks = match &self.jwks_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read JWKS file {}: {e}", path.display()))?;
                Some(
                    serde_json::from_str(&text)
                        .map_err(|e| format!("JWKS file {} is invalid: {e}", path.display()))?,
                )
            }
            None => None,
        };
        let verifier = Verifier::new(JwtSettings {
            hs256_secret,
            jwks,
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            roles_claim: self.roles_claim.clone(),
            groups_claim: self.groups_claim.clone(),
        })?;
        Ok(AuthMode::Jwt(Arc::new(verifier)))
    }
}

#[cfg(test)]
mod tests {
    use clap::{Parser, error::ErrorKind};

    use super::{Cli, Command};

    fn token(args: &[&str]) -> Result<super::TokenArgs, clap::Error> {
        let argv = ["workspaced", "token", "--subject", "alice"];
        match Cli::try_parse_from(argv.iter().chain(args))?.command {
            Command::Token(t) => Ok(t),
            other => panic!("parsed as {other:?}"),
        }
    }

    fn serve(args: &[&str]) -> Result<Box<super::ServeArgs>, clap::Error> {
        match Cli::try_parse_from(["workspaced", "serve"].iter().chain(args))?.command {
            Command::Serve(s) => Ok(s),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn serve_takes_a_floor_of_calls_in_flight_or_leaves_it_to_the_store() {
        assert_eq!(serve(&[]).unwrap().min_in_flight, None);
        assert_eq!(
            serve(&["--min-in-flight", "3"]).unwrap().min_in_flight,
            Some(3)
        );
        let e = serve(&["--min-in-flight", "0"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ValueValidation, "{e}");
    }

    #[test]
    fn token_takes_the_platform_roles_the_server_knows() {
        let t = token(&["--role", "platform-admin", "--role", "platform-service"]).unwrap();
        assert_eq!(t.roles, ["platform-admin", "platform-service"]);
        let t = token(&["--role", "platform-service,platform-admin"]).unwrap();
        assert_eq!(t.roles, ["platform-service", "platform-admin"]);
    }

    #[test]
    fn token_refuses_roles_the_server_would_ignore() {
        for role in ["admin", "Platform-Admin", "platform-admin,root", ""] {
            let e = token(&["--role", role]).expect_err(role);
            assert_eq!(e.kind(), ErrorKind::InvalidValue, "{role}: {e}");
            let text = e.to_string();
            assert!(
                text.contains("platform-admin") && text.contains("platform-service"),
                "{text}"
            );
        }
    }

    #[test]
    fn token_takes_groups_that_tokens_may_carry() {
        let t = token(&["--group", "ml-team", "--group", "cn=ml,ou=groups"]).unwrap();
        assert_eq!(t.groups, ["ml-team", "cn=ml,ou=groups"]);
        assert!(token(&[]).unwrap().groups.is_empty());
        let long = "g".repeat(256);
        for bad in ["", "a\u{7}b", long.as_str()] {
            let err = token(&["--group", bad]).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ValueValidation, "{bad:?}");
        }
    }

    #[test]
    fn token_takes_a_positive_ttl() {
        for (ttl, secs) in [("1h", 3600), ("30m", 1800), ("1s", 1), ("2days", 172_800)] {
            let t = token(&["--ttl", ttl]).unwrap();
            assert_eq!(t.ttl.as_secs(), secs, "{ttl}");
        }
        assert_eq!(token(&[]).unwrap().ttl.as_secs(), 3600);
    }

    #[test]
    fn token_refuses_a_zero_or_negative_ttl() {
        for (args, says) in [
            (&["--ttl", "0s"][..], "at least 1s"),
            (&["--ttl", "0"], "at least 1s"),
            (&["--ttl", "500ms"], "at least 1s"),
            (&["--ttl", "-1h"], "positive"),
            (&["--ttl=-30m"], "positive"),
            (&["--ttl", "soon"], "such as 1h"),
        ] {
            let e = token(args).expect_err(&format!("{args:?}"));
            assert_eq!(e.kind(), ErrorKind::ValueValidation, "{args:?}: {e}");
            assert!(e.to_string().contains(says), "{args:?}: {e}");
        }
    }

    #[test]
    fn a_key_file_another_process_is_writing_is_read_once_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        // The other process has created the file and not yet written its key.
        std::fs::write(&path, b"").unwrap();
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(200));
                std::fs::write(&path, b"00ff\n").unwrap();
            })
        };
        assert_eq!(super::read_or_create_default_key(&path).unwrap(), b"00ff");
        writer.join().unwrap();
        // A missing file is made, once, and read back the same.
        let fresh = dir.path().join("fresh");
        let made = super::read_or_create_default_key(&fresh).unwrap();
        assert_eq!(made.len(), 64);
        assert_eq!(super::read_or_create_default_key(&fresh).unwrap(), made);
    }
}

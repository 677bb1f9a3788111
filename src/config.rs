//! The command line: `serve`, `token` and `migrate`, each flag also read from a
//! `WORKSPACED_<FLAG>` environment variable, with the contract's defaults.

use std::{
    io::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use clap::{Args, Parser, Subcommand};

use crate::auth::{AuthMode, JwtSettings, Verifier};

/// The SQLite file used when no database URL is given.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://workspaced.db?mode=rwc";
/// The HS256 key file used (and created by `serve`) when no key is configured.
pub const DEFAULT_KEY_FILE: &str = "workspaced.key";

/// workspaced: workspaces, memberships and GPU policies for ML platforms, over gRPC.
#[derive(Debug, Parser)]
#[command(name = "workspaced", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the gRPC server (migrating the database first).
    Serve(ServeArgs),
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
    /// Treat every caller as an anonymous platform admin. Local experiments only.
    #[arg(long, env = "WORKSPACED_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
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
    #[arg(long = "role", env = "WORKSPACED_ROLE", value_delimiter = ',')]
    pub roles: Vec<String>,
    /// How long the token is valid, such as `1h` or `30m`.
    #[arg(long, env = "WORKSPACED_TTL", default_value = "1h")]
    pub ttl: humantime::Duration,
    /// File holding the HS256 secret.
    #[arg(long, env = "WORKSPACED_JWT_HS256_SECRET_FILE", default_value = DEFAULT_KEY_FILE)]
    pub jwt_hs256_secret_file: PathBuf,
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
    if !path.exists() {
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
            // Another process created it first; use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create key file {}: {e}", path.display())),
        }
    }
    read_key(path)
}

impl ServeArgs {
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
        })?;
        Ok(AuthMode::Jwt(Arc::new(verifier)))
    }
}

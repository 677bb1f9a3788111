//! The `workspaced` binary: parses the command line, sets up logging and runs a subcommand;
//! everything else lives in the library.

use std::{process::ExitCode, time::Duration};

use clap::Parser;
use workspaced::{
    ServerConfig,
    config::{Cli, Command, LogFormat, read_key},
    store::Store,
    tls::Tls,
};

/// How long in-flight calls may finish after SIGTERM/SIGINT.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// At most this many glibc malloc arenas. By default glibc gives up to eight per core, and
/// threads that allocate and free in turn (tokio's workers, sqlx's SQLite threads) leave
/// each arena fragmented: a 10-minute soak's RSS grew 12% with the default and 3% with two
/// (benches/RESULTS.md), at no cost seen in its latency.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MALLOC_ARENAS: libc::c_int = 2;

fn main() -> ExitCode {
    // Before any thread starts, so that every thread shares the few arenas.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable of the allocator; no other thread runs yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
    }
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(start()),
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Sets up logging, then runs the subcommand.
async fn start() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,sqlx=warn,sea_orm=warn".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
        LogFormat::Pretty => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("workspaced: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), workspaced::BoxError> {
    match cli.command {
        Command::Serve(args) => {
            // First: a stop asked for while the server starts (connects, migrates) ends it
            // cleanly, exit 0, instead of killing it.
            let stop = shutdown_signal();
            let auth = args.auth_mode()?;
            let policy_defaults = args.policy_defaults()?;
            let tls = args.tls_files().as_ref().map(Tls::load).transpose()?;
            let listener = tokio::net::TcpListener::bind(args.listen)
                .await
                .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
            let defaults = ServerConfig::new(args.database.database_url, auth);
            let max_connections = workspaced::conn::fit_connections(args.max_connections);
            if max_connections < args.max_connections {
                tracing::warn!(
                    max_connections,
                    "the open-file limit allows fewer connections than --max-connections"
                );
            }
            let cfg = ServerConfig {
                policy_defaults,
                drain_timeout: DRAIN_TIMEOUT,
                metrics_listen: args.metrics_listen,
                conn_limits: workspaced::conn::ConnLimits {
                    max_connections,
                    ..defaults.conn_limits
                },
                call_limits: workspaced::telemetry::CallLimits {
                    max_in_flight: args.max_in_flight as usize,
                    min_in_flight: args.min_in_flight.map(|n| n as usize),
                    ..defaults.call_limits
                },
                tls,
                events: workspaced::domain::events::EventSettings {
                    retention: args.event_retention.into(),
                    record: !args.without_events,
                    ..defaults.events.clone()
                },
                ..defaults
            };
            workspaced::serve(cfg, listener, stop).await
        }
        Command::Token(args) => {
            let key = read_key(&args.jwt_hs256_secret_file).map_err(|e| {
                format!("{e} (start `workspaced serve` once to create it, or pass --jwt-hs256-secret-file)")
            })?;
            let claims = workspaced::auth::jwt::Claims {
                subject: &args.subject,
                email: args.email.as_deref(),
                roles: &args.roles,
                groups: &args.groups,
            };
            let token = workspaced::auth::jwt::sign_hs256(&key, &claims, args.ttl.into())?;
            println!("{token}");
            Ok(())
        }
        Command::Migrate(args) => {
            let store = Store::connect(&args.database_url).await.map_err(|e| {
                let why = workspaced::store::describe_open_error(&args.database_url, &e);
                format!("cannot open the database: {why}")
            })?;
            store.migrate().await.map_err(|e| {
                let why = workspaced::store::describe(&e);
                format!("cannot migrate the database: {why}")
            })?;
            tracing::info!("migrations applied");
            Ok(())
        }
    }
}

/// Completes on SIGINT or SIGTERM. The handlers are installed by this call, not when the
/// future is first polled: from then on a signal is held for it, and no longer kills the
/// process.
#[cfg(unix)]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    async move {
        tokio::select! {
            () = received(term.as_mut()) => {},
            () = received(int.as_mut()) => {},
        }
    }
}

/// Completes when `signal` arrives; never without a handler.
#[cfg(unix)]
async fn received(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// Completes on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

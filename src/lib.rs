//! workspaced: the workspace service of an ML platform, over gRPC.
//!
//! Workspaces are the organizational and authorization boundary: every model, dataset or job
//! belongs to one, and who may do what inside it follows from the workspace. The contract is
//! `docs/api.md` and the `.proto` files under `proto/`.
//!
//! # Layout
//!
//! A request flows one way: [`api`] (decode, authenticate, convert) → [`domain`] (validate
//! and decide) → [`store`] (read and write in one transaction), and back out through `From`
//! conversions into the one [`error::Error`] type.
//!
//! - [`config`]: the command line and environment.
//! - [`auth`]: bearer-token verification and the interceptor.
//! - [`api`]: one file per gRPC service, thin.
//! - [`domain`]: validated input, the access model, the rules and use cases.
//! - [`store`]: SeaORM entities, migrations and queries.
//! - [`conn`]: the connection limits and timeouts.
//! - [`telemetry`]: the layer every call passes: request ids, the log line and metrics,
//!   request framing and limits, overload and deadlines.
//! - [`overload`]: the adaptive line before the calls in flight.
//! - [`metered`]: reflection's request stream, read a message at a time under the limits.
//! - [`tls`]: TLS and mutual TLS on the listener.

use std::{future::Future, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tonic::{
    service::interceptor::InterceptedService,
    transport::{Server, server::TcpIncoming},
};
use tonic_health::{ServingStatus, server::HealthReporter};

pub mod api;
pub mod auth;
pub mod codec;
pub mod config;
pub mod conn;
pub mod domain;
pub mod error;
pub mod metered;
pub mod metrics;
pub mod overload;
pub mod pb;
pub mod store;
pub mod telemetry;
pub mod tls;

use crate::{
    api::{
        Ctx, events::EventApi, memberships::MembershipApi, policies::PolicyApi,
        workspaces::WorkspaceApi,
    },
    auth::{AuthMode, Authenticator},
    domain::{events::EventSettings, model::PolicyRules, workspaces::Workspaces},
    pb::v1::{
        event_service_server::EventServiceServer,
        membership_service_server::MembershipServiceServer,
        policy_service_server::PolicyServiceServer,
        workspace_service_server::WorkspaceServiceServer,
    },
    store::Store,
};

/// Any error of start-up.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How often the health monitor pings the database.
const HEALTH_INTERVAL: Duration = Duration::from_secs(2);
/// How long one health ping may take before the database counts as down.
const HEALTH_PING_TIMEOUT: Duration = Duration::from_secs(3);

/// How often expired GPU pod requests and ended memberships are deleted by default. Only
/// for the tables' size: either stops counting at its end whether or not it was swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// Concurrent calls per connection, advertised in SETTINGS_MAX_CONCURRENT_STREAMS: with the
/// connection limit, it bounds the calls (and unread responses) one client can hold.
const MAX_STREAMS_PER_CONNECTION: u32 = 128;
/// The largest header block read: room for a 16 KB token beside the usual metadata, so that
/// an oversized token is judged (TOKEN_INVALID) rather than refused by HTTP/2.
const MAX_HEADER_LIST_BYTES: u32 = 128 * 1024;
/// Request bytes a client may send on a stream, and on a connection, ahead of what the server
/// has read (HTTP/2 flow control).
const STREAM_WINDOW_BYTES: u32 = 128 * 1024;
const CONNECTION_WINDOW_BYTES: u32 = 1024 * 1024;
/// The largest response message sent.
const MAX_RESPONSE_BYTES: usize = 4 << 20;
/// How often a connection that has been quiet is pinged, and how long the answer may take:
/// a peer that vanished without closing is found within the two added up.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything `serve` needs besides the listener.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// `sqlite://…` or `postgres://…`.
    pub database_url: String,
    /// How callers are authenticated.
    pub auth: AuthMode,
    /// The policy every new workspace starts with.
    pub policy_defaults: PolicyRules,
    /// How long in-flight calls may run after shutdown is asked for.
    pub drain_timeout: Duration,
    /// Where to serve Prometheus metrics at `/metrics`, if anywhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// How many connections, and for how long silent ones are kept.
    pub conn_limits: conn::ConnLimits,
    /// How many calls run at once.
    pub call_limits: telemetry::CallLimits,
    /// TLS (and client certificates) on the gRPC listener; plaintext HTTP/2 when `None`.
    pub tls: Option<tls::Tls>,
    /// How the change history is kept and watched.
    pub events: EventSettings,
    /// How often expired GPU pod requests and ended memberships are deleted.
    pub sweep_every: Duration,
}

impl ServerConfig {
    /// A configuration with the contract's defaults for everything but the database and
    /// how callers are authenticated.
    pub fn new(database_url: impl Into<String>, auth: AuthMode) -> Self {
        ServerConfig {
            database_url: database_url.into(),
            auth,
            policy_defaults: PolicyRules::default(),
            drain_timeout: Duration::from_secs(20),
            metrics_listen: None,
            conn_limits: conn::ConnLimits::default(),
            call_limits: telemetry::CallLimits::default(),
            tls: None,
            events: EventSettings::default(),
            sweep_every: SWEEP_INTERVAL,
        }
    }
}

/// The fully qualified names of the services, for health statuses; the whole server (`""`)
/// last, so that once it reports a status every service reports it too.
const SERVICE_NAMES: [&str; 5] = [
    "workspaced.v1.WorkspaceService",
    "workspaced.v1.MembershipService",
    "workspaced.v1.PolicyService",
    "workspaced.v1.EventService",
    "",
];

/// The database, connected and migrated, with the built-in workspaces created.
async fn start(cfg: &ServerConfig) -> Result<(Store, Workspaces), BoxError> {
    let store = Store::connect(&cfg.database_url)
        .await
        .map_err(|e| {
            let why = crate::store::describe_open_error(&cfg.database_url, &e);
            format!("cannot open the database: {why}")
        })?
        .recording_events(cfg.events.record);
    store.migrate().await.map_err(|e| {
        let why = crate::store::describe(&e);
        format!("cannot migrate the database: {why}")
    })?;
    let workspaces = Workspaces::new(store.clone(), cfg.policy_defaults.clone());
    workspaces
        .ensure_built_ins()
        .await
        .map_err(|e| format!("cannot create the built-in workspaces: {e}"))?;
    Ok((store, workspaces))
}

/// Connects and migrates the database, creates the built-in workspaces, then serves gRPC on
/// `listener` until `shutdown` completes and in-flight calls have finished (or the drain
/// timeout passed). A `shutdown` that completes while it starts ends it at once: start-up
/// may wait without limit (for another replica's migrations), and has no calls to finish.
pub async fn serve(
    cfg: ServerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BoxError> {
    let mut shutdown = Box::pin(shutdown);
    let (store, workspaces) = tokio::select! {
        started = start(&cfg) => started?,
        () = &mut shutdown => {
            tracing::info!("stopped while starting");
            return Ok(());
        }
    };
    if matches!(cfg.auth, AuthMode::Insecure) {
        tracing::warn!(
            "--insecure-no-auth: every caller is an anonymous platform admin; never use this \
             beyond local experiments"
        );
    }

    let ctx = Arc::new(Ctx {
        memberships: domain::memberships::Memberships::new(store.clone()),
        policies: domain::policies::Policies::new(store.clone()),
        gpu_requests: domain::gpu_requests::GpuRequests::new(store.clone()),
        workspaces,
        principals: domain::principals::Principals::new(store.clone()),
        events: domain::events::Events::new(store.clone(), cfg.events.clone()),
    });
    let authn = Authenticator::new(cfg.auth.clone());

    let (reporter, health) = tonic_health::server::health_reporter();
    // Statuses are set before serving: the reporter starts with "" SERVING on its own.
    let up = database_up(&store).await;
    report(&reporter, up).await;
    let monitor = tokio::spawn(monitor_database(store.clone(), reporter, up));
    let follower = tokio::spawn(store.clone().follow_changes());
    let sweeper = tokio::spawn(sweep_expired(
        ctx.gpu_requests.clone(),
        ctx.memberships.clone(),
        cfg.sweep_every,
    ));
    let event_follower = tokio::spawn(store.clone().follow_events());
    let pruner = tokio::spawn(prune_events(ctx.events.clone()));
    let vacuumer = tokio::spawn(store.clone().vacuum_churn());
    let checkpointer = tokio::spawn(store.clone().checkpoint_wal());
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        // google.rpc error details, so that grpcurl and other reflective clients decode them.
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?
        .max_decoding_message_size(telemetry::MAX_PROBE_REQUEST_BYTES - 5);
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?
        .max_decoding_message_size(telemetry::MAX_PROBE_REQUEST_BYTES - 5);

    let metrics = Arc::new(metrics::Metrics::new()?);
    // Stops the metrics endpoint together with gRPC.
    let (stop_metrics, metrics_stopped) = tokio::sync::watch::channel(false);
    let metrics_task = match cfg.metrics_listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen for metrics on {addr}: {e}"))?;
            tracing::info!(addr = %listener.local_addr()?, "serving metrics at /metrics");
            let mut stopped = metrics_stopped;
            Some(tokio::spawn(metrics::serve(
                listener,
                metrics.clone(),
                store.clone(),
                async move {
                    let _ = stopped.wait_for(|s| *s).await;
                },
            )))
        }
        None => None,
    };

    tracing::info!(addr = %listener.local_addr()?, "serving");
    let drained = Arc::new(tokio::sync::Notify::new());
    let events = ctx.events.clone();
    let signal = drained.clone();
    // TLS wraps each connection before any service sees it: under mutual TLS nothing, Health
    // included, is served to a client whose certificate was not checked.
    let builder = tls::configure(Server::builder(), cfg.tls.as_ref())?;
    let server = builder
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
        // tonic hands hyper `None` for these unless set, which hyper takes as no limit: a
        // client provoking stream errors (a PRIORITY frame naming its own stream) would have
        // h2 keep a reset stream for each, without end. These are h2's own defaults.
        .http2_max_local_error_reset_streams(Some(1024))
        .http2_max_pending_accept_reset_streams(Some(20))
        // What h2 buffers of requests not yet read: a whole request with room to spare per
        // stream, rather than hyper's 1 MiB per stream.
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .layer(telemetry::RequestLogLayer::new(
            metrics,
            cfg.call_limits,
            store.overload_places(),
        ))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(InterceptedService::new(
            WorkspaceServiceServer::new(WorkspaceApi::new(ctx.clone()))
                .max_encoding_message_size(MAX_RESPONSE_BYTES),
            authn.clone(),
        ))
        .add_service(InterceptedService::new(
            MembershipServiceServer::new(MembershipApi::new(ctx.clone()))
                .max_encoding_message_size(MAX_RESPONSE_BYTES),
            authn.clone(),
        ))
        .add_service(InterceptedService::new(
            PolicyServiceServer::new(PolicyApi::new(ctx.clone()))
                .max_encoding_message_size(MAX_RESPONSE_BYTES),
            authn.clone(),
        ))
        .add_service(InterceptedService::new(
            EventServiceServer::new(EventApi::new(ctx.clone()))
                .max_encoding_message_size(MAX_RESPONSE_BYTES),
            authn,
        ))
        // Nagle's algorithm would hold small responses back for a delayed ACK (~40 ms).
        .serve_with_incoming_shutdown(
            conn::Incoming::new(
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                cfg.conn_limits,
            ),
            async move {
                shutdown.await;
                tracing::info!("shutting down: no new connections, draining in-flight calls");
                // Watches never end on their own: end them, so that their clients resume
                // on another replica now rather than at the drain timeout.
                events.close();
                signal.notify_one();
            },
        );
    let drain_timeout = cfg.drain_timeout;
    tokio::select! {
        res = server => res?,
        _ = async {
            drained.notified().await;
            tokio::time::sleep(drain_timeout).await;
        } => tracing::warn!("drain timeout passed; dropping the calls still in flight"),
    }
    monitor.abort();
    follower.abort();
    sweeper.abort();
    event_follower.abort();
    pruner.abort();
    vacuumer.abort();
    checkpointer.abort();
    let _ = stop_metrics.send(true);
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    store.close().await.ok();
    Ok(())
}

/// Deletes expired GPU pod requests and ended memberships now and then; a failure waits
/// for the next round.
async fn sweep_expired(
    gpu_requests: domain::gpu_requests::GpuRequests,
    memberships: domain::memberships::Memberships,
    every: Duration,
) {
    loop {
        tokio::time::sleep(every).await;
        match gpu_requests.sweep().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(swept = n, "deleted expired GPU pod requests"),
            Err(e) => tracing::warn!(error = %e, "sweeping expired GPU pod requests failed"),
        }
        match memberships.sweep().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(swept = n, "deleted ended memberships"),
            Err(e) => tracing::warn!(error = %e, "sweeping ended memberships failed"),
        }
    }
}

/// Deletes the events past the retention now and then; a failure waits for the next round.
async fn prune_events(events: domain::events::Events) {
    let every = events.settings().prune_every();
    loop {
        tokio::time::sleep(every).await;
        match events.prune().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(pruned = n, "deleted events past the retention"),
            Err(e) => tracing::warn!(error = %e, "pruning the change history failed"),
        }
    }
}

/// Whether the database answers a ping in time.
async fn database_up(store: &Store) -> bool {
    matches!(
        tokio::time::timeout(HEALTH_PING_TIMEOUT, store.ping()).await,
        Ok(Ok(()))
    )
}

/// Sets every health status to SERVING or NOT_SERVING.
async fn report(reporter: &HealthReporter, up: bool) {
    let status = if up {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    for name in SERVICE_NAMES {
        reporter.set_service_status(name, status).await;
    }
}

/// Keeps the health status in step with the database: NOT_SERVING while it does not answer.
async fn monitor_database(store: Store, reporter: HealthReporter, mut last: bool) {
    loop {
        tokio::time::sleep(HEALTH_INTERVAL).await;
        let up = database_up(&store).await;
        if up != last {
            tracing::warn!(database_up = up, "database availability changed");
            report(&reporter, up).await;
            last = up;
        }
    }
}

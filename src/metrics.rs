//! Prometheus metrics: requests by service, method and status code, a latency histogram per
//! method, the database pool's connections, and build info; served as Prometheus text at
//! `/metrics` when `--metrics-listen` is set. Label values come only from the methods the
//! server serves, never from what a client sends, so that the metrics stay bounded.

use std::{collections::HashSet, future::Future, sync::Arc, time::Duration};

use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use tokio::net::TcpListener;

use crate::store::Store;

/// The service's metrics, in a registry of their own (one per server, so that several
/// servers in one process, as in tests, do not collide).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    pool: IntGaugeVec,
    statements: IntCounter,
    places: IntGauge,
    held: IntGaugeVec,
    /// The budgets of request bytes, read at each scrape: name, budget, its size.
    budgets: std::sync::Mutex<Vec<(&'static str, Arc<tokio::sync::Semaphore>, usize)>>,
    /// Every served method's path (`/package.Service/Method`); any other path is counted
    /// under the one label `unknown`.
    known: HashSet<String>,
}

/// The paths of every method the server serves: workspaced's services, Health and
/// reflection, read from their descriptor sets.
pub fn served_methods() -> HashSet<String> {
    use prost::Message;
    [
        crate::pb::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ]
    .into_iter()
    .filter_map(|set| prost_types::FileDescriptorSet::decode(set).ok())
    .flat_map(|set| set.file)
    .flat_map(|file| {
        let package = file.package().to_owned();
        file.service.into_iter().flat_map(move |svc| {
            let service = format!("{package}.{}", svc.name());
            svc.method
                .into_iter()
                .map(move |m| format!("/{service}/{}", m.name()))
        })
    })
    .collect()
}

impl Metrics {
    /// Whether `path` names a method the server serves.
    pub fn serves(&self, path: &str) -> bool {
        self.known.contains(path)
    }

    /// Creates and registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("workspaced".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new(
                "grpc_requests_total",
                "gRPC requests answered, by status code",
            ),
            &["service", "method", "code"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("grpc_request_duration_seconds", "gRPC request latency").buckets(
                vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ],
            ),
            &["service", "method"],
        )?;
        let pool = IntGaugeVec::new(
            Opts::new("db_pool_connections", "Database pool connections by state"),
            &["state"],
        )?;
        let statements = IntCounter::new("db_statements_total", "SQL statements run")?;
        let places = IntGauge::new(
            "calls_in_flight_limit",
            "Calls run at once now: --max-in-flight, fewer while overload lasts",
        )?;
        let held = IntGaugeVec::new(
            Opts::new(
                "request_bytes_held",
                "Bytes of requests held while read (and header blocks until answered), by \
                 budget: calls (workspaced) or probes (Health, reflection)",
            ),
            &["budget"],
        )?;
        let build = IntGaugeVec::new(
            Opts::new("build_info", "Build information; always 1"),
            &["version"],
        )?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(pool.clone()))?;
        registry.register(Box::new(statements.clone()))?;
        registry.register(Box::new(places.clone()))?;
        registry.register(Box::new(held.clone()))?;
        registry.register(Box::new(build))?;
        Ok(Metrics {
            registry,
            requests,
            latency,
            pool,
            statements,
            places,
            held,
            budgets: std::sync::Mutex::default(),
            known: served_methods(),
        })
    }

    /// Records one answered request of the gRPC `path` (`/package.Service/Method`).
    pub fn observe(&self, path: &str, code: &str, latency: Duration) {
        let (service, method) = if self.known.contains(path) {
            path.trim_start_matches('/')
                .split_once('/')
                .unwrap_or(("unknown", "unknown"))
        } else {
            ("unknown", "unknown")
        };
        self.requests
            .with_label_values(&[service, method, code])
            .inc();
        self.latency
            .with_label_values(&[service, method])
            .observe(latency.as_secs_f64());
    }

    /// Records how many calls may run at once now.
    pub fn set_places(&self, places: usize) {
        self.places.set(i64::try_from(places).unwrap_or(i64::MAX));
    }

    /// Reports how much of `budget` (of `size` bytes) is held, under `name`, at each scrape.
    pub fn watch_budget(
        &self,
        name: &'static str,
        budget: Arc<tokio::sync::Semaphore>,
        size: usize,
    ) {
        if let Ok(mut budgets) = self.budgets.lock() {
            budgets.push((name, budget, size));
        }
    }

    /// The metrics in Prometheus text format, with the pool gauges read now.
    pub fn render(&self, store: &Store) -> String {
        if let Ok(budgets) = self.budgets.lock() {
            for (name, budget, size) in budgets.iter() {
                let held = size.saturating_sub(budget.available_permits());
                self.held
                    .with_label_values(&[*name])
                    .set(i64::try_from(held).unwrap_or(i64::MAX));
            }
        }
        let (size, idle) = store.pool_stats();
        self.pool
            .with_label_values(&["in_use"])
            .set(i64::from(size.saturating_sub(idle)));
        self.pool.with_label_values(&["idle"]).set(i64::from(idle));
        let run = store.statements();
        self.statements
            .inc_by(run.saturating_sub(self.statements.get()));
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Serves `/metrics` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    store: Store,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    async fn scrape(State((metrics, store)): State<(Arc<Metrics>, Store)>) -> impl IntoResponse {
        (
            [(
                header::CONTENT_TYPE,
                TextEncoder::new().format_type().to_owned(),
            )],
            metrics.render(&store),
        )
    }
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state((metrics, store));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

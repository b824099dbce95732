//! Prometheus metrics for both services: one recorder per process, `GET /metrics`, and the
//! request metrics every HTTP route gets.
//!
//! Names follow one grammar: `<service>_<thing>_<unit>` with `_total` for counters, e.g.
//! `producer_http_requests_total`, `consumer_processing_duration_seconds`.

use axum::{
    Router,
    extract::MatchedPath,
    http::{Method, StatusCode, header::CONTENT_TYPE},
    response::IntoResponse,
    routing::get,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::{
    sync::OnceLock,
    time::{Duration, Instant},
};

/// Buckets for every `_seconds` histogram: from 0.5 ms (a confirm on an idle broker) to
/// 10 s (past the publish timeout).
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often the recorder's upkeep runs when nobody scrapes `/metrics` (a scrape runs it
/// too). See [`keep_up`].
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The process's recorder, installed on first use, with its upkeep running. Tests run
/// several services in one process; they share it, which is why every name carries its
/// service.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .unwrap_or_else(|_| unreachable!("the bucket list is not empty"));
            let handle = match builder.install_recorder() {
                Ok(handle) => handle,
                // Another recorder was installed first (not by this code): render an
                // empty one rather than fail the service.
                Err(error) => {
                    tracing::error!(%error, "Cannot install the metrics recorder.");
                    PrometheusBuilder::new().build_recorder().handle()
                }
            };
            if let Err(error) = keep_up(handle.clone(), UPKEEP_EVERY) {
                tracing::error!(%error, "Cannot start the metrics upkeep; memory grows until /metrics is scraped.");
            }
            handle
        })
        .clone()
}

/// Runs the recorder's upkeep every `period`, on a thread of its own, for the life of the
/// process. The exporter keeps every histogram sample until its upkeep folds them into the
/// buckets, and only a scrape of `/metrics` runs it otherwise: a service nobody scrapes (the
/// walkthrough's, a VM without Prometheus) would grow by 8 bytes a sample for ever, about
/// 36 MiB in the producer over a million posts (bench/README.md, the flood). A thread, not a
/// task, so that it runs whatever runtime (or none) the recorder was first used in.
pub fn keep_up(handle: PrometheusHandle, period: Duration) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(period);
                handle.run_upkeep();
            }
        })?;
    Ok(())
}

/// `GET /metrics` in the Prometheus text format.
pub fn routes() -> Router {
    Router::new().route(
        "/metrics",
        get(|| async {
            let handle = handle();
            handle.run_upkeep();
            (
                [(CONTENT_TYPE, "text/plain; version=0.0.4")],
                handle.render(),
            )
                .into_response()
        }),
    )
}

/// The names of the request metrics of one service, made once at start-up.
#[derive(Debug, Clone, Copy)]
pub struct HttpMetrics {
    requests: &'static str,
    duration: &'static str,
}

impl HttpMetrics {
    pub fn new(service: &str) -> Self {
        // Leaked once per service and process: metric names must outlive every request.
        let requests: &'static str =
            Box::leak(format!("{service}_http_requests_total").into_boxed_str());
        let duration: &'static str =
            Box::leak(format!("{service}_http_request_duration_seconds").into_boxed_str());
        metrics::describe_counter!(
            requests,
            "HTTP requests answered, by method, route and status."
        );
        metrics::describe_histogram!(
            duration,
            metrics::Unit::Seconds,
            "Time to answer an HTTP request, by method and route."
        );
        Self { requests, duration }
    }
}

impl HttpMetrics {
    /// Starts timing `request`, to be recorded with its answer's status.
    pub fn start<B>(self, request: &axum::http::Request<B>) -> RequestTimer {
        RequestTimer {
            names: self,
            method: request.method().clone(),
            route: request.extensions().get::<MatchedPath>().cloned(),
            started: Instant::now(),
        }
    }
}

/// One request being timed; see [`HttpMetrics::start`].
#[derive(Debug)]
pub struct RequestTimer {
    names: HttpMetrics,
    method: Method,
    route: Option<MatchedPath>,
    started: Instant,
}

impl RequestTimer {
    /// Counts the request by method, route and status, and records its time by method and
    /// route. The route is the matched pattern (`/api/v1/customers/{customer_id}/address`),
    /// never the raw path, so the number of series stays bounded.
    pub fn finish(self, status: StatusCode) {
        let route = self
            .route
            .as_ref()
            .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
        let method = self.method.to_string();
        metrics::histogram!(self.names.duration, "method" => method.clone(), "route" => route.clone())
            .record(self.started.elapsed().as_secs_f64());
        metrics::counter!(self.names.requests, "method" => method, "route" => route, "status" => status.as_u16().to_string())
            .increment(1);
    }
}

//! The HTTP plumbing both services share: the JSON error body, `/healthz` and `/readyz`,
//! the middleware stack, and serving until shutdown.

use crate::{
    metrics::{self, HttpMetrics},
    readiness::{Readiness, Status},
    trace_context::{TRACEPARENT, TraceContext},
};
use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, MatchedPath, State},
    http::{Request, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};
use serde::{Deserialize, Serialize};
use std::{any::Any, time::Duration};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::{
    LatencyUnit,
    catch_panic::CatchPanicLayer,
    trace::{DefaultOnResponse, TraceLayer},
};
use tracing::Level;

/// The body of every error response: `{"error":{"code":"…","message":"…"}}`, with `field`
/// naming the offending JSON field when there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable and machine-readable (`validation_failed`); clients branch on it.
    pub code: String,
    /// For the person reading it; may change wording between releases.
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Seconds a client is asked to wait before retrying a 503.
pub const RETRY_AFTER_SECS: u64 = 5;

/// An error response with the JSON body above. A 503 says the request was fine but cannot
/// be served now, so it always carries `Retry-After`.
pub fn error_response(
    status: StatusCode,
    code: &str,
    message: impl Into<String>,
    field: Option<String>,
) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.to_owned(),
            message: message.into(),
            field,
        },
    };
    let mut response = (status, Json(body)).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(RETRY_AFTER_SECS),
        );
    }
    response
}

/// `GET /healthz`: 200 while the process can answer at all (the liveness probe).
/// `GET /readyz`: 200 when the service can do its work, else 503 with the reason (the
/// readiness probe, and what the tests and compose health checks wait on).
pub fn health_routes(readiness: Readiness) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(ready))
        .with_state(readiness)
}

async fn ready(State(readiness): State<Readiness>) -> Response {
    let warnings = readiness.warnings();
    let (status, mut body) = match readiness.status() {
        Status::Ready => (StatusCode::OK, serde_json::json!({ "status": "ready" })),
        Status::NotReady(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "status": "not_ready", "reason": reason }),
        ),
    };
    if !warnings.is_empty() {
        body["warnings"] = warnings.into();
    }
    (status, Json(body)).into_response()
}

/// Every route of both services takes request bodies up to this size (a change of address
/// is well under 1 KiB); a larger one gets 413 without being read further.
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;

/// Adds what every route of both services gets: `GET /metrics`, a JSON 404 for unknown
/// paths and 405 for wrong methods, a trace context, a request span (method, matched route,
/// status, latency), an overall request deadline, request metrics, a JSON 500 instead of a
/// dropped connection if a handler panics, and the body size limit.
pub fn with_common_layers(router: Router, service: &str, request_timeout: Duration) -> Router {
    let policy = RequestPolicy {
        metrics: HttpMetrics::new(service),
        deadline: request_timeout,
    };
    router
        .merge(metrics::routes())
        .fallback(|| async {
            error_response(StatusCode::NOT_FOUND, "not_found", "No such route.", None)
        })
        .method_not_allowed_fallback(|| async {
            error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "This route does not accept that method.",
                None,
            )
        })
        // One stack in one `layer` call, with one `from_fn`: every `Router::layer` call
        // boxes the routes again and every `from_fn` (like every `HandleError`) clones the
        // stack below it, and each costs every request an allocation and a clone (how that
        // was found, with bench/run.sh: bench/README.md).
        .layer(
            ServiceBuilder::new()
                .map_request(with_trace_context)
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(request_span)
                        .on_response(
                            DefaultOnResponse::new()
                                .level(Level::INFO)
                                .latency_unit(LatencyUnit::Micros),
                        ),
                )
                .layer(axum::middleware::from_fn_with_state(policy, around_handler))
                .layer(CatchPanicLayer::custom(panic_response))
                .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES)),
        )
}

/// The request's trace context, continued from its `traceparent` header or started here,
/// put where the request span, the handlers and [`around_handler`] find it.
fn with_trace_context<B>(mut request: Request<B>) -> Request<B> {
    let context = request
        .headers()
        .get(TRACEPARENT)
        .and_then(|value| value.to_str().ok())
        .and_then(TraceContext::parse)
        .map_or_else(TraceContext::new_root, |parent| parent.child());
    request.extensions_mut().insert(context);
    request
}

/// The request's span: method, matched route, path and trace id, continuing the trace.
fn request_span<B>(request: &Request<B>) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    let trace = request.extensions().get::<TraceContext>();
    // Field values are only computed when the span is enabled (not at RUST_LOG=warn).
    let span = tracing::info_span!(
        "http",
        method = %request.method(),
        route,
        path = %request.uri().path(),
        trace_id = trace.map(TraceContext::trace_id),
    );
    if let Some(trace) = trace {
        crate::telemetry::continue_trace(&span, trace);
    }
    span
}

/// What [`around_handler`] needs: the service's request metrics and the overall deadline.
#[derive(Debug, Clone, Copy)]
struct RequestPolicy {
    metrics: HttpMetrics,
    deadline: Duration,
}

/// Middleware around each handler: the overall deadline, the request metrics (the answer
/// to a request past its deadline included), and the trace context echoed in the
/// response's `traceparent` so a client can quote it.
async fn around_handler(
    State(policy): State<RequestPolicy>,
    request: axum::extract::Request,
    next: Next,
) -> Response {
    let trace = request.extensions().get::<TraceContext>().copied();
    let timer = policy.metrics.start(&request);
    let mut response = tokio::time::timeout(policy.deadline, next.run(request))
        .await
        .unwrap_or_else(|_| deadline_passed());
    timer.finish(response.status());
    if let Some(value) = trace.and_then(|trace| trace.to_string().parse().ok()) {
        response.headers_mut().insert(TRACEPARENT, value);
    }
    response
}

/// A request that outlives the overall deadline is dropped (and with it whatever it was
/// waiting for) and answered like every other refusal: a 503 with the JSON error body and
/// `Retry-After`.
fn deadline_passed() -> Response {
    error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "request_timeout",
        "The request did not finish in time and was abandoned; retry it.",
        None,
    )
}

fn panic_response(_: Box<dyn Any + Send + 'static>) -> Response {
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "The server failed while handling this request; it has been logged.",
        None,
    )
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then stops accepting and
/// lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    /// `GET path` through `router`: the status, the headers and the JSON error body.
    async fn get_error(
        router: Router,
        path: &str,
    ) -> (StatusCode, axum::http::HeaderMap, ErrorBody) {
        let response = router
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, 4096).await.unwrap();
        (
            parts.status,
            parts.headers,
            serde_json::from_slice(&body).unwrap(),
        )
    }

    #[tokio::test]
    async fn a_request_past_the_deadline_gets_a_json_503_with_retry_after() {
        let slow = Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "too late"
            }),
        );
        let router = with_common_layers(slow, "test", Duration::from_millis(50));

        let (status, headers, error) = get_error(router, "/slow").await;

        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            headers[axum::http::header::RETRY_AFTER],
            RETRY_AFTER_SECS.to_string().as_str()
        );
        assert_eq!(error.error.code, "request_timeout");
    }

    #[tokio::test]
    async fn a_handler_that_panics_gets_a_json_500_and_the_trace_context_is_echoed() {
        async fn broken_handler() -> &'static str {
            panic!("a bug")
        }
        let broken = Router::new().route("/broken", get(broken_handler));
        let router = with_common_layers(broken, "test", Duration::from_secs(5));

        let (status, headers, error) = get_error(router, "/broken").await;

        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(headers.contains_key(TRACEPARENT));
        assert_eq!(error.error.code, "internal_error");
    }
}

//! Structured logs for both services: human-readable text by default, JSON lines for
//! containers (`LOG_FORMAT=json`), filtered by `RUST_LOG` (default `info`).
//!
//! Built with the `otlp` cargo feature and run with `OTEL_EXPORTER_OTLP_ENDPOINT` set,
//! spans are also exported over OTLP/HTTP (e.g. to Jaeger on :4318), continuing the trace
//! the request or the message brought.
//!
//! lapin's own log lines are off unless `RUST_LOG` names `lapin`: every error it logs also
//! reaches our code as a `Result`, which logs it once, where it is handled, with context
//! (and a passive declare of a queue that does not exist yet is not an ERROR).

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Installs the global subscriber for `service`. Call once, first thing in `main`, and keep
/// the guard until the end: dropping it flushes exported spans.
pub fn init(service: &str) -> Guard {
    let filter = filter();
    let json = std::env::var("LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    #[cfg(feature = "otlp")]
    let (export, guard) = otlp::layer(service);
    #[cfg(not(feature = "otlp"))]
    let (export, guard) = {
        let _ = service;
        (
            None::<tracing_subscriber::layer::Identity>,
            Guard::default(),
        )
    };
    let registry = tracing_subscriber::registry().with(filter).with(export);
    if json {
        registry
            .with(fmt::layer().json().flatten_event(true))
            .init();
    } else {
        let colours = std::io::IsTerminal::is_terminal(&std::io::stdout());
        registry.with(fmt::layer().with_ansi(colours)).init();
    }
    guard
}

/// Flushes exported spans when dropped (nothing to do without the `otlp` feature).
#[derive(Debug, Default)]
#[must_use = "dropping the guard stops the span export"]
pub struct Guard {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Makes `span` continue `context` in the exported trace (a no-op without the `otlp`
/// feature, where the `trace_id` field on the span is what ties the logs together).
pub fn continue_trace(span: &tracing::Span, context: &crate::trace_context::TraceContext) {
    #[cfg(feature = "otlp")]
    otlp::set_parent(span, context);
    #[cfg(not(feature = "otlp"))]
    let _ = (span, context);
}

#[cfg(feature = "otlp")]
mod otlp {
    use super::Guard;
    use crate::trace_context::TraceContext;
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
    };
    use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    /// The export layer, when `OTEL_EXPORTER_OTLP_ENDPOINT` says where to.
    pub(super) fn layer<S>(service: &str) -> (Option<impl tracing_subscriber::Layer<S>>, Guard)
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_none() {
            return (None, Guard::default());
        }
        let exporter = match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(exporter) => exporter,
            Err(error) => {
                eprintln!("Cannot export spans over OTLP: {error}");
                return (None, Guard::default());
            }
        };
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                Resource::builder()
                    .with_service_name(service.to_owned())
                    .build(),
            )
            .build();
        let tracer = provider.tracer(service.to_owned());
        let layer = tracing_opentelemetry::layer().with_tracer(tracer);
        (
            Some(layer),
            Guard {
                provider: Some(provider),
            },
        )
    }

    pub(super) fn set_parent(span: &tracing::Span, context: &TraceContext) {
        let (trace_id, span_id, sampled) = context.parts();
        let remote = SpanContext::new(
            TraceId::from(trace_id),
            SpanId::from(span_id),
            if sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            },
            true,
            TraceState::default(),
        );
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
}

/// For tests: silent unless `TEST_LOG` is set, so a failing test can be rerun with logs.
/// Safe to call from every test; only the first call installs anything.
pub fn init_for_tests() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::registry()
            .with(filter())
            .with(fmt::layer().with_test_writer())
            .try_init();
    }
}

fn filter() -> EnvFilter {
    let directives = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
    if directives.contains("lapin") {
        EnvFilter::new(directives)
    } else {
        EnvFilter::new(format!("{directives},lapin=off"))
    }
}

//! Logs and traces. Logs go to stdout. Traces leave the process only when an OpenTelemetry
//! collector is configured with `OTEL_EXPORTER_OTLP_ENDPOINT` (OTLP over HTTP, protobuf);
//! otherwise nothing is exported and nothing phones home.

use std::collections::HashMap;

use opentelemetry::{propagation::TextMapPropagator, trace::TracerProvider as _};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogLevel;

/// Keeps the trace exporter alive; [`Telemetry::shutdown`] flushes the last spans.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still buffered and stops the exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "could not flush the last traces");
        }
    }
}

/// Installs the global subscriber: `LOG_LEVEL` for Syncline's crates, `RUST_LOG` overriding it,
/// JSON lines when `LOG_FORMAT=json` (for log shippers), human-readable text otherwise, and the
/// OTLP trace exporter when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
pub fn init(level: LogLevel, service: &str) -> Telemetry {
    let directive = level.directive();
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "warn,syncline={directive},syncline_core={directive},syncline_api={directive},\
             syncline_worker={directive},syncline_connectors={directive}"
        ))
    });
    let provider = otlp_provider(service);
    let traces = provider.as_ref().map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(service.to_owned())));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f == "json");
    let (json_logs, text_logs) = match json {
        true => (Some(fmt::layer().json().with_current_span(false)), None),
        false => (None, Some(fmt::layer().with_target(false))),
    };
    // A second initialisation (tests, embedded use) keeps the first subscriber.
    let _ = tracing_subscriber::registry().with(filter).with(json_logs).with(text_logs).with(traces).try_init();
    Telemetry { provider }
}

fn otlp_provider(service: &str) -> Option<SdkTracerProvider> {
    std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT")?;
    match opentelemetry_otlp::SpanExporter::builder().with_http().build() {
        Ok(exporter) => Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(Resource::builder().with_service_name(service.to_owned()).build())
                .build(),
        ),
        Err(e) => {
            eprintln!("OTEL_EXPORTER_OTLP_ENDPOINT is set but the trace exporter cannot start: {e}");
            None
        }
    }
}

/// The current span's trace context as W3C Trace Context fields (`traceparent`, `tracestate`),
/// to carry where the work continues (a queued job, an outgoing call). Empty when traces are
/// not exported.
pub fn trace_carrier() -> HashMap<String, String> {
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&tracing::Span::current().context(), &mut carrier);
    carrier
}

/// Makes `span` part of the trace `carrier` came from (see [`trace_carrier`]); a carrier
/// without a valid `traceparent` leaves the span where it is.
pub fn continue_trace<'a>(span: &tracing::Span, carrier: impl IntoIterator<Item = (&'a str, &'a str)>) {
    let carrier: HashMap<String, String> =
        carrier.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned())).collect();
    if !carrier.contains_key("traceparent") {
        return;
    }
    let _ = span.set_parent(TraceContextPropagator::new().extract(&carrier));
}

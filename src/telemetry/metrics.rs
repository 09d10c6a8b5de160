//! Every metric, defined once with its help text and bounded labels: never a key, a user, a
//! prompt or a request id. OpenTelemetry GenAI names where one exists, `prism_` otherwise.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};

use prometheus::{
    exponential_buckets, Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::health::Health;
use crate::proxy::ctx::RequestCtx;
use crate::table::Table;

pub struct Metrics {
    pub registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    ttfc: HistogramVec,
    tokens: HistogramVec,
    overhead: HistogramVec,
    upstream_latency: HistogramVec,
    in_flight: IntGaugeVec,
    failovers: IntCounterVec,
    reloads: IntCounterVec,
    config_hash: Gauge,
    upstream_state: IntGaugeVec,
    breaker_state: IntGaugeVec,
    ratelimit_remaining: GaugeVec,
    /// Model names seen as label values; past the cap new ones are labelled `other`.
    models: Mutex<HashSet<String>>,
}

const MAX_MODEL_LABELS: usize = 200;

fn register<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
    // Names are unique constants defined below: registration cannot collide.
    let _ = r.register(Box::new(c.clone()));
    c
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        r,
        IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|_| unreachable_metric()),
    )
}

fn histogram(r: &Registry, name: &str, help: &str, labels: &[&str], buckets: Vec<f64>) -> HistogramVec {
    register(
        r,
        HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
            .unwrap_or_else(|_| unreachable_metric()),
    )
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    register(
        r,
        GaugeVec::new(Opts::new(name, help), labels).unwrap_or_else(|_| unreachable_metric()),
    )
}

fn int_gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(
        r,
        IntGaugeVec::new(Opts::new(name, help), labels).unwrap_or_else(|_| unreachable_metric()),
    )
}

/// Metric definitions are compile-time constants; an invalid one is a programming error
/// caught by the unit test below, never something a request or config can cause.
#[allow(clippy::panic)]
fn unreachable_metric<T>() -> T {
    panic!("invalid metric definition")
}

fn seconds_buckets() -> Vec<f64> {
    exponential_buckets(0.005, 2.0, 16).unwrap_or_default()
}

fn overhead_buckets() -> Vec<f64> {
    exponential_buckets(0.00005, 2.0, 16).unwrap_or_default()
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Metrics {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        {
            let _ = r.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()));
        }
        let config_hash = register(
            &r,
            Gauge::new(
                "prism_config_hash",
                "Hash (48 bits) of the loaded config file; changes on every successful reload.",
            )
            .unwrap_or_else(|_| unreachable_metric()),
        );
        Metrics {
            requests: counter(
                &r,
                "prism_requests_total",
                "Requests answered, by endpoint, provider, model and HTTP status.",
                &["endpoint", "provider", "model", "status"],
            ),
            duration: histogram(
                &r,
                "gen_ai_client_operation_duration_seconds",
                "Duration of a GenAI operation as the client sees it (OpenTelemetry GenAI).",
                &[
                    "gen_ai_operation_name",
                    "gen_ai_provider_name",
                    "gen_ai_request_model",
                    "error_type",
                ],
                seconds_buckets(),
            ),
            ttfc: histogram(
                &r,
                "gen_ai_client_operation_time_to_first_chunk_seconds",
                "Time from request to the first byte of the answer sent to the client (streams: the first chunk).",
                &["gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model"],
                seconds_buckets(),
            ),
            tokens: histogram(
                &r,
                "gen_ai_client_token_usage",
                "Tokens used per request, by type input/output (OpenTelemetry GenAI).",
                &[
                    "gen_ai_operation_name",
                    "gen_ai_provider_name",
                    "gen_ai_request_model",
                    "gen_ai_token_type",
                ],
                exponential_buckets(1.0, 4.0, 12).unwrap_or_default(),
            ),
            overhead: histogram(
                &r,
                "prism_gateway_overhead_seconds",
                "Time spent in Prism per request, excluding time waiting on upstreams.",
                &["endpoint"],
                overhead_buckets(),
            ),
            upstream_latency: histogram(
                &r,
                "prism_upstream_latency_seconds",
                "Time waiting on the upstream per request (all attempts).",
                &["provider"],
                seconds_buckets(),
            ),
            in_flight: int_gauge_vec(
                &r,
                "prism_in_flight",
                "Requests in flight, by kind: request or stream.",
                &["kind"],
            ),
            failovers: counter(
                &r,
                "prism_failovers_total",
                "Moves from one candidate to the next, by reason.",
                &["from", "to", "reason"],
            ),
            reloads: counter(
                &r,
                "prism_config_reloads_total",
                "Config reloads by result: success or failure.",
                &["result"],
            ),
            config_hash,
            upstream_state: int_gauge_vec(
                &r,
                "prism_upstream_health",
                "1 for the upstream's current state (healthy, degraded, ejected).",
                &["provider", "state"],
            ),
            breaker_state: int_gauge_vec(
                &r,
                "prism_upstream_breaker_state",
                "Circuit breaker: 0 closed, 1 half-open, 2 open.",
                &["provider"],
            ),
            ratelimit_remaining: gauge_vec(
                &r,
                "prism_upstream_ratelimit_remaining",
                "Rate-limit headroom the provider last reported, by resource (requests, tokens).",
                &["provider", "resource"],
            ),
            models: Mutex::new(HashSet::new()),
            registry: r,
        }
    }

    /// A bounded label for a client-supplied model name.
    fn model_label(&self, model: Option<&str>) -> String {
        let Some(m) = model else { return "none".to_string() };
        let Ok(mut seen) = self.models.lock() else {
            return "other".to_string();
        };
        if seen.contains(m) {
            return m.to_string();
        }
        if seen.len() < MAX_MODEL_LABELS && m.len() <= 128 {
            seen.insert(m.to_string());
            return m.to_string();
        }
        "other".to_string()
    }

    pub fn request_started(&self, stream: bool) {
        self.in_flight
            .with_label_values(&[if stream { "stream" } else { "request" }])
            .inc();
    }

    /// A request turned out to be a stream: move it from `request` to `stream`.
    pub fn stream_started(&self) {
        self.in_flight.with_label_values(&["request"]).dec();
        self.in_flight.with_label_values(&["stream"]).inc();
    }

    pub fn request_finished(&self, ctx: &RequestCtx) {
        let kind = if ctx.stream { "stream" } else { "request" };
        self.in_flight.with_label_values(&[kind]).dec();
        let provider = ctx.provider.as_deref().unwrap_or("none");
        // Unrouted requests (401, 404, bad JSON) keep their status but no model label.
        let model = if ctx.provider.is_some() {
            self.model_label(ctx.model.as_deref())
        } else {
            "none".to_string()
        };
        let status = ctx.status.to_string();
        self.requests
            .with_label_values(&[ctx.endpoint, provider, &model, &status])
            .inc();
        let total = ctx.started.elapsed();
        self.overhead
            .with_label_values(&[ctx.endpoint])
            .observe(total.saturating_sub(ctx.upstream_time).as_secs_f64());
        for (from, to, reason) in &ctx.failovers {
            self.failovers
                .with_label_values(&[from.as_str(), to.as_str(), reason])
                .inc();
        }
        if ctx.provider.is_none() {
            return;
        }
        self.upstream_latency
            .with_label_values(&[provider])
            .observe(ctx.upstream_time.as_secs_f64());
        let op = match ctx.endpoint {
            "chat" => "chat",
            "completions" => "text_completion",
            "embeddings" => "embeddings",
            other => other,
        };
        self.duration
            .with_label_values(&[op, provider, &model, ctx.error.unwrap_or("")])
            .observe(total.as_secs_f64());
        if let Some(t) = ctx.ttft {
            self.ttfc
                .with_label_values(&[op, provider, &model])
                .observe(t.as_secs_f64());
        }
        if let Some(u) = ctx.usage {
            self.tokens
                .with_label_values(&[op, provider, &model, "input"])
                .observe(u.prompt_tokens as f64);
            self.tokens
                .with_label_values(&[op, provider, &model, "output"])
                .observe(u.completion_tokens as f64);
        }
    }

    /// Data-plane requests and streams not yet finished.
    pub fn in_flight_total(&self) -> i64 {
        self.in_flight.with_label_values(&["request"]).get() + self.in_flight.with_label_values(&["stream"]).get()
    }

    pub fn reload(&self, ok: bool) {
        self.reloads
            .with_label_values(&[if ok { "success" } else { "failure" }])
            .inc();
    }

    pub fn set_config_hash(&self, text: &str) {
        let h = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        self.config_hash.set((h & ((1 << 48) - 1)) as f64);
    }

    /// Refresh the health gauges from the live registry, then render the text format.
    pub fn render(&self, table: &Table, health: Option<&Health>) -> Vec<u8> {
        if let Some(h) = health {
            self.upstream_state.reset();
            self.breaker_state.reset();
            let now = tokio::time::Instant::now();
            for (p, u) in h.upstreams_of(table) {
                self.upstream_state.with_label_values(&[&p.name, u.state(now)]).set(1);
                let b = match u.breaker_state() {
                    "open" => 2,
                    "half_open" => 1,
                    _ => 0,
                };
                self.breaker_state.with_label_values(&[&p.name]).set(b);
                let (req, tok) = u.headroom();
                if let Some(r) = req {
                    self.ratelimit_remaining
                        .with_label_values(&[&p.name, "requests"])
                        .set(r as f64);
                }
                if let Some(t) = tok {
                    self.ratelimit_remaining
                        .with_label_values(&[&p.name, "tokens"])
                        .set(t as f64);
                }
            }
        }
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_are_valid_and_render() {
        let m = Metrics::new();
        m.reload(true);
        m.set_config_hash("x");
        let text = String::from_utf8(m.render(&Table::default(), None)).unwrap();
        assert!(text.contains("prism_config_reloads_total{result=\"success\"} 1"));
        assert!(text.contains("# HELP prism_config_hash"));
    }

    #[test]
    fn model_labels_are_capped() {
        let m = Metrics::new();
        for i in 0..MAX_MODEL_LABELS {
            assert_eq!(m.model_label(Some(&format!("m{i}"))), format!("m{i}"));
        }
        assert_eq!(m.model_label(Some("one-too-many")), "other");
        assert_eq!(m.model_label(Some("m3")), "m3");
    }
}

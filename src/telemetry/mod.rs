//! Logs: one JSON access-log line per request on stdout, application logs on stderr
//! (JSON when not a terminal). Metrics join this module.

use std::io::{IsTerminal, Write};

use pingora_proxy::Session;
use serde_json::json;

use crate::proxy::ctx::RequestCtx;

/// Set up application logging from `PRISM_LOG` (`info`, `prism=debug`, ...).
pub fn init_logging() {
    let filter = std::env::var("PRISM_LOG").unwrap_or_else(|_| "info".to_string());
    let mut b = env_logger::Builder::new();
    b.parse_filters(&filter);
    if !std::io::stderr().is_terminal() {
        b.format(|buf, record| {
            let line = json!({
                "ts": buf.timestamp_millis().to_string(),
                "level": record.level().as_str(),
                "target": record.target(),
                "msg": record.args().to_string(),
            });
            writeln!(buf, "{line}")
        });
    }
    let _ = b.try_init();
}

/// One access-log line. Fields are bounded and never carry a key or a prompt.
pub fn access_log(session: &Session, ctx: &RequestCtx) {
    let req = session.req_header();
    let usage = ctx
        .usage
        .map(|u| json!({"prompt": u.prompt_tokens, "completion": u.completion_tokens, "total": u.total_tokens}));
    let line = json!({
        "ts": crate::proxy::serve::now_unix(),
        "request_id": ctx.request_id,
        "method": req.method.as_str(),
        "path": req.uri.path(),
        "endpoint": ctx.endpoint,
        "key_id": ctx.key_id,
        "model": ctx.model,
        "provider": ctx.provider,
        "upstream_model": ctx.upstream_model,
        "stream": ctx.stream,
        "attempts": ctx.attempts,
        "failovers": ctx.failovers.iter().map(|(f, t, r)| json!({"from": f, "to": t, "reason": r})).collect::<Vec<_>>(),
        "status": ctx.status,
        "tokens": usage,
        "ttft_ms": ctx.ttft.map(|d| d.as_secs_f64() * 1000.0),
        "duration_ms": ctx.started.elapsed().as_secs_f64() * 1000.0,
        "upstream_ms": ctx.upstream_time.as_secs_f64() * 1000.0,
        "error": ctx.error,
    });
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
}

pub mod metrics;

/// The Prometheus endpoint: `GET /metrics` on its own listener, one thread.
pub struct MetricsService {
    pub app: std::sync::Arc<crate::state::App>,
}

#[async_trait::async_trait]
impl pingora_core::apps::http_app::ServeHttp for MetricsService {
    async fn response(&self, session: &mut pingora_core::protocols::http::ServerSession) -> http::Response<Vec<u8>> {
        let path = session.req_header().uri.path();
        if path != "/metrics" {
            return crate::admin::json_response(
                404,
                &json!({"error": {"message": "GET /metrics", "type": "not_found_error", "param": null, "code": null}}),
            );
        }
        let table = self.app.table.load_full();
        let body = metrics::METRICS.render(&table, self.app.health.get().map(|h| h.as_ref()));
        http::Response::builder()
            .status(200)
            .header("content-type", "text/plain; version=0.0.4")
            .header("content-length", body.len())
            .body(body)
            .unwrap_or_else(|_| http::Response::new(Vec::new()))
    }
}

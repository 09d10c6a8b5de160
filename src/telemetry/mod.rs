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
    ACCESS_LOG.write(line.to_string());
}

/// Access-log lines go to a writer thread through a channel: the request path never makes a
/// write system call, and lines are written in batches, flushed whenever the queue runs dry.
pub struct AccessLog {
    tx: Option<std::sync::mpsc::SyncSender<Msg>>,
}

enum Msg {
    Line(String),
    Flush(std::sync::mpsc::Sender<()>),
}

static ACCESS_LOG: std::sync::LazyLock<AccessLog> = std::sync::LazyLock::new(AccessLog::start);

impl AccessLog {
    fn start() -> AccessLog {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Msg>(65_536);
        let spawned = std::thread::Builder::new()
            .name("prism-access-log".into())
            .spawn(move || {
                let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
                while let Ok(msg) = rx.recv() {
                    let mut next = Some(msg);
                    while let Some(m) = next.take() {
                        match m {
                            Msg::Line(l) => {
                                let _ = out.write_all(l.as_bytes());
                                let _ = out.write_all(b"\n");
                            }
                            Msg::Flush(done) => {
                                let _ = out.flush();
                                let _ = done.send(());
                            }
                        }
                        next = rx.try_recv().ok();
                    }
                    let _ = out.flush();
                }
            });
        AccessLog {
            tx: spawned.ok().map(|_| tx),
        }
    }

    fn write(&self, line: String) {
        match &self.tx {
            // A full queue (a stalled stdout) drops the line rather than stall requests.
            Some(tx) => {
                if tx.try_send(Msg::Line(line)).is_err() {
                    log::warn!("access log queue full: line dropped");
                }
            }
            None => println!("{line}"),
        }
    }
}

/// Write out every queued access-log line (before the process exits).
pub fn flush_access_log() {
    if let Some(tx) = &ACCESS_LOG.tx {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        if tx.send(Msg::Flush(done_tx)).is_ok() {
            let _ = done_rx.recv_timeout(std::time::Duration::from_secs(2));
        }
    }
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

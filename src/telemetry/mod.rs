//! Logs: one JSON access-log line per request on stdout, application logs on stderr
//! (JSON when not a terminal). Metrics join this module.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use pingora_proxy::Session;
use serde::Serialize;
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
    ACCESS_LOG.write(&line(ctx, req.method.as_str(), req.uri.path(), ctx.error));
}

/// The line of a routed request whose task ended before Pingora's logging phase: a stream
/// still open when the grace period ran out and the runtime was shut down. Only the data-plane
/// POST endpoints get this far, so method and path follow from the endpoint.
pub fn access_log_interrupted(ctx: &RequestCtx) {
    let path = match ctx.endpoint {
        "chat" => "/v1/chat/completions",
        "completions" => "/v1/completions",
        "embeddings" => "/v1/embeddings",
        _ => "",
    };
    ACCESS_LOG.write(&line(ctx, "POST", path, Some("interrupted")));
}

fn line<'a>(ctx: &'a RequestCtx, method: &'a str, path: &'a str, error: Option<&'a str>) -> Line<'a> {
    Line {
        ts: crate::proxy::serve::now_unix(),
        request_id: &ctx.request_id,
        method,
        path,
        endpoint: ctx.endpoint,
        key_id: ctx.key_id.as_deref(),
        model: ctx.model.as_deref(),
        provider: ctx.provider.as_deref(),
        upstream_model: ctx.upstream_model.as_deref(),
        stream: ctx.stream,
        attempts: ctx.attempts,
        failovers: Failovers(&ctx.failovers),
        status: ctx.status,
        tokens: ctx.usage.map(|u| Tokens {
            prompt: u.prompt_tokens,
            completion: u.completion_tokens,
            total: u.total_tokens,
        }),
        ttft_ms: ctx.ttft.map(|d| d.as_secs_f64() * 1000.0),
        duration_ms: ctx.started.elapsed().as_secs_f64() * 1000.0,
        upstream_ms: ctx.upstream_time.as_secs_f64() * 1000.0,
        error,
    }
}

/// The access-log line, serialized straight into the log buffer (no intermediate tree).
#[derive(Serialize)]
struct Line<'a> {
    ts: u64,
    request_id: &'a str,
    method: &'a str,
    path: &'a str,
    endpoint: &'a str,
    key_id: Option<&'a str>,
    model: Option<&'a str>,
    provider: Option<&'a str>,
    upstream_model: Option<&'a str>,
    stream: bool,
    attempts: u32,
    failovers: Failovers<'a>,
    status: u16,
    tokens: Option<Tokens>,
    ttft_ms: Option<f64>,
    duration_ms: f64,
    upstream_ms: f64,
    error: Option<&'a str>,
}

#[derive(Serialize)]
struct Tokens {
    prompt: u64,
    completion: u64,
    total: u64,
}

struct Failovers<'a>(&'a [(String, String, &'static str)]);

#[derive(Serialize)]
struct Failover<'a> {
    from: &'a str,
    to: &'a str,
    reason: &'a str,
}

impl Serialize for Failovers<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|(from, to, reason)| Failover { from, to, reason }))
    }
}

/// Access-log lines are appended to a shared buffer that a writer thread drains every
/// [`ACCESS_LOG_INTERVAL`] (sooner when it passes [`ACCESS_LOG_WAKE`] bytes): the request path
/// makes no system call and wakes no thread, and stdout gets large writes.
pub struct AccessLog {
    shared: std::sync::Arc<Shared>,
    threaded: bool,
    /// Set while draining: every line is written at once, so none waits in the buffer when
    /// the process exits (Pingora may end it when the grace period runs out).
    immediate: std::sync::atomic::AtomicBool,
}

struct Shared {
    buf: Mutex<Vec<u8>>,
    /// Held while writing to stdout, so a flush and the writer thread keep lines in order.
    out: Mutex<()>,
    wake: Condvar,
    dropped: AtomicU64,
}

const ACCESS_LOG_INTERVAL: Duration = Duration::from_millis(100);
const ACCESS_LOG_WAKE: usize = 256 * 1024;
/// A stalled stdout drops lines past this much pending output rather than grow without bound.
const ACCESS_LOG_CAP: usize = 16 * 1024 * 1024;

static ACCESS_LOG: std::sync::LazyLock<AccessLog> = std::sync::LazyLock::new(AccessLog::start);

impl AccessLog {
    fn start() -> AccessLog {
        let shared = std::sync::Arc::new(Shared {
            buf: Mutex::new(Vec::with_capacity(ACCESS_LOG_WAKE)),
            out: Mutex::new(()),
            wake: Condvar::new(),
            dropped: AtomicU64::new(0),
        });
        let s = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("prism-access-log".into())
            .spawn(move || {
                let mut spare = Vec::with_capacity(ACCESS_LOG_WAKE);
                loop {
                    {
                        let guard = s.buf.lock().unwrap_or_else(|e| e.into_inner());
                        let _ = s.wake.wait_timeout(guard, ACCESS_LOG_INTERVAL);
                    }
                    s.drain(&mut spare);
                }
            });
        AccessLog {
            shared,
            threaded: spawned.is_ok(),
            immediate: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn write(&self, line: &Line<'_>) {
        let s = &self.shared;
        let mut buf = s.buf.lock().unwrap_or_else(|e| e.into_inner());
        if buf.len() > ACCESS_LOG_CAP {
            drop(buf);
            if s.dropped.fetch_add(1, Ordering::Relaxed).is_multiple_of(10_000) {
                log::warn!("access log output stalled: lines dropped");
            }
            return;
        }
        let mark = buf.len();
        if serde_json::to_writer(&mut *buf, line).is_err() {
            buf.truncate(mark);
            return;
        }
        buf.push(b'\n');
        let full = buf.len() >= ACCESS_LOG_WAKE;
        drop(buf);
        if !self.threaded || self.immediate.load(Ordering::Relaxed) {
            s.drain(&mut Vec::new());
        } else if full {
            s.wake.notify_one();
        }
    }
}

impl Shared {
    /// Write out what is pending. `spare` is swapped in as the next buffer (no allocation).
    fn drain(&self, spare: &mut Vec<u8>) {
        let _out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        {
            let mut buf = self.buf.lock().unwrap_or_else(|e| e.into_inner());
            if buf.is_empty() {
                return;
            }
            std::mem::swap(&mut *buf, spare);
        }
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(spare);
        let _ = stdout.flush();
        spare.clear();
        if spare.capacity() > 4 * ACCESS_LOG_WAKE {
            spare.shrink_to(ACCESS_LOG_WAKE);
        }
    }
}

/// Write out every pending access-log line (before the process exits).
pub fn flush_access_log() {
    ACCESS_LOG.shared.drain(&mut Vec::new());
}

/// From now on, write each access-log line as it comes (shutdown has begun), after what is
/// pending.
pub fn access_log_immediate() {
    ACCESS_LOG.immediate.store(true, Ordering::Relaxed);
    flush_access_log();
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

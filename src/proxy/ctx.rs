//! What one request learns on its way through, for the access log and metrics.

use std::time::{Duration, Instant};

use crate::providers::Usage;

#[derive(Debug)]
pub struct RequestCtx {
    pub request_id: String,
    pub started: Instant,
    pub endpoint: &'static str,
    pub key_id: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub upstream_model: Option<String>,
    pub stream: bool,
    pub attempts: u32,
    pub status: u16,
    pub usage: Option<Usage>,
    /// Time to the first byte sent to the client (for streams: the commit point).
    pub ttft: Option<Duration>,
    /// Time spent waiting on upstreams (everything else is gateway overhead).
    pub upstream_time: Duration,
    pub error: Option<&'static str>,
    pub failovers: Vec<(String, String, &'static str)>,
    /// Pingora's logging phase has written this request's line.
    pub logged: bool,
}

/// A routed request dropped before its logging phase (its task was ended when the grace
/// period ran out) still gets its access-log line.
impl Drop for RequestCtx {
    fn drop(&mut self) {
        if !self.logged && self.provider.is_some() {
            crate::telemetry::access_log_interrupted(self);
        }
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        RequestCtx {
            request_id: String::new(),
            started: Instant::now(),
            endpoint: "other",
            key_id: None,
            model: None,
            provider: None,
            upstream_model: None,
            stream: false,
            attempts: 0,
            status: 0,
            usage: None,
            ttft: None,
            upstream_time: Duration::ZERO,
            error: None,
            failovers: Vec::new(),
            logged: false,
        }
    }
}

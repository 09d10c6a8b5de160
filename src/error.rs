//! One error type for the whole gateway: every failure knows its HTTP status, its OpenAI
//! `type`/`code`, the offending `param`, whether a retry elsewhere may help, and a bounded
//! metric label. It renders as the OpenAI error envelope (`providers.md` §0.8).

use bytes::Bytes;
use serde_json::json;

/// Who caused a failure: decides failover and which health stats it counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The client sent something wrong; never retried, never counted against an upstream.
    Client,
    /// The upstream failed or refused; another candidate may succeed.
    Upstream,
    /// Prism itself failed.
    Internal,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GatewayError {
    pub status: u16,
    pub kind: &'static str,
    pub code: Option<String>,
    pub param: Option<String>,
    pub message: String,
    pub fault: Fault,
    /// Another attempt (same or other upstream) may succeed.
    pub retryable: bool,
    /// Seconds the client (or the health tracker) should wait, from Retry-After.
    pub retry_after: Option<u64>,
    /// Extra response headers (rate-limit headers translated to OpenAI names, ...).
    pub headers: Vec<(String, String)>,
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.kind, self.message)
    }
}

impl std::error::Error for GatewayError {}

pub type Result<T, E = GatewayError> = std::result::Result<T, E>;

impl GatewayError {
    fn new(status: u16, kind: &'static str, code: Option<&str>, message: impl Into<String>) -> Self {
        let fault = match status {
            500 => Fault::Internal,
            s if s >= 500 => Fault::Upstream,
            _ => Fault::Client,
        };
        GatewayError {
            status,
            kind,
            code: code.map(str::to_string),
            param: None,
            message: message.into(),
            fault,
            retryable: matches!(status, 408 | 409 | 429) || status >= 500,
            retry_after: None,
            headers: Vec::new(),
        }
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    pub fn with_retry_after(mut self, secs: Option<u64>) -> Self {
        self.retry_after = secs;
        self
    }

    pub fn with_fault(mut self, fault: Fault) -> Self {
        self.fault = fault;
        self
    }

    pub fn not_retryable(mut self) -> Self {
        self.retryable = false;
        self
    }

    /// 400 for a malformed or unsupported client request.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request_error", None, message)
    }

    /// 400 `unsupported_parameter` naming the field.
    pub fn unsupported_param(param: &str, message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request_error", Some("unsupported_parameter"), message).with_param(param)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, "authentication_error", Some("invalid_api_key"), message)
    }

    pub fn model_not_found(model: &str) -> Self {
        Self::new(
            404,
            "not_found_error",
            Some("model_not_found"),
            format!("The model `{model}` does not exist or is not routable through this gateway"),
        )
        .with_param("model")
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "not_found_error", None, message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "invalid_request_error", Some("method_not_allowed"), message)
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "invalid_request_error",
            Some("request_too_large"),
            format!("Request body exceeds the limit of {limit} bytes"),
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "server_error", None, message)
    }

    /// 502: the upstream answered with something we cannot use.
    pub fn bad_upstream(message: impl Into<String>) -> Self {
        Self::new(502, "server_error", Some("upstream_error"), message)
    }

    /// 502: the upstream stream ended before its terminal event.
    pub fn truncated_stream(message: impl Into<String>) -> Self {
        Self::new(502, "server_error", Some("upstream_stream_truncated"), message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "service_unavailable", Some("overloaded"), message)
    }

    pub fn upstream_timeout(message: impl Into<String>) -> Self {
        Self::new(504, "timeout_error", Some("upstream_timeout"), message)
    }

    pub fn rate_limited(message: impl Into<String>) -> Self {
        Self::new(429, "rate_limit_error", Some("rate_limit_exceeded"), message).with_fault(Fault::Upstream)
    }

    pub fn insufficient_quota(status: u16, message: impl Into<String>) -> Self {
        Self::new(status, "insufficient_quota", Some("insufficient_quota"), message)
            .with_fault(Fault::Upstream)
            .not_retryable()
    }

    /// Map an upstream HTTP status and message to the gateway's row of the §0.8 table.
    /// Provider modules call this after extracting the message and refine type/code.
    pub fn from_upstream_status(status: u16, message: impl Into<String>) -> Self {
        let message = message.into();
        let mut e = match status {
            400 | 422 => Self::new(400, "invalid_request_error", None, message),
            401 => Self::new(401, "authentication_error", Some("invalid_api_key"), message),
            402 => Self::new(402, "insufficient_quota", Some("billing_error"), message).not_retryable(),
            403 => Self::new(403, "permission_error", None, message),
            404 => Self::new(404, "not_found_error", Some("model_not_found"), message),
            408 => Self::new(408, "timeout_error", None, message),
            409 => Self::new(409, "conflict_error", None, message),
            413 => Self::new(413, "invalid_request_error", Some("request_too_large"), message),
            429 => Self::rate_limited(message),
            500 => Self::new(500, "server_error", None, message),
            502 => Self::bad_upstream(message),
            503 | 529 => Self::unavailable(message),
            504 => Self::upstream_timeout(message),
            s if s >= 500 => Self::new(502, "server_error", Some("upstream_error"), message),
            _ => Self::new(400, "invalid_request_error", None, message),
        };
        // Whatever the status, an upstream error is the upstream's fault unless it blames the
        // request (4xx); a 500 from upstream is not our internal failure.
        e.fault = if (400..500).contains(&status) && !matches!(status, 408 | 409 | 429) {
            Fault::Client
        } else {
            Fault::Upstream
        };
        // An upstream's auth failure is a gateway misconfiguration, not the client's key.
        if matches!(status, 401 | 403) {
            e.fault = Fault::Upstream;
        }
        e
    }

    /// A bounded label for metrics and access logs.
    pub fn label(&self) -> &'static str {
        match (self.status, self.code.as_deref()) {
            (_, Some("model_not_found")) => "model_not_found",
            (_, Some("upstream_stream_truncated")) => "stream_truncated",
            (_, Some("upstream_timeout")) => "timeout",
            (_, Some("insufficient_quota")) => "insufficient_quota",
            (400, _) | (413, _) | (405, _) | (422, _) => "invalid_request",
            (401, _) => "authentication",
            (403, _) => "permission",
            (404, _) => "not_found",
            (429, _) => "rate_limited",
            (503, _) => "unavailable",
            (502, _) => "bad_upstream",
            (504, _) => "timeout",
            (s, _) if s >= 500 => "server_error",
            _ => "other",
        }
    }

    /// The JSON envelope `{"error":{message,type,param,code}}`.
    pub fn envelope(&self) -> serde_json::Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }

    pub fn body(&self) -> Bytes {
        Bytes::from(self.envelope().to_string())
    }

    /// The in-band SSE event that ends a stream after the commit point.
    pub fn sse_event(&self) -> Bytes {
        Bytes::from(format!("data: {}\n\n", self.envelope()))
    }
}

/// Remove anything that looks like a credential from an upstream's error message: the
/// provider key itself, and tokens shaped like API keys (`sk-…`, `AIza…`, bearer tokens),
/// which some providers echo back partially masked.
pub fn scrub_secrets(message: &str, key: Option<&str>) -> String {
    let keyless = match key.filter(|k| k.len() >= 8) {
        Some(k) => message.replace(k, "[REDACTED]"),
        None => message.to_string(),
    };
    const PREFIXES: &[&str] = &["sk-", "sk_", "AIza", "Bearer ", "bearer ", "key-", "pk-"];
    let mut result = String::with_capacity(keyless.len());
    let mut rest = keyless.as_str();
    'scan: while !rest.is_empty() {
        for p in PREFIXES {
            if rest.starts_with(p) {
                let after = &rest[p.len()..];
                let len = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '*' | '.')))
                    .unwrap_or(after.len());
                if len >= 6 {
                    result.push_str("[REDACTED]");
                    rest = &after[len..];
                    continue 'scan;
                }
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            result.push(c);
        }
        rest = chars.as_str();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_scrubbed_from_upstream_messages() {
        let m = "Incorrect API key provided: sk-proj-********************abcd. You can find your API key at https://x.";
        let s = scrub_secrets(m, None);
        assert!(!s.contains("abcd") && s.contains("[REDACTED]"), "{s}");
        assert!(s.contains("You can find your API key"));
        let s = scrub_secrets("bad key AIzaSyA1234567890abcdefgh here", None);
        assert_eq!(s, "bad key [REDACTED] here");
        let s = scrub_secrets("token mysecretvalue123 rejected", Some("mysecretvalue123"));
        assert_eq!(s, "token [REDACTED] rejected");
        assert_eq!(
            scrub_secrets("task-list is fine; sk-1 too short", None),
            "task-list is fine; sk-1 too short"
        );
    }

    #[test]
    fn envelope_has_openai_shape() {
        let e = GatewayError::model_not_found("nope/x");
        let v = e.envelope();
        assert_eq!(v["error"]["type"], "not_found_error");
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["param"], "model");
        assert!(v["error"]["message"].as_str().unwrap_or_default().contains("nope/x"));
    }

    #[test]
    fn upstream_statuses_map_to_the_table() {
        assert_eq!(GatewayError::from_upstream_status(529, "x").status, 503);
        assert_eq!(GatewayError::from_upstream_status(422, "x").status, 400);
        assert_eq!(GatewayError::from_upstream_status(599, "x").status, 502);
        let e = GatewayError::from_upstream_status(429, "x");
        assert!(e.retryable);
        assert_eq!(e.fault, Fault::Upstream);
        let e = GatewayError::from_upstream_status(400, "x");
        assert!(!e.retryable);
        assert_eq!(e.fault, Fault::Client);
    }
}

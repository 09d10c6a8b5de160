//! Building responses: JSON documents, streams shaped by the fault directives, native errors.

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};
use serde_json::{json, Value};

use crate::body::{MockBody, Split, Step};
use crate::directives::Directives;
use crate::reply::{rand_alnum, uuid};

/// Which API a route belongs to; decides every error body and auth header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// OpenAI and every OpenAI-compatible server (Mistral, vLLM, LM Studio, Ollama `/v1`).
    OpenAi,
    Anthropic,
    Gemini,
    Cohere,
    /// Ollama's native API (`/api/...`).
    Ollama,
}

pub const JSON: &str = "application/json";
pub const SSE: &str = "text/event-stream; charset=utf-8";

pub fn set_header(resp: &mut Response<MockBody>, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(HeaderName::from_static(name), v);
    }
}

pub fn bytes_response(status: u16, content_type: &'static str, body: MockBody) -> Response<MockBody> {
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

pub fn json_response(status: u16, value: &Value) -> Response<MockBody> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    bytes_response(status, JSON, MockBody::full(body))
}

/// A static file for remote-image tests: a 4-byte JPEG header (base64 `/9j/4A==`), a 6 MiB
/// JPEG (over a gateway's size cap) and an HTML page (not an image).
pub fn image(name: &str) -> Response<MockBody> {
    match name {
        "cat.jpg" => bytes_response(200, "image/jpeg", MockBody::full(vec![0xFF, 0xD8, 0xFF, 0xE0])),
        "big.jpg" => bytes_response(200, "image/jpeg", MockBody::full(vec![0xFF; 6 << 20])),
        _ => bytes_response(200, "text/html", MockBody::full(b"<html>not an image</html>".to_vec())),
    }
}

/// Role of an event in a planned stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Framing before, between or around content (message start, block start, ping).
    Meta,
    /// A content event: counted by `inband_error_after` / `reset_after`.
    Content,
    /// The events that end a complete stream (finish, usage, `[DONE]`); never sent when the
    /// stream is cut by a fault.
    Terminal,
}

/// One event of a planned stream.
pub struct Ev {
    pub bytes: Bytes,
    pub kind: Kind,
}

impl Ev {
    pub fn meta(bytes: impl Into<Bytes>) -> Ev {
        Ev {
            bytes: bytes.into(),
            kind: Kind::Meta,
        }
    }
    pub fn content(bytes: impl Into<Bytes>) -> Ev {
        Ev {
            bytes: bytes.into(),
            kind: Kind::Content,
        }
    }
    pub fn terminal(bytes: impl Into<Bytes>) -> Ev {
        Ev {
            bytes: bytes.into(),
            kind: Kind::Terminal,
        }
    }
}

/// `event: NAME\ndata: JSON\n\n` (Anthropic, Cohere).
pub fn named_event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// `data: JSON\n\n` (OpenAI and compatibles).
pub fn data_event(data: &Value) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

/// Per-request view of the settings and directives, with the response builders.
pub struct Ctx {
    pub directives: Directives,
    pub body_len: usize,
    /// Model name without its `@directives` suffix.
    pub model: String,
    pub default_tokens: usize,
    pub default_dims: usize,
    pub token_delay: Duration,
    pub split: Split,
}

impl Ctx {
    pub fn prompt_tokens(&self) -> u64 {
        (self.body_len / 4) as u64
    }

    pub fn tokens(&self) -> usize {
        self.directives.tokens.unwrap_or(self.default_tokens)
    }

    /// A complete JSON reply; `reset_after` turns it into a truncated, aborted body.
    pub fn json(&self, value: &Value) -> Response<MockBody> {
        let body = Bytes::from(serde_json::to_vec(value).unwrap_or_default());
        if self.directives.reset_after.is_some() {
            let half = body.slice(..body.len() / 2);
            let steps = vec![Step::Data(half), Step::Abort];
            return bytes_response(200, JSON, MockBody::stream(steps, Duration::ZERO, Split::Whole));
        }
        bytes_response(200, JSON, MockBody::full(body))
    }

    /// A stream of `events`; `inband_error_after` / `reset_after` cut it after that many content
    /// events and append `error` or an abort. N = 0 puts the error (or abort) first.
    pub fn stream(&self, content_type: &'static str, events: Vec<Ev>, error: Bytes) -> Response<MockBody> {
        let (cut, tail) = match (self.directives.inband_error_after, self.directives.reset_after) {
            (Some(n), _) => (Some(n), Step::Data(error)),
            (None, Some(n)) => (Some(n), Step::Abort),
            (None, None) => (None, Step::Abort),
        };
        let mut steps = Vec::with_capacity(events.len() + 1);
        match cut {
            None => steps.extend(events.into_iter().map(|e| Step::Data(e.bytes))),
            Some(n) => {
                let mut seen = 0usize;
                if n > 0 {
                    for e in events {
                        match e.kind {
                            Kind::Terminal => break,
                            Kind::Content if seen == n => break,
                            Kind::Content => seen += 1,
                            Kind::Meta if seen == n => break,
                            Kind::Meta => {}
                        }
                        steps.push(Step::Data(e.bytes));
                    }
                }
                steps.push(tail);
            }
        }
        let delay = self
            .directives
            .pace_ms
            .map(Duration::from_millis)
            .unwrap_or(self.token_delay);
        bytes_response(200, content_type, MockBody::stream(steps, delay, self.split))
    }
}

/// The provider's native error for `status`, with its usual message.
pub fn native_error(provider: Provider, status: u16, model: &str) -> Response<MockBody> {
    native_error_with(provider, status, None, model)
}

/// The provider's native error for `status`; `message` replaces the usual one.
pub fn native_error_with(provider: Provider, status: u16, message: Option<&str>, model: &str) -> Response<MockBody> {
    match provider {
        Provider::OpenAi => {
            let (kind, code, msg) = openai_error_fields(status, model);
            let mut resp = json_response(
                status,
                &json!({"error": {"message": message.unwrap_or(&msg), "type": kind, "param": null, "code": code}}),
            );
            set_header(&mut resp, "x-request-id", &format!("req_{}", rand_alnum(32)));
            resp
        }
        Provider::Anthropic => {
            let (kind, msg) = anthropic_error_fields(status, model);
            let request_id = format!("req_011CMock{}", rand_alnum(14));
            let mut resp = json_response(
                status,
                &json!({"type": "error", "error": {"type": kind, "message": message.unwrap_or(&msg)}, "request_id": request_id}),
            );
            set_header(&mut resp, "request-id", &request_id);
            resp
        }
        Provider::Gemini => {
            let (rpc, msg) = gemini_error_fields(status, model);
            json_response(
                status,
                &json!({"error": {"code": status, "message": message.unwrap_or(&msg), "status": rpc}}),
            )
        }
        Provider::Cohere => {
            let msg = cohere_error_message(status, model);
            json_response(status, &json!({"id": uuid(), "message": message.unwrap_or(&msg)}))
        }
        Provider::Ollama => {
            let msg = match status {
                404 => format!("model '{model}' not found"),
                _ => "prism-mock: injected error".to_owned(),
            };
            json_response(status, &json!({"error": message.unwrap_or(&msg)}))
        }
    }
}

/// The status fault: native error plus `Retry-After` (and Gemini's `RetryInfo` detail on 429).
pub fn status_fault(provider: Provider, status: u16, retry_after: Option<u64>, model: &str) -> Response<MockBody> {
    let mut resp = if provider == Provider::Gemini && status == 429 {
        let mut err = json!({
            "code": 429,
            "message": "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
            "status": "RESOURCE_EXHAUSTED",
            "details": [{
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests", "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]
            }]
        });
        if let (Some(secs), Some(details)) = (retry_after, err["details"].as_array_mut()) {
            details
                .push(json!({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{secs}s")}));
        }
        json_response(429, &json!({"error": err}))
    } else {
        native_error(provider, status, model)
    };
    if let Some(secs) = retry_after {
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(RETRY_AFTER, v);
        }
    }
    resp
}

/// Answer to a request without the key given by `--require-key`.
pub fn unauthorized(provider: Provider) -> Response<MockBody> {
    match provider {
        Provider::OpenAi => native_error_with(
            Provider::OpenAi,
            401,
            Some("Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys."),
            "",
        ),
        Provider::Anthropic => native_error_with(Provider::Anthropic, 401, Some("invalid x-api-key"), ""),
        Provider::Gemini => json_response(
            400,
            &json!({"error": {
                "code": 400,
                "message": "API key not valid. Please pass a valid API key.",
                "status": "INVALID_ARGUMENT",
                "details": [
                    {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com",
                     "metadata": {"service": "generativelanguage.googleapis.com"}},
                    {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
                     "message": "API key not valid. Please pass a valid API key."}
                ]
            }}),
        ),
        Provider::Cohere => native_error_with(Provider::Cohere, 401, Some("invalid api token"), ""),
        Provider::Ollama => native_error_with(Provider::Ollama, 401, Some("unauthorized"), ""),
    }
}

/// 400 for a body that is not JSON.
pub fn malformed(provider: Provider, detail: &str) -> Response<MockBody> {
    let msg = match provider {
        Provider::OpenAi => "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)".to_owned(),
        Provider::Anthropic => format!("There was an error parsing the body: {detail}"),
        Provider::Gemini => format!("Invalid JSON payload received. {detail}"),
        Provider::Cohere => format!("invalid request: could not parse the request body as JSON: {detail}"),
        Provider::Ollama => format!("invalid JSON: {detail}"),
    };
    native_error_with(provider, 400, Some(&msg), "")
}

/// 400 for a JSON body missing a required field or with a wrong one.
pub fn invalid(provider: Provider, message: &str) -> Response<MockBody> {
    native_error_with(provider, 400, Some(message), "")
}

fn openai_error_fields(status: u16, model: &str) -> (&'static str, Value, String) {
    match status {
        400 => ("invalid_request_error", Value::Null, "Invalid request.".into()),
        401 => (
            "invalid_request_error",
            json!("invalid_api_key"),
            "Incorrect API key provided.".into(),
        ),
        403 => (
            "request_forbidden",
            json!("unsupported_country_region_territory"),
            "Country, region, or territory not supported".into(),
        ),
        404 => (
            "invalid_request_error",
            json!("model_not_found"),
            format!("The model `{model}` does not exist or you do not have access to it."),
        ),
        408 => ("timeout", Value::Null, "Request timed out.".into()),
        409 => ("invalid_request_error", Value::Null, "Conflict.".into()),
        413 => (
            "invalid_request_error",
            json!("request_too_large"),
            "Request too large.".into(),
        ),
        429 => (
            "requests",
            json!("rate_limit_exceeded"),
            format!("Rate limit reached for {model} on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s."),
        ),
        500 => (
            "server_error",
            Value::Null,
            "The server had an error while processing your request. Sorry about that!".into(),
        ),
        502 => ("server_error", Value::Null, "Bad gateway.".into()),
        503 => (
            "server_error",
            Value::Null,
            "The engine is currently overloaded, please try again later.".into(),
        ),
        504 => ("timeout", Value::Null, "Gateway timeout.".into()),
        s if s >= 500 => ("server_error", Value::Null, format!("Server error {s}.")),
        s => ("invalid_request_error", Value::Null, format!("Request failed with status {s}.")),
    }
}

fn anthropic_error_fields(status: u16, model: &str) -> (&'static str, String) {
    match status {
        400 => ("invalid_request_error", "Invalid request.".into()),
        401 => ("authentication_error", "invalid x-api-key".into()),
        402 => (
            "billing_error",
            "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.".into(),
        ),
        403 => (
            "permission_error",
            "Your API key does not have permission to use the specified resource.".into(),
        ),
        404 => ("not_found_error", format!("model: {model}")),
        413 => (
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.".into(),
        ),
        429 => (
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit".into(),
        ),
        500 => ("api_error", "Internal server error".into()),
        504 => ("timeout_error", "Request timed out".into()),
        529 => ("overloaded_error", "Overloaded".into()),
        s if s >= 500 => ("api_error", "Internal server error".into()),
        _ => ("invalid_request_error", "Invalid request.".into()),
    }
}

fn gemini_error_fields(status: u16, model: &str) -> (&'static str, String) {
    match status {
        400 => ("INVALID_ARGUMENT", "Request contains an invalid argument.".into()),
        401 => (
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.".into(),
        ),
        403 => (
            "PERMISSION_DENIED",
            "The caller does not have permission".into(),
        ),
        404 => (
            "NOT_FOUND",
            format!("models/{model} is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods."),
        ),
        409 => ("ABORTED", "The operation was aborted.".into()),
        429 => ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).".into()),
        499 => ("CANCELLED", "The operation was cancelled.".into()),
        500 => (
            "INTERNAL",
            "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting".into(),
        ),
        501 => ("UNIMPLEMENTED", "Operation is not implemented.".into()),
        503 => ("UNAVAILABLE", "The model is overloaded. Please try again later.".into()),
        504 => ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete.".into()),
        s if s >= 500 => ("INTERNAL", "An internal error has occurred.".into()),
        _ => ("FAILED_PRECONDITION", "Precondition check failed.".into()),
    }
}

fn cohere_error_message(status: u16, model: &str) -> String {
    match status {
        400 => "invalid request: the request is not valid".into(),
        401 => "invalid api token".into(),
        402 => "Please add or update your payment method at https://dashboard.cohere.com/billing?tab=payment to continue".into(),
        403 => "You do not have access to this resource.".into(),
        404 => format!("model '{model}' not found, make sure the correct model ID was used and that you have access to the model."),
        422 => "invalid request: unprocessable entity".into(),
        429 => "You are using a Trial key, which is limited to 10 API calls / minute. You can continue to use the Trial key for free or upgrade to a Production key with higher rate limits at 'https://dashboard.cohere.com/api-keys'. Contact us on 'https://discord.gg/XW44jPfYJu' or email us at support@cohere.com with any questions".into(),
        498 => "invalid api token".into(),
        499 => "request cancelled by the client".into(),
        500 => "internal server error, this has been reported to our developers".into(),
        503 => "service unavailable, please try again later".into(),
        504 => "gateway timeout".into(),
        s if s >= 500 => "internal server error, this has been reported to our developers".into(),
        _ => "invalid request".into(),
    }
}

//! Wire formats. Each module translates OpenAI-shaped requests into one provider family's
//! native requests and the answers back, as pure functions over bytes: no I/O, no clock (the
//! time arrives in [`Ctx`]), so they run inside body callbacks and are tested with bytes alone.
//!
//! OpenAI-compatible servers (OpenAI, Mistral, Ollama, vLLM, LM Studio) share `openai`, with
//! per-kind quirks as data; Anthropic, Gemini and Cohere have modules of their own.

pub mod anthropic;
pub mod cohere;
pub mod completions;
pub mod gemini;
pub mod openai;
pub mod util;

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::error::{GatewayError, Result};

/// A provider family. Closed, so the compiler lists every place a new kind touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Openai,
    Mistral,
    Ollama,
    Vllm,
    Lmstudio,
    Anthropic,
    Gemini,
    Cohere,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Openai,
        Kind::Mistral,
        Kind::Ollama,
        Kind::Vllm,
        Kind::Lmstudio,
        Kind::Anthropic,
        Kind::Gemini,
        Kind::Cohere,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Openai => "openai",
            Kind::Mistral => "mistral",
            Kind::Ollama => "ollama",
            Kind::Vllm => "vllm",
            Kind::Lmstudio => "lmstudio",
            Kind::Anthropic => "anthropic",
            Kind::Gemini => "gemini",
            Kind::Cohere => "cohere",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The default base URL, following each provider SDK's convention: OpenAI-compatible
    /// kinds include the version path, the native ones do not.
    pub fn default_base_url(self) -> &'static str {
        match self {
            Kind::Openai => "https://api.openai.com/v1",
            Kind::Mistral => "https://api.mistral.ai/v1",
            Kind::Ollama => "http://127.0.0.1:11434/v1",
            Kind::Vllm => "http://127.0.0.1:8000/v1",
            Kind::Lmstudio => "http://127.0.0.1:1234/v1",
            Kind::Anthropic => "https://api.anthropic.com",
            Kind::Gemini => "https://generativelanguage.googleapis.com",
            Kind::Cohere => "https://api.cohere.com",
        }
    }

    /// Whether a request without an API key is normal for this kind (local servers).
    pub fn key_optional(self) -> bool {
        matches!(self, Kind::Ollama | Kind::Vllm | Kind::Lmstudio)
    }

    /// The header that carries the provider key, and its value.
    pub fn auth_header(self, key: &str) -> (&'static str, String) {
        match self {
            Kind::Anthropic => ("x-api-key", key.to_string()),
            Kind::Gemini => ("x-goog-api-key", key.to_string()),
            _ => ("authorization", format!("Bearer {key}")),
        }
    }

    pub fn is_openai_compatible(self) -> bool {
        matches!(
            self,
            Kind::Openai | Kind::Mistral | Kind::Ollama | Kind::Vllm | Kind::Lmstudio
        )
    }
}

/// The client-facing operation. Translators see `Chat` and `Embeddings`; legacy
/// `Completions` reach non-OpenAI kinds already rewritten to chat by `completions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completions,
    Embeddings,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
        }
    }
}

/// Per-provider translation settings (from the config file).
#[derive(Debug, Clone)]
pub struct Options {
    /// Turn every drop/clamp into a 400 (`providers.md` §0.2).
    pub strict: bool,
    /// `max_tokens` sent when the provider requires one and the client gave none (Anthropic).
    pub default_max_tokens: u64,
    /// Cohere embeddings `input_type` when the client gives none.
    pub default_embed_input_type: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            strict: false,
            default_max_tokens: 4096,
            default_embed_input_type: "search_document".to_string(),
        }
    }
}

/// Everything a translator needs besides the bytes. Built once per attempt.
#[derive(Debug, Clone)]
pub struct Ctx<'a> {
    /// Configured provider name, for messages ("not supported by provider anthropic").
    pub provider: &'a str,
    pub kind: Kind,
    pub endpoint: Endpoint,
    /// The model string the client sent; echoed in every response.
    pub client_model: &'a str,
    /// The provider's own model name.
    pub upstream_model: &'a str,
    pub stream: bool,
    /// `stream_options.include_usage` as the client sent it.
    pub include_usage: bool,
    /// Unix seconds, the gateway clock when the attempt started; every `created`.
    pub created: u64,
    /// Used as the response id when the provider gives none (`chatcmpl-` + 24 alnum).
    pub fallback_id: &'a str,
    /// Seed for generated tool-call ids (`call_` + 24 alnum), so tests are deterministic.
    pub id_seed: u64,
    pub options: &'a Options,
    /// Embeddings: the client asked for `encoding_format: "base64"` (little-endian f32).
    pub embed_base64: bool,
    /// Remote images already fetched by the gateway: url → (mime, base64 data).
    pub images: &'a HashMap<String, (String, String)>,
}

/// A request body, sent as its pieces back to back. A translation that passes a large member
/// of the client's body through unchanged sends it as a slice of the client's buffer, so the
/// body is held once however many attempts it takes.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Whole(Bytes),
    Parts(Vec<Bytes>),
}

impl Body {
    pub fn len(&self) -> usize {
        self.parts().iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.parts().iter().all(Bytes::is_empty)
    }

    pub fn parts(&self) -> &[Bytes] {
        match self {
            Body::Whole(b) => std::slice::from_ref(b),
            Body::Parts(p) => p,
        }
    }

    /// The body in one buffer: borrowed when it is one piece, copied otherwise.
    pub fn contiguous(&self) -> std::borrow::Cow<'_, [u8]> {
        match self {
            Body::Whole(b) => std::borrow::Cow::Borrowed(b),
            Body::Parts(p) => std::borrow::Cow::Owned(p.concat()),
        }
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Body {
        Body::Whole(b)
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Body {
        Body::Whole(Bytes::from(v))
    }
}

/// What to send upstream. `path` is appended to the provider's base URL path and may carry a
/// query (`/v1beta/models/x:streamGenerateContent?alt=sse`).
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamRequest {
    pub method: &'static str,
    pub path: String,
    pub body: Body,
    /// Extra headers besides auth and content-type (`anthropic-version`, ...).
    pub headers: Vec<(&'static str, String)>,
    pub notes: Notes,
}

/// What the translation changed, reported to the client in `x-prism-*` headers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Notes {
    pub dropped: Vec<String>,
    pub adjusted: Vec<String>,
    pub warnings: Vec<String>,
}

impl Notes {
    pub fn drop(&mut self, param: &str) {
        if !self.dropped.iter().any(|p| p == param) {
            self.dropped.push(param.to_string());
        }
    }
    pub fn adjust(&mut self, param: &str) {
        if !self.adjusted.iter().any(|p| p == param) {
            self.adjusted.push(param.to_string());
        }
    }
    pub fn warn(&mut self, warning: &str) {
        if !self.warnings.iter().any(|p| p == warning) {
            self.warnings.push(warning.to_string());
        }
    }
    /// Drop a parameter, or reject it in strict mode.
    pub fn drop_or_reject(&mut self, strict: bool, param: &str, provider: &str) -> Result<()> {
        if strict {
            return Err(GatewayError::unsupported_param(
                param,
                format!("{param} is not supported by provider {provider}"),
            ));
        }
        self.drop(param);
        Ok(())
    }
}

/// Token counts, for metrics and the access log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

/// A translated non-streaming answer.
#[derive(Debug, Clone)]
pub struct Translated {
    pub body: Bytes,
    pub usage: Option<Usage>,
    /// The model the provider says it used (`x-prism-upstream-model`).
    pub upstream_model: Option<String>,
}

/// Turns a provider's stream into OpenAI `chat.completion.chunk` SSE, incrementally.
///
/// Input arrives split anywhere. Output is appended to `out` as complete `data: ...\n\n`
/// events. An `Err` means the generation failed (an in-band error, invalid data): before the
/// commit point the caller may fail over; after it the caller ends the stream with the
/// error's in-band event. A translator never writes the error event itself.
pub trait StreamTranslator: Send {
    fn feed(&mut self, input: &[u8], out: &mut BytesMut) -> Result<()>;
    /// The upstream body ended. Emits the tail (finish chunk, usage chunk, `[DONE]`), or an
    /// error when the stream ended before its terminal event.
    fn finish(&mut self, out: &mut BytesMut) -> Result<()>;
    /// True once a real event (content, tool call, finish) has been produced: the commit point.
    fn committed(&self) -> bool;
    fn usage(&self) -> Option<Usage>;
    /// The model the provider reported, once known.
    fn upstream_model(&self) -> Option<&str> {
        None
    }
}

/// Build the upstream request for `ctx.kind`.
pub fn build_request(body: &[u8], ctx: &Ctx) -> Result<UpstreamRequest> {
    match ctx.kind {
        Kind::Anthropic => anthropic::build_request(body, ctx),
        Kind::Gemini => gemini::build_request(body, ctx),
        Kind::Cohere => cohere::build_request(body, ctx),
        _ => openai::build_request(body, ctx),
    }
}

/// `build_request` for a body the caller holds as `Bytes`: the OpenAI-compatible kinds send
/// its large members as slices of it instead of copies.
pub fn build_request_shared(body: &Bytes, ctx: &Ctx) -> Result<UpstreamRequest> {
    match ctx.kind {
        Kind::Anthropic | Kind::Gemini | Kind::Cohere => build_request(body, ctx),
        _ => openai::build_request_shared(body, ctx),
    }
}

/// Translate a successful (2xx) non-streaming upstream body.
pub fn translate_response(body: &[u8], ctx: &Ctx) -> Result<Translated> {
    match ctx.kind {
        Kind::Anthropic => anthropic::translate_response(body, ctx),
        Kind::Gemini => gemini::translate_response(body, ctx),
        Kind::Cohere => cohere::translate_response(body, ctx),
        _ => openai::translate_response(body, ctx),
    }
}

/// Normalize an upstream error answer (any non-2xx) to the gateway error. `now` (unix
/// seconds) turns absolute rate-limit reset times into durations.
pub fn translate_error(kind: Kind, status: u16, headers: &http::HeaderMap, body: &[u8], now: u64) -> GatewayError {
    let mut e = match kind {
        Kind::Anthropic => anthropic::translate_error(status, headers, body, now),
        Kind::Gemini => gemini::translate_error(status, headers, body, now),
        Kind::Cohere => cohere::translate_error(status, headers, body, now),
        _ => openai::translate_error(kind, status, headers, body, now),
    };
    if e.retry_after.is_none() {
        e.retry_after = util::retry_after(headers, now);
    }
    e
}

/// The provider's own model-list endpoint (relative to its base URL).
pub fn models_path(kind: Kind) -> &'static str {
    match kind {
        Kind::Anthropic => anthropic::models_path(),
        Kind::Gemini => gemini::models_path(),
        Kind::Cohere => cohere::models_path(),
        _ => "/models",
    }
}

/// Model ids from a model-list answer of `kind`.
pub fn parse_models(kind: Kind, body: &[u8]) -> Result<Vec<String>> {
    match kind {
        Kind::Anthropic => anthropic::parse_models(body).map(|v| v.into_iter().map(|(id, _)| id).collect()),
        Kind::Gemini => gemini::parse_models(body),
        Kind::Cohere => cohere::parse_models(body),
        _ => {
            let v: serde_json::Value = serde_json::from_slice(body)
                .map_err(|e| GatewayError::bad_upstream(format!("model list is not JSON: {e}")))?;
            Ok(v["data"]
                .as_array()
                .map(|a| a.iter().filter_map(|m| m["id"].as_str().map(str::to_string)).collect())
                .unwrap_or_default())
        }
    }
}

pub fn stream_translator(ctx: &Ctx) -> Box<dyn StreamTranslator> {
    match ctx.kind {
        Kind::Anthropic => anthropic::stream_translator(ctx),
        Kind::Gemini => gemini::stream_translator(ctx),
        Kind::Cohere => cohere::stream_translator(ctx),
        _ => openai::stream_translator(ctx),
    }
}

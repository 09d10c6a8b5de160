//! One request's path: read the body → control or record → route → auth → faults → reply.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderMap, Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;

use crate::body::MockBody;
use crate::directives::Directives;
use crate::respond::{
    bytes_response, malformed, native_error_with, status_fault, unauthorized, Ctx, Provider, JSON, SSE,
};
use crate::state::{LastRequest, State};
use crate::{anthropic, cohere, control, gemini, ollama, openai};

/// Returned to hyper to drop the connection without answering (the `close` directive).
#[derive(Debug)]
pub struct Dropped;

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("prism-mock: connection dropped on purpose")
    }
}

impl std::error::Error for Dropped {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GeminiMethod {
    Generate,
    Stream,
    Embed,
    BatchEmbed,
    CountTokens,
}

enum Route {
    OpenAiChat,
    OpenAiCompletions,
    OpenAiEmbeddings,
    Models(Provider),
    AnthropicMessages,
    AnthropicCountTokens,
    GeminiModels,
    Gemini {
        model: String,
        method: GeminiMethod,
    },
    CohereChat,
    CohereEmbed,
    OllamaTags,
    /// Static files for the gateway's remote-image fetching: `cat.jpg`, `big.jpg`, `page.html`.
    Image(&'static str),
    NotFound(Provider),
}

impl Route {
    fn provider(&self) -> Provider {
        match self {
            Route::OpenAiChat | Route::OpenAiCompletions | Route::OpenAiEmbeddings => Provider::OpenAi,
            Route::Models(p) | Route::NotFound(p) => *p,
            Route::AnthropicMessages | Route::AnthropicCountTokens => Provider::Anthropic,
            Route::GeminiModels | Route::Gemini { .. } => Provider::Gemini,
            Route::CohereChat | Route::CohereEmbed => Provider::Cohere,
            Route::OllamaTags | Route::Image(_) => Provider::Ollama,
        }
    }

    fn wants_json_body(&self) -> bool {
        !matches!(
            self,
            Route::Models(_) | Route::GeminiModels | Route::OllamaTags | Route::Image(_) | Route::NotFound(_)
        )
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Which provider's model list a `GET /v1/models` wants: Anthropic clients send `x-api-key` /
/// `anthropic-version`; Cohere clients page with `endpoint=`/`page_size=`/`page_token=`.
fn models_provider(headers: &HeaderMap, query: Option<&str>) -> Provider {
    if headers.contains_key("anthropic-version") || headers.contains_key("x-api-key") {
        return Provider::Anthropic;
    }
    let cohere_query = query.is_some_and(|q| {
        q.split('&')
            .any(|kv| kv.starts_with("endpoint=") || kv.starts_with("page_size=") || kv.starts_with("page_token="))
    });
    if cohere_query || headers.contains_key("x-client-name") {
        return Provider::Cohere;
    }
    Provider::OpenAi
}

fn route(method: &Method, path: &str, query: Option<&str>, headers: &HeaderMap) -> Route {
    let post = method == Method::POST;
    let get = method == Method::GET;
    match path {
        "/v1/chat/completions" if post => return Route::OpenAiChat,
        "/v1/completions" if post => return Route::OpenAiCompletions,
        "/v1/embeddings" if post => return Route::OpenAiEmbeddings,
        "/v1/models" if get => return Route::Models(models_provider(headers, query)),
        "/v1/messages" if post => return Route::AnthropicMessages,
        "/v1/messages/count_tokens" if post => return Route::AnthropicCountTokens,
        "/v1beta/models" if get => return Route::GeminiModels,
        "/v2/chat" if post => return Route::CohereChat,
        "/v2/embed" if post => return Route::CohereEmbed,
        "/api/tags" if get => return Route::OllamaTags,
        "/images/cat.jpg" if get => return Route::Image("cat.jpg"),
        "/images/big.jpg" if get => return Route::Image("big.jpg"),
        "/images/page.html" if get => return Route::Image("page.html"),
        _ => {}
    }
    let gemini_rest = path
        .strip_prefix("/v1beta/models/")
        .or_else(|| path.strip_prefix("/v1/models/"));
    if let Some(rest) = gemini_rest {
        if let Some((model, verb)) = rest.rsplit_once(':') {
            let method = match verb {
                "generateContent" => Some(GeminiMethod::Generate),
                "streamGenerateContent" => Some(GeminiMethod::Stream),
                "embedContent" => Some(GeminiMethod::Embed),
                "batchEmbedContents" => Some(GeminiMethod::BatchEmbed),
                "countTokens" => Some(GeminiMethod::CountTokens),
                _ => None,
            };
            if let (true, Some(method)) = (post, method) {
                return Route::Gemini {
                    model: percent_decode(model),
                    method,
                };
            }
            return Route::NotFound(Provider::Gemini);
        }
    }
    let provider = if path.starts_with("/v1beta") {
        Provider::Gemini
    } else if path.starts_with("/v2/") {
        Provider::Cohere
    } else if path.starts_with("/api/") {
        Provider::Ollama
    } else if path.starts_with("/v1/messages") {
        Provider::Anthropic
    } else {
        Provider::OpenAi
    };
    Route::NotFound(provider)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn authorized(provider: Provider, headers: &HeaderMap, query: Option<&str>, key: &str) -> bool {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    match provider {
        Provider::OpenAi | Provider::Cohere => bearer == Some(key),
        Provider::Anthropic => header(headers, "x-api-key") == Some(key) || bearer == Some(key),
        Provider::Gemini => {
            header(headers, "x-goog-api-key") == Some(key)
                || query.is_some_and(|q| q.split('&').any(|kv| kv.strip_prefix("key=") == Some(key)))
        }
        Provider::Ollama => true,
    }
}

pub async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<MockBody>, Dropped> {
    let (parts, body) = req.into_parts();
    let body: Bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Err(Dropped),
    };
    let path = parts.uri.path().to_owned();
    if path.starts_with("/_mock/") {
        return Ok(control::handle(&state, &parts.method, &path, &body));
    }
    let query = parts.uri.query().map(str::to_owned);
    let route = route(&parts.method, &path, query.as_deref(), &parts.headers);
    let provider = route.provider();
    let authorized = match &state.config.require_key {
        Some(key) => authorized(provider, &parts.headers, query.as_deref(), key),
        None => true,
    };
    let method = parts.method;
    let log = state.config.log.then(|| format!("{method} {path}"));
    state.record(LastRequest {
        version: format!("{:?}", parts.version),
        method,
        path,
        query: query.clone(),
        headers: parts.headers,
        body: body.clone(),
    });
    let result = respond(&state, route, provider, authorized, query.as_deref(), &body).await;
    if let Some(line) = log {
        match &result {
            Ok(resp) => eprintln!("prism-mock: {line} -> {}", resp.status().as_u16()),
            Err(_) => eprintln!("prism-mock: {line} -> dropped"),
        }
    }
    result
}

async fn respond(
    state: &State,
    route: Route,
    provider: Provider,
    authorized: bool,
    query: Option<&str>,
    body: &Bytes,
) -> Result<Response<MockBody>, Dropped> {
    let mut directives = state.take_fault().unwrap_or_default();
    if directives.close {
        return Err(Dropped);
    }
    if !authorized {
        return Ok(unauthorized(provider));
    }
    let parsed: Result<Value, String> = if route.wants_json_body() {
        serde_json::from_slice(body).map_err(|e| e.to_string())
    } else {
        Ok(Value::Null)
    };
    let model_field: String = match &route {
        Route::Gemini { model, .. } => model.clone(),
        _ => parsed
            .as_ref()
            .ok()
            .and_then(|v| v.get("model"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    };
    let (model, per_request) = Directives::from_model(&model_field);
    directives.overlay(&per_request);
    if directives.close {
        return Err(Dropped);
    }
    if let Some(ms) = directives.delay_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(status) = directives.status {
        return Ok(status_fault(provider, status, directives.retry_after, model));
    }
    if directives.garbage {
        return Ok(bytes_response(
            200,
            "text/html",
            MockBody::full(Bytes::from_static(b"<html>oops</html>")),
        ));
    }
    let streaming = matches!(
        route,
        Route::Gemini {
            method: GeminiMethod::Stream,
            ..
        }
    ) || parsed
        .as_ref()
        .is_ok_and(|v| v.get("stream") == Some(&Value::Bool(true)));
    if directives.empty {
        let (content_type, body) = if streaming {
            (SSE, MockBody::stream(Vec::new(), Duration::ZERO, state.config.split))
        } else {
            (JSON, MockBody::full(Bytes::new()))
        };
        return Ok(bytes_response(200, content_type, body));
    }
    let parsed = match parsed {
        Ok(v) => v,
        Err(detail) => return Ok(malformed(provider, &detail)),
    };
    let ctx = Ctx {
        directives,
        body_len: body.len(),
        model: model.to_owned(),
        default_tokens: state.config.default_tokens,
        default_dims: state.config.default_dims,
        token_delay: state.config.token_delay,
        split: state.config.split,
    };
    let resp = match route {
        Route::OpenAiChat => openai::chat(&ctx, &parsed),
        Route::OpenAiCompletions => openai::completions(&ctx, &parsed),
        Route::OpenAiEmbeddings => openai::embeddings(&ctx, &parsed),
        Route::Models(Provider::Anthropic) => anthropic::models(),
        Route::Models(Provider::Cohere) => cohere::models(query),
        Route::Models(_) => openai::models(),
        Route::AnthropicMessages => anthropic::messages(&ctx, &parsed),
        Route::AnthropicCountTokens => anthropic::count_tokens(&ctx),
        Route::GeminiModels => gemini::models(),
        Route::Gemini { method, .. } => match method {
            GeminiMethod::Generate => gemini::generate(&ctx, &parsed, false, false),
            GeminiMethod::Stream => {
                let sse = query.is_some_and(|q| q.split('&').any(|kv| kv == "alt=sse"));
                gemini::generate(&ctx, &parsed, true, sse)
            }
            GeminiMethod::Embed => gemini::embed(&ctx, &parsed),
            GeminiMethod::BatchEmbed => gemini::batch_embed(&ctx, &parsed),
            GeminiMethod::CountTokens => gemini::count_tokens(&ctx),
        },
        Route::CohereChat => cohere::chat(&ctx, &parsed),
        Route::CohereEmbed => cohere::embed(&ctx, &parsed),
        Route::OllamaTags => ollama::tags(),
        Route::Image(name) => crate::respond::image(name),
        Route::NotFound(p) => {
            let msg = match p {
                Provider::Gemini => "Method not found.".to_owned(),
                Provider::Anthropic => "Not Found".to_owned(),
                Provider::Cohere => "Not Found".to_owned(),
                Provider::Ollama => "404 page not found".to_owned(),
                Provider::OpenAi => "Invalid URL".to_owned(),
            };
            native_error_with(p, 404, Some(&msg), "")
        }
    };
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_gemini_paths() {
        let h = HeaderMap::new();
        match route(
            &Method::POST,
            "/v1beta/models/gemini-2.5-flash%40status%3D503:generateContent",
            None,
            &h,
        ) {
            Route::Gemini { model, method } => {
                assert_eq!(model, "gemini-2.5-flash@status=503");
                assert_eq!(method, GeminiMethod::Generate);
            }
            _ => panic!("not a gemini route"),
        }
        assert!(matches!(
            route(&Method::GET, "/v1/models", Some("endpoint=chat"), &h),
            Route::Models(Provider::Cohere)
        ));
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%C3%A9"), "é");
    }
}

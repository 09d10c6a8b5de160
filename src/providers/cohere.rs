//! Cohere API v2: OpenAI chat and embeddings requests become `/v2/chat` and `/v2/embed`
//! calls, and the answers and SSE streams come back in OpenAI's shapes (`providers.md` §4).
//! Helpers shared with Gemini (ordered request fields, stop lists, tool_choice, embeddings
//! output) live at the end of `gemini.rs`.

use std::collections::HashMap;

use bytes::BytesMut;
use serde_json::{json, Map, Value};

use super::gemini::{
    adjust_or_reject, assistant_text, bad_content, decode, embedding_inputs, embeddings_response, empty_message,
    instruction_texts, message_role, parse_fields, parse_tool_choice, plain_message, reject_audio_modalities,
    reject_logit_bias, stop_list, to_bytes, unsupported, Fields, ToolChoice, GATEWAY_FIELD, HOISTED,
};
use super::util::{self, ChunkEmitter};
use super::{Ctx, Endpoint, Notes, StreamTranslator, Translated, UpstreamRequest, Usage};
use crate::error::{GatewayError, Result};
use crate::sse;

/// Cohere accepts at most this many stop sequences.
const MAX_STOP: usize = 5;
/// `/v2/embed` takes at most this many texts per call.
const MAX_EMBED_TEXTS: usize = 96;
/// Warning when both penalties were non-zero and only `frequency_penalty` was kept.
const PENALTIES_EXCLUSIVE: &str = "presence_penalty_dropped_with_frequency_penalty";

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

pub fn build_request(body: &[u8], ctx: &Ctx) -> Result<UpstreamRequest> {
    let fields = parse_fields(body)?;
    match ctx.endpoint {
        Endpoint::Embeddings => build_embeddings(&fields, ctx),
        _ => build_chat(&fields, ctx),
    }
}

/// Clamp a number into `[lo, hi]`, reporting the change (or refusing it in strict mode).
fn clamp_param(
    v: &Value,
    param: &str,
    lo: f64,
    hi: f64,
    notes: &mut Notes,
    strict: bool,
    provider: &str,
) -> Result<Value> {
    let x = v
        .as_f64()
        .ok_or_else(|| GatewayError::invalid_request(format!("{param} must be a number")).with_param(param))?;
    if x < lo || x > hi {
        adjust_or_reject(notes, strict, param, provider)?;
        return Ok(json!(x.clamp(lo, hi)));
    }
    Ok(v.clone())
}

fn build_chat(fields: &Fields, ctx: &Ctx) -> Result<UpstreamRequest> {
    let strict = ctx.options.strict;
    let provider = ctx.provider;
    let mut notes = Notes::default();
    let mut out = Map::new();
    out.insert("model".into(), json!(ctx.upstream_model));
    out.insert("stream".into(), json!(ctx.stream));
    let mut messages = None;
    let mut tools = None;
    let mut tool_choice = None;
    let mut response_format = None;
    let mut frequency = None;
    let mut presence = None;
    let has_max_completion = fields.get("max_completion_tokens").is_some();

    for (k, v) in &fields.0 {
        if v.is_null() {
            continue;
        }
        match k.as_str() {
            "model" | "stream" | "stream_options" | GATEWAY_FIELD => {}
            "messages" => messages = Some(v),
            "max_completion_tokens" => {
                out.insert("max_tokens".into(), v.clone());
            }
            "max_tokens" => {
                if !has_max_completion {
                    out.insert("max_tokens".into(), v.clone());
                }
            }
            "temperature" => {
                let t = clamp_param(v, k, 0.0, f64::MAX, &mut notes, strict, provider)?;
                out.insert("temperature".into(), t);
            }
            "top_p" => {
                let p = clamp_param(v, k, 0.01, 0.99, &mut notes, strict, provider)?;
                out.insert("p".into(), p);
            }
            "top_k" => {
                let top_k = clamp_param(v, k, 0.0, 500.0, &mut notes, strict, provider)?;
                out.insert("k".into(), json!(top_k.as_f64().unwrap_or(0.0).round() as u64));
            }
            "stop" => {
                let stops = stop_list(v, MAX_STOP, &mut notes, strict, provider)?;
                if !stops.is_empty() {
                    out.insert("stop_sequences".into(), json!(stops));
                }
            }
            "seed" => {
                out.insert("seed".into(), v.clone());
            }
            "frequency_penalty" => frequency = Some(clamp_param(v, k, 0.0, 1.0, &mut notes, strict, provider)?),
            "presence_penalty" => presence = Some(clamp_param(v, k, 0.0, 1.0, &mut notes, strict, provider)?),
            "n" => {
                if v.as_u64().is_some_and(|n| n > 1) {
                    return Err(GatewayError::unsupported_param(
                        "n",
                        format!("n > 1 is not supported by provider {provider}"),
                    ));
                }
            }
            "logprobs" => {
                if v.as_bool() == Some(true) {
                    return Err(unsupported("logprobs", provider));
                }
            }
            "top_logprobs" => {}
            "logit_bias" => reject_logit_bias(v, provider)?,
            "response_format" => response_format = Some(v),
            "tools" => tools = Some(v),
            "tool_choice" => tool_choice = Some(v),
            "reasoning_effort" => {
                out.insert("thinking".into(), thinking(v.as_str().unwrap_or_default()));
            }
            "modalities" => reject_audio_modalities(v, provider)?,
            "audio" | "functions" | "function_call" => return Err(unsupported(k, provider)),
            // Cohere's own options, passed through only when the client gives them.
            "documents" | "citation_options" | "safety_mode" | "priority" => {
                out.insert(k.clone(), v.clone());
            }
            // user, parallel_tool_calls, metadata, store, service_tier, vendor fields.
            _ => notes.drop_or_reject(strict, k, provider)?,
        }
    }

    // Newer models refuse both penalties at once: keep the non-zero one (frequency if both).
    let nonzero = |p: &Option<Value>| p.as_ref().and_then(Value::as_f64).is_some_and(|x| x != 0.0);
    if nonzero(&frequency) && nonzero(&presence) {
        notes.drop_or_reject(strict, "presence_penalty", provider)?;
        notes.warn(PENALTIES_EXCLUSIVE);
        presence = None;
    }
    for (name, p) in [("frequency_penalty", frequency), ("presence_penalty", presence)] {
        if let Some(p) = p.filter(|p| p.as_f64().is_some_and(|x| x != 0.0)) {
            out.insert(name.into(), p);
        }
    }

    let messages =
        messages.ok_or_else(|| GatewayError::invalid_request("messages is required").with_param("messages"))?;
    out.insert("messages".into(), Value::Array(convert_messages(messages, &mut notes)?));

    let choice = tool_choice.map(parse_tool_choice).transpose()?;
    let mut tool_list = Vec::new();
    let mut strict_tools = false;
    if let Some(tools) = tools {
        let keep = match &choice {
            Some(ToolChoice::Named(name)) => Some(vec![name.clone()]),
            Some(ToolChoice::Allowed { names, .. }) => Some(names.clone()),
            _ => None,
        };
        (tool_list, strict_tools) = convert_tools(tools, keep.as_deref())?;
        if keep.is_some() && tool_list.is_empty() {
            return Err(
                GatewayError::invalid_request("tool_choice names no tool present in tools").with_param("tool_choice"),
            );
        }
    }
    if !tool_list.is_empty() {
        // Cohere has no named choice: offering only that tool and requiring a call is the same.
        let mode = match &choice {
            Some(ToolChoice::None) => Some("NONE"),
            Some(ToolChoice::Required | ToolChoice::Named(_)) => Some("REQUIRED"),
            Some(ToolChoice::Allowed { required: true, .. }) => Some("REQUIRED"),
            _ => None,
        };
        out.insert("tools".into(), Value::Array(tool_list));
        if strict_tools {
            out.insert("strict_tools".into(), json!(true));
        }
        if let Some(mode) = mode {
            out.insert("tool_choice".into(), json!(mode));
        }
    }
    if let Some(rf) = response_format {
        match rf["type"].as_str() {
            Some("text") => {}
            Some(t @ ("json_object" | "json_schema")) => {
                if out.contains_key("tools") {
                    return Err(GatewayError::invalid_request(format!(
                        "Provider {provider} cannot combine a JSON response_format with tools"
                    ))
                    .with_param("response_format"));
                }
                let mut f = json!({"type": "json_object"});
                if t == "json_schema" {
                    if let Some(schema) = rf["json_schema"].get("schema").filter(|s| !s.is_null()) {
                        f["json_schema"] = schema.clone();
                    }
                }
                out.insert("response_format".into(), f);
            }
            _ => {
                return Err(GatewayError::invalid_request(
                    "response_format.type must be text, json_object or json_schema",
                )
                .with_param("response_format.type"))
            }
        }
    }

    Ok(UpstreamRequest {
        method: "POST",
        path: "/v2/chat".to_string(),
        body: to_bytes(&Value::Object(out))?.into(),
        headers: Vec::new(),
        notes,
    })
}

/// `reasoning_effort` → Cohere's thinking switch and token budget (reasoning models only).
fn thinking(effort: &str) -> Value {
    let budget = match effort {
        "none" => return json!({"type": "disabled"}),
        "minimal" => 512,
        "low" => 1024,
        "medium" => 4096,
        _ => 16384,
    };
    json!({"type": "enabled", "token_budget": budget})
}

/// OpenAI tools in Cohere's (identical) shape, optionally filtered; `strict` on any tool
/// becomes the request-level `strict_tools`.
fn convert_tools(tools: &Value, keep: Option<&[String]>) -> Result<(Vec<Value>, bool)> {
    let list = tools
        .as_array()
        .ok_or_else(|| GatewayError::invalid_request("tools must be an array").with_param("tools"))?;
    let mut out = Vec::with_capacity(list.len());
    let mut strict = false;
    for (k, t) in list.iter().enumerate() {
        if t["type"].as_str().unwrap_or("function") != "function" {
            return Err(GatewayError::unsupported_param(
                &format!("tools[{k}].type"),
                "Only function tools are supported by provider cohere",
            ));
        }
        let f = &t["function"];
        let name = f["name"].as_str().filter(|n| !n.is_empty()).ok_or_else(|| {
            GatewayError::invalid_request("tool function name is required")
                .with_param(format!("tools[{k}].function.name"))
        })?;
        if keep.is_some_and(|names| !names.iter().any(|n| n == name)) {
            continue;
        }
        strict |= f["strict"].as_bool() == Some(true);
        let mut func = Map::new();
        func.insert("name".into(), json!(name));
        if let Some(d) = f["description"].as_str() {
            func.insert("description".into(), json!(d));
        }
        if let Some(p) = f.get("parameters").filter(|p| !p.is_null()) {
            func.insert("parameters".into(), p.clone());
        }
        out.push(json!({"type": "function", "function": func}));
    }
    Ok((out, strict))
}

/// §4.3: instructions hoisted into one leading system message, empty text removed.
fn convert_messages(messages: &Value, notes: &mut Notes) -> Result<Vec<Value>> {
    let list = messages
        .as_array()
        .ok_or_else(|| GatewayError::invalid_request("messages must be an array").with_param("messages"))?;
    let mut system = Vec::new();
    let mut out = Vec::with_capacity(list.len() + 1);
    let mut seen_turn = false;
    for (i, m) in list.iter().enumerate() {
        match message_role(m, i)? {
            "system" | "developer" => {
                if seen_turn {
                    notes.warn(HOISTED);
                }
                system.extend(instruction_texts(&m["content"], i)?);
            }
            "user" => {
                seen_turn = true;
                out.push(json!({"role": "user", "content": user_content(&m["content"], i)?}));
            }
            "assistant" => {
                seen_turn = true;
                let text = assistant_text(&m["content"], i)?;
                let calls: Vec<Value> = m["tool_calls"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| {
                        let f = &c["function"];
                        json!({"id": c["id"], "type": "function", "function": {
                            "name": f["name"], "arguments": util::arguments_string(f.get("arguments"))}})
                    })
                    .collect();
                if text.is_empty() && calls.is_empty() {
                    continue;
                }
                // Cohere rejects empty strings: content is left out when there is none.
                let mut msg = json!({"role": "assistant"});
                if !text.is_empty() {
                    msg["content"] = json!(text);
                }
                if !calls.is_empty() {
                    msg["tool_calls"] = Value::Array(calls);
                }
                out.push(msg);
            }
            "tool" => {
                seen_turn = true;
                let content = match &m["content"] {
                    Value::Null => json!(""),
                    Value::String(s) => json!(s),
                    Value::Array(parts) => Value::Array(
                        parts
                            .iter()
                            .filter(|p| p["type"] == "text")
                            .map(|p| json!({"type": "text", "text": p["text"]}))
                            .collect(),
                    ),
                    _ => return Err(bad_content(i)),
                };
                out.push(json!({"role": "tool", "tool_call_id": m["tool_call_id"], "content": content}));
            }
            other => {
                return Err(
                    GatewayError::invalid_request(format!("Unsupported message role {other}"))
                        .with_param(format!("messages[{i}].role")),
                )
            }
        }
    }
    if !system.is_empty() {
        out.insert(0, json!({"role": "system", "content": system.join("\n\n")}));
    }
    Ok(out)
}

/// User content: a string, or text and image parts (Cohere takes data and web URLs alike).
fn user_content(content: &Value, i: usize) -> Result<Value> {
    match content {
        Value::String(s) if !s.is_empty() => Ok(json!(s)),
        Value::Array(parts) => {
            let mut out = Vec::with_capacity(parts.len());
            for (j, p) in parts.iter().enumerate() {
                match p["type"].as_str().unwrap_or_default() {
                    "text" => {
                        if let Some(t) = p["text"].as_str().filter(|t| !t.is_empty()) {
                            out.push(json!({"type": "text", "text": t}));
                        }
                    }
                    "image_url" => {
                        let (url, detail) = match &p["image_url"] {
                            Value::String(s) => (s.as_str(), None),
                            v => (v["url"].as_str().unwrap_or_default(), v["detail"].as_str()),
                        };
                        if url.is_empty() {
                            return Err(GatewayError::invalid_request("image_url.url is required")
                                .with_param(format!("messages[{i}].content[{j}].image_url.url")));
                        }
                        let mut image = json!({"url": url});
                        if let Some(d) = detail {
                            image["detail"] = json!(d);
                        }
                        out.push(json!({"type": "image_url", "image_url": image}));
                    }
                    other => {
                        return Err(GatewayError::invalid_request(format!(
                            "Content part type {other:?} is not supported by provider cohere"
                        ))
                        .with_param(format!("messages[{i}].content[{j}].type")))
                    }
                }
            }
            if out.is_empty() {
                return Err(empty_message(i));
            }
            Ok(Value::Array(out))
        }
        Value::String(_) | Value::Null => Err(empty_message(i)),
        _ => Err(bad_content(i)),
    }
}

fn build_embeddings(fields: &Fields, ctx: &Ctx) -> Result<UpstreamRequest> {
    let strict = ctx.options.strict;
    let mut notes = Notes::default();
    let mut out = Map::new();
    out.insert("model".into(), json!(ctx.upstream_model));
    let mut input_type = ctx.options.default_embed_input_type.clone();
    for (k, v) in &fields.0 {
        if v.is_null() {
            continue;
        }
        match k.as_str() {
            "model" | "input" | "encoding_format" | GATEWAY_FIELD => {}
            "dimensions" => {
                out.insert("output_dimension".into(), v.clone());
            }
            "input_type" => {
                input_type = v
                    .as_str()
                    .ok_or_else(|| {
                        GatewayError::invalid_request("input_type must be a string").with_param("input_type")
                    })?
                    .to_string();
            }
            "truncate" => {
                out.insert("truncate".into(), v.clone());
            }
            _ => notes.drop_or_reject(strict, k, ctx.provider)?,
        }
    }
    let (texts, _) = embedding_inputs(fields.get("input"), ctx.provider)?;
    if texts.len() > MAX_EMBED_TEXTS {
        return Err(GatewayError::invalid_request(format!(
            "Provider {} accepts at most {MAX_EMBED_TEXTS} inputs per embeddings request",
            ctx.provider
        ))
        .with_param("input"));
    }
    out.insert("texts".into(), json!(texts));
    out.insert("input_type".into(), json!(input_type));
    // Always floats; base64 is encoded by the gateway when the client asks for it.
    out.insert("embedding_types".into(), json!(["float"]));
    Ok(UpstreamRequest {
        method: "POST",
        path: "/v2/embed".to_string(),
        body: to_bytes(&Value::Object(out))?.into(),
        headers: Vec::new(),
        notes,
    })
}

// ---------------------------------------------------------------------------------------------
// Responses (§4.4)
// ---------------------------------------------------------------------------------------------

pub fn translate_response(body: &[u8], ctx: &Ctx) -> Result<Translated> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| GatewayError::bad_upstream(format!("{} returned invalid JSON: {e}", ctx.provider)))?;
    if !v.is_object() {
        return Err(GatewayError::bad_upstream(format!(
            "{} returned a non-object body",
            ctx.provider
        )));
    }
    match ctx.endpoint {
        Endpoint::Embeddings => translate_embeddings(&v, ctx),
        _ => translate_chat(&v, ctx),
    }
}

fn map_finish(reason: &str) -> &'static str {
    match reason {
        "MAX_TOKENS" | "ERROR_LIMIT" => "length",
        "TOOL_CALL" => "tool_calls",
        "ERROR_TOXIC" => "content_filter",
        _ => "stop",
    }
}

fn translate_chat(v: &Value, ctx: &Ctx) -> Result<Translated> {
    if v.get("message").is_none_or(|m| !m.is_object()) {
        return Err(GatewayError::bad_upstream(format!(
            "{} returned no message",
            ctx.provider
        )));
    }
    let msg = &v["message"];
    let text: String = msg["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["type"] == "text")
        .filter_map(|c| c["text"].as_str())
        .collect();
    let calls: Vec<Value> = msg["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let f = &c["function"];
            json!({"id": c["id"], "type": "function",
                   "function": {"name": f["name"], "arguments": util::arguments_string(f.get("arguments"))}})
        })
        .collect();
    let native = v["finish_reason"].as_str().unwrap_or_default();
    if matches!(native, "ERROR" | "TIMEOUT") && text.is_empty() && calls.is_empty() {
        let message = format!("{} ended the generation with {native}", ctx.provider);
        return Err(if native == "TIMEOUT" {
            GatewayError::upstream_timeout(message)
        } else {
            GatewayError::bad_upstream(message)
        });
    }
    let mut reason = map_finish(native);
    if reason == "stop" && !calls.is_empty() {
        reason = "tool_calls";
    }
    let content = if !text.is_empty() {
        json!(text)
    } else if !calls.is_empty() || reason == "content_filter" {
        Value::Null
    } else {
        json!("")
    };
    let mut message = json!({"role": "assistant", "content": content});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let (usage_value, usage) = usage_of(&v["usage"]);
    let id = v["id"].as_str().filter(|s| !s.is_empty()).unwrap_or(ctx.fallback_id);
    let out = json!({
        "id": id,
        "object": "chat.completion",
        "created": ctx.created,
        "model": ctx.client_model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": reason}],
        "usage": usage_value,
    });
    Ok(Translated {
        body: to_bytes(&out)?,
        usage: v["usage"].is_object().then_some(usage),
        upstream_model: None,
    })
}

/// `usage.tokens` (what the model saw) with `billed_units` as fallback.
fn usage_of(u: &Value) -> (Value, Usage) {
    let count = |k: &str| {
        u["tokens"][k]
            .as_u64()
            .or_else(|| u["billed_units"][k].as_u64())
            .unwrap_or(0)
    };
    let prompt = count("input_tokens");
    let completion = count("output_tokens");
    let usage = Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
    };
    let mut v = util::usage_json(&usage);
    if let Some(cached) = u["cached_tokens"].as_u64() {
        v["prompt_tokens_details"] = json!({"cached_tokens": cached});
    }
    (v, usage)
}

fn translate_embeddings(v: &Value, ctx: &Ctx) -> Result<Translated> {
    // `embeddings_by_type` (what we ask for) or the older plain list of float vectors.
    let list = v["embeddings"]["float"]
        .as_array()
        .or_else(|| v["embeddings"].as_array())
        .ok_or_else(|| GatewayError::bad_upstream(format!("{} returned no float embeddings", ctx.provider)))?;
    let vectors: Vec<&Vec<Value>> = list.iter().filter_map(Value::as_array).collect();
    if vectors.len() != list.len() {
        return Err(GatewayError::bad_upstream(format!(
            "{} returned a malformed embedding",
            ctx.provider
        )));
    }
    let meta = &v["meta"];
    let tokens = meta["billed_units"]["input_tokens"]
        .as_u64()
        .or_else(|| meta["tokens"]["input_tokens"].as_u64());
    embeddings_response(&vectors, ctx, tokens)
}

// ---------------------------------------------------------------------------------------------
// Errors (§4.6)
// ---------------------------------------------------------------------------------------------

pub fn translate_error(status: u16, _headers: &http::HeaderMap, body: &[u8], _now: u64) -> GatewayError {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let message = match (&v["message"], &v["error"]) {
        (Value::String(s), _) if !s.is_empty() => s.clone(),
        (_, Value::String(s)) if !s.is_empty() => s.clone(),
        (_, e) if e["message"].is_string() => e["message"].as_str().unwrap_or_default().to_string(),
        _ => plain_message(body, status, "cohere"),
    };
    let lower = message.to_ascii_lowercase();
    match status {
        // The SDK's InvalidTokenError; the docs have also used 498 for blocked requests.
        498 if lower.contains("token") || lower.contains("api key") => GatewayError::from_upstream_status(401, message),
        498 => GatewayError::from_upstream_status(400, message).with_code("content_filter"),
        // Cancelled upstream: a timeout from the client's point of view.
        499 => GatewayError::from_upstream_status(408, message),
        501 => GatewayError::from_upstream_status(500, message),
        429 if lower.contains("month") => GatewayError::insufficient_quota(429, message),
        400 | 422 if lower.starts_with("too many tokens") => GatewayError::from_upstream_status(400, message)
            .with_code("context_length_exceeded")
            .with_param("messages"),
        _ => GatewayError::from_upstream_status(status, message),
    }
}

// ---------------------------------------------------------------------------------------------
// Streaming (§4.5)
// ---------------------------------------------------------------------------------------------

struct CohereStream {
    decoder: sse::Decoder,
    emitter: ChunkEmitter,
    provider: String,
    id_seed: u64,
    /// Upstream tool-call index → (ordinal, argument bytes emitted).
    tools: HashMap<u64, (usize, usize)>,
    usage_value: Option<Value>,
    usage: Option<Usage>,
    /// `message-end` arrived: the stream is complete.
    ended: bool,
    events: usize,
}

pub fn stream_translator(ctx: &Ctx) -> Box<dyn StreamTranslator> {
    Box::new(CohereStream {
        decoder: sse::Decoder::new(),
        emitter: ChunkEmitter::new(ctx.fallback_id, ctx.created, ctx.client_model, ctx.include_usage),
        provider: ctx.provider.to_string(),
        id_seed: ctx.id_seed,
        tools: HashMap::new(),
        usage_value: None,
        usage: None,
        ended: false,
        events: 0,
    })
}

impl CohereStream {
    fn on_event(&mut self, e: &sse::Event, out: &mut BytesMut) -> Result<()> {
        let data = e.data.trim();
        if data.is_empty() || data == "[DONE]" || self.ended {
            return Ok(());
        }
        self.events += 1;
        let v: Value = serde_json::from_str(data).map_err(|err| {
            GatewayError::bad_upstream(format!("{} sent an invalid stream event: {err}", self.provider))
        })?;
        // The JSON `type` is authoritative; the `event:` line is the fallback.
        let kind = v["type"].as_str().or(e.event.as_deref()).unwrap_or_default();
        let msg = &v["delta"]["message"];
        match kind {
            "message-start" => {
                if !self.emitter.role_sent() {
                    if let Some(id) = v["id"].as_str().filter(|s| !s.is_empty()) {
                        self.emitter.id = id.to_string();
                    }
                }
                self.emitter.role(out);
            }
            // The event `index` is a content-block index, never a choice index.
            "content-start" | "content-delta" => {
                if let Some(t) = msg["content"]["text"].as_str() {
                    self.emitter.content(t, out);
                }
            }
            "tool-call-start" => {
                let call = &msg["tool_calls"];
                let ordinal = self.tools.len();
                let up = v["index"].as_u64().unwrap_or(ordinal as u64);
                let id = match call["id"].as_str().filter(|s| !s.is_empty()) {
                    Some(id) => id.to_string(),
                    None => util::gen_id("call_", self.id_seed.wrapping_add(ordinal as u64)),
                };
                let f = &call["function"];
                let args = f["arguments"].as_str().unwrap_or_default();
                self.tools.insert(up, (ordinal, args.len()));
                self.emitter
                    .tool_call_start(ordinal, &id, f["name"].as_str().unwrap_or_default(), args, out);
            }
            "tool-call-delta" => {
                let args = msg["tool_calls"]["function"]["arguments"].as_str().unwrap_or_default();
                let up = v["index"].as_u64().unwrap_or(0);
                if let Some((ordinal, len)) = self.tools.get_mut(&up) {
                    *len += args.len();
                    self.emitter.tool_call_args(*ordinal, args, out);
                }
            }
            "tool-call-end" => {
                // A call without arguments still needs a parseable arguments string.
                let up = v["index"].as_u64().unwrap_or(0);
                if let Some((ordinal, len)) = self.tools.get_mut(&up) {
                    if *len == 0 {
                        *len = 2;
                        self.emitter.tool_call_args(*ordinal, "{}", out);
                    }
                }
            }
            "message-end" => self.on_end(&v["delta"], out)?,
            // tool-plan-delta, content-end, citation-*, debug, thinking: not part of the answer.
            _ => {}
        }
        Ok(())
    }

    fn on_end(&mut self, delta: &Value, out: &mut BytesMut) -> Result<()> {
        let native = delta["finish_reason"].as_str().unwrap_or_default();
        let error = delta["error"].as_str().filter(|s| !s.is_empty());
        if error.is_some() || matches!(native, "ERROR" | "TIMEOUT") {
            let message = error
                .map(str::to_string)
                .unwrap_or_else(|| format!("{} ended the generation with {native}", self.provider));
            return Err(if native == "TIMEOUT" {
                GatewayError::upstream_timeout(message)
            } else {
                GatewayError::bad_upstream(message)
            });
        }
        if let Some(u) = delta.get("usage").filter(|u| u.is_object()) {
            let (value, usage) = usage_of(u);
            self.usage_value = Some(value);
            self.usage = Some(usage);
        }
        let mut reason = map_finish(native);
        if reason == "stop" && !self.tools.is_empty() {
            reason = "tool_calls";
        }
        self.emitter.finish(reason, out);
        self.ended = true;
        Ok(())
    }
}

impl StreamTranslator for CohereStream {
    fn feed(&mut self, input: &[u8], out: &mut BytesMut) -> Result<()> {
        for e in decode(&mut self.decoder, input)? {
            self.on_event(&e, out)?;
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut BytesMut) -> Result<()> {
        if let Some(e) = self.decoder.finish() {
            self.on_event(&e, out)?;
        }
        if self.events == 0 {
            return Err(GatewayError::bad_upstream(format!(
                "{} closed the stream without any event",
                self.provider
            )));
        }
        if !self.ended {
            return Err(GatewayError::truncated_stream(format!(
                "{} ended the stream before message-end",
                self.provider
            )));
        }
        let usage = self
            .usage_value
            .clone()
            .unwrap_or_else(|| util::usage_json(&Usage::default()));
        self.emitter.usage(usage, out);
        self.emitter.done(out);
        Ok(())
    }

    fn committed(&self) -> bool {
        self.emitter.committed()
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }
}

// ---------------------------------------------------------------------------------------------
// Models (§4.8)
// ---------------------------------------------------------------------------------------------

pub fn models_path() -> &'static str {
    "/v1/models?page_size=1000"
}

/// Model names that serve chat or embeddings.
pub fn parse_models(body: &[u8]) -> Result<Vec<String>> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| GatewayError::bad_upstream(format!("cohere returned an invalid model list: {e}")))?;
    let models = v["models"]
        .as_array()
        .ok_or_else(|| GatewayError::bad_upstream("cohere returned a model list without models"))?;
    Ok(models
        .iter()
        .filter(|m| match m["endpoints"].as_array() {
            Some(eps) => eps.iter().any(|e| matches!(e.as_str(), Some("chat" | "embed"))),
            None => true,
        })
        .filter_map(|m| m["name"].as_str().map(str::to_string))
        .collect())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use base64::Engine;
    use proptest::prelude::*;

    use super::*;
    use crate::providers::gemini::tests::{c, events, u};
    use crate::providers::{Kind, Options};

    fn ctx<'a>(model: &'a str, opts: &'a Options, images: &'a HashMap<String, (String, String)>) -> Ctx<'a> {
        Ctx {
            provider: "cohere",
            kind: Kind::Cohere,
            endpoint: Endpoint::Chat,
            client_model: model,
            upstream_model: model,
            stream: false,
            include_usage: false,
            created: 1_767_225_600,
            fallback_id: "chatcmpl-fallback000000000000000",
            id_seed: 3,
            options: opts,
            embed_base64: false,
            images,
        }
    }

    fn j(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    fn body(r: &UpstreamRequest) -> Value {
        serde_json::from_slice(&r.body.contiguous()).unwrap()
    }

    fn strs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }

    fn build(input: &str) -> Result<UpstreamRequest> {
        let (o, im) = (Options::default(), HashMap::new());
        build_request(input.as_bytes(), &ctx("command-a-03-2025", &o, &im))
    }

    #[test]
    fn case_12_hoisting_clamp_stop_named_tool_choice() {
        let input = r#"{"model":"command-a-03-2025",
 "messages":[{"role":"user","content":"Find flights CDG to NRT"},{"role":"developer","content":"Be brief."}],
 "top_p":1.0,"stop":"STOP",
 "tools":[
   {"type":"function","function":{"name":"search_flights","parameters":{"type":"object","properties":{"from":{"type":"string"},"to":{"type":"string"}}}}},
   {"type":"function","function":{"name":"book_flight","parameters":{"type":"object","properties":{"id":{"type":"string"}}}}}],
 "tool_choice":{"type":"function","function":{"name":"search_flights"}}}"#;
        let r = build(input).unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/v2/chat");
        assert!(r.headers.is_empty());
        let expected = j(r#"{"model":"command-a-03-2025","stream":false,
 "messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Find flights CDG to NRT"}],
 "p":0.99,"stop_sequences":["STOP"],
 "tools":[{"type":"function","function":{"name":"search_flights","parameters":{"type":"object","properties":{"from":{"type":"string"},"to":{"type":"string"}}}}}],
 "tool_choice":"REQUIRED"}"#);
        assert_eq!(body(&r), expected);
        assert!(r.notes.dropped.is_empty());
        assert_eq!(strs(&r.notes.adjusted), ["top_p"]);
        assert_eq!(strs(&r.notes.warnings), [HOISTED]);

        let strict = Options {
            strict: true,
            ..Options::default()
        };
        let im = HashMap::new();
        let e = build_request(input.as_bytes(), &ctx("command-a-03-2025", &strict, &im)).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("top_p"));
    }

    #[test]
    fn stream_flag_and_conversation() {
        let (o, im) = (Options::default(), HashMap::new());
        let mut cx = ctx("command-a-03-2025", &o, &im);
        cx.stream = true;
        let input = r#"{"model":"x","stream":true,"stream_options":{"include_usage":true},"max_tokens":50,"max_completion_tokens":40,
 "user":"u1","parallel_tool_calls":true,"seed":1,
 "messages":[
   {"role":"system","content":"A."},{"role":"system","content":[{"type":"text","text":"B."},{"type":"text","text":""}]},
   {"role":"user","name":"bob","content":[{"type":"text","text":"What is this?"},{"type":"text","text":""},
     {"type":"image_url","image_url":{"url":"https://example.com/cat.jpg","detail":"high"}},
     {"type":"image_url","image_url":"data:image/png;base64,iVBO"}]},
   {"role":"assistant","content":"","tool_calls":[{"id":"get_weather_1","type":"function","function":{"name":"get_weather","arguments":""}}]},
   {"role":"tool","tool_call_id":"get_weather_1","content":"18C"},
   {"role":"assistant","content":[{"type":"text","text":"It is "},{"type":"refusal","refusal":"18C."}]},
   {"role":"assistant","content":null},
   {"role":"user","content":"Thanks"}]}"#;
        let r = build_request(input.as_bytes(), &cx).unwrap();
        let expected = j(r#"{"model":"command-a-03-2025","stream":true,"max_tokens":40,"seed":1,
 "messages":[
   {"role":"system","content":"A.\n\nB."},
   {"role":"user","content":[{"type":"text","text":"What is this?"},
     {"type":"image_url","image_url":{"url":"https://example.com/cat.jpg","detail":"high"}},
     {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBO"}}]},
   {"role":"assistant","tool_calls":[{"id":"get_weather_1","type":"function","function":{"name":"get_weather","arguments":"{}"}}]},
   {"role":"tool","tool_call_id":"get_weather_1","content":"18C"},
   {"role":"assistant","content":"It is 18C."},
   {"role":"user","content":"Thanks"}]}"#);
        assert_eq!(body(&r), expected);
        assert_eq!(strs(&r.notes.dropped), ["user", "parallel_tool_calls"]);
        assert!(r.notes.warnings.is_empty());
        assert!(r.notes.adjusted.is_empty());
    }

    #[test]
    fn parameter_policy() {
        let msgs = r#""messages":[{"role":"user","content":"hi"}]"#;
        // Both penalties non-zero: frequency kept, presence dropped with a warning; clamps.
        let r = build(&format!(
            r#"{{{msgs},"frequency_penalty":-0.5,"presence_penalty":0.3}}"#
        ))
        .unwrap();
        assert_eq!(body(&r).get("frequency_penalty"), None);
        assert_eq!(body(&r)["presence_penalty"], 0.3);
        assert_eq!(strs(&r.notes.adjusted), ["frequency_penalty"]);
        let r = build(&format!(r#"{{{msgs},"presence_penalty":1.5,"frequency_penalty":0.2}}"#)).unwrap();
        assert_eq!(body(&r)["frequency_penalty"], 0.2);
        assert_eq!(body(&r).get("presence_penalty"), None);
        assert_eq!(strs(&r.notes.adjusted), ["presence_penalty"]);
        assert_eq!(strs(&r.notes.dropped), ["presence_penalty"]);
        assert_eq!(strs(&r.notes.warnings), [PENALTIES_EXCLUSIVE]);
        // Shape changers are refused.
        for bad in [
            r#""n":3"#,
            r#""logprobs":true"#,
            r#""logit_bias":{"5":1}"#,
            r#""modalities":["text","audio"]"#,
        ] {
            let e = build(&format!("{{{msgs},{bad}}}")).unwrap_err();
            assert_eq!(e.code.as_deref(), Some("unsupported_parameter"), "{bad}");
        }
        // JSON modes.
        let r = build(&format!(r#"{{{msgs},"response_format":{{"type":"json_schema","json_schema":{{"name":"p","schema":{{"type":"object"}}}}}}}}"#)).unwrap();
        assert_eq!(
            body(&r)["response_format"],
            j(r#"{"type":"json_object","json_schema":{"type":"object"}}"#)
        );
        let r = build(&format!(r#"{{{msgs},"response_format":{{"type":"json_object"}}}}"#)).unwrap();
        assert_eq!(body(&r)["response_format"], j(r#"{"type":"json_object"}"#));
        let e = build(&format!(
            r#"{{{msgs},"response_format":{{"type":"json_object"}},"tools":[{{"type":"function","function":{{"name":"f"}}}}]}}"#
        ))
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("response_format"));
        // tool_choice variants and strict tools.
        let tools = r#""tools":[{"type":"function","function":{"name":"a","strict":true}},{"type":"function","function":{"name":"b"}}]"#;
        let r = build(&format!(r#"{{{msgs},{tools},"tool_choice":"none"}}"#)).unwrap();
        assert_eq!(body(&r)["tool_choice"], "NONE");
        assert_eq!(body(&r)["strict_tools"], true);
        assert_eq!(body(&r)["tools"].as_array().unwrap().len(), 2);
        let r = build(&format!(r#"{{{msgs},{tools},"tool_choice":"auto"}}"#)).unwrap();
        assert_eq!(body(&r).get("tool_choice"), None);
        let r = build(&format!(r#"{{{msgs},{tools},"tool_choice":"required"}}"#)).unwrap();
        assert_eq!(body(&r)["tool_choice"], "REQUIRED");
        let e = build(&format!(
            r#"{{{msgs},{tools},"tool_choice":{{"type":"function","function":{{"name":"zzz"}}}}}}"#
        ))
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("tool_choice"));
        // Empty user messages are refused before Cohere does.
        let e = build(r#"{"messages":[{"role":"user","content":""}]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].content"));
        let e =
            build(r#"{"messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].content[0].type"));
    }

    fn respond(upstream: &str) -> Result<Value> {
        let (o, im) = (Options::default(), HashMap::new());
        let t = translate_response(upstream.as_bytes(), &ctx("command-a-03-2025", &o, &im))?;
        Ok(serde_json::from_slice(&t.body).unwrap())
    }

    #[test]
    fn responses() {
        let up = r#"{"id":"c14c80c3","finish_reason":"TOOL_CALL","message":{"role":"assistant",
  "tool_plan":"I will look up the weather.",
  "content":[{"type":"thinking","thinking":"hmm"},{"type":"text","text":"Checking."}],
  "tool_calls":[{"id":"get_weather_abc","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
                {"id":"now_1","type":"function","function":{"name":"now","arguments":""}}]},
  "usage":{"billed_units":{"input_tokens":5,"output_tokens":9},"tokens":{"input_tokens":71,"output_tokens":9},"cached_tokens":3}}"#;
        let expected = j(
            r#"{"id":"c14c80c3","object":"chat.completion","created":1767225600,"model":"command-a-03-2025",
 "choices":[{"index":0,"message":{"role":"assistant","content":"Checking.","tool_calls":[
   {"id":"get_weather_abc","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
   {"id":"now_1","type":"function","function":{"name":"now","arguments":"{}"}}]},
   "logprobs":null,"finish_reason":"tool_calls"}],
 "usage":{"prompt_tokens":71,"completion_tokens":9,"total_tokens":80,"prompt_tokens_details":{"cached_tokens":3}}}"#,
        );
        assert_eq!(respond(up).unwrap(), expected);

        let up = r#"{"id":"x1","finish_reason":"MAX_TOKENS","message":{"role":"assistant","content":[{"type":"text","text":"Once"}]},
  "usage":{"billed_units":{"input_tokens":4,"output_tokens":1}}}"#;
        let v = respond(up).unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(
            v["usage"],
            j(r#"{"prompt_tokens":4,"completion_tokens":1,"total_tokens":5}"#)
        );

        let v =
            respond(r#"{"id":"x2","finish_reason":"COMPLETE","message":{"role":"assistant","content":[]}}"#).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");

        let e =
            respond(r#"{"id":"x3","finish_reason":"ERROR","message":{"role":"assistant","content":[]}}"#).unwrap_err();
        assert_eq!(e.status, 502);
        let e = respond(r#"{"id":"x4","finish_reason":"TIMEOUT","message":{"role":"assistant"}}"#).unwrap_err();
        assert_eq!(e.status, 504);
        let v = respond(r#"{"id":"x5","finish_reason":"ERROR","message":{"role":"assistant","content":[{"type":"text","text":"Part"}]}}"#).unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(respond("[1]").unwrap_err().status, 502);
    }

    // --- streams ---------------------------------------------------------------------------

    fn sse(events: &[&str]) -> String {
        events
            .iter()
            .map(|d| {
                let v: Value = serde_json::from_str(d).unwrap();
                format!("event: {}\ndata: {d}\n\n", v["type"].as_str().unwrap())
            })
            .collect()
    }

    fn text_stream() -> String {
        sse(&[
            r#"{"type":"message-start","id":"c14c","delta":{"message":{"role":"assistant","content":[],"tool_plan":"","tool_calls":[],"citations":[]}}}"#,
            r#"{"type":"content-start","index":0,"delta":{"message":{"content":{"type":"text","text":""}}}}"#,
            r#"{"type":"content-delta","index":0,"delta":{"message":{"content":{"text":"Hello"}}}}"#,
            r#"{"type":"content-delta","index":0,"delta":{"message":{"content":{"text":" world"}}}}"#,
            r#"{"type":"content-end","index":0}"#,
            r#"{"type":"message-end","delta":{"finish_reason":"COMPLETE","usage":{"billed_units":{"input_tokens":5,"output_tokens":2},"tokens":{"input_tokens":71,"output_tokens":2}}}}"#,
        ])
    }

    fn tool_stream() -> String {
        sse(&[
            r#"{"type":"message-start","id":"c15d","delta":{"message":{"role":"assistant","content":[],"tool_plan":"","tool_calls":[],"citations":[]}}}"#,
            r#"{"type":"tool-plan-delta","delta":{"message":{"tool_plan":"I will look up"}}}"#,
            r#"{"type":"tool-call-start","index":0,"delta":{"message":{"tool_calls":{"id":"get_weather_abc","type":"function","function":{"name":"get_weather","arguments":""}}}}}"#,
            r#"{"type":"tool-call-delta","index":0,"delta":{"message":{"tool_calls":{"function":{"arguments":"{\"city\":"}}}}}"#,
            r#"{"type":"tool-call-delta","index":0,"delta":{"message":{"tool_calls":{"function":{"arguments":""}}}}}"#,
            r#"{"type":"tool-call-delta","index":0,"delta":{"message":{"tool_calls":{"function":{"arguments":"\"Paris\"}"}}}}}"#,
            r#"{"type":"tool-call-end","index":0}"#,
            r#"{"type":"tool-call-start","index":1,"delta":{"message":{"tool_calls":{"id":"now_1","type":"function","function":{"name":"now","arguments":""}}}}}"#,
            r#"{"type":"tool-call-end","index":1}"#,
            r#"{"type":"message-end","delta":{"finish_reason":"TOOL_CALL","usage":{"billed_units":{"input_tokens":10,"output_tokens":20},"tokens":{"input_tokens":100,"output_tokens":20}}}}"#,
        ])
    }

    fn error_stream() -> String {
        sse(&[
            r#"{"type":"message-start","id":"c16e","delta":{"message":{"role":"assistant"}}}"#,
            r#"{"type":"content-delta","index":0,"delta":{"message":{"content":{"text":"Part"}}}}"#,
            r#"{"type":"message-end","delta":{"finish_reason":"ERROR","error":"internal generation failure"}}"#,
        ])
    }

    fn truncated_stream() -> String {
        sse(&[
            r#"{"type":"message-start","id":"c17f","delta":{"message":{"role":"assistant"}}}"#,
            r#"{"type":"content-delta","index":0,"delta":{"message":{"content":{"text":"Part"}}}}"#,
        ])
    }

    fn run(input: &[u8], include_usage: bool, pieces: &[usize]) -> (Vec<u8>, Result<()>) {
        let (o, im) = (Options::default(), HashMap::new());
        let mut cx = ctx("command-a-03-2025", &o, &im);
        cx.stream = true;
        cx.include_usage = include_usage;
        let mut t = stream_translator(&cx);
        let mut out = BytesMut::new();
        let mut pos = 0;
        let mut i = 0;
        while pos < input.len() {
            let n = pieces
                .get(i % pieces.len().max(1))
                .copied()
                .unwrap_or(input.len())
                .max(1);
            let end = (pos + n).min(input.len());
            if let Err(e) = t.feed(&input[pos..end], &mut out) {
                return (out.to_vec(), Err(e));
            }
            pos = end;
            i += 1;
        }
        let r = t.finish(&mut out);
        (out.to_vec(), r)
    }

    const M: &str = "command-a-03-2025";

    #[test]
    fn text_stream_with_usage() {
        let expected = vec![
            c(
                "c14c",
                M,
                r#"[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]"#,
                true,
            ),
            c(
                "c14c",
                M,
                r#"[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}]"#,
                true,
            ),
            c(
                "c14c",
                M,
                r#"[{"index":0,"delta":{"content":" world"},"logprobs":null,"finish_reason":null}]"#,
                true,
            ),
            c(
                "c14c",
                M,
                r#"[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]"#,
                true,
            ),
            u(
                "c14c",
                M,
                r#"{"prompt_tokens":71,"completion_tokens":2,"total_tokens":73}"#,
            ),
            json!("DONE"),
        ];
        for pieces in [&[usize::MAX][..], &[1], &[9, 2, 40]] {
            let (out, r) = run(text_stream().as_bytes(), true, pieces);
            r.unwrap();
            assert_eq!(events(&out), expected, "pieces={pieces:?}");
        }
        // Without include_usage: no usage keys at all, but the gateway still learns the usage.
        let (o, im) = (Options::default(), HashMap::new());
        let mut cx = ctx(M, &o, &im);
        cx.stream = true;
        let mut t = stream_translator(&cx);
        let mut out = BytesMut::new();
        t.feed(text_stream().as_bytes(), &mut out).unwrap();
        t.finish(&mut out).unwrap();
        assert!(!String::from_utf8_lossy(&out).contains("usage"));
        assert_eq!(t.usage().map(|u| u.total_tokens), Some(73));
        assert!(t.committed());
    }

    #[test]
    fn tool_stream_indices_and_empty_arguments() {
        let expected = vec![
            c(
                "c15d",
                M,
                r#"[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]"#,
                false,
            ),
            c(
                "c15d",
                M,
                r#"[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"get_weather_abc","type":"function","function":{"name":"get_weather","arguments":""}}]},"logprobs":null,"finish_reason":null}]"#,
                false,
            ),
            c(
                "c15d",
                M,
                r#"[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]},"logprobs":null,"finish_reason":null}]"#,
                false,
            ),
            c(
                "c15d",
                M,
                r#"[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]},"logprobs":null,"finish_reason":null}]"#,
                false,
            ),
            c(
                "c15d",
                M,
                r#"[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"now_1","type":"function","function":{"name":"now","arguments":""}}]},"logprobs":null,"finish_reason":null}]"#,
                false,
            ),
            c(
                "c15d",
                M,
                r#"[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{}"}}]},"logprobs":null,"finish_reason":null}]"#,
                false,
            ),
            c(
                "c15d",
                M,
                r#"[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}]"#,
                false,
            ),
            json!("DONE"),
        ];
        let (out, r) = run(tool_stream().as_bytes(), false, &[usize::MAX]);
        r.unwrap();
        assert_eq!(events(&out), expected);
    }

    #[test]
    fn stream_failures() {
        let (out, r) = run(error_stream().as_bytes(), true, &[usize::MAX]);
        let e = r.unwrap_err();
        assert_eq!((e.status, e.message.as_str()), (502, "internal generation failure"));
        let ev = events(&out);
        assert_eq!(ev.len(), 2);
        assert!(ev.iter().all(|e| e["choices"][0]["finish_reason"].is_null()));
        let (_, r) = run(truncated_stream().as_bytes(), false, &[usize::MAX]);
        assert_eq!(r.unwrap_err().code.as_deref(), Some("upstream_stream_truncated"));
        let (_, r) = run(b"", false, &[usize::MAX]);
        assert_eq!(r.unwrap_err().status, 502);
        let (_, r) = run(b"event: message-start\ndata: {oops\n\n", false, &[usize::MAX]);
        assert_eq!(r.unwrap_err().code.as_deref(), Some("upstream_error"));
        // A trailing [DONE] is tolerated.
        let with_done = format!("{}data: [DONE]\n\n", text_stream());
        let (out, r) = run(with_done.as_bytes(), false, &[usize::MAX]);
        r.unwrap();
        assert_eq!(events(&out).len(), 5);
        // Nothing but the role before an error: not committed.
        let (o, im) = (Options::default(), HashMap::new());
        let mut cx = ctx(M, &o, &im);
        cx.stream = true;
        let mut t = stream_translator(&cx);
        let mut out = BytesMut::new();
        t.feed(
            sse(&[
                r#"{"type":"message-start","id":"z","delta":{}}"#,
                r#"{"type":"message-end","delta":{"finish_reason":"TIMEOUT"}}"#,
            ])
            .as_bytes(),
            &mut out,
        )
        .map(|_| ())
        .unwrap_err();
        assert!(!t.committed());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn any_split_gives_the_same_bytes(which in 0usize..4, cuts in proptest::collection::vec(1usize..40, 0..40)) {
            let input = [text_stream(), tool_stream(), error_stream(), truncated_stream()][which].clone();
            let (whole, whole_r) = run(input.as_bytes(), true, &[usize::MAX]);
            let (split, split_r) = run(input.as_bytes(), true, &cuts);
            prop_assert_eq!(whole, split);
            prop_assert_eq!(whole_r, split_r);
        }
    }

    // --- errors ----------------------------------------------------------------------------

    #[test]
    fn error_table() {
        let h = http::HeaderMap::new();
        let e = |status: u16, body: &str| translate_error(status, &h, body.as_bytes(), 0);
        let x = e(401, r#"{"id":"1","message":"invalid api token"}"#);
        assert_eq!(
            (x.status, x.kind, x.code.as_deref()),
            (401, "authentication_error", Some("invalid_api_key"))
        );
        let x = e(498, r#"{"message":"invalid api token"}"#);
        assert_eq!(x.status, 401);
        let x = e(498, r#"{"message":"blocked input: please adjust your prompt"}"#);
        assert_eq!((x.status, x.code.as_deref()), (400, Some("content_filter")));
        let x = e(499, r#"{"message":"request cancelled"}"#);
        assert_eq!((x.status, x.kind), (408, "timeout_error"));
        let x = e(
            422,
            r#"{"message":"invalid request: message must be at least 1 token long"}"#,
        );
        assert_eq!((x.status, x.kind), (400, "invalid_request_error"));
        let x = e(
            400,
            r#"{"message":"too many tokens: total number of tokens in the prompt cannot exceed 256000"}"#,
        );
        assert_eq!(x.code.as_deref(), Some("context_length_exceeded"));
        let x = e(
            429,
            r#"{"message":"You are using a Trial key, which is limited to 1000 API calls / month."}"#,
        );
        assert_eq!((x.status, x.kind), (429, "insufficient_quota"));
        let x = e(
            429,
            r#"{"message":"You are using a Trial key, which is limited to 20 API calls / minute."}"#,
        );
        assert_eq!((x.status, x.kind), (429, "rate_limit_error"));
        let x = e(402, r#"{"message":"Please add a payment method"}"#);
        assert_eq!(x.kind, "insufficient_quota");
        let x = e(503, "<html>unavailable</html>");
        assert_eq!((x.status, x.message.as_str()), (503, "cohere returned HTTP 503"));
        let x = e(501, "not implemented");
        assert_eq!((x.status, x.message.as_str()), (500, "not implemented"));
        let x = e(504, "");
        assert_eq!(x.kind, "timeout_error");
    }

    // --- embeddings ------------------------------------------------------------------------

    #[test]
    fn embeddings() {
        let (o, im) = (Options::default(), HashMap::new());
        let mut cx = ctx("embed-v4.0", &o, &im);
        cx.endpoint = Endpoint::Embeddings;
        cx.client_model = "cohere/embed-v4.0";
        let r = build_request(br#"{"model":"cohere/embed-v4.0","input":["hello","world"],"dimensions":1024,"encoding_format":"float","user":"u"}"#, &cx).unwrap();
        assert_eq!(r.path, "/v2/embed");
        assert_eq!(
            body(&r),
            j(
                r#"{"model":"embed-v4.0","texts":["hello","world"],"input_type":"search_document","embedding_types":["float"],"output_dimension":1024}"#
            )
        );
        assert_eq!(strs(&r.notes.dropped), ["user"]);
        let r = build_request(br#"{"input":"q","input_type":"search_query"}"#, &cx).unwrap();
        assert_eq!(body(&r)["texts"], j(r#"["q"]"#));
        assert_eq!(body(&r)["input_type"], "search_query");
        let custom = Options {
            default_embed_input_type: "classification".into(),
            ..Options::default()
        };
        let mut cx2 = ctx("embed-v4.0", &custom, &im);
        cx2.endpoint = Endpoint::Embeddings;
        assert_eq!(
            body(&build_request(br#"{"input":"q"}"#, &cx2).unwrap())["input_type"],
            "classification"
        );
        assert_eq!(
            build_request(br#"{"input":[1,2]}"#, &cx).unwrap_err().param.as_deref(),
            Some("input")
        );
        let many: Vec<String> = (0..97).map(|i| format!("t{i}")).collect();
        let big = json!({"input": many}).to_string();
        assert_eq!(
            build_request(big.as_bytes(), &cx).unwrap_err().param.as_deref(),
            Some("input")
        );

        let up = br#"{"id":"e1","embeddings":{"float":[[0.5,1.5],[-1.0,0.25]]},"texts":["hello","world"],
  "meta":{"api_version":{"version":"2"},"billed_units":{"input_tokens":2}},"response_type":"embeddings_by_type"}"#;
        let t = translate_response(up, &cx).unwrap();
        let expected = j(r#"{"object":"list","data":[
  {"object":"embedding","index":0,"embedding":[0.5,1.5]},
  {"object":"embedding","index":1,"embedding":[-1.0,0.25]}],
 "model":"cohere/embed-v4.0","usage":{"prompt_tokens":2,"total_tokens":2}}"#);
        assert_eq!(serde_json::from_slice::<Value>(&t.body).unwrap(), expected);
        assert_eq!(t.usage.map(|u| u.prompt_tokens), Some(2));
        cx.embed_base64 = true;
        let t = translate_response(up, &cx).unwrap();
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        let b = base64::engine::general_purpose::STANDARD
            .decode(v["data"][1]["embedding"].as_str().unwrap())
            .unwrap();
        let mut want = (-1.0f32).to_le_bytes().to_vec();
        want.extend_from_slice(&0.25f32.to_le_bytes());
        assert_eq!(b, want);
        assert!(translate_response(br#"{"embeddings":{}}"#, &cx).is_err());
    }

    #[test]
    fn models() {
        let body = br#"{"models":[
  {"name":"command-a-03-2025","endpoints":["chat","generate"]},
  {"name":"embed-v4.0","endpoints":["embed"]},
  {"name":"rerank-v3.5","endpoints":["rerank"]}],"next_page_token":"x"}"#;
        assert_eq!(parse_models(body).unwrap(), ["command-a-03-2025", "embed-v4.0"]);
        assert!(models_path().starts_with("/v1/models"));
        assert!(parse_models(b"nope").is_err());
    }
}

//! Google Gemini (Generative Language API, `v1beta`): OpenAI chat and embeddings requests
//! become `generateContent` / `streamGenerateContent?alt=sse` / `embedContent` /
//! `batchEmbedContents` calls, and the answers come back in OpenAI's shapes (`providers.md` §3).
//!
//! The end of this file holds the few helpers Cohere's module shares (ordered request fields,
//! instruction text, stop lists, tool_choice, embeddings output, error text).

use bytes::{Bytes, BytesMut};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{json, Map, Value};

use super::util::{self, ChunkEmitter};
use super::{Ctx, Endpoint, Notes, StreamTranslator, Translated, UpstreamRequest, Usage};
use crate::error::{GatewayError, Result};
use crate::sse;

/// Gemini accepts at most this many stop sequences.
const MAX_STOP: usize = 5;
/// `batchEmbedContents` takes at most this many requests per call.
const MAX_EMBED_BATCH: usize = 100;
/// Google's documented placeholder for replayed function calls that carry no signature.
const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";

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

/// The resource name of a model: bare ids live under `models/`, tuned models keep their own.
fn resource(model: &str) -> String {
    if model.contains('/') {
        model.to_string()
    } else {
        format!("models/{model}")
    }
}

fn is_gemini3(model: &str) -> bool {
    model.trim_start_matches("models/").starts_with("gemini-3")
}

fn build_chat(fields: &Fields, ctx: &Ctx) -> Result<UpstreamRequest> {
    let strict = ctx.options.strict;
    let provider = ctx.provider;
    let mut notes = Notes::default();
    let mut gen = Map::new();
    let mut messages = None;
    let mut tools = None;
    let mut tool_choice = None;
    let mut logprobs = false;
    let mut top_logprobs = None;
    let has_max_completion = fields.get("max_completion_tokens").is_some();

    for (k, v) in &fields.0 {
        if v.is_null() {
            continue;
        }
        match k.as_str() {
            "model" | "stream" | "stream_options" | GATEWAY_FIELD => {}
            "messages" => messages = Some(v),
            "max_completion_tokens" => {
                gen.insert("maxOutputTokens".into(), v.clone());
            }
            "max_tokens" => {
                if !has_max_completion {
                    gen.insert("maxOutputTokens".into(), v.clone());
                }
            }
            "temperature" => {
                gen.insert("temperature".into(), v.clone());
            }
            "top_p" => {
                gen.insert("topP".into(), v.clone());
            }
            "top_k" => {
                gen.insert("topK".into(), v.clone());
            }
            "seed" => {
                gen.insert("seed".into(), v.clone());
            }
            "stop" => {
                let stops = stop_list(v, MAX_STOP, &mut notes, strict, provider)?;
                if !stops.is_empty() {
                    gen.insert("stopSequences".into(), json!(stops));
                }
            }
            "n" => {
                let n = v
                    .as_u64()
                    .ok_or_else(|| GatewayError::invalid_request("n must be a positive integer").with_param("n"))?;
                if n > 1 {
                    if ctx.stream {
                        return Err(GatewayError::unsupported_param(
                            "n",
                            format!("n > 1 is not supported by provider {provider} when streaming"),
                        ));
                    }
                    gen.insert("candidateCount".into(), json!(n));
                }
            }
            // Most Gemini models answer 400 "Penalty is not enabled" to any non-zero value.
            "presence_penalty" | "frequency_penalty" => {
                if v.as_f64() != Some(0.0) {
                    notes.drop_or_reject(strict, k, provider)?;
                }
            }
            "logprobs" => {
                if v.as_bool() == Some(true) {
                    if ctx.stream {
                        return Err(unsupported("logprobs", provider));
                    }
                    logprobs = true;
                }
            }
            "top_logprobs" => top_logprobs = Some(v),
            "logit_bias" => reject_logit_bias(v, provider)?,
            "response_format" => response_format(v, &mut gen)?,
            "tools" => tools = Some(v),
            "tool_choice" => tool_choice = Some(v),
            "reasoning_effort" => {
                let effort = v.as_str().unwrap_or_default();
                gen.insert("thinkingConfig".into(), thinking_config(effort, ctx.upstream_model));
            }
            "modalities" => reject_audio_modalities(v, provider)?,
            "audio" | "functions" | "function_call" => return Err(unsupported(k, provider)),
            // user, parallel_tool_calls, metadata, store, service_tier, vendor fields: Gemini
            // rejects unknown fields, and none of these changes the answer's shape.
            _ => notes.drop_or_reject(strict, k, provider)?,
        }
    }
    if logprobs {
        gen.insert("responseLogprobs".into(), json!(true));
        if let Some(n) = top_logprobs.and_then(Value::as_u64).filter(|n| *n > 0) {
            gen.insert("logprobs".into(), json!(n));
        }
    }

    let messages =
        messages.ok_or_else(|| GatewayError::invalid_request("messages is required").with_param("messages"))?;
    let (system, contents) = convert_messages(messages, ctx, &mut notes)?;
    if contents.is_empty() {
        return Err(GatewayError::invalid_request(format!(
            "Provider {provider} needs at least one user or assistant message"
        ))
        .with_param("messages"));
    }

    let mut body = Map::new();
    if !system.is_empty() {
        body.insert("systemInstruction".into(), json!({"parts": system}));
    }
    body.insert("contents".into(), Value::Array(contents));
    let choice = tool_choice.map(parse_tool_choice).transpose()?;
    if let Some(tools) = tools {
        let only = match &choice {
            Some(ToolChoice::Allowed { required: false, names }) => Some(names.as_slice()),
            _ => None,
        };
        let decls = function_declarations(tools, only)?;
        if !decls.is_empty() {
            body.insert("tools".into(), json!([{"functionDeclarations": decls}]));
        }
    }
    if let Some(choice) = choice {
        let config = match choice {
            ToolChoice::Auto => json!({"mode": "AUTO"}),
            ToolChoice::None => json!({"mode": "NONE"}),
            ToolChoice::Required => json!({"mode": "ANY"}),
            ToolChoice::Named(name) => {
                json!({"mode": "ANY", "allowedFunctionNames": [encode_name(&name)]})
            }
            ToolChoice::Allowed { required: true, names } => json!({"mode": "ANY",
                "allowedFunctionNames": names.iter().map(|n| encode_name(n)).collect::<Vec<_>>()}),
            // Emulated by filtering the declarations above.
            ToolChoice::Allowed { required: false, .. } => json!({"mode": "AUTO"}),
        };
        body.insert("toolConfig".into(), json!({"functionCallingConfig": config}));
    }
    if !gen.is_empty() {
        body.insert("generationConfig".into(), Value::Object(gen));
    }

    let model = resource(ctx.upstream_model);
    let path = if ctx.stream {
        format!("/v1beta/{model}:streamGenerateContent?alt=sse")
    } else {
        format!("/v1beta/{model}:generateContent")
    };
    Ok(UpstreamRequest {
        method: "POST",
        path,
        body: to_bytes(&Value::Object(body))?.into(),
        headers: Vec::new(),
        notes,
    })
}

fn response_format(v: &Value, gen: &mut Map<String, Value>) -> Result<()> {
    match v["type"].as_str() {
        Some("text") => {}
        Some("json_object") => {
            gen.insert("responseMimeType".into(), json!("application/json"));
        }
        Some("json_schema") => {
            gen.insert("responseMimeType".into(), json!("application/json"));
            if let Some(schema) = v["json_schema"].get("schema").filter(|s| !s.is_null()) {
                gen.insert("responseJsonSchema".into(), schema.clone());
            }
        }
        _ => {
            return Err(
                GatewayError::invalid_request("response_format.type must be text, json_object or json_schema")
                    .with_param("response_format.type"),
            )
        }
    }
    Ok(())
}

/// `reasoning_effort` → `thinkingConfig`: Gemini 3 takes a level, 2.5 a token budget.
fn thinking_config(effort: &str, model: &str) -> Value {
    if is_gemini3(model) {
        let level = match effort {
            "none" | "minimal" | "low" => "low",
            "medium" if model.contains("flash") => "medium",
            _ => "high",
        };
        return json!({"thinkingLevel": level});
    }
    // 2.5 Pro cannot turn thinking off; its smallest budget is 128.
    let off = if model.contains("pro") { 128 } else { 0 };
    let budget = match effort {
        "none" | "minimal" => off,
        "low" => 1024,
        "medium" => 8192,
        _ => 24576,
    };
    json!({"thinkingBudget": budget})
}

/// OpenAI function names may start with a digit or `-`, Gemini's may not. Such names (after
/// any leading underscores) get one more leading `_`; `decode_name` removes it. The mapping is
/// a bijection, so answers map back without remembering the request.
fn needs_escape(name: &str) -> bool {
    name.trim_start_matches('_')
        .chars()
        .next()
        .is_some_and(|c| !c.is_ascii_alphabetic())
}

fn encode_name(name: &str) -> String {
    if needs_escape(name) {
        format!("_{name}")
    } else {
        name.to_string()
    }
}

fn decode_name(name: &str) -> String {
    match name.strip_prefix('_') {
        Some(rest) if needs_escape(name) => rest.to_string(),
        _ => name.to_string(),
    }
}

fn function_declarations(tools: &Value, only: Option<&[String]>) -> Result<Vec<Value>> {
    let list = tools
        .as_array()
        .ok_or_else(|| GatewayError::invalid_request("tools must be an array").with_param("tools"))?;
    let mut decls = Vec::with_capacity(list.len());
    for (k, t) in list.iter().enumerate() {
        if t["type"].as_str().unwrap_or("function") != "function" {
            return Err(GatewayError::unsupported_param(
                &format!("tools[{k}].type"),
                "Only function tools are supported by provider gemini",
            ));
        }
        let f = &t["function"];
        let name = f["name"].as_str().filter(|n| !n.is_empty()).ok_or_else(|| {
            GatewayError::invalid_request("tool function name is required")
                .with_param(format!("tools[{k}].function.name"))
        })?;
        if only.is_some_and(|names| !names.iter().any(|n| n == name)) {
            continue;
        }
        let mut decl = Map::new();
        decl.insert("name".into(), json!(encode_name(name)));
        if let Some(d) = f["description"].as_str().filter(|d| !d.is_empty()) {
            decl.insert("description".into(), json!(d));
        }
        // Full JSON Schema goes to `parametersJsonSchema` untouched (§3.5); the legacy
        // `parameters` field would reject additionalProperties, $schema, const, ...
        if let Some(p) = f.get("parameters").filter(|p| p.is_object()) {
            decl.insert("parametersJsonSchema".into(), p.clone());
        }
        decls.push(Value::Object(decl));
    }
    Ok(decls)
}

/// OpenAI messages → (`systemInstruction` parts, `contents`), §3.3.
fn convert_messages(messages: &Value, ctx: &Ctx, notes: &mut Notes) -> Result<(Vec<Value>, Vec<Value>)> {
    let list = messages
        .as_array()
        .ok_or_else(|| GatewayError::invalid_request("messages must be an array").with_param("messages"))?;
    let gemini3 = is_gemini3(ctx.upstream_model);
    let mut system = Vec::new();
    let mut contents: Vec<Value> = Vec::new();
    let mut seen_turn = false;
    let mut i = 0;
    while i < list.len() {
        let m = &list[i];
        let role = message_role(m, i)?;
        match role {
            "system" | "developer" => {
                if seen_turn {
                    notes.warn(HOISTED);
                }
                for t in instruction_texts(&m["content"], i)? {
                    system.push(json!({"text": t}));
                }
            }
            "user" => {
                seen_turn = true;
                let parts = user_parts(&m["content"], i, ctx)?;
                if parts.is_empty() {
                    return Err(empty_message(i));
                }
                push_content(&mut contents, "user", parts);
            }
            "assistant" => {
                seen_turn = true;
                let parts = model_parts(m, i, gemini3)?;
                if !parts.is_empty() {
                    push_content(&mut contents, "model", parts);
                }
            }
            "tool" => {
                seen_turn = true;
                let mut end = i;
                let mut responses = Vec::new();
                while end < list.len() && list[end]["role"] == "tool" {
                    responses.push(function_response(list, end)?);
                    end += 1;
                }
                // Gemini pairs results with calls by position: keep the calls' order.
                responses.sort_by_key(|(order, _)| *order);
                push_content(&mut contents, "user", responses.into_iter().map(|(_, p)| p).collect());
                i = end;
                continue;
            }
            other => {
                return Err(
                    GatewayError::invalid_request(format!("Unsupported message role {other}"))
                        .with_param(format!("messages[{i}].role")),
                )
            }
        }
        i += 1;
    }
    Ok((system, contents))
}

/// Append parts to the last content when it has the same role (Gemini wants alternation).
fn push_content(contents: &mut Vec<Value>, role: &str, parts: Vec<Value>) {
    if let Some(last) = contents.last_mut() {
        if last["role"] == role {
            if let Some(existing) = last["parts"].as_array_mut() {
                existing.extend(parts);
                return;
            }
        }
    }
    contents.push(json!({"role": role, "parts": parts}));
}

fn user_parts(content: &Value, i: usize, ctx: &Ctx) -> Result<Vec<Value>> {
    let mut parts = Vec::new();
    match content {
        Value::Null => {}
        Value::String(s) => {
            if !s.is_empty() {
                parts.push(json!({"text": s}));
            }
        }
        Value::Array(list) => {
            for (j, p) in list.iter().enumerate() {
                match p["type"].as_str().unwrap_or_default() {
                    "text" => {
                        if let Some(t) = p["text"].as_str().filter(|t| !t.is_empty()) {
                            parts.push(json!({"text": t}));
                        }
                    }
                    "image_url" => parts.push(image_part(p, i, j, ctx)?),
                    "input_audio" => {
                        let a = &p["input_audio"];
                        let data = a["data"].as_str().unwrap_or_default();
                        let mime = match a["format"].as_str().unwrap_or("wav") {
                            "mp3" => "audio/mp3".to_string(),
                            other => format!("audio/{other}"),
                        };
                        parts.push(json!({"inlineData": {"mimeType": mime, "data": data}}));
                    }
                    "file" => parts.push(file_part(&p["file"], i, j)?),
                    other => {
                        return Err(GatewayError::invalid_request(format!(
                            "Content part type {other:?} is not supported by provider {}",
                            ctx.provider
                        ))
                        .with_param(format!("messages[{i}].content[{j}].type")))
                    }
                }
            }
        }
        _ => return Err(bad_content(i)),
    }
    Ok(parts)
}

const IMAGE_TYPES: &[&str] = &["image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"];

fn image_part(p: &Value, i: usize, j: usize, ctx: &Ctx) -> Result<Value> {
    let param = format!("messages[{i}].content[{j}].image_url.url");
    let url = match &p["image_url"] {
        Value::String(s) => s.as_str(),
        v => v["url"].as_str().unwrap_or_default(),
    };
    let (mime, data) = if url.starts_with("data:") {
        util::parse_data_url(url).ok_or_else(|| {
            GatewayError::invalid_request("Image data URLs must be base64 encoded (data:<mime>;base64,...)")
                .with_param(param.clone())
        })?
    } else if url.starts_with("http://") || url.starts_with("https://") {
        // Gemini cannot fetch web URLs (fileData takes Files API and YouTube URIs only); the
        // gateway fetches them beforehand, or refuses.
        ctx.images.get(url).cloned().ok_or_else(|| {
            GatewayError::invalid_request(format!(
                "Provider {} accepts only inline images, and fetching remote image URLs is disabled",
                ctx.provider
            ))
            .with_param(param.clone())
            .with_code("unsupported_image_url")
        })?
    } else {
        return Err(GatewayError::invalid_request("image_url.url must be a data: or http(s) URL").with_param(param));
    };
    let mime = match mime.to_ascii_lowercase().as_str() {
        "image/jpg" => "image/jpeg".to_string(),
        m => m.to_string(),
    };
    if !IMAGE_TYPES.contains(&mime.as_str()) {
        return Err(GatewayError::invalid_request(format!(
            "Unsupported image media type {mime} for provider {} (allowed: {})",
            ctx.provider,
            IMAGE_TYPES.join(", ")
        ))
        .with_param(param)
        .with_code("unsupported_image_type"));
    }
    Ok(json!({"inlineData": {"mimeType": mime, "data": data}}))
}

/// `{"type":"file","file":{"file_data":"data:application/pdf;base64,...","filename":...}}`.
fn file_part(f: &Value, i: usize, j: usize) -> Result<Value> {
    let param = format!("messages[{i}].content[{j}].file");
    let data = f["file_data"].as_str().ok_or_else(|| {
        GatewayError::unsupported_param(&param, "Only inline files (file_data) are supported by provider gemini")
    })?;
    let (mime, b64) = match util::parse_data_url(data) {
        Some(parsed) => parsed,
        None if f["filename"]
            .as_str()
            .is_some_and(|n| n.to_ascii_lowercase().ends_with(".pdf")) =>
        {
            ("application/pdf".to_string(), data.to_string())
        }
        None => {
            return Err(GatewayError::invalid_request("file_data must be a base64 data URL").with_param(param));
        }
    };
    Ok(json!({"inlineData": {"mimeType": mime, "data": b64}}))
}

fn model_parts(m: &Value, i: usize, gemini3: bool) -> Result<Vec<Value>> {
    let mut parts = Vec::new();
    let text = assistant_text(&m["content"], i)?;
    if !text.is_empty() {
        parts.push(json!({"text": text}));
    }
    if let Some(calls) = m["tool_calls"].as_array() {
        for (j, c) in calls.iter().enumerate() {
            let f = &c["function"];
            let name = f["name"].as_str().filter(|n| !n.is_empty()).ok_or_else(|| {
                GatewayError::invalid_request("tool call function name is required")
                    .with_param(format!("messages[{i}].tool_calls[{j}].function.name"))
            })?;
            let args = parse_arguments(&f["arguments"], i, j)?;
            let mut call = Map::new();
            call.insert("name".into(), json!(encode_name(name)));
            call.insert("args".into(), args);
            if let Some(id) = c["id"].as_str().filter(|id| is_gemini_id(id)) {
                call.insert("id".into(), json!(id));
            }
            let mut part = Map::new();
            part.insert("functionCall".into(), Value::Object(call));
            match c["extra_content"]["google"]["thought_signature"].as_str() {
                Some(sig) => {
                    part.insert("thoughtSignature".into(), json!(sig));
                }
                // Gemini 3 refuses replayed calls without a signature; the first call of a
                // turn carries it.
                None if gemini3 && j == 0 => {
                    part.insert("thoughtSignature".into(), json!(SKIP_SIGNATURE));
                }
                None => {}
            }
            parts.push(Value::Object(part));
        }
    }
    Ok(parts)
}

/// Ids the gateway synthesized start with `call_`; anything else came from Gemini.
fn is_gemini_id(id: &str) -> bool {
    !id.is_empty() && !id.starts_with("call_")
}

/// Tool-call arguments (a JSON string, `""` meaning none) as the object Gemini wants.
fn parse_arguments(args: &Value, i: usize, j: usize) -> Result<Value> {
    let param = || format!("messages[{i}].tool_calls[{j}].function.arguments");
    let parsed = match args {
        Value::Null => return Ok(json!({})),
        Value::String(s) if s.trim().is_empty() => return Ok(json!({})),
        Value::String(s) => serde_json::from_str::<Value>(s).map_err(|e| {
            GatewayError::invalid_request(format!("Tool call arguments are not valid JSON: {e}")).with_param(param())
        })?,
        other => other.clone(),
    };
    if !parsed.is_object() {
        return Err(GatewayError::invalid_request("Tool call arguments must be a JSON object").with_param(param()));
    }
    Ok(parsed)
}

/// One `tool` message → (ordering key, `functionResponse` part). The function name comes from
/// the earlier assistant message that made the call (stateless, §0.3).
fn function_response(list: &[Value], i: usize) -> Result<((usize, usize), Value)> {
    let m = &list[i];
    let id = m["tool_call_id"].as_str().unwrap_or_default();
    let found = list[..i].iter().enumerate().rev().find_map(|(a, prev)| {
        if prev["role"] != "assistant" {
            return None;
        }
        let calls = prev["tool_calls"].as_array()?;
        calls
            .iter()
            .position(|c| c["id"].as_str() == Some(id))
            .map(|j| (a, j, &calls[j]))
    });
    let Some((a, j, call)) = found else {
        return Err(GatewayError::invalid_request(format!(
            "tool message refers to tool_call_id {id:?}, which no earlier assistant message called"
        ))
        .with_param(format!("messages[{i}].tool_call_id")));
    };
    let name = call["function"]["name"].as_str().unwrap_or_default();
    let text = match &m["content"] {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(parts) => {
            let mut t = String::new();
            for (k, p) in parts.iter().enumerate() {
                match p["type"].as_str() {
                    Some("text") => t.push_str(p["text"].as_str().unwrap_or_default()),
                    _ => {
                        return Err(GatewayError::invalid_request("tool message content must be text")
                            .with_param(format!("messages[{i}].content[{k}]")))
                    }
                }
            }
            t
        }
        _ => return Err(bad_content(i)),
    };
    // Gemini wants an object: a JSON object result is used as-is, anything else is `output`.
    let response = match serde_json::from_str::<Value>(&text) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({"output": text}),
    };
    let mut fr = Map::new();
    fr.insert("name".into(), json!(encode_name(name)));
    fr.insert("response".into(), response);
    if is_gemini_id(id) {
        fr.insert("id".into(), json!(id));
    }
    Ok(((a, j), json!({"functionResponse": fr})))
}

fn build_embeddings(fields: &Fields, ctx: &Ctx) -> Result<UpstreamRequest> {
    let strict = ctx.options.strict;
    let mut notes = Notes::default();
    let mut task_type = None;
    let mut dims = None;
    for (k, v) in &fields.0 {
        if v.is_null() {
            continue;
        }
        match k.as_str() {
            "model" | "input" | "encoding_format" | GATEWAY_FIELD => {}
            "dimensions" => dims = Some(v.clone()),
            "task_type" | "taskType" => {
                let t = v.as_str().ok_or_else(|| {
                    GatewayError::invalid_request("task_type must be a string").with_param(k.as_str())
                })?;
                task_type = Some(t.to_ascii_uppercase());
            }
            _ => notes.drop_or_reject(strict, k, ctx.provider)?,
        }
    }
    let (inputs, single) = embedding_inputs(fields.get("input"), ctx.provider)?;
    if inputs.len() > MAX_EMBED_BATCH {
        return Err(GatewayError::invalid_request(format!(
            "Provider {} accepts at most {MAX_EMBED_BATCH} inputs per embeddings request",
            ctx.provider
        ))
        .with_param("input"));
    }
    let model = resource(ctx.upstream_model);
    let request = |text: &str, with_model: bool| {
        let mut r = Map::new();
        if with_model {
            r.insert("model".into(), json!(model));
        }
        r.insert("content".into(), json!({"parts": [{"text": text}]}));
        if let Some(t) = &task_type {
            r.insert("taskType".into(), json!(t));
        }
        if let Some(d) = &dims {
            r.insert("outputDimensionality".into(), d.clone());
        }
        Value::Object(r)
    };
    let (path, body) = if single {
        (format!("/v1beta/{model}:embedContent"), request(&inputs[0], false))
    } else {
        let requests: Vec<Value> = inputs.iter().map(|t| request(t, true)).collect();
        (
            format!("/v1beta/{model}:batchEmbedContents"),
            json!({"requests": requests}),
        )
    };
    Ok(UpstreamRequest {
        method: "POST",
        path,
        body: to_bytes(&body)?.into(),
        headers: Vec::new(),
        notes,
    })
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

pub fn translate_response(body: &[u8], ctx: &Ctx) -> Result<Translated> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| GatewayError::bad_upstream(format!("{} returned invalid JSON: {e}", ctx.provider)))?;
    if let Some(err) = error_object(&v) {
        return Err(error_from_google(0, err, body));
    }
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

fn translate_chat(v: &Value, ctx: &Ctx) -> Result<Translated> {
    let id = v["responseId"]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or(ctx.fallback_id);
    let mut choices = Vec::new();
    let mut tool_seq = 0u64;
    match v["candidates"].as_array().filter(|c| !c.is_empty()) {
        Some(cands) => {
            for (pos, c) in cands.iter().enumerate() {
                choices.push(candidate_choice(c, pos, ctx.id_seed, &mut tool_seq));
            }
        }
        None if v["promptFeedback"]["blockReason"].is_string() => {
            choices.push(json!({"index": 0, "message": {"role": "assistant", "content": null},
                                "logprobs": null, "finish_reason": "content_filter"}));
        }
        None => {
            return Err(GatewayError::bad_upstream(format!(
                "{} returned no candidates",
                ctx.provider
            )))
        }
    }
    let meta = v.get("usageMetadata").filter(|m| m.is_object());
    let (usage_value, usage) = usage_of(meta.unwrap_or(&Value::Null));
    let out = json!({
        "id": id,
        "object": "chat.completion",
        "created": ctx.created,
        "model": ctx.client_model,
        "choices": choices,
        "usage": usage_value,
    });
    Ok(Translated {
        body: to_bytes(&out)?,
        usage: meta.map(|_| usage),
        upstream_model: v["modelVersion"].as_str().map(str::to_string),
    })
}

fn candidate_choice(c: &Value, pos: usize, seed: u64, tool_seq: &mut u64) -> Value {
    let mut text = String::new();
    let mut calls = Vec::new();
    for part in c["content"]["parts"].as_array().into_iter().flatten() {
        if let Some(t) = part["text"].as_str() {
            if part["thought"].as_bool() != Some(true) {
                text.push_str(t);
            }
        } else if part["functionCall"].is_object() {
            calls.push(tool_call(part, seed, tool_seq));
        }
    }
    let reason = map_finish(c["finishReason"].as_str(), !calls.is_empty());
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
    let index = c["index"].as_u64().unwrap_or(pos as u64);
    let logprobs = c.get("logprobsResult").map(logprobs_of).unwrap_or(Value::Null);
    json!({"index": index, "message": message, "logprobs": logprobs, "finish_reason": reason})
}

/// A `functionCall` part as an OpenAI tool call; the thought signature rides along in
/// `extra_content.google` (the convention of Google's own compatibility layer) so clients can
/// echo it back.
fn tool_call(part: &Value, seed: u64, tool_seq: &mut u64) -> Value {
    let fc = &part["functionCall"];
    let id = match fc["id"].as_str().filter(|s| !s.is_empty()) {
        Some(id) => id.to_string(),
        None => {
            let id = util::gen_id("call_", seed.wrapping_add(*tool_seq));
            *tool_seq += 1;
            id
        }
    };
    let name = decode_name(fc["name"].as_str().unwrap_or_default());
    let mut call = json!({"id": id, "type": "function",
                          "function": {"name": name, "arguments": util::arguments_string(fc.get("args"))}});
    if let Some(sig) = part["thoughtSignature"].as_str() {
        call["extra_content"] = json!({"google": {"thought_signature": sig}});
    }
    call
}

/// §3.7: any function call with STOP (or no reason) means `tool_calls`.
fn map_finish(reason: Option<&str>, saw_call: bool) -> &'static str {
    match reason {
        Some("MAX_TOKENS") => "length",
        Some(
            "SAFETY"
            | "RECITATION"
            | "BLOCKLIST"
            | "PROHIBITED_CONTENT"
            | "SPII"
            | "IMAGE_SAFETY"
            | "IMAGE_PROHIBITED_CONTENT"
            | "IMAGE_RECITATION"
            | "LANGUAGE",
        ) => "content_filter",
        Some("STOP") | None if saw_call => "tool_calls",
        _ => "stop",
    }
}

/// `usageMetadata` → OpenAI usage (§3.7); details only when Gemini reported them.
fn usage_of(meta: &Value) -> (Value, Usage) {
    let n = |k: &str| meta[k].as_u64().unwrap_or(0);
    let prompt = n("promptTokenCount") + n("toolUsePromptTokenCount");
    let completion = n("candidatesTokenCount") + n("thoughtsTokenCount");
    let total = meta["totalTokenCount"].as_u64().unwrap_or(prompt + completion);
    let usage = Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: total,
    };
    let mut v = util::usage_json(&usage);
    if let Some(cached) = meta["cachedContentTokenCount"].as_u64() {
        v["prompt_tokens_details"] = json!({"cached_tokens": cached});
    }
    if let Some(thoughts) = meta["thoughtsTokenCount"].as_u64() {
        v["completion_tokens_details"] = json!({"reasoning_tokens": thoughts});
    }
    (v, usage)
}

/// `logprobsResult` → OpenAI `logprobs.content`.
fn logprobs_of(r: &Value) -> Value {
    let entry = |c: &Value| {
        let token = c["token"].as_str().unwrap_or_default();
        json!({"token": token, "logprob": c["logProbability"].as_f64().unwrap_or(0.0), "bytes": token.as_bytes()})
    };
    let top = r["topCandidates"].as_array();
    let content: Vec<Value> = r["chosenCandidates"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| {
            let mut e = entry(c);
            let alts: Vec<Value> = top
                .and_then(|t| t.get(i))
                .and_then(|t| t["candidates"].as_array())
                .map(|a| a.iter().map(entry).collect())
                .unwrap_or_default();
            e["top_logprobs"] = Value::Array(alts);
            e
        })
        .collect();
    json!({"content": content, "refusal": null})
}

fn translate_embeddings(v: &Value, ctx: &Ctx) -> Result<Translated> {
    let vectors: Vec<&Vec<Value>> = if let Some(list) = v["embeddings"].as_array() {
        list.iter().filter_map(|e| e["values"].as_array()).collect()
    } else if let Some(values) = v["embedding"]["values"].as_array() {
        vec![values]
    } else {
        return Err(GatewayError::bad_upstream(format!(
            "{} returned no embeddings",
            ctx.provider
        )));
    };
    // The Gemini API reports no tokens for embeddings; newer versions may.
    let tokens = v["usageMetadata"]["promptTokenCount"].as_u64();
    embeddings_response(&vectors, ctx, tokens)
}

// ---------------------------------------------------------------------------------------------
// Errors (§3.9)
// ---------------------------------------------------------------------------------------------

pub fn translate_error(status: u16, _headers: &http::HeaderMap, body: &[u8], _now: u64) -> GatewayError {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    match error_object(&v) {
        Some(err) => error_from_google(status, err, body),
        None => GatewayError::from_upstream_status(status, plain_message(body, status, "gemini")),
    }
}

/// The `error` object of a Google envelope, also inside the array a non-SSE stream sends.
fn error_object(v: &Value) -> Option<&Value> {
    let v = match v {
        Value::Array(items) => items.first()?,
        other => other,
    };
    v.get("error").filter(|e| !e.is_null())
}

fn rpc_status_http(rpc: &str) -> Option<u16> {
    Some(match rpc {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => 400,
        "UNAUTHENTICATED" => 401,
        "PERMISSION_DENIED" => 403,
        "NOT_FOUND" => 404,
        "ABORTED" | "ALREADY_EXISTS" => 409,
        "RESOURCE_EXHAUSTED" => 429,
        "CANCELLED" => 408,
        "INTERNAL" | "UNKNOWN" | "DATA_LOSS" | "UNIMPLEMENTED" => 500,
        "UNAVAILABLE" => 503,
        "DEADLINE_EXCEEDED" => 504,
        _ => return None,
    })
}

/// A Google error object → the gateway error. `status` is the HTTP status when there is one
/// (0 or 2xx for errors inside a 200 body or a stream, where `code`/`status` decide).
fn error_from_google(status: u16, err: &Value, body: &[u8]) -> GatewayError {
    let rpc = err["status"].as_str().unwrap_or_default();
    let status = if (400..600).contains(&status) {
        status
    } else {
        err["code"]
            .as_u64()
            .and_then(|c| u16::try_from(c).ok())
            .filter(|c| (400..600).contains(c))
            .or_else(|| rpc_status_http(rpc))
            .unwrap_or(502)
    };
    let message = match &err["message"] {
        Value::String(s) if !s.is_empty() => s.clone(),
        Value::String(_) | Value::Null => plain_message(body, status, "gemini"),
        other => other.to_string(),
    };
    let details: &[Value] = err["details"].as_array().map(Vec::as_slice).unwrap_or_default();
    fn of_type<'a>(details: &'a [Value], t: &'static str) -> impl Iterator<Item = &'a Value> {
        details
            .iter()
            .filter(move |d| d["@type"].as_str().is_some_and(|x| x.ends_with(t)))
    }
    let reason = of_type(details, "ErrorInfo")
        .find_map(|d| d["reason"].as_str())
        .unwrap_or_default();
    let retry = of_type(details, "RetryInfo")
        .find_map(|d| d["retryDelay"].as_str())
        .and_then(parse_delay);

    // Gemini answers a bad key with 400 INVALID_ARGUMENT.
    if matches!(reason, "API_KEY_INVALID" | "API_KEY_EXPIRED") {
        return GatewayError::from_upstream_status(401, message);
    }
    if status == 429 || rpc == "RESOURCE_EXHAUSTED" {
        let per_day = of_type(details, "QuotaFailure").any(|d| {
            d["violations"].as_array().into_iter().flatten().any(|q| {
                let id = q["quotaId"].as_str().unwrap_or_default().to_ascii_lowercase();
                id.contains("perday") || id.contains("per_day")
            })
        });
        // "You exceeded your current quota" is also the text of per-minute limits; only a
        // daily quota (or one with no retry hint) does not clear by retrying soon.
        if per_day || (message.contains("exceeded your current quota") && retry.is_none()) {
            return GatewayError::insufficient_quota(429, message);
        }
        return GatewayError::rate_limited(message).with_retry_after(retry);
    }
    let mut e = GatewayError::from_upstream_status(status, message.clone()).with_retry_after(retry);
    if e.status == 400 {
        if message.contains("exceeds the maximum number of tokens") {
            e = e.with_code("context_length_exceeded").with_param("messages");
        } else if rpc == "FAILED_PRECONDITION" {
            e = e.with_code("failed_precondition");
        }
    }
    e
}

/// `"37s"`, `"1.5s"` → whole seconds, rounded up.
fn parse_delay(s: &str) -> Option<u64> {
    let secs: f64 = s.trim().strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| secs.ceil() as u64)
}

// ---------------------------------------------------------------------------------------------
// Streaming (§3.8)
// ---------------------------------------------------------------------------------------------

struct GeminiStream {
    decoder: sse::Decoder,
    emitter: ChunkEmitter,
    provider: String,
    id_seed: u64,
    /// Ordinal of the next tool call, and how many ids were generated so far.
    next_tool: usize,
    generated: u64,
    /// A function call was seen anywhere in the stream (the finish often comes later).
    saw_call: bool,
    /// The latest `usageMetadata`: running totals, last one wins.
    usage_meta: Option<Value>,
    upstream_model: Option<String>,
    events: usize,
}

pub fn stream_translator(ctx: &Ctx) -> Box<dyn StreamTranslator> {
    Box::new(GeminiStream {
        decoder: sse::Decoder::new(),
        emitter: ChunkEmitter::new(ctx.fallback_id, ctx.created, ctx.client_model, ctx.include_usage),
        provider: ctx.provider.to_string(),
        id_seed: ctx.id_seed,
        next_tool: 0,
        generated: 0,
        saw_call: false,
        usage_meta: None,
        upstream_model: None,
        events: 0,
    })
}

impl GeminiStream {
    fn on_event(&mut self, data: &str, out: &mut BytesMut) -> Result<()> {
        let data = data.trim();
        if data.is_empty() {
            return Ok(());
        }
        self.events += 1;
        let v: Value = serde_json::from_str(data)
            .map_err(|e| GatewayError::bad_upstream(format!("{} sent an invalid stream event: {e}", self.provider)))?;
        if let Some(err) = error_object(&v) {
            return Err(error_from_google(0, err, data.as_bytes()));
        }
        match v {
            Value::Array(items) => items.iter().try_for_each(|item| self.on_response(item, out)),
            item => self.on_response(&item, out),
        }
    }

    fn on_response(&mut self, v: &Value, out: &mut BytesMut) -> Result<()> {
        if let Some(meta) = v.get("usageMetadata").filter(|m| m.is_object()) {
            self.usage_meta = Some(meta.clone());
        }
        if self.upstream_model.is_none() {
            self.upstream_model = v["modelVersion"].as_str().map(str::to_string);
        }
        if !self.emitter.role_sent() {
            if let Some(id) = v["responseId"].as_str().filter(|s| !s.is_empty()) {
                self.emitter.id = id.to_string();
            }
            self.emitter.role(out);
        }
        let Some(cands) = v["candidates"].as_array().filter(|c| !c.is_empty()) else {
            if v["promptFeedback"]["blockReason"].is_string() {
                self.emitter.finish("content_filter", out);
            }
            return Ok(());
        };
        // n > 1 is refused for streams, so only the first candidate exists.
        for c in cands.iter().filter(|c| c["index"].as_u64().unwrap_or(0) == 0) {
            for part in c["content"]["parts"].as_array().into_iter().flatten() {
                if let Some(t) = part["text"].as_str() {
                    if part["thought"].as_bool() != Some(true) {
                        self.emitter.content(t, out);
                    }
                } else if part["functionCall"].is_object() {
                    self.function_call(part, out);
                }
            }
            if let Some(reason) = c["finishReason"].as_str() {
                self.emitter.finish(map_finish(Some(reason), self.saw_call), out);
            }
        }
        Ok(())
    }

    /// Gemini sends each call whole: one chunk with the complete arguments.
    fn function_call(&mut self, part: &Value, out: &mut BytesMut) {
        if self.emitter.finished() {
            return;
        }
        self.saw_call = true;
        let mut call = tool_call(part, self.id_seed, &mut self.generated);
        let index = self.next_tool;
        self.next_tool += 1;
        if call.get("extra_content").is_some() {
            call["index"] = json!(index);
            self.emitter.delta(json!({"tool_calls": [call]}), out);
        } else {
            let f = &call["function"];
            self.emitter.tool_call_start(
                index,
                call["id"].as_str().unwrap_or_default(),
                f["name"].as_str().unwrap_or_default(),
                f["arguments"].as_str().unwrap_or("{}"),
                out,
            );
        }
    }
}

impl StreamTranslator for GeminiStream {
    fn feed(&mut self, input: &[u8], out: &mut BytesMut) -> Result<()> {
        for e in decode(&mut self.decoder, input)? {
            self.on_event(&e.data, out)?;
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut BytesMut) -> Result<()> {
        if let Some(e) = self.decoder.finish() {
            self.on_event(&e.data, out)?;
        }
        if self.events == 0 {
            return Err(GatewayError::bad_upstream(format!(
                "{} closed the stream without any event",
                self.provider
            )));
        }
        // There is no terminal sentinel: a stream is complete once a finishReason came.
        if !self.emitter.finished() {
            return Err(GatewayError::truncated_stream(format!(
                "{} ended the stream before a finish reason",
                self.provider
            )));
        }
        let (usage, _) = usage_of(self.usage_meta.as_ref().unwrap_or(&Value::Null));
        self.emitter.usage(usage, out);
        self.emitter.done(out);
        Ok(())
    }

    fn committed(&self) -> bool {
        self.emitter.committed()
    }

    fn usage(&self) -> Option<Usage> {
        self.usage_meta.as_ref().map(|m| usage_of(m).1)
    }

    fn upstream_model(&self) -> Option<&str> {
        self.upstream_model.as_deref()
    }
}

// ---------------------------------------------------------------------------------------------
// Models (§3.11)
// ---------------------------------------------------------------------------------------------

pub fn models_path() -> &'static str {
    "/v1beta/models?pageSize=1000"
}

/// Model ids usable for chat or embeddings, without the `models/` prefix.
pub fn parse_models(body: &[u8]) -> Result<Vec<String>> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| GatewayError::bad_upstream(format!("gemini returned an invalid model list: {e}")))?;
    let models = v["models"]
        .as_array()
        .ok_or_else(|| GatewayError::bad_upstream("gemini returned a model list without models"))?;
    Ok(models
        .iter()
        .filter(|m| {
            m["supportedGenerationMethods"].as_array().is_some_and(|methods| {
                methods
                    .iter()
                    .any(|x| matches!(x.as_str(), Some("generateContent" | "embedContent")))
            })
        })
        .filter_map(|m| m["name"].as_str())
        .map(|n| n.strip_prefix("models/").unwrap_or(n).to_string())
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Shared with `cohere`: small pieces both native translators need.
// ---------------------------------------------------------------------------------------------

/// The gateway's own request namespace, never sent upstream.
pub(super) const GATEWAY_FIELD: &str = "prism";
/// Warning when an instruction message after the first turn was moved to the system slot.
pub(super) const HOISTED: &str = "system_message_hoisted";

/// Top-level members of a JSON object in document order (serde_json's `Map` sorts keys, and
/// the info headers list parameters in request order).
pub(super) struct Fields(pub(super) Vec<(String, Value)>);

impl Fields {
    /// A member that is present and not null.
    pub(super) fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, v)| k == key && !v.is_null()).map(|(_, v)| v)
    }
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> std::result::Result<Fields, M::Error> {
                let mut v = Vec::with_capacity(m.size_hint().unwrap_or(8));
                while let Some(entry) = m.next_entry::<String, Value>()? {
                    v.push(entry);
                }
                Ok(Fields(v))
            }
        }
        d.deserialize_map(V)
    }
}

pub(super) fn parse_fields(body: &[u8]) -> Result<Fields> {
    serde_json::from_slice(body)
        .map_err(|e| GatewayError::invalid_request(format!("Request body is not a JSON object: {e}")))
}

pub(super) fn to_bytes(v: &Value) -> Result<Bytes> {
    serde_json::to_vec(v)
        .map(Bytes::from)
        .map_err(|e| GatewayError::internal(e.to_string()))
}

pub(super) fn unsupported(param: &str, provider: &str) -> GatewayError {
    GatewayError::unsupported_param(param, format!("{param} is not supported by provider {provider}"))
}

pub(super) fn reject_logit_bias(v: &Value, provider: &str) -> Result<()> {
    match v {
        Value::Object(m) if m.is_empty() => Ok(()),
        _ => Err(unsupported("logit_bias", provider)),
    }
}

pub(super) fn reject_audio_modalities(v: &Value, provider: &str) -> Result<()> {
    let audio = v.as_array().is_some_and(|m| m.iter().any(|x| x != "text"));
    if audio {
        return Err(unsupported("modalities", provider));
    }
    Ok(())
}

/// A clamp: reported as adjusted, or refused in strict mode.
pub(super) fn adjust_or_reject(notes: &mut Notes, strict: bool, param: &str, provider: &str) -> Result<()> {
    if strict {
        return Err(GatewayError::unsupported_param(
            param,
            format!("The value of {param} is outside the range supported by provider {provider}"),
        ));
    }
    notes.adjust(param);
    Ok(())
}

/// `stop` as a list: a string becomes one entry; empty entries and entries beyond `max` are
/// removed (reported as adjusted).
pub(super) fn stop_list(v: &Value, max: usize, notes: &mut Notes, strict: bool, provider: &str) -> Result<Vec<String>> {
    let all: Vec<&str> = match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items
            .iter()
            .map(|s| {
                s.as_str()
                    .ok_or_else(|| GatewayError::invalid_request("stop entries must be strings").with_param("stop"))
            })
            .collect::<Result<_>>()?,
        _ => return Err(GatewayError::invalid_request("stop must be a string or an array").with_param("stop")),
    };
    let kept: Vec<String> = all
        .iter()
        .filter(|s| !s.is_empty())
        .take(max)
        .map(|s| s.to_string())
        .collect();
    if kept.len() != all.len() {
        adjust_or_reject(notes, strict, "stop", provider)?;
    }
    Ok(kept)
}

pub(super) fn message_role(m: &Value, i: usize) -> Result<&str> {
    m["role"].as_str().ok_or_else(|| {
        GatewayError::invalid_request(format!("messages[{i}].role is required"))
            .with_param(format!("messages[{i}].role"))
    })
}

pub(super) fn bad_content(i: usize) -> GatewayError {
    GatewayError::invalid_request("message content must be a string or an array of content parts")
        .with_param(format!("messages[{i}].content"))
}

pub(super) fn empty_message(i: usize) -> GatewayError {
    GatewayError::invalid_request(format!("messages[{i}] has empty content"))
        .with_param(format!("messages[{i}].content"))
}

/// The non-empty texts of a system/developer message (one per string or text part).
pub(super) fn instruction_texts(content: &Value, i: usize) -> Result<Vec<String>> {
    match content {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => Ok(if s.is_empty() { Vec::new() } else { vec![s.clone()] }),
        Value::Array(parts) => {
            let mut out = Vec::new();
            for (j, p) in parts.iter().enumerate() {
                if p["type"] != "text" {
                    return Err(
                        GatewayError::invalid_request("system and developer messages may contain only text")
                            .with_param(format!("messages[{i}].content[{j}]")),
                    );
                }
                if let Some(t) = p["text"].as_str().filter(|t| !t.is_empty()) {
                    out.push(t.to_string());
                }
            }
            Ok(out)
        }
        _ => Err(bad_content(i)),
    }
}

/// An assistant message's text: the string, or its text and refusal parts concatenated.
pub(super) fn assistant_text(content: &Value, i: usize) -> Result<String> {
    match content {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut out = String::new();
            for (j, p) in parts.iter().enumerate() {
                match p["type"].as_str() {
                    Some("text") => out.push_str(p["text"].as_str().unwrap_or_default()),
                    Some("refusal") => out.push_str(p["refusal"].as_str().unwrap_or_default()),
                    _ => {
                        return Err(
                            GatewayError::invalid_request("assistant messages may contain only text")
                                .with_param(format!("messages[{i}].content[{j}]")),
                        )
                    }
                }
            }
            Ok(out)
        }
        _ => Err(bad_content(i)),
    }
}

/// OpenAI `tool_choice`, parsed once for both native translators.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum ToolChoice {
    Auto,
    None,
    Required,
    Named(String),
    /// `{"type":"allowed_tools","allowed_tools":{"mode":"auto"|"required","tools":[...]}}`
    Allowed {
        required: bool,
        names: Vec<String>,
    },
}

pub(super) fn parse_tool_choice(v: &Value) -> Result<ToolChoice> {
    let bad = || GatewayError::invalid_request("Unsupported tool_choice value").with_param("tool_choice");
    match v {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Required),
            _ => Err(bad()),
        },
        Value::Object(_) => match v["type"].as_str() {
            Some("function") => v["function"]["name"]
                .as_str()
                .map(|n| ToolChoice::Named(n.to_string()))
                .ok_or_else(bad),
            Some("allowed_tools") => {
                let a = &v["allowed_tools"];
                let names = a["tools"]
                    .as_array()
                    .ok_or_else(bad)?
                    .iter()
                    .filter_map(|t| t["function"]["name"].as_str().map(str::to_string))
                    .collect();
                Ok(ToolChoice::Allowed {
                    required: a["mode"] == "required",
                    names,
                })
            }
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

/// Embeddings `input` as strings; `single` when the client sent one bare string.
pub(super) fn embedding_inputs(input: Option<&Value>, provider: &str) -> Result<(Vec<String>, bool)> {
    let tokens = || {
        GatewayError::invalid_request(format!("Token-array inputs are not supported by provider {provider}"))
            .with_param("input")
            .with_code("unsupported_parameter")
    };
    match input {
        Some(Value::String(s)) => Ok((vec![s.clone()], true)),
        Some(Value::Array(items)) if !items.is_empty() => {
            let texts = items
                .iter()
                .map(|x| match x {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(_) | Value::Array(_) => Err(tokens()),
                    _ => Err(GatewayError::invalid_request("input entries must be strings").with_param("input")),
                })
                .collect::<Result<Vec<_>>>()?;
            Ok((texts, false))
        }
        Some(Value::Array(_)) => Err(GatewayError::invalid_request("input must not be empty").with_param("input")),
        _ => Err(GatewayError::invalid_request("input must be a string or an array of strings").with_param("input")),
    }
}

/// The OpenAI embeddings list, in input order, floats or base64 (little-endian f32).
pub(super) fn embeddings_response(vectors: &[&Vec<Value>], ctx: &Ctx, tokens: Option<u64>) -> Result<Translated> {
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, values)| {
            let embedding = if ctx.embed_base64 {
                json!(super::openai::floats_to_base64(values))
            } else {
                Value::Array((*values).clone())
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let n = tokens.unwrap_or(0);
    let out = json!({"object": "list", "data": data, "model": ctx.client_model,
                     "usage": {"prompt_tokens": n, "total_tokens": n}});
    Ok(Translated {
        body: to_bytes(&out)?,
        usage: tokens.map(|n| Usage {
            prompt_tokens: n,
            completion_tokens: 0,
            total_tokens: n,
        }),
        upstream_model: None,
    })
}

/// Error text from a body that carries no usable message (HTML pages become a short line).
pub(super) fn plain_message(body: &[u8], status: u16, provider: &str) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() || text.starts_with('<') || text.starts_with('{') || text.starts_with('[') {
        format!("{provider} returned HTTP {status}")
    } else {
        text.chars().take(500).collect()
    }
}

/// Run bytes through an SSE decoder, oversize events being an upstream fault.
pub(super) fn decode(decoder: &mut sse::Decoder, input: &[u8]) -> Result<Vec<sse::Event>> {
    let mut events = Vec::new();
    decoder
        .push(input, |e| events.push(e))
        .map_err(|_| GatewayError::bad_upstream("upstream stream event too large"))?;
    Ok(events)
}

#[cfg(test)]
pub(super) mod tests {
    use std::collections::HashMap;

    use base64::Engine;
    use proptest::prelude::*;

    use super::*;
    use crate::providers::Options;

    pub(crate) fn ctx<'a>(model: &'a str, opts: &'a Options, images: &'a HashMap<String, (String, String)>) -> Ctx<'a> {
        Ctx {
            provider: "gemini",
            kind: super::super::Kind::Gemini,
            endpoint: Endpoint::Chat,
            client_model: model,
            upstream_model: model,
            stream: false,
            include_usage: false,
            created: 1_767_225_600,
            fallback_id: "chatcmpl-fallback000000000000000",
            id_seed: 7,
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

    #[test]
    fn case_08_system_generation_config_named_tool_choice() {
        let input = br#"{"model":"gemini-2.5-flash",
 "messages":[
   {"role":"system","content":"You are terse."},
   {"role":"developer","content":[{"type":"text","text":"Answer in French."}]},
   {"role":"user","content":"Weather in Paris?"}],
 "max_completion_tokens":256,"temperature":0.2,"top_p":0.9,"stop":"END","seed":7,"user":"u1",
 "tools":[{"type":"function","function":{"name":"get_weather","description":"Get weather",
   "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"],"additionalProperties":false}}}],
 "tool_choice":{"type":"function","function":{"name":"get_weather"}},
 "parallel_tool_calls":false}"#;
        let (o, im) = (Options::default(), HashMap::new());
        let r = build_request(input, &ctx("gemini-2.5-flash", &o, &im)).unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/v1beta/models/gemini-2.5-flash:generateContent");
        assert!(r.headers.is_empty());
        let expected = j(
            r#"{"systemInstruction":{"parts":[{"text":"You are terse."},{"text":"Answer in French."}]},
 "contents":[{"role":"user","parts":[{"text":"Weather in Paris?"}]}],
 "tools":[{"functionDeclarations":[{"name":"get_weather","description":"Get weather",
   "parametersJsonSchema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"],"additionalProperties":false}}]}],
 "toolConfig":{"functionCallingConfig":{"mode":"ANY","allowedFunctionNames":["get_weather"]}},
 "generationConfig":{"maxOutputTokens":256,"temperature":0.2,"topP":0.9,"stopSequences":["END"],"seed":7}}"#,
        );
        assert_eq!(body(&r), expected);
        assert_eq!(strs(&r.notes.dropped), ["user", "parallel_tool_calls"]);
        assert!(r.notes.adjusted.is_empty());
        assert!(r.notes.warnings.is_empty());
    }

    #[test]
    fn case_10_images_inline_and_fetched() {
        let input = br#"{"model":"gemini-2.5-flash",
 "messages":[{"role":"user","content":[
   {"type":"text","text":"Compare these."},
   {"type":"image_url","image_url":{"url":"data:image/webp;base64,UklGRg==","detail":"low"}},
   {"type":"image_url","image_url":{"url":"https://example.com/cat.jpg"}}]}]}"#;
        let o = Options::default();
        let mut im = HashMap::new();
        im.insert(
            "https://example.com/cat.jpg".to_string(),
            ("image/jpeg".to_string(), "/9j/4A==".to_string()),
        );
        let r = build_request(input, &ctx("gemini-2.5-flash", &o, &im)).unwrap();
        let expected = j(r#"{"contents":[{"role":"user","parts":[
   {"text":"Compare these."},
   {"inlineData":{"mimeType":"image/webp","data":"UklGRg=="}},
   {"inlineData":{"mimeType":"image/jpeg","data":"/9j/4A=="}}]}]}"#);
        assert_eq!(body(&r), expected);
        assert_eq!(r.notes, Notes::default());

        // Not fetched by the gateway: refused, never sent as a URL Gemini cannot read.
        let none = HashMap::new();
        let e = build_request(input, &ctx("gemini-2.5-flash", &o, &none)).unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(e.kind, "invalid_request_error");
        assert_eq!(e.param.as_deref(), Some("messages[0].content[2].image_url.url"));
        assert!(e.message.contains("remote image"), "{}", e.message);

        let svg = br#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":"data:image/svg+xml;base64,PHN2Zz4="}]}]}"#;
        let e = build_request(svg, &ctx("gemini-2.5-flash", &o, &none)).unwrap_err();
        assert_eq!(e.code.as_deref(), Some("unsupported_image_type"));
        assert_eq!(e.param.as_deref(), Some("messages[0].content[0].image_url.url"));
    }

    #[test]
    fn case_11_json_schema_and_penalties() {
        let input = br#"{"model":"gemini-2.5-flash",
 "messages":[{"role":"user","content":"Extract: Ada Lovelace was 36."}],
 "frequency_penalty":0.5,"presence_penalty":0,
 "response_format":{"type":"json_schema","json_schema":{"name":"person","strict":true,
   "schema":{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}},"required":["name","age"]}}}}"#;
        let (o, im) = (Options::default(), HashMap::new());
        let r = build_request(input, &ctx("gemini-2.5-flash", &o, &im)).unwrap();
        let expected = j(
            r#"{"contents":[{"role":"user","parts":[{"text":"Extract: Ada Lovelace was 36."}]}],
 "generationConfig":{"responseMimeType":"application/json",
   "responseJsonSchema":{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}},"required":["name","age"]}}}"#,
        );
        assert_eq!(body(&r), expected);
        assert_eq!(strs(&r.notes.dropped), ["frequency_penalty"]);
        assert!(r.notes.adjusted.is_empty());
        assert!(r.notes.warnings.is_empty());

        // Strict mode refuses instead of dropping.
        let strict = Options {
            strict: true,
            ..Options::default()
        };
        let e = build_request(input, &ctx("gemini-2.5-flash", &strict, &im)).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("frequency_penalty"));
        assert_eq!(e.code.as_deref(), Some("unsupported_parameter"));
    }

    #[test]
    fn streaming_path_and_shape_rejections() {
        let (o, im) = (Options::default(), HashMap::new());
        let mut c = ctx("gemini-2.5-flash", &o, &im);
        c.stream = true;
        let r = build_request(
            br#"{"messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}"#,
            &c,
        )
        .unwrap();
        assert_eq!(r.path, "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse");
        assert_eq!(body(&r), j(r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}"#));
        assert_eq!(r.notes, Notes::default());
        let e = build_request(br#"{"messages":[{"role":"user","content":"hi"}],"n":2}"#, &c).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("n"));
        let c = ctx("gemini-2.5-flash", &o, &im);
        let r = build_request(br#"{"messages":[{"role":"user","content":"hi"}],"n":2}"#, &c).unwrap();
        assert_eq!(body(&r)["generationConfig"]["candidateCount"], 2);
        let e = build_request(
            br#"{"messages":[{"role":"user","content":"hi"}],"logit_bias":{"1":5}}"#,
            &c,
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("logit_bias"));
        let r = build_request(
            br#"{"messages":[{"role":"user","content":"hi"}],"logit_bias":{},"stop":["a","","b","c","d","e","f"]}"#,
            &c,
        )
        .unwrap();
        assert_eq!(
            body(&r)["generationConfig"]["stopSequences"],
            j(r#"["a","b","c","d","e"]"#)
        );
        assert_eq!(strs(&r.notes.adjusted), ["stop"]);
    }

    #[test]
    fn tool_history_round_trip() {
        let input = br#"{"model":"gemini-2.5-flash",
 "messages":[
   {"role":"user","content":"Weather in Paris and Rome, and time?"},
   {"role":"assistant","content":"","tool_calls":[
      {"id":"call_ABCDEFGHIJKLMNOPQRSTUVWX","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
      {"id":"g-id-2","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Rome\"}"},
       "extra_content":{"google":{"thought_signature":"c2ln"}}},
      {"id":"call_time","type":"function","function":{"name":"1time","arguments":""}}]},
   {"role":"tool","tool_call_id":"g-id-2","content":"{\"temp\":20}"},
   {"role":"tool","tool_call_id":"call_ABCDEFGHIJKLMNOPQRSTUVWX","content":"18C"},
   {"role":"tool","tool_call_id":"call_time","content":[{"type":"text","text":"12:00"}]},
   {"role":"user","content":"Thanks"},
   {"role":"system","content":"Be nice."}],
 "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}},
          {"type":"function","function":{"name":"1time"}}]}"#;
        let (o, im) = (Options::default(), HashMap::new());
        let r = build_request(input, &ctx("gemini-2.5-flash", &o, &im)).unwrap();
        let expected = j(r#"{
 "systemInstruction":{"parts":[{"text":"Be nice."}]},
 "contents":[
  {"role":"user","parts":[{"text":"Weather in Paris and Rome, and time?"}]},
  {"role":"model","parts":[
    {"functionCall":{"name":"get_weather","args":{"city":"Paris"}}},
    {"functionCall":{"name":"get_weather","args":{"city":"Rome"},"id":"g-id-2"},"thoughtSignature":"c2ln"},
    {"functionCall":{"name":"_1time","args":{}}}]},
  {"role":"user","parts":[
    {"functionResponse":{"name":"get_weather","response":{"output":"18C"}}},
    {"functionResponse":{"name":"get_weather","response":{"temp":20},"id":"g-id-2"}},
    {"functionResponse":{"name":"_1time","response":{"output":"12:00"}}},
    {"text":"Thanks"}]}],
 "tools":[{"functionDeclarations":[{"name":"get_weather","parametersJsonSchema":{"type":"object"}},{"name":"_1time"}]}]}"#);
        assert_eq!(body(&r), expected);
        assert_eq!(strs(&r.notes.warnings), [HOISTED]);

        // Gemini 3 needs a signature on the first replayed call of a turn.
        let r = build_request(input, &ctx("gemini-3-pro-preview", &o, &im)).unwrap();
        assert_eq!(body(&r)["contents"][1]["parts"][0]["thoughtSignature"], SKIP_SIGNATURE);
        assert_eq!(body(&r)["contents"][1]["parts"][1]["thoughtSignature"], "c2ln");

        let orphan =
            br#"{"messages":[{"role":"user","content":"x"},{"role":"tool","tool_call_id":"nope","content":"1"}]}"#;
        let e = build_request(orphan, &ctx("gemini-2.5-flash", &o, &im)).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[1].tool_call_id"));
        let only_system = br#"{"messages":[{"role":"system","content":"x"}]}"#;
        let e = build_request(only_system, &ctx("gemini-2.5-flash", &o, &im)).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages"));
        let bad_args = br#"{"messages":[{"role":"assistant","tool_calls":[{"id":"a","function":{"name":"f","arguments":"[1]"}}]}]}"#;
        let e = build_request(bad_args, &ctx("gemini-2.5-flash", &o, &im)).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].tool_calls[0].function.arguments"));
    }

    #[test]
    fn tool_choice_variants() {
        let (o, im) = (Options::default(), HashMap::new());
        let c = ctx("gemini-2.5-flash", &o, &im);
        let tools =
            r#""tools":[{"type":"function","function":{"name":"a"}},{"type":"function","function":{"name":"b"}}]"#;
        let cfg = |choice: &str| {
            let input = format!(r#"{{"messages":[{{"role":"user","content":"x"}}],{tools},"tool_choice":{choice}}}"#);
            body(&build_request(input.as_bytes(), &c).unwrap())
        };
        assert_eq!(
            cfg(r#""auto""#)["toolConfig"],
            j(r#"{"functionCallingConfig":{"mode":"AUTO"}}"#)
        );
        assert_eq!(
            cfg(r#""none""#)["toolConfig"],
            j(r#"{"functionCallingConfig":{"mode":"NONE"}}"#)
        );
        assert_eq!(
            cfg(r#""required""#)["toolConfig"],
            j(r#"{"functionCallingConfig":{"mode":"ANY"}}"#)
        );
        let allowed = cfg(
            r#"{"type":"allowed_tools","allowed_tools":{"mode":"auto","tools":[{"type":"function","function":{"name":"b"}}]}}"#,
        );
        assert_eq!(allowed["tools"], j(r#"[{"functionDeclarations":[{"name":"b"}]}]"#));
        assert_eq!(allowed["toolConfig"], j(r#"{"functionCallingConfig":{"mode":"AUTO"}}"#));
    }

    fn respond(upstream: &str) -> Value {
        let (o, im) = (Options::default(), HashMap::new());
        let t = translate_response(upstream.as_bytes(), &ctx("gemini-2.5-flash", &o, &im)).unwrap();
        serde_json::from_slice(&t.body).unwrap()
    }

    #[test]
    fn case_21_prompt_blocked() {
        let up = r#"{"promptFeedback":{"blockReason":"SAFETY","safetyRatings":[{"category":"HARM_CATEGORY_DANGEROUS_CONTENT","probability":"HIGH","blocked":true}]},
 "usageMetadata":{"promptTokenCount":12,"totalTokenCount":12},
 "modelVersion":"gemini-2.5-flash","responseId":"resp-g21"}"#;
        let expected = j(
            r#"{"id":"resp-g21","object":"chat.completion","created":1767225600,"model":"gemini-2.5-flash",
 "choices":[{"index":0,"message":{"role":"assistant","content":null},"logprobs":null,"finish_reason":"content_filter"}],
 "usage":{"prompt_tokens":12,"completion_tokens":0,"total_tokens":12}}"#,
        );
        assert_eq!(respond(up), expected);
        let (o, im) = (Options::default(), HashMap::new());
        let t = translate_response(up.as_bytes(), &ctx("gemini-2.5-flash", &o, &im)).unwrap();
        assert_eq!(t.upstream_model.as_deref(), Some("gemini-2.5-flash"));
        assert_eq!(t.usage.map(|u| u.total_tokens), Some(12));
    }

    #[test]
    fn case_22_max_tokens_without_text() {
        let up = r#"{"candidates":[{"content":{"role":"model"},"finishReason":"MAX_TOKENS","index":0}],
 "usageMetadata":{"promptTokenCount":10,"thoughtsTokenCount":64,"totalTokenCount":74},
 "modelVersion":"gemini-2.5-flash","responseId":"resp-g22"}"#;
        let expected = j(
            r#"{"id":"resp-g22","object":"chat.completion","created":1767225600,"model":"gemini-2.5-flash",
 "choices":[{"index":0,"message":{"role":"assistant","content":""},"logprobs":null,"finish_reason":"length"}],
 "usage":{"prompt_tokens":10,"completion_tokens":64,"total_tokens":74,
          "completion_tokens_details":{"reasoning_tokens":64}}}"#,
        );
        assert_eq!(respond(up), expected);
    }

    #[test]
    fn function_calls_in_a_response() {
        let up = r#"{"candidates":[{"content":{"role":"model","parts":[
   {"text":"Checking.","thought":true},{"text":"Let me check."},
   {"functionCall":{"name":"get_weather","args":{"city":"Paris"}},"thoughtSignature":"c2ln"},
   {"functionCall":{"name":"_1time","id":"g-2"}}]},"finishReason":"STOP","index":0}],
 "usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":7,"cachedContentTokenCount":2,"totalTokenCount":12}}"#;
        let v = respond(up);
        let id0 = util::gen_id("call_", 7);
        let expected = json!({"id":"chatcmpl-fallback000000000000000","object":"chat.completion","created":1_767_225_600u64,
            "model":"gemini-2.5-flash",
            "choices":[{"index":0,"message":{"role":"assistant","content":"Let me check.","tool_calls":[
                {"id":id0,"type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"},
                 "extra_content":{"google":{"thought_signature":"c2ln"}}},
                {"id":"g-2","type":"function","function":{"name":"1time","arguments":"{}"}}]},
              "logprobs":null,"finish_reason":"tool_calls"}],
            "usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12,"prompt_tokens_details":{"cached_tokens":2}}});
        assert_eq!(v, expected);
        assert!(id0.starts_with("call_") && id0.len() == 29);

        // Safety stop with nothing produced: the choice stays, content null.
        let v = respond(r#"{"candidates":[{"finishReason":"SAFETY","index":0}]}"#);
        assert_eq!(v["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(
            v["usage"],
            j(r#"{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}"#)
        );
    }

    #[test]
    fn error_in_a_200_body_and_garbage() {
        let (o, im) = (Options::default(), HashMap::new());
        let c = ctx("gemini-2.5-flash", &o, &im);
        let e = translate_response(
            br#"{"error":{"code":500,"message":"Internal","status":"INTERNAL"}}"#,
            &c,
        )
        .unwrap_err();
        assert_eq!(e.status, 500);
        assert_eq!(translate_response(b"not json", &c).unwrap_err().status, 502);
    }

    // --- streams ---------------------------------------------------------------------------

    fn run(input: &[u8], include_usage: bool, pieces: &[usize]) -> (Vec<u8>, Result<()>) {
        let (o, im) = (Options::default(), HashMap::new());
        let mut c = ctx("gemini-2.5-flash", &o, &im);
        c.stream = true;
        c.include_usage = include_usage;
        let mut t = stream_translator(&c);
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

    pub(crate) fn events(out: &[u8]) -> Vec<Value> {
        let s = std::str::from_utf8(out).unwrap();
        assert!(s.is_empty() || s.ends_with("\n\n"), "{s}");
        s.split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let d = e.strip_prefix("data: ").unwrap();
                if d == "[DONE]" {
                    json!("DONE")
                } else {
                    serde_json::from_str(d).unwrap()
                }
            })
            .collect()
    }

    /// `C <choices>` of the cases' notation.
    pub(crate) fn c(id: &str, model: &str, choices: &str, include_usage: bool) -> Value {
        let mut v = json!({"id": id, "object": "chat.completion.chunk", "created": 1_767_225_600u64,
                           "model": model, "choices": j(choices)});
        if include_usage {
            v["usage"] = Value::Null;
        }
        v
    }

    pub(crate) fn u(id: &str, model: &str, usage: &str) -> Value {
        json!({"id": id, "object": "chat.completion.chunk", "created": 1_767_225_600u64,
               "model": model, "choices": [], "usage": j(usage)})
    }

    const CASE_30: &str = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"The capital\"}],\"role\":\"model\"},\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":9,\"candidatesTokenCount\":2,\"totalTokenCount\":11},\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"r-123\"}\r\n\r\ndata: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\" of France is Paris.\"}],\"role\":\"model\"},\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":9,\"candidatesTokenCount\":8,\"totalTokenCount\":17},\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"r-123\"}\r\n\r\n";

    const CASE_32: &str = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Here is how to\"}],\"role\":\"model\"},\"index\":0}],\"responseId\":\"r-132\"}\n\ndata: {\"candidates\":[{\"finishReason\":\"SAFETY\",\"index\":0,\"safetyRatings\":[{\"category\":\"HARM_CATEGORY_DANGEROUS_CONTENT\",\"probability\":\"HIGH\",\"blocked\":true}]}],\"usageMetadata\":{\"promptTokenCount\":15,\"candidatesTokenCount\":4,\"totalTokenCount\":19},\"responseId\":\"r-132\"}\n\n";

    const CASE_33: &str = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Part\"}],\"role\":\"model\"},\"index\":0}],\"responseId\":\"r-133\"}\n\ndata: {\"error\":{\"code\":503,\"message\":\"The model is overloaded. Please try again later.\",\"status\":\"UNAVAILABLE\"}}\n\n";

    /// Tool call in one event, finish (STOP) in a later one, a thought part, an id-less call.
    const TOOLS: &str = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"hmm\",\"thought\":true},{\"text\":\"Checking.\"}],\"role\":\"model\"},\"index\":0}],\"responseId\":\"r-t\"}\n\ndata: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"get_weather\",\"args\":{\"city\":\"Paris\"}}},{\"functionCall\":{\"name\":\"now\",\"id\":\"g1\"},\"thoughtSignature\":\"c2ln\"}],\"role\":\"model\"},\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":3,\"candidatesTokenCount\":5,\"totalTokenCount\":8}}\n\ndata: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"\"}],\"role\":\"model\"},\"finishReason\":\"STOP\",\"index\":0}]}\n\n";

    const BLOCKED: &str = "data: {\"promptFeedback\":{\"blockReason\":\"PROHIBITED_CONTENT\"},\"usageMetadata\":{\"promptTokenCount\":4,\"totalTokenCount\":4},\"responseId\":\"r-b\"}\n\n";

    const TRUNCATED: &str = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hel\"}],\"role\":\"model\"},\"index\":0}],\"responseId\":\"r-x\"}\n\n";

    #[test]
    fn case_30_text_stream_usage_last_wins() {
        let m = "gemini-2.5-flash";
        let expected = vec![
            c(
                "r-123",
                m,
                r#"[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]"#,
                true,
            ),
            c(
                "r-123",
                m,
                r#"[{"index":0,"delta":{"content":"The capital"},"logprobs":null,"finish_reason":null}]"#,
                true,
            ),
            c(
                "r-123",
                m,
                r#"[{"index":0,"delta":{"content":" of France is Paris."},"logprobs":null,"finish_reason":null}]"#,
                true,
            ),
            c(
                "r-123",
                m,
                r#"[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]"#,
                true,
            ),
            u(
                "r-123",
                m,
                r#"{"prompt_tokens":9,"completion_tokens":8,"total_tokens":17}"#,
            ),
            json!("DONE"),
        ];
        for pieces in [&[usize::MAX][..], &[1], &[7, 3, 50]] {
            let (out, r) = run(CASE_30.as_bytes(), true, pieces);
            r.unwrap();
            assert_eq!(events(&out), expected, "pieces={pieces:?}");
        }
        // Usage and model are reported to the gateway whatever the client asked.
        let (o, im) = (Options::default(), HashMap::new());
        let mut cx = ctx(m, &o, &im);
        cx.stream = true;
        let mut t = stream_translator(&cx);
        let mut out = BytesMut::new();
        t.feed(CASE_30.as_bytes(), &mut out).unwrap();
        assert!(t.committed());
        t.finish(&mut out).unwrap();
        assert_eq!(
            t.usage(),
            Some(Usage {
                prompt_tokens: 9,
                completion_tokens: 8,
                total_tokens: 17
            })
        );
        assert_eq!(t.upstream_model(), Some("gemini-2.5-flash"));
        assert!(!String::from_utf8_lossy(&out).contains("usage"));
    }

    #[test]
    fn case_32_safety_stop_mid_stream() {
        let m = "gemini-2.5-flash";
        let expected = vec![
            c(
                "r-132",
                m,
                r#"[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]"#,
                false,
            ),
            c(
                "r-132",
                m,
                r#"[{"index":0,"delta":{"content":"Here is how to"},"logprobs":null,"finish_reason":null}]"#,
                false,
            ),
            c(
                "r-132",
                m,
                r#"[{"index":0,"delta":{},"logprobs":null,"finish_reason":"content_filter"}]"#,
                false,
            ),
            json!("DONE"),
        ];
        let (out, r) = run(CASE_32.as_bytes(), false, &[usize::MAX]);
        r.unwrap();
        assert_eq!(events(&out), expected);
    }

    #[test]
    fn case_33_inband_error() {
        let m = "gemini-2.5-flash";
        let (out, r) = run(CASE_33.as_bytes(), false, &[usize::MAX]);
        let e = r.unwrap_err();
        assert_eq!(
            events(&out),
            vec![
                c(
                    "r-133",
                    m,
                    r#"[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]"#,
                    false
                ),
                c(
                    "r-133",
                    m,
                    r#"[{"index":0,"delta":{"content":"Part"},"logprobs":null,"finish_reason":null}]"#,
                    false
                ),
            ]
        );
        assert_eq!(e.status, 503);
        assert_eq!(
            e.envelope(),
            j(
                r#"{"error":{"message":"The model is overloaded. Please try again later.","type":"service_unavailable","param":null,"code":"overloaded"}}"#
            )
        );
    }

    #[test]
    fn tool_call_stream_finish_later() {
        let m = "gemini-2.5-flash";
        let id0 = util::gen_id("call_", 7);
        let expected = vec![
            c("r-t", m, r#"[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]"#, false),
            c("r-t", m, r#"[{"index":0,"delta":{"content":"Checking."},"logprobs":null,"finish_reason":null}]"#, false),
            c("r-t", m, &json!([{"index":0,"delta":{"tool_calls":[{"index":0,"id":id0,"type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},"logprobs":null,"finish_reason":null}]).to_string(), false),
            c("r-t", m, r#"[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"g1","type":"function","function":{"name":"now","arguments":"{}"},"extra_content":{"google":{"thought_signature":"c2ln"}}}]},"logprobs":null,"finish_reason":null}]"#, false),
            c("r-t", m, r#"[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}]"#, false),
            json!("DONE"),
        ];
        let (out, r) = run(TOOLS.as_bytes(), false, &[usize::MAX]);
        r.unwrap();
        assert_eq!(events(&out), expected);
    }

    #[test]
    fn blocked_prompt_stream() {
        let m = "gemini-2.5-flash";
        let (out, r) = run(BLOCKED.as_bytes(), true, &[usize::MAX]);
        r.unwrap();
        assert_eq!(
            events(&out),
            vec![
                c(
                    "r-b",
                    m,
                    r#"[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]"#,
                    true
                ),
                c(
                    "r-b",
                    m,
                    r#"[{"index":0,"delta":{},"logprobs":null,"finish_reason":"content_filter"}]"#,
                    true
                ),
                u(
                    "r-b",
                    m,
                    r#"{"prompt_tokens":4,"completion_tokens":0,"total_tokens":4}"#
                ),
                json!("DONE"),
            ]
        );
    }

    #[test]
    fn stream_failures() {
        let (_, r) = run(TRUNCATED.as_bytes(), false, &[usize::MAX]);
        assert_eq!(r.unwrap_err().code.as_deref(), Some("upstream_stream_truncated"));
        let (out, r) = run(b"", false, &[usize::MAX]);
        assert!(out.is_empty());
        assert_eq!(r.unwrap_err().status, 502);
        let (_, r) = run(b"data: {\"candidates\":[\n\n", false, &[usize::MAX]);
        assert_eq!(r.unwrap_err().code.as_deref(), Some("upstream_error"));
        // An error as the very first event: nothing committed, a proper HTTP error.
        let (o, im) = (Options::default(), HashMap::new());
        let mut cx = ctx("gemini-2.5-flash", &o, &im);
        cx.stream = true;
        let mut t = stream_translator(&cx);
        let mut out = BytesMut::new();
        let e = t
            .feed(b"data: {\"error\":{\"code\":429,\"message\":\"Resource exhausted\",\"status\":\"RESOURCE_EXHAUSTED\"}}\n\n", &mut out)
            .unwrap_err();
        assert_eq!(e.status, 429);
        assert!(!t.committed());
        assert!(out.is_empty());
        // The final event without its blank line still counts.
        let whole = CASE_32.trim_end();
        let (out, r) = run(whole.as_bytes(), false, &[usize::MAX]);
        r.unwrap();
        assert_eq!(events(&out).len(), 4);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn any_split_gives_the_same_bytes(which in 0usize..6, cuts in proptest::collection::vec(1usize..40, 0..30)) {
            let input = [CASE_30, CASE_32, CASE_33, TOOLS, BLOCKED, TRUNCATED][which].as_bytes();
            let (whole, whole_r) = run(input, true, &[usize::MAX]);
            let (split, split_r) = run(input, true, &cuts);
            prop_assert_eq!(whole, split);
            prop_assert_eq!(whole_r, split_r);
        }
    }

    // --- errors ----------------------------------------------------------------------------

    #[test]
    fn case_37_invalid_key_is_401() {
        let up = br#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT",
  "details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com",
              "metadata":{"service":"generativelanguage.googleapis.com"}},
             {"@type":"type.googleapis.com/google.rpc.LocalizedMessage","locale":"en-US","message":"API key not valid. Please pass a valid API key."}]}}"#;
        let e = translate_error(400, &http::HeaderMap::new(), up, 0);
        assert_eq!(e.status, 401);
        assert_eq!(
            e.envelope(),
            j(
                r#"{"error":{"message":"API key not valid. Please pass a valid API key.","type":"authentication_error","param":null,"code":"invalid_api_key"}}"#
            )
        );
    }

    #[test]
    fn error_table() {
        let h = http::HeaderMap::new();
        let e = translate_error(
            429,
            &h,
            br#"{"error":{"code":429,"message":"Resource has been exhausted","status":"RESOURCE_EXHAUSTED",
            "details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"37s"}]}}"#,
            0,
        );
        assert_eq!((e.status, e.kind, e.retry_after), (429, "rate_limit_error", Some(37)));
        assert!(e.retryable);
        let e = translate_error(429, &h, br#"[{"error":{"code":429,"message":"You exceeded your current quota","status":"RESOURCE_EXHAUSTED",
            "details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaId":"GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]},
                       {"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"1.2s"}]}}]"#, 0);
        assert_eq!((e.status, e.kind), (429, "insufficient_quota"));
        assert!(!e.retryable);
        let e = translate_error(400, &h, br#"{"error":{"code":400,"message":"The input token count (2000000) exceeds the maximum number of tokens allowed (1048576).","status":"INVALID_ARGUMENT"}}"#, 0);
        assert_eq!(e.code.as_deref(), Some("context_length_exceeded"));
        let e = translate_error(
            400,
            &h,
            br#"{"error":{"code":400,"message":"User location is not supported","status":"FAILED_PRECONDITION"}}"#,
            0,
        );
        assert_eq!((e.status, e.code.as_deref()), (400, Some("failed_precondition")));
        let e = translate_error(
            404,
            &h,
            br#"{"error":{"code":404,"message":"models/nope is not found","status":"NOT_FOUND"}}"#,
            0,
        );
        assert_eq!((e.status, e.code.as_deref()), (404, Some("model_not_found")));
        let e = translate_error(
            403,
            &h,
            br#"{"error":{"code":403,"message":"denied","status":"PERMISSION_DENIED"}}"#,
            0,
        );
        assert_eq!(e.kind, "permission_error");
        let e = translate_error(
            504,
            &h,
            br#"{"error":{"code":504,"message":"Deadline","status":"DEADLINE_EXCEEDED"}}"#,
            0,
        );
        assert_eq!(e.kind, "timeout_error");
        let e = translate_error(503, &h, b"<html><body>Service Unavailable</body></html>", 0);
        assert_eq!((e.status, e.code.as_deref()), (503, Some("overloaded")));
        assert_eq!(e.message, "gemini returned HTTP 503");
        let e = translate_error(500, &h, b"upstream connect error", 0);
        assert_eq!((e.status, e.message.as_str()), (500, "upstream connect error"));
    }

    // --- embeddings ------------------------------------------------------------------------

    fn embed_ctx<'a>(o: &'a Options, im: &'a HashMap<String, (String, String)>) -> Ctx<'a> {
        let mut c = ctx("gemini-embedding-001", o, im);
        c.endpoint = Endpoint::Embeddings;
        c.client_model = "gemini/gemini-embedding-001";
        c
    }

    #[test]
    fn embeddings_requests() {
        let (o, im) = (Options::default(), HashMap::new());
        let c = embed_ctx(&o, &im);
        let r = build_request(br#"{"model":"x","input":["hello","world"],"dimensions":768,"task_type":"retrieval_query","encoding_format":"base64","user":"u"}"#, &c).unwrap();
        assert_eq!(r.path, "/v1beta/models/gemini-embedding-001:batchEmbedContents");
        assert_eq!(
            body(&r),
            j(r#"{"requests":[
  {"model":"models/gemini-embedding-001","content":{"parts":[{"text":"hello"}]},"taskType":"RETRIEVAL_QUERY","outputDimensionality":768},
  {"model":"models/gemini-embedding-001","content":{"parts":[{"text":"world"}]},"taskType":"RETRIEVAL_QUERY","outputDimensionality":768}]}"#)
        );
        assert_eq!(strs(&r.notes.dropped), ["user"]);
        let r = build_request(br#"{"model":"x","input":"hello"}"#, &c).unwrap();
        assert_eq!(r.path, "/v1beta/models/gemini-embedding-001:embedContent");
        assert_eq!(body(&r), j(r#"{"content":{"parts":[{"text":"hello"}]}}"#));
        assert_eq!(r.notes, Notes::default());
        let e = build_request(br#"{"model":"x","input":[[1,2,3]]}"#, &c).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("input"));
        let e = build_request(br#"{"model":"x","input":[]}"#, &c).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("input"));
    }

    #[test]
    fn embeddings_responses() {
        let (o, im) = (Options::default(), HashMap::new());
        let mut c = embed_ctx(&o, &im);
        let t = translate_response(br#"{"embeddings":[{"values":[0.5,-0.25]},{"values":[1.0,2.0]}]}"#, &c).unwrap();
        let expected = j(r#"{"object":"list","data":[
  {"object":"embedding","index":0,"embedding":[0.5,-0.25]},
  {"object":"embedding","index":1,"embedding":[1.0,2.0]}],
 "model":"gemini/gemini-embedding-001","usage":{"prompt_tokens":0,"total_tokens":0}}"#);
        assert_eq!(serde_json::from_slice::<Value>(&t.body).unwrap(), expected);
        c.embed_base64 = true;
        let t = translate_response(br#"{"embedding":{"values":[0.5,-0.25]}}"#, &c).unwrap();
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        let b = base64::engine::general_purpose::STANDARD
            .decode(v["data"][0]["embedding"].as_str().unwrap())
            .unwrap();
        let mut want = 0.5f32.to_le_bytes().to_vec();
        want.extend_from_slice(&(-0.25f32).to_le_bytes());
        assert_eq!(b, want);
        assert_eq!(v["data"].as_array().unwrap().len(), 1);
    }

    // --- models and names ------------------------------------------------------------------

    #[test]
    fn models_are_filtered_and_stripped() {
        let body = br#"{"models":[
  {"name":"models/gemini-2.5-flash","supportedGenerationMethods":["generateContent","countTokens"]},
  {"name":"models/gemini-embedding-001","supportedGenerationMethods":["embedContent"]},
  {"name":"models/aqa","supportedGenerationMethods":["generateAnswer"]},
  {"name":"models/imagen","supportedGenerationMethods":["predict"]}],"nextPageToken":"x"}"#;
        assert_eq!(
            parse_models(body).unwrap(),
            ["gemini-2.5-flash", "gemini-embedding-001"]
        );
        assert!(models_path().starts_with("/v1beta/models"));
        assert!(parse_models(b"{}").is_err());
    }

    #[test]
    fn function_names_escape_both_ways() {
        for name in ["get_weather", "1time", "-x", "_1time", "__9", "_", "a1", "_a"] {
            let enc = encode_name(name);
            assert!(enc.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'), "{enc}");
            assert_eq!(decode_name(&enc), name);
        }
        assert_eq!(encode_name("get_weather"), "get_weather");
    }
}

//! OpenAI-compatible kinds: OpenAI itself, Mistral, Ollama, vLLM and LM Studio. One module,
//! with each kind's quirks as data (`providers.md` §5): the request is passed through field by
//! field (unknown fields untouched as raw JSON; a large one is sent as a slice of the client's
//! body, not copied), and the fields a kind cannot take are renamed, emulated, dropped or
//! rejected.

use std::borrow::Cow;
use std::collections::HashMap;

use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::util::{self, ChunkEmitter};
use super::{Body, Ctx, Endpoint, Kind, Notes, StreamTranslator, Translated, UpstreamRequest, Usage};
use crate::error::{GatewayError, Result};
use crate::sse;

/// Top-level members of a JSON object, values left as raw borrowed slices, order kept.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Members<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> std::result::Result<Self::Value, M::Error> {
                let mut v = Vec::with_capacity(m.size_hint().unwrap_or(8));
                while let Some((k, val)) = m.next_entry::<Cow<'de, str>, &'de RawValue>()? {
                    v.push((k, val));
                }
                Ok(Members(v))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

fn parse_members(body: &[u8]) -> Result<Members<'_>> {
    serde_json::from_slice(body)
        .map_err(|e| GatewayError::invalid_request(format!("Request body is not a JSON object: {e}")))
}

fn raw_to_value(raw: &RawValue) -> Result<Value> {
    serde_json::from_str(raw.get()).map_err(|e| GatewayError::invalid_request(e.to_string()))
}

/// Fields Mistral accepts on chat (`providers.md` §5.2); everything else is renamed or dropped.
const MISTRAL_CHAT_FIELDS: &[&str] = &[
    "model",
    "messages",
    "temperature",
    "top_p",
    "max_tokens",
    "stream",
    "stop",
    "random_seed",
    "response_format",
    "tools",
    "tool_choice",
    "presence_penalty",
    "frequency_penalty",
    "n",
    "parallel_tool_calls",
    "safe_prompt",
    "prediction",
    "prompt_mode",
];

/// Fields that exist only for the gateway and are never sent upstream.
const GATEWAY_FIELDS: &[&str] = &["prism"];

/// Members at least this long are sent as slices of the client's body, not copied. Smaller
/// ones are cheaper to copy than to send as a piece of their own.
const BORROW_MIN: usize = 64 * 1024;

/// Writes an object from (key, raw JSON) pairs. With a `source` (the client's body as
/// `Bytes`), a large raw member that lies inside it becomes a slice of it: the body is then
/// sent as pieces and never held twice.
struct ObjectWriter<'s> {
    out: BytesMut,
    parts: Vec<Bytes>,
    source: Option<&'s Bytes>,
    first: bool,
}

impl<'s> ObjectWriter<'s> {
    fn new(capacity: usize, source: Option<&'s Bytes>) -> Self {
        let mut out = BytesMut::with_capacity(capacity + 64);
        out.put_u8(b'{');
        ObjectWriter {
            out,
            parts: Vec::new(),
            source,
            first: true,
        }
    }
    fn key(&mut self, k: &str) {
        if !self.first {
            self.out.put_u8(b',');
        }
        self.first = false;
        // Serializing a &str cannot fail.
        let _ = serde_json::to_writer((&mut self.out).writer(), k);
        self.out.put_u8(b':');
    }
    fn raw(&mut self, k: &str, raw: &str) {
        self.key(k);
        if let Some(slice) = self.borrow(raw) {
            self.parts.push(self.out.split().freeze());
            self.parts.push(slice);
        } else {
            self.out.extend_from_slice(raw.as_bytes());
        }
    }
    /// `raw` as a slice of the source, when it is large and lies inside it.
    fn borrow(&self, raw: &str) -> Option<Bytes> {
        let src = self.source?;
        if raw.len() < BORROW_MIN {
            return None;
        }
        let start = (raw.as_ptr() as usize).checked_sub(src.as_ptr() as usize)?;
        let end = start.checked_add(raw.len())?;
        (end <= src.len()).then(|| src.slice(start..end))
    }
    fn value(&mut self, k: &str, v: &Value) {
        self.key(k);
        let _ = serde_json::to_writer((&mut self.out).writer(), v);
    }
    fn finish(mut self) -> Body {
        self.out.put_u8(b'}');
        if self.parts.is_empty() {
            return Body::Whole(self.out.freeze());
        }
        self.parts.push(self.out.freeze());
        Body::Parts(self.parts)
    }
}

/// Whether a JSON text has a `\u` escape of an unpaired UTF-16 surrogate. Such text is
/// syntactically JSON but not Unicode; the raw pass-through would forward it verbatim, so it
/// is refused here as every decoding translator refuses it. One pass over the bytes.
fn has_lone_surrogate(body: &[u8]) -> bool {
    let hex = |b: &[u8]| {
        std::str::from_utf8(b)
            .ok()
            .and_then(|s| u16::from_str_radix(s, 16).ok())
    };
    let mut i = 0;
    while i + 1 < body.len() {
        match memchr::memchr(b'\\', &body[i..]) {
            Some(at) => i += at,
            None => return false,
        }
        if i + 1 >= body.len() {
            return false;
        }
        if body[i + 1] != b'u' {
            i += 2;
            continue;
        }
        let Some(unit) = body.get(i + 2..i + 6).and_then(hex) else {
            return true;
        };
        match unit {
            0xD800..=0xDBFF => {
                let low = body.get(i + 6..i + 8) == Some(b"\\u")
                    && body
                        .get(i + 8..i + 12)
                        .and_then(hex)
                        .is_some_and(|u| (0xDC00..=0xDFFF).contains(&u));
                if !low {
                    return true;
                }
                i += 12;
            }
            0xDC00..=0xDFFF => return true,
            _ => i += 6,
        }
    }
    false
}

pub fn build_request(body: &[u8], ctx: &Ctx) -> Result<UpstreamRequest> {
    build(body, None, ctx)
}

/// `build_request` with the body as `Bytes`: large members passed through unchanged are
/// sent as slices of it.
pub fn build_request_shared(body: &Bytes, ctx: &Ctx) -> Result<UpstreamRequest> {
    build(body, Some(body), ctx)
}

fn build(body: &[u8], source: Option<&Bytes>, ctx: &Ctx) -> Result<UpstreamRequest> {
    let members = parse_members(body)?;
    if has_lone_surrogate(body) {
        return Err(GatewayError::invalid_request(
            "The request body contains an invalid Unicode escape (an unpaired surrogate).",
        ));
    }
    let kind = ctx.kind;
    let strict = ctx.options.strict;
    let mut notes = Notes::default();
    // Members that will be borrowed are not copied, so the buffer need not hold them.
    let borrowed: usize = match source {
        Some(_) => members
            .0
            .iter()
            .map(|(_, raw)| raw.get().len())
            .filter(|n| *n >= BORROW_MIN)
            .sum(),
        None => 0,
    };
    let mut w = ObjectWriter::new(body.len() - borrowed.min(body.len()), source);
    let path = match ctx.endpoint {
        Endpoint::Chat => "/chat/completions",
        Endpoint::Completions => "/completions",
        Endpoint::Embeddings => "/embeddings",
    };
    let has = |name: &str| members.0.iter().any(|(k, _)| k == name);
    let tools_filter = if ctx.endpoint == Endpoint::Chat && kind == Kind::Ollama {
        ollama_tool_choice(&members, strict, &mut notes, ctx.provider)?
    } else {
        ToolFilter::Keep
    };

    w.raw("model", &serde_json::to_string(ctx.upstream_model).unwrap_or_default());
    for (k, raw) in &members.0 {
        let k = k.as_ref();
        if k == "model" || GATEWAY_FIELDS.contains(&k) {
            continue;
        }
        reject_shape_changing(kind, k, raw, ctx.provider)?;
        match (ctx.endpoint, k) {
            (_, "stream_options") => {
                // The gateway honours include_usage itself; upstream it asks for usage only
                // where the server supports the option, so metrics see tokens.
                if ctx.stream && matches!(kind, Kind::Openai | Kind::Ollama | Kind::Vllm | Kind::Lmstudio) {
                    w.value("stream_options", &json!({"include_usage": true}));
                }
            }
            (Endpoint::Chat, "messages") if kind != Kind::Openai => {
                let msgs = rewrite_messages(kind, raw_to_value(raw)?, ctx)?;
                w.value("messages", &msgs);
            }
            (Endpoint::Chat, "max_completion_tokens") if kind != Kind::Openai => {
                w.raw("max_tokens", raw.get());
            }
            (Endpoint::Chat, "max_tokens") if kind != Kind::Openai && has("max_completion_tokens") => {}
            (_, "seed") if kind == Kind::Mistral => w.raw("random_seed", raw.get()),
            (Endpoint::Chat, "tools") => match &tools_filter {
                ToolFilter::Keep => w.raw("tools", raw.get()),
                ToolFilter::Drop => {}
                ToolFilter::Only(name) => {
                    let tools: Vec<Value> = raw_to_value(raw)?
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter(|t| t["function"]["name"].as_str() == Some(name.as_str()))
                                .cloned()
                                .collect()
                        })
                        .unwrap_or_default();
                    w.value("tools", &Value::Array(tools));
                }
            },
            (Endpoint::Chat, "tool_choice") if kind == Kind::Ollama => {}
            (Endpoint::Chat, "response_format") if kind == Kind::Lmstudio => {
                let mut rf = raw_to_value(raw)?;
                if rf["type"] == "json_object" {
                    rf = json!({"type": "json_schema",
                                "json_schema": {"name": "object", "schema": {"type": "object"}}});
                }
                w.value("response_format", &rf);
            }
            (Endpoint::Embeddings, "encoding_format") if matches!(kind, Kind::Mistral | Kind::Lmstudio) => {
                // Encoded by the gateway (translate_response), the server may not support it.
            }
            (Endpoint::Chat, _) if kind == Kind::Mistral && !MISTRAL_CHAT_FIELDS.contains(&k) => {
                notes.drop_or_reject(strict, k, ctx.provider)?;
            }
            _ => w.raw(k, raw.get()),
        }
    }
    Ok(UpstreamRequest {
        method: "POST",
        path: path.to_string(),
        body: w.finish(),
        headers: Vec::new(),
        notes,
    })
}

/// Features that change the shape of the answer and that a kind would silently ignore.
fn reject_shape_changing(kind: Kind, field: &str, raw: &RawValue, provider: &str) -> Result<()> {
    let v = raw.get();
    let unsupported = match (kind, field) {
        (Kind::Openai | Kind::Vllm, _) => false,
        (Kind::Ollama | Kind::Lmstudio, "n") => v.parse::<u64>().map(|n| n > 1).unwrap_or(false),
        (_, "logprobs") => v == "true",
        (_, "logit_bias") => v != "null" && v.replace(char::is_whitespace, "") != "{}",
        (_, "audio") => v != "null",
        (_, "modalities") => v.contains("audio"),
        _ => false,
    };
    if unsupported {
        return Err(GatewayError::unsupported_param(
            field,
            format!("{field} is not supported by provider {provider}"),
        ));
    }
    Ok(())
}

enum ToolFilter {
    Keep,
    Drop,
    Only(String),
}

/// Ollama ignores `tool_choice`; emulate it by filtering `tools` (§5.3).
fn ollama_tool_choice(members: &Members, strict: bool, notes: &mut Notes, provider: &str) -> Result<ToolFilter> {
    let Some((_, raw)) = members.0.iter().find(|(k, _)| k == "tool_choice") else {
        return Ok(ToolFilter::Keep);
    };
    let tc = raw_to_value(raw)?;
    Ok(match &tc {
        Value::String(s) if s == "none" => ToolFilter::Drop,
        Value::String(s) if s == "required" => {
            notes.drop_or_reject(strict, "tool_choice", provider)?;
            ToolFilter::Keep
        }
        Value::Object(_) => match tc["function"]["name"].as_str() {
            Some(name) => ToolFilter::Only(name.to_string()),
            None => ToolFilter::Keep,
        },
        _ => ToolFilter::Keep,
    })
}

/// Message-level repairs for OpenAI-compatible servers that are not OpenAI.
fn rewrite_messages(kind: Kind, mut msgs: Value, ctx: &Ctx) -> Result<Value> {
    let Some(list) = msgs.as_array_mut() else {
        return Err(GatewayError::invalid_request("messages must be an array").with_param("messages"));
    };
    for (i, m) in list.iter_mut().enumerate() {
        let Some(obj) = m.as_object_mut() else {
            return Err(
                GatewayError::invalid_request(format!("messages[{i}] must be an object"))
                    .with_param(format!("messages[{i}]")),
            );
        };
        if obj.get("role").and_then(Value::as_str) == Some("developer") {
            obj.insert("role".into(), json!("system"));
        }
        if kind == Kind::Mistral {
            obj.remove("name");
            if obj.get("content").is_some_and(Value::is_null) {
                obj.remove("content");
            }
            if let Some(Value::String(id)) = obj.get_mut("tool_call_id") {
                *id = mistral_tool_id(id);
            }
            if let Some(Value::Array(calls)) = obj.get_mut("tool_calls") {
                for c in calls {
                    if let Some(Value::String(id)) = c.get_mut("id") {
                        *id = mistral_tool_id(id);
                    }
                }
            }
        }
        if matches!(kind, Kind::Ollama | Kind::Lmstudio) {
            inline_remote_images(obj, i, ctx)?;
        }
    }
    Ok(msgs)
}

/// Servers that only take data URLs get remote images the gateway fetched beforehand.
fn inline_remote_images(msg: &mut Map<String, Value>, i: usize, ctx: &Ctx) -> Result<()> {
    let Some(Value::Array(parts)) = msg.get_mut("content") else {
        return Ok(());
    };
    for (j, p) in parts.iter_mut().enumerate() {
        if p["type"] != "image_url" {
            continue;
        }
        let url = match &p["image_url"] {
            Value::String(s) => s.clone(),
            v => v["url"].as_str().unwrap_or_default().to_string(),
        };
        if url.starts_with("data:") {
            continue;
        }
        match ctx.images.get(&url) {
            Some((mime, data)) => {
                p["image_url"] = json!({"url": format!("data:{mime};base64,{data}")});
            }
            None => {
                return Err(GatewayError::invalid_request(format!(
                    "Provider {} accepts only inline images, and fetching remote image URLs is disabled",
                    ctx.provider
                ))
                .with_param(format!("messages[{i}].content[{j}].image_url.url"))
                .with_code("unsupported_image_url"))
            }
        }
    }
    Ok(())
}

/// Mistral wants tool-call ids of exactly 9 `[A-Za-z0-9]`: valid ids stay, others become
/// `base62(sha256(id))[0:9]` so that a call and its result stay paired (§5.2).
pub fn mistral_tool_id(id: &str) -> String {
    if id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return id.to_string();
    }
    const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut n: Vec<u8> = Sha256::digest(id.as_bytes()).to_vec();
    let mut digits = Vec::with_capacity(44);
    while n.iter().any(|&b| b != 0) {
        let mut rem = 0u32;
        for b in n.iter_mut() {
            let cur = (rem << 8) | u32::from(*b);
            *b = (cur / 62) as u8;
            rem = cur % 62;
        }
        digits.push(B62[rem as usize]);
    }
    digits.iter().rev().take(9).map(|&b| b as char).collect()
}

pub fn translate_response(body: &[u8], ctx: &Ctx) -> Result<Translated> {
    let base64 =
        ctx.endpoint == Endpoint::Embeddings && ctx.embed_base64 && matches!(ctx.kind, Kind::Mistral | Kind::Lmstudio);
    if !base64 {
        if let Some(t) = translate_response_raw(body, ctx) {
            return Ok(t);
        }
    }
    translate_response_value(body, ctx)
}

/// The common case without a value tree: the top-level members are copied as written and
/// only `model` and `created` are replaced, when no choice needs a repair. `None` sends the
/// body the general way (`translate_response_value`), which also words every error.
fn translate_response_raw(body: &[u8], ctx: &Ctx) -> Option<Translated> {
    /// One pass over the answer: the members the gateway reads, borrowed; the rest skipped
    /// (and checked for syntax). A repeated member is an error here, so it goes the general way.
    #[derive(serde::Deserialize)]
    struct Answer<'a> {
        #[serde(borrow, default)]
        model: Option<&'a RawValue>,
        #[serde(borrow, default)]
        created: Option<&'a RawValue>,
        #[serde(borrow, default)]
        choices: Option<Vec<ChoiceCheck<'a>>>,
        #[serde(borrow, default)]
        usage: Option<&'a RawValue>,
        #[serde(borrow, default)]
        error: Option<&'a RawValue>,
    }
    let text = std::str::from_utf8(body).ok()?;
    // serde reads an array into a struct by position: only an object is this answer.
    if !text.trim_start().starts_with('{') || has_lone_surrogate(body) {
        return None;
    }
    let a = serde_json::from_str::<Answer<'_>>(text).ok()?;
    if a.error.is_some() || !a.choices.unwrap_or_default().iter().all(|c| c.clean(ctx.kind)) {
        return None;
    }
    let upstream_model = match a.model {
        Some(m) => serde_json::from_str::<Option<String>>(m.get()).ok()?,
        None => None,
    };
    // The output is the input with two values replaced, found by where serde borrowed them.
    let span = |r: &RawValue| {
        let start = r.get().as_ptr() as usize - text.as_ptr() as usize;
        start..start + r.get().len()
    };
    let mut model_json = Vec::with_capacity(ctx.client_model.len() + 2);
    // Serializing a &str cannot fail.
    let _ = serde_json::to_writer(&mut model_json, ctx.client_model);
    let created = ctx.created.to_string();
    let mut edits: Vec<(std::ops::Range<usize>, &[u8])> = Vec::with_capacity(2);
    match a.model {
        Some(m) => edits.push((span(m), &model_json)),
        None => {
            // No `model` member: one goes first (the value path adds it too).
            let open = text.find('{')? + 1;
            edits.push((open..open, b"\"model\":"));
            edits.push((open..open, &model_json));
            let empty = text[open..].trim_start().starts_with('}');
            edits.push((open..open, if empty { b"" } else { b"," }));
        }
    }
    if let Some(c) = a.created {
        edits.push((span(c), created.as_bytes()));
    }
    edits.sort_by_key(|(r, _)| r.start);
    let mut out = BytesMut::with_capacity(body.len() + model_json.len() + 16);
    let mut at = 0;
    for (r, with) in edits {
        out.put_slice(&body[at..r.start]);
        out.put_slice(with);
        at = r.end;
    }
    out.put_slice(&body[at..]);
    Some(Translated {
        body: out.freeze(),
        usage: a.usage.and_then(parse_usage_raw),
        upstream_model,
    })
}

/// What `repair_choice` looks at, to tell whether a choice needs it. (serde also reads an
/// array into these, by position: harmless, as `repair_choice` leaves a non-object as it is.)
#[derive(serde::Deserialize)]
struct ChoiceCheck<'a> {
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "present")]
    logprobs: bool,
    #[serde(default)]
    message: Option<MessageCheck>,
}

#[derive(serde::Deserialize)]
struct MessageCheck {
    #[serde(default, deserialize_with = "present")]
    content: bool,
    #[serde(default, deserialize_with = "present")]
    tool_calls: bool,
    #[serde(default, deserialize_with = "present")]
    reasoning: bool,
    #[serde(default, deserialize_with = "present")]
    reasoning_content: bool,
}

impl ChoiceCheck<'_> {
    /// Whether `repair_choice` would leave this choice as it is.
    fn clean(&self, kind: Kind) -> bool {
        let finish_ok = self.finish_reason.as_deref().is_none_or(|r| map_finish(r) == r);
        let message_ok = self.message.as_ref().is_none_or(|m| {
            m.content && !m.tool_calls && (kind == Kind::Openai || !(m.reasoning || m.reasoning_content))
        });
        finish_ok && self.logprobs && message_ok
    }
}

fn translate_response_value(body: &[u8], ctx: &Ctx) -> Result<Translated> {
    let mut v: Value = serde_json::from_slice(body)
        .map_err(|e| GatewayError::bad_upstream(format!("{} returned invalid JSON: {e}", ctx.provider)))?;
    if !v.is_object() {
        return Err(GatewayError::bad_upstream(format!(
            "{} returned a non-object body",
            ctx.provider
        )));
    }
    if v.get("error").is_some_and(|e| !e.is_null()) {
        return Err(translate_error(
            ctx.kind,
            502,
            &http::HeaderMap::new(),
            body,
            ctx.created,
        ));
    }
    let upstream_model = v["model"].as_str().map(str::to_string);
    v["model"] = json!(ctx.client_model);
    if v.get("created").is_some() {
        v["created"] = json!(ctx.created);
    }
    let usage = parse_usage(&v["usage"]);
    if let Some(choices) = v.get_mut("choices").and_then(Value::as_array_mut) {
        for c in choices {
            repair_choice(ctx.kind, c);
        }
    }
    if ctx.endpoint == Endpoint::Embeddings && ctx.embed_base64 && matches!(ctx.kind, Kind::Mistral | Kind::Lmstudio) {
        embeddings_to_base64(&mut v);
    }
    let body = serde_json::to_vec(&v).map_err(|e| GatewayError::internal(e.to_string()))?;
    Ok(Translated {
        body: Bytes::from(body),
        usage,
        upstream_model,
    })
}

/// Rewrite `data[].embedding` float arrays as base64 of little-endian f32 (OpenAI's format).
pub fn embeddings_to_base64(v: &mut Value) {
    if let Some(data) = v.get_mut("data").and_then(Value::as_array_mut) {
        for d in data {
            if let Some(arr) = d.get("embedding").and_then(Value::as_array) {
                d["embedding"] = json!(floats_to_base64(arr));
            }
        }
    }
}

pub fn floats_to_base64(arr: &[Value]) -> String {
    let mut buf = Vec::with_capacity(arr.len() * 4);
    for f in arr {
        buf.extend_from_slice(&(f.as_f64().unwrap_or(0.0) as f32).to_le_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(buf)
}

fn map_finish(reason: &str) -> &str {
    match reason {
        "model_length" => "length",
        "eos" | "stop_sequence" | "end_turn" => "stop",
        other => other,
    }
}

/// Per-choice repairs on a non-streamed answer.
fn repair_choice(kind: Kind, c: &mut Value) {
    if !c.is_object() {
        return; // indexing a non-object by key would panic
    }
    if let Some(fr) = c["finish_reason"].as_str() {
        let mapped = map_finish(fr).to_string();
        c["finish_reason"] = json!(mapped);
    }
    if c.get("logprobs").is_none() {
        c["logprobs"] = Value::Null;
    }
    let Some(msg) = c.get_mut("message").and_then(Value::as_object_mut) else {
        return;
    };
    if kind != Kind::Openai {
        msg.remove("reasoning");
        msg.remove("reasoning_content");
    }
    if let Some(Value::Array(calls)) = msg.get_mut("tool_calls") {
        if calls.is_empty() {
            msg.remove("tool_calls");
        } else {
            for call in calls.iter_mut() {
                if !call.is_object() || !(call["function"].is_object() || call["function"].is_null()) {
                    continue; // not a call this can repair; indexing it by key would panic
                }
                if call.get("type").is_none() {
                    call["type"] = json!("function");
                }
                let args = call["function"].get("arguments").cloned();
                call["function"]["arguments"] = json!(util::arguments_string(args.as_ref()));
            }
        }
    }
    if !msg.contains_key("content") {
        msg.insert("content".into(), Value::Null);
    }
}

/// `parse_usage` on raw JSON, without building the value (the counts' siblings are skipped).
fn parse_usage_raw(raw: &RawValue) -> Option<Usage> {
    #[derive(serde::Deserialize)]
    struct Counts<'a> {
        #[serde(borrow, default)]
        prompt_tokens: Option<&'a RawValue>,
        #[serde(borrow, default)]
        completion_tokens: Option<&'a RawValue>,
        #[serde(borrow, default)]
        total_tokens: Option<&'a RawValue>,
    }
    if !raw.get().starts_with('{') {
        return None;
    }
    let Ok(c) = serde_json::from_str::<Counts<'_>>(raw.get()) else {
        // A shape the typed reader does not take (a repeated member, say): the general way.
        return parse_usage(&serde_json::from_str(raw.get()).ok()?);
    };
    let int = |r: Option<&RawValue>| r.and_then(|r| serde_json::from_str::<u64>(r.get()).ok());
    let p = int(c.prompt_tokens)?;
    let comp = int(c.completion_tokens).unwrap_or(0);
    Some(Usage {
        prompt_tokens: p,
        completion_tokens: comp,
        total_tokens: int(c.total_tokens).unwrap_or(p + comp),
    })
}

fn parse_usage(u: &Value) -> Option<Usage> {
    let p = u.get("prompt_tokens")?.as_u64()?;
    let c = u.get("completion_tokens").and_then(Value::as_u64).unwrap_or(0);
    let t = u.get("total_tokens").and_then(Value::as_u64).unwrap_or(p + c);
    Some(Usage {
        prompt_tokens: p,
        completion_tokens: c,
        total_tokens: t,
    })
}

/// Normalize every error shape these servers use (§5.1 "Error body").
pub fn translate_error(kind: Kind, status: u16, headers: &http::HeaderMap, body: &[u8], _now: u64) -> GatewayError {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let inner = match &v["error"] {
        Value::Object(_) => &v["error"],
        _ => &v,
    };
    let message = match (&v["error"], &inner["message"], &v["detail"]) {
        (Value::String(s), _, _) => s.clone(),
        (_, Value::String(s), _) => s.clone(),
        (_, m @ (Value::Object(_) | Value::Array(_)), _) => m.to_string(),
        (_, _, d) if !d.is_null() => d.as_str().map(str::to_string).unwrap_or_else(|| d.to_string()),
        _ => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() || text.starts_with('<') {
                format!("{} returned HTTP {status}", kind.as_str())
            } else {
                text.chars().take(500).collect()
            }
        }
    };
    let mut e = GatewayError::from_upstream_status(status, message.clone());
    let code = inner["code"].as_str().unwrap_or_default();
    let typ = inner["type"].as_str().unwrap_or_default();
    if code == "insufficient_quota" || typ == "insufficient_quota" {
        e = GatewayError::insufficient_quota(if status == 402 { 402 } else { 429 }, message.clone());
    } else if message.contains("maximum context length") || code == "context_length_exceeded" {
        e = e.with_code("context_length_exceeded").with_param("messages");
    } else if status == 404 && (message.contains("not found") || code == "model_not_found") {
        e = e.with_code("model_not_found");
    } else if !code.is_empty() && code.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
        e = e.with_code(code);
    }
    if let Some(p) = inner["param"].as_str() {
        e = e.with_param(p);
    }
    e.headers = ratelimit_headers(kind, headers);
    e
}

/// OpenAI's own rate-limit headers pass through; Mistral's per-minute names are renamed.
fn ratelimit_headers(kind: Kind, headers: &http::HeaderMap) -> Vec<(String, String)> {
    let map: &[(&str, &str)] = match kind {
        Kind::Mistral => &[
            ("x-ratelimit-limit-req-minute", "x-ratelimit-limit-requests"),
            ("x-ratelimit-remaining-req-minute", "x-ratelimit-remaining-requests"),
            ("x-ratelimit-limit-tokens-minute", "x-ratelimit-limit-tokens"),
            ("x-ratelimit-remaining-tokens-minute", "x-ratelimit-remaining-tokens"),
        ],
        _ => &[
            ("x-ratelimit-limit-requests", "x-ratelimit-limit-requests"),
            ("x-ratelimit-remaining-requests", "x-ratelimit-remaining-requests"),
            ("x-ratelimit-reset-requests", "x-ratelimit-reset-requests"),
            ("x-ratelimit-limit-tokens", "x-ratelimit-limit-tokens"),
            ("x-ratelimit-remaining-tokens", "x-ratelimit-remaining-tokens"),
            ("x-ratelimit-reset-tokens", "x-ratelimit-reset-tokens"),
        ],
    };
    map.iter()
        .filter_map(|(from, to)| util::header_str(headers, from).map(|v| (to.to_string(), v.to_string())))
        .collect()
}

/// Streams of OpenAI-compatible servers, repaired to the exact grammar of §0.1.
struct CompatStream {
    kind: Kind,
    endpoint: Endpoint,
    decoder: sse::Decoder,
    emitter: ChunkEmitter,
    client_model: String,
    /// Per choice: upstream tool index → downstream index, and downstream index → id (§5.4).
    tools: HashMap<u64, ToolIndex>,
    usage_value: Option<Value>,
    usage: Option<Usage>,
    upstream_model: Option<String>,
    finished: bool,
    done: bool,
    /// `data:` events seen; an empty stream is a failure, not a success.
    events: usize,
}

/// A `chat.completion.chunk` as OpenAI-compatible servers send it, borrowed from the event.
/// Only what the repairs read; strings are borrowed unless they carry escapes.
#[derive(serde::Deserialize)]
struct ChunkIn<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    choices: Option<Vec<ChoiceIn<'a>>>,
    #[serde(borrow, default)]
    usage: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

#[derive(serde::Deserialize)]
struct ChoiceIn<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(borrow, default)]
    delta: Option<DeltaIn<'a>>,
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(serde::Deserialize, Default)]
struct DeltaIn<'a> {
    /// Present with any value (the general path tests presence, not the value).
    #[serde(default, deserialize_with = "present")]
    role: bool,
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<ToolCallIn<'a>>>,
}

#[derive(serde::Deserialize)]
struct ToolCallIn<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    function: Option<FunctionIn<'a>>,
}

#[derive(serde::Deserialize, Default)]
struct FunctionIn<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    arguments: Option<Cow<'a, str>>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

#[derive(Default)]
struct ToolIndex {
    up_to_down: HashMap<u64, usize>,
    ids: Vec<String>,
}

impl ToolIndex {
    /// Downstream index for an upstream fragment; a new id under an index that already has
    /// another id gets the next free index (parsers that put every call at index 0).
    fn map(&mut self, up: u64, id: Option<&str>) -> (usize, bool) {
        match (self.up_to_down.get(&up).copied(), id) {
            (Some(d), Some(id)) if self.ids.get(d).map(String::as_str) != Some(id) && !id.is_empty() => {
                self.ids.push(id.to_string());
                let nd = self.ids.len() - 1;
                self.up_to_down.insert(up, nd);
                (nd, true)
            }
            (Some(d), _) => (d, false),
            (None, id) => {
                self.ids.push(id.unwrap_or_default().to_string());
                let nd = self.ids.len() - 1;
                self.up_to_down.insert(up, nd);
                (nd, true)
            }
        }
    }
}

pub fn stream_translator(ctx: &Ctx) -> Box<dyn StreamTranslator> {
    Box::new(CompatStream {
        kind: ctx.kind,
        endpoint: ctx.endpoint,
        decoder: sse::Decoder::new(),
        emitter: ChunkEmitter::new(ctx.fallback_id, ctx.created, ctx.client_model, ctx.include_usage),
        client_model: ctx.client_model.to_string(),
        tools: HashMap::new(),
        usage_value: None,
        usage: None,
        upstream_model: None,
        finished: false,
        done: false,
        events: 0,
    })
}

impl CompatStream {
    fn on_event(&mut self, data: &str, out: &mut BytesMut) -> Result<()> {
        self.events += 1;
        if data == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        if self.endpoint == Endpoint::Chat && data.trim_start().starts_with('{') {
            // The common shape, read without a value tree; anything unusual (an error, a type
            // the typed reader does not take) goes the general way below.
            if let Ok(chunk) = serde_json::from_str::<ChunkIn<'_>>(data) {
                if chunk.error.is_none() {
                    return self.on_chat_chunk(chunk, out);
                }
            }
        }
        let v: Value = serde_json::from_str(data).map_err(|e| {
            GatewayError::bad_upstream(format!("{} sent an invalid stream event: {e}", self.kind.as_str()))
        })?;
        if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
            let status = err["code"]
                .as_u64()
                .and_then(|c| u16::try_from(c).ok())
                .filter(|c| *c >= 400)
                .unwrap_or(502);
            let body = json!({"error": err}).to_string();
            return Err(translate_error(
                self.kind,
                status,
                &http::HeaderMap::new(),
                body.as_bytes(),
                0,
            ));
        }
        self.on_meta(v["model"].as_str(), v["id"].as_str(), v.get("usage").cloned());
        if self.endpoint == Endpoint::Completions {
            return self.on_completion_chunk(v, out);
        }
        for c in v["choices"].as_array().into_iter().flatten() {
            if c["index"].as_u64().unwrap_or(0) != 0 {
                // n > 1 streams: repairs are defined per choice; pass others through as-is.
                continue;
            }
            let delta = &c["delta"];
            self.on_delta(delta.get("role").is_some(), delta["content"].as_str(), out);
            for call in delta["tool_calls"].as_array().into_iter().flatten() {
                let f = &call["function"];
                self.tool_fragment(
                    call["index"].as_u64().unwrap_or(0),
                    call["id"].as_str(),
                    f["name"].as_str(),
                    f["arguments"].as_str(),
                    out,
                );
            }
            if let Some(fr) = c["finish_reason"].as_str() {
                self.on_finish(fr, out)?;
            }
        }
        Ok(())
    }

    /// The chunk's upstream model (kept once), id (adopted until the role chunk is out) and
    /// usage, whichever path read them.
    fn on_meta(&mut self, model: Option<&str>, id: Option<&str>, usage: Option<Value>) {
        if self.upstream_model.is_none() {
            self.upstream_model = model.map(str::to_string);
        }
        if let Some(id) = id.filter(|id| !id.is_empty()) {
            if !self.emitter.role_sent() {
                self.emitter.id = id.to_string();
            }
        }
        if let Some(u) = usage.filter(|u| !u.is_null()) {
            self.usage = parse_usage(&u);
            self.usage_value = Some(u);
        }
    }

    /// Choice 0's role and text.
    fn on_delta(&mut self, role: bool, content: Option<&str>, out: &mut BytesMut) {
        if role {
            self.emitter.role(out);
        }
        if let Some(text) = content {
            self.emitter.content(text, out);
        }
    }

    /// Choice 0's finish reason; `error` is an in-band failure.
    fn on_finish(&mut self, reason: &str, out: &mut BytesMut) -> Result<()> {
        if reason == "error" {
            return Err(GatewayError::bad_upstream(format!(
                "{} ended the generation with an error",
                self.kind.as_str()
            )));
        }
        self.emitter.finish(map_finish(reason), out);
        self.finished = true;
        Ok(())
    }

    /// One tool-call fragment of choice 0: its downstream index repaired (§5.4), the first
    /// fragment of a call with its id (generated when the server sent none) and name.
    fn tool_fragment(&mut self, up: u64, id: Option<&str>, name: Option<&str>, args: Option<&str>, out: &mut BytesMut) {
        let id = id.filter(|s| !s.is_empty());
        let (down, first) = self.tools.entry(0).or_default().map(up, id);
        let args = args.unwrap_or_default();
        if first {
            let id = id
                .map(str::to_string)
                .unwrap_or_else(|| util::gen_id("call_", down as u64));
            self.emitter
                .tool_call_start(down, &id, name.unwrap_or_default(), args, out);
        } else {
            self.emitter.tool_call_args(down, args, out);
        }
    }

    /// A chat chunk of the usual shape; the same repairs as the general path in `on_event`.
    fn on_chat_chunk(&mut self, v: ChunkIn<'_>, out: &mut BytesMut) -> Result<()> {
        let usage = v.usage.and_then(|u| serde_json::from_str(u.get()).ok());
        self.on_meta(v.model.as_deref(), v.id.as_deref(), usage);
        for c in v.choices.unwrap_or_default() {
            if c.index.unwrap_or(0) != 0 {
                continue;
            }
            let delta = c.delta.unwrap_or_default();
            self.on_delta(delta.role, delta.content.as_deref(), out);
            for call in delta.tool_calls.unwrap_or_default() {
                let f = call.function.unwrap_or_default();
                self.tool_fragment(
                    call.index.unwrap_or(0),
                    call.id.as_deref(),
                    f.name.as_deref(),
                    f.arguments.as_deref(),
                    out,
                );
            }
            if let Some(fr) = c.finish_reason {
                self.on_finish(&fr, out)?;
            }
        }
        Ok(())
    }

    /// Legacy `text_completion` chunks: model and usage handled, text passed through.
    fn on_completion_chunk(&mut self, mut v: Value, out: &mut BytesMut) -> Result<()> {
        let Some(choices) = v.get("choices").and_then(Value::as_array) else {
            return Ok(());
        };
        if choices.is_empty() {
            return Ok(());
        }
        if choices.iter().any(|c| c["finish_reason"].is_string()) {
            self.finished = true;
        }
        let obj = v
            .as_object_mut()
            .ok_or_else(|| GatewayError::bad_upstream("chunk is not an object"))?;
        obj.insert("model".into(), json!(self.client_model));
        obj.insert("created".into(), json!(self.emitter.created));
        obj.remove("usage");
        if self.emitter.include_usage {
            obj.insert("usage".into(), Value::Null);
        }
        self.emitter.raw_chunk(&v, out);
        Ok(())
    }
}

impl StreamTranslator for CompatStream {
    fn feed(&mut self, input: &[u8], out: &mut BytesMut) -> Result<()> {
        let mut events = Vec::new();
        self.decoder
            .push(input, |e| events.push(e))
            .map_err(|_| GatewayError::bad_upstream("upstream stream event too large"))?;
        for e in events {
            if self.done {
                break;
            }
            self.on_event(&e.data, out)?;
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut BytesMut) -> Result<()> {
        if let Some(e) = self.decoder.finish() {
            if !self.done {
                self.on_event(&e.data, out)?;
            }
        }
        if !self.finished {
            return Err(if self.events == 0 {
                GatewayError::bad_upstream(format!("{} closed the stream without any event", self.kind.as_str()))
            } else {
                GatewayError::truncated_stream(format!(
                    "{} ended the stream before its final event",
                    self.kind.as_str()
                ))
            });
        }
        if let Some(u) = self.usage_value.take() {
            let mut u = u;
            if let Some(obj) = u.as_object_mut() {
                // Normalize: some servers omit total_tokens.
                if let Some(usage) = self.usage {
                    obj.insert("total_tokens".into(), json!(usage.total_tokens));
                }
            }
            if self.endpoint == Endpoint::Completions {
                if self.emitter.include_usage {
                    let chunk = json!({"id": self.emitter.id, "object": "text_completion",
                        "created": self.emitter.created, "model": self.client_model,
                        "choices": [], "usage": u});
                    util::write_data(&chunk, out);
                }
            } else {
                self.emitter.usage(u, out);
            }
        }
        out.put_slice(b"data: [DONE]\n\n");
        Ok(())
    }

    fn committed(&self) -> bool {
        self.emitter.committed()
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn upstream_model(&self) -> Option<&str> {
        self.upstream_model.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Options;

    fn ctx<'a>(
        kind: Kind,
        model: &'a str,
        opts: &'a Options,
        images: &'a HashMap<String, (String, String)>,
    ) -> Ctx<'a> {
        Ctx {
            provider: kind.as_str(),
            kind,
            endpoint: Endpoint::Chat,
            client_model: model,
            upstream_model: model,
            stream: false,
            include_usage: false,
            created: 1_767_225_600,
            fallback_id: "chatcmpl-test",
            id_seed: 1,
            options: opts,
            embed_base64: false,
            images,
        }
    }

    fn body_json(r: &UpstreamRequest) -> Value {
        serde_json::from_slice(&r.body.contiguous()).unwrap()
    }

    /// A large member passed through unchanged is sent as a slice of the client's body: the
    /// body is held once. Every kind sends the same bytes either way, and a small body stays
    /// one piece.
    #[test]
    fn large_members_are_sent_as_slices_of_the_client_body() {
        let o = Options::default();
        let im = HashMap::new();
        let big = "x".repeat(1 << 20);
        let body = Bytes::from(
            json!({"messages": [{"role": "user", "content": big}], "temperature": 0.5, "model": "m",
                   "prompt_cache_key": "k", "stream": false})
            .to_string(),
        );
        let small = Bytes::from_static(br#"{"messages":[{"role":"user","content":"hi"}],"model":"m"}"#);
        let inside = |part: &Bytes| {
            let (p, b) = (part.as_ptr() as usize, body.as_ptr() as usize);
            p >= b && p + part.len() <= b + body.len()
        };
        for kind in [Kind::Openai, Kind::Vllm, Kind::Ollama, Kind::Lmstudio, Kind::Mistral] {
            let c = ctx(kind, "up-model", &o, &im);
            let copied = build_request(&body, &c).unwrap();
            let shared = build_request_shared(&body, &c).unwrap();
            assert_eq!(copied.body.contiguous(), shared.body.contiguous(), "{kind:?}");
            assert!(matches!(copied.body, Body::Whole(_)));
            // Only OpenAI passes `messages` through untouched; the others repair it.
            let borrowed: usize = shared.body.parts().iter().filter(|p| inside(p)).map(Bytes::len).sum();
            if kind == Kind::Openai {
                assert!(borrowed > 1 << 20, "messages borrowed: {borrowed}");
                assert!(shared.body.len() - borrowed < 256, "only the small members are copied");
            }
            assert_eq!(body_json(&shared)["model"], "up-model");
            let small = build_request_shared(&small, &c).unwrap();
            assert!(matches!(small.body, Body::Whole(_)), "{kind:?}");
        }
    }

    /// The raw response path, where it applies, answers exactly what the value path answers;
    /// where a repair is needed, it steps aside.
    #[test]
    fn raw_response_path_agrees_with_the_value_path() {
        let o = Options::default();
        let im = HashMap::new();
        let cases: &[(&str, bool)] = &[
            (
                r#"{"id":"c1","object":"chat.completion","created":5,"model":"up-m","choices":[{"index":0,"message":{"role":"assistant","content":"hi \u00e9 \"q\""},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5},"system_fingerprint":null}"#,
                true,
            ),
            (r#"{"choices":null,"usage":null}"#, true),
            (r#"{}"#, true),
            (" { \"id\" : 1 , \"created\" : 7 } ", true),
            (r#"{"model":"a","choices":[]}"#, true),
            // repairs needed: the value path answers
            (
                r#"{"model":"a","choices":[{"message":{"content":"x"},"finish_reason":"eos","logprobs":null}]}"#,
                false,
            ),
            (
                r#"{"model":"a","choices":[{"message":{"content":"x"},"finish_reason":"stop"}]}"#,
                false,
            ),
            (
                r#"{"model":"a","choices":[{"message":{"role":"assistant"},"finish_reason":"stop","logprobs":null}]}"#,
                false,
            ),
            (
                r#"{"model":"a","choices":[{"message":{"content":null,"tool_calls":[{"id":"x","function":{"name":"f","arguments":null}}]},"finish_reason":"tool_calls","logprobs":null}]}"#,
                false,
            ),
            (r#"{"model":"a","model":"b","choices":[]}"#, false),
            (r#"{"model":5,"choices":[]}"#, false),
            // read by position, and left as it is by both paths
            (
                r#"{"model":"a","choices":[["finish_reason","logprobs",{"content":1}]]}"#,
                true,
            ),
            (r#"{"model":"a","choices":[{"message":"text","logprobs":null}]}"#, false),
            (r#"{"model":"a","choices":[],"bad":"\udead"}"#, false),
        ];
        for (body, raw) in cases {
            let c = ctx(Kind::Openai, "client-m", &o, &im);
            let fast = translate_response_raw(body.as_bytes(), &c);
            assert_eq!(fast.is_some(), *raw, "{body}");
            let slow = translate_response_value(body.as_bytes(), &c);
            if let Some(f) = fast {
                let slow = slow.unwrap();
                let fv: Value = serde_json::from_slice(&f.body).unwrap();
                let sv: Value = serde_json::from_slice(&slow.body).unwrap();
                assert_eq!(fv, sv, "{body}");
                assert_eq!(fv["model"], "client-m");
                assert_eq!(f.usage, slow.usage);
                assert_eq!(f.upstream_model, slow.upstream_model);
            }
            // Whatever path: never a panic, and an answer or a clean error.
            let _ = translate_response(body.as_bytes(), &c);
        }
        // Malformed shapes the value path must survive (indexing them by key would panic).
        for body in [
            r#"{"choices":[[1],{"message":{"tool_calls":[1,"x",{"function":"s"}]}}]}"#,
            r#"{"choices":[{"message":{"tool_calls":[{"function":[1]}]}}]}"#,
        ] {
            let c = ctx(Kind::Vllm, "m", &o, &im);
            assert!(translate_response(body.as_bytes(), &c).is_ok(), "{body}");
        }
    }

    /// The typed stream reader and the general one repair a chunk the same way.
    #[test]
    fn stream_fast_path_agrees_with_the_value_path() {
        let o = Options::default();
        let im = HashMap::new();
        let events = [
            r#"{"id":"x1","model":"up","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            r#"{"id":"x1","model":"up","choices":[{"index":0,"delta":{"content":"h\u00e9"}}]}"#,
            r#"{"id":"x1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1","function":{"name":"f","arguments":""}}]}}]}"#,
            r#"{"id":"x1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\":1}"}}]}}]}"#,
            r#"{"id":"x1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c2","function":{"name":"g","arguments":"{}"}}]}}]}"#,
            r#"{"id":"x1","choices":[{"index":1,"delta":{"content":"other choice"}}]}"#,
            r#"{"id":"x1","choices":[{"index":0,"delta":{"role":null},"finish_reason":"eos"}]}"#,
            r#"{"id":"x1","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#,
        ];
        let run = |fast: bool| {
            let mut c = ctx(Kind::Vllm, "client-m", &o, &im);
            c.stream = true;
            c.include_usage = true;
            let mut t = stream_translator(&c);
            let mut out = BytesMut::new();
            for e in events {
                // A repeated `id` member makes the typed reader step aside: the general path.
                let data = if fast {
                    e.to_string()
                } else {
                    e.replacen("{", "{\"id\":0,", 1)
                };
                t.feed(format!("data: {data}\n\n").as_bytes(), &mut out).unwrap();
            }
            t.feed(b"data: [DONE]\n\n", &mut out).unwrap();
            t.finish(&mut out).unwrap();
            let text = String::from_utf8(out.to_vec()).unwrap();
            text.split("\n\n")
                .filter_map(|l| l.strip_prefix("data: "))
                .filter(|d| *d != "[DONE]")
                .map(|d| serde_json::from_str::<Value>(d).unwrap())
                .collect::<Vec<_>>()
        };
        let fast = run(true);
        let slow = run(false);
        assert_eq!(fast.len(), slow.len());
        for (f, s) in fast.iter().zip(&slow) {
            assert_eq!(f, s);
        }
        assert_eq!(fast.last().unwrap()["usage"]["total_tokens"], 3);
    }

    #[test]
    fn case_14_mistral_whitelist_seed_ids() {
        let input = br#"{"model":"mistral-large-latest","stream":true,"stream_options":{"include_usage":true},
 "seed":7,"max_completion_tokens":300,"user":"u1",
 "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}],
 "messages":[
   {"role":"developer","content":"Be concise."},
   {"role":"user","name":"bob","content":"Weather in Paris?"},
   {"role":"assistant","content":null,"tool_calls":[{"id":"toolu_01A","type":"function",
      "function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
   {"role":"tool","tool_call_id":"toolu_01A","content":"18C"}]}"#;
        let (o, im) = (Options::default(), HashMap::new());
        let mut c = ctx(Kind::Mistral, "mistral-large-latest", &o, &im);
        c.stream = true;
        c.include_usage = true;
        let r = build_request(input, &c).unwrap();
        let expected: Value = serde_json::from_str(r#"{"model":"mistral-large-latest","stream":true,"random_seed":7,"max_tokens":300,
 "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}],
 "messages":[
   {"role":"system","content":"Be concise."},
   {"role":"user","content":"Weather in Paris?"},
   {"role":"assistant","tool_calls":[{"id":"LW18z8Xdz","type":"function",
      "function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
   {"role":"tool","tool_call_id":"LW18z8Xdz","content":"18C"}]}"#).unwrap();
        assert_eq!(body_json(&r), expected);
        assert_eq!(r.path, "/chat/completions");
        assert_eq!(r.notes.dropped, vec!["user"]);
        assert!(r.notes.adjusted.is_empty());
    }

    #[test]
    fn case_15_ollama_tokens_images_tool_choice_none() {
        let input = br#"{"model":"llama3.2-vision","max_completion_tokens":128,"tool_choice":"none",
 "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{}}}}],
 "messages":[{"role":"user","content":[{"type":"text","text":"What is this?"},
   {"type":"image_url","image_url":{"url":"https://example.com/cat.jpg"}}]}]}"#;
        let o = Options::default();
        let mut im = HashMap::new();
        im.insert(
            "https://example.com/cat.jpg".to_string(),
            ("image/jpeg".to_string(), "/9j/4A==".to_string()),
        );
        let r = build_request(input, &ctx(Kind::Ollama, "llama3.2-vision", &o, &im)).unwrap();
        let expected: Value = serde_json::from_str(
            r#"{"model":"llama3.2-vision","max_tokens":128,
 "messages":[{"role":"user","content":[{"type":"text","text":"What is this?"},
   {"type":"image_url","image_url":{"url":"data:image/jpeg;base64,/9j/4A=="}}]}]}"#,
        )
        .unwrap();
        assert_eq!(body_json(&r), expected);
        assert_eq!(r.notes, Notes::default());
        // Without the fetched image the request is refused, not sent with a URL Ollama rejects.
        let none = HashMap::new();
        let e = build_request(input, &ctx(Kind::Ollama, "llama3.2-vision", &o, &none)).unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(e.param.as_deref(), Some("messages[0].content[1].image_url.url"));
    }

    #[test]
    fn case_16_lmstudio_json_object() {
        let input = br#"{"model":"qwen2.5-7b-instruct","response_format":{"type":"json_object"},
 "messages":[{"role":"user","content":"Return a JSON object with a greeting."}]}"#;
        let (o, im) = (Options::default(), HashMap::new());
        let r = build_request(input, &ctx(Kind::Lmstudio, "qwen2.5-7b-instruct", &o, &im)).unwrap();
        let expected: Value = serde_json::from_str(
            r#"{"model":"qwen2.5-7b-instruct",
 "response_format":{"type":"json_schema","json_schema":{"name":"object","schema":{"type":"object"}}},
 "messages":[{"role":"user","content":"Return a JSON object with a greeting."}]}"#,
        )
        .unwrap();
        assert_eq!(body_json(&r), expected);
        assert_eq!(r.notes, Notes::default());
    }

    #[test]
    fn openai_passthrough_rewrites_only_the_model() {
        let input = br#"{"messages":[{"role":"user","content":"hi"}],"model":"openai/gpt-4o","temperature":0.5,"custom":{"a":[1,2]}}"#;
        let (o, im) = (Options::default(), HashMap::new());
        let mut c = ctx(Kind::Openai, "openai/gpt-4o", &o, &im);
        c.upstream_model = "gpt-4o";
        let r = build_request(input, &c).unwrap();
        let v = body_json(&r);
        assert_eq!(v["model"], "gpt-4o");
        assert_eq!(v["temperature"], 0.5);
        assert_eq!(v["custom"]["a"][1], 2);
        assert_eq!(v["messages"][0]["content"], "hi");
    }

    #[test]
    fn ollama_rejects_n() {
        let (o, im) = (Options::default(), HashMap::new());
        let e = build_request(
            br#"{"model":"x","n":2,"messages":[]}"#,
            &ctx(Kind::Ollama, "x", &o, &im),
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("n"));
        assert_eq!(e.code.as_deref(), Some("unsupported_parameter"));
    }

    fn run_stream(kind: Kind, include_usage: bool, input: &str, pieces: &[usize]) -> Result<String> {
        let (o, im) = (Options::default(), HashMap::new());
        let mut c = ctx(kind, "m", &o, &im);
        c.stream = true;
        c.include_usage = include_usage;
        let model = match kind {
            Kind::Mistral => "mistral-large-latest",
            _ => "qwen3-8b",
        };
        c.client_model = model;
        let mut t = stream_translator(&c);
        let mut out = BytesMut::new();
        let bytes = input.as_bytes();
        let mut pos = 0;
        let mut i = 0;
        while pos < bytes.len() {
            let n = pieces
                .get(i % pieces.len().max(1))
                .copied()
                .unwrap_or(bytes.len())
                .max(1);
            let end = (pos + n).min(bytes.len());
            t.feed(&bytes[pos..end], &mut out)?;
            pos = end;
            i += 1;
        }
        t.finish(&mut out)?;
        Ok(String::from_utf8(out.to_vec()).unwrap())
    }

    fn events(s: &str) -> Vec<Value> {
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

    fn chunk(id: &str, model: &str, choices: Value, usage: Option<Value>) -> Value {
        let mut v = json!({"id": id, "object": "chat.completion.chunk", "created": 1_767_225_600u64, "model": model, "choices": choices});
        if let Some(u) = usage {
            v["usage"] = u;
        }
        v
    }

    const CASE_35: &str = "data: {\"id\":\"cmpl-m35\",\"object\":\"chat.completion.chunk\",\"created\":1760000000,\"model\":\"mistral-large-latest\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\ndata: {\"id\":\"cmpl-m35\",\"object\":\"chat.completion.chunk\",\"created\":1760000000,\"model\":\"mistral-large-latest\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"id\":\"D681PevKs\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\": \\\"Paris\\\"}\"},\"index\":0}]},\"finish_reason\":\"tool_calls\"}],\"usage\":{\"prompt_tokens\":90,\"total_tokens\":112,\"completion_tokens\":22}}\n\ndata: [DONE]\n\n";

    #[test]
    fn case_35_mistral_tool_finish_usage_split() {
        let m = "mistral-large-latest";
        for include_usage in [true, false] {
            let u = include_usage.then_some(Value::Null);
            let mut expected = vec![
                chunk(
                    "cmpl-m35",
                    m,
                    json!([{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]),
                    u.clone(),
                ),
                chunk(
                    "cmpl-m35",
                    m,
                    json!([{"index":0,"delta":{"tool_calls":[{"index":0,"id":"D681PevKs","type":"function","function":{"name":"get_weather","arguments":"{\"city\": \"Paris\"}"}}]},"logprobs":null,"finish_reason":null}]),
                    u.clone(),
                ),
                chunk(
                    "cmpl-m35",
                    m,
                    json!([{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}]),
                    u.clone(),
                ),
            ];
            if include_usage {
                expected.push(chunk(
                    "cmpl-m35",
                    m,
                    json!([]),
                    Some(json!({"prompt_tokens":90,"completion_tokens":22,"total_tokens":112})),
                ));
            }
            expected.push(json!("DONE"));
            for pieces in [&[usize::MAX][..], &[1], &[3, 17, 5]] {
                let out = run_stream(Kind::Mistral, include_usage, CASE_35, pieces).unwrap();
                assert_eq!(
                    events(&out),
                    expected,
                    "include_usage={include_usage} pieces={pieces:?}"
                );
            }
        }
    }

    #[test]
    fn case_36_vllm_parallel_tool_index_repair() {
        let up = [
            r#"{"id":"chatcmpl-v36","object":"chat.completion.chunk","created":1760000000,"model":"qwen3-8b","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}"#,
            r#"{"id":"chatcmpl-v36","object":"chat.completion.chunk","created":1760000000,"model":"qwen3-8b","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"chatcmpl-tool-1","type":"function","function":{"name":"get_weather","arguments":""}}]},"logprobs":null,"finish_reason":null}]}"#,
            r#"{"id":"chatcmpl-v36","object":"chat.completion.chunk","created":1760000000,"model":"qwen3-8b","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\": \"Paris\"}"}}]},"logprobs":null,"finish_reason":null}]}"#,
            r#"{"id":"chatcmpl-v36","object":"chat.completion.chunk","created":1760000000,"model":"qwen3-8b","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"chatcmpl-tool-2","type":"function","function":{"name":"get_time","arguments":""}}]},"logprobs":null,"finish_reason":null}]}"#,
            r#"{"id":"chatcmpl-v36","object":"chat.completion.chunk","created":1760000000,"model":"qwen3-8b","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]},"logprobs":null,"finish_reason":null}]}"#,
            r#"{"id":"chatcmpl-v36","object":"chat.completion.chunk","created":1760000000,"model":"qwen3-8b","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}]}"#,
            "[DONE]",
        ];
        let input: String = up.iter().map(|d| format!("data: {d}\n\n")).collect();
        let m = "qwen3-8b";
        let expected = vec![
            chunk(
                "chatcmpl-v36",
                m,
                json!([{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]),
                None,
            ),
            chunk(
                "chatcmpl-v36",
                m,
                json!([{"index":0,"delta":{"tool_calls":[{"index":0,"id":"chatcmpl-tool-1","type":"function","function":{"name":"get_weather","arguments":""}}]},"logprobs":null,"finish_reason":null}]),
                None,
            ),
            chunk(
                "chatcmpl-v36",
                m,
                json!([{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\": \"Paris\"}"}}]},"logprobs":null,"finish_reason":null}]),
                None,
            ),
            chunk(
                "chatcmpl-v36",
                m,
                json!([{"index":0,"delta":{"tool_calls":[{"index":1,"id":"chatcmpl-tool-2","type":"function","function":{"name":"get_time","arguments":""}}]},"logprobs":null,"finish_reason":null}]),
                None,
            ),
            chunk(
                "chatcmpl-v36",
                m,
                json!([{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{}"}}]},"logprobs":null,"finish_reason":null}]),
                None,
            ),
            chunk(
                "chatcmpl-v36",
                m,
                json!([{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}]),
                None,
            ),
            json!("DONE"),
        ];
        for pieces in [&[usize::MAX][..], &[1], &[7, 2, 31]] {
            let out = run_stream(Kind::Vllm, false, &input, pieces).unwrap();
            assert_eq!(events(&out), expected, "pieces={pieces:?}");
        }
    }

    #[test]
    fn truncated_and_inband_errors() {
        let partial = "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}]}\n\n";
        let e = run_stream(Kind::Openai, false, partial, &[5]).unwrap_err();
        assert_eq!(e.code.as_deref(), Some("upstream_stream_truncated"));
        let e = run_stream(Kind::Openai, false, "", &[5]).unwrap_err();
        assert_eq!(e.status, 502);
        let inband = "data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\",\"code\":503}}\n\n";
        let e = run_stream(Kind::Vllm, false, inband, &[4]).unwrap_err();
        assert_eq!(e.status, 503);
        assert_eq!(e.message, "boom");
        let garbage = "data: {not json\n\n";
        assert_eq!(run_stream(Kind::Openai, false, garbage, &[3]).unwrap_err().status, 502);
    }

    #[test]
    fn error_shapes_normalize() {
        let h = http::HeaderMap::new();
        // vLLM's older unwrapped shape.
        let e = translate_error(Kind::Vllm, 400, &h, br#"{"object":"error","message":"This model's maximum context length is 8192 tokens","type":"BadRequestError","param":null,"code":400}"#, 0);
        assert_eq!(e.code.as_deref(), Some("context_length_exceeded"));
        // LM Studio's string error.
        let e = translate_error(
            Kind::Lmstudio,
            400,
            &h,
            br#"{"error":"'response_format.type' must be 'json_schema' or 'text'"}"#,
            0,
        );
        assert!(e.message.contains("json_schema"));
        assert_eq!(e.kind, "invalid_request_error");
        // Mistral 422 with a detail object as message.
        let e = translate_error(
            Kind::Mistral,
            422,
            &h,
            br#"{"object":"error","message":{"detail":[{"type":"extra_forbidden"}]},"type":"invalid_request_error"}"#,
            0,
        );
        assert_eq!(e.status, 400);
        assert!(e.message.contains("extra_forbidden"));
        // Ollama model not pulled.
        let e = translate_error(
            Kind::Ollama,
            404,
            &h,
            br#"{"error":{"message":"model 'x' not found","type":"api_error"}}"#,
            0,
        );
        assert_eq!(e.code.as_deref(), Some("model_not_found"));
        // HTML from a proxy in front of the server.
        let e = translate_error(Kind::Openai, 502, &h, b"<html>bad gateway</html>", 0);
        assert_eq!(e.status, 502);
        assert!(!e.message.contains('<'));
    }

    #[test]
    fn mistral_id_rule() {
        assert_eq!(mistral_tool_id("toolu_01A"), "LW18z8Xdz");
        assert_eq!(mistral_tool_id("D681PevKs"), "D681PevKs");
    }

    #[test]
    fn base64_embeddings_are_le_f32() {
        let mut v = json!({"data":[{"embedding":[1.0, -2.5]}]});
        embeddings_to_base64(&mut v);
        let b = base64::engine::general_purpose::STANDARD
            .decode(v["data"][0]["embedding"].as_str().unwrap())
            .unwrap();
        assert_eq!(&b[0..4], &1.0f32.to_le_bytes());
        assert_eq!(&b[4..8], &(-2.5f32).to_le_bytes());
    }
}

#[cfg(test)]
mod fuzz_regressions {
    use super::*;
    use crate::providers::Options;

    fn ctx_for<'a>(kind: Kind, o: &'a Options, im: &'a HashMap<String, (String, String)>) -> Ctx<'a> {
        Ctx {
            provider: kind.as_str(),
            kind,
            endpoint: Endpoint::Chat,
            client_model: "m",
            upstream_model: "m",
            stream: true,
            include_usage: true,
            created: 1,
            fallback_id: "chatcmpl-x",
            id_seed: 1,
            options: o,
            embed_base64: false,
            images: im,
        }
    }

    #[test]
    fn lone_surrogates_are_refused_pairs_pass() {
        let (o, im) = (Options::default(), HashMap::new());
        for kind in Kind::ALL.into_iter().filter(|k| k.is_openai_compatible()) {
            let e = build_request(br#"{"moho":"\udeaees}:}"}"#, &ctx_for(kind, &o, &im)).unwrap_err();
            assert_eq!(e.status, 400);
            assert!(build_request(br#"{"a":"\ud83d"}"#, &ctx_for(kind, &o, &im)).is_err());
            // A proper pair, an escaped backslash before `u`, and plain escapes pass.
            let ok = build_request(br#"{"stop":"\ud83d\ude00 \\udead \u00e9 \n"}"#, &ctx_for(kind, &o, &im)).unwrap();
            let v: Value = serde_json::from_slice(&ok.body.contiguous()).unwrap();
            assert_eq!(v["stop"], "😀 \\udead é \n");
        }
    }
}

#[cfg(test)]
mod fuzz_split_regression {
    use super::*;
    use crate::providers::Options;

    fn run(data: &[u8], piece: usize) -> (Result<()>, bool, String) {
        let (o, im) = (Options::default(), HashMap::new());
        let c = Ctx {
            provider: "openai",
            kind: Kind::Openai,
            endpoint: Endpoint::Chat,
            client_model: "m",
            upstream_model: "m",
            stream: true,
            include_usage: false,
            created: 1,
            fallback_id: "chatcmpl-x",
            id_seed: 1,
            options: &o,
            embed_base64: false,
            images: &im,
        };
        let mut t = stream_translator(&c);
        let mut out = BytesMut::new();
        let mut r = Ok(());
        for p in data.chunks(piece) {
            r = t.feed(p, &mut out);
            if r.is_err() {
                break;
            }
        }
        if r.is_ok() {
            r = t.finish(&mut out);
        }
        (r, t.committed(), String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn split_and_whole_agree() {
        let raw = include_bytes!("../../fuzz/regressions/stream_openai/split-commit-divergence");
        let data = &raw[3..];
        let whole = run(data, data.len());
        let split = run(data, 255);
        assert_eq!(
            whole.1, split.1,
            "committed differs\nwhole: {whole:?}\nsplit: {split:?}"
        );
        assert_eq!(whole, split);
    }
}

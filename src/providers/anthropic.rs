//! Anthropic Messages API (`providers.md` §2). OpenAI chat requests become `POST /v1/messages`;
//! messages, stream events, errors and the model list come back in OpenAI shapes.

use std::collections::HashMap;

use base64::Engine;
use bytes::{Bytes, BytesMut};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::util::{self, ChunkEmitter};
use super::{Ctx, Endpoint, Notes, StreamTranslator, Translated, UpstreamRequest, Usage};
use crate::error::{GatewayError, Result};
use crate::sse;

const API_VERSION: &str = "2023-06-01";
const MESSAGES_PATH: &str = "/v1/messages";
const IMAGE_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];
/// The forced tool that emulates `response_format` on models without structured outputs
/// (§2.6). The response side recognises it by name, since translation is stateless.
const JSON_TOOL: &str = "json_tool_call";
const HOISTED: &str = "system_message_hoisted";

// ---------------------------------------------------------------------------------------------
// Request (§2.2 – §2.6)
// ---------------------------------------------------------------------------------------------

/// Top-level request members in the client's order: notes are reported in request order.
struct Fields(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> std::result::Result<Fields, M::Error> {
                let mut out: Vec<(String, Value)> = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, Value>()? {
                    // Last duplicate wins, as in every JSON parser the clients use.
                    match out.iter_mut().find(|(name, _)| *name == k) {
                        Some(slot) => slot.1 = v,
                        None => out.push((k, v)),
                    }
                }
                Ok(Fields(out))
            }
        }
        d.deserialize_map(FieldsVisitor)
    }
}

impl Fields {
    /// A member, with `null` treated as absent (clients send explicit nulls for defaults).
    fn get(&self, key: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .filter(|v| !v.is_null())
    }
}

fn bad(param: impl Into<String>, message: impl Into<String>) -> GatewayError {
    GatewayError::invalid_request(message).with_param(param)
}

/// A value sent differently than requested: reported, or refused in strict mode.
fn adjust_or_reject(notes: &mut Notes, strict: bool, param: &str, provider: &str) -> Result<()> {
    if strict {
        return Err(GatewayError::unsupported_param(
            param,
            format!("The value of {param} is outside what provider {provider} accepts"),
        ));
    }
    notes.adjust(param);
    Ok(())
}

fn unsupported(param: &str, provider: &str) -> GatewayError {
    GatewayError::unsupported_param(param, format!("{param} is not supported by provider {provider}"))
}

/// What a model accepts, derived from its name because the configuration carries no
/// per-model capability table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ModelCaps {
    /// `output_config.format` (structured outputs), else the forced-tool emulation.
    structured_outputs: bool,
    /// The model rejects `temperature` and `top_p` together.
    sampling_exclusive: bool,
}

fn model_caps(model: &str) -> ModelCaps {
    match claude_version(model) {
        Some((family, major, minor)) => {
            let v = (major, minor);
            ModelCaps {
                structured_outputs: v >= (4, 5),
                sampling_exclusive: if family == "opus" { v >= (4, 1) } else { v >= (4, 5) },
            }
        }
        // A name we cannot read is most likely a model newer than this table.
        None => ModelCaps {
            structured_outputs: true,
            sampling_exclusive: true,
        },
    }
}

/// `(family, major, minor)` from both naming schemes: `claude-sonnet-4-5-20250929` and
/// `claude-3-5-sonnet-20241022` (also with Bedrock/Vertex prefixes and `@date` suffixes).
fn claude_version(model: &str) -> Option<(&str, u32, u32)> {
    let rest = &model[model.find("claude-")? + "claude-".len()..];
    let parts: Vec<&str> = rest.split(['-', '@', '.', ':']).collect();
    // Dates (8 digits) are not version numbers.
    let num = |s: &str| {
        if s.len() <= 2 {
            s.parse::<u32>().ok()
        } else {
            None
        }
    };
    let is_family = |s: &str| matches!(s, "opus" | "sonnet" | "haiku" | "instant");
    let first = *parts.first()?;
    if is_family(first) {
        let major = num(parts.get(1)?)?;
        let minor = parts.get(2).and_then(|s| num(s)).unwrap_or(0);
        Some((first, major, minor))
    } else {
        let major = num(first)?;
        let minor = parts.get(1).and_then(|s| num(s)).unwrap_or(0);
        let family = parts.iter().copied().find(|s| is_family(s)).unwrap_or("");
        Some((family, major, minor))
    }
}

pub fn build_request(body: &[u8], ctx: &Ctx) -> Result<UpstreamRequest> {
    if ctx.endpoint == Endpoint::Embeddings {
        return Err(bad(
            "model",
            format!(
                "Provider {} (Anthropic) does not offer embeddings; route embeddings to another provider",
                ctx.provider
            ),
        )
        .with_code("model_not_supported"));
    }
    let fields: Fields = serde_json::from_slice(body)
        .map_err(|e| GatewayError::invalid_request(format!("Request body is not a JSON object: {e}")))?;
    let strict = ctx.options.strict;
    let provider = ctx.provider;
    let caps = model_caps(ctx.upstream_model);
    let mut notes = Notes::default();
    let mut out = Map::new();
    out.insert("model".into(), json!(ctx.upstream_model));

    for (k, v) in &fields.0 {
        if v.is_null() {
            continue;
        }
        match k.as_str() {
            // Handled below, or gateway-only.
            "model"
            | "messages"
            | "stream"
            | "stream_options"
            | "prism"
            | "max_tokens"
            | "max_completion_tokens"
            | "tools"
            | "tool_choice"
            | "parallel_tool_calls"
            | "response_format" => {}
            "temperature" => {
                let t = v
                    .as_f64()
                    .ok_or_else(|| bad("temperature", "temperature must be a number"))?;
                if !(0.0..=2.0).contains(&t) {
                    return Err(bad("temperature", "temperature must be between 0 and 2"));
                }
                if t > 1.0 {
                    adjust_or_reject(&mut notes, strict, "temperature", provider)?;
                    out.insert("temperature".into(), json!(1));
                } else {
                    out.insert("temperature".into(), v.clone());
                }
            }
            "top_p" => {
                if v.as_f64().is_none() {
                    return Err(bad("top_p", "top_p must be a number"));
                }
                if caps.sampling_exclusive && fields.get("temperature").is_some() {
                    notes.drop_or_reject(strict, "top_p", provider)?;
                } else {
                    out.insert("top_p".into(), v.clone());
                }
            }
            "top_k" => {
                if v.as_u64().is_none() {
                    return Err(bad("top_k", "top_k must be a non-negative integer"));
                }
                out.insert("top_k".into(), v.clone());
            }
            "stop" => {
                if let Some(stops) = stop_sequences(v, &mut notes, strict, provider)? {
                    out.insert("stop_sequences".into(), stops);
                }
            }
            "n" => match v.as_u64() {
                Some(1) => {}
                Some(n) if n > 1 => {
                    return Err(GatewayError::unsupported_param(
                        "n",
                        format!("n > 1 is not supported by provider {provider}"),
                    ))
                }
                _ => return Err(bad("n", "n must be a positive integer")),
            },
            "presence_penalty" | "frequency_penalty" => {
                if v.as_f64() != Some(0.0) {
                    notes.drop_or_reject(strict, k, provider)?;
                }
            }
            "logit_bias" => {
                if v.as_object().is_none_or(|m| !m.is_empty()) {
                    return Err(unsupported(k, provider));
                }
            }
            "logprobs" => {
                if v.as_bool() != Some(false) {
                    return Err(unsupported(k, provider));
                }
            }
            "top_logprobs" => {
                if v.as_u64() != Some(0) {
                    return Err(unsupported(k, provider));
                }
            }
            "audio" => return Err(unsupported(k, provider)),
            "modalities" => {
                let audio = v
                    .as_array()
                    .is_some_and(|a| a.iter().any(|m| m.as_str() != Some("text")));
                if audio {
                    return Err(unsupported(k, provider));
                }
            }
            "functions" | "function_call" => {
                return Err(GatewayError::unsupported_param(
                    k,
                    format!("{k} is deprecated and not supported by provider {provider}; use tools and tool_choice"),
                ))
            }
            // `safety_identifier` is OpenAI's successor of `user`; both identify the end user.
            "user" | "safety_identifier" => {
                let user = v
                    .as_str()
                    .ok_or_else(|| bad(k.as_str(), format!("{k} must be a string")))?;
                if !user.is_empty() {
                    let id = opaque_user_id(user);
                    if id != user {
                        notes.adjust(k);
                    }
                    out.insert("metadata".into(), json!({"user_id": id}));
                }
            }
            // `seed`, `metadata`, `store`, `service_tier`, `reasoning_effort`, `prediction`,
            // `web_search_options` and vendor fields: Anthropic rejects unknown members.
            _ => notes.drop_or_reject(strict, k, provider)?,
        }
    }

    let max_tokens = match fields
        .get("max_completion_tokens")
        .map(|v| ("max_completion_tokens", v))
    {
        Some(pair) => Some(pair),
        None => fields.get("max_tokens").map(|v| ("max_tokens", v)),
    };
    let max_tokens = match max_tokens {
        Some((param, v)) => match v.as_u64() {
            Some(n) if n >= 1 => n,
            _ => return Err(bad(param, format!("{param} must be a positive integer"))),
        },
        None => ctx.options.default_max_tokens,
    };
    out.insert("max_tokens".into(), json!(max_tokens));

    let messages = fields
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("messages", "messages must be a non-empty array"))?;
    let conv = Converter { provider }.convert(messages)?;
    if conv.hoisted {
        notes.warn(HOISTED);
    }
    if !conv.system.is_empty() {
        out.insert("system".into(), Value::Array(conv.system));
    }
    out.insert("messages".into(), Value::Array(conv.messages));

    let format = response_format(fields.get("response_format"), caps)?;
    if let Format::Native(schema) = &format {
        out.insert(
            "output_config".into(),
            json!({"format": {"type": "json_schema", "schema": schema}}),
        );
    }
    let (tools, tool_choice) = tools_and_choice(&fields, &conv.tool_names, format)?;
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(tc) = tool_choice {
        out.insert("tool_choice".into(), tc);
    }
    if ctx.stream {
        out.insert("stream".into(), json!(true));
    }

    let body = serde_json::to_vec(&Value::Object(out)).map_err(|e| GatewayError::internal(e.to_string()))?;
    Ok(UpstreamRequest {
        method: "POST",
        path: MESSAGES_PATH.to_string(),
        body: Bytes::from(body).into(),
        headers: vec![("anthropic-version", API_VERSION.to_string())],
        notes,
    })
}

/// `stop` → `stop_sequences`; whitespace-only entries are removed because Anthropic rejects
/// them. `None` when nothing is left.
fn stop_sequences(v: &Value, notes: &mut Notes, strict: bool, provider: &str) -> Result<Option<Value>> {
    let list: Vec<&str> = match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a
            .iter()
            .map(|s| {
                s.as_str()
                    .ok_or_else(|| bad("stop", "stop must be a string or an array of strings"))
            })
            .collect::<Result<_>>()?,
        _ => return Err(bad("stop", "stop must be a string or an array of strings")),
    };
    let kept: Vec<&str> = list.iter().copied().filter(|s| !s.trim().is_empty()).collect();
    if kept.len() != list.len() {
        adjust_or_reject(notes, strict, "stop", provider)?;
    }
    Ok((!kept.is_empty()).then(|| json!(kept)))
}

/// Anthropic wants an opaque id: emails, phone numbers and over-long values are hashed.
fn opaque_user_id(user: &str) -> String {
    let digits = user.chars().filter(char::is_ascii_digit).count();
    let phone_like = digits >= 7 && user.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c));
    if user.contains('@') || phone_like || user.len() > 256 {
        let digest = Sha256::digest(user.as_bytes());
        digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
    } else {
        user.to_string()
    }
}

enum Format {
    None,
    Native(Value),
    /// Forced-tool emulation with this input schema.
    Emulated(Value),
}

fn response_format(v: Option<&Value>, caps: ModelCaps) -> Result<Format> {
    let Some(v) = v else {
        return Ok(Format::None);
    };
    match v["type"].as_str() {
        Some("text") => Ok(Format::None),
        Some("json_schema") => {
            let schema = v["json_schema"]["schema"].as_object().ok_or_else(|| {
                bad(
                    "response_format.json_schema.schema",
                    "response_format.json_schema.schema must be an object",
                )
            })?;
            let schema = Value::Object(schema.clone());
            Ok(if caps.structured_outputs {
                Format::Native(schema)
            } else {
                Format::Emulated(schema)
            })
        }
        // Structured outputs require closed schemas, so "any object" always goes through the tool.
        Some("json_object") => Ok(Format::Emulated(
            json!({"type": "object", "additionalProperties": true}),
        )),
        _ => Err(bad(
            "response_format.type",
            "response_format.type must be text, json_object or json_schema",
        )),
    }
}

fn convert_tools(v: &Value) -> Result<Vec<Value>> {
    let list = v.as_array().ok_or_else(|| bad("tools", "tools must be an array"))?;
    let mut out = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        if t.get("type").is_some_and(|ty| ty != "function") {
            return Err(GatewayError::unsupported_param(
                &format!("tools[{i}].type"),
                "Only function tools are supported by Anthropic translation",
            ));
        }
        let f = t["function"]
            .as_object()
            .ok_or_else(|| bad(format!("tools[{i}].function"), "tool function is required"))?;
        let name = f
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad(format!("tools[{i}].function.name"), "tool name is required"))?;
        let mut tool = Map::new();
        tool.insert("name".into(), json!(name));
        if let Some(d) = f.get("description").and_then(Value::as_str).filter(|d| !d.is_empty()) {
            tool.insert("description".into(), json!(d));
        }
        let schema = match f.get("parameters") {
            None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
            Some(Value::Object(p)) => {
                let mut p = p.clone();
                match p.get("type") {
                    None => {
                        p.insert("type".into(), json!("object"));
                    }
                    Some(ty) if ty == "object" => {}
                    Some(_) => {
                        return Err(bad(
                            format!("tools[{i}].function.parameters"),
                            "tool parameters must be a JSON Schema of type object",
                        ))
                    }
                }
                Value::Object(p)
            }
            Some(_) => {
                return Err(bad(
                    format!("tools[{i}].function.parameters"),
                    "tool parameters must be an object",
                ))
            }
        };
        tool.insert("input_schema".into(), schema);
        if let Some(s) = f.get("strict").filter(|s| s.is_boolean()) {
            tool.insert("strict".into(), s.clone());
        }
        out.push(Value::Object(tool));
    }
    Ok(out)
}

enum Choice {
    Absent,
    Auto,
    Required,
    None,
    Named(String),
    Allowed { required: bool, names: Vec<String> },
}

fn parse_choice(v: Option<&Value>) -> Result<Choice> {
    let Some(v) = v else {
        return Ok(Choice::Absent);
    };
    let invalid = || {
        bad(
            "tool_choice",
            "tool_choice must be auto, none, required, or a named function",
        )
    };
    match v {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(Choice::Auto),
            "required" => Ok(Choice::Required),
            "none" => Ok(Choice::None),
            _ => Err(invalid()),
        },
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("function") => v["function"]["name"]
                .as_str()
                .map(|n| Choice::Named(n.to_string()))
                .ok_or_else(|| bad("tool_choice.function.name", "tool_choice.function.name is required")),
            Some("allowed_tools") => {
                let at = &v["allowed_tools"];
                let required = match at["mode"].as_str() {
                    Some("required") => true,
                    Some("auto") | None => false,
                    Some(_) => return Err(bad("tool_choice.allowed_tools.mode", "mode must be auto or required")),
                };
                let names = at["tools"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|t| t["function"]["name"].as_str().or_else(|| t["name"].as_str()))
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                Ok(Choice::Allowed { required, names })
            }
            _ => Err(invalid()),
        },
        _ => Err(invalid()),
    }
}

/// `tools` and `tool_choice` together: the client's choice, `parallel_tool_calls`, the JSON
/// emulation tool and stub declarations for tools the history uses (§2.3 step 7, §2.5).
fn tools_and_choice(fields: &Fields, history_tools: &[String], format: Format) -> Result<(Vec<Value>, Option<Value>)> {
    let mut tools = match fields.get("tools") {
        Some(v) => convert_tools(v)?,
        None => Vec::new(),
    };
    let choice = parse_choice(fields.get("tool_choice"))?;
    let parallel_off = fields.get("parallel_tool_calls") == Some(&Value::Bool(false));
    if let Choice::Allowed { names, .. } = &choice {
        tools.retain(|t| t["name"].as_str().is_some_and(|n| names.iter().any(|a| a == n)));
        if tools.is_empty() {
            return Err(bad(
                "tool_choice.allowed_tools.tools",
                "allowed_tools names none of the declared tools",
            ));
        }
    }
    let client_tools = !tools.is_empty();
    let mut out_choice = match &choice {
        Choice::Absent => None,
        Choice::Auto => Some(json!({"type": "auto"})),
        Choice::Required => Some(json!({"type": "any"})),
        Choice::None => Some(json!({"type": "none"})),
        Choice::Named(n) => Some(json!({"type": "tool", "name": n})),
        Choice::Allowed { required, .. } => Some(json!({"type": if *required { "any" } else { "auto" }})),
    };
    if !client_tools {
        if !matches!(choice, Choice::Absent | Choice::Auto | Choice::None) {
            return Err(bad("tool_choice", "tool_choice requires tools"));
        }
        out_choice = None;
        // Anthropic refuses tool blocks in the history without declared tools; stubs satisfy
        // it, and `none` keeps the model from calling tools the client did not offer.
        let mut seen: Vec<&str> = Vec::new();
        for name in history_tools {
            if !seen.contains(&name.as_str()) {
                seen.push(name);
                tools.push(json!({"name": name, "input_schema": {"type": "object", "properties": {}}}));
            }
        }
        if !tools.is_empty() {
            out_choice = Some(json!({"type": "none"}));
        }
    }
    if let Format::Emulated(schema) = format {
        out_choice = Some(match (&choice, client_tools) {
            // The model may still call a client tool, or answer through the JSON tool.
            (Choice::Absent | Choice::Auto | Choice::Required | Choice::Allowed { .. }, true) => {
                json!({"type": "any"})
            }
            (Choice::Named(n), true) => json!({"type": "tool", "name": n}),
            _ => json!({"type": "tool", "name": JSON_TOOL}),
        });
        tools.push(json!({
            "name": JSON_TOOL,
            "description": "Respond with a JSON object that matches this schema.",
            "input_schema": schema,
        }));
    }
    if parallel_off && client_tools {
        match out_choice.as_mut().and_then(Value::as_object_mut) {
            Some(c) => {
                if c.get("type").and_then(Value::as_str) != Some("none") {
                    c.insert("disable_parallel_tool_use".into(), json!(true));
                }
            }
            None => out_choice = Some(json!({"type": "auto", "disable_parallel_tool_use": true})),
        }
    }
    Ok((tools, out_choice))
}

/// A message's content on the way to Anthropic: a plain string is kept as such (the form
/// clients and logs expect) until a merge needs blocks.
enum Content {
    Text(String),
    Blocks(Vec<Value>),
}

impl Content {
    fn into_blocks(self) -> Vec<Value> {
        match self {
            Content::Text(s) => vec![json!({"type": "text", "text": s})],
            Content::Blocks(b) => b,
        }
    }
    fn into_value(self) -> Value {
        match self {
            Content::Text(s) => Value::String(s),
            Content::Blocks(b) => Value::Array(b),
        }
    }
}

struct Turn {
    role: &'static str,
    content: Content,
}

struct Converted {
    system: Vec<Value>,
    messages: Vec<Value>,
    /// Tool names used by assistant tool calls in the history, in order.
    tool_names: Vec<String>,
    /// An instruction message came after the conversation started (ordering lost).
    hoisted: bool,
}

fn has_text(s: &str) -> bool {
    !s.trim().is_empty()
}

/// A text block, carrying the vendor `cache_control` of the part it came from.
fn text_block(text: &str, part: Option<&Value>) -> Value {
    let mut b = json!({"type": "text", "text": text});
    copy_cache_control(part, &mut b);
    b
}

fn copy_cache_control(part: Option<&Value>, block: &mut Value) {
    if let Some(cc) = part.and_then(|p| p.get("cache_control")).filter(|c| c.is_object()) {
        block["cache_control"] = cc.clone();
    }
}

struct Converter<'a> {
    provider: &'a str,
}

impl Converter<'_> {
    /// §2.3: instructions hoisted to `system`, tool results grouped first in one user turn,
    /// same-role turns merged, empty parts and turns removed, a trailing prefill trimmed.
    fn convert(&self, msgs: &[Value]) -> Result<Converted> {
        let mut system = Vec::new();
        let mut turns: Vec<Turn> = Vec::new();
        let mut tool_names = Vec::new();
        let mut hoisted = false;
        let mut in_dialog = false;
        for (i, m) in msgs.iter().enumerate() {
            let obj = m
                .as_object()
                .ok_or_else(|| bad(format!("messages[{i}]"), "each message must be an object"))?;
            let role = obj
                .get("role")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("messages[{i}].role"), "message role is required"))?;
            let content = obj.get("content").unwrap_or(&Value::Null);
            match role {
                "system" | "developer" => {
                    let blocks = self.instruction_blocks(content, i)?;
                    if in_dialog && !blocks.is_empty() {
                        hoisted = true;
                    }
                    system.extend(blocks);
                }
                "user" => {
                    in_dialog = true;
                    let c = self.user_content(content, i)?;
                    push_turn(&mut turns, "user", c);
                }
                "assistant" => {
                    in_dialog = true;
                    let blocks = self.assistant_blocks(obj, i, &mut tool_names)?;
                    if !blocks.is_empty() {
                        push_turn(&mut turns, "assistant", Content::Blocks(blocks));
                    }
                }
                "tool" => {
                    in_dialog = true;
                    let block = self.tool_result(obj, i)?;
                    push_turn(&mut turns, "user", Content::Blocks(vec![block]));
                }
                "function" => {
                    return Err(GatewayError::unsupported_param(
                        &format!("messages[{i}].role"),
                        format!(
                            "function messages are not supported by provider {}; use tool messages",
                            self.provider
                        ),
                    ))
                }
                other => {
                    return Err(bad(
                        format!("messages[{i}].role"),
                        format!("unknown message role `{other}`"),
                    ))
                }
            }
        }
        order_tool_results(&mut turns);
        trim_prefill(&mut turns);
        if turns.is_empty() {
            return Err(bad(
                "messages",
                "messages must contain at least one user or assistant message",
            ));
        }
        let messages = turns
            .into_iter()
            .map(|t| json!({"role": t.role, "content": t.content.into_value()}))
            .collect();
        Ok(Converted {
            system,
            messages,
            tool_names,
            hoisted,
        })
    }

    fn instruction_blocks(&self, content: &Value, i: usize) -> Result<Vec<Value>> {
        match content {
            Value::Null => Ok(Vec::new()),
            Value::String(s) => Ok(if has_text(s) {
                vec![text_block(s, None)]
            } else {
                Vec::new()
            }),
            Value::Array(parts) => {
                let mut out = Vec::new();
                for (j, p) in parts.iter().enumerate() {
                    if p["type"] != "text" {
                        return Err(bad(
                            format!("messages[{i}].content[{j}].type"),
                            "system and developer messages may contain only text parts",
                        ));
                    }
                    let text = p["text"].as_str().unwrap_or_default();
                    if has_text(text) {
                        out.push(text_block(text, Some(p)));
                    }
                }
                Ok(out)
            }
            _ => Err(bad(
                format!("messages[{i}].content"),
                "content must be a string or an array of parts",
            )),
        }
    }

    fn user_content(&self, content: &Value, i: usize) -> Result<Content> {
        let empty = || {
            bad(
                format!("messages[{i}].content"),
                "user messages must have non-empty content",
            )
        };
        match content {
            Value::String(s) if has_text(s) => Ok(Content::Text(s.clone())),
            Value::Array(parts) => {
                let mut blocks = Vec::with_capacity(parts.len());
                for (j, p) in parts.iter().enumerate() {
                    if let Some(b) = self.user_part(p, i, j)? {
                        blocks.push(b);
                    }
                }
                if blocks.is_empty() {
                    return Err(empty());
                }
                Ok(Content::Blocks(blocks))
            }
            Value::String(_) | Value::Null => Err(empty()),
            _ => Err(bad(
                format!("messages[{i}].content"),
                "content must be a string or an array of parts",
            )),
        }
    }

    fn user_part(&self, p: &Value, i: usize, j: usize) -> Result<Option<Value>> {
        match p["type"].as_str() {
            Some("text") => {
                let text = p["text"].as_str().unwrap_or_default();
                Ok(has_text(text).then(|| text_block(text, Some(p))))
            }
            Some("image_url") => self.image_block(p, i, j).map(Some),
            Some("file") => self.document_block(p, i, j).map(Some),
            Some("input_audio") => Err(GatewayError::unsupported_param(
                &format!("messages[{i}].content[{j}]"),
                format!("audio input is not supported by provider {}", self.provider),
            )),
            other => Err(bad(
                format!("messages[{i}].content[{j}].type"),
                format!("unsupported content part type `{}`", other.unwrap_or("")),
            )),
        }
    }

    fn image_block(&self, p: &Value, i: usize, j: usize) -> Result<Value> {
        let param = format!("messages[{i}].content[{j}].image_url.url");
        let url = match &p["image_url"] {
            Value::String(s) => Some(s.as_str()),
            v => v["url"].as_str(),
        }
        .ok_or_else(|| bad(&param, "image_url.url is required"))?;
        let source = if url.starts_with("data:") {
            let (mime, data) = util::parse_data_url(url).ok_or_else(|| bad(&param, "malformed base64 data URL"))?;
            let mime = match mime.to_ascii_lowercase().as_str() {
                "" => sniff_image(&data).unwrap_or_default().to_string(),
                "image/jpg" => "image/jpeg".to_string(),
                m => m.to_string(),
            };
            if !IMAGE_TYPES.contains(&mime.as_str()) {
                let shown = if mime.is_empty() { "(unknown)" } else { mime.as_str() };
                return Err(bad(
                    &param,
                    format!(
                        "Unsupported image media type {shown} for provider {} (allowed: {})",
                        self.provider,
                        IMAGE_TYPES.join(", ")
                    ),
                )
                .with_code("unsupported_image_type"));
            }
            json!({"type": "base64", "media_type": mime, "data": data})
        } else {
            let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
            if !(lower.starts_with("https://") || lower.starts_with("http://")) {
                return Err(bad(&param, "image URLs must be http(s) or base64 data URLs"));
            }
            // Anthropic fetches public URLs itself.
            json!({"type": "url", "url": url})
        };
        let mut b = json!({"type": "image", "source": source});
        copy_cache_control(Some(p), &mut b);
        Ok(b)
    }

    fn document_block(&self, p: &Value, i: usize, j: usize) -> Result<Value> {
        let f = &p["file"];
        if f.get("file_id").is_some_and(|v| !v.is_null()) && f.get("file_data").is_none() {
            return Err(GatewayError::unsupported_param(
                &format!("messages[{i}].content[{j}].file.file_id"),
                format!(
                    "file ids are not supported by provider {}; send file_data",
                    self.provider
                ),
            ));
        }
        let param = format!("messages[{i}].content[{j}].file.file_data");
        let data_url = f["file_data"]
            .as_str()
            .ok_or_else(|| bad(&param, "file.file_data is required"))?;
        let (mime, data) =
            util::parse_data_url(data_url).ok_or_else(|| bad(&param, "file_data must be a base64 data URL"))?;
        let source = match mime.to_ascii_lowercase().as_str() {
            "application/pdf" => json!({"type": "base64", "media_type": "application/pdf", "data": data}),
            "text/plain" => {
                let text = base64::engine::general_purpose::STANDARD
                    .decode(data.as_bytes())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| bad(&param, "file_data is not valid base64 UTF-8 text"))?;
                json!({"type": "text", "media_type": "text/plain", "data": text})
            }
            other => {
                return Err(bad(
                    &param,
                    format!(
                        "Unsupported file type {other} for provider {} (allowed: application/pdf, text/plain)",
                        self.provider
                    ),
                )
                .with_code("unsupported_file_type"))
            }
        };
        let mut b = json!({"type": "document", "source": source});
        if let Some(name) = f["filename"].as_str().filter(|n| !n.is_empty()) {
            b["title"] = json!(name);
        }
        copy_cache_control(Some(p), &mut b);
        Ok(b)
    }

    fn assistant_blocks(&self, obj: &Map<String, Value>, i: usize, tool_names: &mut Vec<String>) -> Result<Vec<Value>> {
        let mut blocks = Vec::new();
        match obj.get("content").unwrap_or(&Value::Null) {
            Value::Null => {}
            Value::String(s) => {
                if has_text(s) {
                    blocks.push(text_block(s, None));
                }
            }
            Value::Array(parts) => {
                for (j, p) in parts.iter().enumerate() {
                    let text = match p["type"].as_str() {
                        Some("text") => p["text"].as_str(),
                        Some("refusal") => p["refusal"].as_str(),
                        _ => {
                            return Err(bad(
                                format!("messages[{i}].content[{j}].type"),
                                "assistant messages may contain only text and refusal parts",
                            ))
                        }
                    }
                    .unwrap_or_default();
                    if has_text(text) {
                        blocks.push(text_block(text, Some(p)));
                    }
                }
            }
            _ => {
                return Err(bad(
                    format!("messages[{i}].content"),
                    "content must be a string or an array of parts",
                ))
            }
        }
        if blocks.is_empty() {
            if let Some(r) = obj.get("refusal").and_then(Value::as_str).filter(|r| has_text(r)) {
                blocks.push(text_block(r, None));
            }
        }
        let calls = match obj.get("tool_calls") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Array(a)) => a.as_slice(),
            Some(_) => return Err(bad(format!("messages[{i}].tool_calls"), "tool_calls must be an array")),
        };
        for (j, c) in calls.iter().enumerate() {
            let at = |field: &str| format!("messages[{i}].tool_calls[{j}].{field}");
            if c.get("type").is_some_and(|t| t != "function") {
                return Err(bad(at("type"), "only function tool calls are supported"));
            }
            let id = c["id"]
                .as_str()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| bad(at("id"), "tool call id is required"))?;
            let name = c["function"]["name"]
                .as_str()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| bad(at("function.name"), "tool call function name is required"))?;
            let input = match &c["function"]["arguments"] {
                Value::Null => json!({}),
                Value::String(s) if s.trim().is_empty() => json!({}),
                Value::String(s) => match serde_json::from_str::<Value>(s) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => {
                        return Err(bad(
                            at("function.arguments"),
                            "tool call arguments must be a JSON object",
                        ))
                    }
                },
                v @ Value::Object(_) => v.clone(),
                _ => {
                    return Err(bad(
                        at("function.arguments"),
                        "tool call arguments must be a JSON object",
                    ))
                }
            };
            blocks.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
            tool_names.push(name.to_string());
        }
        Ok(blocks)
    }

    fn tool_result(&self, obj: &Map<String, Value>, i: usize) -> Result<Value> {
        let id = obj
            .get("tool_call_id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad(format!("messages[{i}].tool_call_id"), "tool messages need tool_call_id"))?;
        let content = match obj.get("content").unwrap_or(&Value::Null) {
            Value::Null => json!(""),
            Value::String(s) => json!(s),
            Value::Array(parts) => {
                let mut blocks = Vec::new();
                for (j, p) in parts.iter().enumerate() {
                    match p["type"].as_str() {
                        Some("text") => {
                            let text = p["text"].as_str().unwrap_or_default();
                            if has_text(text) {
                                blocks.push(text_block(text, Some(p)));
                            }
                        }
                        Some("image_url") => blocks.push(self.image_block(p, i, j)?),
                        _ => {
                            return Err(bad(
                                format!("messages[{i}].content[{j}].type"),
                                "tool messages may contain only text and image parts",
                            ))
                        }
                    }
                }
                if blocks.is_empty() {
                    json!("")
                } else {
                    Value::Array(blocks)
                }
            }
            _ => {
                return Err(bad(
                    format!("messages[{i}].content"),
                    "content must be a string or an array of parts",
                ))
            }
        };
        Ok(json!({"type": "tool_result", "tool_use_id": id, "content": content}))
    }
}

fn push_turn(turns: &mut Vec<Turn>, role: &'static str, content: Content) {
    match turns.last_mut() {
        Some(last) if last.role == role => {
            let prev = std::mem::replace(&mut last.content, Content::Blocks(Vec::new()));
            let mut blocks = prev.into_blocks();
            blocks.extend(content.into_blocks());
            last.content = Content::Blocks(blocks);
        }
        _ => turns.push(Turn { role, content }),
    }
}

/// Anthropic wants the `tool_result` blocks first in the user turn, in the order of the
/// preceding assistant's `tool_use` blocks.
fn order_tool_results(turns: &mut [Turn]) {
    for k in 1..turns.len() {
        let (before, after) = turns.split_at_mut(k);
        let turn = &mut after[0];
        let Content::Blocks(blocks) = &mut turn.content else {
            continue;
        };
        if turn.role != "user" || !blocks.iter().any(|b| b["type"] == "tool_result") {
            continue;
        }
        let order: Vec<&str> = match &before[k - 1].content {
            Content::Blocks(prev) => prev
                .iter()
                .filter(|b| b["type"] == "tool_use")
                .filter_map(|b| b["id"].as_str())
                .collect(),
            Content::Text(_) => Vec::new(),
        };
        let (mut results, others): (Vec<Value>, Vec<Value>) = std::mem::take(blocks)
            .into_iter()
            .partition(|b| b["type"] == "tool_result");
        results.sort_by_key(|b| {
            let id = b["tool_use_id"].as_str().unwrap_or_default();
            order.iter().position(|o| *o == id).unwrap_or(usize::MAX)
        });
        results.extend(others);
        *blocks = results;
    }
}

/// A trailing assistant turn is a prefill; Anthropic rejects one that ends in whitespace.
fn trim_prefill(turns: &mut Vec<Turn>) {
    let Some(last) = turns.last_mut() else {
        return;
    };
    if last.role != "assistant" {
        return;
    }
    if let Content::Blocks(blocks) = &mut last.content {
        if let Some(b) = blocks.last_mut().filter(|b| b["type"] == "text") {
            let trimmed = b["text"].as_str().unwrap_or_default().trim_end().to_string();
            if trimmed.is_empty() {
                blocks.pop();
            } else {
                b["text"] = json!(trimmed);
            }
        }
        if blocks.is_empty() {
            turns.pop();
        }
    }
}

/// The media type of a data URL that did not name one, from the image's magic bytes.
fn sniff_image(b64: &str) -> Option<&'static str> {
    // Bytes, not str slicing: invalid (non-ASCII) input must not split a character.
    let prefix = &b64.as_bytes()[..b64.len().min(16)];
    let prefix = &prefix[..prefix.len() - prefix.len() % 4];
    let bytes = base64::engine::general_purpose::STANDARD.decode(prefix).ok()?;
    if bytes.starts_with(&[0x89, b'P', b'N', b'G']) {
        Some("image/png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF8") {
        Some("image/gif")
    } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Response (§2.7)
// ---------------------------------------------------------------------------------------------

/// Token counts merged field by field: stream events repeat some and add others (§2.8).
#[derive(Debug, Clone, Default)]
struct Tokens {
    seen: bool,
    input: Option<u64>,
    cache_write: Option<u64>,
    cache_read: Option<u64>,
    output: Option<u64>,
    thinking: Option<u64>,
    output_details: bool,
}

impl Tokens {
    fn merge(&mut self, u: &Value) {
        if !u.is_object() {
            return;
        }
        self.seen = true;
        for (field, slot) in [
            ("input_tokens", &mut self.input),
            ("cache_creation_input_tokens", &mut self.cache_write),
            ("cache_read_input_tokens", &mut self.cache_read),
            ("output_tokens", &mut self.output),
        ] {
            if let Some(n) = u[field].as_u64() {
                *slot = Some(n);
            }
        }
        if let Some(d) = u.get("output_tokens_details").filter(|d| d.is_object()) {
            self.output_details = true;
            if let Some(n) = d["thinking_tokens"].as_u64() {
                self.thinking = Some(n);
            }
        }
    }

    /// OpenAI's `prompt_tokens` includes cached input; Anthropic's `input_tokens` does not.
    fn usage(&self) -> Usage {
        let prompt = self.input.unwrap_or(0) + self.cache_read.unwrap_or(0) + self.cache_write.unwrap_or(0);
        let completion = self.output.unwrap_or(0);
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
        }
    }

    fn to_json(&self) -> Value {
        let mut v = util::usage_json(&self.usage());
        if self.cache_read.is_some() || self.cache_write.is_some() {
            v["prompt_tokens_details"] = json!({
                "cached_tokens": self.cache_read.unwrap_or(0),
                "cache_write_tokens": self.cache_write.unwrap_or(0),
            });
        }
        if self.output_details {
            v["completion_tokens_details"] = json!({"reasoning_tokens": self.thinking.unwrap_or(0)});
        }
        v
    }
}

fn finish_reason(stop: Option<&str>) -> &'static str {
    match stop {
        Some("end_turn" | "stop_sequence" | "pause_turn") => "stop",
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        other => {
            log::debug!("anthropic: unmapped stop_reason {other:?}, reporting stop");
            "stop"
        }
    }
}

pub fn translate_response(body: &[u8], ctx: &Ctx) -> Result<Translated> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| GatewayError::bad_upstream(format!("{} returned invalid JSON: {e}", ctx.provider)))?;
    if v["type"] == "error" {
        return Err(classify(502, &v["error"], ctx.provider));
    }
    let blocks = v["content"]
        .as_array()
        .ok_or_else(|| GatewayError::bad_upstream(format!("{} returned a message without content", ctx.provider)))?;
    let mut text = String::new();
    let mut calls = Vec::new();
    let mut json_output: Option<String> = None;
    for b in blocks {
        match b["type"].as_str() {
            Some("text") => text.push_str(b["text"].as_str().unwrap_or_default()),
            Some("tool_use") => {
                let name = b["name"].as_str().unwrap_or_default();
                let args = util::arguments_string(b.get("input"));
                if name == JSON_TOOL && json_output.is_none() {
                    json_output = Some(args);
                    continue;
                }
                let id = b["id"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .unwrap_or_else(|| util::gen_id("call_", ctx.id_seed.wrapping_add(calls.len() as u64)));
                calls.push(json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}}));
            }
            // Thinking, server-tool and unknown blocks have no OpenAI field.
            _ => {}
        }
    }
    let stop = v["stop_reason"].as_str();
    let finish = match finish_reason(stop) {
        // The JSON emulation tool (or a tool_use stop without any call) is a plain answer.
        "tool_calls" if calls.is_empty() => "stop",
        f => f,
    };
    let content = match json_output {
        Some(j) => json!(j),
        None if !text.is_empty() => json!(text),
        None if !calls.is_empty() || finish == "content_filter" => Value::Null,
        None => json!(""),
    };
    let mut message = json!({"role": "assistant", "content": content});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let mut tokens = Tokens::default();
    tokens.merge(&v["usage"]);
    let id = v["id"].as_str().filter(|s| !s.is_empty()).unwrap_or(ctx.fallback_id);
    let out = json!({
        "id": id,
        "object": "chat.completion",
        "created": ctx.created,
        "model": ctx.client_model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "usage": tokens.to_json(),
    });
    let body = serde_json::to_vec(&out).map_err(|e| GatewayError::internal(e.to_string()))?;
    Ok(Translated {
        body: Bytes::from(body),
        usage: tokens.seen.then(|| tokens.usage()),
        upstream_model: v["model"].as_str().map(str::to_string),
    })
}

// ---------------------------------------------------------------------------------------------
// Errors (§2.9)
// ---------------------------------------------------------------------------------------------

/// Map an Anthropic error object to the gateway error. The error `type` decides, not the
/// HTTP status: mid-stream errors arrive under a 200.
fn classify(status: u16, err: &Value, provider: &str) -> GatewayError {
    let message = match (err["message"].as_str(), err.as_str()) {
        (Some(m), _) if !m.is_empty() => m.to_string(),
        (_, Some(s)) if !s.is_empty() => s.to_string(),
        _ => format!("{provider} returned an error (HTTP {status})"),
    };
    let typ = err["type"].as_str();
    let effective = match typ {
        Some("invalid_request_error") => 400,
        Some("authentication_error") => 401,
        Some("billing_error") => 402,
        Some("permission_error") => 403,
        Some("not_found_error") => 404,
        Some("conflict_error") => 409,
        Some("request_too_large") => 413,
        Some("rate_limit_error") => 429,
        Some("api_error") => 500,
        Some("timeout_error") => 504,
        Some("overloaded_error") => 529,
        // An unknown error under a success status is still a failed generation.
        _ if status < 400 => 502,
        _ => status,
    };
    let lower = message.to_ascii_lowercase();
    let spend_limit = err["details"]["error_code"] == "enforced_spend_limit_reached"
        || lower.contains("spend limit")
        || lower.contains("usage limit")
        || lower.contains("credit balance");
    let mut e = GatewayError::from_upstream_status(effective, message.clone());
    match effective {
        400 if lower.contains("prompt is too long") || lower.contains("exceed context limit") => {
            e = e.with_code("context_length_exceeded").with_param("messages");
        }
        400 if spend_limit => {
            e = GatewayError::insufficient_quota(400, message).with_code("spend_limit_reached");
        }
        404 => {
            if lower.contains("model") {
                e = e.with_param("model");
            } else {
                e.code = None;
            }
        }
        429 if spend_limit => e = GatewayError::insufficient_quota(429, message),
        _ => {}
    }
    e
}

/// Anthropic's rate-limit headers under OpenAI's names; resets become durations from `now`.
fn ratelimit_headers(headers: &http::HeaderMap, now: u64) -> Vec<(String, String)> {
    const RENAMED: [(&str, &str); 6] = [
        ("anthropic-ratelimit-requests-limit", "x-ratelimit-limit-requests"),
        (
            "anthropic-ratelimit-requests-remaining",
            "x-ratelimit-remaining-requests",
        ),
        ("anthropic-ratelimit-requests-reset", "x-ratelimit-reset-requests"),
        ("anthropic-ratelimit-tokens-limit", "x-ratelimit-limit-tokens"),
        ("anthropic-ratelimit-tokens-remaining", "x-ratelimit-remaining-tokens"),
        ("anthropic-ratelimit-tokens-reset", "x-ratelimit-reset-tokens"),
    ];
    // OpenAI has no input/output split; these keep their own names.
    const KEPT: [&str; 6] = [
        "anthropic-ratelimit-input-tokens-limit",
        "anthropic-ratelimit-input-tokens-remaining",
        "anthropic-ratelimit-input-tokens-reset",
        "anthropic-ratelimit-output-tokens-limit",
        "anthropic-ratelimit-output-tokens-remaining",
        "anthropic-ratelimit-output-tokens-reset",
    ];
    let mut out = Vec::new();
    for (from, to) in RENAMED {
        let Some(v) = util::header_str(headers, from).map(str::trim) else {
            continue;
        };
        let value = if from.ends_with("-reset") {
            match (util::rfc3339_to_unix(v), v.parse::<u64>()) {
                (Some(t), _) => util::duration_string(t.saturating_sub(now)),
                (None, Ok(secs)) => util::duration_string(secs),
                (None, Err(_)) => continue,
            }
        } else {
            v.to_string()
        };
        out.push((to.to_string(), value));
    }
    for name in KEPT {
        if let Some(v) = util::header_str(headers, name) {
            out.push((name.to_string(), v.to_string()));
        }
    }
    out
}

pub fn translate_error(status: u16, headers: &http::HeaderMap, body: &[u8], now: u64) -> GatewayError {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let err = match &v["error"] {
        Value::Null if v["message"].is_string() => json!({"message": v["message"]}),
        Value::Null => {
            // Not Anthropic's JSON (a proxy's HTML page, an empty body): keep readable text only.
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let message = if text.is_empty() || text.starts_with('<') || text.starts_with('{') {
                format!("anthropic returned HTTP {status}")
            } else {
                text.chars().take(500).collect()
            };
            json!({"message": message})
        }
        e => e.clone(),
    };
    let mut e = classify(status, &err, "anthropic");
    if let Some(secs) = util::retry_after(headers, now) {
        e.retry_after = Some(secs);
        e.headers.push(("retry-after".to_string(), secs.to_string()));
    }
    if let Some(ms) = util::header_str(headers, "retry-after-ms") {
        e.headers.push(("retry-after-ms".to_string(), ms.trim().to_string()));
    }
    e.headers.extend(ratelimit_headers(headers, now));
    e
}

// ---------------------------------------------------------------------------------------------
// Streaming (§2.8)
// ---------------------------------------------------------------------------------------------

enum Block {
    Text,
    /// A client tool call: its ordinal among the message's tool calls, whether any argument
    /// bytes went out, and a non-empty `input` from the start event (servers that send the
    /// whole input there instead of as deltas).
    Tool {
        ordinal: usize,
        args_sent: bool,
        start_input: Option<String>,
    },
    /// The JSON emulation tool: its arguments are the answer's content.
    Json {
        sent: bool,
    },
    Other,
}

struct AnthropicStream {
    provider: String,
    decoder: sse::Decoder,
    emitter: ChunkEmitter,
    id_seed: u64,
    blocks: HashMap<u64, Block>,
    tool_calls: usize,
    tokens: Tokens,
    stop_reason: Option<String>,
    upstream_model: Option<String>,
    events: usize,
    done: bool,
    /// Once failed, the stream stays failed with the same error.
    failed: Option<GatewayError>,
}

pub fn stream_translator(ctx: &Ctx) -> Box<dyn StreamTranslator> {
    Box::new(AnthropicStream {
        provider: ctx.provider.to_string(),
        decoder: sse::Decoder::new(),
        emitter: ChunkEmitter::new(ctx.fallback_id, ctx.created, ctx.client_model, ctx.include_usage),
        id_seed: ctx.id_seed,
        blocks: HashMap::new(),
        tool_calls: 0,
        tokens: Tokens::default(),
        stop_reason: None,
        upstream_model: None,
        events: 0,
        done: false,
        failed: None,
    })
}

impl AnthropicStream {
    fn on_event(&mut self, data: &str, out: &mut BytesMut) -> Result<()> {
        if data.is_empty() || data == "[DONE]" {
            return Ok(());
        }
        self.events += 1;
        let v: Value = serde_json::from_str(data)
            .map_err(|e| GatewayError::bad_upstream(format!("{} sent an invalid stream event: {e}", self.provider)))?;
        // The JSON `type` is authoritative; the `event:` line is only a hint (§0.6).
        match v["type"].as_str().unwrap_or_default() {
            "message_start" => {
                let m = &v["message"];
                if !self.emitter.role_sent() {
                    if let Some(id) = m["id"].as_str().filter(|s| !s.is_empty()) {
                        self.emitter.id = id.to_string();
                    }
                }
                if let Some(model) = m["model"].as_str() {
                    self.upstream_model = Some(model.to_string());
                }
                self.tokens.merge(&m["usage"]);
                self.emitter.role(out);
            }
            "content_block_start" => self.block_start(&v, out),
            "content_block_delta" => self.block_delta(&v, out),
            "content_block_stop" => self.block_stop(&v, out),
            "message_delta" => {
                self.tokens.merge(&v["usage"]);
                if let Some(r) = v["delta"]["stop_reason"].as_str() {
                    self.stop_reason = Some(r.to_string());
                }
            }
            "message_stop" => {
                // The finish chunk waits for message_stop so that a stream cut after
                // message_delta never looks like a complete answer.
                let finish = match finish_reason(self.stop_reason.as_deref()) {
                    "tool_calls" if self.tool_calls == 0 => "stop",
                    f => f,
                };
                self.emitter.finish(finish, out);
                self.emitter.usage(self.tokens.to_json(), out);
                self.emitter.done(out);
                self.done = true;
            }
            "error" => return Err(classify(200, &v["error"], &self.provider)),
            // `ping` and event types added after this was written.
            _ => {}
        }
        Ok(())
    }

    fn block_start(&mut self, v: &Value, out: &mut BytesMut) {
        let index = v["index"].as_u64().unwrap_or(0);
        let cb = &v["content_block"];
        let block = match cb["type"].as_str() {
            Some("text") => {
                self.emitter.content(cb["text"].as_str().unwrap_or_default(), out);
                Block::Text
            }
            Some("tool_use") => {
                let name = cb["name"].as_str().unwrap_or_default();
                if name == JSON_TOOL {
                    Block::Json { sent: false }
                } else {
                    let ordinal = self.tool_calls;
                    self.tool_calls += 1;
                    let id = cb["id"]
                        .as_str()
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .unwrap_or_else(|| util::gen_id("call_", self.id_seed.wrapping_add(ordinal as u64)));
                    self.emitter.tool_call_start(ordinal, &id, name, "", out);
                    let start_input = cb
                        .get("input")
                        .and_then(Value::as_object)
                        .filter(|o| !o.is_empty())
                        .map(|o| Value::Object(o.clone()).to_string());
                    Block::Tool {
                        ordinal,
                        args_sent: false,
                        start_input,
                    }
                }
            }
            _ => Block::Other,
        };
        self.blocks.insert(index, block);
    }

    fn block_delta(&mut self, v: &Value, out: &mut BytesMut) {
        let index = v["index"].as_u64().unwrap_or(0);
        let delta = &v["delta"];
        match delta["type"].as_str() {
            Some("text_delta") => self.emitter.content(delta["text"].as_str().unwrap_or_default(), out),
            Some("input_json_delta") => {
                let part = delta["partial_json"].as_str().unwrap_or_default();
                if part.is_empty() {
                    return;
                }
                match self.blocks.get_mut(&index) {
                    Some(Block::Tool { ordinal, args_sent, .. }) => {
                        self.emitter.tool_call_args(*ordinal, part, out);
                        *args_sent = true;
                    }
                    Some(Block::Json { sent }) => {
                        self.emitter.content(part, out);
                        *sent = true;
                    }
                    _ => {}
                }
            }
            // Thinking, signatures and citations have no OpenAI field.
            _ => {}
        }
    }

    fn block_stop(&mut self, v: &Value, out: &mut BytesMut) {
        let index = v["index"].as_u64().unwrap_or(0);
        match self.blocks.get_mut(&index) {
            // A parameterless call must still end as valid JSON (bug #22).
            Some(Block::Tool {
                ordinal,
                args_sent: args_sent @ false,
                start_input,
            }) => {
                let args = start_input.take().unwrap_or_else(|| "{}".to_string());
                self.emitter.tool_call_args(*ordinal, &args, out);
                *args_sent = true;
            }
            Some(Block::Json { sent: sent @ false }) => {
                self.emitter.content("{}", out);
                *sent = true;
            }
            _ => {}
        }
    }

    fn run(&mut self, input: &[u8], out: &mut BytesMut) -> Result<()> {
        let mut events = Vec::new();
        let pushed = self.decoder.push(input, |e| events.push(e));
        for e in events {
            if self.done {
                return Ok(());
            }
            self.on_event(&e.data, out)?;
        }
        pushed
            .map_err(|_| GatewayError::bad_upstream(format!("{} sent a stream event that is too large", self.provider)))
    }
}

impl StreamTranslator for AnthropicStream {
    fn feed(&mut self, input: &[u8], out: &mut BytesMut) -> Result<()> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.done {
            return Ok(());
        }
        let r = self.run(input, out);
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    fn finish(&mut self, out: &mut BytesMut) -> Result<()> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if !self.done {
            if let Some(e) = self.decoder.finish() {
                if let Err(err) = self.on_event(&e.data, out) {
                    self.failed = Some(err.clone());
                    return Err(err);
                }
            }
        }
        if self.done {
            return Ok(());
        }
        let e = if self.events == 0 {
            GatewayError::bad_upstream(format!("{} closed the stream without any event", self.provider))
        } else {
            GatewayError::truncated_stream(format!("{} ended the stream before message_stop", self.provider))
        };
        self.failed = Some(e.clone());
        Err(e)
    }

    fn committed(&self) -> bool {
        self.emitter.committed()
    }

    fn usage(&self) -> Option<Usage> {
        self.tokens.seen.then(|| self.tokens.usage())
    }

    fn upstream_model(&self) -> Option<&str> {
        self.upstream_model.as_deref()
    }
}

// ---------------------------------------------------------------------------------------------
// Models (§2.11)
// ---------------------------------------------------------------------------------------------

/// 1000 is the API's page maximum, so one request normally lists everything.
pub fn models_path() -> &'static str {
    "/v1/models?limit=1000"
}

/// `(id, created)` for every model in a `GET /v1/models` page.
pub fn parse_models(body: &[u8]) -> Result<Vec<(String, u64)>> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| GatewayError::bad_upstream(format!("anthropic returned an invalid model list: {e}")))?;
    let data = v["data"]
        .as_array()
        .ok_or_else(|| GatewayError::bad_upstream("anthropic returned a model list without data"))?;
    Ok(data
        .iter()
        .filter_map(|m| {
            let id = m["id"].as_str()?;
            let created = m["created_at"].as_str().and_then(util::rfc3339_to_unix).unwrap_or(0);
            Some((id.to_string(), created))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{Kind, Options};
    use proptest::prelude::*;

    const CREATED: u64 = 1_767_225_600;
    const MODEL: &str = "claude-sonnet-4-5";

    fn ctx<'a>(opts: &'a Options, images: &'a HashMap<String, (String, String)>) -> Ctx<'a> {
        Ctx {
            provider: "anthropic",
            kind: Kind::Anthropic,
            endpoint: Endpoint::Chat,
            client_model: MODEL,
            upstream_model: MODEL,
            stream: false,
            include_usage: false,
            created: CREATED,
            fallback_id: "chatcmpl-fallback",
            id_seed: 7,
            options: opts,
            embed_base64: false,
            images,
        }
    }

    fn request(input: &str) -> Result<UpstreamRequest> {
        let (o, im) = (Options::default(), HashMap::new());
        build_request(input.as_bytes(), &ctx(&o, &im))
    }

    fn strict_request(input: &str) -> Result<UpstreamRequest> {
        let o = Options {
            strict: true,
            ..Options::default()
        };
        let im = HashMap::new();
        build_request(input.as_bytes(), &ctx(&o, &im))
    }

    fn body(r: &UpstreamRequest) -> Value {
        serde_json::from_slice(&r.body.contiguous()).unwrap()
    }

    fn parse(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    fn notes(dropped: &[&str], adjusted: &[&str], warnings: &[&str]) -> Notes {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        Notes {
            dropped: v(dropped),
            adjusted: v(adjusted),
            warnings: v(warnings),
        }
    }

    fn response(upstream: &str) -> (Value, Translated) {
        let (o, im) = (Options::default(), HashMap::new());
        let t = translate_response(upstream.as_bytes(), &ctx(&o, &im)).unwrap();
        (serde_json::from_slice(&t.body).unwrap(), t)
    }

    #[test]
    fn case_01_system_developer_max_tokens_stop_clamp_drops() {
        let r = request(
            r#"{"model":"claude-sonnet-4-5",
 "messages":[
   {"role":"system","content":"You are a helpful assistant."},
   {"role":"developer","content":"Always answer in one sentence."},
   {"role":"user","content":"What is 2+2?"}],
 "temperature":1.5,
 "stop":["END"," "],
 "seed":42,
 "user":"user-7f3a"}"#,
        )
        .unwrap();
        let expected = parse(
            r#"{"model":"claude-sonnet-4-5",
 "max_tokens":4096,
 "system":[{"type":"text","text":"You are a helpful assistant."},
           {"type":"text","text":"Always answer in one sentence."}],
 "messages":[{"role":"user","content":"What is 2+2?"}],
 "temperature":1,
 "stop_sequences":["END"],
 "metadata":{"user_id":"user-7f3a"}}"#,
        );
        assert_eq!(body(&r), expected);
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/v1/messages");
        assert_eq!(r.headers, vec![("anthropic-version", "2023-06-01".to_string())]);
        assert_eq!(r.notes, notes(&["seed"], &["temperature", "stop"], &[]));
    }

    #[test]
    fn case_02_mid_conversation_system_empty_part_name() {
        let r = request(
            r#"{"model":"claude-sonnet-4-5","max_tokens":100,
 "messages":[
   {"role":"user","content":"Hi"},
   {"role":"assistant","content":"Hello!"},
   {"role":"system","content":[{"type":"text","text":"From now on, reply in German."},{"type":"text","text":""}]},
   {"role":"user","name":"alice","content":"How are you?"}]}"#,
        )
        .unwrap();
        let expected = parse(
            r#"{"model":"claude-sonnet-4-5","max_tokens":100,
 "system":[{"type":"text","text":"From now on, reply in German."}],
 "messages":[
   {"role":"user","content":"Hi"},
   {"role":"assistant","content":[{"type":"text","text":"Hello!"}]},
   {"role":"user","content":"How are you?"}]}"#,
        );
        assert_eq!(body(&r), expected);
        assert_eq!(r.notes, notes(&[], &[], &["system_message_hoisted"]));
    }

    const CASE_04A: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":300,
 "messages":[{"role":"user","content":[
   {"type":"text","text":"Compare these."},
   {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo=","detail":"high"}},
   {"type":"image_url","image_url":{"url":"https://example.com/cat.jpg"}}]}]}"#;

    #[test]
    fn case_04a_images_data_and_remote_url() {
        // The fetched fixture exists, yet Anthropic gets the URL: it fetches images itself.
        let o = Options::default();
        let mut im = HashMap::new();
        im.insert(
            "https://example.com/cat.jpg".to_string(),
            ("image/jpeg".to_string(), "/9j/4A==".to_string()),
        );
        let r = build_request(CASE_04A.as_bytes(), &ctx(&o, &im)).unwrap();
        let expected = parse(
            r#"{"model":"claude-sonnet-4-5","max_tokens":300,
 "messages":[{"role":"user","content":[
   {"type":"text","text":"Compare these."},
   {"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}},
   {"type":"image","source":{"type":"url","url":"https://example.com/cat.jpg"}}]}]}"#,
        );
        assert_eq!(body(&r), expected);
        assert_eq!(r.notes, Notes::default());
    }

    #[test]
    fn case_04b_unsupported_image_type() {
        let input = CASE_04A.replace(
            "data:image/png;base64,iVBORw0KGgo=",
            "data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=",
        );
        let e = request(&input).unwrap_err();
        assert_eq!(e.status, 400);
        let env = e.envelope();
        assert_eq!(env["error"]["type"], "invalid_request_error");
        assert_eq!(env["error"]["param"], "messages[0].content[1].image_url.url");
        assert_eq!(env["error"]["code"], "unsupported_image_type");
        assert_eq!(
            e.message,
            "Unsupported image media type image/svg+xml for provider anthropic (allowed: image/jpeg, image/png, image/gif, image/webp)"
        );
        assert!(!e.retryable);
    }

    #[test]
    fn case_05_tools_required_parallel_parameterless_sampling_max_fields() {
        let r = request(
            r#"{"model":"claude-sonnet-4-5",
 "messages":[{"role":"user","content":"Weather in Paris, and the time?"}],
 "max_tokens":1000, "max_completion_tokens":512,
 "temperature":0.3, "top_p":0.8,
 "tools":[
   {"type":"function","function":{"name":"get_weather","description":"Get weather",
     "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}},
   {"type":"function","function":{"name":"get_time","description":"Current UTC time"}}],
 "tool_choice":"required",
 "parallel_tool_calls":false}"#,
        )
        .unwrap();
        let expected = parse(
            r#"{"model":"claude-sonnet-4-5","max_tokens":512,"temperature":0.3,
 "messages":[{"role":"user","content":"Weather in Paris, and the time?"}],
 "tools":[
   {"name":"get_weather","description":"Get weather",
    "input_schema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}},
   {"name":"get_time","description":"Current UTC time","input_schema":{"type":"object","properties":{}}}],
 "tool_choice":{"type":"any","disable_parallel_tool_use":true}}"#,
        );
        assert_eq!(body(&r), expected);
        assert_eq!(r.notes, notes(&["top_p"], &[], &[]));
    }

    #[test]
    fn case_06_n_greater_than_one_is_rejected() {
        let e =
            request(r#"{"model":"claude-sonnet-4-5","n":2,"messages":[{"role":"user","content":"Give me a name."}]}"#)
                .unwrap_err();
        assert_eq!(e.status, 400);
        assert!(!e.retryable, "the caller turns this into x-should-retry: false");
        assert_eq!(
            e.envelope(),
            parse(
                r#"{"error":{"message":"n > 1 is not supported by provider anthropic","type":"invalid_request_error","param":"n","code":"unsupported_parameter"}}"#
            )
        );
    }

    #[test]
    fn case_07_json_schema_request_and_response() {
        let r = request(
            r#"{"model":"claude-sonnet-4-5","max_tokens":200,
 "messages":[{"role":"user","content":"Extract: Ada Lovelace was 36."}],
 "response_format":{"type":"json_schema","json_schema":{"name":"person","strict":true,
   "schema":{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}},
             "required":["name","age"],"additionalProperties":false}}}}"#,
        )
        .unwrap();
        let expected = parse(
            r#"{"model":"claude-sonnet-4-5","max_tokens":200,
 "messages":[{"role":"user","content":"Extract: Ada Lovelace was 36."}],
 "output_config":{"format":{"type":"json_schema",
   "schema":{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}},
             "required":["name","age"],"additionalProperties":false}}}}"#,
        );
        assert_eq!(body(&r), expected);
        assert_eq!(r.notes, Notes::default());

        let (v, t) = response(
            r#"{"id":"msg_07","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929",
 "content":[{"type":"text","text":"{\"name\":\"Ada Lovelace\",\"age\":36}"}],
 "stop_reason":"end_turn","stop_sequence":null,
 "usage":{"input_tokens":40,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":12}}"#,
        );
        let expected = parse(
            r#"{"id":"msg_07","object":"chat.completion","created":1767225600,"model":"claude-sonnet-4-5",
 "choices":[{"index":0,"message":{"role":"assistant","content":"{\"name\":\"Ada Lovelace\",\"age\":36}"},
             "logprobs":null,"finish_reason":"stop"}],
 "usage":{"prompt_tokens":40,"completion_tokens":12,"total_tokens":52,
          "prompt_tokens_details":{"cached_tokens":0,"cache_write_tokens":0}}}"#,
        );
        assert_eq!(v, expected);
        assert_eq!(t.upstream_model.as_deref(), Some("claude-sonnet-4-5-20250929"));
        assert_eq!(
            t.usage,
            Some(Usage {
                prompt_tokens: 40,
                completion_tokens: 12,
                total_tokens: 52
            })
        );
    }

    #[test]
    fn case_18_stop_sequence() {
        let (v, _) = response(
            r#"{"id":"msg_18","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929",
 "content":[{"type":"text","text":"1, 2, 3, "}],
 "stop_reason":"stop_sequence","stop_sequence":"4",
 "usage":{"input_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":9}}"#,
        );
        let expected = parse(
            r#"{"id":"msg_18","object":"chat.completion","created":1767225600,"model":"claude-sonnet-4-5",
 "choices":[{"index":0,"message":{"role":"assistant","content":"1, 2, 3, "},"logprobs":null,"finish_reason":"stop"}],
 "usage":{"prompt_tokens":12,"completion_tokens":9,"total_tokens":21,
          "prompt_tokens_details":{"cached_tokens":0,"cache_write_tokens":0}}}"#,
        );
        assert_eq!(v, expected);
    }

    #[test]
    fn case_19_refusal() {
        let (v, _) = response(
            r#"{"id":"msg_19","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929",
 "content":[],"stop_reason":"refusal","stop_sequence":null,
 "stop_details":{"type":"refusal","category":"cyber","explanation":null},
 "usage":{"input_tokens":30,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}"#,
        );
        let expected = parse(
            r#"{"id":"msg_19","object":"chat.completion","created":1767225600,"model":"claude-sonnet-4-5",
 "choices":[{"index":0,"message":{"role":"assistant","content":null},"logprobs":null,"finish_reason":"content_filter"}],
 "usage":{"prompt_tokens":30,"completion_tokens":1,"total_tokens":31,
          "prompt_tokens_details":{"cached_tokens":0,"cache_write_tokens":0}}}"#,
        );
        assert_eq!(v, expected);
    }

    // --- streams -------------------------------------------------------------------------

    /// Upstream SSE from (event, data) pairs, the way Anthropic frames it.
    fn sse(events: &[&str]) -> String {
        events
            .iter()
            .map(|d| {
                let v: Value = serde_json::from_str(d).unwrap();
                format!("event: {}\ndata: {d}\n\n", v["type"].as_str().unwrap())
            })
            .collect()
    }

    struct Run {
        out: Vec<u8>,
        result: Result<()>,
        committed: bool,
        usage: Option<Usage>,
        model: Option<String>,
    }

    fn run_pieces(input: &[u8], cuts: &[usize], include_usage: bool) -> Run {
        let (o, im) = (Options::default(), HashMap::new());
        let mut c = ctx(&o, &im);
        c.stream = true;
        c.include_usage = include_usage;
        let mut t = stream_translator(&c);
        let mut out = BytesMut::new();
        let mut start = 0;
        let mut result = Ok(());
        let mut bounds: Vec<usize> = cuts.iter().copied().filter(|&c| c < input.len()).collect();
        bounds.sort_unstable();
        bounds.push(input.len());
        for end in bounds {
            if end < start {
                continue;
            }
            result = t.feed(&input[start..end], &mut out);
            start = end;
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() {
            result = t.finish(&mut out);
        }
        Run {
            out: out.to_vec(),
            result,
            committed: t.committed(),
            usage: t.usage(),
            model: t.upstream_model().map(str::to_string),
        }
    }

    fn run(input: &str, include_usage: bool) -> Run {
        run_pieces(input.as_bytes(), &[], include_usage)
    }

    /// Output events: JSON values, and the string "DONE" for the terminator.
    fn events(out: &[u8]) -> Vec<Value> {
        let s = std::str::from_utf8(out).unwrap();
        assert!(s.is_empty() || s.ends_with("\n\n"), "unterminated output: {s:?}");
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

    /// `C <choices>` of the case notation.
    fn c(id: &str, include_usage: bool, choices: &str) -> Value {
        let mut v = json!({"id": id, "object": "chat.completion.chunk", "created": CREATED, "model": MODEL,
                           "choices": parse(choices)});
        if include_usage {
            v["usage"] = Value::Null;
        }
        v
    }

    /// `U <usage>` of the case notation.
    fn u(id: &str, usage: &str) -> Value {
        json!({"id": id, "object": "chat.completion.chunk", "created": CREATED, "model": MODEL,
               "choices": [], "usage": parse(usage)})
    }

    fn case_24() -> String {
        sse(&[
            r#"{"type":"message_start","message":{"id":"msg_S24","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5-20250929","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            r#"{"type":"ping"}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Once upon"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" a time"}}"#,
            r#"{"type":"content_block_stop","index":0}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"max_tokens","stop_sequence":null},"usage":{"output_tokens":4}}"#,
            r#"{"type":"message_stop"}"#,
        ])
    }

    #[test]
    fn case_24_text_stream_ping_usage_length() {
        let r = run(&case_24(), true);
        r.result.as_ref().unwrap();
        let id = "msg_S24";
        let expected = vec![
            c(
                id,
                true,
                r#"[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]"#,
            ),
            c(
                id,
                true,
                r#"[{"index":0,"delta":{"content":"Once upon"},"logprobs":null,"finish_reason":null}]"#,
            ),
            c(
                id,
                true,
                r#"[{"index":0,"delta":{"content":" a time"},"logprobs":null,"finish_reason":null}]"#,
            ),
            c(
                id,
                true,
                r#"[{"index":0,"delta":{},"logprobs":null,"finish_reason":"length"}]"#,
            ),
            u(
                id,
                r#"{"prompt_tokens":25,"completion_tokens":4,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":0,"cache_write_tokens":0}}"#,
            ),
            json!("DONE"),
        ];
        assert_eq!(events(&r.out), expected);
        assert!(r.out.ends_with(b"data: [DONE]\n\n"));
        assert!(r.committed);
        assert_eq!(
            r.usage,
            Some(Usage {
                prompt_tokens: 25,
                completion_tokens: 4,
                total_tokens: 29
            })
        );
        assert_eq!(r.model.as_deref(), Some("claude-sonnet-4-5-20250929"));
    }

    fn case_25() -> String {
        sse(&[
            r#"{"type":"message_start","message":{"id":"msg_S25","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5-20250929","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Let me check."}}"#,
            r#"{"type":"content_block_stop","index":0}"#,
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1","name":"get_weather","input":{}}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"location\":"}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" \"San"}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" Francisco, CA\""}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":", \"unit\": \"fah"}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"renheit\"}"}}"#,
            r#"{"type":"content_block_stop","index":1}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}"#,
            r#"{"type":"message_stop"}"#,
        ])
    }

    #[test]
    fn case_25_tool_arguments_in_fragments() {
        let r = run(&case_25(), false);
        r.result.as_ref().unwrap();
        let id = "msg_S25";
        let frag = |a: &str| {
            let choices = json!([{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":a}}]},"logprobs":null,"finish_reason":null}]);
            c(id, false, &choices.to_string())
        };
        let expected = vec![
            c(
                id,
                false,
                r#"[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]"#,
            ),
            c(
                id,
                false,
                r#"[{"index":0,"delta":{"content":"Let me check."},"logprobs":null,"finish_reason":null}]"#,
            ),
            c(
                id,
                false,
                r#"[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"toolu_01T1","type":"function","function":{"name":"get_weather","arguments":""}}]},"logprobs":null,"finish_reason":null}]"#,
            ),
            frag("{\"location\":"),
            frag(" \"San"),
            frag(" Francisco, CA\""),
            frag(", \"unit\": \"fah"),
            frag("renheit\"}"),
            c(
                id,
                false,
                r#"[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}]"#,
            ),
            json!("DONE"),
        ];
        let got = events(&r.out);
        assert_eq!(got, expected);
        assert!(!String::from_utf8(r.out).unwrap().contains("usage"));
        let args: String = got
            .iter()
            .filter_map(|e| e["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
            .collect();
        let parsed: Value = serde_json::from_str(&args).unwrap();
        assert_eq!(parsed, json!({"location": "San Francisco, CA", "unit": "fahrenheit"}));
    }

    fn case_27() -> String {
        sse(&[
            r#"{"type":"message_start","message":{"id":"msg_S27","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5-20250929","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":20,"output_tokens":1}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#,
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        ])
    }

    #[test]
    fn case_27_overloaded_mid_stream() {
        let r = run(&case_27(), true);
        let e = r.result.unwrap_err();
        let id = "msg_S27";
        let expected = vec![
            c(
                id,
                true,
                r#"[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]"#,
            ),
            c(
                id,
                true,
                r#"[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}]"#,
            ),
        ];
        // No finish chunk, no usage chunk, no [DONE]: the caller appends the error event.
        assert_eq!(events(&r.out), expected);
        assert!(r.committed);
        let ev = e.sse_event();
        let ev = std::str::from_utf8(&ev).unwrap();
        assert!(ev.starts_with("data: ") && ev.ends_with("\n\n"));
        assert_eq!(
            parse(ev.trim_start_matches("data: ").trim_end()),
            parse(
                r#"{"error":{"message":"Overloaded","type":"service_unavailable","param":null,"code":"overloaded"}}"#
            )
        );
        assert_eq!(e.status, 503);
        assert!(e.retryable);
    }

    fn case_28a() -> String {
        sse(&[r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#])
    }

    const OVERLOADED: &str =
        r#"{"error":{"message":"Overloaded","type":"service_unavailable","param":null,"code":"overloaded"}}"#;

    #[test]
    fn case_28a_overloaded_before_commit() {
        let r = run(&case_28a(), true);
        let e = r.result.unwrap_err();
        assert!(r.out.is_empty());
        assert!(
            !r.committed,
            "nothing was sent: the caller may answer with HTTP 503 or fail over"
        );
        assert_eq!(e.status, 503);
        assert!(e.retryable);
        assert_eq!(e.envelope(), parse(OVERLOADED));
    }

    #[test]
    fn case_28b_http_529() {
        let mut h = http::HeaderMap::new();
        h.insert("retry-after", http::HeaderValue::from_static("10"));
        let body = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_011CV28b"}"#;
        let e = translate_error(529, &h, body, CREATED);
        assert_eq!(e.status, 503);
        assert_eq!(e.envelope(), parse(OVERLOADED));
        assert_eq!(e.retry_after, Some(10));
        assert_eq!(e.headers, vec![("retry-after".to_string(), "10".to_string())]);
        assert!(e.retryable);
        // Through the dispatcher too.
        let e = crate::providers::translate_error(Kind::Anthropic, 529, &h, body, CREATED);
        assert_eq!((e.status, e.retry_after), (503, Some(10)));
    }

    fn case_39_headers(retry: bool) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        let mut add = |k: &'static str, v: &'static str| {
            h.insert(k, http::HeaderValue::from_static(v));
        };
        if retry {
            add("retry-after", "30");
        }
        add("anthropic-ratelimit-requests-limit", "50");
        add("anthropic-ratelimit-requests-remaining", "0");
        add("anthropic-ratelimit-requests-reset", "2026-01-01T00:00:30Z");
        add("anthropic-ratelimit-tokens-limit", "40000");
        add("anthropic-ratelimit-tokens-remaining", "12000");
        add("anthropic-ratelimit-tokens-reset", "2026-01-01T00:00:05Z");
        add("request-id", "req_011CXYZ");
        h
    }

    #[test]
    fn case_39_rate_limit_headers() {
        let body = br#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of requests has exceeded your per-minute rate limit"},"request_id":"req_011CXYZ"}"#;
        let e = translate_error(429, &case_39_headers(true), body, CREATED);
        assert_eq!(e.status, 429);
        let expected: Vec<(String, String)> = [
            ("retry-after", "30"),
            ("x-ratelimit-limit-requests", "50"),
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "30s"),
            ("x-ratelimit-limit-tokens", "40000"),
            ("x-ratelimit-remaining-tokens", "12000"),
            ("x-ratelimit-reset-tokens", "5s"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(e.headers, expected);
        assert_eq!(e.retry_after, Some(30));
        assert!(e.retryable);
        assert_eq!(
            e.envelope(),
            parse(
                r#"{"error":{"message":"Number of requests has exceeded your per-minute rate limit","type":"rate_limit_error","param":null,"code":"rate_limit_exceeded"}}"#
            )
        );
    }

    #[test]
    fn case_39b_spend_limit() {
        let body = br#"{"type":"error","error":{"type":"rate_limit_error","message":"You have reached your monthly spend limit","details":{"error_code":"enforced_spend_limit_reached"}},"request_id":"req_011CXYZ"}"#;
        let e = translate_error(429, &case_39_headers(false), body, CREATED);
        assert_eq!(e.status, 429);
        assert_eq!(e.kind, "insufficient_quota");
        assert_eq!(e.code.as_deref(), Some("insufficient_quota"));
        assert!(!e.retryable, "the caller sends x-should-retry: false");
        assert_eq!(e.retry_after, None);
        assert!(e.headers.iter().all(|(k, _)| k != "retry-after"));
        assert!(e
            .headers
            .contains(&("x-ratelimit-reset-tokens".to_string(), "5s".to_string())));
    }

    // --- more request rules ----------------------------------------------------------------

    #[test]
    fn embeddings_are_refused() {
        let (o, im) = (Options::default(), HashMap::new());
        let mut cx = ctx(&o, &im);
        cx.endpoint = Endpoint::Embeddings;
        let e = build_request(br#"{"model":"claude-sonnet-4-5","input":"hi"}"#, &cx).unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(e.kind, "invalid_request_error");
        assert_eq!(e.param.as_deref(), Some("model"));
        assert!(e.message.contains("embeddings"));
    }

    #[test]
    fn stream_flag_follows_ctx() {
        let input = br#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#;
        let (o, im) = (Options::default(), HashMap::new());
        let mut cx = ctx(&o, &im);
        let v = body(&build_request(input, &cx).unwrap());
        assert!(v.get("stream").is_none());
        cx.stream = true;
        let r = build_request(input, &cx).unwrap();
        assert_eq!(body(&r)["stream"], true);
        assert!(body(&r).get("stream_options").is_none());
        assert_eq!(r.notes, Notes::default());
    }

    #[test]
    fn upstream_model_replaces_the_client_model() {
        let (o, im) = (Options::default(), HashMap::new());
        let mut cx = ctx(&o, &im);
        cx.upstream_model = "claude-haiku-4-5-20251001";
        let r = build_request(
            br#"{"model":"anthropic/fast","messages":[{"role":"user","content":"hi"}]}"#,
            &cx,
        )
        .unwrap();
        assert_eq!(body(&r)["model"], "claude-haiku-4-5-20251001");
    }

    #[test]
    fn strict_mode_rejects_drops_and_clamps() {
        let base = r#""messages":[{"role":"user","content":"hi"}]"#;
        for (extra, param) in [
            (r#""seed":1"#, "seed"),
            (r#""temperature":1.5"#, "temperature"),
            (r#""stop":["ok"," "]"#, "stop"),
            (r#""temperature":0.2,"top_p":0.5"#, "top_p"),
            (r#""presence_penalty":0.5"#, "presence_penalty"),
        ] {
            let input = format!("{{\"model\":\"m\",{base},{extra}}}");
            let e = strict_request(&input).unwrap_err();
            assert_eq!(e.status, 400, "{extra}");
            assert_eq!(e.param.as_deref(), Some(param), "{extra}");
            assert!(
                request(&input).is_ok(),
                "{extra} is only dropped/clamped outside strict mode"
            );
        }
        // Zero penalties and nulls are no-ops, never reported.
        let r = strict_request(&format!(
            "{{\"model\":\"m\",{base},\"presence_penalty\":0,\"seed\":null,\"logprobs\":false,\"n\":1}}"
        ))
        .unwrap();
        assert_eq!(r.notes, Notes::default());
    }

    #[test]
    fn shape_changing_features_are_rejected() {
        for (extra, param) in [
            (r#""logprobs":true"#, "logprobs"),
            (r#""top_logprobs":3"#, "top_logprobs"),
            (r#""logit_bias":{"50256":-100}"#, "logit_bias"),
            (r#""audio":{"voice":"alloy","format":"mp3"}"#, "audio"),
            (r#""modalities":["text","audio"]"#, "modalities"),
            (r#""functions":[{"name":"f"}]"#, "functions"),
        ] {
            let e = request(&format!(
                "{{\"model\":\"m\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}],{extra}}}"
            ))
            .unwrap_err();
            assert_eq!(e.code.as_deref(), Some("unsupported_parameter"), "{extra}");
            assert_eq!(e.param.as_deref(), Some(param), "{extra}");
        }
        let r = request(
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"logit_bias":{},"modalities":["text"]}"#,
        )
        .unwrap();
        assert_eq!(r.notes, Notes::default());
    }

    #[test]
    fn unknown_and_hint_fields_are_dropped_in_request_order() {
        let r = request(
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"store":true,"service_tier":"auto",
                "reasoning_effort":"high","x_vendor":1,"frequency_penalty":-1,"metadata":{"a":"b"},"top_k":5}"#,
        )
        .unwrap();
        assert_eq!(
            r.notes.dropped,
            [
                "store",
                "service_tier",
                "reasoning_effort",
                "x_vendor",
                "frequency_penalty",
                "metadata"
            ]
        );
        let v = body(&r);
        assert_eq!(v["top_k"], 5);
        assert!(v.get("metadata").is_none());
    }

    #[test]
    fn personal_user_ids_are_hashed() {
        let r =
            request(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"user":"ada@example.com"}"#).unwrap();
        let id = body(&r)["metadata"]["user_id"].as_str().unwrap().to_string();
        assert_eq!(id.len(), 32);
        assert!(!id.contains('@'));
        assert_eq!(r.notes.adjusted, ["user"]);
        let r =
            request(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"safety_identifier":"u-1"}"#).unwrap();
        assert_eq!(body(&r)["metadata"], json!({"user_id":"u-1"}));
        assert_eq!(r.notes, Notes::default());
        let r =
            request(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"user":"+1 (555) 123-4567"}"#).unwrap();
        assert_ne!(body(&r)["metadata"]["user_id"], "+1 (555) 123-4567");
    }

    #[test]
    fn invalid_values_name_their_param() {
        for (input, param) in [
            (
                r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":0}"#,
                "max_tokens",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_completion_tokens":"x"}"#,
                "max_completion_tokens",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":"hot"}"#,
                "temperature",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":3}"#,
                "temperature",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"n":0}"#,
                "n",
            ),
            (r#"{"model":"m"}"#, "messages"),
            (r#"{"model":"m","messages":[]}"#, "messages"),
            (
                r#"{"model":"m","messages":[{"role":"system","content":"only rules"}]}"#,
                "messages",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"  "}]}"#,
                "messages[0].content",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":""}]}]}"#,
                "messages[0].content",
            ),
            (
                r#"{"model":"m","messages":[{"role":"wizard","content":"hi"}]}"#,
                "messages[0].role",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"x","format":"wav"}}]}]}"#,
                "messages[0].content[0]",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"ftp://x/y.png"}}]}]}"#,
                "messages[0].content[0].image_url.url",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"hi"},{"role":"assistant","tool_calls":[{"id":"t1","type":"function","function":{"name":"f","arguments":"[1]"}}]}]}"#,
                "messages[1].tool_calls[0].function.arguments",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"hi"},{"role":"assistant","tool_calls":[{"id":"t1","type":"function","function":{"name":"f","arguments":"{oops"}}]}]}"#,
                "messages[1].tool_calls[0].function.arguments",
            ),
            (
                r#"{"model":"m","messages":[{"role":"tool","content":"x"}]}"#,
                "messages[0].tool_call_id",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"tool_choice":"required"}"#,
                "tool_choice",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"array"}}}]}"#,
                "tools[0].function.parameters",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"yaml"}}"#,
                "response_format.type",
            ),
        ] {
            let e = request(input).unwrap_err();
            assert_eq!(e.status, 400, "{input}");
            assert_eq!(e.param.as_deref(), Some(param), "{input}");
        }
        let e = request("[1,2]").unwrap_err();
        assert_eq!(e.status, 400);
    }

    #[test]
    fn tool_round_trip_is_grouped_ordered_and_merged() {
        // Results arrive out of order and a user remark follows them: results first, in the
        // assistant's order, then the remark, all in one user turn.
        let r = request(
            r#"{"model":"m","tools":[{"type":"function","function":{"name":"a"}},{"type":"function","function":{"name":"b"}}],
 "messages":[
   {"role":"user","content":"go"},
   {"role":"assistant","content":"","tool_calls":[
      {"id":"t1","type":"function","function":{"name":"a","arguments":""}},
      {"id":"t2","type":"function","function":{"name":"b","arguments":"{\"x\":1}"}}]},
   {"role":"tool","tool_call_id":"t2","content":[{"type":"text","text":"B"}]},
   {"role":"tool","tool_call_id":"t1","content":""},
   {"role":"user","content":"thanks"},
   {"role":"assistant","content":"Sure thing.  \n"}]}"#,
        )
        .unwrap();
        let v = body(&r);
        assert_eq!(
            v["messages"],
            parse(
                r#"[
 {"role":"user","content":"go"},
 {"role":"assistant","content":[
    {"type":"tool_use","id":"t1","name":"a","input":{}},
    {"type":"tool_use","id":"t2","name":"b","input":{"x":1}}]},
 {"role":"user","content":[
    {"type":"tool_result","tool_use_id":"t1","content":""},
    {"type":"tool_result","tool_use_id":"t2","content":[{"type":"text","text":"B"}]},
    {"type":"text","text":"thanks"}]},
 {"role":"assistant","content":[{"type":"text","text":"Sure thing."}]}]"#
            )
        );
        assert_eq!(r.notes, Notes::default());
    }

    #[test]
    fn consecutive_users_merge_and_empty_assistants_vanish() {
        let r = request(
            r#"{"model":"m","messages":[
   {"role":"user","content":"one"},
   {"role":"assistant","content":"   "},
   {"role":"user","content":[{"type":"text","text":"two","cache_control":{"type":"ephemeral"}}]}]}"#,
        )
        .unwrap();
        assert_eq!(
            body(&r)["messages"],
            parse(
                r#"[{"role":"user","content":[{"type":"text","text":"one"},
                   {"type":"text","text":"two","cache_control":{"type":"ephemeral"}}]}]"#
            )
        );
    }

    #[test]
    fn history_tools_without_declared_tools_get_stubs() {
        let r = request(
            r#"{"model":"m","messages":[
   {"role":"user","content":"go"},
   {"role":"assistant","content":null,"tool_calls":[{"id":"t1","type":"function","function":{"name":"lookup","arguments":"{}"}}]},
   {"role":"tool","tool_call_id":"t1","content":"42"},
   {"role":"user","content":"summarize"}]}"#,
        )
        .unwrap();
        let v = body(&r);
        assert_eq!(
            v["tools"],
            parse(r#"[{"name":"lookup","input_schema":{"type":"object","properties":{}}}]"#)
        );
        assert_eq!(v["tool_choice"], parse(r#"{"type":"none"}"#));
        assert_eq!(r.notes, Notes::default());
    }

    #[test]
    fn tool_choice_forms() {
        let with = |tc: &str, parallel: &str| {
            let input = format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}],
                    "tools":[{{"type":"function","function":{{"name":"a"}}}},{{"type":"function","function":{{"name":"b"}}}}]
                    {tc}{parallel}}}"#
            );
            body(&request(&input).unwrap())
        };
        assert!(with("", "").get("tool_choice").is_none());
        assert_eq!(
            with(r#","tool_choice":"auto""#, "")["tool_choice"],
            json!({"type":"auto"})
        );
        assert_eq!(
            with(r#","tool_choice":"none""#, r#","parallel_tool_calls":false"#)["tool_choice"],
            json!({"type":"none"})
        );
        assert_eq!(
            with(
                r#","tool_choice":{"type":"function","function":{"name":"b"}}"#,
                r#","parallel_tool_calls":false"#
            )["tool_choice"],
            json!({"type":"tool","name":"b","disable_parallel_tool_use":true})
        );
        assert_eq!(
            with("", r#","parallel_tool_calls":false"#)["tool_choice"],
            json!({"type":"auto","disable_parallel_tool_use":true})
        );
        assert!(with("", r#","parallel_tool_calls":true"#).get("tool_choice").is_none());
        let v = with(
            r#","tool_choice":{"type":"allowed_tools","allowed_tools":{"mode":"required","tools":[{"type":"function","function":{"name":"b"}}]}}"#,
            "",
        );
        assert_eq!(v["tool_choice"], json!({"type":"any"}));
        assert_eq!(
            v["tools"],
            json!([{"name":"b","input_schema":{"type":"object","properties":{}}}])
        );
    }

    #[test]
    fn json_emulation_on_older_models() {
        let (o, im) = (Options::default(), HashMap::new());
        let mut cx = ctx(&o, &im);
        cx.upstream_model = "claude-3-5-haiku-20241022";
        let r = build_request(
            br#"{"model":"x","messages":[{"role":"user","content":"hi"}],"temperature":0.5,"top_p":0.9,
                 "response_format":{"type":"json_schema","json_schema":{"name":"p","schema":{"type":"object","properties":{"a":{"type":"string"}}}}}}"#,
            &cx,
        )
        .unwrap();
        let v = body(&r);
        // Older models take temperature and top_p together.
        assert_eq!(v["top_p"], 0.9);
        assert!(v.get("output_config").is_none());
        assert_eq!(v["tool_choice"], json!({"type":"tool","name":"json_tool_call"}));
        assert_eq!(v["tools"][0]["name"], "json_tool_call");
        assert_eq!(v["tools"][0]["input_schema"]["properties"]["a"]["type"], "string");
        assert_eq!(r.notes, Notes::default());

        // json_object always uses the tool, even on structured-output models.
        let r = request(
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_object"}}"#,
        )
        .unwrap();
        assert_eq!(
            body(&r)["tools"][0]["input_schema"],
            json!({"type":"object","additionalProperties":true})
        );

        // The answer comes back as content, finish "stop".
        let (v, _) = response(
            r#"{"id":"msg_j","type":"message","role":"assistant","model":"claude-3-5-haiku-20241022",
                "content":[{"type":"tool_use","id":"toolu_j","name":"json_tool_call","input":{"a":"x"}}],
                "stop_reason":"tool_use","usage":{"input_tokens":5,"output_tokens":3}}"#,
        );
        assert_eq!(
            v["choices"][0]["message"],
            json!({"role":"assistant","content":"{\"a\":\"x\"}"})
        );
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(
            v["usage"],
            json!({"prompt_tokens":5,"completion_tokens":3,"total_tokens":8})
        );
    }

    #[test]
    fn model_capabilities_from_names() {
        let caps = |m| model_caps(m);
        assert!(caps("claude-sonnet-4-5").sampling_exclusive);
        assert!(caps("claude-sonnet-4-5-20250929").structured_outputs);
        assert!(caps("claude-opus-4-1-20250805").sampling_exclusive);
        assert!(!caps("claude-opus-4-1-20250805").structured_outputs);
        assert!(!caps("claude-sonnet-4-20250514").sampling_exclusive);
        assert!(!caps("claude-3-7-sonnet-latest").structured_outputs);
        assert!(!caps("claude-3-haiku-20240307").sampling_exclusive);
        assert!(caps("claude-haiku-4-5@20251001").structured_outputs);
        assert!(caps("some-alias").structured_outputs);
        assert_eq!(
            claude_version("anthropic.claude-3-5-sonnet-20241022-v2:0"),
            Some(("sonnet", 3, 5))
        );
    }

    #[test]
    fn images_sniffed_pdf_documents_and_tool_result_images() {
        let r = request(
            r#"{"model":"m","messages":[{"role":"user","content":[
  {"type":"image_url","image_url":"data:;base64,iVBORw0KGgoAAAANSUhEUg=="},
  {"type":"image_url","image_url":{"url":"data:image/JPG;base64,/9j/4A=="}},
  {"type":"file","file":{"filename":"a.pdf","file_data":"data:application/pdf;base64,JVBERi0="}},
  {"type":"file","file":{"file_data":"data:text/plain;base64,aGVsbG8="}}]}]}"#,
        )
        .unwrap();
        assert_eq!(
            body(&r)["messages"][0]["content"],
            parse(
                r#"[
 {"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgoAAAANSUhEUg=="}},
 {"type":"image","source":{"type":"base64","media_type":"image/jpeg","data":"/9j/4A=="}},
 {"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"JVBERi0="},"title":"a.pdf"},
 {"type":"document","source":{"type":"text","media_type":"text/plain","data":"hello"}}]"#
            )
        );
        // Unknown bytes (even non-ASCII garbage) are refused, never a panic.
        for data in ["data:;base64,ééééééééé", "data:;base64,AAAA"] {
            let input = json!({"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":data}}]}]});
            let e = request(&input.to_string()).unwrap_err();
            assert_eq!(e.code.as_deref(), Some("unsupported_image_type"));
        }
        let e = request(
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"file","file":{"file_id":"file-1"}}]}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].content[0].file.file_id"));
    }

    // --- more responses ----------------------------------------------------------------------

    #[test]
    fn tool_use_response_with_cache_and_thinking() {
        let (v, t) = response(
            r#"{"id":"msg_t","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929",
 "content":[{"type":"thinking","thinking":"hmm","signature":"sig"},
            {"type":"text","text":"Checking."},
            {"type":"tool_use","id":"toolu_a","name":"get_time","input":{}},
            {"type":"tool_use","id":"toolu_b","name":"get_weather","input":{"city":"Paris"}}],
 "stop_reason":"tool_use","stop_sequence":null,
 "usage":{"input_tokens":10,"cache_creation_input_tokens":100,"cache_read_input_tokens":1000,"output_tokens":20,
          "output_tokens_details":{"thinking_tokens":7}}}"#,
        );
        let expected = parse(
            r#"{"id":"msg_t","object":"chat.completion","created":1767225600,"model":"claude-sonnet-4-5",
 "choices":[{"index":0,"message":{"role":"assistant","content":"Checking.","tool_calls":[
    {"id":"toolu_a","type":"function","function":{"name":"get_time","arguments":"{}"}},
    {"id":"toolu_b","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
   "logprobs":null,"finish_reason":"tool_calls"}],
 "usage":{"prompt_tokens":1110,"completion_tokens":20,"total_tokens":1130,
          "prompt_tokens_details":{"cached_tokens":1000,"cache_write_tokens":100},
          "completion_tokens_details":{"reasoning_tokens":7}}}"#,
        );
        assert_eq!(v, expected);
        assert_eq!(t.usage.map(|u| u.total_tokens), Some(1130));
    }

    #[test]
    fn tool_only_response_has_null_content_and_other_finishes() {
        let (v, _) = response(
            r#"{"id":"msg_x","type":"message","content":[{"type":"tool_use","id":"toolu_1","name":"f","input":{"a":[1,2]}}],
                "stop_reason":"tool_use","usage":{"input_tokens":1,"output_tokens":1}}"#,
        );
        assert_eq!(v["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(
            v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"a\":[1,2]}"
        );
        for (stop, finish) in [
            ("max_tokens", "length"),
            ("model_context_window_exceeded", "length"),
            ("pause_turn", "stop"),
            ("something_new", "stop"),
        ] {
            let (v, _) = response(&format!(
                r#"{{"id":"m","type":"message","content":[],"stop_reason":"{stop}","usage":{{"input_tokens":1,"output_tokens":0}}}}"#
            ));
            assert_eq!(v["choices"][0]["finish_reason"], finish);
            assert_eq!(v["choices"][0]["message"]["content"], "");
        }
        let (o, im) = (Options::default(), HashMap::new());
        assert_eq!(translate_response(b"<html>", &ctx(&o, &im)).unwrap_err().status, 502);
        assert_eq!(
            translate_response(b"{\"id\":\"x\"}", &ctx(&o, &im)).unwrap_err().status,
            502
        );
        let e = translate_response(
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            &ctx(&o, &im),
        )
        .unwrap_err();
        assert_eq!(e.status, 503);
    }

    // --- more errors ---------------------------------------------------------------------------

    #[test]
    fn error_types_map_to_the_table() {
        let h = http::HeaderMap::new();
        let err = |status: u16, typ: &str, msg: &str| {
            let body = json!({"type":"error","error":{"type":typ,"message":msg}}).to_string();
            translate_error(status, &h, body.as_bytes(), CREATED)
        };
        let e = err(
            400,
            "invalid_request_error",
            "prompt is too long: 210000 tokens > 200000 maximum",
        );
        assert_eq!(
            (e.status, e.code.as_deref(), e.param.as_deref()),
            (400, Some("context_length_exceeded"), Some("messages"))
        );
        let e = err(
            400,
            "invalid_request_error",
            "Your credit balance is too low to access the Anthropic API.",
        );
        assert_eq!(
            (e.status, e.kind, e.code.as_deref()),
            (400, "insufficient_quota", Some("spend_limit_reached"))
        );
        assert!(!e.retryable);
        let e = err(401, "authentication_error", "invalid x-api-key");
        assert_eq!(
            (e.status, e.kind, e.code.as_deref()),
            (401, "authentication_error", Some("invalid_api_key"))
        );
        let e = err(402, "billing_error", "pay up");
        assert_eq!(
            (e.status, e.kind, e.code.as_deref()),
            (402, "insufficient_quota", Some("billing_error"))
        );
        assert!(!e.retryable);
        assert_eq!(err(403, "permission_error", "no").kind, "permission_error");
        let e = err(404, "not_found_error", "model: claude-nope");
        assert_eq!(
            (e.status, e.code.as_deref(), e.param.as_deref()),
            (404, Some("model_not_found"), Some("model"))
        );
        assert_eq!(err(404, "not_found_error", "no such thing").code, None);
        let e = err(413, "request_too_large", "too big");
        assert_eq!((e.status, e.code.as_deref()), (413, Some("request_too_large")));
        let e = err(500, "api_error", "internal");
        assert_eq!((e.status, e.kind), (500, "server_error"));
        assert!(e.retryable);
        let e = err(504, "timeout_error", "slow");
        assert_eq!((e.status, e.kind), (504, "timeout_error"));
    }

    #[test]
    fn non_anthropic_bodies_still_give_an_envelope() {
        let h = http::HeaderMap::new();
        let e = translate_error(502, &h, b"<html><body>Bad Gateway</body></html>", CREATED);
        assert_eq!((e.status, e.kind), (502, "server_error"));
        assert!(!e.message.contains('<'));
        let e = translate_error(529, &h, b"", CREATED);
        assert_eq!((e.status, e.code.as_deref()), (503, Some("overloaded")));
        let e = translate_error(401, &h, b"Unauthorized", CREATED);
        assert_eq!((e.status, e.message.as_str()), (401, "Unauthorized"));
        let e = translate_error(400, &h, br#"{"message":"bad thing"}"#, CREATED);
        assert_eq!((e.status, e.message.as_str()), (400, "bad thing"));
        let e = translate_error(429, &h, b"{}", CREATED);
        assert_eq!(e.status, 429);
        assert!(e.message.contains("429"));
    }

    #[test]
    fn other_ratelimit_headers_and_retry_ms() {
        let mut h = http::HeaderMap::new();
        h.insert("retry-after-ms", http::HeaderValue::from_static("1500"));
        h.insert(
            "anthropic-ratelimit-input-tokens-remaining",
            http::HeaderValue::from_static("10"),
        );
        h.insert(
            "anthropic-ratelimit-tokens-reset",
            http::HeaderValue::from_static("2026-01-01T00:06:00Z"),
        );
        let e = translate_error(
            429,
            &h,
            br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#,
            CREATED,
        );
        assert_eq!(e.retry_after, Some(2));
        assert!(e.headers.contains(&("retry-after-ms".to_string(), "1500".to_string())));
        assert!(e
            .headers
            .contains(&("x-ratelimit-reset-tokens".to_string(), "6m0s".to_string())));
        assert!(e.headers.contains(&(
            "anthropic-ratelimit-input-tokens-remaining".to_string(),
            "10".to_string()
        )));
    }

    // --- more streams ----------------------------------------------------------------------

    /// Two parallel tool calls after a text block, one of them parameterless, with cached
    /// input and usage fields also repeated in message_delta.
    fn parallel_tools() -> String {
        sse(&[
            r#"{"type":"message_start","message":{"id":"msg_P","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5-20250929","usage":{"input_tokens":10,"cache_creation_input_tokens":3,"cache_read_input_tokens":100,"output_tokens":1}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Two calls: 🌍 é"}}"#,
            r#"{"type":"content_block_stop","index":0}"#,
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_A","name":"get_time","input":{}}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}"#,
            r#"{"type":"content_block_stop","index":1}"#,
            r#"{"type":"ping"}"#,
            r#"{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_B","name":"get_weather","input":{}}}"#,
            r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"city\": \"Paris\"}"}}"#,
            r#"{"type":"content_block_stop","index":2}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"input_tokens":10,"cache_read_input_tokens":100,"output_tokens":30}}"#,
            r#"{"type":"message_stop"}"#,
        ])
    }

    #[test]
    fn parallel_tool_ordinals_and_parameterless_arguments() {
        let r = run(&parallel_tools(), true);
        r.result.as_ref().unwrap();
        let id = "msg_P";
        let expected = vec![
            c(
                id,
                true,
                r#"[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]"#,
            ),
            c(
                id,
                true,
                r#"[{"index":0,"delta":{"content":"Two calls: 🌍 é"},"logprobs":null,"finish_reason":null}]"#,
            ),
            c(
                id,
                true,
                r#"[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"toolu_A","type":"function","function":{"name":"get_time","arguments":""}}]},"logprobs":null,"finish_reason":null}]"#,
            ),
            c(
                id,
                true,
                r#"[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]},"logprobs":null,"finish_reason":null}]"#,
            ),
            c(
                id,
                true,
                r#"[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"toolu_B","type":"function","function":{"name":"get_weather","arguments":""}}]},"logprobs":null,"finish_reason":null}]"#,
            ),
            c(
                id,
                true,
                r#"[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"city\": \"Paris\"}"}}]},"logprobs":null,"finish_reason":null}]"#,
            ),
            c(
                id,
                true,
                r#"[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}]"#,
            ),
            u(
                id,
                r#"{"prompt_tokens":113,"completion_tokens":30,"total_tokens":143,"prompt_tokens_details":{"cached_tokens":100,"cache_write_tokens":3}}"#,
            ),
            json!("DONE"),
        ];
        assert_eq!(events(&r.out), expected);
    }

    /// The JSON emulation tool streamed: its fragments are content, the finish is `stop`.
    fn json_tool_stream() -> String {
        sse(&[
            r#"{"type":"message_start","message":{"id":"msg_J","type":"message","role":"assistant","content":[],"model":"claude-3-5-haiku-20241022","usage":{"input_tokens":5,"output_tokens":1}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_J","name":"json_tool_call","input":{}}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"a\":"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"1}"}}"#,
            r#"{"type":"content_block_stop","index":0}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":9}}"#,
            r#"{"type":"message_stop"}"#,
        ])
    }

    #[test]
    fn json_emulation_stream() {
        let r = run(&json_tool_stream(), false);
        r.result.as_ref().unwrap();
        let id = "msg_J";
        let expected = vec![
            c(
                id,
                false,
                r#"[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]"#,
            ),
            c(
                id,
                false,
                r#"[{"index":0,"delta":{"content":"{\"a\":"},"logprobs":null,"finish_reason":null}]"#,
            ),
            c(
                id,
                false,
                r#"[{"index":0,"delta":{"content":"1}"},"logprobs":null,"finish_reason":null}]"#,
            ),
            c(
                id,
                false,
                r#"[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]"#,
            ),
            json!("DONE"),
        ];
        assert_eq!(events(&r.out), expected);
    }

    #[test]
    fn truncation_garbage_and_limits() {
        // Cut after message_delta: no finish chunk, and finish() reports the truncation.
        let full = case_24();
        let cut = &full[..full.find("event: message_stop").unwrap()];
        let r = run(cut, true);
        let e = r.result.unwrap_err();
        assert_eq!((e.status, e.code.as_deref()), (502, Some("upstream_stream_truncated")));
        assert!(!String::from_utf8(r.out).unwrap().contains("finish_reason\":\"length"));

        let r = run("", false);
        assert_eq!(r.result.unwrap_err().code.as_deref(), Some("upstream_error"));

        let r = run("event: message_start\ndata: {not json\n\n", false);
        assert_eq!(r.result.unwrap_err().status, 502);

        // The last event may lack its blank line.
        let whole = case_24();
        let r = run(whole.trim_end(), true);
        r.result.as_ref().unwrap();
        assert_eq!(r.out, run(&whole, true).out);

        // Unknown events and comments are ignored; a missing message_delta still finishes.
        let odd = format!(
            ": hello\n\n{}",
            sse(&[
                r#"{"type":"message_start","message":{"id":"msg_O","content":[],"usage":{"input_tokens":1,"output_tokens":1}}}"#,
                r#"{"type":"brand_new_event","x":1}"#,
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}"#,
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"secret"}}"#,
                r#"{"type":"content_block_stop","index":0}"#,
                r#"{"type":"message_stop"}"#,
            ])
        );
        let r = run(&odd, false);
        r.result.as_ref().unwrap();
        let ev = events(&r.out);
        assert_eq!(ev.len(), 3);
        assert_eq!(ev[1]["choices"][0]["finish_reason"], "stop");
        assert!(!String::from_utf8(r.out).unwrap().contains("secret"));

        // An event larger than the decoder allows.
        let (o, im) = (Options::default(), HashMap::new());
        let mut t = stream_translator(&ctx(&o, &im));
        let big = vec![b'a'; 17 * 1024 * 1024];
        let mut out = BytesMut::new();
        t.feed(b"data: ", &mut out).unwrap();
        assert_eq!(t.feed(&big, &mut out).unwrap_err().status, 502);
        assert!(t.finish(&mut out).is_err());
    }

    #[test]
    fn errors_after_failure_stick() {
        let (o, im) = (Options::default(), HashMap::new());
        let mut t = stream_translator(&ctx(&o, &im));
        let mut out = BytesMut::new();
        assert!(t.feed(case_28a().as_bytes(), &mut out).is_err());
        assert_eq!(t.feed(b"", &mut out).unwrap_err().status, 503);
        assert_eq!(t.finish(&mut out).unwrap_err().status, 503);
        assert!(out.is_empty());
    }

    fn recorded_streams() -> Vec<(String, bool)> {
        vec![
            (case_24(), true),
            (case_25(), false),
            (case_27(), true),
            (case_28a(), true),
            (parallel_tools(), true),
            (json_tool_stream(), false),
            (case_24().replace('\n', "\r\n"), true),
        ]
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        for (s, usage) in recorded_streams() {
            let whole = run(&s, usage);
            let cuts: Vec<usize> = (1..s.len()).collect();
            let split = run_pieces(s.as_bytes(), &cuts, usage);
            assert_eq!(split.out, whole.out);
            assert_eq!(split.result, whole.result);
            assert_eq!(split.committed, whole.committed);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_split_gives_the_same_bytes(which in 0usize..7, cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..24)) {
            let streams = recorded_streams();
            let (s, usage) = &streams[which % streams.len()];
            let bytes = s.as_bytes();
            let cuts: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len())).collect();
            let whole = run(s, *usage);
            let split = run_pieces(bytes, &cuts, *usage);
            prop_assert_eq!(split.out, whole.out);
            prop_assert_eq!(split.result, whole.result);
            prop_assert_eq!(split.usage, whole.usage);
        }
    }

    // --- models ------------------------------------------------------------------------------

    #[test]
    fn models_list() {
        let body = br#"{"data":[
            {"type":"model","id":"claude-sonnet-4-5-20250929","display_name":"Claude Sonnet 4.5","created_at":"2025-09-29T00:00:00Z"},
            {"type":"model","id":"claude-x","display_name":"X","created_at":"garbage"},
            {"type":"model","display_name":"no id"}],
            "has_more":false,"first_id":"claude-sonnet-4-5-20250929","last_id":"claude-x"}"#;
        assert_eq!(
            parse_models(body).unwrap(),
            vec![
                ("claude-sonnet-4-5-20250929".to_string(), 1_759_104_000),
                ("claude-x".to_string(), 0)
            ]
        );
        assert!(models_path().starts_with("/v1/models"));
        assert_eq!(parse_models(b"{}").unwrap_err().status, 502);
        assert_eq!(parse_models(b"nope").unwrap_err().status, 502);
    }
}

//! Cohere API v2: `POST /v2/chat` (JSON and SSE), `POST /v2/embed`, and `GET /v1/models`.

use base64::Engine;
use http::Response;
use serde_json::{json, Value};

use crate::body::MockBody;
use crate::reply::{
    asks_for_tools, embedding, fragments, rand_alnum, text_of, text_reply, uuid, Finish, Limits, Reply, ToolChoice,
    ToolRequest, TOKENS_PER_CALL,
};
use crate::respond::{invalid, json_response, named_event, Ctx, Ev, Provider, SSE};

const TOOL_PLAN_WORDS: [&str; 5] = ["I", "will", "call", "the", "tools."];

fn tool_request(body: &Value, messages: &[Value]) -> ToolRequest {
    let declared: Vec<String> = body
        .get("tools")
        .and_then(Value::as_array)
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| t.pointer("/function/name").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let choice = match body.get("tool_choice").and_then(Value::as_str) {
        Some("REQUIRED") => ToolChoice::Any,
        Some("NONE") => ToolChoice::None,
        _ => ToolChoice::Auto,
    };
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|m| text_of(m.get("content")))
        .unwrap_or_default();
    ToolRequest {
        declared,
        choice,
        single: false,
        asked: asks_for_tools(&last_user),
    }
}

fn usage(prompt: u64, completion: u64) -> Value {
    json!({
        "billed_units": {"input_tokens": prompt, "output_tokens": completion},
        "tokens": {"input_tokens": prompt, "output_tokens": completion},
        "cached_tokens": 0
    })
}

fn finish_reason(finish: &Finish) -> &'static str {
    match finish {
        Finish::Stop => "COMPLETE",
        Finish::Length => "MAX_TOKENS",
        Finish::StopSequence(_) => "STOP_SEQUENCE",
    }
}

/// `POST /v2/chat`.
pub fn chat(ctx: &Ctx, body: &Value) -> Response<MockBody> {
    if ctx.model.is_empty() {
        return invalid(Provider::Cohere, "invalid request: model must be specified");
    }
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return invalid(Provider::Cohere, "invalid request: messages must be specified");
    };
    let limits = Limits {
        max_tokens: body.get("max_tokens").and_then(Value::as_u64),
        stop: Limits::stops_from(body.get("stop_sequences")),
    };
    let reply = match tool_request(body, messages).calls(ctx.directives.tools) {
        Some(calls) => Reply::Tools(calls),
        None => Reply::Text(text_reply(ctx.body_len, ctx.tokens(), &limits)),
    };
    let id = uuid();
    let prompt = ctx.prompt_tokens();
    let call_ids: Vec<String> = match &reply {
        Reply::Tools(calls) => calls
            .iter()
            .map(|c| format!("{}_{}", c.name, rand_alnum(12).to_ascii_lowercase()))
            .collect(),
        Reply::Text(_) => Vec::new(),
    };
    let plan_pieces: Vec<String> = TOOL_PLAN_WORDS
        .iter()
        .enumerate()
        .map(|(i, w)| if i == 0 { (*w).to_owned() } else { format!(" {w}") })
        .collect();
    let (finish, completion) = match &reply {
        Reply::Text(t) => (finish_reason(&t.finish), t.tokens()),
        Reply::Tools(calls) => (
            "TOOL_CALL",
            plan_pieces.len() as u64 + TOKENS_PER_CALL * calls.len() as u64,
        ),
    };

    if body.get("stream") != Some(&Value::Bool(true)) {
        let message = match &reply {
            Reply::Text(t) => {
                json!({"role": "assistant", "content": [{"type": "text", "text": t.text()}]})
            }
            Reply::Tools(calls) => {
                let tool_calls: Vec<Value> = calls
                    .iter()
                    .zip(&call_ids)
                    .map(|(c, cid)| json!({"id": cid, "type": "function", "function": {"name": c.name, "arguments": c.args_json}}))
                    .collect();
                json!({"role": "assistant", "tool_plan": plan_pieces.concat(), "tool_calls": tool_calls})
            }
        };
        return ctx.json(&json!({
            "id": id, "message": message, "finish_reason": finish, "usage": usage(prompt, completion)
        }));
    }

    let ev = |name: &str, data: Value| named_event(name, &data);
    let mut events = vec![Ev::meta(ev(
        "message-start",
        json!({"id": id, "type": "message-start", "delta": {"message": {
            "role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []
        }}}),
    ))];
    match &reply {
        Reply::Text(t) => {
            events.push(Ev::meta(ev(
                "content-start",
                json!({"type": "content-start", "index": 0,
                       "delta": {"message": {"content": {"type": "text", "text": ""}}}}),
            )));
            for p in &t.pieces {
                events.push(Ev::content(ev(
                    "content-delta",
                    json!({"type": "content-delta", "index": 0,
                           "delta": {"message": {"content": {"text": p}}}}),
                )));
            }
            events.push(Ev::terminal(ev(
                "content-end",
                json!({"type": "content-end", "index": 0}),
            )));
        }
        Reply::Tools(calls) => {
            for p in &plan_pieces {
                events.push(Ev::content(ev(
                    "tool-plan-delta",
                    json!({"type": "tool-plan-delta", "delta": {"message": {"tool_plan": p}}}),
                )));
            }
            for (k, (call, cid)) in calls.iter().zip(&call_ids).enumerate() {
                events.push(Ev::content(ev(
                    "tool-call-start",
                    json!({"type": "tool-call-start", "index": k, "delta": {"message": {"tool_calls": {
                        "id": cid, "type": "function", "function": {"name": call.name, "arguments": ""}
                    }}}}),
                )));
                for f in fragments(&call.args_json, 6) {
                    events.push(Ev::content(ev(
                        "tool-call-delta",
                        json!({"type": "tool-call-delta", "index": k, "delta": {"message": {"tool_calls": {
                            "function": {"arguments": f}
                        }}}}),
                    )));
                }
                let end = ev("tool-call-end", json!({"type": "tool-call-end", "index": k}));
                events.push(if k + 1 == calls.len() {
                    Ev::terminal(end)
                } else {
                    Ev::meta(end)
                });
            }
        }
    }
    events.push(Ev::terminal(ev(
        "message-end",
        json!({"type": "message-end", "delta": {"finish_reason": finish, "usage": usage(prompt, completion)}}),
    )));
    // Cohere reports a failed generation in its message-end event.
    let error = ev(
        "message-end",
        json!({"type": "message-end", "delta": {
            "error": "internal server error, this has been reported to our developers",
            "finish_reason": "ERROR",
            "usage": usage(prompt, 0)
        }}),
    );
    ctx.stream(SSE, events, error)
}

fn quantize_i8(v: &[f32]) -> Vec<i64> {
    v.iter().map(|x| (x * 127.0).round() as i64).collect()
}

fn pack_bits(v: &[f32], signed: bool) -> Vec<i64> {
    v.chunks(8)
        .map(|chunk| {
            let mut byte = 0u8;
            for (i, x) in chunk.iter().enumerate() {
                if *x > 0.0 {
                    byte |= 0x80 >> i;
                }
            }
            if signed {
                i64::from(byte) - 128
            } else {
                i64::from(byte)
            }
        })
        .collect()
}

/// `POST /v2/embed`.
pub fn embed(ctx: &Ctx, body: &Value) -> Response<MockBody> {
    if ctx.model.is_empty() {
        return invalid(Provider::Cohere, "invalid request: model must be specified");
    }
    let texts: Vec<String> = match (body.get("texts"), body.get("inputs")) {
        (Some(Value::Array(t)), _) => t.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        (None, Some(Value::Array(inputs))) => inputs.iter().map(|i| text_of(i.get("content"))).collect(),
        _ => Vec::new(),
    };
    if texts.is_empty() {
        return invalid(
            Provider::Cohere,
            "invalid request: texts must be a non-empty list of strings",
        );
    }
    if texts.len() > 96 {
        return invalid(
            Provider::Cohere,
            &format!(
                "invalid request: total number of texts must be at most 96 - received {}",
                texts.len()
            ),
        );
    }
    if body.get("input_type").and_then(Value::as_str).is_none() {
        return invalid(
            Provider::Cohere,
            "invalid request: valid input_type must be provided with the provided model",
        );
    }
    let dims = match body.get("output_dimension") {
        None | Some(Value::Null) => ctx.default_dims,
        Some(v) => match v.as_u64() {
            Some(d) if (1..=65536).contains(&d) => d as usize,
            _ => {
                return invalid(
                    Provider::Cohere,
                    "invalid request: output_dimension must be a positive integer",
                )
            }
        },
    };
    let types: Vec<String> = match body.get("embedding_types").and_then(Value::as_array) {
        Some(t) if !t.is_empty() => t.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        _ => vec!["float".to_owned()],
    };
    let vectors: Vec<Vec<f32>> = texts.iter().map(|t| embedding(t, dims)).collect();
    let mut by_type = serde_json::Map::new();
    for ty in &types {
        let values: Vec<Value> = match ty.as_str() {
            "float" => vectors.iter().map(|v| json!(v)).collect(),
            "int8" => vectors.iter().map(|v| json!(quantize_i8(v))).collect(),
            "uint8" => vectors
                .iter()
                .map(|v| json!(quantize_i8(v).iter().map(|x| x + 128).collect::<Vec<_>>()))
                .collect(),
            "binary" => vectors.iter().map(|v| json!(pack_bits(v, true))).collect(),
            "ubinary" => vectors.iter().map(|v| json!(pack_bits(v, false))).collect(),
            "base64" => vectors
                .iter()
                .map(|v| {
                    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    json!(base64::engine::general_purpose::STANDARD.encode(bytes))
                })
                .collect(),
            other => {
                return invalid(
                    Provider::Cohere,
                    &format!("invalid request: embedding_types contains an invalid value '{other}'"),
                )
            }
        };
        by_type.insert(ty.clone(), Value::Array(values));
    }
    let prompt = ctx.prompt_tokens();
    ctx.json(&json!({
        "id": uuid(),
        "embeddings": by_type,
        "texts": texts,
        "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": prompt}},
        "response_type": "embeddings_by_type"
    }))
}

/// `GET /v1/models`, Cohere shape; `?endpoint=chat|embed` filters.
pub fn models(query: Option<&str>) -> Response<MockBody> {
    let endpoint = query.and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("endpoint="))
            .map(str::to_owned)
    });
    let all = [
        json!({"name": "command-a-03-2025", "endpoints": ["generate", "chat", "summarize"], "finetuned": false,
               "context_length": 256000, "features": ["tools", "strict_tools", "json_mode", "json_schema"],
               "default_endpoints": ["chat"], "is_deprecated": false}),
        json!({"name": "command-r-plus-08-2024", "endpoints": ["generate", "chat", "summarize"], "finetuned": false,
               "context_length": 128000, "features": ["tools", "json_mode"],
               "default_endpoints": [], "is_deprecated": false}),
        json!({"name": "embed-v4.0", "endpoints": ["embed"], "finetuned": false, "context_length": 128000,
               "features": null, "default_endpoints": ["embed"], "is_deprecated": false}),
    ];
    let models: Vec<Value> = all
        .into_iter()
        .filter(|m| match &endpoint {
            Some(e) => m["endpoints"]
                .as_array()
                .is_some_and(|eps| eps.iter().any(|x| x.as_str() == Some(e.as_str()))),
            None => true,
        })
        .collect();
    json_response(200, &json!({"models": models}))
}

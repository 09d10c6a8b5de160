//! OpenAI wire format (and every OpenAI-compatible server): chat completions, legacy
//! completions, embeddings, models.

use bytes::Bytes;
use http::Response;
use serde_json::{json, Value};

use crate::body::MockBody;
use crate::reply::{
    asks_for_tools, embedding, embedding_base64, fragments, now_secs, rand_alnum, text_of, text_reply, Finish, Limits,
    Reply, ToolChoice, ToolRequest, TOKENS_PER_CALL,
};
use crate::respond::{data_event, invalid, json_response, Ctx, Ev, Provider, SSE};

const FINGERPRINT: &str = "fp_prism_mock";

fn flag(body: &Value, pointer: &str) -> bool {
    body.pointer(pointer) == Some(&Value::Bool(true))
}

fn usage(prompt: u64, completion: u64) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0
        }
    })
}

fn finish_reason(finish: &Finish) -> &'static str {
    match finish {
        Finish::Length => "length",
        Finish::Stop | Finish::StopSequence(_) => "stop",
    }
}

/// The in-band error an OpenAI stream carries after HTTP 200 (`openai-python` raises on it).
fn stream_error() -> Bytes {
    data_event(&json!({"error": {
        "message": "The server had an error while processing your request. Sorry about that!",
        "type": "server_error", "param": null, "code": null
    }}))
}

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
    let choice = match body.get("tool_choice") {
        Some(Value::String(s)) if s == "required" => ToolChoice::Any,
        Some(Value::String(s)) if s == "none" => ToolChoice::None,
        Some(v @ Value::Object(_)) => match v.pointer("/function/name").and_then(Value::as_str) {
            Some(name) => ToolChoice::Named(name.to_owned()),
            None => ToolChoice::Auto,
        },
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
        single: body.get("parallel_tool_calls") == Some(&Value::Bool(false)),
        asked: asks_for_tools(&last_user),
    }
}

/// `POST /v1/chat/completions`.
pub fn chat(ctx: &Ctx, body: &Value) -> Response<MockBody> {
    if ctx.model.is_empty() {
        return invalid(Provider::OpenAi, "you must provide a model parameter");
    }
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return invalid(Provider::OpenAi, "Missing required parameter: 'messages'.");
    };
    let limits = Limits {
        max_tokens: body
            .get("max_completion_tokens")
            .or_else(|| body.get("max_tokens"))
            .and_then(Value::as_u64),
        stop: Limits::stops_from(body.get("stop")),
    };
    let reply = match tool_request(body, messages).calls(ctx.directives.tools) {
        Some(calls) => Reply::Tools(calls),
        None => Reply::Text(text_reply(ctx.body_len, ctx.tokens(), &limits)),
    };
    let id = format!("chatcmpl-{}", rand_alnum(29));
    let created = now_secs();
    let prompt = ctx.prompt_tokens();
    let call_ids: Vec<String> = match &reply {
        Reply::Tools(calls) => calls.iter().map(|_| format!("call_{}", rand_alnum(24))).collect(),
        Reply::Text(_) => Vec::new(),
    };

    if !flag(body, "/stream") {
        let (message, finish, completion) = match &reply {
            Reply::Text(t) => (
                json!({"role": "assistant", "content": t.text(), "refusal": null, "annotations": []}),
                finish_reason(&t.finish),
                t.tokens(),
            ),
            Reply::Tools(calls) => {
                let tool_calls: Vec<Value> = calls
                    .iter()
                    .zip(&call_ids)
                    .map(|(c, id)| json!({"id": id, "type": "function", "function": {"name": c.name, "arguments": c.args_json}}))
                    .collect();
                (
                    json!({"role": "assistant", "content": null, "tool_calls": tool_calls, "refusal": null, "annotations": []}),
                    "tool_calls",
                    TOKENS_PER_CALL * calls.len() as u64,
                )
            }
        };
        return ctx.json(&json!({
            "id": id, "object": "chat.completion", "created": created, "model": ctx.model,
            "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
            "usage": usage(prompt, completion),
            "service_tier": "default",
            "system_fingerprint": FINGERPRINT
        }));
    }

    let include_usage = flag(body, "/stream_options/include_usage");
    let chunk = |choices: Value| -> Bytes {
        let mut v = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": ctx.model,
            "system_fingerprint": FINGERPRINT, "choices": choices
        });
        if include_usage {
            v["usage"] = Value::Null;
        }
        data_event(&v)
    };
    let delta = |d: Value| chunk(json!([{"index": 0, "delta": d, "logprobs": null, "finish_reason": null}]));

    let mut events = vec![Ev::meta(delta(
        json!({"role": "assistant", "content": "", "refusal": null}),
    ))];
    let (finish, completion) = match &reply {
        Reply::Text(t) => {
            events.extend(t.pieces.iter().map(|p| Ev::content(delta(json!({"content": p})))));
            (finish_reason(&t.finish), t.tokens())
        }
        Reply::Tools(calls) => {
            for (k, (call, call_id)) in calls.iter().zip(&call_ids).enumerate() {
                events.push(Ev::content(delta(json!({"tool_calls": [{
                    "index": k, "id": call_id, "type": "function",
                    "function": {"name": call.name, "arguments": ""}
                }]}))));
                for frag in fragments(&call.args_json, 5) {
                    events.push(Ev::content(delta(json!({"tool_calls": [{
                        "index": k, "function": {"arguments": frag}
                    }]}))));
                }
            }
            ("tool_calls", TOKENS_PER_CALL * calls.len() as u64)
        }
    };
    events.push(Ev::terminal(chunk(
        json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": finish}]),
    )));
    if include_usage {
        events.push(Ev::terminal(data_event(&json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": ctx.model,
            "system_fingerprint": FINGERPRINT, "choices": [], "usage": usage(prompt, completion)
        }))));
    }
    events.push(Ev::terminal(Bytes::from_static(b"data: [DONE]\n\n")));
    ctx.stream(SSE, events, stream_error())
}

/// `POST /v1/completions` (legacy text completions).
pub fn completions(ctx: &Ctx, body: &Value) -> Response<MockBody> {
    if ctx.model.is_empty() {
        return invalid(Provider::OpenAi, "you must provide a model parameter");
    }
    if body.get("prompt").is_none() {
        return invalid(Provider::OpenAi, "Missing required parameter: 'prompt'.");
    }
    let limits = Limits {
        max_tokens: body.get("max_tokens").and_then(Value::as_u64),
        stop: Limits::stops_from(body.get("stop")),
    };
    let reply = text_reply(ctx.body_len, ctx.tokens(), &limits);
    let id = format!("cmpl-{}", rand_alnum(29));
    let created = now_secs();
    let prompt = ctx.prompt_tokens();
    let simple_usage = json!({
        "prompt_tokens": prompt, "completion_tokens": reply.tokens(),
        "total_tokens": prompt + reply.tokens()
    });
    let finish = finish_reason(&reply.finish);

    if !flag(body, "/stream") {
        return ctx.json(&json!({
            "id": id, "object": "text_completion", "created": created, "model": ctx.model,
            "choices": [{"text": reply.text(), "index": 0, "logprobs": null, "finish_reason": finish}],
            "usage": simple_usage,
            "system_fingerprint": FINGERPRINT
        }));
    }

    let include_usage = flag(body, "/stream_options/include_usage");
    let chunk = |text: &str, finish: Value| -> Bytes {
        let mut v = json!({
            "id": id, "object": "text_completion", "created": created,
            "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": finish}],
            "model": ctx.model, "system_fingerprint": FINGERPRINT
        });
        if include_usage {
            v["usage"] = Value::Null;
        }
        data_event(&v)
    };
    let mut events: Vec<Ev> = reply
        .pieces
        .iter()
        .map(|p| Ev::content(chunk(p, Value::Null)))
        .collect();
    events.push(Ev::terminal(chunk("", json!(finish))));
    if include_usage {
        events.push(Ev::terminal(data_event(&json!({
            "id": id, "object": "text_completion", "created": created, "choices": [],
            "model": ctx.model, "system_fingerprint": FINGERPRINT, "usage": simple_usage
        }))));
    }
    events.push(Ev::terminal(Bytes::from_static(b"data: [DONE]\n\n")));
    ctx.stream(SSE, events, stream_error())
}

/// The texts of an embeddings `input`: string, strings, token array, token arrays.
fn embedding_inputs(input: Option<&Value>) -> Option<Vec<String>> {
    match input? {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) if items.is_empty() => None,
        Value::Array(items) => {
            if items.iter().all(Value::is_string) {
                Some(items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            } else if items.iter().all(Value::is_u64) {
                Some(vec![Value::Array(items.clone()).to_string()])
            } else if items.iter().all(|v| {
                v.as_array()
                    .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_u64))
            }) {
                Some(items.iter().map(Value::to_string).collect())
            } else {
                None
            }
        }
        _ => None,
    }
}

/// `POST /v1/embeddings`.
pub fn embeddings(ctx: &Ctx, body: &Value) -> Response<MockBody> {
    if ctx.model.is_empty() {
        return invalid(Provider::OpenAi, "you must provide a model parameter");
    }
    let Some(texts) = embedding_inputs(body.get("input")) else {
        return invalid(
            Provider::OpenAi,
            "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.",
        );
    };
    let dims = match body.get("dimensions") {
        None | Some(Value::Null) => ctx.default_dims,
        Some(v) => match v.as_u64() {
            Some(d) if (1..=65536).contains(&d) => d as usize,
            _ => {
                return invalid(
                    Provider::OpenAi,
                    "Invalid value for 'dimensions': must be a positive integer.",
                )
            }
        },
    };
    let base64 = match body.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return invalid(
                Provider::OpenAi,
                &format!("Invalid value for 'encoding_format': '{other}'. Supported values are: 'float' and 'base64'."),
            )
        }
    };
    let data: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let v = embedding(t, dims);
            let e = if base64 { json!(embedding_base64(&v)) } else { json!(v) };
            json!({"object": "embedding", "index": i, "embedding": e})
        })
        .collect();
    let prompt = ctx.prompt_tokens();
    ctx.json(&json!({
        "object": "list", "data": data, "model": ctx.model,
        "usage": {"prompt_tokens": prompt, "total_tokens": prompt}
    }))
}

/// `GET /v1/models`, OpenAI shape.
pub fn models() -> Response<MockBody> {
    let ids = [
        ("gpt-4o", 1715367049, "system"),
        ("gpt-4o-mini", 1721172741, "system"),
        ("gpt-3.5-turbo-instruct", 1692901427, "system"),
        ("text-embedding-3-small", 1705948997, "system"),
        ("o3-mini", 1737146383, "system"),
    ];
    let data: Vec<Value> = ids
        .iter()
        .map(|(id, created, owner)| json!({"id": id, "object": "model", "created": created, "owned_by": owner}))
        .collect();
    json_response(200, &json!({"object": "list", "data": data}))
}

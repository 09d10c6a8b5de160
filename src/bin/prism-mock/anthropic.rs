//! Anthropic Messages API: `POST /v1/messages` (JSON and SSE), token counting, models.

use bytes::Bytes;
use http::Response;
use serde_json::{json, Value};

use crate::body::MockBody;
use crate::reply::{
    asks_for_tools, fragments, rand_alnum, text_of, text_reply, Finish, Limits, Reply, ToolChoice, ToolRequest,
    TOKENS_PER_CALL,
};
use crate::respond::{invalid, json_response, named_event, Ctx, Ev, Provider, SSE};

/// What the model says before its tool calls when it was not forced to call one.
const TOOL_PREAMBLE_WORDS: [&str; 4] = ["I'll", "call", "the", "tools."];

fn tool_request(body: &Value, messages: &[Value]) -> ToolRequest {
    let declared: Vec<String> = body
        .get("tools")
        .and_then(Value::as_array)
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| t.get("name").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let tc = body.get("tool_choice");
    let choice = match tc.and_then(|t| t.get("type")).and_then(Value::as_str) {
        Some("any") => ToolChoice::Any,
        Some("none") => ToolChoice::None,
        Some("tool") => match tc.and_then(|t| t.get("name")).and_then(Value::as_str) {
            Some(name) => ToolChoice::Named(name.to_owned()),
            None => ToolChoice::Any,
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
        single: tc.and_then(|t| t.get("disable_parallel_tool_use")) == Some(&Value::Bool(true)),
        asked: asks_for_tools(&last_user),
    }
}

fn stop_fields(finish: &Finish) -> (&'static str, Value) {
    match finish {
        Finish::Stop => ("end_turn", Value::Null),
        Finish::Length => ("max_tokens", Value::Null),
        Finish::StopSequence(s) => ("stop_sequence", json!(s)),
    }
}

fn error_event() -> Bytes {
    named_event(
        "error",
        &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    )
}

/// `POST /v1/messages`.
pub fn messages(ctx: &Ctx, body: &Value) -> Response<MockBody> {
    if ctx.model.is_empty() {
        return invalid(Provider::Anthropic, "model: Field required");
    }
    let Some(max_tokens) = body.get("max_tokens").and_then(Value::as_u64) else {
        return invalid(Provider::Anthropic, "max_tokens: Field required");
    };
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return invalid(Provider::Anthropic, "messages: Field required");
    };
    let tools = tool_request(body, messages);
    let limits = Limits {
        max_tokens: Some(max_tokens),
        stop: Limits::stops_from(body.get("stop_sequences")),
    };
    let reply = match tools.calls(ctx.directives.tools) {
        Some(calls) => Reply::Tools(calls),
        None => Reply::Text(text_reply(ctx.body_len, ctx.tokens(), &limits)),
    };
    // Unforced tool use comes with a short text block first, as Claude does.
    let preamble: Vec<String> = match &reply {
        Reply::Tools(_) if !tools.forced() => TOOL_PREAMBLE_WORDS
            .iter()
            .enumerate()
            .map(|(i, w)| if i == 0 { (*w).to_owned() } else { format!(" {w}") })
            .collect(),
        _ => Vec::new(),
    };
    let id = format!("msg_01{}", rand_alnum(22));
    let prompt = ctx.prompt_tokens();
    let tool_ids: Vec<String> = match &reply {
        Reply::Tools(calls) => calls.iter().map(|_| format!("toolu_01{}", rand_alnum(22))).collect(),
        Reply::Text(_) => Vec::new(),
    };
    let (stop_reason, stop_sequence, output_tokens) = match &reply {
        Reply::Text(t) => {
            let (r, s) = stop_fields(&t.finish);
            (r, s, t.tokens())
        }
        Reply::Tools(calls) => (
            "tool_use",
            Value::Null,
            preamble.len() as u64 + TOKENS_PER_CALL * calls.len() as u64,
        ),
    };

    if body.get("stream") != Some(&Value::Bool(true)) {
        let mut content = Vec::new();
        match &reply {
            Reply::Text(t) => content.push(json!({"type": "text", "text": t.text()})),
            Reply::Tools(calls) => {
                if !preamble.is_empty() {
                    content.push(json!({"type": "text", "text": preamble.concat()}));
                }
                for (call, tid) in calls.iter().zip(&tool_ids) {
                    content.push(json!({"type": "tool_use", "id": tid, "name": call.name, "input": call.args}));
                }
            }
        }
        return ctx.json(&json!({
            "id": id, "type": "message", "role": "assistant", "model": ctx.model,
            "content": content, "stop_reason": stop_reason, "stop_sequence": stop_sequence,
            "usage": {
                "input_tokens": prompt, "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0, "output_tokens": output_tokens
            }
        }));
    }

    let ev = |name: &str, data: Value| named_event(name, &data);
    let mut events = vec![Ev::meta(ev(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": ctx.model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": prompt, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0, "output_tokens": 1}
        }}),
    ))];
    let ping = || Ev::meta(ev("ping", json!({"type": "ping"})));
    let text_block = |events: &mut Vec<Ev>, index: usize, words: &[String], last: bool| {
        events.push(Ev::meta(ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
        )));
        if index == 0 {
            events.push(ping());
        }
        for w in words {
            events.push(Ev::content(ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": w}}),
            )));
        }
        let stop = ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        );
        events.push(if last { Ev::terminal(stop) } else { Ev::meta(stop) });
    };
    match &reply {
        Reply::Text(t) => text_block(&mut events, 0, &t.pieces, true),
        Reply::Tools(calls) => {
            let mut index = 0;
            if !preamble.is_empty() {
                text_block(&mut events, 0, &preamble, false);
                index = 1;
            }
            for (k, (call, tid)) in calls.iter().zip(&tool_ids).enumerate() {
                events.push(Ev::meta(ev(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": index,
                           "content_block": {"type": "tool_use", "id": tid, "name": call.name, "input": {}}}),
                )));
                if index == 0 {
                    events.push(ping());
                }
                // The first fragment is empty; a tool without arguments gets only that one.
                let mut frags = vec![String::new()];
                if call.args_json != "{}" {
                    frags.extend(fragments(&call.args_json, 6));
                }
                for f in frags {
                    events.push(Ev::content(ev(
                        "content_block_delta",
                        json!({"type": "content_block_delta", "index": index,
                               "delta": {"type": "input_json_delta", "partial_json": f}}),
                    )));
                }
                let stop = ev(
                    "content_block_stop",
                    json!({"type": "content_block_stop", "index": index}),
                );
                events.push(if k + 1 == calls.len() {
                    Ev::terminal(stop)
                } else {
                    Ev::meta(stop)
                });
                index += 1;
            }
        }
    }
    events.push(Ev::terminal(ev(
        "message_delta",
        json!({"type": "message_delta",
               "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
               "usage": {"output_tokens": output_tokens}}),
    )));
    events.push(Ev::terminal(ev("message_stop", json!({"type": "message_stop"}))));
    ctx.stream(SSE, events, error_event())
}

/// `POST /v1/messages/count_tokens`.
pub fn count_tokens(ctx: &Ctx) -> Response<MockBody> {
    ctx.json(&json!({"input_tokens": ctx.prompt_tokens()}))
}

/// `GET /v1/models`, Anthropic shape.
pub fn models() -> Response<MockBody> {
    let models = [
        (
            "claude-sonnet-4-5-20250929",
            "Claude Sonnet 4.5",
            "2025-09-29T00:00:00Z",
        ),
        ("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "2025-10-01T00:00:00Z"),
        ("claude-opus-4-1-20250805", "Claude Opus 4.1", "2025-08-05T00:00:00Z"),
    ];
    let data: Vec<Value> = models
        .iter()
        .map(|(id, name, at)| json!({"type": "model", "id": id, "display_name": name, "created_at": at}))
        .collect();
    json_response(
        200,
        &json!({"data": data, "has_more": false, "first_id": models[0].0, "last_id": models[2].0}),
    )
}

//! Inputs shared by the benchmarks: realistic requests and native upstream streams, built
//! deterministically so every run measures the same bytes.

// Each bench target uses its own subset of these helpers.
#![allow(dead_code)]

use std::collections::HashMap;

use prism_gateway::providers::{Ctx, Endpoint, Kind, Options};
use serde_json::{json, Value};

/// Created timestamp used by every context (the clock is an input of the translators).
pub const CREATED: u64 = 1_767_225_600;

/// English-like text with the characters JSON must escape now and then (quotes, newlines,
/// a backslash) and some non-ASCII, `len` bytes long or a little more.
pub fn filler(len: usize, seed: usize) -> String {
    const WORDS: [&str; 24] = [
        "the",
        "gateway",
        "translates",
        "requests",
        "between",
        "providers",
        "and",
        "returns",
        "chunks",
        "\"quoted\"",
        "tokens",
        "stream",
        "café",
        "naïve",
        "résumé",
        "latency",
        "with",
        "tools",
        "line\nbreak",
        "back\\slash",
        "of",
        "a",
        "model",
        "answer",
    ];
    let mut s = String::with_capacity(len + 16);
    let mut i = seed;
    while s.len() < len {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(WORDS[i % WORDS.len()]);
        i = i.wrapping_mul(31).wrapping_add(7);
    }
    s
}

/// A streaming chat request with two tools, a tool round trip and sampling parameters whose
/// JSON body is at least `target` bytes: the conversation history grows to fill it.
pub fn chat_request(model: &str, target: usize) -> Vec<u8> {
    let tools = json!([
        {"type": "function", "function": {"name": "get_weather", "description": "Current weather for a city",
         "parameters": {"type": "object", "properties": {
             "city": {"type": "string", "description": "City name"},
             "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
           "required": ["city"], "additionalProperties": false}}},
        {"type": "function", "function": {"name": "search_docs", "description": "Search the knowledge base",
         "parameters": {"type": "object", "properties": {
             "query": {"type": "string"}, "top_k": {"type": "integer", "minimum": 1, "maximum": 20}},
           "required": ["query"]}}}
    ]);
    let tail = [
        json!({"role": "user", "content": "What is the weather in Paris, and what do our docs say about it?"}),
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_abc123", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}),
        json!({"role": "tool", "tool_call_id": "call_abc123", "content": "{\"temp\":18,\"sky\":\"clear\"}"}),
    ];
    let build = |history: &[Value]| -> Vec<u8> {
        let mut messages =
            vec![json!({"role": "system", "content": "You are a concise assistant. Use tools when they help."})];
        messages.extend(history.iter().cloned());
        messages.extend(tail.iter().cloned());
        let body = json!({
            "model": model, "messages": messages, "tools": tools, "tool_choice": "auto",
            "temperature": 0.7, "top_p": 0.9, "max_completion_tokens": 1024, "stop": ["\n\nUser:"],
            "stream": true, "stream_options": {"include_usage": true}
        });
        serde_json::to_vec(&body).unwrap_or_default()
    };
    // Grow the history by each message's serialized size (plus its comma), then build once.
    let mut history = Vec::new();
    let mut len = build(&history).len();
    while len < target {
        let text = filler((target - len).clamp(16, 4096), history.len());
        let role = if history.len() % 2 == 0 { "user" } else { "assistant" };
        let message = json!({"role": role, "content": text});
        len += serde_json::to_vec(&message).map(|m| m.len()).unwrap_or(0) + 1;
        history.push(message);
    }
    build(&history)
}

/// Owns what a [`Ctx`] borrows.
pub struct CtxParts {
    pub options: Options,
    pub images: HashMap<String, (String, String)>,
}

impl CtxParts {
    pub fn new() -> Self {
        CtxParts {
            options: Options::default(),
            images: HashMap::new(),
        }
    }

    pub fn ctx<'a>(&'a self, kind: Kind, model: &'a str, stream: bool) -> Ctx<'a> {
        Ctx {
            provider: kind.as_str(),
            kind,
            endpoint: Endpoint::Chat,
            client_model: model,
            upstream_model: model,
            stream,
            include_usage: stream,
            created: CREATED,
            fallback_id: "chatcmpl-bench00000000000000000",
            id_seed: 7,
            options: &self.options,
            embed_base64: false,
            images: &self.images,
        }
    }
}

/// A model name typical of each kind.
pub fn model_for(kind: Kind) -> &'static str {
    match kind {
        Kind::Openai => "gpt-4o",
        Kind::Mistral => "mistral-large-latest",
        Kind::Ollama => "llama3.2",
        Kind::Vllm => "qwen3-8b",
        Kind::Lmstudio => "qwen2.5-7b-instruct",
        Kind::Anthropic => "claude-sonnet-4-5",
        Kind::Gemini => "gemini-2.5-flash",
        Kind::Cohere => "command-a-03-2025",
    }
}

fn data(v: &Value) -> Vec<u8> {
    let mut out = b"data: ".to_vec();
    out.extend(serde_json::to_vec(v).unwrap_or_default());
    out.extend_from_slice(b"\n\n");
    out
}

fn named(v: &Value) -> Vec<u8> {
    let mut out = format!("event: {}\n", v["type"].as_str().unwrap_or_default()).into_bytes();
    out.extend(data(v));
    out
}

/// A short token of streamed text, as models send them.
fn token(i: usize) -> String {
    let mut t = String::from(" ");
    t.push_str(&filler(1, i));
    t
}

/// 1,000 `chat.completion.chunk` events of an OpenAI stream (role, 996 tokens, finish,
/// usage, `[DONE]`), one event per element.
pub fn openai_stream() -> Vec<Vec<u8>> {
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "object": "chat.completion.chunk",
               "created": 1_760_000_000u64, "model": "gpt-4o-2024-08-06", "system_fingerprint": "fp_eb9dce56a8",
               "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
    };
    let mut ev = vec![data(&chunk(json!({"role": "assistant", "content": ""}), Value::Null))];
    for i in 0..996 {
        ev.push(data(&chunk(json!({"content": token(i)}), Value::Null)));
    }
    ev.push(data(&chunk(json!({}), json!("stop"))));
    let mut usage = chunk(json!({}), Value::Null);
    usage["choices"] = json!([]);
    usage["usage"] = json!({"prompt_tokens": 1200, "completion_tokens": 997, "total_tokens": 2197});
    ev.push(data(&usage));
    ev.push(b"data: [DONE]\n\n".to_vec());
    ev
}

/// 1,000 events of an Anthropic Messages stream: message_start, a text block of 994 deltas
/// with a ping, message_delta, message_stop.
pub fn anthropic_stream() -> Vec<Vec<u8>> {
    let mut ev = vec![
        named(
            &json!({"type": "message_start", "message": {"id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message",
            "role": "assistant", "content": [], "model": "claude-sonnet-4-5-20250929", "stop_reason": null,
            "stop_sequence": null, "usage": {"input_tokens": 1200, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0, "output_tokens": 1}}}),
        ),
        named(&json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})),
        named(&json!({"type": "ping"})),
    ];
    for i in 0..994 {
        ev.push(named(&json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": token(i)}})));
    }
    ev.push(named(&json!({"type": "content_block_stop", "index": 0})));
    ev.push(named(
        &json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
        "usage": {"output_tokens": 994}}),
    ));
    ev.push(named(&json!({"type": "message_stop"})));
    ev
}

/// 1,000 `streamGenerateContent?alt=sse` events; usage on every event, the last one with
/// `finishReason`.
pub fn gemini_stream() -> Vec<Vec<u8>> {
    (0..1000)
        .map(|i| {
            let mut cand = json!({"content": {"parts": [{"text": token(i)}], "role": "model"}, "index": 0});
            if i == 999 {
                cand["finishReason"] = json!("STOP");
            }
            data(&json!({"candidates": [cand],
                "usageMetadata": {"promptTokenCount": 1200, "candidatesTokenCount": i + 1, "totalTokenCount": 1201 + i},
                "modelVersion": "gemini-2.5-flash", "responseId": "mB9vaPGTLdXKz7IPj6OWqAQ"}))
        })
        .collect()
}

/// 1,000 events of a Cohere v2 chat stream: message-start, content-start, 996 deltas,
/// content-end, message-end.
pub fn cohere_stream() -> Vec<Vec<u8>> {
    let mut ev = vec![
        named(
            &json!({"type": "message-start", "id": "5f2a7e3c-0d8b-4a51-9c3e-1b2d3e4f5a6b",
            "delta": {"message": {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}}}),
        ),
        named(&json!({"type": "content-start", "index": 0,
            "delta": {"message": {"content": {"type": "text", "text": ""}}}})),
    ];
    for i in 0..996 {
        ev.push(named(&json!({"type": "content-delta", "index": 0,
            "delta": {"message": {"content": {"text": token(i)}}}})));
    }
    ev.push(named(&json!({"type": "content-end", "index": 0})));
    ev.push(named(
        &json!({"type": "message-end", "delta": {"finish_reason": "COMPLETE",
        "usage": {"billed_units": {"input_tokens": 1200, "output_tokens": 996},
                  "tokens": {"input_tokens": 1266, "output_tokens": 996}}}}),
    ));
    ev
}

/// A config of `n` providers (kinds in turn) and `n` routes of two targets each, every
/// tenth weighted; every fourth provider falls back to the next one.
pub fn large_config(n: usize) -> String {
    let kinds = [
        "openai",
        "anthropic",
        "gemini",
        "cohere",
        "mistral",
        "vllm",
        "ollama",
        "lmstudio",
    ];
    let mut s = String::from("[server]\ndefault_provider = \"p0000\"\n\n[auth]\nenabled = false\n\n");
    for i in 0..n {
        let kind = kinds[i % kinds.len()];
        s.push_str(&format!(
            "[providers.p{i:04}]\nkind = \"{kind}\"\napi_key = \"sk-test-{i:04}\"\nbase_url = \"http://127.0.0.1:{}/v1\"\n\
             models = [\"model-{i}-a\", \"model-{i}-b\"]\n",
            20000 + i
        ));
        if i % 4 == 0 {
            let next = (i + 1) % n;
            s.push_str(&format!("fallbacks = [\"p{next:04}/model-{next}-a\"]\n"));
        }
        s.push('\n');
    }
    for i in 0..n {
        let (a, b) = (i, (i * 7 + 3) % n);
        if i % 10 == 0 {
            s.push_str(&format!(
                "[[routes]]\nmodel = \"route-{i}\"\nstrategy = \"weighted\"\ntargets = [{{ target = \"p{a:04}/model-{a}-a\", weight = 3 }}, {{ target = \"p{b:04}/model-{b}-b\", weight = 1 }}]\n\n"
            ));
        } else {
            s.push_str(&format!(
                "[[routes]]\nmodel = \"route-{i}\"\ntargets = [\"p{a:04}/model-{a}-a\", \"p{b:04}/model-{b}-b\"]\n\n"
            ));
        }
    }
    s
}

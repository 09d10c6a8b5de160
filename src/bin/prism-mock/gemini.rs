//! Gemini GenAI REST API: `models/{model}:generateContent`, `:streamGenerateContent` (SSE with
//! `alt=sse`, a streamed JSON array without), `:embedContent`, `:batchEmbedContents`,
//! `:countTokens`, and the model list. Field names are accepted in lowerCamel and snake_case,
//! like the real JSON mapping.

use bytes::Bytes;
use http::Response;
use serde_json::{json, Value};

use crate::body::MockBody;
use crate::reply::{
    asks_for_tools, embedding, rand_alnum, text_reply, Finish, Limits, Reply, ToolChoice, ToolRequest, TOKENS_PER_CALL,
};
use crate::respond::{invalid, json_response, Ctx, Ev, Provider};

/// Looks a field up by its lowerCamel or snake_case name.
fn field<'a>(v: &'a Value, camel: &str, snake: &str) -> Option<&'a Value> {
    v.get(camel).or_else(|| v.get(snake))
}

fn parts_text(content: Option<&Value>) -> String {
    content
        .and_then(|c| c.get("parts"))
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<String>()
        })
        .unwrap_or_default()
}

fn tool_request(body: &Value, contents: &[Value]) -> ToolRequest {
    let mut declared: Vec<String> = body
        .get("tools")
        .and_then(Value::as_array)
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| field(t, "functionDeclarations", "function_declarations"))
                .filter_map(Value::as_array)
                .flatten()
                .filter_map(|d| d.get("name").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let config = field(body, "toolConfig", "tool_config")
        .and_then(|c| field(c, "functionCallingConfig", "function_calling_config"));
    let allowed: Vec<String> = config
        .and_then(|c| field(c, "allowedFunctionNames", "allowed_function_names"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let choice = match config.and_then(|c| c.get("mode")).and_then(Value::as_str) {
        Some("ANY") if allowed.len() == 1 => ToolChoice::Named(allowed[0].clone()),
        Some("ANY") => {
            if !allowed.is_empty() {
                declared.retain(|d| allowed.contains(d));
            }
            ToolChoice::Any
        }
        Some("NONE") => ToolChoice::None,
        _ => ToolChoice::Auto,
    };
    let last_user = contents
        .iter()
        .rev()
        .find(|c| matches!(c.get("role").and_then(Value::as_str), None | Some("user")))
        .map(|c| parts_text(Some(c)))
        .unwrap_or_default();
    ToolRequest {
        declared,
        choice,
        single: false,
        asked: asks_for_tools(&last_user),
    }
}

fn usage(prompt: u64, candidates: u64) -> Value {
    json!({
        "promptTokenCount": prompt,
        "candidatesTokenCount": candidates,
        "totalTokenCount": prompt + candidates,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]
    })
}

/// An opaque signature, as Gemini puts on the first function call of a turn.
fn thought_signature() -> String {
    format!("CiQB{}", rand_alnum(40))
}

/// `:generateContent` and `:streamGenerateContent`.
pub fn generate(ctx: &Ctx, body: &Value, stream: bool, sse: bool) -> Response<MockBody> {
    let Some(contents) = body.get("contents").and_then(Value::as_array) else {
        return invalid(
            Provider::Gemini,
            "* GenerateContentRequest.contents: contents is not specified\n",
        );
    };
    let gen = field(body, "generationConfig", "generation_config");
    let limits = Limits {
        max_tokens: gen
            .and_then(|g| field(g, "maxOutputTokens", "max_output_tokens"))
            .and_then(Value::as_u64),
        stop: Limits::stops_from(gen.and_then(|g| field(g, "stopSequences", "stop_sequences"))),
    };
    let reply = match tool_request(body, contents).calls(ctx.directives.tools) {
        Some(calls) => Reply::Tools(calls),
        None => Reply::Text(text_reply(ctx.body_len, ctx.tokens(), &limits)),
    };
    let response_id = rand_alnum(22);
    let prompt = ctx.prompt_tokens();
    let envelope = |candidate: Value, completion: u64| {
        json!({
            "candidates": [candidate],
            "usageMetadata": usage(prompt, completion),
            "modelVersion": ctx.model,
            "responseId": response_id
        })
    };
    let call_part = |i: usize, name: &str, args: &Value| {
        let mut part = json!({"functionCall": {"name": name, "args": args}});
        if i == 0 {
            part["thoughtSignature"] = json!(thought_signature());
        }
        part
    };

    if !stream {
        let (parts, finish, completion) = match &reply {
            Reply::Text(t) => (
                vec![json!({"text": t.text()})],
                if t.finish == Finish::Length {
                    "MAX_TOKENS"
                } else {
                    "STOP"
                },
                t.tokens(),
            ),
            Reply::Tools(calls) => (
                calls
                    .iter()
                    .enumerate()
                    .map(|(i, c)| call_part(i, &c.name, &c.args))
                    .collect(),
                "STOP",
                TOKENS_PER_CALL * calls.len() as u64,
            ),
        };
        return ctx.json(&envelope(
            json!({"content": {"parts": parts, "role": "model"}, "finishReason": finish, "index": 0}),
            completion,
        ));
    }

    let mut docs: Vec<(Value, bool)> = Vec::new();
    match &reply {
        Reply::Text(t) => {
            for (i, p) in t.pieces.iter().enumerate() {
                docs.push((
                    envelope(
                        json!({"content": {"parts": [{"text": p}], "role": "model"}, "index": 0}),
                        i as u64 + 1,
                    ),
                    true,
                ));
            }
            let finish = if t.finish == Finish::Length {
                "MAX_TOKENS"
            } else {
                "STOP"
            };
            docs.push((
                envelope(
                    json!({"content": {"parts": [{"text": ""}], "role": "model"}, "finishReason": finish, "index": 0}),
                    t.tokens(),
                ),
                false,
            ));
        }
        Reply::Tools(calls) => {
            for (i, c) in calls.iter().enumerate() {
                docs.push((
                    envelope(
                        json!({"content": {"parts": [call_part(i, &c.name, &c.args)], "role": "model"}, "index": 0}),
                        TOKENS_PER_CALL * (i as u64 + 1),
                    ),
                    true,
                ));
            }
            // The finish often arrives in a later event than the calls, with no content.
            docs.push((
                envelope(
                    json!({"finishReason": "STOP", "index": 0}),
                    TOKENS_PER_CALL * calls.len() as u64,
                ),
                false,
            ));
        }
    }
    let error = json!({"error": {
        "code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"
    }});

    if sse {
        let events = docs
            .into_iter()
            .map(|(doc, content)| {
                let b = Bytes::from(format!("data: {doc}\r\n\r\n"));
                if content {
                    Ev::content(b)
                } else {
                    Ev::terminal(b)
                }
            })
            .collect();
        return ctx.stream(
            "text/event-stream",
            events,
            Bytes::from(format!("data: {error}\r\n\r\n")),
        );
    }

    // Without alt=sse the stream is one JSON array, written element by element.
    let mut events: Vec<Ev> = docs
        .into_iter()
        .enumerate()
        .map(|(i, (doc, content))| {
            let sep = if i == 0 { "[" } else { ",\r\n" };
            let b = Bytes::from(format!("{sep}{doc}"));
            if content {
                Ev::content(b)
            } else {
                Ev::terminal(b)
            }
        })
        .collect();
    events.push(Ev::terminal(Bytes::from_static(b"]")));
    let error = if ctx.directives.inband_error_after == Some(0) {
        format!("[{error}]")
    } else {
        format!(",\r\n{error}]")
    };
    ctx.stream("application/json; charset=UTF-8", events, Bytes::from(error))
}

fn dims_of(ctx: &Ctx, req: &Value) -> Result<usize, Response<MockBody>> {
    match field(req, "outputDimensionality", "output_dimensionality") {
        None | Some(Value::Null) => Ok(ctx.default_dims),
        Some(v) => match v.as_u64() {
            Some(d) if (1..=65536).contains(&d) => Ok(d as usize),
            _ => Err(invalid(
                Provider::Gemini,
                "* EmbedContentRequest.output_dimensionality: must be a positive integer\n",
            )),
        },
    }
}

/// `:embedContent`.
pub fn embed(ctx: &Ctx, body: &Value) -> Response<MockBody> {
    if body.get("content").is_none() {
        return invalid(
            Provider::Gemini,
            "* EmbedContentRequest.content: content is not specified\n",
        );
    }
    let dims = match dims_of(ctx, body) {
        Ok(d) => d,
        Err(resp) => return resp,
    };
    let values = embedding(&parts_text(body.get("content")), dims);
    ctx.json(&json!({"embedding": {"values": values}}))
}

/// `:batchEmbedContents`: every request's `model` must name the model of the URL.
pub fn batch_embed(ctx: &Ctx, body: &Value) -> Response<MockBody> {
    let Some(requests) = body.get("requests").and_then(Value::as_array).filter(|r| !r.is_empty()) else {
        return invalid(
            Provider::Gemini,
            "* BatchEmbedContentsRequest.requests: requests is not specified\n",
        );
    };
    let mut embeddings = Vec::with_capacity(requests.len());
    for (i, req) in requests.iter().enumerate() {
        if let Some(model) = req.get("model").and_then(Value::as_str) {
            let bare = model.strip_prefix("models/").unwrap_or(model);
            let bare = bare.split('@').next().unwrap_or(bare);
            if bare != ctx.model {
                return invalid(
                    Provider::Gemini,
                    &format!("* BatchEmbedContentsRequest.requests[{i}].model: model '{model}' does not match the model in the URL 'models/{}'\n", ctx.model),
                );
            }
        }
        if req.get("content").is_none() {
            return invalid(
                Provider::Gemini,
                &format!("* BatchEmbedContentsRequest.requests[{i}].content: content is not specified\n"),
            );
        }
        let dims = match dims_of(ctx, req) {
            Ok(d) => d,
            Err(resp) => return resp,
        };
        embeddings.push(json!({"values": embedding(&parts_text(req.get("content")), dims)}));
    }
    ctx.json(&json!({"embeddings": embeddings}))
}

/// `:countTokens`.
pub fn count_tokens(ctx: &Ctx) -> Response<MockBody> {
    let p = ctx.prompt_tokens();
    ctx.json(&json!({"totalTokens": p, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": p}]}))
}

/// `GET /v1beta/models`.
pub fn models() -> Response<MockBody> {
    let chat = [
        "generateContent",
        "countTokens",
        "createCachedContent",
        "batchGenerateContent",
    ];
    let models = json!([
        {"name": "models/gemini-2.5-flash", "version": "001", "displayName": "Gemini 2.5 Flash",
         "description": "Stable version of Gemini 2.5 Flash.", "inputTokenLimit": 1048576,
         "outputTokenLimit": 65536, "supportedGenerationMethods": chat,
         "temperature": 1, "topP": 0.95, "topK": 64, "maxTemperature": 2, "thinking": true},
        {"name": "models/gemini-2.5-pro", "version": "2.5", "displayName": "Gemini 2.5 Pro",
         "description": "Stable release of Gemini 2.5 Pro.", "inputTokenLimit": 1048576,
         "outputTokenLimit": 65536, "supportedGenerationMethods": chat,
         "temperature": 1, "topP": 0.95, "topK": 64, "maxTemperature": 2, "thinking": true},
        {"name": "models/gemini-embedding-001", "version": "001", "displayName": "Gemini Embedding 001",
         "description": "Obtain a distributed representation of a text.", "inputTokenLimit": 2048,
         "outputTokenLimit": 1, "supportedGenerationMethods": ["embedContent", "countTextTokens", "countTokens"]},
        {"name": "models/imagen-4.0-generate-001", "version": "001", "displayName": "Imagen 4",
         "description": "Vertex served Imagen 4.0 model", "inputTokenLimit": 480,
         "outputTokenLimit": 8192, "supportedGenerationMethods": ["predict"]}
    ]);
    json_response(200, &json!({"models": models}))
}

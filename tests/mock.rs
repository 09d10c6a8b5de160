//! prism-mock, black-box: starts the built binary and checks every wire format, the stream event
//! sequences, the fault directives, the control endpoints and TLS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use futures_util::StreamExt;
use serde_json::{json, Value};

/// A running prism-mock, killed on drop.
struct Mock {
    child: Child,
    base: String,
}

impl Mock {
    fn start(args: &[&str]) -> Mock {
        let mut child = Command::new(env!("CARGO_BIN_EXE_prism-mock"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn prism-mock");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read listening line");
        let base = line
            .trim()
            .strip_prefix("prism-mock listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_owned();
        Mock { child, base }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

async fn post(mock: &Mock, path: &str, body: &Value) -> reqwest::Response {
    client().post(mock.url(path)).json(body).send().await.expect("send")
}

fn body_len(body: &Value) -> usize {
    serde_json::to_vec(body).expect("json").len()
}

fn expected_text(len: usize, words: usize) -> String {
    let mut all = vec![
        "prism-mock".to_owned(),
        "received".to_owned(),
        len.to_string(),
        "bytes.".to_owned(),
        "tok1".to_owned(),
        "héllo".to_owned(),
    ];
    for k in 3..=words {
        all.push(format!("tok{k}"));
    }
    all.truncate(words);
    all.join(" ")
}

/// One SSE event: its `event:` name (if any) and its joined `data:` lines.
#[derive(Debug)]
struct Event {
    name: Option<String>,
    data: String,
}

impl Event {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("bad JSON {:?}: {e}", self.data))
    }
}

fn parse_sse(text: &str) -> Vec<Event> {
    let text = text.replace("\r\n", "\n");
    let mut events = Vec::new();
    for block in text.split("\n\n") {
        if block.trim().is_empty() {
            continue;
        }
        let mut name = None;
        let mut data = Vec::new();
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event: ") {
                name = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("data: ") {
                data.push(v);
            }
        }
        events.push(Event {
            name,
            data: data.join("\n"),
        });
    }
    events
}

/// Reads a whole stream frame by frame (UTF-8 is decoded only at the end, since frames cut
/// characters) and returns the text and the number of frames.
async fn read_stream(resp: reqwest::Response) -> (String, usize) {
    let mut stream = resp.bytes_stream();
    let mut bytes = Vec::new();
    let mut frames = 0;
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.expect("stream chunk"));
        frames += 1;
    }
    (String::from_utf8(bytes).expect("utf-8 stream"), frames)
}

#[tokio::test]
async fn openai_chat_json_and_stream() {
    let mock = Mock::start(&[]);
    let req = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    let resp = post(&mock, "/v1/chat/completions", &req).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gpt-4o");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], expected_text(body_len(&req), 8));
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], body_len(&req) / 4);
    assert_eq!(v["usage"]["completion_tokens"], 8);
    assert!(v["id"].as_str().is_some_and(|s| s.starts_with("chatcmpl-")));

    let req = json!({"model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true},
                     "messages": [{"role": "user", "content": "hi"}]});
    let resp = post(&mock, "/v1/chat/completions", &req).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let (text, frames) = read_stream(resp).await;
    assert!(frames > 20, "events are split into many frames ({frames})");
    let events = parse_sse(&text);
    assert_eq!(events.len(), 1 + 8 + 1 + 1 + 1);
    let first = events[0].json();
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(first["usage"], Value::Null);
    let content: String = events[1..9]
        .iter()
        .map(|e| e.json()["choices"][0]["delta"]["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(content, expected_text(body_len(&req), 8));
    assert_eq!(events[9].json()["choices"][0]["finish_reason"], "stop");
    let usage = events[10].json();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 8);
    assert_eq!(events[11].data, "[DONE]");
    let id = first["id"].clone();
    assert!(events[..11].iter().all(|e| e.json()["id"] == id));
}

#[tokio::test]
async fn openai_tools_completions_embeddings_models() {
    let mock = Mock::start(&[]);
    let tools = json!([
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "get_time"}}
    ]);
    let req = json!({"model": "gpt-4o", "tools": tools, "tool_choice": "required",
                     "messages": [{"role": "user", "content": "weather?"}]});
    let v: Value = post(&mock, "/v1/chat/completions", &req).await.json().await.unwrap();
    let msg = &v["choices"][0]["message"];
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(msg["content"], Value::Null);
    assert_eq!(msg["tool_calls"][0]["function"]["arguments"], r#"{"city":"Paris"}"#);
    assert_eq!(msg["tool_calls"][1]["function"]["name"], "get_time");
    assert_eq!(msg["tool_calls"][1]["function"]["arguments"], "{}");

    // Streamed: argument fragments per index reassemble into the JSON.
    let req = json!({"model": "gpt-4o", "stream": true, "tools": tools,
                     "messages": [{"role": "user", "content": "please call tools"}]});
    let (text, _) = read_stream(post(&mock, "/v1/chat/completions", &req).await).await;
    let events = parse_sse(&text);
    let mut args = [String::new(), String::new()];
    let mut finish = None;
    for e in events.iter().filter(|e| e.data != "[DONE]") {
        let c = &e.json()["choices"][0];
        if let Some(calls) = c["delta"]["tool_calls"].as_array() {
            for call in calls {
                let i = call["index"].as_u64().unwrap() as usize;
                args[i].push_str(call["function"]["arguments"].as_str().unwrap());
            }
        }
        if !c["finish_reason"].is_null() {
            finish = Some(c["finish_reason"].clone());
        }
    }
    assert_eq!(args, [r#"{"city":"Paris"}"#.to_owned(), "{}".to_owned()]);
    assert_eq!(finish, Some(json!("tool_calls")));
    assert_eq!(events.last().unwrap().data, "[DONE]");

    // Legacy completions, JSON and stream.
    let req = json!({"model": "gpt-3.5-turbo-instruct@tokens=3", "prompt": "Say"});
    let v: Value = post(&mock, "/v1/completions", &req).await.json().await.unwrap();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["model"], "gpt-3.5-turbo-instruct");
    assert_eq!(v["choices"][0]["text"], expected_text(body_len(&req), 3));
    let req = json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Say", "stream": true});
    let (text, _) = read_stream(post(&mock, "/v1/completions", &req).await).await;
    let events = parse_sse(&text);
    assert_eq!(events.len(), 8 + 1 + 1);
    assert_eq!(events[8].json()["choices"][0]["finish_reason"], "stop");
    assert_eq!(events[9].data, "[DONE]");

    // Embeddings: float and base64 carry the same f32 values, in input order.
    let req = json!({"model": "text-embedding-3-small", "input": ["a", "b"], "dimensions": 4});
    let floats: Value = post(&mock, "/v1/embeddings", &req).await.json().await.unwrap();
    assert_eq!(floats["data"][1]["index"], 1);
    assert_eq!(floats["data"][0]["embedding"].as_array().unwrap().len(), 4);
    let req = json!({"model": "text-embedding-3-small", "input": ["a", "b"], "dimensions": 4,
                     "encoding_format": "base64"});
    let b64: Value = post(&mock, "/v1/embeddings", &req).await.json().await.unwrap();
    for i in 0..2 {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64["data"][i]["embedding"].as_str().unwrap())
            .unwrap();
        let decoded: Vec<f32> = raw
            .chunks(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let expected: Vec<f32> = floats["data"][i]["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(decoded, expected);
    }
    assert_ne!(floats["data"][0]["embedding"], floats["data"][1]["embedding"]);

    let v: Value = client()
        .get(mock.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["object"], "model");
}

#[tokio::test]
async fn anthropic_messages_json_and_streams() {
    let mock = Mock::start(&[]);
    let req = json!({"model": "claude-sonnet-4-5", "max_tokens": 100,
                     "messages": [{"role": "user", "content": "hi"}]});
    let v: Value = post(&mock, "/v1/messages", &req).await.json().await.unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["content"][0]["type"], "text");
    assert_eq!(v["content"][0]["text"], expected_text(body_len(&req), 8));
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"]["input_tokens"], body_len(&req) / 4);
    assert_eq!(v["usage"]["output_tokens"], 8);

    // max_tokens is required, as upstream.
    let resp = post(&mock, "/v1/messages", &json!({"model": "claude", "messages": []})).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");

    let req = json!({"model": "claude-sonnet-4-5", "max_tokens": 100, "stream": true,
                     "messages": [{"role": "user", "content": "hi"}]});
    let (text, _) = read_stream(post(&mock, "/v1/messages", &req).await).await;
    let events = parse_sse(&text);
    let names: Vec<&str> = events.iter().map(|e| e.name.as_deref().unwrap()).collect();
    let mut expected = vec!["message_start", "content_block_start", "ping"];
    expected.extend(std::iter::repeat_n("content_block_delta", 8));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, expected);
    for e in &events {
        assert_eq!(e.json()["type"], e.name.as_deref().unwrap());
    }
    let text: String = events[3..11]
        .iter()
        .map(|e| e.json()["delta"]["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(text, expected_text(body_len(&req), 8));
    assert_eq!(events[12].json()["delta"]["stop_reason"], "end_turn");

    // Forced tool: no text block, tool_use blocks with input_json_delta fragments.
    let req = json!({"model": "claude-sonnet-4-5", "max_tokens": 100, "stream": true,
                     "tools": [{"name": "get_weather", "input_schema": {"type": "object"}},
                               {"name": "get_time", "input_schema": {"type": "object"}}],
                     "tool_choice": {"type": "any"},
                     "messages": [{"role": "user", "content": "hi"}]});
    let (text, _) = read_stream(post(&mock, "/v1/messages", &req).await).await;
    let events = parse_sse(&text);
    let mut partial = vec![String::new(); 2];
    let mut deltas = 0;
    for e in &events {
        let v = e.json();
        if v["type"] == "content_block_start" {
            assert_eq!(v["content_block"]["type"], "tool_use");
            assert_eq!(v["content_block"]["input"], json!({}));
        }
        if v["delta"]["type"] == "input_json_delta" {
            let i = v["index"].as_u64().unwrap() as usize;
            partial[i].push_str(v["delta"]["partial_json"].as_str().unwrap());
            deltas += 1;
        }
    }
    assert!(deltas >= 4, "arguments arrive in several fragments");
    assert_eq!(partial, [r#"{"city":"Paris"}"#.to_owned(), String::new()]);
    let delta = events
        .iter()
        .find(|e| e.name.as_deref() == Some("message_delta"))
        .unwrap();
    assert_eq!(delta.json()["delta"]["stop_reason"], "tool_use");
    assert_eq!(events.last().unwrap().name.as_deref(), Some("message_stop"));
}

#[tokio::test]
async fn gemini_generate_stream_embed() {
    let mock = Mock::start(&[]);
    let req = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]});
    let v: Value = post(&mock, "/v1beta/models/gemini-2.5-flash:generateContent", &req)
        .await
        .json()
        .await
        .unwrap();
    let cand = &v["candidates"][0];
    assert_eq!(cand["content"]["role"], "model");
    assert_eq!(cand["content"]["parts"][0]["text"], expected_text(body_len(&req), 8));
    assert_eq!(cand["finishReason"], "STOP");
    assert_eq!(v["usageMetadata"]["candidatesTokenCount"], 8);
    assert_eq!(v["modelVersion"], "gemini-2.5-flash");

    let resp = post(
        &mock,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        &req,
    )
    .await;
    let (text, _) = read_stream(resp).await;
    assert!(text.contains("\r\n\r\n"));
    let events = parse_sse(&text);
    assert_eq!(events.len(), 9);
    assert!(events.iter().all(|e| e.name.is_none()));
    let joined: String = events
        .iter()
        .map(|e| {
            e.json()["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(joined, expected_text(body_len(&req), 8));
    let last = events[8].json();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(last["usageMetadata"]["candidatesTokenCount"], 8);

    // Tool call with mode ANY: functionCall parts, finish STOP.
    let req = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
                     "tools": [{"functionDeclarations": [{"name": "get_weather"}]}],
                     "toolConfig": {"functionCallingConfig": {"mode": "ANY"}}});
    let v: Value = post(&mock, "/v1beta/models/gemini-2.5-flash:generateContent", &req)
        .await
        .json()
        .await
        .unwrap();
    let part = &v["candidates"][0]["content"]["parts"][0];
    assert_eq!(part["functionCall"]["name"], "get_weather");
    assert_eq!(part["functionCall"]["args"], json!({"city": "Paris"}));
    assert_eq!(v["candidates"][0]["finishReason"], "STOP");

    // In-band error after one content event.
    let resp = post(
        &mock,
        "/v1beta/models/gemini-2.5-flash@inband_error_after=1:streamGenerateContent?alt=sse",
        &json!({"contents": []}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let (text, _) = read_stream(resp).await;
    let events = parse_sse(&text);
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[1].json(),
        json!({"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}})
    );

    let v: Value = post(
        &mock,
        "/v1beta/models/gemini-embedding-001:batchEmbedContents",
        &json!({"requests": [
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]}, "outputDimensionality": 5},
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b"}]}, "outputDimensionality": 5}
        ]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["embeddings"].as_array().unwrap().len(), 2);
    assert_eq!(v["embeddings"][0]["values"].as_array().unwrap().len(), 5);
    let one: Value = post(
        &mock,
        "/v1beta/models/gemini-embedding-001:embedContent",
        &json!({"content": {"parts": [{"text": "a"}]}, "outputDimensionality": 5}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(one["embedding"]["values"], v["embeddings"][0]["values"]);

    let v: Value = client()
        .get(mock.url("/v1beta/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["models"][0]["name"], "models/gemini-2.5-flash");
}

#[tokio::test]
async fn cohere_chat_stream_embed() {
    let mock = Mock::start(&[]);
    let req = json!({"model": "command-a-03-2025", "messages": [{"role": "user", "content": "hi"}]});
    let v: Value = post(&mock, "/v2/chat", &req).await.json().await.unwrap();
    assert_eq!(v["finish_reason"], "COMPLETE");
    assert_eq!(v["message"]["role"], "assistant");
    assert_eq!(v["message"]["content"][0]["text"], expected_text(body_len(&req), 8));
    assert_eq!(v["usage"]["tokens"]["output_tokens"], 8);

    let req = json!({"model": "command-a-03-2025", "stream": true,
                     "messages": [{"role": "user", "content": "hi"}]});
    let (text, _) = read_stream(post(&mock, "/v2/chat", &req).await).await;
    let events = parse_sse(&text);
    let names: Vec<&str> = events.iter().map(|e| e.name.as_deref().unwrap()).collect();
    let mut expected = vec!["message-start", "content-start"];
    expected.extend(std::iter::repeat_n("content-delta", 8));
    expected.extend(["content-end", "message-end"]);
    assert_eq!(names, expected);
    assert_eq!(events[11].json()["delta"]["finish_reason"], "COMPLETE");

    // Tool calls: tool-plan-delta, tool-call-start/delta/end, TOOL_CALL.
    let req = json!({"model": "command-a-03-2025", "stream": true, "tool_choice": "REQUIRED",
                     "tools": [{"type": "function", "function": {"name": "get_weather"}},
                               {"type": "function", "function": {"name": "get_time"}}],
                     "messages": [{"role": "user", "content": "hi"}]});
    let (text, _) = read_stream(post(&mock, "/v2/chat", &req).await).await;
    let events = parse_sse(&text);
    let mut args = [String::new(), String::new()];
    for e in &events {
        let v = e.json();
        if v["type"] == "tool-call-delta" || v["type"] == "tool-call-start" {
            let i = v["index"].as_u64().unwrap() as usize;
            args[i].push_str(
                v["delta"]["message"]["tool_calls"]["function"]["arguments"]
                    .as_str()
                    .unwrap(),
            );
        }
    }
    assert_eq!(args, [r#"{"city":"Paris"}"#.to_owned(), "{}".to_owned()]);
    assert!(events.iter().any(|e| e.name.as_deref() == Some("tool-plan-delta")));
    assert_eq!(
        events
            .iter()
            .filter(|e| e.name.as_deref() == Some("tool-call-end"))
            .count(),
        2
    );
    assert_eq!(events.last().unwrap().json()["delta"]["finish_reason"], "TOOL_CALL");

    let v: Value = post(
        &mock,
        "/v2/embed",
        &json!({"model": "embed-v4.0", "texts": ["x", "y"], "input_type": "search_document",
                "embedding_types": ["float"], "output_dimension": 16}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["response_type"], "embeddings_by_type");
    assert_eq!(v["embeddings"]["float"].as_array().unwrap().len(), 2);
    assert_eq!(v["embeddings"]["float"][0].as_array().unwrap().len(), 16);
    let resp = post(&mock, "/v2/embed", &json!({"model": "embed-v4.0", "texts": ["x"]})).await;
    assert_eq!(resp.status(), 400, "input_type is required");

    let v: Value = client()
        .get(mock.url("/v1/models?endpoint=chat"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v["models"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["endpoints"].as_array().unwrap().contains(&json!("chat"))));
}

#[tokio::test]
async fn status_faults_use_native_bodies_and_retry_after() {
    let mock = Mock::start(&[]);
    let resp = post(
        &mock,
        "/v1/messages",
        &json!({"model": "claude@status=529,retry_after=3", "max_tokens": 5, "messages": []}),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 529);
    assert_eq!(resp.headers()["retry-after"], "3");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "overloaded_error");

    let resp = post(
        &mock,
        "/v1beta/models/gemini-2.5-flash@status=503:generateContent",
        &json!({"contents": []}),
    )
    .await;
    assert_eq!(resp.status(), 503);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], 503);
    assert_eq!(v["error"]["status"], "UNAVAILABLE");

    let resp = post(
        &mock,
        "/v2/chat",
        &json!({"model": "command@status=429,retry_after=1", "messages": []}),
    )
    .await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert!(resp.json::<Value>().await.unwrap()["message"].is_string());

    let resp = post(
        &mock,
        "/v1/chat/completions",
        &json!({"model": "gpt@status=500", "messages": []}),
    )
    .await;
    assert_eq!(resp.status(), 500);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "server_error");

    let resp = post(
        &mock,
        "/v1/chat/completions",
        &json!({"model": "gpt@garbage", "messages": []}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/html");
    assert_eq!(resp.text().await.unwrap(), "<html>oops</html>");

    let resp = post(
        &mock,
        "/v1/chat/completions",
        &json!({"model": "gpt@empty", "stream": true, "messages": []}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "");

    let resp = client()
        .post(mock.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["type"],
        "invalid_request_error"
    );
}

#[tokio::test]
async fn control_fault_with_count_stats_and_reset() {
    let mock = Mock::start(&[]);
    let c = client();
    let armed = c
        .post(mock.url("/_mock/fault"))
        .json(&json!({"directives": "status=503,retry_after=2", "count": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(armed.status(), 200);
    let req = json!({"model": "claude", "max_tokens": 5, "messages": []});
    for _ in 0..2 {
        let resp = post(&mock, "/v1/messages", &req).await;
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()["retry-after"], "2");
        assert_eq!(resp.json::<Value>().await.unwrap()["type"], "error");
    }
    assert_eq!(post(&mock, "/v1/messages", &req).await.status(), 200);

    // Without count the fault stays until DELETE.
    c.post(mock.url("/_mock/fault"))
        .json(&json!({"directives": "status=429"}))
        .send()
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(
            post(&mock, "/v2/chat", &json!({"model": "m", "messages": []}))
                .await
                .status(),
            429
        );
    }
    c.delete(mock.url("/_mock/fault")).send().await.unwrap();
    assert_eq!(
        post(&mock, "/v2/chat", &json!({"model": "m", "messages": []}))
            .await
            .status(),
        200
    );

    // `close`: the request is read, then the connection dropped with no response.
    c.post(mock.url("/_mock/fault"))
        .json(&json!({"directives": "close", "count": 1}))
        .send()
        .await
        .unwrap();
    assert!(client().post(mock.url("/v1/messages")).json(&req).send().await.is_err());
    assert_eq!(post(&mock, "/v1/messages", &req).await.status(), 200);

    let stats: Value = c
        .get(mock.url("/_mock/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["requests"], 3 + 4 + 2);
    assert_eq!(stats["by_path"]["/v1/messages"], 5);
    assert_eq!(stats["by_path"]["/v2/chat"], 4);

    c.post(mock.url("/_mock/reset")).send().await.unwrap();
    let stats: Value = c
        .get(mock.url("/_mock/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats, json!({"requests": 0, "by_path": {}}));
}

#[tokio::test]
async fn last_request_and_big_body() {
    let mock = Mock::start(&[]);
    let big = "x".repeat(1 << 20);
    let req = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": big}]});
    let len = body_len(&req);
    let resp = client()
        .post(mock.url("/v1/chat/completions?trace=1"))
        .header("X-Custom-Thing", "Yes")
        .header("Authorization", "Bearer sk-test")
        .json(&req)
        .send()
        .await
        .unwrap();
    let v: Value = resp.json().await.unwrap();
    assert!(v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .starts_with(&format!("prism-mock received {len} bytes.")));

    let last: Value = client()
        .get(mock.url("/_mock/last"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(last["method"], "POST");
    assert_eq!(last["path"], "/v1/chat/completions");
    assert_eq!(last["query"], "trace=1");
    assert_eq!(last["headers"]["x-custom-thing"], "Yes");
    assert_eq!(last["headers"]["authorization"], "Bearer sk-test");
    assert_eq!(last["body_len"], len);
    assert_eq!(last["body"]["model"], "gpt-4o");

    // Non-JSON bodies are kept as strings.
    client()
        .post(mock.url("/v2/chat"))
        .body("plain text")
        .send()
        .await
        .unwrap();
    let last: Value = client()
        .get(mock.url("/_mock/last"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(last["body"], "plain text");
}

#[tokio::test]
async fn reset_after_truncates_the_stream() {
    let mock = Mock::start(&[]);
    let req = json!({"model": "claude@reset_after=2", "max_tokens": 50, "stream": true,
                     "messages": [{"role": "user", "content": "hi"}]});
    let resp = post(&mock, "/v1/messages", &req).await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut got = Vec::new();
    let mut failed = false;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(b) => got.extend_from_slice(&b),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "the client must see an incomplete body");
    let events = parse_sse(&String::from_utf8_lossy(&got));
    let deltas = events
        .iter()
        .filter(|e| e.name.as_deref() == Some("content_block_delta"))
        .count();
    assert_eq!(deltas, 2);
    assert!(!events.iter().any(|e| e.name.as_deref() == Some("message_stop")));

    // reset_after=0: headers, then nothing.
    let req = json!({"model": "gpt@reset_after=0", "stream": true, "messages": []});
    let resp = post(&mock, "/v1/chat/completions", &req).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.is_err());

    // Anthropic in-band error, after one delta.
    let req = json!({"model": "claude@inband_error_after=1", "max_tokens": 50, "stream": true, "messages": []});
    let (text, _) = read_stream(post(&mock, "/v1/messages", &req).await).await;
    let events = parse_sse(&text);
    let last = events.last().unwrap();
    assert_eq!(last.name.as_deref(), Some("error"));
    assert_eq!(last.json()["error"]["type"], "overloaded_error");
}

#[tokio::test]
async fn require_key_answers_native_auth_errors() {
    let mock = Mock::start(&["--require-key", "k-123", "--no-split"]);
    let c = client();
    let resp = c
        .post(mock.url("/v1/chat/completions"))
        .json(&json!({"model": "gpt", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"]["code"], "invalid_api_key");
    let resp = c
        .post(mock.url("/v1/chat/completions"))
        .bearer_auth("k-123")
        .json(&json!({"model": "gpt", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let resp = c
        .post(mock.url("/v1/messages"))
        .header("x-api-key", "wrong")
        .json(&json!({"model": "c", "max_tokens": 5, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["type"],
        "authentication_error"
    );

    let resp = c
        .post(mock.url("/v1beta/models/g:generateContent"))
        .json(&json!({"contents": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["details"][0]["reason"], "API_KEY_INVALID");
    let resp = c
        .post(mock.url("/v1beta/models/g:generateContent"))
        .header("x-goog-api-key", "k-123")
        .json(&json!({"contents": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn tls_with_self_signed_certificate() {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("rcgen");
    let dir = std::env::temp_dir().join(format!("prism-mock-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();

    let mock = Mock::start(&[
        "--tls-cert",
        cert_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
    ]);
    assert!(mock.base.starts_with("https://127.0.0.1:"));
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let req = json!({"model": "claude", "max_tokens": 5, "stream": true, "messages": []});
    let resp = client.post(mock.url("/v1/messages")).json(&req).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let (text, _) = read_stream(resp).await;
    let events = parse_sse(&text);
    assert_eq!(events.last().unwrap().name.as_deref(), Some("message_stop"));
    let _ = std::fs::remove_dir_all(&dir);
}

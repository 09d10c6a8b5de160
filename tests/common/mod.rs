//! Integration-test harness: the real `prism` and `prism-mock` binaries as child processes
//! on loopback ports, killed when dropped. Tests never reach the internet.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const KEY: &str = "sk-prism-test-key";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh directory for one test's files.
pub fn temp_dir(tag: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("prism-it-{}-{tag}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// A port for a gateway listener (or a dead upstream) that nothing else in the run will take.
///
/// A port from `bind(0)` is only free until someone else binds: the mocks listen on port 0,
/// and every outbound connection takes an ephemeral port, so between this call and the
/// gateway's own bind another process could take it (and then answer the gateway's requests).
/// Ports come from below the kernel's ephemeral range instead (32768 and up on Linux), from
/// one counter per test process, offset by the process id so that test binaries running side
/// by side stay apart; a port found in use is skipped.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const FIRST: u32 = 10_000;
    // The first ephemeral port; 32768 when the kernel does not say.
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse::<u32>().ok()))
        .unwrap_or(32_768);
    if ephemeral < FIRST + 2_000 {
        // No room below the ephemeral range: fall back to a port the kernel picks.
        return std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind")
            .port();
    }
    let span = ephemeral - FIRST;
    let offset = (std::process::id() % 64) * (span / 64);
    loop {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = u16::try_from(FIRST + (offset + n) % span).expect("port in range");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub struct Mock {
    child: Child,
    pub port: u16,
}

impl Mock {
    pub fn start() -> Mock {
        Mock::start_with(&[])
    }

    pub fn start_with(args: &[&str]) -> Mock {
        let mut child = Command::new(env!("CARGO_BIN_EXE_prism-mock"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn prism-mock");
        let stdout = child.stdout.take().expect("mock stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("mock banner");
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected mock banner: {line}"));
        Mock { child, port }
    }

    /// Base URL for OpenAI-compatible kinds (with `/v1`).
    pub fn v1(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// Base URL for Anthropic, Gemini and Cohere (no version path).
    pub fn root(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub async fn control(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> serde_json::Value {
        let mut req = reqwest::Client::new().request(method, format!("{}/_mock/{path}", self.root()));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("mock control");
        resp.json().await.unwrap_or(serde_json::Value::Null)
    }

    pub async fn stats(&self) -> serde_json::Value {
        self.control(reqwest::Method::GET, "stats", None).await
    }

    pub async fn last(&self) -> serde_json::Value {
        self.control(reqwest::Method::GET, "last", None).await
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Gateway {
    child: Option<Child>,
    pub env: Vec<(String, String)>,
    pub port: u16,
    pub admin_port: u16,
    pub metrics_port: u16,
    pub dir: PathBuf,
    pub config_path: PathBuf,
}

impl Gateway {
    /// Start `prism serve` with `config` (the `[server]` section is added here) and wait
    /// until it answers.
    pub async fn start(config: &str) -> Gateway {
        Gateway::start_env(config, &[]).await
    }

    pub async fn start_env(config: &str, env: &[(&str, &str)]) -> Gateway {
        let dir = temp_dir("gw");
        let config_path = dir.join("prism.toml");
        // A config that sets its own grace period keeps it.
        let grace = if config.contains("grace_period") {
            ""
        } else {
            "grace_period = \"5s\"\n"
        };
        let server = format!(
            "[server]\nthreads = 2\nupgrade_sock = \"{}\"\npid_file = \"{}\"\n{grace}",
            dir.join("upgrade.sock").display(),
            dir.join("prism.pid").display()
        );
        let full = if config.contains("[server]") {
            config.replace("[server]", &server)
        } else {
            format!("{server}{config}")
        };
        std::fs::write(&config_path, full).expect("write config");
        let (port, admin_port, metrics_port) = (free_port(), free_port(), free_port());
        let mut gw = Gateway {
            child: None,
            port,
            admin_port,
            metrics_port,
            dir,
            config_path,
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        gw.child = Some(gw.command(&[]).spawn().expect("spawn prism"));
        gw.wait_ready().await;
        gw
    }

    /// `prism serve` for this gateway's config, ports and data dir, logs appended to its
    /// files; `extra` args go after the config (e.g. `-u` for an upgrade).
    pub fn command(&self, extra: &[&str]) -> Command {
        let open = |name: &str| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join(name))
                .expect("log file")
        };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_prism"));
        cmd.args(["serve", "-c"])
            .arg(&self.config_path)
            .args(extra)
            .env("PRISM_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("PRISM_ADMIN_LISTEN", format!("127.0.0.1:{}", self.admin_port))
            .env("PRISM_METRICS_LISTEN", format!("127.0.0.1:{}", self.metrics_port))
            .env("PRISM_DATA_DIR", self.dir.join("data"))
            .env("PRISM_API_KEYS", KEY)
            .env("PRISM_LOG", "info")
            .stdout(open("access.log"))
            .stderr(open("prism.log"));
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Replace the running process with `child` (after an upgrade hand-over).
    pub fn adopt(&mut self, child: Child) -> Option<Child> {
        self.child.replace(child)
    }

    /// Wait until all three listeners answer: the services bind one after another, so the
    /// data plane being up says nothing of the control plane or the metrics.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = reqwest::Client::new();
        for url in [
            format!("{}/healthz", self.url()),
            format!("{}/healthz", self.admin_url()),
            format!("http://127.0.0.1:{}/metrics", self.metrics_port),
        ] {
            loop {
                if let Ok(r) = client.get(&url).send().await {
                    if r.status().is_success() {
                        break;
                    }
                }
                if Instant::now() > deadline {
                    panic!("prism did not start ({url}); log:\n{}", self.log());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prism.log")).unwrap_or_default()
    }

    /// The access log so far. Prism writes it out every 100 ms, so this waits a few periods,
    /// then until two reads 200 ms apart agree (a loaded machine may delay the writer), at
    /// most 5 s.
    pub fn access_log(&self) -> String {
        let read = || std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        std::thread::sleep(std::time::Duration::from_millis(300));
        let mut last = read();
        loop {
            std::thread::sleep(std::time::Duration::from_millis(200));
            let now = read();
            if now == last || std::time::Instant::now() > deadline {
                return now;
            }
            last = now;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// POST JSON to the data plane with the test key.
    pub async fn post(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}{path}", self.url()))
            .bearer_auth(KEY)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn chat(&self, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let r = self.post("/v1/chat/completions", body).await;
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// A streamed chat: the status and every `data:` payload in order (`[DONE]` included).
    pub async fn chat_stream(&self, body: &serde_json::Value) -> (u16, Vec<String>) {
        let r = self.post("/v1/chat/completions", body).await;
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (status, sse_data(&text))
    }

    pub fn kill(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status();
    }

    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(Ok(Some(s))) = self.child.as_mut().map(Child::try_wait) {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `data:` payloads of an SSE body, in order.
pub fn sse_data(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|ev| {
            let data: Vec<&str> = ev
                .lines()
                .filter_map(|l| l.strip_prefix("data:").map(|d| d.strip_prefix(' ').unwrap_or(d)))
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .collect()
}

/// A chat request whose user message makes the body about `size` bytes.
pub fn chat_body(model: &str, size: usize, stream: bool) -> serde_json::Value {
    serde_json::json!({
        "messages": [{"role": "user", "content": "x".repeat(size.saturating_sub(120))}],
        "stream": stream,
        "model": model,
    })
}

/// Every content delta of a chat stream concatenated, and the finish reason.
pub fn collect_stream(events: &[String]) -> (String, Option<String>) {
    let mut text = String::new();
    let mut finish = None;
    for e in events {
        if e == "[DONE]" {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(e).unwrap_or_default();
        if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
            text.push_str(c);
        }
        if let Some(f) = v["choices"][0]["finish_reason"].as_str() {
            finish = Some(f.to_string());
        }
    }
    (text, finish)
}

//! Alerts leave the request path through a bounded channel; a background service POSTs each
//! one as JSON to the configured webhook with bounded retries. A full channel drops the
//! alert (and logs it) rather than slow a request.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::config::ProviderConfig;
use crate::providers::{Notes, UpstreamRequest};
use crate::table::Provider;
use crate::upstream::Upstreams;

#[derive(Clone, Default)]
pub struct Alerts {
    tx: Option<mpsc::Sender<Value>>,
}

impl Alerts {
    pub fn send(&self, alert: Value) {
        if let Some(tx) = &self.tx {
            if tx.try_send(alert).is_err() {
                log::warn!("alert queue full or closed: webhook alert dropped (the log line above stands)");
            }
        }
    }
}

pub struct Webhook {
    target: Provider,
    upstreams: Arc<Upstreams>,
    rx: Mutex<Option<mpsc::Receiver<Value>>>,
}

/// The alert handle and, when a webhook is configured, the service that delivers to it.
pub fn channel(webhook: Option<&str>, upstreams: Arc<Upstreams>) -> (Alerts, Option<Webhook>) {
    let Some(url) = webhook else {
        return (Alerts::default(), None);
    };
    let pc = ProviderConfig {
        kind: Some("openai".into()),
        base_url: Some(url.to_string()),
        http2: false,
        enabled: true,
        ..ProviderConfig::default()
    };
    let Ok(mut target) = Provider::from_config("alert-webhook", &pc, "file") else {
        log::error!("alert webhook URL is invalid: alerts go to the log only");
        return (Alerts::default(), None);
    };
    target.timeouts.first_byte = Duration::from_secs(5);
    target.timeouts.idle = Duration::from_secs(5);
    let (tx, rx) = mpsc::channel(256);
    (
        Alerts { tx: Some(tx) },
        Some(Webhook {
            target,
            upstreams,
            rx: Mutex::new(Some(rx)),
        }),
    )
}

impl Webhook {
    async fn deliver(&self, alert: &Value) {
        let req = UpstreamRequest {
            method: "POST",
            path: String::new(),
            body: Bytes::from(alert.to_string()).into(),
            headers: Vec::new(),
            notes: Notes::default(),
        };
        for attempt in 0..3u32 {
            match self.upstreams.send(&self.target, &req).await {
                Ok(mut x) => {
                    let status = x.status;
                    let _ = x.read_all(64 * 1024).await;
                    self.upstreams.release(x).await;
                    if status < 300 {
                        return;
                    }
                    log::warn!("status={status} attempt={attempt} alert webhook refused the alert");
                }
                Err((_, e)) => log::warn!("attempt={attempt} error={} alert webhook unreachable", e.message),
            }
            tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
        }
        log::error!("alert webhook failed 3 times: alert dropped");
    }
}

#[async_trait]
impl BackgroundService for Webhook {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(mut rx) = self.rx.lock().ok().and_then(|mut r| r.take()) else {
            return;
        };
        loop {
            tokio::select! {
                alert = rx.recv() => match alert {
                    Some(a) => self.deliver(&a).await,
                    None => return,
                },
                _ = shutdown.changed() => return,
            }
        }
    }
}

//! Active probes: every upstream of the current table gets a cheap request (its models
//! list; never a paid completion) each interval, so an idle or ejected upstream is still
//! known to be up or down.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;

use super::Health;
use crate::providers::{self, Notes, UpstreamRequest};
use crate::state::App;
use crate::table::Provider;
use crate::upstream::Upstreams;

pub struct Prober {
    pub app: Arc<App>,
    pub health: Arc<Health>,
    pub upstreams: Arc<Upstreams>,
}

/// Probe one upstream with its (free) model list: up when it answers anything but a 5xx
/// within the timeout. A 200 also yields the listed models.
pub async fn probe(
    upstreams: &Upstreams,
    p: &Provider,
    timeout: Duration,
) -> (bool, Duration, Option<String>, Option<Vec<String>>) {
    let req = UpstreamRequest {
        method: "GET",
        path: providers::models_path(p.kind).to_string(),
        body: Bytes::new().into(),
        headers: Vec::new(),
        notes: Notes::default(),
    };
    let t0 = Instant::now();
    let result = tokio::time::timeout(timeout, async {
        match upstreams.send(p, &req).await {
            Ok(mut x) => {
                let status = x.status;
                let body = x.read_all(4 << 20).await.unwrap_or_default();
                upstreams.release(x).await;
                if status >= 500 {
                    Err(format!("HTTP {status}"))
                } else if status == 200 {
                    Ok(providers::parse_models(p.kind, &body).ok())
                } else {
                    Ok(None)
                }
            }
            Err((_, e)) => Err(e.message),
        }
    })
    .await;
    let elapsed = t0.elapsed();
    match result {
        Ok(Ok(models)) => (true, elapsed, None, models),
        Ok(Err(e)) => (false, elapsed, Some(e), None),
        Err(_) => (false, elapsed, Some(format!("no answer within {timeout:?}")), None),
    }
}

#[async_trait]
impl BackgroundService for Prober {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            let cfg = self.app.config.load_full();
            let interval = cfg.health.probe_interval.0;
            if interval.is_zero() {
                // Disabled: check again later in case a reload enables it.
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                    _ = shutdown.changed() => return,
                }
            }
            let timeout = cfg.health.probe_timeout.0;
            let table = self.app.table.load_full();
            let mut set = tokio::task::JoinSet::new();
            for p in table.providers.values() {
                let (p, up) = (p.clone(), self.upstreams.clone());
                set.spawn(async move {
                    let r = probe(&up, &p, timeout).await;
                    (p, r)
                });
            }
            while let Some(done) = set.join_next().await {
                if let Ok((p, (ok, latency, err, models))) = done {
                    self.health.probe_result(&p, ok, latency, err);
                    if let (true, Some(models)) = (p.discover_models, models) {
                        self.app.set_discovered(&p.name, models);
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

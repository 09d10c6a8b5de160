//! Hot reload triggers: the config file's content is polled (robust to editors that save by
//! rename and to Kubernetes ConfigMaps that swap a symlink: both change what reading the
//! path returns, not necessarily the inode we would watch), and SIGHUP. Both call the same
//! `App::reload_file`: parse, validate, build, swap; an invalid file is logged and the
//! running config stays.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;

use crate::state::App;

pub struct Watcher {
    pub app: Arc<App>,
    pub interval: Duration,
}

fn fingerprint(app: &App) -> Option<u64> {
    let bytes = std::fs::read(&app.config_path).ok()?;
    Some(bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    }))
}

impl Watcher {
    fn reload(&self, why: &str) {
        match self.app.reload_file() {
            Ok(_) => log::info!("trigger={why} config reload applied"),
            Err(errors) => {
                let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
                log::error!("trigger={why} errors={list:?} config reload rejected, the running config stays");
            }
        }
    }
}

#[async_trait]
impl BackgroundService for Watcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                log::warn!("cannot listen for SIGHUP ({e}): reload by file change or POST /v1/reload");
                None
            }
        };
        let mut last = fingerprint(&self.app);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {
                    let now = fingerprint(&self.app);
                    // A missing file (mid-swap) is not a change: wait for it to reappear.
                    if now.is_some() && now != last {
                        last = now;
                        self.reload("file_change");
                    }
                }
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    last = fingerprint(&self.app);
                    self.reload("sighup");
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

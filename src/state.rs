//! The gateway's shared state: the last good file config, the control-plane store, and the
//! one routing snapshot built from both. Every change (file reload, control-plane write)
//! goes through `rebuild`, serialized, and swaps the snapshot whole; health state is keyed
//! by upstream id elsewhere and survives the swap.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::config::{Config, ConfigError};
use crate::table::{Provider, SharedTable, Table};

/// What the control plane contributes to the snapshot.
pub trait Contributions: Send + Sync {
    /// Providers stored at runtime, with their keys decrypted in memory.
    fn providers(&self) -> Result<Vec<Provider>, ConfigError>;
    /// SHA-256 hashes of gateway client keys created at runtime.
    fn key_hashes(&self) -> Vec<[u8; 32]>;
}

pub struct App {
    pub config_path: PathBuf,
    pub config: ArcSwap<Config>,
    pub table: SharedTable,
    contributions: Mutex<Option<Arc<dyn Contributions>>>,
    /// Serializes rebuilds so that two writers never swap in each other's half-built state.
    rebuild_lock: Mutex<()>,
    ready: AtomicBool,
    draining: AtomicBool,
    /// Models each `discover_models` provider listed at its last successful probe.
    discovered: std::sync::RwLock<std::collections::HashMap<String, Vec<String>>>,
    /// Set once at start-up; a rebuild passes new breaker thresholds to it.
    pub health: std::sync::OnceLock<Arc<crate::health::Health>>,
}

/// A config reload's outcome, for `POST /v1/reload` and the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub routes_changed: bool,
}

impl App {
    pub fn new(config_path: PathBuf, config: Config) -> Result<Arc<App>, Vec<ConfigError>> {
        let table = Table::build(&config, Vec::new())?;
        Ok(Arc::new(App {
            config_path,
            config: ArcSwap::from_pointee(config),
            table: Arc::new(ArcSwap::from_pointee(table)),
            contributions: Mutex::new(None),
            rebuild_lock: Mutex::new(()),
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            health: std::sync::OnceLock::new(),
            discovered: Default::default(),
        }))
    }

    /// Attach the control plane's store and rebuild with it.
    pub fn set_contributions(&self, c: Arc<dyn Contributions>) -> Result<(), Vec<ConfigError>> {
        if let Ok(mut slot) = self.contributions.lock() {
            *slot = Some(c);
        }
        self.rebuild(None).map(|_| ())
    }

    /// Build a new snapshot from `new_config` (or the current one) plus the control plane,
    /// and swap it in. On error nothing changes.
    pub fn rebuild(&self, new_config: Option<Config>) -> Result<Changes, Vec<ConfigError>> {
        let _guard = self.rebuild_lock.lock().map_err(|_| {
            vec![ConfigError {
                path: String::new(),
                message: "internal: rebuild lock poisoned".into(),
            }]
        })?;
        let config = match new_config {
            Some(c) => Arc::new(c),
            None => self.config.load_full(),
        };
        let contributions = self.contributions.lock().ok().and_then(|c| c.clone());
        let (extra, hashes) = match &contributions {
            Some(c) => (c.providers().map_err(|e| vec![e])?, c.key_hashes()),
            None => (Vec::new(), Vec::new()),
        };
        let mut table = Table::build(&config, extra)?;
        for h in hashes {
            table.keys.add_hash(h);
        }
        let old = self.table.load_full();
        let changes = diff(&old, &table);
        self.table.store(Arc::new(table));
        if let Some(h) = self.health.get() {
            h.configure(&config.health);
        }
        self.config.store(config);
        Ok(changes)
    }

    /// Re-read the config file; on any error the running config stays.
    pub fn reload_file(&self) -> Result<Changes, Vec<ConfigError>> {
        let metrics = &crate::telemetry::metrics::METRICS;
        let loaded = std::fs::read_to_string(&self.config_path)
            .map_err(|e| {
                vec![ConfigError {
                    path: String::new(),
                    message: format!("cannot read {}: {e}", self.config_path.display()),
                }]
            })
            .and_then(|text| crate::config::load(&text, &|k| std::env::var(k).ok()).map(|c| (c, text)));
        let result = loaded.and_then(|(cfg, text)| self.rebuild(Some(cfg)).map(|c| (c, text)));
        metrics.reload(result.is_ok());
        let (changes, text) = result?;
        metrics.set_config_hash(&text);
        log::info!(
            "added={:?} removed={:?} changed={:?} routes_changed={} config reloaded",
            changes.added,
            changes.removed,
            changes.changed,
            changes.routes_changed
        );
        Ok(changes)
    }

    pub fn set_discovered(&self, provider: &str, mut models: Vec<String>) {
        models.truncate(2000);
        if let Ok(mut d) = self.discovered.write() {
            d.insert(provider.to_string(), models);
        }
    }

    /// Discovered models per provider (cached; empty until the first probe).
    pub fn discovered(&self) -> std::collections::HashMap<String, Vec<String>> {
        self.discovered.read().map(|d| d.clone()).unwrap_or_default()
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Ready: config loaded, listeners up, not draining. Provider health plays no part.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && !self.draining.load(Ordering::SeqCst)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

fn diff(old: &Table, new: &Table) -> Changes {
    let mut c = Changes::default();
    for (name, p) in &new.providers {
        match old.providers.get(name) {
            None => c.added.push(name.clone()),
            Some(o)
                if o.upstream_id != p.upstream_id
                    || o.kind != p.kind
                    || o.models != p.models
                    || o.fallbacks != p.fallbacks =>
            {
                c.changed.push(name.clone())
            }
            Some(_) => {}
        }
    }
    for name in old.providers.keys() {
        if !new.providers.contains_key(name) {
            c.removed.push(name.clone());
        }
    }
    c.added.sort();
    c.removed.sort();
    c.changed.sort();
    c.routes_changed = old.route_order != new.route_order
        || old
            .routes
            .iter()
            .any(|(k, r)| new.routes.get(k).is_none_or(|n| n.targets != r.targets));
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebuild_reports_changes_and_keeps_old_on_error() {
        let c1 = crate::config::load("[providers.openai]\n[providers.anthropic]\n", &|_| None).unwrap();
        let app = App::new(PathBuf::from("/nonexistent.toml"), c1).unwrap();
        let c2 = crate::config::load(
            "[providers.openai]\nbase_url = \"http://127.0.0.1:1/v1\"\n[providers.gemini]\n[[routes]]\nmodel = \"x\"\ntargets = [\"gemini/y\"]\n",
            &|_| None,
        )
        .unwrap();
        let ch = app.rebuild(Some(c2)).unwrap();
        assert_eq!(ch.added, ["gemini"]);
        assert_eq!(ch.removed, ["anthropic"]);
        assert_eq!(ch.changed, ["openai"]);
        assert!(ch.routes_changed);
        assert!(app.reload_file().is_err());
        assert!(
            app.table.load().providers.contains_key("gemini"),
            "a failed reload keeps the running table"
        );
    }
}

//! Assemble the Pingora `Server`: the data plane and its side services, each a Pingora
//! service so graceful shutdown and zero-downtime upgrade cover all of them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::{Server, ShutdownWatch};
use pingora_core::services::background::{background_service, BackgroundService};
use pingora_core::services::listening::Service;

use crate::admin::control::StoreLoader;
use crate::admin::{Admin, ControlPlane};
use crate::config::watcher::Watcher;
use crate::config::{self, Config, ConfigError};
use crate::health::{alerts, prober::Prober, Health};
use crate::proxy::Gateway;
use crate::state::App;
use crate::telemetry::metrics::METRICS;
use crate::telemetry::MetricsService;
use crate::upstream::Upstreams;

/// Marks the gateway ready once services run, and draining as soon as shutdown starts, so
/// a load balancer stops sending traffic while in-flight requests finish.
struct Lifecycle {
    app: Arc<App>,
    pid_file: String,
}

#[async_trait]
impl BackgroundService for Lifecycle {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        self.app.set_ready(true);
        let _ = shutdown.changed().await;
        self.app.set_draining();
        crate::telemetry::access_log_immediate();
        let started = std::time::Instant::now();
        log::info!("in_flight={} shutdown started: draining", METRICS.in_flight_total());
        // Give in-flight requests the grace period; leave as soon as none is left.
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            if METRICS.in_flight_total() <= 0 {
                log::info!(
                    "drained_ms={} no request in flight: exiting",
                    started.elapsed().as_millis()
                );
                let _ = std::fs::remove_file(&self.pid_file);
                crate::telemetry::flush_access_log();
                std::process::exit(0);
            }
        }
    }
}

/// Where the config comes from: `-c`, else `$PRISM_CONFIG`, else `conf/prism.toml`.
pub fn config_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("PRISM_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("conf/prism.toml"))
}

/// Read and validate a config file against the process environment.
pub fn load_file(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError {
            path: String::new(),
            message: format!("cannot read {}: {e}", path.display()),
        }]
    })?;
    config::load(&text, &|k| std::env::var(k).ok())
}

/// `GET /readyz` on the local control plane; a wildcard listen address is reached on
/// loopback. Blocking, for the `healthcheck` command only.
pub fn readyz(listen: &str) -> Result<(), String> {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = listen.parse().map_err(|_| format!("`{listen}` is not host:port"))?;
    let addr = if addr.ip().is_unspecified() {
        std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    };
    let timeout = std::time::Duration::from_secs(2);
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{addr}: {e}"))?;
    let _ = s.set_read_timeout(Some(timeout));
    s.write_all(b"GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut head = [0u8; 16];
    let n = s.read(&mut head).map_err(|e| e.to_string())?;
    let line = String::from_utf8_lossy(&head[..n]);
    if line.starts_with("HTTP/1.1 200") || line.starts_with("HTTP/1.0 200") {
        Ok(())
    } else {
        Err(format!(
            "/readyz answered `{}`",
            line.lines().next().unwrap_or_default()
        ))
    }
}

pub struct ServeOptions {
    pub config: PathBuf,
    pub upgrade: bool,
    pub daemon: bool,
    pub test: bool,
}

pub fn run(opts: ServeOptions) -> Result<(), Vec<ConfigError>> {
    let cfg = load_file(&opts.config)?;
    let app = App::new(opts.config.clone(), cfg.clone())?;
    let table = app.table.load_full();
    if table.auth_enabled && table.keys.is_empty() {
        log::warn!("no gateway keys configured (auth.api_keys, PRISM_API_KEYS): every data-plane request will get 401; set auth.enabled = false to run without auth");
    }
    for p in table.providers.values() {
        if p.api_key.is_none() && !p.kind.key_optional() {
            log::warn!(
                "provider={} kind={} has no api_key: its upstream will likely answer 401",
                p.name,
                p.kind.as_str()
            );
        }
    }

    let mut conf = ServerConf {
        threads: cfg.server.threads,
        upgrade_sock: cfg.server.upgrade_sock.clone(),
        pid_file: cfg.server.pid_file.clone(),
        daemon: opts.daemon,
        ..ServerConf::default()
    };
    // Pingora stops accepting at once, then sleeps the grace period (its default is 300 s)
    // before cancelling every task: that sleep is our drain window. `Lifecycle` ends the
    // process early once nothing is in flight.
    conf.grace_period_seconds = Some(cfg.server.grace_period.0.as_secs().max(1));
    conf.graceful_shutdown_timeout_seconds = Some(2);
    let opt = Opt {
        upgrade: opts.upgrade,
        daemon: opts.daemon,
        test: opts.test,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let upstreams = Arc::new(Upstreams::new());
    let (alerts, webhook) = alerts::channel(cfg.health.alert_webhook.as_deref(), upstreams.clone());
    let health = Health::new(&cfg.health, alerts);
    let _ = app.health.set(health.clone());
    if let Some(w) = webhook {
        server.add_service(background_service("prism-alert-webhook", w));
    }
    server.add_service(background_service(
        "prism-prober",
        Prober {
            app: app.clone(),
            health: health.clone(),
            upstreams: upstreams.clone(),
        },
    ));
    let gateway = Gateway::new(app.clone(), upstreams, health);
    let mut data = pingora_proxy::http_proxy_service_with_name(&server.configuration, gateway, "prism-data-plane");
    data.add_tcp(&cfg.server.listen);
    server.add_service(data);

    let admin_key_hash = std::env::var("PRISM_ADMIN_KEY")
        .ok()
        .filter(|k| !k.is_empty())
        .map(|k| crate::auth::hash_key(&k));
    if admin_key_hash.is_none() {
        log::warn!("PRISM_ADMIN_KEY is not set: the control plane answers 401 to every protected endpoint");
    }
    let control = Arc::new(ControlPlane::new(app.clone()));
    if opts.daemon {
        // sled's I/O threads do not survive the daemon fork: read the store after it.
        let loader = StoreLoader {
            control: control.clone(),
            data_dir: cfg.server.data_dir.clone(),
        };
        server.add_service(background_service("prism-store", loader));
    } else {
        control.open_store(&cfg.server.data_dir)?;
    }
    let admin = Admin {
        app: app.clone(),
        admin_key_hash,
        control: Some(control),
    };
    let mut admin_svc = Service::new("prism-control-plane".to_string(), admin);
    admin_svc.threads = Some(1);
    admin_svc.add_tcp(&cfg.server.admin_listen);
    server.add_service(admin_svc);
    server.add_service(background_service(
        "prism-lifecycle",
        Lifecycle {
            app: app.clone(),
            pid_file: cfg.server.pid_file.clone(),
        },
    ));
    server.add_service(background_service(
        "prism-config-watcher",
        Watcher {
            app: app.clone(),
            interval: std::time::Duration::from_secs(1),
        },
    ));
    if let Ok(text) = std::fs::read_to_string(&opts.config) {
        crate::telemetry::metrics::METRICS.set_config_hash(&text);
    }
    let mut metrics_svc = Service::new("prism-metrics".to_string(), MetricsService { app: app.clone() });
    metrics_svc.threads = Some(1);
    metrics_svc.add_tcp(&cfg.server.metrics_listen);
    server.add_service(metrics_svc);

    log::info!(
        "listen={} providers={} routes={} prism data plane starting",
        cfg.server.listen,
        cfg.providers.len(),
        cfg.routes.len()
    );
    server.run_forever()
}

//! The config file: format, `${VAR}` secrets, validation that reports every error with its
//! path. Loading is a pure function of (text, environment) so tests never touch the real env.

pub mod vars;
pub mod watcher;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::providers::Kind;

/// One problem in a config, with the dotted path of the value at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

fn err(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.into(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub auth: AuthSection,
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub health: HealthSection,
}

/// Breakers, probes, retries and alerts (`[health]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSection {
    /// Open the breaker after this many failures in a row.
    pub consecutive_failures: u32,
    /// ...or when this share of requests failed within `window`, once `min_requests` were seen.
    pub error_ratio: f64,
    pub window: HumanDuration,
    pub min_requests: u32,
    /// First cooldown before a half-open trial; doubles on each repeated trip up to `max_cooldown`.
    pub cooldown: HumanDuration,
    pub max_cooldown: HumanDuration,
    /// Successful trials that close a half-open breaker.
    pub half_open_successes: u32,
    /// Requests let through at once while half-open.
    pub half_open_max_in_flight: u32,
    /// Active probe of every upstream (a cheap models-list request); `0s` disables.
    pub probe_interval: HumanDuration,
    pub probe_timeout: HumanDuration,
    /// Extra tries on the last candidate for retryable failures, with exponential backoff
    /// and jitter starting at `retry_backoff`.
    pub retries: u32,
    pub retry_backoff: HumanDuration,
    /// A Retry-After longer than this is not waited for (the client gets it instead).
    pub max_retry_wait: HumanDuration,
    /// Retries allowed as a share of requests (a budget, so a brown-out is not amplified).
    pub retry_budget: f64,
    /// JSON POST on every state change (ejected, half-open, recovered).
    pub alert_webhook: Option<String>,
}

impl Default for HealthSection {
    fn default() -> Self {
        HealthSection {
            consecutive_failures: 5,
            error_ratio: 0.5,
            window: HumanDuration(Duration::from_secs(30)),
            min_requests: 20,
            cooldown: HumanDuration(Duration::from_secs(10)),
            max_cooldown: HumanDuration(Duration::from_secs(300)),
            half_open_successes: 2,
            half_open_max_in_flight: 1,
            probe_interval: HumanDuration(Duration::from_secs(15)),
            probe_timeout: HumanDuration(Duration::from_secs(3)),
            retries: 1,
            retry_backoff: HumanDuration(Duration::from_millis(100)),
            max_retry_wait: HumanDuration(Duration::from_secs(2)),
            retry_budget: 0.2,
            alert_webhook: None,
        }
    }
}

impl HealthSection {
    pub fn breaker(&self) -> crate::health::breaker::BreakerConfig {
        crate::health::breaker::BreakerConfig {
            consecutive_failures: self.consecutive_failures,
            error_ratio: self.error_ratio,
            window: self.window.0,
            min_requests: self.min_requests,
            cooldown: self.cooldown.0,
            max_cooldown: self.max_cooldown.0,
            half_open_successes: self.half_open_successes,
            half_open_max_in_flight: self.half_open_max_in_flight,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Data plane (OpenAI API). `PRISM_LISTEN` overrides.
    pub listen: String,
    /// Control plane. `PRISM_ADMIN_LISTEN` overrides.
    pub admin_listen: String,
    /// Prometheus. `PRISM_METRICS_LISTEN` overrides.
    pub metrics_listen: String,
    /// Embedded store. `PRISM_DATA_DIR` overrides.
    pub data_dir: String,
    /// Worker threads of the data plane.
    pub threads: usize,
    /// Largest accepted request body.
    pub max_body_size: ByteSize,
    /// Largest accepted non-streamed upstream answer.
    pub max_response_size: ByteSize,
    /// Provider for model names without `provider/`.
    pub default_provider: String,
    /// How long in-flight requests may take to finish on SIGTERM.
    pub grace_period: HumanDuration,
    /// Remote image fetching (for providers with `fetch_images = true`): size cap, timeout,
    /// and whether internal addresses may be fetched (never in production).
    pub image_max_size: ByteSize,
    pub image_timeout: HumanDuration,
    pub image_allow_private: bool,
    /// Pingora upgrade socket (zero-downtime binary upgrade) and pid file.
    pub upgrade_sock: String,
    pub pid_file: String,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: "0.0.0.0:8080".into(),
            admin_listen: "127.0.0.1:8081".into(),
            metrics_listen: "0.0.0.0:9090".into(),
            data_dir: "./data".into(),
            threads: 2,
            max_body_size: ByteSize(32 * 1024 * 1024),
            max_response_size: ByteSize(64 * 1024 * 1024),
            default_provider: "openai".into(),
            grace_period: HumanDuration(Duration::from_secs(30)),
            image_max_size: ByteSize(5 * 1024 * 1024),
            image_timeout: HumanDuration(Duration::from_secs(10)),
            image_allow_private: false,
            upgrade_sock: "/tmp/prism_upgrade.sock".into(),
            pid_file: "/tmp/prism.pid".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// Require a gateway key on the data plane. Only an explicit `false` turns it off.
    pub enabled: bool,
    /// Gateway client keys (`sk-prism-...`), usually `${VAR}` references. `PRISM_API_KEYS` adds.
    pub api_keys: Vec<String>,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            enabled: true,
            api_keys: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Wire format; optional when the provider's name is a built-in kind.
    pub kind: Option<String>,
    pub api_key: Option<String>,
    pub base_url: Option<String>,
    /// Model names listed by `/v1/models` for this provider.
    #[serde(default)]
    pub models: Vec<String>,
    /// `provider/model` targets tried after this provider fails (failover).
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// Turn every parameter drop or clamp into a 400.
    #[serde(default)]
    pub strict: bool,
    pub default_max_tokens: Option<u64>,
    /// OpenAI `OpenAI-Organization` header.
    pub organization: Option<String>,
    /// Extra headers sent upstream.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// PEM file of CAs trusted for this provider (private TLS upstreams).
    pub ca_file: Option<String>,
    /// Offer HTTP/2 to TLS upstreams (multiplexed); plain-text upstreams use HTTP/1.1.
    #[serde(default = "yes")]
    pub http2: bool,
    #[serde(default)]
    pub connect_timeout: Option<HumanDuration>,
    /// Time allowed until the upstream's response headers.
    #[serde(default)]
    pub first_byte_timeout: Option<HumanDuration>,
    /// Longest silence allowed between two reads of the upstream body.
    #[serde(default)]
    pub idle_timeout: Option<HumanDuration>,
    /// Fetch remote image URLs for kinds that need inline images (SSRF-guarded).
    #[serde(default)]
    pub fetch_images: bool,
    /// Also list the models the provider's own list endpoint reports (refreshed by the
    /// prober, cached; the configured `models` stay listed when it fails).
    #[serde(default)]
    pub discover_models: bool,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The public model name clients ask for.
    pub model: String,
    /// `ordered` (fallbacks, in order) or `weighted` (one picked by weight, others after).
    #[serde(default)]
    pub strategy: Strategy,
    pub targets: Vec<TargetConfig>,
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    #[default]
    Ordered,
    Weighted,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TargetConfig {
    Name(String),
    Weighted { target: String, weight: u32 },
}

impl TargetConfig {
    pub fn target(&self) -> &str {
        match self {
            TargetConfig::Name(t) => t,
            TargetConfig::Weighted { target, .. } => target,
        }
    }
    pub fn weight(&self) -> u32 {
        match self {
            TargetConfig::Name(_) => 1,
            TargetConfig::Weighted { weight, .. } => *weight,
        }
    }
}

/// `30s`, `500ms`, `2m`, `1h`, or a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(HumanDuration(Duration::from_secs(n))),
            Raw::S(s) => parse_duration(&s).map(HumanDuration).map_err(serde::de::Error::custom),
        }
    }
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (use e.g. 500ms, 30s, 5m)"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        u => return Err(format!("unknown duration unit `{u}` in `{s}` (use ms, s, m or h)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// `32MiB`, `512KiB`, `1GB`, or a number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub usize);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ByteSize(n as usize)),
            Raw::S(s) => parse_size(&s).map(ByteSize).map_err(serde::de::Error::custom),
        }
    }
}

pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (use e.g. 32MiB)"))?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "KB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        u => return Err(format!("unknown size unit `{u}` in `{s}` (use B, KiB, MiB or GiB)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("`{s}` is too large"))
}

/// Parse, interpolate, apply environment overrides, and validate. Every error found is
/// returned, each with its path.
pub fn load(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, Vec<ConfigError>> {
    let mut tree: toml::Value = toml::from_str(text).map_err(|e| {
        let msg = e.message().to_string();
        let at = e
            .span()
            .map(|s| {
                let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                format!(" (line {line})")
            })
            .unwrap_or_default();
        vec![err("", format!("{msg}{at}"))]
    })?;
    let mut errors = Vec::new();
    interpolate_tree(&mut tree, "", env, &mut errors);
    let mut config: Config = match serde_path_to_error::deserialize(tree) {
        Ok(c) => c,
        Err(e) => {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            errors.push(err(path, e.into_inner().to_string()));
            return Err(errors);
        }
    };
    apply_env(&mut config, env);
    validate(&config, &mut errors);
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(errors)
    }
}

fn interpolate_tree(
    v: &mut toml::Value,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
) {
    match v {
        toml::Value::String(s) => match vars::interpolate(s, env) {
            Ok(new) => *s = new,
            Err(e) => errors.push(err(path, e)),
        },
        toml::Value::Array(a) => {
            for (i, item) in a.iter_mut().enumerate() {
                interpolate_tree(item, &format!("{path}[{i}]"), env, errors);
            }
        }
        toml::Value::Table(t) => {
            for (k, item) in t.iter_mut() {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                interpolate_tree(item, &p, env, errors);
            }
        }
        _ => {}
    }
}

/// The `PRISM_*` variables override the file (what containers and tests use).
pub fn apply_env(c: &mut Config, env: &dyn Fn(&str) -> Option<String>) {
    let set = |target: &mut String, name: &str| {
        if let Some(v) = env(name).filter(|v| !v.is_empty()) {
            *target = v;
        }
    };
    set(&mut c.server.listen, "PRISM_LISTEN");
    set(&mut c.server.admin_listen, "PRISM_ADMIN_LISTEN");
    set(&mut c.server.metrics_listen, "PRISM_METRICS_LISTEN");
    set(&mut c.server.data_dir, "PRISM_DATA_DIR");
    if let Some(keys) = env("PRISM_API_KEYS") {
        c.auth.api_keys.extend(
            keys.split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(str::to_string),
        );
    }
}

/// The kind of a provider entry: explicit, or its name when that is a built-in kind.
pub fn provider_kind(name: &str, p: &ProviderConfig) -> Option<Kind> {
    match &p.kind {
        Some(k) => Kind::parse(k),
        None => Kind::parse(name),
    }
}

fn validate(c: &Config, errors: &mut Vec<ConfigError>) {
    for (name, addr) in [
        ("server.listen", &c.server.listen),
        ("server.admin_listen", &c.server.admin_listen),
        ("server.metrics_listen", &c.server.metrics_listen),
    ] {
        if addr.parse::<std::net::SocketAddr>().is_err() {
            errors.push(err(name, format!("`{addr}` is not a socket address (host:port)")));
        }
    }
    if c.server.threads == 0 {
        errors.push(err("server.threads", "must be at least 1"));
    }
    if c.server.max_body_size.0 == 0 {
        errors.push(err("server.max_body_size", "must be greater than 0"));
    }
    let h = &c.health;
    if h.consecutive_failures == 0 {
        errors.push(err("health.consecutive_failures", "must be at least 1"));
    }
    if !(h.error_ratio > 0.0 && h.error_ratio <= 1.0) {
        errors.push(err("health.error_ratio", "must be in (0, 1]"));
    }
    if !(0.0..=1.0).contains(&h.retry_budget) {
        errors.push(err("health.retry_budget", "must be in [0, 1]"));
    }
    if h.half_open_successes == 0 || h.half_open_max_in_flight == 0 {
        errors.push(err(
            "health.half_open_successes",
            "half-open settings must be at least 1",
        ));
    }
    if h.cooldown.0.is_zero() || h.max_cooldown.0 < h.cooldown.0 {
        errors.push(err(
            "health.max_cooldown",
            "cooldown must be > 0 and max_cooldown >= cooldown",
        ));
    }
    if let Some(url) = &h.alert_webhook {
        if let Err(e) = check_base_url(url) {
            errors.push(err("health.alert_webhook", e));
        }
    }
    for (i, k) in c.auth.api_keys.iter().enumerate() {
        if k.trim().is_empty() {
            errors.push(err(format!("auth.api_keys[{i}]"), "empty key"));
        }
    }
    for (name, p) in &c.providers {
        let path = format!("providers.{name}");
        if !valid_name(name) {
            errors.push(err(&path, "provider names use letters, digits, `-`, `_` and `.` only"));
        }
        let kind = provider_kind(name, p);
        match (&p.kind, kind) {
            (Some(k), None) => errors.push(err(
                format!("{path}.kind"),
                format!("unknown provider kind `{k}` (one of: {})", kind_list()),
            )),
            (None, None) => errors.push(err(
                format!("{path}.kind"),
                format!("required: `{name}` is not a built-in kind (one of: {})", kind_list()),
            )),
            _ => {}
        }
        if let Some(url) = &p.base_url {
            if let Err(e) = check_base_url(url) {
                errors.push(err(format!("{path}.base_url"), e));
            }
        }
        if let Some(ca) = &p.ca_file {
            if !std::path::Path::new(ca).is_file() {
                errors.push(err(format!("{path}.ca_file"), format!("file `{ca}` not found")));
            }
        }
        for h in p.headers.keys() {
            if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                errors.push(err(format!("{path}.headers.{h}"), "not a valid header name"));
            }
        }
        for (i, f) in p.fallbacks.iter().enumerate() {
            check_target(c, f, &format!("{path}.fallbacks[{i}]"), errors);
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (i, r) in c.routes.iter().enumerate() {
        let path = format!("routes[{i}]");
        if r.model.trim().is_empty() {
            errors.push(err(format!("{path}.model"), "must not be empty"));
        }
        if !seen.insert(r.model.clone()) {
            errors.push(err(
                format!("{path}.model"),
                format!("route `{}` is defined twice", r.model),
            ));
        }
        if r.targets.is_empty() {
            errors.push(err(format!("{path}.targets"), "needs at least one target"));
        }
        for (j, t) in r.targets.iter().enumerate() {
            check_target(c, t.target(), &format!("{path}.targets[{j}]"), errors);
            if r.strategy == Strategy::Weighted && t.weight() == 0 {
                errors.push(err(format!("{path}.targets[{j}].weight"), "must be at least 1"));
            }
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn kind_list() -> String {
    Kind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
}

fn check_target(c: &Config, target: &str, path: &str, errors: &mut Vec<ConfigError>) {
    match target.split_once('/') {
        Some((prov, model)) if !model.is_empty() => {
            if !c.providers.contains_key(prov) {
                errors.push(err(
                    path,
                    format!("`{target}` names provider `{prov}`, which is not configured"),
                ));
            }
        }
        _ => errors.push(err(path, format!("`{target}` must be `provider/model`"))),
    }
}

/// A base URL must be an absolute http(s) URL with a host and no query or fragment.
pub fn check_base_url(url: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(url).map_err(|e| format!("`{url}` is not a URL ({e})"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("`{url}` must use http or https"));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{url}` has no host"));
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(format!("`{url}` must not have a query or fragment"));
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "OPENAI_API_KEY" => Some("sk-test".into()),
            _ => None,
        }
    }

    #[test]
    fn minimal_and_defaults() {
        let c = load("[providers.openai]\napi_key = \"${OPENAI_API_KEY}\"\n", &env).unwrap();
        assert_eq!(c.providers["openai"].api_key.as_deref(), Some("sk-test"));
        assert_eq!(c.server.listen, "0.0.0.0:8080");
        assert!(c.auth.enabled);
        assert_eq!(c.server.max_body_size.0, 32 << 20);
    }

    #[test]
    fn every_error_with_its_path() {
        let text = r#"
[providers.anthropic]
base_url = "not a url"
api_key = "${ANTHROPIC_API_KEY}"
[providers.custom]
base_url = "ftp://x"
[[routes]]
model = "smart"
targets = ["nope/x", "anthropic"]
"#;
        let errs = load(text, &env).unwrap_err();
        let lines: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("providers.anthropic.api_key: environment variable ANTHROPIC_API_KEY")),
            "{lines:?}"
        );
        // Interpolation errors stop before typed validation; fix them and see the rest.
        let errs = load(&text.replace("${ANTHROPIC_API_KEY}", "k"), &env).unwrap_err();
        let lines: Vec<String> = errs.iter().map(ToString::to_string).collect();
        for expected in [
            "providers.anthropic.base_url: `not a url` is not a URL",
            "providers.custom.kind: required",
            "providers.custom.base_url: `ftp://x` must use http or https",
            "routes[0].targets[0]: `nope/x` names provider `nope`",
            "routes[0].targets[1]: `anthropic` must be `provider/model`",
        ] {
            assert!(
                lines.iter().any(|l| l.starts_with(expected)),
                "missing {expected}: {lines:?}"
            );
        }
    }

    #[test]
    fn unknown_keys_are_errors() {
        let errs = load("[providers.openai]\napi_kye = \"x\"\n", &env).unwrap_err();
        assert_eq!(errs[0].path, "providers.openai.api_kye");
        assert!(errs[0].message.contains("api_kye"));
        let errs = load("[server]\nthreads = \"two\"\n", &env).unwrap_err();
        assert_eq!(errs[0].path, "server.threads");
    }

    #[test]
    fn durations_sizes_env_overrides() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("2 weeks").is_err());
        assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
        let e = |n: &str| match n {
            "PRISM_LISTEN" => Some("127.0.0.1:1".to_string()),
            "PRISM_API_KEYS" => Some("a, b,,".to_string()),
            _ => None,
        };
        let c = load("", &e).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:1");
        assert_eq!(c.auth.api_keys, vec!["a", "b"]);
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let errs = load("[server]\nlisten = \n", &env).unwrap_err();
        assert!(errs[0].message.contains("line 2"), "{errs:?}");
    }
}

//! The routing snapshot: every provider and route, immutable, built whole from the config
//! file (and the control plane's records) and swapped whole behind one `ArcSwap`. A request
//! loads it once and keeps it to its end.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use secrecy::{ExposeSecret, SecretString};

use crate::auth::KeySet;
use crate::config::{self, Config, ConfigError, Strategy};
use crate::providers::{Kind, Options};

/// One upstream endpoint of a provider, as the connector needs it.
#[derive(Debug, Clone)]
pub struct BaseUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path prefix without trailing `/` (`/v1`, or empty).
    pub path: String,
    /// The URL as configured, for logs and the health API (never carries a secret).
    pub url: String,
}

impl BaseUrl {
    pub fn parse(url: &str) -> Result<BaseUrl, String> {
        let u = config::check_base_url(url)?;
        let tls = u.scheme() == "https";
        let host = u.host_str().unwrap_or_default().trim_matches(['[', ']']).to_string();
        let port = u.port_or_known_default().unwrap_or(if tls { 443 } else { 80 });
        let path = u.path().trim_end_matches('/').to_string();
        Ok(BaseUrl {
            tls,
            host,
            port,
            path,
            url: url.trim_end_matches('/').to_string(),
        })
    }

    /// `Host` header value.
    pub fn authority(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

#[derive(Debug, Clone)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub idle: Duration,
}

/// A configured provider, ready to call.
#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub kind: Kind,
    pub base: BaseUrl,
    pub api_key: Option<SecretString>,
    pub options: Options,
    pub timeouts: Timeouts,
    pub ca_file: Option<String>,
    pub http2: bool,
    pub models: Vec<String>,
    pub fallbacks: Vec<String>,
    /// The headers every upstream request carries (host, user agent, encoding, auth), parsed
    /// once here; `wire_extra` are the operator's `headers` (and `organization`), applied
    /// last. The auth value is marked sensitive, so it never prints.
    pub wire_base: Vec<(http::HeaderName, http::HeaderValue)>,
    pub wire_extra: Vec<(http::HeaderName, http::HeaderValue)>,
    pub fetch_images: bool,
    pub discover_models: bool,
    /// Stable identity for health state: name + base URL. Survives reloads.
    pub upstream_id: String,
    /// Where the entry came from: `file` or `store`.
    pub source: &'static str,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub strategy: Strategy,
    /// (provider, model, weight)
    pub targets: Vec<(String, String, u32)>,
}

#[derive(Debug, Default)]
pub struct Table {
    pub providers: HashMap<String, Arc<Provider>>,
    pub routes: HashMap<String, Route>,
    pub route_order: Vec<String>,
    pub default_provider: String,
    /// Data-plane auth: off only when the config says `auth.enabled = false`.
    pub auth_enabled: bool,
    pub keys: KeySet,
    pub max_body: usize,
    pub max_response: usize,
}

pub type SharedTable = Arc<ArcSwap<Table>>;

/// Kind-specific default timeouts: local servers may load a model on first call.
fn default_timeouts(kind: Kind) -> Timeouts {
    let local = kind.key_optional();
    Timeouts {
        connect: Duration::from_secs(5),
        first_byte: Duration::from_secs(if local { 300 } else { 120 }),
        idle: Duration::from_secs(if local { 300 } else { 120 }),
    }
}

impl Provider {
    pub fn from_config(name: &str, p: &config::ProviderConfig, source: &'static str) -> Result<Provider, ConfigError> {
        let path = format!("providers.{name}");
        let kind = config::provider_kind(name, p).ok_or_else(|| ConfigError {
            path: format!("{path}.kind"),
            message: "unknown provider kind".into(),
        })?;
        let url = p
            .base_url
            .clone()
            .unwrap_or_else(|| kind.default_base_url().to_string());
        let base = BaseUrl::parse(&url).map_err(|message| ConfigError {
            path: format!("{path}.base_url"),
            message,
        })?;
        let d = default_timeouts(kind);
        let mut options = Options {
            strict: p.strict,
            ..Options::default()
        };
        if let Some(m) = p.default_max_tokens {
            options.default_max_tokens = m;
        }
        let mut headers: Vec<(String, String)> = p.headers.iter().map(|(k, v)| (k.to_lowercase(), v.clone())).collect();
        if let Some(org) = &p.organization {
            headers.push(("openai-organization".into(), org.clone()));
        }
        let header =
            |k: &str, v: &str, sensitive: bool| -> Result<(http::HeaderName, http::HeaderValue), ConfigError> {
                let bad = |what: &str| ConfigError {
                    path: format!("{path}.headers"),
                    message: format!("invalid header {what} for {k}"),
                };
                let name = http::HeaderName::from_bytes(k.as_bytes()).map_err(|_| bad("name"))?;
                let mut value = http::HeaderValue::from_str(v).map_err(|_| bad("value"))?;
                value.set_sensitive(sensitive);
                Ok((name, value))
            };
        let api_key: Option<SecretString> = p.api_key.clone().filter(|k| !k.is_empty()).map(SecretString::from);
        let mut wire_base = vec![
            header("host", &base.authority(), false)?,
            header("user-agent", concat!("prism/", env!("CARGO_PKG_VERSION")), false)?,
            header("accept-encoding", "identity", false)?,
        ];
        if let Some(key) = &api_key {
            let (k, v) = kind.auth_header(key.expose_secret());
            wire_base.push(header(k, &v, true).map_err(|_| ConfigError {
                path: format!("{path}.api_key"),
                message: "the api key has characters a header cannot carry".into(),
            })?);
        }
        let wire_extra = headers
            .iter()
            .map(|(k, v)| header(k, v, false))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Provider {
            name: name.to_string(),
            kind,
            upstream_id: format!("{name}@{}", base.url),
            base,
            api_key,
            options,
            timeouts: Timeouts {
                connect: p.connect_timeout.map(|d| d.0).unwrap_or(d.connect),
                first_byte: p.first_byte_timeout.map(|d| d.0).unwrap_or(d.first_byte),
                idle: p.idle_timeout.map(|d| d.0).unwrap_or(d.idle),
            },
            ca_file: p.ca_file.clone(),
            http2: p.http2,
            models: p.models.clone(),
            fallbacks: p.fallbacks.clone(),
            wire_base,
            wire_extra,
            fetch_images: p.fetch_images,
            discover_models: p.discover_models,
            source,
        })
    }
}

impl Table {
    /// Build a snapshot from the file config plus providers from the store. A name in both
    /// is an error (the control plane refuses it with 409 before it gets here).
    pub fn build(c: &Config, extra: Vec<Provider>) -> Result<Table, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut providers = HashMap::new();
        for (name, p) in &c.providers {
            if !p.enabled {
                continue;
            }
            match Provider::from_config(name, p, "file") {
                Ok(p) => {
                    providers.insert(name.clone(), Arc::new(p));
                }
                Err(e) => errors.push(e),
            }
        }
        for p in extra {
            if providers.contains_key(&p.name) {
                errors.push(ConfigError {
                    path: format!("providers.{}", p.name),
                    message: "defined both in the config file and in the control plane".into(),
                });
                continue;
            }
            providers.insert(p.name.clone(), Arc::new(p));
        }
        let mut routes = HashMap::new();
        let mut route_order = Vec::new();
        for r in &c.routes {
            let targets = r
                .targets
                .iter()
                .filter_map(|t| {
                    let (p, m) = t.target().split_once('/')?;
                    Some((p.to_string(), m.to_string(), t.weight()))
                })
                .collect();
            route_order.push(r.model.clone());
            routes.insert(
                r.model.clone(),
                Route {
                    strategy: r.strategy,
                    targets,
                },
            );
        }
        if errors.is_empty() {
            Ok(Table {
                providers,
                routes,
                route_order,
                default_provider: c.server.default_provider.clone(),
                auth_enabled: c.auth.enabled,
                keys: KeySet::from_plain(&c.auth.api_keys),
                max_body: c.server.max_body_size.0,
                max_response: c.server.max_response_size.0,
            })
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        let b = BaseUrl::parse("http://127.0.0.1:8000/v1/").unwrap();
        assert_eq!(
            (b.tls, b.host.as_str(), b.port, b.path.as_str()),
            (false, "127.0.0.1", 8000, "/v1")
        );
        assert_eq!(b.authority(), "127.0.0.1:8000");
        let b = BaseUrl::parse("https://api.anthropic.com").unwrap();
        assert_eq!((b.tls, b.port, b.path.as_str()), (true, 443, ""));
        assert_eq!(b.authority(), "api.anthropic.com");
        let b = BaseUrl::parse("http://[::1]:9000/v1").unwrap();
        assert_eq!(b.host, "::1");
        assert_eq!(b.authority(), "[::1]:9000");
    }
}

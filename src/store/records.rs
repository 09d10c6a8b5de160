//! The stored records and their validation. `ProviderSettings` is the `config` object of an
//! org config: strict (unknown fields are errors), checked before anything is stored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::{self, HumanDuration, ProviderConfig};
use crate::providers::Kind;

use super::crypto::Sealed;

/// A duration as the operator wrote it: `"30s"`, `"500ms"`, or a number of seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DurationValue {
    Secs(u64),
    Text(String),
}

impl DurationValue {
    fn parse(&self) -> Result<std::time::Duration, String> {
        match self {
            DurationValue::Secs(s) => Ok(std::time::Duration::from_secs(*s)),
            DurationValue::Text(t) => config::parse_duration(t),
        }
    }
}

/// An org config's `config` object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    /// The upstream, with the version path for OpenAI-compatible kinds (`http://host:8000/v1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The model a self-hosted server serves, reachable as `<name>/<model>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// More model names listed by `/v1/models`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// OpenAI `OpenAI-Organization` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    /// Extra headers sent upstream (not credentials: those go in `api_key`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// `provider/model` targets tried after this provider fails.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_images: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<DurationValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_byte_timeout: Option<DurationValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<DurationValue>,
}

/// Headers that carry credentials or framing; `api_key` is the one place for a credential,
/// so it is stored encrypted and never echoed.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "cookie",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
];

/// A validation failure: the body field at fault (`config.base_url`) and what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl ProviderSettings {
    /// Every check that does not need the rest of the table.
    pub fn validate(&self) -> Result<(), FieldError> {
        if let Some(url) = &self.base_url {
            config::check_base_url(url).map_err(|m| FieldError::new("config.base_url", m))?;
        }
        let model_ok = |m: &str| !m.trim().is_empty() && !m.starts_with('/');
        if let Some(m) = &self.model {
            if !model_ok(m) {
                return Err(FieldError::new("config.model", "must be a non-empty model name"));
            }
        }
        for (i, m) in self.models.iter().enumerate() {
            if !model_ok(m) {
                return Err(FieldError::new(
                    format!("config.models[{i}]"),
                    "must be a non-empty model name",
                ));
            }
        }
        if let Some(org) = &self.organization {
            if http::HeaderValue::from_str(org).is_err() {
                return Err(FieldError::new("config.organization", "must be printable ASCII"));
            }
        }
        for (name, value) in &self.headers {
            let field = format!("config.headers.{name}");
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(FieldError::new(field, "not a valid header name"));
            }
            if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(FieldError::new(
                    field,
                    "this header is set by the gateway; put the provider's credential in `api_key`",
                ));
            }
            if http::HeaderValue::from_str(value).is_err() {
                return Err(FieldError::new(field, "not a valid header value"));
            }
        }
        for (i, f) in self.fallbacks.iter().enumerate() {
            if !f.split_once('/').is_some_and(|(p, m)| !p.is_empty() && !m.is_empty()) {
                return Err(FieldError::new(
                    format!("config.fallbacks[{i}]"),
                    format!("`{f}` must be `provider/model`"),
                ));
            }
        }
        if self.default_max_tokens == Some(0) {
            return Err(FieldError::new("config.default_max_tokens", "must be at least 1"));
        }
        for (field, d) in [
            ("config.connect_timeout", &self.connect_timeout),
            ("config.first_byte_timeout", &self.first_byte_timeout),
            ("config.idle_timeout", &self.idle_timeout),
        ] {
            if let Some(d) = d {
                match d.parse() {
                    Ok(v) if v.is_zero() => return Err(FieldError::new(field, "must be longer than 0")),
                    Ok(_) => {}
                    Err(m) => return Err(FieldError::new(field, m)),
                }
            }
        }
        Ok(())
    }

    /// The file-config shape the routing table is built from (without the key).
    pub fn to_provider_config(&self, kind: &str) -> ProviderConfig {
        let dur = |d: &Option<DurationValue>| d.as_ref().and_then(|d| d.parse().ok()).map(HumanDuration);
        let mut models = Vec::new();
        if let Some(m) = &self.model {
            models.push(m.clone());
        }
        for m in &self.models {
            if !models.contains(m) {
                models.push(m.clone());
            }
        }
        ProviderConfig {
            kind: Some(kind.to_string()),
            api_key: None,
            base_url: self.base_url.clone(),
            models,
            fallbacks: self.fallbacks.clone(),
            strict: self.strict.unwrap_or(false),
            default_max_tokens: self.default_max_tokens,
            organization: self.organization.clone(),
            headers: self.headers.clone(),
            ca_file: None,
            http2: self.http2.unwrap_or(true),
            connect_timeout: dur(&self.connect_timeout),
            first_byte_timeout: dur(&self.first_byte_timeout),
            idle_timeout: dur(&self.idle_timeout),
            fetch_images: self.fetch_images.unwrap_or(false),
            discover_models: false,
            enabled: true,
        }
    }
}

/// A provider config managed at runtime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrgConfig {
    pub id: String,
    pub kind: Kind,
    pub name: String,
    pub settings: ProviderSettings,
    /// The provider key, sealed under the master key with `id` as associated data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Sealed>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_hint: Option<String>,
    pub enabled: bool,
    pub created_at: u64,
    pub updated_at: u64,
}

impl OrgConfig {
    /// The object the API returns: everything but the key itself.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "provider": self.kind.as_str(),
            "name": self.name,
            "config": serde_json::to_value(&self.settings).unwrap_or_else(|_| json!({})),
            "api_key_set": self.api_key.is_some(),
            "api_key_hint": self.api_key_hint,
            "enabled": self.enabled,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        })
    }
}

/// A gateway client key created at runtime: only its SHA-256 is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayKey {
    pub id: String,
    /// Hex SHA-256 of the key.
    pub sha256: String,
    pub hint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub created_at: u64,
}

impl GatewayKey {
    pub fn new(id: String, key: &str, name: Option<String>, created_at: u64) -> GatewayKey {
        let hash = crate::auth::hash_key(key);
        GatewayKey {
            id,
            sha256: hash.iter().map(|b| format!("{b:02x}")).collect(),
            hint: super::crypto::hint(key),
            name,
            created_at,
        }
    }

    pub fn hash_bytes(&self) -> Option<[u8; 32]> {
        if self.sha256.len() != 64 || !self.sha256.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&self.sha256[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(out)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "object": "gateway_key",
            "name": self.name,
            "hint": self.hint,
            "created_at": self.created_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_strict_and_validated() {
        let e = serde_json::from_value::<ProviderSettings>(json!({"base_url": "http://x/v1", "nope": 1})).unwrap_err();
        assert!(e.to_string().contains("nope"));
        let s: ProviderSettings = serde_json::from_value(json!({"base_url": "ftp://x"})).unwrap();
        assert_eq!(s.validate().unwrap_err().field, "config.base_url");
        let s: ProviderSettings = serde_json::from_value(json!({"headers": {"Authorization": "Bearer x"}})).unwrap();
        assert_eq!(s.validate().unwrap_err().field, "config.headers.Authorization");
        let s: ProviderSettings = serde_json::from_value(json!({"idle_timeout": "5 parsecs"})).unwrap();
        assert_eq!(s.validate().unwrap_err().field, "config.idle_timeout");
        let s: ProviderSettings =
            serde_json::from_value(json!({"base_url": "http://127.0.0.1:8000/v1", "model": "llama", "idle_timeout": "30s", "connect_timeout": 2}))
                .unwrap();
        s.validate().unwrap();
        let pc = s.to_provider_config("vllm");
        assert_eq!(pc.models, ["llama"]);
        assert_eq!(pc.idle_timeout.map(|d| d.0.as_secs()), Some(30));
        assert_eq!(pc.connect_timeout.map(|d| d.0.as_secs()), Some(2));
        // What goes in comes back out as written.
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["idle_timeout"], "30s");
        assert_eq!(v["connect_timeout"], 2);
        assert!(v.get("headers").is_none());
    }

    #[test]
    fn gateway_key_hash_round_trip() {
        let k = GatewayKey::new("key_1".into(), "sk-prism-abc", None, 1);
        assert_eq!(k.hash_bytes(), Some(crate::auth::hash_key("sk-prism-abc")));
        assert!(!serde_json::to_string(&k).unwrap().contains("sk-prism-abc"));
    }
}

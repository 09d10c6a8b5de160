//! What every control-plane write shares: one write lock (concurrent updates serialize, so a
//! record always equals one whole write), commit-then-rebuild with an undo when the new
//! table cannot be built (stored data never diverges from what serves), and strict JSON
//! parsing whose errors name the field.

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use serde::de::DeserializeOwned;

use crate::config::ConfigError;
use crate::error::{Fault, GatewayError};
use crate::state::App;
use crate::store::{MasterKey, Records, SledStore, StoreError};

pub struct ControlPlane {
    pub app: Arc<App>,
    /// Set once the store is read: at start-up, or just after the fork in daemon mode.
    records: OnceLock<Arc<Records>>,
    write_lock: Mutex<()>,
}

impl ControlPlane {
    pub fn new(app: Arc<App>) -> ControlPlane {
        ControlPlane {
            app,
            records: OnceLock::new(),
            write_lock: Mutex::new(()),
        }
    }

    /// Attach the records (once) and build the routing table with them.
    pub fn attach(&self, records: Arc<Records>) -> Result<(), Vec<ConfigError>> {
        self.app.set_contributions(records.clone())?;
        let _ = self.records.set(records);
        Ok(())
    }

    /// Read the store in `data_dir` with the master key from the environment, and attach it.
    /// A store that cannot be opened or read, a malformed master key, or a stored key that
    /// does not decrypt is an error: the gateway does not start without its providers.
    pub fn open_store(&self, data_dir: &str) -> Result<(), Vec<ConfigError>> {
        let fail = |path: &str, message: String| {
            vec![ConfigError {
                path: path.to_string(),
                message,
            }]
        };
        let master = MasterKey::from_env(&|k| std::env::var(k).ok()).map_err(|m| fail("", m))?;
        if master.is_none() {
            log::warn!("no master key (PRISM_MASTER_KEY or PRISM_MASTER_KEY_FILE): the control plane refuses to store provider api keys");
        }
        let store = SledStore::open(Path::new(data_dir)).map_err(|e| fail("server.data_dir", e.to_string()))?;
        let records = Records::load(Arc::new(store), master).map_err(|e| fail("server.data_dir", e.to_string()))?;
        let (providers, keys) = (records.org_configs().len(), records.gateway_keys().len());
        self.attach(Arc::new(records))?;
        log::info!("data_dir={data_dir} org_configs={providers} gateway_keys={keys} control-plane store loaded");
        Ok(())
    }

    pub fn records(&self) -> Result<&Arc<Records>, GatewayError> {
        self.records
            .get()
            .ok_or_else(|| GatewayError::unavailable("The control-plane store is still loading; retry shortly."))
    }

    /// Run `f` holding the write lock. The lock guards no data of its own, so a panic in an
    /// earlier holder leaves nothing inconsistent and the poison is ignored.
    pub fn exclusive<T>(&self, f: impl FnOnce() -> T) -> T {
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        f()
    }

    /// Apply `write` durably, then rebuild and swap the routing table. If the table cannot
    /// be built, `undo` restores the previous records and the caller gets the reason.
    pub fn commit_and_swap(
        &self,
        write: impl FnOnce(&Records) -> Result<(), StoreError>,
        undo: impl FnOnce(&Records) -> Result<(), StoreError>,
    ) -> Result<(), GatewayError> {
        let records = self.records()?;
        write(records).map_err(|e| store_failed(&e))?;
        let errors = match self.app.rebuild(None) {
            Ok(_) => return Ok(()),
            Err(errors) => errors,
        };
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        if let Err(e) = undo(records) {
            log::error!("error={e} could not undo a control-plane write after a failed rebuild: the store and the running table differ until the next successful change");
        }
        log::warn!(
            "errors={list:?} control-plane change rejected: the routing table could not be built, the write was undone"
        );
        let message = format!("the change was not applied: {}", list.join("; "));
        if errors.iter().any(|e| e.message.contains("defined both")) {
            Err(conflict(message))
        } else {
            Err(GatewayError::internal(message))
        }
    }
}

/// Loads the store from a Pingora background service: in daemon mode, where the process
/// forks after start-up and sled's I/O threads would not survive the fork if the store had
/// been opened before it. The control plane answers 503 until the store is attached.
pub struct StoreLoader {
    pub control: Arc<ControlPlane>,
    pub data_dir: String,
}

#[async_trait::async_trait]
impl pingora_core::services::background::BackgroundService for StoreLoader {
    async fn start(&self, _shutdown: pingora_core::server::ShutdownWatch) {
        if let Err(errors) = self.control.open_store(&self.data_dir) {
            for e in &errors {
                log::error!("error={e} cannot load the control-plane store");
            }
            // As in the foreground: no start without the stored providers.
            std::process::exit(1);
        }
    }
}

pub fn store_failed(e: &StoreError) -> GatewayError {
    if let StoreError::Conflict = e {
        log::warn!("error={e} control-plane write refused");
        return conflict(format!("Nothing was changed: {e}"));
    }
    log::error!("error={e} control-plane store failure");
    GatewayError::internal(format!("The store failed; the change may not have been saved: {e}"))
}

pub fn conflict(message: impl Into<String>) -> GatewayError {
    GatewayError::from_upstream_status(409, message)
        .with_fault(Fault::Client)
        .not_retryable()
        .with_code("conflict")
}

pub fn invalid(field: &str, message: impl Into<String>) -> GatewayError {
    GatewayError::invalid_request(message).with_param(field)
}

/// Seconds since the Unix epoch (as OpenAI's `created` fields).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A random record id: `<prefix>_` and 24 hex digits.
pub fn new_id(prefix: &str) -> String {
    let bytes: [u8; 12] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}_{hex}")
}

/// Parse a JSON body into `T` (which denies unknown fields). Errors say what to fix and
/// name the field as `param`; they never echo a string value of the body.
pub fn parse_json<T: DeserializeOwned>(body: &[u8], prefix: &str) -> Result<T, GatewayError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(GatewayError::invalid_request(
            "The request body is empty: send a JSON object.",
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| json_error(&e, ".", prefix))?;
    parse_value(value, prefix)
}

/// Like [`parse_json`] for a value already parsed; `prefix` names where it sits in the body.
pub fn parse_value<T: DeserializeOwned>(value: serde_json::Value, prefix: &str) -> Result<T, GatewayError> {
    if !value.is_object() {
        let what = if prefix.is_empty() {
            "The request body".to_string()
        } else {
            format!("`{prefix}`")
        };
        let e = GatewayError::invalid_request(format!("{what} must be a JSON object"));
        return Err(if prefix.is_empty() { e } else { e.with_param(prefix) });
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        json_error(&inner, &path, prefix)
    })
}

fn json_error(e: &serde_json::Error, path: &str, prefix: &str) -> GatewayError {
    use serde_json::error::Category;
    let text = scrub(&e.to_string());
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            GatewayError::invalid_request(format!("Malformed JSON body: {text}"))
        }
        Category::Data => {
            let mut field = if path == "." || path.is_empty() {
                String::new()
            } else {
                path.to_string()
            };
            for marker in ["missing field `", "unknown field `"] {
                if let Some(rest) = text.split(marker).nth(1) {
                    let name = rest.split('`').next().unwrap_or_default();
                    if !name.is_empty() && !field.ends_with(name) {
                        field = if field.is_empty() {
                            name.to_string()
                        } else {
                            format!("{field}.{name}")
                        };
                    }
                }
            }
            let field = if field.is_empty() || prefix.is_empty() {
                field
            } else {
                format!("{prefix}.{field}")
            };
            if field.is_empty() {
                GatewayError::invalid_request(format!("Invalid request body: {text}"))
            } else {
                GatewayError::invalid_request(format!("Invalid `{field}`: {text}")).with_param(field)
            }
        }
    }
}

/// serde's messages quote string values (`invalid type: string "..."`) and name Rust types
/// (`struct CreateBody`); keep the kind of value and the expectation, drop the rest.
fn scrub(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(i) = rest.find("string \"") {
        out.push_str(&rest[..i + "string".len()]);
        let after = &rest[i + "string \"".len()..];
        // Skip to the closing quote (serde escapes inner quotes as \").
        let mut end = after.len();
        let mut escaped = false;
        for (j, c) in after.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = j + 1;
                    break;
                }
                _ => escaped = false,
            }
        }
        rest = &after[end.min(after.len())..];
    }
    out.push_str(rest);
    let mut s = out;
    while let Some(i) = s.find("struct ") {
        let tail = &s[i + "struct ".len()..];
        let len = tail
            .find(|c: char| !c.is_alphanumeric() && c != '_')
            .unwrap_or(tail.len());
        s = format!("{}a JSON object{}", &s[..i], &tail[len..]);
    }
    s.replace("a map", "a JSON object").replace("map,", "JSON object,")
}

/// Provider names: what the file config accepts, so `<name>/<model>` splits at the first `/`.
pub fn check_name(name: &str) -> Result<(), GatewayError> {
    if name.is_empty() || name.len() > 64 {
        return Err(invalid("name", "`name` must be 1 to 64 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(invalid("name", "`name` may use letters, digits, `-`, `_` and `.` only"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        provider: String,
        #[serde(default)]
        enabled: Option<bool>,
        #[serde(default)]
        config: Option<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        #[serde(default)]
        base_url: Option<String>,
    }

    #[test]
    fn json_errors_name_the_field_and_echo_no_strings() {
        let e = parse_json::<Body>(b"{\"provider\": ", "").unwrap_err();
        assert!(e.message.starts_with("Malformed JSON"), "{}", e.message);
        let e = parse_json::<Body>(b"", "").unwrap_err();
        assert!(e.message.contains("empty"));
        let e = parse_json::<Body>(br#"{"enabled": true}"#, "").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("provider"), "{}", e.message);
        let e = parse_json::<Body>(br#"{"provider": "x", "enabled": "sk-very-secret"}"#, "").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("enabled"));
        assert!(!e.message.contains("sk-very-secret"), "{}", e.message);
        let e = parse_json::<Body>(br#"{"provider": "x", "colour": 1}"#, "").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("colour"), "{}", e.message);
        let e = parse_json::<Body>(br#"{"provider": "x", "config": {"base_url": 5}}"#, "").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("config.base_url"), "{}", e.message);
        let e = parse_json::<Body>(br#"{"provider": "x", "config": {"bsae_url": "http://x"}}"#, "").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("config.bsae_url"), "{}", e.message);
        let e = parse_json::<Body>(br#"["provider"]"#, "").unwrap_err();
        assert!(!e.message.contains("struct"), "{}", e.message);
        let e = parse_json::<Body>(br#"{"provider": "x"} trailing"#, "").unwrap_err();
        assert!(e.message.starts_with("Malformed JSON"), "{}", e.message);
        assert!(parse_json::<Body>(br#"{"provider": "x"}"#, "").is_ok());
    }

    #[test]
    fn scrub_drops_quoted_strings() {
        assert_eq!(
            scrub(r#"invalid type: string "a \"b\" c", expected a boolean at line 1"#),
            "invalid type: string, expected a boolean at line 1"
        );
    }
}

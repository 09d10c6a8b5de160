//! `/v1/org_configs[/{id}]`: provider configs created, changed and removed at runtime. A
//! write is validated whole, stored (flushed), and the routing table rebuilt before the 2xx;
//! the provider key is sealed on the way in and never comes back out.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use secrecy::zeroize::Zeroize;

use super::control::{check_name, conflict, invalid, new_id, now, parse_json, parse_value, ControlPlane};
use crate::error::GatewayError;
use crate::providers::Kind;
use crate::store::{crypto, Collection, OrgConfig, ProviderSettings};

/// `(status, body)` or the error to render.
pub type Answer = Result<(u16, Value), GatewayError>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    provider: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    api_key: Option<String>,
    #[serde(default)]
    config: Option<Map<String, Value>>,
    #[serde(default)]
    enabled: Option<bool>,
}

/// Absent, `null` and a value are three different things in a PATCH.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    /// A string sets the key, `null` removes it.
    #[serde(default, deserialize_with = "present")]
    api_key: Option<Option<String>>,
    /// Merged into the stored config field by field (`null` resets a field); `null` for the
    /// whole object resets every field.
    #[serde(default, deserialize_with = "present")]
    config: Option<Option<Map<String, Value>>>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
    /// Accepted only when unchanged: a different kind is a different provider.
    #[serde(default)]
    provider: Option<String>,
}

pub fn list(cp: &ControlPlane) -> Answer {
    let mut all = cp.records()?.org_configs();
    all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    let data: Vec<Value> = all.iter().map(OrgConfig::to_json).collect();
    Ok((200, json!({"object": "list", "data": data})))
}

pub fn get(cp: &ControlPlane, id: &str) -> Answer {
    Ok((200, find(cp, id)?.to_json()))
}

fn find(cp: &ControlPlane, id: &str) -> Result<OrgConfig, GatewayError> {
    cp.records()?
        .org_config(id)
        .ok_or_else(|| GatewayError::not_found(format!("No org config with id `{id}`")).with_param("id"))
}

pub fn create(cp: &ControlPlane, body: &[u8]) -> Answer {
    let mut req: CreateBody = parse_json(body, "")?;
    let answer = create_parsed(cp, &req);
    if let Some(k) = req.api_key.as_mut() {
        k.zeroize();
    }
    answer
}

fn create_parsed(cp: &ControlPlane, req: &CreateBody) -> Answer {
    let kind = parse_kind(&req.provider)?;
    let name = req.name.clone().unwrap_or_else(|| kind.as_str().to_string());
    check_name(&name)?;
    let settings = merge_settings(&ProviderSettings::default(), req.config.as_ref().unwrap_or(&Map::new()))?;
    let key = req.api_key.as_deref().map(check_key).transpose()?;
    cp.exclusive(|| {
        name_free(cp, &name, None)?;
        let id = new_id("oc");
        let t = now();
        let mut rec = OrgConfig {
            id: id.clone(),
            kind,
            name,
            settings,
            api_key: None,
            api_key_hint: None,
            enabled: req.enabled.unwrap_or(true),
            created_at: t,
            updated_at: t,
        };
        if let Some(k) = key {
            set_key(cp, &mut rec, k)?;
        }
        check_buildable(cp, &rec)?;
        cp.commit_and_swap(|r| r.put_org_config(&rec), |r| r.delete(Collection::OrgConfigs, &id))?;
        log::info!(
            "org_config={} name={} provider={} enabled={} api_key_set={} control plane: provider created",
            rec.id,
            rec.name,
            rec.kind.as_str(),
            rec.enabled,
            rec.api_key.is_some()
        );
        Ok((201, rec.to_json()))
    })
}

pub fn patch(cp: &ControlPlane, id: &str, body: &[u8]) -> Answer {
    let mut req: PatchBody = parse_json(body, "")?;
    let answer = patch_parsed(cp, id, &req);
    if let Some(Some(k)) = req.api_key.as_mut() {
        k.zeroize();
    }
    answer
}

fn patch_parsed(cp: &ControlPlane, id: &str, req: &PatchBody) -> Answer {
    if let Some(name) = &req.name {
        check_name(name)?;
    }
    let key = match &req.api_key {
        Some(Some(k)) => Some(Some(check_key(k)?)),
        Some(None) => Some(None),
        None => None,
    };
    cp.exclusive(|| {
        let current = find(cp, id)?;
        let mut rec = current.clone();
        if let Some(p) = &req.provider {
            if parse_kind(p)? != current.kind {
                return Err(invalid(
                    "provider",
                    format!(
                        "`provider` cannot change (it is `{}`): create a new org config instead",
                        current.kind.as_str()
                    ),
                ));
            }
        }
        if let Some(name) = &req.name {
            if *name != current.name {
                name_free(cp, name, Some(id))?;
                rec.name = name.clone();
            }
        }
        match &req.config {
            None => {}
            Some(None) => rec.settings = ProviderSettings::default(),
            Some(Some(changes)) => rec.settings = merge_settings(&current.settings, changes)?,
        }
        if let Some(enabled) = req.enabled {
            rec.enabled = enabled;
        }
        match key {
            None => {}
            Some(None) => {
                rec.api_key = None;
                rec.api_key_hint = None;
            }
            Some(Some(k)) => set_key(cp, &mut rec, k)?,
        }
        if rec == current {
            return Ok((200, current.to_json()));
        }
        rec.updated_at = now().max(current.updated_at);
        check_buildable(cp, &rec)?;
        cp.commit_and_swap(|r| r.put_org_config(&rec), |r| r.put_org_config(&current))?;
        log::info!(
            "org_config={} name={} provider={} enabled={} api_key_set={} control plane: provider updated",
            rec.id,
            rec.name,
            rec.kind.as_str(),
            rec.enabled,
            rec.api_key.is_some()
        );
        Ok((200, rec.to_json()))
    })
}

pub fn delete(cp: &ControlPlane, id: &str) -> Answer {
    cp.exclusive(|| {
        let current = find(cp, id)?;
        cp.commit_and_swap(|r| r.delete(Collection::OrgConfigs, id), |r| r.put_org_config(&current))?;
        log::info!(
            "org_config={} name={} control plane: provider deleted",
            current.id,
            current.name
        );
        Ok((200, json!({"id": current.id, "deleted": true})))
    })
}

fn parse_kind(s: &str) -> Result<Kind, GatewayError> {
    Kind::parse(s).ok_or_else(|| {
        let all: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        invalid(
            "provider",
            format!(
                "Unknown provider kind `{}`: use one of {} (any OpenAI-compatible server is `openai` with `config.base_url`)",
                s.chars().take(40).collect::<String>(),
                all.join(", ")
            ),
        )
    })
}

/// A key must be something that fits in an HTTP header. The message never quotes it.
fn check_key(k: &str) -> Result<&str, GatewayError> {
    if k.is_empty() {
        return Err(invalid(
            "api_key",
            "`api_key` is empty: omit it (or send null in a PATCH) for a provider without a key",
        ));
    }
    if k.len() > 4096 || k.chars().any(|c| c.is_control() || c == ' ') || http::HeaderValue::from_str(k).is_err() {
        return Err(invalid(
            "api_key",
            "`api_key` must be printable ASCII without spaces, at most 4096 bytes",
        ));
    }
    Ok(k)
}

fn set_key(cp: &ControlPlane, rec: &mut OrgConfig, key: &str) -> Result<(), GatewayError> {
    let master = cp.records()?.master_key().ok_or_else(|| {
        invalid(
            "api_key",
            "Cannot store an api_key: the gateway has no master key. Set PRISM_MASTER_KEY (32 bytes, base64) or PRISM_MASTER_KEY_FILE and restart; configs without a key work without it.",
        )
        .with_code("master_key_not_configured")
    })?;
    let sealed = master
        .seal(key, &rec.id)
        .map_err(|e| GatewayError::internal(e.to_string()))?;
    rec.api_key = Some(sealed);
    rec.api_key_hint = Some(crypto::hint(key));
    Ok(())
}

/// `name` must be unused by the config file and by every other record.
fn name_free(cp: &ControlPlane, name: &str, except: Option<&str>) -> Result<(), GatewayError> {
    if cp.app.config.load().providers.contains_key(name) {
        return Err(conflict(format!(
            "A provider named `{name}` is defined in the config file: choose another `name`"
        ))
        .with_param("name"));
    }
    let all = cp.records()?.org_configs();
    if let Some(other) = all.iter().find(|r| r.name == name && Some(r.id.as_str()) != except) {
        return Err(conflict(format!(
            "An org config named `{name}` already exists (id {}): choose another `name`",
            other.id
        ))
        .with_param("name"));
    }
    Ok(())
}

fn merge_settings(current: &ProviderSettings, changes: &Map<String, Value>) -> Result<ProviderSettings, GatewayError> {
    let mut merged = match serde_json::to_value(current) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    for (k, v) in changes {
        if v.is_null() {
            merged.remove(k);
        } else {
            merged.insert(k.clone(), v.clone());
        }
    }
    let settings: ProviderSettings = parse_value(Value::Object(merged), "config")?;
    settings
        .validate()
        .map_err(|e| invalid(&e.field, format!("Invalid `{}`: {}", e.field, e.message)))?;
    Ok(settings)
}

/// Build the routing entry the record would become, so a bad record is a 400 before it is
/// stored rather than a failed rebuild after.
fn check_buildable(cp: &ControlPlane, rec: &OrgConfig) -> Result<(), GatewayError> {
    cp.records()?
        .provider(rec)
        .map(drop)
        .map_err(|e| GatewayError::invalid_request(format!("The provider cannot be built: {}", e.message)))
}

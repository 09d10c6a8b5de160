//! `/v1/keys[/{id}]`: gateway client keys created at runtime. A new key is shown once, in
//! the answer to its `POST`; the store keeps only its SHA-256 and a short hint. A deleted key
//! is refused from the next request on (the table is rebuilt before the answer).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde::Deserialize;
use serde_json::{json, Value};

use super::control::{invalid, new_id, now, parse_json, ControlPlane};
use super::org_configs::Answer;
use crate::error::GatewayError;
use crate::store::{Collection, GatewayKey};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    /// A label for operators (`ci`, `team-a`).
    #[serde(default)]
    name: Option<String>,
}

/// `sk-prism-` and 32 random bytes (256 bits), URL-safe base64.
fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("sk-prism-{}", URL_SAFE_NO_PAD.encode(bytes))
}

pub fn list(cp: &ControlPlane) -> Answer {
    let mut all = cp.records()?.gateway_keys();
    all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    let data: Vec<Value> = all.iter().map(GatewayKey::to_json).collect();
    Ok((200, json!({"object": "list", "data": data})))
}

pub fn create(cp: &ControlPlane, body: &[u8]) -> Answer {
    let req: CreateBody = if body.iter().all(u8::is_ascii_whitespace) {
        CreateBody::default()
    } else {
        parse_json(body, "")?
    };
    if let Some(n) = &req.name {
        if n.is_empty() || n.len() > 100 || n.chars().any(char::is_control) {
            return Err(invalid("name", "`name` must be 1 to 100 printable characters"));
        }
    }
    cp.exclusive(|| {
        let key = generate();
        let rec = GatewayKey::new(new_id("key"), &key, req.name.clone(), now());
        cp.commit_and_swap(
            |r| r.put_gateway_key(&rec),
            |r| r.delete(Collection::GatewayKeys, &rec.id),
        )?;
        log::info!(
            "gateway_key={} hint={} control plane: gateway key created",
            rec.id,
            rec.hint
        );
        let mut body = rec.to_json();
        body["key"] = Value::String(key);
        Ok((201, body))
    })
}

pub fn delete(cp: &ControlPlane, id: &str) -> Answer {
    cp.exclusive(|| {
        let current = cp
            .records()?
            .gateway_key(id)
            .ok_or_else(|| GatewayError::not_found(format!("No gateway key with id `{id}`")).with_param("id"))?;
        cp.commit_and_swap(
            |r| r.delete(Collection::GatewayKeys, id),
            |r| r.put_gateway_key(&current),
        )?;
        log::info!("gateway_key={} control plane: gateway key revoked", current.id);
        Ok((200, json!({"id": current.id, "deleted": true})))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_keys_are_long_and_distinct() {
        let (a, b) = (super::generate(), super::generate());
        assert!(a.starts_with("sk-prism-") && a.len() >= "sk-prism-".len() + 43);
        assert_ne!(a, b);
    }
}

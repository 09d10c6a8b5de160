//! `prism keys rotate`: re-seal every stored provider key under a new master key, all or
//! nothing. Every key is opened with the old master key first; if one fails, nothing is
//! written. The new records then go in as one atomic, flushed batch that also bumps the
//! store's generation, so a gateway still holding the old records cannot write over them.

use std::path::PathBuf;

use secrecy::ExposeSecret;

use super::{Collection, MasterKey, OrgConfig, Store, Write};

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("record {id} ({name}) has a stored api_key but no current master key was given (PRISM_MASTER_KEY or PRISM_MASTER_KEY_FILE)")]
    NoOldKey { id: String, name: String },
    #[error("record {id} ({name}): {reason}; nothing was changed")]
    Open { id: String, name: String, reason: String },
    #[error("{0}; nothing was changed")]
    Store(String),
}

/// Re-seal every key; returns how many records were re-encrypted.
pub fn rotate(store: &dyn Store, old: Option<&MasterKey>, new: &MasterKey) -> Result<usize, RotateError> {
    // Read first: a write by anyone after this point makes the commit below fail.
    let generation = super::generation(store).map_err(|e| RotateError::Store(e.to_string()))?;
    let rows = store
        .list(Collection::OrgConfigs)
        .map_err(|e| RotateError::Store(e.to_string()))?;
    let mut writes = Vec::new();
    for (id, bytes) in rows {
        let mut rec: OrgConfig = serde_json::from_slice(&bytes)
            .map_err(|e| RotateError::Store(format!("record {id} is unreadable: {e}")))?;
        let Some(sealed) = &rec.api_key else {
            continue;
        };
        let old = old.ok_or_else(|| RotateError::NoOldKey {
            id: rec.id.clone(),
            name: rec.name.clone(),
        })?;
        let plain = old.open(sealed, &rec.id).map_err(|e| RotateError::Open {
            id: rec.id.clone(),
            name: rec.name.clone(),
            reason: e.to_string(),
        })?;
        rec.api_key = Some(
            new.seal(plain.expose_secret(), &rec.id)
                .map_err(|e| RotateError::Open {
                    id: rec.id.clone(),
                    name: rec.name.clone(),
                    reason: e.to_string(),
                })?,
        );
        let value = serde_json::to_vec(&rec).map_err(|e| RotateError::Store(e.to_string()))?;
        writes.push(Write::Put {
            collection: Collection::OrgConfigs,
            id,
            value,
        });
    }
    let n = writes.len();
    if n > 0 {
        let (expect, bump) = super::generation_guard(generation);
        writes.push(bump);
        store
            .commit(vec![expect], writes)
            .map_err(|e| RotateError::Store(e.to_string()))?;
    }
    Ok(n)
}

/// `prism keys rotate`: find the store (`--data-dir`, else `PRISM_DATA_DIR`, else the
/// config's `server.data_dir`), read the current key (`PRISM_MASTER_KEY[_FILE]`) and the new
/// one (`--new-key-file`, else `PRISM_NEW_MASTER_KEY[_FILE]`), and rotate. The store must
/// exist. A gateway running on it keeps serving, and its writes fail (the generation moved)
/// until it restarts with the new key. Returns what to print.
pub fn command(
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    new_key_file: Option<PathBuf>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let dir = match data_dir.or_else(|| env("PRISM_DATA_DIR").filter(|d| !d.is_empty()).map(PathBuf::from)) {
        Some(d) => d,
        None => {
            let path = crate::server::config_path(config);
            let c = crate::server::load_file(&path).map_err(|errors| {
                let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
                format!(
                    "{}\n{}: cannot read server.data_dir; pass --data-dir",
                    list.join("\n"),
                    path.display()
                )
            })?;
            PathBuf::from(c.server.data_dir)
        }
    };
    let old = MasterKey::from_env(env)?;
    let new = match new_key_file {
        Some(f) => Some(MasterKey::from_file(&f, "--new-key-file")?),
        None => MasterKey::from_vars(env, "PRISM_NEW_MASTER_KEY", "PRISM_NEW_MASTER_KEY_FILE")?,
    };
    let new = new.ok_or("no new master key: pass --new-key-file or set PRISM_NEW_MASTER_KEY")?;
    if !dir.is_dir() {
        return Err(format!(
            "no store at {} (set --data-dir or PRISM_DATA_DIR)",
            dir.display()
        ));
    }
    let store = super::SledStore::open(&dir).map_err(|e| e.to_string())?;
    let n = rotate(&store, old.as_ref(), &new).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(format!(
        "{}: re-encrypted {n} provider key(s); restart the gateway with the new master key",
        dir.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ProviderSettings, Records, SledStore};
    use std::sync::Arc;

    fn rec(key: &MasterKey, id: &str, secret: Option<&str>) -> OrgConfig {
        OrgConfig {
            id: id.into(),
            kind: crate::providers::Kind::Openai,
            name: id.into(),
            settings: ProviderSettings::default(),
            api_key: secret.map(|s| key.seal(s, id).unwrap()),
            api_key_hint: None,
            enabled: true,
            created_at: 1,
            updated_at: 1,
        }
    }

    #[test]
    fn rotates_all_or_nothing() {
        let dir = std::env::temp_dir().join(format!("prism-rotate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir).unwrap());
        let (old, new, stranger) = (MasterKey::generate(), MasterKey::generate(), MasterKey::generate());
        let r = Records::load(store.clone(), None).unwrap();
        r.put_org_config(&rec(&old, "oc_1", Some("sk-one"))).unwrap();
        r.put_org_config(&rec(&old, "oc_2", None)).unwrap();
        r.put_org_config(&rec(&stranger, "oc_3", Some("sk-three"))).unwrap();
        let before = store.list(Collection::OrgConfigs).unwrap();

        // One record sealed under another key: nothing changes.
        let e = rotate(store.as_ref(), Some(&old), &new).unwrap_err();
        assert!(e.to_string().contains("oc_3"), "{e}");
        assert_eq!(store.list(Collection::OrgConfigs).unwrap(), before);
        assert!(matches!(
            rotate(store.as_ref(), None, &new),
            Err(RotateError::NoOldKey { .. })
        ));

        r.delete(Collection::OrgConfigs, "oc_3").unwrap();
        assert_eq!(rotate(store.as_ref(), Some(&old), &new).unwrap(), 1);
        let fresh = Records::load(store.clone(), None).unwrap();
        let sealed = fresh.org_config("oc_1").unwrap().api_key.unwrap();
        assert_eq!(new.open(&sealed, "oc_1").unwrap().expose_secret(), "sk-one");
        assert!(old.open(&sealed, "oc_1").is_err());
        assert!(fresh.org_config("oc_2").unwrap().api_key.is_none());
        // A gateway still running on the old key cannot write over the rotated store.
        let e = r.put_org_config(&rec(&old, "oc_4", Some("sk-four"))).unwrap_err();
        assert!(matches!(e, crate::store::StoreError::Conflict), "{e}");
        assert!(store.get(Collection::OrgConfigs, "oc_4").unwrap().is_none());
        drop((r, fresh, store));
        let _ = std::fs::remove_dir_all(dir);
    }
}

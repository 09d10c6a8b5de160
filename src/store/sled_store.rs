//! The embedded store: one sled tree, keys `<collection>/<id>`. A commit is one sled batch
//! (atomic) followed by a flush (durable), so an acknowledged write survives a crash.
//!
//! sled lets one process at a time open a directory, so the database is opened for each
//! operation and closed after it, never held: a new gateway taking over the sockets of an
//! old one (zero-downtime upgrade) and `prism keys rotate` can open it while another process
//! runs. Operations wait a few seconds for a directory that another process has open.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Collection, Expect, Store, StoreError, Write};

pub struct SledStore {
    dir: PathBuf,
    /// One open at a time within this process.
    open_lock: Mutex<()>,
}

/// How long an operation waits for another process to close the database.
const LOCK_WAIT: Duration = Duration::from_secs(10);

fn backend(e: sled::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn key(collection: Collection, id: &str) -> Vec<u8> {
    format!("{}/{id}", collection.as_str()).into_bytes()
}

impl SledStore {
    /// Use (creating if needed) the store in `dir`, made private to the gateway's user on
    /// Unix. Opens it once to check that it can.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", dir.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        let store = SledStore {
            dir: dir.to_path_buf(),
            open_lock: Mutex::new(()),
        };
        store.with_db(|_| Ok(()))?;
        Ok(store)
    }

    /// Run `f` on the database, opened for it alone.
    fn with_db<T>(&self, f: impl FnOnce(&sled::Db) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let _guard = self.open_lock.lock().unwrap_or_else(|p| p.into_inner());
        let deadline = Instant::now() + LOCK_WAIT;
        let mut pause = Duration::from_millis(5);
        let db = loop {
            // Flushing is explicit (every commit), so no background flusher thread.
            match sled::Config::new().path(&self.dir).flush_every_ms(None).open() {
                Ok(db) => break db,
                // sled reports a directory held by another process as this I/O error.
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock") && Instant::now() < deadline =>
                {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                Err(e) => {
                    return Err(StoreError::Backend(format!(
                        "cannot open the store in {} (is another prism process using it?): {e}",
                        self.dir.display()
                    )))
                }
            }
        };
        f(&db)
    }
}

impl Store for SledStore {
    fn get(&self, collection: Collection, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.with_db(|db| Ok(db.get(key(collection, id)).map_err(backend)?.map(|v| v.to_vec())))
    }

    fn list(&self, collection: Collection) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let prefix = format!("{}/", collection.as_str());
        self.with_db(|db| {
            let mut out = Vec::new();
            for item in db.scan_prefix(prefix.as_bytes()) {
                let (k, v) = item.map_err(backend)?;
                let id = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
                out.push((id, v.to_vec()));
            }
            Ok(out)
        })
    }

    fn commit(&self, expect: Vec<Expect>, writes: Vec<Write>) -> Result<(), StoreError> {
        self.with_db(|db| {
            // The directory is ours alone while it is open, so check-then-apply is atomic.
            for e in &expect {
                let now = db.get(key(e.collection, &e.id)).map_err(backend)?;
                if now.as_deref() != e.value.as_deref() {
                    return Err(StoreError::Conflict);
                }
            }
            let mut batch = sled::Batch::default();
            for w in writes {
                match w {
                    Write::Put { collection, id, value } => batch.insert(key(collection, &id), value),
                    Write::Delete { collection, id } => batch.remove(key(collection, &id)),
                }
            }
            db.apply_batch(batch).map_err(backend)?;
            db.flush().map_err(backend)?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{generation, GatewayKey, MasterKey, OrgConfig, ProviderSettings, Records};
    use std::sync::Arc;

    fn temp(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("prism-store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn rec(id: &str, name: &str) -> OrgConfig {
        OrgConfig {
            id: id.into(),
            kind: crate::providers::Kind::Vllm,
            name: name.into(),
            settings: ProviderSettings {
                base_url: Some("http://127.0.0.1:8000/v1".into()),
                ..Default::default()
            },
            api_key: None,
            api_key_hint: None,
            enabled: true,
            created_at: 1,
            updated_at: 1,
        }
    }

    #[test]
    fn crud_and_reload() {
        let dir = temp("crud");
        let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir).unwrap());
        let r = Records::load(store.clone(), Some(MasterKey::generate())).unwrap();
        assert!(r.org_configs().is_empty());
        r.put_org_config(&rec("oc_a", "a")).unwrap();
        r.put_org_config(&rec("oc_b", "b")).unwrap();
        let mut b = rec("oc_b", "b2");
        b.enabled = false;
        r.put_org_config(&b).unwrap();
        r.put_gateway_key(&GatewayKey::new("key_1".into(), "sk-prism-x", None, 5))
            .unwrap();
        assert_eq!(r.org_config("oc_b").unwrap().name, "b2");
        assert_eq!(r.org_configs().len(), 2);
        r.delete(Collection::OrgConfigs, "oc_a").unwrap();
        assert!(r.org_config("oc_a").is_none());
        assert!(r.org_config("missing").is_none());
        assert_eq!(generation(store.as_ref()).unwrap(), 5);

        // A second handle on the same directory (another process) sees every record.
        let again = Records::load(Arc::new(SledStore::open(&dir).unwrap()), None).unwrap();
        let all = again.org_configs();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].name, "b2");
        assert!(!all[0].enabled);
        assert_eq!(again.gateway_keys().len(), 1);
        assert!(again.gateway_key("oc_b").is_none(), "collections do not mix");

        // Once it writes, the first handle is stale: its write fails and changes nothing.
        again.delete(Collection::GatewayKeys, "key_1").unwrap();
        let e = r.put_org_config(&rec("oc_c", "c")).unwrap_err();
        assert!(matches!(e, StoreError::Conflict), "{e}");
        assert!(r.org_config("oc_c").is_none());
        assert!(store.get(Collection::OrgConfigs, "oc_c").unwrap().is_none());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn batches_are_atomic_and_garbage_is_reported() {
        let dir = temp("batch");
        let store = SledStore::open(&dir).unwrap();
        let put = |c, id: &str, v: &[u8]| Write::Put {
            collection: c,
            id: id.into(),
            value: v.to_vec(),
        };
        store
            .commit(
                vec![],
                vec![
                    put(Collection::OrgConfigs, "x", b"not json"),
                    put(Collection::GatewayKeys, "y", b"{}"),
                ],
            )
            .unwrap();
        assert_eq!(store.list(Collection::OrgConfigs).unwrap().len(), 1);
        // A failed expectation applies nothing.
        let expect = Expect {
            collection: Collection::OrgConfigs,
            id: "x".into(),
            value: Some(b"other".to_vec()),
        };
        let e = store
            .commit(vec![expect], vec![put(Collection::OrgConfigs, "z", b"{}")])
            .unwrap_err();
        assert!(matches!(e, StoreError::Conflict));
        assert!(store.get(Collection::OrgConfigs, "z").unwrap().is_none());
        let e = Records::load(Arc::new(store), None).err().unwrap();
        assert!(e.to_string().contains("org_configs/x"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }
}

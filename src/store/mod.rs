//! The control plane's durable records: provider configs ("org configs") and gateway client
//! keys. A small byte-level [`Store`] trait (so a shared store such as Redis can replace the
//! embedded one), its sled implementation, the typed records on top, the AEAD that seals
//! provider keys, and the bridge that turns records into routing-table entries.
//!
//! The gateway reads the store once at start and serves from memory; every write goes to the
//! store first (atomic, durable, guarded by a generation number) and to memory after. The
//! generation makes a stale writer fail instead of overwriting: another process that changed
//! the store (`prism keys rotate`, a second instance on a shared store) bumps it.

pub mod crypto;
pub mod records;
pub mod rotate;
pub mod sled_store;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use secrecy::zeroize::Zeroize;
use secrecy::ExposeSecret;

use crate::config::ConfigError;
use crate::state::Contributions;
use crate::table::Provider;

pub use crypto::{MasterKey, Sealed};
pub use records::{GatewayKey, OrgConfig, ProviderSettings};
pub use sled_store::SledStore;

/// A group of records sharing one id space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collection {
    OrgConfigs,
    GatewayKeys,
    /// Bookkeeping: the store's `generation`.
    Meta,
}

impl Collection {
    pub fn as_str(self) -> &'static str {
        match self {
            Collection::OrgConfigs => "org_configs",
            Collection::GatewayKeys => "gateway_keys",
            Collection::Meta => "meta",
        }
    }
}

/// One change inside an atomic [`Store::commit`].
#[derive(Debug, Clone)]
pub enum Write {
    Put {
        collection: Collection,
        id: String,
        value: Vec<u8>,
    },
    Delete {
        collection: Collection,
        id: String,
    },
}

/// A precondition of a [`Store::commit`]: the record holds exactly `value` (`None`: absent).
#[derive(Debug, Clone)]
pub struct Expect {
    pub collection: Collection,
    pub id: String,
    pub value: Option<Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store backend error: {0}")]
    Backend(String),
    #[error("stored record {collection}/{id} is unreadable: {reason}")]
    Corrupt {
        collection: &'static str,
        id: String,
        reason: String,
    },
    /// A precondition failed: someone else wrote since we read.
    #[error("the store was changed by another process (another gateway instance, or `prism keys rotate`): restart this gateway to pick the change up")]
    Conflict,
}

/// Durable key-value records grouped in collections. `commit` must be atomic (every write
/// or none, and only if every expectation holds, else [`StoreError::Conflict`]) and durable
/// (on disk, or acknowledged by the shared store, before it returns): the control plane
/// answers 2xx only after `commit` returns.
pub trait Store: Send + Sync {
    fn get(&self, collection: Collection, id: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every record of a collection, ordered by id.
    fn list(&self, collection: Collection) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    fn commit(&self, expect: Vec<Expect>, writes: Vec<Write>) -> Result<(), StoreError>;
}

pub const GENERATION: &str = "generation";

/// The store's generation: bumped by every commit, expected by the next.
pub fn generation(store: &dyn Store) -> Result<u64, StoreError> {
    match store.get(Collection::Meta, GENERATION)? {
        None => Ok(0),
        Some(v) => std::str::from_utf8(&v)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| StoreError::Corrupt {
                collection: "meta",
                id: GENERATION.into(),
                reason: "not a number".into(),
            }),
    }
}

/// The precondition and the bump that go with every commit made at generation `g`.
pub fn generation_guard(g: u64) -> (Expect, Write) {
    (
        Expect {
            collection: Collection::Meta,
            id: GENERATION.into(),
            value: (g > 0).then(|| g.to_string().into_bytes()),
        },
        Write::Put {
            collection: Collection::Meta,
            id: GENERATION.into(),
            value: (g + 1).to_string().into_bytes(),
        },
    )
}

fn decode<T: serde::de::DeserializeOwned>(collection: Collection, id: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        collection: collection.as_str(),
        id: id.to_string(),
        reason: e.to_string(),
    })
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Backend(format!("cannot encode record: {e}")))
}

/// What the gateway serves from: every record, as of `generation`.
#[derive(Default)]
struct Snapshot {
    generation: u64,
    org_configs: BTreeMap<String, OrgConfig>,
    gateway_keys: BTreeMap<String, GatewayKey>,
}

/// The records in memory, kept equal to the store by writing through it, and the master key
/// that seals provider keys.
pub struct Records {
    store: Arc<dyn Store>,
    key: Option<MasterKey>,
    snapshot: RwLock<Snapshot>,
}

impl Records {
    /// Read every record from `store`.
    pub fn load(store: Arc<dyn Store>, key: Option<MasterKey>) -> Result<Records, StoreError> {
        let mut snap = Snapshot {
            generation: generation(store.as_ref())?,
            ..Snapshot::default()
        };
        for (id, v) in store.list(Collection::OrgConfigs)? {
            let rec: OrgConfig = decode(Collection::OrgConfigs, &id, &v)?;
            snap.org_configs.insert(id, rec);
        }
        for (id, v) in store.list(Collection::GatewayKeys)? {
            let rec: GatewayKey = decode(Collection::GatewayKeys, &id, &v)?;
            snap.gateway_keys.insert(id, rec);
        }
        Ok(Records {
            store,
            key,
            snapshot: RwLock::new(snap),
        })
    }

    pub fn master_key(&self) -> Option<&MasterKey> {
        self.key.as_ref()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Snapshot> {
        // Writers replace whole values; a panic mid-write leaves nothing half-done.
        self.snapshot.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Every org config, ordered by id.
    pub fn org_configs(&self) -> Vec<OrgConfig> {
        self.read().org_configs.values().cloned().collect()
    }

    pub fn org_config(&self, id: &str) -> Option<OrgConfig> {
        self.read().org_configs.get(id).cloned()
    }

    pub fn gateway_keys(&self) -> Vec<GatewayKey> {
        self.read().gateway_keys.values().cloned().collect()
    }

    pub fn gateway_key(&self, id: &str) -> Option<GatewayKey> {
        self.read().gateway_keys.get(id).cloned()
    }

    /// Commit `writes` to the store at the generation we hold, then apply them in memory.
    /// Callers serialize writes (the control plane's write lock).
    fn write(&self, writes: Vec<Write>, apply: impl FnOnce(&mut Snapshot)) -> Result<(), StoreError> {
        let g = self.read().generation;
        let (expect, bump) = generation_guard(g);
        let mut all = writes;
        all.push(bump);
        self.store.commit(vec![expect], all)?;
        let mut snap = self.snapshot.write().unwrap_or_else(|p| p.into_inner());
        snap.generation = g + 1;
        apply(&mut snap);
        Ok(())
    }

    /// Store `rec` (durably), replacing any record with its id.
    pub fn put_org_config(&self, rec: &OrgConfig) -> Result<(), StoreError> {
        let value = encode(rec)?;
        let w = Write::Put {
            collection: Collection::OrgConfigs,
            id: rec.id.clone(),
            value,
        };
        self.write(vec![w], |s| {
            s.org_configs.insert(rec.id.clone(), rec.clone());
        })
    }

    pub fn put_gateway_key(&self, rec: &GatewayKey) -> Result<(), StoreError> {
        let value = encode(rec)?;
        let w = Write::Put {
            collection: Collection::GatewayKeys,
            id: rec.id.clone(),
            value,
        };
        self.write(vec![w], |s| {
            s.gateway_keys.insert(rec.id.clone(), rec.clone());
        })
    }

    pub fn delete(&self, collection: Collection, id: &str) -> Result<(), StoreError> {
        let w = Write::Delete {
            collection,
            id: id.to_string(),
        };
        self.write(vec![w], |s| match collection {
            Collection::OrgConfigs => {
                s.org_configs.remove(id);
            }
            Collection::GatewayKeys => {
                s.gateway_keys.remove(id);
            }
            Collection::Meta => {}
        })
    }

    /// The routing-table entry for one record, its key decrypted in memory only.
    pub fn provider(&self, rec: &OrgConfig) -> Result<Provider, ConfigError> {
        let fail = |message: String| ConfigError {
            path: format!("org_configs.{}", rec.id),
            message,
        };
        let mut pc = rec.settings.to_provider_config(rec.kind.as_str());
        if let Some(sealed) = &rec.api_key {
            let key = self.key.as_ref().ok_or_else(|| {
                fail(format!(
                    "provider `{}` has a stored api_key but no master key is set (PRISM_MASTER_KEY or PRISM_MASTER_KEY_FILE)",
                    rec.name
                ))
            })?;
            let plain = key
                .open(sealed, &rec.id)
                .map_err(|e| fail(format!("provider `{}`: {e}", rec.name)))?;
            pc.api_key = Some(plain.expose_secret().to_string());
        }
        let built = Provider::from_config(&rec.name, &pc, "store");
        if let Some(k) = pc.api_key.as_mut() {
            k.zeroize();
        }
        built.map_err(|e| fail(e.to_string()))
    }
}

impl Contributions for Records {
    fn providers(&self) -> Result<Vec<Provider>, ConfigError> {
        let snap = self.read();
        snap.org_configs
            .values()
            .filter(|r| r.enabled)
            .map(|r| self.provider(r))
            .collect()
    }

    fn key_hashes(&self) -> Vec<[u8; 32]> {
        self.read()
            .gateway_keys
            .values()
            .filter_map(GatewayKey::hash_bytes)
            .collect()
    }
}

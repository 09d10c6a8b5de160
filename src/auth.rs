//! Gateway client keys: held only as SHA-256 hashes, compared in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, Default)]
pub struct KeySet {
    /// (hash, short id for logs)
    keys: Vec<([u8; 32], String)>,
}

pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// A key's public id: the first 12 hex digits of its hash (safe to log).
pub fn key_id(hash: &[u8; 32]) -> String {
    hash[..6].iter().map(|b| format!("{b:02x}")).collect()
}

impl KeySet {
    pub fn from_plain<'a>(keys: impl IntoIterator<Item = &'a String>) -> Self {
        let mut set = KeySet::default();
        for k in keys {
            set.add_hash(hash_key(k));
        }
        set
    }

    pub fn add_hash(&mut self, hash: [u8; 32]) {
        if !self.keys.iter().any(|(h, _)| *h == hash) {
            self.keys.push((hash, key_id(&hash)));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key's id when `presented` is a known key. Every stored hash is compared, so the
    /// time taken does not depend on which key matched.
    pub fn check(&self, presented: &str) -> Option<&str> {
        let h = hash_key(presented);
        let mut found = None;
        for (k, id) in &self.keys {
            if bool::from(k.ct_eq(&h)) {
                found = Some(id.as_str());
            }
        }
        found
    }
}

/// The bearer token of an `Authorization` header value.
pub fn bearer(value: &[u8]) -> Option<&str> {
    let v = std::str::from_utf8(value).ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_check() {
        let keys = vec!["sk-prism-a".to_string(), "sk-prism-b".to_string()];
        let set = KeySet::from_plain(&keys);
        assert!(set.check("sk-prism-b").is_some());
        assert!(set.check("sk-prism-c").is_none());
        assert!(set.check("").is_none());
        assert_eq!(bearer(b"Bearer sk-1"), Some("sk-1"));
        assert_eq!(bearer(b"bearer  sk-1 "), Some("sk-1"));
        assert_eq!(bearer(b"Basic x"), None);
        assert_eq!(bearer(b"Bearer "), None);
    }
}

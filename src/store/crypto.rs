//! Provider keys at rest: XChaCha20-Poly1305 under the 32-byte master key, a fresh random
//! 192-bit nonce per write, and the record id as associated data (so a sealed key copied into
//! another record does not open). The master key lives in a `SecretBox`, which zeroizes it on
//! drop and never prints it.

use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde::{Deserialize, Serialize};

const NONCE_LEN: usize = 24;

/// A provider key, sealed. Both fields are base64; neither reveals anything about the key
/// but its length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sealed {
    /// Which scheme sealed it (`xchacha20poly1305`), so a later one can be told apart.
    pub alg: String,
    pub nonce: String,
    pub ciphertext: String,
}

const ALG: &str = "xchacha20poly1305";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("cannot decrypt the stored api_key: wrong master key or altered record")]
    Open,
    #[error("stored api_key uses unknown scheme `{0}`")]
    Alg(String),
    #[error("stored api_key is malformed")]
    Malformed,
    #[error("cannot encrypt the api_key")]
    Seal,
}

/// The master key. `Debug` shows `[REDACTED]`; there is no way to print or serialize it.
#[derive(Debug)]
pub struct MasterKey(SecretBox<[u8; 32]>);

impl MasterKey {
    /// Decode a base64 key (standard or URL-safe alphabet, padded or not). Errors never echo
    /// the input.
    pub fn from_base64(text: &str, source: &str) -> Result<MasterKey, String> {
        let text = text.trim();
        let mut bytes = STANDARD
            .decode(text)
            .or_else(|_| URL_SAFE.decode(text))
            .or_else(|_| URL_SAFE_NO_PAD.decode(text))
            .map_err(|_| format!("{source} is not valid base64 (generate one with `openssl rand -base64 32`)"))?;
        if bytes.len() != 32 {
            let n = bytes.len();
            secrecy::zeroize::Zeroize::zeroize(&mut bytes);
            return Err(format!(
                "{source} must decode to 32 bytes, got {n} (generate one with `openssl rand -base64 32`)"
            ));
        }
        let key = SecretBox::init_with_mut(|k: &mut [u8; 32]| k.copy_from_slice(&bytes));
        secrecy::zeroize::Zeroize::zeroize(&mut bytes);
        Ok(MasterKey(key))
    }

    /// The master key from `PRISM_MASTER_KEY` (base64) or `PRISM_MASTER_KEY_FILE` (a file
    /// holding the base64 key). Neither set: `Ok(None)`. Both set, unreadable or malformed:
    /// an error naming the variable.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<MasterKey>, String> {
        Self::from_vars(env, "PRISM_MASTER_KEY", "PRISM_MASTER_KEY_FILE")
    }

    /// Like [`MasterKey::from_env`] for any pair of (value, file) variable names.
    pub fn from_vars(
        env: &dyn Fn(&str) -> Option<String>,
        var: &str,
        file_var: &str,
    ) -> Result<Option<MasterKey>, String> {
        let value = env(var).filter(|v| !v.trim().is_empty());
        let file = env(file_var).filter(|v| !v.trim().is_empty());
        match (value, file) {
            (Some(_), Some(_)) => Err(format!("set only one of {var} and {file_var}")),
            (Some(mut v), None) => {
                let k = MasterKey::from_base64(&v, var);
                secrecy::zeroize::Zeroize::zeroize(&mut v);
                k.map(Some)
            }
            (None, Some(path)) => MasterKey::from_file(std::path::Path::new(&path), file_var).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// Read a file holding the base64 key.
    pub fn from_file(path: &std::path::Path, source: &str) -> Result<MasterKey, String> {
        let mut text =
            std::fs::read_to_string(path).map_err(|e| format!("{source}: cannot read {}: {e}", path.display()))?;
        let k = MasterKey::from_base64(&text, &format!("{source} ({})", path.display()));
        secrecy::zeroize::Zeroize::zeroize(&mut text);
        k
    }

    /// A random key (tests, and operators who ask for one).
    pub fn generate() -> MasterKey {
        MasterKey(SecretBox::init_with_mut(|k: &mut [u8; 32]| {
            rand::rngs::OsRng.fill_bytes(k)
        }))
    }

    /// The key as base64, for handing a generated key to the operator once.
    pub fn to_base64(&self) -> SecretString {
        SecretString::from(STANDARD.encode(self.0.expose_secret()))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(Key::from_slice(self.0.expose_secret()))
    }

    /// Seal `plaintext` for the record `aad` with a fresh random nonce.
    pub fn seal(&self, plaintext: &str, aad: &str) -> Result<Sealed, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Seal)?;
        Ok(Sealed {
            alg: ALG.to_string(),
            nonce: STANDARD.encode(nonce),
            ciphertext: STANDARD.encode(ct),
        })
    }

    /// Open a key sealed for the record `aad`. Fails on a wrong key, a different record id,
    /// or any altered byte.
    pub fn open(&self, sealed: &Sealed, aad: &str) -> Result<SecretString, CryptoError> {
        if sealed.alg != ALG {
            return Err(CryptoError::Alg(sealed.alg.clone()));
        }
        let nonce = STANDARD.decode(&sealed.nonce).map_err(|_| CryptoError::Malformed)?;
        if nonce.len() != NONCE_LEN {
            return Err(CryptoError::Malformed);
        }
        let ct = STANDARD
            .decode(&sealed.ciphertext)
            .map_err(|_| CryptoError::Malformed)?;
        let mut plain = self
            .cipher()
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &ct,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Open)?;
        let text = String::from_utf8(std::mem::take(&mut plain)).map_err(|e| {
            let mut b = e.into_bytes();
            secrecy::zeroize::Zeroize::zeroize(&mut b);
            CryptoError::Malformed
        })?;
        Ok(SecretString::from(text))
    }
}

/// A short, non-reconstructable reminder of a key: its scheme prefix (`sk-`, `sk-prism-`)
/// and, for keys long enough that four characters are a small part, the last four.
pub fn hint(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    let prefix: String = if key.starts_with("sk-prism-") {
        "sk-prism-".into()
    } else {
        match key.find('-') {
            Some(i) if (1..=4).contains(&i) && key.is_char_boundary(i + 1) => key[..=i].to_string(),
            _ => String::new(),
        }
    };
    let tail: String = if chars.len() >= prefix.chars().count() + 16 {
        chars[chars.len() - 4..].iter().collect()
    } else {
        String::new()
    };
    format!("{prefix}...{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_fresh_nonces() {
        let k = MasterKey::generate();
        let a = k.seal("sk-secret-value-1234", "oc_1").unwrap();
        let b = k.seal("sk-secret-value-1234", "oc_1").unwrap();
        assert_ne!(a.nonce, b.nonce, "a nonce is never reused");
        assert_ne!(a.ciphertext, b.ciphertext);
        assert!(!a.ciphertext.contains("secret"));
        assert_eq!(k.open(&a, "oc_1").unwrap().expose_secret(), "sk-secret-value-1234");
    }

    #[test]
    fn wrong_aad_key_or_bytes_fail() {
        let k = MasterKey::generate();
        let s = k.seal("sk-abc", "oc_1").unwrap();
        assert_eq!(k.open(&s, "oc_2").unwrap_err(), CryptoError::Open);
        assert_eq!(MasterKey::generate().open(&s, "oc_1").unwrap_err(), CryptoError::Open);
        let mut ct = STANDARD.decode(&s.ciphertext).unwrap();
        ct[0] ^= 1;
        let tampered = Sealed {
            ciphertext: STANDARD.encode(ct),
            ..s.clone()
        };
        assert_eq!(k.open(&tampered, "oc_1").unwrap_err(), CryptoError::Open);
        let other = Sealed {
            alg: "rot13".into(),
            ..s
        };
        assert!(matches!(k.open(&other, "oc_1"), Err(CryptoError::Alg(_))));
    }

    #[test]
    fn master_key_parsing() {
        let b64 = STANDARD.encode([7u8; 32]);
        let env = |v: &'static str| move |name: &str| (name == v).then(|| b64.clone());
        assert!(MasterKey::from_env(&env("PRISM_MASTER_KEY")).unwrap().is_some());
        assert!(MasterKey::from_env(&|_| None).unwrap().is_none());
        let short = STANDARD.encode([7u8; 16]);
        let e = MasterKey::from_env(&|n: &str| (n == "PRISM_MASTER_KEY").then(|| short.clone())).unwrap_err();
        assert!(e.contains("32 bytes, got 16"), "{e}");
        assert!(!e.contains(&short));
        let e = MasterKey::from_env(&|n: &str| (n == "PRISM_MASTER_KEY").then(|| "not base64!".into())).unwrap_err();
        assert!(e.contains("not valid base64"));
        let e = MasterKey::from_env(&|_: &str| Some("x".into())).unwrap_err();
        assert!(e.contains("only one"));
        let dir = std::env::temp_dir().join(format!("prism-mk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("key");
        std::fs::write(&f, format!("{}\n", STANDARD.encode([9u8; 32]))).unwrap();
        let path = f.display().to_string();
        let k = MasterKey::from_env(&|n: &str| (n == "PRISM_MASTER_KEY_FILE").then(|| path.clone()))
            .unwrap()
            .unwrap();
        assert_eq!(k.to_base64().expose_secret(), &STANDARD.encode([9u8; 32]));
        assert!(!format!("{k:?}").contains(&STANDARD.encode([9u8; 32])));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn hints_are_short() {
        assert_eq!(hint("sk-abcdefghijklmnopqrstuvwxyz"), "sk-...wxyz");
        assert_eq!(hint("sk-prism-abcdefghijklmnopqrstuvwxyz0123"), "sk-prism-...0123");
        assert_eq!(hint("sk-short"), "sk-...");
        assert_eq!(hint("AIzaSyAbcdefghijklmnopqrstuv"), "...stuv");
        assert_eq!(hint("k"), "...");
        assert_eq!(hint("sk-ant-api03-abcdefghijklmnop"), "sk-...mnop");
    }
}

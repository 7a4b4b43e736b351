//! Virtual API keys: `sk-px-<id>-<secret>`. The id is public (the lookup key and what admins
//! see); the secret is 40 base62 characters (about 238 bits). Only a SHA-256 of the whole key
//! is stored: keys are high-entropy, so a fast hash is safe and keeps the request path cheap.

use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const PREFIX: &str = "sk-px-";
const ID_LEN: usize = 12;
const SECRET_LEN: usize = 40;
const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A freshly generated key: the plaintext is shown once, then only `id` and `hash` remain.
pub struct GeneratedKey {
    pub id: String,
    pub key: SecretString,
    pub hash: String,
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("id", &self.id)
            .field("key", &"[redacted]")
            .finish()
    }
}

fn random_string(rng: &mut impl Rng, len: usize) -> String {
    (0..len)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

pub fn generate() -> GeneratedKey {
    let mut rng = rand::rng();
    let id = random_string(&mut rng, ID_LEN);
    let secret = random_string(&mut rng, SECRET_LEN);
    let key = format!("{PREFIX}{id}-{secret}");
    let hash = hash(&key);
    GeneratedKey {
        id,
        key: SecretString::from(key),
        hash,
    }
}

/// The public id inside a key, if it has the shape of a Plexus key.
pub fn id_of(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('-')?;
    let well_formed = id.len() == ID_LEN
        && secret.len() == SECRET_LEN
        && id
            .bytes()
            .chain(secret.bytes())
            .all(|b| b.is_ascii_alphanumeric());
    well_formed.then_some(id)
}

/// Hex SHA-256 of the key.
pub fn hash(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 0xf)]));
    }
    out
}

/// Constant-time comparison of the presented key's hash with the stored one.
pub fn verify(key: &str, stored_hash: &str) -> bool {
    let presented = hash(key);
    presented.len() == stored_hash.len()
        && bool::from(presented.as_bytes().ct_eq(stored_hash.as_bytes()))
}

/// For logs and listings: the id only, never the secret.
pub fn redact(key: &SecretString) -> String {
    match id_of(key.expose_secret()) {
        Some(id) => format!("{PREFIX}{id}-…"),
        None => "[redacted]".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_verify_and_differ() {
        let a = generate();
        let b = generate();
        let ka = a.key.expose_secret();
        assert_eq!(id_of(ka), Some(a.id.as_str()));
        assert!(verify(ka, &a.hash));
        assert!(!verify(b.key.expose_secret(), &a.hash));
        assert_ne!(a.id, b.id);
        assert_eq!(a.hash.len(), 64);
        assert!(!format!("{a:?}").contains(&ka[PREFIX.len() + ID_LEN + 1..]));
        assert!(!redact(&a.key).contains(&ka[PREFIX.len() + ID_LEN + 1..]));
    }

    #[test]
    fn malformed_keys_have_no_id() {
        let good = generate();
        let k = good.key.expose_secret();
        for bad in [
            "",
            "sk-px-",
            "sk-other-abc",
            &k[..k.len() - 1],
            &format!("{k}x"),
            &k.replace('-', "_"),
            "sk-px-ääääääääääää-0000000000000000000000000000000000000000",
        ] {
            assert_eq!(id_of(bad), None, "{bad}");
        }
        assert!(!verify("x", "short"));
    }
}

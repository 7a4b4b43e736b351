//! Envelope encryption of provider credentials.
//!
//! Every secret (an upstream API key) is sealed under its own random 256-bit data key (DEK)
//! with AES-256-GCM; the DEK is in turn encrypted ("wrapped") with AES-256-GCM under the
//! key-encryption key ([`Kek`]) that the operator supplies in `PLEXUS_ENCRYPTION_KEY` or a key
//! file. Rotating the KEK ([`rewrap`]) therefore re-encrypts 32 bytes per record and never
//! touches the secret's ciphertext.
//!
//! Both encryptions carry associated data binding the record id and version, so a ciphertext
//! copied to another record, replayed under another version, or with any byte changed fails
//! authentication ([`VaultError::Corrupt`]) instead of decrypting to something else. Each
//! record also stores the public [`Kek::kek_id`] it was sealed under, so a wrong KEK is
//! reported as such ([`VaultError::WrongKek`]) before any decryption is attempted.
//!
//! Layout (format v1; changing any of it makes existing records unreadable):
//! - `kek_id` = hex of the first 8 bytes of `SHA-256("plexus-vault-kek-id-v1\0" || kek)`;
//! - `ciphertext` = `nonce (12) || AES-256-GCM(dek, nonce, plaintext, aad("data")) (len + 16)`;
//! - `wrapped_dek` = `nonce (12) || AES-256-GCM(kek, nonce, dek, aad("dek")) (32 + 16)`;
//! - `aad(purpose)` = `"plexus-vault-v1\0" || purpose || "\0" || u64be(len(record_id))
//!   || record_id || u32be(version)`.
//!
//! This module does no I/O beyond reading a key file and the environment.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine as _};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The environment variable holding the base64-encoded KEK.
pub const KEY_ENV: &str = "PLEXUS_ENCRYPTION_KEY";

/// Length in bytes of a KEK and of a DEK (AES-256).
pub const KEY_LEN: usize = 32;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const WRAPPED_DEK_LEN: usize = NONCE_LEN + KEY_LEN + TAG_LEN;

const KEK_ID_DOMAIN: &[u8] = b"plexus-vault-kek-id-v1\0";
const AAD_DOMAIN: &[u8] = b"plexus-vault-v1\0";
const PURPOSE_DATA: &[u8] = b"data";
const PURPOSE_DEK: &[u8] = b"dek";

/// Standard and URL-safe alphabets, padding optional: keys come from `openssl rand -base64 32`,
/// [`Kek::to_base64`], or hand-edited files and environment variables.
const KEY_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const KEY_B64_URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Errors of the vault. None of them carries key material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// Neither `PLEXUS_ENCRYPTION_KEY` nor a key file is configured.
    #[error(
        "no encryption key configured: set {KEY_ENV} (or configure a key file) to a base64-encoded \
         32-byte key, e.g. the output of `openssl rand -base64 32`"
    )]
    MissingKey,
    /// The configured key is not base64 of exactly 32 bytes.
    #[error("invalid encryption key: {0}")]
    InvalidKey(String),
    /// The record was sealed under another KEK than the configured one.
    #[error("the secret was encrypted with KEK {record}, but the configured KEK is {configured}")]
    WrongKek {
        /// The KEK id stored in the record.
        record: String,
        /// The id of the configured KEK.
        configured: String,
    },
    /// Authentication failed: the record was altered, truncated, or belongs to another record
    /// id or version.
    #[error(
        "the sealed secret failed authentication (corrupted, tampered with, or stored under \
         another record id or version)"
    )]
    Corrupt,
    /// The secret is not UTF-8 text.
    #[error("the secret is not UTF-8 text")]
    NotUtf8,
    /// The key file could not be read.
    #[error("cannot read the key file {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    Random,
}

/// The key-encryption key: 32 bytes, wiped from memory on drop, never printed.
pub struct Kek {
    key: Zeroizing<[u8; KEY_LEN]>,
    id: String,
}

impl Kek {
    /// Decodes a base64 key (standard or URL-safe alphabet, padding optional, surrounding
    /// whitespace ignored) that must decode to exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, VaultError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(VaultError::InvalidKey(format!(
                "the key is empty, expected base64 of {KEY_LEN} bytes"
            )));
        }
        // The decoding error is not passed on: it would quote a character of the key.
        let bytes = KEY_B64
            .decode(text)
            .or_else(|_| KEY_B64_URL.decode(text))
            .map(Zeroizing::new)
            .map_err(|_| VaultError::InvalidKey("the key is not valid base64".into()))?;
        Self::from_slice(&bytes)
    }

    /// Reads a key file holding the base64 key (surrounding whitespace ignored).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, VaultError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map(Zeroizing::new)
            .map_err(|source| VaultError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Self::from_base64(&text).map_err(|error| match error {
            VaultError::InvalidKey(reason) => {
                VaultError::InvalidKey(format!("key file {}: {reason}", path.display()))
            }
            other => other,
        })
    }

    /// Reads the key from `PLEXUS_ENCRYPTION_KEY`; [`VaultError::MissingKey`] if it is unset or
    /// empty.
    pub fn from_env() -> Result<Self, VaultError> {
        Self::from_env_value(std::env::var_os(KEY_ENV))
    }

    /// The configured KEK: `PLEXUS_ENCRYPTION_KEY` if set and non-empty (it takes precedence),
    /// else `key_file` if given, else [`VaultError::MissingKey`].
    pub fn load(key_file: Option<&Path>) -> Result<Self, VaultError> {
        Self::load_from(std::env::var_os(KEY_ENV), key_file)
    }

    /// A fresh random key (for `plexus vault` tooling and tests).
    pub fn generate() -> Result<Self, VaultError> {
        let key = random_key()?;
        Ok(Self::from_array(key))
    }

    /// The key in base64 (standard alphabet, padded), for showing a generated key once.
    pub fn to_base64(&self) -> SecretString {
        SecretString::from(STANDARD.encode(&self.key[..]))
    }

    /// The public id of this key (16 hex characters), stored beside every record it seals.
    pub fn kek_id(&self) -> &str {
        &self.id
    }

    fn from_env_value(value: Option<OsString>) -> Result<Self, VaultError> {
        let Some(value) = value else {
            return Err(VaultError::MissingKey);
        };
        let value = value
            .into_string()
            .map(Zeroizing::new)
            .map_err(|_| VaultError::InvalidKey(format!("{KEY_ENV} is not valid Unicode")))?;
        if value.trim().is_empty() {
            return Err(VaultError::MissingKey);
        }
        Self::from_base64(&value).map_err(|error| match error {
            VaultError::InvalidKey(reason) => {
                VaultError::InvalidKey(format!("{KEY_ENV}: {reason}"))
            }
            other => other,
        })
    }

    fn load_from(env: Option<OsString>, key_file: Option<&Path>) -> Result<Self, VaultError> {
        match Self::from_env_value(env) {
            Err(VaultError::MissingKey) => match key_file {
                Some(path) => Self::from_file(path),
                None => Err(VaultError::MissingKey),
            },
            result => result,
        }
    }

    fn from_slice(bytes: &[u8]) -> Result<Self, VaultError> {
        if bytes.len() != KEY_LEN {
            return Err(VaultError::InvalidKey(format!(
                "the key decodes to {} bytes, expected {KEY_LEN} (generate one with \
                 `openssl rand -base64 32`)",
                bytes.len()
            )));
        }
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(bytes);
        Ok(Self::from_array(key))
    }

    fn from_array(key: Zeroizing<[u8; KEY_LEN]>) -> Self {
        let digest = Sha256::new()
            .chain_update(KEK_ID_DOMAIN)
            .chain_update(&key[..])
            .finalize();
        let id = digest
            .iter()
            .take(8)
            .map(|byte| format!("{byte:02x}"))
            .collect();
        Self { key, id }
    }
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A sealed secret as stored: JSON with base64 byte fields, or one column per field.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedSecret {
    /// [`Kek::kek_id`] of the KEK that wrapped the DEK.
    pub kek_id: String,
    /// `nonce || AES-256-GCM(kek, dek) || tag`.
    #[serde(with = "base64_bytes")]
    pub wrapped_dek: Vec<u8>,
    /// `nonce || AES-256-GCM(dek, plaintext) || tag`.
    #[serde(with = "base64_bytes")]
    pub ciphertext: Vec<u8>,
    /// The record version bound into both encryptions.
    pub version: u32,
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedSecret")
            .field("kek_id", &self.kek_id)
            .field("version", &self.version)
            .field(
                "wrapped_dek",
                &format_args!("<{} bytes>", self.wrapped_dek.len()),
            )
            .field(
                "ciphertext",
                &format_args!("<{} bytes>", self.ciphertext.len()),
            )
            .finish()
    }
}

/// Seals a UTF-8 secret for the record `record_id` at `version` under a fresh DEK wrapped by
/// `kek`. Non-UTF-8 input is refused with [`VaultError::NotUtf8`].
pub fn seal(
    kek: &Kek,
    record_id: &str,
    version: u32,
    plaintext: &[u8],
) -> Result<SealedSecret, VaultError> {
    if std::str::from_utf8(plaintext).is_err() {
        return Err(VaultError::NotUtf8);
    }
    let dek = random_key()?;
    let ciphertext = encrypt(&dek[..], &aad(PURPOSE_DATA, record_id, version), plaintext)?;
    let wrapped_dek = wrap_dek(kek, record_id, version, &dek)?;
    Ok(SealedSecret {
        kek_id: kek.id.clone(),
        wrapped_dek,
        ciphertext,
        version,
    })
}

/// Opens a sealed secret of the record `record_id`: [`VaultError::WrongKek`] if it was sealed
/// under another KEK, [`VaultError::Corrupt`] if anything fails authentication.
pub fn open(kek: &Kek, record_id: &str, sealed: &SealedSecret) -> Result<SecretString, VaultError> {
    check_kek(kek, sealed)?;
    let dek = unwrap_dek(kek, record_id, sealed)?;
    let plaintext = decrypt(
        &dek[..],
        &aad(PURPOSE_DATA, record_id, sealed.version),
        &sealed.ciphertext,
    )?;
    let text = std::str::from_utf8(&plaintext).map_err(|_| VaultError::NotUtf8)?;
    // `String::from(&str)` allocates exactly `len` bytes, so the conversion to the boxed secret
    // does not reallocate and leave an unwiped copy behind.
    Ok(SecretString::from(text))
}

/// Re-wraps the DEK of a record under `new` (the ciphertext stays as it is), for KEK rotation.
///
/// A record already under `new` is authenticated and returned unchanged, so an interrupted
/// rotation can simply be run again. Otherwise the record must be under `old`
/// ([`VaultError::WrongKek`] names `old` as the configured KEK) and must authenticate fully
/// before it is re-wrapped, so a corrupt record is reported rather than carried along.
pub fn rewrap(
    old: &Kek,
    new: &Kek,
    record_id: &str,
    sealed: &SealedSecret,
) -> Result<SealedSecret, VaultError> {
    if sealed.kek_id == new.id {
        authenticate(new, record_id, sealed)?;
        return Ok(sealed.clone());
    }
    check_kek(old, sealed)?;
    let dek = authenticate(old, record_id, sealed)?;
    let wrapped_dek = wrap_dek(new, record_id, sealed.version, &dek)?;
    Ok(SealedSecret {
        kek_id: new.id.clone(),
        wrapped_dek,
        ciphertext: sealed.ciphertext.clone(),
        version: sealed.version,
    })
}

/// What the API shows of a secret: the first 3 and last 4 characters (`sk-...abcd`), or
/// `****` for secrets shorter than 12 characters. Never more than 7 characters of the secret.
pub fn mask(secret: &str) -> String {
    let count = secret.chars().count();
    if count < 12 {
        return "****".to_owned();
    }
    let head: String = secret.chars().take(3).collect();
    let tail: String = secret.chars().skip(count.saturating_sub(4)).collect();
    format!("{head}...{tail}")
}

fn check_kek(kek: &Kek, sealed: &SealedSecret) -> Result<(), VaultError> {
    if sealed.kek_id == kek.id {
        Ok(())
    } else {
        Err(VaultError::WrongKek {
            record: sealed.kek_id.clone(),
            configured: kek.id.clone(),
        })
    }
}

/// Unwraps the DEK and authenticates the ciphertext (the plaintext is wiped at once).
fn authenticate(
    kek: &Kek,
    record_id: &str,
    sealed: &SealedSecret,
) -> Result<Zeroizing<[u8; KEY_LEN]>, VaultError> {
    let dek = unwrap_dek(kek, record_id, sealed)?;
    decrypt(
        &dek[..],
        &aad(PURPOSE_DATA, record_id, sealed.version),
        &sealed.ciphertext,
    )?;
    Ok(dek)
}

fn wrap_dek(
    kek: &Kek,
    record_id: &str,
    version: u32,
    dek: &[u8; KEY_LEN],
) -> Result<Vec<u8>, VaultError> {
    encrypt(
        &kek.key[..],
        &aad(PURPOSE_DEK, record_id, version),
        &dek[..],
    )
}

fn unwrap_dek(
    kek: &Kek,
    record_id: &str,
    sealed: &SealedSecret,
) -> Result<Zeroizing<[u8; KEY_LEN]>, VaultError> {
    if sealed.wrapped_dek.len() != WRAPPED_DEK_LEN {
        return Err(VaultError::Corrupt);
    }
    let bytes = decrypt(
        &kek.key[..],
        &aad(PURPOSE_DEK, record_id, sealed.version),
        &sealed.wrapped_dek,
    )?;
    if bytes.len() != KEY_LEN {
        return Err(VaultError::Corrupt);
    }
    let mut dek = Zeroizing::new([0u8; KEY_LEN]);
    dek.copy_from_slice(&bytes);
    Ok(dek)
}

/// The associated data: domain, purpose, length-prefixed record id, version.
fn aad(purpose: &[u8], record_id: &str, version: u32) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_DOMAIN.len() + purpose.len() + 13 + record_id.len());
    aad.extend_from_slice(AAD_DOMAIN);
    aad.extend_from_slice(purpose);
    aad.push(0);
    aad.extend_from_slice(&(record_id.len() as u64).to_be_bytes());
    aad.extend_from_slice(record_id.as_bytes());
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

/// `nonce || AES-256-GCM(key, nonce, msg, aad)` with a random nonce.
fn encrypt(key: &[u8], aad: &[u8], msg: &[u8]) -> Result<Vec<u8>, VaultError> {
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| VaultError::Corrupt)?;
    let mut nonce = [0u8; NONCE_LEN];
    OsRng
        .try_fill_bytes(&mut nonce)
        .map_err(|_| VaultError::Random)?;
    // Encryption fails only beyond GCM's 64 GiB message limit.
    let sealed = cipher
        .encrypt(&Nonce::from(nonce), Payload { msg, aad })
        .map_err(|_| VaultError::Corrupt)?;
    let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Inverse of [`encrypt`]; the plaintext is wiped when dropped.
fn decrypt(key: &[u8], aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(VaultError::Corrupt);
    }
    let (nonce, msg) = sealed.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| VaultError::Corrupt)?;
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| VaultError::Corrupt)?;
    cipher
        .decrypt(&Nonce::from(nonce), Payload { msg, aad })
        .map(Zeroizing::new)
        .map_err(|_| VaultError::Corrupt)
}

fn random_key() -> Result<Zeroizing<[u8; KEY_LEN]>, VaultError> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    OsRng
        .try_fill_bytes(&mut key[..])
        .map_err(|_| VaultError::Random)?;
    Ok(key)
}

/// Serde of byte fields as standard padded base64 strings.
mod base64_bytes {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(|_| D::Error::custom("invalid base64"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    use secrecy::ExposeSecret;

    const SECRET: &str = "sk-proj-0123456789abcdefghijklmnopqrstuvwxyz";

    fn kek() -> Kek {
        Kek::generate().unwrap()
    }

    fn fixed_kek() -> Kek {
        let bytes: Vec<u8> = (0u8..32).collect();
        Kek::from_slice(&bytes).unwrap()
    }

    fn assert_corrupt(result: Result<SecretString, VaultError>) {
        match result {
            Err(VaultError::Corrupt) => {}
            Err(other) => panic!("expected Corrupt, got {other:?}"),
            Ok(_) => panic!("expected Corrupt, got a plaintext"),
        }
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack
            .windows(needle.len())
            .any(|window| window == needle)
    }

    #[test]
    fn round_trip() {
        let kek = kek();
        let sealed = seal(&kek, "cred_1", 1, SECRET.as_bytes()).unwrap();
        assert_eq!(sealed.kek_id, kek.kek_id());
        assert_eq!(sealed.version, 1);
        assert_eq!(sealed.wrapped_dek.len(), WRAPPED_DEK_LEN);
        assert_eq!(sealed.ciphertext.len(), NONCE_LEN + SECRET.len() + TAG_LEN);
        let opened = open(&kek, "cred_1", &sealed).unwrap();
        assert_eq!(opened.expose_secret(), SECRET);
    }

    #[test]
    fn round_trip_through_json_and_edge_plaintexts() {
        let kek = kek();
        for plaintext in ["", "x", "ключ-🔑-秘密", &"a".repeat(10_000)] {
            let sealed = seal(&kek, "", u32::MAX, plaintext.as_bytes()).unwrap();
            let json = serde_json::to_string(&sealed).unwrap();
            let back: SealedSecret = serde_json::from_str(&json).unwrap();
            assert_eq!(back, sealed);
            assert_eq!(open(&kek, "", &back).unwrap().expose_secret(), plaintext);
        }
    }

    #[test]
    fn sealing_twice_uses_fresh_keys_and_nonces() {
        let kek = kek();
        let a = seal(&kek, "cred_1", 1, SECRET.as_bytes()).unwrap();
        let b = seal(&kek, "cred_1", 1, SECRET.as_bytes()).unwrap();
        assert_ne!(a.ciphertext, b.ciphertext);
        assert_ne!(a.wrapped_dek, b.wrapped_dek);
        assert_ne!(a.ciphertext[..NONCE_LEN], b.ciphertext[..NONCE_LEN]);
    }

    #[test]
    fn different_record_id_or_version_is_corrupt() {
        let kek = kek();
        let sealed = seal(&kek, "cred_1", 7, SECRET.as_bytes()).unwrap();
        assert_corrupt(open(&kek, "cred_2", &sealed));
        assert_corrupt(open(&kek, "cred_", &sealed));
        assert_corrupt(open(&kek, "cred_1\0", &sealed));
        let mut other_version = sealed.clone();
        other_version.version = 8;
        assert_corrupt(open(&kek, "cred_1", &other_version));
        other_version.version = 6;
        assert_corrupt(open(&kek, "cred_1", &other_version));
    }

    #[test]
    fn any_flipped_bit_is_corrupt() {
        let kek = kek();
        let sealed = seal(&kek, "cred_1", 1, b"sk-short-secret").unwrap();
        for index in 0..sealed.ciphertext.len() {
            for bit in [0x01u8, 0x80] {
                let mut tampered = sealed.clone();
                tampered.ciphertext[index] ^= bit;
                assert_corrupt(open(&kek, "cred_1", &tampered));
            }
        }
        for index in 0..sealed.wrapped_dek.len() {
            for bit in [0x01u8, 0x80] {
                let mut tampered = sealed.clone();
                tampered.wrapped_dek[index] ^= bit;
                assert_corrupt(open(&kek, "cred_1", &tampered));
            }
        }
    }

    #[test]
    fn truncated_extended_or_empty_bytes_are_corrupt() {
        let kek = kek();
        let sealed = seal(&kek, "cred_1", 1, SECRET.as_bytes()).unwrap();
        let mutations: [fn(&mut SealedSecret); 6] = [
            |s| s.ciphertext.clear(),
            |s| s.ciphertext.truncate(NONCE_LEN + TAG_LEN - 1),
            |s| s.ciphertext.push(0),
            |s| s.wrapped_dek.clear(),
            |s| s.wrapped_dek.truncate(WRAPPED_DEK_LEN - 1),
            |s| s.wrapped_dek.push(0),
        ];
        for mutate in mutations {
            let mut tampered = sealed.clone();
            mutate(&mut tampered);
            assert_corrupt(open(&kek, "cred_1", &tampered));
        }
    }

    #[test]
    fn swapped_parts_between_records_are_corrupt() {
        let kek = kek();
        let a = seal(&kek, "cred_a", 1, b"sk-secret-of-record-a").unwrap();
        let b = seal(&kek, "cred_b", 1, b"sk-secret-of-record-b").unwrap();
        // Whole records swapped.
        assert_corrupt(open(&kek, "cred_a", &b));
        assert_corrupt(open(&kek, "cred_b", &a));
        // Ciphertexts swapped.
        let mut a_with_b = a.clone();
        a_with_b.ciphertext = b.ciphertext.clone();
        assert_corrupt(open(&kek, "cred_a", &a_with_b));
        let mut b_with_a = b.clone();
        b_with_a.ciphertext = a.ciphertext.clone();
        assert_corrupt(open(&kek, "cred_b", &b_with_a));
        // Wrapped DEKs swapped.
        let mut a_with_b_dek = a.clone();
        a_with_b_dek.wrapped_dek = b.wrapped_dek.clone();
        assert_corrupt(open(&kek, "cred_a", &a_with_b_dek));
        // Same record id, two versions: the ciphertext of one is useless in the other.
        let v1 = seal(&kek, "cred_a", 1, b"sk-version-one-secret").unwrap();
        let v2 = seal(&kek, "cred_a", 2, b"sk-version-two-secret").unwrap();
        let mut mixed = v2.clone();
        mixed.ciphertext = v1.ciphertext.clone();
        assert_corrupt(open(&kek, "cred_a", &mixed));
    }

    #[test]
    fn wrong_kek_is_reported_before_decrypting() {
        let right = kek();
        let wrong = kek();
        let sealed = seal(&right, "cred_1", 1, SECRET.as_bytes()).unwrap();
        match open(&wrong, "cred_1", &sealed) {
            Err(VaultError::WrongKek { record, configured }) => {
                assert_eq!(record, right.kek_id());
                assert_eq!(configured, wrong.kek_id());
            }
            Err(other) => panic!("expected WrongKek, got {other:?}"),
            Ok(_) => panic!("expected WrongKek, got a plaintext"),
        }
        let message = open(&wrong, "cred_1", &sealed).unwrap_err().to_string();
        assert!(message.contains(right.kek_id()), "{message}");
        assert!(message.contains(wrong.kek_id()), "{message}");
        // A record claiming the wrong KEK's id still does not open under it.
        let mut relabelled = sealed.clone();
        relabelled.kek_id = wrong.kek_id().to_owned();
        assert_corrupt(open(&wrong, "cred_1", &relabelled));
    }

    #[test]
    fn rewrap_moves_the_record_to_the_new_kek() {
        let old = kek();
        let new = kek();
        let sealed = seal(&old, "cred_1", 3, SECRET.as_bytes()).unwrap();
        let rewrapped = rewrap(&old, &new, "cred_1", &sealed).unwrap();
        assert_eq!(rewrapped.kek_id, new.kek_id());
        assert_eq!(rewrapped.version, 3);
        assert_eq!(rewrapped.ciphertext, sealed.ciphertext);
        assert_ne!(rewrapped.wrapped_dek, sealed.wrapped_dek);
        assert_eq!(
            open(&new, "cred_1", &rewrapped).unwrap().expose_secret(),
            SECRET
        );
        assert!(matches!(
            open(&old, "cred_1", &rewrapped),
            Err(VaultError::WrongKek { .. })
        ));
    }

    #[test]
    fn rewrap_is_idempotent() {
        let old = kek();
        let new = kek();
        let sealed = seal(&old, "cred_1", 1, SECRET.as_bytes()).unwrap();
        let once = rewrap(&old, &new, "cred_1", &sealed).unwrap();
        let twice = rewrap(&old, &new, "cred_1", &once).unwrap();
        assert_eq!(once, twice);
        // Same KEK on both sides: nothing to do.
        assert_eq!(rewrap(&old, &old, "cred_1", &sealed).unwrap(), sealed);
    }

    #[test]
    fn rewrap_refuses_foreign_or_corrupt_records() {
        let old = kek();
        let new = kek();
        let other = kek();
        let foreign = seal(&other, "cred_1", 1, SECRET.as_bytes()).unwrap();
        match rewrap(&old, &new, "cred_1", &foreign) {
            Err(VaultError::WrongKek { record, configured }) => {
                assert_eq!(record, other.kek_id());
                assert_eq!(configured, old.kek_id());
            }
            other => panic!("expected WrongKek, got {other:?}"),
        }
        let sealed = seal(&old, "cred_1", 1, SECRET.as_bytes()).unwrap();
        let mut corrupt = sealed.clone();
        corrupt.ciphertext[NONCE_LEN] ^= 1;
        assert!(matches!(
            rewrap(&old, &new, "cred_1", &corrupt),
            Err(VaultError::Corrupt)
        ));
        assert!(matches!(
            rewrap(&old, &new, "cred_2", &sealed),
            Err(VaultError::Corrupt)
        ));
        // Already under the new KEK but damaged: reported, not passed through.
        let mut moved = rewrap(&old, &new, "cred_1", &sealed).unwrap();
        moved.ciphertext[NONCE_LEN] ^= 1;
        assert!(matches!(
            rewrap(&old, &new, "cred_1", &moved),
            Err(VaultError::Corrupt)
        ));
    }

    #[test]
    fn sealed_json_never_contains_the_plaintext() {
        let kek = kek();
        let sealed = seal(&kek, "cred_1", 1, SECRET.as_bytes()).unwrap();
        let json = serde_json::to_string(&sealed).unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            value.as_object().map(|o| {
                let mut keys: Vec<&str> = o.keys().map(String::as_str).collect();
                keys.sort_unstable();
                keys
            }),
            Some(vec!["ciphertext", "kek_id", "version", "wrapped_dek"])
        );
        let plain = SECRET.as_bytes();
        for encoded in [
            SECRET.to_owned(),
            STANDARD.encode(plain),
            STANDARD_NO_PAD.encode(plain),
            URL_SAFE.encode(plain),
            URL_SAFE_NO_PAD.encode(plain),
            plain.iter().map(|b| format!("{b:02x}")).collect(),
        ] {
            assert!(!json.contains(&encoded), "{json}");
        }
        // Base64 of any 6-byte chunk of the plaintext (at every alignment) is absent too.
        for window in plain.windows(6) {
            let encoded = STANDARD_NO_PAD.encode(window);
            assert!(!json.contains(&encoded), "{json}");
        }
        assert!(!json.contains("sk-proj"), "{json}");
        // And the decoded byte fields do not contain it.
        assert!(!contains(&sealed.ciphertext, plain));
        assert!(!contains(&sealed.ciphertext, &plain[..8]));
        assert!(!contains(&sealed.wrapped_dek, &plain[..8]));
    }

    #[test]
    fn deserialization_rejects_bad_base64_and_unknown_fields() {
        let bad_b64 = r#"{"kek_id":"00","wrapped_dek":"!!","ciphertext":"","version":1}"#;
        assert!(serde_json::from_str::<SealedSecret>(bad_b64).is_err());
        let extra = r#"{"kek_id":"00","wrapped_dek":"","ciphertext":"","version":1,"alg":"x"}"#;
        assert!(serde_json::from_str::<SealedSecret>(extra).is_err());
    }

    #[test]
    fn opens_a_record_sealed_by_an_independent_implementation() {
        // Produced with Python `cryptography` (AESGCM) from the layout in the module docs,
        // with KEK bytes 0..32, DEK 0x42 * 32 and fixed nonces. Pins the format v1.
        let json = r#"{"kek_id": "a9654445ccdccfea", "wrapped_dek": "DA0ODxAREhMUFRYX2rwrmj00vhF1aAqX08lkpRdBr6y0P3no2eC4oqbigrjE6mSHWkMcIgP5g7vTd4Wh", "ciphertext": "AAECAwQFBgcICQoLdrW8rcNDmCbtfzB7vrN2VlP5q0eQeNDaJ6wWEKIt3J033+zE1VSb8pyqTdWnGpRCAQbGJg==", "version": 3}"#;
        let sealed: SealedSecret = serde_json::from_str(json).unwrap();
        let kek = fixed_kek();
        assert_eq!(
            open(&kek, "cred_openai_prod", &sealed)
                .unwrap()
                .expose_secret(),
            "sk-proj-python-made-0123456789abcdef"
        );
        assert_corrupt(open(&kek, "cred_openai_prod2", &sealed));
    }

    #[test]
    fn non_utf8_is_refused() {
        let kek = kek();
        assert!(matches!(
            seal(&kek, "cred_1", 1, &[0xff, 0xfe, 0x00]),
            Err(VaultError::NotUtf8)
        ));
        // A record holding non-UTF-8 bytes (sealed by hand, past `seal`'s check).
        let dek = random_key().unwrap();
        let sealed = SealedSecret {
            kek_id: kek.kek_id().to_owned(),
            wrapped_dek: wrap_dek(&kek, "cred_1", 1, &dek).unwrap(),
            ciphertext: encrypt(&dek[..], &aad(PURPOSE_DATA, "cred_1", 1), &[0xc3, 0x28]).unwrap(),
            version: 1,
        };
        assert!(matches!(
            open(&kek, "cred_1", &sealed),
            Err(VaultError::NotUtf8)
        ));
    }

    #[test]
    fn kek_id_is_stable_and_short() {
        // Pinned: ids are stored beside every record, so the derivation must never change.
        assert_eq!(fixed_kek().kek_id(), "a9654445ccdccfea");
        let a5 = Kek::from_base64("paWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaU=").unwrap();
        assert_eq!(a5.kek_id(), "a6aaae66a82827fd");
        let generated = kek();
        assert_eq!(generated.kek_id().len(), 16);
        assert!(generated.kek_id().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(generated.kek_id(), kek().kek_id());
    }

    #[test]
    fn kek_base64_round_trip() {
        let kek = kek();
        let text = kek.to_base64();
        let again = Kek::from_base64(text.expose_secret()).unwrap();
        assert_eq!(again.kek_id(), kek.kek_id());
        assert_eq!(*again.key, *kek.key);
        // Surrounding whitespace, missing padding and the URL-safe alphabet are accepted.
        let padded = format!("  {}\n", text.expose_secret());
        assert_eq!(Kek::from_base64(&padded).unwrap().kek_id(), kek.kek_id());
        let unpadded = STANDARD_NO_PAD.encode(&kek.key[..]);
        assert_eq!(Kek::from_base64(&unpadded).unwrap().kek_id(), kek.kek_id());
        let url = URL_SAFE.encode(&kek.key[..]);
        assert_eq!(Kek::from_base64(&url).unwrap().kek_id(), kek.kek_id());
    }

    #[test]
    fn kek_from_base64_rejects_bad_input() {
        for length in [0usize, 1, 16, 31, 33, 64] {
            let text = STANDARD.encode(vec![7u8; length]);
            match Kek::from_base64(&text) {
                Err(VaultError::InvalidKey(reason)) => {
                    assert!(reason.contains("32"), "{reason}");
                }
                other => panic!("length {length}: expected InvalidKey, got {other:?}"),
            }
        }
        for text in [
            "",
            "   ",
            "not base64 at all!",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=AAAA*",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=====",
            "AAECAwQFBgcICQoLDA0ODxAR EhMUFRYXGBkaGxwdHh8=",
        ] {
            assert!(
                matches!(Kek::from_base64(text), Err(VaultError::InvalidKey(_))),
                "{text:?}"
            );
        }
        // The error does not echo the key.
        let message = Kek::from_base64("secret-key-material!")
            .unwrap_err()
            .to_string();
        assert!(!message.contains("secret-key-material"), "{message}");
    }

    #[test]
    fn kek_from_file() {
        let dir = tempfile::tempdir().unwrap();
        let kek = kek();
        let path = dir.path().join("kek");
        std::fs::write(
            &path,
            format!("\n  {}  \n\n", kek.to_base64().expose_secret()),
        )
        .unwrap();
        assert_eq!(Kek::from_file(&path).unwrap().kek_id(), kek.kek_id());

        let bad = dir.path().join("bad");
        std::fs::write(&bad, STANDARD.encode([1u8; 16])).unwrap();
        match Kek::from_file(&bad) {
            Err(VaultError::InvalidKey(reason)) => assert!(reason.contains("bad"), "{reason}"),
            other => panic!("expected InvalidKey, got {other:?}"),
        }
        let missing = dir.path().join("missing");
        match Kek::from_file(&missing) {
            Err(error @ VaultError::Io { .. }) => {
                assert!(error.to_string().contains("missing"), "{error}");
            }
            other => panic!("expected Io, got {other:?}"),
        }
    }

    #[test]
    fn kek_from_env_value_and_load() {
        let kek = kek();
        let text = OsString::from(kek.to_base64().expose_secret());
        assert_eq!(
            Kek::from_env_value(Some(text.clone())).unwrap().kek_id(),
            kek.kek_id()
        );
        assert!(matches!(
            Kek::from_env_value(None),
            Err(VaultError::MissingKey)
        ));
        assert!(matches!(
            Kek::from_env_value(Some(OsString::from(" "))),
            Err(VaultError::MissingKey)
        ));
        match Kek::from_env_value(Some(OsString::from("c2hvcnQ="))) {
            Err(VaultError::InvalidKey(reason)) => assert!(reason.contains(KEY_ENV), "{reason}"),
            other => panic!("expected InvalidKey, got {other:?}"),
        }

        let dir = tempfile::tempdir().unwrap();
        let file_kek = Kek::generate().unwrap();
        let path = dir.path().join("kek");
        std::fs::write(&path, file_kek.to_base64().expose_secret()).unwrap();
        // The environment takes precedence over the key file.
        assert_eq!(
            Kek::load_from(Some(text), Some(&path)).unwrap().kek_id(),
            kek.kek_id()
        );
        assert_eq!(
            Kek::load_from(None, Some(&path)).unwrap().kek_id(),
            file_kek.kek_id()
        );
        assert_eq!(
            Kek::load_from(Some(OsString::new()), Some(&path))
                .unwrap()
                .kek_id(),
            file_kek.kek_id()
        );
        assert!(matches!(
            Kek::load_from(None, None),
            Err(VaultError::MissingKey)
        ));
        assert!(VaultError::MissingKey.to_string().contains(KEY_ENV));
    }

    #[test]
    fn mask_shows_at_most_seven_characters() {
        assert_eq!(mask("sk-proj-abcdefgh1234"), "sk-...1234");
        assert_eq!(mask("sk-abcdefghijklmnop"), "sk-...mnop");
        assert_eq!(mask("123456789012"), "123...9012");
        assert_eq!(mask("12345678901"), "****");
        assert_eq!(mask(""), "****");
        assert_eq!(mask("short"), "****");
        // Multi-byte characters are counted and cut as characters, never mid-UTF-8.
        assert_eq!(mask("ключключключключ"), "клю...ключ");
        assert_eq!(mask("🔑🔑🔑🔑🔑🔑🔑🔑🔑🔑🔑"), "****");
        assert_eq!(mask("🔑🔒🔓🔐🔏🗝🔑🔒🔓🔐🔏🗝"), "🔑🔒🔓...🔓🔐🔏🗝");
        let long = "é".repeat(1000) + "z";
        for secret in [
            "sk-proj-abcdefgh1234",
            "123456789012",
            "ключключключключ",
            long.as_str(),
            "a\u{0301}b\u{0301}c\u{0301}d\u{0301}e\u{0301}f\u{0301}",
        ] {
            let masked = mask(secret);
            let visible = masked.chars().count() - "...".len();
            assert!(visible <= 7, "{secret:?} -> {masked:?}");
            assert!(masked.ends_with(
                &secret
                    .chars()
                    .skip(secret.chars().count() - 4)
                    .collect::<String>()
            ));
        }
        for length in 0..40 {
            let secret: String = std::iter::repeat_n('x', length).collect();
            let masked = mask(&secret);
            assert!(
                masked.chars().filter(|c| *c == 'x').count() <= 7,
                "{masked}"
            );
        }
    }

    #[test]
    fn debug_output_reveals_no_key_material() {
        let kek = fixed_kek();
        let debug = format!("{kek:?}");
        assert_eq!(debug, "Kek { id: \"a9654445ccdccfea\", .. }");
        let alternate = format!("{kek:#?}");
        for needle in [
            kek.to_base64().expose_secret().to_owned(),
            format!("{:?}", &kek.key[..]),
            "AAECAwQF".to_owned(),
            "000102".to_owned(),
            "[0, 1, 2".to_owned(),
        ] {
            assert!(!debug.contains(&needle), "{debug}");
            assert!(!alternate.contains(&needle), "{alternate}");
        }

        let sealed = seal(&kek, "cred_1", 2, SECRET.as_bytes()).unwrap();
        let debug = format!("{sealed:?}");
        assert!(debug.contains("a9654445ccdccfea"), "{debug}");
        assert!(debug.contains("<60 bytes>"), "{debug}");
        for needle in [
            STANDARD.encode(&sealed.wrapped_dek),
            STANDARD.encode(&sealed.ciphertext),
            format!("{:?}", &sealed.wrapped_dek[..4]),
            format!("{:?}", &sealed.ciphertext[..4]),
            SECRET.to_owned(),
        ] {
            assert!(!debug.contains(&needle), "{debug}");
        }
        let error = open(&Kek::generate().unwrap(), "cred_1", &sealed).unwrap_err();
        assert!(!format!("{error:?}").contains(SECRET));
    }
}

//! JWT bearer tokens from an external identity provider, as an alternative to API keys.
//!
//! A [`JwtValidator`] holds the provider's public keys (a JWKS document, RFC 7517) and checks a
//! compact JWS token (RFC 7515/7519): size, header, algorithm, key, signature, then the claims
//! `exp`, `nbf`, `iss` and `aud`, and finally maps the configured claims to a [`JwtIdentity`].
//!
//! Security rules, in the order they are applied:
//!
//! * a token longer than [`MAX_TOKEN_BYTES`] is refused before anything is decoded;
//! * only asymmetric algorithms exist in [`JwtAlgorithm`]: `none` and `HS*` can be neither
//!   configured nor accepted (an HMAC "verified" with a public key is the classic forgery);
//! * the key must fit the token's algorithm (key type, curve, and the JWK's own `alg` when
//!   it has one); a token without `kid` is accepted only when exactly one key fits;
//! * the payload is parsed only after the signature has been verified, so claim errors
//!   (expired, wrong audience, ...) are reported for authentic tokens only;
//! * a header with `crit` is refused (no extension is understood).
//!
//! Keys come from a JWKS JSON text ([`JwtValidator::from_jwks_json`], or a file with
//! [`JwtValidator::from_jwks_file`]); [`JwtValidator::refresh`] swaps them atomically (readers
//! never block and never see a half-built set; a refresh that fails keeps the old keys).
//! Keys the validator cannot use (encryption keys, symmetric `oct` keys, unknown curves, RSA
//! moduli outside 2048..=4096 bits, invalid points) are skipped and listed in
//! [`JwksSummary::skipped`]; a document with no usable key is an error.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine as _};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Tokens longer than this are refused with [`JwtError::TooLarge`] before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// JWKS documents longer than this are refused with [`JwtError::InvalidJwks`].
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Largest accepted `leeway_secs`: more than an hour of clock skew is a broken clock.
pub const MAX_LEEWAY_SECS: u64 = 3600;

/// The role names a role claim given as an array is searched for (see [`JwtIdentity::role`]).
pub const KNOWN_ROLES: [&str; 4] = ["admin", "team_admin", "member", "viewer"];

/// RSA moduli outside this range (in bits) are skipped when a JWKS is loaded.
const RSA_MIN_BITS: usize = 2048;
const RSA_MAX_BITS: usize = 4096;

/// Untrusted strings quoted in error messages are cut to this many characters.
const QUOTE_MAX_CHARS: usize = 64;

/// base64url for JWK members: RFC 7518 says unpadded, some providers pad anyway.
const JWK_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// A signature algorithm a token may use. Only asymmetric algorithms exist here, so `none`
/// and `HS256`/`HS384`/`HS512` are rejected by the configuration parser and by the validator.
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum JwtAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// Ed25519.
    EdDSA,
}

impl JwtAlgorithm {
    /// Every supported algorithm (the default of [`JwtConfig::algorithms`]).
    pub const ALL: [JwtAlgorithm; 9] = [
        JwtAlgorithm::RS256,
        JwtAlgorithm::RS384,
        JwtAlgorithm::RS512,
        JwtAlgorithm::PS256,
        JwtAlgorithm::PS384,
        JwtAlgorithm::PS512,
        JwtAlgorithm::ES256,
        JwtAlgorithm::ES384,
        JwtAlgorithm::EdDSA,
    ];

    /// The JOSE name (`"RS256"`, `"EdDSA"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            JwtAlgorithm::RS256 => "RS256",
            JwtAlgorithm::RS384 => "RS384",
            JwtAlgorithm::RS512 => "RS512",
            JwtAlgorithm::PS256 => "PS256",
            JwtAlgorithm::PS384 => "PS384",
            JwtAlgorithm::PS512 => "PS512",
            JwtAlgorithm::ES256 => "ES256",
            JwtAlgorithm::ES384 => "ES384",
            JwtAlgorithm::EdDSA => "EdDSA",
        }
    }

    /// The algorithm of a JOSE name; `None` for `none`, `HS*` and anything unknown.
    pub fn from_name(name: &str) -> Option<Self> {
        JwtAlgorithm::ALL
            .into_iter()
            .find(|alg| alg.as_str() == name)
    }

    fn to_jsonwebtoken(self) -> Algorithm {
        match self {
            JwtAlgorithm::RS256 => Algorithm::RS256,
            JwtAlgorithm::RS384 => Algorithm::RS384,
            JwtAlgorithm::RS512 => Algorithm::RS512,
            JwtAlgorithm::PS256 => Algorithm::PS256,
            JwtAlgorithm::PS384 => Algorithm::PS384,
            JwtAlgorithm::PS512 => Algorithm::PS512,
            JwtAlgorithm::ES256 => Algorithm::ES256,
            JwtAlgorithm::ES384 => Algorithm::ES384,
            JwtAlgorithm::EdDSA => Algorithm::EdDSA,
        }
    }
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which claims carry the user, the team and the role.
///
/// A name is a top-level claim name (`"email"`, `"https://example.com/roles"`), or, when it
/// starts with `/`, a JSON Pointer (RFC 6901) into the claims: `"/realm_access/roles"` reads
/// Keycloak's nested realm roles.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClaimNames {
    /// Default `"sub"`.
    pub user: String,
    /// Default `"team"`.
    pub team: String,
    /// Default `"role"`.
    pub role: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        ClaimNames {
            user: "sub".to_owned(),
            team: "team".to_owned(),
            role: "role".to_owned(),
        }
    }
}

/// How tokens of one identity provider are checked.
///
/// Deserialized with `deny_unknown_fields` (so it cannot be `#[serde(flatten)]`ed into a
/// struct that has more fields; embed [`ClaimNames`] and build this with a struct literal or
/// [`JwtConfig::new`] instead).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// The exact `iss` value required.
    pub issuer: String,
    /// The value `aud` must be or contain.
    pub audience: String,
    /// Where user, team and role are read from.
    #[serde(default)]
    pub claims: ClaimNames,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds. Default 30, at most
    /// [`MAX_LEEWAY_SECS`].
    #[serde(default = "default_leeway_secs")]
    pub leeway_secs: u64,
    /// The algorithms accepted. Default: all of [`JwtAlgorithm::ALL`].
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<JwtAlgorithm>,
}

fn default_leeway_secs() -> u64 {
    30
}

fn default_algorithms() -> Vec<JwtAlgorithm> {
    JwtAlgorithm::ALL.to_vec()
}

impl JwtConfig {
    /// A configuration with the default claim names, leeway and algorithms.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        JwtConfig {
            issuer: issuer.into(),
            audience: audience.into(),
            claims: ClaimNames::default(),
            leeway_secs: default_leeway_secs(),
            algorithms: default_algorithms(),
        }
    }

    /// Checks what serde cannot: non-empty names, a bounded leeway, at least one algorithm.
    pub fn check(&self) -> Result<(), JwtError> {
        let invalid = |msg: &str| Err(JwtError::InvalidConfig(msg.to_owned()));
        if self.issuer.trim().is_empty() {
            return invalid("`issuer` must not be empty");
        }
        if self.audience.trim().is_empty() {
            return invalid("`audience` must not be empty");
        }
        for (key, name) in [
            ("claims.user", &self.claims.user),
            ("claims.team", &self.claims.team),
            ("claims.role", &self.claims.role),
        ] {
            if name.is_empty() {
                return Err(JwtError::InvalidConfig(format!(
                    "`{key}` must not be empty"
                )));
            }
        }
        if self.leeway_secs > MAX_LEEWAY_SECS {
            return Err(JwtError::InvalidConfig(format!(
                "`leeway_secs` must be at most {MAX_LEEWAY_SECS}"
            )));
        }
        if self.algorithms.is_empty() {
            return invalid("`algorithms` must name at least one algorithm");
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Results and errors
// ---------------------------------------------------------------------------------------------

/// Who a valid token identifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtIdentity {
    /// The `sub` claim (required, non-empty).
    pub subject: String,
    /// The claim named by `claims.user` (default `sub`); `None` when absent or empty.
    pub user: Option<String>,
    /// The claim named by `claims.team`; `None` when absent or empty.
    pub team: Option<String>,
    /// The claim named by `claims.role`. A string is returned as it is (the caller maps it to
    /// a role and refuses unknown names). An array of strings yields its first element that is
    /// one of [`KNOWN_ROLES`], in the token's order, whatever its privilege; other elements are
    /// ignored, and an array without a known role gives `None`.
    pub role: Option<String>,
    /// The `exp` claim, Unix seconds.
    pub expires_at: i64,
}

/// What the key set holds after a load or a refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksSummary {
    /// The usable keys, by `kid` (`"(no kid)"` for a key without one).
    pub key_ids: Vec<String>,
    /// The keys left out, each with the reason (worth a warning in the log).
    pub skipped: Vec<String>,
}

/// Why a token or a key set was refused. Every variant but `InvalidJwks` and `InvalidConfig`
/// (which [`JwtValidator::validate`] never returns) is the client's fault: answer 401 with
/// the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("token is larger than {max} bytes")]
    TooLarge { max: usize },
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("token algorithm `{0}` is not accepted")]
    UnsupportedAlgorithm(String),
    #[error("no key to verify the token: {0}")]
    UnknownKey(String),
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token issuer is not accepted")]
    WrongIssuer,
    #[error("token audience is not accepted")]
    WrongAudience,
    #[error("token has no `{0}` claim")]
    MissingClaim(String),
    #[error("token claim `{claim}` {reason}")]
    InvalidClaim { claim: String, reason: &'static str },
    #[error("invalid JWKS: {0}")]
    InvalidJwks(String),
    #[error("invalid JWT configuration: {0}")]
    InvalidConfig(String),
}

// ---------------------------------------------------------------------------------------------
// Key set
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

impl KeyKind {
    fn fits(self, alg: JwtAlgorithm) -> bool {
        use JwtAlgorithm as A;
        match self {
            KeyKind::Rsa => {
                matches!(
                    alg,
                    A::RS256 | A::RS384 | A::RS512 | A::PS256 | A::PS384 | A::PS512
                )
            }
            KeyKind::EcP256 => alg == A::ES256,
            KeyKind::EcP384 => alg == A::ES384,
            KeyKind::Ed25519 => alg == A::EdDSA,
        }
    }

    /// An algorithm the key fits, to probe it with at load time.
    fn probe_algorithm(self) -> JwtAlgorithm {
        match self {
            KeyKind::Rsa => JwtAlgorithm::RS256,
            KeyKind::EcP256 => JwtAlgorithm::ES256,
            KeyKind::EcP384 => JwtAlgorithm::ES384,
            KeyKind::Ed25519 => JwtAlgorithm::EdDSA,
        }
    }
}

struct VerifyKey {
    kid: Option<String>,
    kind: KeyKind,
    /// The JWK's own `alg`, which then is the only algorithm it verifies.
    alg: Option<JwtAlgorithm>,
    key: DecodingKey,
}

impl VerifyKey {
    fn fits(&self, alg: JwtAlgorithm) -> bool {
        self.kind.fits(alg) && self.alg.is_none_or(|own| own == alg)
    }
}

struct KeySet {
    keys: Vec<VerifyKey>,
    skipped: Vec<String>,
}

impl KeySet {
    fn summary(&self) -> JwksSummary {
        JwksSummary {
            key_ids: self
                .keys
                .iter()
                .map(|k| k.kid.clone().unwrap_or_else(|| "(no kid)".to_owned()))
                .collect(),
            skipped: self.skipped.clone(),
        }
    }

    fn select(&self, kid: Option<&str>, alg: JwtAlgorithm) -> Result<&VerifyKey, JwtError> {
        match kid {
            Some(kid) => {
                let mut same_kid = self.keys.iter().filter(|k| k.kid.as_deref() == Some(kid));
                let Some(first) = same_kid.next() else {
                    return Err(JwtError::UnknownKey(format!(
                        "unknown kid `{}`",
                        quote(kid)
                    )));
                };
                if first.fits(alg) {
                    return Ok(first);
                }
                same_kid.find(|k| k.fits(alg)).ok_or_else(|| {
                    JwtError::UnknownKey(format!("key `{}` is not a {alg} key", quote(kid)))
                })
            }
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.fits(alg));
                match (fitting.next(), fitting.next()) {
                    (Some(only), None) => Ok(only),
                    (None, _) => Err(JwtError::UnknownKey(format!("no {alg} key"))),
                    (Some(_), Some(_)) => Err(JwtError::UnknownKey(format!(
                        "the token has no kid and several {alg} keys exist"
                    ))),
                }
            }
        }
    }
}

fn parse_jwks(json: &str) -> Result<KeySet, JwtError> {
    if json.len() > MAX_JWKS_BYTES {
        return Err(JwtError::InvalidJwks(format!(
            "document is larger than {MAX_JWKS_BYTES} bytes"
        )));
    }
    let doc: Value =
        serde_json::from_str(json).map_err(|e| JwtError::InvalidJwks(format!("not JSON: {e}")))?;
    let Some(entries) = doc.get("keys").and_then(Value::as_array) else {
        return Err(JwtError::InvalidJwks("no `keys` array".to_owned()));
    };
    let mut set = KeySet {
        keys: Vec::new(),
        skipped: Vec::new(),
    };
    for (index, entry) in entries.iter().enumerate() {
        match parse_jwk(entry) {
            Ok(key) => set.keys.push(key),
            Err(reason) => {
                let label = match entry.get("kid").and_then(Value::as_str) {
                    Some(kid) => format!("key `{}`", quote(kid)),
                    None => format!("key #{index}"),
                };
                set.skipped.push(format!("{label}: {reason}"));
            }
        }
    }
    if set.keys.is_empty() {
        let detail = if set.skipped.is_empty() {
            String::new()
        } else {
            format!(" ({})", set.skipped.join("; "))
        };
        return Err(JwtError::InvalidJwks(format!(
            "no usable signing key{detail}"
        )));
    }
    Ok(set)
}

/// One JWK to a verification key, or the reason it is skipped.
fn parse_jwk(jwk: &Value) -> Result<VerifyKey, String> {
    let Some(obj) = jwk.as_object() else {
        return Err("not a JSON object".to_owned());
    };
    let kid = match obj.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err("`kid` is not a string".to_owned()),
    };
    match obj.get("use") {
        None | Some(Value::Null) => {}
        Some(Value::String(u)) if u == "sig" => {}
        Some(other) => {
            return Err(format!(
                "`use` is {}, not \"sig\"",
                quote(&other.to_string())
            ))
        }
    }
    if let Some(ops) = obj.get("key_ops").filter(|v| !v.is_null()) {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op == "verify"));
        if !verifies {
            return Err("`key_ops` does not include \"verify\"".to_owned());
        }
    }
    let alg = match obj.get("alg") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => match JwtAlgorithm::from_name(name) {
            Some(alg) => Some(alg),
            None => return Err(format!("algorithm `{}` is not supported", quote(name))),
        },
        Some(_) => return Err("`alg` is not a string".to_owned()),
    };
    let member = |name: &str| -> Result<Vec<u8>, String> {
        let text = obj
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("`{name}` is missing or not a string"))?;
        JWK_B64
            .decode(text)
            .map_err(|_| format!("`{name}` is not base64url"))
    };
    let (kind, key) = match obj.get("kty").and_then(Value::as_str) {
        Some("RSA") => {
            let n = member("n")?;
            let e = member("e")?;
            check_rsa(&n, &e)?;
            (KeyKind::Rsa, DecodingKey::from_rsa_raw_components(&n, &e))
        }
        Some("EC") => {
            let (kind, size) = match obj.get("crv").and_then(Value::as_str) {
                Some("P-256") => (KeyKind::EcP256, 32),
                Some("P-384") => (KeyKind::EcP384, 48),
                Some(crv) => return Err(format!("curve `{}` is not supported", quote(crv))),
                None => return Err("`crv` is missing".to_owned()),
            };
            let x = member("x")?;
            let y = member("y")?;
            if x.len() != size || y.len() != size {
                return Err(format!("coordinates are not {size} bytes long"));
            }
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (kind, DecodingKey::from_ec_der(&point))
        }
        Some("OKP") => {
            match obj.get("crv").and_then(Value::as_str) {
                Some("Ed25519") => {}
                Some(crv) => return Err(format!("curve `{}` is not supported", quote(crv))),
                None => return Err("`crv` is missing".to_owned()),
            }
            let x = member("x")?;
            if x.len() != 32 {
                return Err("an Ed25519 key is 32 bytes long".to_owned());
            }
            (KeyKind::Ed25519, DecodingKey::from_ed_der(&x))
        }
        Some("oct") => return Err("symmetric keys are never used".to_owned()),
        Some(kty) => return Err(format!("key type `{}` is not supported", quote(kty))),
        None => return Err("`kty` is missing or not a string".to_owned()),
    };
    if let Some(alg) = alg {
        if !kind.fits(alg) {
            return Err(format!("`alg` {alg} does not fit the key type"));
        }
    }
    // The verifier factory parses EC points and Ed25519 keys: an invalid one fails here,
    // at load time, instead of on every token. (It does not check RSA keys: `check_rsa` did.)
    jsonwebtoken::crypto::verify("", b"", &key, kind.probe_algorithm().to_jsonwebtoken())
        .map_err(|e| format!("invalid key: {e}"))?;
    Ok(VerifyKey {
        kid,
        kind,
        alg,
        key,
    })
}

/// A public RSA key the verifier will take: modulus of 2048..=4096 bits and odd, public
/// exponent odd and in 3..2^33 (the bounds of the `rsa` crate).
fn check_rsa(n: &[u8], e: &[u8]) -> Result<(), String> {
    let n = strip_leading_zeros(n);
    let bits = match n.first() {
        Some(first) => n.len() * 8 - first.leading_zeros() as usize,
        None => 0,
    };
    if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
        return Err(format!(
            "RSA modulus of {bits} bits (accepted: {RSA_MIN_BITS} to {RSA_MAX_BITS})"
        ));
    }
    if n.last().is_none_or(|last| last & 1 == 0) {
        return Err("RSA modulus is even".to_owned());
    }
    let e = strip_leading_zeros(e);
    if e.len() > 8 {
        return Err("RSA exponent is too large".to_owned());
    }
    let exponent = e
        .iter()
        .fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte));
    if exponent < 3 || exponent >= (1u64 << 33) || exponent & 1 == 0 {
        return Err(format!("RSA exponent {exponent} is not accepted"));
    }
    Ok(())
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

// ---------------------------------------------------------------------------------------------
// Validator
// ---------------------------------------------------------------------------------------------

/// Checks bearer tokens of one identity provider. Cheap to share (`Arc<JwtValidator>`);
/// [`refresh`](JwtValidator::refresh) may run while other threads validate.
pub struct JwtValidator {
    config: JwtConfig,
    keys: ArcSwap<KeySet>,
}

impl fmt::Debug for JwtValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtValidator")
            .field("config", &self.config)
            .field("keys", &self.keys.load().summary().key_ids)
            .finish()
    }
}

impl JwtValidator {
    /// A validator over the keys of a JWKS JSON document.
    pub fn from_jwks_json(jwks_json: &str, config: JwtConfig) -> Result<Self, JwtError> {
        config.check()?;
        let keys = parse_jwks(jwks_json)?;
        Ok(JwtValidator {
            config,
            keys: ArcSwap::from_pointee(keys),
        })
    }

    /// A validator over the keys of a JWKS file (read once; call [`refresh`](Self::refresh)
    /// with the new text to reload).
    pub fn from_jwks_file(path: impl AsRef<Path>, config: JwtConfig) -> Result<Self, JwtError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| JwtError::InvalidJwks(format!("cannot read {}: {e}", path.display())))?;
        Self::from_jwks_json(&text, config)
    }

    /// Replaces the key set by the keys of `jwks_json`, atomically. On error the current keys
    /// stay in use.
    pub fn refresh(&self, jwks_json: &str) -> Result<JwksSummary, JwtError> {
        let keys = parse_jwks(jwks_json)?;
        let summary = keys.summary();
        self.keys.store(Arc::new(keys));
        Ok(summary)
    }

    /// The keys in use and those skipped by the last successful load.
    pub fn summary(&self) -> JwksSummary {
        self.keys.load().summary()
    }

    pub fn config(&self) -> &JwtConfig {
        &self.config
    }

    /// Checks `token` against the system clock.
    pub fn validate(&self, token: &str) -> Result<JwtIdentity, JwtError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        self.validate_at(token, now)
    }

    /// Checks `token` as of `now_unix_secs` (e.g. `Clock::now_unix_secs()`).
    pub fn validate_at(&self, token: &str, now_unix_secs: i64) -> Result<JwtIdentity, JwtError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtError::TooLarge {
                max: MAX_TOKEN_BYTES,
            });
        }
        let (header_b64, payload_b64, signature_b64) = split_token(token)?;
        let header = decode_object(header_b64, "header")?;

        let alg_name = match header.get("alg") {
            Some(Value::String(name)) => name,
            Some(_) => {
                return Err(JwtError::Malformed(
                    "header `alg` is not a string".to_owned(),
                ))
            }
            None => return Err(JwtError::Malformed("header has no `alg`".to_owned())),
        };
        let alg = JwtAlgorithm::from_name(alg_name)
            .filter(|alg| self.config.algorithms.contains(alg))
            .ok_or_else(|| JwtError::UnsupportedAlgorithm(quote(alg_name)))?;
        if header.get("crit").is_some() {
            return Err(JwtError::Malformed(
                "header `crit` extensions are not supported".to_owned(),
            ));
        }
        let kid = match header.get("kid") {
            None | Some(Value::Null) => None,
            Some(Value::String(kid)) => Some(kid.as_str()),
            Some(_) => {
                return Err(JwtError::Malformed(
                    "header `kid` is not a string".to_owned(),
                ))
            }
        };

        let keys = self.keys.load();
        let key = keys.select(kid, alg)?;
        let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
        let verified = jsonwebtoken::crypto::verify(
            signature_b64,
            signing_input.as_bytes(),
            &key.key,
            alg.to_jsonwebtoken(),
        );
        if !matches!(verified, Ok(true)) {
            return Err(JwtError::BadSignature);
        }

        // Authentic from here on.
        let claims = Value::Object(decode_object(payload_b64, "payload")?);
        self.check_claims(&claims, now_unix_secs)
    }

    fn check_claims(&self, claims: &Value, now: i64) -> Result<JwtIdentity, JwtError> {
        let leeway = i64::try_from(self.config.leeway_secs).unwrap_or(i64::MAX);

        let expires_at =
            numeric_date(claims, "exp")?.ok_or_else(|| JwtError::MissingClaim("exp".to_owned()))?;
        if now >= expires_at.saturating_add(leeway) {
            return Err(JwtError::Expired);
        }
        if let Some(not_before) = numeric_date(claims, "nbf")? {
            if now.saturating_add(leeway) < not_before {
                return Err(JwtError::NotYetValid);
            }
        }

        match claims.get("iss") {
            Some(Value::String(iss)) if *iss == self.config.issuer => {}
            Some(Value::String(_)) => return Err(JwtError::WrongIssuer),
            None | Some(Value::Null) => return Err(JwtError::MissingClaim("iss".to_owned())),
            Some(_) => return Err(invalid_claim("iss", "must be a string")),
        }

        let audience = self.config.audience.as_str();
        let audience_ok = match claims.get("aud") {
            Some(Value::String(aud)) => aud == audience,
            Some(Value::Array(auds)) => {
                if !auds.iter().all(Value::is_string) {
                    return Err(invalid_claim(
                        "aud",
                        "must be a string or an array of strings",
                    ));
                }
                auds.iter().any(|aud| aud == audience)
            }
            None | Some(Value::Null) => return Err(JwtError::MissingClaim("aud".to_owned())),
            Some(_) => {
                return Err(invalid_claim(
                    "aud",
                    "must be a string or an array of strings",
                ))
            }
        };
        if !audience_ok {
            return Err(JwtError::WrongAudience);
        }

        let subject = match claims.get("sub") {
            Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
            Some(Value::String(_)) => return Err(invalid_claim("sub", "must not be empty")),
            None | Some(Value::Null) => return Err(JwtError::MissingClaim("sub".to_owned())),
            Some(_) => return Err(invalid_claim("sub", "must be a string")),
        };

        let names = &self.config.claims;
        Ok(JwtIdentity {
            subject,
            user: string_claim(claims, &names.user)?,
            team: string_claim(claims, &names.team)?,
            role: role_claim(claims, &names.role)?,
            expires_at,
        })
    }
}

/// Whether `token` has the shape of a JWS (three base64url segments, the first a JSON object
/// with an `alg`), so a bearer token can be routed to [`JwtValidator`] rather than the API key
/// lookup. Cheap: only the header segment is decoded. Says nothing of validity (`alg: none`
/// tokens look like JWTs, so that they are refused as such).
pub fn looks_like_jwt(token: &str) -> bool {
    let Ok((header, payload, signature)) = split_token(token) else {
        return false;
    };
    let base64url = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if header.is_empty()
        || payload.is_empty()
        || header.len() > MAX_TOKEN_BYTES
        || !base64url(header)
        || !base64url(payload)
        || !base64url(signature)
    {
        return false;
    }
    decode_object(header, "header").is_ok_and(|h| h.get("alg").is_some_and(Value::is_string))
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn split_token(token: &str) -> Result<(&str, &str, &str), JwtError> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(header), Some(payload), Some(signature), None) => Ok((header, payload, signature)),
        _ => Err(JwtError::Malformed(
            "expected three dot-separated segments".to_owned(),
        )),
    }
}

fn decode_object(segment: &str, what: &str) -> Result<Map<String, Value>, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| JwtError::Malformed(format!("{what} is not base64url")))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(JwtError::Malformed(format!("{what} is not a JSON object"))),
        Err(_) => Err(JwtError::Malformed(format!("{what} is not JSON"))),
    }
}

fn invalid_claim(claim: &str, reason: &'static str) -> JwtError {
    JwtError::InvalidClaim {
        claim: claim.to_owned(),
        reason,
    }
}

/// A claim by name, or by JSON Pointer when the name starts with `/`.
fn lookup<'a>(claims: &'a Value, name: &str) -> Option<&'a Value> {
    if name.starts_with('/') {
        claims.pointer(name)
    } else {
        claims.get(name)
    }
}

/// A NumericDate (RFC 7519: seconds, possibly fractional), floored; `None` when absent.
fn numeric_date(claims: &Value, name: &str) -> Result<Option<i64>, JwtError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else if n.is_u64() {
                Ok(Some(i64::MAX))
            } else {
                // `as` saturates, and JSON has no NaN or infinity.
                Ok(n.as_f64().map(|f| f.floor() as i64))
            }
        }
        Some(_) => Err(invalid_claim(name, "must be a number")),
    }
}

fn string_claim(claims: &Value, name: &str) -> Result<Option<String>, JwtError> {
    match lookup(claims, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(JwtError::InvalidClaim {
            claim: name.to_owned(),
            reason: "must be a string",
        }),
    }
}

fn role_claim(claims: &Value, name: &str) -> Result<Option<String>, JwtError> {
    match lookup(claims, name) {
        Some(Value::Array(items)) => Ok(items
            .iter()
            .filter_map(Value::as_str)
            .find(|role| KNOWN_ROLES.contains(role))
            .map(str::to_owned)),
        Some(Value::String(_)) | Some(Value::Null) | None => string_claim(claims, name),
        Some(_) => Err(JwtError::InvalidClaim {
            claim: name.to_owned(),
            reason: "must be a string or an array of strings",
        }),
    }
}

/// An untrusted string made safe to quote in a message: cut, control characters replaced.
fn quote(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(QUOTE_MAX_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().nth(QUOTE_MAX_CHARS).is_some() {
        out.push('…');
    }
    out
}

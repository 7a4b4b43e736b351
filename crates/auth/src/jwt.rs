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
    if !(3..(1u64 << 33)).contains(&exponent) || exponent & 1 == 0 {
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

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::jwk::Jwk;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use rand::{Rng, SeedableRng};
    use serde_json::json;

    const ISSUER: &str = "https://idp.example.com/";
    const AUDIENCE: &str = "plexus";
    /// A fixed "now" for `validate_at`.
    const NOW: i64 = 1_750_000_000;

    fn rsa1() -> EncodingKey {
        EncodingKey::from_rsa_pem(include_bytes!("../tests/fixtures/jwt/rsa1.pem")).unwrap()
    }
    fn rsa2() -> EncodingKey {
        EncodingKey::from_rsa_pem(include_bytes!("../tests/fixtures/jwt/rsa2.pem")).unwrap()
    }
    fn ec256() -> EncodingKey {
        EncodingKey::from_ec_pem(include_bytes!("../tests/fixtures/jwt/ec256.pem")).unwrap()
    }
    fn ec384() -> EncodingKey {
        EncodingKey::from_ec_pem(include_bytes!("../tests/fixtures/jwt/ec384.pem")).unwrap()
    }
    fn ed25519() -> EncodingKey {
        EncodingKey::from_ed_pem(include_bytes!("../tests/fixtures/jwt/ed25519.pem")).unwrap()
    }

    /// The public JWK of a private key, with a `kid` and the JWK's `alg` (or none).
    fn jwk(key: &EncodingKey, alg: Algorithm, kid: Option<&str>, with_alg: bool) -> Value {
        let mut v = serde_json::to_value(Jwk::from_encoding_key(key, alg).unwrap()).unwrap();
        let obj = v.as_object_mut().unwrap();
        if let Some(kid) = kid {
            obj.insert("kid".into(), json!(kid));
        }
        if !with_alg {
            obj.remove("alg");
        }
        v
    }

    fn jwks(keys: &[Value]) -> String {
        json!({ "keys": keys }).to_string()
    }

    /// rsa1 (`rsa-1`, no `alg`), ec256 (`ec-1`, ES256), ed25519 (`ed-1`).
    fn default_jwks() -> String {
        jwks(&[
            jwk(&rsa1(), Algorithm::RS256, Some("rsa-1"), false),
            jwk(&ec256(), Algorithm::ES256, Some("ec-1"), true),
            jwk(&ed25519(), Algorithm::EdDSA, Some("ed-1"), true),
        ])
    }

    fn validator() -> JwtValidator {
        JwtValidator::from_jwks_json(&default_jwks(), JwtConfig::new(ISSUER, AUDIENCE)).unwrap()
    }

    fn claims() -> Value {
        json!({
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "user-123",
            "exp": NOW + 600,
            "iat": NOW,
            "team": "research",
            "role": "team_admin",
        })
    }

    fn sign(claims: &Value, key: &EncodingKey, alg: Algorithm, kid: Option<&str>) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        encode(&header, claims, key).unwrap()
    }

    fn rs256(claims: &Value) -> String {
        sign(claims, &rsa1(), Algorithm::RS256, Some("rsa-1"))
    }

    fn with(mut claims: Value, key: &str, value: Value) -> Value {
        claims
            .as_object_mut()
            .unwrap()
            .insert(key.to_owned(), value);
        claims
    }

    fn without(mut claims: Value, key: &str) -> Value {
        claims.as_object_mut().unwrap().remove(key);
        claims
    }

    fn b64(json: &Value) -> String {
        URL_SAFE_NO_PAD.encode(json.to_string())
    }

    #[test]
    fn valid_rs256_token_maps_claims() {
        let identity = validator().validate_at(&rs256(&claims()), NOW).unwrap();
        assert_eq!(
            identity,
            JwtIdentity {
                subject: "user-123".into(),
                user: Some("user-123".into()),
                team: Some("research".into()),
                role: Some("team_admin".into()),
                expires_at: NOW + 600,
            }
        );
    }

    #[test]
    fn valid_es256_and_eddsa_tokens() {
        let v = validator();
        let es = sign(&claims(), &ec256(), Algorithm::ES256, Some("ec-1"));
        let identity = v.validate_at(&es, NOW).unwrap();
        assert_eq!(identity.subject, "user-123");
        assert_eq!(identity.role.as_deref(), Some("team_admin"));
        let ed = sign(&claims(), &ed25519(), Algorithm::EdDSA, Some("ed-1"));
        assert_eq!(
            v.validate_at(&ed, NOW).unwrap().team.as_deref(),
            Some("research")
        );
    }

    #[test]
    fn other_rsa_and_ec_algorithms() {
        let set = jwks(&[
            jwk(&rsa1(), Algorithm::RS256, Some("rsa-1"), false),
            jwk(&ec384(), Algorithm::ES384, Some("ec-384"), false),
        ]);
        let v = JwtValidator::from_jwks_json(&set, JwtConfig::new(ISSUER, AUDIENCE)).unwrap();
        for alg in [
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS512,
        ] {
            let token = sign(&claims(), &rsa1(), alg, Some("rsa-1"));
            assert!(v.validate_at(&token, NOW).is_ok(), "{alg:?}");
        }
        let token = sign(&claims(), &ec384(), Algorithm::ES384, Some("ec-384"));
        assert!(v.validate_at(&token, NOW).is_ok());
        // A P-384 key does not verify ES256.
        let token = sign(&claims(), &ec256(), Algorithm::ES256, Some("ec-384"));
        assert!(matches!(
            v.validate_at(&token, NOW),
            Err(JwtError::UnknownKey(_))
        ));
    }

    #[test]
    fn validate_uses_the_system_clock() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let token = rs256(&with(claims(), "exp", json!(now + 600)));
        assert_eq!(validator().validate(&token).unwrap().expires_at, now + 600);
        let token = rs256(&with(claims(), "exp", json!(now - 600)));
        assert_eq!(validator().validate(&token), Err(JwtError::Expired));
    }

    #[test]
    fn custom_claim_names_and_json_pointer() {
        let mut config = JwtConfig::new(ISSUER, AUDIENCE);
        config.claims = ClaimNames {
            user: "email".into(),
            team: "https://plexus.dev/team".into(),
            role: "/realm_access/roles".into(),
        };
        let v = JwtValidator::from_jwks_json(&default_jwks(), config).unwrap();
        let c = with(claims(), "email", json!("ada@example.com"));
        let c = with(c, "https://plexus.dev/team", json!("ml"));
        let c = with(
            c,
            "realm_access",
            json!({ "roles": ["offline_access", "viewer", "admin"] }),
        );
        let identity = v.validate_at(&rs256(&c), NOW).unwrap();
        assert_eq!(identity.subject, "user-123");
        assert_eq!(identity.user.as_deref(), Some("ada@example.com"));
        assert_eq!(identity.team.as_deref(), Some("ml"));
        // The first known role in the token's order, not the most privileged.
        assert_eq!(identity.role.as_deref(), Some("viewer"));
    }

    #[test]
    fn role_claim_shapes() {
        let v = validator();
        let role = |value: Value| v.validate_at(&rs256(&with(claims(), "role", value)), NOW);
        assert_eq!(
            role(json!(["admin", "member"])).unwrap().role.as_deref(),
            Some("admin")
        );
        assert_eq!(
            role(json!([1, "x", "member"])).unwrap().role.as_deref(),
            Some("member")
        );
        assert_eq!(role(json!(["owner"])).unwrap().role, None);
        assert_eq!(role(json!([])).unwrap().role, None);
        assert_eq!(
            role(json!("superuser")).unwrap().role.as_deref(),
            Some("superuser")
        );
        assert_eq!(role(json!("")).unwrap().role, None);
        assert_eq!(role(Value::Null).unwrap().role, None);
        assert!(matches!(role(json!(7)), Err(JwtError::InvalidClaim { .. })));
        let absent = v
            .validate_at(&rs256(&without(claims(), "role")), NOW)
            .unwrap();
        assert_eq!((absent.role, absent.team.is_some()), (None, true));
        let team = v.validate_at(&rs256(&with(claims(), "team", json!(42))), NOW);
        assert_eq!(
            team,
            Err(JwtError::InvalidClaim {
                claim: "team".into(),
                reason: "must be a string"
            })
        );
    }

    #[test]
    fn expiry_with_leeway() {
        let v = validator();
        let exp = |exp: Value| v.validate_at(&rs256(&with(claims(), "exp", exp)), NOW);
        assert_eq!(exp(json!(NOW - 3600)), Err(JwtError::Expired));
        assert_eq!(exp(json!(NOW - 30)), Err(JwtError::Expired));
        assert!(exp(json!(NOW - 29)).is_ok(), "inside the 30 s leeway");
        assert!(
            exp(json!(NOW as f64 + 0.5)).is_ok(),
            "fractional NumericDate"
        );
        assert!(exp(json!(u64::MAX)).is_ok());
        assert_eq!(exp(json!(i64::MIN)), Err(JwtError::Expired));
        assert_eq!(exp(json!(-1.0e300)), Err(JwtError::Expired));
        assert!(matches!(
            exp(json!("2030-01-01")),
            Err(JwtError::InvalidClaim { .. })
        ));
        assert_eq!(exp(Value::Null), Err(JwtError::MissingClaim("exp".into())));
        let missing = v.validate_at(&rs256(&without(claims(), "exp")), NOW);
        assert_eq!(missing, Err(JwtError::MissingClaim("exp".into())));

        let mut strict = JwtConfig::new(ISSUER, AUDIENCE);
        strict.leeway_secs = 0;
        let v = JwtValidator::from_jwks_json(&default_jwks(), strict).unwrap();
        assert_eq!(
            v.validate_at(&rs256(&with(claims(), "exp", json!(NOW))), NOW),
            Err(JwtError::Expired)
        );
    }

    #[test]
    fn not_before_with_leeway() {
        let v = validator();
        let nbf = |nbf: Value| v.validate_at(&rs256(&with(claims(), "nbf", nbf)), NOW);
        assert_eq!(nbf(json!(NOW + 3600)), Err(JwtError::NotYetValid));
        assert_eq!(nbf(json!(NOW + 31)), Err(JwtError::NotYetValid));
        assert!(nbf(json!(NOW + 30)).is_ok(), "inside the 30 s leeway");
        assert!(nbf(json!(NOW - 10)).is_ok());
        assert!(matches!(
            nbf(json!({ "at": 1 })),
            Err(JwtError::InvalidClaim { .. })
        ));
    }

    #[test]
    fn issuer_checks() {
        let v = validator();
        let iss = |iss: Value| v.validate_at(&rs256(&with(claims(), "iss", iss)), NOW);
        assert_eq!(
            iss(json!("https://evil.example.com/")),
            Err(JwtError::WrongIssuer)
        );
        assert_eq!(
            iss(json!("https://idp.example.com")),
            Err(JwtError::WrongIssuer)
        );
        assert!(matches!(
            iss(json!([ISSUER])),
            Err(JwtError::InvalidClaim { .. })
        ));
        let missing = v.validate_at(&rs256(&without(claims(), "iss")), NOW);
        assert_eq!(missing, Err(JwtError::MissingClaim("iss".into())));
    }

    #[test]
    fn audience_checks() {
        let v = validator();
        let aud = |aud: Value| v.validate_at(&rs256(&with(claims(), "aud", aud)), NOW);
        assert_eq!(aud(json!("other-api")), Err(JwtError::WrongAudience));
        assert!(aud(json!(["other-api", AUDIENCE])).is_ok());
        assert_eq!(
            aud(json!(["other-api", "third"])),
            Err(JwtError::WrongAudience)
        );
        assert_eq!(aud(json!([])), Err(JwtError::WrongAudience));
        assert!(matches!(
            aud(json!([AUDIENCE, 3])),
            Err(JwtError::InvalidClaim { .. })
        ));
        assert!(matches!(
            aud(json!({ "aud": AUDIENCE })),
            Err(JwtError::InvalidClaim { .. })
        ));
        let missing = v.validate_at(&rs256(&without(claims(), "aud")), NOW);
        assert_eq!(missing, Err(JwtError::MissingClaim("aud".into())));
    }

    #[test]
    fn subject_is_required() {
        let v = validator();
        let missing = v.validate_at(&rs256(&without(claims(), "sub")), NOW);
        assert_eq!(missing, Err(JwtError::MissingClaim("sub".into())));
        let empty = v.validate_at(&rs256(&with(claims(), "sub", json!(""))), NOW);
        assert!(matches!(empty, Err(JwtError::InvalidClaim { .. })));
        let number = v.validate_at(&rs256(&with(claims(), "sub", json!(12))), NOW);
        assert!(matches!(number, Err(JwtError::InvalidClaim { .. })));
    }

    #[test]
    fn key_selection_by_kid() {
        let v = validator();
        let unknown = sign(&claims(), &rsa1(), Algorithm::RS256, Some("rsa-9"));
        let result = v.validate_at(&unknown, NOW);
        assert!(matches!(result, Err(JwtError::UnknownKey(m)) if m.contains("rsa-9")));
        // A kid that names a key of another type.
        let wrong_type = sign(&claims(), &rsa1(), Algorithm::RS256, Some("ec-1"));
        assert!(matches!(
            v.validate_at(&wrong_type, NOW),
            Err(JwtError::UnknownKey(_))
        ));
        // No kid: accepted when exactly one key fits the algorithm.
        let no_kid = sign(&claims(), &rsa1(), Algorithm::RS256, None);
        assert!(v.validate_at(&no_kid, NOW).is_ok());
        let no_kid_es = sign(&claims(), &ec256(), Algorithm::ES256, None);
        assert!(v.validate_at(&no_kid_es, NOW).is_ok());
        // ... and refused when several do.
        let two_rsa = jwks(&[
            jwk(&rsa1(), Algorithm::RS256, Some("rsa-1"), true),
            jwk(&rsa2(), Algorithm::RS256, Some("rsa-2"), true),
        ]);
        let v2 = JwtValidator::from_jwks_json(&two_rsa, JwtConfig::new(ISSUER, AUDIENCE)).unwrap();
        assert!(matches!(
            v2.validate_at(&no_kid, NOW),
            Err(JwtError::UnknownKey(_))
        ));
        let with_kid = sign(&claims(), &rsa2(), Algorithm::RS256, Some("rsa-2"));
        assert!(v2.validate_at(&with_kid, NOW).is_ok());
        // A JWK with `alg: RS256` does not verify PS256 with the same RSA key.
        let ps = sign(&claims(), &rsa1(), Algorithm::PS256, Some("rsa-1"));
        assert!(matches!(
            v2.validate_at(&ps, NOW),
            Err(JwtError::UnknownKey(_))
        ));
        // No key at all of the token's algorithm.
        let es = sign(&claims(), &ec256(), Algorithm::ES256, None);
        assert!(matches!(
            v2.validate_at(&es, NOW),
            Err(JwtError::UnknownKey(_))
        ));
    }

    #[test]
    fn tampering_and_wrong_signer_are_bad_signatures() {
        let v = validator();
        let token = rs256(&claims());
        let parts: Vec<&str> = token.split('.').collect();
        let forged = b64(&with(claims(), "role", json!("admin")));
        let tampered = format!("{}.{}.{}", parts[0], forged, parts[2]);
        assert_eq!(v.validate_at(&tampered, NOW), Err(JwtError::BadSignature));
        // Signed by another key under our kid.
        let impostor = sign(&claims(), &rsa2(), Algorithm::RS256, Some("rsa-1"));
        assert_eq!(v.validate_at(&impostor, NOW), Err(JwtError::BadSignature));
        // Signature removed, cut, or not base64url.
        for sig in ["", "AAAA", &parts[2][..parts[2].len() - 4], "!!!!", "A"] {
            let t = format!("{}.{}.{}", parts[0], parts[1], sig);
            assert_eq!(
                v.validate_at(&t, NOW),
                Err(JwtError::BadSignature),
                "{sig:?}"
            );
        }
        // An ES256 signature of the wrong length, and an EdDSA one.
        let es = sign(&claims(), &ec256(), Algorithm::ES256, Some("ec-1"));
        let es_parts: Vec<&str> = es.split('.').collect();
        let t = format!("{}.{}.{}AA", es_parts[0], es_parts[1], es_parts[2]);
        assert_eq!(v.validate_at(&t, NOW), Err(JwtError::BadSignature));
        let ed = sign(&claims(), &ed25519(), Algorithm::EdDSA, Some("ed-1"));
        let ed_parts: Vec<&str> = ed.split('.').collect();
        let t = format!("{}.{}.{}", ed_parts[0], forged, ed_parts[2]);
        assert_eq!(v.validate_at(&t, NOW), Err(JwtError::BadSignature));
        // A bad signature hides claim errors: an expired forged token is a bad signature.
        let expired = b64(&with(claims(), "exp", json!(0)));
        let t = format!("{}.{}.{}", parts[0], expired, parts[2]);
        assert_eq!(v.validate_at(&t, NOW), Err(JwtError::BadSignature));
    }

    #[test]
    fn alg_none_is_rejected() {
        let v = validator();
        let payload = b64(&claims());
        for header in [
            json!({ "alg": "none", "typ": "JWT" }),
            json!({ "alg": "None" }),
            json!({ "alg": "NONE", "kid": "rsa-1" }),
            json!({ "alg": "" }),
        ] {
            let token = format!("{}.{}.", b64(&header), payload);
            assert!(looks_like_jwt(&token));
            assert!(
                matches!(
                    v.validate_at(&token, NOW),
                    Err(JwtError::UnsupportedAlgorithm(_))
                ),
                "{header}"
            );
        }
    }

    #[test]
    fn hmac_tokens_are_rejected() {
        let v = validator();
        let hs = sign(
            &claims(),
            &EncodingKey::from_secret(b"shared secret"),
            Algorithm::HS256,
            Some("rsa-1"),
        );
        assert_eq!(
            v.validate_at(&hs, NOW),
            Err(JwtError::UnsupportedAlgorithm("HS256".into()))
        );
        // The key-confusion forgery: HMAC keyed with the public key material.
        let public = jwk(&rsa1(), Algorithm::RS256, None, false);
        let n = public["n"].as_str().unwrap().as_bytes().to_vec();
        let confused = sign(
            &claims(),
            &EncodingKey::from_secret(&n),
            Algorithm::HS256,
            None,
        );
        assert!(matches!(
            v.validate_at(&confused, NOW),
            Err(JwtError::UnsupportedAlgorithm(_))
        ));
        for alg in [Algorithm::HS384, Algorithm::HS512] {
            let t = sign(&claims(), &EncodingKey::from_secret(b"k"), alg, None);
            assert!(matches!(
                v.validate_at(&t, NOW),
                Err(JwtError::UnsupportedAlgorithm(_))
            ));
        }
    }

    #[test]
    fn algorithms_outside_the_config_are_rejected() {
        let mut config = JwtConfig::new(ISSUER, AUDIENCE);
        config.algorithms = vec![JwtAlgorithm::RS256];
        let v = JwtValidator::from_jwks_json(&default_jwks(), config).unwrap();
        assert!(v.validate_at(&rs256(&claims()), NOW).is_ok());
        let es = sign(&claims(), &ec256(), Algorithm::ES256, Some("ec-1"));
        assert_eq!(
            v.validate_at(&es, NOW),
            Err(JwtError::UnsupportedAlgorithm("ES256".into()))
        );
    }

    #[test]
    fn crit_header_is_rejected() {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("rsa-1".into());
        let mut h = serde_json::to_value(&header).unwrap();
        h["crit"] = json!(["exp"]);
        h["exp"] = json!(1);
        // Sign the custom header by hand through the crate's signer.
        let input = format!("{}.{}", b64(&h), b64(&claims()));
        let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &rsa1(), Algorithm::RS256).unwrap();
        let token = format!("{input}.{sig}");
        assert!(matches!(
            validator().validate_at(&token, NOW),
            Err(JwtError::Malformed(_))
        ));
    }

    #[test]
    fn oversized_tokens_are_refused_before_parsing() {
        let v = validator();
        let big = with(claims(), "padding", json!("x".repeat(MAX_TOKEN_BYTES)));
        let token = rs256(&big);
        assert_eq!(
            v.validate_at(&token, NOW),
            Err(JwtError::TooLarge {
                max: MAX_TOKEN_BYTES
            })
        );
        let junk = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(
            v.validate_at(&junk, NOW),
            Err(JwtError::TooLarge {
                max: MAX_TOKEN_BYTES
            })
        );
        // Just under the limit is parsed (and fails on its merits).
        let junk = format!("{}.e30.", "A".repeat(MAX_TOKEN_BYTES - 6));
        assert!(matches!(
            v.validate_at(&junk, NOW),
            Err(JwtError::Malformed(_))
        ));
    }

    #[test]
    fn garbage_never_panics() {
        let v = validator();
        let valid = rs256(&claims());
        let parts: Vec<&str> = valid.split('.').collect();
        let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        let fixed: Vec<String> = vec![
            String::new(),
            ".".into(),
            "..".into(),
            "...".into(),
            "....".into(),
            "a.b.c".into(),
            "a.b.c.d.e".into(),
            "sk-plexus-0123456789abcdef".into(),
            "Bearer abc".into(),
            "é.ü.ñ".into(),
            "\u{0}\u{1}.\u{2}.\u{3}".into(),
            format!("{}.{}.{}", b64(&json!(["alg"])), parts[1], parts[2]),
            format!("{}.{}.{}", b64(&json!({ "alg": 5 })), parts[1], parts[2]),
            format!(
                "{}.{}.{}",
                b64(&json!({ "alg": ["RS256"] })),
                parts[1],
                parts[2]
            ),
            format!(
                "{}.{}.{}",
                b64(&json!({ "alg": "RS256", "kid": 7 })),
                parts[1],
                parts[2]
            ),
            format!(
                "{}.{}.{}",
                b64(&json!({ "alg": "RS256", "kid": "x".repeat(5000) })),
                parts[1],
                parts[2]
            ),
            format!(
                "{}.{}.{}",
                b64(&json!({ "alg": "ES256", "kid": "ec-1" })),
                parts[1],
                parts[2]
            ),
            format!(
                "{}.{}.{}",
                b64(&json!({ "alg": "EdDSA" })),
                parts[1],
                "A".repeat(86)
            ),
            format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode(&deep),
                parts[1],
                parts[2]
            ),
            format!(
                "{}.{}.{}",
                parts[0],
                URL_SAFE_NO_PAD.encode(&deep),
                parts[2]
            ),
            format!("{}.{}.{}", parts[0], "A".repeat(7000), parts[2]),
            format!("{}==.{}.{}", parts[0], parts[1], parts[2]),
            format!("{}.{}", parts[0], parts[1]),
            format!("{}..{}", parts[0], parts[2]),
        ];
        for input in &fixed {
            assert!(v.validate_at(input, NOW).is_err(), "{input:.80}");
            let _ = looks_like_jwt(input);
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \x00";
        for _ in 0..2000 {
            let len = rng.random_range(0..300);
            let s: String = (0..len)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
                .collect();
            assert!(v.validate_at(&s, NOW).is_err());
            let _ = looks_like_jwt(&s);
            // A real header and payload with a random signature, for every key type.
            for header in [
                parts[0],
                &b64(&json!({"alg": "ES256", "kid": "ec-1"})),
                &b64(&json!({"alg": "EdDSA"})),
            ] {
                let t = format!("{header}.{}.{s}", parts[1]);
                assert!(v.validate_at(&t, NOW).is_err());
            }
            // Random bytes as each segment.
            let bytes: Vec<u8> = (0..rng.random_range(0..200))
                .map(|_| rng.random())
                .collect();
            let seg = URL_SAFE_NO_PAD.encode(&bytes);
            for t in [
                format!("{seg}.{}.{}", parts[1], parts[2]),
                format!("{}.{seg}.{}", parts[0], parts[2]),
            ] {
                assert!(v.validate_at(&t, NOW).is_err());
            }
        }
        // Well-signed payloads of the wrong shapes.
        for payload in [json!([1, 2]), json!("sub"), json!(null), json!(42)] {
            let input = format!(
                "{}.{}",
                parts[0],
                URL_SAFE_NO_PAD.encode(payload.to_string())
            );
            let sig =
                jsonwebtoken::crypto::sign(input.as_bytes(), &rsa1(), Algorithm::RS256).unwrap();
            let t = format!("{input}.{sig}");
            assert!(
                matches!(v.validate_at(&t, NOW), Err(JwtError::Malformed(_))),
                "{payload}"
            );
        }
        let wrong_types = json!({
            "iss": 1, "aud": {}, "sub": [], "exp": "soon", "nbf": true, "team": {}, "role": {},
        });
        assert!(v.validate_at(&rs256(&wrong_types), NOW).is_err());
    }

    #[test]
    fn looks_like_jwt_routes_tokens() {
        assert!(looks_like_jwt(&rs256(&claims())));
        assert!(looks_like_jwt(&sign(
            &claims(),
            &ec256(),
            Algorithm::ES256,
            None
        )));
        assert!(!looks_like_jwt("sk-plexus-AbC123"));
        assert!(!looks_like_jwt("a.b.c"));
        assert!(!looks_like_jwt(""));
        assert!(!looks_like_jwt("e30.e30.e30"), "{{}} has no alg");
        let header = b64(&json!({ "alg": "RS256" }));
        assert!(looks_like_jwt(&format!("{header}.e30.abc")));
        assert!(!looks_like_jwt(&format!("{header}.e30")));
        assert!(!looks_like_jwt(&format!("{header}..abc")));
        assert!(!looks_like_jwt(&format!("{header}.e3+0.abc")));
        assert!(!looks_like_jwt(&format!("{header}.e30.abc.def")));
        assert!(!looks_like_jwt(&format!(
            "{}.e30.abc",
            b64(&json!({ "alg": 1 }))
        )));
    }

    #[test]
    fn key_rotation_with_refresh() {
        let set1 = jwks(&[jwk(&rsa1(), Algorithm::RS256, Some("k1"), true)]);
        let set2 = jwks(&[jwk(&rsa2(), Algorithm::RS256, Some("k2"), true)]);
        let v = JwtValidator::from_jwks_json(&set1, JwtConfig::new(ISSUER, AUDIENCE)).unwrap();
        let old = sign(&claims(), &rsa1(), Algorithm::RS256, Some("k1"));
        let new = sign(&claims(), &rsa2(), Algorithm::RS256, Some("k2"));
        assert!(v.validate_at(&old, NOW).is_ok());
        assert!(matches!(
            v.validate_at(&new, NOW),
            Err(JwtError::UnknownKey(_))
        ));

        let summary = v.refresh(&set2).unwrap();
        assert_eq!(summary.key_ids, vec!["k2".to_owned()]);
        assert!(v.validate_at(&new, NOW).is_ok());
        assert!(matches!(
            v.validate_at(&old, NOW),
            Err(JwtError::UnknownKey(_))
        ));

        // A failed refresh keeps the keys in use.
        assert!(matches!(
            v.refresh("not json"),
            Err(JwtError::InvalidJwks(_))
        ));
        assert!(matches!(
            v.refresh(r#"{"keys": []}"#),
            Err(JwtError::InvalidJwks(_))
        ));
        assert!(v.validate_at(&new, NOW).is_ok());
        assert_eq!(v.summary().key_ids, vec!["k2".to_owned()]);
    }

    #[test]
    fn refresh_while_validating() {
        let set1 = jwks(&[jwk(&rsa1(), Algorithm::RS256, Some("k1"), true)]);
        let both = jwks(&[
            jwk(&rsa1(), Algorithm::RS256, Some("k1"), true),
            jwk(&rsa2(), Algorithm::RS256, Some("k2"), true),
        ]);
        let v = Arc::new(
            JwtValidator::from_jwks_json(&set1, JwtConfig::new(ISSUER, AUDIENCE)).unwrap(),
        );
        let token = sign(&claims(), &rsa1(), Algorithm::RS256, Some("k1"));
        let reader = {
            let v = Arc::clone(&v);
            std::thread::spawn(move || (0..50).all(|_| v.validate_at(&token, NOW).is_ok()))
        };
        for i in 0..50 {
            v.refresh(if i % 2 == 0 { &both } else { &set1 }).unwrap();
        }
        assert!(reader.join().unwrap());
    }

    #[test]
    fn jwks_parsing_skips_unusable_keys() {
        let good = jwk(&ec256(), Algorithm::ES256, Some("good"), true);
        let mut weak = jwk(&rsa1(), Algorithm::RS256, Some("weak"), true);
        weak["n"] = json!(URL_SAFE_NO_PAD.encode([0xC5u8; 128])); // 1024 bits
        let mut enc = jwk(&rsa1(), Algorithm::RS256, Some("enc"), false);
        enc["use"] = json!("enc");
        let mut oaep = jwk(&rsa1(), Algorithm::RS256, Some("oaep"), false);
        oaep["alg"] = json!("RSA-OAEP");
        let mut off_curve = jwk(&ec256(), Algorithm::ES256, Some("off-curve"), true);
        off_curve["y"] = off_curve["x"].clone();
        let mut mismatched = jwk(&ec256(), Algorithm::ES256, Some("mismatched"), true);
        mismatched["alg"] = json!("RS256");
        let mut short_ed = jwk(&ed25519(), Algorithm::EdDSA, Some("short-ed"), true);
        short_ed["x"] = json!("AAAA");
        let mut bad_b64 = jwk(&rsa1(), Algorithm::RS256, Some("bad-b64"), true);
        bad_b64["n"] = json!("***");
        let mut verify_only = jwk(&rsa2(), Algorithm::RS256, Some("ops"), true);
        verify_only["key_ops"] = json!(["verify"]);
        let mut sign_only = jwk(&rsa2(), Algorithm::RS256, Some("sign-ops"), true);
        sign_only["key_ops"] = json!(["sign"]);
        let set = jwks(&[
            good,
            weak,
            enc,
            oaep,
            off_curve,
            mismatched,
            short_ed,
            bad_b64,
            verify_only,
            sign_only,
            json!({ "kty": "oct", "kid": "hmac", "k": "c2VjcmV0" }),
            json!({ "kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA" }),
            json!({ "kty": "OKP", "crv": "Ed448", "x": "AA" }),
            json!({ "kty": "RSA" }),
            json!("a string"),
            json!({ "kid": 5, "kty": "RSA" }),
        ]);
        let v = JwtValidator::from_jwks_json(&set, JwtConfig::new(ISSUER, AUDIENCE)).unwrap();
        let summary = v.summary();
        assert_eq!(summary.key_ids, vec!["good".to_owned(), "ops".to_owned()]);
        assert_eq!(summary.skipped.len(), 14, "{:#?}", summary.skipped);
        assert!(summary
            .skipped
            .iter()
            .any(|s| s.contains("weak") && s.contains("1024 bits")));
        assert!(summary
            .skipped
            .iter()
            .any(|s| s.contains("hmac") && s.contains("symmetric")));
        let ok = sign(&claims(), &ec256(), Algorithm::ES256, Some("good"));
        assert!(v.validate_at(&ok, NOW).is_ok());
        // Keys are also accepted with padded base64url members.
        let mut padded = jwk(&rsa1(), Algorithm::RS256, Some("padded"), true);
        padded["e"] = json!("AQAB");
        padded["n"] = json!(format!("{}==", padded["n"].as_str().unwrap()));
        let v = JwtValidator::from_jwks_json(&jwks(&[padded]), JwtConfig::new(ISSUER, AUDIENCE));
        // 2048-bit n is 256 bytes = 342 base64 chars + 2 padding, so padding is valid here.
        assert!(v.is_ok(), "{v:?}");
    }

    #[test]
    fn invalid_jwks_documents() {
        let config = || JwtConfig::new(ISSUER, AUDIENCE);
        for doc in [
            "",
            "[]",
            "{}",
            r#"{"keys": {}}"#,
            r#"{"keys": []}"#,
            r#"{"keys": [{"kty": "oct", "k": "AA"}]}"#,
        ] {
            let result = JwtValidator::from_jwks_json(doc, config());
            assert!(matches!(result, Err(JwtError::InvalidJwks(_))), "{doc}");
        }
        let huge = format!(r#"{{"keys": [], "x": "{}"}}"#, "a".repeat(MAX_JWKS_BYTES));
        assert!(matches!(
            JwtValidator::from_jwks_json(&huge, config()),
            Err(JwtError::InvalidJwks(_))
        ));
        let missing = JwtValidator::from_jwks_file("/nonexistent/jwks.json", config());
        assert!(
            matches!(missing, Err(JwtError::InvalidJwks(m)) if m.contains("/nonexistent/jwks.json"))
        );
    }

    #[test]
    fn jwks_from_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        std::fs::write(&path, default_jwks()).unwrap();
        let v = JwtValidator::from_jwks_file(&path, JwtConfig::new(ISSUER, AUDIENCE)).unwrap();
        assert_eq!(v.summary().key_ids.len(), 3);
        assert!(v.validate_at(&rs256(&claims()), NOW).is_ok());
    }

    #[test]
    fn config_deserialization() {
        let config: JwtConfig =
            serde_json::from_value(json!({ "issuer": ISSUER, "audience": AUDIENCE })).unwrap();
        assert_eq!(config, JwtConfig::new(ISSUER, AUDIENCE));
        assert_eq!(
            config.claims,
            ClaimNames {
                user: "sub".into(),
                team: "team".into(),
                role: "role".into()
            }
        );
        assert_eq!(config.leeway_secs, 30);
        assert_eq!(config.algorithms, JwtAlgorithm::ALL.to_vec());

        let config: JwtConfig = serde_json::from_value(json!({
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "claims": { "role": "groups" },
            "leeway_secs": 5,
            "algorithms": ["RS256", "ES256", "EdDSA"],
        }))
        .unwrap();
        assert_eq!(config.claims.role, "groups");
        assert_eq!(config.claims.user, "sub");
        assert_eq!(
            config.algorithms,
            vec![
                JwtAlgorithm::RS256,
                JwtAlgorithm::ES256,
                JwtAlgorithm::EdDSA
            ]
        );

        for bad in [
            json!({ "issuer": ISSUER, "audience": AUDIENCE, "jwks_url": "https://x" }),
            json!({ "issuer": ISSUER, "audience": AUDIENCE, "claims": { "email": "e" } }),
            json!({ "issuer": ISSUER, "audience": AUDIENCE, "algorithms": ["HS256"] }),
            json!({ "issuer": ISSUER, "audience": AUDIENCE, "algorithms": ["none"] }),
            json!({ "issuer": ISSUER }),
        ] {
            assert!(
                serde_json::from_value::<JwtConfig>(bad.clone()).is_err(),
                "{bad}"
            );
        }

        let check = |f: fn(&mut JwtConfig)| {
            let mut c = JwtConfig::new(ISSUER, AUDIENCE);
            f(&mut c);
            JwtValidator::from_jwks_json(&default_jwks(), c)
        };
        assert!(matches!(
            check(|c| c.issuer = " ".into()),
            Err(JwtError::InvalidConfig(_))
        ));
        assert!(matches!(
            check(|c| c.audience.clear()),
            Err(JwtError::InvalidConfig(_))
        ));
        assert!(matches!(
            check(|c| c.claims.team.clear()),
            Err(JwtError::InvalidConfig(_))
        ));
        assert!(matches!(
            check(|c| c.algorithms.clear()),
            Err(JwtError::InvalidConfig(_))
        ));
        assert!(matches!(
            check(|c| c.leeway_secs = 86_400),
            Err(JwtError::InvalidConfig(_))
        ));
    }

    #[test]
    fn algorithm_names() {
        for alg in JwtAlgorithm::ALL {
            assert_eq!(JwtAlgorithm::from_name(alg.as_str()), Some(alg));
            assert_eq!(alg.to_string(), alg.as_str());
            let parsed: JwtAlgorithm = serde_json::from_value(json!(alg.as_str())).unwrap();
            assert_eq!(parsed, alg);
        }
        for name in ["none", "HS256", "HS384", "HS512", "rs256", "ES512", ""] {
            assert_eq!(JwtAlgorithm::from_name(name), None, "{name}");
        }
    }

    #[test]
    fn errors_quote_untrusted_input_safely() {
        let v = validator();
        let header = b64(&json!({ "alg": format!("X\n{}", "y".repeat(500)) }));
        let token = format!("{header}.{}.", b64(&claims()));
        let Err(JwtError::UnsupportedAlgorithm(alg)) = v.validate_at(&token, NOW) else {
            panic!("expected UnsupportedAlgorithm");
        };
        assert!(!alg.contains('\n'));
        assert!(alg.chars().count() <= QUOTE_MAX_CHARS + 1);
        assert_eq!(JwtError::Expired.to_string(), "token has expired");
        assert_eq!(
            JwtError::TooLarge {
                max: MAX_TOKEN_BYTES
            }
            .to_string(),
            "token is larger than 8192 bytes"
        );
    }

    #[test]
    fn validator_is_shareable() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<JwtValidator>();
        let debug = format!("{:?}", validator());
        assert!(debug.contains("rsa-1") && !debug.contains("\"n\""));
    }
}

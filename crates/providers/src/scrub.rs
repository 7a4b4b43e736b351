//! Scrubbing of upstream error text before it leaves the crate.
//!
//! A provider may echo the credential it was sent ("Incorrect API key provided: Bearer sk-…"),
//! and that text would otherwise reach the caller (any virtual key) and the logs. A
//! [`Scrubber`] is built once per [`crate::client::ProviderHandle`] from every credential the
//! handle holds, and replaces by `[REDACTED]`:
//! - each credential verbatim, JSON-escaped and percent-encoded (upper- and lower-case hex);
//! - its base64, standard and URL-safe, padded or not, also where it sits inside a longer
//!   base64 text (`Basic dXNlcjpzay0…`, `base64("Bearer sk-…")`): the characters that encode
//!   only the credential's bytes are matched at each of the three byte alignments;
//! - a masked display showing both ends of a credential, `sk-abc1…wxyz` or
//!   `sk-abc1*****wxyz` (at least the first and last 4 characters of a credential of 16 or
//!   more).
//!
//! The existing secret patterns ([`plexus_core::redact::redact_credentials`]) are applied after that.
//! Scrubbing runs on error paths only; building the matcher is the only per-handle cost.

use crate::ProviderError;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;

const MARK: &str = "[REDACTED]";
/// Shorter values are not matched literally: no real credential is that short, and matching
/// one would cut ordinary words out of messages.
const MIN_SECRET_LEN: usize = 8;
/// A masked display is only matched for credentials at least this long (in characters)...
const MIN_MASKED_LEN: usize = 16;
/// ...and must show at least this many of the credential's characters at each end.
const MASKED_END: usize = 4;

/// What a provider handle matches in upstream error text. Its `Debug` shows counts only.
#[derive(Default)]
pub struct Scrubber {
    /// Literal forms of the credentials, longest first.
    literals: Vec<Literal>,
    /// Credentials long enough to be recognised from a masked display.
    masked: Vec<String>,
}

struct Literal {
    text: String,
    /// A base64 run: the match grows over the partly determined characters around it.
    base64: bool,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrubber")
            .field("literals", &self.literals.len())
            .field("masked", &self.masked.len())
            .finish()
    }
}

impl Scrubber {
    /// A scrubber for `secrets` (duplicates and values too short to be credentials are
    /// ignored).
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut literals: Vec<Literal> = Vec::new();
        let mut masked: Vec<String> = Vec::new();
        let mut add = |text: String, base64: bool| {
            if text.len() >= MIN_SECRET_LEN && !literals.iter().any(|l| l.text == text) {
                literals.push(Literal { text, base64 });
            }
        };
        for secret in secrets {
            let secret = secret.trim();
            if secret.len() < MIN_SECRET_LEN {
                continue;
            }
            add(secret.to_owned(), false);
            if let Ok(json) = serde_json::to_string(secret) {
                let json = json.trim_matches('"').to_owned();
                add(json.replace('/', "\\/"), false);
                add(json, false);
            }
            for all in [false, true] {
                add(percent_encode(secret, all, true), false);
                add(percent_encode(secret, all, false), false);
            }
            for core in base64_cores(secret.as_bytes()) {
                add(core, true);
            }
            if secret.chars().count() >= MIN_MASKED_LEN && !masked.iter().any(|m| m == secret) {
                masked.push(secret.to_owned());
            }
        }
        literals.sort_by_key(|l| std::cmp::Reverse(l.text.len()));
        Scrubber { literals, masked }
    }

    /// Whether there is no credential to look for (the secret patterns still apply).
    pub fn is_empty(&self) -> bool {
        self.literals.is_empty() && self.masked.is_empty()
    }

    /// `text` with every held credential and every secret pattern replaced by `[REDACTED]`.
    pub fn scrub(&self, text: &str) -> String {
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        let bytes = text.as_bytes();
        for literal in &self.literals {
            for (start, found) in text.match_indices(literal.text.as_str()) {
                let (mut start, mut end) = (start, start + found.len());
                if literal.base64 {
                    // One partly determined character on each side, then the padding.
                    if start > 0 && is_base64_char(bytes[start - 1]) {
                        start -= 1;
                    }
                    if end < bytes.len() && is_base64_char(bytes[end]) {
                        end += 1;
                    }
                    let mut pad = 0;
                    while pad < 2 && end < bytes.len() && bytes[end] == b'=' {
                        end += 1;
                        pad += 1;
                    }
                }
                ranges.push((start, end));
            }
        }
        for secret in &self.masked {
            masked_displays(text, secret, &mut ranges);
        }
        if ranges.is_empty() {
            return plexus_core::redact::redact_credentials(text);
        }
        ranges.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (i, (start, end)) in ranges.into_iter().enumerate() {
            if i > 0 && start <= at {
                // Overlapping or adjacent: extends the range already replaced.
                at = at.max(end);
                continue;
            }
            out.push_str(&text[at..start]);
            out.push_str(MARK);
            at = end;
        }
        out.push_str(&text[at..]);
        plexus_core::redact::redact_credentials(&out)
    }

    /// `err` with the text that came from the upstream scrubbed. Errors describing the
    /// client's own request (unsupported or invalid parameters) are returned unchanged.
    pub fn scrub_error(&self, err: ProviderError) -> ProviderError {
        match err {
            ProviderError::Upstream {
                status,
                code,
                message,
                retry_after,
            } => ProviderError::Upstream {
                status,
                code: code.map(|c| self.scrub(&c)),
                message: self.scrub(&message),
                retry_after,
            },
            ProviderError::Connect(message) => ProviderError::Connect(self.scrub(&message)),
            ProviderError::Decode(message) => ProviderError::Decode(self.scrub(&message)),
            ProviderError::Stream(message) => ProviderError::Stream(self.scrub(&message)),
            other => other,
        }
    }
}

fn is_base64_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_')
}

/// Every byte outside the URL-unreserved set (`all`: every byte but letters and digits) as
/// `%XX`.
fn percent_encode(text: &str, all: bool, upper: bool) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || !all && matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else if upper {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

/// The base64 characters that encode only bytes of `secret`, for each of the three byte
/// offsets it may start at, in both alphabets: one of them is a substring of any base64 text
/// that contains `secret`.
fn base64_cores(secret: &[u8]) -> Vec<String> {
    let mut cores = Vec::with_capacity(6);
    for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
        for offset in 0..3usize {
            let mut input = vec![0u8; offset];
            input.extend_from_slice(secret);
            let encoded = engine.encode(&input);
            // Character i holds bits 6i..6i+6 of the input; the secret's are 8*offset.. .
            let start = (8 * offset).div_ceil(6);
            let end = 8 * (offset + secret.len()) / 6;
            if let Some(core) = encoded.get(start..end) {
                cores.push(core.to_owned());
            }
        }
    }
    cores
}

fn is_mask_char(c: char) -> bool {
    matches!(c, '*' | '.' | '…' | '•' | '·')
}

/// Ranges of `text` showing `secret` masked in the middle: a prefix of it (at least
/// [`MASKED_END`] characters), a run of mask characters, then a suffix of it (at least
/// [`MASKED_END`] characters).
fn masked_displays(text: &str, secret: &str, ranges: &mut Vec<(usize, usize)>) {
    let Some((head_len, _)) = secret.char_indices().nth(MASKED_END) else {
        return;
    };
    let head = &secret[..head_len];
    // The shortest suffix allowed starts here (in bytes).
    let Some(min_tail) = secret
        .char_indices()
        .rev()
        .nth(MASKED_END - 1)
        .map(|(i, _)| i)
    else {
        return;
    };
    for (start, _) in text.match_indices(head) {
        let rest = &text[start..];
        // The longest prefix of `secret` shown.
        let mut shown = 0;
        for ((i, a), b) in rest.char_indices().zip(secret.chars()) {
            if a != b {
                break;
            }
            shown = i + a.len_utf8();
        }
        if shown >= secret.len() {
            continue; // the whole credential: a literal match
        }
        let after_prefix = &rest[shown..];
        let mask_len: usize = after_prefix
            .chars()
            .take_while(|c| is_mask_char(*c))
            .map(char::len_utf8)
            .sum();
        if mask_len == 0 {
            continue;
        }
        let after_mask = &after_prefix[mask_len..];
        // The longest suffix of `secret` that follows the mask.
        let tail = secret
            .char_indices()
            .map(|(i, _)| i)
            .filter(|i| *i > 0 && *i <= min_tail)
            .map(|i| &secret[i..])
            .find(|suffix| after_mask.starts_with(suffix));
        if let Some(tail) = tail {
            ranges.push((start, start + shown + mask_len + tail.len()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sk-live-9f8e7d6c5b4a39281706abcdEFGH";

    fn scrubbed(text: &str) -> String {
        Scrubber::new([KEY]).scrub(text)
    }

    fn assert_clean(out: &str) {
        assert!(!out.contains(KEY), "{out}");
        assert!(!out.contains("9f8e7d6c5b4a"), "{out}");
        assert!(out.contains(MARK), "{out}");
    }

    #[test]
    fn exact_value() {
        let out = scrubbed(&format!("Incorrect API key provided: Bearer {KEY}."));
        assert_eq!(out, "Incorrect API key provided: Bearer [REDACTED].");
        // Not after `Bearer `, and not looking like a known key format either.
        let odd = "x9Q!vLr#2mTz_local-secret";
        let out = Scrubber::new([odd]).scrub(&format!("key {odd} refused"));
        assert_eq!(out, "key [REDACTED] refused");
    }

    #[test]
    fn base64_forms() {
        for engine in [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            &base64::engine::general_purpose::URL_SAFE,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ] {
            for wrapped in [
                KEY.to_owned(),
                format!("Bearer {KEY}"),
                format!("user:{KEY}"),
                format!("ab{KEY}!"),
            ] {
                let encoded = engine.encode(wrapped.as_bytes());
                let out = scrubbed(&format!("got credentials {encoded} (rejected)"));
                assert!(!out.contains(&encoded), "{out}");
                assert!(out.contains(MARK) && out.ends_with(" (rejected)"), "{out}");
            }
        }
        // The whole run goes, padding included.
        let encoded = base64::engine::general_purpose::STANDARD.encode(KEY);
        assert_eq!(scrubbed(&format!("<{encoded}>")), "<[REDACTED]>");
    }

    #[test]
    fn percent_and_json_forms() {
        let key = "pass/word.with+odd&chars?1234";
        let s = Scrubber::new([key]);
        for form in [
            percent_encode(key, false, true),
            percent_encode(key, false, false),
            percent_encode(key, true, true),
            percent_encode(key, true, false),
            "pass\\/word.with+odd&chars?1234".to_owned(),
        ] {
            let out = s.scrub(&format!("invalid key '{form}'"));
            assert_eq!(out, "invalid key '[REDACTED]'", "{form}");
        }
        assert_eq!(
            s.scrub(&format!("key {key} ok")),
            "key [REDACTED] ok".to_owned()
        );
    }

    #[test]
    fn masked_displays_of_held_keys() {
        for shown in [
            "sk-l...EFGH",
            "sk-live-9f8e...EFGH",
            "sk-live*****************************EFGH",
            "sk-l…cdEFGH",
            "sk-live-9f8e7d6c5b4a39281706abcd****",
        ] {
            let out = scrubbed(&format!("Incorrect API key provided: {shown}. See docs."));
            if shown.ends_with("****") {
                // Only one end shown: not a recognisable display; the prefix rule of the
                // secret patterns still catches this one.
                assert!(!out.contains("9f8e7d6c5b4a"), "{out}");
                continue;
            }
            assert_eq!(
                out, "Incorrect API key provided: [REDACTED]. See docs.",
                "{shown}"
            );
        }
        // Ends of a different key are left alone.
        let other = "Incorrect API key provided: abcd...wxyz.";
        assert_eq!(scrubbed(other), other);
        // Short credentials are not matched from a display.
        let short = "abcdefgh1234";
        let s = Scrubber::new([short]);
        assert_eq!(
            s.scrub("key abcd...1234 refused"),
            "key abcd...1234 refused"
        );
        assert_eq!(
            s.scrub("key abcdefgh1234 refused"),
            "key [REDACTED] refused"
        );
    }

    #[test]
    fn secret_patterns_apply_too() {
        let s = Scrubber::new(std::iter::empty());
        assert!(s.is_empty());
        let out = s.scrub("Bearer sk-proj-abc123DEF456ghi789 is invalid");
        assert!(!out.contains("abc123DEF456"), "{out}");
        assert_eq!(
            s.scrub("The model `gpt-4o` does not exist"),
            "The model `gpt-4o` does not exist"
        );
    }

    #[test]
    fn short_values_and_debug() {
        let s = Scrubber::new(["short", "", "  "]);
        assert!(s.is_empty());
        assert_eq!(s.scrub("a short message"), "a short message");
        let s = Scrubber::new([KEY, KEY]);
        let debug = format!("{s:?}");
        assert!(!debug.contains("9f8e"), "{debug}");
        assert_eq!(s.masked.len(), 1);
    }

    #[test]
    fn overlapping_matches_and_unicode() {
        let out = scrubbed(&format!("é {KEY}{KEY} ✓ {KEY}"));
        assert_eq!(out, "é [REDACTED] ✓ [REDACTED]");
        assert_clean(&scrubbed(&format!("«{KEY}»")));
    }

    #[test]
    fn errors_are_scrubbed_field_by_field() {
        let s = Scrubber::new([KEY]);
        let err = s.scrub_error(ProviderError::Upstream {
            status: 401,
            code: Some("invalid_api_key".into()),
            message: format!("Incorrect API key provided: {KEY}"),
            retry_after: None,
        });
        match err {
            ProviderError::Upstream { code, message, .. } => {
                assert_eq!(code.as_deref(), Some("invalid_api_key"));
                assert_clean(&message);
            }
            other => panic!("{other:?}"),
        }
        for err in [
            ProviderError::Stream(format!("bad key {KEY}")),
            ProviderError::Decode(format!("invalid type: string \"{KEY}\"")),
            ProviderError::Connect(format!("refused {KEY}")),
        ] {
            assert_clean(&s.scrub_error(err).to_string());
        }
        let own = ProviderError::InvalidRequest {
            param: "model".into(),
            message: "`x` is not a valid model name".into(),
        };
        assert_eq!(
            s.scrub_error(own).to_string(),
            "`x` is not a valid model name"
        );
    }
}

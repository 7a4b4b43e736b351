//! Redaction of stored request and response bodies: secrets and personal data are replaced
//! by `[REDACTED]` before anything is written.
//!
//! Replaced: e-mail addresses; API-key-like tokens (`sk-...`, `sk_...`, `AKIA...`, `ghp_...`,
//! `xox?-...`, `AIza...`, and `Bearer <token>`); JWTs (`eyJ....`); runs of 12 to 19 digits,
//! spaces or dashes allowed (card numbers); and long unbroken runs of letters and digits
//! (24+ characters with both), which is what most other credentials look like.

const MARK: &str = "[REDACTED]";

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | '/' | '=')
}

/// Redacts `text`, returning a new string.
pub fn redact(text: &str) -> String {
    redact_with(text, Mode::Bodies)
}

/// Redacts credentials only (key-like tokens, JWTs, `Bearer` tokens, long letter-and-digit
/// runs without a hyphen), for upstream error text: model names such as
/// `claude-sonnet-4-5-20250929`, e-mail addresses and numbers stay readable.
pub fn redact_credentials(text: &str) -> String {
    redact_with(text, Mode::Credentials)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bodies,
    Credentials,
}

fn redact_with(text: &str, mode: Mode) -> String {
    let mut out = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        // A maximal run of token characters.
        if is_word(chars[i]) || chars[i] == '@' {
            let start = i;
            while i < chars.len() && (is_word(chars[i]) || chars[i] == '@') {
                i += 1;
            }
            let token: String = chars[start..i].iter().collect();
            if sensitive(&token, mode) {
                out.push_str(MARK);
            } else if follows_bearer(&out) {
                // "Bearer <token>": the token after the word.
                out.push_str(MARK);
            } else if mode == Mode::Bodies {
                out.push_str(&redact_digits(&token));
            } else {
                out.push_str(&token);
            }
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    match mode {
        Mode::Bodies => redact_spaced_digits(&out),
        Mode::Credentials => out,
    }
}

/// Whether the text so far ends with `Bearer ` (case-insensitive).
fn follows_bearer(out: &str) -> bool {
    out.len() >= 7
        && out.is_char_boundary(out.len() - 7)
        && out[out.len() - 7..].eq_ignore_ascii_case("bearer ")
}

fn sensitive(token: &str, mode: Mode) -> bool {
    let t = token.trim_matches(|c| c == '.' || c == '-');
    // E-mail: something@something.tld
    if mode == Mode::Bodies {
        if let Some((local, domain)) = t.split_once('@') {
            if !local.is_empty() && domain.contains('.') && !domain.starts_with('.') {
                return true;
            }
        }
    }
    const PREFIXES: [&str; 9] = [
        "sk-", "sk_", "pk_", "rk_", "AKIA", "ghp_", "gho_", "AIza", "xox",
    ];
    if PREFIXES.iter().any(|p| t.starts_with(p)) && t.len() >= 12 {
        return true;
    }
    if t.starts_with("eyJ") && t.matches('.').count() >= 2 {
        return true;
    }
    let letters = t.chars().filter(|c| c.is_ascii_alphabetic()).count();
    let digits = t.chars().filter(|c| c.is_ascii_digit()).count();
    t.len() >= 24
        && letters > 0
        && digits > 0
        && !t.contains('.')
        && !t.contains('/')
        && (mode == Mode::Bodies || !t.contains('-'))
}

/// Digit runs of 12 to 19 inside a token (card numbers written without separators).
fn redact_digits(token: &str) -> String {
    let digits = token.chars().filter(|c| c.is_ascii_digit()).count();
    if (12..=19).contains(&digits) && token.chars().all(|c| c.is_ascii_digit() || c == '-') {
        MARK.to_owned()
    } else {
        token.to_owned()
    }
}

/// Card numbers written in groups separated by spaces: `4111 1111 1111 1111`.
fn redact_spaced_digits(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() {
            let start = i;
            let mut digits = 0;
            let mut end = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == ' ') {
                if chars[i].is_ascii_digit() {
                    digits += 1;
                    end = i + 1;
                }
                i += 1;
            }
            if (12..=19).contains(&digits) {
                out.push_str(MARK);
            } else {
                out.extend(&chars[start..end]);
            }
            out.extend(&chars[end..i]);
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_personal_data_are_redacted() {
        let text = r#"{"content":"mail ada@example.com, key sk-proj-abc123DEF456ghi789, card 4111 1111 1111 1111 or 4111-1111-1111-1111, auth Bearer abcdef0123456789, aws AKIAIOSFODNN7EXAMPLE, token eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl, blob Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA"}"#;
        let r = redact(text);
        for secret in [
            "ada@example.com",
            "sk-proj-abc123DEF456ghi789",
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "abcdef0123456789",
            "AKIAIOSFODNN7EXAMPLE",
            "eyJhbGciOi",
            "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA",
        ] {
            assert!(!r.contains(secret), "{secret} survived: {r}");
        }
        assert!(r.contains("mail [REDACTED]"));
    }

    #[test]
    fn ordinary_text_is_kept() {
        let text = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"What is 2 + 2? The year 2024 had 366 days. Visit https://example.com/docs."}],"max_tokens":32}"#;
        assert_eq!(redact(text), text);
        assert_eq!(redact(""), "");
        assert_eq!(redact("héllo wörld ✓"), "héllo wörld ✓");
    }
}

#[cfg(test)]
mod credential_tests {
    use super::*;

    #[test]
    fn credentials_only_keeps_model_names_and_addresses_readable() {
        let text = "Model claude-sonnet-4-5-20250929 not found for ops@example.com; key sk-abcdefghijkl0123 and Bearer abc.def, token a1b2c3d4e5f6g7h8i9j0k1l2m3";
        let out = redact_credentials(text);
        assert!(out.contains("claude-sonnet-4-5-20250929"), "{out}");
        assert!(out.contains("ops@example.com"), "{out}");
        assert!(!out.contains("sk-abcdefghijkl0123"), "{out}");
        assert!(!out.contains("abc.def"), "{out}");
        assert!(!out.contains("a1b2c3d4e5f6g7h8i9j0k1l2m3"), "{out}");
        // Bodies are redacted more broadly.
        assert!(!redact(text).contains("ops@example.com"));
    }
}

//! Final-answer extraction: the answer a free-text model output commits to, as a canonical key so
//! that two outputs giving the same answer produce the same string.
//!
//! - `number`: the number after a final-answer marker (`\boxed{..}` first, then the last of
//!   `####`, "final answer", "the answer is", "answer:"), else the last number in the text.
//!   Thousands separators, `$`, a trailing `%` and trailing zeros are dropped: `1,000`, `1000`,
//!   `1000.0` and `$1,000` all give `"1000"`; `18%` gives `"18"`; `-3` and `0.5` are kept.
//!   **Fractions** (`3/4`, `\frac{3}{4}`) are reduced and, when they have a finite decimal
//!   expansion, written as that decimal (`3/4` → `"0.75"`, `6/8` → `"0.75"`, `4/2` → `"2"`), so
//!   they compare equal to the decimal a member may write instead; the others stay a reduced
//!   fraction (`2/6` → `"1/3"`). Numbers glued to a preceding letter (`GPT4`, `x2`) are not
//!   answers.
//! - `choice`: a letter A to E after a marker ("answer: (B)", "the answer is C", `\boxed{D}`),
//!   else the last letter standing alone: in parentheses, `(C)`, or alone on its line (`**C**`,
//!   `C.`). Letters inside words never count.
//! - `json`: the first JSON object or array (a ```` ```json ```` fence first), canonical: keys
//!   sorted, compact, numbers canonical as above (`1.0` = `1`).
//! - `text`: trimmed, whitespace collapsed to one space; deciding whether two texts agree is the
//!   judge's job (universal self-consistency).

use serde::{Deserialize, Serialize};

/// How the final answers of an orchestration are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnswerKind {
    Number,
    Choice,
    Json,
    Text,
}

/// The canonical final answer of `text` for `kind`, or `None` when it has none.
pub fn extract(kind: AnswerKind, text: &str) -> Option<String> {
    match kind {
        AnswerKind::Number => extract_number(text),
        AnswerKind::Choice => extract_choice(text),
        AnswerKind::Json => extract_json(text),
        AnswerKind::Text => normalize_text(text),
    }
}

/// Trimmed, whitespace-collapsed text; `None` when nothing is left.
pub fn normalize_text(text: &str) -> Option<String> {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    (!joined.is_empty()).then_some(joined)
}

// ---------------------------------------------------------------------------------------------
// Numbers

/// Final-answer markers for numbers and choices, lowercase; the text is searched lowercased.
const MARKERS: &[&str] = &[
    "####",
    "final answer",
    "the answer is",
    "answer is",
    "answer:",
];

/// The canonical final number of `text` (see the module docs).
pub fn extract_number(text: &str) -> Option<String> {
    let text = normalize_latex(text);
    if let Some(inner) = last_boxed(&text) {
        if let Some(last) = numbers_in(inner).pop() {
            return Some(last.canonical);
        }
    }
    let lower = text.to_ascii_lowercase();
    for end in marker_ends(&lower) {
        if let Some(first) = numbers_in(&text[end..]).into_iter().next() {
            return Some(first.canonical);
        }
    }
    numbers_in(&text).pop().map(|n| n.canonical)
}

/// Canonical form of one number written in text (`"$1,000.50"` → `"1000.5"`, `"3/4"` →
/// `"0.75"`), or `None` when `s` holds no number.
pub fn canonical_number(s: &str) -> Option<String> {
    let normalized = normalize_latex(s);
    let mut numbers = numbers_in(&normalized);
    (numbers.len() == 1).then(|| numbers.remove(0).canonical)
}

/// One number found in a text: its byte span and canonical form.
#[derive(Debug, Clone, PartialEq)]
struct NumberToken {
    start: usize,
    canonical: String,
}

/// The end offsets of every final-answer marker in `lower`, last first.
fn marker_ends(lower: &str) -> Vec<usize> {
    let mut ends: Vec<usize> = MARKERS
        .iter()
        .flat_map(|m| lower.match_indices(m).map(move |(i, _)| i + m.len()))
        .collect();
    ends.sort_unstable_by(|a, b| b.cmp(a));
    ends.dedup();
    ends
}

/// Rewrites the LaTeX a model writes around numbers into plain text: `\frac{a}{b}` (and
/// `\dfrac`, `\tfrac`) → `a/b`, `{,}` → `,`, `\$` → `$`, `\%` → `%`, thin spaces removed.
fn normalize_latex(text: &str) -> String {
    let mut out = text
        .replace("{,}", ",")
        .replace("\\$", "$")
        .replace("\\%", "%")
        .replace("\\,", "")
        .replace("\\!", "")
        .replace("\\dfrac", "\\frac")
        .replace("\\tfrac", "\\frac");
    while let Some(at) = out.find("\\frac") {
        let after = at + "\\frac".len();
        let Some((num, rest)) = braced(&out[after..]) else {
            // Not a well-formed \frac: drop the command, keep the rest.
            out.replace_range(at..after, "");
            continue;
        };
        let Some((den, _)) = braced(&out[after + rest..]) else {
            out.replace_range(at..after, "");
            continue;
        };
        let den_end = after + rest + den.len() + 2;
        let replacement = format!("{}/{}", num.trim(), den.trim());
        out.replace_range(at..den_end, &replacement);
    }
    out
}

/// When `s` starts with a balanced `{...}` (after optional spaces): its content and the offset
/// just past the closing brace.
fn braced(s: &str) -> Option<(&str, usize)> {
    let skipped = s.len() - s.trim_start().len();
    let body = &s[skipped..];
    if !body.starts_with('{') {
        return None;
    }
    let mut depth = 0usize;
    for (i, c) in body.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some((&body[1..i], skipped + i + 1));
                }
            }
            _ => {}
        }
    }
    None
}

/// The content of the last `\boxed{...}` (or `\fbox{...}`) in `text`.
fn last_boxed(text: &str) -> Option<&str> {
    let mut best: Option<(usize, &str)> = None;
    for cmd in ["\\boxed", "\\fbox"] {
        for (at, _) in text.match_indices(cmd) {
            if let Some((inner, _)) = braced(&text[at + cmd.len()..]) {
                if best.is_none_or(|(b, _)| at > b) {
                    best = Some((at, inner));
                }
            }
        }
    }
    best.map(|(_, inner)| inner)
}

/// Every number in `s`, in order.
fn numbers_in(s: &str) -> Vec<NumberToken> {
    let b = s.as_bytes();
    let n = b.len();
    let digit = |i: usize| i < n && b[i].is_ascii_digit();
    let mut out = Vec::new();
    let mut i = 0;
    while i < n {
        let starts = digit(i) || (b[i] == b'.' && digit(i + 1) && (i == 0 || !digit(i - 1)));
        if !starts {
            i += 1;
            continue;
        }
        if i > 0 && (b[i - 1].is_ascii_alphabetic() || b[i - 1] == b'_') {
            // Part of an identifier (`GPT4`, `x2`): skip the whole run.
            while i < n && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.') {
                i += 1;
            }
            continue;
        }
        let start = i;
        let mut j = i;
        let mut int_digits = String::new();
        while digit(j) {
            int_digits.push(b[j] as char);
            j += 1;
        }
        // Thousands groups: a comma followed by exactly three digits.
        let mut grouped = false;
        while !int_digits.is_empty()
            && j < n
            && b[j] == b','
            && digit(j + 1)
            && digit(j + 2)
            && digit(j + 3)
            && !digit(j + 4)
        {
            int_digits.push_str(&s[j + 1..j + 4]);
            grouped = true;
            j += 4;
        }
        let mut frac_digits = String::new();
        if j < n && b[j] == b'.' && digit(j + 1) {
            j += 1;
            while digit(j) {
                frac_digits.push(b[j] as char);
                j += 1;
            }
        }
        let negative = is_negative(s, start);
        // A fraction: integer over integer.
        if !grouped && frac_digits.is_empty() && j < n && b[j] == b'/' && digit(j + 1) {
            let mut k = j + 1;
            while digit(k) {
                k += 1;
            }
            if let Some(canonical) = canonical_fraction(negative, &int_digits, &s[j + 1..k]) {
                out.push(NumberToken { start, canonical });
                i = k;
                continue;
            }
        }
        out.push(NumberToken {
            start,
            canonical: canonical_decimal(negative, &int_digits, &frac_digits),
        });
        i = j;
    }
    out
}

/// Whether the number starting at `start` carries a minus sign: `-` (or U+2212) right before it
/// or before its `$`, itself not preceded by a letter, digit or `)` (so `3-4` is not `-4`).
fn is_negative(s: &str, start: usize) -> bool {
    let before = s[..start].strip_suffix('$').unwrap_or(&s[..start]);
    let Some(rest) = before
        .strip_suffix('-')
        .or_else(|| before.strip_suffix('\u{2212}'))
    else {
        return false;
    };
    !rest
        .chars()
        .next_back()
        .is_some_and(|c| c.is_alphanumeric() || c == ')')
}

/// The canonical decimal: no leading zeros, no trailing fractional zeros, no `-0`.
fn canonical_decimal(negative: bool, int_digits: &str, frac_digits: &str) -> String {
    let int = int_digits.trim_start_matches('0');
    let frac = frac_digits.trim_end_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let mut out = String::new();
    if negative && (int != "0" || !frac.is_empty()) {
        out.push('-');
    }
    out.push_str(int);
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    out
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// A reduced fraction, as a decimal when it terminates; `None` for a zero denominator or
/// numbers too large to reduce exactly.
fn canonical_fraction(negative: bool, num: &str, den: &str) -> Option<String> {
    let num: u128 = num.parse().ok()?;
    let den: u128 = den.parse().ok()?;
    if den == 0 {
        return None;
    }
    let g = gcd(num, den).max(1);
    let (num, den) = (num / g, den / g);
    let sign = if negative && num != 0 { "-" } else { "" };
    // Terminating iff the denominator has no prime factors but 2 and 5.
    let (mut rest, mut twos, mut fives) = (den, 0u32, 0u32);
    while rest % 2 == 0 {
        rest /= 2;
        twos += 1;
    }
    while rest % 5 == 0 {
        rest /= 5;
        fives += 1;
    }
    if rest != 1 {
        return Some(format!("{sign}{num}/{den}"));
    }
    let places = twos.max(fives);
    let scaled = 10u128
        .checked_pow(places)
        .and_then(|p| num.checked_mul(p))
        .map(|x| x / den);
    let Some(scaled) = scaled else {
        return Some(format!("{sign}{num}/{den}"));
    };
    let digits = format!("{scaled:0>width$}", width = places as usize + 1);
    let (int, frac) = digits.split_at(digits.len() - places as usize);
    Some(canonical_decimal(negative, int, frac))
}

// ---------------------------------------------------------------------------------------------
// Choices

/// Letters the choice kind accepts.
fn is_choice(c: char) -> bool {
    matches!(c, 'A'..='E')
}

/// The final choice letter of `text` (see the module docs).
pub fn extract_choice(text: &str) -> Option<String> {
    if let Some(inner) = last_boxed(text) {
        if let Some(letter) = letter_at_start(inner) {
            return Some(letter.to_string());
        }
    }
    let lower = text.to_ascii_lowercase();
    let mut ends = marker_ends(&lower);
    for extra in ["correct option is", "correct choice is", "option", "choice"] {
        ends.extend(lower.match_indices(extra).map(|(i, _)| i + extra.len()));
    }
    ends.sort_unstable_by(|a, b| b.cmp(a));
    for end in ends {
        if let Some(letter) = letter_at_start(&text[end..]) {
            return Some(letter.to_string());
        }
    }
    last_standalone_letter(text).map(|c| c.to_string())
}

/// A choice letter at the start of `s`, after spaces, punctuation, `**` and the words "option"
/// or "choice": `": (B)"`, `" C."`, `" **D**"`, `" option E"`. A lowercase letter counts only in
/// parentheses (`(b)`), since "a" is also a word.
fn letter_at_start(s: &str) -> Option<char> {
    let mut rest = s;
    loop {
        let trimmed = rest.trim_start_matches(|c: char| {
            c.is_whitespace() || matches!(c, ':' | '*' | '[' | '"' | '\'' | '$' | '{' | '=' | '-')
        });
        let lower = trimmed.to_ascii_lowercase();
        let word = ["option", "choice", "\\text", "\\mathrm", "\\textbf"]
            .iter()
            .find(|w| lower.starts_with(**w));
        match word {
            Some(w) => rest = &trimmed[w.len()..],
            None => {
                rest = trimmed;
                break;
            }
        }
    }
    let (paren, body) = match rest.strip_prefix('(') {
        Some(body) => (true, body.trim_start_matches('{')),
        None => (false, rest),
    };
    let mut chars = body.chars();
    let c = chars.next()?;
    let letter = if is_choice(c) {
        c
    } else if paren && is_choice(c.to_ascii_uppercase()) {
        c.to_ascii_uppercase()
    } else {
        return None;
    };
    match chars.next() {
        Some(next) if next.is_alphanumeric() => None,
        _ => Some(letter),
    }
}

/// The last letter A–E standing alone: `(C)` anywhere, or a line holding only the letter and
/// punctuation (`C`, `C.`, `**C**`, `C)`).
fn last_standalone_letter(text: &str) -> Option<char> {
    let mut best: Option<(usize, char)> = None;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    for w in chars.windows(3) {
        if let [(_, '('), (at, c), (_, ')')] = w {
            let upper = c.to_ascii_uppercase();
            if is_choice(upper) && best.is_none_or(|(b, _)| *at > b) {
                best = Some((*at, upper));
            }
        }
    }
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let core: String = line
            .chars()
            .filter(|c| !c.is_whitespace() && !matches!(c, '*' | '.' | ':' | '(' | ')' | '[' | ']'))
            .collect();
        let mut cs = core.chars();
        if let (Some(c), None) = (cs.next(), cs.next()) {
            if is_choice(c) && best.is_none_or(|(b, _)| offset > b) {
                best = Some((offset, c));
            }
        }
        offset += line.len();
    }
    best.map(|(_, c)| c)
}

// ---------------------------------------------------------------------------------------------
// JSON

/// The first JSON object or array in `text` (a ```` ```json ```` fence first), canonical.
pub fn extract_json(text: &str) -> Option<String> {
    if let Some(fenced) = fenced_json(text) {
        if let Some(found) = first_json(fenced) {
            return Some(found);
        }
    }
    first_json(text)
}

/// The body of the first ```` ```json ```` fence (or a bare ```` ``` ```` fence).
fn fenced_json(text: &str) -> Option<&str> {
    let lower = text.to_ascii_lowercase();
    let open = lower
        .find("```json")
        .map(|i| i + "```json".len())
        .or_else(|| lower.find("```").map(|i| i + 3))?;
    let body = &text[open..];
    let close = body.find("```").unwrap_or(body.len());
    Some(&body[..close])
}

/// The first position of `text` where a JSON object or array parses, canonical.
fn first_json(text: &str) -> Option<String> {
    for (at, c) in text.char_indices() {
        if c != '{' && c != '[' {
            continue;
        }
        let mut stream =
            serde_json::Deserializer::from_str(&text[at..]).into_iter::<serde_json::Value>();
        if let Some(Ok(value)) = stream.next() {
            let mut out = String::new();
            write_canonical(&value, &mut out);
            return Some(out);
        }
    }
    None
}

/// Compact JSON with sorted keys and canonical numbers, whatever order the map keeps.
fn write_canonical(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*key).clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(*key) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        Value::Number(n) => {
            let text = n.to_string();
            // Plain decimals are canonical (`1.0` = `1`); exponent forms keep serde's text.
            let plain = text
                .strip_prefix('-')
                .unwrap_or(&text)
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'.');
            if plain {
                let negative = text.starts_with('-');
                let digits = text.trim_start_matches('-');
                let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
                out.push_str(&canonical_decimal(negative, int, frac));
            } else {
                out.push_str(&text);
            }
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(s: &str) -> Option<String> {
        extract(AnswerKind::Number, s)
    }
    fn choice(s: &str) -> Option<String> {
        extract(AnswerKind::Choice, s)
    }
    fn json(s: &str) -> Option<String> {
        extract(AnswerKind::Json, s)
    }
    fn some(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    #[test]
    fn answer_kind_serde_is_lowercase() {
        assert_eq!(
            serde_json::to_string(&AnswerKind::Number).ok(),
            some("\"number\"")
        );
        let parsed: Result<AnswerKind, _> = serde_json::from_str("\"choice\"");
        assert_eq!(parsed.ok(), Some(AnswerKind::Choice));
        assert!(serde_json::from_str::<AnswerKind>("\"Number\"").is_err());
    }

    #[test]
    fn gsm8k_hash_marker() {
        let out = "Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips altogether in April and May.\n#### 72";
        assert_eq!(num(out), some("72"));
    }

    #[test]
    fn the_answer_is_dollars_with_period() {
        assert_eq!(
            num("She pays 3 * 6 = 18 dollars. The answer is $18."),
            some("18")
        );
    }

    #[test]
    fn marker_wins_over_last_number() {
        let out = "The answer is 42. (I checked it 3 times over 2 days.)";
        assert_eq!(num(out), some("42"));
        let out = "Final answer: 1,250\n\nNote: this assumes 5 workers.";
        assert_eq!(num(out), some("1250"));
    }

    #[test]
    fn last_number_without_marker() {
        assert_eq!(
            num("First 12 apples, then 7 more, so 19 in total."),
            some("19")
        );
        assert_eq!(num("no digits here"), None);
        assert_eq!(num(""), None);
    }

    #[test]
    fn thousands_dollars_and_trailing_zeros_are_equal() {
        for s in [
            "1,000",
            "1000",
            "1000.0",
            "$1,000",
            "$1,000.00",
            "The answer is 1000.000.",
        ] {
            assert_eq!(num(s), some("1000"), "{s}");
        }
        assert_eq!(num("1,000,000 people"), some("1000000"));
    }

    #[test]
    fn percent_decimals_negatives() {
        assert_eq!(num("The discount is 18%."), some("18"));
        assert_eq!(num("The answer is 0.50"), some("0.5"));
        assert_eq!(num("The answer is .5"), some("0.5"));
        assert_eq!(num("Final answer: -3"), some("-3"));
        assert_eq!(num("The temperature fell to −7 degrees."), some("-7"));
        assert_eq!(num("She owes -$25.50"), some("-25.5"));
        assert_eq!(num("The answer is -0.0"), some("0"));
        assert_eq!(num("The answer is 007"), some("7"));
    }

    #[test]
    fn a_hyphen_between_numbers_is_not_a_sign() {
        assert_eq!(num("Pages 3-4"), some("4"));
        assert_eq!(num("(2)-5"), some("5"));
    }

    #[test]
    fn boxed_latex() {
        assert_eq!(num("So $x = \\boxed{72}$."), some("72"));
        assert_eq!(
            num("Thus the probability is \\boxed{\\frac{3}{4}}."),
            some("0.75")
        );
        assert_eq!(num("\\boxed{3/4}"), some("0.75"));
        assert_eq!(num("\\boxed{\\dfrac{1}{3}}"), some("1/3"));
        assert_eq!(num("\\boxed{-\\frac{2}{6}}"), some("-1/3"));
        assert_eq!(num("\\boxed{1{,}000}"), some("1000"));
        assert_eq!(num("Total: \\boxed{\\$18}"), some("18"));
        assert_eq!(num("\\boxed{18 \\text{ dollars}} and later 99"), some("18"));
        // The last box counts (a model correcting itself).
        assert_eq!(num("\\boxed{5} wait, no: \\boxed{6}"), some("6"));
        // A box with no number falls back to the markers and the text.
        assert_eq!(num("\\boxed{x} so the answer is 4"), some("4"));
    }

    #[test]
    fn fractions_reduce_and_terminate_as_decimals() {
        assert_eq!(num("The answer is 6/8"), some("0.75"));
        assert_eq!(num("The answer is 4/2"), some("2"));
        assert_eq!(num("The answer is 1/8"), some("0.125"));
        assert_eq!(num("The answer is 2/6"), some("1/3"));
        assert_eq!(num("The answer is 0/5"), some("0"));
        // A zero denominator is not a fraction: 1 and 0 are two numbers.
        assert_eq!(num("The answer is 1/0"), some("1"));
        assert_eq!(num("Final answer: $\\frac{3}{4}$"), some("0.75"));
    }

    #[test]
    fn numbers_inside_identifiers_are_not_answers() {
        assert_eq!(num("According to GPT4 it is 12, not x2"), some("12"));
    }

    #[test]
    fn units_after_numbers() {
        assert_eq!(
            num("The train travels 120km in 2 hours, so the answer is 60km/h"),
            some("60")
        );
        assert_eq!(num("It weighs 3.5kg"), some("3.5"));
    }

    #[test]
    fn canonical_number_single_values() {
        assert_eq!(canonical_number("$1,000.50"), some("1000.5"));
        assert_eq!(canonical_number("3/4"), some("0.75"));
        assert_eq!(canonical_number("1 and 2"), None);
        assert_eq!(canonical_number("none"), None);
    }

    #[test]
    fn choice_after_markers() {
        assert_eq!(choice("Let's check each option.\nAnswer: (B)"), some("B"));
        assert_eq!(choice("Therefore, the answer is C."), some("C"));
        assert_eq!(choice("The correct option is **D**"), some("D"));
        assert_eq!(choice("Final answer: E"), some("E"));
        assert_eq!(choice("The answer is option A because ..."), some("A"));
        assert_eq!(choice("the answer is (b)"), some("B"));
        assert_eq!(choice("$\\boxed{D}$"), some("D"));
        assert_eq!(choice("\\boxed{\\text{C}}"), some("C"));
    }

    #[test]
    fn choice_fallback_to_standalone_letter() {
        assert_eq!(choice("Comparing (A) and (C), I pick (C)"), some("C"));
        assert_eq!(
            choice("After elimination we are left with:\n\n**B**\n"),
            some("B")
        );
        assert_eq!(choice("D."), some("D"));
        assert_eq!(choice("A"), some("A"));
    }

    #[test]
    fn choice_ignores_letters_in_words_and_out_of_range() {
        assert_eq!(choice("A train leaves Boston at noon."), None);
        assert_eq!(choice("The answer is Clearly wrong"), None);
        assert_eq!(choice("The answer is F"), None);
        assert_eq!(
            choice("Answer: a lot of reasoning, and (D) at the end"),
            some("D")
        );
        assert_eq!(choice(""), None);
    }

    #[test]
    fn json_first_object_canonical() {
        let out = "Here you go: {\"b\": 2, \"a\": [1, 2.0, {\"d\": null, \"c\": true}]} done";
        assert_eq!(
            json(out),
            some("{\"a\":[1,2,{\"c\":true,\"d\":null}],\"b\":2}")
        );
        assert_eq!(
            json("{\"a\":1,\"b\":2}"),
            json("{ \"b\" : 2 ,\n \"a\" : 1.0 }")
        );
    }

    #[test]
    fn json_in_fences_and_arrays() {
        let out = "Example {not json}.\n```json\n{\"name\": \"Ada\", \"age\": 36}\n```\n";
        assert_eq!(json(out), some("{\"age\":36,\"name\":\"Ada\"}"));
        assert_eq!(json("The list: [3, 1, 2]."), some("[3,1,2]"));
        assert_eq!(
            json("Invalid {\"a\": } then {\"ok\": -1.50}"),
            some("{\"ok\":-1.5}")
        );
        assert_eq!(json("no json at all"), None);
        assert_eq!(
            json("{\"s\": \"quote \\\" and unicode é\"}"),
            some("{\"s\":\"quote \\\" and unicode é\"}")
        );
    }

    #[test]
    fn realistic_number_outputs() {
        let math = "**Final Answer:** The final answer is $\\boxed{204}$. I hope it is correct.";
        assert_eq!(num(math), some("204"));
        assert_eq!(num("**Answer: 18**"), some("18"));
        assert_eq!(
            num("Step 1: 5 + 7 = 12\nStep 2: 12 * 3 = 36\n#### 1,234.50"),
            some("1234.5")
        );
        assert_eq!(num("Answer:\n\n  $ 45 per hour"), some("45"));
        assert_eq!(num("The list is 1,2,3"), some("3"));
        assert_eq!(num("x = -5"), some("-5"));
        assert_eq!(num("The answer is: 3 hours and 20 minutes"), some("3"));
    }

    #[test]
    fn realistic_choice_outputs() {
        assert_eq!(
            choice("I believe (B) is plausible.\nFinal Answer: The final answer is (D)."),
            some("D")
        );
        assert_eq!(choice("Answer: **(C)** 42"), some("C"));
        assert_eq!(choice("Answer:\n\nB"), some("B"));
        assert_eq!(
            choice("The answer is a bit tricky, but (E) fits."),
            some("E")
        );
    }

    #[test]
    fn text_is_trimmed_and_collapsed() {
        assert_eq!(
            extract(AnswerKind::Text, "  Paris\n\n is   the capital. "),
            some("Paris is the capital.")
        );
        assert_eq!(extract(AnswerKind::Text, " \n\t "), None);
    }
}

//! Deterministic content: answers, tool calls, JSON from schemas, embeddings.
//!
//! Every format's handler turns its request into an [`Input`]; [`generate`] turns that into a
//! format-neutral [`Reply`] that the handler renders. The same conversation therefore gets the
//! same answer whichever API it arrives through.

use serde_json::{Map, Value};

use crate::behavior::{Base, Knobs};

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a over the prompt's text segments, with a separator between segments.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(FNV_OFFSET)
    }
}

impl Fnv {
    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
    }

    pub fn segment(&mut self, text: &str) {
        self.write(text.as_bytes());
        self.write(&[0xff]);
    }
}

pub(crate) fn hash_str(s: &str) -> u64 {
    let mut h = Fnv::default();
    h.write(s.as_bytes());
    h.0
}

pub(crate) fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

const WORDS: [&str; 64] = [
    "the",
    "quick",
    "model",
    "answers",
    "every",
    "request",
    "with",
    "simulated",
    "tokens",
    "while",
    "latency",
    "stays",
    "low",
    "and",
    "streams",
    "flow",
    "through",
    "gateway",
    "routes",
    "across",
    "many",
    "providers",
    "so",
    "that",
    "tests",
    "remain",
    "stable",
    "under",
    "load",
    "bright",
    "river",
    "mountain",
    "signal",
    "vector",
    "cloud",
    "garden",
    "harbor",
    "lantern",
    "meadow",
    "orbit",
    "pixel",
    "quartz",
    "rocket",
    "silver",
    "timber",
    "urban",
    "velvet",
    "window",
    "yellow",
    "zephyr",
    "amber",
    "bridge",
    "canyon",
    "delta",
    "ember",
    "forest",
    "glacier",
    "horizon",
    "island",
    "jungle",
    "kernel",
    "lagoon",
    "marble",
    "nectar",
];

/// Text split into pieces, one per streamed chunk; a piece counts as one completion token.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Text {
    pub full: String,
    /// End offset of each piece in `full`.
    ends: Vec<usize>,
}

impl Text {
    pub fn pieces(&self) -> impl Iterator<Item = &str> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let piece = self.full.get(start..end).unwrap_or("");
            start = end;
            piece
        })
    }

    pub fn tokens(&self) -> u32 {
        u32::try_from(self.ends.len()).unwrap_or(u32::MAX)
    }

    /// Keeps the first `n` pieces; true when something was cut.
    fn truncate(&mut self, n: usize) -> bool {
        if self.ends.len() <= n {
            return false;
        }
        self.ends.truncate(n);
        let end = self.ends.last().copied().unwrap_or(0);
        self.full.truncate(end);
        true
    }

    /// Pieces are words with their leading whitespace, so that joining them gives `s` back.
    pub fn words(s: &str) -> Text {
        let mut ends = Vec::new();
        let mut in_word = false;
        for (i, c) in s.char_indices() {
            let space = c.is_whitespace();
            if space && in_word {
                ends.push(i);
            }
            in_word = !space;
        }
        if !s.is_empty() {
            match ends.last() {
                Some(&e) if e == s.len() => {}
                _ => ends.push(s.len()),
            }
        }
        Text {
            full: s.to_owned(),
            ends,
        }
    }

    /// Pieces of about four characters, for text without spaces such as compact JSON.
    pub fn chunks(s: &str, size: usize) -> Text {
        let mut ends = Vec::new();
        let mut count = 0;
        for (i, _) in s.char_indices() {
            if count == size {
                ends.push(i);
                count = 0;
            }
            count += 1;
        }
        if !s.is_empty() {
            ends.push(s.len());
        }
        Text {
            full: s.to_owned(),
            ends,
        }
    }

    /// A sentence of `n` words picked from the seed; it ends with a period unless cut short.
    pub fn sentence(seed: u64, n: u32, complete: bool) -> Text {
        let n = n as usize;
        let mut full = String::with_capacity(n * 8 + 1);
        let mut ends = Vec::with_capacity(n);
        for i in 0..n {
            let word = WORDS[(splitmix(seed.wrapping_add(i as u64)) % WORDS.len() as u64) as usize];
            if i == 0 {
                let mut chars = word.chars();
                if let Some(first) = chars.next() {
                    full.extend(first.to_uppercase());
                    full.push_str(chars.as_str());
                }
            } else {
                full.push(' ');
                full.push_str(word);
            }
            if complete && i + 1 == n {
                full.push('.');
            }
            ends.push(full.len());
        }
        Text { full, ends }
    }
}

/// A tool the request offers: its name and JSON schema.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ToolSpec<'a> {
    pub name: &'a str,
    pub schema: Option<&'a Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ToolMode<'a> {
    Auto,
    None,
    /// Must call some tool (`required` / `any` / `ANY`).
    Required,
    /// Must call this tool.
    Named(&'a str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Thinking {
    /// No reasoning at all.
    Off,
    /// Reasoning tokens are counted but the text is not returned.
    Hidden,
    /// Reasoning text is returned.
    Visible,
}

/// A request reduced to what the generator needs, whatever its format.
#[derive(Debug)]
pub(crate) struct Input<'a> {
    pub hash: u64,
    pub prompt_chars: usize,
    pub last_user: String,
    /// Text of the conversation's first user message: the original task.
    pub first_user: String,
    /// The request's `seed`, where the format has one.
    pub seed: Option<i64>,
    /// Contents of the tool results that end the conversation, if it ends with some.
    pub tool_results: Option<String>,
    /// Whether one of those results reports a failure (Anthropic `is_error`, Gemini `error`).
    pub tool_error: bool,
    pub tools: Vec<ToolSpec<'a>>,
    pub tool_mode: ToolMode<'a>,
    pub parallel_tool_calls: bool,
    /// Schema the answer must fit, when the request asks for JSON with a schema.
    pub json_schema: Option<&'a Value>,
    pub max_tokens: Option<u32>,
    pub n: u32,
    pub thinking: Thinking,
}

impl<'a> Input<'a> {
    pub fn new() -> Input<'a> {
        Input {
            hash: Fnv::default().0,
            prompt_chars: 0,
            last_user: String::new(),
            first_user: String::new(),
            seed: None,
            tool_results: None,
            tool_error: false,
            tools: Vec::new(),
            tool_mode: ToolMode::Auto,
            parallel_tool_calls: true,
            json_schema: None,
            max_tokens: None,
            n: 1,
            thinking: Thinking::Hidden,
        }
    }
}

/// Accumulates the prompt's text: its hash and its length.
#[derive(Debug, Default)]
pub(crate) struct Transcript {
    hash: Fnv,
    chars: usize,
}

impl Transcript {
    pub fn add(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        self.hash.segment(text);
        self.chars += text.chars().count();
    }

    pub fn finish(self, input: &mut Input<'_>) {
        input.hash = self.hash.0;
        input.prompt_chars = self.chars;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    Stop,
    Length,
    ToolCalls,
}

#[derive(Debug, Clone)]
pub(crate) struct ToolCallOut {
    pub name: String,
    pub args: Value,
    pub args_json: String,
}

#[derive(Debug, Clone)]
pub(crate) struct ChoiceOut {
    pub thinking: Option<Text>,
    pub text: Option<Text>,
    pub tool_calls: Vec<ToolCallOut>,
    pub finish: Finish,
    /// Tokens of the visible answer (text and tool calls).
    pub output_tokens: u32,
    /// Reasoning tokens, returned or not.
    pub reasoning_tokens: u32,
    /// Seed for signatures and ids that must not change between calls.
    pub seed: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub choices: Vec<ChoiceOut>,
    /// All prompt tokens, cached ones included.
    pub prompt_tokens: u32,
    pub cached_tokens: u32,
}

impl Reply {
    pub fn output_tokens(&self) -> u32 {
        self.choices.iter().map(|c| c.output_tokens).sum()
    }

    pub fn reasoning_tokens(&self) -> u32 {
        self.choices.iter().map(|c| c.reasoning_tokens).sum()
    }
}

const THINKING_WORDS: u32 = 8;
const THINK_SALT: u64 = 0x7468_696e_6b21;

pub(crate) fn prompt_tokens(chars: usize) -> u32 {
    u32::try_from(chars / 4).unwrap_or(u32::MAX).max(1)
}

pub(crate) fn generate(model: &str, input: &Input<'_>, knobs: &Knobs) -> Reply {
    let base = Base::of(model);
    let n = input.n.clamp(1, 128);
    let computed = prompt_tokens(input.prompt_chars);
    // A quiz model with a question answers it (the same way in every choice).
    let quiz = if base.quiz {
        crate::quiz::reply(model, input, knobs.quiz)
    } else {
        None
    };
    let mut choices = Vec::with_capacity(n as usize);
    for i in 0..n {
        let seed = splitmix(input.hash ^ u64::from(i).wrapping_mul(0x1000_0000_01b3));
        choices.push(one_choice(base, input, knobs, seed, quiz.as_deref()));
    }
    Reply {
        choices,
        prompt_tokens: computed.max(knobs.cached_tokens),
        cached_tokens: knobs.cached_tokens,
    }
}

fn one_choice(
    base: Base,
    input: &Input<'_>,
    knobs: &Knobs,
    seed: u64,
    quiz: Option<&str>,
) -> ChoiceOut {
    let (thinking, reasoning_tokens) = match (base.think, input.thinking) {
        (false, _) | (true, Thinking::Off) => (None, 0),
        (true, Thinking::Hidden) => (None, THINKING_WORDS),
        (true, Thinking::Visible) => (
            Some(Text::sentence(seed ^ THINK_SALT, THINKING_WORDS, true)),
            THINKING_WORDS,
        ),
    };
    let mut out = ChoiceOut {
        thinking,
        text: None,
        tool_calls: Vec::new(),
        finish: Finish::Stop,
        output_tokens: 0,
        reasoning_tokens,
        seed,
    };

    if base.agent || knobs.agent {
        if let Some(results) = &input.tool_results {
            let text = crate::agent::result_answer(results, input.tool_error);
            finish_text(&mut out, Text::words(&text), input.max_tokens);
            return out;
        }
        if let Some(call) =
            crate::agent::shell_call(&input.tools, input.tool_mode, &input.last_user)
        {
            let args_json = serde_json::to_string(&call.args).unwrap_or_else(|_| "{}".to_owned());
            out.output_tokens += u32::try_from(args_json.len() / 4)
                .unwrap_or(u32::MAX)
                .max(1);
            out.tool_calls.push(ToolCallOut {
                name: call.name,
                args: call.args,
                args_json,
            });
            out.finish = Finish::ToolCalls;
            return out;
        }
    }

    if let Some(answer) = quiz {
        finish_text(&mut out, Text::words(answer), input.max_tokens);
        return out;
    }

    // A conversation that ends with tool results gets its acknowledgement from a tool model.
    if let (true, Some(results)) = (base.tool, &input.tool_results) {
        let text = Text::words(&format!("Tool result received: {results}"));
        finish_text(&mut out, text, input.max_tokens);
        return out;
    }

    let forced = matches!(input.tool_mode, ToolMode::Required | ToolMode::Named(_));
    let may_call = !input.tools.is_empty() && input.tool_mode != ToolMode::None;
    if may_call && (base.tool || forced) {
        let picked: Vec<ToolSpec<'_>> = match input.tool_mode {
            ToolMode::Named(name) => input
                .tools
                .iter()
                .find(|t| t.name == name)
                .or(input.tools.first())
                .copied()
                .into_iter()
                .collect(),
            _ => {
                let count = if base.parallel && input.parallel_tool_calls {
                    2
                } else {
                    1
                };
                input.tools.iter().take(count).copied().collect()
            }
        };
        for tool in picked {
            let args = match tool.schema {
                Some(schema) => dummy(schema, schema, "", 0, false),
                None => Value::Object(Map::new()),
            };
            let args = if args.is_object() {
                args
            } else {
                Value::Object(Map::new())
            };
            let args_json = serde_json::to_string(&args).unwrap_or_else(|_| "{}".to_owned());
            out.output_tokens += u32::try_from(args_json.len() / 4)
                .unwrap_or(u32::MAX)
                .max(1);
            out.tool_calls.push(ToolCallOut {
                name: tool.name.to_owned(),
                args,
                args_json,
            });
        }
        out.finish = Finish::ToolCalls;
        return out;
    }

    if base.json {
        let value = match input.json_schema {
            Some(schema) => dummy(schema, schema, "", 0, true),
            None => {
                let answer = Text::sentence(seed, knobs.tokens.min(64), true);
                let mut m = Map::new();
                m.insert("answer".to_owned(), Value::String(answer.full));
                Value::Object(m)
            }
        };
        let json = serde_json::to_string(&value).unwrap_or_else(|_| "{}".to_owned());
        finish_text(&mut out, Text::chunks(&json, 4), input.max_tokens);
        return out;
    }

    let text = if base.echo {
        Text::words(&input.last_user)
    } else {
        match input.max_tokens {
            Some(max) if max < knobs.tokens => {
                out.finish = Finish::Length;
                Text::sentence(seed, max, false)
            }
            _ => Text::sentence(seed, knobs.tokens, true),
        }
    };
    finish_text(&mut out, text, input.max_tokens);
    out
}

fn finish_text(out: &mut ChoiceOut, mut text: Text, max_tokens: Option<u32>) {
    if let Some(max) = max_tokens {
        if text.truncate(max as usize) {
            out.finish = Finish::Length;
        }
    }
    out.output_tokens += text.tokens();
    out.text = Some(text);
}

const MAX_DEPTH: u32 = 8;

/// A value that fits `schema`: required properties (all of them when `all` is set or the
/// schema lists none) with typed dummy values. Understands the JSON Schema subset that the
/// three APIs accept, including Gemini's upper-case type names.
pub(crate) fn dummy(schema: &Value, root: &Value, name: &str, depth: u32, all: bool) -> Value {
    if depth > MAX_DEPTH {
        return Value::Null;
    }
    let Some(obj) = schema.as_object() else {
        return Value::String(format!("mock-{name}"));
    };
    if let Some(target) = obj
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| resolve(root, r))
    {
        return dummy(target, root, name, depth + 1, all);
    }
    if let Some(v) = obj.get("const") {
        return v.clone();
    }
    if let Some(first) = obj
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
    {
        return first.clone();
    }
    if let Some(v) = obj.get("default") {
        return v.clone();
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(alts) = obj.get(key).and_then(Value::as_array) {
            let pick = alts
                .iter()
                .find(|a| type_of(a).as_deref() != Some("null"))
                .or(alts.first());
            if let Some(alt) = pick {
                return dummy(alt, root, name, depth + 1, all);
            }
        }
    }
    let ty = type_of(schema).unwrap_or_else(|| {
        if obj.contains_key("properties") {
            "object".to_owned()
        } else if obj.contains_key("items") {
            "array".to_owned()
        } else {
            "string".to_owned()
        }
    });
    match ty.as_str() {
        "object" => {
            let mut out = Map::new();
            let props = obj.get("properties").and_then(Value::as_object);
            let required: Option<Vec<&str>> = obj
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect());
            if let Some(props) = props {
                for (key, sub) in props {
                    let wanted = match &required {
                        Some(req) if !all => req.contains(&key.as_str()),
                        _ => true,
                    };
                    if wanted {
                        out.insert(key.clone(), dummy(sub, root, key, depth + 1, all));
                    }
                }
            }
            Value::Object(out)
        }
        "array" => {
            let count = obj
                .get("minItems")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .clamp(1, 3);
            let item = obj
                .get("items")
                .map_or(Value::String(format!("mock-{name}")), |s| {
                    dummy(s, root, name, depth + 1, all)
                });
            Value::Array(vec![item; count as usize])
        }
        "integer" => {
            let min = obj.get("minimum").and_then(Value::as_i64).unwrap_or(1);
            let max = obj
                .get("maximum")
                .and_then(Value::as_i64)
                .unwrap_or(i64::MAX);
            Value::from(min.max(1).min(max))
        }
        "number" => {
            let min = obj.get("minimum").and_then(Value::as_f64).unwrap_or(1.5);
            let max = obj
                .get("maximum")
                .and_then(Value::as_f64)
                .unwrap_or(f64::MAX);
            Value::from(min.min(max))
        }
        "boolean" => Value::Bool(true),
        "null" => Value::Null,
        _ => {
            let s = match obj.get("format").and_then(Value::as_str) {
                Some("date-time") => "2024-01-01T00:00:00Z".to_owned(),
                Some("date") => "2024-01-01".to_owned(),
                Some("time") => "00:00:00".to_owned(),
                Some("email") => "mock@example.com".to_owned(),
                Some("uri") | Some("url") => "https://example.com/mock".to_owned(),
                Some("uuid") => "00000000-0000-4000-8000-000000000000".to_owned(),
                _ if name.is_empty() => "mock".to_owned(),
                _ => format!("mock-{name}"),
            };
            Value::String(s)
        }
    }
}

/// The schema's type in lower case; the first non-null one when it lists several.
fn type_of(schema: &Value) -> Option<String> {
    match schema.get("type")? {
        Value::String(s) => Some(s.to_ascii_lowercase()),
        Value::Array(types) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| !t.eq_ignore_ascii_case("null"))
            .or_else(|| types.iter().filter_map(Value::as_str).next())
            .map(str::to_ascii_lowercase),
        _ => None,
    }
}

/// Resolves a local `$ref` such as `#/$defs/Item` or `#/definitions/Item`.
fn resolve<'v>(root: &'v Value, reference: &str) -> Option<&'v Value> {
    let pointer = reference.strip_prefix('#')?;
    root.pointer(pointer)
}

/// Largest embedding served, whatever the request asks.
pub(crate) const MAX_DIMENSIONS: u32 = 65_536;

/// A deterministic unit vector for `text`: equal texts give equal vectors.
pub(crate) fn embedding(text_hash: u64, dims: usize) -> Vec<f32> {
    let dims = dims.max(1);
    let mut v: Vec<f32> = (0..dims)
        .map(|i| {
            let x = splitmix(text_hash.wrapping_add(i as u64));
            // 24 random bits mapped onto [-1, 1).
            ((x >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in &mut v {
            *x /= norm;
        }
    } else if let Some(first) = v.first_mut() {
        *first = 1.0;
    }
    v
}

/// Little-endian f32 bytes, base64-encoded, as OpenAI's `encoding_format: base64` returns.
pub(crate) fn embedding_base64(v: &[f32]) -> String {
    use base64::Engine;
    let mut bytes = Vec::with_capacity(v.len() * 4);
    for x in v {
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Tokens of a token-id input, hashed like text so equal inputs give equal vectors.
pub(crate) fn hash_tokens(tokens: &[Value]) -> u64 {
    let mut h = Fnv::default();
    for t in tokens {
        h.write(&t.as_u64().unwrap_or(0).to_le_bytes());
    }
    h.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn word_splitting_round_trips() {
        let t = Text::words("  hello big   world ");
        let pieces: Vec<&str> = t.pieces().collect();
        assert_eq!(pieces.concat(), "  hello big   world ");
        assert_eq!(pieces, vec!["  hello", " big", "   world", " "]);
        let t = Text::words("one");
        assert_eq!(t.tokens(), 1);
        assert_eq!(Text::words("").tokens(), 0);
        let t = Text::chunks("héllo wörld", 4);
        assert_eq!(t.pieces().collect::<Vec<_>>().concat(), "héllo wörld");
        assert_eq!(t.tokens(), 3);
    }

    #[test]
    fn sentences_are_deterministic() {
        let a = Text::sentence(42, 12, true);
        assert_eq!(a, Text::sentence(42, 12, true));
        assert_eq!(a.tokens(), 12);
        assert!(a.full.ends_with('.'));
        assert!(a.full.chars().next().unwrap().is_uppercase());
        assert_ne!(a, Text::sentence(43, 12, true));
        let mut t = a.clone();
        assert!(t.truncate(3));
        assert_eq!(t.tokens(), 3);
        assert!(a.full.starts_with(&t.full));
    }

    #[test]
    fn dummy_values_fit_schemas() {
        let schema = json!({
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["c", "f"]},
                "days": {"type": "integer", "minimum": 3},
                "tags": {"type": "array", "items": {"type": "string"}},
                "item": {"$ref": "#/$defs/Item"},
                "maybe": {"anyOf": [{"type": "null"}, {"type": "number"}]},
                "opt": {"type": "boolean"}
            },
            "required": ["city", "unit", "days", "tags", "item", "maybe"],
            "$defs": {"Item": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}}
        });
        let v = dummy(&schema, &schema, "", 0, false);
        assert_eq!(
            v,
            json!({"city": "mock-city", "unit": "c", "days": 3, "tags": ["mock-tags"], "item": {"id": 1}, "maybe": 1.5})
        );
        let all = dummy(&schema, &schema, "", 0, true);
        assert_eq!(all["opt"], true);
        let gemini =
            json!({"type": "OBJECT", "properties": {"n": {"type": "NUMBER"}}, "required": ["n"]});
        assert_eq!(dummy(&gemini, &gemini, "", 0, false), json!({"n": 1.5}));
    }

    #[test]
    fn embeddings_are_unit_and_deterministic() {
        let a = embedding(hash_str("hello"), 16);
        assert_eq!(a.len(), 16);
        assert_eq!(a, embedding(hash_str("hello"), 16));
        assert_ne!(a, embedding(hash_str("world"), 16));
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        assert_eq!(embedding_base64(&[1.0]), "AACAPw==");
    }
}

//! The admin part of `docs/openapi.json` checked against the wire types the server answers
//! with (`plexus_protocol::admin`), so the published description cannot drift from them.
//!
//! - Every admin operation is listed below with its request and response schema, and the spec
//!   says exactly that (the request body's `$ref`, the one success status and its `$ref`).
//! - A request schema is checked against what the struct's deserializer (what the server runs)
//!   accepts: the property names, which are required (removing one fails), whether unknown
//!   properties are refused, and for every property which JSON types are accepted (a sample of
//!   each type in turn: the spec's `integer` admits `7` and `7.0` and refuses `1.5`; `null`
//!   exactly where the spec says so). `id` and `name` say `minLength: 1`, periods the pattern
//!   the server checks.
//! - A response schema is checked against fully populated and minimal values of the struct as
//!   serialized: property names, `required` (present in every value), the JSON type of every
//!   value (`null` exactly where a value can be null), `const` and `enum`, recursively through
//!   `$ref`, arrays and nested objects.
//! - Query parameters are checked against the SDK's query structs the same way.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use plexus_protocol::admin::*;
use plexus_protocol::money::Nanos;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Every admin operation: method, path, request schema, success status, response schema.
const OPERATIONS: &[(&str, &str, Option<&str>, &str, &str)] = &[
    ("post", "/admin/keys", Some("CreateKey"), "201", "Key"),
    ("get", "/admin/keys", None, "200", "KeyList"),
    ("get", "/admin/keys/{id}", None, "200", "Key"),
    ("patch", "/admin/keys/{id}", Some("PatchKey"), "200", "Key"),
    ("delete", "/admin/keys/{id}", None, "200", "KeyRevoked"),
    (
        "post",
        "/admin/keys/{id}/rotate",
        Some("RotateKey"),
        "201",
        "Key",
    ),
    ("post", "/admin/orgs", Some("CreateOrg"), "201", "Org"),
    ("get", "/admin/orgs", None, "200", "OrgList"),
    ("get", "/admin/orgs/{id}", None, "200", "Org"),
    ("post", "/admin/teams", Some("CreateTeam"), "201", "Team"),
    ("get", "/admin/teams", None, "200", "TeamList"),
    ("get", "/admin/teams/{id}", None, "200", "Team"),
    (
        "patch",
        "/admin/teams/{id}",
        Some("PatchTeam"),
        "200",
        "Team",
    ),
    ("delete", "/admin/teams/{id}", None, "200", "Deleted"),
    ("post", "/admin/users", Some("CreateUser"), "201", "User"),
    ("get", "/admin/users", None, "200", "UserList"),
    ("get", "/admin/users/{id}", None, "200", "User"),
    (
        "patch",
        "/admin/users/{id}",
        Some("PatchUser"),
        "200",
        "User",
    ),
    ("delete", "/admin/users/{id}", None, "200", "Deleted"),
    ("get", "/admin/spend", None, "200", "Spend"),
    ("get", "/admin/requests/{id}", None, "200", "RequestEntry"),
    ("get", "/admin/audit", None, "200", "AuditList"),
    (
        "post",
        "/admin/credentials",
        Some("CreateCredential"),
        "201",
        "Credential",
    ),
    ("get", "/admin/credentials", None, "200", "CredentialList"),
    (
        "delete",
        "/admin/credentials/{id}",
        None,
        "200",
        "CredentialRetired",
    ),
    ("get", "/admin/cache", None, "200", "CacheStats"),
    ("delete", "/admin/cache", None, "200", "CachePurged"),
];

const JSON_TYPES: [&str; 7] = [
    "null", "boolean", "integer", "number", "string", "array", "object",
];

struct Checker {
    spec: Value,
    problems: Vec<String>,
    /// The component schemas checked so far.
    checked: BTreeSet<String>,
}

fn ref_name(s: &Value) -> Option<&str> {
    s.get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
}

fn types(s: &Value) -> Vec<String> {
    match s.get("type") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Whether a value of JSON type `t` is valid for a schema of `types`.
fn allows(types: &[String], t: &str) -> bool {
    types.iter().any(|x| x == t) || (t == "integer" && types.iter().any(|x| x == "number"))
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn string_set(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

impl Checker {
    fn new() -> Checker {
        Checker {
            spec: serde_json::from_str(plexus_server::OPENAPI).unwrap(),
            problems: Vec::new(),
            checked: BTreeSet::new(),
        }
    }

    fn problem(&mut self, p: String) {
        self.problems.push(p);
    }

    fn schema(&self, name: &str) -> Value {
        self.spec["components"]["schemas"]
            .get(name)
            .cloned()
            .unwrap_or(Value::Null)
    }

    fn resolve(&self, s: &Value) -> Value {
        match ref_name(s) {
            Some(name) => self.schema(name),
            None => s.clone(),
        }
    }

    fn same_names(&mut self, what: &str, spec: BTreeSet<String>, ours: BTreeSet<String>) {
        let only_spec: Vec<_> = spec.difference(&ours).collect();
        let only_ours: Vec<_> = ours.difference(&spec).collect();
        if !only_spec.is_empty() || !only_ours.is_empty() {
            self.problem(format!(
                "{what}: only in the spec {only_spec:?}, only in the struct {only_ours:?}"
            ));
        }
    }

    /// A request body schema against the deserializer of `T`, from a value with every field.
    fn request<T: Serialize + DeserializeOwned>(&mut self, name: &str, full: T) {
        self.checked.insert(name.to_owned());
        let s = self.schema(name);
        if !s.is_object() {
            self.problem(format!("{name}: no such component schema"));
            return;
        }
        let full = serde_json::to_value(&full).unwrap();
        let accepts = |v: &Value| serde_json::from_value::<T>(v.clone()).is_ok();
        if !accepts(&full) {
            self.problem(format!("{name}: the full example is refused: {full}"));
        }
        let props = s["properties"].as_object().cloned().unwrap_or_default();
        self.same_names(
            &format!("{name} properties"),
            props.keys().cloned().collect(),
            keys(&full),
        );
        let closed = s.get("additionalProperties") == Some(&Value::Bool(false));
        let mut unknown = full.clone();
        unknown["zz_not_a_field"] = json!(1);
        if closed == accepts(&unknown) {
            self.problem(format!(
                "{name}: additionalProperties is {} but an unknown field is {}",
                if closed { "false" } else { "allowed" },
                if accepts(&unknown) {
                    "accepted"
                } else {
                    "refused"
                }
            ));
        }
        let required = string_set(&s["required"]);
        let mut needed = BTreeSet::new();
        for f in keys(&full) {
            let mut without = full.clone();
            without.as_object_mut().unwrap().remove(&f);
            if !accepts(&without) {
                needed.insert(f);
            }
        }
        self.same_names(&format!("{name} required"), required, needed);
        for (f, ps) in &props {
            let ts = types(ps);
            if ts.is_empty() {
                self.problem(format!("{name}.{f}: no type"));
                continue;
            }
            if (f == "id" || f == "name") && ps.get("minLength") != Some(&json!(1)) {
                self.problem(format!(
                    "{name}.{f}: no minLength 1 (the server refuses \"\")"
                ));
            }
            if (f == "budget_period" || f == "expires_in")
                && ps.get("pattern") != Some(&json!(PERIOD_PATTERN))
            {
                self.problem(format!("{name}.{f}: not the pattern the server checks"));
            }
            let own = full.get(f).cloned().unwrap_or(Value::Null);
            for t in JSON_TYPES {
                let first_string = ps
                    .get("enum")
                    .and_then(Value::as_array)
                    .and_then(|e| e.iter().find(|v| v.is_string()).cloned())
                    .unwrap_or(json!("x"));
                let samples = match t {
                    "null" => vec![Value::Null],
                    "boolean" => vec![json!(true)],
                    "integer" => vec![json!(7), json!(7.0)],
                    "number" => vec![json!(1.5)],
                    "string" => vec![first_string],
                    "array" => vec![if own.is_array() {
                        own.clone()
                    } else {
                        json!([])
                    }],
                    _ => vec![if own.is_object() {
                        own.clone()
                    } else {
                        json!({})
                    }],
                };
                let expected = match t {
                    "integer" => allows(&ts, "integer"),
                    other => ts.iter().any(|x| x == other),
                };
                for sample in samples {
                    let mut v = full.clone();
                    v[f.as_str()] = sample.clone();
                    let accepted = accepts(&v);
                    if accepted != expected {
                        self.problem(format!(
                            "{name}.{f}: {sample} is {} but the spec says {ts:?}",
                            if accepted { "accepted" } else { "refused" }
                        ));
                    }
                }
            }
        }
    }

    /// A response schema (by name) against serialized values of its struct.
    fn response<T: Serialize>(&mut self, name: &str, examples: &[T]) {
        let values: Vec<Value> = examples
            .iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .collect();
        let s = json!({"$ref": format!("#/components/schemas/{name}")});
        self.values(name, &s, &values, true);
    }

    /// A schema (inline or `$ref`) against values. Strictly (`full`), the values show every
    /// property and `required` is what all of them have; a schema named inside another is
    /// checked for what its values show (it gets its own full check).
    fn values(&mut self, at: &str, s: &Value, values: &[Value], full: bool) {
        let full = full || ref_name(s).is_none();
        if let Some(name) = ref_name(s) {
            self.checked.insert(name.to_owned());
        }
        let s = self.resolve(s);
        if s.is_null() {
            self.problem(format!("{at}: no such schema"));
            return;
        }
        let ts = types(&s);
        if !ts.is_empty() && (ts.iter().any(|t| t == "null")) != values.iter().any(Value::is_null) {
            self.problem(format!(
                "{at}: the spec says {ts:?}, null {} in the examples",
                if values.iter().any(Value::is_null) {
                    "appears"
                } else {
                    "never appears"
                }
            ));
        }
        for v in values.iter().filter(|v| !v.is_null()) {
            if !ts.is_empty() && !allows(&ts, json_type(v)) {
                self.problem(format!("{at}: {v} is not of the spec's {ts:?}"));
            }
            if let Some(c) = s.get("const") {
                if c != v {
                    self.problem(format!("{at}: {v} is not the spec's const {c}"));
                }
            }
            if let Some(e) = s.get("enum").and_then(Value::as_array) {
                if !e.contains(v) {
                    self.problem(format!("{at}: {v} is not in the spec's enum"));
                }
            }
        }
        let objects: Vec<&Map<String, Value>> =
            values.iter().filter_map(Value::as_object).collect();
        if let Some(props) = s.get("properties").and_then(Value::as_object) {
            let mut all = BTreeSet::new();
            let mut every: Option<BTreeSet<String>> = None;
            for o in &objects {
                let k: BTreeSet<String> = o.keys().cloned().collect();
                all.extend(k.iter().cloned());
                every = Some(match every {
                    None => k,
                    Some(e) => e.intersection(&k).cloned().collect(),
                });
            }
            let (declared, required) =
                (props.keys().cloned().collect(), string_set(&s["required"]));
            let every = every.unwrap_or_default();
            if objects.is_empty() {
                // Nothing to compare.
            } else if full {
                self.same_names(&format!("{at} properties"), declared, all);
                self.same_names(&format!("{at} required"), required, every);
            } else {
                let unknown: Vec<_> = all.difference(&declared).collect();
                let absent: Vec<_> = required.difference(&every).collect();
                if !unknown.is_empty() || !absent.is_empty() {
                    self.problem(format!(
                        "{at}: properties not in the spec {unknown:?}, required but absent {absent:?}"
                    ));
                }
            }
            for (f, ps) in props {
                let inner: Vec<Value> = objects.iter().filter_map(|o| o.get(f).cloned()).collect();
                if !inner.is_empty() {
                    self.values(&format!("{at}.{f}"), ps, &inner, false);
                }
            }
        }
        if let Some(extra) = s.get("additionalProperties").filter(|a| a.is_object()) {
            let inner: Vec<Value> = objects.iter().flat_map(|o| o.values().cloned()).collect();
            if !inner.is_empty() {
                self.values(&format!("{at}.*"), extra, &inner, false);
            }
        }
        if let Some(items) = s.get("items") {
            let inner: Vec<Value> = values
                .iter()
                .filter_map(Value::as_array)
                .flatten()
                .cloned()
                .collect();
            if !inner.is_empty() {
                self.values(&format!("{at}[]"), items, &inner, false);
            }
        }
    }

    /// The query parameters of an operation against a query struct with every field set.
    fn query<T: Serialize>(&mut self, method: &str, path: &str, full: T) {
        let full = serde_json::to_value(&full).unwrap();
        let params = self.query_params(method, path);
        self.same_names(
            &format!("{method} {path} query parameters"),
            params.keys().cloned().collect(),
            keys(&full),
        );
        for (name, schema) in params {
            let v = &full[name.as_str()];
            let ts = types(&schema);
            if !allows(&ts, json_type(v)) {
                self.problem(format!(
                    "{method} {path} ?{name}: {v} is not of the spec's {ts:?}"
                ));
            }
            if let Some(e) = schema.get("enum").and_then(Value::as_array) {
                if !e.contains(v) {
                    self.problem(format!("{method} {path} ?{name}: {v} not in the enum"));
                }
            }
        }
    }

    fn query_params(&self, method: &str, path: &str) -> BTreeMap<String, Value> {
        self.spec["paths"][path][method]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "query")
            .map(|p| {
                (
                    p["name"].as_str().unwrap_or("").to_owned(),
                    p["schema"].clone(),
                )
            })
            .collect()
    }
}

fn limits() -> Limits {
    Limits {
        max_budget_usd: Some(Nanos(1_500_000_000)),
        budget_period: Some("30d".into()),
        rpm: Some(60),
        tpm: Some(1000),
        tpd: Some(100_000),
        max_parallel: Some(4),
    }
}

fn limits_patch() -> LimitsPatch {
    LimitsPatch::set(limits())
}

fn meta() -> Map<String, Value> {
    Map::from_iter([("env".to_owned(), json!("ci"))])
}

fn key_full() -> Key {
    Key {
        id: "key_1".into(),
        object: Key::OBJECT.into(),
        name: "ci".into(),
        team: Some("red".into()),
        user: Some("ada".into()),
        role: "member".into(),
        models: vec!["gpt-*".into()],
        metadata: Value::Object(meta()),
        expires_at: Some(2_000_000_000),
        limits: limits(),
        created_at: 1_700_000_000,
        revoked: true,
        revoked_at: Some(1_700_000_100),
        rotated_from: Some("key_0".into()),
        key: Some("sk-px-secret".into()),
        warning: Some("no master key".into()),
        extra: Map::new(),
    }
}

fn key_min() -> Key {
    Key {
        id: "key_2".into(),
        object: Key::OBJECT.into(),
        name: "bare".into(),
        role: "viewer".into(),
        metadata: json!({}),
        created_at: 1_700_000_000,
        ..Key::default()
    }
}

fn team_full() -> Team {
    Team {
        id: "red".into(),
        object: Team::OBJECT.into(),
        name: "Red".into(),
        org: Some("acme".into()),
        limits: limits(),
        metadata: Value::Object(meta()),
        created_at: 1,
        extra: Map::new(),
    }
}

fn team_min() -> Team {
    Team {
        id: "blue".into(),
        object: Team::OBJECT.into(),
        name: "blue".into(),
        metadata: json!({}),
        ..Team::default()
    }
}

fn user_full() -> User {
    User {
        id: "ada".into(),
        object: User::OBJECT.into(),
        name: "Ada".into(),
        team: Some("red".into()),
        role: "team_admin".into(),
        limits: limits(),
        created_at: 1,
        extra: Map::new(),
    }
}

fn user_min() -> User {
    User {
        id: "bob".into(),
        object: User::OBJECT.into(),
        name: "bob".into(),
        role: "member".into(),
        ..User::default()
    }
}

fn org(teams: Option<Vec<String>>) -> Org {
    Org {
        id: "acme".into(),
        object: Org::OBJECT.into(),
        name: "Acme".into(),
        created_at: 1,
        teams,
        extra: Map::new(),
    }
}

fn credential(retired: Option<i64>) -> Credential {
    Credential {
        id: "cred_1".into(),
        object: Credential::OBJECT.into(),
        provider: "openai".into(),
        version: 2,
        secret: "sk-...abcd".into(),
        kek_id: "kek-1".into(),
        created_at: 1,
        expires_at: retired.map(|r| r + 10),
        retired_at: retired,
        extra: Map::new(),
    }
}

fn spend_row(name: SpendName, nanos: i64) -> SpendRow {
    SpendRow {
        name: Some(name),
        requests: 3,
        prompt_tokens: 30,
        completion_tokens: 12,
        cost_usd: Nanos(nanos),
        extra: Map::new(),
    }
}

fn audit_entry(seq: i64, details: Value) -> AuditEntry {
    AuditEntry {
        seq,
        ts_ms: 1_700_000_000_000,
        actor: "master".into(),
        action: "key.create".into(),
        target: "key_1".into(),
        outcome: "ok".into(),
        source: "127.0.0.1".into(),
        details,
        prev_hash: "00".into(),
        hash: "ab".into(),
        extra: Map::new(),
    }
}

fn semantic_stats() -> Value {
    use plexus_gateway::semantic::{PoolStats, SemanticStats};
    let pool = |floor| PoolStats {
        outcomes: 10,
        wrong: 1,
        floor,
        serving: floor.is_some(),
    };
    serde_json::to_value(SemanticStats {
        entries: 5,
        partitions: 2,
        bounded: true,
        outcomes: 20,
        wrong: 2,
        models: [
            ("gpt".to_owned(), pool(Some(0.9))),
            ("demo".to_owned(), pool(None)),
        ]
        .into_iter()
        .collect(),
    })
    .unwrap()
}

/// A request with every field set (bodies logged, a selection decision) and the calls made
/// for it; and a bare one.
fn request_entries() -> [RequestEntry; 2] {
    let child = RequestEntry {
        request_id: "gw-2".into(),
        object: RequestEntry::OBJECT.into(),
        parent_request_id: Some("gw-1".into()),
        step: Some(0),
        key_id: "key_1".into(),
        endpoint: "chat".into(),
        model: "gpt".into(),
        provider: "oai".into(),
        upstream_model: "gpt-4o-mini".into(),
        status: 200,
        cost_usd: Nanos(20_700),
        created_at: 1_700_000_000,
        ..RequestEntry::default()
    };
    let bare = RequestEntry {
        request_id: "gw-3".into(),
        object: RequestEntry::OBJECT.into(),
        endpoint: "embeddings".into(),
        ..RequestEntry::default()
    };
    let full = RequestEntry {
        request_id: "gw-1".into(),
        object: RequestEntry::OBJECT.into(),
        client_request_id: Some("mine-1".into()),
        parent_request_id: Some("gw-0".into()),
        step: Some(1),
        upstream_request_id: Some("up-1".into()),
        key_id: "key_1".into(),
        user: Some("ada".into()),
        team: Some("red".into()),
        endpoint: "chat".into(),
        model: "auto".into(),
        provider: "oai".into(),
        upstream_model: "gpt-4o-mini".into(),
        stream: true,
        status: 429,
        error_code: Some("rate_limited".into()),
        prompt_tokens: 10,
        completion_tokens: 5,
        cached_tokens: 2,
        reasoning_tokens: 1,
        usage_estimated: true,
        cost_usd: Nanos(1_500),
        latency_ms: 120,
        ttft_ms: Some(30),
        cache: Some("miss".into()),
        created_at: 1_700_000_000,
        route: Some(json!({"served": "gpt", "candidates": []})),
        // The nested schema is checked on what these show: null values too.
        children: vec![child, bare.clone()],
        request_body: Some("{}".into()),
        response_body: Some("{}".into()),
        extra: Map::new(),
    };
    [full, bare]
}

#[test]
fn every_admin_operation_names_its_schemas() {
    let mut c = Checker::new();
    let paths = c.spec["paths"].as_object().unwrap().clone();
    let mut seen = BTreeSet::new();
    for (path, item) in paths.iter().filter(|(p, _)| p.starts_with("/admin")) {
        for (method, op) in item.as_object().unwrap() {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            seen.insert((method.clone(), path.clone()));
            let Some(&(_, _, request, status, response)) = OPERATIONS
                .iter()
                .find(|(m, p, ..)| m == method && p == path)
            else {
                c.problem(format!("{method} {path}: not in OPERATIONS"));
                continue;
            };
            let body = ref_name(&op["requestBody"]["content"]["application/json"]["schema"]);
            if body != request {
                c.problem(format!(
                    "{method} {path}: request body {body:?}, the server reads {request:?}"
                ));
            }
            let successes: Vec<&String> = op["responses"]
                .as_object()
                .map(|r| r.keys().filter(|k| k.starts_with('2')).collect())
                .unwrap_or_default();
            if successes != [status] {
                c.problem(format!(
                    "{method} {path}: success statuses {successes:?}, the server answers {status}"
                ));
            }
            let schema =
                ref_name(&op["responses"][status]["content"]["application/json"]["schema"]);
            if schema != Some(response) {
                c.problem(format!(
                    "{method} {path}: {status} answers {schema:?}, the server {response}"
                ));
            }
            if op["responses"]["default"]["content"]["application/json"]["schema"]["$ref"]
                != "#/components/schemas/Error"
            {
                c.problem(format!("{method} {path}: no default Error response"));
            }
        }
    }
    for (m, p, ..) in OPERATIONS {
        if !seen.contains(&(m.to_string(), p.to_string())) {
            c.problem(format!("{m} {p}: missing from docs/openapi.json"));
        }
    }
    assert!(c.problems.is_empty(), "\n{}", c.problems.join("\n"));
}

#[test]
fn request_schemas_say_what_the_server_accepts() {
    let mut c = Checker::new();
    c.request(
        "CreateKey",
        CreateKey {
            name: "ci".into(),
            team: Some("red".into()),
            user: Some("ada".into()),
            role: Some("member".into()),
            models: vec!["gpt-*".into()],
            expires_at: Some(2_000_000_000),
            expires_in: Some("30d".into()),
            limits: limits(),
            metadata: Some(meta()),
        },
    );
    c.request(
        "PatchKey",
        PatchKey {
            name: Some("ci-2".into()),
            models: Some(vec!["gpt-*".into()]),
            metadata: Some(meta()),
            expires_at: Some(Some(2_000_000_000)),
            limits: limits_patch(),
        },
    );
    c.request("RotateKey", RotateKey { grace_seconds: 60 });
    c.request(
        "CreateOrg",
        CreateOrg {
            id: "acme".into(),
            name: Some("Acme".into()),
        },
    );
    c.request(
        "CreateTeam",
        CreateTeam {
            id: "red".into(),
            name: Some("Red".into()),
            org: Some("acme".into()),
            limits: limits(),
            metadata: Some(meta()),
        },
    );
    c.request(
        "PatchTeam",
        PatchTeam {
            name: Some("Red".into()),
            limits: limits_patch(),
            metadata: Some(meta()),
        },
    );
    c.request(
        "CreateUser",
        CreateUser {
            id: "ada".into(),
            name: Some("Ada".into()),
            team: Some("red".into()),
            role: Some("member".into()),
            limits: limits(),
        },
    );
    c.request(
        "PatchUser",
        PatchUser {
            name: Some("Ada".into()),
            team: Some("red".into()),
            role: Some("viewer".into()),
            limits: limits_patch(),
        },
    );
    c.request(
        "CreateCredential",
        CreateCredential {
            provider: "openai".into(),
            secret: "sk-live".into(),
            expires_at: Some(2_000_000_000),
        },
    );
    let requests: BTreeSet<String> = OPERATIONS
        .iter()
        .filter_map(|op| op.2.map(str::to_owned))
        .collect();
    let missing: Vec<_> = requests.difference(&c.checked).collect();
    assert!(missing.is_empty(), "unchecked request schemas {missing:?}");
    assert!(c.problems.is_empty(), "\n{}", c.problems.join("\n"));
}

#[test]
fn response_schemas_say_what_the_server_answers() {
    let mut c = Checker::new();
    c.response("Key", &[key_full(), key_min()]);
    c.response(
        "KeyList",
        &[
            KeyList {
                object: "list".into(),
                data: vec![key_full(), key_min()],
                next_cursor: Some("key_2".into()),
                has_more: true,
                extra: Map::new(),
            },
            KeyList {
                object: "list".into(),
                ..KeyList::default()
            },
        ],
    );
    c.response(
        "KeyRevoked",
        &[KeyRevoked {
            id: "key_1".into(),
            object: Key::OBJECT.into(),
            deleted: true,
            revoked: true,
            revoked_at: 1_700_000_000,
            extra: Map::new(),
        }],
    );
    c.response("Org", &[org(Some(vec!["red".into()])), org(None)]);
    c.response(
        "OrgList",
        &[OrgList {
            object: "list".into(),
            data: vec![org(None)],
            extra: Map::new(),
        }],
    );
    c.response("Team", &[team_full(), team_min()]);
    c.response(
        "TeamList",
        &[TeamList {
            object: "list".into(),
            data: vec![team_full(), team_min()],
            has_more: false,
            extra: Map::new(),
        }],
    );
    c.response("User", &[user_full(), user_min()]);
    c.response(
        "UserList",
        &[UserList {
            object: "list".into(),
            data: vec![user_full(), user_min()],
            has_more: true,
            extra: Map::new(),
        }],
    );
    c.response(
        "Deleted",
        &[
            Deleted {
                id: "red".into(),
                object: Team::OBJECT.into(),
                deleted: true,
                extra: Map::new(),
            },
            Deleted {
                id: "ada".into(),
                object: User::OBJECT.into(),
                deleted: true,
                extra: Map::new(),
            },
        ],
    );
    let rows = vec![
        spend_row(SpendName::Key(Some("key_1".into())), 62_100),
        spend_row(SpendName::User(Some("ada".into())), 1),
        spend_row(SpendName::Team(Some("red".into())), 1_500_000_000),
        spend_row(SpendName::Model(Some("(none)".into())), 0),
        spend_row(SpendName::Day(Some(1_700_006_400)), 3),
    ];
    let spends: Vec<Spend> = SpendGroup::ALL
        .iter()
        .map(|g| Spend {
            object: "spend".into(),
            group: g.as_str().into(),
            total_usd: Nanos(1_500_062_104),
            data: rows.clone(),
            cache_overhead: vec![spend_row(SpendName::Team(Some("red".into())), 7)],
            extra: Map::new(),
        })
        .collect();
    c.response("Spend", &spends);
    c.response("SpendRow", &rows);
    c.response(
        "AuditEntry",
        &[
            audit_entry(1, json!({"name": "ci"})),
            audit_entry(2, Value::Null),
        ],
    );
    c.response(
        "AuditList",
        &[AuditList {
            object: "list".into(),
            data: vec![
                audit_entry(1, json!({"name": "ci"})),
                audit_entry(2, Value::Null),
            ],
            extra: Map::new(),
        }],
    );
    c.response("Credential", &[credential(Some(5)), credential(None)]);
    c.response(
        "CredentialList",
        &[CredentialList {
            object: "list".into(),
            data: vec![credential(None)],
            extra: Map::new(),
        }],
    );
    c.response(
        "CredentialRetired",
        &[CredentialRetired {
            id: "cred_1".into(),
            object: Credential::OBJECT.into(),
            retired: true,
            extra: Map::new(),
        }],
    );
    c.response(
        "CacheStats",
        &[
            CacheStats {
                object: "cache.stats".into(),
                local_entries: 3,
                local_bytes: 4096,
                semantic: Some(semantic_stats()),
                extra: Map::new(),
            },
            CacheStats {
                object: "cache.stats".into(),
                ..CacheStats::default()
            },
        ],
    );
    c.response(
        "CachePurged",
        &[CachePurged {
            object: "cache.purge".into(),
            deleted: 2,
            extra: Map::new(),
        }],
    );
    c.response("RequestEntry", &request_entries());
    // Not an admin answer, but described the same way.
    c.response(
        "Feedback",
        &[
            plexus_protocol::feedback::Feedback {
                object: "feedback".into(),
                request_id: "gw-1".into(),
                model: "gpt".into(),
                score: 0.5,
                comment: Some("fine".into()),
                created_at: 1_700_000_000,
                extra: Map::new(),
            },
            plexus_protocol::feedback::Feedback {
                object: "feedback".into(),
                score: 1.0,
                ..Default::default()
            },
        ],
    );
    // Every schema an admin answer names, nested ones included, was checked.
    let mut named: BTreeSet<String> = OPERATIONS.iter().map(|op| op.4.to_owned()).collect();
    named.extend(["SpendRow", "AuditEntry"].map(str::to_owned));
    let missing: Vec<_> = named.difference(&c.checked).collect();
    assert!(missing.is_empty(), "unchecked response schemas {missing:?}");
    assert!(c.problems.is_empty(), "\n{}", c.problems.join("\n"));
}

#[test]
fn query_parameters_match_the_query_structs() {
    let mut c = Checker::new();
    c.query(
        "get",
        "/admin/keys",
        KeyListQuery {
            team: Some("red".into()),
            user: Some("ada".into()),
            include_revoked: Some(true),
            cursor: Some("key_1".into()),
            limit: Some(10),
        },
    );
    c.query(
        "get",
        "/admin/teams",
        TeamListQuery {
            cursor: Some("red".into()),
        },
    );
    c.query(
        "get",
        "/admin/users",
        UserListQuery {
            team: Some("red".into()),
            cursor: Some("ada".into()),
        },
    );
    for group in SpendGroup::ALL {
        c.query(
            "get",
            "/admin/spend",
            SpendQuery {
                group: Some(group),
                since: Some(1_700_000_000),
                team: Some("red".into()),
                user: Some("ada".into()),
            },
        );
    }
    c.query(
        "get",
        "/admin/audit",
        AuditListQuery {
            actor: Some("master".into()),
            action: Some("key.create".into()),
            after: Some(3),
            limit: Some(10),
        },
    );
    c.query(
        "delete",
        "/admin/cache",
        CachePurgeQuery {
            namespace: Some("team:red".into()),
            model: Some("gpt".into()),
            tag: Some("faq".into()),
            key_prefix: Some("ab".into()),
        },
    );
    let with_query = [
        ("get", "/admin/keys"),
        ("get", "/admin/teams"),
        ("get", "/admin/users"),
        ("get", "/admin/spend"),
        ("get", "/admin/audit"),
        ("delete", "/admin/cache"),
    ];
    for (m, p, ..) in OPERATIONS {
        if !with_query.contains(&(m, p)) && !c.query_params(m, p).is_empty() {
            c.problem(format!(
                "{m} {p}: query parameters the server does not read"
            ));
        }
    }
    // `limit` says what the server enforces: 0 is refused.
    for (path, max) in [("/admin/keys", 1000), ("/admin/audit", 10_000)] {
        let limit = &c.query_params("get", path)["limit"];
        assert_eq!(
            (&limit["minimum"], &limit["maximum"]),
            (&json!(1), &json!(max)),
            "{path}"
        );
    }
    assert!(c.problems.is_empty(), "\n{}", c.problems.join("\n"));
}

/// The checker itself notices drift: a struct field the spec lacks, a float where the spec
/// says integer, a missing `null`.
#[test]
fn the_checker_catches_drift() {
    let mut c = Checker::new();
    let schemas = c.spec["components"]["schemas"].as_object_mut().unwrap();
    let key = schemas.get_mut("Key").unwrap();
    key["properties"]
        .as_object_mut()
        .unwrap()
        .remove("rotated_from");
    key["properties"]["rpm"] = json!({"type": "integer"});
    schemas.get_mut("CreateTeam").unwrap()["properties"]["max_budget_usd"] =
        json!({"type": "integer"});
    c.response("Key", &[key_full(), key_min()]);
    c.request(
        "CreateTeam",
        CreateTeam {
            id: "t".into(),
            limits: limits(),
            ..CreateTeam::default()
        },
    );
    let all = c.problems.join("\n");
    assert!(
        all.contains("only in the struct [\"rotated_from\"]"),
        "{all}"
    );
    assert!(all.contains("Key.rpm"), "{all}");
    assert!(
        all.contains("CreateTeam.max_budget_usd: 1.5 is accepted"),
        "{all}"
    );
}

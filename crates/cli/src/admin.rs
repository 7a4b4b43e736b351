//! The admin commands: `keys`, `teams`, `users` and `audit` mirror the admin API over HTTP;
//! `audit verify` reads the database directly and checks the hash chain.
//!
//! Every command prints a table, or the server's JSON with `--json`. Failures (an API error, an
//! unreachable server, a broken chain) are returned to `main`, which prints them as one line on
//! stderr and exits with status 1.

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{json, Map, Value};
use std::io::Write;
use std::time::Duration;

const ROLES: [&str; 4] = ["admin", "team_admin", "member", "viewer"];

/// Where the admin API is and how to authenticate.
#[derive(Args, Debug, Clone)]
pub struct Conn {
    /// Root URL of Plexus (the server root, not `/v1`).
    #[arg(
        long,
        env = "PLEXUS_URL",
        default_value = "http://127.0.0.1:4000",
        global = true,
        help_heading = "Connection"
    )]
    url: String,
    /// Admin credential (the master key or a virtual key), sent as `Authorization: Bearer`.
    #[arg(
        long,
        env = "PLEXUS_API_KEY",
        hide_env_values = true,
        global = true,
        help_heading = "Connection"
    )]
    api_key: Option<String>,
    /// Print the raw JSON response instead of a table.
    #[arg(long, global = true, help_heading = "Output")]
    json: bool,
}

// ---------------------------------------------------------------------------------------------
// Command tree
// ---------------------------------------------------------------------------------------------

#[derive(Args, Debug)]
pub struct KeysCmd {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    cmd: KeysSub,
}

#[derive(Subcommand, Debug)]
enum KeysSub {
    /// Create a virtual key; its secret is printed once.
    Create(CreateKeyArgs),
    /// List keys (ordered by id, in pages).
    List {
        /// Only this team's keys.
        #[arg(long)]
        team: Option<String>,
        /// Only this user's keys.
        #[arg(long)]
        user: Option<String>,
        /// Include revoked keys.
        #[arg(long)]
        include_revoked: bool,
        /// Keys per page (1 to 1000; the server's default is 100).
        #[arg(long)]
        limit: Option<u32>,
        /// Start after this key id (the `next_cursor` of a previous page).
        #[arg(long)]
        cursor: Option<String>,
        /// Follow `next_cursor` until every key is listed.
        #[arg(long)]
        all: bool,
    },
    /// Show one key.
    Get {
        /// The key's id (not its secret).
        id: String,
    },
    /// Change a key's attributes (only the ones given).
    Update(UpdateKeyArgs),
    /// Revoke a key: it stops authenticating at once.
    Revoke {
        /// The key's id.
        id: String,
    },
    /// Issue a new secret with the same attributes; the old one works for the grace period.
    Rotate {
        /// The key's id.
        id: String,
        /// How long the old key keeps working, e.g. `1h` (default: revoked at once).
        #[arg(long, value_parser = parse_grace)]
        grace: Option<u64>,
    },
}

#[derive(Args, Debug)]
struct CreateKeyArgs {
    /// A label for the key.
    #[arg(long)]
    name: String,
    /// The team the key belongs to (its spend counts against the team's budget).
    #[arg(long)]
    team: Option<String>,
    /// The user the key belongs to.
    #[arg(long)]
    user: Option<String>,
    /// What the key may do (default: member).
    #[arg(long, value_parser = ROLES)]
    role: Option<String>,
    /// Allowed model (name or `*` pattern); repeat for several. None = every model.
    #[arg(long = "model", value_name = "MODEL")]
    models: Vec<String>,
    /// Lifetime, e.g. `30d`, `12h`.
    #[arg(long, value_parser = check_duration)]
    expires_in: Option<String>,
    /// Spending limit in US dollars.
    #[arg(long)]
    max_budget_usd: Option<f64>,
    /// Budget window, e.g. `30d`.
    #[arg(long, value_parser = check_duration)]
    budget_period: Option<String>,
    /// Requests per minute.
    #[arg(long)]
    rpm: Option<i64>,
    /// Tokens per minute.
    #[arg(long)]
    tpm: Option<i64>,
    /// Tokens per day.
    #[arg(long)]
    tpd: Option<i64>,
    /// Concurrent requests.
    #[arg(long)]
    max_parallel: Option<i64>,
    /// A JSON object stored with the key.
    #[arg(long, value_parser = parse_json_object)]
    metadata: Option<Value>,
}

/// Attributes `keys update --clear` can reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Clearable {
    /// Allow every model.
    Models,
    /// Never expire.
    Expires,
    /// No spending limit.
    MaxBudgetUsd,
    /// A lifetime budget instead of a periodic one.
    BudgetPeriod,
    /// No requests-per-minute limit.
    Rpm,
    /// No tokens-per-minute limit.
    Tpm,
    /// No tokens-per-day limit.
    Tpd,
    /// No concurrency limit.
    MaxParallel,
}

#[derive(Args, Debug)]
struct UpdateKeyArgs {
    /// The key's id.
    id: String,
    /// New name.
    #[arg(long)]
    name: Option<String>,
    /// Replace the allowed models; repeat for several (`--clear models` allows every model).
    #[arg(long = "model", value_name = "MODEL")]
    models: Vec<String>,
    /// New lifetime counted from now, e.g. `30d`.
    #[arg(long, value_parser = parse_seconds)]
    expires_in: Option<u64>,
    /// Spending limit in US dollars.
    #[arg(long)]
    max_budget_usd: Option<f64>,
    /// Budget window, e.g. `30d`.
    #[arg(long, value_parser = check_duration)]
    budget_period: Option<String>,
    /// Requests per minute.
    #[arg(long)]
    rpm: Option<i64>,
    /// Tokens per minute.
    #[arg(long)]
    tpm: Option<i64>,
    /// Tokens per day.
    #[arg(long)]
    tpd: Option<i64>,
    /// Concurrent requests.
    #[arg(long)]
    max_parallel: Option<i64>,
    /// Replace the metadata (a JSON object).
    #[arg(long, value_parser = parse_json_object)]
    metadata: Option<Value>,
    /// Remove a limit or restriction; repeat for several.
    #[arg(long, value_enum, value_name = "FIELD")]
    clear: Vec<Clearable>,
}

/// Rate limits of a team or user (binding all its keys together).
#[derive(Args, Debug)]
struct RateArgs {
    /// Requests per minute.
    #[arg(long)]
    rpm: Option<i64>,
    /// Tokens per minute.
    #[arg(long)]
    tpm: Option<i64>,
    /// Tokens per day.
    #[arg(long)]
    tpd: Option<i64>,
    /// Concurrent requests.
    #[arg(long)]
    max_parallel: Option<i64>,
}

impl RateArgs {
    fn put_into(self, b: &mut Map<String, Value>) {
        put(b, "rpm", self.rpm);
        put(b, "tpm", self.tpm);
        put(b, "tpd", self.tpd);
        put(b, "max_parallel", self.max_parallel);
    }
}

#[derive(Args, Debug)]
pub struct TeamsCmd {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    cmd: TeamsSub,
}

#[derive(Subcommand, Debug)]
enum TeamsSub {
    /// Create a team.
    Create {
        /// 1 to 64 letters, digits, `-` or `_`.
        id: String,
        /// Display name (default: the id).
        #[arg(long)]
        name: Option<String>,
        /// Spending limit in US dollars.
        #[arg(long)]
        max_budget_usd: Option<f64>,
        /// Budget window, e.g. `30d`.
        #[arg(long, value_parser = check_duration)]
        budget_period: Option<String>,
        #[command(flatten)]
        rates: RateArgs,
        /// A JSON object stored with the team.
        #[arg(long, value_parser = parse_json_object)]
        metadata: Option<Value>,
    },
    /// List teams.
    List,
    /// Show one team.
    Get {
        /// The team's id.
        id: String,
    },
}

#[derive(Args, Debug)]
pub struct UsersCmd {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    cmd: UsersSub,
}

#[derive(Subcommand, Debug)]
enum UsersSub {
    /// Create a user.
    Create {
        /// 1 to 64 letters, digits, `-` or `_`.
        id: String,
        /// Display name (default: the id).
        #[arg(long)]
        name: Option<String>,
        /// The team the user belongs to.
        #[arg(long)]
        team: Option<String>,
        /// What the user may do (default: member).
        #[arg(long, value_parser = ROLES)]
        role: Option<String>,
        /// Spending limit in US dollars.
        #[arg(long)]
        max_budget_usd: Option<f64>,
        /// Budget window, e.g. `30d`.
        #[arg(long, value_parser = check_duration)]
        budget_period: Option<String>,
        #[command(flatten)]
        rates: RateArgs,
    },
    /// List users.
    List {
        /// Only this team's users.
        #[arg(long)]
        team: Option<String>,
    },
    /// Show one user.
    Get {
        /// The user's id.
        id: String,
    },
    /// Delete a user and the user's keys.
    Delete {
        /// The user's id.
        id: String,
    },
}

#[derive(Args, Debug)]
pub struct AuditCmd {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    cmd: AuditSub,
}

#[derive(Subcommand, Debug)]
enum AuditSub {
    /// List audit entries (oldest first).
    List {
        /// Only entries by this actor (as the ACTOR column shows it, e.g. a key id or `master`).
        #[arg(long)]
        actor: Option<String>,
        /// Only entries of this action, e.g. `key.create` or `auth.failure`.
        #[arg(long)]
        action: Option<String>,
        /// Entries after this sequence number.
        #[arg(long)]
        after: Option<i64>,
        /// Entries to show (1 to 10000; the server's default is 100).
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Print every entry as JSON lines (paging through the whole log).
    Export {
        /// Entries after this sequence number.
        #[arg(long)]
        after: Option<i64>,
        /// Only entries by this actor (as the ACTOR column shows it, e.g. a key id or `master`).
        #[arg(long)]
        actor: Option<String>,
        /// Only entries of this action, e.g. `key.create` or `auth.failure`.
        #[arg(long)]
        action: Option<String>,
    },
    /// Check the hash chain, reading the database directly (no server needed).
    Verify {
        /// Database URL (`sqlite://...` or `postgres://...`).
        #[arg(long, env = "PLEXUS_DATABASE", default_value = plexus_core::config::DEFAULT_DATABASE)]
        database: String,
    },
}

// ---------------------------------------------------------------------------------------------
// Entry points (called from main)
// ---------------------------------------------------------------------------------------------

pub async fn keys(cmd: KeysCmd) -> Result<()> {
    run_keys(cmd).await
}

pub async fn teams(cmd: TeamsCmd) -> Result<()> {
    run_teams(cmd).await
}

pub async fn users(cmd: UsersCmd) -> Result<()> {
    run_users(cmd).await
}

pub async fn audit(cmd: AuditCmd) -> Result<()> {
    run_audit(cmd).await
}

#[derive(Args, Debug)]
pub struct CacheCmd {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    cmd: CacheSub,
}

#[derive(Subcommand, Debug)]
enum CacheSub {
    /// Delete response-cache entries everywhere (every filter given must match; none purges
    /// everything).
    Purge {
        /// `team:<id>`, `key:<id>` or `global`.
        #[arg(long)]
        namespace: Option<String>,
        /// The model name clients sent.
        #[arg(long)]
        model: Option<String>,
        /// A tag from the requests' `metadata.cache_tags`.
        #[arg(long)]
        tag: Option<String>,
        /// The start of the entries' keys.
        #[arg(long)]
        key_prefix: Option<String>,
    },
    /// Measure the semantic cache offline on the labelled Quora Question Pairs: pair
    /// classification and a cache simulation (docs/cache-eval.md).
    Eval(crate::eval::EvalArgs),
}

pub async fn cache(cmd: CacheCmd) -> Result<()> {
    run_cache(cmd).await
}

async fn run_cache(cmd: CacheCmd) -> Result<()> {
    match cmd.cmd {
        CacheSub::Eval(args) => crate::eval::run(args).await,
        CacheSub::Purge {
            namespace,
            model,
            tag,
            key_prefix,
        } => {
            let api = Api::new(&cmd.conn)?;
            let mut query = Vec::new();
            for (name, value) in [
                ("namespace", namespace),
                ("model", model),
                ("tag", tag),
                ("key_prefix", key_prefix),
            ] {
                if let Some(v) = value {
                    query.push((name, v));
                }
            }
            let v = api
                .call(Method::DELETE, "/admin/cache", &query, None)
                .await?;
            if cmd.conn.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("purged {} entries", v["deleted"].as_u64().unwrap_or(0));
            }
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP client
// ---------------------------------------------------------------------------------------------

struct Api {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
}

impl Api {
    fn new(conn: &Conn) -> Result<Api> {
        let url = conn.url.trim().trim_end_matches('/');
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("`{url}` is not an http(s) URL (set --url or PLEXUS_URL)");
        }
        // PLEXUS_URL may be shared with `plexus chat`, which takes the `/v1` base.
        let base = url.strip_suffix("/v1").unwrap_or(url).to_owned();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Api {
            http,
            base,
            key: conn.api_key.clone().filter(|k| !k.is_empty()),
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut rb = self.http.request(method, &url).query(query);
        if let Some(k) = &self.key {
            rb = rb.bearer_auth(k);
        }
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let resp = rb.send().await.map_err(|e| {
            if e.is_connect() || e.is_timeout() {
                anyhow!(
                    "cannot reach Plexus at {} ({}): {}",
                    self.base,
                    url,
                    root_cause(&e)
                )
            } else {
                anyhow!("request to {url} failed: {}", root_cause(&e))
            }
        })?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .with_context(|| format!("cannot read the answer from {url}"))?;
        let parsed: Option<Value> = serde_json::from_str(&text).ok();
        if status.is_success() {
            return parsed.ok_or_else(|| anyhow!("{url} answered with something that is not JSON"));
        }
        Err(api_error(status.as_u16(), parsed.as_ref(), &text, &url))
    }

    async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value> {
        self.call(Method::GET, path, query, None).await
    }
}

/// The innermost error message (reqwest wraps hyper wraps io).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

fn api_error(status: u16, body: Option<&Value>, text: &str, url: &str) -> anyhow::Error {
    let err = body.and_then(|b| b.get("error"));
    match err.and_then(|e| e.get("message")).and_then(Value::as_str) {
        Some(message) => {
            let mut extra = vec![format!("HTTP {status}")];
            if let Some(code) = err.and_then(|e| e.get("code")).and_then(Value::as_str) {
                extra.insert(0, format!("code: {code}"));
            }
            if let Some(param) = err.and_then(|e| e.get("param")).and_then(Value::as_str) {
                extra.push(format!("param: {param}"));
            }
            anyhow!("{message} ({})", extra.join(", "))
        }
        None => {
            let snippet: String = text.trim().chars().take(200).collect();
            if snippet.is_empty() {
                anyhow!("HTTP {status} from {url}")
            } else {
                anyhow!("HTTP {status} from {url}: {snippet}")
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// keys
// ---------------------------------------------------------------------------------------------

async fn run_keys(cmd: KeysCmd) -> Result<()> {
    let api = Api::new(&cmd.conn)?;
    let as_json = cmd.conn.json;
    match cmd.cmd {
        KeysSub::Create(a) => {
            let mut b = Map::new();
            b.insert("name".into(), json!(a.name));
            put(&mut b, "team", a.team);
            put(&mut b, "user", a.user);
            put(&mut b, "role", a.role);
            if !a.models.is_empty() {
                b.insert("models".into(), json!(a.models));
            }
            put(&mut b, "expires_in", a.expires_in);
            put(&mut b, "max_budget_usd", a.max_budget_usd);
            put(&mut b, "budget_period", a.budget_period);
            put(&mut b, "rpm", a.rpm);
            put(&mut b, "tpm", a.tpm);
            put(&mut b, "tpd", a.tpd);
            put(&mut b, "max_parallel", a.max_parallel);
            put(&mut b, "metadata", a.metadata);
            let v = api
                .call(Method::POST, "/admin/keys", &[], Some(&Value::Object(b)))
                .await?;
            // On stderr, so `--json` output stays parseable.
            if let Some(w) = v.get("warning").and_then(Value::as_str) {
                eprintln!("warning: {w}");
            }
            if as_json {
                return print_json(&v);
            }
            print_secret(&format!("Created key {}", text(&v, "id")), &v)
        }
        KeysSub::List {
            team,
            user,
            include_revoked,
            limit,
            cursor,
            all,
        } => {
            let mut query = Vec::new();
            opt_query(&mut query, "team", team);
            opt_query(&mut query, "user", user);
            if include_revoked {
                query.push(("include_revoked", "true".to_owned()));
            }
            opt_query(&mut query, "limit", limit);
            let mut cursor = cursor;
            let mut keys = Vec::new();
            let mut next: Option<String>;
            let mut first_page: Option<Value> = None;
            loop {
                let mut q = query.clone();
                opt_query(&mut q, "cursor", cursor.clone());
                let page = api.get("/admin/keys", &q).await?;
                keys.extend(list_data(&page)?.iter().cloned());
                next = page
                    .get("next_cursor")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                if first_page.is_none() {
                    first_page = Some(page);
                }
                match (&next, all) {
                    (Some(n), true) if cursor.as_ref() != Some(n) => cursor = Some(n.clone()),
                    _ => break,
                }
            }
            if as_json {
                return match (all, first_page) {
                    (false, Some(page)) => print_json(&page),
                    _ => print_json(&json!({
                        "object": "list", "data": keys, "next_cursor": null, "has_more": false,
                    })),
                };
            }
            let now = now_secs();
            let rows: Vec<Vec<String>> = keys
                .iter()
                .map(|k| {
                    vec![
                        text(k, "id"),
                        clip(&text(k, "name"), 32),
                        text(k, "team"),
                        text(k, "user"),
                        text(k, "role"),
                        clip(&models(k), 40),
                        time_or(k, "expires_at", "never"),
                        status(k, now).to_owned(),
                    ]
                })
                .collect();
            let mut out = if rows.is_empty() {
                "no keys\n".to_owned()
            } else {
                table(
                    &[
                        "ID", "NAME", "TEAM", "USER", "ROLE", "MODELS", "EXPIRES", "STATUS",
                    ],
                    &rows,
                )
            };
            if let (Some(n), false) = (&next, all) {
                out.push_str(&format!(
                    "\nmore keys: --cursor {n} for the next page, or --all\n"
                ));
            }
            print_out(&out)
        }
        KeysSub::Get { id } => {
            let v = api.get(&format!("/admin/keys/{}", seg(&id)), &[]).await?;
            if as_json {
                return print_json(&v);
            }
            print_out(&key_details(&v))
        }
        KeysSub::Update(a) => {
            let body = patch_body(a.name, a.models, a.expires_in, a.metadata, &a.clear, {
                let mut limits = Map::new();
                put(&mut limits, "max_budget_usd", a.max_budget_usd);
                put(&mut limits, "budget_period", a.budget_period);
                put(&mut limits, "rpm", a.rpm);
                put(&mut limits, "tpm", a.tpm);
                put(&mut limits, "tpd", a.tpd);
                put(&mut limits, "max_parallel", a.max_parallel);
                limits
            })?;
            let v = api
                .call(
                    Method::PATCH,
                    &format!("/admin/keys/{}", seg(&a.id)),
                    &[],
                    Some(&body),
                )
                .await?;
            if as_json {
                return print_json(&v);
            }
            print_out(&format!("Updated key {}\n\n{}", a.id, key_details(&v)))
        }
        KeysSub::Revoke { id } => {
            let v = api
                .call(
                    Method::DELETE,
                    &format!("/admin/keys/{}", seg(&id)),
                    &[],
                    None,
                )
                .await?;
            if as_json {
                return print_json(&v);
            }
            print_out(&format!(
                "Revoked key {id} (at {})\n",
                time_or(&v, "revoked_at", "now")
            ))
        }
        KeysSub::Rotate { id, grace } => {
            let grace = grace.unwrap_or(0);
            let v = api
                .call(
                    Method::POST,
                    &format!("/admin/keys/{}/rotate", seg(&id)),
                    &[],
                    Some(&json!({ "grace_seconds": grace })),
                )
                .await?;
            if as_json {
                return print_json(&v);
            }
            let old = if grace == 0 {
                format!("The old key {id} is revoked.\n")
            } else {
                format!(
                    "The old key {id} keeps working until {}.\n",
                    fmt_time(now_secs().saturating_add(grace as i64), false)
                )
            };
            print_secret(
                &format!("Rotated key {id}; the new key is {}", text(&v, "id")),
                &v,
            )?;
            print_out(&format!("\n{old}"))
        }
    }
}

/// The PATCH body: given fields are set, `--clear`ed ones sent as `null` (or `[]` for models).
fn patch_body(
    name: Option<String>,
    models: Vec<String>,
    expires_in: Option<u64>,
    metadata: Option<Value>,
    clear: &[Clearable],
    limits: Map<String, Value>,
) -> Result<Value> {
    let mut b = Map::new();
    put(&mut b, "name", name);
    if !models.is_empty() {
        b.insert("models".into(), json!(models));
    }
    if let Some(secs) = expires_in {
        b.insert(
            "expires_at".into(),
            json!(now_secs().saturating_add(i64::try_from(secs).unwrap_or(i64::MAX))),
        );
    }
    put(&mut b, "metadata", metadata);
    b.extend(limits);
    for c in clear {
        let (field, value) = match c {
            Clearable::Models => ("models", json!([])),
            Clearable::Expires => ("expires_at", Value::Null),
            Clearable::MaxBudgetUsd => ("max_budget_usd", Value::Null),
            Clearable::BudgetPeriod => ("budget_period", Value::Null),
            Clearable::Rpm => ("rpm", Value::Null),
            Clearable::Tpm => ("tpm", Value::Null),
            Clearable::Tpd => ("tpd", Value::Null),
            Clearable::MaxParallel => ("max_parallel", Value::Null),
        };
        if b.insert(field.into(), value).is_some() {
            bail!("`{field}` is both set and cleared");
        }
    }
    if b.is_empty() {
        bail!("nothing to update: give at least one attribute (see --help)");
    }
    Ok(Value::Object(b))
}

/// A new key's secret, shown once, and its attributes.
fn print_secret(title: &str, v: &Value) -> Result<()> {
    let secret = v
        .get("key")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("the server's answer holds no key"))?;
    print_out(&format!(
        "{title}\n\n    {secret}\n\nStore this key now; it will not be shown again.\n\n{}",
        key_details(v)
    ))
}

fn key_details(k: &Value) -> String {
    let budget = match k.get("max_budget_usd").and_then(Value::as_f64) {
        None => "-".to_owned(),
        Some(b) => match k.get("budget_period").and_then(Value::as_str) {
            Some(p) => format!("${b} per {p}"),
            None => format!("${b}"),
        },
    };
    let mut rows = vec![
        ("ID", text(k, "id")),
        ("NAME", text(k, "name")),
        ("TEAM", text(k, "team")),
        ("USER", text(k, "user")),
        ("ROLE", text(k, "role")),
        ("MODELS", models(k)),
        ("EXPIRES", time_or(k, "expires_at", "never")),
        ("BUDGET", budget),
        ("RPM", text(k, "rpm")),
        ("TPM", text(k, "tpm")),
        ("TPD", text(k, "tpd")),
        ("MAX PARALLEL", text(k, "max_parallel")),
        ("CREATED", time_or(k, "created_at", "-")),
        ("STATUS", status(k, now_secs()).to_owned()),
    ];
    if !is_null(k, "revoked_at") {
        rows.push(("REVOKED", time_or(k, "revoked_at", "-")));
    }
    if !is_null(k, "rotated_from") {
        rows.push(("ROTATED FROM", text(k, "rotated_from")));
    }
    if let Some(m) = k.get("metadata").filter(|m| !is_empty_json(m)) {
        rows.push(("METADATA", m.to_string()));
    }
    fields(&rows)
}

fn models(k: &Value) -> String {
    match k.get("models").and_then(Value::as_array) {
        Some(list) if !list.is_empty() => list
            .iter()
            .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(","),
        _ => "(all)".to_owned(),
    }
}

fn status(k: &Value, now: i64) -> &'static str {
    if !is_null(k, "revoked_at") {
        "revoked"
    } else if k
        .get("expires_at")
        .and_then(Value::as_i64)
        .is_some_and(|at| at <= now)
    {
        "expired"
    } else {
        "active"
    }
}

// ---------------------------------------------------------------------------------------------
// teams and users
// ---------------------------------------------------------------------------------------------

/// Follows the id cursor of `/admin/teams` and `/admin/users` (pages of up to 1000).
async fn list_all(api: &Api, path: &str, mut query: Vec<(&str, String)>) -> Result<Vec<Value>> {
    let mut all = Vec::new();
    loop {
        let page = api.get(path, &query).await?;
        let data = list_data(&page)?;
        all.extend(data.iter().cloned());
        let last = data
            .last()
            .and_then(|v| v.get("id"))
            .and_then(Value::as_str);
        match last {
            Some(id) if data.len() >= 1000 => {
                query.retain(|(k, _)| *k != "cursor");
                query.push(("cursor", id.to_owned()));
            }
            _ => return Ok(all),
        }
    }
}

fn budget_cells(v: &Value) -> [String; 2] {
    [text(v, "max_budget_usd"), text(v, "budget_period")]
}

async fn run_teams(cmd: TeamsCmd) -> Result<()> {
    let api = Api::new(&cmd.conn)?;
    let as_json = cmd.conn.json;
    match cmd.cmd {
        TeamsSub::Create {
            id,
            name,
            max_budget_usd,
            budget_period,
            rates,
            metadata,
        } => {
            let mut b = Map::new();
            b.insert("id".into(), json!(id));
            put(&mut b, "name", name);
            put(&mut b, "max_budget_usd", max_budget_usd);
            put(&mut b, "budget_period", budget_period);
            rates.put_into(&mut b);
            put(&mut b, "metadata", metadata);
            let v = api
                .call(Method::POST, "/admin/teams", &[], Some(&Value::Object(b)))
                .await?;
            if as_json {
                return print_json(&v);
            }
            print_out(&format!(
                "Created team {}\n\n{}",
                text(&v, "id"),
                team_details(&v)
            ))
        }
        TeamsSub::List => {
            let teams = list_all(&api, "/admin/teams", Vec::new()).await?;
            if as_json {
                return print_json(&json!({"object": "list", "data": teams}));
            }
            let rows: Vec<Vec<String>> = teams
                .iter()
                .map(|t| {
                    let [budget, period] = budget_cells(t);
                    vec![
                        text(t, "id"),
                        clip(&text(t, "name"), 40),
                        budget,
                        period,
                        time_or(t, "created_at", "-"),
                    ]
                })
                .collect();
            print_out(&if rows.is_empty() {
                "no teams\n".to_owned()
            } else {
                table(&["ID", "NAME", "BUDGET USD", "PERIOD", "CREATED"], &rows)
            })
        }
        TeamsSub::Get { id } => {
            let v = api.get(&format!("/admin/teams/{}", seg(&id)), &[]).await?;
            if as_json {
                return print_json(&v);
            }
            print_out(&team_details(&v))
        }
    }
}

fn team_details(t: &Value) -> String {
    let [budget, period] = budget_cells(t);
    let mut rows = vec![
        ("ID", text(t, "id")),
        ("NAME", text(t, "name")),
        ("BUDGET USD", budget),
        ("PERIOD", period),
        ("RPM", text(t, "rpm")),
        ("TPM", text(t, "tpm")),
        ("TPD", text(t, "tpd")),
        ("MAX PARALLEL", text(t, "max_parallel")),
        ("CREATED", time_or(t, "created_at", "-")),
    ];
    if let Some(m) = t.get("metadata").filter(|m| !is_empty_json(m)) {
        rows.push(("METADATA", m.to_string()));
    }
    fields(&rows)
}

async fn run_users(cmd: UsersCmd) -> Result<()> {
    let api = Api::new(&cmd.conn)?;
    let as_json = cmd.conn.json;
    match cmd.cmd {
        UsersSub::Create {
            id,
            name,
            team,
            role,
            max_budget_usd,
            budget_period,
            rates,
        } => {
            let mut b = Map::new();
            b.insert("id".into(), json!(id));
            put(&mut b, "name", name);
            put(&mut b, "team", team);
            put(&mut b, "role", role);
            put(&mut b, "max_budget_usd", max_budget_usd);
            put(&mut b, "budget_period", budget_period);
            rates.put_into(&mut b);
            let v = api
                .call(Method::POST, "/admin/users", &[], Some(&Value::Object(b)))
                .await?;
            if as_json {
                return print_json(&v);
            }
            print_out(&format!(
                "Created user {}\n\n{}",
                text(&v, "id"),
                user_details(&v)
            ))
        }
        UsersSub::List { team } => {
            let mut query = Vec::new();
            opt_query(&mut query, "team", team);
            let users = list_all(&api, "/admin/users", query).await?;
            if as_json {
                return print_json(&json!({"object": "list", "data": users}));
            }
            let rows: Vec<Vec<String>> = users
                .iter()
                .map(|u| {
                    let [budget, period] = budget_cells(u);
                    vec![
                        text(u, "id"),
                        clip(&text(u, "name"), 40),
                        text(u, "team"),
                        text(u, "role"),
                        budget,
                        period,
                        time_or(u, "created_at", "-"),
                    ]
                })
                .collect();
            print_out(&if rows.is_empty() {
                "no users\n".to_owned()
            } else {
                table(
                    &[
                        "ID",
                        "NAME",
                        "TEAM",
                        "ROLE",
                        "BUDGET USD",
                        "PERIOD",
                        "CREATED",
                    ],
                    &rows,
                )
            })
        }
        UsersSub::Get { id } => {
            let v = api.get(&format!("/admin/users/{}", seg(&id)), &[]).await?;
            if as_json {
                return print_json(&v);
            }
            print_out(&user_details(&v))
        }
        UsersSub::Delete { id } => {
            let v = api
                .call(
                    Method::DELETE,
                    &format!("/admin/users/{}", seg(&id)),
                    &[],
                    None,
                )
                .await?;
            if as_json {
                return print_json(&v);
            }
            print_out(&format!("Deleted user {id} and the user's keys\n"))
        }
    }
}

fn user_details(u: &Value) -> String {
    let [budget, period] = budget_cells(u);
    fields(&[
        ("ID", text(u, "id")),
        ("NAME", text(u, "name")),
        ("TEAM", text(u, "team")),
        ("ROLE", text(u, "role")),
        ("BUDGET USD", budget),
        ("PERIOD", period),
        ("RPM", text(u, "rpm")),
        ("TPM", text(u, "tpm")),
        ("TPD", text(u, "tpd")),
        ("MAX PARALLEL", text(u, "max_parallel")),
        ("CREATED", time_or(u, "created_at", "-")),
    ])
}

// ---------------------------------------------------------------------------------------------
// audit
// ---------------------------------------------------------------------------------------------

/// Entries per request of `audit export` and per query of `audit verify`.
const AUDIT_PAGE: u32 = 1000;

async fn run_audit(cmd: AuditCmd) -> Result<()> {
    let as_json = cmd.conn.json;
    match cmd.cmd {
        AuditSub::List {
            actor,
            action,
            after,
            limit,
        } => {
            let api = Api::new(&cmd.conn)?;
            let mut query = Vec::new();
            opt_query(&mut query, "actor", actor);
            opt_query(&mut query, "action", action);
            opt_query(&mut query, "after", after);
            opt_query(&mut query, "limit", limit);
            let v = api.get("/admin/audit", &query).await?;
            if as_json {
                return print_json(&v);
            }
            let entries = list_data(&v)?;
            let rows: Vec<Vec<String>> = entries
                .iter()
                .map(|e| {
                    let time = e
                        .get("ts_ms")
                        .and_then(Value::as_i64)
                        .map_or_else(|| "-".to_owned(), |ms| fmt_time(ms.div_euclid(1000), true));
                    let details = e
                        .get("details")
                        .filter(|d| !is_empty_json(d))
                        .map_or_else(|| "-".to_owned(), Value::to_string);
                    vec![
                        text(e, "seq"),
                        time,
                        text(e, "actor"),
                        text(e, "action"),
                        clip(&text(e, "target"), 40),
                        text(e, "outcome"),
                        text(e, "source"),
                        clip(&details, 60),
                    ]
                })
                .collect();
            let mut out = if rows.is_empty() {
                "no audit entries\n".to_owned()
            } else {
                table(
                    &[
                        "SEQ", "TIME", "ACTOR", "ACTION", "TARGET", "OUTCOME", "SOURCE", "DETAILS",
                    ],
                    &rows,
                )
            };
            let page = limit.unwrap_or(100) as usize;
            if let Some(last) = entries.last().filter(|_| entries.len() >= page) {
                out.push_str(&format!(
                    "\nmore entries may follow: --after {}\n",
                    text(last, "seq")
                ));
            }
            print_out(&out)
        }
        AuditSub::Export {
            after,
            actor,
            action,
        } => {
            let api = Api::new(&cmd.conn)?;
            let mut after = after;
            loop {
                let mut query = vec![("limit", AUDIT_PAGE.to_string())];
                opt_query(&mut query, "after", after);
                opt_query(&mut query, "actor", actor.clone());
                opt_query(&mut query, "action", action.clone());
                let v = api.get("/admin/audit", &query).await?;
                let entries = list_data(&v)?;
                let mut lines = String::new();
                for e in entries {
                    lines.push_str(&e.to_string());
                    lines.push('\n');
                }
                print_out(&lines)?;
                let last = entries
                    .last()
                    .and_then(|e| e.get("seq"))
                    .and_then(Value::as_i64);
                match last {
                    Some(seq) if entries.len() >= AUDIT_PAGE as usize => after = Some(seq),
                    _ => return Ok(()),
                }
            }
        }
        AuditSub::Verify { database } => verify(&database, as_json).await,
    }
}

/// Walks the whole chain from the database, page by page.
async fn verify(database: &str, as_json: bool) -> Result<()> {
    if let Some(path) = sqlite_path(database) {
        if !std::path::Path::new(path).exists() {
            bail!("no database at {database} (file `{path}` does not exist)");
        }
    }
    let store = plexus_store::Store::connect_without_migrating(database)
        .await
        .with_context(|| format!("cannot open database {database}"))?;
    let mut verifier = plexus_auth::audit::Verifier::default();
    let mut after = 0;
    let outcome = loop {
        let page = store
            .list_audit(&plexus_store::AuditQuery {
                actor: None,
                action: None,
                after_seq: Some(after),
                limit: AUDIT_PAGE,
            })
            .await;
        let page = match page {
            Ok(p) => p,
            Err(e) => {
                store.close().await;
                return Err(
                    anyhow!(e).context(format!("cannot read the audit log from {database}"))
                );
            }
        };
        if let Some(broken) = page.iter().find_map(|e| verifier.check(e).err()) {
            break Err(broken);
        }
        match page.last() {
            Some(last) if page.len() >= AUDIT_PAGE as usize => after = last.seq,
            _ => break Ok(()),
        }
    };
    store.close().await;
    match outcome {
        Ok(()) => {
            if as_json {
                return print_json(&json!({
                    "intact": true, "entries": verifier.count(), "head": verifier.head(),
                }));
            }
            print_out(&format!(
                "audit log intact: {} entries, head {}\n",
                verifier.count(),
                verifier.head()
            ))
        }
        Err(broken) => {
            if as_json {
                print_json(&json!({
                    "intact": false, "error": broken.to_string(), "verified": verifier.count(),
                }))?;
            }
            bail!(
                "audit log broken: {broken} ({} entries before it verified)",
                verifier.count()
            )
        }
    }
}

/// The file behind a `sqlite:` URL, unless it is in memory.
fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:" && !url.contains("mode=memory")).then_some(path)
}

// ---------------------------------------------------------------------------------------------
// Helpers: arguments, values, output
// ---------------------------------------------------------------------------------------------

fn check_duration(s: &str) -> Result<String, String> {
    match plexus_core::config::parse_duration(s) {
        Some(d) if !d.is_zero() => Ok(s.trim().to_owned()),
        _ => Err(format!(
            "`{s}` is not a duration such as `30d`, `12h`, `15m` or `90s`"
        )),
    }
}

fn parse_seconds(s: &str) -> Result<u64, String> {
    check_duration(s)?;
    plexus_core::config::parse_duration(s)
        .map(|d| d.as_secs().max(1))
        .ok_or_else(|| format!("`{s}` is not a duration"))
}

fn parse_grace(s: &str) -> Result<u64, String> {
    match plexus_core::config::parse_duration(s) {
        Some(d) => Ok(d.as_secs()),
        None => Err(format!("`{s}` is not a duration such as `1h` or `0`")),
    }
}

fn parse_json_object(s: &str) -> Result<Value, String> {
    match serde_json::from_str::<Value>(s) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err("must be a JSON object, e.g. '{\"owner\":\"ci\"}'".to_owned()),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

fn put<T: Into<Value>>(b: &mut Map<String, Value>, field: &str, v: Option<T>) {
    if let Some(v) = v {
        b.insert(field.to_owned(), v.into());
    }
}

fn opt_query<'a, T: ToString>(q: &mut Vec<(&'a str, String)>, name: &'a str, v: Option<T>) {
    if let Some(v) = v {
        q.push((name, v.to_string()));
    }
}

/// A path segment with the characters that would change the path escaped.
fn seg(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn list_data(page: &Value) -> Result<&Vec<Value>> {
    page.get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("the server's answer is not a list"))
}

fn is_null(v: &Value, field: &str) -> bool {
    v.get(field).is_none_or(Value::is_null)
}

fn is_empty_json(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// A field as a table cell: strings bare, numbers as written, absent or null as `-`.
fn text(v: &Value, field: &str) -> String {
    match v.get(field) {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn time_or(v: &Value, field: &str, none: &str) -> String {
    v.get(field)
        .and_then(Value::as_i64)
        .map_or_else(|| none.to_owned(), |secs| fmt_time(secs, false))
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Unix seconds as `YYYY-MM-DD HH:MM[:SS]Z` (UTC).
fn fmt_time(secs: i64, with_seconds: bool) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (rem / 3600, rem % 3600 / 60, rem % 60);
    if with_seconds {
        format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}Z")
    }
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// Aligned columns separated by two spaces; the last column is not padded.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            l.push_str(cell);
            if i + 1 < widths.len() {
                l.extend(std::iter::repeat_n(
                    ' ',
                    w.saturating_sub(cell.chars().count()),
                ));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// `NAME  value` lines for one object.
fn fields(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in rows {
        out.push_str(&format!("{k:width$}  {v}\n"));
    }
    out
}

fn print_json(v: &Value) -> Result<()> {
    let mut s = serde_json::to_string_pretty(v).context("cannot print the answer")?;
    s.push('\n');
    print_out(&s)
}

/// Writes to stdout; a closed pipe (`| head`) ends the process quietly.
fn print_out(s: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(anyhow!(e).context("cannot write to stdout")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(fmt_time(0, true), "1970-01-01 00:00:00Z");
        assert_eq!(fmt_time(951_782_400, false), "2000-02-29 00:00Z");
        assert_eq!(fmt_time(1_735_689_599, true), "2024-12-31 23:59:59Z");
    }

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["ID", "NAME"],
            &[
                vec!["a".into(), "x".into()],
                vec!["long-id".into(), "y".into()],
            ],
        );
        assert_eq!(t, "ID       NAME\na        x\nlong-id  y\n");
    }

    #[test]
    fn status_follows_revocation_and_expiry() {
        assert_eq!(
            status(&json!({"revoked_at": 5, "expires_at": null}), 10),
            "revoked"
        );
        assert_eq!(
            status(&json!({"revoked_at": null, "expires_at": 5}), 10),
            "expired"
        );
        assert_eq!(
            status(&json!({"revoked_at": null, "expires_at": 50}), 10),
            "active"
        );
        assert_eq!(status(&json!({}), 10), "active");
    }

    #[test]
    fn patch_body_sets_and_clears() {
        let b = patch_body(
            Some("n".into()),
            vec![],
            None,
            None,
            &[Clearable::Rpm, Clearable::Models],
            Map::new(),
        )
        .unwrap();
        assert_eq!(b, json!({"name": "n", "rpm": null, "models": []}));
        let mut limits = Map::new();
        limits.insert("rpm".into(), json!(5));
        assert!(patch_body(None, vec![], None, None, &[Clearable::Rpm], limits).is_err());
        assert!(patch_body(None, vec![], None, None, &[], Map::new()).is_err());
    }

    #[test]
    fn sqlite_paths_and_segments() {
        assert_eq!(sqlite_path("sqlite://plexus.db"), Some("plexus.db"));
        assert_eq!(sqlite_path("sqlite:/tmp/a.db?mode=rwc"), Some("/tmp/a.db"));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://x"), None);
        assert_eq!(seg("key_1/../x"), "key_1%2F..%2Fx");
    }
}
